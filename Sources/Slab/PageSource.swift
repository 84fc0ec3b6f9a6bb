// PageSource: where slabs come from. A binary buddy allocator over 4 MiB arenas mapped from the
// OS, as the kernel pairs its buddy allocator (pages) with the slab allocator (objects).
//
// - Blocks are 2^k pages, k in 0...10, and naturally aligned: a block of 2^k pages starts at a
//   multiple of its own size. A slab is one block, so a pointer finds its slab header by masking.
// - A released block is returned to the OS at once (madvise MADV_DONTNEED: its pages leave the
//   resident set, its address range stays ours) and merged with its free buddy; an arena that
//   becomes wholly free is unmapped.
// - The arena map (one byte per 4 MiB of address space, reserved but only touched where arenas
//   live) answers "is this address inside one of our arenas?" in O(1) without a lock, so a free of
//   a foreign pointer gets a clear message instead of a fault on an unmapped slab header.
//
// Everything here is the slow path: one lock, Swift collections, system calls.

import CSlab
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

final class PageSource: @unchecked Sendable {
    static let shared = PageSource()

    static let pageSize = SlabLayout.pageSize
    static let maxOrder = SlabLayout.maxOrder
    static let arenaShift = 22
    static let arenaBytes = 1 << arenaShift
    static let pagesPerArena = arenaBytes / pageSize
    /// User-space addresses on x86_64 are below 2^47.
    static let addressBits = 47

    /// One byte per arena-sized piece of the address space: non-zero where we have an arena.
    /// Written under the lock, read without it (a byte load; see `contains`).
    let arenaMap: UnsafeMutablePointer<UInt8>

    private final class Arena: @unchecked Sendable {
        let base: UInt
        /// Per page: the order of the allocated block that starts here, or -1.
        var allocatedOrder: [Int8]
        /// Per page: the order of the free block that starts here, or -1.
        var freeOrder: [Int8]
        var freePages: Int

        init(base: UInt) {
            self.base = base
            allocatedOrder = Array(repeating: -1, count: PageSource.pagesPerArena)
            freeOrder = Array(repeating: -1, count: PageSource.pagesPerArena)
            freePages = PageSource.pagesPerArena
        }
    }

    private struct State: @unchecked Sendable {
        var arenas: [UInt: Arena] = [:]
        /// Per order: the addresses of free blocks of that order.
        var freeBlocks: [Set<UInt>] = Array(repeating: [], count: PageSource.maxOrder + 1)
        var allocatedBytes = 0
        /// Test hook: fail every allocation once this many more have succeeded (nil: never).
        var failAfter: Int? = nil
    }

    private let state = Mutex(State())

    init() {
        let entries = 1 << (Self.addressBits - Self.arenaShift)
        guard let p = mmap(nil, entries, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
              p != MAP_FAILED else {
            fatalError("PageSource: cannot reserve the \(entries)-byte arena map: errno \(errno)")
        }
        arenaMap = p.assumingMemoryBound(to: UInt8.self)
    }

    /// Bytes currently handed out as blocks.
    var allocatedBytes: Int { state.withLock { $0.allocatedBytes } }
    /// Bytes of address space currently mapped as arenas.
    var mappedBytes: Int { state.withLock { $0.arenas.count * Self.arenaBytes } }

    /// Fault injection for tests: after `n` more successful block allocations, every allocation
    /// fails as if the OS were out of memory. `nil` turns it off.
    func injectFailure(afterAllocations n: Int?) { state.withLock { $0.failAfter = n } }

    /// True when `address` lies inside one of our arenas. Lock-free: a stale answer is possible
    /// only for an address whose arena is being mapped or unmapped by another thread, and such an
    /// address holds no live object.
    @inline(__always)
    func contains(_ address: UInt) -> Bool {
        address >> Self.addressBits == 0 && arenaMap[Int(address >> Self.arenaShift)] != 0
    }

    /// A naturally aligned block of 2^order pages, or nil when the OS refuses memory.
    func allocate(order: Int) -> UnsafeMutableRawPointer? {
        precondition((0...Self.maxOrder).contains(order), "PageSource: bad order \(order)")
        return state.withLock { s -> UnsafeMutableRawPointer? in
            if let n = s.failAfter {
                if n <= 0 { return nil }
                s.failAfter = n - 1
            }
            var j = order
            while j <= Self.maxOrder && s.freeBlocks[j].isEmpty { j += 1 }
            if j > Self.maxOrder {
                guard let arena = mapArena() else { return nil }
                s.arenas[arena.base] = arena
                arena.freeOrder[0] = Int8(Self.maxOrder)
                s.freeBlocks[Self.maxOrder].insert(arena.base)
                arenaMap[Int(arena.base >> Self.arenaShift)] = 1
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
            arena.freePages -= 1 << order
            s.allocatedBytes += Self.pageSize << order
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
            arena.freePages += 1 << order
            s.allocatedBytes -= bytes
            var k = order
            while k < Self.maxOrder {
                let buddyIndex = index ^ (1 << k)
                guard arena.freeOrder[buddyIndex] == Int8(k) else { break }
                arena.freeOrder[buddyIndex] = -1
                s.freeBlocks[k].remove(arena.base + UInt(buddyIndex * Self.pageSize))
                index = min(index, buddyIndex)
                k += 1
            }
            if k == Self.maxOrder {
                // The whole arena is free: give the address range back too.
                arenaMap[Int(arena.base >> Self.arenaShift)] = 0
                s.arenas[arena.base] = nil
                munmap(UnsafeMutableRawPointer(bitPattern: arena.base), Self.arenaBytes)
                return
            }
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

    private func mapArena() -> Arena? {
        // Over-map by one arena and trim, to get an arena-aligned range.
        let size = 2 * Self.arenaBytes
        guard let raw = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              raw != MAP_FAILED else { return nil }
        let start = UInt(bitPattern: raw)
        let aligned = (start + UInt(Self.arenaBytes - 1)) & ~UInt(Self.arenaBytes - 1)
        let head = Int(aligned - start)
        if head > 0 { munmap(raw, head) }
        let tail = size - head - Self.arenaBytes
        if tail > 0 { munmap(UnsafeMutableRawPointer(bitPattern: aligned + UInt(Self.arenaBytes)), tail) }
        return Arena(base: aligned)
    }
}

/// 0x-prefixed hexadecimal, as the kernel prints pointers in its slab messages.
func hex(_ value: UInt) -> String { "0x" + String(value, radix: 16) }
func hex(_ pointer: UnsafeRawPointer?) -> String { hex(UInt(bitPattern: pointer)) }
