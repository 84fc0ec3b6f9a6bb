// The single-threaded workloads: pair, batch (LIFO / FIFO / random x 100 / 1000 / 1M), thrash,
// steady-random, sawtooth, ctor-256.
//
// Every timed loop is a generic function over local state: slots live in UnsafeMutablePointer
// buffers allocated at set-up (no Array bounds checks, no ARC in the loop), random orders are
// precomputed, each object gets its first and last word written (`touch`), and `callocbench_black_hole`
// keeps the pointers observable so the optimiser cannot delete an allocation it sees freed.
//
// Op counts per repetition (full / quick / test / count):
//   pair              8M / 800K / 2000 / 200K; sampling pass: 1M / 100K / 640 / none, half of
//                     it timed (a group of 32 at the start of every 64 ops)
//   batch-*-100       6M / 600K / 1000 / 200K (60,000 / 6,000 / 10 / 2,000 batches)
//   batch-*-1000      6M / 600K / 2000 / 200K
//   batch-lifo/fifo-1m  3.1M / 1M / 2000 / 1M (3 / 1 / - / 1 batches of 1,048,576; test: batches
//                     of 1000)
//   batch-random-1m   1M / 1M / 2000 / 1M (one batch: its cache misses make it 100-300 ms already)
//   thrash            256 depths x (2 x T pairs) + 32,640 depth objects: T = 8192 / 819 / 2 / 400
//                     -> 4.23M / 452K / 33,664 / 237K
//   steady-random     3M / 300K / 2000 / 200K replacements (+10,000 untimed prefill; test:
//                     K = 100); sampling pass: 1M / 100K / 640 / none
//   sawtooth          4 cycles of N = 16 MiB / size objects (min 1000): 4.2M / 419K (size 16),
//                     262K / 26K (size 256); count: as quick;
//                     test: 4 x 500; and 4 release calls, one after each drain
//   ctor-256          3M / 300K / 2000 / 200K in batches of 32
//
// The count scale (`bench instructions`) is sized for callgrind: the slowest allocator here
// (slab-fallback, about 330 instructions per pair) runs a warm-up and the counted repetition of
// 200K ops in about a second at callgrind's 130M instructions/s. Each repetition brackets its
// measured region with measuredRegionBegins/Ends (Instructions/CountedRegion.swift): the clock
// reads that time it, and under callgrind the switches that count it. Set-up, prefills and final
// frees outside the bracket are neither timed nor counted.

import CAllocBench
import Harness

#if canImport(Glibc)
import Glibc
#endif

// MARK: - pair

/// Hot alloc/free pair: the allocator's fast path and nothing else.
struct PairWorkload: Workload {
    let size: Int
    let ops: Int
    let samplingOps: Int

    init(_ c: WorkloadContext) {
        size = c.size
        ops = c.scale.pick(full: 8_000_000, quick: 800_000, test: 2000, count: 200_000)
        samplingOps = c.scale.pick(full: 1_000_000, quick: 100_000, test: 640, count: 640)
    }

    func repetition<A: FixedSizeAllocator>(_ a: A) throws -> Measured {
        let t0 = measuredRegionBegins()
        pairLoop(a, count: ops, size: size)
        let t1 = measuredRegionEnds()
        return Measured(ops: ops, seconds: seconds(from: t0, to: t1), peakLiveObjects: 1)
    }

    var latencySampleCapacity: Int { samplingOps / latencyStride + 1 }

    func sampleLatency<A: FixedSizeAllocator>(_ a: A, into samples: inout LatencySamples) -> Int {
        let group = samples.groupOps
        var done = 0
        while done + latencyStride <= samplingOps {
            let t0 = monotonicNanoseconds()
            pairLoop(a, count: group, size: size)
            let t1 = monotonicNanoseconds()
            samples.record(start: t0, end: t1)
            pairLoop(a, count: latencyStride - group, size: size)
            done += latencyStride
        }
        return done
    }
}

/// `count` alloc/free pairs. Shared by pair, threads and the sampling passes.
@inline(__always)
func pairLoop<A: FixedSizeAllocator>(_ a: A, count: Int, size: Int) {
    var i = 0
    while i < count {
        let p = a.allocate()
        touch(p, size: size, stamp: UInt64(truncatingIfNeeded: i))
        callocbench_black_hole(p)
        a.free(p)
        i &+= 1
    }
}

// MARK: - batch

/// The order in which a batch is freed.
protocol FreeOrder { static var name: String { get }; static var isRandom: Bool { get } }
enum LIFO: FreeOrder { static var name: String { "lifo" }; static var isRandom: Bool { false } }
enum FIFO: FreeOrder { static var name: String { "fifo" }; static var isRandom: Bool { false } }
enum RandomOrder: FreeOrder { static var name: String { "random" }; static var isRandom: Bool { true } }

/// The batch length N.
protocol BatchLength { static var full: Int { get }; static var test: Int { get } }
enum N100: BatchLength { static var full: Int { 100 }; static var test: Int { 100 } }
enum N1000: BatchLength { static var full: Int { 1000 }; static var test: Int { 1000 } }
enum N1M: BatchLength { static var full: Int { 1 << 20 }; static var test: Int { 1000 } }

/// Allocate N objects, then free all N in the order O; repeated. Random orders are permutations
/// drawn at set-up (up to 64 distinct ones, cycled), so the allocator's free lists do not settle
/// into one pattern and no random number is drawn in the timed loop.
struct BatchWorkload<O: FreeOrder, L: BatchLength>: Workload {
    let size: Int
    let n: Int
    let batches: Int
    let slots: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    let orders: Permutations?

    init(_ c: WorkloadContext) {
        size = c.size
        n = c.scale == .test ? L.test : L.full
        let ops: Int
        if L.full >= 1 << 20 {
            // A random free order over 64 MiB misses the cache on every free (glibc: ~280 ns/op
            // here), so random-1m does one batch even in the full suite.
            ops = c.scale.pick(full: (O.isRandom ? 1 : 3) * n, quick: n, test: 2 * n, count: n)
        } else {
            ops = c.scale.pick(full: 6_000_000, quick: 600_000, test: 2000, count: 200_000)
        }
        batches = max(1, ops / n)
        slots = .allocate(capacity: n)
        slots.initialize(repeating: nil, count: n)
        orders = O.isRandom ? Permutations(n: n, count: min(batches, 64), seed: 0x5EED_0000 ^ UInt64(n)) : nil
    }

    func tearDown() {
        slots.deallocate()
        orders?.deallocate()
    }

    func repetition<A: FixedSizeAllocator>(_ a: A) throws -> Measured {
        let t0 = measuredRegionBegins()
        for b in 0..<batches {
            batchOnce(a, permutation: orders?.permutation(b))
        }
        let t1 = measuredRegionEnds()
        return Measured(ops: n * batches, seconds: seconds(from: t0, to: t1), peakLiveObjects: n)
    }

    @inline(__always)
    func batchOnce<A: FixedSizeAllocator>(_ a: A, permutation: UnsafeMutablePointer<UInt32>?) {
        let slots = self.slots, n = self.n, size = self.size
        var i = 0
        while i < n {
            let p = a.allocate()
            touch(p, size: size, stamp: UInt64(truncatingIfNeeded: i))
            slots[i] = p
            i &+= 1
        }
        callocbench_black_hole(slots)
        if O.self == LIFO.self {
            var j = n
            while j > 0 {
                j &-= 1
                a.free(slots[j].unsafelyUnwrapped)
            }
        } else if O.self == FIFO.self {
            var j = 0
            while j < n {
                a.free(slots[j].unsafelyUnwrapped)
                j &+= 1
            }
        } else {
            let perm = permutation.unsafelyUnwrapped
            var j = 0
            while j < n {
                a.free(slots[Int(perm[j])].unsafelyUnwrapped)
                j &+= 1
            }
        }
    }
}

// MARK: - thrash

/// Bonwick's 2-alloc/2-free thrash. With a magazine of M rounds, a CPU whose loaded magazine sits
/// at a boundary (0 or M rounds) would cross it on every op if it had one magazine; the previous
/// magazine is what prevents it. The boundary depends on the allocator's state, so the workload
/// sweeps it: for each depth d in 0..<256 it holds d extra objects live, runs T rounds of
/// (alloc a, alloc b, free a, free b), then frees the d objects. Some depth lands on the
/// boundary for any magazine size up to 256.
struct ThrashWorkload: Workload {
    static let depths = 256
    let size: Int
    let rounds: Int
    let held: UnsafeMutablePointer<UnsafeMutableRawPointer?>

    init(_ c: WorkloadContext) {
        size = c.size
        rounds = c.scale.pick(full: 8192, quick: 819, test: 2, count: 400)
        held = .allocate(capacity: Self.depths)
        held.initialize(repeating: nil, count: Self.depths)
    }

    func tearDown() { held.deallocate() }

    /// Objects per repetition: 2 per thrash round at every depth, plus the depth objects.
    var ops: Int { Self.depths * 2 * rounds + Self.depths * (Self.depths - 1) / 2 }

    func repetition<A: FixedSizeAllocator>(_ a: A) throws -> Measured {
        let t0 = measuredRegionBegins()
        for d in 0..<Self.depths {
            thrashAtDepth(a, depth: d)
        }
        let t1 = measuredRegionEnds()
        return Measured(ops: ops, seconds: seconds(from: t0, to: t1), peakLiveObjects: Self.depths - 1 + 2)
    }

    @inline(__always)
    func thrashAtDepth<A: FixedSizeAllocator>(_ a: A, depth: Int) {
        let held = self.held, size = self.size
        for i in 0..<depth {
            let p = a.allocate()
            touch(p, size: size, stamp: UInt64(i))
            held[i] = p
        }
        var r = 0
        while r < rounds {
            let x = a.allocate()
            touch(x, size: size, stamp: UInt64(truncatingIfNeeded: r))
            let y = a.allocate()
            touch(y, size: size, stamp: UInt64(truncatingIfNeeded: r))
            callocbench_black_hole(x)
            callocbench_black_hole(y)
            a.free(x)
            a.free(y)
            r &+= 1
        }
        callocbench_black_hole(held)
        var i = depth
        while i > 0 {
            i -= 1
            a.free(held[i].unsafelyUnwrapped)
        }
    }
}

// MARK: - steady-random

/// K live objects; each op frees a random one and allocates its replacement. The PRNG runs in the
/// loop (SplitMix64: a few cycles, the same for every allocator). The prefill and the final
/// frees are outside the timed region and not counted in ops (`untimedObjects`).
struct SteadyRandomWorkload: Workload {
    let size: Int
    let k: Int
    let ops: Int
    let samplingOps: Int
    let slots: UnsafeMutablePointer<UnsafeMutableRawPointer?>

    init(_ c: WorkloadContext) {
        size = c.size
        k = c.scale == .test ? 100 : 10_000
        ops = c.scale.pick(full: 3_000_000, quick: 300_000, test: 2000, count: 200_000)
        samplingOps = c.scale.pick(full: 1_000_000, quick: 100_000, test: 640, count: 640)
        slots = .allocate(capacity: k)
        slots.initialize(repeating: nil, count: k)
    }

    func tearDown() { slots.deallocate() }

    private func fill<A: FixedSizeAllocator>(_ a: A) {
        for i in 0..<k {
            let p = a.allocate()
            touch(p, size: size, stamp: UInt64(i))
            slots[i] = p
        }
    }

    private func empty<A: FixedSizeAllocator>(_ a: A) {
        callocbench_black_hole(slots)
        for i in 0..<k { a.free(slots[i].unsafelyUnwrapped) }
    }

    @inline(__always)
    private func replace<A: FixedSizeAllocator>(_ a: A, count: Int, rng: inout SplitMix64) {
        let slots = self.slots, k = self.k, size = self.size
        var i = 0
        while i < count {
            replaceRandomSlot(a, slots: slots, count: k, rng: &rng, size: size, stamp: UInt64(truncatingIfNeeded: i))
            i &+= 1
        }
    }

    func repetition<A: FixedSizeAllocator>(_ a: A) throws -> Measured {
        fill(a)
        var rng = SplitMix64(seed: 0x57EA_D7)
        let t0 = measuredRegionBegins()
        replace(a, count: ops, rng: &rng)
        let t1 = measuredRegionEnds()
        empty(a)
        return Measured(ops: ops, seconds: seconds(from: t0, to: t1), peakLiveObjects: k, untimedObjects: k)
    }

    var latencySampleCapacity: Int { samplingOps / latencyStride + 1 }

    func sampleLatency<A: FixedSizeAllocator>(_ a: A, into samples: inout LatencySamples) -> Int {
        fill(a)
        var rng = SplitMix64(seed: 0x5A_3B1E)
        let group = samples.groupOps
        var done = 0
        while done + latencyStride <= samplingOps {
            let t0 = monotonicNanoseconds()
            replace(a, count: group, rng: &rng)
            let t1 = monotonicNanoseconds()
            samples.record(start: t0, end: t1)
            replace(a, count: latencyStride - group, rng: &rng)
            done += latencyStride
        }
        empty(a)
        return done + k
    }
}

// MARK: - sawtooth

/// Fill to N objects, drain to 0 (oldest first), then ask the allocator to give its free memory
/// back (`releaseFreeMemory()`: its own call, MallocRelease.swift), `cycles` times. RSS is read
/// into the series every N/16 ops and just after each release call, with the allocator calls made
/// so far, so that every allocator's series lines up on the same points of the workload. The
/// release calls are inside the measured region (a sawtooth that returns memory pays for the call
/// and for faulting the pages in again on the next fill), and so are the statm reads (about 35
/// per fill or drain, well under 1% of it). The RSS after is the one read after the last release.
///
/// Version 2: the release call after every drain, for every allocator. Version 1 made one, after
/// the last drain and outside the measured region, and only the slab had one (shrink()): the
/// peers' repetitions started with the memory the warm-up left them and their lines stayed flat.
struct SawtoothWorkload: Workload {
    static let cycles = 4
    let size: Int
    let n: Int
    let slots: UnsafeMutablePointer<UnsafeMutableRawPointer?>

    init(_ c: WorkloadContext) {
        size = c.size
        let bytes = c.scale.pick(full: 16 << 20, quick: 16 << 20 / 10, test: 0, count: 16 << 20 / 10)
        n = c.scale == .test ? 500 : max(1000, bytes / c.size)
        slots = .allocate(capacity: n)
        slots.initialize(repeating: nil, count: n)
    }

    func tearDown() { slots.deallocate() }

    func repetition<A: FixedSizeAllocator>(_ a: A) throws -> Measured {
        let step = max(1, n / 16)
        var series: [RSSPoint] = []
        series.reserveCapacity(Self.cycles * (2 * (n / step + 2) + 1) + 1)
        let slots = self.slots, n = self.n, size = self.size
        let t0 = measuredRegionBegins()
        @inline(__always) func sample(live: Int, operations: Int, afterRelease: Bool = false) {
            series.append(RSSPoint(seconds: seconds(from: t0, to: monotonicNanoseconds()),
                                   rssBytes: ProcessMemory.currentRSS(), liveBytes: live * size,
                                   operations: operations, afterRelease: afterRelease ? true : nil))
        }
        sample(live: 0, operations: 0)
        for cycle in 0..<Self.cycles {
            let base = cycle * 2 * n
            var i = 0
            while i < n {
                let end = min(n, i + step)
                while i < end {
                    let p = a.allocate()
                    touch(p, size: size, stamp: UInt64(truncatingIfNeeded: i))
                    slots[i] = p
                    i &+= 1
                }
                sample(live: i, operations: base + i)
            }
            callocbench_black_hole(slots)
            i = 0
            while i < n {
                let end = min(n, i + step)
                while i < end {
                    a.free(slots[i].unsafelyUnwrapped)
                    i &+= 1
                }
                sample(live: n - i, operations: base + n + i)
            }
            a.releaseFreeMemory()
            sample(live: 0, operations: base + 2 * n, afterRelease: true)
        }
        let t1 = measuredRegionEnds()
        return Measured(ops: Self.cycles * n, seconds: seconds(from: t0, to: t1), peakLiveObjects: n,
                        rssAfterBytes: series.last?.rssBytes, rssSeries: series)
    }
}

// MARK: - ctor-256

/// The constructor-heavy object (Bonwick 1994, section 3: object caching). 256 bytes:
///
///   +0    magic     CtorObject.magic
///   +8    refcount  0 when constructed; the workload sets it to 1 while it uses the object
///   +16   buffer    232 bytes, zero when constructed; the workload writes its last word in use
///   +248  checksum  magic ^ size ^ buffer length: read to verify the object was constructed
///
/// A slab cache runs the constructor once per object when the slab is created and hands out
/// constructed objects; malloc'd objects are constructed after every malloc. Before freeing, the
/// workload checks the header and checksum and returns the object to its constructed state
/// (refcount 0, buffer word 0), which is the contract of an object cache.
enum CtorObject {
    static let size = 256
    static let magic: UInt64 = 0x5AB0_C7E0_0B1E_C700
    static let bufferOffset = 16
    static let bufferLength = 232
    static let checksumOffset = 248
    static let checksum: UInt64 = magic ^ UInt64(size) ^ UInt64(bufferLength)

    @inline(__always)
    static func construct(_ p: UnsafeMutableRawPointer) {
        p.storeBytes(of: magic, as: UInt64.self)
        p.storeBytes(of: 0, toByteOffset: 8, as: UInt64.self)
        memset(p + bufferOffset, 0, bufferLength)
        p.storeBytes(of: checksum, toByteOffset: checksumOffset, as: UInt64.self)
    }

    /// The object is in its constructed state (header, refcount, checksum; the buffer's last
    /// word, the one the workload writes).
    @inline(__always)
    static func isConstructed(_ p: UnsafeMutableRawPointer) -> Bool {
        p.load(as: UInt64.self) == magic
            && p.load(fromByteOffset: 8, as: UInt64.self) == 0
            && p.load(fromByteOffset: checksumOffset - 8, as: UInt64.self) == 0
            && p.load(fromByteOffset: checksumOffset, as: UInt64.self) == checksum
    }
}

struct Ctor256Workload: Workload {
    static let group = 32
    let ops: Int
    let slots: UnsafeMutablePointer<UnsafeMutableRawPointer?>

    init(_ c: WorkloadContext) {
        precondition(c.size == CtorObject.size, "ctor-256 runs with 256-byte objects")
        ops = c.scale.pick(full: 3_000_000, quick: 300_000, test: 2000, count: 200_000) / Self.group * Self.group
        slots = .allocate(capacity: Self.group)
        slots.initialize(repeating: nil, count: Self.group)
    }

    func tearDown() { slots.deallocate() }

    func repetition<A: FixedSizeAllocator>(_ a: A) throws -> Measured {
        let t0 = measuredRegionBegins()
        let bad = ctorLoop(a, groups: ops / Self.group)
        let t1 = measuredRegionEnds()
        guard bad == 0 else {
            throw WorkloadFailure(description: "ctor-256: \(bad) of \(ops) objects were not in their constructed state")
        }
        return Measured(ops: ops, seconds: seconds(from: t0, to: t1), peakLiveObjects: Self.group)
    }

    /// Returns the number of objects found not constructed (0 when all is well).
    @inline(__always)
    func ctorLoop<A: FixedSizeAllocator>(_ a: A, groups: Int) -> Int {
        let slots = self.slots
        var bad = 0
        for g in 0..<groups {
            for i in 0..<Self.group {
                let p = a.allocate()
                if !a.constructsObjects { CtorObject.construct(p) }
                if !CtorObject.isConstructed(p) { bad &+= 1 }
                // In use: a reference taken, the buffer written.
                p.storeBytes(of: 1, toByteOffset: 8, as: UInt64.self)
                p.storeBytes(of: UInt64(truncatingIfNeeded: g), toByteOffset: CtorObject.checksumOffset - 8, as: UInt64.self)
                slots[i] = p
            }
            callocbench_black_hole(slots)
            for i in 0..<Self.group {
                let p = slots[i].unsafelyUnwrapped
                // Back to the constructed state before the free.
                p.storeBytes(of: 0, toByteOffset: 8, as: UInt64.self)
                p.storeBytes(of: 0, toByteOffset: CtorObject.checksumOffset - 8, as: UInt64.self)
                if p.load(as: UInt64.self) != CtorObject.magic { bad &+= 1 }
                a.free(p)
            }
        }
        return bad
    }
}
