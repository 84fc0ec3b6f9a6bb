// ExactDivider (Slab.swift): the free path's test "is this offset a multiple of the stride, and
// which object is it" without a divide instruction, against % and /. The strides are every stride
// a cache can have, taken from SlabLayout itself (every size and alignment, with and without a
// constructor, and kmalloc's classes), each with the largest objectsPerSlab * stride it comes
// with. Offsets: both sides of every object boundary for every stride; every offset of the slab
// for the strides up to 4 KiB (the most used); every offset below 2^22 (the largest slab) for a
// set of large strides. Then the domain: the identity is only claimed for offsets below 2^32, it
// does fail beyond, and its users bound the offset first: Slab.objectIndex here, the free fast
// path (FastPath.checkOwnership) in BadFreeTests' slab-header scenario.

import CSlab
@testable import Slab
import XCTest

final class ExactDividerTests: XCTestCase {
    /// Every stride a layout can have, ascending, with the largest objectsPerSlab * stride of the
    /// layouts that have it. Sizes step by max(word, alignment): the sizes in between round up to
    /// the same object size (SlabLayoutTests checks that rule), so they give the same layouts.
    /// Alignments 1, 2 and 4 give the layouts of alignment 8 for the same reason; SLAB_HWCACHE_ALIGN
    /// only raises the alignment to one of those enumerated.
    static let strides: [(stride: Int, objectsBytes: Int)] = {
        var largest: [Int: Int] = [:]
        func add(_ layout: SlabLayout) {
            largest[layout.stride] = max(largest[layout.stride] ?? 0, layout.objectsPerSlab * layout.stride)
        }
        for align in (3...12).map({ 1 << $0 }) {
            for constructor in [false, true] {
                for size in stride(from: align, through: SlabLayout.maxObjectSize, by: align) {
                    add(SlabLayout(size: size, align: align, hasConstructor: constructor)!)
                }
            }
        }
        // kmalloc's classes: kmalloc-8k is aligned to 8 KiB, beyond what a cache may ask for.
        for c in Kmalloc.sizeClasses {
            add(SlabLayout(size: c.size, align: c.align, alignLimit: SlabLayout.pageSize << SlabLayout.maxOrder)!)
        }
        return largest.keys.sorted().map { ($0, largest[$0]!) }
    }()

    /// Checks divides() and quotient() for every n in `range` (ascending, starting at a multiple
    /// of d) against a running remainder and quotient; returns the first few mismatches.
    static func sweep(_ d: Int, _ range: Range<Int>) -> [String] {
        let divider = ExactDivider(d)
        var problems: [String] = []
        var remainder = range.lowerBound % d, quotient = range.lowerBound / d
        for n in range {
            let n32 = UInt32(n)
            if divider.divides(n32) != (remainder == 0) || divider.quotient(n32) != quotient {
                problems.append("stride \(d), offset \(n): divides \(divider.divides(n32)), quotient \(divider.quotient(n32))")
                if problems.count >= 5 { break }
            }
            remainder += 1
            if remainder == d { remainder = 0; quotient += 1 }
        }
        return problems
    }

    /// Input: every layout's stride and objectsPerSlab * stride. Expected: the premises of the free
    /// path's test hold: strides are words (so d >= 2, as ExactDivider's init needs) and every
    /// offset below objectsBytes is below 2^22, well inside the identity's domain (2^32).
    func test_layouts_giveStridesAndOffsetsInsideTheIdentitysDomain() {
        let all = Self.strides
        XCTAssertGreaterThan(all.count, 130_000, "every multiple of 8 up to 1 MiB, and more")
        for s in [8, 16, 24, 4096, 8192, SlabLayout.maxObjectSize, SlabLayout.maxObjectSize + 8, SlabLayout.maxObjectSize + 4096] {
            XCTAssertTrue(all.contains { $0.stride == s }, "stride \(s) missing")
        }
        for (d, bytes) in all {
            XCTAssertTrue(d >= 8 && d % 8 == 0, "stride \(d)")
            XCTAssertLessThanOrEqual(bytes, 1 << 22, "stride \(d): objectsBytes \(bytes)")
            XCTAssertGreaterThanOrEqual(bytes, d, "stride \(d): no object")
        }
    }

    /// Input: every stride; for each object of its largest slab and one past it, the offsets 0, 1,
    /// 2, d/2, d-2 and d-1 into the object. Expected: divides() and quotient() agree with % and /.
    /// (This identity goes wrong where q * (d*c - 2^64) + r * c passes 2^64, for object q and
    /// remainder r: that grows with both, so an object's last bytes are the first to go wrong.)
    func test_divides_andQuotient_matchDivision_aroundEveryObjectBoundary_ofEveryStride() {
        var problems: [String] = []
        var checked = 0
        for (d, bytes) in Self.strides {
            let divider = ExactDivider(d)
            let edges = Set([0, 1, 2, d / 2, d - 2, d - 1])
            for q in 0...(bytes / d) {
                for r in edges {
                    let n = q * d + r
                    checked += 1
                    if divider.divides(UInt32(n)) != (r == 0) || divider.quotient(UInt32(n)) != q {
                        problems.append("stride \(d), offset \(n): divides \(divider.divides(UInt32(n))), quotient \(divider.quotient(UInt32(n)))")
                    }
                }
            }
            if problems.count > 10 { break }
        }
        XCTAssertEqual(problems, [])
        XCTAssertGreaterThan(checked, 7_000_000)
    }

    /// Input: every stride up to 4 KiB (the kmalloc classes and most caches), every offset up to its
    /// largest objectsBytes and one object beyond. Expected: agreement with % and /.
    func test_divides_andQuotient_matchDivision_atEveryOffset_ofStridesUpTo4KiB() {
        var problems: [String] = []
        for (d, bytes) in Self.strides where d <= 4096 {
            problems += Self.sweep(d, 0..<(bytes + d))
            if problems.count > 10 { break }
        }
        XCTAssertEqual(problems, [])
    }

    /// Input: large strides (powers of two and their neighbours, the largest strides, strides of
    /// a prime number of words), every offset below 2^22, the largest slab. Expected: agreement
    /// with % and /.
    func test_divides_andQuotient_matchDivision_atEveryOffsetBelow2To22_ofLargeStrides() {
        let real = Set(Self.strides.map(\.stride))
        let candidates = [4104, 8192, 8200, 65528, 65536, 65544, 8 * 131_071, 8 * 104_729,
                          SlabLayout.maxObjectSize, SlabLayout.maxObjectSize + 8, SlabLayout.maxObjectSize + 4096]
        for d in candidates { XCTAssertTrue(real.contains(d), "stride \(d) is not a layout's") }
        var problems: [String] = []
        for d in candidates {
            problems += Self.sweep(d, 0..<(1 << 22))
        }
        XCTAssertEqual(problems, [])
    }

    // MARK: The domain

    /// Where the identity stops: for a stride d that is not a power of two, c*d = 2^64 + e with
    /// 0 < e < d, and the first offset it gets wrong is n = ceil(c/e)*d - 1, a non-multiple it
    /// takes for one (below that, q*e + r*c never passes 2^64). Input: every stride. Expected:
    /// that offset lies beyond 2^32 and beyond the stride's objectsBytes; the 64-bit test the free
    /// fast path computes (offset * c <= c - 1) does take it for a multiple, with the wrong
    /// quotient, so an offset left unbounded would be misjudged; one stride lower it is right.
    /// For a power of two the test is exact modulo 2^64, so it takes every negative multiple: a
    /// pointer one stride below the first object (offset 2^64 - d) passes. Bounding the offset is
    /// what keeps both out.
    func test_identity_failsBeyondItsDomain_soItsUsersBoundTheOffset() {
        var problems: [String] = []
        var powersOfTwo = 0
        for (d, bytes) in Self.strides {
            let c = ExactDivider(d).c, d64 = UInt64(d)
            let claimsMultiple = { (n: UInt64) in n &* c <= c &- 1 }
            let quotient = { (n: UInt64) in c.multipliedFullWidth(by: n).high }
            if d & (d - 1) == 0 {
                powersOfTwo += 1
                if !claimsMultiple(0 &- d64) { problems.append("stride \(d): offset -d not taken for a multiple") }
                continue
            }
            let e = d64 &* c   // c*d - 2^64
            guard e > 0, e < d64 else { problems.append("stride \(d): c*d - 2^64 = \(e)"); continue }
            let (product, overflow) = ((c + e - 1) / e).multipliedReportingOverflow(by: d64)
            guard !overflow else { problems.append("stride \(d): no wrong offset below 2^64"); continue }
            let n = product - 1
            if n < 1 << 32 || n < UInt64(bytes) { problems.append("stride \(d): wrong at \(n), inside the domain") }
            if !claimsMultiple(n) || quotient(n) == n / d64 {
                problems.append("stride \(d): right at \(n), where the arithmetic says it goes wrong")
            }
            if claimsMultiple(n - d64) || quotient(n - d64) != (n - d64) / d64 {
                problems.append("stride \(d): wrong at \(n - d64) already")
            }
            if problems.count > 10 { break }
        }
        XCTAssertEqual(problems, [])
        XCTAssertEqual(powersOfTwo, 18, "the powers of two from 8 to 1 MiB")
    }

    /// Slab.objectIndex, the slab layer's use of the divider (SlabLayer.freeOne, checkInvariants):
    /// it bounds the offset to 0..<objectsPerSlab * stride before it truncates it to 32 bits.
    /// Input: slabs of real layouts (only the header exists: objectIndex computes, it does not
    /// read objects). Expected: every object start gives its index; bytes inside an object,
    /// offsets at and past the end, negative ones, and 2^32 plus a multiple (which
    /// truncate to an object start) give nil.
    func test_objectIndex_takesEveryObjectStart_andNoOffsetOutsideTheObjects() {
        let layouts = [SlabLayout(size: 24, align: 8)!, SlabLayout(size: 64, align: 64)!,
                       SlabLayout(size: 100, align: 8, hasConstructor: true)!, SlabLayout(size: 4096, align: 4096)!,
                       SlabLayout(size: SlabLayout.maxObjectSize, align: 4096, hasConstructor: true)!]
        let header = UnsafeMutableRawPointer.allocate(byteCount: MemoryLayout<cslab_slab>.size, alignment: 64)
        defer { header.deallocate() }
        var owner = 0
        for layout in layouts {
            let d = layout.stride, bytes = layout.objectsPerSlab * d
            // The header stands for the block too: objectIndex reads only the header.
            let slab = header.bindMemory(to: cslab_slab.self, capacity: 1)
            withUnsafeMutablePointer(to: &owner) {
                slab.carve(block: header, layout: layout, colour: layout.colours - 1, owner: $0)
            }
            let divider = ExactDivider(d)
            let objects = UnsafeRawPointer(slab.objectsStart)
            for i in 0..<layout.objectsPerSlab {
                XCTAssertEqual(slab.objectIndex(of: objects + i * d, divider: divider), i, "stride \(d), object \(i)")
                for inside in [1, 8, d / 2, d - 8, d - 1] {
                    XCTAssertNil(slab.objectIndex(of: objects + i * d + inside, divider: divider), "stride \(d), object \(i) + \(inside)")
                }
            }
            for offset in [bytes, bytes + d, -d, -8, 1 << 32, (1 << 32) + d, (1 << 32) - d, -(1 << 32)] {
                XCTAssertNil(slab.objectIndex(of: objects + offset, divider: divider), "stride \(d), offset \(offset)")
            }
        }
    }
}
