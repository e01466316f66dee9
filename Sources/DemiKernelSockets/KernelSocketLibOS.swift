#if canImport(Glibc)
import Glibc
#endif
import CDemiLinux
import DemiBuffers
import DemiCore
import DemiRuntime

/// How a kernel-socket libOS learns that a blocked operation may proceed.
public enum KernelPollMode: String, Sendable, CaseIterable {
    /// Retry every blocked operation's system call on every pass (no epoll). Lowest latency with few operations.
    case busy
    /// Park blocked operations and ask epoll (edge-triggered, zero timeout) once per pass which queues are ready.
    case epoll
    /// Busy-poll while at most ``KernelSocketOptions/busyPollLimit`` operations are blocked, epoll beyond that.
    case auto
}

/// Settings of the kernel-socket libOS (upstream's `tcp_socket_options` plus ours).
public struct KernelSocketOptions: Sendable {
    public var pollMode: KernelPollMode = .auto
    /// The most blocked operations that are busy-polled in ``KernelPollMode/auto`` mode.
    public var busyPollLimit = 8
    /// Bytes read by one TCP pop at most.
    public var tcpPopSize = 9216
    /// `TCP_NODELAY` on new TCP sockets (upstream's default: on).
    public var noDelay = true
    /// `SO_KEEPALIVE` on new TCP sockets.
    public var keepAlive = false
    /// `SO_LINGER` on new TCP sockets, in seconds; nil leaves it off.
    public var linger: Int? = nil

    public init() {}
}

/// Counters of a kernel-socket libOS. Plain integers, updated on the datapath without atomics.
public struct KernelSocketStatistics: Sendable {
    public var sendCalls = 0
    public var receiveCalls = 0
    public var wouldBlock = 0
    public var epollWaits = 0
    public var bytesSent = 0
    public var bytesReceived = 0
}

/// The kernel-socket libOS (upstream's catnap): PDPIX over non-blocking Linux TCP and UDP sockets.
///
/// Every operation is a coroutine in the scheduler. A push or pop tries its system call as soon as it is made (the
/// paper's inlined fast path); if the kernel says `EAGAIN` the operation blocks, and is retried either on every pass
/// (busy polling) or when edge-triggered epoll reports its socket ready. Operations on one queue complete in order:
/// only the oldest pending push (and the oldest pending pop) of a queue touches the socket.
///
/// Buffers come from the libOS's ``BufferPool``; the kernel copies on send and receive, so a push completes when the
/// kernel has taken all of its bytes.
public final class KernelSocketLibOS: NetworkLibOS {
    public let scheduler = Scheduler()
    public let pool: BufferPool
    public let options: KernelSocketOptions
    @exclusivity(unchecked) public private(set) var statistics = KernelSocketStatistics()

    @usableFromInline
    struct Queue {
        var inUse = false
        var generation: UInt32 = 0
        var fd: Int32 = -1
        var type: SocketType = .stream
        var state: SocketState = .unbound
        var pops = OperationList()
        var pushes = OperationList()
        var accepts = OperationList()
        var connect: UInt32 = Operation.none
        /// A TCP end-of-file was read: every later pop completes at once with a zero-length array.
        var endOfFile = false
        /// The socket is registered with epoll. Registration waits for the first parked operation: a socket in an
        /// epoll set makes the kernel run the epoll wake-up callback on every packet it receives and every send
        /// buffer it frees, which costs busy-polled sockets (which never ask epoll) about 0.2 µs per I/O here.
        var watched = false
        var nextFree: Int = -1
    }

    /// Which of a queue's operation lists.
    enum ListKind { case pops, pushes, accepts }

    @inline(__always)
    func withList<R>(_ i: Int, _ k: ListKind, _ body: (inout OperationList) -> R) -> R {
        switch k {
        case .pops: body(&queues[i].pops)
        case .pushes: body(&queues[i].pushes)
        case .accepts: body(&queues[i].accepts)
        }
    }

    @exclusivity(unchecked) var queues = UnsafeTable<Queue>(capacity: 1024)
    @exclusivity(unchecked) var freeQueue = -1
    @exclusivity(unchecked) var parked = 0
    let epfd: Int32
    let epollData: UnsafeMutablePointer<UInt64>
    let epollEvents: UnsafeMutablePointer<UInt32>
    let msgDontWait = cdemi_msg_dontwait()
    let sendFlags = cdemi_msg_dontwait() | cdemi_msg_nosignal()
    let eventIn = cdemi_epollin() | cdemi_epollrdhup() | cdemi_epollhup() | cdemi_epollerr()
    let eventOut = cdemi_epollout() | cdemi_epollhup() | cdemi_epollerr()

    public init(options: KernelSocketOptions = KernelSocketOptions(), pool: BufferPool = BufferPool(headroom: 0)) throws(Errno) {
        self.options = options
        self.pool = pool
        epfd = cdemi_epoll_create()
        guard epfd >= 0 else { throw Errno.current }
        epollData = .allocate(capacity: 64)
        epollEvents = .allocate(capacity: 64)
    }

    deinit {
        for i in queues.indices where queues[i].inUse { Glibc.close(queues[i].fd) }
        queues.destroy()
        Glibc.close(epfd)
        epollData.deallocate()
        epollEvents.deallocate()
    }

    // MARK: - Queue table

    @inline(__always)
    func queueIndex(_ qd: QDesc) throws(Errno) -> Int {
        let i = Int(qd.rawValue) - Int(QDesc.base)
        guard i >= 0, i < queues.count, queues[i].inUse else { throw .badDescriptor }
        return i
    }

    func addQueue(fd: Int32, type: SocketType, state: SocketState) throws(Errno) -> QDesc {
        var i: Int
        if freeQueue >= 0 {
            i = freeQueue
            freeQueue = queues[i].nextFree
        } else {
            i = queues.count
            guard i < Int(Int32.max) - Int(QDesc.base) else { throw .tooManyOpenFiles }
            queues.append(Queue())
        }
        let gen = queues[i].generation &+ 1
        queues[i] = Queue(inUse: true, generation: gen, fd: fd, type: type, state: state)
        return QDesc(rawValue: Int32(i) + QDesc.base)
    }

    func removeQueue(_ i: Int) {
        Glibc.close(queues[i].fd)
        queues[i].inUse = false
        queues[i].fd = -1
        queues[i].nextFree = freeQueue
        freeQueue = i
    }

    // MARK: - Control path

    public func socket(domain: AddressFamily, type: SocketType) throws(Errno) -> QDesc {
        guard domain == .inet else { throw .notSupported }
        let fd = cdemi_socket(AF_INET, type.rawValue, 0)
        guard fd >= 0 else { throw Errno.current }
        if type == .stream {
            _ = cdemi_setsockopt_int(fd, SOL_SOCKET, SO_REUSEADDR, 1)
            if options.noDelay { _ = cdemi_setsockopt_int(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1) }
            if options.keepAlive { _ = cdemi_setsockopt_int(fd, SOL_SOCKET, SO_KEEPALIVE, 1) }
            if let l = options.linger { _ = cdemi_setsockopt_linger(fd, 1, Int32(clamping: l)) }
        }
        do {
            return try addQueue(fd: fd, type: type, state: .unbound)
        } catch {
            Glibc.close(fd)
            throw error
        }
    }

    public func bind(_ qd: QDesc, to address: SocketAddressV4) throws(Errno) {
        let i = try queueIndex(qd)
        if let e = SocketRules.bind(queues[i].type, queues[i].state) { throw e }
        guard cdemi_bind4(queues[i].fd, address.address.rawValue, address.port) == 0 else { throw Errno.current }
        queues[i].state = .bound
    }

    public func listen(_ qd: QDesc, backlog: Int) throws(Errno) {
        let i = try queueIndex(qd)
        if let e = SocketRules.listen(queues[i].type, queues[i].state, backlog: backlog) { throw e }
        guard Glibc.listen(queues[i].fd, Int32(clamping: backlog)) == 0 else { throw Errno.current }
        queues[i].state = .listening
    }

    public func accept(_ qd: QDesc) throws(Errno) -> QToken {
        let i = try queueIndex(qd)
        if let e = SocketRules.accept(queues[i].type, queues[i].state) { throw e }
        return try start(Operation(code: .accept, qd: qd), queue: i, list: .accepts)
    }

    public func connect(_ qd: QDesc, to address: SocketAddressV4) throws(Errno) -> QToken {
        let i = try queueIndex(qd)
        if let e = SocketRules.connect(queues[i].type, queues[i].state) { throw e }
        let r = cdemi_connect4(queues[i].fd, address.address.rawValue, address.port)
        let err = r == 0 ? Errno(rawValue: 0) : Errno.current
        var op = Operation(code: .connect, qd: qd, address: address)
        if r == 0 || err == .inProgress {
            queues[i].state = r == 0 ? .connected : .connecting
            op.aux = r == 0 ? 1 : 0
        } else {
            // Fail synchronously-detected errors through the token, as a device would.
            op.aux = UInt64(UInt32(bitPattern: err.rawValue)) << 32 | 2
        }
        let qt = try scheduler.spawn(op)
        let t = UInt32(truncatingIfNeeded: qt.rawValue)
        queues[i].connect = t
        pollConnect(t, scheduler.operation(t))
        return qt
    }

    public func close(_ qd: QDesc) throws(Errno) {
        let i = try queueIndex(qd)
        queues[i].state = .closing
        cancelAll(i)
        removeQueue(i)
    }

    public func asyncClose(_ qd: QDesc) throws(Errno) -> QToken {
        try close(qd)
        return try scheduler.spawnCompleted(.close, qd: qd)
    }

    /// Fails every pending operation of queue `i` with `ECANCELED`.
    func cancelAll(_ i: Int) {
        for list in [ListKind.pops, .pushes, .accepts] {
            withList(i, list) { $0.removeAll(scheduler) { fail($0, .canceled) } }
        }
        if queues[i].connect != Operation.none {
            fail(queues[i].connect, .canceled)
            queues[i].connect = Operation.none
        }
    }

    public func localAddress(_ qd: QDesc) throws(Errno) -> SocketAddressV4 {
        let i = try queueIndex(qd)
        var a: UInt32 = 0
        var p: UInt16 = 0
        guard cdemi_getsockname4(queues[i].fd, &a, &p) == 0 else { throw Errno.current }
        return SocketAddressV4(IPv4Address(rawValue: a), p)
    }

    public func peerAddress(_ qd: QDesc) throws(Errno) -> SocketAddressV4 {
        let i = try queueIndex(qd)
        guard queues[i].state == .connected else { throw .notConnected }
        var a: UInt32 = 0
        var p: UInt16 = 0
        guard cdemi_getpeername4(queues[i].fd, &a, &p) == 0 else { throw Errno.current }
        return SocketAddressV4(IPv4Address(rawValue: a), p)
    }

    public func setOption(_ qd: QDesc, _ option: SocketOption) throws(Errno) {
        let i = try queueIndex(qd)
        let fd = queues[i].fd
        let r: Int32
        switch option {
        case .linger(let s):
            if let s, s < 0 { throw .invalidArgument }
            r = cdemi_setsockopt_linger(fd, s == nil ? 0 : 1, Int32(clamping: s ?? 0))
        case .noDelay(let on):
            guard queues[i].type == .stream else { throw .notSupported }
            r = cdemi_setsockopt_int(fd, Int32(IPPROTO_TCP), TCP_NODELAY, on ? 1 : 0)
        case .keepAlive(let on):
            r = cdemi_setsockopt_int(fd, SOL_SOCKET, SO_KEEPALIVE, on ? 1 : 0)
        case .reuseAddress(let on):
            r = cdemi_setsockopt_int(fd, SOL_SOCKET, SO_REUSEADDR, on ? 1 : 0)
        }
        guard r == 0 else { throw Errno.current }
    }

    public func option(_ qd: QDesc, _ name: SocketOptionName) throws(Errno) -> SocketOption {
        let i = try queueIndex(qd)
        let fd = queues[i].fd
        var v: Int32 = 0
        switch name {
        case .linger:
            var on: Int32 = 0
            guard cdemi_getsockopt_linger(fd, &on, &v) == 0 else { throw Errno.current }
            return .linger(seconds: on != 0 ? Int(v) : nil)
        case .noDelay:
            guard queues[i].type == .stream else { throw .notSupported }
            guard cdemi_getsockopt_int(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &v) == 0 else { throw Errno.current }
            return .noDelay(v != 0)
        case .keepAlive:
            guard cdemi_getsockopt_int(fd, SOL_SOCKET, SO_KEEPALIVE, &v) == 0 else { throw Errno.current }
            return .keepAlive(v != 0)
        case .reuseAddress:
            guard cdemi_getsockopt_int(fd, SOL_SOCKET, SO_REUSEADDR, &v) == 0 else { throw Errno.current }
            return .reuseAddress(v != 0)
        }
    }

    // MARK: - Data path

    public func push(_ qd: QDesc, _ sga: ScatterGatherArray) throws(Errno) -> QToken {
        guard sga.head != nil, sga.isValid else { throw .invalidArgument }
        let i = try queueIndex(qd)
        if let e = SocketRules.push(queues[i].type, queues[i].state) { throw e }
        sga.retainAll()
        return try start(Operation(code: .push, qd: qd, sga: sga), queue: i, list: .pushes)
    }

    public func pushTo(_ qd: QDesc, _ sga: ScatterGatherArray, to address: SocketAddressV4) throws(Errno) -> QToken {
        guard sga.head != nil, sga.isValid else { throw .invalidArgument }
        let i = try queueIndex(qd)
        if let e = SocketRules.pushTo(queues[i].type, queues[i].state) { throw e }
        sga.retainAll()
        let dest: SocketAddressV4? = queues[i].type == .datagram ? address : nil
        return try start(Operation(code: .push, qd: qd, sga: sga, address: dest), queue: i, list: .pushes)
    }

    public func pop(_ qd: QDesc) throws(Errno) -> QToken {
        let i = try queueIndex(qd)
        if let e = SocketRules.pop(queues[i].type, queues[i].state) { throw e }
        // Receives are not inlined: the first attempt is made in the next pass, so an application that re-arms a pop
        // before pushing a reply does not pay a failing system call on its critical path.
        return try start(Operation(code: .pop, qd: qd), queue: i, list: .pops, inline: false)
    }

    /// Spawns an operation coroutine and queues it on its queue; with `inline`, polls it once right away (the paper's
    /// inlined transmit path).
    @inline(__always)
    func start(_ op: Operation, queue i: Int, list: ListKind, inline: Bool = true) throws(Errno) -> QToken {
        let qt: QToken
        do {
            qt = try scheduler.spawn(op)
        } catch {
            op.sga.releaseAll()
            throw error
        }
        let t = UInt32(truncatingIfNeeded: qt.rawValue)
        append(t, to: i, list)
        if inline { pollOperation(t) }
        return qt
    }

    @inline(__always)
    func append(_ t: UInt32, to i: Int, _ list: ListKind) {
        withList(i, list) { $0.append(t, scheduler) }
    }

    /// Removes the head of a queue's list and wakes the next operation, which may now proceed.
    @inline(__always)
    func popHead(_ i: Int, _ list: ListKind) {
        withList(i, list) { $0.removeHead(scheduler) }
    }

    // MARK: - The pass

    public func poll(now: Instant) {
        passes &+= 1
        // While operations are busy-polled, epoll (for parked ones, such as accepts) is checked every 64th pass
        // only, so it does not double the cost of each spin.
        if parked > 0 && (busyCount == 0 || passes & 63 == 0) { pollEpoll() }
        busyCount = 0
        scheduler.fireTimers(now: now)
        scheduler.runReady { t in pollOperation(t) }
    }

    /// The fast-path poller: one zero-timeout epoll_wait, waking the head operations of ready queues.
    func pollEpoll() {
        statistics.epollWaits &+= 1
        let n = cdemi_epoll_wait(epfd, epollData, epollEvents, 64, 0)
        guard n > 0 else { return }
        for k in 0..<Int(n) {
            let data = epollData[k]
            let i = Int(data & 0xFFFF_FFFF)
            guard i < queues.count, queues[i].inUse, queues[i].generation == UInt32(data >> 32) else { continue }
            let ev = epollEvents[k]
            if ev & eventIn != 0 {
                if !queues[i].pops.isEmpty { unpark(queues[i].pops.head) }
                if !queues[i].accepts.isEmpty { unpark(queues[i].accepts.head) }
            }
            if ev & eventOut != 0 {
                if !queues[i].pushes.isEmpty { unpark(queues[i].pushes.head) }
                if queues[i].connect != Operation.none { unpark(queues[i].connect) }
            }
        }
    }

    /// Blocks operation `t` until its socket is ready: busy-polled (stays runnable) or parked for epoll.
    @inline(__always)
    func block(_ t: UInt32, _ op: UnsafeMutablePointer<Operation>) {
        statistics.wouldBlock &+= 1
        // Connection arrivals are not on the per-message path: accepts always wait for epoll.
        if op.pointee.code == .accept { return park(t, op) }
        switch options.pollMode {
        case .busy:
            busyCount += 1
            scheduler.wake(t)
        case .epoll:
            park(t, op)
        case .auto:
            if busyCount < options.busyPollLimit {
                busyCount += 1
                scheduler.wake(t)
            } else {
                park(t, op)
            }
        }
    }

    /// Operations busy-polled in the last pass; reset at the start of each pass.
    @exclusivity(unchecked) var busyCount = 0
    @exclusivity(unchecked) var passes: UInt64 = 0

    /// Parks `op` until epoll reports its socket ready, registering the socket on first use (edge-triggered: the
    /// registration itself reports a socket that became ready since the failed call). If the socket cannot be
    /// registered, `op` stays runnable and is busy-polled instead.
    @inline(__always)
    func park(_ t: UInt32, _ op: UnsafeMutablePointer<Operation>) {
        let i = Int(op.pointee.qd.rawValue) - Int(QDesc.base)
        if !queues[i].watched {
            let data = UInt64(queues[i].generation) << 32 | UInt64(i)
            guard cdemi_epoll_add(epfd, queues[i].fd, eventIn | eventOut | cdemi_epollet(), data) == 0 else {
                return scheduler.wake(t)
            }
            queues[i].watched = true
        }
        if op.pointee.aux & 0x8000_0000 == 0 {
            op.pointee.aux |= 0x8000_0000
            parked += 1
        }
    }

    @inline(__always)
    func unpark(_ t: UInt32) { scheduler.wake(t) }

    @inline(__always)
    func clearPark(_ op: UnsafeMutablePointer<Operation>) {
        if op.pointee.aux & 0x8000_0000 != 0 {
            op.pointee.aux &= ~0x8000_0000
            parked -= 1
        }
    }

    func pollOperation(_ t: UInt32) {
        let op = scheduler.operation(t)
        switch op.pointee.code {
        case .pop: pollPop(t, op)
        case .push: pollPush(t, op)
        case .accept: pollAccept(t, op)
        case .connect: pollConnect(t, op)
        default: break
        }
    }

    @inline(__always)
    func finish(_ t: UInt32, _ op: UnsafeMutablePointer<Operation>, _ result: QResult) {
        clearPark(op)
        scheduler.complete(t, result)
    }

    func fail(_ t: UInt32, _ error: Errno) {
        let op = scheduler.operation(t)
        op.pointee.sga.releaseAll()
        op.pointee.sga = .empty
        finish(t, op, .failure(op.pointee.qd, scheduler.token(of: t), error))
    }

    func pollPop(_ t: UInt32, _ op: UnsafeMutablePointer<Operation>) {
        guard let i = try? queueIndex(op.pointee.qd) else { return fail(t, .canceled) }
        guard queues[i].pops.head == t else { return }
        let stream = queues[i].type == .stream
        if stream && queues[i].endOfFile { return completePop(t, op, i, count: 0, from: nil) }
        if op.pointee.sga.head == nil {
            let size = stream ? options.tcpPopSize : 65535
            guard let b = pool.allocate(size: size, headroom: 0) else { return failHead(t, i, ListKind.pops, .noMemory) }
            op.pointee.sga = ScatterGatherArray(head: b)
        }
        let b = op.pointee.sga.head.unsafelyUnwrapped
        var addr: UInt32 = 0
        var port: UInt16 = 0
        statistics.receiveCalls &+= 1
        let n = cdemi_recvfrom4(queues[i].fd, b.header.pointee.storage, Int(b.header.pointee.capacity), 0, &addr, &port)
        if n >= 0 {
            if stream && n == 0 { queues[i].endOfFile = true }
            statistics.bytesReceived &+= n
            return completePop(t, op, i, count: n, from: stream ? nil : SocketAddressV4(IPv4Address(rawValue: addr), port))
        }
        let e = Errno.current
        if e == .wouldBlock || e == .interrupted { return block(t, op) }
        failHead(t, i, ListKind.pops, e)
    }

    func completePop(_ t: UInt32, _ op: UnsafeMutablePointer<Operation>, _ i: Int, count: Int, from: SocketAddressV4?) {
        var sga = op.pointee.sga
        if sga.head == nil {
            guard let b = pool.allocate(size: 0, headroom: 0) else { return failHead(t, i, ListKind.pops, .noMemory) }
            sga = ScatterGatherArray(head: b)
        }
        sga.head.unsafelyUnwrapped.setCount(count)
        sga.address = from
        pool.giveToApplication(sga.head.unsafelyUnwrapped)
        op.pointee.sga = .empty
        popHead(i, ListKind.pops)
        finish(t, op, QResult(opcode: .pop, qd: op.pointee.qd, qt: QToken(rawValue: 0), value: .sga(sga)))
    }

    func failHead(_ t: UInt32, _ i: Int, _ list: ListKind, _ e: Errno) {
        popHead(i, list)
        fail(t, e)
    }

    func pollPush(_ t: UInt32, _ op: UnsafeMutablePointer<Operation>) {
        guard let i = try? queueIndex(op.pointee.qd) else { return fail(t, .canceled) }
        guard queues[i].pushes.head == t else { return }
        let fd = queues[i].fd
        let sga = op.pointee.sga
        let total = sga.count
        var n: Int
        statistics.sendCalls &+= 1
        if let head = sga.head, head.header.pointee.next == nil {
            // One segment: a plain send (or sendto) of what is left.
            let start = head.baseAddress + op.pointee.progress
            let len = head.count - op.pointee.progress
            if let a = op.pointee.address {
                n = cdemi_sendto4(fd, start, len, a.address.rawValue, a.port)
            } else {
                n = Glibc.send(fd, start, len, sendFlags)
            }
        } else {
            n = sendGather(fd, sga, skip: op.pointee.progress, to: op.pointee.address)
        }
        if n >= 0 {
            statistics.bytesSent &+= n
            op.pointee.progress += n
            if op.pointee.progress < total && queues[i].type == .stream { return block(t, op) }
            op.pointee.sga.releaseAll()
            op.pointee.sga = .empty
            popHead(i, ListKind.pushes)
            return finish(t, op, QResult(opcode: .push, qd: op.pointee.qd, qt: QToken(rawValue: 0)))
        }
        let e = Errno.current
        if e == .wouldBlock || e == .interrupted { return block(t, op) }
        failHead(t, i, ListKind.pushes, e)
    }

    /// A gathering send of a multi-segment array, skipping the first `skip` bytes.
    func sendGather(_ fd: Int32, _ sga: ScatterGatherArray, skip: Int, to address: SocketAddressV4?) -> Int {
        var bases = (UnsafeRawPointer?.none, UnsafeRawPointer?.none, UnsafeRawPointer?.none, UnsafeRawPointer?.none,
                     UnsafeRawPointer?.none, UnsafeRawPointer?.none, UnsafeRawPointer?.none, UnsafeRawPointer?.none)
        var lens = (0, 0, 0, 0, 0, 0, 0, 0)
        var count: Int32 = 0
        return withUnsafeMutableBytes(of: &bases) { bp in
            withUnsafeMutableBytes(of: &lens) { lp in
                let b = bp.bindMemory(to: UnsafeRawPointer?.self)
                let l = lp.bindMemory(to: Int.self)
                var h = sga.head?.header
                var skip = skip
                while let c = h, count < 8 {
                    let len = Int(c.pointee.length)
                    if skip >= len {
                        skip -= len
                    } else {
                        b[Int(count)] = UnsafeRawPointer(c.pointee.storage! + Int(c.pointee.offset) + skip)
                        l[Int(count)] = len - skip
                        skip = 0
                        count += 1
                    }
                    h = c.pointee.next
                }
                let r = cdemi_sendv(
                    fd, b.baseAddress!, UnsafePointer(OpaquePointer(l.baseAddress!)), count, address == nil ? 0 : 1,
                    address?.address.rawValue ?? 0, address?.port ?? 0)
                return Int(r)
            }
        }
    }

    func pollAccept(_ t: UInt32, _ op: UnsafeMutablePointer<Operation>) {
        guard let i = try? queueIndex(op.pointee.qd) else { return fail(t, .canceled) }
        guard queues[i].accepts.head == t else { return }
        var addr: UInt32 = 0
        var port: UInt16 = 0
        let fd = cdemi_accept4(queues[i].fd, &addr, &port)
        if fd >= 0 {
            if options.noDelay { _ = cdemi_setsockopt_int(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1) }
            if options.keepAlive { _ = cdemi_setsockopt_int(fd, SOL_SOCKET, SO_KEEPALIVE, 1) }
            let nqd: QDesc
            do {
                nqd = try addQueue(fd: fd, type: .stream, state: .connected)
            } catch {
                Glibc.close(fd)
                return failHead(t, i, ListKind.accepts, error)
            }
            popHead(i, ListKind.accepts)
            let peer = SocketAddressV4(IPv4Address(rawValue: addr), port)
            return finish(t, op, QResult(opcode: .accept, qd: op.pointee.qd, qt: QToken(rawValue: 0),
                                         value: .accepted(nqd, peer)))
        }
        let e = Errno.current
        switch e {
        case .wouldBlock, .interrupted, .connectionAborted, .protocolNotAvailable:
            block(t, op)
        default:
            failHead(t, i, ListKind.accepts, e)
        }
    }

    func pollConnect(_ t: UInt32, _ op: UnsafeMutablePointer<Operation>) {
        let qd = op.pointee.qd
        guard let i = try? queueIndex(qd) else { return fail(t, .canceled) }
        let state = op.pointee.aux & 0xF
        var error: Errno? = nil
        if state == 2 {
            error = Errno(rawValue: Int32(truncatingIfNeeded: op.pointee.aux >> 32))
        } else if state == 0 {
            // Still connecting: a second connect reports the outcome (EISCONN once established).
            let a = op.pointee.address ?? .unspecified
            if cdemi_connect4(queues[i].fd, a.address.rawValue, a.port) != 0 {
                let e = Errno.current
                switch e {
                case .alreadyConnected: break
                case .alreadyInProgress, .inProgress, .interrupted: return block(t, op)
                default: error = e
                }
            }
        }
        queues[i].connect = Operation.none
        if let error {
            queues[i].state = queues[i].state == .connecting ? .bound : queues[i].state
            return fail(t, error)
        }
        queues[i].state = .connected
        finish(t, op, QResult(opcode: .connect, qd: qd, qt: QToken(rawValue: 0)))
    }
}
