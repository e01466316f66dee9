import DemiBuffers
import DemiCore
import DemiDevices
import Foundation
import Testing

func frame(_ pool: BufferPool, _ bytes: [UInt8]) -> DemiBuffer {
    let b = pool.allocate(size: bytes.count)!
    bytes.withUnsafeBytes { _ = b.write($0) }
    return b
}

func drain(_ d: some PhysicalLayer, now: Instant = .zero) -> [[UInt8]] {
    let out = UnsafeMutablePointer<DemiBuffer>.allocate(capacity: 64)
    defer { out.deallocate() }
    var frames: [[UInt8]] = []
    while true {
        let n = d.receive(into: out, capacity: 64, now: now)
        if n == 0 { return frames }
        for i in 0..<n {
            frames.append(out[i].array)
            out[i].release()
        }
    }
}

@Suite struct InMemoryLinkTests {
    @Test func framesCrossBothWaysIntoTheReceiversPool() {
        let pa = BufferPool()
        let pb = BufferPool()
        let link = InMemoryLink(poolA: pa, poolB: pb, capacity: 4)
        #expect(link.a.transmit(frame(pa, [1, 2, 3]), now: .zero))
        #expect(link.b.transmit(frame(pb, [4]), now: .zero))
        #expect(drain(link.b) == [[1, 2, 3]])
        #expect(drain(link.a) == [[4]])
        #expect(pa.buffersInUse == 0 && pb.buffersInUse == 0)
        #expect(link.a.statistics.transmittedFrames == 1 && link.b.statistics.receivedFrames == 1)
    }

    @Test func chainedSegmentsAreGatheredAndFullQueuesDrop() {
        let pa = BufferPool()
        let pb = BufferPool()
        let link = InMemoryLink(poolA: pa, poolB: pb, capacity: 2)
        let head = frame(pa, [1, 2])
        head.header.pointee.next = frame(pa, [3, 4, 5]).header
        link.a.transmit(head, now: .zero)
        link.a.transmit(frame(pa, [6]), now: .zero)
        #expect(!link.a.transmit(frame(pa, [7]), now: .zero))
        #expect(link.a.statistics.droppedFrames == 1)
        #expect(drain(link.b) == [[1, 2, 3, 4, 5], [6]])
        #expect(pa.buffersInUse == 0 && pb.buffersInUse == 0)
    }
}

@Suite struct FaultInjectorTests {
    func run(_ profile: FaultProfile, frames: Int = 10_000) -> (FaultInjector<InMemoryLink.Endpoint>, [[UInt8]], BufferPool, BufferPool) {
        let pa = BufferPool()
        let pb = BufferPool()
        let link = InMemoryLink(poolA: pa, poolB: pb, capacity: 100_000)
        let f = FaultInjector(link.a, profile: profile)
        for i in 0..<frames {
            f.transmit(frame(pa, [UInt8(i & 0xFF), UInt8(i >> 8)]), now: Instant(nanoseconds: Int64(i) * 1000))
        }
        f.release(now: .distantFuture)
        return (f, drain(link.b), pa, pb)
    }

    @Test func lossIsSeededAndNearItsRate() {
        var p = FaultProfile()
        p.loss = 0.1
        p.seed = 42
        let (f, got, pa, _) = run(p)
        #expect(f.faults.dropped == 10_000 - got.count)
        #expect((800...1200).contains(f.faults.dropped))
        let (f2, got2, _, _) = run(p)
        #expect(got2 == got && f2.faults == f.faults, "the same seed gives the same faults")
        #expect(pa.buffersInUse == 0)
    }

    @Test func duplicationAndCorruption() {
        var p = FaultProfile()
        p.duplication = 0.05
        p.corruption = 0.05
        let (f, got, pa, _) = run(p)
        #expect(got.count == 10_000 + f.faults.duplicated)
        let clean = Set((0..<10_000).map { [UInt8($0 & 0xFF), UInt8($0 >> 8)] })
        let bad = got.filter { !clean.contains($0) }.count
        #expect(bad > 0 && bad <= f.faults.corrupted * 2, "corrupted frames differ from every original")
        #expect(pa.buffersInUse == 0)
    }

    @Test func delayHoldsFramesUntilTheirTime() {
        let pa = BufferPool()
        let pb = BufferPool()
        let link = InMemoryLink(poolA: pa, poolB: pb)
        var p = FaultProfile()
        p.delay = .milliseconds(10)
        let f = FaultInjector(link.a, profile: p)
        f.transmit(frame(pa, [1]), now: Instant(nanoseconds: 0))
        f.release(now: Instant(nanoseconds: 9_999_999))
        #expect(drain(link.b).isEmpty)
        #expect(f.nextDue == Instant(nanoseconds: 10_000_000))
        f.release(now: Instant(nanoseconds: 10_000_000))
        #expect(drain(link.b) == [[1]])
    }

    @Test func reorderingLetsLaterFramesOvertake() {
        var p = FaultProfile()
        p.reordering = 0.25
        let (f, got, _, _) = run(p)
        #expect(got.count == 10_000 && f.faults.reordered > 0)
        let order = got.map { Int($0[0]) | Int($0[1]) << 8 }
        #expect(order != order.sorted())
        #expect(Set(order).count == 10_000)
    }

    @Test func rateLimitSpacesFrames() {
        let pa = BufferPool()
        let pb = BufferPool()
        let link = InMemoryLink(poolA: pa, poolB: pb)
        var p = FaultProfile()
        p.rate = 8_000_000  // 1 byte per microsecond
        let f = FaultInjector(link.a, profile: p)
        for _ in 0..<3 { f.transmit(frame(pa, [UInt8](repeating: 0, count: 1000)), now: .zero) }
        f.release(now: Instant(nanoseconds: 1_000_000))
        #expect(drain(link.b).count == 1)
        f.release(now: Instant(nanoseconds: 3_000_000))
        #expect(drain(link.b).count == 2)
    }

    @Test func profilesParse() throws {
        let p = try FaultProfile(parsing: "loss=1%,dup=0.05,reorder=25%,corrupt=0.01,delay=10ms,jitter=2ms,rate=100mbit,seed=7")
        #expect(p.loss == 0.01 && p.duplication == 0.05 && p.reordering == 0.25 && p.corruption == 0.01)
        #expect(p.delay == .milliseconds(10) && p.jitter == .milliseconds(2) && p.rate == 100_000_000 && p.seed == 7)
        for bad in ["loss=2", "delay=5", "what=1", "loss", "rate=fast"] {
            #expect(throws: Errno.invalidArgument) { try FaultProfile(parsing: bad) }
        }
    }
}

@Suite struct PcapWriterTests {
    @Test func writesAClassicPcapFile() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("demi-\(getpid()).pcap").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let pa = BufferPool()
        let pb = BufferPool()
        let link = InMemoryLink(poolA: pa, poolB: pb)
        do {
            let w = try PcapWriter(link.a, path: path, snapLength: 4)
            w.transmit(frame(pa, [1, 2, 3]), now: .now())
            link.b.transmit(frame(pb, [9, 8, 7, 6, 5]), now: .now())
            _ = drain(w)
            #expect(w.recordsWritten == 2)
        }
        let data = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        func u32(_ at: Int) -> UInt32 { data.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at, as: UInt32.self) } }
        #expect(data.count == 24 + 16 + 3 + 16 + 4)
        #expect(u32(0) == 0xA1B2_C3D4 && u32(16) == 4 && u32(20) == 1)
        #expect(u32(24 + 8) == 3 && u32(24 + 12) == 3)
        #expect(Array(data[40..<43]) == [1, 2, 3])
        #expect(u32(43 + 8) == 4 && u32(43 + 12) == 5, "cut at the snap length, original length kept")
        #expect(Array(data[59..<63]) == [9, 8, 7, 6])
        #expect(throws: Errno.self) { try PcapWriter(link.a, path: "/nonexistent-dir/x.pcap") }
    }
}
