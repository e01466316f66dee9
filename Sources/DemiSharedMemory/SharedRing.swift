import CDemiLinux
import DemiBuffers

/// One direction of a pipe: a single-producer single-consumer byte ring in shared memory.
///
/// The producer owns `tail`, the consumer owns `head`; each lives on its own cache line and each side keeps a private
/// copy of the other side's index, reloading it (acquire) only when its cached value says the ring is full or empty.
/// Messages are records: a 16-byte header (fragment length, flags, total message length) followed by the payload,
/// padded to 16 bytes. A record's payload may wrap around the end of the ring; its header never does, because records
/// start at multiples of 16 and the ring size is a power of two of at least 64. Indices grow without bound (64-bit); the
/// position in the ring is `index & mask`.
///
/// A producer that finds the ring empty past its first ``RingProducer/compactSpan`` bytes rewinds to its start: it
/// writes a *lap* record (no payload, flag ``RecordHeader/lap``) that tells the consumer to go on at the start of the
/// next lap, so a ping-pong keeps to the first few KiB of the ring (a few dozen cache lines, as the C ring's slots)
/// instead of sweeping the whole ring through both cores' caches. The whole ring is still there for bursts.
struct RecordHeader {
    static let size = 16
    /// More fragments of the same message follow.
    static let more: UInt32 = 1
    /// No payload: the next record starts at the beginning of the next lap of the ring.
    static let lap: UInt32 = 2
}

@inline(__always)
func padded(_ n: Int) -> Int { (n + 15) & ~15 }

/// Copies a whole message's payload between the ring and a buffer (the short paths): up to 64 bytes with a few moves
/// and no call, memcpy above.
@inline(__always)
func copyPayload(_ destination: UnsafeMutableRawPointer, _ source: UnsafeRawPointer, _ length: Int) {
    if length <= 64 {
        cdemi_copy_small(destination, source, length)
    } else {
        destination.copyMemory(from: source, byteCount: length)
    }
}

/// A zeroed stand-in ring for queues that have none (memory queues): never written, so any use sees it empty/full.
nonisolated(unsafe) let detachedRingWords: UnsafeMutablePointer<UInt64> = {
    let p = UnsafeMutablePointer<UInt64>.allocate(capacity: 2)
    p.initialize(repeating: 0, count: 2)
    return p
}()

/// The producer's side of a ring.
struct RingProducer {
    static var detached: RingProducer {
        RingProducer(tail: detachedRingWords, head: detachedRingWords + 1, data: UnsafeMutableRawPointer(detachedRingWords),
                     capacity: 0, local: 0)
    }

    init(tail: UnsafeMutablePointer<UInt64>, head: UnsafeMutablePointer<UInt64>, data: UnsafeMutableRawPointer,
         capacity: Int, local: UInt64) {
        self.tail = tail
        self.head = head
        self.data = data
        self.capacity = capacity
        localTail = local
        cachedHead = local
        rewindCheck = local &+ UInt64(Self.compactSpan)
    }

    /// A small message is written at the start of the ring, rather than further on, if the ring is empty by then.
    static let compactSpan = 4096

    let tail: UnsafeMutablePointer<UInt64>
    let head: UnsafeMutablePointer<UInt64>
    let data: UnsafeMutableRawPointer
    let capacity: Int
    var localTail: UInt64
    var cachedHead: UInt64
    /// The tail index from which the next push looks whether it can rewind (see ``rewindIfEmpty()``).
    var rewindCheck: UInt64

    init(tail: UnsafeMutablePointer<UInt64>, head: UnsafeMutablePointer<UInt64>, data: UnsafeMutableRawPointer,
         capacity: Int) {
        self.tail = tail
        self.head = head
        self.data = data
        self.capacity = capacity
        localTail = cdemi_load_acquire_u64(tail)
        cachedHead = cdemi_load_acquire_u64(head)
        rewindCheck = localTail &+ UInt64(Self.compactSpan)
    }

    /// True if a small record of `length` payload bytes can be written now, in one piece, with no rewind due (the
    /// general path does that, once per ``compactSpan`` bytes, so this one makes no call).
    @inline(__always)
    mutating func canWriteSmall(_ length: Int) -> Bool {
        localTail < rewindCheck && length <= maxFragment && hasRoom(RecordHeader.size &+ padded(length))
            && fitsUnwrapped(length)
    }

    /// Rewinds if a rewind is due and the ring is empty (see ``rewindIfEmpty(before:)``), for a record of `needed`
    /// bytes that the caller writes next.
    @inline(__always)
    mutating func rewindIfDue(before needed: Int) {
        if localTail >= rewindCheck { rewindIfEmpty(before: needed) }
    }

    /// Past the first ``compactSpan`` bytes of a lap, with the ring empty (everything written has been consumed):
    /// writes a lap record and moves the tail to the start of the next lap. Not published here: the caller's next
    /// record, of `needed` bytes, publishes both with its release store of the tail. So it rewinds only if that record
    /// fits in what the lap record leaves free (the bytes before the rewind point, until the consumer passes it): a
    /// record that did not would wait for room behind a lap record the consumer cannot see. Looked at once per
    /// ``compactSpan`` bytes written otherwise, so a stream that keeps the ring busy pays one load of the consumer's
    /// index per 4 KiB.
    @inline(never)
    mutating func rewindIfEmpty(before needed: Int) {
        let mask = UInt64(capacity &- 1)
        let pos = localTail & mask
        if capacity > Self.compactSpan && pos >= UInt64(Self.compactSpan) && UInt64(needed) <= pos {
            cachedHead = cdemi_load_acquire_u64(head)
            if cachedHead == localTail {
                let h = data + Int(pos)
                h.storeBytes(of: UInt64(RecordHeader.lap) << 32, as: UInt64.self)  // length 0, flags lap
                (h + 8).storeBytes(of: 0, as: UInt64.self)
                localTail = (localTail | mask) &+ 1
            }
        }
        rewindCheck = (localTail & ~mask) &+ UInt64(Self.compactSpan)
        if rewindCheck <= localTail { rewindCheck = localTail &+ UInt64(Self.compactSpan) }
    }

    /// The largest fragment payload this ring carries (half the ring, so a fragment always fits once drained).
    var maxFragment: Int { capacity / 2 - RecordHeader.size }

    /// Bytes free now, reloading the consumer's index if the cached one says there is not enough for `needed`.
    @inline(__always)
    mutating func hasRoom(_ needed: Int) -> Bool {
        if capacity &- Int(localTail &- cachedHead) >= needed { return true }
        cachedHead = cdemi_load_acquire_u64(head)
        return capacity &- Int(localTail &- cachedHead) >= needed
    }

    /// Copies `count` bytes from `source` at ring index `at` (wrapping).
    @inline(__always)
    func copyIn(_ source: UnsafeRawPointer, count: Int, at index: UInt64) {
        let pos = Int(index & UInt64(capacity - 1))
        let first = min(count, capacity - pos)
        (data + pos).copyMemory(from: source, byteCount: first)
        if first < count { data.copyMemory(from: source + first, byteCount: count - first) }
    }

    /// True if a record with a payload of `length` bytes written now lies in one piece (does not wrap).
    @inline(__always)
    func fitsUnwrapped(_ length: Int) -> Bool {
        Int(localTail & UInt64(capacity &- 1)) &+ RecordHeader.size &+ length <= capacity
    }

    /// Writes a whole message of `length` bytes from `source` as one record and publishes it: two header stores, the
    /// copy (without a call up to 64 bytes), and one release store of the tail. The caller has checked
    /// ``hasRoom(_:)`` and ``fitsUnwrapped(_:)``.
    @inline(__always)
    mutating func writeSmall(_ source: UnsafeRawPointer, length: Int) {
        let start = localTail
        let h = data + Int(start & UInt64(capacity - 1))
        h.storeBytes(of: UInt64(length), as: UInt64.self)  // fragment length, flags 0
        (h + 8).storeBytes(of: UInt64(length), as: UInt64.self)  // total length
        copyPayload(h + RecordHeader.size, source, length)
        localTail = start &+ UInt64(RecordHeader.size + padded(length))
        cdemi_store_release_u64(tail, localTail)
    }

    /// Writes one record holding `length` bytes of `sga` starting at byte `offset`, and publishes it. The caller has
    /// checked ``hasRoom(_:)`` for `RecordHeader.size + padded(length)`.
    mutating func write(_ sga: ScatterGatherArray, offset: Int, length: Int, total: Int, flags: UInt32) {
        let start = localTail
        let pos = Int(start & UInt64(capacity - 1))
        let h = data + pos
        h.storeBytes(of: UInt32(length), as: UInt32.self)
        (h + 4).storeBytes(of: flags, as: UInt32.self)
        (h + 8).storeBytes(of: UInt64(total), as: UInt64.self)
        var at = start &+ UInt64(RecordHeader.size)
        var skip = offset
        var left = length
        var seg = sga.head?.header
        while let c = seg, left > 0 {
            let n = Int(c.pointee.length)
            if skip >= n {
                skip -= n
            } else {
                let take = min(n - skip, left)
                copyIn(c.pointee.storage.unsafelyUnwrapped + Int(c.pointee.offset) + skip, count: take, at: at)
                at &+= UInt64(take)
                left -= take
                skip = 0
            }
            seg = c.pointee.next
        }
        localTail = start &+ UInt64(RecordHeader.size + padded(length))
        cdemi_store_release_u64(tail, localTail)
    }
}

/// The consumer's side of a ring.
struct RingConsumer {
    static var detached: RingConsumer {
        RingConsumer(head: detachedRingWords, tail: detachedRingWords + 1, data: UnsafeMutableRawPointer(detachedRingWords),
                     capacity: 0, local: 0)
    }

    init(head: UnsafeMutablePointer<UInt64>, tail: UnsafeMutablePointer<UInt64>, data: UnsafeMutableRawPointer,
         capacity: Int, local: UInt64) {
        self.head = head
        self.tail = tail
        self.data = data
        self.capacity = capacity
        localHead = local
        cachedTail = local
    }

    let head: UnsafeMutablePointer<UInt64>
    let tail: UnsafeMutablePointer<UInt64>
    let data: UnsafeMutableRawPointer
    let capacity: Int
    var localHead: UInt64
    var cachedTail: UInt64

    init(head: UnsafeMutablePointer<UInt64>, tail: UnsafeMutablePointer<UInt64>, data: UnsafeMutableRawPointer,
         capacity: Int) {
        self.head = head
        self.tail = tail
        self.data = data
        self.capacity = capacity
        localHead = cdemi_load_acquire_u64(head)
        cachedTail = cdemi_load_acquire_u64(tail)
    }

    /// Goes past a lap record at the head: on at the start of the next lap (published at once).
    @inline(never)
    mutating func skipLap() {
        localHead = (localHead | UInt64(capacity &- 1)) &+ 1
        cdemi_store_release_u64(head, localHead)
    }

    /// True if a record is ready, reloading the producer's index when the cached one says the ring is empty.
    @inline(__always)
    mutating func hasRecord() -> Bool {
        if cachedTail != localHead { return true }
        cachedTail = cdemi_load_acquire_u64(tail)
        return cachedTail != localHead
    }

    /// The header of the next record: (fragment length, flags, total length).
    @inline(__always)
    func peek() -> (length: Int, flags: UInt32, total: Int) {
        let h = data + Int(localHead & UInt64(capacity - 1))
        return (Int(h.load(as: UInt32.self)), (h + 4).load(as: UInt32.self), Int((h + 8).load(as: UInt64.self)))
    }

    /// The next record's header position in the ring (the caller has seen ``hasRecord()``).
    @inline(__always)
    var headPosition: Int { Int(localHead & UInt64(capacity - 1)) }

    /// Copies the payload (not wrapping) of the record at `position` to `destination`, without a call up to 64 bytes,
    /// and moves past the record without publishing the head: the caller publishes it later with ``publishHead()``.
    @inline(__always)
    mutating func consumeSmallUnpublished(at position: Int, length: Int, into destination: UnsafeMutableRawPointer) {
        copyPayload(destination, data + position + RecordHeader.size, length)
        localHead &+= UInt64(RecordHeader.size + padded(length))
    }

    /// Publishes the head (release store).
    @inline(__always)
    func publishHead() { cdemi_store_release_u64(head, localHead) }

    /// Copies the payload of the next record (of `length` bytes) to `destination` and releases the record.
    @inline(__always)
    mutating func consume(length: Int, into destination: UnsafeMutableRawPointer) {
        var at = localHead &+ UInt64(RecordHeader.size)
        var done = 0
        while done < length {
            let pos = Int(at & UInt64(capacity - 1))
            let n = min(length - done, capacity - pos)
            (destination + done).copyMemory(from: data + pos, byteCount: n)
            done += n
            at &+= UInt64(n)
        }
        localHead &+= UInt64(RecordHeader.size + padded(length))
        cdemi_store_release_u64(head, localHead)
    }
}
