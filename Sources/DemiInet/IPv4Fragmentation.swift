#if canImport(Glibc)
import Glibc
#endif
import DemiBuffers
import DemiCore
import DemiWire

/// Limits of IPv4 reassembly.
public struct ReassemblyConfiguration: Sendable {
    /// Partial datagrams kept at once; a fragment of a new datagram beyond this evicts the oldest.
    public var maxDatagrams = 64
    /// The largest reassembled datagram, as an IPv4 total length (its 20-byte header included): a fragment whose end
    /// lies beyond `maxDatagramSize - 20` payload bytes is dropped (the "ping of death").
    public var maxDatagramSize = 65_535
    /// How long a partial datagram waits for its missing fragments, from its first fragment (RFC 791's timer is
    /// not restarted by later fragments, as in Linux).
    public var timeout: Duration = .seconds(30)
    /// Disjoint received ranges tracked per datagram (in-order fragments merge into one). A fragment that would need
    /// more drops its datagram, which bounds the work an attacker can cause with tiny out-of-order fragments.
    public var maxRangesPerDatagram = 64

    public init() {}
}

/// IPv4 reassembly (RFC 791, RFC 815): a sans-I/O state machine that reads no clock; callers pass `now`.
///
/// All state is preallocated at init: `maxDatagrams` slots, each with a fixed list of received byte ranges. A partial
/// datagram's bytes go straight into one buffer from the pool given at init (payload at offset 0 of the window,
/// `pool.defaultHeadroom` free in front for headers), sized from the first fragment and grown by reallocation at most
/// twice (once per size class). Finding a datagram is a scan of the slots, with the last hit tried first (the
/// fragments of one datagram usually arrive back to back).
///
/// Overlaps: fragments may overlap if the overlapping bytes are identical (duplicates, retransmitted or
/// re-fragmented data); a *conflicting* overlap drops the whole datagram (RFC 5722's rule for IPv6, applied to the
/// conflicting case only). The same holds for inconsistent ends: a second last fragment with another end, or data
/// beyond the end of a last fragment, drops the datagram.
///
/// Rejected fragments (counted in ``Statistics/dropped``): a zero-length fragment, a non-last fragment whose length
/// is not a multiple of 8, a fragment ending beyond `maxDatagramSize`. A fragment of a new datagram when all slots are
/// in use evicts the datagram started earliest.
///
/// A reassembler and its pool belong to one thread.
public final class IPv4Reassembler {
    public struct Statistics: Hashable, Sendable {
        /// Datagrams completed and returned.
        public var reassembled = 0
        /// Fragments passed to ``IPv4Reassembler/insert(_:payload:now:)`` (unfragmented datagrams excluded).
        public var fragmentsReceived = 0
        /// Partial datagrams dropped by ``IPv4Reassembler/expire(now:)``.
        public var timedOut = 0
        /// Drops other than timeouts: rejected fragments, and datagrams abandoned for a conflict, for too many
        /// ranges, to make room (eviction) or for lack of buffers. The sum of the counters below.
        public var dropped = 0
        /// Zero-length fragments, misaligned non-last fragments, inconsistent ends, too many ranges.
        public var malformed = 0
        /// Fragments ending beyond `maxDatagramSize`.
        public var oversize = 0
        /// Datagrams dropped for a conflicting overlap.
        public var overlaps = 0
        /// Datagrams evicted because `maxDatagrams` were already in progress.
        public var evicted = 0
        /// Fragments dropped because the pool had no buffer.
        public var noBuffer = 0

        public init() {}
    }

    /// A received byte range `[start, end)` of a partial datagram.
    struct Span {
        var start: Int32
        var end: Int32
    }

    struct Slot {
        var inUse = false
        var source = IPv4Address(rawValue: 0)
        var destination = IPv4Address(rawValue: 0)
        var proto: UInt8 = 0
        var identification: UInt16 = 0
        var started = Instant.zero
        var deadline = Instant.zero
        /// The datagram's bytes so far; its window spans the whole usable capacity until completion.
        var buffer: DemiBuffer?
        /// The payload length once the last fragment arrived, else -1.
        var total: Int32 = -1
        /// The highest end received.
        var extent: Int32 = 0
        var spanCount: Int32 = 0
        /// The header of fragment zero, once received (for ICMP time exceeded).
        var first: IPv4Header?
    }

    public let pool: BufferPool
    public let configuration: ReassemblyConfiguration
    public private(set) var statistics = Statistics()
    /// Partial datagrams held now.
    public private(set) var pendingCount = 0

    @exclusivity(unchecked) var slots: UnsafeMutablePointer<Slot>
    @exclusivity(unchecked) var spans: UnsafeMutablePointer<Span>
    @exclusivity(unchecked) var lastHit = 0
    let slotCount: Int
    let spanCapacity: Int
    let maxPayload: Int

    public init(pool: BufferPool, configuration: ReassemblyConfiguration = ReassemblyConfiguration()) {
        self.pool = pool
        self.configuration = configuration
        slotCount = max(1, configuration.maxDatagrams)
        spanCapacity = max(1, configuration.maxRangesPerDatagram)
        maxPayload = max(0, min(configuration.maxDatagramSize, 65_535) - IPv4Header.length)
        slots = .allocate(capacity: slotCount)
        slots.initialize(repeating: Slot(), count: slotCount)
        spans = .allocate(capacity: slotCount * spanCapacity)
        spans.initialize(repeating: Span(start: 0, end: 0), count: slotCount * spanCapacity)
    }

    deinit {
        removeAll()
        slots.deinitialize(count: slotCount)
        slots.deallocate()
        spans.deallocate()
    }

    /// Drops every partial datagram (not counted), returning their buffers to the pool.
    public func removeAll() {
        for i in 0..<slotCount where slots[i].inUse { close(i) }
    }

    /// Takes one received fragment; returns the datagram's whole payload when this fragment completes it.
    ///
    /// `payload` holds the fragment's IP payload (header stripped; its window, or chain, gives the length: the
    /// header's `payloadLength` is not used). Ownership of `payload` passes in. An unfragmented datagram (offset 0,
    /// no more fragments) is returned as is. A reassembled datagram is one contiguous buffer from the pool, its window
    /// exactly the payload, with `pool.defaultHeadroom` bytes free in front; the caller owns its reference.
    public func insert(_ header: IPv4Header, payload: DemiBuffer, now: Instant) -> DemiBuffer? {
        if !header.moreFragments && header.fragmentOffset == 0 { return payload }
        defer { payload.releaseChain() }
        statistics.fragmentsReceived &+= 1
        let length = payload.header.pointee.next == nil ? payload.count : payload.chainCount
        let start = header.fragmentOffset
        let end = start + length
        guard length > 0, start >= 0, start & 7 == 0, !header.moreFragments || length & 7 == 0 else {
            reject(\.malformed)
            return nil
        }
        guard end <= maxPayload else {
            reject(\.oversize)
            return nil
        }

        let i: Int
        if let found = find(header) {
            i = found
        } else {
            guard let fresh = open(header, end: end, now: now) else { return nil }
            i = fresh
        }
        lastHit = i
        let s = slots + i

        // Consistency of the end.
        if !header.moreFragments {
            if (s.pointee.total >= 0 && Int(s.pointee.total) != end) || Int(s.pointee.extent) > end {
                drop(i, \.malformed)
                return nil
            }
        } else if s.pointee.total >= 0 && end > Int(s.pointee.total) {
            drop(i, \.malformed)
            return nil
        }

        // Room in the buffer.
        guard var buf = s.pointee.buffer else { return nil }
        if end > buf.count {
            let want = header.moreFragments ? sizeGuess(end: end) : end
            guard let bigger = pool.allocate(size: want) ?? pool.allocate(size: end) else {
                reject(\.noBuffer)
                return nil
            }
            let usable = min(maxPayload, bigger.count + bigger.tailroom)
            bigger.setCount(usable)
            bigger.baseAddress.copyMemory(from: buf.baseAddress, byteCount: Int(s.pointee.extent))
            buf.release()
            buf = bigger
            s.pointee.buffer = bigger
        }

        // Overlaps must be identical; find where the new range goes.
        let list = spans + i * spanCapacity
        let n = Int(s.pointee.spanCount)
        var lo = 0  // first span touching or after the new range
        while lo < n && Int(list[lo].end) < start { lo += 1 }
        var hi = lo  // one past the last span touching the new range
        while hi < n && Int(list[hi].start) <= end {
            let a = max(start, Int(list[hi].start))
            let b = min(end, Int(list[hi].end))
            if a < b && !Self.equal(payload, at: a - start, buf.baseAddress + a, count: b - a) {
                drop(i, \.overlaps)
                return nil
            }
            hi += 1
        }
        if lo == hi && n == spanCapacity {
            drop(i, \.malformed)
            return nil
        }

        Self.copy(payload, to: buf.baseAddress + start)

        // Merge [start, end) with the spans lo..<hi.
        var merged = Span(start: Int32(start), end: Int32(end))
        if lo < hi {
            merged.start = min(merged.start, list[lo].start)
            merged.end = max(merged.end, list[hi - 1].end)
        }
        let removed = hi - lo
        if removed == 0 {
            var k = n
            while k > lo { list[k] = list[k - 1]; k -= 1 }
        } else if removed > 1 {
            for k in (lo + 1)..<(n - removed + 1) { list[k] = list[k + removed - 1] }
        }
        list[lo] = merged
        s.pointee.spanCount = Int32(n - removed + 1)
        if end > Int(s.pointee.extent) { s.pointee.extent = Int32(end) }
        if !header.moreFragments { s.pointee.total = Int32(end) }
        if start == 0 { s.pointee.first = header }

        // Complete?
        let total = s.pointee.total
        guard total >= 0, s.pointee.spanCount == 1, list[0].start == 0, list[0].end == total else { return nil }
        buf.setCount(Int(total))
        s.pointee.buffer = nil
        close(i)
        statistics.reassembled &+= 1
        return buf
    }

    /// Drops the partial datagrams whose timeout has passed at `now`; returns how many.
    @discardableResult
    public func expire(now: Instant) -> Int {
        expire(now: now) { _, _ in }
    }

    /// Drops the partial datagrams whose timeout has passed at `now`; returns how many.
    ///
    /// For each dropped datagram whose fragment zero arrived, `timedOut` receives that fragment's header and up to
    /// the first 8 payload bytes, for an ICMP time exceeded message (type 11, code 1: "fragment reassembly time
    /// exceeded", RFC 792; RFC 1122 3.3.2 sends it only when fragment zero was received). The bytes are valid
    /// during the call only.
    @discardableResult
    public func expire(now: Instant, timedOut: (IPv4Header, UnsafeRawBufferPointer) -> Void) -> Int {
        guard pendingCount > 0 else { return 0 }
        var n = 0
        for i in 0..<slotCount where slots[i].inUse && slots[i].deadline <= now {
            if let h = slots[i].first, let b = slots[i].buffer {
                let list = spans + i * spanCapacity
                let have = min(8, Int(list[0].start == 0 ? list[0].end : 0))
                timedOut(h, UnsafeRawBufferPointer(start: b.baseAddress, count: have))
            }
            close(i)
            n += 1
        }
        statistics.timedOut &+= n
        return n
    }

    /// The earliest time ``expire(now:)`` has work, if any partial datagram is held.
    public var nextDeadline: Instant? {
        guard pendingCount > 0 else { return nil }
        var d = Instant.distantFuture
        for i in 0..<slotCount where slots[i].inUse && slots[i].deadline < d { d = slots[i].deadline }
        return d
    }

    // MARK: - Slots

    @inline(__always)
    func matches(_ s: UnsafeMutablePointer<Slot>, _ h: IPv4Header) -> Bool {
        s.pointee.inUse && s.pointee.identification == h.identification && s.pointee.source == h.source
            && s.pointee.destination == h.destination && s.pointee.proto == h.proto
    }

    func find(_ h: IPv4Header) -> Int? {
        guard pendingCount > 0 else { return nil }
        if matches(slots + lastHit, h) { return lastHit }
        for i in 0..<slotCount where matches(slots + i, h) { return i }
        return nil
    }

    /// Starts a datagram (evicting the oldest if every slot is taken) with a buffer for at least `end` bytes.
    func open(_ h: IPv4Header, end: Int, now: Instant) -> Int? {
        // A non-last fragment says the datagram is longer; guess twice its end (one size class up for a first
        // fragment of a full frame) to spare a reallocation.
        let guess = h.moreFragments ? sizeGuess(end: end) : end
        guard let buf = pool.allocate(size: guess) ?? pool.allocate(size: end) else {
            reject(\.noBuffer)
            return nil
        }
        buf.setCount(min(maxPayload, buf.count + buf.tailroom))
        var i = -1
        var oldest = 0
        for k in 0..<slotCount {
            if !slots[k].inUse { i = k; break }
            if slots[k].started < slots[oldest].started { oldest = k }
        }
        if i < 0 {
            drop(oldest, \.evicted)
            i = oldest
        }
        let s = slots + i
        s.pointee = Slot(inUse: true, source: h.source, destination: h.destination, proto: h.proto,
                         identification: h.identification, started: now, deadline: now + configuration.timeout,
                         buffer: buf, total: -1, extent: 0, spanCount: 0, first: nil)
        pendingCount += 1
        return i
    }

    @inline(__always)
    func sizeGuess(end: Int) -> Int { min(maxPayload, max(end + 8, 2 * end)) }

    func close(_ i: Int) {
        let s = slots + i
        s.pointee.buffer?.release()
        s.pointee = Slot()
        pendingCount -= 1
    }

    func reject(_ counter: WritableKeyPath<Statistics, Int>) {
        statistics[keyPath: counter] &+= 1
        statistics.dropped &+= 1
    }

    func drop(_ i: Int, _ counter: WritableKeyPath<Statistics, Int>) {
        close(i)
        reject(counter)
    }

    // MARK: - Bytes of a (possibly chained) fragment

    static func copy(_ payload: DemiBuffer, to dst: UnsafeMutableRawPointer) {
        var at = dst
        var h: UnsafeMutablePointer<BufferHeader>? = payload.header
        while let c = h {
            let n = Int(c.pointee.length)
            at.copyMemory(from: c.pointee.storage.unsafelyUnwrapped + Int(c.pointee.offset), byteCount: n)
            at += n
            h = c.pointee.next
        }
    }

    /// Whether `count` bytes of `payload` from `offset` equal the bytes at `other`.
    static func equal(_ payload: DemiBuffer, at offset: Int, _ other: UnsafeMutableRawPointer, count: Int) -> Bool {
        var skip = offset
        var left = count
        var at = other
        var h: UnsafeMutablePointer<BufferHeader>? = payload.header
        while let c = h, left > 0 {
            let len = Int(c.pointee.length)
            if skip >= len {
                skip -= len
            } else {
                let n = min(len - skip, left)
                let p = c.pointee.storage.unsafelyUnwrapped + Int(c.pointee.offset) + skip
                if memcmp(p, at, n) != 0 { return false }
                at += n
                left -= n
                skip = 0
            }
            h = c.pointee.next
        }
        return left == 0
    }
}

/// Outgoing IPv4 fragmentation (RFC 791).
public enum IPv4Fragmenter {
    /// Splits `payload` (an IP payload, possibly a chain of segments) into packets of at most `mtu` bytes and hands
    /// each to `emit`, in order.
    ///
    /// Each packet is a new buffer from `pool`, with `header` (20 bytes, no options) written in front of its share of
    /// the payload, and `pool.defaultHeadroom` (at least 20) left for the link header; `emit` takes over its
    /// reference. Every fragment carries a multiple of 8 payload bytes except the last, `dontFragment` false, and
    /// `fragmentOffset` and `moreFragments` set (offsets are relative to `header.fragmentOffset`, and the last fragment
    /// keeps `header.moreFragments`, so an already fragmented packet can be fragmented again). The header's
    /// `payloadLength` is ignored: the chain's length is used. A payload that fits in one packet is emitted as one
    /// packet with `header`'s flags unchanged.
    ///
    /// Returns false, emitting nothing, if a buffer cannot be allocated, `mtu` leaves fewer than 8 payload bytes, or
    /// the datagram would exceed IPv4's 65 535 bytes. `payload` stays the caller's.
    @discardableResult
    public static func fragment(
        payload: DemiBuffer, header: IPv4Header, mtu: Int, pool: BufferPool, checksumOffload: Bool = false,
        emit: (DemiBuffer) -> Void
    ) -> Bool {
        let total = payload.chainCount
        let base = header.fragmentOffset
        guard base >= 0, base & 7 == 0, base + total + IPv4Header.length <= 65_535 else { return false }
        let room = max(pool.defaultHeadroom, IPv4Header.length)

        if total + IPv4Header.length <= mtu {
            guard let b = pool.allocate(size: total, headroom: room) else { return false }
            IPv4Fragmenter.gather(payload.header, 0, into: b.baseAddress, count: total)
            var h = header
            h.payloadLength = total
            h.emit(prependingTo: b, checksumOffload: checksumOffload)
            emit(b)
            return true
        }
        let step = (mtu - IPv4Header.length) & ~7
        guard step >= 8 else { return false }

        // Allocate every fragment first, linked through their headers, so a failure emits nothing.
        var first: UnsafeMutablePointer<BufferHeader>?
        var last: UnsafeMutablePointer<BufferHeader>?
        var off = 0
        while off < total {
            let n = min(step, total - off)
            guard let b = pool.allocate(size: n, headroom: room) else {
                while let c = first {
                    first = c.pointee.next
                    c.pointee.next = nil
                    DemiBuffer(header: c).release()
                }
                return false
            }
            if let l = last { l.pointee.next = b.header } else { first = b.header }
            last = b.header
            off += n
        }

        var segment: UnsafeMutablePointer<BufferHeader>? = payload.header
        var within = 0
        off = 0
        while let c = first {
            first = c.pointee.next
            c.pointee.next = nil
            let b = DemiBuffer(header: c)
            let n = b.count
            (segment, within) = gather(segment, within, into: b.baseAddress, count: n)
            var h = header
            h.payloadLength = n
            h.fragmentOffset = base + off
            h.moreFragments = off + n < total || header.moreFragments
            h.dontFragment = false
            h.emit(prependingTo: b, checksumOffload: checksumOffload)
            off += n
            emit(b)
        }
        return true
    }

    /// Copies `count` bytes from the chain at (`segment`, `within`) to `dst`; returns the position after them.
    @discardableResult
    static func gather(
        _ segment: UnsafeMutablePointer<BufferHeader>?, _ within: Int, into dst: UnsafeMutableRawPointer, count: Int
    ) -> (UnsafeMutablePointer<BufferHeader>?, Int) {
        var seg = segment
        var pos = within
        var at = dst
        var left = count
        while left > 0, let c = seg {
            let len = Int(c.pointee.length)
            let n = min(len - pos, left)
            if n > 0 {
                at.copyMemory(from: c.pointee.storage.unsafelyUnwrapped + Int(c.pointee.offset) + pos, byteCount: n)
                at += n
                left -= n
                pos += n
            }
            if pos >= len {
                seg = c.pointee.next
                pos = 0
            }
        }
        return (seg, pos)
    }
}
