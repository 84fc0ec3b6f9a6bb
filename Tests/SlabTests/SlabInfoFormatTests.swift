// The /proc/slabinfo 2.1 text our registry renders: golden lines compared byte for byte with what
// Linux prints (mm/slab_common.c cache_show(): "%-17s %6lu %6lu %6u %4u %4d : tunables %4u %4u
// %4u : slabdata %6lu %6lu %6lu"), and a round trip through SlabTop's parser into the same
// SlabInfoRow.

import Slab
import SlabTop
import TestSupport
import XCTest

final class SlabInfoFormatTests: XCTestCase {
    /// A statistics value with the given slabinfo numbers. It starts from a real cache's snapshot
    /// (the type's initialiser is not public) and sets every field the slabinfo line shows.
    private func statistics(name: String, active: Int, total: Int, objectSize: Int, perSlab: Int, pages: Int,
                            magazine: Int, activeSlabs: Int, slabs: Int, depotRounds: Int) throws -> SlabCacheStatistics {
        let cache = try SlabCache(name: uniqueCacheName("golden"), size: 8)
        var s = cache.statistics
        try cache.destroy()
        s.name = name
        s.activeObjects = active
        s.totalObjects = total
        s.objectSize = objectSize
        s.objectsPerSlab = perSlab
        s.pagesPerSlab = pages
        s.magazineCapacity = magazine
        s.activeSlabs = activeSlabs
        s.totalSlabs = slabs
        s.depotRounds = depotRounds
        return s
    }

    // MARK: Header

    func test_header_isTheTwoLinesLinuxPrints() {
        // Copied from this machine's /proc/slabinfo (Linux 6.18).
        let linux = [
            "slabinfo - version: 2.1",
            "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>",
        ]
        XCTAssertEqual(SlabInfo.header.split(separator: "\n", omittingEmptySubsequences: false).map(String.init), linux)
    }

    func test_header_namesTheRowModelsColumns_inOrder() {
        // The parser names columns in its errors with SlabInfoRow's lists: they are the header's.
        let header = SlabInfo.header.split(separator: "\n")[1]
        let named = header.split(separator: " ").filter { $0.hasPrefix("<") }.map { String($0.dropFirst().dropLast()) }
        XCTAssertEqual(named, SlabInfoRow.headColumns + SlabInfoRow.tunableColumns + SlabInfoRow.slabdataColumns)
    }

    func test_render_startsWithHeader_andEndsWithNewline() {
        let text = SlabInfo.render([])
        XCTAssertEqual(text, SlabInfo.header + "\n")
    }

    // MARK: Golden lines

    func test_line_shortName_padsNameTo17_andNumbersToKernelWidths() throws {
        let s = try statistics(name: "mycache", active: 128, total: 168, objectSize: 24, perSlab: 168, pages: 1,
                               magazine: 128, activeSlabs: 1, slabs: 1, depotRounds: 0)
        XCTAssertEqual(SlabInfo.line(s),
                       "mycache              128    168     24  168    1 : tunables  128  128    0 : slabdata      1      1      0")
    }

    func test_line_matchesKernelLine_forSameNumbers() throws {
        // Lines copied from this machine's /proc/slabinfo; SLUB's tunables are all 0.
        let s1 = try statistics(name: "bio-312", active: 12, total: 12, objectSize: 320, perSlab: 12, pages: 1,
                                magazine: 0, activeSlabs: 1, slabs: 1, depotRounds: 0)
        XCTAssertEqual(SlabInfo.line(s1),
                       "bio-312               12     12    320   12    1 : tunables    0    0    0 : slabdata      1      1      0")
        let s2 = try statistics(name: "ext4_inode_cache", active: 43682, total: 43946, objectSize: 1128, perSlab: 14,
                                pages: 4, magazine: 0, activeSlabs: 3139, slabs: 3139, depotRounds: 0)
        XCTAssertEqual(SlabInfo.line(s2),
                       "ext4_inode_cache   43682  43946   1128   14    4 : tunables    0    0    0 : slabdata   3139   3139      0")
    }

    func test_line_nameLongerThan17_isNotTruncated_andPushesColumnsRight() throws {
        let s = try statistics(name: "btrfs_ordered_extent", active: 0, total: 0, objectSize: 416, perSlab: 19,
                               pages: 2, magazine: 0, activeSlabs: 0, slabs: 0, depotRounds: 0)
        XCTAssertEqual(SlabInfo.line(s),
                       "btrfs_ordered_extent      0      0    416   19    2 : tunables    0    0    0 : slabdata      0      0      0")
    }

    func test_line_nameOfExactly17_getsOneSeparatingBlank() throws {
        let s = try statistics(name: "abcdefghijklmnopq", active: 1, total: 2, objectSize: 8, perSlab: 512, pages: 1,
                               magazine: 0, activeSlabs: 1, slabs: 1, depotRounds: 0)
        XCTAssertEqual(SlabInfo.line(s),
                       "abcdefghijklmnopq      1      2      8  512    1 : tunables    0    0    0 : slabdata      1      1      0")
    }

    func test_line_numbersWiderThanTheirColumn_areNotTruncated() throws {
        let s = try statistics(name: "huge", active: 123_456_789, total: 1_234_567_890, objectSize: 1_048_576,
                               perSlab: 12_345, pages: 10_240, magazine: 65_536, activeSlabs: 9_876_543,
                               slabs: 98_765_432, depotRounds: 1_234_567)
        XCTAssertEqual(SlabInfo.line(s),
                       "huge              123456789 1234567890 1048576 12345 10240 : tunables 65536 65536    0 : slabdata 9876543 98765432 1234567")
    }

    func test_line_tunablesAndSharedavail_showMagazineSizeAndDepotRounds() throws {
        let s = try statistics(name: "m", active: 300, total: 336, objectSize: 24, perSlab: 168, pages: 1,
                               magazine: 128, activeSlabs: 2, slabs: 2, depotRounds: 128)
        let entry = try ProcSlabInfo.parseRow(Substring(SlabInfo.line(s)), lineNumber: 3)
        XCTAssertEqual(entry.limit, 128)
        XCTAssertEqual(entry.batchCount, 128)
        XCTAssertEqual(entry.sharedFactor, 0)
        XCTAssertEqual(entry.sharedAvailable, 128)
    }

    // MARK: Round trip

    func test_rowLine_parsesBackToTheSameRow() throws {
        // One row model: what the writer formats, the reader parses into, field for field.
        let rows = [
            SlabInfoRow(name: "mycache", activeObjects: 255, totalObjects: 336, objectSize: 24, objectsPerSlab: 168,
                        pagesPerSlab: 1, limit: 255, batchCount: 255, sharedFactor: 0, activeSlabs: 2, totalSlabs: 2,
                        sharedAvailable: 0),
            SlabInfoRow(name: "kmalloc-64", activeObjects: 100, totalObjects: 128, objectSize: 64, objectsPerSlab: 64,
                        pagesPerSlab: 1, limit: 120, batchCount: 60, sharedFactor: 8, activeSlabs: 2, totalSlabs: 2,
                        sharedAvailable: 7),
            SlabInfoRow(name: "a_name_longer_than_17", activeObjects: 123_456_789, totalObjects: 1_234_567_890,
                        objectSize: 1_048_576, objectsPerSlab: 12_345, pagesPerSlab: 10_240, limit: 65_536,
                        batchCount: 1, sharedFactor: 2, activeSlabs: 9_876_543, totalSlabs: 98_765_432,
                        sharedAvailable: 1_234_567),
        ]
        for row in rows {
            XCTAssertEqual(try ProcSlabInfo.parseRow(Substring(row.line), lineNumber: 3), row, row.line)
        }
        XCTAssertEqual(try ProcSlabInfo.parse(SlabInfo.render(rows: rows)).rows, rows)
    }

    func test_render_liveCache_parsesBackToItsStatistics() throws {
        let cache = try SlabCache(name: uniqueCacheName("roundtrip"), size: 20, align: 8)
        var objects: [UnsafeMutableRawPointer] = []
        for _ in 0..<500 { objects.append(try XCTUnwrap(cache.allocate())) }
        defer {
            for object in objects { cache.free(object) }
            XCTAssertNoThrow(try cache.destroy())
        }

        // The whole registry parses (whatever other tests left in it) and lists our cache.
        let all = try ProcSlabInfo.parse(SlabInfo.render())
        XCTAssertTrue(all.rows.contains { $0.name == cache.name })

        // The cache is quiet, so a snapshot taken right after rendering has the same numbers.
        let parsed = try ProcSlabInfo.parse(SlabInfo.render([cache]))
        let s = cache.statistics
        XCTAssertEqual(parsed.version, "2.1")
        XCTAssertEqual(parsed.rows, [SlabInfoRow(
            name: cache.name, activeObjects: s.activeObjects, totalObjects: s.totalObjects, objectSize: 24,
            objectsPerSlab: s.objectsPerSlab, pagesPerSlab: s.pagesPerSlab, limit: s.magazineCapacity,
            batchCount: s.magazineCapacity, sharedFactor: 0, activeSlabs: s.activeSlabs, totalSlabs: s.totalSlabs,
            sharedAvailable: s.depotRounds)])
        let entry = parsed.rows[0]
        XCTAssertGreaterThanOrEqual(entry.activeObjects, 500)
        XCTAssertLessThanOrEqual(entry.activeObjects, entry.totalObjects)
        XCTAssertEqual(entry.totalObjects, entry.totalSlabs * entry.objectsPerSlab)
    }

    // MARK: The report's allocation figures

    /// The cpu layer line of the report for a cache with these counters.
    private func cpuLayerLine(fast: Int, bypass: Int = 0, depotTaken: Int = 0, fills: Int) throws -> String {
        var s = try statistics(name: "r", active: 0, total: 0, objectSize: 24, perSlab: 168, pages: 1,
                               magazine: 255, activeSlabs: 0, slabs: 0, depotRounds: 0)
        s.fastAllocations = fast
        s.bypassAllocations = bypass
        s.depotFullTaken = depotTaken
        s.slabFills = fills
        let line = SlabInfo.report(s).split(separator: "\n").first { $0.hasPrefix("  cpu layer ") }
        return String(try XCTUnwrap(line))
    }

    func test_report_oneAllocation_givesCounts_notAShareAndARate() throws {
        // The seed lab's case: one allocation, whose magazine the slab layer filled first.
        let line = try cpuLayerLine(fast: 1, fills: 1)
        XCTAssertTrue(line.hasSuffix(", exchanges 0, allocations 1, depot or slab trips 1"), line)
        XCTAssertFalse(line.contains("%"), line)
        XCTAssertFalse(line.contains("per 1000"), line)
        XCTAssertTrue(try cpuLayerLine(fast: 0, fills: 0).hasSuffix(", allocations 0, depot or slab trips 0"))
        XCTAssertTrue(try cpuLayerLine(fast: 900, bypass: 99, depotTaken: 2, fills: 1)
            .hasSuffix(", allocations 999, depot or slab trips 3"))
    }

    func test_report_from1000Allocations_addsTheShareAndTheRate_truncatedToTenths() throws {
        XCTAssertTrue(try cpuLayerLine(fast: 999, bypass: 1, depotTaken: 3, fills: 1).hasSuffix(
            ", allocations 1000 (99.9% from a magazine), depot or slab trips 4 (4.0 per 1000 allocations)"))
        XCTAssertTrue(try cpuLayerLine(fast: 254_000, fills: 997).hasSuffix(
            ", allocations 254000 (100.0% from a magazine), depot or slab trips 997 (3.9 per 1000 allocations)"))
        // One bypass in 10,000 is not "100.0%"; three trips in a million are not "0.0 per 1000".
        XCTAssertTrue(try cpuLayerLine(fast: 9_999, bypass: 1, fills: 0).hasSuffix(
            ", allocations 10000 (99.9% from a magazine), depot or slab trips 0 (0.0 per 1000 allocations)"))
        XCTAssertTrue(try cpuLayerLine(fast: 1_000_000, fills: 3).hasSuffix(
            ", depot or slab trips 3 (<0.1 per 1000 allocations)"))
        XCTAssertTrue(try cpuLayerLine(fast: 10_000, fills: 1).hasSuffix(
            ", depot or slab trips 1 (0.1 per 1000 allocations)"))
    }
}
