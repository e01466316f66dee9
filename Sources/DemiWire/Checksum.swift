import DemiCore

/// The Internet checksum (RFC 1071): the ones' complement of the ones' complement sum of 16-bit words.
public enum InternetChecksum {
    /// The ones' complement sum of `bytes` (not complemented), added to `initial`. Sums 64 bits at a time in the
    /// host's byte order with end-around carries, then swaps the folded 16 bits to network order (RFC 1071 §2(B):
    /// the sum does not depend on byte order).
    @inlinable
    public static func sum(_ bytes: UnsafeRawBufferPointer, initial: UInt32 = 0) -> UInt32 {
        let n = bytes.count
        guard n > 0, let base = bytes.baseAddress else { return fold(UInt64(initial)) }
        var acc: UInt64 = 0
        var i = 0
        while i + 32 <= n {
            let a = base.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            let b = base.loadUnaligned(fromByteOffset: i + 8, as: UInt64.self)
            let c = base.loadUnaligned(fromByteOffset: i + 16, as: UInt64.self)
            let d = base.loadUnaligned(fromByteOffset: i + 24, as: UInt64.self)
            var o: Bool
            (acc, o) = acc.addingReportingOverflow(a); acc &+= o ? 1 : 0
            (acc, o) = acc.addingReportingOverflow(b); acc &+= o ? 1 : 0
            (acc, o) = acc.addingReportingOverflow(c); acc &+= o ? 1 : 0
            (acc, o) = acc.addingReportingOverflow(d); acc &+= o ? 1 : 0
            i += 32
        }
        while i + 8 <= n {
            let (s, o) = acc.addingReportingOverflow(base.loadUnaligned(fromByteOffset: i, as: UInt64.self))
            acc = s &+ (o ? 1 : 0)
            i += 8
        }
        // At most 7 bytes left: narrower words cannot overflow once the 64-bit sum is folded to 32 bits.
        acc = (acc & 0xFFFF_FFFF) &+ (acc >> 32)
        if i + 4 <= n {
            acc &+= UInt64(base.loadUnaligned(fromByteOffset: i, as: UInt32.self))
            i += 4
        }
        if i + 2 <= n {
            acc &+= UInt64(base.loadUnaligned(fromByteOffset: i, as: UInt16.self))
            i += 2
        }
        if i < n {
            // A last odd byte is the high half of a network-order word: the low half of a little-endian one.
            let last = UInt64(base.load(fromByteOffset: i, as: UInt8.self))
            acc &+= UInt64(1).littleEndian == 1 ? last : last << 8
        }
        let native = UInt16(truncatingIfNeeded: fold(acc))
        return fold(UInt64(UInt16(bigEndian: native)) &+ UInt64(initial))
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
