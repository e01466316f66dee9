@_exported import DemiBuffers
@_exported import DemiCore
import DemiKernelSockets
import DemiSharedMemory
import DemiStackLibOS
import DemiDevices
import DemiInet
#if AFXDP
import DemiXDP
#endif
#if DPDK
import DemiDPDK
#endif
@_exported import DemiRuntime
import Foundation

/// One library OS instance: the PDPIX API over one device.
///
/// ```swift
/// let os = try LibOS()                         // LIBOS and CONFIG_PATH from the environment; catnap by default
/// let qd = try os.socket(.inet, .datagram)
/// try os.bind(qd, to: SocketAddressV4(.loopback, 9000))
/// let qt = try os.pop(qd)
/// let result = try os.wait(qt)                 // or: try await os.pop(qd) inside os.run { ... }
/// ```
///
/// Calls that start I/O (`accept`, `connect`, `push`, `pushTo`, `pop`, `asyncClose`) return a ``QToken``; the wait
/// calls run the libOS's scheduler on the calling thread until the operation completes. Every failure is an
/// ``Errno``. A `LibOS` belongs to the thread that created it (like upstream, one libOS per thread); it is not
/// `Sendable`.
public final class LibOS {
    /// The concrete libOS behind the facade. Dispatch is a `switch` on `backend` and a direct call on the matching
    /// `let` reference: no existentials, and no retain per call (binding an enum payload would retain it).
    @usableFromInline
    enum Backend {
        case kernelSockets
        case sharedMemory
        case rawSockets
        #if AFXDP
        case rawXDP
        #endif
        #if DPDK
        case dpdk
        #endif
    }

    @usableFromInline let backend: Backend
    /// Strong references that keep the libOS alive.
    let kernelOwner: KernelSocketLibOS?
    let sharedOwner: SharedMemoryLibOS?
    let rawOwner: RawSocketLibOS?
    #if DPDK
    var dpdkOwner: DPDKLibOS? = nil
    @exclusivity(unchecked) @usableFromInline var dpdk: Unmanaged<DPDKLibOS>? = nil
    #endif
    #if AFXDP
    let xdpOwner: XDPSocketLibOS?
    @usableFromInline let xdp: Unmanaged<XDPSocketLibOS>?
    #endif
    /// The same references, unmanaged: calling through them costs no retain and release per call. Only the one that
    /// matches `backend` is set.
    @usableFromInline let kernel: Unmanaged<KernelSocketLibOS>?
    @usableFromInline let shared: Unmanaged<SharedMemoryLibOS>?
    @usableFromInline let raw: Unmanaged<RawSocketLibOS>?

    /// Runs `body` on the libOS's buffer pool without retaining anything.
    @inlinable @inline(__always)
    func withPool<T>(_ body: (BufferPool) throws(Errno) -> T) throws(Errno) -> T {
        switch backend {
        case .kernelSockets: try onKernel { k throws(Errno) in try body(k.pool) }
        case .sharedMemory: try onShared { m throws(Errno) in try body(m.pool) }
        case .rawSockets: try onRaw { r throws(Errno) in try body(r.pool) }
#if DPDK
        case .dpdk: try onDPDK { r throws(Errno) in try body(r.pool) }
#endif
#if AFXDP
        case .rawXDP: try onXDP { r throws(Errno) in try body(r.pool) }
#endif
        }
    }

    /// Runs `body` on the kernel-socket libOS without retaining it (the facade owns it).
    @inlinable @inline(__always)
    func onKernel<T>(_ body: (KernelSocketLibOS) throws(Errno) -> T) throws(Errno) -> T {
        try kernel.unsafelyUnwrapped._withUnsafeGuaranteedRef { k in Result<T, Errno> { () throws(Errno) -> T in try body(k) } }.get()
    }

    /// Runs `body` on the raw-socket libOS (the user-space stack on AF_PACKET) without retaining it.
    @inlinable @inline(__always)
    func onRaw<T>(_ body: (RawSocketLibOS) throws(Errno) -> T) throws(Errno) -> T {
        try raw.unsafelyUnwrapped._withUnsafeGuaranteedRef { r in Result<T, Errno> { () throws(Errno) -> T in try body(r) } }.get()
    }

    #if DPDK
    /// Runs `body` on the DPDK libOS without retaining it.
    @inlinable @inline(__always)
    func onDPDK<T>(_ body: (DPDKLibOS) throws(Errno) -> T) throws(Errno) -> T {
        try dpdk.unsafelyUnwrapped._withUnsafeGuaranteedRef { r in Result<T, Errno> { () throws(Errno) -> T in try body(r) } }.get()
    }
    #endif

    #if AFXDP
    /// Runs `body` on the raw-socket libOS over AF_XDP without retaining it.
    @inlinable @inline(__always)
    func onXDP<T>(_ body: (XDPSocketLibOS) throws(Errno) -> T) throws(Errno) -> T {
        try xdp.unsafelyUnwrapped._withUnsafeGuaranteedRef { r in Result<T, Errno> { () throws(Errno) -> T in try body(r) } }.get()
    }
    #endif

    /// Runs `body` on the shared-memory libOS without retaining it.
    @inlinable @inline(__always)
    func onShared<T>(_ body: (SharedMemoryLibOS) throws(Errno) -> T) throws(Errno) -> T {
        try shared.unsafelyUnwrapped._withUnsafeGuaranteedRef { m in Result<T, Errno> { () throws(Errno) -> T in try body(m) } }.get()
    }
    public let name: LibOSName
    public let configuration: Configuration
    @exclusivity(unchecked) @usableFromInline var waitAnyRotor = 0
    @exclusivity(unchecked) @usableFromInline var asyncWaiters: [AsyncWaiter] = []

    /// Creates the libOS named by `LIBOS` (default: the kernel-socket libOS), configured from `CONFIG_PATH` and the
    /// environment.
    public convenience init() throws(LibOSError) {
        let env = ProcessInfo.processInfo.environment
        let name: LibOSName
        do { name = try env["LIBOS"].map { v throws(ConfigurationError) in try LibOSName(parsing: v) } ?? .default }
        catch { throw .configuration(error) }
        let config: Configuration
        do { config = try Configuration.fromEnvironment(env) } catch { throw .configuration(error) }
        try self.init(name, configuration: config)
    }

    /// Creates a libOS by name with an explicit configuration.
    public init(_ name: LibOSName, configuration: Configuration = Configuration()) throws(LibOSError) {
        self.name = name
        self.configuration = configuration
        switch name {
        case .kernelSockets:
            let k: KernelSocketLibOS
            do {
                k = try KernelSocketLibOS(options: configuration.kernelSocketOptions)
            } catch {
                throw .device(error)
            }
            kernelOwner = k
            sharedOwner = nil
            rawOwner = nil
            kernel = .passUnretained(k)
            shared = nil
            raw = nil
            #if AFXDP
            xdpOwner = nil
            xdp = nil
            #endif
            backend = .kernelSockets
        case .sharedMemory:
            let m = SharedMemoryLibOS(options: configuration.sharedMemoryOptions)
            kernelOwner = nil
            sharedOwner = m
            rawOwner = nil
            kernel = nil
            shared = .passUnretained(m)
            raw = nil
            #if AFXDP
            xdpOwner = nil
            xdp = nil
            #endif
            backend = .sharedMemory
        case .rawSockets:
            kernelOwner = nil
            sharedOwner = nil
            kernel = nil
            shared = nil
            if configuration.rawSocketDevice == .afXDP {
                #if AFXDP
                let x: XDPSocketLibOS
                do { x = try XDPSocketLibOS.make(configuration) } catch { throw .device(error) }
                rawOwner = nil
                raw = nil
                xdpOwner = x
                xdp = .passUnretained(x)
                backend = .rawXDP
                #else
                throw .unavailable("raw_socket.device af_xdp needs the AFXDP package trait (swift build --traits AFXDP)")
                #endif
            } else {
                let r: RawSocketLibOS
                do { r = try RawSocketLibOS.make(configuration) } catch { throw .device(error) }
                rawOwner = r
                raw = .passUnretained(r)
                #if AFXDP
                xdpOwner = nil
                xdp = nil
                #endif
                backend = .rawSockets
            }
        case .dpdk:
            #if DPDK
            let d: DPDKLibOS
            do { d = try DPDKLibOS.make(configuration) } catch { throw .deviceFailed("catnip: \(error)") }
            kernelOwner = nil
            sharedOwner = nil
            rawOwner = nil
            kernel = nil
            shared = nil
            raw = nil
            #if AFXDP
            xdpOwner = nil
            xdp = nil
            #endif
            dpdkOwner = d
            dpdk = .passUnretained(d)
            backend = .dpdk
            #else
            throw .unavailable("catnip needs the DPDK package trait (apt-get install libdpdk-dev; swift build --traits DPDK)")
            #endif
        }
    }

    /// The libOS's buffer pool (for `sgaalloc`-style allocation and statistics).
    @inlinable public var pool: BufferPool {
        switch backend {
        case .kernelSockets: kernel.unsafelyUnwrapped._withUnsafeGuaranteedRef { $0.pool }
        case .sharedMemory: shared.unsafelyUnwrapped._withUnsafeGuaranteedRef { $0.pool }
        case .rawSockets: raw.unsafelyUnwrapped._withUnsafeGuaranteedRef { $0.pool }
#if DPDK
        case .dpdk: dpdk.unsafelyUnwrapped._withUnsafeGuaranteedRef { $0.pool }
#endif
#if AFXDP
        case .rawXDP: xdp.unsafelyUnwrapped._withUnsafeGuaranteedRef { $0.pool }
#endif
        }
    }

    @inlinable public var scheduler: Scheduler {
        switch backend {
        case .kernelSockets: kernel.unsafelyUnwrapped._withUnsafeGuaranteedRef { $0.scheduler }
        case .sharedMemory: shared.unsafelyUnwrapped._withUnsafeGuaranteedRef { $0.scheduler }
        case .rawSockets: raw.unsafelyUnwrapped._withUnsafeGuaranteedRef { $0.scheduler }
#if DPDK
        case .dpdk: dpdk.unsafelyUnwrapped._withUnsafeGuaranteedRef { $0.scheduler }
#endif
#if AFXDP
        case .rawXDP: xdp.unsafelyUnwrapped._withUnsafeGuaranteedRef { $0.scheduler }
#endif
        }
    }

    /// Runs one pass of the libOS (devices, timers, runnable coroutines) without waiting.
    @inlinable public func poll() {
        switch backend {
        case .kernelSockets: kernel.unsafelyUnwrapped._withUnsafeGuaranteedRef { $0.poll(now: .now()) }
        case .sharedMemory: shared.unsafelyUnwrapped._withUnsafeGuaranteedRef { $0.poll(now: .now()) }
        case .rawSockets: raw.unsafelyUnwrapped._withUnsafeGuaranteedRef { $0.poll(now: .now()) }
#if DPDK
        case .dpdk: dpdk.unsafelyUnwrapped._withUnsafeGuaranteedRef { $0.poll(now: .now()) }
#endif
#if AFXDP
        case .rawXDP: xdp.unsafelyUnwrapped._withUnsafeGuaranteedRef { $0.poll(now: .now()) }
#endif
        }
    }

    /// Counters of the libOS, as name-value pairs (for `demi` and monitoring; not for the datapath).
    public var statistics: [(String, Int)] {
        switch backend {
        case .kernelSockets:
            let k = kernel.unsafelyUnwrapped.takeUnretainedValue()
            let s = k.statistics
            return [("send_calls", s.sendCalls), ("receive_calls", s.receiveCalls), ("would_block", s.wouldBlock),
                    ("epoll_waits", s.epollWaits), ("bytes_sent", s.bytesSent), ("bytes_received", s.bytesReceived),
                    ("buffers_in_use", k.pool.buffersInUse)]
        case .sharedMemory:
            let m = shared.unsafelyUnwrapped.takeUnretainedValue()
            return [("buffers_in_use", m.pool.buffersInUse), ("live_operations", m.scheduler.liveCount)]
        case .rawSockets:
            let r = raw.unsafelyUnwrapped.takeUnretainedValue()
            return Self.stackStatistics(r.device.statistics, r.totals, r.pool)
        #if AFXDP
        case .rawXDP:
            let r = xdp.unsafelyUnwrapped.takeUnretainedValue()
            return Self.stackStatistics(r.device.statistics, r.totals, r.pool)
        #endif
        #if DPDK
        case .dpdk:
            let r = dpdk.unsafelyUnwrapped.takeUnretainedValue()
            let d = r.device
            return Self.stackStatistics(d.statistics, r.totals, r.pool) + [
                ("dpdk_zero_copy_frames", d.zeroCopyTransmits), ("dpdk_attached_frames", d.attachedTransmits),
                ("dpdk_attached_pieces", d.attachedPieces), ("dpdk_mbuf_buffers", d.transmitBuffersAllocated),
                ("dpdk_copied_receives", d.copiedReceives)]
        #endif
        }
    }

    static func stackStatistics(_ d: DeviceStatistics, _ s: StackStatistics, _ pool: BufferPool) -> [(String, Int)] {
        var pairs = [("device_frames_received", d.receivedFrames), ("device_frames_sent", d.transmittedFrames),
                     ("device_drops", d.droppedFrames)]
        pairs += s.pairs
        pairs.append(("buffers_in_use", pool.buffersInUse))
        return pairs
    }

    // MARK: - Control path

    /// Creates a socket queue. Only `.inet` with `.stream` (TCP) or `.datagram` (UDP) is supported (`ENOTSUP`).
    @inlinable
    public func socket(_ domain: AddressFamily = .inet, _ type: SocketType) throws(Errno) -> QDesc {
        switch backend {
        case .kernelSockets: try onKernel { k throws(Errno) in try k.socket(domain: domain, type: type) }
        case .rawSockets: try onRaw { r throws(Errno) in try r.socket(domain: domain, type: type) }
#if DPDK
        case .dpdk: try onDPDK { r throws(Errno) in try r.socket(domain: domain, type: type) }
#endif
#if AFXDP
        case .rawXDP: try onXDP { r throws(Errno) in try r.socket(domain: domain, type: type) }
#endif
        case .sharedMemory: throw .notSupported
        }
    }

    /// Binds a socket to a local address. `0.0.0.0` and port 0 are wildcards, as on Linux.
    @inlinable
    public func bind(_ qd: QDesc, to address: SocketAddressV4) throws(Errno) {
        switch backend {
        case .kernelSockets: try onKernel { k throws(Errno) in try k.bind(qd, to: address) }
        case .rawSockets: try onRaw { r throws(Errno) in try r.bind(qd, to: address) }
#if DPDK
        case .dpdk: try onDPDK { r throws(Errno) in try r.bind(qd, to: address) }
#endif
#if AFXDP
        case .rawXDP: try onXDP { r throws(Errno) in try r.bind(qd, to: address) }
#endif
        case .sharedMemory: throw .notSupported
        }
    }

    /// Marks a bound TCP socket as accepting connections. `backlog` must be at least 1.
    @inlinable
    public func listen(_ qd: QDesc, backlog: Int) throws(Errno) {
        switch backend {
        case .kernelSockets: try onKernel { k throws(Errno) in try k.listen(qd, backlog: backlog) }
        case .rawSockets: try onRaw { r throws(Errno) in try r.listen(qd, backlog: backlog) }
#if DPDK
        case .dpdk: try onDPDK { r throws(Errno) in try r.listen(qd, backlog: backlog) }
#endif
#if AFXDP
        case .rawXDP: try onXDP { r throws(Errno) in try r.listen(qd, backlog: backlog) }
#endif
        case .sharedMemory: throw .notSupported
        }
    }

    /// Starts accepting one connection; the result carries the new queue and the peer's address.
    @inlinable
    public func accept(_ qd: QDesc) throws(Errno) -> QToken {
        switch backend {
        case .kernelSockets: try onKernel { k throws(Errno) in try k.accept(qd) }
        case .rawSockets: try onRaw { r throws(Errno) in try r.accept(qd) }
#if DPDK
        case .dpdk: try onDPDK { r throws(Errno) in try r.accept(qd) }
#endif
#if AFXDP
        case .rawXDP: try onXDP { r throws(Errno) in try r.accept(qd) }
#endif
        case .sharedMemory: throw .notSupported
        }
    }

    /// Starts connecting (TCP), or sets the default destination (UDP).
    @inlinable
    public func connect(_ qd: QDesc, to address: SocketAddressV4) throws(Errno) -> QToken {
        switch backend {
        case .kernelSockets: try onKernel { k throws(Errno) in try k.connect(qd, to: address) }
        case .rawSockets: try onRaw { r throws(Errno) in try r.connect(qd, to: address) }
#if DPDK
        case .dpdk: try onDPDK { r throws(Errno) in try r.connect(qd, to: address) }
#endif
#if AFXDP
        case .rawXDP: try onXDP { r throws(Errno) in try r.connect(qd, to: address) }
#endif
        case .sharedMemory: throw .notSupported
        }
    }

    /// Closes a queue. Its pending operations complete as failed with `ECANCELED`; their tokens stay waitable.
    @inlinable
    public func close(_ qd: QDesc) throws(Errno) {
        switch backend {
        case .kernelSockets: try onKernel { k throws(Errno) in try k.close(qd) }
        case .rawSockets: try onRaw { r throws(Errno) in try r.close(qd) }
#if DPDK
        case .dpdk: try onDPDK { r throws(Errno) in try r.close(qd) }
#endif
#if AFXDP
        case .rawXDP: try onXDP { r throws(Errno) in try r.close(qd) }
#endif
        case .sharedMemory: try onShared { m throws(Errno) in try m.close(qd) }
        }
    }

    /// Closes a queue and returns a token that completes with opcode `CLOSE` once it is closed.
    @inlinable
    public func asyncClose(_ qd: QDesc) throws(Errno) -> QToken {
        switch backend {
        case .kernelSockets: try onKernel { k throws(Errno) in try k.asyncClose(qd) }
        case .rawSockets: try onRaw { r throws(Errno) in try r.asyncClose(qd) }
#if DPDK
        case .dpdk: try onDPDK { r throws(Errno) in try r.asyncClose(qd) }
#endif
#if AFXDP
        case .rawXDP: try onXDP { r throws(Errno) in try r.asyncClose(qd) }
#endif
        case .sharedMemory: try onShared { m throws(Errno) in try m.asyncClose(qd) }
        }
    }

    /// The local address of a socket (a real `getsockname`, unlike upstream's `ENOSYS`).
    @inlinable
    public func localAddress(_ qd: QDesc) throws(Errno) -> SocketAddressV4 {
        switch backend {
        case .kernelSockets: try onKernel { k throws(Errno) in try k.localAddress(qd) }
        case .rawSockets: try onRaw { r throws(Errno) in try r.localAddress(qd) }
#if DPDK
        case .dpdk: try onDPDK { r throws(Errno) in try r.localAddress(qd) }
#endif
#if AFXDP
        case .rawXDP: try onXDP { r throws(Errno) in try r.localAddress(qd) }
#endif
        case .sharedMemory: throw .notSupported
        }
    }

    /// The peer address of a connected socket (`ENOTCONN` otherwise).
    @inlinable
    public func peerAddress(_ qd: QDesc) throws(Errno) -> SocketAddressV4 {
        switch backend {
        case .kernelSockets: try onKernel { k throws(Errno) in try k.peerAddress(qd) }
        case .rawSockets: try onRaw { r throws(Errno) in try r.peerAddress(qd) }
#if DPDK
        case .dpdk: try onDPDK { r throws(Errno) in try r.peerAddress(qd) }
#endif
#if AFXDP
        case .rawXDP: try onXDP { r throws(Errno) in try r.peerAddress(qd) }
#endif
        case .sharedMemory: throw .notSupported
        }
    }

    @inlinable
    public func setOption(_ qd: QDesc, _ option: SocketOption) throws(Errno) {
        switch backend {
        case .kernelSockets: try onKernel { k throws(Errno) in try k.setOption(qd, option) }
        case .rawSockets: try onRaw { r throws(Errno) in try r.setOption(qd, option) }
#if DPDK
        case .dpdk: try onDPDK { r throws(Errno) in try r.setOption(qd, option) }
#endif
#if AFXDP
        case .rawXDP: try onXDP { r throws(Errno) in try r.setOption(qd, option) }
#endif
        case .sharedMemory: throw .notSupported
        }
    }

    @inlinable
    public func option(_ qd: QDesc, _ name: SocketOptionName) throws(Errno) -> SocketOption {
        switch backend {
        case .kernelSockets: try onKernel { k throws(Errno) in try k.option(qd, name) }
        case .rawSockets: try onRaw { r throws(Errno) in try r.option(qd, name) }
#if DPDK
        case .dpdk: try onDPDK { r throws(Errno) in try r.option(qd, name) }
#endif
#if AFXDP
        case .rawXDP: try onXDP { r throws(Errno) in try r.option(qd, name) }
#endif
        case .sharedMemory: throw .notSupported
        }
    }

    // MARK: - Memory queues and pipes (shared-memory libOS)

    /// Creates a named pipe to another process (`demi_create_pipe`); `ENOTSUP` on libOSes without shared memory.
    public func createPipe(_ name: String) throws(Errno) -> QDesc {
        guard let m = sharedOwner else { throw .notSupported }
        return try m.createPipe(name)
    }

    /// Attaches to a pipe another process created (`demi_open_pipe`).
    public func openPipe(_ name: String) throws(Errno) -> QDesc {
        guard let m = sharedOwner else { throw .notSupported }
        return try m.openPipe(name)
    }

    /// Creates an in-process memory queue (PDPIX's `queue()`): push hands arrays over without copying.
    public func queue() throws(Errno) -> QDesc {
        guard let m = sharedOwner else { throw .notSupported }
        return try m.queue()
    }

    // MARK: - Data path

    /// Starts sending an array on a connected queue. The libOS keeps its own reference to every segment until the
    /// push completes, so the application may `sgafree` right away.
    @inlinable @inline(__always)
    public func push(_ qd: QDesc, _ sga: ScatterGatherArray) throws(Errno) -> QToken {
        switch backend {
        case .kernelSockets: try onKernel { k throws(Errno) in try k.push(qd, sga) }
        case .rawSockets: try onRaw { r throws(Errno) in try r.push(qd, sga) }
#if DPDK
        case .dpdk: try onDPDK { r throws(Errno) in try r.push(qd, sga) }
#endif
#if AFXDP
        case .rawXDP: try onXDP { r throws(Errno) in try r.push(qd, sga) }
#endif
        case .sharedMemory: try onShared { m throws(Errno) in try m.push(qd, sga) }
        }
    }

    /// Starts sending an array to an address (UDP; TCP ignores the address).
    @inlinable
    public func pushTo(_ qd: QDesc, _ sga: ScatterGatherArray, to address: SocketAddressV4) throws(Errno) -> QToken {
        switch backend {
        case .kernelSockets: try onKernel { k throws(Errno) in try k.pushTo(qd, sga, to: address) }
        case .rawSockets: try onRaw { r throws(Errno) in try r.pushTo(qd, sga, to: address) }
#if DPDK
        case .dpdk: try onDPDK { r throws(Errno) in try r.pushTo(qd, sga, to: address) }
#endif
#if AFXDP
        case .rawXDP: try onXDP { r throws(Errno) in try r.pushTo(qd, sga, to: address) }
#endif
        case .sharedMemory: throw .notSupported
        }
    }

    /// Starts receiving. The result's array belongs to the application; a zero-length array is a TCP end-of-file.
    @inlinable @inline(__always)
    public func pop(_ qd: QDesc) throws(Errno) -> QToken {
        switch backend {
        case .kernelSockets: try onKernel { k throws(Errno) in try k.pop(qd) }
        case .rawSockets: try onRaw { r throws(Errno) in try r.pop(qd) }
#if DPDK
        case .dpdk: try onDPDK { r throws(Errno) in try r.pop(qd) }
#endif
#if AFXDP
        case .rawXDP: try onXDP { r throws(Errno) in try r.pop(qd) }
#endif
        case .sharedMemory: try onShared { m throws(Errno) in try m.pop(qd) }
        }
    }

    // MARK: - Waiting

    /// Waits for one operation and consumes its token. A nil timeout waits for ever; zero polls once.
    @inlinable @inline(__always)
    public func wait(_ qt: QToken, timeout: Duration? = nil) throws(Errno) -> QResult {
        if case .sharedMemory = backend, timeout == nil {
            // catmem's short path (an inline push, or the pop a ping-pong waits for): the completion comes back in
            // registers and the result is built once, here, in this call's own return buffer. A result copied from
            // one just stored field by field (as through `onShared`'s `Result`) costs a wide load of narrow stores,
            // which waits for every older store to reach the cache, such as the shared-memory stores of the push.
            let f = shared.unsafelyUnwrapped._withUnsafeGuaranteedRef { m in m.waitFast(qt) }
            switch f.code {
            case .push: return QResult(opcode: .push, qd: f.qd, qt: qt)
            case .pop: return QResult(opcode: .pop, qd: f.qd, qt: qt, value: .sga(ScatterGatherArray(head: f.buffer)))
            default: break
            }
        }
        return try waitGeneral(qt, timeout: timeout)
    }

    /// ``wait(_:timeout:)`` past catmem's short path: out of line, so the short path is all a caller inlines.
    @usableFromInline @inline(never)
    func waitGeneral(_ qt: QToken, timeout: Duration?) throws(Errno) -> QResult {
        switch backend {
        case .kernelSockets: try onKernel { k throws(Errno) in try k.wait(qt, timeout: timeout) }
        case .rawSockets: try onRaw { r throws(Errno) in try r.wait(qt, timeout: timeout) }
#if DPDK
        case .dpdk: try onDPDK { r throws(Errno) in try r.wait(qt, timeout: timeout) }
#endif
#if AFXDP
        case .rawXDP: try onXDP { r throws(Errno) in try r.wait(qt, timeout: timeout) }
#endif
        case .sharedMemory: try onShared { m throws(Errno) in try m.wait(qt, timeout: timeout) }
        }
    }

    /// Waits for the first of several operations; returns its index in `qts` and its result.
    @inlinable
    public func waitAny(_ qts: UnsafeBufferPointer<QToken>, timeout: Duration? = nil) throws(Errno) -> (Int, QResult) {
        switch backend {
        case .kernelSockets: try onKernel { k throws(Errno) in try k.waitAny(qts, timeout: timeout, rotor: &waitAnyRotor) }
        case .rawSockets: try onRaw { r throws(Errno) in try r.waitAny(qts, timeout: timeout, rotor: &waitAnyRotor) }
#if DPDK
        case .dpdk: try onDPDK { r throws(Errno) in try r.waitAny(qts, timeout: timeout, rotor: &waitAnyRotor) }
#endif
#if AFXDP
        case .rawXDP: try onXDP { r throws(Errno) in try r.waitAny(qts, timeout: timeout, rotor: &waitAnyRotor) }
#endif
        case .sharedMemory: try onShared { m throws(Errno) in try m.waitAny(qts, timeout: timeout, rotor: &waitAnyRotor) }
        }
    }

    /// Waits for the first of several operations; returns its index in `qts` and its result.
    @inlinable
    public func waitAny(_ qts: [QToken], timeout: Duration? = nil) throws(Errno) -> (Int, QResult) {
        try qts.withUnsafeBufferPointer { (b: UnsafeBufferPointer<QToken>) throws(Errno) -> (Int, QResult) in
            try waitAny(b, timeout: timeout)
        }
    }

    /// Waits until any operation completes, then returns up to `out.count` results in completion order.
    @inlinable
    public func waitNext(into out: UnsafeMutableBufferPointer<QResult>, timeout: Duration? = nil) throws(Errno) -> Int {
        switch backend {
        case .kernelSockets: try onKernel { k throws(Errno) in try k.waitNext(into: out, timeout: timeout) }
        case .rawSockets: try onRaw { r throws(Errno) in try r.waitNext(into: out, timeout: timeout) }
#if DPDK
        case .dpdk: try onDPDK { r throws(Errno) in try r.waitNext(into: out, timeout: timeout) }
#endif
#if AFXDP
        case .rawXDP: try onXDP { r throws(Errno) in try r.waitNext(into: out, timeout: timeout) }
#endif
        case .sharedMemory: try onShared { m throws(Errno) in try m.waitNext(into: out, timeout: timeout) }
        }
    }

    /// Waits until any operation completes, then returns up to `n` results in completion order.
    public func waitNext(_ n: Int, timeout: Duration? = nil) throws(Errno) -> [QResult] {
        guard n > 0 else { throw .invalidArgument }
        let buf = UnsafeMutableBufferPointer<QResult>.allocate(capacity: n)
        defer { buf.deallocate() }
        let k = try waitNext(into: buf, timeout: timeout)
        return Array(buf[0..<k])
    }

    // MARK: - Memory

    /// Allocates an array of one segment of `size` bytes from the libOS's pool. Sizes above 64 KiB are allowed.
    /// Throws `EINVAL` for a size of zero or less, `ENOMEM` when memory runs out.
    @inlinable
    public func sgaalloc(_ size: Int) throws(Errno) -> ScatterGatherArray {
        guard size > 0 else { throw .invalidArgument }
        let buffer: DemiBuffer?
#if DPDK
        // catnip: device memory (an mbuf) where it fits, so a push reaches the driver without a copy.
        if backend == .dpdk {
            buffer = try onDPDK { r throws(Errno) in r.allocateBuffer(size: size) }
        } else {
            buffer = try withPool { p throws(Errno) in p.allocate(size: size) }
        }
#else
        buffer = try withPool { p throws(Errno) in p.allocate(size: size) }
#endif
        guard let b = buffer else { throw .noMemory }
        b.header.pointee.flags |= BufferHeader.Flags.appOwned
        return ScatterGatherArray(head: b)
    }

    /// Allocates an array holding a copy of `bytes` (a convenience for tools and tests).
    public func sgaalloc(copying bytes: some Collection<UInt8>) throws(Errno) -> ScatterGatherArray {
        let sga = try sgaalloc(max(bytes.count, 1))
        let b = sga.head!
        b.setCount(bytes.count)
        _ = bytes.withContiguousStorageIfAvailable { b.write(UnsafeRawBufferPointer($0)) }
            ?? Array(bytes).withUnsafeBytes { b.write($0) }
        return sga
    }

    /// Returns the application's reference to every segment of `sga`. A double free or a foreign array is `EINVAL`.
    @inlinable @inline(__always)
    public func sgafree(_ sga: ScatterGatherArray) throws(Errno) {
        guard let h = sga.head else { throw .invalidArgument }
        // catmem: a small message's buffer may go straight back as the receive buffer of its queue's next pop.
        if case .sharedMemory = backend, try onShared({ m throws(Errno) in try m.keepAsSpare(h) }) { return }
        try freeToPool(h)
    }

    /// ``sgafree(_:)`` through the pool: out of line, so catmem's short path is all a caller inlines.
    @usableFromInline @inline(never)
    func freeToPool(_ head: DemiBuffer) throws(Errno) {
        try withPool { p throws(Errno) in try p.freeFromApplication(head) }
    }
}

/// Why a libOS could not be created.
public enum LibOSError: Error, CustomStringConvertible, Sendable {
    case configuration(ConfigurationError)
    case device(Errno)
    /// The libOS or device was not built in (a package trait is off).
    case unavailable(String)
    /// The device could not be set up (the message says which step failed).
    case deviceFailed(String)

    /// The errno reported at the C ABI.
    public var errno: Errno {
        switch self {
        case .configuration(.unknownLibOS): .invalidArgument
        case .configuration(.unreadableFile): .noEntry
        case .configuration: .invalidArgument
        case .device(let e): e
        case .unavailable: .notSupported
        case .deviceFailed: .noDevice
        }
    }

    public var description: String {
        switch self {
        case .configuration(let c): c.description
        case .device(let e): "device initialisation failed: \(e)"
        case .unavailable(let why): why
        case .deviceFailed(let why): why
        }
    }
}
