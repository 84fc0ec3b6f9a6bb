// ProcSlabInfo (SlabTop): parsing /proc/slabinfo 2.1 (real and malformed) into SlabInfoRows,
// reading it (errno -> error), and the numbers slabtop derives, checked against output of procps'
// `slabtop -o` on a fixed file.

import Foundation
import Slab
import SlabTop
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class ProcSlabInfoTests: XCTestCase {
    static let header = SlabInfo.header

    /// Nine lines of this machine's /proc/slabinfo (Linux 6.18, 4 KiB pages): empty caches,
    /// multi-page slabs, a name longer than 17, an 8-byte object.
    static let fixture = """
        slabinfo - version: 2.1
        # name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>
        btrfs_ordered_extent      0      0    416   19    2 : tunables    0    0    0 : slabdata      0      0      0
        bio-312               12     12    320   12    1 : tunables    0    0    0 : slabdata      1      1      0
        ext4_inode_cache   43682  43946   1128   14    4 : tunables    0    0    0 : slabdata   3139   3139      0
        buffer_head        42167  50349    104   39    1 : tunables    0    0    0 : slabdata   1291   1291      0
        dentry             61624  62538    192   21    1 : tunables    0    0    0 : slabdata   2978   2978      0
        task_struct          100    120   5888    5    8 : tunables    0    0    0 : slabdata     24     24      0
        kmalloc-4k           360    360   4096    8    8 : tunables    0    0    0 : slabdata     45     45      0
        kmalloc-1k           742    768   1024   16    4 : tunables    0    0    0 : slabdata     48     48      0
        kmalloc-8           2045   2048      8  512    1 : tunables    0    0    0 : slabdata      4      4      0

        """

    /// What procps 4.0.2's `slabtop -o -s n` printed for `fixture` (bind-mounted over
    /// /proc/slabinfo in a private mount namespace), with trailing blanks removed.
    static let slabtopByName = """
         Active / Total Objects (% used)    : 150732 / 160141 (94.1%)
         Active / Total Slabs (% used)      : 7530 / 7530 (100.0%)
         Active / Total Caches (% used)     : 8 / 9 (88.9%)
         Active / Total Size (% used)       : 66732.27K / 68166.46K (97.9%)
         Minimum / Average / Maximum Object : 0.01K / 0.42K / 5.75K

          OBJS ACTIVE  USE OBJ SIZE  SLABS OBJ/SLAB CACHE SIZE NAME
            12     12 100%    0.31K      1       12         4K bio-312
             0      0   0%    0.41K      0       19         0K btrfs_ordered_extent
         50349  42167  83%    0.10K   1291       39      5164K buffer_head
         62538  61624  98%    0.19K   2978       21     11912K dentry
         43946  43682  99%    1.10K   3139       14     50224K ext4_inode_cache
           768    742  96%    1.00K     48       16       768K kmalloc-1k
           360    360 100%    4.00K     45        8      1440K kmalloc-4k
          2048   2045  99%    0.01K      4      512        16K kmalloc-8
           120    100  83%    5.75K     24        5       768K task_struct

        """

    // MARK: Parsing well-formed text

    func test_parse_fixture_givesEveryFieldOfEveryLine() throws {
        let info = try ProcSlabInfo.parse(Self.fixture)
        XCTAssertEqual(info.version, "2.1")
        XCTAssertEqual(info.rows.map(\.name), ["btrfs_ordered_extent", "bio-312", "ext4_inode_cache", "buffer_head",
                                                  "dentry", "task_struct", "kmalloc-4k", "kmalloc-1k", "kmalloc-8"])
        XCTAssertEqual(info.rows[2], SlabInfoRow(
            name: "ext4_inode_cache", activeObjects: 43682, totalObjects: 43946, objectSize: 1128, objectsPerSlab: 14,
            pagesPerSlab: 4, limit: 0, batchCount: 0, sharedFactor: 0, activeSlabs: 3139, totalSlabs: 3139,
            sharedAvailable: 0))
    }

    func test_parse_acceptsTabs_noTrailingNewline_andOldSLABTunables() throws {
        let text = Self.header + "\nkmalloc-64\t100 128 64 64 1 : tunables 120 60 8 : slabdata 2 2 7"
        let entry = try XCTUnwrap(ProcSlabInfo.parse(text).rows.first)
        XCTAssertEqual(entry.name, "kmalloc-64")
        XCTAssertEqual([entry.limit, entry.batchCount, entry.sharedFactor, entry.sharedAvailable], [120, 60, 8, 7])
    }

    func test_parse_statisticsVersion_ignoresExtraSections() throws {
        let text = """
            slabinfo - version: 2.1 (statistics)
            # name            <active_objs> <num_objs> ...
            kmalloc-64   100 128 64 64 1 : tunables 120 60 8 : slabdata 2 2 7 : globalstat 1 2 3 : cpustat 4 5 6 7
            """
        let info = try ProcSlabInfo.parse(text)
        XCTAssertEqual(info.version, "2.1 (statistics)")
        XCTAssertEqual(info.rows.first?.totalSlabs, 2)
    }

    func test_parse_headerOnly_givesNoEntries() throws {
        XCTAssertEqual(try ProcSlabInfo.parse(Self.header + "\n").rows, [])
    }

    func test_parse_thisMachinesProcSlabinfo() throws {
        let text: String
        do {
            text = try ProcFile.readText(path: ProcSlabInfo.defaultPath)
        } catch let error as ProcFile.ReadError {
            throw XCTSkip("\(error)")
        }
        let info = try ProcSlabInfo.parse(text)
        let cacheLines = text.split(separator: "\n").count - 2
        XCTAssertEqual(info.rows.count, cacheLines)
        XCTAssertGreaterThan(info.rows.count, 0)
        for e in info.rows {
            XCTAssertGreaterThan(e.objectSize, 0, e.name)
            XCTAssertGreaterThan(e.objectsPerSlab, 0, e.name)
            XCTAssertGreaterThan(e.pagesPerSlab, 0, e.name)
            XCTAssertFalse(e.name.isEmpty)
        }
        // The kernel's own caches for dentries and inodes exist on any Linux that boots.
        XCTAssertTrue(info.rows.contains { $0.name == "dentry" })
        // read(path:) is ProcFile.readText + parse.
        XCTAssertEqual(try ProcSlabInfo.read().rows.map(\.name), info.rows.map(\.name))
    }

    // MARK: Malformed text

    private func assertParseError(_ text: String, line: Int, _ problem: ProcSlabInfo.ParseError.Problem,
                                  mentioning words: [String] = [], file: StaticString = #filePath, lineNo: UInt = #line) {
        XCTAssertThrowsError(try ProcSlabInfo.parse(text), file: file, line: lineNo) { error in
            guard let error = error as? ProcSlabInfo.ParseError else {
                return XCTFail("expected ParseError, got \(error)", file: file, line: lineNo)
            }
            XCTAssertEqual(error.line, line, "line number", file: file, line: lineNo)
            XCTAssertEqual(error.problem, problem, file: file, line: lineNo)
            let message = error.description
            XCTAssertTrue(message.contains("line \(line):"), message, file: file, line: lineNo)
            for word in words {
                XCTAssertTrue(message.contains(word), "\"\(message)\" should mention \(word)", file: file, line: lineNo)
            }
        }
    }

    /// The fixture with `bad` as cache line 4 (after two good lines).
    private func withBadLine(_ bad: String) -> String {
        let lines = Self.fixture.split(separator: "\n").map(String.init)
        return (lines[0..<4] + [bad] + lines[4...]).joined(separator: "\n") + "\n"
    }

    func test_parse_emptyText_reportsEmptyInput() {
        assertParseError("", line: 1, .emptyInput, mentioning: ["2.1"])
    }

    func test_parse_wrongVersion_reportsLine1() {
        assertParseError("slabinfo - version: 2.0\n# name\n", line: 1,
                         .wrongVersionLine(found: "slabinfo - version: 2.0"), mentioning: ["version: 2.0"])
        assertParseError("hello\n", line: 1, .wrongVersionLine(found: "hello"))
    }

    func test_parse_missingColumnHeader_reportsLine2() {
        let text = "slabinfo - version: 2.1\nkmalloc-8 1 2 8 512 1 : tunables 0 0 0 : slabdata 1 1 0\n"
        assertParseError(text, line: 2,
                         .missingColumnHeader(found: "kmalloc-8 1 2 8 512 1 : tunables 0 0 0 : slabdata 1 1 0"),
                         mentioning: ["# name"])
        assertParseError("slabinfo - version: 2.1\n", line: 2, .missingColumnHeader(found: ""))
    }

    func test_parse_truncatedLine_reportsLineNumber() {
        assertParseError(withBadLine("dentry 61624 62538 192 21 1 : tunables 0 0 0 : slabdata 2978 2978"), line: 5,
                         .wrongFieldCount(section: "the slabdata section (\"slabdata\" and 3 numbers)", expected: 4, found: 3),
                         mentioning: ["slabdata", "found 3"])
        assertParseError(withBadLine("dentry 61624 62538 192 21 1 : tunables 0 0 0 :"), line: 5,
                         .missingLabel(expected: "slabdata", found: ""))
        assertParseError(withBadLine("dentry 61624 62538"), line: 5, .missingSeparators(found: 0))
    }

    func test_parse_missingSeparators_reportsHowManyFound() {
        assertParseError(withBadLine("dentry 1 2 192 21 1 tunables 0 0 0 slabdata 1 1 0"), line: 5,
                         .missingSeparators(found: 0), mentioning: ["':'"])
        assertParseError(withBadLine("dentry 1 2 192 21 1 : tunables 0 0 0 slabdata 1 1 0"), line: 5,
                         .missingSeparators(found: 1))
    }

    func test_parse_nonNumericField_namesTheColumn() {
        assertParseError(withBadLine("dentry 1 x2 192 21 1 : tunables 0 0 0 : slabdata 1 1 0"), line: 5,
                         .notANumber(field: "num_objs", value: "x2"), mentioning: ["num_objs", "\"x2\""])
        assertParseError(withBadLine("dentry -1 2 192 21 1 : tunables 0 0 0 : slabdata 1 1 0"), line: 5,
                         .notANumber(field: "active_objs", value: "-1"))
        assertParseError(withBadLine("dentry 1 2 192 21 1 : tunables 0 0 0 : slabdata 1 1 +0"), line: 5,
                         .notANumber(field: "sharedavail", value: "+0"))
        assertParseError(withBadLine("dentry 1 2 192 21 1 : tunables 0 0.5 0 : slabdata 1 1 0"), line: 5,
                         .notANumber(field: "batchcount", value: "0.5"))
        assertParseError(withBadLine("dentry 1 2 192 21 99999999999999999999 : tunables 0 0 0 : slabdata 1 1 0"),
                         line: 5, .notANumber(field: "pagesperslab", value: "99999999999999999999"))
    }

    func test_parse_wrongSectionLabel_namesExpectedLabel() {
        assertParseError(withBadLine("dentry 1 2 192 21 1 : tunable 0 0 0 : slabdata 1 1 0"), line: 5,
                         .missingLabel(expected: "tunables", found: "tunable"), mentioning: ["\"tunables\""])
        assertParseError(withBadLine("dentry 1 2 192 21 1 : slabdata 1 1 0 : tunables 0 0 0"), line: 5,
                         .missingLabel(expected: "tunables", found: "slabdata"))
    }

    func test_parse_wrongFieldCounts_inNameSection() {
        // No name: the first number is taken as the name and one number is missing.
        assertParseError(withBadLine("1 2 192 21 1 : tunables 0 0 0 : slabdata 1 1 0"), line: 5,
                         .wrongFieldCount(section: "the name section (name and 5 numbers)", expected: 6, found: 5))
        // A name with a blank in it.
        assertParseError(withBadLine("my cache 1 2 192 21 1 : tunables 0 0 0 : slabdata 1 1 0"), line: 5,
                         .wrongFieldCount(section: "the name section (name and 5 numbers)", expected: 6, found: 7))
        assertParseError(withBadLine("dentry 1 2 192 21 1 : tunables 0 0 0 0 : slabdata 1 1 0"), line: 5,
                         .wrongFieldCount(section: "the tunables section (\"tunables\" and 3 numbers)", expected: 4, found: 5))
    }

    func test_parse_blankLineAmongCaches_reportsItsLine() {
        assertParseError(withBadLine(""), line: 5, .emptyLine)
        assertParseError(withBadLine("   \t "), line: 5, .emptyLine)
    }

    func test_parse_firstBadLineWins() {
        var lines = Self.fixture.split(separator: "\n").map(String.init)
        lines[3] = "bio-312 x"
        lines[6] = "dentry y"
        assertParseError(lines.joined(separator: "\n"), line: 4, .missingSeparators(found: 0))
    }

    // MARK: Reading files

    func test_read_file_returnsTheSameAsParse() throws {
        let path = try temporaryFile(Self.fixture)
        XCTAssertEqual(try ProcFile.readText(path: path), Self.fixture)
        XCTAssertEqual(try ProcSlabInfo.read(path: path), try ProcSlabInfo.parse(Self.fixture))
    }

    func test_read_largeFile_readsPastOneChunk() throws {
        let line = "kmalloc-8 2045 2048 8 512 1 : tunables 0 0 0 : slabdata 4 4 0\n"
        var text = Self.header + "\n"
        for i in 0..<3000 { text += "c\(i)" + line.dropFirst("kmalloc-8".count) }
        let path = try temporaryFile(text)
        let info = try ProcSlabInfo.read(path: path)
        XCTAssertEqual(info.rows.count, 3000)
        XCTAssertEqual(info.rows.last?.name, "c2999")
    }

    func test_read_malformedFile_errorNamesThePathAndLine() throws {
        let path = try temporaryFile(Self.header + "\nbad 1 2\n")
        XCTAssertThrowsError(try ProcSlabInfo.read(path: path)) { error in
            XCTAssertEqual(error as? ProcSlabInfo.ParseError,
                           ProcSlabInfo.ParseError(line: 3, problem: .missingSeparators(found: 0), source: path))
            XCTAssertTrue("\(error)".hasPrefix("\(path) line 3: "), "\(error)")
        }
    }

    func test_read_missingFile_throwsMissing_namingThePath() {
        let path = "/nonexistent/slabinfo-\(getpid())"
        XCTAssertThrowsError(try ProcSlabInfo.read(path: path)) { error in
            XCTAssertEqual(error as? ProcFile.ReadError, .missing(path: path))
            XCTAssertTrue("\(error)".contains(path), "\(error)")
            XCTAssertTrue("\(error)".contains("does not exist"), "\(error)")
        }
    }

    func test_read_directory_throwsOtherErrno_withStrerror() {
        XCTAssertThrowsError(try ProcFile.readText(path: "/")) { error in
            XCTAssertEqual(error as? ProcFile.ReadError, .failed(path: "/", errno: EISDIR, operation: "read"))
            XCTAssertTrue("\(error)".contains("Is a directory"), "\(error)")
        }
    }

    func test_readError_fromErrno_mapsPermissionAndMissing_andExplainsProcSlabinfo() {
        let proc = ProcSlabInfo.defaultPath
        XCTAssertEqual(ProcFile.ReadError(errno: EACCES, path: proc, operation: "open"), .permissionDenied(path: proc))
        XCTAssertEqual(ProcFile.ReadError(errno: EPERM, path: proc, operation: "open"), .permissionDenied(path: proc))
        XCTAssertEqual(ProcFile.ReadError(errno: ENOENT, path: proc, operation: "open"), .missing(path: proc))
        XCTAssertEqual(ProcFile.ReadError(errno: EIO, path: proc, operation: "read"),
                       .failed(path: proc, errno: EIO, operation: "read"))
        let denied = "\(ProcFile.ReadError.permissionDenied(path: proc))"
        XCTAssertTrue(denied.contains("permission denied") && denied.contains("root"), denied)
        let missing = "\(ProcFile.ReadError.missing(path: proc))"
        XCTAssertTrue(missing.contains("no slabinfo") && missing.contains("CONFIG_SLUB_DEBUG"), missing)
    }

    // MARK: slabtop's arithmetic

    private func entry(_ name: String = "c", active: Int, total: Int, size: Int = 64, perSlab: Int = 64,
                       pages: Int = 1, slabs: Int = 1) -> SlabInfoRow {
        SlabInfoRow(name: name, activeObjects: active, totalObjects: total, objectSize: size,
                           objectsPerSlab: perSlab, pagesPerSlab: pages, activeSlabs: slabs, totalSlabs: slabs)
    }

    func test_usePercent_truncates_andIsZeroForEmptyCache() {
        XCTAssertEqual(entry(active: 0, total: 0).usePercent, 0)
        XCTAssertEqual(entry(active: 12, total: 12).usePercent, 100)
        XCTAssertEqual(entry(active: 43925, total: 43962).usePercent, 99)
        XCTAssertEqual(entry(active: 1, total: 3).usePercent, 33)
        XCTAssertEqual(entry(active: 2, total: 3).usePercent, 66)
        XCTAssertEqual(entry(active: 1019, total: 7800).usePercent, 13)
        // Single precision, as slabtop: 100 * (29f / 100f) rounds to exactly 29.
        XCTAssertEqual(entry(active: 29, total: 100).usePercent, 29)
        XCTAssertEqual(entry(active: 1, total: 1_000_000).usePercent, 0)
    }

    func test_cacheSize_isSlabsTimesPagesTimesPageSize_inK() {
        let dentry = entry("dentry", active: 47733, total: 47733, size: 192, perSlab: 21, pages: 1, slabs: 2273)
        XCTAssertEqual(dentry.cacheSize(pageSize: 4096), 2273 * 4096)
        XCTAssertEqual(dentry.cacheSizeKiB(pageSize: 4096), 9092)
        let ext4 = entry("ext4", active: 1, total: 14, size: 1128, perSlab: 14, pages: 4, slabs: 3)
        XCTAssertEqual(ext4.cacheSizeKiB(pageSize: 4096), 48)
        XCTAssertEqual(ext4.cacheSizeKiB(pageSize: 65536), 768)
        XCTAssertEqual(entry(active: 0, total: 0, slabs: 0).cacheSizeKiB(pageSize: 4096), 0)
    }

    func test_totals_fixture_matchHandComputedSums() throws {
        let t = try ProcSlabInfo.parse(Self.fixture).totals
        XCTAssertEqual(t.activeObjects, 12 + 43682 + 42167 + 61624 + 100 + 360 + 742 + 2045)
        XCTAssertEqual(t.totalObjects, 12 + 43946 + 50349 + 62538 + 120 + 360 + 768 + 2048)
        XCTAssertEqual(t.activeSlabs, 7530)
        XCTAssertEqual(t.totalSlabs, 7530)
        XCTAssertEqual(t.activeCaches, 8)
        XCTAssertEqual(t.totalCaches, 9)
        XCTAssertEqual(t.totalSize, 12 * 320 + 43946 * 1128 + 50349 * 104 + 62538 * 192 + 120 * 5888 + 360 * 4096
                       + 768 * 1024 + 2048 * 8)
        XCTAssertEqual(t.activeSize, 12 * 320 + 43682 * 1128 + 42167 * 104 + 61624 * 192 + 100 * 5888 + 360 * 4096
                       + 742 * 1024 + 2045 * 8)
        XCTAssertEqual(t.minimumObjectSize, 8)
        XCTAssertEqual(t.maximumObjectSize, 5888)
        XCTAssertEqual(t.averageObjectSize, t.totalSize / t.totalObjects)
    }

    func test_totals_minimumCountsEmptyCaches_andEmptyFileIsAllZero() {
        let info = ProcSlabInfo(rows: [entry(active: 0, total: 0, size: 4, slabs: 0), entry(active: 1, total: 2, size: 64)])
        XCTAssertEqual(info.totals.minimumObjectSize, 4)
        XCTAssertEqual(info.totals.activeCaches, 1)
        XCTAssertEqual(ProcSlabInfo(rows: []).totals, ProcSlabInfo.Totals())
    }

    func test_slabtopReport_byName_equalsSlabtopOutputForSameFile() throws {
        let info = try ProcSlabInfo.parse(Self.fixture)
        XCTAssertEqual(info.slabtopReport(sortedBy: .name, pageSize: 4096), Self.slabtopByName)
    }

    func test_tableRow_matchesSlabtopRow() {
        let dentry = entry("dentry", active: 47733, total: 47733, size: 192, perSlab: 21, pages: 1, slabs: 2273)
        XCTAssertEqual(ProcSlabInfo.tableRow(dentry, pageSize: 4096),
                       " 47733  47733 100%    0.19K   2273       21      9092K dentry")
        // 128 bytes is 0.125K: printf rounds the tie to even, as slabtop shows it.
        XCTAssertEqual(ProcSlabInfo.tableRow(entry("k", active: 1, total: 1, size: 128, perSlab: 32, slabs: 1), pageSize: 4096),
                       "     1      1 100%    0.12K      1       32         4K k")
    }

    func test_summary_emptyFile_printsZeroPercentNotNaN() {
        let summary = ProcSlabInfo(rows: []).summary()
        XCTAssertFalse(summary.contains("nan"), summary)
        XCTAssertTrue(summary.hasPrefix(" Active / Total Objects (% used)    : 0 / 0 (0.0%)"), summary)
    }

    // MARK: Sorting

    func test_sortKey_acceptsSlabtopLettersAndNames_rejectsOthers() {
        XCTAssertEqual(ProcSlabInfo.SortKey(argument: "c"), .cacheSize)
        XCTAssertEqual(ProcSlabInfo.SortKey(argument: "cache-size"), .cacheSize)
        XCTAssertEqual(ProcSlabInfo.SortKey(argument: "o"), .objects)
        XCTAssertEqual(ProcSlabInfo.SortKey(argument: "b"), .objectsPerSlab)
        XCTAssertEqual(ProcSlabInfo.SortKey(argument: "l"), .slabs)
        XCTAssertEqual(ProcSlabInfo.SortKey(argument: "u"), .use)
        XCTAssertNil(ProcSlabInfo.SortKey(argument: "x"))
        XCTAssertNil(ProcSlabInfo.SortKey(argument: ""))
        XCTAssertNil(ProcSlabInfo.SortKey(argument: "C"))
        XCTAssertEqual(Set(ProcSlabInfo.SortKey.allCases.map(\.letter)).count, ProcSlabInfo.SortKey.allCases.count)
        for key in ProcSlabInfo.SortKey.allCases {
            XCTAssertTrue(ProcSlabInfo.SortKey.validKeys.contains("\(key.letter) (\(key.rawValue))"))
        }
    }

    func test_sorted_numericKeysDescending_tiesByName_nameAscending() throws {
        let info = try ProcSlabInfo.parse(Self.fixture)
        XCTAssertEqual(info.sorted(by: .cacheSize, pageSize: 4096).map(\.name),
                       ["ext4_inode_cache", "dentry", "buffer_head", "kmalloc-4k", "kmalloc-1k", "task_struct",
                        "kmalloc-8", "bio-312", "btrfs_ordered_extent"])
        XCTAssertEqual(info.sorted(by: .name).map(\.name), info.rows.map(\.name).sorted())
        XCTAssertEqual(info.sorted(by: .objectSize).first?.name, "task_struct")
        XCTAssertEqual(info.sorted(by: .objectsPerSlab).first?.name, "kmalloc-8")
        XCTAssertEqual(info.sorted(by: .objects).first?.name, "dentry")
        XCTAssertEqual(info.sorted(by: .use).prefix(2).map(\.name), ["bio-312", "kmalloc-4k"])
        for key in ProcSlabInfo.SortKey.allCases {
            XCTAssertEqual(info.sorted(by: key).count, info.rows.count, "\(key)")
        }
    }

    func test_slabtopReport_limit_keepsTheFirstRows() throws {
        let info = try ProcSlabInfo.parse(Self.fixture)
        let lines = info.slabtopReport(sortedBy: .cacheSize, limit: 2, pageSize: 4096).split(separator: "\n")
        XCTAssertEqual(lines.count, 5 + 1 + 2)
        XCTAssertTrue(lines[6].hasSuffix(" ext4_inode_cache"))
        XCTAssertTrue(lines[7].hasSuffix(" dentry"))
        XCTAssertEqual(info.slabtopReport(limit: 0).split(separator: "\n").last.map(String.init),
                       ProcSlabInfo.tableHeader)
    }
}
