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
//   fallback mode (no rseq). The slot array is the same for every cache of the process: `own`
//   slots, then `shared` ones (CPULayerPlatform). A thread gets a lane, a number below `own`
//   that no other living thread holds (cslab_lane_claim), the first time it uses any cache; its
//   own slot in every cache is the slot of that number, and at thread exit the lane (with the
//   magazines its slots hold) passes to the next thread that claims one. The owner's inline pop
//   and push change the slot with plain loads and stores and no atomic read-modify-write: they
//   store busy = 1, read `owner` and go on only if it is 0, and end with busy = 0 (release;
//   CSlab.h, cslab_slot_enter). Its ladders, and every operation of a thread without a lane
//   (more threads than lanes: they share the `shared` slots), take the slot for one operation
//   instead: CAS `owner` 0 -> thread (acquire), relaxed loads and stores of the state (relaxed,
//   not plain, only because `snapshot` reads the word without owning the slot), store `owner` = 0
//   (release, pairs with the next owner's acquire); OwnedSlotCommitter. A laneless thread that
//   finds its shared slot taken tries the other shared ones, then goes to the slab layer. A
//   stopper takes every slot by the same CAS and may spin (yielding) only on a slot held by a
//   running operation, which ends; then, for the own slots, it issues one
//   membarrier(PRIVATE_EXPEDITED), a full barrier on every CPU that runs a thread of the process,
//   and waits for each own slot's busy flag to read 0 (acquire). An owner's busy = 1 store and its
//   read of `owner` are separated by a compiler barrier only; the membarrier supplies the CPU's,
//   so either the stopper sees busy = 1 and waits for the operation to end, or the owner sees the
//   slot stopped and takes its slow path, which finds the slot held and goes to the slab layer.
//   Without membarrier (`own` = 0) every thread shares, as every thread did before lanes: the
//   take and give-back cost 12-13 ns an operation (README). Unlike the rseq mode, whose
//   sequences restart, and the CAS-taken slots, the own slot's inline paths are not
//   async-signal-safe (neither is malloc): a signal handler that allocates from or frees to a
//   cache on a thread it interrupted inside an inline pop or push of that same cache would
//   change the slot under the interrupted operation.
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
    /// A drain (shrink, reap, destroy) has stopped the CPU.
    static let stopped: UInt64 = 2
    /// The cache was destroyed: stopped for good.
    static let retired: UInt64 = 3
    /// The calling thread, in the fallback mode, for one operation: its own mark (never 0...3,
    /// cslab_thread_owner_mark), so that a forked child can tell the forking thread's slot from
    /// those of the threads that did not survive the fork (Fork.swift, section 3).
    @inline(__always) static var thread: UInt64 { cslab_thread_owner_mark() }
    /// Whether `owner` is some thread's mark.
    @inline(__always) static func isThread(_ owner: UInt64) -> Bool { owner > retired }
}

/// The array of per-CPU slots, 128 bytes each (CSlab.h). Shared by threads under the protocol above.
struct CPUSlots: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let count: Int
    /// Fallback mode: slots 0..<own are lanes' own slots, the rest shared (section 2); 0 otherwise.
    var own = 0

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
    /// The cache's M, which the pushes compare the loaded count with (CSlab.h, section 2).
    @inline(__always) func capacity(_ i: Int) -> UnsafeMutablePointer<UInt64> {
        (base + i << CSLAB_CPU_STRIDE_SHIFT + Int(CSLAB_SLOT_CAPACITY)).assumingMemoryBound(to: UInt64.self)
    }
    /// Fallback mode, own slots: 1 while the owner runs an inline pop or push (section 2).
    @inline(__always) func busy(_ i: Int) -> UnsafeMutablePointer<UInt64> {
        (base + i << CSLAB_CPU_STRIDE_SHIFT + Int(CSLAB_SLOT_BUSY)).assumingMemoryBound(to: UInt64.self)
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
    let codec: RoundCodec
    private var cpu: UInt32 = 0

    init(rseqOffset: Int64, slots: CPUSlots, magazines: UnsafeMutableRawPointer, codec: RoundCodec) {
        self.rseqOffset = rseqOffset
        self.slots = slots
        self.magazines = magazines
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
        cslab_rseq_magazine_push(rseqOffset, slots.base, magazines, object, UInt64(codec.base))
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

    /// Takes a slot for this thread for one operation: its own slot, or when it has no lane a
    /// shared one (its usual one if free); nil when the slot it may use is held or stopped (its own),
    /// or every shared slot is held.
    @inline(__always)
    init?(slots: CPUSlots, region: MagazineRegion, codec: RoundCodec, counters: SlowPathCounters) {
        var assigned = cslab_tls_get_slot()
        if assigned & UInt64(CSLAB_SLOT_TAG_OWN) == 0 {
            assigned = ThreadSlot.assign(slots: slots, current: assigned)
            cslab_tls_set_slot(assigned)
        }
        let first = Int(assigned >> UInt64(CSLAB_CPU_STRIDE_SHIFT))
        let own = assigned & UInt64(CSLAB_SLOT_TAG_OWN) != 0
        let shared = slots.count - slots.own
        var k = 0
        while true {
            let i = own ? first : slots.own + (first - slots.own + k) % shared
            var expected = SlotOwner.free
            // Acquire pairs with the release that ended the previous owner's operation.
            if cslab_cas_acquire(slots.owner(i), &expected, SlotOwner.thread) {
                if k != 0 {
                    counters.bump(.slotContention)
                    cslab_tls_set_slot(ThreadSlot.tag(i, own: false))
                }
                self.slots = slots
                self.region = region
                self.codec = codec
                slot = i
                return
            }
            // An own slot is held only by a drainer (or a ladder of this thread's further up
            // the stack, a constructor that allocates): the slab layer serves this operation.
            k += 1
            if own || k == shared {
                counters.bump(.slotContention)
                return nil
            }
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

/// Which slot a thread uses in the fallback mode (cslab_tls_slot, CSlab.h section 3).
enum ThreadSlot {
    private static let counter = Atomic<UInt>(0)

    static func tag(_ i: Int, own: Bool) -> UInt64 {
        UInt64(i) << UInt64(CSLAB_CPU_STRIDE_SHIFT) | UInt64(own ? CSLAB_SLOT_TAG_OWN : CSLAB_SLOT_TAG_SHARED)
    }

    /// A lane if one is free, else the thread's shared slot (`current`, when it has one already;
    /// else the next shared slot round-robin). A thread without a lane asks again on each
    /// operation (its operations run the ladder anyway), so lanes freed by exiting threads are
    /// taken up.
    static func assign(slots: CPUSlots, current: UInt64) -> UInt64 {
        if slots.own > 0 {
            let lane = cslab_lane_claim()
            if lane >= 0 { return tag(Int(lane), own: true) }
        }
        if current != 0 { return current }
        let n = counter.wrappingAdd(1, ordering: .relaxed).oldValue
        return tag(slots.own + Int(n % UInt(slots.count - slots.own)), own: false)
    }
}

/// What this process's threads can use, decided once.
struct CPULayerPlatform: Sendable {
    let usesRseq: Bool
    let rseqOffset: Int64
    let possibleCPUs: Int
    /// The fallback mode's slot array: `ownSlots` lanes' own slots, then shared ones (section 2).
    let fallbackSlots: Int
    let ownSlots: Int
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
            // Lanes need membarrier's private expedited fence; without it every thread shares.
            let lanes = min(slots, Int(CSLAB_MAX_LANES))
            let r = cslab_lanes_set_up(UInt32(lanes))
            if r != 0 {
                return CPULayerPlatform(usesRseq: false, rseqOffset: offset, possibleCPUs: cpus, fallbackSlots: slots,
                                        ownSlots: 0, reason: why + "; membarrier PRIVATE_EXPEDITED unavailable (\(r)): every thread shares its slots")
            }
            return CPULayerPlatform(usesRseq: false, rseqOffset: offset, possibleCPUs: cpus,
                                    fallbackSlots: lanes + max(2, slots / 2), ownSlots: lanes, reason: why)
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
                                     ownSlots: 0, reason: "rseq simulated on CPU 0 (SLAB_CPU_LAYER=rseq-simulated; one thread only)")
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
        return CPULayerPlatform(usesRseq: true, rseqOffset: offset, possibleCPUs: cpus, fallbackSlots: slots, ownSlots: 0,
                                reason: "rseq")
    }
}
