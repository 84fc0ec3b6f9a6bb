// Bonwick's object caching: the constructor runs once per object when its slab is created, objects
// stay constructed while cached (in magazines or slabs), and the destructor runs once per object
// when its slab is released by shrink() or destroy().

import Foundation
import Harness
import Slab
import Synchronization
import TestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Constructs objects with a pattern and tracks each object's life: constructed exactly once
/// before it is destroyed, destroyed only when constructed (swift-collections' lifetime tracker,
/// for raw objects).
final class LifetimeTracker: @unchecked Sendable {
    let size: Int
    let constructed = Counter()
    let destroyed = Counter()
    private let lock = NSLock()
    private var live = Set<UInt>()
    let problems = ProblemLog()

    init(size: Int) { self.size = size }

    static func pattern(_ i: Int) -> UInt8 { UInt8(truncatingIfNeeded: 0xC0 &+ i &* 7) }

    func construct(_ p: UnsafeMutableRawPointer) {
        constructed.add()
        for i in 0..<size { p.storeBytes(of: Self.pattern(i), toByteOffset: i, as: UInt8.self) }
        let a = UInt(bitPattern: p)
        lock.lock(); let fresh = live.insert(a).inserted; lock.unlock()
        if !fresh { problems.add("constructed twice without a destructor: \(p)") }
    }

    func destruct(_ p: UnsafeMutableRawPointer) {
        destroyed.add()
        if let damage = damage(p) { problems.add("destructor got an object that is not constructed: \(damage)") }
        let a = UInt(bitPattern: p)
        lock.lock(); let known = live.remove(a) != nil; lock.unlock()
        if !known { problems.add("destructor on an object never constructed: \(p)") }
        p.initializeMemory(as: UInt8.self, repeating: 0xDD, count: size)
    }

    /// nil when `p` holds the constructed pattern.
    func damage(_ p: UnsafeMutableRawPointer) -> String? {
        for i in 0..<size where p.load(fromByteOffset: i, as: UInt8.self) != Self.pattern(i) {
            return "\(p) byte \(i) is 0x\(String(p.load(fromByteOffset: i, as: UInt8.self), radix: 16))"
        }
        return nil
    }

    var liveCount: Int { lock.lock(); defer { lock.unlock() }; return live.count }

    func makeCache(_ base: String, flags: SlabFlags = []) throws -> SlabCache {
        try SlabCache(name: uniqueCacheName(base), size: size, align: 8, flags: flags,
                      constructor: { [self] in construct($0) }, destructor: { [self] in destruct($0) })
    }

    /// The end of a test: every object in `held` is still constructed; they are freed and the
    /// cache destroyed; then every object ever constructed has been destroyed once, none is left
    /// and no problem was seen.
    func freeAndDestroy(_ held: [UnsafeMutableRawPointer], _ cache: SlabCache, _ context: String,
                        file: StaticString = #filePath, line: UInt = #line) throws {
        for p in held { if let d = damage(p) { XCTFail("\(context): a held object is not constructed: \(d)", file: file, line: line) } }
        held.forEach(cache.free)
        try cache.destroy()
        XCTAssertEqual(destroyed.value, constructed.value, "\(context): destroy destructs every object", file: file, line: line)
        XCTAssertEqual(liveCount, 0, context, file: file, line: line)
        XCTAssertEqual(problems.all, [], context, file: file, line: line)
    }
}

final class ConstructorTests: XCTestCase {
    static let flagCases: [SlabFlags] = [[], .noCPUCache]

    func test_constructor_runsObjectsPerSlabTimesPerSlabCreated_notPerAllocation() throws {
        for flags in Self.flagCases {
            let t = LifetimeTracker(size: 40)
            let cache = try t.makeCache("ctor", flags: flags)
            XCTAssertEqual(t.constructed.value, 0, "no slab yet, no constructor call")
            var held: [UnsafeMutableRawPointer] = []
            for round in 0..<5 {
                for _ in 0..<(137 * (round + 1)) { held.append(cache.allocate()!) }
                let s = cache.statistics
                XCTAssertEqual(t.constructed.value, s.slabsCreated * s.objectsPerSlab, "\(flags) round \(round)")
                // Free half and reallocate: served from cached, constructed objects.
                let before = t.constructed.value
                for _ in 0..<(held.count / 2) { cache.free(held.removeLast()) }
                for _ in 0..<(held.count / 2) { held.append(cache.allocate()!) }
                XCTAssertEqual(t.constructed.value, before, "reallocation must not construct again (\(flags))")
            }
            try t.freeAndDestroy(held, cache, "\(flags)")
        }
    }

    func test_objects_comeBackConstructed_throughCPULayerSlabLayerAndShrink() throws {
        for flags in Self.flagCases {
            let t = LifetimeTracker(size: 20)
            let cache = try t.makeCache("constructed", flags: flags)
            XCTAssertEqual(cache.layout.freeLinkOffset, cache.objectSize, "with a constructor the link is past the object")
            // Many objects, so that frees overflow the magazines into the depot and the slabs.
            var held = (0..<5000).map { _ in cache.allocate()! }
            for p in held { if let d = t.damage(p) { return XCTFail("\(flags) first allocation: \(d)") } }
            // Keep one object per slab-ish alive so that shrink() keeps some slabs (objects
            // then come back from the slab layer's free lists, not from fresh slabs).
            let keep = stride(from: 0, to: held.count, by: 97).map { held[$0] }
            let keepSet = Set(keep)
            held.filter { !keepSet.contains($0) }.forEach(cache.free)
            held = keep
            for pass in 0..<3 {
                var again = (0..<4000).map { _ in cache.allocate()! }
                for p in again { if let d = t.damage(p) { return XCTFail("\(flags) pass \(pass): \(d)") } }
                again.shuffle()
                again.forEach(cache.free)
                if pass == 1 {
                    cache.shrink()
                    XCTAssertGreaterThan(cache.statistics.totalSlabs, 0, "live objects keep their slabs")
                }
            }
            try t.freeAndDestroy(held, cache, "\(flags)")
        }
    }

    func test_destructor_runsForEveryObject_whenShrinkReleasesSlabs() throws {
        for flags in Self.flagCases {
            let t = LifetimeTracker(size: 64)
            let cache = try t.makeCache("dtor", flags: flags)
            var held = (0..<3000).map { _ in cache.allocate()! }
            XCTAssertEqual(t.destroyed.value, 0)
            held.forEach(cache.free)
            held.removeAll()
            let before = cache.statistics
            let released = cache.shrink()
            let after = cache.statistics
            let slabsReleased = after.slabsReleased - before.slabsReleased
            XCTAssertEqual(after.totalSlabs, 0, "\(flags)")
            XCTAssertEqual(slabsReleased, before.totalSlabs, "\(flags)")
            XCTAssertEqual(released, slabsReleased * after.pagesPerSlab * SlabLayout.pageSize, "shrink returns the bytes it released")
            XCTAssertEqual(t.destroyed.value, slabsReleased * after.objectsPerSlab, "\(flags)")
            XCTAssertEqual(t.destroyed.value, t.constructed.value, "\(flags)")
            XCTAssertEqual(t.liveCount, 0)
            // The cache grows again after shrinking, constructing anew.
            held = (0..<100).map { _ in cache.allocate()! }
            try t.freeAndDestroy(held, cache, "\(flags) after shrink")
        }
    }

    func test_destructor_notRun_forSlabsThatStillHoldLiveObjects() throws {
        let t = LifetimeTracker(size: 24)
        let cache = try t.makeCache("partial")
        let held = (0..<2000).map { _ in cache.allocate()! }
        let before = cache.statistics
        cache.shrink()
        let after = cache.statistics
        // Only slabs left empty (rounds cached beyond the last held object) may be released.
        XCTAssertEqual(t.destroyed.value, (after.slabsReleased - before.slabsReleased) * after.objectsPerSlab)
        XCTAssertEqual(after.activeObjects, held.count)
        XCTAssertLessThanOrEqual(after.totalSlabs * after.objectsPerSlab - held.count, 2 * after.objectsPerSlab)
        try t.freeAndDestroy(held, cache, "after a shrink with live objects")
    }
}

/// A constructor runs inside the allocation that made its slab; in the fallback mode that
/// operation holds the thread's slot. A constructor that allocates from, shrinks or reaps its own cache must
/// neither hang (the drain used to wait for the slot this very thread held) nor leave the cache
/// inconsistent. Each case runs in a process of its own, since the failure is a hang.
final class ConstructorReentryTests: XCTestCase {
    enum Reentry: Int32, CaseIterable { case shrink = 1, reap, allocate }

    /// 0 when the cache came through; 10...: which step failed.
    static func constructorThatUsesItsCache(_ what: Reentry) -> Int32 {
        let itself = Mutex<SlabCache?>(nil)
        let calls = Atomic<Int>(0)
        // One call in `every` uses the cache. An allocation may construct a whole slab, and in rseq
        // mode refill a magazine (M = 255 objects here): a constructor that allocates for one object
        // in 97 would construct ever more objects and recurse without end, as any cache that
        // constructs when its slab is made would; one in 500 dies out.
        let every = what == .allocate ? 500 : 97
        let kept = Mutex<[UInt]>([])  // what the constructor allocated (addresses: a pointer is not Sendable)
        guard let cache = try? SlabCache(name: uniqueCacheName("ctor-reentry"), size: 48, align: 8, flags: [],
                                         constructor: { p in
                                             memset(p, 0x5C, 48)
                                             guard calls.add(1, ordering: .relaxed).oldValue % every == 0,
                                                   let cache = itself.withLock({ $0 }) else { return }
                                             switch what {
                                             case .shrink: cache.shrink()
                                             case .reap: cache.reap()
                                             case .allocate:
                                                 if let o = cache.allocate() { kept.withLock { $0.append(UInt(bitPattern: o)) } }
                                             }
                                         }) else { return 10 }
        itself.withLock { $0 = cache }
        var held: [UnsafeMutableRawPointer] = []
        for round in 0..<4 {
            for _ in 0..<3000 { if let o = cache.allocate() { held.append(o) } }
            guard held.count == 3000 else { return 11 }
            if held.contains(where: { $0.load(as: UInt8.self) != 0x5C }) { return 12 }
            // Nothing a constructor allocated (and still holds) is handed out again.
            let live = Set(kept.withLock { $0 })
            if held.contains(where: { live.contains(UInt(bitPattern: $0)) }) { return 17 }
            if round % 2 == 0 { for o in held { cache.free(o) } } else { for o in held.reversed() { cache.free(o) } }
            held.removeAll(keepingCapacity: true)
        }
        let fromConstructors = kept.withLock { $0 }
        guard what != .allocate || fromConstructors.count > 1, Set(fromConstructors).count == fromConstructors.count else { return 16 }
        for o in fromConstructors { cache.free(UnsafeMutableRawPointer(bitPattern: o)!) }
        let problems = cache.checkInvariants()
        guard problems.isEmpty else {
            FileHandle.standardError.write(Data("ctor-reentry \(what): \(problems)\n".utf8))
            return 13
        }
        itself.withLock { $0 = nil }
        guard (try? cache.destroy()) != nil else { return 14 }
        return calls.load(ordering: .relaxed) > every ? 0 : 15
    }

    /// Each case runs in a forked child, which ThreadSanitizer's runtime does not support here.
    func skipUnderThreadSanitizer() throws {
        try ChildProcess.skipIfThreadSanitized("the case runs in a forked child, which ThreadSanitizer's runtime does not support here")
    }

    func test_aConstructorMayAllocateFromShrinkOrReapItsOwnCache() throws {
        try skipUnderThreadSanitizer()
        try ChildProcess.printCPULayerMode()
        for what in Reentry.allCases {
            XCTAssertNil(ChildProcess.forkedFailure(deadline: 30) { Self.constructorThatUsesItsCache(what) }, "\(what)")
        }
    }

    func test_aConstructorMayAllocateFromShrinkOrReapItsOwnCache_inFallbackMode() throws {
        try skipUnderThreadSanitizer()
        try ChildProcess.runPassingTestInFallbackMode(
            "SlabTests.ConstructorReentryTests/test_aConstructorMayAllocateFromShrinkOrReapItsOwnCache")
    }
}
