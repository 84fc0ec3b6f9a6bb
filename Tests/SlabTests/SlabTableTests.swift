// The slab headers' table (Slab.swift, SlabTable): a slab's header lies in the table at its
// index in the range, never in the slab, whose every byte is objects, colour or leftover; no
// object starts at the range's offset 0; shrinking gives the table pages of released slabs back
// to the OS, and keeps a page that still describes a live slab.

@testable import Slab
import CSlab
import TestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class SlabTableTests: XCTestCase {
    private let page = Int(sysconf(Int32(_SC_PAGESIZE)))

    /// Whether the table page holding `header` is resident (mincore).
    private func resident(_ header: SlabPointer) -> Bool {
        let start = UInt(bitPattern: header) & ~UInt(page - 1)
        var vec: UInt8 = 0
        let rc = mincore(UnsafeMutableRawPointer(bitPattern: start), page, &vec)
        XCTAssertEqual(rc, 0, "mincore: errno \(errno)")
        return vec & 1 != 0
    }

    func test_header_isInTheTable_atTheSlabsIndex_andTheSlabIsAllObjects() throws {
        let cache = try SlabCache(name: uniqueCacheName("table"), size: 256, flags: .noCPUCache)
        defer { cache.shrink(); try? cache.destroy() }
        let layer = cache.slabLayer
        let layout = cache.layout
        XCTAssertEqual(layout.objectsPerSlab * layout.stride, layout.slabBytes, "256-byte objects fill a slab exactly")
        let objects = try (0..<(3 * layout.objectsPerSlab)).map { _ in try XCTUnwrap(cache.allocate()) }
        let blocks = Set(objects.map { UInt(bitPattern: $0) & layer.slabMask })
        XCTAssertEqual(blocks.count, 3)
        XCTAssertTrue(objects.contains { UInt(bitPattern: $0) & ~layer.slabMask == 0 }, "an object at a slab's start")
        for block in blocks {
            let header = layer.table.header(of: UnsafeRawPointer(bitPattern: block)!)
            XCTAssertEqual(header - layer.table.headers, Int((block - layer.pages.base) / UInt(layout.slabBytes)))
            XCTAssertEqual(header.pointee.magic, CSLAB_SLAB_MAGIC)
            XCTAssertEqual(header.pointee.in_use, UInt32(layout.objectsPerSlab))
            XCTAssertEqual(UInt(bitPattern: layer.table.block(of: header)), block)
            XCTAssertEqual(header.blockAddress(slabBytes: layout.slabBytes), block)
            XCTAssertEqual(UInt(bitPattern: header.objectsStart), block)
        }
        for p in objects { cache.free(p) }
        XCTAssertEqual(layer.checkInvariants(), [])
    }

    func test_noRangeOffsetZeroObject_theFirstArenaIsNeverCarved() throws {
        // Round 0 names no object (Magazine.swift): the range's first arena is never handed out.
        let cache = try SlabCache(name: uniqueCacheName("arena0"), size: 24)
        defer { cache.shrink(); try? cache.destroy() }
        let objects = try (0..<10_000).map { _ in try XCTUnwrap(cache.allocate()) }
        let base = cache.slabLayer.pages.base
        XCTAssertTrue(objects.allSatisfy { UInt(bitPattern: $0) - base >= UInt(PageSource.arenaBytes) })
        XCTAssertTrue(objects.allSatisfy { cache.slabLayer.codec.round($0) != 0 })
        for p in objects { cache.free(p) }
    }

    func test_overwritingAWholeSlab_breaksNoHeader() throws {
        // What an in-slab header could not survive: every byte of a full slab written while its
        // objects are allocated (an overrun from the slab before it starts at its first byte).
        let cache = try SlabCache(name: uniqueCacheName("overrun"), size: 24, flags: .noCPUCache)
        defer { cache.shrink(); try? cache.destroy() }
        let layer = cache.slabLayer
        let objects = try (0..<(2 * cache.layout.objectsPerSlab)).map { _ in try XCTUnwrap(cache.allocate()) }
        for block in Set(objects.map { UInt(bitPattern: $0) & layer.slabMask }) {
            memset(UnsafeMutableRawPointer(bitPattern: block)!, 0xEE, cache.layout.slabBytes)
        }
        XCTAssertEqual(layer.checkInvariants(), [])
        for p in objects { cache.free(p) }
        XCTAssertEqual(layer.checkInvariants(), [])
        XCTAssertEqual(layer.snapshot().activeObjects, 0)
    }

    func test_shrink_returnsTheTablePagesOfReleasedSlabs_andKeepsThoseOfLiveOnes() throws {
        // 24-byte objects: one-page slabs, so a table page describes 64 consecutive slabs.
        let cache = try SlabCache(name: uniqueCacheName("tablepages"), size: 24, flags: .noCPUCache)
        defer { cache.shrink(); try? cache.destroy() }
        XCTAssertEqual(cache.layout.order, 0)
        let layer = cache.slabLayer
        let perPage = SlabTable.headersPerPage
        let objects = try (0..<(3 * perPage * cache.layout.objectsPerSlab)).map { _ in try XCTUnwrap(cache.allocate()) }
        let headers = Set(objects.map { layer.table.header(of: $0) })
        XCTAssertEqual(headers.count, 3 * perPage)
        let tablePages = Set(headers.map { (UInt(bitPattern: $0) & ~UInt(page - 1)) })
        XCTAssertGreaterThanOrEqual(tablePages.count, 3)
        XCTAssertTrue(headers.allSatisfy(resident), "every header written is resident")

        // Keep one object: its table page must stay, with its header.
        let kept = objects[objects.count / 2]
        let keptHeader = layer.table.header(of: kept)
        for p in objects where p != kept { cache.free(p) }
        XCTAssertGreaterThan(cache.shrink(), 0)
        XCTAssertTrue(resident(keptHeader))
        XCTAssertEqual(keptHeader.pointee.magic, CSLAB_SLAB_MAGIC)
        XCTAssertEqual(keptHeader.pointee.in_use, 1)
        let keptPage = UInt(bitPattern: keptHeader) & ~UInt(page - 1)
        // Residency first: reading a header maps its page again (the zero page, which mincore counts).
        let released = headers.filter { UInt(bitPattern: $0) & ~UInt(page - 1) != keptPage }
        for header in released {
            XCTAssertFalse(resident(header), "the table page of released slabs at \(hex(header)) is still resident")
        }
        for header in released { XCTAssertNotEqual(header.pointee.magic, CSLAB_SLAB_MAGIC) }
        XCTAssertEqual(layer.checkInvariants(), [])
        cache.free(kept)
        cache.shrink()
        XCTAssertFalse(resident(keptHeader), "the last table page stays resident after its last slab went")
        XCTAssertEqual(cache.statistics.totalSlabs, 0)
    }
}
