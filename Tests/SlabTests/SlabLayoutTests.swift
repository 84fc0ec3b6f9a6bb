// SlabLayout's arithmetic, swept exhaustively over sizes 1...4096 and every power-of-two alignment
// 1...4096, with and without a constructor. Each property is stated independently of the code
// under test (from the rules in SlabLayout.swift's header and Linux's object size rule).

import Slab
import XCTest

final class SlabLayoutTests: XCTestCase {
    static let word = MemoryLayout<UInt>.size
    static let alignments = (0...12).map { 1 << $0 }

    static func roundUp(_ x: Int, _ to: Int) -> Int { (x + to - 1) / to * to }

    /// Checks every stated property of one layout; returns the first violation.
    static func violations(of l: SlabLayout, size: Int, align: Int, constructor: Bool) -> String? {
        let word = Self.word
        // Object size: round to a word, then to the alignment.
        let expectedSize = roundUp(roundUp(size, word), max(align, 1))
        if l.requestedSize != size { return "requestedSize \(l.requestedSize)" }
        if l.align != align { return "align \(l.align), expected \(align)" }
        if l.objectSize != expectedSize { return "objectSize \(l.objectSize), expected \(expectedSize)" }
        // Stride: the object, or the object plus a word for the link (kept aligned) with a constructor.
        let expectedStride = constructor ? roundUp(expectedSize + word, max(align, word)) : expectedSize
        if l.stride != expectedStride { return "stride \(l.stride), expected \(expectedStride)" }
        if l.stride % align != 0 { return "stride \(l.stride) breaks alignment" }
        // The link lives in the object without a constructor, past it with one.
        if constructor {
            if l.freeLinkOffset < l.objectSize || l.freeLinkOffset + word > l.stride {
                return "freeLinkOffset \(l.freeLinkOffset) not between objectSize \(l.objectSize) and stride \(l.stride)"
            }
        } else if l.freeLinkOffset != 0 {
            return "freeLinkOffset \(l.freeLinkOffset) without a constructor"
        }
        // Slab size.
        if !(0...SlabLayout.maxOrder).contains(l.order) { return "order \(l.order)" }
        if l.slabBytes != SlabLayout.pageSize << l.order || l.pagesPerSlab != 1 << l.order { return "slab bytes/pages" }
        if l.objectsPerSlab < 1 { return "objectsPerSlab \(l.objectsPerSlab)" }
        // No header in the slab (it is in the slab table): the first object at the slab's start.
        if l.firstObjectOffset != 0 { return "first object offset \(l.firstObjectOffset), not 0" }
        // Colour + objects fit, for the largest colour.
        if l.colours < 1 { return "colours \(l.colours)" }
        let lastColourEnd = l.objectsOffset(colour: l.colours - 1) + l.objectsPerSlab * l.stride
        if lastColourEnd > l.slabBytes { return "last colour's objects end at \(lastColourEnd) > \(l.slabBytes)" }
        // objectsPerSlab is the most that fit.
        if l.firstObjectOffset + (l.objectsPerSlab + 1) * l.stride <= l.slabBytes {
            return "one more object would fit (\(l.objectsPerSlab))"
        }
        // Colours: slack / step + 1, step = max(align, cache line).
        let slack = l.slabBytes - l.firstObjectOffset - l.objectsPerSlab * l.stride
        if l.colourStep != max(align, 64) { return "colourStep \(l.colourStep)" }
        if l.colours != slack / l.colourStep + 1 { return "colours \(l.colours), expected \(slack / l.colourStep + 1)" }
        for c in [0, 1, l.colours - 1, l.colours, l.colours + 1] {
            let offset = l.objectsOffset(colour: c)
            if offset % align != 0 { return "colour \(c) offset \(offset) misaligned" }
            if offset + l.objectsPerSlab * l.stride > l.slabBytes { return "colour \(c) overflows the slab" }
        }
        if l.objectsOffset(colour: l.colours) != l.firstObjectOffset { return "colours do not wrap around" }
        if l.wastePerSlab != l.slabBytes - l.objectsPerSlab * l.stride { return "wastePerSlab \(l.wastePerSlab)" }

        // The slab-size rule: the smallest slab that wastes at most 1/32 and holds at least
        // minObjects (32) objects (any number, when even the largest slab holds fewer) when one
        // exists; else the least waste.
        func fit(_ order: Int) -> (n: Int, waste: Int) {
            let bytes = SlabLayout.pageSize << order
            let n = bytes > l.firstObjectOffset ? (bytes - l.firstObjectOffset) / l.stride : 0
            return (n, bytes - n * l.stride)
        }
        let most = fit(SlabLayout.maxOrder).n
        let acceptable = (0...SlabLayout.maxOrder).first { o in
            let (n, waste) = fit(o)
            let enough = SlabLayout.minObjects
            return n >= 1 && (n >= enough || most < enough) && waste * 32 <= SlabLayout.pageSize << o
        }
        if let acceptable {
            if l.order != acceptable { return "order \(l.order), expected the smallest acceptable \(acceptable)" }
            if l.wastePerSlab * 32 > l.slabBytes { return "waste \(l.wastePerSlab) > 1/32 of \(l.slabBytes)" }
            if most >= SlabLayout.minObjects && l.objectsPerSlab < SlabLayout.minObjects {
                return "only \(l.objectsPerSlab) objects per slab"
            }
        } else {
            let fraction = Double(l.wastePerSlab) / Double(l.slabBytes)
            for o in 0...SlabLayout.maxOrder {
                let (n, waste) = fit(o)
                if n >= 1 && Double(waste) / Double(SlabLayout.pageSize << o) < fraction {
                    return "order \(o) wastes less than the chosen order \(l.order)"
                }
            }
        }
        return nil
    }

    func sweep(constructor: Bool) {
        var failures = 0
        var layouts = 0
        for align in Self.alignments {
            for size in 1...4096 {
                guard let l = SlabLayout(size: size, align: align, hasConstructor: constructor) else {
                    XCTFail("size \(size) align \(align): no layout")
                    failures += 1
                    continue
                }
                layouts += 1
                if let v = Self.violations(of: l, size: size, align: align, constructor: constructor) {
                    failures += 1
                    if failures <= 20 { XCTFail("size \(size) align \(align) ctor \(constructor): \(v)  [\(l)]") }
                }
            }
        }
        XCTAssertEqual(layouts, 4096 * 13)
        XCTAssertEqual(failures, 0)
    }

    func test_layout_sweep_sizes1to4096_allAlignments_obeysTheRules() {
        sweep(constructor: false)
    }

    func test_layout_sweep_withConstructor_movesTheLinkPastTheObject() {
        sweep(constructor: true)
        let l = SlabLayout(size: 20, align: 8, hasConstructor: true)!
        XCTAssertEqual(l.objectSize, 24)
        XCTAssertEqual(l.freeLinkOffset, 24)
        XCTAssertEqual(l.stride, 32)
    }

    func test_layout_largeObjects_upToMaxObjectSize_fit() {
        for size in [4097, 5000, 8192, 10_000, 65_536, 100_000, 500_000, SlabLayout.maxObjectSize] {
            for align in [8, 64, 4096] {
                for ctor in [false, true] {
                    guard let l = SlabLayout(size: size, align: align, hasConstructor: ctor) else {
                        XCTFail("size \(size) align \(align): no layout"); continue
                    }
                    if let v = Self.violations(of: l, size: size, align: align, constructor: ctor) {
                        XCTFail("size \(size) align \(align) ctor \(ctor): \(v)")
                    }
                }
            }
        }
    }

    func test_layout_rejectsBadSizesAndAlignments() {
        XCTAssertNil(SlabLayout(size: 0, align: 8))
        XCTAssertNil(SlabLayout(size: -5, align: 8))
        XCTAssertNil(SlabLayout(size: SlabLayout.maxObjectSize + 1, align: 8))
        for align in [0, -1, 3, 5, 48, 8192] { XCTAssertNil(SlabLayout(size: 16, align: align), "align \(align)") }
    }

    func test_layout_20ByteObjects_overheadWithin3Percent() {
        let l = SlabLayout(size: 20, align: 8)!
        XCTAssertEqual(l.objectSize, 24)
        let ratio = Double(l.slabBytes) / Double(l.objectsPerSlab * 24)
        XCTAssertLessThanOrEqual(ratio, 1.03, "\(l.objectsPerSlab) objects in \(l.slabBytes) bytes")
        XCTAssertEqual(l.overheadRatio, ratio, accuracy: 1e-12)
    }

    func test_layout_hwcacheAlign_sweep_matchesLinuxAlignment() {
        for size in 1...4096 {
            for align in [1, 8, 16, 128] {
                guard let l = SlabLayout(size: size, align: align, hardwareCacheAlign: true) else {
                    XCTFail("size \(size)"); continue
                }
                // Linux: ralign = cache line; while size <= ralign / 2, halve; then max with align.
                var line = 64
                while size <= line / 2 { line /= 2 }
                let expected = max(align, line)
                XCTAssertEqual(l.align, expected, "size \(size) align \(align)")
                if let v = Self.violations(of: l, size: size, align: expected, constructor: false) {
                    XCTFail("size \(size) align \(align) hwcache: \(v)")
                }
            }
        }
    }
}
