import DemiBuffers
import DemiCore
import DemiInet
import DemiWire

// A packetdrill-like runner for the sans-I/O `TCPConnection`: a text script drives one connection at explicit
// instants, injects the peer's segments and checks, field by field, every segment the connection sends.
//
// Format (one directive per line; `#` starts a comment; `;` separates directives that share the line's time):
//
//     config KEY=VALUE ...          before the first timed line (see `PacketScript.applyConfig` for the keys)
//     TIME DIRECTIVE [; DIRECTIVE ...]
//
// TIME is seconds (`1.25`), absolute, or `+0.2` relative to the previous line; it never goes backwards. Before each
// directive the runner fires `onTimer` at every deadline up to and including TIME, in order, at the deadline itself.
//
// Segments (flags S F R P U and `.` for ACK; sequence numbers relative to the sender's ISN, acknowledgments to the
// receiver's, so `0` is the SYN and `1` the first data byte):
//
//     < FLAGS START:END(LEN) [ack N] [win N] [<OPTIONS>]   inject a segment from the peer (payload: a byte pattern)
//     > FLAGS START:END(LEN) [ack N] [win N] [<OPTIONS>]   the next segment the connection sent, at exactly TIME
//
// OPTIONS: `mss N`, `sackOK`, `wscale N`, `TS val V ecr E` (raw values; `*` matches any in an expectation),
// `sack A:B C:D` (relative to the receiver of the SACKed data, like acknowledgments), `nop`, `eol`. In an
// expectation `ack`, `win` and `<...>` are compared only when written (`<>` means no options); flags, sequence
// number, length and payload bytes always are. A segment sent but not expected before the next other directive (or
// the end) is a failure.
//
// Actions: `connect`, `listen` (the next injected SYN creates the connection with `accept(syn:)`), `push N` (enqueue
// N pattern bytes, then output), `write N` (enqueue only), `output`, `read N` (read everything readable, which must
// be N bytes of the peer's pattern, then output), `close`, `abort`, `timer` (an explicit `onTimer`).
// Checks: `state NAME` (RFC names: ESTABLISHED, FIN-WAIT-1, ...), `errno NAME|none`, `event NAME,...|none` (the
// events of the action lines since the last check, and of timers fired since; exact), `readable yes|no`,
// `eof yes|no`, `deadline TIME|none` (`nextDeadline`), `stat NAME N` (a `statistics` counter).

struct PacketScriptFailure: Error, CustomStringConvertible {
    var description: String
}

/// One segment the connection sent, stamped with the instant of the call that sent it.
struct SentSegment {
    var header: TCPHeader
    var payload: [UInt8]
    var time: Instant
}

struct CaptureSink: TCPSegmentSink {
    var now = Instant.zero
    var sent: [SentSegment] = []
    mutating func transmit(_ header: TCPHeader, payload: DemiBuffer?, endpoints: TCPEndpoints) {
        var bytes: [UInt8] = []
        if let p = payload {
            var c: DemiBuffer? = p
            while let b = c {
                bytes += b.array
                c = b.nextSegment
            }
            p.releaseChain()
        }
        sent.append(SentSegment(header: header, payload: bytes, time: now))
    }
}

/// The byte at stream offset `i` (0 is the first data byte) of the data either side sends.
func packetScriptPattern(_ i: Int, peer: Bool) -> UInt8 {
    UInt8(truncatingIfNeeded: peer ? i &* 13 &+ 101 : i &* 7 &+ 3)
}

/// A segment as written in a script.
struct ScriptSegment {
    var flags: TCPFlags
    var start: Int64
    var length: Int
    var ack: Int64?
    var window: Int?
    /// nil: not written.
    var options: ScriptOptions?
}

struct ScriptOptions {
    var mss: UInt16?
    var wscale: UInt8?
    var sackOK = false
    /// nil components: `*`.
    var timestamp: (value: UInt32?, echo: UInt32?)?
    var sacks: [(Int64, Int64)] = []
}

final class PacketScript {
    let name: String
    let lines: [Substring]

    // Configuration.
    var configuration = TCPConfiguration()
    var mtu = 1500
    var localISN: UInt32 = 1_000_000
    var peerISN: UInt32 = 3_000_000_000
    var timestampOffset: UInt32 = 100
    var peerWindow = 65535
    var tolerance: Int64 = 0

    let pool = BufferPool()
    let endpoints = TCPEndpoints(local: SocketAddressV4(IPv4Address(10, 0, 0, 1), 40000),
                                 remote: SocketAddressV4(IPv4Address(10, 0, 0, 2), 80))
    var connection: TCPConnection?
    var listening = false
    var sink = CaptureSink()
    var now = Instant.zero
    var events: TCPEvents = []
    var lineNumber = 0
    var configDone = false
    /// Transcript for failure messages.
    var log: [String] = []

    init(name: String, text: String) {
        self.name = name
        lines = text.split(separator: "\n", omittingEmptySubsequences: false)
    }

    func fail(_ message: String) -> PacketScriptFailure {
        let tail = log.suffix(12).joined(separator: "\n    ")
        return PacketScriptFailure(description: "\(name):\(lineNumber): \(message)\n  transcript (last lines):\n    \(tail)")
    }

    // MARK: - Running

    func run() throws(PacketScriptFailure) {
        for (i, raw) in lines.enumerated() {
            lineNumber = i + 1
            var line = raw
            if let hash = line.firstIndex(of: "#") { line = line[..<hash] }
            let text = line.pktTrimmed()
            if text.isEmpty { continue }
            if text.hasPrefix("config ") || text == "config" {
                guard !configDone else { throw fail("config after the first timed line") }
                try applyConfig(text.dropFirst(6))
                continue
            }
            configDone = true
            guard let space = text.firstIndex(where: { $0 == " " || $0 == "\t" }) else {
                throw fail("expected TIME DIRECTIVE")
            }
            let t = try parseTime(text[..<space])
            guard t >= now else { throw fail("time goes backwards (\(fmt(t)) < \(fmt(now)))") }
            for directive in text[space...].split(separator: ";") {
                let d = directive.pktTrimmed()
                if d.isEmpty { continue }
                try execute(d, at: t)
            }
        }
        try checkNoPending()
        if var c = connection {
            c.destroy()
            connection = nil
        }
        if pool.buffersInUse != 0 {
            throw fail("\(pool.buffersInUse) buffers still in use after destroy (leak)")
        }
    }

    func parseTime(_ s: Substring) throws(PacketScriptFailure) -> Instant {
        var s = s
        var relative = false
        if s.first == "+" {
            relative = true
            s = s.dropFirst()
        }
        guard let ns = parseSeconds(s) else { throw fail("bad time '\(s)'") }
        return relative ? now + .nanoseconds(ns) : Instant(nanoseconds: ns)
    }

    /// Decimal seconds to nanoseconds, exactly.
    func parseSeconds(_ s: Substring) -> Int64? {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count <= 2, let whole = Int64(parts[0].isEmpty ? "0" : parts[0]) else { return nil }
        var frac: Int64 = 0
        if parts.count == 2 {
            let f = parts[1]
            guard f.count <= 9, f.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
            frac = Int64(f + String(repeating: "0", count: 9 - f.count)) ?? 0
        }
        return whole * 1_000_000_000 + frac
    }

    func parseDuration(_ s: Substring) -> Duration? {
        for (suffix, scale) in [("ms", Int64(1_000_000)), ("us", 1_000), ("ns", 1), ("s", 1_000_000_000)]
        where s.hasSuffix(suffix) {
            let number = s.dropLast(suffix.count)
            guard let ns = parseSeconds(number) else { return nil }
            // parseSeconds scales by 1e9; rescale.
            return .nanoseconds(ns / 1_000_000_000 * scale + (ns % 1_000_000_000) * scale / 1_000_000_000)
        }
        return nil
    }

    func fmt(_ t: Instant) -> String {
        let ns = t.rawValue
        var frac = String(ns % 1_000_000_000)
        frac = String(repeating: "0", count: 9 - frac.count) + frac
        while frac.count > 3 && frac.hasSuffix("0") { frac.removeLast() }
        return "\(ns / 1_000_000_000).\(frac)"
    }

    /// Fires every timer due at or before `t`, at its deadline.
    func runTimers(upTo t: Instant) {
        var guardCount = 0
        while var c = connection, let d = c.nextDeadline, d <= t, guardCount < 10_000 {
            guardCount += 1
            let at = max(d, now)
            now = at
            sink.now = at
            connection = nil  // keep one copy while mutating
            let e = c.onTimer(now: at, sink: &sink)
            connection = c
            events.formUnion(e)
            log.append("\(fmt(at)) [timer] -> events \(eventNames(e)), \(c.state)")
        }
        now = t
        sink.now = t
    }

    func checkNoPending() throws(PacketScriptFailure) {
        if let s = sink.sent.first {
            throw fail("unexpected segment sent at \(fmt(s.time)): > \(describe(s))\(sink.sent.count > 1 ? " (and \(sink.sent.count - 1) more)" : "")")
        }
    }

    func withConnection<R>(_ body: (inout TCPConnection) throws(PacketScriptFailure) -> R) throws(PacketScriptFailure) -> R {
        guard var c = connection else { throw fail("no connection (use connect, or listen and inject a SYN)") }
        connection = nil
        defer { connection = c }
        return try body(&c)
    }

    static let actions: Set<String> = ["connect", "listen", "<", "push", "write", "output", "read", "close", "abort",
                                       "timer"]

    func execute(_ d: String, at t: Instant) throws(PacketScriptFailure) {
        let words = d.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        let verb = words[0]
        let isAction = Self.actions.contains(verb)
        if isAction { events = [] }
        runTimers(upTo: t)
        if verb != ">" { try checkNoPending() }
        let args = Array(words.dropFirst())
        switch verb {
        case "connect":
            guard connection == nil else { throw fail("connection exists") }
            var c = makeConnection()
            c.connect(now: now, sink: &sink)
            connection = c
            log.append("\(fmt(now)) connect")
        case "listen":
            listening = true
        case "<":
            try inject(try parseSegment(d.dropFirst(1), incoming: true))
        case ">":
            try expect(try parseSegment(d.dropFirst(1), incoming: false), text: d)
        case "push", "write":
            guard args.count == 1, let n = Int(args[0]), n > 0 else { throw fail("\(verb) N") }
            try withConnection { (c: inout TCPConnection) throws(PacketScriptFailure) in
                let offset = Int(c.bytesPushed)
                guard let b = pool.allocate(size: n) else { throw fail("allocation of \(n) bytes failed") }
                let p = b.bytes
                for i in 0..<n { p[i] = packetScriptPattern(offset + i, peer: false) }
                _ = c.enqueue(b)
                if verb == "push" { c.output(now: now, sink: &sink) }
            }
            log.append("\(fmt(now)) \(d)")
        case "output":
            try withConnection { (c: inout TCPConnection) in c.output(now: now, sink: &sink) }
        case "read":
            guard args.count == 1, let n = Int(args[0]) else { throw fail("read N") }
            try withConnection { (c: inout TCPConnection) throws(PacketScriptFailure) in
                var got: [UInt8] = []
                let offset = Int(c.receiveNext.rawValue &- peerISN &- 1) - c.receiveQueued - (c.finReceived ? 1 : 0)
                while let b = c.read() {
                    got += b.array
                    b.release()
                }
                guard got.count == n else { throw fail("read \(got.count) bytes, expected \(n)") }
                for (i, byte) in got.enumerated() where byte != packetScriptPattern(offset + i, peer: true) {
                    throw fail("read: byte \(i) (stream offset \(offset + i)) is \(byte), expected \(packetScriptPattern(offset + i, peer: true))")
                }
                c.output(now: now, sink: &sink)
            }
            log.append("\(fmt(now)) \(d)")
        case "close":
            try withConnection { (c: inout TCPConnection) in c.close(now: now, sink: &sink) }
            log.append("\(fmt(now)) close -> \(connection!.state)")
        case "abort":
            try withConnection { (c: inout TCPConnection) in c.abort(now: now, sink: &sink) }
            log.append("\(fmt(now)) abort")
        case "timer":
            try withConnection { (c: inout TCPConnection) in events.formUnion(c.onTimer(now: now, sink: &sink)) }
        case "state":
            guard args.count == 1 else { throw fail("state NAME") }
            let s = connection?.state.description ?? "CLOSED"
            guard s == args[0] else { throw fail("state is \(s), expected \(args[0])") }
        case "errno":
            guard args.count == 1 else { throw fail("errno NAME|none") }
            let e = connection?.error.map { String($0.description.prefix(while: { $0 != " " })) } ?? "none"
            guard e == args[0] else { throw fail("errno is \(e), expected \(args[0])") }
        case "event", "events":
            guard args.count == 1 else { throw fail("event NAME,...|none") }
            let want = try parseEvents(args[0])
            guard want == events else {
                throw fail("events are \(eventNames(events)), expected \(eventNames(want))")
            }
            events = []
        case "readable", "eof":
            guard args.count == 1, args[0] == "yes" || args[0] == "no" else { throw fail("\(verb) yes|no") }
            let v = verb == "readable" ? (connection?.isReadable ?? false) : (connection?.finReceived ?? false)
            guard v == (args[0] == "yes") else { throw fail("\(verb) is \(v ? "yes" : "no"), expected \(args[0])") }
        case "deadline":
            guard args.count == 1 else { throw fail("deadline TIME|none") }
            let got = connection?.nextDeadline
            let want: Instant? = args[0] == "none" ? nil : try parseTime(Substring(args[0]))
            guard got == want else {
                throw fail("next deadline is \(got.map(fmt) ?? "none"), expected \(want.map(fmt) ?? "none")")
            }
        case "stat":
            guard args.count == 2, let n = Int(args[1]) else { throw fail("stat NAME N") }
            guard let s = connection?.statistics else { throw fail("no connection") }
            let v: Int
            switch args[0] {
            case "retransmissions": v = s.retransmissions
            case "timeouts": v = s.timeouts
            case "fast_retransmits": v = s.fastRetransmits
            case "duplicate_acks": v = s.duplicateACKs
            case "out_of_order": v = s.outOfOrderSegments
            case "dropped": v = s.droppedSegments
            case "challenge_acks": v = s.challengeACKs
            case "segments_sent": v = s.segmentsSent
            case "segments_received": v = s.segmentsReceived
            case "tail_loss_probes": v = s.tailLossProbes
            case "lost_retransmissions": v = s.lostRetransmissions
            case "reorder_window_recoveries": v = s.reorderWindowRecoveries
            default: throw fail("unknown statistic \(args[0])")
            }
            guard v == n else { throw fail("statistic \(args[0]) is \(v), expected \(n)") }
        default:
            throw fail("unknown directive '\(verb)'")
        }
    }

    func makeConnection() -> TCPConnection {
        TCPConnection(endpoints: endpoints, configuration: configuration, pool: pool, mtu: mtu,
                      initialSequence: TCPSequence(localISN), timestampOffset: timestampOffset)
    }

    // MARK: - Configuration

    func applyConfig(_ text: Substring) throws(PacketScriptFailure) {
        for item in text.split(whereSeparator: { $0 == " " || $0 == "\t" }) {
            let kv = item.split(separator: "=", maxSplits: 1)
            guard kv.count == 2 else { throw fail("config: expected KEY=VALUE, got '\(item)'") }
            let key = String(kv[0])
            let v = kv[1]
            func bool() throws(PacketScriptFailure) -> Bool {
                switch v {
                case "on", "yes", "true": return true
                case "off", "no", "false": return false
                default: throw fail("config \(key): on|off")
                }
            }
            func int() throws(PacketScriptFailure) -> Int {
                guard let n = Int(v) else { throw fail("config \(key): a number") }
                return n
            }
            func duration() throws(PacketScriptFailure) -> Duration {
                guard let d = parseDuration(v) else { throw fail("config \(key): a duration (200ms, 1s)") }
                return d
            }
            switch key {
            case "delayed_ack": configuration.delayedACK = v == "off" ? nil : try duration()
            case "sack": configuration.selectiveAcknowledgments = try bool()
            case "rack": configuration.recentAcknowledgment = try bool()
            case "tlp": configuration.tailLossProbes = try bool()
            case "timestamps": configuration.timestamps = try bool()
            case "mss": configuration.maximumSegmentSize = try int()
            case "mtu": mtu = try int()
            case "window_scale": configuration.windowScale = UInt8(try int())
            case "rcvbuf": configuration.receiveBufferSize = try int()
            case "rto_min": configuration.retransmission.minimum = try duration()
            case "rto_initial": configuration.retransmission.initial = try duration()
            case "rto_max": configuration.retransmission.maximum = try duration()
            case "syn_retries": configuration.synRetries = try int()
            case "retries": configuration.maximumRetransmissions = try int()
            case "time_wait": configuration.timeWait = try duration()
            case "nagle": configuration.nagle = try bool()
            case "cc":
                guard let a = CongestionAlgorithm(rawValue: String(v)) else { throw fail("config cc: newreno|cubic") }
                configuration.congestionControl = a
            case "persist_max": configuration.maximumPersistInterval = try duration()
            case "keepalive": configuration.keepalive = v == "off" ? nil : try duration()
            case "keepalive_interval": configuration.keepaliveInterval = try duration()
            case "keepalive_probes": configuration.keepaliveProbes = try int()
            case "challenge_limit": configuration.challengeACKLimit = try int()
            case "isn": localISN = UInt32(truncatingIfNeeded: try int())
            case "peer_isn": peerISN = UInt32(truncatingIfNeeded: try int())
            case "ts_offset": timestampOffset = UInt32(truncatingIfNeeded: try int())
            case "peer_win": peerWindow = try int()
            case "tolerance": tolerance = try duration().nanoseconds
            default: throw fail("config: unknown key '\(key)'")
            }
        }
    }

    // MARK: - Segments

    func parseSegment(_ text: Substring, incoming: Bool) throws(PacketScriptFailure) -> ScriptSegment {
        var body = text
        var optionText: Substring?
        if let open = body.firstIndex(of: "<") {
            guard let close = body.lastIndex(of: ">"), open < close else { throw fail("unterminated <options>") }
            optionText = body[body.index(after: open)..<close]
            body = body[..<open]
        }
        let words = body.split(whereSeparator: { $0 == " " || $0 == "\t" })
        guard words.count >= 2 else { throw fail("segment: FLAGS START:END(LEN) [ack N] [win N] [<options>]") }
        var flags: TCPFlags = []
        for ch in words[0] {
            switch ch {
            case "S": flags.insert(.syn)
            case "F": flags.insert(.fin)
            case "R": flags.insert(.rst)
            case "P": flags.insert(.psh)
            case ".": flags.insert(.ack)
            case "U": flags.insert(.urg)
            case "E": flags.insert(.ece)
            case "W": flags.insert(.cwr)
            default: throw fail("unknown flag '\(ch)'")
            }
        }
        // START:END(LEN)
        let spec = words[1]
        guard let colon = spec.firstIndex(of: ":"), let paren = spec.firstIndex(of: "("), spec.last == ")",
              let start = Int64(spec[..<colon]), let end = Int64(spec[spec.index(after: colon)..<paren]),
              let length = Int(spec[spec.index(after: paren)..<spec.index(before: spec.endIndex)])
        else { throw fail("bad START:END(LEN) '\(spec)'") }
        guard end - start == Int64(length) else { throw fail("START:END(LEN) inconsistent: \(spec)") }
        var seg = ScriptSegment(flags: flags, start: start, length: length)
        var i = 2
        while i < words.count {
            guard i + 1 < words.count else { throw fail("'\(words[i])' needs a value") }
            switch words[i] {
            case "ack":
                guard let n = Int64(words[i + 1]) else { throw fail("bad ack") }
                seg.ack = n
            case "win":
                guard let n = Int(words[i + 1]) else { throw fail("bad win") }
                seg.window = n
            default:
                throw fail("unknown segment field '\(words[i])'")
            }
            i += 2
        }
        if let o = optionText { seg.options = try parseOptions(o) }
        return seg
    }

    func parseOptions(_ text: Substring) throws(PacketScriptFailure) -> ScriptOptions {
        var o = ScriptOptions()
        for item in text.split(separator: ",") {
            let w = item.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard let kind = w.first else { continue }
            switch kind {
            case "nop", "eol":
                continue
            case "mss":
                guard w.count == 2, let n = UInt16(w[1]) else { throw fail("mss N") }
                o.mss = n
            case "wscale":
                guard w.count == 2, let n = UInt8(w[1]) else { throw fail("wscale N") }
                o.wscale = n
            case "sackOK":
                o.sackOK = true
            case "TS":
                guard w.count == 5, w[1] == "val", w[3] == "ecr" else { throw fail("TS val V ecr E") }
                o.timestamp = (w[2] == "*" ? nil : UInt32(w[2]), w[4] == "*" ? nil : UInt32(w[4]))
            case "sack":
                for block in w.dropFirst() {
                    let lr = block.split(separator: ":")
                    guard lr.count == 2, let l = Int64(lr[0]), let r = Int64(lr[1]) else { throw fail("sack A:B ...") }
                    o.sacks.append((l, r))
                }
            default:
                throw fail("unknown option '\(kind)'")
            }
        }
        return o
    }

    func inject(_ s: ScriptSegment) throws(PacketScriptFailure) {
        var h = TCPHeader(sourcePort: endpoints.remote.port, destinationPort: endpoints.local.port,
                          sequence: TCPSequence(peerISN &+ UInt32(truncatingIfNeeded: s.start)),
                          acknowledgment: TCPSequence(s.ack.map { localISN &+ UInt32(truncatingIfNeeded: $0) } ?? 0),
                          flags: s.flags, window: UInt16(clamping: s.window ?? peerWindow))
        if let o = s.options {
            h.options.maximumSegmentSize = o.mss
            h.options.windowScale = o.wscale
            h.options.sackPermitted = o.sackOK
            if let ts = o.timestamp { h.options.timestamp = (ts.value ?? 0, ts.echo ?? 0) }
            for (l, r) in o.sacks {
                h.options.addSACK(SACKBlock(left: TCPSequence(localISN &+ UInt32(truncatingIfNeeded: l)),
                                            right: TCPSequence(localISN &+ UInt32(truncatingIfNeeded: r))))
            }
        }
        guard let payload = pool.allocate(size: s.length) else { throw fail("allocation failed") }
        let p = payload.bytes
        let dataOffset = Int(s.start) - 1
        for i in 0..<s.length { p[i] = packetScriptPattern(dataOffset + i, peer: true) }
        log.append("\(fmt(now)) < \(describe(h, length: s.length, outgoing: false))")
        if connection == nil {
            guard listening, s.flags.contains(.syn), !s.flags.contains(.ack) else {
                payload.release()
                throw fail("no connection for the injected segment (use listen and inject a SYN)")
            }
            payload.release()
            var c = makeConnection()
            c.accept(syn: h, now: now, sink: &sink)
            connection = c
            return
        }
        try withConnection { (c: inout TCPConnection) in
            let e = c.receive(h, payload: payload, now: now, sink: &sink)
            events.formUnion(e)
            log.append("    -> events \(eventNames(e)), \(c.state)")
        }
    }

    func expect(_ s: ScriptSegment, text: String) throws(PacketScriptFailure) {
        guard !sink.sent.isEmpty else {
            let next = connection?.nextDeadline.map(fmt) ?? "none"
            throw fail("expected \(text) at \(fmt(now)), but nothing was sent (next deadline: \(next), state \(connection?.state.description ?? "none"))")
        }
        let got = sink.sent.removeFirst()
        let h = got.header
        var diffs: [String] = []
        if got.time.rawValue < now.rawValue - tolerance || got.time.rawValue > now.rawValue + tolerance {
            diffs.append("sent at \(fmt(got.time)), expected at \(fmt(now))")
        }
        if h.sourcePort != endpoints.local.port || h.destinationPort != endpoints.remote.port {
            diffs.append("ports \(h.sourcePort)->\(h.destinationPort)")
        }
        if h.flags != s.flags { diffs.append("flags \(flagText(h.flags)), expected \(flagText(s.flags))") }
        let seq = Int64(Int32(bitPattern: h.sequence.rawValue &- localISN))
        if seq != s.start { diffs.append("seq \(seq), expected \(s.start)") }
        if got.payload.count != s.length { diffs.append("length \(got.payload.count), expected \(s.length)") }
        if let a = s.ack {
            let ack = Int64(Int32(bitPattern: h.acknowledgment.rawValue &- peerISN))
            if ack != a { diffs.append("ack \(ack), expected \(a)") }
        }
        if let w = s.window, Int(h.window) != w { diffs.append("win \(h.window), expected \(w)") }
        if let o = s.options {
            let g = h.options
            if g.maximumSegmentSize != o.mss { diffs.append("mss \(g.maximumSegmentSize.map { "\($0)" } ?? "none"), expected \(o.mss.map { "\($0)" } ?? "none")") }
            if g.windowScale != o.wscale { diffs.append("wscale \(g.windowScale.map { "\($0)" } ?? "none"), expected \(o.wscale.map { "\($0)" } ?? "none")") }
            if g.sackPermitted != o.sackOK { diffs.append("sackOK \(g.sackPermitted), expected \(o.sackOK)") }
            switch (g.timestamp, o.timestamp) {
            case (nil, nil): break
            case (let gt?, let ot?):
                if let v = ot.value, v != gt.value { diffs.append("TS val \(gt.value), expected \(v)") }
                if let e = ot.echo, e != gt.echo { diffs.append("TS ecr \(gt.echo), expected \(e)") }
            default: diffs.append("TS \(g.timestamp == nil ? "absent" : "present"), expected \(o.timestamp == nil ? "absent" : "present")")
            }
            let blocks = (0..<g.emittedSACKCount).map { k in
                let b = g.sackBlock(k)
                return (Int64(Int32(bitPattern: b.left.rawValue &- peerISN)), Int64(Int32(bitPattern: b.right.rawValue &- peerISN)))
            }
            if blocks.map({ "\($0.0):\($0.1)" }) != o.sacks.map({ "\($0.0):\($0.1)" }) {
                diffs.append("sack \(blocks.map { "\($0.0):\($0.1)" }), expected \(o.sacks.map { "\($0.0):\($0.1)" })")
            }
        }
        // Payload bytes: our pattern at the segment's stream offset.
        let dataOffset = Int(seq) - 1 - (h.flags.contains(.syn) ? 0 : 0)
        for (i, b) in got.payload.enumerated() where b != packetScriptPattern(dataOffset + i, peer: false) {
            diffs.append("payload byte \(i) (stream offset \(dataOffset + i)) is \(b), expected \(packetScriptPattern(dataOffset + i, peer: false))")
            break
        }
        log.append("\(fmt(got.time)) > \(describe(got))")
        if !diffs.isEmpty {
            throw fail("segment mismatch\n  expected: \(text)\n  got:      > \(describe(got)) (at \(fmt(got.time)))\n  differs:  \(diffs.joined(separator: "; "))")
        }
    }

    // MARK: - Printing

    func flagText(_ f: TCPFlags) -> String {
        var s = ""
        for (flag, c) in [(TCPFlags.syn, "S"), (.fin, "F"), (.rst, "R"), (.psh, "P"), (.urg, "U"), (.ece, "E"),
                          (.cwr, "W"), (.ack, ".")] where f.contains(flag) { s += c }
        return s.isEmpty ? "-" : s
    }

    func describe(_ s: SentSegment) -> String { describe(s.header, length: s.payload.count, outgoing: true) }

    func describe(_ h: TCPHeader, length: Int, outgoing: Bool) -> String {
        let (mine, theirs) = outgoing ? (localISN, peerISN) : (peerISN, localISN)
        let seq = Int64(Int32(bitPattern: h.sequence.rawValue &- mine))
        var s = "\(flagText(h.flags)) \(seq):\(seq + Int64(length))(\(length))"
        if h.flags.contains(.ack) { s += " ack \(Int64(Int32(bitPattern: h.acknowledgment.rawValue &- theirs)))" }
        s += " win \(h.window)"
        var o: [String] = []
        if let m = h.options.maximumSegmentSize { o.append("mss \(m)") }
        if h.options.sackPermitted { o.append("sackOK") }
        if let ts = h.options.timestamp { o.append("TS val \(ts.value) ecr \(ts.echo)") }
        if let w = h.options.windowScale { o.append("wscale \(w)") }
        if h.options.sackCount > 0 {
            o.append("sack " + h.options.sackBlocks.map {
                "\(Int64(Int32(bitPattern: $0.left.rawValue &- theirs))):\(Int64(Int32(bitPattern: $0.right.rawValue &- theirs)))"
            }.joined(separator: " "))
        }
        if !o.isEmpty { s += " <\(o.joined(separator: ","))>" }
        return s
    }

    static let eventTable: [(TCPEvents, String)] = [(.established, "established"), (.readable, "readable"),
                                                    (.acknowledged, "acknowledged"), (.failed, "failed"),
                                                    (.closed, "closed")]

    func eventNames(_ e: TCPEvents) -> String {
        let names = Self.eventTable.filter { e.contains($0.0) }.map(\.1)
        return names.isEmpty ? "none" : names.joined(separator: ",")
    }

    func parseEvents(_ s: String) throws(PacketScriptFailure) -> TCPEvents {
        if s == "none" { return [] }
        var e: TCPEvents = []
        for name in s.split(separator: ",") {
            guard let entry = Self.eventTable.first(where: { $0.1 == name }) else { throw fail("unknown event \(name)") }
            e.insert(entry.0)
        }
        return e
    }
}

extension StringProtocol {
    func pktTrimmed() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" || f == "\r" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\r" { s = s.dropLast() }
        return String(s)
    }
}
