import DemiBuffers

/// A FIFO of buffers in a ring that grows by doubling (so steady state allocates nothing). It owns one reference to
/// each buffer it holds; ``destroy()`` releases them. A value type over shared storage: keep one copy (mutate it in
/// place, e.g. inside a table entry).
public struct BufferRing {
    @usableFromInline var storage: UnsafeMutablePointer<DemiBuffer>
    @usableFromInline var capacity: Int
    @usableFromInline var head = 0
    public private(set) var count = 0

    public init(capacity: Int = 16) {
        var c = 4
        while c < capacity { c <<= 1 }
        self.capacity = c
        storage = .allocate(capacity: c)
    }

    @inlinable public var isEmpty: Bool { count == 0 }

    /// The `i`-th buffer from the front (no reference taken).
    @inlinable public subscript(i: Int) -> DemiBuffer {
        storage[(head + i) & (capacity - 1)]
    }

    public mutating func append(_ b: DemiBuffer) {
        if count == capacity { grow() }
        (storage + ((head + count) & (capacity - 1))).initialize(to: b)
        count += 1
    }

    /// Removes the front buffer and hands its reference to the caller.
    @discardableResult
    public mutating func removeFirst() -> DemiBuffer? {
        guard count > 0 else { return nil }
        let b = (storage + head).move()
        head = (head + 1) & (capacity - 1)
        count -= 1
        return b
    }

    /// Replaces the front buffer (the old reference is not released).
    public mutating func replaceFirst(_ b: DemiBuffer) {
        precondition(count > 0)
        storage[head] = b
    }

    mutating func grow() {
        let bigger = UnsafeMutablePointer<DemiBuffer>.allocate(capacity: capacity * 2)
        for i in 0..<count { (bigger + i).initialize(to: (storage + ((head + i) & (capacity - 1))).move()) }
        storage.deallocate()
        storage = bigger
        capacity *= 2
        head = 0
    }

    /// Releases every buffer and keeps the storage.
    public mutating func removeAll() {
        while let b = removeFirst() { b.release() }
    }

    /// Releases every buffer and the storage.
    public mutating func destroy() {
        removeAll()
        storage.deallocate()
        capacity = 0
    }
}
