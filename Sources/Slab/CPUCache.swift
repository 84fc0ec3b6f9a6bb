// CPUCache: the per-CPU layer of one cache (Bonwick & Adams 2001). It owns the CPUs' slots
// (CPUSlot.swift), the magazine region (Magazine.swift), the depot (Depot.swift) and the slow-path
// counters. The fast pop and push of the loaded magazine are inlined into the caller
// (FastPath.swift); this file is what runs when they cannot finish: the ladders, the depot trips,
// and the drains.
//
// 1. The ladders, written once
// ----------------------------
//   The allocation and free ladders are the essay's (SlabCache.swift, section 5), each written
//   once, over `CPUStateCommitter` (CPUSlot.swift). Each step is decided from one reading of the
//   CPU's state and made by one commit of a new state: in rseq mode a compare-and-store that
//   fails if the thread moved or another thread changed the CPU first (the ladder then reads
//   again and decides again); in the fallback mode a store to a slot the thread holds. A magazine
//   taken for a commit that failed goes back where it came from.
//   Invariant: the previous magazine is always empty or full. So after an exchange the loaded
//   magazine can serve M operations before the ladder runs again, and the depot sees at most one
//   trip per M operations, whatever the workload. The ladders assert it (debug builds) and
//   `checkInvariants` checks it on every CPU.
//
// 2. Stopping the CPUs
// --------------------
//   Shrink, reap's callers and destroy work on every CPU's state from another thread. They do it
//   in one scope, `withEveryCPUStopped`: each slot is taken (owner = stopped; in rseq mode then
//   fenced with membarrier, CPUSlot.swift), the body runs with every state word its own, and the
//   CPUs start again when it returns; destroy retires them instead, so that any later operation
//   takes the slow path and meets the destroyed cache.
//
// 3. Bounds
// ---------
//   The depot keeps at most `depotFullLimit` full magazines; a free beyond that returns its
//   magazine's rounds to the slab layer (SlabCache.swift, section 7, says why and how the limit is
//   chosen). A fill from the slab layer is ordered for popping (`stackForPops`).

import CSlab

#if canImport(Glibc)
import Glibc
#endif

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

/// The per-CPU layer's figures at one moment (exact when the cache is quiet).
struct CPULayerSnapshot {
    /// Rounds in the CPUs' loaded and previous magazines.
    var cachedRounds = 0
    /// Pops counted per slot (fallback mode only; rseq mode derives them, SlabInfo.swift).
    var countedAllocations = 0
    var fastFrees = 0
    var depotFullMagazines = 0
    var depotEmptyMagazines = 0
    var depotRounds = 0
    var depotContention = 0
    var magazinesMade = 0
    var events: [SlowPathCounters.Event: Int] = [:]
}

final class CPUCache: @unchecked Sendable {
    let name: String
    /// .rseq or .fallback.
    let mode: CPULayerMode
    let slots: CPUSlots
    let region: MagazineRegion
    let depot: Depot
    let counters = SlowPathCounters()
    let slabLayer: SlabLayer
    /// How the magazines hold this cache's objects: 32-bit offsets from its range (Magazine.swift).
    let codec: RoundCodec
    let rseqOffset: Int64
    /// Rounds per magazine (M).
    let capacity: Int
    /// Most full magazines the depot keeps before frees overflow to the slab layer.
    let depotFullLimit: Int
    /// Set (under the owner's drain lock) by `retire()`: the CPUs stay stopped for good.
    private var retired = false

    /// nil when the magazine region cannot be mapped: the cache then runs without a CPU layer.
    init?(name: String, slabLayer: SlabLayer, platform: CPULayerPlatform, depotFullLimit: (Int) -> Int) {
        precondition(slabLayer.pages.size <= 1 << Int(CSLAB_ROUND_RANGE_BITS),
                     "\(name): a range of \(slabLayer.pages.size) bytes is too large for 32-bit rounds")
        let m = MagazineRegion.capacity(forObjectSize: slabLayer.layout.objectSize)
        guard let region = MagazineRegion(capacity: m) else { return nil }
        self.name = name
        self.slabLayer = slabLayer
        codec = slabLayer.codec
        self.region = region
        depot = Depot(region: region)
        capacity = m
        self.depotFullLimit = depotFullLimit(m)
        mode = platform.usesRseq ? .rseq : .fallback
        rseqOffset = platform.rseqOffset
        let count = mode == .rseq ? platform.possibleCPUs : platform.fallbackSlots
        let bytes = count * Int(CSLAB_CPU_STRIDE)
        slots = CPUSlots(base: .allocate(byteCount: bytes, alignment: Int(CSLAB_CPU_STRIDE)), count: count,
                         own: mode == .rseq ? 0 : platform.ownSlots)
        slots.base.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        // Every CPU starts with two empty magazines, so the state word always names real ones.
        for i in 0..<count {
            guard let loaded = region.make(), let previous = region.make() else {
                slots.base.deallocate()
                return nil
            }
            slots.state(i).pointee = CPUState(loaded: loaded, loadedRounds: 0, previous: previous, previousRounds: 0).word
            slots.capacity(i).pointee = UInt64(m)
        }
    }

    deinit { slots.base.deallocate() }

    // MARK: The ladders

    /// An object from this CPU's magazines, running the ladder as far as needed; nil when the
    /// CPU layer cannot serve this one (the CPU is stopped, or memory or magazines ran out), and
    /// the caller goes to the slab layer.
    func allocate() -> UnsafeMutableRawPointer? {
        if mode == .rseq {
            var commits = RseqCommitter(rseqOffset: rseqOffset, slots: slots, magazines: region.base, codec: codec)
            return allocate(committingWith: &commits)
        }
        guard var commits = OwnedSlotCommitter(slots: slots, region: region, codec: codec, counters: counters) else {
            counters.bump(.bypassAllocations)
            return nil
        }
        defer { commits.release() }
        return allocate(committingWith: &commits)
    }

    /// Puts `object` into this CPU's magazines; false when the caller must give it to the slab
    /// layer instead.
    func free(_ object: UnsafeMutableRawPointer) -> Bool {
        if mode == .rseq {
            var commits = RseqCommitter(rseqOffset: rseqOffset, slots: slots, magazines: region.base, codec: codec)
            return free(object, committingWith: &commits)
        }
        guard var commits = OwnedSlotCommitter(slots: slots, region: region, codec: codec, counters: counters) else {
            counters.bump(.bypassFrees)
            return false
        }
        defer { commits.release() }
        return free(object, committingWith: &commits)
    }

    @inline(__always)
    private func allocate<C: CPUStateCommitter>(committingWith commits: inout C) -> UnsafeMutableRawPointer? {
        while let s = commits.read() {
            checkBounds(s, of: commits)
            if s.loadedRounds > 0 {
                if let object = commits.pop(s) { return object }
            } else if s.previousRounds > 0 {
                // The loaded magazine is empty and the previous one full: exchange them.
                assert(s.previousRounds == capacity, "\(name): the previous magazine is neither empty nor full")
                counters.bump(commits.commit(s, s.exchanged) ? .exchanges : .commitRetries)
            } else {
                // Both empty: a full magazine becomes loaded, the empty loaded one previous, and
                // the old previous (empty) goes to the depot.
                guard let (full, rounds) = takeFullMagazine() else { break }
                if commits.commit(s, CPUState(loaded: full, loadedRounds: rounds, previous: s.loaded, previousRounds: 0)) {
                    depot.push(s.previous, to: .empty)
                } else {
                    returnFullMagazine(full, rounds: rounds)
                    counters.bump(.commitRetries)
                }
            }
        }
        counters.bump(.bypassAllocations)
        return nil
    }

    @inline(__always)
    private func free<C: CPUStateCommitter>(_ object: UnsafeMutableRawPointer, committingWith commits: inout C) -> Bool {
        while let s = commits.read() {
            checkBounds(s, of: commits)
            // The default double-free check (SlabCache.swift, section 8), which the rseq push
            // makes too and sends here to be confirmed and reported.
            if commits.topRound(s) == codec.round(object) {
                reportDoubleFree(object, onTopOf: "\(C.placeKind) \(commits.placeIndex)")
            }
            if s.loadedRounds < capacity {
                if commits.push(s, object) { return true }
            } else if s.previousRounds == 0 {
                // The loaded magazine is full and the previous one empty: exchange them.
                counters.bump(commits.commit(s, s.exchanged) ? .exchanges : .commitRetries)
            } else {
                // Both full: an empty magazine becomes loaded, the full loaded one previous, and
                // the old previous (full) goes to the depot.
                assert(s.previousRounds == capacity, "\(name): the previous magazine is neither empty nor full")
                guard let empty = takeEmptyMagazine() else { break }
                if commits.commit(s, CPUState(loaded: empty, loadedRounds: 0, previous: s.loaded, previousRounds: s.loadedRounds)) {
                    returnFullMagazine(s.previous, rounds: s.previousRounds)
                } else {
                    depot.push(empty, to: .empty)
                    counters.bump(.commitRetries)
                }
            }
        }
        counters.bump(.bypassFrees)
        return false
    }

    /// The slot's M (which the inline pushes compare with) and its two magazines' counts must be
    /// within this cache's M. Something that overwrote the slot breaks that, and then a push
    /// would write past its magazine into the next one's header (the depot's links) and the
    /// ladders would go round for ever; so the ladder stops the process with a report instead,
    /// on its first run after the damage. A load and three compares, on the slow path only.
    @inline(__always)
    private func checkBounds<C: CPUStateCommitter>(_ s: CPUState, of commits: C) {
        let written = slots.capacity(commits.placeIndex).pointee
        guard s.loadedRounds > capacity || s.previousRounds > capacity || written != UInt64(capacity) else { return }
        reportCorruptSlot(s, written: written, index: commits.placeIndex, kind: "\(C.placeKind)")
    }

    private func reportCorruptSlot(_ s: CPUState, written: UInt64, index: Int, kind: String) -> Never {
        let slot = UnsafeRawPointer(slots.state(index))
        SlabReport.fatal("corrupted per-CPU state", cache: name, object: nil, details: [
            "\(kind) \(index)'s slot at \(hex(slot)) says M = \(written) and holds magazines of \(s.loadedRounds) (loaded) "
                + "and \(s.previousRounds) (previous) rounds; this cache's magazines hold \(capacity): something wrote over it"])
    }

    /// `object` is the top round of the loaded magazine this free was about to push it on: it
    /// was freed already, and no allocation on this CPU took it back since.
    private func reportDoubleFree(_ object: UnsafeMutableRawPointer, onTopOf place: String) -> Never {
        SlabReport.fatal("double free", cache: name, object: object, details: [
            "\(slabLayer.freeOperation)(\(name)): \(hex(object)) is already free: it is the last round "
                + "pushed on \(place)'s loaded magazine"])
    }

    // MARK: Depot trips

    /// A full magazine from the depot, or else one filled from the slab layer in one batch.
    /// nil when the magazine region or memory is exhausted.
    private func takeFullMagazine() -> (MagazineHandle, Int)? {
        if let h = depot.pop(.full) {
            counters.bump(.depotFullTaken)
            return (h, Int(region.header(h).pointee.rounds))
        }
        guard let e = takeEmptyMagazine() else { return nil }
        let n = withUnsafeTemporaryAllocation(of: UnsafeMutableRawPointer?.self, capacity: capacity) { objects in
            let n = slabLayer.allocate(into: objects.baseAddress!, count: capacity)
            if n > 0 { stackForPops(objects.baseAddress!, count: n, into: region.rounds(e)) }
            return n
        }
        counters.bump(.slabFills)
        if n == 0 {
            depot.push(e, to: .empty)
            return nil
        }
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
    /// `objects` (the slab layer's fill) go into `rounds` in that order.
    private func stackForPops(_ objects: UnsafeMutablePointer<UnsafeMutableRawPointer?>, count n: Int,
                              into rounds: UnsafeMutablePointer<UInt32>) {
        let stride = slabLayer.layout.stride
        let perLine = max(1, (64 + stride - 1) / stride)
        var top = n - 1   // rounds[n - 1] is popped first
        // Wrapping arithmetic: n <= M <= 255, so neither index can overflow, and the checks
        // were a third of this loop's instructions (it runs once per object a fill hands out).
        for pass in 0..<perLine {
            var k = pass
            while k < n {
                rounds[top] = codec.round(objects[k].unsafelyUnwrapped)
                top &-= 1
                k &+= perLine
            }
        }
    }

    private func takeEmptyMagazine() -> MagazineHandle? {
        if let h = depot.pop(.empty) {
            counters.bump(.depotEmptyTaken)
            return h
        }
        guard let h = region.make() else { return nil }
        counters.bump(.magazinesMade)
        return h
    }

    /// Gives a detached full magazine to the depot; when the depot already holds
    /// `depotFullLimit` full magazines, its rounds go back to their slabs instead and the
    /// magazine joins the empty list. This bounds the memory the magazine layer can hold back
    /// (and the magazines ever made) after a large burst of frees, without waiting for a reap.
    private func returnFullMagazine(_ h: MagazineHandle, rounds: Int) {
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

    // MARK: Stopping every CPU. REQUIRES: the owning cache's drain lock.

    /// Stops every CPU, runs `body` while their states belong to this thread, then starts them
    /// again (or leaves them retired, after `retire()`). In the fallback mode a slot that this
    /// very thread holds is left alone (`heldByCaller`; a laneless thread may hold two shared
    /// slots when a constructor allocates from its own cache): the drain was called from inside one of
    /// the thread's own operations on the cache (a constructor, run while the allocation that
    /// made its slab holds the slot, that shrinks its own cache), which reads and commits that
    /// slot's state once the constructor returns; waiting for it would never end. rseq mode holds
    /// no slot during an operation, so there every CPU is stopped.
    func withEveryCPUStopped<R>(_ body: () throws -> R) rethrows -> R {
        heldByCaller = []
        for i in 0..<slots.count where !stop(i) { heldByCaller.append(i) }
        if slots.own > 0 { waitOutOwnersInFlight() }
        defer {
            let owner = retired ? SlotOwner.retired : SlotOwner.free
            for i in 0..<slots.count where !heldByCaller.contains(i) { cslab_store_release(slots.owner(i), owner) }
            heldByCaller = []
        }
        return try body()
    }

    /// The slots the calling thread holds itself during the current `withEveryCPUStopped`, which
    /// neither stops nor drains them (fallback mode only; empty otherwise). Under the drain lock.
    private var heldByCaller: [Int] = []

    /// Takes slot `i` from the fast paths and waits out every operation in flight on it. False,
    /// leaving the slot as it is, when the calling thread holds it (see withEveryCPUStopped).
    private func stop(_ i: Int) -> Bool {
        let owner = slots.owner(i)
        var spins = 0
        while true {
            var expected = SlotOwner.free
            if cslab_cas_acq_rel(owner, &expected, SlotOwner.stopped) { break }
            precondition(expected != SlotOwner.stopped, "\(name): a CPU is already stopped (drains must hold the drain lock)")
            if expected == SlotOwner.retired { return true }
            if expected == SlotOwner.thread { return false }
            // Another thread's fallback-mode operation holds the slot; it ends without waiting for anyone.
            Self.backOff(&spins)
        }
        // (A simulated rseq mode has one thread, which is this one: nothing is in flight.)
        if mode == .rseq && !CPULayerPlatform.current.simulated && cslab_membarrier_rseq_fence(Int32(i)) != 0 {
            // An offline CPU cannot be fenced alone; fence them all.
            let r = cslab_membarrier_rseq_fence(-1)
            precondition(r == 0, "SlabCache(\(name)): membarrier RSEQ fence failed (\(r)); cannot drain safely")
        }
        cslab_tsan_acquire(slots.state(i))
        return true
    }

    /// Fallback mode: after every own slot was stopped, waits out the inline operations their
    /// owners had begun (CPUSlot.swift, section 2). The fence puts a full barrier on every CPU
    /// running a thread of the process between an owner's busy = 1 and its read of `owner`, so a
    /// busy flag read 0 after it means no operation is in flight and none will start. A flag
    /// with no living holder (a forked child's copy of a thread that was mid-operation at the
    /// fork) is not waited for: its operation will never end, and no other thread uses the slot.
    private func waitOutOwnersInFlight() {
        let r = cslab_membarrier_fence()
        precondition(r == 0, "SlabCache(\(name)): membarrier PRIVATE_EXPEDITED fence failed (\(r)); cannot drain safely")
        for i in 0..<slots.own {
            var spins = 0
            while ownerInFlight(i) { Self.backOff(&spins) }
        }
    }

    /// True while slot `i`'s owner is inside an inline operation: its busy flag is set and a
    /// living thread holds the lane (a forked child's copy of a flag set at the fork has none).
    private func ownerInFlight(_ i: Int) -> Bool {
        cslab_load_acquire(slots.busy(i)) != 0 && cslab_lane_held(UInt32(i))
    }

    /// Waits a little for an operation that ends on its own: a pause instruction for the first 64
    /// spins, then the CPU to whoever runs next (the operation's thread may have been preempted
    /// on this CPU).
    private static func backOff(_ spins: inout Int) {
        spins += 1
        if spins < 64 { cslab_cpu_relax() } else { sched_yield() }
    }

    /// Empties every CPU's magazines into the slab layer. REQUIRES: inside `withEveryCPUStopped`.
    func drainStoppedCPUs() {
        for i in 0..<slots.count where !heldByCaller.contains(i) {
            let s = CPUState(word: cslab_load_acquire(slots.state(i)))
            if s.loadedRounds > 0 { slabLayer.free(region.rounds(s.loaded), count: s.loadedRounds) }
            if s.previousRounds > 0 { slabLayer.free(region.rounds(s.previous), count: s.previousRounds) }
            // Relaxed, then a release for ThreadSanitizer alone: the owner word's release when the
            // CPUs start again orders this store for every reader. A release store would make
            // TSan replace the slot's clock, dropping the release of a thread whose commit is
            // still to come: one that read this state before the stop, filled a magazine and
            // commits it once the CPU runs again, its expected word being this emptied word
            // (both magazines were empty). That commit is ordered (its CAS follows the magazine's
            // writes), but TSan would report the next drain's reads of the magazine as a race.
            cslab_store_relaxed(slots.state(i), s.emptied.word)
            cslab_tsan_release(slots.state(i))
        }
    }

    /// Leaves every CPU stopped when the current `withEveryCPUStopped` ends (destroy; never from
    /// inside an operation of the cache's own, which SlabCache.destroy refuses, so `heldByCaller`
    /// is empty then).
    func retire() { retired = true }

    /// The slots whose owner word a thread may hold for one operation (fallback mode; in rseq
    /// mode only a drain takes a slot): in a forked child, those that a thread which did not
    /// survive the fork held are freed (Fork.swift, section 3).
    var slotsForFork: CPUSlots? { mode == .fallback ? slots : nil }

    /// Returns full magazines' rounds to the slab layer: all of them, or only those outside the
    /// working set (reap).
    func flushDepot(all: Bool) {
        let limit = all ? depot.count(.full) + 2 * slots.count : depot.takeExcessEstimate()
        // To the slab layer `flushChunk` magazines a call, which then need not touch the objects
        // of the slabs they empty (SlabLayer.free, two passes), while its lock is held for a
        // bounded time: 64 magazines of 255 rounds are about a hundred 170-object slabs.
        var taken: [MagazineHandle] = []
        var batches: [SlabLayer.Rounds] = []
        taken.reserveCapacity(Self.flushChunk)
        batches.reserveCapacity(Self.flushChunk)
        var flushed = 0
        while flushed < limit {
            while flushed < limit, taken.count < Self.flushChunk, let h = depot.pop(.full) {
                taken.append(h)
                batches.append(.init(start: region.rounds(h), count: Int(region.header(h).pointee.rounds)))
                flushed += 1
            }
            if taken.isEmpty { break }
            batches.withUnsafeBufferPointer { slabLayer.free($0) }
            for h in taken {
                region.header(h).pointee.rounds = 0
                depot.push(h, to: .empty)
            }
            let exhausted = taken.count < Self.flushChunk
            taken.removeAll(keepingCapacity: true)
            batches.removeAll(keepingCapacity: true)
            if exhausted { break }
        }
        if all { _ = depot.takeExcessEstimate() }
    }

    /// Magazines per call to the slab layer when the depot is flushed.
    static let flushChunk = 64

    /// Gives the depot's empty magazines back to the magazine region, which returns their memory
    /// to the OS (shrink: a drained burst of frees leaves thousands of empty magazines, 5.8 MB of
    /// them after a sawtooth's 16 MiB of 24-byte objects). Made again on demand.
    @discardableResult
    func releaseEmptyMagazines() -> Int {
        var handles: [MagazineHandle] = []
        while let h = depot.pop(.empty) { handles.append(h) }
        return region.giveBack(handles)
    }

    // MARK: What it holds

    func snapshot() -> CPULayerSnapshot {
        var s = CPULayerSnapshot()
        for i in 0..<slots.count {
            let state = CPUState(word: cslab_load_relaxed(slots.state(i)))
            s.cachedRounds += state.loadedRounds + state.previousRounds
            s.countedAllocations += Int(cslab_load_relaxed(slots.allocHits(i)))
            s.fastFrees += Int(cslab_load_relaxed(slots.freeHits(i)))
        }
        s.depotFullMagazines = depot.count(.full)
        s.depotEmptyMagazines = depot.count(.empty)
        s.depotRounds = depot.fullRounds
        s.depotContention = depot.contention
        s.magazinesMade = region.made
        for e in SlowPathCounters.Event.allCases { s.events[e] = counters[e] }
        return s
    }

    /// Checks the layer's invariants; returns the problems found (empty when all hold). Every
    /// CPU: two distinct real magazines, counts within M, the previous one empty or full. The
    /// depot's own (Depot.checkInvariants). Every magazine made is in exactly one place: a CPU
    /// or one of the depot's lists. Exact only while no other thread uses the cache.
    func checkInvariants() -> [String] {
        var problems: [String] = []
        var seen: [MagazineHandle: String] = [:]
        func place(_ h: MagazineHandle, _ whereabouts: String) {
            if !region.isMagazine(h) {
                problems.append("\(name): \(whereabouts) names \(h), which is not a magazine")
            } else if let other = seen.updateValue(whereabouts, forKey: h) {
                problems.append("\(name): magazine \(h) is both \(other) and \(whereabouts)")
            }
        }
        for i in 0..<slots.count {
            let owner = cslab_load_acquire(slots.owner(i))
            if owner != SlotOwner.free && !(retired && owner == SlotOwner.retired) {
                problems.append("\(name): CPU \(i) is held (owner \(owner)) by an operation or a drain")
            }
            if i < slots.own, ownerInFlight(i) {
                problems.append("\(name): slot \(i)'s owner is in the middle of an operation")
            }
            let s = CPUState(word: cslab_load_relaxed(slots.state(i)))
            place(s.loaded, "CPU \(i)'s loaded magazine")
            place(s.previous, "CPU \(i)'s previous magazine")
            if s.loadedRounds > capacity {
                problems.append("\(name): CPU \(i)'s loaded magazine holds \(s.loadedRounds) rounds, more than M = \(capacity)")
            }
            if s.previousRounds != 0 && s.previousRounds != capacity {
                problems.append("\(name): CPU \(i)'s previous magazine holds \(s.previousRounds) rounds: neither empty nor full (M = \(capacity))")
            }
        }
        problems += depot.checkInvariants().map { "\(name): depot: \($0)" }
        for list in [Depot.List.full, .empty] {
            for h in depot.handles(on: list) { place(h, "on the depot's \(list) list") }
        }
        for h in region.spareHandles { place(h, "on the region's spare list") }
        if seen.count != region.made {
            problems.append("\(name): \(region.made) magazines made, \(seen.count) found on CPUs, in the depot and spare")
        }
        return problems
    }
}
