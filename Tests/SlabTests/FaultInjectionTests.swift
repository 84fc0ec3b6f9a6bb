// Out of memory: when the page source refuses a slab, allocate() returns nil (no crash), the
// statistics stay consistent, no object is lost, and allocation works again once memory is back.
// Uses the page source's internal fault-injection hook.

@testable import Slab
import Harness
import TestSupport
import XCTest

final class FaultInjectionTests: XCTestCase {
    override func tearDown() {
        PageSource.shared.injectFailure(afterAllocations: nil)
        super.tearDown()
    }

    func test_allocate_whenPageSourceFailsAtOnce_returnsNil_andRecoversWhenMemoryReturns() throws {
        for flags in [SlabFlags(), .noCPUCache] {
            let cache = try SlabCache(name: uniqueCacheName("oom0"), size: 20, flags: flags)
            PageSource.shared.injectFailure(afterAllocations: 0)
            for _ in 0..<3 { XCTAssertNil(cache.allocate(), "\(flags): no slab can be created") }
            var s = cache.statistics
            XCTAssertEqual(s.activeObjects, 0, "\(flags)")
            XCTAssertEqual(s.totalSlabs, 0, "\(flags)")
            XCTAssertEqual(s.liveObjects, 0, "\(flags)")
            XCTAssertEqual(cache.checkInvariants(), [])
            PageSource.shared.injectFailure(afterAllocations: nil)
            let objects = (0..<500).map { _ in cache.allocate() }
            XCTAssertTrue(objects.allSatisfy { $0 != nil }, "\(flags): allocation works again")
            s = cache.statistics
            XCTAssertEqual(s.liveObjects, 500)
            objects.forEach { cache.free($0!) }
            cache.shrink()
            XCTAssertEqual(cache.statistics.activeObjects, 0)
            XCTAssertEqual(cache.statistics.totalSlabs, 0)
            try cache.destroy()
        }
    }

    func test_allocate_untilPageSourceFails_usesEverySlabObject_andLosesNone() throws {
        for flags in [SlabFlags(), .noCPUCache] {
            let cache = try SlabCache(name: uniqueCacheName("oomk"), size: 100, flags: flags)
            let slabs = 5
            PageSource.shared.injectFailure(afterAllocations: slabs)
            var held: [UnsafeMutableRawPointer] = []
            while let p = cache.allocate() {
                held.append(p)
                if held.count > 100_000 { return XCTFail("\(flags): the injected failure never came") }
            }
            XCTAssertNil(cache.allocate(), "\(flags): still out of memory")
            let perSlab = cache.layout.objectsPerSlab
            var s = cache.statistics
            XCTAssertEqual(s.totalSlabs, slabs, "\(flags)")
            XCTAssertEqual(Set(held).count, held.count, "\(flags): no object handed out twice")
            // Every object of the slabs created is either held by us or cached in a magazine.
            XCTAssertEqual(s.activeObjects, slabs * perSlab, "\(flags)")
            XCTAssertEqual(s.liveObjects, held.count, "\(flags)")
            if flags.contains(.noCPUCache) {
                XCTAssertEqual(held.count, slabs * perSlab, "without magazines every object reaches the caller")
            } else {
                XCTAssertLessThanOrEqual(held.count, slabs * perSlab)
            }
            XCTAssertEqual(cache.checkInvariants(), [])

            // Freed objects can be reused while the page source still fails.
            for p in held.suffix(10) { cache.free(p) }
            held.removeLast(10)
            for _ in 0..<10 { held.append(try XCTUnwrap(cache.allocate(), "\(flags): freed objects are reusable")) }

            PageSource.shared.injectFailure(afterAllocations: nil)
            for _ in 0..<(2 * perSlab) { held.append(try XCTUnwrap(cache.allocate())) }
            s = cache.statistics
            XCTAssertGreaterThan(s.totalSlabs, slabs)
            XCTAssertEqual(s.liveObjects, held.count)
            held.forEach(cache.free)
            cache.shrink()
            s = cache.statistics
            XCTAssertEqual(s.activeObjects, 0, "\(flags): no object lost")
            XCTAssertEqual(s.totalSlabs, 0, "\(flags)")
            XCTAssertEqual(cache.checkInvariants(), [])
            try cache.destroy()
        }
    }

    func test_allocate_whenMemoryRunsOutUnderThreads_returnsNilWithoutLosingObjects() throws {
        let cache = try SlabCache(name: uniqueCacheName("oomthreads"), size: 48)
        PageSource.shared.injectFailure(afterAllocations: 20)
        let failures = Counter()
        let live = LiveSet(), problems = ProblemLog()
        let outstanding = HeldObjects()
        runThreads(6) { t in
            var mine: [UnsafeMutableRawPointer] = []
            var rng = SplitMix64(seed: UInt64(t + 1))
            for _ in 0..<scaled(4000) {
                if rng.next() % 3 != 0 || mine.isEmpty {
                    if let p = cache.allocate() {
                        if !live.insert(p) { problems.add("\(p) handed out twice") }
                        mine.append(p)
                    } else {
                        failures.add()
                    }
                } else {
                    let p = mine.swapRemoveRandom(&rng)
                    if !live.remove(p) { problems.add("\(p) not live") }
                    cache.free(p)
                }
            }
            outstanding.add(mine)
        }
        XCTAssertEqual(problems.all, [])
        XCTAssertGreaterThan(failures.value, 0, "the cache ran out of slabs")
        let s = cache.statistics
        XCTAssertLessThanOrEqual(s.totalSlabs, 20)
        XCTAssertEqual(s.liveObjects, live.count)
        PageSource.shared.injectFailure(afterAllocations: nil)
        for p in outstanding.all {
            XCTAssertTrue(live.remove(p))
            cache.free(p)
        }
        cache.shrink()
        XCTAssertEqual(cache.statistics.activeObjects, 0)
        XCTAssertEqual(cache.statistics.totalSlabs, 0)
        XCTAssertEqual(cache.checkInvariants(), [])
        try cache.destroy()
    }
}
