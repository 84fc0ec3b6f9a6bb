// The depot's round count (slabinfo's sharedavail) under a shrink race. A regression test for a
// bug found under TSan: Depot.push read a magazine's round count after the CAS had published it,
// so another thread could take the magazine and push it back with another count first, and the
// counter drifted by a magazine (fixed in the commit that moved the read before the CAS).

import Slab
import TestSupport
import XCTest

final class DepotAccountingTests: XCTestCase {
    /// Input: 7 threads stress the cache while an eighth shrinks in a loop. Expected: once every
    /// object is freed and shrink() has run, the depot holds no full magazine and no rounds.
    func test_depotRounds_isZeroAfterShrink_afterConcurrentShrinkRace() throws {
        var drifts: [String] = []
        for round in 0..<scaled(8) {
            for size in [24, 200] {
                let cache = try SlabCache(name: uniqueCacheName("rounds\(size)"), size: size)
                let run = StressRun(cache: cache, slotCount: 512)
                _ = run.workWhileShrinking(workers: 7, iterations: 10_000) { _ in cache.shrink(); sched_yield() }
                run.drainSlots()
                cache.shrink()
                let s = cache.statistics
                XCTAssertEqual(s.depotFullMagazines, 0)
                if s.depotRounds != 0 {
                    drifts.append("round \(round) size \(size): depotRounds \(s.depotRounds) with \(s.depotFullMagazines) full magazines")
                }
                try cache.destroy()
            }
        }
        XCTAssertEqual(drifts, [], "the depot's round count drifted")
    }
}
