import DemiBuffers
import DemiCore

/// EtherType values this stack knows.
public enum EtherType {
    public static let ipv4: UInt16 = 0x0800
    public static let arp: UInt16 = 0x0806
    public static let ipv6: UInt16 = 0x86DD
    public static let vlan: UInt16 = 0x8100
    public static let qinq: UInt16 = 0x88A8
}

/// An Ethernet II header, with up to two 802.1Q / 802.1ad tags (parsed and skipped; their tag control is kept).
public struct EthernetHeader: Hashable, Sendable {
    public var destination: MACAddress
    public var source: MACAddress
    /// The inner EtherType (after any VLAN tags).
    public var etherType: UInt16
    /// The outermost VLAN tag's control field (PCP, DEI, VID), if tagged.
    public var vlanTag: UInt16?

    public static let minimumLength = 14

    public init(destination: MACAddress, source: MACAddress, etherType: UInt16, vlanTag: UInt16? = nil) {
        self.destination = destination
        self.source = source
        self.etherType = etherType
        self.vlanTag = vlanTag
    }

    /// Bytes `emit` writes: 14, or 18 with a VLAN tag.
    public var encodedLength: Int { vlanTag == nil ? 14 : 18 }

    /// Parses a header and returns it with its length. Tolerates one or two VLAN tags.
    public static func parse(_ b: UnsafeRawBufferPointer) throws(WireError) -> (EthernetHeader, Int) {
        guard b.count >= 14 else { throw .truncated }
        let dst = MACAddress(b[0], b[1], b[2], b[3], b[4], b[5])
        let src = MACAddress(b[6], b[7], b[8], b[9], b[10], b[11])
        var type = b.u16(12)
        var at = 14
        var tag: UInt16?
        var tags = 0
        while type == EtherType.vlan || type == EtherType.qinq {
            guard tags < 2 else { throw .unsupported }
            guard b.count >= at + 4 else { throw .truncated }
            if tag == nil { tag = b.u16(at) }
            type = b.u16(at + 2)
            at += 4
            tags += 1
        }
        return (EthernetHeader(destination: dst, source: src, etherType: type, vlanTag: tag), at)
    }

    /// Writes the header at the start of `b` (which must hold `encodedLength` bytes).
    public func emit(_ b: UnsafeMutableRawBufferPointer) {
        let d = destination.bytes, s = source.bytes
        b[0] = d.0; b[1] = d.1; b[2] = d.2; b[3] = d.3; b[4] = d.4; b[5] = d.5
        b[6] = s.0; b[7] = s.1; b[8] = s.2; b[9] = s.3; b[10] = s.4; b[11] = s.5
        if let vlanTag {
            b.put(EtherType.vlan, 12)
            b.put(vlanTag, 14)
            b.put(etherType, 16)
        } else {
            b.put(etherType, 12)
        }
    }

    /// Parses the header at the front of `buffer` and removes it from the window (zero-copy).
    public static func parse(stripping buffer: DemiBuffer) throws(WireError) -> EthernetHeader {
        let (h, n) = try parse(UnsafeRawBufferPointer(buffer.bytes))
        buffer.trimFront(n)
        return h
    }

    /// Writes the header into `buffer`'s headroom; false if there is not enough.
    @discardableResult
    public func emit(prependingTo buffer: DemiBuffer) -> Bool {
        guard let p = buffer.prepend(encodedLength) else { return false }
        emit(UnsafeMutableRawBufferPointer(start: p, count: encodedLength))
        return true
    }
}
