// DPDK (catnip's device), built only with the package trait `DPDK` (`swift build --traits DPDK`), which needs DPDK
// 22.11 (`apt-get install libdpdk-dev`). Without the trait this target is empty and DPDK is not needed.
#if DPDK
import CDPDK
import DemiBuffers
import DemiCore
import DemiDevices
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What went wrong in DPDK. Codes are positive errno values (DPDK's `rte_errno`, or a driver's `-errno`).
public enum DPDKError: Error, Hashable, CustomStringConvertible {
    /// `rte_eal_init` failed. The EAL cannot be initialised again in this process; every later call fails the same.
    case ealInitFailed(code: Int32, arguments: [String])
    /// The EAL is already up in this process (with `arguments`), and it is initialised only once: open further
    /// devices on its ports (``DPDKDevice/init(port:pool:configuration:)``) or hot-plug a virtual device
    /// (``DPDKDevice/init(attaching:pool:configuration:)``).
    case ealAlreadyInitialized(arguments: [String])
    /// ``DPDKEnvironment/initialize(arguments:)`` has not been called.
    case ealNotInitialized
    /// The EAL has no port that no other device holds.
    case noFreePort
    /// Another ``DPDKDevice`` holds the port.
    case portInUse(UInt16)
    /// No such port.
    case invalidPort(UInt16)
    /// `rte_dev_probe` refused the device arguments (no such driver, no such interface, ...).
    case attachFailed(devargs: String, code: Int32)
    /// `rte_pktmbuf_pool_create` failed (usually `ENOMEM`: more EAL memory, `-m`, is needed).
    case mempoolFailed(name: String, code: Int32)
    /// A step of the port setup failed (configure, descriptors, rxQueue, txQueue, promiscuous, start, info).
    case portSetupFailed(port: UInt16, step: String, code: Int32)

    public var description: String {
        func text(_ code: Int32) -> String { "\(code) (\(String(cString: cdpdk_strerror(code))))" }
        switch self {
        case let .ealInitFailed(code, args): return "rte_eal_init failed: \(text(code)); arguments: \(args.joined(separator: " "))"
        case let .ealAlreadyInitialized(args):
            return "the DPDK EAL is initialised once per process and is already up (arguments: \(args.joined(separator: " ")))"
        case .ealNotInitialized: return "the DPDK EAL is not initialised"
        case .noFreePort: return "no free DPDK port"
        case let .portInUse(p): return "DPDK port \(p) is held by another device"
        case let .invalidPort(p): return "no DPDK port \(p)"
        case let .attachFailed(devargs, code): return "rte_dev_probe(\(devargs)) failed: \(text(code))"
        case let .mempoolFailed(name, code): return "rte_pktmbuf_pool_create(\(name)) failed: \(text(code))"
        case let .portSetupFailed(port, step, code): return "DPDK port \(port): \(step) failed: \(text(code))"
        }
    }
}

/// The process-wide DPDK environment: the EAL (initialised **once per process**; `rte_eal_init` cannot be called
/// twice, even after a failure) and which ports devices hold.
///
/// The EAL arguments are upstream's `dpdk.eal_init` list. Always pass `--no-pci` on machines whose NICs are in use
/// by the kernel. Virtual devices given as `--vdev` are probed by `rte_eal_init` on the calling thread, so a
/// `net_af_packet` vdev's interface is looked up in **the calling thread's network namespace**; the same holds for
/// ``attach(_:)``. (Threads the EAL starts stay in that namespace, which keeps it alive until the process exits.)
/// The calling thread's CPU affinity is restored after `rte_eal_init` (which pins it to its first lcore). The EAL's
/// runtime directory (`/var/run/dpdk/<file-prefix>`, left empty with `--no-shconf` or `--in-memory`) is removed at
/// exit if it is still empty then.
public enum DPDKEnvironment {
    struct State {
        var arguments: [String]?
        var failure: DPDKError?
        var heldPorts: Set<UInt16> = []
        var nameCounter = 0
        var poolCounter = 0
    }

    static let state = Mutex(State())

    /// True once `rte_eal_init` succeeded in this process.
    public static var isInitialized: Bool { state.withLock { $0.arguments != nil } }
    /// The arguments the EAL was initialised with (nil before).
    public static var arguments: [String]? { state.withLock { $0.arguments } }

    /// Initialises the EAL with `arguments` (without the program name). Throws ``DPDKError/ealAlreadyInitialized(arguments:)``
    /// if the EAL is already up (whatever the arguments) and the first failure again if it failed before.
    public static func initialize(arguments: [String]) throws(DPDKError) {
        try state.withLock { (s: inout State) throws(DPDKError) in
            if let previous = s.arguments { throw .ealAlreadyInitialized(arguments: previous) }
            if let failure = s.failure { throw failure }
            // The EAL may keep pointers into argv: these copies live as long as the process.
            let argv = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: arguments.count + 2)
            argv[0] = strdup("demikernel")
            for (i, a) in arguments.enumerated() { argv[i + 1] = strdup(a) }
            argv[arguments.count + 1] = nil
            let r = cdpdk_eal_init(Int32(arguments.count + 1), argv)
            guard r >= 0 else {
                let e = DPDKError.ealInitFailed(code: -r, arguments: arguments)
                s.failure = e
                throw e
            }
            s.arguments = arguments
            cdpdk_remove_runtime_dir_at_exit()
        }
    }

    /// Hot-plugs a device (`rte_dev_probe`), for example `"net_af_packet1,iface=veth0"` (interfaces are looked up in
    /// the calling thread's network namespace), and returns its port. The name before the first comma must be unique
    /// in the process (see ``uniqueDeviceName(_:)``).
    public static func attach(_ devargs: String) throws(DPDKError) -> UInt16 {
        guard isInitialized else { throw .ealNotInitialized }
        let name = String(devargs.prefix { $0 != "," })
        let r = cdpdk_dev_probe(devargs)
        guard r == 0 else { throw .attachFailed(devargs: devargs, code: -r) }
        var port: UInt16 = 0
        guard cdpdk_port_by_name(name, &port) == 0 else {
            _ = cdpdk_vdev_remove(name)
            throw .attachFailed(devargs: devargs, code: ENODEV)
        }
        return port
    }

    /// A device name for `driver` (such as `net_af_packet`) that no port of this process has: the driver's name and
    /// a counter (the vdev bus matches drivers by prefix).
    public static func uniqueDeviceName(_ driver: String = "net_af_packet") -> String {
        state.withLock { s in
            while true {
                s.nameCounter += 1
                let name = "\(driver)_demi\(s.nameCounter)"
                var port: UInt16 = 0
                if cdpdk_port_by_name(name, &port) != 0 { return name }
            }
        }
    }

    /// Ring frame size for `net_af_packet` vdevs made by ``afPacketDevargs(_:interface:frames:)``.
    ///
    /// DPDK 22.11's `net_af_packet` always joins its sockets to a fanout group with `PACKET_FANOUT_FLAG_DEFRAG`, so
    /// the kernel reassembles IPv4 fragments before the driver sees them and hands over each datagram as **one**
    /// frame. With the driver's default 2048-byte ring frames a datagram longer than about 1,960 bytes is truncated
    /// to that (and the stack drops it as malformed: its IP total length exceeds the frame).
    ///
    /// This size is the largest whose frame data (the frame less 32 bytes of `tpacket2_hdr`) fits a 64 KiB mbuf
    /// after its headroom (the driver copies a frame into one mbuf and refuses to set up its RX queue otherwise), and
    /// of which 32 make whole pages (the driver addresses frame `i` at `i × framesz` in the ring, the kernel at its
    /// block's start plus its place in the block: the two agree only when a block holds a whole number of frames
    /// exactly). With 4 KiB pages: 65,408 bytes, so a reassembled IP datagram of up to 65,328 bytes arrives whole.
    public static let afPacketFrameSize: Int = {
        let page = max(4096, Int(getpagesize()))
        let limit = 65_535 - Int(cdpdk_mbuf_headroom()) + 32
        return page * ((limit * afPacketFramesPerBlock) / page) / afPacketFramesPerBlock
    }()
    /// Ring frames per block (see ``afPacketFrameSize``); the block is a whole number of pages.
    public static let afPacketFramesPerBlock = 32
    /// The receive mbuf data room (headroom included) that holds an ``afPacketFrameSize`` ring frame.
    public static let afPacketReceiveDataRoom = 65_535

    /// `net_af_packet` device arguments for `interface` whose ring frames hold a whole reassembled datagram (see
    /// ``afPacketFrameSize``): blocks of 32 frames, `frames` frames per ring (rounded up to a multiple of 32; kernel
    /// memory: about 64 KiB × frames for each of the RX and TX rings). Open the device with
    /// ``DPDKDevice/Configuration/afPacket``, whose receive mbufs hold such a frame.
    public static func afPacketDevargs(_ name: String, interface: String, frames: Int = afPacketDefaultFrames) -> String {
        let k = afPacketFramesPerBlock
        let count = max(1, (frames + k - 1) / k) * k
        return "\(name),iface=\(interface),blocksz=\(afPacketFrameSize * k),framesz=\(afPacketFrameSize),framecnt=\(count)"
    }

    /// Ring frames of the `net_af_packet` vdevs catnip makes (``afPacketDevargs(_:interface:frames:)``), about 16 MB
    /// of kernel memory per ring with frames that hold a whole datagram.
    public static let afPacketDefaultFrames = 256

    /// The receive ring size, in frames, of the `net_af_packet` vdevs in EAL `arguments` (the smallest if several):
    /// each one's `framecnt`, or the driver's default (512) where it has none. Nil if there is no such vdev.
    public static func afPacketRingFrames(_ arguments: [String]) -> Int? {
        var specs: [Substring] = []
        var i = 0
        while i < arguments.count {
            let a = arguments[i]
            if a.hasPrefix("--vdev=") { specs.append(a.dropFirst("--vdev=".count)) }
            else if a == "--vdev", i + 1 < arguments.count { specs.append(Substring(arguments[i + 1])); i += 1 }
            i += 1
        }
        var frames: Int?
        for spec in specs where spec.hasPrefix("net_af_packet") {
            let count = spec.split(separator: ",").dropFirst()
                .first { $0.hasPrefix("framecnt=") }
                .flatMap { Int($0.dropFirst("framecnt=".count)) } ?? 512
            frames = min(frames ?? count, count)
        }
        return frames
    }

    /// The largest TCP receive window worth offering through a `net_af_packet` port whose receive ring holds
    /// `ringFrames` frames: three quarters of the ring in segments of `segmentSize` bytes (at least 16 segments).
    ///
    /// The kernel writes frames into the ring as fast as the peer sends them, and drops what finds the ring full.
    /// A sender may put a whole window on the wire at once, faster than we take frames off (each is copied into an
    /// mbuf and goes through the stack), so a window larger than the ring overflows it: with the stack's default
    /// 1 MiB window (about 720 segments) and 256-frame rings, about 1 % of a bulk transfer's segments were lost
    /// there, and 512 frames lost as many; 1024 frames (128 MB of kernel memory per port) or a window of 256 KiB
    /// lost none. The rest of the ring is left for ACKs and other connections.
    public static func afPacketReceiveWindow(ringFrames: Int, segmentSize: Int) -> Int {
        max(16, ringFrames * 3 / 4) * max(1, segmentSize)
    }

    /// The valid ports, whether or not a device holds them.
    public static var ports: [UInt16] {
        guard isInitialized else { return [] }
        return (0..<cdpdk_max_ports()).filter { cdpdk_port_valid($0) != 0 }
    }

    /// EAL arguments for tests and tools on a machine without DPDK NICs: no PCI scan, no shared files, no
    /// telemetry, one lcore, `memoryMB` of memory (ordinary pages with `--no-huge`, or hugepages with
    /// `--in-memory`, which must be reserved and mounted), a unique `--file-prefix`, and `vdev` if given (such as
    /// `"net_af_packet0,iface=veth0"`).
    ///
    /// `hugeDirectory`: a hugetlbfs mount for `--huge-dir` (with `hugepages`); without it the EAL takes the first
    /// hugetlbfs mount of the default page size, or anonymous hugepages (`--in-memory` needs no mount).
    public static func defaultArguments(vdev: String? = nil, filePrefix: String? = nil, memoryMB: Int = 256,
                                        hugepages: Bool = false, hugeDirectory: String? = nil) -> [String] {
        var a = ["--no-pci", "--no-telemetry", "-l", "0", "--file-prefix=\(filePrefix ?? "demi\(getpid())")"]
        a += hugepages ? ["--in-memory", "-m", "\(memoryMB)"] : ["--no-huge", "--no-shconf", "-m", "\(memoryMB)"]
        if hugepages, let hugeDirectory { a.append("--huge-dir=\(hugeDirectory)") }
        if let vdev { a.append("--vdev=\(vdev)") }
        return a
    }

    /// User-supplied EAL arguments (upstream's `dpdk.eal_init`) with every `net_af_packet` vdev that does not set its
    /// own ring geometry (`blocksz`, `framesz`) given ``afPacketDevargs(_:interface:frames:)``'s, other keys kept
    /// (`framecnt` sets the frame count). With the driver's defaults (2048-byte ring frames) a datagram the kernel
    /// reassembled for the driver (its fanout group defragments) is **truncated** to about 1,960 bytes and dropped by
    /// the stack; these frames hold one of up to 65,328 bytes. `afPacket` is true if the arguments name a
    /// `net_af_packet` vdev: open it with ``DPDKDevice/Configuration/afPacket``, whose 64 KiB receive mbufs hold
    /// such frames (also frames of a user's own `framesz` up to that).
    public static func wholeDatagramArguments(_ arguments: [String]) -> (arguments: [String], afPacket: Bool) {
        var out: [String] = []
        var afPacket = false
        func rewrite(_ spec: String) -> String {
            let parts = spec.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            guard let name = parts.first, name.hasPrefix("net_af_packet") else { return spec }
            afPacket = true
            var keys: [(String, String)] = []
            for kv in parts.dropFirst() {
                let pair = kv.split(separator: "=", maxSplits: 1).map(String.init)
                keys.append((pair[0], pair.count > 1 ? pair[1] : ""))
            }
            guard let iface = keys.first(where: { $0.0 == "iface" })?.1,
                  !keys.contains(where: { $0.0 == "blocksz" || $0.0 == "framesz" })
            else { return spec }
            let frames = keys.first { $0.0 == "framecnt" }.flatMap { Int($0.1) } ?? 256
            let rest = keys.filter { !["iface", "framecnt"].contains($0.0) }.map { $0.1.isEmpty ? $0.0 : "\($0.0)=\($0.1)" }
            return ([afPacketDevargs(name, interface: iface, frames: frames)] + rest).joined(separator: ",")
        }
        var i = 0
        while i < arguments.count {
            let a = arguments[i]
            if a.hasPrefix("--vdev=") {
                out.append("--vdev=" + rewrite(String(a.dropFirst("--vdev=".count))))
            } else if a == "--vdev", i + 1 < arguments.count {
                out += [a, rewrite(arguments[i + 1])]
                i += 1
            } else {
                out.append(a)
            }
            i += 1
        }
        return (out, afPacket)
    }

    /// True if at least `pages` 2 MiB hugepages are free and hugetlbfs is mounted (for ``defaultArguments``).
    public static func hugepagesAvailable(pages: Int = 128) -> Bool {
        guard let info = readFile("/proc/meminfo"), let mounts = readFile("/proc/mounts"), mounts.contains("hugetlbfs")
        else { return false }
        for line in info.split(separator: "\n") where line.hasPrefix("HugePages_Free:") {
            return Int(line.split(separator: " ").last ?? "") ?? 0 >= pages
        }
        return false
    }

    static func readFile(_ path: String) -> String? {
        guard let f = fopen(path, "r") else { return nil }
        defer { fclose(f) }
        var out = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = fread(&buf, 1, buf.count, f)
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func nextPoolNumber() -> Int { state.withLock { s in s.poolCounter += 1; return s.poolCounter } }

    static func hold(_ port: UInt16) throws(DPDKError) {
        try state.withLock { (s: inout State) throws(DPDKError) in
            guard s.arguments != nil else { throw .ealNotInitialized }
            guard cdpdk_port_valid(port) != 0 else { throw .invalidPort(port) }
            guard s.heldPorts.insert(port).inserted else { throw .portInUse(port) }
        }
    }

    static func holdFirstFree() throws(DPDKError) -> UInt16 {
        try state.withLock { (s: inout State) throws(DPDKError) -> UInt16 in
            guard s.arguments != nil else { throw .ealNotInitialized }
            for p in 0..<cdpdk_max_ports() where cdpdk_port_valid(p) != 0 && !s.heldPorts.contains(p) {
                s.heldPorts.insert(p)
                return p
            }
            throw .noFreePort
        }
    }

    static func unhold(_ port: UInt16) { _ = state.withLock { $0.heldPorts.remove(port) } }
}

/// Wrapped mbufs not yet released, and the mempools they belong to, which are freed when the device is closed and
/// the last of them has come back.
final class MbufLedger {
    var outstanding = 0
    var mempool: UnsafeMutableRawPointer?
    /// The receive mempool if it is a separate one.
    var receiveMempool: UnsafeMutableRawPointer?
    /// The mempool of indirect mbufs (zero-copy transmit of pieces of other mbufs).
    var indirectMempool: UnsafeMutableRawPointer?
    /// The mempool of large mbufs for application buffers.
    var largeMempool: UnsafeMutableRawPointer?
    var closed = false
    unowned(unsafe) let pool: BufferPool

    init(mempool: UnsafeMutableRawPointer, receiveMempool: UnsafeMutableRawPointer?,
         indirectMempool: UnsafeMutableRawPointer?, largeMempool: UnsafeMutableRawPointer?, pool: BufferPool) {
        self.mempool = mempool
        self.receiveMempool = receiveMempool
        self.indirectMempool = indirectMempool
        self.largeMempool = largeMempool
        self.pool = pool
    }

    /// Frees the mempools once closed and idle, and drops the reference the pool's hook held.
    func finishIfIdle() {
        guard closed, outstanding == 0, let mp = mempool else { return }
        mempool = nil
        cdpdk_pool_free(mp)
        if let rx = receiveMempool {
            receiveMempool = nil
            cdpdk_pool_free(rx)
        }
        if let ind = indirectMempool {
            indirectMempool = nil
            cdpdk_pool_free(ind)
        }
        if let large = largeMempool {
            largeMempool = nil
            cdpdk_pool_free(large)
        }
        pool.setExternalRelease(nil, context: nil)
        Unmanaged.passUnretained(self).release()
    }
}

/// The pool's external-release hook: the last reference to a wrapped mbuf is gone. A nil object is a header whose
/// mbuf was handed to the driver (zero-copy transmit) and needs nothing.
private func releaseWrappedMbuf(_ object: UnsafeMutableRawPointer?, _ context: UnsafeMutableRawPointer?) {
    guard let object, let context else { return }
    cdpdk_mbuf_free_segment(object)
    let ledger = Unmanaged<MbufLedger>.fromOpaque(context).takeUnretainedValue()
    ledger.outstanding -= 1
    if ledger.closed && ledger.outstanding == 0 { ledger.finishIfIdle() }
}

/// A DPDK ethdev port with one RX and one TX queue (catnip's device).
///
/// - **Receive**: `rte_eth_rx_burst`, then each mbuf's data is wrapped as a ``DemiBuffer`` **without copying**
///   (``BufferPool/wrapExternal(storage:capacity:offset:length:object:)``): the buffer's storage is the mbuf's data
///   room and its window the mbuf's data, so the headroom in front (128 bytes) is free for prepending. A multi-segment
///   mbuf becomes a chain of buffers. When the last reference goes, the pool's external-release hook (set by this
///   device) frees the mbuf segment (`rte_pktmbuf_free_seg`). Held buffers keep mbufs out of the mempool, so while
///   fewer than ``Configuration/receiveCopyBelow`` (default: half) of the receive mempool's mbufs are free, frames
///   are copied into pool buffers instead and their mbufs returned at once (copy-on-pressure, ``copiedReceives``):
///   a stack that holds many received frames (TCP send queues of an echo, out-of-order queues) cannot drain the
///   mempool, after which the driver would receive nothing and transmit copies would fail.
/// - **Transmit** without a copy where the bytes already lie in mbufs of this device: a frame that *is* one (one
///   segment, no other reference, like a received frame echoed back) is handed over as it is, with its window; in a
///   frame of several pieces (headers, then payload), each piece in an mbuf (a buffer from
///   ``allocateTransmitBuffer(size:)``, which catnip's `sgaalloc` uses, a view of one, received payload pushed
///   back) becomes an indirect mbuf attached to it, behind a small mbuf the headers are copied into, so TCP can send
///   the same bytes again later (``attachedTransmits``; needs a port that sends mbuf chains,
///   `RTE_ETH_TX_OFFLOAD_MULTI_SEGS`: `net_af_packet` and `net_tap` do, `net_af_xdp` does not). Anything else is
///   copied (walking its chain) into a fresh mbuf. Frames are queued and sent with one `rte_eth_tx_burst` per ``flush(now:)`` (the stack calls it once at
///   the end of each pass), at the start of each receive, and whenever ``Configuration/maxBurst`` are waiting.
///   Frames the driver does not take after a few tries are freed and counted as dropped.
/// - **Capabilities**: the MTU is the port's (`rte_eth_dev_get_mtu`), capped by what one mbuf holds. Checksum
///   offloads: what the port reports (`rte_eth_dev_info_get`) is in ``reportedOffloads``; of those, the IPv4 header
///   and TCP checksums are enabled on the port and offered to the stack in ``capabilities`` (see
///   ``usableChecksumOffloads(receive:transmit:enabled:)``, and ``Configuration/checksumOffload`` to turn them off).
///   On transmit the device sets each IPv4 frame's offload flags, header lengths and TCP pseudo-header checksum; on
///   receive it drops frames the port flagged bad, and checks itself what the port left unverified
///   (``checksumDrops``). `net_af_packet` and `net_af_xdp` report none; `net_tap` reports all three.
///
/// Open it (and close it) on a thread in the interface's network namespace: `net_af_packet` looks the interface up
/// at probe time, and starting the port sets the interface's flags with `ioctl`s by name.
///
/// One thread at a time, like the buffer pool. The device installs its release hook on `pool`, so a pool serves at
/// most one DPDK device (or other device with external memory).
public final class DPDKDevice: PhysicalLayer {
    public struct Configuration: Sendable, Hashable {
        /// Mbufs in the device's mempool (a power of two minus one is the most memory-efficient): the transmit
        /// copies, and the received frames unless ``receiveMbufDataRoom`` sets up a separate receive mempool.
        public var mbufCount = 8191
        /// Per-lcore mempool cache (used only on EAL threads).
        public var mbufCacheSize = 0
        /// Data room of each mbuf, headroom included; nil: `RTE_MBUF_DEFAULT_BUF_SIZE` (2048 + 128).
        public var mbufDataRoom: Int? = nil
        /// A separate receive mempool of ``receiveMbufCount`` mbufs with this data room (headroom included), for a
        /// driver whose received frames exceed a transmit mbuf: `net_af_packet` with
        /// ``DPDKEnvironment/afPacketDevargs(_:interface:frames:)``, whose socket joins a fanout group with
        /// `PACKET_FANOUT_FLAG_DEFRAG`, so the kernel reassembles IPv4 fragments and hands over whole datagrams (up to
        /// 64 KiB). nil: one mempool for both directions.
        public var receiveMbufDataRoom: Int? = nil
        /// Mbufs in the separate receive mempool (see ``receiveMbufDataRoom``).
        public var receiveMbufCount = 255
        /// Copy-on-pressure: while fewer than this many mbufs of the receive mempool are free (checked once per
        /// receive burst), received frames are copied into pool buffers and their mbufs returned at once, instead of
        /// being wrapped without a copy, so buffers the stack holds for long (TCP receive and out-of-order queues,
        /// unread datagrams) cannot drain the mempool and stall reception. nil: half the receive mempool; 0: never
        /// copy; `Int.max`: always copy.
        public var receiveCopyBelow: Int? = nil
        public var receiveDescriptors = 1024
        public var transmitDescriptors = 1024
        /// Frames per receive call and per transmit batch at most (reported in ``capabilities``).
        public var maxBurst = 32
        public var promiscuous = false
        /// Transmit without copying what already lies in mbufs of this device: a received frame sent back whole is
        /// handed to the driver as it is, and a frame's pieces held in mbufs (buffers from
        /// ``DPDKDevice/allocateTransmitBuffer(size:)``, i.e. `sgaalloc` on catnip, or received payload pushed back)
        /// go as indirect mbufs attached to them, behind a small mbuf the headers are copied into. Off: every frame
        /// is copied into one fresh mbuf, and ``DPDKDevice/allocateTransmitBuffer(size:)`` offers nothing.
        public var zeroCopyTransmit = true
        /// Pieces shorter than this are copied even when they lie in an mbuf, and
        /// ``DPDKDevice/allocateTransmitBuffer(size:)`` offers no mbuf for buffers shorter than this: attaching
        /// takes an indirect mbuf from a mempool, reference-count updates on attach and free, and a second segment
        /// for the driver to walk, which costs more than copying a few hundred bytes into the header mbuf. 0: attach
        /// every piece in an mbuf.
        public var transmitCopyBelow = 512
        /// Indirect mbufs for zero-copy transmit (each frame in the driver's hands holds one per attached piece).
        public var indirectMbufCount = 4095
        /// ``DPDKDevice/allocateTransmitBuffer(size:)`` hands out mbufs only while more than this many of the
        /// mempool's are free (the rest stay for transmit headers and copies); nil: a quarter of ``mbufCount``.
        public var applicationMbufReserve: Int? = nil
        /// Mbufs of ``largeMbufDataRoom`` bytes for application buffers larger than one frame (a 64 KiB push that
        /// TCP cuts into segments, each attached to its part), in a mempool of their own; 0: none (larger buffers
        /// come from the buffer pool and are copied when sent). If the mempool cannot be created (no memory left)
        /// the device opens without it.
        public var largeMbufCount = 127
        /// Data room of each large mbuf (at most 65535, the width of an mbuf's length fields): the largest application
        /// buffer one holds (its window starts at the mbuf's buffer, with no headroom).
        public var largeMbufDataRoom = 65535
        /// Use the checksum offloads the port reports (see ``DPDKDevice/usableChecksumOffloads(receive:transmit:enabled:)``).
        public var checksumOffload = true
        /// Remove the port's virtual device (`rte_eal_hotplug_remove`) on ``close()``, so its name and interface are
        /// free again.
        public var removeDeviceOnClose = true
        public init() {}

        /// For a `net_af_packet` vdev made by ``DPDKEnvironment/afPacketDevargs(_:interface:frames:)`` (ring frames of
        /// ``DPDKEnvironment/afPacketFrameSize`` bytes): 64 KiB receive mbufs in a separate mempool of 255 (about
        /// 17 MB), which hold a datagram the kernel reassembled, and a smaller transmit mempool (the driver copies a
        /// transmitted mbuf into its ring and frees it at once).
        public static var afPacket: Configuration {
            var c = Configuration()
            c.mbufCount = 2047
            c.receiveMbufDataRoom = DPDKEnvironment.afPacketReceiveDataRoom
            return c
        }
    }

    /// Checksum offloads (and the raw `RTE_ETH_*_OFFLOAD_*` bits) the port reports.
    public struct ReportedOffloads: Sendable, Hashable {
        public var receive: ChecksumOffload
        public var transmit: ChecksumOffload
        public var receiveBits: UInt64
        public var transmitBits: UInt64
    }

    public struct LinkStatus: Sendable, Hashable {
        public var up: Bool
        public var speedMbps: Int
        public var fullDuplex: Bool
    }

    /// The port's own counters (`rte_eth_stats_get`).
    public struct PortStatistics: Sendable, Hashable {
        public var receivedPackets = 0, transmittedPackets = 0, receivedBytes = 0, transmittedBytes = 0
        public var receiveMissed = 0, receiveErrors = 0, transmitErrors = 0, receiveNoMbuf = 0
    }

    public let port: UInt16
    /// The port's device name (`net_af_packet0`) and driver (`net_af_packet`).
    public let deviceName: String
    public let driverName: String
    public let macAddress: MACAddress
    public let capabilities: DeviceCapabilities
    public let reportedOffloads: ReportedOffloads
    public let configuration: Configuration
    /// The pool received frames are wrapped in (its external-release hook belongs to this device).
    public let pool: BufferPool
    /// The largest frame (Ethernet header included) one mbuf holds.
    public let maxTransmitFrame: Int

    @usableFromInline let mempool: UnsafeMutableRawPointer
    /// The mempool the RX queue allocates from (``mempool`` unless a separate one is configured).
    @usableFromInline let receiveMempool: UnsafeMutableRawPointer
    /// Copy-on-pressure threshold (see ``Configuration/receiveCopyBelow``).
    @usableFromInline let copyBelow: Int
    let ledger: MbufLedger
    /// The mempool of indirect mbufs (zero-copy transmit of pieces).
    @usableFromInline let indirectMempool: UnsafeMutableRawPointer?
    /// The mempool of large mbufs for application buffers, and the largest buffer one holds.
    @usableFromInline let largeMempool: UnsafeMutableRawPointer?
    @usableFromInline let largeBufferLimit: Int
    /// ``pool`` as the `owner` its headers carry.
    @usableFromInline let poolIdentity: UnsafeMutableRawPointer
    @usableFromInline let applicationReserve: Int
    @usableFromInline let pieces: UnsafeMutablePointer<cdpdk_tx_piece>
    @usableFromInline static var pieceCapacity: Int { 16 }
    @usableFromInline let burst: Int
    /// ChecksumOffload bits enabled on the port (0: none, the common case with virtual devices).
    @usableFromInline let receiveChecksums: UInt8
    @usableFromInline let transmitChecksums: UInt8
    @usableFromInline let rxScratch: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    @usableFromInline let pending: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    @usableFromInline let pendingLengths: UnsafeMutablePointer<Int>
    @exclusivity(unchecked) @usableFromInline var pendingCount = 0
    @exclusivity(unchecked) @usableFromInline var counters = DeviceStatistics()
    @exclusivity(unchecked) public private(set) var isOpen = true
    /// Frames sent without a copy (received mbufs handed back to the driver).
    @exclusivity(unchecked) public private(set) var zeroCopyTransmits = 0
    /// Frames sent with at least one piece attached (indirect mbufs) instead of copied, and the pieces attached.
    @exclusivity(unchecked) public private(set) var attachedTransmits = 0
    @exclusivity(unchecked) public private(set) var attachedPieces = 0
    /// Buffers handed out by ``allocateTransmitBuffer(size:)`` (mbufs of the mempool).
    @exclusivity(unchecked) public private(set) var transmitBuffersAllocated = 0
    /// Received frames copied into pool buffers because the receive mempool ran low (copy-on-pressure).
    @exclusivity(unchecked) public private(set) var copiedReceives = 0
    /// `rte_eth_tx_burst` calls.
    @exclusivity(unchecked) public private(set) var transmitBursts = 0
    /// Received frames dropped for a bad checksum the port flagged, or found when it left the frame unverified
    /// (only with receive checksum offload).
    @exclusivity(unchecked) public private(set) var checksumDrops = 0

    /// The checksum offloads the device enables on the port and offers the stack, given what the port reports:
    /// the IPv4 header and TCP checksums, in each direction the port supports them. Never UDP: the stack's offload
    /// flag holds for the whole device, and a UDP checksum covers a datagram that IP may fragment (a port cannot fill
    /// in or verify it per fragment), while our TCP segments always fit a frame. None if `enabled` is false.
    public static func usableChecksumOffloads(receive: ChecksumOffload, transmit: ChecksumOffload,
                                              enabled: Bool) -> (receive: ChecksumOffload, transmit: ChecksumOffload) {
        guard enabled else { return ([], []) }
        let usable: ChecksumOffload = [.ipv4, .tcp]
        return (receive.intersection(usable), transmit.intersection(usable))
    }

    /// Opens `port` of the running EAL: creates the mempool, configures one RX and one TX queue and starts the port.
    public init(port: UInt16, pool: BufferPool, configuration c: Configuration = Configuration()) throws(DPDKError) {
        try DPDKEnvironment.hold(port)
        var ok = false
        defer { if !ok { DPDKEnvironment.unhold(port) } }

        var info = cdpdk_port_info()
        let ri = cdpdk_port_info(port, &info)
        guard ri == 0 else { throw .portSetupFailed(port: port, step: "info", code: -ri) }
        var nameBytes = [CChar](repeating: 0, count: 128)
        _ = cdpdk_port_name(port, &nameBytes, nameBytes.count)
        let name = String(decoding: nameBytes.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let driver = withUnsafeBytes(of: info.driver) { String(cString: $0.baseAddress!.assumingMemoryBound(to: CChar.self)) }

        let dataRoom = c.mbufDataRoom ?? Int(cdpdk_mbuf_default_buf_size())
        let poolName = "demi_mp\(DPDKEnvironment.nextPoolNumber())"
        guard let mp = cdpdk_pool_create(poolName, UInt32(max(64, c.mbufCount)), UInt32(max(0, c.mbufCacheSize)),
                                         UInt16(clamping: dataRoom), info.socket_id)
        else { throw .mempoolFailed(name: poolName, code: cdpdk_errno()) }

        var rxPool: UnsafeMutableRawPointer?
        var rxCount = max(64, c.mbufCount)
        if let room = c.receiveMbufDataRoom {
            rxCount = max(64, c.receiveMbufCount)
            let rxName = "demi_rx\(DPDKEnvironment.nextPoolNumber())"
            guard let rmp = cdpdk_pool_create(rxName, UInt32(rxCount), UInt32(max(0, c.mbufCacheSize)),
                                              UInt16(clamping: room), info.socket_id)
            else {
                let code = cdpdk_errno()
                cdpdk_pool_free(mp)
                throw .mempoolFailed(name: rxName, code: code)
            }
            rxPool = rmp
        }
        let rxmp = rxPool ?? mp
        // Attaching needs a port that sends mbuf chains (net_af_xdp copies only a frame's first segment).
        let chains = info.tx_offload_capa & cdpdk_tx_offload_multi_segs() != 0
        var indirectPool: UnsafeMutableRawPointer?
        if c.zeroCopyTransmit && c.indirectMbufCount > 0 && chains {
            let name = "demi_ind\(DPDKEnvironment.nextPoolNumber())"
            guard let ip = cdpdk_pool_create(name, UInt32(c.indirectMbufCount), UInt32(max(0, c.mbufCacheSize)), 0,
                                             info.socket_id)
            else {
                let code = cdpdk_errno()
                cdpdk_pool_free(mp)
                if let rmp = rxPool { cdpdk_pool_free(rmp) }
                throw .mempoolFailed(name: name, code: code)
            }
            indirectPool = ip
        }
        var largePool: UnsafeMutableRawPointer?
        if indirectPool != nil && c.largeMbufCount > 0 {
            largePool = cdpdk_pool_create("demi_lg\(DPDKEnvironment.nextPoolNumber())", UInt32(c.largeMbufCount),
                                          UInt32(max(0, c.mbufCacheSize)), UInt16(clamping: c.largeMbufDataRoom),
                                          info.socket_id)
        }

        let (rxSums, txSums) = Self.usableChecksumOffloads(receive: ChecksumOffload(rawValue: info.rx_checksums),
                                                           transmit: ChecksumOffload(rawValue: info.tx_checksums),
                                                           enabled: c.checksumOffload)
        var step: Int32 = 0
        let rs = cdpdk_port_start(port, rxmp, UInt16(clamping: c.receiveDescriptors),
                                  UInt16(clamping: c.transmitDescriptors), cdpdk_checksum_offload_bits(rxSums.rawValue, 0),
                                  cdpdk_checksum_offload_bits(txSums.rawValue, 1) | (chains ? cdpdk_tx_offload_multi_segs() : 0),
                                  c.promiscuous ? 1 : 0, &step)
        guard rs == 0 else {
            _ = cdpdk_port_stop_close(port)
            if c.removeDeviceOnClose { _ = cdpdk_vdev_remove(name) }
            cdpdk_pool_free(mp)
            if let rmp = rxPool { cdpdk_pool_free(rmp) }
            if let ip = indirectPool { cdpdk_pool_free(ip) }
            if let lp = largePool { cdpdk_pool_free(lp) }
            let steps = ["", "configure", "descriptors", "rxQueue", "txQueue", "promiscuous", "start"]
            throw .portSetupFailed(port: port, step: steps[Int(max(0, min(6, step)))], code: -rs)
        }

        self.port = port
        deviceName = name
        driverName = driver
        let m = info.mac
        macAddress = MACAddress(m.0, m.1, m.2, m.3, m.4, m.5)
        maxTransmitFrame = dataRoom - Int(cdpdk_mbuf_headroom())
        burst = max(1, min(c.maxBurst, 512))
        capabilities = DeviceCapabilities(mtu: min(Int(info.mtu), maxTransmitFrame - 18), maxBurst: burst,
                                          receiveOffload: rxSums, transmitOffload: txSums)
        receiveChecksums = rxSums.rawValue
        transmitChecksums = txSums.rawValue
        reportedOffloads = ReportedOffloads(
            receive: ChecksumOffload(rawValue: info.rx_checksums), transmit: ChecksumOffload(rawValue: info.tx_checksums),
            receiveBits: info.rx_offload_capa, transmitBits: info.tx_offload_capa)
        configuration = c
        self.pool = pool
        mempool = mp
        receiveMempool = rxmp
        copyBelow = max(0, c.receiveCopyBelow ?? rxCount / 2)
        ledger = MbufLedger(mempool: mp, receiveMempool: rxPool, indirectMempool: indirectPool, largeMempool: largePool,
                            pool: pool)
        indirectMempool = indirectPool
        largeMempool = largePool
        largeBufferLimit = largePool == nil ? 0 : min(c.largeMbufDataRoom, 65535)
        poolIdentity = Unmanaged.passUnretained(pool).toOpaque()
        applicationReserve = max(0, c.applicationMbufReserve ?? max(64, c.mbufCount) / 4)
        pieces = .allocate(capacity: Self.pieceCapacity)
        rxScratch = .allocate(capacity: burst)
        pending = .allocate(capacity: burst)
        pendingLengths = .allocate(capacity: burst)
        pool.setExternalRelease(releaseWrappedMbuf, context: Unmanaged.passRetained(ledger).toOpaque())
        ok = true
    }

    /// Upstream's start-up: initialises the EAL with `ealArguments` (the `dpdk.eal_init` list) and opens its first
    /// port. Throws ``DPDKError/ealAlreadyInitialized(arguments:)`` if the EAL is already up in this process.
    public convenience init(ealArguments: [String], pool: BufferPool,
                            configuration: Configuration = Configuration()) throws(DPDKError) {
        try DPDKEnvironment.initialize(arguments: ealArguments)
        let port = try DPDKEnvironment.holdFirstFree()
        DPDKEnvironment.unhold(port)
        try self.init(port: port, pool: pool, configuration: configuration)
    }

    /// Hot-plugs a virtual device (`"net_af_packet_demi1,iface=veth0"`, see ``DPDKEnvironment/uniqueDeviceName(_:)``)
    /// into the running EAL and opens its port: how a second device gets a port in a process whose EAL is up.
    public convenience init(attaching devargs: String, pool: BufferPool,
                            configuration: Configuration = Configuration()) throws(DPDKError) {
        let port = try DPDKEnvironment.attach(devargs)
        do {
            try self.init(port: port, pool: pool, configuration: configuration)
        } catch {
            _ = cdpdk_vdev_remove(String(devargs.prefix { $0 != "," }))
            throw error
        }
    }

    deinit {
        close()
        rxScratch.deallocate()
        pending.deallocate()
        pendingLengths.deallocate()
        pieces.deallocate()
    }

    /// Sends what is queued, stops and closes the port (and removes its virtual device), and frees the mempool, at
    /// once or, if received buffers are still held, when the last of them is released. Idempotent.
    public func close() {
        guard isOpen else { return }
        flushPending()
        isOpen = false
        _ = cdpdk_port_stop_close(port)
        if configuration.removeDeviceOnClose { _ = cdpdk_vdev_remove(deviceName) }
        DPDKEnvironment.unhold(port)
        ledger.closed = true
        ledger.finishIfIdle()
    }

    // MARK: - Introspection

    /// Mbufs of this device's mempools in use (held by us, the driver or the application; the receive, indirect and
    /// large mempools included), and free (the receive mempool included if it is a separate one).
    public var mempoolInUse: Int {
        (ledger.mempool.map { Int(cdpdk_pool_in_use($0)) } ?? 0)
            + (ledger.receiveMempool.map { Int(cdpdk_pool_in_use($0)) } ?? 0)
            + (ledger.indirectMempool.map { Int(cdpdk_pool_in_use($0)) } ?? 0)
            + (ledger.largeMempool.map { Int(cdpdk_pool_in_use($0)) } ?? 0)
    }
    public var mempoolAvailable: Int {
        (ledger.mempool.map { Int(cdpdk_pool_available($0)) } ?? 0)
            + (ledger.receiveMempool.map { Int(cdpdk_pool_available($0)) } ?? 0)
    }
    /// Free mbufs of the mempool the RX queue allocates from (what copy-on-pressure watches).
    public var receiveMempoolAvailable: Int {
        guard ledger.mempool != nil else { return 0 }
        return Int(cdpdk_pool_available(receiveMempool))
    }
    /// Received mbufs wrapped as buffers and not yet released.
    public var wrappedMbufs: Int { ledger.outstanding }
    /// Frames queued for the next `rte_eth_tx_burst`.
    public var pendingTransmit: Int { pendingCount }

    public var link: LinkStatus? {
        guard isOpen else { return nil }
        var l = cdpdk_link()
        guard cdpdk_link_get(port, &l) == 0 else { return nil }
        return LinkStatus(up: l.up != 0, speedMbps: Int(l.speed_mbps), fullDuplex: l.full_duplex != 0)
    }

    public var portStatistics: PortStatistics? {
        guard isOpen else { return nil }
        var s = cdpdk_stats()
        guard cdpdk_stats_get(port, &s) == 0 else { return nil }
        return PortStatistics(
            receivedPackets: Int(s.ipackets), transmittedPackets: Int(s.opackets), receivedBytes: Int(s.ibytes),
            transmittedBytes: Int(s.obytes), receiveMissed: Int(s.imissed), receiveErrors: Int(s.ierrors),
            transmitErrors: Int(s.oerrors), receiveNoMbuf: Int(s.rx_nombuf))
    }

    /// Counters; `droppedFrames` adds the port's missed, no-mbuf and transmit-error counts to the device's own drops.
    public var statistics: DeviceStatistics {
        var s = counters
        if let p = portStatistics { s.droppedFrames += p.receiveMissed + p.receiveNoMbuf + p.transmitErrors }
        return s
    }

    // MARK: - Receive

    public func receive(into frames: UnsafeMutablePointer<DemiBuffer>, capacity: Int, now: Instant) -> Int {
        if pendingCount > 0 { flushPending() }
        guard isOpen, capacity > 0 else { return 0 }
        let n = Int(cdpdk_rx_burst(port, 0, rxScratch, UInt16(min(capacity, burst))))
        guard n > 0 else { return 0 }
        var out = 0
        var seg = cdpdk_segment()
        if copyBelow > 0 && (copyBelow == Int.max || Int(cdpdk_pool_available(receiveMempool)) < copyBelow) {
            for i in 0..<n {
                let m = rxScratch[i].unsafelyUnwrapped
                if receiveChecksums != 0 && badChecksum(m) { continue }
                if let f = copyOut(m, &seg) {
                    frames[out] = f
                    out += 1
                }
            }
            return out
        }
        for i in 0..<n {
            let m = rxScratch[i].unsafelyUnwrapped
            if receiveChecksums != 0 && badChecksum(m) { continue }
            if let f = wrap(m, &seg) {
                frames[out] = f
                out += 1
            }
        }
        return out
    }

    /// True (and the mbuf freed, the drop counted) if the frame fails a checksum the stack leaves to the device.
    @inline(__always)
    func badChecksum(_ m: UnsafeMutableRawPointer) -> Bool {
        guard cdpdk_mbuf_rx_checksum_bad(m, receiveChecksums) != 0 else { return false }
        cdpdk_mbuf_free(m)
        checksumDrops += 1
        counters.droppedFrames += 1
        return true
    }

    /// The mbuf's frame (all its segments) copied into one pool buffer; the mbuf goes back to its mempool at once.
    /// Nil (the frame dropped) for a runt or when the pool has no buffer.
    func copyOut(_ m: UnsafeMutableRawPointer, _ seg: inout cdpdk_segment) -> DemiBuffer? {
        cdpdk_mbuf_describe(m, &seg)
        let total = Int(seg.pkt_len)
        guard total >= 14, let b = pool.allocate(size: total) else {
            cdpdk_mbuf_free(m)
            counters.droppedFrames += 1
            return nil
        }
        var at = b.baseAddress
        var left = total
        var cur: UnsafeMutableRawPointer? = m
        while let c = cur, left > 0 {
            if c != m { cdpdk_mbuf_describe(c, &seg) }
            let k = min(Int(seg.data_len), left)
            at.copyMemory(from: seg.buf_addr.unsafelyUnwrapped + Int(seg.data_off), byteCount: k)
            at += k
            left -= k
            cur = seg.next
        }
        cdpdk_mbuf_free(m)
        copiedReceives += 1
        counters.receivedFrames += 1
        counters.receivedBytes += total
        return b
    }

    /// The mbuf (and its further segments) as a buffer chain, or nil if it is a runt or no header was free.
    @inline(__always)
    func wrap(_ m: UnsafeMutableRawPointer, _ seg: inout cdpdk_segment) -> DemiBuffer? {
        cdpdk_mbuf_describe(m, &seg)
        let total = Int(seg.pkt_len)
        guard total >= 14 else {
            cdpdk_mbuf_free(m)
            counters.droppedFrames += 1
            return nil
        }
        var head: DemiBuffer?
        var tail: UnsafeMutablePointer<BufferHeader>?
        var cur: UnsafeMutableRawPointer? = m
        while let c = cur {
            if c != m { cdpdk_mbuf_describe(c, &seg) }
            let next = seg.next
            guard let b = pool.wrapExternal(storage: seg.buf_addr, capacity: Int(seg.buf_len), offset: Int(seg.data_off),
                                            length: Int(seg.data_len), object: c)
            else {
                // Out of headers: free the segments not wrapped, then release the ones that were.
                cdpdk_mbuf_free(c)
                head?.releaseChain()
                counters.droppedFrames += 1
                return nil
            }
            ledger.outstanding += 1
            if let t = tail { t.pointee.next = b.header } else { head = b }
            tail = b.header
            cur = next
        }
        counters.receivedFrames += 1
        counters.receivedBytes += total
        return head
    }

    // MARK: - Transmit

    @discardableResult
    public func transmit(_ frame: DemiBuffer, now: Instant) -> Bool {
        let length = frame.chainCount
        guard isOpen, length >= 14, length <= maxTransmitFrame else {
            frame.releaseChain()
            counters.droppedFrames += 1
            return false
        }
        let m: UnsafeMutableRawPointer
        if configuration.zeroCopyTransmit, let own = takeOwnMbuf(frame) {
            m = own
            zeroCopyTransmits += 1
        } else if frame.header.pointee.next != nil, indirectMempool != nil, let built = attachPieces(frame, length) {
            m = built
        } else {
            var data: UnsafeMutableRawPointer?
            guard let fresh = cdpdk_mbuf_alloc(mempool, UInt16(length), &data), var at = data else {
                frame.releaseChain()
                counters.droppedFrames += 1
                return false
            }
            var h: UnsafeMutablePointer<BufferHeader>? = frame.header
            while let c = h {
                let n = Int(c.pointee.length)
                at.copyMemory(from: c.pointee.storage.unsafelyUnwrapped + Int(c.pointee.offset), byteCount: n)
                at += n
                h = c.pointee.next
            }
            frame.releaseChain()
            m = fresh
        }
        if transmitChecksums != 0 { cdpdk_mbuf_tx_checksum(m, transmitChecksums) }
        pending[pendingCount] = m
        pendingLengths[pendingCount] = length
        pendingCount += 1
        counters.transmittedFrames += 1
        counters.transmittedBytes += length
        if pendingCount >= burst { flushPending() }
        return true
    }

    /// If `frame` is one wrapped mbuf of this device with no other reference, sets the mbuf's window to the buffer's,
    /// gives the header back to the pool without freeing the mbuf, and returns the mbuf.
    @inline(__always)
    func takeOwnMbuf(_ frame: DemiBuffer) -> UnsafeMutableRawPointer? {
        let h = frame.header
        guard h.pointee.next == nil, h.pointee.kind == BufferHeader.Kind.external, h.pointee.refcount == 1,
              let m = h.pointee.external, let storage = h.pointee.storage,
              h.pointee.owner == poolIdentity,
              cdpdk_mbuf_is_own(m, mempool, storage) != 0
                || (receiveMempool != mempool && cdpdk_mbuf_is_own(m, receiveMempool, storage) != 0)
        else { return nil }
        cdpdk_mbuf_set_window(m, UInt16(h.pointee.offset), UInt16(h.pointee.length))
        h.pointee.external = nil      // the hook sees nil and leaves the mbuf to the driver
        frame.release()
        ledger.outstanding -= 1
        return m
    }

    /// A frame of several pieces as an mbuf chain in which every piece that lies in an mbuf of this device is
    /// attached (an indirect mbuf referencing it) rather than copied; the first piece (the headers) and the others are
    /// copied, in one walk of the chain. Releases the frame and returns the chain, or returns nil (the frame
    /// untouched) if the frame has too many pieces or a mempool ran dry.
    @inline(__always)
    func attachPieces(_ frame: DemiBuffer, _ length: Int) -> UnsafeMutableRawPointer? {
        var n = 0
        let copyBelow = configuration.transmitCopyBelow
        var h: UnsafeMutablePointer<BufferHeader>? = frame.header
        while let c = h {
            guard n < Self.pieceCapacity else { return nil }
            let data = c.pointee.storage.unsafelyUnwrapped + Int(c.pointee.offset)
            var mbuf: UnsafeMutableRawPointer? = nil
            if n > 0 {
                let root = c.pointee.kind == BufferHeader.Kind.view ? c.pointee.parent.unsafelyUnwrapped : c
                if root.pointee.kind == BufferHeader.Kind.external, root.pointee.owner == poolIdentity,
                   let object = root.pointee.external, Int(c.pointee.length) >= copyBelow {
                    mbuf = object
                }
            }
            pieces[n] = cdpdk_tx_piece(data: UnsafeRawPointer(data), mbuf: mbuf, length: c.pointee.length)
            n += 1
            h = c.pointee.next
        }
        var attached: UInt32 = 0
        guard let m = cdpdk_tx_build(mempool, indirectMempool, pieces, UInt32(n), UInt32(length), &attached)
        else { return nil }
        frame.releaseChain()
        if attached > 0 {
            attachedTransmits += 1
            attachedPieces += Int(attached)
        }
        return m
    }

    /// ``PhysicalLayer/allocateTransmitBuffer(size:)``: an mbuf wrapped as a buffer (window of `size` bytes at the
    /// mbuf's headroom), which ``transmit(_:now:)`` attaches instead of copying: from the mempool for up to one
    /// frame while more than ``Configuration/applicationMbufReserve`` of its mbufs are free, else from the large
    /// mempool (``Configuration/largeMbufCount``). Nil if zero-copy transmit is off, `size` is below
    /// ``Configuration/transmitCopyBelow`` (such a buffer would be copied anyway), or no mbuf fits or is free.
    public func allocateTransmitBuffer(size: Int) -> DemiBuffer? {
        guard isOpen, indirectMempool != nil, size > 0, size >= configuration.transmitCopyBelow else { return nil }
        let from: UnsafeMutableRawPointer
        // A large buffer's window starts at the mbuf's buffer: no headroom needed, the headers go in front of it
        // in a mbuf of their own.
        let large = size > maxTransmitFrame
        if !large {
            guard Int(cdpdk_pool_available(mempool)) > applicationReserve else { return nil }
            from = mempool
        } else {
            guard size <= largeBufferLimit, let lp = largeMempool else { return nil }
            from = lp
        }
        var seg = cdpdk_segment()
        guard let m = cdpdk_mbuf_alloc_describe(from, large ? 0 : UInt16(size), &seg) else { return nil }
        guard let b = pool.wrapExternal(storage: seg.buf_addr.unsafelyUnwrapped, capacity: Int(seg.buf_len),
                                        offset: large ? 0 : Int(seg.data_off), length: size, object: m)
        else {
            cdpdk_mbuf_free(m)
            return nil
        }
        ledger.outstanding += 1
        transmitBuffersAllocated += 1
        return b
    }

    /// ``PhysicalLayer/flush(now:)``: one `rte_eth_tx_burst` for the frames queued in this pass.
    public func flush(now: Instant) { flushPending() }

    /// Sends the queued frames (see ``flush(now:)``).
    public func flush() { flushPending() }

    @usableFromInline
    func flushPending() {
        guard pendingCount > 0 else { return }
        guard isOpen else { return }
        var sent = 0
        var idle = 0
        while sent < pendingCount && idle < 4 {
            let k = Int(cdpdk_tx_burst(port, 0, pending + sent, UInt16(pendingCount - sent)))
            transmitBursts += 1
            sent += k
            idle = k == 0 ? idle + 1 : 0
        }
        if sent < pendingCount {
            let unsent = pendingCount - sent
            for i in sent..<pendingCount { counters.transmittedBytes -= pendingLengths[i] }
            cdpdk_mbuf_free_bulk(pending + sent, UInt32(unsent))
            counters.transmittedFrames -= unsent
            counters.droppedFrames += unsent
        }
        pendingCount = 0
    }
}
#endif
