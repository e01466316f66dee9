import Testing

#if !DPDK
/// Built without the `DPDK` trait: the DPDK device is not compiled in.
@Suite struct DPDKDeviceTests {
    @Test func skippedWithoutTrait() {
        print("DPDKDeviceTests: skipped: built without the DPDK trait (swift test --traits DPDK, needs libdpdk-dev)")
    }
}
#else
import CDemiLinux
import DemiBuffers
import DemiCore
import DemiDevices
import DemiDPDK
import DemiWire
import Foundation
import TestHostFixture

/// DPDK device tests: DPDK's `net_af_packet` virtual device on `veth0` of namespace a of a ``TestHosts`` pair, against
/// the kernel in namespace b and against AF_PACKET devices there. Without root (or `ip netns`) they print why and
/// pass, unless `DEMI_REQUIRE_ALL_SUITES=1`, when they fail.
///
/// The EAL is initialised once per process: the first test to run calls `rte_eal_init` on a thread inside namespace
/// a, with `--vdev=net_af_packet0,iface=veth0` among its arguments (upstream's way); later tests hot-plug a vdev with
/// a fresh name (`rte_dev_probe`), again from inside their namespace a. Every device is closed (its vdev removed)
/// before its namespaces are.
@Suite(.serialized) struct DPDKDeviceTests {
    static let testEtherType: UInt16 = 0x88B5

    func hosts(_ test: String = #function) throws -> TestHosts? {
        let h = try TestHosts.create()
        if h == nil { print("DPDKDeviceTests.\(test): skipped (see above)") }
        return h
    }

    /// Opens a DPDK device on `veth0` in namespace a: EAL start-up with the vdev the first time, hot-plug afterwards.
    /// `afPacket`: the vdev with ring frames that hold a whole reassembled datagram, and the matching configuration.
    func openDPDK(_ h: TestHosts, _ pool: BufferPool, afPacket: Bool = false,
                  configuration: DPDKDevice.Configuration = DPDKDevice.Configuration()) throws -> DPDKDevice {
        let c = afPacket ? DPDKDevice.Configuration.afPacket : configuration
        func devargs(_ name: String) -> String {
            afPacket ? DPDKEnvironment.afPacketDevargs(name, interface: h.interface) : "\(name),iface=\(h.interface)"
        }
        return try h.withNamespace(.a) { () throws -> DPDKDevice in
            if !DPDKEnvironment.isInitialized {
                let dir = TestHugepages.reserve()
                let args = DPDKEnvironment.defaultArguments(vdev: devargs("net_af_packet0"), hugepages: dir != nil,
                                                            hugeDirectory: dir)
                print("DPDKDeviceTests: rte_eal_init \(args.joined(separator: " "))")
                return try DPDKDevice(ealArguments: args, pool: pool, configuration: c)
            }
            return try DPDKDevice(attaching: devargs(DPDKEnvironment.uniqueDeviceName()), pool: pool, configuration: c)
        }
    }

    func openPacket(_ h: TestHosts, _ host: TestHosts.Host, _ pool: BufferPool) throws -> PacketSocketDevice {
        try h.withNamespace(host) { try PacketSocketDevice(interface: h.interface, pool: pool) }
    }

    func mac(_ b: [UInt8]) -> MACAddress { MACAddress(b[0], b[1], b[2], b[3], b[4], b[5]) }

    /// Polls `device` until `match` accepts a frame (returning its bytes) or `seconds` pass. Other frames are dropped.
    func awaitFrame(_ device: some PhysicalLayer, seconds: Double = 2, _ match: ([UInt8]) -> Bool) -> [UInt8]? {
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

    /// Polls `device` for test frames (``isTestFrame(_:)``) until `count` arrived or `seconds` pass; other frames are
    /// dropped. Returns the test frames' bytes in arrival order.
    func receiveTestFrames(_ device: some PhysicalLayer, count: Int, seconds: Double = 3) -> [[UInt8]] {
        let out = UnsafeMutablePointer<DemiBuffer>.allocate(capacity: 64)
        defer { out.deallocate() }
        var received: [[UInt8]] = []
        let deadline = Instant.now().rawValue + Int64(seconds * 1e9)
        while received.count < count && Instant.now().rawValue < deadline {
            let n = device.receive(into: out, capacity: 64, now: .now())
            for i in 0..<n {
                let bytes = out[i].array
                out[i].release()
                if isTestFrame(bytes) { received.append(bytes) }
            }
            if n == 0 { usleep(20) }
        }
        return received
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

    #if DEBUG
    static let build = "debug build"
    #else
    static let build = "release build"
    #endif

    /// The bytes of a (possibly chained) frame.
    func chainBytes(_ f: DemiBuffer) -> [UInt8] {
        var out: [UInt8] = []
        var h: UnsafeMutablePointer<BufferHeader>? = f.header
        while let c = h {
            out += UnsafeRawBufferPointer(start: c.pointee.storage.unsafelyUnwrapped + Int(c.pointee.offset),
                                          count: Int(c.pointee.length))
            h = c.pointee.next
        }
        return out
    }

    func isTestFrame(_ b: [UInt8]) -> Bool { b.count >= 18 && b[12] == 0x88 && b[13] == 0xB5 }

    @Test func arpRequestGetsTheKernelsReply() throws {
        guard let h = try hosts() else { return }
        let pool = BufferPool()
        let dev = try openDPDK(h, pool)
        defer {
            try? h.withNamespace(.a) { dev.close() }
            h.destroy()
        }
        let inUseAtStart = dev.mempoolInUse
        #expect(dev.driverName == "net_af_packet")
        #expect(dev.macAddress == mac(h.ourMAC))
        #expect(dev.capabilities.mtu == 1500 && dev.capabilities.maxBurst == 32)
        #expect(dev.capabilities.receiveOffload.isEmpty && dev.capabilities.transmitOffload.isEmpty)
        #expect(dev.link?.up == true)
        print("DPDK port \(dev.port) \(dev.deviceName) (\(dev.driverName)): MAC \(dev.macAddress), MTU \(dev.capabilities.mtu), "
            + "link \(dev.link.map { "\($0.up ? "up" : "down") \($0.speedMbps) Mb/s" } ?? "?"), reported offloads rx "
            + "0x\(String(dev.reportedOffloads.receiveBits, radix: 16)) tx 0x\(String(dev.reportedOffloads.transmitBits, radix: 16)), "
            + "mempool \(dev.mempoolAvailable) free")

        // The EAL is up once per process: a second start-up is refused, and so is a second device on the same port.
        let args = DPDKEnvironment.arguments ?? []
        #expect(throws: DPDKError.ealAlreadyInitialized(arguments: args)) {
            try DPDKEnvironment.initialize(arguments: DPDKEnvironment.defaultArguments())
        }
        #expect(throws: DPDKError.portInUse(dev.port)) { _ = try DPDKDevice(port: dev.port, pool: BufferPool()) }
        #expect(throws: DPDKError.self) {
            try h.withNamespace(.a) { _ = try DPDKDevice(attaching: "\(DPDKEnvironment.uniqueDeviceName()),iface=nosuch0", pool: BufferPool()) }
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

        // Receive zero-copy: the frame is the mbuf's data, wrapped.
        var kinds: Set<UInt8> = []
        var headrooms: Set<Int> = []
        let out = UnsafeMutablePointer<DemiBuffer>.allocate(capacity: 32)
        defer { out.deallocate() }
        var reply: [UInt8]?
        let deadline = Instant.now().rawValue + 2_000_000_000
        while reply == nil && Instant.now().rawValue < deadline {
            let n = dev.receive(into: out, capacity: 32, now: .now())
            for i in 0..<n {
                kinds.insert(out[i].header.pointee.kind)
                headrooms.insert(out[i].headroom)
                #expect(dev.wrappedMbufs >= 1)
                let bytes = out[i].array
                out[i].release()
                let isReply = bytes.withUnsafeBytes { raw -> Bool in
                    guard let (eth, k) = try? EthernetHeader.parse(raw), eth.etherType == EtherType.arp,
                          let arp = try? ARPPacket.parse(UnsafeRawBufferPointer(rebasing: raw[k...])) else { return false }
                    return arp.operation == .reply
                }
                if isReply { reply = bytes }
            }
            if n == 0 { usleep(50) }
        }
        let bytes = try #require(reply, "no ARP reply from \(h.peerIP) within 2 s")
        try bytes.withUnsafeBytes { raw in
            let (eth, n) = try EthernetHeader.parse(raw)
            let arp = try ARPPacket.parse(UnsafeRawBufferPointer(rebasing: raw[n...]))
            #expect(eth.destination == dev.macAddress && eth.source == mac(h.peerMAC))
            #expect(arp.senderIP == peer && arp.senderMAC == mac(h.peerMAC))
            #expect(arp.targetIP == ours && arp.targetMAC == dev.macAddress)
        }
        #expect(kinds == [BufferHeader.Kind.external])
        #expect(headrooms == [128])
        let s = dev.statistics
        #expect(s.transmittedFrames == 1 && s.transmittedBytes == 42 && s.receivedFrames >= 1 && s.droppedFrames == 0)
        #expect(pool.buffersInUse == 0 && dev.wrappedMbufs == 0)
        #expect(dev.mempoolInUse == inUseAtStart)
    }

    @Test func burstOfAThousandFramesEachWayIntactAndEveryMbufReturned() throws {
        guard let h = try hosts() else { return }
        let poolA = BufferPool(), poolB = BufferPool()
        let a = try openDPDK(h, poolA)
        defer {
            try? h.withNamespace(.a) { a.close() }
            h.destroy()
        }
        let b = try openPacket(h, .b, poolB)
        let inUseAtStart = a.mempoolInUse
        let count = 1000
        let out = UnsafeMutablePointer<DemiBuffer>.allocate(capacity: 64)
        defer { out.deallocate() }

        // a (DPDK) -> b (AF_PACKET): every tenth frame a two-segment chain; copied into mbufs.
        let sent = (0..<count).map { testFrame($0, from: a.macAddress, to: b.macAddress) }
        let t0 = Instant.now()
        for i in 0..<count {
            let bytes = sent[i]
            let head: DemiBuffer
            if i % 10 == 0 {
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
        let received = receiveTestFrames(b, count: count)
        #expect(received.count == count)
        #expect(received == sent, "frames differ or are out of order")
        let sa = a.statistics
        #expect(sa.transmittedFrames == count && sa.droppedFrames == 0)
        #expect(poolA.buffersInUse == 0 && poolB.buffersInUse == 0)
        #expect(a.mempoolInUse == inUseAtStart, "every mbuf sent is back in the mempool")
        print("DPDK burst: \(count) frames (60-1514 B) DPDK a -> AF_PACKET b, allocate + copy into mbufs + transmit "
            + "\(String(format: "%.2f", Double(t1.rawValue - t0.rawValue) / 1000 / Double(count))) us/frame (\(Self.build)), "
            + "\(a.transmitBursts) tx bursts")

        // b (AF_PACKET) -> a (DPDK): received zero-copy; all 1000 held at once, then released.
        let back = (0..<count).map { testFrame($0 + count, from: b.macAddress, to: a.macAddress) }
        var held: [DemiBuffer] = []
        held.reserveCapacity(count)
        let deadline = Instant.now().rawValue + 3_000_000_000
        var next = 0
        while held.count < count && Instant.now().rawValue < deadline {
            // 32 at a time (the DPDK vdev's RX ring holds 512 frames), reading in between.
            while next < count && next - held.count < 256 {
                let bytes = back[next]
                let f = poolB.allocate(size: bytes.count)!
                bytes.withUnsafeBytes { _ = f.write($0) }
                #expect(b.transmit(f, now: .now()))
                next += 1
                if next % 32 == 0 { break }
            }
            b.flush()
            let n = a.receive(into: out, capacity: 64, now: .now())
            for i in 0..<n {
                if isTestFrame(out[i].array) { held.append(out[i]) } else { out[i].release() }
            }
        }
        #expect(held.count == count)
        #expect(held.map(\.array) == back, "frames differ or are out of order")
        #expect(held.allSatisfy { $0.header.pointee.kind == BufferHeader.Kind.external })
        #expect(a.wrappedMbufs == held.count)
        #expect(a.mempoolInUse >= inUseAtStart + held.count)
        for f in held { f.release() }
        #expect(a.wrappedMbufs == 0)
        #expect(poolA.buffersInUse == 0 && poolB.buffersInUse == 0)
        #expect(a.mempoolInUse == inUseAtStart, "every received mbuf is back in the mempool")
        #expect(a.statistics.droppedFrames == 0 && a.statistics.receivedFrames >= count)
    }

    /// DPDK's `net_af_xdp` on the same veth (an AF_XDP socket in copy mode under the PMD): test frames (single and
    /// two-piece) both ways against an AF_PACKET device in b, intact and in order, every mbuf back.
    @Test func netAfXdpCarriesFramesBothWays() throws {
        guard let h = try hosts() else { return }
        let poolA = BufferPool(), poolB = BufferPool()
        if !DPDKEnvironment.isInitialized {
            let first = try openDPDK(h, BufferPool())
            try h.withNamespace(.a) { first.close() }
        }
        let a = try h.withNamespace(.a) { () throws -> DPDKDevice in
            try DPDKDevice(attaching: "\(DPDKEnvironment.uniqueDeviceName("net_af_xdp")),iface=\(h.interface),start_queue=0,queue_count=1",
                           pool: poolA)
        }
        defer {
            try? h.withNamespace(.a) { a.close() }
            h.destroy()
        }
        #expect(a.driverName == "net_af_xdp")
        #expect(a.macAddress == mac(h.ourMAC))
        let b = try openPacket(h, .b, poolB)
        let inUseAtStart = a.mempoolInUse
        let out = UnsafeMutablePointer<DemiBuffer>.allocate(capacity: 64)
        defer { out.deallocate() }
        // a -> b: half copied whole, half a header with a payload mbuf attached.
        let count = 200
        var sent: [[UInt8]] = []
        for i in 0..<count {
            let bytes = testFrame(i, from: a.macAddress, to: b.macAddress)
            sent.append(bytes)
            if i % 2 == 0 {
                let f = poolA.allocate(size: bytes.count)!
                bytes.withUnsafeBytes { _ = f.write($0) }
                #expect(a.transmit(f, now: .now()))
            } else {
                let head = poolA.allocate(size: 18)!
                #expect(a.allocateTransmitBuffer(size: bytes.count - 18) == nil)
                let payload = poolA.allocate(size: bytes.count - 18)!
                bytes.withUnsafeBytes {
                    _ = head.write(UnsafeRawBufferPointer(rebasing: $0[0..<18]))
                    _ = payload.write(UnsafeRawBufferPointer(rebasing: $0[18...]))
                }
                head.header.pointee.next = payload.header
                #expect(a.transmit(head, now: .now()))
            }
            if i % 16 == 15 { a.flush() }
        }
        a.flush()
        let received = receiveTestFrames(b, count: count)
        #expect(received == sent, "\(received.count) of \(count) frames, in order and intact")
        // net_af_xdp sends only a chain's first segment: no chains, so nothing is attached and sgaalloc-style
        // buffers come from the pool.
        #expect(a.attachedTransmits == 0 && a.transmitBuffersAllocated == 0)
        // b -> a.
        let back = (0..<count).map { testFrame($0 + count, from: b.macAddress, to: a.macAddress) }
        var got: [[UInt8]] = []
        var next = 0
        let deadline = Instant.now().rawValue + 3_000_000_000
        while got.count < count && Instant.now().rawValue < deadline {
            while next < count && next - got.count < 32 {
                let f = poolB.allocate(size: back[next].count)!
                back[next].withUnsafeBytes { _ = f.write($0) }
                #expect(b.transmit(f, now: .now()))
                next += 1
            }
            b.flush()
            let n = a.receive(into: out, capacity: 64, now: .now())
            for i in 0..<n {
                let bytes = out[i].array
                out[i].release()
                if isTestFrame(bytes) { got.append(bytes) }
            }
        }
        #expect(got == back, "\(got.count) of \(count) frames, in order and intact")
        #expect(poolA.buffersInUse == 0 && poolB.buffersInUse == 0)
        // The PMD keeps its fill ring stocked with mbufs, refilled lazily: allow one burst.
        #expect(a.wrappedMbufs == 0 && a.mempoolInUse <= inUseAtStart + 32, "every mbuf is back")
        print("DPDK net_af_xdp: \(count) frames each way; port \(a.deviceName), offloads rx \(a.capabilities.receiveOffload.rawValue) "
            + "tx \(a.capabilities.transmitOffload.rawValue), MTU \(a.capabilities.mtu)")
    }

    /// Zero-copy transmit: payload in mbufs (from `allocateTransmitBuffer`, as `sgaalloc` on catnip gives, and a
    /// received frame's payload) goes out attached behind a header copied into a small mbuf, twice from the same
    /// buffer (as a TCP retransmission does) and through views; every frame arrives intact and every mbuf (direct and
    /// indirect) comes back once the buffers are released.
    @Test func zeroCopyTransmitAttachesPayloadInMbufs() throws {
        guard let h = try hosts() else { return }
        let poolA = BufferPool(), poolB = BufferPool()
        var config = DPDKDevice.Configuration()
        config.transmitCopyBelow = 0   // attach every piece, however short
        let a = try openDPDK(h, poolA, configuration: config)
        defer {
            try? h.withNamespace(.a) { a.close() }
            h.destroy()
        }
        let b = try openPacket(h, .b, poolB)
        let inUseAtStart = a.mempoolInUse
        let count = 200
        var expected: [[UInt8]] = []
        func header(_ i: Int) -> DemiBuffer {
            let hb = poolA.allocate(size: 18)!
            EthernetHeader(destination: b.macAddress, source: a.macAddress, etherType: Self.testEtherType).emit(hb.bytes)
            hb.bytes.storeBytes(of: UInt32(i).bigEndian, toByteOffset: 14, as: UInt32.self)
            return hb
        }
        for i in 0..<count {
            let length = 46 + (i * 53) % 1400
            let payload = try #require(a.allocateTransmitBuffer(size: length))
            #expect(payload.header.pointee.kind == BufferHeader.Kind.external)
            for k in 0..<length { payload.bytes[k] = UInt8(truncatingIfNeeded: i &* 3 &+ k) }
            // Frame 1: the whole buffer; frame 2: a view from byte 5 (the buffer itself stays with the "application").
            payload.retain()
            let h1 = header(2 * i)
            expected.append(h1.array + payload.array)
            h1.header.pointee.next = payload.header
            #expect(a.transmit(h1, now: .now()))
            let v = try #require(poolA.view(of: payload, offset: 5))
            let h2 = header(2 * i + 1)
            expected.append(h2.array + Array(payload.array[5...]))
            h2.header.pointee.next = v.header
            #expect(a.transmit(h2, now: .now()))
            payload.release()
        }
        a.flush()
        #expect(a.attachedTransmits == 2 * count && a.attachedPieces == 2 * count)
        let out = UnsafeMutablePointer<DemiBuffer>.allocate(capacity: 64)
        defer { out.deallocate() }
        let received = receiveTestFrames(b, count: 2 * count)
        // Short frames come back padded to 60 bytes.
        #expect(received.count == 2 * count)
        #expect(zip(received, expected).allSatisfy { r, e in Array(r.prefix(e.count)) == e }, "frames differ")
        #expect(poolA.buffersInUse == 0)
        #expect(a.mempoolInUse == inUseAtStart, "every direct and indirect mbuf is back")

        // A received frame's payload echoed behind a new header: attached to the received mbuf, not copied.
        let f = poolB.allocate(size: 600)!
        EthernetHeader(destination: a.macAddress, source: b.macAddress, etherType: Self.testEtherType).emit(f.bytes)
        for k in 14..<600 { f.bytes[k] = UInt8(truncatingIfNeeded: k &* 11) }
        let sentBack = Array(f.array[18...])
        #expect(b.transmit(f, now: .now()))
        b.flush()
        var got: DemiBuffer?
        let deadline = Instant.now().rawValue + 3_000_000_000
        while got == nil && Instant.now().rawValue < deadline {
            let n = a.receive(into: out, capacity: 64, now: .now())
            for i in 0..<n { if got == nil && isTestFrame(out[i].array) { got = out[i] } else { out[i].release() } }
        }
        let rx = try #require(got)
        #expect(rx.trimFront(18))
        let hb = header(9999)
        hb.header.pointee.next = rx.header
        let attachedBefore = a.attachedPieces
        #expect(a.transmit(hb, now: .now()))
        a.flush()
        #expect(a.attachedPieces == attachedBefore + 1)
        let echoed = awaitFrame(b) { isTestFrame($0) && $0[14..<18] == [0, 0, 0x27, 0x0F] }
        #expect(echoed.map { Array($0[18...]) } == sentBack)
        #expect(poolA.buffersInUse == 0 && a.wrappedMbufs == 0)
        #expect(a.mempoolInUse == inUseAtStart)
    }

    /// Round trips of a 64-byte frame on one thread, all in one run: DPDK a -> AF_PACKET b -> DPDK a (b echoes),
    /// AF_PACKET b -> DPDK a -> AF_PACKET b (a echoes the received mbuf zero-copy), and, after the DPDK device is
    /// closed, AF_PACKET a -> AF_PACKET b -> AF_PACKET a as the baseline. Prints p50 and p99.
    @Test func pingPongLatency() throws {
        guard let h = try hosts() else { return }
        let rounds = 2000, warmup = 100
        let poolA = BufferPool(), poolB = BufferPool(), poolC = BufferPool()
        let dpdk = try openDPDK(h, poolA)
        defer {
            try? h.withNamespace(.a) { dpdk.close() }
            h.destroy()
        }
        let b = try openPacket(h, .b, poolB)
        let inUseAtStart = dpdk.mempoolInUse
        let out = UnsafeMutablePointer<DemiBuffer>.allocate(capacity: 1)
        defer { out.deallocate() }

        func bounce(_ d: some PhysicalLayer, deadline: Int64) -> DemiBuffer? {
            while Instant.now().rawValue < deadline {
                if d.receive(into: out, capacity: 1, now: .zero) == 1 {
                    if out[0].count == 64 && out[0].bytes[12] == 0x88 { return out[0] }
                    out[0].release()
                }
            }
            return nil
        }
        /// `x` sends a fresh frame, `y` echoes it back (MACs swapped in place, the same buffer), `x` receives it.
        func run(_ x: some PhysicalLayer, _ xPool: BufferPool, _ y: some PhysicalLayer, frame: [UInt8]) -> [Int64] {
            var rtts: [Int64] = []
            rtts.reserveCapacity(rounds + warmup)
            for _ in 0..<(rounds + warmup) {
                let t0 = Instant.now().rawValue
                let f = xPool.allocate(size: 64)!
                frame.withUnsafeBytes { _ = f.write($0) }
                x.transmit(f, now: .zero)
                x.flush(now: .zero)
                guard let got = bounce(y, deadline: t0 + 1_000_000_000) else { break }
                let p = got.bytes
                for j in 0..<6 { p.swapAt(j, j + 6) }
                y.transmit(got, now: .zero)
                y.flush(now: .zero)
                guard let back = bounce(x, deadline: t0 + 1_000_000_000) else { break }
                back.release()
                rtts.append(Instant.now().rawValue - t0)
            }
            return rtts
        }
        func percentiles(_ xs: [Int64]) -> String {
            let s = xs.dropFirst(warmup).sorted()
            guard !s.isEmpty else { return "n/a" }
            let p = { (q: Double) in String(format: "%.1f", Double(s[min(s.count - 1, Int(Double(s.count) * q))]) / 1000) }
            return "p50 \(p(0.5)) us, p99 \(p(0.99)) us"
        }

        let toB = testFrame(0, from: dpdk.macAddress, to: b.macAddress).prefix(64).map { $0 }
        let dpdkFirst = run(dpdk, poolA, b, frame: toB)
        let zeroCopyBefore = dpdk.zeroCopyTransmits
        let toA = testFrame(0, from: b.macAddress, to: dpdk.macAddress).prefix(64).map { $0 }
        let dpdkEchoes = run(b, poolB, dpdk, frame: toA)
        #expect(dpdkFirst.count == rounds + warmup && dpdkEchoes.count == rounds + warmup)
        #expect(dpdk.zeroCopyTransmits - zeroCopyBefore == dpdkEchoes.count, "echoed mbufs are sent without a copy")
        #expect(poolA.buffersInUse == 0 && poolB.buffersInUse == 0 && dpdk.wrappedMbufs == 0)
        #expect(dpdk.mempoolInUse == inUseAtStart)
        #expect(dpdk.statistics.droppedFrames == 0)

        // Baseline in the same run: AF_PACKET on a's veth0 instead of DPDK.
        try h.withNamespace(.a) { dpdk.close() }
        let c = try openPacket(h, .a, poolC)
        let packetOnly = run(c, poolC, b, frame: toB)
        #expect(packetOnly.count == rounds + warmup)
        #expect(poolC.buffersInUse == 0 && poolB.buffersInUse == 0)

        print("DPDK ping-pong (64 B, one thread, \(rounds) rounds, \(Self.build)): "
            + "DPDK net_af_packet a -> AF_PACKET b echo: \(percentiles(dpdkFirst)); "
            + "AF_PACKET b -> DPDK a echo (zero-copy): \(percentiles(dpdkEchoes)); "
            + "AF_PACKET a -> AF_PACKET b echo: \(percentiles(packetOnly))")
    }
    /// net_af_packet has the kernel reassemble IPv4 fragments (its fanout group has `PACKET_FANOUT_FLAG_DEFRAG`), so
    /// a fragmented datagram arrives as one frame as long as the whole datagram. With the default 2048-byte ring
    /// frames it was cut to about 1,980 bytes; with ``DPDKEnvironment/afPacketDevargs`` and the `.afPacket`
    /// configuration (64 KiB receive mbufs) it arrives whole, up to 65,328 bytes of IP datagram.
    @Test func kernelReassembledDatagramsArriveWhole() throws {
        guard let h = try hosts() else { return }
        let pool = BufferPool()
        let dev = try openDPDK(h, pool, afPacket: true)
        defer {
            try? h.withNamespace(.a) { dev.close() }
            h.destroy()
        }
        #expect(dev.capabilities.mtu == 1500)
        #expect(DPDKEnvironment.afPacketFrameSize % 16 == 0
            && (DPDKEnvironment.afPacketFrameSize * DPDKEnvironment.afPacketFramesPerBlock) % Int(getpagesize()) == 0)
        let inUseAtStart = dev.mempoolInUse
        let ourMAC = h.ourMAC.map { String(format: "%02x", $0) }.joined(separator: ":")
        _ = try h.run(in: .b, ["ip", "neigh", "replace", h.ourIP, "lladdr", ourMAC, "dev", h.interface])
        let sizes = [1473, 8000, 30000, 65000]
        let script = """
            import socket, sys
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for size in [int(x) for x in sys.argv[2:]]:
                s.sendto(bytes((size + k) % 251 for k in range(size)), (sys.argv[1], 9999))
            """
        let child = try h.spawn(in: .b, ["python3", "-c", script, h.ourIP] + sizes.map(String.init))
        _ = child.waitUntilExit()

        let out = UnsafeMutablePointer<DemiBuffer>.allocate(capacity: 32)
        defer { out.deallocate() }
        var got: [Int: [UInt8]] = [:]
        var kinds: Set<UInt8> = []
        let deadline = Instant.now().rawValue + 3_000_000_000
        while got.count < sizes.count && Instant.now().rawValue < deadline {
            let n = dev.receive(into: out, capacity: 32, now: .now())
            for i in 0..<n {
                kinds.insert(out[i].header.pointee.kind)
                let f = chainBytes(out[i])
                out[i].releaseChain()
                // IPv4 to UDP port 9999: the payload, keyed by the UDP length.
                guard f.count >= 42, f[12] == 0x08, f[13] == 0x00, f[23] == 17, f[36] == 0x27, f[37] == 0x0F
                else { continue }
                #expect(f[20] & 0x3F == 0 && f[21] == 0, "not a fragment: the kernel reassembled it")
                let total = Int(f[16]) << 8 | Int(f[17])
                #expect(f.count == 14 + total)
                got[total - 28] = Array(f[42...])
            }
            if n == 0 { usleep(100) }
        }
        for size in sizes {
            let want = (0..<size).map { UInt8((size + $0) % 251) }
            #expect(got[size] == want, "a \(size)-byte datagram arrives whole")
        }
        #expect(kinds == [BufferHeader.Kind.external], "wrapped without a copy while the mempool is not low")
        #expect(dev.statistics.droppedFrames == 0 && dev.copiedReceives == 0)
        #expect(pool.buffersInUse == 0 && dev.wrappedMbufs == 0 && dev.mempoolInUse == inUseAtStart)
    }

    /// Copy-on-pressure: a receiver that holds every frame it gets (as TCP queues and unread datagrams do) would
    /// drain the mempool, after which the driver receives nothing more. Below half the mempool free, frames are
    /// copied into pool buffers and their mbufs returned at once, so reception goes on.
    @Test func copyOnPressureKeepsReceivingWhileBuffersAreHeld() throws {
        guard let h = try hosts() else { return }
        let poolA = BufferPool(), poolB = BufferPool()
        var c = DPDKDevice.Configuration()
        c.mbufCount = 255
        let a = try openDPDK(h, poolA, configuration: c)
        defer {
            try? h.withNamespace(.a) { a.close() }
            h.destroy()
        }
        let b = try openPacket(h, .b, poolB)
        let inUseAtStart = a.mempoolInUse
        let count = 1000, batch = 50
        let out = UnsafeMutablePointer<DemiBuffer>.allocate(capacity: 64)
        defer { out.deallocate() }
        var held: [DemiBuffer] = []
        var seen = Set<Int>()
        var kinds: [UInt8: Int] = [:]
        for start in stride(from: 0, to: count, by: batch) {
            for i in start..<(start + batch) {
                let bytes = testFrame(i, from: b.macAddress, to: a.macAddress)
                let f = poolB.allocate(size: bytes.count)!
                bytes.withUnsafeBytes { _ = f.write($0) }
                b.transmit(f, now: .now())
            }
            b.flush(now: .now())
            let deadline = Instant.now().rawValue + 2_000_000_000
            while seen.count < start + batch && Instant.now().rawValue < deadline {
                let n = a.receive(into: out, capacity: 64, now: .now())
                for i in 0..<n {
                    let f = chainBytes(out[i])
                    guard isTestFrame(f) else { out[i].releaseChain(); continue }
                    let seq = f.withUnsafeBytes { Int(UInt32(bigEndian: $0.loadUnaligned(fromByteOffset: 14, as: UInt32.self))) }
                    #expect(f == testFrame(seq, from: b.macAddress, to: a.macAddress))
                    seen.insert(seq)
                    kinds[out[i].header.pointee.kind, default: 0] += 1
                    held.append(out[i])
                }
                if n == 0 { usleep(50) }
            }
        }
        #expect(seen.count == count, "every frame received while \(held.count) are held")
        #expect(a.copiedReceives > 0 && a.wrappedMbufs <= 255 / 2 + a.capabilities.maxBurst)
        #expect(kinds[BufferHeader.Kind.external, default: 0] == a.wrappedMbufs)
        #expect(a.receiveMempoolAvailable > 0)
        for f in held { f.releaseChain() }
        held.removeAll()
        #expect(a.wrappedMbufs == 0 && poolA.buffersInUse == 0)
        #expect(a.mempoolInUse == inUseAtStart, "every received mbuf is back in the mempool")
        #expect(a.statistics.droppedFrames == 0)
    }

    /// Upstream-style `dpdk.eal_init` with a plain `net_af_packet` vdev gets whole-datagram ring frames (the driver's
    /// 2 KB default would truncate datagrams the kernel reassembled); a vdev with its own geometry is left alone.
    /// Pure argument handling: needs neither root nor a running EAL.
    @Test func plainAfPacketVdevsGetWholeDatagramFrames() {
        let whole = DPDKEnvironment.afPacketDevargs("net_af_packet0", interface: "veth0")
        var (args, afPacket) = DPDKEnvironment.wholeDatagramArguments(["--no-huge", "--vdev=net_af_packet0,iface=veth0"])
        #expect(args == ["--no-huge", "--vdev=" + whole] && afPacket)
        (args, afPacket) = DPDKEnvironment.wholeDatagramArguments(["--vdev", "net_af_packet0,iface=veth0,qpairs=1,framecnt=64"])
        #expect(args == ["--vdev", DPDKEnvironment.afPacketDevargs("net_af_packet0", interface: "veth0", frames: 64) + ",qpairs=1"])
        #expect(afPacket)
        let own = ["--vdev=net_af_packet0,iface=veth0,blocksz=4096,framesz=2048,framecnt=512"]
        (args, afPacket) = DPDKEnvironment.wholeDatagramArguments(own)
        #expect(args == own && afPacket, "the user's own ring geometry is kept; the device still gets 64 KiB receive mbufs")
        (args, afPacket) = DPDKEnvironment.wholeDatagramArguments(["--no-pci", "--vdev=net_tap0,iface=dtap0"])
        #expect(args == ["--no-pci", "--vdev=net_tap0,iface=dtap0"] && !afPacket)
        #expect(whole.contains("framesz=\(DPDKEnvironment.afPacketFrameSize)"))
    }

    /// The receive ring of a `net_af_packet` vdev, from the EAL arguments (its `framecnt`, else the driver's 512), and
    /// the TCP window catnip offers through it (three quarters of the ring in segments), so that a sender's burst of a
    /// whole window fits the ring. Pure argument handling.
    @Test func afPacketRingFramesBoundTheReceiveWindow() {
        let ours = DPDKEnvironment.afPacketDevargs("net_af_packet0", interface: "veth0")
        #expect(DPDKEnvironment.afPacketRingFrames(["--no-pci", "--vdev=" + ours]) == DPDKEnvironment.afPacketDefaultFrames)
        #expect(DPDKEnvironment.afPacketRingFrames(["--vdev", "net_af_packet0,iface=veth0,framecnt=1024"]) == 1024)
        #expect(DPDKEnvironment.afPacketRingFrames(["--vdev=net_af_packet0,iface=veth0,blocksz=4096,framesz=2048"]) == 512)
        #expect(DPDKEnvironment.afPacketRingFrames(["--vdev=net_af_packet0,iface=a,framecnt=64",
                                                    "--vdev=net_af_packet1,iface=b,framecnt=128"]) == 64)
        #expect(DPDKEnvironment.afPacketRingFrames(["--no-pci", "--vdev=net_tap0,iface=dtap0"]) == nil)
        #expect(DPDKEnvironment.afPacketReceiveWindow(ringFrames: 256, segmentSize: 1460) == 192 * 1460)
        #expect(DPDKEnvironment.afPacketReceiveWindow(ringFrames: 8, segmentSize: 1460) == 16 * 1460)
    }

    /// Which of the checksum offloads a port reports the device enables and offers the stack: IPv4 header and TCP, in
    /// each direction separately; never UDP (a datagram's checksum spans its fragments); none when turned off.
    @Test func checksumOffloadsDerivedFromWhatThePortReports() {
        let all: ChecksumOffload = [.ipv4, .udp, .tcp]
        var u = DPDKDevice.usableChecksumOffloads(receive: all, transmit: all, enabled: true)
        #expect(u.receive == [.ipv4, .tcp] && u.transmit == [.ipv4, .tcp])
        u = DPDKDevice.usableChecksumOffloads(receive: [.udp], transmit: [.ipv4], enabled: true)
        #expect(u.receive == [] && u.transmit == [.ipv4])
        u = DPDKDevice.usableChecksumOffloads(receive: [.tcp], transmit: [], enabled: true)
        #expect(u.receive == [.tcp] && u.transmit == [])
        u = DPDKDevice.usableChecksumOffloads(receive: all, transmit: all, enabled: false)
        #expect(u.receive == [] && u.transmit == [])
        #expect(DPDKDevice.Configuration().checksumOffload, "on by default")
    }
}
#endif
