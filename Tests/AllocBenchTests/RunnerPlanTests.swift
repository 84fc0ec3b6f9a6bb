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

    func test_parseAllocators_unknownName_listsValidOnes() {
        XCTAssertEqual(try SuitePlan.parseAllocators("glibc, slab-nocpu,glibc"), [.glibc, .slabNoCPU])
        XCTAssertEqual(try SuitePlan.parseAllocators(nil), AllocatorID.defaultSuite)
        XCTAssertEqual(try SuitePlan.parseAllocators("slab-fallback"), [.slabFallback])
        XCTAssertThrowsError(try SuitePlan.parseAllocators("glibc,hoard")) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("unknown allocator 'hoard'"), text)
            for a in AllocatorID.allCases { XCTAssertTrue(text.contains(a.rawValue), text) }
        }
    }

    func test_parseWorkloads_unknownName_listsValidOnes_hiddenAcceptedButNotListed() {
        XCTAssertEqual(try SuitePlan.parseWorkloads("pair,_crash", catalog: Self.catalog), ["pair", "_crash"])
        XCTAssertThrowsError(try SuitePlan.parseWorkloads("pair,nope,zip", catalog: Self.catalog)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("unknown workloads 'nope', 'zip'"), text)
            XCTAssertTrue(text.contains("pair, batch-lifo-1m, batch-fifo-1000, threads, ctor-256"), text)
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

    func test_peerLibraries_missingNoteNamesTheDebianPackage() {
        XCTAssertEqual(PeerLibraries.missingNote(.tcmalloc),
                       "skipping tcmalloc: libtcmalloc_minimal.so.4 not found; install it with: apt-get install libgoogle-perftools4")
        XCTAssertTrue(PeerLibraries.isAvailable(.glibc))
        XCTAssertNil(PeerLibraries.locate(.slab))
    }
}
