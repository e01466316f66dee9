import Foundation

/// Everything one run measured, as written to `--json`.
struct Report: Codable {
    struct Machine: Codable {
        var cpuModel: String
        var cpus: Int
        var kernel: String
        var pinned: Bool
        var serverCPU: Int
        var clientCPU: Int
    }

    struct Settings: Codable {
        var roundTrips: Int
        var warmup: Int
        var repetitions: Int
        var streamSizes: [Int]
        var microRounds: Int
    }

    /// One closed-loop echo configuration: percentiles per run, then their medians (min and max over runs too).
    struct Echo: Codable {
        var system: String
        var key: String
        var proto: String
        var size: Int
        var p50: Spread
        var p99: Spread
        var p999: Spread
        var minimum: Spread
        /// One message in flight, so messages per second = 1 / mean round trip.
        var messagesPerSecond: Spread
        /// Median p50 over the C busy-poll baseline's median p50 (same protocol and size, same run).
        var p50VsC: Double?
        var p99VsC: Double?
        /// Median over runs of this run's p50 divided by the same repetition's C p50 (paired; robust to drift).
        var pairedP50VsC: Spread?
    }

    /// Many clients: `connections` TCP connections (or, for UDP, client sockets sending to one echo socket), one
    /// message in flight on each, one client thread for all.
    struct ManyClients: Codable {
        var system: String
        var key: String
        /// "tcp" or "udp".
        var proto: String
        var connections: Int
        var size: Int
        /// Aggregate over all connections: timed round trips / time from the last untimed one to the last timed one.
        var messagesPerSecond: Spread
        var p50: Spread
        var p99: Spread
        /// Median over the C busy-poll baseline's median with the same connection count, same run.
        var rateVsC: Double?
        var p50VsC: Double?
        var p99VsC: Double?
        /// Over runs: this run's msgs/s divided by the same repetition's C msgs/s (paired; robust to drift).
        var pairedRateVsC: Spread?
    }

    struct Throughput: Codable {
        var system: String
        var key: String
        var size: Int
        var bytesPerRun: Int
        var gbitPerSecond: Spread
        var messagesPerSecond: Spread
        var vsC: Double?
    }

    struct Micro: Codable {
        var name: String
        var key: String
        var nsPerOp: Spread
        var baseline: String?
        var baselineNsPerOp: Spread?
        var vsBaseline: Double?
    }

    struct Target: Codable {
        var name: String
        var goal: String
        var measured: String
        var met: Bool
    }

    var tool = "demi-benchmarks"
    var date: String
    var command: String
    var machine: Machine
    var settings: Settings
    var echo: [Echo]
    var manyClients: [ManyClients] = []
    var throughput: [Throughput]
    var micro: [Micro]
    var derived: [Micro]
    var targets: [Target]
    var errors: [String]
}

extension Report {
    /// The Markdown tables printed at the end of a run (and by `--markdown`).
    var markdown: String {
        var o = ""
        o += "### Echo round trip (closed loop, one message in flight, \(machine.pinned ? "server on CPU \(machine.serverCPU), client on CPU \(machine.clientCPU)" : "unpinned"))\n\n"
        o += "Median over \(settings.repetitions) runs of \(settings.roundTrips) timed round trips each "
        o += "(after \(settings.warmup) untimed). \"p50 range\" is the smallest and largest per-run p50.\n\n"
        o += "| system | proto | size | p50 | p50 range | p99 | p99.9 | msgs/s | p50 vs C | p99 vs C |\n"
        o += "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        for e in echo {
            o += "| \(e.system) | \(e.proto) | \(formatSize(e.size)) | \(formatNs(e.p50.median)) | "
            o += "\(formatNs(e.p50.min))–\(formatNs(e.p50.max)) | \(formatNs(e.p99.median)) | \(formatNs(e.p999.median)) | "
            o += String(format: "%.0f", e.messagesPerSecond.median)
            o += " | \(formatRatio(e.p50VsC)) | \(formatRatio(e.p99VsC)) |\n"
        }
        if !manyClients.isEmpty {
            let protos = manyClients.reduce(into: [String]()) { if !$0.contains($1.proto) { $0.append($1.proto) } }
            o += "\n### Many clients (\(protos.map { $0.uppercased() }.joined(separator: " and ")) echo, 64 B, N clients "
            o += "each with one message in flight, one client thread)\n\n"
            o += "The client thread (CPU \(machine.clientCPU)) holds all N clients; the server thread (CPU "
            o += "\(machine.serverCPU)) serves them all at once. TCP: N connections; the C baseline's server spins on recv "
            o += "over every non-blocking socket in turn, catnap's waits on one pop per connection with `wait_any`. UDP: N "
            o += "client sockets sending to one echo server socket (the ordinary UDP echo server: C spins on recvfrom, "
            o += "catnap keeps one pop outstanding); the clients are busy-polled in turn (C, connected sockets) or waited "
            o += "on with `wait_any` (catnap). Median over "
            o += "\(settings.repetitions) runs of \(settings.roundTrips) timed round trips in all (after \(settings.warmup) "
            o += "untimed); msgs/s is the aggregate over the N clients; \"vs C\" divides by the C row with the same protocol "
            o += "and N (msgs/s above 1 is faster than C; p50 and p99 below 1 are faster); \"paired\" is the median and "
            o += "range over runs of msgs/s divided by the C msgs/s of the same repetition.\n\n"
            o += "| proto | clients | system | msgs/s | msgs/s range | p50 | p99 | msgs/s vs C | paired (range) | p50 vs C | p99 vs C |\n"
            o += "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
            for m in manyClients {
                o += "| \(m.proto) | \(m.connections) | \(m.system) | " + String(format: "%.0f", m.messagesPerSecond.median) + " | "
                o += String(format: "%.0f–%.0f", m.messagesPerSecond.min, m.messagesPerSecond.max)
                o += " | \(formatNs(m.p50.median)) | \(formatNs(m.p99.median)) | \(formatRatio(m.rateVsC)) | "
                o += m.pairedRateVsC.map { String(format: "%.2fx (%.2f–%.2f)", $0.median, $0.min, $0.max) } ?? "–"
                o += " | \(formatRatio(m.p50VsC)) | \(formatRatio(m.p99VsC)) |\n"
            }
        }
        if !throughput.isEmpty {
            o += "\n### TCP throughput (one connection, one direction, by message size)\n\n"
            o += "Median over \(settings.repetitions) runs. Each run streams the bytes shown; \"vs C\" divides by the C "
            o += "busy-poll stream of the same size in the same run (above 1 is faster than C).\n\n"
            o += "| size | system | Gbit/s | range | msgs/s | vs C busy-poll |\n"
            o += "|---:|---|---:|---:|---:|---:|\n"
            for t in throughput {
                o += "| \(formatSize(t.size)) | \(t.system) | " + String(format: "%.2f", t.gbitPerSecond.median) + " | "
                o += String(format: "%.2f–%.2f", t.gbitPerSecond.min, t.gbitPerSecond.max) + " | "
                o += String(format: "%.0f", t.messagesPerSecond.median) + " | \(formatRatio(t.vsC)) |\n"
            }
        }
        if !micro.isEmpty {
            o += "\n### Microbenchmarks (one thread, \(settings.microRounds) rounds per run, median of \(settings.repetitions) runs)\n\n"
            o += "| operation | ns/op | range | C baseline | C ns/op | vs C |\n"
            o += "|---|---:|---:|---|---:|---:|\n"
            for m in micro + derived {
                o += "| \(m.name) | \(String(format: "%.1f", m.nsPerOp.median)) | "
                o += m.nsPerOp.runs.count > 1 ? String(format: "%.1f–%.1f", m.nsPerOp.min, m.nsPerOp.max) : "–"
                o += " | \(m.baseline ?? "–") | "
                o += m.baselineNsPerOp.map { String(format: "%.1f", $0.median) } ?? "–"
                o += " | \(formatRatio(m.vsBaseline)) |\n"
            }
        }
        if !targets.isEmpty {
            o += "\n### Targets\n\n| target | goal | measured | met |\n|---|---|---|---|\n"
            for t in targets { o += "| \(t.name) | \(t.goal) | \(t.measured) | \(t.met ? "yes" : "**no**") |\n" }
        }
        if !errors.isEmpty {
            o += "\n### Errors\n\n"
            for e in errors { o += "- \(e)\n" }
        }
        return o
    }
}
