import DemiBuffers
import DemiCore

/// A UDP header (RFC 768).
public struct UDPHeader: Hashable, Sendable {
    public var sourcePort: UInt16
    public var destinationPort: UInt16
    /// Header plus payload, in bytes.
    public var length: Int

    public static let size = 8

    public init(sourcePort: UInt16, destinationPort: UInt16, payloadLength: Int) {
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
        length = Self.size + payloadLength
    }

    public var payloadLength: Int { length - Self.size }
    public var encodedLength: Int { Self.size }

    /// Parses a datagram (header and payload, as bounded by the IP layer). The length field must fit the bytes; a
    /// checksum of zero means none; otherwise it is verified against the pseudo-header unless `checksumOffload`.
    public static func parse(_ d: UnsafeRawBufferPointer, source: IPv4Address, destination: IPv4Address,
                             checksumOffload: Bool = false) throws(WireError) -> UDPHeader {
        guard d.count >= 8 else { throw .truncated }
        let length = Int(d.u16(4))
        guard length >= 8 else { throw .badLength }
        guard length <= d.count else { throw .truncated }
        if !checksumOffload && d.u16(6) != 0 {
            let pseudo = InternetChecksum.pseudoHeader(source: source, destination: destination,
                                                      protocol: IPProtocol.udp, length: length)
            let sum = InternetChecksum.sum(UnsafeRawBufferPointer(rebasing: d[0..<length]), initial: pseudo)
            guard InternetChecksum.finish(sum) == 0 else { throw .badChecksum }
        }
        var h = UDPHeader(sourcePort: d.u16(0), destinationPort: d.u16(2), payloadLength: 0)
        h.length = length
        return h
    }

    /// Writes the header into the first 8 bytes of `datagram` (whose payload is already in place) and, unless
    /// `checksumOffload`, the checksum (a computed zero is sent as 0xFFFF).
    public func emit(_ datagram: UnsafeMutableRawBufferPointer, source: IPv4Address, destination: IPv4Address,
                     checksumOffload: Bool = false) {
        datagram.put(sourcePort, 0)
        datagram.put(destinationPort, 2)
        datagram.put(UInt16(truncatingIfNeeded: length), 4)
        datagram.put(UInt16(0), 6)
        guard !checksumOffload else { return }
        let pseudo = InternetChecksum.pseudoHeader(source: source, destination: destination, protocol: IPProtocol.udp,
                                                  length: length)
        let c = InternetChecksum.finish(
            InternetChecksum.sum(UnsafeRawBufferPointer(rebasing: datagram[0..<length]), initial: pseudo))
        datagram.put(c == 0 ? 0xFFFF : c, 6)
    }
}
