// The workloads' half of the suite: the catalog the runner lists and the one entry point it calls
// inside a child process, `WorkloadCatalog.run(_:)`.
//
// 1. A cell, step by step (run)
// -----------------------------
//   Make the allocator adapter (Allocators/). Set the workload up: buffers of slots, precomputed
//   random orders, rings; nothing of this is timed. One warm-up repetition, discarded. Then
//   `repetitions` times: reset the peak-RSS mark, run one repetition (the workload times its own
//   measured region), read VmHWM; for latency workloads run a separate sampling pass
//   (Measurement.swift). Tear down; destroy the slab cache (which fails the cell if the workload
//   leaked an object). Nothing is printed: the child's stdout carries the JSON result.
//
// 2. Op counts
// ------------
//   An op is one object allocated and freed. Each workload's counts per repetition are in its
//   own file; `Scale` picks full (50-200 ms per repetition for glibc here), quick (about a tenth),
//   test (tiny, for the unit tests) or count (`bench instructions`: about 200K ops, so that a
//   cell takes a few seconds under callgrind, which runs some 50x slower than the CPU). Counts
//   are fixed per workload and scale, never calibrated by time, so that every allocator does
//   exactly the same work, and so that instruction counts stay comparable between runs.
//
// 4. Count mode
// -------------
//   A cell whose parameters carry `countScale` (only `bench instructions` sets it) runs under
//   callgrind: set-up, one warm-up repetition, then exactly one repetition whose measured region
//   alone is counted (Instructions/CountedRegion.swift). No latency pass, no RSS figures.
//
// 3. Static dispatch
// ------------------
//   `run` switches once on the allocator and once on the workload; below that everything is
//   generic over `FixedSizeAllocator` and `Workload`, so the compiler specialises each
//   (workload, adapter) pair and the timed loops contain no indirect calls.

import Slab

#if canImport(Glibc)
import Glibc
#endif

/// How much work a repetition does.
enum Scale: Sendable, Equatable {
    /// The default suite: 50-200 ms per repetition for glibc on this machine.
    case full
    /// `--quick`: about a tenth of that.
    case quick
    /// Unit tests: a few thousand ops.
    case test
    /// `bench instructions`: a few seconds per cell under callgrind.
    case count

    /// The op count for this scale. A workload that cannot be counted (the thread workloads: see
    /// Instructions/CountedRegion.swift) names no count, and gets its quick count if asked.
    @inline(__always)
    func pick(full f: Int, quick q: Int, test t: Int, count c: Int? = nil) -> Int {
        switch self {
        case .full: return f
        case .quick: return q
        case .test: return t
        case .count: return c ?? q
        }
    }
}

/// What a workload is given at set-up.
struct WorkloadContext: Sendable {
    var size: Int
    var threads: Int
    var scale: Scale
}

/// A workload failed a check of its own (a stamp or a constructed object was wrong).
struct WorkloadFailure: Error, CustomStringConvertible {
    var description: String
}

/// What one repetition measured.
struct Measured {
    /// Objects allocated and freed inside the timed region.
    var ops: Int
    var seconds: Double
    /// Most objects live at once (exact, or the bound the workload's structure imposes).
    var peakLiveObjects: Int
    /// Objects allocated and freed in the same call but outside the timed region (a prefill):
    /// not in `ops`, counted by the tests.
    var untimedObjects = 0
    var rssAfterBytes: Int? = nil
    var rssSeries: [RSSPoint]? = nil
    /// Peak bytes held live, for workloads whose objects differ in size (Mixed.swift); the others
    /// report peakLiveObjects x size.
    var liveBytes: Int? = nil
}

/// One workload: set up once per cell, then repetitions.
protocol Workload {
    init(_ context: WorkloadContext)
    /// One timed repetition. Leaves no object live.
    func repetition<A: FixedSizeAllocator>(_ a: A) throws -> Measured
    /// Samples (at most `latencySampleCapacity`) of single ops into `samples`, outside the
    /// throughput loop. Returns the objects allocated and freed. Leaves no object live.
    func sampleLatency<A: FixedSizeAllocator>(_ a: A, into samples: inout LatencySamples) -> Int
    /// 0 when the workload does not measure latency.
    var latencySampleCapacity: Int { get }
    /// Frees the set-up buffers (not objects: there are none live between repetitions).
    func tearDown()
}

extension Workload {
    func sampleLatency<A: FixedSizeAllocator>(_ a: A, into samples: inout LatencySamples) -> Int { 0 }
    var latencySampleCapacity: Int { 0 }
    func tearDown() {}
}

public enum WorkloadCatalog {
    public static let all: [WorkloadSpec] = [
        WorkloadSpec(name: "pair", summary: "hot alloc/free pair, one object live", measuresLatency: true),
        WorkloadSpec(name: "batch-lifo-100", summary: "allocate 100, free them newest first"),
        WorkloadSpec(name: "batch-fifo-100", summary: "allocate 100, free them oldest first"),
        WorkloadSpec(name: "batch-random-100", summary: "allocate 100, free them in a random order"),
        WorkloadSpec(name: "batch-lifo-1000", summary: "allocate 1000, free them newest first"),
        WorkloadSpec(name: "batch-fifo-1000", summary: "allocate 1000, free them oldest first"),
        WorkloadSpec(name: "batch-random-1000", summary: "allocate 1000, free them in a random order"),
        WorkloadSpec(name: "batch-lifo-1m", summary: "allocate 1M, free them newest first"),
        WorkloadSpec(name: "batch-fifo-1m", summary: "allocate 1M, free them oldest first"),
        WorkloadSpec(name: "batch-random-1m", summary: "allocate 1M, free them in a random order"),
        WorkloadSpec(name: "thrash", summary: "Bonwick's 2-alloc/2-free at every depth 0..255 of extra live objects"),
        WorkloadSpec(name: "steady-random", summary: "10,000 live objects, a random one replaced each op", measuresLatency: true),
        // The thread workloads' version 2: thread i bound to CPU i mod n (Threaded.swift); the
        // runner measures them in rounds, one child per repetition (Plan.swift, section 3).
        // Version 3 of threads, larson and larson-mixed, and version 4 of prodcons (whose version 3
        // brought batched rings): each thread calls the adapter through its own frame's copy
        // (keepInFrame, Threaded.swift), not through the closure's heap box.
        WorkloadSpec(name: "threads", summary: "independent threads, each a hot alloc/free pair", usesThreads: true,
                     version: 3),
        WorkloadSpec(name: "prodcons-1x1", summary: "one producer allocates, one consumer frees (SPSC ring, batches of 32; always 2 threads)",
                     version: 4, minimumThreads: 2),
        WorkloadSpec(name: "prodcons-nxn", summary: "threads/2 producers to threads/2 consumers, a ring per pair (batches of 32)",
                     usesThreads: true, version: 4, minimumThreads: 2),
        WorkloadSpec(name: "larson", summary: "threads replace random slots and hand chunks to the next thread to free", usesThreads: true,
                     version: 3),
        // Version 2: every allocator's own release call after every drain (SingleThreaded.swift).
        WorkloadSpec(name: "sawtooth", summary: "fill to 16 MiB of objects, drain to 0, ask the allocator to release free memory; 4 cycles; RSS throughout and after release",
                     version: 2),
        WorkloadSpec(name: "ctor-256", summary: "256-byte constructed object: slab constructor vs malloc + initialise", fixedSize: 256),
        WorkloadSpec(name: "larson-mixed", summary: "larson with sizes drawn from 8 to 1024 B (median 26 B), 10,000 slots a thread",
                     usesThreads: true, fixedSize: MixedSizes.largest, version: 3, mixedSizes: true),
        WorkloadSpec(name: "batch-mixed", summary: "allocate 100,000 objects of sizes drawn from 8 to 1024 B, free them in a random order",
                     fixedSize: MixedSizes.largest, version: 1, mixedSizes: true),
    ]

    public static var names: [String] { all.map(\.name) }

    /// Runs one cell in this process (the child). Never prints.
    public static func run(_ p: CellParameters) -> CellResult {
        switch p.countScale {
        case .standard?: return run(p, scale: .count)
        case .test?: return run(p, scale: .test)
        case nil: return run(p, scale: p.quick ? .quick : .full)
        }
    }

    static func run(_ p: CellParameters, scale: Scale) -> CellResult {
        var result = CellResult(parameters: p, status: .failed, message: nil, repetitions: [], allocatorVersion: nil)
        guard p.size >= 1, p.threads >= 1, p.repetitions >= 1 || p.countScale != nil else {
            result.message = "invalid parameters: size \(p.size), threads \(p.threads), repetitions \(p.repetitions)"
            return result
        }
        if let mixed = MixedWorkloadKind(rawValue: p.workload) { return runMixed(mixed, p, scale: scale) }
        guard let kind = WorkloadKind(rawValue: p.workload) else {
            result.message = "unknown workload \"\(p.workload)\"; valid: \(names.joined(separator: ", "))"
            return result
        }
        let size = kind == .ctor256 ? CtorObject.size : p.size
        let context = WorkloadContext(size: size, threads: kind.usesThreads ? p.threads : 1, scale: scale)
        do {
            if p.allocator.isSlab {
                let constructor: ((UnsafeMutableRawPointer) -> Void)? =
                    kind == .ctor256 ? { CtorObject.construct($0) } : nil
                let slab = try SlabAllocator(size: size, perCPU: p.allocator != .slabNoCPU, label: p.workload,
                                             constructor: constructor)
                result.allocatorVersion = AllocatorVersion.current(for: p.allocator, slab: slab.cache)
                if kind.releasesFreeMemory { result.releaseCall = slab.releaseCall }
                let cellResult = Result {
                    p.allocator == .slabBare
                        ? try kind.runCell(BareSlabAllocator(slab), context, repetitions: p.repetitions, counted: p.countScale != nil)
                        : try kind.runCell(slab, context, repetitions: p.repetitions, counted: p.countScale != nil)
                }
                // Destroy even after a failure: the cache must not outlive its cell. A workload's
                // own error comes first; a refused destroy means the workload leaked objects.
                let destroyed = Result { try slab.destroy() }
                result.repetitions = try cellResult.get()
                try destroyed.get()
            } else if p.allocator == .kmalloc || p.allocator == .kmallocSized {
                let k = try KmallocAllocator(size: size)
                result.allocatorVersion = AllocatorVersion.current(for: p.allocator)
                if kind.releasesFreeMemory { result.releaseCall = k.releaseCall }
                let cellResult = Result {
                    p.allocator == .kmallocSized
                        ? try kind.runCell(SizedKmallocAllocator(k), context, repetitions: p.repetitions, counted: p.countScale != nil)
                        : try kind.runCell(k, context, repetitions: p.repetitions, counted: p.countScale != nil)
                }
                result.repetitions = try cellResult.get()
                try k.checkNothingLive()
            } else {
                result.allocatorVersion = AllocatorVersion.current(for: p.allocator)
                let m = MallocAllocator(size: size, release: .resolve(for: p.allocator))
                if kind.releasesFreeMemory { result.releaseCall = m.releaseCall }
                result.repetitions = try kind.runCell(m, context, repetitions: p.repetitions, counted: p.countScale != nil)
            }
            result.status = .ok
        } catch {
            result.message = "\(error)"
            result.repetitions = []
        }
        return result
    }
}

extension WorkloadCatalog {
    /// A mixed-size cell: the allocator must serve any size (malloc, a peer, kmalloc).
    static func runMixed(_ kind: MixedWorkloadKind, _ p: CellParameters, scale: Scale) -> CellResult {
        var result = CellResult(parameters: p, status: .failed, message: nil, repetitions: [], allocatorVersion: nil)
        guard p.allocator.servesAnySize else {
            result.message = p.allocator == .kmallocSized
                ? "\(p.allocator.name) frees with the cell's one object size; \(p.workload) needs an allocator of any size"
                : "\(p.allocator.name) is a typed cache of one object size; \(p.workload) needs an allocator of any size"
            return result
        }
        guard p.countScale == nil else {
            result.message = "\(p.workload) is a mixed-size workload: it is timed, not counted"
            return result
        }
        let context = WorkloadContext(size: p.size, threads: kind.usesThreads ? p.threads : 1, scale: scale)
        do {
            if p.allocator == .kmalloc {
                let k = try KmallocAllocator(size: p.size)
                result.allocatorVersion = AllocatorVersion.current(for: .kmalloc)
                result.repetitions = try kind.runCell(k, context, repetitions: p.repetitions)
                try k.checkNothingLive()
            } else {
                result.allocatorVersion = AllocatorVersion.current(for: p.allocator)
                result.repetitions = try kind.runCell(MallocAllocator(size: p.size, release: .resolve(for: p.allocator)), context,
                                                      repetitions: p.repetitions)
            }
            result.status = .ok
        } catch {
            result.message = "\(error)"
            result.repetitions = []
        }
        return result
    }
}

/// The workloads by name, and the one switch from a name to a specialised generic call.
enum WorkloadKind: String, CaseIterable {
    case pair
    case batchLIFO100 = "batch-lifo-100", batchFIFO100 = "batch-fifo-100", batchRandom100 = "batch-random-100"
    case batchLIFO1000 = "batch-lifo-1000", batchFIFO1000 = "batch-fifo-1000", batchRandom1000 = "batch-random-1000"
    case batchLIFO1M = "batch-lifo-1m", batchFIFO1M = "batch-fifo-1m", batchRandom1M = "batch-random-1m"
    case thrash
    case steadyRandom = "steady-random"
    case threads
    case prodcons1x1 = "prodcons-1x1"
    case prodconsNxN = "prodcons-nxn"
    case larson
    case sawtooth
    case ctor256 = "ctor-256"

    var usesThreads: Bool { WorkloadCatalog.all.first { $0.name == rawValue }?.usesThreads ?? false }

    /// The workload asks its allocator to release free memory (`releaseFreeMemory()`), so its
    /// result names the call.
    var releasesFreeMemory: Bool { self == .sawtooth }

    /// Calls `visitor.visit(W.self)` with the workload's concrete type. One `case` per workload,
    /// each a direct generic call: with the visitor generic over the adapter, every (W, A) pair is
    /// specialised. (Opening an `any Workload.Type` instead would leave `repetition<A>`
    /// unspecialised, and every allocate/free a witness-table call: measured at 15 ns per slab
    /// pair instead of a few.)
    func accept<V: WorkloadVisitor>(_ visitor: V) throws -> V.Result {
        switch self {
        case .pair: return try visitor.visit(PairWorkload.self)
        case .batchLIFO100: return try visitor.visit(BatchWorkload<LIFO, N100>.self)
        case .batchFIFO100: return try visitor.visit(BatchWorkload<FIFO, N100>.self)
        case .batchRandom100: return try visitor.visit(BatchWorkload<RandomOrder, N100>.self)
        case .batchLIFO1000: return try visitor.visit(BatchWorkload<LIFO, N1000>.self)
        case .batchFIFO1000: return try visitor.visit(BatchWorkload<FIFO, N1000>.self)
        case .batchRandom1000: return try visitor.visit(BatchWorkload<RandomOrder, N1000>.self)
        case .batchLIFO1M: return try visitor.visit(BatchWorkload<LIFO, N1M>.self)
        case .batchFIFO1M: return try visitor.visit(BatchWorkload<FIFO, N1M>.self)
        case .batchRandom1M: return try visitor.visit(BatchWorkload<RandomOrder, N1M>.self)
        case .thrash: return try visitor.visit(ThrashWorkload.self)
        case .steadyRandom: return try visitor.visit(SteadyRandomWorkload.self)
        case .threads: return try visitor.visit(ThreadsWorkload.self)
        case .prodcons1x1: return try visitor.visit(ProdConsWorkload<OneToOne>.self)
        case .prodconsNxN: return try visitor.visit(ProdConsWorkload<ManyToMany>.self)
        case .larson: return try visitor.visit(LarsonWorkload.self)
        case .sawtooth: return try visitor.visit(SawtoothWorkload.self)
        case .ctor256: return try visitor.visit(Ctor256Workload.self)
        }
    }

    /// A whole cell: warm-up, then timed repetitions; counted (under callgrind), warm-up and the
    /// one counted repetition instead.
    func runCell<A: FixedSizeAllocator>(_ a: A, _ context: WorkloadContext, repetitions: Int,
                                        counted: Bool = false) throws -> [Repetition] {
        if counted { return try accept(CountedCellVisitor(allocator: a, context: context)) }
        return try accept(CellVisitor(allocator: a, context: context, repetitions: repetitions))
    }

    /// For the tests: one repetition, then one sampling pass, with fresh set-up.
    func measureOnce<A: FixedSizeAllocator>(_ a: A, _ context: WorkloadContext) throws -> (Measured, samplingOps: Int, samples: Int) {
        try accept(MeasureOnceVisitor(allocator: a, context: context))
    }
}

/// Something done with a workload's concrete type (see `WorkloadKind.accept`).
protocol WorkloadVisitor {
    associatedtype Result
    func visit<W: Workload>(_: W.Type) throws -> Result
}

private struct CellVisitor<A: FixedSizeAllocator>: WorkloadVisitor {
    let allocator: A
    let context: WorkloadContext
    let repetitions: Int

    func visit<W: Workload>(_: W.Type) throws -> [Repetition] {
        let a = allocator
        let w = W(context)
        defer { w.tearDown() }
        let floor = w.latencySampleCapacity > 0 ? clockFloorNanoseconds() : 0
        _ = try w.repetition(a)  // warm-up
        var reps: [Repetition] = []
        reps.reserveCapacity(repetitions)
        for _ in 0..<repetitions {
            ProcessMemory.resetPeak()
            let m = try w.repetition(a)
            let peak = ProcessMemory.peakRSS()
            var latency: LatencySummary? = nil
            if w.latencySampleCapacity > 0 {
                var samples = LatencySamples(capacity: w.latencySampleCapacity, floor: floor)
                _ = w.sampleLatency(a, into: &samples)
                latency = samples.summary()
                samples.deallocate()
            }
            reps.append(Repetition(ops: m.ops, seconds: m.seconds, latency: latency, peakRSSBytes: peak,
                                   peakLiveBytes: m.peakLiveObjects * context.size,
                                   rssAfterBytes: m.rssAfterBytes, rssSeries: m.rssSeries))
        }
        return reps
    }
}

private struct MeasureOnceVisitor<A: FixedSizeAllocator>: WorkloadVisitor {
    let allocator: A
    let context: WorkloadContext

    func visit<W: Workload>(_: W.Type) throws -> (Measured, samplingOps: Int, samples: Int) {
        let a = allocator
        let w = W(context)
        defer { w.tearDown() }
        let m = try w.repetition(a)
        var samples = LatencySamples(capacity: w.latencySampleCapacity, floor: 0)
        defer { samples.deallocate() }
        let sampled = w.sampleLatency(a, into: &samples)
        return (m, sampled, samples.count)
    }
}
