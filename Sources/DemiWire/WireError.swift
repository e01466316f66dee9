// Wire formats: checked views over packet bytes, and small header values.
//
// Contract (for every format in this module):
// - `init(checking:)` validates lengths (and fields that decide lengths) once; after it succeeds no accessor can read
//   out of bounds. Always use it on bytes from the network.
// - `init(unchecked:)` skips the checks; use it only to emit into a buffer this code sized itself.
// - A header value (`...Header`) holds the meaningful fields; `parse` reads it from a checked view, `emit` writes it,
//   `encodedLength` says how many bytes `emit` writes. Parsing never allocates.

/// Why bytes are not a valid packet. Malformed packets are counted and dropped by the stack.
public enum WireError: Error, Sendable, Hashable {
    /// Fewer bytes than the header (or its declared length) needs.
    case truncated
    /// A version or type field this stack does not handle.
    case unsupported
    /// A length field inconsistent with the header or the buffer.
    case badLength
    /// A checksum that does not verify.
    case badChecksum
    /// A TCP option whose length is impossible.
    case malformedOption
}

/// Big-endian loads and stores on raw bytes.
extension UnsafeRawBufferPointer {
    @inlinable func u8(_ at: Int) -> UInt8 { self[at] }
    // Callers checked the bounds (the views' contract); one unaligned load instead of one per byte.
    @inlinable @inline(__always) func u16(_ at: Int) -> UInt16 {
        assert(at >= 0 && at + 2 <= count, "read out of bounds")
        return UInt16(bigEndian: baseAddress.unsafelyUnwrapped.loadUnaligned(fromByteOffset: at, as: UInt16.self))
    }
    @inlinable @inline(__always) func u32(_ at: Int) -> UInt32 {
        assert(at >= 0 && at + 4 <= count, "read out of bounds")
        return UInt32(bigEndian: baseAddress.unsafelyUnwrapped.loadUnaligned(fromByteOffset: at, as: UInt32.self))
    }
}

extension UnsafeMutableRawBufferPointer {
    @inlinable func put(_ v: UInt8, _ at: Int) { self[at] = v }
    @inlinable @inline(__always) func put(_ v: UInt16, _ at: Int) {
        assert(at >= 0 && at + 2 <= count, "write out of bounds")
        baseAddress.unsafelyUnwrapped.storeBytes(of: v.bigEndian, toByteOffset: at, as: UInt16.self)
    }
    @inlinable @inline(__always) func put(_ v: UInt32, _ at: Int) {
        assert(at >= 0 && at + 4 <= count, "write out of bounds")
        baseAddress.unsafelyUnwrapped.storeBytes(of: v.bigEndian, toByteOffset: at, as: UInt32.self)
    }
}
