import Foundation

/// Latency percentiles of one run (nanoseconds).
struct RunLatency: Codable, Sendable {
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
}

/// One figure over several repetitions: the median, the smallest and largest run, and every run in order.
struct Spread: Codable, Sendable {
    var median: Double
    var min: Double
    var max: Double
    var runs: [Double]

    init(_ runs: [Double]) {
        let s = runs.sorted()
        self.runs = runs
        median = s.isEmpty ? 0 : (s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2)
        min = s.first ?? 0
        max = s.last ?? 0
    }
}

func formatNs(_ ns: Double) -> String {
    if ns >= 1_000_000 { return String(format: "%.2f ms", ns / 1e6) }
    if ns >= 10_000 { return String(format: "%.1f µs", ns / 1e3) }
    if ns >= 1000 { return String(format: "%.2f µs", ns / 1e3) }
    if ns >= 100 { return String(format: "%.0f ns", ns) }
    return String(format: "%.1f ns", ns)
}

func formatRatio(_ r: Double?) -> String {
    guard let r, r.isFinite else { return "–" }
    return String(format: "%.2fx", r)
}

func formatSize(_ bytes: Int) -> String {
    bytes >= 1024 && bytes % 1024 == 0 ? "\(bytes / 1024) KiB" : "\(bytes) B"
}
