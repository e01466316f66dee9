import DemiBuffers
import DemiCore

/// The record of one application operation (one coroutine per operation), kept in its scheduler slot.
///
/// One plain record serves every libOS; each libOS interprets `progress` and `aux`. Keeping it free of references and
/// existentials lets the scheduler store it in unmanaged memory and lets the libOS poll it with a static `switch`.
@frozen
public struct Operation: @unchecked Sendable {
    public var code: OperationCode
    public var qd: QDesc
    /// The data of a push (the libOS holds one reference on each segment until completion).
    public var sga: ScatterGatherArray
    /// The destination of a pushto or connect.
    public var address: SocketAddressV4?
    /// Bytes of the push already handed on, or other libOS-defined progress.
    public var progress: Int
    /// Intrusive link to the next operation queued on the same queue (a task index, or ``Operation/none``).
    public var link: UInt32
    /// libOS-defined.
    public var aux: UInt64

    public static var none: UInt32 { .max }

    @inlinable
    public init(code: OperationCode, qd: QDesc, sga: ScatterGatherArray = .empty, address: SocketAddressV4? = nil) {
        self.code = code
        self.qd = qd
        self.sga = sga
        self.address = address
        progress = 0
        link = Operation.none
        aux = 0
    }
}
