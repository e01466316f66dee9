import DemiCore
import DemiRuntime

// The async/await layer: Swift callers `await` qtokens instead of calling `wait`.
//
// It lives at the edge. `run` drives the libOS on the calling thread with a single-threaded task executor: it runs
// ready Swift jobs, then one libOS pass, then resumes the continuations whose operations completed. Nothing here is
// on the qtoken path: the synchronous calls never look at the waiter list.

@usableFromInline
struct AsyncWaiter {
    @usableFromInline let token: QToken
    @usableFromInline let continuation: UnsafeContinuation<Result<QResult, Errno>, Never>
}

/// The executor of one libOS's async layer: a FIFO of jobs run on the thread that calls ``LibOS/run(_:)``.
final class LibOSExecutor: TaskExecutor, @unchecked Sendable {
    private var jobs: [UnownedJob] = []
    private var head = 0

    func enqueue(_ job: consuming ExecutorJob) {
        jobs.append(UnownedJob(job))
    }

    /// Runs every queued job (and the ones they enqueue); returns how many ran.
    @discardableResult
    func drain() -> Int {
        let me = asUnownedTaskExecutor()
        var n = 0
        while head < jobs.count {
            let j = jobs[head]
            head += 1
            n += 1
            j.runSynchronously(on: me)
        }
        jobs.removeAll(keepingCapacity: true)
        head = 0
        return n
    }
}

/// Moves a non-Sendable value into a task that runs on the same thread (the libOS's executor).
struct SameThread<T>: @unchecked Sendable {
    var value: T
}

extension LibOS {
    /// Runs `body` on this thread with the libOS driving it: inside, `await` any PDPIX operation.
    ///
    /// ```swift
    /// let echoed = try os.run {
    ///     let qd = try os.socket(.inet, .datagram)
    ///     try os.bind(qd, to: SocketAddressV4(.loopback, 0))
    ///     let r = try await os.pop(qd)
    ///     ...
    /// }
    /// ```
    /// Returns what `body` returns; rethrows what it throws. Blocks the calling thread until `body` finishes.
    public func run<T>(_ body: @escaping () async throws -> T) throws -> T {
        let executor = LibOSExecutor()
        let box = SameThread(value: body)
        let outcome = SameThread(value: UnsafeMutablePointer<Result<T, any Error>?>.allocate(capacity: 1))
        outcome.value.initialize(to: nil)
        defer { outcome.value.deinitialize(count: 1); outcome.value.deallocate() }
        Task(executorPreference: executor) {
            let r: Result<T, any Error>
            do { r = .success(try await box.value()) } catch { r = .failure(error) }
            outcome.value.pointee = r
        }
        while true {
            executor.drain()
            if let r = outcome.value.pointee { return try r.get() }
            poll()
            resumeCompletedWaiters()
        }
    }

    /// Resumes every async waiter whose operation has completed.
    @usableFromInline
    func resumeCompletedWaiters() {
        guard !asyncWaiters.isEmpty else { return }
        let s = scheduler
        var i = 0
        while i < asyncWaiters.count {
            let w = asyncWaiters[i]
            if let r = s.take(w.token) {
                asyncWaiters.swapAt(i, asyncWaiters.count - 1)
                asyncWaiters.removeLast()
                w.continuation.resume(returning: .success(r))
            } else if s.index(of: w.token) == nil {
                asyncWaiters.swapAt(i, asyncWaiters.count - 1)
                asyncWaiters.removeLast()
                w.continuation.resume(returning: .failure(.invalidArgument))
            } else {
                i += 1
            }
        }
    }

    /// Suspends until operation `qt` completes; returns its result (a failed operation is a result, not a throw).
    /// Must be called inside ``run(_:)``.
    public func wait(_ qt: QToken) async throws(Errno) -> QResult {
        if let r = scheduler.take(qt) { return r }
        guard scheduler.index(of: qt) != nil else { throw .invalidArgument }
        let r = await withUnsafeContinuation { (c: UnsafeContinuation<Result<QResult, Errno>, Never>) in
            asyncWaiters.append(AsyncWaiter(token: qt, continuation: c))
        }
        return try r.get()
    }

    /// Awaits a result and turns a failed operation into a thrown errno.
    func succeed(_ qt: QToken) async throws(Errno) -> QResult {
        let r = try await wait(qt)
        if let e = r.error { throw e }
        return r
    }

    /// Receives: the popped array (owned by the caller; zero-length means TCP end-of-file).
    public func pop(_ qd: QDesc) async throws(Errno) -> ScatterGatherArray {
        let qt: QToken = try pop(qd)
        return try await succeed(qt).sga ?? .empty
    }

    /// Sends, returning once the libOS is done with the data.
    public func push(_ qd: QDesc, _ sga: ScatterGatherArray) async throws(Errno) {
        let qt: QToken = try push(qd, sga)
        _ = try await succeed(qt)
    }

    /// Sends a datagram to `address`.
    public func pushTo(_ qd: QDesc, _ sga: ScatterGatherArray, to address: SocketAddressV4) async throws(Errno) {
        let qt: QToken = try pushTo(qd, sga, to: address)
        _ = try await succeed(qt)
    }

    /// Accepts a connection: the new queue and the peer address.
    public func accept(_ qd: QDesc) async throws(Errno) -> (QDesc, SocketAddressV4) {
        let qt: QToken = try accept(qd)
        let r = try await succeed(qt)
        guard case .accepted(let q, let a) = r.value else { throw .ioError }
        return (q, a)
    }

    /// Connects.
    public func connect(_ qd: QDesc, to address: SocketAddressV4) async throws(Errno) {
        let qt: QToken = try connect(qd, to: address)
        _ = try await succeed(qt)
    }
}
