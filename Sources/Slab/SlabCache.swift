// SlabCache: the public object cache (kmem_cache), and the design essay for the whole allocator.
//
// 1. References
// -------------
//   Jeff Bonwick, "The Slab Allocator: An Object-Caching Kernel Memory Allocator", USENIX 1994.
//   Jeff Bonwick and Jonathan Adams, "Magazines and Vmem: Extending the Slab Allocator to Many
//   CPUs and Arbitrary Resources", USENIX 2001.
//   Linux mm/slub.c (object layout, SLAB_HWCACHE_ALIGN, /proc/slabinfo 2.1), tcmalloc's per-CPU
//   caches (restartable sequences), illumos kmem.c (the allocation and free ladders).
//
// 2. Overview
// -----------
//   A cache hands out objects of one size. Three layers, bottom up, one file each:
//
//     PageSource.swift  a buddy allocator over 4 MiB arenas: naturally aligned runs of pages.
//     SlabLayer.swift   slabs (one run of pages each, Slab.swift) carved into equal objects with an
//                       embedded free list, kept on partial / full / empty lists under one lock.
//     Depot.swift       lock-free stacks of full and empty magazines (Magazine.swift).
//     CPUCache.swift    per CPU, a loaded and a previous magazine, changed only by code running
//                       on that CPU (an rseq critical section), so the common allocation and free
//                       touch no lock and no shared cache line: the ladders and the drains.
//                       CPUSlot.swift holds a CPU's state word and the two ways of committing a
//                       change to it (rseq, or where rseq is missing a slot of the thread's
//                       own, a lane, or one taken by CAS).
//     FastPath.swift    the pop and push of the loaded magazine, inlined into the caller.
//
//   SlabCache (this file) is the façade: the slab layer, and a CPUCache unless the cache was
//   created with `.noCPUCache` or with a debug letter (or its magazine region could not be
//   mapped). SlabDebug.swift holds the debug letters' checks (section 8).
//
//   Registry.swift and SlabInfo.swift list every cache in /proc/slabinfo 2.1 format.
//
//   Above the caches, Kmalloc.swift is the general-purpose heap, as the kernel's: kmalloc(size)
//   takes the smallest of 13 size-class caches (kmalloc-8 ... kmalloc-8k) that fits, and
//   KmallocLarge.swift serves larger sizes with 2^order-page blocks from a page source of its
//   own, and sizes above 4 MiB with mappings straight from the OS. BuddyInfo.swift shows every
//   page source's free blocks per order in /proc/buddyinfo format.
//
// 3. Glossary
// -----------
//   object     what the caller gets: `objectSize` bytes, aligned to `align`.
//   slab       2^order pages holding a colour offset and `objectsPerSlab` objects; its header
//              (lists, counts, free list) lies in the cache's slab table (Slab.swift).
//   colour     the offset of a slab's first object; successive slabs use successive colours so
//              that objects at equal indices spread over cache sets.
//   round      an object held in a magazine: 32 bits, its offset from the cache's range in
//              8-byte units (Magazine.swift).
//   magazine   an array of M rounds. Each CPU holds two: `loaded` (used first) and `previous`.
//   depot      the cache's stock of full and empty magazines.
//   working set  the full magazines the depot needed during the last interval; `reap()` returns
//              the rest.
//
// 4. Object states (Bonwick 1994)
// -------------------------------
//   A constructor runs once per object, when its slab is created; the destructor runs when the
//   slab is released by `shrink()` or `destroy()`. In between, an object is *constructed*:
//   allocated to the caller, or cached (a round in a magazine, or free in its slab). The caller
//   frees an object in its constructed state. When the cache has a constructor, the free-list
//   link lives after the object, so no byte of a constructed object is ever written by us.
//
// 5. The ladders (Bonwick & Adams 2001, as in illumos kmem_cache_alloc / kmem_cache_free)
// ----------------------------------------------------------------------------------------
//   Allocate: pop the loaded magazine. It is empty: if the previous one has rounds, exchange them
//   and retry. Both empty: take a full magazine from the depot, make the loaded one previous, give
//   the old previous (empty) to the depot. The depot has none: fill a magazine from the slab layer
//   in one locked batch (a departure: Bonwick goes to the slab layer for a single object).
//   Free mirrors it: push the loaded magazine; it is full: if the previous is empty, exchange;
//   both full: take an empty magazine (from the depot, or make one), the loaded becomes previous,
//   the old previous (full) goes to the depot.
//   Invariant: the previous magazine is always empty or full, so depot traffic is at most one
//   exchange per M operations, whatever the workload.
//
// 6. Synchronisation
// ------------------
//   Per-CPU state is one word per CPU: both magazines' handles and round counts (CPUSlot.swift),
//   so every transition of a CPU's state, from a pop to a magazine exchange, is one store, and
//   that store is the commit of a restartable sequence: the kernel restarts the sequence if the
//   thread is preempted, migrated or signalled before it. Remote operations (shrink, destroy)
//   stop every CPU in one scope (CPUCache.withEveryCPUStopped): each is marked owned, then
//   fenced with membarrier(PRIVATE_EXPEDITED_RSEQ), after which no sequence on it can commit
//   without seeing the mark; the CPUs start again when the scope ends. Without rseq (valgrind, or
//   GLIBC_TUNABLES=glibc.pthread.rseq=0) each thread holds a slot of its own, a lane, whose
//   inline pop and push mark it busy with plain stores (a drainer that stopped it waits for the
//   mark to clear after a membarrier(PRIVATE_EXPEDITED) fence); the ladders, and threads beyond
//   the lanes, take a slot through a CAS on the owner word for the length of an operation, and a
//   thread that finds its slot held goes to the slab layer (or, without a lane, tries another
//   slot first); no thread ever waits for another on the normal paths.
//   The depot is lock-free (Depot.swift states its ABA defence). The slab layer has one lock,
//   taken once per magazine of objects. Lock order: drain lock, then slab layer, then page source.
//   Around fork() the forking thread takes every lock in that order and lets them go after it, so
//   that a child of a multithreaded process can allocate (Subtle/Fork.swift).
//
// 7. Departures from the papers
// -----------------------------
//   M is fixed per cache by object size (Bonwick grows M under depot contention; contention is
//   reported in the statistics instead). Reaping is explicit (`reap()`, `shrink()`); there is no
//   timer thread. A depot may bound its full magazines, a free beyond the bound returning its
//   magazine's rounds to the slab layer: for objects of up to 64 bytes (typed or kmalloc's) 32 MiB
//   of objects (at least max(64, 32 x CPUs) magazines), for kmalloc's larger classes 8 MiB of
//   objects (at least 64 magazines); a typed cache of larger objects keeps full magazines up to
//   half of its magazine region (58,000 magazines of 128 rounds: 7.4 million objects of up to 256
//   bytes, 1.9 GB of 256-byte ones), so that only a larger burst overflows.
//   Rounds that overflow cost a lock and a write into each object, then come back one dependent
//   cache miss each along the slab's free list, and small objects share lines and pages, so for
//   them the magazines win: a batch of 1M 20-byte objects freed newest or oldest first ran in
//   7.5 ns an object with a 16 MiB bound against 11.6 with 64 magazines, and in 5.0 with 32 MiB,
//   which holds the whole batch (same-machine A/Bs); a general-purpose heap sees one class freed
//   in bursts of thousands (a batch of 100,000 mixed sizes: 36 against 25 ns an object). What the
//   bound costs is the magazines' own memory, which stays resident until shrink: a round is 32
//   bits (Magazine.swift), so a million cached objects take 4.3 MB of magazines, and the cell with
//   1M live 24-byte objects peaks at 58.3 MiB against glibc's 61.3 and mimalloc's 61.8 (with 64-bit
//   rounds the 32 MiB bound took it to 62.4 and was not kept). For larger objects that memory is a
//   smaller share (4.5 bytes a 256-byte object, 1.8%), and the slab layer's way back costs more:
//   writing the link is a cache and TLB miss per object (a random-order free of 1M 256-byte
//   objects spent 58 ns an object freeing through the slab layer against 16 in magazines alone,
//   and 32 against 21 allocating), so the typed caches keep the whole burst. Measured against the
//   bound of 64 magazines (same-machine A/B, 8 samples a side): 1M 256-byte objects freed in random
//   order -51%, newest or oldest first -20%; their peak RSS grows by the 4.5 MiB of magazines
//   (288.3 -> 292.9 MiB, where tcmalloc's is 291.6). A bound in between was worse than either
//   end: the part of the burst that overflows finds its slabs half full, and the random-order
//   batch took 86 ns an object with 1% of the slab memory in magazines against 96 with 64
//   magazines and 50 with the whole burst. kmalloc's classes keep their bound: without it
//   batch-mixed read 20.1 ns against 18.3 and larson-mixed 14.7 against 14.5 (one run each), no
//   gain. The objects are resident either way (an empty slab stays until shrink or reap).
//   Empty slabs stay cached, constructed, until `shrink()`. Slabs hand out
//   never-used objects by a bump index rather than a free list threaded through them (Slab.swift),
//   and a refilled magazine pops one object per cache line per pass (CPUCache.stackForPops).
//   Every free checks its pointer (FastPath.checkOwnership): a page map load and a multiply, 8
//   of the hot pair's 59 instructions (the bench's slab-bare row skips it and counts 51 under
//   callgrind), spent so that a bad free is reported instead of corrupting a magazine.
//
// 8. Misuse caught by default
// ---------------------------
//   The pointer test above reports a pointer from no cache (malloc's), from another cache, into a
//   released slab, or not at an object's start, and a destroyed cache reports any use.
//   Double frees: every push compares its object's round with the loaded magazine's top round,
//   round[n - 1], in the cache line the push writes anyway (an empty magazine's "round[-1]" is a
//   header word that stays zero), and on a match takes the slow path, whose free ladder compares
//   again and reports (CPUCache.free). So the default catches a re-free while the object is
//   still the top round of this CPU's loaded magazine: `free(p); free(p)` with no allocation or
//   free of this cache on this CPU in between, on every path that pushes (the rseq push, the
//   ladders in both modes, kfree's C fast path). It does not catch a re-free once another round
//   lies on top (`free(p); free(q); free(p)`), after the thread moved to another CPU, or when the
//   first free bypassed the magazines (its CPU stopped by a drain, or no magazine to be had):
//   then the next two allocations return the same object. That needs a record per object, which
//   the debug options keep. A cache without a CPU layer frees into its slab, where the slab
//   layer's check (under its lock) catches the object freed last to its slab, one its slab never
//   handed out, and a free to a slab with nothing out.
//   Why the top round only: each round compared costs a load and a branch on every free (the top
//   one: 2 instructions of the 59 in a 20-byte rseq pair), while no write into the freed object
//   (a constructed object's bytes are its owner's, and the write would be a cold miss) and no
//   atomic are allowed there.
//   Every detection is one report on stderr, then SIGABRT (SlabReport.swift).
//
// 9. AddressSanitizer
// -------------------
//   Built with `--sanitize=address`, the allocator tells ASan which objects are cached: a new
//   slab's objects are poisoned, an object is unpoisoned (its `objectSize` bytes) when handed to
//   the caller and poisoned again when freed, before any push commits (from then on another
//   thread on the CPU may pop it), and a released slab is unpoisoned whole. So ASan reports a
//   read or write of a freed object, in a magazine or free in its slab, as a use-after-poison.
//   The free-list link is read and written through CSlab's uninstrumented helpers. The inline
//   rseq pop and push cannot poison inside their sequence, so such a build sends every
//   allocation and free through the slow path (FastPath.usesRseq and usesSlots are false;
//   the ladders still run the rseq sections, and kmalloc's C fast paths stay closed): ASan builds
//   are for finding bugs, not for measuring.
//
// 10. Debugging (SlabDebug.swift)
// -------------------------------
//   Linux's slab_debug letters, per cache (flags) or from SLAB_DEBUG at creation: F gives every
//   object an allocated/free state word (a double free is caught at any distance) and checks a
//   slab's free list and counts whenever it changes lists (walking the list just before the slab
//   becomes empty, when it is longest); Z puts red zones before and after
//   every object; P fills free objects with 0x6b ... 0xa5 and checks them when handed out again
//   (not in a cache with a constructor, whose free objects stay constructed); U records where,
//   by which thread and when each object was last allocated and freed. validate() runs every
//   check over every slab on demand.
//   A cache with any letter has no per-CPU layer, as SLUB's debug caches skip its per-CPU slabs:
//   every allocation and free goes to the slab layer and is checked under its lock. An object's
//   state must change together with the free list that holds it (an object freed twice while
//   it sits in a magazine would escape every check, and validate() could not tell a cached object
//   from a live one); an rseq section cannot write metadata before its commit; and deciding at
//   creation which path a cache has leaves the fast path of a cache without letters exactly as
//   it was, not even a flag test added. Such a cache scales as `.noCPUCache` does.

import CSlab
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Flags for `SlabCache`, in the spirit of Linux's SLAB_* flags.
public struct SlabFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt
    public init(rawValue: UInt) { self.rawValue = rawValue }

    /// Align objects to the hardware cache line (Linux SLAB_HWCACHE_ALIGN, same value): small
    /// objects may share a line, but none straddles one needlessly.
    public static let hwcacheAlign = SlabFlags(rawValue: 0x0000_2000)
    /// No per-CPU magazine layer: every allocation and free goes to the slab layer's lock.
    /// For measuring what the magazine layer is worth, and for debugging.
    public static let noCPUCache = SlabFlags(rawValue: 1 << 32)

    // The debug letters (SlabDebug.swift; Linux's values and slab_debug letters). A cache with
    // any of them has no per-CPU layer: its checks run in the slab layer, under its lock.

    /// F (SLAB_CONSISTENCY_CHECKS): an allocated/free state per object, so every double free is
    /// caught; free lists and counts checked whenever a slab changes lists (the list walked whole
    /// just before the slab becomes empty).
    public static let consistencyChecks = SlabFlags(rawValue: 0x0000_0100)
    /// Z (SLAB_RED_ZONE): guard bytes before and after every object, checked on free and
    /// allocation.
    public static let redZone = SlabFlags(rawValue: 0x0000_0400)
    /// P (SLAB_POISON): free objects filled with a pattern, checked when handed out again (not on
    /// a cache with a constructor, whose free objects keep their constructed state).
    public static let poison = SlabFlags(rawValue: 0x0000_0800)
    /// U (SLAB_STORE_USER): where, by which thread and when each object was last allocated and
    /// freed, shown in reports.
    public static let storeUser = SlabFlags(rawValue: 0x0001_0000)
}

/// Errors at the API edge. Nothing is lost when one is thrown: the cache is unchanged.
public enum SlabError: Error, Equatable, CustomStringConvertible, Sendable {
    case invalidName(String, reason: String)
    case duplicateName(String)
    case invalidSize(Int)
    case invalidAlignment(Int)
    case unknownFlags(UInt)
    case outOfMemory(cache: String)
    case objectsStillAllocated(cache: String, count: Int)
    case destroyed(String)
    /// kmalloc's size-class caches live as long as the process.
    case servesKmalloc(String)

    public var description: String {
        switch self {
        case let .invalidName(name, reason): return "invalid cache name \"\(name)\": \(reason)"
        case let .duplicateName(name): return "a cache named \"\(name)\" already exists"
        case let .invalidSize(size):
            return "invalid object size \(size): must be 1...\(SlabLayout.maxObjectSize) bytes"
        case let .invalidAlignment(align):
            return "invalid alignment \(align): must be a power of two from 1 to \(SlabLayout.maxAlign)"
        case let .unknownFlags(bits): return "unknown flag bits 0x\(String(bits, radix: 16))"
        case let .outOfMemory(cache): return "\(cache): out of memory"
        case let .objectsStillAllocated(cache, count):
            return "Slab cache still has objects: \(cache) has \(count) allocated; destroy refused"
        case let .destroyed(cache): return "\(cache): the cache was destroyed"
        case let .servesKmalloc(cache):
            return "\(cache) is one of kmalloc's size classes and lives as long as the process; destroy refused"
        }
    }
}

/// How a cache's per-CPU layer runs (chosen once, at start-up).
public enum CPULayerMode: String, Sendable {
    /// Restartable sequences: lock-free, no atomic instruction on the fast path.
    case rseq
    /// rseq is not registered: a slot of each thread's own (a lane), or one taken by CAS for the
    /// length of an operation (CPUSlot.swift).
    case fallback
    /// The cache has no per-CPU layer: created with `.noCPUCache`, or with a debug letter (whose
    /// checks run in the slab layer).
    case none
}

/// An object cache: Bonwick's kmem_cache in Swift. Thread-safe.
///
/// A cache lives until `destroy()`, as in the kernel: the registry holds it, which is also what
/// lets `SlabInfo` list it.
public final class SlabCache: @unchecked Sendable {
    public let name: String
    public let layout: SlabLayout
    /// The flags in force: those the cache was created with, and the debug letters SLAB_DEBUG
    /// gave it.
    public let flags: SlabFlags
    /// How the per-CPU layer runs: `.none` when the cache has none (`.noCPUCache`, a debug letter,
    /// or its magazine region could not be mapped).
    public let mode: CPULayerMode

    /// Object size as slabinfo reports it.
    public var objectSize: Int { layout.objectSize }
    /// Rounds per magazine (M); 0 without a CPU layer.
    public var magazineCapacity: Int { cpuLayer?.capacity ?? 0 }
    /// Why this process's caches run their CPU layer as they do ("rseq", or the reason for the
    /// fallback, or the simulated mode used for instruction counting). Decided once per process.
    public static var cpuLayerReason: String { CPULayerPlatform.current.reason }

    /// Everything the inlinable fast paths read, never written after init (FastPath.swift).
    @usableFromInline let fast: FastPath
    /// Lets a FastPath (a value, without ARC) reach its cache's slow paths.
    let backReference: CacheBackReference
    var usesRseq: Bool { fast.usesRseq }
    var rseqOffset: Int64 { fast.rseqOffset }

    let slabLayer: SlabLayer
    /// Built with AddressSanitizer: objects are unpoisoned when handed out and poisoned when freed
    /// (section 9). A copy of the slab layer's, read on the slow paths.
    let poisons: Bool
    /// The per-CPU magazine layer; nil in mode `.none`.
    let cpuLayer: CPUCache?
    /// The same, unretained, for the slow paths: a call through it costs no reference counting
    /// (a retain and a release around every fallback-mode operation were 80 instructions of a
    /// 330-instruction pair); `cpuLayer` keeps it alive as long as the cache.
    private let cpuLayerUnretained: Unmanaged<CPUCache>?
    /// The bytes of objects a kmalloc class's depot may hold (see the essay, section 7).
    static let kmallocDepotBytes = 8 << 20
    /// Caches of objects up to 64 bytes, typed or kmalloc's, bound their depots at 32 MiB of
    /// objects (section 7): a batch of a million 24-byte objects stays in magazines.
    static let smallObjectDepotBytes = 32 << 20
    static let smallObjectDepotMaxSize = 64
    /// Serialises drains (shrink, reap, destroy) with each other.
    let drainLock = Lock(())
    private let destroyedFlag = Atomic<Bool>(false)
    /// One of kmalloc's size classes (Kmalloc.swift): its name is reserved, its slabs lie in its
    /// slot of kmalloc's range, it cannot be destroyed, and a bad free is reported as kfree's.
    let servesKmalloc: Bool
    /// The operation a bad free is reported under: "kmem_cache_free", or "kfree" for kmalloc's caches.
    let freeOperation: String
    /// U: every allocation and free records its caller (SlabTrack) before taking the slab lock.
    let tracksUsers: Bool

    /// Creates a cache. `align` must be a power of two (1...4096); the object size is `size`
    /// rounded up to a word and then to the alignment.
    public convenience init(name: String, size: Int, align: Int = 8, flags: SlabFlags = [],
                            constructor: ((UnsafeMutableRawPointer) -> Void)? = nil,
                            destructor: ((UnsafeMutableRawPointer) -> Void)? = nil) throws {
        try self.init(name: name, size: size, align: align, flags: flags, constructor: constructor,
                      destructor: destructor, kmallocPages: nil)
    }

    /// Creates a cache; with `kmallocPages`, one of kmalloc's size classes, whose slabs come from
    /// that page source (its slot of kmalloc's range) and whose alignment may reach the slab size.
    init(name: String, size: Int, align: Int, flags: SlabFlags,
         constructor: ((UnsafeMutableRawPointer) -> Void)?, destructor: ((UnsafeMutableRawPointer) -> Void)?,
         kmallocPages: PageSource?) throws {
        servesKmalloc = kmallocPages != nil
        freeOperation = servesKmalloc ? "kfree" : "kmem_cache_free"
        try Registry.validate(name: name, reservedAllowed: servesKmalloc)
        let known = SlabFlags([.hwcacheAlign, .noCPUCache]).union(.debugLetters)
        guard flags.subtracting(known).isEmpty else { throw SlabError.unknownFlags(flags.subtracting(known).rawValue) }
        guard size >= 1, size <= SlabLayout.maxObjectSize else { throw SlabError.invalidSize(size) }
        let flags = flags.union(SlabDebugSetting.environmentLetters(forCache: name))
        guard let layout = SlabLayout(size: size, align: align, hardwareCacheAlign: flags.contains(.hwcacheAlign),
                                      hasConstructor: constructor != nil,
                                      alignLimit: servesKmalloc ? SlabLayout.pageSize << SlabLayout.maxOrder : SlabLayout.maxAlign,
                                      debug: flags) else {
            throw SlabError.invalidAlignment(align)
        }
        self.name = name
        self.layout = layout
        self.flags = flags
        guard let pages = kmallocPages ?? PageSource() else { throw SlabError.outOfMemory(cache: name) }
        let debug = layout.debug.isEmpty ? nil : SlabDebug(cache: name, layout: layout)
        guard let layer = SlabLayer(name: name, freeOperation: freeOperation, layout: layout, constructor: constructor,
                                    destructor: destructor, pages: pages, debug: debug) else {
            throw SlabError.outOfMemory(cache: name)
        }
        slabLayer = layer
        poisons = layer.poisons
        tracksUsers = layout.trackOffset != nil

        let platform = CPULayerPlatform.current
        let kmallocClass = servesKmalloc
        // A debug cache has no per-CPU layer (SlabDebug.swift, section 2).
        cpuLayer = flags.contains(.noCPUCache) || debug != nil ? nil : CPUCache(
            name: name, slabLayer: layer, platform: platform,
            depotFullLimit: { m in
                let floor = max(64, 32 * platform.possibleCPUs)
                if layout.objectSize <= Self.smallObjectDepotMaxSize {
                    return max(floor, Self.smallObjectDepotBytes / (m * layout.objectSize))
                }
                // Half the magazine region: a burst beyond it overflows in whole magazines, as
                // a bounded depot's does, and the CPUs can still make magazines.
                return kmallocClass ? max(64, Self.kmallocDepotBytes / (m * layout.objectSize))
                                    : MagazineRegion.maxMagazines(capacity: m) / 2
            })
        mode = cpuLayer?.mode ?? .none
        cpuLayerUnretained = cpuLayer.map { Unmanaged.passUnretained($0) }
        backReference = CacheBackReference()
        let slots = cpuLayer?.slots ?? CPUSlots.inert
        fast = FastPath(
            rseqOffset: platform.rseqOffset, cpus: slots.base, magazineBase: cpuLayer?.region.base ?? slots.base,
            rangeBase: pages.base, rangeSize: UInt(pages.size),
            pageMap: UnsafePointer(pages.pageMap), objectsBytes: UInt(layout.objectsPerSlab * layout.stride),
            strideReciprocal: layer.divider.c, usesRseq: mode == .rseq && !layer.poisons,
            usesSlots: mode == .fallback && !layer.poisons, back: backReference)
        backReference.cache = Unmanaged.passUnretained(self)
        try Registry.shared.register(self)
    }

    // MARK: Allocate and free

    /// Allocates one constructed object, or returns nil when memory is exhausted
    /// (kmem_cache_alloc).
    @inlinable @inline(__always)
    public func allocate() -> UnsafeMutableRawPointer? { fast.allocate() }

    /// Frees an object allocated from this cache, in its constructed state (kmem_cache_free).
    /// A pointer that is not an object of this cache stops the process with a message naming the
    /// cache and the pointer (freeing it would corrupt memory).
    @inlinable @inline(__always)
    public func free(_ object: UnsafeMutableRawPointer) { fast.free(object) }

    /// The fast paths as a value, for hot loops: its fields stay in registers, where the class's
    /// fields would be reloaded after every store the loop makes through a raw pointer. Same
    /// behaviour and checks as `allocate()` / `free(_:)`. The cache must outlive it.
    @inlinable
    public var fastPath: FastPath { fast }

    /// Explains a free that failed the ownership test, then stops the process.
    @usableFromInline
    func diagnoseBadFree(_ object: UnsafeMutableRawPointer) -> Never {
        diagnoseBadPointer(object, operation: freeOperation)
    }

    /// Explains why `object` is not an object of this cache, under the name of the operation that
    /// was given it (kmem_cache_free, kfree, ksize, krealloc), then stops the process
    /// (SlabReport.swift).
    func diagnoseBadPointer(_ object: UnsafeMutableRawPointer, operation: String) -> Never {
        let address = UInt(bitPattern: object)
        let call = "\(operation)(\(name)): \(hex(address))"
        func report(_ what: String, _ detail: String) -> Never {
            SlabReport.fatal(what, cache: name, object: object, details: [detail])
        }
        if destroyedFlag.load(ordering: .acquiring) {
            report("freed to a destroyed cache", "\(call) freed to a destroyed cache")
        }
        guard slabLayer.pages.contains(address) else {
            if let other = Registry.shared.cache(containing: address) {
                report("wrong slab cache", "\(operation)(\(name)): Wrong slab cache. \(name) but object \(hex(address)) is from \(other.name)")
            }
            report("not allocated from any slab cache", "\(call) was not allocated from any slab cache")
        }
        guard let block = slabLayer.pages.block(containing: address),
              slabLayer.table.header(of: object).pointee.magic == CSLAB_SLAB_MAGIC else {
            report("not in a live slab", "\(call) is not in a live slab of this cache (freed after shrink, or never allocated)")
        }
        report("not the start of an object", "\(call) is not the start of an object (slab \(hex(block.start)), object size \(layout.objectSize))")
    }

    /// True when `object` is the start of an object in one of this cache's live slabs: the free
    /// fast path's test (FastPath.checkOwnership) without its verdict, for ksize and krealloc.
    func isObjectStart(_ object: UnsafeRawPointer) -> Bool {
        let address = UInt(bitPattern: object)
        guard slabLayer.pages.contains(address) else { return false }
        let offset = address &- slabLayer.pages.firstObject(mappedAt: address)
        return offset < UInt(layout.objectsPerSlab * layout.stride) && offset % UInt(layout.stride) == 0
    }

    // MARK: Slow paths

    @usableFromInline
    func allocateSlow() -> UnsafeMutableRawPointer? {
        if poisons { return allocateUnpoisoned() }
        if let cpu = cpuLayerUnretained, let object = cpu._withUnsafeGuaranteedRef({ $0.allocate() }) { return object }
        return allocateFromSlabLayer()
    }

    /// The free of a pointer the fast path's limits did not admit (FastPath.free): one outside
    /// the range, or any pointer of a cache with no inline push (no CPU layer, an
    /// AddressSanitizer build). The whole ownership test, then the slow path.
    @usableFromInline
    func freeChecked(_ object: UnsafeMutableRawPointer) {
        fast.checkOwnership(object)
        freeSlow(object)
    }

    @usableFromInline
    func freeSlow(_ object: UnsafeMutableRawPointer) {
        // Poisoned before any push commits: from then on another thread may pop it.
        if poisons { cslab_asan_poison(object, layout.objectSize) }
        if let cpu = cpuLayerUnretained, cpu._withUnsafeGuaranteedRef({ $0.free(object) }) { return }
        freeToSlabLayer(object)
    }

    /// allocateSlow in a build with AddressSanitizer: the object leaves the cache unpoisoned.
    private func allocateUnpoisoned() -> UnsafeMutableRawPointer? {
        let object = cpuLayer?.allocate() ?? allocateFromSlabLayer()
        if let object { cslab_asan_unpoison(object, layout.objectSize) }
        return object
    }

    /// One object straight from the slab layer: no CPU layer, or the CPU layer could not serve it.
    func allocateFromSlabLayer() -> UnsafeMutableRawPointer? {
        if isDestroyed {
            SlabReport.fatal("allocation from a destroyed cache", cache: name, object: nil,
                             details: ["kmem_cache_alloc(\(name)): the cache was destroyed"])
        }
        guard tracksUsers else { return slabLayer.allocateOne() }
        // U: the stack is walked here, outside the lock.
        var site = SlabTrack.capture()
        return slabLayer.allocateOne(site: &site)
    }

    func freeToSlabLayer(_ object: UnsafeMutableRawPointer) {
        if isDestroyed {
            SlabReport.fatal("freed to a destroyed cache", cache: name, object: object,
                             details: ["\(freeOperation)(\(name)): \(hex(object)) freed to a destroyed cache"])
        }
        guard tracksUsers else { return slabLayer.freeOne(object) }
        var site = SlabTrack.capture()
        slabLayer.freeOne(object, site: &site)
    }

    // MARK: Shrink, reap, destroy

    /// Returns every cached object to its slab (all CPUs' magazines and the depot), every empty
    /// slab to the OS, and the pages of the depot's empty magazines. Safe while other threads
    /// keep allocating and freeing. Returns the bytes of the slabs released (the magazines' pages,
    /// at most 2 KiB a magazine, are not counted).
    @discardableResult
    public func shrink() -> Int {
        guard !isDestroyed else { return 0 }
        drainLock.withLock { _ in
            guard let cpuLayer else { return }
            cpuLayer.withEveryCPUStopped { cpuLayer.drainStoppedCPUs() }
            cpuLayer.flushDepot(all: true)
            cpuLayer.releaseEmptyMagazines()
        }
        return slabLayer.releaseEmptySlabs()
    }

    /// Bonwick's reap: returns the depot's full magazines that were not needed since the last
    /// reap (outside the working set), then releases empty slabs. Leaves CPUs' magazines alone.
    @discardableResult
    public func reap() -> Int {
        guard !isDestroyed else { return 0 }
        drainLock.withLock { _ in cpuLayer?.flushDepot(all: false) }
        return slabLayer.releaseEmptySlabs()
    }

    /// Destroys the cache (kmem_cache_destroy). Throws, and leaves the cache intact and usable,
    /// when objects are still allocated ("Slab cache still has objects").
    public func destroy() throws {
        if servesKmalloc { throw SlabError.servesKmalloc(name) }
        // From inside one of its own constructors (the allocation that runs it goes on with the
        // cache) or destructors (shrink or destroy is releasing its slabs; destroy's own drain
        // lock is held): stop with a report rather than corrupt it or wait for ever.
        if cslab_tls_get_callback_owner() == UnsafeRawPointer(slabLayer.ownerToken) {
            SlabReport.fatal("destroy from inside its own constructor or destructor", cache: name, object: nil, details: [
                "kmem_cache_destroy(\(name)): called from inside one of the cache's own constructors or destructors, "
                    + "while the operation that runs it still uses the cache"])
        }
        try drainLock.withLock { _ in
            guard !destroyedFlag.load(ordering: .acquiring) else { throw SlabError.destroyed(name) }
            // With every CPU stopped, no magazine can fill again behind the count of live objects;
            // a destroyed cache keeps them stopped, so every later operation takes the slow path.
            let finish = { [self] () throws in
                cpuLayer?.flushDepot(all: true)
                let live = slabLayer.activeObjects
                guard live == 0 else {
                    if slabLayer.debug != nil { reportLiveObjects() }
                    throw SlabError.objectsStillAllocated(cache: name, count: live)
                }
                cpuLayer?.retire()
                destroyedFlag.store(true, ordering: .releasing)
                // Unregistered before the destructors run: a destructor that forks must find the
                // fork handlers no longer listing this cache, whose drain lock it holds (Fork.swift,
                // section 5).
                Registry.shared.unregister(self)
                slabLayer.destroy()
            }
            if let cpuLayer {
                try cpuLayer.withEveryCPUStopped {
                    cpuLayer.drainStoppedCPUs()
                    try finish()
                }
            } else {
                try finish()
            }
        }
    }

    public var isDestroyed: Bool { destroyedFlag.load(ordering: .acquiring) }

    /// A debug cache's destroy with live objects: how many, and the first five (with U, where
    /// they were allocated), on stderr, as Linux's "Objects remaining in X on
    /// __kmem_cache_shutdown()". A cache without letters only throws: its error has the count,
    /// and SLAB_DEBUG=U,<name> shows where the objects came from.
    private func reportLiveObjects() {
        let (count, lines) = slabLayer.liveObjectsReport(limit: 5)
        SlabReport.warn("Objects remaining in \(name) on kmem_cache_destroy()", cache: name, object: nil,
                        details: ["kmem_cache_destroy(\(name)): \(count) objects remaining; destroy refused"] + lines)
    }

    /// Walks every slab checking its free list and counts and, with debug letters, every object:
    /// its state (F), red zones (Z) and, if free, its poison (P). Returns what it found, as
    /// Linux's `slabinfo -v` validates a cache; never stops the process. Takes the slab layer's
    /// lock for the walk, so a debug cache (whose every operation takes that lock) is validated
    /// exactly while other threads use it. Objects in a per-CPU layer's magazines count as
    /// allocated here, as they do in the slab layer.
    public func validate() -> SlabValidation {
        guard !isDestroyed else { return SlabValidation(cache: name, slabs: 0, objects: 0, defects: []) }
        return slabLayer.validate()
    }

    /// Checks every layer's invariants (the slab layer's equations, the page source's buddy
    /// blocks, and the per-CPU layer's magazines and depot); returns the problems found, empty
    /// when all hold. Compiled in every build, run only when called: exact only while no other
    /// thread uses the cache.
    public func checkInvariants() -> [String] {
        guard !isDestroyed else { return [] }
        return drainLock.withLock { _ in
            slabLayer.checkInvariants() + slabLayer.pages.checkInvariants()
                + (cpuLayer?.checkInvariants() ?? [])
        }
    }
}
