import DemiBuffers
import DemiCore
import DemiDevices
import DemiInet
import DemiRuntime
import DemiStackLibOS
import DemiWire
import TestHostFixture

typealias SimDevice = FaultInjector<InMemoryLink.Endpoint>
typealias SimStack = StackLibOS<SimDevice>

/// Two user-space stacks joined by an in-memory link (optionally impaired), polled in turn on this thread.
final class SimulatedNetwork {
    let poolA = BufferPool()
    let poolB = BufferPool()
    let link: InMemoryLink
    let a: SimStack
    let b: SimStack
    static let ipA = IPv4Address(198, 18, 0, 1)
    static let ipB = IPv4Address(198, 18, 0, 2)
    static let macA = MACAddress(2, 0, 0, 0, 0, 1)
    static let macB = MACAddress(2, 0, 0, 0, 0, 2)

    init(profile: FaultProfile = FaultProfile(), tcp: (inout TCPConfiguration) -> Void = { _ in },
         mtu: Int = 1500, capacity: Int = 4096, transmitOffload: ChecksumOffload = []) {
        link = InMemoryLink(poolA: poolA, poolB: poolB, capacity: capacity,
                            capabilities: DeviceCapabilities(mtu: mtu, transmitOffload: transmitOffload))
        var ca = StackConfiguration(localIPv4: Self.ipA, localMAC: Self.macA)
        var cb = StackConfiguration(localIPv4: Self.ipB, localMAC: Self.macB)
        // The simulated wire has microsecond round trips: short timers keep loss tests quick.
        for c in [0, 1] {
            var t = TCPConfiguration()
            t.retransmission.minimum = .milliseconds(5)
            t.retransmission.initial = .milliseconds(50)
            t.delayedACK = .milliseconds(1)
            t.timeWait = .milliseconds(50)
            tcp(&t)
            if c == 0 { ca.tcp = t } else { cb.tcp = t }
        }
        var pb = profile
        pb.seed = profile.seed &+ 0x9E37_79B9
        a = StackLibOS(device: FaultInjector(link.a, profile: profile), pool: poolA, configuration: ca)
        b = StackLibOS(device: FaultInjector(link.b, profile: pb), pool: poolB, configuration: cb)
    }

    /// Polls both stacks until `done` holds; false after `timeout`.
    @discardableResult
    func run(timeout: Duration = .seconds(60), until done: () -> Bool) -> Bool {
        let deadline = Instant.now() + timeout
        while !done() {
            let now = Instant.now()
            if now > deadline { return false }
            a.poll(now: now)
            b.poll(now: now)
        }
        return true
    }

    /// Polls both stacks until `qt` of `os` completes; nil after `timeout`.
    func wait(_ os: SimStack, _ qt: QToken, timeout: Duration = .seconds(60)) -> QResult? {
        var r: QResult?
        run(timeout: timeout) {
            r = os.scheduler.take(qt)
            return r != nil
        }
        return r
    }

    /// Polls both stacks for `duration`.
    func idle(_ duration: Duration) {
        let end = Instant.now() + duration
        run { Instant.now() > end }
    }
}

/// One direction of a bulk TCP transfer driven from the polling loop: the sender keeps a few pushes in flight, the
/// receiver keeps one pop armed; both hash what they see.
final class BulkTransfer {
    let sender: SimStack
    let receiver: SimStack
    let out: QDesc
    let inq: QDesc
    let total: Int
    let chunk: Int
    var sent = 0
    var received = 0
    var pushes: [QToken] = []
    var pop: QToken?
    var sentHash = SHA256()
    var receivedHash = SHA256()
    var error: Errno?
    var seed: UInt64

    init(from sender: SimStack, _ out: QDesc, to receiver: SimStack, _ inq: QDesc, bytes: Int, chunk: Int = 32768,
         seed: UInt64 = 7) {
        self.sender = sender
        self.receiver = receiver
        self.out = out
        self.inq = inq
        total = bytes
        self.chunk = chunk
        self.seed = seed
    }

    var done: Bool { error != nil || (received == total && pushes.isEmpty) }

    func step() {
        guard error == nil else { return }
        do {
            pushes.removeAll { qt in
                guard let r = sender.scheduler.take(qt) else { return false }
                if let e = r.error { error = e }
                return true
            }
            while pushes.count < 8 && sent < total {
                let n = min(chunk, total - sent)
                let b = sender.pool.allocate(size: n)!
                var rng = SplitMix64(seed: seed &+ UInt64(sent))
                let p = b.baseAddress
                var k = 0
                while k < n {
                    var v = rng.next()
                    let m = min(8, n - k)
                    withUnsafeBytes(of: &v) { (p + k).copyMemory(from: $0.baseAddress!, byteCount: m) }
                    k += m
                }
                sentHash.update(UnsafeRawBufferPointer(b.bytes))
                sender.pool.giveToApplication(b)
                pushes.append(try sender.push(out, ScatterGatherArray(head: b)))
                try sender.pool.freeFromApplication(b)
                sent += n
            }
            if pop == nil && received < total { pop = try receiver.pop(inq) }
            if let qt = pop, let r = receiver.scheduler.take(qt) {
                pop = nil
                if let e = r.error { error = e; return }
                guard let sga = r.sga else { return }
                var seg: DemiBuffer? = sga.head
                while let s = seg {
                    receivedHash.update(UnsafeRawBufferPointer(s.bytes))
                    received += s.count
                    seg = s.nextSegment
                }
                if sga.count == 0 { error = .connectionReset }  // early end of file
                try receiver.pool.freeFromApplication(sga.head!)
            }
        } catch {
            self.error = error as? Errno ?? .ioError
        }
    }
}

extension SimulatedNetwork {
    /// Opens one connection from b (client) to a (server); returns (server side, client side).
    func connectPair(port: UInt16 = 80) throws -> (QDesc, QDesc)? {
        let listener = try a.socket(domain: .inet, type: .stream)
        try a.bind(listener, to: SocketAddressV4(.any, port))
        try a.listen(listener, backlog: 8)
        let acceptQT = try a.accept(listener)
        let client = try b.socket(domain: .inet, type: .stream)
        let c = try b.connect(client, to: SocketAddressV4(Self.ipA, port))
        guard let r = wait(b, c), r.error == nil, let acc = wait(a, acceptQT),
              case .accepted(let conn, _) = acc.value else { return nil }
        try a.close(listener)
        return (conn, client)
    }
}
