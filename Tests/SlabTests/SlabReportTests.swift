// The misuse report's text, in-process (MisuseTests watches whole reports stop child processes):
// the block's shape, where it places an object, and the call trace's names.

@testable import Slab
import TestSupport
import XCTest

final class SlabReportTests: XCTestCase {
    func test_text_hasTheKernelShape_andLocatesAnInteriorPointer() throws {
        let name = uniqueCacheName("report")
        let cache = try SlabCache(name: name, size: 32, flags: .noCPUCache)
        defer { try? cache.destroy() }
        let first = cache.allocate()!, second = cache.allocate()!
        defer { cache.free(first); cache.free(second) }
        let lines = SlabReport.text("red zone overwritten", cache: name, object: second + 8,
                                    details: ["detail one", "detail two"]).split(separator: "\n").map(String.init)
        XCTAssertEqual(Array(lines.prefix(4)), ["BUG \(name): red zone overwritten", String(repeating: "-", count: 77),
                                               "detail one", "detail two"])
        let stride = cache.layout.stride
        let index = (second - first) / stride   // the second object handed out: 1 (no CPU layer reorders them)
        XCTAssertEqual(index, 1)
        let objects = UInt(bitPattern: first)
        let slab = objects & ~UInt(cache.layout.slabBytes - 1)
        XCTAssertEqual(lines[4], "Slab 0x\(String(slab, radix: 16)) of \(name): \(cache.layout.objectsPerSlab) objects of 32 bytes "
                       + "(stride \(stride)) from 0x\(String(objects, radix: 16)), 2 out of it (allocated, or in magazines)")
        XCTAssertEqual(lines[5], "Object 0x\(String(UInt(bitPattern: second + 8), radix: 16)): 8 bytes into object 1 "
                       + "(offset 0x\(String(stride + 8, radix: 16)) from the slab's first object)")
        XCTAssertEqual(lines[6], "Call trace:")
        // The report's own frames are left out; this test's frame is named, demangled and shortened.
        XCTAssertFalse(lines.contains { $0.contains("SlabReport.") }, lines.joined(separator: "\n"))
        XCTAssertTrue(lines.contains {
            $0.contains("SlabTests.SlabReportTests.test_text_hasTheKernelShape_andLocatesAnInteriorPointer()+0x")
        }, lines.joined(separator: "\n"))
        XCTAssertEqual(lines.last, String(repeating: "=", count: 77))
    }

    func test_text_saysWhenAPointerIsInNoCache() {
        let p = UnsafeMutableRawPointer.allocate(byteCount: 16, alignment: 16)
        defer { p.deallocate() }
        let lines = SlabReport.text("not allocated from any slab cache", cache: "x", object: p, details: [])
            .split(separator: "\n").map(String.init)
        XCTAssertEqual(lines[2], "Object 0x\(String(UInt(bitPattern: p), radix: 16)): in no live slab cache's address range")
    }

    func test_simplified_keepsNamesAndLabels_dropsTypesAndStatic() {
        XCTAssertEqual(SlabReport.simplified("Slab.SlabCache.diagnoseBadPointer(_: Swift.UnsafeMutableRawPointer, operation: Swift.String) -> Swift.Never"),
                       "Slab.SlabCache.diagnoseBadPointer(_:operation:)")
        XCTAssertEqual(SlabReport.simplified("static Slab.Kmalloc.usableSize(_: Swift.UnsafeRawPointer, operation: Swift.String) -> Swift.Int"),
                       "Slab.Kmalloc.usableSize(_:operation:)")
        XCTAssertEqual(SlabReport.simplified("report #1 (Swift.String, Swift.String) -> Swift.Never in Slab.SlabCache.diagnoseBadPointer(_: Swift.UnsafeMutableRawPointer, operation: Swift.String) -> Swift.Never"),
                       "report #1 in Slab.SlabCache.diagnoseBadPointer(_:operation:)")
        XCTAssertEqual(SlabReport.simplified("Swift.Array.withUnsafeMutableBufferPointer<A, B where B1: Swift.Error>((inout Swift.UnsafeMutableBufferPointer<A>) throws(B1) -> A1) throws(B1) -> A1"),
                       "Swift.Array.withUnsafeMutableBufferPointer(_:)")
        XCTAssertEqual(SlabReport.simplified("closure #1 (XCTest.XCTestCase) throws -> () in XCTest.(test in _3BE257A46ADB477C7BF2D39968B39F9D)<A where A: XCTest.XCTestCase>((A) -> () throws -> ()) -> (XCTest.XCTestCase) throws -> ()"),
                       "closure #1 in XCTest.test(_:)")
        XCTAssertEqual(SlabReport.simplified("main"), "main")
    }
}
