// Charts a person can read: every legend entry inside the picture, the sawtooth's allocators on
// one axis of work done with their release calls marked and named (or said to be missing), and
// the text and CSV reports saying what was called and how latency was taken.

import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import XCTest
@testable import AllocBench

final class ChartReadabilityTests: XCTestCase {
    // MARK: Reading an SVG back

    /// The elements of an SVG with their attributes and text.
    final class Elements: NSObject, XMLParserDelegate {
        struct Element {
            var name: String
            var attributes: [String: String]
            var text = ""
        }
        var all: [Element] = []
        private var open: [Int] = []

        func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                    attributes: [String: String] = [:]) {
            all.append(Element(name: name, attributes: attributes))
            open.append(all.count - 1)
        }

        /// Text belongs to every open element: a polyline's text is its <title>'s.
        func parser(_ parser: XMLParser, foundCharacters string: String) {
            for i in open { all[i].text += string }
        }

        func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
            open.removeLast()
        }

        func named(_ name: String, class cls: String? = nil) -> [Element] {
            all.filter { $0.name == name && (cls == nil || $0.attributes["class"] == cls) }
        }
    }

    func elements(_ svg: String, file: StaticString = #filePath, line: UInt = #line) -> Elements {
        let parser = XMLParser(data: Data(svg.utf8))
        let e = Elements()
        parser.delegate = e
        XCTAssertTrue(parser.parse(), "not well-formed XML: \(String(describing: parser.parserError))", file: file, line: line)
        return e
    }

    /// The widest a label of 11 px sans-serif can be drawn: 7 px a character (0.64 em; the
    /// renderers' sans-serif fonts average under 0.6 em on these labels).
    static let characterWidth = 7.0

    /// Every text of class `cls` starts and ends inside the viewBox.
    func assertTextInsideViewBox(_ svg: String, class cls: String, file: StaticString = #filePath, line: UInt = #line) throws -> [String] {
        let e = elements(svg, file: file, line: line)
        let root = try XCTUnwrap(e.named("svg").first, file: file, line: line)
        let box = try XCTUnwrap(root.attributes["viewBox"], file: file, line: line).split(separator: " ").compactMap { Double($0) }
        XCTAssertEqual(box.count, 4, file: file, line: line)
        let texts = e.named("text", class: cls)
        for t in texts {
            let x = try XCTUnwrap(t.attributes["x"].flatMap(Double.init), file: file, line: line)
            let y = try XCTUnwrap(t.attributes["y"].flatMap(Double.init), file: file, line: line)
            let right = x + Double(t.text.count) * Self.characterWidth
            XCTAssertGreaterThanOrEqual(x, box[0], "'\(t.text)' starts left of the picture", file: file, line: line)
            XCTAssertLessThanOrEqual(right, box[0] + box[2], "'\(t.text)' ends at x = \(right), beyond the width \(box[2])",
                                     file: file, line: line)
            XCTAssertLessThanOrEqual(y, box[1] + box[3], "'\(t.text)' lies below the picture", file: file, line: line)
        }
        return texts.map(\.text)
    }

    /// A sawtooth of one workload and size for `allocators`, each with its own speed (seconds
    /// per step), all on the same operations.
    static func sawtoothRecord(_ allocators: [(AllocatorID, ReleaseCall?)]) -> RunRecord {
        var results: [CellResult] = []
        for (k, (a, call)) in allocators.enumerated() {
            var r = ReportFixtures.cell(a, "sawtooth", [30, 31, 32])
            for i in r.repetitions.indices {
                r.repetitions[i].rssSeries = ReportFixtures.sawtoothSeries(secondsPerStep: 0.01 * Double(k + 1))
                r.repetitions[i].rssAfterBytes = 3 << 20
            }
            r.releaseCall = call
            results.append(r)
        }
        var record = ReportFixtures.record
        record.results = results
        return record
    }

    func sawtoothSVG(_ record: RunRecord) throws -> String {
        try XCTUnwrap(Charts.render(record).first { $0.name == "sawtooth_rss.svg" }?.svg)
    }

    // MARK: Legends fit

    /// One panel and seven long legend entries: the case whose last entry used to be cut off
    /// (a one-panel chart was one column wide, and the legend one line).
    func test_sawtoothLegend_everyEntryInsideTheViewBox_andComplete() throws {
        let peer = try XCTUnwrap(AllocatorID(rawValue: "preload:/opt/allocators/lib/libsomeverylongallocatorname.so"))
        let record = Self.sawtoothRecord([
            (.glibc, ReleaseCall(call: "malloc_trim(0)", found: true)),
            (.jemalloc, ReleaseCall(call: "mallctl(\"arena.4096.purge\")", found: true)),
            (.mimalloc, ReleaseCall(call: "mi_collect(true)", found: true)),
            (.tcmalloc, ReleaseCall(call: "MallocExtension_ReleaseFreeMemory()", found: true)),
            (.slab, ReleaseCall(call: "SlabCache.shrink()", found: true)),
            (.slabNoCPU, ReleaseCall(call: "SlabCache.shrink()", found: true)),
            (peer, ReleaseCall(call: "mallctl, mi_collect, MallocExtension_ReleaseFreeMemory or malloc_trim", found: false,
                               missing: "libsomeverylongallocatorname.so defines none of mallctl, mi_collect, MallocExtension_ReleaseFreeMemory, malloc_trim")),
        ])
        let legend = try assertTextInsideViewBox(try sawtoothSVG(record), class: "legend")
        XCTAssertEqual(legend.count, 8, "\(legend)")
        XCTAssertEqual(legend.last, "live bytes")
        XCTAssertEqual(legend.first, "glibc: malloc_trim(0)")
        XCTAssertTrue(legend.contains("tcmalloc: MallocExtension_ReleaseFreeMemory()"), "\(legend)")
        // The peer without a call says so, in the chart itself.
        XCTAssertTrue(legend.contains("libsomeverylongallocatorname.so: no release call found"), "\(legend)")
        _ = try assertTextInsideViewBox(try sawtoothSVG(record), class: "subtitle")
    }

    func test_everyChartOfTheFixtureRun_keepsItsLegendAndSubtitleInside() throws {
        for (name, svg) in Charts.render(ReportFixtures.record) {
            let legend = try assertTextInsideViewBox(svg, class: "legend")
            XCTAssertFalse(legend.isEmpty, name)
            _ = try assertTextInsideViewBox(svg, class: "subtitle")
        }
    }

    func test_legendLayout_wrapsIntoRowsWithinTheWidth() {
        let legend = (0..<12).map { ("allocator-number-\($0)", "#000") }
        let layout = SVGChart.legendLayout(legend, width: 460, top: 46)
        XCTAssertGreaterThan(layout.rows, 1)
        for e in layout.entries {
            XCTAssertLessThanOrEqual(e.x + 16 + SVGChart.textWidth(e.name), 460 - 10 + 1e-9, e.name)
        }
        XCTAssertEqual(Set(layout.entries.map(\.y)).count, layout.rows)
    }

    // MARK: The sawtooth on one axis, release calls marked

    /// Points of the same operation count get the same x whatever time each allocator took.
    func test_sawtooth_allocatorsLineUpOnOperations_notOnSeconds() throws {
        let record = Self.sawtoothRecord([(.glibc, ReleaseCall(call: "malloc_trim(0)", found: true)),
                                          (.slab, ReleaseCall(call: "SlabCache.shrink()", found: true))])
        let e = elements(try sawtoothSVG(record))
        let lines = Dictionary(uniqueKeysWithValues: e.named("polyline").map { ($0.text, $0.attributes["points"] ?? "") })
        func xs(_ name: String) throws -> [Double] {
            try XCTUnwrap(lines[name], name).split(separator: " ").map { Double($0.split(separator: ",")[0])! }
        }
        let glibc = try xs("glibc"), slab = try xs("slab")
        XCTAssertEqual(glibc.count, 19)
        XCTAssertEqual(glibc, slab, "the two allocators' points must fall at the same x")
        XCTAssertEqual(try xs("live bytes"), glibc)
        XCTAssertTrue(e.all.contains { $0.name == "text" && $0.text.hasPrefix("allocator calls made (millions)") })
    }

    func test_sawtooth_marksEveryReleaseCall_withWhatWasCalled() throws {
        let record = Self.sawtoothRecord([(.glibc, ReleaseCall(call: "malloc_trim(0)", found: true)),
                                          (.mimalloc, ReleaseCall(call: "mi_collect(true)", found: true))])
        let e = elements(try sawtoothSVG(record))
        let marks = e.named("path", class: "event")
        XCTAssertEqual(marks.count, 4, "two release calls for each of two allocators")
        let tips = marks.map { $0.text }
        XCTAssertEqual(tips.filter { $0 == "glibc after malloc_trim(0): RSS 3.0 MiB" }.count, 2, "\(tips)")
        XCTAssertEqual(tips.filter { $0 == "mimalloc after mi_collect(true): RSS 3.0 MiB" }.count, 2, "\(tips)")
        // The line drops at each release: the drained point, then the point after the call, at one x.
        let points = try XCTUnwrap(e.named("polyline").first { $0.text == "glibc" }?.attributes["points"])
            .split(separator: " ").map { $0.split(separator: ",").map { Double($0)! } }
        XCTAssertEqual(points[8][0], points[9][0])
        XCTAssertLessThan(points[8][1], points[9][1], "after the call RSS is lower (larger SVG y)")
    }

    /// Files written before the operation counts existed still chart, against seconds.
    func test_sawtooth_seriesWithoutOperations_isDrawnAgainstSeconds() throws {
        var record = Self.sawtoothRecord([(.glibc, nil)])
        for i in record.results[0].repetitions.indices {
            record.results[0].repetitions[i].rssSeries = (0..<10).map {
                RSSPoint(seconds: Double($0) / 10, rssBytes: (4 + $0 % 3) << 20, liveBytes: ($0 % 3) << 20)
            }
        }
        let e = elements(try sawtoothSVG(record))
        XCTAssertTrue(e.all.contains { $0.name == "text" && $0.text == "seconds" })
        XCTAssertEqual(e.named("path", class: "event").count, 0)
        XCTAssertEqual(e.named("text", class: "legend").first?.text, "glibc")
    }

    // MARK: Text and CSV

    func test_text_sawtooth_showsRSSDrainedAndAfter_andNamesTheCalls() throws {
        let text = TextReport.render(ReportFixtures.record)
        let section = try XCTUnwrap(text.components(separatedBy: "== sawtooth").last)
        XCTAssertTrue(section.contains("RSS drained  RSS after"), section)
        let glibc = try XCTUnwrap(section.split(separator: "\n").first { $0.hasPrefix("glibc ") })
        XCTAssertTrue(glibc.contains("5.0 MiB    3.0 MiB "), String(glibc))
        XCTAssertTrue(section.contains("Release calls: glibc malloc_trim(0); mimalloc mi_collect(true); slab SlabCache.shrink()"), section)
    }

    func test_text_latencyNote_saysHowTheSamplesWereTimed() throws {
        let text = TextReport.render(ReportFixtures.record)
        XCTAssertTrue(text.contains("p50-max: ns per op of samples that time 32 consecutive ops together"), text)
        var old = ReportFixtures.record
        for i in old.results.indices {
            for j in old.results[i].repetitions.indices { old.results[i].repetitions[j].latency?.groupOps = nil }
        }
        let oldText = TextReport.render(old)
        XCTAssertFalse(oldText.contains("consecutive ops together"))
        XCTAssertTrue(oldText.contains("latency of single ops"), oldText)
    }

    func test_csv_groupOpsDrainedRSSAndReleaseCall() throws {
        let rows = CSVReport.parse(CSVReport.render(ReportFixtures.record))
        let col = Dictionary(uniqueKeysWithValues: rows[0].enumerated().map { ($1, $0) })
        let pair = try XCTUnwrap(rows.dropFirst().first { $0[col["workload"]!] == "pair" })
        XCTAssertEqual(pair[col["latency_group_ops"]!], "32")
        XCTAssertEqual(pair[col["release_call"]!], "")
        XCTAssertEqual(pair[col["rss_drained_bytes"]!], "")
        let sawtooth = try XCTUnwrap(rows.dropFirst().first { $0[col["workload"]!] == "sawtooth" && $0[col["allocator"]!] == "glibc" })
        XCTAssertEqual(sawtooth[col["release_call"]!], "malloc_trim(0)")
        XCTAssertEqual(sawtooth[col["rss_drained_bytes"]!], String(5 << 20))
        XCTAssertEqual(sawtooth[col["rss_after_bytes"]!], String(3 << 20))
        XCTAssertEqual(sawtooth[col["latency_group_ops"]!], "")
    }
}
