import DemiCore
import DemiInet

/// Settings of the user-space stack: the interface's addresses and every protocol's knobs (upstream's keys:
/// `demikernel.local_ipv4_addr`, `demikernel.mac_address`, `network.arp_table`, `tcp_socket_options`, ...).
public struct StackConfiguration: Sendable {
    public var localIPv4: IPv4Address
    public var localMAC: MACAddress
    /// The local subnet's prefix length (hosts in it are reached directly).
    public var prefixLength = 24
    /// The router for destinations outside the subnet; nil: they are unreachable (`ENETUNREACH`).
    public var gateway: IPv4Address?
    public var arp = ARPConfiguration()
    /// Static ARP entries (never expire).
    public var staticARP: [IPv4Address: MACAddress] = [:]
    /// Announce our address with a gratuitous ARP at start.
    public var gratuitousARP = true
    public var tcp = TCPConfiguration()
    /// Datagrams a UDP socket buffers before it drops (and counts) more.
    public var udpReceiveQueueLimit = 1024
    /// ICMP errors (port unreachable) sent per second at most (Linux: `icmp_ratelimit`, 1000/s).
    public var icmpErrorsPerSecond = 1000
    public var reassembly = ReassemblyConfiguration()
    /// Local ports handed out to sockets bound to port 0 and to connecting sockets.
    public var ephemeralPorts: ClosedRange<UInt16> = 49152...65535
    /// Frames buffered per unresolved next hop while ARP asks for it.
    public var arpPendingLimit = 64

    public init(localIPv4: IPv4Address, localMAC: MACAddress) {
        self.localIPv4 = localIPv4
        self.localMAC = localMAC
    }

    /// The subnet mask, host order.
    public var netmask: UInt32 { prefixLength == 0 ? 0 : ~UInt32(0) << (32 - UInt32(prefixLength)) }

    /// True if `ip` is on the local subnet.
    public func isLocal(_ ip: IPv4Address) -> Bool { ip.rawValue & netmask == localIPv4.rawValue & netmask }
}

/// Counters of the stack (the statistics `demi` prints; not read on the datapath).
public struct StackStatistics: Sendable {
    public var framesReceived = 0
    public var framesSent = 0
    public var framesDropped = 0
    /// Frames or packets that failed parsing (truncated, bad lengths, bad versions), counted and dropped.
    public var malformed = 0
    public var checksumErrors = 0
    public var notForUs = 0
    public var arpRequestsSent = 0
    public var arpRepliesSent = 0
    public var arpFailures = 0
    public var icmpEchoReplies = 0
    public var icmpErrorsSent = 0
    public var icmpErrorsRateLimited = 0
    public var udpDatagramsReceived = 0
    public var udpDatagramsSent = 0
    public var udpReceiveDrops = 0
    public var udpNoPort = 0
    public var tcpSegmentsReceived = 0
    public var tcpSegmentsSent = 0
    public var tcpResetsSent = 0
    public var tcpRetransmissions = 0
    /// Loss recovery of all connections (closed ones and, in `totals`, live ones): retransmission timeouts, fast
    /// retransmits (recoveries), recoveries started by the reordering window, retransmissions found lost and resent,
    /// tail loss probes, and retransmissions found spurious (undone).
    public var tcpTimeouts = 0
    public var tcpFastRetransmits = 0
    public var tcpReorderWindowRecoveries = 0
    public var tcpLostRetransmissions = 0
    public var tcpTailLossProbes = 0
    public var tcpSpuriousRetransmissions = 0
    public var tcpListenOverflows = 0
    public var unreachable = 0

    public init() {}

    /// Adds one connection's loss-recovery counters.
    public mutating func add(_ c: TCPConnectionStatistics) {
        tcpRetransmissions += c.retransmissions
        tcpTimeouts += c.timeouts
        tcpFastRetransmits += c.fastRetransmits
        tcpReorderWindowRecoveries += c.reorderWindowRecoveries
        tcpLostRetransmissions += c.lostRetransmissions
        tcpTailLossProbes += c.tailLossProbes
        tcpSpuriousRetransmissions += c.spuriousRetransmissions
    }

    public var pairs: [(String, Int)] {
        [("frames_received", framesReceived), ("frames_sent", framesSent), ("frames_dropped", framesDropped),
         ("malformed", malformed), ("checksum_errors", checksumErrors), ("not_for_us", notForUs),
         ("arp_requests_sent", arpRequestsSent), ("arp_replies_sent", arpRepliesSent), ("arp_failures", arpFailures),
         ("icmp_echo_replies", icmpEchoReplies), ("icmp_errors_sent", icmpErrorsSent),
         ("icmp_errors_rate_limited", icmpErrorsRateLimited), ("udp_received", udpDatagramsReceived),
         ("udp_sent", udpDatagramsSent), ("udp_receive_drops", udpReceiveDrops), ("udp_no_port", udpNoPort),
         ("tcp_segments_received", tcpSegmentsReceived), ("tcp_segments_sent", tcpSegmentsSent),
         ("tcp_resets_sent", tcpResetsSent), ("tcp_retransmissions", tcpRetransmissions),
         ("tcp_timeouts", tcpTimeouts), ("tcp_fast_retransmits", tcpFastRetransmits),
         ("tcp_reorder_window_recoveries", tcpReorderWindowRecoveries),
         ("tcp_lost_retransmissions", tcpLostRetransmissions), ("tcp_tail_loss_probes", tcpTailLossProbes),
         ("tcp_spurious_retransmissions", tcpSpuriousRetransmissions),
         ("tcp_listen_overflows", tcpListenOverflows), ("unreachable", unreachable)]
    }
}
