import CDemiBaselines
import Demikernel
import Foundation
import Synchronization

/// The kernel-socket libOS (catnap) as a benchmark subject: an echo (or sink) server on its own pinned thread with its
/// own `LibOS`, and a closed-loop client on the calling thread with another.
enum Catnap {
    enum Proto: String, Codable, Sendable { case udp, tcp }

    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    static func makeLibOS(pollMode: String) throws -> LibOS {
        var config = Configuration()
        try config.set("poll_mode", pollMode)
        return try LibOS(.kernelSockets, configuration: config)
    }

    @inline(__always)
    static func now() -> UInt64 { UInt64(Instant.now().rawValue) }

    /// State shared between the harness and a server thread.
    final class ServerHandle: @unchecked Sendable {
        let stopFlag = Atomic<Bool>(false)
        let ready = DispatchSemaphore(value: 0)
        let finished = DispatchSemaphore(value: 0)
        var address: SocketAddressV4?
        var error: (any Error)?
        /// For a sink: when it read end-of-file (ns, monotonic clock), and how many bytes it received.
        let endNs = Atomic<UInt64>(0)
        let received = Atomic<Int>(0)
        let proto: Proto

        init(proto: Proto) { self.proto = proto }

        var stopping: Bool { stopFlag.load(ordering: .acquiring) }

        /// Stops the server: sets the flag, then pokes it awake (a 1-byte datagram, or a connection that closes at
        /// once), since it waits without a timeout. Gives up after 10 s.
        func stop() throws {
            stopFlag.store(true, ordering: .releasing)
            if let a = address {
                if let os = try? Catnap.makeLibOS(pollMode: "busy") {
                    if proto == .udp, let q = try? os.socket(.inet, .datagram), let sga = try? os.sgaalloc(1) {
                        if let qt = try? os.pushTo(q, sga, to: a) { _ = try? os.wait(qt, timeout: .seconds(1)) }
                        try? os.sgafree(sga)
                        try? os.close(q)
                    } else if proto == .tcp, let q = try? os.socket(.inet, .stream) {
                        if let qt = try? os.connect(q, to: a) { _ = try? os.wait(qt, timeout: .seconds(1)) }
                        try? os.close(q)
                    }
                }
            }
            guard finished.wait(timeout: .now() + 10) == .success else {
                throw Failure("the catnap server thread did not stop within 10 s")
            }
            if let error { throw error }
        }
    }

    /// Starts an echo server (or, with `sink`, a TCP sink that discards everything) on a new thread pinned to `cpu`.
    static func startServer(proto: Proto, pollMode: String, cpu: Int32, sink: Bool = false) throws -> ServerHandle {
        let h = ServerHandle(proto: proto)
        let thread = Thread {
            defer { h.finished.signal() }
            _ = demi_baseline_pin(cpu)
            var signalled = false
            do {
                let os = try makeLibOS(pollMode: pollMode)
                let qd = try os.socket(.inet, proto == .tcp ? .stream : .datagram)
                try os.bind(qd, to: SocketAddressV4(.loopback, 0))
                if proto == .tcp { try os.listen(qd, backlog: 16) }
                h.address = try os.localAddress(qd)
                signalled = true
                h.ready.signal()
                if proto == .udp {
                    try serveUDP(os, qd, h)
                } else {
                    try serveTCP(os, qd, h, sink: sink)
                }
                try? os.close(qd)
            } catch {
                h.error = error
                if !signalled { h.ready.signal() }
            }
        }
        thread.stackSize = 1 << 20
        thread.start()
        guard h.ready.wait(timeout: .now() + 10) == .success else { throw Failure("catnap server did not start") }
        if let e = h.error { throw e }
        return h
    }

    /// Pops a datagram, pushes the same array back to its sender (zero-copy), re-arms the pop. A 1-byte datagram
    /// after `stop` ends it.
    static func serveUDP(_ os: LibOS, _ qd: QDesc, _ h: ServerHandle) throws {
        var pop = try os.pop(qd)
        while true {
            let r = try os.wait(pop)
            guard let sga = r.sga, let from = sga.address else { throw r.error ?? Errno.ioError }
            if sga.count == 1 && h.stopping {
                try os.sgafree(sga)
                return
            }
            let push = try os.pushTo(qd, sga, to: from)  // the reply first, then re-arm the pop
            pop = try os.pop(qd)
            try os.sgafree(sga)
            if let e = try os.wait(push).error { throw e }
        }
    }

    /// Accepts connections one after another and echoes (or sinks) each until end-of-file; returns once `stop` is set.
    static func serveTCP(_ os: LibOS, _ listener: QDesc, _ h: ServerHandle, sink: Bool) throws {
        while true {
            let a = try os.wait(try os.accept(listener))
            guard case .accepted(let conn, _) = a.value else { throw a.error ?? Errno.ioError }
            if h.stopping {
                try? os.close(conn)
                return
            }
            var received = 0
            while true {
                let r = try os.wait(try os.pop(conn))
                guard let sga = r.sga else {
                    if r.error == .connectionReset { break }
                    throw r.error ?? Errno.ioError
                }
                let n = sga.count
                if n == 0 {
                    try os.sgafree(sga)
                    break
                }
                received += n
                if sink {
                    try os.sgafree(sga)
                } else {
                    let push = try os.push(conn, sga)
                    try os.sgafree(sga)
                    if let e = try os.wait(push).error { throw e }
                }
            }
            if sink {
                h.received.store(received, ordering: .relaxed)
                h.endNs.store(now(), ordering: .releasing)
            }
            try? os.close(conn)
            if h.stopping { return }
        }
    }

    /// One closed-loop echo run: `warmup` untimed then `count` timed round trips of `size` bytes.
    static func echo(proto: Proto, size: Int, count: Int, warmup: Int, pollMode: String, cpus: (Int32, Int32))
        throws -> RunLatency
    {
        let server = try startServer(proto: proto, pollMode: pollMode, cpu: cpus.0)
        var samples: [UInt64] = []
        var failure: (any Error)?
        do {
            samples = try client(proto: proto, server: server.address!, size: size, count: count, warmup: warmup,
                                 pollMode: pollMode)
        } catch {
            failure = error
        }
        try server.stop()
        if let failure { throw failure }
        return RunLatency(samples)
    }

    /// The client: push, wait, then pop until the whole echo is back; one message in flight.
    static func client(proto: Proto, server: SocketAddressV4, size: Int, count: Int, warmup: Int, pollMode: String)
        throws -> [UInt64]
    {
        let os = try makeLibOS(pollMode: pollMode)
        let qd = try os.socket(.inet, proto == .tcp ? .stream : .datagram)
        defer { try? os.close(qd) }
        if proto == .udp { try os.bind(qd, to: SocketAddressV4(.loopback, 0)) }
        // A connected socket, like the C baseline's client.
        if let e = try os.wait(try os.connect(qd, to: server), timeout: .seconds(10)).error { throw e }
        let msg = try os.sgaalloc(size)
        defer { try? os.sgafree(msg) }
        memset(msg.head!.baseAddress, 0x5a, size)
        var samples = [UInt64](repeating: 0, count: count)
        for i in 0..<(warmup + count) {
            let start = now()
            if let e = try os.wait(try os.push(qd, msg)).error { throw e }
            var got = 0
            while got < size {
                let r = try os.wait(try os.pop(qd))
                guard let sga = r.sga, sga.count > 0 else { throw r.error ?? Errno.connectionReset }
                got += sga.count
                try os.sgafree(sga)
            }
            if i >= warmup { samples[i - warmup] = now() - start }
        }
        return samples
    }

    /// Streams `total` bytes in `size`-byte pushes (up to 16 in flight) to a catnap sink over TCP; returns Gbit/s,
    /// timed from before connect to the sink reading end-of-file.
    static func stream(size: Int, total: Int, pollMode: String, cpus: (Int32, Int32)) throws -> Double {
        let sink = try startServer(proto: .tcp, pollMode: pollMode, cpu: cpus.0, sink: true)
        var failure: (any Error)?
        var t0: UInt64 = 0
        do {
            let os = try makeLibOS(pollMode: pollMode)
            let qd = try os.socket(.inet, .stream)
            t0 = now()
            if let e = try os.wait(try os.connect(qd, to: sink.address!), timeout: .seconds(10)).error { throw e }
            let msg = try os.sgaalloc(size)
            memset(msg.head!.baseAddress, 0x5a, size)
            var pending: [QToken] = []
            pending.reserveCapacity(16)
            var sent = 0
            while sent < total || !pending.isEmpty {
                while sent < total && pending.count < 16 {
                    pending.append(try os.push(qd, msg))
                    sent += size
                }
                let (i, r) = try os.waitAny(pending, timeout: .seconds(30))
                if let e = r.error { throw e }
                pending.swapAt(i, pending.count - 1)
                pending.removeLast()
            }
            try os.sgafree(msg)
            try os.close(qd)
        } catch {
            failure = error
        }
        // The sink records when it read end-of-file; `stop` waits for it to finish.
        let deadline = Date().addingTimeInterval(30)
        while sink.endNs.load(ordering: .acquiring) == 0 && failure == nil && Date() < deadline { usleep(50) }
        let end = sink.endNs.load(ordering: .acquiring)
        let received = sink.received.load(ordering: .relaxed)
        try sink.stop()
        if let failure { throw failure }
        guard end > t0, received == total else {
            throw Failure("catnap sink received \(received) of \(total) bytes")
        }
        return Double(total) * 8 / Double(end - t0)
    }

    // MARK: - Many clients

    /// Many clients over TCP: an echo server on a pinned thread that accepts `connections` connections and serves them
    /// all at once (one pop outstanding on each, `waitAny` over them), and one client thread holding every connection,
    /// each with one `size`-byte message in flight (closed loop). `warmup` + `count` round trips in all, over every
    /// connection; returns the `count` timed round trips and the aggregate messages per second over them.
    static func multiEcho(connections: Int, size: Int, count: Int, warmup: Int, pollMode: String,
                          cpus: (Int32, Int32)) throws -> (RunLatency, Double)
    {
        let h = ServerHandle(proto: .tcp)
        let thread = Thread {
            defer { h.finished.signal() }
            _ = demi_baseline_pin(cpus.0)
            var signalled = false
            do {
                let os = try makeLibOS(pollMode: pollMode)
                let listener = try os.socket(.inet, .stream)
                defer { try? os.close(listener) }
                try os.bind(listener, to: SocketAddressV4(.loopback, 0))
                try os.listen(listener, backlog: max(128, connections))
                h.address = try os.localAddress(listener)
                signalled = true
                h.ready.signal()
                try serveMany(os, listener, connections: connections, h)
            } catch {
                h.error = error
                if !signalled { h.ready.signal() }
            }
        }
        thread.stackSize = 1 << 20
        thread.start()
        guard h.ready.wait(timeout: .now() + 10) == .success else { throw Failure("catnap server did not start") }
        if let e = h.error { throw e }
        var result: (RunLatency, Double)?
        var failure: (any Error)?
        do {
            result = try multiClient(.tcp, server: h.address!, clients: connections, size: size, count: count,
                                     warmup: warmup, pollMode: pollMode)
        } catch {
            failure = error
        }
        // The client closed its connections: the server sees end-of-file on each and returns. If the client failed
        // before connecting them all, `stop` wakes the server out of accept.
        if failure != nil || h.finished.wait(timeout: .now() + 10) != .success {
            try h.stop()
        } else if let e = h.error {
            throw e
        }
        if let failure { throw failure }
        return result!
    }

    /// Accepts `connections` connections, then echoes on all of them until each has reached end-of-file.
    static func serveMany(_ os: LibOS, _ listener: QDesc, connections: Int, _ h: ServerHandle) throws {
        var conns: [QDesc] = []
        while conns.count < connections {
            let a = try os.wait(try os.accept(listener))
            guard case .accepted(let conn, _) = a.value else { throw a.error ?? Errno.ioError }
            if h.stopping {
                try? os.close(conn)
                for c in conns { try? os.close(c) }
                return
            }
            conns.append(conn)
        }
        defer { for c in conns { try? os.close(c) } }
        var tokens = try conns.map { try os.pop($0) }
        var active = Array(conns.indices)  // tokens[k] is a pop on conns[active[k]]
        while !tokens.isEmpty {
            let (k, r) = try os.waitAny(tokens)
            let conn = conns[active[k]]
            guard let sga = r.sga, sga.count > 0 else {
                if let sga = r.sga { try os.sgafree(sga) }
                if let e = r.error, e != .connectionReset { throw e }
                // End-of-file (or reset): this connection is done.
                tokens.swapAt(k, tokens.count - 1)
                tokens.removeLast()
                active.swapAt(k, active.count - 1)
                active.removeLast()
                continue
            }
            let push = try os.push(conn, sga)
            try os.sgafree(sga)
            if let e = try os.wait(push).error { throw e }
            tokens[k] = try os.pop(conn)
        }
    }

    /// The many-clients client: one `LibOS` with `clients` TCP connections or UDP sockets, one operation outstanding on
    /// each (its push, then its pops until the whole echo is back; a UDP echo is one datagram of exactly `size`
    /// bytes), `waitAny` over all of them. A run that waits 30 s (TCP) or 5 s (UDP: a lost datagram) fails.
    static func multiClient(_ proto: Proto, server: SocketAddressV4, clients: Int, size: Int, count: Int, warmup: Int,
                            pollMode: String) throws -> (RunLatency, Double)
    {
        let os = try makeLibOS(pollMode: pollMode)
        var qds: [QDesc] = []
        defer { for q in qds { try? os.close(q) } }
        for _ in 0..<clients {
            let qd = try os.socket(.inet, proto == .tcp ? .stream : .datagram)
            qds.append(qd)
            if proto == .tcp {
                if let e = try os.wait(try os.connect(qd, to: server), timeout: .seconds(10)).error { throw e }
            } else {
                try os.bind(qd, to: SocketAddressV4(.loopback, 0))
            }
        }
        let msg = try os.sgaalloc(size)
        defer { try? os.sgafree(msg) }
        memset(msg.head!.baseAddress, 0x5a, size)
        func push(_ c: Int) throws(Errno) -> QToken {
            proto == .tcp ? try os.push(qds[c], msg) : try os.pushTo(qds[c], msg, to: server)
        }
        let timeout: Duration = proto == .tcp ? .seconds(30) : .seconds(5)
        let total = warmup + count
        var samples = [UInt64](repeating: 0, count: count)
        var tokens: [QToken] = []
        var slot: [Int] = []  // tokens[k] belongs to client slot[k]
        var pushing = [Bool](repeating: true, count: clients)
        var got = [Int](repeating: 0, count: clients)
        var start = [UInt64](repeating: 0, count: clients)
        var started = 0, done = 0
        var window = now(), elapsed: UInt64 = 0
        for c in 0..<min(clients, total) {
            start[c] = now()
            tokens.append(try push(c))
            slot.append(c)
            started += 1
        }
        if warmup == 0 { window = now() }
        while done < total {
            let (k, r) = try os.waitAny(tokens, timeout: timeout)
            let c = slot[k]
            if pushing[c] {
                if let e = r.error { throw e }
                pushing[c] = false
                tokens[k] = try os.pop(qds[c])
                continue
            }
            guard let sga = r.sga, proto == .udp || sga.count > 0 else {
                throw r.error ?? (proto == .tcp ? Errno.connectionReset : Errno.ioError)
            }
            got[c] += sga.count
            try os.sgafree(sga)
            if proto == .udp && got[c] != size {
                throw Failure("catnap UDP echo: \(got[c]) of \(size) bytes came back")
            }
            if got[c] < size {
                tokens[k] = try os.pop(qds[c])
                continue
            }
            let t = now()
            got[c] = 0
            if done >= warmup { samples[done - warmup] = t - start[c] }
            done += 1
            if done == warmup { window = t }
            if done == total { elapsed = t - window }
            if started < total {
                started += 1
                start[c] = now()
                pushing[c] = true
                tokens[k] = try push(c)
            } else {
                tokens.swapAt(k, tokens.count - 1)
                tokens.removeLast()
                slot.swapAt(k, slot.count - 1)
                slot.removeLast()
            }
        }
        return (RunLatency(samples), Double(count) * 1e9 / Double(max(elapsed, 1)))
    }

    /// Many clients over UDP: the UDP echo server (``startServer(proto:pollMode:cpu:sink:)``: one socket, one pop
    /// outstanding) on a pinned thread, and one client thread holding `connections` UDP sockets, each with one
    /// `size`-byte datagram in flight (its pushTo, then its pop), `waitAny` over all of them. Results as
    /// ``multiEcho(connections:size:count:warmup:pollMode:cpus:)``; a datagram lost on loopback fails the run (5 s).
    static func multiEchoUDP(connections: Int, size: Int, count: Int, warmup: Int, pollMode: String,
                             cpus: (Int32, Int32)) throws -> (RunLatency, Double)
    {
        let h = try startServer(proto: .udp, pollMode: pollMode, cpu: cpus.0)
        var result: (RunLatency, Double)?
        var failure: (any Error)?
        do {
            result = try multiClient(.udp, server: h.address!, clients: connections, size: size, count: count,
                                     warmup: warmup, pollMode: pollMode)
        } catch {
            failure = error
        }
        try h.stop()
        if let failure { throw failure }
        return result!
    }

    // MARK: - Microbenchmarks

    /// One thread, two UDP sockets on loopback: sgaalloc + pushTo + wait + pop + wait + sgafree. Mean ns per round.
    static func localRound(rounds: Int) throws -> Double {
        let os = try makeLibOS(pollMode: "busy")
        let a = try os.socket(.inet, .datagram)
        try os.bind(a, to: SocketAddressV4(.loopback, 0))
        let b = try os.socket(.inet, .datagram)
        try os.bind(b, to: SocketAddressV4(.loopback, 0))
        defer {
            try? os.close(a)
            try? os.close(b)
        }
        let to = try os.localAddress(a)
        let t0 = now()
        for _ in 0..<rounds {
            let sga = try os.sgaalloc(64)
            let pt = try os.pushTo(b, sga, to: to)
            try os.sgafree(sga)
            _ = try os.wait(pt)
            let r = try os.wait(try os.pop(a))
            guard let got = r.sga else { throw r.error ?? Errno.ioError }
            try os.sgafree(got)
        }
        return Double(now() - t0) / Double(rounds)
    }

    /// The scheduler alone: wake one background task and run the pass that polls it. Mean ns per round.
    static func schedulerWakePoll(rounds: Int) throws -> Double {
        let s = Scheduler()
        let task = try s.spawnBackground(tag: 1)
        var polls = 0
        let t0 = now()
        for _ in 0..<rounds {
            s.wake(task)
            s.runReady { polls &+= Int($0) &+ 1 }
        }
        let ns = Double(now() - t0) / Double(rounds)
        guard polls == rounds * (Int(task) + 1) else { throw Failure("scheduler polled \(polls) times") }
        return ns
    }

    /// The buffer pool alone: allocate a 64-byte buffer and drop it. Mean ns per round.
    static func bufferAllocFree(rounds: Int) -> Double {
        let pool = BufferPool()
        var live = 0
        let t0 = now()
        for _ in 0..<rounds {
            if let b = pool.allocate(size: 64) {
                live &+= b.count
                b.release()
            }
        }
        let ns = Double(now() - t0) / Double(rounds)
        return live == rounds * 64 ? ns : -1
    }

    /// The application's path: `sgaalloc(64)` + `sgafree` through the facade (validation included).
    static func sgaAllocFree(rounds: Int) throws -> Double {
        let os = try makeLibOS(pollMode: "busy")
        let t0 = now()
        for _ in 0..<rounds {
            let s = try os.sgaalloc(64)
            try os.sgafree(s)
        }
        return Double(now() - t0) / Double(rounds)
    }
}
