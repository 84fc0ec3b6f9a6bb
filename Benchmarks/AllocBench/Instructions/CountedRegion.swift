// The child's half of `bench instructions`: one cell in count mode, with callgrind counting the
// measured region of one repetition and nothing else.
//
// 1. What is counted
// ------------------
//   The parent runs the child under `valgrind --tool=callgrind --instr-atstart=no
//   --collect-atstart=no`: process start-up, the Swift runtime, decoding the parameters and the
//   workload's set-up run uninstrumented (fast) and uncounted. The child then starts
//   instrumenting, runs one warm-up repetition (not counted: it fills the allocator's caches and
//   callgrind's simulated ones, as the suite's warm-up does), arms the region, and runs exactly
//   one more repetition. That repetition's measured region, the same bracket that times it in
//   the wall-clock suite, switches collection on at its start and off at its end. Everything
//   after (tear-down, destroying the cache, the JSON result) is uncounted again.
//
// 2. The bracket
// --------------
//   `measuredRegionBegins()` reads the clock, then (when armed) toggles collection on;
//   `measuredRegionEnds()` toggles it off, then reads the clock. So the clock reads, which under
//   valgrind are real system calls, stay outside the count; inside is only the workload's loop:
//   the allocator's calls plus the loop's own few instructions per op. Outside count mode the
//   bracket costs one relaxed load and a branch per repetition.
//
// 3. Checked, not trusted
// -----------------------
//   The counted repetition must enter its region exactly once and leave it: a workload that
//   never marks it (the thread workloads, which callgrind would serialise anyway, and whose
//   other threads' collection state the main thread cannot switch) or enters it twice fails the
//   cell instead of reporting a count of nothing or of half the work. A child not running under
//   valgrind fails too: its "count" would be empty.
//
// 4. Determinism
// --------------
//   Two counts of one cell must be equal. Nothing in the region reads the clock, draws from a
//   seed that varies, hashes (the parent sets SWIFT_DETERMINISTIC_HASHING=1 anyway), or grows a
//   Swift collection; the random workloads use fixed SplitMix64 seeds. Valgrind places the
//   client's mappings itself, the same way on every run of the same binary (the parent also
//   switches address randomisation off, see InstructionCounter.swift), so address-dependent
//   paths in the allocators take the same branches each time. sawtooth alone reads something
//   from outside inside its region (/proc/self/statm, parsed digit by digit): its counts
//   repeated in every run tried, but would move by a few instructions if the RSS it reads did.
//   What the region cannot be made independent of is the heap the child built before it: the
//   Swift runtime's and the set-up's own allocations. A change elsewhere in the bench can
//   change that state, and with it a peer's count (see InstructionCounter.swift, 4.).

import CAllocBench
import Harness
import Synchronization

/// Where the one counted repetition is: armed by CountedCellVisitor, advanced by the bracket.
enum CountedRegion {
    enum State: Int {
        /// Not in count mode, or between repetitions: the bracket only reads the clock.
        case disarmed
        /// The next region is the counted one.
        case armed
        /// Inside the counted region: collection is on.
        case collecting
        /// The counted region began and ended.
        case counted
        /// A second region began in the counted repetition (not counted): the cell fails.
        case reentered
    }

    /// One word, read at every bracket; only the child's main thread writes it.
    static let state = Atomic<Int>(State.disarmed.rawValue)

    static var current: State { State(rawValue: state.load(ordering: .relaxed))! }

    static func arm() { state.store(State.armed.rawValue, ordering: .relaxed) }

    /// Disarms and returns the state the repetition left; switches collection off if the
    /// region began and never ended (a workload that threw inside it).
    static func disarm() -> State {
        let last = current
        if last == .collecting { callocbench_toggle_collect() }
        state.store(State.disarmed.rawValue, ordering: .relaxed)
        return last
    }

    @inline(never)
    static func begin() {
        switch current {
        case .armed:
            state.store(State.collecting.rawValue, ordering: .relaxed)
            callocbench_toggle_collect()
        case .counted, .collecting:
            state.store(State.reentered.rawValue, ordering: .relaxed)
        case .disarmed, .reentered:
            break
        }
    }

    @inline(never)
    static func end() {
        guard current == .collecting else { return }
        callocbench_toggle_collect()
        state.store(State.counted.rawValue, ordering: .relaxed)
    }
}

/// The start of a repetition's measured region: the clock, then (in count mode) collection on.
@inline(__always)
func measuredRegionBegins() -> UInt64 {
    let t = monotonicNanoseconds()
    if CountedRegion.state.load(ordering: .relaxed) != CountedRegion.State.disarmed.rawValue { CountedRegion.begin() }
    return t
}

/// The end of a repetition's measured region: (in count mode) collection off, then the clock.
@inline(__always)
func measuredRegionEnds() -> UInt64 {
    if CountedRegion.state.load(ordering: .relaxed) != CountedRegion.State.disarmed.rawValue { CountedRegion.end() }
    return monotonicNanoseconds()
}

/// A cell in count mode: set-up, one warm-up repetition, one counted repetition (see 1.). Returns
/// that repetition alone: its ops are the denominator of instructions per op. Its `seconds` is
/// valgrind's time, meaningless as a speed, and no RSS or latency is taken.
struct CountedCellVisitor<A: FixedSizeAllocator>: WorkloadVisitor {
    let allocator: A
    let context: WorkloadContext

    func visit<W: Workload>(_: W.Type) throws -> [Repetition] {
        guard callocbench_running_on_valgrind() != 0 else {
            throw WorkloadFailure(description: "count mode runs only under callgrind (`bench instructions` launches it)")
        }
        let a = allocator
        let w = W(context)
        defer { w.tearDown() }
        callocbench_start_instrumentation()
        _ = try w.repetition(a)  // warm-up
        CountedRegion.arm()
        let m: Measured
        do {
            m = try w.repetition(a)
        } catch {
            _ = CountedRegion.disarm()
            throw error
        }
        let state = CountedRegion.disarm()
        // The rest of the child (tear-down, the result) needs no simulation: run it faster.
        callocbench_stop_instrumentation()
        switch state {
        case .counted: break
        case .armed, .disarmed:
            throw WorkloadFailure(description: "\(W.self) does not mark its measured region: it cannot be counted")
        case .collecting:
            throw WorkloadFailure(description: "\(W.self) began its measured region and never ended it")
        case .reentered:
            throw WorkloadFailure(description: "\(W.self) entered its measured region more than once in one repetition")
        }
        return [Repetition(ops: m.ops, seconds: m.seconds, latency: nil, peakRSSBytes: 0,
                           peakLiveBytes: m.peakLiveObjects * context.size, rssAfterBytes: nil, rssSeries: nil)]
    }
}
