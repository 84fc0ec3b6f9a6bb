// The README's blocks of `slabinfo` output, checked against `slabinfo` itself, so that the README
// cannot drift from what the program prints (its snippets of code are ReadmeExampleTests').
//
// How the README marks them: an HTML comment on the line before a fenced block.
//   <!-- output: COMMAND -->                 the block is what COMMAND prints today; checked here,
//                                            addresses (0x...) masked on both sides
//   <!-- output, this machine's: COMMAND --> measured on the machine the README was written on
//                                            (the kernel's own files): shown, not checked
// Every block of output in the slabinfo section carries one of the two, and every checked COMMAND
// is one this file knows how to run, so a block can be neither added unchecked nor dropped
// unnoticed. A failure prints the block as it should read now, ready to paste.
//
// Beside the blocks, the figures the prose around them states: the sort keys, the numbers the
// paragraph after the demo explains, the kmalloc class table, and the usage lines' options; and
// the architecture's file table, whose every path must exist.

import Foundation
import Slab
import SlabTop
import TestSupport
import XCTest

final class ReadmeOutputTests: XCTestCase {
    // MARK: The README, split into its marked blocks

    struct Block {
        /// COMMAND of the marker before the fence, nil when there is none.
        var command: String?
        /// Marked "this machine's": shown as measured, not checked.
        var machineSpecific: Bool
        /// The fence's info string ("sh", "swift", or empty for output).
        var language: String
        /// The lines between the fences, each followed by a newline.
        var text: String
        /// 1-based line of the opening fence in README.md.
        var line: Int
    }

    static let readmePath = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("README.md").path

    static func readme() throws -> String { try String(contentsOfFile: readmePath, encoding: .utf8) }

    /// The text between `<!-- SECTION: name -->` and `<!-- /SECTION: name -->`.
    static func section(_ name: String, of text: String) throws -> String {
        let start = try XCTUnwrap(text.range(of: "<!-- SECTION: \(name) -->"), "README has no section \(name)")
        let end = try XCTUnwrap(text.range(of: "<!-- /SECTION: \(name) -->"), "README's section \(name) has no end")
        return String(text[start.upperBound..<end.lowerBound])
    }

    static let checkedMarker = "<!-- output: ", machineMarker = "<!-- output, this machine's: "

    /// Every fenced block of `text`, with the marker on the line before it. `firstLine` numbers
    /// the lines (1 for the whole README).
    static func blocks(in text: String, firstLine: Int = 1) -> [Block] {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var blocks: [Block] = []
        var i = 0
        while i < lines.count {
            guard lines[i].hasPrefix("```") else { i += 1; continue }
            let open = i
            i += 1
            while i < lines.count, lines[i] != "```" { i += 1 }
            var block = Block(command: nil, machineSpecific: false, language: String(lines[open].dropFirst(3)),
                              text: lines[(open + 1)..<min(i, lines.count)].map { $0 + "\n" }.joined(),
                              line: firstLine + open)
            if open > 0, lines[open - 1].hasSuffix(" -->") {
                let marker = lines[open - 1]
                for (prefix, machine) in [(checkedMarker, false), (machineMarker, true)] where marker.hasPrefix(prefix) {
                    block.command = String(marker.dropFirst(prefix.count).dropLast(" -->".count))
                    block.machineSpecific = machine
                }
            }
            blocks.append(block)
            i += 1
        }
        return blocks
    }

    /// The checked block for `command`, exactly one in the README.
    func block(_ command: String) throws -> Block {
        let found = Self.blocks(in: try Self.readme()).filter { $0.command == command && !$0.machineSpecific }
        XCTAssertEqual(found.count, 1, "README should have one block marked <!-- output: \(command) -->")
        return try XCTUnwrap(found.first)
    }

    // MARK: Running slabinfo as the README shows it

    /// Variables that would change what slabinfo prints: the CPU layer's mode (the README shows the
    /// rseq path) and the help's line width.
    static let environmentNotShown: Set<String> = ["SLAB_CPU_LAYER", "GLIBC_TUNABLES", "COLUMNS"]

    func slabinfo(_ arguments: [String]) throws -> String {
        let r = try SlabinfoProcess.run(arguments, removing: Self.environmentNotShown)
        XCTAssertEqual(r.status, 0, "slabinfo \(arguments.joined(separator: " "))\n\(r.summary)")
        return r.stdout
    }

    /// Addresses change from run to run: every 0x... reads 0x... on both sides.
    static func masked(_ text: String) -> String {
        text.replacingOccurrences(of: "0x[0-9a-f]+", with: "0x...", options: .regularExpression)
    }

    /// Without the newlines at the end (--help ends with a blank line; a block cannot).
    static func trimmed(_ text: String) -> String {
        var s = Substring(text)
        while s.last == "\n" { s = s.dropLast() }
        return String(s) + "\n"
    }

    /// Fails, showing the block as it should read, unless `block` is `actual` (both masked and
    /// passed through `normalize`).
    func assertBlock(_ block: Block, is actual: String, normalize: (String) -> String = { $0 },
                     file: StaticString = #filePath, line: UInt = #line) {
        let want = normalize(Self.masked(Self.trimmed(actual))), have = normalize(Self.masked(Self.trimmed(block.text)))
        guard want != have else { return }
        let wantLines = want.split(separator: "\n", omittingEmptySubsequences: false)
        let haveLines = have.split(separator: "\n", omittingEmptySubsequences: false)
        let first = zip(wantLines, haveLines).enumerated().first { $0.element.0 != $0.element.1 }?.offset
            ?? min(wantLines.count, haveLines.count)
        XCTFail("""
            README.md line \(block.line), the block marked <!-- output: \(block.command ?? "") -->, differs from \
            what the command prints now, first at the block's line \(first + 1):
              README: \(first < haveLines.count ? String(haveLines[first]) : "(no line)")
              now:    \(first < wantLines.count ? String(wantLines[first]) : "(no line)")
            The block should read:
            ```
            \(Self.trimmed(actual))```
            """, file: file, line: line)
    }

    // MARK: Every block of output is marked, and every mark is checked

    /// The commands of the checked blocks, each with its test below.
    static let checkedCommands = [
        "slabinfo --help",
        "slabinfo --demo",
        "slabtop -o, over slabinfo --demo --raw",
        "slabinfo --buddyinfo --file (the block above)",
        "slabinfo --demo --buddyinfo --raw, zones with no free block left out",
    ]

    func test_everyOutputBlockOfTheSlabinfoSection_isMarked_andEveryMarkIsChecked() throws {
        let text = try Self.readme()
        let section = try Self.section("slabinfo-cli", of: text)
        let sectionLine = text.components(separatedBy: "<!-- SECTION: slabinfo-cli -->")[0]
            .split(separator: "\n", omittingEmptySubsequences: false).count
        for block in Self.blocks(in: section, firstLine: sectionLine) where block.language.isEmpty {
            XCTAssertNotNil(block.command, """
                README.md line \(block.line): a block of output without a marker; put \
                "\(Self.checkedMarker)COMMAND -->" before it (and a test here), or \
                "\(Self.machineMarker)COMMAND -->" if it cannot be reproduced
                """)
        }
        let checked = Self.blocks(in: text).filter { !$0.machineSpecific }.compactMap(\.command)
        XCTAssertEqual(checked.sorted(), Self.checkedCommands.sorted(),
                       "the README's checked blocks and the ones this file checks differ")
        // A marker must sit right before its fence, or it marks nothing.
        let markers = text.components(separatedBy: "\n").filter { $0.hasPrefix(Self.checkedMarker) || $0.hasPrefix(Self.machineMarker) }
        XCTAssertEqual(markers.count, Self.blocks(in: text).filter { $0.command != nil }.count,
                       "a marker that is not on the line before a fence")
    }

    // MARK: The checked blocks

    func test_help_block() throws {
        assertBlock(try block("slabinfo --help"), is: try slabinfo(["--help"]))
    }

    func test_demo_block_andItsSlabinfoIsWhatDemoRawPrints() throws {
        let demo = try slabinfo(["--demo"])
        guard demo.contains(", CPU layer rseq, ") else {
            throw XCTSkip("the README shows the demo on the rseq path; this process has none:\n\(demo)")
        }
        let readme = try block("slabinfo --demo")
        assertBlock(readme, is: demo)

        // --demo --raw prints the same 2.1 text alone: the demo block's lines from the version line
        // to the last cache, before slabtop's summary.
        let lines = readme.text.split(separator: "\n").map(String.init)
        let start = try XCTUnwrap(lines.firstIndex(of: "slabinfo - version: 2.1"))
        let end = try XCTUnwrap(lines.firstIndex { $0.hasPrefix(" Active / Total Objects") })
        XCTAssertEqual(lines[start..<end].map { $0 + "\n" }.joined(), try slabinfo(["--demo", "--raw"]),
                       "the 2.1 text in the README's demo block is not what slabinfo --demo --raw prints")
    }

    func test_slabtopOverDemoRaw_block_hasOurSummary_andOurRows() throws {
        guard ProcSlabInfo.systemPageSize == 4096 else { throw XCTSkip("the block shows cache sizes of 4 KiB pages") }
        let readme = try block("slabtop -o, over slabinfo --demo --raw")
        // procps' slabtop sorts by objects and leaves ties in file order; ours breaks them by name.
        // The summary and the header must match line for line, the rows as a set.
        let ours = try slabinfo(["--file", try temporaryFile(try slabinfo(["--demo", "--raw"])), "--sort", "o"])
        func rowsSorted(_ text: String) -> String {
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            guard let header = lines.firstIndex(of: ProcSlabInfo.tableHeader) else { return text }
            return (lines[...header] + lines[(header + 1)...].sorted()).joined(separator: "\n")
        }
        assertBlock(readme, is: ours, normalize: rowsSorted)
        // And in the README's order the objects never grow (slabtop's sort).
        let objects = readme.text.split(separator: "\n").drop { $0 != ProcSlabInfo.tableHeader }.dropFirst()
            .map { Int($0.split(separator: " ")[0]) ?? -1 }
        XCTAssertEqual(objects, objects.sorted(by: >), "the README's slabtop rows are not sorted by objects")
    }

    func test_buddyinfoView_block_isTheViewOfTheSampleAboveIt() throws {
        guard ProcSlabInfo.systemPageSize == 4096 else { throw XCTSkip("the view is of 4 KiB pages") }
        let blocks = Self.blocks(in: try Self.readme())
        let view = try block("slabinfo --buddyinfo --file (the block above)")
        let index = try XCTUnwrap(blocks.firstIndex { $0.line == view.line })
        let sample = blocks[index - 1]
        XCTAssertEqual(sample.command, "cat /proc/buddyinfo", "the block above the view is the sample it shows")
        assertBlock(view, is: try slabinfo(["--buddyinfo", "--file", try temporaryFile(sample.text)]))
    }

    func test_demoBuddyinfoRaw_block_isThePageAllocatorsWithFreeBlocks() throws {
        let readme = try block("slabinfo --demo --buddyinfo --raw, zones with no free block left out")
        let text = try slabinfo(["--demo", "--buddyinfo", "--raw"])
        let withFreeBlocks = try ProcBuddyInfo.parse(text).zones.filter { $0.freePages > 0 }
        XCTAssertGreaterThan(withFreeBlocks.count, 0, text)
        assertBlock(readme, is: BuddyInfo.render(withFreeBlocks))
    }

    // MARK: The figures the prose states

    func test_sortKeysParagraph_namesEveryKeyAndItsLetter() throws {
        let section = try Self.section("slabinfo-cli", of: try Self.readme())
        let paragraph = try XCTUnwrap(section.components(separatedBy: "\n\n").first { $0.hasPrefix("`--sort` takes") })
            .replacingOccurrences(of: "\n", with: " ")
        let pairs = try NSRegularExpression(pattern: "`([a-z])` ([a-z-]+)")
            .matches(in: paragraph, range: NSRange(paragraph.startIndex..., in: paragraph))
            .map { m in (1...2).map { String(paragraph[Range(m.range(at: $0), in: paragraph)!]) }.joined(separator: " ") }
        XCTAssertEqual(pairs, ProcSlabInfo.SortKey.allCases.sorted { $0.letter < $1.letter }.map { "\($0.letter) \($0.rawValue)" })
    }

    func test_paragraphAfterTheDemo_statesTheDemosNumbers() throws {
        let section = try Self.section("slabinfo-cli", of: try Self.readme()).replacingOccurrences(of: "\n", with: " ")
        func stated(_ pattern: String) throws -> Int {
            let regex = try NSRegularExpression(pattern: pattern)
            let match = try XCTUnwrap(regex.firstMatch(in: section, range: NSRange(section.startIndex..., in: section)),
                                      "the README no longer says /\(pattern)/")
            return try XCTUnwrap(Int(section[Range(match.range(at: 1), in: section)!]))
        }
        let rows = try ProcSlabInfo.parse(try slabinfo(["--demo", "--raw"])).rows
        let mycache = try XCTUnwrap(rows.first { $0.name == "mycache" })
        let kmalloc128 = try XCTUnwrap(rows.first { $0.name == "kmalloc-128" })
        XCTAssertEqual(try stated("yet `active_objs` is ([0-9]+)"), mycache.activeObjects)
        XCTAssertEqual(try stated("filled a magazine of M = ([0-9]+) rounds"), mycache.limit)
        XCTAssertEqual(try stated("kmalloc-128 shows ([0-9]+) for one"), kmalloc128.activeObjects)
    }

    func test_kmallocClassTable_isWhatDemoRawPrintsForEachClass() throws {
        let section = try Self.section("kmalloc", of: try Self.readme())
        let table = section.split(separator: "\n").filter { $0.hasPrefix("| `kmalloc-") }.map { line in
            line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
        }
        let rows = try ProcSlabInfo.parse(try slabinfo(["--demo", "--raw"])).rows
        var printed: [[String]] = []
        for c in Kmalloc.sizeClasses {
            let row = try XCTUnwrap(rows.first { $0.name == c.name }, "\(c.name) not in slabinfo --demo --raw")
            printed.append(["`\(c.name)`", "\(row.objectSize)", "\(c.align)",
                            row.pagesPerSlab == 1 ? "1 page" : "\(row.pagesPerSlab) pages",
                            "\(row.objectsPerSlab)", "\(row.limit)"])
        }
        XCTAssertEqual(table, printed, """
            the README's kmalloc class table (class, object, align, slab, objects/slab, M) should read:
            \(printed.map { "| " + $0.joined(separator: " | ") + " |" }.joined(separator: "\n"))
            """)
    }

    func test_usageBlock_everyCommandLineIsAccepted() throws {
        let section = try Self.section("slabinfo-cli", of: try Self.readme())
        let usage = try XCTUnwrap(Self.blocks(in: section).first { $0.language == "sh" })
        let commands = usage.text.split(separator: "\n").filter { $0.hasPrefix("swift run -c release slabinfo") }
        XCTAssertGreaterThan(commands.count, 5, usage.text)
        for command in commands {
            let words = command.prefix { $0 != "#" }.split(separator: " ").dropFirst(5)
            let arguments = words.map { $0 == "PATH" ? "/nonexistent/readme-\(getpid())" : String($0) }
            // 0 done, 1 a file that cannot be read (PATH, or /proc/slabinfo without root); 2 is a
            // usage error: an option the README names that slabinfo does not take.
            let r = try SlabinfoProcess.run(arguments, removing: Self.environmentNotShown)
            XCTAssertTrue(r.status == 0 || r.status == 1, "\(command)\n\(r.summary)")
        }
    }

    // MARK: The file table

    func test_architectureFileTable_namesFilesAndFoldersThatExist() throws {
        let root = URL(fileURLWithPath: Self.readmePath).deletingLastPathComponent()
        let section = try Self.section("architecture", of: try Self.readme())
        let rows = section.split(separator: "\n").filter { $0.hasPrefix("| `") }
        XCTAssertGreaterThan(rows.count, 10, section)
        for row in rows {
            // "| `Sources/Slab/Magazine.swift`, `Depot.swift` | ...": later names are in the first one's folder.
            let names = row.split(separator: "|")[0].split(separator: "`").enumerated().filter { $0.offset % 2 == 1 }
                .map { String($0.element) }
            let first = try XCTUnwrap(names.first, String(row))
            let folder = (first as NSString).deletingLastPathComponent
            for name in names {
                let path = name == first || name.contains("/") ? name : folder + "/" + name
                XCTAssertTrue(FileManager.default.fileExists(atPath: root.appendingPathComponent(path).path),
                              "README's architecture table names \(path), which does not exist")
            }
        }
    }
}
