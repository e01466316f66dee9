import DemiCore

/// Settings of the TCP implementation (RFC 9293 and its extensions). Defaults follow Linux where the RFCs leave a
/// choice.
public struct TCPConfiguration: Sendable {
    /// Our largest segment payload (MSS option); nil: the device MTU minus 40.
    public var maximumSegmentSize: Int?
    /// Bytes the receive side buffers (and so the largest window it offers).
    public var receiveBufferSize = 1 << 20
    /// The window scale shift we offer (RFC 7323 §2); at most 14.
    public var windowScale: UInt8 = 7
    /// Offer and accept selective acknowledgments (RFC 2018) and use them for loss recovery (RFC 6675).
    public var selectiveAcknowledgments = true
    /// Offer and accept timestamps (RFC 7323): RTT samples on every ACK, and PAWS.
    public var timestamps = true
    /// Delay pure ACKs by this much (RFC 9293 §3.8.6.3: at most 500 ms; every second full segment is ACKed at once).
    /// Nil: acknowledge every segment at once.
    public var delayedACK: Duration? = .milliseconds(40)
    /// Nagle's algorithm (RFC 9293 §3.7.4): hold back small segments while data is unacknowledged. Off by default,
    /// like `TCP_NODELAY` in latency-sensitive servers.
    public var nagle = false
    /// The congestion control algorithm.
    public var congestionControl: CongestionAlgorithm = .cubic
    /// Retransmission timeout bounds (RFC 6298).
    public var retransmission = RetransmissionTimeoutConfiguration()
    /// Retransmissions of one segment before the connection fails with `ETIMEDOUT` (Linux's `tcp_retries2`).
    public var maximumRetransmissions = 15
    /// SYN (or SYN-ACK) retransmissions before a connection attempt fails with `ETIMEDOUT` (`tcp_syn_retries`).
    public var synRetries = 6
    /// Time spent in TIME-WAIT (2 MSL; Linux uses 60 s).
    public var timeWait: Duration = .seconds(60)
    /// Idle time before keepalive probes start; nil: keepalive off (RFC 9293 §3.8.4: off by default).
    public var keepalive: Duration?
    /// Time between unanswered keepalive probes, and how many before the connection fails.
    public var keepaliveInterval: Duration = .seconds(75)
    public var keepaliveProbes = 9
    /// Upper bound of the zero-window probe interval.
    public var maximumPersistInterval: Duration = .seconds(60)
    /// Time-based loss detection in the manner of RACK (RFC 8985) on top of SACK: a hole below SACKed data is lost
    /// once a reordering window (a quarter of the minimum RTT, at least 1 ms) has passed, even when fewer than three
    /// segments were SACKed above it (small windows, ACKs that carry data); in recovery, SACKed data first sent after
    /// a retransmission marks that retransmission lost, so it is sent again without waiting for the timeout.
    public var recentAcknowledgment = true
    /// Tail loss probes (RFC 8985 §7): when the last segments of a flight go unacknowledged for two smoothed RTTs,
    /// send one segment (new data, or the last one again) to draw the SACK that starts recovery, instead of waiting
    /// for the retransmission timeout.
    public var tailLossProbes = true
    /// Challenge ACKs (RFC 5961 §7) sent per second at most, per connection.
    public var challengeACKLimit = 10

    public init() {}
}
