import ArgumentParser

#if DPDK
import CDemiLinux
import DemiBuffers
import DemiCore
import DemiDPDK
import Foundation

/// Subcommands that exist only with a package trait.
let optionalSubcommands: [ParsableCommand.Type] = [DPDKPingPong.self]

/// Ethernet frames bounced between two DPDK ports with no stack: the baseline scripts/bench-catnip.sh subtracts from
/// catnip's echo round trip to get the libOS's own cost.
struct DPDKPingPong: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dpdk-pingpong",
        abstract: "Raw Ethernet frame ping-pong on DPDK (net_af_packet), without the TCP/IP stack (DPDK trait).",
        discussion: """
            Starts the EAL with a net_af_packet vdev on --iface (the same EAL arguments and ring geometry catnip \
            uses: hugepages if free and mounted, else --no-huge) and either reflects frames (--role reflect: MAC \
            addresses swapped, the same mbuf sent back) or sends one frame at a time to --peer-mac and times its \
            return (--role ping). --layer bare uses rte_eth_rx_burst/rte_eth_tx_burst directly (C); --layer device \
            goes through catnip's DPDKDevice (mbufs wrapped as buffers, zero-copy transmit). Prints p50/p99 like \
            demi ping.
              ip netns exec A demi dpdk-pingpong --role reflect --iface veth0 --count 21000 --cpu 1
              ip netns exec B demi dpdk-pingpong --role ping --iface veth0 --peer-mac 02:..:01 --size 106 --cpu 0
            """)

    enum Role: String, ExpressibleByArgument { case ping, reflect }

    @Option(help: "ping or reflect.") var role: Role
    @Option(help: "bare (rte_eth_*_burst in C) or device (through DPDKDevice).") var layer: String = "bare"
    @Option(help: "The interface for the net_af_packet vdev.") var iface = "veth0"
    @Option(help: "Ping: the reflector's MAC address.") var peerMac: String?
    @Option(help: "Frame length in bytes (106: a 64-byte UDP payload's frame).") var size = 106
    @Option(help: "Round trips to time (ping) or frames to reflect before exiting (reflect: warm-up included).")
    var count = 20000
    @Option(help: "Untimed round trips first (ping).") var warmup = 1000
    @Option(help: "Reflect: exit after this many seconds without a frame.") var idle = 10.0
    @Option(help: "Pin to this CPU.") var cpu: Int?

    func run() throws {
        guard let layer = FramePingPong.Layer(rawValue: layer) else { throw ValidationError("--layer bare or device") }
        if let cpu, cdemi_pin_to_cpu(Int32(cpu)) != 0 {
            FileHandle.standardError.write(Data("demi dpdk-pingpong: could not pin to CPU \(cpu)\n".utf8))
        }
        let pool = BufferPool()
        let args = DPDKEnvironment.defaultArguments(
            vdev: DPDKEnvironment.afPacketDevargs("net_af_packet0", interface: iface),
            hugepages: DPDKEnvironment.hugepagesAvailable())
        let d = try DPDKDevice(ealArguments: args, pool: pool, configuration: .afPacket)
        defer { d.close() }
        switch role {
        case .reflect:
            print("demi dpdk-pingpong: reflecting on \(iface) (\(d.driverName), MAC \(d.macAddress), layer \(layer.rawValue))")
            fflush(nil)
            let n = FramePingPong.reflect(d, layer: layer, frames: count, idleSeconds: idle)
            print("demi dpdk-pingpong: reflected \(n) frames")
        case .ping:
            guard let text = peerMac, let peer = MACAddress(text) else { throw ValidationError("--peer-mac needed") }
            let t0 = Instant.now()
            let (samples, resent) = try FramePingPong.ping(d, layer: layer, to: peer, length: size, warmup: warmup,
                                                           count: count)
            let elapsed = Double((Instant.now() - t0).nanoseconds) / 1e9
            let s = LatencySummary(samples)
            print("demi dpdk-pingpong: \(layer.rawValue) \(size) B frames x \(count) to \(peer) on \(iface) (\(d.driverName))")
            print("  rtt p50 \(formatNs(s.p50))  p99 \(formatNs(s.p99))  p99.9 \(formatNs(s.p999))  min \(formatNs(s.min))")
            print(String(format: "  throughput %.0f frames/s, %.3f Gbit/s each way; %d resent", Double(warmup + count) / elapsed,
                         Double(warmup + count) * Double(size) * 8 / elapsed / 1e9, resent))
        }
    }
}
#else
/// Subcommands that exist only with a package trait.
let optionalSubcommands: [ParsableCommand.Type] = []
#endif
