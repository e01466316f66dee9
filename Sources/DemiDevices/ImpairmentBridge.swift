import DemiBuffers
import DemiCore

/// What an ``ImpairmentBridge`` moved in one direction.
public struct BridgeDirectionStatistics: Sendable, Hashable {
    /// Frames (and their bytes) received on the source device and handed to the direction's fault injector.
    public var frames = 0
    public var bytes = 0
    /// What the fault injector did to them (dropped, duplicated, corrupted, ...).
    public var faults = FaultStatistics()
    public init() {}
}

/// Counters of an ``ImpairmentBridge``.
public struct ImpairmentBridgeStatistics: Sendable, Hashable {
    /// Frames received on device a, sent out of device b (through the ``ImpairmentBridge/towardB`` profile).
    public var aToB = BridgeDirectionStatistics()
    /// Frames received on device b, sent out of device a (through the ``ImpairmentBridge/towardA`` profile).
    public var bToA = BridgeDirectionStatistics()
    /// ``ImpairmentBridge/poll(now:)`` calls, and those that moved or released at least one frame.
    public var polls = 0
    public var busyPolls = 0
    /// The two devices' own counters (drops by the device: full rings, oversized frames, kernel RX-ring drops).
    public var deviceA = DeviceStatistics()
    public var deviceB = DeviceStatistics()
    public init() {}
}

/// A two-port impairing bridge: every frame received on one device is sent out of the other through a
/// ``FaultInjector`` with that direction's ``FaultProfile`` (loss, duplication, reordering, corruption, delay, jitter,
/// rate). Frames are forwarded as they are (no MAC learning or rewriting), so the two hosts on either side see one
/// Ethernet segment, impaired.
///
/// Put it in a network namespace between two hosts, on two packet-socket devices
/// (`ImpairmentBridge(PacketSocketDevice(...), PacketSocketDevice(...))`), to impair a real link on kernels without
/// netem; or between two in-memory links in a test. Generic over the device types, so each call is direct.
///
/// One thread drives it with ``poll(now:)``, like a stack drives its device: the devices (and their pools) belong to
/// that thread.
public final class ImpairmentBridge<A: PhysicalLayer, B: PhysicalLayer> {
    public let a: A
    public let b: B
    /// Sends out of device b the frames received on device a.
    public let towardB: FaultInjector<B>
    /// Sends out of device a the frames received on device b.
    public let towardA: FaultInjector<A>
    /// Frames received from each device per ``poll(now:)`` at most.
    public let burst: Int
    @usableFromInline var counters = ImpairmentBridgeStatistics()
    @usableFromInline let frames: UnsafeMutablePointer<DemiBuffer>

    /// - Parameters:
    ///   - towardA: the impairment of frames going to device a's side (received on b).
    ///   - towardB: the impairment of frames going to device b's side (received on a).
    ///   - burst: frames received from each device per poll at most; nil: the smaller device's `maxBurst`.
    public init(_ a: A, _ b: B, towardA: FaultProfile = FaultProfile(), towardB: FaultProfile = FaultProfile(),
                burst: Int? = nil) {
        self.a = a
        self.b = b
        self.towardA = FaultInjector(a, profile: towardA)
        self.towardB = FaultInjector(b, profile: towardB)
        self.burst = max(1, burst ?? min(a.capabilities.maxBurst, b.capabilities.maxBurst))
        frames = .allocate(capacity: self.burst)
    }

    deinit { frames.deallocate() }

    /// Receives one burst from each device and sends it on through the other direction's injector, releases held
    /// (delayed, reordered, rate-limited) frames that are due at `now`, and flushes both devices. Returns how many
    /// frames it received (0: nothing arrived; frames may still be held, see ``nextDue``).
    @discardableResult
    public func poll(now: Instant) -> Int {
        let held = towardA.heldCount + towardB.heldCount
        let fromA = move(from: a, to: towardB, now: now, into: &counters.aToB)
        let fromB = move(from: b, to: towardA, now: now, into: &counters.bToA)
        towardA.release(now: now)
        towardB.release(now: now)
        a.flush(now: now)
        b.flush(now: now)
        counters.polls += 1
        if fromA + fromB > 0 || towardA.heldCount + towardB.heldCount < held { counters.busyPolls += 1 }
        return fromA + fromB
    }

    @inline(__always)
    func move<S: PhysicalLayer, D: PhysicalLayer>(from source: S, to out: FaultInjector<D>, now: Instant,
                                                  into c: inout BridgeDirectionStatistics) -> Int {
        let n = source.receive(into: frames, capacity: burst, now: now)
        for i in 0..<n {
            let f = frames[i]
            c.frames += 1
            c.bytes += f.chainCount
            out.transmit(f, now: now)
        }
        return n
    }

    /// Frames held back in both directions.
    public var heldCount: Int { towardA.heldCount + towardB.heldCount }

    /// The earliest time a held frame is due, if any: a driver that sleeps between polls should wake by then.
    public var nextDue: Instant? {
        switch (towardA.nextDue, towardB.nextDue) {
        case let (x?, y?): return x.rawValue <= y.rawValue ? x : y
        case let (x?, nil): return x
        case let (nil, y?): return y
        case (nil, nil): return nil
        }
    }

    /// Counters: frames and bytes each way, the injectors' faults, the devices' own statistics.
    public var statistics: ImpairmentBridgeStatistics {
        var s = counters
        s.aToB.faults = towardB.faults
        s.bToA.faults = towardA.faults
        s.deviceA = a.statistics
        s.deviceB = b.statistics
        return s
    }
}
