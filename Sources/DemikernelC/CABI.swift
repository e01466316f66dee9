// The C ABI: every function of include/demi/*.h, implemented over the Swift LibOS.
//
// `@c @implementation` makes the compiler check each signature against the header, so the headers stay the single
// source of truth. Every call returns 0 or a positive errno and checks its pointers before use: NULL, a foreign or
// freed buffer token, an unknown queue or token are errors, never crashes.
import CDemikernelABI
import Demikernel
import Foundation
import Glibc

/// The state of one thread's libOS behind the C ABI.
final class ABIContext {
    let os: LibOS
    /// Scratch space for demi_wait_next_n, grown on demand (never per call once large enough).
    var scratch: UnsafeMutablePointer<QResult>
    var scratchCapacity: Int
    /// The buffer tokens this library last handed out (the last popped array's, the last `demi_sgaalloc`'s): their
    /// header addresses are the pool's own, so ``buffer(_:_:)`` checks them without looking up the pool's arenas (an
    /// echo pushes and frees what it popped; a client pushes what it allocated).
    var lastFilled: UnsafeMutableRawPointer?
    var lastAllocated: UnsafeMutableRawPointer?

    init(os: LibOS) {
        self.os = os
        scratchCapacity = 64
        scratch = .allocate(capacity: scratchCapacity)
    }
}

/// Runs `body` with this thread's context: ENOSYS before demi_init, else 0 or the thrown errno.
@inline(__always)
func withContext(_ body: (ABIContext) throws(Errno) -> Void) -> Int32 {
    guard let p = demi_abi_current() else { return ENOSYS }
    let r = Unmanaged<ABIContext>.fromOpaque(p)._withUnsafeGuaranteedRef { c in
        Result<Void, Errno> { () throws(Errno) in try body(c) }
    }
    switch r {
    case .success: return 0
    case .failure(let e): return e.rawValue
    }
}

// MARK: - Conversions

/// An IPv4 socket address from C. EINVAL for NULL or a short length, EAFNOSUPPORT for another family.
func address(_ addr: UnsafePointer<sockaddr>?, _ size: socklen_t) throws(Errno) -> SocketAddressV4 {
    guard let addr, Int(size) >= MemoryLayout<sa_family_t>.size else { throw .invalidArgument }
    let family = Int32(UnsafeRawPointer(addr).loadUnaligned(as: sa_family_t.self))
    guard family == AF_INET else { throw .addressFamilyNotSupported }
    guard Int(size) >= MemoryLayout<sockaddr_in>.size else { throw .invalidArgument }
    let sin = UnsafeRawPointer(addr).loadUnaligned(as: sockaddr_in.self)
    return SocketAddressV4(IPv4Address(rawValue: UInt32(bigEndian: sin.sin_addr.s_addr)), UInt16(bigEndian: sin.sin_port))
}

func sockaddrIn(_ a: SocketAddressV4) -> sockaddr_in {
    var sin = sockaddr_in()
    sin.sin_family = sa_family_t(AF_INET)
    sin.sin_port = a.port.bigEndian
    sin.sin_addr.s_addr = a.address.rawValue.bigEndian
    return sin
}

/// Writes `a` to a caller's sockaddr buffer whose size is in *len.
func store(_ a: SocketAddressV4, _ out: UnsafeMutablePointer<sockaddr>?, _ len: UnsafeMutablePointer<socklen_t>?)
    throws(Errno)
{
    guard let out, let len, Int(len.pointee) >= MemoryLayout<sockaddr_in>.size else { throw .invalidArgument }
    UnsafeMutableRawPointer(out).storeBytes(of: sockaddrIn(a), as: sockaddr_in.self)
    len.pointee = socklen_t(MemoryLayout<sockaddr_in>.size)
}

/// The opaque `sga_buf` token of a buffer: its header address, tagged in the 6 low bits (headers are 64-byte
/// aligned) with its generation, so most stale tokens are caught even after the header is reused.
func token(_ b: DemiBuffer) -> UnsafeMutableRawPointer {
    UnsafeMutableRawPointer(b.header) + Int(b.generation & 63)
}

/// The buffer named by a token, checked against the pool without dereferencing foreign pointers.
func buffer(_ c: ABIContext, _ tok: UnsafeMutableRawPointer?) throws(Errno) -> DemiBuffer {
    guard let tok else { throw .invalidArgument }
    let raw = UInt(bitPattern: tok)
    if tok == c.lastFilled || tok == c.lastAllocated {
        // A token this library made: its address is one of the pool's headers (headers live as long as the pool), so
        // only whether it is still that buffer is checked, as below.
        let h = UnsafeMutablePointer<BufferHeader>(bitPattern: raw & ~63).unsafelyUnwrapped
        guard h.pointee.flags & BufferHeader.Flags.inUse != 0, UInt(h.pointee.generation & 63) == raw & 63 else {
            throw .invalidArgument
        }
        return DemiBuffer(header: h)
    }
    guard let h = c.os.pool.validate(UnsafeRawPointer(bitPattern: raw & ~63)),
          UInt(h.pointee.generation & 63) == raw & 63 else { throw .invalidArgument }
    return DemiBuffer(header: h)
}

/// The Swift array for a C array to push: the buffer itself when the segment covers its data, else a zero-copy view
/// of the segment (returned in `view` for the caller to release after the push took its own reference).
func array(_ c: ABIContext, _ sga: UnsafePointer<demi_sgarray_t>?) throws(Errno) -> (ScatterGatherArray, DemiBuffer?) {
    guard let sga else { throw .invalidArgument }
    let s = sga.pointee
    guard s.sga_numsegs == 1 else { throw .invalidArgument }
    let b = try buffer(c, s.sga_buf)
    let seg = s.sga_segs
    guard let start = seg.sgaseg_buf, seg.sgaseg_len > 0 else { throw .invalidArgument }
    let offset = start - b.baseAddress
    let length = Int(seg.sgaseg_len)
    guard offset >= 0, offset + length <= b.count else { throw .invalidArgument }
    if offset == 0 && length == b.count && b.header.pointee.next == nil { return (ScatterGatherArray(head: b), nil) }
    guard let v = c.os.pool.view(of: b, offset: offset, length: length) else { throw .noMemory }
    return (ScatterGatherArray(head: v), v)
}

/// Fills a C result from a Swift one.
func fill(_ out: UnsafeMutablePointer<demi_qresult_t>, _ r: QResult, _ c: ABIContext) {
    let os = c.os
    UnsafeMutableRawPointer(out).initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<demi_qresult_t>.size)
    out.pointee.qr_opcode = demi_opcode_t(rawValue: r.opcode.rawValue)
    out.pointee.qr_qd = r.qd.rawValue
    out.pointee.qr_qt = r.qt.rawValue
    out.pointee.qr_ret = Int64(r.error?.rawValue ?? 0)
    switch r.value {
    case .none:
        break
    case .sga(let s):
        guard var head = s.head else { break }
        if head.header.pointee.next != nil, let flat = head.flattened(into: os.pool, headroom: 0) {
            // The C structure has one segment: hand over one contiguous copy of a multi-segment array.
            os.pool.giveToApplication(flat)
            try? os.pool.freeFromApplication(head)
            head = flat
        }
        let t = token(head)
        c.lastFilled = t
        out.pointee.qr_value.sga.sga_buf = t
        out.pointee.qr_value.sga.sga_numsegs = 1
        out.pointee.qr_value.sga.sga_segs = demi_sgaseg_t(sgaseg_buf: head.baseAddress, sgaseg_len: UInt32(head.count))
        if let a = s.address { out.pointee.qr_value.sga.sga_addr = sockaddrIn(a) }
    case .accepted(let q, let a):
        out.pointee.qr_value.ares.qd = q.rawValue
        out.pointee.qr_value.ares.addr = sockaddrIn(a)
    }
}

/// A C timeout: NULL waits for ever; negative fields are EINVAL.
@inline(__always)
func timeout(_ t: UnsafePointer<timespec>?) throws(Errno) -> Duration? {
    guard let t else { return nil }
    guard t.pointee.tv_sec >= 0, t.pointee.tv_nsec >= 0, t.pointee.tv_nsec < 1_000_000_000 else {
        throw .invalidArgument
    }
    return .seconds(Int64(t.pointee.tv_sec)) + .nanoseconds(Int64(t.pointee.tv_nsec))
}

// MARK: - Initialisation

/// The libOS named on a command line: `--libos=NAME`, `--libos NAME`, or a bare `--catnap`-style flag.
func libOSFromArguments(_ args: UnsafePointer<demi_args>?) -> String? {
    guard let a = args?.pointee, a.argc > 0, let argv = a.argv else { return nil }
    var i = 0
    while i < Int(a.argc) {
        guard let cs = argv[i] else { break }
        let s = String(cString: cs)
        if s.hasPrefix("--libos=") { return String(s.dropFirst(8)) }
        if s == "--libos", i + 1 < Int(a.argc), let n = argv[i + 1] { return String(cString: n) }
        if s.hasPrefix("--"), (try? LibOSName(parsing: String(s.dropFirst(2)))) != nil { return String(s.dropFirst(2)) }
        i += 1
    }
    return nil
}

@c @implementation
public func demi_init(_ args: UnsafePointer<demi_args>?) -> Int32 {
    if demi_abi_current() != nil { return EEXIST }
    let env = ProcessInfo.processInfo.environment
    do {
        let nameText = libOSFromArguments(args) ?? env["LIBOS"]
        let name = try nameText.map { t throws(ConfigurationError) in try LibOSName(parsing: t) } ?? .default
        let config = try Configuration.fromEnvironment(env)
        let os = try LibOS(name, configuration: config)
        demi_abi_set_current(Unmanaged.passRetained(ABIContext(os: os)).toOpaque())
        return 0
    } catch let e as ConfigurationError {
        FileHandle.standardError.write(Data("demi_init: \(e)\n".utf8))
        return LibOSError.configuration(e).errno.rawValue
    } catch let e as LibOSError {
        FileHandle.standardError.write(Data("demi_init: \(e)\n".utf8))
        return e.errno.rawValue
    } catch {
        return EINVAL
    }
}

// MARK: - Queues

@c @implementation
public func demi_create_pipe(_ memqd_out: UnsafeMutablePointer<Int32>?, _ name: UnsafePointer<CChar>?) -> Int32 {
    withContext { c throws(Errno) in
        guard let memqd_out, let name else { throw .invalidArgument }
        memqd_out.pointee = try c.os.createPipe(String(cString: name)).rawValue
    }
}

@c @implementation
public func demi_open_pipe(_ memqd_out: UnsafeMutablePointer<Int32>?, _ name: UnsafePointer<CChar>?) -> Int32 {
    withContext { c throws(Errno) in
        guard let memqd_out, let name else { throw .invalidArgument }
        memqd_out.pointee = try c.os.openPipe(String(cString: name)).rawValue
    }
}

@c @implementation
public func demi_socket(_ sockqd_out: UnsafeMutablePointer<Int32>?, _ domain: Int32, _ type: Int32,
                        _ protocol: Int32) -> Int32 {
    withContext { c throws(Errno) in
        guard let sockqd_out else { throw .invalidArgument }
        guard domain == AF_INET else { throw .notSupported }
        let kind: SocketType
        switch type & 0xF {  // flags such as SOCK_NONBLOCK are accepted and ignored: every queue is asynchronous
        case Int32(SOCK_STREAM.rawValue): kind = .stream
        case Int32(SOCK_DGRAM.rawValue): kind = .datagram
        default: throw .notSupported
        }
        sockqd_out.pointee = try c.os.socket(.inet, kind).rawValue
    }
}

@c @implementation
public func demi_listen(_ sockqd: Int32, _ backlog: Int32) -> Int32 {
    withContext { c throws(Errno) in try c.os.listen(QDesc(rawValue: sockqd), backlog: Int(backlog)) }
}

@c @implementation
public func demi_bind(_ sockqd: Int32, _ addr: UnsafePointer<sockaddr>?, _ size: socklen_t) -> Int32 {
    withContext { c throws(Errno) in try c.os.bind(QDesc(rawValue: sockqd), to: try address(addr, size)) }
}

@c @implementation
public func demi_accept(_ qt_out: UnsafeMutablePointer<demi_qtoken_t>?, _ sockqd: Int32) -> Int32 {
    withContext { c throws(Errno) in
        guard let qt_out else { throw .invalidArgument }
        qt_out.pointee = try c.os.accept(QDesc(rawValue: sockqd)).rawValue
    }
}

@c @implementation
public func demi_connect(_ qt_out: UnsafeMutablePointer<demi_qtoken_t>?, _ sockqd: Int32,
                         _ addr: UnsafePointer<sockaddr>?, _ size: socklen_t) -> Int32 {
    withContext { c throws(Errno) in
        guard let qt_out else { throw .invalidArgument }
        qt_out.pointee = try c.os.connect(QDesc(rawValue: sockqd), to: try address(addr, size)).rawValue
    }
}

@c @implementation
public func demi_close(_ qd: Int32) -> Int32 {
    withContext { c throws(Errno) in try c.os.close(QDesc(rawValue: qd)) }
}

// MARK: - Data path

@c @implementation
public func demi_push(_ qt_out: UnsafeMutablePointer<demi_qtoken_t>?, _ qd: Int32,
                      _ sga: UnsafePointer<demi_sgarray_t>?) -> Int32 {
    withContext { c throws(Errno) in
        guard let qt_out else { throw .invalidArgument }
        let (a, view) = try array(c, sga)
        defer { view?.release() }
        qt_out.pointee = try c.os.push(QDesc(rawValue: qd), a).rawValue
    }
}

@c @implementation
public func demi_pushto(_ qt_out: UnsafeMutablePointer<demi_qtoken_t>?, _ sockqd: Int32,
                        _ sga: UnsafePointer<demi_sgarray_t>?, _ dest_addr: UnsafePointer<sockaddr>?,
                        _ size: socklen_t) -> Int32 {
    withContext { c throws(Errno) in
        guard let qt_out else { throw .invalidArgument }
        let (a, view) = try array(c, sga)
        defer { view?.release() }
        let to = try address(dest_addr, size)
        qt_out.pointee = try c.os.pushTo(QDesc(rawValue: sockqd), a, to: to).rawValue
    }
}

@c @implementation
public func demi_pop(_ qt_out: UnsafeMutablePointer<demi_qtoken_t>?, _ qd: Int32) -> Int32 {
    withContext { c throws(Errno) in
        guard let qt_out else { throw .invalidArgument }
        qt_out.pointee = try c.os.pop(QDesc(rawValue: qd)).rawValue
    }
}

// MARK: - Options and names

@c @implementation
public func demi_setsockopt(_ qd: Int32, _ level: Int32, _ optname: Int32, _ optval: UnsafeRawPointer?,
                            _ optlen: socklen_t) -> Int32 {
    withContext { c throws(Errno) in
        guard let optval else { throw .invalidArgument }
        let option: SocketOption
        switch (level, optname) {
        case (SOL_SOCKET, SO_LINGER):
            guard Int(optlen) == MemoryLayout<linger>.size else { throw .invalidArgument }
            let l = optval.loadUnaligned(as: linger.self)
            option = .linger(seconds: l.l_onoff != 0 ? Int(l.l_linger) : nil)
        case (SOL_SOCKET, SO_KEEPALIVE), (SOL_SOCKET, SO_REUSEADDR), (Int32(IPPROTO_TCP), TCP_NODELAY):
            guard Int(optlen) == MemoryLayout<Int32>.size else { throw .invalidArgument }
            let on = optval.loadUnaligned(as: Int32.self) != 0
            option = optname == TCP_NODELAY && level == Int32(IPPROTO_TCP) ? .noDelay(on)
                : optname == SO_KEEPALIVE ? .keepAlive(on) : .reuseAddress(on)
        case (SOL_SOCKET, _), (Int32(IPPROTO_TCP), _):
            throw .protocolNotAvailable
        default:
            throw .notSupported
        }
        try c.os.setOption(QDesc(rawValue: qd), option)
    }
}

@c @implementation
public func demi_getsockopt(_ qd: Int32, _ level: Int32, _ optname: Int32, _ optval: UnsafeMutableRawPointer?,
                            _ optlen: UnsafeMutablePointer<socklen_t>?) -> Int32 {
    withContext { c throws(Errno) in
        guard let optval, let optlen else { throw .invalidArgument }
        let name: SocketOptionName
        switch (level, optname) {
        case (SOL_SOCKET, SO_LINGER): name = .linger
        case (SOL_SOCKET, SO_KEEPALIVE): name = .keepAlive
        case (SOL_SOCKET, SO_REUSEADDR): name = .reuseAddress
        case (Int32(IPPROTO_TCP), TCP_NODELAY): name = .noDelay
        case (SOL_SOCKET, _), (Int32(IPPROTO_TCP), _): throw .protocolNotAvailable
        default: throw .notSupported
        }
        let needed = name == .linger ? MemoryLayout<linger>.size : MemoryLayout<Int32>.size
        guard Int(optlen.pointee) >= needed else { throw .invalidArgument }
        switch try c.os.option(QDesc(rawValue: qd), name) {
        case .linger(let s):
            optval.storeBytes(of: linger(l_onoff: s == nil ? 0 : 1, l_linger: Int32(clamping: s ?? 0)), as: linger.self)
        case .noDelay(let on), .keepAlive(let on), .reuseAddress(let on):
            optval.storeBytes(of: Int32(on ? 1 : 0), as: Int32.self)
        }
        optlen.pointee = socklen_t(needed)
    }
}

@c @implementation
public func demi_getpeername(_ qd: Int32, _ addr: UnsafeMutablePointer<sockaddr>?,
                             _ addrlen: UnsafeMutablePointer<socklen_t>?) -> Int32 {
    withContext { c throws(Errno) in
        guard addr != nil, addrlen != nil else { throw .invalidArgument }
        try store(try c.os.peerAddress(QDesc(rawValue: qd)), addr, addrlen)
    }
}

@c @implementation
public func demi_getsockname(_ qd: Int32, _ addr: UnsafeMutablePointer<sockaddr>?,
                             _ addrlen: UnsafeMutablePointer<socklen_t>?) -> Int32 {
    withContext { c throws(Errno) in
        guard addr != nil, addrlen != nil else { throw .invalidArgument }
        try store(try c.os.localAddress(QDesc(rawValue: qd)), addr, addrlen)
    }
}

// MARK: - Buffers

@c @implementation
public func demi_sgaalloc(_ size: Int) -> demi_sgarray_t {
    var out = demi_sgarray_t()
    guard size > 0, let p = demi_abi_current() else { return out }
    Unmanaged<ABIContext>.fromOpaque(p)._withUnsafeGuaranteedRef { c in
        guard let sga = try? c.os.sgaalloc(size), let b = sga.head else { return }
        out.sga_buf = token(b)
        c.lastAllocated = out.sga_buf
        out.sga_numsegs = 1
        out.sga_segs = demi_sgaseg_t(sgaseg_buf: b.baseAddress, sgaseg_len: UInt32(truncatingIfNeeded: size))
    }
    return out
}

@c @implementation
public func demi_sgafree(_ sga: UnsafeMutablePointer<demi_sgarray_t>?) -> Int32 {
    withContext { c throws(Errno) in
        guard let sga, sga.pointee.sga_numsegs == 1 else { throw .invalidArgument }
        try c.os.sgafree(ScatterGatherArray(head: try buffer(c, sga.pointee.sga_buf)))
    }
}

// MARK: - Waiting

@c @implementation
public func demi_wait(_ qr_out: UnsafeMutablePointer<demi_qresult_t>?, _ qt: demi_qtoken_t,
                      _ timeout: UnsafePointer<timespec>?) -> Int32 {
    withContext { c throws(Errno) in
        guard let qr_out else { throw .invalidArgument }
        let t = try DemikernelC.timeout(timeout)
        fill(qr_out, try c.os.wait(QToken(rawValue: qt), timeout: t), c)
    }
}

@c @implementation
public func demi_wait_any(_ qr_out: UnsafeMutablePointer<demi_qresult_t>?, _ ready_offset: UnsafeMutablePointer<Int32>?,
                          _ qts: UnsafePointer<demi_qtoken_t>?, _ num_qts: Int32,
                          _ timeout: UnsafePointer<timespec>?) -> Int32 {
    withContext { c throws(Errno) in
        guard let qr_out, let ready_offset, let qts, num_qts > 0 else { throw .invalidArgument }
        let t = try DemikernelC.timeout(timeout)
        let tokens = UnsafeBufferPointer(
            start: UnsafeRawPointer(qts).assumingMemoryBound(to: QToken.self), count: Int(num_qts))
        let (i, r) = try c.os.waitAny(tokens, timeout: t)
        ready_offset.pointee = Int32(i)
        fill(qr_out, r, c)
    }
}

@c @implementation
public func demi_wait_next_n(_ qr_out: UnsafeMutablePointer<demi_qresult_t>?, _ num_qrs: Int32,
                             _ num_qrs_out: UnsafeMutablePointer<Int32>?, _ timeout: UnsafePointer<timespec>?) -> Int32 {
    withContext { c throws(Errno) in
        guard let qr_out, let num_qrs_out, num_qrs > 0 else { throw .invalidArgument }
        num_qrs_out.pointee = 0
        let t = try DemikernelC.timeout(timeout)
        if c.scratchCapacity < Int(num_qrs) {
            c.scratch.deallocate()
            c.scratch = .allocate(capacity: Int(num_qrs))
            c.scratchCapacity = Int(num_qrs)
        }
        let n = try c.os.waitNext(into: UnsafeMutableBufferPointer(start: c.scratch, count: Int(num_qrs)), timeout: t)
        for k in 0..<n { fill(qr_out + k, c.scratch[k], c) }
        num_qrs_out.pointee = Int32(n)
    }
}
