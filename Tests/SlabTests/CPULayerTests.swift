// The per-CPU layer on its own terms: the packed state word (every field round-trips, a pop and a
// push are the word minus and plus one step), the ladder's invariants after real traffic in both modes
// (every CPU holds two distinct magazines, the previous one empty or full, every magazine made is
// in exactly one place), the checker catching planted faults, and `mode` telling the truth when
// the magazine region cannot be mapped.

import CSlab
@testable import Slab
import Harness
import TestSupport
import XCTest
import Dispatch
import Foundation

/// Per-thread values a test's threads report, under a lock.
private final class HeldTags: @unchecked Sendable {
    private var values: [UInt64]
    private let lock = NSLock()
    init(count: Int) { values = Array(repeating: 0, count: count) }
    func set(_ i: Int, _ v: UInt64) { lock.lock(); values[i] = v; lock.unlock() }
    func get(_ i: Int) -> UInt64 { lock.lock(); defer { lock.unlock() }; return values[i] }
}

final class CPULayerTests: XCTestCase {
    // MARK: The state word

    func test_state_everyFieldRoundTrips_atItsExtremes() {
        let handles: [MagazineHandle] = [0, 1, 8, 0x12_3456, CPUState.handleMask - UInt64(CPUState.maxRounds)]
        let counts = [0, 1, 127, CPUState.maxRounds]
        for loaded in handles {
            for previous in handles + [CPUState.handleMask] {
                for lr in counts {
                    for pr in counts {
                        let s = CPUState(loaded: loaded, loadedRounds: lr, previous: previous, previousRounds: pr)
                        XCTAssertEqual([s.loaded, s.previous], [loaded, previous])
                        XCTAssertEqual([s.loadedRounds, s.previousRounds], [lr, pr])
                        XCTAssertEqual(s.loadedTop, loaded + UInt64(lr))
                    }
                }
            }
        }
    }

    func test_state_layout_isTheOneTheAssemblyReads() {
        // The rseq sections test the loaded count as the low byte and take the top round's index
        // as the low 32 bits shifted right by 8; CSlab.h's static assertions tie these to the
        // constants Swift uses.
        let s = CPUState(loaded: 0xABCDEF - 0x12, loadedRounds: 0x12, previous: 0x345678, previousRounds: 0x9A)
        XCTAssertEqual(s.word & 0xFF, 0x12)
        XCTAssertEqual(UInt32(truncatingIfNeeded: s.word) >> 8, 0xABCDEF)
        XCTAssertEqual(s.word, 0x345678_9A_ABCDEF_12)
        XCTAssertEqual(CPUState.step, 0x101)
        XCTAssertEqual(CPUState.maxRounds, 255)
        XCTAssertEqual(MagazineRegion.maxCapacity, CPUState.maxRounds)
    }

    func test_state_popAndPush_areTheWordMinusAndPlusOneStep_andTouchOnlyTheLoadedMagazine() {
        let loaded = CPUState.handleMask - UInt64(CPUState.maxRounds)
        for lr in 1..<CPUState.maxRounds {
            let s = CPUState(loaded: loaded, loadedRounds: lr, previous: 0xFFFFFF, previousRounds: 255)
            XCTAssertEqual(s.popped.word, s.word - CPUState.step)
            XCTAssertEqual(s.pushed.word, s.word + CPUState.step)
            XCTAssertEqual(s.popped, CPUState(loaded: loaded, loadedRounds: lr - 1, previous: 0xFFFFFF, previousRounds: 255))
            XCTAssertEqual(s.pushed, CPUState(loaded: loaded, loadedRounds: lr + 1, previous: 0xFFFFFF, previousRounds: 255))
            XCTAssertEqual(s.popped.pushed, s)
        }
    }

    func test_state_theRegionFitsTheHandleBits_soATopNeverCarries() {
        // A magazine's rounds lie inside the region, so handle + rounds < 2^24 always; a state
        // that broke it would carry into the previous rounds.
        XCTAssertEqual(MagazineRegion.regionBytes / MagazineRegion.unit, Int(CPUState.handleMask) + 1)
    }

    func test_state_exchangeSwapsMagazinesWithTheirCounts_andEmptyKeepsTheMagazines() {
        let s = CPUState(loaded: 7, loadedRounds: 3, previous: 9, previousRounds: 255)
        XCTAssertEqual(s.exchanged, CPUState(loaded: 9, loadedRounds: 255, previous: 7, previousRounds: 3))
        XCTAssertEqual(s.exchanged.exchanged, s)
        XCTAssertEqual(s.emptied, CPUState(loaded: 7, loadedRounds: 0, previous: 9, previousRounds: 0))
    }

    // MARK: The ladder's invariants after traffic

    /// Random allocations and frees from several threads, with sizes that give M = 255, 128, 64.
    func exerciseAndCheck(mode expected: CPULayerMode?) throws {
        for size in [24, 200, 1000] {
            let cache = try SlabCache(name: uniqueCacheName("inv\(size)"), size: size)
            if let expected { XCTAssertEqual(cache.mode, expected) }
            runThreads(3) { t in
                var rng = SplitMix64(seed: UInt64(t + 1) * 7919)
                var held: [UnsafeMutableRawPointer] = []
                for _ in 0..<30_000 {
                    if held.isEmpty || rng.next() % 100 < 52 {
                        if let p = cache.allocate() { held.append(p) }
                    } else {
                        held.swapAt(Int(rng.next() % UInt64(held.count)), held.count - 1)
                        cache.free(held.removeLast())
                    }
                }
                held.forEach { cache.free($0) }
            }
            XCTAssertEqual(cache.checkInvariants(), [], "size \(size), mode \(cache.mode)")
            XCTAssertEqual(cache.statistics.liveObjects, 0)
            cache.shrink()
            XCTAssertEqual(cache.checkInvariants(), [], "after shrink")
            XCTAssertEqual(cache.statistics.cpuCachedObjects, 0)
            try cache.destroy()
        }
    }

    func test_invariants_holdAfterTraffic_inThisProcessesMode() throws {
        try exerciseAndCheck(mode: nil)
    }

    func test_invariants_holdAfterTraffic_inFallbackMode() throws {
        // The mode is decided once per process: run the same test in a child with the fallback forced.
        if ChildProcess.isChild { return try exerciseAndCheck(mode: .fallback) }
        try ChildProcess.runPassingTest("SlabTests.CPULayerTests/test_invariants_holdAfterTraffic_inFallbackMode",
                                        environment: ["SLAB_CPU_LAYER": "fallback"])
    }

    func test_unknownSLAB_CPU_LAYER_isReportedOnce_andTheDefaultModeRuns() throws {
        if ChildProcess.isChild {
            // Two caches: the variable is read once per process, so the line appears once.
            let a = try SlabCache(name: uniqueCacheName("layer-a"), size: 32)
            let b = try SlabCache(name: uniqueCacheName("layer-b"), size: 32)
            XCTAssertNotEqual(a.mode, .none)
            XCTAssertFalse(SlabCache.cpuLayerReason.contains("forced"), SlabCache.cpuLayerReason)
            try a.destroy()
            try b.destroy()
            return
        }
        let result = try ChildProcess.runTest(
            "SlabTests.CPULayerTests/test_unknownSLAB_CPU_LAYER_isReportedOnce_andTheDefaultModeRuns",
            environment: ["SLAB_CPU_LAYER": "fallbak"])
        XCTAssertTrue(result.succeeded, "\(result)")
        let line = "slab: SLAB_CPU_LAYER=\"fallbak\" is not one of fallback, rseq-simulated: ignored"
        XCTAssertEqual(result.stderrText.components(separatedBy: line).count - 1, 1, "reported once\n\(result)")
    }

    // MARK: The push's bound

    /// The push compares the loaded count with M in the CPU slot, not with a value the caller
    /// passes (CSlab.h, section 2). Expected: every slot of caches whose M is 255, 128, 64, 32 and
    /// 16 holds that M; 3M + 7 frees in a row fill magazines to exactly M and no further (the
    /// full ones reach the depot with M rounds each, and no CPU's count exceeds M).
    func checkSlotCapacity() throws {
        for size in [20, 256, 1024, 4096, 8192] {
            let cache = try SlabCache(name: uniqueCacheName("cap\(size)"), size: size)
            let layer = try XCTUnwrap(cache.cpuLayer)
            let m = cache.magazineCapacity
            XCTAssertEqual(m, MagazineRegion.capacity(forObjectSize: size))
            for i in 0..<layer.slots.count {
                XCTAssertEqual(layer.slots.capacity(i).pointee, UInt64(m), "size \(size), slot \(i)")
            }
            var objects: [UnsafeMutableRawPointer] = []
            for _ in 0..<(3 * m + 7) { objects.append(try XCTUnwrap(cache.allocate())) }
            for p in objects { cache.free(p) }
            XCTAssertEqual(cache.checkInvariants(), [], "size \(size), mode \(cache.mode)")
            let s = layer.snapshot()
            XCTAssertGreaterThan(s.depotFullMagazines, 0, "size \(size): full magazines went to the depot")
            XCTAssertEqual(s.depotRounds, s.depotFullMagazines * m, "size \(size): each holds exactly M rounds")
            XCTAssertEqual(cache.statistics.liveObjects, 0)
            cache.shrink()
            try cache.destroy()
        }
    }

    func test_slotCapacity_boundsThePush_inThisProcessesMode() throws {
        try checkSlotCapacity()
    }

    func test_slotCapacity_boundsThePush_inFallbackMode() throws {
        if ChildProcess.isChild { return try checkSlotCapacity() }
        try ChildProcess.runPassingTest("SlabTests.CPULayerTests/test_slotCapacity_boundsThePush_inFallbackMode",
                                        environment: ["SLAB_CPU_LAYER": "fallback"])
    }

    /// A slot overwritten so that its M is one more than the cache's (as a stray write would
    /// leave it): the inline pushes then fill the loaded magazine one round past its end, and the
    /// first ladder that runs afterwards stops the process with a report naming the cache and the
    /// slot, where it used to go round for ever over the damaged depot links.
    func test_corruptedSlot_isReportedByTheLadder_inThisProcessesMode() throws {
        try checkCorruptedSlotReport(test: "test_corruptedSlot_isReportedByTheLadder_inThisProcessesMode", environment: [:])
    }

    func test_corruptedSlot_isReportedByTheLadder_inFallbackMode() throws {
        try checkCorruptedSlotReport(test: "test_corruptedSlot_isReportedByTheLadder_inFallbackMode",
                                     environment: ["SLAB_CPU_LAYER": "fallback"])
    }

    private func checkCorruptedSlotReport(test: String, environment: [String: String]) throws {
        let name = "corrupted-slot"
        if ChildProcess.isChild {
            let cache = try SlabCache(name: name, size: 256)
            let layer = try XCTUnwrap(cache.cpuLayer)
            let m = cache.magazineCapacity
            let objects = try (0..<(3 * m)).map { _ in try XCTUnwrap(cache.allocate()) }
            for i in 0..<layer.slots.count { layer.slots.capacity(i).pointee = UInt64(m + 1) }
            for p in objects { cache.free(p) }
            XCTFail("the ladder did not stop the process")
            return
        }
        let result = try ChildProcess.runTest("SlabTests.CPULayerTests/" + test, environment: environment)
        XCTAssertEqual(result.ending, .signaled(SIGABRT), "\(result)")
        let lines = result.stderrText.split(separator: "\n").map(String.init)
        XCTAssertTrue(lines.contains("BUG \(name): corrupted per-CPU state"), "\(result)")
        XCTAssertTrue(lines.contains { $0.contains("'s slot at 0x") && $0.contains("says M = 129 and holds magazines of")
                                       && $0.hasSuffix("this cache's magazines hold 128: something wrote over it") },
                      "\(result)")
    }

    // MARK: The fallback mode's inline fast paths

    /// Without rseq a thread's pops and pushes run inline on its own slot (CSlab.h:
    /// cslab_slot_magazine_pop/push), counted there; a slot a drainer holds is left alone, and the
    /// slab layer serves the operation.
    func test_fallbackFastPath_usesTheThreadsOwnSlot_andStepsAsideWhenItIsHeld() throws {
        if ChildProcess.isChild { return try checkFallbackFastPath() }
        try ChildProcess.runPassingTest(
            "SlabTests.CPULayerTests/test_fallbackFastPath_usesTheThreadsOwnSlot_andStepsAsideWhenItIsHeld",
            environment: ["SLAB_CPU_LAYER": "fallback"])
    }

    private func checkFallbackFastPath() throws {
        let cache = try SlabCache(name: uniqueCacheName("slotpath"), size: 64)
        XCTAssertEqual(cache.mode, .fallback)
        let layer = try XCTUnwrap(cache.cpuLayer)
        let slots = layer.slots
        XCTAssertGreaterThan(slots.own, 0, "membarrier is available here: threads get lanes")
        // An AddressSanitizer build sends every operation through the ladder (SlabCache.swift,
        // section 9), which uses the same slot the same way: the checks below hold there too.
        XCTAssertEqual(cache.fastPath.usesSlots, !cslab_asan_active())
        // The first operation gives the thread its lane (the ladder does) and fills a magazine.
        cache.free(try XCTUnwrap(cache.allocate()))
        let assigned = cslab_tls_get_slot()
        XCTAssertEqual(assigned & UInt64(CSLAB_SLOT_TAG_OWN), UInt64(CSLAB_SLOT_TAG_OWN), "the thread has a lane")
        let mine = Int(assigned >> UInt64(CSLAB_CPU_STRIDE_SHIFT))
        XCTAssertLessThan(mine, slots.own)
        let (allocs, frees) = (slots.allocHits(mine).pointee, slots.freeHits(mine).pointee)
        let contention = layer.counters[.slotContention]
        for _ in 0..<1000 { cache.free(try XCTUnwrap(cache.allocate())) }
        XCTAssertEqual(slots.allocHits(mine).pointee - allocs, 1000, "every pop on the thread's slot \(mine)")
        XCTAssertEqual(slots.freeHits(mine).pointee - frees, 1000, "every push on the thread's slot \(mine)")
        XCTAssertEqual(layer.counters[.slotContention], contention)
        XCTAssertEqual(slots.owner(mine).pointee, SlotOwner.free)
        XCTAssertEqual(slots.busy(mine).pointee, 0, "each inline operation ended")

        // Held (as a drainer holds it): neither inline path nor the ladder may touch it, and the
        // slab layer serves the thread, which keeps its lane.
        let word = slots.state(mine).pointee
        slots.owner(mine).pointee = SlotOwner.stopped
        let p = try XCTUnwrap(cache.allocate())
        cache.free(p)
        XCTAssertEqual(slots.state(mine).pointee, word, "the held slot's magazines are unchanged")
        XCTAssertEqual(slots.allocHits(mine).pointee - allocs, 1000)
        XCTAssertEqual(slots.freeHits(mine).pointee - frees, 1000)
        XCTAssertEqual(slots.busy(mine).pointee, 0, "the inline paths stepped back out")
        XCTAssertGreaterThan(layer.counters[.slotContention], contention, "served by the slab layer")
        XCTAssertEqual(cslab_tls_get_slot(), assigned, "the thread kept its lane")
        slots.owner(mine).pointee = SlotOwner.free
        XCTAssertEqual(cache.checkInvariants(), [])
        XCTAssertEqual(cache.statistics.liveObjects, 0)
        try cache.destroy()
    }

    /// More threads than lanes: the extra thread shares the shared slots through the ladder, and
    /// takes the lane a thread frees by exiting; the exiting thread's magazines stay in its slot
    /// for the next holder. A forked child keeps only its own thread's lane.
    func test_fallbackLanes_extraThreadsShare_andTakeTheLaneAThreadFreesByExiting() throws {
        if ChildProcess.isChild { return try checkLanes() }
        try ChildProcess.runPassingTest(
            "SlabTests.CPULayerTests/test_fallbackLanes_extraThreadsShare_andTakeTheLaneAThreadFreesByExiting",
            environment: ["SLAB_CPU_LAYER": "fallback"])
    }

    private func checkLanes() throws {
        let cache = try SlabCache(name: uniqueCacheName("lanes"), size: 32)
        let layer = try XCTUnwrap(cache.cpuLayer)
        let slots = layer.slots
        XCTAssertGreaterThan(slots.own, 0)
        XCTAssertGreaterThan(slots.count, slots.own)
        cache.free(try XCTUnwrap(cache.allocate()))   // this thread's lane
        let unclaimed = slots.own - Int(cslab_lanes_claimed())
        XCTAssertGreaterThanOrEqual(unclaimed, 1)
        let tags = HeldTags(count: unclaimed + 1)
        let ready = DispatchSemaphore(value: 0)
        let exits = (0..<unclaimed).map { _ in DispatchSemaphore(value: 0) }
        // Holders: one operation each (which claims a lane), then wait to be told to exit.
        let holders = (0..<unclaimed).map { k in
            ThreadGroup(count: 1) { _ in
                cache.free(cache.allocate()!)
                tags.set(k, cslab_tls_get_slot())
                ready.signal()
                exits[k].wait()
            }
        }
        for _ in 0..<unclaimed { ready.wait() }
        XCTAssertEqual(Int(cslab_lanes_claimed()), slots.own, "every lane is held")
        // A forked child has one thread: only its lane stays held (the exit status says).
        let pid = fork()
        if pid == 0 { _exit(cslab_lanes_claimed() == 1 && cslab_tls_get_slot() & 1 != 0 ? 0 : 1) }
        var status: Int32 = -1
        waitpid(pid, &status, 0)
        XCTAssertEqual(status, 0, "in a forked child every lane but the forking thread's is free")
        let sharedHits = { (slots.own..<slots.count).map { slots.allocHits($0).pointee + slots.freeHits($0).pointee }.reduce(0, +) }
        let before = sharedHits()
        // The extra thread: no lane, so a shared slot; then, after one holder exited, a lane.
        let go = DispatchSemaphore(value: 0)
        let extra = ThreadGroup(count: 1) { _ in
            for _ in 0..<10 { cache.free(cache.allocate()!) }
            tags.set(unclaimed, cslab_tls_get_slot())
            ready.signal()
            go.wait()
            cache.free(cache.allocate()!)
            tags.set(unclaimed, cslab_tls_get_slot())
        }
        ready.wait()
        let sharedTag = tags.get(unclaimed)
        XCTAssertEqual(sharedTag & 3, UInt64(CSLAB_SLOT_TAG_SHARED), "no lane was left")
        XCTAssertGreaterThanOrEqual(Int(sharedTag >> UInt64(CSLAB_CPU_STRIDE_SHIFT)), slots.own)
        XCTAssertEqual(sharedHits() - before, 20, "its ten pairs ran on a shared slot")
        for k in 0..<unclaimed { XCTAssertEqual(tags.get(k) & 3, UInt64(CSLAB_SLOT_TAG_OWN), "holder \(k) has a lane") }
        // One holder exits: its lane is free again, and the extra thread takes it.
        let freed = Int(tags.get(0) >> UInt64(CSLAB_CPU_STRIDE_SHIFT))
        let word = slots.state(freed).pointee
        exits[0].signal()
        holders[0].join()
        XCTAssertEqual(Int(cslab_lanes_claimed()), slots.own - 1, "the exiting thread gave its lane back")
        XCTAssertEqual(slots.state(freed).pointee, word, "its magazines stay in the slot")
        go.signal()
        extra.join()
        XCTAssertEqual(tags.get(unclaimed), ThreadSlot.tag(freed, own: true), "the extra thread took the freed lane")
        for k in 1..<unclaimed { exits[k].signal(); holders[k].join() }
        XCTAssertEqual(cache.checkInvariants(), [])
        XCTAssertEqual(cache.statistics.liveObjects, 0)
        _ = cache.shrink()
        XCTAssertEqual(layer.snapshot().cachedRounds, 0, "the drain emptied every slot, the exited threads' too")
        try cache.destroy()
    }

    /// A busy flag with no living holder (what a forked child inherits from a thread that was in
    /// the middle of an inline operation at the fork) does not stall a drain.
    func test_fallbackDrain_ignoresTheBusyFlagOfALaneNobodyHolds() throws {
        if ChildProcess.isChild {
            let cache = try SlabCache(name: uniqueCacheName("stalebusy"), size: 32)
            let slots = try XCTUnwrap(cache.cpuLayer).slots
            cache.free(try XCTUnwrap(cache.allocate()))   // this thread's lane
            let unheld = try XCTUnwrap((0..<slots.own).first { !cslab_lane_held(UInt32($0)) })
            slots.busy(unheld).pointee = 1
            _ = cache.shrink()   // waited for the flag forever before the drain asked who holds the lane
            XCTAssertEqual(cache.checkInvariants(), [], "the checker ignores it too")
            slots.busy(unheld).pointee = 0
            // A held lane's flag is an operation in flight: the checker reports it.
            let held = try XCTUnwrap((0..<slots.own).first { cslab_lane_held(UInt32($0)) })
            slots.busy(held).pointee = 1
            let problems = cache.checkInvariants()
            XCTAssertEqual(problems.filter { $0.contains("slot \(held)'s owner is in the middle of an operation") }.count, 1,
                           "\(problems)")
            slots.busy(held).pointee = 0
            XCTAssertEqual(cache.checkInvariants(), [])
            try cache.destroy()
            return
        }
        try ChildProcess.runPassingTest(
            "SlabTests.CPULayerTests/test_fallbackDrain_ignoresTheBusyFlagOfALaneNobodyHolds",
            environment: ["SLAB_CPU_LAYER": "fallback"], timeout: 60)
    }

    // MARK: The checker catches what it claims to

    /// The problems `checkInvariants` finds while CPU 0's state word is `plant(current state)`;
    /// the real state is put back before returning, and must check clean.
    func problems(of cache: SlabCache, withCPU0State plant: (CPUState) -> CPUState) throws -> [String] {
        let state = try XCTUnwrap(cache.cpuLayer).slots.state(0)
        let saved = state.pointee
        state.pointee = plant(CPUState(word: saved)).word
        let problems = cache.checkInvariants()
        state.pointee = saved
        XCTAssertEqual(cache.checkInvariants(), [])
        return problems
    }

    func test_checker_reportsAPreviousMagazineNeitherEmptyNorFull() throws {
        let cache = try SlabCache(name: uniqueCacheName("plant1"), size: 24)
        let problems = try problems(of: cache) {
            CPUState(loaded: $0.loaded, loadedRounds: 0, previous: $0.previous, previousRounds: 3)
        }
        XCTAssertTrue(problems.contains { $0.contains("neither empty nor full") }, "\(problems)")
    }

    func test_checker_reportsAMagazineInTwoPlaces_andOneLost() throws {
        let cache = try SlabCache(name: uniqueCacheName("plant2"), size: 24)
        // Both magazines the same: the other one is now nowhere.
        let problems = try problems(of: cache) {
            CPUState(loaded: $0.loaded, loadedRounds: 0, previous: $0.loaded, previousRounds: 0)
        }
        XCTAssertTrue(problems.contains { $0.contains("is both") }, "\(problems)")
        XCTAssertTrue(problems.contains { $0.contains("magazines made") }, "\(problems)")
        let cpu = try XCTUnwrap(cache.cpuLayer)
        // A magazine made and never placed anywhere is a leak.
        _ = try XCTUnwrap(cpu.region.make())
        XCTAssertTrue(cache.checkInvariants().contains { $0.contains("magazines made") })
    }

    func test_checker_reportsADepotCountThatDisagreesWithItsList() throws {
        let cache = try SlabCache(name: uniqueCacheName("plant3"), size: 24)
        let cpu = try XCTUnwrap(cache.cpuLayer)
        let h = try XCTUnwrap(cpu.region.make())
        cpu.depot.push(h, to: .empty)
        XCTAssertEqual(cache.checkInvariants(), [])
        let popped = try XCTUnwrap(cpu.depot.pop(.empty))
        XCTAssertEqual(popped, h)
        XCTAssertTrue(cache.checkInvariants().contains { $0.contains("magazines made") })
        cpu.depot.push(h, to: .empty)
        XCTAssertEqual(cache.checkInvariants(), [])
    }

    /// Rounds (Magazine.swift): an object as a 32-bit offset from its cache's range base, in
    /// 8-byte units. Input: objects of a typed cache and of every kmalloc class, and the range's
    /// far end. Expected: each comes back from its round unchanged; no object's round is 0 (the
    /// empty magazine's round[-1]); every range that has magazines spans at most 32 GiB, so the
    /// rounds of its last bytes still fit 32 bits; a magazine of 255 rounds takes 1,088 bytes.
    func test_rounds_roundTripEveryObject_andFitTheirRange() throws {
        let cache = try SlabCache(name: uniqueCacheName("rounds"), size: 20)
        defer { try? cache.destroy() }
        let objects = (0..<2000).map { _ in cache.allocate()! }
        let codec = cache.slabLayer.codec
        for p in objects {
            let r = codec.round(p)
            XCTAssertNotEqual(r, 0)
            XCTAssertEqual(codec.object(r), p)
        }
        for p in objects { cache.free(p) }
        let limit = 1 << Int(CSLAB_ROUND_RANGE_BITS)
        XCTAssertLessThanOrEqual(cache.slabLayer.pages.size, limit)
        let last = UnsafeMutableRawPointer(bitPattern: codec.base + UInt(limit) - 8)!
        XCTAssertEqual(codec.round(last), UInt32.max)
        XCTAssertEqual(codec.object(UInt32.max), last)
        for c in Kmalloc.sizeClasses {
            let p = try kmalloc(c.size)
            defer { kfree(p) }
            let owner = try XCTUnwrap(Kmalloc.caches.first { $0.name == c.name })
            XCTAssertLessThanOrEqual(owner.slabLayer.pages.size, limit, c.name)
            let k = owner.slabLayer.codec
            XCTAssertEqual(k.object(k.round(p)), p, c.name)
        }
        XCTAssertEqual(try XCTUnwrap(MagazineRegion(capacity: 255)).magazineBytes, 1088)
    }

    func test_region_exhausted_refusesMagazines_andKeepsItsCountExact() throws {
        let region = try XCTUnwrap(MagazineRegion(capacity: 255))
        var handles = 0
        while region.make() != nil { handles += 1 }
        let units = region.magazineBytes / MagazineRegion.unit
        XCTAssertEqual(handles, (1 << MagazineRegion.handleBits) / units - 1, "every magazine-sized slot but handle 0")
        XCTAssertEqual(region.made, handles)
        XCTAssertNil(region.make())
        XCTAssertEqual(region.made, handles, "a refused make() does not count")
    }

    func test_region_giveBack_returnsWholePagesOfSpareMagazines_andMakeReusesThemFirst() throws {
        try ResidentMemory.skipIfDistorted()
        let region = try XCTUnwrap(MagazineRegion(capacity: 255))
        let handles = (0..<2000).map { _ in region.make()! }
        // Touch every magazine as a filled one would be (2.2 MB).
        for h in handles { region.rounds(h).update(repeating: 0x10, count: 255) }
        let before = try XCTUnwrap(ResidentMemory.bytes())
        // The first 100 stay in use: the pages they share with spare ones stay resident.
        let released = region.giveBack(Array(handles.dropFirst(100)))
        let after = try XCTUnwrap(ResidentMemory.bytes())
        let spareBytes = 1900 * region.magazineBytes
        XCTAssertGreaterThan(released, spareBytes - 2 * PageSource.pageSize, "every whole page of the spare run")
        XCTAssertLessThanOrEqual(released, spareBytes)
        XCTAssertLessThan(after, before - released / 2, "the pages left the resident set")
        XCTAssertEqual(region.spareHandles.count, 1900)
        XCTAssertEqual(region.rounds(handles[0])[0], 0x10, "a magazine in use keeps its rounds")
        XCTAssertEqual(region.header(handles[1999]).pointee.top_guard, 0, "a spare magazine reads as an empty one")
        // make() takes spare magazines before moving the bump.
        let made = region.made
        let again = (0..<1900).map { _ in region.make()! }
        XCTAssertEqual(Set(again), Set(handles.dropFirst(100)))
        XCTAssertEqual(region.made, made)
        XCTAssertNotEqual(region.make(), nil)
        XCTAssertEqual(region.made, made + 1, "then the bump")
    }

    func test_shrink_givesTheDepotsEmptyMagazinesBack_andTheCacheKeepsWorking() throws {
        let cache = try SlabCache(name: uniqueCacheName("magshrink"), size: 24)
        let cpu = try XCTUnwrap(cache.cpuLayer)
        // A burst of 200,000 objects fills the depot with full magazines; freed, they drain to the
        // slabs on shrink and leave hundreds of empty magazines.
        var held = (0..<200_000).map { _ in cache.allocate()! }
        held.forEach(cache.free)
        held.removeAll()
        XCTAssertGreaterThan(cpu.region.made, 500)
        // The depot goes to the slab layer CPUCache.flushChunk magazines a lock hold (plus the
        // CPUs' own magazines, one call each).
        let full = cpu.depot.count(.full)
        let chunks = (full + CPUCache.flushChunk - 1) / CPUCache.flushChunk
        let locksBefore = cache.slabLayer.snapshot().lockAcquisitions
        cache.shrink()
        let locks = cache.slabLayer.snapshot().lockAcquisitions - locksBefore
        XCTAssertGreaterThanOrEqual(locks, chunks, "\(full) full magazines")
        XCTAssertLessThanOrEqual(locks, chunks + 2 * cpu.slots.count, "\(full) full magazines")
        XCTAssertEqual(cpu.depot.count(.empty), 0, "the depot's empty magazines went back to the region")
        XCTAssertGreaterThan(cpu.region.spareHandles.count, 500)
        XCTAssertEqual(cache.checkInvariants(), [])
        XCTAssertEqual(cache.statistics.totalSlabs, 0)
        // The cache grows again on spare magazines.
        held = (0..<200_000).map { _ in cache.allocate()! }
        var seen = Set<UnsafeMutableRawPointer>()
        for p in held { XCTAssertTrue(seen.insert(p).inserted, "\(p) handed out twice") }
        held.forEach(cache.free)
        XCTAssertEqual(cache.checkInvariants(), [])
        cache.shrink()
        XCTAssertEqual(cache.checkInvariants(), [])
        try cache.destroy()
    }

    // MARK: Stopping every CPU

    func test_destroy_refused_startsTheCPUsAgain_andAcceptedRetiresThem() throws {
        let cache = try SlabCache(name: uniqueCacheName("stop"), size: 24)
        let cpu = try XCTUnwrap(cache.cpuLayer)
        let p = try XCTUnwrap(cache.allocate())
        XCTAssertThrowsError(try cache.destroy())
        for i in 0..<cpu.slots.count { XCTAssertEqual(cpu.slots.owner(i).pointee, SlotOwner.free, "CPU \(i) started again") }
        XCTAssertEqual(cache.checkInvariants(), [])
        cache.free(p)
        try cache.destroy()
        for i in 0..<cpu.slots.count { XCTAssertEqual(cpu.slots.owner(i).pointee, SlotOwner.retired, "CPU \(i) retired") }
    }

    // MARK: mode tells the truth

    func test_mode_isNone_whenTheMagazineRegionCannotBeMapped() throws {
        PageSource.shared.refuseMagazineRegions(true)
        defer { PageSource.shared.refuseMagazineRegions(false) }
        let cache = try SlabCache(name: uniqueCacheName("noregion"), size: 24)
        XCTAssertEqual(cache.mode, .none)
        XCTAssertNil(cache.cpuLayer)
        XCTAssertEqual(cache.magazineCapacity, 0)
        XCTAssertFalse(cache.usesRseq)
        let objects = (0..<1000).map { _ in cache.allocate()! }
        XCTAssertEqual(Set(objects).count, 1000)
        objects.forEach { cache.free($0) }
        let s = cache.statistics
        XCTAssertEqual(s.mode, .none)
        XCTAssertEqual([s.activeObjects, s.cpuCachedObjects, s.fastAllocations, s.bypassAllocations], [0, 0, 0, 0])
        XCTAssertEqual(cache.checkInvariants(), [])
        try cache.destroy()
    }
}
