import DemiBuffers
import DemiCore

/// IP protocol numbers this stack knows.
public enum IPProtocol {
    public static let icmp: UInt8 = 1
    public static let tcp: UInt8 = 6
    public static let udp: UInt8 = 17
}

/// A checked view of an IPv4 packet: after `init(checking:)` the header (with options) and the declared total length
/// lie inside the bytes. Trailing bytes beyond the total length (Ethernet padding) are excluded from `payload`.
public struct IPv4Packet {
    public let bytes: UnsafeRawBufferPointer

    public init(checking bytes: UnsafeRawBufferPointer) throws(WireError) {
        guard bytes.count >= 20 else { throw .truncated }
        guard bytes[0] >> 4 == 4 else { throw .unsupported }
        let ihl = Int(bytes[0] & 0x0F) * 4
        guard ihl >= 20 else { throw .badLength }
        guard bytes.count >= ihl else { throw .truncated }
        let total = Int(bytes.u16(2))
        guard total >= ihl else { throw .badLength }
        guard total <= bytes.count else { throw .truncated }
        self.bytes = bytes
    }

    public init(unchecked bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    public var headerLength: Int { Int(bytes[0] & 0x0F) * 4 }
    public var totalLength: Int { Int(bytes.u16(2)) }
    public var typeOfService: UInt8 { bytes[1] }
    public var identification: UInt16 { bytes.u16(4) }
    public var dontFragment: Bool { bytes[6] & 0x40 != 0 }
    public var moreFragments: Bool { bytes[6] & 0x20 != 0 }
    /// The fragment's offset in bytes.
    public var fragmentOffset: Int { Int(bytes.u16(6) & 0x1FFF) * 8 }
    public var isFragment: Bool { moreFragments || fragmentOffset != 0 }
    public var timeToLive: UInt8 { bytes[8] }
    public var proto: UInt8 { bytes[9] }
    public var checksum: UInt16 { bytes.u16(10) }
    public var source: IPv4Address { IPv4Address(rawValue: bytes.u32(12)) }
    public var destination: IPv4Address { IPv4Address(rawValue: bytes.u32(16)) }
    /// The option bytes (between the fixed header and the payload), skipped by the stack.
    public var options: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: bytes[20..<headerLength]) }
    public var payload: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: bytes[headerLength..<totalLength]) }

    /// True if the header checksum (over the whole header, options included) verifies.
    public var checksumIsValid: Bool {
        InternetChecksum.compute(UnsafeRawBufferPointer(rebasing: bytes[0..<headerLength])) == 0
    }
}

/// The fields of an IPv4 header this stack uses. Emitted headers carry no options (20 bytes).
public struct IPv4Header: Hashable, Sendable {
    public var source: IPv4Address
    public var destination: IPv4Address
    public var proto: UInt8
    public var payloadLength: Int
    public var timeToLive: UInt8 = 64
    public var identification: UInt16 = 0
    public var dontFragment = true
    public var moreFragments = false
    public var fragmentOffset = 0
    public var typeOfService: UInt8 = 0

    public static let length = 20

    public init(source: IPv4Address, destination: IPv4Address, proto: UInt8, payloadLength: Int) {
        self.source = source
        self.destination = destination
        self.proto = proto
        self.payloadLength = payloadLength
    }

    public var encodedLength: Int { Self.length }

    public static func parse(_ p: IPv4Packet) -> IPv4Header {
        var h = IPv4Header(source: p.source, destination: p.destination, proto: p.proto,
                           payloadLength: p.totalLength - p.headerLength)
        h.timeToLive = p.timeToLive
        h.identification = p.identification
        h.dontFragment = p.dontFragment
        h.moreFragments = p.moreFragments
        h.fragmentOffset = p.fragmentOffset
        h.typeOfService = p.typeOfService
        return h
    }

    /// Writes the 20-byte header; the checksum is computed unless `checksumOffload` (then left zero).
    public func emit(_ b: UnsafeMutableRawBufferPointer, checksumOffload: Bool = false) {
        b[0] = 0x45
        b[1] = typeOfService
        b.put(UInt16(truncatingIfNeeded: Self.length + payloadLength), 2)
        b.put(identification, 4)
        var flags = UInt16(fragmentOffset / 8) & 0x1FFF
        if dontFragment { flags |= 0x4000 }
        if moreFragments { flags |= 0x2000 }
        b.put(flags, 6)
        b[8] = timeToLive
        b[9] = proto
        b.put(UInt16(0), 10)
        b.put(source.rawValue, 12)
        b.put(destination.rawValue, 16)
        if !checksumOffload {
            b.put(InternetChecksum.compute(UnsafeRawBufferPointer(rebasing: b[0..<20])), 10)
        }
    }

    /// Parses and checks the header at the front of `buffer` (checksum included unless `checksumOffload`), trims the
    /// window to the payload (dropping options and trailing padding) and returns the header.
    public static func parse(stripping buffer: DemiBuffer, checksumOffload: Bool = false) throws(WireError)
        -> IPv4Header
    {
        let p = try IPv4Packet(checking: UnsafeRawBufferPointer(buffer.bytes))
        if !checksumOffload && !p.checksumIsValid { throw .badChecksum }
        let h = parse(p)
        buffer.setCount(p.totalLength)
        buffer.trimFront(p.headerLength)
        return h
    }

    @discardableResult
    public func emit(prependingTo buffer: DemiBuffer, checksumOffload: Bool = false) -> Bool {
        guard let p = buffer.prepend(Self.length) else { return false }
        emit(UnsafeMutableRawBufferPointer(start: p, count: Self.length), checksumOffload: checksumOffload)
        return true
    }
}
