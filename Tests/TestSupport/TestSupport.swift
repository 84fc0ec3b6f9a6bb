// TestSupport: what the tests share. Threads (runThreads), the seeded generator (SplitMix64) and
// child processes (ChildProcess) are the Harness module's, which the bench runs on too.
//
//   names        unique cache names (the registry is process-wide; tests must not collide)
//   scale        SLAB_STRESS_SCALE, the multiplier for stress loops (default 1)
//   memory       resident set size from /proc/self/smaps_rollup (or /proc/self/statm)
//   children     re-running this test binary as a child process, to run one test in another
//                CPU-layer mode or to watch a bad call stop the process with the right message;
//                the package's executables, built beside the test bundle
//   stamps       writing and checking an owner + sequence + checksum pattern over a whole object
//   LiveSet      a sharded, locked set of addresses: proves no object is handed out twice
//   counters     relaxed atomic counters (through the CSlab shim)
//   folders      a temporary folder per test, removed after it

import CSlab
import Foundation
import Harness
import Slab
import Synchronization
import XCTest

#if canImport(Glibc)
import Glibc
#endif

// MARK: Names

private let nameCounter = Atomic<Int>(0)

/// A cache name no other test uses: "t-<base>-<n>" (valid: printable ASCII, no spaces, <= 64 bytes).
public func uniqueCacheName(_ base: String) -> String {
    let n = nameCounter.add(1, ordering: .relaxed).newValue
    return "t-\(base.prefix(40))-\(getpid())-\(n)"
}

// MARK: Scale

/// The stress multiplier from SLAB_STRESS_SCALE (a positive number; default 1). The default keeps
/// the whole SlabTests suite well inside two minutes in a debug build on two cores.
public var stressScale: Double {
    guard let text = ProcessInfo.processInfo.environment["SLAB_STRESS_SCALE"], let v = Double(text), v > 0 else {
        return 1
    }
    return v
}

/// `base` scaled by SLAB_STRESS_SCALE, at least 1.
public func scaled(_ base: Int) -> Int { max(1, Int(Double(base) * stressScale)) }

// MARK: Memory

public enum ResidentMemory {
    /// True when ThreadSanitizer is in the process: its shadow memory grows the resident set
    /// along with the program's, so RSS-based assertions are meaningless there and skip.
    public static let isDistortedBySanitizer: Bool = {
        dlsym(UnsafeMutableRawPointer(bitPattern: 0), "__tsan_init") != nil
            || dlsym(UnsafeMutableRawPointer(bitPattern: 0), "__asan_init") != nil
    }()

    /// Skips the calling test when a sanitizer distorts RSS.
    public static func skipIfDistorted() throws {
        if isDistortedBySanitizer {
            throw XCTSkip("RSS is not measurable under a sanitizer (its shadow memory is resident too)")
        }
    }

    /// The process's resident set in bytes: the Rss line of /proc/self/smaps_rollup, or else the
    /// second field of /proc/self/statm times the page size. nil if neither can be read.
    public static func bytes() -> Int? {
        if let text = try? String(contentsOfFile: "/proc/self/smaps_rollup", encoding: .utf8) {
            for line in text.split(separator: "\n") where line.hasPrefix("Rss:") {
                let fields = line.split(separator: " ", omittingEmptySubsequences: true)
                if fields.count >= 2, let kb = Int(fields[1]) { return kb * 1024 }
            }
        }
        if let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) {
            let fields = text.split(separator: " ")
            if fields.count >= 2, let pages = Int(fields[1]) { return pages * Int(sysconf(Int32(_SC_PAGESIZE))) }
        }
        return nil
    }

    /// The resident bytes of [start, start + length), page by page (mincore): what one mapping
    /// holds, unlike the process's RSS, which also moves with whatever else the process does.
    /// nil if mincore refuses the range.
    public static func bytes(in start: UInt, length: Int) -> Int? {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let first = start & ~UInt(page - 1)
        let span = Int(start + UInt(length) - first)
        let pages = (span + page - 1) / page
        var vector = [UInt8](repeating: 0, count: pages)
        guard mincore(UnsafeMutableRawPointer(bitPattern: first), span, &vector) == 0 else { return nil }
        return vector.reduce(0) { $0 + Int($1 & 1) } * page
    }
}

// MARK: Child processes

extension ChildProcess {
    /// True in a child started by `runTest` (it sets SLAB_TEST_CHILD): the parent's test is the
    /// one checking the result, so the child does the work and reports through its exit status.
    public static var isChild: Bool { ProcessInfo.processInfo.environment["SLAB_TEST_CHILD"] != nil }

    /// Runs XCTest tests of this binary (`"SlabTests.Class/test_method"`, or suites separated by
    /// commas) in a child process with `environment` added to ours. The Swift backtracer is turned
    /// off in the child, so that a deliberate crash ends at once and stderr holds only our message
    /// and the fatal error. Skips the calling test when it runs in a child already.
    public static func runTest(_ specifier: String, environment extra: [String: String],
                               timeout: Double = 300) throws -> ChildOutcome {
        if isChild { throw XCTSkip("already a child") }
        var env = ProcessInfo.processInfo.environment
        env["SWIFT_BACKTRACE"] = "enable=no"
        env["SLAB_TEST_CHILD"] = "1"
        for (k, v) in extra { env[k] = v }
        return run(executable: currentExecutable, arguments: [specifier],
                   environment: env.map { "\($0.key)=\($0.value)" }, timeout: timeout, interrupt: nil)
    }
}

extension ChildProcess {
    /// True when ThreadSanitizer is in the process, whose runtime does not support the forked
    /// children of `forkedFailure` (a child of a multithreaded process hangs in the Swift runtime).
    public static let isThreadSanitized = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "__tsan_init") != nil

    /// Skips the calling test, saying `why`, when ThreadSanitizer is in the process.
    public static func skipIfThreadSanitized(_ why: String) throws {
        if isThreadSanitized { throw XCTSkip(why) }
    }

    /// Runs `body` in a forked child of this process, which exits with its result, for a case
    /// whose failure may be a hang: the child's alarm ends it after `deadline` seconds, and the
    /// parent kills it ten seconds after that if it still lives. Returns a description of how the
    /// child ended, or nil when it exited with 0. Only library and C calls on values made before
    /// the fork belong in `body`.
    public static func forkedFailure(deadline: UInt32, _ body: () -> Int32) -> String? {
        let pid = fork()
        if pid == 0 {
            alarm(deadline)
            _exit(body())
        }
        guard pid > 0 else { return "fork() failed (errno \(errno))" }
        var status: Int32 = 0
        var waited = 0.0
        while waitpid(pid, &status, WNOHANG) == 0 {
            if waited > Double(deadline) + 10 { kill(pid, SIGKILL) }
            usleep(5000)
            waited += 0.005
        }
        let signal = status & 0x7f
        return status == 0 ? nil : signal != 0 ? "killed by signal \(signal)" + (signal == SIGALRM ? " (it hung)" : "")
            : "exit status \((status >> 8) & 0xff)"
    }

    /// Prints "cpu layer mode <mode>" (a fresh cache's), for `runPassingTestInFallbackMode` to
    /// check that the test ran in the mode it asked for.
    public static func printCPULayerMode() throws {
        let probe = try SlabCache(name: uniqueCacheName("mode-probe"), size: 8)
        print("cpu layer mode \(probe.mode.rawValue)")
        try probe.destroy()
    }

    /// Runs one test of this binary in a child (`runTest`) and asserts that it ran and passed:
    /// exit status 0 and XCTest's own count of one test with no failures (a misspelt name runs
    /// nothing and exits 0). Returns the outcome for further checks.
    @discardableResult
    public static func runPassingTest(_ specifier: String, environment extra: [String: String],
                                      timeout: Double = 300,
                                      file: StaticString = #filePath, line: UInt = #line) throws -> ChildOutcome {
        let result = try runTest(specifier, environment: extra, timeout: timeout)
        XCTAssertTrue(result.succeeded, "\(result)", file: file, line: line)
        XCTAssertTrue((result.stdoutText + result.stderrText).contains("Executed 1 test, with 0 failures"),
                      "the child ran exactly the one test and it passed:\n\(result)", file: file, line: line)
        return result
    }

    /// `runPassingTest` with rseq disabled (glibc.pthread.rseq=0, plus `extra`), so that the slab
    /// runs its fallback mode, and a check that it did: the test prints "cpu layer mode fallback"
    /// (printCPULayerMode, or a line of its own).
    @discardableResult
    public static func runPassingTestInFallbackMode(_ specifier: String, environment extra: [String: String] = [:],
                                                    file: StaticString = #filePath, line: UInt = #line) throws -> ChildOutcome {
        let environment = extra.merging(["GLIBC_TUNABLES": "glibc.pthread.rseq=0"]) { given, _ in given }
        let result = try runPassingTest(specifier, environment: environment, file: file, line: line)
        XCTAssertTrue(result.stdoutText.contains("cpu layer mode fallback"), "\(result)", file: file, line: line)
        return result
    }
}

extension ChildOutcome {
    /// The child exited with status 0.
    public var succeeded: Bool { ending == .exited(0) }

    /// The child stopped itself: killed by a signal (a fatal error traps) or exited non-zero.
    public var stoppedWithFailure: Bool {
        switch ending {
        case .signaled: return true
        case .exited(let status): return status != 0
        case .timedOut, .interrupted, .spawnFailed: return false
        }
    }
}

/// A bad call a test makes in a child process, where it must stop the process with a message:
/// the parent re-runs this test binary on `runnerTest` with `environmentKey` naming the case;
/// the child runs it and, should the bad call return, prints `survivedMarker`.
public protocol StoppingScenario: RawRepresentable<String> {
    /// The variable that names the case to run in the child.
    static var environmentKey: String { get }
    /// The test that runs the case the variable names ("SlabTests.Class/test_method").
    static var runnerTest: String { get }
    /// Does the bad thing; the process must not come back from it.
    func run() throws
}

/// What a child prints when a scenario's bad call returned.
public let survivedMarker = "SCENARIO SURVIVED"

extension StoppingScenario {
    /// In the child: runs the case the environment names. In a normal run there is none, and the
    /// calling test skips.
    public static func runNamedInEnvironment() throws {
        guard let name = ProcessInfo.processInfo.environment[environmentKey] else {
            throw XCTSkip("runs only in a child process started by a test of this scenario")
        }
        let scenario = try XCTUnwrap(Self(rawValue: name), "unknown scenario \(name)")
        try scenario.run()
        writeStandardError(survivedMarker + "\n")
    }

    /// In the parent: runs this case in a child and checks that the child stopped before the
    /// line after the bad call. Returns the outcome, for the message's checks.
    public func runInChild(file: StaticString = #filePath, line: UInt = #line) throws -> ChildOutcome {
        let result = try ChildProcess.runTest(Self.runnerTest, environment: [Self.environmentKey: rawValue])
        XCTAssertTrue(result.stoppedWithFailure, "\(self): the child must stop\n\(result)", file: file, line: line)
        XCTAssertFalse(result.stderrText.contains(survivedMarker), "\(self): the bad call returned\n\(result)",
                       file: file, line: line)
        return result
    }
}

/// An executable of this package (`bench`, `slabinfo`): SwiftPM builds the products into the
/// folder that holds the test bundle (on Linux the bundle is the test executable itself).
public func builtExecutable(_ name: String) throws -> String {
    var bundle = URL(fileURLWithPath: ChildProcess.currentExecutable)
    while bundle.path != "/" && !bundle.lastPathComponent.hasSuffix(".xctest") { bundle.deleteLastPathComponent() }
    let products = bundle.path == "/" ? URL(fileURLWithPath: ChildProcess.currentExecutable).deletingLastPathComponent()
                                      : bundle.deletingLastPathComponent()
    let path = products.appendingPathComponent(name).path
    guard FileManager.default.isExecutableFile(atPath: path) else {
        throw MissingExecutable(description: "no \(name) executable at \(path): build it first (swift build)")
    }
    return path
}

public struct MissingExecutable: Error, CustomStringConvertible {
    public var description: String
}

// MARK: Stamps

/// An object's contents while a stress test holds it: word 0 the owner and sequence, word 1 the
/// object's own address, the middle words a pattern derived from both, the last word a checksum
/// of everything before it. Any byte written by someone else (a second owner of the same object,
/// the allocator's free-list link) breaks the check.
public enum Stamp {
    /// A 64-bit mix of `x`: the first output of SplitMix64 seeded with it.
    @inline(__always)
    static func mix(_ x: UInt64) -> UInt64 {
        var generator = SplitMix64(seed: x)
        return generator.next()
    }

    /// Writes the stamp over `size` bytes (size >= 24, a multiple of 8).
    public static func write(_ object: UnsafeMutableRawPointer, size: Int, owner: Int, sequence: UInt64) {
        let words = object.assumingMemoryBound(to: UInt64.self)
        let n = size / 8
        let tag = UInt64(owner) << 48 | (sequence & 0xFFFF_FFFF_FFFF)
        words[0] = tag
        words[1] = UInt64(UInt(bitPattern: object))
        var sum = mix(tag ^ words[1])
        for i in 2..<(n - 1) {
            words[i] = mix(tag &+ UInt64(i))
            sum = mix(sum ^ words[i])
        }
        words[n - 1] = sum
    }

    /// The owner encoded in a stamp, or nil when the stamp is damaged (a description of the damage
    /// is passed to `problem`).
    public static func check(_ object: UnsafeMutableRawPointer, size: Int) -> String? {
        let words = object.assumingMemoryBound(to: UInt64.self)
        let n = size / 8
        let tag = words[0]
        if words[1] != UInt64(UInt(bitPattern: object)) {
            return "object \(object): address word is \(String(words[1], radix: 16))"
        }
        var sum = mix(tag ^ words[1])
        for i in 2..<(n - 1) {
            if words[i] != mix(tag &+ UInt64(i)) { return "object \(object): word \(i) damaged (owner \(tag >> 48))" }
            sum = mix(sum ^ words[i])
        }
        if words[n - 1] != sum { return "object \(object): checksum damaged (owner \(tag >> 48))" }
        return nil
    }
}

// MARK: LiveSet

/// The set of objects currently handed out, sharded by address so that many threads can use it.
/// `insert` fails if the object is already live (the allocator handed it out twice); `remove`
/// fails if it is not (freed twice, or never allocated).
public final class LiveSet: @unchecked Sendable {
    /// NSLock (a pthread mutex), not Synchronization.Mutex: ThreadSanitizer sees pthread locks.
    private final class Shard: @unchecked Sendable {
        private let lock = NSLock()
        private var set = Set<UInt>()
        func withLock<R>(_ body: (inout Set<UInt>) -> R) -> R { lock.lock(); defer { lock.unlock() }; return body(&set) }
    }
    private let shards: [Shard]

    public init(shards: Int = 64) {
        self.shards = (0..<shards).map { _ in Shard() }
    }

    @inline(__always) private func shard(_ a: UInt) -> Int {
        Int(truncatingIfNeeded: (((a >> 4) &* 0x9E37_79B9_7F4A_7C15) >> 40) % UInt(shards.count))
    }

    public func insert(_ object: UnsafeMutableRawPointer) -> Bool {
        let a = UInt(bitPattern: object)
        return shards[shard(a)].withLock { $0.insert(a).inserted }
    }

    public func remove(_ object: UnsafeMutableRawPointer) -> Bool {
        let a = UInt(bitPattern: object)
        return shards[shard(a)].withLock { $0.remove(a) != nil }
    }

    public var count: Int { shards.reduce(0) { n, s in n + s.withLock { $0.count } } }
}

// MARK: Counters and problems

/// A relaxed atomic counter usable from constructors, destructors and threads.
public final class Counter: @unchecked Sendable {
    private let word = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
    public init() { word.initialize(to: 0) }
    deinit { word.deallocate() }
    public func add(_ n: Int = 1) { _ = cslab_fetch_add_relaxed(word, UInt64(n)) }
    public var value: Int { Int(cslab_load_relaxed(word)) }
}

/// Problems found on worker threads, reported by the test thread (XCTest assertions belong there).
public final class ProblemLog: @unchecked Sendable {
    private let lock = NSLock()
    private var problems: [String] = []
    public init() {}
    public func add(_ p: String) { lock.lock(); if problems.count < 50 { problems.append(p) }; lock.unlock() }
    public var all: [String] { lock.lock(); defer { lock.unlock() }; return problems }
}

/// Objects that threads hand back to the test thread at the end of their work.
public final class HeldObjects: @unchecked Sendable {
    private let lock = NSLock()
    private var objects: [UnsafeMutableRawPointer] = []
    public init() {}
    public func add(_ more: [UnsafeMutableRawPointer]) { lock.lock(); objects += more; lock.unlock() }
    public var all: [UnsafeMutableRawPointer] { lock.lock(); defer { lock.unlock() }; return objects }
}

/// A raw pointer that may cross threads (the tests own the synchronisation).
public struct SendablePointer: @unchecked Sendable {
    public let raw: UnsafeMutableRawPointer
    public init(_ raw: UnsafeMutableRawPointer) { self.raw = raw }
}

// MARK: Folders

extension XCTestCase {
    /// A new, empty folder under the system's temporary folder, named after `prefix`, removed
    /// with everything in it when the test ends.
    public func temporaryFolder(_ prefix: String) throws -> String {
        let path = NSTemporaryDirectory() + "/\(prefix)-\(getpid())-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }
}
