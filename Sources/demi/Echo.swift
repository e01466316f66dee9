import ArgumentParser
import CDemiBaselines
import CDemiLinux
import Demikernel
import Foundation
import Synchronization

/// Tells a server loop running on another thread to stop.
final class StopFlag: Sendable {
    let value = Atomic<Bool>(false)
    var isSet: Bool { value.load(ordering: .relaxed) }
    func set() { value.store(true, ordering: .relaxed) }
}

/// An echo server over any network libOS: every popped array is pushed back unchanged (zero-copy: the popped buffer
/// is the pushed one).
enum EchoServer {
    /// Serves until `stop` is set (checked every 50 ms while idle) or, if `limit` is given, after that many messages.
    static func run(_ os: LibOS, proto: TransportProtocol, address: SocketAddressV4, stop: StopFlag?,
                    ready: ((SocketAddressV4) -> Void)? = nil, limit: Int? = nil) throws {
        let qd = try doing("socket") { try os.socket(.inet, proto == .tcp ? .stream : .datagram) }
        try doing("bind \(address)") { try os.bind(qd, to: address) }
        if proto == .tcp { try doing("listen on \(address)") { try os.listen(qd, backlog: 1024) } }
        ready?(try os.localAddress(qd))
        if proto == .udp {
            // One socket: pop, push the same array back to the sender, repeat.
            var served = 0
            var pop = try os.pop(qd)
            while stop?.isSet != true, limit.map({ served < $0 }) ?? true {
                guard let r = try waitOrIdle(os, pop, .milliseconds(50)) else { continue }
                guard let sga = r.sga, let from = sga.address else {
                    pop = try os.pop(qd)
                    continue
                }
                let push = try os.pushTo(qd, sga, to: from)  // the reply goes out first
                pop = try os.pop(qd)
                try os.sgafree(sga)
                _ = try os.wait(push)
                served += 1
            }
            try? os.close(qd)
            logger.info("echo server stopped", metadata: ["served": "\(served)"])
            return
        }
        var tokens: [QToken] = [proto == .tcp ? try os.accept(qd) : try os.pop(qd)]
        var served = 0
        tokens.reserveCapacity(256)
        while stop?.isSet != true, limit.map({ served < $0 }) ?? true {
            guard let (i, r) = try waitAnyOrIdle(os, tokens, .milliseconds(50)) else { continue }
            tokens.swapAt(i, tokens.count - 1)
            tokens.removeLast()
            switch r.opcode {
            case .accept:
                if case .accepted(let conn, let peer) = r.value {
                    logger.debug("accepted", metadata: ["peer": "\(peer)", "qd": "\(conn)"])
                    tokens.append(try os.pop(conn))
                } else if let e = r.error {
                    logger.warning("accept failed: \(e)")
                }
                tokens.append(try os.accept(qd))
            case .pop:
                guard let sga = r.sga else { continue }
                if sga.count == 0 {  // end of file
                    try os.sgafree(sga)
                    logger.debug("connection closed by peer", metadata: ["qd": "\(r.qd)"])
                    try? os.close(r.qd)
                    continue
                }
                let push = proto == .tcp ? try os.push(r.qd, sga) : try os.pushTo(r.qd, sga, to: sga.address!)
                try os.sgafree(sga)
                tokens.append(push)
                tokens.append(try os.pop(r.qd))
                served += 1
            case .push, .close:
                break
            case .failed:
                logger.debug("operation failed", metadata: ["qd": "\(r.qd)", "errno": "\(r.error?.name ?? "-")"])
                if r.error == .connectionReset || r.error == .canceled { try? os.close(r.qd) }
            default:
                break
            }
        }
        try? os.close(qd)
        logger.info("echo server stopped", metadata: ["served": "\(served)"])
    }
}

struct Echo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run an echo server (TCP or UDP).",
        discussion: """
            Every popped array is pushed back unchanged (zero-copy). TCP serves any number of connections at once, \
            waiting on all of their operations with waitAny. Stops after --count messages, or never.
            Example: demi echo --proto tcp --addr 127.0.0.1:12345 --cpu 1
            """)

    @OptionGroup var libos: LibOSOptions
    @OptionGroup var logging: LoggingOptions
    @Option(help: "Address to listen on.") var addr = SocketAddressV4(.loopback, 12345)
    @Option(help: "udp or tcp.") var proto: TransportProtocol = .udp
    @Option(help: "Stop after this many messages (default: never).") var count: Int?
    @Option(help: "Pin to this CPU.") var cpu: Int?

    func run() throws {
        logging.configure()
        if let cpu, cdemi_pin_to_cpu(Int32(cpu)) != 0 { logger.warning("could not pin to CPU \(cpu)") }
        let os = try doing("starting the libOS") { try libos.make() }
        let name = os.name.codename
        let proto = self.proto
        try EchoServer.run(os, proto: proto, address: addr, stop: nil, ready: { a in
            print("demi echo: \(name) \(proto) on \(a)")
            fflush(nil)
        }, limit: count)
        printStatistics(os)
    }
}

/// Prints the libOS's non-zero counters (frames, drops, checksum errors, retransmissions, ...).
func printStatistics(_ os: LibOS) {
    let pairs = os.statistics.filter { $0.1 != 0 }
    guard !pairs.isEmpty else { return }
    print("  \(os.name.codename) statistics: " + pairs.map { "\($0.0)=\($0.1)" }.joined(separator: " "))
}


/// The far end of a shared-memory pipe for `demi bench`: echoes every message until end-of-file.
struct SharedMemoryEcho: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shm-echo", abstract: "Echo on a shared-memory pipe (used by demi bench).", shouldDisplay: false)

    @Argument var name: String
    /// Further pipes to serve (many clients): every pipe is echoed, waiting on all of them at once.
    @Argument var more: [String] = []
    @Option var cpu: Int?
    /// Sink mode first (one-way streaming): pop this many messages, then answer with one 1-byte message.
    @Option var sink: Int?
    /// Echo with catmem's ring format written in plain C instead of the libOS (one pipe, whole messages of one record).
    @Flag var plainC = false

    func run() throws {
        if plainC {
            let deadline = Date().addingTimeInterval(20)
            while true {
                let rc = demi_baseline_catmem_echo_named(name, Int32(cpu ?? -1))
                if rc == 0 { return }
                guard rc == ENOENT && Date() < deadline else { throw Errno(rawValue: rc) }
                usleep(200)
            }
        }
        if let cpu { _ = cdemi_pin_to_cpu(Int32(cpu)) }
        let os = try LibOS(.sharedMemory)
        var qd: QDesc?
        let deadline = Date().addingTimeInterval(20)
        while qd == nil {
            do { qd = try os.openPipe(name) } catch {
                guard (error == .noEntry || error == .wouldBlock) && Date() < deadline else { throw error }
                usleep(200)
            }
        }
        if !more.isEmpty {
            try echoMany(os, [qd!] + openAll(os, more))
            return
        }
        if let sink {
            for _ in 0..<sink {
                let r = try os.wait(try os.pop(qd!))
                guard let sga = r.sga, sga.count > 0 else { throw r.error ?? Errno.connectionReset }
                try os.sgafree(sga)
            }
            let done = try os.sgaalloc(1)
            _ = try os.wait(try os.push(qd!, done))
            try os.sgafree(done)
        }
        while true {
            let r = try os.wait(try os.pop(qd!))
            guard let sga = r.sga, sga.count > 0 else {
                if let s = r.sga { try os.sgafree(s) }
                break
            }
            _ = try os.wait(try os.push(qd!, sga))
            try os.sgafree(sga)
        }
        try os.close(qd!)
    }
}

extension SharedMemoryEcho {
    func openAll(_ os: LibOS, _ names: [String]) throws -> [QDesc] {
        let deadline = Date().addingTimeInterval(20)
        var qds: [QDesc] = []
        for n in names {
            while true {
                do {
                    qds.append(try os.openPipe(n))
                    break
                } catch {
                    guard (error == .noEntry || error == .wouldBlock) && Date() < deadline else { throw error }
                    usleep(200)
                }
            }
        }
        return qds
    }

    /// Echoes on every pipe of `qds` until each has ended, one pop armed on each, waiting on all at once.
    func echoMany(_ os: LibOS, _ qds: [QDesc]) throws {
        var pops = try qds.map { try os.pop($0) }
        var owner = Array(qds.indices)   // pops[k] belongs to qds[owner[k]]
        while !pops.isEmpty {
            let (k, r) = try os.waitAny(pops)
            let q = qds[owner[k]]
            guard let sga = r.sga, sga.count > 0 else {
                if let s = r.sga { try os.sgafree(s) }
                try? os.close(q)
                pops.remove(at: k)
                owner.remove(at: k)
                continue
            }
            _ = try os.wait(try os.push(q, sga))
            try os.sgafree(sga)
            pops[k] = try os.pop(q)
        }
    }
}

/// Waits for `qt`; nil if the timeout passed first (other errors are thrown).
func waitOrIdle(_ os: LibOS, _ qt: QToken, _ timeout: Duration) throws(Errno) -> QResult? {
    do { return try os.wait(qt, timeout: timeout) } catch {
        if error == .timedOut { return nil }
        throw error
    }
}

/// Waits for any of `qts`; nil if the timeout passed first (other errors are thrown).
func waitAnyOrIdle(_ os: LibOS, _ qts: [QToken], _ timeout: Duration) throws(Errno) -> (Int, QResult)? {
    do { return try os.waitAny(qts, timeout: timeout) } catch {
        if error == .timedOut { return nil }
        throw error
    }
}
