// Concurrent stress in the style of mimalloc's test-stress: more threads than cores, random
// allocation and free, objects handed between threads through a shared array of slots by atomic
// exchange, every object stamped (owner, sequence, checksum over the whole object) and checked
// when freed, every live object in a LiveSet (so none is handed out twice), and the counts
// balanced after shrink(). Run here in the process's own CPU-layer mode (rseq on this machine)
// and, through a child process with rseq disabled, in fallback mode.
//
// Scale: SLAB_STRESS_SCALE multiplies the iterations (default 1: a few seconds in debug).
// SLAB_EXPECT_MODE (set by the parent for its children) names the mode the cache must be in.

import CSlab
import Harness
import Slab
import TestSupport
import XCTest

/// What one stress run shares between its threads.
final class StressRun: @unchecked Sendable {
    let cache: SlabCache
    let size: Int
    let slots: UnsafeMutablePointer<UInt64>
    let slotCount: Int
    let live = LiveSet()
    let problems = ProblemLog()
    let allocations = Counter()
    let frees = Counter()
    let handoffs = Counter()

    init(cache: SlabCache, slotCount: Int) {
        self.cache = cache
        size = cache.objectSize
        self.slotCount = slotCount
        slots = .allocate(capacity: slotCount)
        slots.initialize(repeating: 0, count: slotCount)
    }

    deinit { slots.deallocate() }

    func allocate(owner: Int, sequence: UInt64) -> UnsafeMutableRawPointer? {
        guard let p = cache.allocate() else {
            problems.add("allocation returned nil")
            return nil
        }
        allocations.add()
        if !live.insert(p) { problems.add("object \(p) handed out while still live (owner \(owner))") }
        Stamp.write(p, size: size, owner: owner, sequence: sequence)
        return p
    }

    func free(_ p: UnsafeMutableRawPointer) {
        if let damage = Stamp.check(p, size: size) { problems.add("stamp damaged: \(damage)") }
        if !live.remove(p) { problems.add("object \(p) freed but not live (lost or freed twice)") }
        frees.add()
        cache.free(p)
    }

    /// One worker: random allocation, local free in random order, hand-off through the slots,
    /// and now and then a burst larger than two magazines (to drive the depot and the slab layer).
    func work(thread: Int, iterations: Int) {
        var rng = SplitMix64(seed: UInt64(thread) &* 0x1234_5678_9ABC_DEF1 &+ 17)
        var mine: [UnsafeMutableRawPointer] = []
        mine.reserveCapacity(600)
        var sequence: UInt64 = 0
        for _ in 0..<iterations {
            let r = rng.next() % 1000
            sequence &+= 1
            switch r {
            case 0..<400:
                if let p = allocate(owner: thread, sequence: sequence) { mine.append(p) }
                if mine.count > 400 { free(mine.swapRemoveRandom(&rng)) }
            case 400..<700:
                if !mine.isEmpty { free(mine.swapRemoveRandom(&rng)) }
            case 700..<995:
                // Hand an object to whoever exchanges this slot next; free what was there.
                let p = mine.isEmpty ? allocate(owner: thread, sequence: sequence) : mine.swapRemoveRandom(&rng)
                guard let p else { break }
                let slot = Int(rng.next() % UInt64(slotCount))
                // acq_rel: our stamp is published to the next taker; the previous holder's stamp
                // is visible to us.
                let old = cslab_exchange_acq_rel(slots + slot, UInt64(UInt(bitPattern: p)))
                handoffs.add()
                if old != 0 { free(UnsafeMutableRawPointer(bitPattern: UInt(old))!) }
            default:
                // A burst: more than two magazines' worth, freed in FIFO order.
                let n = 2 * max(cache.magazineCapacity, 16) + Int(rng.next() % 64)
                var burst: [UnsafeMutableRawPointer] = []
                burst.reserveCapacity(n)
                for _ in 0..<n { if let p = allocate(owner: thread, sequence: sequence) { burst.append(p) } }
                burst.forEach(free)
            }
        }
        mine.forEach(free)
    }

    /// Runs `workers` threads of `work` beside one more that calls `shrinker(pass)` (pass 0, 1,
    /// ...) until every worker has finished; returns how many passes the shrinker made.
    func workWhileShrinking(workers: Int, iterations: Int, shrinker: @escaping @Sendable (Int) -> Void) -> Int {
        let finished = Counter()
        let passes = Counter()
        runThreads(workers + 1) { t in
            if t == workers {
                while finished.value < workers {
                    shrinker(passes.value)
                    passes.add()
                }
            } else {
                self.work(thread: t, iterations: iterations)
                finished.add()
            }
        }
        return passes.value
    }

    /// Frees whatever is left in the slots (call after every worker has stopped).
    func drainSlots() {
        for i in 0..<slotCount {
            let old = cslab_exchange_acq_rel(slots + i, 0)
            if old != 0 { free(UnsafeMutableRawPointer(bitPattern: UInt(old))!) }
        }
    }
}

extension Array {
    mutating func swapRemoveRandom(_ rng: inout SplitMix64) -> Element {
        let i = Int(rng.next() % UInt64(count))
        swapAt(i, count - 1)
        return removeLast()
    }
}

final class StressTests: XCTestCase {
    static var threads: Int { 8 }
    static var iterations: Int { scaled(20_000) }

    /// When a parent runs us in a child, the mode it expects (rseq/fallback).
    func checkExpectedMode(_ cache: SlabCache) {
        if let expected = ProcessInfo.processInfo.environment["SLAB_EXPECT_MODE"] {
            XCTAssertEqual(cache.mode.rawValue, expected, "the child must run in the mode its parent asked for")
        }
    }

    func checkBalanced(_ run: StressRun, file: StaticString = #filePath, line: UInt = #line) {
        let cache = run.cache
        XCTAssertEqual(run.problems.all, [], file: file, line: line)
        XCTAssertEqual(run.allocations.value, run.frees.value, "every object allocated was freed once", file: file, line: line)
        XCTAssertEqual(run.live.count, 0, "no object lost", file: file, line: line)
        let before = cache.statistics
        XCTAssertEqual(before.liveObjects, 0, "statistics: no live object before shrink\n\(SlabInfo.report(before))", file: file, line: line)
        cache.shrink()
        let s = cache.statistics
        let report = SlabInfo.report(s)
        XCTAssertEqual(s.activeObjects, 0, "after shrink every object is back in a slab\n\(report)", file: file, line: line)
        XCTAssertEqual(s.cpuCachedObjects, 0, "after shrink no round is left in a CPU's magazines\n\(report)", file: file, line: line)
        XCTAssertEqual(s.depotRounds, 0, "after shrink no round is left in the depot\n\(report)", file: file, line: line)
        XCTAssertEqual(s.totalSlabs, 0, "after shrink no slab is left\n\(report)", file: file, line: line)
        XCTAssertEqual(s.slabsCreated, s.slabsReleased, "every slab created was released\n\(report)", file: file, line: line)
        XCTAssertEqual(cache.checkInvariants(), [], file: file, line: line)
    }

    func test_stress_handoffBetweenThreads_noObjectLostOrDuplicated() throws {
        // 20 B (M = 128, many objects per slab) and 264 B (M = 32: more depot and slab traffic),
        // and the slab layer alone for comparison.
        for (size, flags) in [(20, SlabFlags()), (264, SlabFlags()), (40, SlabFlags.noCPUCache)] {
            let cache = try SlabCache(name: uniqueCacheName("stress\(size)"), size: size, flags: flags)
            if flags.isEmpty { checkExpectedMode(cache) }
            let run = StressRun(cache: cache, slotCount: 1024)
            let iterations = Self.iterations
            runThreads(Self.threads) { t in run.work(thread: t, iterations: iterations) }
            run.drainSlots()
            XCTAssertGreaterThan(run.handoffs.value, Self.threads * iterations / 10, "the hand-off path ran")
            let s = cache.statistics
            print("stress \(cache.name) mode \(cache.mode.rawValue): \(run.allocations.value) allocations, \(run.handoffs.value) hand-offs, fast \(s.fastAllocations)/\(s.fastFrees), depot taken \(s.depotFullTaken), fills \(s.slabFills), bypass \(s.bypassAllocations)/\(s.bypassFrees), contention \(s.contention)")
            if flags.isEmpty && cache.mode != .none {
                XCTAssertGreaterThan(s.fastAllocations, 0, "the per-CPU fast path was used")
            }
            checkBalanced(run)
            try cache.destroy()
        }
    }

    func test_stress_shrinkAndReapWhileOtherThreadsAllocateAndFree() throws {
        for size in [24, 200] {
            let cache = try SlabCache(name: uniqueCacheName("shrinkrace\(size)"), size: size)
            checkExpectedMode(cache)
            let run = StressRun(cache: cache, slotCount: 512)
            // The shrinker: drain every CPU and the depot, release slabs, reap, again.
            let shrinks = run.workWhileShrinking(workers: Self.threads - 1, iterations: Self.iterations) { pass in
                cache.shrink()
                if (pass + 1) % 4 == 0 { cache.reap() }
                _ = cache.statistics
                sched_yield()
            }
            run.drainSlots()
            print("shrink race \(cache.name) mode \(cache.mode.rawValue): \(shrinks) shrinks during \(run.allocations.value) allocations")
            XCTAssertGreaterThan(shrinks, 1)
            checkBalanced(run)
            try cache.destroy()
        }
    }

    /// Drains against the fast paths at full speed: two threads allocate and free a few objects
    /// in a tight loop, nothing else between, while a third shrinks the cache over and over, so a
    /// drain often stops a CPU (or, in the fallback mode, an owner's slot) in the middle of an
    /// inline pop or push. Every allocation claims its object by atomic exchange of its first
    /// word, which the constructor zeroes and every holder zeroes again before its free (a cache
    /// with a constructor keeps the free-list link out of the object), so an object handed out
    /// twice at once is seen; the counts must balance at the end.
    func test_stress_drainsAgainstTightFastPaths_noObjectLostOrDuplicated() throws {
        let cache = try SlabCache(name: uniqueCacheName("draintight"), size: 32,
                                  constructor: { $0.storeBytes(of: 0, as: UInt64.self) })
        checkExpectedMode(cache)
        let problems = ProblemLog()
        let allocations = Counter()
        let frees = Counter()
        let finished = Counter()
        let shrinks = Counter()
        let rounds = scaled(300_000)
        runThreads(3) { t in
            if t == 2 {
                while finished.value < 2 {
                    cache.shrink()
                    shrinks.add()
                }
                return
            }
            var held: [UnsafeMutableRawPointer] = []
            held.reserveCapacity(4)
            let tag = UInt64(t + 1)
            for i in 0..<rounds {
                for _ in 0..<(1 + i % 3) {
                    guard let p = cache.allocate() else { problems.add("allocation returned nil"); continue }
                    let word = p.assumingMemoryBound(to: UInt64.self)
                    let other = cslab_exchange_acq_rel(word, tag)
                    if other != 0 { problems.add("object \(p) handed to thread \(t) while thread \(other - 1) held it") }
                    held.append(p)
                }
                allocations.add(held.count)
                for p in held {
                    cslab_store_release(p.assumingMemoryBound(to: UInt64.self), 0)
                    cache.free(p)
                }
                frees.add(held.count)
                held.removeAll(keepingCapacity: true)
            }
            finished.add()
        }
        print("drain race \(cache.name) mode \(cache.mode.rawValue): \(shrinks.value) shrinks during \(allocations.value) allocations")
        XCTAssertEqual(problems.all, [])
        XCTAssertGreaterThan(shrinks.value, 10)
        XCTAssertEqual(allocations.value, frees.value)
        cache.shrink()
        let s = cache.statistics
        XCTAssertEqual(s.activeObjects, 0, "every object is back in a slab (none lost in a magazine)\n\(SlabInfo.report(s))")
        XCTAssertEqual(s.totalSlabs, 0, SlabInfo.report(s))
        XCTAssertEqual(cache.checkInvariants(), [])
        try cache.destroy()
    }

    /// Regression (fixed in 6392df0): a slab grown while another thread refilled from the partial
    /// list stayed on the partial list with nothing in use, and shrink() never released it.
    func test_shrink_afterConcurrentGrowth_releasesEverySlab() throws {
        var leftovers: [String] = []
        for round in 0..<scaled(10) {
            let cache = try SlabCache(name: uniqueCacheName("growrace"), size: 64, flags: .noCPUCache)
            let held = HeldObjects()
            runThreads(8) { _ in
                var mine: [UnsafeMutableRawPointer] = []
                mine.reserveCapacity(3000)
                for _ in 0..<3000 { mine.append(cache.allocate()!) }
                held.add(mine)
            }
            let grown = cache.statistics
            held.all.forEach(cache.free)
            cache.shrink()
            let s = cache.statistics
            XCTAssertEqual(s.activeObjects, 0)
            if s.totalSlabs != 0 {
                leftovers.append("round \(round): \(grown.slabsCreated) slabs created, \(grown.totalObjects - grown.activeObjects) objects never handed out; after free and shrink \(s.totalSlabs) slabs left (\(s.activeSlabs) on the partial/full lists, \(s.emptySlabs) empty), activeObjects \(s.activeObjects), checkInvariants \(cache.checkInvariants())")
            }
            try cache.destroy()
        }
        XCTAssertEqual(leftovers, [], "shrink() left slabs behind after every object was freed")
    }

    // MARK: The same tests in fallback mode, in a child process (the mode is chosen at start-up)

    func runInFallbackChild(_ test: String, environment: [String: String]) throws {
        var env = environment
        env["SLAB_EXPECT_MODE"] = "fallback"
        let result = try ChildProcess.runPassingTest("SlabTests.StressTests/\(test)", environment: env)
        XCTAssertTrue((result.stdoutText + result.stderrText).contains("mode fallback"),
                      "the child's cache ran in fallback mode:\n\(result)")
    }

    func test_stress_handoff_inFallbackMode_rseqDisabledByGlibcTunable() throws {
        try runInFallbackChild("test_stress_handoffBetweenThreads_noObjectLostOrDuplicated",
                               environment: ["GLIBC_TUNABLES": "glibc.pthread.rseq=0"])
    }

    func test_stress_shrinkRace_inFallbackMode_rseqDisabledByGlibcTunable() throws {
        try runInFallbackChild("test_stress_shrinkAndReapWhileOtherThreadsAllocateAndFree",
                               environment: ["GLIBC_TUNABLES": "glibc.pthread.rseq=0"])
    }

    func test_stress_drainsAgainstTightFastPaths_inFallbackMode() throws {
        try runInFallbackChild("test_stress_drainsAgainstTightFastPaths_noObjectLostOrDuplicated",
                               environment: ["SLAB_CPU_LAYER": "fallback"])
    }

    func test_stress_handoff_inFallbackMode_forcedBySlabCPULayer() throws {
        try runInFallbackChild("test_stress_handoffBetweenThreads_noObjectLostOrDuplicated",
                               environment: ["SLAB_CPU_LAYER": "fallback"])
    }
}
