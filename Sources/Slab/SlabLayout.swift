// SlabLayout: the arithmetic of one cache's slabs, with no memory behind it (so it can be tested
// exhaustively). Everything the slab layer needs to carve a slab is decided here, once, at
// cache creation.
//
//   slab (2^order pages, aligned to its own size)
//   +--------+--------+--------+-----+--------+----------+
//   | colour | obj 0  | obj 1  | ... | obj n-1| leftover |
//   +--------+--------+--------+-----+--------+----------+
//    c*step   stride each                     slack - c*step
//
// The slab's header is not in the slab: it lives in the cache's slab table (Slab.swift), so
// every byte of a slab is objects, colour or leftover.
//
// Object size follows Linux: the requested size is rounded up to a machine word, then to the
// alignment (20 bytes at align 8 -> 24). The free-list link lives in the object's first word,
// unless the cache has a constructor: constructed objects must keep their state while free
// (Bonwick's object caching), so the link moves past the object and the stride grows by a word
// (SLUB makes the same choice).
//
// Debug letters (SlabDebug.swift) add metadata to every object, as SLUB's calculate_sizes does,
// and the stride grows to hold it. Offsets are from the object's start:
//
//   -leftRedZone ..< 0          Z: red zone before the object (a word, rounded up to the alignment,
//                               so that the object keeps its alignment)
//   0 ..< objectSize            the caller's bytes, all of them (the requested size rounded up
//                               is the caller's); P: poisoned while free, unless constructed
//   objectSize ..< + word       Z: red zone after the object
//   freeLinkOffset              the free-list link: past the red zone when P or a constructor
//                               keeps the object's bytes, else inside the object at 0
//   stateOffset                 F: one word, the object's allocated/free state
//   trackOffset                 U: two SlabTrack records, the last allocation and the last free
//
// The stride is all of it rounded up to the alignment; the first object starts leftRedZone bytes
// into the slab (plus its colour), so every object and every red zone before it is aligned.

/// The geometry of one cache's slabs.
public struct SlabLayout: Equatable, Sendable {
    /// The size the caller asked for.
    public let requestedSize: Int
    /// The alignment every object honours (a power of two).
    public let align: Int
    /// The object size as slabinfo reports it: requested size rounded to a word, then to `align`.
    public let objectSize: Int
    /// Distance between consecutive objects in a slab (objectSize, plus a word for the free-list
    /// link when the cache has a constructor, plus the debug letters' metadata).
    public let stride: Int
    /// Offset of the free-list link from a free object's start (0: in its first word).
    public let freeLinkOffset: Int
    /// Slab size is 2^order pages.
    public let order: Int
    public let objectsPerSlab: Int
    /// Number of distinct colour offsets (>= 1).
    public let colours: Int
    /// Bytes between colour offsets.
    public let colourStep: Int
    /// The debug letters this layout makes room for (only `.consistencyChecks`, `.redZone`,
    /// `.poison` and `.storeUser` count; empty for a cache without debugging).
    public let debug: SlabFlags
    /// Z: bytes of red zone before each object (0 without Z).
    public let leftRedZone: Int
    /// Z: bytes of red zone after the object's `objectSize` bytes (0 without Z).
    public let rightRedZone: Int
    /// F: offset of the object's allocated/free state word; nil without F.
    public let stateOffset: Int?
    /// U: offset of the object's two SlabTrack records (allocation, then free); nil without U.
    public let trackOffset: Int?
    /// P on a cache without a constructor: free objects are filled with the poison pattern. A
    /// constructed object keeps its bytes while free (SLUB disables poisoning for such caches).
    public var poisonsObjects: Bool { debug.contains(.poison) && !hasConstructor }
    /// The cache runs a constructor (its free-list link lives past the object).
    public let hasConstructor: Bool

    public static let pageSize = 4096
    /// The largest slab the page source hands out (the buddy allocator's arena: 1024 pages).
    public static let maxOrder = 10
    /// The largest object a cache accepts.
    public static let maxObjectSize = 1 << 20
    /// The largest alignment a cache accepts.
    public static let maxAlign = pageSize
    /// Wasted fraction (leftover) we accept before trying a larger slab: 1/32.
    static let wasteDenominator = 32
    /// A slab should hold at least this many objects when that fits in the largest slab. Every
    /// slab costs the slab layer a header and four list moves per fill-and-drain cycle, so fewer,
    /// larger slabs cost less per object. Against in-slab headers, 8 here (16 256-byte objects a page) made a
    /// million 256-byte objects freed in random order 17% faster and freed oldest first 5.8%
    /// slower; 32 (two pages of them) 23% faster and 3.0% slower, the sawtooth at 256 bytes 9.9%
    /// faster (same-machine A/Bs, 10 samples a side).
    public static let minObjects = 32

    public var slabBytes: Int { Self.pageSize << order }
    public var pagesPerSlab: Int { 1 << order }
    /// Bytes of a slab that hold no object: colour slack and leftover.
    public var wastePerSlab: Int { slabBytes - objectsPerSlab * stride }
    /// Slab bytes per object, as a multiple of objectSize (1.0 would be a perfect fit).
    public var overheadRatio: Double { Double(slabBytes) / Double(objectsPerSlab * objectSize) }

    /// Computes the layout, or returns nil when the size or alignment cannot be served.
    /// `debug`: the debug letters to make room for (other flags are ignored).
    public init?(size: Int, align requestedAlign: Int, hardwareCacheAlign: Bool = false,
                 hasConstructor: Bool = false, cacheLine: Int = 64, debug: SlabFlags = []) {
        self.init(size: size, align: requestedAlign, hardwareCacheAlign: hardwareCacheAlign,
                  hasConstructor: hasConstructor, cacheLine: cacheLine, alignLimit: Self.maxAlign, debug: debug)
    }

    /// The same, with a larger alignment limit: kmalloc-8k aligns its objects to 8 KiB (kmalloc
    /// gives power-of-two sizes their natural alignment), beyond what a cache offers its users.
    init?(size: Int, align requestedAlign: Int, hardwareCacheAlign: Bool = false,
          hasConstructor: Bool = false, cacheLine: Int = 64, alignLimit: Int, debug requestedDebug: SlabFlags = []) {
        guard size >= 1, size <= Self.maxObjectSize else { return nil }
        guard requestedAlign >= 1, requestedAlign <= alignLimit,
              requestedAlign & (requestedAlign - 1) == 0 else { return nil }
        var align = requestedAlign
        if hardwareCacheAlign {
            // SLAB_HWCACHE_ALIGN: align to the cache line, but let small objects share a line.
            var lineAlign = cacheLine
            while size <= lineAlign / 2 { lineAlign /= 2 }
            align = max(align, lineAlign)
        }
        let word = MemoryLayout<UInt>.size
        let objectSize = roundUp(roundUp(size, word), align)
        let debug = requestedDebug.intersection(.debugLetters)
        // Everything after the object's start, in the order of the table above.
        var end = objectSize
        let rightRedZone = debug.contains(.redZone) ? word : 0
        end += rightRedZone
        let linkOutside = hasConstructor || debug.contains(.poison)
        let linkOffset = linkOutside ? end : 0
        end += linkOutside ? word : 0
        let stateOffset: Int? = debug.contains(.consistencyChecks) ? end : nil
        end += debug.contains(.consistencyChecks) ? word : 0
        let trackOffset: Int? = debug.contains(.storeUser) ? end : nil
        end += debug.contains(.storeUser) ? 2 * MemoryLayout<SlabTrack>.size : 0
        let leftRedZone = debug.contains(.redZone) ? roundUp(word, align) : 0
        let stride = roundUp(leftRedZone + end, max(align, word))
        // Objects (each with its left red zone) start at the slab's start: slabs are aligned to
        // their size, so every alignment up to the slab's is honoured.
        func fit(_ order: Int) -> (objects: Int, waste: Int) {
            let bytes = Self.pageSize << order
            let n = bytes / stride
            return (n, bytes - n * stride)
        }
        // The smallest slab that wastes at most 1/32 and holds enough objects; failing that, the
        // one that wastes least (ties go to the smaller slab).
        var chosen = -1
        var best = (order: -1, wasteFraction: Double.infinity)
        for order in 0...Self.maxOrder {
            let (n, waste) = fit(order)
            guard n >= 1 else { continue }
            let bytes = Self.pageSize << order
            let enoughObjects = n >= Self.minObjects || fit(Self.maxOrder).objects < Self.minObjects
            if enoughObjects && waste * Self.wasteDenominator <= bytes { chosen = order; break }
            let fraction = Double(waste) / Double(bytes)
            if fraction < best.wasteFraction { best = (order, fraction) }
        }
        if chosen < 0 { chosen = best.order }
        guard chosen >= 0 else { return nil }

        let (n, _) = fit(chosen)
        let slack = (Self.pageSize << chosen) - n * stride
        // Colour in cache-line steps (or the alignment, if larger), as Linux's SLAB did:
        // successive slabs start their objects at different offsets so that equal-index objects
        // of different slabs do not compete for the same cache sets.
        let step = max(align, cacheLine)
        self.requestedSize = size
        self.align = align
        self.objectSize = objectSize
        self.stride = stride
        self.freeLinkOffset = linkOffset
        self.order = chosen
        self.objectsPerSlab = n
        self.colourStep = step
        self.colours = slack / step + 1
        self.firstObjectOffset = leftRedZone
        self.debug = debug
        self.leftRedZone = leftRedZone
        self.rightRedZone = rightRedZone
        self.stateOffset = stateOffset
        self.trackOffset = trackOffset
        self.hasConstructor = hasConstructor
    }

    /// Offset of the first object in a slab of colour 0 (after its left red zone, with Z).
    public let firstObjectOffset: Int

    /// Offset of the first object in a slab of the given colour index.
    public func objectsOffset(colour: Int) -> Int {
        firstObjectOffset + (colour % colours) * colourStep
    }
}

@inline(__always)
func roundUp(_ x: Int, _ to: Int) -> Int { (x + to - 1) & ~(to - 1) }
