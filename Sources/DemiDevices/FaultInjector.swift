import DemiBuffers
import DemiCore

/// What a ``FaultInjector`` does to transmitted frames. Rates are probabilities per frame, from 0 to 1.
public struct FaultProfile: Sendable, Hashable {
    /// The seed of the injector's random numbers: the same seed and the same frames give the same faults.
    public var seed: UInt64 = 1
    public var loss = 0.0
    public var duplication = 0.0
    /// A reordered frame is held back by ``reorderDelay`` on top of its delay, so later frames overtake it.
    public var reordering = 0.0
    public var reorderDelay: Duration = .milliseconds(1)
    /// A corrupted frame has one random bit flipped (in a copy: the sender's buffers are never touched).
    public var corruption = 0.0
    public var delay: Duration = .zero
    /// Uniform extra delay in `0...jitter`.
    public var jitter: Duration = .zero
    /// Serialisation rate in bits per second (nil: unlimited). Frames queue behind each other; the queue holds at
    /// most ``queueLimit`` frames and drops beyond that (tail drop).
    public var rate: Int? = nil
    public var queueLimit = 10_000

    public init() {}

    /// Parses `loss=0.01,dup=0.05,reorder=0.25,corrupt=0.01,delay=10ms,jitter=2ms,rate=100mbit,seed=7`.
    public init(parsing text: String) throws(Errno) {
        self.init()
        for item in text.split(separator: ",") where !item.isEmpty {
            let kv = item.split(separator: "=", maxSplits: 1).map { String($0.filter { $0 != " " }) }
            guard kv.count == 2 else { throw .invalidArgument }
            let (k, v) = (kv[0].lowercased(), kv[1].lowercased())
            func probability() throws(Errno) -> Double {
                var t = v
                var scale = 1.0
                if t.hasSuffix("%") { t.removeLast(); scale = 0.01 }
                guard let d = Double(t), d >= 0, d * scale <= 1 else { throw .invalidArgument }
                return d * scale
            }
            switch k {
            case "seed": guard let s = UInt64(v) else { throw .invalidArgument }; seed = s
            case "loss": loss = try probability()
            case "dup", "duplicate", "duplication": duplication = try probability()
            case "reorder", "reordering": reordering = try probability()
            case "corrupt", "corruption": corruption = try probability()
            case "delay": delay = try Self.duration(v)
            case "jitter": jitter = try Self.duration(v)
            case "reorder-delay": reorderDelay = try Self.duration(v)
            case "rate": self.rate = try Self.bitrate(v)
            case "queue": guard let q = Int(v), q > 0 else { throw .invalidArgument }; queueLimit = q
            default: throw .invalidArgument
            }
        }
    }

    static func duration(_ v: String) throws(Errno) -> Duration {
        for (suffix, ns) in [("ns", 1.0), ("us", 1e3), ("ms", 1e6), ("s", 1e9)] where v.hasSuffix(suffix) {
            guard let d = Double(v.dropLast(suffix.count)), d >= 0 else { throw .invalidArgument }
            return .nanoseconds(Int64(d * ns))
        }
        throw .invalidArgument
    }

    static func bitrate(_ v: String) throws(Errno) -> Int {
        for (suffix, scale) in [("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3), ("bit", 1.0)] where v.hasSuffix(suffix) {
            guard let d = Double(v.dropLast(suffix.count)), d > 0 else { throw .invalidArgument }
            return Int(d * scale)
        }
        throw .invalidArgument
    }
}

/// Counters of what a ``FaultInjector`` did.
public struct FaultStatistics: Sendable, Hashable {
    public var dropped = 0
    public var duplicated = 0
    public var reordered = 0
    public var corrupted = 0
    public var delayed = 0
    public var queueDrops = 0
    public init() {}
}

/// A device that impairs the frames another device transmits: loss, duplication, reordering, bit-flip corruption,
/// delay with jitter and a rate limit, all from a seeded generator, so a test run can be replayed exactly.
///
/// Delayed frames wait in a queue ordered by due time; they go out during later `transmit` or `receive` calls whose
/// `now` has reached their time (a stack polls its device on every pass, so frames leave on time).
public final class FaultInjector<Device: PhysicalLayer>: PhysicalLayer {
    public let inner: Device
    public let profile: FaultProfile
    public private(set) var faults = FaultStatistics()
    var rng: SplitMix64
    var nextFree: Int64 = 0
    var sequence: UInt64 = 0
    var held: [(due: Int64, seq: UInt64, frame: DemiBuffer)] = []

    public init(_ inner: Device, profile: FaultProfile) {
        self.inner = inner
        self.profile = profile
        rng = SplitMix64(seed: profile.seed)
        held.reserveCapacity(min(profile.queueLimit, 4096))
    }

    deinit { for h in held { h.frame.releaseChain() } }

    public var capabilities: DeviceCapabilities { inner.capabilities }
    public var statistics: DeviceStatistics { inner.statistics }

    /// Frames held back (delayed, reordered or queued behind the rate limit).
    public var heldCount: Int { held.count }

    /// The earliest time a held frame is due, if any: a caller that sleeps should wake by then.
    public var nextDue: Instant? { held.first.map { Instant(rawValue: $0.due) } }

    public func receive(into frames: UnsafeMutablePointer<DemiBuffer>, capacity: Int, now: Instant) -> Int {
        release(now: now)
        return inner.receive(into: frames, capacity: capacity, now: now)
    }

    @discardableResult
    public func transmit(_ frame: DemiBuffer, now: Instant) -> Bool {
        release(now: now)
        if chance(profile.loss) {
            faults.dropped += 1
            frame.releaseChain()
            return true  // the device took it; the wire lost it
        }
        var f = frame
        if chance(profile.corruption), let copy = frame.flattened(into: frame.pool) {
            frame.releaseChain()
            if copy.count > 0 {
                let bit = Int(rng.next() % UInt64(copy.count * 8))
                copy.bytes[bit / 8] ^= UInt8(1 << (bit % 8))
            }
            faults.corrupted += 1
            f = copy
        }
        var copies = 1
        if chance(profile.duplication) {
            copies = 2
            faults.duplicated += 1
            var h: UnsafeMutablePointer<BufferHeader>? = f.header
            while let c = h { c.pointee.refcount &+= 1; h = c.pointee.next }
        }
        for _ in 0..<copies { schedule(f, now: now) }
        release(now: now)
        return true
    }

    func schedule(_ f: DemiBuffer, now: Instant) {
        var due = now.rawValue &+ profile.delay.nanoseconds
        if profile.jitter > .zero { due &+= Int64(rng.next() % UInt64(profile.jitter.nanoseconds + 1)) }
        if chance(profile.reordering) {
            due &+= profile.reorderDelay.nanoseconds
            faults.reordered += 1
        }
        if let rate = profile.rate {
            let start = max(due, nextFree)
            nextFree = start &+ Int64(Double(f.chainCount * 8) * 1e9 / Double(rate))
            due = nextFree
        }
        if due <= now.rawValue && held.isEmpty {
            inner.transmit(f, now: now)
            return
        }
        guard held.count < profile.queueLimit else {
            faults.queueDrops += 1
            f.releaseChain()
            return
        }
        faults.delayed += 1
        sequence &+= 1
        // Insert keeping (due, seq) order; the queue is short and mostly appended at the end.
        var i = held.count
        while i > 0 && held[i - 1].due > due { i -= 1 }
        held.insert((due, sequence, f), at: i)
    }

    /// Sends every held frame that is due at `now`.
    public func release(now: Instant) {
        var k = 0
        while k < held.count && held[k].due <= now.rawValue {
            inner.transmit(held[k].frame, now: now)
            k += 1
        }
        if k > 0 { held.removeFirst(k) }
    }

    @inline(__always)
    func chance(_ p: Double) -> Bool {
        guard p > 0 else { return false }
        return Double(rng.next() >> 11) * (1.0 / 9007199254740992.0) < p
    }
}

/// A small, fast, seedable generator (SplitMix64).
public struct SplitMix64: Sendable {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
