import DemiBuffers
import DemiCore
import DemiRuntime
import Testing

/// A libOS without a device: operations complete after a number of passes, so the shared wait loop can be tested
/// deterministically (the real libOSes are tested over real sockets elsewhere).
final class CountingLibOS: PollingLibOS {
    let scheduler = Scheduler()
    var passes = 0
    /// Task index → passes left until it completes.
    var remaining: [UInt32: Int] = [:]

    func start(after passes: Int) throws -> QToken {
        let qt = try scheduler.spawn(Operation(code: .push, qd: QDesc(rawValue: 500)))
        remaining[scheduler.index(of: qt)!] = passes
        return qt
    }

    func poll(now: Instant) {
        passes += 1
        scheduler.runReady { i in
            guard let left = remaining[i] else { return }
            if left <= 1 {
                remaining[i] = nil
                scheduler.complete(i, QResult(opcode: .push, qd: QDesc(rawValue: 500), qt: QToken(rawValue: 0)))
            } else {
                remaining[i] = left - 1
                scheduler.wake(i)
            }
        }
    }
}

@Suite struct WaitLoopTests {
    @Test func waitRunsPassesUntilCompletion() throws {
        let os = CountingLibOS()
        let qt = try os.start(after: 10)
        let r = try os.wait(qt)
        #expect(r.opcode == .push && r.qt == qt)
        #expect(os.passes == 10)
        #expect(throws: Errno.invalidArgument) { try os.wait(qt) }
        #expect(throws: Errno.invalidArgument) { try os.wait(QToken(rawValue: 12345)) }
    }

    @Test func zeroTimeoutPollsOnce() throws {
        let os = CountingLibOS()
        let qt = try os.start(after: 3)
        #expect(throws: Errno.timedOut) { try os.wait(qt, timeout: .zero) }
        #expect(os.passes == 1)
        #expect(throws: Errno.timedOut) { try os.wait(qt, timeout: .zero) }
        let r = try os.wait(qt, timeout: .zero)
        #expect(r.qt == qt && os.passes == 3)
    }

    @Test func waitAnyIsFairAndValidates() throws {
        let os = CountingLibOS()
        var rotor = 0
        var firstIndex = Set<Int>()
        for _ in 0..<8 {
            let a = try os.start(after: 1)
            let b = try os.start(after: 1)
            os.poll(now: .zero)  // both complete
            let (i, _) = try [a, b].withUnsafeBufferPointer { try os.waitAny($0, rotor: &rotor) }
            firstIndex.insert(i)
            _ = try os.wait(i == 0 ? b : a)
        }
        #expect(firstIndex == [0, 1], "with both ready, neither index always wins")
        let c = try os.start(after: 100)
        #expect(throws: Errno.invalidArgument) {
            try [c, QToken(rawValue: 9)].withUnsafeBufferPointer { try os.waitAny($0, rotor: &rotor) }
        }
        #expect(throws: Errno.invalidArgument) {
            try [QToken]().withUnsafeBufferPointer { try os.waitAny($0, rotor: &rotor) }
        }
        #expect(throws: Errno.timedOut) {
            try [c].withUnsafeBufferPointer { try os.waitAny($0, timeout: .zero, rotor: &rotor) }
        }
    }

    @Test func waitNextReturnsCompletionsInOrder() throws {
        let os = CountingLibOS()
        let late = try os.start(after: 3)
        let early = try os.start(after: 1)
        let out = UnsafeMutableBufferPointer<QResult>.allocate(capacity: 4)
        defer { out.deallocate() }
        #expect(try os.waitNext(into: out) == 1)
        #expect(out[0].qt == early)
        #expect(try os.waitNext(into: out) == 1)
        #expect(out[0].qt == late)
        #expect(throws: Errno.timedOut) { try os.waitNext(into: out, timeout: .zero) }
    }

    @Test func waitTimeoutExpiresWithRealTime() throws {
        let os = CountingLibOS()
        let qt = try os.start(after: .max)
        let start = Instant.now()
        #expect(throws: Errno.timedOut) { try os.wait(qt, timeout: .milliseconds(5)) }
        #expect(Instant.now() - start >= .milliseconds(5))
        #expect(os.scheduler.index(of: qt) != nil, "a timed-out wait leaves the operation pending")
    }
}
