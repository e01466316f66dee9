import DemiCore

/// An ARP packet for Ethernet and IPv4 (RFC 826): 28 bytes.
public struct ARPPacket: Hashable, Sendable {
    public enum Operation: UInt16, Sendable {
        case request = 1
        case reply = 2
    }

    public var operation: Operation
    public var senderMAC: MACAddress
    public var senderIP: IPv4Address
    public var targetMAC: MACAddress
    public var targetIP: IPv4Address

    public static let length = 28

    public init(operation: Operation, senderMAC: MACAddress, senderIP: IPv4Address, targetMAC: MACAddress,
                targetIP: IPv4Address) {
        self.operation = operation
        self.senderMAC = senderMAC
        self.senderIP = senderIP
        self.targetMAC = targetMAC
        self.targetIP = targetIP
    }

    public var encodedLength: Int { Self.length }

    /// Parses an ARP packet. Only Ethernet (1) / IPv4 (0x0800) with 6- and 4-byte addresses is supported.
    public static func parse(_ b: UnsafeRawBufferPointer) throws(WireError) -> ARPPacket {
        guard b.count >= 28 else { throw .truncated }
        guard b.u16(0) == 1, b.u16(2) == EtherType.ipv4, b[4] == 6, b[5] == 4 else { throw .unsupported }
        guard let op = Operation(rawValue: b.u16(6)) else { throw .unsupported }
        return ARPPacket(
            operation: op,
            senderMAC: MACAddress(b[8], b[9], b[10], b[11], b[12], b[13]),
            senderIP: IPv4Address(rawValue: b.u32(14)),
            targetMAC: MACAddress(b[18], b[19], b[20], b[21], b[22], b[23]),
            targetIP: IPv4Address(rawValue: b.u32(24)))
    }

    public func emit(_ b: UnsafeMutableRawBufferPointer) {
        b.put(UInt16(1), 0)
        b.put(EtherType.ipv4, 2)
        b[4] = 6
        b[5] = 4
        b.put(operation.rawValue, 6)
        let s = senderMAC.bytes, t = targetMAC.bytes
        b[8] = s.0; b[9] = s.1; b[10] = s.2; b[11] = s.3; b[12] = s.4; b[13] = s.5
        b.put(senderIP.rawValue, 14)
        b[18] = t.0; b[19] = t.1; b[20] = t.2; b[21] = t.3; b[22] = t.4; b[23] = t.5
        b.put(targetIP.rawValue, 24)
    }
}
