#if canImport(Glibc)
import Glibc
#endif

/// A point on the monotonic clock, in nanoseconds.
///
/// Protocol state machines never read the clock: they take an `Instant` as input. Only the runtime's wait loop reads
/// ``Instant/now()``, once per pass, so timers fire on time even during short waits.
public struct Instant: RawRepresentable, Comparable, Hashable, Sendable, CustomStringConvertible {
    /// Nanoseconds since an arbitrary origin.
    public var rawValue: Int64
    @inlinable public init(rawValue: Int64) { self.rawValue = rawValue }
    @inlinable public init(nanoseconds: Int64) { rawValue = nanoseconds }

    public static var zero: Instant { Instant(rawValue: 0) }
    /// Later than every real instant: "never".
    public static var distantFuture: Instant { Instant(rawValue: .max) }

    /// Reads `CLOCK_MONOTONIC` (a vDSO call, no system call on Linux with a TSC or kvm clock source).
    @inlinable public static func now() -> Instant {
        #if canImport(Glibc)
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Instant(rawValue: Int64(ts.tv_sec) &* 1_000_000_000 &+ Int64(ts.tv_nsec))
        #else
        return .zero
        #endif
    }

    @inlinable public static func < (l: Instant, r: Instant) -> Bool { l.rawValue < r.rawValue }

    /// Saturating addition of nanoseconds.
    @inlinable public func adding(nanoseconds: Int64) -> Instant {
        let (v, o) = rawValue.addingReportingOverflow(nanoseconds)
        return Instant(rawValue: o ? (nanoseconds > 0 ? .max : .min) : v)
    }

    @inlinable public static func + (l: Instant, r: Duration) -> Instant { l.adding(nanoseconds: r.nanoseconds) }
    @inlinable public static func - (l: Instant, r: Instant) -> Duration { .nanoseconds(l.rawValue &- r.rawValue) }

    public var description: String { "\(rawValue)ns" }
}

extension Duration {
    /// The duration in whole nanoseconds, saturating at `Int64.max`.
    @inlinable public var nanoseconds: Int64 {
        // Fast path: the attosecond count fits in 64 bits (|d| < about 9.2 s). The standard library's `components`
        // goes through 128-bit division, which costs about 100 instructions per call on the TCP path.
        let atto = _attoseconds(self)
        if let small = Int64(exactly: atto) { return small / 1_000_000_000 }
        let (s, a) = components
        let (ns, o1) = s.multipliedReportingOverflow(by: 1_000_000_000)
        if o1 { return s > 0 ? .max : .min }
        let (t, o2) = ns.addingReportingOverflow(a / 1_000_000_000)
        if o2 { return s > 0 ? .max : .min }
        return t
    }
}

/// A Duration's total attoseconds (its exact representation).
@inlinable @inline(__always)
func _attoseconds(_ d: Duration) -> Int128 {
    let (s, a) = (d._high, d._low)
    return Int128(s) << 64 | Int128(a)
}
