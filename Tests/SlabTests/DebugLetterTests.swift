// The debug letters (SlabDebug.swift): SLAB_DEBUG's syntax, the layout they make, what each
// letter writes and finds, validate(), the report at destroy, and the misuse rows of the README,
// each run in a child process (this test binary, re-run on one test with DEBUG_SCENARIO naming
// the case) whose signal and exact first line of stderr the parent checks. The child prints the
// addresses involved on stdout (FACT lines) before the bad operation; the parent builds the
// expected line from them.

import CSlab
import Harness
import Slab
import TestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The signal a failed check dies of: every report ends in abort(), with SIGABRT's default
/// action restored first (SlabReport.swift).
let slabFatalSignal = SIGABRT

enum DebugScenario: String, CaseIterable, StoppingScenario {
    case delayedDoubleFree, writeAfterFree, writePastTheEnd, writeBeforeTheStart
    case doubleFreeSeenByRedZones, freeListLinkOverwritten, freeListCheckedBeforeTheSlabEmpties, kmallocWritePastTheEnd
    case destroyWithLiveObjects, environmentLetters, malformedEnvironment

    static let environmentKey = "DEBUG_SCENARIO"
    static let runnerTest = "SlabTests.DebugScenarioRunner/test_runDebugScenario"
    static let factPrefix = "FACT "

    var cacheName: String { "\(rawValue)-cache" }

    /// SLAB_DEBUG for the child.
    var slabDebug: String {
        switch self {
        case .delayedDoubleFree: return "F,\(cacheName)"
        case .writeAfterFree: return "P,\(cacheName)"
        case .writePastTheEnd, .writeBeforeTheStart, .doubleFreeSeenByRedZones: return "Z,\(cacheName)"
        case .freeListLinkOverwritten, .freeListCheckedBeforeTheSlabEmpties: return "F,\(cacheName)"
        case .kmallocWritePastTheEnd: return "Z,kmalloc-3*"
        case .destroyWithLiveObjects: return "U,\(cacheName)"
        case .environmentLetters: return "Z;FZ,\(cacheName),other;-,quiet*"
        case .malformedEnvironment: return "FX,\(cacheName),a b"
        }
    }

    /// Tells the parent an address (or a value) it needs, on stdout, unbuffered.
    static func fact(_ name: String, _ value: String) {
        var line = "\(factPrefix)\(name)=\(value)\n"
        line.withUTF8 { _ = write(1, $0.baseAddress, $0.count) }
    }

    static func fact(_ name: String, _ pointer: UnsafeRawPointer) { fact(name, "0x" + String(UInt(bitPattern: pointer), radix: 16)) }

    func run() throws {
        switch self {
        case .delayedDoubleFree:
            let cache = try SlabCache(name: cacheName, size: 32)
            let p = cache.allocate()!, q = cache.allocate()!
            _ = cache.allocate()!   // keeps the slab in use, so the slab layer's cheap checks pass
            Self.fact("pointer", p)
            cache.free(p)
            cache.free(q)
            cache.free(p)
        case .writeAfterFree:
            let cache = try SlabCache(name: cacheName, size: 20)
            let p = cache.allocate()!
            Self.fact("pointer", p)
            cache.free(p)
            p.storeBytes(of: 0x41, toByteOffset: 4, as: UInt8.self)
            _ = cache.allocate()
        case .writePastTheEnd:
            let cache = try SlabCache(name: cacheName, size: 20)
            let p = cache.allocate()!
            Self.fact("pointer", p)
            (p + 20).initializeMemory(as: UInt8.self, repeating: 0x41, count: 12)   // bytes 20...31: 24...31 are past it
            cache.free(p)
        case .writeBeforeTheStart:
            let cache = try SlabCache(name: cacheName, size: 20)
            let p = cache.allocate()!
            Self.fact("pointer", p)
            (p - 4).initializeMemory(as: UInt8.self, repeating: 0x41, count: 4)     // bytes -4...-1
            cache.free(p)
        case .doubleFreeSeenByRedZones:
            let cache = try SlabCache(name: cacheName, size: 32)
            let p = cache.allocate()!, q = cache.allocate()!
            _ = cache.allocate()!
            Self.fact("pointer", p)
            cache.free(p)
            cache.free(q)
            cache.free(p)
        case .freeListLinkOverwritten:
            // F without P: the free-list link lives in the free object's first word.
            let cache = try SlabCache(name: cacheName, size: 32)
            let p = cache.allocate()!, q = cache.allocate()!
            _ = cache.allocate()!
            cache.free(p)
            cache.free(q)   // the free list is now q -> p: the link sits in q's first word
            Self.fact("pointer", q)
            Self.fact("slab", UnsafeRawPointer(bitPattern: UInt(bitPattern: q) & ~UInt(cache.layout.slabBytes - 1))!)
            q.storeBytes(of: 0x4141_4141_4141_4141, as: UInt.self)
            _ = cache.allocate()   // takes q, and finds its link is no object
        case .freeListCheckedBeforeTheSlabEmpties:
            let cache = try SlabCache(name: cacheName, size: 32)
            let a = cache.allocate()!, b = cache.allocate()!, c = cache.allocate()!
            cache.free(a)
            cache.free(b)   // the free list is b -> a, and a's link (its first word) ends it
            Self.fact("pointer", a)
            Self.fact("slab", UnsafeRawPointer(bitPattern: UInt(bitPattern: a) & ~UInt(cache.layout.slabBytes - 1))!)
            a.storeBytes(of: 0x4141_4141_4141_4141, as: UInt.self)   // written after free, deep in the list
            cache.free(c)   // the slab's last object: its free list is walked before it is forgotten
        case .kmallocWritePastTheEnd:
            let p = try kmalloc(32)
            Self.fact("pointer", p)
            (p + 32).storeBytes(of: 0x41, as: UInt8.self)
            kfree(p)
        case .destroyWithLiveObjects:
            let cache = try SlabCache(name: cacheName, size: 48)
            let p = cache.allocate()!, q = cache.allocate()!
            cache.free(cache.allocate()!)
            Self.fact("pointer", p)
            Self.fact("tid", String(cslab_gettid()))
            do {
                try cache.destroy()
                Self.fact("destroyed", "yes")
            } catch {
                Self.fact("error", "\(error)")
            }
            cache.free(p)
            cache.free(q)
            try cache.destroy()
        case .environmentLetters:
            for name in [cacheName, "other", "third", "quiet-one"] {
                let cache = try SlabCache(name: name, size: 24)
                Self.fact(name, cache.flags.letters + " " + cache.mode.rawValue)
            }
        case .malformedEnvironment:
            for name in [cacheName, "second"] {
                let cache = try SlabCache(name: name, size: 24)
                Self.fact(name, cache.flags.letters)
            }
        }
    }
}

/// The child's entry point (TestSupport's StoppingScenario: it prints `survivedMarker` when the
/// scenario returns). In a normal run there is no scenario and it skips.
final class DebugScenarioRunner: XCTestCase {
    func test_runDebugScenario() throws { try DebugScenario.runNamedInEnvironment() }
}

final class DebugLetterTests: XCTestCase {
    struct Outcome {
        var result: ChildOutcome
        var facts: [String: String]
        /// stderr's lines.
        var lines: [String] { result.stderrText.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) }
    }

    /// Runs `scenario` in a child with its SLAB_DEBUG.
    func run(_ scenario: DebugScenario) throws -> Outcome {
        let result = try ChildProcess.runTest(DebugScenario.runnerTest,
                                              environment: [DebugScenario.environmentKey: scenario.rawValue,
                                                            "SLAB_DEBUG": scenario.slabDebug])
        var facts: [String: String] = [:]
        for l in result.stdoutText.split(separator: "\n") where l.hasPrefix(DebugScenario.factPrefix) {
            let pair = l.dropFirst(DebugScenario.factPrefix.count).split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            if pair.count == 2 { facts[String(pair[0])] = String(pair[1]) }
        }
        return Outcome(result: result, facts: facts)
    }

    /// Runs a scenario that must die of `slabFatalSignal` with a report whose first line is
    /// `BUG <cache>: <what>` and whose line under the rule is `detail(facts)`
    /// ("<operation>(<cache>): ..."); returns the outcome for further checks.
    @discardableResult
    func expectFatal(_ scenario: DebugScenario, what: String, detail: ([String: String]) -> String,
                     file: StaticString = #filePath, line: UInt = #line) throws -> Outcome {
        let o = try run(scenario)
        XCTAssertEqual(o.result.ending, .signaled(slabFatalSignal), "\(scenario): must die of signal \(slabFatalSignal)\n\(o.result)",
                       file: file, line: line)
        XCTAssertFalse(o.result.stderrText.contains(survivedMarker), "\(scenario): the bad operation returned\n\(o.result)",
                       file: file, line: line)
        XCTAssertNotNil(o.facts["pointer"], "\(scenario): the child never reached the bad operation\n\(o.result)", file: file, line: line)
        let expected = detail(o.facts)
        // The cache is the one the operation names: "kmem_cache_free(mycache): ...".
        let cache = expected.split(separator: "(", maxSplits: 1).last?.split(separator: ")", maxSplits: 1).first.map(String.init) ?? "?"
        XCTAssertEqual(o.lines.first, "BUG \(cache): \(what)", "\(scenario)\n\(o.result)", file: file, line: line)
        XCTAssertEqual(o.lines.dropFirst(2).first, expected, "\(scenario)\n\(o.result)", file: file, line: line)
        return o
    }

    // MARK: The README's misuse rows

    func test_row_delayedDoubleFree_F() throws {
        let s = DebugScenario.delayedDoubleFree
        let o = try expectFatal(s, what: "double free") { "kmem_cache_free(\(s.cacheName)): double free of \($0["pointer"] ?? "?")" }
        XCTAssertTrue(o.lines.contains("  the object is already free (F)"), o.result.description)
    }

    func test_row_writeAfterFree_P() throws {
        let s = DebugScenario.writeAfterFree
        let o = try expectFatal(s, what: "poison overwritten") {
            "kmem_cache_alloc(\(s.cacheName)): poison overwritten in free object \($0["pointer"] ?? "?"): offset 4: 41 instead of 6b"
        }
        // The object's bytes as found: poison, the write, poison, the end marker.
        XCTAssertTrue(o.result.stderrText.contains(": 6b 6b 6b 6b 41 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b 6b a5\n"),
                      o.result.description)
    }

    func test_row_writePastTheEnd_Z() throws {
        let s = DebugScenario.writePastTheEnd
        try expectFatal(s, what: "red zone overwritten") {
            "kmem_cache_free(\(s.cacheName)): red zone overwritten after object \($0["pointer"] ?? "?"): offset 24: "
                + "41 41 41 41 41 41 41 41 instead of cc"
        }
    }

    func test_row_writeBeforeTheStart_Z() throws {
        let s = DebugScenario.writeBeforeTheStart
        try expectFatal(s, what: "red zone overwritten") {
            "kmem_cache_free(\(s.cacheName)): red zone overwritten before object \($0["pointer"] ?? "?"): offset -4: 41 41 41 41 instead of cc"
        }
    }

    // MARK: More fatal cases

    func test_doubleFree_withRedZonesOnly_isSeenByTheirFreeState() throws {
        let s = DebugScenario.doubleFreeSeenByRedZones
        let o = try expectFatal(s, what: "double free") { "kmem_cache_free(\(s.cacheName)): double free of \($0["pointer"] ?? "?")" }
        XCTAssertTrue(o.lines.contains("  its red zones read as a free object's (Z)"), o.result.description)
    }

    func test_freeListLinkOverwrittenAfterFree_isCaughtWhenTheObjectIsTaken() throws {
        let s = DebugScenario.freeListLinkOverwritten
        try expectFatal(s, what: "free list corrupted") {
            "kmem_cache_alloc(\(s.cacheName)): free list corrupted: the free object after \($0["pointer"] ?? "?") "
                + "is 0x4141414141414141, not an object of slab \($0["slab"] ?? "?")"
        }
    }

    func test_consistencyChecks_walkTheFreeListBeforeASlabEmpties() throws {
        let s = DebugScenario.freeListCheckedBeforeTheSlabEmpties
        try expectFatal(s, what: "slab inconsistent") {
            "kmem_cache_free(\(s.cacheName)): slab \($0["slab"] ?? "?") inconsistent: "
                + "free-list entry 0x4141414141414141 is not a handed-out object"
        }
    }

    func test_kmallocClass_takesLettersFromTheEnvironment_andReportsUnderKfree() throws {
        let o = try expectFatal(.kmallocWritePastTheEnd, what: "red zone overwritten") {
            "kfree(kmalloc-32): red zone overwritten after object \($0["pointer"] ?? "?"): offset 32: 41 instead of cc"
        }
        _ = o
    }

    // MARK: Environment and destroy

    func test_destroyWithLiveObjects_printsHowManyAndWhereTheyWereAllocated_andThrows() throws {
        let s = DebugScenario.destroyWithLiveObjects
        let o = try run(s)
        XCTAssertEqual(o.result.ending, .exited(0), o.result.description)
        XCTAssertEqual(o.facts["error"], "Slab cache still has objects: \(s.cacheName) has 2 allocated; destroy refused")
        XCTAssertNil(o.facts["destroyed"])
        let lines = o.lines
        let head = try XCTUnwrap(lines.firstIndex(of: "kmem_cache_destroy(\(s.cacheName)): 2 objects remaining; destroy refused"),
                                 o.result.description)
        XCTAssertEqual(lines[head - 2], "BUG \(s.cacheName): Objects remaining in \(s.cacheName) on kmem_cache_destroy()")
        XCTAssertTrue(lines[head + 1].hasPrefix("  object \(o.facts["pointer"] ?? "?"): object 0 of slab 0x"), lines[head + 1])
        XCTAssertTrue(lines[head + 2].hasPrefix("  object          \(o.facts["pointer"] ?? "?"): "), lines[head + 2])
        XCTAssertTrue(lines[head + 3].hasPrefix("  allocated by thread \(o.facts["tid"] ?? "?") on CPU "), lines[head + 3])
        XCTAssertTrue(lines[head + 4].hasPrefix("    #0 0x"), lines[head + 4])
        XCTAssertTrue(lines.contains("  never freed"), o.result.description)
        XCTAssertEqual(lines.filter { $0.hasPrefix("  allocated by thread") }.count, 2, o.result.description)
    }

    func test_environment_blocksGiveEachCacheItsLetters_andBypassTheCPULayer() throws {
        let s = DebugScenario.environmentLetters
        let o = try run(s)
        XCTAssertEqual(o.result.ending, .exited(0), o.result.description)
        XCTAssertEqual(o.facts[s.cacheName], "FZ none")
        XCTAssertEqual(o.facts["other"], "FZ none")
        XCTAssertEqual(o.facts["third"], "Z none")
        XCTAssertTrue(o.facts["quiet-one"]?.hasPrefix(" ") == true, "no letters: \(o.facts)")
        XCTAssertNotEqual(o.facts["quiet-one"], " none", "without letters the cache keeps its CPU layer")
        XCTAssertEqual(o.result.stderrText, survivedMarker + "\n", "a well-formed value prints nothing")
    }

    func test_environment_malformedValue_isReportedOnce_andTheRestApplies() throws {
        let s = DebugScenario.malformedEnvironment
        let o = try run(s)
        XCTAssertEqual(o.result.ending, .exited(0), o.result.description)
        XCTAssertEqual(o.facts[s.cacheName], "F")
        XCTAssertEqual(o.facts["second"], "")
        let reports = o.lines.filter { $0.hasPrefix("slab: SLAB_DEBUG=") }
        XCTAssertEqual(reports, ["slab: SLAB_DEBUG=\"\(s.slabDebug)\": option 'X' unknown, skipped; "
                                 + "cache name \"a b\" has a blank (no spaces after a comma), skipped"], o.result.description)
    }

    // MARK: SLAB_DEBUG's syntax

    func test_setting_lettersForEveryCache() {
        let s = SlabDebugSetting(parsing: "FZPU")
        XCTAssertEqual(s.letters(forCache: "anything"), .debugLetters)
        XCTAssertEqual(s.problems, [])
        XCTAssertEqual(SlabDebugSetting(parsing: "zp").letters(forCache: "x"), [.redZone, .poison])
        XCTAssertEqual(SlabDebugSetting(parsing: "").letters(forCache: "x"), [])
        XCTAssertEqual(SlabDebugSetting(parsing: "F-Z").letters(forCache: "x"), .redZone)
        XCTAssertEqual(SlabDebugSetting(parsing: "-").letters(forCache: "x"), [])
    }

    func test_setting_namedCaches_prefixes_andEmptyLettersMeaningAll() {
        let s = SlabDebugSetting(parsing: "FZ,mycache,kmalloc-*")
        XCTAssertEqual(s.letters(forCache: "mycache"), [.consistencyChecks, .redZone])
        XCTAssertEqual(s.letters(forCache: "kmalloc-32"), [.consistencyChecks, .redZone])
        XCTAssertEqual(s.letters(forCache: "mycache2"), [])
        XCTAssertEqual(s.letters(forCache: "kmalloc"), [])
        XCTAssertEqual(SlabDebugSetting(parsing: ",mycache").letters(forCache: "mycache"), .debugLetters)
        XCTAssertEqual(SlabDebugSetting(parsing: "U,a,b").blocks, [.init(letters: .storeUser, names: ["a", "b"])])
    }

    func test_setting_blocks_firstNamingBlockWins_lastGlobalBlockForTheRest() {
        let s = SlabDebugSetting(parsing: "Z;P,a*;F,abc;U;")
        XCTAssertEqual(s.problems, [])
        XCTAssertEqual(s.letters(forCache: "abc"), .poison, "the first block naming it")
        XCTAssertEqual(s.letters(forCache: "b"), .storeUser, "the last global block")
    }

    func test_setting_malformedParts_areNamed_andSkipped() {
        let s = SlabDebugSetting(parsing: "FQt,,a b,c*d,ok;;Z")
        XCTAssertEqual(s.problems, ["option 'Q' unknown, skipped", "option 't' is not supported here, skipped",
                                    "empty cache name, skipped", "cache name \"a b\" has a blank (no spaces after a comma), skipped",
                                    "cache name \"c*d\" has a '*' before its end, skipped", "empty block between ';', skipped"])
        XCTAssertEqual(s.letters(forCache: "ok"), .consistencyChecks)
        XCTAssertEqual(s.letters(forCache: "other"), .redZone)
    }

    // MARK: Layout

    func test_layout_withLetters_keepsAlignment_andPlacesEachPartApart() {
        let word = MemoryLayout<UInt>.size
        let letterSets: [SlabFlags] = [.redZone, .poison, .consistencyChecks, .storeUser, .debugLetters, [.redZone, .storeUser]]
        var checked = 0
        for letters in letterSets {
            for ctor in [false, true] {
                for align in [1, 8, 16, 64, 4096] {
                    for size in [1, 7, 8, 20, 24, 63, 64, 100, 1000, 4096, 5000, 100_000] {
                        guard let l = SlabLayout(size: size, align: align, hasConstructor: ctor, debug: letters) else {
                            XCTFail("no layout for \(size)/\(align) \(letters.letters)"); continue
                        }
                        checked += 1
                        let what = "size \(size) align \(align) ctor \(ctor) \(letters.letters)"
                        XCTAssertEqual(l.debug, letters, what)
                        XCTAssertEqual(l.stride % align, 0, what)
                        XCTAssertEqual(l.firstObjectOffset % align, 0, what)
                        XCTAssertEqual(l.objectsOffset(colour: l.colours - 1) % align, 0, what)
                        XCTAssertEqual(l.firstObjectOffset, l.leftRedZone, what)
                        XCTAssertLessThanOrEqual(l.objectsOffset(colour: l.colours - 1) - l.leftRedZone + l.objectsPerSlab * l.stride,
                                                 l.slabBytes, what)
                        // The parts, as [start, end) from the object's start: all inside the stride, none overlapping.
                        var parts: [(String, Int, Int)] = [("object", 0, l.objectSize)]
                        if letters.contains(.redZone) {
                            XCTAssertGreaterThanOrEqual(l.leftRedZone, word, what)
                            XCTAssertEqual(l.leftRedZone % align, 0, what)
                            XCTAssertEqual(l.rightRedZone, word, what)
                            parts += [("left red zone", -l.leftRedZone, 0),
                                      ("right red zone", l.objectSize, l.objectSize + l.rightRedZone)]
                        } else {
                            XCTAssertEqual(l.leftRedZone + l.rightRedZone, 0, what)
                        }
                        if ctor || letters.contains(.poison) {
                            parts.append(("link", l.freeLinkOffset, l.freeLinkOffset + word))
                        } else {
                            XCTAssertEqual(l.freeLinkOffset, 0, what)
                        }
                        XCTAssertEqual(l.stateOffset != nil, letters.contains(.consistencyChecks), what)
                        if let s = l.stateOffset { parts.append(("state", s, s + word)) }
                        XCTAssertEqual(l.trackOffset != nil, letters.contains(.storeUser), what)
                        if let t = l.trackOffset { parts.append(("tracks", t, t + 2 * MemoryLayout<SlabTrack>.size)) }
                        XCTAssertEqual(l.poisonsObjects, letters.contains(.poison) && !ctor, what)
                        for (name, start, end) in parts {
                            XCTAssertGreaterThanOrEqual(start, -l.leftRedZone, "\(what): \(name)")
                            XCTAssertLessThanOrEqual(end, l.stride - l.leftRedZone, "\(what): \(name)")
                            for (other, s2, e2) in parts where other != name {
                                XCTAssertFalse(start < e2 && s2 < end, "\(what): \(name) overlaps \(other)")
                            }
                        }
                    }
                }
            }
        }
        XCTAssertEqual(checked, letterSets.count * 2 * 5 * 12)
        // Without letters nothing changes.
        XCTAssertEqual(SlabLayout(size: 20, align: 8, debug: [.hwcacheAlign]), SlabLayout(size: 20, align: 8))
        XCTAssertEqual(SlabLayout(size: 20, align: 8)?.stride, 24)
    }

    // MARK: What the letters write and find, in this process

    func makeCache(_ base: String, size: Int = 20, align: Int = 8, flags: SlabFlags,
                   constructor: ((UnsafeMutableRawPointer) -> Void)? = nil) throws -> SlabCache {
        try SlabCache(name: uniqueCacheName(base), size: size, align: align, flags: flags, constructor: constructor)
    }

    func bytes(_ p: UnsafeMutableRawPointer, _ range: Range<Int>) -> [UInt8] {
        range.map { p.load(fromByteOffset: $0, as: UInt8.self) }
    }

    func test_debugCache_hasNoCPULayer_andShowsItsLetters() throws {
        let cache = try makeCache("letters", flags: [.redZone, .storeUser])
        XCTAssertEqual(cache.mode, .none)
        XCTAssertEqual(cache.magazineCapacity, 0)
        XCTAssertEqual(cache.flags.letters, "ZU")
        XCTAssertEqual(cache.statistics.debugLetters, "ZU")
        let report = SlabInfo.report(cache.statistics)
        XCTAssertTrue(report.split(separator: "\n")[0].hasSuffix(", debug ZU"), report)
        // The slabinfo 2.1 line keeps its format: the same fields as any cache's.
        let line = SlabInfo.line(cache.statistics)
        XCTAssertEqual(line.split(separator: " ", omittingEmptySubsequences: true).count, 16, line)
        XCTAssertFalse(line.contains("ZU"), line)
        try cache.destroy()
        let plain = try makeCache("plain", flags: [])
        XCTAssertEqual(plain.statistics.debugLetters, "")
        XCTAssertFalse(SlabInfo.report(plain.statistics).contains("debug"))
        XCTAssertThrowsError(try SlabCache(name: uniqueCacheName("bad"), size: 8, flags: SlabFlags(rawValue: 0x200)))
        try plain.destroy()
    }

    func test_redZone_holdsCCWhileAllocated_BBWhileFree_andKeepsAlignment() throws {
        let cache = try makeCache("rz", size: 20, align: 64, flags: .redZone)
        XCTAssertEqual(cache.layout.leftRedZone, 64)
        let p = cache.allocate()!, keep = cache.allocate()!
        XCTAssertEqual(UInt(bitPattern: p) % 64, 0)
        XCTAssertEqual(bytes(p, -64..<0), Array(repeating: 0xcc, count: 64))
        XCTAssertEqual(bytes(p, 64..<72), Array(repeating: 0xcc, count: 8))
        cache.free(p)
        XCTAssertEqual(bytes(p, -64..<0), Array(repeating: 0xbb, count: 64))
        XCTAssertEqual(bytes(p, 64..<72), Array(repeating: 0xbb, count: 8))
        cache.free(keep)
        XCTAssertTrue(cache.validate().isClean)
        try cache.destroy()
    }

    func test_poison_fillsFreeObjects_6bThenA5_andKeepsTheLinkOutside() throws {
        let cache = try makeCache("poison", size: 20, flags: .poison)
        let p = cache.allocate()!, q = cache.allocate()!, keep = cache.allocate()!
        cache.free(p)
        cache.free(q)   // q's link (to p) lies past the object, not in its bytes
        for o in [p, q] { XCTAssertEqual(bytes(o, 0..<24), Array(repeating: 0x6b, count: 23) + [0xa5]) }
        XCTAssertTrue(cache.validate().isClean)
        XCTAssertEqual(cache.allocate(), q)
        XCTAssertEqual(cache.allocate(), p)
        for o in [p, q, keep] { cache.free(o) }
        try cache.destroy()
    }

    func test_poison_leavesConstructedObjectsAlone() throws {
        let constructed = Counter()
        let cache = try makeCache("poison-ctor", size: 32, flags: .debugLetters, constructor: { p in
            p.initializeMemory(as: UInt8.self, repeating: 0x5c, count: 32)
            constructed.add()
        })
        XCTAssertFalse(cache.layout.poisonsObjects)
        let p = cache.allocate()!
        cache.free(p)
        XCTAssertEqual(bytes(p, 0..<32), Array(repeating: 0x5c, count: 32), "a free constructed object keeps its state")
        XCTAssertEqual(cache.allocate(), p)
        XCTAssertEqual(constructed.value, cache.layout.objectsPerSlab, "constructed once per object, not per allocation")
        XCTAssertTrue(SlabInfo.report(cache.statistics).contains("debug FZPU (objects not poisoned: constructor)"))
        cache.free(p)
        XCTAssertTrue(cache.validate().isClean)
        try cache.destroy()
    }

    func test_validate_findsARedZoneWrittenPastTheEnd_withOffsetAndBytes() throws {
        let cache = try makeCache("validate-rz", size: 20, flags: [.redZone, .storeUser])
        let p = cache.allocate()!
        XCTAssertTrue(cache.validate().isClean)
        (p + 20).initializeMemory(as: UInt8.self, repeating: 0x41, count: 4)   // the object's own bytes
        XCTAssertTrue(cache.validate().isClean, "an object is all of its 24 bytes")
        (p + 25).initializeMemory(as: UInt8.self, repeating: 0x41, count: 3)
        let v = cache.validate()
        XCTAssertEqual(v.defects.count, 1, v.description)
        let d = try XCTUnwrap(v.defects.first)
        XCTAssertEqual(d.kind, .redZone)
        XCTAssertEqual(d.object, UInt(bitPattern: p))
        XCTAssertEqual(d.offset, 25)
        XCTAssertEqual(d.bytes, [0x41, 0x41, 0x41])
        XCTAssertEqual(d.expected, 0xcc)
        XCTAssertEqual(d.summary, "red zone overwritten after object \(hexString(p)): offset 25: 41 41 41 instead of cc")
        XCTAssertTrue(d.details.contains { $0.hasPrefix("  allocated by thread \(cslab_gettid()) on CPU ") }, d.details.joined(separator: "\n"))
        XCTAssertTrue(d.details.contains("  never freed"), d.details.joined(separator: "\n"))
        (p + 25).initializeMemory(as: UInt8.self, repeating: 0xcc, count: 3)   // repaired, so the free passes
        cache.free(p)
        XCTAssertTrue(cache.validate().isClean)
        try cache.destroy()
    }

    func test_validate_findsAWriteBeforeTheStart_andAWriteAfterFree() throws {
        let cache = try makeCache("validate-both", size: 40, flags: [.redZone, .poison])
        let p = cache.allocate()!, q = cache.allocate()!, keep = cache.allocate()!
        cache.free(q)
        (p - 1).storeBytes(of: 0x00, as: UInt8.self)
        (q + 8).storeBytes(of: 0x1234, as: UInt16.self)
        let v = cache.validate()
        XCTAssertEqual(v.defects.map(\.kind), [.redZone, .poison], v.description)
        XCTAssertEqual(v.defects.map(\.offset), [-1, 8])
        XCTAssertEqual(v.defects[1].bytes, [0x34, 0x12])
        XCTAssertEqual(v.defects[1].expected, 0x6b)
        XCTAssertEqual(v.objects, cache.layout.objectsPerSlab)
        (p - 1).storeBytes(of: 0xcc, as: UInt8.self)
        (q + 8).storeBytes(of: 0x6b6b, as: UInt16.self)
        XCTAssertTrue(cache.validate().isClean)
        cache.free(p)
        cache.free(keep)
        try cache.destroy()
    }

    func test_validate_findsAnObjectWhoseStateDisagreesWithItsSlab() throws {
        let cache = try makeCache("validate-state", size: 24, flags: .consistencyChecks)
        let p = cache.allocate()!
        let state = try XCTUnwrap(cache.layout.stateOffset)
        let saved = (p + state).load(as: UInt.self)
        (p + state).storeBytes(of: 7, as: UInt.self)
        let v = cache.validate()
        XCTAssertEqual(v.defects.map(\.kind), [.objectState], v.description)
        XCTAssertEqual(v.defects.first?.summary,
                       "object state corrupted: \(hexString(p)) is allocated but its state word reads neither allocated nor free (0x7)")
        (p + state).storeBytes(of: saved, as: UInt.self)
        cache.free(p)
        XCTAssertTrue(cache.validate().isClean)
        try cache.destroy()
    }

    func test_validate_withoutLetters_checksSlabsOnly_andFindsACorruptFreeList() throws {
        let cache = try makeCache("validate-plain", size: 32, flags: .noCPUCache)
        let p = cache.allocate()!, q = cache.allocate()!, keep = cache.allocate()!
        cache.free(p)   // on the free list (not the newest bumped object)
        let v = cache.validate()
        XCTAssertTrue(v.isClean, v.description)
        XCTAssertEqual(v.slabs, 1)
        XCTAssertEqual(v.objects, 0, "no letters: no object is checked one by one")
        // Its link now points inside an object. (Through CSlab's uninstrumented store: the object
        // is free, and an AddressSanitizer build would report this write, as it should.)
        cslab_store_link(p, p + 8)
        let bad = cache.validate()
        XCTAssertEqual(bad.defects.map(\.kind), [.slab], bad.description)
        XCTAssertTrue(bad.defects[0].summary.hasSuffix("is not a handed-out object"), bad.description)
        cslab_store_link(p, nil)
        XCTAssertTrue(cache.validate().isClean)
        cache.free(q)
        cache.free(keep)
        try cache.destroy()
    }

    func test_everyLetter_underThreads_staysValid_andCountsAddUp() throws {
        let cache = try makeCache("threads", size: 48, flags: .debugLetters)
        let rounds = scaled(2_000)
        let failures = Counter()
        runThreads(4) { t in
            var held: [UnsafeMutableRawPointer] = []
            for i in 0..<rounds {
                let p = cache.allocate()!
                Stamp.write(p, size: 48, owner: t, sequence: UInt64(i))
                held.append(p)
                if held.count > 20 || i % 3 == 0 {
                    let victim = held.remove(at: (i * 7) % held.count)
                    if Stamp.check(victim, size: 48) != nil { failures.add() }
                    cache.free(victim)
                }
            }
            for p in held { cache.free(p) }
        }
        XCTAssertEqual(failures.value, 0)
        let v = cache.validate()
        XCTAssertTrue(v.isClean, v.description)
        XCTAssertEqual(cache.checkInvariants(), [])
        XCTAssertEqual(cache.statistics.activeObjects, 0)
        try cache.destroy()
    }
}

private func hexString(_ p: UnsafeRawPointer) -> String { "0x" + String(UInt(bitPattern: p), radix: 16) }
