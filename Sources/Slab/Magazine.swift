// Magazine: an array of M rounds with a 64-byte header, living in a per-cache magazine region. A
// round is an object as 32 bits: its offset from the cache's range base, divided by 8
// (`RoundCodec` below, cslab_round_of in CSlab.h), so a magazine of 255 takes 1,088 bytes instead
// of the 2,112 that pointers would. A
// magazine is named by its handle: its offset in the region divided by 4 (so the rseq sections
// reach round i at base + 4 * (handle + i) + 64 with one addressing mode). The
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

/// A magazine's name: its offset in the magazine region / 4. 0 is no magazine.
typealias MagazineHandle = UInt64

/// An object as a magazine holds it (CSlab.h): (object - base) >> 3, where the base is the
/// cache's range base; every object of the cache lies within 32 GiB above it.
struct RoundCodec {
    let base: UInt

    @inline(__always) func round(_ object: UnsafeMutableRawPointer) -> UInt32 {
        cslab_round_of(object, UInt64(base))
    }
    @inline(__always) func object(_ round: UInt32) -> UnsafeMutableRawPointer {
        UnsafeMutableRawPointer(bitPattern: base &+ UInt(round) &<< UInt(CSLAB_ROUND_SHIFT)).unsafelyUnwrapped
    }
}

final class MagazineRegion: @unchecked Sendable {
    /// Handles are CSLAB_HANDLE_BITS (24) bits of 4-byte units: a 64 MiB region, reserved,
    /// touched as magazines are made (over 60,000 magazines of 255 rounds; the depot's limit keeps
    /// a cache to a few thousand at most).
    static let handleBits = Int(CSLAB_HANDLE_BITS)
    static let unit = Int(CSLAB_HANDLE_UNIT)
    static let regionBytes = unit << handleBits
    /// The most rounds a CPU state's count field holds.
    static let maxCapacity = CPUState.maxRounds

    let base: UnsafeMutableRawPointer
    /// Rounds per magazine (M).
    let capacity: Int
    let magazineBytes: Int
    /// Next free handle (bump allocation). Written by fetch-add, from any thread.
    private let nextHandle: UnsafeMutablePointer<UInt64>

    /// The bytes of a magazine of `capacity` rounds: the header and the rounds, in whole cache lines.
    static func magazineBytes(capacity: Int) -> Int {
        roundUp(Int(CSLAB_MAGAZINE_HEADER) + capacity * MemoryLayout<UInt32>.size, 64)
    }

    /// The most magazines of `capacity` rounds a region holds (the first slot is never used).
    static func maxMagazines(capacity: Int) -> Int { regionBytes / magazineBytes(capacity: capacity) - 1 }

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
        magazineBytes = Self.magazineBytes(capacity: capacity)
        nextHandle = .allocate(capacity: 1)
        // Handle 0 means "no magazine": the first magazine-sized slot stays unused.
        nextHandle.initialize(to: UInt64(magazineBytes / Self.unit))
    }

    deinit {
        munmap(base, Self.regionBytes)
        nextHandle.deallocate()
    }

    /// Magazines handed back by `giveBack` (their memory returned to the OS where whole pages
    /// allow), reused by `make` before the bump moves on. Slow path only: a lock and an array.
    private let spare = Lock<[MagazineHandle]>([])
    /// For the fork handlers (Fork.swift).
    var mutexForFork: UnsafeMutablePointer<pthread_mutex_t> { spare.mutexForFork }

    /// A new, empty magazine, or nil when the region is exhausted (the caller then bypasses the
    /// magazine layer for this object).
    func make() -> MagazineHandle? {
        if let h = spare.withLock({ $0.popLast() }) { return firstTouch(h) }
        let units = UInt64(magazineBytes / Self.unit)
        var h = cslab_load_relaxed(nextHandle)
        // A CAS rather than a fetch-add, so that an exhausted region's bump stays at its end and
        // `made` stays exact.
        repeat {
            guard h + units <= UInt64(1) << Self.handleBits else { return nil }
        } while !cslab_cas_acquire(nextHandle, &h, h + units)
        return firstTouch(h)
    }

    /// Writes the new magazine's (zero) round count, so that a page of the region that was never
    /// touched or was given back faults in once, for writing. Read first (the push reads
    /// `top_guard`), it was mapped to the zero page and then faulted again on the first write:
    /// two faults a page, thousands of them when a cache refills after a shrink.
    @inline(__always)
    private func firstTouch(_ h: MagazineHandle) -> MagazineHandle {
        header(h).pointee.rounds = 0
        return h
    }

    /// Magazines made so far (the spare ones included).
    var made: Int { Int(cslab_load_relaxed(nextHandle) / UInt64(magazineBytes / Self.unit)) - 1 }

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
            forEachRun(ofSorted: s.sorted().map { UInt($0) * UInt(Self.unit) }, length: UInt(magazineBytes)) { start, end in
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
        let units = UInt64(magazineBytes / Self.unit)
        return h >= units && h % units == 0 && h < cslab_load_relaxed(nextHandle)
    }

    @inline(__always)
    func header(_ h: MagazineHandle) -> UnsafeMutablePointer<cslab_magazine> {
        (base + Int(h) * Self.unit).assumingMemoryBound(to: cslab_magazine.self)
    }

    @inline(__always)
    func rounds(_ h: MagazineHandle) -> UnsafeMutablePointer<UInt32> {
        (base + Int(h) * Self.unit + Int(CSLAB_MAGAZINE_HEADER)).assumingMemoryBound(to: UInt32.self)
    }
}
