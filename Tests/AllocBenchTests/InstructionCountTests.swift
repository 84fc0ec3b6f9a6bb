// `bench instructions`: counts that repeat to the instruction, callgrind's output file read back,
// a slab in the wrong mode refused, and clear errors when the tools are missing. The tests that
// run valgrind skip when it is not installed; they count the built (debug) bench at the
// workloads' test scale, a few seconds for the whole file.
import Foundation
import XCTest
@testable import AllocBench
import TestSupport

final class InstructionCountTests: XCTestCase {
    var dir: String!

    override func setUpWithError() throws { dir = try temporaryFolder("instruction-tests") }

    /// valgrind and objcopy, or a skip naming what is missing.
    func tools() throws -> CallgrindTools {
        do {
            return try CallgrindTools.locate()
        } catch let e as MissingToolError {
            throw XCTSkip(e.description)
        }
    }

    /// A counter for the built bench at the test scale, without cache simulation (faster).
    func counter() throws -> InstructionCounter {
        let options = InstructionOptions(allocators: [.slab], workloads: ["pair"], cacheSimulation: false, timeout: 60,
                                         outputDirectory: dir, scale: .test)
        var c = InstructionCounter(options: options, catalog: .standard, executable: try builtExecutable("bench"),
                                   tools: try tools(), interrupt: nil)
        c.log = { _ in }
        return c
    }

    func pairCell(_ a: AllocatorID) -> CellParameters {
        CellParameters(allocator: a, workload: "pair", size: 20, threads: 1, repetitions: 1, quick: false,
                       countScale: .test)
    }

    // MARK: (a) Determinism

    func test_count_sameCellTwice_givesIdenticalInstructionsAndOps_inBothSlabModes() throws {
        let counter = try counter()
        let prepared = try counter.prepare()
        defer { prepared.remove() }
        var perOp: [AllocatorID: Double] = [:]
        for a in [AllocatorID.slab, .slabFallback] {
            let first = counter.countCell(pairCell(a), library: nil, prepared: prepared)
            let second = counter.countCell(pairCell(a), library: nil, prepared: prepared)
            XCTAssertEqual(first.status, .ok, "\(a): \(first.message ?? "")")
            XCTAssertEqual(second.status, .ok, "\(a): \(second.message ?? "")")
            XCTAssertEqual(first.ops, 2000, "\(a): pair's test scale")
            XCTAssertEqual(first.ops, second.ops, "\(a)")
            XCTAssertEqual(first.instructions, second.instructions, "\(a): two counts of one cell differ")
            // At least a load, a store and a branch per op, and not the whole process (start-up
            // alone is tens of millions of instructions).
            XCTAssertGreaterThan(first.instructionsPerOp, 3, "\(a)")
            XCTAssertLessThan(first.instructions, 20_000_000, "\(a): more than the measured region was counted")
            XCTAssertNil(first.d1Misses, "no cache simulation asked")
            XCTAssertEqual(first.allocatorVersion?.contains("mode=\(InstructionCounter.expectedSlabMode(a)!) "), true,
                           first.allocatorVersion ?? "no version")
            perOp[a] = first.instructionsPerOp
        }
        // The fallback path claims a slot with an atomic exchange and releases it; the rseq path
        // does neither.
        XCTAssertGreaterThan(perOp[.slabFallback] ?? 0, perOp[.slab] ?? .infinity)
    }

    // MARK: (b) The callgrind output file

    func test_parse_totalsWithCacheSimulation_namesColumnsFromTheEventsLine() throws {
        let text = """
        # callgrind format
        version: 1
        creator: callgrind-3.19.0
        pid: 4242
        cmd:  ./bench --child {}
        part: 1

        desc: I1 cache: 32768 B, 64 B, 8-way associative
        desc: Timerange: Basic block 0 - 1000
        desc: Trigger: Program termination

        positions: line
        events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw
        summary: 14400053 4000000 3000000 12 700 300 10 5 2


        ob=(1) /tmp/bench
        fl=(1) ???
        fn=(1) main
        0 14400053 4000000 3000000 12 700 300 10 5 2

        totals: 14400053 4000000 3000000 12 700 300 10 5 2
        """
        let counts = try CallgrindOutput.parse(text)
        XCTAssertEqual(counts.instructions, 14_400_053)
        XCTAssertEqual(counts.d1Misses, 1000, "D1mr + D1mw")
        XCTAssertEqual(counts.llMisses, 7, "DLmr + DLmw")
        XCTAssertEqual(counts.events["Dr"], 4_000_000)
    }

    func test_parse_withoutCacheSimulation_hasNoMisses_andShortLinesAreZeros() throws {
        let plain = try CallgrindOutput.parse("events: Ir\nsummary: 790285\ntotals: 790285\n")
        XCTAssertEqual(plain.instructions, 790_285)
        XCTAssertNil(plain.d1Misses)
        XCTAssertNil(plain.llMisses)
        // Callgrind may leave trailing zero columns out.
        let short = try CallgrindOutput.parse("events: Ir D1mr D1mw\ntotals: 50 4\n")
        XCTAssertEqual(short.instructions, 50)
        XCTAssertEqual(short.d1Misses, 4)
    }

    func test_parse_severalParts_areSummed_totalsPreferredToSummary() throws {
        let text = """
        events: Ir
        part: 1
        summary: 100
        totals: 100
        part: 2
        summary: 30
        part: 3
        totals: 7
        """
        XCTAssertEqual(try CallgrindOutput.parse(text).instructions, 137)
    }

    func test_parse_malformedFiles_throwWithTheReason() throws {
        XCTAssertThrowsError(try CallgrindOutput.parse("events: Ir\npositions: line\n")) {
            XCTAssertTrue("\($0)".contains("no 'totals:'"), "\($0)")
        }
        XCTAssertThrowsError(try CallgrindOutput.parse("totals: 5\n")) {
            XCTAssertTrue("\($0)".contains("events"), "\($0)")
        }
        XCTAssertThrowsError(try CallgrindOutput.parse("events: Ir\ntotals: 12x\n")) {
            XCTAssertTrue("\($0)".contains("not a number"), "\($0)")
        }
        XCTAssertThrowsError(try CallgrindOutput.parse("events: Ir\ntotals: 1 2\n"))
        XCTAssertThrowsError(try CallgrindOutput.parse(file: dir + "/missing.callgrind")) {
            XCTAssertTrue("\($0)".contains("no output file"), "\($0)")
        }
    }

    func test_parse_file_readsWhatCallgrindWrote() throws {
        let path = dir + "/cell.callgrind"
        try "events: Ir D1mr D1mw DLmr DLmw\nsummary: 9 1 2 0 1\ntotals: 9 1 2 0 1\n"
            .write(toFile: path, atomically: true, encoding: .utf8)
        let counts = try CallgrindOutput.parse(file: path)
        XCTAssertEqual(counts, CallgrindCounts(events: ["Ir": 9, "D1mr": 1, "D1mw": 2, "DLmr": 0, "DLmw": 1]))
    }

    // MARK: (c) The slab's mode is checked

    func test_count_slabInTheWrongMode_failsNamingBothModes() throws {
        var counter = try counter()
        // The `slab` cell must count the rseq path; forced into the fallback it must not pass.
        counter.environmentOverrides = ["SLAB_CPU_LAYER": "fallback"]
        let prepared = try counter.prepare()
        defer { prepared.remove() }
        let c = counter.countCell(pairCell(.slab), library: nil, prepared: prepared)
        XCTAssertEqual(c.status, .failed)
        let m = c.message ?? ""
        XCTAssertTrue(m.contains("mode fallback") && m.contains("expected mode=rseq-simulated"), m)
        XCTAssertEqual(c.instructions, 0, "a refused cell reports no count")
    }

    func test_slabModeProblem_acceptsOnlyTheExpectedMode() {
        XCTAssertNil(InstructionCounter.slabModeProblem(.slab, version: "slab mode=rseq-simulated magazine=255"))
        XCTAssertNil(InstructionCounter.slabModeProblem(.slabFallback, version: "slab mode=fallback magazine=255"))
        XCTAssertNil(InstructionCounter.slabModeProblem(.glibc, version: "glibc 2.36"))
        // Real rseq (not under valgrind) is not what `slab` counts under callgrind.
        XCTAssertNotNil(InstructionCounter.slabModeProblem(.slab, version: "slab mode=rseq magazine=255"))
        XCTAssertNotNil(InstructionCounter.slabModeProblem(.slabFallback, version: "slab mode=rseq-simulated magazine=255"))
        XCTAssertTrue(InstructionCounter.slabModeProblem(.slab, version: nil)?.contains("mode unknown") == true)
    }

    func test_countMode_outsideValgrind_failsTheCell() {
        let p = CellParameters(allocator: .glibc, workload: "pair", size: 20, threads: 1, repetitions: 1, quick: false,
                               countScale: .test)
        let r = WorkloadCatalog.run(p)
        XCTAssertEqual(r.status, .failed)
        XCTAssertTrue(r.message?.contains("only under callgrind") == true, r.message ?? "")
    }

    // MARK: (d) Missing tools

    func test_locate_missingValgrind_namesTheDebianPackage() {
        XCTAssertThrowsError(try CallgrindTools.locate(valgrind: "/nonexistent/valgrind")) { error in
            let m = "\(error)"
            XCTAssertTrue(m.contains("/nonexistent/valgrind"), m)
            XCTAssertTrue(m.contains("apt-get install valgrind"), m)
        }
        XCTAssertTrue(CallgrindTools.missingValgrind("valgrind").contains("on PATH"))
    }

    func test_locate_missingObjcopy_namesBinutils() throws {
        _ = try tools()
        XCTAssertThrowsError(try CallgrindTools.locate(objcopy: "/nonexistent/objcopy")) { error in
            XCTAssertTrue("\(error)".contains("apt-get install binutils"), "\(error)")
        }
    }

    func test_cli_missingValgrind_exits2WithTheMessage() throws {
        let r = try runBench(["instructions", "--valgrind", "/nonexistent/valgrind"], in: dir, limit: 30)
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("apt-get install valgrind"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/results/instructions.json"))
    }

    func test_cli_onePairCell_writesTheThreeFiles() throws {
        _ = try tools()
        let out = dir + "/out"
        let r = try runBench(["instructions", "--allocators", "glibc", "--workloads", "pair", "--sizes", "20",
                              "--no-cache-sim", "--output", out], in: dir, limit: 60)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("[1/1] glibc pair 20 B"), r.stderr)
        let data = try XCTUnwrap(FileManager.default.contents(atPath: out + "/instructions.json"))
        let record = try JSONDecoder().decode(InstructionRecord.self, from: data)
        XCTAssertEqual(record.kind, "instructions")
        XCTAssertFalse(record.cacheSimulation)
        XCTAssertTrue(record.valgrind.hasPrefix("valgrind-"), record.valgrind)
        XCTAssertEqual(record.cells.count, 1)
        XCTAssertEqual(record.cells.first?.status, .ok, record.cells.first?.message ?? "")
        XCTAssertEqual(record.cells.first?.ops, 200_000, "pair's count scale")
        let text = try String(contentsOfFile: out + "/instructions.txt", encoding: .utf8)
        XCTAssertTrue(text.contains("Instructions per op"), text)
        let csv = try String(contentsOfFile: out + "/instructions.csv", encoding: .utf8)
        XCTAssertEqual(CSVReport.parse(csv).count, 2)
    }

    // MARK: Plan and command line

    func test_plan_refusesThreadWorkloads_andRunsCtor256Once() throws {
        XCTAssertThrowsError(try InstructionPlan.parseWorkloads("pair,threads,prodcons-1x1", catalog: .standard)) {
            let m = "\($0)"
            XCTAssertTrue(m.contains("threads") && m.contains("prodcons-1x1") && m.contains("countable"), m)
        }
        XCTAssertEqual(try InstructionPlan.parseWorkloads(nil, catalog: .standard), InstructionPlan.defaultWorkloads)
        let options = InstructionOptions(allocators: [.glibc, .slab], workloads: ["pair", "ctor-256"],
                                         cacheSimulation: false, timeout: 1, outputDirectory: dir)
        let cells = InstructionPlan.cells(options, catalog: .standard)
        XCTAssertEqual(cells.map { "\($0.workload)/\($0.size)/\($0.allocator.rawValue)" },
                       ["pair/20/glibc", "pair/20/slab", "pair/256/glibc", "pair/256/slab",
                        "ctor-256/256/glibc", "ctor-256/256/slab"])
        XCTAssertTrue(cells.allSatisfy { $0.countScale == .standard && $0.threads == 1 })
    }

    func test_cellParameters_withoutCountScale_decodeAndEncodeAsBefore() throws {
        let old = #"{"allocator":"glibc","workload":"pair","size":20,"threads":1,"repetitions":5,"quick":false}"#
        let p = try JSONDecoder().decode(CellParameters.self, from: Data(old.utf8))
        XCTAssertNil(p.countScale)
        XCTAssertFalse(String(decoding: try JSONEncoder().encode(p), as: UTF8.self).contains("countScale"))
    }

    func test_report_textTableAndCSV() throws {
        func cell(_ a: String, _ size: Int, _ instructions: UInt64, status: CellResult.Status = .ok) -> InstructionCell {
            InstructionCell(allocator: a, workload: "pair", workloadVersion: 1, size: size, status: status,
                            message: status == .ok ? nil : "libx not installed, sorry", ops: status == .ok ? 1000 : 0,
                            instructions: instructions, d1Misses: status == .ok ? 20 : nil, llMisses: status == .ok ? 1 : nil,
                            allocatorVersion: a == "slab" ? "slab mode=rseq-simulated magazine=255" : nil)
        }
        let record = InstructionRecord(
            runID: "20260102T030405Z-abc1234", machine: ReportFixtures.machine, valgrind: "valgrind-3.19.0",
            cacheSimulation: true, durationSeconds: 12,
            cells: [cell("glibc", 20, 145_000), cell("slab", 20, 72_040), cell("tcmalloc", 20, 0, status: .skipped)])
        let text = InstructionReport.text(record)
        XCTAssertTrue(text.contains("valgrind-3.19.0"), text)
        XCTAssertTrue(text.contains("abc1234"), text)
        let row = text.split(separator: "\n").first { $0.hasPrefix("pair") }.map(String.init) ?? ""
        XCTAssertEqual(row.split(separator: " ").map(String.init), ["pair", "20", "145.0", "72.0", "skipped"], text)
        XCTAssertTrue(text.contains("0.020"), "D1 misses per op: \(text)")
        let rows = CSVReport.parse(InstructionReport.csv(record))
        XCTAssertEqual(rows.first, InstructionReport.csvColumns)
        XCTAssertEqual(rows.count, 4)
        let slab = Dictionary(uniqueKeysWithValues: zip(rows[0], rows[2]))
        XCTAssertEqual(slab["instructions"], "72040")
        XCTAssertEqual(slab["instructions_per_op"], "72.04")
        XCTAssertEqual(slab["d1_misses_per_op"], "0.02")
        let skipped = Dictionary(uniqueKeysWithValues: zip(rows[0], rows[3]))
        XCTAssertEqual(skipped["status"], "skipped")
        XCTAssertEqual(skipped["instructions"], "")
        XCTAssertEqual(skipped["message"], "libx not installed, sorry")
    }
}
