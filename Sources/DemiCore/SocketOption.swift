/// Socket options reachable through `setsockopt`/`getsockopt`.
public enum SocketOption: Hashable, Sendable {
    /// `SO_LINGER`: nil is off; a value closes with a wait of up to that many seconds (0 resets the connection).
    case linger(seconds: Int?)
    /// `TCP_NODELAY`: true disables Nagle's algorithm.
    case noDelay(Bool)
    /// `SO_KEEPALIVE`.
    case keepAlive(Bool)
    /// `SO_REUSEADDR`.
    case reuseAddress(Bool)

    public var name: SocketOptionName {
        switch self {
        case .linger: .linger
        case .noDelay: .noDelay
        case .keepAlive: .keepAlive
        case .reuseAddress: .reuseAddress
        }
    }
}

/// The name of a ``SocketOption``, for `getsockopt`.
public enum SocketOptionName: Hashable, Sendable, CaseIterable {
    case linger
    case noDelay
    case keepAlive
    case reuseAddress
}
