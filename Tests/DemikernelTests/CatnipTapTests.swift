import Testing

#if DPDK
import DemiBuffers
import DemiDPDK
import DemiDevices
import DemiStackLibOS
import Demikernel
import Foundation
import TestHostFixture

/// catnip's checksum offload on a port that has some: DPDK's `net_tap` (which fills in and verifies IPv4, UDP and TCP
/// checksums in software, as a NIC would in hardware; `net_af_packet` reports none). The tap's kernel side lives in
/// namespace a of a ``TestHosts`` pair with 198.18.N.9/24; our stack owns 198.18.N.1 on the DPDK side. The kernel
/// checks every checksum the port filled in (a TCP echo of 2 MB with SHA-256, UDP echoes, fragments included), and
/// frames with a bad IPv4 header checksum or a bad TCP checksum are dropped by the device before the stack (which no
/// longer checks those two). Needs root and the `DPDK` trait.
@Suite(.serialized) struct CatnipTapTests {
    @Test func checksumOffloadOnNetTap() throws {
        guard let hosts = try TestHosts.create() else {
            print("CatnipTapTests: skipped (see above)")
            return
        }
        defer { hosts.destroy() }
        let tap = "dtap\(getpid() % 10000)"
        let pool = BufferPool()
        let dev: DPDKDevice = try hosts.withNamespace(.a) {
            if !DPDKEnvironment.isInitialized {
                let huge = TestHugepages.reserve()
                do {
                    try DPDKEnvironment.initialize(arguments: DPDKEnvironment.defaultArguments(hugepages: huge != nil,
                                                                                                hugeDirectory: huge))
                } catch DPDKError.ealAlreadyInitialized {}   // another suite was first
            }
            return try DPDKDevice(attaching: "\(DPDKEnvironment.uniqueDeviceName("net_tap")),iface=\(tap)", pool: pool)
        }
        var os: DPDKLibOS? = nil
        defer {
            os = nil
            try? hosts.withNamespace(.a) { dev.close() }
        }
        let r = dev.reportedOffloads
        let usable = DPDKDevice.usableChecksumOffloads(receive: r.receive, transmit: r.transmit, enabled: true)
        print("CatnipTapTests: \(dev.deviceName) (\(dev.driverName)) reports checksum offloads rx \(r.receive.rawValue) "
              + "tx \(r.transmit.rawValue) (rx 0x\(String(r.receiveBits, radix: 16)), tx 0x\(String(r.transmitBits, radix: 16))); "
              + "offered to the stack: rx \(dev.capabilities.receiveOffload.rawValue) tx \(dev.capabilities.transmitOffload.rawValue)")
        #expect(dev.driverName == "net_tap")
        #expect(dev.capabilities.receiveOffload == usable.receive && dev.capabilities.transmitOffload == usable.transmit)
        #expect(r.receive.isSuperset(of: [.ipv4, .tcp]) && r.transmit.isSuperset(of: [.ipv4, .tcp]),
                "net_tap reports IPv4 and TCP checksum offload both ways")
        #expect(dev.capabilities.receiveOffload == [.ipv4, .tcp] && dev.capabilities.transmitOffload == [.ipv4, .tcp])

        let kernelIP = "198.18.\(hosts.subnetIndex).9"
        for cmd in [["sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/\(tap)/disable_ipv6"],
                    ["ip", "addr", "add", "\(kernelIP)/24", "dev", tap], ["ip", "link", "set", tap, "up"]] {
            let (status, out) = try hosts.run(in: .a, cmd)
            try #require(status == 0, "\(cmd.joined(separator: " ")): \(out)")
        }

        var sc = StackConfiguration(localIPv4: IPv4Address(hosts.ourIP)!, localMAC: dev.macAddress)
        sc.arp.requestTimeout = .milliseconds(200)
        let stack = DPDKLibOS(device: dev, pool: pool, configuration: sc)
        os = stack
        let listener = try stack.socket(domain: .inet, type: .stream)
        try stack.bind(listener, to: SocketAddressV4(.any, 7400))
        try stack.listen(listener, backlog: 4)
        var accept = try stack.accept(listener)
        let udp = try stack.socket(domain: .inet, type: .datagram)
        try stack.bind(udp, to: SocketAddressV4(.any, 7401))
        var udpPop = try stack.pop(udp)
        var conns: [QDesc: QToken] = [:]
        var pushes: [QToken] = []
        func step() throws {
            stack.poll(now: .now())
            let s = stack.scheduler
            if let r = s.take(accept) {
                if case .accepted(let c, _) = r.value { conns[c] = try stack.pop(c) }
                accept = try stack.accept(listener)
            }
            for (c, qt) in conns {
                guard let r = s.take(qt) else { continue }
                guard let sga = r.sga, sga.count > 0 else {
                    if let h = r.sga?.head { try stack.pool.freeFromApplication(h) }
                    conns[c] = nil
                    try stack.close(c)
                    continue
                }
                pushes.append(try stack.push(c, sga))
                try stack.pool.freeFromApplication(sga.head!)
                conns[c] = try stack.pop(c)
            }
            pushes.removeAll { s.take($0) != nil }
            if let r = s.take(udpPop) {
                if let sga = r.sga, let from = sga.address {
                    _ = try stack.pushTo(udp, sga, to: from)
                    try stack.pool.freeFromApplication(sga.head!)
                }
                udpPop = try stack.pop(udp)
            }
        }

        // The kernel's client: first two frames with a bad checksum (IPv4 header; TCP) on a packet socket, then a
        // TCP echo of 2 MB and UDP echoes (1 to 4000 bytes: fragments too).
        let script = """
            import socket, struct, sys, hashlib, random, time
            tap, dst_mac, src_ip, dst_ip = sys.argv[1], bytes.fromhex(sys.argv[2].replace(':', '')), sys.argv[3], sys.argv[4]
            def csum(b):
                if len(b) % 2: b += b'\\0'
                s = sum(struct.unpack('!%dH' % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
                return (~s) & 0xffff
            p = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); p.bind((tap, 0))
            src_mac = p.getsockname()[4]
            sip, dip = socket.inet_aton(src_ip), socket.inet_aton(dst_ip)
            def frame(bad_ip, bad_tcp):
                tcp = struct.pack('!HHIIBBHHH', 40000, 7400, 1, 0, 5 << 4, 0x02, 65535, 0, 0)
                c = csum(sip + dip + struct.pack('!BBH', 0, 6, len(tcp)) + tcp) ^ (0x1111 if bad_tcp else 0)
                tcp = tcp[:16] + struct.pack('!H', c) + tcp[18:]
                ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0, sip, dip)
                ip = ip[:10] + struct.pack('!H', csum(ip) ^ (0x2222 if bad_ip else 0)) + ip[12:]
                return dst_mac + src_mac + b'\\x08\\x00' + ip + tcp
            p.send(frame(True, False)); p.send(frame(False, True))
            time.sleep(0.2)
            total = 2_000_000
            data = random.Random(3).randbytes(total)
            s = socket.create_connection((dst_ip, 7400), timeout=20)
            s.sendall(data); s.shutdown(socket.SHUT_WR)
            got = bytearray()
            while True:
                b = s.recv(1 << 20)
                if not b: break
                got += b
            ok = hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(2)
            udp = 0
            for size in [1, 64, 1472, 4000]:
                msg = bytes(k % 251 for k in range(size))
                u.sendto(msg, (dst_ip, 7401))
                try:
                    d, _ = u.recvfrom(65535); udp += d == msg
                except socket.timeout:
                    pass
            print(len(got), ok, 'udp', udp)
            sys.exit(0 if ok and udp == 4 else 1)
            """
        let log = "/tmp/demi-catnip-tap-\(getpid()).log"
        defer { unlink(log) }
        let child = try hosts.spawn(in: .a, ["python3", "-c", script, tap, "\(dev.macAddress)", kernelIP, hosts.ourIP],
                                    outputPath: log)
        let end = Instant.now() + .seconds(120)
        while child.isRunning && Instant.now() < end { try step() }
        if child.isRunning { child.kill() }
        let settle = Instant.now() + .milliseconds(200)
        while Instant.now() < settle { try step() }
        let out = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        let stats = stack.totals
        print("CatnipTapTests: client: \(out); device checksum drops \(dev.checksumDrops), "
              + "stack checksum errors \(stats.checksumErrors), frames \(dev.statistics)")
        #expect(child.exitCode == 0, "client: \(out)")
        #expect(dev.checksumDrops == 2, "the two frames with a bad checksum were dropped by the device")
        #expect(stats.checksumErrors == 0)
    }
}
#endif
