// A test adapter that wraps malloc and keeps a ledger of every object: it proves that a workload
// allocates and frees exactly what it claims, frees only what it allocated, and never twice.

@testable import AllocBench
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Every allocation and free a workload made, and what went wrong. Locked with a pthread mutex,
/// not Synchronization.Mutex: ThreadSanitizer understands the former (it intercepts it) and
/// reports false races inside the latter, which would drown real reports from the workloads'
/// rings when the threaded tests run under --sanitize=thread.
final class AllocationLedger: @unchecked Sendable {
    struct State {
        var live = Set<UInt>()
        var allocations = 0
        var frees = 0
        var peakLive = 0
        /// releaseFreeMemory() calls, and the objects live at each.
        var releases: [Int] = []
        var problems: [String] = []
    }
    private var state = State()
    private let lock: UnsafeMutablePointer<pthread_mutex_t> = {
        let m = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        pthread_mutex_init(m, nil)
        return m
    }()

    deinit {
        pthread_mutex_destroy(lock)
        lock.deallocate()
    }

    private func withLock<R>(_ body: (inout State) -> R) -> R {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        return body(&state)
    }

    func allocated(_ p: UnsafeMutableRawPointer) {
        withLock { s in
            s.allocations += 1
            if !s.live.insert(UInt(bitPattern: p)).inserted {
                s.problems.append("allocator returned \(p), which is still live")
            }
            s.peakLive = max(s.peakLive, s.live.count)
        }
    }

    /// Records the free; false (and a problem) when `p` is not live.
    func freeing(_ p: UnsafeMutableRawPointer) -> Bool {
        withLock { s in
            s.frees += 1
            guard s.live.remove(UInt(bitPattern: p)) != nil else {
                s.problems.append("free of \(p), which is not live (never allocated, or freed twice)")
                return false
            }
            return true
        }
    }

    func released() { withLock { $0.releases.append($0.live.count) } }

    /// malloc(bytes), recorded.
    func malloc(_ bytes: Int) -> UnsafeMutableRawPointer {
        let p = Glibc.malloc(bytes)!
        allocated(p)
        return p
    }

    /// free(p), recorded. A rejected free is recorded, not performed: a double free would abort
    /// the test run.
    func free(_ p: UnsafeMutableRawPointer) {
        if freeing(p) { Glibc.free(p) }
    }

    var snapshot: State { withLock { $0 } }

    func reset() { withLock { $0 = State() } }
}

/// malloc/free through the ledger. `claimsConstructed` lets a test lie about constructed
/// objects, to check that ctor-256 notices.
struct CountingAllocator: FixedSizeAllocator {
    let size: Int
    let ledger: AllocationLedger
    var claimsConstructed = false

    var constructsObjects: Bool { claimsConstructed }

    func allocate() -> UnsafeMutableRawPointer {
        let p = ledger.malloc(size)
        // A liar hands out memory that is certainly raw: a recycled chunk may still hold a
        // constructed object's bytes (glibc overwrites the first words with its free-list links,
        // other mallocs, such as ThreadSanitizer's, do not).
        if claimsConstructed { memset(p, 0xA5, size) }
        return p
    }

    func free(_ object: UnsafeMutableRawPointer) { ledger.free(object) }

    func releaseFreeMemory() { ledger.released() }

    var releaseCall: ReleaseCall { ReleaseCall(call: "AllocationLedger.released()", found: true) }
}

/// malloc/free of any size through the ledger, for the mixed-size workloads; counts the bytes
/// asked for and the sizes outside the workloads' 8...1024.
final class CountingGeneralAllocator: GeneralAllocator, Sendable {
    let ledger: AllocationLedger
    private let requested = Atomic<Int>(0)
    private let outside = Atomic<Int>(0)

    init(ledger: AllocationLedger) { self.ledger = ledger }

    var bytesRequested: Int { requested.load(ordering: .relaxed) }
    var sizesOutsideRange: Int { outside.load(ordering: .relaxed) }

    func allocate(bytes: Int) -> UnsafeMutableRawPointer {
        requested.add(bytes, ordering: .relaxed)
        if bytes < 8 || bytes > 1024 { outside.add(1, ordering: .relaxed) }
        return ledger.malloc(bytes)
    }

    func free(_ object: UnsafeMutableRawPointer) { ledger.free(object) }

    func releaseFreeMemory() { ledger.released() }
}
