import DemiDevices
import DemiInet
import DemiStackLibOS
#if AFXDP
import DemiXDP
#endif
#if DPDK
import DemiDPDK
#endif

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

#if AFXDP
/// The raw-socket libOS on AF_XDP (`raw_socket.device: af_xdp`): the same stack on an XDP socket (copy mode; UMEM
/// frames reach the application without a copy while UMEM frames are plentiful; the device copies when they run
/// short, so frames held by TCP never starve transmit).
public typealias XDPSocketLibOS = StackLibOS<XDPSocketDevice>

extension StackLibOS where Device == XDPSocketDevice {
    /// Like the AF_PACKET variant; the XDP program attaches in generic or native mode (`automatic`).
    public static func make(_ c: Configuration) throws(Errno) -> XDPSocketLibOS {
        guard let name = c.interfaceName, !name.isEmpty, let ip = c.localIPv4Address else { throw .invalidArgument }
        let pool = BufferPool()
        var xc = XDPSocketDevice.Configuration()
        xc.quiet = true
        let device = try XDPSocketDevice(interface: name, pool: pool, configuration: xc)
        return XDPSocketLibOS(device: device, pool: pool, configuration: c.stackConfiguration(mac: device.macAddress,
                                                                                            ip: ip))
    }
}
#endif

#if DPDK
/// The DPDK libOS (upstream's catnip): the user-space stack on a DPDK port. Received mbufs reach the application
/// without a copy.
public typealias DPDKLibOS = StackLibOS<DPDKDevice>

extension StackLibOS where Device == DPDKDevice {
    /// Starts the EAL with `dpdk.eal_init` (default: `--no-pci` and hugepages if free and mounted, else `--no-huge`,
    /// with a `net_af_packet` virtual device on `raw_socket.linux_interface_name`) and opens its first free port.
    /// `net_af_packet` vdevs in `dpdk.eal_init` without their own `framesz` get ring frames that hold a whole
    /// reassembled datagram (``DPDKEnvironment/wholeDatagramArguments(_:)``). If the EAL is already up in this process, a
    /// new `net_af_packet` device is hot-plugged on the configured interface. Needs `demikernel.local_ipv4_addr`.
    public static func make(_ c: Configuration) throws -> DPDKLibOS {
        guard let ip = c.localIPv4Address else { throw ConfigurationError.invalidValue(key: "local_ipv4_addr", value: "") }
        let pool = BufferPool()
        let device: DPDKDevice
        // The net_af_packet receive ring's frames, if the port is such a vdev.
        var ringFrames: Int?
        // Our net_af_packet vdevs get ring frames that hold a whole datagram (the driver has the kernel reassemble
        // IPv4 fragments for it) and the 64 KiB receive mbufs such frames need.
        if DPDKEnvironment.isInitialized {
            // A further catnip in a process whose EAL is up hot-plugs a vdev on its interface: net_af_xdp if its
            // dpdk.eal_init names one, else net_af_packet.
            guard let name = c.interfaceName else { throw DPDKError.ealAlreadyInitialized(arguments: DPDKEnvironment.arguments ?? []) }
            if c.ealArguments.contains(where: { $0.hasPrefix("--vdev=net_af_xdp") }) {
                var dc = DPDKDevice.Configuration()
                dc.zeroCopyTransmit = c.dpdkZeroCopy
                device = try DPDKDevice(attaching: "\(DPDKEnvironment.uniqueDeviceName("net_af_xdp")),iface=\(name),"
                                            + "start_queue=0,queue_count=1", pool: pool, configuration: dc)
            } else {
                var dc = DPDKDevice.Configuration.afPacket
                dc.zeroCopyTransmit = c.dpdkZeroCopy
                device = try DPDKDevice(attaching: DPDKEnvironment.afPacketDevargs(DPDKEnvironment.uniqueDeviceName(),
                                                                                   interface: name),
                                        pool: pool, configuration: dc)
                ringFrames = DPDKEnvironment.afPacketDefaultFrames
            }
        } else {
            var args = c.ealArguments.filter { !$0.isEmpty }
            var dc = DPDKDevice.Configuration()
            if args.isEmpty {
                // Hugepages when some are free and hugetlbfs is mounted, ordinary pages (--no-huge) otherwise.
                args = DPDKEnvironment.defaultArguments(
                    vdev: c.interfaceName.map { DPDKEnvironment.afPacketDevargs("net_af_packet0", interface: $0) },
                    hugepages: DPDKEnvironment.hugepagesAvailable())
                if c.interfaceName != nil { dc = .afPacket }
            } else {
                // Upstream-style eal_init with a plain `--vdev=net_af_packet0,iface=...`: without ring frames that
                // hold a whole datagram, the driver would truncate reassembled datagrams above about 2 KB.
                let (rewritten, afPacket) = DPDKEnvironment.wholeDatagramArguments(args)
                args = rewritten
                if afPacket { dc = .afPacket }
            }
            dc.zeroCopyTransmit = c.dpdkZeroCopy
            device = try DPDKDevice(ealArguments: args, pool: pool, configuration: dc)
            if device.driverName == "net_af_packet" { ringFrames = DPDKEnvironment.afPacketRingFrames(args) }
        }
        var s = c.stackConfiguration(mac: device.macAddress, ip: ip)
        if let ringFrames {
            // A TCP window larger than the ring lets a sender burst more segments than the ring holds, and the kernel
            // drops what does not fit (see DPDKEnvironment.afPacketReceiveWindow).
            let mss = s.tcp.maximumSegmentSize ?? device.capabilities.mtu - 40
            s.tcp.receiveBufferSize = min(s.tcp.receiveBufferSize,
                                          DPDKEnvironment.afPacketReceiveWindow(ringFrames: ringFrames, segmentSize: mss))
        }
        return DPDKLibOS(device: device, pool: pool, configuration: s)
    }
}
#endif
