import DemiCore

/// A handle to one I/O buffer: a header pointer plus the generation it was allocated with.
///
/// `DemiBuffer` is a plain value: copying it does not take a reference. References are counted explicitly
/// (``retain()``/``release()``), as the PDPIX contract needs: the application's reference (from `sgaalloc` or `pop`)
/// is dropped by `sgafree`, and the libOS holds its own while an operation is in flight. So the application may free a
/// buffer right after pushing it; the bytes stay intact until the push completes.
///
/// Once the buffer is freed its generation changes, so a stale handle is detected by ``isValid``.
@frozen
public struct DemiBuffer: Hashable, @unchecked Sendable {
    public let header: UnsafeMutablePointer<BufferHeader>
    public let generation: UInt16

    @inlinable public init(header: UnsafeMutablePointer<BufferHeader>) {
        self.header = header
        self.generation = header.pointee.generation
    }

    @inlinable public init(header: UnsafeMutablePointer<BufferHeader>, generation: UInt16) {
        self.header = header
        self.generation = generation
    }

    /// True while the buffer is allocated and this handle is of its current generation.
    @inlinable public var isValid: Bool {
        header.pointee.generation == generation && header.pointee.flags & BufferHeader.Flags.inUse != 0
    }

    /// Bytes in the data window.
    @inlinable public var count: Int { Int(header.pointee.length) }

    /// The start of the data window.
    @inlinable public var baseAddress: UnsafeMutableRawPointer {
        header.pointee.storage.unsafelyUnwrapped + Int(header.pointee.offset)
    }

    /// The data window.
    @inlinable public var bytes: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: baseAddress, count: count)
    }

    /// Free bytes in front of the window, for headers.
    @inlinable public var headroom: Int { Int(header.pointee.offset) }

    /// Free bytes after the window.
    @inlinable public var tailroom: Int {
        Int(header.pointee.capacity) - Int(header.pointee.offset) - Int(header.pointee.length)
    }

    /// Grows the window to the front by `n` bytes of headroom and returns the new start, or nil without room.
    @inlinable public func prepend(_ n: Int) -> UnsafeMutableRawPointer? {
        guard n >= 0, n <= headroom else { return nil }
        header.pointee.offset -= UInt32(n)
        header.pointee.length += UInt32(n)
        return baseAddress
    }

    /// Removes `n` bytes from the front of the window. Returns false (and changes nothing) if `n` is out of range.
    @discardableResult
    @inlinable public func trimFront(_ n: Int) -> Bool {
        guard n >= 0, n <= count else { return false }
        header.pointee.offset += UInt32(n)
        header.pointee.length -= UInt32(n)
        return true
    }

    /// Removes `n` bytes from the back of the window. Returns false (and changes nothing) if `n` is out of range.
    @discardableResult
    @inlinable public func trimBack(_ n: Int) -> Bool {
        guard n >= 0, n <= count else { return false }
        header.pointee.length -= UInt32(n)
        return true
    }

    /// Sets the window length (within the tailroom). Returns false (and changes nothing) if out of range.
    @discardableResult
    @inlinable public func setCount(_ n: Int) -> Bool {
        guard n >= 0, n <= Int(header.pointee.capacity) - Int(header.pointee.offset) else { return false }
        header.pointee.length = UInt32(n)
        return true
    }

    /// Takes one more reference.
    @inlinable public func retain() { header.pointee.refcount &+= 1 }

    /// Drops one reference; the last one returns the buffer to its pool.
    @inlinable public func release() {
        let h = header
        if h.pointee.refcount > 1 {
            h.pointee.refcount &-= 1
        } else {
            BufferPool.reclaim(h)
        }
    }

    /// The next segment when this buffer is part of a multi-segment scatter-gather array.
    @inlinable public var nextSegment: DemiBuffer? {
        guard let n = header.pointee.next else { return nil }
        return DemiBuffer(header: n)
    }

    /// Copies `source` into the window, starting at `offset`. Returns false if it does not fit the window.
    @discardableResult
    public func write(_ source: UnsafeRawBufferPointer, at offset: Int = 0) -> Bool {
        guard offset >= 0, offset + source.count <= count else { return false }
        if let s = source.baseAddress { (baseAddress + offset).copyMemory(from: s, byteCount: source.count) }
        return true
    }

    /// The window's bytes as an array (a copy; for tests and tools, not the datapath).
    public var array: [UInt8] { Array(UnsafeRawBufferPointer(bytes)) }
}

extension DemiBuffer {
    /// The pool this buffer belongs to.
    public var pool: BufferPool {
        Unmanaged<BufferPool>.fromOpaque(header.pointee.owner.unsafelyUnwrapped).takeUnretainedValue()
    }

    /// Bytes over this buffer and every segment chained after it.
    @inlinable public var chainCount: Int {
        var n = 0
        var h: UnsafeMutablePointer<BufferHeader>? = header
        while let c = h { n += Int(c.pointee.length); h = c.pointee.next }
        return n
    }

    /// Copies this buffer and its chained segments into one contiguous buffer from `pool` (nil if out of memory).
    public func flattened(into pool: BufferPool, headroom: Int? = nil) -> DemiBuffer? {
        guard let out = pool.allocate(size: chainCount, headroom: headroom) else { return nil }
        var at = out.baseAddress
        var h: UnsafeMutablePointer<BufferHeader>? = header
        while let c = h {
            let n = Int(c.pointee.length)
            at.copyMemory(from: c.pointee.storage.unsafelyUnwrapped + Int(c.pointee.offset), byteCount: n)
            at += n
            h = c.pointee.next
        }
        return out
    }

    /// Drops one reference on this buffer and on every segment chained after it.
    @inlinable public func releaseChain() {
        var h: UnsafeMutablePointer<BufferHeader>? = header
        while let c = h {
            h = c.pointee.next
            DemiBuffer(header: c).release()
        }
    }
}
