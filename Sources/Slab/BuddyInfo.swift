// BuddyInfo: this library's page allocators (each cache's PageSource, and kmalloc's page
// allocator for requests above 8 KiB) written as the kernel writes /proc/buddyinfo, free blocks
// per order, so that a tool that reads that file reads ours. BuddyZone, one line of the file, is
// the row model the reader in the SlabTop target (ProcBuddyInfo) parses into, for the kernel's
// zones and for ours alike; the readable view is there too.
//
// 1. The format (mm/vmstat.c, frag_show_print)
// ---------------------------------------------
//     Node 0, zone      DMA      0      0      0      0      0      0      0      0      1      1      3
//     Node 0, zone   Normal   5096   3401   1406    933    457    256    161    262    308    123     54
//
//   One zone a line: "Node %d, zone %8s " and then "%6lu " for each order from 0 up (11 orders on
//   x86-64, 0 to 10), each count the zone's free blocks of 2^order pages. There is no header.
//
// 2. This library's zones
// -----------------------
//   One line per page source, named after its cache ("Node 0, zone  mycache ..."), and
//   "kmalloc-large" for kmalloc's page allocator. The counts are the free blocks in the arenas
//   the page source has carved so far (the rest of its reserved range is address space, not
//   memory); since every released block goes back to the OS at once, a free block here holds no
//   memory: the counts show how the address space is split.

/// One zone's free blocks per order: a line of /proc/buddyinfo.
public struct BuddyZone: Sendable, Equatable {
    public var node: Int
    public var name: String
    /// Free blocks of each order (index = order): blocks of 2^order pages.
    public var freeBlocks: [Int]

    public init(node: Int = 0, name: String, freeBlocks: [Int]) {
        self.node = node
        self.name = name
        self.freeBlocks = freeBlocks
    }

    /// A page source's free blocks, as a zone named `name`.
    init(name: String, pages: PageSource) {
        self.init(node: 0, name: name, freeBlocks: pages.freeBlocksPerOrder())
    }

    /// The line as the kernel prints it, "Node %d, zone %8s " and "%6lu " per order (no newline;
    /// it ends with a blank, as the kernel's does).
    public var line: String {
        "Node \(node), zone " + SlabInfo.pad(name, 8, left: false) + " "
            + freeBlocks.map { SlabInfo.pad($0, 6) + " " }.joined()
    }
}

public enum BuddyInfo {
    /// This library's page allocators now: one zone per live cache, named after it, then
    /// kmalloc's page allocator ("kmalloc-large") once kmalloc has been used.
    public static var zones: [BuddyZone] {
        var zones = Registry.shared.caches.map { BuddyZone(name: $0.name, pages: $0.slabLayer.pages) }
        if let large = Kmalloc.pageAllocatorZone { zones.append(large) }
        return zones
    }

    /// The text exactly as the kernel prints it, a line per zone (default: this library's zones).
    public static func render(_ zones: [BuddyZone] = zones) -> String {
        zones.map { $0.line + "\n" }.joined()
    }
}
