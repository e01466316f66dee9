// Deterministic message contents shared by the shared-memory tests, their peer process and the benchmarks.
import Demikernel
import Glibc

/// The size of message `i`: mostly small and varied, with an occasional message larger than a ring (fragmented).
public func patternSize(_ i: Int) -> Int {
    if i % 50_000 == 49_999 { return 600_000 }
    if i % 1000 == 999 { return 20_000 }
    return 1 + (i &* 7919) % 300
}

/// The byte at position `k` of message `i`.
@inline(__always)
public func patternByte(_ i: Int, _ k: Int) -> UInt8 { UInt8(truncatingIfNeeded: i &* 131 &+ k &* 7) }

/// An array holding message `i`.
public func patterned(_ os: LibOS, index i: Int) throws(Errno) -> ScatterGatherArray {
    let n = patternSize(i)
    let sga = try os.sgaalloc(n)
    let p = sga.head!.baseAddress.assumingMemoryBound(to: UInt8.self)
    for k in 0..<n { p[k] = patternByte(i, k) }
    return sga
}

/// True if `sga` holds exactly message `i`.
public func matches(_ sga: ScatterGatherArray, index i: Int) -> Bool {
    guard sga.segmentCount == 1, let b = sga.head, b.count == patternSize(i) else { return false }
    let p = b.baseAddress.assumingMemoryBound(to: UInt8.self)
    for k in 0..<b.count where p[k] != patternByte(i, k) { return false }
    return true
}

/// Pushes `count` patterned messages and pops `count`, checking each, with a window of pushes in flight.
/// Returns the number of mismatched messages.
public func exchange(_ os: LibOS, _ qd: QDesc, count: Int) throws(Errno) -> Int {
    var sent = 0
    var received = 0
    var bad = 0
    var pushes: [QToken] = []
    var pop = try os.pop(qd)
    var tokens: [QToken] = []
    tokens.reserveCapacity(40)
    while received < count || !pushes.isEmpty {
        while sent < count && pushes.count < 32 {
            let sga = try patterned(os, index: sent)
            pushes.append(try os.push(qd, sga))
            try os.sgafree(sga)
            sent += 1
        }
        tokens.removeAll(keepingCapacity: true)
        tokens.append(contentsOf: pushes)
        if received < count { tokens.append(pop) }
        let (i, r) = try os.waitAny(tokens)
        if received < count && i == tokens.count - 1 {
            guard let sga = r.sga else { throw r.error ?? .ioError }
            if !matches(sga, index: received) { bad += 1 }
            try os.sgafree(sga)
            received += 1
            if received < count { pop = try os.pop(qd) }
        } else {
            if r.opcode != .push { throw r.error ?? .ioError }
            pushes.remove(at: i)
        }
    }
    return bad
}
