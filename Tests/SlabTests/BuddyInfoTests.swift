// /proc/buddyinfo: a saved sample parsed (SlabTop's ProcBuddyInfo), rendered back byte for byte
// (Slab's BuddyZone.line) and shown in the readable view; malformed text refused with the line
// named; the live file read and rendered back unchanged; and this library's page allocators
// written in the same format (BuddyInfo) and read back.

import Slab
import SlabTop
import TestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class BuddyInfoTests: XCTestCase {
    /// /proc/buddyinfo of the 2-vCPU KVM guest these tests were written on (Linux 6.18, 24 GiB),
    /// as the kernel wrote it: each line ends with a blank.
    static let sample = [
        "Node 0, zone      DMA      0      0      0      0      0      0      0      0      1      1      3 ",
        "Node 0, zone    DMA32      1      1      4      2      5      4      3      3      4      2    752 ",
        "Node 0, zone   Normal   5096   3401   1406    933    457    256    161    262    308    123     54 ",
    ].map { $0 + "\n" }.joined()

    /// The readable view of the sample, checked by hand: DMA 3840 free pages (15 MiB, 3584 of them
    /// in order 9 and 10 blocks: 93.3%), DMA32 772,915 pages (3019.2 MiB = 2.9 GiB, 99.8% in large
    /// blocks), Normal 281,450 pages (1099.4 MiB = 1.1 GiB, 42.0%); 1,058,205 pages in all
    /// (4.04 GiB), 84.4% of them in blocks of 2 MiB or more.
    static let sampleReport = """
        Free blocks per order (a block of order k is 2^k pages of 4 KiB)
        Node  Zone       0     1     2    3    4    5    6    7    8    9   10     Free  Largest  >=2MiB
           0  DMA        0     0     0    0    0    0    0    0    1    1    3   15 MiB    4 MiB   93.3%
           0  DMA32      1     1     4    2    5    4    3    3    4    2  752  2.9 GiB    4 MiB   99.8%
           0  Normal  5096  3401  1406  933  457  256  161  262  308  123   54  1.1 GiB    4 MiB   42.0%
        Total free 4.0 GiB in 1058205 pages; largest block 4 MiB (order 10); 84.4% of it in blocks of 2 MiB or more

        """

    func test_parse_savedSample_readsEveryZoneAndOrder() throws {
        XCTAssertTrue(Self.sample.hasSuffix("54 \n"), "the fixture keeps the kernel's trailing blank")
        let info = try ProcBuddyInfo.parse(Self.sample)
        XCTAssertEqual(info.zones.map(\.name), ["DMA", "DMA32", "Normal"])
        XCTAssertEqual(info.zones.map(\.node), [0, 0, 0])
        XCTAssertEqual(info.zones[2].freeBlocks, [5096, 3401, 1406, 933, 457, 256, 161, 262, 308, 123, 54])
        XCTAssertEqual(info.zones.map(\.freePages), [3840, 772_915, 281_450])
        XCTAssertEqual(info.zones.map(\.largestOrder), [10, 10, 10])
        XCTAssertEqual(info.zones[0].fractionFree(inBlocksOfAtLeastOrder: 9), 3584.0 / 3840.0)
    }

    func test_render_reproducesTheSavedSampleByteForByte() throws {
        XCTAssertEqual(try ProcBuddyInfo.parse(Self.sample).render(), Self.sample)
    }

    func test_report_savedSample_showsCountsFreeMemoryLargestBlockAndLargeShare() throws {
        XCTAssertEqual(try ProcBuddyInfo.parse(Self.sample).report(pageSize: 4096), Self.sampleReport)
    }

    func test_parse_malformedText_namesTheLineAndTheProblem() {
        func problem(_ text: String) -> ProcBuddyInfo.ParseError? {
            do { _ = try ProcBuddyInfo.parse(text); return nil } catch { return error as? ProcBuddyInfo.ParseError }
        }
        XCTAssertEqual(problem(""), .init(line: 1, problem: .emptyInput))
        XCTAssertEqual(problem("slabinfo - version: 2.1\n"), .init(line: 1, problem: .notAZoneLine(found: "slabinfo - version: 2.1")))
        XCTAssertEqual(problem("Node 0, zone DMA 1 2\nNode 0 zone Normal 1 2\n"),
                       .init(line: 2, problem: .notAZoneLine(found: "Node 0 zone Normal 1 2")))
        XCTAssertEqual(problem("Node 0, zone DMA\n"), .init(line: 1, problem: .noCounts))
        XCTAssertEqual(problem("Node 0, zone DMA 1 -2 3\n"), .init(line: 1, problem: .notANumber(order: 1, value: "-2")))
        XCTAssertEqual(problem("Node 0, zone DMA 1 2 3\nNode 0, zone Normal 1 2\n"),
                       .init(line: 2, problem: .orderCount(expected: 3, found: 2)))
        XCTAssertEqual(problem("Node 0, zone DMA 1 2\n\n"), .init(line: 2, problem: .notAZoneLine(found: "")))
        let error = ProcBuddyInfo.ParseError(line: 3, problem: .notANumber(order: 4, value: "x"), source: "/tmp/b")
        XCTAssertEqual("\(error)", "/tmp/b line 3: the order-4 count is not a non-negative number: \"x\"")
    }

    func test_read_liveFile_parsesAndRendersBackUnchanged() throws {
        guard access(ProcBuddyInfo.defaultPath, R_OK) == 0 else { throw XCTSkip("\(ProcBuddyInfo.defaultPath) is not readable here") }
        // The kernel rewrites the counts as memory moves: compare a render with the text it came from.
        let text = try ProcFile.readText(path: ProcBuddyInfo.defaultPath)
        let info = try ProcBuddyInfo.parse(text)
        XCTAssertEqual(info.render(), text)
        XCTAssertTrue(info.zones.contains { $0.name == "Normal" || $0.name == "DMA32" }, text)
        XCTAssertNoThrow(try ProcBuddyInfo.read())
    }

    func test_read_missingFile_saysItDoesNotExist() {
        XCTAssertThrowsError(try ProcBuddyInfo.read(path: "/nonexistent/buddyinfo")) {
            XCTAssertEqual($0 as? ProcFile.ReadError, .missing(path: "/nonexistent/buddyinfo"))
        }
        XCTAssertEqual("\(ProcFile.ReadError.missing(path: ProcBuddyInfo.defaultPath))",
                       "cannot read /proc/buddyinfo: it does not exist: this system has no buddyinfo (not Linux, or /proc not mounted)")
    }

    func test_library_showsEachCachesPageAllocator_andKmallocs_inTheKernelsFormat() throws {
        // Without the per-CPU layer, so that one allocation makes one slab (a magazine fill takes more).
        let cache = try SlabCache(name: uniqueCacheName("buddy"), size: 64, flags: .noCPUCache)
        defer { try? cache.destroy() }
        XCTAssertEqual(BuddyInfo.zones.first { $0.name == cache.name }?.freeBlocks,
                       Array(repeating: 0, count: 11), "no arena carved before the first slab")
        let p = try XCTUnwrap(cache.allocate())
        // One order-0 slab split from a fresh arena: one free block of each order 0...9.
        XCTAssertEqual(BuddyInfo.zones.first { $0.name == cache.name }?.freeBlocks,
                       Array(repeating: 1, count: 10) + [0])
        try Kmalloc.setUp()
        let text = BuddyInfo.render()
        let parsed = try ProcBuddyInfo.parse(text)
        XCTAssertEqual(parsed.zones, BuddyInfo.zones, "the writer's rows read back as they were")
        XCTAssertEqual(parsed.zones.last?.name, "kmalloc-large")
        XCTAssertTrue(text.contains("Node 0, zone \(cache.name)      1      1 "), text)
        for c in Kmalloc.sizeClasses { XCTAssertTrue(parsed.zones.contains { $0.name == c.name }, c.name) }
        cache.free(p)
        cache.shrink()
        XCTAssertEqual(BuddyInfo.zones.first { $0.name == cache.name }?.freeBlocks,
                       Array(repeating: 0, count: 10) + [1], "the released slab merged back into its arena")
    }
}
