/// An IPv4 address, stored in host byte order.
public struct IPv4Address: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }
    @inlinable public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        rawValue = UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)
    }

    /// Parses dotted-quad notation (`"198.18.0.1"`); nil for anything else.
    public init?(_ text: some StringProtocol) {
        var value: UInt32 = 0
        var parts = 0
        for part in text.split(separator: ".", omittingEmptySubsequences: false) {
            guard part.count >= 1, part.count <= 3, let octet = UInt8(part) else { return nil }
            value = value << 8 | UInt32(octet)
            parts += 1
        }
        guard parts == 4 else { return nil }
        rawValue = value
    }

    public static var any: IPv4Address { IPv4Address(rawValue: 0) }
    public static var loopback: IPv4Address { IPv4Address(127, 0, 0, 1) }
    public static var broadcast: IPv4Address { IPv4Address(rawValue: 0xFFFF_FFFF) }

    @inlinable public var isUnspecified: Bool { rawValue == 0 }
    @inlinable public var isBroadcast: Bool { rawValue == 0xFFFF_FFFF }
    @inlinable public var isMulticast: Bool { rawValue >> 28 == 0xE }
    @inlinable public var isLoopback: Bool { rawValue >> 24 == 127 }

    /// The four octets in network order.
    @inlinable public var octets: (UInt8, UInt8, UInt8, UInt8) {
        (UInt8(rawValue >> 24), UInt8(truncatingIfNeeded: rawValue >> 16),
         UInt8(truncatingIfNeeded: rawValue >> 8), UInt8(truncatingIfNeeded: rawValue))
    }

    public var description: String {
        let o = octets
        return "\(o.0).\(o.1).\(o.2).\(o.3)"
    }

    @inlinable public static func < (l: IPv4Address, r: IPv4Address) -> Bool { l.rawValue < r.rawValue }
}

/// An IPv4 socket address: address plus port (host byte order).
public struct SocketAddressV4: Hashable, Sendable, CustomStringConvertible {
    public var address: IPv4Address
    public var port: UInt16

    @inlinable public init(_ address: IPv4Address, _ port: UInt16) {
        self.address = address
        self.port = port
    }

    /// Parses `"a.b.c.d:port"`; nil for anything else.
    public init?(_ text: some StringProtocol) {
        guard let colon = text.lastIndex(of: ":"),
              let address = IPv4Address(text[text.startIndex..<colon]),
              let port = UInt16(text[text.index(after: colon)...]) else { return nil }
        self.init(address, port)
    }

    /// `0.0.0.0:0`.
    public static var unspecified: SocketAddressV4 { SocketAddressV4(.any, 0) }

    public var description: String { "\(address):\(port)" }
}

/// An Ethernet MAC address.
public struct MACAddress: Hashable, Sendable, CustomStringConvertible {
    public var bytes: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8)

    @inlinable public init(_ b0: UInt8, _ b1: UInt8, _ b2: UInt8, _ b3: UInt8, _ b4: UInt8, _ b5: UInt8) {
        bytes = (b0, b1, b2, b3, b4, b5)
    }

    /// Parses `"xx:xx:xx:xx:xx:xx"` (also with `-` separators); nil for anything else.
    public init?(_ text: some StringProtocol) {
        let parts = text.split(whereSeparator: { $0 == ":" || $0 == "-" })
        guard parts.count == 6 else { return nil }
        var b = [UInt8]()
        for p in parts {
            guard p.count == 2, let v = UInt8(p, radix: 16) else { return nil }
            b.append(v)
        }
        bytes = (b[0], b[1], b[2], b[3], b[4], b[5])
    }

    public static var broadcast: MACAddress { MACAddress(0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF) }
    public static var zero: MACAddress { MACAddress(0, 0, 0, 0, 0, 0) }

    @inlinable public var isBroadcast: Bool { self == .broadcast }
    /// The group bit of the first octet (multicast and broadcast).
    @inlinable public var isMulticast: Bool { bytes.0 & 1 == 1 }

    public static func == (l: MACAddress, r: MACAddress) -> Bool {
        l.bytes.0 == r.bytes.0 && l.bytes.1 == r.bytes.1 && l.bytes.2 == r.bytes.2
            && l.bytes.3 == r.bytes.3 && l.bytes.4 == r.bytes.4 && l.bytes.5 == r.bytes.5
    }

    public func hash(into h: inout Hasher) {
        h.combine(bytes.0); h.combine(bytes.1); h.combine(bytes.2)
        h.combine(bytes.3); h.combine(bytes.4); h.combine(bytes.5)
    }

    public var description: String {
        func hex(_ v: UInt8) -> String { v < 16 ? "0" + String(v, radix: 16) : String(v, radix: 16) }
        return [bytes.0, bytes.1, bytes.2, bytes.3, bytes.4, bytes.5].map(hex).joined(separator: ":")
    }
}
