// A child forked while other threads use the allocator can go on allocating (Sources/Slab/Subtle/
// Fork.swift): the test forks again and again while three threads run kmalloc and kfree of every
// kind of size (size classes, page-allocator blocks, OS mappings), a typed cache with a
// constructor, shrink() of both, and cache creation and destruction, so that some lock of the
// library is nearly always held somewhere at the moment of a fork. Each child allocates and frees
// from the same caches, creates and destroys a cache, shrinks, and must exit 0 before its alarm:
// before the fork handlers, a lock held by a thread that does not exist in the child made 14 of
// the first 41 children of such a process hang for ever. Run in this process's mode (rseq here)
// and, in a child process with rseq disabled, in fallback mode.
//
// Before the first fork the threads run a while and the parent does the child's work once: the
// Swift runtime's own locks are not the library's to take, and a debug build makes a generic
// type's metadata on first use under one (a child that needs metadata another thread was making
// at the fork waits for ever, whatever the allocator does). Warmed up, the paths need none.

import CSlab
import Foundation
import Harness
import Slab
import Synchronization
import TestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class ForkTests: XCTestCase {
    final class Running: @unchecked Sendable {
        let flag = Atomic<Bool>(true)
        var on: Bool { flag.load(ordering: .relaxed) }
        /// Rounds each worker has finished.
        let rounds = [Counter(), Counter(), Counter()]
    }

    /// Sizes for every kind of kmalloc allocation: classes, page blocks (8 KiB < size <= 4 MiB)
    /// and mappings (above).
    static let sizes = [8, 24, 100, 200, 512, 1000, 3000, 8192, 9000, 70_000, 300_000, 5 << 20]

    /// Measured: under ThreadSanitizer the children hang in the Swift runtime (in swift_once, for
    /// a value the parent made long before the fork: 1 of the first 11-16 forks).
    func skipUnderThreadSanitizer() throws {
        try ChildProcess.skipIfThreadSanitized("a forked child of a multithreaded process hangs in the Swift runtime under ThreadSanitizer")
    }

    func test_forkedChildren_allocateFreeAndShrink_whileOtherThreadsHoldTheLibrarysLocks() throws {
        try skipUnderThreadSanitizer()
        let typed = try SlabCache(name: uniqueCacheName("fork-typed"), size: 200, align: 8, flags: [],
                                  constructor: { memset($0, 0x5A, 200) })
        print("cpu layer mode \(typed.mode.rawValue)")
        if let expected = ProcessInfo.processInfo.environment["SLAB_EXPECT_MODE"] {
            XCTAssertEqual(typed.mode.rawValue, expected, "the child must run in the mode its parent asked for")
        }
        let running = Running()
        let workers = ThreadGroup(count: 3) { t in
            var rng = SplitMix64(seed: 0xF0_4C + UInt64(t))
            var held: [UnsafeMutableRawPointer] = []
            held.reserveCapacity(256)
            var objects: [UnsafeMutableRawPointer] = []
            objects.reserveCapacity(256)
            var round = 0
            while running.on {
                round += 1
                running.rounds[t].add()
                if t == 2 {
                    // Drains (drain locks, stopped CPUs), the registry and kmalloc's page allocator.
                    typed.shrink()
                    Kmalloc.shrink()
                    if let c = try? SlabCache(name: uniqueCacheName("fork-churn"), size: 48, align: 8, flags: []) {
                        if let p = c.allocate() { c.free(p) }
                        try? c.destroy()
                    }
                    usleep(200)
                    continue
                }
                for _ in 0..<64 {
                    let size = Self.sizes[Int(rng.next() % UInt64(Self.sizes.count - (round % 8 == 0 ? 0 : 1)))]
                    if let p = try? kmalloc(size) { held.append(p) }
                    if let o = typed.allocate() { objects.append(o) }
                }
                // Freed in a scrambled order, so that magazines fill and the slab layer takes them.
                while let p = held.popLast() {
                    if !held.isEmpty { held.swapAt(0, Int(rng.next() % UInt64(held.count))) }
                    kfree(p)
                }
                while let o = objects.popLast() { typed.free(o) }
            }
        }
        let childCacheName = uniqueCacheName("fork-child")
        let scratch = UnsafeMutablePointer<UnsafeMutableRawPointer?>.allocate(capacity: 256)
        defer { scratch.deallocate() }
        /// The child's work: the library and C calls only, on values made before the fork. Returns
        /// the exit status (0: all went well).
        func childWork() -> Int32 {
            for i in 0..<256 { scratch[i] = try? kmalloc(Self.sizes[i % Self.sizes.count]) }
            for i in 0..<256 { kfree(scratch[i]) }
            for i in 0..<256 { scratch[i] = typed.allocate() }
            for i in 0..<256 { if let o = scratch[i] { typed.free(o) } }
            guard let c = try? SlabCache(name: childCacheName, size: 40, align: 8, flags: []),
                  let p = c.allocate() else { return 3 }
            c.free(p)
            guard (try? c.destroy()) != nil else { return 4 }
            typed.shrink()
            Kmalloc.shrink()
            return 0
        }
        XCTAssertEqual(childWork(), 0, "the child's work, done once in the parent")
        while running.rounds.contains(where: { $0.value < 16 }) { usleep(1000) }
        var failures: [String] = []
        var forks = 0
        let deadline = 10.0
        while forks < scaled(120) {
            usleep(UInt32(300 + (forks * 7919) % 2500))
            forks += 1
            let pid = fork()
            if pid == 0 {
                alarm(UInt32(deadline))
                _exit(childWork())
            }
            guard pid > 0 else { failures.append("fork \(forks): fork() failed (errno \(errno))"); break }
            var status: Int32 = 0
            var waited = 0.0
            while waitpid(pid, &status, WNOHANG) == 0 {
                if waited > deadline + 5 { kill(pid, SIGKILL) }
                usleep(5000)
                waited += 0.005
            }
            if status != 0 {
                let signal = status & 0x7f
                failures.append("fork \(forks): the child " + (signal == SIGALRM || signal == SIGKILL
                    ? "hung (killed by signal \(signal) after \(Int(deadline)) s)" : "ended with status \(status)"))
                break
            }
        }
        running.flag.store(false, ordering: .relaxed)
        workers.join()
        XCTAssertEqual(failures, [], "after \(forks) forks")
        XCTAssertEqual(typed.checkInvariants(), [])
        typed.shrink()
        try typed.destroy()
        print("fork test: \(forks) forks, \(failures.count) failed")
    }

    func test_forkedChildren_inFallbackMode() throws {
        try skipUnderThreadSanitizer()
        try ChildProcess.runPassingTestInFallbackMode(
            "SlabTests.ForkTests/test_forkedChildren_allocateFreeAndShrink_whileOtherThreadsHoldTheLibrarysLocks",
            environment: ["SLAB_EXPECT_MODE": "fallback"])
    }

    // MARK: fork() from inside the library's callbacks

    /// What a process that forks from inside a callback reports: 0 when both it and its child
    /// (which does `childWork` after the callback's operation returns, then exits) finished.
    enum CallbackFork: Int32 {
        case constructor = 1, destructorInShrink, destructorInDestroy
        /// The constructor forks, and the child's constructor then allocates from the same cache
        /// (objects kept until the operation that ran the constructor has returned).
        case constructorThenAllocate
    }

    /// Runs in a process of its own (the failure is a hang): a cache whose constructor or destructor
    /// forks once, then the operation that runs it. The child finishes that operation, allocates
    /// and frees from kmalloc and a new cache, and exits; the parent waits for it, finishes too.
    static func forkInsideCallback(_ which: CallbackFork) -> Int32 {
        let original = getpid()
        let forked = Mutex<pid_t>(-1)
        let itself = Mutex<SlabCache?>(nil)
        let nested = Mutex<[UInt]>([])  // addresses (a pointer is not Sendable)
        let constructs = which == .constructor || which == .constructorThenAllocate
        let callback: (UnsafeMutableRawPointer) -> Void = { _ in
            let inChild = forked.withLock { child -> Bool in
                guard child == -1 else { return false }
                child = fork()
                if child == 0 { alarm(10) }
                return child == 0
            }
            // In the fallback mode the operation that runs this constructor holds its slot; the
            // child's allocations must find it held, as they would without the fork.
            if inChild, which == .constructorThenAllocate, let cache = itself.withLock({ $0 }) {
                for _ in 0..<3 { if let o = cache.allocate() { nested.withLock { $0.append(UInt(bitPattern: o)) } } }
            }
        }
        guard let cache = try? SlabCache(name: uniqueCacheName("fork-callback"), size: 64, align: 8, flags: [],
                                         constructor: constructs ? callback : nil,
                                         destructor: constructs ? nil : callback) else { return 10 }
        itself.withLock { $0 = cache }
        guard let object = cache.allocate() else { return 10 }
        cache.free(object)
        for o in nested.withLock({ $0 }) { cache.free(UnsafeMutableRawPointer(bitPattern: o)!) }
        if getpid() != original, which == .constructorThenAllocate, nested.withLock({ $0.count }) != 3 { return 18 }
        let problems = cache.checkInvariants()
        guard problems.isEmpty else {
            FileHandle.standardError.write(Data("fork-callback (pid \(getpid())): \(problems)\n".utf8))
            return 17
        }
        switch which {
        case .constructor, .constructorThenAllocate: break
        case .destructorInShrink: cache.shrink()
        case .destructorInDestroy: guard (try? cache.destroy()) != nil else { return 11 }
        }
        // Both processes go on from here.
        guard let other = try? SlabCache(name: uniqueCacheName("fork-after"), size: 40, align: 8, flags: []),
              let p = other.allocate(), let k = try? kmalloc(300) else { return 12 }
        other.free(p)
        kfree(k)
        guard (try? other.destroy()) != nil else { return 13 }
        if which != .destructorInDestroy { guard (try? cache.destroy()) != nil else { return 14 } }
        if getpid() != original { _exit(0) }
        let child = forked.withLock { $0 }
        guard child > 0 else { return 15 }
        var status: Int32 = 0
        guard waitpid(child, &status, 0) == child else { return 16 }
        // The child's own code (10...18) plus 20, or its signal plus 60.
        return status == 0 ? 0 : status & 0x7f != 0 ? 60 + (status & 0x7f) : 20 + (status >> 8) & 0xff
    }

    func test_forkFromInsideAConstructorOrDestructor_neitherProcessHangs() throws {
        try skipUnderThreadSanitizer()
        try ChildProcess.printCPULayerMode()
        for which in [CallbackFork.constructor, .constructorThenAllocate, .destructorInShrink, .destructorInDestroy] {
            XCTAssertNil(ChildProcess.forkedFailure(deadline: 20) { Self.forkInsideCallback(which) }, "\(which)")
        }
    }

    /// The same in the fallback mode, where a ladder holds its slot while constructors run.
    func test_forkFromInsideAConstructorOrDestructor_inFallbackMode() throws {
        try skipUnderThreadSanitizer()
        try ChildProcess.runPassingTestInFallbackMode(
            "SlabTests.ForkTests/test_forkFromInsideAConstructorOrDestructor_neitherProcessHangs")
    }
}
