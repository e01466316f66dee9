import ArgumentParser
import CDemiLinux
import CDemiXDPBare
import DemiBuffers
import DemiCore
import DemiDevices
import Foundation
#if AFXDP
import DemiXDP
#endif

/// Ethernet frames bounced between two test hosts on catpowder's devices (AF_PACKET, AF_XDP) with no stack: the
/// baseline scripts/bench-catpowder.sh subtracts from catpowder's echo round trip to get the libOS's own cost.
struct FramePingPongCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "frame-pingpong",
        abstract: "Raw Ethernet frame ping-pong on AF_PACKET or AF_XDP, without the TCP/IP stack (needs root).",
        discussion: """
            Opens --iface with --device afpacket (TPACKET_V2 rings, qdisc bypass, as catpowder) or afxdp (generic \
            XDP, copy mode, as catpowder with raw_socket.device af_xdp; the AFXDP trait) and either reflects \
            frames (--role reflect: MAC addresses swapped, sent back) or sends one frame at a time to --peer-mac \
            and times its return (--role ping). --layer bare drives the socket's rings in plain C (no stack, no \
            buffers); --layer device goes through PacketSocketDevice / XDPSocketDevice (the pool, copies and \
            zero-copy transmit catpowder has). Prints p50/p99 like demi ping.
              ip netns exec A demi frame-pingpong --role reflect --device afpacket --iface veth0 --count 21000 --cpu 1
              ip netns exec B demi frame-pingpong --role ping --device afpacket --iface veth0 --peer-mac 02:..:01 \
            --size 106 --cpu 0
            """)

    enum Role: String, ExpressibleByArgument { case ping, reflect }
    enum Device: String, ExpressibleByArgument { case afpacket, afxdp }
    enum Layer: String, ExpressibleByArgument { case bare, device }

    @Option(help: "ping or reflect.") var role: Role
    @Option(help: "afpacket or afxdp.") var device: Device = .afpacket
    @Option(help: "bare (the socket's rings in C) or device (PacketSocketDevice / XDPSocketDevice).")
    var layer: Layer = .bare
    @Option(help: "The interface.") var iface = "veth0"
    @Option(help: "Ping: the reflector's MAC address.") var peerMac: String?
    @Option(help: "Frame length in bytes (106: a 64-byte UDP payload's frame; 130: TCP with timestamps).")
    var size = 106
    @Option(help: "Round trips to time (ping) or frames to reflect before exiting (reflect: warm-up included).")
    var count = 20000
    @Option(help: "Untimed round trips first (ping).") var warmup = 1000
    @Option(help: "Reflect: exit after this many seconds without a frame.") var idle = 10.0
    @Option(help: "Pin to this CPU.") var cpu: Int?

    func run() throws {
        if let cpu, cdemi_pin_to_cpu(Int32(cpu)) != 0 {
            FileHandle.standardError.write(Data("demi frame-pingpong: could not pin to CPU \(cpu)\n".utf8))
        }
        #if !AFXDP
        if device == .afxdp { throw ValidationError("--device afxdp needs the AFXDP trait (swift build --traits AFXDP)") }
        #endif
        let what = "\(device.rawValue) \(layer.rawValue)"
        switch role {
        case .reflect:
            print("demi frame-pingpong: reflecting on \(iface) (\(what))")
            fflush(nil)
            let n = try reflect()
            print("demi frame-pingpong: reflected \(n) frames")
        case .ping:
            guard let text = peerMac, let peer = MACAddress(text) else { throw ValidationError("--peer-mac needed") }
            let t0 = Instant.now()
            let (samples, resent) = try ping(peer)
            let elapsed = Double((Instant.now() - t0).nanoseconds) / 1e9
            let s = LatencySummary(samples)
            print("demi frame-pingpong: \(what) \(size) B frames x \(count) to \(peer) on \(iface)")
            print("  rtt p50 \(formatNs(s.p50))  p99 \(formatNs(s.p99))  p99.9 \(formatNs(s.p999))  min \(formatNs(s.min))")
            print(String(format: "  throughput %.0f frames/s, %.3f Gbit/s each way; %d resent",
                         Double(warmup + count) / elapsed, Double(warmup + count) * Double(size) * 8 / elapsed / 1e9,
                         resent))
        }
    }

    struct Failed: Error, CustomStringConvertible {
        var description: String
    }

    func checked(_ r: Int64, _ step: String) throws -> Int {
        guard r >= 0 else { throw Failed(description: "demi frame-pingpong: \(step): \(Errno(rawValue: Int32(-r)))") }
        return Int(r)
    }

    func reflect() throws -> Int {
        let idleNs = UInt64(idle * 1e9)
        switch (device, layer) {
        case (.afpacket, .bare):
            return try checked(cdemi_bare_packet_reflect(iface, RawFramePingPong.etherType, UInt64(count), idleNs),
                               "reflect")
        case (.afxdp, .bare):
            return try checked(cdemi_bare_xdp_reflect(iface, RawFramePingPong.etherType, UInt64(count), idleNs),
                               "reflect")
        case (.afpacket, .device):
            let d = try PacketSocketDevice(interface: iface, pool: BufferPool())
            defer { d.close() }
            return RawFramePingPong.reflect(d, frames: count, idleSeconds: idle)
        case (.afxdp, .device):
            #if AFXDP
            var c = XDPSocketDevice.Configuration()
            c.quiet = true
            let d = try XDPSocketDevice(interface: iface, pool: BufferPool(), configuration: c)
            defer { d.close() }
            return RawFramePingPong.reflect(d, frames: count, idleSeconds: idle)
            #else
            return 0
            #endif
        }
    }

    func ping(_ peer: MACAddress) throws -> ([UInt64], Int) {
        switch (device, layer) {
        case (.afpacket, .bare), (.afxdp, .bare):
            var samples = [UInt64](repeating: 0, count: count)
            var dst = [UInt8](repeating: 0, count: 6)
            withUnsafeBytes(of: peer.bytes) { for i in 0..<6 { dst[i] = $0[i] } }
            let r = samples.withUnsafeMutableBufferPointer { s in
                device == .afpacket
                    ? cdemi_bare_packet_ping(iface, dst, RawFramePingPong.etherType, UInt16(clamping: size),
                                             UInt32(warmup), UInt32(count), s.baseAddress, 1_000_000_000)
                    : cdemi_bare_xdp_ping(iface, dst, RawFramePingPong.etherType, UInt16(clamping: size),
                                          UInt32(warmup), UInt32(count), s.baseAddress, 1_000_000_000)
            }
            return (samples, try checked(r, "ping"))
        case (.afpacket, .device):
            let pool = BufferPool()
            let d = try PacketSocketDevice(interface: iface, pool: pool)
            defer { d.close() }
            return try RawFramePingPong.ping(d, pool: pool, from: d.macAddress, to: peer, length: size,
                                             warmup: warmup, count: count)
        case (.afxdp, .device):
            #if AFXDP
            let pool = BufferPool()
            var c = XDPSocketDevice.Configuration()
            c.quiet = true
            let d = try XDPSocketDevice(interface: iface, pool: pool, configuration: c)
            defer { d.close() }
            return try RawFramePingPong.ping(d, pool: pool, from: d.macAddress, to: peer, length: size,
                                             warmup: warmup, count: count)
            #else
            return ([], 0)
            #endif
        }
    }
}
