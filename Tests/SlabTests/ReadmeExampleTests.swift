// The README's snippets, kept compiling and running (update both together): "API at a glance"
// and kmalloc's.

import Slab
import TestSupport
import XCTest

final class ReadmeExampleTests: XCTestCase {
    func test_readmeApiSnippet_runsAsWritten() throws {
        var constructed = 0
        let buffers = try SlabCache(name: uniqueCacheName("conn_buffer"), size: 256, align: 64, flags: [.hwcacheAlign],
                                    constructor: { _ = $0.initializeMemory(as: UInt8.self, repeating: 0, count: 256); constructed += 1 },
                                    destructor: { _ in })
        let p = buffers.allocate()!
        XCTAssertEqual(p.load(as: UInt64.self), 0, "objects come back constructed")
        buffers.free(p)

        let fast = buffers.fastPath
        for _ in 0..<1_000 { let q = fast.allocate()!; fast.free(q) }

        buffers.reap()
        XCTAssertGreaterThan(buffers.shrink(), 0, "shrink released the slab")
        XCTAssertEqual(buffers.statistics.totalSlabs, 0)
        XCTAssertGreaterThan(constructed, 0)
        XCTAssertTrue(SlabInfo.report(buffers.statistics).contains("conn_buffer"))
        try buffers.destroy()
    }

    func test_readmeKmallocSnippet_runsAsWritten_andSaysWhatHappens() throws {
        let before = Kmalloc.statistics.liveAllocations
        let p = try kmalloc(100)              // kmalloc-128: ksize(p) == 128, aligned to 128
        XCTAssertEqual(ksize(p), 128)
        XCTAssertEqual(UInt(bitPattern: p) % 128, 0)
        let q = try kzalloc(20_000)           // 8 pages (order 3) from the page allocator, zeroed
        XCTAssertEqual(Kmalloc.origin(of: q), .pages(order: 3))
        let r = try kcalloc(count: 50, size: 24)   // throws .overflow when count x size does not fit an Int
        let s = try krealloc(p, 300)          // contents kept; a new kmalloc-512 object, p is freed
        XCTAssertEqual(Kmalloc.origin(of: s)?.description, "kmalloc-512")
        kfree(s); kfree(q); kfree(r)
        kfree(try kmalloc(0))                 // the zero-size pointer: accepted, never dereferenceable
        XCTAssertEqual(Kmalloc.statistics.liveAllocations, before)   // 0 in a program of its own
    }
}
