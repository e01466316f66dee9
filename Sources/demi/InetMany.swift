import DemiCore
import DemiDevices
import DemiRuntime
import DemiStackLibOS

extension Bench {
    /// Many clients on the user-space stack: `connections` TCP connections between the two stacks of an in-memory
    /// pair, one 64-byte message in flight on each (client push + pop, server pop + push of the same buffer), all on
    /// this thread. Returns this thread's CPU ns per I/O (4 per message) over `messages` echoed messages.
    func inetManyClients(connections: Int, messages: Int) throws -> Double {
        let net = makeInetPair()
        var servers: [QDesc] = [], clients: [QDesc] = []
        for k in 0..<connections {
            let (s, c) = try net.connectTCP(port: UInt16(5000 + k))
            servers.append(s)
            clients.append(c)
        }
        let a = net.a, b = net.b
        let msg = net.message(b.pool, size: 64)
        defer { try? b.pool.freeFromApplication(msg.head!) }
        // Per connection: the server's pop and its last push, the client's pop and its last push.
        var serverPop = try servers.map { try a.pop($0) }
        var serverPush = [QToken?](repeating: nil, count: connections)
        var clientPop = [QToken](), clientPush = [QToken?](repeating: nil, count: connections)
        for c in clients {
            clientPush[clientPop.count] = try b.push(c, msg)
            clientPop.append(try b.pop(c))
        }
        var done = 0, started = connections
        let warm = min(connections * 10, messages)
        var cpu0: Int64 = 0
        while done < messages + warm {
            let now = Instant.now()
            a.poll(now: now)
            b.poll(now: now)
            for k in 0..<connections {
                if let p = serverPush[k], let r = a.scheduler.take(p) {
                    if let e = r.error { throw e }
                    serverPush[k] = nil
                }
                if let p = clientPush[k], let r = b.scheduler.take(p) {
                    if let e = r.error { throw e }
                    clientPush[k] = nil
                }
                if let r = a.scheduler.take(serverPop[k]) {
                    guard let got = r.sga else { throw r.error ?? Errno.ioError }
                    if let p = serverPush[k] { try drain(net, a, p, Instant.now()) }
                    serverPush[k] = try a.push(servers[k], got)
                    try a.pool.freeFromApplication(got.head!)
                    serverPop[k] = try a.pop(servers[k])
                }
                if let r = b.scheduler.take(clientPop[k]) {
                    guard let back = r.sga, back.count == 64 else { throw r.error ?? Errno.ioError }
                    try b.pool.freeFromApplication(back.head!)
                    done += 1
                    if done == warm { cpu0 = threadCPUNanoseconds() }
                    if started < messages + warm + connections {
                        if let p = clientPush[k] { try drain(net, b, p, Instant.now()) }
                        clientPush[k] = try b.push(clients[k], msg)
                        clientPop[k] = try b.pop(clients[k])
                        started += 1
                    }
                }
            }
        }
        let cpu = Double(threadCPUNanoseconds() - cpu0)
        return cpu / Double(4 * messages)
    }
}

extension Bench {
    /// TCP echo of `size`-byte messages on the user-space stack (any size: the client pops until the whole message
    /// is back; the server pushes back each part as it pops it). Returns the round trips and this thread's CPU ns
    /// per message I/O (4 per round trip: client push and pop, server pop and push, however many segments).
    func inetTCPEchoSized(size: Int) throws -> (LatencySummary, Double) {
        let warmup = min(self.warmup, 200), count = max(100, inetCount / max(1, size / 1024))
        let net = makeInetPair()
        let (server, client) = try net.connectTCP()
        let a = net.a, b = net.b
        let msg = net.message(b.pool, size: size)
        defer { try? b.pool.freeFromApplication(msg.head!) }
        var samples = [UInt64](repeating: 0, count: count)
        var serverPop = try a.pop(server)
        var serverPushes: [QToken] = []
        var cpu0: Int64 = 0
        for i in 0..<(warmup + count) {
            if i == warmup { cpu0 = threadCPUNanoseconds() }
            let start = Instant.now()
            let push = try b.push(client, msg)
            var clientPop = try b.pop(client)
            var got = 0
            while got < size {
                let now = Instant.now()
                a.poll(now: now)
                b.poll(now: now)
                while let r = a.scheduler.take(serverPop) {
                    guard let part = r.sga else { throw r.error ?? Errno.ioError }
                    serverPushes.append(try a.push(server, part))
                    try a.pool.freeFromApplication(part.head!)
                    serverPop = try a.pop(server)
                }
                while got < size, let r = b.scheduler.take(clientPop) {
                    guard let part = r.sga, part.count > 0 else { throw r.error ?? Errno.ioError }
                    got += part.count
                    try b.pool.freeFromApplication(part.head!)
                    if got < size { clientPop = try b.pop(client) }
                }
                serverPushes.removeAll { a.scheduler.take($0) != nil }
            }
            guard got == size else { throw Errno.ioError }
            try drain(net, b, push, Instant.now())
            if i >= warmup { samples[i - warmup] = UInt64(Instant.now().rawValue - start.rawValue) }
        }
        let cpu = Double(threadCPUNanoseconds() - cpu0)
        return (LatencySummary(samples), cpu / Double(4 * count))
    }
}
