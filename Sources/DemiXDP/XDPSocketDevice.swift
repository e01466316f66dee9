// AF_XDP (catpowder's fast device), built only with the package trait `AFXDP` (`swift build --traits AFXDP`), which
// needs libxdp and libbpf (`apt-get install libxdp-dev libbpf-dev`). Without the trait this target is empty.
#if AFXDP
import CDemiLinux
import CDemiXDP
import DemiBuffers
import DemiCore
import DemiDevices
#if canImport(Glibc)
import Glibc
#endif

/// An AF_XDP socket on one queue of one interface, through libxdp: a UMEM of fixed-size frames shared with the
/// kernel, its fill and completion rings, and the socket's RX and TX rings. libxdp attaches its default XDP program,
/// which redirects the queue's frames to the socket, and detaches it again on ``close()``.
///
/// - **Receive** wraps each received UMEM frame as a ``DemiBuffer`` without copying (``BufferPool/wrapExternal``);
///   the buffer's window starts where the kernel put the frame, so the 256 bytes of XDP headroom in front of it are
///   free for prepending. When the last reference goes, the pool's external-release hook (set by this device) puts
///   the frame on the device's free stack, and the next ``receive(into:capacity:now:)`` moves it to the fill ring.
///   Received buffers may be held as long as needed, but a held frame is not available to the kernel, nor to
///   transmit. So the device copies under pressure: when fewer than ``Configuration/copyThreshold`` frames would
///   stay free once the fill ring is topped up, a received frame is copied into a pool buffer and its UMEM frame
///   recycled at once (``copiedReceives``). Without that, a TCP stack that queues received data (receive and
///   out-of-order queues, unpopped data, an echo's retransmission queue that holds the received buffers until they
///   are acknowledged) could hold every frame: transmit then finds no frame to copy into, drops every segment, no
///   acknowledgment comes back, nothing is released, and the connection stalls for good.
/// - **Transmit** copies the frame (walking its chain) into a free UMEM frame. A frame that already *is* a UMEM frame
///   of this device (a single segment, with no other reference, like a received frame echoed back) is handed to the
///   TX ring as it is, with no copy. The kernel is kicked (`sendto`, when the TX ring asks for a wakeup: always in
///   copy mode) by ``flush(now:)``/``flush()``, at the start of each receive, and when
///   ``Configuration/kickThreshold`` frames are waiting. Sent frames come back through the completion ring. A frame
///   that finds no free UMEM frame (even after a kick and taking the completions) or no TX ring slot is dropped and
///   counted in `statistics.droppedFrames` (and ``transmitDrops``).
/// - **Modes**: ``AttachMode/generic`` (SKB, any driver), ``AttachMode/native`` (the driver's XDP; veth has it),
///   ``AttachMode/automatic`` (the kernel's choice). ``BindMode/copy`` is what veth and virtio offer;
///   ``BindMode/zeroCopy`` needs a driver with AF_XDP zero-copy support (veth answers `EOPNOTSUPP`).
/// - **Bind**: a queue whose previous socket was closed moments ago is still busy for a while (the kernel defers the
///   teardown), so `EBUSY` is retried with backoff for ``Configuration/bindRetrySeconds``.
/// - The XDP ring wakeup protocol (`XDP_USE_NEED_WAKEUP`) is on by default: the kernel is only called when a ring
///   asks for it.
///
/// Needs root (`CAP_NET_ADMIN`, `CAP_NET_RAW`, `CAP_BPF`/`CAP_SYS_ADMIN` for the XDP program). The interface is looked
/// up in the calling thread's network namespace. One thread at a time, like the buffer pool. The device installs its
/// release hook on `pool` (`BufferPool.setExternalRelease`), so a pool serves at most one AF_XDP device (or other
/// device with external memory).
///
/// If received buffers are still held at ``close()``, the socket is closed but the UMEM stays mapped until the last
/// of them is released; the queue becomes free for a new socket only then.
public final class XDPSocketDevice: PhysicalLayer {
    /// How the XDP program is attached to the interface.
    public enum AttachMode: Sendable, Hashable {
        /// Generic (SKB) XDP: works on any interface, after the kernel built an `sk_buff` (`XDP_FLAGS_SKB_MODE`).
        case generic
        /// The driver's native XDP (`XDP_FLAGS_DRV_MODE`); veth supports it.
        case native
        /// Native if the driver has it, generic otherwise (no flag).
        case automatic
    }

    /// How the socket shares the UMEM with the driver.
    public enum BindMode: Sendable, Hashable {
        /// The kernel copies frames between its buffers and the UMEM (`XDP_COPY`).
        case copy
        /// The driver DMAs straight into the UMEM (`XDP_ZEROCOPY`); fails with `EOPNOTSUPP` where unsupported.
        case zeroCopy
        /// Zero-copy if the driver supports it, else copy (no flag).
        case automatic
    }

    public struct Configuration: Sendable, Hashable {
        public var attachMode: AttachMode = .generic
        public var bindMode: BindMode = .copy
        /// The interface's queue the socket binds to.
        public var queue: UInt32 = 0
        /// UMEM frames (each holds one Ethernet frame); the UMEM is `frameCount * frameSize` bytes.
        public var frameCount = 4096
        /// Bytes per UMEM frame: 2048 or 4096 (a power of two, at most the page size).
        public var frameSize = 2048
        /// Fill, RX, TX and completion ring sizes (powers of two).
        public var fillRingSize = 2048
        public var receiveRingSize = 2048
        public var transmitRingSize = 2048
        public var completionRingSize = 2048
        /// Frames per receive call at most (reported in ``capabilities``).
        public var maxBurst = 32
        /// Frames written to the TX ring before transmit kicks the kernel by itself; nil: ``maxBurst``.
        public var kickThreshold: Int? = nil
        /// Copy-on-pressure: a received frame is copied into a pool buffer (and its UMEM frame recycled at once)
        /// instead of being handed over as it is when fewer than this many UMEM frames would stay free (for
        /// transmit copies) once the fill ring is full again. nil: `max(2 * maxBurst, frameCount / 8)`; 0: never
        /// copy (received frames can then starve transmit).
        public var copyThreshold: Int? = nil
        /// `XDP_USE_NEED_WAKEUP`: system calls only when a ring asks for them.
        public var needWakeup = true
        /// How long to retry a bind that fails with `EBUSY`.
        public var bindRetrySeconds = 2.0
        /// Silences libxdp's and libbpf's messages (such as "No bpffs found": libxdp then attaches its program
        /// without the dispatcher, which is fine for one socket per interface). False prints their warnings to
        /// stderr. Process-wide.
        public var quiet = true
        public init() {}
    }

    public let interfaceName: String
    public let interfaceIndex: Int32
    /// The interface's MAC address (`SIOCGIFHWADDR`).
    public let macAddress: MACAddress
    /// The MTU is the interface's, capped by what a UMEM frame holds after the XDP headroom; no checksum offload.
    public let capabilities: DeviceCapabilities
    public let configuration: Configuration
    /// The pool received frames are wrapped in (its external-release hook belongs to this device).
    public let pool: BufferPool
    /// The XSK socket, for `epoll` (readable when the RX ring has frames). -1 after ``close()``.
    public private(set) var fileDescriptor: Int32
    /// True if the kernel bound the socket in zero-copy mode (`XDP_OPTIONS_ZEROCOPY`).
    public let isZeroCopy: Bool
    /// `EBUSY` binds retried before the socket came up.
    public let bindRetries: Int

    /// The network namespace the socket was made in (libxdp detaches the XDP program by interface index, over
    /// netlink, in the calling thread's namespace, so ``close()`` goes back there).
    let namespaceFD: Int32
    @usableFromInline let frames: UnsafeMutablePointer<XDPFrames>
    @usableFromInline let rxRing: UnsafeMutablePointer<xsk_ring_cons>
    @usableFromInline let txRing: UnsafeMutablePointer<xsk_ring_prod>
    @usableFromInline var socket: OpaquePointer?
    @usableFromInline let area: UnsafeMutableRawPointer
    @usableFromInline let frameSize: Int
    @usableFromInline let frameMask: UInt64
    @usableFromInline let kickThreshold: Int
    @usableFromInline let copyThreshold: Int
    @usableFromInline let needWakeup: Bool
    /// Frames given to the fill ring and not yet taken back from the RX ring.
    @exclusivity(unchecked) @usableFromInline var kernelReceiveFrames = 0
    @exclusivity(unchecked) @usableFromInline var counters = DeviceStatistics()
    /// Frames written to the TX ring since the last kick.
    @exclusivity(unchecked) public private(set) var pendingTransmit = 0
    /// Frames in the TX ring or the kernel, not yet back through the completion ring.
    @exclusivity(unchecked) public private(set) var transmitInFlight = 0
    /// Received frames copied into pool buffers because UMEM frames ran short (see ``Configuration/copyThreshold``).
    @exclusivity(unchecked) public private(set) var copiedReceives = 0
    /// Frames transmit dropped (no free UMEM frame, a full TX ring, a bad length, a closed socket); they are in
    /// `statistics.droppedFrames` too.
    @exclusivity(unchecked) public private(set) var transmitDrops = 0
    /// Frames sent without a copy (handed over as they were).
    @exclusivity(unchecked) public private(set) var zeroCopyTransmits = 0
    /// TX kicks (`sendto`) and RX wakeups (`recvfrom`) issued.
    @exclusivity(unchecked) public private(set) var kicks = 0
    @exclusivity(unchecked) public private(set) var wakeups = 0
    /// Kicks that failed with an error other than `EAGAIN`/`EBUSY`/`ENOBUFS`, and the last such errno.
    public private(set) var kickErrors = 0
    public private(set) var lastKickError: Errno?

    /// Creates the UMEM and the socket on `interface` (in the calling thread's network namespace), attaches the XDP
    /// program and fills the fill ring. Throws the errno: `ENODEV` for an unknown interface, `EPERM` without the
    /// capabilities, `EOPNOTSUPP` for an unsupported mode, `EBUSY` if the queue stayed busy, `EINVAL` for a bad
    /// configuration.
    public init(interface: String, pool: BufferPool, configuration c: Configuration = Configuration()) throws(Errno) {
        func pow2(_ x: Int) -> Bool { x > 0 && x & (x - 1) == 0 }
        guard pow2(c.frameSize), c.frameSize >= 2048, c.frameSize <= Int(sysconf(Int32(_SC_PAGESIZE))),
              c.frameCount >= 2, pow2(c.fillRingSize), pow2(c.receiveRingSize), pow2(c.transmitRingSize),
              pow2(c.completionRingSize), c.fillRingSize < c.frameCount, c.maxBurst >= 1,
              (c.copyThreshold ?? 0) >= 0
        else { throw .invalidArgument }
        let index = cdemi_if_index(interface)
        guard index > 0 else { throw .noDevice }
        var mac: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0, 0, 0)
        let macOK = withUnsafeMutableBytes(of: &mac) {
            cdemi_if_hwaddr(interface, $0.baseAddress!.assumingMemoryBound(to: UInt8.self))
        }
        guard macOK == 0 else { throw Errno(rawValue: errno) }
        let ifMTU = Int(cdemi_if_mtu(interface))
        guard ifMTU > 0 else { throw Errno(rawValue: errno) }

        let ns = cdemi_netns_open("/proc/thread-self/ns/net")
        guard ns >= 0 else { throw Errno(rawValue: errno) }
        cdemi_xdp_set_quiet(c.quiet ? 1 : 0)
        let size = c.frameCount * c.frameSize
        guard let mem = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0),
              mem != MAP_FAILED
        else { let e = Errno(rawValue: errno); _ = cdemi_close(ns); throw e }

        let f = UnsafeMutablePointer<XDPFrames>.allocate(capacity: 1)
        f.initialize(to: XDPFrames(
            area: mem, areaSize: size, frameMask: ~UInt64(c.frameSize - 1), umem: nil,
            free: .allocate(capacity: c.frameCount), freeCount: 0, wrapped: 0, handOver: XDPFrames.none,
            orphaned: false, pool: Unmanaged.passUnretained(pool).toOpaque(),
            fill: .allocate(capacity: 1), completion: .allocate(capacity: 1)))
        f.pointee.fill.initialize(to: xsk_ring_prod())
        f.pointee.completion.initialize(to: xsk_ring_cons())
        let rx = UnsafeMutablePointer<xsk_ring_cons>.allocate(capacity: 1)
        let tx = UnsafeMutablePointer<xsk_ring_prod>.allocate(capacity: 1)
        rx.initialize(to: xsk_ring_cons())
        tx.initialize(to: xsk_ring_prod())

        var xdpFlags: UInt32 = 0
        switch c.attachMode {
        case .generic: xdpFlags |= XDP_FLAGS_SKB_MODE
        case .native: xdpFlags |= XDP_FLAGS_DRV_MODE
        case .automatic: break
        }
        var bindFlags: UInt16 = 0
        switch c.bindMode {
        case .copy: bindFlags |= UInt16(XDP_COPY)
        case .zeroCopy: bindFlags |= UInt16(XDP_ZEROCOPY)
        case .automatic: break
        }
        if c.needWakeup { bindFlags |= UInt16(XDP_USE_NEED_WAKEUP) }
        var socketConfig = cdemi_xdp_socket_config(UInt32(c.receiveRingSize), UInt32(c.transmitRingSize), 0,
                                                   xdpFlags, bindFlags)
        var umemConfig = xsk_umem_config(fill_size: UInt32(c.fillRingSize), comp_size: UInt32(c.completionRingSize),
                                         frame_size: UInt32(c.frameSize), frame_headroom: 0, flags: 0)

        // Create the UMEM and the socket; a failed bind leaves the UMEM's socket half set up, so each retry starts
        // over with a new UMEM (on the same memory).
        var xsk: OpaquePointer?
        var retries = 0
        let deadline = Instant.now().rawValue + Int64(max(0, c.bindRetrySeconds) * 1e9)
        var backoff: UInt32 = 5_000
        var failure: Errno?
        while true {
            var umem: OpaquePointer?
            var r = xsk_umem__create(&umem, mem, UInt64(size), f.pointee.fill, f.pointee.completion, &umemConfig)
            if r != 0 { failure = Errno(rawValue: -r); break }
            r = xsk_socket__create(&xsk, interface, c.queue, umem, rx, tx, &socketConfig)
            if r == 0 {
                f.pointee.umem = umem
                break
            }
            _ = xsk_umem__delete(umem)
            xsk = nil
            if -r == EBUSY && Instant.now().rawValue < deadline {
                retries += 1
                usleep(backoff)
                backoff = min(backoff * 2, 100_000)
                continue
            }
            failure = Errno(rawValue: -r)
            break
        }
        if let failure {
            f.pointee.fill.deallocate()
            f.pointee.completion.deallocate()
            f.pointee.free.deallocate()
            f.deallocate()
            rx.deallocate()
            tx.deallocate()
            munmap(mem, size)
            _ = cdemi_close(ns)
            throw failure
        }

        interfaceName = interface
        interfaceIndex = index
        macAddress = MACAddress(mac.0, mac.1, mac.2, mac.3, mac.4, mac.5)
        // Copy mode drops frames longer than a frame minus the XDP headroom; keep room for a VLAN tag.
        let fits = c.frameSize - Int(XDP_PACKET_HEADROOM) - 14 - 4
        capabilities = DeviceCapabilities(mtu: min(ifMTU, fits), maxBurst: c.maxBurst)
        configuration = c
        self.pool = pool
        frames = f
        rxRing = rx
        txRing = tx
        socket = xsk
        area = mem
        frameSize = c.frameSize
        frameMask = ~UInt64(c.frameSize - 1)
        kickThreshold = max(1, c.kickThreshold ?? c.maxBurst)
        copyThreshold = c.copyThreshold ?? max(2 * c.maxBurst, c.frameCount / 8)
        needWakeup = c.needWakeup
        bindRetries = retries
        namespaceFD = ns
        let fd = xsk_socket__fd(xsk)
        fileDescriptor = fd
        var options: UInt32 = 0
        isZeroCopy = cdemi_xdp_options(fd, &options) == 0 && options & UInt32(XDP_OPTIONS_ZEROCOPY) != 0

        // Every frame starts free; the fill ring gets its share now.
        for i in 0..<c.frameCount { f.pointee.free[i] = UInt64(i * c.frameSize) }
        f.pointee.freeCount = c.frameCount
        pool.setExternalRelease(xdpReleaseFrame, context: UnsafeMutableRawPointer(f))
        refill()
    }

    deinit {
        close()
        rxRing.deallocate()
        txRing.deallocate()
    }

    /// Sends what is waiting, deletes the socket (libxdp detaches the XDP program), and frees the UMEM once no
    /// received buffer refers to it (at once if none does). Idempotent.
    public func close() {
        guard let xsk = socket else { return }
        flush()
        withOwnNamespace { xsk_socket__delete(xsk) }
        _ = cdemi_close(namespaceFD)
        socket = nil
        fileDescriptor = -1
        if frames.pointee.wrapped == 0 {
            pool.setExternalRelease(nil, context: nil)
            XDPFrames.destroy(frames)
        } else {
            frames.pointee.orphaned = true     // the release hook frees it with the last buffer
        }
    }

    public var isOpen: Bool { socket != nil }

    /// Runs `body` in the socket's network namespace (switching the calling thread there and back if needed).
    func withOwnNamespace(_ body: () -> Void) {
        func inode(_ fd: Int32) -> (UInt64, UInt64)? {
            var st = stat()
            return fstat(fd, &st) == 0 ? (UInt64(st.st_dev), UInt64(st.st_ino)) : nil
        }
        let current = cdemi_netns_open("/proc/thread-self/ns/net")
        defer { if current >= 0 { _ = cdemi_close(current) } }
        guard current >= 0, let here = inode(current), let there = inode(namespaceFD), here != there,
              cdemi_setns_net(namespaceFD) == 0
        else { return body() }
        body()
        if cdemi_setns_net(current) != 0 {
            fatalError("XDPSocketDevice: cannot switch the thread back to its network namespace: errno \(errno)")
        }
    }

    /// Received buffers not yet released (UMEM frames the application holds).
    public var heldFrames: Int { isOpen ? frames.pointee.wrapped : -1 }
    /// UMEM frames on the free stack (neither in a ring, nor in flight, nor held).
    public var freeFrames: Int { isOpen ? frames.pointee.freeCount : -1 }
    /// Frames given to the kernel for receiving (fill ring plus RX ring).
    public var receiveFramesInKernel: Int { kernelReceiveFrames }

    /// The kernel's counters for an XDP socket (`XDP_STATISTICS`).
    public struct KernelStatistics: Sendable, Hashable {
        /// Frames dropped for reasons other than a full ring (too long for a frame, for example).
        public var receiveDropped: UInt64
        /// Frames dropped because the RX ring was full (the application did not receive in time).
        public var receiveRingFull: UInt64
        /// Times a frame arrived with the fill ring empty (every UMEM frame held or in the RX ring).
        public var fillRingEmpty: UInt64
        /// Descriptors with a bad address or length on the RX / TX ring.
        public var receiveInvalidDescriptors: UInt64
        public var transmitInvalidDescriptors: UInt64
        /// Times the TX ring was empty when the kernel was kicked.
        public var transmitRingEmpty: UInt64
    }

    /// The kernel's XDP socket statistics, nil when closed or on error.
    public var kernelStatistics: KernelStatistics? {
        guard fileDescriptor >= 0 else { return nil }
        var s = xdp_statistics()
        guard cdemi_xdp_statistics(fileDescriptor, &s) == 0 else { return nil }
        return KernelStatistics(receiveDropped: s.rx_dropped, receiveRingFull: s.rx_ring_full,
                                fillRingEmpty: s.rx_fill_ring_empty_descs,
                                receiveInvalidDescriptors: s.rx_invalid_descs,
                                transmitInvalidDescriptors: s.tx_invalid_descs, transmitRingEmpty: s.tx_ring_empty_descs)
    }

    /// Counters; `droppedFrames` includes the kernel's drops (`rx_dropped`, `rx_ring_full`, `tx_invalid_descs`).
    public var statistics: DeviceStatistics {
        var s = counters
        if let k = kernelStatistics {
            s.droppedFrames += Int(k.receiveDropped + k.receiveRingFull + k.transmitInvalidDescriptors)
        }
        return s
    }

    // MARK: - Frames

    /// Moves free frames to the fill ring, keeping at most `fillRingSize` frames with the kernel for receiving so
    /// the rest stay available for transmit.
    @inline(__always)
    func refill() {
        let f = frames
        let room = configuration.fillRingSize - kernelReceiveFrames
        let want = min(room, f.pointee.freeCount)
        guard want > 0 else { return }
        var idx: UInt32 = 0
        let n = Int(xsk_ring_prod__reserve(f.pointee.fill, UInt32(want), &idx))
        guard n > 0 else { return }
        var count = f.pointee.freeCount
        for i in 0..<n {
            count -= 1
            xsk_ring_prod__fill_addr(f.pointee.fill, idx &+ UInt32(i)).pointee = f.pointee.free[count]
        }
        f.pointee.freeCount = count
        xsk_ring_prod__submit(f.pointee.fill, UInt32(n))
        kernelReceiveFrames += n
    }

    /// Takes sent frames back from the completion ring.
    @inline(__always)
    func reapCompletions() {
        guard transmitInFlight > 0 else { return }
        let f = frames
        var idx: UInt32 = 0
        let n = Int(xsk_ring_cons__peek(f.pointee.completion, UInt32(configuration.completionRingSize), &idx))
        guard n > 0 else { return }
        for i in 0..<n {
            let addr = xsk_ring_cons__comp_addr(f.pointee.completion, idx &+ UInt32(i)).pointee
            f.pointee.free[f.pointee.freeCount] = addr & frameMask
            f.pointee.freeCount += 1
        }
        xsk_ring_cons__release(f.pointee.completion, UInt32(n))
        transmitInFlight -= n
    }

    // MARK: - Receive

    public func receive(into out: UnsafeMutablePointer<DemiBuffer>, capacity: Int, now: Instant) -> Int {
        guard socket != nil else { return 0 }
        if pendingTransmit > 0 { flush() }
        reapCompletions()
        refill()
        var idx: UInt32 = 0
        let n = Int(xsk_ring_cons__peek(rxRing, UInt32(min(capacity, configuration.maxBurst)), &idx))
        if n == 0 {
            if needWakeup && xsk_ring_prod__needs_wakeup(frames.pointee.fill) != 0 {
                wakeups += 1
                _ = cdemi_xdp_wake_rx(fileDescriptor)
            }
            return 0
        }
        let f = frames
        var got = 0
        // Frames the fill ring lacks (the next refill takes them from the free stack first).
        var deficit = configuration.fillRingSize - kernelReceiveFrames
        for i in 0..<n {
            let d = xsk_ring_cons__rx_desc(rxRing, idx &+ UInt32(i))!
            let addr = d.pointee.addr
            let length = Int(d.pointee.len)
            let base = addr & frameMask
            let storage = area + Int(base)
            deficit += 1
            guard length >= 14 else {
                f.pointee.free[f.pointee.freeCount] = base
                f.pointee.freeCount += 1
                counters.droppedFrames += 1
                continue
            }
            var buffer: DemiBuffer?
            if copyThreshold > 0 && f.pointee.freeCount - deficit < copyThreshold {
                // Under pressure: copy, and recycle the UMEM frame at once.
                if let b = pool.allocate(size: length) {
                    b.baseAddress.copyMemory(from: storage + Int(addr - base), byteCount: length)
                    f.pointee.free[f.pointee.freeCount] = base
                    f.pointee.freeCount += 1
                    copiedReceives += 1
                    buffer = b
                }
            }
            if buffer == nil,
               let b = pool.wrapExternal(storage: storage, capacity: frameSize, offset: Int(addr - base),
                                         length: length, object: storage) {
                f.pointee.wrapped += 1
                buffer = b
            }
            if let b = buffer {
                out[got] = b
                got += 1
                counters.receivedFrames += 1
                counters.receivedBytes += length
            } else {
                f.pointee.free[f.pointee.freeCount] = base
                f.pointee.freeCount += 1
                counters.droppedFrames += 1
            }
        }
        xsk_ring_cons__release(rxRing, UInt32(n))
        kernelReceiveFrames -= n
        return got
    }

    // MARK: - Transmit

    @discardableResult
    public func transmit(_ frame: DemiBuffer, now: Instant) -> Bool {
        let length = frame.chainCount
        guard socket != nil, length >= 14, length <= frameSize else {
            frame.releaseChain()
            dropTransmit()
            return false
        }
        let f = frames
        var idx: UInt32 = 0
        if xsk_ring_prod__reserve(txRing, 1, &idx) != 1 {
            // The TX ring is full of frames the kernel has not taken yet: kick, take completions, look again.
            flush(force: true)
            reapCompletions()
            guard xsk_ring_prod__reserve(txRing, 1, &idx) == 1 else {
                frame.releaseChain()
                dropTransmit()
                return false
            }
        }
        let desc = xsk_ring_prod__tx_desc(txRing, idx)!
        if let addr = handOver(frame) {
            desc.pointee.addr = addr
            zeroCopyTransmits += 1
        } else {
            if f.pointee.freeCount == 0 {
                reapCompletions()
                if f.pointee.freeCount == 0 && transmitInFlight > 0 {
                    // Copy mode completes frames only when the kernel is kicked: kick the ones waiting, look again.
                    flush(force: true)
                    reapCompletions()
                }
            }
            guard f.pointee.freeCount > 0 else {
                txRing.pointee.cached_prod &-= 1        // give the reserved slot back
                frame.releaseChain()
                dropTransmit()
                return false
            }
            f.pointee.freeCount -= 1
            let addr = f.pointee.free[f.pointee.freeCount]
            var at = area + Int(addr)
            var h: UnsafeMutablePointer<BufferHeader>? = frame.header
            while let c = h {
                let n = Int(c.pointee.length)
                at.copyMemory(from: c.pointee.storage.unsafelyUnwrapped + Int(c.pointee.offset), byteCount: n)
                at += n
                h = c.pointee.next
            }
            frame.releaseChain()
            desc.pointee.addr = addr
        }
        desc.pointee.len = UInt32(length)
        desc.pointee.options = 0
        xsk_ring_prod__submit(txRing, 1)
        transmitInFlight += 1
        counters.transmittedFrames += 1
        counters.transmittedBytes += length
        pendingTransmit += 1
        if pendingTransmit >= kickThreshold { flush() }
        return true
    }

    @inline(never)
    func dropTransmit() {
        counters.droppedFrames += 1
        transmitDrops += 1
    }

    /// If `frame` is one of this device's UMEM frames, single-segment and referenced only by the caller, takes it
    /// over without copying: its buffer header goes back to the pool, the frame itself to the TX ring. Returns the
    /// UMEM address of its first byte, or nil if it must be copied.
    @inline(__always)
    func handOver(_ frame: DemiBuffer) -> UInt64? {
        let h = frame.header
        guard h.pointee.next == nil, h.pointee.refcount == 1 else { return nil }
        var root = h
        if h.pointee.kind == BufferHeader.Kind.view {
            guard let p = h.pointee.parent, p.pointee.refcount == 1 else { return nil }
            root = p
        }
        guard root.pointee.kind == BufferHeader.Kind.external,
              root.pointee.owner == frames.pointee.pool,
              let rootStorage = root.pointee.storage,
              rootStorage >= area, rootStorage < area + frames.pointee.areaSize,
              let storage = h.pointee.storage
        else { return nil }
        let addr = UInt64(storage - area) + UInt64(h.pointee.offset)
        let base = UInt64(rootStorage - area)
        guard addr & frameMask == base, (addr - base) + UInt64(h.pointee.length) <= UInt64(frameSize) else {
            return nil
        }
        frames.pointee.handOver = base
        frame.release()     // the hook sees `handOver` and keeps the frame out of the free stack
        return addr
    }

    /// ``PhysicalLayer/flush(now:)``: the stack calls it once at the end of each pass.
    public func flush(now: Instant) { flush(force: false) }

    /// Kicks the kernel for the frames in the TX ring (when it asks for a wakeup). Returns false if a kick failed
    /// (`EAGAIN`, `EBUSY`, `ENOBUFS` leave the frames for the next kick).
    @discardableResult
    public func flush() -> Bool { flush(force: false) }

    @discardableResult
    func flush(force: Bool) -> Bool {
        guard socket != nil, pendingTransmit > 0 || force else { return true }
        let waiting = max(pendingTransmit, 1)
        pendingTransmit = 0
        if needWakeup && xsk_ring_prod__needs_wakeup(txRing) == 0 { return true }
        // Copy mode sends at most 32 frames per system call and says EAGAIN while more wait.
        var attempts = waiting / 32 + 2
        while attempts > 0 {
            attempts -= 1
            kicks += 1
            if cdemi_xdp_kick_tx(fileDescriptor) >= 0 { return true }
            let e = errno
            if e == EAGAIN || e == EBUSY || e == ENOBUFS || e == EINTR {
                reapCompletions()          // a full completion ring also stops the kernel
                continue
            }
            kickErrors += 1
            lastKickError = Errno(rawValue: e)
            return false
        }
        pendingTransmit = max(pendingTransmit, 1)      // try again at the next kick
        return false
    }
}

/// The UMEM's bookkeeping, in unmanaged memory so the pool's release hook can reach it (and outlive the device while
/// received buffers are held after ``XDPSocketDevice/close()``).
@usableFromInline
struct XDPFrames {
    static let none = UInt64.max
    let area: UnsafeMutableRawPointer
    let areaSize: Int
    let frameMask: UInt64
    var umem: OpaquePointer?
    /// Free frames' UMEM addresses (a stack).
    let free: UnsafeMutablePointer<UInt64>
    var freeCount: Int
    /// Frames wrapped as buffers and not yet released.
    var wrapped: Int
    /// The frame whose buffer is being released by a zero-copy transmit: it goes to the TX ring, not the free stack.
    var handOver: UInt64
    /// The device is closed; the last release frees the UMEM.
    var orphaned: Bool
    /// The pool (unretained).
    let pool: UnsafeMutableRawPointer
    let fill: UnsafeMutablePointer<xsk_ring_prod>
    let completion: UnsafeMutablePointer<xsk_ring_cons>

    static func destroy(_ f: UnsafeMutablePointer<XDPFrames>) {
        if let u = f.pointee.umem { _ = xsk_umem__delete(u) }
        munmap(f.pointee.area, f.pointee.areaSize)
        f.pointee.free.deallocate()
        f.pointee.fill.deallocate()
        f.pointee.completion.deallocate()
        f.deallocate()
    }
}

/// The pool's external-release hook: `object` is the frame's address, `context` the ``XDPFrames``.
private func xdpReleaseFrame(_ object: UnsafeMutableRawPointer?, _ context: UnsafeMutableRawPointer?) {
    guard let object, let context else { return }
    let f = context.assumingMemoryBound(to: XDPFrames.self)
    let base = UInt64(object - f.pointee.area)
    f.pointee.wrapped -= 1
    if base == f.pointee.handOver {
        f.pointee.handOver = XDPFrames.none
        return
    }
    if f.pointee.orphaned {
        if f.pointee.wrapped == 0 {
            Unmanaged<BufferPool>.fromOpaque(f.pointee.pool).takeUnretainedValue().setExternalRelease(nil, context: nil)
            XDPFrames.destroy(f)
        }
        return
    }
    f.pointee.free[f.pointee.freeCount] = base
    f.pointee.freeCount += 1
}
#endif
