import DemiBuffers
import DemiCore
import DemiWire

/// TCP connection states (RFC 9293 §3.3.2). LISTEN belongs to listeners, not connections.
public enum TCPState: UInt8, Sendable, CustomStringConvertible {
    case closed, synSent, synReceived, established, finWait1, finWait2, closeWait, closing, lastAck, timeWait

    public var description: String {
        switch self {
        case .closed: "CLOSED"
        case .synSent: "SYN-SENT"
        case .synReceived: "SYN-RECEIVED"
        case .established: "ESTABLISHED"
        case .finWait1: "FIN-WAIT-1"
        case .finWait2: "FIN-WAIT-2"
        case .closeWait: "CLOSE-WAIT"
        case .closing: "CLOSING"
        case .lastAck: "LAST-ACK"
        case .timeWait: "TIME-WAIT"
        }
    }

    /// States in which both sides' sequence numbers are known.
    public var isSynchronized: Bool { rawValue >= TCPState.established.rawValue }
}

/// The two ends of a connection.
public struct TCPEndpoints: Hashable, Sendable, CustomStringConvertible {
    public var local: SocketAddressV4
    public var remote: SocketAddressV4
    public init(local: SocketAddressV4, remote: SocketAddressV4) {
        self.local = local
        self.remote = remote
    }
    public var description: String { "\(local)-\(remote)" }
}

/// Where a connection's segments go. The stack prepends the IP and Ethernet headers and sends the frame; a test
/// collects the segments. Generic (not an existential), so each call is direct.
public protocol TCPSegmentSink {
    /// Sends one segment. `payload` (a chain of buffers, or nil) comes with one reference that the sink takes over.
    mutating func transmit(_ header: TCPHeader, payload: DemiBuffer?, endpoints: TCPEndpoints)
}

/// What changed in a connection during a call, for the layer that completes the application's operations.
public struct TCPEvents: OptionSet, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// The handshake completed.
    public static let established = TCPEvents(rawValue: 1)
    /// In-order data (or the peer's FIN) can be read.
    public static let readable = TCPEvents(rawValue: 2)
    /// Sent data was acknowledged (pushes may complete).
    public static let acknowledged = TCPEvents(rawValue: 4)
    /// The connection failed (`error` says why): reset, refused, timed out.
    public static let failed = TCPEvents(rawValue: 8)
    /// The connection reached CLOSED and can be forgotten.
    public static let closed = TCPEvents(rawValue: 16)
}

/// Counters of one connection.
public struct TCPConnectionStatistics: Sendable {
    public var segmentsSent = 0
    public var segmentsReceived = 0
    public var retransmissions = 0
    public var timeouts = 0
    public var fastRetransmits = 0
    public var duplicateACKs = 0
    public var outOfOrderSegments = 0
    public var droppedSegments = 0
    public var challengeACKs = 0
    /// Retransmissions found spurious by their timestamps (RFC 3522), whose congestion response was undone.
    public var spuriousRetransmissions = 0
    /// Recoveries started by the reordering window (RACK-style) rather than three duplicate ACKs.
    public var reorderWindowRecoveries = 0
    /// Retransmissions found lost (SACKed data sent after them) and sent again before the timeout.
    public var lostRetransmissions = 0
    /// Tail loss probes sent.
    public var tailLossProbes = 0
    public init() {}
}

/// One TCP connection: the state machine of RFC 9293 with window scaling and timestamps (RFC 7323), SACK (RFC 2018)
/// with SACK-based loss recovery (RFC 6675), NewReno (RFC 6582) without SACK, limited transmit (RFC 3042), RTO per
/// RFC 6298, the RFC 5961 checks, delayed ACK, Nagle, zero-window probes and keepalive.
///
/// It does no I/O and reads no clock: every call takes `now`, segments leave through a ``TCPSegmentSink``, and
/// ``nextDeadline`` tells when ``onTimer(now:sink:)`` must run.
///
/// Zero copy: pushed buffers are queued by reference and sent as views; a buffer stays referenced until its bytes
/// are acknowledged. Received in-order payloads are queued as they arrived (the frame's buffer, headers trimmed).
///
/// A value type over owned storage: keep exactly one copy, mutate it in place, call ``destroy()`` once.
public struct TCPConnection {
    public let endpoints: TCPEndpoints
    public private(set) var configuration: TCPConfiguration
    let pool: BufferPool
    public private(set) var state: TCPState = .closed
    public private(set) var error: Errno?
    public private(set) var statistics = TCPConnectionStatistics()

    // Send sequence space.
    public private(set) var initialSendSequence: TCPSequence
    public private(set) var sendUnacknowledged: TCPSequence
    public private(set) var sendNext: TCPSequence
    /// The highest sequence number sent so far (sendNext goes back below it after a timeout).
    public private(set) var sendMax: TCPSequence
    var sendWindow = 0
    var maxSendWindow = 0
    var sendWL1 = TCPSequence(0)
    var sendWL2 = TCPSequence(0)
    var sendShift: UInt8 = 0

    // Receive sequence space.
    public private(set) var initialReceiveSequence = TCPSequence(0)
    public private(set) var receiveNext = TCPSequence(0)
    var receiveShift: UInt8 = 0
    /// The right edge of the window we advertised last (it never moves left: RFC 9293 §3.8.6.2.2).
    var advertisedEdge = TCPSequence(0)

    // Negotiated.
    public private(set) var sendMSS = 536
    var peerMSS = 536
    let localMSS: Int
    var sackOK = false
    var timestampsOK = false
    var tsRecent: UInt32 = 0
    var tsOffset: UInt32
    var lastACKSent = TCPSequence(0)

    // Send queue: buffers referenced until acknowledged. `sendBase` is the sequence number of the first byte of
    // `sendQueue[0]`.
    var sendQueue = BufferRing(capacity: 64)
    var sendBase = TCPSequence(0)
    var sendQueued = 0
    var cursorIndex = 0
    var cursorSeq = TCPSequence(0)
    /// Bytes pushed by the application, and acknowledged, since the start (push completion compares these).
    public private(set) var bytesPushed: UInt64 = 0
    public private(set) var bytesAcknowledged: UInt64 = 0
    @usableFromInline var finQueued = false
    var finSent = false
    var finSequence = TCPSequence(0)

    // Receive queue.
    @usableFromInline var receiveQueue = BufferRing(capacity: 64)
    public private(set) var receiveQueued = 0
    public private(set) var finReceived = false
    var outOfOrder: OutOfOrderQueue
    var unackedSegments = 0
    var ackNow = false

    // Loss recovery and congestion control.
    public private(set) var congestion: CongestionController
    var rto: RetransmissionTimeoutEstimator
    var scoreboard = SACKScoreboard()
    var duplicateACKs = 0
    var inRecovery = false
    var recoveryPoint = TCPSequence(0)
    var highRetransmitted = TCPSequence(0)
    var inflation = 0
    var retransmitCount = 0
    var rttTiming = false
    var rttSequence = TCPSequence(0)
    var rttStart = Instant.zero

    // Timers.
    @usableFromInline var retransmitDeadline: Instant?
    @usableFromInline var delayedACKDeadline: Instant?
    @usableFromInline var persistDeadline: Instant?
    var persistBackoff = 0
    @usableFromInline var keepaliveDeadline: Instant?
    var keepaliveSent = 0
    @usableFromInline var timeWaitDeadline: Instant?
    var lastChallengeSecond: Int64 = -1
    var challengesThisSecond = 0

    /// A connection in CLOSED; `connect` or `accept` starts it.
    /// - Parameters:
    ///   - mtu: the IP MTU of the route (our MSS is derived from it unless configured).
    ///   - initialSequence: the ISN (RFC 6528; the stack computes it).
    public init(endpoints: TCPEndpoints, configuration: TCPConfiguration, pool: BufferPool, mtu: Int,
                initialSequence: TCPSequence, timestampOffset: UInt32 = 0) {
        self.endpoints = endpoints
        self.configuration = configuration
        self.pool = pool
        localMSS = configuration.maximumSegmentSize ?? max(88, mtu - 40)
        initialSendSequence = initialSequence
        sendUnacknowledged = initialSequence
        sendNext = initialSequence
        sendMax = initialSequence
        sendBase = initialSequence + 1
        cursorSeq = initialSequence + 1
        tsOffset = timestampOffset
        outOfOrder = OutOfOrderQueue()
        congestion = CongestionController(algorithm: configuration.congestionControl, mss: 536)
        rto = RetransmissionTimeoutEstimator(configuration: configuration.retransmission)
    }

    /// Releases every buffer the connection holds.
    public mutating func destroy() {
        sendQueue.destroy()
        receiveQueue.destroy()
        outOfOrder.destroy()
    }

    // MARK: - Application calls

    /// Active open: sends a SYN.
    public mutating func connect<S: TCPSegmentSink>(now: Instant, sink: inout S) {
        precondition(state == .closed)
        state = .synSent
        sendSYN(ack: false, now: now, sink: &sink)
        sendNext = initialSendSequence + 1
        sendMax = sendNext
        retransmitDeadline = retransmissionDeadline(now)
    }

    /// Passive open: `syn` arrived at a listener; answers with a SYN-ACK.
    public mutating func accept<S: TCPSegmentSink>(syn: TCPHeader, now: Instant, sink: inout S) {
        precondition(state == .closed)
        state = .synReceived
        initialReceiveSequence = syn.sequence
        receiveNext = syn.sequence + 1
        takeSYNOptions(syn.options)
        sendWindow = Int(syn.window)  // never scaled in a SYN
        maxSendWindow = sendWindow
        sendWL1 = syn.sequence
        sendWL2 = initialSendSequence
        sendSYN(ack: true, now: now, sink: &sink)
        sendNext = initialSendSequence + 1
        sendMax = sendNext
        retransmitDeadline = retransmissionDeadline(now)
    }

    /// Queues `buffer` for sending (the connection takes over the caller's reference) and returns the total bytes
    /// pushed so far: the push is done once ``bytesAcknowledged`` reaches it. Call ``output(now:sink:)`` after.
    public mutating func enqueue(_ buffer: DemiBuffer) -> UInt64 {
        let n = buffer.count
        if n == 0 {
            buffer.release()
            return bytesPushed
        }
        sendQueue.append(buffer)
        sendQueued += n
        bytesPushed += UInt64(n)
        return bytesPushed
    }

    /// Turns Nagle's algorithm on or off (`TCP_NODELAY` is off).
    public mutating func setNagle(_ on: Bool) { configuration.nagle = on }

    /// Turns keepalive on (probes after `idle`) or off (nil).
    public mutating func setKeepalive(_ idle: Duration?, now: Instant) {
        configuration.keepalive = idle
        armKeepalive(now: now)
    }

    /// True if the application may still push (no FIN queued, state allows data).
    @inlinable @inline(__always)
    public var canSend: Bool {
        switch state {
        case .established, .closeWait, .synSent, .synReceived: !finQueued
        default: false
        }
    }

    /// Takes the next in-order received buffer (the caller owns the reference). Call ``output(now:sink:)`` after, so
    /// a window update goes out when the read opened the window.
    public mutating func read() -> DemiBuffer? {
        guard let b = receiveQueue.removeFirst() else { return nil }
        receiveQueued -= b.count
        return b
    }

    /// After the application read: the ACK that reopens the window, if one is owed (`output` would send the same,
    /// but reading changes nothing else it looks at).
    public mutating func sendWindowUpdateIfDue<S: TCPSegmentSink>(now: Instant, sink: inout S) {
        guard state.isSynchronized, ackNow || windowUpdateDue else { return }
        sendACK(now: now, sink: &sink)
    }

    /// True if a pop would return something now: data, or end of file.
    @inlinable @inline(__always)
    public var isReadable: Bool { !receiveQueue.isEmpty || finReceived }

    /// Starts an orderly close: a FIN goes after the queued data.
    public mutating func close<S: TCPSegmentSink>(now: Instant, sink: inout S) {
        switch state {
        case .closed:
            return
        case .synSent:
            state = .closed
            return
        case .synReceived, .established:
            finQueued = true
            state = .finWait1
        case .closeWait:
            finQueued = true
            state = .lastAck
        default:
            return
        }
        output(now: now, sink: &sink)
    }

    /// Aborts: sends a reset (in synchronized states) and goes to CLOSED.
    public mutating func abort<S: TCPSegmentSink>(now: Instant, sink: inout S) {
        if state.isSynchronized || state == .synReceived {
            var h = header(sequence: sendMax, flags: [.rst, .ack], now: now)
            h.options = TCPOptions()
            emit(h, payload: nil, sink: &sink)
        }
        enterClosed()
    }

    // MARK: - Segment arrival (RFC 9293 §3.10.7)

    /// Processes a segment for this connection. `payload` carries the segment's data (one reference, taken over).
    public mutating func receive<S: TCPSegmentSink>(_ seg: TCPHeader, payload: DemiBuffer, now: Instant,
                                                    sink: inout S) -> TCPEvents {
        statistics.segmentsReceived += 1
        var events: TCPEvents = []
        if state == .synSent { return receiveInSynSent(seg, payload: payload, now: now, sink: &sink) }
        if state == .closed {
            payload.release()
            return []
        }
        let len = payload.count
        let segLen = len + (seg.flags.contains(.syn) ? 1 : 0) + (seg.flags.contains(.fin) ? 1 : 0)

        // PAWS (RFC 7323 §5.3).
        if timestampsOK, let ts = seg.options.timestamp, !seg.flags.contains(.rst) {
            if Int32(bitPattern: ts.value &- tsRecent) < 0 {
                statistics.droppedSegments += 1
                payload.release()
                sendACK(now: now, sink: &sink)
                return []
            }
        }

        // The peer retransmitted its SYN: our SYN-ACK was lost; send it again (it lies left of RCV.NXT, so the
        // sequence check below would answer with a bare ACK, which a peer in SYN-SENT drops).
        if state == .synReceived && seg.flags.contains(.syn) && !seg.flags.contains(.ack)
            && !seg.flags.contains(.rst) && seg.sequence == initialReceiveSequence {
            payload.release()
            sendSYN(ack: true, now: now, sink: &sink)
            return []
        }

        // Sequence number check.
        let window = receiveWindow
        if !acceptable(seg.sequence, length: segLen, window: window) {
            payload.release()
            statistics.droppedSegments += 1
            if !seg.flags.contains(.rst) { sendACK(now: now, sink: &sink) }
            if state == .timeWait && seg.flags.contains(.fin) && !seg.flags.contains(.rst)
                && seg.sequence + len + 1 == receiveNext {
                // The peer's FIN again: our ACK was lost; restart the 2 MSL timer (RFC 9293 §3.10.7.4, TIME-WAIT).
                timeWaitDeadline = now + configuration.timeWait
            }
            return []
        }

        // RST (RFC 5961 §3.2): only an exact match resets; an in-window one draws a challenge ACK.
        if seg.flags.contains(.rst) {
            payload.release()
            if seg.sequence == receiveNext {
                if state == .synReceived {
                    error = .connectionRefused
                } else if state == .closing || state == .lastAck || state == .timeWait {
                    enterClosed()
                    return [.closed]
                } else {
                    error = .connectionReset
                }
                enterClosed()
                return [.failed, .closed]
            }
            challengeACK(now: now, sink: &sink)
            return []
        }

        // SYN in a synchronized state (RFC 5961 §4.2): challenge ACK.
        if seg.flags.contains(.syn) {
            payload.release()
            challengeACK(now: now, sink: &sink)
            return []
        }

        guard seg.flags.contains(.ack) else {
            payload.release()
            return []
        }

        // Timestamps: remember the peer's (RFC 7323 §4.3).
        if timestampsOK, let ts = seg.options.timestamp, !(seg.sequence > lastACKSent) {
            tsRecent = ts.value
        }

        if state == .synReceived {
            guard sendUnacknowledged < seg.acknowledgment && !(sendNext < seg.acknowledgment) else {
                payload.release()
                sendReset(for: seg, sink: &sink)
                return []
            }
            if retransmitCount > 0 { synTimedOut() }
            state = .established
            events.insert(.established)
            sendWindow = Int(seg.window) << Int(sendShift)
            maxSendWindow = max(maxSendWindow, sendWindow)
            sendWL1 = seg.sequence
            sendWL2 = seg.acknowledgment
        }

        // ACK processing.
        let ack = seg.acknowledgment
        if sendMax < ack {
            // Acknowledges something not yet sent (RFC 5961 §5.2): ACK and drop.
            payload.release()
            sendACK(now: now, sink: &sink)
            return events
        }
        if ack < sendUnacknowledged - maxSendWindow - 1 {
            payload.release()
            challengeACK(now: now, sink: &sink)
            return events
        }
        events.formUnion(processACK(seg, payloadLength: len, now: now))
        if state == .closed { 
            payload.release()
            return events
        }

        // Data.
        if len > 0 {
            if state == .established || state == .finWait1 || state == .finWait2 {
                if receiveData(seg, payload: payload, now: now) { events.insert(.readable) }
            } else {
                payload.release()
            }
        } else {
            payload.release()
        }

        // FIN (in order only; an early FIN waits in the out-of-order queue).
        if seg.flags.contains(.fin) {
            let finSeq = seg.sequence + len
            if finSeq == receiveNext && !finReceived {
                acceptFIN(now: now)
                events.insert(.readable)
            } else if receiveNext < finSeq {
                outOfOrder.finSequence = finSeq
                ackNow = true
            }
        }
        if state == .timeWait && seg.flags.contains(.fin) {
            timeWaitDeadline = now + configuration.timeWait
            ackNow = true
        }
        if keepaliveDeadline != nil || configuration.keepalive != nil { armKeepalive(now: now) }

        output(now: now, sink: &sink)
        if state == .closed { events.insert(.closed) }
        return events
    }

    mutating func receiveInSynSent<S: TCPSegmentSink>(_ seg: TCPHeader, payload: DemiBuffer, now: Instant,
                                                      sink: inout S) -> TCPEvents {
        defer { payload.release() }
        if seg.flags.contains(.ack) {
            let ack = seg.acknowledgment
            if !(initialSendSequence < ack) || sendMax < ack {
                if !seg.flags.contains(.rst) { sendReset(for: seg, sink: &sink) }
                return []
            }
        }
        if seg.flags.contains(.rst) {
            guard seg.flags.contains(.ack) else { return [] }
            error = .connectionRefused
            enterClosed()
            return [.failed, .closed]
        }
        guard seg.flags.contains(.syn) else { return [] }
        initialReceiveSequence = seg.sequence
        receiveNext = seg.sequence + 1
        lastACKSent = receiveNext
        advertisedEdge = receiveNext
        takeSYNOptions(seg.options)
        if timestampsOK, let ts = seg.options.timestamp { tsRecent = ts.value }
        if seg.flags.contains(.ack) {
            // RTT sample from the handshake (only if the SYN was not retransmitted: Karn).
            if retransmitCount == 0 {
                sampleRTT(nanoseconds: now.rawValue &- rttStart.rawValue)
            } else { synTimedOut() }
            sendUnacknowledged = seg.acknowledgment
            state = .established
            sendWindow = Int(seg.window) << Int(sendShift)
            maxSendWindow = sendWindow
            sendWL1 = seg.sequence
            sendWL2 = seg.acknowledgment
            retransmitDeadline = nil
            retransmitCount = 0
            rto.resetBackoff()
            armKeepalive(now: now)
            ackNow = true
            output(now: now, sink: &sink)
            return [.established]
        }
        // Simultaneous open (RFC 9293 §3.5).
        state = .synReceived
        sendWindow = Int(seg.window)
        maxSendWindow = sendWindow
        sendSYN(ack: true, now: now, sink: &sink)
        return []
    }

    /// The SYN (or SYN-ACK) timed out and no RTT was measured: RFC 6298 §5.7, the RTO becomes 3 s (at least) when
    /// data transfer starts.
    mutating func synTimedOut() {
        if rto.smoothedRTT == nil { rto.base = rto.clamp(max(rto.base, Duration.seconds(3).nanoseconds)) }
    }

    /// Processes the acknowledgment field of an acceptable segment.
    mutating func processACK(_ seg: TCPHeader, payloadLength: Int, now: Instant) -> TCPEvents {
        var events: TCPEvents = []
        let ack = seg.acknowledgment
        let scaledWindow = Int(seg.window) << Int(sendShift)
        var newlySACKed = 0
        if sackOK && seg.options.sackCount > 0 {
            newlySACKed = scoreboard.update(with: seg.options, unacknowledged: sendUnacknowledged,
                                            nextToSend: sendMax)
        }
        if sendUnacknowledged < ack {
            if let saved = eifelSaved {
                // The first ACK of new data after the retransmission: if it echoes a timestamp older than the
                // retransmission, the original arrived and the retransmission was spurious (reordering or delay,
                // not loss): undo the congestion response (RFC 4015).
                if let ts = seg.options.timestamp, ts.echo != 0, Int32(bitPattern: ts.echo &- eifelTimestamp) < 0 {
                    congestion = saved
                    statistics.spuriousRetransmissions += 1
                    // The path reorders: widen the reordering window (RFC 8985 §6.2 step 4, with Eifel's signal
                    // where RACK uses DSACK) and keep it wide for the next 16 recoveries.
                    reorderMultiplier = min(reorderMultiplier + 1, 16)
                    reorderPersist = 16
                    if inRecovery {
                        inRecovery = false
                        inflation = 0
                    }
                    if eifelAfterTimeout && sendNext < sendMax { sendNext = sendMax }
                    duplicateACKs = 0
                }
                eifelSaved = nil
            }
            let previousUnacknowledged = sendUnacknowledged
            var acked = ack - sendUnacknowledged
            // The SYN and FIN occupy sequence space but are not data.
            if sendUnacknowledged == initialSendSequence { acked -= 1 }
            if finSent && !(ack < finSequence + 1) { acked -= 1 }
            acked = max(0, acked)
            releaseAcknowledged(upTo: ack)
            bytesAcknowledged += UInt64(acked)
            sendUnacknowledged = ack
            if sendNext < sendUnacknowledged { sendNext = sendUnacknowledged }
            scoreboard.acknowledge(upTo: ack)
            events.insert(.acknowledged)

            // RTT (RFC 6298 with Karn's rule; RFC 7323 timestamps when on).
            if timestampsOK, let ts = seg.options.timestamp, ts.echo != 0 {
                // After a timeout, an ACK that echoes a timestamp from before the retransmission acknowledges data
                // that arrived long ago (its first ACK was lost; the peer echoes its stale TS.Recent): the time
                // since is the stall, not the path's RTT, and would inflate the RTO for good.
                let stale = timeoutTimestamp.map { Int32(bitPattern: ts.echo &- $0) < 0 } ?? false
                if !stale {
                    timeoutTimestamp = nil
                    let ms = Int64(Int32(bitPattern: timestampNow(now) &- ts.echo))
                    if ms >= 0 { sampleRTT(nanoseconds: ms &* 1_000_000) }
                }
            } else if rttTiming && rttSequence < ack {
                sampleRTT(nanoseconds: now.rawValue &- rttStart.rawValue)
                rttTiming = false
            }
            retransmitCount = 0
            rto.resetBackoff()

            if inRecovery && sackOK && configuration.recentAcknowledgment && ack < recoveryPoint
                && previousUnacknowledged < highRetransmitted && !(ack < highRetransmitted) {
                // The ACK covers a retransmission, so the segment now at SND.UNA, first sent before it and not
                // retransmitted since, is lost (RACK's rule; NewReno's partial ACK, RFC 6582 §3.2).
                unacknowledgedLost = true
                retransmitNextHole = true
            }
            if inRecovery {
                recoveryProbes = 0
                if !(ack < recoveryPoint) {
                    if reorderPersist > 0 {
                        reorderPersist -= 1
                        if reorderPersist == 0 { reorderMultiplier = 1 }
                    }
                    inRecovery = false
                    inflation = 0
                    congestion.onRecoveryExit(now: now)
                } else if !sackOK {
                    // NewReno partial ACK (RFC 6582 §3.2): retransmit the next hole, deflate.
                    inflation = max(0, inflation - acked) + sendMSS
                    highRetransmitted = sendUnacknowledged
                    retransmitNextHole = true
                }
            } else {
                congestion.onAcknowledged(bytes: acked, flightSize: sendMax - sendUnacknowledged,
                                          rttNanoseconds: rto.srtt, now: now)
            }
            duplicateACKs = 0
            retransmitDeadline = sendMax == sendUnacknowledged ? nil : retransmissionDeadline(now)
            persistBackoff = 0
            probeOutstanding = false
            armProbe(now: now)

            // Our FIN acknowledged?
            if finSent && !(ack < finSequence + 1) {
                switch state {
                case .finWait1: state = .finWait2
                case .closing:
                    state = .timeWait
                    timeWaitDeadline = now + configuration.timeWait
                    retransmitDeadline = nil
                case .lastAck:
                    enterClosed()
                    events.insert(.closed)
                default: break
                }
            }
        } else if ack == sendUnacknowledged && sendUnacknowledged < sendMax
                    && ((payloadLength == 0 && !seg.flags.contains(.fin) && scaledWindow == sendWindow
                         && sendWindow > 0) || newlySACKed > 0) {
            // A duplicate ACK (RFC 5681 §2), or with SACK any ACK that SACKs new data, data-carrying or not
            // (RFC 6675 §2): in a two-way transfer nearly every ACK carries data.
            duplicateACKs += 1
            statistics.duplicateACKs += 1
            if !inRecovery {
                let lost = duplicateACKs >= 3 || (sackOK && newlySACKed > 0
                    && scoreboard.isLost(sendUnacknowledged, mss: sendMSS))
                if lost { enterRecovery(now: now) }
            } else if !sackOK {
                inflation += sendMSS  // RFC 6582 §3.2 step 4
            }
        }
        if sackOK && configuration.recentAcknowledgment { detectLossByOrder(now: now) }

        // Window update (RFC 9293 §3.10.7.4).
        if sendWL1 < seg.sequence || (sendWL1 == seg.sequence && !(ack < sendWL2)) {
            sendWindow = scaledWindow
            maxSendWindow = max(maxSendWindow, sendWindow)
            sendWL1 = seg.sequence
            sendWL2 = ack
            if sendWindow > 0 { persistDeadline = nil }
        }
        return events
    }

    var retransmitNextHole = false

    // Loss detection in the manner of RACK (RFC 8985), over the SACK scoreboard (see
    // `TCPConfiguration.recentAcknowledgment`).
    /// The reordering window's end: SACKed data lies above SND.UNA but the duplicate-ACK rule has not fired.
    @usableFromInline var reorderDeadline: Instant?
    /// The tail loss probe timer (RFC 8985 §7).
    @usableFromInline var probeDeadline: Instant?
    /// A probe is out and no ACK has advanced SND.UNA since.
    var probeOutstanding = false
    /// In recovery: the segment at SND.UNA is lost and was not retransmitted since (see `processACK`).
    var unacknowledgedLost = false
    /// Recovery probes sent since SND.UNA last advanced (each doubles the next one's wait).
    var recoveryProbes = 0
    /// SND.MAX when the latest retransmission of this recovery went out: data above it was first sent after it.
    var retransmitEpoch = TCPSequence(0)
    /// The smallest RTT sample, in nanoseconds (for the reordering window).
    var minimumRTT = Int64.max

    /// An RTT measurement: for the retransmission timeout (RFC 6298) and the reordering window.
    mutating func sampleRTT(nanoseconds rtt: Int64) {
        rto.sample(nanoseconds: rtt)
        minimumRTT = min(minimumRTT, max(rtt, 1))
    }

    /// When the retransmission timer started now expires.
    @inline(__always)
    func retransmissionDeadline(_ now: Instant) -> Instant { now.adding(nanoseconds: rto.timeoutNanoseconds) }
    /// The reordering window in quarters of the minimum RTT: grows by one per retransmission found spurious, back
    /// to 1 after 16 recoveries without one (RFC 8985 §6.2).
    var reorderMultiplier: Int64 = 1
    var reorderPersist = 0

    /// Holes below SACKed data are lost in RFC 6675's sense only after three SACKed segments; RACK's rule instead
    /// waits a reordering window after a later-sent segment is delivered. In recovery, every hole below the highest
    /// SACKed byte counts as lost, unless the path was seen to reorder (then RFC 6675's three).
    @inline(__always)
    var lossThreshold: Int { inRecovery && configuration.recentAcknowledgment && reorderMultiplier == 1 ? 1 : 3 }

    /// The reordering window: a quarter of the minimum RTT (RFC 8985 §6.2), at least 1 ms (timers run on scheduler
    /// passes, and a window shorter than the path's jitter only buys spurious retransmissions).
    var reorderWindow: Int64 {
        let quarter = minimumRTT == .max ? 0 : minimumRTT / 4
        let window = max(quarter * reorderMultiplier, 1_000_000)
        // At most one SRTT once the window has grown (RFC 8985 §6.2 step 4).
        guard reorderMultiplier > 1, let srtt = rto.srtt else { return window }
        return min(window, max(srtt, 1_000_000))
    }

    /// After an ACK: outside recovery, start the reordering window when SACKed data lies above a hole; in recovery,
    /// a retransmission still unacknowledged while data first sent after it was SACKed was lost: send it again.
    mutating func detectLossByOrder(now: Instant) {
        guard let high = scoreboard.highestSACKed, scoreboard.hasHole(above: sendUnacknowledged) else {
            reorderDeadline = nil
            return
        }
        if inRecovery {
            if retransmitEpoch < high && sendUnacknowledged < highRetransmitted {
                highRetransmitted = sendUnacknowledged
                retransmitEpoch = sendMax
                retransmitNextHole = true
                statistics.lostRetransmissions += 1
            }
        } else if reorderDeadline == nil {
            reorderDeadline = now.adding(nanoseconds: reorderWindow)
        }
    }

    /// (Re)arms the tail loss probe (RFC 8985 §7.2): two smoothed RTTs (plus the peer's worst-case delayed ACK when
    /// one segment is out), never after the retransmission timer.
    mutating func armProbe(now: Instant) {
        if inRecovery {
            // The recovery probe: retransmissions whose ACK does not come within two SRTTs (the receiver ACKs
            // segments that fill holes at once) were lost too, and with the pipe full nothing else would find out
            // before the retransmission timeout. Doubles per probe until SND.UNA advances.
            guard configuration.recentAcknowledgment, sackOK, let srtt = rto.srtt, recoveryProbes < 6 else {
                probeDeadline = nil
                return
            }
            armProbe(at: now.adding(nanoseconds: max(2 * srtt, 2_000_000) << recoveryProbes))
            return
        }
        guard configuration.tailLossProbes, !probeOutstanding, sendUnacknowledged < sendMax, !finSent,
              sendNext == sendMax, state == .established || state == .closeWait, let srtt = rto.srtt else {
            probeDeadline = nil
            return
        }
        var pto = max(2 * srtt, 2_000_000)
        if sendMax - sendUnacknowledged <= sendMSS { pto += 200_000_000 }
        armProbe(at: now.adding(nanoseconds: pto))
    }

    /// A probe at `at`, unless the retransmission timer fires first.
    @inline(__always)
    mutating func armProbe(at: Instant) {
        if let r = retransmitDeadline, r <= at { probeDeadline = nil } else { probeDeadline = at }
    }

    /// The probe timer expired: send one new segment if the windows allow, else the last segment again, then wait
    /// for the retransmission timer as usual.
    mutating func sendProbe<S: TCPSegmentSink>(now: Instant, sink: inout S) {
        if inRecovery {
            guard sendUnacknowledged < sendMax else { return }
            // No progress for the probe time: the segment at SND.UNA (or its retransmission) is lost.
            recoveryProbes += 1
            if sendUnacknowledged < highRetransmitted { statistics.lostRetransmissions += 1 }
            highRetransmitted = sendUnacknowledged
            unacknowledgedLost = true
            retransmitNextHole = true
            return  // `output` (after the timers) sends it
        }
        guard sendUnacknowledged < sendMax, !finSent, sendNext == sendMax else { return }
        probeOutstanding = true
        statistics.tailLossProbes += 1
        let unsent = dataEnd - sendMax
        let room = (sendUnacknowledged + sendWindow) - sendMax
        if unsent > 0 && room > 0 {
            sendData(from: sendMax, length: min(sendMSS, min(unsent, room)), now: now, sink: &sink,
                     retransmission: false)
        } else {
            let length = min(sendMSS, sendMax - sendUnacknowledged)
            sendData(from: sendMax - length, length: length, now: now, sink: &sink, retransmission: true)
        }
        retransmitDeadline = retransmissionDeadline(now)
    }

    // Spurious retransmission detection (Eifel, RFC 3522) and response (RFC 4015): the TSval of the first
    // retransmission of a loss episode, and the congestion state before it was reduced.
    var eifelTimestamp: UInt32 = 0
    var eifelSaved: CongestionController?
    var eifelAfterTimeout = false
    /// The TSval of the latest timeout retransmission, until an ACK echoes a newer one (see `processACK`).
    var timeoutTimestamp: UInt32?

    /// Arms spurious-retransmission detection for a loss episode starting now (timestamps only).
    mutating func armEifel(now: Instant, afterTimeout: Bool) {
        guard timestampsOK, eifelSaved == nil else { return }
        eifelTimestamp = timestampNow(now)
        eifelSaved = congestion
        eifelAfterTimeout = afterTimeout
    }

    mutating func enterRecovery(now: Instant) {
        armEifel(now: now, afterTimeout: false)
        inRecovery = true
        recoveryPoint = sendMax
        highRetransmitted = sendUnacknowledged
        retransmitEpoch = sendMax
        reorderDeadline = nil
        probeDeadline = nil
        unacknowledgedLost = false
        recoveryProbes = 0
        congestion.onLossDetected(flightSize: sendMax - sendUnacknowledged, now: now)
        inflation = sackOK ? 0 : 3 * sendMSS
        retransmitNextHole = true
        statistics.fastRetransmits += 1
        rttTiming = false
    }

    /// Queues in-order data and out-of-order segments; returns true if new in-order data arrived.
    mutating func receiveData(_ seg: TCPHeader, payload: DemiBuffer, now: Instant) -> Bool {
        var seq = seg.sequence
        // Trim what we already have.
        if seq < receiveNext {
            let dup = receiveNext - seq
            if dup >= payload.count {
                payload.release()
                ackNow = true
                return false
            }
            payload.trimFront(dup)
            seq = receiveNext
        }
        // Trim what lies beyond the window.
        let room = (receiveNext + receiveWindow) - seq
        if room <= 0 {
            payload.release()
            ackNow = true
            return false
        }
        if payload.count > room { payload.trimBack(payload.count - room) }
        if seq != receiveNext {
            statistics.outOfOrderSegments += 1
            if !outOfOrder.insert(seq, payload) { payload.release() }
            ackNow = true  // a duplicate ACK at once (RFC 5681 §4.2)
            return false
        }
        let n = payload.count
        receiveQueue.append(payload)
        receiveQueued += n
        receiveNext = receiveNext + n
        // Fill from the out-of-order queue.
        if !outOfOrder.isEmpty {
            ackNow = true  // the hole is filled: ACK at once
            while let (s, b) = outOfOrder.first, !(receiveNext < s) {
                outOfOrder.removeFirst()
                let over = receiveNext - s
                if over >= b.count {
                    b.release()
                    continue
                }
                if over > 0 { b.trimFront(over) }
                receiveQueue.append(b)
                receiveQueued += b.count
                receiveNext = receiveNext + b.count
            }
        }
        // An early FIN (with or without data of its own) is accepted once the data before it is in.
        if let f = outOfOrder.finSequence, f == receiveNext, !finReceived { acceptFIN(now: now) }
        unackedSegments += 1
        if unackedSegments >= 2 || configuration.delayedACK == nil { ackNow = true }
        else if delayedACKDeadline == nil, let d = configuration.delayedACK { delayedACKDeadline = now + d }
        return true
    }

    mutating func acceptFIN(now: Instant) {
        receiveNext = receiveNext + 1
        finReceived = true
        outOfOrder.finSequence = nil
        ackNow = true
        switch state {
        case .synReceived, .established: state = .closeWait
        case .finWait1:
            // Our FIN not acknowledged yet: simultaneous close.
            state = .closing
        case .finWait2:
            state = .timeWait
            timeWaitDeadline = now + configuration.timeWait
            retransmitDeadline = nil
        default: break
        }
    }

    // MARK: - Output

    /// Sends what the windows allow: retransmissions in recovery, new data, the FIN, and a pending ACK or window
    /// update. Call after anything that may have opened a window.
    public mutating func output<S: TCPSegmentSink>(now: Instant, sink: inout S) {
        guard state.isSynchronized else { return }
        var sent = false
        // Fast retransmit / recovery retransmissions.
        if inRecovery && retransmitNextHole {
            retransmitNextHole = false
            if sackOK {
                // RFC 6675: retransmit lost holes while the pipe allows.
                var budget = 64
                if unacknowledgedLost {
                    // The segment at SND.UNA first, whatever the pipe (one segment, as a fast retransmit).
                    unacknowledgedLost = false
                    let end = scoreboard.nextSACKed(after: sendUnacknowledged) ?? dataEnd
                    let length = min(sendMSS, end - sendUnacknowledged)
                    if length > 0 {
                        let n = sendData(from: sendUnacknowledged, length: length, now: now, sink: &sink,
                                         retransmission: true)
                        if highRetransmitted < sendUnacknowledged + n { highRetransmitted = sendUnacknowledged + n }
                        retransmitEpoch = sendMax
                        sent = true
                        budget -= 1
                    }
                }
                while budget > 0 {
                    budget -= 1
                    let pipe = scoreboard.pipe(unacknowledged: sendUnacknowledged, nextToSend: sendMax,
                                               highRetransmitted: highRetransmitted, mss: sendMSS,
                                               dupThresh: lossThreshold)
                    guard pipe < congestion.congestionWindow || budget == 63 else { break }
                    guard let (start, length) = scoreboard.nextSegment(
                        unacknowledged: sendUnacknowledged, nextToSend: sendMax,
                        highRetransmitted: highRetransmitted, mss: sendMSS, dupThresh: lossThreshold) else { break }
                    let n = sendData(from: start, length: length, now: now, sink: &sink, retransmission: true)
                    highRetransmitted = start + n
                    retransmitEpoch = sendMax
                    sent = true
                }
                if sent { armProbe(now: now) }
            } else {
                let length = min(sendMSS, dataEnd - sendUnacknowledged)
                if length > 0 {
                    sendData(from: sendUnacknowledged, length: length, now: now, sink: &sink, retransmission: true)
                    sent = true
                } else if finSent {
                    sendFIN(at: finSequence, now: now, sink: &sink)
                    sent = true
                }
            }
        } else if inRecovery && sackOK {
            // More holes may have become retransmittable as SACKs arrived.
            while true {
                let pipe = scoreboard.pipe(unacknowledged: sendUnacknowledged, nextToSend: sendMax,
                                           highRetransmitted: highRetransmitted, mss: sendMSS,
                                           dupThresh: lossThreshold)
                guard pipe + sendMSS <= congestion.congestionWindow else { break }
                guard let (start, length) = scoreboard.nextSegment(
                    unacknowledged: sendUnacknowledged, nextToSend: sendMax, highRetransmitted: highRetransmitted,
                    mss: sendMSS, dupThresh: lossThreshold) else { break }
                let n = sendData(from: start, length: length, now: now, sink: &sink, retransmission: true)
                highRetransmitted = start + n
                retransmitEpoch = sendMax
                sent = true
            }
        }

        // New data (and, after a timeout, data again from sendNext).
        var budget = 1 << 16
        while budget > 0 {
            budget -= 1
            // Resending after a timeout: skip what the peer holds already (its SACK blocks) and stop before the
            // next block it holds.
            var sackLimit = Int.max
            if sackOK && sendNext < sendMax && !scoreboard.isEmpty {
                var skipped = false
                for k in 0..<scoreboard.count {
                    let r = scoreboard.range(k)
                    if sendNext < r.left {
                        sackLimit = r.left - sendNext
                        break
                    }
                    if sendNext < r.right {
                        sendNext = r.right < sendMax ? r.right : sendMax
                        skipped = true
                        break
                    }
                }
                if skipped { continue }
            }
            let end = dataEnd
            let available = end - sendNext
            let flight: Int
            if inRecovery && sackOK {
                flight = scoreboard.pipe(unacknowledged: sendUnacknowledged, nextToSend: sendMax,
                                         highRetransmitted: highRetransmitted, mss: sendMSS, dupThresh: lossThreshold)
            } else {
                flight = sendNext - sendUnacknowledged
            }
            var allowance = congestion.congestionWindow + inflation
            if !inRecovery && (duplicateACKs == 1 || duplicateACKs == 2) {
                allowance += duplicateACKs * sendMSS  // limited transmit (RFC 3042)
            }
            let congestionRoom = allowance - flight
            let windowRoom = (sendUnacknowledged + sendWindow) - sendNext
            // Two-argument mins: the variadic one builds an array (a heap allocation in unoptimized builds).
            var length = min(min(available, sendMSS), min(windowRoom, congestionRoom))
            if sackLimit < length { length = sackLimit }
            if available > 0 && length <= 0 {
                // Zero window with nothing in flight: probe (RFC 9293 §3.8.6.1).
                if windowRoom <= 0 && sendUnacknowledged == sendMax && persistDeadline == nil {
                    persistDeadline = now + persistInterval
                }
                break
            }
            if length > 0 {
                // Silly window avoidance and Nagle (RFC 9293 §3.8.6.2.1).
                let full = length == sendMSS
                let all = length == available
                let big = length >= maxSendWindow / 2 && maxSendWindow > 0
                let idle = sendUnacknowledged == sendMax
                let resend = sendNext < sendMax
                if !(full || big || resend || (all && (!configuration.nagle || idle))) {
                    // Nothing in flight will bring an ACK: the override timeout (RFC 9293 §3.8.6.2.1) sends anyway.
                    if idle && persistDeadline == nil { persistDeadline = now + persistInterval }
                    break
                }
                sendData(from: sendNext, length: length, now: now, sink: &sink, retransmission: sendNext < sendMax,
                         fin: finQueued && !finSent)
                sent = true
                continue
            }
            // The FIN, once every byte is out.
            if finQueued && (!finSent || sendNext == finSequence) && sendNext == end {
                sendFIN(at: end, now: now, sink: &sink)
                sent = true
            }
            break
        }

        if !sent && (ackNow || windowUpdateDue) {
            sendACK(now: now, sink: &sink)
        }
    }

    @inline(__always)
    var dataEnd: TCPSequence { sendBase + sendQueued }

    @inline(__always)
    var persistInterval: Duration {
        let base = rto.timeoutNanoseconds
        let shifted = base << min(persistBackoff, 20)
        return .nanoseconds(min(shifted, configuration.maximumPersistInterval.nanoseconds))
    }

    /// True if reading opened the window enough to tell the peer (RFC 9293 §3.8.6.2.2: by min(buffer/2, MSS)).
    @inline(__always)
    var windowUpdateDue: Bool {
        let window = receiveWindow
        let opened = (receiveNext + window) - advertisedEdge
        // Only when the peer's usable window has fallen to half of what we could offer (as Linux does): while it
        // has more, the ACKs that data draws keep it open, and a window update per two reads would nearly double
        // the frames a bulk receiver sends.
        return opened >= min(configuration.receiveBufferSize / 2, 2 * localMSS) && advertisedEdge - receiveNext <= window / 2
    }

    /// The receive window we can offer now.
    @inline(__always)
    var receiveWindow: Int {
        // At most what the window field can say (65535 << our shift): a larger buffer cannot be offered.
        let free = min(configuration.receiveBufferSize - receiveQueued - outOfOrder.bytes, 65535 << Int(receiveShift))
        let edge = advertisedEdge - receiveNext  // never shrink
        return max(0, max(free, edge))
    }

    /// Sends up to `length` bytes from `seq` (fewer if the header's options leave less room: RFC 6691) and returns
    /// how many went. `fin`: set FIN if the segment reaches the end of the data.
    @discardableResult
    mutating func sendData<S: TCPSegmentSink>(from seq: TCPSequence, length requested: Int, now: Instant,
                                              sink: inout S, retransmission: Bool, fin allowFIN: Bool = false) -> Int {
        var h = header(sequence: seq, flags: .ack, now: now)
        let room = min(peerMSS, localMSS) - h.options.encodedLength
        let length = max(1, min(requested, room))
        let fin = allowFIN && seq + length == dataEnd
        if seq + length == dataEnd { h.flags.insert(.psh) }
        if fin { h.flags.insert(.fin) }
        let payload = makePayload(from: seq, length: length)
        emit(h, payload: payload, sink: &sink)
        if retransmission {
            statistics.retransmissions += 1
            if rttTiming && !(rttSequence < seq) { rttTiming = false }  // Karn
        }
        let end = seq + length + (fin ? 1 : 0)
        if fin {
            finSent = true
            finSequence = seq + length
        }
        if seq == sendNext { sendNext = end }
        if sendMax < end {
            if !rttTiming && !timestampsOK {
                rttTiming = true
                rttSequence = seq
                rttStart = now
            }
            sendMax = end
        }
        if retransmitDeadline == nil { retransmitDeadline = retransmissionDeadline(now) }
        if probeDeadline == nil && !retransmission { armProbe(now: now) }
        return length
    }

    mutating func sendFIN<S: TCPSegmentSink>(at seq: TCPSequence, now: Instant, sink: inout S) {
        let h = header(sequence: seq, flags: [.fin, .ack], now: now)
        emit(h, payload: nil, sink: &sink)
        if finSent { statistics.retransmissions += 1 }
        finSent = true
        finSequence = seq
        if sendNext < seq + 1 { sendNext = seq + 1 }
        if sendMax < seq + 1 { sendMax = seq + 1 }
        if retransmitDeadline == nil { retransmitDeadline = retransmissionDeadline(now) }
    }

    mutating func sendACK<S: TCPSegmentSink>(now: Instant, sink: inout S) {
        // A pure ACK carries the highest sequence number sent: after a timeout pulled sendNext back, an ACK with the
        // older number would fall left of the peer's window and be dropped.
        let h = header(sequence: sendMax, flags: .ack, now: now)
        emit(h, payload: nil, sink: &sink)
    }

    mutating func challengeACK<S: TCPSegmentSink>(now: Instant, sink: inout S) {
        let second = now.rawValue / 1_000_000_000
        if second != lastChallengeSecond {
            lastChallengeSecond = second
            challengesThisSecond = 0
        }
        guard challengesThisSecond < configuration.challengeACKLimit else { return }
        challengesThisSecond += 1
        statistics.challengeACKs += 1
        sendACK(now: now, sink: &sink)
    }

    mutating func sendSYN<S: TCPSegmentSink>(ack: Bool, now: Instant, sink: inout S) {
        var h = TCPHeader(sourcePort: endpoints.local.port, destinationPort: endpoints.remote.port,
                          sequence: initialSendSequence, acknowledgment: ack ? receiveNext : TCPSequence(0),
                          flags: ack ? [.syn, .ack] : [.syn],
                          window: UInt16(min(configuration.receiveBufferSize, 65535)))
        h.options.maximumSegmentSize = UInt16(min(localMSS, 65535))
        let offerAll = !ack  // a SYN-ACK only echoes what the SYN offered (RFC 7323 §2.2, RFC 2018 §2)
        if offerAll || receiveShiftAgreed { h.options.windowScale = configuration.windowScale }
        if configuration.selectiveAcknowledgments && (offerAll || sackOK) { h.options.sackPermitted = true }
        if configuration.timestamps && (offerAll || timestampsOK) {
            h.options.timestamp = (timestampNow(now), ack ? tsRecent : 0)
        }
        if state == .synSent || state == .synReceived, retransmitCount == 0 { rttStart = now }
        advertisedEdge = receiveNext + Int(h.window)
        if ack { lastACKSent = receiveNext }
        statistics.segmentsSent += 1
        sink.transmit(h, payload: nil, endpoints: endpoints)
    }

    var receiveShiftAgreed = false

    mutating func takeSYNOptions(_ o: TCPOptions) {
        peerMSS = Int(o.maximumSegmentSize ?? 536)
        if let ws = o.windowScale {
            sendShift = min(ws, 14)
            receiveShift = configuration.windowScale
            receiveShiftAgreed = true
        } else {
            sendShift = 0
            receiveShift = 0
            receiveShiftAgreed = false
        }
        sackOK = configuration.selectiveAcknowledgments && o.sackPermitted
        timestampsOK = configuration.timestamps && o.timestamp != nil
        if timestampsOK, let ts = o.timestamp { tsRecent = ts.value }
        sendMSS = max(64, min(peerMSS, localMSS) - (timestampsOK ? 12 : 0))
        congestion = CongestionController(algorithm: configuration.congestionControl, mss: sendMSS)
    }

    /// A segment header for the current state, with the window, timestamps and SACK blocks filled in.
    mutating func header(sequence: TCPSequence, flags: TCPFlags, now: Instant) -> TCPHeader {
        let window = receiveWindow
        let scaled = min(window >> Int(receiveShift), 65535)
        var h = TCPHeader(sourcePort: endpoints.local.port, destinationPort: endpoints.remote.port,
                          sequence: sequence, acknowledgment: receiveNext, flags: flags, window: UInt16(scaled))
        if timestampsOK { h.options.timestamp = (timestampNow(now), tsRecent) }
        if sackOK && !outOfOrder.isEmpty { outOfOrder.addSACKBlocks(to: &h.options) }
        return h
    }

    mutating func emit<S: TCPSegmentSink>(_ h: TCPHeader, payload: DemiBuffer?, sink: inout S) {
        if h.flags.contains(.ack) {
            lastACKSent = h.acknowledgment
            let edge = h.acknowledgment + (Int(h.window) << Int(receiveShift))
            if advertisedEdge < edge { advertisedEdge = edge }
            ackNow = false
            unackedSegments = 0
            delayedACKDeadline = nil
        }
        statistics.segmentsSent += 1
        sink.transmit(h, payload: payload, endpoints: endpoints)
    }

    @inline(__always)
    func timestampNow(_ now: Instant) -> UInt32 {
        UInt32(truncatingIfNeeded: now.rawValue / 1_000_000) &+ tsOffset
    }

    /// A chain of views over the send queue covering `length` bytes from `seq`.
    mutating func makePayload(from seq: TCPSequence, length: Int) -> DemiBuffer? {
        guard length > 0 else { return nil }
        // Find the buffer holding `seq`, from the cursor when it is at or before `seq`.
        if seq < cursorSeq {
            cursorIndex = 0
            cursorSeq = sendBase
        }
        while cursorIndex < sendQueue.count {
            let n = sendQueue[cursorIndex].count
            if seq < cursorSeq + n { break }
            cursorSeq = cursorSeq + n
            cursorIndex += 1
        }
        var first: DemiBuffer?
        var last: DemiBuffer?
        var remaining = length
        var index = cursorIndex
        var offset = seq - cursorSeq
        while remaining > 0 && index < sendQueue.count {
            let b = sendQueue[index]
            let take = min(remaining, b.count - offset)
            guard let v = pool.view(of: b, offset: offset, length: take) else { break }
            if let l = last { l.header.pointee.next = v.header } else { first = v }
            last = v
            remaining -= take
            offset = 0
            index += 1
        }
        return first
    }

    /// Drops fully acknowledged buffers from the send queue.
    mutating func releaseAcknowledged(upTo ack: TCPSequence) {
        var removed = 0
        while let b = sendQueue.isEmpty ? nil : sendQueue[0], !(ack < sendBase + b.count) {
            sendBase = sendBase + b.count
            sendQueued -= b.count
            sendQueue.removeFirst()
            b.release()
            removed += 1
        }
        if removed > 0 {
            if cursorIndex >= removed {
                cursorIndex -= removed
            } else {
                cursorIndex = 0
                cursorSeq = sendBase
            }
        }
        if sendQueue.isEmpty {
            // Keep sendBase at the data end (the FIN may follow).
            cursorIndex = 0
            cursorSeq = sendBase
        }
    }

    /// A reset answering `seg` (RFC 9293 §3.10.7.1 rules).
    mutating func sendReset<S: TCPSegmentSink>(for seg: TCPHeader, sink: inout S) {
        var h: TCPHeader
        if seg.flags.contains(.ack) {
            h = TCPHeader(sourcePort: endpoints.local.port, destinationPort: endpoints.remote.port,
                          sequence: seg.acknowledgment, acknowledgment: TCPSequence(0), flags: [.rst], window: 0)
        } else {
            h = TCPHeader(sourcePort: endpoints.local.port, destinationPort: endpoints.remote.port,
                          sequence: TCPSequence(0), acknowledgment: seg.sequence + 1, flags: [.rst, .ack], window: 0)
        }
        statistics.segmentsSent += 1
        sink.transmit(h, payload: nil, endpoints: endpoints)
    }

    @inline(__always)
    func acceptable(_ seq: TCPSequence, length: Int, window: Int) -> Bool {
        let rn = receiveNext
        if length == 0 {
            if window == 0 { return seq == rn }
            return !(seq < rn) && seq < rn + window
        }
        if window == 0 { return false }
        let last = seq + (length - 1)
        return (!(seq < rn) && seq < rn + window) || (!(last < rn) && last < rn + window)
    }

    mutating func enterClosed() {
        state = .closed
        retransmitDeadline = nil
        delayedACKDeadline = nil
        persistDeadline = nil
        keepaliveDeadline = nil
        timeWaitDeadline = nil
        reorderDeadline = nil
        probeDeadline = nil
    }

    mutating func armKeepalive(now: Instant) {
        guard let k = configuration.keepalive, state == .established || state == .closeWait else {
            keepaliveDeadline = nil
            return
        }
        keepaliveSent = 0
        keepaliveDeadline = now + k
    }

    // MARK: - Timers

    /// The earliest time ``onTimer(now:sink:)`` has work.
    @inlinable @inline(__always)
    public var nextDeadline: Instant? {
        var d = retransmitDeadline
        if let t = delayedACKDeadline, d == nil || t < d.unsafelyUnwrapped { d = t }
        if let t = persistDeadline, d == nil || t < d.unsafelyUnwrapped { d = t }
        if let t = keepaliveDeadline, d == nil || t < d.unsafelyUnwrapped { d = t }
        if let t = timeWaitDeadline, d == nil || t < d.unsafelyUnwrapped { d = t }
        if let t = reorderDeadline, d == nil || t < d.unsafelyUnwrapped { d = t }
        if let t = probeDeadline, d == nil || t < d.unsafelyUnwrapped { d = t }
        return d
    }

    /// Runs the timers due at `now`: retransmission (with backoff and the retry limit), delayed ACK, zero-window
    /// probe, keepalive, TIME-WAIT.
    public mutating func onTimer<S: TCPSegmentSink>(now: Instant, sink: inout S) -> TCPEvents {
        var events: TCPEvents = []
        if let t = timeWaitDeadline, t <= now {
            enterClosed()
            return [.closed]
        }
        if let t = delayedACKDeadline, t <= now {
            delayedACKDeadline = nil
            ackNow = true
        }
        if let t = retransmitDeadline, t <= now {
            retransmitDeadline = nil
            events.formUnion(retransmissionTimeout(now: now, sink: &sink))
            if state == .closed { return events }
        }
        if let t = persistDeadline, t <= now {
            persistDeadline = nil
            if sendWindow == 0 && dataEnd - sendNext > 0 {
                // A window probe: one byte beyond the window (RFC 9293 §3.8.6.1).
                sendData(from: sendNext, length: 1, now: now, sink: &sink, retransmission: sendNext < sendMax)
                retransmitDeadline = nil  // probes are not retransmissions; they never time the connection out
                sendNext = sendNext - 1
                persistBackoff += 1
                persistDeadline = now + persistInterval
            } else if sendWindow > 0 && sendUnacknowledged == sendMax {
                // The SWS override timeout: send what the small window allows.
                let length = min(dataEnd - sendNext, (sendUnacknowledged + sendWindow) - sendNext, sendMSS)
                if length > 0 {
                    sendData(from: sendNext, length: length, now: now, sink: &sink, retransmission: false,
                             fin: finQueued)
                }
            }
        }
        if let t = keepaliveDeadline, t <= now {
            if keepaliveSent >= configuration.keepaliveProbes {
                error = .timedOut
                abort(now: now, sink: &sink)
                return [.failed, .closed]
            }
            // A probe: an old sequence number draws an ACK.
            let h = header(sequence: sendUnacknowledged - 1, flags: .ack, now: now)
            emit(h, payload: nil, sink: &sink)
            keepaliveSent += 1
            keepaliveDeadline = now + configuration.keepaliveInterval
        }
        if let t = reorderDeadline, t <= now {
            reorderDeadline = nil
            // The reordering window passed and the hole below SACKed data is still there: lost (RFC 8985 §6.2).
            if sackOK && !inRecovery && sendUnacknowledged < sendMax && scoreboard.hasHole(above: sendUnacknowledged) {
                statistics.reorderWindowRecoveries += 1
                enterRecovery(now: now)
            }
        }
        if let t = probeDeadline, t <= now {
            probeDeadline = nil
            sendProbe(now: now, sink: &sink)
        }
        output(now: now, sink: &sink)
        return events
    }

    mutating func retransmissionTimeout<S: TCPSegmentSink>(now: Instant, sink: inout S) -> TCPEvents {
        statistics.timeouts += 1
        retransmitCount += 1
        rttTiming = false
        if state == .synSent || state == .synReceived {
            if retransmitCount > configuration.synRetries {
                error = .timedOut
                if state == .synReceived { abort(now: now, sink: &sink) } else { enterClosed() }
                return [.failed, .closed]
            }
            rto.backoff()
            statistics.retransmissions += 1
            sendSYN(ack: state == .synReceived, now: now, sink: &sink)
            retransmitDeadline = retransmissionDeadline(now)
            return []
        }
        if retransmitCount > configuration.maximumRetransmissions {
            error = .timedOut
            abort(now: now, sink: &sink)
            return [.failed, .closed]
        }
        guard sendUnacknowledged < sendMax else { return [] }
        reorderDeadline = nil
        probeDeadline = nil
        probeOutstanding = false
        if retransmitCount == 1 { armEifel(now: now, afterTimeout: true) } else { eifelSaved = nil }
        if timestampsOK { timeoutTimestamp = timestampNow(now) }
        rto.backoff()
        congestion.onRetransmissionTimeout(flightSize: sendMax - sendUnacknowledged, now: now)
        inRecovery = false
        inflation = 0
        duplicateACKs = 0
        // Go back: resend from the first unacknowledged byte as the (now one-segment) window allows.
        sendNext = sendUnacknowledged
        if finSent && sendNext == finSequence + 1 { sendNext = finSequence }
        retransmitDeadline = retransmissionDeadline(now)
        let end = dataEnd
        if sendNext == end && finSent {
            sendFIN(at: finSequence, now: now, sink: &sink)
        } else {
            let length = min(sendMSS, end - sendNext, max(sendWindow, 1))
            if length > 0 {
                sendData(from: sendNext, length: length, now: now, sink: &sink, retransmission: true, fin: finQueued)
            }
        }
        return []
    }
}

/// Out-of-order segments waiting for a hole to fill, sorted by sequence number, at most `capacity` of them.
struct OutOfOrderQueue {
    static let capacity = 256
    var seqs: UnsafeMutablePointer<TCPSequence>
    var buffers: UnsafeMutablePointer<DemiBuffer>
    var count = 0
    var bytes = 0
    /// An early FIN's sequence number.
    var finSequence: TCPSequence?
    /// The sequence number of the segment received last (its block goes first in SACK options).
    var latest = TCPSequence(0)

    init() {
        seqs = .allocate(capacity: Self.capacity)
        buffers = .allocate(capacity: Self.capacity)
    }

    var isEmpty: Bool { count == 0 }

    var first: (TCPSequence, DemiBuffer)? { count > 0 ? (seqs[0], buffers[0]) : nil }

    mutating func removeFirst() {
        guard count > 0 else { return }
        bytes -= buffers[0].count
        for i in stride(from: 1, to: count, by: 1) {
            seqs[i - 1] = seqs[i]
            buffers[i - 1] = buffers[i]
        }
        count -= 1
    }

    /// Inserts a segment; false (the caller releases it) if the queue is full or the bytes are already here.
    mutating func insert(_ seq: TCPSequence, _ b: DemiBuffer) -> Bool {
        var i = 0
        while i < count && seqs[i] < seq { i += 1 }
        if i < count && seqs[i] == seq && buffers[i].count >= b.count { return false }
        if i > 0 && !(seqs[i - 1] + buffers[i - 1].count < seq + b.count) { return false }  // covered
        guard count < Self.capacity else { return false }
        var j = count
        while j > i {
            seqs[j] = seqs[j - 1]
            buffers[j] = buffers[j - 1]
            j -= 1
        }
        seqs[i] = seq
        buffers[i] = b
        count += 1
        bytes += b.count
        latest = seq
        return true
    }

    /// Adds up to the option space's worth of SACK blocks: the block holding the latest segment first (RFC 2018 §4).
    func addSACKBlocks(to o: inout TCPOptions) {
        var latestBlock: SACKBlock?
        var others = 0
        var i = 0
        // First pass: find the latest's block.
        while i < count {
            let left = seqs[i]
            var right = seqs[i] + buffers[i].count
            var j = i + 1
            var hasLatest = seqs[i] == latest
            while j < count && !(right < seqs[j]) {
                let r = seqs[j] + buffers[j].count
                if right < r { right = r }
                if seqs[j] == latest { hasLatest = true }
                j += 1
            }
            if hasLatest { latestBlock = SACKBlock(left: left, right: right) }
            i = j
        }
        if let l = latestBlock { o.addSACK(l) }
        i = 0
        while i < count && others < 3 {
            let left = seqs[i]
            var right = seqs[i] + buffers[i].count
            var j = i + 1
            while j < count && !(right < seqs[j]) {
                let r = seqs[j] + buffers[j].count
                if right < r { right = r }
                j += 1
            }
            let b = SACKBlock(left: left, right: right)
            if b != latestBlock {
                o.addSACK(b)
                others += 1
            }
            i = j
        }
    }

    mutating func destroy() {
        for i in 0..<count { buffers[i].release() }
        count = 0
        seqs.deallocate()
        buffers.deallocate()
    }
}

