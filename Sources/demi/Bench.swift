import ArgumentParser
import CDemiBaselines
import CDemiLinux
import DemiDevices
import DemiInet
import DemiStackLibOS
import Demikernel
import Foundation

/// A value handed between threads once, under a semaphore.
final class Handoff<T>: @unchecked Sendable {
    var value: T?
    var error: (any Error)?
    let signal = DispatchSemaphore(value: 0)
}

/// One row of the results.
struct BenchRow: Codable {
    var system: String
    var proto: String
    var size: Int
    var latency: LatencySummary
    var messagesPerSecond: Double
    var ratioToC: Double?
}

struct StreamRow: Codable {
    var system: String
    var size: Int
    var gbitPerSecond: Double
    var ratioToC: Double?
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Echo round trips and throughput of the libOSes next to plain C sockets, in one run.",
        discussion: """
            Starts an echo server and a closed-loop client on loopback, on separate CPUs when there are two or \
            more, and prints latency and throughput. Every libOS figure is also given as a ratio to the plain C \
            busy-polling baseline measured in the same run (this machine is shared and noisy: compare ratios, \
            not absolute values). Each figure is the median over --reps runs.
            """)

    @Option(help: "Timed round trips per run.") var count = 10_000
    @Option(help: "Untimed round trips before each run.") var warmup = 1000
    @Option(help: "Runs per figure (the median is reported).") var reps = 3
    @Option(parsing: .upToNextOption, help: "Message sizes for the round-trip table.") var sizes: [Int] = [64, 1024]
    @Option(parsing: .upToNextOption, help: "catmem message sizes (default: --sizes; at most 1 MiB).")
    var catmemSizes: [Int] = []
    @Option(help: "Bytes streamed by the throughput test.") var streamBytes = 256 << 20
    @Option(help: "catnap poll mode for the benchmark: busy, epoll or auto.") var pollMode = "busy"
    @Flag(help: "Skip the shared-memory (catmem) row.") var noCatmem = false
    @Flag(help: "Run only the shared-memory (catmem) rows and their C ring baseline.") var catmemOnly = false
    @Option(help: "Also write the results as JSON to this file.") var json: String?
    @Flag(help: "Run only the inetstack (user-space TCP/IP over the in-memory link) section.") var inetOnly = false
    @Flag(help: "Skip the inetstack section.") var noInet = false
    @Option(help: "Timed round trips per run of the inetstack echo.") var inetCount = 50_000
    @Option(help: "Bytes per run of the inetstack bulk transfer.") var inetBytes = 256 << 20
    @Flag(help: "inetstack: compute every checksum in software (default: the link offloads them, as a NIC would).")
    var inetSoftwareChecksums = false
    @Option(parsing: .upToNextOption, help: "inetstack tests to run: tcp, udp, bulk, many (16 TCP connections) (for profiling one).")
    var inetTests: [String] = ["tcp", "udp", "bulk", "many"]
    @Option(parsing: .upToNextOption, help: "inetstack: further echo message sizes besides 64 B (UDP at most 65507).")
    var inetSizes: [Int] = []

    func validate() throws {
        guard count > 0, warmup >= 0, reps > 0, sizes.allSatisfy({ $0 > 0 && $0 <= 65507 }) else {
            throw ValidationError("bad --count, --warmup, --reps or --sizes")
        }
    }

    var cpus: (server: Int32, client: Int32) {
        cdemi_cpu_count() >= 2 ? (1, 0) : (-1, -1)
    }

    func run() throws {
        if inetOnly {
            try printInet(try inetstack(), catnap: nil)
            return
        }
        let (serverCPU, clientCPU) = cpus
        print("demi bench: loopback echo, \(count) round trips x \(reps) runs per figure (median), " +
              (serverCPU >= 0 ? "server on CPU \(serverCPU), client on CPU \(clientCPU)" : "one CPU"))
        var rows: [BenchRow] = []
        for proto in TransportProtocol.allCases where !catmemOnly {
            for size in sizes {
                var c: [LatencySummary] = []
                var nap: [LatencySummary] = []
                var napRate: [Double] = []
                var cRate: [Double] = []
                for _ in 0..<reps {
                    let cs = try baseline(proto: proto, size: size)
                    c.append(cs)
                    cRate.append(1e9 / cs.mean)
                    let (ns, rate) = try catnap(proto: proto, size: size)
                    nap.append(ns)
                    napRate.append(rate)
                }
                let cm = LatencySummary.median(c)
                let nm = LatencySummary.median(nap)
                rows.append(BenchRow(system: "C busy-poll sockets", proto: proto.rawValue, size: size, latency: cm,
                                     messagesPerSecond: median(cRate), ratioToC: 1))
                rows.append(BenchRow(system: "catnap (\(pollMode))", proto: proto.rawValue, size: size, latency: nm,
                                     messagesPerSecond: median(napRate), ratioToC: nm.p50 / cm.p50))
            }
        }
        if !noCatmem {
            for size in (catmemSizes.isEmpty ? sizes : catmemSizes) where size <= 1 << 20 {
                var runs: [LatencySummary] = []
                var rates: [Double] = []
                var ring: [LatencySummary] = []
                // Where catmem's time goes: its ring format with plain C at both ends, and with plain C at one end.
                let split = size <= Int(Self.plainRing) / 2 - 16
                var format: [LatencySummary] = [], cEcho: [LatencySummary] = [], cClient: [LatencySummary] = []
                for _ in 0..<reps {
                    ring.append(try shmBaseline(size: size))
                    let (s, r) = try catmem(size: size)
                    runs.append(s)
                    rates.append(r)
                    if split {
                        format.append(try catmemFormatBaseline(size: size))
                        cEcho.append(try catmem(size: size, plainCEcho: true).0)
                        cClient.append(try plainClientToCatmemEcho(size: size))
                    }
                }
                let rm = LatencySummary.median(ring)
                let cm = LatencySummary.median(runs)
                // Each ratio is the median of the repetitions' own ratios (each against the C ring run just before
                // it): this shared machine changes speed from one second to the next, more than these rows differ.
                func ratio(_ xs: [LatencySummary]) -> Double { median(zip(xs, ring).map { $0.p50 / $1.p50 }) }
                rows.append(BenchRow(system: "C SPSC shared-memory ring (2 processes)", proto: "shm", size: size,
                                     latency: rm, messagesPerSecond: 1e9 / rm.mean, ratioToC: 1))
                rows.append(BenchRow(system: "catmem (2 processes)", proto: "shm", size: size,
                                     latency: cm, messagesPerSecond: median(rates), ratioToC: ratio(runs)))
                for (system, runs) in [("catmem's ring format in plain C (2 processes)", format),
                                       ("catmem client, plain-C echo", cEcho),
                                       ("plain-C client, catmem echo", cClient)] where split {
                    let m = LatencySummary.median(runs)
                    rows.append(BenchRow(system: system, proto: "shm", size: size, latency: m,
                                         messagesPerSecond: 1e9 / m.mean, ratioToC: ratio(runs)))
                }
            }
        }
        printTable(rows)
        if !noCatmem {
            // One-way streaming, 64 B: C ring and catmem alternate; the ratio is the median of the per-pair ratios.
            var cr: [Double] = [], mr: [Double] = [], ratios: [Double] = []
            for _ in 0..<reps {
                let c = try shmBaselineStream(size: 64, messages: 1_000_000)
                let m = try catmemStream(size: 64, messages: 1_000_000)
                cr.append(c); mr.append(m); ratios.append(m / c)
            }
            print("")
            print("One-way streaming, 64 B messages, 1,000,000 per run (producer on CPU \(cpus.client), consumer on CPU \(cpus.server)):")
            print("| system | msgs/s | vs C ring |")
            print("|---|---:|---:|")
            print(String(format: "| C SPSC shared-memory ring (2 processes) | %.0f | 1.00x |", median(cr)))
            print(String(format: "| catmem (2 processes) | %.0f | %.2fx |", median(mr), median(ratios)))
            // Many clients: 16 pipes between the two processes, one 64 B message in flight on each, against the C
            // ring pair's single ping-pong (messages per second) of the same repetition.
            var one: [Double] = [], many: [Double] = [], ring: [Double] = []
            for _ in 0..<reps {
                ring.append(1e9 / (try shmBaseline(size: 64)).mean)
                one.append(try catmemMany(pipes: 1, size: 64))
                many.append(try catmemMany(pipes: 16, size: 64))
            }
            print("")
            print("Many clients, 64 B: pipes between the two processes, one message in flight on each, each side waiting on all:")
            print("| system | msgs/s | vs C ring (1 pair) |")
            print("|---|---:|---:|")
            let r = median(ring)
            print(String(format: "| C SPSC shared-memory ring (2 processes, 1 pair) | %.0f | 1.00x |", r))
            print(String(format: "| catmem, 1 pipe (wait_any) | %.0f | %.2fx |", median(one), median(one) / r))
            print(String(format: "| catmem, 16 pipes (wait_any) | %.0f | %.2fx |", median(many), median(many) / r))
        }
        if catmemOnly { return }

        var streams: [StreamRow] = []
        var cStream: [Double] = []
        var napStream: [Double] = []
        for _ in 0..<reps {
            cStream.append(try baselineStream(size: 65536))
            napStream.append(try catnapStream(size: 65536))
        }
        let cg = median(cStream)
        streams.append(StreamRow(system: "C blocking sockets", size: 65536, gbitPerSecond: cg, ratioToC: 1))
        streams.append(StreamRow(system: "catnap (\(pollMode))", size: 65536, gbitPerSecond: median(napStream),
                                 ratioToC: median(napStream) / cg))
        print("")
        print("TCP stream, \(streamBytes >> 20) MiB in 64 KiB pushes:")
        print("| system | Gbit/s | vs C |")
        print("|---|---:|---:|")
        for s in streams {
            print(String(format: "| %@ | %.2f | %.2fx |", s.system, s.gbitPerSecond, s.ratioToC ?? 0))
        }
        let micro = try microbenchmarks()
        print("")
        print("Microbenchmarks (one thread, median of \(reps) runs):")
        print("| operation | ns | vs baseline |")
        print("|---|---:|---:|")
        for m in micro {
            print("| \(m.name) | \(String(format: "%.1f", m.ns)) | \(m.ratio.map { String(format: "%.2fx", $0) } ?? "-") |")
        }
        var inet: [InetRow] = []
        if !noInet {
            inet = try inetstack()
            let tcp64 = rows.first { $0.system.hasPrefix("catnap") && $0.proto == "tcp" && $0.size == 64 }
            let udp64 = rows.first { $0.system.hasPrefix("catnap") && $0.proto == "udp" && $0.size == 64 }
            let perIO = micro.first { $0.name.hasPrefix("catnap libOS time per I/O") }?.ns
            try printInet(inet, catnap: CatnapFigures(tcp: tcp64?.latency, udp: udp64?.latency, perIO: perIO,
                                                      streamGbit: median(napStream)))
        }
        if let json {
            struct Out: Codable {
                var date: String; var roundTrips: [BenchRow]; var streams: [StreamRow]; var micro: [MicroRow]
                var inetstack: [InetRow]
            }
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            let data = try enc.encode(Out(date: ISO8601DateFormatter().string(from: Date()), roundTrips: rows,
                                          streams: streams, micro: micro, inetstack: inet))
            try data.write(to: URL(fileURLWithPath: json))
        }
    }

    func printTable(_ rows: [BenchRow]) {
        print("")
        print("| system | proto | size | p50 | p99 | p99.9 | msgs/s | p50 vs its C baseline |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for r in rows {
            let ratio = r.ratioToC.map { String(format: "%.2fx", $0) } ?? "-"
            print("| \(r.system) | \(r.proto) | \(r.size) | \(formatNs(r.latency.p50)) | \(formatNs(r.latency.p99)) | "
                  + "\(formatNs(r.latency.p999)) | \(String(format: "%.0f", r.messagesPerSecond)) | \(ratio) |")
        }
    }

    func median(_ v: [Double]) -> Double {
        let s = v.sorted()
        return s.isEmpty ? 0 : s[s.count / 2]
    }

    // MARK: - Systems

    func baseline(proto: TransportProtocol, size: Int) throws -> LatencySummary {
        var samples = [UInt64](repeating: 0, count: count)
        let rc = samples.withUnsafeMutableBufferPointer {
            demi_baseline_pingpong(proto == .tcp ? 1 : 0, Int32(size), Int32(warmup), Int32(count), cpus.server,
                                   cpus.client, $0.baseAddress)
        }
        guard rc == 0 else { throw Errno(rawValue: rc) }
        return LatencySummary(samples)
    }

    func shmBaseline(size: Int) throws -> LatencySummary {
        var samples = [UInt64](repeating: 0, count: count)
        let rc = samples.withUnsafeMutableBufferPointer {
            demi_baseline_shm_pingpong(Int32(size), Int32(warmup), Int32(count), cpus.server, cpus.client, $0.baseAddress)
        }
        guard rc == 0 else { throw Errno(rawValue: rc) }
        return LatencySummary(samples)
    }

    func makeLibOS(_ name: LibOSName) throws -> LibOS {
        var config = try Configuration.fromEnvironment()
        try config.set("poll_mode", pollMode)
        return try LibOS(name, configuration: config)
    }

    /// Starts an echo (or sink) server on its own thread with its own libOS; returns its address and a stopper.
    func startServer(proto: TransportProtocol, sink: Bool = false) throws -> (SocketAddressV4, () -> Void) {
        let address = Handoff<SocketAddressV4>()
        let finished = DispatchSemaphore(value: 0)
        let stop = StopFlag()
        let serverCPU = cpus.server
        let pollMode = self.pollMode
        let thread = Thread {
            defer { finished.signal() }
            if serverCPU >= 0 { _ = cdemi_pin_to_cpu(serverCPU) }
            do {
                var config = try Configuration.fromEnvironment()
                try config.set("poll_mode", pollMode)
                let os = try LibOS(.kernelSockets, configuration: config)
                let ready: @Sendable (SocketAddressV4) -> Void = { a in
                    address.value = a
                    address.signal.signal()
                }
                if sink {
                    try SinkServer.run(os, address: SocketAddressV4(.loopback, 0), stop: stop, ready: ready)
                } else {
                    try EchoServer.run(os, proto: proto, address: SocketAddressV4(.loopback, 0), stop: stop,
                                       ready: ready)
                }
            } catch {
                address.error = error
                address.signal.signal()
            }
        }
        thread.start()
        address.signal.wait()
        if let e = address.error { throw e }
        return (address.value!, { stop.set(); finished.wait() })
    }

    func catnap(proto: TransportProtocol, size: Int) throws -> (LatencySummary, Double) {
        let (addr, stop) = try startServer(proto: proto)
        defer { stop() }
        if cpus.client >= 0 { _ = cdemi_pin_to_cpu(cpus.client) }
        let os = try makeLibOS(.kernelSockets)
        let o = try PingClient.run(os, proto: proto, server: addr, size: size, count: count, warmup: warmup,
                                   connections: 1)
        return (LatencySummary(o.samples), Double(o.messages) / (Double(o.elapsedNs) / 1e9))
    }

    /// The ring size of the pipes whose creator is plain C (catmem's default).
    static let plainRing: UInt32 = 256 * 1024

    /// A fresh pipe name for this process.
    func pipeName() -> String { "bench-\(getpid())-\(UInt32.random(in: 0...UInt32.max))" }

    /// Starts `demi shm-echo` on the pipes `names` (with `arguments`, on the server CPU).
    func startEcho(_ names: [String], _ arguments: [String] = []) throws -> Process {
        let peer = Process()
        peer.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        peer.arguments = ["shm-echo"] + names + arguments + (cpus.server >= 0 ? ["--cpu", "\(cpus.server)"] : [])
        try peer.run()
        return peer
    }

    /// Runs `body` on a catmem libOS (RING_SIZE etc. from the environment) with `pipes` fresh pipes whose far ends a
    /// `shm-echo` process serves (with `peerArguments`, on the server CPU; `shm-echo --plain-c`, catmem's ring format
    /// in plain C, if `plainCEcho`), this thread pinned to the client CPU, and one `size`-byte message from `sgaalloc`;
    /// afterwards frees the message, closes the pipes (end-of-file for the peer) and waits for the peer to exit.
    func withCatmemPeer<T>(pipes: Int, size: Int, peerArguments: [String] = [], plainCEcho: Bool = false,
                           _ body: (LibOS, [QDesc], ScatterGatherArray) throws -> T) throws -> T {
        let os = try LibOS(.sharedMemory, configuration: try Configuration.fromEnvironment())
        let base = pipeName()
        let names = (0..<pipes).map { "\(base)-\($0)" }
        let qds = try names.map { try os.createPipe($0) }
        let peer = try startEcho(names, peerArguments + (plainCEcho ? ["--plain-c"] : []))
        defer {
            for q in qds { try? os.close(q) }
            peer.waitUntilExit()
        }
        if cpus.client >= 0 { _ = cdemi_pin_to_cpu(cpus.client) }
        let msg = try os.sgaalloc(size)
        fillMessage(msg)
        defer { try? os.sgafree(msg) }
        return try body(os, qds, msg)
    }

    func catmem(size: Int, plainCEcho: Bool = false) throws -> (LatencySummary, Double) {
        let warmup = self.warmup, count = self.count   // read once (see below)
        return try withCatmemPeer(pipes: 1, size: size, plainCEcho: plainCEcho) { os, qds, msg in
            let qd = qds[0]
            var samples: [UInt64] = []
            samples.reserveCapacity(count)
            // The same loop as the C ring's client: one message in flight, the clock read before the push and once the
            // reply is in hand, spinning in between (a wait with no timeout reads no clock; if the echo process dies,
            // the pop fails with ECONNRESET instead of hanging). Freeing the reply comes after the second reading, as the
            // C client's buffer needs no freeing.
            // Options are read once, above: each read of an @Option property goes through ArgumentParser's generic storage
            // (a metadata lookup of about 200 instructions), which would be counted as the libOS's time.
            var t0 = now()
            for i in 0..<(warmup + count) {
                if i == warmup { t0 = now() }
                let start = now()
                _ = try os.wait(try os.push(qd, msg))
                let r = try os.wait(try os.pop(qd))
                let end = now()
                guard let sga = r.sga, sga.count == size else { throw r.error ?? Errno.ioError }
                try os.sgafree(sga)
                if i >= warmup { samples.append(end - start) }
            }
            let elapsed = Double(now() - t0) / 1e9
            return (LatencySummary(samples), Double(count) / elapsed)
        }
    }

    /// catmem's ring format with plain C at both ends (C's share of a catmem round trip).
    func catmemFormatBaseline(size: Int) throws -> LatencySummary {
        var samples = [UInt64](repeating: 0, count: count)
        let rc = samples.withUnsafeMutableBufferPointer {
            demi_baseline_catmem_pingpong(Int32(size), Int32(warmup), Int32(count), Self.plainRing, cpus.server,
                                          cpus.client, $0.baseAddress)
        }
        guard rc == 0 else { throw Errno(rawValue: rc) }
        return LatencySummary(samples)
    }

    /// A plain-C client on a pipe it creates in catmem's format, a catmem `shm-echo` process at the far end.
    func plainClientToCatmemEcho(size: Int) throws -> LatencySummary {
        let name = pipeName()
        guard let mapping = demi_baseline_catmem_create(name, Self.plainRing) else { throw Errno.current }
        let peer: Process
        do { peer = try startEcho([name]) } catch {
            demi_baseline_catmem_close(name, mapping, Self.plainRing)
            throw error
        }
        var samples = [UInt64](repeating: 0, count: count)
        let rc = samples.withUnsafeMutableBufferPointer {
            demi_baseline_catmem_client(mapping, Self.plainRing, Int32(size), Int32(warmup), Int32(count), cpus.client,
                                        $0.baseAddress)
        }
        demi_baseline_catmem_close(name, mapping, Self.plainRing)
        peer.waitUntilExit()
        guard rc == 0 else { throw Errno(rawValue: rc) }
        return LatencySummary(samples)
    }

    /// One-way streaming on catmem: `messages` pushes of `size` bytes to a sink process (`shm-echo --sink`), which
    /// answers with one 1-byte message once it has them all. Messages per second, first push to that answer.
    func catmemStream(size: Int, messages: Int) throws -> Double {
        try withCatmemPeer(pipes: 1, size: size, peerArguments: ["--sink", "\(messages)"]) { os, qds, msg in
            let qd = qds[0]
            // The first push waits until the sink has opened the pipe; time from the second on.
            _ = try os.wait(try os.push(qd, msg))
            let t0 = now()
            for _ in 1..<messages { _ = try os.wait(try os.push(qd, msg)) }
            let r = try os.wait(try os.pop(qd))
            let elapsed = now() - t0
            guard let done = r.sga, done.count == 1 else { throw r.error ?? Errno.ioError }
            try os.sgafree(done)
            return Double(messages - 1) * 1e9 / Double(elapsed)
        }
    }

    /// Many clients on catmem: `pipes` pipes to one echo process (`shm-echo` with several names, waiting on all at
    /// once), one `size`-byte message in flight on each, this process waiting on all pops at once. Messages per
    /// second over `count` echoed messages.
    func catmemMany(pipes: Int, size: Int) throws -> Double {
        let count = self.count, warmup = self.warmup
        return try withCatmemPeer(pipes: pipes, size: size) { os, qds, msg in
            var pops: [QToken] = []
            for q in qds {
                _ = try os.wait(try os.push(q, msg))
                pops.append(try os.pop(q))
            }
            var done = 0
            var t0 = now()
            while done < warmup + count {
                let (k, r) = try os.waitAny(pops)
                guard let sga = r.sga, sga.count == size else { throw r.error ?? Errno.ioError }
                try os.sgafree(sga)
                done += 1
                if done == warmup { t0 = now() }
                _ = try os.wait(try os.push(qds[k], msg))
                pops[k] = try os.pop(qds[k])
            }
            return Double(count) * 1e9 / Double(now() - t0)
        }
    }

    /// The C ring pair's one-way streaming, the same way (messages per second).
    func shmBaselineStream(size: Int, messages: Int) throws -> Double {
        var elapsed: UInt64 = 0
        let rc = demi_baseline_shm_stream(Int32(size), Int32(messages), cpus.server, cpus.client, &elapsed)
        guard rc == 0 else { throw Errno(rawValue: rc) }
        return Double(messages) * 1e9 / Double(elapsed)
    }

    func baselineStream(size: Int) throws -> Double {
        var elapsed: UInt64 = 0
        let rc = demi_baseline_tcp_stream(Int32(size), UInt64(streamBytes), cpus.server, cpus.client, &elapsed)
        guard rc == 0 else { throw Errno(rawValue: rc) }
        return Double(streamBytes) * 8 / Double(elapsed)
    }

    func catnapStream(size: Int) throws -> Double {
        let (addr, stop) = try startServer(proto: .tcp, sink: true)
        defer { stop() }
        if cpus.client >= 0 { _ = cdemi_pin_to_cpu(cpus.client) }
        let os = try makeLibOS(.kernelSockets)
        let qd = try os.socket(.inet, .stream)
        let t0 = now()
        if let e = try os.wait(try os.connect(qd, to: addr)).error { throw e }
        let msg = try os.sgaalloc(size)
        fillMessage(msg)
        var pending: [QToken] = []
        var sent = 0
        while sent < streamBytes || !pending.isEmpty {
            while sent < streamBytes && pending.count < 16 {
                pending.append(try os.push(qd, msg))
                sent += size
            }
            let (i, r) = try os.waitAny(pending)
            if let e = r.error { throw e }
            pending.remove(at: i)
        }
        try os.sgafree(msg)
        // Half-close and wait for the sink to see everything (it closes after end-of-file).
        let fin = try os.pop(qd)
        try? os.close(qd)
        _ = try? os.wait(fin, timeout: .zero)
        let elapsed = now() - t0
        return Double(streamBytes) * 8 / Double(elapsed)
    }
}

struct MicroRow: Codable {
    var name: String
    var ns: Double
    var ratio: Double?
}

extension Bench {
    func microbenchmarks() throws -> [MicroRow] {
        func med(_ runs: Int, _ body: () throws -> Double) rethrows -> Double {
            var v: [Double] = []
            for _ in 0..<runs { v.append(try body()) }
            v.sort()
            return v[v.count / 2]
        }
        // Scheduler: wake one coroutine and run the pass that polls it.
        let s = Scheduler()
        let task = try s.spawnBackground(tag: 1)
        var polls = 0
        let n = 2_000_000
        let wake = med(reps) {
            let t0 = now()
            for _ in 0..<n {
                s.wake(task)
                s.runReady { polls &+= Int($0) &+ 1 }
            }
            return Double(now() - t0) / Double(n)
        }
        if polls == -1 { print(polls) }
        // Buffers: allocate and free a 64-byte buffer from the pool.
        let pool = BufferPool()
        let alloc = med(reps) {
            let t0 = now()
            for _ in 0..<n {
                let b = pool.allocate(size: 64)
                b?.release()
            }
            return Double(now() - t0) / Double(n)
        }
        // The wire formats and buffer slices (Micro.swift).
        let slice = med(reps) { DatapathMicro.slice(n, now: now) }
        let emit = med(reps) { DatapathMicro.emit(n / 4, now: now) }
        let parse = med(reps) { DatapathMicro.parse(n / 4, now: now) }
        // One thread: push a datagram and pop it on catnap, against the same two system calls in C.
        let rounds = 50_000
        let os = try makeLibOS(.kernelSockets)
        let a = try os.socket(.inet, .datagram)
        try os.bind(a, to: SocketAddressV4(.loopback, 0))
        let b = try os.socket(.inet, .datagram)
        try os.bind(b, to: SocketAddressV4(.loopback, 0))
        let to = try os.localAddress(a)
        func napRound() throws -> Double {
            let t0 = now()
            for _ in 0..<rounds {
                let sga = try os.sgaalloc(64)
                let pt = try os.pushTo(b, sga, to: to)
                try os.sgafree(sga)
                _ = try os.wait(pt)
                let r = try os.wait(try os.pop(a))
                try os.sgafree(r.sga!)
            }
            return Double(now() - t0) / Double(rounds)
        }
        // C and catnap runs alternate, and the libOS's own time is the median of the per-pair differences, so a
        // slow phase of the machine does not land on one side only.
        var cs: [Double] = [], naps: [Double] = [], diffs: [Double] = [], ratios: [Double] = []
        for _ in 0..<reps {
            let ci = demi_baseline_udp_local_round(Int32(rounds))
            let ni = try napRound()
            cs.append(ci); naps.append(ni); diffs.append((ni - ci) / 2); ratios.append(ni / ci)
        }
        func median(_ v: [Double]) -> Double { v.sorted()[v.count / 2] }
        let c = median(cs), nap = median(naps)
        return [
            MicroRow(name: "scheduler wake + poll", ns: wake, ratio: nil),
            MicroRow(name: "buffer allocate + free (64 B)", ns: alloc, ratio: nil),
            MicroRow(name: "buffer slice: view of 64 B + release", ns: slice, ratio: nil),
            MicroRow(name: "wire emit: Ethernet + IPv4 + TCP headers, both checksums (64 B payload)", ns: emit, ratio: nil),
            MicroRow(name: "wire parse, checked: Ethernet + IPv4 + TCP, both checksums verified (64 B payload)", ns: parse,
                     ratio: nil),
            MicroRow(name: "C sendto + recvfrom, one thread", ns: c, ratio: 1),
            MicroRow(name: "catnap sgaalloc + pushTo + wait + pop + wait + sgafree", ns: nap, ratio: median(ratios)),
            MicroRow(name: "catnap libOS time per I/O ((catnap - C) / 2)", ns: median(diffs), ratio: nil),
        ]
    }
}

/// Receives and discards everything (the far end of the stream test).
enum SinkServer {
    static func run(_ os: LibOS, address: SocketAddressV4, stop: StopFlag,
                    ready: @Sendable (SocketAddressV4) -> Void) throws {
        let l = try os.socket(.inet, .stream)
        try os.bind(l, to: address)
        try os.listen(l, backlog: 8)
        ready(try os.localAddress(l))
        var token = try os.accept(l)
        var conn: QDesc?
        while !stop.isSet {
            guard let r = try waitOrIdle(os, token, .milliseconds(50)) else { continue }
            if case .accepted(let c, _) = r.value {
                conn = c
                token = try os.pop(c)
                continue
            }
            guard let sga = r.sga, sga.count > 0, let c = conn else {
                if let s = r.sga { try os.sgafree(s) }
                break
            }
            try os.sgafree(sga)
            token = try os.pop(c)
        }
        if let c = conn { try? os.close(c) }
        try? os.close(l)
    }
}

// MARK: - inetstack over the in-memory link

/// One figure of the inetstack section.
struct InetRow: Codable {
    var name: String
    var latency: LatencySummary?
    var nsPerIO: Double?
    var gbitPerSecond: Double?
}

/// catnap's figures from the same run, shown next to the inetstack's.
struct CatnapFigures {
    var tcp: LatencySummary?
    var udp: LatencySummary?
    var perIO: Double?
    var streamGbit: Double?
}

typealias BareInetPair = InetPair<InMemoryLink.Endpoint>

extension Bench {
    /// Two user-space stacks in this process over `InMemoryLink`, one thread polling both (default TCP settings).
    func makeInetPair() -> BareInetPair {
        BareInetPair(tcp: TCPConfiguration(), checksumOffload: !inetSoftwareChecksums) { ep, _ in ep }
    }

    func inetstack() throws -> [InetRow] {
        var tcp: [LatencySummary] = [], udp: [LatencySummary] = []
        var tcpIO: [Double] = [], udpIO: [Double] = [], bulk: [Double] = [], many: [Double] = []
        for _ in 0..<reps {
            if inetTests.contains("tcp") {
                let (t, tn) = try inetTCPEcho(size: 64)
                tcp.append(t)
                tcpIO.append(tn)
            }
            if inetTests.contains("udp") {
                let (u, un) = try inetUDPEcho(size: 64)
                udp.append(u)
                udpIO.append(un)
            }
            if inetTests.contains("bulk") { bulk.append(try inetBulk()) }
            if inetTests.contains("many") { many.append(try inetManyClients(connections: 16, messages: inetCount)) }
        }
        var rows: [InetRow] = []
        if !tcp.isEmpty {
            rows.append(InetRow(name: "tcp echo 64 B", latency: LatencySummary.median(tcp), nsPerIO: median(tcpIO)))
        }
        if !udp.isEmpty {
            rows.append(InetRow(name: "udp echo 64 B", latency: LatencySummary.median(udp), nsPerIO: median(udpIO)))
        }
        if !many.isEmpty {
            rows.append(InetRow(name: "tcp echo 64 B, 16 connections, one message in flight on each", nsPerIO: median(many)))
        }
        for size in inetSizes where size > 0 && size != 64 {
            for proto in ["tcp", "udp"] where inetTests.contains(proto) {
                let n = proto == "udp" ? min(size, 65507) : size
                var lat: [LatencySummary] = [], io: [Double] = []
                for _ in 0..<reps {
                    let (l, c) = proto == "udp" ? try inetUDPEcho(size: n) : try inetTCPEchoSized(size: n)
                    lat.append(l)
                    io.append(c)
                }
                rows.append(InetRow(name: "\(proto) echo \(n >= 1024 && n % 1024 == 0 ? "\(n / 1024) KiB" : "\(n) B")", latency: LatencySummary.median(lat),
                                    nsPerIO: median(io)))
            }
        }
        if !bulk.isEmpty {
            // Per segment: a 1448-byte segment (MSS 1460 less the timestamps) sent by one stack and received by the
            // other, their ACKs included.
            let g = median(bulk)
            rows.append(InetRow(name: "tcp bulk, one direction, MSS 1460 (CPU ns column: per segment sent and received)",
                                nsPerIO: g > 0 ? 1448 * 8 / g : nil, gbitPerSecond: g))
        }
        return rows
    }

    func printInet(_ rows: [InetRow], catnap: CatnapFigures?) throws {
        print("")
        print("inetstack over the in-memory link: two StackLibOS instances in this process joined by InMemoryLink "
              + "(each frame copied into the peer's pool; checksums " + (inetSoftwareChecksums ? "computed in software" : "offloaded to the link, as to a NIC") + "), one thread polling both, default TCP settings; median of \(reps) runs of "
              + "\(inetCount) round trips / \(inetBytes >> 20) MiB.")
        print("Round trip = client push + pop, server pop + push (4 I/Os); CPU ns per I/O = this thread's CPU time / (4 x round "
              + "trips), both stacks' work included (goal: <= 250 ns); bulk Gbit/s per second of this thread's CPU time.")
        print("catnap's round trip is two threads on two CPUs over the kernel's loopback (its latency includes the "
              + "kernel and the cross-core wake-up); its per-I/O figure is the libOS's own time on one thread "
              + "(single-thread pushTo+pop minus the same C system calls, halved); its stream is 64 KiB pushes to a "
              + "sink on the other CPU.")
        print("| system | test | p50 | p99 | CPU ns per I/O | Gbit/s |")
        print("|---|---|---:|---:|---:|---:|")
        func f(_ v: Double?, _ fmt: String) -> String { v.map { String(format: fmt, $0) } ?? "-" }
        for r in rows {
            print("| inetstack (1 thread) | \(r.name) | \(r.latency.map { formatNs($0.p50) } ?? "-") | "
                  + "\(r.latency.map { formatNs($0.p99) } ?? "-") | \(f(r.nsPerIO, "%.0f")) | "
                  + "\(f(r.gbitPerSecond, "%.2f")) |")
        }
        if let c = catnap {
            if let t = c.tcp { print("| catnap (2 threads, kernel loopback) | tcp echo 64 B | \(formatNs(t.p50)) | \(formatNs(t.p99)) | - | - |") }
            if let u = c.udp { print("| catnap (2 threads, kernel loopback) | udp echo 64 B | \(formatNs(u.p50)) | \(formatNs(u.p99)) | - | - |") }
            print("| catnap (1 thread) | libOS time per I/O (udp) | - | - | \(f(c.perIO, "%.0f")) | - |")
            print("| catnap (2 threads, kernel loopback) | tcp stream, 64 KiB pushes | - | - | - | \(f(c.streamGbit, "%.2f")) |")
        } else {
            print("(catnap baseline skipped: --inet-only)")
        }
    }

    /// 64-byte TCP echo: the client pushes and pops, the server pops and pushes the same buffer back.
    func inetTCPEcho(size: Int) throws -> (LatencySummary, Double) {
        let warmup = self.warmup, inetCount = self.inetCount  // read once (see the catmem client)
        let net = makeInetPair()
        let (server, client) = try net.connectTCP()
        let a = net.a, b = net.b
        let msg = net.message(b.pool, size: size)
        defer { try? b.pool.freeFromApplication(msg.head!) }
        var samples = [UInt64](repeating: 0, count: inetCount)
        var serverPop = try a.pop(server)
        var serverPush: QToken?
        var t = Instant.now()
        var cpu0: Int64 = 0
        for i in 0..<(warmup + inetCount) {
            if i == warmup { cpu0 = threadCPUNanoseconds() }
            let start = t
            let push = try b.push(client, msg)
            let clientPop = try b.pop(client)
            // Server: one pass receives the segment and completes the pop.
            let r = take(serverPop, of: a, peer: b, &t)
            if let p = serverPush { try drain(net, a, p, t) }  // acknowledged by the segment just received
            guard let got = r.sga else { throw r.error ?? Errno.ioError }
            serverPush = try a.push(server, got)
            try a.pool.freeFromApplication(got.head!)
            serverPop = try a.pop(server)
            // Client: one pass receives the echo (which acknowledges the push).
            let e = take(clientPop, of: b, peer: a, &t)
            guard let back = e.sga, back.count == size else { throw e.error ?? Errno.ioError }
            try b.pool.freeFromApplication(back.head!)
            try drain(net, b, push, t)
            t = Instant.now()
            if i >= warmup { samples[i - warmup] = UInt64(t.rawValue - start.rawValue) }
        }
        let cpu = Double(threadCPUNanoseconds() - cpu0)
        return (LatencySummary(samples), cpu / Double(4 * inetCount))
    }

    /// Takes `qt` of `os`: polls `os` (whose pass completes it once the frame is in), then `peer`, reading the clock
    /// only when neither pass did.
    @inline(__always)
    func take(_ qt: QToken, of os: StackLibOS<InMemoryLink.Endpoint>, peer: StackLibOS<InMemoryLink.Endpoint>,
              _ t: inout Instant) -> QResult {
        while true {
            if let r = os.scheduler.take(qt) { return r }
            os.poll(now: t)
            if let r = os.scheduler.take(qt) { return r }
            peer.poll(now: t)
            t = Instant.now()
        }
    }

    /// Takes `qt` of `os`, polling both stacks until it completes.
    @inline(__always)
    func drain(_ net: BareInetPair, _ os: StackLibOS<InMemoryLink.Endpoint>, _ qt: QToken, _ t: Instant) throws {
        var r = os.scheduler.take(qt)
        while r == nil {
            net.poll(Instant.now())
            r = os.scheduler.take(qt)
        }
        if let e = r!.error { throw e }
    }

    /// 64-byte UDP echo, the same way.
    func inetUDPEcho(size: Int) throws -> (LatencySummary, Double) {
        let warmup = self.warmup, inetCount = self.inetCount  // read once (see the catmem client)
        let net = makeInetPair()
        let a = net.a, b = net.b
        let server = try a.socket(domain: .inet, type: .datagram)
        try a.bind(server, to: SocketAddressV4(.any, 7))
        let client = try b.socket(domain: .inet, type: .datagram)
        let to = SocketAddressV4(BareInetPair.ipA, 7)
        let msg = net.message(b.pool, size: size)
        defer { try? b.pool.freeFromApplication(msg.head!) }
        var samples = [UInt64](repeating: 0, count: inetCount)
        var serverPop = try a.pop(server)
        var t = Instant.now()
        var cpu0: Int64 = 0
        for i in 0..<(warmup + inetCount) {
            if i == warmup { cpu0 = threadCPUNanoseconds() }
            let start = t
            try drain(net, b, try b.pushTo(client, msg, to: to), t)
            let clientPop = try b.pop(client)
            let r = take(serverPop, of: a, peer: b, &t)
            guard let got = r.sga, let from = got.address else { throw r.error ?? Errno.ioError }
            try drain(net, a, try a.pushTo(server, got, to: from), t)
            try a.pool.freeFromApplication(got.head!)
            serverPop = try a.pop(server)
            let e = take(clientPop, of: b, peer: a, &t)
            guard let back = e.sga, back.count == size else { throw e.error ?? Errno.ioError }
            try b.pool.freeFromApplication(back.head!)
            t = Instant.now()
            if i >= warmup { samples[i - warmup] = UInt64(t.rawValue - start.rawValue) }
        }
        let cpu = Double(threadCPUNanoseconds() - cpu0)
        return (LatencySummary(samples), cpu / Double(4 * inetCount))
    }

    /// Bulk TCP one direction (MTU 1500: MSS 1460, 1448 bytes of payload with the timestamp option), in Gbit/s.
    func inetBulk() throws -> Double {
        let net = makeInetPair()
        let (server, client) = try net.connectTCP()
        _ = try net.bulk(server: server, client: client, bytes: 8 << 20)  // warm-up: slow start, pools
        let cpu0 = threadCPUNanoseconds()
        let r = try net.bulk(server: server, client: client, bytes: inetBytes)
        // Per second of this thread's CPU time: the transfer is CPU-bound on one thread, and other processes on a
        // shared machine would otherwise count against it.
        return Double(r.bytes) * 8 / Double(threadCPUNanoseconds() - cpu0)
    }
}

/// CPU time consumed by the calling thread, in nanoseconds.
func threadCPUNanoseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}
