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
    public static let etherType: UInt16 = RawFramePingPong.etherType

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
            do {
                return try RawFramePingPong.ping(d, pool: d.pool, from: d.macAddress, to: peer, length: length,
                                                 warmup: warmup, count: count)
            } catch {
                throw .portSetupFailed(port: d.port, step: "ping: \(error)", code: error.code.rawValue)
            }
        }
    }

    /// Reflects frames until `frames` went back or none came for `idleSeconds`; returns how many went back.
    public static func reflect(_ d: DPDKDevice, layer: Layer, frames: Int, idleSeconds: Double) -> Int {
        switch layer {
        case .bare:
            d.flush()
            return Int(cdpdk_bare_reflect(d.port, etherType, UInt64(frames), UInt64(idleSeconds * 1e9)))
        case .device:
            return RawFramePingPong.reflect(d, frames: frames, idleSeconds: idleSeconds)
        }
    }
}
#endif
