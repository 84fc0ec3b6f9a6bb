// The README's misuse table, row by row: each case runs in a child process (this test binary,
// re-run on one test with SLAB_MISUSE_SCENARIO naming the case), and the parent checks how the
// child ended and the exact first line of its stderr. A report (SlabReport.swift) must kill the
// child with SIGABRT, be printed once and be followed by nothing: the child runs with the Swift
// runtime's backtracer enabled, whose dump must not appear. A misuse the API answers with a
// thrown error ends the child normally, and the first line is the error's description.
//
// The rows of the debug letters (F, Z, P: the delayed double free, write after free, write past
// the end, write before the start) belong with the debug options and are tested with them; the
// boundary of the default check is tested here (`test_delayedDoubleFree_isBeyondTheDefaultCheck`).
// In a build with AddressSanitizer, a use after free of a cached object is ASan's to report: the
// two tests of that skip in other builds.

import Harness
import Slab
import Synchronization
import TestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#endif

enum MisuseScenario: String, CaseIterable {
    // Stopped by a report.
    case doubleFree, doubleFreeFullMagazine, doubleFreeFallback, doubleFreeNoCPUCache, doubleKfree, doubleKfreeFallback
    case doubleKfreeSized
    case mallocPointer, interiorPointer, wrongCache, freeAfterDestroy, allocateAfterDestroy
    case destroyFromConstructor, destroyFromConstructorFallback, destroyFromDestructor, destroyFromDestroysDestructor
    // Thrown errors.
    case destroyWithLiveObject, createSizeZero, createSizeNegative, createSizeHuge, createAlignThree
    case createAlignTooLarge, createEmptyName, createDuplicateName
    // Beyond the default check's reach: not detected, and the child says what happened.
    case delayedDoubleFree
    // Built with AddressSanitizer: a read of a cached object (in a magazine, free in its slab).
    case useAfterFreeInMagazine, useAfterFreeInSlab

    static let environmentKey = "SLAB_MISUSE_SCENARIO"

    /// Each scenario's cache (fixed, so the parent knows the expected line; the child is fresh).
    var cacheName: String { "misuse-\(rawValue)" }

    /// The environment the child needs besides the scenario's name.
    var environment: [String: String] {
        self == .doubleFreeFallback || self == .doubleKfreeFallback || self == .destroyFromConstructorFallback
            ? ["SLAB_CPU_LAYER": "fallback"] : [:]
    }

    /// What the parent expects: the child's first stderr line, and whether a report stops it.
    var expected: (firstLine: String, aborts: Bool) {
        let n = cacheName
        switch self {
        case .doubleFree, .doubleFreeFullMagazine, .doubleFreeFallback, .doubleFreeNoCPUCache:
            return ("BUG \(n): double free", true)
        case .doubleKfree, .doubleKfreeFallback, .doubleKfreeSized: return ("BUG kmalloc-32: double free", true)
        case .mallocPointer: return ("BUG \(n): not allocated from any slab cache", true)
        case .interiorPointer: return ("BUG \(n): not the start of an object", true)
        case .wrongCache: return ("BUG \(n): wrong slab cache", true)
        case .freeAfterDestroy: return ("BUG \(n): freed to a destroyed cache", true)
        case .allocateAfterDestroy: return ("BUG \(n): allocation from a destroyed cache", true)
        case .destroyFromConstructor, .destroyFromConstructorFallback, .destroyFromDestructor, .destroyFromDestroysDestructor:
            return ("BUG \(n): destroy from inside its own constructor or destructor", true)
        case .destroyWithLiveObject:
            return ("Slab cache still has objects: \(n) has 1 allocated; destroy refused", false)
        case .createSizeZero: return ("invalid object size 0: must be 1...1048576 bytes", false)
        case .createSizeNegative: return ("invalid object size -1: must be 1...1048576 bytes", false)
        case .createSizeHuge: return ("invalid object size 1099511627776: must be 1...1048576 bytes", false)
        case .createAlignThree: return ("invalid alignment 3: must be a power of two from 1 to 4096", false)
        case .createAlignTooLarge: return ("invalid alignment 8192: must be a power of two from 1 to 4096", false)
        case .createEmptyName: return ("invalid cache name \"\": it is empty", false)
        case .createDuplicateName: return ("a cache named \"\(n)\" already exists", false)
        case .delayedDoubleFree: return ("not detected: the next two allocations return the same object", false)
        case .useAfterFreeInMagazine, .useAfterFreeInSlab:
            return ("AddressSanitizer reports it (MisuseTests.checkAddressSanitizer)", false)
        }
    }

    func run() throws {
        let n = cacheName
        // One CPU for the whole scenario: the default check looks at this CPU's magazine, and a
        // migration between two frees would move the second to another CPU's.
        pinToCurrentCPU()
        do {
            switch self {
            case .doubleFree, .doubleFreeFallback:
                // The second free meets its object on top of a loaded magazine with room: the rseq
                // push refuses it (or, in fallback mode, the ladder sees it), the ladder reports.
                let a = try SlabCache(name: n, size: 32)
                let p = a.allocate()!
                _ = a.allocate()
                a.free(p)
                a.free(p)
            case .doubleFreeFullMagazine:
                // The first free fills the loaded magazine (the refill left it M - 1 rounds): the
                // second goes to the ladder as a push onto a full magazine, which checks first.
                let a = try SlabCache(name: n, size: 32)
                let p = a.allocate()!
                a.free(p)
                a.free(p)
            case .doubleFreeNoCPUCache:
                let a = try SlabCache(name: n, size: 32, flags: .noCPUCache)
                let p = a.allocate()!
                _ = a.allocate()
                a.free(p)
                a.free(p)
            case .doubleKfree, .doubleKfreeFallback:
                // kfree's C fast path makes the same check as the typed cache's push (the rseq
                // push, or in the fallback mode the push on the thread's slot).
                let p = try kmalloc(20)
                _ = try kmalloc(20)
                kfree(p)
                kfree(p)
            case .doubleKfreeSized:
                // kfree(p, size:) pushes through the same check, on the class the size names.
                let p = try kmalloc(20)
                _ = try kmalloc(20)
                kfree(p, size: 20)
                kfree(p, size: 20)
            case .mallocPointer:
                let a = try SlabCache(name: n, size: 32)
                _ = a.allocate()
                a.free(malloc(32)!)
            case .interiorPointer:
                let a = try SlabCache(name: n, size: 32)
                let p = a.allocate()!
                a.free(p + 8)
            case .wrongCache:
                let other = try SlabCache(name: n + "-other", size: 32), a = try SlabCache(name: n, size: 32)
                _ = a.allocate()
                a.free(other.allocate()!)
            case .freeAfterDestroy:
                let a = try SlabCache(name: n, size: 32)
                let p = a.allocate()!
                a.free(p)
                try a.destroy()
                a.free(p)
            case .allocateAfterDestroy:
                let a = try SlabCache(name: n, size: 32)
                a.free(a.allocate()!)
                try a.destroy()
                _ = a.allocate()
            case .destroyFromConstructor, .destroyFromConstructorFallback:
                // The constructor runs inside the first allocation, which goes on with the cache.
                let box = Mutex<SlabCache?>(nil)
                let a = try SlabCache(name: n, size: 32, constructor: { _ in try? box.withLock { $0 }?.destroy() })
                box.withLock { $0 = a }
                _ = a.allocate()
            case .destroyFromDestructor:
                // shrink() releases the empty slab and runs its destructors.
                let box = Mutex<SlabCache?>(nil)
                let a = try SlabCache(name: n, size: 32, destructor: { _ in try? box.withLock { $0 }?.destroy() })
                box.withLock { $0 = a }
                a.free(a.allocate()!)
                a.shrink()
            case .destroyFromDestroysDestructor:
                // destroy() runs the destructors under its drain lock: a nested destroy would wait on it.
                let box = Mutex<SlabCache?>(nil)
                let a = try SlabCache(name: n, size: 32, destructor: { _ in try? box.withLock { $0 }?.destroy() })
                box.withLock { $0 = a }
                a.free(a.allocate()!)
                try a.destroy()
            case .destroyWithLiveObject:
                let a = try SlabCache(name: n, size: 32)
                let p = a.allocate()!
                do {
                    try a.destroy()
                } catch {
                    // The cache is intact and usable: the object can be freed and the cache destroyed.
                    a.free(p)
                    try a.destroy()
                    throw error
                }
            case .createSizeZero: _ = try SlabCache(name: n, size: 0)
            case .createSizeNegative: _ = try SlabCache(name: n, size: -1)
            case .createSizeHuge: _ = try SlabCache(name: n, size: 1 << 40)
            case .createAlignThree: _ = try SlabCache(name: n, size: 32, align: 3)
            case .createAlignTooLarge: _ = try SlabCache(name: n, size: 32, align: 8192)
            case .createEmptyName: _ = try SlabCache(name: "", size: 32)
            case .createDuplicateName:
                _ = try SlabCache(name: n, size: 32)
                _ = try SlabCache(name: n, size: 64)
            case .delayedDoubleFree:
                let a = try SlabCache(name: n, size: 32)
                let p = a.allocate()!, q = a.allocate()!
                _ = a.allocate()
                a.free(p)
                a.free(q)
                a.free(p)   // p is no longer the top round: q is
                let x = a.allocate()!, y = a.allocate()!, z = a.allocate()!
                if x == p && z == p && y == q {
                    Self.say("not detected: the next two allocations return the same object")
                    return
                }
                Self.say("unexpected: \(x) \(y) \(z) after freeing \(p) twice around \(q)")
                return
            case .useAfterFreeInMagazine, .useAfterFreeInSlab:
                let a = try SlabCache(name: n, size: 32, flags: self == .useAfterFreeInSlab ? .noCPUCache : [])
                // A typed access, as a program's would be (ASan instruments it in every build;
                // a raw load at -Onone is a call into the standard library, which it does not).
                let p = a.allocate()!.bindMemory(to: UInt64.self, capacity: 4)
                _ = a.allocate()
                p[1] = 1
                a.free(p)
                Self.say("\(Self.addressFact)0x\(String(UInt(bitPattern: p + 1), radix: 16))")
                Self.say("read \(p[1])")   // ASan stops here
            }
        } catch {
            Self.say("\(error)")
            return
        }
        Self.say(survivedMarker)   // TestSupport's marker
    }

    static let addressFact = "reading "

    static func say(_ line: String) { FileHandle.standardError.write((line + "\n").data(using: .utf8)!) }

    /// Pins the thread to the CPU it is on (sched_getcpu and sched_setaffinity, which the Glibc
    /// module does not import, through dlsym).
    private func pinToCurrentCPU() {
        typealias GetCPU = @convention(c) () -> Int32
        typealias SetAffinity = @convention(c) (pid_t, Int, UnsafeRawPointer) -> Int32
        let any = UnsafeMutableRawPointer(bitPattern: 0)
        guard let get = dlsym(any, "sched_getcpu"), let set = dlsym(any, "sched_setaffinity") else { return }
        let cpu = Int(unsafeBitCast(get, to: GetCPU.self)())
        guard cpu >= 0, cpu < 1024 else { return }
        var mask = [UInt64](repeating: 0, count: 16)   // a cpu_set_t: 1024 bits
        mask[cpu / 64] = 1 << UInt64(cpu % 64)
        _ = mask.withUnsafeBytes { unsafeBitCast(set, to: SetAffinity.self)(0, $0.count, $0.baseAddress!) }
    }
}

/// The child's entry point. In a normal run there is no scenario and it skips.
final class MisuseScenarioRunner: XCTestCase {
    func test_runMisuseScenario() throws {
        guard let name = ProcessInfo.processInfo.environment[MisuseScenario.environmentKey] else {
            throw XCTSkip("runs only in a child process started by MisuseTests")
        }
        let scenario = try XCTUnwrap(MisuseScenario(rawValue: name), "unknown scenario \(name)")
        try scenario.run()
    }
}

final class MisuseTests: XCTestCase {
    /// Runs `scenario` in a child and checks the row: the signal (or a normal end), the first line,
    /// one report with a call trace that reaches the scenario, and nothing after it.
    @discardableResult
    func check(_ scenario: MisuseScenario, file: StaticString = #filePath, line: UInt = #line) throws -> ChildOutcome {
        if ChildProcess.isChild { throw XCTSkip("already a child") }
        var environment = scenario.environment
        environment[MisuseScenario.environmentKey] = scenario.rawValue
        environment["SLAB_TEST_CHILD"] = "1"
        // The Swift runtime's backtracer on: the report must still be the last thing printed.
        environment["SWIFT_BACKTRACE"] = "enable=yes,interactive=no"
        let result = try ChildProcess.runTest("SlabTests.MisuseScenarioRunner/test_runMisuseScenario",
                                              environment: environment)
        let (firstLine, aborts) = scenario.expected
        let lines = result.stderrText.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        XCTAssertEqual(lines.first, firstLine, "\(scenario): the first line\n\(result)", file: file, line: line)
        XCTAssertFalse(result.stderrText.contains(survivedMarker),
                       "\(scenario): the misuse went unnoticed\n\(result)", file: file, line: line)
        if aborts {
            XCTAssertEqual(result.ending, .signaled(SIGABRT), "\(scenario): the child must die of SIGABRT\n\(result)",
                           file: file, line: line)
            XCTAssertEqual(lines.filter { $0.hasPrefix("BUG ") }.count, 1, "\(scenario): one report\n\(result)",
                           file: file, line: line)
            XCTAssertTrue(lines.contains("Call trace:"), "\(scenario): no call trace\n\(result)", file: file, line: line)
            XCTAssertTrue(lines.contains { $0.contains("MisuseScenario.run()") },
                          "\(scenario): the trace does not reach the offending call\n\(result)", file: file, line: line)
            // The report's closing rule ends stderr: no "Fatal error", no runtime dump after it.
            XCTAssertEqual(lines.last(where: { !$0.isEmpty }), String(repeating: "=", count: 77),
                           "\(scenario): something followed the report\n\(result)", file: file, line: line)
        } else {
            XCTAssertEqual(result.ending, .exited(0), "\(scenario): a thrown error must not stop the process\n\(result)",
                           file: file, line: line)
        }
        return result
    }

    // MARK: Caught by default, stopped by a report

    func test_doubleFree_immediate_isReported() throws { try check(.doubleFree) }
    func test_doubleFree_ontoAFullMagazine_isReported() throws { try check(.doubleFreeFullMagazine) }
    func test_doubleFree_inFallbackMode_isReported() throws { try check(.doubleFreeFallback) }
    func test_doubleFree_withoutCPULayer_isReported() throws { try check(.doubleFreeNoCPUCache) }
    func test_doubleFree_ofAKmallocObject_isReported() throws { try check(.doubleKfree) }
    func test_doubleFree_ofAKmallocObject_freedWithItsSize_isReported() throws { try check(.doubleKfreeSized) }
    func test_doubleFree_ofAKmallocObject_inFallbackMode_isReported() throws { try check(.doubleKfreeFallback) }

    func test_doubleFree_reportNamesTheMagazineAndTheObject() throws {
        let r = try check(.doubleFree)
        let n = MisuseScenario.doubleFree.cacheName
        XCTAssertTrue(r.stderrText.contains("kmem_cache_free(\(n)): 0x"), r.stderrText)
        // "CPU n" in the rseq mode, "slot n" in the fallback mode (a portable build, or no rseq).
        XCTAssertTrue(r.stderrText.contains("is already free: it is the last round pushed on CPU ")
                      || r.stderrText.contains("is already free: it is the last round pushed on slot "), r.stderrText)
        XCTAssertTrue(r.stderrText.contains("\nSlab 0x"), r.stderrText)
        XCTAssertTrue(r.stderrText.contains("\nObject 0x") && r.stderrText.contains(" from the slab's first object)"), r.stderrText)
    }

    func test_mallocPointer_isReported() throws { try check(.mallocPointer) }
    func test_interiorPointer_isReported() throws { try check(.interiorPointer) }
    func test_wrongCache_isReported() throws {
        let r = try check(.wrongCache)
        let n = MisuseScenario.wrongCache.cacheName
        XCTAssertTrue(r.stderrText.contains("Wrong slab cache. \(n) but object 0x"), r.stderrText)
        XCTAssertTrue(r.stderrText.contains("is from \(n)-other"), r.stderrText)
    }
    func test_freeAfterDestroy_isReported() throws { try check(.freeAfterDestroy) }
    func test_allocateAfterDestroy_isReported() throws { try check(.allocateAfterDestroy) }
    func test_destroyFromItsOwnConstructor_isReported() throws {
        let r = try check(.destroyFromConstructor)
        XCTAssertTrue(r.stderrText.contains("kmem_cache_destroy(\(MisuseScenario.destroyFromConstructor.cacheName)): called from inside"),
                      r.stderrText)
    }
    func test_destroyFromItsOwnConstructor_inFallbackMode_isReported() throws { try check(.destroyFromConstructorFallback) }
    func test_destroyFromItsOwnDestructor_isReported() throws { try check(.destroyFromDestructor) }
    func test_destroyFromItsOwnDestructor_runByDestroy_isReported() throws { try check(.destroyFromDestroysDestructor) }

    // MARK: Thrown errors

    func test_destroyWithLiveObject_throwsAndKeepsTheCache() throws { try check(.destroyWithLiveObject) }
    func test_create_sizeZero_throws() throws { try check(.createSizeZero) }
    func test_create_sizeNegative_throws() throws { try check(.createSizeNegative) }
    func test_create_sizeHuge_throws() throws { try check(.createSizeHuge) }
    func test_create_alignThree_throws() throws { try check(.createAlignThree) }
    func test_create_alignTooLarge_throws() throws { try check(.createAlignTooLarge) }
    func test_create_emptyName_throws() throws { try check(.createEmptyName) }
    func test_create_duplicateName_throws() throws { try check(.createDuplicateName) }

    // MARK: AddressSanitizer

    /// Built with ASan, the child's read of a freed object stops with ASan's report on it.
    func checkAddressSanitizer(_ scenario: MisuseScenario, file: StaticString = #filePath, line: UInt = #line) throws {
        if ChildProcess.isChild { throw XCTSkip("already a child") }
        guard dlsym(UnsafeMutableRawPointer(bitPattern: 0), "__asan_init") != nil else {
            throw XCTSkip("only in a build with AddressSanitizer (swift test --sanitize=address): "
                          + "without it nothing marks cached objects")
        }
        let result = try ChildProcess.runTest("SlabTests.MisuseScenarioRunner/test_runMisuseScenario",
                                              environment: [MisuseScenario.environmentKey: scenario.rawValue,
                                                            "SLAB_TEST_CHILD": "1"])
        let lines = result.stderrText.split(separator: "\n").map(String.init)
        let address = try XCTUnwrap(lines.first { $0.hasPrefix(MisuseScenario.addressFact) }?
                                        .dropFirst(MisuseScenario.addressFact.count),
                                    "\(scenario): the child never freed the object\n\(result)", file: file, line: line)
        XCTAssertFalse(lines.contains { $0.hasPrefix("read ") }, "\(scenario): the read went through\n\(result)",
                       file: file, line: line)
        XCTAssertTrue(result.stderrText.contains("ERROR: AddressSanitizer: use-after-poison on address \(address)"),
                      "\(scenario): no ASan report on \(address)\n\(result)", file: file, line: line)
        XCTAssertNotEqual(result.ending, .exited(0), "\(scenario)\n\(result)", file: file, line: line)
    }

    func test_useAfterFree_ofARoundInAMagazine_isReportedByAddressSanitizer() throws {
        try checkAddressSanitizer(.useAfterFreeInMagazine)
    }
    func test_useAfterFree_ofAnObjectFreeInItsSlab_isReportedByAddressSanitizer() throws {
        try checkAddressSanitizer(.useAfterFreeInSlab)
    }

    // MARK: The default check's reach

    func test_delayedDoubleFree_isBeyondTheDefaultCheck() throws { try check(.delayedDoubleFree) }
}
