import DemiDevices
import DemiInet
import DemiStackLibOS

/// The raw-socket libOS (upstream's catpowder): the user-space TCP/IP stack on an AF_PACKET device with memory-mapped
/// TPACKET_V2 rings. Needs `CAP_NET_RAW` (root) and an interface whose kernel side has no address of ours.
public typealias RawSocketLibOS = StackLibOS<PacketSocketDevice>

extension StackLibOS where Device == PacketSocketDevice {
    /// Opens the interface named by `raw_socket.linux_interface_name` (env `LINUX_INTERFACE_NAME`) and starts the
    /// stack with `demikernel.local_ipv4_addr`; the MAC is `demikernel.local_link_addr` or else the interface's own.
    ///
    /// `EINVAL` if the interface or the address is not configured; `EPERM` without `CAP_NET_RAW`; `ENODEV` for an
    /// unknown interface.
    public static func make(_ c: Configuration) throws(Errno) -> RawSocketLibOS {
        guard let name = c.interfaceName, !name.isEmpty, let ip = c.localIPv4Address else { throw .invalidArgument }
        let pool = BufferPool()
        let device = try PacketSocketDevice(interface: name, pool: pool)
        return RawSocketLibOS(device: device, pool: pool, configuration: c.stackConfiguration(mac: device.macAddress,
                                                                                            ip: ip))
    }
}

extension Configuration {
    /// The user-space stack's settings derived from this configuration (upstream's `inetstack_config` and
    /// `tcp_socket_options` keys).
    public func stackConfiguration(mac deviceMAC: MACAddress, ip: IPv4Address) -> StackConfiguration {
        var s = StackConfiguration(localIPv4: ip, localMAC: localLinkAddress ?? deviceMAC)
        s.arp.retries = arpRequestRetries
        s.arp.requestTimeout = .nanoseconds(Int64(arpRequestTimeoutSeconds * 1e9))
        s.arp.cacheTTL = .nanoseconds(Int64(arpCacheTTLSeconds * 1e9))
        for (m, a) in arpTable { s.staticARP[a] = m }
        s.tcp.maximumSegmentSize = mss
        s.tcp.nagle = !noDelay
        if keepAlive { s.tcp.keepalive = .seconds(7200) }
        return s
    }
}
