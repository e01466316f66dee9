import DemiCore

/// The metadata of one I/O buffer: one cache line, kept in the pool's header arenas, never on the Swift heap.
///
/// Like DPDK's `rte_mbuf`, a header describes a window (`offset`, `length`) into storage it does not own by itself.
/// Four kinds exist:
/// - ``Kind/pooled``: storage is a fixed slot of a size class; the header is permanently bound to it.
/// - ``Kind/view``: an indirect view (a clone or a slice); `parent` is the header that owns the storage and holds
///   one reference on it.
/// - ``Kind/large``: storage from `posix_memalign`, for buffers above the largest class.
/// - ``Kind/external``: device memory (a DPDK mbuf, an AF_XDP UMEM frame); releasing it calls the pool's
///   external-release hook with `external`.
///
/// Reference counts are not atomic: a pool and its buffers belong to one thread (one libOS per thread).
@frozen
public struct BufferHeader {
    public var storage: UnsafeMutableRawPointer?
    /// Free-list link while free; the next segment of a scatter-gather array while in use.
    public var next: UnsafeMutablePointer<BufferHeader>?
    public var parent: UnsafeMutablePointer<BufferHeader>?
    /// The owning ``BufferPool``, unretained.
    public var owner: UnsafeMutableRawPointer?
    /// The device object behind an external buffer.
    public var external: UnsafeMutableRawPointer?
    public var capacity: UInt32
    public var offset: UInt32
    public var length: UInt32
    public var refcount: UInt32
    public var generation: UInt16
    public var magic: UInt16
    public var kind: UInt8
    public var flags: UInt8
    public var sizeClass: UInt8
    public var reserved: UInt8

    public enum Kind {
        public static var pooled: UInt8 { 0 }
        public static var view: UInt8 { 1 }
        public static var large: UInt8 { 2 }
        public static var external: UInt8 { 3 }
    }

    public enum Flags {
        /// The header is allocated (not on a free list).
        public static var inUse: UInt8 { 1 }
        /// The application holds a reference (from `sgaalloc` or a pop) that `sgafree` may drop once.
        public static var appOwned: UInt8 { 2 }
    }

    public static var magicValue: UInt16 { 0xDE31 }
}
