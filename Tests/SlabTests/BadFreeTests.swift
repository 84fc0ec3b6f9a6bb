// Bad input stops the process with a message that names the problem: each case runs in a child
// process (this test binary, re-run on one test with SLAB_CRASH_SCENARIO naming the case), and the
// parent checks that the child died and that its stderr holds the exact words.

import Slab
import TestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The scenarios, run only in a child. Each does one bad thing; the line after it must not run.
enum CrashScenario: String, CaseIterable {
    case wrongCacheSameGeometry, wrongCacheSmallToLarge, wrongCacheLargeToSmall
    case mallocPointer, interiorPointer, interiorPointerWithCPULayer, doubleFree, allocateAfterDestroy, allocateAfterDestroyWithCPULayer
    case freeAfterDestroy, slabHeaderPointer

    static let environmentKey = "SLAB_CRASH_SCENARIO"
    static let survivedMarker = "SCENARIO SURVIVED"

    /// Names of the caches a scenario creates: "<scenario>-A" and "<scenario>-B" (fixed, so the
    /// parent knows what the message must contain; the child is a fresh process).
    var nameA: String { "\(rawValue)-A" }
    var nameB: String { "\(rawValue)-B" }

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
        case .slabHeaderPointer:
            // The start of the slab, below its first object: the offset from the objects wraps
            // to 2^64 - 64k, a multiple of the 64-byte stride modulo 2^64, so the divisibility
            // test alone would take it; only the bound on the offset stops it.
            let a = try SlabCache(name: nameA, size: 64, align: 64)
            let p = a.allocate()!
            a.free(UnsafeMutableRawPointer(bitPattern: UInt(bitPattern: p) & ~UInt(a.layout.slabBytes - 1))!)
        }
        FileHandle.standardError.write((Self.survivedMarker + "\n").data(using: .utf8)!)
    }
}

/// The child's entry point. In a normal run there is no scenario and it skips.
final class CrashScenarioRunner: XCTestCase {
    func test_runCrashScenario() throws {
        guard let name = ProcessInfo.processInfo.environment[CrashScenario.environmentKey] else {
            throw XCTSkip("runs only in a child process started by BadFreeTests")
        }
        let scenario = try XCTUnwrap(CrashScenario(rawValue: name), "unknown scenario \(name)")
        try scenario.run()
    }
}

final class BadFreeTests: XCTestCase {
    /// Runs `scenario` in a child; checks it died (by signal, or a non-zero status) before the line
    /// after the bad operation, with every one of `expected` in its stderr.
    func expectCrash(_ scenario: CrashScenario, saying expected: [String],
                     file: StaticString = #filePath, line: UInt = #line) throws -> ChildResult {
        if ChildProcess.isChild { throw XCTSkip("already a child") }
        let result = try ChildProcess.runTest("SlabTests.CrashScenarioRunner/test_runCrashScenario",
                                              environment: [CrashScenario.environmentKey: scenario.rawValue,
                                                            "SLAB_TEST_CHILD": "1"])
        XCTAssertTrue(result.diedBySignal || (result.exitStatus ?? 0) != 0,
                      "\(scenario): the child must stop\n\(result)", file: file, line: line)
        XCTAssertFalse(result.stderr.contains(CrashScenario.survivedMarker),
                       "\(scenario): the bad operation returned\n\(result)", file: file, line: line)
        for words in expected {
            XCTAssertTrue(result.stderr.contains(words), "\(scenario): stderr lacks \"\(words)\"\n\(result)",
                          file: file, line: line)
        }
        return result
    }

    func test_free_toWrongCache_reportsBothNames() throws {
        let s = CrashScenario.wrongCacheSameGeometry
        let r = try expectCrash(s, saying: ["Wrong slab cache", s.nameA, s.nameB])
        // Linux's wording: "Wrong slab cache. <cache freed to> but object is from <its cache>".
        XCTAssertTrue(r.stderr.contains("Wrong slab cache. \(s.nameB) but object"), r.stderr)
        XCTAssertTrue(r.stderr.contains("is from \(s.nameA)"), r.stderr)
    }

    func test_free_toWrongCacheWithLargerSlabs_reportsBothNames() throws {
        let s = CrashScenario.wrongCacheSmallToLarge
        let r = try expectCrash(s, saying: ["Wrong slab cache", s.nameA, s.nameB])
        XCTAssertTrue(r.stderr.contains("is from \(s.nameA)"), r.stderr)
    }

    func test_free_toWrongCacheWithSmallerSlabs_reportsBothNames() throws {
        let s = CrashScenario.wrongCacheLargeToSmall
        let r = try expectCrash(s, saying: ["Wrong slab cache", s.nameA, s.nameB])
        XCTAssertTrue(r.stderr.contains("is from \(s.nameA)"), r.stderr)
    }

    func test_free_ofMallocPointer_reportsNotFromAnySlabCache() throws {
        let s = CrashScenario.mallocPointer
        _ = try expectCrash(s, saying: ["was not allocated from any slab cache", s.nameA])
    }

    func test_free_ofInteriorPointer_reportsNotTheStartOfAnObject() throws {
        let s = CrashScenario.interiorPointer
        _ = try expectCrash(s, saying: ["is not the start of an object", s.nameA])
    }

    func test_free_ofInteriorPointer_withCPULayer_stopsAtTheFree() throws {
        let s = CrashScenario.interiorPointerWithCPULayer
        _ = try expectCrash(s, saying: ["is not the start of an object", s.nameA])
    }

    func test_free_ofTheSlabHeader_reportsNotTheStartOfAnObject() throws {
        let s = CrashScenario.slabHeaderPointer
        _ = try expectCrash(s, saying: ["is not the start of an object", s.nameA])
    }

    func test_free_twice_reportsDoubleFree() throws {
        let s = CrashScenario.doubleFree
        _ = try expectCrash(s, saying: ["double free", s.nameA])
    }

    func test_allocate_afterDestroy_reportsDestroyed() throws {
        let s = CrashScenario.allocateAfterDestroy
        _ = try expectCrash(s, saying: ["destroyed", s.nameA])
    }

    func test_allocate_afterDestroy_withCPULayer_reportsDestroyed() throws {
        let s = CrashScenario.allocateAfterDestroyWithCPULayer
        _ = try expectCrash(s, saying: ["destroyed", s.nameA])
    }

    func test_free_afterDestroy_reportsDestroyedCache() throws {
        let s = CrashScenario.freeAfterDestroy
        _ = try expectCrash(s, saying: ["freed to a destroyed cache", s.nameA])
    }
}
