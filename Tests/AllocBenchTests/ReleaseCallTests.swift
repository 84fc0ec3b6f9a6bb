// Every allocator's own release call: resolved where the allocator serves malloc (this process for
// glibc, the cell's child for a preloaded peer), named in the result, and said to be missing when
// it is; the sawtooth makes it after every drain and records RSS around it on the same points of
// the work for every allocator.

import Foundation
import XCTest
@testable import AllocBench
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

final class ReleaseCallTests: XCTestCase {
    // MARK: Resolving

    func test_glibc_resolvesMallocTrim_inThisProcess() {
        let release = MallocRelease.resolve(for: .glibc)
        XCTAssertEqual(release.releaseCall, ReleaseCall(call: "malloc_trim(0)", found: true))
    }

    /// This process runs glibc's malloc: the peers' entry points are not here, and resolving them
    /// says so instead of calling something else.
    func test_peerNotLoaded_isReportedMissing_withTheReason() {
        let jemalloc = MallocRelease.resolve(for: .jemalloc).releaseCall
        XCTAssertFalse(jemalloc.found)
        XCTAssertEqual(jemalloc.call, "mallctl(\"arena.4096.purge\")")
        XCTAssertEqual(jemalloc.missing, "mallctl is not defined (jemalloc is not loaded)")
        XCTAssertEqual(jemalloc.summary, "no release call (mallctl is not defined (jemalloc is not loaded))")
        XCTAssertFalse(MallocRelease.resolve(for: .mimalloc).releaseCall.found)
        XCTAssertFalse(MallocRelease.resolve(for: .tcmalloc).releaseCall.found)
    }

    /// A `preload:` library is asked with its own entry point only: libc's malloc_trim, which this
    /// process does define, is not the library's.
    func test_preloadLibrary_definingNoEntryPoint_isMissing_notGivenGlibcsMallocTrim() throws {
        let candidates: [String] = ["/lib/x86_64-linux-gnu/libz.so.1", "/usr/lib/x86_64-linux-gnu/libz.so.1",
                                    "/lib/x86_64-linux-gnu/libutil.so.1"]
        let path = try XCTUnwrap(candidates.first { access($0, R_OK) == 0 }, "no libz or libutil to name")
        let id = try XCTUnwrap(AllocatorID(rawValue: "preload:\(path)=nomalloc"))
        let call = MallocRelease.resolve(for: id).releaseCall
        XCTAssertFalse(call.found)
        let file = (path as NSString).lastPathComponent
        XCTAssertEqual(call.missing, "\(file) defines none of mallctl, mi_collect, MallocExtension_ReleaseFreeMemory, malloc_trim")
    }

    /// The call really reaches glibc: memory freed into its bins is resident until malloc_trim
    /// gives it back.
    func test_glibcRelease_returnsFreedMemoryToTheOS() {
        let allocator = MallocAllocator(size: 48, release: .resolve(for: .glibc))
        let count = 400_000  // about 25 MiB of 64-byte chunks, none of them mmapped on their own
        let objects = UnsafeMutablePointer<UnsafeMutableRawPointer>.allocate(capacity: count)
        defer { objects.deallocate() }
        for i in 0..<count {
            objects[i] = allocator.allocate()
            memset(objects[i], 0x5A, 48)
        }
        for i in 0..<count { allocator.free(objects[i]) }
        let drained = ProcessMemory.currentRSS()
        allocator.releaseFreeMemory()
        let released = ProcessMemory.currentRSS()
        XCTAssertLessThan(released, drained - (8 << 20),
                          "malloc_trim(0) gave back \(drained - released) bytes of about 25 MiB freed")
    }

    // MARK: The sawtooth

    func test_sawtooth_releasesAfterEveryDrain_withNothingLive() throws {
        let ledger = AllocationLedger()
        let a = CountingAllocator(size: 24, ledger: ledger)
        let (m, _, _) = try WorkloadKind.sawtooth.measureOnce(a, WorkloadContext(size: 24, threads: 1, scale: .test))
        XCTAssertEqual(ledger.snapshot.releases, Array(repeating: 0, count: SawtoothWorkload.cycles),
                       "one release call after each drain, with no object live")
        XCTAssertEqual(m.ops, SawtoothWorkload.cycles * 500)
    }

    func test_sawtooth_series_countsOperations_andMarksEachRelease() throws {
        let ledger = AllocationLedger()
        let a = CountingAllocator(size: 24, ledger: ledger)
        let (m, _, _) = try WorkloadKind.sawtooth.measureOnce(a, WorkloadContext(size: 24, threads: 1, scale: .test))
        let series = try XCTUnwrap(m.rssSeries)
        let n = 500
        XCTAssertEqual(series.first?.operations, 0)
        let operations = series.compactMap(\.operations)
        XCTAssertEqual(operations.count, series.count, "every point has its operation count")
        XCTAssertEqual(operations, operations.sorted(), "operations never go back")
        let releases = series.enumerated().filter { $0.element.afterRelease == true }
        XCTAssertEqual(releases.map { $0.element.operations }, (1...SawtoothWorkload.cycles).map { $0 * 2 * n })
        for (i, point) in releases {
            XCTAssertEqual(point.liveBytes, 0)
            // Read just before it: the drain's last point, at the same operation count.
            XCTAssertEqual(series[i - 1].operations, point.operations)
            XCTAssertNil(series[i - 1].afterRelease)
        }
        // A fill's peak: all N objects live at the end of each fill.
        XCTAssertEqual(series.filter { $0.liveBytes == n * 24 }.map(\.operations), (0..<SawtoothWorkload.cycles).map { $0 * 2 * n + n })
        XCTAssertEqual(m.rssAfterBytes, series.last?.rssBytes)
    }

    // MARK: Where a cycle's time goes

    /// The fixture's cycles: fill in 4 steps (from the point before the first fill point to the
    /// peak), drain in 4, the release call in 1; the same in both cycles, so the medians are those.
    func test_cyclePhases_splitEachCycleAtItsPeakAndItsReleasePoint() throws {
        let step = 0.25
        let phases = try XCTUnwrap(CyclePhases(series: ReportFixtures.sawtoothSeries(secondsPerStep: step)))
        XCTAssertEqual(phases.fill, 4 * step, accuracy: 1e-12)
        XCTAssertEqual(phases.drain, 4 * step, accuracy: 1e-12)
        XCTAssertEqual(phases.release, 1 * step, accuracy: 1e-12)
    }

    /// Each phase is the median over the cycles, taken apart: a slow release in one cycle of three
    /// does not move the release figure, and a cycle's fill starts where the previous call ended.
    func test_cyclePhases_areMediansOverTheCycles() throws {
        var series = [RSSPoint(seconds: 0, rssBytes: 0, liveBytes: 0)]
        var t = 0.0
        for (fill, drain, release) in [(1.0, 2.0, 0.5), (3.0, 2.5, 9.0), (2.0, 1.5, 0.75)] {
            series.append(RSSPoint(seconds: t + fill / 2, rssBytes: 1, liveBytes: 50))
            series.append(RSSPoint(seconds: t + fill, rssBytes: 2, liveBytes: 100))
            series.append(RSSPoint(seconds: t + fill + drain, rssBytes: 2, liveBytes: 0))
            t += fill + drain + release
            series.append(RSSPoint(seconds: t, rssBytes: 0, liveBytes: 0, afterRelease: true))
        }
        let phases = try XCTUnwrap(CyclePhases(series: series))
        XCTAssertEqual(phases.fill, 2.0, accuracy: 1e-12)
        XCTAssertEqual(phases.drain, 2.0, accuracy: 1e-12)
        XCTAssertEqual(phases.release, 0.75, accuracy: 1e-12)
    }

    /// No release point, or a cycle with no point between its start and its release call's
    /// reading (no fill to split): nil, not a made-up figure.
    func test_cyclePhases_nilWithoutReleasePointsOrWithoutADrain() {
        let noRelease = [RSSPoint(seconds: 0, rssBytes: 0, liveBytes: 0), RSSPoint(seconds: 1, rssBytes: 1, liveBytes: 10),
                         RSSPoint(seconds: 2, rssBytes: 1, liveBytes: 0)]
        XCTAssertNil(CyclePhases(series: noRelease))
        XCTAssertNil(CyclePhases(series: []))
        let noDrain = [RSSPoint(seconds: 0, rssBytes: 0, liveBytes: 0), RSSPoint(seconds: 1, rssBytes: 1, liveBytes: 10),
                       RSSPoint(seconds: 2, rssBytes: 0, liveBytes: 0, afterRelease: true)]
        XCTAssertNil(CyclePhases(series: noDrain))
    }

    /// On a real (test-scale) sawtooth: three positive phases that fit in the repetition's time.
    func test_cyclePhases_ofARealSawtooth_fitInItsTime() throws {
        let ledger = AllocationLedger()
        let a = CountingAllocator(size: 24, ledger: ledger)
        let (m, _, _) = try WorkloadKind.sawtooth.measureOnce(a, WorkloadContext(size: 24, threads: 1, scale: .test))
        let rep = Repetition(ops: m.ops, seconds: m.seconds, peakRSSBytes: 0, peakLiveBytes: 0, rssSeries: m.rssSeries)
        let phases = try XCTUnwrap(rep.cyclePhases)
        XCTAssertGreaterThan(phases.fill, 0)
        XCTAssertGreaterThan(phases.drain, 0)
        XCTAssertGreaterThan(phases.release, 0)
        XCTAssertLessThanOrEqual(Double(SawtoothWorkload.cycles) * (phases.fill + phases.drain + phases.release), m.seconds * 1.5)
    }

    /// The sawtooth's table in latest.txt and its rows in latest.csv carry the phases.
    func test_reports_showThePhases() throws {
        let record = ReportFixtures.record
        let text = TextReport.render(record)
        let section = try XCTUnwrap(text.range(of: "== sawtooth"))
        let table = text[section.lowerBound...]
        XCTAssertTrue(table.contains("fill ms  drain ms  release ms"), String(table))
        // The slab's repetitions took 30, 31 and 32 ns an op, a step ns / 300 seconds: the fill
        // and the drain 4 steps, the call 1; medians 31 / 300 x 4 s = 413 ms and 103 ms.
        let row = try XCTUnwrap(table.split(separator: "\n").first { $0.hasPrefix("slab ") })
        XCTAssertEqual(row.split(separator: " ").suffix(3).map(String.init), ["413", "413", "103"])
        XCTAssertTrue(text.contains("fill / drain / release ms:"))
        XCTAssertFalse(text[..<section.lowerBound].contains("fill ms"), "only the sawtooth's table has the columns")
        let rows = CSVReport.parse(CSVReport.render(record))
        let col = Dictionary(uniqueKeysWithValues: rows[0].enumerated().map { ($1, $0) })
        let slab = try XCTUnwrap(rows.first { $0[col["allocator"]!] == "slab" && $0[col["workload"]!] == "sawtooth" })
        XCTAssertEqual(try XCTUnwrap(Double(slab[col["cycle_fill_seconds"]!])), 4 * 30.0 / 300, accuracy: 1e-9)
        XCTAssertEqual(try XCTUnwrap(Double(slab[col["cycle_release_seconds"]!])), 30.0 / 300, accuracy: 1e-9)
        let pair = try XCTUnwrap(rows.first { $0[col["workload"]!] == "pair" })
        XCTAssertEqual(pair[col["cycle_drain_seconds"]!], "")
    }

    /// Through the catalog's entry point: the result names the call (for the sawtooth only), and
    /// the drained / after figures come from the series.
    func test_run_sawtooth_namesTheReleaseCall_otherWorkloadsNone() {
        for (a, call) in [(AllocatorID.glibc, "malloc_trim(0)"), (.slab, "SlabCache.shrink()"), (.kmalloc, "Kmalloc.shrink()")] {
            let r = WorkloadCatalog.run(CellParameters(allocator: a, workload: "sawtooth", size: 64, threads: 1,
                                                       repetitions: 1, quick: true), scale: .test)
            XCTAssertEqual(r.status, .ok, r.message ?? "")
            XCTAssertEqual(r.releaseCall, ReleaseCall(call: call, found: true), a.name)
            let rep = r.repetitions[0]
            XCTAssertNotNil(rep.rssDrainedBytes, a.name)
            XCTAssertEqual(rep.rssSeries?.filter { $0.afterRelease == true }.count, SawtoothWorkload.cycles, a.name)
        }
        let pair = WorkloadCatalog.run(CellParameters(allocator: .glibc, workload: "pair", size: 64, threads: 1,
                                                      repetitions: 1, quick: true), scale: .test)
        XCTAssertNil(pair.releaseCall)
    }

    func test_sawtooth_isVersion2() {
        XCTAssertEqual(WorkloadCatalog.all.first { $0.name == "sawtooth" }?.version, 2)
    }

    // MARK: In the peers' children

    /// Each installed peer, preloaded into its child, finds its own call there.
    func test_peerChildren_resolveTheirOwnReleaseCall() throws {
        let dir = NSTemporaryDirectory() + "/release-tests-\(getpid())-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let runner = SuiteRunner(options: SuiteOptions(allocators: [.glibc], workloads: [], repetitions: 1, quick: true,
                                                       timeout: 60, outputDirectory: dir),
                                 catalog: BenchCatalog.standard, executable: try builtExecutable("bench"), interrupt: nil)
        let expected: [(AllocatorID, String)] = [
            (.jemalloc, "mallctl(\"arena.4096.purge\")"), (.mimalloc, "mi_collect(true)"),
            (.tcmalloc, "MallocExtension_ReleaseFreeMemory()"),
        ]
        var ran = 0
        for (peer, call) in expected {
            guard let library = PeerLibraries.locate(peer) else { continue }
            let cell = CellParameters(allocator: peer, workload: "sawtooth", size: 64, threads: 1, repetitions: 1, quick: true)
            let r = runner.runCell(cell, library: library)
            XCTAssertEqual(r.status, .ok, "\(peer.name): \(r.message ?? "")")
            XCTAssertEqual(r.releaseCall, ReleaseCall(call: call, found: true), peer.name)
            ran += 1
        }
        if ran == 0 { throw XCTSkip("no peer allocator is installed") }
    }
}
