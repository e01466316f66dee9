import DemiBuffers
import DemiCore
@testable import DemiRuntime
import Testing

@Suite struct SchedulerTests {
    func op(_ qd: Int32 = 500) -> Operation { Operation(code: .pop, qd: QDesc(rawValue: qd)) }

    @Test func spawnedOperationsStartRunnableAndCompleteOnce() throws {
        let s = Scheduler()
        let qt = try s.spawn(op())
        let i = try #require(s.index(of: qt))
        var polled: [UInt32] = []
        s.runReady { polled.append($0) }
        #expect(polled == [i])
        polled = []
        s.runReady { polled.append($0) }
        #expect(polled.isEmpty, "not runnable until woken")
        s.wake(i)
        s.runReady { polled.append($0) }
        #expect(polled == [i])
        #expect(!s.isCompleted(qt))
        s.complete(i, QResult(opcode: .pop, qd: QDesc(rawValue: 500), qt: QToken(rawValue: 0)))
        #expect(s.isCompleted(qt))
        s.complete(i, QResult(opcode: .push, qd: QDesc(rawValue: 1), qt: QToken(rawValue: 0)))  // ignored
        let r = try #require(s.take(qt))
        #expect(r.opcode == .pop && r.qt == qt)
        #expect(s.take(qt) == nil && s.index(of: qt) == nil, "consumed")
        s.wake(i)
        polled = []
        s.runReady { polled.append($0) }
        #expect(polled.isEmpty, "a stale wake of a free slot runs nothing")
        #expect(s.liveCount == 0)
    }

    @Test func forgedAndStaleTokensAreRejected() throws {
        let s = Scheduler()
        for raw: UInt64 in [0, 1, 0x0101_0101_0101_0101, .max, UInt64(1) << 32 | 5000] {
            #expect(s.index(of: QToken(rawValue: raw)) == nil)
            #expect(s.take(QToken(rawValue: raw)) == nil)
        }
        let qt = try s.spawn(op())
        let i = try #require(s.index(of: qt))
        s.complete(i, QResult(opcode: .pop, qd: QDesc(rawValue: 500), qt: qt))
        _ = s.take(qt)
        let qt2 = try s.spawn(op())
        #expect(s.index(of: qt2) == i, "the slot is reused")
        #expect(qt2 != qt && s.index(of: qt) == nil, "with a new generation")
    }

    @Test func everyRunnableTaskRunsEachPass() throws {
        let s = Scheduler()
        var tokens: [UInt32] = []
        for _ in 0..<3000 { tokens.append(try #require(s.index(of: try s.spawn(op())))) }
        var seen = Set<UInt32>()
        s.runReady { seen.insert($0) }
        #expect(seen.count == 3000, "slots beyond the first chunk run too")
        // A task that wakes itself every pass cannot starve the others.
        var counts = [UInt32: Int]()
        for t in tokens { s.wake(t) }
        for _ in 0..<5 {
            s.runReady { i in
                counts[i, default: 0] += 1
                if i == tokens[0] { s.wake(i) }
            }
            for t in tokens.dropFirst() { s.wake(t) }
        }
        #expect(counts[tokens[0]] == 5)
        #expect(tokens.dropFirst().allSatisfy { counts[$0] == 5 })
    }

    @Test func completionOrderIsKept() throws {
        let s = Scheduler()
        let qts = try (0..<5).map { _ in try s.spawn(op()) }
        for k in [3, 1, 4, 0, 2] {
            s.complete(s.index(of: qts[k])!, QResult(opcode: .pop, qd: QDesc(rawValue: 500), qt: qts[k]))
        }
        _ = s.take(qts[4])
        var order: [QToken] = []
        while let r = s.takeNextCompleted() { order.append(r.qt) }
        #expect(order == [qts[3], qts[1], qts[0], qts[2]])
        #expect(s.completedCount == 0)
    }

    @Test func backgroundCoroutinesAndCancellation() throws {
        let s = Scheduler()
        let b = try s.spawnBackground(tag: 42)
        #expect(s.backgroundTag(b) == 42)
        var ran = 0
        s.runReady { _ in ran += 1 }
        #expect(ran == 1)
        s.armTimer(b, at: Instant(nanoseconds: 100))
        s.endBackground(b)
        #expect(s.nextTimerDeadline == nil, "ending a coroutine cancels its timer")
        s.fireTimers(now: Instant(nanoseconds: 1000))
        ran = 0
        s.runReady { _ in ran += 1 }
        #expect(ran == 0)
        #expect(s.backgroundTag(b) == nil)
        // A background slot is not an operation: it cannot be waited on.
        let b2 = try s.spawnBackground(tag: 1)
        #expect(s.index(of: s.token(of: b2)) == nil)
    }
}

@Suite struct TimerTests {
    @Test func timersFireInDeadlineOrderAtVirtualTimes() throws {
        let s = Scheduler()
        let tasks = try (0..<4).map { try s.spawnBackground(tag: UInt64($0)) }
        s.runReady { _ in }
        s.armTimer(tasks[0], at: Instant(nanoseconds: 300))
        s.armTimer(tasks[1], at: Instant(nanoseconds: 100))
        s.armTimer(tasks[2], at: Instant(nanoseconds: 200))
        s.armTimer(tasks[3], at: Instant(nanoseconds: 50))
        s.armTimer(tasks[3], at: Instant(nanoseconds: 400))  // re-armed later
        #expect(s.nextTimerDeadline == Instant(nanoseconds: 100))
        #expect(s.fireTimers(now: Instant(nanoseconds: 99)) == 0)
        #expect(s.fireTimers(now: Instant(nanoseconds: 200)) == 2)
        var woken: [UInt32] = []
        s.runReady { woken.append($0) }
        #expect(Set(woken) == [tasks[1], tasks[2]])
        s.cancelTimer(tasks[0])
        #expect(s.fireTimers(now: Instant(nanoseconds: 10_000)) == 1)
        woken = []
        s.runReady { woken.append($0) }
        #expect(woken == [tasks[3]])
        #expect(s.nextTimerDeadline == nil)
    }

    @Test func heapMatchesAReferenceModel() throws {
        // Seeded random arms, re-arms and cancels against a dictionary model.
        var rng = SplitMix64(seed: 7)
        let s = Scheduler()
        let tasks = try (0..<200).map { try s.spawnBackground(tag: UInt64($0)) }
        s.runReady { _ in }
        var model = [UInt32: Int64]()
        var now: Int64 = 0
        for _ in 0..<5000 {
            let t = tasks[Int(rng.next() % 200)]
            switch rng.next() % 4 {
            case 0, 1:
                let d = now + Int64(rng.next() % 1000)
                s.armTimer(t, at: Instant(nanoseconds: d))
                model[t] = d
            case 2:
                s.cancelTimer(t)
                model[t] = nil
            default:
                now += Int64(rng.next() % 300)
                s.fireTimers(now: Instant(nanoseconds: now))
                var fired = Set<UInt32>()
                s.runReady { fired.insert($0) }
                let expected = Set(model.filter { $0.value <= now }.keys)
                #expect(fired == expected)
                for k in expected { model[k] = nil }
            }
            #expect(s.nextTimerDeadline?.rawValue == model.values.min())
        }
    }
}

struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
