/// A growable two-level bitset of runnable task indices.
///
/// `insert` is two ORs; iteration takes whole words out with their bits and walks them with `trailingZeroBitCount`
/// (Lemire's loop), skipping empty words through the summary level.
@usableFromInline
struct ReadySet {
    @usableFromInline var words: UnsafeMutablePointer<UInt64>
    @usableFromInline var summary: UnsafeMutablePointer<UInt64>
    @usableFromInline var wordCount: Int
    @usableFromInline var summaryCount: Int

    init(capacity: Int) {
        wordCount = max(1, (capacity + 63) / 64)
        summaryCount = (wordCount + 63) / 64
        words = .allocate(capacity: wordCount)
        words.initialize(repeating: 0, count: wordCount)
        summary = .allocate(capacity: summaryCount)
        summary.initialize(repeating: 0, count: summaryCount)
    }

    func deallocate() {
        words.deallocate()
        summary.deallocate()
    }

    /// Grows to hold at least `capacity` indices, keeping the set bits.
    mutating func grow(to capacity: Int) {
        let newWords = (capacity + 63) / 64
        guard newWords > wordCount else { return }
        let newSummary = (newWords + 63) / 64
        let w = UnsafeMutablePointer<UInt64>.allocate(capacity: newWords)
        w.initialize(repeating: 0, count: newWords)
        w.update(from: words, count: wordCount)
        let s = UnsafeMutablePointer<UInt64>.allocate(capacity: newSummary)
        s.initialize(repeating: 0, count: newSummary)
        s.update(from: summary, count: summaryCount)
        deallocate()
        words = w
        summary = s
        wordCount = newWords
        summaryCount = newSummary
    }

    @inlinable @inline(__always)
    func insert(_ i: UInt32) {
        let w = Int(i >> 6)
        words[w] |= 1 &<< UInt64(i & 63)
        summary[w >> 6] |= 1 &<< UInt64(w & 63)
    }

    @inlinable @inline(__always)
    func remove(_ i: UInt32) {
        let w = Int(i >> 6)
        words[w] &= ~(1 &<< UInt64(i & 63))
    }

    @inlinable @inline(__always)
    func contains(_ i: UInt32) -> Bool {
        words[Int(i >> 6)] & (1 &<< UInt64(i & 63)) != 0
    }

    @inlinable var isEmpty: Bool {
        for s in 0..<summaryCount where summary[s] != 0 { return false }
        return true
    }

    /// Calls `body` once for each index that was set when its word was reached, clearing it first; indices set while
    /// running are seen on the next call (or later in this one, if their word is not reached yet).
    @inlinable @inline(__always)
    func drain(_ body: (UInt32) -> Void) {
        for s in 0..<summaryCount {
            var sbits = summary[s]
            guard sbits != 0 else { continue }
            summary[s] = 0
            while sbits != 0 {
                let w = s &<< 6 | sbits.trailingZeroBitCount
                sbits &= sbits &- 1
                var bits = words[w]
                words[w] = 0
                while bits != 0 {
                    let b = bits.trailingZeroBitCount
                    bits &= bits &- 1
                    body(UInt32(truncatingIfNeeded: w &<< 6 | b))
                }
            }
        }
    }
}
