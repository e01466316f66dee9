import DemiBuffers
import DemiCore
import DemiInet
import DemiWire
import Testing

/// Fixtures of the fragmentation tests (namespaced: other test files of the target define top-level helpers).
enum FragFixture {
    static let source = IPv4Address(198, 18, 0, 1)
    static let destination = IPv4Address(198, 18, 0, 2)

    static func at(_ ms: Int64) -> Instant { Instant(nanoseconds: ms * 1_000_000) }

    /// A deterministic generator (SplitMix64) for shuffles.
    struct SeededGenerator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static func data(_ n: Int, seed: UInt8 = 0) -> [UInt8] {
        (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 8 &+ Int(seed)) }
    }

    static func header(id: UInt16 = 1, proto: UInt8 = IPProtocol.udp, length: Int = 0) -> IPv4Header {
        var h = IPv4Header(source: source, destination: destination, proto: proto, payloadLength: length)
        h.identification = id
        return h
    }

    /// A buffer holding `bytes`.
    static func buffer(_ pool: BufferPool, _ bytes: [UInt8]) -> DemiBuffer {
        let b = pool.allocate(size: bytes.count)!
        bytes.withUnsafeBytes { _ = b.write($0) }
        return b
    }

    /// A chain of buffers holding `bytes`, split at `cuts`.
    static func chain(_ pool: BufferPool, _ bytes: [UInt8], cuts: [Int]) -> DemiBuffer {
        var parts: [DemiBuffer] = []
        var from = 0
        for c in cuts + [bytes.count] {
            parts.append(buffer(pool, Array(bytes[from..<c])))
            from = c
        }
        return ScatterGatherArray(segments: parts).head!
    }

    /// A hand-made fragment of `data`: bytes `range`, more fragments unless it is the end of `data` (or `more`).
    struct Fragment {
        var header: IPv4Header
        var bytes: [UInt8]
    }

    static func fragment(_ data: [UInt8], _ range: Range<Int>, id: UInt16 = 1, more: Bool? = nil) -> Fragment {
        var h = header(id: id, length: range.count)
        h.dontFragment = false
        h.fragmentOffset = range.lowerBound
        h.moreFragments = more ?? (range.upperBound < data.count)
        return Fragment(header: h, bytes: Array(data[range]))
    }

    /// Cuts `data` into pieces of `step` bytes (a multiple of 8).
    static func fragments(_ data: [UInt8], step: Int, id: UInt16 = 1) -> [Fragment] {
        stride(from: 0, to: data.count, by: step).map { fragment(data, $0..<min($0 + step, data.count), id: id) }
    }

    static func insert(_ r: IPv4Reassembler, _ f: Fragment, now: Instant = .zero) -> DemiBuffer? {
        r.insert(f.header, payload: buffer(r.pool, f.bytes), now: now)
    }

    /// Inserts every fragment; expects exactly the last insertion to complete the datagram, and returns its bytes.
    static func reassemble(_ r: IPv4Reassembler, _ frags: [Fragment]) -> [UInt8]? {
        var out: [UInt8]?
        for (k, f) in frags.enumerated() {
            guard let b = insert(r, f) else { continue }
            #expect(k == frags.count - 1, "completed early")
            #expect(b.headroom == r.pool.defaultHeadroom)
            out = b.array
            b.release()
        }
        return out
    }
}

@Suite struct IPv4FragmentationTests {
    typealias F = FragFixture

    // MARK: - Reassembly

    @Test func inOrderAndReverse() {
        let pool = BufferPool()
        let r = IPv4Reassembler(pool: pool)
        let data = F.data(4000)
        let frags = F.fragments(data, step: 1480)
        #expect(F.reassemble(r, frags) == data)
        #expect(F.reassemble(r, frags.reversed()) == data)
        #expect(r.statistics.reassembled == 2 && r.statistics.fragmentsReceived == 6 && r.statistics.dropped == 0)
        #expect(r.pendingCount == 0 && r.nextDeadline == nil)
        #expect(pool.buffersInUse == 0)
    }

    @Test(arguments: [1, 2, 3, 42, 1234])
    func shuffledWithDuplicates(seed: UInt64) {
        let pool = BufferPool()
        let r = IPv4Reassembler(pool: pool)
        var rng = F.SeededGenerator(state: seed)
        let data = F.data(20_000, seed: UInt8(seed & 0xFF))
        let frags = F.fragments(data, step: 552)
        #expect(F.reassemble(r, frags.shuffled(using: &rng)) == data)

        // Each fragment twice, shuffled: the datagram completes once; duplicates that arrive after it start a new
        // partial datagram, left to time out.
        var doubled = (frags + frags).shuffled(using: &rng)
        var completions = 0
        while let f = doubled.popLast() {
            if let b = F.insert(r, f) {
                #expect(b.array == data)
                b.release()
                completions += 1
            }
        }
        #expect(completions >= 1)
        #expect(r.statistics.dropped == 0)
        #expect(r.expire(now: F.at(60_000)) == r.statistics.timedOut)
        #expect(r.pendingCount == 0)
        #expect(pool.buffersInUse == 0)
    }

    @Test func identicalOverlapsAreAccepted() {
        let pool = BufferPool()
        let r = IPv4Reassembler(pool: pool)
        let data = F.data(100)
        let frags = [F.fragment(data, 8..<48), F.fragment(data, 0..<16), F.fragment(data, 56..<100),
                     F.fragment(data, 0..<8), F.fragment(data, 16..<64)]
        var got: [UInt8]?
        for f in frags {
            if let b = F.insert(r, f) { got = b.array; b.release() }
        }
        #expect(got == data)
        #expect(r.statistics.dropped == 0 && r.statistics.reassembled == 1)
        #expect(pool.buffersInUse == 0)
    }

    @Test func conflictingOverlapDropsTheDatagram() {
        let pool = BufferPool()
        let r = IPv4Reassembler(pool: pool)
        let data = F.data(64)
        #expect(F.insert(r, F.fragment(data, 0..<32)) == nil)
        var evil = F.fragment(data, 24..<64)
        evil.bytes[3] ^= 0xFF  // byte 27 differs
        #expect(F.insert(r, evil) == nil)
        #expect(r.statistics.overlaps == 1 && r.statistics.dropped == 1 && r.pendingCount == 0)
        // The rest of the datagram starts anew and never completes on its own.
        #expect(F.insert(r, F.fragment(data, 32..<64)) == nil)
        #expect(r.pendingCount == 1)
        r.removeAll()
        #expect(pool.buffersInUse == 0)
    }

    @Test func inconsistentEndsDropTheDatagram() {
        let pool = BufferPool()
        let r = IPv4Reassembler(pool: pool)
        let data = F.data(64)
        #expect(F.insert(r, F.fragment(data, 48..<64)) == nil)
        #expect(F.insert(r, F.fragment(data, 8..<40, more: false)) == nil, "a second, different end")
        #expect(r.statistics.malformed == 1 && r.pendingCount == 0)
        #expect(F.insert(r, F.fragment(data, 8..<40, more: false)) == nil)
        #expect(F.insert(r, F.fragment(data, 40..<48, more: true)) == nil, "data beyond the known end")
        #expect(r.statistics.malformed == 2 && r.pendingCount == 0)
        #expect(F.insert(r, F.fragment(data, 16..<48)) == nil)
        #expect(F.insert(r, F.fragment(data, 8..<32, more: false)) == nil, "an end before data already received")
        #expect(r.statistics.malformed == 3 && r.pendingCount == 0)
        #expect(pool.buffersInUse == 0)
    }

    @Test func malformedAndOversizeFragmentsAreRejected() {
        let pool = BufferPool()
        let r = IPv4Reassembler(pool: pool)
        let data = F.data(65_535)
        #expect(F.insert(r, F.fragment(data, 0..<10, more: true)) == nil, "non-last fragment, not a multiple of 8")
        #expect(F.insert(r, F.fragment(data, 8..<8, more: true)) == nil, "empty")
        #expect(r.statistics.malformed == 2 && r.pendingCount == 0)
        #expect(F.insert(r, F.fragment(data, 65_512..<65_520)) == nil, "ends beyond 65 535 - 20")
        #expect(r.statistics.oversize == 1 && r.pendingCount == 0)
        #expect(r.statistics.dropped == 3 && r.statistics.fragmentsReceived == 3)
        // Exactly at the limit is fine.
        let frags = F.fragments(Array(data[0..<65_515]), step: 8192)
        #expect(F.reassemble(r, frags) == Array(data[0..<65_515]))

        var small = ReassemblyConfiguration()
        small.maxDatagramSize = 1020
        let r2 = IPv4Reassembler(pool: pool, configuration: small)
        #expect(F.insert(r2, F.fragment(data, 992..<1008, more: false)) == nil)
        #expect(r2.statistics.oversize == 1)
        #expect(F.reassemble(r2, F.fragments(Array(data[0..<1000]), step: 256)) == Array(data[0..<1000]))
        #expect(pool.buffersInUse == 0)
    }

    @Test func unfragmentedDatagramsPassThrough() {
        let pool = BufferPool()
        let r = IPv4Reassembler(pool: pool)
        let b = F.buffer(pool, F.data(100))
        #expect(r.insert(F.header(length: 100), payload: b, now: .zero) == b)
        #expect(r.statistics.fragmentsReceived == 0)
        b.release()
        #expect(pool.buffersInUse == 0)
    }

    @Test func missingFragmentTimesOut() {
        let pool = BufferPool()
        var c = ReassemblyConfiguration()
        c.timeout = .seconds(30)
        let r = IPv4Reassembler(pool: pool, configuration: c)
        let data = F.data(3000)
        let frags = F.fragments(data, step: 1480)  // 3 fragments; the middle one is lost
        #expect(F.insert(r, frags[0], now: F.at(1_000)) == nil)
        #expect(F.insert(r, frags[2], now: F.at(5_000)) == nil)
        #expect(r.nextDeadline == F.at(31_000), "the timer runs from the first fragment")
        #expect(r.expire(now: F.at(30_999)) == 0)
        var reported: [(IPv4Header, [UInt8])] = []
        #expect(r.expire(now: F.at(31_000)) { h, bytes in reported.append((h, Array(bytes))) } == 1)
        #expect(reported.count == 1)
        #expect(reported.first?.0.fragmentOffset == 0 && reported.first?.0.identification == 1)
        #expect(reported.first?.1 == Array(data[0..<8]), "the first 8 bytes, for ICMP time exceeded")
        #expect(r.statistics.timedOut == 1 && r.pendingCount == 0 && r.nextDeadline == nil)
        #expect(F.insert(r, frags[1], now: F.at(31_001)) == nil, "too late: a new partial datagram")
        #expect(r.nextDeadline == F.at(61_001))
        // No fragment zero: nothing to report.
        reported.removeAll()
        #expect(r.expire(now: F.at(61_001)) { h, bytes in reported.append((h, Array(bytes))) } == 1)
        #expect(reported.isEmpty)
        #expect(pool.buffersInUse == 0)
    }

    @Test func tooManyDatagramsEvictsTheOldest() {
        let pool = BufferPool()
        var c = ReassemblyConfiguration()
        c.maxDatagrams = 4
        let r = IPv4Reassembler(pool: pool, configuration: c)
        let data = F.data(2000)
        for id in 1...5 {
            #expect(F.insert(r, F.fragment(data, 0..<1000, id: UInt16(id)), now: F.at(Int64(id))) == nil)
        }
        #expect(r.statistics.evicted == 1 && r.statistics.dropped == 1 && r.pendingCount == 4)
        #expect(r.nextDeadline == F.at(2) + c.timeout, "datagram 1 is gone")
        for id in 2...5 {
            let b = F.insert(r, F.fragment(data, 1000..<2000, id: UInt16(id)), now: F.at(10))
            #expect(b?.array == data)
            b?.release()
        }
        #expect(F.insert(r, F.fragment(data, 1000..<2000, id: 1), now: F.at(10)) == nil)
        #expect(r.pendingCount == 1)
        #expect(r.statistics.reassembled == 4)
        r.removeAll()
        #expect(pool.buffersInUse == 0)
    }

    @Test func datagramsAreKeyedBySourceDestinationProtocolAndID() {
        let pool = BufferPool()
        let r = IPv4Reassembler(pool: pool)
        let a = F.data(100, seed: 1)
        let b = F.data(100, seed: 2)
        var other = F.fragment(b, 0..<48)
        other.header.proto = IPProtocol.tcp
        #expect(F.insert(r, F.fragment(a, 0..<48)) == nil)
        #expect(F.insert(r, other) == nil)
        #expect(r.pendingCount == 2)
        var otherTail = F.fragment(b, 48..<100)
        otherTail.header.proto = IPProtocol.tcp
        let gotB = F.insert(r, otherTail)
        #expect(gotB?.array == b)
        gotB?.release()
        let gotA = F.insert(r, F.fragment(a, 48..<100))
        #expect(gotA?.array == a)
        gotA?.release()
        #expect(r.statistics.dropped == 0 && pool.buffersInUse == 0)
    }

    @Test func tooManyHolesDropTheDatagram() {
        let pool = BufferPool()
        var c = ReassemblyConfiguration()
        c.maxRangesPerDatagram = 2
        let r = IPv4Reassembler(pool: pool, configuration: c)
        let data = F.data(64)
        #expect(F.insert(r, F.fragment(data, 0..<8)) == nil)
        #expect(F.insert(r, F.fragment(data, 16..<24)) == nil)
        #expect(F.insert(r, F.fragment(data, 8..<16)) == nil, "merges: one range")
        #expect(F.insert(r, F.fragment(data, 32..<40)) == nil)
        #expect(F.insert(r, F.fragment(data, 48..<56)) == nil, "a third range")
        #expect(r.statistics.malformed == 1 && r.pendingCount == 0)
        #expect(pool.buffersInUse == 0)
    }

    @Test func chainedFragmentPayloadsAreCopied() {
        let pool = BufferPool()
        let r = IPv4Reassembler(pool: pool)
        let data = F.data(1000)
        let f0 = F.fragment(data, 0..<504)
        #expect(r.insert(f0.header, payload: F.chain(pool, f0.bytes, cuts: [3, 100]), now: .zero) == nil)
        // An identical overlap compared across segments.
        let f1 = F.fragment(data, 496..<1000)
        let b = r.insert(f1.header, payload: F.chain(pool, f1.bytes, cuts: [1, 9, 300]), now: .zero)
        #expect(b?.array == data)
        b?.release()
        #expect(pool.buffersInUse == 0)
    }

    // MARK: - Fragmentation and round trips

    @Test(arguments: [1500, 576])
    func roundTrip(mtu: Int) throws {
        let pool = BufferPool()
        let r = IPv4Reassembler(pool: pool)
        for (k, size) in [0, 1, 8, 548, 549, 1472, 1473, 1480, 1481, 2960, 8000, 16_300, 65_515].enumerated() {
            for chained in [false, true] {
                let data = F.data(size, seed: UInt8(k))
                let payload = chained && size > 10
                    ? F.chain(pool, data, cuts: [size / 3, size / 3 + 1, size - 5]) : F.buffer(pool, data)
                var h = F.header(id: UInt16(k * 2 + (chained ? 1 : 0)), length: size)
                h.timeToLive = 17
                var packets: [DemiBuffer] = []
                let ok = IPv4Fragmenter.fragment(payload: payload, header: h, mtu: mtu, pool: pool) {
                    packets.append($0)
                }
                #expect(ok)
                payload.releaseChain()

                #expect(packets.count == max(1, (size + (mtu - 20) / 8 * 8 - 1) / ((mtu - 20) / 8 * 8)))
                var expectedOffset = 0
                var result: [UInt8]?
                for (i, p) in packets.enumerated() {
                    #expect(p.count <= mtu)
                    #expect(p.headroom >= 14, "room for the link header")
                    let packet = try IPv4Packet(checking: UnsafeRawBufferPointer(p.bytes))
                    #expect(packet.checksumIsValid && packet.totalLength == p.count)
                    let ph = try IPv4Header.parse(stripping: p)
                    let last = i == packets.count - 1
                    #expect(ph.fragmentOffset == expectedOffset)
                    #expect(ph.moreFragments == !last)
                    #expect(last || p.count % 8 == 0)
                    #expect(packets.count == 1 ? ph.dontFragment : !ph.dontFragment)
                    #expect(ph.identification == h.identification && ph.timeToLive == 17 && ph.proto == h.proto)
                    expectedOffset += p.count
                    if let b = r.insert(ph, payload: p, now: .zero) {
                        #expect(last)
                        result = b.array
                        b.release()
                    }
                }
                #expect(expectedOffset == size)
                #expect(result == data, "size \(size), mtu \(mtu), chained \(chained)")
            }
        }
        #expect(r.pendingCount == 0 && r.statistics.dropped == 0)
        #expect(pool.buffersInUse == 0)
    }

    @Test func fragmentingAFragmentKeepsOffsetsAndMoreFragments() throws {
        let pool = BufferPool()
        let data = F.data(3000)
        var h = F.header(length: 3000)
        h.fragmentOffset = 8000
        h.moreFragments = true
        let payload = F.buffer(pool, data)
        var headers: [IPv4Header] = []
        #expect(IPv4Fragmenter.fragment(payload: payload, header: h, mtu: 1500, pool: pool) { p in
            headers.append(try! IPv4Header.parse(stripping: p))
            p.release()
        })
        payload.release()
        #expect(headers.map(\.fragmentOffset) == [8000, 9480, 10_960])
        #expect(headers.allSatisfy { $0.moreFragments })
        #expect(pool.buffersInUse == 0)
    }

    @Test func fragmenterRefusesImpossibleRequests() {
        let pool = BufferPool()
        let payload = F.buffer(pool, F.data(100))
        var emitted = 0
        func count(_ b: DemiBuffer) { b.release(); emitted += 1 }
        #expect(!IPv4Fragmenter.fragment(payload: payload, header: F.header(), mtu: 27, pool: pool, emit: count))
        var far = F.header()
        far.fragmentOffset = 65_440
        #expect(!IPv4Fragmenter.fragment(payload: payload, header: far, mtu: 1500, pool: pool, emit: count))
        #expect(emitted == 0)
        payload.release()
        let big = pool.allocate(size: 65_516)!
        #expect(!IPv4Fragmenter.fragment(payload: big, header: F.header(), mtu: 1500, pool: pool, emit: count))
        big.release()
        #expect(emitted == 0 && pool.buffersInUse == 0)
    }
}
