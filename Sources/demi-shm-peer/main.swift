// A peer process for the shared-memory libOS tests and benchmarks: attaches to named pipes and exchanges messages.
//
//   demi-shm-peer exchange NAME COUNT     push COUNT patterned messages and pop COUNT, checking each; exit 0 if all match
//   demi-shm-peer send-close NAME COUNT   push COUNT messages, then close (the other side sees end-of-file)
//   demi-shm-peer send-hang NAME COUNT    push COUNT messages, then wait for ever (to be killed)
//   demi-shm-peer echo NAME [NAME...]     echo every message on every pipe until each sees end-of-file
//   demi-shm-peer pingpong NAME COUNT     in one thread, two libOSes: COUNT round trips of 64 bytes through a pipe, the
//                                         calls of `demi bench`'s client and echo server (for callgrind instruction counts)
import Demikernel
import Foundation
import SharedMemoryPattern

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("demi-shm-peer: \(message)\n".utf8))
    exit(2)
}

func attach(_ os: LibOS, _ name: String) -> QDesc {
    let deadline = Date().addingTimeInterval(20)
    while true {
        do { return try os.openPipe(name) } catch {
            if (error == .noEntry || error == .wouldBlock) && Date() < deadline {
                usleep(1000)
                continue
            }
            fail("open \(name): \(error)")
        }
    }
}

let args = CommandLine.arguments
guard args.count >= 3 else { fail("usage: demi-shm-peer MODE NAME [COUNT]") }
let os: LibOS
do { os = try LibOS(.sharedMemory) } catch { fail("\(error)") }

do {
    switch args[1] {
    case "exchange":
        let qd = attach(os, args[2])
        let count = Int(args[3]) ?? 0
        let bad = try exchange(os, qd, count: count)
        try os.close(qd)
        exit(bad == 0 ? 0 : 1)
    case "send-close", "send-hang":
        let qd = attach(os, args[2])
        let count = Int(args[3]) ?? 0
        for i in 0..<count {
            let sga = try patterned(os, index: i)
            _ = try os.wait(try os.push(qd, sga))
            try os.sgafree(sga)
        }
        if args[1] == "send-hang" { while true { sleep(60) } }
        try os.close(qd)
    case "echo":
        var qds = args[2...].map { attach(os, $0) }
        var tokens = try qds.map { try os.pop($0) }
        while !qds.isEmpty {
            let (i, r) = try os.waitAny(tokens)
            guard r.opcode == .pop, let sga = r.sga else { fail("echo: \(r)") }
            if sga.count == 0 {
                try os.sgafree(sga)
                try os.close(qds[i])
                qds.remove(at: i)
                tokens.remove(at: i)
                continue
            }
            _ = try os.wait(try os.push(qds[i], sga))
            try os.sgafree(sga)
            tokens[i] = try os.pop(qds[i])
        }
    case "pingpong":
        let b = try LibOS(.sharedMemory)
        let client = try os.createPipe(args[2])
        let server = try b.openPipe(args[2])
        let count = Int(args[3]) ?? 0
        let msg = try os.sgaalloc(64)
        var serverPop = try b.pop(server)  // as in two processes: each side's pop waits before the message comes
        for _ in 0..<count {
            _ = try os.wait(try os.push(client, msg))
            let clientPop = try os.pop(client)
            let r = try b.wait(serverPop)
            _ = try b.wait(try b.push(server, r.sga!))
            try b.sgafree(r.sga!)
            serverPop = try b.pop(server)
            let e = try os.wait(clientPop)
            guard e.sga?.count == 64 else { fail("pingpong: \(e)") }
            try os.sgafree(e.sga!)
        }
        try os.sgafree(msg)
        try os.close(client)
        try b.close(server)
    default:
        fail("unknown mode \(args[1])")
    }
} catch {
    fail("\(error)")
}
