// SlabInfo: a cache's numbers, and the registry rendered exactly as the kernel's /proc/slabinfo
// version 2.1 (mm/slab_common.c), so that any tool that reads that file can read ours. Each
// cache's line is a SlabInfoRow (SlabInfoRow.swift, which maps our numbers to the columns); the
// reader and the slabtop-style views are in the SlabTop target, which parses into the same row.

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
    public static func line(_ s: SlabCacheStatistics) -> String { SlabInfoRow(s).line }

    /// The whole file for the given caches (default: every registered cache).
    public static func render(_ caches: [SlabCache] = Registry.shared.caches) -> String {
        render(rows: caches.map { SlabInfoRow($0.statistics) })
    }

    /// The whole file for the given rows: the header, then one line each.
    public static func render(rows: [SlabInfoRow]) -> String {
        ([header] + rows.map(\.line)).joined(separator: "\n") + "\n"
    }

    /// The richer per-cache report: every layer's counters.
    public static func report(_ s: SlabCacheStatistics) -> String {
        let debug = s.debugLetters.isEmpty ? ""
            : ", debug \(s.debugLetters)" + (s.poisonWaived ? " (objects not poisoned: constructor)" : "")
        return """
            cache \(s.name): object \(s.objectSize) B (align \(s.align)), \(s.objectsPerSlab) per \(s.pagesPerSlab)-page slab, \(s.colours) colour(s), CPU layer \(s.mode.rawValue), M = \(s.magazineCapacity)\(debug)
              slab layer   slabs \(s.totalSlabs) (\(s.activeSlabs) active, \(s.emptySlabs) empty), objects \(s.activeObjects)/\(s.totalObjects), created \(s.slabsCreated), released \(s.slabsReleased), lock acquisitions \(s.slabLayerLocks)
              cpu layer    cached rounds \(s.cpuCachedObjects), fast allocs \(s.fastAllocations), fast frees \(s.fastFrees), exchanges \(s.exchanges), \(allocationFigures(s))
              depot        full \(s.depotFullMagazines) (\(s.depotRounds) rounds), empty \(s.depotEmptyMagazines), full taken \(s.depotFullTaken), full returned \(s.depotFullReturned), overflowed \(s.depotOverflows), empty taken \(s.depotEmptyTaken), magazines made \(s.magazinesMade)
              slab calls   fills \(s.slabFills), bypass allocs \(s.bypassAllocations), bypass frees \(s.bypassFrees), contention \(s.contention)
              live         \(s.liveObjects) objects held by callers
            """
    }

    /// Below this many allocations the report gives counts only: a share or a rate per 1000 of a
    /// handful says nothing (after one allocation, whose magazine was filled first, it read
    /// "100.0% from a magazine" beside "1000 trips per 1000 allocations").
    static let allocationsForRates = 1000

    /// The cpu layer's allocations and its trips beyond the CPU. Every allocation is a magazine pop
    /// or a bypass to the slab layer; a pop went to the depot or the slab layer for a full magazine
    /// at most once per depot trip or slab fill, and the others were served by the magazine alone.
    static func allocationFigures(_ s: SlabCacheStatistics) -> String {
        let allocations = s.fastAllocations + s.bypassAllocations
        let trips = s.depotFullTaken + s.slabFills
        guard allocations >= allocationsForRates else {
            return "allocations \(allocations), depot or slab trips \(trips)"
        }
        let rate = trips > 0 && trips * 10_000 < allocations ? "<0.1" : tenths(trips * 1000, allocations)
        return "allocations \(allocations) (\(tenths(s.fastAllocations * 100, allocations))% from a magazine), "
            + "depot or slab trips \(trips) (\(rate) per 1000 allocations)"
    }

    /// a / b with one decimal, truncated (99.96 is "99.9", so a share below all reads below 100).
    static func tenths(_ a: Int, _ b: Int) -> String {
        let t = a * 10 / b
        return "\(t / 10).\(t % 10)"
    }

    /// A number right-aligned in `width` columns, as printf's "%6lu"; wider numbers are kept whole.
    /// (package: the SlabTop views lay out their columns with it too.)
    package static func pad(_ value: Int, _ width: Int) -> String { pad(String(value), width, left: false) }

    /// Text padded with blanks to `width` columns, on the right when `left` ("%-17s"), else on the left.
    package static func pad(_ text: String, _ width: Int, left: Bool) -> String {
        let n = text.count
        guard n < width else { return text }
        let spaces = String(repeating: " ", count: width - n)
        return left ? text + spaces : spaces + text
    }
}
