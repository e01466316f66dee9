import Testing

#if !DPDK
/// Built without the `DPDK` trait: catnip is not compiled in.
@Suite struct CatnipPeerTests {
    @Test func skippedWithoutTrait() {
        print("CatnipPeerTests: skipped: built without the DPDK trait (swift test --traits DPDK, needs libdpdk-dev)")
    }
}
#else
import Demikernel
import DemiDPDK
import DemiStackLibOS
import Foundation
import TestHostFixture

/// How the DemikernelTests start catnip.
enum CatnipTestSupport {
    /// The first catnip of the process starts the EAL: with upstream-style `dpdk.eal_init` arguments (a plain
    /// `--vdev=net_af_packet0,iface=veth0`, which the libOS gives whole-datagram ring frames), on hugepages the
    /// fixture reserved and mounted if it could (``TestHugepages``), else `--no-huge`. Later ones hot-plug a vdev.
    static func prepareEAL(_ c: inout Configuration, hosts: TestHosts) {
        prepareEAL(&c, interface: hosts.interface)
    }

    /// The same for any interface (``BridgedHosts``' veth0 in namespace a, for the impaired-link and capture suites).
    /// `xdp`: DPDK's net_af_xdp instead (an AF_XDP socket in copy mode under the PMD); once the EAL is up, the
    /// arguments only name the vdev, which the libOS then hot-plugs.
    static func prepareEAL(_ c: inout Configuration, interface: String, xdp: Bool = false) {
        let huge = TestHugepages.reserve()
        let vdev = xdp ? "net_af_xdp0,iface=\(interface),start_queue=0,queue_count=1" : "net_af_packet0,iface=\(interface)"
        guard !DPDKEnvironment.isInitialized else {
            if xdp { c.ealArguments = ["--vdev=\(vdev)"] }
            return
        }
        c.ealArguments = DPDKEnvironment.defaultArguments(vdev: vdev, hugepages: huge != nil, hugeDirectory: huge)
        print("catnip: rte_eal_init \(c.ealArguments.joined(separator: " "))")
    }
}

/// catnip (our stack on DPDK's `net_af_packet`) against our own stacks rather than the kernel's: catnip in namespace
/// a of a ``TestHosts`` pair, and in namespace b either catnip again (a second DPDK port, hot-plugged in the same EAL
/// from a thread inside namespace b: `net_af_packet`, or `net_af_xdp` over an AF_XDP socket) or catpowder
/// (AF_PACKET). Both libOSes run on the test's thread, polled in turn.
///
/// Addresses: 198.18.N.1 (ours in a, as in the kernel suites) and 198.18.N.3 (ours in b: the kernel in b keeps
/// 198.18.N.2, so it ignores frames for .3 and sends no resets or ARP replies for it). Every case runs with the server
/// in a and in b, so each stack sends and receives the bulk transfer.
///
/// Needs root and the `DPDK` trait; skips with a message otherwise (CI requires root with DEMI_REQUIRE_ALL_SUITES=1).
@Suite(.serialized) struct CatnipPeerTests {
    enum Peer: String, CustomStringConvertible, Sendable, CaseIterable {
        case catnip = "catnip/net_af_packet", catpowder = "catpowder/af_packet", catnipXDP = "catnip/net_af_xdp"
        var description: String { rawValue }
    }

    enum ServerSide: String, CustomStringConvertible, Sendable, CaseIterable {
        case a = "server in a (catnip)", b = "server in b (peer)"
        var description: String { rawValue }
    }

    /// Two libOSes in the two namespaces of `hosts`, polled in turn on the calling thread.
    final class Pair {
        let hosts: TestHosts
        var a: LibOS?
        var b: LibOS?
        let ipA: IPv4Address
        let ipB: IPv4Address

        init(_ hosts: TestHosts, peer: Peer) throws {
            self.hosts = hosts
            ipA = IPv4Address(hosts.ourIP)!
            ipB = IPv4Address("198.18.\(hosts.subnetIndex).3")!
            a = try Self.start(hosts, .a, ip: ipA, kind: .catnip)
            b = try Self.start(hosts, .b, ip: ipB, kind: peer)
        }

        static func start(_ hosts: TestHosts, _ host: TestHosts.Host, ip: IPv4Address, kind: Peer) throws -> LibOS {
            var c = Configuration()
            c.interfaceName = hosts.interface
            c.localIPv4Address = ip
            c.arpRequestTimeoutSeconds = 0.2
            c.arpRequestRetries = 10
            if kind != .catpowder { CatnipTestSupport.prepareEAL(&c, interface: hosts.interface, xdp: kind == .catnipXDP) }
            return try hosts.withNamespace(host) { try LibOS(kind == .catpowder ? .rawSockets : .dpdk, configuration: c) }
        }

        func os(_ side: ServerSide) -> LibOS { side == .a ? a! : b! }
        func other(_ side: ServerSide) -> LibOS { side == .a ? b! : a! }
        func ip(_ side: ServerSide) -> IPv4Address { side == .a ? ipA : ipB }

        /// Runs after each pass of both libOSes (the echo server's step).
        var step: () throws -> Void = {}

        func poll() throws {
            a!.poll()
            b!.poll()
            try step()
        }

        /// Polls both until `done` holds or `timeout` passes; false on timeout.
        @discardableResult
        func run(timeout: Duration = .seconds(30), _ done: () throws -> Bool) throws -> Bool {
            let end = Instant.now() + timeout
            while try !done() {
                if Instant.now() > end { return false }
                try poll()
            }
            return true
        }

        /// Polls both until `qt` of `os` completes.
        func wait(_ os: LibOS, _ qt: QToken, timeout: Duration = .seconds(10)) throws -> QResult {
            var r: QResult?
            _ = try run(timeout: timeout) {
                r = os.scheduler.take(qt)
                return r != nil
            }
            guard let r else { throw Errno.timedOut }
            return r
        }

        /// Closes each device on a thread in its own namespace (net_af_packet sets the interface's flags by name
        /// when its port stops), then removes the namespaces.
        func shutdown() {
            if a != nil { try? hosts.withNamespace(.a) { a = nil } }
            if b != nil { try? hosts.withNamespace(.b) { b = nil } }
            hosts.destroy()
        }

        /// One counter of `os`'s statistics (0 if absent).
        func counter(_ os: LibOS, _ key: String) -> Int { os.statistics.first { $0.0 == key }?.1 ?? 0 }

        var statistics: String {
            func s(_ os: LibOS?) -> String {
                (os?.statistics ?? []).filter { $0.1 > 0 }.map { "\($0.0)=\($0.1)" }.joined(separator: " ")
            }
            return "a: \(s(a)); b: \(s(b))"
        }
    }

    static func pair(_ peer: Peer, _ test: String = #function) throws -> Pair? {
        guard let hosts = try TestHosts.create() else {
            print("CatnipPeerTests.\(test): skipped (see above)")
            return nil
        }
        do { return try Pair(hosts, peer: peer) } catch {
            hosts.destroy()
            throw error
        }
    }

    /// A deterministic pattern for byte `i` of a stream.
    static func pattern(_ i: Int) -> UInt8 { UInt8(truncatingIfNeeded: (i &* 2654435761) >> 13) }

    @Test(arguments: Peer.allCases, ServerSide.allCases)
    func tcpEchoAndBulkTransfer(peer: Peer, server: ServerSide) throws {
        guard let p = try Self.pair(peer) else { return }
        defer { p.shutdown() }
        let serverOS = p.os(server), clientOS = p.other(server)
        let echo = try EchoDriver(serverOS, port: 7300)
        p.step = { try echo.step() }

        let c = try clientOS.socket(.inet, .stream)
        let connected = try p.wait(clientOS, try clientOS.connect(c, to: SocketAddressV4(p.ip(server), 7300)))
        try #require(connected.error == nil, "connect: \(connected); \(p.statistics)")

        // Echo: each message comes back whole before the next goes out.
        let sizes = [1, 64, 1460, 1461, 5000, 65536]
        for size in sizes {
            let msg = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ size) }
            let sga = try clientOS.sgaalloc(copying: msg)
            let push = try clientOS.push(c, sga)
            try clientOS.sgafree(sga)
            var got: [UInt8] = []
            while got.count < size {
                let r = try p.wait(clientOS, try clientOS.pop(c))
                guard let s = r.sga, s.count > 0 else { Issue.record("pop: \(r); \(p.statistics)"); return }
                got += s.bytes
                try clientOS.sgafree(s)
            }
            _ = try p.wait(clientOS, push)
            #expect(got == msg, "echo of \(size) bytes")
        }
        // Zero-copy transmit on catnip (a): as the client, its sgaalloc'd buffers of 512 B and more (1460, 1461,
        // 5000) are mbufs and its pushes attach them; as the server, the echoed payload lies in received mbufs and
        // is attached too.
        let catnip = p.a!
        if server == .b {
            #expect(p.counter(catnip, "dpdk_mbuf_buffers") >= 3, "sgaalloc on catnip hands out mbufs; \(p.statistics)")
        }
        #expect(p.counter(catnip, "dpdk_attached_pieces") > 0, "payload sent without a copy; \(p.statistics)")

        // Bulk: 8 MB through the echo, eight 64 KiB pushes in flight, SHA-256 of both streams.
        let total = 8 << 20
        let chunk = 1 << 16
        var sent = 0, received = 0
        var hs = SHA256(), hr = SHA256()
        var pushes: [QToken] = []
        var pop = try clientOS.pop(c)
        let started = Instant.now()
        let finished = try p.run(timeout: .seconds(300)) {
            while sent < total && pushes.count < 8 {
                let n = min(chunk, total - sent)
                let sga = try clientOS.sgaalloc(n)
                var at = sent
                for seg in sga.segments {
                    let bytes = seg.bytes
                    for k in 0..<bytes.count { bytes[k] = Self.pattern(at + k) }
                    hs.update(UnsafeRawBufferPointer(bytes))
                    at += bytes.count
                }
                pushes.append(try clientOS.push(c, sga))
                try clientOS.sgafree(sga)
                sent += n
            }
            pushes.removeAll { clientOS.scheduler.take($0) != nil }
            if let r = clientOS.scheduler.take(pop) {
                guard let s = r.sga, s.count > 0 else {
                    Issue.record("bulk pop: \(r); \(p.statistics)")
                    return true
                }
                hr.update(s.bytes)
                received += s.count
                try clientOS.sgafree(s)
                pop = try clientOS.pop(c)
            }
            return received >= total
        }
        let seconds = Double((Instant.now() - started).nanoseconds) / 1e9
        print("CatnipPeerTests \(peer), \(server): \(total >> 20) MB each way in \(String(format: "%.2f", seconds)) s; \(p.statistics)")
        #expect(finished, "bulk transfer timed out at \(received) of \(total) bytes; \(p.statistics)")
        #expect(received == total)
        #expect(hs.hexDigest() == hr.hexDigest(), "SHA-256 of what came back differs from what was sent")
        #expect(echo.echoed == total + sizes.reduce(0, +))

        // Close; the server sees the end of the stream and closes its side.
        try clientOS.close(c)
        _ = try p.run(timeout: .seconds(5)) { echo.closed == 1 }
        #expect(echo.closed == 1, "the server saw the close")
    }

    @Test(arguments: Peer.allCases, ServerSide.allCases)
    func udpEcho(peer: Peer, server: ServerSide) throws {
        guard let p = try Self.pair(peer) else { return }
        defer { p.shutdown() }
        let serverOS = p.os(server), clientOS = p.other(server)
        let echo = try EchoDriver(serverOS, port: 7310, udpPort: 7311)
        p.step = { try echo.step() }
        let u = try clientOS.socket(.inet, .datagram)
        try clientOS.bind(u, to: SocketAddressV4(.any, 0))
        let to = SocketAddressV4(p.ip(server), 7311)
        // Sizes around the MTU and well above it (IP fragments both ways: catnip's net_af_packet gets whole
        // datagrams the kernel reassembled, catpowder reassembles itself).
        var ok = 0
        let sizes = [1, 64, 1472, 1473, 8000, 30000, 65000]
        var pop = try clientOS.pop(u)
        for size in sizes {
            let msg = (0..<size).map { UInt8(truncatingIfNeeded: $0 % 251) }
            var answer: [UInt8]?
            var from: SocketAddressV4?
            // A datagram may be lost (nothing retransmits UDP): up to three sends. Answers of another size (late
            // answers to an earlier repeated send) are dropped.
            for _ in 0..<3 where answer == nil {
                let sga = try clientOS.sgaalloc(copying: msg)
                _ = try clientOS.pushTo(u, sga, to: to)
                try clientOS.sgafree(sga)
                _ = try p.run(timeout: .seconds(2)) {
                    if let r = clientOS.scheduler.take(pop) {
                        pop = try clientOS.pop(u)
                        if let s = r.sga {
                            if s.count == size {
                                answer = s.bytes
                                from = s.address
                            }
                            try clientOS.sgafree(s)
                        }
                    }
                    return answer != nil
                }
            }
            #expect(answer == msg, "UDP echo of \(size) bytes; \(p.statistics)")
            #expect(from == to)
            if answer == msg { ok += 1 }
        }
        print("CatnipPeerTests UDP \(peer), \(server): \(ok)/\(sizes.count) echoed; \(p.statistics)")
    }
}
#endif
