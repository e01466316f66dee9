import DemiBuffers
import DemiCore

/// What the shared wait loop needs from a libOS: its scheduler, and one pass of work.
///
/// A pass runs the fast-path pollers (devices), fires due timers and runs every runnable coroutine, with `now` as the
/// only notion of time. The wait calls read the clock once per pass whenever a deadline or an armed timer needs it,
/// so timers fire on time even during short waits; a wait for ever with no timer armed skips the read.
public protocol PollingLibOS: AnyObject {
    var scheduler: Scheduler { get }
    /// Runs one pass at time `now`.
    func poll(now: Instant)
}

extension PollingLibOS {
    /// Waits for operation `qt` and consumes it.
    ///
    /// - Parameter timeout: nil waits for ever; zero runs one pass and returns at once.
    /// - Throws: `EINVAL` for an unknown or consumed token, `ETIMEDOUT` when the timeout passes first. A failed
    ///   operation is not an error of `wait`: its result has opcode ``OperationCode/failed`` and an errno.
    @inlinable
    public func wait(_ qt: QToken, timeout: Duration? = nil) throws(Errno) -> QResult {
        let s = scheduler
        if let r = s.take(qt) { return r }
        guard s.index(of: qt) != nil else { throw .invalidArgument }
        let limit = timeout?.nanoseconds ?? .max
        let timed = limit != .max
        let start = timed || s.nextTimerDeadline != nil ? Instant.now() : .zero
        let deadline = start.adding(nanoseconds: limit)
        var now = start
        while true {
            poll(now: now)
            if let r = s.take(qt) { return r }
            if now >= deadline { throw .timedOut }
            guard s.index(of: qt) != nil else { throw .invalidArgument }
            // The clock is read only when something needs the time: a deadline, or an armed timer.
            if timed || s.nextTimerDeadline != nil { now = Instant.now() }
        }
    }

    /// Waits for the first of several operations, consumes it and returns its index in `qts` with the result.
    ///
    /// Fair: the scan starts at a rotating offset, so a busy token at index 0 cannot starve the others (upstream
    /// #341). Throws `EINVAL` if `qts` is empty or holds an unknown or consumed token, `ETIMEDOUT` on timeout.
    @inlinable
    public func waitAny(
        _ qts: UnsafeBufferPointer<QToken>, timeout: Duration? = nil, rotor: inout Int
    ) throws(Errno) -> (Int, QResult) {
        let s = scheduler
        let n = qts.count
        guard n > 0 else { throw .invalidArgument }
        // Validate every token once (and return a completed one straight away).
        for i in 0..<n {
            let qt = qts[i]
            guard s.index(of: qt) != nil else { throw .invalidArgument }
        }
        let limit = timeout?.nanoseconds ?? .max
        let start = Instant.now()
        let deadline = start.adding(nanoseconds: limit)
        var now = start
        var polled = false
        while true {
            if s.completedCount > 0 {
                rotor = rotor &+ 1
                let base = Int(UInt(bitPattern: rotor) % UInt(n))
                for k in 0..<n {
                    let j = base + k < n ? base + k : base + k - n
                    if let r = s.take(qts[j]) { return (j, r) }
                }
            }
            if polled {
                if now >= deadline { throw .timedOut }
                if limit != .max || s.nextTimerDeadline != nil { now = Instant.now() }
            }
            poll(now: now)
            polled = true
        }
    }

    /// Waits until at least one operation (any token) completes, then takes up to `out.count` completed results in
    /// completion order. Returns how many were written. Throws `ETIMEDOUT` if none completed in time.
    @inlinable
    public func waitNext(into out: UnsafeMutableBufferPointer<QResult>, timeout: Duration? = nil) throws(Errno) -> Int {
        let s = scheduler
        guard out.count > 0 else { throw .invalidArgument }
        let limit = timeout?.nanoseconds ?? .max
        let start = Instant.now()
        let deadline = start.adding(nanoseconds: limit)
        var now = start
        while true {
            if s.completedCount == 0 { poll(now: now) }
            var k = 0
            while k < out.count, let r = s.takeNextCompleted() {
                out[k] = r
                k += 1
            }
            if k > 0 { return k }
            if now >= deadline { throw .timedOut }
            if limit != .max || s.nextTimerDeadline != nil { now = Instant.now() }
        }
    }
}
