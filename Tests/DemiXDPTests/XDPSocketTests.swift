import Testing

#if !AFXDP
/// Built without the `AFXDP` trait: the AF_XDP device is not compiled in.
@Suite struct XDPSocketTests {
    @Test func skippedWithoutTrait() {
        print("XDPSocketTests: skipped: built without the AFXDP trait (swift test --traits AFXDP, needs libxdp-dev libbpf-dev)")
    }
}
#else
import CDemiLinux
import DemiBuffers
import DemiCore
import DemiDevices
import DemiWire
import DemiXDP
import Foundation
import TestHostFixture

/// AF_XDP device tests over a veth pair between two namespaces made by ``TestHosts``. Without root (or `ip netns`, or
/// the kernel's AF_XDP) they print why and pass, unless `DEMI_REQUIRE_ALL_SUITES=1`, when they fail.
///
/// Serialized: libxdp keeps per-interface state keyed by interface index, and `veth0` has the same index in every
/// test namespace.
@Suite(.serialized) struct XDPSocketTests {
    static let testEtherType: UInt16 = 0x88B5
    #if DEBUG
    static let build = "debug build"
    #else
    static let build = "release build"
    #endif
    static var required: Bool { ProcessInfo.processInfo.environment["DEMI_REQUIRE_ALL_SUITES"] == "1" }

    func hosts(_ test: String = #function) throws -> TestHosts? {
        let h = try TestHosts.create()
        if h == nil { print("XDPSocketTests.\(test): skipped (see above)") }
        return h
    }

    /// Opens an XDP device on `veth0` in a namespace; nil (after printing why) when the kernel or the process cannot
    /// (EPERM, EOPNOTSUPP, ENOSYS, EAFNOSUPPORT), unless `DEMI_REQUIRE_ALL_SUITES=1`.
    func openXDP(_ h: TestHosts, _ host: TestHosts.Host, _ pool: BufferPool,
                 _ mode: XDPSocketDevice.AttachMode = .generic,
                 configure: (inout XDPSocketDevice.Configuration) -> Void = { _ in }) throws -> XDPSocketDevice? {
        var c = XDPSocketDevice.Configuration()
        c.attachMode = mode
        configure(&c)
        do {
            // The kernel releases a closed AF_XDP socket's UMEM and program in deferred work, so opening the same
            // queue right after a test closed one can fail with EBUSY for a moment: try again for up to 2 s.
            var attempts = 0
            while true {
                do {
                    return try h.withNamespace(host) {
                        try XDPSocketDevice(interface: h.interface, pool: pool, configuration: c)
                    }
                } catch let e as Errno where e == .busy && attempts < 100 {
                    attempts += 1
                    usleep(20_000)
                }
            }
        } catch let e as Errno where !Self.required
            && [Errno.notPermitted, .notSupported, .notImplemented, .addressFamilyNotSupported].contains(e) {
            print("XDPSocketTests: skipped: AF_XDP (\(mode)) unavailable: \(e)")
            return nil
        }
    }

    func openPacket(_ h: TestHosts, _ host: TestHosts.Host, _ pool: BufferPool) throws -> PacketSocketDevice? {
        do {
            return try h.withNamespace(host) { try PacketSocketDevice(interface: h.interface, pool: pool) }
        } catch let e as Errno where e == .notPermitted && !Self.required {
            print("XDPSocketTests: skipped: AF_PACKET needs CAP_NET_RAW (EPERM)")
            return nil
        }
    }

    /// Closes the device in its namespace (it would switch there by itself too).
    func close(_ h: TestHosts, _ host: TestHosts.Host, _ d: XDPSocketDevice) throws {
        try h.withNamespace(host) { d.close() }
    }

    func mac(_ b: [UInt8]) -> MACAddress { MACAddress(b[0], b[1], b[2], b[3], b[4], b[5]) }

    /// Every UMEM frame is free, with the kernel for receiving, or in flight for transmit: none is lost or held.
    func expectAllFramesAccounted(_ d: XDPSocketDevice, _ pool: BufferPool, sourceLocation: SourceLocation = #_sourceLocation) {
        // Let the kernel complete what is in flight (copy mode completes on skb free).
        let out = UnsafeMutablePointer<DemiBuffer>.allocate(capacity: 32)
        defer { out.deallocate() }
        let deadline = Instant.now().rawValue + 1_000_000_000
        while d.transmitInFlight > 0 && Instant.now().rawValue < deadline {
            let n = d.receive(into: out, capacity: 32, now: .now())
            for i in 0..<n { out[i].release() }
            usleep(100)
        }
        #expect(d.heldFrames == 0, sourceLocation: sourceLocation)
        #expect(d.transmitInFlight == 0, sourceLocation: sourceLocation)
        #expect(d.freeFrames + d.receiveFramesInKernel == d.configuration.frameCount,
                "free \(d.freeFrames) + with the kernel \(d.receiveFramesInKernel) != \(d.configuration.frameCount)",
                sourceLocation: sourceLocation)
        #expect(pool.buffersInUse == 0, sourceLocation: sourceLocation)
    }

    /// Polls `device` until `match` accepts a frame or `seconds` pass. Other frames are dropped.
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

    func xdpState(_ h: TestHosts, _ host: TestHosts.Host) throws -> String {
        try h.run(in: host, ["ip", "-d", "link", "show", "dev", "veth0"]).output
    }

    // MARK: - ARP

    @Test(arguments: [XDPSocketDevice.AttachMode.generic, .native])
    func arpRequestGetsTheKernelsReply(mode: XDPSocketDevice.AttachMode) throws {
        guard let h = try hosts() else { return }
        defer { h.destroy() }
        let pool = BufferPool()
        guard let dev = try openXDP(h, .a, pool, mode) else { return }
        #expect(dev.macAddress == mac(h.ourMAC))
        #expect(dev.capabilities.mtu == 1500)
        #expect(!dev.isZeroCopy)
        let link = try xdpState(h, .a)
        #expect(link.contains(mode == .generic ? "xdpgeneric" : "xdp"), "ip link: \(link)")
        if mode == .native { #expect(!link.contains("xdpgeneric"), "ip link: \(link)") }
        #expect(throws: Errno.noDevice) {
            try h.withNamespace(.a) { _ = try XDPSocketDevice(interface: "nosuch0", pool: BufferPool()) }
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
        #expect(dev.kicks >= 1)

        // The reply arrives in a UMEM frame, wrapped without copying, with the XDP headroom in front.
        var replyBytes: [UInt8]?
        let out = UnsafeMutablePointer<DemiBuffer>.allocate(capacity: 32)
        defer { out.deallocate() }
        let deadline = Instant.now().rawValue + 2_000_000_000
        while replyBytes == nil && Instant.now().rawValue < deadline {
            let n = dev.receive(into: out, capacity: 32, now: .now())
            for i in 0..<n {
                let f = out[i]
                #expect(f.header.pointee.kind == BufferHeader.Kind.external)
                #expect(f.headroom >= 256)
                #expect(dev.heldFrames >= 1)
                let bytes = f.array
                f.release()
                let isReply = bytes.withUnsafeBytes { raw -> Bool in
                    guard let (eth, k) = try? EthernetHeader.parse(raw), eth.etherType == EtherType.arp,
                          let arp = try? ARPPacket.parse(UnsafeRawBufferPointer(rebasing: raw[k...]))
                    else { return false }
                    return arp.operation == .reply
                }
                if isReply { replyBytes = bytes }
            }
            if n == 0 { usleep(50) }
        }
        let bytes = try #require(replyBytes, "no ARP reply from \(h.peerIP) within 2 s (\(mode))")
        try bytes.withUnsafeBytes { raw in
            let (eth, n) = try EthernetHeader.parse(raw)
            let arp = try ARPPacket.parse(UnsafeRawBufferPointer(rebasing: raw[n...]))
            #expect(eth.destination == dev.macAddress && eth.source == mac(h.peerMAC))
            #expect(arp.senderIP == peer && arp.senderMAC == mac(h.peerMAC))
            #expect(arp.targetIP == ours && arp.targetMAC == dev.macAddress)
        }
        let s = dev.statistics
        #expect(s.transmittedFrames == 1 && s.transmittedBytes == 42 && s.receivedFrames >= 1 && s.droppedFrames == 0)
        expectAllFramesAccounted(dev, pool)

        // Closing detaches libxdp's program; the queue can be bound again at once (EBUSY is retried).
        try close(h, .a, dev)
        #expect(!(try xdpState(h, .a)).contains("prog/xdp"))
        let again = try #require(try openXDP(h, .a, pool, mode))
        print("XDP \(mode): rebinding at once took \(again.bindRetries) EBUSY retries")
        try close(h, .a, again)
        // veth has no AF_XDP zero-copy: asking for it fails cleanly, and leaves no program attached.
        var zc = XDPSocketDevice.Configuration()
        zc.attachMode = mode
        zc.bindMode = .zeroCopy
        #expect(throws: Errno.notSupported) {
            try h.withNamespace(.a) { _ = try XDPSocketDevice(interface: h.interface, pool: pool, configuration: zc) }
        }
        #expect(!(try xdpState(h, .a)).contains("prog/xdp"))
        #expect(pool.buffersInUse == 0)
    }

    // MARK: - Bursts

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

    func buffer(_ bytes: [UInt8], _ pool: BufferPool, chained: Bool) -> DemiBuffer {
        if chained {
            let head = pool.allocate(size: 14)!
            let tail = pool.allocate(size: bytes.count - 14)!
            bytes.withUnsafeBytes { _ = head.write(UnsafeRawBufferPointer(rebasing: $0[0..<14])) }
            bytes.withUnsafeBytes { _ = tail.write(UnsafeRawBufferPointer(rebasing: $0[14...])) }
            head.header.pointee.next = tail.header
            return head
        }
        let b = pool.allocate(size: bytes.count)!
        bytes.withUnsafeBytes { _ = b.write($0) }
        return b
    }

    func collect(_ d: some PhysicalLayer, count: Int, seconds: Double = 3, hold: Bool = false,
                 _ keep: (DemiBuffer) -> Void = { _ in }) -> [[UInt8]] {
        var received: [[UInt8]] = []
        let out = UnsafeMutablePointer<DemiBuffer>.allocate(capacity: 64)
        defer { out.deallocate() }
        let deadline = Instant.now().rawValue + Int64(seconds * 1e9)
        while received.count < count && Instant.now().rawValue < deadline {
            let n = d.receive(into: out, capacity: 64, now: .now())
            for i in 0..<n {
                let f = out[i]
                let bytes = f.array
                if bytes.count >= 14 && bytes[12] == 0x88 && bytes[13] == 0xB5 {
                    received.append(bytes)
                    if hold { keep(f); continue }
                }
                f.release()
            }
            if n == 0 { usleep(20) }
        }
        return received
    }

    /// 1000 frames (60-1514 bytes, every tenth a two-segment chain) from the XDP device in a to an AF_PACKET device
    /// in b, then 1000 back, received into UMEM frames held all at once and released at the end.
    @Test(arguments: [XDPSocketDevice.AttachMode.generic, .native])
    func burstOfAThousandFramesBothWays(mode: XDPSocketDevice.AttachMode) throws {
        guard let h = try hosts() else { return }
        defer { h.destroy() }
        let poolA = BufferPool(), poolB = BufferPool()
        guard let a = try openXDP(h, .a, poolA, mode) else { return }
        defer { try? close(h, .a, a) }
        guard let b = try openPacket(h, .b, poolB) else { return }
        let count = 1000

        let sent = (0..<count).map { testFrame($0, from: a.macAddress, to: b.macAddress) }
        let t0 = Instant.now()
        for i in 0..<count { #expect(a.transmit(buffer(sent[i], poolA, chained: i % 10 == 0), now: .now())) }
        a.flush()
        let t1 = Instant.now()
        let atB = collect(b, count: count)
        #expect(atB.count == count)
        #expect(atB == sent, "a -> b: frames differ or are out of order")
        #expect(a.statistics.transmittedFrames == count && a.statistics.droppedFrames == 0)
        #expect(b.statistics.droppedFrames == 0)

        let back = (0..<count).map { testFrame($0 + 7, from: b.macAddress, to: a.macAddress) }
        for i in 0..<count { #expect(b.transmit(buffer(back[i], poolB, chained: false), now: .now())) }
        b.flush()
        var held: [DemiBuffer] = []
        let atA = collect(a, count: count, hold: true) { held.append($0) }
        #expect(atA.count == count)
        #expect(atA == back, "b -> a: frames differ or are out of order")
        #expect(a.heldFrames == held.count)
        #expect(held.allSatisfy { $0.header.pointee.kind == BufferHeader.Kind.external })
        for f in held { f.release() }
        #expect(a.heldFrames == 0)
        let s = a.statistics
        #expect(s.receivedFrames >= count && s.droppedFrames == 0, "\(String(describing: a.kernelStatistics))")
        expectAllFramesAccounted(a, poolA)
        #expect(poolB.buffersInUse == 0)
        let us = Double(t1.rawValue - t0.rawValue) / 1000 / Double(count)
        print("XDP \(mode) burst: \(count) frames (60-1514 B) a -> b, allocate + copy into UMEM + transmit "
            + "(kicks included) \(String(format: "%.2f", us)) us/frame (\(Self.build)), \(a.kicks) kicks")
    }

    // MARK: - Buffer accounting

    /// Received frames held as views, echoed back without a copy, dropped, or still held at close: every UMEM frame
    /// comes back, and the UMEM outlives the device until the last held buffer goes.
    @Test func bufferAccountingReturnsEveryFrame() throws {
        guard let h = try hosts() else { return }
        defer { h.destroy() }
        let poolA = BufferPool(), poolB = BufferPool()
        guard let a = try openXDP(h, .a, poolA, configure: { $0.frameCount = 256; $0.fillRingSize = 128
            $0.receiveRingSize = 128; $0.transmitRingSize = 64; $0.completionRingSize = 64 }) else { return }
        guard let b = try openPacket(h, .b, poolB) else { try close(h, .a, a); return }
        #expect(a.freeFrames + a.receiveFramesInKernel == 256 && a.receiveFramesInKernel == 128)

        // More frames than the fill ring holds, in rounds, so frames must be recycled to the fill ring.
        func send(_ n: Int, base: Int) {
            for i in 0..<n {
                let f = testFrame(base + i, from: b.macAddress, to: a.macAddress)
                b.transmit(buffer(Array(f.prefix(100)), poolB, chained: false), now: .now())
            }
            b.flush()
        }
        var total = 0
        for round in 0..<5 {
            send(100, base: round * 100)
            total += collect(a, count: 100).count
        }
        #expect(total == 500)
        expectAllFramesAccounted(a, poolA)

        // Views keep the frame; the frame comes back when both the view and the buffer are gone.
        send(3, base: 1000)
        var held: [DemiBuffer] = []
        _ = collect(a, count: 3, hold: true) { held.append($0) }
        try #require(held.count == 3)
        let view = try #require(poolA.view(of: held[0], offset: 14, length: 20))
        held[0].release()
        #expect(a.heldFrames == 3)
        view.release()
        #expect(a.heldFrames == 2)

        // Echo one back as it is: handed to the TX ring with no copy, the frame returns through the completion ring.
        let echo = held[1]
        let p = echo.bytes
        for j in 0..<6 { p.swapAt(j, j + 6) }
        let zc = a.zeroCopyTransmits
        #expect(a.transmit(echo, now: .now()))
        a.flush()
        #expect(a.zeroCopyTransmits == zc + 1)
        #expect(a.heldFrames == 1)
        let echoed = awaitFrame(b) { $0.count == 100 && $0[12] == 0x88 && $0[14..<18].elementsEqual([0, 0, 0x03, 0xE9]) }
        #expect(echoed != nil, "the zero-copy echo did not arrive")
        // A retained frame is copied instead (someone else still reads it).
        held[2].retain()
        #expect(a.transmit(held[2], now: .now()))
        #expect(a.zeroCopyTransmits == zc + 1)
        #expect(a.heldFrames == 1)
        a.flush()
        // Drop it; close with one buffer still held: the UMEM stays until it is released.
        let last = held[2]
        try close(h, .a, a)
        #expect(!a.isOpen)
        #expect(last.bytes.count == 100 && last.bytes[12] == 0x88)     // still readable
        last.release()
        #expect(poolA.buffersInUse == 0)
        // The pool's hook is gone: external buffers of the pool no longer reach the closed device.
        let storage = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 64)
        defer { storage.deallocate() }
        poolA.wrapExternal(storage: storage, capacity: 64, offset: 0, length: 10, object: storage)?.release()
        #expect(poolB.buffersInUse == 0)
    }

    // MARK: - Copy-on-pressure

    /// Received frames the application holds must not starve transmit: once fewer than `copyThreshold` UMEM frames
    /// would stay free, received frames are copied into pool buffers and their UMEM frames recycled at once, so
    /// transmit still finds frames to copy into while hundreds of received buffers are held (as TCP does with its
    /// receive, out-of-order and retransmission queues). With copying off (`copyThreshold = 0`) held frames take the
    /// whole UMEM and transmit drops, counted in `droppedFrames`.
    @Test(arguments: [64, 0])
    func heldReceivesDoNotStarveTransmit(copyThreshold: Int) throws {
        guard let h = try hosts() else { return }
        defer { h.destroy() }
        let poolA = BufferPool(), poolB = BufferPool()
        guard let a = try openXDP(h, .a, poolA, configure: { $0.frameCount = 256; $0.fillRingSize = 128
            $0.receiveRingSize = 128; $0.transmitRingSize = 64; $0.completionRingSize = 64
            $0.copyThreshold = copyThreshold }) else { return }
        guard let b = try openPacket(h, .b, poolB) else { try close(h, .a, a); return }

        // 400 frames in rounds of 80 (under the RX ring size), every one held.
        var held: [DemiBuffer] = []
        var sent: [[UInt8]] = []
        var received: [[UInt8]] = []
        for round in 0..<5 {
            for i in 0..<80 {
                let f = testFrame(round * 80 + i, from: b.macAddress, to: a.macAddress)
                sent.append(f)
                b.transmit(buffer(f, poolB, chained: false), now: .now())
            }
            b.flush()
            received += collect(a, count: 80, seconds: 1, hold: true) { held.append($0) }
        }
        let heldUMEM = a.heldFrames
        // Transmit while holding everything: 100 frames a -> b.
        var transmitted = 0
        for i in 0..<100 {
            if a.transmit(buffer(testFrame(5000 + i, from: a.macAddress, to: b.macAddress), poolA, chained: false),
                          now: .now()) { transmitted += 1 }
        }
        a.flush()
        let atB = collect(b, count: transmitted, seconds: transmitted > 0 ? 2 : 0.2)
        let s = a.statistics
        print("XDP copy-on-pressure (copyThreshold \(copyThreshold)): \(received.count) received and held, "
            + "\(heldUMEM) of them UMEM frames, \(a.copiedReceives) copied; transmit \(transmitted)/100, "
            + "\(a.transmitDrops) dropped; kernel: \(String(describing: a.kernelStatistics))")
        if copyThreshold > 0 {
            #expect(received.count == 400)
            #expect(received == sent, "frames differ or are out of order")
            #expect(heldUMEM <= 256 - 128 - copyThreshold, "zero-copy receives must leave the reserve free")
            #expect(heldUMEM >= 32, "no pressure, no copy: the first frames are handed over as they are")
            #expect(a.copiedReceives == held.count - heldUMEM)
            #expect(held.filter { $0.header.pointee.kind == BufferHeader.Kind.external }.count == heldUMEM)
            #expect(transmitted == 100 && a.transmitDrops == 0 && atB.count == 100)
            #expect(s.droppedFrames == 0)
        } else {
            #expect(a.copiedReceives == 0)
            #expect(heldUMEM == held.count)
            #expect(transmitted < 100, "every UMEM frame is held: transmit has nothing to copy into")
            #expect(a.transmitDrops == 100 - transmitted)
            #expect(s.droppedFrames >= a.transmitDrops, "dropped transmits count in droppedFrames")
            #expect(s.transmittedFrames == transmitted)
        }
        for f in held { f.release() }
        #expect(a.heldFrames == 0)
        expectAllFramesAccounted(a, poolA)
        try close(h, .a, a)
        b.close()
        #expect(poolB.buffersInUse == 0)
    }

    // MARK: - Latency

    /// Round trips of a 64-byte frame a -> b -> a on one thread, b echoing the received buffer (MACs swapped):
    /// AF_PACKET in both namespaces, then an XDP device in a (generic, native) against AF_PACKET in b, then XDP in
    /// both (b's echo is a zero-copy hand-over). Prints p50 and p99 of each, from the same run.
    @Test func pingPongLatencyNextToAFPacket() throws {
        guard let h = try hosts() else { return }
        defer { h.destroy() }
        let rounds = 2000

        func pingPong<A: PhysicalLayer, B: PhysicalLayer>(_ a: A, _ poolA: BufferPool, _ b: B,
                                                         frame: [UInt8]) -> [Int64] {
            func bounce(_ d: some PhysicalLayer, _ out: UnsafeMutablePointer<DemiBuffer>, deadline: Int64) -> DemiBuffer? {
                while Instant.now().rawValue < deadline {
                    if d.receive(into: out, capacity: 1, now: .zero) == 1 {
                        if out[0].count == 64 && out[0].bytes[12] == 0x88 { return out[0] }
                        out[0].release()
                    }
                }
                return nil
            }
            var rtts: [Int64] = []
            rtts.reserveCapacity(rounds + 100)
            let out = UnsafeMutablePointer<DemiBuffer>.allocate(capacity: 1)
            defer { out.deallocate() }
            for _ in 0..<(rounds + 100) {
                let t0 = Instant.now().rawValue
                let f = poolA.allocate(size: 64)!
                frame.withUnsafeBytes { _ = f.write($0) }
                a.transmit(f, now: .zero)
                a.flush(now: .zero)
                guard let got = bounce(b, out, deadline: t0 + 1_000_000_000) else { break }
                let p = got.bytes
                for j in 0..<6 { p.swapAt(j, j + 6) }
                b.transmit(got, now: .zero)
                b.flush(now: .zero)
                guard let back = bounce(a, out, deadline: t0 + 1_000_000_000) else { break }
                back.release()
                rtts.append(Instant.now().rawValue - t0)
            }
            return rtts
        }
        func percentiles(_ xs: [Int64]) -> String {
            let s = xs.dropFirst(100).sorted()
            guard !s.isEmpty else { return "n/a" }
            let p = { (q: Double) in String(format: "%.1f", Double(s[min(s.count - 1, Int(Double(s.count) * q))]) / 1000) }
            return "p50 \(p(0.5)) us, p99 \(p(0.99)) us"
        }

        var lines: [String] = []
        do {
            let poolA = BufferPool(), poolB = BufferPool()
            guard let a = try openPacket(h, .a, poolA), let b = try openPacket(h, .b, poolB) else { return }
            let frame = Array(testFrame(0, from: a.macAddress, to: b.macAddress).prefix(64))
            let r = pingPong(a, poolA, b, frame: frame)
            #expect(r.count == rounds + 100)
            lines.append("AF_PACKET a <-> AF_PACKET b: \(percentiles(r))")
            a.close(); b.close()
            #expect(poolA.buffersInUse == 0 && poolB.buffersInUse == 0)
        }
        for mode in [XDPSocketDevice.AttachMode.generic, .native] {
            let poolA = BufferPool(), poolB = BufferPool()
            guard let a = try openXDP(h, .a, poolA, mode) else { continue }
            guard let b = try openPacket(h, .b, poolB) else { try close(h, .a, a); return }
            let frame = Array(testFrame(0, from: a.macAddress, to: b.macAddress).prefix(64))
            let r = pingPong(a, poolA, b, frame: frame)
            #expect(r.count == rounds + 100)
            lines.append("XDP \(mode) a <-> AF_PACKET b: \(percentiles(r)) (a: \(a.kicks) TX kicks, \(a.wakeups) RX wakeups)")
            expectAllFramesAccounted(a, poolA)
            try close(h, .a, a)
            b.close()
            #expect(poolB.buffersInUse == 0)
        }
        do {
            let poolA = BufferPool(), poolB = BufferPool()
            if let a = try openXDP(h, .a, poolA) {
                if let b = try openXDP(h, .b, poolB) {
                    let frame = Array(testFrame(0, from: a.macAddress, to: b.macAddress).prefix(64))
                    let r = pingPong(a, poolA, b, frame: frame)
                    #expect(r.count == rounds + 100)
                    #expect(b.zeroCopyTransmits == r.count, "b's echoes should be hand-overs")
                    lines.append("XDP generic a <-> XDP generic b (b echoes without copy): \(percentiles(r))")
                    expectAllFramesAccounted(b, poolB)
                    try close(h, .b, b)
                }
                expectAllFramesAccounted(a, poolA)
                try close(h, .a, a)
            }
        }
        print("XDP ping-pong (64 B, a->b->a, one thread, \(rounds) rounds, \(Self.build)):\n  " + lines.joined(separator: "\n  "))
    }
}
#endif
