import DemiBuffers
import DemiCore

/// The PDPIX calls every network libOS implements (upstream's `NetworkTransport` seam).
///
/// The facade holds concrete libOS types and dispatches with a `switch`, so this protocol documents and checks the
/// contract; it is not used as an existential on the datapath.
public protocol NetworkLibOS: PollingLibOS {
    var pool: BufferPool { get }
    func socket(domain: AddressFamily, type: SocketType) throws(Errno) -> QDesc
    func bind(_ qd: QDesc, to address: SocketAddressV4) throws(Errno)
    func listen(_ qd: QDesc, backlog: Int) throws(Errno)
    func accept(_ qd: QDesc) throws(Errno) -> QToken
    func connect(_ qd: QDesc, to address: SocketAddressV4) throws(Errno) -> QToken
    func close(_ qd: QDesc) throws(Errno)
    func asyncClose(_ qd: QDesc) throws(Errno) -> QToken
    func push(_ qd: QDesc, _ sga: ScatterGatherArray) throws(Errno) -> QToken
    func pushTo(_ qd: QDesc, _ sga: ScatterGatherArray, to address: SocketAddressV4) throws(Errno) -> QToken
    func pop(_ qd: QDesc) throws(Errno) -> QToken
    func localAddress(_ qd: QDesc) throws(Errno) -> SocketAddressV4
    func peerAddress(_ qd: QDesc) throws(Errno) -> SocketAddressV4
    func setOption(_ qd: QDesc, _ option: SocketOption) throws(Errno)
    func option(_ qd: QDesc, _ name: SocketOptionName) throws(Errno) -> SocketOption
}
