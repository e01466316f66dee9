import ArgumentParser
import DemiBuffers
import DemiCore
import DemiDevices
import DemiInet
import DemiRuntime
import DemiStackLibOS
import Foundation

// MARK: - Two user-space stacks in one process

/// Two `StackLibOS` instances joined by an `InMemoryLink`, polled in turn on the calling thread (no privileges, no
/// kernel). `a` is the server (198.18.0.1), `b` the client (198.18.0.2). `D` wraps each link endpoint: the bare
/// endpoint for benchmarks, a `FaultInjector` for impaired runs.
final class InetPair<D: PhysicalLayer> {
    let poolA = BufferPool()
    let poolB = BufferPool()
    let link: InMemoryLink
    let a: StackLibOS<D>
    let b: StackLibOS<D>
    static var ipA: IPv4Address { IPv4Address(198, 18, 0, 1) }
    static var ipB: IPv4Address { IPv4Address(198, 18, 0, 2) }

    /// `checksumOffload`: the link claims to verify and fill in IPv4, UDP and TCP checksums, as a NIC would (the stack
    /// then computes none); off, every checksum is computed and verified in software.
    init(tcp: TCPConfiguration, mtu: Int = 1500, capacity: Int = 4096, checksumOffload: Bool = false,
         wrap: (InMemoryLink.Endpoint, _ isA: Bool) -> D) {
        let offload: ChecksumOffload = checksumOffload ? [.ipv4, .udp, .tcp] : []
        link = InMemoryLink(poolA: poolA, poolB: poolB, capacity: capacity,
                            capabilities: DeviceCapabilities(mtu: mtu, receiveOffload: offload,
                                                             transmitOffload: offload))
        let macA = MACAddress(2, 0, 0, 0, 0, 1), macB = MACAddress(2, 0, 0, 0, 0, 2)
        var ca = StackConfiguration(localIPv4: Self.ipA, localMAC: macA)
        var cb = StackConfiguration(localIPv4: Self.ipB, localMAC: macB)
        ca.tcp = tcp
        cb.tcp = tcp
        ca.staticARP = [Self.ipB: macB]
        cb.staticARP = [Self.ipA: macA]
        ca.gratuitousARP = false
        cb.gratuitousARP = false
        a = StackLibOS(device: wrap(link.a, true), pool: poolA, configuration: ca)
        b = StackLibOS(device: wrap(link.b, false), pool: poolB, configuration: cb)
    }

    /// One pass of each stack.
    @inline(__always)
    func poll(_ now: Instant) {
        a.poll(now: now)
        b.poll(now: now)
    }

    /// Polls both stacks until `done` holds; false after `timeout`.
    @discardableResult
    func run(timeout: Duration, until done: () throws -> Bool) rethrows -> Bool {
        let deadline = Instant.now() + timeout
        while try !done() {
            let now = Instant.now()
            if now > deadline { return false }
            poll(now)
        }
        return true
    }

    func wait(_ os: StackLibOS<D>, _ qt: QToken, timeout: Duration = .seconds(10)) throws -> QResult {
        var r: QResult?
        run(timeout: timeout) {
            r = os.scheduler.take(qt)
            return r != nil
        }
        guard let r else { throw Errno.timedOut }
        if let e = r.error { throw e }
        return r
    }

    /// Opens a TCP connection from b (client) to a (server): (server side on a, client side on b).
    func connectTCP(port: UInt16 = 80) throws -> (server: QDesc, client: QDesc) {
        let l = try a.socket(domain: .inet, type: .stream)
        try a.bind(l, to: SocketAddressV4(.any, port))
        try a.listen(l, backlog: 8)
        let acceptQT = try a.accept(l)
        let c = try b.socket(domain: .inet, type: .stream)
        _ = try wait(b, try b.connect(c, to: SocketAddressV4(Self.ipA, port)))
        guard case .accepted(let s, _) = try wait(a, acceptQT).value else { throw Errno.ioError }
        try a.close(l)
        return (s, c)
    }

    /// A buffer of `size` bytes owned by the application (what `sgaalloc` gives).
    func message(_ pool: BufferPool, size: Int) -> ScatterGatherArray {
        let m = pool.allocate(size: size)!
        memset(m.baseAddress, 0x5A, size)
        pool.giveToApplication(m)
        return ScatterGatherArray(head: m)
    }

    var bulkPop: QToken?

    /// One direction of bulk TCP, b (client) to a (server): the sender keeps `inFlight` pushes of one `chunk`-byte
    /// buffer outstanding (each push takes its own references, so the same buffer is pushed again and again), the
    /// receiver keeps one pop armed and frees each segment it gets. Returns the bytes delivered and the elapsed time;
    /// stops at `bytes` or at `timeout`.
    func bulk(server: QDesc, client: QDesc, bytes: Int, chunk: Int = 65536, inFlight: Int = 16,
              timeout: Duration = .seconds(60)) throws -> (bytes: Int, ns: UInt64, completed: Bool) {
        let msg = message(b.pool, size: chunk)
        defer { try? b.pool.freeFromApplication(msg.head!) }
        var pushes = [QToken](repeating: QToken(rawValue: 0), count: inFlight)
        var first = 0, outstanding = 0
        var sent = 0, received = 0
        var pop = try bulkPop ?? a.pop(server)
        bulkPop = nil
        let t0 = Instant.now()
        let deadline = t0 + timeout
        var completed = true
        while received < bytes {
            while outstanding < inFlight && sent < bytes {
                pushes[(first + outstanding) % inFlight] = try b.push(client, msg)
                outstanding += 1
                sent += chunk
            }
            let now = Instant.now()
            if now > deadline { completed = false; break }
            b.poll(now: now)
            a.poll(now: now)
            while outstanding > 0, let r = b.scheduler.take(pushes[first]) {
                if let e = r.error { throw e }
                first = (first + 1) % inFlight
                outstanding -= 1
            }
            while let r = a.scheduler.take(pop) {
                guard let sga = r.sga else { throw r.error ?? Errno.ioError }
                received += sga.count
                try a.pool.freeFromApplication(sga.head!)
                pop = try a.pop(server)
            }
        }
        let ns = UInt64((Instant.now() - t0).nanoseconds)
        // Let the last pushes complete so the connection can be reused or closed cleanly.
        run(timeout: .seconds(2)) {
            while outstanding > 0, b.scheduler.take(pushes[first]) != nil {
                first = (first + 1) % inFlight
                outstanding -= 1
            }
            return outstanding == 0
        }
        bulkPop = pop  // still armed: a pop cannot be withdrawn, so the next transfer on this pair reuses it
        return (received, ns, completed)
    }
}

// MARK: - demi goodput

struct Goodput: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Bulk TCP goodput between two user-space stacks over an impaired in-memory link.",
        discussion: """
            Runs one direction of bulk TCP between two StackLibOS instances in this process, joined by an \
            InMemoryLink whose both ends go through a FaultInjector with each profile, for each congestion control \
            algorithm, and prints (or writes with --output) a Markdown table: goodput, retransmissions, timeouts. \
            TCP runs with the short timers the simulated-network tests use (RTO minimum 5 ms, initial RTO 50 ms, \
            delayed ACK 1 ms), since the simulated wire has microsecond round trips. No privileges needed.
            """)

    @Option(help: "Bytes transferred per case.") var bytes = 16 << 20
    @Option(help: "Give up on a case after this many seconds (goodput is then over what arrived).") var timeout = 20.0
    @Option(parsing: .upToNextOption, help: "Impairment profiles (FaultProfile syntax; \"\" is a clean link).")
    var profiles: [String] = ["", "loss=1%", "loss=5%", "loss=20%", "reorder=5%", "duplicate=5%", "corrupt=1%",
                              "delay=2ms,jitter=1ms"]
    @Option(parsing: .upToNextOption, help: "Congestion control algorithms.") var algorithms = ["cubic", "newreno"]
    @Option(help: "Random seed of the fault injectors.") var seed: UInt64 = 42
    @Option(help: "Write the Markdown report to this file.") var output: String?

    struct Row {
        var profile: String
        var algorithm: String
        var bytes: Int
        var ns: UInt64
        var completed: Bool
        var retransmissions: Int
        var fastRetransmits: Int
        var timeouts: Int
        var gbit: Double { Double(bytes) * 8 / Double(max(ns, 1)) }
    }

    static func shortTimers(_ algorithm: CongestionAlgorithm) -> TCPConfiguration {
        var t = TCPConfiguration()
        t.retransmission.minimum = .milliseconds(5)
        t.retransmission.initial = .milliseconds(50)
        t.delayedACK = .milliseconds(1)
        t.timeWait = .milliseconds(50)
        t.congestionControl = algorithm
        return t
    }

    func measure(profile: String, algorithm: CongestionAlgorithm) throws -> Row {
        var p = try FaultProfile(parsing: profile.isEmpty ? "loss=0" : profile)
        p.seed = seed
        let net = InetPair<FaultInjector<InMemoryLink.Endpoint>>(tcp: Self.shortTimers(algorithm)) { ep, isA in
            var q = p
            if isA { q.seed = p.seed &+ 0x9E37_79B9 }
            return FaultInjector(ep, profile: q)
        }
        let (server, client) = try net.connectTCP()
        let r = try net.bulk(server: server, client: client, bytes: bytes,
                             timeout: .nanoseconds(Int64(timeout * 1e9)))
        let s = net.b.tcpStatistics(client) ?? TCPConnectionStatistics()
        try? net.b.close(client)
        try? net.a.close(server)
        net.run(timeout: .milliseconds(200)) { false }
        return Row(profile: profile, algorithm: algorithm.rawValue, bytes: r.bytes, ns: r.ns, completed: r.completed,
                   retransmissions: s.retransmissions, fastRetransmits: s.fastRetransmits, timeouts: s.timeouts)
    }

    func run() throws {
        var rows: [Row] = []
        let algs = try algorithms.map { name throws -> CongestionAlgorithm in
            guard let a = CongestionAlgorithm(rawValue: name.lowercased()) else {
                throw ValidationError("unknown algorithm \(name) (cubic or newreno)")
            }
            return a
        }
        for profile in profiles {
            for alg in algs {
                let row = try measure(profile: profile, algorithm: alg)
                rows.append(row)
                FileHandle.standardError.write(Data(
                    "goodput: \(profile.isEmpty ? "clean" : profile) \(alg.rawValue): \(String(format: "%.1f", row.gbit * 1000)) Mbit/s\n".utf8))
            }
        }
        let report = markdown(rows)
        if let output {
            try report.write(toFile: output, atomically: true, encoding: .utf8)
        }
        print(report, terminator: "")
    }

    func markdown(_ rows: [Row]) -> String {
        var s = "# Goodput over an impaired link\n\n"
        let date = ISO8601DateFormatter().string(from: Date())
        s += "Generated by `scripts/goodput.sh` (`demi goodput --bytes \(bytes) --timeout \(timeout) --seed \(seed)`) on "
        s += "\(date): \(machine()).\n\n"
        s += """
            One direction of bulk TCP between two user-space stacks (`StackLibOS`) in one process, joined by an \
            `InMemoryLink` (MTU 1500, MSS 1460 less 12 bytes of timestamp option), polled in turn by one thread. \
            Both link endpoints go through a `FaultInjector` with the profile (each direction with its own seed), so \
            ACKs are impaired too. The sender keeps 16 pushes of 64 KiB outstanding; the receiver pops and frees every \
            segment. Each case moves \(bytes >> 20) MiB (or stops after \(timeout) s; then goodput is over what arrived).

            **TCP runs with short timers**, the ones the simulated-network tests use, because the simulated wire has \
            microsecond round trips: minimum RTO 5 ms, initial RTO 50 ms, delayed ACK 1 ms, TIME-WAIT 50 ms. With \
            Linux's 200 ms minimum RTO, timeouts would dominate the lossy rows. SACK and timestamps are on (defaults).

            Goodput is application payload delivered per second of wall-clock time, with both stacks, the link copy and \
            the fault injector on the same core, so the clean row is a CPU-bound figure (see `demi bench` for the clean \
            one without the injector). Retransmissions and timeouts are the sender's counters (fast retransmits among \
            the retransmissions in parentheses).


            """
        s += "| profile | algorithm | goodput (Mbit/s) | MiB moved | time (s) | retransmissions (fast) | timeouts |\n"
        s += "|---|---|---:|---:|---:|---:|---:|\n"
        for r in rows {
            s += "| \(r.profile.isEmpty ? "clean" : "`\(r.profile)`") | \(r.algorithm) | "
            s += String(format: "%.1f", r.gbit * 1000) + (r.completed ? "" : " (timed out)")
            s += " | \(String(format: "%.1f", Double(r.bytes) / 1048576)) | \(String(format: "%.2f", Double(r.ns) / 1e9))"
            s += " | \(r.retransmissions) (\(r.fastRetransmits)) | \(r.timeouts) |\n"
        }
        return s
    }

    func machine() -> String {
        var cpu = "unknown CPU"
        if let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
           let line = info.split(separator: "\n").first(where: { $0.hasPrefix("model name") }),
           let name = line.split(separator: ":", maxSplits: 1).last {
            cpu = name.trimmingCharacters(in: .whitespaces)
        }
        var u = utsname()
        uname(&u)
        let release = withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        return "\(ProcessInfo.processInfo.activeProcessorCount) vCPUs (\(cpu)), kernel \(release)"
    }
}
