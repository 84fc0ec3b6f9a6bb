// A pointer kfree, ksize or krealloc cannot vouch for stops the process with a report naming
// the pointer (and the class or block when there is one). Each case runs in a child process (this
// test binary, re-run on one test with KMALLOC_CRASH_SCENARIO naming the case); the child prints
// the addresses involved before the bad call, and the parent builds the report's first line and
// its detail line (the third, after the rule) from them and finds both, whole, on the child's
// stderr.

import Harness
import Slab
import TestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#endif

enum KmallocCrashScenario: String, CaseIterable, StoppingScenario {
    case mallocPointerBeforeSetUp, mallocPointer, interiorClassObject, interiorPageBlock
    case pageBlockFreedTwice, mappingFreedTwice, slabCacheObject, ksizeOfMallocPointer, kreallocOfInteriorPointer
    case sizedKfreeOfInteriorPointer

    static let environmentKey = "KMALLOC_CRASH_SCENARIO"
    static let runnerTest = "SlabTests.KmallocCrashScenarioRunner/test_runKmallocCrashScenario"
    static let factPrefix = "FACT "

    var cacheName: String { "\(rawValue)-cache" }

    /// Tells the parent an address it needs for the expected message.
    static func fact(_ name: String, _ pointer: UnsafeRawPointer) {
        writeStandardError("\(factPrefix)\(name)=0x\(String(UInt(bitPattern: pointer), radix: 16))\n")
    }

    func run() throws {
        switch self {
        case .mallocPointerBeforeSetUp:
            let p = malloc(64)!
            Self.fact("pointer", p)
            kfree(p)
        case .mallocPointer:
            kfree(try kmalloc(64))
            let p = malloc(64)!
            Self.fact("pointer", p)
            kfree(p)
        case .interiorClassObject:
            let p = try kmalloc(32)
            let slabBytes = Kmalloc.caches[2].layout.slabBytes
            Self.fact("pointer", p + 8)
            Self.fact("slab", UnsafeRawPointer(bitPattern: UInt(bitPattern: p) & ~UInt(slabBytes - 1))!)
            kfree(p + 8)
        case .interiorPageBlock:
            let p = try kmalloc(20_000)   // 5 pages: an order-3 block
            Self.fact("pointer", p + 4096)
            Self.fact("block", p)
            kfree(p + 4096)
        case .pageBlockFreedTwice:
            let p = try kmalloc(20_000)
            Self.fact("pointer", p)
            kfree(p)
            kfree(p)
        case .mappingFreedTwice:
            let p = try kmalloc(5 << 20)
            Self.fact("pointer", p)
            kfree(p)
            kfree(p)
        case .slabCacheObject:
            _ = try kmalloc(8)
            let cache = try SlabCache(name: cacheName, size: 48)
            let p = cache.allocate()!
            Self.fact("pointer", p)
            kfree(p)
        case .ksizeOfMallocPointer:
            _ = try kmalloc(8)
            let p = malloc(100)!
            Self.fact("pointer", p)
            _ = ksize(p)
        case .sizedKfreeOfInteriorPointer:
            let p = try kmalloc(32)
            let slabBytes = Kmalloc.caches[2].layout.slabBytes
            Self.fact("pointer", p + 8)
            Self.fact("slab", UnsafeRawPointer(bitPattern: UInt(bitPattern: p) & ~UInt(slabBytes - 1))!)
            kfree(p + 8, size: 32)
        case .kreallocOfInteriorPointer:
            let p = try kmalloc(64)
            let slabBytes = Kmalloc.caches[3].layout.slabBytes
            Self.fact("pointer", p + 16)
            Self.fact("slab", UnsafeRawPointer(bitPattern: UInt(bitPattern: p) & ~UInt(slabBytes - 1))!)
            _ = try krealloc(p + 16, 200)
        }
    }

    /// The report's first line and its detail line, given the addresses the child reported.
    func expectedReport(_ f: [String: String]) -> (first: String, detail: String) {
        let p = f["pointer"] ?? "?"
        switch self {
        case .mallocPointerBeforeSetUp, .mallocPointer, .mappingFreedTwice:
            return ("BUG kmalloc: not allocated by kmalloc", "kfree: \(p) was not allocated by kmalloc (or was freed already)")
        case .interiorClassObject, .sizedKfreeOfInteriorPointer:
            return ("BUG kmalloc-32: not the start of an object",
                    "kfree(kmalloc-32): \(p) is not the start of an object (slab \(f["slab"] ?? "?"), object size 32)")
        case .interiorPageBlock:
            return ("BUG kmalloc-large: not the start of a block",
                    "kfree(kmalloc-large): \(p) is inside the order-3 block at \(f["block"] ?? "?"), not at its start")
        case .pageBlockFreedTwice:
            return ("BUG kmalloc-large: not an allocated block",
                    "kfree(kmalloc-large): \(p) is not an allocated page-allocator block (freed already, or never allocated)")
        case .slabCacheObject:
            return ("BUG kmalloc: wrong slab cache",
                    "kfree: \(p) is an object of slab cache \(cacheName), not a kmalloc allocation "
                        + "(free it with kmem_cache_free(\(cacheName)))")
        case .ksizeOfMallocPointer:
            return ("BUG kmalloc: not allocated by kmalloc", "ksize: \(p) was not allocated by kmalloc (or was freed already)")
        case .kreallocOfInteriorPointer:
            return ("BUG kmalloc-64: not the start of an object",
                    "krealloc(kmalloc-64): \(p) is not the start of an object (slab \(f["slab"] ?? "?"), object size 64)")
        }
    }
}

/// The child's entry point. In a normal run there is no scenario and it skips.
final class KmallocCrashScenarioRunner: XCTestCase {
    func test_runKmallocCrashScenario() throws { try KmallocCrashScenario.runNamedInEnvironment() }
}

final class KmallocBadInputTests: XCTestCase {
    /// Runs the scenario in a child and checks that it stopped with exactly the expected report.
    private func expectCrash(_ scenario: KmallocCrashScenario, file: StaticString = #filePath, line: UInt = #line) throws {
        let result = try scenario.runInChild(file: file, line: line)
        var facts: [String: String] = [:]
        for l in result.stderrText.split(separator: "\n") where l.hasPrefix(KmallocCrashScenario.factPrefix) {
            let pair = l.dropFirst(KmallocCrashScenario.factPrefix.count).split(separator: "=", maxSplits: 1)
            if pair.count == 2 { facts[String(pair[0])] = String(pair[1]) }
        }
        XCTAssertNotNil(facts["pointer"], "\(scenario): the child never reached the bad call\n\(result)", file: file, line: line)
        let expected = scenario.expectedReport(facts)
        let lines = result.stderrText.split(separator: "\n").map(String.init)
        XCTAssertEqual(result.ending, .signaled(SIGABRT), "\(scenario): the child must die of SIGABRT\n\(result)", file: file, line: line)
        guard let i = lines.firstIndex(of: expected.first) else {
            return XCTFail("\(scenario): no line \"\(expected.first)\"\n\(result)", file: file, line: line)
        }
        XCTAssertEqual(lines.dropFirst(i + 2).first, expected.detail, "\(scenario): the detail line\n\(result)",
                       file: file, line: line)
    }

    func test_kfree_mallocPointer_beforeKmallocWasEverUsed_reportsIt() throws { try expectCrash(.mallocPointerBeforeSetUp) }
    func test_kfree_foreignPointer_reportsIt() throws { try expectCrash(.mallocPointer) }
    func test_kfree_interiorPointerOfAClassObject_reportsTheClassAndSlab() throws { try expectCrash(.interiorClassObject) }
    func test_kfree_interiorPointerOfAPageBlock_reportsTheBlock() throws { try expectCrash(.interiorPageBlock) }
    func test_kfree_pageBlockTwice_reportsIt() throws { try expectCrash(.pageBlockFreedTwice) }
    func test_kfree_mappingTwice_reportsIt() throws { try expectCrash(.mappingFreedTwice) }
    func test_kfree_slabCacheObject_namesItsCache() throws { try expectCrash(.slabCacheObject) }
    func test_ksize_foreignPointer_reportsIt() throws { try expectCrash(.ksizeOfMallocPointer) }
    func test_kfreeSized_interiorPointer_reportsIt() throws { try expectCrash(.sizedKfreeOfInteriorPointer) }
    func test_krealloc_interiorPointer_reportsItUnderKrealloc() throws { try expectCrash(.kreallocOfInteriorPointer) }
}
