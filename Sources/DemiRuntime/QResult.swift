import DemiBuffers
import DemiCore

/// The result of one completed operation, returned by the wait calls.
@frozen
public struct QResult: @unchecked Sendable, CustomStringConvertible {
    /// What the operation was; ``OperationCode/failed`` if it failed.
    public var opcode: OperationCode
    /// The queue the operation ran on (for an accept: the listening queue).
    public var qd: QDesc
    /// The operation's token.
    public var qt: QToken
    /// The error of a failed operation; nil on success.
    public var error: Errno?
    /// What the operation produced.
    public var value: Value

    @frozen
    public enum Value: @unchecked Sendable {
        case none
        /// A popped scatter-gather array, owned by the application (free it with `sgafree`). A TCP end-of-file is an
        /// array with one zero-length segment.
        case sga(ScatterGatherArray)
        /// The queue of an accepted connection and the peer's address.
        case accepted(QDesc, SocketAddressV4)
    }

    @inlinable
    public init(opcode: OperationCode, qd: QDesc, qt: QToken, error: Errno? = nil, value: Value = .none) {
        self.opcode = opcode
        self.qd = qd
        self.qt = qt
        self.error = error
        self.value = value
    }

    /// A failed result.
    @inlinable
    public static func failure(_ qd: QDesc, _ qt: QToken, _ error: Errno) -> QResult {
        QResult(opcode: .failed, qd: qd, qt: qt, error: error)
    }

    /// The popped array, if this is a successful pop.
    @inlinable public var sga: ScatterGatherArray? {
        if case .sga(let s) = value { return s }
        return nil
    }

    public var description: String {
        var s = "\(opcode) \(qd) \(qt)"
        if let error { s += " error=\(error.name)" }
        switch value {
        case .none: break
        case .sga(let a): s += " sga(\(a.count) bytes\(a.address.map { " from \($0)" } ?? ""))"
        case .accepted(let q, let a): s += " accepted(\(q) from \(a))"
        }
        return s
    }
}
