// The multi-threaded workloads: threads (independent pairs), prodcons-1x1 and prodcons-nxn
// (cross-thread free through SPSC rings), larson (server churn with hand-offs).
//
// Each repetition starts its threads, which wait at a start gate; the clock starts when the gate
// opens and stops when the last thread has been joined, so ops / wall seconds is the total
// throughput. Threads are plain pthreads (Harness's ThreadGroup) running a generic function
// specialised for the adapter. Thread i is bound to the process's CPU i mod n (version 2 of these
// workloads): left to the scheduler, a producer and its consumer shared one CPU in some child
// processes and not in others, and one repetition of prodcons-1x1 read 11 or 60 ns for the same
// allocator depending on that alone. With more threads than CPUs they still take turns.
//
// Op counts per repetition (full / quick / test), T = threads:
//   threads        4M / 400K / 2000 in total, split evenly over T (remainder dropped)
//   prodcons-*     800K / 80K / 2000 objects, split over the producers
//   larson         per thread: 1000 slots prefilled, R = 1M/T (100K/T, 2000/T) replacements, and
//                  every 128 replacements a chunk of 32 objects handed to the next thread:
//                  ops = T x (1000 + R + R / 128 x 32)   (test: 100 slots)

import CAllocBench
import Harness
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

// MARK: - Threads and the start gate

/// A start gate and a finish counter shared by a repetition's threads.
final class ThreadGate: @unchecked Sendable {
    let ready = Atomic<Int>(0)
    let open = Atomic<Bool>(false)
    /// Threads that finished their own work (larson's drain protocol).
    let finished = Atomic<Int>(0)

    /// Called by each worker: announce readiness, wait for the gate.
    func arriveAndWait() {
        ready.add(1, ordering: .relaxed)
        var spins = 0
        while !open.load(ordering: .acquiring) {
            spins += 1
            if spins & 63 == 0 { sched_yield() } else { callocbench_cpu_relax() }
        }
    }

    /// The end of a larson thread: say it has finished (released after its last push), then
    /// keep draining its inbox until every thread has finished (acquired before the final drain,
    /// so nothing sent to it is left behind).
    @inline(__always)
    func finish(threads: Int, draining drain: () -> Void) {
        finished.add(1, ordering: .releasing)
        var spins = 0
        while finished.load(ordering: .acquiring) < threads {
            drain()
            backOff(&spins)
        }
        drain()
    }
}

/// Runs `body(i, gate)` on `count` new threads behind a start gate; returns the wall seconds from
/// the gate's opening to the last join.
func runTimedThreads(_ count: Int, _ body: @escaping @Sendable (Int, ThreadGate) -> Void) -> Double {
    let gate = ThreadGate()
    let threads = ThreadGroup(count: count) { i in
        // Thread i on the process's CPU i mod n (see the header: where the scheduler put the
        // threads decided some cells more than the allocator did).
        _ = callocbench_bind_thread_to_cpu(Int32(i))
        body(i, gate)
    }
    while gate.ready.load(ordering: .relaxed) < count { sched_yield() }
    let t0 = monotonicNanoseconds()
    gate.open.store(true, ordering: .releasing)
    // The threads' array is released after the clock stops, not between the last join and the
    // read (its free would be timed).
    let t1 = withExtendedLifetime(threads) {
        threads.join()
        return monotonicNanoseconds()
    }
    return seconds(from: t0, to: t1)
}

/// A thread's own copy of the allocator adapter: `var a = a; keepInFrame(&a)` at the top of a
/// thread's loop. A thread body is an escaping closure, so the adapter it captured lives in a heap
/// box other threads can reach, and the compiler must reload the adapter's fields (a slab's
/// FastPath) after every store through a raw pointer and every asm block: in larson's loop it
/// reloaded and spilled about twenty words a replacement. A copy in the thread's frame, whose
/// address never escapes, stays in registers and spill slots, as in a user's loop that holds a
/// FastPath (threads, larson and larson-mixed version 3, prodcons version 4; one-thread cells
/// already call the adapter from a frame). The call marks the copy as mutated, which keeps the
/// compiler from folding it back onto the box (a `let` copy was folded: the reloads stayed).
@inline(__always)
func keepInFrame<A>(_ a: inout A) {}

// MARK: - The two-CPU canary

/// Two threads, bound to the first two CPUs, hand a token back and forth through one shared word
/// (no allocator involved). On these machines the host throttles a guest that keeps both vCPUs
/// busy for a minute or so: for the next two to three minutes every two-thread cell reads 3-5x
/// slower, for every allocator, while one-thread cells do not move, and some 20 s of idling
/// restores it. The canary's round trip measured 31-64 ns with both CPUs and 310-370 ns when
/// throttled; the runner compares each round's canary with the best of the run
/// (SuiteRunner.swift, section 4).
enum TwoCPUCanary {
    static let roundTrips = 20_000

    /// Nanoseconds per round trip, or nil when the process may use fewer than two CPUs.
    static func measure() -> Double? {
        guard callocbench_cpu_count() >= 2 else { return nil }
        let token = Atomic<Int>(0)
        let n = roundTrips
        let seconds = runTimedThreads(2) { t, gate in
            gate.arriveAndWait()
            // Thread 0 moves the token from even to odd, thread 1 back; each spins for its turn.
            for k in 0..<n {
                let mine = 2 * k + t
                var spins = 0
                while token.load(ordering: .acquiring) != mine { backOff(&spins) }
                token.store(mine + 1, ordering: .releasing)
            }
        }
        return seconds * 1e9 / Double(n)
    }
}

/// Back-off while waiting on a ring: spin briefly, then yield (there may be more threads than
/// the 2 cores, and a spinning waiter would steal the core its partner needs).
@inline(__always)
func backOff(_ spins: inout Int) {
    spins &+= 1
    if spins & 15 == 0 { sched_yield() } else { callocbench_cpu_relax() }
}

// MARK: - SPSC ring

/// A single-producer single-consumer ring of words (object pointers).
///
///   head  written by the consumer only (release, after it has read the slot); read by the
///         producer (acquire) when the ring looks full: pairs so the producer never overwrites
///         a slot the consumer is still reading.
///   tail  written by the producer only (release, after it has written the slot); read by the
///         consumer (acquire) when the ring looks empty: pairs so the consumer sees the slot's
///         value and the object's contents written before the push.
/// head and tail are 128 bytes apart (no false sharing, adjacent-line prefetch included); each
/// side keeps a private copy of the other's index and rereads it only when it must.
struct SPSCRing: @unchecked Sendable {
    static let capacity = 1024
    static let mask = capacity - 1
    /// [0] head, [16] tail, [32...] slots.
    let base: UnsafeMutablePointer<UInt64>

    init() {
        base = .allocate(capacity: 32 + Self.capacity)
        base.initialize(repeating: 0, count: 32 + Self.capacity)
    }

    func deallocate() { base.deallocate() }

    var head: UnsafeMutablePointer<UInt64> { base }
    var tail: UnsafeMutablePointer<UInt64> { base + 16 }
    var slots: UnsafeMutablePointer<UInt64> { base + 32 }

    /// batch - 1 for a side that publishes its index once per `batch` operations: a power of two,
    /// at most the capacity.
    static func publishMask(batch: Int) -> UInt64 {
        precondition(batch > 0 && batch & (batch - 1) == 0 && batch <= capacity,
                     "SPSCRing: a batch of \(batch) is not a power of two from 1 to \(capacity)")
        return UInt64(batch - 1)
    }

    /// The producer's side; one per ring, used by one thread.
    struct Producer {
        let ring: SPSCRing
        /// batch - 1: the tail is published once per `batch` pushes (and by `publish()`).
        let publishMask: UInt64
        var tail: UInt64 = 0
        var headSeen: UInt64 = 0

        init(_ ring: SPSCRing, batch: Int = 1) {
            self.ring = ring
            publishMask = SPSCRing.publishMask(batch: batch)
            tail = callocbench_load_relaxed(ring.tail)
            headSeen = callocbench_load_acquire(ring.head)
        }

        /// False when the ring is full; everything pushed before is published then, so the
        /// consumer can make room.
        @inline(__always)
        mutating func push(_ object: UnsafeMutableRawPointer) -> Bool {
            if tail &- headSeen == UInt64(SPSCRing.capacity) {
                headSeen = callocbench_load_acquire(ring.head)
                if tail &- headSeen == UInt64(SPSCRing.capacity) { publish(); return false }
            }
            ring.slots[Int(tail & UInt64(SPSCRing.mask))] = UInt64(UInt(bitPattern: object))
            tail &+= 1
            if tail & publishMask == 0 { callocbench_store_release(ring.tail, tail) }
            return true
        }

        /// Makes every push so far visible to the consumer.
        @inline(__always)
        func publish() { callocbench_store_release(ring.tail, tail) }
    }

    /// The consumer's side; one per ring, used by one thread.
    struct Consumer {
        let ring: SPSCRing
        /// batch - 1: the head is published once per `batch` pops, and whenever the ring is
        /// found empty (so a producer waiting for room always gets it).
        let publishMask: UInt64
        var head: UInt64 = 0
        var tailSeen: UInt64 = 0

        init(_ ring: SPSCRing, batch: Int = 1) {
            self.ring = ring
            publishMask = SPSCRing.publishMask(batch: batch)
            head = callocbench_load_relaxed(ring.head)
            tailSeen = callocbench_load_acquire(ring.tail)
        }

        @inline(__always)
        mutating func pop() -> UnsafeMutableRawPointer? {
            if head == tailSeen {
                tailSeen = callocbench_load_acquire(ring.tail)
                if head == tailSeen {
                    if publishMask != 0 { callocbench_store_release(ring.head, head) }
                    return nil
                }
            }
            let word = ring.slots[Int(head & UInt64(SPSCRing.mask))]
            head &+= 1
            if head & publishMask == 0 { callocbench_store_release(ring.head, head) }
            return UnsafeMutableRawPointer(bitPattern: UInt(word))
        }
    }
}

/// A fixed set of rings, shared by the threads of a repetition.
struct RingSet: @unchecked Sendable {
    let rings: UnsafeMutablePointer<SPSCRing>
    let count: Int

    init(count: Int) {
        self.count = count
        rings = .allocate(capacity: count)
        for i in 0..<count { (rings + i).initialize(to: SPSCRing()) }
    }

    subscript(i: Int) -> SPSCRing { rings[i] }

    func deallocate() {
        for i in 0..<count { rings[i].deallocate() }
        rings.deinitialize(count: count)
        rings.deallocate()
    }
}

/// One counter per thread (stamp mismatches, peaks), one cache line apart.
struct PerThreadCounters: @unchecked Sendable {
    let words: UnsafeMutablePointer<UInt64>
    let count: Int
    init(count: Int) {
        self.count = count
        words = .allocate(capacity: count * 8)
        words.initialize(repeating: 0, count: count * 8)
    }
    func add(_ n: Int, thread: Int) { words[thread * 8] &+= UInt64(n) }
    func set(_ n: Int, thread: Int) { words[thread * 8] = UInt64(n) }
    var total: Int { (0..<count).reduce(0) { $0 + Int(words[$1 * 8]) } }
    func deallocate() { words.deallocate() }
}

// MARK: - threads

/// T threads, each running the hot pair independently: scaling of the fast path.
struct ThreadsWorkload: Workload {
    let size: Int
    let threads: Int
    let perThread: Int

    init(_ c: WorkloadContext) {
        size = c.size
        threads = c.threads
        perThread = c.scale.pick(full: 4_000_000, quick: 400_000, test: 2000) / c.threads
    }

    func repetition<A: FixedSizeAllocator>(_ a: A) throws -> Measured {
        let perThread = self.perThread, size = self.size
        let wall = runTimedThreads(threads) { _, gate in
            var a = a
            keepInFrame(&a)
            gate.arriveAndWait()
            pairLoop(a, count: perThread, size: size)
        }
        return Measured(ops: perThread * threads, seconds: wall, peakLiveObjects: threads)
    }
}

// MARK: - prodcons

/// How producers and consumers are arranged.
protocol ProdConsShape: Sendable {
    /// (producers, consumers) for a `threads` parameter.
    static func split(threads: Int) -> (Int, Int)
}
/// One producer, one consumer, whatever `threads` says.
enum OneToOne: ProdConsShape { static func split(threads: Int) -> (Int, Int) { (1, 1) } }
/// threads/2 producers and threads/2 consumers, at least one each.
enum ManyToMany: ProdConsShape {
    static func split(threads: Int) -> (Int, Int) { (max(1, threads / 2), max(1, threads / 2)) }
}

/// Producers allocate and touch objects and hand them to consumers, which check and free them:
/// every free is a cross-thread free. Producer i sends its k-th object to consumer k mod C through
/// the ring (i, k mod C); the stamp is the object's sequence number on its ring, which the
/// consumer checks (a wrong stamp means a lost or corrupted object, and fails the cell).
///
/// Version 3: the rings hand objects over in batches of `batch` (each side publishes its index
/// once per batch, and whenever it has to wait). Published one by one, the ring's own index and
/// slot lines crossed between the CPUs on every object, and how often depended on whether the
/// ring ran nearly empty or nearly full, which the scheduler decided: on the Intel machine one
/// run's five rounds of prodcons-1x1 read 28.6-87.3 ns for the slab and 31.9-57.3 for jemalloc,
/// and the two-thread medians moved 2-3x between runs. In batches (three runs of five rounds)
/// the slab read 16.6-23.5 ns with one round at 47.7, jemalloc 30.1-42.5 with two at 60-71,
/// glibc, mimalloc and the slab's run medians within 10% of each other; 128 instead of 32
/// changed no median by more than the noise, so the ring no longer sets the pace.
struct ProdConsWorkload<Shape: ProdConsShape>: Workload {
    let size: Int
    let producers: Int
    let consumers: Int
    let total: Int
    /// Objects a ring hands over at once: 32 pointers, four cache lines.
    static var batch: Int { 32 }

    init(_ c: WorkloadContext) {
        size = c.size
        (producers, consumers) = Shape.split(threads: c.threads)
        // 800K objects, about 20 ms: a repetition is a child of its own (rounds), and the host's
        // throttling, which varied the medians 3x between runs, is caught by the canary; halved
        // from 1.6M with version 2, which measures twice the warm-ups.
        let objects = c.scale.pick(full: 800_000, quick: 80_000, test: 2000)
        total = objects / producers * producers
    }

    /// Objects producer `i` sends to consumer `j`.
    static func objects(perProducer: Int, consumers: Int, to j: Int) -> Int {
        perProducer / consumers + (j < perProducer % consumers ? 1 : 0)
    }

    func repetition<A: FixedSizeAllocator>(_ a: A) throws -> Measured {
        let rings = RingSet(count: producers * consumers)
        let failures = PerThreadCounters(count: producers + consumers)
        defer { rings.deallocate(); failures.deallocate() }
        let (P, C, size) = (producers, consumers, self.size)
        let perProducer = total / producers
        let wall = runTimedThreads(P + C) { t, gate in
            if t < P {
                Self.produce(a, rings: rings, producer: t, consumers: C, count: perProducer, size: size, gate: gate)
            } else {
                let bad = Self.consume(a, rings: rings, consumer: t - P, producers: P, consumers: C,
                                       perProducer: perProducer, size: size, gate: gate)
                failures.add(bad, thread: t)
            }
        }
        let bad = failures.total
        guard bad == 0 else {
            throw WorkloadFailure(description: "prodcons: \(bad) objects arrived with a wrong stamp")
        }
        return Measured(ops: perProducer * P, seconds: wall,
                        peakLiveObjects: min(total, P * C * SPSCRing.capacity + P + C))
    }

    static func produce<A: FixedSizeAllocator>(_ a: A, rings: RingSet, producer i: Int, consumers C: Int,
                                               count: Int, size: Int, gate: ThreadGate) {
        var a = a
        keepInFrame(&a)
        // Per-consumer state on this thread's stack: the ring's producer side and the sequence.
        let sides = UnsafeMutablePointer<SPSCRing.Producer>.allocate(capacity: C)
        let sequence = UnsafeMutablePointer<UInt64>.allocate(capacity: C)
        for j in 0..<C {
            (sides + j).initialize(to: SPSCRing.Producer(rings[i * C + j], batch: Self.batch))
            sequence[j] = 0
        }
        defer { sides.deallocate(); sequence.deallocate() }
        gate.arriveAndWait()
        var j = 0
        for _ in 0..<count {
            let p = a.allocate()
            touch(p, size: size, stamp: sequence[j])
            sequence[j] &+= 1
            var spins = 0
            while !sides[j].push(p) { backOff(&spins) }
            j = j + 1 == C ? 0 : j + 1
        }
        for j in 0..<C { sides[j].publish() }
    }

    /// Returns the number of objects with a wrong stamp.
    static func consume<A: FixedSizeAllocator>(_ a: A, rings: RingSet, consumer j: Int, producers P: Int,
                                               consumers C: Int, perProducer: Int, size: Int,
                                               gate: ThreadGate) -> Int {
        var a = a
        keepInFrame(&a)
        let sides = UnsafeMutablePointer<SPSCRing.Consumer>.allocate(capacity: P)
        let received = UnsafeMutablePointer<Int>.allocate(capacity: P)
        for i in 0..<P {
            (sides + i).initialize(to: SPSCRing.Consumer(rings[i * C + j], batch: Self.batch))
            received[i] = 0
        }
        defer { sides.deallocate(); received.deallocate() }
        let expected = objects(perProducer: perProducer, consumers: C, to: j)
        var remaining = expected * P
        var bad = 0
        gate.arriveAndWait()
        var spins = 0
        while remaining > 0 {
            var got = 0
            for i in 0..<P {
                while let p = sides[i].pop() {
                    if stampOf(p, size: size) != expectedStamp(UInt64(received[i]), size: size) { bad &+= 1 }
                    received[i] &+= 1
                    a.free(p)
                    got &+= 1
                }
            }
            remaining -= got
            if got == 0 { backOff(&spins) }
        }
        return bad
    }
}

// MARK: - larson

/// Larson & Krishnan's server simulation, fixed-size: each thread owns `slots` objects and
/// replaces random ones; every `handOffEvery` replacements it takes `chunk` random live objects
/// out (replacing them with new ones) and hands them to the next thread, (t + 1) mod T, through
/// an SPSC ring; each thread frees what it receives. Ends: a thread frees its own slots, says it
/// has finished, and keeps draining its inbox until every thread has finished (the finish count
/// is released after a thread's last push and acquired before the final drain, so nothing sent
/// is left behind). With one thread, the ring goes to itself.
/// Peak live objects: each thread records the most objects in flight in its outbox (read after
/// each hand-off, once per 128 replacements). That sample can miss up to a chunk per thread (a
/// receiver's popped-but-not-yet-freed objects, a sample taken while the receiver had just caught
/// up: the ledger test saw 17 more than the plain sum with 2 threads), so the sum over threads of
/// (slots + that maximum + one chunk) bounds the true peak from above and stays close to it.
struct LarsonWorkload: Workload {
    static let handOffEvery = 128
    static let chunk = 32
    let size: Int
    let threads: Int
    let slotsPerThread: Int
    let replacements: Int

    init(_ c: WorkloadContext) {
        size = c.size
        threads = c.threads
        slotsPerThread = c.scale == .test ? 100 : 1000
        replacements = c.scale.pick(full: 1_000_000, quick: 100_000, test: 2000) / c.threads
    }

    /// Objects allocated (and freed) by one thread in a repetition.
    var opsPerThread: Int { slotsPerThread + replacements + replacements / Self.handOffEvery * Self.chunk }

    func repetition<A: FixedSizeAllocator>(_ a: A) throws -> Measured {
        let T = threads
        let rings = RingSet(count: T)
        let inFlight = PerThreadCounters(count: T)
        defer { rings.deallocate(); inFlight.deallocate() }
        let (slots, replacements, size) = (slotsPerThread, self.replacements, self.size)
        let wall = runTimedThreads(T) { t, gate in
            let most = Self.serve(a, thread: t, threads: T, rings: rings, slots: slots, replacements: replacements,
                                  size: size, gate: gate)
            inFlight.set(most, thread: t)
        }
        return Measured(ops: opsPerThread * T, seconds: wall,
                        peakLiveObjects: T * (slotsPerThread + Self.chunk) + inFlight.total)
    }

    /// One thread's work; returns the most objects seen in flight in its outbox.
    static func serve<A: FixedSizeAllocator>(_ a: A, thread t: Int, threads T: Int, rings: RingSet, slots n: Int,
                                             replacements: Int, size: Int, gate: ThreadGate) -> Int {
        var a = a
        keepInFrame(&a)
        let slots = UnsafeMutablePointer<UnsafeMutableRawPointer?>.allocate(capacity: n)
        defer { slots.deallocate() }
        var outbox = SPSCRing.Producer(rings[(t + 1) % T])
        var inbox = SPSCRing.Consumer(rings[t])
        var rng = SplitMix64(seed: 0x1A_850D ^ UInt64(t) << 32)
        var mostInFlight: UInt64 = 0
        gate.arriveAndWait()

        @inline(__always) func drainInbox() {
            while let p = inbox.pop() { a.free(p) }
        }

        for i in 0..<n {
            let p = a.allocate()
            touch(p, size: size, stamp: UInt64(i))
            slots[i] = p
        }
        var r = 0
        while r < replacements {
            replaceRandomSlot(a, slots: slots, count: n, rng: &rng, size: size, stamp: UInt64(truncatingIfNeeded: r))
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
                    let q = a.allocate()
                    touch(q, size: size, stamp: UInt64(k))
                    slots[k] = q
                }
                // Relaxed: a statistic; a stale head only overstates what is in flight.
                mostInFlight = max(mostInFlight, outbox.tail &- callocbench_load_relaxed(outbox.ring.head))
                drainInbox()
            }
        }
        callocbench_black_hole(slots)
        for i in 0..<n { a.free(slots[i].unsafelyUnwrapped) }
        gate.finish(threads: T, draining: drainInbox)
        return Int(mostInFlight)
    }
}
