// The slab layer's batch free (SlabLayer.free, two passes): objects whose slab the batch empties
// are never written (their slab just forgets its free list), the others go back on their slabs'
// free lists and are handed out again, and the lists, counts and invariants come out as if the
// objects had been freed one at a time.

@testable import Slab
import Harness
import TestSupport
import XCTest

final class SlabLayerBatchFreeTests: XCTestCase {
    func test_batchFree_leavesTheObjectsOfEmptiedSlabsUntouched_andRelinksTheRest() throws {
        // Without a CPU layer every allocation comes straight from the slab layer, slab by slab.
        let cache = try SlabCache(name: uniqueCacheName("batchfree"), size: 24, flags: .noCPUCache)
        defer { cache.shrink(); try? cache.destroy() }
        let layer = cache.slabLayer
        let perSlab = cache.layout.objectsPerSlab
        let objects = try (0..<(2 * perSlab + 10)).map { _ in try XCTUnwrap(cache.allocate()) }
        func slab(_ p: UnsafeMutableRawPointer) -> UInt { UInt(bitPattern: p) & layer.slabMask }
        let first = objects.filter { slab($0) == slab(objects[0]) }
        let third = objects.filter { slab($0) == slab(objects.last!) }
        XCTAssertEqual(first.count, perSlab)
        XCTAssertEqual(third.count, 10)
        let stamp: UInt64 = 0xC0FF_EE00_5AB5_1AB5
        for p in objects { for w in 0..<3 { p.storeBytes(of: stamp, toByteOffset: 8 * w, as: UInt64.self) } }

        // One call, two magazines' worth: the first slab whole (shuffled) and 5 of the third's
        // objects, which are not its newest (so they need links).
        var rng = SplitMix64(seed: 0xBA7C)
        let codec = layer.codec
        var whole = first.map { codec.round($0) }
        for i in stride(from: whole.count - 1, to: 0, by: -1) { whole.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        var part = third.prefix(5).map { codec.round($0) }
        let before = layer.snapshot()
        whole.withUnsafeBufferPointer { w in
            part.withUnsafeMutableBufferPointer { p in
                let batches = [SlabLayer.Rounds(start: w.baseAddress!, count: w.count),
                               SlabLayer.Rounds(start: UnsafePointer(p.baseAddress!), count: p.count)]
                batches.withUnsafeBufferPointer { layer.free($0) }
            }
        }
        let after = layer.snapshot()
        XCTAssertEqual(after.activeObjects, before.activeObjects - perSlab - 5)
        XCTAssertEqual(after.emptySlabs, 1, "the first slab is empty")
        XCTAssertEqual(layer.checkInvariants(), [])
        for p in first {
            for w in 0..<3 {
                XCTAssertEqual(p.load(fromByteOffset: 8 * w, as: UInt64.self), stamp,
                               "object \(p) of the emptied slab was written")
            }
        }
        // The third slab is the only partial one: its five come back first.
        let again = try (0..<5).map { _ in try XCTUnwrap(cache.allocate()) }
        XCTAssertEqual(Set(again), Set(third.prefix(5)))
        XCTAssertEqual(layer.checkInvariants(), [])
        // Every object outside the emptied slab is in use again.
        for p in Set(objects).subtracting(first) { cache.free(p) }
        XCTAssertEqual(layer.snapshot().activeObjects, 0)
        XCTAssertEqual(layer.checkInvariants(), [])
    }

    func test_batchFree_retractsTheBump_forObjectsFreedNewestFirst() throws {
        let cache = try SlabCache(name: uniqueCacheName("batchbump"), size: 24, flags: .noCPUCache)
        defer { cache.shrink(); try? cache.destroy() }
        let layer = cache.slabLayer
        let objects = try (0..<20).map { _ in try XCTUnwrap(cache.allocate()) }
        let slab = layer.table.header(of: objects[0])
        XCTAssertEqual(slab.pointee.bump, 20)
        // The newest eight, newest first, in one batch: the bump retracts, no link is written.
        let codec = layer.codec
        let newest = objects.suffix(8).reversed().map { codec.round($0) }
        newest.withUnsafeBufferPointer { layer.free($0.baseAddress!, count: $0.count) }
        XCTAssertEqual(slab.pointee.bump, 12)
        XCTAssertNil(slab.pointee.free_list)
        XCTAssertEqual(layer.checkInvariants(), [])
        for p in objects.prefix(12) { cache.free(p) }
        XCTAssertEqual(layer.snapshot().activeObjects, 0)
    }
}
