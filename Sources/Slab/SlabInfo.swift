// SlabInfo: a cache's numbers, and the registry rendered exactly as the kernel's /proc/slabinfo
// version 2.1 (mm/slab_common.c), so that any tool that reads that file can read ours.
//
// Column mapping for our caches:
//   active_objs   objects out of the slab layer: allocated to callers or cached in magazines
//                 (as Linux counts objects in per-CPU caches as active)
//   num_objs      objects in all slabs
//   objsize       layout.objectSize;  objperslab, pagesperslab: the slab geometry
//   tunables      limit = M (rounds per magazine), batchcount = M (objects moved per depot
//                 exchange or slab-layer fill), sharedfactor = 0 (no shared array)
//   slabdata      active_slabs = slabs with an object in use, num_slabs, sharedavail = rounds
//                 sitting in the depot's full magazines

import CSlab

/// A cache's numbers at one moment (each layer's figures are read under that layer's rules, so
/// the total is exact when the cache is quiet and approximate while it is busy).
public struct SlabCacheStatistics: Sendable, Equatable {
    public var name: String
    public var objectSize: Int
    public var align: Int
    public var objectsPerSlab: Int
    public var pagesPerSlab: Int
    public var colours: Int
    public var mode: CPULayerMode
    public var magazineCapacity: Int
    /// The debug letters in force ("FZPU" order; "" for none). Not part of the slabinfo 2.1 line.
    public var debugLetters: String
    /// P is set but objects are not poisoned: the cache has a constructor (SlabDebug.swift).
    public var poisonWaived: Bool

    // Slab layer
    public var activeObjects: Int
    public var totalObjects: Int
    public var activeSlabs: Int
    public var totalSlabs: Int
    public var emptySlabs: Int
    public var slabsCreated: Int
    public var slabsReleased: Int
    public var slabLayerLocks: Int

    // Magazine layers
    public var cpuCachedObjects: Int
    public var depotFullMagazines: Int
    public var depotEmptyMagazines: Int
    public var depotRounds: Int
    public var magazinesMade: Int

    // Events
    public var fastAllocations: Int
    public var fastFrees: Int
    public var exchanges: Int
    public var depotFullTaken: Int
    public var depotEmptyTaken: Int
    public var depotFullReturned: Int
    public var slabFills: Int
    public var bypassAllocations: Int
    public var bypassFrees: Int
    /// Full magazines whose rounds went to the slab layer because the depot was at its limit.
    public var depotOverflows: Int
    /// Failed commits (a ladder's transition lost to a migration or another thread on the CPU),
    /// depot CAS retries and fallback slot collisions.
    public var contention: Int

    /// Objects the caller holds: active minus cached.
    public var liveObjects: Int { activeObjects - cpuCachedObjects - depotRounds }
    public var slabBytes: Int { totalSlabs * pagesPerSlab * SlabLayout.pageSize }
}

extension SlabCache {
    /// Each layer's snapshot, put together.
    public var statistics: SlabCacheStatistics {
        let slab = slabLayer.snapshot()
        let cpu = cpuLayer?.snapshot() ?? CPULayerSnapshot()
        func count(_ e: SlowPathCounters.Event) -> Int { cpu.events[e] ?? 0 }
        var fastAllocations = cpu.countedAllocations
        if mode == .rseq {
            // rseq sections count frees only. Every allocation and free either used a magazine or
            // bypassed to the slab layer, so
            //   magazine pops = live + magazine pushes + bypassed frees - bypassed allocations,
            // with live = active - cached - depot rounds (exact when the cache is quiet).
            let live = slab.activeObjects - cpu.cachedRounds - cpu.depotRounds
            fastAllocations = max(0, live + cpu.fastFrees + count(.bypassFrees) - count(.bypassAllocations))
        }
        return SlabCacheStatistics(
            name: name, objectSize: layout.objectSize, align: layout.align,
            objectsPerSlab: layout.objectsPerSlab, pagesPerSlab: layout.pagesPerSlab,
            colours: layout.colours, mode: mode, magazineCapacity: magazineCapacity,
            debugLetters: layout.debug.letters, poisonWaived: layout.debug.contains(.poison) && !layout.poisonsObjects,
            activeObjects: slab.activeObjects, totalObjects: slab.totalObjects,
            activeSlabs: slab.activeSlabs, totalSlabs: slab.totalSlabs, emptySlabs: slab.emptySlabs,
            slabsCreated: slab.slabsCreated, slabsReleased: slab.slabsReleased,
            slabLayerLocks: slab.lockAcquisitions,
            cpuCachedObjects: cpu.cachedRounds,
            depotFullMagazines: cpu.depotFullMagazines,
            depotEmptyMagazines: cpu.depotEmptyMagazines,
            depotRounds: cpu.depotRounds,
            magazinesMade: cpu.magazinesMade,
            fastAllocations: fastAllocations, fastFrees: cpu.fastFrees,
            exchanges: count(.exchanges), depotFullTaken: count(.depotFullTaken),
            depotEmptyTaken: count(.depotEmptyTaken), depotFullReturned: count(.depotFullReturned),
            slabFills: count(.slabFills), bypassAllocations: count(.bypassAllocations),
            bypassFrees: count(.bypassFrees), depotOverflows: count(.depotOverflows),
            contention: count(.commitRetries) + count(.slotContention) + cpu.depotContention)
    }
}

public enum SlabInfo {
    /// The two header lines of /proc/slabinfo version 2.1.
    public static let header = """
        slabinfo - version: 2.1
        # name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>
        """

    /// One cache's line, formatted as the kernel's cache_show():
    /// "%-17s %6lu %6lu %6u %4u %4d : tunables %4u %4u %4u : slabdata %6lu %6lu %6lu".
    public static func line(_ s: SlabCacheStatistics) -> String {
        pad(s.name, 17, left: true) + " " + pad(s.activeObjects, 6) + " " + pad(s.totalObjects, 6) + " "
            + pad(s.objectSize, 6) + " " + pad(s.objectsPerSlab, 4) + " " + pad(s.pagesPerSlab, 4)
            + " : tunables " + pad(s.magazineCapacity, 4) + " " + pad(s.magazineCapacity, 4) + " " + pad(0, 4)
            + " : slabdata " + pad(s.activeSlabs, 6) + " " + pad(s.totalSlabs, 6) + " " + pad(s.depotRounds, 6)
    }

    /// The whole file for the given caches (default: every registered cache).
    public static func render(_ caches: [SlabCache] = Registry.shared.caches) -> String {
        ([header] + caches.map { line($0.statistics) }).joined(separator: "\n") + "\n"
    }

    /// The richer per-cache report: every layer's counters.
    public static func report(_ s: SlabCacheStatistics) -> String {
        func pct(_ a: Int, _ b: Int) -> String {
            b == 0 ? "-" : String(Double(Int(Double(a) * 1000 / Double(b))) / 10) + "%"
        }
        // Every allocation is a magazine pop or a bypass; a pop needed the ladder at most once per
        // exchange, depot trip or slab fill, so the rest were served by the first pop.
        let allocations = s.fastAllocations + s.bypassAllocations
        let ladderTrips = s.depotFullTaken + s.slabFills
        let debug = s.debugLetters.isEmpty ? ""
            : ", debug \(s.debugLetters)" + (s.poisonWaived ? " (objects not poisoned: constructor)" : "")
        return """
            cache \(s.name): object \(s.objectSize) B (align \(s.align)), \(s.objectsPerSlab) per \(s.pagesPerSlab)-page slab, \(s.colours) colour(s), CPU layer \(s.mode.rawValue), M = \(s.magazineCapacity)\(debug)
              slab layer   slabs \(s.totalSlabs) (\(s.activeSlabs) active, \(s.emptySlabs) empty), objects \(s.activeObjects)/\(s.totalObjects), created \(s.slabsCreated), released \(s.slabsReleased), lock acquisitions \(s.slabLayerLocks)
              cpu layer    cached rounds \(s.cpuCachedObjects), fast allocs \(s.fastAllocations), fast frees \(s.fastFrees), exchanges \(s.exchanges), allocations from a magazine \(pct(s.fastAllocations, allocations)), depot or slab trips per 1000 allocations \(allocations == 0 ? "-" : String(ladderTrips * 1000 / allocations))
              depot        full \(s.depotFullMagazines) (\(s.depotRounds) rounds), empty \(s.depotEmptyMagazines), full taken \(s.depotFullTaken), full returned \(s.depotFullReturned), overflowed \(s.depotOverflows), empty taken \(s.depotEmptyTaken), magazines made \(s.magazinesMade)
              slab calls   fills \(s.slabFills), bypass allocs \(s.bypassAllocations), bypass frees \(s.bypassFrees), contention \(s.contention)
              live         \(s.liveObjects) objects held by callers
            """
    }

    static func pad(_ value: Int, _ width: Int) -> String { pad(String(value), width, left: false) }

    static func pad(_ text: String, _ width: Int, left: Bool) -> String {
        let n = text.count
        guard n < width else { return text }
        let spaces = String(repeating: " ", count: width - n)
        return left ? text + spaces : spaces + text
    }
}
