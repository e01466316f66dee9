import CDemiBaselines
import Demikernel
import Foundation
import Glibc
import SharedMemoryPattern
import Testing

/// A unique pipe name per test and process, so parallel tests never collide.
func pipeName(_ tag: String) -> String {
    "test-\(getpid())-\(tag)-\(UInt32.random(in: 0...UInt32.max))"
}

/// The `/dev/shm` entries of this project's pipes whose name contains `tag`.
func leftovers(_ tag: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? []).filter {
        $0.hasPrefix("demi-") && $0.contains(tag)
    }
}

/// Runs the peer process (built next to the test bundle).
func startPeer(_ arguments: [String]) throws -> Process {
    let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    var exe = dir.appendingPathComponent("demi-shm-peer")
    if !FileManager.default.fileExists(atPath: exe.path) {
        // swift test runs the bundle from .build/<triple>/<config>/; the executable sits beside it.
        exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
            .appendingPathComponent("demi-shm-peer")
    }
    let p = Process()
    p.executableURL = exe
    p.arguments = arguments
    try p.run()
    return p
}

@Suite struct SharedMemoryTests {
    @Test func pipeWithinOneProcess() throws {
        let a = try LibOS(.sharedMemory)
        let b = try LibOS(.sharedMemory)
        let name = pipeName("inproc")
        let qa = try a.createPipe(name)
        #expect(throws: Errno.exists) { try a.createPipe(name) }
        let qb = try b.openPipe(name)
        #expect(leftovers(name).isEmpty, "the name is removed once the pipe is attached")
        #expect(throws: Errno.noEntry) { try b.openPipe(name) }
        // Both directions, with the push completing as soon as the bytes are in the ring.
        for (from, fq, to, tq) in [(a, qa, b, qb), (b, qb, a, qa)] {
            let sga = try from.sgaalloc(copying: Array("hello".utf8))
            _ = try from.wait(try from.push(fq, sga))
            try from.sgafree(sga)
            let r = try to.wait(try to.pop(tq))
            #expect(r.sga?.bytes == Array("hello".utf8))
            try to.sgafree(r.sga!)
        }
        // End-of-file after the data.
        let last = try a.sgaalloc(copying: [1, 2, 3])
        _ = try a.wait(try a.push(qa, last))
        try a.sgafree(last)
        try a.close(qa)
        let d = try b.wait(try b.pop(qb))
        #expect(d.sga?.bytes == [1, 2, 3])
        try b.sgafree(d.sga!)
        for _ in 0..<2 {
            let eof = try b.wait(try b.pop(qb))
            #expect(eof.opcode == .pop && eof.sga?.count == 0)
            try b.sgafree(eof.sga!)
        }
        // Pushing to a closed peer is a broken pipe.
        let x = try b.sgaalloc(1)
        let r = try b.wait(try b.push(qb, x))
        #expect(r.opcode == .failed && r.error == .brokenPipe)
        try b.sgafree(x)
        try b.close(qb)
        #expect(a.pool.buffersInUse == 0 && b.pool.buffersInUse == 0)
    }

    @Test func namesAndErrors() throws {
        let os = try LibOS(.sharedMemory)
        for bad in ["", ".hidden", "a/b", "has space", String(repeating: "x", count: 201), "ünï"] {
            #expect(throws: Errno.invalidArgument) { try os.createPipe(bad) }
            #expect(throws: Errno.invalidArgument) { try os.openPipe(bad) }
        }
        #expect(throws: Errno.noEntry) { try os.openPipe(pipeName("missing")) }
        let name = pipeName("busy")
        let q = try os.createPipe(name)
        let other = try LibOS(.sharedMemory)
        _ = try other.openPipe(name)
        #expect(throws: Errno.noEntry) { try LibOS(.sharedMemory).openPipe(name) }
        #expect(throws: Errno.notSupported) { try os.socket(.inet, .stream) }
        #expect(throws: Errno.notSupported) { try LibOS(.kernelSockets).createPipe("x") }
        #expect(throws: Errno.invalidArgument) { try os.push(q, .empty) }
        let big = try os.sgaalloc(os.configuration.maxMessageSize + 1)
        #expect(throws: Errno.messageTooLong) { try os.push(q, big) }
        try os.sgafree(big)
        let pending = try os.pop(q)
        try os.close(q)
        let r = try os.wait(pending)
        #expect(r.opcode == .failed && r.error == .canceled)
        #expect(throws: Errno.badDescriptor) { try os.close(q) }
    }

    @Test func creatorClosingBeforeAnyoneAttachesLeavesNothing() throws {
        let os = try LibOS(.sharedMemory)
        let name = pipeName("unopened")
        let q = try os.createPipe(name)
        #expect(leftovers(name).count == 1)
        try os.close(q)
        #expect(leftovers(name).isEmpty)
    }

    @Test func messagesLargerThanTheRingAreFragmented() throws {
        var c = Configuration()
        c.ringSize = 4096
        let a = try LibOS(.sharedMemory, configuration: c)
        let b = try LibOS(.sharedMemory, configuration: c)
        let name = pipeName("frag")
        let qa = try a.createPipe(name)
        let qb = try b.openPipe(name)
        for size in [1, 2031, 2032, 2033, 4096, 100_000] {
            let sga = try a.sgaalloc(size)
            for k in 0..<size { sga.head!.bytes[k] = UInt8(truncatingIfNeeded: k &* 13) }
            let pt = try a.push(qa, sga)
            try a.sgafree(sga)
            let popToken = try b.pop(qb)
            // Drive both sides until both complete.
            var pushed = false
            var popped: QResult?
            while !pushed || popped == nil {
                if !pushed, (try? a.wait(pt, timeout: .zero)) != nil { pushed = true }
                if popped == nil { popped = try? b.wait(popToken, timeout: .zero) }
            }
            let got = try #require(popped?.sga)
            #expect(got.count == size)
            #expect(got.bytes == (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 13) })
            try b.sgafree(got)
        }
    }

    @Test func largeMessagesAfterSmallOnesWhileTheRingRewinds() throws {
        // Small messages in ping-pong keep to the ring's first 4 KiB (the producer rewinds when it finds the ring
        // empty); a large one pushed when a rewind is due must still go through, however little of the ring is
        // behind the rewind point. Each size follows 0 to 60 small messages, so it meets every offset of a lap.
        var c = Configuration()
        c.ringSize = 65536
        let a = try LibOS(.sharedMemory, configuration: c)
        let b = try LibOS(.sharedMemory, configuration: c)
        let name = pipeName("rewind")
        let qa = try a.createPipe(name)
        let qb = try b.openPipe(name)
        func exchange(_ size: Int, _ seed: Int) throws {
            let sga = try a.sgaalloc(size)
            for k in 0..<size { sga.head!.bytes[k] = UInt8(truncatingIfNeeded: k &* 7 &+ seed) }
            let pt = try a.push(qa, sga)
            try a.sgafree(sga)
            let popToken = try b.pop(qb)
            var pushed = false
            var popped: QResult?
            let deadline = Date().addingTimeInterval(5)
            while (!pushed || popped == nil) && Date() < deadline {
                if !pushed, (try? a.wait(pt, timeout: .zero)) != nil { pushed = true }
                if popped == nil { popped = try? b.wait(popToken, timeout: .zero) }
            }
            #expect(pushed, "push of \(size) bytes stuck")
            let got = try #require(popped?.sga)
            #expect(got.count == size)
            #expect(got.bytes == (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ seed) })
            try b.sgafree(got)
        }
        for smalls in 0...60 {
            for i in 0..<smalls { try exchange(64, i) }
            try exchange(20_000, smalls)
        }
        try a.close(qa)
        try b.close(qb)
    }

    @Test func memoryQueueHandsArraysOverWithoutCopying() throws {
        let os = try LibOS(.sharedMemory)
        let q = try os.queue()
        let early = try os.pop(q)
        let sga = try os.sgaalloc(copying: [5, 6, 7])
        let data = sga.head!.baseAddress
        _ = try os.wait(try os.push(q, sga))
        let r = try os.wait(early)
        #expect(r.sga?.bytes == [5, 6, 7])
        #expect(r.sga?.head?.baseAddress == data, "zero-copy: the popped view shares the pushed bytes")
        try os.sgafree(sga)  // pusher and popper each free their own handle
        try os.sgafree(r.sga!)
        #expect(os.pool.buffersInUse == 0)
        // Order is kept, and waitAny works across memory queues.
        let q2 = try os.queue()
        for i in 0..<5 {
            let s = try os.sgaalloc(copying: [UInt8(i)])
            _ = try os.push(i % 2 == 0 ? q : q2, s)
            try os.sgafree(s)
        }
        var seen: [UInt8] = []
        var tokens = [try os.pop(q), try os.pop(q2)]
        while seen.count < 5 {
            let (i, r) = try os.waitAny(tokens)
            seen += r.sga!.bytes
            try os.sgafree(r.sga!)
            tokens[i] = try os.pop(i == 0 ? q : q2)
        }
        #expect(seen.filter { $0 % 2 == 0 } == [0, 2, 4] && seen.filter { $0 % 2 == 1 } == [1, 3])
        try os.close(q)
        try os.close(q2)
    }

    // MARK: - Two real processes

    @Test func twoProcessesExchangeAMillionMessages() throws {
        let os = try LibOS(.sharedMemory)
        let name = pipeName("million")
        let q = try os.createPipe(name)
        let each = 500_000  // each side pushes this many and pops this many: 1,000,000 messages in all
        let peer = try startPeer(["exchange", name, "\(each)"])
        let bad = try exchange(os, q, count: each)
        peer.waitUntilExit()
        #expect(bad == 0)
        #expect(peer.terminationStatus == 0, "the peer checked every message it received")
        try os.close(q)
        #expect(leftovers(name).isEmpty)
        #expect(os.pool.buffersInUse == 0)
    }

    @Test func endOfFileFromAnotherProcess() throws {
        let os = try LibOS(.sharedMemory)
        let name = pipeName("eof")
        let q = try os.createPipe(name)
        let peer = try startPeer(["send-close", name, "100"])
        for i in 0..<100 {
            let r = try os.wait(try os.pop(q))
            #expect(r.sga.map { matches($0, index: i) } == true)
            try os.sgafree(r.sga!)
        }
        let eof = try os.wait(try os.pop(q))
        #expect(eof.opcode == .pop && eof.sga?.count == 0)
        try os.sgafree(eof.sga!)
        peer.waitUntilExit()
        #expect(peer.terminationStatus == 0)
        try os.close(q)
        #expect(leftovers(name).isEmpty)
    }

    @Test func aPopReturnedStraightFromTheRingConsumesItsToken() throws {
        let os = try LibOS(.sharedMemory)
        let name = pipeName("consumed")
        let q = try os.createPipe(name)
        let live = { os.statistics.first { $0.0 == "live_operations" }?.1 }
        let before = live()  // the peer-liveness coroutine
        // The first pop waits before the peer has started, so its wait spins on the ring and returns the message
        // before the slot is retired; the token must be consumed all the same.
        let peer = try startPeer(["send-close", name, "20"])
        for i in 0..<20 {
            let qt = try os.pop(q)
            let r = try os.wait(qt)
            #expect(r.qt == qt && r.opcode == .pop && r.sga.map { matches($0, index: i) } == true)
            #expect(throws: Errno.invalidArgument) { try os.wait(qt) }
            #expect(throws: Errno.invalidArgument) { try os.waitAny([qt]) }
            try os.sgafree(r.sga!)
        }
        let eof = try os.wait(try os.pop(q))
        #expect(eof.sga?.count == 0)
        try os.sgafree(eof.sga!)
        peer.waitUntilExit()
        try os.close(q)
        #expect(live() == before, "every pop's slot is retired")
        #expect(os.pool.buffersInUse == 0)
    }

    /// A ping-pong's next pop takes over the slot of the pop whose message it just had (still parked, still its queue's
    /// only pop): the old token must be consumed, the new one must behave as any other pop's, and nothing may be left.
    @Test func aPingPongsNextPopTakesOverTheLastOnesSlot() throws {
        let a = try LibOS(.sharedMemory)
        let b = try LibOS(.sharedMemory)
        let name = pipeName("rearm")
        let qa = try a.createPipe(name)
        let qb = try b.openPipe(name)
        let live = { b.statistics.first { $0.0 == "live_operations" }?.1 }
        let before = live()
        var pop = try b.pop(qb)  // parks: nothing there yet
        for i in 0..<200 {
            let message = (0..<(1 + i % 64)).map { UInt8(truncatingIfNeeded: i &* 7 &+ $0) }
            let m = try a.sgaalloc(copying: message)
            _ = try a.wait(try a.push(qa, m))
            try a.sgafree(m)
            let r = try b.wait(pop)  // straight from the ring
            #expect(r.qt == pop && r.opcode == .pop && r.sga?.bytes == message)
            _ = try b.wait(try b.push(qb, r.sga!))  // echoed
            try b.sgafree(r.sga!)  // its buffer becomes the next pop's receive buffer: the handle is stale at once
            #expect(throws: Errno.invalidArgument) { try b.sgafree(r.sga!) }
            let next = try b.pop(qb)
            #expect(next != pop)
            #expect(throws: Errno.invalidArgument) { try b.wait(pop) }
            #expect(throws: Errno.invalidArgument) { try b.waitAny([pop]) }
            pop = next
            let back = try a.wait(try a.pop(qa))
            #expect(back.sga?.bytes == message)
            try a.sgafree(back.sga!)
            #expect(throws: Errno.invalidArgument) { try a.sgafree(back.sga!) }
        }
        // The re-armed pop through wait_any and wait_next, then pending at close.
        for k in 0..<2 {
            let m = try a.sgaalloc(copying: [UInt8(k)])
            _ = try a.wait(try a.push(qa, m))
            try a.sgafree(m)
            let r: QResult
            if k == 0 {
                let (index, result) = try b.waitAny([pop])
                #expect(index == 0)
                r = result
            } else {
                let results = try b.waitNext(1)
                #expect(results.count == 1)
                r = results[0]
            }
            #expect(r.qt == pop && r.sga?.bytes == [UInt8(k)])
            try b.sgafree(r.sga!)
            pop = try b.pop(qb)
        }
        try b.close(qb)
        let cancelled = try b.wait(pop)
        #expect(cancelled.opcode == .failed && cancelled.error == .canceled)
        try a.close(qa)
        #expect(live() == before, "every pop's slot is retired")
        #expect(a.pool.buffersInUse == 0 && b.pool.buffersInUse == 0)
    }

    /// The ring format written out in plain C (the benchmark's baselines) and the libOS understand each other, both
    /// ways round: a C echo on a pipe the libOS created, and the libOS echoing on a pipe C created. Catches drift
    /// between the two.
    @Test func thePlainCRingFormatAndTheLibOSInteroperate() throws {
        let name = pipeName("plainc")
        let os = try LibOS(.sharedMemory)
        let q = try os.createPipe(name)
        let echo = Thread { _ = demi_baseline_catmem_echo_named(name, -1) }
        echo.start()
        for i in 0..<600 {
            let message = (0..<(1 + (i * 37) % 5000)).map { UInt8(truncatingIfNeeded: i &+ $0 &* 3) }
            let m = try os.sgaalloc(copying: message)
            _ = try os.wait(try os.push(q, m))
            try os.sgafree(m)
            let r = try os.wait(try os.pop(q))
            #expect(r.sga?.bytes == message)
            try os.sgafree(r.sga!)
        }
        try os.close(q)
        while !echo.isFinished { usleep(1000) }
        #expect(leftovers(name).isEmpty)

        let other = pipeName("plainc-creator")
        let ring: UInt32 = 64 * 1024
        let mapping = try #require(demi_baseline_catmem_create(other, ring))
        let server = Thread {
            guard let peer = try? LibOS(.sharedMemory), let qd = try? peer.openPipe(other) else { return }
            while let r = try? peer.wait(try peer.pop(qd)), let sga = r.sga, sga.count > 0 {
                _ = try? peer.wait(try peer.push(qd, sga))
                try? peer.sgafree(sga)
            }
            try? peer.close(qd)
        }
        server.start()
        var rtt = [UInt64](repeating: 0, count: 2000)
        let rc = rtt.withUnsafeMutableBufferPointer {
            demi_baseline_catmem_client(mapping, ring, 1000, 10, 2000, -1, $0.baseAddress)
        }
        #expect(rc == 0)
        demi_baseline_catmem_close(other, mapping, ring)
        while !server.isFinished { usleep(1000) }
        #expect(leftovers(other).isEmpty)
    }

    /// The ring format from the consumer's side, with a creator that writes the ring by hand: bytes that are not the
    /// next record's stamp (zeroes, garbage, a stamp for another index) are not a message; a record whose lengths lie
    /// fails the pop with EBADMSG instead of reading out of bounds; a pipe made by another format version is EPROTO.
    @Test func aPeerThatWritesTheRingByHandIsCheckedNotTrusted() throws {
        let ring: UInt32 = 64 * 1024
        let control = 4096
        func withPipe(_ body: (LibOS, QDesc, UnsafeMutableRawPointer) throws -> Void) throws {
            let name = pipeName("byhand")
            let mapping = try #require(demi_baseline_catmem_create(name, ring))
            defer { demi_baseline_catmem_close(name, mapping, ring) }
            let os = try LibOS(.sharedMemory)
            let qd = try os.openPipe(name)
            try body(os, qd, mapping)
            try? os.close(qd)
            #expect(leftovers(name).isEmpty)
        }
        try withPipe { os, qd, m in
            let key = m.load(fromByteOffset: 24, as: UInt64.self)
            #expect(key >> 63 == 1 && key & 63 == 0)
            let a = m + control  // the creator-to-opener ring: our pop reads it
            // Garbage, then a stamp for the wrong index: nothing to pop.
            a.storeBytes(of: 0x5A5A_5A5A_5A5A_5A5A, as: UInt64.self)
            let qt = try os.pop(qd)
            #expect(throws: Errno.timedOut) { try os.wait(qt, timeout: .zero) }
            a.storeBytes(of: 64 ^ key, as: UInt64.self)
            #expect(throws: Errno.timedOut) { try os.wait(qt, timeout: .zero) }
            // A real record (its bytes, then the stamp for index 0): popped.
            (a + 8).storeBytes(of: UInt64(3) | UInt64(3) << 32, as: UInt64.self)
            (a + 16).copyMemory(from: [UInt8(7), 8, 9], byteCount: 3)
            a.storeBytes(of: 0 ^ key, as: UInt64.self)
            let r = try os.wait(qt, timeout: .seconds(5))
            #expect(r.sga?.bytes == [7, 8, 9])
            if let sga = r.sga { try os.sgafree(sga) }
            // A record at index 64 whose fragment is longer than its message: EBADMSG, and the pipe stays failed.
            (a + 64 + 8).storeBytes(of: UInt64(100) | UInt64(50) << 32, as: UInt64.self)
            (a + 64).storeBytes(of: 64 ^ key, as: UInt64.self)
            let lied = try os.wait(try os.pop(qd), timeout: .seconds(5))
            #expect(lied.error == .badMessage)
            let after = try os.wait(try os.pop(qd), timeout: .seconds(5))
            #expect(after.error != nil)
        }
        try withPipe { os, qd, m in
            // A fragment longer than half of this pipe's ring (smaller than this libOS's own default): EBADMSG.
            let key = m.load(fromByteOffset: 24, as: UInt64.self)
            let a = m + control
            (a + 8).storeBytes(of: UInt64(ring) | UInt64(ring) << 32, as: UInt64.self)
            a.storeBytes(of: 0 ^ key, as: UInt64.self)
            let lied = try os.wait(try os.pop(qd), timeout: .seconds(5))
            #expect(lied.error == .badMessage)
        }
        // Another format version: EPROTO at open (not EAGAIN, which means "still being created").
        let name = pipeName("version")
        let mapping = try #require(demi_baseline_catmem_create(name, ring))
        defer { demi_baseline_catmem_close(name, mapping, ring) }
        mapping.storeBytes(of: UInt32(2), toByteOffset: 8, as: UInt32.self)
        let os = try LibOS(.sharedMemory)
        #expect(throws: Errno.protocolError) { try os.openPipe(name) }
    }

    /// Pops that find their message already in the ring complete at once with the buffer kept in the slot's record:
    /// each wait (wait, wait_any, wait_next, and a wait after other completions) must hand the same message back, and a
    /// freed message's buffer (kept as the next receive buffer) must be stale for the application at once.
    @Test func popsOfMessagesAlreadyThereComeBackThroughEveryWait() throws {
        let a = try LibOS(.sharedMemory)
        let b = try LibOS(.sharedMemory)
        let name = pipeName("stream")
        let qa = try a.createPipe(name)
        let qb = try b.openPipe(name)
        func message(_ i: Int) -> [UInt8] { (0..<(1 + i % 300)).map { UInt8(truncatingIfNeeded: i &* 13 &+ $0) } }
        let live = { b.statistics.first { $0.0 == "live_operations" }?.1 }
        let before = live()
        for round in 0..<4 {
            for i in 0..<100 {
                let m = try a.sgaalloc(copying: message(round * 100 + i))
                _ = try a.wait(try a.push(qa, m))
                try a.sgafree(m)
            }
            for i in 0..<100 {
                let expected = message(round * 100 + i)
                let qt = try b.pop(qb)  // the message is there: completed at once
                let r: QResult
                switch (round, i % 3) {
                case (0, _): r = try b.wait(qt)
                case (1, _): r = try b.waitAny([qt]).1
                case (2, _): r = try #require(try b.waitNext(1).first)
                default:
                    let other = try b.pop(qb)  // two completed at once, taken in the other order
                    let second = try b.wait(other)
                    #expect(second.sga?.bytes == message(round * 100 + i + 1))
                    try b.sgafree(second.sga!)
                    r = try b.wait(qt)
                }
                #expect(r.qt == qt && r.opcode == .pop && r.sga?.bytes == expected)
                try b.sgafree(r.sga!)
                #expect(throws: Errno.invalidArgument) { try b.sgafree(r.sga!) }
                #expect(throws: Errno.invalidArgument) { try b.wait(qt) }
                if round == 3 { break }
            }
            if round == 3 {
                // The rest of the round's messages, still in the ring, come out in order before end-of-file.
                for i in 2..<100 {
                    let r = try b.wait(try b.pop(qb))
                    #expect(r.sga?.bytes == message(300 + i))
                    try b.sgafree(r.sga!)
                }
            }
        }
        try a.close(qa)
        let eof = try b.wait(try b.pop(qb))
        #expect(eof.sga?.count == 0)
        try b.sgafree(eof.sga!)
        try b.close(qb)
        #expect(live() == before)
        #expect(a.pool.buffersInUse == 0 && b.pool.buffersInUse == 0)
    }

    @Test func peerKilledMidStreamFailsPopsWithECONNRESET() throws {
        let os = try LibOS(.sharedMemory)
        let name = pipeName("kill")
        let q = try os.createPipe(name)
        let peer = try startPeer(["send-hang", name, "50"])
        for i in 0..<50 {
            let r = try os.wait(try os.pop(q))
            #expect(r.sga.map { matches($0, index: i) } == true)
            try os.sgafree(r.sga!)
        }
        let pending = try os.pop(q)
        #expect(throws: Errno.timedOut) { try os.wait(pending, timeout: .milliseconds(20)) }
        kill(peer.processIdentifier, SIGKILL)
        peer.waitUntilExit()
        let r = try os.wait(pending, timeout: .seconds(10))
        #expect(r.opcode == .failed && r.error == .connectionReset)
        let later = try os.wait(try os.pop(q), timeout: .seconds(10))
        #expect(later.error == .connectionReset)
        try os.close(q)
        #expect(leftovers(name).isEmpty, "nothing left after one side died and the other closed")
    }

    @Test func manyPipesAtOnceWithWaitAny() throws {
        let os = try LibOS(.sharedMemory)
        let names = (0..<32).map { pipeName("many\($0)") }
        let qds = try names.map { try os.createPipe($0) }
        let peer = try startPeer(["echo"] + names)
        var tokens: [QToken] = []
        for (k, q) in qds.enumerated() {
            for j in 0..<10 {
                let s = try os.sgaalloc(copying: [UInt8(k), UInt8(j)])
                _ = try os.push(q, s)
                try os.sgafree(s)
            }
            tokens.append(try os.pop(q))
        }
        var received = [Int](repeating: 0, count: qds.count)
        while received.reduce(0, +) < 320 {
            let (i, r) = try os.waitAny(tokens, timeout: .seconds(30))
            let bytes = try #require(r.sga).bytes
            #expect(bytes == [UInt8(i), UInt8(received[i])], "echoes come back on their own pipe, in order")
            try os.sgafree(r.sga!)
            received[i] += 1
            tokens[i] = try os.pop(qds[i])
        }
        for q in qds { try os.close(q) }
        peer.waitUntilExit()
        #expect(peer.terminationStatus == 0)
        for n in names { #expect(leftovers(n).isEmpty) }
    }
}
