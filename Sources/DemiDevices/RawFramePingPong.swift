import DemiBuffers
import DemiCore

/// Ethernet frames bounced between two devices with no TCP/IP stack, through the ``PhysicalLayer`` protocol: the
/// "device" layer of `demi frame-pingpong` (PacketSocketDevice, XDPSocketDevice), between the bare C ping-pong on
/// the same socket (no buffers, no pool) and the full libOS. scripts/bench-catpowder.sh subtracts the bare round trip
/// from catpowder's echo round trip to get the libOS's own cost per I/O.
///
/// The pinger sends one frame of EtherType ``etherType`` (a 32-bit sequence number after the header, the rest
/// `0x5A`) and waits for that frame to come back before sending the next; the reflector swaps the MAC addresses and
/// transmits the received buffer itself (so a device that can send a received frame without copying does so).
public enum RawFramePingPong {
    /// IEEE 802 local experimental EtherType 2, the one `demi dpdk-pingpong` uses too.
    public static let etherType: UInt16 = 0x88B5

    public struct Failure: Error, Sendable, Hashable, CustomStringConvertible {
        public var description: String
        /// The errno that says it in one word: EMSGSIZE, ENOMEM or ETIMEDOUT.
        public var code: Errno
        public init(_ d: String, code: Errno) {
            description = d
            self.code = code
        }
    }

    /// True if `f` is a ping-pong frame.
    @inlinable
    public static func isPingPong(_ f: DemiBuffer) -> Bool {
        f.count >= 18 && f.bytes[12] == UInt8(etherType >> 8) && f.bytes[13] == UInt8(etherType & 0xFF)
    }

    /// `warmup + count` round trips of `length`-byte frames (at least 60) from `source` to `peer` through `device`;
    /// returns the last `count` in nanoseconds and how many frames were sent again (no answer within `timeout`, 5
    /// tries). `poll` runs on every pass of the wait loop (a test drives the reflector there).
    public static func ping<D: PhysicalLayer>(
        _ device: D, pool: BufferPool, from source: MACAddress, to peer: MACAddress, length: Int, warmup: Int,
        count: Int, timeout: Duration = .seconds(1), poll: () -> Void = {}
    ) throws(Failure) -> (samples: [UInt64], resent: Int) {
        let length = max(60, length)
        guard length <= device.capabilities.mtu + 14 else { throw Failure("\(length)-byte frames exceed the MTU", code: .messageTooLong) }
        var samples = [UInt64](repeating: 0, count: count)
        let rx = UnsafeMutablePointer<DemiBuffer>.allocate(capacity: 32)
        defer { rx.deallocate() }
        let timeoutNs = timeout.nanoseconds
        var resent = 0
        for i in 0..<(warmup + count) {
            let seq = UInt32(truncatingIfNeeded: i)
            var start = Instant.now()
            var answered = false
            for attempt in 0..<5 where !answered {
                guard let f = pool.allocate(size: length) else { throw Failure("the buffer pool is exhausted", code: .noMemory) }
                let b = f.bytes
                withUnsafeBytes(of: peer.bytes) { for k in 0..<6 { b[k] = $0[k] } }
                withUnsafeBytes(of: source.bytes) { for k in 0..<6 { b[6 + k] = $0[k] } }
                b[12] = UInt8(etherType >> 8)
                b[13] = UInt8(etherType & 0xFF)
                b.storeBytes(of: seq, toByteOffset: 14, as: UInt32.self)
                for k in 18..<length { b[k] = 0x5A }
                if attempt > 0 { resent += 1 }
                start = Instant.now()
                device.transmit(f, now: start)
                device.flush(now: start)
                let deadline = start.rawValue + timeoutNs
                while !answered {
                    poll()
                    let now = Instant.now()
                    if now.rawValue > deadline { break }
                    let n = device.receive(into: rx, capacity: 32, now: now)
                    for k in 0..<n {
                        let g = rx[k]
                        // The sequence number sits at offset 14, unaligned for a 4-byte load.
                        if isPingPong(g), g.bytes.loadUnaligned(fromByteOffset: 14, as: UInt32.self) == seq {
                            answered = true
                        }
                        g.releaseChain()
                    }
                }
            }
            guard answered else { throw Failure("frame \(i) did not come back (5 tries)", code: .timedOut) }
            if i >= warmup { samples[i - warmup] = UInt64(Instant.now().rawValue - start.rawValue) }
        }
        return (samples, resent)
    }

    /// Reflects the ping-pong frames waiting on `device` (others are dropped), then flushes; returns how many went
    /// back. `rx` holds at least 32 buffers.
    @discardableResult
    public static func reflectOnce<D: PhysicalLayer>(_ device: D, rx: UnsafeMutablePointer<DemiBuffer>,
                                                     now: Instant) -> Int {
        let n = device.receive(into: rx, capacity: 32, now: now)
        var sent = 0
        for k in 0..<n {
            let f = rx[k]
            guard isPingPong(f) else { f.releaseChain(); continue }
            let b = f.bytes
            for j in 0..<6 { b.swapAt(j, 6 + j) }
            if device.transmit(f, now: now) { sent += 1 }
        }
        if n > 0 { device.flush(now: now) }
        return sent
    }

    /// Reflects frames until `frames` went back or none came for `idleSeconds`; returns how many went back.
    public static func reflect<D: PhysicalLayer>(_ device: D, frames: Int, idleSeconds: Double) -> Int {
        let rx = UnsafeMutablePointer<DemiBuffer>.allocate(capacity: 32)
        defer { rx.deallocate() }
        var reflected = 0
        var last = Instant.now().rawValue
        let idle = Int64(idleSeconds * 1e9)
        while reflected < frames {
            let now = Instant.now()
            let n = reflectOnce(device, rx: rx, now: now)
            if n == 0 {
                if now.rawValue - last > idle { break }
                continue
            }
            last = now.rawValue
            reflected += n
        }
        return reflected
    }
}
