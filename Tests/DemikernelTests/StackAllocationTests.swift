import CAllocCounter
import DemiBuffers
import DemiCore
import DemiDevices
import DemiInet
import DemiRuntime
import DemiStackLibOS
import Testing

/// Heap allocations per segment on the user-space stack's hot path, after warm-up, counted by interposing malloc
/// (per thread): two `StackLibOS` instances joined by an `InMemoryLink`, polled in turn on this thread.
///
/// Frames, segments and application buffers come from the pools, operations live in scheduler slots, the send and
/// receive queues are rings that stop growing once warm, and connections are found through a one-entry cache in
/// front of the table: steady state allocates nothing.
@Suite(.serialized) struct StackAllocationTests {
    typealias Stack = StackLibOS<InMemoryLink.Endpoint>

    final class Pair {
        let poolA = BufferPool()
        let poolB = BufferPool()
        let link: InMemoryLink
        let a: Stack
        let b: Stack
        static let ipA = IPv4Address(198, 18, 0, 1)
        static let ipB = IPv4Address(198, 18, 0, 2)

        init() {
            link = InMemoryLink(poolA: poolA, poolB: poolB, capacity: 4096)
            let macA = MACAddress(2, 0, 0, 0, 0, 1), macB = MACAddress(2, 0, 0, 0, 0, 2)
            var ca = StackConfiguration(localIPv4: Self.ipA, localMAC: macA)
            var cb = StackConfiguration(localIPv4: Self.ipB, localMAC: macB)
            ca.staticARP = [Self.ipB: macB]
            cb.staticARP = [Self.ipA: macA]
            a = Stack(device: link.a, pool: poolA, configuration: ca)
            b = Stack(device: link.b, pool: poolB, configuration: cb)
        }

        func poll() {
            let now = Instant.now()
            a.poll(now: now)
            b.poll(now: now)
        }

        func wait(_ os: Stack, _ qt: QToken) -> QResult {
            while true {
                if let r = os.scheduler.take(qt) { return r }
                poll()
            }
        }

        func connect() throws -> (server: QDesc, client: QDesc) {
            let l = try a.socket(domain: .inet, type: .stream)
            try a.bind(l, to: SocketAddressV4(.any, 80))
            try a.listen(l, backlog: 4)
            let acc = try a.accept(l)
            let c = try b.socket(domain: .inet, type: .stream)
            let ct = try b.connect(c, to: SocketAddressV4(Self.ipA, 80))
            #expect(wait(b, ct).error == nil)
            guard case .accepted(let s, _) = wait(a, acc).value else { throw Errno.ioError }
            try a.close(l)
            return (s, c)
        }

        func message(_ pool: BufferPool, _ size: Int) -> ScatterGatherArray {
            let m = pool.allocate(size: size)!
            pool.giveToApplication(m)
            return ScatterGatherArray(head: m)
        }
    }

    func measure(_ rounds: Int, warmup: Int = 500, _ body: () throws -> Void) rethrows -> Int64 {
        for _ in 0..<warmup { try body() }
        alloc_counter_start()
        for _ in 0..<rounds { try body() }
        return alloc_counter_stop()
    }

    @Test func tcpEchoRoundsAllocateNothing() throws {
        let net = Pair()
        let (server, client) = try net.connect()
        let segmentsBefore = net.a.statistics.tcpSegmentsReceived
        var rounds = 0
        var back: QToken?
        var failures = 0  // checked after the count: an expectation inside the measured loop allocates
        let allocations = try measure(2000) {
            // Client push + pop, server pop + push of the same buffer, every token waited for. The server's push
            // completes when the client's next segment acknowledges it (its ACK rides on data, not on a timer).
            let sga = net.message(net.b.pool, 64)
            let push = try net.b.push(client, sga)
            try net.b.pool.freeFromApplication(sga.head!)
            let got = net.wait(net.a, try net.a.pop(server))
            if let t = back, net.wait(net.a, t).error != nil { failures += 1 }
            back = try net.a.push(server, got.sga!)
            try net.a.pool.freeFromApplication(got.sga!.head!)
            let echo = net.wait(net.b, try net.b.pop(client))
            if echo.sga?.count != 64 { failures += 1 }
            try net.b.pool.freeFromApplication(echo.sga!.head!)
            if net.wait(net.b, push).error != nil { failures += 1 }
            rounds += 1
        }
        #expect(allocations == 0)
        #expect(rounds == 2500 && failures == 0)
        #expect(net.a.statistics.tcpSegmentsReceived - segmentsBefore >= 2500)
    }

    @Test func bulkSegmentsAllocateNothing() throws {
        let net = Pair()
        let (server, client) = try net.connect()
        let chunk = 65536
        let msg = net.message(net.b.pool, chunk)
        // Outstanding pushes in a fixed ring (they complete in order).
        var pushes = [QToken](repeating: QToken(rawValue: 0), count: 8)
        var first = 0, outstanding = 0
        var pop = try net.a.pop(server)
        var received = 0
        // One step: keep 8 pushes of 64 KiB outstanding, run both stacks, pop and free every segment.
        func step() throws {
            while outstanding < 8 {
                pushes[(first + outstanding) & 7] = try net.b.push(client, msg)
                outstanding += 1
            }
            net.poll()
            while outstanding > 0, net.b.scheduler.take(pushes[first]) != nil {
                first = (first + 1) & 7
                outstanding -= 1
            }
            while let r = net.a.scheduler.take(pop) {
                received += r.sga!.count
                try net.a.pool.freeFromApplication(r.sga!.head!)
                pop = try net.a.pop(server)
            }
        }
        for _ in 0..<3000 { try step() }  // warm-up: slow start, pools and rings reach their working size
        let segmentsBefore = net.a.statistics.tcpSegmentsReceived
        let receivedBefore = received
        alloc_counter_start()
        for _ in 0..<3000 { try step() }
        let allocations = alloc_counter_stop()
        let segments = net.a.statistics.tcpSegmentsReceived - segmentsBefore
        #expect(segments > 10_000, "only \(segments) segments in the measured steps")
        #expect(received - receivedBefore > 10_000_000)
        #expect(allocations == 0, "\(allocations) allocations for \(segments) segments")
        try net.b.pool.freeFromApplication(msg.head!)
    }
}
