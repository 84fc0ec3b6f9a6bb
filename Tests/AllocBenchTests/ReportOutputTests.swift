// The reports as files: the SVG charts parse as XML with a line per allocator (and say so when
// there is nothing to draw), the text report's order, atomic writes, and what ReportWriter writes
// for a finished and for an interrupted run; the commands' messages for an output they cannot
// make and for a negative number.
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import XCTest
@testable import AllocBench
import TestSupport

final class ReportOutputTests: XCTestCase {
    var dir: String!

    override func setUpWithError() throws { dir = try temporaryFolder("report-tests") }

    // MARK: SVG

    final class Collector: NSObject, XMLParserDelegate {
        var elements: [String: Int] = [:]
        func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                    attributes: [String: String] = [:]) {
            elements[name, default: 0] += 1
        }
    }

    func parse(_ svg: String, file: StaticString = #filePath, line: UInt = #line) -> [String: Int] {
        let parser = XMLParser(data: Data(svg.utf8))
        let collector = Collector()
        parser.delegate = collector
        XCTAssertTrue(parser.parse(), "not well-formed XML: \(String(describing: parser.parserError))", file: file, line: line)
        return collector.elements
    }

    func test_charts_areWellFormedSVGWithOneLinePerAllocator() throws {
        let charts = Dictionary(uniqueKeysWithValues: Charts.render(ReportFixtures.record).map { ($0.name, $0.svg) })
        XCTAssertEqual(Set(charts.keys), Set(Charts.fileNames))
        for (name, svg) in charts {
            let elements = parse(svg)
            XCTAssertEqual(elements["svg"], 1, name)
            XCTAssertTrue(svg.contains("xmlns=\"http://www.w3.org/2000/svg\""), name)
        }
        // pair: 3 allocators over 3 sizes; threads: 3 allocators over 3 thread counts;
        // sawtooth: 3 allocators + live bytes.
        XCTAssertEqual(parse(charts["ns_per_op_by_size.svg"]!)["polyline"], 3)
        XCTAssertEqual(parse(charts["thread_scaling.svg"]!)["polyline"], 3)
        XCTAssertEqual(parse(charts["sawtooth_rss.svg"]!)["polyline"], 4)
        XCTAssertTrue(charts["sawtooth_rss.svg"]!.contains("fill &amp; drain") || charts["sawtooth_rss.svg"]!.contains("sawtooth"))
    }

    func test_charts_withoutData_stillWellFormedAndSaySo() {
        var record = ReportFixtures.record
        record.results = []
        for (name, svg) in Charts.render(record) {
            XCTAssertEqual(parse(svg)["svg"], 1, name)
            XCTAssertTrue(svg.contains("no data in this run"), name)
        }
    }

    func test_svgEscape_escapesMarkup() {
        XCTAssertEqual(SVGChart.escape("a<b & \"c\">"), "a&lt;b &amp; &quot;c&quot;&gt;")
    }

    // MARK: Text

    func test_text_machineFirst_thenSummaryWithSlabRatio_thenPerWorkloadTables() throws {
        let text = TextReport.render(ReportFixtures.record)
        let machine = try XCTUnwrap(text.range(of: "Machine"))
        let summary = try XCTUnwrap(text.range(of: "Summary:"))
        let pair = try XCTUnwrap(text.range(of: "== pair"))
        XCTAssertLessThan(machine.lowerBound, summary.lowerBound)
        XCTAssertLessThan(summary.lowerBound, pair.lowerBound)
        for needle in ["Test CPU", "Linux 6.18 test", "2.36", "abc1234-dirty", "rseq", "libmimalloc2.0 2.0.9+ds-2"] {
            XCTAssertTrue(text.contains(needle), "machine block lacks \(needle)")
        }
        // Summary row for pair at 20 B: glibc 20.0, mimalloc 11.0, slab 2.50, slab/best 2.5/11 = 0.23.
        let row = try XCTUnwrap(text.split(separator: "\n").first { $0.hasPrefix("pair ") })
        let fields = row.split(separator: " ").map(String.init)
        XCTAssertEqual(fields, ["pair", "20", "1", "20.0", "11.0", "2.50", "0.23"])
        // One summary row per thread count for the thread workload.
        XCTAssertEqual(text.split(separator: "\n").filter { $0.hasPrefix("threads ") }.count, 3)
        XCTAssertTrue(text.contains("p99.9"))
        XCTAssertTrue(text.contains("child killed by SIGABRT"))
    }

    // MARK: Atomic writes

    func test_atomicWrite_replacesTheFile() throws {
        let path = dir + "/a.txt"
        try AtomicFile.write("old", to: path)
        try AtomicFile.write("new", to: path)
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "new")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["a.txt"])
    }

    func test_atomicWrite_writerFailingMidway_leavesOldFileIntactAndNoTemporary() throws {
        struct Boom: Error {}
        let path = dir + "/latest.csv"
        try AtomicFile.write("old contents\n", to: path)
        XCTAssertThrowsError(try AtomicFile.write(to: path) { emit in
            try emit(Array("half of the new".utf8))
            throw Boom()
        })
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "old contents\n")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["latest.csv"])
    }

    func test_reportWriter_writesAllOutputs() throws {
        let written = try ReportWriter.write(ReportFixtures.record, to: dir)
        let names = Set(written.map { ($0 as NSString).lastPathComponent })
        XCTAssertEqual(names, Set(["latest.json", "latest.csv", "latest.txt"] + Charts.fileNames))
        let data = try Data(contentsOf: URL(fileURLWithPath: dir + "/latest.json"))
        let back = try JSONDecoder().decode(RunRecord.self, from: data)
        XCTAssertEqual(back.results.count, ReportFixtures.record.results.count)
        XCTAssertEqual(back.machine, ReportFixtures.machine)
    }

    func test_reportWriter_interruptedRun_leavesLatestAlone() throws {
        try AtomicFile.write("earlier\n", to: dir + "/latest.csv")
        var record = ReportFixtures.record
        record.interrupted = true
        let written = try ReportWriter.write(record, to: dir)
        XCTAssertEqual(Set(written.map { ($0 as NSString).lastPathComponent }),
                       ["interrupted.json", "interrupted.csv", "interrupted.txt"])
        XCTAssertEqual(try String(contentsOfFile: dir + "/latest.csv", encoding: .utf8), "earlier\n")
    }

    // MARK: The output folder

    func test_outputFolder_prepare_makesMissingParents_andLeavesNothingBehind() throws {
        let nested = dir + "/a/b/c"
        try OutputFolder.prepare(nested)
        var isDirectory: ObjCBool = false
        XCTAssertTrue(FileManager.default.fileExists(atPath: nested, isDirectory: &isDirectory) && isDirectory.boolValue)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: nested), [], "the write check's file is removed")
    }

    func test_outputFolder_prepare_refusesAFile_andAFolderThatCannotBeMade_namingTheOption() throws {
        let file = dir + "/plain"
        try "x".write(toFile: file, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try OutputFolder.prepare(file)) { error in
            XCTAssertEqual("\(error)", "--output \(file): \(file) is a file, not a folder")
        }
        XCTAssertThrowsError(try OutputFolder.prepare(file + "/below", option: "--out")) { error in
            let text = "\(error)"
            XCTAssertTrue(text.hasPrefix("--out \(file)/below: ") && text.hasSuffix("/plain is a file, not a folder"), text)
        }
        // /proc takes no new folders, even from root (a chmod'ed folder would not stop root).
        XCTAssertThrowsError(try OutputFolder.prepare("/proc/bench-output-test")) { error in
            XCTAssertEqual("\(error)", "--output /proc/bench-output-test: cannot create the folder /proc/bench-output-test (No such file or directory)")
        }
    }

    func test_outputFolder_write_thatFails_putsTheFilesInATemporaryFolder_andSaysWhere() throws {
        let target = dir + "/target"
        var tried: [String] = []
        XCTAssertThrowsError(try OutputFolder.write("the results", to: target) { folder -> [String] in
            tried.append(folder)
            if folder == target { throw AtomicFile.WriteError(description: "disk full") }
            return try ReportWriter.write(ReportFixtures.record, to: folder)
        }) { error in
            let text = "\(error)"
            XCTAssertTrue(text.hasPrefix("could not write the results into \(target) (disk full); they are in "), text)
            XCTAssertEqual(tried.count, 2)
            XCTAssertTrue(text.contains(tried[1]), text)
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: tried[1] + "/latest.json"), "nothing measured is lost")
        try? FileManager.default.removeItem(atPath: tried[1])
    }

    func test_cli_folderThatCannotBeMade_isNamedWithTheCommand() throws {
        let history = dir + "/history.jsonl"
        try History.append(HistoryEntry(run: ReportFixtures.record), to: history)
        let chart = try runBench(["history", "--file", history, "--chart", "/proc/bench-chart-test/h.svg"], in: dir)
        XCTAssertEqual(chart.status, 2, chart.stderr)
        XCTAssertTrue(chart.stderr.contains(
            "bench history: error: --chart /proc/bench-chart-test/h.svg: cannot create the folder /proc/bench-chart-test (No such file or directory)"),
            chart.stderr)
        let nested = try runBench(["history", "--file", history, "--chart", dir + "/charts/new/h.svg"], in: dir)
        XCTAssertEqual(nested.status, 0, nested.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/charts/new/h.svg"), "the chart's missing folders are made")
        XCTAssertThrowsError(try History.append(HistoryEntry(run: ReportFixtures.record),
                                                to: "/proc/bench-history-test/history.jsonl")) { error in
            XCTAssertEqual("\(error)", "cannot create the folder /proc/bench-history-test (No such file or directory)")
        }
    }

    func test_cli_negativeNumbers_reachTheBenchsOwnChecks() throws {
        // A value that starts with a dash is the option's value, not taken for another option.
        for (args, message) in [
            (["--sizes", "-5"], "bench: error: --sizes: '-5' is not a positive integer"),
            (["--threads", "-2"], "bench: error: --threads: '-2' is not a positive integer"),
            (["--repetitions", "-1"], "bench: error: --repetitions must be at least 1"),
            (["--timeout", "-3"], "bench: error: --timeout must be positive"),
            (["instructions", "--sizes", "-20"], "bench instructions: error: --sizes: '-20' is not a positive integer"),
            (["ab", "--samples", "-2"], "bench ab: error: --samples must be at least 2"),
            (["compare", "--allowance", "-1", "a.json", "b.json"], "bench compare: error: --allowance must be a non-negative percentage"),
        ] {
            let r = try runBench(args + (args.first == "compare" ? [] : ["--output", dir + "/out"]), in: dir)
            XCTAssertEqual(r.status, 2, "\(args): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(message), "\(args): \(r.stderr)")
        }
    }
}
