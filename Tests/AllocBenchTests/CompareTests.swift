// `bench compare` on synthetic runs whose answer is known: no change, a real shift, a shift lost in
// noise, too few samples, a machine that slowed down, different workload versions, missing cells,
// and files that are not what they claim (exit 2).
import Foundation
import XCTest
@testable import AllocBench
import TestSupport

final class CompareTests: XCTestCase {
    // MARK: Synthetic runs

    /// Samples around `center` with a deterministic relative jitter of +-`noise` (a fixed pattern,
    /// so every test sees the same numbers).
    static func samples(_ center: Double, n: Int, noise: Double, phase: Int = 0) -> [Double] {
        let pattern = [0.0, 0.8, -0.6, 0.3, -0.9, 0.5, -0.2, 1.0, -0.4, 0.1, -1.0, 0.6, -0.7, 0.2, 0.9, -0.3]
        return (0..<n).map { center * (1 + noise * pattern[($0 + phase) % pattern.count]) }
    }

    static func cell(_ a: AllocatorID, _ w: String, _ ns: [Double], threads: Int = 1) -> CellResult {
        CellResult(parameters: CellParameters(allocator: a, workload: w, size: 20, threads: threads,
                                              repetitions: ns.count, quick: false),
                   status: .ok, message: nil,
                   repetitions: ns.map { Repetition(ops: 1_000_000, seconds: $0 * 1e-3, latency: nil,
                                                    peakRSSBytes: 8 << 20, peakLiveBytes: 20) },
                   allocatorVersion: nil)
    }

    /// A run of pair and batch-lifo-1000 (one thread) and threads x2, for the slab and two peers.
    /// `slab` and `peers` scale the medians; `noise` is the relative jitter.
    static func run(slab: Double = 1, peers: Double = 1, n: Int = 10, noise: Double = 0.01, phase: Int = 0,
                    interleaved: Bool = true, pairVersion: Int = 1, drop: Set<String> = []) -> RunRecord {
        var results: [CellResult] = []
        let base: [(String, Double, Int)] = [("pair", 3.4, 1), ("batch-lifo-1000", 4.4, 1), ("threads", 1.7, 2)]
        for (w, ns, t) in base where !drop.contains(w) {
            results.append(cell(.slab, w, samples(ns * slab, n: n, noise: noise, phase: phase), threads: t))
            results.append(cell(.glibc, w, samples(9 * peers, n: n, noise: noise, phase: phase + 3), threads: t))
            results.append(cell(.mimalloc, w, samples(6 * peers, n: n, noise: noise, phase: phase + 5), threads: t))
        }
        var record = RunRecord(
            runID: "test-\(phase)", machine: ReportFixtures.machine, quick: false, interrupted: false, durationSeconds: 1,
            workloads: [WorkloadSpec(name: "pair", summary: "", measuresLatency: false, usesThreads: false, version: pairVersion),
                        WorkloadSpec(name: "batch-lifo-1000", summary: "", measuresLatency: false, usesThreads: false),
                        WorkloadSpec(name: "threads", summary: "", measuresLatency: false, usesThreads: true)],
            results: results)
        record.sampling = interleaved ? RunRecord.samplingProcesses : RunRecord.samplingRepetitions
        return record
    }

    func compare(_ a: RunRecord, _ b: RunRecord, _ options: CompareOptions = CompareOptions()) throws -> Comparison {
        try Comparator.compare(.run(a), oldPath: "old.json", .run(b), newPath: "new.json", options: options)
    }

    func verdicts(_ c: Comparison, gatedOnly: Bool = true) -> [String: Verdict] {
        var v: [String: Verdict] = [:]
        for r in c.rows where !gatedOnly || r.gated { v["\(r.workload) x\(r.threads) \(r.allocator)"] = r.verdict }
        return v
    }

    // MARK: Verdicts

    func test_identicalRuns_noChange_exit0() throws {
        let c = try compare(Self.run(), Self.run())
        XCTAssertEqual(c.gatedCount, 2, "one-thread slab cells gate; threads x2 does not")
        XCTAssertEqual(Set(verdicts(c).values), [.same])
        XCTAssertEqual(c.exitStatus(gate: true), 0)
        let r = try XCTUnwrap(c.rows.first { $0.workload == "pair" })
        XCTAssertEqual(r.change!, 0, accuracy: 1e-12)
        XCTAssertEqual(r.shift!, 0, accuracy: 1e-12)
        XCTAssertEqual(r.p!, 1, accuracy: 1e-12)
    }

    func test_twentyPercentShift_littleNoise_isARegression_exit1() throws {
        let c = try compare(Self.run(phase: 0), Self.run(slab: 1.2, phase: 7))
        XCTAssertEqual(verdicts(c)["pair x1 slab"], .slower)
        XCTAssertEqual(verdicts(c)["batch-lifo-1000 x1 slab"], .slower)
        XCTAssertEqual(c.exitStatus(gate: false), 1)
        let r = try XCTUnwrap(c.rows.first { $0.workload == "pair" })
        XCTAssertEqual(r.shift!, 0.2, accuracy: 0.01)
        XCTAssertLessThan(r.lower!, 0.2)
        XCTAssertGreaterThan(r.upper!, 0.2)
        XCTAssertLessThan(r.pAdjusted!, 0.05)
        XCTAssertEqual(r.peersChange!, 0, accuracy: 0.01)
        // The multi-thread cell moved too, but only reports.
        let t = try XCTUnwrap(c.rows.first { $0.workload == "threads" })
        XCTAssertFalse(t.gated)
        XCTAssertEqual(t.verdict, .slower)
    }

    func test_twentyPercentShift_insideTheNoise_isNotSignificant() throws {
        let c = try compare(Self.run(noise: 0.6, phase: 0), Self.run(slab: 1.2, noise: 0.6, phase: 7))
        XCTAssertEqual(verdicts(c)["pair x1 slab"], .same)
        XCTAssertEqual(c.exitStatus(gate: true), 0)
        let r = try XCTUnwrap(c.rows.first { $0.workload == "pair" })
        XCTAssertGreaterThan(r.pAdjusted!, 0.05)
    }

    func test_smallShift_significantButInsideTheThreshold_isNoChange() throws {
        // 3% with 0.1% noise is certain, and smaller than the default 5% threshold.
        let c = try compare(Self.run(noise: 0.001, phase: 0), Self.run(slab: 1.03, noise: 0.001, phase: 7))
        let r = try XCTUnwrap(c.rows.first { $0.workload == "pair" })
        XCTAssertLessThan(r.pAdjusted!, 0.05)
        XCTAssertEqual(r.verdict, .same)
        var strict = CompareOptions(thresholds: Thresholds(preset: .strict))
        try strict.thresholds.apply(override: "pair:time=1%")
        XCTAssertEqual(try compare(Self.run(noise: 0.001), Self.run(slab: 1.03, noise: 0.001, phase: 7), strict)
            .rows.first { $0.workload == "pair" }?.verdict, .slower)
    }

    func test_betweenRunAllowance_appliesOnlyToRepetitionSamples() throws {
        // A 12% shift: beyond 5% in an A/B, inside 5% + the allowance between ordinary runs.
        let ab = try compare(Self.run(phase: 0), Self.run(slab: 1.12, phase: 7))
        XCTAssertEqual(verdicts(ab)["pair x1 slab"], .slower)
        let runs = try compare(Self.run(phase: 0, interleaved: false), Self.run(slab: 1.12, phase: 7, interleaved: false))
        XCTAssertEqual(verdicts(runs)["pair x1 slab"], .same)
        XCTAssertEqual(runs.rows.first { $0.workload == "pair" }!.threshold,
                       (5 + Thresholds.measuredAllowance) / 100, accuracy: 1e-12)
        XCTAssertTrue(runs.notes.contains { $0.contains("between-run allowance") })
    }

    func test_tooFewSamples_isUnknown_exit0_butGateExits3() throws {
        let c = try compare(Self.run(n: 3), Self.run(slab: 1.5, n: 3, phase: 7))
        XCTAssertEqual(verdicts(c)["pair x1 slab"], .unknown)
        let r = try XCTUnwrap(c.rows.first { $0.workload == "pair" })
        XCTAssertTrue(r.note!.contains("n = 3 vs 3 cannot reach p < 0.05"), r.note!)
        XCTAssertEqual(c.exitStatus(gate: false), 0)
        XCTAssertEqual(c.exitStatus(gate: true), 3)
        // 5 vs 5 could reach 0.0079 alone, but not 0.05/2 after Holm over two gated rows... it can
        // (0.0079 * 2 < 0.05): so 5 vs 5 is judged.
        XCTAssertEqual(verdicts(try compare(Self.run(n: 5), Self.run(slab: 1.5, n: 5, phase: 7)))["pair x1 slab"], .slower)
    }

    func test_peersMovedAsMuch_isEnvironment_notARegression() throws {
        let c = try compare(Self.run(phase: 0), Self.run(slab: 1.3, peers: 1.3, phase: 7))
        XCTAssertEqual(verdicts(c)["pair x1 slab"], .environment)
        XCTAssertEqual(c.exitStatus(gate: true), 0)
        XCTAssertEqual(c.rows.first { $0.workload == "pair" }!.peersChange!, 0.3, accuracy: 0.01)
        // The slab slower beyond the peers' move is still a regression.
        XCTAssertEqual(verdicts(try compare(Self.run(), Self.run(slab: 1.6, peers: 1.3, phase: 7)))["pair x1 slab"], .slower)
    }

    func test_differentWorkloadVersions_areNotJudged() throws {
        let c = try compare(Self.run(), Self.run(slab: 2, phase: 7, pairVersion: 2))
        let r = try XCTUnwrap(c.rows.first { $0.workload == "pair" })
        XCTAssertEqual(r.verdict, .notJudged)
        XCTAssertEqual(r.note, "workload version 1 in OLD, 2 in NEW: different work")
        XCTAssertNil(r.change)
        XCTAssertEqual(c.exitStatus(gate: false), 1, "batch-lifo-1000 did get slower")
        let onlyPair = try compare(Self.run(drop: ["batch-lifo-1000"]), Self.run(phase: 7, pairVersion: 2, drop: ["batch-lifo-1000"]))
        XCTAssertEqual(onlyPair.exitStatus(gate: false), 0)
        XCTAssertEqual(onlyPair.exitStatus(gate: true), 3)
    }

    /// p99 of single ops and p99 per op of 32-op groups are different statistics of the same
    /// work: the time rows are judged, the p99 rows are not.
    func test_p99_fromDifferentlyTimedLatencySamples_isNotJudged_timeStillIs() throws {
        func withLatency(_ record: RunRecord, groupOps: Int?) -> RunRecord {
            var r = record
            r.workloads[0].measuresLatency = true
            for i in r.results.indices where r.results[i].parameters.workload == "pair" {
                for j in r.results[i].repetitions.indices {
                    let ns = r.results[i].repetitions[j].nsPerOp
                    r.results[i].repetitions[j].latency = LatencySummary(p50: ns, p99: 3 * ns, p999: 5 * ns, max: 50 * ns,
                                                                         samples: 1000, groupOps: groupOps)
                }
            }
            return r
        }
        let options = CompareOptions(metrics: [.time, .p99])
        let c = try compare(withLatency(Self.run(), groupOps: nil), withLatency(Self.run(phase: 7), groupOps: 32), options)
        let p99 = try XCTUnwrap(c.rows.first { $0.workload == "pair" && $0.metric == .p99 })
        XCTAssertEqual(p99.verdict, .notJudged)
        XCTAssertEqual(p99.note, "latency timed in single ops in OLD, groups of 32 ops in NEW: different statistics")
        XCTAssertEqual(c.rows.first { $0.workload == "pair" && $0.metric == .time }?.verdict, .same)
        let same = try compare(withLatency(Self.run(), groupOps: 32), withLatency(Self.run(phase: 7), groupOps: 32), options)
        XCTAssertEqual(same.rows.first { $0.workload == "pair" && $0.metric == .p99 }?.verdict, .same)
    }

    func test_missingAndNewCells_areReported_andAMissingGatedCellFailsTheGate() throws {
        let c = try compare(Self.run(), Self.run(phase: 7, drop: ["pair"]))
        XCTAssertEqual(verdicts(c)["pair x1 slab"], .missing)
        XCTAssertEqual(c.exitStatus(gate: false), 0)
        XCTAssertEqual(c.exitStatus(gate: true), 3)
        let d = try compare(Self.run(drop: ["pair"]), Self.run(phase: 7))
        XCTAssertEqual(verdicts(d, gatedOnly: false)["pair x1 slab"], .new)
        XCTAssertEqual(d.exitStatus(gate: true), 0)
    }

    func test_failedCell_isFailed_withItsMessage() throws {
        var b = Self.run(phase: 7)
        let i = b.results.firstIndex { $0.parameters.allocator == .slab && $0.parameters.workload == "pair" }!
        b.results[i].status = .failed
        b.results[i].message = "child killed by SIGSEGV"
        b.results[i].repetitions = []
        let c = try compare(Self.run(), b)
        let r = try XCTUnwrap(c.rows.first { $0.workload == "pair" && $0.allocator == "slab" })
        XCTAssertEqual(r.verdict, .failed)
        XCTAssertEqual(r.note, "failed in NEW: child killed by SIGSEGV")
        XCTAssertEqual(c.exitStatus(gate: true), 3)
    }

    func test_geometricMean_overCommonCells() throws {
        let c = try compare(Self.run(), Self.run(slab: 1.1, phase: 7))
        let g = try XCTUnwrap(c.geometricMeans.first { $0.allocator == "slab" && $0.metric == .time })
        XCTAssertEqual(g.cells, 3)
        XCTAssertEqual(g.change, 0.1, accuracy: 0.01)
        let peers = try XCTUnwrap(c.geometricMeans.first { $0.allocator == "peers" })
        XCTAssertEqual(peers.change, 0, accuracy: 0.01)
    }

    func test_noCommonCells_isAnError() {
        let a = Self.run(drop: ["pair", "threads"]), b = Self.run(drop: ["batch-lifo-1000", "threads"])
        XCTAssertThrowsError(try compare(a, b)) { XCTAssertTrue("\($0)".contains("no cell in common"), "\($0)") }
    }

    // MARK: Instruction counts

    static func counts(slab: Double, fallback: Double = 300, glibc: Double = 140, version: Int = 1) -> InstructionRecord {
        func c(_ a: String, _ perOp: Double) -> InstructionCell {
            InstructionCell(allocator: a, workload: "pair", workloadVersion: version, size: 20, status: .ok,
                            ops: 100_000, instructions: UInt64(perOp * 100_000))
        }
        return InstructionRecord(runID: "i", machine: ReportFixtures.machine, valgrind: "valgrind-3.19.0",
                                 cacheSimulation: false, durationSeconds: 1,
                                 cells: [c("slab", slab), c("slab-fallback", fallback), c("glibc", glibc)])
    }

    func test_instructions_exactThreshold_noTest() throws {
        func verdict(_ new: Double, preset: Thresholds.Preset = .default) throws -> Verdict {
            let c = try Comparator.compare(.instructions(Self.counts(slab: 30)), oldPath: "a", .instructions(Self.counts(slab: new)),
                                           newPath: "b", options: CompareOptions(thresholds: Thresholds(preset: preset)))
            return c.rows.first { $0.allocator == "slab" }!.verdict
        }
        XCTAssertEqual(try verdict(30), .same)
        XCTAssertEqual(try verdict(30.2), .same, "+0.7% is inside the default 1%")
        XCTAssertEqual(try verdict(30.2, preset: .strict), .slower, "+0.7% is beyond strict's 0.5%")
        XCTAssertEqual(try verdict(33), .slower)
        XCTAssertEqual(try verdict(27), .faster)
        let c = try Comparator.compare(.instructions(Self.counts(slab: 30)), oldPath: "a",
                                       .instructions(Self.counts(slab: 33, version: 2)), newPath: "b")
        XCTAssertEqual(c.rows.first { $0.allocator == "slab" }!.verdict, .notJudged)
        XCTAssertEqual(c.exitStatus(gate: true), 3)
    }

    func test_mixedKinds_areRefused() {
        XCTAssertThrowsError(try Comparator.compare(.run(Self.run()), oldPath: "a.json", .instructions(Self.counts(slab: 30)),
                                                    newPath: "b.json")) {
            XCTAssertEqual("\($0)", "a.json is a run file and b.json a instructions file: compare two files of the same kind")
        }
    }

    // MARK: Files (exit 2)

    var dir: String!

    override func setUpWithError() throws { dir = try temporaryFolder("compare-tests") }

    func write(_ name: String, _ text: String) -> String {
        let path = dir + "/" + name
        FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        return path
    }

    func write(_ name: String, _ record: RunRecord) throws -> String {
        let path = dir + "/" + name
        try ReportWriter.json(record).write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func test_badFiles_eachGetsItsOwnMessage() throws {
        func reason(_ text: String) -> String {
            do { _ = try BenchFile.decode(Data(text.utf8), path: "f.json"); return "decoded" } catch { return "\(error)" }
        }
        XCTAssertEqual(reason(""), "f.json is empty")
        XCTAssertEqual(reason("not json at all"), "f.json is not a bench result file (not a JSON object)")
        XCTAssertEqual(reason("[1, 2]"), "f.json is not a bench result file (not a JSON object)")
        XCTAssertEqual(reason("{\"a\": 1}"), "f.json is not a bench result file (no \"kind\" and \"schemaVersion\")")
        XCTAssertEqual(reason("{\"runID\": \"x\", \"results\": []}"),
                       "f.json was written by an older bench, before result files had a schema version; run the suite again")
        XCTAssertEqual(reason("{\"kind\": \"run\", \"schemaVersion\": 99}"), "f.json has run schema version 99; this bench reads version 2")
        XCTAssertEqual(reason("{\"kind\": \"pictures\", \"schemaVersion\": 1}"),
                       "f.json has kind \"pictures\", which this bench does not read (it reads instructions, run)")
        XCTAssertTrue(reason("{\"kind\": \"run\", \"schemaVersion\": 2}").hasPrefix("f.json is a run file that does not decode: missing field"))
        XCTAssertThrowsError(try BenchFile.load(dir + "/absent.json")) {
            XCTAssertEqual("\($0)", dir + "/absent.json does not exist")
        }
    }

    func test_cli_exitCodes() throws {
        let same = try write("a.json", Self.run())
        let slower = try write("b.json", Self.run(slab: 1.3, phase: 7))
        let few = try write("c.json", Self.run(n: 3, phase: 7))
        let fewer = try write("d.json", Self.run(slab: 1.3, n: 3))
        let ok = try runBench(["compare", same, same], in: dir)
        XCTAssertEqual(ok.status, 0, ok.stderr)
        XCTAssertTrue(ok.stdout.contains("verdict: no regression"), ok.stdout)
        let bad = try runBench(["compare", same, slower], in: dir)
        XCTAssertEqual(bad.status, 1, bad.stderr)
        XCTAssertTrue(bad.stdout.contains("verdict: REGRESSION in 2 gated rows"), bad.stdout)
        XCTAssertEqual(try runBench(["compare", few, fewer], in: dir).status, 0)
        XCTAssertEqual(try runBench(["compare", "--gate", few, fewer], in: dir).status, 3)
        let md = try runBench(["compare", "--format", "markdown", same, slower], in: dir)
        XCTAssertTrue(md.stdout.contains("| pair | 20 | 1 | slab | ns/op |"), md.stdout)
        XCTAssertTrue(md.stdout.contains("**slower**"), md.stdout)
        let js = try runBench(["compare", "--format", "json", same, slower], in: dir)
        let decoded = try JSONDecoder().decode(Comparison.self, from: Data(js.stdout.utf8))
        XCTAssertEqual(decoded.regressions.count, 2)
        for (args, message) in [
            ([same, dir + "/absent.json"], "absent.json does not exist"),
            ([same, write("empty.json", "")], "empty.json is empty"),
            ([same, write("garbage.json", "\u{1}garbage")], "garbage.json is not a bench result file"),
            ([same, write("old.json", "{\"runID\": \"x\", \"results\": []}")], "written by an older bench"),
            (["--preset", "loose", same, same], "--preset 'loose'"),
            (["--threshold", "speed=3", same, same], "unknown metric 'speed'"),
        ] {
            let r = try runBench(["compare"] + args, in: dir)
            XCTAssertEqual(r.status, 2, "\(args): \(r.stdout)")
            XCTAssertTrue(r.stderr.contains(message), "\(args): \(r.stderr)")
        }
    }

    func test_ab_headFlag_takesAValueThatStartsWithADash() throws {
        // The value is parsed (the run then stops at the next check, before building anything).
        let r = try runBench(["ab", "--head-flag", "-DSLAB_INJECT_DELAY", "--samples", "1"], in: dir)
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertTrue(r.stderr.contains("--samples must be at least 2"), r.stderr)
        let outside = try runBench(["ab", "--samples", "2", "--cells", "pair"], in: dir)
        XCTAssertEqual(outside.status, 2)
        XCTAssertTrue(outside.stderr.contains("no Package.swift in this folder or above it"), outside.stderr)
    }

    func test_ab_allocator_isOneOfOurs() throws {
        for (name, message) in [("glibc", "--allocator: glibc is not one of ours"), ("nosuch", "--allocator: nosuch is not one of ours")] {
            let r = try runBench(["ab", "--allocator", name], in: dir)
            XCTAssertEqual(r.status, 2, r.stderr)
            XCTAssertTrue(r.stderr.contains(message), r.stderr)
        }
        // Accepted: the run goes on to the next check (no package here), building nothing.
        let ours = try runBench(["ab", "--allocator", "kmalloc", "--cells", "larson-mixed"], in: dir)
        XCTAssertEqual(ours.status, 2)
        XCTAssertTrue(ours.stderr.contains("no Package.swift in this folder or above it"), ours.stderr)
    }
}
