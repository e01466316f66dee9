import DemiBuffers
import DemiCore
@testable import DemiWire
import Testing

func hex(_ s: String) -> [UInt8] {
    var out: [UInt8] = []
    var it = s.filter { $0 != " " }.makeIterator()
    while let a = it.next(), let b = it.next() { out.append(UInt8(String([a, b]), radix: 16)!) }
    return out
}

/// Runs `body` over a copy of `bytes` (typed throws end to end).
func withBytes<T>(_ bytes: [UInt8], _ body: (UnsafeRawBufferPointer) throws(WireError) -> T) throws(WireError) -> T {
    let p = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 8)
    defer { p.deallocate() }
    p.copyBytes(from: bytes)
    return try body(UnsafeRawBufferPointer(rebasing: p[0..<bytes.count]))
}

let alice = IPv4Address(198, 18, 0, 1)
let bob = IPv4Address(198, 18, 0, 2)

/// Calls `body` with every proper prefix of `bytes`: parsers must reject each one with an error, never crash.
func everyTruncation(_ bytes: [UInt8], _ body: (UnsafeRawBufferPointer) throws -> Void) {
    for n in 0..<bytes.count {
        var threw = false
        bytes.withUnsafeBytes { b in
            do { try body(UnsafeRawBufferPointer(rebasing: b[0..<n])) } catch { threw = true }
        }
        #expect(threw, "a \(n)-byte prefix must be rejected")
    }
}

@Suite struct ChecksumTests {
    @Test func rfc1071Example() {
        let b: [UInt8] = [0x00, 0x01, 0xF2, 0x03, 0xF4, 0xF5, 0xF6, 0xF7]
        b.withUnsafeBytes { #expect(InternetChecksum.sum($0) == 0xDDF2) }
        b.withUnsafeBytes { #expect(InternetChecksum.compute($0) == 0x220D) }
        [UInt8]([0xAB]).withUnsafeBytes { #expect(InternetChecksum.sum($0) == 0xAB00, "odd length pads with zero") }
    }

    /// The word-at-a-time sum against the definition (16-bit big-endian words, a last odd byte padded), for every
    /// length to 300 at every alignment to 8 and with a carry-heavy initial value: long runs of 0xFF stress the
    /// end-around carries.
    @Test func wideSumMatchesDefinition() {
        func reference(_ b: ArraySlice<UInt8>, initial: UInt32) -> UInt32 {
            var s = UInt64(initial)
            var i = b.startIndex
            while i < b.endIndex {
                s += UInt64(b[i]) << 8 | (i + 1 < b.endIndex ? UInt64(b[i + 1]) : 0)
                i += 2
            }
            while s >> 16 != 0 { s = (s & 0xFFFF) + (s >> 16) }
            return UInt32(s)
        }
        var rng = UInt64(99)
        func next() -> UInt8 { rng = rng &* 6364136223846793005 &+ 1442695040888963407; return UInt8(rng >> 56) }
        let random = (0..<320).map { _ in next() }
        let ones = [UInt8](repeating: 0xFF, count: 320)
        for data in [random, ones] {
            for offset in 0..<8 {
                for length in 0...300 {
                    let slice = data[offset..<offset + length]
                    for initial: UInt32 in [0, 0xFFFF, 0x1_2345] {
                        let got = slice.withUnsafeBytes { InternetChecksum.sum($0, initial: initial) }
                        let want = reference(slice, initial: initial)
                        // 0x0000 and 0xFFFF are the same value in ones' complement.
                        #expect(got == want || (got ^ want) == 0xFFFF, "length \(length) offset \(offset)")
                    }
                }
            }
        }
    }

    @Test func incrementalUpdateMatchesRecomputation() {
        var rng = UInt64(12345)
        func next() -> UInt64 { rng = rng &* 6364136223846793005 &+ 1442695040888963407; return rng >> 33 }
        for _ in 0..<500 {
            var words = (0..<16).map { _ in UInt16(truncatingIfNeeded: next()) }
            let bytes = { (w: [UInt16]) in w.flatMap { [UInt8($0 >> 8), UInt8(truncatingIfNeeded: $0)] } }
            let before = bytes(words).withUnsafeBytes { InternetChecksum.compute($0) }
            let k = Int(next() % 16)
            let old = words[k]
            words[k] = UInt16(truncatingIfNeeded: next())
            let after = bytes(words).withUnsafeBytes { InternetChecksum.compute($0) }
            let updated = InternetChecksum.update(before, old: old, new: words[k])
            // 0x0000 and 0xFFFF are the same value in ones' complement.
            #expect(updated == after || (updated ^ after) == 0xFFFF)
        }
    }
}

@Suite struct EthernetARPTests {
    @Test func ethernetRoundTripAndVLAN() throws {
        let h = EthernetHeader(destination: .broadcast, source: MACAddress(2, 0, 0, 0, 0, 1), etherType: EtherType.arp)
        var out = [UInt8](repeating: 0, count: 14)
        out.withUnsafeMutableBytes { h.emit($0) }
        #expect(out == hex("ffffffffffff020000000001") + [0x08, 0x06])
        let (p, n) = try withBytes(out) { b throws(WireError) in try EthernetHeader.parse(b) }
        #expect(p == h && n == 14)
        // One 802.1Q tag: the inner type and the tag are reported; two tags are tolerated; three are not.
        let tagged = hex("ffffffffffff020000000001") + hex("8100") + hex("0064") + hex("0800")
        let (t, tn) = try withBytes(tagged) { b throws(WireError) in try EthernetHeader.parse(b) }
        #expect(t.etherType == EtherType.ipv4 && t.vlanTag == 100 && tn == 18)
        let qinq = hex("ffffffffffff020000000001") + hex("88a8000a") + hex("81000064") + hex("0800")
        #expect(try withBytes(qinq) { b throws(WireError) in try EthernetHeader.parse(b) }.1 == 22)
        let triple = hex("ffffffffffff020000000001") + hex("88a8000a81000064810000010800")
        #expect(throws: WireError.unsupported) { try withBytes(triple) { b throws(WireError) in try EthernetHeader.parse(b) } }
        everyTruncation(tagged) { _ = try EthernetHeader.parse($0) }
        var v = t
        v.vlanTag = 100
        var vout = [UInt8](repeating: 0, count: 18)
        vout.withUnsafeMutableBytes { v.emit($0) }
        #expect(vout == tagged)
    }

    @Test func arpRoundTripAndRejections() throws {
        let a = ARPPacket(operation: .request, senderMAC: MACAddress(2, 0, 0, 0, 0, 1), senderIP: alice,
                          targetMAC: .zero, targetIP: bob)
        var out = [UInt8](repeating: 0, count: 28)
        out.withUnsafeMutableBytes { a.emit($0) }
        #expect(out == hex("0001080006040001020000000001c6120001000000000000c6120002"))
        #expect(try withBytes(out) { b throws(WireError) in try ARPPacket.parse(b) } == a)
        everyTruncation(out) { _ = try ARPPacket.parse($0) }
        var ipv6 = out
        ipv6[2] = 0x86; ipv6[3] = 0xDD
        #expect(throws: WireError.unsupported) { try withBytes(ipv6) { b throws(WireError) in try ARPPacket.parse(b) } }
        var op = out
        op[7] = 9
        #expect(throws: WireError.unsupported) { try withBytes(op) { b throws(WireError) in try ARPPacket.parse(b) } }
    }
}

@Suite struct IPv4Tests {
    // A textbook header: 192.168.0.1 -> 192.168.0.199, UDP, total length 115, DF, TTL 64, checksum 0xb861.
    let known = hex("4500007300004000401 1b861c0a80001c0a800c7")

    @Test func parsesAKnownHeader() throws {
        let packet = known + [UInt8](repeating: 0, count: 115 - 20) + [0xEE, 0xEE]  // trailing padding
        try packet.withUnsafeBytes { b in
            let p = try IPv4Packet(checking: b)
            #expect(p.checksumIsValid)
            #expect(p.totalLength == 115 && p.headerLength == 20 && p.payload.count == 95)
            #expect(p.proto == IPProtocol.udp && p.timeToLive == 64 && p.dontFragment && !p.isFragment)
            #expect(p.source == IPv4Address(192, 168, 0, 1) && p.destination == IPv4Address(192, 168, 0, 199))
        }
    }

    @Test func emitsWhatItParses() throws {
        var h = IPv4Header(source: alice, destination: bob, proto: IPProtocol.tcp, payloadLength: 4)
        h.identification = 0x1234
        var out = [UInt8](repeating: 0, count: 24)
        out.withUnsafeMutableBytes { h.emit($0) }
        try out.withUnsafeBytes { b in
            let p = try IPv4Packet(checking: b)
            #expect(p.checksumIsValid)
            #expect(IPv4Header.parse(p) == h)
        }
    }

    @Test func optionsAreSkippedAndFragmentsReported() throws {
        // IHL 6 (one 4-byte option: NOP NOP NOP EOL), MF set, offset 185*8.
        var h = hex("4600001c0000 20b9 40 11 0000 c6120001 c6120002")
            + [1, 1, 1, 0] + [UInt8](repeating: 7, count: 4)
        let c = h.withUnsafeBytes { InternetChecksum.compute(UnsafeRawBufferPointer(rebasing: $0[0..<24])) }
        h[10] = UInt8(c >> 8); h[11] = UInt8(c & 0xFF)
        try h.withUnsafeBytes { b in
            let p = try IPv4Packet(checking: b)
            #expect(p.checksumIsValid && p.headerLength == 24 && p.options.count == 4)
            #expect(p.payload.count == 4 && p.isFragment && p.moreFragments && p.fragmentOffset == 1480)
        }
    }

    @Test func rejectsMalformedHeaders() {
        everyTruncation(known) { _ = try IPv4Packet(checking: $0) }
        func check(_ bytes: [UInt8], _ e: WireError) {
            #expect(throws: e) { try withBytes(bytes) { b throws(WireError) in _ = try IPv4Packet(checking: b) } }
        }
        var v6 = known; v6[0] = 0x65
        check(v6, .unsupported)
        var ihl = known; ihl[0] = 0x44
        check(ihl + [UInt8](repeating: 0, count: 95), .badLength)
        check(known, .truncated)  // total length 115 > 20 bytes present
        var short = known; short[2] = 0; short[3] = 10
        check(short, .badLength)
    }

    @Test func parseAndStripAndPrepend() throws {
        let pool = BufferPool()
        let b = try #require(pool.allocate(size: 4))
        b.bytes.copyBytes(from: [1, 2, 3, 4])
        let h = IPv4Header(source: alice, destination: bob, proto: IPProtocol.udp, payloadLength: 4)
        #expect(h.emit(prependingTo: b))
        let eth = EthernetHeader(destination: .broadcast, source: MACAddress(2, 0, 0, 0, 0, 1), etherType: EtherType.ipv4)
        #expect(eth.emit(prependingTo: b))
        #expect(b.count == 14 + 20 + 4)
        #expect(try EthernetHeader.parse(stripping: b) == eth)
        #expect(try IPv4Header.parse(stripping: b) == h)
        #expect(b.array == [1, 2, 3, 4])
        b.release()
        // A corrupted header checksum is rejected (unless offloaded).
        let c = try #require(pool.allocate(size: 20))
        IPv4Header(source: alice, destination: bob, proto: 17, payloadLength: 0).emit(c.bytes)
        c.bytes[8] ^= 1
        #expect(throws: WireError.badChecksum) { try IPv4Header.parse(stripping: c) }
        #expect(throws: Never.self) { try IPv4Header.parse(stripping: c, checksumOffload: true) }
        c.release()
    }
}

@Suite struct ICMPUDPTests {
    @Test func icmpEchoRoundTrip() throws {
        var m = [UInt8](repeating: 0, count: 8) + Array("ping".utf8)
        let h = ICMPv4Header.echo(reply: false, identifier: 7, sequence: 9)
        m.withUnsafeMutableBytes { h.emit($0) }
        let p = try withBytes(m) { b throws(WireError) in try ICMPv4Header.parse(b) }
        #expect(p == h && p.identifier == 7 && p.sequence == 9)
        m[9] ^= 0xFF
        #expect(throws: WireError.badChecksum) { try withBytes(m) { b throws(WireError) in try ICMPv4Header.parse(b) } }
        everyTruncation(Array(m[0..<8])) { _ = try ICMPv4Header.parse($0) }
    }

    @Test func udpKnownDatagram() throws {
        let d = hex("13881770000ae0506869")  // 5000 -> 6000, "hi", checksum from an independent implementation
        let h = try withBytes(d) { b throws(WireError) in try UDPHeader.parse(b, source: alice, destination: bob) }
        #expect(h.sourcePort == 5000 && h.destinationPort == 6000 && h.payloadLength == 2)
        var out = [UInt8](repeating: 0, count: 8) + Array("hi".utf8)
        out.withUnsafeMutableBytes { UDPHeader(sourcePort: 5000, destinationPort: 6000, payloadLength: 2).emit($0, source: alice, destination: bob) }
        #expect(out == d)
        var bad = d
        bad[8] ^= 1
        #expect(throws: WireError.badChecksum) { try withBytes(bad) { b throws(WireError) in try UDPHeader.parse(b, source: alice, destination: bob) } }
        var none = bad
        none[6] = 0; none[7] = 0
        #expect(throws: Never.self) { try withBytes(none) { b throws(WireError) in try UDPHeader.parse(b, source: alice, destination: bob) } }
        var long = d
        long[5] = 11
        #expect(throws: WireError.truncated) { try withBytes(long) { b throws(WireError) in try UDPHeader.parse(b, source: alice, destination: bob) } }
        everyTruncation(Array(d[0..<8])) { _ = try UDPHeader.parse($0, source: alice, destination: bob) }
    }
}

@Suite struct TCPTests {
    // A SYN laid out as Linux sends it: MSS 1460, SACK-permitted, timestamps, NOP, window scale 7.
    let syn = hex("9c400050000003e800000000a002faf0f0350000020405b40402080a000030390000000001030307")

    @Test func parsesALinuxStyleSYN() throws {
        let (h, n) = try withBytes(syn) { b throws(WireError) in try TCPHeader.parse(b, source: alice, destination: bob) }
        #expect(n == 40)
        #expect(h.sourcePort == 40000 && h.destinationPort == 80 && h.sequence == TCPSequence(1000))
        #expect(h.flags == .syn && h.window == 64240)
        #expect(h.options.maximumSegmentSize == 1460 && h.options.sackPermitted && h.options.windowScale == 7)
        #expect(h.options.timestamp?.value == 12345 && h.options.timestamp?.echo == 0)
    }

    @Test func emitsWhatItParses() throws {
        var h = TCPHeader(sourcePort: 1, destinationPort: 2, sequence: TCPSequence(0xFFFF_FFF0),
                          acknowledgment: TCPSequence(77), flags: [.ack, .psh], window: 512)
        h.options.timestamp = (1, 2)
        h.options.addSACK(SACKBlock(left: TCPSequence(100), right: TCPSequence(200)))
        h.options.addSACK(SACKBlock(left: TCPSequence(300), right: TCPSequence(400)))
        #expect(h.encodedLength % 4 == 0 && h.encodedLength <= 60)
        var seg = [UInt8](repeating: 0, count: h.encodedLength) + Array("data".utf8)
        seg.withUnsafeMutableBytes { h.emit($0, source: alice, destination: bob) }
        let (p, n) = try withBytes(seg) { b throws(WireError) in try TCPHeader.parse(b, source: alice, destination: bob) }
        #expect(p == h && n == h.encodedLength)
        #expect(p.options.sackBlocks.count == 2)
        // Options never exceed 40 bytes: with timestamps, at most 3 of 4 SACK blocks go out.
        var full = TCPOptions()
        full.timestamp = (1, 2)
        for k in 0..<4 { full.addSACK(SACKBlock(left: TCPSequence(UInt32(k * 10)), right: TCPSequence(UInt32(k * 10 + 5)))) }
        #expect(full.emittedSACKCount == 3 && full.encodedLength == 40)
        var syn = TCPOptions()
        syn.maximumSegmentSize = 1460
        syn.windowScale = 7
        syn.sackPermitted = true
        syn.timestamp = (5, 0)
        #expect(syn.encodedLength == 24)
        seg[seg.count - 1] ^= 1
        #expect(throws: WireError.badChecksum) { try withBytes(seg) { b throws(WireError) in try TCPHeader.parse(b, source: alice, destination: bob) } }
    }

    @Test func optionsEdgeCases() throws {
        func parse(_ o: [UInt8]) throws -> TCPOptions {
            try withBytes(o) { b throws(WireError) in try TCPOptions.parse(b) }
        }
        #expect(try parse([99, 4, 0, 0, 2, 4, 1, 0]).maximumSegmentSize == 256, "unknown kinds are skipped")
        #expect(try parse([0, 2, 4, 1, 0]).maximumSegmentSize == nil, "EOL ends the list")
        #expect(try parse([3, 3, 30]).windowScale == 14, "shift clamped to 14")
        for bad: [UInt8] in [[2, 0], [2, 1], [2, 4, 1], [2, 3, 1], [99, 9, 0, 0], [5, 3, 0], [8, 9, 0, 0, 0, 0, 0, 0, 0], [2]] {
            #expect(throws: WireError.malformedOption, "\(bad)") { try parse(bad) }
        }
        let many = [5, 34] + [UInt8](repeating: 1, count: 32)
        #expect(try parse(many).sackCount == 4)
    }

    @Test func rejectsBadOffsets() {
        var small = syn
        small[12] = 0x40  // data offset 16 bytes
        #expect(throws: WireError.badLength) { try withBytes(small) { b throws(WireError) in try TCPHeader.parse(b, source: alice, destination: bob, checksumOffload: true) } }
        var big = syn
        big[12] = 0xF0  // 60 bytes, more than present
        #expect(throws: WireError.truncated) { try withBytes(big) { b throws(WireError) in try TCPHeader.parse(b, source: alice, destination: bob, checksumOffload: true) } }
        everyTruncation(syn) { _ = try TCPHeader.parse($0, source: alice, destination: bob) }
    }

    @Test func sequenceArithmeticWraps() {
        let a = TCPSequence(0xFFFF_FFF0)
        let b = a + 32
        #expect(b.rawValue == 16 && a < b && !(b < a) && b - a == 32 && a - b == -32)
        #expect(TCPSequence(5) - 10 == TCPSequence(0xFFFF_FFFB))
    }
}
