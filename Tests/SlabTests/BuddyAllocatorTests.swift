// The buddy page allocator (PageSource) on its own: blocks split from the top order and merge
// back with their buddies, every block is naturally aligned, no block is handed out twice, the
// free and allocated blocks always tile the arenas, and freeing everything leaves whole arenas.

@testable import Slab
import Harness
import TestSupport
import XCTest

final class BuddyAllocatorTests: XCTestCase {
    let top = SlabLayout.maxOrder
    let page = UInt(SlabLayout.pageSize)

    func makeSource() throws -> PageSource { try XCTUnwrap(PageSource(), "the OS refused a range") }

    /// Free blocks per order as an array of (order, count) pairs for the orders that have any.
    func nonZero(_ counts: [Int]) -> [Int: Int] {
        Dictionary(uniqueKeysWithValues: counts.enumerated().filter { $0.element > 0 }.map { ($0.offset, $0.element) })
    }

    func test_allocateOnePage_splitsTheTopBlock_leavingOneFreeBlockPerLowerOrder() throws {
        let source = try makeSource()
        let block = try XCTUnwrap(source.allocate(order: 0))
        XCTAssertEqual(source.arenaCount, 1)
        // 1024 pages = 1 + 1 + 2 + 4 + ... + 512: one free buddy of each order 0...9 is left.
        XCTAssertEqual(source.freeBlocksPerOrder(), Array(repeating: 1, count: top) + [0])
        XCTAssertEqual(source.allocatedBlocksPerOrder()[0], 1)
        XCTAssertEqual(source.checkInvariants(), [])
        source.release(block, order: 0)
        XCTAssertEqual(source.freeBlocksPerOrder(), Array(repeating: 0, count: top) + [1], "merged back into the arena")
        XCTAssertEqual(source.checkInvariants(), [])
    }

    func test_buddies_mergeOnlyWithEachOther() throws {
        let source = try makeSource()
        let blocks = try (0..<4).map { _ in try XCTUnwrap(source.allocate(order: 0)) }
        let addresses = blocks.map { UInt(bitPattern: $0) }
        // The lowest free block is taken first after a split, so the four are consecutive pages.
        XCTAssertEqual(Set(addresses).count, 4)
        let sorted = addresses.sorted()
        XCTAssertEqual(sorted.last! - sorted.first!, 3 * page)
        func block(_ i: Int) -> UnsafeMutableRawPointer { UnsafeMutableRawPointer(bitPattern: sorted[i])! }
        // Pages 1 and 2 are neighbours but not buddies (1's buddy is 0, 2's is 3): no merge.
        source.release(block(1), order: 0)
        source.release(block(2), order: 0)
        XCTAssertEqual(source.freeBlocksPerOrder()[0], 2)
        XCTAssertEqual(source.checkInvariants(), [])
        // 0 joins 1 (order 1); 3 joins 2 (order 1), and the two order-1 buddies join, and so on up.
        source.release(block(0), order: 0)
        XCTAssertEqual(source.freeBlocksPerOrder()[0], 1)
        XCTAssertEqual(source.freeBlocksPerOrder()[1], 1)
        source.release(block(3), order: 0)
        XCTAssertEqual(source.freeBlocksPerOrder(), Array(repeating: 0, count: top) + [1])
        XCTAssertEqual(source.checkInvariants(), [])
    }

    /// A fill carves an arena in ascending addresses, one block right above the last, and does
    /// so again once everything went back (the arena merged whole): a cache that fills its range
    /// in order keeps one run of advised huge pages, and its slabs are neighbours.
    func test_aFill_carvesBlocksInAscendingAddresses_andAgainAfterEverythingWentBack() throws {
        let source = try makeSource()
        for order in [0, 1, 3] {
            let n = (1 << top) >> order
            for _ in 0..<2 {
                let blocks = try (0..<n).map { _ in UInt(bitPattern: try XCTUnwrap(source.allocate(order: order))) }
                XCTAssertEqual(blocks, (0..<n).map { blocks[0] + UInt($0) * (page << UInt(order)) },
                               "order \(order): each block right above the one before")
                XCTAssertEqual(source.checkInvariants(), [])
                source.release(blocks.map { UnsafeMutableRawPointer(bitPattern: $0)! }, order: order)
                XCTAssertEqual(source.freeBlocksPerOrder(), Array(repeating: 0, count: top) + [1])
            }
        }
        XCTAssertEqual(source.arenaCount, 1)
    }

    func test_randomAllocationsAndReleases_neverOverlap_areNaturallyAligned_andKeepTheInvariants() throws {
        let source = try makeSource()
        var rng = SplitMix64(seed: 0xB0DD1)
        var live: [(address: UInt, order: Int)] = []
        // Every page of every live block, to prove no page is handed out twice.
        var pagesInUse = Set<UInt>()
        for step in 0..<3000 {
            if live.isEmpty || rng.next() % 100 < 55 {
                // Small orders most of the time, the occasional whole arena.
                let order = rng.next() % 16 == 0 ? Int(rng.next() % UInt64(top + 1)) : Int(rng.next() % 4)
                let p = try XCTUnwrap(source.allocate(order: order), "step \(step)")
                let address = UInt(bitPattern: p)
                XCTAssertEqual(address % (page << order), 0, "order-\(order) block \(p) not naturally aligned")
                for k in 0..<(1 << order) {
                    XCTAssertTrue(pagesInUse.insert(address + UInt(k) * page).inserted,
                                  "page \(k) of \(p) (order \(order)) is already in another live block")
                }
                live.append((address, order))
            } else {
                let victim = live.remove(at: Int(rng.next() % UInt64(live.count)))
                for k in 0..<(1 << victim.order) { pagesInUse.remove(victim.address + UInt(k) * page) }
                source.release(UnsafeMutableRawPointer(bitPattern: victim.address)!, order: victim.order)
            }
            if step % 250 == 0 { XCTAssertEqual(source.checkInvariants(), [], "step \(step)") }
        }
        XCTAssertEqual(source.allocatedBlocksPerOrder().reduce(0, +), live.count)
        XCTAssertGreaterThan(source.arenaCount, 1, "the mix must have needed more than one arena")
        for block in live { source.release(UnsafeMutableRawPointer(bitPattern: block.address)!, order: block.order) }
        XCTAssertEqual(source.checkInvariants(), [])
        // Freeing everything restores the top-order blocks: one whole free block per arena.
        XCTAssertEqual(source.freeBlocksPerOrder(), Array(repeating: 0, count: top) + [source.arenaCount])
        XCTAssertEqual(source.allocatedBlocksPerOrder(), Array(repeating: 0, count: top + 1))
    }

    func test_releasedBlock_goesBackToTheOS_andReadsZerosWhenHandedOutAgain() throws {
        try ResidentMemory.skipIfDistorted()
        let source = try makeSource()
        let order = 8   // 1 MiB
        let bytes = SlabLayout.pageSize << order
        let p = try XCTUnwrap(source.allocate(order: order))
        let before = try XCTUnwrap(ResidentMemory.bytes())
        memset(p, 0xA5, bytes)
        let touched = try XCTUnwrap(ResidentMemory.bytes())
        XCTAssertGreaterThan(touched - before, bytes / 2, "writing the block made it resident")
        source.release(p, order: order)
        let released = try XCTUnwrap(ResidentMemory.bytes())
        XCTAssertLessThan(released, touched - bytes / 2, "the released block left the resident set")
        let again = try XCTUnwrap(source.allocate(order: order))
        XCTAssertEqual(again, p, "the same block, the lowest free one of its order")
        let words = again.assumingMemoryBound(to: UInt64.self)
        XCTAssertTrue((0..<(bytes / 8)).allSatisfy { words[$0] == 0 }, "a block handed out again reads as zeros")
        source.release(again, order: order)
    }

    func test_forEachRun_joinsAdjacentPiecesOnly() {
        var runs: [[UInt]] = []
        forEachRun(ofSorted: [0, 10, 20, 40, 50, 90], length: 10) { runs.append([$0, $1]) }
        XCTAssertEqual(runs, [[0, 30], [40, 60], [90, 100]])
        runs.removeAll()
        forEachRun(ofSorted: [], length: 10) { runs.append([$0, $1]) }
        XCTAssertEqual(runs, [])
    }

    func test_releaseMany_inAnyOrder_mergesAsOneAtATime_andReturnsTheirPages() throws {
        try ResidentMemory.skipIfDistorted()
        let source = try makeSource()
        // 1,500 single pages over two arenas: runs of neighbours (one madvise each) with gaps
        // where the blocks kept live sit.
        let blocks = try (0..<1500).map { _ in try XCTUnwrap(source.allocate(order: 0)) }
        for b in blocks { memset(b, 0x5A, Int(page)) }
        let touched = try XCTUnwrap(ResidentMemory.bytes())
        var rng = SplitMix64(seed: 0x5A77)
        var shuffled = blocks
        for i in stride(from: shuffled.count - 1, to: 0, by: -1) { shuffled.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        let kept = Set(shuffled.prefix(100).map { UInt(bitPattern: $0) })
        source.release(Array(shuffled.dropFirst(100)), order: 0)
        XCTAssertEqual(source.checkInvariants(), [])
        XCTAssertEqual(source.allocatedBlocksPerOrder()[0], 100)
        let released = try XCTUnwrap(ResidentMemory.bytes())
        XCTAssertLessThan(released, touched - 1000 * Int(page), "the 1,400 released pages left the resident set")
        for b in blocks where !kept.contains(UInt(bitPattern: b)) {
            XCTAssertEqual(b.load(as: UInt64.self), 0, "released page \(b) reads zeros")
        }
        for b in blocks where kept.contains(UInt(bitPattern: b)) {
            XCTAssertEqual(b.load(as: UInt64.self), 0x5A5A_5A5A_5A5A_5A5A, "kept page \(b) is untouched")
        }
        source.release(blocks.filter { kept.contains(UInt(bitPattern: $0)) }, order: 0)
        XCTAssertEqual(source.checkInvariants(), [])
        XCTAssertEqual(source.freeBlocksPerOrder(), Array(repeating: 0, count: top) + [source.arenaCount],
                       "everything merged back into whole arenas")
    }

    // MARK: The page map

    func test_pageMap_givesEveryPageOfALiveSlabItsFirstObject_andZeroOnceItIsReleased() throws {
        // A 3000-byte cache has multi-page slabs, so every page of one must map to the same word.
        let cache = try SlabCache(name: uniqueCacheName("pagemap"), size: 3000)
        defer { try? cache.destroy() }
        let pages = cache.slabLayer.pages
        let p = try XCTUnwrap(cache.allocate())
        let slabBytes = UInt(cache.layout.slabBytes)
        XCTAssertGreaterThan(cache.layout.order, 0, "the test wants a slab of several pages")
        let slab = UInt(bitPattern: p) & ~(slabBytes - 1)
        let first = UInt(bitPattern: cache.slabLayer.table.header(of: p).objectsStart)
        for page in stride(from: slab, to: slab + slabBytes, by: Int(self.page)) {
            XCTAssertEqual(pages.firstObject(mappedAt: page), first, "page \(hex(page)) of the live slab")
        }
        XCTAssertEqual(pages.firstObject(mappedAt: slab + slabBytes), 0, "the page after the slab is no slab's")
        XCTAssertEqual(pages.firstObject(mappedAt: 16), 0, "an address outside the range maps to nothing")
        cache.free(p)
        cache.shrink()
        XCTAssertEqual(cache.statistics.totalSlabs, 0)
        for page in stride(from: slab, to: slab + slabBytes, by: Int(self.page)) {
            XCTAssertEqual(pages.firstObject(mappedAt: page), 0, "page \(hex(page)) after the slab was released")
        }
    }

    func test_releaseBlockAt_findsTheOrder_andRefusesInteriorAndFreedAddresses() throws {
        let source = try makeSource()
        let p = try XCTUnwrap(source.allocate(order: 3))
        let address = UInt(bitPattern: p)
        XCTAssertEqual(source.release(blockAt: address + 2 * page), .interior(blockStart: address, order: 3))
        XCTAssertEqual(source.release(blockAt: address + 1), .interior(blockStart: address, order: 3))
        XCTAssertEqual(source.release(blockAt: address), .released(order: 3))
        XCTAssertEqual(source.release(blockAt: address), .notAllocated, "a second release finds nothing")
        XCTAssertEqual(source.release(blockAt: 4096), .notAllocated, "outside the range")
        XCTAssertEqual(source.checkInvariants(), [])
        XCTAssertEqual(source.freeBlocksPerOrder(), Array(repeating: 0, count: top) + [1])
    }
}
