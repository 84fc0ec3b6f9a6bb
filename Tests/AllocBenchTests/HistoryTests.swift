// results/history.jsonl: the line of a run (medians per cell and allocator, slab over glibc) and
// of a time gate (the base's and the head's slab medians), built from a known run; and the files
// committed in results/ (history, runs, instruction counts, the baseline) still read.
import Foundation
import XCTest
@testable import AllocBench

final class HistoryTests: XCTestCase {
    func test_runLine_hasTheMedianOfEveryCellThatRan_andSlabOverGlibc() {
        let e = HistoryEntry(run: ReportFixtures.record)
        XCTAssertEqual(e.kind, "run")
        XCTAssertEqual(e.commit, ReportFixtures.machine.commitLabel)
        XCTAssertEqual(e.date, ReportFixtures.machine.date)
        XCTAssertEqual(e.machine, ReportFixtures.machine.cpuModel)
        XCTAssertEqual(e.cores, 2)
        XCTAssertEqual(e.medians["pair/20/1"], ["glibc": 20, "mimalloc": 11, "slab": 2.5])
        XCTAssertEqual(e.medians["threads/20/4"], ["glibc": 21, "mimalloc": 10, "slab": 5])
        XCTAssertNil(e.medians["_crash/20/1"], "a failed cell has no median")
        XCTAssertEqual(e.slabOverGlibc["pair/20/1"], 0.125)
        XCTAssertEqual(e.slabOverGlibc.count, e.medians.count, "every cell here ran both slab and glibc")
        XCTAssertEqual(e.instructionsPerOp, [:])
    }

    func test_gateLine_putsTheBasesAndTheHeadsSlabMediansSideBySide() {
        var base = ReportFixtures.record
        base.results = base.results.filter { $0.parameters.workload == "pair" && $0.parameters.allocator == .slab }
        var head = base
        head.machine.commit = "def5678"
        head.results = head.results.map { c in
            var c = c
            c.repetitions = c.repetitions.map { r in var r = r; r.seconds *= 2; return r }
            return c
        }
        let e = HistoryEntry(gate: base, head: head)
        XCTAssertEqual(e.kind, "gate-time")
        XCTAssertEqual(e.commit, head.machine.commitLabel)
        XCTAssertEqual(e.medians["pair/20/1"], ["slab@base": 2.5, "slab@head": 5])
        XCTAssertEqual(e.medians.count, 3)
        XCTAssertEqual(e.slabOverGlibc, [:], "a gate line has no glibc to compare with")
    }

    /// `bench ab --allocator kmalloc`: its medians are kmalloc's, and the slab's trend leaves them out.
    func test_gateLine_ofAnotherAllocator_namesIt_andIsNotTheSlabsTrend() {
        func only(_ a: AllocatorID, _ r: RunRecord) -> RunRecord {
            var r = r
            r.results = r.results.filter { $0.parameters.workload == "pair" && $0.parameters.allocator == a }
            return r
        }
        let e = HistoryEntry(gate: only(.glibc, ReportFixtures.record), head: only(.glibc, ReportFixtures.record))
        XCTAssertEqual(Set(e.medians["pair/20/1"]?.keys.map { $0 } ?? []), ["glibc@base", "glibc@head"])
        XCTAssertFalse(History.trend([e]).contains("pair 20"), History.trend([e]))
    }

    func test_trend_tablesTheRunRatiosAndTheGateRatios_perTrendCell() {
        var base = ReportFixtures.record
        base.results = base.results.filter { $0.parameters.allocator == .slab }
        var head = base
        head.results = head.results.map { c in
            var c = c
            c.repetitions = c.repetitions.map { r in var r = r; r.seconds *= 1.5; return r }
            return c
        }
        let text = History.trend([HistoryEntry(run: ReportFixtures.record), HistoryEntry(gate: base, head: head)])
        let lines = text.split(separator: "\n").map(String.init)
        // Of the trend cells, the fixture has pair 20 B and sawtooth 20 B (one thread).
        let runTable = lines.firstIndex { $0.hasPrefix("slab / glibc") }!
        XCTAssertTrue(lines[runTable + 1].contains("pair 20") && lines[runTable + 1].contains("sawtooth 20"), text)
        XCTAssertFalse(lines[runTable + 1].contains("batch-fifo-1000"), "a column only for cells some entry has:\n\(text)")
        XCTAssertTrue(lines.contains { $0.hasPrefix("abc1234-dirty") && $0.contains("0.125") && $0.contains("1.000") }, text)
        let gateTable = lines.firstIndex { $0.hasPrefix("time gate:") }!
        XCTAssertTrue(lines[(gateTable + 1)...].contains { $0.hasPrefix("abc1234-dirty") && $0.contains("1.500") }, text)
    }

    /// The repository's results/ folder (this file is Tests/AllocBenchTests/HistoryTests.swift).
    private var resultsFolder: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("results").path
    }

    func test_committedHistory_readsBack_andEveryLineEncodesToItself() throws {
        let path = resultsFolder + "/history.jsonl"
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init)
        let entries = try History.load(path)
        XCTAssertEqual(entries.count, lines.count)
        XCTAssertGreaterThan(entries.count, 0)
        for (entry, line) in zip(entries, lines) { XCTAssertEqual(entry.line, line) }
    }

    func test_committedResultFiles_allRead() throws {
        let files = try XCTUnwrap(FileManager.default.subpathsOfDirectory(atPath: resultsFolder))
            .filter { $0.hasSuffix(".json") && !$0.hasSuffix("manifest.json") }
        XCTAssertGreaterThanOrEqual(files.count, 5)
        for file in files {
            XCTAssertNoThrow(try BenchFile.load(resultsFolder + "/" + file), file)
        }
        let manifest = try Data(contentsOf: URL(fileURLWithPath: resultsFolder + "/baseline/" + Baseline.manifestFile))
        XCTAssertNoThrow(try JSONDecoder().decode(BaselineManifest.self, from: manifest))
    }
}
