import DemiCore

/// An ICMPv4 message header: type, code and the 4 "rest of header" bytes (identifier and sequence for echo; unused
/// for destination unreachable, whose payload quotes the original IP header and 8 bytes).
public struct ICMPv4Header: Hashable, Sendable {
    public enum MessageType {
        public static let echoReply: UInt8 = 0
        public static let destinationUnreachable: UInt8 = 3
        public static let echoRequest: UInt8 = 8
        public static let timeExceeded: UInt8 = 11
    }

    public enum UnreachableCode {
        public static let network: UInt8 = 0
        public static let host: UInt8 = 1
        public static let proto: UInt8 = 2
        public static let port: UInt8 = 3
        public static let fragmentationNeeded: UInt8 = 4
    }

    public var type: UInt8
    public var code: UInt8
    public var restOfHeader: UInt32

    public static let length = 8

    public init(type: UInt8, code: UInt8, restOfHeader: UInt32 = 0) {
        self.type = type
        self.code = code
        self.restOfHeader = restOfHeader
    }

    /// An echo request or reply.
    public static func echo(reply: Bool, identifier: UInt16, sequence: UInt16) -> ICMPv4Header {
        ICMPv4Header(type: reply ? MessageType.echoReply : MessageType.echoRequest, code: 0,
                     restOfHeader: UInt32(identifier) << 16 | UInt32(sequence))
    }

    public var identifier: UInt16 { UInt16(restOfHeader >> 16) }
    public var sequence: UInt16 { UInt16(truncatingIfNeeded: restOfHeader) }
    public var encodedLength: Int { Self.length }

    /// Parses a whole ICMP message (header and payload), verifying its checksum.
    public static func parse(_ message: UnsafeRawBufferPointer, verifyChecksum: Bool = true) throws(WireError)
        -> ICMPv4Header
    {
        guard message.count >= 8 else { throw .truncated }
        if verifyChecksum && InternetChecksum.compute(message) != 0 { throw .badChecksum }
        return ICMPv4Header(type: message[0], code: message[1], restOfHeader: message.u32(4))
    }

    /// Writes the header into the first 8 bytes of `message` and the checksum over the whole message (the payload
    /// must already be in place after the header).
    public func emit(_ message: UnsafeMutableRawBufferPointer) {
        message[0] = type
        message[1] = code
        message.put(UInt16(0), 2)
        message.put(restOfHeader, 4)
        message.put(InternetChecksum.compute(UnsafeRawBufferPointer(message)), 2)
    }
}
