import DemiBuffers
import DemiCore

/// A TCP sequence number: 32-bit arithmetic that wraps, compared by signed distance (RFC 9293 §3.4).
public struct TCPSequence: RawRepresentable, Hashable, Sendable, Comparable, CustomStringConvertible {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }
    @inlinable public init(_ v: UInt32) { rawValue = v }

    @inlinable public static func + (l: TCPSequence, r: Int) -> TCPSequence {
        TCPSequence(l.rawValue &+ UInt32(truncatingIfNeeded: r))
    }
    @inlinable public static func - (l: TCPSequence, r: Int) -> TCPSequence {
        TCPSequence(l.rawValue &- UInt32(truncatingIfNeeded: r))
    }
    /// The signed distance from `r` to `l`.
    @inlinable public static func - (l: TCPSequence, r: TCPSequence) -> Int {
        Int(Int32(bitPattern: l.rawValue &- r.rawValue))
    }
    @inlinable public static func < (l: TCPSequence, r: TCPSequence) -> Bool {
        Int32(bitPattern: l.rawValue &- r.rawValue) < 0
    }
    public var description: String { "\(rawValue)" }
}

/// TCP header flags.
public struct TCPFlags: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let fin = TCPFlags(rawValue: 0x01)
    public static let syn = TCPFlags(rawValue: 0x02)
    public static let rst = TCPFlags(rawValue: 0x04)
    public static let psh = TCPFlags(rawValue: 0x08)
    public static let ack = TCPFlags(rawValue: 0x10)
    public static let urg = TCPFlags(rawValue: 0x20)
    public static let ece = TCPFlags(rawValue: 0x40)
    public static let cwr = TCPFlags(rawValue: 0x80)

    public var description: String {
        var s = ""
        for (f, c) in [(TCPFlags.syn, "S"), (.fin, "F"), (.rst, "R"), (.psh, "P"), (.ack, "."), (.urg, "U")]
        where contains(f) { s += c }
        return s
    }
}

/// A SACK block: the left edge and the sequence number after the right edge (RFC 2018).
public struct SACKBlock: Hashable, Sendable {
    public var left: TCPSequence
    public var right: TCPSequence
    public init(left: TCPSequence, right: TCPSequence) {
        self.left = left
        self.right = right
    }
}

/// The TCP options this stack reads and writes. SACK blocks are stored inline (at most 4), so parsing never
/// allocates. Unknown option kinds are skipped.
public struct TCPOptions: Hashable, Sendable {
    public var maximumSegmentSize: UInt16?
    public var windowScale: UInt8?
    public var sackPermitted = false
    /// (TSval, TSecr) of RFC 7323.
    public var timestamp: (value: UInt32, echo: UInt32)?
    var blocks: (SACKBlock, SACKBlock, SACKBlock, SACKBlock) = (Self.zero, Self.zero, Self.zero, Self.zero)
    public private(set) var sackCount = 0

    static let zero = SACKBlock(left: TCPSequence(0), right: TCPSequence(0))

    public init() {}

    public var sackBlocks: [SACKBlock] { (0..<sackCount).map { sackBlock($0) } }

    public func sackBlock(_ i: Int) -> SACKBlock {
        switch i {
        case 0: blocks.0
        case 1: blocks.1
        case 2: blocks.2
        default: blocks.3
        }
    }

    /// Adds a SACK block (at most 4 fit; more are ignored).
    public mutating func addSACK(_ b: SACKBlock) {
        switch sackCount {
        case 0: blocks.0 = b
        case 1: blocks.1 = b
        case 2: blocks.2 = b
        case 3: blocks.3 = b
        default: return
        }
        sackCount += 1
    }

    /// The most option bytes a TCP header carries (the data offset is 4 bits: 60 - 20).
    public static var maximumLength: Int { 40 }

    /// Bytes of the options other than SACK blocks.
    @inlinable @inline(__always)
    var fixedLength: Int {
        var n = 0
        if maximumSegmentSize != nil { n += 4 }
        if windowScale != nil { n += 4 }
        if sackPermitted { n += 4 }
        if timestamp != nil { n += 12 }
        return n
    }

    /// SACK blocks that fit beside the other options (with timestamps: at most 3).
    @inlinable @inline(__always)
    public var emittedSACKCount: Int { max(0, min(sackCount, (Self.maximumLength - fixedLength - 4) / 8)) }

    /// Bytes `emit` writes: each option padded with NOPs to 4-byte alignment, at most 40.
    @inlinable @inline(__always)
    public var encodedLength: Int {
        let sacks = emittedSACKCount
        return fixedLength + (sacks > 0 ? 4 + 8 * sacks : 0)
    }

    public static func parse(_ o: UnsafeRawBufferPointer) throws(WireError) -> TCPOptions {
        var r = TCPOptions()
        // Fast path: the layout of nearly every segment on a connection with timestamps (NOP, NOP, TS; RFC 7323
        // Appendix A), as Linux checks too.
        if o.count == 12 && o.u32(0) == 0x0101_080A {
            r.timestamp = (o.u32(4), o.u32(8))
            return r
        }
        var i = 0
        while i < o.count {
            let kind = o[i]
            if kind == 0 { break }  // end of option list
            if kind == 1 { i += 1; continue }  // no-operation
            guard i + 1 < o.count else { throw .malformedOption }
            let len = Int(o[i + 1])
            guard len >= 2, i + len <= o.count else { throw .malformedOption }
            switch kind {
            case 2:
                guard len == 4 else { throw .malformedOption }
                r.maximumSegmentSize = o.u16(i + 2)
            case 3:
                guard len == 3 else { throw .malformedOption }
                r.windowScale = min(o[i + 2], 14)
            case 4:
                guard len == 2 else { throw .malformedOption }
                r.sackPermitted = true
            case 5:
                guard (len - 2) % 8 == 0, len > 2 else { throw .malformedOption }
                var at = i + 2
                while at < i + len {
                    r.addSACK(SACKBlock(left: TCPSequence(o.u32(at)), right: TCPSequence(o.u32(at + 4))))
                    at += 8
                }
            case 8:
                guard len == 10 else { throw .malformedOption }
                r.timestamp = (o.u32(i + 2), o.u32(i + 6))
            default:
                break  // unknown: skipped
            }
            i += len
        }
        return r
    }

    public func emit(_ o: UnsafeMutableRawBufferPointer) {
        var i = 0
        if let mss = maximumSegmentSize {
            o[i] = 2; o[i + 1] = 4; o.put(mss, i + 2)
            i += 4
        }
        if sackPermitted {
            o[i] = 1; o[i + 1] = 1; o[i + 2] = 4; o[i + 3] = 2
            i += 4
        }
        if let ts = timestamp {
            o[i] = 1; o[i + 1] = 1; o[i + 2] = 8; o[i + 3] = 10
            o.put(ts.value, i + 4)
            o.put(ts.echo, i + 8)
            i += 12
        }
        if let ws = windowScale {
            o[i] = 1; o[i + 1] = 3; o[i + 2] = 3; o[i + 3] = ws
            i += 4
        }
        let sacks = emittedSACKCount
        if sacks > 0 {
            o[i] = 1; o[i + 1] = 1; o[i + 2] = 5; o[i + 3] = UInt8(2 + 8 * sacks)
            i += 4
            for k in 0..<sacks {
                o.put(sackBlock(k).left.rawValue, i)
                o.put(sackBlock(k).right.rawValue, i + 4)
                i += 8
            }
        }
    }

    public static func == (l: TCPOptions, r: TCPOptions) -> Bool {
        l.maximumSegmentSize == r.maximumSegmentSize && l.windowScale == r.windowScale
            && l.sackPermitted == r.sackPermitted && l.timestamp?.value == r.timestamp?.value
            && l.timestamp?.echo == r.timestamp?.echo && l.sackBlocks == r.sackBlocks
    }

    public func hash(into h: inout Hasher) {
        h.combine(maximumSegmentSize)
        h.combine(windowScale)
        h.combine(sackPermitted)
        h.combine(timestamp?.value)
        h.combine(sackCount)
    }
}

/// A TCP header (RFC 9293) with its options.
public struct TCPHeader: Hashable, Sendable {
    public var sourcePort: UInt16
    public var destinationPort: UInt16
    public var sequence: TCPSequence
    public var acknowledgment: TCPSequence
    public var flags: TCPFlags
    public var window: UInt16
    public var urgentPointer: UInt16 = 0
    public var options = TCPOptions()

    public init(sourcePort: UInt16, destinationPort: UInt16, sequence: TCPSequence, acknowledgment: TCPSequence,
                flags: TCPFlags, window: UInt16) {
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
        self.sequence = sequence
        self.acknowledgment = acknowledgment
        self.flags = flags
        self.window = window
    }

    /// Header bytes including options.
    @inlinable @inline(__always)
    public var encodedLength: Int { 20 + options.encodedLength }

    /// Parses a segment (header and payload, as bounded by the IP layer); returns the header and its length. The
    /// data offset must fit the bytes; the checksum is verified against the pseudo-header unless `checksumOffload`.
    public static func parse(_ s: UnsafeRawBufferPointer, source: IPv4Address, destination: IPv4Address,
                             checksumOffload: Bool = false) throws(WireError) -> (TCPHeader, Int) {
        guard s.count >= 20 else { throw .truncated }
        let offset = Int(s[12] >> 4) * 4
        guard offset >= 20 else { throw .badLength }
        guard offset <= s.count else { throw .truncated }
        if !checksumOffload {
            let pseudo = InternetChecksum.pseudoHeader(source: source, destination: destination, protocol: IPProtocol.tcp,
                                                      length: s.count)
            guard InternetChecksum.finish(InternetChecksum.sum(s, initial: pseudo)) == 0 else { throw .badChecksum }
        }
        var h = TCPHeader(sourcePort: s.u16(0), destinationPort: s.u16(2), sequence: TCPSequence(s.u32(4)),
                          acknowledgment: TCPSequence(s.u32(8)), flags: TCPFlags(rawValue: s[13]), window: s.u16(14))
        h.urgentPointer = s.u16(18)
        h.options = try TCPOptions.parse(UnsafeRawBufferPointer(rebasing: s[20..<offset]))
        return (h, offset)
    }

    /// Writes the header (with options) at the start of `segment`, whose payload follows it already, and the checksum
    /// over the whole segment unless `checksumOffload`.
    public func emit(_ segment: UnsafeMutableRawBufferPointer, source: IPv4Address, destination: IPv4Address,
                     checksumOffload: Bool = false) {
        let len = encodedLength
        segment.put(sourcePort, 0)
        segment.put(destinationPort, 2)
        segment.put(sequence.rawValue, 4)
        segment.put(acknowledgment.rawValue, 8)
        segment[12] = UInt8(len / 4) << 4
        segment[13] = flags.rawValue
        segment.put(window, 14)
        segment.put(UInt16(0), 16)
        segment.put(urgentPointer, 18)
        options.emit(UnsafeMutableRawBufferPointer(rebasing: segment[20..<len]))
        guard !checksumOffload else { return }
        let pseudo = InternetChecksum.pseudoHeader(source: source, destination: destination, protocol: IPProtocol.tcp,
                                                  length: segment.count)
        segment.put(InternetChecksum.finish(InternetChecksum.sum(UnsafeRawBufferPointer(segment), initial: pseudo)), 16)
    }
}
