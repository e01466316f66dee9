import DemiCore
import DemiWire

/// The SACK scoreboard of a TCP sender (RFC 6675 §3, §4): which bytes above SND.UNA the receiver holds.
///
/// The scoreboard keeps up to ``capacity`` disjoint, non-adjacent ranges, sorted by sequence number, inline (no
/// heap allocation, ever). Sequence numbers compare by signed distance, so the 2³² wrap-around is transparent as
/// long as everything lies within 2³¹ bytes of SND.UNA, as TCP guarantees.
///
/// **Overflow.** When a new disjoint range arrives with every slot taken, the highest range is dropped (the new one
/// itself, if it is the highest). Forgetting that the receiver holds data is safe: at worst those bytes are
/// retransmitted needlessly, and a later SACK block reports them again. (Merging two ranges instead would mark the
/// hole between them as held, which is never retransmitted until an RTO.)
///
/// **Per-byte accounting.** ``isLost(_:mss:dupThresh:)``, ``pipe(unacknowledged:nextToSend:highRetransmitted:mss:dupThresh:)``
/// and ``nextSegment(unacknowledged:nextToSend:highRetransmitted:mss:dupThresh:)`` follow RFC 6675 octet by octet,
/// exactly, in O(ranges): every byte of a hole has the same SACKed data above it, so a hole is lost or not as a whole.
/// "DupThresh discontiguous SACKed sequences" counts SACKed ranges.
public struct SACKScoreboard: Sendable {
    /// The most ranges kept.
    public static let capacity = 16

    @usableFromInline var ranges: InlineArray<16, SACKBlock> = .init(repeating: SACKBlock(left: TCPSequence(0), right: TCPSequence(0)))
    /// The number of ranges held.
    public private(set) var count = 0

    public init() {}

    /// The `i`th range in sequence order (0 is the lowest), `0 <= i < count`.
    @inlinable public func range(_ i: Int) -> SACKBlock {
        precondition(i >= 0 && i < count, "SACK range index out of bounds")
        return ranges[i]
    }

    /// No data is SACKed.
    @inlinable public var isEmpty: Bool { count == 0 }

    /// Merges the SACK blocks of an ACK (RFC 6675 §5 "Update()"); returns the bytes that became SACKed.
    ///
    /// Ranges below `unacknowledged` are dropped first (as ``acknowledge(upTo:)`` does). A block is used only when it
    /// is non-empty and lies within [SND.UNA, SND.NXT]; others are ignored, which covers RFC 2883 D-SACK blocks
    /// below SND.UNA (blocks inside already SACKed data merge harmlessly and add no bytes). A block that overflows
    /// the scoreboard and is dropped adds no bytes.
    ///
    /// - Parameters:
    ///   - unacknowledged: SND.UNA after processing the ACK's cumulative acknowledgment.
    ///   - nextToSend: SND.NXT (the highest sequence number sent plus one).
    public mutating func update(with blocks: some Sequence<SACKBlock>, unacknowledged: TCPSequence,
                                nextToSend: TCPSequence) -> Int {
        acknowledge(upTo: unacknowledged)
        var added = 0
        for b in blocks { added += merge(b, unacknowledged: unacknowledged, nextToSend: nextToSend) }
        return added
    }

    /// ``update(with:unacknowledged:nextToSend:)`` with the SACK blocks of parsed options (without building an
    /// array).
    public mutating func update(with options: TCPOptions, unacknowledged: TCPSequence,
                                nextToSend: TCPSequence) -> Int {
        acknowledge(upTo: unacknowledged)
        var added = 0
        for i in 0..<options.sackCount {
            added += merge(options.sackBlock(i), unacknowledged: unacknowledged, nextToSend: nextToSend)
        }
        return added
    }

    /// The cumulative ACK reached `ack`: forgets what lies below it.
    public mutating func acknowledge(upTo ack: TCPSequence) {
        var drop = 0
        while drop < count && !(ack < ranges[drop].right) { drop += 1 }
        if drop > 0 {
            for i in drop..<count { ranges[i - drop] = ranges[i] }
            count -= drop
        }
        if count > 0 && ranges[0].left < ack { ranges[0].left = ack }
    }

    /// Forgets everything.
    ///
    /// After a retransmission timeout RFC 2018 §8 says to ignore earlier SACK information, since the receiver may
    /// have reneged; RFC 6675 §5.1 lets the sender keep using it during the RTO recovery (retransmitting from
    /// SND.UNA and skipping SACKed data). Keeping it is the caller's choice: call this for the conservative one.
    /// Also call it when the receiver reneges (an ACK whose cumulative point lands inside SACKed data, then stops).
    public mutating func reset() { count = 0 }

    /// The byte `seq` is SACKed.
    public func isSACKed(_ seq: TCPSequence) -> Bool {
        for i in 0..<count {
            let r = ranges[i]
            if seq < r.left { return false }
            if seq < r.right { return true }
        }
        return false
    }

    /// Bytes SACKed in all.
    public var sackedBytes: Int {
        var n = 0
        for i in 0..<count { n += ranges[i].right - ranges[i].left }
        return n
    }

    /// Some byte from `unacknowledged` up to the highest SACKed byte is not SACKed: a hole that later data skipped.
    @inlinable
    public func hasHole(above unacknowledged: TCPSequence) -> Bool {
        count > 1 || (count == 1 && unacknowledged < ranges[0].left)
    }

    /// The left edge of the first SACKed range above `seq`: where a retransmission from `seq` must stop.
    public func nextSACKed(after seq: TCPSequence) -> TCPSequence? {
        for i in 0..<count where seq < ranges[i].left { return ranges[i].left }
        return nil
    }

    /// The right edge of the highest SACKed range: the sequence number after the highest SACKed byte; nil when
    /// nothing is SACKed.
    public var highestSACKed: TCPSequence? { count > 0 ? ranges[count - 1].right : nil }

    /// RFC 6675 §4 IsLost(SeqNum): `dupThresh` or more discontiguous SACKed ranges lie above `seq`, or more than
    /// (DupThresh - 1) SMSS bytes above it are SACKed. A SACKed byte is not lost.
    public func isLost(_ seq: TCPSequence, mss: Int, dupThresh: Int = 3) -> Bool {
        var blocks = 0
        var bytes = 0
        var i = count
        while i > 0 {
            i -= 1
            let r = ranges[i]
            if !(seq < r.right) { break }
            if !(seq < r.left) { return false }
            blocks += 1
            bytes += r.right - r.left
        }
        return blocks >= dupThresh || bytes > (dupThresh - 1) * mss
    }

    /// RFC 6675 §4 SetPipe: the bytes of [SND.UNA, SND.NXT) thought to be in the network, counted octet by octet
    /// (exact, see the type's notes): each un-SACKed byte that is not lost counts once, and each un-SACKed byte
    /// below `highRetransmitted` once more.
    ///
    /// - Parameter highRetransmitted: the sequence number after the highest byte retransmitted in this recovery
    ///   (HighRxt + 1 in RFC 6675's inclusive terms); SND.UNA when nothing was retransmitted.
    public func pipe(unacknowledged: TCPSequence, nextToSend: TCPSequence, highRetransmitted: TCPSequence, mss: Int,
                     dupThresh: Int = 3) -> Int {
        let window = nextToSend - unacknowledged
        guard window > 0 else { return 0 }
        let rxt = min(max(highRetransmitted - unacknowledged, 0), window)
        var above = totals(unacknowledged: unacknowledged, window: window)
        var pos = 0
        var pipe = 0
        for i in 0...count {
            let (a, b) = i < count ? offsets(i, unacknowledged: unacknowledged, window: window) : (window, window)
            if i < count && b <= a { continue }
            if a > pos {
                let lost = above.blocks >= dupThresh || above.bytes > (dupThresh - 1) * mss
                if !lost { pipe += a - pos }
                pipe += max(0, min(a, rxt) - pos)
            }
            pos = max(pos, b)
            if i < count {
                above.blocks -= 1
                above.bytes -= b - a
            }
        }
        return pipe
    }

    /// RFC 6675 §4 NextSeg() rule 1: the first hole byte S2 at or above `highRetransmitted`, below the highest SACKed
    /// byte and lost, with the length to retransmit (at most `mss`, ending at the next SACKed range). Nil when rule 1
    /// does not apply: the caller then sends new data (rule 2) or applies rules 3 and 4 itself.
    ///
    /// - Parameter highRetransmitted: as for ``pipe(unacknowledged:nextToSend:highRetransmitted:mss:dupThresh:)``.
    public func nextSegment(unacknowledged: TCPSequence, nextToSend: TCPSequence, highRetransmitted: TCPSequence,
                            mss: Int, dupThresh: Int = 3) -> (start: TCPSequence, length: Int)? {
        let window = nextToSend - unacknowledged
        guard window > 0, mss > 0 else { return nil }
        let rxt = min(max(highRetransmitted - unacknowledged, 0), window)
        var above = totals(unacknowledged: unacknowledged, window: window)
        var pos = 0
        for i in 0..<count {
            let (a, b) = offsets(i, unacknowledged: unacknowledged, window: window)
            if b <= a { continue }
            let start = max(pos, rxt)
            if start < a && (above.blocks >= dupThresh || above.bytes > (dupThresh - 1) * mss) {
                return (unacknowledged + start, min(mss, a - start))
            }
            pos = max(pos, b)
            above.blocks -= 1
            above.bytes -= b - a
        }
        return nil
    }

    // MARK: - Internals

    /// Range `i` as offsets from SND.UNA, clipped to [0, window].
    @inline(__always)
    func offsets(_ i: Int, unacknowledged: TCPSequence, window: Int) -> (Int, Int) {
        let r = ranges[i]
        return (min(max(r.left - unacknowledged, 0), window), min(max(r.right - unacknowledged, 0), window))
    }

    /// The ranges and bytes within [0, window].
    func totals(unacknowledged: TCPSequence, window: Int) -> (blocks: Int, bytes: Int) {
        var blocks = 0
        var bytes = 0
        for i in 0..<count {
            let (a, b) = offsets(i, unacknowledged: unacknowledged, window: window)
            if b > a {
                blocks += 1
                bytes += b - a
            }
        }
        return (blocks, bytes)
    }

    /// Merges one block; returns the bytes it added.
    mutating func merge(_ block: SACKBlock, unacknowledged una: TCPSequence, nextToSend nxt: TCPSequence) -> Int {
        let l = block.left - una
        let r = block.right - una
        guard l >= 0, l < r, r <= nxt - una else { return 0 }
        // Ranges wholly below the block and not adjacent to it.
        var i = 0
        while i < count && ranges[i].right - una < l { i += 1 }
        // Ranges i..<j overlap or touch the block.
        var j = i
        var covered = 0
        var newLeft = l
        var newRight = r
        while j < count && ranges[j].left - una <= r {
            let a = ranges[j].left - una
            let b = ranges[j].right - una
            covered += max(0, min(b, r) - max(a, l))
            newLeft = min(newLeft, a)
            newRight = max(newRight, b)
            j += 1
        }
        if j > i {
            ranges[i] = SACKBlock(left: una + newLeft, right: una + newRight)
            let gone = j - i - 1
            if gone > 0 {
                for k in j..<count { ranges[k - gone] = ranges[k] }
                count -= gone
            }
            return (r - l) - covered
        }
        if count == Self.capacity {
            if i == count { return 0 }  // the new range is the highest: it is the one dropped
            count -= 1  // drop the highest
        }
        var k = count
        while k > i {
            ranges[k] = ranges[k - 1]
            k -= 1
        }
        ranges[i] = SACKBlock(left: block.left, right: block.right)
        count += 1
        return r - l
    }
}
