import DemiBuffers
import DemiCore
import DemiDevices
import DemiInet
import DemiRuntime
import DemiStackLibOS
import DemiWire

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
         mtu: Int = 1500, capacity: Int = 4096) {
        link = InMemoryLink(poolA: poolA, poolB: poolB, capacity: capacity,
                            capabilities: DeviceCapabilities(mtu: mtu))
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

/// SHA-256 (FIPS 180-4), for end-to-end content checks.
struct SHA256 {
    var h: [UInt32] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
    var buffer: [UInt8] = []
    var length: UInt64 = 0
    static let k: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]

    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        length += UInt64(bytes.count)
        var i = 0
        if !buffer.isEmpty {
            while i < bytes.count && buffer.count < 64 { buffer.append(bytes[i]); i += 1 }
            if buffer.count == 64 {
                buffer.withUnsafeBytes { block($0) }
                buffer.removeAll(keepingCapacity: true)
            }
        }
        while i + 64 <= bytes.count {
            block(UnsafeRawBufferPointer(rebasing: bytes[i..<i + 64]))
            i += 64
        }
        while i < bytes.count { buffer.append(bytes[i]); i += 1 }
    }

    mutating func update(_ bytes: [UInt8]) { bytes.withUnsafeBytes { update($0) } }

    mutating func finalize() -> [UInt8] {
        let bits = length * 8
        var pad: [UInt8] = [0x80]
        while (Int(length) + pad.count) % 64 != 56 { pad.append(0) }
        for s in stride(from: 56, through: 0, by: -8) { pad.append(UInt8(truncatingIfNeeded: bits >> UInt64(s))) }
        let saved = length
        update(pad)
        length = saved
        return h.flatMap { v in [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: v >> UInt32($0)) } }
    }

    mutating func block(_ p: UnsafeRawBufferPointer) {
        var w = [UInt32](repeating: 0, count: 64)
        for t in 0..<16 {
            w[t] = UInt32(p[4 * t]) << 24 | UInt32(p[4 * t + 1]) << 16 | UInt32(p[4 * t + 2]) << 8 | UInt32(p[4 * t + 3])
        }
        func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { x >> n | x << (32 - n) }
        for t in 16..<64 {
            let s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3)
            let s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10)
            w[t] = w[t - 16] &+ s0 &+ w[t - 7] &+ s1
        }
        var a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7]
        for t in 0..<64 {
            let s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)
            let ch = (e & f) ^ (~e & g)
            let t1 = hh &+ s1 &+ ch &+ Self.k[t] &+ w[t]
            let s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)
            let maj = (a & b) ^ (a & c) ^ (b & c)
            let t2 = s0 &+ maj
            hh = g; g = f; f = e; e = d &+ t1; d = c; c = b; b = a; a = t1 &+ t2
        }
        h[0] &+= a; h[1] &+= b; h[2] &+= c; h[3] &+= d; h[4] &+= e; h[5] &+= f; h[6] &+= g; h[7] &+= hh
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
