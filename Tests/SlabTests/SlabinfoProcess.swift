// The `slabinfo` executable run as a child process, for the tests that check what it prints
// (SlabinfoCommandTests) and the README's blocks of its output (ReadmeOutputTests); and temporary
// files for the fixtures they read.
//
// The binary is the one SwiftPM built next to this test bundle (the products directory is the
// bundle's parent); `swift test` builds it with the tests.

import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

enum SlabinfoProcess {
    struct Run {
        var status: Int32
        var stdout: String
        var stderr: String
        var summary: String { "exit \(status)\n--- stdout ---\n\(stdout)\n--- stderr ---\n\(stderr)" }
    }

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
    /// environment less the variables named in `removing`. Output goes to files, not pipes, so a
    /// large output can never block the child while we wait for it.
    static func run(_ arguments: [String], prefix: [String] = [], removing: Set<String> = []) throws -> Run {
        let executable = try binary()
        let directory = FileManager.default.temporaryDirectory
        let tag = "slabinfo-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let out = directory.appendingPathComponent(tag + ".out"), err = directory.appendingPathComponent(tag + ".err")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        defer {
            try? FileManager.default.removeItem(at: out)
            try? FileManager.default.removeItem(at: err)
        }
        let process = Process()
        if let launcher = prefix.first {
            process.executableURL = URL(fileURLWithPath: launcher)
            process.arguments = Array(prefix.dropFirst()) + [executable.path] + arguments
        } else {
            process.executableURL = executable
            process.arguments = arguments
        }
        if !removing.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.filter { !removing.contains($0.key) }
        }
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = try FileHandle(forWritingTo: err)
        try process.run()
        process.waitUntilExit()
        return Run(status: process.terminationStatus,
                   stdout: try String(contentsOf: out, encoding: .utf8),
                   stderr: try String(contentsOf: err, encoding: .utf8))
    }
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
