import DemiCore

/// The Internet checksum (RFC 1071): the ones' complement of the ones' complement sum of 16-bit words.
public enum InternetChecksum {
    /// The ones' complement sum of `bytes` (not complemented), added to `initial`. Sums 32 bits at a time with the
    /// carries deferred to the end.
    @inlinable
    public static func sum(_ bytes: UnsafeRawBufferPointer, initial: UInt32 = 0) -> UInt32 {
        var acc = UInt64(initial)
        var i = 0
        let n = bytes.count
        while i + 4 <= n {
            acc &+= UInt64(bytes.u32(i))
            i += 4
        }
        if i + 2 <= n {
            acc &+= UInt64(bytes.u16(i))
            i += 2
        }
        if i < n { acc &+= UInt64(bytes[i]) << 8 }
        return fold(acc)
    }

    /// Folds a wide sum to 16 bits of ones' complement sum.
    @inlinable
    public static func fold(_ v: UInt64) -> UInt32 {
        var s = v
        while s >> 16 != 0 { s = (s & 0xFFFF) &+ (s >> 16) }
        return UInt32(s)
    }

    /// The checksum to store: the complement of the folded sum.
    @inlinable
    public static func finish(_ sum: UInt32) -> UInt16 { ~UInt16(truncatingIfNeeded: fold(UInt64(sum))) }

    /// The checksum of `bytes`.
    @inlinable
    public static func compute(_ bytes: UnsafeRawBufferPointer) -> UInt16 { finish(sum(bytes)) }

    /// The sum of the IPv4 pseudo-header for TCP and UDP (RFC 793, RFC 768).
    @inlinable
    public static func pseudoHeader(source: IPv4Address, destination: IPv4Address, protocol p: UInt8, length: Int)
        -> UInt32
    {
        let s = UInt64(source.rawValue >> 16) + UInt64(source.rawValue & 0xFFFF)
            + UInt64(destination.rawValue >> 16) + UInt64(destination.rawValue & 0xFFFF)
            + UInt64(p) + UInt64(length)
        return fold(s)
    }

    /// Updates a stored checksum after a 16-bit field changed from `old` to `new` (RFC 1624, eqn. 3).
    @inlinable
    public static func update(_ checksum: UInt16, old: UInt16, new: UInt16) -> UInt16 {
        let s = UInt64(~checksum) + UInt64(~old) + UInt64(new)
        return ~UInt16(truncatingIfNeeded: fold(s))
    }
}
