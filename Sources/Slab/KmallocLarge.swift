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
//
// Everything here is a slow path: a lock, a dictionary, a system call per allocation or free.

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
        let page = SlabLayout.pageSize
        let bytes = roundUp(size, page)
        let align = size & (size - 1) == 0 ? size : page
        // Room to move the start up to the alignment (none for page alignment).
        let (span, overflow) = bytes.addingReportingOverflow(align - page)
        guard !overflow, let p = mmap(nil, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              p != MAP_FAILED else { return nil }
        let start = UInt(bitPattern: p)
        let aligned = (start + UInt(align - 1)) & ~UInt(align - 1)
        let head = Int(aligned - start)
        if head > 0 { munmap(p, head) }
        let tail = span - head - bytes
        if tail > 0 { munmap(UnsafeMutableRawPointer(bitPattern: aligned + UInt(bytes)), tail) }
        mappings.withLock { $0[aligned] = bytes }
        return UnsafeMutableRawPointer(bitPattern: aligned)
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
