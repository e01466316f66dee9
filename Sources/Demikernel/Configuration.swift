import DemiCore
import DemiKernelSockets
import DemiSharedMemory
import Foundation
import Yams

/// The configuration of a libOS: upstream Demikernel's YAML schema, with environment overrides.
///
/// Sources, later ones winning: built-in defaults (enough for the kernel-socket libOS: no file needed), the YAML file
/// named by `CONFIG_PATH`, then environment variables named by the upper-cased key (`LOCAL_IPV4_ADDR`, `MTU`,
/// `NODELAY`, ...), as upstream does.
///
/// ```yaml
/// demikernel:
///   local_ipv4_addr: 198.18.0.1
///   local_link_addr: "02:00:00:00:00:01"
/// raw_socket:
///   linux_interface_name: veth0
/// dpdk:
///   eal_init: ["", "--no-huge", "--no-pci"]
///   zero_copy: true       # ours: sgaalloc from mbufs, payload in mbufs sent without a copy
/// tcp_socket_options:
///   keepalive: { enabled: false, time_millis: 0, interval: 0 }
///   linger: { enabled: false, time_seconds: 0 }
///   nodelay: true
/// inetstack_config:
///   mtu: 1500
///   mss: 1460
///   arp_table: { "02:00:00:00:00:02": 198.18.0.2 }
/// catnap:                 # ours: how blocked operations are polled (busy, epoll, auto)
///   poll_mode: auto
/// catmem:                 # ours: shared-memory pipes
///   ring_size: 262144
///   max_message_size: 16777216
/// ```
public struct Configuration: Sendable {
    public var localIPv4Address: IPv4Address?
    public var localLinkAddress: MACAddress?
    public var interfaceName: String?
    public var xdpInterfaceIndex: Int?
    /// The raw-socket libOS's device (`raw_socket.device` / `RAW_SOCKET_DEVICE`): `af_packet` (default) or `af_xdp`.
    public var rawSocketDevice: RawSocketDevice = .afPacket
    public var ealArguments: [String] = []
    /// catnip's zero-copy transmit (`dpdk.zero_copy` / `DPDK_ZERO_COPY`): `sgaalloc` hands out mbufs and payload
    /// that lies in mbufs goes to the driver attached, not copied.
    public var dpdkZeroCopy = true
    public var keepAlive = false
    public var linger: Int? = nil
    public var noDelay = true
    public var mtu = 1500
    public var mss: Int? = nil
    public var arpTable: [MACAddress: IPv4Address] = [:]
    public var arpRequestRetries = 2
    public var arpRequestTimeoutSeconds = 1.0
    public var arpCacheTTLSeconds = 600.0
    public var udpChecksumOffload = false
    public var tcpChecksumOffload = false
    public var enableJumboFrames = false
    public var pollMode: KernelPollMode = .auto
    public var tcpPopSize = 9216
    public var ringSize = 256 * 1024
    public var maxMessageSize = 16 * 1024 * 1024

    public init() {}

    /// Reads `CONFIG_PATH` (if set) and the environment overrides.
    public static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment)
        throws(ConfigurationError) -> Configuration
    {
        var c = Configuration()
        if let path = env["CONFIG_PATH"], !path.isEmpty {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw .unreadableFile(path) }
            try c.apply(yaml: text)
        }
        try c.apply(environment: env)
        return c
    }

    /// Applies a YAML document in upstream's schema. Unknown sections and keys are ignored.
    public mutating func apply(yaml text: String) throws(ConfigurationError) {
        let root: Any?
        do { root = try Yams.load(yaml: text) } catch { throw .invalidYAML("\(error)") }
        guard let top = root as? [String: Any] else {
            if root == nil { return }
            throw .invalidYAML("the document is not a mapping")
        }
        if let d = top["demikernel"] as? [String: Any] {
            if let v = d["local_ipv4_addr"] { try set("local_ipv4_addr", v) }
            if let v = d["local_link_addr"] { try set("local_link_addr", v) }
        }
        if let r = top["raw_socket"] as? [String: Any] {
            if let v = r["linux_interface_name"] { try set("linux_interface_name", v) }
            if let v = r["xdp_interface_index"] { try set("xdp_interface_index", v) }
            if let v = r["device"] { try set("raw_socket_device", v) }
        }
        if let d = top["dpdk"] as? [String: Any] {
            if let e = d["eal_init"] as? [Any] { ealArguments = e.map { "\($0)" } }
            if let v = d["zero_copy"] { try set("dpdk_zero_copy", v) }
        }
        if let t = top["tcp_socket_options"] as? [String: Any] {
            if let k = t["keepalive"] as? [String: Any], let v = k["enabled"] { try set("keepalive", v) }
            if let l = t["linger"] as? [String: Any] {
                let enabled = (l["enabled"] as? Bool) ?? false
                let secs = (l["time_seconds"] as? Int) ?? 0
                linger = enabled ? secs : nil
            }
            if let v = t["nodelay"] { try set("nodelay", v) }
        }
        if let i = top["inetstack_config"] as? [String: Any] {
            for key in ["mtu", "mss", "arp_request_retries", "arp_request_timeout", "arp_cache_ttl",
                        "udp_checksum_offload", "tcp_checksum_offload", "enable_jumbo_frames"] {
                if let v = i[key] { try set(key, v) }
            }
            if let t = i["arp_table"] as? [String: Any] {
                for (mac, ip) in t {
                    guard let m = MACAddress(mac), let a = IPv4Address("\(ip)") else {
                        throw .invalidValue(key: "arp_table", value: "\(mac): \(ip)")
                    }
                    arpTable[m] = a
                }
            }
        }
        if let c = top["catmem"] as? [String: Any] {
            if let v = c["ring_size"] { try set("ring_size", v) }
            if let v = c["max_message_size"] { try set("max_message_size", v) }
        }
        if let c = top["catnap"] as? [String: Any] {
            if let v = c["poll_mode"] { try set("poll_mode", v) }
            if let v = c["tcp_pop_size"] { try set("tcp_pop_size", v) }
        }
    }

    /// The environment variables that override configuration keys (upper-cased key names).
    public static let environmentKeys = [
        "local_ipv4_addr", "local_link_addr", "linger", "nodelay", "keepalive", "arp_cache_ttl", "arp_request_timeout",
        "arp_request_retries", "linux_interface_name", "xdp_interface_index", "raw_socket_device", "mtu", "mss", "poll_mode",
        "tcp_pop_size", "ring_size", "max_message_size", "dpdk_zero_copy",
    ]

    public mutating func apply(environment env: [String: String]) throws(ConfigurationError) {
        for key in Self.environmentKeys {
            if let v = env[key.uppercased()], !v.isEmpty { try set(key, v) }
        }
    }

    /// Sets one key from a YAML or environment value.
    public mutating func set(_ key: String, _ value: Any) throws(ConfigurationError) {
        let text = "\(value)"
        func int() throws(ConfigurationError) -> Int {
            if let i = value as? Int { return i }
            guard let i = Int(text) else { throw .invalidValue(key: key, value: text) }
            return i
        }
        func double() throws(ConfigurationError) -> Double {
            if let d = value as? Double { return d }
            if let i = value as? Int { return Double(i) }
            guard let d = Double(text) else { throw .invalidValue(key: key, value: text) }
            return d
        }
        func bool() throws(ConfigurationError) -> Bool {
            if let b = value as? Bool { return b }
            switch text.lowercased() {
            case "1", "true", "yes", "on": return true
            case "0", "false", "no", "off": return false
            default: throw .invalidValue(key: key, value: text)
            }
        }
        switch key {
        case "local_ipv4_addr":
            guard let a = IPv4Address(text), !a.isUnspecified, !a.isBroadcast else {
                throw .invalidValue(key: key, value: text)
            }
            localIPv4Address = a
        case "local_link_addr":
            guard let m = MACAddress(text) else { throw .invalidValue(key: key, value: text) }
            localLinkAddress = m
        case "linux_interface_name": interfaceName = text
        case "xdp_interface_index": xdpInterfaceIndex = try int()
        case "raw_socket_device":
            guard let d = RawSocketDevice(rawValue: text.lowercased().replacingOccurrences(of: "-", with: "_")) else {
                throw .invalidValue(key: key, value: text)
            }
            rawSocketDevice = d
        case "keepalive": keepAlive = try bool()
        case "dpdk_zero_copy": dpdkZeroCopy = try bool()
        case "nodelay": noDelay = try bool()
        case "linger":
            let s = try int()
            linger = s >= 0 ? s : nil
        case "mtu":
            let m = try int()
            guard (68...65535).contains(m) else { throw .invalidValue(key: key, value: text) }
            mtu = m
        case "mss":
            let m = try int()
            guard (536...65535).contains(m) else { throw .invalidValue(key: key, value: text) }
            mss = m
        case "arp_request_retries": arpRequestRetries = try int()
        case "arp_request_timeout": arpRequestTimeoutSeconds = try double()
        case "arp_cache_ttl": arpCacheTTLSeconds = try double()
        case "udp_checksum_offload": udpChecksumOffload = try bool()
        case "tcp_checksum_offload": tcpChecksumOffload = try bool()
        case "enable_jumbo_frames": enableJumboFrames = try bool()
        case "poll_mode":
            guard let m = KernelPollMode(rawValue: text.lowercased()) else { throw .invalidValue(key: key, value: text) }
            pollMode = m
        case "tcp_pop_size":
            let s = try int()
            guard (1...(1 << 20)).contains(s) else { throw .invalidValue(key: key, value: text) }
            tcpPopSize = s
        case "ring_size":
            let r = try int()
            guard (4096...(1 << 30)).contains(r) else { throw .invalidValue(key: key, value: text) }
            ringSize = r
        case "max_message_size":
            let m = try int()
            guard (1...(1 << 30)).contains(m) else { throw .invalidValue(key: key, value: text) }
            maxMessageSize = m
        default:
            break
        }
    }

    /// The shared-memory libOS's options derived from this configuration.
    public var sharedMemoryOptions: SharedMemoryOptions {
        var o = SharedMemoryOptions()
        o.ringSize = ringSize
        o.maxMessageSize = maxMessageSize
        return o
    }

    /// The kernel-socket libOS's options derived from this configuration.
    public var kernelSocketOptions: KernelSocketOptions {
        var o = KernelSocketOptions()
        o.pollMode = pollMode
        o.noDelay = noDelay
        o.keepAlive = keepAlive
        o.linger = linger
        o.tcpPopSize = tcpPopSize
        return o
    }
}

/// How the kernel-socket libOS polls blocked operations (`catnap.poll_mode` / `POLL_MODE`).
public typealias KernelPollMode = DemiKernelSockets.KernelPollMode

/// The device under the raw-socket libOS (catpowder).
public enum RawSocketDevice: String, Sendable, CaseIterable {
    /// AF_PACKET with memory-mapped TPACKET_V2 rings.
    case afPacket = "af_packet"
    /// AF_XDP through libxdp (needs the AFXDP package trait).
    case afXDP = "af_xdp"
}
