// Latency percentiles that are real numbers: each sample times a group of consecutive ops and is
// divided by the group, because one fast op is below this clock's resolution.

import XCTest
@testable import AllocBench

final class LatencyGroupTests: XCTestCase {
    func test_latencySamples_percentilesAreNanosecondsPerOpOfTheGroup() throws {
        var samples = LatencySamples(capacity: 100, floor: 20, groupOps: 32)
        defer { samples.deallocate() }
        // 99 groups of 32 ops taking 100 ns (+ the 20 ns clock floor), one taking 3,200 ns.
        for i in 0..<100 { samples.record(start: 1000, end: 1000 + 20 + (i == 99 ? 3200 : 100)) }
        let s = try XCTUnwrap(samples.summary())
        XCTAssertEqual(s.groupOps, 32)
        XCTAssertEqual(s.samples, 100)
        XCTAssertEqual(s.p50, 100.0 / 32, accuracy: 0.01)
        XCTAssertEqual(s.max, 3200.0 / 32, accuracy: 0.1)
    }

    /// On this machine's clock (steps of about 10 ns) one slab op timed alone read as 0; timed in
    /// groups, the median is a real number of nanoseconds.
    func test_pair_onTheSlab_p50IsARealNumber_timedInGroups() throws {
        let r = WorkloadCatalog.run(CellParameters(allocator: .slab, workload: "pair", size: 20, threads: 1,
                                                   repetitions: 1, quick: true))
        XCTAssertEqual(r.status, .ok, r.message ?? "")
        let latency = try XCTUnwrap(r.repetitions.first?.latency)
        XCTAssertEqual(latency.groupOps, latencyGroup)
        XCTAssertLessThanOrEqual(latency.p50, latency.p99)
        // The median op of the sampling pass and the throughput loop's mean op are the same
        // work: within a factor of 4 of each other even on a busy machine (single ops read 0).
        let nsPerOp = try XCTUnwrap(r.repetitions.first?.nsPerOp)
        XCTAssertGreaterThan(latency.p50, nsPerOp / 4, "p50 \(latency.p50) ns against \(nsPerOp) ns/op")
        XCTAssertLessThan(latency.p50, nsPerOp * 4, "p50 \(latency.p50) ns against \(nsPerOp) ns/op")
    }
}
