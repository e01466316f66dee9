import ArgumentParser
import CDemiLinux
import Demikernel
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
        abstract: "Bulk TCP goodput between two user-space stacks over an impaired in-memory link, or between two "
            + "processes on any libOS (--sink, --source).",
        discussion: """
            Runs one direction of bulk TCP between two StackLibOS instances in this process, joined by an \
            InMemoryLink whose both ends go through a FaultInjector with each profile, for each congestion control \
            algorithm, and prints (or writes with --output) a Markdown table: goodput, retransmissions, timeouts. \
            TCP runs with the short timers the simulated-network tests use (RTO minimum 5 ms, initial RTO 50 ms, \
            delayed ACK 1 ms), since the simulated wire has microsecond round trips. No privileges needed.

            With --sink or --source it is one end of a bulk transfer between two processes over the libOS from \
            --libos or LIBOS (catnap: the kernel's TCP; catpowder: our stack on a real link), so any pair of \
            stacks can be measured against each other (scripts/bench-catpowder.sh):
              demi goodput --sink 198.18.78.1:5001 --bytes 268435456 --cpu 1
              demi goodput --source 198.18.78.1:5001 --bytes 268435456 --cpu 0
            The sink accepts one connection, pops and frees until end of file (or --bytes), and prints the goodput \
            from the first byte received to the last; the source connects, keeps --in-flight pushes of one \
            --chunk-byte buffer outstanding until --bytes are sent, closes, and prints its own view.
            """)

    @OptionGroup var libos: LibOSOptions
    @Option(help: "Sink mode: listen on this address, receive one connection's bytes, print the goodput.")
    var sink: SocketAddressV4?
    @Option(help: "Source mode: connect to this address and send --bytes.")
    var source: SocketAddressV4?
    @Option(help: "Source mode: bytes per push.") var chunk = 65536
    @Option(help: "Source mode: pushes kept outstanding.") var inFlight = 16
    @Option(help: "Sink and source modes: pin to this CPU.") var cpu: Int?

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

    func validate() throws {
        if sink != nil && source != nil { throw ValidationError("--sink and --source are exclusive") }
        guard bytes > 0, chunk > 0, inFlight > 0 else { throw ValidationError("bad --bytes, --chunk or --in-flight") }
    }

    func run() throws {
        if sink != nil || source != nil {
            if let cpu, cdemi_pin_to_cpu(Int32(cpu)) != 0 {
                FileHandle.standardError.write(Data("demi goodput: could not pin to CPU \(cpu)\n".utf8))
            }
            let os = try doing("starting the libOS") { try libos.make() }
            if let sink { try BulkEnds.sink(os, address: sink, limit: bytes) } else if let source {
                try BulkEnds.source(os, address: source, bytes: bytes, chunk: chunk, inFlight: inFlight)
            }
            printStatistics(os)
            return
        }
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

// MARK: - demi goodput --sink / --source: one end of a bulk transfer on any libOS

enum BulkEnds {
    static func gbit(_ bytes: Int, _ ns: Int64) -> Double { Double(bytes) * 8 / Double(max(ns, 1)) }

    /// Accepts one TCP connection on `address` and pops (freeing each array) until end of file or `limit` bytes.
    /// Prints "demi goodput: sink <libos> received N bytes in T s: G Gbit/s", timed from the first byte received to
    /// the last.
    static func sink(_ os: LibOS, address: SocketAddressV4, limit: Int) throws {
        let l = try doing("socket") { try os.socket(.inet, .stream) }
        try doing("bind \(address)") { try os.bind(l, to: address) }
        try doing("listen on \(address)") { try os.listen(l, backlog: 4) }
        print("demi goodput: sink \(os.name.codename) listening on \(address)")
        fflush(nil)
        let accepted = try doing("accept") { try os.wait(try os.accept(l)) }
        guard case .accepted(let qd, let peer) = accepted.value else {
            throw CommandError(description: "accept: \(accepted.error.map { "\($0)" } ?? "failed")")
        }
        var received = 0
        var first: Instant?
        var last = Instant.now()
        while received < limit {
            let r = try doing("pop") { try os.wait(try os.pop(qd), timeout: .seconds(60)) }
            guard let sga = r.sga else { throw CommandError(description: "pop: \(r.error.map { "\($0)" } ?? "failed")") }
            let n = sga.count
            try os.sgafree(sga)
            if n == 0 { break }  // end of file
            last = Instant.now()
            if first == nil { first = last }
            received += n
        }
        let ns = first.map { (last - $0).nanoseconds } ?? 0
        try? os.close(qd)
        try? os.close(l)
        print("demi goodput: sink \(os.name.codename) received \(received) bytes from \(peer) in "
              + String(format: "%.3f s: %.3f Gbit/s", Double(ns) / 1e9, gbit(received, ns)))
    }

    /// Connects to `address` (retrying for 10 s while it refuses), sends `bytes` with `inFlight` pushes of one
    /// `chunk`-byte buffer outstanding, waits for every push, closes, and prints the sender's view of the goodput
    /// (connection established to last push completed: on catnap a push completes when the kernel has the bytes, on
    /// our stack when the peer has acknowledged them).
    static func source(_ os: LibOS, address: SocketAddressV4, bytes: Int, chunk: Int, inFlight: Int) throws {
        let deadline = Instant.now() + .seconds(10)
        var conn: QDesc?
        while conn == nil {
            let qd = try os.socket(.inet, .stream)
            let r = try doing("connect to \(address)") { try os.wait(try os.connect(qd, to: address), timeout: .seconds(10)) }
            if r.error == nil { conn = qd; break }
            try? os.close(qd)
            guard Instant.now() < deadline, r.error == .connectionRefused || r.error == .timedOut else {
                throw CommandError(description: "connect to \(address): \(r.error!)")
            }
            usleep(50_000)
        }
        let qd = conn!
        let msg = try os.sgaalloc(chunk)
        for k in 0..<chunk { msg.head!.bytes[k] = UInt8(truncatingIfNeeded: k &* 131) }
        // The last push carries the remainder, so exactly `bytes` go out.
        let tail = bytes % chunk == 0 ? nil : try os.sgaalloc(bytes % chunk)
        var pushes = [QToken]()
        pushes.reserveCapacity(inFlight)
        var oldest = 0
        var sent = 0, done = 0
        let t0 = Instant.now()
        while done < bytes {
            while pushes.count - oldest < inFlight && sent < bytes {
                let last = bytes - sent < chunk
                pushes.append(try os.push(qd, last ? tail! : msg))
                sent += last ? bytes - sent : chunk
            }
            let r = try doing("push") { try os.wait(pushes[oldest], timeout: .seconds(60)) }
            if let e = r.error { throw CommandError(description: "push: \(e)") }
            oldest += 1
            done = oldest == pushes.count && sent == bytes ? bytes : done + chunk
            if oldest == pushes.count { pushes.removeAll(keepingCapacity: true); oldest = 0 }
        }
        let ns = (Instant.now() - t0).nanoseconds
        try os.sgafree(msg)
        if let tail { try os.sgafree(tail) }
        // Close and keep the libOS running a little, so a user-space stack gets its FIN out (and acknowledged).
        if let close = try? os.asyncClose(qd) { _ = try? os.wait(close, timeout: .seconds(2)) }
        let settle = Instant.now() + .milliseconds(100)
        while Instant.now() < settle { os.poll() }
        print("demi goodput: source \(os.name.codename) sent \(sent) bytes to \(address) in "
              + String(format: "%.3f s: %.3f Gbit/s", Double(ns) / 1e9, gbit(sent, ns)))
    }
}
