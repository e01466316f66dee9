import DemiBuffers
import DemiCore
import DemiDevices
import DemiInet
import DemiRuntime
import DemiStackLibOS
import DemiWire
import Testing

func makeSGA(_ pool: BufferPool, _ bytes: [UInt8]) -> ScatterGatherArray {
    let b = pool.allocate(size: bytes.count)!
    bytes.withUnsafeBytes { _ = b.write($0) }
    pool.giveToApplication(b)
    return ScatterGatherArray(head: b)
}

@Suite struct StackTests {
    @Test func udpEchoResolvesAddressesAndKeepsTheSender() throws {
        let net = SimulatedNetwork()
        let server = try net.a.socket(domain: .inet, type: .datagram)
        try net.a.bind(server, to: SocketAddressV4(SimulatedNetwork.ipA, 7))
        let client = try net.b.socket(domain: .inet, type: .datagram)
        let popServer = try net.a.pop(server)
        let sga = makeSGA(net.b.pool, Array("hello".utf8))
        let push = try net.b.pushTo(client, sga, to: SocketAddressV4(SimulatedNetwork.ipA, 7))
        try net.b.pool.freeFromApplication(sga.head!)
        #expect(net.wait(net.b, push)?.opcode == .push)
        let r = try #require(net.wait(net.a, popServer))
        let got = try #require(r.sga)
        #expect(got.bytes == Array("hello".utf8))
        let from = try #require(got.address)
        #expect(from.address == SimulatedNetwork.ipB)
        #expect(from.port == (try net.b.localAddress(client)).port)
        // Echo it back.
        let popClient = try net.b.pop(client)
        _ = try net.a.pushTo(server, got, to: from)
        try net.a.pool.freeFromApplication(got.head!)
        let back = try #require(net.wait(net.b, popClient)?.sga)
        #expect(back.bytes == Array("hello".utf8))
        try net.b.pool.freeFromApplication(back.head!)
        #expect(net.a.statistics.arpRepliesSent >= 1)
    }

    @Test func udpToAClosedPortDrawsPortUnreachable() throws {
        let net = SimulatedNetwork()
        let client = try net.b.socket(domain: .inet, type: .datagram)
        let sga = makeSGA(net.b.pool, [1, 2, 3])
        _ = try net.b.pushTo(client, sga, to: SocketAddressV4(SimulatedNetwork.ipA, 9999))
        try net.b.pool.freeFromApplication(sga.head!)
        #expect(net.run(timeout: .seconds(5)) { net.a.statistics.icmpErrorsSent == 1 })
        #expect(net.a.statistics.udpNoPort == 1)
    }

    @Test func largeUDPDatagramsAreFragmentedAndReassembled() throws {
        let net = SimulatedNetwork()
        let server = try net.a.socket(domain: .inet, type: .datagram)
        try net.a.bind(server, to: SocketAddressV4(.any, 5000))
        let client = try net.b.socket(domain: .inet, type: .datagram)
        let bytes = (0..<20_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let pop = try net.a.pop(server)
        let sga = makeSGA(net.b.pool, bytes)
        _ = try net.b.pushTo(client, sga, to: SocketAddressV4(SimulatedNetwork.ipA, 5000))
        try net.b.pool.freeFromApplication(sga.head!)
        let got = try #require(net.wait(net.a, pop)?.sga)
        #expect(got.bytes == bytes)
        try net.a.pool.freeFromApplication(got.head!)
    }

    /// With UDP checksums offloaded to the device, a datagram that will be fragmented still gets its checksum from
    /// the stack (the device sees fragments; the checksum spans them all), and the receiver verifies it.
    @Test func fragmentedDatagramsGetTheirChecksumDespiteOffload() throws {
        let net = SimulatedNetwork(transmitOffload: [.udp])
        let client = try net.b.socket(domain: .inet, type: .datagram)
        try net.b.bind(client, to: SocketAddressV4(.any, 4000))
        // A first small datagram resolves the addresses (A answers it with a port unreachable).
        let probe = makeSGA(net.b.pool, [1])
        _ = try net.b.pushTo(client, probe, to: SocketAddressV4(SimulatedNetwork.ipA, 5000))
        try net.b.pool.freeFromApplication(probe.head!)
        #expect(net.run(timeout: .seconds(5)) { net.a.statistics.udpNoPort == 1 && net.link.a.pending == 0 })
        let bytes = (0..<3000).map { UInt8(truncatingIfNeeded: $0 &* 13) }
        let sga = makeSGA(net.b.pool, bytes)
        _ = try net.b.pushTo(client, sga, to: SocketAddressV4(SimulatedNetwork.ipA, 5000))
        try net.b.pool.freeFromApplication(sga.head!)
        // The first fragment, straight off the wire: Ethernet (14) + IPv4 (20) + the UDP header.
        let frames = UnsafeMutablePointer<DemiBuffer>.allocate(capacity: 8)
        defer { frames.deallocate() }
        let n = net.link.a.receive(into: frames, capacity: 8, now: .now())
        #expect(n == 3)
        let first = Array(UnsafeRawBufferPointer(frames[0].bytes))
        for k in 0..<n { frames[k].releaseChain() }
        let stored = UInt16(first[40]) << 8 | UInt16(first[41])
        var udp = [UInt8](repeating: 0, count: 8)
        udp[0] = 0x0F; udp[1] = 0xA0; udp[2] = 0x13; udp[3] = 0x88  // ports 4000 -> 5000
        udp[4] = UInt8((3008) >> 8); udp[5] = UInt8(3008 & 0xFF)
        let pseudo = InternetChecksum.pseudoHeader(source: SimulatedNetwork.ipB, destination: SimulatedNetwork.ipA,
                                                  protocol: IPProtocol.udp, length: 3008)
        let sum = (udp + bytes).withUnsafeBytes { InternetChecksum.sum($0, initial: pseudo) }
        let want = InternetChecksum.finish(sum)
        #expect(stored != 0)
        #expect(stored == (want == 0 ? 0xFFFF : want))
    }

    @Test func tcpHandshakeEchoAndCloseBothWays() throws {
        let net = SimulatedNetwork()
        let listener = try net.a.socket(domain: .inet, type: .stream)
        try net.a.bind(listener, to: SocketAddressV4(.any, 80))
        try net.a.listen(listener, backlog: 16)
        let acceptQT = try net.a.accept(listener)
        let client = try net.b.socket(domain: .inet, type: .stream)
        let connectQT = try net.b.connect(client, to: SocketAddressV4(SimulatedNetwork.ipA, 80))
        let c = try #require(net.wait(net.b, connectQT))
        #expect(c.opcode == .connect && c.error == nil)
        let acc = try #require(net.wait(net.a, acceptQT))
        guard case .accepted(let conn, let peer) = acc.value else {
            Issue.record("no accept: \(acc)")
            return
        }
        #expect(peer.address == SimulatedNetwork.ipB)
        for round in 0..<100 {
            let msg = (0..<64).map { UInt8(truncatingIfNeeded: $0 + round) }
            let pop = try net.a.pop(conn)
            let sga = makeSGA(net.b.pool, msg)
            let push = try net.b.push(client, sga)
            try net.b.pool.freeFromApplication(sga.head!)
            let got = try #require(net.wait(net.a, pop)?.sga)
            #expect(got.bytes == msg)
            let popBack = try net.b.pop(client)
            _ = try net.a.push(conn, got)
            try net.a.pool.freeFromApplication(got.head!)
            let back = try #require(net.wait(net.b, popBack)?.sga)
            #expect(back.bytes == msg)
            try net.b.pool.freeFromApplication(back.head!)
            #expect(net.wait(net.b, push)?.opcode == .push)
        }
        // Client closes; the server reads end of file, then closes too.
        let eof = try net.a.pop(conn)
        try net.b.close(client)
        let e = try #require(net.wait(net.a, eof)?.sga)
        #expect(e.count == 0)
        try net.a.pool.freeFromApplication(e.head!)
        try net.a.close(conn)
        try net.a.close(listener)
        net.idle(.milliseconds(200))  // TIME-WAIT is 50 ms here
        #expect(net.a.pool.buffersInUse == 0)
        #expect(net.b.pool.buffersInUse == 0)
    }

    @Test func connectToAClosedPortIsRefused() throws {
        let net = SimulatedNetwork()
        let client = try net.b.socket(domain: .inet, type: .stream)
        let qt = try net.b.connect(client, to: SocketAddressV4(SimulatedNetwork.ipA, 81))
        let r = try #require(net.wait(net.b, qt))
        #expect(r.error == .connectionRefused)
    }
}

/// 10 MB each way at once over the simulated link, clean and impaired, with SHA-256 checks of both streams.
@Suite(.serialized) struct StackBulkTests {
    static let profiles: [String] = [
        "", "loss=1%", "loss=5%", "loss=20%", "reorder=5%", "duplicate=5%", "corrupt=1%", "delay=2ms,jitter=1ms",
    ]

    @Test(arguments: profiles)
    func tenMegabytesEachWay(profile: String) throws {
        var p = try FaultProfile(parsing: profile.isEmpty ? "loss=0" : profile)
        p.seed = 42
        let net = SimulatedNetwork(profile: p)
        let (server, client) = try #require(try net.connectPair())
        let size = 10_000_000
        let up = BulkTransfer(from: net.b, client, to: net.a, server, bytes: size, seed: 1)
        let down = BulkTransfer(from: net.a, server, to: net.b, client, bytes: size, seed: 2)
        let finished = net.run(timeout: .seconds(600)) {
            up.step()
            down.step()
            return up.done && down.done
        }
        #expect(finished, "timed out: up \(up.received)/\(size), down \(down.received)/\(size)")
        #expect(up.error == nil && down.error == nil, "errors: \(String(describing: up.error)) \(String(describing: down.error)) up \(up.received) down \(down.received) a: \(net.a.statistics.pairs.filter { $0.1 > 0 }) b: \(net.b.statistics.pairs.filter { $0.1 > 0 })")
        #expect(up.received == size && down.received == size)
        #expect(up.sentHash.finalize() == up.receivedHash.finalize())
        #expect(down.sentHash.finalize() == down.receivedHash.finalize())
        try net.a.close(server)
        try net.b.close(client)
        net.idle(.milliseconds(300))
        #expect(net.a.pool.buffersInUse == 0 && net.b.pool.buffersInUse == 0,
                "in use: \(net.a.pool.buffersInUse) \(net.b.pool.buffersInUse) \(net.a.connectionStates) \(net.b.connectionStates)")
    }
}
