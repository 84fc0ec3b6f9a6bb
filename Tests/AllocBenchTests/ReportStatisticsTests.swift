import XCTest
@testable import AllocBench

final class ReportStatisticsTests: XCTestCase {
    func test_median_oddCount_isMiddleValue() {
        XCTAssertEqual(Spread.median([5, 1, 3]), 3)
        XCTAssertEqual(Spread.median([7]), 7)
    }

    func test_median_evenCount_isMeanOfMiddlePair() {
        XCTAssertEqual(Spread.median([4, 1, 3, 2]), 2.5)
    }

    func test_spread_minMaxAndMAD() throws {
        // median 3; deviations 2,1,0,1,7 -> sorted 0,1,1,2,7 -> MAD 1.
        let s = try XCTUnwrap(Spread([1, 2, 3, 4, 10]))
        XCTAssertEqual(s.median, 3)
        XCTAssertEqual(s.min, 1)
        XCTAssertEqual(s.max, 10)
        XCTAssertEqual(s.mad, 1)
        XCTAssertEqual(s.count, 5)
        XCTAssertEqual(try XCTUnwrap(s.relativeMAD), 1.0 / 3, accuracy: 1e-12)
    }

    func test_spread_evenCountMAD() throws {
        // median 2.5; deviations 1.5, 0.5, 0.5, 1.5 -> MAD 1.
        let s = try XCTUnwrap(Spread([1, 2, 3, 4]))
        XCTAssertEqual(s.median, 2.5)
        XCTAssertEqual(s.mad, 1)
    }

    func test_spread_dropsNaNAndInfinity_andIsNilWhenNothingFinite() throws {
        let s = try XCTUnwrap(Spread([.nan, 2, .infinity, 4]))
        XCTAssertEqual(s.count, 2)
        XCTAssertEqual(s.median, 3)
        XCTAssertNil(Spread([]))
        XCTAssertNil(Spread([.nan]))
    }

    func test_ratio_isValueOverReference_nilWhenUndefined() {
        XCTAssertEqual(Ratio.of(5, to: 20), 0.25)
        XCTAssertNil(Ratio.of(nil, to: 20))
        XCTAssertNil(Ratio.of(5, to: nil))
        XCTAssertNil(Ratio.of(5, to: 0))
        XCTAssertNil(Ratio.of(.nan, to: 1))
    }

    func test_bestPeer_ignoresOurAllocators() throws {
        let best = try XCTUnwrap(Ratio.bestPeer(in: [.glibc: 20, .mimalloc: 9, .tcmalloc: 12, .slab: 1, .slabNoCPU: 2]))
        XCTAssertEqual(best.allocator, .mimalloc)
        XCTAssertEqual(best.value, 9)
        XCTAssertNil(Ratio.bestPeer(in: [.slab: 1]))
    }

    func test_runSummary_slabRatioToBestPeer_dividesMediansOfTheSameCell() throws {
        let run = RunSummary(ReportFixtures.record)
        // pair at 20 B: glibc median 20, mimalloc 11, slab 2.5 -> 2.5 / 11.
        let key = CellKey(workload: "pair", size: 20, threads: 1)
        XCTAssertEqual(run.medians(key)[.glibc], 20)
        XCTAssertEqual(try XCTUnwrap(run.slabRatioToBestPeer(key)), 2.5 / 11, accuracy: 1e-12)
        XCTAssertEqual(run.headlineSize(of: "pair"), 20)
        XCTAssertEqual(run.allocators, [.glibc, .mimalloc, .slab])
    }

    func test_cellSummary_failedCellHasNoFigures() {
        let run = RunSummary(ReportFixtures.record)
        let s = run.cells[CellKey(workload: "_crash", size: 20, threads: 1)]?[.slab]
        XCTAssertEqual(s?.status, .failed)
        XCTAssertNil(s?.nsPerOp)
    }

    func test_cellSummary_percentilesAreMediansOverRepetitions() throws {
        let run = RunSummary(ReportFixtures.record)
        let s = try XCTUnwrap(run.cells[CellKey(workload: "pair", size: 20, threads: 1)]?[.glibc])
        // p99 = 3 x ns per repetition: 60, 66, 54 -> median 60.
        XCTAssertEqual(try XCTUnwrap(s.p99), 60, accuracy: 1e-9)
        XCTAssertEqual(try XCTUnwrap(s.mopsPerSecond?.median), 50, accuracy: 1e-9)
    }
}
