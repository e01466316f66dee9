import ArgumentParser
import CDemiBaselines
import Demikernel
import Foundation

@main
struct DemiBenchmarks: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demi-benchmarks",
        abstract: "Demikernel for Swift next to plain C sockets and SwiftNIO, measured in one run.",
        discussion: """
            Measures, with repetitions (median, min and max over runs):
              - echo round trips over 127.0.0.1 (UDP and TCP, 64 B by default): the plain C busy-poll baseline, \
            catnap in busy, auto and epoll poll modes, and SwiftNIO (NIOPosix event loops);
              - many clients (--clients, default 1 4 16): N TCP connections, and N UDP sockets against one UDP echo \
            socket, held by one client thread, 64 B, one message in flight on each; aggregate messages/s and \
            p50/p99, catnap (busy) next to C busy-poll;
              - TCP throughput by message size (64 B to 64 KiB): C busy-poll, C blocking and catnap;
              - microbenchmarks: scheduler wake + poll, buffer allocate + free, sgaalloc + sgafree, and a single-thread \
            push + pop + wait round, each next to a C counterpart.
            The server and the client run on their own threads, pinned to different CPUs when there are two or more. \
            Every figure is also given as a ratio to its C baseline measured in the same run: on a shared machine, \
            compare ratios, not absolute values across runs.

            Writes Markdown to standard output (and --markdown), JSON (--json) and SVG charts (--svg-dir).
            Example: demi-benchmarks --json docs/benchmarks/results.json --svg-dir docs/benchmarks
            """)

    @Option(help: "Timed round trips per echo run.") var count = 20_000
    @Option(help: "Untimed round trips before each echo run.") var warmup = 1000
    @Option(help: "Repetitions of every figure (medians are reported).") var reps = 5
    @Option(parsing: .upToNextOption, help: "Echo message sizes in bytes.") var echoSizes: [Int] = [64]
    @Option(parsing: .upToNextOption, help: "TCP throughput message sizes in bytes.")
    var streamSizes: [Int] = [64, 256, 1024, 4096, 16384, 65536]
    @Option(help: "Messages per throughput run (at least 8 MiB, at most 256 MiB are sent).")
    var streamMessages = 50_000
    @Option(help: "Rounds per microbenchmark run (the socket round uses a fiftieth of them).")
    var microRounds = 2_000_000
    @Option(parsing: .upToNextOption, help: "Client counts for the many-clients echo (64 B, one message in flight per TCP connection or UDP socket).")
    var clients: [Int] = [1, 4, 16]
    @Flag(help: "Skip the many-clients echo.") var noManyClients = false
    @Option(parsing: .upToNextOption, help: "Protocols of the many-clients echo: tcp (N connections), udp (N sockets).")
    var manyClientsProtocols: [Catnap.Proto] = [.tcp, .udp]
    @Flag(help: "Skip SwiftNIO.") var noNio = false
    @Flag(help: "Skip the echo round trips.") var noEcho = false
    @Flag(help: "Skip the throughput section.") var noThroughput = false
    @Flag(help: "Skip the microbenchmarks.") var noMicro = false
    @Flag(help: "A short run: 5,000 round trips, 3 repetitions, fewer sizes.") var quick = false
    @Option(help: "Write the results as JSON to this file.") var json: String?
    @Option(help: "Write the Markdown tables to this file.") var markdown: String?
    @Option(help: "Write echo-rtt.svg, tcp-throughput.svg and many-clients.svg into this directory.") var svgDir: String?
    @Option(help: "Give up (exit 3) after this many seconds.") var timeLimit = 900
    @Option(help: .hidden) var profileRound: Int?

    func validate() throws {
        guard count > 0, warmup >= 0, reps > 0, streamMessages > 0, microRounds >= 50, timeLimit > 0 else {
            throw ValidationError("counts must be positive")
        }
        guard echoSizes.allSatisfy({ $0 > 1 && $0 <= 65507 }) else {
            throw ValidationError("echo sizes must be 2...65507 bytes (a 1-byte datagram stops the echo server)")
        }
        guard clients.allSatisfy({ $0 > 0 && $0 <= 1024 }) else { throw ValidationError("--clients must be 1...1024") }
        guard streamSizes.allSatisfy({ $0 > 0 && $0 <= 1 << 24 }) else { throw ValidationError("bad --stream-sizes") }
    }

    func run() throws {
        var s = self
        if s.quick {
            s.count = min(s.count, 5000)
            s.reps = min(s.reps, 3)
            s.streamSizes = [64, 1024, 65536]
            s.streamMessages = min(s.streamMessages, 20_000)
            s.microRounds = min(s.microRounds, 500_000)
        }
        let limit = timeLimit
        DispatchQueue.global().asyncAfter(deadline: .now() + .seconds(limit)) {
            FileHandle.standardError.write(Data("demi-benchmarks: time limit of \(limit) s reached\n".utf8))
            Foundation.exit(3)
        }
        let report = try s.measure()
        print(report.markdown)
        if let path = s.markdown { try report.markdown.write(toFile: path, atomically: true, encoding: .utf8) }
        if let path = s.json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            try enc.encode(report).write(to: URL(fileURLWithPath: path))
        }
        if let dir = s.svgDir {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try Charts.echo(report).write(toFile: dir + "/echo-rtt.svg", atomically: true, encoding: .utf8)
            if !report.throughput.isEmpty {
                try Charts.throughput(report).write(toFile: dir + "/tcp-throughput.svg", atomically: true,
                                                    encoding: .utf8)
            }
            if !report.manyClients.isEmpty {
                try Charts.manyClients(report).write(toFile: dir + "/many-clients.svg", atomically: true,
                                                     encoding: .utf8)
            }
        }
        if !report.errors.isEmpty { throw ExitCode(1) }
    }

    // MARK: - The run

    struct EchoSystem {
        var name: String
        var key: String
        var run: (Catnap.Proto, Int) throws -> RunLatency
    }

    func log(_ s: String) {
        FileHandle.standardError.write(Data((s + "\n").utf8))
    }

    func measure() throws -> Report {
        if let n = profileRound {
            // For profilers: only the single-thread socket round, catnap then C, and no report.
            let a = try Catnap.localRound(rounds: n)
            let b = demi_baseline_udp_local_round(Int32(n))
            print(String(format: "catnap %.1f ns, C %.1f ns per round", a, b))
            Foundation.exit(0)
        }
        let cpuCount = Int(demi_baseline_cpu_count())  // before pinning this thread
        let pinned = cpuCount >= 2
        let cpus: (server: Int32, client: Int32) = pinned ? (1, 0) : (-1, -1)
        _ = demi_baseline_pin(cpus.client)
        var errors: [String] = []
        let count = self.count, warmup = self.warmup

        let c = EchoSystem(name: "C busy-poll sockets", key: "c-busy") { proto, size in
            var samples = [UInt64](repeating: 0, count: count)
            let rc = samples.withUnsafeMutableBufferPointer {
                demi_baseline_pingpong(proto == .tcp ? 1 : 0, Int32(size), Int32(warmup), Int32(count), cpus.server,
                                       cpus.client, $0.baseAddress)
            }
            guard rc == 0 else { throw Errno(rawValue: rc) }
            return RunLatency(samples)
        }
        func catnap(_ mode: String) -> EchoSystem {
            EchoSystem(name: "catnap, \(mode) poll mode", key: "catnap-\(mode)") { proto, size in
                try Catnap.echo(proto: proto, size: size, count: count, warmup: warmup, pollMode: mode,
                                cpus: (cpus.server, cpus.client))
            }
        }
        var systems = [c, catnap("busy"), catnap("auto"), catnap("epoll")]
        if !noNio {
            systems.append(EchoSystem(name: "SwiftNIO 2.101 (NIOPosix)", key: "nio") { proto, size in
                try NIOBaseline.echo(tcp: proto == .tcp, size: size, count: count, warmup: warmup,
                                     cpus: (cpus.server, cpus.client))
            })
        }

        // Echo: the repetitions are the outer loop, so drift on the machine touches every system alike.
        var runs: [String: [RunLatency]] = [:]
        let configs: [(Catnap.Proto, Int)] = [Catnap.Proto.udp, .tcp].flatMap { p in echoSizes.map { (p, $0) } }
        for rep in 0..<(noEcho ? 0 : reps) {
            for (proto, size) in configs {
                for sys in systems {
                    let id = "\(sys.key)/\(proto.rawValue)/\(size)"
                    do {
                        let r = try sys.run(proto, size)
                        runs[id, default: []].append(r)
                        log("echo \(rep + 1)/\(reps) \(proto.rawValue) \(size) B \(sys.key): p50 \(formatNs(r.p50)) p99 \(formatNs(r.p99))")
                    } catch {
                        errors.append("echo \(proto.rawValue) \(size) B, \(sys.name): \(error)")
                        log("echo \(proto.rawValue) \(size) B \(sys.key) failed: \(error)")
                    }
                }
            }
        }
        var echo: [Report.Echo] = []
        for (proto, size) in configs {
            let base = runs["c-busy/\(proto.rawValue)/\(size)"] ?? []
            let baseP50 = Spread(base.map(\.p50)).median
            let baseP99 = Spread(base.map(\.p99)).median
            for sys in systems {
                guard let rs = runs["\(sys.key)/\(proto.rawValue)/\(size)"], !rs.isEmpty else { continue }
                let p50 = Spread(rs.map(\.p50))
                let p99 = Spread(rs.map(\.p99))
                var paired: Spread?
                if base.count == rs.count {
                    paired = Spread(zip(rs, base).map { $0.p50 / $1.p50 })
                }
                echo.append(Report.Echo(
                    system: sys.name, key: sys.key, proto: proto.rawValue, size: size, p50: p50, p99: p99,
                    p999: Spread(rs.map(\.p999)), minimum: Spread(rs.map(\.min)),
                    messagesPerSecond: Spread(rs.map { 1e9 / $0.mean }),
                    p50VsC: base.isEmpty ? nil : p50.median / baseP50,
                    p99VsC: base.isEmpty ? nil : p99.median / baseP99, pairedP50VsC: paired))
            }
        }

        // Many clients: N TCP connections (or N UDP sockets), one message in flight on each, one client thread for
        // all of them; each protocol next to its C baseline, every repetition going round all of them.
        var manyClients: [Report.ManyClients] = []
        if !noManyClients {
            let size = 64
            typealias CMulti = (Int32, Int32, Int32, Int32, Int32, Int32, UnsafeMutablePointer<UInt64>?,
                                UnsafeMutablePointer<UInt64>?) -> Int32
            /// A C many-clients baseline (`demi_baseline_{tcp,udp}_multi_echo`) with `n` clients.
            func cMulti(_ run: CMulti, _ n: Int) throws -> (RunLatency, Double) {
                var samples = [UInt64](repeating: 0, count: count)
                var ns: UInt64 = 0
                let rc = samples.withUnsafeMutableBufferPointer {
                    run(Int32(n), Int32(size), Int32(warmup), Int32(count), cpus.server, cpus.client, $0.baseAddress, &ns)
                }
                guard rc == 0 else { throw Errno(rawValue: rc) }
                return (RunLatency(samples), Double(count) * 1e9 / Double(max(ns, 1)))
            }
            let multi: [(String, Catnap.Proto, String, (Int) throws -> (RunLatency, Double))] = [
                ("C busy-poll sockets", .tcp, "c-busy", { n in try cMulti(demi_baseline_tcp_multi_echo, n) }),
                ("catnap, busy poll mode", .tcp, "catnap-busy", { n in
                    try Catnap.multiEcho(connections: n, size: size, count: count, warmup: warmup, pollMode: "busy",
                                         cpus: (cpus.server, cpus.client))
                }),
                ("C busy-poll sockets", .udp, "c-busy", { n in try cMulti(demi_baseline_udp_multi_echo, n) }),
                ("catnap, busy poll mode", .udp, "catnap-busy", { n in
                    try Catnap.multiEchoUDP(connections: n, size: size, count: count, warmup: warmup,
                                            pollMode: "busy", cpus: (cpus.server, cpus.client))
                }),
            ].filter { manyClientsProtocols.contains($0.1) }
            var got: [String: [(RunLatency, Double)]] = [:]
            for rep in 0..<reps {
                for n in clients {
                    for (name, proto, key, run) in multi {
                        do {
                            let r = try run(n)
                            got["\(proto)/\(key)/\(n)", default: []].append(r)
                            log("clients \(rep + 1)/\(reps) \(proto) \(n) \(proto == .tcp ? "conns" : "sockets") \(key): \(String(format: "%.0f", r.1)) msgs/s p50 \(formatNs(r.0.p50)) p99 \(formatNs(r.0.p99))")
                        } catch {
                            errors.append("many clients, \(proto) \(n) \(proto == .tcp ? "connections" : "sockets"), \(name): \(error)")
                            log("clients \(proto) \(n) \(key) failed: \(error)")
                        }
                    }
                }
            }
            for proto in [Catnap.Proto.tcp, .udp] {
                for n in clients {
                    let base = got["\(proto)/c-busy/\(n)"] ?? []
                    let baseRate = Spread(base.map(\.1)).median
                    let baseP50 = Spread(base.map(\.0.p50)).median
                    let baseP99 = Spread(base.map(\.0.p99)).median
                    for (name, p, key, _) in multi where p == proto {
                        guard let rs = got["\(proto)/\(key)/\(n)"], !rs.isEmpty else { continue }
                        let rate = Spread(rs.map(\.1)), p50 = Spread(rs.map(\.0.p50)), p99 = Spread(rs.map(\.0.p99))
                        manyClients.append(Report.ManyClients(
                            system: name, key: key, proto: proto.rawValue, connections: n, size: size,
                            messagesPerSecond: rate, p50: p50,
                            p99: p99, rateVsC: baseRate > 0 ? rate.median / baseRate : nil,
                            p50VsC: baseP50 > 0 ? p50.median / baseP50 : nil,
                            p99VsC: baseP99 > 0 ? p99.median / baseP99 : nil,
                            pairedRateVsC: base.count == rs.count ? Spread(zip(rs, base).map { $0.1 / $1.1 }) : nil))
                    }
                }
            }
        }

        // Throughput.
        var throughput: [Report.Throughput] = []
        if !noThroughput {
            let streamers: [(String, String, (Int, Int) throws -> Double)] = [
                ("C busy-poll sockets", "c-busy", { size, total in
                    var ns: UInt64 = 0
                    let rc = demi_baseline_tcp_stream_poll(Int32(size), UInt64(total), cpus.server, cpus.client, &ns)
                    guard rc == 0 else { throw Errno(rawValue: rc) }
                    return Double(total) * 8 / Double(ns)
                }),
                ("C blocking sockets (Nagle on)", "c-blocking", { size, total in
                    var ns: UInt64 = 0
                    let rc = demi_baseline_tcp_stream(Int32(size), UInt64(total), cpus.server, cpus.client, &ns)
                    guard rc == 0 else { throw Errno(rawValue: rc) }
                    return Double(total) * 8 / Double(ns)
                }),
                ("catnap, busy poll mode", "catnap-busy", { size, total in
                    try Catnap.stream(size: size, total: total, pollMode: "busy", cpus: (cpus.server, cpus.client))
                }),
            ]
            var gbit: [String: [Double]] = [:]
            for rep in 0..<reps {
                for size in streamSizes {
                    let total = bytesPerRun(size)
                    for (name, key, run) in streamers {
                        do {
                            let g = try run(size, total)
                            gbit["\(key)/\(size)", default: []].append(g)
                            log("stream \(rep + 1)/\(reps) \(size) B \(key): \(String(format: "%.2f", g)) Gbit/s")
                        } catch {
                            errors.append("TCP stream \(size) B, \(name): \(error)")
                            log("stream \(size) B \(key) failed: \(error)")
                        }
                    }
                }
            }
            for size in streamSizes {
                let base = Spread(gbit["c-busy/\(size)"] ?? []).median
                for (name, key, _) in streamers {
                    guard let g = gbit["\(key)/\(size)"], !g.isEmpty else { continue }
                    let sp = Spread(g)
                    throughput.append(Report.Throughput(
                        system: name, key: key, size: size, bytesPerRun: bytesPerRun(size), gbitPerSecond: sp,
                        messagesPerSecond: Spread(g.map { $0 * 1e9 / 8 / Double(size) }),
                        vsC: base > 0 ? sp.median / base : nil))
                }
            }
        }

        // Microbenchmarks.
        var micro: [Report.Micro] = []
        var derived: [Report.Micro] = []
        if !noMicro {
            let n = microRounds
            let socketRounds = max(1, n / 50)
            var m: [String: [Double]] = [:]
            for _ in 0..<reps {
                do {
                    m["sched", default: []].append(try Catnap.schedulerWakePoll(rounds: n))
                    m["c-sched", default: []].append(demi_baseline_sched_wake_poll(Int32(n)))
                    m["buffer", default: []].append(Catnap.bufferAllocFree(rounds: n))
                    m["sga", default: []].append(try Catnap.sgaAllocFree(rounds: n))
                    m["c-malloc", default: []].append(demi_baseline_malloc_free(Int32(n), 64))
                    m["round", default: []].append(try Catnap.localRound(rounds: socketRounds))
                    m["c-round", default: []].append(demi_baseline_udp_local_round(Int32(socketRounds)))
                } catch {
                    errors.append("microbenchmarks: \(error)")
                }
            }
            func row(_ name: String, _ key: String, _ baseName: String?, _ baseKey: String?) -> Report.Micro {
                let v = Spread(m[key] ?? [])
                let b = baseKey.map { Spread(m[$0] ?? []) }
                return Report.Micro(name: name, key: key, nsPerOp: v, baseline: baseName, baselineNsPerOp: b,
                                    vsBaseline: b.flatMap { $0.median > 0 ? v.median / $0.median : nil })
            }
            micro = [
                row("scheduler wake + poll (one task)", "sched", "ready bitset in C", "c-sched"),
                row("buffer pool allocate + release (64 B)", "buffer", "malloc + free (64 B)", "c-malloc"),
                row("sgaalloc + sgafree (64 B, via LibOS)", "sga", "malloc + free (64 B)", "c-malloc"),
                row("UDP sgaalloc + pushTo + wait + pop + wait + sgafree", "round",
                    "sendto + recvfrom", "c-round"),
            ]
            let perIO = Spread(zip(m["round"] ?? [], m["c-round"] ?? []).map { ($0 - $1) / 2 })
            derived.append(Report.Micro(name: "catnap time per I/O, one thread ((round − C round) / 2)",
                                        key: "per-io", nsPerOp: perIO, baseline: nil, baselineNsPerOp: nil,
                                        vsBaseline: nil))
        }
        for e in echo where e.key == "catnap-busy" {
            if let c = echo.first(where: { $0.key == "c-busy" && $0.proto == e.proto && $0.size == e.size }) {
                let paired = zip(runs["catnap-busy/\(e.proto)/\(e.size)"] ?? [], runs["c-busy/\(e.proto)/\(e.size)"] ?? [])
                    .map { ($0.p50 - $1.p50) / 4 }
                derived.append(Report.Micro(
                    name: "catnap busy time per I/O in the \(e.proto.uppercased()) \(formatSize(e.size)) echo ((p50 − C p50) / 4)",
                    key: "echo-per-io-\(e.proto)-\(e.size)", nsPerOp: Spread(paired.isEmpty ? [(e.p50.median - c.p50.median) / 4] : paired),
                    baseline: nil, baselineNsPerOp: nil, vsBaseline: nil))
            }
        }

        // Targets (reported, never asserted).
        var targets: [Report.Target] = []
        if let e = echo.first(where: { $0.key == "catnap-busy" && $0.proto == "udp" && $0.size == 64 }),
           let r = e.p50VsC
        {
            let paired = e.pairedP50VsC.map { String(format: ", paired median %.2fx (runs %.2f–%.2f)", $0.median, $0.min, $0.max) } ?? ""
            targets.append(Report.Target(name: "catnap UDP 64 B echo p50, busy poll, vs C busy-poll", goal: "≤ 1.10x",
                                         measured: String(format: "%.2fx", r) + paired, met: r <= 1.10))
        }
        if let sched = micro.first(where: { $0.key == "sched" }) {
            targets.append(Report.Target(name: "scheduler wake + poll", goal: "≤ 20 ns",
                                         measured: String(format: "%.1f ns", sched.nsPerOp.median),
                                         met: sched.nsPerOp.median <= 20))
        }
        if let p = derived.first(where: { $0.key == "per-io" }) {
            targets.append(Report.Target(name: "catnap time per I/O (paper's budget per I/O)", goal: "< 1 µs",
                                         measured: formatNs(p.nsPerOp.median), met: p.nsPerOp.median < 1000))
        }

        return Report(
            date: ISO8601DateFormatter().string(from: Date()),
            command: (["demi-benchmarks"] + CommandLine.arguments.dropFirst()).joined(separator: " "),
            machine: Report.Machine(cpuModel: Self.cpuModel(), cpus: cpuCount,
                                    kernel: Self.kernel(), pinned: pinned, serverCPU: Int(cpus.server),
                                    clientCPU: Int(cpus.client)),
            settings: Report.Settings(roundTrips: count, warmup: warmup, repetitions: reps, streamSizes: streamSizes,
                                      microRounds: microRounds),
            echo: echo, manyClients: manyClients, throughput: throughput, micro: micro, derived: derived, targets: targets, errors: errors)
    }

    /// Bytes sent by one throughput run of `size`-byte messages: `streamMessages` messages, kept within 8-256 MiB.
    func bytesPerRun(_ size: Int) -> Int {
        let wanted = min(max(size * streamMessages, 8 << 20), 256 << 20)
        return max(size, wanted / size * size)
    }

    static func cpuModel() -> String {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "unknown CPU" }
        for line in text.split(separator: "\n") where line.hasPrefix("model name") {
            return line.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) }
                ?? "unknown CPU"
        }
        return "unknown CPU"
    }

    static func kernel() -> String {
        var u = utsname()
        uname(&u)
        return withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
    }
}

extension Catnap.Proto: ExpressibleByArgument {}
