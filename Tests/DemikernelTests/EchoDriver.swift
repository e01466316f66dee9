import Demikernel

/// An echo server on `os` (TCP, and UDP if `udpPort` is given), driven one step at a time from a polling loop.
final class EchoDriver {
    let os: LibOS
    let listener: QDesc
    var accept: QToken?
    var conns: [QDesc: QToken] = [:]
    var pushes: [QToken] = []
    var echoed = 0
    var closed = 0
    var udp: QDesc?
    var udpPop: QToken?
    var udpEchoed = 0

    init(_ os: LibOS, port: UInt16, udpPort: UInt16? = nil) throws {
        self.os = os
        listener = try os.socket(.inet, .stream)
        try os.bind(listener, to: SocketAddressV4(.any, port))
        try os.listen(listener, backlog: 16)
        accept = try os.accept(listener)
        if let udpPort {
            let u = try os.socket(.inet, .datagram)
            try os.bind(u, to: SocketAddressV4(.any, udpPort))
            udp = u
            udpPop = try os.pop(u)
        }
    }

    func step() throws {
        let s = os.scheduler
        if let qt = accept, let r = s.take(qt) {
            if case .accepted(let c, _) = r.value { conns[c] = try os.pop(c) }
            accept = try os.accept(listener)
        }
        for (c, qt) in conns {
            guard let r = s.take(qt) else { continue }
            guard let sga = r.sga, sga.count > 0 else {
                if let sga = r.sga { try os.sgafree(sga) }
                conns[c] = nil
                try os.close(c)
                closed += 1
                continue
            }
            echoed += sga.count
            pushes.append(try os.push(c, sga))
            try os.sgafree(sga)
            conns[c] = try os.pop(c)
        }
        pushes.removeAll { s.take($0) != nil }
        if let u = udp, let qt = udpPop, let r = s.take(qt) {
            if let sga = r.sga, let from = sga.address {
                udpEchoed += 1
                _ = try os.pushTo(u, sga, to: from)
                try os.sgafree(sga)
            }
            udpPop = try os.pop(u)
        }
    }
}
