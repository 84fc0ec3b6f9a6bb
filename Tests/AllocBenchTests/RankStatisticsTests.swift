// The rank statistics against values computed independently (scipy and a brute-force count of the
// null distribution, RankStatisticsFixtures.swift), and their textbook floors.
import XCTest
@testable import AllocBench

final class RankStatisticsTests: XCTestCase {
    func test_mannWhitney_matchesScipy_onEveryFixture() {
        for (i, f) in rankFixtures.enumerated() {
            let r = RankStatistics.mannWhitney(f.x, f.y)
            XCTAssertEqual(r.exact, f.exact, "fixture \(i): exact/asymptotic choice")
            XCTAssertEqual(r.p, f.p, accuracy: 1e-12 + 1e-9 * f.p, "fixture \(i): p")
        }
    }

    func test_hodgesLehmann_matchesBruteForce_onEveryFixture() {
        for (i, f) in rankFixtures.enumerated() {
            let s = RankStatistics.hodgesLehmann(f.x, f.y)
            XCTAssertEqual(s.estimate, f.estimate, accuracy: 1e-12, "fixture \(i): estimate")
            XCTAssertEqual(s.lower == nil, f.lower == nil, "fixture \(i): interval exists")
            if let lo = s.lower, let flo = f.lower { XCTAssertEqual(lo, flo, accuracy: 1e-12, "fixture \(i): lower") }
            if let hi = s.upper, let fhi = f.upper { XCTAssertEqual(hi, fhi, accuracy: 1e-12, "fixture \(i): upper") }
        }
    }

    func test_minimumPValue_isTheTextbookFloor() {
        XCTAssertEqual(RankStatistics.minimumPValue(3, 3), 0.1, accuracy: 1e-12)
        XCTAssertEqual(RankStatistics.minimumPValue(4, 4), 2.0 / 70, accuracy: 1e-12)
        XCTAssertEqual(RankStatistics.minimumPValue(5, 5), 2.0 / 252, accuracy: 1e-12)
        XCTAssertEqual(RankStatistics.minimumPValue(6, 6), 2.0 / 924, accuracy: 1e-12)
        XCTAssertEqual(RankStatistics.samplesNeeded(alpha: 0.05), 4)
        XCTAssertEqual(RankStatistics.samplesNeeded(alpha: 0.05 / 20), 6)
        XCTAssertEqual(RankStatistics.samplesNeeded(alpha: 0.05 / 40), 7)
    }

    func test_completeSeparation_reachesTheFloor() {
        let x = [1.0, 2, 3, 4, 5], y = [6.0, 7, 8, 9, 10]
        XCTAssertEqual(RankStatistics.mannWhitney(x, y).p, RankStatistics.minimumPValue(5, 5), accuracy: 1e-15)
        XCTAssertEqual(RankStatistics.mannWhitney(y, x).p, RankStatistics.minimumPValue(5, 5), accuracy: 1e-15)
    }

    func test_exactCounts_sumToTheBinomialCoefficient_andAreSymmetric() {
        for m in 0...7 {
            for n in 0...7 {
                let c = RankStatistics.exactCounts(m, n)
                XCTAssertEqual(c.count, m * n + 1)
                var binomial = 1.0
                if m > 0 { for i in 1...m { binomial = binomial * Double(n + i) / Double(i) } }
                XCTAssertEqual(c.reduce(0, +), binomial, accuracy: 1e-9, "C(\(m + n), \(m))")
                XCTAssertEqual(c, c.reversed(), "U is symmetric about mn/2 for m=\(m) n=\(n)")
            }
        }
    }

    func test_holm_matchesTheStepDownDefinition() {
        let p = [0.01, 0.04, 0.03, 0.005]
        // Sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 -> 0.02, 0.03, 0.06, 0.06 (monotone).
        let adjusted = RankStatistics.holm(p)
        XCTAssertEqual(adjusted[3], 0.02, accuracy: 1e-12)
        XCTAssertEqual(adjusted[0], 0.03, accuracy: 1e-12)
        XCTAssertEqual(adjusted[2], 0.06, accuracy: 1e-12)
        XCTAssertEqual(adjusted[1], 0.06, accuracy: 1e-12)
        // 0.8 x 2 caps at 1, and the step-down never lets a later adjusted p fall below it.
        XCTAssertEqual(RankStatistics.holm([0.9, 0.8]), [1, 1])
        XCTAssertEqual(RankStatistics.holm([0.02]), [0.02])
    }

    func test_normalQuantile_matchesScipy() {
        XCTAssertEqual(RankStatistics.normalQuantile(0.975), normalQuantile975, accuracy: 1e-9)
        XCTAssertEqual(RankStatistics.normalQuantile(0.999), normalQuantile999, accuracy: 1e-9)
        XCTAssertEqual(RankStatistics.normalQuantile(0.001), normalQuantile001, accuracy: 1e-9)
    }

    func test_largeSamples_useTheNormalApproximation_andStillFindAShift() {
        let x = (0..<60).map { 1.0 + Double($0) * 0.001 }
        let y = (0..<60).map { 1.05 + Double($0) * 0.001 }
        let r = RankStatistics.mannWhitney(x, y)
        XCTAssertFalse(r.exact)
        XCTAssertLessThan(r.p, 1e-6)
        let s = RankStatistics.hodgesLehmann(x, y)
        XCTAssertEqual(s.estimate, 0.05, accuracy: 1e-9)
        XCTAssertLessThan(s.lower!, 0.05)
        XCTAssertGreaterThan(s.upper!, 0.05)
    }
}
