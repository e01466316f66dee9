import DemiBuffers
import DemiCore
import DemiWire

/// The datapath's building blocks, one thread each, for `demi bench`'s microbenchmark table: a buffer slice, and the
/// wire formats' checked parse and emit of the headers of a 64-byte TCP segment (Ethernet, IPv4, TCP with
/// timestamps), checksums included, as the stack does them when the device offloads nothing.
enum DatapathMicro {
    static let payload = 64

    /// A frame as our stack sends it: Ethernet, IPv4, TCP with timestamps (32-byte header), 64 bytes of payload.
    static func header() -> (EthernetHeader, IPv4Header, TCPHeader) {
        let src = IPv4Address(198, 18, 0, 1), dst = IPv4Address(198, 18, 0, 2)
        var t = TCPHeader(sourcePort: 4000, destinationPort: 80, sequence: TCPSequence(1_000_000),
                          acknowledgment: TCPSequence(2_000_000), flags: [.ack, .psh], window: 65535)
        t.options.timestamp = (123_456, 654_321)
        let ip = IPv4Header(source: src, destination: dst, proto: IPProtocol.tcp,
                            payloadLength: t.encodedLength + payload)
        let eth = EthernetHeader(destination: MACAddress(2, 0, 0, 0, 0, 2), source: MACAddress(2, 0, 0, 0, 0, 1),
                                 etherType: EtherType.ipv4)
        return (eth, ip, t)
    }

    /// A buffer for that frame, its payload bytes filled in (the caller deallocates it).
    static func frameBuffer(_ t: TCPHeader) -> UnsafeMutableRawBufferPointer {
        let total = 14 + 20 + t.encodedLength + payload
        let frame = UnsafeMutableRawBufferPointer.allocate(byteCount: total, alignment: 64)
        for i in 0..<total { frame[i] = UInt8(truncatingIfNeeded: i) }
        return frame
    }

    /// Writes the three headers at the front of `frame` (checksums computed, the TCP one over the payload).
    @inline(__always)
    static func emit(_ eth: EthernetHeader, _ ip: IPv4Header, _ t: TCPHeader, into frame: UnsafeMutableRawBufferPointer) {
        eth.emit(UnsafeMutableRawBufferPointer(rebasing: frame[0..<14]))
        ip.emit(UnsafeMutableRawBufferPointer(rebasing: frame[14..<34]))
        t.emit(UnsafeMutableRawBufferPointer(rebasing: frame[34...]), source: ip.source, destination: ip.destination)
    }

    /// Emits Ethernet + IPv4 + TCP (both checksums computed, the TCP one over the payload) `n` times; ns per frame.
    static func emit(_ n: Int, now: () -> UInt64) -> Double {
        let (eth, ip, t) = header()
        let frame = frameBuffer(t)
        defer { frame.deallocate() }
        var sink = 0
        let t0 = now()
        for _ in 0..<n {
            emit(eth, ip, t, into: frame)
            sink &+= Int(frame[50])
        }
        let ns = Double(now() - t0) / Double(n)
        return sink == -1 ? 0 : ns
    }

    /// Checked parse of the same frame (Ethernet, IPv4 with its header checksum, TCP with its checksum and options)
    /// `n` times; ns per frame, or -1 if a parse failed.
    static func parse(_ n: Int, now: () -> UInt64) -> Double {
        let (eth, ip, t) = header()
        let frame = frameBuffer(t)
        defer { frame.deallocate() }
        emit(eth, ip, t, into: frame)
        let bytes = UnsafeRawBufferPointer(frame)
        var ok = 0
        let t0 = now()
        for _ in 0..<n {
            do throws(WireError) {
                let (e, k) = try EthernetHeader.parse(bytes)
                guard e.etherType == EtherType.ipv4 else { continue }
                let p = try IPv4Packet(checking: UnsafeRawBufferPointer(rebasing: bytes[k...]))
                guard p.checksumIsValid else { continue }
                let h = IPv4Header.parse(p)
                let (seg, _) = try TCPHeader.parse(p.payload, source: h.source, destination: h.destination)
                ok &+= seg.options.timestamp == nil ? 0 : 1
            } catch {
                continue
            }
        }
        let ns = Double(now() - t0) / Double(n)
        return ok == n ? ns : -1
    }

    /// A view of 64 bytes inside a pooled buffer (a slice sharing its bytes), then its release; ns per slice.
    static func slice(_ n: Int, now: () -> UInt64) -> Double {
        let pool = BufferPool()
        guard let b = pool.allocate(size: 1500) else { return -1 }
        defer { b.release() }
        var got = 0
        let t0 = now()
        for _ in 0..<n {
            if let v = pool.view(of: b, offset: 54, length: 64) {
                got &+= v.count
                v.release()
            }
        }
        let ns = Double(now() - t0) / Double(n)
        return got == n * 64 ? ns : -1
    }
}
