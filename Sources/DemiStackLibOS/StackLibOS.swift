import DemiBuffers
import DemiCore
import DemiDevices
import DemiInet
import DemiRuntime
import DemiWire

/// PDPIX over the user-space TCP/IP stack, on any physical layer: the in-memory link (tests, `demi bench`), AF_PACKET
/// (catpowder), DPDK (catnip).
///
/// Everything runs on the application's thread inside the scheduler: `poll` receives a burst of frames from the
/// device and runs each through Ethernet, ARP or IPv4 (with reassembly), ICMP, UDP or TCP; then due timers
/// (retransmission, delayed ACK, ARP retries, ...) run as background coroutines. Operations complete from these
/// events: a pop when data arrives, a push when TCP has its bytes acknowledged (upstream #363), an accept when a
/// handshake completes.
///
/// Zero copy: a received payload reaches the application in the frame's own buffer (headers trimmed); pushed
/// buffers go out as views (TCP, held until acknowledged) or chained behind the headers (UDP).
public final class StackLibOS<Device: PhysicalLayer>: StackTransmitter, NetworkLibOS {
    public let scheduler = Scheduler()
    public let pool: BufferPool
    public let device: Device
    public let configuration: StackConfiguration
    @exclusivity(unchecked) public internal(set) var statistics = StackStatistics()

    @exclusivity(unchecked) var arp: ARPCache
    @exclusivity(unchecked) var arpPending: [IPv4Address: [DemiBuffer]] = [:]
    @exclusivity(unchecked) var sockets = UnsafeTable<Socket>(capacity: 64)
    @exclusivity(unchecked) var freeSocket = -1
    @exclusivity(unchecked) var connections: [TCPEndpoints: Int] = [:]
    /// The last connection found by `lookupConnection` (-1: none), so that a run of segments of one connection
    /// hashes its endpoints once. Reset whenever an entry leaves `connections`.
    @exclusivity(unchecked) var lastConnection = -1
    @exclusivity(unchecked) var lastEndpoints = TCPEndpoints(local: .unspecified, remote: .unspecified)
    @exclusivity(unchecked) var tcpListeners: [UInt16: Int] = [:]
    @exclusivity(unchecked) var tcpPorts: [UInt16: Int] = [:]
    @exclusivity(unchecked) var udpPorts: [UInt16: Int] = [:] {
        didSet { lastUDPPort = 0 }
    }
    /// The last UDP port found and its socket (port 0: none), so that a stream of datagrams hashes once.
    @exclusivity(unchecked) var lastUDPPort: UInt16 = 0
    @exclusivity(unchecked) var lastUDPSocket = -1
    @exclusivity(unchecked) var nextEphemeral: UInt16
    @exclusivity(unchecked) var ipIdentification: UInt16 = 0
    @exclusivity(unchecked) var icmpSecond: Int64 = -1
    @exclusivity(unchecked) var icmpSent = 0
    @exclusivity(unchecked) var housekeeping: UInt32 = Operation.none
    let reassembler: IPv4Reassembler
    let rx: UnsafeMutablePointer<DemiBuffer>
    let burst: Int
    let mtu: Int
    /// Copies of the configuration and device capabilities read per packet: calling a method of, or reading through,
    /// a large struct held by a class copies the whole struct first.
    let localIPv4: IPv4Address
    let localMAC: MACAddress
    let netmask: UInt32
    let gateway: IPv4Address?
    let receiveOffload: ChecksumOffload
    let transmitOffload: ChecksumOffload
    let isnKey: (UInt64, UInt64)

    static var housekeepingTag: UInt64 { 1 }
    static var connectionTag: UInt64 { 2 << 32 }

    /// Nested names for the non-generic types below (a type nested in this generic class would need its metadata
    /// looked up at run time on every use in unspecialized code).
    typealias Socket = StackSocket
    typealias Output = StackOutput

    /// Creates the libOS over `device`, whose received frames must come from `pool`.
    public init(device: Device, pool: BufferPool, configuration: StackConfiguration, now: Instant = .now()) {
        self.device = device
        self.pool = pool
        self.configuration = configuration
        arp = ARPCache(localIP: configuration.localIPv4, localMAC: configuration.localMAC,
                       configuration: configuration.arp,
                       staticEntries: Dictionary(configuration.staticARP.map { ($0.value, $0.key) },
                                                 uniquingKeysWith: { a, _ in a }))
        reassembler = IPv4Reassembler(pool: pool, configuration: configuration.reassembly)
        burst = max(1, device.capabilities.maxBurst)
        rx = .allocate(capacity: burst)
        mtu = device.capabilities.mtu
        localIPv4 = configuration.localIPv4
        localMAC = configuration.localMAC
        netmask = configuration.netmask
        gateway = configuration.gateway
        receiveOffload = device.capabilities.receiveOffload
        transmitOffload = device.capabilities.transmitOffload
        let span = Int(configuration.ephemeralPorts.upperBound - configuration.ephemeralPorts.lowerBound) + 1
        nextEphemeral = configuration.ephemeralPorts.lowerBound &+ UInt16(truncatingIfNeeded: Int.random(in: 0..<span))
        isnKey = (UInt64.random(in: .min ... .max), UInt64.random(in: .min ... .max))
        super.init()
        housekeeping = (try? scheduler.spawnBackground(tag: Self.housekeepingTag)) ?? Operation.none
        if configuration.gratuitousARP { sendARP(arp.announcement, to: .broadcast, now: now) }
        device.flush(now: now)
    }

    deinit {
        for i in sockets.indices where sockets[i].inUse {
            sockets[i].tcp?.destroy()
            sockets[i].datagrams?.destroy()
        }
        for (_, frames) in arpPending { for f in frames { f.releaseChain() } }
        reassembler.removeAll()
        sockets.destroy()
        rx.deallocate()
    }

    // MARK: - The pass

    @_specialize(exported: true, where Device == InMemoryLink.Endpoint)
    @_specialize(exported: true, where Device == FaultInjector<InMemoryLink.Endpoint>)
    @_specialize(exported: true, where Device == PacketSocketDevice)
    public func poll(now: Instant) {
        let now = now == .zero ? Instant.now() : now
        let n = device.receive(into: rx, capacity: burst, now: now)
        for k in 0..<n { receiveFrame(rx[k], now: now) }
        scheduler.fireTimers(now: now)
        scheduler.runReady { t in pollTask(t, now: now) }
        device.flush(now: now)
    }

    func pollTask(_ t: UInt32, now: Instant) {
        guard let tag = scheduler.backgroundTag(t) else { return }  // operations complete from events
        if tag == Self.housekeepingTag {
            runHousekeeping(now: now)
        } else {
            let i = Int(truncatingIfNeeded: tag & 0xFFFF_FFFF)
            guard i < sockets.count, sockets[i].inUse, sockets[i].hasConnection else { return }
            sockets[i].timerAt = .max  // it fired
            var out = Output(stack: self, now: now)
            let ev = connection(i).pointee.onTimer(now: now, sink: &out)
            handle(i, ev, now: now)
        }
    }

    func runHousekeeping(now: Instant) {
        for action in arp.poll(now: now) {
            switch action {
            case .send(let p):
                statistics.arpRequestsSent += 1
                sendARP(p, to: .broadcast, now: now)
            case .failed(let ip):
                statistics.arpFailures += 1
                if let frames = arpPending.removeValue(forKey: ip) {
                    for f in frames { f.releaseChain() }
                    statistics.framesDropped += frames.count
                }
            default: break
            }
        }
        _ = reassembler.expire(now: now)
        armHousekeeping()
    }

    func armHousekeeping() {
        guard housekeeping != Operation.none else { return }
        var d = arp.nextDeadline
        if let r = reassembler.nextDeadline, d == nil || r < d! { d = r }
        if let d { scheduler.armTimer(housekeeping, at: d) } else { scheduler.cancelTimer(housekeeping) }
    }

    // MARK: - Receive path

    func receiveFrame(_ f: DemiBuffer, now: Instant) {
        statistics.framesReceived += 1
        let eth: EthernetHeader
        do { eth = try EthernetHeader.parse(stripping: f) } catch {
            statistics.malformed += 1
            f.releaseChain()
            return
        }
        if eth.destination != localMAC && !eth.destination.isBroadcast {
            statistics.notForUs += 1
            f.releaseChain()
            return
        }
        switch eth.etherType {
        case EtherType.arp: receiveARP(f, now: now)
        case EtherType.ipv4: receiveIPv4(f, now: now)
        default:
            statistics.notForUs += 1
            f.releaseChain()
        }
    }

    func receiveARP(_ f: DemiBuffer, now: Instant) {
        defer { f.releaseChain() }
        let p: ARPPacket
        do { p = try ARPPacket.parse(UnsafeRawBufferPointer(f.bytes)) } catch {
            statistics.malformed += 1
            return
        }
        if let reply = arp.receive(p, now: now) {
            statistics.arpRepliesSent += 1
            sendARP(reply, to: p.senderMAC, now: now)
        }
        if arpPending[p.senderIP] != nil, let mac = arp.lookup(p.senderIP, now: now) {
            let frames = arpPending.removeValue(forKey: p.senderIP) ?? []
            for b in frames { transmitFrame(b, to: mac, now: now) }
        }
        armHousekeeping()
    }

    func receiveIPv4(_ f: DemiBuffer, now: Instant) {
        var ip: IPv4Header
        do {
            ip = try IPv4Header.parse(stripping: f, checksumOffload: receiveOffload.contains(.ipv4))
        } catch {
            if error == .badChecksum { statistics.checksumErrors += 1 } else { statistics.malformed += 1 }
            f.releaseChain()
            return
        }
        let dst = ip.destination
        let subnetBroadcast = IPv4Address(rawValue: localIPv4.rawValue | ~netmask)
        guard dst == localIPv4 || dst.isBroadcast || dst == subnetBroadcast else {
            statistics.notForUs += 1
            f.releaseChain()
            return
        }
        var payload = f
        if ip.moreFragments || ip.fragmentOffset != 0 {
            guard let whole = reassembler.insert(ip, payload: f, now: now) else {
                armHousekeeping()
                return
            }
            payload = whole
            ip.moreFragments = false
            ip.fragmentOffset = 0
            ip.payloadLength = whole.count
        }
        switch ip.proto {
        case IPProtocol.tcp: receiveTCP(ip, payload, now: now)
        case IPProtocol.udp: receiveUDP(ip, payload, now: now)
        case IPProtocol.icmp: receiveICMP(ip, payload, now: now)
        default:
            sendICMPError(type: ICMPv4Header.MessageType.destinationUnreachable, code: ICMPv4Header.UnreachableCode.proto,
                          original: ip, payload: payload, now: now)
            payload.releaseChain()
        }
    }

    func receiveICMP(_ ip: IPv4Header, _ b: DemiBuffer, now: Instant) {
        let h: ICMPv4Header
        do { h = try ICMPv4Header.parse(UnsafeRawBufferPointer(b.bytes)) } catch {
            if error == .badChecksum { statistics.checksumErrors += 1 } else { statistics.malformed += 1 }
            b.releaseChain()
            return
        }
        guard h.type == ICMPv4Header.MessageType.echoRequest, ip.destination == localIPv4 else {
            b.releaseChain()  // errors for our sockets: soft errors, ignored (RFC 5927)
            return
        }
        // Answer in place: same identifier, sequence and data.
        let reply = ICMPv4Header(type: ICMPv4Header.MessageType.echoReply, code: 0, restOfHeader: h.restOfHeader)
        reply.emit(b.bytes)
        statistics.icmpEchoReplies += 1
        sendIPv4(b, to: ip.source, proto: IPProtocol.icmp, now: now)
    }

    func receiveUDP(_ ip: IPv4Header, _ b: DemiBuffer, now: Instant) {
        let u: UDPHeader
        do {
            u = try UDPHeader.parse(UnsafeRawBufferPointer(b.bytes), source: ip.source, destination: ip.destination,
                                    checksumOffload: receiveOffload.contains(.udp))
        } catch {
            if error == .badChecksum { statistics.checksumErrors += 1 } else { statistics.malformed += 1 }
            b.releaseChain()
            return
        }
        guard let i = lookupUDPPort(u.destinationPort) else {
            statistics.udpNoPort += 1
            if ip.destination == localIPv4 {
                sendICMPError(type: ICMPv4Header.MessageType.destinationUnreachable,
                              code: ICMPv4Header.UnreachableCode.port, original: ip, payload: b, now: now)
            }
            b.releaseChain()
            return
        }
        let source = SocketAddressV4(ip.source, u.sourcePort)
        if let r = sockets[i].remote, r != source {
            b.releaseChain()  // a connected socket takes datagrams from its peer only
            return
        }
        b.setCount(u.length)
        b.trimFront(UDPHeader.size)
        statistics.udpDatagramsReceived += 1
        // The sender's address travels in the 8 bytes the UDP header occupied.
        let tag = b.baseAddress - 8
        tag.storeBytes(of: ip.source.rawValue, toByteOffset: 0, as: UInt32.self)
        tag.storeBytes(of: u.sourcePort, toByteOffset: 4, as: UInt16.self)
        let head = sockets[i].pops.head
        if head != Operation.none && sockets[i].datagrams.map({ $0.isEmpty }) ?? true {
            completePop(i, head, ScatterGatherArray(head: b, address: source))
            return
        }
        if sockets[i].datagrams == nil { sockets[i].datagrams = BufferRing(capacity: 64) }
        guard sockets[i].datagrams!.count < configuration.udpReceiveQueueLimit else {
            statistics.udpReceiveDrops += 1
            b.releaseChain()
            return
        }
        sockets[i].datagrams!.append(b)
    }

    func receiveTCP(_ ip: IPv4Header, _ b: DemiBuffer, now: Instant) {
        let h: TCPHeader
        do {
            let (hdr, off) = try TCPHeader.parse(UnsafeRawBufferPointer(b.bytes), source: ip.source,
                                                 destination: ip.destination,
                                                 checksumOffload: receiveOffload.contains(.tcp))
            h = hdr
            b.trimFront(off)
        } catch {
            if error == .badChecksum { statistics.checksumErrors += 1 } else { statistics.malformed += 1 }
            b.releaseChain()
            return
        }
        statistics.tcpSegmentsReceived += 1
        guard ip.destination == localIPv4 else {
            b.releaseChain()
            return
        }
        let key = TCPEndpoints(local: SocketAddressV4(ip.destination, h.destinationPort),
                               remote: SocketAddressV4(ip.source, h.sourcePort))
        if let i = lookupConnection(key) {
            var out = Output(stack: self, now: now)
            let ev = connection(i).pointee.receive(h, payload: b, now: now, sink: &out)
            handle(i, ev, now: now)
            return
        }
        if let l = tcpListeners[h.destinationPort], h.flags.contains(.syn), !h.flags.contains(.ack),
           !h.flags.contains(.rst) {
            b.releaseChain()
            guard sockets[l].halfOpen < sockets[l].backlog,
                  sockets[l].acceptQueue.count < sockets[l].backlog else {
                statistics.tcpListenOverflows += 1
                return
            }
            guard let i = try? newConnection(key, passive: true, now: now) else { return }
            sockets[i].listener = l
            sockets[i].local = key.local
            sockets[i].remote = key.remote
            sockets[l].halfOpen += 1
            var out = Output(stack: self, now: now)
            connection(i).pointee.accept(syn: h, now: now, sink: &out)
            armConnectionTimer(i)
            return
        }
        // No connection: answer with a reset (RFC 9293 §3.10.7.1), never to a reset.
        let len = b.count
        b.releaseChain()
        guard !h.flags.contains(.rst) else { return }
        sendReset(answering: h, payloadLength: len, endpoints: key, now: now)
    }

    /// The connection of socket `i`, in place (the caller checked `sockets[i].hasConnection`). A computed property read
    /// through `sockets[i].tcp!` copies the whole connection first; through this pointer it does not. (The payload
    /// of an `Optional` of a struct sits at offset 0.)
    @inline(__always)
    func connection(_ i: Int) -> UnsafeMutablePointer<TCPConnection> {
        withUnsafeMutablePointer(to: &sockets[i].tcp) {
            UnsafeMutableRawPointer($0).assumingMemoryBound(to: TCPConnection.self)
        }
    }

    /// The socket bound to UDP port `port`, from the one-entry cache or the table.
    @inline(__always)
    func lookupUDPPort(_ port: UInt16) -> Int? {
        if port == lastUDPPort { return lastUDPSocket }
        guard let i = udpPorts[port] else { return nil }
        lastUDPPort = port
        lastUDPSocket = i
        return i
    }

    /// The connection of `key`, from the one-entry cache or the table.
    @inline(__always)
    func lookupConnection(_ key: TCPEndpoints) -> Int? {
        if lastConnection >= 0 && lastEndpoints == key { return lastConnection }
        guard let i = connections[key] else { return nil }
        lastEndpoints = key
        lastConnection = i
        return i
    }

    // MARK: - Connection events

    /// Completes the application's operations after connection `i` reported `ev`, and re-arms its timer.
    func handle(_ i: Int, _ ev: TCPEvents, now: Instant) {
        if ev.contains(.established) {
            let l = sockets[i].listener
            if l >= 0 {
                sockets[l].halfOpen -= 1
                sockets[l].acceptQueue.append(i)
                sockets[i].state = .connected
                completeAccepts(l)
            } else {
                sockets[i].state = .connected
                let t = sockets[i].connectOp
                if t != Operation.none {
                    sockets[i].connectOp = Operation.none
                    scheduler.complete(t, QResult(opcode: .connect, qd: qd(i), qt: QToken(rawValue: 0)))
                }
            }
        }
        if ev.contains(.acknowledged) { completePushes(i) }
        if ev.contains(.readable) { completePops(i, now: now) }
        if ev.contains(.failed) || ev.contains(.closed) {
            let e = connection(i).pointee.error
            if sockets[i].connectOp != Operation.none {
                let t = sockets[i].connectOp
                sockets[i].connectOp = Operation.none
                fail(t, e ?? .connectionRefused)
            }
            if let e {
                sockets[i].pops.removeAll(scheduler) { fail($0, e) }
                sockets[i].pushes.removeAll(scheduler) { fail($0, e) }
            } else {
                completePops(i, now: now)
            }
        }
        if ev.contains(.closed) {
            connectionClosed(i)
            return
        }
        armConnectionTimer(i)
    }

    func armConnectionTimer(_ i: Int) {
        let t = sockets[i].timer
        guard t != Operation.none, sockets[i].hasConnection else { return }
        // Read in place (binding the connection to a name would copy it).
        guard let d = connection(i).pointee.nextDeadline, d.rawValue < sockets[i].timerAt else { return }
        scheduler.armTimer(t, at: d)
        sockets[i].timerAt = d.rawValue
    }

    /// Connection `i` reached CLOSED: forget its demultiplexing entry; free the slot if nobody holds it.
    func connectionClosed(_ i: Int) {
        guard let tcp = sockets[i].tcp else { return }
        if connections[tcp.endpoints] == i {
            connections[tcp.endpoints] = nil
            lastConnection = -1
        }
        if sockets[i].timer != Operation.none {
            scheduler.cancelTimer(sockets[i].timer)
            scheduler.endBackground(sockets[i].timer)
            sockets[i].timer = Operation.none
        }
        let l = sockets[i].listener
        if l >= 0 && !sockets[i].visible {
            // Never accepted: drop it from its listener.
            if let k = sockets[l].acceptQueue.firstIndex(of: i) {
                sockets[l].acceptQueue.remove(at: k)
            } else if sockets[l].halfOpen > 0 && tcp.state != .established {
                sockets[l].halfOpen -= 1
            }
            releaseSocket(i)
            return
        }
        if sockets[i].detached { releaseSocket(i) }
    }

    func completeAccepts(_ l: Int) {
        while sockets[l].accepts.head != Operation.none, !sockets[l].acceptQueue.isEmpty {
            let t = sockets[l].accepts.head
            let i = sockets[l].acceptQueue.removeFirst()
            sockets[i].visible = true
            sockets[i].listener = -1
            sockets[l].accepts.removeHead(scheduler)
            scheduler.complete(t, QResult(opcode: .accept, qd: qd(l), qt: QToken(rawValue: 0),
                                          value: .accepted(qd(i), sockets[i].remote ?? .unspecified)))
        }
    }

    func completePushes(_ i: Int) {
        guard sockets[i].hasConnection else { return }
        let acked = connection(i).pointee.bytesAcknowledged
        while true {
            let t = sockets[i].pushes.head
            guard t != Operation.none, scheduler.operation(t).pointee.aux <= acked else { return }
            sockets[i].pushes.removeHead(scheduler)
            scheduler.complete(t, QResult(opcode: .push, qd: scheduler.operation(t).pointee.qd, qt: QToken(rawValue: 0)))
        }
    }

    func completePops(_ i: Int, now: Instant) {
        var read = false
        while sockets[i].pops.head != Operation.none {
            let t = sockets[i].pops.head
            if let b = connection(i).pointee.read() {
                read = true
                completePop(i, t, ScatterGatherArray(head: b))
            } else if connection(i).pointee.finReceived || connection(i).pointee.state == .closed {
                if let e = connection(i).pointee.error {
                    sockets[i].pops.removeHead(scheduler)
                    fail(t, e)
                    continue
                }
                guard let empty = pool.allocate(size: 0, headroom: 0) else { return }
                completePop(i, t, ScatterGatherArray(head: empty))
            } else {
                break
            }
        }
        if read {
            var out = Output(stack: self, now: now)
            connection(i).pointee.sendWindowUpdateIfDue(now: now, sink: &out)
        }
    }

    func completePop(_ i: Int, _ t: UInt32, _ sga: ScatterGatherArray) {
        pool.giveToApplication(sga.head.unsafelyUnwrapped)
        sockets[i].pops.removeHead(scheduler)
        scheduler.complete(t, QResult(opcode: .pop, qd: scheduler.operation(t).pointee.qd, qt: QToken(rawValue: 0),
                                      value: .sga(sga)))
    }

    func fail(_ t: UInt32, _ e: Errno) {
        scheduler.complete(t, .failure(scheduler.operation(t).pointee.qd, QToken(rawValue: 0), e))
    }

    // MARK: - Transmit path

    /// A buffer for the application to fill and push (`sgaalloc`): device memory the device sends without a copy
    /// where it offers some (``PhysicalLayer/allocateTransmitBuffer(size:)``, a DPDK mbuf), else one from the pool.
    public func allocateBuffer(size: Int) -> DemiBuffer? {
        device.allocateTransmitBuffer(size: size) ?? pool.allocate(size: size)
    }

    static var headerRoom: Int { 14 + 4 + 60 + 60 }

    override func sendTCP(_ h: TCPHeader, payload: DemiBuffer?, endpoints: TCPEndpoints, now: Instant) {
        let hlen = h.encodedLength
        guard let b = pool.allocate(size: hlen, headroom: Self.headerRoom) else {
            payload?.releaseChain()
            statistics.framesDropped += 1
            return
        }
        b.header.pointee.next = payload?.header
        let total = hlen + (payload?.chainCount ?? 0)
        let src = endpoints.local.address, dst = endpoints.remote.address
        h.emit(b.bytes, source: src, destination: dst, checksumOffload: true)
        if !transmitOffload.contains(.tcp) {
            let pseudo = InternetChecksum.pseudoHeader(source: src, destination: dst, protocol: IPProtocol.tcp,
                                                      length: total)
            b.baseAddress.storeBytes(of: InternetChecksum.finish(Self.chainSum(b, initial: pseudo)).bigEndian, toByteOffset: 16, as: UInt16.self)
        }
        statistics.tcpSegmentsSent += 1
        if h.flags.contains(.rst) { statistics.tcpResetsSent += 1 }
        sendIPv4(b, to: dst, proto: IPProtocol.tcp, now: now)
    }

    /// The one's complement sum over a chain of buffers (RFC 1071 §2(B): a segment starting at an odd offset
    /// contributes its byte-swapped sum).
    static func chainSum(_ first: DemiBuffer, initial: UInt32) -> UInt32 {
        var acc = UInt64(initial)
        var odd = false
        var h: UnsafeMutablePointer<BufferHeader>? = first.header
        while let c = h {
            let seg = DemiBuffer(header: c)
            var s = InternetChecksum.fold(UInt64(InternetChecksum.sum(UnsafeRawBufferPointer(seg.bytes))))
            if odd { s = ((s & 0xFF) << 8) | (s >> 8) }
            acc &+= UInt64(s)
            if seg.count & 1 == 1 { odd.toggle() }
            h = c.pointee.next
        }
        return InternetChecksum.fold(acc)
    }

    func sendReset(answering h: TCPHeader, payloadLength: Int, endpoints: TCPEndpoints, now: Instant) {
        var r: TCPHeader
        if h.flags.contains(.ack) {
            r = TCPHeader(sourcePort: h.destinationPort, destinationPort: h.sourcePort, sequence: h.acknowledgment,
                          acknowledgment: TCPSequence(0), flags: [.rst], window: 0)
        } else {
            let len = payloadLength + (h.flags.contains(.syn) ? 1 : 0) + (h.flags.contains(.fin) ? 1 : 0)
            r = TCPHeader(sourcePort: h.destinationPort, destinationPort: h.sourcePort, sequence: TCPSequence(0),
                          acknowledgment: h.sequence + len, flags: [.rst, .ack], window: 0)
        }
        sendTCP(r, payload: nil, endpoints: endpoints, now: now)
    }

    /// Sends an IP packet whose payload (transport header first) is the chain `b`; fragments it if it exceeds the
    /// MTU. Takes over the chain's references.
    func sendIPv4(_ b: DemiBuffer, to dst: IPv4Address, proto: UInt8, now: Instant) {
        let length = b.chainCount
        ipIdentification &+= 1
        var h = IPv4Header(source: localIPv4, destination: dst, proto: proto, payloadLength: length)
        h.identification = ipIdentification
        guard let hop = nextHop(dst) else {
            statistics.unreachable += 1
            b.releaseChain()
            return
        }
        if IPv4Header.length + length > mtu {
            h.dontFragment = false
            _ = IPv4Fragmenter.fragment(payload: b, header: h, mtu: mtu, pool: pool) { f in
                sendPacket(f, nextHop: hop, now: now)
            }
            b.releaseChain()
            return
        }
        guard h.emit(prependingTo: b, checksumOffload: transmitOffload.contains(.ipv4)) else {
            b.releaseChain()
            statistics.framesDropped += 1
            return
        }
        sendPacket(b, nextHop: hop, now: now)
    }

    /// The next hop toward `dst`: itself on the local subnet, else the gateway (nil if none).
    func nextHop(_ dst: IPv4Address) -> IPv4Address? {
        if dst.isBroadcast || dst.rawValue & netmask == localIPv4.rawValue & netmask { return dst }
        return gateway
    }

    /// Sends an IP packet (header included) to `hop`, resolving its MAC first if needed.
    func sendPacket(_ b: DemiBuffer, nextHop hop: IPv4Address, now: Instant) {
        switch arp.resolve(hop, now: now) {
        case .resolved(let mac):
            transmitFrame(b, to: mac, now: now)
        case .send(let request):
            statistics.arpRequestsSent += 1
            queueForARP(b, hop)
            sendARP(request, to: .broadcast, now: now)
            armHousekeeping()
        case .waiting:
            queueForARP(b, hop)
        case .failed:
            b.releaseChain()
        }
    }

    func queueForARP(_ b: DemiBuffer, _ hop: IPv4Address) {
        if arpPending[hop, default: []].count >= configuration.arpPendingLimit {
            statistics.framesDropped += 1
            b.releaseChain()
            return
        }
        arpPending[hop, default: []].append(b)
    }

    func transmitFrame(_ b: DemiBuffer, to mac: MACAddress, now: Instant) {
        let eth = EthernetHeader(destination: mac, source: localMAC, etherType: EtherType.ipv4)
        guard eth.emit(prependingTo: b) else {
            b.releaseChain()
            statistics.framesDropped += 1
            return
        }
        statistics.framesSent += 1
        if !device.transmit(b, now: now) { statistics.framesDropped += 1 }
    }

    func sendARP(_ p: ARPPacket, to mac: MACAddress, now: Instant) {
        guard let b = pool.allocate(size: ARPPacket.length, headroom: 32) else { return }
        p.emit(b.bytes)
        let eth = EthernetHeader(destination: mac, source: localMAC, etherType: EtherType.arp)
        eth.emit(prependingTo: b)
        statistics.framesSent += 1
        if !device.transmit(b, now: now) { statistics.framesDropped += 1 }
    }

    /// An ICMP error about a received packet (RFC 792: its IP header and first 8 payload bytes), rate-limited.
    func sendICMPError(type: UInt8, code: UInt8, original ip: IPv4Header, payload: DemiBuffer, now: Instant) {
        guard !ip.destination.isBroadcast, ip.fragmentOffset == 0 else { return }
        let second = now.rawValue / 1_000_000_000
        if second != icmpSecond {
            icmpSecond = second
            icmpSent = 0
        }
        guard icmpSent < configuration.icmpErrorsPerSecond else {
            statistics.icmpErrorsRateLimited += 1
            return
        }
        icmpSent += 1
        let quoted = min(8, payload.count)
        let size = ICMPv4Header.length + IPv4Header.length + quoted
        guard let b = pool.allocate(size: size, headroom: Self.headerRoom) else { return }
        ip.emit(UnsafeMutableRawBufferPointer(rebasing: b.bytes[8..<28]))
        b.write(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(payload.bytes)[0..<quoted]), at: 28)
        ICMPv4Header(type: type, code: code).emit(b.bytes)
        statistics.icmpErrorsSent += 1
        sendIPv4(b, to: ip.source, proto: IPProtocol.icmp, now: now)
    }

    // MARK: - Sockets

    @inline(__always)
    func qd(_ i: Int) -> QDesc { QDesc(rawValue: Int32(i) + QDesc.base) }

    @inline(__always)
    func socketIndex(_ qd: QDesc) throws(Errno) -> Int {
        let i = Int(qd.rawValue) - Int(QDesc.base)
        guard i >= 0, i < sockets.count, sockets[i].inUse, sockets[i].visible, !sockets[i].detached else {
            throw .badDescriptor
        }
        return i
    }

    func addSocket(_ s: Socket) -> Int {
        var s = s
        s.inUse = true
        if freeSocket >= 0 {
            let i = freeSocket
            freeSocket = sockets[i].nextFree
            sockets[i] = s
            return i
        }
        sockets.append(s)
        return sockets.count - 1
    }

    func releaseSocket(_ i: Int) {
        if sockets[i].hasConnection { statistics.add(connection(i).pointee.statistics) }
        sockets[i].tcp?.destroy()
        sockets[i].datagrams?.destroy()
        if sockets[i].timer != Operation.none {
            scheduler.cancelTimer(sockets[i].timer)
            scheduler.endBackground(sockets[i].timer)
        }
        let port = sockets[i].local.port
        if sockets[i].type == .datagram, port != 0, udpPorts[port] == i { udpPorts[port] = nil }
        if sockets[i].portCounted, let n = tcpPorts[port] { tcpPorts[port] = n > 1 ? n - 1 : nil }
        if sockets[i].state == .listening, tcpListeners[port] == i { tcpListeners[port] = nil }
        sockets[i] = Socket()
        sockets[i].nextFree = freeSocket
        freeSocket = i
    }

    /// Creates the socket of a new connection (passive: from a listener's SYN; active: `connect`).
    func newConnection(_ key: TCPEndpoints, passive: Bool, now: Instant) throws(Errno) -> Int {
        var s = Socket()
        s.type = .stream
        s.visible = !passive
        let i = addSocket(s)
        do { try attachConnection(i, key, now: now) } catch {
            releaseSocket(i)
            throw error
        }
        return i
    }

    /// RFC 6528: ISN = M + F(4-tuple, secret), M a 4 µs clock, F a keyed hash.
    func initialSequence(_ key: TCPEndpoints, now: Instant) -> TCPSequence {
        var hasher = Hasher()
        hasher.combine(isnKey.0)
        hasher.combine(key)
        hasher.combine(isnKey.1)
        let f = UInt32(truncatingIfNeeded: hasher.finalize())
        let m = UInt32(truncatingIfNeeded: now.rawValue / 4000)
        return TCPSequence(m &+ f)
    }

    func allocatePort(stream: Bool) throws(Errno) -> UInt16 {
        let lo = configuration.ephemeralPorts.lowerBound, hi = configuration.ephemeralPorts.upperBound
        let span = Int(hi - lo) + 1
        for _ in 0..<span {
            let p = nextEphemeral
            nextEphemeral = p >= hi ? lo : p + 1
            if stream ? (tcpPorts[p] == nil && tcpListeners[p] == nil) : udpPorts[p] == nil { return p }
        }
        throw .addressInUse
    }
}

extension StackLibOS {
    /// Every TCP connection the stack still tracks, with its state (for tools and tests).
    public var connectionStates: [(TCPEndpoints, TCPState)] {
        sockets.indices.compactMap { i in
            guard sockets[i].inUse, let t = sockets[i].tcp else { return nil }
            return (t.endpoints, t.state)
        }
    }

    /// The counters of the TCP connection behind `qd` (nil for other sockets or a bad descriptor).
    public func tcpStatistics(_ qd: QDesc) -> TCPConnectionStatistics? {
        guard let i = try? socketIndex(qd) else { return nil }
        return sockets[i].tcp?.statistics
    }

    /// The stack's counters with the live connections' retransmissions added (closed ones are counted already).
    public var totals: StackStatistics {
        var t = statistics
        for i in sockets.indices where sockets[i].inUse && sockets[i].hasConnection {
            t.add(connection(i).pointee.statistics)
        }
        return t
    }

    /// Sockets in use (application-held, accepted-pending, or lingering connections).
    public var socketCount: Int { sockets.indices.filter { sockets[$0].inUse }.count }
}

/// One socket of a `StackLibOS` (a table entry).
struct StackSocket {
    var inUse = false
    /// False for a passive connection not accepted yet (its descriptor is not the application's).
    var visible = false
    var type: SocketType = .datagram
    var state: SocketState = .unbound
    var local = SocketAddressV4.unspecified
    var remote: SocketAddressV4?
    var tcp: TCPConnection?
    /// `tcp != nil`, kept apart: comparing the optional with nil copies the whole connection.
    var hasConnection = false
    var timer: UInt32 = Operation.none
    /// When `timer` is armed to fire (raw nanoseconds; `Int64.max`: not armed). Timers are lazy: a deadline that
    /// moves later leaves the timer where it is (it fires early, finds nothing due, and is armed again), so the
    /// delayed-ACK and retransmission deadlines that every segment pushes back cost no timer-queue work.
    var timerAt = Int64.max
    var pops = OperationList()
    var pushes = OperationList()
    var accepts = OperationList()
    var connectOp: UInt32 = Operation.none
    var datagrams: BufferRing?
    var backlog = 0
    var acceptQueue: [Int] = []
    var halfOpen = 0
    var listener = -1
    /// The application closed it; the connection finishes on its own and then frees the slot.
    var detached = false
    /// This socket holds a count in `tcpPorts` (bound or connected by the application).
    var portCounted = false
    var noDelay = true
    var keepAlive = false
    var nextFree = -1
}

/// What a connection's segments go through: the stack, as a non-generic base class, so that this sink (and the
/// generic TCP calls that take it) need no per-device metadata, and a segment costs one class-method call (an
/// existential here cost a retain and a release per segment).
public class StackTransmitter {
    init() {}
    func sendTCP(_ h: TCPHeader, payload: DemiBuffer?, endpoints: TCPEndpoints, now: Instant) {
        preconditionFailure("StackLibOS overrides sendTCP")
    }
}

/// The sink through which connections send segments.
struct StackOutput: TCPSegmentSink {
    let stack: Unmanaged<StackTransmitter>
    let now: Instant
    @inline(__always)
    init(stack: StackTransmitter, now: Instant) {
        self.stack = .passUnretained(stack)
        self.now = now
    }
    @inline(__always)
    mutating func transmit(_ header: TCPHeader, payload: DemiBuffer?, endpoints: TCPEndpoints) {
        let now = now
        stack._withUnsafeGuaranteedRef { $0.sendTCP(header, payload: payload, endpoints: endpoints, now: now) }
    }
}
