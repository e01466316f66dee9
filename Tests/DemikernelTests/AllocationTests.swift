import CAllocCounter
import Demikernel
import Glibc
import Testing

/// Heap allocations per operation on the hot path, after warm-up, counted by interposing malloc (per thread).
///
/// The datapath must not allocate: buffers come from the pool, operations live in scheduler slots, results are
/// plain values. These tests assert zero allocations over many push+pop+wait rounds.
@Suite(.serialized) struct AllocationTests {
    func measure(_ rounds: Int, _ body: () throws -> Void) rethrows -> Int64 {
        for _ in 0..<200 { try body() }  // warm-up: pools, slots and the kernel's buffers settle
        alloc_counter_start()
        for _ in 0..<rounds { try body() }
        return alloc_counter_stop()
    }

    @Test func interposerCounts() {
        alloc_counter_start()
        let p = malloc(16)
        free(p)
        #expect(alloc_counter_stop() == 1)
    }

    @Test func udpPushPopWaitAllocatesNothing() throws {
        let os = try LibOS(.kernelSockets)
        let a = try os.socket(.inet, .datagram)
        try os.bind(a, to: SocketAddressV4(.loopback, 0))
        let b = try os.socket(.inet, .datagram)
        try os.bind(b, to: SocketAddressV4(.loopback, 0))
        let aAddr = try os.localAddress(a)
        let allocations = try measure(2000) {
            let sga = try os.sgaalloc(64)
            let pt = try os.pushTo(b, sga, to: aAddr)
            try os.sgafree(sga)
            _ = try os.wait(pt)
            let r = try os.wait(try os.pop(a))
            try os.sgafree(r.sga!)
        }
        #expect(allocations == 0)
    }

    @Test func tcpPushPopWaitAllocatesNothing() throws {
        let os = try LibOS(.kernelSockets)
        let l = try os.socket(.inet, .stream)
        try os.bind(l, to: SocketAddressV4(.loopback, 0))
        try os.listen(l, backlog: 4)
        let c = try os.socket(.inet, .stream)
        let ct = try os.connect(c, to: try os.localAddress(l))
        guard case .accepted(let s, _) = try os.wait(try os.accept(l)).value else { Issue.record("accept"); return }
        _ = try os.wait(ct)
        var tokens = [QToken](repeating: QToken(rawValue: 0), count: 2)
        let allocations = try measure(2000) {
            // Echo round trip: client pushes, server pops and pushes the same array back, client pops.
            let sga = try os.sgaalloc(64)
            let pt = try os.push(c, sga)
            try os.sgafree(sga)
            tokens[0] = pt
            tokens[1] = try os.pop(s)
            var r = try os.waitAny(tokens)
            let other = try os.wait(tokens[1 - r.0])
            let popped = r.0 == 1 ? r.1 : other
            let back = try os.push(s, popped.sga!)
            try os.sgafree(popped.sga!)
            _ = try os.wait(back)
            r.1 = try os.wait(try os.pop(c))
            try os.sgafree(r.1.sga!)
        }
        #expect(allocations == 0)
    }

    @Test func sharedMemoryPipeMessagesAllocateNothing() throws {
        let a = try LibOS(.sharedMemory)
        let b = try LibOS(.sharedMemory)
        let name = "alloc-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let qa = try a.createPipe(name)
        let qb = try b.openPipe(name)
        let allocations = try measure(5000) {
            let sga = try a.sgaalloc(64)
            let pt = try a.push(qa, sga)
            try a.sgafree(sga)
            _ = try a.wait(pt)
            let r = try b.wait(try b.pop(qb))
            let back = try b.push(qb, r.sga!)
            try b.sgafree(r.sga!)
            _ = try b.wait(back)
            let echo = try a.wait(try a.pop(qa))
            try a.sgafree(echo.sga!)
        }
        #expect(allocations == 0)
        try a.close(qa)
        try b.close(qb)
    }

    @Test func waitAnyOverInvalidTokensAllocatesNothing() throws {
        let os = try LibOS(.kernelSockets)
        let bad = [QToken](repeating: QToken(rawValue: 0x0101_0101_0101_0101), count: 1024)
        var rejected = 0
        let hook = alloc_counter_suspend_throw_hook()
        defer { alloc_counter_restore_throw_hook(hook) }
        let allocations = measure(1000) {
            do throws(Errno) { _ = try os.waitAny(bad, timeout: .zero) } catch { if error == .invalidArgument { rejected += 1 } }
        }
        #expect(allocations == 0)
        #expect(rejected == 1200)
    }
}
