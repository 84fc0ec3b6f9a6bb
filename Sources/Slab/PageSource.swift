// PageSource: where a cache's slabs come from. Each cache owns one PageSource: a contiguous range
// of address space reserved at creation, inside which a binary buddy allocator hands out 4 MiB
// arenas and, within them, blocks of 2^k pages, as the kernel pairs its buddy allocator (pages)
// with the slab allocator (objects).
//
// - Blocks are 2^k pages, k in 0...10, and naturally aligned: a block of 2^k pages starts at a
//   multiple of its own size. A slab is one block, so a pointer finds its slab header by masking.
// - A released block is returned to the OS at once (madvise MADV_DONTNEED: its pages leave the
//   resident set and read as zeros, its address range stays ours) and merged with its free buddy.
// - Because every slab of a cache lies in its range, "is this pointer one of this cache's
//   objects?" starts with one subtraction and one comparison on the free fast path, with no
//   memory access: a pointer from another cache or from malloc is outside the range. The range
//   is mapped readable from the start (MAP_NORESERVE: no memory is committed until touched), so
//   reading a slab header anywhere in it never faults; an unused or released block reads zeros.
//
// Everything else here is the slow path: one lock, Swift collections, system calls.

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
    static let arenaShift = 22
    static let arenaBytes = 1 << arenaShift
    static let pagesPerArena = arenaBytes / pageSize
    /// The range reserved per cache: 64 GiB, halved until the OS agrees (at least 1 GiB).
    static let preferredRangeBytes = 1 << 36

    /// The reserved range: [base, base + size).
    let base: UInt
    let size: Int

    private final class Arena: @unchecked Sendable {
        let base: UInt
        /// Per page: the order of the allocated block that starts here, or -1.
        var allocatedOrder: [Int8]
        /// Per page: the order of the free block that starts here, or -1.
        var freeOrder: [Int8]

        init(base: UInt) {
            self.base = base
            allocatedOrder = Array(repeating: -1, count: PageSource.pagesPerArena)
            freeOrder = Array(repeating: -1, count: PageSource.pagesPerArena)
        }
    }

    private struct State: @unchecked Sendable {
        var arenas: [UInt: Arena] = [:]
        /// Per order: the addresses of free blocks of that order.
        var freeBlocks: [Set<UInt>] = Array(repeating: [], count: PageSource.maxOrder + 1)
        /// Where the next arena starts (arenas are carved from the range in order).
        var nextArena: UInt = 0
    }

    private let state = Lock(State())

    /// Reserves the range, or returns nil when the OS refuses even 1 GiB of address space.
    init?() {
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
                base = aligned
                size = bytes
                state.withLock { $0.nextArena = aligned }
                return
            }
            bytes /= 2
            if bytes < 1 << 30 { return nil }
        }
    }

    deinit {
        munmap(UnsafeMutableRawPointer(bitPattern: base), size)
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
                s.arenas[arena.base] = arena
                arena.freeOrder[0] = Int8(Self.maxOrder)
                s.freeBlocks[Self.maxOrder].insert(arena.base)
                j = Self.maxOrder
            }
            let block = s.freeBlocks[j].removeFirst()
            let arena = s.arenas[block & ~UInt(Self.arenaBytes - 1)]!
            let index = Int((block - arena.base) / UInt(Self.pageSize))
            arena.freeOrder[index] = -1
            // Split down to the requested order, freeing the upper halves.
            while j > order {
                j -= 1
                let buddyIndex = index + (1 << j)
                arena.freeOrder[buddyIndex] = Int8(j)
                s.freeBlocks[j].insert(arena.base + UInt(buddyIndex * Self.pageSize))
            }
            arena.allocatedOrder[index] = Int8(order)
            return UnsafeMutableRawPointer(bitPattern: block)
        }
    }

    /// Returns a block to the OS and to the buddy free lists.
    func release(_ block: UnsafeMutableRawPointer, order: Int) {
        let bytes = Self.pageSize << order
        // The pages leave the resident set now; the address range stays ours for reuse.
        madvise(block, bytes, MADV_DONTNEED)
        let address = UInt(bitPattern: block)
        state.withLock { s in
            guard let arena = s.arenas[address & ~UInt(Self.arenaBytes - 1)] else {
                fatalError("PageSource: release of \(hex(address)), which is in no arena")
            }
            var index = Int((address - arena.base) / UInt(Self.pageSize))
            precondition(arena.allocatedOrder[index] == Int8(order),
                         "PageSource: release of \(hex(address)) as order \(order), allocated as order \(arena.allocatedOrder[index])")
            arena.allocatedOrder[index] = -1
            var k = order
            while k < Self.maxOrder {
                let buddyIndex = index ^ (1 << k)
                guard arena.freeOrder[buddyIndex] == Int8(k) else { break }
                arena.freeOrder[buddyIndex] = -1
                s.freeBlocks[k].remove(arena.base + UInt(buddyIndex * Self.pageSize))
                index = min(index, buddyIndex)
                k += 1
            }
            // A wholly free arena stays as one free block: its pages were already returned.
            arena.freeOrder[index] = Int8(k)
            s.freeBlocks[k].insert(arena.base + UInt(index * Self.pageSize))
        }
    }

    /// The allocated block containing `address`: its start and order, or nil. Diagnostics only.
    func block(containing address: UInt) -> (start: UInt, order: Int)? {
        state.withLock { s in
            guard let arena = s.arenas[address & ~UInt(Self.arenaBytes - 1)] else { return nil }
            let page = Int((address - arena.base) / UInt(Self.pageSize))
            for k in 0...Self.maxOrder {
                let head = page & ~((1 << k) - 1)
                if arena.allocatedOrder[head] == Int8(k) {
                    return (arena.base + UInt(head * Self.pageSize), k)
                }
            }
            return nil
        }
    }

}

/// Makes page sources fail on demand, to test what a cache does when the OS refuses memory.
final class FaultInjection: @unchecked Sendable {
    private let failAfter = Lock<Int?>(nil)

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

/// 0x-prefixed hexadecimal, as the kernel prints pointers in its slab messages.
func hex(_ value: UInt) -> String { "0x" + String(value, radix: 16) }
func hex(_ pointer: UnsafeRawPointer?) -> String { hex(UInt(bitPattern: pointer)) }
