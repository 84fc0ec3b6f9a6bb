// FastPath: allocate and free as the caller's code runs them, inlined into the caller.
//
// The allocation fast path is one rseq critical section (CSlab.h: cslab_rseq_magazine_pop): pop
// the loaded magazine of the CPU the thread is on. The free fast path checks the pointer, then
// pushes it onto the loaded magazine (cslab_rseq_magazine_push), which declines an object that
// is already its top round (a double free: the slow path reports it). Without rseq (the fallback
// mode) the same pop and push run on the thread's own slot (cslab_slot_magazine_pop/push: a
// busy flag stored around the operation, no atomic read-modify-write; CPUSlot.swift, section 2).
// Everything else, the Bonwick ladders, the slot search and the slab layer, is out of line
// (SlabCache.allocateSlow, CPUCache.swift).
//
// The fields are a copy of the cache's, in a value: a loop that holds a FastPath keeps them in
// registers, where fields of a class instance would be reloaded after every store through a raw
// pointer (the compiler cannot prove the store does not alias them).

import CSlab

/// A cache's allocation and free fast paths as a value (see `SlabCache.fastPath`).
public struct FastPath {
    @usableFromInline let rseqOffset: Int64
    @usableFromInline let cpus: UnsafeMutableRawPointer
    @usableFromInline let magazineBase: UnsafeMutableRawPointer
    /// The cache's address range (PageSource): every object of this cache lies inside it. The
    /// base is also the round base: magazines hold objects as offsets from it (Magazine.swift).
    @usableFromInline let rangeBase: UInt
    @usableFromInline let rangeSize: UInt
    /// The range's size in the mode whose inline pop and push the cache uses, 0 in the other:
    /// the free's range test picks its mode with the same comparison (as kmalloc's limits pick
    /// kfree's), and allocate tests them for non-zero. A pointer below neither (a cache without
    /// a CPU layer, an AddressSanitizer build, or a pointer outside the range) takes the
    /// out-of-line path, which checks it against `rangeSize`.
    @usableFromInline let rseqRangeSize: UInt
    @usableFromInline let slotRangeSize: UInt
    /// The cache's page map (PageSource, section 4): per page of the range, its slab's first
    /// object, or 0.
    @usableFromInline let pageMap: UnsafePointer<UInt>
    /// objectsPerSlab * stride: an object's offset from its slab's first object is below this.
    @usableFromInline let objectsBytes: UInt
    /// ceil(2^64 / stride), for the divisibility test (ExactDivider in Slab.swift).
    @usableFromInline let strideReciprocal: UInt64
    /// The inline rseq pop and push are used: rseq mode, and not an AddressSanitizer build
    /// (SlabCache.swift, section 9).
    @inlinable var usesRseq: Bool { rseqRangeSize != 0 }
    /// Fallback mode's inline pop and push on the thread's own slot are used (CSlab.h:
    /// cslab_slot_magazine_pop/push); false in rseq mode, without a CPU layer, and in an
    /// AddressSanitizer build.
    @inlinable var usesSlots: Bool { slotRangeSize != 0 }
    @usableFromInline unowned(unsafe) let back: CacheBackReference

    /// log2 of the page size: the page map has one word per page.
    @inlinable static var pageShift: UInt { UInt(CSLAB_PAGE_SHIFT) }

    init(rseqOffset: Int64, cpus: UnsafeMutableRawPointer, magazineBase: UnsafeMutableRawPointer,
         rangeBase: UInt, rangeSize: UInt, pageMap: UnsafePointer<UInt>, objectsBytes: UInt,
         strideReciprocal: UInt64, usesRseq: Bool, usesSlots: Bool, back: CacheBackReference) {
        self.rseqOffset = rseqOffset
        self.cpus = cpus
        self.magazineBase = magazineBase
        self.rangeBase = rangeBase
        self.rangeSize = rangeSize
        rseqRangeSize = usesRseq ? rangeSize : 0
        slotRangeSize = usesSlots ? rangeSize : 0
        self.pageMap = pageMap
        self.objectsBytes = objectsBytes
        self.strideReciprocal = strideReciprocal
        self.back = back
    }

    /// The cache this fast path belongs to.
    @inlinable public var cache: SlabCache { back.cache.unsafelyUnwrapped.takeUnretainedValue() }

    /// Allocates one constructed object, or returns nil when memory is exhausted.
    @inlinable @inline(__always)
    public func allocate() -> UnsafeMutableRawPointer? {
        if usesRseq {
            if let object = cslab_rseq_magazine_pop(rseqOffset, cpus, magazineBase, UInt64(rangeBase)) { return object }
        } else if usesSlots, let object = cslab_slot_magazine_pop(cpus, magazineBase, UInt64(rangeBase)) {
            return object
        }
        return back.cache.unsafelyUnwrapped._withUnsafeGuaranteedRef { $0.allocateSlow() }
    }

    /// Frees an object of this cache; a pointer that is not one stops the process with a message
    /// naming the cache and the pointer.
    @inlinable @inline(__always)
    public func free(_ object: UnsafeMutableRawPointer) {
        #if SLAB_INJECT_DELAY  // never in a normal build: proves the time gate (CSlab.h)
        let object = UnsafeMutableRawPointer(cslab_inject_delay(object)).unsafelyUnwrapped
        #endif
        #if SLAB_INJECT_INSTRUCTIONS  // never in a normal build: proves the instruction gate
        cslab_inject_instructions()
        #endif
        // The range test and the mode test are one comparison: in rseq mode `rseqRangeSize` is
        // the range's size, otherwise 0. A mode flag tested after the range test cost a branch,
        // and the flag and the range's size were two more values the caller's loop held in
        // registers or reloaded from its stack (callgrind, with M read from the CPU slot:
        // batch-*-1000 -5 to -8 instructions a pair, ctor-256 -9, the pair 61 -> 59).
        let inRange = UInt(bitPattern: object) &- rangeBase
        if _fastPath(inRange < rseqRangeSize) {
            checkObjectStart(object, inRange: inRange)
            if cslab_rseq_magazine_push(rseqOffset, cpus, magazineBase, object, UInt64(rangeBase)) { return }
        } else if inRange < slotRangeSize {
            checkObjectStart(object, inRange: inRange)
            if cslab_slot_magazine_push(cpus, magazineBase, object, UInt64(rangeBase)) { return }
        } else {
            // Out of line, with the cache's own copy of the fields: `rangeSize` need not stay in
            // a register across the caller's loop.
            return back.cache.unsafelyUnwrapped._withUnsafeGuaranteedRef { $0.freeChecked(object) }
        }
        back.cache.unsafelyUnwrapped._withUnsafeGuaranteedRef { $0.freeSlow(object) }
    }

    /// The free fast path without the ownership test: for the bench's `slab-bare` reference row
    /// only, which measures what the per-CPU layer's pop and push cost alone (the design's limit).
    /// A pointer that is not an object of this cache corrupts it; use `free`.
    @inlinable @inline(__always)
    public func _freeWithoutOwnershipCheck(_ object: UnsafeMutableRawPointer) { pushOrFreeSlow(object) }

    /// Both frees after their checks: the rseq push, else the slow path (ladders, fallback, slab
    /// layer, and the double-free report the push sends there).
    @inlinable @inline(__always)
    func pushOrFreeSlow(_ object: UnsafeMutableRawPointer) {
        // Likely: with the rseq branch laid out as the straight path, a loop that frees keeps the
        // fields the push needs in registers and ends without a jump (callgrind: the pair 69 ->
        // 61 instructions, batch-lifo-1000 74.7 -> 71.7, steady-random 86 -> 82; the fallback's
        // pair 80 -> 76, its batches +2 to +3). The same hint on `allocate` undid the pair's gain.
        if _fastPath(usesRseq) {
            if cslab_rseq_magazine_push(rseqOffset, cpus, magazineBase, object, UInt64(rangeBase)) { return }
        } else if usesSlots, cslab_slot_magazine_push(cpus, magazineBase, object, UInt64(rangeBase)) {
            return
        }
        back.cache.unsafelyUnwrapped._withUnsafeGuaranteedRef { $0.freeSlow(object) }
    }

    /// The ownership test on every free, without a lock and with one memory access: the address
    /// is inside this cache's range (so not from malloc or another cache), and it is the start of
    /// an object of the slab it falls in (so not an interior pointer, and not in a released slab,
    /// whose page map word reads 0). The word comes from the page map, not from the slab's
    /// header: 8 bytes a page against a header's 64 bytes a slab, the map stays cached longer.
    @inlinable @inline(__always)
    func checkOwnership(_ object: UnsafeMutableRawPointer) {
        let inRange = UInt(bitPattern: object) &- rangeBase
        guard inRange < rangeSize else { cache.diagnoseBadFree(object) }
        checkObjectStart(object, inRange: inRange)
    }

    /// The second half of the ownership test, for a pointer already known to be inside the range
    /// (`inRange` is its offset from the range's base).
    @inlinable @inline(__always)
    func checkObjectStart(_ object: UnsafeMutableRawPointer, inRange: UInt) {
        let objects = pageMap[Int(bitPattern: inRange &>> FastPath.pageShift)]
        let offset = UInt(bitPattern: object) &- objects
        // A multiple of the stride exactly when offset * c mod 2^64 <= c - 1 (ExactDivider);
        // offsets that pass the first comparison are below 2^22, as the identity requires.
        guard offset < objectsBytes, UInt64(offset) &* strideReciprocal <= strideReciprocal &- 1 else {
            cache.diagnoseBadFree(object)
        }
    }
}

/// The one reference from a FastPath back to its cache, for the slow paths. The cache holds it
/// strongly and points it at itself at the end of init; FastPath holds it unowned, so copying a
/// FastPath costs no reference counting.
@usableFromInline
final class CacheBackReference: @unchecked Sendable {
    /// Set once, at the end of the cache's init; read only on slow paths.
    @usableFromInline @exclusivity(unchecked) var cache: Unmanaged<SlabCache>?
    init() {}
}
