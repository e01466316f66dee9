import DemiBuffers
import DemiCore
import DemiDevices
import Testing

/// The impairment bridge between two in-memory links: host A <-> [link1] <-> bridge <-> [link2] <-> host B.
@Suite struct ImpairmentBridgeTests {
    final class Setup {
        let pa = BufferPool(), pm = BufferPool(), pb = BufferPool()
        let link1: InMemoryLink
        let link2: InMemoryLink
        let bridge: ImpairmentBridge<InMemoryLink.Endpoint, InMemoryLink.Endpoint>
        var hostA: InMemoryLink.Endpoint { link1.a }
        var hostB: InMemoryLink.Endpoint { link2.b }

        init(towardA: FaultProfile = FaultProfile(), towardB: FaultProfile = FaultProfile()) {
            link1 = InMemoryLink(poolA: pa, poolB: pm, capacity: 100_000)
            link2 = InMemoryLink(poolA: pm, poolB: pb, capacity: 100_000)
            bridge = ImpairmentBridge(link1.b, link2.a, towardA: towardA, towardB: towardB)
        }

        /// A numbered 64-byte frame from `pool`.
        func frame(_ pool: BufferPool, _ k: Int) -> DemiBuffer {
            let b = pool.allocate(size: 64)!
            let bytes = Self.expected(k)
            bytes.withUnsafeBytes { _ = b.write($0) }
            return b
        }

        /// Frame `k`: its number (4 bytes), then bytes derived from it, so every frame differs from every other in
        /// many bits (a one-bit flip never turns one valid frame into another).
        static func expected(_ k: Int) -> [UInt8] {
            var g = SplitMix64(seed: UInt64(k))
            return withUnsafeBytes(of: UInt32(k).littleEndian, Array.init) + (4..<64).map { _ in UInt8(truncatingIfNeeded: g.next()) }
        }

        func received(_ d: InMemoryLink.Endpoint, now: Instant) -> [[UInt8]] {
            let out = UnsafeMutablePointer<DemiBuffer>.allocate(capacity: 64)
            defer { out.deallocate() }
            var frames: [[UInt8]] = []
            while true {
                let n = d.receive(into: out, capacity: 64, now: now)
                if n == 0 { return frames }
                for i in 0..<n { frames.append(out[i].array); out[i].release() }
            }
        }

        /// Sends `count` frames each way (in bursts of 16, polling the bridge after each), then polls until nothing
        /// is held; returns what each host received.
        func exchange(count: Int, step: Duration = .microseconds(100)) -> (atA: [[UInt8]], atB: [[UInt8]]) {
            var now = Instant(rawValue: 1_000_000_000)
            var atA: [[UInt8]] = [], atB: [[UInt8]] = []
            var k = 0
            while k < count {
                for _ in 0..<min(16, count - k) {
                    hostA.transmit(frame(pa, k), now: now)
                    hostB.transmit(frame(pb, k + 1_000_000), now: now)
                    k += 1
                }
                while bridge.poll(now: now) > 0 {}
                atA += received(hostA, now: now)
                atB += received(hostB, now: now)
                now = now + step
            }
            while bridge.heldCount > 0 {
                now = bridge.nextDue!
                bridge.poll(now: now)
                atA += received(hostA, now: now)
                atB += received(hostB, now: now)
            }
            return (atA, atB)
        }
    }

    @Test func forwardsBothWaysInOrderWithoutLeaks() {
        let s = Setup()
        let (atA, atB) = s.exchange(count: 1000)
        #expect(atB == (0..<1000).map(Setup.expected))
        #expect(atA == (0..<1000).map { Setup.expected($0 + 1_000_000) })
        let st = s.bridge.statistics
        #expect(st.aToB.frames == 1000 && st.bToA.frames == 1000)
        #expect(st.aToB.bytes == 64_000 && st.bToA.bytes == 64_000)
        #expect(st.aToB.faults == FaultStatistics() && st.bToA.faults == FaultStatistics())
        #expect(st.deviceA.receivedFrames == 1000 && st.deviceB.transmittedFrames == 1000)
        #expect(s.pa.buffersInUse == 0 && s.pm.buffersInUse == 0 && s.pb.buffersInUse == 0)
    }

    @Test func eachDirectionHasItsOwnProfile() throws {
        // Toward B: 10% loss and 1% corruption; toward A: 5% duplication.
        let s = Setup(towardA: try FaultProfile(parsing: "dup=5%,seed=3"),
                      towardB: try FaultProfile(parsing: "loss=10%,corrupt=1%,seed=9"))
        let n = 20_000
        let (atA, atB) = s.exchange(count: n)
        let st = s.bridge.statistics
        // Counts near the rates (binomial: 4 standard deviations)...
        #expect(abs(st.aToB.faults.dropped - n / 10) < 4 * 43)
        #expect(abs(st.aToB.faults.corrupted - n / 100) < 4 * 15)
        #expect(abs(st.bToA.faults.duplicated - n / 20) < 4 * 31)
        #expect(st.aToB.faults.duplicated == 0 && st.bToA.faults.dropped == 0 && st.bToA.faults.corrupted == 0)
        // ...and exactly what the hosts saw.
        #expect(atB.count == n - st.aToB.faults.dropped)
        #expect(atA.count == n + st.bToA.faults.duplicated)
        let valid = Set((0..<n).map(Setup.expected))
        #expect(atB.filter { !valid.contains($0) }.count == st.aToB.faults.corrupted)
        #expect(atB.allSatisfy { $0.count == 64 }, "corruption flips bits, it does not cut frames")
        let validA = Set((0..<n).map { Setup.expected($0 + 1_000_000) })
        #expect(atA.allSatisfy(validA.contains))
        #expect(Set(atA).count == n)
        #expect(s.pa.buffersInUse == 0 && s.pm.buffersInUse == 0 && s.pb.buffersInUse == 0)
    }

    @Test func delayJitterAndReorderingHoldFramesUntilDue() throws {
        let s = Setup(towardB: try FaultProfile(parsing: "delay=10ms,jitter=5ms,reorder=25%,seed=5"))
        let now = Instant(rawValue: 1_000_000_000)
        for k in 0..<100 { s.hostA.transmit(s.frame(s.pa, k), now: now) }
        while s.bridge.poll(now: now) > 0 {}
        #expect(s.received(s.hostB, now: now).isEmpty)
        #expect(s.bridge.heldCount == 100)
        let due = try #require(s.bridge.nextDue)
        #expect(due.rawValue >= now.rawValue + 10_000_000 && due.rawValue <= now.rawValue + 15_000_000)
        // Nothing before 10 ms; everything by 10 ms + jitter + the reorder delay (1 ms).
        s.bridge.poll(now: now + .microseconds(9_999))
        #expect(s.received(s.hostB, now: now).isEmpty)
        s.bridge.poll(now: now + .milliseconds(16))
        let got = s.received(s.hostB, now: now)
        #expect(got.count == 100)
        #expect(Set(got) == Set((0..<100).map(Setup.expected)))
        #expect(got != (0..<100).map(Setup.expected), "jitter and reordering change the order")
        let st = s.bridge.statistics
        #expect(st.aToB.faults.delayed == 100)
        #expect(abs(st.aToB.faults.reordered - 25) < 20)
        #expect(s.bridge.heldCount == 0 && s.bridge.nextDue == nil)
    }

    @Test func rateLimitSpacesFrames() throws {
        // 64-byte frames at 512 kbit/s: one per millisecond.
        let s = Setup(towardA: try FaultProfile(parsing: "rate=512kbit"))
        let now = Instant(rawValue: 1_000_000_000)
        for k in 0..<10 { s.hostB.transmit(s.frame(s.pb, k), now: now) }
        s.bridge.poll(now: now)
        var counts: [Int] = []
        for ms in 1...10 {
            s.bridge.poll(now: now + .milliseconds(ms))
            counts.append(s.received(s.hostA, now: now).count)
        }
        #expect(counts == Array(repeating: 1, count: 10))
    }
}
