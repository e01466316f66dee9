import CDemiLinux
import DemiBuffers
import DemiCore
import DemiDevices
import Foundation
import Synchronization
import Testing
import TestHostFixture

/// `demi frame-pingpong`'s two AF_PACKET layers against each other over a veth pair between two test hosts: the bare
/// C reflector (cdemi_bare_packet_reflect) answering the device-layer pinger (RawFramePingPong on a
/// PacketSocketDevice), and the other way round. Without root they print why and pass, unless
/// `DEMI_REQUIRE_ALL_SUITES=1`.
@Suite(.serialized) struct RawFramePingPongVethTests {
    func hosts(_ test: String = #function) throws -> TestHosts? {
        let h = try TestHosts.create()
        if h == nil { print("RawFramePingPongVethTests.\(test): skipped (see above)") }
        return h
    }

    func mac(_ b: [UInt8]) -> MACAddress { MACAddress(b[0], b[1], b[2], b[3], b[4], b[5]) }

    /// Runs `body` on a new thread in `host`'s namespace; the returned semaphore is signalled when it is done.
    func inThread(_ h: TestHosts, _ host: TestHosts.Host, _ body: @escaping @Sendable () -> Void) -> DispatchSemaphore {
        let done = DispatchSemaphore(value: 0)
        let t = Thread {
            _ = try? h.withNamespace(host) { body() }
            done.signal()
        }
        t.start()
        return done
    }

    @Test func bareReflectorAnswersTheDeviceLayer() throws {
        guard let h = try hosts() else { return }
        defer { h.destroy() }
        let reflected = Atomic<Int64>(-1)
        let done = inThread(h, .a) {
            reflected.store(cdemi_bare_packet_reflect(h.interface, RawFramePingPong.etherType, 250, 5_000_000_000),
                            ordering: .releasing)
        }
        usleep(200_000)
        let pool = BufferPool()
        let d = try h.withNamespace(.b) { try PacketSocketDevice(interface: h.interface, pool: pool) }
        let (samples, _) = try RawFramePingPong.ping(d, pool: pool, from: d.macAddress, to: mac(h.ourMAC),
                                                     length: 130, warmup: 50, count: 200)
        d.close()
        #expect(done.wait(timeout: .now() + 10) == .success)
        #expect(reflected.load(ordering: .acquiring) == 250)
        #expect(samples.count == 200 && samples.allSatisfy { $0 > 0 })
        #expect(pool.buffersInUse == 0)
    }

    @Test func deviceReflectorAnswersTheBarePinger() throws {
        guard let h = try hosts() else { return }
        defer { h.destroy() }
        let reflected = Atomic<Int>(-1)
        let done = inThread(h, .a) {
            guard let d = try? PacketSocketDevice(interface: h.interface, pool: BufferPool()) else { return }
            reflected.store(RawFramePingPong.reflect(d, frames: 250, idleSeconds: 5), ordering: .releasing)
            d.close()
        }
        usleep(200_000)
        var samples = [UInt64](repeating: 0, count: 200)
        let dst = h.ourMAC
        let r = try h.withNamespace(.b) {
            samples.withUnsafeMutableBufferPointer {
                cdemi_bare_packet_ping(h.interface, dst, RawFramePingPong.etherType, 106, 50, 200, $0.baseAddress,
                                       1_000_000_000)
            }
        }
        #expect(done.wait(timeout: .now() + 10) == .success)
        #expect(r >= 0)
        #expect(reflected.load(ordering: .acquiring) == 250)
        #expect(samples.allSatisfy { $0 > 0 })
    }
}
