// The size table of the mixed-size workloads: the same sizes every time, within 8...1024, and
// with the skew the workloads' essay (Mixed.swift) and the README state.

@testable import AllocBench
import XCTest

final class MixedSizesTests: XCTestCase {
    func test_table_isFixed_andWithin8To1024() {
        let a = MixedSizes(), b = MixedSizes()
        defer { a.deallocate(); b.deallocate() }
        XCTAssertTrue((0..<MixedSizes.count).allSatisfy { a.table[$0] == b.table[$0] })
        let sizes = (0..<MixedSizes.count).map { Int(a.table[$0]) }
        XCTAssertEqual(sizes.min(), 8)
        XCTAssertEqual(sizes.max(), 1024)
    }

    func test_table_isSkewedTowardSmallSizes_asDocumented() {
        let t = MixedSizes()
        defer { t.deallocate() }
        let sizes = (0..<MixedSizes.count).map { Int(t.table[$0]) }.sorted()
        func share(_ p: (Int) -> Bool) -> Double { Double(sizes.filter(p).count) / Double(sizes.count) }
        // Half the requests at most 26 bytes, two in three at most 64, three in four at most 128,
        // one in thirteen above 512, mean about 123 bytes.
        XCTAssertEqual(sizes[sizes.count / 2], 26, accuracy: 1)
        XCTAssertEqual(share { $0 <= 64 }, 0.66, accuracy: 0.01)
        XCTAssertEqual(share { $0 <= 128 }, 0.75, accuracy: 0.01)
        XCTAssertEqual(share { $0 > 512 }, 1.0 / 13, accuracy: 0.005)
        XCTAssertEqual(t.mean, 123, accuracy: 2)
    }

    func test_size_followsTheFormula_atItsEnds() {
        XCTAssertEqual(MixedSizes.size(uniform: 0), 8)
        XCTAssertEqual(MixedSizes.size(uniform: 0.5), 27)   // 8 x 128^0.25 = 26.9
        XCTAssertEqual(MixedSizes.size(uniform: 0.999_999), 1024)
    }

    func test_cursor_wrapsAtTheEndOfTheTable() {
        let t = MixedSizes()
        defer { t.deallocate() }
        var cursor = MixedSizes.count - 1
        XCTAssertEqual(t.next(&cursor), Int(t.table[MixedSizes.count - 1]))
        XCTAssertEqual(t.next(&cursor), Int(t.table[0]))
    }
}
