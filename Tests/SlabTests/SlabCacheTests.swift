// The public API of SlabCache: create, allocate, free, destroy, and the errors at its edge.

import CSlab
import Slab
import TestSupport
import XCTest

final class SlabCacheTests: XCTestCase {
    // MARK: Create, allocate, free, destroy

    func test_mycache_size20align8_hasObjectSize24_andRoundTrips() throws {
        let cache = try SlabCache(name: uniqueCacheName("mycache"), size: 20, align: 8)
        XCTAssertEqual(cache.objectSize, 24)
        XCTAssertEqual(cache.layout.align, 8)
        XCTAssertNotNil(Registry.shared.cache(named: cache.name))
        let p = try XCTUnwrap(cache.allocate())
        p.storeBytes(of: 0x1234_5678, as: UInt64.self)
        XCTAssertEqual(cache.statistics.liveObjects, 1)
        cache.free(p)
        XCTAssertEqual(cache.statistics.liveObjects, 0)
        try cache.destroy()
        XCTAssertTrue(cache.isDestroyed)
        XCTAssertNil(Registry.shared.cache(named: cache.name), "a destroyed cache leaves the registry")
    }

    func test_destroy_twice_throwsDestroyed() throws {
        let cache = try SlabCache(name: uniqueCacheName("twice"), size: 32)
        try cache.destroy()
        XCTAssertThrowsError(try cache.destroy()) { error in
            XCTAssertEqual(error as? SlabError, .destroyed(cache.name))
        }
        XCTAssertEqual(cache.shrink(), 0)
        XCTAssertEqual(cache.reap(), 0)
    }

    func test_name_isReusable_afterDestroy() throws {
        let name = uniqueCacheName("reuse")
        let first = try SlabCache(name: name, size: 16)
        try first.destroy()
        let second = try SlabCache(name: name, size: 64)
        XCTAssertTrue(Registry.shared.cache(named: name) === second)
        try second.destroy()
    }

    // MARK: Errors at the edge

    func test_create_withInvalidName_throwsInvalidName() {
        for bad in ["", "has space", "tab\there", String(repeating: "n", count: 65), "caf\u{e9}", "new\nline"] {
            XCTAssertThrowsError(try SlabCache(name: bad, size: 8), "name \(bad.debugDescription)") { error in
                guard case .invalidName(let name, _)? = error as? SlabError else {
                    return XCTFail("expected invalidName for \(bad.debugDescription), got \(error)")
                }
                XCTAssertEqual(name, bad)
            }
            XCTAssertNil(Registry.shared.cache(named: bad))
        }
        // The longest accepted name: 64 bytes.
        let suffix = uniqueCacheName("long")
        let longest = String(repeating: "z", count: 64 - suffix.utf8.count) + suffix
        XCTAssertEqual(longest.utf8.count, 64)
        XCTAssertNoThrow(try SlabCache(name: longest, size: 8).destroy())
    }

    func test_create_withInvalidSize_throwsInvalidSize() {
        for size in [0, -1, Int.min, SlabLayout.maxObjectSize + 1, Int.max] {
            let name = uniqueCacheName("badsize")
            XCTAssertThrowsError(try SlabCache(name: name, size: size)) { error in
                XCTAssertEqual(error as? SlabError, .invalidSize(size))
            }
            XCTAssertNil(Registry.shared.cache(named: name), "a failed create registers nothing")
        }
        XCTAssertNoThrow(try SlabCache(name: uniqueCacheName("maxsize"), size: SlabLayout.maxObjectSize).destroy())
    }

    func test_create_withInvalidAlignment_throwsInvalidAlignment() {
        for align in [0, -8, 3, 6, 12, 24, 100, 8192, 1 << 20] {
            let name = uniqueCacheName("badalign")
            XCTAssertThrowsError(try SlabCache(name: name, size: 16, align: align)) { error in
                XCTAssertEqual(error as? SlabError, .invalidAlignment(align))
            }
            XCTAssertNil(Registry.shared.cache(named: name))
        }
    }

    func test_create_withUnknownFlags_throwsUnknownFlags() {
        let bogus = SlabFlags(rawValue: 0x1)
        XCTAssertThrowsError(try SlabCache(name: uniqueCacheName("badflags"), size: 16, flags: bogus)) { error in
            XCTAssertEqual(error as? SlabError, .unknownFlags(0x1))
        }
        let mixed: SlabFlags = [.hwcacheAlign, SlabFlags(rawValue: 0x40)]
        XCTAssertThrowsError(try SlabCache(name: uniqueCacheName("badflags"), size: 16, flags: mixed)) { error in
            XCTAssertEqual(error as? SlabError, .unknownFlags(0x40), "only the unknown bits are reported")
        }
    }

    func test_create_withDuplicateName_throwsDuplicateName_andKeepsTheFirst() throws {
        let name = uniqueCacheName("dup")
        let first = try SlabCache(name: name, size: 20)
        let p = try XCTUnwrap(first.allocate())
        XCTAssertThrowsError(try SlabCache(name: name, size: 40)) { error in
            XCTAssertEqual(error as? SlabError, .duplicateName(name))
        }
        XCTAssertTrue(Registry.shared.cache(named: name) === first)
        first.free(p)
        try first.destroy()
    }

    func test_errorDescriptions_nameTheProblem() {
        XCTAssertEqual(SlabError.objectsStillAllocated(cache: "c", count: 3).description,
                       "Slab cache still has objects: c has 3 allocated; destroy refused")
        XCTAssertTrue(SlabError.duplicateName("c").description.contains("\"c\""))
        XCTAssertTrue(SlabError.invalidAlignment(3).description.contains("3"))
    }

    // MARK: Destroy with live objects

    func test_destroy_withLiveObjects_throwsObjectsStillAllocated_andCacheStaysUsable() throws {
        for flags in [SlabFlags(), .noCPUCache] {
            let cache = try SlabCache(name: uniqueCacheName("live"), size: 48, flags: flags)
            var held = (0..<300).map { _ in cache.allocate()! }
            // Some freed ones sit in magazines: they must not count as live.
            for _ in 0..<100 { cache.free(held.removeLast()) }
            XCTAssertThrowsError(try cache.destroy()) { error in
                XCTAssertEqual(error as? SlabError, .objectsStillAllocated(cache: cache.name, count: 200), "\(flags)")
            }
            XCTAssertFalse(cache.isDestroyed)
            XCTAssertTrue(Registry.shared.cache(named: cache.name) === cache, "a refused destroy keeps the cache registered")
            // Still usable, fast path included.
            var more = (0..<500).map { _ in cache.allocate()! }
            XCTAssertEqual(Set(more + held).count, 700)
            more.forEach(cache.free)
            more.removeAll()
            XCTAssertEqual(cache.checkInvariants(), [])
            held.forEach(cache.free)
            XCTAssertNoThrow(try cache.destroy())
            XCTAssertTrue(cache.isDestroyed)
        }
    }

    // MARK: Objects

    func test_objects_areAlignedAndDistinctAndDoNotOverlap() throws {
        let sizes = [1, 7, 8, 20, 24, 33, 100, 500, 4000]
        let aligns = [1, 2, 8, 16, 64, 256, 4096]
        for size in sizes {
            for align in aligns {
                for flags in [SlabFlags(), .noCPUCache] {
                    let cache = try SlabCache(name: uniqueCacheName("align"), size: size, align: align, flags: flags)
                    let count = align >= 256 ? 40 : 400
                    let objects = (0..<count).map { _ in cache.allocate()! }
                    let addresses = objects.map { UInt(bitPattern: $0) }.sorted()
                    for a in addresses where a % UInt(align) != 0 {
                        XCTFail("size \(size) align \(align): object 0x\(String(a, radix: 16)) misaligned")
                        break
                    }
                    XCTAssertEqual(Set(addresses).count, count, "size \(size) align \(align): duplicate objects")
                    for (a, b) in zip(addresses, addresses.dropFirst()) where b - a < UInt(cache.objectSize) {
                        XCTFail("size \(size) align \(align): objects overlap at 0x\(String(a, radix: 16))")
                        break
                    }
                    // The whole object is writable.
                    for p in objects { p.initializeMemory(as: UInt8.self, repeating: 0xA5, count: cache.objectSize) }
                    objects.forEach(cache.free)
                    XCTAssertEqual(cache.checkInvariants(), [], "size \(size) align \(align)")
                    try cache.destroy()
                }
            }
        }
    }

    func test_hwcacheAlign_alignsLikeLinux() throws {
        // Linux calculate_alignment(): the cache line, halved while the object fits in half.
        let cases: [(size: Int, align: Int, expectAlign: Int, expectSize: Int)] = [
            (20, 8, 32, 32), (100, 8, 64, 128), (8, 8, 8, 8), (9, 1, 16, 16), (16, 8, 16, 16),
            (17, 8, 32, 32), (33, 8, 64, 64), (64, 8, 64, 64), (65, 8, 64, 128), (20, 128, 128, 128),
        ]
        for c in cases {
            let cache = try SlabCache(name: uniqueCacheName("hw"), size: c.size, align: c.align, flags: .hwcacheAlign)
            XCTAssertEqual(cache.layout.align, c.expectAlign, "size \(c.size) align \(c.align)")
            XCTAssertEqual(cache.objectSize, c.expectSize, "size \(c.size) align \(c.align)")
            let objects = (0..<50).map { _ in cache.allocate()! }
            XCTAssertTrue(objects.allSatisfy { UInt(bitPattern: $0) % UInt(c.expectAlign) == 0 })
            objects.forEach(cache.free)
            try cache.destroy()
        }
    }

    func test_modes_noCPUCacheFlag_givesModeNone_andDefaultFollowsThePlatform() throws {
        let plain = try SlabCache(name: uniqueCacheName("mode"), size: 20, flags: .noCPUCache)
        XCTAssertEqual(plain.mode, .none)
        XCTAssertEqual(plain.magazineCapacity, 0)
        try plain.destroy()
        let cache = try SlabCache(name: uniqueCacheName("mode"), size: 20)
        defer { try? cache.destroy() }
        XCTAssertGreaterThan(cache.magazineCapacity, 0)
        // Parent tests that run this in a child look for this line.
        print("mode \(cache.mode.rawValue)")
        let env = ProcessInfo.processInfo.environment
        if !cslab_have_rseq_sections() {
            // Another architecture, or a build with -Xcc -DCSLAB_PORTABLE: no rseq sections at all.
            XCTAssertEqual(cache.mode, .fallback)
            XCTAssertTrue(SlabCache.cpuLayerReason.hasPrefix("this build has no rseq sections"), SlabCache.cpuLayerReason)
        } else if env["SLAB_CPU_LAYER"] == "fallback" || (env["GLIBC_TUNABLES"] ?? "").contains("glibc.pthread.rseq=0") {
            XCTAssertEqual(cache.mode, .fallback)
        } else if cslab_rseq_size() >= CSLAB_RSEQ_MIN_SIZE {
            XCTAssertEqual(cache.mode, .rseq, "glibc registered rseq (size \(cslab_rseq_size())): the fast mode is expected")
        } else {
            XCTAssertEqual(cache.mode, .fallback)
        }
    }

    func test_statistics_countObjectsAcrossLayers() throws {
        let cache = try SlabCache(name: uniqueCacheName("stats"), size: 20)
        let held = (0..<1000).map { _ in cache.allocate()! }
        var s = cache.statistics
        XCTAssertEqual(s.liveObjects, 1000)
        XCTAssertGreaterThanOrEqual(s.activeObjects, 1000)
        XCTAssertEqual(s.totalObjects, s.totalSlabs * s.objectsPerSlab)
        XCTAssertLessThanOrEqual(s.activeObjects, s.totalObjects)
        XCTAssertEqual(s.slabsCreated - s.slabsReleased, s.totalSlabs)
        held.forEach(cache.free)
        s = cache.statistics
        XCTAssertEqual(s.liveObjects, 0)
        cache.shrink()
        s = cache.statistics
        XCTAssertEqual(s.activeObjects, 0)
        XCTAssertEqual(s.cpuCachedObjects, 0)
        XCTAssertEqual(s.depotRounds, 0)
        XCTAssertEqual(s.totalSlabs, 0)
        XCTAssertEqual(s.slabBytes, 0)
        XCTAssertEqual(cache.checkInvariants(), [])
        try cache.destroy()
    }
}
