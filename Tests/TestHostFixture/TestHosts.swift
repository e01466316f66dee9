import CDemiLinux
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Two test hosts: network namespaces `<name>-a` and `<name>-b` joined by a veth pair (`veth0` in each).
///
/// - Host b is the kernel peer: its `veth0` has `198.18.N.2/24`. Host a's `veth0` has **no** address: the user-space
///   stack owns `198.18.N.1` there, so the kernel in namespace a never answers ARP or TCP for it. No default routes.
/// - TX and RX checksum offload (and TSO) are off on both ends, so a packet socket sees complete checksums and the
///   peer kernel really verifies ours (veth otherwise marks received frames "checksum verified"). IPv6 is disabled
///   on both ends, so no router solicitations or DAD frames show up in the tests.
/// - Names are unique per process and instance (`dth<pid>n<counter>`), so parallel tests do not collide; namespaces
///   left by processes that died are removed by the next ``create(name:)``. ``destroy()`` (and `deinit`) removes both
///   namespaces, which removes the veth pair.
///
/// The same layout is what `scripts/testhosts.sh up NAME N` builds by hand.
public final class TestHosts: @unchecked Sendable {
    public enum Host: Sendable { case a, b }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        public init(_ description: String) { self.description = description }
    }

    /// Namespace names.
    public let namespaceA: String
    public let namespaceB: String
    /// The veth end's name inside each namespace.
    public let interface = "veth0"
    /// `N` in 198.18.N.0/24.
    public let subnetIndex: Int
    /// `198.18.N.0/24`.
    public var subnet: String { "198.18.\(subnetIndex).0/24" }
    /// The user-space stack's address in namespace a (not configured in the kernel).
    public var ourIP: String { "198.18.\(subnetIndex).1" }
    /// Host b's kernel address.
    public var peerIP: String { "198.18.\(subnetIndex).2" }
    /// The MAC address of `veth0` in namespaces a and b, as bytes.
    public let ourMAC: [UInt8]
    public let peerMAC: [UInt8]
    /// False if the offloads could not be switched off (the frames may then carry partial checksums).
    public let offloadsDisabled: Bool

    private var destroyed = false
    private let lock = NSLock()
    nonisolated(unsafe) private static var counter = 0
    private static let counterLock = NSLock()

    /// Creates the two hosts, or returns nil (after printing why) when this process cannot: not root, or no `ip netns`.
    /// With `DEMI_REQUIRE_ALL_SUITES=1` a missing capability throws instead, so CI fails.
    public static func create(name: String? = nil) throws -> TestHosts? {
        func unavailable(_ why: String) throws -> TestHosts? {
            if ProcessInfo.processInfo.environment["DEMI_REQUIRE_ALL_SUITES"] == "1" {
                throw Failure("test hosts are required (DEMI_REQUIRE_ALL_SUITES=1) but unavailable: \(why)")
            }
            print("skipping: test hosts unavailable: \(why)")
            return nil
        }
        guard geteuid() == 0 else { return try unavailable("not root (network namespaces and AF_PACKET need root)") }
        guard let ip = ipPath else { return try unavailable("no `ip` command (iproute2)") }
        guard FileManager.default.isReadableFile(atPath: "/proc/self/ns/net") else {
            return try unavailable("no network namespaces (/proc/self/ns/net)")
        }
        reapStale(ip: ip)
        let (base, index) = counterLock.withLock { () -> (String, Int) in
            counter += 1
            let pid = Int(getpid())
            return (name ?? "dth\(pid)n\(counter)", (pid &* 7 &+ counter) % 256)
        }
        do {
            return try TestHosts(base: base, subnetIndex: index, ip: ip)
        } catch let e as Failure {
            if e.description.contains("Operation not permitted") || e.description.contains("Permission denied") {
                return try unavailable(e.description)
            }
            throw e
        }
    }

    private init(base: String, subnetIndex: Int, ip: String) throws {
        namespaceA = base + "-a"
        namespaceB = base + "-b"
        self.subnetIndex = subnetIndex
        // If anything below fails, remove what was made.
        var ok = false
        defer { if !ok { _ = try? Self.exec(ip, ["netns", "del", base + "-a"]); _ = try? Self.exec(ip, ["netns", "del", base + "-b"]) } }
        let a = base + "-a", b = base + "-b"
        for step in [
            ["netns", "add", a],
            ["netns", "add", b],
            ["link", "add", "veth0", "netns", a, "type", "veth", "peer", "name", "veth0", "netns", b],
        ] { try Self.check(ip, step) }
        for ns in [a, b] {
            // Before the link comes up, so it sends no IPv6 router solicitations or DAD probes.
            _ = try? Self.exec(ip, ["netns", "exec", ns, "sh", "-c",
                                    "echo 1 > /proc/sys/net/ipv6/conf/veth0/disable_ipv6; echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6"])
            try Self.check(ip, ["-n", ns, "link", "set", "lo", "up"])
            try Self.check(ip, ["-n", ns, "link", "set", "veth0", "up"])
        }
        try Self.check(ip, ["-n", b, "addr", "add", "198.18.\(subnetIndex).2/24", "dev", "veth0"])
        var macs: [[UInt8]] = []
        var offloads = true
        for ns in [a, b] {
            let (mac, off) = try Self.inNamespace(ns) { () throws -> ([UInt8], Bool) in
                var m = [UInt8](repeating: 0, count: 6)
                guard cdemi_if_hwaddr("veth0", &m) == 0 else { throw Failure("SIOCGIFHWADDR veth0 in \(ns): errno \(errno)") }
                // tx off first: TSO depends on it. Errors leave `off` false; the test still runs.
                let okTx = cdemi_ethtool_set("veth0", 0, 0) == 0
                let okRx = cdemi_ethtool_set("veth0", 1, 0) == 0
                _ = cdemi_ethtool_set("veth0", 2, 0)
                return (m, okTx && okRx && cdemi_ethtool_get("veth0", 0) == 0)
            }
            macs.append(mac)
            offloads = offloads && off
        }
        ourMAC = macs[0]
        peerMAC = macs[1]
        offloadsDisabled = offloads
        ok = true
    }

    deinit { destroy() }

    /// Removes both namespaces (and with them the veth pair). Idempotent.
    public func destroy() {
        let first = lock.withLock { () -> Bool in
            defer { destroyed = true }
            return !destroyed
        }
        guard first, let ip = Self.ipPath else { return }
        _ = try? Self.exec(ip, ["netns", "del", namespaceA])
        _ = try? Self.exec(ip, ["netns", "del", namespaceB])
    }

    public func namespace(_ host: Host) -> String { host == .a ? namespaceA : namespaceB }

    // MARK: - Commands

    /// Runs `args` (a command and its arguments) in a namespace and waits: its exit status and its output
    /// (stdout and stderr together).
    @discardableResult
    public func run(in host: Host, _ args: [String]) throws -> (status: Int32, output: String) {
        guard let ip = Self.ipPath else { throw Failure("no ip command") }
        return try Self.exec(ip, ["netns", "exec", namespace(host)] + args)
    }

    /// Starts `args` in a namespace and returns at once. `ip netns exec` replaces itself with the command, so the
    /// handle's pid is the command's. Output (stdout and stderr) goes to the file at `outputPath` if given, else to
    /// /dev/null.
    ///
    /// Not a Foundation `Process`: that one passes on the signal mask of the calling thread, on which the test
    /// runtime blocks SIGTERM, so `terminate()` would not stop the child. This one starts it with no signal blocked.
    public func spawn(in host: Host, _ args: [String], outputPath: String? = nil) throws -> Spawned {
        guard let ip = Self.ipPath else { throw Failure("no ip command") }
        return try Spawned(ip, ["netns", "exec", namespace(host)] + args, outputPath: outputPath)
    }

    /// A child process started by ``spawn(in:_:outputPath:)``. Dropping the handle kills a child still running.
    public final class Spawned: @unchecked Sendable {
        public let pid: pid_t
        private var status: Int32?

        init(_ tool: String, _ args: [String], outputPath: String?) throws {
            var actions = posix_spawn_file_actions_t()
            var attr = posix_spawnattr_t()
            posix_spawn_file_actions_init(&actions)
            posix_spawnattr_init(&attr)
            defer { posix_spawn_file_actions_destroy(&actions); posix_spawnattr_destroy(&attr) }
            let out = outputPath ?? "/dev/null"
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
            var none = sigset_t(), all = sigset_t()
            sigemptyset(&none)
            sigfillset(&all)
            posix_spawnattr_setsigmask(&attr, &none)
            posix_spawnattr_setsigdefault(&attr, &all)
            posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
            let argv: [UnsafeMutablePointer<CChar>?] = ([tool] + args).map { strdup($0) } + [nil]
            defer { for a in argv { free(a) } }
            var child: pid_t = 0
            let rc = posix_spawn(&child, tool, &actions, &attr, argv, environ)
            guard rc == 0 else { throw Failure("posix_spawn \(tool): errno \(rc)") }
            pid = child
        }

        deinit {
            if status == nil { kill(); _ = waitUntilExit() }
        }

        /// SIGTERM.
        public func terminate() { if status == nil { _ = Glibc.kill(pid, SIGTERM) } }
        /// SIGKILL.
        public func kill() { if status == nil { _ = Glibc.kill(pid, SIGKILL) } }

        /// Waits for the child; its raw wait status (see `WIFEXITED` and friends), or -1.
        @discardableResult
        public func waitUntilExit() -> Int32 {
            if let status { return status }
            var s: Int32 = 0
            while waitpid(pid, &s, 0) < 0 {
                if errno != EINTR { status = -1; return -1 }
            }
            status = s
            return s
        }

        /// True until the child has exited (reaps it if it has).
        public var isRunning: Bool {
            guard status == nil else { return false }
            var s: Int32 = 0
            let r = waitpid(pid, &s, WNOHANG)
            if r == pid { status = s; return false }
            return r == 0
        }

        /// The exit code if the child exited normally, nil if it is running or was killed by a signal.
        public var exitCode: Int32? {
            guard !isRunning, let s = status, s & 0x7f == 0 else { return nil }
            return (s >> 8) & 0xff
        }

        /// The signal that ended the child, if one did.
        public var terminatingSignal: Int32? {
            guard !isRunning, let s = status, s & 0x7f != 0, s & 0x7f != 0x7f else { return nil }
            return s & 0x7f
        }
    }

    /// Runs `body` on the calling thread inside a namespace (`setns(CLONE_NEWNET)`), then switches the thread back.
    /// Sockets created in `body` belong to that namespace for good; interface names resolve there. `body` must not
    /// suspend or move to another thread.
    public func withNamespace<T>(_ host: Host, _ body: () throws -> T) throws -> T {
        try Self.inNamespace(namespace(host), body)
    }

    static func inNamespace<T>(_ ns: String, _ body: () throws -> T) throws -> T {
        let original = cdemi_netns_open("/proc/thread-self/ns/net")
        guard original >= 0 else { throw Failure("open /proc/thread-self/ns/net: errno \(errno)") }
        defer { _ = cdemi_close(original) }
        let target = cdemi_netns_open("/var/run/netns/\(ns)")
        guard target >= 0 else { throw Failure("open /var/run/netns/\(ns): errno \(errno)") }
        let entered = cdemi_setns_net(target)
        let e = errno
        _ = cdemi_close(target)
        guard entered == 0 else { throw Failure("setns(\(ns)): errno \(e)") }
        defer {
            if cdemi_setns_net(original) != 0 {
                fatalError("TestHosts: cannot switch the thread back from namespace \(ns): errno \(errno)")
            }
        }
        return try body()
    }

    // MARK: - Impairment

    /// Random loss of IPv4 packets on `veth0` in a namespace, both directions, with nftables (`netdev` family,
    /// `numgen random`): there is no netem on these kernels. Impair the kernel peer's side (host b): its ingress hook
    /// drops our frames before its stack sees them, its egress hook drops its frames before they reach the wire. (On
    /// host a it would do nothing for our stack: packet sockets see frames before the ingress hook.) ARP is left alone:
    /// the kernel gives up resolving after three lost exchanges and fails the connection (EHOSTUNREACH) before any
    /// TCP segment is sent, which is not what a loss test is about. Throws if `nft` is missing.
    public func impairLoss(_ host: Host, percent: Int) throws {
        var rules = "add table netdev demi_imp\n"
        for hook in ["ingress", "egress"] {
            rules += "add chain netdev demi_imp \(hook) { type filter hook \(hook) device \"veth0\" priority 0 ; }\n"
                + "add rule netdev demi_imp \(hook) meta protocol ip numgen random mod 100 < \(percent) counter drop\n"
        }
        let (status, out) = try run(in: host, ["sh", "-c", "command -v nft >/dev/null || { echo 'nft missing (apt-get install nftables)'; exit 127; }; echo \"$0\" | nft -f -", rules])
        guard status == 0 else { throw Failure("impairment failed: \(out)") }
    }

    /// Packets the loss rules of ``impairLoss(_:percent:)`` dropped so far in a namespace.
    public func impairmentDrops(_ host: Host) throws -> Int {
        let (_, out) = try run(in: host, ["nft", "list", "table", "netdev", "demi_imp"])
        var total = 0
        for line in out.split(separator: "\n") {
            let words = line.split(separator: " ")
            if let i = words.firstIndex(of: "packets"), i + 1 < words.count, let n = Int(words[i + 1]) { total += n }
        }
        return total
    }

    // MARK: - Helpers

    static let ipPath: String? = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    static func check(_ ip: String, _ args: [String]) throws {
        let (status, out) = try exec(ip, args)
        guard status == 0 else { throw Failure("ip \(args.joined(separator: " ")): \(out.trimmingCharacters(in: .whitespacesAndNewlines))") }
    }

    static func exec(_ tool: String, _ args: [String]) throws -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// Removes namespaces named by this fixture for processes that no longer exist (a crashed test run).
    static func reapStale(ip: String) {
        guard let (status, out) = try? exec(ip, ["netns", "list"]), status == 0 else { return }
        for line in out.split(separator: "\n") {
            let name = String(line.split(separator: " ").first ?? "")
            guard name.hasPrefix("dth"), name.hasSuffix("-a") || name.hasSuffix("-b") else { continue }
            let digits = name.dropFirst(3).prefix { $0.isNumber }
            guard let pid = Int32(digits), name.dropFirst(3 + digits.count).hasPrefix("n") else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { _ = try? exec(ip, ["netns", "del", name]) }
        }
    }
}
