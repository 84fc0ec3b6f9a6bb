// Many caches at once: ten thousand live caches in one process, each holding an object, with the
// resident memory each one costs measured; and creating and destroying a cache over and over
// leaves nothing behind.

import Slab
import TestSupport
import XCTest

final class ManyCachesTests: XCTestCase {
    func test_tenThousandCaches_liveAtOnce_eachHoldingAStampedObject() throws {
        // A sanitizer's shadow takes most of the address space, and its memory the RSS.
        try ResidentMemory.skipIfDistorted()
        let count = 10_000
        var caches: [SlabCache] = []
        var objects: [UnsafeMutableRawPointer] = []
        caches.reserveCapacity(count)
        objects.reserveCapacity(count)
        let before = try XCTUnwrap(ResidentMemory.bytes())
        let start = Date()
        for i in 0..<count {
            let cache: SlabCache
            do {
                cache = try SlabCache(name: uniqueCacheName("many-\(i)"), size: 64)
            } catch {
                XCTFail("cache \(i + 1) of \(count) could not be created: \(error)")
                break
            }
            let p = try XCTUnwrap(cache.allocate(), "cache \(i + 1) allocates")
            p.storeBytes(of: UInt64(i), as: UInt64.self)
            caches.append(cache)
            objects.append(p)
        }
        let after = try XCTUnwrap(ResidentMemory.bytes())
        print("many caches: \(caches.count) live, \((after - before) / max(caches.count, 1)) bytes of RSS each, created in \(String(format: "%.2f", Date().timeIntervalSince(start))) s")
        XCTAssertEqual(caches.count, count)
        for (i, (cache, p)) in zip(caches, objects).enumerated() {
            XCTAssertEqual(p.load(as: UInt64.self), UInt64(i), "cache \(i)'s object kept its stamp")
            cache.free(p)
            try cache.destroy()
        }
    }

    func test_createAndDestroy_tenThousandTimes_holdsSteady() throws {
        try ResidentMemory.skipIfDistorted()
        func cycle(_ n: Int) throws {
            for i in 0..<n {
                let cache = try SlabCache(name: uniqueCacheName("cycle-\(i)"), size: 64)
                cache.free(try XCTUnwrap(cache.allocate()))
                try cache.destroy()
            }
        }
        try cycle(1000)   // warm-up: the process's own structures reach their size
        let before = try XCTUnwrap(ResidentMemory.bytes())
        try cycle(10_000)
        let after = try XCTUnwrap(ResidentMemory.bytes())
        print("create/destroy x10,000: RSS \(before >> 10) KiB -> \(after >> 10) KiB")
        XCTAssertLessThan(after - before, 8 << 20, "10,000 create/destroy cycles hold steady")
    }
}
