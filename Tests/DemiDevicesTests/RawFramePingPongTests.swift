import DemiBuffers
import DemiCore
import DemiDevices
import Testing

@Suite struct RawFramePingPongTests {
    let mac1 = MACAddress(0x02, 0, 0, 0, 0, 1)
    let mac2 = MACAddress(0x02, 0, 0, 0, 0, 2)

    @Test func pingTimesEveryRoundTripAgainstAReflectorOnTheLink() throws {
        let pa = BufferPool(), pb = BufferPool()
        let link = InMemoryLink(poolA: pa, poolB: pb, capacity: 8)
        let rx = UnsafeMutablePointer<DemiBuffer>.allocate(capacity: 32)
        defer { rx.deallocate() }
        var reflected = 0
        // Something else on the wire first: the reflector drops it, and so does the pinger.
        #expect(link.b.transmit(frame(pb, [UInt8](repeating: 0xFF, count: 60)), now: .zero))
        let (samples, resent) = try RawFramePingPong.ping(link.a, pool: pa, from: mac1, to: mac2, length: 106,
                                                          warmup: 3, count: 10) {
            reflected += RawFramePingPong.reflectOnce(link.b, rx: rx, now: Instant.now())
        }
        #expect(samples.count == 10 && samples.allSatisfy { $0 > 0 })
        #expect(resent == 0)
        #expect(reflected == 13)
        // Every frame went out at the requested length; the reflector sent them back with the MACs swapped.
        #expect(link.a.statistics.transmittedBytes == 13 * 106)
        #expect(link.b.statistics.transmittedFrames == 14)
        #expect(pa.buffersInUse == 0 && pb.buffersInUse == 0)
    }

    @Test func reflectorSwapsTheAddressesAndDropsOtherFrames() {
        let pa = BufferPool(), pb = BufferPool()
        let link = InMemoryLink(poolA: pa, poolB: pb, capacity: 8)
        let rx = UnsafeMutablePointer<DemiBuffer>.allocate(capacity: 32)
        defer { rx.deallocate() }
        var bytes: [UInt8] = [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x88, 0xB5, 7, 0, 0, 0]
        bytes += [UInt8](repeating: 0x5A, count: 42)
        #expect(link.a.transmit(frame(pa, bytes), now: .zero))
        #expect(link.a.transmit(frame(pa, [UInt8](repeating: 0, count: 60)), now: .zero))   // EtherType 0
        #expect(RawFramePingPong.reflectOnce(link.b, rx: rx, now: .zero) == 1)
        let back = drain(link.a)
        #expect(back.count == 1)
        #expect(back.first.map { Array($0[0..<12]) } == Array(bytes[6..<12]) + Array(bytes[0..<6]))
        #expect(back.first.map { Array($0[12...]) } == Array(bytes[12...]))
        #expect(pa.buffersInUse == 0 && pb.buffersInUse == 0)
    }

    @Test func lostFramesAreResentThenTheRunFails() {
        let pa = BufferPool(), pb = BufferPool()
        let link = InMemoryLink(poolA: pa, poolB: pb, capacity: 8)
        // No reflector: each round trip is tried 5 times, then ping gives up.
        #expect(throws: RawFramePingPong.Failure.self) {
            _ = try RawFramePingPong.ping(link.a, pool: pa, from: mac1, to: mac2, length: 60, warmup: 0, count: 1,
                                          timeout: .milliseconds(2))
        }
        #expect(link.a.statistics.transmittedFrames == 5)
        _ = drain(link.b)
        #expect(pa.buffersInUse == 0 && pb.buffersInUse == 0)
    }
}
