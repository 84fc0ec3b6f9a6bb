// Workload tests: each workload, with a ledger-keeping allocator, allocates and frees exactly the
// objects it reports and leaves none live; each runs through WorkloadCatalog.run for slab and
// glibc and reports a sane result.

@testable import AllocBench
import Slab
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class WorkloadLedgerTests: XCTestCase {
    /// Runs one repetition and one sampling pass of `name` at test scale and checks the ledger.
    private func assertExactAccounting(_ name: String, size: Int = 24, threads: Int = 1,
                                       file: StaticString = #filePath, line: UInt = #line) throws {
        let kind = try XCTUnwrap(WorkloadKind(rawValue: name), "no workload \(name)", file: file, line: line)
        let size = kind == .ctor256 ? CtorObject.size : size
        let ledger = AllocationLedger()
        let a = CountingAllocator(size: size, ledger: ledger)
        let context = WorkloadContext(size: size, threads: threads, scale: .test)
        let (m, samplingOps, samples) = try kind.measureOnce(a, context)
        let s = ledger.snapshot
        let label = "\(name) size \(size) threads \(threads)"
        XCTAssertEqual(s.problems, [], label, file: file, line: line)
        XCTAssertGreaterThan(m.ops, 0, label, file: file, line: line)
        XCTAssertGreaterThan(m.seconds, 0, label, file: file, line: line)
        XCTAssertEqual(s.allocations, m.ops + m.untimedObjects + samplingOps, "\(label): allocations", file: file, line: line)
        XCTAssertEqual(s.frees, s.allocations, "\(label): frees", file: file, line: line)
        XCTAssertEqual(s.live.count, 0, "\(label): objects left live", file: file, line: line)
        XCTAssertLessThanOrEqual(s.peakLive, max(m.peakLiveObjects, 1) + (samplingOps > 0 ? m.peakLiveObjects : 0),
                                 "\(label): peak live above what the workload reports", file: file, line: line)
        let latency = WorkloadCatalog.all.first { $0.name == name }!.measuresLatency
        XCTAssertEqual(samples > 0, latency, "\(label): latency samples", file: file, line: line)
    }

    func test_pair_allocatesAndFreesExactlyItsOps() throws { try assertExactAccounting("pair") }
    func test_batchLIFO100_allocatesAndFreesExactlyItsOps() throws { try assertExactAccounting("batch-lifo-100") }
    func test_batchFIFO100_allocatesAndFreesExactlyItsOps() throws { try assertExactAccounting("batch-fifo-100") }
    func test_batchRandom100_allocatesAndFreesExactlyItsOps() throws { try assertExactAccounting("batch-random-100") }
    func test_batchLIFO1000_allocatesAndFreesExactlyItsOps() throws { try assertExactAccounting("batch-lifo-1000") }
    func test_batchFIFO1000_allocatesAndFreesExactlyItsOps() throws { try assertExactAccounting("batch-fifo-1000") }
    func test_batchRandom1000_allocatesAndFreesExactlyItsOps() throws { try assertExactAccounting("batch-random-1000") }
    func test_batchLIFO1M_allocatesAndFreesExactlyItsOps() throws { try assertExactAccounting("batch-lifo-1m") }
    func test_batchFIFO1M_allocatesAndFreesExactlyItsOps() throws { try assertExactAccounting("batch-fifo-1m") }
    func test_batchRandom1M_allocatesAndFreesExactlyItsOps() throws { try assertExactAccounting("batch-random-1m") }
    func test_thrash_allocatesAndFreesExactlyItsOps() throws { try assertExactAccounting("thrash") }
    func test_steadyRandom_allocatesAndFreesExactlyItsOpsPlusPrefill() throws { try assertExactAccounting("steady-random") }
    func test_sawtooth_allocatesAndFreesExactlyItsOps() throws { try assertExactAccounting("sawtooth") }
    func test_ctor256_allocatesAndFreesExactlyItsOps() throws { try assertExactAccounting("ctor-256") }

    func test_smallObjects_belowOneWord_areTouchedWithoutOverrun() throws {
        for name in ["pair", "batch-random-100", "steady-random", "prodcons-1x1"] {
            try assertExactAccounting(name, size: 1)
            try assertExactAccounting(name, size: 7)
        }
    }

    func test_threads_allocatesAndFreesExactlyItsOps_forEveryThreadCount() throws {
        for t in 1...4 { try assertExactAccounting("threads", threads: t) }
    }

    func test_prodcons1x1_everyObjectCrossesAndIsFreedOnce() throws {
        for t in [1, 2, 4] { try assertExactAccounting("prodcons-1x1", threads: t) }
    }

    func test_prodconsNxN_everyObjectCrossesAndIsFreedOnce() throws {
        for t in 1...5 { try assertExactAccounting("prodcons-nxn", threads: t) }
    }

    func test_larson_handedOffObjectsAreFreedOnce_forEveryThreadCount() throws {
        for t in 1...4 { try assertExactAccounting("larson", threads: t) }
    }

    func test_everyCatalogEntry_hasAWorkload_andNamesAreUnique() {
        let names = WorkloadCatalog.all.map(\.name)
        XCTAssertEqual(Set(names).count, names.count)
        XCTAssertEqual(Set(names), Set(WorkloadKind.allCases.map(\.rawValue) + MixedWorkloadKind.allCases.map(\.rawValue)))
        XCTAssertEqual(Set(WorkloadCatalog.all.filter { $0.mixedSizes == true }.map(\.name)), Set(MixedWorkloadKind.allCases.map(\.rawValue)))
    }

    // MARK: The mixed-size workloads

    /// Runs one repetition of a mixed workload at test scale and checks the ledger, and that every
    /// size asked for was in 8...1024.
    private func assertExactMixedAccounting(_ kind: MixedWorkloadKind, threads: Int = 1,
                                            file: StaticString = #filePath, line: UInt = #line) throws {
        let ledger = AllocationLedger()
        let a = CountingGeneralAllocator(ledger: ledger)
        let m = try kind.measureOnce(a, WorkloadContext(size: 1024, threads: threads, scale: .test))
        let s = ledger.snapshot
        let label = "\(kind.rawValue) threads \(threads)"
        XCTAssertEqual(s.problems, [], label, file: file, line: line)
        XCTAssertEqual(s.allocations, m.ops, "\(label): allocations", file: file, line: line)
        XCTAssertEqual(s.frees, s.allocations, "\(label): frees", file: file, line: line)
        XCTAssertEqual(s.live.count, 0, "\(label): objects left live", file: file, line: line)
        XCTAssertLessThanOrEqual(s.peakLive, m.peakLiveObjects, "\(label): peak live above what the workload reports",
                                 file: file, line: line)
        XCTAssertEqual(a.sizesOutsideRange, 0, "\(label): sizes outside 8...1024", file: file, line: line)
        XCTAssertGreaterThan(m.liveBytes ?? 0, 0, label, file: file, line: line)
    }

    func test_batchMixed_allocatesAndFreesExactlyItsOps() throws { try assertExactMixedAccounting(.batchMixed) }

    func test_larsonMixed_handedOffObjectsAreFreedOnce_forEveryThreadCount() throws {
        for t in 1...4 { try assertExactMixedAccounting(.larsonMixed, threads: t) }
    }

    func test_batchMixed_reportsTheExactBytesOfItsLargestBatch() throws {
        let ledger = AllocationLedger()
        let a = CountingGeneralAllocator(ledger: ledger)
        let m = try MixedWorkloadKind.batchMixed.measureOnce(a, WorkloadContext(size: 1024, threads: 1, scale: .test))
        // Test scale: 2 batches of 1000 objects, the sizes read in order from the table.
        let sizes = MixedSizes()
        defer { sizes.deallocate() }
        let batch = { (k: Int) in (0..<1000).reduce(0) { $0 + Int(sizes.table[k * 1000 + $1]) } }
        XCTAssertEqual(m.liveBytes, max(batch(0), batch(1)))
        XCTAssertEqual(a.bytesRequested, batch(0) + batch(1))
    }

    /// The ctor-256 check must be able to fail: an adapter that claims constructed objects but
    /// hands out raw malloc memory is caught.
    func test_ctor256_withUnconstructedObjects_fails() {
        let ledger = AllocationLedger()
        let liar = CountingAllocator(size: CtorObject.size, ledger: ledger, claimsConstructed: true)
        let context = WorkloadContext(size: CtorObject.size, threads: 1, scale: .test)
        XCTAssertThrowsError(try WorkloadKind.ctor256.measureOnce(liar, context)) { error in
            XCTAssertTrue("\(error)".contains("not in their constructed state"), "\(error)")
        }
        XCTAssertEqual(ledger.snapshot.live.count, 0)
    }

    /// The ledger itself must catch a double free, or the tests above prove nothing.
    func test_ledger_reportsDoubleFreeAndUnknownPointer() {
        let ledger = AllocationLedger()
        let p = malloc(8)!
        ledger.allocated(p)
        XCTAssertTrue(ledger.freeing(p))
        XCTAssertFalse(ledger.freeing(p), "a double free is refused")
        var local = 0
        XCTAssertFalse(withUnsafeMutablePointer(to: &local) { ledger.freeing(UnsafeMutableRawPointer($0)) })
        XCTAssertEqual(ledger.snapshot.problems.count, 2)
        free(p)
    }

    func test_permutations_areFixedSeedPermutations() {
        let a = Permutations(n: 1000, count: 3, seed: 42), b = Permutations(n: 1000, count: 3, seed: 42)
        defer { a.deallocate(); b.deallocate() }
        for k in 0..<3 {
            let pa = a.permutation(k), pb = b.permutation(k)
            XCTAssertEqual(Set((0..<1000).map { pa[$0] }).count, 1000)
            XCTAssertTrue((0..<1000).allSatisfy { pa[$0] == pb[$0] })
        }
        XCTAssertFalse((0..<1000).allSatisfy { a.permutation(0)[$0] == a.permutation(1)[$0] })
    }
}

final class WorkloadCatalogRunTests: XCTestCase {
    /// Every workload through the public entry point, in quick mode (or at test scale, to keep
    /// the debug-build test time down, for the variants the brief does not require quick for).
    private func runAll(_ allocator: AllocatorID, scale: Scale = .quick, file: StaticString = #filePath, line: UInt = #line) {
        for spec in WorkloadCatalog.all where allocator.servesAnySize || spec.mixedSizes != true {
            let threads = spec.usesThreads ? 2 : 1
            let p = CellParameters(allocator: allocator, workload: spec.name, size: 64, threads: threads,
                                   repetitions: 1, quick: scale == .quick)
            let r = WorkloadCatalog.run(p, scale: scale)
            let label = "\(allocator.rawValue) \(spec.name)"
            XCTAssertEqual(r.status, .ok, "\(label): \(r.message ?? "")", file: file, line: line)
            XCTAssertEqual(r.repetitions.count, 1, label, file: file, line: line)
            for rep in r.repetitions {
                XCTAssertGreaterThan(rep.ops, 0, label, file: file, line: line)
                XCTAssertGreaterThan(rep.seconds, 0, label, file: file, line: line)
                XCTAssertGreaterThan(rep.peakRSSBytes, 0, label, file: file, line: line)
                XCTAssertGreaterThan(rep.peakLiveBytes, 0, label, file: file, line: line)
                XCTAssertEqual(rep.latency != nil, spec.measuresLatency, label, file: file, line: line)
                if let l = rep.latency {
                    XCTAssertGreaterThan(l.samples, 0, label, file: file, line: line)
                    XCTAssertLessThanOrEqual(l.p50, l.p99, label, file: file, line: line)
                    XCTAssertLessThanOrEqual(l.p99, l.max, label, file: file, line: line)
                }
                if spec.name == "sawtooth" {
                    XCTAssertNotNil(rep.rssAfterBytes, label, file: file, line: line)
                    XCTAssertGreaterThan(rep.rssSeries?.count ?? 0, 10, label, file: file, line: line)
                }
            }
            XCTAssertNotNil(r.allocatorVersion, label, file: file, line: line)
        }
    }

    func test_run_quick_slab_everyWorkloadIsOK() { runAll(.slab) }
    func test_run_slabNoCPU_everyWorkloadIsOK() { runAll(.slabNoCPU, scale: .test) }
    func test_run_quick_glibc_everyWorkloadIsOK() { runAll(.glibc) }
    func test_run_kmalloc_everyWorkloadIsOK_andLeavesNothingLive() {
        runAll(.kmalloc, scale: .test)
        XCTAssertEqual(Kmalloc.statistics.liveAllocations, 0)
    }

    func test_run_kmallocSized_everyFixedSizeWorkloadIsOK_andLeavesNothingLive() {
        runAll(.kmallocSized, scale: .test)
        XCTAssertEqual(Kmalloc.statistics.liveAllocations, 0)
        let r = WorkloadCatalog.run(CellParameters(allocator: .kmallocSized, workload: "larson-mixed", size: 1024, threads: 1,
                                                   repetitions: 1, quick: true), scale: .test)
        XCTAssertEqual(r.status, .failed)
        XCTAssertEqual(r.message, "kmalloc-sized frees with the cell's one object size; larson-mixed needs an allocator of any size")
    }

    func test_run_typedCache_onAMixedWorkload_failsSayingItServesOneSize() {
        for a in [AllocatorID.slab, .slabNoCPU, .slabFallback] {
            let r = WorkloadCatalog.run(CellParameters(allocator: a, workload: "batch-mixed", size: 1024, threads: 1,
                                                       repetitions: 1, quick: true), scale: .test)
            XCTAssertEqual(r.status, .failed)
            XCTAssertEqual(r.message, "\(a.rawValue) is a typed cache of one object size; batch-mixed needs an allocator of any size")
        }
    }

    func test_kmallocAllocator_afterALeakyCell_failsNamingTheLeak() throws {
        let k = try KmallocAllocator(size: 40)
        try k.checkNothingLive()
        let leaked = k.allocate()
        XCTAssertThrowsError(try k.checkNothingLive()) {
            XCTAssertEqual("\($0)", "kmalloc: 1 allocations still live after the cell (the workload leaked them)")
        }
        k.free(leaked)
        XCTAssertNoThrow(try k.checkNothingLive())
    }

    func test_run_unknownWorkload_failsNamingTheValidOnes() {
        let r = WorkloadCatalog.run(CellParameters(allocator: .glibc, workload: "nope", size: 16, threads: 1,
                                                   repetitions: 1, quick: true))
        XCTAssertEqual(r.status, .failed)
        XCTAssertTrue(r.message?.contains("batch-lifo-100") ?? false, r.message ?? "")
    }

    func test_run_glibc_reportsTheGlibcVersion() {
        let r = WorkloadCatalog.run(CellParameters(allocator: .glibc, workload: "pair", size: 16, threads: 1,
                                                   repetitions: 1, quick: true))
        XCTAssertTrue(r.allocatorVersion?.hasPrefix("glibc 2.") ?? false, r.allocatorVersion ?? "nil")
    }

    /// The child's stdout carries the JSON result: a workload must print nothing.
    func test_run_printsNothingToStdout() throws {
        fflush(nil)
        let saved = dup(STDOUT_FILENO)
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        dup2(fds[1], STDOUT_FILENO)
        for name in ["sawtooth", "prodcons-nxn", "ctor-256"] {
            _ = WorkloadCatalog.run(CellParameters(allocator: .slab, workload: name, size: 32, threads: 2,
                                                   repetitions: 1, quick: true))
        }
        fflush(nil)
        dup2(saved, STDOUT_FILENO)
        close(saved)
        close(fds[1])
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = read(fds[0], &buffer, 256)
        close(fds[0])
        XCTAssertEqual(n, 0, String(decoding: buffer.prefix(max(n, 0)), as: UTF8.self))
    }
}
