// Bad input stops the process with a message that names the problem: each case runs in a child
// process (this test binary, re-run on one test with SLAB_CRASH_SCENARIO naming the case), and the
// parent checks that the child died and that its stderr holds the exact words.

@testable import Slab
import Harness
import TestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The scenarios, run only in a child. Each does one bad thing; the line after it must not run.
enum CrashScenario: String, CaseIterable, StoppingScenario {
    case wrongCacheSameGeometry, wrongCacheSmallToLarge, wrongCacheLargeToSmall
    case mallocPointer, interiorPointer, interiorPointerWithCPULayer, doubleFree, allocateAfterDestroy, allocateAfterDestroyWithCPULayer
    case freeAfterDestroy, colourGapPointer, freeIntoReleasedSlab, slabLayerForeignPointer
    case batchDoubleFreePastTheCount, batchDoubleFreeAfterTheSlabEmptied, batchDoubleFreeInABusySlab
    case stretchThroughTheFreeListHead, stretchDownThroughTheFreeListHead, stretchPastTheBump, stretchPastTheCount

    static let environmentKey = "SLAB_CRASH_SCENARIO"
    static let runnerTest = "SlabTests.CrashScenarioRunner/test_runCrashScenario"

    /// Names of the caches a scenario creates: "<scenario>-A" and "<scenario>-B" (fixed, so the
    /// parent knows what the message must contain; the child is a fresh process).
    var nameA: String { "\(rawValue)-A" }
    var nameB: String { "\(rawValue)-B" }

    /// What the child's stderr must say, besides the name of cache A (every message names the
    /// cache the object was freed to or came from).
    var expectedWords: [String] {
        switch self {
        case .wrongCacheSameGeometry:
            // Linux's wording: "Wrong slab cache. <cache freed to> but object is from <its cache>".
            return ["Wrong slab cache. \(nameB) but object", "is from \(nameA)"]
        case .wrongCacheSmallToLarge, .wrongCacheLargeToSmall: return ["Wrong slab cache", nameB, "is from \(nameA)"]
        case .mallocPointer: return ["was not allocated from any slab cache"]
        case .interiorPointer, .interiorPointerWithCPULayer, .colourGapPointer, .slabLayerForeignPointer:
            return ["is not the start of an object"]
        case .doubleFree, .batchDoubleFreePastTheCount, .batchDoubleFreeAfterTheSlabEmptied, .batchDoubleFreeInABusySlab:
            return ["double free"]
        case .stretchThroughTheFreeListHead, .stretchDownThroughTheFreeListHead, .stretchPastTheBump, .stretchPastTheCount:
            // And the report names the very object (announced by the child: `expectedObject`).
            return ["double free", "is already free in its slab"]
        case .allocateAfterDestroy, .allocateAfterDestroyWithCPULayer: return ["destroyed"]
        case .freeAfterDestroy: return ["freed to a destroyed cache"]
        case .freeIntoReleasedSlab: return ["is not in a live slab of this cache"]
        }
    }

    func run() throws {
        switch self {
        case .wrongCacheSameGeometry:
            let a = try SlabCache(name: nameA, size: 64), b = try SlabCache(name: nameB, size: 64)
            let p = a.allocate()!
            b.free(p)
        case .wrongCacheSmallToLarge:
            let a = try SlabCache(name: nameA, size: 20), b = try SlabCache(name: nameB, size: 3000)
            _ = b.allocate()
            let p = a.allocate()!
            b.free(p)
        case .wrongCacheLargeToSmall:
            let a = try SlabCache(name: nameA, size: 3000), b = try SlabCache(name: nameB, size: 20)
            _ = b.allocate()
            let p = a.allocate()!
            b.free(p)
        case .mallocPointer:
            let a = try SlabCache(name: nameA, size: 32)
            _ = a.allocate()
            let p = malloc(32)!
            a.free(p)
        case .interiorPointer:
            let a = try SlabCache(name: nameA, size: 32, flags: .noCPUCache)
            let p = a.allocate()!
            a.free(p + 8)
        case .slabLayerForeignPointer:
            // Below the ownership test: the slab layer's own free must not take a pointer outside
            // its range, which its 32-bit round would turn into another address of the range.
            let a = try SlabCache(name: nameA, size: 32, flags: .noCPUCache)
            let p = a.allocate()!
            a.slabLayer.freeOne(p + (1 << 36))
        case .batchDoubleFreePastTheCount:
            // A magazine's rounds go back to their slab as one run, counted at its end: the same
            // object twice in a run, in a slab with one object in use, is one free too many.
            let a = try SlabCache(name: nameA, size: 32, flags: .noCPUCache)
            let p = a.allocate()!
            var rounds = [a.slabLayer.codec.round(p), a.slabLayer.codec.round(p)]
            a.slabLayer.free(&rounds, count: 2)
        case .batchDoubleFreeAfterTheSlabEmptied:
            // Two runs of one slab in a batch: the first empties it, the second frees again.
            let a = try SlabCache(name: nameA, size: 32, flags: .noCPUCache)
            let p = a.allocate()!
            let perSlab = a.layout.objectsPerSlab
            let others = (0..<perSlab).map { _ in a.allocate()! }
            let q = try XCTUnwrap(others.first { UInt(bitPattern: $0) & a.slabLayer.slabMask != UInt(bitPattern: p) & a.slabLayer.slabMask })
            for o in others where o != q { a.free(o) }
            let c = a.slabLayer.codec
            var rounds = [c.round(p), c.round(q), c.round(p)]
            a.slabLayer.free(&rounds, count: 3)
        case .batchDoubleFreeInABusySlab:
            // The same object twice in a run of a slab that stays in use: the count cannot tell,
            // the second pass does (the object is at the head of the free list, or past the bump).
            let a = try SlabCache(name: nameA, size: 32, flags: .noCPUCache)
            let p = a.allocate()!
            _ = (0..<3).map { _ in a.allocate()! }
            var rounds = [a.slabLayer.codec.round(p), a.slabLayer.codec.round(p)]
            a.slabLayer.free(&rounds, count: 2)
        case .stretchThroughTheFreeListHead, .stretchDownThroughTheFreeListHead:
            // Rounds in steps of one object, a stretch that pass 1 checks as a whole: one of them
            // (object 5) is free already, at the head of its slab's free list, and the slab has
            // enough objects in use that the count cannot tell.
            let a = try SlabCache(name: nameA, size: 32, flags: .noCPUCache)
            let objects = (0..<20).map { _ in a.allocate()! }
            a.free(objects[5])
            Self.announce(objects[5])
            let c = a.slabLayer.codec
            var rounds = objects.prefix(10).map { c.round($0) }
            if self == .stretchDownThroughTheFreeListHead { rounds.reverse() }
            a.slabLayer.free(&rounds, count: rounds.count)
        case .stretchPastTheBump:
            // A stretch that runs on past the objects the slab has handed out, then a second
            // batch that takes the slab's count to zero (so no second pass would look at the
            // first): the first object beyond the bump is reported.
            let a = try SlabCache(name: nameA, size: 32, flags: .noCPUCache)
            let objects = (0..<10).map { _ in a.allocate()! }
            let stride = a.layout.stride
            Self.announce(objects[9] + stride)
            let c = a.slabLayer.codec
            let past = [c.round(objects[8]), c.round(objects[9]), c.round(objects[9] + stride),
                        c.round(objects[9] + 2 * stride)]
            let rest = objects.prefix(6).map { c.round($0) }
            past.withUnsafeBufferPointer { p in
                rest.withUnsafeBufferPointer { r in
                    let batches = [SlabLayer.Rounds(start: p.baseAddress!, count: p.count),
                                   SlabLayer.Rounds(start: r.baseAddress!, count: r.count)]
                    batches.withUnsafeBufferPointer { a.slabLayer.free($0) }
                }
            }
        case .stretchPastTheCount:
            // Objects 0 and 1 are the slab's only ones in use; 2...18 are free deep in its free
            // list (18 is the head; 19 retracted the bump). A stretch of objects 0...10 passes the
            // head and bump checks but frees more than the slab has in use: the first object past
            // the count (object 2) is reported.
            let a = try SlabCache(name: nameA, size: 32, flags: .noCPUCache)
            let objects = (0..<20).map { _ in a.allocate()! }
            for o in objects.dropFirst(2) { a.free(o) }
            Self.announce(objects[2])
            let c = a.slabLayer.codec
            var rounds = objects.prefix(11).map { c.round($0) }
            a.slabLayer.free(&rounds, count: rounds.count)
        case .interiorPointerWithCPULayer:
            // The per-CPU fast path must not take an interior pointer into a magazine.
            let a = try SlabCache(name: nameA, size: 32)
            let p = a.allocate()!
            a.free(p + 8)
        case .doubleFree:
            let a = try SlabCache(name: nameA, size: 32, flags: .noCPUCache)
            let p = a.allocate()!
            _ = a.allocate()
            a.free(p)
            a.free(p)
        case .allocateAfterDestroy:
            let a = try SlabCache(name: nameA, size: 32, flags: .noCPUCache)
            a.free(a.allocate()!)
            try a.destroy()
            _ = a.allocate()
        case .allocateAfterDestroyWithCPULayer:
            let a = try SlabCache(name: nameA, size: 32)
            for _ in 0..<3 { a.free(a.allocate()!) }
            try a.destroy()
            _ = a.allocate()
        case .freeAfterDestroy:
            let a = try SlabCache(name: nameA, size: 32)
            let p = a.allocate()!
            a.free(p)
            try a.destroy()
            a.free(p)
        case .colourGapPointer:
            // The start of a coloured slab, 64 bytes below its first object: the offset from the
            // objects wraps to 2^64 - 64, a multiple of the 96-byte stride modulo 2^64, so the
            // divisibility test alone would take it; only the bound on the offset stops it.
            let a = try SlabCache(name: nameA, size: 96, align: 32)
            precondition(a.layout.colours >= 2 && a.layout.colourStep == 64, "the scenario wants a second colour at +64")
            let objects = (0..<(4 * a.layout.objectsPerSlab)).map { _ in a.allocate()! }
            let slabMask = UInt(a.layout.slabBytes - 1)
            let p = objects.first { UInt(bitPattern: $0) & slabMask == 64 }!
            a.free(UnsafeMutableRawPointer(bitPattern: UInt(bitPattern: p) & ~slabMask)!)
        case .freeIntoReleasedSlab:
            // A stale pointer into a slab that shrink() gave back: its address is still in the
            // cache's range, but the page map reads 0 there, so the fast path must not take it.
            let a = try SlabCache(name: nameA, size: 32)
            let p = a.allocate()!
            a.free(p)
            a.shrink()
            precondition(a.statistics.totalSlabs == 0, "shrink released the slab")
            a.free(p)
        }
    }
}

extension CrashScenario {
    /// The child says which object its report must name (`expectCrash` checks the report line).
    static let expectedObjectPrefix = "expected object: "
    static func announce(_ object: UnsafeMutableRawPointer) {
        writeStandardError(expectedObjectPrefix + hex(object) + "\n")
    }
}

/// The child's entry point. In a normal run there is no scenario and it skips.
final class CrashScenarioRunner: XCTestCase {
    func test_runCrashScenario() throws { try CrashScenario.runNamedInEnvironment() }
}

final class BadFreeTests: XCTestCase {
    /// Runs `scenario` in a child; checks it stopped before the line after the bad operation,
    /// with the name of its cache A and every one of its expected words in its stderr.
    private func expectCrash(_ scenario: CrashScenario, file: StaticString = #filePath, line: UInt = #line) throws {
        let result = try scenario.runInChild(file: file, line: line)
        for words in [scenario.nameA] + scenario.expectedWords {
            XCTAssertTrue(result.stderrText.contains(words), "\(scenario): stderr lacks \"\(words)\"\n\(result)",
                          file: file, line: line)
        }
        let announced = result.stderrText.split(separator: "\n").first { $0.hasPrefix(CrashScenario.expectedObjectPrefix) }
        if let announced {
            let object = announced.dropFirst(CrashScenario.expectedObjectPrefix.count)
            XCTAssertTrue(result.stderrText.contains("\(object) is already free"),
                          "\(scenario): the report does not name \(object)\n\(result)", file: file, line: line)
        }
    }

    func test_free_toWrongCache_reportsBothNames() throws { try expectCrash(.wrongCacheSameGeometry) }
    func test_free_toWrongCacheWithLargerSlabs_reportsBothNames() throws { try expectCrash(.wrongCacheSmallToLarge) }
    func test_free_toWrongCacheWithSmallerSlabs_reportsBothNames() throws { try expectCrash(.wrongCacheLargeToSmall) }
    func test_free_ofMallocPointer_reportsNotFromAnySlabCache() throws { try expectCrash(.mallocPointer) }
    func test_free_ofInteriorPointer_reportsNotTheStartOfAnObject() throws { try expectCrash(.interiorPointer) }
    func test_free_ofInteriorPointer_withCPULayer_stopsAtTheFree() throws { try expectCrash(.interiorPointerWithCPULayer) }
    func test_free_ofASlabsColourGap_reportsNotTheStartOfAnObject() throws { try expectCrash(.colourGapPointer) }
    func test_slabLayerFree_ofAPointerOutsideItsRange_reportsNotTheStartOfAnObject() throws {
        try expectCrash(.slabLayerForeignPointer)
    }
    func test_free_twice_reportsDoubleFree() throws { try expectCrash(.doubleFree) }
    func test_batchFree_ofOneObjectTwiceInARun_pastTheSlabsCount_reportsDoubleFree() throws {
        try expectCrash(.batchDoubleFreePastTheCount)
    }
    func test_batchFree_ofAnObjectAfterItsSlabEmptiedInTheBatch_reportsDoubleFree() throws {
        try expectCrash(.batchDoubleFreeAfterTheSlabEmptied)
    }
    func test_batchFree_ofOneObjectTwiceInARun_ofASlabStillInUse_reportsDoubleFree() throws {
        try expectCrash(.batchDoubleFreeInABusySlab)
    }
    func test_batchFree_ofAStretchThroughTheFreeListHead_reportsThatObject() throws {
        try expectCrash(.stretchThroughTheFreeListHead)
    }
    func test_batchFree_ofADescendingStretchThroughTheFreeListHead_reportsThatObject() throws {
        try expectCrash(.stretchDownThroughTheFreeListHead)
    }
    func test_batchFree_ofAStretchPastTheBump_reportsTheFirstObjectBeyondIt() throws {
        try expectCrash(.stretchPastTheBump)
    }
    func test_batchFree_ofAStretchPastTheSlabsCount_reportsTheObjectThatGoesPastIt() throws {
        try expectCrash(.stretchPastTheCount)
    }
    func test_allocate_afterDestroy_reportsDestroyed() throws { try expectCrash(.allocateAfterDestroy) }
    func test_allocate_afterDestroy_withCPULayer_reportsDestroyed() throws { try expectCrash(.allocateAfterDestroyWithCPULayer) }
    func test_free_afterDestroy_reportsDestroyedCache() throws { try expectCrash(.freeAfterDestroy) }
    func test_free_intoASlabShrinkReleased_reportsNotInALiveSlab() throws { try expectCrash(.freeIntoReleasedSlab) }
}
