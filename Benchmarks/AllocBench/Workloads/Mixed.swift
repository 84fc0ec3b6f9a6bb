// The mixed-size workloads: larson-mixed and batch-mixed, where a general-purpose allocator
// (malloc, kmalloc, a preloaded library) meets many sizes at once, as a program's heap does.
//
// 1. The sizes
// ------------
//   From 8 to 1024 bytes, skewed toward small ones as real heaps are: size = round(8 x 128^(u^2))
//   for u uniform in [0, 1). Half the requests are at most 26 bytes, two in three at most 64,
//   three in four at most 128, one in thirteen above 512; the mean is about 123 bytes (the test
//   MixedSizesTests measures these on the table itself). A table of 65,536 sizes is drawn once, from a
//   fixed seed, at set-up; the loops read it in order through a cursor, so every allocator meets
//   the same sequence of sizes and no logarithm or random draw for a size runs in a timed loop.
//   The `size` of a cell is ignored (every cell uses the whole range); the runner plans each
//   workload once and records 1024, its largest request, as the cell's size.
//
// 2. larson-mixed
// ---------------
//   The larson workload (Threaded.swift) with a size per object: each thread owns 10,000 slots
//   (about 1.2 MB of objects) and replaces a random one per op with an object of the next size;
//   every 128 replacements it hands 32 random live objects to the next thread, which frees them.
//   Threads start their cursors 4,099 sizes apart.
//
// 3. batch-mixed
// --------------
//   Allocate 100,000 objects of the next sizes (about 12 MB live), then free them in a random
//   order (one of 4 permutations drawn at set-up, cycled): the free of a heap that dropped a
//   large structure, each object freed far from where its neighbours are.
//
// Op counts per repetition (full / quick / test):
//   larson-mixed   per thread: 10,000 slots prefilled (test: 100), R = 1M/T (100K/T, 2000/T)
//                  replacements, and R / 128 x 32 hand-offs: ops = T x (slots + R + R / 128 x 32)
//   batch-mixed    30 / 3 / 2 batches of 100,000 objects (test: 1000): 3M / 300K / 2000
//   Neither runs in `bench instructions` (larson-mixed has threads; batch-mixed is timed only).
//
// Peak live bytes (for RSS/live): batch-mixed, the largest batch's sum of sizes, exact;
// larson-mixed, each thread's most bytes in its slots plus, for the objects in flight between
// threads (bounded as larson bounds them), the table's mean size each: an estimate.

import CAllocBench
import Harness

#if canImport(Glibc)
import Glibc
#endif

// MARK: - Sizes

/// The sizes the mixed workloads request, in order (see 1.).
/// @unchecked Sendable: the table is written once, at set-up, and only read afterwards.
struct MixedSizes: @unchecked Sendable {
    static let count = 1 << 16
    static let smallest = 8
    static let largest = 1024
    let table: UnsafeMutablePointer<UInt16>

    init(seed: UInt64 = 0x517E_5A11) {
        table = .allocate(capacity: Self.count)
        var rng = SplitMix64(seed: seed)
        for i in 0..<Self.count { table[i] = UInt16(Self.size(uniform: Double(rng.next() >> 11) / Double(1 << 53))) }
    }

    /// The size for a uniform draw u in [0, 1): round(8 x 128^(u^2)), 8...1024.
    static func size(uniform u: Double) -> Int {
        min(largest, max(smallest, Int((Double(smallest) * pow(128, u * u)).rounded())))
    }

    /// The size at `cursor`, which then moves on (wrapping at the end of the table).
    @inline(__always)
    func next(_ cursor: inout Int) -> Int {
        let size = Int(table[cursor & (Self.count - 1)])
        cursor &+= 1
        return size
    }

    /// The mean of the table (bytes).
    var mean: Double { Double((0..<Self.count).reduce(0) { $0 + Int(table[$1]) }) / Double(Self.count) }

    func deallocate() { table.deallocate() }
}

// MARK: - The protocol and the cell

/// A workload over a general-purpose allocator; set up once per cell, then repetitions.
protocol MixedWorkload {
    init(_ context: WorkloadContext)
    /// One timed repetition. Leaves no object live.
    func repetition<A: GeneralAllocator>(_ a: A) throws -> Measured
    func tearDown()
}

/// The mixed-size workloads by name.
enum MixedWorkloadKind: String, CaseIterable {
    case larsonMixed = "larson-mixed"
    case batchMixed = "batch-mixed"

    var usesThreads: Bool { WorkloadCatalog.all.first { $0.name == rawValue }?.usesThreads ?? false }

    /// A whole cell: warm-up, then timed repetitions (no latency pass: these workloads report
    /// throughput and memory).
    func runCell<A: GeneralAllocator>(_ a: A, _ context: WorkloadContext, repetitions: Int) throws -> [Repetition] {
        switch self {
        case .larsonMixed: return try Self.cell(LarsonMixedWorkload.self, a, context, repetitions: repetitions)
        case .batchMixed: return try Self.cell(BatchMixedWorkload.self, a, context, repetitions: repetitions)
        }
    }

    /// For the tests: one repetition with fresh set-up.
    func measureOnce<A: GeneralAllocator>(_ a: A, _ context: WorkloadContext) throws -> Measured {
        switch self {
        case .larsonMixed: return try Self.once(LarsonMixedWorkload.self, a, context)
        case .batchMixed: return try Self.once(BatchMixedWorkload.self, a, context)
        }
    }

    private static func cell<W: MixedWorkload, A: GeneralAllocator>(_: W.Type, _ a: A, _ context: WorkloadContext,
                                                                     repetitions: Int) throws -> [Repetition] {
        let w = W(context)
        defer { w.tearDown() }
        _ = try w.repetition(a)  // warm-up
        var reps: [Repetition] = []
        reps.reserveCapacity(repetitions)
        for _ in 0..<repetitions {
            ProcessMemory.resetPeak()
            let m = try w.repetition(a)
            let peak = ProcessMemory.peakRSS()
            reps.append(Repetition(ops: m.ops, seconds: m.seconds, latency: nil, peakRSSBytes: peak,
                                   peakLiveBytes: m.liveBytes ?? 0, rssAfterBytes: m.rssAfterBytes, rssSeries: nil))
        }
        return reps
    }

    private static func once<W: MixedWorkload, A: GeneralAllocator>(_: W.Type, _ a: A, _ context: WorkloadContext) throws -> Measured {
        let w = W(context)
        defer { w.tearDown() }
        return try w.repetition(a)
    }
}

// MARK: - larson-mixed

struct LarsonMixedWorkload: MixedWorkload {
    static let handOffEvery = LarsonWorkload.handOffEvery
    static let chunk = LarsonWorkload.chunk
    /// How far apart the threads' cursors start in the size table.
    static let cursorSpacing = 4099
    let threads: Int
    let slotsPerThread: Int
    let replacements: Int
    let sizes: MixedSizes

    init(_ c: WorkloadContext) {
        threads = c.threads
        slotsPerThread = c.scale == .test ? 100 : 10_000
        replacements = c.scale.pick(full: 1_000_000, quick: 100_000, test: 2000) / c.threads
        sizes = MixedSizes()
    }

    func tearDown() { sizes.deallocate() }

    /// Objects allocated (and freed) by one thread in a repetition.
    var opsPerThread: Int { slotsPerThread + replacements + replacements / Self.handOffEvery * Self.chunk }

    func repetition<A: GeneralAllocator>(_ a: A) throws -> Measured {
        let T = threads
        let rings = RingSet(count: T)
        let inFlight = PerThreadCounters(count: T)
        let slotBytes = PerThreadCounters(count: T)
        defer { rings.deallocate(); inFlight.deallocate(); slotBytes.deallocate() }
        let (slots, replacements, sizes) = (slotsPerThread, self.replacements, self.sizes)
        let wall = runTimedThreads(T) { t, gate in
            let (most, bytes) = Self.serve(a, thread: t, threads: T, rings: rings, slots: slots, replacements: replacements,
                                           sizes: sizes, gate: gate)
            inFlight.set(most, thread: t)
            slotBytes.set(bytes, thread: t)
        }
        let objectsInFlight = inFlight.total + T * Self.chunk
        return Measured(ops: opsPerThread * T, seconds: wall, peakLiveObjects: T * slotsPerThread + objectsInFlight,
                        liveBytes: slotBytes.total + Int(Double(objectsInFlight) * sizes.mean))
    }

    /// One thread's work; returns the most objects seen in flight in its outbox and the most bytes
    /// its slots held.
    static func serve<A: GeneralAllocator>(_ a: A, thread t: Int, threads T: Int, rings: RingSet, slots n: Int,
                                           replacements: Int, sizes: MixedSizes, gate: ThreadGate) -> (Int, Int) {
        var a = a
        keepInFrame(&a)
        let slots = UnsafeMutablePointer<UnsafeMutableRawPointer?>.allocate(capacity: n)
        let slotSizes = UnsafeMutablePointer<Int>.allocate(capacity: n)
        defer { slots.deallocate(); slotSizes.deallocate() }
        var outbox = SPSCRing.Producer(rings[(t + 1) % T])
        var inbox = SPSCRing.Consumer(rings[t])
        var rng = SplitMix64(seed: 0x1A_850D_313D ^ UInt64(t) << 32)
        var cursor = t * cursorSpacing
        var mostInFlight: UInt64 = 0
        var bytes = 0, mostBytes = 0
        gate.arriveAndWait()

        @inline(__always) func drainInbox() {
            while let p = inbox.pop() { a.free(p) }
        }
        /// A new object of the next size in slot k (whose old object is gone).
        @inline(__always) func fill(_ k: Int, stamp: UInt64) {
            let size = sizes.next(&cursor)
            let p = a.allocate(bytes: size)
            touch(p, size: size, stamp: stamp)
            slots[k] = p
            bytes &+= size &- slotSizes[k]
            slotSizes[k] = size
        }

        for i in 0..<n {
            slotSizes[i] = 0
            fill(i, stamp: UInt64(i))
        }
        mostBytes = bytes
        var r = 0
        while r < replacements {
            let j = rng.next(below: n)
            a.free(slots[j].unsafelyUnwrapped)
            fill(j, stamp: UInt64(truncatingIfNeeded: r))
            r &+= 1
            if r % handOffEvery == 0 {
                for _ in 0..<chunk {
                    let k = rng.next(below: n)
                    let leaving = slots[k].unsafelyUnwrapped
                    var spins = 0
                    while !outbox.push(leaving) {
                        drainInbox()  // the next thread may be waiting on us: never wait without draining
                        backOff(&spins)
                    }
                    fill(k, stamp: UInt64(k))
                }
                // Relaxed: a statistic; a stale head only overstates what is in flight.
                mostInFlight = max(mostInFlight, outbox.tail &- callocbench_load_relaxed(outbox.ring.head))
                mostBytes = max(mostBytes, bytes)
                drainInbox()
            }
        }
        callocbench_black_hole(slots)
        for i in 0..<n { a.free(slots[i].unsafelyUnwrapped) }
        gate.finish(threads: T, draining: drainInbox)
        return (Int(mostInFlight), max(mostBytes, bytes))
    }
}

// MARK: - batch-mixed

struct BatchMixedWorkload: MixedWorkload {
    static let orders = 4
    let n: Int
    let batches: Int
    let sizes: MixedSizes
    let slots: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    let orders: Permutations

    init(_ c: WorkloadContext) {
        n = c.scale == .test ? 1000 : 100_000
        batches = c.scale.pick(full: 30, quick: 3, test: 2)
        sizes = MixedSizes()
        slots = .allocate(capacity: n)
        slots.initialize(repeating: nil, count: n)
        orders = Permutations(n: n, count: Self.orders, seed: 0xBA7C_4D1E)
    }

    func tearDown() {
        sizes.deallocate()
        slots.deallocate()
        orders.deallocate()
    }

    func repetition<A: GeneralAllocator>(_ a: A) throws -> Measured {
        let slots = self.slots, n = self.n, sizes = self.sizes
        var cursor = 0
        var mostBytes = 0
        let t0 = measuredRegionBegins()
        for b in 0..<batches {
            var bytes = 0
            var i = 0
            while i < n {
                let size = sizes.next(&cursor)
                let p = a.allocate(bytes: size)
                touch(p, size: size, stamp: UInt64(truncatingIfNeeded: i))
                slots[i] = p
                bytes &+= size
                i &+= 1
            }
            mostBytes = max(mostBytes, bytes)
            callocbench_black_hole(slots)
            let perm = orders.permutation(b)
            var j = 0
            while j < n {
                a.free(slots[Int(perm[j])].unsafelyUnwrapped)
                j &+= 1
            }
        }
        let t1 = measuredRegionEnds()
        return Measured(ops: n * batches, seconds: seconds(from: t0, to: t1), peakLiveObjects: n, liveBytes: mostBytes)
    }
}
