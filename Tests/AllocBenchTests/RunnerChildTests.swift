// The runner against real child processes: the built `bench` binary (in the products directory,
// beside the .xctest bundle) launched for hidden test workloads that crash, hang, print garbage
// or exit non-zero, and the whole command line end to end.
import Foundation
import XCTest
@testable import AllocBench
import TestSupport

final class RunnerChildTests: XCTestCase {
    var dir: String!

    override func setUpWithError() throws { dir = try temporaryFolder("runner-tests") }

    func runner(timeout: Double = 10) throws -> SuiteRunner {
        let options = SuiteOptions(allocators: [.glibc], workloads: [], repetitions: 2, quick: true, timeout: timeout,
                                   outputDirectory: dir)
        return SuiteRunner(options: options, catalog: BenchCatalog(workloads: [], run: { _ in fatalError() }),
                           executable: try builtExecutable("bench"), interrupt: nil)
    }

    func cell(_ workload: String, _ a: AllocatorID = .glibc) -> CellParameters {
        CellParameters(allocator: a, workload: workload, size: 20, threads: 1, repetitions: 2, quick: true)
    }

    /// Runs the bench binary in this test's folder (BenchCLI.swift).
    func bench(_ arguments: [String], limit: Double = 120, sigintAfter: Double? = nil) throws -> BenchRun {
        try runBench(arguments, in: dir, limit: limit, sigintAfter: sigintAfter)
    }

    // MARK: One cell in a child

    func test_cell_childAborts_isRecordedFailedWithTheSignal() throws {
        let r = try runner().runCell(cell("_crash"), library: nil)
        XCTAssertEqual(r.status, .failed)
        // abort() raises SIGABRT; under a sanitizer its own handler may end the child with another
        // signal, which must still be named.
        let sanitized = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "__tsan_init") != nil
        XCTAssertTrue(r.message?.contains(sanitized ? "SIG" : "SIGABRT") == true, r.message ?? "")
        XCTAssertTrue(r.repetitions.isEmpty)
    }

    func test_cell_childHangs_isKilledAtTheTimeoutAndRecordedTimeout() throws {
        let t0 = Date()
        let r = try runner(timeout: 1).runCell(cell("_hang"), library: nil)
        let elapsed = Date().timeIntervalSince(t0)
        XCTAssertEqual(r.status, .timeout)
        XCTAssertTrue(r.message?.contains("timed out") == true, r.message ?? "")
        XCTAssertLessThan(elapsed, 5)
        XCTAssertGreaterThanOrEqual(elapsed, 0.9)
    }

    func test_cell_childPrintsGarbage_isRecordedFailed() throws {
        let r = try runner().runCell(cell("_garbage"), library: nil)
        XCTAssertEqual(r.status, .failed)
        XCTAssertTrue(r.message?.contains("unreadable result") == true, r.message ?? "")
    }

    func test_cell_childExitsNonZero_isRecordedFailedWithStatusAndStderr() throws {
        let r = try runner().runCell(cell("_exit"), library: nil)
        XCTAssertEqual(r.status, .failed)
        XCTAssertTrue(r.message?.contains("status 3") == true, r.message ?? "")
        XCTAssertTrue(r.message?.contains("on purpose") == true, r.message ?? "")
    }

    func test_cell_fakeWorkload_roundTripsTheResult() throws {
        let r = try runner().runCell(cell("_fake"), library: nil)
        XCTAssertEqual(r.status, .ok, r.message ?? "")
        XCTAssertEqual(r.parameters, cell("_fake"))
        XCTAssertEqual(r.repetitions.count, 2)
        XCTAssertNotNil(r.repetitions.first?.latency)
    }

    func test_cell_peerIsReallyPreloaded() throws {
        guard let lib = PeerLibraries.locate(.mimalloc) else { throw XCTSkip("mimalloc not installed") }
        let r = try runner().runCell(cell("_fake", .mimalloc), library: lib)
        XCTAssertEqual(r.status, .ok, r.message ?? "")
        XCTAssertTrue(r.allocatorVersion?.hasPrefix("mimalloc") == true, r.allocatorVersion ?? "nil")
    }

    // MARK: The command line

    func test_cli_unknownAllocator_exits2AndListsValidNames() throws {
        let run = try bench(["--allocators", "glibc,hoard"])
        XCTAssertEqual(run.status, 2)
        XCTAssertTrue(run.stderr.contains("unknown allocator 'hoard'"), run.stderr)
        for a in AllocatorID.builtIn { XCTAssertTrue(run.stderr.contains(a.rawValue), run.stderr) }
    }

    func test_cli_unknownWorkload_exits2AndListsValidNames() throws {
        let run = try bench(["--workloads", "nope"])
        XCTAssertEqual(run.status, 2)
        XCTAssertTrue(run.stderr.contains("unknown workload 'nope'"), run.stderr)
        for w in WorkloadCatalog.all.map(\.name) { XCTAssertTrue(run.stderr.contains(w), "\(w) not listed: \(run.stderr)") }
        XCTAssertFalse(run.stderr.contains("_crash"))
    }

    func test_cli_list_showsAllocatorsAndWorkloadsButNoHiddenOnes() throws {
        let run = try bench(["--list"])
        XCTAssertEqual(run.status, 0, run.stderr)
        for a in AllocatorID.builtIn { XCTAssertTrue(run.stdout.contains(a.rawValue)) }
        for w in WorkloadCatalog.all.map(\.name) { XCTAssertTrue(run.stdout.contains(w)) }
        XCTAssertFalse(run.stdout.contains("_crash"))
        XCTAssertFalse(run.stdout.contains("_fake"))
        XCTAssertTrue(run.stdout.contains("Defaults"))
        // Each built-in allocator says what it is: no two share a description (slab-bare was once
        // listed as the slab layer only, slab-nocpu's words).
        let lines = run.stdout.split(separator: "\n").map(String.init)
        let descriptions = AllocatorID.builtIn.compactMap { a -> String? in
            guard let line = lines.first(where: { $0.hasPrefix("  " + a.rawValue + " ") }) else { return nil }
            return line.dropFirst(2 + a.rawValue.count).trimmingCharacters(in: .whitespaces)
        }
        XCTAssertEqual(descriptions.count, AllocatorID.builtIn.count, run.stdout)
        XCTAssertEqual(Set(descriptions).count, descriptions.count, run.stdout)
    }

    func test_cli_runWithCrashAndHangCells_goesOnAndWritesEverything() throws {
        let run = try bench(["--allocators", "glibc,slab", "--workloads", "_fake,_crash,_hang", "--sizes", "20",
                             "--threads", "1", "--repetitions", "2", "--timeout", "1", "--output", dir])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stderr.contains("[6/6]"), run.stderr)
        XCTAssertTrue(run.stderr.contains("ETA"), run.stderr)
        let csv = CSVReport.parse(try String(contentsOfFile: dir + "/latest.csv", encoding: .utf8))
        let col = Dictionary(uniqueKeysWithValues: csv[0].enumerated().map { ($1, $0) })
        let statuses = csv.dropFirst().map { "\($0[col["allocator"]!])/\($0[col["workload"]!])/\($0[col["status"]!])" }
        XCTAssertEqual(statuses.sorted(), ["glibc/_crash/failed", "glibc/_fake/ok", "glibc/_fake/ok", "glibc/_hang/timeout",
                                           "slab/_crash/failed", "slab/_fake/ok", "slab/_fake/ok", "slab/_hang/timeout"])
        for name in ["latest.json", "latest.txt"] + Charts.fileNames {
            XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/" + name), name)
        }
    }

    func test_cli_ctrlC_killsTheChild_exits130_andLeavesLatestIntact() throws {
        try AtomicFile.write("earlier results\n", to: dir + "/latest.csv")
        let run = try bench(["--allocators", "glibc", "--workloads", "_fake,_hang", "--sizes", "20", "--threads", "1",
                             "--timeout", "60", "--output", dir], limit: 20, sigintAfter: 1.5)
        XCTAssertEqual(run.status, 130, run.stderr)
        XCTAssertLessThan(run.seconds, 10)
        XCTAssertEqual(try String(contentsOfFile: dir + "/latest.csv", encoding: .utf8), "earlier results\n")
        let data = try Data(contentsOf: URL(fileURLWithPath: dir + "/interrupted.json"))
        let record = try JSONDecoder().decode(RunRecord.self, from: data)
        XCTAssertTrue(record.interrupted)
        XCTAssertEqual(record.results.map(\.parameters.workload), ["_fake"])
    }

    /// End to end with a real workload. Needs the workloads (Workloads/) to be in place.
    func test_cli_quickPairGlibcAndSlab_producesAllOutputs() throws {
        let run = try bench(["--quick", "--allocators", "glibc,slab", "--workloads", "pair", "--sizes", "20",
                             "--repetitions", "2", "--output", dir], limit: 90)
        XCTAssertEqual(run.status, 0, run.stderr)
        for name in ["latest.json", "latest.csv", "latest.txt"] + Charts.fileNames {
            XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/" + name), name)
        }
        let csv = CSVReport.parse(try String(contentsOfFile: dir + "/latest.csv", encoding: .utf8))
        XCTAssertEqual(csv.count, 1 + 2 * 2, "header + 2 allocators x 2 repetitions")
        let col = Dictionary(uniqueKeysWithValues: csv[0].enumerated().map { ($1, $0) })
        for row in csv.dropFirst() {
            XCTAssertEqual(row[col["status"]!], "ok", row[col["message"]!])
            XCTAssertGreaterThan(Double(row[col["ns_per_op"]!]) ?? 0, 0)
            XCTAssertFalse(row[col["p99_ns"]!].isEmpty, "pair measures latency")
        }
        let text = try String(contentsOfFile: dir + "/latest.txt", encoding: .utf8)
        XCTAssertTrue(text.contains("== pair"))
        XCTAssertTrue(text.contains("slab/best"), "glibc is a peer, so the slab has a best-peer ratio")
    }
}
