import DemiCore
import DemiInet
import DemiWire
import Testing

private func at(seconds s: Double) -> Instant { Instant(nanoseconds: Int64(s * 1e9)) }
private func seq(_ v: UInt32) -> TCPSequence { TCPSequence(v) }
private func block(_ l: UInt32, _ r: UInt32) -> SACKBlock { SACKBlock(left: TCPSequence(l), right: TCPSequence(r)) }

/// Acknowledges one window, one segment per ACK, spread evenly over `rtt` from `start`; the sender keeps the window
/// full. Returns the instant at the end of the round.
@discardableResult
private func round(_ cc: inout CongestionController, from start: Double, rtt: Double) -> Double {
    let segments = max(1, cc.congestionWindow / cc.mss)
    for i in 0..<segments {
        let now = at(seconds: start + rtt * Double(i + 1) / Double(segments))
        cc.onAcknowledged(bytes: cc.mss, flightSize: cc.congestionWindow - cc.mss, rtt: .nanoseconds(Int64(rtt * 1e9)),
                          now: now)
    }
    return start + rtt
}

/// RFC 9438 Figure 1 in segments: W_cubic(t) = C (t - K)³ + W_max.
private func wCubic(_ t: Double, k: Double, wMax: Double) -> Double { 0.4 * (t - k) * (t - k) * (t - k) + wMax }

private func cubeRoot(_ x: Double) -> Double {
    var r = max(x, 1)
    for _ in 0..<100 { r -= (r * r * r - x) / (3 * r * r) }
    return r
}

@Suite struct TCPCongestionTests {
    @Test func initialWindowFollowsRFC6928() {
        #expect(CongestionController(algorithm: .newReno, mss: 1460).congestionWindow == 14_600)
        #expect(CongestionController(algorithm: .newReno, mss: 536).congestionWindow == 5_360)
        #expect(CongestionController(algorithm: .cubic, mss: 9000).congestionWindow == 18_000)
        #expect(CongestionController(algorithm: .cubic, mss: 1000, initialWindow: 4000).congestionWindow == 4000)
        var cc = CongestionController(algorithm: .cubic, mss: 536)
        #expect(cc.inSlowStart && cc.slowStartThreshold == .max)
        cc.setMSS(1460)
        #expect(cc.congestionWindow == 14_600, "before any ACK the initial window follows the MSS")
        #expect(CongestionAlgorithm(rawValue: "newreno") == .newReno && CongestionAlgorithm(rawValue: "cubic") == .cubic)
        #expect(CongestionAlgorithm.default == .cubic)
    }

    @Test(arguments: CongestionAlgorithm.allCases)
    func slowStartDoublesPerRTT(_ algorithm: CongestionAlgorithm) {
        var cc = CongestionController(algorithm: algorithm, mss: 1000, initialWindow: 10_000)
        var now = round(&cc, from: 0, rtt: 0.1)
        #expect(cc.congestionWindow == 20_000)
        now = round(&cc, from: now, rtt: 0.1)
        #expect(cc.congestionWindow == 40_000)
        round(&cc, from: now, rtt: 0.1)
        #expect(cc.congestionWindow == 80_000)
    }

    @Test func appropriateByteCountingLimitsEachACKToTwoSegments() {
        var cc = CongestionController(algorithm: .newReno, mss: 1000, initialWindow: 10_000)
        cc.onAcknowledged(bytes: 10_000, flightSize: 0, rtt: nil, now: .zero)
        #expect(cc.congestionWindow == 12_000, "L = 2 SMSS (RFC 3465)")
        cc.onAcknowledged(bytes: 500, flightSize: 11_000, rtt: nil, now: .zero)
        #expect(cc.congestionWindow == 12_500, "byte counting, not ACK counting")
    }

    @Test func noGrowthWhenNotUsingTheWindow() {
        var cc = CongestionController(algorithm: .newReno, mss: 1000, initialWindow: 10_000)
        cc.onAcknowledged(bytes: 1000, flightSize: 2000, rtt: nil, now: .zero)
        #expect(cc.congestionWindow == 10_000, "application-limited: 3000 of 10000 bytes were outstanding")
        cc.onAcknowledged(bytes: 1000, flightSize: 4000, rtt: nil, now: .zero)
        #expect(cc.congestionWindow == 11_000)
    }

    @Test func newRenoCongestionAvoidanceAddsOneSegmentPerRTT() {
        var cc = CongestionController(algorithm: .newReno, mss: 1000, initialWindow: 20_000)
        cc.onLossDetected(flightSize: 20_000, now: .zero)
        #expect(cc.slowStartThreshold == 10_000 && cc.congestionWindow == 10_000)
        cc.onRecoveryExit(now: .zero)
        #expect(cc.congestionWindow == 10_000 && !cc.inSlowStart)
        var now = round(&cc, from: 0, rtt: 0.1)
        #expect(cc.congestionWindow == 11_000)
        now = round(&cc, from: now, rtt: 0.1)
        #expect(cc.congestionWindow == 12_000)
        for _ in 0..<8 { now = round(&cc, from: now, rtt: 0.1) }
        #expect(cc.congestionWindow == 20_000)
    }

    @Test func slowStartStopsAtTheThreshold() {
        var cc = CongestionController(algorithm: .newReno, mss: 1000, initialWindow: 20_000)
        cc.onRetransmissionTimeout(flightSize: 20_000, now: .zero)
        #expect(cc.congestionWindow == 1000 && cc.slowStartThreshold == 10_000)
        for _ in 0..<9 {
            cc.onAcknowledged(bytes: 1000, flightSize: cc.congestionWindow - 1000, rtt: nil, now: .zero)
        }
        #expect(cc.congestionWindow == 10_000 && !cc.inSlowStart)
        cc.onAcknowledged(bytes: 2000, flightSize: 9000, rtt: nil, now: .zero)
        #expect(cc.congestionWindow == 10_000, "2000 bytes of congestion avoidance are not yet a window")
    }

    @Test func newRenoLossHalvesTheFlightSize() {
        var cc = CongestionController(algorithm: .newReno, mss: 1000, initialWindow: 40_000)
        cc.onLossDetected(flightSize: 30_000, now: .zero)
        #expect(cc.slowStartThreshold == 15_000 && cc.congestionWindow == 15_000)
        cc.onLossDetected(flightSize: 3000, now: .zero)
        #expect(cc.slowStartThreshold == 2000, "at least 2 SMSS")
    }

    @Test func cubicLossMultipliesTheWindowBy07() {
        var cc = CongestionController(algorithm: .cubic, mss: 1000, initialWindow: 100_000)
        cc.onLossDetected(flightSize: 50_000, now: .zero)
        #expect(cc.slowStartThreshold == 70_000 && cc.congestionWindow == 70_000, "β_cubic × cwnd")
        var small = CongestionController(algorithm: .cubic, mss: 1000, initialWindow: 2000)
        small.onLossDetected(flightSize: 2000, now: .zero)
        #expect(small.slowStartThreshold == 2000, "at least 2 SMSS")
    }

    @Test(arguments: CongestionAlgorithm.allCases)
    func timeoutCollapsesToOneSegment(_ algorithm: CongestionAlgorithm) {
        var cc = CongestionController(algorithm: algorithm, mss: 1000, initialWindow: 40_000)
        cc.onRetransmissionTimeout(flightSize: 40_000, now: .zero)
        #expect(cc.congestionWindow == 1000)
        #expect(cc.slowStartThreshold == (algorithm == .newReno ? 20_000 : 28_000))
        cc.onRetransmissionTimeout(flightSize: 40_000, now: at(seconds: 1))
        #expect(cc.congestionWindow == 1000)
        #expect(cc.slowStartThreshold == (algorithm == .newReno ? 20_000 : 28_000),
                "a repeated timeout keeps ssthresh (RFC 5681 §3.1)")
        #expect(cc.inSlowStart)
        cc.onAcknowledged(bytes: 1000, flightSize: 0, rtt: nil, now: at(seconds: 2))
        #expect(cc.congestionWindow == 2000)
    }

    @Test func cubicFollowsWCubicAndPlateausAtWMaxAfterKSeconds() {
        let mss = 1000
        var cc = CongestionController(algorithm: .cubic, mss: mss, initialWindow: 100_000)
        cc.onLossDetected(flightSize: 100_000, now: .zero)
        cc.onRecoveryExit(now: .zero)
        #expect(cc.congestionWindow == 70_000)
        let k = cubeRoot((100.0 - 70.0) / 0.4)  // K = ∛((W_max - cwnd_epoch) / C) ≈ 4.217 s
        #expect(abs(k - 4.2172) < 1e-3)
        let rtt = 0.1
        var now = 0.0
        var samples: [(t: Double, cwnd: Double)] = []
        while now < 8 {
            now = round(&cc, from: now, rtt: rtt)
            samples.append((now, Double(cc.congestionWindow) / Double(mss)))
        }
        // cwnd tracks W_cubic: the target is W_cubic(t + RTT), reached within about one round.
        for s in samples where s.t >= 0.5 && s.t < 5.5 {
            let expected = wCubic(s.t, k: k, wMax: 100)
            #expect(abs(s.cwnd - expected) < 0.5, "t=\(s.t): cwnd \(s.cwnd) segments, W_cubic \(expected)")
        }
        // From about 5.7 s W_est (70 + α per round, then 1 per round once past 100) overtakes W_cubic: cwnd follows
        // the Reno-friendly estimate, one segment per round, and never falls below W_cubic.
        for s in samples where s.t >= 5.5 {
            #expect(s.cwnd >= wCubic(s.t, k: k, wMax: 100) - 0.5)
        }
        let renoRounds = samples.filter { $0.t >= 6.5 }
        #expect(abs(renoRounds[10].cwnd - renoRounds[0].cwnd - 10) < 0.5)
        let nearK = samples.first { $0.t >= k }!
        #expect(abs(nearK.cwnd - 100) < 1.5, "W_max is regained after K seconds")
        let plateau = samples.first { $0.t >= k + 0.5 }!.cwnd - samples.first { $0.t >= k - 0.5 }!.cwnd
        let concave = samples.first { $0.t >= 1 }!.cwnd - samples.first { $0.t >= 0 }!.cwnd
        #expect(plateau < 1.5 && concave > 10, "concave growth, then a plateau around W_max")
        #expect(samples.last!.cwnd > 115, "convex growth beyond W_max")
    }

    @Test func cubicFastConvergenceLowersWMax() {
        // A second loss before W_max is regained: W_max = cwnd (1 + β) / 2 (RFC 9438 §4.7).
        let mss = 1000
        var cc = CongestionController(algorithm: .cubic, mss: mss, initialWindow: 100_000)
        cc.onLossDetected(flightSize: 100_000, now: .zero)
        cc.onRecoveryExit(now: .zero)
        var now = 0.0
        while cc.congestionWindow < 80_000 { now = round(&cc, from: now, rtt: 0.5) }
        let cwnd = Double(cc.congestionWindow) / Double(mss)
        cc.onLossDetected(flightSize: cc.congestionWindow, now: at(seconds: now))
        cc.onRecoveryExit(now: at(seconds: now))
        let wMax = cwnd * 0.85
        // K = ∛((W_max - cwnd_epoch) / C); with a long RTT the Reno-friendly estimate stays below W_cubic.
        let k = cubeRoot((wMax - Double(cc.congestionWindow) / Double(mss)) / 0.4)
        let start = now
        while now - start < k { now = round(&cc, from: now, rtt: 0.5) }
        let plateau = Double(cc.congestionWindow) / Double(mss)
        #expect(abs(plateau - wMax) < 3, "plateau \(plateau) near the lowered W_max \(wMax), not \(cwnd)")
    }

    @Test func cubicRenoFriendlyRegionFollowsWEst() {
        // A short RTT: Reno's estimate grows faster than W_cubic, so cwnd follows W_est (RFC 9438 §4.3).
        let mss = 1000
        var cc = CongestionController(algorithm: .cubic, mss: mss, initialWindow: 100_000)
        cc.onLossDetected(flightSize: 100_000, now: .zero)
        cc.onRecoveryExit(now: .zero)
        let rtt = 0.001
        var now = 0.0
        for _ in 0..<50 { now = round(&cc, from: now, rtt: rtt) }
        let cwnd = Double(cc.congestionWindow) / Double(mss)
        let k = cubeRoot(75)
        let alpha = 3 * (1 - 0.7) / (1 + 0.7)
        #expect(wCubic(now, k: k, wMax: 100) < 72)
        #expect(abs(cwnd - (70 + alpha * 50)) < 2, "W_est: 70 + α × 50 rounds, got \(cwnd)")
        // Past cwnd_prior (100 segments) α becomes 1: one segment per round, like Reno.
        while cc.congestionWindow < 101_000 { now = round(&cc, from: now, rtt: rtt) }
        let before = cc.congestionWindow
        for _ in 0..<10 { now = round(&cc, from: now, rtt: rtt) }
        #expect(abs(cc.congestionWindow - before - 10_000) <= 1000)
    }

    @Test func restartAfterIdleReturnsToTheInitialWindow() {
        var cc = CongestionController(algorithm: .cubic, mss: 1000, initialWindow: 10_000)
        round(&cc, from: 0, rtt: 0.1)
        #expect(cc.congestionWindow == 20_000)
        cc.restartAfterIdle(now: at(seconds: 10))
        #expect(cc.congestionWindow == 10_000)
    }
}

@Suite struct RetransmissionTimeoutTests {
    @Test func rfc6298Arithmetic() {
        var rto = RetransmissionTimeoutEstimator()
        #expect(rto.timeout == .seconds(1) && rto.smoothedRTT == nil && rto.rttVariation == nil)
        rto.sample(.milliseconds(100))
        #expect(rto.smoothedRTT == .milliseconds(100) && rto.rttVariation == .milliseconds(50))
        #expect(rto.timeout == .milliseconds(300), "SRTT + 4 RTTVAR")
        rto.sample(.milliseconds(200))
        // RTTVAR = 3/4 × 50 + 1/4 × |100 - 200| = 62.5; SRTT = 7/8 × 100 + 1/8 × 200 = 112.5.
        #expect(rto.rttVariation == .microseconds(62_500))
        #expect(rto.smoothedRTT == .microseconds(112_500))
        #expect(rto.timeout == .microseconds(362_500))
        rto.sample(.milliseconds(112) + .microseconds(500))
        #expect(rto.rttVariation == .nanoseconds(46_875_000))
        #expect(rto.smoothedRTT == .microseconds(112_500))
    }

    @Test func clampsAndGranularity() {
        var rto = RetransmissionTimeoutEstimator()
        rto.sample(.milliseconds(1))
        #expect(rto.timeout == .milliseconds(200), "Linux's minimum")
        var rfc = RetransmissionTimeoutEstimator(configuration: RetransmissionTimeoutConfiguration(minimum: .seconds(1)))
        rfc.sample(.milliseconds(1))
        #expect(rfc.timeout == .seconds(1), "RFC 6298 §2.4 minimum")
        var fine = RetransmissionTimeoutEstimator(configuration: RetransmissionTimeoutConfiguration(minimum: .zero))
        for _ in 0..<100 { fine.sample(.milliseconds(10)) }
        #expect(fine.timeout == .milliseconds(11), "SRTT + G once RTTVAR has decayed")
        var slow = RetransmissionTimeoutEstimator()
        slow.sample(.seconds(50))
        #expect(slow.timeout == .seconds(60), "maximum")
        slow.sample(.seconds(-1))
        #expect(slow.smoothedRTT == .milliseconds(43_750), "a negative sample counts as zero")
    }

    @Test func backoffDoublesUpToTheMaximumAndSamplesCollapseIt() {
        var rto = RetransmissionTimeoutEstimator()
        rto.sample(.milliseconds(100))
        rto.backoff()
        #expect(rto.timeout == .milliseconds(600) && rto.backoffCount == 1)
        rto.backoff()
        #expect(rto.timeout == .milliseconds(1200))
        for _ in 0..<100 { rto.backoff() }
        #expect(rto.timeout == .seconds(60))
        rto.resetBackoff()
        #expect(rto.timeout == .milliseconds(300))
        rto.backoff()
        rto.sample(.milliseconds(100))
        #expect(rto.backoffCount == 0 && rto.timeout < .milliseconds(300))
        var initial = RetransmissionTimeoutEstimator()
        initial.backoff()
        #expect(initial.timeout == .seconds(2), "backoff before any sample doubles the initial RTO")
    }
}

@Suite struct SACKScoreboardTests {
    @Test func storageIsInline() {
        #expect(MemoryLayout<SACKScoreboard>.size <= SACKScoreboard.capacity * 8 + 8)
    }

    @Test func mergesOverlappingAndAdjacentBlocks() {
        var sb = SACKScoreboard()
        let una = seq(1000), nxt = seq(20_000)
        #expect(sb.update(with: [block(2000, 3000)], unacknowledged: una, nextToSend: nxt) == 1000)
        #expect(sb.update(with: [block(3000, 4000)], unacknowledged: una, nextToSend: nxt) == 1000)
        #expect(sb.count == 1 && sb.range(0) == block(2000, 4000), "adjacent blocks merge")
        #expect(sb.update(with: [block(3500, 5000), block(6000, 7000)], unacknowledged: una, nextToSend: nxt) == 2000)
        #expect(sb.count == 2 && sb.range(0) == block(2000, 5000) && sb.range(1) == block(6000, 7000))
        #expect(sb.update(with: [block(2000, 5000)], unacknowledged: una, nextToSend: nxt) == 0, "repeated block")
        #expect(sb.update(with: [block(1500, 6500)], unacknowledged: una, nextToSend: nxt) == 1500)
        #expect(sb.count == 1 && sb.range(0) == block(1500, 7000))
        #expect(sb.sackedBytes == 5500 && sb.highestSACKed == seq(7000))
        #expect(sb.isSACKed(seq(1500)) && sb.isSACKed(seq(6999)) && !sb.isSACKed(seq(7000)) && !sb.isSACKed(seq(1499)))
        // Lower range inserted before a higher one keeps the order.
        #expect(sb.update(with: [block(10_000, 11_000), block(8000, 9000)], unacknowledged: una, nextToSend: nxt) == 2000)
        #expect(sb.count == 3 && sb.range(1) == block(8000, 9000) && sb.range(2) == block(10_000, 11_000))
    }

    @Test func ignoresBlocksOutsideTheWindow() {
        var sb = SACKScoreboard()
        let una = seq(1000), nxt = seq(5000)
        let blocks = [block(500, 900), block(500, 1500), block(4000, 6000), block(3000, 3000), block(3000, 2000),
                      block(9000, 9500)]
        #expect(sb.update(with: blocks, unacknowledged: una, nextToSend: nxt) == 0)
        #expect(sb.isEmpty && sb.highestSACKed == nil)
        // A D-SACK block below SND.UNA beside a valid block (RFC 2883).
        #expect(sb.update(with: [block(200, 700), block(2000, 5000)], unacknowledged: una, nextToSend: nxt) == 3000)
        #expect(sb.count == 1 && sb.range(0) == block(2000, 5000))
        // A D-SACK block inside SACKed data adds nothing.
        #expect(sb.update(with: [block(2500, 3000)], unacknowledged: una, nextToSend: nxt) == 0)
    }

    @Test func readsBlocksFromOptions() {
        var options = TCPOptions()
        options.addSACK(block(3000, 4000))
        options.addSACK(block(5000, 6000))
        var sb = SACKScoreboard()
        #expect(sb.update(with: options, unacknowledged: seq(1000), nextToSend: seq(10_000)) == 2000)
        #expect(sb.count == 2)
    }

    @Test func acknowledgeTrims() {
        var sb = SACKScoreboard()
        _ = sb.update(with: [block(2000, 3000), block(4000, 5000), block(6000, 7000)], unacknowledged: seq(1000),
                      nextToSend: seq(10_000))
        sb.acknowledge(upTo: seq(2500))
        #expect(sb.count == 3 && sb.range(0) == block(2500, 3000))
        sb.acknowledge(upTo: seq(5000))
        #expect(sb.count == 1 && sb.range(0) == block(6000, 7000))
        // update drops what lies below SND.UNA too.
        #expect(sb.update(with: [block(8000, 9000)], unacknowledged: seq(6500), nextToSend: seq(10_000)) == 1000)
        #expect(sb.count == 2 && sb.range(0) == block(6500, 7000))
        sb.acknowledge(upTo: seq(9000))
        #expect(sb.isEmpty)
        _ = sb.update(with: [block(9500, 9600)], unacknowledged: seq(9000), nextToSend: seq(10_000))
        sb.reset()
        #expect(sb.isEmpty && sb.sackedBytes == 0)
    }

    @Test func isLostByDiscontiguousBlocksOrBytes() {
        var sb = SACKScoreboard()
        let una = seq(0), nxt = seq(100_000)
        _ = sb.update(with: [block(1000, 1100), block(2000, 2100)], unacknowledged: una, nextToSend: nxt)
        #expect(!sb.isLost(seq(0), mss: 1000), "two small blocks: neither rule")
        _ = sb.update(with: [block(3000, 3100)], unacknowledged: una, nextToSend: nxt)
        #expect(sb.isLost(seq(0), mss: 1000), "three discontiguous SACKed ranges above")
        #expect(sb.isLost(seq(999), mss: 1000))
        #expect(!sb.isLost(seq(1100), mss: 1000), "only two above")
        #expect(!sb.isLost(seq(1050), mss: 1000), "SACKed")
        #expect(sb.isLost(seq(1100), mss: 1000, dupThresh: 2))

        var bytes = SACKScoreboard()
        _ = bytes.update(with: [block(1000, 3000)], unacknowledged: una, nextToSend: nxt)
        #expect(!bytes.isLost(seq(0), mss: 1000), "exactly (DupThresh - 1) × SMSS bytes is not more")
        _ = bytes.update(with: [block(3000, 3001)], unacknowledged: una, nextToSend: nxt)
        #expect(bytes.isLost(seq(0), mss: 1000), "more than (DupThresh - 1) × SMSS bytes")
        #expect(!bytes.isLost(seq(5000), mss: 1000), "nothing SACKed above")
    }

    @Test func pipeCountsUnlostAndRetransmittedBytes() {
        var sb = SACKScoreboard()
        let una = seq(0), nxt = seq(10_000)
        _ = sb.update(with: [block(1000, 2000), block(3000, 4000), block(5000, 6000)], unacknowledged: una,
                      nextToSend: nxt)
        // Holes: [0,1000) lost (3 ranges above); [2000,3000), [4000,5000), [6000,10000) not lost.
        #expect(sb.pipe(unacknowledged: una, nextToSend: nxt, highRetransmitted: una, mss: 1000) == 6000)
        #expect(sb.pipe(unacknowledged: una, nextToSend: nxt, highRetransmitted: seq(1000), mss: 1000) == 7000,
                "a retransmitted lost byte counts once")
        #expect(sb.pipe(unacknowledged: una, nextToSend: nxt, highRetransmitted: seq(2500), mss: 1000) == 7500,
                "a retransmitted byte not lost counts twice")
        #expect(SACKScoreboard().pipe(unacknowledged: una, nextToSend: nxt, highRetransmitted: una, mss: 1000) == 10_000)
        #expect(sb.pipe(unacknowledged: nxt, nextToSend: nxt, highRetransmitted: nxt, mss: 1000) == 0)
        // Per byte, against a literal RFC 6675 SetPipe loop.
        var literal = 0
        for s in 0..<10_000 where !sb.isSACKed(seq(UInt32(s))) {
            if !sb.isLost(seq(UInt32(s)), mss: 1000) { literal += 1 }
            if s < 2500 { literal += 1 }
        }
        #expect(literal == 7500)
    }

    @Test func nextSegmentPicksTheFirstLostHole() {
        var sb = SACKScoreboard()
        let una = seq(0), nxt = seq(10_000)
        _ = sb.update(with: [block(1000, 2000), block(3000, 4000), block(5000, 6000)], unacknowledged: una,
                      nextToSend: nxt)
        var next = sb.nextSegment(unacknowledged: una, nextToSend: nxt, highRetransmitted: una, mss: 1000)
        #expect(next?.start == seq(0) && next?.length == 1000)
        next = sb.nextSegment(unacknowledged: una, nextToSend: nxt, highRetransmitted: una, mss: 400)
        #expect(next?.start == seq(0) && next?.length == 400)
        next = sb.nextSegment(unacknowledged: una, nextToSend: nxt, highRetransmitted: seq(800), mss: 1000)
        #expect(next?.start == seq(800) && next?.length == 200, "capped at the next SACKed range")
        #expect(sb.nextSegment(unacknowledged: una, nextToSend: nxt, highRetransmitted: seq(1000), mss: 1000) == nil,
                "the other holes are not lost: rule 1 does not apply")
        _ = sb.update(with: [block(7000, 8000)], unacknowledged: una, nextToSend: nxt)
        next = sb.nextSegment(unacknowledged: una, nextToSend: nxt, highRetransmitted: seq(1000), mss: 1000)
        #expect(next?.start == seq(2000) && next?.length == 1000, "three ranges above the second hole now")
        #expect(sb.nextSegment(unacknowledged: una, nextToSend: nxt, highRetransmitted: seq(3000), mss: 1000) == nil)
    }

    @Test func overflowDropsTheHighestRange() {
        var sb = SACKScoreboard()
        let una = seq(0), nxt = seq(100_000)
        for k in 0..<UInt32(SACKScoreboard.capacity) {
            let left = 2000 + k * 200
            #expect(sb.update(with: [block(left, left + 100)], unacknowledged: una, nextToSend: nxt) == 100)
        }
        #expect(sb.count == SACKScoreboard.capacity)
        let highest = sb.highestSACKed!
        #expect(sb.update(with: [block(50_000, 51_000)], unacknowledged: una, nextToSend: nxt) == 0,
                "a new highest range is the one dropped")
        #expect(sb.count == SACKScoreboard.capacity && sb.highestSACKed == highest)
        #expect(sb.update(with: [block(1000, 1100)], unacknowledged: una, nextToSend: nxt) == 100)
        #expect(sb.count == SACKScoreboard.capacity && sb.range(0) == block(1000, 1100))
        #expect(sb.highestSACKed == highest - 200, "the previous highest range was dropped")
        // Merging still works when full.
        #expect(sb.update(with: [block(2000, 2300)], unacknowledged: una, nextToSend: nxt) == 100)
        #expect(sb.count == SACKScoreboard.capacity - 1)
    }

    @Test func wrapsAroundTheSequenceSpace() {
        var sb = SACKScoreboard()
        let una = seq(UInt32.max - 1499)  // 2^32 - 1500
        let nxt = una + 10_000
        #expect(nxt == seq(8500))
        // A block across the wrap, another above it, and one adjacent to the first.
        #expect(sb.update(with: [block(UInt32.max - 499, 500), block(2500, 3500)], unacknowledged: una,
                          nextToSend: nxt) == 2000)
        #expect(sb.update(with: [block(500, 1500)], unacknowledged: una, nextToSend: nxt) == 1000)
        #expect(sb.count == 2 && sb.range(0) == block(UInt32.max - 499, 1500))
        #expect(sb.isSACKed(seq(UInt32.max)) && sb.isSACKed(seq(0)) && !sb.isSACKed(seq(UInt32.max - 500)))
        #expect(sb.highestSACKed == seq(3500) && sb.sackedBytes == 3000)
        // Hole [una, 2^32 - 500) is 1000 bytes with 3000 SACKed bytes above: lost.
        #expect(sb.isLost(una, mss: 1000))
        let next = sb.nextSegment(unacknowledged: una, nextToSend: nxt, highRetransmitted: una, mss: 1460)
        #expect(next?.start == una && next?.length == 1000)
        // Pipe: [una, -500) lost; [1500, 2500) not lost (1000 bytes, 1 range above); [3500, 8500) not lost.
        #expect(sb.pipe(unacknowledged: una, nextToSend: nxt, highRetransmitted: una, mss: 1000) == 6000)
        #expect(sb.update(with: [block(8000, 9000)], unacknowledged: una, nextToSend: nxt) == 0, "beyond SND.NXT")
        sb.acknowledge(upTo: seq(100))
        #expect(sb.count == 2 && sb.range(0) == block(100, 1500))
    }
}
