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

    /// A slab whose objects straddle two batches: the first batch's run leaves it in use (pass 1
    /// records the run), the second empties it (pass 2 must then skip the recorded run and write
    /// nothing); a slab left in use by both of its runs gets both linked.
    func test_batchFree_linksOnlyTheRunsLeftInUse_whenASlabStraddlesTwoBatches() throws {
        let cache = try SlabCache(name: uniqueCacheName("batchstraddle"), size: 24, flags: .noCPUCache)
        defer { cache.shrink(); try? cache.destroy() }
        let layer = cache.slabLayer
        let perSlab = cache.layout.objectsPerSlab
        let objects = try (0..<(2 * perSlab)).map { _ in try XCTUnwrap(cache.allocate()) }
        func slab(_ p: UnsafeMutableRawPointer) -> UInt { UInt(bitPattern: p) & layer.slabMask }
        let a = objects.filter { slab($0) == slab(objects[0]) }
        let b = objects.filter { slab($0) == slab(objects.last!) }
        XCTAssertEqual(a.count, perSlab)
        XCTAssertEqual(b.count, perSlab)
        let stamp: UInt64 = 0x5EED_0F5A_B5EE_D0F5
        for p in objects { for w in 0..<3 { p.storeBytes(of: stamp, toByteOffset: 8 * w, as: UInt64.self) } }
        let codec = layer.codec
        // Slab a: its first half in batch 1, its second half in batch 2 (emptied there).
        // Slab b: 10 of its objects in batch 1 and 10 in batch 2, oldest first (links needed).
        let half = perSlab / 2
        let one = a.prefix(half).map { codec.round($0) } + b.prefix(10).map { codec.round($0) }
        let two = a.suffix(perSlab - half).map { codec.round($0) } + b.dropFirst(10).prefix(10).map { codec.round($0) }
        one.withUnsafeBufferPointer { o in
            two.withUnsafeBufferPointer { t in
                let batches = [SlabLayer.Rounds(start: o.baseAddress!, count: o.count),
                               SlabLayer.Rounds(start: t.baseAddress!, count: t.count)]
                batches.withUnsafeBufferPointer { layer.free($0) }
            }
        }
        XCTAssertEqual(layer.checkInvariants(), [])
        XCTAssertEqual(layer.snapshot().emptySlabs, 1, "slab a is empty")
        for p in a {
            for w in 0..<3 {
                XCTAssertEqual(p.load(fromByteOffset: 8 * w, as: UInt64.self), stamp, "object \(p) of the emptied slab was written")
            }
        }
        // Slab b is the only partial slab: its 20 come back before anything else.
        let again = try (0..<20).map { _ in try XCTUnwrap(cache.allocate()) }
        XCTAssertEqual(Set(again), Set(b.prefix(20)))
        XCTAssertEqual(layer.checkInvariants(), [])
        for p in b { cache.free(p) }
        XCTAssertEqual(layer.snapshot().activeObjects, 0)
        XCTAssertEqual(layer.checkInvariants(), [])
    }

    /// More runs left in use than the batch free records: pass 2 walks every round instead, with
    /// the same outcome.
    func test_batchFree_withMoreRunsLeftInUseThanItRecords_linksEveryObjectStillInUse() throws {
        let cache = try SlabCache(name: uniqueCacheName("batchmany"), size: 24, flags: .noCPUCache)
        defer { cache.shrink(); try? cache.destroy() }
        let layer = cache.slabLayer
        let perSlab = cache.layout.objectsPerSlab
        let slabs = 24
        let objects = try (0..<(slabs * perSlab)).map { _ in try XCTUnwrap(cache.allocate()) }
        // Every other object, alternating between two slabs' halves so that each round is a run
        // of its own: far more runs left in use than SlabLayer.runsInUseCapacity.
        let codec = layer.codec
        var freed: [UnsafeMutableRawPointer] = []
        for s in stride(from: 0, to: slabs, by: 2) {
            let x = objects[(s * perSlab)..<((s + 1) * perSlab)], y = objects[((s + 1) * perSlab)..<((s + 2) * perSlab)]
            for (p, q) in zip(x, y).enumerated().filter({ $0.offset % 2 == 0 }).map({ $0.element }) {
                freed.append(p)
                freed.append(q)
            }
        }
        XCTAssertGreaterThan(freed.count, SlabLayer.runsInUseCapacity)
        let rounds = freed.map { codec.round($0) }
        rounds.withUnsafeBufferPointer { layer.free($0.baseAddress!, count: $0.count) }
        XCTAssertEqual(layer.checkInvariants(), [])
        XCTAssertEqual(layer.snapshot().activeObjects, objects.count - freed.count)
        let again = try (0..<freed.count).map { _ in try XCTUnwrap(cache.allocate()) }
        XCTAssertEqual(Set(again), Set(freed))
        XCTAssertEqual(layer.checkInvariants(), [])
        for p in objects { cache.free(p) }
        XCTAssertEqual(layer.snapshot().activeObjects, 0)
    }
}
