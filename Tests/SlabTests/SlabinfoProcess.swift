// The `slabinfo` executable run as a child process, for the tests that check what it prints
// (SlabinfoCommandTests) and the README's blocks of its output (ReadmeOutputTests); and temporary
// files for the fixtures they read.
//
// The binary is the one SwiftPM built next to this test bundle (the products directory is the
// bundle's parent); `swift test` builds it with the tests.

import Foundation
import TestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#endif

enum SlabinfoProcess {
    struct MissingBinary: Error, CustomStringConvertible {
        var path: String
        var description: String { "no slabinfo executable at \(path): build it (swift build) before these tests" }
    }

    /// The products directory: the parent of the .xctest bundle (on Linux the bundle is the test
    /// executable itself).
    static var productsDirectory: URL {
        if let bundle = Bundle.allBundles.first(where: { $0.bundlePath.hasSuffix(".xctest") }) {
            return bundle.bundleURL.deletingLastPathComponent()
        }
        return URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
    }

    static func binary() throws -> URL {
        let url = productsDirectory.appendingPathComponent("slabinfo")
        guard FileManager.default.isExecutableFile(atPath: url.path) else {
            throw MissingBinary(path: url.path)
        }
        return url
    }

    /// Runs slabinfo with `arguments` (after the launcher in `prefix`, if any), with this process's
    /// environment less the variables named in `removing`.
    static func run(_ arguments: [String], prefix: [String] = [], removing: Set<String> = []) throws -> ChildResult {
        let executable = try binary()
        let environment = removing.isEmpty ? nil : ProcessInfo.processInfo.environment.filter { !removing.contains($0.key) }
        guard let launcher = prefix.first else {
            return try ChildProcess.run(executable, arguments: arguments, environment: environment)
        }
        return try ChildProcess.run(URL(fileURLWithPath: launcher), arguments: prefix.dropFirst() + [executable.path] + arguments,
                                    environment: environment)
    }
}

extension ChildResult {
    /// The exit status, or 128 + the signal that killed it, as a shell reports them.
    var status: Int32 { exitStatus ?? 128 + (signal ?? 0) }
    var summary: String { description }
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
