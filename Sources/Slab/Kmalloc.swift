// Kmalloc: the general-purpose heap built on the slab allocator, as the kernel builds kmalloc on
// kmem_cache: kmalloc(size), kzalloc, kcalloc, krealloc, kfree(pointer), ksize(pointer).
//
// 1. Where memory comes from
// --------------------------
//   size 0           the zero-size pointer: address 16, as Linux's ZERO_SIZE_PTR. Not nil, so a
//                    caller that checks for failure does not mistake it for one; backed by nothing
//                    (touching it faults, which catches a use of a zero-byte allocation); kfree
//                    and krealloc accept it, ksize says 0.
//   1 ... 8192       the smallest of 13 size classes that fits, each a SlabCache named as Linux
//                    names them (kmalloc-8, -16, -32, -64, -96, -128, -192, -256, -512, -1k, -2k,
//                    -4k, -8k) and served by the same per-CPU magazine layer as any cache.
//   8193 ... 4 MiB   a block of 2^order pages (order 2 to 10) from the buddy page allocator
//                    (KmallocLarge.swift).
//   above 4 MiB      straight from the OS: a mapping of its own, unmapped by kfree.
//   The OS threshold is the buddy allocator's top order: a 4 MiB block is a whole arena, and no
//   larger block exists. (Linux's page allocator stops at the same order on x86-64 and refuses
//   larger kmalloc requests; here they are mapped.)
//
// 2. Alignment
// ------------
//   At least 16 bytes for every size of 16 and more (what malloc gives), and natural alignment for
//   every power-of-two size (what Linux guarantees): the power-of-two classes align their objects
//   to their size, kmalloc-96 and kmalloc-192 to 16; page-allocator blocks are naturally aligned
//   by the buddy system; an OS mapping of a power-of-two size is aligned to that size. Slabs are
//   aligned to their size and hold no header (Slab.swift), so a power-of-two class fills its
//   slab exactly, with every object aligned (kmalloc-256 ... -8k: 32 objects a slab).
//
// 3. One range, split by class
// ----------------------------
//   kmalloc reserves one range of 14 equal slots of 2^S bytes (S = 36, 64 GiB each, halved until
//   the OS agrees): slot i holds size class i's slabs (its cache's page source), slot 13 the page
//   allocator's blocks. kfree finds a pointer's class with a subtraction and a shift, (p - base)
//   >> S, with no per-object header and no memory access. One range per class, reserved apart,
//   would leave the classes at unrelated addresses, and kfree would have to search 13 ranges (or
//   keep a map from address to class) to find a pointer's owner. The free-pointer test of the
//   class's caches (FastPath.checkOwnership's) then runs, so an interior pointer or one into a
//   released slab is reported instead of being pushed into a magazine.
//
// 4. Set-up
// ---------
//   On first use (kmalloc, kzalloc, kcalloc, krealloc or Kmalloc.setUp()): the range, the 13 caches
//   (from then on listed by SlabInfo.render and `slabinfo --demo`), and the class table, published
//   in CSlab's cslab_kmalloc table (CSlab.h, section 4). A program that never calls kmalloc
//   reserves nothing. The classes live as long as the process: their names are reserved, and
//   destroy() on one of them throws.
//
// 5. The fast paths
// -----------------
//   kmalloc and kfree inline two C functions (cslab_kmalloc_fast, cslab_kfree_fast): a size's class
//   from a byte table and the class's rseq pop; a pointer's class from its address, the free-
//   pointer test and the class's rseq push (in the fallback mode, the pop and push on the thread's
//   usual slot that the typed caches inline too). Each class's fields sit in one cache line of a C
//   global, so a call costs the typed cache's pop or push plus a few loads. Written in Swift over
//   a table of FastPath values, the 20-byte pair took 6.1 ns against the typed cache's 3.5; in C
//   it took 4.3. The test that admits a size (or a pointer's slot) also picks the mode, rseq or
//   the fallback's own slots, so the rseq paths carry no branch on the mode: 81 instructions a
//   pair under callgrind (91 with a mode flag tested on each side, a byte table of class indices
//   and the nil check that now folds away), against the typed cache's 59, whose FastPath fields
//   stay in registers across a loop.
//   kfree(p, size:) (cslab_kfree_sized_fast) is kfree for a caller that knows the size it asked
//   for: the class's fields come from the size, as kmalloc's do, and the pointer must lie in that
//   class's slot before the same free-pointer test. kfree's class, found from the pointer, waits
//   for the pointer (in a loop that frees what it just allocated: pop, round, pointer, class,
//   push); the size's does not. 85 instructions a pair, 0.91x kfree's time on the 20-byte pair
//   (README, "kmalloc").
//   Everything the fast paths decline goes to the slow paths below, which use the caches
//   themselves.
//
// 6. Bad input
// ------------
//   At the API edge it is thrown (KmallocError): a negative size, a size above `Kmalloc.maxSize`
//   (64 TiB, half of what x86-64 user space can address), a kcalloc whose count times size
//   overflows, and memory the OS refuses. A pointer kfree, ksize or krealloc cannot vouch for stops the process with a
//   message naming it, because going on would corrupt memory: a pointer kmalloc never returned
//   (from malloc, from a SlabCache, from the stack), an interior pointer, a page-allocator block or
//   a mapping freed twice.

import CSlab
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Errors at kmalloc's edge. Nothing was allocated or freed when one is thrown.
public enum KmallocError: Error, Equatable, CustomStringConvertible, Sendable {
    /// A negative size (or count).
    case negativeSize(Int)
    /// More than `Kmalloc.maxSize` bytes: no mapping could hold it.
    case tooLarge(Int)
    /// kcalloc: count x size does not fit in an Int.
    case overflow(count: Int, size: Int)
    /// The OS refused the memory.
    case outOfMemory(Int)

    public var description: String {
        switch self {
        case let .negativeSize(size): return "kmalloc: size \(size) is negative"
        case let .tooLarge(size):
            return "kmalloc: \(size) bytes is more than the largest allocation, \(Kmalloc.maxSize) bytes (64 TiB)"
        case let .overflow(count, size): return "kcalloc: \(count) x \(size) bytes overflows"
        case let .outOfMemory(size): return "kmalloc: out of memory for \(size) bytes"
        }
    }
}

/// One of kmalloc's size classes: a cache named as Linux names it.
public struct KmallocSizeClass: Sendable, Equatable, CustomStringConvertible {
    /// "kmalloc-96", "kmalloc-1k", ...
    public let name: String
    /// Object size: every request up to this size (and above the previous class's) lands here.
    public let size: Int
    /// Object alignment: the size for powers of two, 16 for 96 and 192.
    public let align: Int

    public var description: String { name }
}

/// Where a kmalloc allocation lives (`Kmalloc.origin(of:)`).
public enum KmallocOrigin: Sendable, Equatable, CustomStringConvertible {
    /// The zero-size pointer, from kmalloc(0).
    case zeroSize
    /// An object of a size class.
    case sizeClass(KmallocSizeClass)
    /// A block of 2^order pages from the buddy page allocator.
    case pages(order: Int)
    /// A mapping of its own, straight from the OS.
    case mapping(bytes: Int)

    /// The bytes usable at the pointer: what ksize returns.
    public var usableSize: Int {
        switch self {
        case .zeroSize: return 0
        case let .sizeClass(c): return c.size
        case let .pages(order): return SlabLayout.pageSize << order
        case let .mapping(bytes): return bytes
        }
    }

    public var description: String {
        switch self {
        case .zeroSize: return "the zero-size pointer"
        case let .sizeClass(c): return c.name
        case let .pages(order): return "the page allocator, order \(order) (\(1 << order) pages)"
        case let .mapping(bytes): return "an OS mapping of \(bytes) bytes"
        }
    }
}

/// kmalloc's numbers at one moment (exact when nothing is allocating or freeing).
public struct KmallocStatistics: Sendable {
    /// Each size class's cache, kmalloc-8 first; empty before kmalloc is first used.
    public var classes: [SlabCacheStatistics]
    /// Page-allocator blocks handed out and not freed, per order (index = order, 0...10).
    public var pageBlocks: [Int]
    /// OS mappings handed out and not freed, and their bytes.
    public var mappings: Int
    public var mappedBytes: Int

    /// Bytes held in page-allocator blocks handed out.
    public var pageBytes: Int {
        pageBlocks.enumerated().reduce(0) { $0 + $1.element * (SlabLayout.pageSize << $1.offset) }
    }
    /// Allocations callers hold: class objects, page blocks and mappings.
    public var liveAllocations: Int {
        classes.reduce(0) { $0 + $1.liveObjects } + pageBlocks.reduce(0, +) + mappings
    }
}

/// kmalloc's constants, its size classes and its caches.
public enum Kmalloc {
    /// The size classes, smallest first (the order of slots in kmalloc's range).
    public static let sizeClasses: [KmallocSizeClass] = [
        (8, 8), (16, 16), (32, 32), (64, 64), (96, 16), (128, 128), (192, 16), (256, 256),
        (512, 512), (1024, 1024), (2048, 2048), (4096, 4096), (8192, 8192),
    ].map { size, align in
        KmallocSizeClass(name: "kmalloc-" + (size >= 1024 ? "\(size / 1024)k" : "\(size)"), size: size, align: align)
    }

    /// The largest size a size class serves (Linux's KMALLOC_MAX_CACHE_SIZE).
    @inlinable public static var maxCacheSize: Int { 8192 }
    /// Sizes above this come straight from the OS: 4 MiB, the page allocator's largest block
    /// (order 10).
    public static var osThreshold: Int { SlabLayout.pageSize << SlabLayout.maxOrder }
    /// The largest size kmalloc accepts: 64 TiB, half of what x86-64 user space can address.
    public static var maxSize: Int { 1 << 46 }
    /// What kmalloc(0) returns (Linux's ZERO_SIZE_PTR, address 16).
    public static var zeroSizePointer: UnsafeMutableRawPointer { UnsafeMutableRawPointer(bitPattern: 16).unsafelyUnwrapped }

    /// The size class a request of `size` bytes lands in; nil for 0 and above 8192.
    public static func sizeClass(for size: Int) -> KmallocSizeClass? {
        guard size >= 1, size <= maxCacheSize else { return nil }
        return sizeClasses.first { $0.size >= size }
    }

    /// The page-allocator order for a request above 8 KiB: the smallest k with 2^k pages >= size.
    public static func pageOrder(for size: Int) -> Int {
        let pages = (size + SlabLayout.pageSize - 1) / SlabLayout.pageSize
        return pages <= 1 ? 0 : Int.bitWidth - (pages - 1).leadingZeroBitCount
    }

    /// Sets kmalloc up now rather than on its first use (the bench does, so that no timed loop
    /// pays for it). Throws when the OS refuses the address range.
    public static func setUp() throws(KmallocError) {
        guard KmallocState.current(settingUp: true) != nil else { throw .outOfMemory(0) }
    }

    /// The size classes' caches, kmalloc-8 first; empty until kmalloc is first used.
    public static var caches: [SlabCache] { KmallocState.current(settingUp: false)?.caches ?? [] }

    /// The page allocator behind allocations above 8 KiB, as a zone of /proc/buddyinfo named
    /// "kmalloc-large"; nil until kmalloc is first used.
    public static var pageAllocatorZone: BuddyZone? {
        KmallocState.current(settingUp: false).map { BuddyZone(name: "kmalloc-large", pages: $0.large.pages) }
    }

    /// Shrinks every size class (SlabCache.shrink): cached objects back to their slabs, empty
    /// slabs back to the OS. Returns the bytes released.
    @discardableResult
    public static func shrink() -> Int { caches.reduce(0) { $0 + $1.shrink() } }

    public static var statistics: KmallocStatistics {
        guard let state = KmallocState.current(settingUp: false) else {
            return KmallocStatistics(classes: [], pageBlocks: Array(repeating: 0, count: SlabLayout.maxOrder + 1),
                                     mappings: 0, mappedBytes: 0)
        }
        let (mappings, mappedBytes) = state.large.mappingTotals
        return KmallocStatistics(classes: state.caches.map(\.statistics), pageBlocks: state.large.pages.allocatedBlocksPerOrder(),
                                 mappings: mappings, mappedBytes: mappedBytes)
    }

    /// Where `pointer` lives, if it is the start of a kmalloc allocation; nil otherwise (a pointer
    /// kmalloc did not return, an interior pointer, a page block or mapping already freed). A
    /// freed size-class object still answers with its class: it waits in a magazine, and telling
    /// it from a live one would cost every free a write. Never stops the process: for diagnostics
    /// and tests.
    public static func origin(of pointer: UnsafeRawPointer?) -> KmallocOrigin? {
        guard let pointer else { return nil }
        switch KmallocState.locate(pointer) {
        case .zeroSize: return .zeroSize
        case let .sizeClass(state, i):
            return state.caches[i].isObjectStart(pointer) ? .sizeClass(sizeClasses[i]) : nil
        case let .pages(state):
            return state.large.blockOrder(at: UInt(bitPattern: pointer)).map { .pages(order: $0) }
        case let .mapping(_, bytes): return .mapping(bytes: bytes)
        case .outside: return nil
        }
    }

    // MARK: Slow paths (the fast paths are the inlinable functions below)

    /// kmalloc when the fast path could not serve: size 0, a bad size, kmalloc not set up yet, a
    /// size above 8 KiB, or a class out of memory.
    @usableFromInline
    static func allocateSlow(_ size: Int) throws(KmallocError) -> UnsafeMutableRawPointer {
        if size == 0 { return zeroSizePointer }
        guard size > 0 else { throw .negativeSize(size) }
        guard size <= maxSize else { throw .tooLarge(size) }
        // Once set up, the class's allocate (its pop again, then its ladders) without touching
        // the state's reference count: a retain and release of it were 3% of batch-mixed's
        // samples, where the C pop declines once in every magazine's worth of a class's
        // allocations.
        if size <= maxCacheSize,
           let served = KmallocState.withPublished({ $0.fastPaths[classIndex(size)].allocate() }) {
            guard let object = served else { throw .outOfMemory(size) }
            return object
        }
        guard let state = KmallocState.current(settingUp: true) else { throw .outOfMemory(size) }
        if size <= maxCacheSize {
            guard let object = state.caches[classIndex(size)].allocate() else { throw .outOfMemory(size) }
            return object
        }
        guard let block = state.large.allocate(size) else { throw .outOfMemory(size) }
        return block
    }

    /// kfree of anything the fast path did not take: the zero-size pointer, page-allocator blocks,
    /// OS mappings, and every pointer kmalloc did not hand out (reported).
    @usableFromInline
    static func freeSlow(_ object: UnsafeMutableRawPointer) {
        // A class's object (or a bad pointer into a class's slot, which the free reports): the
        // class's free, its test and push again, then its ladders, without reference counting.
        let classFree = KmallocState.withPublished { state -> Bool in
            let slot = state.slot(of: object)
            guard slot < UInt(KmallocState.classCount) else { return false }
            state.fastPaths[Int(slot)].free(object)
            return true
        }
        if classFree == true { return }
        switch KmallocState.locate(object) {
        case .zeroSize: return
        case let .sizeClass(state, i): state.caches[i].free(object)
        case let .pages(state): state.large.free(object, operation: "kfree")
        case let .mapping(state, _): state.large.unmap(object)
        case .outside: notFromKmalloc(object, operation: "kfree")
        }
    }

    /// The index of the size class for 1 <= size <= 8192.
    static func classIndex(_ size: Int) -> Int { classOf[(size - 1) >> 3] }

    /// The class index of each size, by (size - 1) / 8, as the C table holds it.
    static let classOf: [Int] = (0..<(8192 / 8)).map { k in sizeClasses.firstIndex { $0.size >= (k + 1) * 8 }! }

    /// ksize's answer, for ksize and krealloc (`operation` names the caller in a report).
    static func usableSize(_ object: UnsafeRawPointer, operation: String) -> Int {
        usableSize(object, at: KmallocState.locate(object), operation: operation)
    }

    /// The same, for a pointer the caller has located already.
    static func usableSize(_ object: UnsafeRawPointer, at location: KmallocState.Location, operation: String) -> Int {
        switch location {
        case .zeroSize: return 0
        case let .sizeClass(state, i):
            let cache = state.caches[i]
            guard cache.isObjectStart(object) else {
                cache.diagnoseBadPointer(UnsafeMutableRawPointer(mutating: object), operation: operation)
            }
            return cache.objectSize
        case let .pages(state): return state.large.blockBytes(at: object, operation: operation)
        case let .mapping(_, bytes): return bytes
        case .outside: notFromKmalloc(object, operation: operation)
        }
    }

    /// Stops the process for a pointer kmalloc did not hand out, saying what it is when we know.
    static func notFromKmalloc(_ object: UnsafeRawPointer, operation: String) -> Never {
        let address = UInt(bitPattern: object)
        if let cache = Registry.shared.cache(containing: address) {
            SlabReport.fatal("wrong slab cache", cache: "kmalloc", object: object, details: [
                "\(operation): \(hex(address)) is an object of slab cache \(cache.name), not a kmalloc allocation "
                    + "(free it with kmem_cache_free(\(cache.name)))"])
        }
        SlabReport.fatal("not allocated by kmalloc", cache: "kmalloc", object: object, details: [
            "\(operation): \(hex(address)) was not allocated by kmalloc (or was freed already)"])
    }
}

// MARK: - The API

/// Allocates `size` bytes (Linux's kmalloc): from the smallest size class that fits up to 8 KiB,
/// from the page allocator up to 4 MiB, from the OS above. Aligned to 16 bytes for sizes of 16
/// and more, and to `size` itself when it is a power of two. kmalloc(0) returns
/// `Kmalloc.zeroSizePointer`. Throws for a negative or impossible size, or when the OS refuses
/// memory.
@inlinable @inline(__always)
public func kmalloc(_ size: Int) throws(KmallocError) -> UnsafeMutableRawPointer {
    // Size 0 and negative sizes wrap to huge values, which the fast path declines.
    if let object = cslab_kmalloc_fast(UInt64(UInt(bitPattern: size))) { return object }
    return try Kmalloc.allocateSlow(size)
}

/// Frees what kmalloc returned (Linux's kfree). nil and the zero-size pointer are accepted and
/// ignored. Any other pointer kmalloc did not return (or that was freed already, where that can
/// be seen) stops the process with a message naming it.
@inlinable @inline(__always)
public func kfree(_ object: UnsafeMutableRawPointer?) {
    guard let object else { return }
    if cslab_kfree_fast(object) { return }
    Kmalloc.freeSlow(object)
}

/// kfree for a caller that knows the size it asked kmalloc for (as C23's free_sized): the same
/// checks and the same result as `kfree(object)`, faster where a free follows the allocation it
/// frees. A size that does not match the pointer's class costs the fast path, not correctness.
@inlinable @inline(__always)
public func kfree(_ object: UnsafeMutableRawPointer?, size: Int) {
    guard let object else { return }
    if cslab_kfree_sized_fast(object, UInt64(UInt(bitPattern: size))) { return }
    Kmalloc.freeSlow(object)
}

/// The bytes usable at a kmalloc pointer (Linux's ksize): the size class's object size, the
/// page block's size or the mapping's, never less than was asked for; 0 for nil and the zero-size
/// pointer. A pointer kmalloc did not return stops the process with a message naming it.
public func ksize(_ object: UnsafeRawPointer?) -> Int {
    guard let object else { return 0 }
    return Kmalloc.usableSize(object, operation: "ksize")
}

/// kmalloc, then zeroes the memory (Linux's kzalloc): a size-class object is cleared to its full
/// object size (so all `ksize` bytes read zero); page blocks and mappings come from the OS zeroed.
public func kzalloc(_ size: Int) throws(KmallocError) -> UnsafeMutableRawPointer {
    let object = try kmalloc(size)
    if size >= 1, size <= Kmalloc.maxCacheSize {
        memset(object, 0, Kmalloc.sizeClasses[Kmalloc.classIndex(size)].size)
    }
    return object
}

/// Zeroed memory for `count` elements of `size` bytes (Linux's kcalloc). Throws `.overflow` when
/// count x size does not fit in an Int, before allocating anything.
public func kcalloc(count: Int, size: Int) throws(KmallocError) -> UnsafeMutableRawPointer {
    guard count >= 0 else { throw .negativeSize(count) }
    guard size >= 0 else { throw .negativeSize(size) }
    let (total, overflow) = count.multipliedReportingOverflow(by: size)
    guard !overflow else { throw .overflow(count: count, size: size) }
    return try kzalloc(total)
}

/// Resizes a kmalloc allocation (Linux's krealloc), keeping its contents up to the smaller size.
/// Returns the same pointer when the allocation already holds `newSize` bytes with the alignment a
/// fresh kmalloc(newSize) would have; otherwise allocates, copies and frees the old one. An OS
/// mapping (above 4 MiB) resized to another size above 4 MiB is resized where it stands or moved
/// with its pages (mremap), never copied, a shrink giving its tail back; resized to 4 MiB or less
/// it is copied into a fresh allocation and unmapped whole. nil or the zero-size pointer behaves as
/// kmalloc(newSize); a newSize of 0 frees the allocation and returns the zero-size pointer. When
/// it throws, the old allocation is untouched.
public func krealloc(_ object: UnsafeMutableRawPointer?, _ newSize: Int) throws(KmallocError) -> UnsafeMutableRawPointer {
    guard newSize >= 0 else { throw .negativeSize(newSize) }
    guard newSize <= Kmalloc.maxSize else { throw .tooLarge(newSize) }
    guard let object, object != Kmalloc.zeroSizePointer else { return try kmalloc(newSize) }
    // Stops the process for a pointer kmalloc did not return.
    let location = KmallocState.locate(object)
    let have = Kmalloc.usableSize(object, at: location, operation: "krealloc")
    if newSize == 0 {
        kfree(object)
        return Kmalloc.zeroSizePointer
    }
    // An OS mapping resized above 4 MiB has its pages moved; at 4 MiB or less the allocation moves
    // to the page allocator or a class (a copy of at most 4 MiB) and the mapping goes back whole,
    // so that every mapping holds more than 4 MiB, as kmalloc makes them.
    var mappingShrinksOut = false
    if case let .mapping(state, _) = location {
        if newSize > Kmalloc.osThreshold, let moved = state.large.remap(object, to: newSize) { return moved }
        mappingShrinksOut = newSize <= Kmalloc.osThreshold
    }
    let alignment = newSize & (newSize - 1) == 0 ? newSize : (newSize >= 16 ? 16 : 1)
    if have >= newSize, UInt(bitPattern: object) % UInt(alignment) == 0, !mappingShrinksOut { return object }
    let moved = try kmalloc(newSize)
    memcpy(moved, object, min(have, newSize))
    kfree(object)
    return moved
}

// MARK: - State

/// Everything kmalloc set up: fixed once made, never released.
final class KmallocState: @unchecked Sendable {
    /// Size classes: slots 0..12 of the range.
    static let classCount = Int(CSLAB_KMALLOC_CLASSES)
    /// Slots in the range: the 13 classes, then the page allocator.
    static let slots = classCount + 1
    /// 64 GiB per slot, halved until the OS agrees (down to 1 GiB).
    static let preferredSlotShift = 36
    static let smallestSlotShift = 30

    let rangeBase: UInt
    let slotShift: Int
    /// The page map of the whole range (PageSource, section 4), for kfree's C fast path.
    let pageMap: UnsafeMutablePointer<UInt>
    let caches: [SlabCache]
    /// Their fast paths, for the slow paths to reach a class without reference counting.
    let fastPaths: [FastPath]
    let large: KmallocLarge

    private init(rangeBase: UInt, slotShift: Int, pageMap: UnsafeMutablePointer<UInt>, caches: [SlabCache],
                 large: KmallocLarge) {
        self.rangeBase = rangeBase
        self.slotShift = slotShift
        self.pageMap = pageMap
        self.caches = caches
        fastPaths = caches.map(\.fast)
        self.large = large
    }

    private static let made = Lock<KmallocState?>(nil)
    /// For the fork handlers (Fork.swift).
    static var madeMutexForFork: UnsafeMutablePointer<pthread_mutex_t> { made.mutexForFork }
    static func stateWhileHeldForFork() -> KmallocState? { made.stateWhileHeldForFork }
    /// The state once made (retained for ever), so that the slow paths (every call, without rseq)
    /// find it with one load instead of a lock.
    private static let published = Atomic<UInt>(0)

    /// The slot of kmalloc's range that `pointer` lies in: 0...12 a size class, 13 the page
    /// allocator, anything larger outside the range (below it, the subtraction wraps).
    @inline(__always)
    func slot(of pointer: UnsafeRawPointer) -> UInt {
        (UInt(bitPattern: pointer) &- rangeBase) >> UInt(slotShift)
    }

    /// `body` over the state if it has been made, lent without a retain (a made state is never
    /// released); nil if not made yet.
    @inline(__always)
    static func withPublished<R>(_ body: (KmallocState) -> R) -> R? {
        guard let p = UnsafeRawPointer(bitPattern: published.load(ordering: .acquiring)) else { return nil }
        return Unmanaged<KmallocState>.fromOpaque(p)._withUnsafeGuaranteedRef(body)
    }

    /// The state, made first if `settingUp` (nil when the OS refuses the range, or when not yet
    /// made and not asked to make it).
    static func current(settingUp: Bool) -> KmallocState? {
        if let p = UnsafeRawPointer(bitPattern: published.load(ordering: .acquiring)) {
            return Unmanaged<KmallocState>.fromOpaque(p).takeUnretainedValue()
        }
        ForkHandlers.installed
        return made.withLock { state -> KmallocState? in
            if let state { return state }
            guard settingUp, let new = make() else { return nil }
            state = new
            published.store(UInt(bitPattern: Unmanaged.passRetained(new).toOpaque()), ordering: .releasing)
            // The C fast paths run the classes' rseq sections, or in the fallback mode their
            // inline paths on the thread's own slot (every class has the same slot array).
            // A mode with neither (no CPU layer, or the fallback mode under AddressSanitizer)
            // leaves them closed, and every call takes the slow path through the caches.
            let rseq = new.caches.allSatisfy(\.usesRseq)
            let slots = new.caches.allSatisfy(\.fast.usesSlots)
            guard rseq || slots else { return new }
            for (i, cache) in new.caches.enumerated() {
                let f = cache.fast
                cslab_kmalloc_set_class(UInt32(i), f.cpus, f.magazineBase, UInt64(f.rangeBase),
                                        UInt64(f.objectsBytes), f.strideReciprocal)
            }
            for (k, c) in Kmalloc.classOf.enumerated() { cslab_kmalloc_set_class_of(UInt32(k), UInt8(c)) }
            // Last: the release that lets the inlined fast paths in.
            cslab_kmalloc_publish(new.caches[0].rseqOffset, rseq ? 0 : 1, UInt64(new.rangeBase),
                                  UInt64(new.slotShift),
                                  UnsafeRawPointer(new.pageMap).assumingMemoryBound(to: UInt64.self))
            return new
        }
    }

    /// Reserves the range and creates the caches; nil when the OS refuses the range.
    private static func make() -> KmallocState? {
        let arena = PageSource.arenaBytes
        var shift = preferredSlotShift
        var base: UInt = 0
        while true {
            let bytes = slots << shift
            // Over-reserve by one arena to align the base to an arena, as every page source is.
            if let p = mmap(nil, bytes + arena, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
               p != MAP_FAILED {
                let start = UInt(bitPattern: p)
                base = (start + UInt(arena - 1)) & ~UInt(arena - 1)
                let head = Int(base - start)
                if head > 0 { munmap(p, head) }
                if arena - head > 0 { munmap(UnsafeMutableRawPointer(bitPattern: base + UInt(bytes)), arena - head) }
                break
            }
            shift -= 1
            if shift < smallestSlotShift { return nil }
        }
        // One page map for the whole range; each slot's page source writes its own part.
        guard let pageMap = PageSource.reservePageMap(forRangeBytes: slots << shift) else {
            munmap(UnsafeMutableRawPointer(bitPattern: base), slots << shift)
            return nil
        }
        // A class uses at most the first 32 GiB of its slot: its magazines hold objects as 32-bit
        // offsets in 8-byte units (Magazine.swift). The page allocator's slot has no magazines.
        func slot(_ i: Int, upTo limit: Int = .max, hugeArenas: Bool = true) -> PageSource {
            PageSource(range: base + UInt(i << shift), size: min(1 << shift, limit),
                       pageMap: pageMap + ((i << shift) >> PageSource.pageShift), hugeArenas: hugeArenas)
        }
        var caches: [SlabCache] = []
        for (i, c) in Kmalloc.sizeClasses.enumerated() {
            do {
                caches.append(try SlabCache(name: c.name, size: c.size, align: c.align, flags: [], constructor: nil,
                                            destructor: nil,
                                            kmallocPages: slot(i, upTo: 1 << Int(CSLAB_ROUND_RANGE_BITS))))
            } catch {
                // Only a magazine region the OS refused can fail here (the names are reserved).
                for cache in caches { Registry.shared.unregister(cache) }
                munmap(UnsafeMutableRawPointer(bitPattern: base), slots << shift)
                PageSource.releasePageMap(pageMap, forRangeBytes: slots << shift)
                return nil
            }
        }
        return KmallocState(rangeBase: base, slotShift: shift, pageMap: pageMap, caches: caches,
                            large: KmallocLarge(pages: slot(classCount, hugeArenas: false)))
    }

    /// What a pointer is to kmalloc, from its address alone (a mapping is looked up).
    enum Location {
        case zeroSize
        case sizeClass(KmallocState, Int)
        case pages(KmallocState)
        case mapping(KmallocState, bytes: Int)
        case outside
    }

    static func locate(_ pointer: UnsafeRawPointer) -> Location {
        if pointer == UnsafeRawPointer(Kmalloc.zeroSizePointer) { return .zeroSize }
        guard let state = current(settingUp: false) else { return .outside }
        let slot = state.slot(of: pointer)
        if slot < UInt(classCount) { return .sizeClass(state, Int(slot)) }
        if slot == UInt(classCount) { return .pages(state) }
        if let bytes = state.large.mappingBytes(at: UInt(bitPattern: pointer)) { return .mapping(state, bytes: bytes) }
        return .outside
    }
}
