// KmallocLarge: kmalloc above 8 KiB. Requests up to 4 MiB are blocks of 2^order pages from the
// buddy page allocator (a PageSource in the last slot of kmalloc's range); larger ones are
// mappings of their own, straight from the OS.
//
// 1. Page-allocator blocks
// ------------------------
//   A request of n bytes takes a block of order k, the smallest with 2^k pages >= n (order 2 for
//   8193 ... 16384 bytes, order 10 for up to 4 MiB), naturally aligned by the buddy system. No
//   header: the page source records each block's order by its first page, which is how kfree and
//   ksize learn a block's size from its address alone, and how they tell an interior pointer or a
//   block freed twice from a block start. A freed block's pages go back to the OS at once and it
//   merges with its free buddy, so a block handed out again reads as zeros (kzalloc need not clear
//   it), and a whole free arena holds no memory.
//
// 2. OS mappings
// --------------
//   Above 4 MiB: mmap of the size rounded up to pages; a power-of-two size is mapped with room to
//   spare and trimmed to its natural alignment. Each live mapping is recorded (start -> bytes)
//   under one lock, for kfree (munmap) and ksize; a mapping freed twice is no longer recorded and
//   is reported.
//   krealloc of a mapping to another size above 4 MiB moves its pages instead of copying them
//   (mremap, as glibc's realloc does for its mapped chunks): where the mapping stands when it has
//   the alignment the new size asks for and room after it (a shrink always does, and gives the
//   tail back), otherwise onto a range reserved at that alignment. Growing 64 MiB to 128 MiB took
//   a copy, and a fault on each page of the copy, before; shrinking kept every page. To 4 MiB or
//   less it is copied out and unmapped whole (Kmalloc.swift, krealloc), so a mapping always holds
//   more than 4 MiB and ksize tells a mapping from a page block.
//
// Everything here is a slow path: a lock, a dictionary, a system call per allocation or free.

import CSlab

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

final class KmallocLarge: @unchecked Sendable {
    let pages: PageSource
    /// Live OS mappings: start -> bytes.
    private let mappings = Lock<[UInt: Int]>([:])

    init(pages: PageSource) { self.pages = pages }

    /// For the fork handlers (Fork.swift): the mappings' mutex, then the page allocator's.
    var mutexesForFork: [UnsafeMutablePointer<pthread_mutex_t>] { [mappings.mutexForFork, pages.mutexForFork] }

    /// A block or mapping of at least `size` bytes (size > 8192), or nil when the OS refuses.
    func allocate(_ size: Int) -> UnsafeMutableRawPointer? {
        if size <= Kmalloc.osThreshold { return pages.allocate(order: Kmalloc.pageOrder(for: size)) }
        return map(size)
    }

    // MARK: Page-allocator blocks

    /// Frees the block that starts at `object`; anything else stops the process.
    func free(_ object: UnsafeMutableRawPointer, operation: String) {
        switch pages.release(blockAt: UInt(bitPattern: object)) {
        case .released: return
        case let .interior(start, order): interior(object, start: start, order: order, operation: operation)
        case .notAllocated: notAllocated(object, operation: operation)
        }
    }

    /// The size of the allocated block that starts at `object`; anything else stops the process.
    func blockBytes(at object: UnsafeRawPointer, operation: String) -> Int {
        let address = UInt(bitPattern: object)
        guard let (start, order) = pages.block(containing: address) else { notAllocated(object, operation: operation) }
        guard start == address else { interior(object, start: start, order: order, operation: operation) }
        return SlabLayout.pageSize << order
    }

    /// The order of the allocated block that starts at `address`, nil for anything else.
    func blockOrder(at address: UInt) -> Int? {
        guard let (start, order) = pages.block(containing: address), start == address else { return nil }
        return order
    }

    private func interior(_ object: UnsafeRawPointer, start: UInt, order: Int, operation: String) -> Never {
        SlabReport.fatal("not the start of a block", cache: "kmalloc-large", object: object, details: [
            "\(operation)(kmalloc-large): \(hex(object)) is inside the order-\(order) block at \(hex(start)), not at its start"])
    }

    private func notAllocated(_ object: UnsafeRawPointer, operation: String) -> Never {
        SlabReport.fatal("not an allocated block", cache: "kmalloc-large", object: object, details: [
            "\(operation)(kmalloc-large): \(hex(object)) is not an allocated page-allocator block "
                + "(freed already, or never allocated)"])
    }

    // MARK: OS mappings

    private func map(_ size: Int) -> UnsafeMutableRawPointer? {
        guard PageSource.shared.allowAllocation() else { return nil }
        let (bytes, align) = Self.geometry(size)
        guard let p = Self.mapAligned(bytes, align: align, protection: PROT_READ | PROT_WRITE, flags: 0) else { return nil }
        mappings.withLock { $0[UInt(bitPattern: p)] = bytes }
        return p
    }

    /// The bytes (whole pages) and the alignment (a power of two's own, else a page) of the mapping
    /// for a request of `size`.
    private static func geometry(_ size: Int) -> (bytes: Int, align: Int) {
        let page = SlabLayout.pageSize
        return (roundUp(size, page), size & (size - 1) == 0 ? size : page)
    }

    /// A new mapping of `bytes` starting at a multiple of `align` (a power of two, at least a
    /// page): mapped with room to spare, the spare head and tail unmapped. nil when the OS refuses.
    private static func mapAligned(_ bytes: Int, align: Int, protection: Int32, flags: Int32) -> UnsafeMutableRawPointer? {
        let page = SlabLayout.pageSize
        // Room to move the start up to the alignment (none for page alignment).
        let (span, overflow) = bytes.addingReportingOverflow(align - page)
        guard !overflow, let p = mmap(nil, span, protection, MAP_PRIVATE | MAP_ANONYMOUS | flags, -1, 0),
              p != MAP_FAILED else { return nil }
        let start = UInt(bitPattern: p)
        let aligned = (start + UInt(align - 1)) & ~UInt(align - 1)
        let head = Int(aligned - start)
        if head > 0 { munmap(p, head) }
        let tail = span - head - bytes
        if tail > 0 { munmap(UnsafeMutableRawPointer(bitPattern: aligned + UInt(bytes)), tail) }
        return UnsafeMutableRawPointer(bitPattern: aligned)
    }

    /// The live mapping at `object` resized to hold `size` (above 4 MiB) bytes, its pages moved
    /// rather than copied (section 2); the same pointer when it already has the pages and the
    /// alignment (a power-of-two size's own). nil when `object` is not a live mapping's start or the OS
    /// refuses, the mapping then untouched. Under the mappings' lock throughout: the old range is
    /// free once its pages moved, and a kmalloc on another thread that mapped it must not record
    /// it before its old record is gone.
    func remap(_ object: UnsafeMutableRawPointer, to size: Int) -> UnsafeMutableRawPointer? {
        precondition(size > Kmalloc.osThreshold, "kmalloc: a mapping is remapped only above 4 MiB")
        let (bytes, align) = Self.geometry(size)
        let start = UInt(bitPattern: object)
        let inPlace = start % UInt(align) == 0
        return mappings.withLock { m -> UnsafeMutableRawPointer? in
            guard let old = m[start] else { return nil }
            if bytes == old && inPlace { return object }
            guard PageSource.shared.allowAllocation() else { return nil }
            let moved: UnsafeMutableRawPointer
            if inPlace, let p = cslab_mremap_in_place(object, old, bytes), p != MAP_FAILED {
                moved = p
            } else {
                // A range of `bytes` at the alignment, held with no access (so that no other
                // mapping takes it) until the pages move over it.
                guard let target = Self.mapAligned(bytes, align: align, protection: PROT_NONE, flags: MAP_NORESERVE) else {
                    return nil
                }
                guard let p = cslab_mremap_to(object, old, bytes, target), p != MAP_FAILED else {
                    munmap(target, bytes)
                    return nil
                }
                moved = p
            }
            m[start] = nil
            m[UInt(bitPattern: moved)] = bytes
            return moved
        }
    }

    /// The bytes of the live mapping that starts at `address`, nil when there is none.
    func mappingBytes(at address: UInt) -> Int? { mappings.withLock { $0[address] } }

    /// Unmaps the mapping that starts at `object` (recorded: located through `mappingBytes`). A
    /// second kfree racing this one finds no record and is reported.
    func unmap(_ object: UnsafeMutableRawPointer) {
        guard let bytes = mappings.withLock({ $0.removeValue(forKey: UInt(bitPattern: object)) }) else {
            Kmalloc.notFromKmalloc(object, operation: "kfree")
        }
        munmap(object, bytes)
    }

    /// Live mappings and their bytes.
    var mappingTotals: (count: Int, bytes: Int) {
        mappings.withLock { m in (m.count, m.values.reduce(0, +)) }
    }
}
