// SlabInfoRow: one cache line of /proc/slabinfo version 2.1, the row model that this library's
// writer (SlabInfo.line, SlabInfo.render) formats and the reader (ProcSlabInfo in the SlabTop
// target) parses into, for the kernel's caches and for ours alike.
//
// The line, as the kernel's cache_show() prints it (mm/slab_common.c):
//     "%-17s %6lu %6lu %6u %4u %4d : tunables %4u %4u %4u : slabdata %6lu %6lu %6lu"
//      name  active_objs num_objs objsize objperslab pagesperslab
//            : tunables limit batchcount sharedfactor : slabdata active_slabs num_slabs sharedavail
//
// Column mapping for our caches (init(_: SlabCacheStatistics)):
//   active_objs   objects out of the slab layer: allocated to callers or cached in magazines
//                 (as Linux counts objects in per-CPU caches as active)
//   num_objs      objects in all slabs
//   objsize       layout.objectSize;  objperslab, pagesperslab: the slab geometry
//   tunables      limit = M (rounds per magazine), batchcount = M (objects moved per depot
//                 exchange or slab-layer fill), sharedfactor = 0 (no shared array)
//   slabdata      active_slabs = slabs with an object in use, num_slabs, sharedavail = rounds
//                 sitting in the depot's full magazines
// SLUB kernels print 0 for every tunable and for sharedavail.

/// A cache's line of /proc/slabinfo 2.1: the twelve columns, as numbers.
public struct SlabInfoRow: Sendable, Equatable {
    /// name: no blanks in it.
    public var name: String
    /// active_objs
    public var activeObjects: Int
    /// num_objs
    public var totalObjects: Int
    /// objsize: bytes per object.
    public var objectSize: Int
    /// objperslab
    public var objectsPerSlab: Int
    /// pagesperslab
    public var pagesPerSlab: Int
    /// tunables: limit
    public var limit: Int
    /// tunables: batchcount
    public var batchCount: Int
    /// tunables: sharedfactor
    public var sharedFactor: Int
    /// slabdata: active_slabs
    public var activeSlabs: Int
    /// slabdata: num_slabs
    public var totalSlabs: Int
    /// slabdata: sharedavail
    public var sharedAvailable: Int

    public init(name: String, activeObjects: Int, totalObjects: Int, objectSize: Int, objectsPerSlab: Int,
                pagesPerSlab: Int, limit: Int = 0, batchCount: Int = 0, sharedFactor: Int = 0,
                activeSlabs: Int, totalSlabs: Int, sharedAvailable: Int = 0) {
        self.name = name
        self.activeObjects = activeObjects
        self.totalObjects = totalObjects
        self.objectSize = objectSize
        self.objectsPerSlab = objectsPerSlab
        self.pagesPerSlab = pagesPerSlab
        self.limit = limit
        self.batchCount = batchCount
        self.sharedFactor = sharedFactor
        self.activeSlabs = activeSlabs
        self.totalSlabs = totalSlabs
        self.sharedAvailable = sharedAvailable
    }

    /// One of our caches, mapped as the header of this file says.
    public init(_ s: SlabCacheStatistics) {
        self.init(name: s.name, activeObjects: s.activeObjects, totalObjects: s.totalObjects, objectSize: s.objectSize,
                  objectsPerSlab: s.objectsPerSlab, pagesPerSlab: s.pagesPerSlab, limit: s.magazineCapacity,
                  batchCount: s.magazineCapacity, sharedFactor: 0, activeSlabs: s.activeSlabs,
                  totalSlabs: s.totalSlabs, sharedAvailable: s.depotRounds)
    }

    /// The numeric columns after the name, as the header names them, section by section (the
    /// reader names them in its errors).
    public static let headColumns = ["active_objs", "num_objs", "objsize", "objperslab", "pagesperslab"]
    public static let tunableColumns = ["limit", "batchcount", "sharedfactor"]
    public static let slabdataColumns = ["active_slabs", "num_slabs", "sharedavail"]

    /// The line as the kernel's cache_show() prints it (no newline). Numbers wider than their
    /// column, and names longer than 17, push the rest right, as printf does.
    public var line: String {
        func n(_ value: Int, _ width: Int) -> String { SlabInfo.pad(value, width) }
        return SlabInfo.pad(name, 17, left: true) + " " + n(activeObjects, 6) + " " + n(totalObjects, 6) + " "
            + n(objectSize, 6) + " " + n(objectsPerSlab, 4) + " " + n(pagesPerSlab, 4)
            + " : tunables " + n(limit, 4) + " " + n(batchCount, 4) + " " + n(sharedFactor, 4)
            + " : slabdata " + n(activeSlabs, 6) + " " + n(totalSlabs, 6) + " " + n(sharedAvailable, 6)
    }
}
