// Plain pthreads, started together and joined together: the bench's threaded workloads start
// theirs behind a gate (Workloads/Threaded.swift), the stress tests run more threads than cores.
// Dispatch would cap the threads at the core count and reuse them, so neither could say how many
// threads really run at once.
#if canImport(Glibc)
import Glibc
#endif

/// What a new thread runs: its body and its index, handed over as one retained object.
private final class ThreadStart {
    let body: (Int) -> Void
    let index: Int
    init(_ body: @escaping (Int) -> Void, _ index: Int) { self.body = body; self.index = index }
}

/// `count` threads running `body(i)` for i in 0..<count, started by `init`; `join()` waits for
/// every one of them.
public struct ThreadGroup {
    @usableFromInline let threads: [pthread_t]

    public init(count: Int, _ body: @escaping @Sendable (Int) -> Void) {
        var threads: [pthread_t] = []
        threads.reserveCapacity(count)
        for i in 0..<count {
            let start = Unmanaged.passRetained(ThreadStart(body, i)).toOpaque()
            var t = pthread_t()
            let rc = pthread_create(&t, nil, { raw in
                let start = Unmanaged<ThreadStart>.fromOpaque(raw!).takeRetainedValue()
                start.body(start.index)
                return nil
            }, start)
            precondition(rc == 0, "pthread_create failed: \(rc)")
            threads.append(t)
        }
        self.threads = threads
    }

    /// Waits for every thread to end. Inlinable: a timed region that ends with the last join
    /// holds the joins and nothing else.
    @inlinable
    public func join() {
        for t in threads { pthread_join(t, nil) }
    }
}

/// Runs `body(i)` for i in 0..<count, each on its own new pthread, and waits for all of them.
public func runThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    ThreadGroup(count: count, body).join()
}
