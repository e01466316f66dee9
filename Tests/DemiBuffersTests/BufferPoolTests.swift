import DemiBuffers
import DemiCore
import Testing

@Suite struct BufferPoolTests {
    @Test func allocateGivesHeadroomAndWindow() throws {
        let pool = BufferPool(headroom: 128)
        let b = try #require(pool.allocate(size: 100))
        #expect(b.count == 100)
        #expect(b.headroom == 128)
        #expect(b.isValid)
        let p = try #require(b.prepend(20))
        #expect(p == b.baseAddress)
        #expect(b.count == 120 && b.headroom == 108)
        #expect(b.prepend(109) == nil)
        #expect(b.trimFront(20) && b.count == 100)
        #expect(!b.trimFront(101))
        #expect(b.trimBack(50) && b.count == 50)
        #expect(b.setCount(1900))
        #expect(!b.setCount(2048))
        b.release()
        #expect(pool.buffersInUse == 0)
    }

    @Test func releasedBuffersAreReusedAndStaleHandlesDetected() throws {
        let pool = BufferPool()
        let a = try #require(pool.allocate(size: 64))
        let header = a.header
        a.release()
        #expect(!a.isValid)
        let b = try #require(pool.allocate(size: 64))
        #expect(b.header == header, "LIFO free list reuses the last freed buffer")
        #expect(b.isValid && !a.isValid, "the stale handle's generation no longer matches")
        b.release()
    }

    @Test func referenceCountsKeepBytesAlive() throws {
        let pool = BufferPool()
        let a = try #require(pool.allocate(size: 4))
        [UInt8]([1, 2, 3, 4]).withUnsafeBytes { _ = a.write($0) }
        a.retain()
        a.release()
        #expect(a.isValid && a.array == [1, 2, 3, 4])
        a.release()
        #expect(!a.isValid && pool.buffersInUse == 0)
    }

    @Test func viewsShareBytesAndHoldTheStorage() throws {
        let pool = BufferPool()
        let a = try #require(pool.allocate(size: 8))
        for i in 0..<8 { a.bytes[i] = UInt8(i) }
        let v = try #require(pool.view(of: a, offset: 2, length: 4))
        #expect(v.array == [2, 3, 4, 5])
        let vv = try #require(pool.view(of: v, offset: 1, length: 2))
        #expect(vv.array == [3, 4])
        a.release()
        #expect(v.isValid && v.array == [2, 3, 4, 5], "the view keeps the storage")
        v.bytes[0] = 99
        #expect(vv.isValid)
        v.release()
        #expect(vv.array == [3, 4])
        vv.release()
        #expect(pool.buffersInUse == 0)
        #expect(pool.view(of: try #require(pool.allocate(size: 2)), offset: 1, length: 2) == nil)
    }

    @Test func sizeClassesAndLargeBuffers() throws {
        let pool = BufferPool()
        for size in [0, 1, 1920, 1921, 16000, 65535, 65536, 70000, 1 << 20] {
            let b = try #require(pool.allocate(size: size), "\(size)")
            #expect(b.count == size)
            b.bytes.initializeMemory(as: UInt8.self, repeating: 0xAB)
            #expect(b.tailroom >= 0)
            b.release()
        }
        #expect(pool.allocate(size: -1) == nil)
        #expect(pool.buffersInUse == 0)
    }

    @Test func applicationFreeDetectsDoubleAndForeignFrees() throws {
        let pool = BufferPool()
        let other = BufferPool()
        let a = try #require(pool.allocate(size: 10))
        #expect(throws: Errno.invalidArgument) { try pool.freeFromApplication(a) }  // not given to the app
        pool.giveToApplication(a)
        a.retain()  // the libOS holds one too (an in-flight push)
        try pool.freeFromApplication(a)
        #expect(a.isValid, "the libOS's reference keeps it alive")
        #expect(throws: Errno.invalidArgument) { try pool.freeFromApplication(a) }  // double free
        a.release()
        #expect(throws: Errno.invalidArgument) { try pool.freeFromApplication(a) }  // stale
        let foreign = try #require(other.allocate(size: 10))
        other.giveToApplication(foreign)
        #expect(throws: Errno.invalidArgument) { try pool.freeFromApplication(foreign) }
        try other.freeFromApplication(foreign)
        // Pointers that are not headers at all.
        var local = 0
        #expect(withUnsafeMutablePointer(to: &local) { pool.validate(UnsafeRawPointer($0)) } == nil)
        #expect(pool.validate(nil) == nil)
        let inside = try #require(pool.allocate(size: 1))
        #expect(pool.validate(UnsafeRawPointer(inside.header) + 8) == nil, "misaligned")
        inside.release()
        #expect(pool.validate(UnsafeRawPointer(inside.header)) == nil, "free header")
    }

    @Test func multiSegmentArrays() throws {
        let pool = BufferPool()
        let parts = try (0..<3).map { i throws -> DemiBuffer in
            let b = try #require(pool.allocate(size: 2))
            b.bytes[0] = UInt8(i)
            b.bytes[1] = UInt8(i + 10)
            return b
        }
        let sga = ScatterGatherArray(segments: parts)
        #expect(sga.segmentCount == 3 && sga.count == 6)
        #expect(sga.bytes == [0, 10, 1, 11, 2, 12])
        #expect(sga.isValid)
        pool.giveToApplication(sga.head!)
        sga.retainAll()
        try pool.freeFromApplication(sga.head!)
        #expect(sga.isValid)
        sga.releaseAll()
        #expect(pool.buffersInUse == 0)
    }

    @Test func externalBuffersCallTheReleaseHook() throws {
        let pool = BufferPool()
        let counter = UnsafeMutablePointer<Int>.allocate(capacity: 1)
        counter.pointee = 0
        defer { counter.deallocate() }
        pool.setExternalRelease({ object, context in
            context!.assumingMemoryBound(to: Int.self).pointee += Int(bitPattern: object)
        }, context: UnsafeMutableRawPointer(counter))
        let storage = UnsafeMutableRawPointer.allocate(byteCount: 256, alignment: 64)
        defer { storage.deallocate() }
        let b = try #require(pool.wrapExternal(storage: storage, capacity: 256, offset: 64, length: 100,
                                               object: UnsafeMutableRawPointer(bitPattern: 7)))
        #expect(b.baseAddress == storage + 64 && b.count == 100 && b.headroom == 64)
        let v = try #require(pool.view(of: b, offset: 10, length: 10))
        b.release()
        #expect(counter.pointee == 0, "a view still holds the device buffer")
        v.release()
        #expect(counter.pointee == 7)
        #expect(pool.wrapExternal(storage: storage, capacity: 10, offset: 5, length: 6, object: nil) == nil)
    }

    @Test func reserveWarmsThePool() {
        let pool = BufferPool()
        pool.reserve(size: 64, count: 300)
        let created = pool.headersCreated
        var held: [DemiBuffer] = []
        for _ in 0..<300 { held.append(pool.allocate(size: 64)!) }
        #expect(pool.headersCreated == created, "no growth after reserve")
        held.forEach { $0.release() }
    }

    @Test func recyclingFromTheApplicationGivesAFreshBufferOrNothing() throws {
        let pool = BufferPool(headroom: 0)
        func appOwned(_ size: Int) -> DemiBuffer {
            let b = pool.allocate(size: size)!
            pool.giveToApplication(b)
            return b
        }
        // A small single buffer comes back fresh: empty window, new generation (the application's handle is stale).
        let a = appOwned(100)
        a.write(UnsafeRawBufferPointer(start: [UInt8](repeating: 1, count: 100), count: 100))
        let r = try #require(try pool.recycleFromApplication(a, headroom: 16))
        #expect(r.header == a.header && r.isValid && !a.isValid && r.count == 0)
        #expect(r.header.pointee.offset == 16 && r.header.pointee.flags & BufferHeader.Flags.appOwned == 0)
        #expect(throws: Errno.invalidArgument) { try pool.freeFromApplication(a) }
        #expect(throws: Errno.invalidArgument) { _ = try pool.recycleFromApplication(a, headroom: 0) }
        // Anything else is left alone for freeFromApplication: a larger class, a shared one, a chain.
        let big = appOwned(10000)
        #expect(try pool.recycleFromApplication(big, headroom: 0) == nil && big.isValid)
        let shared = appOwned(10)
        let view = pool.view(of: shared)!
        #expect(try pool.recycleFromApplication(shared, headroom: 0) == nil && shared.isValid)
        let head = appOwned(10), tail = appOwned(10)
        head.header.pointee.next = tail.header
        #expect(try pool.recycleFromApplication(head, headroom: 0) == nil)
        try pool.freeFromApplication(head)
        try pool.freeFromApplication(big)
        try pool.freeFromApplication(shared)
        view.release()
        // Not the application's: EINVAL.
        let own = pool.allocate(size: 10)!
        #expect(throws: Errno.invalidArgument) { _ = try pool.recycleFromApplication(own, headroom: 0) }
        own.release()
        r.release()
        #expect(pool.buffersInUse == 0)
    }
}
