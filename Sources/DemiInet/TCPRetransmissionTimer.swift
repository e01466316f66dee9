import DemiCore

/// Bounds of the retransmission timeout.
public struct RetransmissionTimeoutConfiguration: Sendable {
    /// The RTO before the first RTT sample (RFC 6298 §2.1: 1 second).
    public var initial: Duration
    /// The lowest RTO. RFC 6298 §2.4 says 1 second; this is Linux's 200 ms (`TCP_RTO_MIN`), which suits the short
    /// paths a kernel-bypass stack runs on. Set 1 s for the RFC's conservative value.
    public var minimum: Duration
    /// The highest RTO, with backoff (RFC 6298 §2.5: at least 60 seconds).
    public var maximum: Duration
    /// The clock granularity G (RFC 6298 §2): this stack's clock has nanoseconds, but timers fire on scheduler
    /// passes, so 1 ms.
    public var clockGranularity: Duration

    public init(initial: Duration = .seconds(1), minimum: Duration = .milliseconds(200),
                maximum: Duration = .seconds(60), clockGranularity: Duration = .milliseconds(1)) {
        self.initial = initial
        self.minimum = minimum
        self.maximum = maximum
        self.clockGranularity = clockGranularity
    }
}

/// The retransmission timeout of one connection (RFC 6298), a sans-I/O value: the caller measures RTTs and runs
/// the timer.
///
/// - Karn's rule (RFC 6298 §3) is the caller's: never ``sample(_:)`` a segment that was retransmitted (unless the
///   RTT comes from a timestamp echo, RFC 7323 §4), and time at most one segment per RTT without timestamps.
/// - On expiry the caller retransmits, calls ``backoff()`` (§5.5) and restarts the timer with ``timeout``.
/// - A new sample recomputes the RTO from SRTT and RTTVAR, which collapses any backoff (§5, note after rule 5.7);
///   ``resetBackoff()`` does so without a sample.
/// - §5.7 (an RTO below 3 s after a SYN timed out must become 3 s when data transfer starts) is the caller's too.
public struct RetransmissionTimeoutEstimator: Sendable {
    public var configuration: RetransmissionTimeoutConfiguration {
        didSet { cacheBounds() }
    }
    /// The configuration's bounds in nanoseconds (converting a `Duration` of 9 s or more costs 128-bit arithmetic).
    var minimum: Int64 = 0
    var maximum: Int64 = 0
    var granularity: Int64 = 0
    /// SRTT and RTTVAR in nanoseconds; nil before the first sample.
    var srtt: Int64?
    var rttvar: Int64 = 0
    /// The RTO without backoff, in nanoseconds, clamped to [minimum, maximum].
    var base: Int64
    /// Times ``backoff()`` was called since the last sample or reset.
    public private(set) var backoffCount = 0

    public init(configuration: RetransmissionTimeoutConfiguration = RetransmissionTimeoutConfiguration()) {
        self.configuration = configuration
        base = 0
        cacheBounds()
        base = clamp(configuration.initial.nanoseconds)
    }

    mutating func cacheBounds() {
        minimum = configuration.minimum.nanoseconds
        maximum = configuration.maximum.nanoseconds
        granularity = configuration.clockGranularity.nanoseconds
    }

    /// The current RTO, including backoff: the base RTO doubled per backoff, at most the maximum.
    public var timeout: Duration { .nanoseconds(timeoutNanoseconds) }

    /// ``timeout`` in nanoseconds.
    public var timeoutNanoseconds: Int64 {
        var t = base
        var n = backoffCount
        while n > 0 && t < maximum {
            t = t > maximum / 2 ? maximum : t * 2
            n -= 1
        }
        return min(t, maximum)
    }

    /// SRTT; nil before the first sample.
    public var smoothedRTT: Duration? { srtt.map { .nanoseconds($0) } }
    /// RTTVAR; nil before the first sample.
    public var rttVariation: Duration? { srtt == nil ? nil : .nanoseconds(rttvar) }

    /// Takes an RTT measurement R (RFC 6298 §2.2, §2.3): the first sets SRTT = R, RTTVAR = R/2; later ones
    /// RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R| then SRTT = 7/8 SRTT + 1/8 R. RTO = SRTT + max(G, 4 RTTVAR), clamped
    /// to [minimum, maximum] (§2.4, §2.5). Resets the backoff. Negative samples count as zero.
    public mutating func sample(_ rtt: Duration) { sample(nanoseconds: rtt.nanoseconds) }

    /// ``sample(_:)`` with the RTT in nanoseconds.
    public mutating func sample(nanoseconds rtt: Int64) {
        let r = max(rtt, 0)
        if let s = srtt {
            let diff = s > r ? s - r : r - s
            rttvar += (diff - rttvar) / 4
            srtt = s + (r - s) / 8
        } else {
            srtt = r
            rttvar = r / 2
        }
        let variance = rttvar > Int64.max / 8 ? Int64.max / 2 : 4 * rttvar
        let sum = srtt!.addingReportingOverflow(max(granularity, variance))
        base = clamp(sum.overflow ? .max : sum.partialValue)
        backoffCount = 0
    }

    /// The timer expired: double the RTO (RFC 6298 §5.5), at most the maximum.
    public mutating func backoff() {
        if backoffCount < 64 { backoffCount += 1 }
    }

    /// Drops the backoff: the RTO returns to SRTT + max(G, 4 RTTVAR) (or the initial RTO before any sample).
    public mutating func resetBackoff() { backoffCount = 0 }

    func clamp(_ ns: Int64) -> Int64 {
        min(max(ns, minimum), maximum)
    }
}
