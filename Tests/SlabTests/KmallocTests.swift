// kmalloc, kzalloc, kcalloc, krealloc, kfree, ksize: every size lands in the smallest class that
// fits, ksize never says less than was asked, the alignment guarantees hold, large requests come
// from the page allocator and the OS, bad sizes are thrown, and a random mixed workload's
// fragmentation is measured and reported. (Bad pointers stop the process: KmallocBadInputTests.)

import CSlab
@testable import Slab
import Harness
import TestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class KmallocTests: XCTestCase {
    /// The classes as Linux names and sizes them, written out here rather than read from the code.
    static let expectedClasses: [(name: String, size: Int)] = [
        ("kmalloc-8", 8), ("kmalloc-16", 16), ("kmalloc-32", 32), ("kmalloc-64", 64), ("kmalloc-96", 96),
        ("kmalloc-128", 128), ("kmalloc-192", 192), ("kmalloc-256", 256), ("kmalloc-512", 512),
        ("kmalloc-1k", 1024), ("kmalloc-2k", 2048), ("kmalloc-4k", 4096), ("kmalloc-8k", 8192),
    ]

    override func tearDown() {
        PageSource.shared.injectFailure(afterAllocations: nil)
        super.tearDown()
    }

    /// Without rseq kmalloc and kfree still run inline: the classes' pops and pushes on the
    /// thread's usual slot (CSlab.h, section 4), counted there, with no slow path on the way.
    func test_fallbackMode_kmallocAndKfreeRunInlineOnTheThreadsSlot() throws {
        if ChildProcess.isChild { return try checkFallbackFastPaths() }
        try ChildProcess.runPassingTest(
            "SlabTests.KmallocTests/test_fallbackMode_kmallocAndKfreeRunInlineOnTheThreadsSlot",
            environment: ["SLAB_CPU_LAYER": "fallback"])
    }

    private func checkFallbackFastPaths() throws {
        try Kmalloc.setUp()
        let cache = Kmalloc.caches[Kmalloc.classIndex(20)]
        XCTAssertEqual(cache.name, "kmalloc-32")
        XCTAssertEqual(cache.mode, .fallback)
        let slots = try XCTUnwrap(cache.cpuLayer).slots
        // Published for the fallback mode's own slots, or not at all under AddressSanitizer.
        XCTAssertEqual(cslab_kmalloc_uses_slots(), cslab_asan_active() ? 0 : 1)
        XCTAssertEqual(cslab_kmalloc_fast_limit(), cslab_asan_active() ? 0 : 8192)
        kfree(try kmalloc(20))   // gives the thread its lane (the ladder does)
        XCTAssertNotEqual(cslab_tls_get_slot() & UInt64(CSLAB_SLOT_TAG_OWN), 0, "the thread has a lane")
        let mine = Int(cslab_tls_get_slot() >> UInt64(CSLAB_CPU_STRIDE_SHIFT))
        XCTAssertLessThan(mine, slots.own)
        let (allocs, frees) = (slots.allocHits(mine).pointee, slots.freeHits(mine).pointee)
        let slow = cache.cpuLayer!.counters[.slotContention]
        for size in [17, 20, 25, 32] + Array(repeating: 24, count: 996) { kfree(try kmalloc(size)) }
        XCTAssertEqual(slots.allocHits(mine).pointee - allocs, 1000, "every kmalloc popped on slot \(mine)")
        XCTAssertEqual(slots.freeHits(mine).pointee - frees, 1000, "every kfree pushed on slot \(mine)")
        XCTAssertEqual(cache.cpuLayer!.counters[.slotContention], slow)
        XCTAssertEqual(cache.checkInvariants(), [])
    }

    func test_sizeClasses_areNamedAndSizedAsLinuxNamesThem() {
        XCTAssertEqual(Kmalloc.sizeClasses.map(\.name), Self.expectedClasses.map(\.name))
        XCTAssertEqual(Kmalloc.sizeClasses.map(\.size), Self.expectedClasses.map(\.size))
        XCTAssertEqual(Kmalloc.maxCacheSize, 8192)
        XCTAssertEqual(Kmalloc.osThreshold, 4 << 20)
    }

    func test_everySize1Through8192_landsInTheSmallestClassThatFits_withKsizeAtLeastTheRequest() throws {
        for size in 1...8192 {
            let expected = Self.expectedClasses.first { $0.size >= size }!
            let p = try kmalloc(size)
            guard case let .sizeClass(c)? = Kmalloc.origin(of: p) else {
                XCTFail("size \(size): \(p) is not a size-class object: \(String(describing: Kmalloc.origin(of: p)))")
                kfree(p)
                continue
            }
            XCTAssertEqual(c.name, expected.name, "size \(size)")
            XCTAssertEqual(ksize(p), expected.size, "size \(size)")
            XCTAssertGreaterThanOrEqual(ksize(p), size, "size \(size)")
            XCTAssertEqual(Kmalloc.sizeClass(for: size)?.name, expected.name)
            kfree(p)
        }
    }

    func test_alignment_isAtLeast16From16Bytes_andNaturalForPowersOfTwo() throws {
        var sizes = Array(1...8192)
        sizes += [8193, 12_288, 16_384, 65_536, 100_000, 1 << 20, (4 << 20) - 1, 4 << 20, (4 << 20) + 1, 6 << 20,
                  8 << 20, 16 << 20]
        for size in sizes {
            // Several at a time, so that not every pointer is the first of its slab.
            let pointers = try (0..<3).map { _ in try kmalloc(size) }
            for p in pointers {
                let address = UInt(bitPattern: p)
                if size >= 16 { XCTAssertEqual(address % 16, 0, "size \(size): \(p) not 16-aligned") }
                if size & (size - 1) == 0 {
                    XCTAssertEqual(address % UInt(size), 0, "size \(size): \(p) not naturally aligned")
                }
                XCTAssertGreaterThanOrEqual(ksize(p), size, "size \(size)")
            }
            pointers.forEach(kfree)
        }
    }

    func test_largeSizes_comeFromThePageAllocatorUpTo4MiB_andStraightFromTheOSAbove() throws {
        let cases: [(Int, KmallocOrigin)] = [
            (8193, .pages(order: 2)), (16_384, .pages(order: 2)), (16_385, .pages(order: 3)),
            (1 << 20, .pages(order: 8)), (4 << 20, .pages(order: 10)),
            ((4 << 20) + 1, .mapping(bytes: (4 << 20) + 4096)), (10_000_000, .mapping(bytes: 10_002_432)),
        ]
        let before = Kmalloc.statistics
        var held: [UnsafeMutableRawPointer] = []
        for (size, origin) in cases {
            let p = try kmalloc(size)
            XCTAssertEqual(Kmalloc.origin(of: p), origin, "size \(size)")
            XCTAssertEqual(ksize(p), origin.usableSize, "size \(size)")
            // Usable to its last byte.
            (p + ksize(p) - 1).storeBytes(of: 0x5A, as: UInt8.self)
            held.append(p)
        }
        let during = Kmalloc.statistics
        XCTAssertEqual(during.pageBlocks.reduce(0, +) - before.pageBlocks.reduce(0, +), 5)
        XCTAssertEqual(during.pageBlocks[2] - before.pageBlocks[2], 2)
        XCTAssertEqual(during.mappings - before.mappings, 2)
        XCTAssertEqual(during.mappedBytes - before.mappedBytes, (4 << 20) + 4096 + 10_002_432)
        held.forEach(kfree)
        let after = Kmalloc.statistics
        XCTAssertEqual(after.pageBlocks, before.pageBlocks)
        XCTAssertEqual(after.mappings, before.mappings)
        for p in held { XCTAssertNil(Kmalloc.origin(of: p), "\(p) is freed") }
    }

    /// kfree(p, size:) frees exactly as kfree(p) does: every kind of allocation, with the size it
    /// was asked for or any other (a size of another class, or of none, only costs the fast path),
    /// nil and the zero-size pointer. Afterwards nothing is live and every class is consistent.
    func test_kfreeSized_freesLikeKfree_withTheRightSizeOrAWrongOne() throws {
        try Kmalloc.setUp()
        let before = Kmalloc.statistics.liveAllocations
        let sizes = [1, 8, 9, 20, 32, 33, 96, 100, 192, 256, 1000, 4096, 8192, 8193, 20_000, 5 << 20]
        for size in sizes {
            let p = try kmalloc(size)
            kfree(p, size: size)
            XCTAssertEqual(Kmalloc.statistics.liveAllocations, before, "kfree(p, size: \(size))")
            for wrong in [size == 8 ? 16 : 8, 8192, 8193, 0, -1] {
                let q = try kmalloc(size)
                kfree(q, size: wrong)
                XCTAssertEqual(Kmalloc.statistics.liveAllocations, before, "kmalloc(\(size)) freed with size \(wrong)")
            }
        }
        // The same object again after a sized free: the class hands it out as usual.
        let a = try kmalloc(24)
        kfree(a, size: 24)
        let b = try kmalloc(24)
        XCTAssertEqual(Kmalloc.origin(of: b), .sizeClass(Kmalloc.sizeClasses[2]))
        kfree(b, size: 24)
        kfree(nil, size: 24)
        kfree(try kmalloc(0), size: 0)
        XCTAssertEqual(Kmalloc.statistics.liveAllocations, before)
        for cache in Kmalloc.caches { XCTAssertEqual(cache.checkInvariants(), [], cache.name) }
    }

    func test_sizeZero_returnsTheZeroSizePointer_whichKfreeKsizeAndKreallocAccept() throws {
        let p = try kmalloc(0)
        XCTAssertEqual(p, Kmalloc.zeroSizePointer)
        XCTAssertEqual(UInt(bitPattern: p), 16, "Linux's ZERO_SIZE_PTR")
        XCTAssertEqual(ksize(p), 0)
        XCTAssertEqual(Kmalloc.origin(of: p), .zeroSize)
        kfree(p)
        kfree(p)   // as often as it likes: nothing was allocated
        XCTAssertEqual(try kzalloc(0), Kmalloc.zeroSizePointer)
        XCTAssertEqual(try kcalloc(count: 0, size: 8), Kmalloc.zeroSizePointer)
        let grown = try krealloc(p, 40)
        XCTAssertEqual(Kmalloc.origin(of: grown)?.description, "kmalloc-64")
        let before = Kmalloc.statistics.liveAllocations
        XCTAssertEqual(try krealloc(grown, 0), Kmalloc.zeroSizePointer, "krealloc to 0 frees")
        XCTAssertEqual(Kmalloc.statistics.liveAllocations, before - 1)
        XCTAssertEqual(ksize(nil), 0)
        kfree(nil)
    }

    func test_badSizes_areThrown_andAllocateNothing() throws {
        let before = Kmalloc.statistics.liveAllocations
        XCTAssertThrowsError(try kmalloc(-1)) { XCTAssertEqual($0 as? KmallocError, .negativeSize(-1)) }
        XCTAssertThrowsError(try kmalloc(Int.min)) { XCTAssertEqual($0 as? KmallocError, .negativeSize(Int.min)) }
        XCTAssertThrowsError(try kmalloc(Int.max)) { XCTAssertEqual($0 as? KmallocError, .tooLarge(Int.max)) }
        XCTAssertThrowsError(try kmalloc(Kmalloc.maxSize + 1)) {
            XCTAssertEqual($0 as? KmallocError, .tooLarge(Kmalloc.maxSize + 1))
        }
        XCTAssertThrowsError(try kzalloc(-8)) { XCTAssertEqual($0 as? KmallocError, .negativeSize(-8)) }
        // count x size overflows: caught before any allocation.
        XCTAssertThrowsError(try kcalloc(count: Int.max / 2 + 1, size: 2)) {
            XCTAssertEqual($0 as? KmallocError, .overflow(count: Int.max / 2 + 1, size: 2))
        }
        XCTAssertThrowsError(try kcalloc(count: 1 << 40, size: 1 << 30)) {
            XCTAssertEqual($0 as? KmallocError, .overflow(count: 1 << 40, size: 1 << 30))
        }
        XCTAssertThrowsError(try kcalloc(count: -1, size: 8)) { XCTAssertEqual($0 as? KmallocError, .negativeSize(-1)) }
        let p = try kmalloc(100)
        XCTAssertThrowsError(try krealloc(p, -5)) { XCTAssertEqual($0 as? KmallocError, .negativeSize(-5)) }
        XCTAssertThrowsError(try krealloc(p, Int.max)) { XCTAssertEqual($0 as? KmallocError, .tooLarge(Int.max)) }
        XCTAssertEqual(ksize(p), 128, "a refused krealloc leaves the allocation as it was")
        kfree(p)
        XCTAssertEqual(Kmalloc.statistics.liveAllocations, before)
        XCTAssertEqual("\(KmallocError.overflow(count: 3, size: 4))", "kcalloc: 3 x 4 bytes overflows")
        XCTAssertEqual("\(KmallocError.negativeSize(-1))", "kmalloc: size -1 is negative")
    }

    func test_outOfMemory_isThrown_forEveryKindOfRequest_andWorksAgainAfterwards() throws {
        try Kmalloc.setUp()
        Kmalloc.shrink()   // no cached objects: a class must ask its page source for a slab
        PageSource.shared.injectFailure(afterAllocations: 0)
        for size in [20_000, 4 << 20, 5 << 20] {
            XCTAssertThrowsError(try kmalloc(size), "size \(size)") { XCTAssertEqual($0 as? KmallocError, .outOfMemory(size)) }
        }
        XCTAssertThrowsError(try kmalloc(4000)) { XCTAssertEqual($0 as? KmallocError, .outOfMemory(4000)) }
        PageSource.shared.injectFailure(afterAllocations: nil)
        for size in [4000, 20_000, 5 << 20] { kfree(try kmalloc(size)) }
    }

    func test_kzalloc_clearsTheWholeObject_evenARecycledOne() throws {
        for size in [1, 24, 100, 1000, 8192, 20_000] {
            let dirty = try kmalloc(size)
            memset(dirty, 0xA5, ksize(dirty))
            kfree(dirty)
            let p = try kzalloc(size)
            let bytes = UnsafeRawBufferPointer(start: p, count: ksize(p))
            XCTAssertTrue(bytes.allSatisfy { $0 == 0 }, "size \(size): kzalloc left bytes set")
            kfree(p)
        }
        let array = try kcalloc(count: 50, size: 24)
        XCTAssertEqual(ksize(array), 2048)
        XCTAssertTrue(UnsafeRawBufferPointer(start: array, count: 1200).allSatisfy { $0 == 0 })
        kfree(array)
    }

    func test_krealloc_preservesTheContents_throughEveryKindOfAllocation() throws {
        var p = try kmalloc(24)
        func fill(_ p: UnsafeMutableRawPointer, _ n: Int) { for i in 0..<n { p.storeBytes(of: UInt8(truncatingIfNeeded: i &* 31 &+ 7), toByteOffset: i, as: UInt8.self) } }
        func check(_ p: UnsafeMutableRawPointer, _ n: Int, _ label: String) {
            for i in 0..<n where p.load(fromByteOffset: i, as: UInt8.self) != UInt8(truncatingIfNeeded: i &* 31 &+ 7) {
                return XCTFail("\(label): byte \(i) changed")
            }
        }
        fill(p, 24)
        var kept = 24
        for size in [100, 1000, 9000, 300_000, 5 << 20, 64] {
            p = try krealloc(p, size)
            XCTAssertGreaterThanOrEqual(ksize(p), size)
            check(p, min(kept, size), "after krealloc to \(size)")
            fill(p, size)
            kept = size
        }
        kfree(p)
    }

    func test_krealloc_keepsThePointer_onlyWhenItHoldsTheNewSizeWithItsAlignment() throws {
        let p = try kmalloc(100)             // kmalloc-128
        XCTAssertEqual(try krealloc(p, 120), p, "kmalloc-128 holds 120 bytes")
        XCTAssertEqual(try krealloc(p, 128), p, "and 128, 128-aligned")
        let q = try krealloc(p, 129)
        XCTAssertNotEqual(q, p)
        XCTAssertEqual(Kmalloc.origin(of: q)?.description, "kmalloc-192")
        XCTAssertEqual(Kmalloc.caches[5].statistics.liveObjects, 0, "the old kmalloc-128 object was freed")
        // A kmalloc-192 object is only 16-aligned; krealloc to 64 must give 64-alignment.
        let r = try krealloc(q, 64)
        XCTAssertEqual(UInt(bitPattern: r) % 64, 0)
        XCTAssertGreaterThanOrEqual(ksize(r), 64)
        kfree(r)
        let nilGrown = try krealloc(nil, 10)
        XCTAssertEqual(Kmalloc.origin(of: nilGrown)?.description, "kmalloc-16")
        kfree(nilGrown)
    }

    /// Whether any page of [p, p + bytes) is mapped: mincore fails with ENOMEM on an unmapped one.
    private func isMapped(_ p: UnsafeMutableRawPointer, _ bytes: Int) -> Bool {
        var vector = [UInt8](repeating: 0, count: bytes / 4096)
        return mincore(p, bytes, &vector) == 0
    }

    /// Page faults this thread has taken (minor ones: a page given or zeroed by the kernel).
    private func minorFaults() -> Int {
        var usage = rusage()
        getrusage(__rusage_who_t(1), &usage)   // RUSAGE_THREAD, which the Glibc module does not name
        return usage.ru_minflt
    }

    func test_krealloc_ofAnOSMapping_movesItsPages_insteadOfCopyingThem() throws {
        let mib = 1 << 20
        let p = try kmalloc(6 * mib)         // a mapping: page-aligned, 6 MiB
        for i in stride(from: 0, to: 6 * mib, by: 4096) { p.storeBytes(of: UInt64(i), toByteOffset: i, as: UInt64.self) }
        func check(_ q: UnsafeMutableRawPointer, _ label: String, bytes: Int = 6 * mib) {
            for i in stride(from: 0, to: bytes, by: 4096) where q.load(fromByteOffset: i, as: UInt64.self) != UInt64(i) {
                return XCTFail("\(label): the page at \(i) lost its contents")
            }
        }
        let mappedBefore = Kmalloc.statistics.mappings, bytesBefore = Kmalloc.statistics.mappedBytes

        // Growing: the 1,536 pages move; a copy would fault in every page of the new mapping.
        let faults = minorFaults()
        let q = try krealloc(p, 40 * mib)
        XCTAssertLessThan(minorFaults() - faults, 64, "krealloc faulted pages in: it copied instead of moving them")
        check(q, "grown to 40 MiB")
        XCTAssertEqual(ksize(q), 40 * mib)
        XCTAssertEqual(Kmalloc.statistics.mappings, mappedBefore, "one record for the mapping, moved or not")
        if q != p { XCTAssertFalse(isMapped(p, 6 * mib), "the old range was left mapped") }

        // To a power of two: naturally aligned, as kmalloc(32 MiB) would be.
        let r = try krealloc(q, 32 * mib)
        XCTAssertEqual(UInt(bitPattern: r) % UInt(32 * mib), 0)
        XCTAssertEqual(ksize(r), 32 * mib)
        check(r, "shrunk to 32 MiB")

        // Shrinking where it stands: the same pointer, and the tail goes back to the OS.
        let s = try krealloc(r, 5 * mib)
        XCTAssertEqual(s, r, "a shrink that keeps the alignment keeps the pointer")
        XCTAssertEqual(ksize(s), 5 * mib)
        XCTAssertTrue(isMapped(s, 5 * mib))
        XCTAssertFalse(isMapped(s + 5 * mib, 27 * mib), "the shrink kept the tail mapped")
        check(s, "shrunk to 5 MiB", bytes: 5 * mib)
        XCTAssertEqual(Kmalloc.statistics.mappings, mappedBefore)
        XCTAssertEqual(Kmalloc.statistics.mappedBytes, bytesBefore - mib, "6 MiB became 5")

        // To 4 MiB or less: copied into a page-allocator block, and the mapping unmapped whole (it
        // used to be kept, 5 MiB for the 3 asked), so that every mapping holds more than 4 MiB.
        let t = try krealloc(s, 3 * mib)
        XCTAssertNotEqual(t, s)
        XCTAssertEqual(ksize(t), 4 * mib, "an order-10 block")
        XCTAssertEqual(t.load(fromByteOffset: 3 * mib - 4096, as: UInt64.self), UInt64(3 * mib - 4096))
        XCTAssertEqual(Kmalloc.statistics.mappings, mappedBefore - 1)
        XCTAssertFalse(isMapped(s, 5 * mib), "the mapping was kept")
        kfree(t)
    }

    func test_krealloc_ofAnOSMapping_thatTheOSRefuses_throws_andLeavesTheMappingAsItWas() throws {
        let mib = 1 << 20
        let p = try kmalloc(6 * mib)
        p.storeBytes(of: 0x5EED, toByteOffset: 6 * mib - 8, as: UInt64.self)
        PageSource.shared.injectFailure(afterAllocations: 0)
        XCTAssertThrowsError(try krealloc(p, 48 * mib)) {
            XCTAssertEqual($0 as? KmallocError, .outOfMemory(48 * mib))
        }
        PageSource.shared.injectFailure(afterAllocations: nil)
        XCTAssertEqual(ksize(p), 6 * mib)
        XCTAssertEqual(p.load(fromByteOffset: 6 * mib - 8, as: UInt64.self), 0x5EED)
        kfree(p)
    }

    func test_classCaches_areRegistered_reserved_andCannotBeDestroyed() throws {
        try Kmalloc.setUp()
        XCTAssertEqual(Kmalloc.caches.map(\.name), Self.expectedClasses.map(\.name))
        let rendered = SlabInfo.render()
        for c in Self.expectedClasses {
            XCTAssertTrue(rendered.contains("\n" + c.name + " "), "\(c.name) not in slabinfo:\n\(rendered)")
            XCTAssertThrowsError(try SlabCache(name: c.name, size: 64)) {
                XCTAssertEqual($0 as? SlabError, .invalidName(c.name, reason: "it is reserved for kmalloc's size classes"))
            }
        }
        for cache in Kmalloc.caches {
            XCTAssertEqual(cache.layout.objectSize, cache.layout.requestedSize, "\(cache.name): the class size is the object size")
            XCTAssertThrowsError(try cache.destroy()) { XCTAssertEqual($0 as? SlabError, .servesKmalloc(cache.name)) }
            XCTAssertEqual(cache.mode, SlabCache.cpuLayerReason == "rseq" ? .rseq : .fallback, "\(cache.name): the per-CPU layer")
            XCTAssertLessThanOrEqual(cache.layout.wastePerSlab * 32, cache.layout.slabBytes, "\(cache.name) wastes more than 1/32")
        }
        // Each class's slabs lie in its own slot of kmalloc's range, in class order.
        let bases = Kmalloc.caches.map { $0.slabLayer.pages.base }
        XCTAssertEqual(bases, bases.sorted())
        XCTAssertEqual(Set(zip(bases, bases.dropFirst()).map { $1 - $0 }).count, 1, "equal slots")
    }

    /// A typed cache of objects above 64 bytes keeps a whole burst of frees in its depot (the
    /// magazines recycle it faster than the slab layer regroups it: SlabCache.swift, section 7),
    /// where a kmalloc class stops at 8 MiB of objects and sends the rest of the burst back to its
    /// slabs. (Up to 64 bytes both hold 32 MiB: below.)
    func test_typedDepot_keepsABurstOfFrees_whereAKmallocClassOverflowsPast8MiB() throws {
        try Kmalloc.setUp()
        Kmalloc.shrink()
        let kmalloc96 = try XCTUnwrap(Kmalloc.caches.first { $0.name == "kmalloc-96" })
        let typed = try SlabCache(name: uniqueCacheName("burst"), size: 96)
        defer { typed.shrink(); try? typed.destroy() }
        let classLimit = kmalloc96.cpuLayer!.depotFullLimit
        XCTAssertEqual(classLimit, max(64, (8 << 20) / (kmalloc96.magazineCapacity * 96)))
        XCTAssertEqual(typed.cpuLayer!.depotFullLimit, MagazineRegion.maxMagazines(capacity: typed.magazineCapacity) / 2,
                       "a typed cache above 64 bytes keeps full magazines up to half of its magazine region")
        XCTAssertGreaterThan(typed.cpuLayer!.depotFullLimit * typed.magazineCapacity, 7_000_000)
        // More than the class's depot holds (with room for the CPUs' own magazines).
        let n = (classLimit + 40) * kmalloc96.magazineCapacity
        let before = kmalloc96.statistics.depotOverflows
        let objects = try (0..<n).map { _ in try kmalloc(96) }
        objects.forEach(kfree)
        let typedObjects = (0..<n).map { _ in typed.allocate()! }
        typedObjects.forEach(typed.free)
        XCTAssertGreaterThan(kmalloc96.statistics.depotOverflows, before, "kmalloc-96 stops at 8 MiB of objects")
        XCTAssertEqual(kmalloc96.statistics.depotFullMagazines, classLimit)
        XCTAssertEqual(typed.statistics.depotOverflows, 0, "the typed cache kept the burst")
        XCTAssertGreaterThan(typed.statistics.depotFullMagazines, classLimit + 30)
        // The burst is handed out again, each object once, and shrink still returns everything.
        let again = (0..<n).map { _ in typed.allocate()! }
        XCTAssertEqual(Set(again).count, n, "no object handed out twice")
        again.forEach(typed.free)
        typed.shrink()
        Kmalloc.shrink()
        XCTAssertEqual(typed.statistics.totalSlabs, 0, "shrink returns the typed cache's burst")
        XCTAssertEqual(kmalloc96.statistics.totalSlabs, 0, "shrink still returns everything")
    }

    /// Caches of objects up to 64 bytes, typed or kmalloc's, hold at least 32 MiB of objects in
    /// their depots: a burst of a million frees of 20-byte objects (the bench's 1M batches) stays
    /// in magazines.
    func test_smallObjectDepot_keepsA32MiBBurst_typedAndKmalloc() throws {
        try Kmalloc.setUp()
        XCTAssertEqual(SlabCache.smallObjectDepotBytes, 32 << 20)
        let typed = try SlabCache(name: uniqueCacheName("small-burst"), size: 20)
        defer { typed.shrink(); try? typed.destroy() }
        let m = typed.magazineCapacity
        XCTAssertEqual(typed.cpuLayer!.depotFullLimit, max(64, (32 << 20) / (m * 24)))
        let kmalloc8 = Kmalloc.caches[0]
        XCTAssertEqual(kmalloc8.cpuLayer!.depotFullLimit, max(64, (32 << 20) / (kmalloc8.magazineCapacity * 8)))
        let objects = (0..<1_000_000).map { _ in typed.allocate()! }
        objects.forEach(typed.free)
        XCTAssertEqual(typed.statistics.depotOverflows, 0, "1M x 24 bytes fit in 32 MiB of depot")
        XCTAssertGreaterThan(typed.statistics.depotFullMagazines, 3900)
    }

    func test_threads_mixedSizes_neverShareAnObject_andLoseNone() throws {
        let live = LiveSet()
        let problems = ProblemLog()
        let threads = 4
        runThreads(threads) { t in
            var rng = SplitMix64(seed: 0xC0FFEE + UInt64(t))
            var held: [(UnsafeMutableRawPointer, Int)] = []
            for step in 0..<scaled(20_000) {
                if held.count < 200 && (held.isEmpty || rng.next() % 2 == 0) {
                    let size = rng.next() % 50 == 0 ? 8193 + Int(rng.next() % 60_000) : 24 + Int(rng.next() % 1000) / 8 * 8
                    guard let p = try? kmalloc(size) else { problems.add("thread \(t): kmalloc(\(size)) failed"); return }
                    if !live.insert(p) { problems.add("thread \(t): \(p) handed out while live") }
                    Stamp.write(p, size: size, owner: t, sequence: UInt64(step))
                    held.append((p, size))
                } else {
                    let (p, size) = held.remove(at: Int(rng.next() % UInt64(held.count)))
                    if let damage = Stamp.check(p, size: size) { problems.add("thread \(t): \(damage)") }
                    _ = live.remove(p)
                    kfree(p)
                }
            }
            for (p, size) in held {
                if let damage = Stamp.check(p, size: size) { problems.add("thread \(t): \(damage)") }
                _ = live.remove(p)
                kfree(p)
            }
        }
        XCTAssertEqual(problems.all, [])
        XCTAssertEqual(live.count, 0)
        for cache in Kmalloc.caches { XCTAssertEqual(cache.checkInvariants(), [], cache.name) }
    }

    /// A random mix of sizes (skewed to small ones, as the bench's mixed workloads draw them, plus
    /// a few page-allocator blocks): internal fragmentation (bytes the classes round up) and
    /// external (slab bytes not holding a live object) are computed and printed, and freeing
    /// everything gives every page back.
    func test_randomMixedWorkload_reportsItsFragmentation_andFreeingEverythingReturnsAllMemory() throws {
        try Kmalloc.setUp()
        Kmalloc.shrink()
        let before = Kmalloc.statistics
        var rng = SplitMix64(seed: 0xF2A6)
        var held: [(UnsafeMutableRawPointer, Int)] = []
        func randomSize() -> Int {
            if rng.next() % 100 == 0 { return 8193 + Int(rng.next() % (120 << 10)) }
            let u = Double(rng.next() >> 11) / Double(1 << 53)
            return Int((8 * pow(128, u * u)).rounded())
        }
        for _ in 0..<200_000 {
            if held.count < 20_000 && (held.count < 5_000 || rng.next() % 2 == 0) {
                let size = randomSize()
                held.append((try kmalloc(size), size))
            } else {
                let i = Int(rng.next() % UInt64(held.count))
                kfree(held[i].0)
                held[i] = held[held.count - 1]
                held.removeLast()
            }
        }
        let requested = held.reduce(0) { $0 + $1.1 }
        let usable = held.reduce(0) { $0 + ksize($1.0) }
        let s = Kmalloc.statistics
        let classLive = held.filter { $0.1 <= Kmalloc.maxCacheSize }.reduce(0) { $0 + ksize($1.0) }
        let slabBytes = s.classes.reduce(0) { $0 + $1.slabBytes }
        let internalShare = 1 - Double(requested) / Double(usable)
        let externalShare = 1 - Double(classLive) / Double(slabBytes)
        var report = "kmalloc fragmentation, \(held.count) live allocations, \(requested) bytes requested:\n"
        report += "  internal (rounding up to the class or block): \(usable - requested) bytes, \(percent(internalShare)) of \(usable) usable\n"
        report += "  external (slab bytes not holding a live object, magazines included): \(slabBytes - classLive) bytes, "
            + "\(percent(externalShare)) of \(slabBytes) in slabs\n"
        for c in s.classes where c.totalSlabs > 0 {
            report += "    \(c.name): \(c.liveObjects) live of \(c.totalObjects) in \(c.totalSlabs) slabs (\(c.pagesPerSlab) pages each)\n"
        }
        report += "  page allocator: \(s.pageBlocks.reduce(0, +)) blocks, \(s.pageBytes) bytes\n"
        report += BuddyInfo.render([try XCTUnwrap(Kmalloc.pageAllocatorZone)])
        print(report)
        // Sizes of this mix round up by about a fifth; the classes never waste half.
        XCTAssertLessThan(internalShare, 0.3, report)
        XCTAssertGreaterThan(internalShare, 0.05, report)
        XCTAssertLessThan(externalShare, 0.5, report)

        for (p, _) in held { kfree(p) }
        Kmalloc.shrink()
        let after = Kmalloc.statistics
        XCTAssertEqual(after.liveAllocations, before.liveAllocations)
        XCTAssertEqual(after.classes.map(\.totalSlabs), before.classes.map(\.totalSlabs), "shrink released every slab the mix made")
        let zone = try XCTUnwrap(Kmalloc.pageAllocatorZone)
        XCTAssertEqual(Array(zone.freeBlocks.dropLast()), Array(repeating: 0, count: SlabLayout.maxOrder),
                       "every page block merged back into whole arenas")
        for cache in Kmalloc.caches { XCTAssertEqual(cache.checkInvariants(), [], cache.name) }
    }

    private func percent(_ x: Double) -> String { String(Double(Int(x * 1000)) / 10) + "%" }
}
