import DemiBuffers
import DemiCore
import DemiDevices
import DemiInet
import DemiRuntime
import DemiWire

/// The PDPIX calls. Errors follow the contract in docs/ERRNO.md (the same table catnap uses).
extension StackLibOS {
    public func socket(domain: AddressFamily, type: SocketType) throws(Errno) -> QDesc {
        guard domain == .inet else { throw .addressFamilyNotSupported }
        var s = Socket()
        s.type = type
        s.visible = true
        return qd(addSocket(s))
    }

    public func bind(_ qd: QDesc, to address: SocketAddressV4) throws(Errno) {
        let i = try socketIndex(qd)
        if let e = SocketRules.bind(sockets[i].type, sockets[i].state) { throw e }
        guard address.address.isUnspecified || address.address == localIPv4 else {
            throw .addressNotAvailable
        }
        let stream = sockets[i].type == .stream
        var port = address.port
        if port == 0 {
            port = try allocatePort(stream: stream)
        } else if stream ? (tcpPorts[port] != nil || tcpListeners[port] != nil) : udpPorts[port] != nil {
            throw .addressInUse
        }
        if stream {
            tcpPorts[port, default: 0] += 1
            sockets[i].portCounted = true
        } else {
            udpPorts[port] = i
        }
        sockets[i].local = SocketAddressV4(localIPv4, port)
        sockets[i].state = .bound
    }

    public func listen(_ qd: QDesc, backlog: Int) throws(Errno) {
        let i = try socketIndex(qd)
        if let e = SocketRules.listen(sockets[i].type, sockets[i].state, backlog: backlog) { throw e }
        sockets[i].backlog = min(backlog, 4096)
        sockets[i].state = .listening
        tcpListeners[sockets[i].local.port] = i
    }

    public func accept(_ qd: QDesc) throws(Errno) -> QToken {
        let i = try socketIndex(qd)
        if let e = SocketRules.accept(sockets[i].type, sockets[i].state) { throw e }
        let qt = try scheduler.spawn(Operation(code: .accept, qd: qd))
        sockets[i].accepts.append(UInt32(truncatingIfNeeded: qt.rawValue), scheduler)
        completeAccepts(i)
        return qt
    }

    public func connect(_ qd: QDesc, to address: SocketAddressV4) throws(Errno) -> QToken {
        let i = try socketIndex(qd)
        if let e = SocketRules.connect(sockets[i].type, sockets[i].state) { throw e }
        guard !address.address.isUnspecified, address.port != 0, !address.address.isMulticast else {
            throw .invalidArgument
        }
        guard nextHop(address.address) != nil else { throw .networkUnreachable }
        let now = Instant.now()
        if sockets[i].type == .datagram {
            if sockets[i].state == .unbound { try bind(qd, to: .unspecified) }
            sockets[i].remote = address
            sockets[i].state = .connected
            return try scheduler.spawnCompleted(.connect, qd: qd)
        }
        if sockets[i].state == .unbound {
            let port = try allocatePort(stream: true)
            tcpPorts[port, default: 0] += 1
            sockets[i].portCounted = true
            sockets[i].local = SocketAddressV4(localIPv4, port)
        }
        let key = TCPEndpoints(local: sockets[i].local, remote: address)
        guard connections[key] == nil else { throw .addressInUse }
        let qt = try scheduler.spawn(Operation(code: .connect, qd: qd))
        do {
            try attachConnection(i, key, now: now)
        } catch {
            fail(UInt32(truncatingIfNeeded: qt.rawValue), error)
            return qt
        }
        sockets[i].remote = address
        sockets[i].state = .connecting
        sockets[i].connectOp = UInt32(truncatingIfNeeded: qt.rawValue)
        var out = Output(stack: self, now: now)
        connection(i).pointee.connect(now: now, sink: &out)
        armConnectionTimer(i)
        device.flush(now: now)
        return qt
    }

    public func close(_ qd: QDesc) throws(Errno) {
        let i = try socketIndex(qd)
        let now = Instant.now()
        sockets[i].pops.removeAll(scheduler) { fail($0, .canceled) }
        sockets[i].accepts.removeAll(scheduler) { fail($0, .canceled) }
        sockets[i].pushes.removeAll(scheduler) { fail($0, .canceled) }
        if sockets[i].connectOp != Operation.none {
            fail(sockets[i].connectOp, .canceled)
            sockets[i].connectOp = Operation.none
        }
        if sockets[i].state == .listening {
            // Reset the connections nobody accepted.
            for j in sockets.indices where sockets[j].inUse && sockets[j].listener == i && !sockets[j].visible {
                var out = Output(stack: self, now: now)
                sockets[j].tcp?.abort(now: now, sink: &out)
                if let tcp = sockets[j].tcp, connections[tcp.endpoints] == j {
                    connections[tcp.endpoints] = nil
                    lastConnection = -1
                }
                releaseSocket(j)
            }
            releaseSocket(i)
            device.flush(now: now)
            return
        }
        if sockets[i].hasConnection {
            sockets[i].detached = true
            var out = Output(stack: self, now: now)
            connection(i).pointee.close(now: now, sink: &out)
            if connection(i).pointee.state == .closed {
                connectionClosed(i)
            } else {
                armConnectionTimer(i)
            }
            device.flush(now: now)
            return
        }
        releaseSocket(i)
    }

    public func asyncClose(_ qd: QDesc) throws(Errno) -> QToken {
        try close(qd)
        return try scheduler.spawnCompleted(.close, qd: qd)
    }

    @_specialize(exported: true, where Device == InMemoryLink.Endpoint)
    @_specialize(exported: true, where Device == FaultInjector<InMemoryLink.Endpoint>)
    @_specialize(exported: true, where Device == PacketSocketDevice)
    public func push(_ qd: QDesc, _ sga: ScatterGatherArray) throws(Errno) -> QToken {
        guard sga.head != nil, sga.isValid else { throw .invalidArgument }
        let i = try socketIndex(qd)
        if sockets[i].type == .datagram {
            if let e = SocketRules.push(.datagram, sockets[i].state) { throw e }
            if let e = SocketRules.pushTo(.datagram, sockets[i].state) { throw e }
            return try pushDatagram(i, qd, sga, to: sockets[i].remote.unsafelyUnwrapped)
        }
        return try pushStream(i, qd, sga)
    }

    /// `push` on a stream socket (`sga` checked, `i` its index).
    func pushStream(_ i: Int, _ qd: QDesc, _ sga: ScatterGatherArray) throws(Errno) -> QToken {
        if sockets[i].hasConnection, let e = connection(i).pointee.error { throw e }
        if let e = SocketRules.push(.stream, sockets[i].state) { throw e }
        guard sockets[i].hasConnection, connection(i).pointee.canSend else { throw .brokenPipe }
        let qt = try scheduler.spawn(Operation(code: .push, qd: qd))
        let t = UInt32(truncatingIfNeeded: qt.rawValue)
        let now = Instant.now()
        var target: UInt64 = 0
        var seg = sga.head
        while let s = seg {
            seg = s.nextSegment
            s.retain()
            target = connection(i).pointee.enqueue(s)
        }
        scheduler.operation(t).pointee.aux = target
        sockets[i].pushes.append(t, scheduler)
        var out = Output(stack: self, now: now)
        connection(i).pointee.output(now: now, sink: &out)
        completePushes(i)
        armConnectionTimer(i)
        device.flush(now: now)
        return qt
    }

    @_specialize(exported: true, where Device == InMemoryLink.Endpoint)
    @_specialize(exported: true, where Device == FaultInjector<InMemoryLink.Endpoint>)
    @_specialize(exported: true, where Device == PacketSocketDevice)
    public func pushTo(_ qd: QDesc, _ sga: ScatterGatherArray, to address: SocketAddressV4) throws(Errno) -> QToken {
        guard sga.head != nil, sga.isValid else { throw .invalidArgument }
        let i = try socketIndex(qd)
        if let e = SocketRules.pushTo(sockets[i].type, sockets[i].state) { throw e }
        if sockets[i].type == .stream { return try pushStream(i, qd, sga) }
        return try pushDatagram(i, qd, sga, to: address)
    }

    /// `pushTo` on a datagram socket (`sga` checked, `i` its index, the state allows it).
    func pushDatagram(_ i: Int, _ qd: QDesc, _ sga: ScatterGatherArray, to address: SocketAddressV4) throws(Errno)
        -> QToken {
        let head = sga.head.unsafelyUnwrapped
        guard !address.address.isUnspecified, address.port != 0 else { throw .invalidArgument }
        let length = sga.count
        guard length <= 65_507 else { throw .messageTooLong }
        guard nextHop(address.address) != nil else { throw .networkUnreachable }
        if sockets[i].state == .unbound { try bind(qd, to: .unspecified) }
        let qt = try scheduler.spawnCompleted(.push, qd: qd)
        guard let b = pool.allocate(size: UDPHeader.size, headroom: Self.headerRoom) else { throw .noMemory }
        sga.retainAll()
        b.header.pointee.next = head.header
        let src = localIPv4
        let u = UDPHeader(sourcePort: sockets[i].local.port, destinationPort: address.port, payloadLength: length)
        // The header alone (checksum left zero), then the checksum over the whole chain.
        u.emit(b.bytes, source: src, destination: address.address, checksumOffload: true)
        // A datagram that will be fragmented gets its checksum here even when the device offloads UDP checksums:
        // the device sees fragments, and the checksum spans them all.
        if !transmitOffload.contains(.udp) || IPv4Header.length + UDPHeader.size + length > mtu {
            let pseudo = InternetChecksum.pseudoHeader(source: src, destination: address.address,
                                                      protocol: IPProtocol.udp, length: UDPHeader.size + length)
            let c = InternetChecksum.finish(Self.chainSum(b, initial: pseudo))
            b.baseAddress.storeBytes(of: (c == 0 ? 0xFFFF : c).bigEndian, toByteOffset: 6, as: UInt16.self)
        }
        statistics.udpDatagramsSent += 1
        let now = Instant.now()
        sendIPv4(b, to: address.address, proto: IPProtocol.udp, now: now)
        device.flush(now: now)
        return qt
    }

    @_specialize(exported: true, where Device == InMemoryLink.Endpoint)
    @_specialize(exported: true, where Device == FaultInjector<InMemoryLink.Endpoint>)
    @_specialize(exported: true, where Device == PacketSocketDevice)
    public func pop(_ qd: QDesc) throws(Errno) -> QToken {
        let i = try socketIndex(qd)
        if sockets[i].type == .datagram {
            if let e = SocketRules.pop(.datagram, sockets[i].state) { throw e }
            let qt = try scheduler.spawn(Operation(code: .pop, qd: qd))
            let t = UInt32(truncatingIfNeeded: qt.rawValue)
            sockets[i].pops.append(t, scheduler)
            if let b = sockets[i].datagrams?.removeFirst() {
                let tag = UnsafeRawPointer(b.baseAddress - 8)
                let from = SocketAddressV4(IPv4Address(rawValue: tag.loadUnaligned(as: UInt32.self)),
                                           tag.loadUnaligned(fromByteOffset: 4, as: UInt16.self))
                completePop(i, t, ScatterGatherArray(head: b, address: from))
            }
            return qt
        }
        if let e = SocketRules.pop(.stream, sockets[i].state) {
            // A connection that failed reports why; one that closed reads end of file.
            guard sockets[i].hasConnection else { throw e }
        }
        let qt = try scheduler.spawn(Operation(code: .pop, qd: qd))
        sockets[i].pops.append(UInt32(truncatingIfNeeded: qt.rawValue), scheduler)
        if sockets[i].hasConnection && (connection(i).pointee.isReadable || connection(i).pointee.state == .closed) {
            completePops(i, now: Instant.now())
            armConnectionTimer(i)
        }
        return qt
    }

    public func localAddress(_ qd: QDesc) throws(Errno) -> SocketAddressV4 {
        let i = try socketIndex(qd)
        return sockets[i].local
    }

    public func peerAddress(_ qd: QDesc) throws(Errno) -> SocketAddressV4 {
        let i = try socketIndex(qd)
        guard let r = sockets[i].remote, sockets[i].state == .connected || sockets[i].state == .connecting else {
            throw .notConnected
        }
        return r
    }

    public func setOption(_ qd: QDesc, _ option: SocketOption) throws(Errno) {
        let i = try socketIndex(qd)
        switch option {
        case .noDelay(let on):
            guard sockets[i].type == .stream else { throw .notSupported }
            sockets[i].noDelay = on
            sockets[i].tcp?.setNagle(!on)
        case .keepAlive(let on):
            sockets[i].keepAlive = on
            sockets[i].tcp?.setKeepalive(on ? configuration.tcp.keepalive ?? .seconds(7200) : nil, now: Instant.now())
            armConnectionTimer(i)
        case .linger(let s):
            if let s, s < 0 { throw .invalidArgument }
        case .reuseAddress:
            break
        }
    }

    public func option(_ qd: QDesc, _ name: SocketOptionName) throws(Errno) -> SocketOption {
        let i = try socketIndex(qd)
        switch name {
        case .noDelay:
            guard sockets[i].type == .stream else { throw .notSupported }
            return .noDelay(sockets[i].noDelay)
        case .keepAlive: return .keepAlive(sockets[i].keepAlive)
        case .linger: return .linger(seconds: nil)
        case .reuseAddress: return .reuseAddress(false)
        }
    }

    /// Attaches a new connection to socket `i` (active open) and registers it for demultiplexing.
    func attachConnection(_ i: Int, _ key: TCPEndpoints, now: Instant) throws(Errno) {
        var config = configuration.tcp
        config.nagle = !sockets[i].noDelay
        if sockets[i].keepAlive && config.keepalive == nil { config.keepalive = .seconds(7200) }
        let isn = initialSequence(key, now: now)
        let timer = try scheduler.spawnBackground(tag: Self.connectionTag | UInt64(i))
        sockets[i].timer = timer
        sockets[i].timerAt = .max
        sockets[i].hasConnection = true
        sockets[i].tcp = TCPConnection(endpoints: key, configuration: config, pool: pool, mtu: mtu,
                                       initialSequence: isn,
                                       timestampOffset: UInt32(truncatingIfNeeded: isn.rawValue &* 2_654_435_761))
        connections[key] = i
    }
}
