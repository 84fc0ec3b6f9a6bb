// The `slabinfo` executable, run as a child process (SlabinfoProcess): the seed lab's steps and
// slabinfo line, --demo --raw read back by the parser, the system view on a fixed file, and the
// exit status and message for each way it can fail.

import Foundation
import Slab
import SlabTop
import TestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class SlabinfoCommandTests: XCTestCase {
    func run(_ arguments: [String], prefix: [String] = [], environment extra: [String: String] = [:]) throws -> SlabinfoRun {
        try SlabinfoProcess.run(arguments, prefix: prefix, environment: extra)
    }

    // MARK: The seed lab

    func test_demo_withSlabDebug_namesTheLettersUnderTheSummary_andKeepsThe21Lines() throws {
        let r = try run(["--demo"], environment: ["SLAB_DEBUG": "FZPU,mycache;Z,kmalloc-128"])
        XCTAssertEqual(r.status, 0, r.summary)
        XCTAssertEqual(r.stderr, "", r.summary)
        let lines = r.stdout.split(separator: "\n").map(String.init)
        XCTAssertTrue(lines.contains(" Debug letters (F Z P U)            : mycache FZPU, kmalloc-128 Z"), r.summary)
        XCTAssertFalse(lines.contains { $0.hasPrefix(" Debug letters") && $0.contains("kmalloc-8 ") }, r.summary)
        let report = try XCTUnwrap(lines.first { $0.hasPrefix("cache mycache:") })
        XCTAssertTrue(report.hasSuffix("CPU layer none, M = 0, debug FZPU"), report)
        // The slabinfo lines keep the 2.1 format: mycache's parses, with its object size.
        let entry = try ProcSlabInfo.parseRow(Substring(try XCTUnwrap(lines.first { $0.hasPrefix("mycache ") })), lineNumber: 1)
        XCTAssertEqual(entry.objectSize, 24)
        XCTAssertEqual(entry.limit, 0, "no per-CPU layer: no magazines")
        let plain = try run(["--demo"], environment: ["SLAB_DEBUG": ""])
        XCTAssertFalse(plain.stdout.contains("Debug letters"), plain.summary)
    }

    func test_demo_printsEachStepInOrder_andMycacheLineWithObjsize24() throws {
        let r = try run(["--demo"])
        XCTAssertEqual(r.status, 0, r.summary)
        XCTAssertEqual(r.stderr, "", r.summary)
        let lines = r.stdout.split(separator: "\n").map(String.init)
        let steps = ["kmem_cache_create ok", "kmem_cache_alloc ok", "kmalloc(100) ok", "kmalloc(20000) ok",
                     "slabinfo - version: 2.1", "# name", "mycache ", "kmalloc-8 ", "kmalloc-8k ",
                     " Active / Total Objects", "cache mycache:", "kfree ok", "kfree ok", "kmem_cache_free ok",
                     "kmem_cache_destroy ok", "destroyed mycache"]
        var previous = -1
        for step in steps {
            guard let index = lines.indices.first(where: { $0 > previous && lines[$0].hasPrefix(step) }) else {
                XCTFail("no line starting \"\(step)\"\n\(r.summary)")
                continue
            }
            XCTAssertGreaterThan(index, previous, "\"\(step)\" out of order\n\(r.summary)")
            previous = index
        }
        XCTAssertEqual(lines.last, "destroyed mycache")

        let create = try XCTUnwrap(lines.first { $0.hasPrefix("kmem_cache_create ok") })
        for part in ["name=mycache", "size=20", "align=8", "objsize=24"] {
            XCTAssertTrue(create.contains(part), "\(create) should say \(part)")
        }
        let alloc = try XCTUnwrap(lines.first { $0.hasPrefix("kmem_cache_alloc ok") })
        XCTAssertNotNil(alloc.range(of: "0x[0-9a-f]+", options: .regularExpression), alloc)

        // The slabinfo line, taken while the object is live, in 2.1 format.
        let line = try XCTUnwrap(lines.first { $0.hasPrefix("mycache ") })
        let entry = try ProcSlabInfo.parseRow(Substring(line), lineNumber: 1)
        XCTAssertEqual(entry.name, "mycache")
        XCTAssertEqual(entry.objectSize, 24)
        XCTAssertGreaterThanOrEqual(entry.activeObjects, 1)
        XCTAssertGreaterThanOrEqual(entry.totalSlabs, 1)
        XCTAssertTrue(r.stdout.contains("live         1 objects held by callers"), r.summary)

        // kmalloc's two requests: a size class and a page-allocator block, each with its ksize.
        let small = try XCTUnwrap(lines.first { $0.hasPrefix("kmalloc(100) ok") })
        XCTAssertTrue(small.hasSuffix(" from kmalloc-128, ksize 128"), small)
        let large = try XCTUnwrap(lines.first { $0.hasPrefix("kmalloc(20000) ok") })
        XCTAssertTrue(large.hasSuffix(" from the page allocator, order 3 (8 pages), ksize 32768"), large)
        let kmalloc128 = try ProcSlabInfo.parseRow(Substring(try XCTUnwrap(lines.first { $0.hasPrefix("kmalloc-128 ") })),
                                                   lineNumber: 1)
        XCTAssertGreaterThanOrEqual(kmalloc128.activeObjects, 1, "the kmalloc(100) object is live in the snapshot")
        XCTAssertEqual(kmalloc128.objectSize, 128)
    }

    func test_demoRaw_printsOnlySlabinfo21_thatTheParserReads() throws {
        let r = try run(["--demo", "--raw"])
        XCTAssertEqual(r.status, 0, r.summary)
        XCTAssertFalse(r.stdout.contains("kmem_cache"), r.summary)
        XCTAssertTrue(r.stdout.hasPrefix(SlabInfo.header + "\n"), r.summary)
        let info = try ProcSlabInfo.parse(r.stdout)
        // kmalloc was used, so its caches are listed after mycache.
        XCTAssertEqual(info.rows.map(\.name), ["mycache"] + Kmalloc.sizeClasses.map(\.name))
        let entry = try XCTUnwrap(info.rows.first)
        XCTAssertEqual(entry.objectSize, 24)
        XCTAssertGreaterThanOrEqual(entry.activeObjects, 1)
        XCTAssertLessThanOrEqual(entry.activeObjects, entry.totalObjects)
        XCTAssertEqual(entry.totalObjects, entry.totalSlabs * entry.objectsPerSlab)
    }

    func test_demoBuddyinfoRaw_printsThePageAllocatorsInBuddyinfoFormat() throws {
        let r = try run(["--demo", "--buddyinfo", "--raw"])
        XCTAssertEqual(r.status, 0, r.summary)
        let info = try ProcBuddyInfo.parse(r.stdout)
        XCTAssertEqual(info.zones.map(\.name), ["mycache"] + Kmalloc.sizeClasses.map(\.name) + ["kmalloc-large"])
        // mycache's first slab split its first arena; the order-3 block split kmalloc-large's.
        XCTAssertEqual(info.zones[0].freeBlocks.last, 0)
        XCTAssertGreaterThan(info.zones[0].freePages, 0)
        XCTAssertEqual(info.zones.last?.freeBlocks, [0, 0, 0] + Array(repeating: 1, count: 7) + [0])
    }

    func test_demoBuddyinfo_showsTheViewAfterTheSlabinfo() throws {
        let r = try run(["--demo", "--buddyinfo"])
        XCTAssertEqual(r.status, 0, r.summary)
        XCTAssertTrue(r.stdout.contains("\nPage allocators of this library"), r.summary)
        XCTAssertTrue(r.stdout.contains("\n   0  kmalloc-large  "), r.summary)
        XCTAssertTrue(r.stdout.hasSuffix("destroyed mycache\n"), r.summary)
    }

    // MARK: The system view

    func test_file_fixture_printsSlabtopSummaryAndTable() throws {
        let path = try temporaryFile(ProcSlabInfoTests.fixture)
        let r = try run(["--file", path, "--sort", "n"])
        XCTAssertEqual(r.status, 0, r.summary)
        XCTAssertEqual(r.stdout, ProcSlabInfoTests.slabtopByName, r.summary)
    }

    func test_file_defaultSort_isCacheSize_andLimitCutsRows() throws {
        let path = try temporaryFile(ProcSlabInfoTests.fixture)
        let r = try run(["--file", path, "--limit", "3"])
        XCTAssertEqual(r.status, 0, r.summary)
        let rows = r.stdout.split(separator: "\n").drop { !$0.hasPrefix("  OBJS") }.dropFirst()
        XCTAssertEqual(rows.map { String($0.split(separator: " ").last!) }, ["ext4_inode_cache", "dentry", "buffer_head"])
        let byName = try run(["--file", path, "--sort", "name", "--limit", "1"])
        XCTAssertTrue(byName.stdout.hasSuffix(" bio-312\n"), byName.summary)
    }

    func test_raw_printsTheFileUnchanged() throws {
        let path = try temporaryFile(ProcSlabInfoTests.fixture)
        let r = try run(["--raw", "--file", path])
        XCTAssertEqual(r.status, 0, r.summary)
        XCTAssertEqual(r.stdout, ProcSlabInfoTests.fixture)
    }

    func test_noArguments_readsThisKernelsSlabinfo() throws {
        guard access(ProcSlabInfo.defaultPath, R_OK) == 0 else {
            throw XCTSkip("\(ProcSlabInfo.defaultPath) is not readable here")
        }
        let r = try run([])
        XCTAssertEqual(r.status, 0, r.summary)
        XCTAssertTrue(r.stdout.hasPrefix(" Active / Total Objects (% used)    : "), r.summary)
        XCTAssertTrue(r.stdout.contains("\n" + ProcSlabInfo.tableHeader + "\n"), r.summary)
        XCTAssertTrue(r.stdout.contains(" dentry\n"), r.summary)
    }

    func test_buddyinfo_savedSample_printsFreeBlocksPerOrder() throws {
        guard ProcSlabInfo.systemPageSize == 4096 else { throw XCTSkip("the expected view assumes 4 KiB pages") }
        let path = try temporaryFile(BuddyInfoTests.sample)
        let r = try run(["--buddyinfo", "--file", path])
        XCTAssertEqual(r.status, 0, r.summary)
        XCTAssertEqual(r.stdout, BuddyInfoTests.sampleReport, r.summary)
        let raw = try run(["--buddyinfo", "--raw", "--file", path])
        XCTAssertEqual(raw.stdout, BuddyInfoTests.sample, "--raw prints the file as it is")
    }

    func test_buddyinfo_readsThisKernelsBuddyinfo_withoutRoot() throws {
        guard access(ProcBuddyInfo.defaultPath, R_OK) == 0 else {
            throw XCTSkip("\(ProcBuddyInfo.defaultPath) is not readable here")
        }
        let r = try run(["--buddyinfo"])
        XCTAssertEqual(r.status, 0, r.summary)
        XCTAssertTrue(r.stdout.hasPrefix("Free blocks per order ("), r.summary)
        XCTAssertTrue(r.stdout.contains("\nTotal free "), r.summary)
        // Every zone of the file has its row.
        let zones = try ProcBuddyInfo.read().zones.map(\.name)
        for zone in zones { XCTAssertTrue(r.stdout.contains("  \(zone) "), "\(zone)\n\(r.summary)") }
    }

    func test_buddyinfo_malformedFile_exits1_namingFileAndLine() throws {
        let path = try temporaryFile(BuddyInfoTests.sample + "Node 0, zone Movable 1 2\n")
        let r = try run(["--buddyinfo", "--file", path])
        XCTAssertEqual(r.status, 1, r.summary)
        XCTAssertEqual(r.stderr, "slabinfo: \(path) line 4: 2 orders, where the first line has 11\n", r.summary)
    }

    // MARK: Failures

    func test_file_nonexistent_exits1_withMessageNamingPath() throws {
        let path = "/nonexistent/slabinfo-\(getpid())"
        let r = try run(["--file", path])
        XCTAssertEqual(r.status, 1, r.summary)
        XCTAssertEqual(r.stdout, "", r.summary)
        XCTAssertTrue(r.stderr.contains(path), r.summary)
        XCTAssertTrue(r.stderr.contains("does not exist"), r.summary)
        // --raw fails the same way.
        XCTAssertEqual(try run(["--raw", "--file", path]).status, 1)
    }

    func test_file_malformed_exits1_namingFileAndLine() throws {
        let path = try temporaryFile(SlabInfo.header + "\nmycache 1 2 24 168 1 : tunables 0 0 0\n")
        let r = try run(["--file", path])
        XCTAssertEqual(r.status, 1, r.summary)
        XCTAssertTrue(r.stderr.contains("\(path) line 3: "), r.summary)
    }

    func test_procSlabinfo_asUnprivilegedUser_exits1_sayingItNeedsRoot() throws {
        guard geteuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") else {
            throw XCTSkip("needs root and setpriv to run the child as nobody")
        }
        let r = try run([], prefix: ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"])
        // setpriv's own failures (cannot drop privileges, nobody cannot execute the binary) are
        // not slabinfo's: only a message from slabinfo itself is checked.
        guard r.stderr.hasPrefix("slabinfo:") else { throw XCTSkip("cannot run slabinfo as nobody here: \(r.summary)") }
        XCTAssertEqual(r.status, 1, r.summary)
        XCTAssertTrue(r.stderr.contains("permission denied"), r.summary)
        XCTAssertTrue(r.stderr.contains("root"), r.summary)
        XCTAssertTrue(r.stderr.contains(ProcSlabInfo.defaultPath), r.summary)
    }

    func test_sort_unknownKey_exits2_listingValidKeys() throws {
        let r = try run(["--sort", "zz"])
        XCTAssertEqual(r.status, 2, r.summary)
        XCTAssertEqual(r.stdout, "", r.summary)
        XCTAssertTrue(r.stderr.contains("zz"), r.summary)
        for key in ProcSlabInfo.SortKey.allCases {
            XCTAssertTrue(r.stderr.contains("\(key.letter) (\(key.rawValue))"), "missing \(key)\n\(r.summary)")
        }
    }

    func test_usageErrors_exit2() throws {
        XCTAssertEqual(try run(["--no-such-option"]).status, 2)
        XCTAssertEqual(try run(["--limit", "-1"]).status, 2)
        XCTAssertEqual(try run(["--demo", "--file", "/proc/slabinfo"]).status, 2)
        XCTAssertEqual(try run(["--raw", "--sort", "c"]).status, 2)
        let sorted = try run(["--buddyinfo", "--sort", "n"])
        XCTAssertEqual(sorted.status, 2)
        XCTAssertTrue(sorted.stderr.contains("--buddyinfo shows free blocks per order"), sorted.summary)
    }

    func test_help_exits0() throws {
        let r = try run(["--help"])
        XCTAssertEqual(r.status, 0, r.summary)
        XCTAssertTrue(r.stdout.contains("--demo"), r.summary)
        XCTAssertTrue(r.stdout.contains("--sort"), r.summary)
    }
}
