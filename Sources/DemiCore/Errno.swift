#if canImport(Glibc)
import Glibc
#endif

/// A POSIX error number: the one error type of every PDPIX call.
///
/// Calls that can fail throw `Errno` (typed throws, so a failure never allocates). Failed operations report one in
/// their ``QResult``. The raw value is the Linux errno, so values cross the C ABI unchanged.
public struct Errno: Error, RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: Int32

    @inlinable public init(rawValue: Int32) { self.rawValue = rawValue }

    /// Operation not permitted. The corresponding C error is `EPERM`.
    public static var notPermitted: Errno { Errno(rawValue: 1) }
    /// No such entry. The corresponding C error is `ENOENT`.
    public static var noEntry: Errno { Errno(rawValue: 2) }
    /// Interrupted call. The corresponding C error is `EINTR`.
    public static var interrupted: Errno { Errno(rawValue: 4) }
    /// Input/output error. The corresponding C error is `EIO`.
    public static var ioError: Errno { Errno(rawValue: 5) }
    /// Bad file (queue) descriptor. The corresponding C error is `EBADF`.
    public static var badDescriptor: Errno { Errno(rawValue: 9) }
    /// Resource temporarily unavailable. The corresponding C error is `EAGAIN`.
    public static var wouldBlock: Errno { Errno(rawValue: 11) }
    /// Out of memory. The corresponding C error is `ENOMEM`.
    public static var noMemory: Errno { Errno(rawValue: 12) }
    /// Permission denied. The corresponding C error is `EACCES`.
    public static var permissionDenied: Errno { Errno(rawValue: 13) }
    /// Bad address. The corresponding C error is `EFAULT`.
    public static var badAddress: Errno { Errno(rawValue: 14) }
    /// Resource busy. The corresponding C error is `EBUSY`.
    public static var busy: Errno { Errno(rawValue: 16) }
    /// Already exists. The corresponding C error is `EEXIST`.
    public static var exists: Errno { Errno(rawValue: 17) }
    /// No such device. The corresponding C error is `ENODEV`.
    public static var noDevice: Errno { Errno(rawValue: 19) }
    /// Invalid argument. The corresponding C error is `EINVAL`.
    public static var invalidArgument: Errno { Errno(rawValue: 22) }
    /// Too many open queues. The corresponding C error is `EMFILE`.
    public static var tooManyOpenFiles: Errno { Errno(rawValue: 24) }
    /// Broken pipe. The corresponding C error is `EPIPE`.
    public static var brokenPipe: Errno { Errno(rawValue: 32) }
    /// Result out of range. The corresponding C error is `ERANGE`.
    public static var outOfRange: Errno { Errno(rawValue: 34) }
    /// Function not implemented (also: the libOS is not initialised). The corresponding C error is `ENOSYS`.
    public static var notImplemented: Errno { Errno(rawValue: 38) }
    /// Protocol error (also: a shared-memory pipe of another format version). The corresponding C error is `EPROTO`.
    public static var protocolError: Errno { Errno(rawValue: 71) }
    /// Bad message. The corresponding C error is `EBADMSG`.
    public static var badMessage: Errno { Errno(rawValue: 74) }
    /// Message too long. The corresponding C error is `EMSGSIZE`.
    public static var messageTooLong: Errno { Errno(rawValue: 90) }
    /// Destination address required. The corresponding C error is `EDESTADDRREQ`.
    public static var destinationAddressRequired: Errno { Errno(rawValue: 89) }
    /// Protocol not available (unknown socket option). The corresponding C error is `ENOPROTOOPT`.
    public static var protocolNotAvailable: Errno { Errno(rawValue: 92) }
    /// Protocol not supported. The corresponding C error is `EPROTONOSUPPORT`.
    public static var protocolNotSupported: Errno { Errno(rawValue: 93) }
    /// Operation not supported. The corresponding C error is `EOPNOTSUPP` (`ENOTSUP` on Linux).
    public static var notSupported: Errno { Errno(rawValue: 95) }
    /// Address family not supported. The corresponding C error is `EAFNOSUPPORT`.
    public static var addressFamilyNotSupported: Errno { Errno(rawValue: 97) }
    /// Address in use. The corresponding C error is `EADDRINUSE`.
    public static var addressInUse: Errno { Errno(rawValue: 98) }
    /// Address not available. The corresponding C error is `EADDRNOTAVAIL`.
    public static var addressNotAvailable: Errno { Errno(rawValue: 99) }
    /// Network unreachable. The corresponding C error is `ENETUNREACH`.
    public static var networkUnreachable: Errno { Errno(rawValue: 101) }
    /// Connection aborted. The corresponding C error is `ECONNABORTED`.
    public static var connectionAborted: Errno { Errno(rawValue: 103) }
    /// Connection reset by peer. The corresponding C error is `ECONNRESET`.
    public static var connectionReset: Errno { Errno(rawValue: 104) }
    /// No buffer space. The corresponding C error is `ENOBUFS`.
    public static var noBufferSpace: Errno { Errno(rawValue: 105) }
    /// Already connected. The corresponding C error is `EISCONN`.
    public static var alreadyConnected: Errno { Errno(rawValue: 106) }
    /// Not connected. The corresponding C error is `ENOTCONN`.
    public static var notConnected: Errno { Errno(rawValue: 107) }
    /// Timed out. The corresponding C error is `ETIMEDOUT`.
    public static var timedOut: Errno { Errno(rawValue: 110) }
    /// Connection refused. The corresponding C error is `ECONNREFUSED`.
    public static var connectionRefused: Errno { Errno(rawValue: 111) }
    /// Host unreachable. The corresponding C error is `EHOSTUNREACH`.
    public static var hostUnreachable: Errno { Errno(rawValue: 113) }
    /// Operation already in progress. The corresponding C error is `EALREADY`.
    public static var alreadyInProgress: Errno { Errno(rawValue: 114) }
    /// Operation now in progress. The corresponding C error is `EINPROGRESS`.
    public static var inProgress: Errno { Errno(rawValue: 115) }
    /// Operation canceled. The corresponding C error is `ECANCELED`.
    public static var canceled: Errno { Errno(rawValue: 125) }

    /// The symbolic name, e.g. `EINVAL`, or `E<number>` for codes this table does not name.
    public var name: String {
        switch rawValue {
        case 1: "EPERM"
        case 2: "ENOENT"
        case 4: "EINTR"
        case 5: "EIO"
        case 9: "EBADF"
        case 11: "EAGAIN"
        case 12: "ENOMEM"
        case 13: "EACCES"
        case 14: "EFAULT"
        case 16: "EBUSY"
        case 17: "EEXIST"
        case 19: "ENODEV"
        case 22: "EINVAL"
        case 24: "EMFILE"
        case 32: "EPIPE"
        case 34: "ERANGE"
        case 38: "ENOSYS"
        case 71: "EPROTO"
        case 74: "EBADMSG"
        case 89: "EDESTADDRREQ"
        case 90: "EMSGSIZE"
        case 92: "ENOPROTOOPT"
        case 93: "EPROTONOSUPPORT"
        case 95: "ENOTSUP"
        case 97: "EAFNOSUPPORT"
        case 98: "EADDRINUSE"
        case 99: "EADDRNOTAVAIL"
        case 101: "ENETUNREACH"
        case 103: "ECONNABORTED"
        case 104: "ECONNRESET"
        case 105: "ENOBUFS"
        case 106: "EISCONN"
        case 107: "ENOTCONN"
        case 110: "ETIMEDOUT"
        case 111: "ECONNREFUSED"
        case 113: "EHOSTUNREACH"
        case 114: "EALREADY"
        case 115: "EINPROGRESS"
        case 125: "ECANCELED"
        default: "E\(rawValue)"
        }
    }

    public var description: String {
        #if canImport(Glibc)
        if let s = strerror(rawValue) { return "\(name) (\(String(cString: s)))" }
        #endif
        return name
    }

    /// The calling thread's current C `errno`.
    @inlinable public static var current: Errno {
        #if canImport(Glibc)
        Errno(rawValue: Glibc.errno)
        #else
        Errno(rawValue: 0)
        #endif
    }
}
