import DemiBuffers
import DemiCore

/// A simulated Ethernet cable between two endpoints, for deterministic tests and benchmarks of a stack against a
/// stack in one process. A transmitted frame is copied into a buffer of the receiving endpoint's pool (as a real
/// wire would), so each side's buffers stay in its own pool. Each direction holds at most `capacity` frames; more are
/// dropped and counted.
public final class InMemoryLink {
    public let a: Endpoint
    public let b: Endpoint

    public init(poolA: BufferPool, poolB: BufferPool, capacity: Int = 1024,
                capabilities: DeviceCapabilities = DeviceCapabilities()) {
        a = Endpoint(pool: poolA, capacity: capacity, capabilities: capabilities)
        b = Endpoint(pool: poolB, capacity: capacity, capabilities: capabilities)
        a.peer = b
        b.peer = a
    }

    /// One end of the link.
    public final class Endpoint: PhysicalLayer {
        public let capabilities: DeviceCapabilities
        public private(set) var statistics = DeviceStatistics()
        let pool: BufferPool
        var inbound: FrameQueue
        weak var peer: Endpoint?

        init(pool: BufferPool, capacity: Int, capabilities: DeviceCapabilities) {
            self.pool = pool
            self.capabilities = capabilities
            inbound = FrameQueue(capacity: capacity)
        }

        deinit { inbound.destroy() }

        /// Frames waiting to be received.
        public var pending: Int { inbound.count }

        public func receive(into frames: UnsafeMutablePointer<DemiBuffer>, capacity: Int, now: Instant) -> Int {
            var n = 0
            while n < capacity, let f = inbound.pop() {
                frames[n] = f
                statistics.receivedFrames += 1
                statistics.receivedBytes += f.count
                n += 1
            }
            return n
        }

        @discardableResult
        public func transmit(_ frame: DemiBuffer, now: Instant) -> Bool {
            defer { frame.releaseChain() }
            guard let peer, !peer.inbound.isFull, let copy = frame.flattened(into: peer.pool) else {
                statistics.droppedFrames += 1
                return false
            }
            peer.inbound.push(copy)
            statistics.transmittedFrames += 1
            statistics.transmittedBytes += copy.count
            return true
        }
    }
}
