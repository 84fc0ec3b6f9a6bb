// Transparent huge pages (PageSource.swift, section 6): each 2 MiB of an arena is advised once it
// has been wholly allocated in slabs smaller than 2 MiB, and keeps the advice when it is given
// back; kmalloc's page allocator advises none. Read from the kernel's own account of
// each mapping (/proc/self/smaps, "THPeligible"), under the THP mode this machine runs.

@testable import Slab
import TestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class HugePageTests: XCTestCase {
    /// The system's THP mode: "always", "madvise" or "never" (nil: no THP in this kernel).
    private func thpMode() -> String? {
        guard let text = try? String(contentsOfFile: "/sys/kernel/mm/transparent_hugepage/enabled", encoding: .utf8),
              let open = text.firstIndex(of: "["), let close = text.firstIndex(of: "]") else { return nil }
        return String(text[text.index(after: open)..<close])
    }

    /// The "THPeligible" value of the mapping that holds `address`, from /proc/self/smaps.
    private func thpEligible(_ address: UInt, file: StaticString = #filePath, line: UInt = #line) throws -> Bool {
        // Read line by line: a whole-file read of a procfs file can stop short of its end.
        guard let stream = fopen("/proc/self/smaps", "r") else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        defer { fclose(stream) }
        var buffer: UnsafeMutablePointer<CChar>? = nil
        var capacity = 0
        defer { free(buffer) }
        var inside = false
        while getline(&buffer, &capacity, stream) > 0, let buffer {
            let row = String(cString: buffer).trimmingCharacters(in: .newlines)
            let fields = row.split(separator: " ", omittingEmptySubsequences: true)
            if let range = fields.first, range.contains("-"), !range.hasSuffix(":") {
                let bounds = range.split(separator: "-").compactMap { UInt($0, radix: 16) }
                inside = bounds.count == 2 && bounds[0] <= address && address < bounds[1]
            } else if inside, fields.first == "THPeligible:", fields.count >= 2 {
                return fields[1] == "1"
            }
        }
        XCTFail("no mapping in /proc/self/smaps holds \(hex(address)) with a THPeligible line", file: file, line: line)
        return false
    }

    func test_each2MiB_asksForHugePages_onceItHasBeenWhollyAllocated() throws {
        guard let mode = thpMode(), mode != "never" else { throw XCTSkip("transparent huge pages are off here") }
        // No CPU layer: the objects come out of the slabs in address order, 32 a 32 KiB slab.
        let cache = try SlabCache(name: uniqueCacheName("thp"), size: 1024, flags: .noCPUCache)
        defer { cache.shrink(); try? cache.destroy() }
        let perHugePage = (PageSource.pageSize << PageSource.hugePageOrder) / 1024
        var objects = [try XCTUnwrap(cache.allocate())]
        let first = UInt(bitPattern: objects[0])
        XCTAssertEqual(first % UInt(PageSource.arenaBytes), 0, "the first object opens an arena")
        if mode == "madvise" {
            XCTAssertFalse(try thpEligible(first), "a small cache asked for huge pages")
        }
        // The first 2 MiB wholly allocated: advised; the next one, half allocated: not yet.
        for _ in 1..<(perHugePage + perHugePage / 2) { objects.append(try XCTUnwrap(cache.allocate())) }
        let second = first + UInt(PageSource.pageSize << PageSource.hugePageOrder)
        XCTAssertTrue(try thpEligible(first), "a wholly allocated 2 MiB is not eligible for huge pages")
        if mode == "madvise" {
            XCTAssertFalse(try thpEligible(second), "a half-allocated 2 MiB asked for huge pages")
        }
        // The second filled too (and a third begun: the arena's last page is allocated).
        for _ in 0..<(perHugePage / 2 + 1) { objects.append(try XCTUnwrap(cache.allocate())) }
        XCTAssertTrue(try thpEligible(second))
        // Given back, a filled 2 MiB keeps its advice for the next fill.
        for p in objects { cache.free(p) }
        cache.shrink()
        XCTAssertEqual(cache.slabLayer.pages.allocatedBlocksPerOrder().reduce(0, +), 0)
        XCTAssertTrue(try thpEligible(first))
        XCTAssertEqual(cache.slabLayer.pages.checkInvariants(), [])
    }

    func test_aRefillThatFaultsInAHugePage_givesItAllBackOnShrink() throws {
        guard let mode = thpMode(), mode != "never" else { throw XCTSkip("transparent huge pages are off here") }
        // No CPU layer: the objects come out of the slabs in address order, 32 a 32 KiB slab.
        let cache = try SlabCache(name: uniqueCacheName("thp-refill"), size: 1024, flags: .noCPUCache)
        defer { cache.shrink(); try? cache.destroy() }
        let perHugePage = (PageSource.pageSize << PageSource.hugePageOrder) / 1024
        // A first fill allocates the arena's first 2 MiB wholly (it is advised), then goes back.
        var objects = try (0..<(perHugePage + 1)).map { _ in try XCTUnwrap(cache.allocate()) }
        let arena = UInt(bitPattern: objects[0])
        XCTAssertEqual(arena % UInt(PageSource.arenaBytes), 0, "the first object opens an arena")
        for p in objects { cache.free(p) }
        cache.shrink()
        // A refill of one slab there: its first write may bring in the whole huge page, and with
        // it the free blocks around the slab, which hold no memory as far as the buddy lists know.
        objects = [try XCTUnwrap(cache.allocate())]
        XCTAssertEqual(UInt(bitPattern: objects[0]), arena, "the refill reuses the arena's first slab")
        objects[0].storeBytes(of: 1, as: UInt64.self)
        let slabBytes = cache.layout.slabBytes
        let resident = try XCTUnwrap(ResidentMemory.bytes(in: arena, length: PageSource.arenaBytes))
        cache.free(objects[0])
        cache.shrink()
        // Given back, the arena is wholly free, and none of it may stay resident: before the fix
        // the huge page less the slab stayed, for good (the sawtooth's RSS after its release call).
        XCTAssertEqual(try XCTUnwrap(ResidentMemory.bytes(in: arena, length: PageSource.arenaBytes)), 0,
                       "a wholly free arena holds resident pages after shrink")
        XCTAssertEqual(cache.slabLayer.pages.checkInvariants(), [])
        if resident <= slabBytes {
            throw XCTSkip("passed, but no huge page came in on the refill here (\(resident) bytes resident), so the case did not arise")
        }
    }

    func test_anArenaOfSlabsOf2MiBOrMore_neverAsksForHugePages() throws {
        // A 2 MiB slab may hold one object: a huge page under it would make that object cost 2 MiB.
        guard thpMode() == "madvise" else { throw XCTSkip("needs THP in madvise mode (each mapping's eligibility is its advice)") }
        let cache = try SlabCache(name: uniqueCacheName("thp-big"), size: 64 << 10)
        defer { cache.shrink(); try? cache.destroy() }
        XCTAssertGreaterThanOrEqual(cache.layout.order, PageSource.hugePageOrder)
        let objects = try (0..<(2 * cache.layout.objectsPerSlab)).map { _ in try XCTUnwrap(cache.allocate()) }
        XCTAssertEqual(cache.slabLayer.pages.allocatedBlocksPerOrder()[cache.layout.order], 2, "the arena is wholly allocated")
        for p in objects { XCTAssertFalse(try thpEligible(UInt(bitPattern: p)), "\(hex(UInt(bitPattern: p))) is eligible") }
        for p in objects { cache.free(p) }
    }

    func test_kmallocsPageAllocator_asksForNoHugePages() throws {
        guard thpMode() == "madvise" else { throw XCTSkip("needs THP in madvise mode (each mapping's eligibility is its advice)") }
        // 2 x 4 MiB of 64 KiB blocks: the page allocator's slot carves at least a second arena.
        var blocks: [UnsafeMutableRawPointer] = []
        defer { for b in blocks { kfree(b) } }
        for _ in 0..<128 { blocks.append(try kmalloc(64 << 10)) }
        let addresses = blocks.map { UInt(bitPattern: $0) }
        let arenas = Set(addresses.map { $0 >> UInt(PageSource.arenaShift) })
        XCTAssertGreaterThan(arenas.count, 1)
        for a in addresses {
            XCTAssertFalse(try thpEligible(a), "kmalloc's page-allocator block \(hex(a)) is eligible for huge pages")
        }
    }
}
