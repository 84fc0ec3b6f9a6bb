// Lock: the slow paths' mutual exclusion (slab layer lists, page source, registry, drains).
//
// A pthread mutex rather than Synchronization.Mutex: ThreadSanitizer intercepts pthread_mutex_*
// and so sees the ordering the lock provides, while Mutex's futex word is invisible to it on
// Linux and every access under the lock would be reported as a race. No allocation or free fast
// path takes a Lock.

#if canImport(Glibc)
import Glibc
#endif

final class Lock<State>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    /// Protected by `mutex`; the lock, not Swift's dynamic exclusivity checks, makes access exclusive.
    @exclusivity(unchecked) private var state: State

    init(_ initial: State) {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        state = initial
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    @inline(__always)
    func withLock<R>(_ body: (inout State) throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&state)
    }
}

extension Lock {
    /// The mutex as the fork handlers hold it (Fork.swift): taken before fork() and given up after
    /// it, in the parent and in the child, outside any `withLock`. The handlers keep the mutex
    /// itself, not the lock object: after the fork every page is copy-on-write, and a retain of
    /// the object on the way would copy its page.
    var mutexForFork: UnsafeMutablePointer<pthread_mutex_t> { mutex }

    /// The state, for the thread that holds the mutex through the fork handlers.
    var stateWhileHeldForFork: State { state }
}
