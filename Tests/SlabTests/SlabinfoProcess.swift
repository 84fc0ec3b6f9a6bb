// The `slabinfo` executable run as a child process, for the tests that check what it prints
// (SlabinfoCommandTests) and the README's blocks of its output (ReadmeOutputTests); and temporary
// files for the fixtures they read.
//
// The binary is the one SwiftPM built next to this test bundle (the products directory is the
// bundle's parent); `swift test` builds it with the tests.

import Foundation
import Harness
import TestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#endif

enum SlabinfoProcess {
    /// Runs slabinfo with `arguments` (after the launcher in `prefix`, if any), with this process's
    /// environment less the variables named in `removing` and with those in `extra` set.
    static func run(_ arguments: [String], prefix: [String] = [], removing: Set<String> = [],
                    environment extra: [String: String] = [:]) throws -> SlabinfoRun {
        let executable = try builtExecutable("slabinfo")
        let environment = ProcessInfo.processInfo.environment.filter { !removing.contains($0.key) }
            .merging(extra) { $1 }.map { "\($0.key)=\($0.value)" }
        let (program, programArguments) = prefix.first.map { ($0, Array(prefix.dropFirst()) + [executable] + arguments) }
            ?? (executable, arguments)
        return SlabinfoRun(ChildProcess.run(executable: program, arguments: programArguments,
                                            environment: environment, timeout: 300, interrupt: nil))
    }
}

/// How a slabinfo run ended, with its output as text.
struct SlabinfoRun {
    let outcome: ChildOutcome
    init(_ outcome: ChildOutcome) { self.outcome = outcome }

    /// The exit status, or 128 + the signal that killed it, as a shell reports them.
    var status: Int32 {
        switch outcome.ending {
        case .exited(let s): return s
        case .signaled(let s): return 128 + s
        case .timedOut, .interrupted, .spawnFailed: return -1
        }
    }
    var stdout: String { outcome.stdoutText }
    var stderr: String { outcome.stderrText }
    var summary: String { outcome.description }
}

extension XCTestCase {
    /// A file holding `text`, removed when the test ends.
    func temporaryFile(_ text: String) throws -> String {
        let path = NSTemporaryDirectory() + "slabinfo-fixture-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        addTeardownBlock { unlink(path) }
        return path
    }
}
