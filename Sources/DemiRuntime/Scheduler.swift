#if canImport(Glibc)
import Glibc
#endif
import DemiBuffers
import DemiCore

/// The cooperative scheduler of one libOS: stackless coroutines as records in slots, readiness in a bitset.
///
/// The paper's three kinds of coroutines map onto it as follows:
/// - **Fast-path pollers** (one per device) are always runnable; the libOS calls them at the start of every pass.
/// - **Background coroutines** (timers, retransmission, ARP) are slots spawned with ``spawnBackground(tag:)``, woken
///   by timers (``armTimer(_:at:)``) or by other coroutines.
/// - **Application coroutines**, one per operation, are slots spawned with ``spawn(_:)``; the returned qtoken names
///   the slot and its generation.
///
/// A slot is polled only while its bit is set; ``runReady(_:)`` hands each set index to the libOS, which dispatches on
/// the operation's code with a `switch` (static dispatch; no closures, existentials or allocations per operation).
/// Slots live in chunks that never move, so a pointer to an operation stays valid while other operations are spawned.
///
/// Completed operations keep their results in their slots until a wait consumes them; a list threaded through the
/// slots keeps them in completion order for ``takeNextCompleted()``. Nothing ever times out by itself.
///
/// Not thread-safe: a scheduler belongs to the thread that runs its libOS.
public final class Scheduler {
    @usableFromInline
    struct Slot {
        /// First, so a slot's address is its operation's address.
        @usableFromInline var operation: Operation
        @usableFromInline var generation: UInt32
        @usableFromInline var state: UInt8
        @usableFromInline var nextFree: UInt32
        @usableFromInline var completedPrev: UInt32
        @usableFromInline var completedNext: UInt32
        @usableFromInline var tag: UInt64
        @usableFromInline var result: QResult
    }

    @usableFromInline enum State {
        @usableFromInline static var free: UInt8 { 0 }
        @usableFromInline static var pending: UInt8 { 1 }
        @usableFromInline static var completed: UInt8 { 2 }
        @usableFromInline static var background: UInt8 { 3 }
    }

    /// Slots per chunk, and the most chunks: at most 1,048,576 live tasks; more is `EAGAIN`.
    public static let chunkSize = 1024
    public static let maxChunks = 1024
    @usableFromInline static var none: UInt32 { .max }

    @usableFromInline let chunks: UnsafeMutablePointer<UnsafeMutablePointer<Slot>?>
    @exclusivity(unchecked) @usableFromInline var chunkCount = 0
    @exclusivity(unchecked) @usableFromInline var freeHead: UInt32 = Scheduler.none
    @exclusivity(unchecked) @usableFromInline var ready: ReadySet
    @exclusivity(unchecked) @usableFromInline var timers: TimerQueue
    @exclusivity(unchecked) @usableFromInline var completedHead: UInt32 = Scheduler.none
    @exclusivity(unchecked) @usableFromInline var completedTail: UInt32 = Scheduler.none

    @exclusivity(unchecked) @usableFromInline var completedTotal = 0
    @exclusivity(unchecked) @usableFromInline var liveTotal = 0

    /// Completed operations not yet consumed by a wait.
    @inlinable public var completedCount: Int { completedTotal }
    /// Live slots (pending, completed or background).
    @inlinable public var liveCount: Int { liveTotal }

    public init() {
        chunks = .allocate(capacity: Self.maxChunks)
        chunks.initialize(repeating: nil, count: Self.maxChunks)
        ready = ReadySet(capacity: Self.chunkSize * Self.maxChunks)
        ready.summaryCount = 0
        timers = TimerQueue(capacity: Self.chunkSize)
        _ = addChunk()
    }

    deinit {
        for c in 0..<chunkCount { chunks[c]?.deallocate() }
        chunks.deallocate()
        ready.summaryCount = (ready.wordCount + 63) / 64
        ready.deallocate()
        timers.deallocate()
    }

    @usableFromInline
    func addChunk() -> Bool {
        guard chunkCount < Self.maxChunks else { return false }
        let c = UnsafeMutablePointer<Slot>.allocate(capacity: Self.chunkSize)
        let base = UInt32(chunkCount * Self.chunkSize)
        for i in 0..<Self.chunkSize {
            let next = i + 1 < Self.chunkSize ? base + UInt32(i + 1) : freeHead
            (c + i).initialize(to: Slot(
                operation: Operation(code: .invalid, qd: QDesc(rawValue: -1)),
                generation: 1, state: State.free, nextFree: next, completedPrev: Self.none,
                completedNext: Self.none, tag: 0,
                result: QResult(opcode: .invalid, qd: QDesc(rawValue: -1), qt: QToken(rawValue: 0))))
        }
        chunks[chunkCount] = c
        chunkCount += 1
        freeHead = base
        let capacity = chunkCount * Self.chunkSize
        ready.summaryCount = (capacity / 64 + 63) / 64
        timers.grow(to: capacity)
        return true
    }

    @inlinable @inline(__always)
    func slot(_ i: UInt32) -> UnsafeMutablePointer<Slot> {
        chunks[Int(i >> 10)].unsafelyUnwrapped + Int(i & 1023)
    }

    @inlinable var capacity: Int { chunkCount * Self.chunkSize }

    @inlinable
    func allocateSlot() throws(Errno) -> UInt32 { try allocateSlotInline() }

    /// ``allocateSlot()`` inlined, for the short paths of operations that finish as they start (inlining it into
    /// ``spawn(_:)`` as well made that one slower).
    @inlinable @inline(__always)
    func allocateSlotInline() throws(Errno) -> UInt32 {
        if freeHead == Self.none {
            guard addChunk() else { throw .wouldBlock }
        }
        let i = freeHead
        freeHead = slot(i).pointee.nextFree
        liveTotal += 1
        return i
    }

    @inlinable @inline(__always)
    func freeSlot(_ i: UInt32) {
        freePlainSlot(i)
        ready.remove(i)
        if timers.isArmed(i) { timers.cancel(i) }
    }

    /// ``freeSlot(_:)`` for a slot that was never runnable and never had a timer: a plain result's
    /// (``spawnCompletedPlain(_:qd:)``), which is complete from the start.
    @inlinable @inline(__always)
    func freePlainSlot(_ i: UInt32) {
        let s = slot(i)
        s.pointee.state = State.free
        s.pointee.generation &+= 1
        if s.pointee.generation == 0 { s.pointee.generation = 1 }
        s.pointee.nextFree = freeHead
        freeHead = i
        liveTotal -= 1
    }

    // MARK: - Tokens

    @inlinable
    public func token(of index: UInt32) -> QToken {
        QToken(rawValue: UInt64(slot(index).pointee.generation) << 32 | UInt64(index))
    }

    /// The slot of a live operation token (pending or completed), or nil for an unknown, consumed or forged token.
    @inlinable
    public func index(of qt: QToken) -> UInt32? {
        let i = UInt32(truncatingIfNeeded: qt.rawValue)
        guard Int(i) < capacity else { return nil }
        let s = slot(i)
        guard s.pointee.generation == UInt32(truncatingIfNeeded: qt.rawValue >> 32),
              s.pointee.state == State.pending || s.pointee.state == State.completed else { return nil }
        return i
    }

    /// True if `qt` names a completed operation whose result waits to be taken.
    @inlinable
    public func isCompleted(_ qt: QToken) -> Bool {
        guard let i = index(of: qt) else { return false }
        return slot(i).pointee.state == State.completed
    }

    // MARK: - Application coroutines

    /// Starts an operation coroutine. It starts runnable, so the libOS polls it in the next pass.
    ///
    /// Throws `EAGAIN` when every slot is taken.
    @inlinable
    public func spawn(_ operation: Operation) throws(Errno) -> QToken {
        let i = try allocateSlot()
        let s = slot(i)
        s.pointee.state = State.pending
        s.pointee.operation = operation
        s.pointee.tag = 0
        ready.insert(i)
        return token(of: i)
    }

    /// Starts an operation that waits on something its libOS watches by other means (a pop parked on a ring that the
    /// fast-path poller checks): like ``spawn(_:)`` but not runnable until woken, so no pass polls it for nothing.
    ///
    /// Throws `EAGAIN` when every slot is taken.
    @inlinable
    public func spawnWaiting(_ operation: Operation) throws(Errno) -> QToken {
        let i = try allocateSlotInline()
        let s = slot(i)
        s.pointee.state = State.pending
        s.pointee.operation = operation
        s.pointee.tag = 0
        return token(of: i)
    }

    /// A token for an operation that finished as it started (a push that found room, a pop that found a message):
    /// the same as ``spawn(_:)`` then ``complete(_:_:)`` with `result` (its `qt` is filled in), without making the slot
    /// runnable or looking for a timer in between. The operation record keeps only `code` and `qd`.
    ///
    /// Throws `EAGAIN` when every slot is taken.
    @inlinable
    public func spawnCompleted(_ code: OperationCode, qd: QDesc, result: QResult) throws(Errno) -> QToken {
        let i = try allocateSlotInline()
        let s = slot(i)
        let qt = QToken(rawValue: UInt64(s.pointee.generation) << 32 | UInt64(i))
        s.pointee.state = State.completed
        s.pointee.operation.code = code
        s.pointee.operation.qd = qd
        s.pointee.tag = 0
        s.pointee.result = result
        s.pointee.result.qt = qt
        s.pointee.completedNext = Self.none
        s.pointee.completedPrev = completedTail
        if completedTail != Self.none { slot(completedTail).pointee.completedNext = i } else { completedHead = i }
        completedTail = i
        completedTotal += 1
        return qt
    }

    /// The `tag` of a completed slot whose result is plain (no error, no value): `opcode` and `qd` are the operation's
    /// `code` and `qd`, and the result record itself is not written.
    @usableFromInline static var plainResult: UInt64 { 1 << 63 }
    /// The `tag` of a completed slot whose result is a pop's buffer and nothing else: `opcode`, `qd` and the buffer
    /// (in the record's `sga`) are stored in place, as for ``plainResult``.
    @usableFromInline static var plainBuffer: UInt64 { 1 << 62 }

    /// ``spawnCompleted(_:qd:result:)`` for a plain result (an inline push): only the operation's `code` and `qd` are
    /// stored, each in place, and ``take(_:)`` builds the result from them. No record is copied, so a wait right after
    /// reads back exactly what was stored (a wider load of narrower stores would wait for every older store to reach
    /// the cache, such as the shared-memory stores the push just made).
    ///
    /// Throws `EAGAIN` when every slot is taken.
    @inlinable @inline(__always)
    public func spawnCompletedPlain(_ code: OperationCode, qd: QDesc) throws(Errno) -> QToken {
        let i = try allocateSlotInline()
        let s = slot(i)
        let qt = QToken(rawValue: UInt64(s.pointee.generation) << 32 | UInt64(i))
        s.pointee.state = State.completed
        s.pointee.operation.code = code
        s.pointee.operation.qd = qd
        s.pointee.tag = Self.plainResult
        s.pointee.completedNext = Self.none
        let tail = completedTail
        s.pointee.completedPrev = tail
        if tail != Self.none { slot(tail).pointee.completedNext = i } else { completedHead = i }
        completedTail = i
        completedTotal += 1
        return qt
    }

    /// ``spawnCompletedPlain(_:qd:)`` for a pop that found its message (one buffer, no address, no error): the buffer
    /// is stored in the record too, and ``takePlain(_:)`` hands it back.
    ///
    /// Throws `EAGAIN` when every slot is taken.
    @inlinable @inline(__always)
    public func spawnCompletedPlain(_ code: OperationCode, qd: QDesc, buffer: DemiBuffer) throws(Errno) -> QToken {
        let qt = try spawnCompletedPlain(code, qd: qd)
        let s = slot(UInt32(truncatingIfNeeded: qt.rawValue))
        s.pointee.operation.sga.head = buffer
        s.pointee.tag = Self.plainBuffer
        return qt
    }

    /// ``spawnWaiting(_:)`` for an operation with no data (a pop): the record's fields are stored in place.
    ///
    /// Throws `EAGAIN` when every slot is taken.
    @inlinable @inline(__always)
    public func spawnWaiting(_ code: OperationCode, qd: QDesc) throws(Errno) -> QToken {
        let i = try allocateSlotInline()
        let s = slot(i)
        s.pointee.state = State.pending
        s.pointee.operation.code = code
        s.pointee.operation.qd = qd
        s.pointee.operation.sga.head = nil
        s.pointee.operation.progress = 0
        s.pointee.operation.link = Operation.none
        s.pointee.tag = 0
        return QToken(rawValue: UInt64(s.pointee.generation) << 32 | UInt64(i))
    }

    /// Ends pending operation `index` whose result its libOS handed to the waiter directly: frees the slot without
    /// completing it, so its token is consumed (the same as ``complete(_:_:)`` then ``take(_:)``, without the result).
    @inlinable
    public func discard(_ index: UInt32) {
        guard slot(index).pointee.state == State.pending else { return }
        freeSlot(index)
    }

    /// Gives pending operation `index`, whose result its libOS handed to the waiter directly (consuming its token),
    /// a new token, the operation record unchanged: the same as ``discard(_:)`` then a spawn of the same record, for a
    /// libOS that starts the same operation again at once (the next pop of a ping-pong). The slot must be pending, not
    /// runnable and without a timer, as a slot the libOS parked is.
    @inlinable @inline(__always)
    public func renew(_ index: UInt32) -> QToken {
        let s = slot(index)
        s.pointee.generation &+= 1
        if s.pointee.generation == 0 { s.pointee.generation = 1 }
        return QToken(rawValue: UInt64(s.pointee.generation) << 32 | UInt64(index))
    }

    /// The record of operation `index`, to read and update while polling it.
    @inlinable
    public func operation(_ index: UInt32) -> UnsafeMutablePointer<Operation> {
        UnsafeMutableRawPointer(slot(index)).assumingMemoryBound(to: Operation.self)
    }

    /// True if `index` is a pending operation (not completed, not free, not background).
    @inlinable
    public func isPending(_ index: UInt32) -> Bool { slot(index).pointee.state == State.pending }

    /// Completes operation `index` with `result` (its `qt` is filled in). The result waits in the slot for a wait.
    @inlinable
    public func complete(_ index: UInt32, _ result: QResult) {
        let s = slot(index)
        guard s.pointee.state == State.pending else { return }
        s.pointee.state = State.completed
        s.pointee.result = result
        s.pointee.result.qt = token(of: index)
        s.pointee.operation.sga = .empty
        ready.remove(index)
        if timers.isArmed(index) { timers.cancel(index) }
        // Append to the completion list.
        s.pointee.completedNext = Self.none
        s.pointee.completedPrev = completedTail
        if completedTail != Self.none { slot(completedTail).pointee.completedNext = index } else {
            completedHead = index
        }
        completedTail = index
        completedTotal += 1
    }

    /// Takes the result of a completed operation, consuming the token. Nil if `qt` is not completed (or not valid).
    @inlinable
    public func take(_ qt: QToken) -> QResult? {
        let i = UInt32(truncatingIfNeeded: qt.rawValue)
        guard Int(i) < capacity else { return nil }
        let s = slot(i)
        guard s.pointee.state == State.completed, s.pointee.generation == UInt32(truncatingIfNeeded: qt.rawValue >> 32)
        else { return nil }
        return takeSlot(i)
    }

    /// True if `qt` is a pending operation's token.
    @inlinable @inline(__always)
    public func isPending(_ qt: QToken) -> Bool {
        let i = UInt32(truncatingIfNeeded: qt.rawValue)
        guard Int(i) < capacity else { return false }
        let s = slot(i)
        return s.pointee.state == State.pending && s.pointee.generation == UInt32(truncatingIfNeeded: qt.rawValue >> 32)
    }

    /// ``take(_:)`` for a plain result (see ``spawnCompletedPlain(_:qd:)``): the operation's code and queue, read back
    /// as they were stored, or nil (nothing taken) if `qt` is not a completed operation with a plain result.
    /// A pop's buffer (``spawnCompletedPlain(_:qd:buffer:)``) comes back as the third element; nil for other results.
    @inlinable @inline(__always)
    public func takePlain(_ qt: QToken) -> (OperationCode, QDesc, DemiBuffer?)? {
        let i = UInt32(truncatingIfNeeded: qt.rawValue)
        guard Int(i) < capacity else { return nil }
        let s = slot(i)
        guard s.pointee.state == State.completed, s.pointee.tag & (Self.plainResult | Self.plainBuffer) != 0,
              s.pointee.generation == UInt32(truncatingIfNeeded: qt.rawValue >> 32) else { return nil }
        let code = s.pointee.operation.code
        let qd = s.pointee.operation.qd
        var buffer: DemiBuffer?
        if s.pointee.tag == Self.plainBuffer {
            buffer = s.pointee.operation.sga.head
            s.pointee.operation.sga.head = nil
        }
        let p = s.pointee.completedPrev
        let n = s.pointee.completedNext
        if p != Self.none { slot(p).pointee.completedNext = n } else { completedHead = n }
        if n != Self.none { slot(n).pointee.completedPrev = p } else { completedTail = p }
        completedTotal -= 1
        freePlainSlot(i)
        return (code, qd, buffer)
    }

    /// Takes the oldest completed result, if any.
    @inlinable
    public func takeNextCompleted() -> QResult? {
        guard completedHead != Self.none else { return nil }
        return takeSlot(completedHead)
    }

    @inlinable
    func takeSlot(_ i: UInt32) -> QResult {
        let s = slot(i)
        if s.pointee.tag & (Self.plainResult | Self.plainBuffer) != 0 { materializePlain(s, i) }  // not by takePlain
        let r = s.pointee.result
        let p = s.pointee.completedPrev
        let n = s.pointee.completedNext
        if p != Self.none { slot(p).pointee.completedNext = n } else { completedHead = n }
        if n != Self.none { slot(n).pointee.completedPrev = p } else { completedTail = p }
        completedTotal -= 1
        freeSlot(i)
        return r
    }

    @usableFromInline @inline(never)
    func materializePlain(_ s: UnsafeMutablePointer<Slot>, _ i: UInt32) {
        var value = QResult.Value.none
        if s.pointee.tag == Self.plainBuffer {
            value = .sga(ScatterGatherArray(head: s.pointee.operation.sga.head))
            s.pointee.operation.sga.head = nil
        }
        s.pointee.result = QResult(opcode: s.pointee.operation.code, qd: s.pointee.operation.qd, qt: token(of: i),
                                   value: value)
        s.pointee.tag = 0
    }

    // MARK: - Background coroutines and timers

    /// Starts a background coroutine with a libOS-defined `tag`; returns its index. It starts runnable.
    @inlinable
    public func spawnBackground(tag: UInt64) throws(Errno) -> UInt32 {
        let i = try allocateSlot()
        let s = slot(i)
        s.pointee.state = State.background
        s.pointee.tag = tag
        ready.insert(i)
        return i
    }

    /// Ends a background coroutine.
    @inlinable
    public func endBackground(_ index: UInt32) {
        guard slot(index).pointee.state == State.background else { return }
        freeSlot(index)
    }

    /// The tag of background coroutine `index`, or nil if `index` is not one.
    @inlinable
    public func backgroundTag(_ index: UInt32) -> UInt64? {
        let s = slot(index)
        return s.pointee.state == State.background ? s.pointee.tag : nil
    }

    /// Makes task `index` runnable. Waking a task that is not pending or background has no effect on it.
    @inlinable @inline(__always)
    public func wake(_ index: UInt32) { ready.insert(index) }

    /// Arms (or re-arms) the timer of task `index`: it is woken once `deadline` has passed.
    @inlinable
    public func armTimer(_ index: UInt32, at deadline: Instant) { timers.arm(index, at: deadline.rawValue) }

    @inlinable
    public func cancelTimer(_ index: UInt32) { timers.cancel(index) }

    /// The earliest armed timer, if any.
    @inlinable
    public var nextTimerDeadline: Instant? { timers.nextDeadline.map { Instant(rawValue: $0) } }

    /// Wakes every task whose timer is due at `now`; returns how many.
    @inlinable @discardableResult
    public func fireTimers(now: Instant) -> Int {
        var n = 0
        while let t = timers.popExpired(now: now.rawValue) {
            ready.insert(t)
            n += 1
        }
        return n
    }

    /// True if no task is runnable.
    @inlinable public var isIdle: Bool { ready.isEmpty }

    /// Runs one pass: calls `poll` once for each runnable pending operation or background coroutine, in index order.
    /// Tasks woken during the pass run in this pass if their word is not reached yet, else in the next one.
    @inlinable @inline(__always)
    public func runReady(_ poll: (UInt32) -> Void) {
        ready.drain { i in
            let st = slot(i).pointee.state
            if st == State.pending || st == State.background { poll(i) }
        }
    }
}
