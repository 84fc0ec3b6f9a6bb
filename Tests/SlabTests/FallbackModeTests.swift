// The CPU layer's mode is chosen once per process, at start-up: rseq when glibc registered it,
// the CAS-owned fallback otherwise. These tests re-run whole suites of this binary in a child
// process with rseq disabled (GLIBC_TUNABLES=glibc.pthread.rseq=0, as under valgrind), so that
// every behaviour tested in rseq mode is tested in fallback mode too. (The stress tests have their
// own fallback children in StressTests.)

import Harness
import TestSupport
import XCTest

final class FallbackModeTests: XCTestCase {
    /// KmallocTests too: without rseq kmalloc's C fast paths stay closed and every call takes the
    /// slow paths, through the classes' own fallback ladders.
    static let suites = ["SlabTests.SlabCacheTests", "SlabTests.ConstructorTests",
                         "SlabTests.ShrinkAndReapTests", "SlabTests.FaultInjectionTests", "SlabTests.KmallocTests"]

    func test_coreSuites_passInFallbackMode_withRseqDisabledByGlibcTunable() throws {
        let result = try ChildProcess.runTest(Self.suites.joined(separator: ","),
                                              environment: ["GLIBC_TUNABLES": "glibc.pthread.rseq=0"])
        XCTAssertTrue(result.succeeded, "\(result)")
        let output = result.stdoutText + result.stderrText
        // The last summary line covers every suite the child ran.
        let summaries = output.split(separator: "\n").filter { $0.contains("Executed ") }
        let last = try XCTUnwrap(summaries.last, "no XCTest summary in the child's output\n\(result)")
        XCTAssertTrue(last.contains(" 0 failures"), "\(last)\n\(result)")  // "with 0 failures" or "with N tests skipped and 0 failures"
        let executed = Int(last.split(separator: " ").dropFirst().first { Int($0) != nil } ?? "") ?? 0
        XCTAssertGreaterThanOrEqual(executed, 30, "the child ran the five suites: \(last)")
        // SlabCacheTests' mode test asserts .fallback under this tunable and prints the mode.
        XCTAssertTrue(output.contains("mode fallback"), "the child's caches ran in fallback mode\n\(result)")
    }
}
