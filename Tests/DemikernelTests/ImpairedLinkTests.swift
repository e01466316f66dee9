import DemiBuffers
import DemiDevices
import Demikernel
import DemiStackLibOS
import Foundation
import TestHostFixture
import Testing
#if canImport(Glibc)
import Glibc
#endif

// MARK: - The bridge thread

/// An impairment bridge running on its own thread in namespace m of ``BridgedHosts``.
final class RunningBridge: @unchecked Sendable {
    let thread: BridgedHosts.NamespaceThread
    private let lock = NSLock()
    private var latest = ImpairmentBridgeStatistics()

    init(thread: BridgedHosts.NamespaceThread) { self.thread = thread }

    func publish(_ s: ImpairmentBridgeStatistics) { lock.withLock { latest = s } }

    /// The counters as last published (every few milliseconds while running, finally at stop).
    var statistics: ImpairmentBridgeStatistics { lock.withLock { latest } }

    /// Stops the thread (a join) and returns the final counters.
    @discardableResult
    func stop() throws -> ImpairmentBridgeStatistics {
        try thread.stop()
        return statistics
    }

    deinit { try? thread.stop() }
}

extension BridgedHosts {
    /// Opens a packet-socket device on each of namespace m's veth ends and runs an ``ImpairmentBridge`` between them
    /// on a background thread until ``RunningBridge/stop()``.
    ///
    /// - Parameters:
    ///   - a: the impairment of frames going to host a (sent by the kernel in b).
    ///   - b: the impairment of frames going to host b (sent by our stack in a).
    ///
    /// The thread polls while frames flow and sleeps in `poll(2)` on both sockets when idle (at most until the next
    /// held frame is due), so it leaves the CPU to the hosts on small machines.
    ///
    /// (In the test target rather than in `BridgedHosts.swift` because the `TestHostFixture` target does not depend
    /// on `DemiDevices`.)
    func startBridge(a: FaultProfile, b: FaultProfile) throws -> RunningBridge {
        let ifA = bridgeInterfaceA, ifB = bridgeInterfaceB
        let box = LockedBox<RunningBridge?>(nil)
        let ready = DispatchSemaphore(value: 0)
        let thread = try startThread(in: .m, name: "impairment-bridge") { t in
            let pool = BufferPool()
            var config = PacketSocketDevice.Configuration()
            config.receiveFrames = 8192
            config.transmitFrames = 4096
            let da = try PacketSocketDevice(interface: ifA, pool: pool, configuration: config)
            let db = try PacketSocketDevice(interface: ifB, pool: pool, configuration: config)
            let bridge = ImpairmentBridge(da, db, towardA: a, towardB: b)
            t.ready()
            ready.wait()
            let running = box.value!
            var fds = [pollfd(fd: da.fileDescriptor, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: db.fileDescriptor, events: Int16(POLLIN), revents: 0)]
            var idle = 0
            var lastPublish = Instant.now()
            while !t.stopRequested {
                let now = Instant.now()
                if now.rawValue - lastPublish.rawValue > 5_000_000 {
                    running.publish(bridge.statistics)
                    lastPublish = now
                }
                if bridge.poll(now: now) > 0 {
                    idle = 0
                    continue
                }
                idle += 1
                if idle < 64 { continue }
                // Sleep until a frame arrives, the next held frame is due, or 2 ms pass (to see a stop request).
                var wait: Int64 = 2_000_000
                if let due = bridge.nextDue { wait = min(wait, due.rawValue - now.rawValue) }
                if wait >= 1_000_000 { _ = poll(&fds, 2, Int32(wait / 1_000_000)) }
                else if wait > 0 { usleep(UInt32(max(50, wait / 1000))) }
            }
            // Let held frames out, then report.
            let end = Instant.now() + .milliseconds(100)
            while bridge.heldCount > 0 && Instant.now() < end { bridge.poll(now: Instant.now()) }
            running.publish(bridge.statistics)
        }
        let running = RunningBridge(thread: thread)
        box.value = running
        ready.signal()
        return running
    }
}

final class LockedBox<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: T
    init(_ v: T) { stored = v }
    var value: T {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}

// MARK: - Tests

/// catpowder (our stack on AF_PACKET and, with the AFXDP trait, on AF_XDP, in namespace a) and, with the DPDK trait,
/// catnip (our stack on DPDK's net_af_packet) against the Linux kernel's TCP (namespace b) through a user-space
/// impairment bridge (namespace m) that drops, reorders, duplicates, corrupts or delays frames in both directions.
/// The kernel client sends through our echo server and checks SHA-256 of what comes back. Needs root; skips otherwise
/// (CI requires it with DEMI_REQUIRE_ALL_SUITES=1, and .ci/run checks that every device and profile printed its
/// "impaired-link[...]" summary).
@Suite(.serialized) struct ImpairedLinkTests {
    typealias Kind = RawSocketTests.Kind

    /// The devices of this suite and of ``CaptureTests``: catpowder on AF_PACKET always, on AF_XDP with the AFXDP
    /// trait, and catnip (DPDK's net_af_packet, and its net_af_xdp, on the same veth0) with the DPDK trait.
    static var devices: [Kind] { RawSocketTests.devices }

    /// A short name for files of a device's case.
    static func tag(_ kind: Kind) -> String {
        switch kind {
        case .afPacket: "packet"
        case .afXDP: "xdp"
        case .dpdk: "dpdk"
        case .dpdkXDP: "dpdkxdp"
        }
    }

    static func start(_ hosts: BridgedHosts, _ kind: Kind = .afPacket) throws -> LibOS {
        var c = Configuration()
        c.rawSocketDevice = kind == .afXDP ? .afXDP : .afPacket
        c.interfaceName = hosts.interface
        c.localIPv4Address = IPv4Address(hosts.ourIP)
        c.arpRequestTimeoutSeconds = 0.2
        c.arpRequestRetries = 20
        #if DPDK
        // catnip: the first catnip of the process starts the EAL (as in RawSocketTests); later ones hot-plug a vdev.
        if kind.isCatnip { CatnipTestSupport.prepareEAL(&c, interface: hosts.interface, xdp: kind == .dpdkXDP) }
        #endif
        return try hosts.withNamespace(.a) { try LibOS(kind.isCatnip ? .dpdk : .rawSockets, configuration: c) }
    }

    /// Polls `os` until the child exits (or `timeout`); returns its exit code.
    static func pump(_ os: LibOS, until child: TestHosts.Spawned, timeout: Duration,
                     _ step: () throws -> Void = {}) rethrows -> Int32? {
        let end = Instant.now() + timeout
        while child.isRunning && Instant.now() < end {
            os.poll()
            try step()
        }
        if child.isRunning { child.kill() }
        return child.exitCode
    }


    /// The kernel-side client: sends `total` bytes (seeded random) through the echo on port 7200 while receiving,
    /// then compares SHA-256 of both streams. Prints "received ok seconds".
    static let bulkClient = """
        import socket, sys, threading, hashlib, random, time
        total = int(sys.argv[2])
        t0 = time.time()
        s = socket.create_connection((sys.argv[1], 7200), timeout=300)
        hs, hr = hashlib.sha256(), hashlib.sha256()
        got = [0]
        def rx():
            while got[0] < total:
                b = s.recv(1 << 20)
                if not b: break
                hr.update(b); got[0] += len(b)
        t = threading.Thread(target=rx); t.start()
        rng = random.Random(5); sent = 0
        while sent < total:
            c = rng.randbytes(min(1 << 16, total - sent))
            s.sendall(c); hs.update(c); sent += len(c)
        t.join()
        s.close()
        ok = got[0] == total and hs.hexdigest() == hr.hexdigest()
        print(got[0], ok, round(time.time() - t0, 2))
        sys.exit(0 if ok else 1)
        """

    /// The kernel's TCP and IP counters in a namespace (`/proc/net/snmp` and `/proc/net/netstat`), e.g.
    /// "Tcp.InCsumErrors", "TcpExt.TCPTimeouts".
    static func snmp(_ hosts: BridgedHosts, _ host: BridgedHosts.Host) -> [String: Int] {
        guard let (status, out) = try? hosts.run(in: host, ["cat", "/proc/net/snmp", "/proc/net/netstat"]), status == 0
        else { return [:] }
        var result: [String: Int] = [:]
        let lines = out.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        var i = 0
        while i + 1 < lines.count {
            let names = lines[i], values = lines[i + 1]
            if names.first == values.first, let proto = names.first?.dropLast() {
                for (n, v) in zip(names.dropFirst(), values.dropFirst()) { result["\(proto).\(n)"] = Int(v) }
                i += 2
            } else {
                i += 1
            }
        }
        return result
    }

    /// The same transfer with the kernel's TCP on both ends (a Python echo server on 198.18.N.1 in namespace a), for
    /// comparison (DEMI_IMPAIRED_KERNEL_BASELINE=1).
    func kernelBaseline(profile: String, total: Int) throws {
        guard let hosts = try BridgedHosts.create() else { return }
        defer { hosts.destroy() }
        var toA = try FaultProfile(parsing: profile)
        var toB = toA
        toA.seed = 11
        toB.seed = 12
        let bridge = try hosts.startBridge(a: toA, b: toB)
        defer { try? bridge.stop() }
        try #require(hosts.run(in: .a, ["ip", "addr", "add", hosts.ourIP + "/24", "dev", hosts.interface]).status == 0)
        let server = try hosts.spawn(in: .a, ["python3", "-c", """
            import socket
            t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            t.bind(('0.0.0.0', 7200)); t.listen(4)
            c, _ = t.accept()
            while True:
                b = c.recv(1 << 20)
                if not b: break
                c.sendall(b)
            c.close()
            """])
        defer { server.kill() }
        usleep(300_000)
        let log = "/tmp/demi-impaired-kernel-\(getpid()).log"
        defer { unlink(log) }
        let started = Instant.now()
        let child = try hosts.spawn(in: .b, ["python3", "-c", Self.bulkClient, hosts.ourIP, "\(total)"], outputPath: log)
        let end = Instant.now() + .seconds(900)
        while child.isRunning && Instant.now() < end { usleep(10_000) }
        if child.isRunning { child.kill() }
        let seconds = Double((Instant.now() - started).nanoseconds) / 1e9
        let b = try bridge.stop()
        let out = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        print("kernel baseline '\(profile)': \(total / 1_000_000) MB each way in \(String(format: "%.1f", seconds)) s; "
              + "client: \(out); bridge a->b \(b.aToB.frames) frames \(b.aToB.faults); b->a \(b.bToA.frames) frames \(b.bToA.faults)")
        #expect(child.exitCode == 0)
    }

    /// 100 MB each way for every profile, as the issue asks (10 % loss took minutes for 20 MB before RACK-style loss
    /// detection and tail loss probes; now about a minute for 100 MB). On every device, catnip included: its seven
    /// cases take about 2.5 minutes, like each catpowder device's.
    static let profiles: [(String, Int)] = [
        ("", 100_000_000),
        ("loss=1%", 100_000_000),
        ("loss=10%", 100_000_000),
        ("reorder=25%", 100_000_000),
        ("duplicate=5%", 100_000_000),
        ("corrupt=1%", 100_000_000),
        ("delay=10ms,jitter=5ms", 100_000_000),
    ]

    /// (device, profile, bytes each way).
    static var cases: [(Kind, String, Int)] {
        devices.flatMap { d in
            profiles.map { (p, n) in (d, p, n) }
        }
    }

    @Test(arguments: cases)
    func bulkTransferThroughTheBridge(device: Kind, profile: String, total: Int) throws {
        // Debugging aids: DEMI_IMPAIRED_ONLY=<profile> ("clean" for none) runs one case, DEMI_IMPAIRED_MB=<n> sets the
        // size, DEMI_IMPAIRED_PROFILE=<profile> runs the clean case with any other profile instead, and
        // DEMI_IMPAIRED_KERNEL_BASELINE=1 puts the kernel's TCP (a Python echo) in namespace a instead of our stack;
        // DEMI_IMPAIRED_DEVICE=af_packet|af_xdp|net_af_packet runs one device (catpowder/af_packet, catpowder/af_xdp,
        // catnip/net_af_packet: the value must match the kind's suffix after '/').
        let env = ProcessInfo.processInfo.environment
        if let only = env["DEMI_IMPAIRED_ONLY"], only != (profile.isEmpty ? "clean" : profile) { return }
        if let only = env["DEMI_IMPAIRED_DEVICE"], !device.rawValue.hasSuffix("/" + only) { return }
        let total = env["DEMI_IMPAIRED_MB"].flatMap(Int.init).map { $0 * 1_000_000 } ?? total
        let profile = profile.isEmpty ? env["DEMI_IMPAIRED_PROFILE"] ?? profile : profile
        if env["DEMI_IMPAIRED_KERNEL_BASELINE"] == "1" {
            // The kernel on both ends: the device does not matter, so once.
            return device == .afPacket ? try kernelBaseline(profile: profile, total: total) : ()
        }
        guard let hosts = try BridgedHosts.create() else { return }
        defer { hosts.destroy() }
        var toA = try FaultProfile(parsing: profile)
        var toB = toA
        toA.seed = 11
        toB.seed = 12
        let bridge = try hosts.startBridge(a: toA, b: toB)
        defer { try? bridge.stop() }
        let os = try Self.start(hosts, device)
        let echo = try EchoDriver(os, port: 7200)
        let log = "/tmp/demi-impaired-\(getpid())-\(Self.tag(device))-\(profile.isEmpty ? "clean" : profile).log"
        defer { unlink(log) }
        let kernelBefore = Self.snmp(hosts, .b)
        let started = Instant.now()
        let child = try hosts.spawn(in: .b, ["python3", "-c", Self.bulkClient, hosts.ourIP, "\(total)"],
                                    outputPath: log)
        let code = try Self.pump(os, until: child, timeout: .seconds(900)) { try echo.step() }
        let seconds = Double((Instant.now() - started).nanoseconds) / 1e9
        // The client has gone; let our side finish closing (its FIN acknowledged through the bridge), after which
        // every buffer must be back in the pool.
        func inUse() -> Int { os.statistics.first { $0.0 == "buffers_in_use" }?.1 ?? 0 }
        let settle = Instant.now() + .seconds(5)
        while (echo.closed < 1 || inUse() > 0) && Instant.now() < settle {
            os.poll()
            try echo.step()
        }
        let b = try bridge.stop()
        let kernelAfter = Self.snmp(hosts, .b)
        let out = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        let stats = Dictionary(os.statistics, uniquingKeysWith: { x, _ in x })
        func delta(_ k: String) -> Int { (kernelAfter[k] ?? 0) - (kernelBefore[k] ?? 0) }
        let summary = """
            impaired-link[\(device)] profile '\(profile.isEmpty ? "clean" : profile)': \(total / 1_000_000) MB each way in \(String(format: "%.1f", seconds)) s \
            (\(String(format: "%.1f", Double(2 * total) * 8 / seconds / 1e6)) Mbit/s both ways); client: \(out)
              bridge a->b: \(b.aToB.frames) frames \(b.aToB.faults), device drops \(b.deviceB.droppedFrames)
              bridge b->a: \(b.bToA.frames) frames \(b.bToA.faults), device drops \(b.deviceA.droppedFrames)
              stack: \(stats.filter { $0.value > 0 }.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))
              kernel b: RetransSegs +\(delta("Tcp.RetransSegs")) InCsumErrors +\(delta("Tcp.InCsumErrors")) \
            InHdrErrors +\(delta("Ip.InHdrErrors")) InErrs +\(delta("Tcp.InErrs")) \
            TCPTimeouts +\(delta("TcpExt.TCPTimeouts")) TCPLossProbes +\(delta("TcpExt.TCPLossProbes")) \
            TCPLostRetransmit +\(delta("TcpExt.TCPLostRetransmit")) TCPSackRecovery +\(delta("TcpExt.TCPSackRecovery")) \
            DelayedACKs +\(delta("TcpExt.DelayedACKs"))
            """
        print(summary)
        #expect(code == 0, "\(summary)")
        #expect(echo.echoed == total)
        #expect(echo.closed == 1, "the connection closed")
        #expect(inUse() == 0, "buffers still in use after the connection closed: \(summary)")

        // The profile did apply, in both directions.
        let p = try FaultProfile(parsing: profile)
        for (name, d) in [("a->b", b.aToB), ("b->a", b.bToA)] {
            if p.loss > 0 { #expect(d.faults.dropped > 0, "\(name)") }
            if p.reordering > 0 { #expect(d.faults.reordered > 0, "\(name)") }
            if p.duplication > 0 { #expect(d.faults.duplicated > 0, "\(name)") }
            if p.corruption > 0 { #expect(d.faults.corrupted > 0, "\(name)") }
            if p.delay > .zero { #expect(d.faults.delayed > 0, "\(name)") }
        }
        if p.corruption > 0 {
            // Our checksums caught what came to us corrupted, the kernel's what went to it.
            #expect((stats["checksum_errors"] ?? 0) > 0, "\(summary)")
            #expect(delta("Tcp.InCsumErrors") + delta("Ip.InHdrErrors") > 0, "\(summary)")
        } else {
            #expect(stats["checksum_errors"] == 0, "\(summary)")
        }
    }
}

// MARK: - Capture

/// tshark on host b's veth0 records a short clean exchange with our stack (TCP through the echo, UDP datagrams, some
/// of them fragmented); Wireshark's dissectors, with checksum validation on, must find no malformed frame and no bad
/// IP, TCP or UDP checksum in what our stack sent. A control copy of the capture with two bits flipped in our frames
/// shows that the same filters do catch bad checksums (Wireshark's `*.checksum.status`: 0 Bad, 1 Good, 2 Unverified,
/// 3 Not present, 4 Illegal; from `tshark -G values`).
@Suite(.serialized) struct CaptureTests {
    static let tsharkPath: String? = {
        let env = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return (["/usr/bin"] + env.split(separator: ":").map(String.init)).map { $0 + "/tshark" }
            .first { FileManager.default.isExecutableFile(atPath: $0) }
    }()

    /// Checksum validation on; the echo's payload (random bytes) decoded as plain data. Without the two `-d`, tshark
    /// offers each segment's payload to its heuristic dissectors (and to a dissector registered for the client's
    /// ephemeral port, if any), and such a dissector reports its own protocol's errors on our frames. A CI run failed
    /// with 3 expert errors on 3 consecutive TCP frames of ours whose checksums were all good; a dissector that took a
    /// run of the random payload for its protocol is the likely source (where segments start varies between runs).
    static let validation = ["-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE",
                             "-o", "udp.check_checksum:TRUE", "-d", "tcp.port==7200,data", "-d", "udp.port==7201,data"]

    /// Runs tshark on a capture file with checksum validation and a display filter; the matching frames' numbers.
    static func frames(_ tshark: String, _ pcap: String, _ filter: String) throws -> [Int] {
        try lines(tshark, pcap, filter, fields: ["frame.number"]).compactMap { Int($0) }
    }

    /// Runs tshark on a capture file with checksum validation and a display filter; the given fields of each matching
    /// frame, one line per frame (tab-separated).
    static func lines(_ tshark: String, _ pcap: String, _ filter: String, fields: [String]) throws -> [String] {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tshark)
        p.arguments = ["-n", "-r", pcap] + validation + ["-Y", filter, "-T", "fields"] + fields.flatMap { ["-e", $0] }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errText = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw TestHosts.Failure("tshark -Y '\(filter)' exited \(p.terminationStatus): \(errText)")
        }
        return String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init)
    }

    static let client = """
        import socket, sys, hashlib, random
        total = 2_000_000
        s = socket.create_connection((sys.argv[1], 7200), timeout=30)
        rng = random.Random(9); data = rng.randbytes(total)
        s.sendall(data); s.shutdown(socket.SHUT_WR)
        got = bytearray()
        while True:
            b = s.recv(1 << 20)
            if not b: break
            got += b
        s.close()
        ok = hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(2)
        udp = 0
        for size in [1, 64, 1472, 4000]:
            msg = bytes(k % 251 for k in range(size))
            u.sendto(msg, (sys.argv[1], 7201))
            try:
                d, _ = u.recvfrom(65535); udp += d == msg
            except socket.timeout:
                pass
        print(len(got), ok, 'udp', udp)
        sys.exit(0 if ok and udp == 4 else 1)
        """

    @Test(arguments: ImpairedLinkTests.devices)
    func ourFramesPassWiresharksChecksumValidation(device: RawSocketTests.Kind) throws {
        guard let tshark = Self.tsharkPath else {
            if ProcessInfo.processInfo.environment["DEMI_REQUIRE_ALL_SUITES"] == "1" {
                Issue.record("tshark is required (DEMI_REQUIRE_ALL_SUITES=1) but not installed")
            } else {
                print("skipping: tshark is not installed (apt-get install tshark)")
            }
            return
        }
        guard let hosts = try BridgedHosts.create() else { return }
        defer { hosts.destroy() }
        let bridge = try hosts.startBridge(a: FaultProfile(), b: FaultProfile())
        defer { try? bridge.stop() }
        let os = try ImpairedLinkTests.start(hosts, device)
        let echo = try EchoDriver(os, port: 7200, udpPort: 7201)
        let base = "/tmp/demi-capture-\(getpid())-\(ImpairedLinkTests.tag(device))"
        let pcap = base + ".pcap", control = base + "-control.pcap"
        let captureLog = base + "-tshark.log", clientLog = base + "-client.log"
        defer { for f in [pcap, control, captureLog, clientLog] { unlink(f) } }

        let capture = try hosts.spawn(in: .b, [tshark, "-n", "-i", hosts.interface, "-F", "pcap", "-w", pcap], outputPath: captureLog)
        // Wait for dumpcap to be capturing.
        let deadline = Instant.now() + .seconds(20)
        var log = ""
        while Instant.now() < deadline && capture.isRunning {
            log = (try? String(contentsOfFile: captureLog, encoding: .utf8)) ?? ""
            if log.contains("Capturing on") { break }
            usleep(20_000)
        }
        try #require(log.contains("Capturing on"), "tshark did not start: \(log)")
        usleep(200_000)

        let child = try hosts.spawn(in: .b, ["python3", "-c", Self.client, hosts.ourIP], outputPath: clientLog)
        let code = try ImpairedLinkTests.pump(os, until: child, timeout: .seconds(120)) { try echo.step() }
        let out = (try? String(contentsOfFile: clientLog, encoding: .utf8)) ?? ""
        #expect(code == 0, "client: \(out)")
        // Let the last ACKs and FINs through, then stop the capture (SIGINT: dumpcap finishes the file).
        let settle = Instant.now() + .milliseconds(300)
        while Instant.now() < settle { os.poll(); try echo.step() }
        _ = kill(capture.pid, SIGINT)
        let stopBy = Instant.now() + .seconds(10)
        while capture.isRunning && Instant.now() < stopBy { usleep(20_000) }
        if capture.isRunning { capture.kill() }
        capture.waitUntilExit()
        try bridge.stop()

        let mac = BridgedHosts.format(mac: hosts.ourMAC)
        let ours = "eth.src == \(mac)"
        let all = try Self.frames(tshark, pcap, ours)
        let tcp = try Self.frames(tshark, pcap, "\(ours) && tcp")
        let udp = try Self.frames(tshark, pcap, "\(ours) && udp")
        let fragments = try Self.frames(tshark, pcap, "\(ours) && ip.flags.mf == 1")
        let goodIP = try Self.frames(tshark, pcap, "\(ours) && ip.checksum.status == 1")
        let goodTCP = try Self.frames(tshark, pcap, "\(ours) && tcp.checksum.status == 1")
        let goodUDP = try Self.frames(tshark, pcap, "\(ours) && udp.checksum.status == 1")
        let bad = try Self.frames(tshark, pcap,
                                  "\(ours) && (ip.checksum.status == 0 || tcp.checksum.status == 0 || udp.checksum.status == 0 || icmp.checksum.status == 0)")
        let malformed = try Self.frames(tshark, pcap, "_ws.malformed")
        let errors = try Self.frames(tshark, pcap, "\(ours) && _ws.expert.severity == error")
        print("capture[\(device)]: \(all.count) frames from us (\(tcp.count) TCP, \(udp.count) UDP, \(fragments.count) non-final fragments); "
              + "good checksums IP \(goodIP.count) TCP \(goodTCP.count) UDP \(goodUDP.count); bad \(bad.count); "
              + "malformed \(malformed.count); expert errors \(errors.count)")
        #expect(all.count > 1000, "the capture holds our frames")
        #expect(tcp.count > 0 && udp.count > 0 && !fragments.isEmpty)
        #expect(malformed.isEmpty, "malformed frames: \(malformed.prefix(20))")
        #expect(bad.isEmpty, "frames with bad checksums: \(bad.prefix(20))")
        if ProcessInfo.processInfo.environment["DEMI_KEEP_CAPTURE"] == "1" {
            let kept = "/tmp/demi-capture-\(ImpairedLinkTests.tag(device)).pcap"
            unlink(kept)
            if link(pcap, kept) == 0 { print("  capture kept as \(kept)") }
        }
        if !errors.isEmpty {
            // What Wireshark objects to, with the frames' summaries, so a failure in CI can be read from its log.
            let which = "frame.number in {\(errors.prefix(20).map(String.init).joined(separator: " "))}"
            let detail = (try? Self.lines(tshark, pcap, which,
                                          fields: ["frame.number", "frame.time_relative", "ip.id", "ip.flags.mf",
                                                   "ip.frag_offset", "ip.len", "tcp.seq", "tcp.ack", "tcp.len",
                                                   "tcp.flags.str", "_ws.col.Info", "_ws.expert.message"])) ?? []
            for line in detail { print("  expert error: \(line)") }
            let kept = "/tmp/demi-capture-expert-errors-\(ImpairedLinkTests.tag(device)).pcap"
            unlink(kept)
            if link(pcap, kept) == 0 { print("  capture kept as \(kept)") }
        }
        #expect(errors.isEmpty, "frames with expert errors: \(errors.prefix(20))")
        // Every IPv4 packet and every TCP segment of ours was verified (not just "unverified").
        let notIP = try Self.frames(tshark, pcap, "\(ours) && !ip")
        #expect(goodIP.count == all.count - notIP.count)
        #expect(goodTCP.count == tcp.count)
        #expect(goodUDP.count >= 4, "one verified UDP checksum per datagram (fragments are reassembled)")

        // Control: flip one bit of the IP header (TTL) of our first TCP frame and one payload bit of our last TCP
        // frame with data; the same filters must report exactly those two.
        let ipFrame = try #require(tcp.first)
        let dataFrames = try Self.frames(tshark, pcap, "\(ours) && tcp.len > 0")
        let tcpFrame = try #require(dataFrames.last)
        try Self.flip(pcap, into: control, frames: [ipFrame: 14 + 8, tcpFrame: -1])
        #expect(try Self.frames(tshark, control, "\(ours) && ip.checksum.status == 0") == [ipFrame])
        #expect(try Self.frames(tshark, control, "\(ours) && tcp.checksum.status == 0") == [tcpFrame])
        #expect(try Self.frames(tshark, control, "\(ours) && tcp.checksum.status == 1").count == goodTCP.count - 1)
    }

    /// Copies a classic pcap file, flipping the low bit of byte `offset` (from the frame's start; -1: its last byte)
    /// of the given frames (numbered from 1).
    static func flip(_ path: String, into out: String, frames: [Int: Int]) throws {
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        guard bytes.count >= 24, bytes[0] == 0xD4, bytes[1] == 0xC3 else { throw TestHosts.Failure("not a little-endian pcap") }
        var at = 24, number = 0
        while at + 16 <= bytes.count {
            number += 1
            let caplen = bytes[at + 8..<at + 12].reversed().reduce(0) { $0 << 8 | Int($1) }
            if let offset = frames[number] {
                let i = offset >= 0 ? offset : caplen - 1
                bytes[at + 16 + i] ^= 1
            }
            at += 16 + caplen
        }
        try Data(bytes).write(to: URL(fileURLWithPath: out))
    }
}
