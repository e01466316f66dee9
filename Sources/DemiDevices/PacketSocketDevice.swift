import CDemiLinux
import DemiBuffers
import DemiCore
#if canImport(Glibc)
import Glibc
#endif

/// A Linux AF_PACKET socket bound to one interface, with memory-mapped TPACKET_V2 RX and TX rings (catpowder's
/// device). V2 hands over each frame as soon as it arrives; V3's block retirement timer adds about 1 ms of latency.
///
/// - Receive copies each ready RX slot into a buffer of the device's pool (leaving the pool's default headroom, so
///   the stack can prepend without copying) and gives the slot back to the kernel at once. Frames this socket sent
///   itself (`PACKET_OUTGOING`) are skipped. A VLAN tag the kernel stripped into the slot header is put back.
/// - Transmit copies the frame (walking its chain) into the next free TX slot and marks it ready. The kernel is
///   **kicked** (`sendto(fd, NULL, 0, MSG_DONTWAIT)`, one system call for every ready slot) by ``flush(now:)``
///   (which the stack calls once at the end of each poll pass) or ``flush()``, at the start of every
///   ``receive(into:capacity:now:)`` call, and whenever ``Configuration/kickThreshold`` frames are waiting. Call a
///   flush before blocking (for example before `epoll_wait` on ``fileDescriptor``).
/// - `PACKET_QDISC_BYPASS` is on by default: frames go straight to the driver, as DPDK's `net_af_packet` does.
///
/// Opening the socket needs `CAP_NET_RAW` (``Errno/notPermitted`` otherwise). The interface is looked up in the
/// calling thread's network namespace, and the socket stays in that namespace afterwards.
///
/// One thread at a time: like the buffer pool, the device has no locks.
public final class PacketSocketDevice: PhysicalLayer {
    public struct Configuration: Sendable, Hashable {
        /// RX ring slots (rounded up to whole 64 KiB blocks).
        public var receiveFrames = 4096
        /// TX ring slots (rounded up to whole 64 KiB blocks).
        public var transmitFrames = 1024
        /// Bytes per slot, a power of two from 256 to 65536; nil: the smallest that holds an MTU-sized frame
        /// (with a VLAN tag) and the slot header, at least 2048.
        public var frameSize: Int? = nil
        /// Frames per receive call at most (reported in ``capabilities``).
        public var maxBurst = 32
        /// Frames written to the TX ring before transmit kicks the kernel by itself; nil: ``maxBurst``.
        public var kickThreshold: Int? = nil
        public var qdiscBypass = true
        public init() {}
    }

    public let interfaceName: String
    public let interfaceIndex: Int32
    /// The interface's MAC address (`SIOCGIFHWADDR`).
    public let macAddress: MACAddress
    /// The MTU is the interface's (`SIOCGIFMTU`); no checksum offload.
    public let capabilities: DeviceCapabilities
    public let configuration: Configuration
    /// The socket, for `epoll` (readable when an RX slot is ready). -1 after ``close()``.
    public private(set) var fileDescriptor: Int32
    /// The pool received frames are allocated from.
    public let pool: BufferPool

    @usableFromInline var ring = cdemi_packet_ring()
    @usableFromInline let rx: UnsafeMutablePointer<UInt8>
    @usableFromInline let tx: UnsafeMutablePointer<UInt8>
    @usableFromInline let frameSize: Int
    @usableFromInline let rxCount: Int
    @usableFromInline let txCount: Int
    @usableFromInline let txDataOffset: Int
    @usableFromInline let kickThreshold: Int
    @exclusivity(unchecked) @usableFromInline var rxIndex = 0
    @exclusivity(unchecked) @usableFromInline var txIndex = 0
    /// Slots marked ready since the last kick.
    @exclusivity(unchecked) public private(set) var pendingTransmit = 0
    @exclusivity(unchecked) @usableFromInline var counters = DeviceStatistics()
    /// Frames the kernel dropped because the RX ring was full (`PACKET_STATISTICS`), summed over reads.
    @exclusivity(unchecked) public private(set) var kernelDrops = 0
    /// Kicks (`sendto`) that failed with an error other than `EAGAIN`/`ENOBUFS`, and the last such errno.
    public private(set) var kickErrors = 0
    public private(set) var lastKickError: Errno?

    /// Opens a packet socket on `interface` (in the calling thread's network namespace) with its rings mapped.
    public init(interface: String, pool: BufferPool, configuration: Configuration = Configuration()) throws(Errno) {
        func fail(_ fd: Int32) -> Errno {
            let e = Errno(rawValue: errno)
            if fd >= 0 { _ = cdemi_close(fd) }
            return e
        }
        let fd = cdemi_packet_socket()
        guard fd >= 0 else { throw fail(fd) }
        let index = cdemi_if_index(interface)
        guard index > 0 else { _ = cdemi_close(fd); throw .noDevice }
        var mac: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0, 0, 0)
        let macOK = withUnsafeMutableBytes(of: &mac) { cdemi_if_hwaddr(interface, $0.baseAddress!.assumingMemoryBound(to: UInt8.self)) }
        guard macOK == 0 else { throw fail(fd) }
        let mtu = Int(cdemi_if_mtu(interface))
        guard mtu > 0 else { throw fail(fd) }

        var size = configuration.frameSize ?? 2048
        if configuration.frameSize == nil {
            while size < mtu + 18 + 128 && size < 65536 { size <<= 1 }
        }
        var r = cdemi_packet_ring()
        guard cdemi_packet_setup(fd, UInt32(clamping: size), UInt32(clamping: max(1, configuration.receiveFrames)),
                                 UInt32(clamping: max(1, configuration.transmitFrames)),
                                 configuration.qdiscBypass ? 1 : 0, &r) == 0
        else { throw fail(fd) }
        guard cdemi_packet_bind(fd, index) == 0 else {
            let e = Errno(rawValue: errno)
            cdemi_packet_unmap(&r)
            _ = cdemi_close(fd)
            throw e
        }

        interfaceName = interface
        interfaceIndex = index
        macAddress = MACAddress(mac.0, mac.1, mac.2, mac.3, mac.4, mac.5)
        capabilities = DeviceCapabilities(mtu: mtu, maxBurst: max(1, configuration.maxBurst))
        self.configuration = configuration
        self.pool = pool
        fileDescriptor = fd
        ring = r
        rx = r.rx
        tx = r.tx
        frameSize = Int(r.frame_size)
        rxCount = Int(r.rx_frames)
        txCount = Int(r.tx_frames)
        txDataOffset = Int(r.tx_data_offset)
        kickThreshold = max(1, configuration.kickThreshold ?? configuration.maxBurst)
    }

    deinit { close() }

    /// Sends what is waiting in the TX ring, then unmaps the rings and closes the socket. Idempotent.
    public func close() {
        guard fileDescriptor >= 0 else { return }
        flush()
        cdemi_packet_unmap(&ring)
        _ = cdemi_close(fileDescriptor)
        fileDescriptor = -1
    }

    /// The largest frame (Ethernet header included) one TX slot holds.
    public var maxTransmitFrame: Int { frameSize - txDataOffset }
    /// RX and TX ring slots (after rounding to whole blocks).
    public var ringSizes: (receive: Int, transmit: Int) { (rxCount, txCount) }

    /// Counters; `droppedFrames` includes the kernel's RX-ring drops (read with `PACKET_STATISTICS` here).
    public var statistics: DeviceStatistics {
        refreshKernelDrops()
        var s = counters
        s.droppedFrames += kernelDrops
        return s
    }

    func refreshKernelDrops() {
        guard fileDescriptor >= 0 else { return }
        var packets: UInt32 = 0, drops: UInt32 = 0
        if cdemi_packet_stats(fileDescriptor, &packets, &drops) == 0 { kernelDrops += Int(drops) }
    }

    // MARK: - Receive

    public func receive(into frames: UnsafeMutablePointer<DemiBuffer>, capacity: Int, now: Instant) -> Int {
        if pendingTransmit > 0 { flush() }
        guard fileDescriptor >= 0 else { return 0 }
        var n = 0
        var visited = 0
        while n < capacity && visited < rxCount {
            let slot = rx + rxIndex * frameSize
            let status = cdemi_tp2_status(slot)
            if status & CDEMI_TP_STATUS_USER == 0 { break }
            visited += 1
            if let f = copyOut(slot, status: status) {
                frames[n] = f
                n += 1
            }
            cdemi_tp2_set_status(slot, CDEMI_TP_STATUS_KERNEL)
            rxIndex = rxIndex + 1 == rxCount ? 0 : rxIndex + 1
        }
        return n
    }

    /// The frame in `slot` as a pool buffer, or nil if it is skipped (our own) or dropped.
    @inline(__always)
    func copyOut(_ slot: UnsafeMutablePointer<UInt8>, status: UInt32) -> DemiBuffer? {
        if cdemi_tp2_pkttype(slot) == UInt8(CDEMI_PACKET_OUTGOING) { return nil }
        let length = Int(cdemi_tp2_snaplen(slot))
        guard Int(cdemi_tp2_len(slot)) == length, length >= 14 else {
            counters.droppedFrames += 1          // truncated to the slot, or a runt
            return nil
        }
        let data = UnsafeRawPointer(slot + Int(cdemi_tp2_mac(slot)))
        let tci = cdemi_tp2_vlan_tci(slot)
        let tagged = status & CDEMI_TP_STATUS_VLAN_VALID != 0 && tci != 0
        guard let b = pool.allocate(size: tagged ? length + 4 : length) else {
            counters.droppedFrames += 1
            return nil
        }
        let out = b.baseAddress
        if tagged {
            // Put back the tag the kernel moved into the slot header: destination, source, TPID, TCI, the rest.
            var tpid = cdemi_tp2_vlan_tpid(slot)
            if tpid == 0 { tpid = 0x8100 }
            out.copyMemory(from: data, byteCount: 12)
            out.storeBytes(of: tpid.bigEndian, toByteOffset: 12, as: UInt16.self)
            out.storeBytes(of: tci.bigEndian, toByteOffset: 14, as: UInt16.self)
            (out + 16).copyMemory(from: data + 12, byteCount: length - 12)
        } else {
            out.copyMemory(from: data, byteCount: length)
        }
        counters.receivedFrames += 1
        counters.receivedBytes += b.count
        return b
    }

    // MARK: - Transmit

    @discardableResult
    public func transmit(_ frame: DemiBuffer, now: Instant) -> Bool {
        defer { frame.releaseChain() }
        let length = frame.chainCount
        guard fileDescriptor >= 0, length >= 14, length <= frameSize - txDataOffset else {
            counters.droppedFrames += 1
            return false
        }
        let slot = tx + txIndex * frameSize
        if !slotFree(slot) {
            // The ring is full of frames the kernel has not taken yet: kick and look again.
            flush(force: true)
            guard slotFree(slot) else {
                counters.droppedFrames += 1
                return false
            }
        }
        var at = UnsafeMutableRawPointer(slot + txDataOffset)
        var h: UnsafeMutablePointer<BufferHeader>? = frame.header
        while let c = h {
            let n = Int(c.pointee.length)
            at.copyMemory(from: c.pointee.storage.unsafelyUnwrapped + Int(c.pointee.offset), byteCount: n)
            at += n
            h = c.pointee.next
        }
        cdemi_tp2_set_len(slot, UInt32(length))
        cdemi_tp2_set_status(slot, CDEMI_TP_STATUS_SEND_REQUEST)
        txIndex = txIndex + 1 == txCount ? 0 : txIndex + 1
        counters.transmittedFrames += 1
        counters.transmittedBytes += length
        pendingTransmit += 1
        if pendingTransmit >= kickThreshold { flush() }
        return true
    }

    @inline(__always)
    func slotFree(_ slot: UnsafeMutablePointer<UInt8>) -> Bool {
        let s = cdemi_tp2_status(slot)
        if s == CDEMI_TP_STATUS_AVAILABLE { return true }
        if s & CDEMI_TP_STATUS_WRONG_FORMAT != 0 {
            // The kernel refused the frame (PACKET_LOSS is on, so this is rare): count it and reuse the slot.
            counters.droppedFrames += 1
            counters.transmittedFrames -= 1
            return true
        }
        return false
    }

    /// ``PhysicalLayer/flush(now:)``: the stack calls it once at the end of each pass, so a pass's frames leave
    /// with one `sendto`.
    public func flush(now: Instant) { flush(force: false) }

    /// Hands every ready TX slot to the kernel with one `sendto`. Returns false if the kernel reported an error
    /// (`EAGAIN`/`ENOBUFS` leave the frames in the ring for the next kick).
    @discardableResult
    public func flush() -> Bool { flush(force: false) }

    @discardableResult
    func flush(force: Bool) -> Bool {
        guard fileDescriptor >= 0, pendingTransmit > 0 || force else { return true }
        let r = cdemi_packet_kick(fileDescriptor)
        if r >= 0 {
            pendingTransmit = 0
            return true
        }
        let e = errno
        if e == EAGAIN || e == ENOBUFS || e == EINTR {
            pendingTransmit = max(pendingTransmit, 1)   // try again at the next kick
        } else {
            pendingTransmit = 0
            kickErrors += 1
            lastKickError = Errno(rawValue: e)
        }
        return false
    }
}
