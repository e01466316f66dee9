#if canImport(Glibc)
import Glibc
#endif
import DemiBuffers
import DemiCore

/// A device that records every frame another device sends and receives into a classic libpcap file (magic
/// `0xa1b2c3d4`, version 2.4, link type Ethernet), readable by Wireshark, tshark and tcpdump. Each record is flushed
/// as it is written, so `tail -f capture.pcap | wireshark -k -i -` works while the stack runs.
public final class PcapWriter<Device: PhysicalLayer>: PhysicalLayer {
    public let inner: Device
    let file: UnsafeMutablePointer<FILE>
    let snapLength: Int
    /// Added to monotonic instants to get wall-clock time for the record timestamps.
    let realtimeOffset: Int64
    public private(set) var recordsWritten = 0
    let scratch: UnsafeMutableRawPointer

    /// Opens `path` for writing (truncating it) and writes the file header. Throws the `fopen` errno.
    public init(_ inner: Device, path: String, snapLength: Int = 65535) throws(Errno) {
        guard let f = fopen(path, "wb") else { throw Errno.current }
        self.inner = inner
        file = f
        self.snapLength = snapLength
        var rt = timespec()
        clock_gettime(CLOCK_REALTIME, &rt)
        realtimeOffset = (Int64(rt.tv_sec) * 1_000_000_000 + Int64(rt.tv_nsec)) - Instant.now().rawValue
        scratch = .allocate(byteCount: 16, alignment: 8)
        var header = [UInt8](repeating: 0, count: 24)
        header.withUnsafeMutableBytes { h in
            h.storeBytes(of: UInt32(0xA1B2_C3D4), toByteOffset: 0, as: UInt32.self)
            h.storeBytes(of: UInt16(2), toByteOffset: 4, as: UInt16.self)
            h.storeBytes(of: UInt16(4), toByteOffset: 6, as: UInt16.self)
            h.storeBytes(of: UInt32(snapLength), toByteOffset: 16, as: UInt32.self)
            h.storeBytes(of: UInt32(1), toByteOffset: 20, as: UInt32.self)  // LINKTYPE_ETHERNET
            _ = fwrite(h.baseAddress, 1, 24, f)
        }
        fflush(f)
    }

    deinit {
        fclose(file)
        scratch.deallocate()
    }

    public var capabilities: DeviceCapabilities { inner.capabilities }
    public var statistics: DeviceStatistics { inner.statistics }

    public func receive(into frames: UnsafeMutablePointer<DemiBuffer>, capacity: Int, now: Instant) -> Int {
        let n = inner.receive(into: frames, capacity: capacity, now: now)
        for i in 0..<n { record(frames[i], now: now) }
        return n
    }

    @discardableResult
    public func transmit(_ frame: DemiBuffer, now: Instant) -> Bool {
        record(frame, now: now)
        return inner.transmit(frame, now: now)
    }

    /// Appends one record for `frame` (all chained segments, cut at the snap length).
    public func record(_ frame: DemiBuffer, now: Instant) {
        let total = frame.chainCount
        let captured = min(total, snapLength)
        let t = now.rawValue &+ realtimeOffset
        scratch.storeBytes(of: UInt32(truncatingIfNeeded: t / 1_000_000_000), toByteOffset: 0, as: UInt32.self)
        scratch.storeBytes(of: UInt32(truncatingIfNeeded: (t % 1_000_000_000) / 1000), toByteOffset: 4, as: UInt32.self)
        scratch.storeBytes(of: UInt32(captured), toByteOffset: 8, as: UInt32.self)
        scratch.storeBytes(of: UInt32(total), toByteOffset: 12, as: UInt32.self)
        fwrite(scratch, 1, 16, file)
        var left = captured
        var h: UnsafeMutablePointer<BufferHeader>? = frame.header
        while let c = h, left > 0 {
            let n = min(Int(c.pointee.length), left)
            fwrite(c.pointee.storage.unsafelyUnwrapped + Int(c.pointee.offset), 1, n, file)
            left -= n
            h = c.pointee.next
        }
        fflush(file)
        recordsWritten += 1
    }
}
