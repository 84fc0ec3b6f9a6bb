// Running the built `bench` binary from a test, in a folder of the test's, with its exit status,
// stdout and stderr, and Ctrl-C (SIGINT) when asked. (Foundation's Process, not Harness's
// ChildProcess: the bench must run in the test's folder, and ChildProcess cannot change a child's.)
import Foundation
import TestSupport
import XCTest

struct BenchRun {
    var status: Int32
    var stdout: String
    var stderr: String
    var seconds: Double
}

/// Bytes handed from a reader thread to the test thread.
final class LockedData: @unchecked Sendable {
    private let lock = NSLock()
    private var data: Data?
    func set(_ d: Data) { lock.lock(); data = d; lock.unlock() }
    func get() -> Data? { lock.lock(); defer { lock.unlock() }; return data }
}

extension XCTestCase {
    /// Runs the bench binary as a child in `directory` and waits (at most `limit` seconds).
    func runBench(_ arguments: [String], in directory: String, limit: Double = 120,
                  sigintAfter: Double? = nil) throws -> BenchRun {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try builtExecutable("bench"))
        p.arguments = arguments
        p.currentDirectoryURL = URL(fileURLWithPath: directory)
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        let t0 = Date()
        try p.run()
        // Read both pipes concurrently so neither can fill and block the child.
        let errData = LockedData()
        let errThread = Thread { errData.set(err.fileHandleForReading.readDataToEndOfFile()) }
        errThread.start()
        if let after = sigintAfter {
            Thread.sleep(forTimeInterval: after)
            kill(p.processIdentifier, SIGINT)
        }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        while p.isRunning {
            if Date().timeIntervalSince(t0) > limit {
                p.terminate()
                XCTFail("bench \(arguments) ran longer than \(limit) s")
                break
            }
            Thread.sleep(forTimeInterval: 0.02)
        }
        p.waitUntilExit()
        while errData.get() == nil { Thread.sleep(forTimeInterval: 0.01) }
        return BenchRun(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                        stderr: String(decoding: errData.get()!, as: UTF8.self), seconds: Date().timeIntervalSince(t0))
    }
}
