/// A queue descriptor: names an I/O queue (a socket, a pipe, a memory queue) inside one libOS.
///
/// As in upstream Demikernel, descriptors are small integers starting at ``QueueDescriptor/base`` and freed values
/// are reused.
public struct QueueDescriptor: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: Int32
    @inlinable public init(rawValue: Int32) { self.rawValue = rawValue }

    /// The first descriptor handed out (upstream's `BASE_QD`).
    public static var base: Int32 { 500 }

    public var description: String { "qd\(rawValue)" }
}

public typealias QDesc = QueueDescriptor

/// A queue token: names one asynchronous operation (accept, connect, push, pop, close) until a wait consumes it.
///
/// Tokens are opaque. Internally the low 32 bits select a scheduler slot and the high 32 bits are that slot's
/// generation, so a stale, consumed or forged token is rejected in constant time.
public struct QueueToken: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    @inlinable public init(rawValue: UInt64) { self.rawValue = rawValue }
    public var description: String { "qt\(rawValue)" }
}

public typealias QToken = QueueToken

/// What an operation was, as reported in its result. Raw values match upstream's `demi_opcode_t`.
public enum OperationCode: UInt32, Sendable, CustomStringConvertible {
    case invalid = 0
    case push = 1
    case pop = 2
    case accept = 3
    case connect = 4
    case close = 5
    case failed = 6

    public var description: String {
        switch self {
        case .invalid: "INVALID"
        case .push: "PUSH"
        case .pop: "POP"
        case .accept: "ACCEPT"
        case .connect: "CONNECT"
        case .close: "CLOSE"
        case .failed: "FAILED"
        }
    }
}

/// Socket types PDPIX knows.
public enum SocketType: Int32, Sendable {
    /// A reliable byte stream (TCP). The value is Linux's `SOCK_STREAM`.
    case stream = 1
    /// Datagrams (UDP). The value is Linux's `SOCK_DGRAM`.
    case datagram = 2
}

/// Address families. Only IPv4 is implemented.
public enum AddressFamily: Int32, Sendable {
    case inet = 2
    case inet6 = 10
}
