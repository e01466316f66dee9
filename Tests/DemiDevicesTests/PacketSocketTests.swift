import CDemiLinux
import DemiBuffers
import DemiCore
import DemiDevices
import DemiWire
import Foundation
import Testing
import TestHostFixture

/// AF_PACKET device tests over a veth pair between two namespaces made by ``TestHosts``. Without root (or `ip netns`)
/// they print why and pass, unless `DEMI_REQUIRE_ALL_SUITES=1`, when `TestHosts.create` throws.
@Suite(.serialized) struct PacketSocketTests {
    /// A local experimental EtherType (IEEE 802 "local experimental 1") for test frames.
    static let testEtherType: UInt16 = 0x88B5

    func hosts(_ test: String = #function) throws -> TestHosts? {
        let h = try TestHosts.create()
        if h == nil { print("PacketSocketTests.\(test): skipped (see above)") }
        return h
    }

    /// Opens a device on `veth0` in a namespace; nil (after printing why) without CAP_NET_RAW, unless
    /// `DEMI_REQUIRE_ALL_SUITES=1`.
    func open(_ h: TestHosts, _ host: TestHosts.Host, _ pool: BufferPool) throws -> PacketSocketDevice? {
        do {
            return try h.withNamespace(host) { try PacketSocketDevice(interface: h.interface, pool: pool) }
        } catch let e as Errno where e == .notPermitted && ProcessInfo.processInfo.environment["DEMI_REQUIRE_ALL_SUITES"] != "1" {
            print("PacketSocketTests: skipped: AF_PACKET needs CAP_NET_RAW (EPERM)")
            return nil
        }
    }

    func mac(_ b: [UInt8]) -> MACAddress { MACAddress(b[0], b[1], b[2], b[3], b[4], b[5]) }

    /// Polls `device` until `match` accepts a frame (returning its bytes) or `seconds` pass. Other frames are dropped.
    func awaitFrame(_ device: PacketSocketDevice, seconds: Double = 2, _ match: ([UInt8]) -> Bool) -> [UInt8]? {
        let out = UnsafeMutablePointer<DemiBuffer>.allocate(capacity: 32)
        defer { out.deallocate() }
        let deadline = Instant.now().rawValue + Int64(seconds * 1e9)
        while Instant.now().rawValue < deadline {
            let n = device.receive(into: out, capacity: 32, now: .now())
            var found: [UInt8]?
            for i in 0..<n {
                let bytes = out[i].array
                out[i].release()
                if found == nil && match(bytes) { found = bytes }
            }
            if let found { return found }
            if n == 0 { usleep(50) }
        }
        return nil
    }

    @Test func fixtureBuildsTwoHostsAndRemovesThem() throws {
        guard let h = try hosts() else { return }
        let names = [h.namespaceA, h.namespaceB]
        let b = try h.run(in: .b, ["ip", "-4", "-o", "addr", "show", "dev", "veth0"])
        #expect(b.status == 0 && b.output.contains(h.peerIP + "/24"))
        let a = try h.run(in: .a, ["ip", "-4", "-o", "addr", "show", "dev", "veth0"])
        #expect(a.status == 0 && a.output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty)
        let routes = try h.run(in: .b, ["ip", "route", "show", "default"])
        #expect(routes.output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty)
        #expect(h.ourMAC.count == 6 && h.peerMAC.count == 6 && h.ourMAC != h.peerMAC)
        if !h.offloadsDisabled { print("note: checksum offload could not be disabled on the veth pair") }
        // withNamespace: the interface index resolves inside, not outside (the root namespace has no veth0 of ours).
        let inside = try h.withNamespace(.a) { cdemi_if_index("veth0") }
        #expect(inside > 0)
        let t0 = Instant.now()
        let p = try h.spawn(in: .b, ["sleep", "30"])
        #expect(p.isRunning)
        p.terminate()
        p.waitUntilExit()
        #expect(p.terminatingSignal == SIGTERM)
        #expect(Instant.now().rawValue - t0.rawValue < 5_000_000_000)
        h.destroy()
        let list = try Process.output("/usr/sbin/ip", ["netns", "list"]) ?? ""
        for n in names { #expect(!list.contains(n)) }
    }

    @Test func arpRequestGetsTheKernelsReply() throws {
        guard let h = try hosts() else { return }
        defer { h.destroy() }
        let pool = BufferPool()
        guard let dev = try open(h, .a, pool) else { return }
        #expect(dev.macAddress == mac(h.ourMAC))
        #expect(dev.capabilities.mtu == 1500)
        #expect(throws: Errno.noDevice) {
            try h.withNamespace(.a) { _ = try PacketSocketDevice(interface: "nosuch0", pool: pool) }
        }

        let ours = IPv4Address(h.ourIP)!, peer = IPv4Address(h.peerIP)!
        let request = pool.allocate(size: ARPPacket.length)!
        ARPPacket(operation: .request, senderMAC: dev.macAddress, senderIP: ours, targetMAC: .zero, targetIP: peer)
            .emit(request.bytes)
        #expect(EthernetHeader(destination: .broadcast, source: dev.macAddress, etherType: EtherType.arp)
            .emit(prependingTo: request))
        #expect(dev.transmit(request, now: .now()))
        #expect(dev.pendingTransmit == 1)
        func endOfPass(_ d: some PhysicalLayer) { d.flush(now: .now()) }   // as the stack does, generically
        endOfPass(dev)
        #expect(dev.pendingTransmit == 0)

        let reply = awaitFrame(dev) { bytes in
            bytes.withUnsafeBytes { raw in
                guard let (eth, n) = try? EthernetHeader.parse(raw), eth.etherType == EtherType.arp,
                      let arp = try? ARPPacket.parse(UnsafeRawBufferPointer(rebasing: raw[n...]))
                else { return false }
                return arp.operation == .reply
            }
        }
        let bytes = try #require(reply, "no ARP reply from \(h.peerIP) within 2 s")
        try bytes.withUnsafeBytes { raw in
            let (eth, n) = try EthernetHeader.parse(raw)
            let arp = try ARPPacket.parse(UnsafeRawBufferPointer(rebasing: raw[n...]))
            #expect(eth.destination == dev.macAddress && eth.source == mac(h.peerMAC))
            #expect(arp.senderIP == peer && arp.senderMAC == mac(h.peerMAC))
            #expect(arp.targetIP == ours && arp.targetMAC == dev.macAddress)
        }
        let s = dev.statistics
        #expect(s.transmittedFrames == 1 && s.transmittedBytes == 42 && s.receivedFrames >= 1 && s.droppedFrames == 0)
        #expect(pool.buffersInUse == 0)
        // Our own request is not received back (PACKET_OUTGOING is skipped).
        let echoed = awaitFrame(dev, seconds: 0.05) { $0.count >= 14 && $0[6..<12].elementsEqual(h.ourMAC) }
        #expect(echoed == nil)
    }

    /// The test frame with sequence number `i`: our EtherType, then the sequence number, then a pattern.
    func testFrame(_ i: Int, from: MACAddress, to: MACAddress) -> [UInt8] {
        let length = 60 + (i * 37) % (1514 - 60 + 1)
        var f = [UInt8](repeating: 0, count: length)
        f.withUnsafeMutableBytes { b in
            EthernetHeader(destination: to, source: from, etherType: Self.testEtherType).emit(b)
            b.storeBytes(of: UInt32(i).bigEndian, toByteOffset: 14, as: UInt32.self)
        }
        for j in 18..<length { f[j] = UInt8(truncatingIfNeeded: i &+ j) }
        return f
    }

    @Test func burstOfAThousandFramesArrivesIntactAndInOrder() throws {
        guard let h = try hosts() else { return }
        defer { h.destroy() }
        let poolA = BufferPool(), poolB = BufferPool()
        guard let a = try open(h, .a, poolA) else { return }
        guard let b = try open(h, .b, poolB) else { return }
        let count = 1000
        let sent = (0..<count).map { testFrame($0, from: a.macAddress, to: b.macAddress) }
        let t0 = Instant.now()
        for i in 0..<count {
            let bytes = sent[i]
            let head: DemiBuffer
            if i % 10 == 0 {
                // A two-segment chain: the Ethernet header, then the rest.
                head = poolA.allocate(size: 14)!
                let tail = poolA.allocate(size: bytes.count - 14)!
                bytes.withUnsafeBytes { _ = head.write(UnsafeRawBufferPointer(rebasing: $0[0..<14])) }
                bytes.withUnsafeBytes { _ = tail.write(UnsafeRawBufferPointer(rebasing: $0[14...])) }
                head.header.pointee.next = tail.header
            } else {
                head = poolA.allocate(size: bytes.count)!
                bytes.withUnsafeBytes { _ = head.write($0) }
            }
            #expect(a.transmit(head, now: .now()))
        }
        a.flush()
        let t1 = Instant.now()

        var received: [[UInt8]] = []
        let out = UnsafeMutablePointer<DemiBuffer>.allocate(capacity: 64)
        defer { out.deallocate() }
        let deadline = Instant.now().rawValue + 3_000_000_000
        while received.count < count && Instant.now().rawValue < deadline {
            let n = b.receive(into: out, capacity: 64, now: .now())
            for i in 0..<n {
                let f = out[i]
                #expect(f.headroom == poolB.defaultHeadroom)
                let bytes = f.array
                f.release()
                if bytes.count >= 14 && bytes[12] == 0x88 && bytes[13] == 0xB5 { received.append(bytes) }
            }
            if n == 0 { usleep(20) }
        }
        #expect(received.count == count)
        #expect(received == sent, "frames differ or are out of order")
        let sa = a.statistics, sb = b.statistics
        #expect(sa.transmittedFrames == count && sa.droppedFrames == 0)
        #expect(sb.receivedFrames >= count && sb.droppedFrames == 0)
        #expect(poolA.buffersInUse == 0 && poolB.buffersInUse == 0)
        let us = Double((t1.rawValue - t0.rawValue)) / 1000 / Double(count)
        print("PacketSocket burst: \(count) frames (60-1514 B) a -> b, allocate + copy in + transmit \(String(format: "%.2f", us)) us/frame (debug build), \(count / 32 + 1) kicks")
    }

    /// Round trips of a 64-byte frame a -> b -> a on one thread: through two PacketSocketDevices (rings, pool
    /// buffers), and through bare C AF_PACKET sockets (`send`/`recvfrom`) as the baseline. Prints p50 and p99.
    @Test func pingPongLatency() throws {
        guard let h = try hosts() else { return }
        defer { h.destroy() }
        let rounds = 2000
        let poolA = BufferPool(), poolB = BufferPool()
        guard let a = try open(h, .a, poolA) else { return }
        guard let b = try open(h, .b, poolB) else { return }
        let frame = testFrame(0, from: a.macAddress, to: b.macAddress).prefix(64).map { $0 }

        func bounce(_ d: PacketSocketDevice, _ out: UnsafeMutablePointer<DemiBuffer>, deadline: Int64) -> DemiBuffer? {
            while Instant.now().rawValue < deadline {
                let n = d.receive(into: out, capacity: 1, now: .zero)
                if n == 1 {
                    if out[0].count == 64 && out[0].bytes[12] == 0x88 { return out[0] }
                    out[0].release()
                }
            }
            return nil
        }
        var rtts: [Int64] = []
        rtts.reserveCapacity(rounds)
        let out = UnsafeMutablePointer<DemiBuffer>.allocate(capacity: 1)
        defer { out.deallocate() }
        for _ in 0..<(rounds + 100) {
            let t0 = Instant.now().rawValue
            let f = poolA.allocate(size: 64)!
            frame.withUnsafeBytes { _ = f.write($0) }
            a.transmit(f, now: .zero)
            a.flush()
            guard let got = bounce(b, out, deadline: t0 + 1_000_000_000) else { break }
            // Echo: swap the MAC addresses in place and send the same buffer back.
            let p = got.bytes
            for j in 0..<6 { p.swapAt(j, j + 6) }
            b.transmit(got, now: .zero)
            b.flush()
            guard let back = bounce(a, out, deadline: t0 + 1_000_000_000) else { break }
            back.release()
            rtts.append(Instant.now().rawValue - t0)
        }
        #expect(rtts.count == rounds + 100)
        #expect(poolA.buffersInUse == 0 && poolB.buffersInUse == 0)

        // Bare C baseline: plain AF_PACKET sockets, same frame, same namespaces.
        let fa = try h.withNamespace(.a) { cdemi_packet_socket() }
        let fb = try h.withNamespace(.b) { cdemi_packet_socket() }
        defer { _ = cdemi_close(fa); _ = cdemi_close(fb) }
        let ia = try h.withNamespace(.a) { cdemi_if_index("veth0") }
        let ib = try h.withNamespace(.b) { cdemi_if_index("veth0") }
        #expect(fa >= 0 && fb >= 0 && cdemi_packet_bind(fa, ia) == 0 && cdemi_packet_bind(fb, ib) == 0)
        var c = [UInt64](repeating: 0, count: rounds + 100)
        let done = c.withUnsafeMutableBufferPointer { r in
            frame.withUnsafeBufferPointer { cdemi_packet_pingpong(fa, fb, $0.baseAddress, 64, Int32(rounds + 100), r.baseAddress) }
        }
        #expect(done == Int32(rounds + 100))

        func percentiles(_ xs: [Int64]) -> String {
            let s = xs.dropFirst(100).sorted()
            guard !s.isEmpty else { return "n/a" }
            let p = { (q: Double) in String(format: "%.1f", Double(s[min(s.count - 1, Int(Double(s.count) * q))]) / 1000) }
            return "p50 \(p(0.5)) us, p99 \(p(0.99)) us"
        }
        print("PacketSocket ping-pong (64 B, a->b->a, one thread, \(rounds) rounds): "
            + "PacketSocketDevice TPACKET_V2 rings \(percentiles(rtts)); "
            + "bare C AF_PACKET send/recvfrom \(percentiles(c.prefix(Int(max(0, done))).map { Int64($0) }))")
    }
}

extension Process {
    /// Runs a tool and returns its standard output (nil if it could not start).
    static func output(_ tool: String, _ args: [String]) throws -> String? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = FileHandle.nullDevice
        try p.run()
        let d = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: d, as: UTF8.self)
    }
}
