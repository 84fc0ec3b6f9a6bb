// CPUCache: the per-CPU layer. Each CPU (a slot of 128 bytes in `SlabCache.cpus`) holds a loaded
// and a previous magazine; the fast paths (SlabCache.allocate/free, CSlab's rseq sections) pop and
// push the loaded one, and the ladders below run when it is empty or full.
//
// 1. The state word
// -----------------
//   A CPU's whole magazine state is one 64-bit word (CPUState):
//       loaded handle (24) | previous handle (24) | previous rounds (8) | loaded rounds (8)
//   so every transition, a pop, a push, an exchange of loaded and previous, installing a magazine
//   from the depot, is a single store. Magazine memory is reached through the handles.
//
// 2. Who may change a slot (the protocol)
// ---------------------------------------
//   rseq mode. Only code running on CPU c changes slot c's state, and only as the commit store of
//   a restartable sequence that first checked `owner == 0`: the fast pop and push, and
//   `cslab_rseq_cpu_cas` for the ladders' transitions (compare the whole word, store the new one;
//   a thread that migrated or raced simply fails and re-reads). Because the word is the complete
//   truth of what the CPU holds, a state that changed and changed back is still a valid basis
//   for the transition: this compare is ABA-safe by construction.
//   Remote work (shrink, reap, destroy) takes the slot: CAS `owner` 0 -> drainer, then
//   membarrier(PRIVATE_EXPEDITED_RSEQ) on that CPU. Every sequence in flight there restarts and
//   sees the owner; every sequence that committed before the fence is visible to the drainer. The
//   drainer then owns the state word outright, empties both magazines into the slab layer and
//   releases the slot. Threads that find a slot owned go to the slab layer for that one object:
//   nobody waits.
//   fallback mode (no rseq). A thread owns a slot for the length of one operation: CAS `owner`
//   0 -> 1 (acquire), relaxed loads and stores of the state (relaxed, not plain, only because
//   `statistics` reads the word without owning the slot), store `owner` = 0 (release, pairs with
//   the next owner's acquire). A thread that finds its slot taken tries the others, then goes to
//   the slab layer; there are 4x as many slots as CPUs, so that is rare. A drainer takes slots the
//   same way and may spin (yielding) only on a slot held by a running operation, which ends.
//
// 3. Statistics
// -------------
//   Fast-path hits are counted per slot inside the rseq section, before the commit: a section
//   restarted after its increment counts twice (rare: preemption in a ten-instruction window).
//   Slow-path events are relaxed atomic counters (SlowPathCounters).

import CSlab

#if canImport(Glibc)
import Glibc
#endif

/// One CPU's magazines, packed in a word (layout in CSlab.h).
struct CPUState: Equatable {
    var word: UInt64

    static let ownerFree: UInt64 = 0
    static let ownerThread: UInt64 = 1
    static let ownerDrainer: UInt64 = 2
    static let ownerSlabOnly: UInt64 = 3

    init(word: UInt64) { self.word = word }

    init(loaded: MagazineHandle, loadedRounds: Int, previous: MagazineHandle, previousRounds: Int) {
        assert(loaded < 1 << 24 && previous < 1 << 24 && loadedRounds < 256 && previousRounds < 256)
        word = loaded << 40 | previous << 16 | UInt64(previousRounds) << 8 | UInt64(loadedRounds)
    }

    var loadedRounds: Int { Int(word & 0xFF) }
    var previousRounds: Int { Int((word >> 8) & 0xFF) }
    var previous: MagazineHandle { (word >> 16) & 0xFF_FFFF }
    var loaded: MagazineHandle { word >> 40 }

    /// Loaded and previous exchanged.
    var exchanged: CPUState {
        CPUState(loaded: previous, loadedRounds: previousRounds, previous: loaded, previousRounds: loadedRounds)
    }
    /// Same magazines, no rounds.
    var emptied: CPUState { CPUState(word: word & ~0xFFFF) }
}

/// What this process's threads can use, decided once.
struct CPULayerPlatform: Sendable {
    let usesRseq: Bool
    let rseqOffset: Int64
    let possibleCPUs: Int
    let fallbackSlots: Int
    /// Why the fallback was chosen, or "rseq".
    let reason: String
    /// rseq sections run without a kernel registration (SLAB_CPU_LAYER=rseq-simulated): nothing
    /// restarts them and no membarrier fence is available, which is sound only for a process
    /// whose one thread uses the caches.
    var simulated = false

    static let current = detect()

    private static func detect() -> CPULayerPlatform {
        let cpus = Int(cslab_possible_cpus())
        var slots = 4
        while slots < 4 * cpus { slots <<= 1 }
        let offset = cslab_rseq_offset()
        func fallback(_ why: String) -> CPULayerPlatform {
            CPULayerPlatform(usesRseq: false, rseqOffset: offset, possibleCPUs: cpus, fallbackSlots: slots, reason: why)
        }
        switch getenv("SLAB_CPU_LAYER").map({ String(cString: $0) }) {
        case "fallback":
            return fallback("forced by SLAB_CPU_LAYER=fallback")
        case "rseq-simulated":
            // For counting the rseq path's instructions under valgrind, which does not implement
            // rseq (glibc's registration fails, __rseq_size reads 0). An rseq critical section is
            // ordinary code: if this thread's area names CPU 0, it runs through to its commit, and
            // with one thread nothing can interleave with it. Refused where glibc did register
            // rseq: there the kernel owns cpu_id, and the real mode is available anyway.
            guard cslab_rseq_size() == 0 else { break }
            cslab_rseq_simulate_cpu0(offset)
            var p = CPULayerPlatform(usesRseq: true, rseqOffset: offset, possibleCPUs: cpus, fallbackSlots: slots,
                                     reason: "rseq simulated on CPU 0 (SLAB_CPU_LAYER=rseq-simulated; one thread only)")
            p.simulated = true
            return p
        default:
            break
        }
        guard cslab_rseq_size() >= 20 else {
            return fallback("rseq is not registered by glibc (GLIBC_TUNABLES=glibc.pthread.rseq=0, valgrind, or glibc < 2.35)")
        }
        let cpu = cslab_rseq_cpu_id(offset)
        guard cpu < UInt32(cpus) else { return fallback("rseq cpu_id reads \(cpu): registration failed") }
        let r = cslab_membarrier_register_rseq()
        guard r == 0 else { return fallback("membarrier PRIVATE_EXPEDITED_RSEQ unavailable (\(r))") }
        return CPULayerPlatform(usesRseq: true, rseqOffset: offset, possibleCPUs: cpus, fallbackSlots: slots, reason: "rseq")
    }
}

/// Relaxed counters of slow-path events, one cache line each would be overkill: these are
/// touched at most once per magazine of operations.
final class SlowPathCounters: @unchecked Sendable {
    enum Event: Int, CaseIterable {
        case exchanges, depotFullTaken, depotEmptyTaken, depotFullReturned, slabFills
        case bypassAllocations, bypassFrees, commitRetries, slotContention, magazinesMade, depotOverflows
    }
    private let words: UnsafeMutablePointer<UInt64>

    init() {
        words = .allocate(capacity: Event.allCases.count)
        words.initialize(repeating: 0, count: Event.allCases.count)
    }
    deinit { words.deallocate() }

    @inline(__always) func bump(_ e: Event, by n: UInt64 = 1) { cslab_fetch_add_relaxed(words + e.rawValue, n) }
    subscript(_ e: Event) -> Int { Int(cslab_load_relaxed(words + e.rawValue)) }
}

extension SlabCache {
    // MARK: Slot access

    @inline(__always) func slotState(_ i: Int) -> UnsafeMutablePointer<UInt64> {
        (cpus + i << CSLAB_CPU_STRIDE_SHIFT).assumingMemoryBound(to: UInt64.self)
    }
    @inline(__always) func slotOwner(_ i: Int) -> UnsafeMutablePointer<UInt64> { slotState(i) + 1 }
    @inline(__always) func slotAllocHits(_ i: Int) -> UnsafeMutablePointer<UInt64> { slotState(i) + 2 }
    @inline(__always) func slotFreeHits(_ i: Int) -> UnsafeMutablePointer<UInt64> { slotState(i) + 3 }

    // MARK: Slow paths

    @usableFromInline
    func allocateSlow() -> UnsafeMutableRawPointer? {
        if usesRseq { return allocateLadderRseq() }
        if region != nil { return allocateFallback() }
        return allocateFromSlabLayer()
    }

    @usableFromInline
    func freeSlow(_ object: UnsafeMutableRawPointer) {
        if usesRseq { return freeLadderRseq(object) }
        if region != nil { return freeFallback(object) }
        freeToSlabLayer(object)
    }

    /// One object straight from the slab layer: no CPU layer, or the CPU is being drained.
    func allocateFromSlabLayer() -> UnsafeMutableRawPointer? {
        if isDestroyed { slabFatal("kmem_cache_alloc(\(name)): the cache was destroyed") }
        if region != nil { counters.bump(.bypassAllocations) }
        return slabLayer.allocateOne()
    }

    func freeToSlabLayer(_ object: UnsafeMutableRawPointer) {
        if isDestroyed { slabFatal("kmem_cache_free(\(name)): \(hex(object)) freed to a destroyed cache") }
        if region != nil { counters.bump(.bypassFrees) }
        slabLayer.freeOne(object)
    }

    /// A full magazine from the depot, or else one filled from the slab layer in one batch.
    /// nil when the magazine region or memory is exhausted.
    private func takeFullMagazine() -> (MagazineHandle, Int)? {
        let region = region.unsafelyUnwrapped, depot = depot.unsafelyUnwrapped
        if let h = depot.pop(.full) {
            counters.bump(.depotFullTaken)
            return (h, Int(region.header(h).pointee.rounds))
        }
        guard let e = takeEmptyMagazine() else { return nil }
        let rounds = region.rounds(e)
        let n = slabLayer.allocate(into: rounds, count: Int(capacity))
        counters.bump(.slabFills)
        if n == 0 {
            depot.push(e, to: .empty)
            return nil
        }
        stackForPops(rounds, count: n)
        return (e, n)
    }

    /// Orders a magazine just filled from the slab layer (objects in address order) for popping,
    /// top first:
    /// - upwards: the caller walks fresh memory in ascending addresses, a stream the hardware
    ///   prefetcher follows (a batch of 1M 20-byte objects: 12.2 -> 9.3-9.9 ns/op);
    /// - in passes of one object per cache line (objects 0, 3, 6, ... then 1, 4, 7, ... for
    ///   24-byte objects), so that consecutive pops never share a line. A thread that migrates
    ///   between an allocation and its free carries that object to another CPU's magazine; the
    ///   next object this CPU hands out must not be its neighbour, or two threads end up writing
    ///   one cache line (two threads of hot pairs scaled 1.0x instead of 2x in such runs).
    private func stackForPops(_ rounds: UnsafeMutablePointer<UnsafeMutableRawPointer?>, count n: Int) {
        let perLine = max(1, (64 + layout.stride - 1) / layout.stride)
        withUnsafeTemporaryAllocation(of: UnsafeMutableRawPointer?.self, capacity: n) { sorted in
            var top = n - 1   // rounds[n - 1] is popped first
            for pass in 0..<perLine {
                var k = pass
                while k < n {
                    sorted[top] = rounds[k]
                    top -= 1
                    k += perLine
                }
            }
            rounds.update(from: sorted.baseAddress!, count: n)
        }
    }

    private func takeEmptyMagazine() -> MagazineHandle? {
        if let h = depot.unsafelyUnwrapped.pop(.empty) {
            counters.bump(.depotEmptyTaken)
            return h
        }
        guard let h = region.unsafelyUnwrapped.make() else { return nil }
        counters.bump(.magazinesMade)
        return h
    }

    /// Gives a detached full magazine to the depot; when the depot already holds
    /// `depotFullLimit` full magazines, its rounds go back to their slabs instead and the
    /// magazine joins the empty list. This bounds the memory the magazine layer can hold back
    /// (and the magazines ever made) after a large burst of frees, without waiting for a reap.
    private func returnFullMagazine(_ h: MagazineHandle, rounds: Int) {
        let region = region.unsafelyUnwrapped, depot = depot.unsafelyUnwrapped
        if depot.count(.full) >= depotFullLimit {
            slabLayer.free(region.rounds(h), count: rounds)
            region.header(h).pointee.rounds = 0
            depot.push(h, to: .empty)
            counters.bump(.depotOverflows)
            return
        }
        region.header(h).pointee.rounds = UInt64(rounds)
        depot.push(h, to: .full)
        counters.bump(.depotFullReturned)
    }

    // MARK: rseq ladders

    /// The ladders' single-store transition of this CPU's state (cslab_rseq_cpu_cas), after a
    /// release that ThreadSanitizer can see: the magazine contents this thread wrote are published
    /// by the commit, which only the hardware and membarrier order (drainAllCPUs acquires).
    @inline(__always)
    private func commit(_ cpu: UInt32, _ expected: UInt64, _ desired: UInt64) -> Bool {
        cslab_tsan_release(slotState(Int(cpu)))
        return cslab_rseq_cpu_cas(rseqOffset, cpus, cpu, expected, desired)
    }

    private func allocateLadderRseq() -> UnsafeMutableRawPointer? {
        while true {
            let cpu = cslab_rseq_cpu_id(rseqOffset)
            let i = Int(cpu)
            guard i < slotCount, cslab_load_acquire(slotOwner(i)) == CPUState.ownerFree else {
                return allocateFromSlabLayer()
            }
            let s = CPUState(word: cslab_load_relaxed(slotState(i)))
            if s.loadedRounds == 0 {
                if s.previousRounds > 0 {
                    // The loaded magazine is empty and the previous one is full: exchange them.
                    if commit(cpu, s.word, s.exchanged.word) {
                        counters.bump(.exchanges)
                    } else {
                        counters.bump(.commitRetries)
                    }
                } else {
                    // Both are empty: a full magazine from the depot (or filled from the slabs)
                    // becomes loaded, the empty loaded one becomes previous, and the old previous
                    // (empty) goes back to the depot.
                    guard let (full, rounds) = takeFullMagazine() else { return allocateFromSlabLayer() }
                    let new = CPUState(loaded: full, loadedRounds: rounds, previous: s.loaded, previousRounds: 0)
                    if commit(cpu, s.word, new.word) {
                        depot.unsafelyUnwrapped.push(s.previous, to: .empty)
                    } else {
                        returnFullMagazine(full, rounds: rounds)
                        counters.bump(.commitRetries)
                    }
                }
            }
            if let object = cslab_rseq_magazine_pop(rseqOffset, cpus, magazineBase) { return object }
        }
    }

    private func freeLadderRseq(_ object: UnsafeMutableRawPointer) {
        while true {
            let cpu = cslab_rseq_cpu_id(rseqOffset)
            let i = Int(cpu)
            guard i < slotCount, cslab_load_acquire(slotOwner(i)) == CPUState.ownerFree else {
                return freeToSlabLayer(object)
            }
            let s = CPUState(word: cslab_load_relaxed(slotState(i)))
            if s.loadedRounds >= Int(capacity) {
                if s.previousRounds == 0 {
                    // The loaded magazine is full and the previous one is empty: exchange them.
                    if commit(cpu, s.word, s.exchanged.word) {
                        counters.bump(.exchanges)
                    } else {
                        counters.bump(.commitRetries)
                    }
                } else {
                    // Both are full: an empty magazine becomes loaded, the full loaded one becomes
                    // previous, and the old previous (full) goes to the depot.
                    guard let empty = takeEmptyMagazine() else { return freeToSlabLayer(object) }
                    let new = CPUState(loaded: empty, loadedRounds: 0, previous: s.loaded, previousRounds: s.loadedRounds)
                    if commit(cpu, s.word, new.word) {
                        returnFullMagazine(s.previous, rounds: s.previousRounds)
                    } else {
                        depot.unsafelyUnwrapped.push(empty, to: .empty)
                        counters.bump(.commitRetries)
                    }
                }
            }
            if cslab_rseq_magazine_push(rseqOffset, cpus, magazineBase, capacity, object) { return }
        }
    }

    // MARK: Fallback (no rseq): slots owned by CAS for one operation

    private static let nextSlotHint = SlotHintCounter()

    /// Takes a slot for this thread (its usual one if free), or nil when all are taken.
    private func acquireSlot() -> Int? {
        var hint = cslab_tls_get_slot_hint()
        if hint == 0 {
            hint = Self.nextSlotHint.next()
            cslab_tls_set_slot_hint(hint)
        }
        let mask = slotCount - 1
        let first = Int(hint - 1)
        for k in 0..<slotCount {
            let i = (first + k) & mask
            var expected = CPUState.ownerFree
            // Acquire pairs with the release that ended the previous owner's operation.
            if cslab_cas_acquire(slotOwner(i), &expected, CPUState.ownerThread) {
                if k != 0 {
                    counters.bump(.slotContention)
                    cslab_tls_set_slot_hint(UInt64(i) + 1)
                }
                return i
            }
        }
        return nil
    }

    @inline(__always) private func releaseSlot(_ i: Int) {
        cslab_store_release(slotOwner(i), CPUState.ownerFree)
    }

    private func allocateFallback() -> UnsafeMutableRawPointer? {
        guard let i = acquireSlot() else { return allocateFromSlabLayer() }
        defer { releaseSlot(i) }
        let region = region.unsafelyUnwrapped
        var s = CPUState(word: cslab_load_relaxed(slotState(i)))
        while true {
            if s.loadedRounds > 0 {
                let object = region.rounds(s.loaded)[s.loadedRounds - 1]
                s.word -= 1
                cslab_store_relaxed(slotState(i), s.word)
                cslab_bump_single_writer(slotAllocHits(i), 1)
                return object
            }
            if s.previousRounds > 0 {
                s = s.exchanged
                counters.bump(.exchanges)
                continue
            }
            guard let (full, rounds) = takeFullMagazine() else {
                cslab_store_relaxed(slotState(i), s.word)
                return allocateFromSlabLayer()
            }
            depot.unsafelyUnwrapped.push(s.previous, to: .empty)
            s = CPUState(loaded: full, loadedRounds: rounds, previous: s.loaded, previousRounds: 0)
        }
    }

    private func freeFallback(_ object: UnsafeMutableRawPointer) {
        guard let i = acquireSlot() else { return freeToSlabLayer(object) }
        defer { releaseSlot(i) }
        let region = region.unsafelyUnwrapped
        var s = CPUState(word: cslab_load_relaxed(slotState(i)))
        while true {
            if s.loadedRounds < Int(capacity) {
                region.rounds(s.loaded)[s.loadedRounds] = object
                s.word += 1
                cslab_store_relaxed(slotState(i), s.word)
                cslab_bump_single_writer(slotFreeHits(i), 1)
                return
            }
            if s.previousRounds == 0 {
                s = s.exchanged
                counters.bump(.exchanges)
                continue
            }
            guard let empty = takeEmptyMagazine() else {
                cslab_store_relaxed(slotState(i), s.word)
                return freeToSlabLayer(object)
            }
            returnFullMagazine(s.previous, rounds: s.previousRounds)
            s = CPUState(loaded: empty, loadedRounds: 0, previous: s.loaded, previousRounds: s.loadedRounds)
        }
    }

    // MARK: Draining (shrink, reap, destroy). REQUIRES: drainLock held.

    /// Empties every CPU's magazines into the slab layer. With `leaveOwned`, every slot stays
    /// owned afterwards, so all later operations take the slow path (destroy).
    func drainAllCPUs(leaveOwned: Bool) {
        guard let region else { return }
        for i in 0..<slotCount {
            let owner = slotOwner(i)
            var spins = 0
            while true {
                var expected = CPUState.ownerFree
                if cslab_cas_acq_rel(owner, &expected, CPUState.ownerDrainer) { break }
                if expected == CPUState.ownerDrainer { break }   // left owned by an earlier destroy
                // A fallback-mode operation holds the slot; it ends without waiting for anyone.
                spins += 1
                if spins < 64 { cslab_cpu_relax() } else { sched_yield() }
            }
            // (A simulated rseq mode has one thread, which is this one: nothing is in flight.)
            if usesRseq && !CPULayerPlatform.current.simulated && cslab_membarrier_rseq_fence(Int32(i)) != 0 {
                // An offline CPU cannot be fenced alone; fence them all.
                let r = cslab_membarrier_rseq_fence(-1)
                precondition(r == 0, "SlabCache(\(name)): membarrier RSEQ fence failed (\(r)); cannot drain safely")
            }
            cslab_tsan_acquire(slotState(i))
            let s = CPUState(word: cslab_load_acquire(slotState(i)))
            if s.loadedRounds > 0 {
                slabLayer.free(region.rounds(s.loaded), count: s.loadedRounds)
            }
            if s.previousRounds > 0 {
                slabLayer.free(region.rounds(s.previous), count: s.previousRounds)
            }
            cslab_store_release(slotState(i), s.emptied.word)
            if !leaveOwned { cslab_store_release(owner, CPUState.ownerFree) }
        }
    }

    /// Gives every slot back after a refused destroy.
    func releaseAllCPUs() {
        guard region != nil else { return }
        for i in 0..<slotCount { cslab_store_release(slotOwner(i), CPUState.ownerFree) }
    }

    /// Returns full magazines' rounds to the slab layer: all of them, or only those outside the
    /// working set (reap).
    func flushDepot(all: Bool) {
        guard let region, let depot else { return }
        let limit = all ? depot.count(.full) + 2 * slotCount : depot.takeExcessEstimate()
        var flushed = 0
        while flushed < limit, let h = depot.pop(.full) {
            let header = region.header(h)
            slabLayer.free(region.rounds(h), count: Int(header.pointee.rounds))
            header.pointee.rounds = 0
            depot.push(h, to: .empty)
            flushed += 1
        }
        if all { _ = depot.takeExcessEstimate() }
    }
}

/// Hands out thread slot hints round-robin (fallback mode). Hints start at 1; 0 means unset.
final class SlotHintCounter: @unchecked Sendable {
    private let word = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
    init() { word.initialize(to: 0) }
    func next() -> UInt64 { cslab_fetch_add_relaxed(word, 1) + 1 }
}
