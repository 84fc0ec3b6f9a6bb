// shrink() gives memory back to the OS (measured in the resident set), reap() returns only the
// depot's full magazines outside the working set, and the memory overhead at 1M live 20-byte
// objects stays within 3% of 24 bytes per object.

@testable import Slab
import CSlab
import TestSupport
import XCTest

final class ShrinkAndReapTests: XCTestCase {
    /// Allocates `count` objects, each written by `write(object, i)`, and reads the resident set
    /// before and after. The array that holds the objects is filled before the first reading: its
    /// memory is not the cache's.
    private func allocateMeasuringRSS(_ cache: SlabCache, count: Int, write: (UnsafeMutableRawPointer, Int) -> Void)
        throws -> (objects: [UnsafeMutableRawPointer?], rssBefore: Int, rssAfter: Int) {
        var objects = [UnsafeMutableRawPointer?](repeating: nil, count: count)
        let before = try XCTUnwrap(ResidentMemory.bytes())
        for i in 0..<count {
            let p = try XCTUnwrap(cache.allocate())
            write(p, i)
            objects[i] = p
        }
        return (objects, before, try XCTUnwrap(ResidentMemory.bytes()))
    }

    func test_shrink_afterFreeingEverything_returnsMostSlabBytesToTheOS() throws {
        try ResidentMemory.skipIfDistorted()
        for flags in [SlabFlags(), .noCPUCache] {
            let count = 200_000
            let cache = try SlabCache(name: uniqueCacheName("rss"), size: 256, flags: flags)
            let (held, rss0, rss1) = try allocateMeasuringRSS(cache, count: count) { p, _ in
                p.initializeMemory(as: UInt8.self, repeating: 0x5A, count: 256)
            }
            let slabBytes = cache.statistics.slabBytes
            XCTAssertGreaterThanOrEqual(slabBytes, count * 256)
            XCTAssertGreaterThan(Double(rss1 - rss0), 0.9 * Double(count * 256),
                                 "\(flags): allocating \(count) x 256 B should have grown RSS (measurement sanity)")
            for i in 0..<count { cache.free(held[i]!) }
            let released = cache.shrink()
            let rss2 = try XCTUnwrap(ResidentMemory.bytes())
            let s = cache.statistics
            XCTAssertEqual(s.slabBytes, 0, "\(flags)")
            XCTAssertEqual(s.activeObjects, 0, "\(flags)")
            XCTAssertEqual(released, slabBytes, "\(flags): shrink reports the bytes of every slab")
            let dropped = rss1 - rss2
            print("shrink \(flags.isEmpty ? "default" : "noCPUCache") (mode \(cache.mode.rawValue)): slab bytes \(slabBytes), RSS +\(rss1 - rss0) on allocation, -\(dropped) after shrink")
            XCTAssertGreaterThan(Double(dropped), 0.85 * Double(slabBytes),
                                 "\(flags): RSS fell by \(dropped) of \(slabBytes) slab bytes")
            XCTAssertEqual(cache.checkInvariants(), [])
            try cache.destroy()
        }
    }

    /// Fills the depot with full magazines: allocate `n` objects on this thread, free them all.
    private func fillDepot(_ cache: SlabCache, objects n: Int) -> [UnsafeMutableRawPointer] {
        let held = (0..<n).map { _ in cache.allocate()! }
        held.forEach(cache.free)
        return held
    }

    func test_reap_secondReapWithNoActivity_returnsTheDepotsIdleFullMagazines() throws {
        let cache = try SlabCache(name: uniqueCacheName("reap"), size: 20)
        let m = cache.magazineCapacity
        XCTAssertGreaterThan(m, 0)
        _ = fillDepot(cache, objects: 20 * m)
        let filled = cache.statistics
        XCTAssertGreaterThanOrEqual(filled.depotFullMagazines, 10, "frees beyond two magazines per CPU go to the depot")
        XCTAssertEqual(filled.depotRounds, filled.depotFullMagazines * m)

        // The first reap starts the interval: the depot held no idle magazine before it.
        cache.reap()
        let first = cache.statistics
        XCTAssertEqual(first.depotFullMagazines, filled.depotFullMagazines, "no interval has passed yet")
        XCTAssertEqual(first.activeObjects, filled.activeObjects)

        // No activity for a whole interval: every full magazine in the depot is idle.
        let bytes = cache.reap()
        let second = cache.statistics
        XCTAssertEqual(second.depotFullMagazines, 0)
        XCTAssertEqual(second.depotRounds, 0)
        XCTAssertEqual(second.activeObjects, filled.activeObjects - filled.depotRounds, "rounds go back to their slabs")
        XCTAssertEqual(second.cpuCachedObjects, filled.cpuCachedObjects, "reap leaves the CPUs' magazines alone")
        XCTAssertEqual(second.depotEmptyMagazines, filled.depotEmptyMagazines + filled.depotFullMagazines)
        XCTAssertEqual(bytes, (filled.totalSlabs - second.totalSlabs) * second.pagesPerSlab * SlabLayout.pageSize)
        XCTAssertGreaterThan(bytes, 0, "slabs emptied by the reap are released")
        XCTAssertEqual(cache.checkInvariants(), [])
        cache.shrink()
        XCTAssertEqual(cache.statistics.activeObjects, 0)
        try cache.destroy()
    }

    func test_reap_keepsTheWorkingSet_andReturnsOnlyMagazinesNotNeededInTheInterval() throws {
        let cache = try SlabCache(name: uniqueCacheName("workingset"), size: 20)
        let m = cache.magazineCapacity
        _ = fillDepot(cache, objects: 20 * m)
        cache.reap()                                   // start an interval
        let start = cache.statistics
        // Use some of the depot in this interval: more than the CPUs' own magazines can serve.
        let used = (0..<(6 * m)).map { _ in cache.allocate()! }
        let taken = cache.statistics.depotFullTaken - start.depotFullTaken
        XCTAssertGreaterThanOrEqual(taken, 1)
        used.forEach(cache.free)
        let beforeReap = cache.statistics
        cache.reap()
        let after = cache.statistics
        // The low-water mark of the interval was start - taken: exactly those were never needed.
        XCTAssertEqual(beforeReap.depotFullMagazines - after.depotFullMagazines, start.depotFullMagazines - taken,
                       "reap returns the magazines outside the working set")
        XCTAssertGreaterThanOrEqual(after.depotFullMagazines, 1, "the working set stays in the depot")
        XCTAssertEqual(cache.checkInvariants(), [])
        cache.shrink()
        try cache.destroy()
    }

    /// The bytes resident in every mapping the cache owns: its range, its slab table, its page
    /// map and its magazine region.
    private func cacheResidentBytes(_ cache: SlabCache) throws -> Int {
        let layer = cache.slabLayer, pages = layer.pages
        var total = try XCTUnwrap(ResidentMemory.bytes(in: pages.base, length: pages.size))
        total += try XCTUnwrap(ResidentMemory.bytes(in: UInt(bitPattern: layer.table.headers),
                                                   length: layer.table.count * MemoryLayout<cslab_slab>.stride))
        total += try XCTUnwrap(ResidentMemory.bytes(in: UInt(bitPattern: pages.pageMap),
                                                   length: PageSource.pageMapBytes(forRangeBytes: pages.size)))
        if let region = cache.cpuLayer?.region {
            total += try XCTUnwrap(ResidentMemory.bytes(in: UInt(bitPattern: region.base), length: MagazineRegion.regionBytes))
        }
        return total
    }

    func test_memoryOverhead_at1MLive20ByteObjects_isWithin3PercentOf24BytesEach() throws {
        // The cache's own mappings, page by page: the process's RSS also moves with the test
        // harness's heap (0.4 to 0.8 MB over this loop, 2-3% of what is measured).
        let count = 1_000_000
        let cache = try SlabCache(name: uniqueCacheName("overhead"), size: 20, align: 8)
        XCTAssertEqual(cache.objectSize, 24)
        let own0 = try cacheResidentBytes(cache)
        let (held, rss0, rss1) = try allocateMeasuringRSS(cache, count: count) { p, i in
            p.storeBytes(of: UInt64(i), as: UInt64.self)
        }
        let own = try cacheResidentBytes(cache) - own0
        let s = cache.statistics
        let overhead = Double(own) / Double(count * 24) - 1
        let geometry = cache.layout.overheadRatio - 1
        print(String(format: "memory overhead at 1M live 20-byte objects: the cache's mappings %d B = %.2f B/object, overhead %.2f%% (slab geometry %.2f%%, %d slabs of %d objects, %d cached rounds, mode %@); process RSS delta %d B",
                     own, Double(own) / Double(count), overhead * 100, geometry * 100,
                     s.totalSlabs, s.objectsPerSlab, s.cpuCachedObjects + s.depotRounds, cache.mode.rawValue, rss1 - rss0))
        XCTAssertGreaterThanOrEqual(overhead, geometry, "less resident than the objects' own pages: a measurement fault")
        XCTAssertLessThanOrEqual(overhead, 0.03)
        if !ResidentMemory.isDistortedBySanitizer {
            // Nothing per object outside the cache's mappings either (a malloc per slab, say).
            XCTAssertLessThanOrEqual(Double(rss1 - rss0) / Double(count * 24) - 1, 0.06)
        }
        for i in 0..<count { cache.free(held[i]!) }
        cache.shrink()
        XCTAssertEqual(cache.statistics.totalSlabs, 0)
        try cache.destroy()
    }
}
