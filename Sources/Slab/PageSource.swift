// PageSource: where a cache's slabs come from, and the library's page allocator. Each cache owns
// one PageSource: a contiguous range of address space reserved at creation, inside which a binary
// buddy allocator hands out 4 MiB arenas and, within them, blocks of 2^k pages, as the kernel pairs
// its buddy allocator (pages) with the slab allocator (objects). kmalloc (Kmalloc.swift) gives
// each of its size-class caches one slot of a single reserved range, and serves its requests
// above 8 KiB from one more page source in the next slot.
//
// 1. Blocks
// ---------
//   Blocks are 2^k pages, k in 0...10, and naturally aligned: a block of 2^k pages starts at a
//   multiple of its own size. A slab is one block, so a pointer finds its slab's block by
//   masking, and its header by a shift (the slab table, Slab.swift). The range's first arena is
//   never carved: no block, and so no object, starts at offset 0 of a range, the offset that
//   round 0 would name (Magazine.swift).
//   Allocation takes the smallest free block of at least the order asked for and splits it,
//   freeing the upper halves (one free block per order on the way down); a released block merges
//   with its buddy (the block whose address differs in bit k) for as long as the buddy is free.
//   Freeing everything therefore leaves each arena one free block of the top order, and
//   `checkInvariants` checks that the free and allocated blocks tile every arena.
//
// 2. Memory goes back to the OS
// -----------------------------
//   A released block is returned to the OS at once (madvise MADV_DONTNEED: its pages leave the
//   resident set and read as zeros, its address range stays ours) and then merged with its free
//   buddy; so a free block holds no memory (but for the free part of a huge page that a fault
//   brought in whole, until its 2 MiB is wholly free: section 6), and a block handed out again
//   reads as zeros (kzalloc relies on it for page-allocator blocks).
//
// 3. Ranges
// ---------
//   Because every slab of a cache lies in its range, "is this pointer one of this cache's
//   objects?" starts with one subtraction and one comparison on the free fast path, with no
//   memory access: a pointer from another cache or from malloc is outside the range. The range
//   is mapped readable from the start (MAP_NORESERVE: no memory is committed until touched), so
//   reading anywhere in it never faults; an unused or released block reads zeros.
//   A page source either reserves its range (and unmaps it when it goes) or is given one slot of
//   a range reserved by kmalloc, which is never unmapped.
//
// 4. The page map
// ----------------
//   Beside the range, one word per page of it: the address of the first object of the slab that
//   covers the page, or 0 where no slab is (SlabLayer sets a slab's words when it carves it and
//   clears them before it releases it). The free fast path reads its "is this the start of an
//   object?" from here, at (p - base) >> 12, rather than from the slab's own header: the words of
//   all the slabs in use lie together (8 bytes per 4 KiB page: 48 KiB of map for 24 MiB of
//   slabs), so with a working set larger than the caches a free rarely misses on it, where the
//   header is a line in a page of its own for every slab. Measured before this map existed, a
//   free that read no header at all made steady-random 20% faster and batch-random-1m 16% faster
//   (same-machine A/B); the map keeps the check and part of the gain: steady-random -7.4% at 20
//   bytes and -15% at 256, batch-random-1m -6% to -8% (not significant in 8 samples).
//   The map is reserved like the range (MAP_NORESERVE, one page of map touched per 2 MiB of
//   slabs) and is 1/512 of its size.
//
// 5. What it shows
// ----------------
//   `freeBlocksPerOrder` counts the free blocks of each order in the arenas carved so far, the
//   figures /proc/buddyinfo gives for a kernel zone (BuddyInfo.swift renders them in that format);
//   the uncarved rest of the range is address space, not memory, and is not counted.
//
// 6. Huge pages
// -------------
//   Each 2 MiB of an arena (a transparent huge page's worth) that has once been wholly allocated
//   in blocks smaller than 2 MiB is advised MADV_HUGEPAGE: the cache filled it and will likely
//   fill it again, so after a shrink gives it back the next fill takes it in one fault, with one
//   TLB entry for its 512 pages. (A slab layer carves a slab only when its others are full, so 2
//   MiB of small slabs is wholly allocated only once nearly all of it has held objects; a slab of
//   2 MiB or more may hold a single object, and a huge page under it would make that object cost
//   2 MiB, so such blocks never count.) The pages it holds when advised stay small pages
//   (khugepaged may fold them later); the advice pays from the next fault on. A cache that never
//   fills 2 MiB (nearly all of them: a live cache holding one object costs 20-27 KB) never sees a
//   huge page, and a first fill costs no more RSS than it uses. Measured on the project's machine
//   (Benchmarks/scripts/page-fault-cost.sh: 16 MiB written page by page, then MADV_DONTNEED,
//   best of 20): 1,600-2,250 ns per 4 KiB page faulted in small pages, 114-198 ns per 4 KiB of a
//   2 MiB page. The costs, stated: a refill that stops short of an advised 2 MiB's end holds the
//   rest of it too, free blocks included, until the 2 MiB is wholly free again; then the release
//   whose merge freed it gives the whole merged block back (section 2 alone returns only the
//   released blocks and left those free pages resident for good: 1.9 MiB of a cache of 24-byte
//   objects after four 16 MiB fills and a shrink, where the last refill had put 17 slabs in a
//   huge page; 0.7 MiB of the bench's 20-byte sawtooth);
//   releasing part of a huge page (a shrink that keeps some slabs of its 2 MiB)
//   splits it, the released pages leaving the resident set as before; and khugepaged may fold
//   such a region back into one huge page (it does with up to `max_ptes_none`, 511 by default, of
//   its 512 pages unused), up to 2 MiB of RSS per region until memory gets tight and the kernel
//   splits underused huge pages again. A huge page comes back after a whole-region MADV_DONTNEED
//   only where the kernel frees the emptied page table (Linux 6.18 here does); elsewhere the
//   region refaults in small pages, as without the advice. kmalloc's page allocator (requests
//   above 8 KiB) asks for none: its blocks are released one at a time, and each release would
//   split a huge page. With THP `never` the advice is ignored; with `always` every arena is huge
//   from its first fault. The advice is a property of a mapping, so the kernel splits the range's
//   mapping where it changes: a cache that fills its range in order has one advised run and two
//   mappings more, but filled and unfilled 2 MiB alternating would take one mapping each, against
//   the process's `vm.max_map_count` (65,530 by default), which an 8 GiB range could then use
//   4,096 of.
//
// Everything here is the slow path: one lock and system calls. The bookkeeping is arrays, with
// no hashing: an address finds its arena by a shift, a page's entries by another, and a free
// list gives up any block in O(1) (each free block knows its place in its list).

import CSlab


#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

final class PageSource: @unchecked Sendable {
    /// Process-wide fault injection for tests (every cache's page source obeys it).
    static let shared = FaultInjection()

    static let pageSize = SlabLayout.pageSize
    static let maxOrder = SlabLayout.maxOrder
    /// The order of a 2 MiB block: a transparent huge page (section 6).
    static let hugePageOrder = 9
    static let arenaShift = 22
    static let arenaBytes = 1 << arenaShift
    static let pagesPerArena = arenaBytes / pageSize
    /// The range reserved per cache: 8 GiB, halved until the OS agrees (at least 1 GiB). It
    /// bounds a cache's slabs (8 GiB: 350 million 20-byte objects) and the number of caches that
    /// can live at once: with its page map (16 MiB), magazine region (64 MiB) and slab table (128
    /// MiB for one-page slabs, less for larger ones) a cache reserves at most 8.2 GiB of the 128
    /// TiB a process has, so about 15,500 caches fit (64 GiB ranges ran out at the 2,047th;
    /// ManyCachesTests creates 10,000).
    static let preferredRangeBytes = 1 << 33

    /// The reserved range: [base, base + size).
    let base: UInt
    let size: Int
    /// True when this page source reserved its range itself (and unmaps it in deinit); false for a
    /// slot of kmalloc's range.
    let ownsRange: Bool
    /// The page map (section 4): word i is page i's slab's first object, or 0. Owned (and unmapped
    /// in deinit) exactly when the range is.
    let pageMap: UnsafeMutablePointer<UInt>
    /// Whether each 2 MiB of an arena, once wholly allocated, is advised to use transparent huge
    /// pages (section 6).
    let hugeArenas: Bool
    /// Where the first arena starts: the range's second arena-sized piece (section 1: the first
    /// is never carved).
    var firstArena: UInt { base &+ UInt(Self.arenaBytes) }
    static let pageShift = Int(CSLAB_PAGE_SHIFT)

    /// One 4 MiB arena's bookkeeping, per page, in buffers of its own (no copy-on-write or
    /// exclusivity checks on the slow path's every step). Only touched under the state's lock.
    private final class Arena: @unchecked Sendable {
        let base: UInt
        /// Per page: the order of the allocated block that starts here, or -1.
        let allocatedOrder: UnsafeMutablePointer<Int8>
        /// Per page: the order of the free block that starts here, or -1.
        let freeOrder: UnsafeMutablePointer<Int8>
        /// Per page: where the free block that starts here sits in its order's free list (valid
        /// while `freeOrder` says a free block starts here), so that a merge takes a buddy off its
        /// list in O(1).
        let freePosition: UnsafeMutablePointer<Int32>
        /// Per 2 MiB of the arena (a huge page's worth): its pages in allocated blocks smaller
        /// than 2 MiB, and whether they have all been allocated at once (section 6: then advised).
        var smallBlockPages = (0, 0)
        var filled = (false, false)

        /// Counts a block of `order` starting at page `index` in or out of its 2 MiB; returns the
        /// 2 MiB's number when this allocation filled it for the first time (advise it then).
        func count(page index: Int, order: Int, allocated: Bool) -> Int? {
            guard order < PageSource.hugePageOrder else { return nil }
            let half = index >> PageSource.hugePageOrder
            let delta = allocated ? 1 << order : -(1 << order)
            let pages: Int
            if half == 0 { smallBlockPages.0 += delta; pages = smallBlockPages.0 } else { smallBlockPages.1 += delta; pages = smallBlockPages.1 }
            guard allocated, pages == 1 << PageSource.hugePageOrder, !(half == 0 ? filled.0 : filled.1) else { return nil }
            if half == 0 { filled.0 = true } else { filled.1 = true }
            return half
        }

        init(base: UInt) {
            self.base = base
            let n = PageSource.pagesPerArena
            allocatedOrder = .allocate(capacity: n)
            allocatedOrder.initialize(repeating: -1, count: n)
            freeOrder = .allocate(capacity: n)
            freeOrder.initialize(repeating: -1, count: n)
            freePosition = .allocate(capacity: n)
            freePosition.initialize(repeating: -1, count: n)
        }

        deinit {
            allocatedOrder.deallocate()
            freeOrder.deallocate()
            freePosition.deallocate()
        }

        /// The page of the arena at which `address` lies.
        @inline(__always) func page(_ address: UInt) -> Int { Int((address &- base) >> UInt(PageSource.pageShift)) }
        @inline(__always) func address(ofPage page: Int) -> UInt { base &+ UInt(page << PageSource.pageShift) }
    }

    private struct State: @unchecked Sendable {
        /// Arena i starts at `firstArena + i * arenaBytes` (arenas are carved from the range in
        /// order), so an address finds its arena by a subtraction and a shift.
        var arenas: [Arena] = []
        /// Per order: the addresses of free blocks of that order, in no particular order. The
        /// next allocation takes the last one, the most recently freed or split off: after a
        /// split, the block right above the one just handed out (the upper halves are freed
        /// largest first), so a fill carves its arena in ascending addresses.
        var freeBlocks: [[UInt]] = Array(repeating: [], count: PageSource.maxOrder + 1)
        /// Where the next arena starts.
        var nextArena: UInt = 0
        /// Per order: the blocks of that order handed out and not yet released.
        var allocatedBlocks: [Int] = Array(repeating: 0, count: PageSource.maxOrder + 1)

        /// The carved arena holding `address`, or nil.
        func arena(holding address: UInt, firstArena: UInt) -> Arena? {
            guard address >= firstArena else { return nil }
            let i = Int((address &- firstArena) >> UInt(PageSource.arenaShift))
            return i < arenas.count ? arenas[i] : nil
        }

        /// The arena of a block on a free list (always a carved one).
        private func arena(ofFree block: UInt, firstArena: UInt) -> Arena {
            arenas[Int((block &- firstArena) >> UInt(PageSource.arenaShift))]
        }

        /// Puts the block at `page` of `arena` on the free list of `order`.
        mutating func pushFree(_ arena: Arena, page: Int, order: Int) {
            arena.freeOrder[page] = Int8(order)
            arena.freePosition[page] = Int32(freeBlocks[order].count)
            freeBlocks[order].append(arena.address(ofPage: page))
        }

        /// Takes the block at `page` of `arena` off the free list of `order` (a buddy merging):
        /// the list's last block moves into its place.
        mutating func removeFree(_ arena: Arena, page: Int, order: Int, firstArena: UInt) {
            let position = Int(arena.freePosition[page])
            let last = freeBlocks[order].removeLast()
            if position < freeBlocks[order].count {
                freeBlocks[order][position] = last
                let moved = self.arena(ofFree: last, firstArena: firstArena)
                moved.freePosition[moved.page(last)] = Int32(position)
            }
            arena.freeOrder[page] = -1
            arena.freePosition[page] = -1
        }

        /// Takes the most recent block off the free list of `order` (not empty).
        mutating func popFree(order: Int, firstArena: UInt) -> (Arena, page: Int) {
            let block = freeBlocks[order].removeLast()
            let arena = self.arena(ofFree: block, firstArena: firstArena)
            let page = arena.page(block)
            arena.freeOrder[page] = -1
            arena.freePosition[page] = -1
            return (arena, page)
        }
    }

    private let state = Lock(State())
    /// For the fork handlers (Fork.swift).
    var mutexForFork: UnsafeMutablePointer<pthread_mutex_t> { state.mutexForFork }

    /// Reserves the range, or returns nil when the OS refuses even 1 GiB of address space.
    init?(hugeArenas: Bool = true) {
        self.hugeArenas = hugeArenas
        var bytes = Self.preferredRangeBytes
        while true {
            // Over-reserve by one arena to align the base to an arena.
            let p = mmap(nil, bytes + Self.arenaBytes, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
            if let p, p != MAP_FAILED {
                let start = UInt(bitPattern: p)
                let aligned = (start + UInt(Self.arenaBytes - 1)) & ~UInt(Self.arenaBytes - 1)
                let head = Int(aligned - start)
                if head > 0 { munmap(p, head) }
                let tail = Self.arenaBytes - head
                if tail > 0 { munmap(UnsafeMutableRawPointer(bitPattern: aligned + UInt(bytes)), tail) }
                guard let map = Self.reservePageMap(forRangeBytes: bytes) else {
                    munmap(UnsafeMutableRawPointer(bitPattern: aligned), bytes)
                    return nil
                }
                base = aligned
                size = bytes
                ownsRange = true
                pageMap = map
                state.withLock { $0.nextArena = aligned + UInt(Self.arenaBytes) }
                return
            }
            bytes /= 2
            if bytes < 1 << 30 { return nil }
        }
    }

    /// A page source over [base, base + size), a range someone else reserved (readable, and kept
    /// mapped for as long as this page source lives), with `pageMap` its page map (size >> 12
    /// words, from `reservePageMap`, kept as long). Both must be multiples of the arena size.
    init(range base: UInt, size: Int, pageMap: UnsafeMutablePointer<UInt>, hugeArenas: Bool = true) {
        self.hugeArenas = hugeArenas
        assert(base % UInt(Self.arenaBytes) == 0 && size % Self.arenaBytes == 0 && size > 0,
               "PageSource: range \(hex(base)) + \(size) is not made of whole arenas")
        self.base = base
        self.size = size
        ownsRange = false
        self.pageMap = pageMap
        state.withLock { $0.nextArena = base + UInt(Self.arenaBytes) }
    }

    deinit {
        if ownsRange {
            munmap(UnsafeMutableRawPointer(bitPattern: base), size)
            Self.releasePageMap(pageMap, forRangeBytes: size)
        }
    }

    // MARK: The page map

    static func pageMapBytes(forRangeBytes bytes: Int) -> Int { (bytes >> pageShift) * MemoryLayout<UInt>.stride }

    /// Words the map starts into its mapping. Without it, the word of every 512th page (each
    /// 2 MiB-aligned one, where every arena and so every cache's first slab starts) lay at offset
    /// 0 of a page of the map, as the first object of that slab does of its page: a free that
    /// wrote the object and then read its word stalled on the false store-to-load match of their
    /// low 12 address bits (4K aliasing); the hot pair on that object ran 30% slower. Skewed by
    /// 257 words, a page's word matches the first object of a one-page slab in page 255 of each
    /// 2 MiB instead.
    static let pageMapSkew = 257

    /// A zeroed page map for a range of `bytes`, reserved (nothing committed until written); nil
    /// when the OS refuses the address space. Release it with `releasePageMap`.
    static func reservePageMap(forRangeBytes bytes: Int) -> UnsafeMutablePointer<UInt>? {
        guard let p = mmap(nil, pageMapBytes(forRangeBytes: bytes) + pageMapSkew * MemoryLayout<UInt>.stride,
                           PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
              p != MAP_FAILED else { return nil }
        return p.assumingMemoryBound(to: UInt.self) + pageMapSkew
    }

    static func releasePageMap(_ map: UnsafeMutablePointer<UInt>, forRangeBytes bytes: Int) {
        munmap(map - pageMapSkew, pageMapBytes(forRangeBytes: bytes) + pageMapSkew * MemoryLayout<UInt>.stride)
    }

    /// The page map's word for the page holding `address`. REQUIRES: `contains(address)`.
    @inline(__always)
    func pageMapIndex(_ address: UInt) -> Int { Int(bitPattern: (address &- base) &>> UInt(Self.pageShift)) }

    /// Records a slab: every page of the block at `block` (2^order pages) maps to `firstObject`.
    /// Written before any object of the slab is handed out (the slab layer's lock publishes it).
    func mapSlab(_ block: UnsafeMutableRawPointer, order: Int, firstObject: UnsafeMutableRawPointer) {
        let i = pageMapIndex(UInt(bitPattern: block))
        (pageMap + i).update(repeating: UInt(bitPattern: firstObject), count: 1 << order)
    }

    /// Forgets a slab before its block is released: its pages map to 0, which no object passes.
    func unmapSlab(_ block: UnsafeMutableRawPointer, order: Int) {
        let i = pageMapIndex(UInt(bitPattern: block))
        (pageMap + i).update(repeating: 0, count: 1 << order)
    }

    /// The first object of the slab covering `address` per the page map, or 0 (no live slab).
    func firstObject(mappedAt address: UInt) -> UInt {
        contains(address) ? pageMap[pageMapIndex(address)] : 0
    }

    /// True when `address` lies in this page source's range.
    @inline(__always)
    func contains(_ address: UInt) -> Bool { address &- base < UInt(size) }

    /// A naturally aligned block of 2^order pages, or nil when the OS refuses memory.
    func allocate(order: Int) -> UnsafeMutableRawPointer? {
        precondition((0...Self.maxOrder).contains(order), "PageSource: bad order \(order)")
        guard Self.shared.allowAllocation() else { return nil }
        return state.withLock { s -> UnsafeMutableRawPointer? in
            var j = order
            while j <= Self.maxOrder && s.freeBlocks[j].isEmpty { j += 1 }
            if j > Self.maxOrder {
                // A new arena from the range (already mapped; its pages fault in as slabs use them).
                guard s.nextArena + UInt(Self.arenaBytes) <= base + UInt(size) else { return nil }
                let arena = Arena(base: s.nextArena)
                s.nextArena += UInt(Self.arenaBytes)
                s.arenas.append(arena)
                s.pushFree(arena, page: 0, order: Self.maxOrder)
                j = Self.maxOrder
            }
            let (arena, index) = s.popFree(order: j, firstArena: firstArena)
            let block = arena.address(ofPage: index)
            // Split down to the requested order, freeing the upper halves (the smallest last, so
            // the next allocation of the order takes the block right above this one).
            while j > order {
                j -= 1
                s.pushFree(arena, page: index + (1 << j), order: j)
            }
            arena.allocatedOrder[index] = Int8(order)
            s.allocatedBlocks[order] += 1
            if let half = arena.count(page: index, order: order, allocated: true), hugeArenas {
                // Section 6. Refused (no THP in this kernel) is the same as not asked.
                let hugePageBytes = Self.pageSize << Self.hugePageOrder
                madvise(UnsafeMutableRawPointer(bitPattern: arena.base + UInt(half * hugePageBytes)), hugePageBytes, MADV_HUGEPAGE)
            }
            return UnsafeMutableRawPointer(bitPattern: block)
        }
    }

    /// Returns a block to the OS and to the buddy free lists.
    func release(_ block: UnsafeMutableRawPointer, order: Int) {
        release([block], order: order)
    }

    /// Returns blocks of one order to the OS and to the buddy free lists: one lock to claim them
    /// all, one madvise per run of adjacent blocks, one lock to merge them (section 2). A cache
    /// shrinking releases thousands of slabs at once, and mostly adjacent ones: one madvise and
    /// one TLB flush per 4 KiB slab were two thirds of `shrink()`.
    func release(_ blocks: [UnsafeMutableRawPointer], order: Int) {
        guard !blocks.isEmpty else { return }
        let addresses = blocks.map { UInt(bitPattern: $0) }.sorted()
        state.withLock { s in
            for address in addresses {
                guard let arena = s.arena(holding: address, firstArena: firstArena) else {
                    fatalError("PageSource: release of \(hex(address)), which is in no arena")
                }
                let index = arena.page(address)
                precondition(arena.allocatedOrder[index] == Int8(order),
                             "PageSource: release of \(hex(address)) as order \(order), allocated as order \(arena.allocatedOrder[index])")
                arena.allocatedOrder[index] = -1
                _ = arena.count(page: index, order: order, allocated: false)
                s.allocatedBlocks[order] -= 1
            }
        }
        giveBack(sorted: addresses, order: order)
    }

    /// What `release(blockAt:)` found at an address.
    enum Release: Equatable {
        /// The block that started there, of this order, is free again.
        case released(order: Int)
        /// The address lies inside an allocated block, not at its start.
        case interior(blockStart: UInt, order: Int)
        /// No allocated block starts or lies there: never handed out, or already released.
        case notAllocated
    }

    /// Releases the allocated block that starts at `address`, whatever its order (kfree of a
    /// page-allocator block, which keeps no header). Anything else is reported, not released.
    func release(blockAt address: UInt) -> Release {
        let outcome = state.withLock { s -> Release in
            guard contains(address), let arena = s.arena(holding: address, firstArena: firstArena) else { return .notAllocated }
            let index = arena.page(address)
            guard address % UInt(Self.pageSize) == 0, arena.allocatedOrder[index] >= 0 else {
                if let (start, order) = Self.allocatedBlock(in: arena, page: index) {
                    return .interior(blockStart: start, order: order)
                }
                return .notAllocated
            }
            let order = Int(arena.allocatedOrder[index])
            // Claimed under the lock: a second release of the same block finds it not allocated.
            arena.allocatedOrder[index] = -1
            _ = arena.count(page: index, order: order, allocated: false)
            s.allocatedBlocks[order] -= 1
            return .released(order: order)
        }
        if case let .released(order) = outcome { giveBack(sorted: [address], order: order) }
        return outcome
    }

    /// The second half of a release: the pages go back to the OS (outside the lock: system calls
    /// on up to 4 MiB each), then the blocks join the free lists, merged with their free buddies;
    /// a merge that frees 2 MiB or more gives that block back whole, under the lock (section 6).
    /// Between the two halves the blocks are neither allocated nor free, so nothing else touches
    /// them. `addresses`: claimed blocks of `order`, ascending.
    private func giveBack(sorted addresses: [UInt], order: Int) {
        // The pages leave the resident set now; the address range stays ours for reuse. Adjacent
        // blocks go in one call (a run never crosses the range, so it is one mapping).
        forEachRun(ofSorted: addresses, length: UInt(Self.pageSize << order)) { start, end in
            madvise(UnsafeMutableRawPointer(bitPattern: start), Int(end - start), MADV_DONTNEED)
        }
        state.withLock { s in
            // Free blocks of 2 MiB or more that a merge made (section 6: their huge pages).
            var merged: [(arena: Arena, page: Int, order: Int)] = []
            for address in addresses {
                let arena = s.arena(holding: address, firstArena: firstArena)!
                var index = arena.page(address)
                var k = order
                while k < Self.maxOrder {
                    let buddyIndex = index ^ (1 << k)
                    guard arena.freeOrder[buddyIndex] == Int8(k) else { break }
                    s.removeFree(arena, page: buddyIndex, order: k, firstArena: firstArena)
                    index = min(index, buddyIndex)
                    k += 1
                }
                // A wholly free arena stays as one free block: its pages were already returned.
                s.pushFree(arena, page: index, order: k)
                if k > order && k >= Self.hugePageOrder { merged.append((arena, index, k)) }
            }
            // A free block's pages are not always gone: a fault in an advised 2 MiB region that
            // held few blocks brought the whole huge page in, its free blocks with it. Once the
            // region is wholly free it is given back whole, here, before anything can take a
            // block of it (the lock is held), or those pages would stay resident for good. Only
            // the blocks still free at the order their merge reached (a later merge of the batch
            // may have taken one into a larger block, which is on the list too).
            for m in merged where m.arena.freeOrder[m.page] == Int8(m.order) {
                madvise(UnsafeMutableRawPointer(bitPattern: m.arena.address(ofPage: m.page)), Self.pageSize << m.order,
                        MADV_DONTNEED)
            }
        }
    }

    /// The allocated block containing `address`: its start and order, or nil. Diagnostics only.
    func block(containing address: UInt) -> (start: UInt, order: Int)? {
        state.withLock { s in
            guard contains(address), let arena = s.arena(holding: address, firstArena: firstArena) else { return nil }
            return Self.allocatedBlock(in: arena, page: arena.page(address))
        }
    }

    private static func allocatedBlock(in arena: Arena, page: Int) -> (start: UInt, order: Int)? {
        for k in 0...maxOrder {
            let head = page & ~((1 << k) - 1)
            if arena.allocatedOrder[head] == Int8(k) {
                return (arena.base + UInt(head * pageSize), k)
            }
        }
        return nil
    }

    // MARK: What it shows

    /// Free blocks of each order (index = order, 0...10) in the arenas carved so far: a kernel
    /// zone's line of /proc/buddyinfo.
    func freeBlocksPerOrder() -> [Int] { state.withLock { s in s.freeBlocks.map(\.count) } }

    /// Blocks of each order handed out and not yet released.
    func allocatedBlocksPerOrder() -> [Int] { state.withLock { $0.allocatedBlocks } }

    /// Arenas carved from the range so far.
    var arenaCount: Int { state.withLock { $0.arenas.count } }

    /// Checks the buddy allocator's invariants; returns the problems found (empty when all hold).
    /// For tests: it takes the lock for the whole walk.
    ///   - every arena is tiled exactly by its free and allocated blocks, each naturally aligned;
    ///   - no free block has a free buddy of the same order (it would have merged);
    ///   - the per-order free sets hold exactly the free blocks the arenas record, and the
    ///     per-order allocated counts match the allocated blocks.
    func checkInvariants() -> [String] {
        state.withLock { s in
            var problems: [String] = []
            var freeSeen: [Set<UInt>] = Array(repeating: [], count: Self.maxOrder + 1)
            var allocatedSeen = Array(repeating: 0, count: Self.maxOrder + 1)
            for (i, arena) in s.arenas.enumerated() {
                if arena.base != firstArena + UInt(i * Self.arenaBytes) {
                    problems.append("arena \(i) starts at \(hex(arena.base)), not \(hex(firstArena + UInt(i * Self.arenaBytes)))")
                }
                var page = 0
                while page < Self.pagesPerArena {
                    let free = Int(arena.freeOrder[page]), allocated = Int(arena.allocatedOrder[page])
                    let start = arena.base + UInt(page * Self.pageSize)
                    guard (free >= 0) != (allocated >= 0) else {
                        problems.append(free >= 0
                            ? "\(hex(start)): both a free block (order \(free)) and an allocated one (order \(allocated)) start here"
                            : "\(hex(start)): page belongs to no block")
                        break
                    }
                    let order = max(free, allocated)
                    if page % (1 << order) != 0 { problems.append("\(hex(start)): order-\(order) block not naturally aligned") }
                    // No block may start inside this one.
                    for inner in (page + 1)..<min(Self.pagesPerArena, page + (1 << order))
                        where arena.freeOrder[inner] >= 0 || arena.allocatedOrder[inner] >= 0 {
                        problems.append("\(hex(start)): a block starts inside the order-\(order) block at page \(inner)")
                    }
                    if free >= 0 {
                        freeSeen[free].insert(start)
                        let position = Int(arena.freePosition[page])
                        if position < 0 || position >= s.freeBlocks[free].count || s.freeBlocks[free][position] != start {
                            problems.append("\(hex(start)): free order-\(free) block not at its recorded place (\(position)) in the free list")
                        }
                        if free < Self.maxOrder {
                            let buddy = page ^ (1 << free)
                            if arena.freeOrder[buddy] == Int8(free) {
                                problems.append("\(hex(start)): free order-\(free) block with a free buddy (not merged)")
                            }
                        }
                    } else {
                        allocatedSeen[allocated] += 1
                    }
                    page += 1 << order
                }
            }
            for k in 0...Self.maxOrder {
                if freeSeen[k] != Set(s.freeBlocks[k]) || s.freeBlocks[k].count != freeSeen[k].count {
                    problems.append("order \(k): the free list holds \(s.freeBlocks[k].count) blocks, the arenas \(freeSeen[k].count)")
                }
                if allocatedSeen[k] != s.allocatedBlocks[k] {
                    problems.append("order \(k): \(s.allocatedBlocks[k]) blocks counted allocated, \(allocatedSeen[k]) found")
                }
            }
            return problems
        }
    }
}

/// Makes page sources fail on demand, to test what a cache does when the OS refuses memory.
final class FaultInjection: @unchecked Sendable {
    private let failAfter = Lock<Int?>(nil)
    private let refuseRegions = Lock(false)
    /// For the fork handlers (Fork.swift).
    var mutexesForFork: [UnsafeMutablePointer<pthread_mutex_t>] { [failAfter.mutexForFork, refuseRegions.mutexForFork] }

    /// While on, every new cache's magazine region fails to map (MagazineRegion), so the cache
    /// runs without a CPU layer.
    func refuseMagazineRegions(_ on: Bool) { refuseRegions.withLock { $0 = on } }
    func allowMagazineRegion() -> Bool { refuseRegions.withLock { !$0 } }

    /// After `n` more successful block allocations (in any cache), every allocation fails as if
    /// the OS were out of memory. `nil` turns it off.
    func injectFailure(afterAllocations n: Int?) { failAfter.withLock { $0 = n } }

    func allowAllocation() -> Bool {
        failAfter.withLock { f in
            guard let n = f else { return true }
            if n <= 0 { return false }
            f = n - 1
            return true
        }
    }
}

/// Calls `body(start, end)` for each maximal run of adjacent pieces, given their `starts` in
/// ascending order and their common `length`: how a batch of released slabs or spare magazines
/// goes back to the OS with one system call per run.
func forEachRun(ofSorted starts: [UInt], length: UInt, _ body: (_ start: UInt, _ end: UInt) -> Void) {
    guard var runStart = starts.first else { return }
    var runEnd = runStart + length
    for start in starts.dropFirst() {
        if start == runEnd { runEnd += length; continue }
        body(runStart, runEnd)
        runStart = start
        runEnd = start + length
    }
    body(runStart, runEnd)
}

/// 0x-prefixed hexadecimal, as the kernel prints pointers in its slab messages.
func hex(_ value: UInt) -> String { "0x" + String(value, radix: 16) }
func hex(_ pointer: UnsafeRawPointer?) -> String { hex(UInt(bitPattern: pointer)) }
