import DemiCore

/// The PDPIX state of a socket queue, shared by every network libOS. It decides the synchronous errors of each call
/// (the errno contract in docs/ERRNO.md) before any device is touched.
public enum SocketState: UInt8, Sendable, CustomStringConvertible {
    case unbound
    case bound
    case listening
    case connecting
    case connected
    /// Closing or closed: every call but a wait on an older token fails with `EBADF`.
    case closing

    public var description: String {
        switch self {
        case .unbound: "unbound"
        case .bound: "bound"
        case .listening: "listening"
        case .connecting: "connecting"
        case .connected: "connected"
        case .closing: "closing"
        }
    }
}

/// The synchronous checks of each call, by socket type and state. Each returns the errno to fail with, or nil.
public enum SocketRules {
    public static func bind(_ type: SocketType, _ state: SocketState) -> Errno? {
        switch state {
        case .unbound: nil
        case .bound, .listening, .connecting: .invalidArgument
        case .connected: type == .stream ? .alreadyConnected : .invalidArgument
        case .closing: .badDescriptor
        }
    }

    public static func listen(_ type: SocketType, _ state: SocketState, backlog: Int) -> Errno? {
        if type == .datagram { return .notSupported }
        switch state {
        case .closing: return .badDescriptor
        case .unbound: return .destinationAddressRequired
        case .connected: return .alreadyConnected
        case .connecting: return .invalidArgument
        case .bound, .listening: return backlog < 1 ? .invalidArgument : nil
        }
    }

    public static func accept(_ type: SocketType, _ state: SocketState) -> Errno? {
        if type == .datagram { return .notSupported }
        switch state {
        case .listening: return nil
        case .closing: return .badDescriptor
        default: return .invalidArgument
        }
    }

    public static func connect(_ type: SocketType, _ state: SocketState) -> Errno? {
        switch state {
        case .unbound, .bound: return nil
        case .listening: return .notSupported
        case .connecting: return .alreadyInProgress
        case .connected: return type == .stream ? .alreadyConnected : nil
        case .closing: return .badDescriptor
        }
    }

    /// `push` (no address): TCP must be connected; UDP must be connected (it has a default destination).
    public static func push(_ type: SocketType, _ state: SocketState) -> Errno? {
        switch state {
        case .connected: return nil
        case .closing: return .badDescriptor
        default: return type == .stream ? .notConnected : .destinationAddressRequired
        }
    }

    /// `pushto`: TCP ignores the address and must be connected; UDP may be in any open state.
    public static func pushTo(_ type: SocketType, _ state: SocketState) -> Errno? {
        if state == .closing { return .badDescriptor }
        if type == .stream { return state == .connected ? nil : .notConnected }
        return nil
    }

    /// `pop`: TCP must be connected (a listening socket is not); UDP must be bound (a local port to receive on).
    public static func pop(_ type: SocketType, _ state: SocketState) -> Errno? {
        switch state {
        case .closing: return .badDescriptor
        case .connected: return nil
        case .bound: return type == .datagram ? nil : .notConnected
        case .unbound: return type == .datagram ? .destinationAddressRequired : .notConnected
        case .listening, .connecting: return .notConnected
        }
    }
}
