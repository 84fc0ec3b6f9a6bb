// A small, fully known run for the report tests: two workloads (one with sizes, one with
// threads), three allocators, a failed cell whose message needs CSV quoting, and a sawtooth series.
@testable import AllocBench

enum ReportFixtures {
    static let machine = MachineInfo(
        cpuModel: "Test CPU <&> \"quoted\"", cores: 2, kernel: "Linux 6.18 test", glibc: "2.36",
        swift: "Swift version 6.3.1", commit: "abc1234", dirty: true, slabMode: "rseq",
        allocatorVersions: ["glibc": "glibc 2.36", "mimalloc": "libmimalloc2.0 2.0.9+ds-2"],
        date: "2026-01-02T03:04:05Z")

    /// A repetition taking `ns` per op over 1e6 ops.
    static func rep(_ ns: Double, latency: Bool = false, series: Bool = false) -> Repetition {
        Repetition(ops: 1_000_000, seconds: ns * 1e-3,
                   latency: latency ? LatencySummary(p50: ns, p99: ns * 3, p999: ns * 10, max: 5000, samples: 1000, groupOps: 32) : nil,
                   peakRSSBytes: 4 << 20, peakLiveBytes: 2 << 20, rssAfterBytes: series ? 3 << 20 : nil,
                   rssSeries: series ? sawtoothSeries(secondsPerStep: ns / 300) : nil)
    }

    /// Two cycles of a sawtooth of 400 objects of 20 B: fill in 4 steps, drain in 4, a release call
    /// (RSS 6 MiB full, 5 MiB drained, 3 MiB after the call); 1 + 2 x 9 points. The seconds differ
    /// between allocators (each its own speed), the operations do not.
    static func sawtoothSeries(secondsPerStep: Double) -> [RSSPoint] {
        var points = [RSSPoint(seconds: 0, rssBytes: 3 << 20, liveBytes: 0, operations: 0)]
        for cycle in 0..<2 {
            for k in 1...4 {
                points.append(RSSPoint(seconds: Double(points.count) * secondsPerStep, rssBytes: (3 << 20) + k * (768 << 10),
                                       liveBytes: k * 100 * 20, operations: cycle * 800 + k * 100))
            }
            for k in 1...4 {
                points.append(RSSPoint(seconds: Double(points.count) * secondsPerStep, rssBytes: k == 4 ? 5 << 20 : 6 << 20,
                                       liveBytes: (4 - k) * 100 * 20, operations: cycle * 800 + 400 + k * 100))
            }
            points.append(RSSPoint(seconds: Double(points.count) * secondsPerStep, rssBytes: 3 << 20, liveBytes: 0,
                                   operations: cycle * 800 + 800, afterRelease: true))
        }
        return points
    }

    static func cell(_ a: AllocatorID, _ w: String, size: Int = 20, threads: Int = 1, _ ns: [Double],
                     latency: Bool = false, series: Bool = false) -> CellResult {
        CellResult(parameters: CellParameters(allocator: a, workload: w, size: size, threads: threads,
                                              repetitions: ns.count, quick: false),
                   status: .ok, message: nil, repetitions: ns.map { rep($0, latency: latency, series: series) },
                   allocatorVersion: a == .slab ? "slab mode=rseq magazine=64" : nil)
    }

    static var record: RunRecord {
        var results: [CellResult] = []
        for size in [16, 20, 64] {
            let k = Double(size) / 20
            results.append(cell(.glibc, "pair", size: size, [20 * k, 22 * k, 18 * k], latency: true))
            results.append(cell(.mimalloc, "pair", size: size, [10 * k, 11 * k, 12 * k], latency: true))
            results.append(cell(.slab, "pair", size: size, [2 * k, 2.5 * k, 3 * k], latency: true))
        }
        for t in [1, 2, 4] {
            results.append(cell(.glibc, "threads", threads: t, [20, 21, 22]))
            results.append(cell(.mimalloc, "threads", threads: t, [9, 10, 11]))
            results.append(cell(.slab, "threads", threads: t, [4, 5, 6]))
        }
        for a in [AllocatorID.glibc, .mimalloc, .slab] {
            var sawtooth = cell(a, "sawtooth", [30, 31, 32], series: true)
            sawtooth.releaseCall = a == .slab ? ReleaseCall(call: "SlabCache.shrink()", found: true)
                : a == .glibc ? ReleaseCall(call: "malloc_trim(0)", found: true) : ReleaseCall(call: "mi_collect(true)", found: true)
            results.append(sawtooth)
        }
        results.append(CellResult(
            parameters: CellParameters(allocator: .slab, workload: "_crash", size: 20, threads: 1, repetitions: 3, quick: false),
            status: .failed, message: "child killed by SIGABRT; stderr: \"boom\", line 1\nline 2", repetitions: [],
            allocatorVersion: nil))
        return RunRecord(
            runID: "20260102T030405Z-abc1234-dirty", machine: machine, quick: false, interrupted: false, durationSeconds: 12.5,
            workloads: [
                WorkloadSpec(name: "pair", summary: "hot pair", measuresLatency: true, usesThreads: false),
                WorkloadSpec(name: "threads", summary: "independent threads", measuresLatency: false, usesThreads: true),
                WorkloadSpec(name: "sawtooth", summary: "fill & drain <RSS>", measuresLatency: false, usesThreads: false),
            ],
            results: results)
    }
}
