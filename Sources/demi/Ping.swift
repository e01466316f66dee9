import ArgumentParser
import CDemiLinux
import Demikernel
import Foundation

/// A closed-loop client: each connection keeps one message in flight and times its round trip.
enum PingClient {
    struct Outcome {
        var samples: [UInt64]
        var elapsedNs: UInt64
        var messages: Int
    }

    static func run(_ os: LibOS, proto: TransportProtocol, server: SocketAddressV4, size: Int, count: Int,
                    warmup: Int, connections: Int) throws -> Outcome {
        precondition(size > 0 && connections > 0)
        if connections == 1 { return try runOne(os, proto: proto, server: server, size: size, count: count, warmup: warmup) }
        var qds: [QDesc] = []
        for _ in 0..<connections {
            let qd = try os.socket(.inet, proto == .tcp ? .stream : .datagram)
            if proto == .tcp {
                try doing("connect to \(server)") {
                    let r = try os.wait(try os.connect(qd, to: server), timeout: .seconds(10))
                    if let e = r.error { throw e }
                }
            } else {
                try os.bind(qd, to: SocketAddressV4(.any, 0))
            }
            qds.append(qd)
        }
        let messages = try qds.map { _ in try os.sgaalloc(size) }
        messages.forEach(fillMessage)
        var started = [UInt64](repeating: 0, count: connections)
        var received = [Int](repeating: 0, count: connections)
        var tokens: [QToken] = []
        var owner: [Int] = []
        var samples: [UInt64] = []
        samples.reserveCapacity(count)
        let total = warmup + count
        var sent = 0
        var done = 0

        func send(_ c: Int) throws {
            started[c] = now()
            let push = proto == .tcp ? try os.push(qds[c], messages[c]) : try os.pushTo(qds[c], messages[c], to: server)
            let r = try os.wait(push)
            if let e = r.error { throw e }
            received[c] = 0
            tokens.append(try os.pop(qds[c]))
            owner.append(c)
            sent += 1
        }

        var t0 = now()
        for c in 0..<min(connections, total) { try send(c) }
        while done < total {
            let (i, r) = try os.waitAny(tokens, timeout: .seconds(10))
            let c = owner[i]
            tokens.swapAt(i, tokens.count - 1)
            tokens.removeLast()
            owner.swapAt(i, owner.count - 1)
            owner.removeLast()
            guard let sga = r.sga else { throw r.error ?? .ioError }
            received[c] += sga.count
            let eof = sga.count == 0
            try os.sgafree(sga)
            if eof { throw Errno.connectionReset }
            if received[c] < size {
                tokens.append(try os.pop(qds[c]))
                owner.append(c)
                continue
            }
            let rtt = now() - started[c]
            if done >= warmup { samples.append(rtt) } else if done == warmup - 1 { t0 = now() }
            done += 1
            if sent < total { try send(c) }
        }
        let elapsed = now() - t0
        for m in messages { try os.sgafree(m) }
        for q in qds { try os.close(q) }
        return Outcome(samples: samples, elapsedNs: elapsed, messages: count)
    }
}

extension PingClient {
    /// One connection, one message in flight: push, wait, pop until the echo is whole.
    static func runOne(_ os: LibOS, proto: TransportProtocol, server: SocketAddressV4, size: Int, count: Int,
                       warmup: Int) throws -> Outcome {
        let qd = try os.socket(.inet, proto == .tcp ? .stream : .datagram)
        if proto == .tcp {
            try doing("connect to \(server)") {
                if let e = try os.wait(try os.connect(qd, to: server), timeout: .seconds(10)).error { throw e }
            }
        } else {
            // A connected UDP socket, like the C baseline's client: the kernel keeps the route.
            try os.bind(qd, to: SocketAddressV4(.any, 0))
            if let e = try os.wait(try os.connect(qd, to: server)).error { throw e }
        }
        let msg = try os.sgaalloc(size)
        fillMessage(msg)
        var samples = [UInt64](repeating: 0, count: count)
        var t0 = now()
        for i in 0..<(warmup + count) {
            if i == warmup { t0 = now() }
            let start = now()
            if let e = try os.wait(try os.push(qd, msg)).error { throw e }
            var got = 0
            while got < size {
                let r = try os.wait(try os.pop(qd))
                guard let sga = r.sga, sga.count > 0 else { throw r.error ?? Errno.connectionReset }
                got += sga.count
                try os.sgafree(sga)
            }
            if i >= warmup { samples[i - warmup] = now() - start }
        }
        let elapsed = now() - t0
        try os.sgafree(msg)
        try os.close(qd)
        return Outcome(samples: samples, elapsedNs: elapsed, messages: count)
    }
}

@inline(__always)
func now() -> UInt64 { UInt64(Instant.now().rawValue) }

/// Writes a byte pattern into every segment of a message about to be sent, as an application would (and as the C
/// baselines do): a benchmark should not send memory it never wrote.
func fillMessage(_ sga: ScatterGatherArray) {
    var seg = sga.head
    while let b = seg {
        let p = b.baseAddress
        for k in 0..<b.count { p.storeBytes(of: UInt8(truncatingIfNeeded: k), toByteOffset: k, as: UInt8.self) }
        seg = b.nextSegment
    }
}

struct Ping: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure round trips against an echo server.",
        discussion: """
            A closed-loop client: each connection keeps one message in flight. After --warmup untimed round trips it \
            times --count more and prints the p50, p99 and p99.9 round trip and the throughput (messages per \
            second and Gbit/s each way).
            Example: demi ping --proto tcp --addr 127.0.0.1:12345 --size 1024 --connections 4
            """)

    @OptionGroup var libos: LibOSOptions
    @OptionGroup var logging: LoggingOptions
    @Option(help: "The echo server.") var addr = SocketAddressV4(.loopback, 12345)
    @Option(help: "udp or tcp.") var proto: TransportProtocol = .udp
    @Option(help: "Message size in bytes.") var size = 64
    @Option(help: "Round trips to time (after warm-up).") var count = 100_000
    @Option(help: "Untimed round trips first.") var warmup = 1000
    @Option(help: "Concurrent connections, one message in flight each.") var connections = 1
    @Option(help: "Pin to this CPU.") var cpu: Int?

    func validate() throws {
        guard size > 0, size <= (proto == .udp ? 65507 : 1 << 24) else { throw ValidationError("bad --size") }
        guard count > 0, warmup >= 0, connections > 0 else { throw ValidationError("bad counts") }
    }

    func run() throws {
        logging.configure()
        if let cpu, cdemi_pin_to_cpu(Int32(cpu)) != 0 { logger.warning("could not pin to CPU \(cpu)") }
        let os = try doing("starting the libOS") { try libos.make() }
        logger.debug("pinging", metadata: ["server": "\(addr)", "proto": "\(proto)", "size": "\(size)"])
        let o = try PingClient.run(os, proto: proto, server: addr, size: size, count: count, warmup: warmup,
                                   connections: connections)
        let s = LatencySummary(o.samples)
        let rate = Double(o.messages) / (Double(o.elapsedNs) / 1e9)
        print("demi ping: \(os.name.codename) \(proto) \(size) B x \(count), \(connections) connection(s) to \(addr)")
        print("  rtt p50 \(formatNs(s.p50))  p99 \(formatNs(s.p99))  p99.9 \(formatNs(s.p999))  min \(formatNs(s.min))")
        print(String(format: "  throughput %.0f msgs/s, %.3f Gbit/s each way", rate, rate * Double(size) * 8 / 1e9))
        printStatistics(os)
    }
}
