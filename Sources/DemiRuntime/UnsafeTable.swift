/// A growable array in unmanaged memory, for the tables a libOS indexes on every operation (its queues).
///
/// Unlike `Array` it never retains its storage or checks uniqueness on access, so reading or updating an element is
/// a load or a store. It has no copy-on-write: it belongs to one owner, which calls ``destroy()`` once.
/// Elements may move when the table grows; hold indices, not pointers.
@frozen
public struct UnsafeTable<Element> {
    @usableFromInline var base: UnsafeMutablePointer<Element>
    @usableFromInline var capacity: Int
    public private(set) var count = 0

    public init(capacity: Int = 64) {
        self.capacity = max(1, capacity)
        base = .allocate(capacity: self.capacity)
    }

    @inlinable
    public subscript(i: Int) -> Element {
        unsafeAddress { UnsafePointer(base + i) }
        nonmutating unsafeMutableAddress { base + i }
    }

    /// The address of element `i`, valid until the table grows.
    @inlinable public func pointer(_ i: Int) -> UnsafeMutablePointer<Element> { base + i }

    @inlinable public var indices: Range<Int> { 0..<count }

    public mutating func append(_ e: Element) {
        if count == capacity {
            let bigger = UnsafeMutablePointer<Element>.allocate(capacity: capacity * 2)
            bigger.moveInitialize(from: base, count: count)
            base.deallocate()
            base = bigger
            capacity *= 2
        }
        (base + count).initialize(to: e)
        count += 1
    }

    /// Deinitializes every element and frees the storage.
    public func destroy() {
        base.deinitialize(count: count)
        base.deallocate()
    }
}
