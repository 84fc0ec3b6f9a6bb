import Foundation
import XCTest
@testable import AllocBench

final class ReportCSVTests: XCTestCase {
    func test_escape_quotesOnlyFieldsThatNeedIt() {
        XCTAssertEqual(CSVReport.escape("plain"), "plain")
        XCTAssertEqual(CSVReport.escape("a,b"), "\"a,b\"")
        XCTAssertEqual(CSVReport.escape("say \"hi\""), "\"say \"\"hi\"\"\"")
        XCTAssertEqual(CSVReport.escape("two\nlines"), "\"two\nlines\"")
        XCTAssertEqual(CSVReport.escape(""), "")
    }

    func test_parse_readsQuotedFieldsBack() {
        let rows = CSVReport.parse("a,\"b,c\",\"d\"\"e\"\n\"x\ny\",,z\n")
        XCTAssertEqual(rows, [["a", "b,c", "d\"e"], ["x\ny", "", "z"]])
    }

    func test_render_hasTheDocumentedColumnsAndOneRowPerRepetition() throws {
        let record = ReportFixtures.record
        let rows = CSVReport.parse(CSVReport.render(record))
        let header = try XCTUnwrap(rows.first)
        XCTAssertEqual(header, CSVReport.columns)
        for required in ["run_id", "date", "commit", "allocator", "allocator_version", "workload", "size", "threads",
                         "repetition", "status", "ops", "seconds", "ns_per_op", "mops_per_s", "p50_ns", "p99_ns",
                         "p999_ns", "max_ns", "peak_rss_bytes", "live_bytes", "rss_overhead", "rss_after_bytes"] {
            XCTAssertTrue(header.contains(required), "missing column \(required)")
        }
        let expected = record.results.reduce(0) { $0 + ($1.status == .ok ? $1.repetitions.count : 1) }
        XCTAssertEqual(rows.count - 1, expected)
        for row in rows.dropFirst() { XCTAssertEqual(row.count, header.count, "ragged row \(row)") }
    }

    func test_render_loadsBackWithTheSameNumbers() throws {
        let record = ReportFixtures.record
        let rows = CSVReport.parse(CSVReport.render(record))
        let col = Dictionary(uniqueKeysWithValues: rows[0].enumerated().map { ($1, $0) })
        let glibcPair = rows.dropFirst().filter {
            $0[col["allocator"]!] == "glibc" && $0[col["workload"]!] == "pair" && $0[col["size"]!] == "20"
        }
        XCTAssertEqual(glibcPair.map { $0[col["repetition"]!] }, ["1", "2", "3"])
        let ns = glibcPair.map { Double($0[col["ns_per_op"]!])! }
        XCTAssertEqual(ns[0], 20, accuracy: 1e-9)
        XCTAssertEqual(ns[1], 22, accuracy: 1e-9)
        let first = glibcPair[0]
        XCTAssertEqual(first[col["ops"]!], "1000000")
        XCTAssertEqual(Double(first[col["mops_per_s"]!])!, 50, accuracy: 1e-9)
        XCTAssertEqual(Double(first[col["p99_ns"]!])!, 60, accuracy: 1e-9)
        XCTAssertEqual(first[col["peak_rss_bytes"]!], String(4 << 20))
        XCTAssertEqual(first[col["live_bytes"]!], String(2 << 20))
        XCTAssertEqual(Double(first[col["rss_overhead"]!])!, 2, accuracy: 1e-12)
        XCTAssertEqual(first[col["rss_after_bytes"]!], "")
        XCTAssertEqual(first[col["commit"]!], "abc1234-dirty")
        XCTAssertEqual(first[col["allocator_version"]!], "glibc 2.36")
        XCTAssertEqual(first[col["status"]!], "ok")
    }

    func test_render_failedCell_oneRowWithStatusMessageAndEmptyNumbers() throws {
        let rows = CSVReport.parse(CSVReport.render(ReportFixtures.record))
        let col = Dictionary(uniqueKeysWithValues: rows[0].enumerated().map { ($1, $0) })
        let failed = rows.dropFirst().filter { $0[col["workload"]!] == "_crash" }
        XCTAssertEqual(failed.count, 1)
        let row = try XCTUnwrap(failed.first)
        XCTAssertEqual(row[col["status"]!], "failed")
        XCTAssertEqual(row[col["message"]!], "child killed by SIGABRT; stderr: \"boom\", line 1\nline 2")
        for name in ["repetition", "ops", "seconds", "ns_per_op", "mops_per_s", "p50_ns", "peak_rss_bytes", "rss_overhead"] {
            XCTAssertEqual(row[col[name]!], "", "\(name) should be empty")
        }
    }

    /// Every CSV column is documented in the README's csv-columns section.
    func test_readme_documentsEveryColumn() throws {
        let readme = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("README.md")
        let text = try String(contentsOf: readme, encoding: .utf8)
        let start = try XCTUnwrap(text.range(of: "<!-- SECTION: csv-columns -->"))
        let end = try XCTUnwrap(text.range(of: "<!-- /SECTION: csv-columns -->"))
        let section = String(text[start.upperBound..<end.lowerBound])
        for column in CSVReport.columns {
            XCTAssertTrue(section.contains("`\(column)`"), "README csv-columns does not document `\(column)`")
        }
    }
}
