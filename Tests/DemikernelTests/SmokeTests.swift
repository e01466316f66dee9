import Demikernel
import Testing

@Suite struct SmokeTests {
    @Test func udpEchoOverLoopback() throws {
        let os = try LibOS(.kernelSockets)
        let server = try os.socket(.inet, .datagram)
        try os.bind(server, to: SocketAddressV4(.loopback, 0))
        let serverAddr = try os.localAddress(server)
        let client = try os.socket(.inet, .datagram)
        try os.bind(client, to: SocketAddressV4(.loopback, 0))
        let msg = try os.sgaalloc(copying: Array("hello".utf8))
        let pt = try os.pushTo(client, msg, to: serverAddr)
        try os.sgafree(msg)
        #expect(try os.wait(pt).opcode == .push)
        let r = try os.wait(try os.pop(server))
        #expect(r.opcode == .pop)
        #expect(r.sga?.bytes == Array("hello".utf8))
        #expect(r.sga?.address == (try os.localAddress(client)))
        try os.sgafree(r.sga!)
        #expect(os.pool.buffersInUse == 0)
    }

    @Test func tcpEchoOverLoopback() throws {
        let os = try LibOS(.kernelSockets)
        let listener = try os.socket(.inet, .stream)
        try os.bind(listener, to: SocketAddressV4(.loopback, 0))
        try os.listen(listener, backlog: 16)
        let addr = try os.localAddress(listener)
        let client = try os.socket(.inet, .stream)
        let ct = try os.connect(client, to: addr)
        let at = try os.accept(listener)
        let (idx, first) = try os.waitAny([ct, at])
        let second = try os.wait(idx == 0 ? at : ct)
        let acc = idx == 0 ? second : first
        guard case .accepted(let conn, _) = acc.value else { Issue.record("no accept"); return }
        let msg = try os.sgaalloc(copying: Array(repeating: 7, count: 1000))
        _ = try os.wait(try os.push(client, msg))
        try os.sgafree(msg)
        var got = 0
        while got < 1000 {
            let r = try os.wait(try os.pop(conn))
            got += r.sga!.count
            try os.sgafree(r.sga!)
        }
        try os.close(client)
        let eof = try os.wait(try os.pop(conn))
        #expect(eof.sga?.count == 0)
        try os.sgafree(eof.sga!)
        try os.close(conn)
        try os.close(listener)
        #expect(os.pool.buffersInUse == 0)
    }

    @Test func asyncLayer() throws {
        let os = try LibOS(.kernelSockets)
        let n = try os.run {
            let a = try os.socket(.inet, .datagram)
            try os.bind(a, to: SocketAddressV4(.loopback, 0))
            let b = try os.socket(.inet, .datagram)
            try os.bind(b, to: SocketAddressV4(.loopback, 0))
            let msg = try os.sgaalloc(copying: [1, 2, 3])
            try await os.pushTo(b, msg, to: try os.localAddress(a))
            try os.sgafree(msg)
            let got = try await os.pop(a)
            defer { try? os.sgafree(got) }
            return got.count
        }
        #expect(n == 3)
    }
}
