// Frame ping-pong without the stack, the baseline of scripts/bench-catnip.sh (built only with the trait `DPDK`).
#if DPDK
import CDPDK
import DemiBuffers
import DemiCore
import DemiDevices
#if canImport(Glibc)
import Glibc
#endif

/// Ethernet frames bounced between two DPDK ports with no TCP/IP stack, to isolate what the stack costs per I/O.
///
/// Two layers: **bare** (`rte_eth_rx_burst`/`rte_eth_tx_burst` in C on the device's port and mempool: what DPDK and
/// the driver cost) and **device** (``DPDKDevice/receive(into:capacity:now:)`` and ``DPDKDevice/transmit(_:now:)``:
/// adds our mbuf wrapping and the pool). catnip's echo round trip minus the bare one is the cost of our libOS on both
/// ends (device layer, stack, scheduler, PDPIX).
///
/// The pinger sends one frame of EtherType ``etherType`` (sequence number after the header) and waits for it to come
/// back before sending the next; the reflector swaps the MAC addresses and sends the same frame (mbuf) back.
public enum FramePingPong {
    public static let etherType: UInt16 = 0x88B5

    public enum Layer: String, Sendable, CaseIterable {
        case bare, device
    }

    /// Round trips of `count` frames of `length` bytes (after `warmup` untimed ones) to `peer`, in nanoseconds, and
    /// how many frames had to be sent again (lost; 1 s timeout). Throws a ``DPDKError`` (step "ping") on failure.
    public static func ping(_ d: DPDKDevice, layer: Layer, to peer: MACAddress, length: Int, warmup: Int,
                            count: Int) throws(DPDKError) -> (samples: [UInt64], resent: Int) {
        switch layer {
        case .bare:
            var samples = [UInt64](repeating: 0, count: count)
            var dst = [UInt8](repeating: 0, count: 6), src = [UInt8](repeating: 0, count: 6)
            withUnsafeBytes(of: peer.bytes) { for i in 0..<6 { dst[i] = $0[i] } }
            withUnsafeBytes(of: d.macAddress.bytes) { for i in 0..<6 { src[i] = $0[i] } }
            d.flush()
            let r = samples.withUnsafeMutableBufferPointer {
                cdpdk_bare_ping(d.port, d.mempool, dst, src, etherType, UInt16(clamping: length), UInt32(warmup),
                                UInt32(count), $0.baseAddress, 1_000_000_000)
            }
            guard r >= 0 else { throw .portSetupFailed(port: d.port, step: "ping", code: Int32(-r)) }
            return (samples, Int(r))
        case .device:
            return try pingThroughDevice(d, to: peer, length: max(60, length), warmup: warmup, count: count)
        }
    }

    /// Reflects frames until `frames` went back or none came for `idleSeconds`; returns how many went back.
    public static func reflect(_ d: DPDKDevice, layer: Layer, frames: Int, idleSeconds: Double) -> Int {
        switch layer {
        case .bare:
            d.flush()
            return Int(cdpdk_bare_reflect(d.port, etherType, UInt64(frames), UInt64(idleSeconds * 1e9)))
        case .device:
            return reflectThroughDevice(d, frames: frames, idleSeconds: idleSeconds)
        }
    }

    static func isOurs(_ f: DemiBuffer) -> Bool {
        f.count >= 18 && f.bytes[12] == UInt8(etherType >> 8) && f.bytes[13] == UInt8(etherType & 0xFF)
    }

    static func pingThroughDevice(_ d: DPDKDevice, to peer: MACAddress, length: Int, warmup: Int,
                                  count: Int) throws(DPDKError) -> (samples: [UInt64], resent: Int) {
        var samples = [UInt64](repeating: 0, count: count)
        let rx = UnsafeMutablePointer<DemiBuffer>.allocate(capacity: 32)
        defer { rx.deallocate() }
        var resent = 0
        for i in 0..<(warmup + count) {
            var start = Instant.now()
            var answered = false
            for attempt in 0..<5 where !answered {
                guard let f = d.pool.allocate(size: length) else {
                    throw .portSetupFailed(port: d.port, step: "ping", code: ENOMEM)
                }
                let b = f.bytes
                withUnsafeBytes(of: peer.bytes) { for k in 0..<6 { b[k] = $0[k] } }
                withUnsafeBytes(of: d.macAddress.bytes) { for k in 0..<6 { b[6 + k] = $0[k] } }
                b[12] = UInt8(etherType >> 8)
                b[13] = UInt8(etherType & 0xFF)
                b.storeBytes(of: UInt32(truncatingIfNeeded: i), toByteOffset: 14, as: UInt32.self)
                for k in 18..<length { b[k] = 0x5A }
                if attempt > 0 { resent += 1 }
                start = Instant.now()
                d.transmit(f, now: start)
                d.flush()
                let deadline = start.rawValue + 1_000_000_000
                while !answered {
                    let now = Instant.now()
                    if now.rawValue > deadline { break }
                    let n = d.receive(into: rx, capacity: 32, now: now)
                    for k in 0..<n {
                        let g = rx[k]
                        if isOurs(g), g.bytes.loadUnaligned(fromByteOffset: 14, as: UInt32.self) == UInt32(truncatingIfNeeded: i) {
                            answered = true
                        }
                        g.releaseChain()
                    }
                }
            }
            guard answered else { throw .portSetupFailed(port: d.port, step: "ping", code: ETIMEDOUT) }
            if i >= warmup { samples[i - warmup] = UInt64(Instant.now().rawValue - start.rawValue) }
        }
        return (samples, resent)
    }

    static func reflectThroughDevice(_ d: DPDKDevice, frames: Int, idleSeconds: Double) -> Int {
        let rx = UnsafeMutablePointer<DemiBuffer>.allocate(capacity: 32)
        defer { rx.deallocate() }
        var reflected = 0
        var last = Instant.now().rawValue
        let idle = Int64(idleSeconds * 1e9)
        while reflected < frames {
            let now = Instant.now()
            let n = d.receive(into: rx, capacity: 32, now: now)
            if n == 0 {
                if now.rawValue - last > idle { break }
                continue
            }
            last = now.rawValue
            for k in 0..<n {
                let f = rx[k]
                guard isOurs(f) else { f.releaseChain(); continue }
                let b = f.bytes
                for j in 0..<6 { b.swapAt(j, 6 + j) }
                d.transmit(f, now: now)   // the received mbuf goes back as it is (zero-copy transmit)
                reflected += 1
            }
            d.flush()
        }
        return reflected
    }
}
#endif
