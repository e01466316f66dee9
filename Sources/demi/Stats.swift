/// Latency figures over a set of samples (nanoseconds).
struct LatencySummary: Codable, Sendable {
    var count: Int
    var p50: Double
    var p99: Double
    var p999: Double
    var min: Double
    var mean: Double

    init(_ samples: [UInt64]) {
        let s = samples.sorted()
        count = s.count
        func pct(_ p: Double) -> Double {
            guard !s.isEmpty else { return 0 }
            return Double(s[Swift.min(s.count - 1, Int(Double(s.count) * p))])
        }
        p50 = pct(0.5)
        p99 = pct(0.99)
        p999 = pct(0.999)
        min = Double(s.first ?? 0)
        mean = s.isEmpty ? 0 : Double(s.reduce(0, +)) / Double(s.count)
    }

    /// The median of each figure over several runs.
    static func median(_ runs: [LatencySummary]) -> LatencySummary {
        func med(_ f: (LatencySummary) -> Double) -> Double {
            let v = runs.map(f).sorted()
            return v.isEmpty ? 0 : v[v.count / 2]
        }
        var r = runs.first ?? LatencySummary([])
        r.p50 = med(\.p50)
        r.p99 = med(\.p99)
        r.p999 = med(\.p999)
        r.min = runs.map(\.min).min() ?? 0
        r.mean = med(\.mean)
        r.count = runs.reduce(0) { $0 + $1.count }
        return r
    }
}

func formatNs(_ ns: Double) -> String {
    if ns >= 1_000_000 { return String(format: "%.2f ms", ns / 1e6) }
    if ns >= 1000 { return String(format: "%.2f µs", ns / 1e3) }
    return String(format: "%.0f ns", ns)
}

import Foundation
