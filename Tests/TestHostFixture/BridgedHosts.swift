import CDemiLinux
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Two test hosts with a bridge namespace between them: `<name>-a` <-> `<name>-m` <-> `<name>-b`, joined by two veth
/// pairs, so a user-space impairment bridge in m can drop, duplicate, reorder, corrupt and delay frames of a real link
/// (these kernels have no netem; see ../shared/research/impairment.md).
///
/// ```
///   <name>-a                 <name>-m                      <name>-b
///   veth0 (no address) <---> vma   [bridge]   vmb <--->    veth0 198.18.N.2/24
///   our stack: 198.18.N.1    (no addresses, promiscuous)   the kernel peer
/// ```
///
/// - Host a's `veth0` has **no** address: the user-space stack owns `198.18.N.1`, so the kernel in a never answers
///   for it. Host b's `veth0` has `198.18.N.2/24`. Namespace m has no addresses at all; its two ends are promiscuous
///   and carry nothing until a bridge runs (``startThread(in:name:_:)``; the tests' `startBridge`), so frames only
///   cross between a and b through the bridge. No default routes anywhere.
/// - Like ``TestHosts``: IPv6 off in all three namespaces (no router solicitations or DAD frames), TX/RX checksum
///   offload and TSO off on all four veth ends (packet sockets see complete checksums, the kernel in b really
///   verifies ours), unique names per process and instance (`dbh<pid>n<counter>`), namespaces of dead processes
///   reaped by the next ``create(name:)``, everything removed by ``destroy()`` and `deinit` (also when creation fails).
/// - Same skip rules: without root or `ip netns`, ``create(name:)`` prints why and returns nil; with
///   `DEMI_REQUIRE_ALL_SUITES=1` it throws instead.
///
/// `scripts/testhosts.sh bridged NAME N` builds the same layout by hand.
public final class BridgedHosts: @unchecked Sendable {
    public enum Host: Sendable { case a, m, b }

    public let namespaceA: String
    public let namespaceM: String
    public let namespaceB: String
    /// The veth end in namespaces a and b.
    public let interface = "veth0"
    /// The bridge's ends in namespace m: the one toward host a and the one toward host b.
    public let bridgeInterfaceA = "vma"
    public let bridgeInterfaceB = "vmb"
    /// `N` in 198.18.N.0/24.
    public let subnetIndex: Int
    public var subnet: String { "198.18.\(subnetIndex).0/24" }
    /// The user-space stack's address in namespace a (not configured in the kernel).
    public var ourIP: String { "198.18.\(subnetIndex).1" }
    /// Host b's kernel address.
    public var peerIP: String { "198.18.\(subnetIndex).2" }
    /// The MAC addresses of `veth0` in namespaces a and b.
    public let ourMAC: [UInt8]
    public let peerMAC: [UInt8]
    /// False if some offload could not be switched off.
    public let offloadsDisabled: Bool

    private var destroyed = false
    private let lock = NSLock()
    nonisolated(unsafe) private static var counter = 0
    private static let counterLock = NSLock()

    /// Creates the three namespaces, or returns nil (after printing why) when this process cannot. With
    /// `DEMI_REQUIRE_ALL_SUITES=1` a missing capability throws instead, so CI fails.
    public static func create(name: String? = nil) throws -> BridgedHosts? {
        func unavailable(_ why: String) throws -> BridgedHosts? {
            if ProcessInfo.processInfo.environment["DEMI_REQUIRE_ALL_SUITES"] == "1" {
                throw TestHosts.Failure("bridged test hosts are required (DEMI_REQUIRE_ALL_SUITES=1) but unavailable: \(why)")
            }
            print("skipping: bridged test hosts unavailable: \(why)")
            return nil
        }
        guard geteuid() == 0 else { return try unavailable("not root (network namespaces and AF_PACKET need root)") }
        guard let ip = TestHosts.ipPath else { return try unavailable("no `ip` command (iproute2)") }
        guard FileManager.default.isReadableFile(atPath: "/proc/self/ns/net") else {
            return try unavailable("no network namespaces (/proc/self/ns/net)")
        }
        reapStale(ip: ip)
        let (base, index) = counterLock.withLock { () -> (String, Int) in
            counter += 1
            let pid = Int(getpid())
            // Offset from TestHosts' indices; the namespaces are isolated anyway.
            return (name ?? "dbh\(pid)n\(counter)", (pid &* 7 &+ counter &+ 128) % 256)
        }
        do {
            return try BridgedHosts(base: base, subnetIndex: index, ip: ip)
        } catch let e as TestHosts.Failure {
            if e.description.contains("Operation not permitted") || e.description.contains("Permission denied") {
                return try unavailable(e.description)
            }
            throw e
        }
    }

    private init(base: String, subnetIndex: Int, ip: String) throws {
        let a = base + "-a", m = base + "-m", b = base + "-b"
        namespaceA = a
        namespaceM = m
        namespaceB = b
        self.subnetIndex = subnetIndex
        var ok = false
        defer {
            if !ok { for ns in [a, m, b] { _ = try? TestHosts.exec(ip, ["netns", "del", ns]) } }
        }
        for step in [
            ["netns", "add", a],
            ["netns", "add", m],
            ["netns", "add", b],
            ["link", "add", "veth0", "netns", a, "type", "veth", "peer", "name", "vma", "netns", m],
            ["link", "add", "veth0", "netns", b, "type", "veth", "peer", "name", "vmb", "netns", m],
        ] { try TestHosts.check(ip, step) }
        let ends = [(a, "veth0"), (m, "vma"), (m, "vmb"), (b, "veth0")]
        for ns in [a, m, b] {
            // Before the links come up, so they send no IPv6 router solicitations or DAD probes.
            _ = try? TestHosts.exec(ip, ["netns", "exec", ns, "sh", "-c",
                                         "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6; "
                                         + "for d in /proc/sys/net/ipv6/conf/*/disable_ipv6; do echo 1 > $d; done"])
            try TestHosts.check(ip, ["-n", ns, "link", "set", "lo", "up"])
        }
        for (ns, dev) in ends {
            if ns == m { try TestHosts.check(ip, ["-n", ns, "link", "set", dev, "promisc", "on"]) }
            try TestHosts.check(ip, ["-n", ns, "link", "set", dev, "up"])
        }
        try TestHosts.check(ip, ["-n", b, "addr", "add", "198.18.\(subnetIndex).2/24", "dev", "veth0"])
        var offloads = true
        var macs: [String: [UInt8]] = [:]
        for (ns, dev) in ends {
            let (mac, off) = try TestHosts.inNamespace(ns) { () throws -> ([UInt8], Bool) in
                var mac = [UInt8](repeating: 0, count: 6)
                guard cdemi_if_hwaddr(dev, &mac) == 0 else { throw TestHosts.Failure("SIOCGIFHWADDR \(dev) in \(ns): errno \(errno)") }
                // tx off first: TSO depends on it.
                let okTx = cdemi_ethtool_set(dev, 0, 0) == 0
                let okRx = cdemi_ethtool_set(dev, 1, 0) == 0
                _ = cdemi_ethtool_set(dev, 2, 0)
                return (mac, okTx && okRx && cdemi_ethtool_get(dev, 0) == 0 && cdemi_ethtool_get(dev, 1) == 0)
            }
            macs[ns + "/" + dev] = mac
            offloads = offloads && off
        }
        ourMAC = macs[a + "/veth0"]!
        peerMAC = macs[b + "/veth0"]!
        offloadsDisabled = offloads
        ok = true
    }

    deinit { destroy() }

    /// Removes the three namespaces (and with them both veth pairs). Idempotent. Stop threads started with
    /// ``startThread(in:name:_:)`` first.
    public func destroy() {
        let first = lock.withLock { () -> Bool in
            defer { destroyed = true }
            return !destroyed
        }
        guard first, let ip = TestHosts.ipPath else { return }
        for ns in [namespaceA, namespaceM, namespaceB] { _ = try? TestHosts.exec(ip, ["netns", "del", ns]) }
    }

    public func namespace(_ host: Host) -> String {
        switch host {
        case .a: namespaceA
        case .m: namespaceM
        case .b: namespaceB
        }
    }

    /// The MAC address as `aa:bb:cc:dd:ee:ff`.
    public static func format(mac: [UInt8]) -> String { mac.map { String(format: "%02x", $0) }.joined(separator: ":") }

    // MARK: - Commands

    /// Runs a command in a namespace and waits: its exit status and output (stdout and stderr together).
    @discardableResult
    public func run(in host: Host, _ args: [String]) throws -> (status: Int32, output: String) {
        guard let ip = TestHosts.ipPath else { throw TestHosts.Failure("no ip command") }
        return try TestHosts.exec(ip, ["netns", "exec", namespace(host)] + args)
    }

    /// Starts a command in a namespace and returns at once (see ``TestHosts/spawn(in:_:outputPath:)``: the handle's
    /// pid is the command's, no signal blocked, dropping the handle kills it).
    public func spawn(in host: Host, _ args: [String], outputPath: String? = nil) throws -> TestHosts.Spawned {
        guard let ip = TestHosts.ipPath else { throw TestHosts.Failure("no ip command") }
        return try TestHosts.Spawned(ip, ["netns", "exec", namespace(host)] + args, outputPath: outputPath)
    }

    /// Runs `body` on the calling thread inside a namespace (`setns`), then switches the thread back. Sockets made in
    /// `body` stay in that namespace. `body` must not suspend.
    public func withNamespace<T>(_ host: Host, _ body: () throws -> T) throws -> T {
        try TestHosts.inNamespace(namespace(host), body)
    }

    // MARK: - Threads in a namespace

    /// A thread started by ``startThread(in:name:_:)``: it runs its body inside a namespace until asked to stop.
    public final class NamespaceThread: @unchecked Sendable {
        public let name: String
        private let stopFlag = Atomic<Bool>(false)
        private let lock = NSLock()
        private let started = DispatchSemaphore(value: 0)
        private let finished = DispatchSemaphore(value: 0)
        private var startState: Result<Void, any Error>?
        private var endError: (any Error)?
        private var joined = false

        init(name: String) { self.name = name }

        /// True once ``stop()`` was called: the body should return soon.
        public var stopRequested: Bool { stopFlag.load(ordering: .relaxed) }

        /// The body calls this once its setup worked; ``BridgedHosts/startThread(in:name:_:)`` returns then.
        public func ready() { signalStart(.success(())) }

        func signalStart(_ r: Result<Void, any Error>) {
            let first = lock.withLock { () -> Bool in
                guard startState == nil else { return false }
                startState = r
                return true
            }
            if first { started.signal() }
        }

        func waitStarted() throws {
            started.wait()
            try lock.withLock { startState! }.get()
        }

        func finish(_ error: (any Error)?) {
            lock.withLock { endError = error }
            signalStart(.failure(error ?? TestHosts.Failure("\(name) returned before it was ready")))
            finished.signal()
        }

        /// Asks the body to return and waits until it has (a join). Rethrows an error the body threw after
        /// ``ready()``. Idempotent.
        public func stop() throws {
            stopFlag.store(true, ordering: .relaxed)
            let wait = lock.withLock { () -> Bool in
                defer { joined = true }
                return !joined
            }
            if wait { finished.wait() }
            if let e = lock.withLock({ endError }) { throw e }
        }

        deinit { try? stop() }
    }

    /// Starts a thread that enters namespace `host` (`setns` on itself) and runs `body` there. `body` sets up (opens
    /// its devices), calls `thread.ready()`, then works until `thread.stopRequested`. Returns once `body` called
    /// `ready()`; if it threw or returned before that, rethrows its error (and the thread is gone).
    public func startThread(in host: Host, name: String,
                            _ body: @escaping @Sendable (NamespaceThread) throws -> Void) throws -> NamespaceThread {
        let t = NamespaceThread(name: name)
        let ns = namespace(host)
        let thread = Thread {
            do {
                try TestHosts.inNamespace(ns) { try body(t) }
                t.finish(nil)
            } catch {
                t.finish(error)
            }
        }
        thread.name = name
        thread.start()
        do { try t.waitStarted() } catch {
            try? t.stop()
            throw error
        }
        return t
    }

    // MARK: - Helpers

    /// Removes namespaces of this fixture left by processes that no longer exist (a crashed test run).
    static func reapStale(ip: String) {
        guard let (status, out) = try? TestHosts.exec(ip, ["netns", "list"]), status == 0 else { return }
        for line in out.split(separator: "\n") {
            let name = String(line.split(separator: " ").first ?? "")
            guard name.hasPrefix("dbh"), name.hasSuffix("-a") || name.hasSuffix("-m") || name.hasSuffix("-b") else { continue }
            let digits = name.dropFirst(3).prefix { $0.isNumber }
            guard let pid = Int32(digits), name.dropFirst(3 + digits.count).hasPrefix("n") else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { _ = try? TestHosts.exec(ip, ["netns", "del", name]) }
        }
    }
}
