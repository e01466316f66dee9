#if canImport(Glibc)
import Glibc
#endif
import DemiCore

/// The memory manager: pools of I/O buffers in size classes, with headroom for protocol headers.
///
/// All headers live in arenas owned by the pool, so a pointer handed in from C can be checked before use: it must lie
/// inside an arena, on a header boundary, carry the pool's magic and be in use ``validate(_:)``. Storage for each size
/// class is allocated in chunks and never returned to the system while the pool lives, so after warm-up allocation and
/// release are a free-list pop and push: no `malloc`, no locks, no atomics.
///
/// Buffers larger than the largest class are backed by `posix_memalign` storage (upstream #1133). Device memory (DPDK
/// mbufs, AF_XDP UMEM frames) is wrapped without copying by ``wrapExternal(storage:capacity:offset:length:object:)``.
///
/// A pool belongs to one thread.
public final class BufferPool {
    /// Storage sizes of the size classes: one frame, a jumbo-sized read, a whole 64 KiB datagram plus headroom.
    public static let classSizes: [Int] = [2048, 16384, 67584]
    static let classGrowth: [Int] = [128, 16, 4]
    static let headerGrowth = 256

    /// Called when the last reference to an external buffer is dropped, with the device object and the context.
    public typealias ExternalRelease = @convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Void

    /// Bytes reserved in front of the data of a freshly allocated buffer, for protocol headers.
    public let defaultHeadroom: Int

    @exclusivity(unchecked) var freeLists: UnsafeMutablePointer<UnsafeMutablePointer<BufferHeader>?>
    @exclusivity(unchecked) var freeViews: UnsafeMutablePointer<BufferHeader>?
    /// Address ranges of the header arenas, as (start, end) pairs: `arenas[2k]`, `arenas[2k+1]`.
    @exclusivity(unchecked) var arenas: UnsafeMutablePointer<UInt> = .allocate(capacity: 64)
    @exclusivity(unchecked) var arenaCount = 0
    @exclusivity(unchecked) var arenaCapacity = 32
    @exclusivity(unchecked) var chunks: [UnsafeMutableRawPointer] = []
    @exclusivity(unchecked) var externalRelease: ExternalRelease?
    @exclusivity(unchecked) var externalContext: UnsafeMutableRawPointer?

    /// Buffers handed out and not yet returned, across all kinds (a leak check for tests and tools).
    @exclusivity(unchecked) public private(set) var buffersInUse = 0
    /// Headers and storage slots ever created.
    @exclusivity(unchecked) public private(set) var headersCreated = 0

    public init(headroom: Int = 128) {
        defaultHeadroom = headroom
        freeLists = .allocate(capacity: Self.classSizes.count)
        freeLists.initialize(repeating: nil, count: Self.classSizes.count)
    }

    deinit {
        for c in chunks { free(c) }
        freeLists.deallocate()
        arenas.deallocate()
    }

    // MARK: - Allocation

    /// Allocates a buffer whose window holds `size` bytes, with `headroom` bytes in front (default: the pool's).
    ///
    /// Returns nil only if `size` is negative or memory is exhausted. The buffer starts with one reference.
    public func allocate(size: Int, headroom: Int? = nil) -> DemiBuffer? {
        let room = headroom ?? defaultHeadroom
        guard size >= 0, room >= 0, size <= Int(UInt32.max) - room else { return nil }
        let needed = size + room
        let cls = Self.sizeClass(for: needed)
        let h: UnsafeMutablePointer<BufferHeader>
        if cls >= 0 {
            guard let f = popFree(cls) else { return nil }
            h = f
        } else {
            guard let v = popView() else { return nil }
            var mem: UnsafeMutableRawPointer?
            guard posix_memalign(&mem, 64, needed) == 0, let m = mem else {
                pushView(v)
                return nil
            }
            h = v
            h.pointee.storage = m
            h.pointee.capacity = UInt32(needed)
            h.pointee.kind = BufferHeader.Kind.large
        }
        h.pointee.offset = UInt32(room)
        h.pointee.length = UInt32(size)
        h.pointee.refcount = 1
        h.pointee.flags = BufferHeader.Flags.inUse
        h.pointee.next = nil
        buffersInUse &+= 1
        return DemiBuffer(header: h)
    }

    /// The index of the smallest size class whose storage holds `bytes`, or -1 if none does.
    @inline(__always)
    static func sizeClass(for bytes: Int) -> Int {
        if bytes <= 2048 { return 0 }
        if bytes <= 16384 { return 1 }
        if bytes <= 67584 { return 2 }
        return -1
    }

    /// A new view of `buffer`'s window (or of the part `offset..<offset+length` of it) that shares its bytes.
    ///
    /// The view holds a reference on the storage's owner, so the bytes outlive the original handle. Returns nil if
    /// the range is outside the window.
    public func view(of buffer: DemiBuffer, offset: Int = 0, length: Int? = nil) -> DemiBuffer? {
        let len = length ?? (buffer.count - offset)
        guard offset >= 0, len >= 0, offset + len <= buffer.count, let v = popView() else { return nil }
        let src = buffer.header
        let root = src.pointee.kind == BufferHeader.Kind.view ? src.pointee.parent! : src
        root.pointee.refcount &+= 1
        v.pointee.storage = src.pointee.storage
        v.pointee.capacity = src.pointee.capacity
        v.pointee.offset = src.pointee.offset + UInt32(offset)
        v.pointee.length = UInt32(len)
        v.pointee.parent = root
        v.pointee.kind = BufferHeader.Kind.view
        v.pointee.refcount = 1
        v.pointee.flags = BufferHeader.Flags.inUse
        v.pointee.next = nil
        buffersInUse &+= 1
        return DemiBuffer(header: v)
    }

    /// Wraps device memory (a DPDK mbuf's data room, an AF_XDP UMEM frame) as a buffer, without copying.
    ///
    /// When the last reference goes, the pool's external-release hook receives `object`.
    public func wrapExternal(
        storage: UnsafeMutableRawPointer, capacity: Int, offset: Int, length: Int, object: UnsafeMutableRawPointer?
    ) -> DemiBuffer? {
        guard capacity >= 0, offset >= 0, length >= 0, offset + length <= capacity, let v = popView() else { return nil }
        v.pointee.storage = storage
        v.pointee.capacity = UInt32(capacity)
        v.pointee.offset = UInt32(offset)
        v.pointee.length = UInt32(length)
        v.pointee.external = object
        v.pointee.kind = BufferHeader.Kind.external
        v.pointee.refcount = 1
        v.pointee.flags = BufferHeader.Flags.inUse
        v.pointee.next = nil
        buffersInUse &+= 1
        return DemiBuffer(header: v)
    }

    /// Sets the hook that returns external buffers to their device.
    public func setExternalRelease(_ release: ExternalRelease?, context: UnsafeMutableRawPointer?) {
        externalRelease = release
        externalContext = context
    }

    // MARK: - Release

    /// Returns a header whose last reference was dropped to its free list.
    @usableFromInline
    static func reclaim(_ h: UnsafeMutablePointer<BufferHeader>) {
        Unmanaged<BufferPool>.fromOpaque(h.pointee.owner.unsafelyUnwrapped)._withUnsafeGuaranteedRef { $0.reclaim(h) }
    }

    @usableFromInline
    func reclaim(_ h: UnsafeMutablePointer<BufferHeader>) {
        h.pointee.refcount = 0
        h.pointee.flags = 0
        h.pointee.generation &+= 1
        h.pointee.next = nil
        buffersInUse &-= 1
        switch h.pointee.kind {
        case BufferHeader.Kind.pooled:
            pushFree(h, Int(h.pointee.sizeClass))
        case BufferHeader.Kind.view:
            let parent = h.pointee.parent.unsafelyUnwrapped
            h.pointee.parent = nil
            h.pointee.storage = nil
            pushView(h)
            DemiBuffer(header: parent).release()
        case BufferHeader.Kind.large:
            free(h.pointee.storage)
            h.pointee.storage = nil
            pushView(h)
        default:
            let object = h.pointee.external
            h.pointee.external = nil
            h.pointee.storage = nil
            pushView(h)
            externalRelease?(object, externalContext)
        }
    }

    // MARK: - Application ownership (sgaalloc / pop / sgafree)

    /// Checks that `pointer` is a header of this pool that is in use; nil otherwise. Never dereferences a pointer
    /// outside the pool's arenas.
    public func validate(_ pointer: UnsafeRawPointer?) -> UnsafeMutablePointer<BufferHeader>? {
        guard let p = pointer else { return nil }
        let a = UInt(bitPattern: p)
        let stride = UInt(MemoryLayout<BufferHeader>.stride)
        var k = 0
        while k < arenaCount {
            let start = arenas[2 * k]
            let end = arenas[2 * k + 1]
            k += 1
            guard a >= start && a < end else { continue }
            guard (a - start) % stride == 0 else { return nil }
            let h = UnsafeMutablePointer<BufferHeader>(mutating: p.assumingMemoryBound(to: BufferHeader.self))
            guard h.pointee.magic == BufferHeader.magicValue, h.pointee.flags & BufferHeader.Flags.inUse != 0 else {
                return nil
            }
            return h
        }
        return nil
    }

    /// Marks `buffer` (and every further segment chained to it) as holding the application's reference.
    @inlinable
    public func giveToApplication(_ buffer: DemiBuffer) {
        var h: UnsafeMutablePointer<BufferHeader>? = buffer.header
        while let c = h {
            c.pointee.flags |= BufferHeader.Flags.appOwned
            h = c.pointee.next
        }
    }

    /// Drops the application's reference to `buffer` (and every segment chained to it): `sgafree`.
    ///
    /// Throws `EINVAL` for a buffer that is not this pool's, is stale, or whose application reference was already
    /// dropped (a double free). Nothing changes in that case.
    public func freeFromApplication(_ buffer: DemiBuffer) throws(Errno) {
        guard validate(buffer.header) != nil, buffer.isValid else { throw .invalidArgument }
        let h0 = buffer.header
        if h0.pointee.next == nil {
            guard h0.pointee.flags & BufferHeader.Flags.appOwned != 0 else { throw .invalidArgument }
            h0.pointee.flags &= ~BufferHeader.Flags.appOwned
            buffer.release()
            return
        }
        // Check the whole chain first so a bad chain changes nothing.
        var h: UnsafeMutablePointer<BufferHeader>? = buffer.header
        var n = 0
        while let c = h {
            guard c.pointee.flags & BufferHeader.Flags.appOwned != 0, validate(c) != nil else {
                throw .invalidArgument
            }
            n += 1
            if n > 1 << 20 { throw .invalidArgument }
            h = c.pointee.next
        }
        h = buffer.header
        while let c = h {
            h = c.pointee.next
            c.pointee.flags &= ~BufferHeader.Flags.appOwned
            DemiBuffer(header: c).release()
        }
    }

    /// ``freeFromApplication(_:)`` for a buffer whose memory the caller takes over at once: if `buffer` is one segment
    /// of the smallest size class that nothing else references, it comes back as a new buffer, as
    /// ``allocate(size:headroom:)`` of 0 bytes with `headroom` would return it (the application's handle is stale from
    /// now on), without a trip through the free list. Nil, with nothing changed, for any other valid array (free that
    /// one with ``freeFromApplication(_:)``); `EINVAL` as that for an invalid one.
    public func recycleFromApplication(_ buffer: DemiBuffer, headroom: Int) throws(Errno) -> DemiBuffer? {
        guard validate(buffer.header) != nil else { throw .invalidArgument }
        return try recycleFromApplication(ownBuffer: buffer, headroom: headroom)
    }

    /// ``recycleFromApplication(_:headroom:)`` for a buffer the caller knows to be this pool's (one it handed to the
    /// application itself): the same checks of the buffer, without looking up which arena holds its header.
    @inlinable @inline(__always)
    public func recycleFromApplication(ownBuffer buffer: DemiBuffer, headroom: Int) throws(Errno) -> DemiBuffer? {
        guard buffer.isValid else { throw .invalidArgument }
        let h = buffer.header
        guard h.pointee.next == nil else { return nil }
        guard h.pointee.flags & BufferHeader.Flags.appOwned != 0 else { throw .invalidArgument }
        guard h.pointee.kind == BufferHeader.Kind.pooled, h.pointee.sizeClass == 0, h.pointee.refcount == 1,
              headroom >= 0, headroom <= Int(h.pointee.capacity) else { return nil }
        h.pointee.generation &+= 1
        h.pointee.offset = UInt32(headroom)
        h.pointee.length = 0
        h.pointee.flags = BufferHeader.Flags.inUse
        return DemiBuffer(header: h)
    }

    // MARK: - Free lists

    @usableFromInline
    func popFree(_ cls: Int) -> UnsafeMutablePointer<BufferHeader>? {
        if let h = freeLists[cls] {
            freeLists[cls] = h.pointee.next
            return h
        }
        guard grow(cls) else { return nil }
        return popFree(cls)
    }

    @usableFromInline
    func pushFree(_ h: UnsafeMutablePointer<BufferHeader>, _ cls: Int) {
        h.pointee.next = freeLists[cls]
        freeLists[cls] = h
    }

    @usableFromInline
    func popView() -> UnsafeMutablePointer<BufferHeader>? {
        if let h = freeViews {
            freeViews = h.pointee.next
            return h
        }
        guard let (base, count) = newHeaders(Self.headerGrowth) else { return nil }
        for i in 0..<count { pushView(base + i) }
        return popView()
    }

    @usableFromInline
    func pushView(_ h: UnsafeMutablePointer<BufferHeader>) {
        h.pointee.kind = BufferHeader.Kind.view
        h.pointee.next = freeViews
        freeViews = h
    }

    /// Allocates `count` fresh headers in a new arena.
    func newHeaders(_ count: Int) -> (UnsafeMutablePointer<BufferHeader>, Int)? {
        let stride = MemoryLayout<BufferHeader>.stride
        var mem: UnsafeMutableRawPointer?
        guard posix_memalign(&mem, 64, stride * count) == 0, let m = mem else { return nil }
        chunks.append(m)
        let base = m.bindMemory(to: BufferHeader.self, capacity: count)
        let owner = Unmanaged.passUnretained(self).toOpaque()
        for i in 0..<count {
            (base + i).initialize(to: BufferHeader(
                storage: nil, next: nil, parent: nil, owner: owner, external: nil,
                capacity: 0, offset: 0, length: 0, refcount: 0, generation: 1,
                magic: BufferHeader.magicValue, kind: BufferHeader.Kind.view, flags: 0, sizeClass: 0, reserved: 0))
        }
        let start = UInt(bitPattern: m)
        if arenaCount == arenaCapacity {
            let bigger = UnsafeMutablePointer<UInt>.allocate(capacity: 4 * arenaCapacity)
            bigger.update(from: arenas, count: 2 * arenaCount)
            arenas.deallocate()
            arenas = bigger
            arenaCapacity *= 2
        }
        arenas[2 * arenaCount] = start
        arenas[2 * arenaCount + 1] = start + UInt(stride * count)
        arenaCount += 1
        headersCreated += count
        return (base, count)
    }

    /// Adds a chunk of storage slots, each bound to its own header, to size class `cls`.
    func grow(_ cls: Int) -> Bool {
        let size = Self.classSizes[cls]
        let n = Self.classGrowth[cls]
        var mem: UnsafeMutableRawPointer?
        guard posix_memalign(&mem, 4096, size * n) == 0, let storage = mem else { return false }
        // Written once now, as the pool grows: no buffer's first use then takes a page fault on the data path, or
        // reads the shared zero page (which every untouched page maps, so a buffer sent before it is written would be
        // read through aliases of one physical page).
        memset(storage, 0, size * n)
        guard let (base, count) = newHeaders(n) else {
            free(storage)
            return false
        }
        chunks.append(storage)
        for i in 0..<count {
            let h = base + i
            h.pointee.storage = storage + i * size
            h.pointee.capacity = UInt32(size)
            h.pointee.kind = BufferHeader.Kind.pooled
            h.pointee.sizeClass = UInt8(cls)
            pushFree(h, cls)
        }
        return true
    }

    /// Makes sure at least `count` buffers of the class that holds `size` bytes are ready, so that later allocations
    /// do not touch `malloc`.
    public func reserve(size: Int, count: Int) {
        let cls = Self.sizeClass(for: size + defaultHeadroom)
        guard cls >= 0 else { return }
        var have = 0
        var h = freeLists[cls]
        while let c = h { have += 1; h = c.pointee.next }
        while have < count, grow(cls) { have += Self.classGrowth[cls] }
    }
}
