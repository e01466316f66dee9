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
        let portA = Port(pool: poolA, capacity: capacity)
        let portB = Port(pool: poolB, capacity: capacity)
        a = Endpoint(port: portA, peerPort: portB, capabilities: capabilities)
        b = Endpoint(port: portB, peerPort: portA, capabilities: capabilities)
    }

    /// What each end owns: the frames waiting for it and the pool they are copied into. The endpoints hold both
    /// ports strongly and the ports hold no endpoint, so there is no cycle and no weak reference to load per frame.
    final class Port {
        let pool: BufferPool
        // Unchecked: a link is driven from one thread; a dynamic exclusivity check costs ~50 instructions.
        @exclusivity(unchecked) var inbound: FrameQueue

        init(pool: BufferPool, capacity: Int) {
            self.pool = pool
            inbound = FrameQueue(capacity: capacity)
        }

        deinit { inbound.destroy() }
    }

    /// One end of the link.
    public final class Endpoint: PhysicalLayer {
        public let capabilities: DeviceCapabilities
        @exclusivity(unchecked) public private(set) var statistics = DeviceStatistics()
        let port: Port
        let peerPort: Port

        init(port: Port, peerPort: Port, capabilities: DeviceCapabilities) {
            self.port = port
            self.peerPort = peerPort
            self.capabilities = capabilities
        }

        /// Frames waiting to be received.
        public var pending: Int { port.inbound.count }

        public func receive(into frames: UnsafeMutablePointer<DemiBuffer>, capacity: Int, now: Instant) -> Int {
            var n = 0
            while n < capacity, let f = port.inbound.pop() {
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
            let peer = peerPort
            guard !peer.inbound.isFull, let copy = frame.flattened(into: peer.pool) else {
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
