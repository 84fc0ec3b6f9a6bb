// Transparent huge pages (PageSource.swift, section 6): an arena is advised once it has been
// wholly allocated, and keeps the advice when it is given back; kmalloc's page allocator advises
// none. Read from the kernel's own account of
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

    func test_anArenaAsksForHugePages_onceItHasBeenWhollyAllocated() throws {
        guard let mode = thpMode(), mode != "never" else { throw XCTSkip("transparent huge pages are off here") }
        let cache = try SlabCache(name: uniqueCacheName("thp"), size: 1024)
        defer { cache.shrink(); try? cache.destroy() }
        let pages = cache.slabLayer.pages
        func arena(_ p: UnsafeMutableRawPointer) -> UInt { (UInt(bitPattern: p) - pages.base) >> UInt(PageSource.arenaShift) }

        var objects = [try XCTUnwrap(cache.allocate())]
        let first = objects[0]
        if mode == "madvise" {
            XCTAssertFalse(try thpEligible(UInt(bitPattern: first)), "a small cache's arena asked for huge pages")
        }
        // 6 MiB of 1 KiB objects: the first arena wholly allocated, a second one half.
        for _ in 0..<6 * 1024 { objects.append(try XCTUnwrap(cache.allocate())) }
        XCTAssertEqual(pages.arenaCount, 2)
        let later = try XCTUnwrap(objects.first { arena($0) > arena(first) })
        XCTAssertTrue(try thpEligible(UInt(bitPattern: first)), "a wholly allocated arena is not eligible for huge pages")
        if mode == "madvise" {
            XCTAssertFalse(try thpEligible(UInt(bitPattern: later)), "a half-allocated arena asked for huge pages")
        }
        // Given back, the filled arena keeps its advice for the next fill.
        for p in objects { cache.free(p) }
        cache.shrink()
        XCTAssertEqual(pages.allocatedBlocksPerOrder().reduce(0, +), 0)
        XCTAssertTrue(try thpEligible(UInt(bitPattern: first)))
        XCTAssertEqual(pages.checkInvariants(), [])
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
