import Foundation
import XCTest
@testable import AllocBench

final class RunnerPlanTests: XCTestCase {
    static let catalog = BenchCatalog(
        workloads: [
            WorkloadSpec(name: "pair", summary: "", measuresLatency: true, usesThreads: false),
            WorkloadSpec(name: "batch-lifo-1m", summary: "", measuresLatency: false, usesThreads: false),
            WorkloadSpec(name: "batch-fifo-1000", summary: "", measuresLatency: false, usesThreads: false),
            WorkloadSpec(name: "threads", summary: "", measuresLatency: false, usesThreads: true),
            WorkloadSpec(name: "ctor-256", summary: "", measuresLatency: false, usesThreads: false, fixedSize: 256),
            WorkloadSpec(name: "larson-mixed", summary: "", measuresLatency: false, usesThreads: true, fixedSize: 1024,
                         mixedSizes: true),
            WorkloadSpec(name: "batch-mixed", summary: "", measuresLatency: false, usesThreads: false, fixedSize: 1024,
                         mixedSizes: true),
        ],
        run: { CellResult(parameters: $0, status: .failed, message: "fake", repetitions: [], allocatorVersion: nil) })

    func options(_ workloads: [String], allocators: [AllocatorID] = [.glibc, .slab], quick: Bool = false,
                 sizes: [Int]? = nil, threads: [Int]? = nil) -> SuiteOptions {
        SuiteOptions(allocators: allocators, workloads: workloads, sizes: sizes, threads: threads, repetitions: 5,
                     quick: quick, timeout: 60, outputDirectory: "results")
    }

    func test_defaultThreads_upToFourTimesTheCores() {
        XCTAssertEqual(SuitePlan.defaultThreads(cores: 2), [1, 2, 4, 8])
        XCTAssertEqual(SuitePlan.defaultThreads(cores: 1), [1, 2, 4])
        XCTAssertEqual(SuitePlan.defaultThreads(cores: 6), [1, 2, 4, 8, 16, 24])
    }

    func test_cells_defaultSizesPerKindOfWorkload() {
        let cells = SuitePlan.cells(options(["pair", "batch-lifo-1m", "batch-fifo-1000", "threads", "ctor-256"], allocators: [.glibc]),
                                    catalog: Self.catalog, cores: 2)
        func sizes(_ w: String) -> [Int] { Array(Set(cells.filter { $0.workload == w }.map(\.size))).sorted() }
        func threads(_ w: String) -> [Int] { Array(Set(cells.filter { $0.workload == w }.map(\.threads))).sorted() }
        XCTAssertEqual(sizes("pair"), [16, 20, 64, 256, 1024])
        XCTAssertEqual(sizes("batch-lifo-1m"), [20, 256])
        XCTAssertEqual(sizes("batch-fifo-1000"), [20, 256])
        XCTAssertEqual(sizes("threads"), [20, 256])
        XCTAssertEqual(threads("threads"), [1, 2, 4, 8])
        XCTAssertEqual(threads("pair"), [1])
        XCTAssertEqual(sizes("ctor-256"), [256])
        XCTAssertEqual(cells.count, 5 + 2 + 2 + 8 + 1)
    }

    func test_cells_quick_oneSizeFewThreads() {
        let cells = SuitePlan.cells(options(["pair", "threads"], allocators: [.glibc], quick: true),
                                    catalog: Self.catalog, cores: 2)
        XCTAssertEqual(cells.map(\.size), [20, 20, 20])
        XCTAssertEqual(cells.map(\.threads), [1, 1, 2])
        XCTAssertTrue(cells.allSatisfy(\.quick))
    }

    func test_cells_explicitSizesAndThreads_butFixedSizeWorkloadRunsOnce() {
        let cells = SuitePlan.cells(options(["threads", "ctor-256"], allocators: [.glibc], sizes: [32], threads: [3]),
                                    catalog: Self.catalog, cores: 2)
        XCTAssertEqual(cells.map(\.size), [32, 256])
        XCTAssertEqual(cells.map(\.threads), [3, 1])
    }

    func test_cells_allocatorsInnermost() {
        let cells = SuitePlan.cells(options(["pair"], allocators: [.glibc, .slab], sizes: [16, 20]),
                                    catalog: Self.catalog, cores: 2)
        XCTAssertEqual(cells.map { "\($0.allocator.rawValue)/\($0.size)" }, ["glibc/16", "slab/16", "glibc/20", "slab/20"])
    }

    // MARK: Thread cells in rounds

    func test_launches_threadCellsRunInRounds_roundRByAllBeforeRoundRPlus1_oneThreadCellsInPlace() {
        let cells = SuitePlan.cells(options(["pair", "threads"], allocators: [.glibc, .jemalloc, .slab], sizes: [20],
                                            threads: [1, 2]), catalog: Self.catalog, cores: 2)
        let launches = SuitePlan.launches(cells, catalog: Self.catalog)
        func name(_ l: SuitePlan.Launch) -> String { "\(l.cell.workload) x\(l.cell.threads) \(l.cell.allocator.name) r\(l.round)" }
        // pair: one child each, 5 repetitions, as planned.
        XCTAssertEqual(launches.prefix(3).map(name), ["pair x1 glibc r0", "pair x1 jemalloc r0", "pair x1 slab r0"])
        XCTAssertEqual(launches.prefix(3).map(\.cell.repetitions), [5, 5, 5])
        // threads: 2 groups x 3 allocators x 5 rounds of one repetition, round-major, the order
        // of the allocators reversed every other round.
        let threaded = Array(launches.dropFirst(3))
        XCTAssertEqual(threaded.count, 2 * 3 * 5)
        XCTAssertTrue(threaded.allSatisfy { $0.cell.repetitions == 1 && $0.rounds == 5 })
        XCTAssertEqual(threaded.prefix(12).map(name), [
            "threads x1 glibc r0", "threads x1 jemalloc r0", "threads x1 slab r0",
            "threads x2 glibc r0", "threads x2 jemalloc r0", "threads x2 slab r0",
            "threads x1 slab r1", "threads x1 jemalloc r1", "threads x1 glibc r1",
            "threads x2 slab r1", "threads x2 jemalloc r1", "threads x2 glibc r1"])
        XCTAssertEqual(threaded.map(\.round), threaded.map(\.round).sorted())
        // Counted cells (bench instructions) never split.
        let counted = cells.map { c -> CellParameters in var c = c; c.countScale = .test; return c }
        XCTAssertEqual(SuitePlan.launches(counted, catalog: Self.catalog).count, counted.count)
    }

    func test_merge_roundsBecomeOneCell_inRoundOrder_aFailedRoundFailsIt_andUnfinishedCellsAreLeftOut() {
        let cells = SuitePlan.cells(options(["pair", "threads"], allocators: [.glibc, .slab], sizes: [20], threads: [2]),
                                    catalog: Self.catalog, cores: 2)
        let launches = SuitePlan.launches(cells, catalog: Self.catalog)
        func rep(_ seconds: Double) -> Repetition {
            Repetition(ops: 1000, seconds: seconds, latency: nil, peakRSSBytes: 1, peakLiveBytes: 1, rssAfterBytes: nil, rssSeries: nil)
        }
        // Each launch's result: its round number in its repetitions' seconds (pair: 5 repetitions).
        var results = launches.map { l in
            CellResult(parameters: l.cell, status: .ok, message: nil,
                       repetitions: (0..<l.cell.repetitions).map { _ in rep(Double(l.round + 1)) }, allocatorVersion: "v")
        }
        let merged = SuitePlan.merge(results, of: launches, into: cells)
        XCTAssertEqual(merged.map(\.parameters), cells, "one result per cell, in the cells' order, with their parameters")
        XCTAssertEqual(merged[2].repetitions.map(\.seconds), [1, 2, 3, 4, 5], "the rounds in round order")
        XCTAssertEqual(merged[0].repetitions.count, 5)

        // Round 3 of slab's threads cell crashed: that cell fails, naming the round; glibc's stands.
        let bad = launches.firstIndex { $0.cell.allocator == .slab && $0.cell.workload == "threads" && $0.round == 2 }!
        results[bad] = CellResult(parameters: launches[bad].cell, status: .failed, message: "child killed by SIGSEGV",
                                  repetitions: [], allocatorVersion: nil)
        let withFailure = SuitePlan.merge(results, of: launches, into: cells)
        XCTAssertEqual(withFailure[3].status, .failed)
        XCTAssertEqual(withFailure[3].message, "round 3 of 5: child killed by SIGSEGV")
        XCTAssertEqual(withFailure[2].status, .ok)

        // Ctrl-C after the first round of the thread cells: they are left out, pair is kept.
        let cut = SuitePlan.merge(Array(results.prefix(4)), of: launches, into: cells)
        XCTAssertEqual(cut.map(\.parameters.workload), ["pair", "pair"])
    }

    func test_cells_defaultSuite_leavesSlabNoCPUOutOfTheThreadWorkloadsOnly() {
        var o = options(["pair", "threads"], allocators: [.glibc, .slab, .slabNoCPU], sizes: [20], threads: [2])
        o.oneThreadOnlyAllocators = AllocatorID.defaultOneThreadOnly
        let cells = SuitePlan.cells(o, catalog: Self.catalog, cores: 2)
        XCTAssertEqual(cells.filter { $0.workload == "pair" }.map(\.allocator), [.glibc, .slab, .slabNoCPU])
        XCTAssertEqual(cells.filter { $0.workload == "threads" }.map(\.allocator), [.glibc, .slab])
        // Named on the command line (no one-thread-only list), it runs everywhere.
        let named = SuitePlan.cells(options(["threads"], allocators: [.slabNoCPU], sizes: [20], threads: [2]),
                                    catalog: Self.catalog, cores: 2)
        XCTAssertEqual(named.map(\.allocator), [.slabNoCPU])
    }

    func test_throttledRounds_areJudgedAgainstTheRunsFinalBest() {
        // A run that started throttled: its first rounds read 330-360 ns, the quiet ones 40.
        let canaries: [Double?] = [350, nil, 330, 41, nil, 360, 40]
        XCTAssertEqual(SuiteRunner.roundsMeasuredThrottled(canaries: canaries, best: 40), [0, 2, 5])
        XCTAssertEqual(SuiteRunner.roundsMeasuredThrottled(canaries: canaries, best: 330), [], "against its first canary")
        XCTAssertEqual(SuiteRunner.roundsMeasuredThrottled(canaries: [nil, nil], best: 40), [])
    }

    func test_throttle_isAFourfoldCanary() {
        XCTAssertFalse(SuiteRunner.isThrottled(canary: 94, best: 31.6), "the slower of the two quiet placements")
        XCTAssertTrue(SuiteRunner.isThrottled(canary: 310, best: 64))
        XCTAssertTrue(SuiteRunner.isThrottled(canary: 130, best: 31.6))
    }

    func test_twoCPUCanary_measuresARoundTrip_whereTwoCPUsExist() throws {
        guard let ns = TwoCPUCanary.measure() else {
            throw XCTSkip("fewer than two CPUs: the canary does not run")
        }
        XCTAssertTrue(ns.isFinite && ns > 0, "\(ns)")
    }

    func test_parseAllocators_unknownName_listsValidOnes() {
        XCTAssertEqual(try SuitePlan.parseAllocators("glibc, slab-nocpu,glibc"), [.glibc, .slabNoCPU])
        XCTAssertEqual(try SuitePlan.parseAllocators(nil), AllocatorID.defaultSuite)
        XCTAssertEqual(try SuitePlan.parseAllocators("slab-fallback"), [.slabFallback])
        XCTAssertThrowsError(try SuitePlan.parseAllocators("glibc,hoard")) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("unknown allocator 'hoard'"), text)
            for a in AllocatorID.builtIn { XCTAssertTrue(text.contains(a.rawValue), text) }
        }
    }

    func test_parseWorkloads_unknownName_listsValidOnes_hiddenAcceptedButNotListed() {
        XCTAssertEqual(try SuitePlan.parseWorkloads("pair,_crash", catalog: Self.catalog), ["pair", "_crash"])
        XCTAssertThrowsError(try SuitePlan.parseWorkloads("pair,nope,zip", catalog: Self.catalog)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("unknown workloads 'nope', 'zip'"), text)
            XCTAssertTrue(text.contains("pair, batch-lifo-1m, batch-fifo-1000, threads, ctor-256, larson-mixed, batch-mixed"), text)
            XCTAssertFalse(text.contains("_crash"), text)
        }
    }

    func test_parsePositiveIntegers_rejectsZeroAndText() {
        XCTAssertEqual(try SuitePlan.parsePositiveIntegers("20,256,20", what: "--sizes"), [20, 256])
        XCTAssertThrowsError(try SuitePlan.parsePositiveIntegers("0", what: "--sizes"))
        XCTAssertThrowsError(try SuitePlan.parsePositiveIntegers("x", what: "--threads"))
    }

    func test_childEnvironment_setsOrRemovesLDPreload() {
        let peer = SuiteRunner.environment(library: "/usr/lib/libmimalloc.so.2", allocator: .mimalloc)
        XCTAssertEqual(peer.filter { $0.hasPrefix("LD_PRELOAD=") }, ["LD_PRELOAD=/usr/lib/libmimalloc.so.2"])
        setenv("LD_PRELOAD", "", 1)
        defer { unsetenv("LD_PRELOAD") }
        XCTAssertTrue(SuiteRunner.environment(library: nil, allocator: .glibc).allSatisfy { !$0.hasPrefix("LD_PRELOAD=") })
    }

    func test_childEnvironment_setsSlabCPULayerOnlyForSlabFallback() {
        setenv("SLAB_CPU_LAYER", "fallback", 1)
        defer { unsetenv("SLAB_CPU_LAYER") }
        XCTAssertTrue(SuiteRunner.environment(library: nil, allocator: .slab).allSatisfy { !$0.hasPrefix("SLAB_CPU_LAYER=") },
                      "a stray SLAB_CPU_LAYER must not change the slab cell's mode")
        XCTAssertEqual(SuiteRunner.environment(library: nil, allocator: .slabFallback).filter { $0.hasPrefix("SLAB_CPU_LAYER=") },
                       ["SLAB_CPU_LAYER=fallback"])
        XCTAssertFalse(AllocatorID.defaultSuite.contains(.slabFallback))
        XCTAssertEqual(try SuitePlan.parseAllocators(nil), AllocatorID.defaultSuite)
    }

    func test_cells_mixedWorkloads_runOnce_withoutTheTypedCaches() {
        let o = options(["pair", "batch-mixed", "larson-mixed"], allocators: [.glibc, .slab, .slabNoCPU, .kmalloc],
                        sizes: [20], threads: [1, 2])
        let cells = SuitePlan.cells(o, catalog: Self.catalog, cores: 2)
        XCTAssertEqual(cells.filter { $0.workload == "pair" }.map(\.allocator), [.glibc, .slab, .slabNoCPU, .kmalloc])
        XCTAssertEqual(cells.filter { $0.workload == "batch-mixed" }.map { "\($0.allocator.rawValue)/\($0.size)" },
                       ["glibc/1024", "kmalloc/1024"], "once, at its largest size, whatever --sizes says")
        XCTAssertEqual(cells.filter { $0.workload == "larson-mixed" }.map { "\($0.allocator.rawValue)x\($0.threads)" },
                       ["glibcx1", "kmallocx1", "glibcx2", "kmallocx2"])
    }

    func test_cells_defaultSuite_runsKmallocOnTheMixedWorkloadsOnly() {
        var o = options(["pair", "batch-mixed"], allocators: AllocatorID.defaultSuite, sizes: [20])
        o.mixedSizeAllocators = AllocatorID.defaultMixedSizeSuite
        let cells = SuitePlan.cells(o, catalog: Self.catalog, cores: 2)
        XCTAssertFalse(AllocatorID.defaultSuite.contains(.kmalloc))
        XCTAssertEqual(cells.filter { $0.workload == "pair" }.map(\.allocator), AllocatorID.defaultSuite)
        XCTAssertEqual(cells.filter { $0.workload == "batch-mixed" }.map(\.allocator),
                       [.glibc, .jemalloc, .mimalloc, .tcmalloc, .kmalloc])
        XCTAssertEqual(o.allAllocators, AllocatorID.defaultSuite + [.kmalloc])
    }

    func test_cells_defaultSuite_addsTheSlabBareReferenceToPairOnly() {
        var o = options(["pair", "batch-fifo-1000", "threads"], allocators: AllocatorID.defaultSuite, sizes: [20], threads: [1])
        o.referenceAllocators = AllocatorID.defaultReferenceSuite
        let cells = SuitePlan.cells(o, catalog: Self.catalog, cores: 2)
        XCTAssertEqual(cells.filter { $0.workload == "pair" }.map(\.allocator), AllocatorID.defaultSuite + [.slabBare])
        XCTAssertEqual(cells.filter { $0.allocator == .slabBare }.map(\.workload), ["pair"], "the reference joins pair only")
        XCTAssertEqual(o.allAllocators, AllocatorID.defaultSuite + [.slabBare])
        XCTAssertFalse(Ratio.isPeer(.slabBare), "a reference is never the best peer")
        // Named with --allocators, it runs wherever asked, like any typed cache.
        let asked = SuitePlan.cells(options(["batch-fifo-1000"], allocators: [.slab, .slabBare], sizes: [20]),
                                    catalog: Self.catalog, cores: 2)
        XCTAssertEqual(asked.map(\.allocator), [.slab, .slabBare])
    }

    func test_allocatorIDs_decodeFromTheStringsOldResultFilesHold_andNewOnesRoundTrip() throws {
        let old = #"["glibc","jemalloc","mimalloc","tcmalloc","slab","slab-nocpu","slab-fallback"]"#
        let decoded = try JSONDecoder().decode([AllocatorID].self, from: Data(old.utf8))
        XCTAssertEqual(decoded, [.glibc, .jemalloc, .mimalloc, .tcmalloc, .slab, .slabNoCPU, .slabFallback])
        let new: [AllocatorID] = [.kmalloc, AllocatorID(rawValue: "preload:/opt/lib/libfoo.so=foo")!]
        let encoded = String(decoding: try JSONEncoder().encode(new), as: UTF8.self)
        XCTAssertEqual(encoded, #"["kmalloc","preload:\/opt\/lib\/libfoo.so=foo"]"#)
        XCTAssertEqual(try JSONDecoder().decode([AllocatorID].self, from: Data(encoded.utf8)), new)
        XCTAssertThrowsError(try JSONDecoder().decode([AllocatorID].self, from: Data(#"["hoard"]"#.utf8)))
        XCTAssertEqual(new[1].name, "foo")
        XCTAssertEqual(AllocatorID(rawValue: "preload:/opt/lib/libfoo.so.2")?.name, "libfoo.so.2")
        XCTAssertNil(AllocatorID(rawValue: "preload:relative/libfoo.so"), "a raw value holds an absolute path")
        XCTAssertEqual(AllocatorID(rawValue: "preload:/opt/a=b/libfoo.so")?.preloadSpec?.path, "/opt/a=b/libfoo.so",
                       "an '=' before the last '/' belongs to the path")
    }

    func test_peerLibraries_missingNoteNamesTheDebianPackage() {
        XCTAssertEqual(PeerLibraries.missingNote(.tcmalloc),
                       "skipping tcmalloc: libtcmalloc_minimal.so.4 not found; install it with: apt-get install libgoogle-perftools4")
        XCTAssertTrue(PeerLibraries.isAvailable(.glibc))
        XCTAssertNil(PeerLibraries.locate(.slab))
    }
}
