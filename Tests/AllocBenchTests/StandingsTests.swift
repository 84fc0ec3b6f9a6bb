// `bench standings`: each run's ratio of ours to the best peer, cell by cell, and the cells behind.
import Foundation
import TestSupport
import XCTest
@testable import AllocBench

final class StandingsTests: XCTestCase {
    /// A run from medians given as [workload: [allocator: ns]], every cell at 20 B and 1 thread.
    func run(_ cells: [String: [String: Double]], path: String = "run") -> StandingsRun {
        StandingsRun(path: path, label: path, medians: Dictionary(uniqueKeysWithValues: cells.map {
            (CellKey(workload: $0.key, size: 20, threads: 1), $0.value)
        }))
    }

    func test_compute_ratioToTheLowestPeerOfTheSameRun_countsRunsBehind() throws {
        let runs = [
            run(["pair": ["glibc": 10, "mimalloc": 5, "slab": 4, "slab-nocpu": 1]], path: "a"),
            run(["pair": ["glibc": 10, "mimalloc": 8, "slab": 9, "slab-nocpu": 1]], path: "b"),
            run(["pair": ["glibc": 6, "mimalloc": 12, "slab": 7]], path: "c"),
        ]
        let standings = Standings.compute(runs)
        XCTAssertEqual(standings.count, 1, "kmalloc has no cell; slab-nocpu is ours, never a peer")
        let s = try XCTUnwrap(standings.first)
        XCTAssertEqual(s.allocator, "slab")
        for (r, expected) in zip(s.ratios, [0.8, 9.0 / 8, 7.0 / 6]) { XCTAssertEqual(try XCTUnwrap(r), expected, accuracy: 1e-12) }
        XCTAssertEqual(s.bestPeers, ["mimalloc", "mimalloc", "glibc"])
        XCTAssertEqual(s.behind, 2)
        XCTAssertEqual(s.measured, 3)
    }

    /// Level is not behind; a run without the cell (or without a peer in it) has no ratio and
    /// does not count against it; a cell no run measured against a peer is not compared at all.
    func test_compute_levelIsNotBehind_missingRunsAreLeftOut() throws {
        let runs = [
            run(["pair": ["mimalloc": 5, "slab": 5], "batch": ["slab": 3, "jemalloc": 2]]),
            run(["pair": ["slab": 5]]),
            run(["pair": ["mimalloc": 4, "slab": 5], "alone": ["slab": 1]]),
        ]
        let standings = Standings.compute(runs)
        XCTAssertEqual(standings.map(\.key.workload), ["batch", "pair"])
        let pair = try XCTUnwrap(standings.first { $0.key.workload == "pair" })
        XCTAssertEqual(pair.ratios[0], 1.0)
        XCTAssertNil(pair.ratios[1])
        XCTAssertEqual(pair.behind, 1)
        XCTAssertEqual(pair.measured, 2)
        let batch = try XCTUnwrap(standings.first { $0.key.workload == "batch" })
        XCTAssertEqual(batch.behind, 1)
        XCTAssertEqual(batch.measured, 1)

        let text = Standings.render(runs, standings)
        XCTAssertTrue(text.contains("2 cells compared; 2 behind in at least one run, 1 in more than half"), text)
        let pairRow = try XCTUnwrap(text.split(separator: "\n").first { $0.hasPrefix("pair ") })
        XCTAssertTrue(pairRow.contains("1.00 / - / 1.25"), String(pairRow))
        XCTAssertTrue(pairRow.hasSuffix("1 of 2"), String(pairRow))
    }

    /// In a run's JSON, a preload: peer displayed under one of our names is still a peer (the
    /// record knows what it is); a CSV has names only, and reads such a name as ours.
    func test_json_keepsAPreloadPeerNamedLikeOursAPeer() throws {
        let peer = try XCTUnwrap(AllocatorID(rawValue: "preload:/usr/lib/libx.so=slab-bare"))
        var record = ReportFixtures.record
        record.results = [ReportFixtures.cell(.slab, "pair", [4, 4, 4]), ReportFixtures.cell(peer, "pair", [2, 2, 2])]
        let fromJSON = StandingsRun(record: record, path: "latest.json")
        XCTAssertEqual(fromJSON.ours, ["slab"])
        let s = try XCTUnwrap(Standings.compute([fromJSON]).first)
        XCTAssertEqual(s.ratios, [2.0])
        XCTAssertEqual(s.bestPeers, ["slab-bare"])
        let fromCSV = try StandingsRun(csv: CSVReport.render(record), path: "latest.csv")
        XCTAssertEqual(fromCSV.ours, ["slab", "slab-bare"])
        XCTAssertTrue(Standings.compute([fromCSV]).isEmpty, "read from the CSV, the cell has no peer left")
    }

    func test_render_nothingBehind_saysSo_andAllListsEveryCell() {
        let runs = [run(["pair": ["mimalloc": 5, "slab": 2], "batch": ["glibc": 9, "slab": 3]])]
        let standings = Standings.compute(runs)
        XCTAssertTrue(Standings.render(runs, standings).hasSuffix("no cell behind the best peer in any run\n"))
        let all = Standings.render(runs, standings, all: true)
        XCTAssertTrue(all.contains("0.40"), all)
        XCTAssertTrue(all.contains("0.33"), all)
    }

    /// A run's CSV gives the same medians as its JSON (the reports' medians): the fixture both ways.
    func test_csvAndJSONOfOneRun_giveTheSameMedians() throws {
        let record = ReportFixtures.record
        let fromJSON = StandingsRun(record: record, path: "latest.json")
        let fromCSV = try StandingsRun(csv: CSVReport.render(record), path: "latest.csv")
        XCTAssertEqual(Set(fromCSV.medians.keys), Set(fromJSON.medians.keys.filter { !(fromJSON.medians[$0] ?? [:]).isEmpty }))
        for (key, cell) in fromJSON.medians where !cell.isEmpty {
            for (a, v) in cell { XCTAssertEqual(try XCTUnwrap(fromCSV.medians[key]?[a]), v, accuracy: 1e-9, "\(key) \(a)") }
        }
        XCTAssertEqual(fromCSV.label, record.runID)
        // The fixture's pair at 20 B: slab 2.5 against mimalloc's 11.
        let pair = try XCTUnwrap(Standings.compute([fromCSV]).first { $0.key == CellKey(workload: "pair", size: 20, threads: 1) })
        XCTAssertEqual(try XCTUnwrap(pair.ratios[0]), 2.5 / 11, accuracy: 1e-12)
    }

    func test_load_readsJSONOrCSV_andNamesTheFileWhenItCannot() throws {
        let dir = try temporaryFolder("standings-tests")
        let json = dir + "/latest.json", csv = dir + "/latest.csv", text = dir + "/latest.txt", counts = dir + "/counts.json"
        try ReportWriter.json(ReportFixtures.record).write(toFile: json, atomically: true, encoding: .utf8)
        try CSVReport.render(ReportFixtures.record).write(toFile: csv, atomically: true, encoding: .utf8)
        try "a table, not a CSV\n".write(toFile: text, atomically: true, encoding: .utf8)
        // The JSON also has the failed cell (with no medians); the CSV has only cells with ok rows.
        XCTAssertEqual(try StandingsRun.load(json).medians.filter { !$0.value.isEmpty }.count, try StandingsRun.load(csv).medians.count)
        XCTAssertThrowsError(try StandingsRun.load(text)) { XCTAssertTrue("\($0)".contains("latest.txt is not a bench CSV"), "\($0)") }
        XCTAssertThrowsError(try StandingsRun.load(dir + "/none.csv")) { XCTAssertTrue("\($0)".hasSuffix("does not exist"), "\($0)") }
        try #"{"kind": "instructions", "schemaVersion": 0}"#.write(toFile: counts, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try StandingsRun.load(counts)) { XCTAssertTrue("\($0)".contains("counts.json"), "\($0)") }
    }

    /// Through the binary: the table, and exit 2 with the bench's own message for bad input.
    func test_cli_standings() throws {
        let dir = try temporaryFolder("standings-cli")
        try CSVReport.render(ReportFixtures.record).write(toFile: dir + "/a.csv", atomically: true, encoding: .utf8)
        let ok = try runBench(["standings", "a.csv", "a.csv", "--all"], in: dir)
        XCTAssertEqual(ok.status, 0, ok.stderr)
        XCTAssertTrue(ok.stdout.contains("run 2  a.csv"), ok.stdout)
        XCTAssertTrue(ok.stdout.contains("0.23 / 0.23"), ok.stdout)
        let peer = try runBench(["standings", "--allocators", "glibc", "a.csv"], in: dir)
        XCTAssertEqual(peer.status, 2)
        XCTAssertTrue(peer.stderr.contains("bench standings: error: --allocators: 'glibc' is not one of ours"), peer.stderr)
        let none = try runBench(["standings", "--allocators", " , ", "a.csv"], in: dir)
        XCTAssertEqual(none.status, 2)
        XCTAssertTrue(none.stderr.contains("bench standings: error: --allocators names none of ours"), none.stderr)
        let missing = try runBench(["standings", "b.csv"], in: dir)
        XCTAssertEqual(missing.status, 2)
        XCTAssertTrue(missing.stderr.contains("bench standings: error: b.csv does not exist"), missing.stderr)
    }
}
