import DemiBuffers
import DemiCore

/// Checksums a device computes or verifies itself.
public struct ChecksumOffload: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let ipv4 = ChecksumOffload(rawValue: 1)
    public static let udp = ChecksumOffload(rawValue: 2)
    public static let tcp = ChecksumOffload(rawValue: 4)
}

/// What a device can do.
public struct DeviceCapabilities: Sendable, Hashable {
    /// The largest IP packet (layer 3) the device carries; a frame adds the 14-byte Ethernet header.
    public var mtu: Int
    /// Frames moved by one receive or transmit call at most.
    public var maxBurst: Int
    /// Checksums verified on receive (a received frame needs no software check).
    public var receiveOffload: ChecksumOffload
    /// Checksums filled in on transmit (the stack may leave them zero).
    public var transmitOffload: ChecksumOffload

    public init(mtu: Int = 1500, maxBurst: Int = 32, receiveOffload: ChecksumOffload = [],
                transmitOffload: ChecksumOffload = []) {
        self.mtu = mtu
        self.maxBurst = maxBurst
        self.receiveOffload = receiveOffload
        self.transmitOffload = transmitOffload
    }
}

/// Counters every device keeps.
public struct DeviceStatistics: Sendable, Hashable {
    public var transmittedFrames = 0
    public var transmittedBytes = 0
    public var receivedFrames = 0
    public var receivedBytes = 0
    /// Frames dropped by the device (full queues, no memory).
    public var droppedFrames = 0
    public init() {}
}

/// The physical layer: a device that moves Ethernet frames in bursts. A frame is one ``DemiBuffer``, possibly with
/// further segments chained after it (headers in one buffer, the payload in views of the application's buffers).
///
/// Devices take time as an argument, like every other state machine here. Wrappers (fault injection, capture) are
/// devices that hold a device, so they compose: `PcapWriter(FaultInjector(link.a))`.
///
/// Hot path: callers use concrete device types (generics, not existentials), so each call is direct.
public protocol PhysicalLayer: AnyObject {
    var capabilities: DeviceCapabilities { get }
    var statistics: DeviceStatistics { get }

    /// Moves up to `capacity` received frames into `frames` and returns how many. The caller owns one reference to
    /// each.
    func receive(into frames: UnsafeMutablePointer<DemiBuffer>, capacity: Int, now: Instant) -> Int

    /// Sends one frame, taking over one reference to it (and to its chained segments): the device releases it once
    /// sent or dropped. Returns false if the device dropped it.
    @discardableResult
    func transmit(_ frame: DemiBuffer, now: Instant) -> Bool

    /// Hands frames accepted by `transmit` to the wire, for devices that batch (one kick per poll pass instead of
    /// one per frame). The stack calls it once at the end of each pass. Devices that send at once need nothing.
    func flush(now: Instant)

    /// A buffer of `size` bytes in device memory, for the application to fill and push (`sgaalloc`), that the device
    /// transmits without a copy; nil (the default) if the device has none to offer, and the libOS uses its pool.
    func allocateTransmitBuffer(size: Int) -> DemiBuffer?
}

extension PhysicalLayer {
    @inlinable public func flush(now: Instant) {}
    @inlinable public func allocateTransmitBuffer(size: Int) -> DemiBuffer? { nil }
}

extension PhysicalLayer {
    /// Sends a burst of frames; returns how many were accepted.
    @inlinable
    public func transmit(_ frames: UnsafeBufferPointer<DemiBuffer>, now: Instant) -> Int {
        var n = 0
        for f in frames where transmit(f, now: now) { n += 1 }
        return n
    }
}

/// A fixed-capacity FIFO of frames (no allocation after creation).
public struct FrameQueue {
    @usableFromInline let storage: UnsafeMutablePointer<DemiBuffer>
    public let capacity: Int
    @usableFromInline var head = 0
    public private(set) var count = 0

    public init(capacity: Int) {
        self.capacity = max(1, capacity)
        storage = .allocate(capacity: self.capacity)
    }

    /// Releases every queued frame and the storage.
    public mutating func destroy() {
        while let f = pop() { f.releaseChain() }
        storage.deallocate()
    }

    public var isFull: Bool { count == capacity }
    public var isEmpty: Bool { count == 0 }

    @discardableResult
    public mutating func push(_ f: DemiBuffer) -> Bool {
        guard count < capacity else { return false }
        (storage + (head + count) % capacity).initialize(to: f)
        count += 1
        return true
    }

    public mutating func pop() -> DemiBuffer? {
        guard count > 0 else { return nil }
        let f = (storage + head).move()
        head = (head + 1) % capacity
        count -= 1
        return f
    }
}
