#if canImport(Glibc)
import Glibc
#endif
import CDemiLinux
import DemiBuffers
import DemiCore
import DemiRuntime

/// Settings of the shared-memory libOS (`catmem:` in the configuration).
public struct SharedMemoryOptions: Sendable {
    /// Bytes of each direction's ring; rounded up to a power of two, at least 4 KiB.
    public var ringSize = 256 * 1024
    /// The largest message; larger pushes fail with `EMSGSIZE`. Messages larger than half a ring travel in fragments.
    public var maxMessageSize = 16 * 1024 * 1024
    /// Slots of an in-process memory queue; pushes block (stay pending) while it is full.
    public var memoryQueueCapacity = 4096

    public init() {}
}

/// The shared-memory libOS (upstream's catmem, removed there in 2024): PDPIX queues between processes.
///
/// A *pipe* is a named POSIX shared-memory object holding a control block and two single-producer single-consumer
/// rings, one per direction. `createPipe(name)` makes it; one other process attaches with `openPipe(name)`, which
/// also removes the name from `/dev/shm`, so nothing is left behind once both sides unmap it (close or death).
/// Either side may push and pop. Closing sets a flag that the peer reads as end-of-file (a zero-length pop) once the
/// ring is drained. A background coroutine checks the peer's pidfd every 1,024 passes, so if the peer dies (even `kill -9`)
/// the survivor's pending and later pops fail with `ECONNRESET` instead of hanging.
///
/// `queue()` makes an in-process memory queue (PDPIX's `queue()`): push hands the array over without copying and
/// pop receives a view of it.
///
/// Pushes that find room and pops that find a whole message complete inline: the bytes are copied before the token is
/// made, so the peer can see them at once. A pop that finds its ring empty is *parked*: the fast-path poller at the start
/// of every pass checks each parked ring (a load of the next record's stamp, with no system call) and runs the pop when a
/// record, the peer's close or its death shows up. A pass with nothing parked and nothing runnable is O(1).
public final class SharedMemoryLibOS: PollingLibOS {
    public let scheduler = Scheduler()
    public let pool: BufferPool
    public let options: SharedMemoryOptions

    static let magic: UInt64 = 0x4550_4950_494D_4544  // "DEMIPIPE"
    /// 2: lap records (RecordHeader.lap), indices 128 bytes apart; 3: records on cache lines, published by their
    /// stamps (no producer index), the key in the control block.
    static let version: UInt32 = 3
    static let controlSize = 4096
    /// The size of a parked pop's spare buffer (the pool's smallest class).
    static let spareSize = 2048
    /// A peer watched with `kill(pid, 0)` because pidfds are not available.
    static let noPidfd: Int32 = -2

    /// Where the control block's fields are. Each shared word the two sides write has a 128-byte block (a pair of
    /// cache lines) to itself: the adjacent-line prefetcher fetches lines in pairs, so a word next to one the peer
    /// reads would keep being taken away, and a store to it would wait for the line to be taken back. (Offsets 640 and
    /// 896, the producers' indices up to version 2, are unused: the records' stamps publish them.)
    enum Offset {
        static let magic = 0
        static let version = 8
        static let ringSize = 12
        static let maxMessage = 16
        /// The key of the rings' stamps (see ``RingConsumer``).
        static let key = 24
        static let creatorPid = 128
        static let openerPid = 256
        static let creatorClosed = 384
        static let openerClosed = 512
        static let aHead = 768
        static let bHead = 1024
    }

    enum Kind { case pipe, memory }

    struct Queue {
        var inUse = false
        var kind: Kind = .memory
        var isCreator = false
        var name: String = ""
        var mapping: UnsafeMutableRawPointer?
        var mappingSize = 0
        var producer = RingProducer.detached
        var consumer = RingConsumer.detached
        var ourClosed: UnsafeMutablePointer<UInt32>?
        var peerClosed: UnsafeMutablePointer<UInt32>?
        var peerPid: UnsafeMutablePointer<UInt32>?
        var peerPidfd: Int32 = -1
        var peerDead = false
        var endOfFile = false
        /// This queue's position in `parked` while its head pop waits for data, or -1.
        var parkedAt: Int32 = -1
        var pops = OperationList()
        var pushes = OperationList()
        /// A message being reassembled from fragments, and the bytes filled so far.
        var partial: DemiBuffer?
        var partialFilled = 0
        /// A buffer taken from the pool while a pop waits, so a small message arriving is copied out without a pool call.
        var spare: DemiBuffer?
        /// Memory queue: a circular buffer of pushed arrays.
        var slots: UnsafeMutablePointer<ScatterGatherArray>?
        var slotHead = 0
        var slotCount = 0
        var nextFree = -1
    }

    @exclusivity(unchecked) var queues = UnsafeTable<Queue>(capacity: 256)
    @exclusivity(unchecked) var freeQueue = -1
    @exclusivity(unchecked) var liveness: UInt32 = Operation.none
    @exclusivity(unchecked) var pipeCount = 0
    @exclusivity(unchecked) var passes: UInt64 = 0
    /// Queues whose head pop waits for data (checked by the fast-path poller each pass), in no particular order.
    @exclusivity(unchecked) var parked: UnsafeMutablePointer<Int32> = .allocate(capacity: 16)
    @exclusivity(unchecked) var parkedCount = 0
    @exclusivity(unchecked) var parkedCapacity = 16
    /// A pop whose result `wait` returned straight from the ring; its slot is retired (completed and taken) by the
    /// next call into the libOS, after the caller's reply is on its way, or re-armed as the next pop of its queue (see
    /// ``rearm(_:)``). Operation.none if there is none.
    @exclusivity(unchecked) var unretired: UInt32 = Operation.none
    /// The queue of `unretired` if its pop is still the head of that queue's pops and the queue still parked (as
    /// ``popSmall(_:_:_:)`` leaves them), or -1.
    @exclusivity(unchecked) var unretiredQueue = -1
    /// The queue whose consumer has moved past a message without publishing its head yet (``popSmall(_:_:_:)``: the
    /// store waits until the caller's reply is in the ring), or -1.
    @exclusivity(unchecked) var unpublishedQueue = -1
    /// The queue whose pop last took a small message that was already there (a stream's consumer), or -1: the one
    /// whose spare ``keepAsSpare(_:)`` refills when no pop waits to be re-armed.
    @exclusivity(unchecked) var lastPopQueue = -1
    /// The buffer a short pop (``popSmall(_:_:_:)``, ``receiveSmall(_:)``) last gave the application (a queue's spare:
    /// a pooled buffer of the smallest class, offset 0), which ``keepAsSpare(_:)`` takes back without asking the pool
    /// whether it is one of its own.
    @exclusivity(unchecked) var handedOut: UnsafeMutablePointer<BufferHeader>?
    let ringSize: Int
    /// The largest message: `options.maxMessageSize`, at most `UInt32.max` (a record's header holds the message's
    /// length in 32 bits).
    let maxMessage: Int

    public init(options: SharedMemoryOptions = SharedMemoryOptions(), pool: BufferPool = BufferPool(headroom: 0)) {
        self.options = options
        self.pool = pool
        var r = 4096
        while r < options.ringSize && r < 1 << 30 { r <<= 1 }
        ringSize = r
        maxMessage = max(0, min(options.maxMessageSize, Int(UInt32.max)))
        smallLimit = max(0, min(Self.smallMessage, maxMessage))
    }

    deinit {
        for i in queues.indices where queues[i].inUse { release(i) }
        queues.destroy()
        parked.deallocate()
    }

    // MARK: - Queue table

    @inline(__always)
    func queueIndex(_ qd: QDesc) throws(Errno) -> Int {
        let i = Int(qd.rawValue) - Int(QDesc.base)
        guard i >= 0, i < queues.count, queues[i].inUse else { throw .badDescriptor }
        return i
    }

    func addQueue(_ q: Queue) -> QDesc {
        var q = q
        q.inUse = true
        let i: Int
        if freeQueue >= 0 {
            i = freeQueue
            freeQueue = queues[i].nextFree
            queues[i] = q
        } else {
            i = queues.count
            queues.append(q)
        }
        return QDesc(rawValue: Int32(i) + QDesc.base)
    }

    /// Unmaps and forgets queue `i` (its operations must be finished or failed already).
    func release(_ i: Int) {
        unpark(i)
        if let m = queues[i].mapping {
            if let c = queues[i].ourClosed { cdemi_store_release_u32(c, 1) }
            // A creator whose pipe was never opened still owns the name.
            if queues[i].isCreator, let p = queues[i].peerPid, cdemi_load_acquire_u32(p) == 0 {
                _ = cdemi_shm_unlink(queues[i].name)
            }
            _ = cdemi_shm_unmap(m, queues[i].mappingSize)
            pipeCount -= 1
        }
        if queues[i].peerPidfd >= 0 { Glibc.close(queues[i].peerPidfd) }  // (not noPidfd)
        if let p = queues[i].partial { p.release() }
        if let p = queues[i].spare { p.release() }
        if lastPopQueue == i { lastPopQueue = -1 }
        if let s = queues[i].slots {
            for k in 0..<queues[i].slotCount {
                s[(queues[i].slotHead + k) % options.memoryQueueCapacity].releaseAll()
            }
            s.deallocate()
        }
        queues[i] = Queue()
        queues[i].nextFree = freeQueue
        freeQueue = i
    }

    // MARK: - Names

    /// Checks a pipe name: 1 to 200 characters of `A-Z a-z 0-9 . _ -`, not starting with a dot.
    public static func validate(name: String) throws(Errno) {
        let u = Array(name.utf8)
        guard !u.isEmpty, u.count <= 200, u[0] != UInt8(ascii: ".") else { throw .invalidArgument }
        for c in u {
            let ok = (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c == 46 || c == 95
                || c == 45
            guard ok else { throw .invalidArgument }
        }
    }

    /// The shared-memory object name of a pipe.
    public static func objectName(_ name: String) -> String { "/demi-\(name)" }

    // MARK: - Pipes

    /// Creates a named pipe and returns its queue. `EEXIST` if the name is taken, `EINVAL` for a bad name.
    public func createPipe(_ name: String) throws(Errno) -> QDesc {
        try Self.validate(name: name)
        let object = Self.objectName(name)
        Self.removeStale(object)
        let size = Self.controlSize + 2 * ringSize
        guard let m = cdemi_shm_map(object, size, 1) else { throw Errno.current }
        m.storeBytes(of: Self.version, toByteOffset: Offset.version, as: UInt32.self)
        m.storeBytes(of: UInt32(ringSize), toByteOffset: Offset.ringSize, as: UInt32.self)
        m.storeBytes(of: UInt64(maxMessage), toByteOffset: Offset.maxMessage, as: UInt64.self)
        let key = ringKey(UInt64.random(in: .min ... .max))
        m.storeBytes(of: key, toByteOffset: Offset.key, as: UInt64.self)
        m.storeBytes(of: UInt32(cdemi_getpid()), toByteOffset: Offset.creatorPid, as: UInt32.self)
        cdemi_store_release_u64(word(m, Offset.magic), Self.magic)
        var q = Queue()
        q.kind = .pipe
        q.isCreator = true
        q.name = object
        q.mapping = m
        q.mappingSize = size
        q.producer = RingProducer(head: word(m, Offset.aHead), data: m + Self.controlSize, capacity: ringSize, key: key,
                                  shortMessage: smallLimit)
        q.consumer = RingConsumer(head: word(m, Offset.bHead), data: m + Self.controlSize + ringSize, capacity: ringSize,
                                  key: key)
        q.ourClosed = half(m, Offset.creatorClosed)
        q.peerClosed = half(m, Offset.openerClosed)
        q.peerPid = half(m, Offset.openerPid)
        pipeCount += 1
        try startLiveness()
        return addQueue(q)
    }

    /// Attaches to a pipe another process created. `ENOENT` if there is none, `EBUSY` if another process attached
    /// first, `ECONNREFUSED` if its creator is gone.
    public func openPipe(_ name: String) throws(Errno) -> QDesc {
        try Self.validate(name: name)
        let object = Self.objectName(name)
        guard let m = cdemi_shm_map(object, Self.controlSize, 0) else { throw Errno.current }
        guard cdemi_load_acquire_u64(word(m, Offset.magic)) == Self.magic else {
            _ = cdemi_shm_unmap(m, Self.controlSize)
            throw .wouldBlock  // still being created
        }
        guard m.load(fromByteOffset: Offset.version, as: UInt32.self) == Self.version else {
            _ = cdemi_shm_unmap(m, Self.controlSize)
            throw .protocolError  // made by a build with another ring format
        }
        let ring = Int(m.load(fromByteOffset: Offset.ringSize, as: UInt32.self))
        _ = cdemi_shm_unmap(m, Self.controlSize)
        guard ring >= 4096, ring & (ring - 1) == 0 else { throw .invalidArgument }
        let size = Self.controlSize + 2 * ring
        guard let p = cdemi_shm_map(object, size, 0) else { throw Errno.current }
        guard cdemi_cas_u32(half(p, Offset.openerPid), 0, UInt32(cdemi_getpid())) != 0 else {
            _ = cdemi_shm_unmap(p, size)
            throw .busy
        }
        // Attached: the name is no longer needed, and removing it now leaves nothing behind.
        _ = cdemi_shm_unlink(object)
        let creator = p.load(fromByteOffset: Offset.creatorPid, as: UInt32.self)
        var pidfd = cdemi_pidfd_open(Int32(bitPattern: creator))
        if pidfd < 0 {
            if errno == ESRCH && cdemi_load_acquire_u32(half(p, Offset.creatorClosed)) == 0 {
                _ = cdemi_shm_unmap(p, size)
                throw .connectionRefused
            }
            pidfd = Self.noPidfd  // no pidfd here (old kernel, sandbox): check with kill(pid, 0)
        }
        var q = Queue()
        q.kind = .pipe
        q.name = object
        q.mapping = p
        q.mappingSize = size
        let key = p.load(fromByteOffset: Offset.key, as: UInt64.self)
        guard key == ringKey(key) else {
            _ = cdemi_shm_unmap(p, size)
            throw .protocolError
        }
        q.producer = RingProducer(head: word(p, Offset.bHead), data: p + Self.controlSize + ring, capacity: ring,
                                  key: key, shortMessage: smallLimit)
        q.consumer = RingConsumer(head: word(p, Offset.aHead), data: p + Self.controlSize, capacity: ring, key: key)
        q.ourClosed = half(p, Offset.openerClosed)
        q.peerClosed = half(p, Offset.creatorClosed)
        q.peerPid = half(p, Offset.creatorPid)
        q.peerPidfd = pidfd
        pipeCount += 1
        try startLiveness()
        return addQueue(q)
    }

    /// Creates an in-process memory queue.
    public func queue() throws(Errno) -> QDesc {
        var q = Queue()
        q.kind = .memory
        let s = UnsafeMutablePointer<ScatterGatherArray>.allocate(capacity: options.memoryQueueCapacity)
        q.slots = s
        return addQueue(q)
    }

    /// Removes a leftover pipe object whose creator died before anyone attached.
    static func removeStale(_ object: String) {
        guard let m = cdemi_shm_map(object, controlSize, 0) else { return }
        let creator = m.load(fromByteOffset: Offset.creatorPid, as: UInt32.self)
        let opener = cdemi_load_acquire_u32(half(m, Offset.openerPid))
        _ = cdemi_shm_unmap(m, controlSize)
        if opener == 0, creator != 0, kill(pid_t(creator), 0) != 0, errno == ESRCH {
            _ = cdemi_shm_unlink(object)
        }
    }

    // MARK: - Close

    public func close(_ qd: QDesc) throws(Errno) {
        retire()
        let i = try queueIndex(qd)
        cancelAll(i)
        release(i)
    }

    public func asyncClose(_ qd: QDesc) throws(Errno) -> QToken {
        try close(qd)
        return try scheduler.spawnCompleted(.close, qd: qd)
    }

    func cancelAll(_ i: Int) {
        unpark(i)
        queues[i].pops.removeAll(scheduler) { fail($0, .canceled) }
        queues[i].pushes.removeAll(scheduler) { fail($0, .canceled) }
    }

    // MARK: - Data path

    /// True if a slot is sure to be free for a token, so an operation may do its I/O before it spawns one.
    @inline(__always)
    var canSpawn: Bool { scheduler.liveCount < Scheduler.chunkSize * Scheduler.maxChunks }

    /// A token for an operation that completed inline with a plain result (a push). The caller has checked
    /// ``canSpawn``.
    @inline(__always)
    func plainToken(_ code: OperationCode, _ qd: QDesc) -> QToken {
        do { return try scheduler.spawnCompletedPlain(code, qd: qd) } catch { preconditionFailure("no slot") }
    }

    /// The largest message that takes the short paths: a whole message in one record, copied straight between the
    /// ring and the application's buffer (a pop's spare buffer holds it). Up to 64 bytes the copy makes no call.
    static let smallMessage = spareSize
    /// The largest message of the short paths: ``smallMessage``, or less if messages are limited to less.
    let smallLimit: Int

    public func push(_ qd: QDesc, _ sga: ScatterGatherArray) throws(Errno) -> QToken {
        guard let head = sga.head else {
            retire()
            throw .invalidArgument
        }
        let h = head.header
        let k = Int(qd.rawValue) &- Int(QDesc.base)
        if h.pointee.next == nil, head.isValid, k >= 0, k < queues.count {
            // The common case, as the C ring does it: one small valid segment, a pipe with nothing queued ahead, the
            // peer alive and open, room, no wrap, no rewind due. Copied and published in one pass (one release store
            // of the record's stamp); the token afterwards. The checks are ordered to load as little as can be before
            // the copy. A free slot or a memory queue has a detached producer, which never passes canWriteSmall.
            let q = queues.pointer(k)  // the table does not grow during a push
            let length = Int(h.pointee.length)
            if q.pointee.producer.canWriteSmall(length),
               q.pointee.pushes.isEmpty, !q.pointee.peerDead, canSpawn,
               cdemi_load_acquire_u32(q.pointee.peerClosed.unsafelyUnwrapped) == 0 {
                q.pointee.producer.writeSmall(h.pointee.storage.unsafelyUnwrapped + Int(h.pointee.offset),
                                              length: length)
                // A popped message's head goes out now, behind this reply; its pop's slot stays for the caller's next
                // pop on that queue to re-arm (or for the next other call to retire).
                publishPendingHead()
                return plainToken(.push, qd)
            }
        }
        defer { retire() }  // after the bytes are in the ring
        guard sga.isValid else { throw .invalidArgument }
        let i = try queueIndex(qd)
        let total = sga.count
        if queues[i].kind == .pipe {
            guard total > 0 else { throw .invalidArgument }
            guard total <= maxMessage else { throw .messageTooLong }
            // Inline: nothing queued ahead, the peer alive and open, and room for the whole message in one record. The
            // bytes go into the ring first (the caller's reference keeps them valid meanwhile), then the token is made.
            if queues[i].pushes.isEmpty, !queues[i].peerDead, total <= queues[i].producer.maxFragment, canSpawn,
               cdemi_load_acquire_u32(queues[i].peerClosed.unsafelyUnwrapped) == 0 {
                queues[i].producer.rewindIfDue(before: recordSize(total))
                if queues[i].producer.hasRoom(recordSize(total)) {
                    queues[i].producer.write(sga, offset: 0, length: total, total: total, flags: 0)
                    return plainToken(.push, qd)
                }
            }
        }
        sga.retainAll()
        let qt: QToken
        do {
            qt = try scheduler.spawn(Operation(code: .push, qd: qd, sga: sga))
        } catch {
            sga.releaseAll()
            throw error
        }
        let t = UInt32(truncatingIfNeeded: qt.rawValue)
        queues[i].pushes.append(t, scheduler)
        pollOperation(t)
        return qt
    }

    public func pop(_ qd: QDesc) throws(Errno) -> QToken {
        // A ping-pong's next pop: the pop whose message the caller just had takes the new pop's place as it stands
        // (still its queue's only pop, still parked), under a new token.
        if Int(qd.rawValue) &- Int(QDesc.base) == unretiredQueue, let qt = rearm(unretiredQueue) { return qt }
        retire()
        let i = try queueIndex(qd)
        // Inline: no pop queued ahead and a message (or end-of-file, or the peer's death) already there.
        if queues[i].kind == .pipe && queues[i].pops.isEmpty && canSpawn {
            let q = queues.pointer(i)
            let hasRecord = q.pointee.consumer.hasRecord()
            if !hasRecord, !q.pointee.endOfFile, !q.pointee.peerDead,
               cdemi_load_acquire_u32(q.pointee.peerClosed.unsafelyUnwrapped) == 0,
               q.pointee.spare != nil || refillSpare(q) {
                // Nothing there yet (the usual case right after a push): parked at once, its record stored in place.
                let qt = try scheduler.spawnWaiting(.pop, qd: qd)
                q.pointee.pops.append(UInt32(truncatingIfNeeded: qt.rawValue), scheduler)
                park(i)
                return qt
            }
            lastPopQueue = i  // its spare is refilled by the next sgafree that can
            // A whole message that fits the spare (records before the peer's close or death still count).
            if hasRecord, let b = receiveSmall(q) { return completedPop(qd, b) }
            switch receive(i) {
            case .empty:
                // Parked at once, not runnable: the fast-path poller (or a spinning wait) runs it when a record, the
                // peer's close or its death shows up.
                let qt = try scheduler.spawnWaiting(.pop, qd: qd)
                queues[i].pops.append(UInt32(truncatingIfNeeded: qt.rawValue), scheduler)
                park(i)
                if queues[i].spare == nil { queues[i].spare = pool.allocate(size: Self.spareSize, headroom: 0) }
                return qt
            case .message(let b): return completedPop(qd, b)
            case .endOfFile:
                guard let z = pool.allocate(size: 0, headroom: 0) else { return failedToken(qd, .noMemory) }
                return completedPop(qd, z)
            case .failed(let e): return failedToken(qd, e)
            }
        }
        let qt = try scheduler.spawn(Operation(code: .pop, qd: qd))
        let t = UInt32(truncatingIfNeeded: qt.rawValue)
        queues[i].pops.append(t, scheduler)
        pollOperation(t)
        return qt
    }

    /// `sgafree` of a popped message: if the pop that took it waits to be re-armed (a ping-pong's reply has gone out),
    /// or else the queue whose pop last found a message waiting (a stream) has no spare, a buffer the pool would hand
    /// out next anyway becomes that queue's spare at once, so the next small message is copied into it with no trip
    /// through the pool's free list. False (nothing changed) if the buffer or the moment does not fit; then the caller
    /// frees it as usual. `EINVAL` for an invalid buffer.
    public func keepAsSpare(_ buffer: DemiBuffer) throws(Errno) -> Bool {
        let h = buffer.header
        let handedOutNow = h == handedOut
        if handedOutNow { handedOut = nil }
        let i = unretiredQueue >= 0 ? unretiredQueue : lastPopQueue
        guard i >= 0, queues[i].inUse, queues[i].kind == .pipe, queues[i].spare == nil else { return false }
        // The spare the last short pop handed out is the pool's own: no lookup of the arena that holds its header.
        let recycled = handedOutNow ? try pool.recycleFromApplication(ownBuffer: buffer, headroom: 0)
                                    : try pool.recycleFromApplication(buffer, headroom: 0)
        guard let b = recycled else { return false }
        queues[i].spare = b
        return true
    }

    /// Takes a spare buffer for a pop about to park (the last one went to the application with its message).
    @inline(__always)
    func refillSpare(_ q: UnsafeMutablePointer<Queue>) -> Bool {
        q.pointee.spare = pool.allocate(size: Self.spareSize, headroom: 0)
        return q.pointee.spare != nil
    }

    /// A token for a pop that found its message (the caller has checked ``canSpawn``): the buffer waits in the slot's
    /// record, not in a result record, so the wait that takes it copies nothing (``Scheduler/takePlain(_:)``).
    @inline(__always)
    func completedPop(_ qd: QDesc, _ b: DemiBuffer) -> QToken {
        pool.giveToApplication(b)
        do { return try scheduler.spawnCompletedPlain(.pop, qd: qd, buffer: b) } catch {
            preconditionFailure("no slot")
        }
    }

    func failedToken(_ qd: QDesc, _ e: Errno) -> QToken {
        do {
            return try scheduler.spawnCompleted(.pop, qd: qd, result: .failure(qd, QToken(rawValue: 0), e))
        } catch { preconditionFailure("no slot") }
    }

    // MARK: - Parked pops

    /// Parks the head pop of queue `i` until its ring has a record, or the peer closes or dies.
    func park(_ i: Int) {
        guard queues[i].parkedAt < 0 else { return }
        if parkedCount == parkedCapacity {
            let bigger = UnsafeMutablePointer<Int32>.allocate(capacity: parkedCapacity * 2)
            bigger.moveInitialize(from: parked, count: parkedCount)
            parked.deallocate()
            parked = bigger
            parkedCapacity *= 2
        }
        parked[parkedCount] = Int32(i)
        queues[i].parkedAt = Int32(parkedCount)
        parkedCount += 1
    }

    @inline(__always)
    func unpark(_ i: Int) {
        let k = Int(queues[i].parkedAt)
        guard k >= 0 else { return }
        parkedCount -= 1
        let moved = Int(parked[parkedCount])
        parked[k] = Int32(moved)
        queues[moved].parkedAt = Int32(k)
        queues[i].parkedAt = -1
    }

    /// The fast-path poller: runs each parked pop whose ring has something for it.
    @inline(__always)
    func pollParked() {
        var k = 0
        while k < parkedCount {
            let i = Int(parked[k])
            if queues[i].consumer.hasRecord() || queues[i].peerDead
                || cdemi_load_acquire_u32(queues[i].peerClosed.unsafelyUnwrapped) != 0 {
                unpark(i)  // moves the last entry to k
                let t = queues[i].pops.head
                if t != Operation.none { popPipe(t, scheduler.operation(t), i) }
            } else {
                k += 1
            }
        }
    }

    // MARK: - Waiting

    /// ``PollingLibOS/wait(_:timeout:)`` with this libOS's pass inlined into the loop, for the common wait with no
    /// timeout and no timer armed: it spins on the parked rings and the ready set, reading no clock. Other waits (and
    /// the semantics of every wait) are the shared loop's.
    @inline(__always)
    public func wait(_ qt: QToken, timeout: Duration? = nil) throws(Errno) -> QResult {
        retire()
        let s = scheduler
        if let (code, qd, buffer) = s.takePlain(qt) {
            let value = buffer.map { QResult.Value.sga(ScatterGatherArray(head: $0)) } ?? .none
            return QResult(opcode: code, qd: qd, qt: qt, value: value)
        }
        if let r = s.take(qt) { return r }
        guard timeout == nil, s.nextTimerDeadline == nil else { return try sharedWait(self, qt, timeout) }
        guard let t = s.index(of: qt) else { throw .invalidArgument }
        while true {
            if let r = waitOwnPop(t, qt) { return r }
            poll(now: .zero)  // no timer is armed, so the time is not needed
            if let r = s.take(qt) { return r }
            guard s.index(of: qt) != nil else { throw .invalidArgument }
            if s.nextTimerDeadline != nil { return try sharedWait(self, qt, timeout) }
        }
    }

    public func waitAny(
        _ qts: UnsafeBufferPointer<QToken>, timeout: Duration? = nil, rotor: inout Int
    ) throws(Errno) -> (Int, QResult) {
        retire()
        return try sharedWaitAny(self, qts, timeout, &rotor)
    }

    public func waitNext(into out: UnsafeMutableBufferPointer<QResult>, timeout: Duration? = nil) throws(Errno) -> Int {
        retire()
        return try sharedWaitNext(self, out, timeout)
    }

    /// Waits for pop `t` when a pass could do nothing but check its ring: `t` is the only parked pop and nothing is
    /// runnable. Then it spins on that ring alone (with a pause per check), 32 checks standing for one pass (so the
    /// pass count still wakes the liveness check, about every 0.1 to 1 ms of spinning), and hands a message back at once: the slot is retired by the
    /// next call into the libOS, so completing and taking it costs the peer nothing. Nil when a pass is due, or when
    /// the pop ended otherwise (then it is completed).
    @inline(__always)
    func waitOwnPop(_ t: UInt32, _ qt: QToken) -> QResult? {
        guard parkedCount == 1 else { return nil }
        let i = Int(parked[0])
        guard queues[i].pops.head == t, scheduler.isIdle else { return nil }
        let q = queues.pointer(i)  // the table does not grow while this loop runs
        var spins = 0
        while true {
            spins &+= 1
            if spins & 31 == 0 {
                if passes & 1023 == 1023 { return nil }
                passes &+= 1
                if q.pointee.peerDead || cdemi_load_acquire_u32(q.pointee.peerClosed.unsafelyUnwrapped) != 0 {
                    return nil
                }
            }
            spinTurn(spins)
            if q.pointee.consumer.hasRecord() {
                if let b = popSmall(q, i, t) {
                    return QResult(opcode: .pop, qd: scheduler.operation(t).pointee.qd, qt: qt,
                                   value: .sga(ScatterGatherArray(head: b)))
                }
                unpark(i)
                if let b = receiveSmall(q) {
                    q.pointee.pops.removeHead(scheduler)
                    pool.giveToApplication(b)
                    unretired = t
                    return QResult(opcode: .pop, qd: scheduler.operation(t).pointee.qd, qt: qt,
                                   value: .sga(ScatterGatherArray(head: b)))
                }
                let received = receive(i)
                if case .message(let b) = received {
                    let qd = scheduler.operation(t).pointee.qd
                    queues[i].pops.removeHead(scheduler)
                    pool.giveToApplication(b)
                    unretired = t
                    return QResult(opcode: .pop, qd: qd, qt: qt, value: .sga(ScatterGatherArray(head: b)))
                }
                finishPop(t, scheduler.operation(t), i, received)
                return nil
            }
        }
    }

    /// How many turns of a spinning wait use ``cdemi_spin_short()`` before it falls back to a pause.
    static let shortSpinTurns = 64

    /// The wait between two looks at a ring in a spinning wait, turn `spins` (from 1). The first turns wait on a load
    /// fence rather than a pause: a ping-pong's reply comes within a few hundred cycles of the wait's start, and seen
    /// one pause late it costs the round trip half a pause (about 35 cycles) on average at each end. Past those turns
    /// (a longer wait) the pause, which leaves more of the core to its sibling and fewer loads on the line the
    /// producer is taking.
    @inline(__always)
    func spinTurn(_ spins: Int) {
        if spins < Self.shortSpinTurns { cdemi_spin_short() } else { cdemi_cpu_relax() }
    }

    /// True if queue `q` can take a short message into its spare: it has one, and no partial message or end-of-file
    /// is in the way. Only this thread changes these.
    @inline(__always)
    func canTakeShort(_ q: UnsafeMutablePointer<Queue>) -> Bool {
        q.pointee.spare != nil && q.pointee.partial == nil && !q.pointee.endOfFile
    }

    /// The length of the record at `position` (whose stamp the caller has seen) if it holds a whole message of 1 to
    /// ``smallLimit`` bytes, else nil.
    @inline(__always)
    func shortMessageLength(_ q: UnsafeMutablePointer<Queue>, at position: Int) -> Int? {
        guard let length = q.pointee.consumer.wholeMessageLength(at: position),
              UInt(bitPattern: length &- 1) < UInt(bitPattern: smallLimit) else { return nil }
        return length
    }

    /// The short path of a spinning wait that sees a record: a whole message of up to ``smallMessage`` bytes in one
    /// record is copied into the spare buffer and the head published later with one release store; pop `t` is done
    /// (its slot is retired by the next call). Nil (nothing consumed) for anything else.
    @inline(__always)
    func popSmall(_ q: UnsafeMutablePointer<Queue>, _ i: Int, _ t: UInt32) -> DemiBuffer? {
        let position = q.pointee.consumer.headPosition
        guard q.pointee.consumer.flags(at: position) == 0 else { return popSmallAfterLap(q, i, t) }
        return takeSmall(q, i, t, at: position)
    }

    /// ``popSmall(_:_:_:)`` of a record with flags: after a lap record (the producer rewound), the message that
    /// follows at the start of the ring (stored before the lap's stamp). Nil for any other flags.
    @inline(never)
    func popSmallAfterLap(_ q: UnsafeMutablePointer<Queue>, _ i: Int, _ t: UInt32) -> DemiBuffer? {
        guard q.pointee.consumer.flags(at: q.pointee.consumer.headPosition) == RecordHeader.lap else { return nil }
        q.pointee.consumer.skipLap()
        guard q.pointee.consumer.hasRecord(), q.pointee.consumer.flags(at: 0) == 0 else { return nil }
        return takeSmall(q, i, t, at: 0)
    }

    /// Takes the record at `position` (whose stamp the caller has seen, with no flags) if it holds a whole message that
    /// fits the spare buffer, in one piece; nil (nothing consumed) otherwise.
    @inline(__always)
    func takeSmall(_ q: UnsafeMutablePointer<Queue>, _ i: Int, _ t: UInt32, at position: Int) -> DemiBuffer? {
        // A whole message of 1 to smallLimit bytes, not wrapping.
        guard let length = shortMessageLength(q, at: position),
              position &+ RecordHeader.size &+ length <= q.pointee.consumer.capacity, canTakeShort(q)
        else { return nil }
        return takeSmallChecked(q, i, t, at: position, length: length)
    }

    /// ``takeSmall(_:_:_:at:)`` once every check has passed: a whole message of `length` bytes (1 to ``smallLimit``)
    /// at `position`, not wrapping, and a spare, no partial message and no end-of-file on the queue.
    @inline(__always)
    func takeSmallChecked(_ q: UnsafeMutablePointer<Queue>, _ i: Int, _ t: UInt32, at position: Int, length: Int)
        -> DemiBuffer {
        let b = q.pointee.spare.unsafelyUnwrapped
        q.pointee.consumer.consumeSmallUnpublished(at: position, length: length, into: b.baseAddress)
        // A spare is a buffer of the pool's smallest class (``spareSize``, at least ``smallMessage``) at offset 0.
        b.header.pointee.length = UInt32(truncatingIfNeeded: length)
        q.pointee.spare = nil
        b.header.pointee.flags |= BufferHeader.Flags.appOwned  // pool.giveToApplication of one segment
        handedOut = b.header
        // Publishing the head, unparking and dequeuing the pop wait for the next call into the libOS (``retire()``),
        // which every entry point makes before it looks at a queue's pops, the parked set or the consumer (a push
        // after its bytes are in the ring): a store to a line the producer reads would otherwise sit in the store
        // buffer ahead of the reply's stores, and the reply could not be seen before that line was taken back.
        unretired = t
        unretiredQueue = i
        unpublishedQueue = i
        return b
    }

    /// A completion handed back in registers by ``waitFast(_:)``.
    @frozen
    public struct FastCompletion {
        /// `.push` or `.pop`; `.invalid` if the short path did not apply.
        public var code: OperationCode
        public var qd: QDesc
        /// A pop's message.
        public var buffer: DemiBuffer?
    }

    /// The facade's short path of a wait with no timeout, for the two waits of a ping-pong: a push that completed
    /// inline (its slot is freed here) and the pop the caller waits for when a pass could do nothing but check its ring
    /// (spun on as in ``waitOwnPop(_:_:)``, a small whole message copied out). `.invalid`, with nothing consumed,
    /// when neither applies, a pass is due, or the pop ends otherwise: then ``wait(_:timeout:)`` does the rest.
    public func waitFast(_ qt: QToken) -> FastCompletion {
        let s = scheduler
        if let (code, qd, buffer) = s.takePlain(qt) { return FastCompletion(code: code, qd: qd, buffer: buffer) }
        retire()
        let none = FastCompletion(code: .invalid, qd: QDesc(rawValue: -1))
        guard parkedCount == 1, s.nextTimerDeadline == nil else { return none }
        let t = UInt32(truncatingIfNeeded: qt.rawValue)
        let i = Int(parked[0])
        guard queues[i].pops.head == t, s.isPending(qt), s.isIdle else { return none }
        let q = queues.pointer(i)  // the table does not grow while this loop runs
        // As the C ring's pop, but on the next record's stamp rather than an index: one load per turn, compared with
        // the expected stamp in a register; plus a spin-wait hint (pause) per turn, measured faster: the spinning core
        // contends less for the line the producer is taking to store to (and under a hypervisor, a paused vCPU may
        // give way to the peer's).
        let stampWord = q.pointee.consumer.stampWord
        let expected = q.pointee.consumer.expectedStamp
        // A re-armed pop's spare went out with the last message: the copy below needs a new one.
        if q.pointee.spare == nil { _ = refillSpare(q) }
        // What the short take needs besides the record itself, none of which can change while this thread spins: a
        // spare, no partial message, no end-of-file, and room for any short message before the ring's end (so no
        // length can wrap). Checked once here, so that seeing the record costs only the record's own checks.
        let position = q.pointee.consumer.headPosition
        let shortReady = canTakeShort(q) && position &+ RecordHeader.size &+ smallLimit <= q.pointee.consumer.capacity
        // Looked at once before the first pause: the reply may have come while the caller was between its push and
        // this wait (a pause costs about 25 ns here).
        var stamp = cdemi_load_acquire_u64(stampWord)
        var spins = 0
        while stamp & ~RecordHeader.flagBits != expected {
            spins &+= 1
            if spins & 31 == 0 {
                if passes & 1023 == 1023 { return none }
                passes &+= 1
                if q.pointee.peerDead || cdemi_load_acquire_u32(q.pointee.peerClosed.unsafelyUnwrapped) != 0 {
                    return none
                }
            }
            spinTurn(spins)
            stamp = cdemi_load_acquire_u64(stampWord)
        }
        let qd = QDesc(rawValue: Int32(truncatingIfNeeded: i) &+ QDesc.base)
        // The stamp as loaded says whether the record has flags (a lap record has).
        if shortReady && stamp & RecordHeader.flagBits == 0, let length = shortMessageLength(q, at: position) {
            return FastCompletion(code: .pop, qd: qd, buffer: takeSmallChecked(q, i, t, at: position, length: length))
        }
        guard let b = popSmall(q, i, t) else { return none }
        return FastCompletion(code: .pop, qd: qd, buffer: b)
    }

    /// Frees the slot of the pop whose result `wait` already returned (its token is consumed).
    @inline(__always)
    func retire() {
        if unretired != Operation.none { retireNow() }
    }

    @inline(never)
    func retireNow() {
        publishPendingHead()
        let t = unretired
        unretired = Operation.none
        let i = unretiredQueue
        if i >= 0 {
            unretiredQueue = -1
            unpark(i)
            queues[i].pops.removeHead(scheduler)
        }
        scheduler.discard(t)
    }

    /// Publishes the head that ``popSmall(_:_:_:)`` left unpublished, if any.
    @inline(__always)
    func publishPendingHead() {
        let i = unpublishedQueue
        if i >= 0 {
            unpublishedQueue = -1
            queues[i].consumer.publishHead()
        }
    }

    /// Re-arms the retired-to-be pop of queue `i` (``unretiredQueue``) as a new pop of that queue, if it is still the
    /// queue's only pop: the slot stays pending, the queue parked and the pop at the head of its list; only the token's
    /// generation moves on (the old token was consumed when its result was returned). The same as retiring it and
    /// starting a pop that parks, without unlinking and relinking anything. Nil (nothing changed) otherwise.
    @inline(__always)
    func rearm(_ i: Int) -> QToken? {
        let t = unretired
        guard queues[i].pops.head == t, queues[i].pops.tail == t else { return nil }
        publishPendingHead()
        unretired = Operation.none
        unretiredQueue = -1
        return scheduler.renew(t)
    }

    // MARK: - The pass

    public func poll(now: Instant) {
        retire()
        // Peer liveness matters only while someone is waiting, i.e. while passes run: check it every 1,024 passes
        // (about 0.1 ms of spinning) instead of arming a timer, so a spinning wait never needs to read the clock.
        passes &+= 1
        if passes & 1023 == 0 && liveness != Operation.none { scheduler.wake(liveness) }
        if parkedCount > 0 { pollParked() }
        scheduler.fireTimers(now: now)
        scheduler.runReady { t in
            if let tag = scheduler.backgroundTag(t) {
                if tag == 1 { checkLiveness(t) }
            } else {
                pollOperation(t)
            }
        }
    }

    func pollOperation(_ t: UInt32) {
        let op = scheduler.operation(t)
        guard let i = try? queueIndex(op.pointee.qd) else { return fail(t, .canceled) }
        switch op.pointee.code {
        case .pop:
            guard queues[i].pops.head == t else { return }
            if queues[i].kind == .pipe { popPipe(t, op, i) } else { popMemory(t, op, i) }
        case .push:
            guard queues[i].pushes.head == t else { return }
            if queues[i].kind == .pipe { pushPipe(t, op, i) } else { pushMemory(t, op, i) }
        default:
            break
        }
    }

    func fail(_ t: UInt32, _ e: Errno) {
        let op = scheduler.operation(t)
        op.pointee.sga.releaseAll()
        op.pointee.sga = .empty
        scheduler.complete(t, .failure(op.pointee.qd, scheduler.token(of: t), e))
    }

    func pushPipe(_ t: UInt32, _ op: UnsafeMutablePointer<Operation>, _ i: Int) {
        if queues[i].peerDead { return failPush(t, i, .connectionReset) }
        if cdemi_load_acquire_u32(queues[i].peerClosed.unsafelyUnwrapped) != 0 { return failPush(t, i, .brokenPipe) }
        let sga = op.pointee.sga
        let total = sga.count
        let limit = queues[i].producer.maxFragment
        while op.pointee.progress < total {
            let length = min(total - op.pointee.progress, limit)
            guard queues[i].producer.hasRoom(recordSize(length)) else {
                return scheduler.wake(t)  // busy-poll: retry next pass
            }
            let last = op.pointee.progress + length == total
            queues[i].producer.write(sga, offset: op.pointee.progress, length: length, total: total,
                                      flags: last ? 0 : RecordHeader.more)
            op.pointee.progress += length
        }
        op.pointee.sga.releaseAll()
        op.pointee.sga = .empty
        queues[i].pushes.removeHead(scheduler)
        scheduler.complete(t, QResult(opcode: .push, qd: op.pointee.qd, qt: QToken(rawValue: 0)))
    }

    func failPush(_ t: UInt32, _ i: Int, _ e: Errno) {
        queues[i].pushes.removeHead(scheduler)
        fail(t, e)
    }

    /// What the ring of pipe `i` holds for the next pop.
    enum Received {
        case empty
        case message(DemiBuffer)
        case endOfFile
        case failed(Errno)
    }

    /// The common case of ``receive(_:)`` when the ring has a record: a whole message that fits the spare buffer is
    /// copied into it. Nil (and nothing consumed) for anything else.
    @inline(__always)
    func receiveSmall(_ q: UnsafeMutablePointer<Queue>) -> DemiBuffer? {
        guard canTakeShort(q) else { return nil }
        let s = q.pointee.spare.unsafelyUnwrapped
        let position = q.pointee.consumer.headPosition
        // A whole message that fits the spare.
        guard q.pointee.consumer.flags(at: position) == 0,
              let length = q.pointee.consumer.wholeMessageLength(at: position), length <= smallLimit else { return nil }
        // A spare is a buffer of the pool's smallest class (``spareSize``, at least ``smallMessage``) at offset 0.
        s.header.pointee.length = UInt32(truncatingIfNeeded: length)
        q.pointee.spare = nil
        if position &+ RecordHeader.size &+ length <= q.pointee.consumer.capacity {
            q.pointee.consumer.consumeSmallUnpublished(at: position, length: length, into: s.baseAddress)
            q.pointee.consumer.publishHead()
        } else {
            q.pointee.consumer.consume(length: length, into: s.baseAddress)  // the payload wraps
        }
        handedOut = s.header  // every caller hands it to the application
        return s
    }

    /// Takes the next whole message from pipe `i`'s ring (reassembling fragments), if there is one.
    @inline(__always)
    func receive(_ i: Int) -> Received {
        if queues[i].endOfFile { return .endOfFile }
        while true {
            while queues[i].consumer.hasRecord() {
                let (length, flags, total) = queues[i].consumer.peek()
                if flags & RecordHeader.lap != 0 {
                    queues[i].consumer.skipLap()
                    continue
                }
                // (A fragment is at most half of this pipe's ring less a header: the opener's ring size is the
                // creator's, not necessarily this libOS's own setting.)
                guard length <= total, total <= maxMessage, length <= queues[i].consumer.maxFragment else {
                    // A corrupt ring: the peer lied. Fail rather than read out of bounds.
                    queues[i].peerDead = true
                    return .failed(.badMessage)
                }
                if queues[i].partial == nil {
                    if flags & RecordHeader.more == 0 {
                        guard length == total else {
                            queues[i].peerDead = true
                            return .failed(.badMessage)
                        }
                        let b: DemiBuffer
                        if let s = queues[i].spare, s.setCount(total) {
                            queues[i].spare = nil
                            b = s
                        } else {
                            guard let a = pool.allocate(size: total, headroom: 0) else { return .failed(.noMemory) }
                            b = a
                        }
                        queues[i].consumer.consume(length: length, into: b.baseAddress)
                        return .message(b)
                    }
                    guard let b = pool.allocate(size: total, headroom: 0) else { return .failed(.noMemory) }
                    queues[i].partial = b
                    queues[i].partialFilled = 0
                }
                let b = queues[i].partial.unsafelyUnwrapped
                guard queues[i].partialFilled + length <= b.count else {
                    queues[i].peerDead = true
                    return .failed(.badMessage)
                }
                queues[i].consumer.consume(length: length, into: b.baseAddress + queues[i].partialFilled)
                queues[i].partialFilled += length
                if flags & RecordHeader.more == 0 {
                    queues[i].partial = nil
                    return .message(b)
                }
            }
            // The ring is empty. End-of-file if the peer closed (recheck: data written before the flag must be read).
            if cdemi_load_acquire_u32(queues[i].peerClosed.unsafelyUnwrapped) != 0 {
                if queues[i].consumer.hasRecord() { continue }
                queues[i].endOfFile = true
                return .endOfFile
            }
            if queues[i].peerDead { return .failed(.connectionReset) }
            return .empty
        }
    }

    func popPipe(_ t: UInt32, _ op: UnsafeMutablePointer<Operation>, _ i: Int) {
        unpark(i)
        finishPop(t, op, i, receive(i))
    }

    func finishPop(_ t: UInt32, _ op: UnsafeMutablePointer<Operation>, _ i: Int, _ received: Received) {
        switch received {
        case .empty:
            park(i)
            if queues[i].spare == nil { queues[i].spare = pool.allocate(size: Self.spareSize, headroom: 0) }
        case .message(let b): completePop(t, op, i, b)
        case .endOfFile: completePop(t, op, i, nil)
        case .failed(let e): failPop(t, i, e)
        }
    }

    func failPop(_ t: UInt32, _ i: Int, _ e: Errno) {
        queues[i].pops.removeHead(scheduler)
        fail(t, e)
    }

    /// Completes a pop with `buffer`, or with a zero-length array (end-of-file) if nil.
    func completePop(_ t: UInt32, _ op: UnsafeMutablePointer<Operation>, _ i: Int, _ buffer: DemiBuffer?) {
        var b = buffer
        if b == nil {
            guard let z = pool.allocate(size: 0, headroom: 0) else { return failPop(t, i, .noMemory) }
            b = z
        }
        let sga = ScatterGatherArray(head: b)
        pool.giveToApplication(b.unsafelyUnwrapped)
        queues[i].pops.removeHead(scheduler)
        scheduler.complete(t, QResult(opcode: .pop, qd: op.pointee.qd, qt: QToken(rawValue: 0), value: .sga(sga)))
    }

    func pushMemory(_ t: UInt32, _ op: UnsafeMutablePointer<Operation>, _ i: Int) {
        let cap = options.memoryQueueCapacity
        guard queues[i].slotCount < cap else { return scheduler.wake(t) }
        let s = queues[i].slots.unsafelyUnwrapped
        // The queue keeps the push's references; the push is done once the array is queued.
        s[(queues[i].slotHead + queues[i].slotCount) % cap] = op.pointee.sga
        queues[i].slotCount += 1
        op.pointee.sga = .empty
        queues[i].pushes.removeHead(scheduler)
        scheduler.complete(t, QResult(opcode: .push, qd: op.pointee.qd, qt: QToken(rawValue: 0)))
        if !queues[i].pops.isEmpty { scheduler.wake(queues[i].pops.head) }
    }

    func popMemory(_ t: UInt32, _ op: UnsafeMutablePointer<Operation>, _ i: Int) {
        guard queues[i].slotCount > 0 else { return }  // woken by the next push
        let cap = options.memoryQueueCapacity
        let sga = queues[i].slots.unsafelyUnwrapped[queues[i].slotHead]
        queues[i].slotHead = (queues[i].slotHead + 1) % cap
        queues[i].slotCount -= 1
        // The popper gets its own handles (views), so pusher and popper can each free what they hold.
        var views: DemiBuffer? = nil
        var last: DemiBuffer? = nil
        var seg = sga.head
        while let s = seg {
            guard let v = pool.view(of: s) else {
                sga.releaseAll()
                return failPop(t, i, .noMemory)
            }
            if let l = last { l.header.pointee.next = v.header } else { views = v }
            last = v
            seg = s.nextSegment
        }
        sga.releaseAll()
        let out = ScatterGatherArray(head: views)
        if let h = views { pool.giveToApplication(h) }
        queues[i].pops.removeHead(scheduler)
        scheduler.complete(t, QResult(opcode: .pop, qd: op.pointee.qd, qt: QToken(rawValue: 0), value: .sga(out)))
        if !queues[i].pushes.isEmpty { scheduler.wake(queues[i].pushes.head) }
    }

    // MARK: - Peer liveness

    func startLiveness() throws(Errno) {
        guard liveness == Operation.none else { return }
        liveness = try scheduler.spawnBackground(tag: 1)
    }

    /// The liveness coroutine: marks pipes whose peer process has exited. It is woken every 1,024 passes.
    func checkLiveness(_ t: UInt32) {
        guard pipeCount > 0 else {
            scheduler.endBackground(t)
            liveness = Operation.none
            return
        }
        for i in queues.indices where queues[i].inUse && queues[i].kind == .pipe && !queues[i].peerDead {
            let pid = cdemi_load_acquire_u32(queues[i].peerPid.unsafelyUnwrapped)
            if queues[i].peerPidfd == -1 {
                // A creator learns its peer when the opener attaches.
                guard pid != 0 else { continue }
                queues[i].peerPidfd = cdemi_pidfd_open(Int32(bitPattern: pid))
                if queues[i].peerPidfd < 0 {
                    if errno == ESRCH { markDead(i); continue }
                    queues[i].peerPidfd = Self.noPidfd
                }
            }
            if queues[i].peerPidfd == Self.noPidfd {
                if kill(pid_t(bitPattern: pid), 0) != 0 && errno == ESRCH { markDead(i) }
            } else if cdemi_pidfd_exited(queues[i].peerPidfd) == 1 {
                markDead(i)
            }
        }
    }

    func markDead(_ i: Int) {
        queues[i].peerDead = true
        // A parked pop sees the flag in the next pass.
        if !queues[i].pops.isEmpty && queues[i].parkedAt < 0 { scheduler.wake(queues[i].pops.head) }
        if !queues[i].pushes.isEmpty { scheduler.wake(queues[i].pushes.head) }
    }
}

@inline(__always)
func word(_ base: UnsafeMutableRawPointer, _ offset: Int) -> UnsafeMutablePointer<UInt64> {
    (base + offset).assumingMemoryBound(to: UInt64.self)
}

@inline(__always)
func half(_ base: UnsafeMutableRawPointer, _ offset: Int) -> UnsafeMutablePointer<UInt32> {
    (base + offset).assumingMemoryBound(to: UInt32.self)
}

/// The shared wait loop of ``PollingLibOS`` (the extension's `wait`, which ``SharedMemoryLibOS`` shadows).
@inline(never)
func sharedWait<L: PollingLibOS>(_ l: L, _ qt: QToken, _ timeout: Duration?) throws(Errno) -> QResult {
    try l.wait(qt, timeout: timeout)
}

@inline(never)
func sharedWaitAny<L: PollingLibOS>(
    _ l: L, _ qts: UnsafeBufferPointer<QToken>, _ timeout: Duration?, _ rotor: inout Int
) throws(Errno) -> (Int, QResult) {
    try l.waitAny(qts, timeout: timeout, rotor: &rotor)
}

@inline(never)
func sharedWaitNext<L: PollingLibOS>(
    _ l: L, _ out: UnsafeMutableBufferPointer<QResult>, _ timeout: Duration?
) throws(Errno) -> Int {
    try l.waitNext(into: out, timeout: timeout)
}
