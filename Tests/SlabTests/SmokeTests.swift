import XCTest
import Slab
final class SmokeTests: XCTestCase {
    func test_mycache_allocateFreeDestroy() throws {
        let c = try SlabCache(name: "smoke", size: 20, align: 8)
        XCTAssertEqual(c.objectSize, 24)
        let p = try XCTUnwrap(c.allocate())
        c.free(p)
        try c.destroy()
    }
}
