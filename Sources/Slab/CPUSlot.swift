// CPUSlot: one CPU's record in the per-CPU layer, and the two ways a thread may change it. The
// ladders (CPUCache.swift) are written once, over `CPUStateCommitter`; this file says what a
// commit is in each mode, and which mode this process runs.
//
// 1. The state word
// -----------------
//   A CPU's whole magazine state is one 64-bit word (CPUState):
//       previous handle (24) | previous rounds (8) | loaded top (24) | loaded rounds (8)
//   so every transition, a pop, a push, an exchange of loaded and previous, installing a magazine
//   from the depot, is a single store. (Pops and pushes on two separate words, so that a pop never
//   waits for the store of the push before it, were built and measured: kmalloc's pair gained
//   10-15%, typed caches lost 4-33% to lost LIFO reuse and extra depot trips; README, "The two
//   state words".) Magazine memory is reached through the handles. The loaded magazine is kept
//   as its top, handle + rounds, the index of the round past the last: a pop or
//   push changes rounds and top by one together (one add of CSLAB_STATE_STEP), and the rseq
//   sections address the top round from the low 32 bits alone. The field widths and shifts are
//   CSlab.h's (CSLAB_STATE_*, CSLAB_HANDLE_BITS), which the assembly uses too; its static
//   assertions check that the four fields fill the word.
//
// 2. Who may change a slot (the protocol)
// ---------------------------------------
//   rseq mode (RseqCommitter). Only code running on CPU c changes slot c's state, and only as the
//   commit store of a restartable sequence that first checked `owner == 0`: the fast pop and push,
//   and `cslab_rseq_cpu_cas` for the ladders' transitions (compare the whole word, store the new
//   one; a thread that migrated or raced simply fails and re-reads). Because the word is the
//   complete truth of what the CPU holds, a state that changed and changed back is still a valid
//   basis for the transition: this compare is ABA-safe by construction.
//   Remote work (shrink, reap, destroy) stops the CPU: CAS `owner` 0 -> stopped, then
//   membarrier(PRIVATE_EXPEDITED_RSEQ) on that CPU. Every sequence in flight there restarts and
//   sees the owner; every sequence that committed before the fence is visible to the stopper. It
//   then owns the state word outright until it starts the CPU again. Threads that find a slot
//   owned go to the slab layer for that one object: nobody waits.
//   fallback mode (OwnedSlotCommitter; no rseq). A thread owns a slot for the length of one
//   operation: CAS `owner` 0 -> thread (acquire), relaxed loads and stores of the state (relaxed,
//   not plain, only because `snapshot` reads the word without owning the slot), store `owner` = 0
//   (release, pairs with the next owner's acquire). A thread that finds its slot taken tries the
//   others, then goes to the slab layer; there are 4x as many slots as CPUs, so that is rare. A
//   stopper takes slots the same way and may spin (yielding) only on a slot held by a running
//   operation, which ends. The common case, a pop or push on the thread's usual slot, runs
//   inline under the same protocol (CSlab.h: cslab_slot_magazine_pop/push); everything else
//   comes here, to OwnedSlotCommitter and the ladders.
//
// 3. Statistics
// -------------
//   Fast-path frees are counted per slot inside the rseq section, before the commit: a section
//   restarted after its increment counts twice (rare: preemption in a ten-instruction window).
//   Fallback mode counts allocations and frees per slot. Slow-path events are relaxed atomic
//   counters (SlowPathCounters, CPUCache.swift).

import CSlab
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One CPU's magazines, packed in a word (layout in CSlab.h).
struct CPUState: Equatable {
    var word: UInt64

    static let roundsMask: UInt64 = (1 << UInt64(CSLAB_ROUNDS_BITS)) - 1
    static let handleMask: UInt64 = (1 << UInt64(CSLAB_HANDLE_BITS)) - 1
    static let topShift = UInt64(CSLAB_STATE_TOP_SHIFT)
    static let previousRoundsShift = UInt64(CSLAB_STATE_PREVIOUS_ROUNDS_SHIFT)
    static let previousShift = UInt64(CSLAB_STATE_PREVIOUS_SHIFT)
    /// What a push adds and a pop subtracts: one round in the loaded count and in the top.
    static let step = UInt64(CSLAB_STATE_STEP)
    /// The most rounds a magazine's count can say.
    static let maxRounds = Int(roundsMask)

    init(word: UInt64) { self.word = word }

    /// REQUIRES: loaded + loadedRounds fits the handle bits (it does for every magazine: a
    /// magazine and its rounds lie inside the region, MagazineRegion.make).
    init(loaded: MagazineHandle, loadedRounds: Int, previous: MagazineHandle, previousRounds: Int) {
        precondition(loaded + UInt64(max(loadedRounds, 0)) <= Self.handleMask && previous <= Self.handleMask
                     && (0...Self.maxRounds).contains(loadedRounds) && (0...Self.maxRounds).contains(previousRounds),
                     "CPUState: a field does not fit its bits")
        word = previous << Self.previousShift | UInt64(previousRounds) << Self.previousRoundsShift
            | (loaded + UInt64(loadedRounds)) << Self.topShift | UInt64(loadedRounds)
    }

    var loadedRounds: Int { Int(word & Self.roundsMask) }
    /// The loaded magazine's top: its handle + loadedRounds (round[loadedRounds - 1] is the round
    /// just below it).
    var loadedTop: UInt64 { (word >> Self.topShift) & Self.handleMask }
    var loaded: MagazineHandle { loadedTop &- UInt64(loadedRounds) }
    var previousRounds: Int { Int((word >> Self.previousRoundsShift) & Self.roundsMask) }
    var previous: MagazineHandle { word >> Self.previousShift }

    /// One round fewer in the loaded magazine. REQUIRES loadedRounds > 0. (The word minus `step`,
    /// as the rseq pop commits it.)
    var popped: CPUState {
        assert(loadedRounds > 0)
        return CPUState(word: word &- Self.step)
    }
    /// One round more in the loaded magazine. REQUIRES loadedRounds < maxRounds.
    var pushed: CPUState {
        assert(loadedRounds < Self.maxRounds)
        return CPUState(word: word &+ Self.step)
    }
    /// Loaded and previous exchanged.
    var exchanged: CPUState {
        CPUState(loaded: previous, loadedRounds: previousRounds, previous: loaded, previousRounds: loadedRounds)
    }
    /// Same magazines, no rounds.
    var emptied: CPUState {
        CPUState(loaded: loaded, loadedRounds: 0, previous: previous, previousRounds: 0)
    }
}

/// The owner word of a slot (CSlab.h: +8).
enum SlotOwner {
    /// Nobody: the fast paths may use the slot.
    static let free: UInt64 = 0
    /// A fallback-mode thread, for one operation.
    static let thread: UInt64 = 1
    /// A drain (shrink, reap, destroy) has stopped the CPU.
    static let stopped: UInt64 = 2
    /// The cache was destroyed: stopped for good.
    static let retired: UInt64 = 3
}

/// The array of per-CPU slots, 128 bytes each (CSlab.h). Shared by threads under the protocol above.
struct CPUSlots: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let count: Int

    @inline(__always) func state(_ i: Int) -> UnsafeMutablePointer<UInt64> {
        (base + i << CSLAB_CPU_STRIDE_SHIFT).assumingMemoryBound(to: UInt64.self)
    }
    @inline(__always) func owner(_ i: Int) -> UnsafeMutablePointer<UInt64> {
        (base + i << CSLAB_CPU_STRIDE_SHIFT + Int(CSLAB_SLOT_OWNER)).assumingMemoryBound(to: UInt64.self)
    }
    @inline(__always) func allocHits(_ i: Int) -> UnsafeMutablePointer<UInt64> { state(i) + 2 }
    @inline(__always) func freeHits(_ i: Int) -> UnsafeMutablePointer<UInt64> {
        (base + i << CSLAB_CPU_STRIDE_SHIFT + Int(CSLAB_SLOT_FREE_HITS)).assumingMemoryBound(to: UInt64.self)
    }

    /// A slot array whose every slot is retired: the fast paths of a cache without a CPU layer
    /// point here, so even a stray call goes to the slow path.
    static let inert: CPUSlots = {
        let slots = CPUSlots(base: .allocate(byteCount: Int(CSLAB_CPU_STRIDE), alignment: Int(CSLAB_CPU_STRIDE)), count: 1)
        slots.base.initializeMemory(as: UInt8.self, repeating: 0, count: Int(CSLAB_CPU_STRIDE))
        slots.owner(0).pointee = SlotOwner.retired
        return slots
    }()
}

/// How one mode reads and commits a CPU's state. The ladders (CPUCache.swift) are written once
/// over it; each mode is a small value, so the generic ladders specialise to straight code.
protocol CPUStateCommitter {
    /// The state to decide from, or nil when this operation cannot use a CPU's magazines now
    /// (the CPU is stopped, or the thread is on a CPU beyond the slots).
    mutating func read() -> CPUState?
    /// Makes `new` the state if it still is `old`; false when it is not (re-read and decide again).
    mutating func commit(_ old: CPUState, _ new: CPUState) -> Bool
    /// Pops the loaded magazine of state `s` (loadedRounds > 0); nil when the state moved (re-read).
    mutating func pop(_ s: CPUState) -> UnsafeMutableRawPointer?
    /// Pushes onto the loaded magazine of state `s` (loadedRounds < M); false when the state moved
    /// (rseq mode: also when `object` is the top round, which the ladder then reports).
    mutating func push(_ s: CPUState, _ object: UnsafeMutableRawPointer) -> Bool
    /// The loaded magazine's top round in state `s`, round[n - 1]; 0 when the magazine is empty
    /// (round[-1] lies in the header's zero `top_guard`, CSlab.h). For the double-free check.
    func topRound(_ s: CPUState) -> UInt32
    /// What a report calls the record `read` returned ("CPU" or "slot"), and its number.
    static var placeKind: StaticString { get }
    var placeIndex: Int { get }
}

/// rseq mode: the CPU the thread runs on, changed only by sequences that run on it.
struct RseqCommitter: CPUStateCommitter {
    let rseqOffset: Int64
    let slots: CPUSlots
    let magazines: UnsafeMutableRawPointer
    let capacity: UInt64
    let codec: RoundCodec
    private var cpu: UInt32 = 0

    init(rseqOffset: Int64, slots: CPUSlots, magazines: UnsafeMutableRawPointer, capacity: UInt64, codec: RoundCodec) {
        self.rseqOffset = rseqOffset
        self.slots = slots
        self.magazines = magazines
        self.capacity = capacity
        self.codec = codec
    }

    @inline(__always) mutating func read() -> CPUState? {
        cpu = cslab_rseq_cpu_id(rseqOffset)
        let i = Int(cpu)
        guard i < slots.count, cslab_load_acquire(slots.owner(i)) == SlotOwner.free else { return nil }
        // The word was last written by a commit on this CPU (by any thread that ran here), which
        // ordered everything that thread did before it; ThreadSanitizer is told so here and at the
        // commit (it cannot see rseq's ordering).
        let word = cslab_load_acquire(slots.state(i))
        cslab_tsan_acquire(slots.state(i))
        return CPUState(word: word)
    }

    /// One store, if the thread is still on `cpu`, the slot is free and the word is unchanged
    /// (cslab_rseq_cpu_cas); the release before it publishes the magazines this thread wrote.
    @inline(__always) mutating func commit(_ old: CPUState, _ new: CPUState) -> Bool {
        cslab_tsan_release(slots.state(Int(cpu)))
        return cslab_rseq_cpu_cas(rseqOffset, slots.base, cpu, old.word, new.word)
    }

    @inline(__always) mutating func pop(_ s: CPUState) -> UnsafeMutableRawPointer? {
        cslab_rseq_magazine_pop(rseqOffset, slots.base, magazines, UInt64(codec.base))
    }

    @inline(__always) mutating func push(_ s: CPUState, _ object: UnsafeMutableRawPointer) -> Bool {
        cslab_rseq_magazine_push(rseqOffset, slots.base, magazines, capacity, object, UInt64(codec.base))
    }

    @inline(__always) func topRound(_ s: CPUState) -> UInt32 {
        (magazines + Int(s.loadedTop) * MagazineRegion.unit + Int(CSLAB_MAGAZINE_LAST_ROUND)).load(as: UInt32.self)
    }

    static var placeKind: StaticString { "CPU" }
    var placeIndex: Int { Int(cpu) }
}

/// Fallback mode: a slot this thread owns for one operation; every commit succeeds.
struct OwnedSlotCommitter: CPUStateCommitter {
    let slots: CPUSlots
    /// Unowned: the committer lives for one operation of the CPUCache that holds the region.
    unowned(unsafe) let region: MagazineRegion
    let codec: RoundCodec
    let slot: Int

    /// Takes a slot for this thread (its usual one if free), or nil when all are taken.
    @inline(__always)
    init?(slots: CPUSlots, region: MagazineRegion, codec: RoundCodec, counters: SlowPathCounters) {
        var hint = cslab_tls_get_slot_hint()
        if hint == 0 {
            hint = SlotHints.next()
            cslab_tls_set_slot_hint(hint)
        }
        let mask = slots.count - 1
        let first = Int(hint - 1)
        var k = 0
        while true {
            let i = (first + k) & mask
            var expected = SlotOwner.free
            // Acquire pairs with the release that ended the previous owner's operation.
            if cslab_cas_acquire(slots.owner(i), &expected, SlotOwner.thread) {
                if k != 0 {
                    counters.bump(.slotContention)
                    cslab_tls_set_slot_hint(UInt64(i) + 1)
                }
                self.slots = slots
                self.region = region
                self.codec = codec
                slot = i
                return
            }
            k += 1
            if k == slots.count { return nil }
        }
    }

    /// Ends the operation: the next owner sees everything it did.
    @inline(__always) func release() { cslab_store_release(slots.owner(slot), SlotOwner.free) }

    @inline(__always) mutating func read() -> CPUState? { CPUState(word: cslab_load_relaxed(slots.state(slot))) }

    @inline(__always) mutating func commit(_ old: CPUState, _ new: CPUState) -> Bool {
        cslab_store_relaxed(slots.state(slot), new.word)
        return true
    }

    @inline(__always) mutating func pop(_ s: CPUState) -> UnsafeMutableRawPointer? {
        let object = codec.object(region.rounds(s.loaded)[s.loadedRounds - 1])
        cslab_store_relaxed(slots.state(slot), s.popped.word)
        cslab_bump_single_writer(slots.allocHits(slot), 1)
        return object
    }

    @inline(__always) mutating func push(_ s: CPUState, _ object: UnsafeMutableRawPointer) -> Bool {
        region.rounds(s.loaded)[s.loadedRounds] = codec.round(object)
        cslab_store_relaxed(slots.state(slot), s.pushed.word)
        cslab_bump_single_writer(slots.freeHits(slot), 1)
        return true
    }

    @inline(__always) func topRound(_ s: CPUState) -> UInt32 {
        UnsafeRawPointer(region.rounds(s.loaded)).load(fromByteOffset: MagazineRegion.unit * (s.loadedRounds - 1),
                                                       as: UInt32.self)
    }

    static var placeKind: StaticString { "slot" }
    var placeIndex: Int { slot }
}

/// Hands out thread slot hints round-robin (fallback mode). Hints start at 1; 0 means unset.
enum SlotHints {
    private static let counter = Atomic<UInt64>(0)
    static func next() -> UInt64 { counter.wrappingAdd(1, ordering: .relaxed).newValue }
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
        // Read once per process (this is `current`'s initialiser), so a bad value is said once,
        // whatever the build.
        let requested = getenv("SLAB_CPU_LAYER").map { String(cString: $0) }
        if let other = requested, !other.isEmpty, other != "fallback", other != "rseq-simulated" {
            SlabReport.write("slab: SLAB_CPU_LAYER=\"\(other)\" is not one of fallback, rseq-simulated: ignored\n")
        }
        guard cslab_have_rseq_sections() else {
            return fallback("this build has no rseq sections (they are x86_64 assembly; built for another architecture or with CSLAB_PORTABLE)")
        }
        switch requested {
        case "fallback":
            return fallback("forced by SLAB_CPU_LAYER=fallback")
        case "rseq-simulated":
            // For counting the rseq path's instructions under valgrind, which does not implement
            // rseq (glibc's registration fails, __rseq_size reads 0). An rseq critical section is
            // ordinary code: if this thread's area names CPU 0, it runs through to its commit, and
            // with one thread nothing can interleave with it. Refused where glibc did register
            // rseq: there the kernel owns cpu_id, and the real mode is available anyway.
            guard cslab_rseq_size() == 0 else {
                SlabReport.write("slab: SLAB_CPU_LAYER=rseq-simulated ignored: glibc registered rseq, so the CPU layer runs on it\n")
                break
            }
            cslab_rseq_simulate_cpu0(offset)
            var p = CPULayerPlatform(usesRseq: true, rseqOffset: offset, possibleCPUs: cpus, fallbackSlots: slots,
                                     reason: "rseq simulated on CPU 0 (SLAB_CPU_LAYER=rseq-simulated; one thread only)")
            p.simulated = true
            return p
        default:
            break
        }
        guard cslab_rseq_size() >= CSLAB_RSEQ_MIN_SIZE else {
            return fallback("rseq is not registered by glibc (GLIBC_TUNABLES=glibc.pthread.rseq=0, valgrind, or glibc < 2.35)")
        }
        let cpu = cslab_rseq_cpu_id(offset)
        guard cpu < UInt32(cpus) else { return fallback("rseq cpu_id reads \(cpu): registration failed") }
        let r = cslab_membarrier_register_rseq()
        guard r == 0 else { return fallback("membarrier PRIVATE_EXPEDITED_RSEQ unavailable (\(r))") }
        return CPULayerPlatform(usesRseq: true, rseqOffset: offset, possibleCPUs: cpus, fallbackSlots: slots, reason: "rseq")
    }
}
