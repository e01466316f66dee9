import DemiCore

/// A scatter-gather array: one or more buffer segments, plus the peer address of a received datagram.
///
/// Segments are chained through their headers (like an mbuf chain), so an array of any length needs no allocation.
/// Building a multi-segment array takes the buffers over: a buffer can be a segment of one array at a time (use
/// ``BufferPool/view(of:offset:length:)`` to put the same bytes in two arrays).
@frozen
public struct ScatterGatherArray: @unchecked Sendable {
    /// The first segment; nil for an empty array.
    public var head: DemiBuffer?
    /// The sender's address and port in one word (0: none), so that an array is passed between functions as three
    /// registers (segment, generation, address). An optional address stored as such would share its 8-byte unit with
    /// the generation, and every call would repack the two through memory (narrow stores, then a wide load that
    /// cannot be forwarded from them, which stalls until they reach the cache).
    @usableFromInline var addressBits: UInt64

    /// The sender of a popped datagram, or nil.
    @inlinable public var address: SocketAddressV4? {
        get {
            addressBits == 0 ? nil : SocketAddressV4(IPv4Address(rawValue: UInt32(truncatingIfNeeded: addressBits)),
                                                     UInt16(truncatingIfNeeded: addressBits >> 32))
        }
        set { addressBits = newValue.map { UInt64($0.address.rawValue) | UInt64($0.port) << 32 | 1 << 48 } ?? 0 }
    }

    @inlinable public init(head: DemiBuffer?, address: SocketAddressV4? = nil) {
        self.head = head
        addressBits = 0
        self.address = address
    }

    /// An array of the given buffers, in order. The buffers' chain links are overwritten.
    public init(segments: [DemiBuffer], address: SocketAddressV4? = nil) {
        for i in segments.indices {
            segments[i].header.pointee.next = i + 1 < segments.count ? segments[i + 1].header : nil
        }
        head = segments.first
        addressBits = 0
        self.address = address
    }

    /// The empty array.
    public static var empty: ScatterGatherArray { ScatterGatherArray(head: nil) }

    /// The number of segments.
    @inlinable public var segmentCount: Int {
        var n = 0
        var h = head?.header
        while let c = h { n += 1; h = c.pointee.next }
        return n
    }

    /// The total number of bytes over all segments.
    @inlinable public var count: Int {
        var n = 0
        var h = head?.header
        while let c = h { n += Int(c.pointee.length); h = c.pointee.next }
        return n
    }

    /// The segments in order (allocates an array: for tools and tests).
    public var segments: [DemiBuffer] {
        var out: [DemiBuffer] = []
        var h = head?.header
        while let c = h { out.append(DemiBuffer(header: c)); h = c.pointee.next }
        return out
    }

    /// All bytes, concatenated (a copy: for tools and tests).
    public var bytes: [UInt8] { segments.flatMap { $0.array } }

    /// Takes one reference on every segment.
    @inlinable public func retainAll() {
        var h = head?.header
        while let c = h { c.pointee.refcount &+= 1; h = c.pointee.next }
    }

    /// Drops one reference on every segment.
    @inlinable public func releaseAll() {
        var h = head?.header
        while let c = h {
            h = c.pointee.next
            DemiBuffer(header: c).release()
        }
    }

    /// True if every segment is valid (allocated and of the handle's generation for the head).
    @inlinable public var isValid: Bool {
        guard let head, head.isValid else { return false }
        var h = head.header.pointee.next
        while let c = h {
            if c.pointee.flags & BufferHeader.Flags.inUse == 0 { return false }
            h = c.pointee.next
        }
        return true
    }
}
