// Depot: the cache-wide stock of magazines, one lock-free stack of full magazines and one of
// empty ones (Bonwick & Adams 2001, section 3.3). CPUs come here once per M allocations or frees
// at most, thanks to the previous magazine.
//
// ABA defence. A stack head is one 64-bit word: a version tag (the upper 40 bits) above a magazine
// handle (the lower CSLAB_HANDLE_BITS, 24). Every successful push or pop increments the tag, so a
// pop that read head H and next N, was delayed while H was popped, reused and pushed back, fails
// its CAS because the tag moved on.
// A stale `next` read is harmless: handles name memory in the magazine region, which stays mapped
// for the cache's life. The tag wraps after 2^40 operations on one list; a thread would have to
// sleep between its load and its CAS through exactly that many operations to be fooled.
// (A single-word CAS, cheaper than the 16-byte one a pointer+counter pair would need.)
//
// Working set (Bonwick's reaping). `fullLowWater` is the fewest full magazines the depot held
// since the last reap: that many were never needed in the interval, so `reap()` returns exactly
// those to the slab layer. The low-water mark is updated with relaxed operations and may be off
// by one under races; reaping one magazine more or less is harmless.

import CSlab

final class Depot: @unchecked Sendable {
    enum List: Int { case full = 0, empty = 1 }

    // Word indices in `words` (each list head on its own 128-byte line).
    private static let headWord = [0, 16]
    private static let countWord = [1, 17]
    private static let fullLowWaterWord = 2
    private static let fullRoundsWord = 3
    private static let contentionWord = 32
    private static let wordCount = 48

    private let words: UnsafeMutablePointer<UInt64>
    let region: MagazineRegion

    init(region: MagazineRegion) {
        self.region = region
        let raw = UnsafeMutableRawPointer.allocate(byteCount: Self.wordCount * 8, alignment: 128)
        words = raw.initializeMemory(as: UInt64.self, repeating: 0, count: Self.wordCount)
    }

    deinit { words.deallocate() }

    /// A head word: `tag << tagShift | handle`.
    static let handleMask = CPUState.handleMask
    static let tagShift = UInt64(CSLAB_HANDLE_BITS)

    /// The head that follows `old` when `handle` becomes the top: the tag moves on by one.
    @inline(__always) private static func head(after old: UInt64, top handle: MagazineHandle) -> UInt64 {
        ((old >> tagShift) &+ 1) << tagShift | handle
    }

    /// Pushes a magazine. For the full list, set its header's `rounds` first: the release in the
    /// CAS publishes the header and rounds to the thread that pops it.
    func push(_ h: MagazineHandle, to list: List) {
        let head = words + Self.headWord[list.rawValue]
        let link = UnsafeMutableRawPointer(region.header(h)).assumingMemoryBound(to: UInt64.self)
        // Read before the CAS: once pushed, the magazine may be popped, used and pushed again
        // with another count before this thread reads its header.
        let rounds = list == .full ? region.header(h).pointee.rounds : 0
        var old = cslab_load_relaxed(head)
        while true {
            cslab_store_relaxed(link, old & Self.handleMask)
            let new = Self.head(after: old, top: h)
            // Release pairs with the acquire in pop(): the popper sees `next`, rounds and contents.
            if cslab_cas_acq_rel(head, &old, new) { break }
            cslab_fetch_add_relaxed(words + Self.contentionWord, 1)
        }
        cslab_fetch_add_relaxed(words + Self.countWord[list.rawValue], 1)
        if list == .full { cslab_fetch_add_relaxed(words + Self.fullRoundsWord, rounds) }
    }

    /// Pops a magazine, or nil when the list is empty.
    func pop(_ list: List) -> MagazineHandle? {
        let head = words + Self.headWord[list.rawValue]
        var old = cslab_load_acquire(head)
        while true {
            let h = old & Self.handleMask
            if h == 0 { return nil }
            // May read the link of a magazine that another thread popped meanwhile; the tag makes
            // our CAS fail in that case, and the read itself is of mapped memory.
            let link = UnsafeMutableRawPointer(region.header(h)).assumingMemoryBound(to: UInt64.self)
            let next = cslab_load_relaxed(link)
            let new = Self.head(after: old, top: next)
            if cslab_cas_acq_rel(head, &old, new) {
                let remaining = cslab_fetch_sub_relaxed(words + Self.countWord[list.rawValue], 1) &- 1
                if list == .full {
                    noteFullLevel(remaining)
                    // Ours now: no other thread can change its count until we push it again.
                    cslab_fetch_sub_relaxed(words + Self.fullRoundsWord, region.header(h).pointee.rounds)
                }
                return h
            }
            cslab_fetch_add_relaxed(words + Self.contentionWord, 1)
        }
    }

    private func noteFullLevel(_ level: UInt64) {
        let mark = words + Self.fullLowWaterWord
        if Int64(bitPattern: level) < Int64(bitPattern: cslab_load_relaxed(mark)) {
            cslab_store_relaxed(mark, level)
        }
    }

    func count(_ list: List) -> Int { max(0, Int(Int64(bitPattern: cslab_load_relaxed(words + Self.countWord[list.rawValue])))) }

    /// Rounds held by the full list (relaxed; exact when the depot is quiet).
    var fullRounds: Int { max(0, Int(Int64(bitPattern: cslab_load_relaxed(words + Self.fullRoundsWord)))) }

    /// CAS retries on the depot's lists since the cache was created (contention).
    var contention: Int { Int(cslab_load_relaxed(words + Self.contentionWord)) }

    /// The magazines on `list`, top first, following the links (bounded by the magazines made, so
    /// a corrupted list cannot loop). Exact only while the depot is quiet.
    func handles(on list: List) -> [MagazineHandle] {
        var result: [MagazineHandle] = []
        var h = cslab_load_acquire(words + Self.headWord[list.rawValue]) & Self.handleMask
        while h != 0 && result.count <= region.made {
            result.append(h)
            h = cslab_load_relaxed(UnsafeMutableRawPointer(region.header(h)).assumingMemoryBound(to: UInt64.self)) & Self.handleMask
        }
        return result
    }

    /// The number of full magazines that were not needed since the last call, and starts a new
    /// interval (Bonwick's working-set estimate).
    func takeExcessEstimate() -> Int {
        let mark = words + Self.fullLowWaterWord
        let excess = max(0, Int(Int64(bitPattern: cslab_load_relaxed(mark))))
        cslab_store_relaxed(mark, UInt64(count(.full)))
        return excess
    }
}

// MARK: Invariant checking

extension Depot {
    /// Walks both lists and checks them against the counters; returns the problems found (empty
    /// when all hold):
    ///   - each list ends (a walk that meets a magazine twice has found a cycle, and stops) and
    ///     its length equals `count(list)`;
    ///   - every handle on a list names a magazine of the region: not 0, on a magazine boundary,
    ///     below the region's bump pointer;
    ///   - no magazine is on both lists, or twice on one;
    ///   - every full magazine holds 1...capacity rounds (its header's `rounds`), and
    ///     `fullRounds` is their sum.
    /// Valid only when the depot is quiet: no thread pushes or pops while it runs, and every
    /// push and pop has finished (a push increments the count after its CAS, a pop decrements it
    /// after its own, so a concurrent check sees counts one off and reads links being rewritten).
    /// Compiled in every build, run only when asked (tests, validation calls); it only reads.
    func checkInvariants() -> [String] {
        var problems: [String] = []
        let capacity = UInt64(region.capacity)
        let units = UInt64(region.magazineBytes / MagazineRegion.unit)
        let handleMask = Self.handleMask
        func invalid(_ h: UInt64) -> String? {
            if h == 0 { return "handle 0" }
            if h % units != 0 { return "handle \(h) is not on a magazine boundary (\(units) units)" }
            if !region.isMagazine(h) { return "handle \(h) is beyond the magazines made (\(region.made))" }
            return nil
        }
        var onList: [UInt64: List] = [:]
        var fullRoundsSum: UInt64 = 0
        for list in [List.full, List.empty] {
            var h = cslab_load_acquire(words + Self.headWord[list.rawValue]) & handleMask
            var length = 0
            // Bounded: each step meets a new valid handle (a repeat ends the walk), and there are
            // only `region.made` of those.
            while h != 0 {
                if let why = invalid(h) {
                    problems.append("\(list) list, position \(length): \(why)")
                    break
                }
                if let other = onList[h] {
                    problems.append(other == list
                        ? "\(list) list, position \(length): magazine \(h) appears twice (a cycle)"
                        : "\(list) list, position \(length): magazine \(h) is on both lists")
                    break
                }
                onList[h] = list
                length += 1
                if list == .full {
                    let rounds = region.header(h).pointee.rounds
                    if rounds < 1 || rounds > capacity {
                        problems.append("full list, position \(length - 1): magazine \(h) holds \(rounds) rounds (capacity \(capacity))")
                    }
                    fullRoundsSum &+= rounds
                }
                let next = cslab_load_relaxed(UnsafeMutableRawPointer(region.header(h)).assumingMemoryBound(to: UInt64.self))
                if next & ~handleMask != 0 {
                    problems.append("\(list) list, position \(length - 1): magazine \(h) links to \(next), not a handle")
                    break
                }
                h = next
            }
            let counted = Int64(bitPattern: cslab_load_relaxed(words + Self.countWord[list.rawValue]))
            if counted != Int64(length) {
                problems.append("\(list) list: count \(counted), walked \(length)")
            }
        }
        let counted = Int64(bitPattern: cslab_load_relaxed(words + Self.fullRoundsWord))
        if counted != Int64(bitPattern: fullRoundsSum) {
            problems.append("fullRounds \(counted), the full magazines hold \(fullRoundsSum)")
        }
        return problems
    }

    /// A list's head word split into its version tag and the top magazine's handle (for tests of
    /// the ABA defence).
    func head(_ list: List) -> (tag: UInt64, handle: MagazineHandle) {
        let word = cslab_load_acquire(words + Self.headWord[list.rawValue])
        return (word >> Self.tagShift, word & Self.handleMask)
    }
}
