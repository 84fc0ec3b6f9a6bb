// TestSupport: what the allocator's tests share.
//
//   names        unique cache names (the registry is process-wide; tests must not collide)
//   scale        SLAB_STRESS_SCALE, the multiplier for stress loops (default 1)
//   memory       resident set size from /proc/self/smaps_rollup (or /proc/self/statm)
//   threads      plain pthreads, so a test can run more threads than cores
//   children     re-running this test binary as a child process, to run one test in another
//                CPU-layer mode or to watch a bad free stop the process with the right message;
//                running another of the package's executables (slabinfo) the same way
//   stamps       writing and checking an owner + sequence + checksum pattern over a whole object
//   LiveSet      a sharded, locked set of addresses: proves no object is handed out twice
//   counters     relaxed atomic counters (through the CSlab shim)

import CSlab
import Foundation
import Slab
import XCTest
import Synchronization

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
}

// MARK: Threads

private final class ThreadBox {
    let body: () -> Void
    init(_ body: @escaping () -> Void) { self.body = body }
}

/// Runs `body(i)` for i in 0..<count, each on its own pthread, and waits for all of them.
/// (Dispatch would cap the threads at the core count; stress tests want more threads than cores.)
public func runThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    var threads: [pthread_t] = []
    for i in 0..<count {
        let box = Unmanaged.passRetained(ThreadBox { body(i) })
        var thread = pthread_t()
        let r = pthread_create(&thread, nil, { raw in
            let box = Unmanaged<ThreadBox>.fromOpaque(raw!).takeRetainedValue()
            box.body()
            return nil
        }, box.toOpaque())
        precondition(r == 0, "pthread_create failed: \(r)")
        threads.append(thread)
    }
    for t in threads { pthread_join(t, nil) }
}

// MARK: Child processes

/// How a child run ended, and what it printed.
public struct ChildResult: CustomStringConvertible {
    public var exitStatus: Int32?
    public var signal: Int32?
    public var stdout: String
    public var stderr: String

    public var diedBySignal: Bool { signal != nil }
    public var succeeded: Bool { exitStatus == 0 }

    public var description: String {
        let how = signal.map { "killed by signal \($0)" } ?? "exit status \(exitStatus ?? -1)"
        return "child \(how)\n--- stdout (tail) ---\n\(stdout.suffix(3000))\n--- stderr (tail) ---\n\(stderr.suffix(3000))"
    }
}

public enum ChildProcess {
    /// The running test binary (the .xctest executable `swift test` launched).
    public static var testBinaryPath: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    /// Runs one XCTest test of this binary (`"SlabTests.Class/test_method"`) in a child process with
    /// `environment` added to ours. The Swift backtracer is turned off in the child, so that a
    /// deliberate crash ends at once and stderr holds only our message and the fatal error.
    public static func runTest(_ specifier: String, environment extra: [String: String],
                               timeout: TimeInterval = 300) throws -> ChildResult {
        var env = ProcessInfo.processInfo.environment
        env["SWIFT_BACKTRACE"] = "enable=no"
        for (k, v) in extra { env[k] = v }
        return try run(URL(fileURLWithPath: testBinaryPath), arguments: [specifier], environment: env, timeout: timeout)
    }

    /// Runs `executable` with `arguments` and `environment` (nil: ours), kills it after `timeout`
    /// seconds, and says how it ended and what it printed.
    public static func run(_ executable: URL, arguments: [String], environment: [String: String]? = nil,
                           timeout: TimeInterval = 300) throws -> ChildResult {
        let dir = FileManager.default.temporaryDirectory
        let tag = "slabchild-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let outURL = dir.appendingPathComponent(tag + ".out"), errURL = dir.appendingPathComponent(tag + ".err")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        defer {
            try? FileManager.default.removeItem(at: outURL)
            try? FileManager.default.removeItem(at: errURL)
        }
        // Files, not pipes: a chatty child can never block on a full pipe we are not reading.
        let out = try FileHandle(forWritingTo: outURL), err = try FileHandle(forWritingTo: errURL)
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        if let environment { process.environment = environment }
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
        try out.close()
        try err.close()
        let stdout = (try? String(contentsOf: outURL, encoding: .utf8)) ?? ""
        let stderr = (try? String(contentsOf: errURL, encoding: .utf8)) ?? ""
        switch process.terminationReason {
        case .exit: return ChildResult(exitStatus: process.terminationStatus, signal: nil, stdout: stdout, stderr: stderr)
        case .uncaughtSignal: return ChildResult(exitStatus: nil, signal: process.terminationStatus, stdout: stdout, stderr: stderr)
        @unknown default: return ChildResult(exitStatus: process.terminationStatus, signal: nil, stdout: stdout, stderr: stderr)
        }
    }

    /// True in a child started by `runTest` with `SLAB_TEST_CHILD` set: the parent's test is the
    /// one checking the result, so the child does the work and reports through its exit status.
    public static var isChild: Bool { ProcessInfo.processInfo.environment["SLAB_TEST_CHILD"] != nil }
}

// MARK: Stamps

/// An object's contents while a stress test holds it: word 0 the owner and sequence, word 1 the
/// object's own address, the middle words a pattern derived from both, the last word a checksum
/// of everything before it. Any byte written by someone else (a second owner of the same object,
/// the allocator's free-list link) breaks the check.
public enum Stamp {
    @inline(__always)
    static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
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

/// SplitMix64: a small, fast, seedable generator for the stress loops.
public struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return Stamp.mix(state)
    }
}
