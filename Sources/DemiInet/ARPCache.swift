import DemiCore
import DemiWire

/// Settings of address resolution (upstream's `arp_*` configuration keys).
public struct ARPConfiguration: Sendable {
    /// How long a learned entry stays valid. Static entries never expire.
    public var cacheTTL: Duration = .seconds(600)
    /// How long to wait for a reply before asking again.
    public var requestTimeout: Duration = .seconds(1)
    /// Requests sent after the first before giving up.
    public var retries = 2

    public init() {}
}

/// The ARP state machine of one interface (RFC 826). It does no I/O and reads no clock: callers pass `now` and send
/// the packets it returns.
///
/// - Entries learned from the network expire after the TTL (upstream never enforces it); static entries never do.
/// - `resolve` asks for an address: known → the MAC; unknown → a request to broadcast (once; concurrent resolvers
///   share it); after `retries` unanswered re-requests, the resolution fails (`ETIMEDOUT` for its waiters).
/// - `receive` answers requests for our address and learns the sender when the packet is for us or the sender is
///   already cached (the RFC's merge rule).
public struct ARPCache: Sendable {
    public let localIP: IPv4Address
    public let localMAC: MACAddress
    public let configuration: ARPConfiguration

    struct Entry {
        var mac: MACAddress
        /// Nil for a static entry.
        var expires: Instant?
    }

    struct Pending {
        var attempts: Int
        var deadline: Instant
    }

    var entries: [IPv4Address: Entry] = [:]
    var pending: [IPv4Address: Pending] = [:]
    /// The last entry found, so that a stream of frames to one peer does not hash its address per frame.
    var recentIP = IPv4Address.any
    var recent: Entry?

    /// What the caller must do after a call.
    public enum Action: Hashable, Sendable {
        /// The address is known.
        case resolved(MACAddress)
        /// Send this ARP packet (broadcast a request, or unicast a reply).
        case send(ARPPacket)
        /// A request is already outstanding: wait.
        case waiting
        /// No reply after every retry: fail whoever waits for this address.
        case failed(IPv4Address)
    }

    public init(localIP: IPv4Address, localMAC: MACAddress, configuration: ARPConfiguration = ARPConfiguration(),
                staticEntries: [MACAddress: IPv4Address] = [:]) {
        self.localIP = localIP
        self.localMAC = localMAC
        self.configuration = configuration
        for (mac, ip) in staticEntries { entries[ip] = Entry(mac: mac, expires: nil) }
    }

    /// The MAC of `ip` if cached and not expired at `now`.
    public mutating func lookup(_ ip: IPv4Address, now: Instant) -> MACAddress? {
        if ip.isBroadcast { return .broadcast }
        if ip == recentIP, let e = recent, e.expires.map({ now < $0 }) ?? true { return e.mac }
        guard let e = entries[ip] else { return nil }
        if let x = e.expires, x <= now {
            entries[ip] = nil
            if ip == recentIP { recent = nil }
            return nil
        }
        recentIP = ip
        recent = e
        return e.mac
    }

    /// Learns (or refreshes) a mapping.
    public mutating func insert(_ ip: IPv4Address, _ mac: MACAddress, now: Instant) {
        if let e = entries[ip], e.expires == nil { return }  // static entries win
        entries[ip] = Entry(mac: mac, expires: now + configuration.cacheTTL)
        if ip == recentIP { recent = nil }
        pending[ip] = nil
    }

    /// Starts (or joins) the resolution of `ip`.
    public mutating func resolve(_ ip: IPv4Address, now: Instant) -> Action {
        if let mac = lookup(ip, now: now) { return .resolved(mac) }
        if pending[ip] != nil { return .waiting }
        pending[ip] = Pending(attempts: 1, deadline: now + configuration.requestTimeout)
        return .send(request(ip))
    }

    /// Re-sends requests whose timeout passed and gives up on those out of retries.
    public mutating func poll(now: Instant) -> [Action] {
        var actions: [Action] = []
        for (ip, p) in pending where p.deadline <= now {
            if p.attempts > configuration.retries {
                pending[ip] = nil
                actions.append(.failed(ip))
            } else {
                pending[ip] = Pending(attempts: p.attempts + 1, deadline: now + configuration.requestTimeout)
                actions.append(.send(request(ip)))
            }
        }
        return actions
    }

    /// The earliest time `poll` has work, if any.
    public var nextDeadline: Instant? { pending.values.map(\.deadline).min() }

    /// Handles a received ARP packet; returns a reply to send, if any.
    public mutating func receive(_ p: ARPPacket, now: Instant) -> ARPPacket? {
        guard !p.senderIP.isUnspecified || p.operation == .request else { return nil }
        let forUs = p.targetIP == localIP
        if !p.senderIP.isUnspecified && (forUs || entries[p.senderIP] != nil || pending[p.senderIP] != nil) {
            insert(p.senderIP, p.senderMAC, now: now)
        }
        guard forUs, p.operation == .request else { return nil }
        return ARPPacket(operation: .reply, senderMAC: localMAC, senderIP: localIP, targetMAC: p.senderMAC,
                         targetIP: p.senderIP)
    }

    /// A gratuitous ARP announcing our address (sent at start).
    public var announcement: ARPPacket {
        ARPPacket(operation: .request, senderMAC: localMAC, senderIP: localIP, targetMAC: .zero, targetIP: localIP)
    }

    func request(_ ip: IPv4Address) -> ARPPacket {
        ARPPacket(operation: .request, senderMAC: localMAC, senderIP: localIP, targetMAC: .zero, targetIP: ip)
    }
}
