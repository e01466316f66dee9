#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import DemiCore

/// The congestion control algorithm of a TCP connection.
public enum CongestionAlgorithm: String, Sendable, CaseIterable {
    /// RFC 5681 slow start and congestion avoidance with RFC 3465 byte counting; RFC 6582 NewReno recovery (the
    /// recovery itself, window inflation and `pipe`, is the sender's).
    case newReno = "newreno"
    /// RFC 9438 CUBIC (the default, as in Linux).
    case cubic

    /// The algorithm used when none is configured.
    public static var `default`: CongestionAlgorithm { .cubic }
}

/// The congestion window of one TCP sender: a sans-I/O state machine that reads no clock (`now` is an input).
///
/// Byte counts are `Int` bytes. The sender calls:
/// - ``onAcknowledged(bytes:flightSize:rtt:now:)`` for each ACK of new data outside loss recovery;
/// - ``onLossDetected(flightSize:now:)`` on entering fast recovery, then ``onRecoveryExit(now:)`` when
///   SND.UNA passes the recovery point (during recovery the sender runs RFC 6675 `pipe` against
///   ``congestionWindow`` itself and does not call `onAcknowledged`);
/// - ``onRetransmissionTimeout(flightSize:now:)`` when the retransmission timer expires;
/// - ``restartAfterIdle(now:)`` when it sends after an idle period longer than the RTO (RFC 5681 §4.1).
///
/// Growth only happens while the sender uses the window: when less than half of it was outstanding, ACKs do not
/// open it further (a simple form of RFC 7661 congestion window validation, as RFC 9438 §5.8 asks).
public struct CongestionController: Sendable {
    /// CUBIC's multiplicative decrease factor β_cubic (RFC 9438 §4.6).
    public static let cubicBeta = 0.7
    /// CUBIC's scaling constant C, in segments per second³ (RFC 9438 §5.1).
    public static let cubicC = 0.4
    /// The additive increase of the Reno-friendly estimate, in segments per RTT, until it reaches the window before
    /// the last reduction: 3 (1 - β) / (1 + β) (RFC 9438 §4.3).
    public static let cubicAlpha = 3 * (1 - cubicBeta) / (1 + cubicBeta)

    public let algorithm: CongestionAlgorithm
    /// The sender maximum segment size (SMSS), in bytes.
    public private(set) var mss: Int
    /// cwnd, in bytes.
    public private(set) var congestionWindow: Int
    /// ssthresh, in bytes; `Int.max` until the first loss (RFC 5681 §3.1: "arbitrarily high").
    public private(set) var slowStartThreshold: Int = .max

    /// The explicit initial window, if one was given.
    let configuredInitialWindow: Int?
    /// True until the first ACK or loss: `setMSS` then recomputes the initial window.
    var pristine = true
    /// Set by a timeout and cleared by the next ACK of new data: a repeated timeout keeps ssthresh
    /// (RFC 5681 §3.1, the note on equation 4).
    var timedOut = false
    /// Bytes acknowledged in congestion avoidance not yet turned into window (RFC 3465 byte counting, NewReno).
    var bytesAcked = 0

    // CUBIC state, windows in bytes (RFC 9438 §4.1). Double math: no allocation, no clock reads.
    /// W_max: the window just before the last reduction (after fast convergence).
    var wMax = 0.0
    /// cwnd_prior: the window before the last reduction, where the Reno-friendly α becomes 1 (RFC 9438 §4.3).
    var cwndPrior = 0.0
    /// W_est: the Reno-friendly estimate.
    var wEst = 0.0
    /// K, in seconds.
    var k = 0.0
    /// Start of the current congestion avoidance stage; nil until it starts.
    var epochStart: Instant?
    /// The fraction of a byte of window growth not applied yet.
    var remainder = 0.0
    /// The last RTT given to `onAcknowledged`, in seconds.
    var rtt = 0.0

    /// - Parameters:
    ///   - initialWindow: the initial cwnd in bytes; by default RFC 6928's min(10 SMSS, max(2 SMSS, 14600)).
    public init(algorithm: CongestionAlgorithm = .default, mss: Int, initialWindow: Int? = nil) {
        precondition(mss > 0, "MSS must be positive")
        self.algorithm = algorithm
        self.mss = mss
        self.configuredInitialWindow = initialWindow
        self.congestionWindow = max(initialWindow ?? Self.defaultInitialWindow(mss: mss), mss)
    }

    /// RFC 6928 §2: IW = min(10*MSS, max(2*MSS, 14600)).
    @inlinable public static func defaultInitialWindow(mss: Int) -> Int { min(10 * mss, max(2 * mss, 14_600)) }

    /// The initial window for the current MSS.
    public var initialWindow: Int { max(configuredInitialWindow ?? Self.defaultInitialWindow(mss: mss), mss) }

    /// cwnd < ssthresh (RFC 5681 §3.1).
    @inlinable public var inSlowStart: Bool { congestionWindow < slowStartThreshold }

    /// Changes SMSS (for example once the peer's MSS option or a path MTU is known). Before any ACK or loss the
    /// initial window is recomputed for the new size; later the window keeps its bytes but at least one segment.
    public mutating func setMSS(_ newMSS: Int) {
        precondition(newMSS > 0, "MSS must be positive")
        mss = newMSS
        if pristine { congestionWindow = initialWindow } else { congestionWindow = max(congestionWindow, newMSS) }
    }

    /// New data was acknowledged outside loss recovery.
    ///
    /// - Slow start (cwnd < ssthresh): RFC 5681 §3.1 with RFC 3465 appropriate byte counting, cwnd grows by the
    ///   bytes acknowledged, at most L = 2 SMSS per ACK; growth past ssthresh continues in congestion avoidance.
    /// - Congestion avoidance, NewReno: RFC 5681 §3.1 / RFC 3465 §2.1, one SMSS per cwnd of bytes acknowledged.
    /// - Congestion avoidance, CUBIC: RFC 9438 §4.2-4.4, W_cubic(t) = C (t - K)³ + W_max with
    ///   K = ∛((W_max - cwnd_epoch) / C); each ACK moves cwnd by (target - cwnd) / cwnd per segment acknowledged,
    ///   target = W_cubic(t + RTT) bounded to [cwnd, 1.5 cwnd]; in the Reno-friendly region (W_cubic(t) < W_est)
    ///   cwnd follows W_est.
    ///
    /// - Parameters:
    ///   - bytes: bytes newly acknowledged by this ACK (SND.UNA's advance).
    ///   - flightSize: bytes still outstanding after this ACK (SND.NXT - SND.UNA); the window only grows while
    ///     `flightSize + bytes` (what was outstanding when the ACK arrived) is at least half of it.
    ///   - rtt: the smoothed RTT (or the ACK's sample), used by CUBIC's target; nil keeps the last one.
    public mutating func onAcknowledged(bytes: Int, flightSize: Int, rtt: Duration?, now: Instant) {
        onAcknowledged(bytes: bytes, flightSize: flightSize, rttNanoseconds: rtt?.nanoseconds, now: now)
    }

    /// ``onAcknowledged(bytes:flightSize:rtt:now:)`` with the RTT in nanoseconds.
    public mutating func onAcknowledged(bytes: Int, flightSize: Int, rttNanoseconds: Int64?, now: Instant) {
        guard bytes > 0 else { return }
        pristine = false
        timedOut = false
        if let rttNanoseconds { self.rtt = Self.seconds(rttNanoseconds) }
        guard 2 * (flightSize + bytes) >= congestionWindow else { return }  // not cwnd-limited: do not grow
        var bytes = bytes
        if inSlowStart {
            let increase = min(bytes, 2 * mss)
            let room = slowStartThreshold - congestionWindow
            if increase < room {
                congestionWindow += increase
                return
            }
            congestionWindow = slowStartThreshold
            bytes = increase - room
            guard bytes > 0 else { return }
        }
        switch algorithm {
        case .newReno:
            bytesAcked += bytes
            if bytesAcked >= congestionWindow {
                bytesAcked -= congestionWindow
                congestionWindow += mss
            }
        case .cubic:
            cubicCongestionAvoidance(bytes: bytes, now: now)
        }
    }

    /// Loss detected by three duplicate ACKs or by the SACK scoreboard: entering fast recovery.
    ///
    /// - NewReno (RFC 5681 §3.2 step 2, RFC 6582): ssthresh = max(FlightSize / 2, 2 SMSS).
    /// - CUBIC (RFC 9438 §4.6, §4.7): ssthresh = max(cwnd β_cubic, 2 SMSS); W_max = cwnd, or cwnd (1 + β) / 2
    ///   when the window did not regain the previous W_max (fast convergence).
    ///
    /// cwnd = ssthresh; the sender inflates it or runs `pipe` (RFC 6675) during recovery itself.
    public mutating func onLossDetected(flightSize: Int, now: Instant) {
        reduce(flightSize: flightSize)
        congestionWindow = slowStartThreshold
    }

    /// The retransmission timer expired (RFC 5681 §3.1 equation 4 and §3.1's loss window; RFC 9438 §4.8).
    ///
    /// ssthresh is computed as for ``onLossDetected(flightSize:now:)`` (but kept when the same data times out
    /// again before any new data is acknowledged), cwnd = 1 SMSS, and CUBIC's next congestion avoidance stage
    /// starts with K = 0 and W_max = the window at its start.
    public mutating func onRetransmissionTimeout(flightSize: Int, now: Instant) {
        if !timedOut {
            reduce(flightSize: flightSize)
            if algorithm == .cubic {
                wMax = 0
                cwndPrior = 0
            }
        }
        timedOut = true
        congestionWindow = mss
        bytesAcked = 0
        epochStart = nil
    }

    /// Fast recovery ended (SND.UNA reached the recovery point): cwnd = ssthresh ("deflating the window",
    /// RFC 5681 §3.2 step 6, RFC 6582 §3.2 step 3); a CUBIC congestion avoidance stage starts at `now`
    /// (RFC 9438 §4.2).
    public mutating func onRecoveryExit(now: Instant) {
        if slowStartThreshold != .max { congestionWindow = max(slowStartThreshold, mss) }
        bytesAcked = 0
        if algorithm == .cubic { startEpoch(now: now) }
    }

    /// Sending after an idle period longer than the RTO (RFC 5681 §4.1; the caller decides that the connection was
    /// idle that long): cwnd = min(IW, cwnd). The CUBIC epoch restarts at the next ACK, keeping W_max.
    public mutating func restartAfterIdle(now: Instant) {
        congestionWindow = min(congestionWindow, initialWindow)
        bytesAcked = 0
        epochStart = nil
    }

    // MARK: - Internals

    mutating func reduce(flightSize: Int) {
        pristine = false
        bytesAcked = 0
        remainder = 0
        switch algorithm {
        case .newReno:
            slowStartThreshold = max(flightSize / 2, 2 * mss)
        case .cubic:
            let cwnd = Double(congestionWindow)
            cwndPrior = cwnd
            wMax = cwnd < wMax ? cwnd * (1 + Self.cubicBeta) / 2 : cwnd  // fast convergence (RFC 9438 §4.7)
            slowStartThreshold = max(Int(cwnd * Self.cubicBeta), 2 * mss)
            epochStart = nil
        }
    }

    @inlinable static func seconds(_ ns: Int64) -> Double { Double(ns) / 1e9 }

    /// Starts a congestion avoidance stage (RFC 9438 §4.2, Figure 2).
    mutating func startEpoch(now: Instant) {
        epochStart = now
        remainder = 0
        let cwnd = Double(congestionWindow)
        if cwnd < wMax {
            k = cbrt((wMax - cwnd) / Double(mss) / Self.cubicC)
        } else {
            // No reduction yet, after a timeout, or grown past W_max: the plateau is here (RFC 9438 §4.8; Linux).
            k = 0
            wMax = cwnd
        }
        wEst = cwnd
    }

    /// W_cubic(t) in bytes (RFC 9438 Figure 1).
    func wCubic(_ t: Double) -> Double {
        let d = t - k
        return Self.cubicC * d * d * d * Double(mss) + wMax
    }

    mutating func cubicCongestionAvoidance(bytes: Int, now: Instant) {
        if epochStart == nil { startEpoch(now: now) }
        let t = Self.seconds((now - epochStart!).nanoseconds)
        let cwnd = Double(congestionWindow)
        let m = Double(mss)
        let segmentsAcked = Double(bytes) / m
        // Reno-friendly estimate (RFC 9438 §4.3), in bytes: α segments per cwnd of segments acknowledged.
        let alpha = wEst >= cwndPrior ? 1.0 : Self.cubicAlpha
        wEst += alpha * segmentsAcked / (cwnd / m) * m
        let next: Double
        if wCubic(t) < wEst {
            next = max(cwnd, wEst)  // Reno-friendly region
        } else {
            // Concave or convex region (RFC 9438 §4.4, §4.5).
            let target = min(max(wCubic(t + rtt), cwnd), 1.5 * cwnd)
            next = cwnd + (target - cwnd) / cwnd * segmentsAcked * m
        }
        let grown = next - cwnd + remainder
        let whole = grown.rounded(.down)
        remainder = grown - whole
        if whole >= 1 { congestionWindow += Int(min(whole, Double(Int.max / 4))) }
    }
}
