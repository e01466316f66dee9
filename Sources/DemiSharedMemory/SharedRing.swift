import CDemiLinux
import DemiBuffers

/// One direction of a pipe: a single-producer single-consumer byte ring in shared memory.
///
/// Messages are records: a 16-byte header followed by the payload, each record starting on a cache line (a multiple of
/// 64 bytes). The header's first word is the record's *stamp*: its index in the ring XORed with the pipe's key (a
/// random 64-bit value with the top bit set and the low 6 bits clear, from the control block), with the record's flags
/// in the low 6 bits; then the fragment's length and the whole message's length (32 bits each). The producer writes
/// the rest of the record first and the stamp last, with a release store, so the stamp publishes the record: the
/// consumer finds the next record by loading the word at its own index, with no producer index to read. A message
/// detected that way costs one cache-line transfer before its bytes can be read, not two (the index's line, then the
/// record's), and the line is the one holding the message's first 48 bytes. A stale word from an earlier lap carries
/// another index, and zeroed memory never matches (the key's top bit). The consumer owns `head`, on a line of its
/// own; the producer keeps a private copy, reloading it (acquire) only when the copy says the ring is full. A record's
/// payload may wrap around the end of the ring; its header never does (records start on lines and the ring is a power
/// of two of at least 4 KiB). Indices grow without bound (64-bit); the position in the ring is `index & mask`.
///
/// A producer that finds the ring empty past its first ``RingProducer/compactSpan`` bytes rewinds to its start: it
/// writes a *lap* record (no payload, flag ``RecordHeader/lap``) that tells the consumer to go on at the start of the
/// next lap, so a ping-pong keeps to the first few KiB of the ring (a few dozen cache lines, as the C ring's slots)
/// instead of sweeping the whole ring through both cores' caches. The whole ring is still there for bursts. The lap
/// record's stamp is stored after the record that follows it at the start, so a consumer that sees it finds that
/// record ready.
struct RecordHeader {
    static let size = 16
    /// Records start at multiples of this: a cache line, so the line the consumer polls is written once per record.
    static let alignment = 64
    /// More fragments of the same message follow.
    static let more: UInt32 = 1
    /// No payload: the next record starts at the beginning of the next lap of the ring.
    static let lap: UInt32 = 2
    /// The stamp's bits that hold the flags.
    static let flagBits: UInt64 = 63
}

/// The bytes a record with a payload of `n` bytes takes in the ring: header and payload, rounded up to a cache line.
@inline(__always)
func recordSize(_ n: Int) -> Int { (RecordHeader.size &+ n &+ (RecordHeader.alignment &- 1)) & ~(RecordHeader.alignment &- 1) }

/// The largest fragment payload a ring of `capacity` bytes carries: half the ring less a header, so a fragment always
/// fits once the ring is drained.
@inline(__always)
func maxFragment(ofRing capacity: Int) -> Int { capacity / 2 - RecordHeader.size }

/// The pipe key's form: the top bit set (zeroed memory is never a stamp), the flag bits clear.
@inline(__always)
func ringKey(_ random: UInt64) -> UInt64 { (random | 1 << 63) & ~RecordHeader.flagBits }

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

/// A zeroed stand-in ring for queues that have none (memory queues): never written, so any use sees it empty/full
/// (its key's top bit is set, so the zeroed word is not a stamp).
nonisolated(unsafe) let detachedRingWords: UnsafeMutablePointer<UInt64> = {
    let p = UnsafeMutablePointer<UInt64>.allocate(capacity: 2)
    p.initialize(repeating: 0, count: 2)
    return p
}()

/// The producer's side of a ring.
struct RingProducer {
    static var detached: RingProducer {
        RingProducer(head: detachedRingWords + 1, data: UnsafeMutableRawPointer(detachedRingWords), capacity: 0,
                     key: ringKey(0), local: 0)
    }

    /// A ring whose next record has index `local` (0 for a new pipe: the ring starts empty there).
    /// `shortMessage` is the longest message the short push takes (at most ``maxFragment`` are).
    init(head: UnsafeMutablePointer<UInt64>, data: UnsafeMutableRawPointer, capacity: Int, key: UInt64,
         local: UInt64 = 0, shortMessage: Int = 0) {
        self.head = head
        self.data = data
        self.capacity = capacity
        mask = UInt64(truncatingIfNeeded: capacity &- 1)
        maxFragment = DemiSharedMemory.maxFragment(ofRing: capacity)
        shortLength = max(0, min(shortMessage, maxFragment))
        self.key = key
        localTail = local
        cachedHead = local
        rewindCheck = local &+ UInt64(Self.compactSpan)
        updateShortLimit()
    }

    /// A small message is written at the start of the ring, rather than further on, if the ring is empty by then.
    static let compactSpan = 4096

    let head: UnsafeMutablePointer<UInt64>
    let data: UnsafeMutableRawPointer
    let capacity: Int
    /// `capacity - 1`: a ring index's position is `index & mask`.
    let mask: UInt64
    /// ``maxFragment(ofRing:)`` of this ring.
    let maxFragment: Int
    /// The longest message ``canWriteSmall(_:)`` takes: the libOS's short-message limit, at most ``maxFragment``; 0
    /// for a detached ring.
    let shortLength: Int
    let key: UInt64
    /// The index of the next record (private: the stamps publish the records).
    var localTail: UInt64
    var cachedHead: UInt64
    /// The tail index from which the next push looks whether it can rewind (see ``rewindIfEmpty()``).
    var rewindCheck: UInt64
    /// A lap record whose stamp is stored after the next record (see ``rewindIfEmpty(before:)``): its position and
    /// stamp, or a stamp of 0 for none.
    var lapPosition = 0
    var lapStamp: UInt64 = 0
    /// The index a short record may end at, at most (see ``canWriteSmall(_:)``): the least of the room the cached
    /// head leaves, the end of the current lap, and the rewind check (``rewindCheck`` + 63: a record, at least 64
    /// bytes, ends there only if it starts before the check). Kept up to date wherever those change, so the short
    /// push makes one comparison where it made four; 0 for a detached ring. Stale only on the safe side: a head the
    /// consumer has moved since makes the short path give way to the general one, which reloads it.
    var shortLimit: UInt64 = 0

    @inline(__always)
    mutating func updateShortLimit() {
        let c = UInt64(truncatingIfNeeded: capacity)
        shortLimit = min(cachedHead &+ c, (localTail & ~mask) &+ c, rewindCheck &+ 63)
    }

    /// True if a small record of `length` payload bytes can be written now: in one piece (header and payload before
    /// the end of the ring), with room by the cached head, no rewind due (the general path rewinds, once per
    /// ``compactSpan`` bytes, so this one makes no call) and `length` from 1 to ``shortLength``. Records start on
    /// lines and the ring is a whole number of them, so a header and payload end before the ring's end exactly when
    /// the record rounded up to its line does. False also where the general path would still write at once (a head
    /// the consumer has moved since it was cached; a record longer than a line that would pass the rewind check):
    /// that path does.
    @inline(__always)
    func canWriteSmall(_ length: Int) -> Bool {
        UInt(bitPattern: length &- 1) < UInt(bitPattern: shortLength)
            && localTail &+ UInt64(truncatingIfNeeded: recordSize(length)) <= shortLimit
    }

    /// Rewinds if a rewind is due and the ring is empty (see ``rewindIfEmpty(before:)``), for a record of `needed`
    /// bytes that the caller writes next.
    @inline(__always)
    mutating func rewindIfDue(before needed: Int) {
        if localTail >= rewindCheck { rewindIfEmpty(before: needed) }
    }

    /// Past the first ``compactSpan`` bytes of a lap, with the ring empty (everything written has been consumed):
    /// writes a lap record and moves the tail to the start of the next lap. The lap record's stamp is not stored
    /// here: ``write(_:offset:length:total:flags:)`` stores it after the caller's next record, of `needed` bytes, so a
    /// consumer that sees the lap finds that record ready at the start. So it rewinds only if that record fits in what
    /// the lap record leaves free (the bytes before the rewind point, until the consumer passes it): a record that did
    /// not would wait for room behind a lap record the consumer cannot see. Looked at once per ``compactSpan`` bytes
    /// written otherwise, so a stream that keeps the ring busy pays one load of the consumer's index per 4 KiB.
    @inline(never)
    mutating func rewindIfEmpty(before needed: Int) {
        let pos = localTail & mask
        if capacity > Self.compactSpan && pos >= UInt64(Self.compactSpan) && UInt64(needed) <= pos {
            cachedHead = cdemi_load_acquire_u64(head)
            if cachedHead == localTail {
                (data + Int(pos) + 8).storeBytes(of: 0, as: UInt64.self)  // lengths 0
                lapPosition = Int(pos)
                lapStamp = (localTail ^ key) | UInt64(RecordHeader.lap)
                localTail = (localTail | mask) &+ 1
            }
        }
        rewindCheck = (localTail & ~mask) &+ UInt64(Self.compactSpan)
        if rewindCheck <= localTail { rewindCheck = localTail &+ UInt64(Self.compactSpan) }
        updateShortLimit()
    }

    /// Bytes free now, reloading the consumer's index if the cached one says there is not enough for `needed`.
    @inline(__always)
    mutating func hasRoom(_ needed: Int) -> Bool {
        if capacity &- Int(truncatingIfNeeded: localTail &- cachedHead) >= needed { return true }
        cachedHead = cdemi_load_acquire_u64(head)
        updateShortLimit()
        return capacity &- Int(truncatingIfNeeded: localTail &- cachedHead) >= needed
    }

    /// Copies `count` bytes from `source` at ring index `at` (wrapping).
    @inline(__always)
    func copyIn(_ source: UnsafeRawPointer, count: Int, at index: UInt64) {
        let pos = Int(truncatingIfNeeded: index & mask)
        let first = min(count, capacity - pos)
        (data + pos).copyMemory(from: source, byteCount: first)
        if first < count { data.copyMemory(from: source + first, byteCount: count - first) }
    }

    /// Writes a whole message of `length` bytes from `source` as one record and publishes it: one store of the
    /// lengths, the copy (without a call up to 64 bytes), and the release store of the stamp. The caller has checked
    /// ``canWriteSmall(_:)`` (so no lap record is pending: no rewind was due).
    @inline(__always)
    mutating func writeSmall(_ source: UnsafeRawPointer, length: Int) {
        let start = localTail
        let h = data + Int(truncatingIfNeeded: start & mask)
        (h + 8).storeBytes(of: UInt64(UInt32(truncatingIfNeeded: length)) &* 0x1_0000_0001, as: UInt64.self)
        copyPayload(h + RecordHeader.size, source, length)
        localTail = start &+ UInt64(recordSize(length))
        publish(start ^ key, at: h)
    }

    /// Writes one record holding `length` bytes of `sga` starting at byte `offset`, and publishes it (and then a lap
    /// record that ``rewindIfEmpty(before:)`` left pending). The caller has checked ``hasRoom(_:)`` for
    /// `recordSize(length)`; `total` is at most `UInt32.max`.
    mutating func write(_ sga: ScatterGatherArray, offset: Int, length: Int, total: Int, flags: UInt32) {
        let start = localTail
        let pos = Int(truncatingIfNeeded: start & mask)
        let h = data + pos
        (h + 8).storeBytes(of: UInt64(UInt32(truncatingIfNeeded: length)) | UInt64(UInt32(truncatingIfNeeded: total)) << 32,
                           as: UInt64.self)
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
        localTail = start &+ UInt64(recordSize(length))
        publish((start ^ key) | UInt64(flags), at: h)
        if lapStamp != 0 {
            publish(lapStamp, at: data + lapPosition)
            lapStamp = 0
        }
        updateShortLimit()  // (the record may have taken the tail into the next lap)
    }

    /// Stores a record's stamp (release): the record at `header` is the consumer's from here on.
    @inline(__always)
    func publish(_ stamp: UInt64, at header: UnsafeMutableRawPointer) {
        cdemi_store_release_u64(header.assumingMemoryBound(to: UInt64.self), stamp)
    }
}

/// The consumer's side of a ring.
struct RingConsumer {
    static var detached: RingConsumer {
        RingConsumer(head: detachedRingWords + 1, data: UnsafeMutableRawPointer(detachedRingWords), capacity: 0,
                     key: ringKey(0), local: 0)
    }

    /// A ring whose next record has index `local` (0 for a new pipe: the ring starts empty there).
    init(head: UnsafeMutablePointer<UInt64>, data: UnsafeMutableRawPointer, capacity: Int, key: UInt64,
         local: UInt64 = 0) {
        self.head = head
        self.data = data
        self.capacity = capacity
        mask = UInt64(truncatingIfNeeded: capacity &- 1)
        self.key = key
        localHead = local
    }

    let head: UnsafeMutablePointer<UInt64>
    let data: UnsafeMutableRawPointer
    let capacity: Int
    /// `capacity - 1`: a ring index's position is `index & mask`.
    let mask: UInt64
    let key: UInt64
    var localHead: UInt64

    /// ``maxFragment(ofRing:)`` of this ring: a longer fragment is a lie.
    var maxFragment: Int { DemiSharedMemory.maxFragment(ofRing: capacity) }

    /// The stamp word of the next record (not yet written while the ring is empty).
    @inline(__always)
    var stampWord: UnsafeMutablePointer<UInt64> {
        (data + Int(truncatingIfNeeded: localHead & mask)).assumingMemoryBound(to: UInt64.self)
    }

    /// The stamp the next record carries once written (flag bits clear).
    @inline(__always)
    var expectedStamp: UInt64 { localHead ^ key }

    /// Goes past a lap record at the head: on at the start of the next lap (published at once).
    @inline(never)
    mutating func skipLap() {
        localHead = (localHead | mask) &+ 1
        cdemi_store_release_u64(head, localHead)
    }

    /// True if the next record is ready: its stamp is there (acquire), so the rest of it is too.
    @inline(__always)
    func hasRecord() -> Bool {
        cdemi_load_acquire_u64(stampWord) & ~RecordHeader.flagBits == expectedStamp
    }

    /// The header of the next record (the caller has seen ``hasRecord()``): (fragment length, flags, total length).
    @inline(__always)
    func peek() -> (length: Int, flags: UInt32, total: Int) { header(at: headPosition) }

    /// The header of the record at ring position `position`, whose stamp the caller has seen: (fragment length,
    /// flags, total length).
    @inline(__always)
    func header(at position: Int) -> (length: Int, flags: UInt32, total: Int) {
        let l = lengths(at: position)
        return (Int(UInt32(truncatingIfNeeded: l)), flags(at: position), Int(l >> 32))
    }

    /// The flags of the record at ring position `position`, whose stamp the caller has seen.
    @inline(__always)
    func flags(at position: Int) -> UInt32 {
        UInt32(truncatingIfNeeded: (data + position).load(as: UInt64.self) & RecordHeader.flagBits)
    }

    /// The lengths word of the record at ring position `position`, whose stamp the caller has seen: the fragment's
    /// length in the low 32 bits, the whole message's in the high 32.
    @inline(__always)
    func lengths(at position: Int) -> UInt64 { (data + position + 8).load(as: UInt64.self) }

    /// The length of the message in the record at ring position `position` (whose stamp the caller has seen) if the
    /// record holds all of it (its fragment's length is the message's), else nil.
    @inline(__always)
    func wholeMessageLength(at position: Int) -> Int? {
        let l = lengths(at: position)
        let fragment = UInt32(truncatingIfNeeded: l)
        return UInt32(truncatingIfNeeded: l >> 32) == fragment ? Int(fragment) : nil
    }

    /// The next record's header position in the ring (the caller has seen ``hasRecord()``).
    @inline(__always)
    var headPosition: Int { Int(truncatingIfNeeded: localHead & mask) }

    /// Copies the payload (not wrapping) of the record at `position` to `destination`, without a call up to 64 bytes,
    /// and moves past the record without publishing the head: the caller publishes it later with ``publishHead()``.
    @inline(__always)
    mutating func consumeSmallUnpublished(at position: Int, length: Int, into destination: UnsafeMutableRawPointer) {
        copyPayload(destination, data + position + RecordHeader.size, length)
        localHead &+= UInt64(recordSize(length))
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
            let pos = Int(truncatingIfNeeded: at & mask)
            let n = min(length - done, capacity - pos)
            (destination + done).copyMemory(from: data + pos, byteCount: n)
            done += n
            at &+= UInt64(n)
        }
        localHead &+= UInt64(recordSize(length))
        cdemi_store_release_u64(head, localHead)
    }
}
