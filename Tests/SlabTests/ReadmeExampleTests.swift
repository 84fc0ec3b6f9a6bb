// The README's "API at a glance" snippet, kept compiling and running (update both together).

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
}
