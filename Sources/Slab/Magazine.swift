// Magazine: an array of M rounds (object pointers) with a 64-byte header, living in a per-cache
// magazine region. A magazine is named by its handle: its offset in the region divided by 8 (so
// the rseq sections reach round i at base + 8 * (handle + i) + 64 with one addressing mode). The
// handle, not a pointer, is what the per-CPU state word and the depot's list heads hold, because
// it is small (24 bits) and the region is never unmapped while the cache lives: a stale handle
// always names readable memory, which is what makes the depot's lock-free pop safe.
//
// Magazine size is chosen by object size (Bonwick & Adams 2001 give small objects bigger
// magazines): the memory a CPU can hold back stays near 2 * M * size.

import CSlab

#if canImport(Glibc)
import Glibc
#endif

/// A magazine's name: its offset in the magazine region / 8. 0 is no magazine.
typealias MagazineHandle = UInt64

final class MagazineRegion: @unchecked Sendable {
    /// Handles are CSLAB_HANDLE_BITS (24) bits of 8-byte units: a 128 MiB region, reserved,
    /// touched as magazines are made (over 100,000 magazines; the depot's limit keeps a cache to a
    /// few hundred).
    static let handleBits = Int(CSLAB_HANDLE_BITS)
    static let regionBytes = 8 << handleBits
    /// The most rounds a CPU state's count field holds.
    static let maxCapacity = CPUState.maxRounds

    let base: UnsafeMutableRawPointer
    /// Rounds per magazine (M).
    let capacity: Int
    let magazineBytes: Int
    /// Next free handle (bump allocation). Written by fetch-add, from any thread.
    private let nextHandle: UnsafeMutablePointer<UInt64>

    /// M for objects of `objectSize` bytes.
    static func capacity(forObjectSize size: Int) -> Int {
        // Measured on the batch-1000 workload (20-byte objects): M = 128 cost 4.1-4.8 ns/op,
        // M = 255 (the most the state word's 8-bit counts hold) 3.7-4.0: fewer ladder trips.
        switch size {
        case ...64: return maxCapacity
        case ...256: return 128
        case ...1024: return 64
        case ...4096: return 32
        default: return 16
        }
    }

    init?(capacity: Int) {
        precondition(capacity >= 1 && capacity <= Self.maxCapacity)
        guard PageSource.shared.allowMagazineRegion() else { return nil }
        guard let p = mmap(nil, Self.regionBytes, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
              p != MAP_FAILED else { return nil }
        base = p
        self.capacity = capacity
        magazineBytes = roundUp(Int(CSLAB_MAGAZINE_HEADER) + capacity * 8, 64)
        nextHandle = .allocate(capacity: 1)
        // Handle 0 means "no magazine": the first magazine-sized slot stays unused.
        nextHandle.initialize(to: UInt64(magazineBytes / 8))
    }

    deinit {
        munmap(base, Self.regionBytes)
        nextHandle.deallocate()
    }

    /// Magazines handed back by `giveBack` (their memory returned to the OS where whole pages
    /// allow), reused by `make` before the bump moves on. Slow path only: a lock and an array.
    private let spare = Lock<[MagazineHandle]>([])

    /// A new, empty magazine, or nil when the region is exhausted (the caller then bypasses the
    /// magazine layer for this object).
    func make() -> MagazineHandle? {
        if let h = spare.withLock({ $0.popLast() }) { return h }
        let units = UInt64(magazineBytes / 8)
        var h = cslab_load_relaxed(nextHandle)
        // A CAS rather than a fetch-add, so that an exhausted region's bump stays at its end and
        // `made` stays exact.
        repeat {
            guard h + units <= UInt64(1) << Self.handleBits else { return nil }
        } while !cslab_cas_acquire(nextHandle, &h, h + units)
        return h
    }

    /// Magazines made so far (the spare ones included).
    var made: Int { Int(cslab_load_relaxed(nextHandle) / UInt64(magazineBytes / 8)) - 1 }

    /// The magazines given back and not made again.
    var spareHandles: [MagazineHandle] { spare.withLock { $0 } }

    /// Takes back empty magazines no list or CPU holds any more (a cache's `shrink()`), and
    /// returns to the OS every page of the region that only spare magazines cover. A spare
    /// magazine's memory then reads zeros, which is an empty magazine (the header's `top_guard`
    /// must be 0, and nothing else in an empty magazine is read); a stale handle in a racing depot
    /// pop still reads mapped memory. Returns the bytes given back to the OS.
    @discardableResult
    func giveBack(_ handles: [MagazineHandle]) -> Int {
        guard !handles.isEmpty else { return 0 }
        // Under the lock throughout: a magazine that make() hands out again must not have its
        // page returned behind its new user.
        return spare.withLock { s -> Int in
            s += handles
            // Runs of adjacent spare magazines (offsets in the region); the whole pages inside
            // each run go back.
            let page = UInt(PageSource.pageSize)
            var released = 0
            forEachRun(ofSorted: s.sorted().map { UInt($0) * 8 }, length: UInt(magazineBytes)) { start, end in
                let first = (start + page - 1) & ~(page - 1), last = end & ~(page - 1)
                guard first < last else { return }
                madvise(base + Int(first), Int(last - first), MADV_DONTNEED)
                released += Int(last - first)
            }
            return released
        }
    }

    /// True when `h` names a magazine made so far (not 0, on a magazine boundary, below the bump).
    func isMagazine(_ h: MagazineHandle) -> Bool {
        let units = UInt64(magazineBytes / 8)
        return h >= units && h % units == 0 && h < cslab_load_relaxed(nextHandle)
    }

    @inline(__always)
    func header(_ h: MagazineHandle) -> UnsafeMutablePointer<cslab_magazine> {
        (base + Int(h) * 8).assumingMemoryBound(to: cslab_magazine.self)
    }

    @inline(__always)
    func rounds(_ h: MagazineHandle) -> UnsafeMutablePointer<UnsafeMutableRawPointer?> {
        (base + Int(h) * 8 + Int(CSLAB_MAGAZINE_HEADER)).assumingMemoryBound(to: UnsafeMutableRawPointer?.self)
    }
}
