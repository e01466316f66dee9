// demi-hotpaths: runs one hot path N times, for instruction counting under callgrind (scripts/check-hotpaths.sh).
//
//   demi-hotpaths PATH N
//
// Paths: operation (spawn + complete + take of one operation), buffer (pool allocate + release, 64 B),
// tcp-echo (one 64-byte TCP echo round trip between two user-space stacks over the in-memory link: 4 I/Os),
// udp-echo (the same over UDP), tcp-bulk (one full-sized TCP segment pushed, sent, received and popped),
// catmem (one 64-byte round trip through a shared-memory pipe between two catmem libOSes in this process, called
// through the facade (`LibOS`) as `demi bench`'s client and echo server call it: 4 I/Os; each pop parks before its
// message comes, as between two processes), catmem-stream (one 64-byte message streamed through a pipe: pushed and
// waited for, then popped, waited for and freed by the other libOS, 32 at a time, as `demi bench`'s sink: 2 I/Os).
// Everything runs on one thread with no system calls on the measured path except clock reads, so the instruction
// count per iteration is repeatable: the checker runs N and 10N+N iterations and divides the difference.
import DemiBuffers
import DemiCore
import DemiDevices
import DemiInet
import DemiRuntime
import DemiSharedMemory
import DemiStackLibOS
import Demikernel
#if canImport(Glibc)
import Glibc
#endif

typealias Stack = StackLibOS<InMemoryLink.Endpoint>

func fail(_ message: String) -> Never {
    print("demi-hotpaths: \(message)")
    exit(2)
}

/// Two stacks over an in-memory link, polled in turn.
final class Pair {
    let poolA = BufferPool()
    let poolB = BufferPool()
    let link: InMemoryLink
    let a: Stack
    let b: Stack

    init() {
        link = InMemoryLink(poolA: poolA, poolB: poolB, capacity: 4096)
        let ca = StackConfiguration(localIPv4: IPv4Address(198, 18, 0, 1), localMAC: MACAddress(2, 0, 0, 0, 0, 1))
        let cb = StackConfiguration(localIPv4: IPv4Address(198, 18, 0, 2), localMAC: MACAddress(2, 0, 0, 0, 0, 2))
        a = Stack(device: link.a, pool: poolA, configuration: ca)
        b = Stack(device: link.b, pool: poolB, configuration: cb)
    }

    @inline(__always)
    func wait(_ os: Stack, _ qt: QToken) -> QResult {
        var spins = 0
        while true {
            if let r = os.scheduler.take(qt) { return r }
            let now = Instant.now()
            a.poll(now: now)
            b.poll(now: now)
            spins += 1
            if spins > 10_000_000 { fail("an operation never completed") }
        }
    }

    func tcpPair() throws(Errno) -> (server: QDesc, client: QDesc) {
        let l = try a.socket(domain: .inet, type: .stream)
        try a.bind(l, to: SocketAddressV4(.any, 80))
        try a.listen(l, backlog: 4)
        let acc = try a.accept(l)
        let c = try b.socket(domain: .inet, type: .stream)
        let conn = try b.connect(c, to: SocketAddressV4(IPv4Address(198, 18, 0, 1), 80))
        guard wait(b, conn).error == nil, case .accepted(let s, _) = wait(a, acc).value else { fail("no connection") }
        return (s, c)
    }
}

func message(_ pool: BufferPool, _ n: Int) -> ScatterGatherArray {
    guard let b = pool.allocate(size: n) else { fail("out of buffers") }
    memset(b.baseAddress, 0x5A, n)
    pool.giveToApplication(b)
    return ScatterGatherArray(head: b)
}

/// Two catmem libOSes in this process, each behind the facade applications call (`LibOS`, as `demi bench`'s client
/// and echo use it), joined by a pipe (`c` the creator's end, `s` the opener's) and a 64-byte message.
struct CatmemPair {
    let client: LibOS
    let server: LibOS
    let c: QDesc
    let s: QDesc
    let msg: ScatterGatherArray

    init() throws(Errno) {
        do {
            client = try LibOS(.sharedMemory)
            server = try LibOS(.sharedMemory)
        } catch { fail("catmem: \(error)") }
        let name = "hotpaths-\(getpid())"
        c = try client.createPipe(name)
        s = try server.openPipe(name)
        msg = try client.sgaalloc(64)
        memset(msg.head!.baseAddress, 0x5A, 64)
    }

    func close() throws(Errno) {
        try client.sgafree(msg)
        try client.close(c)
        try server.close(s)
    }
}

/// The scheduler's own path, in a function of its own so that what the compiler inlines into ``run(_:_:)`` for the other
/// paths does not change how this one is compiled.
@inline(never)
func operations(_ n: Int) throws(Errno) {
    let s = Scheduler()
    for _ in 0..<n {
        let qt = try s.spawn(Operation(code: .pop, qd: QDesc(rawValue: 500)))
        let i = UInt32(truncatingIfNeeded: qt.rawValue)
        s.complete(i, QResult(opcode: .pop, qd: QDesc(rawValue: 500), qt: qt))
        guard s.take(qt) != nil else { fail("no result") }
    }
}

func run(_ path: String, _ n: Int) throws(Errno) {
    switch path {
    case "operation":
        try operations(n)
    case "buffer":
        let pool = BufferPool()
        for _ in 0..<n {
            guard let b = pool.allocate(size: 64) else { fail("out of buffers") }
            b.release()
        }
    case "tcp-echo", "udp-echo":
        let p = Pair()
        let tcp = path == "tcp-echo"
        let server: QDesc, client: QDesc
        if tcp {
            (server, client) = try p.tcpPair()
        } else {
            server = try p.a.socket(domain: .inet, type: .datagram)
            try p.a.bind(server, to: SocketAddressV4(.any, 7))
            client = try p.b.socket(domain: .inet, type: .datagram)
            _ = p.wait(p.b, try p.b.connect(client, to: SocketAddressV4(IPv4Address(198, 18, 0, 1), 7)))
        }
        // Warm up (ARP, windows, pools), then the measured rounds. A TCP push completes when acknowledged, and the
        // acknowledgment of each reply rides on the next request (as in any request-response exchange), so each
        // round collects the previous round's push tokens.
        var pending: (QToken, QToken)?
        for _ in 0..<(n + 100) {
            let sga = message(p.poolB, 64)
            let push = try p.b.push(client, sga)
            try p.poolB.freeFromApplication(sga.head!)
            let pop = try p.a.pop(server)
            guard let got = p.wait(p.a, pop).sga else { fail("server pop failed") }
            let back = tcp ? try p.a.push(server, got) : try p.a.pushTo(server, got, to: got.address!)
            try p.poolA.freeFromApplication(got.head!)
            let pop2 = try p.b.pop(client)
            guard let reply = p.wait(p.b, pop2).sga, reply.count == 64 else { fail("client pop failed") }
            try p.poolB.freeFromApplication(reply.head!)
            if let (x, y) = pending {
                _ = p.wait(p.b, x)
                _ = p.wait(p.a, y)
            }
            pending = (push, back)
        }
    case "tcp-bulk":
        let p = Pair()
        let (server, client) = try p.tcpPair()
        let size = 1448  // one full segment with timestamps at MTU 1500
        // Up to 32 pushes in flight (the receiver acknowledges every second segment).
        var inFlight: [QToken] = []
        inFlight.reserveCapacity(64)
        for _ in 0..<(n + 100) {
            let sga = message(p.poolB, size)
            let push = try p.b.push(client, sga)
            try p.poolB.freeFromApplication(sga.head!)
            var got = 0
            while got < size {
                guard let r = p.wait(p.a, try p.a.pop(server)).sga else { fail("pop failed") }
                got += r.count
                try p.poolA.freeFromApplication(r.head!)
            }
            inFlight.append(push)
            if inFlight.count > 32 { _ = p.wait(p.b, inFlight.removeFirst()) }
        }
    case "catmem":
        let p = try CatmemPair()
        let (client, server, c, s, msg) = (p.client, p.server, p.c, p.s, p.msg)
        var serverPop = try server.pop(s)
        for _ in 0..<(n + 100) {
            _ = try client.wait(try client.push(c, msg))
            let clientPop = try client.pop(c)
            guard let got = try server.wait(serverPop).sga else { fail("server pop failed") }
            _ = try server.wait(try server.push(s, got))
            try server.sgafree(got)
            serverPop = try server.pop(s)
            guard let reply = try client.wait(clientPop).sga, reply.count == 64 else { fail("client pop failed") }
            try client.sgafree(reply)
        }
        try p.close()
    case "catmem-stream":
        // One-way streaming: the client pushes (and waits for) one 64-byte message per iteration; every 32 the server
        // pops the 32 waiting (pop, wait, sgafree each), as `demi bench`'s sink does. Both ends, per message.
        let p = try CatmemPair()
        let (client, server, c, s, msg) = (p.client, p.server, p.c, p.s, p.msg)
        for i in 0..<(n + 128) {
            _ = try client.wait(try client.push(c, msg))
            if i % 32 == 31 {
                for _ in 0..<32 {
                    guard let got = try server.wait(try server.pop(s)).sga, got.count == 64 else {
                        fail("pop failed")
                    }
                    try server.sgafree(got)
                }
            }
        }
        try p.close()
    default:
        fail("unknown path \(path); paths: operation buffer tcp-echo udp-echo tcp-bulk catmem catmem-stream")
    }
}

let args = CommandLine.arguments
guard args.count == 3, let n = Int(args[2]), n > 0 else { fail("usage: demi-hotpaths PATH N") }
do { try run(args[1], n) } catch { fail("\(args[1]): \(error)") }
