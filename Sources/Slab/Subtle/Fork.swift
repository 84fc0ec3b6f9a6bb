// Fork: a child of a multithreaded process can go on allocating, as it can with glibc's malloc,
// jemalloc, tcmalloc or mimalloc.
//
// 1. The problem
// --------------
//   fork() copies the whole address space but only the calling thread. A lock that another
//   thread held at that moment is held in the child for good, by a thread that does not exist
//   there, and the data under it may be half changed. The first call in the child that needs
//   that lock waits for ever: a slab layer's lock (an allocation that found its CPU's magazines
//   empty), a page source's (a new slab), a drain lock (shrink). Measured before this file: a
//   child forked every 1-50 ms while four threads ran kmalloc, kfree and shrink hung on 14 of
//   its first 41 forks.
//
// 2. What the handlers do (pthread_atfork)
// ----------------------------------------
//   Before the fork, the forking thread takes every lock of the library, so that no other thread
//   is inside any of them when the address space is copied; after it, the parent and the child
//   each let them go. Nothing in between runs library code, so every structure is copied
//   between two operations, never inside one. The order is the order in which the library
//   nests its locks (SlabCache.swift, section 6), so taking them all cannot deadlock with a
//   thread that takes some of them:
//     1. every cache's drain lock (a drain holds it while it stops the CPUs, flushes the depot
//        and, in destroy, unregisters the cache and runs destructors, which may call kmalloc);
//        taken with trylock, backing off and starting again on a busy one, since a destructor
//        may nest another cache's drain inside its own, in an order no list can know;
//     2. kmalloc's set-up lock (held while its size classes are created and registered);
//     3. the registry's lock. The caches are listed before step 1 and compared with the registry
//        here: a cache created in between (its locks not in the list) sends the handler back to
//        step 1, so that every cache whose locks are not taken is one nobody can reach yet;
//     4. per cache, its slab layer's lock, its magazine region's, its page source's; then
//        kmalloc's large allocations (mappings, page allocator);
//     5. the leaves: fault injection's two locks and the debug-setting cache.
//   With every drain lock held, no CPU is stopped, so every per-CPU state word is a committed
//   one (CPUSlot.swift). The depot is lock-free: a magazine that a thread had taken off a list
//   and not yet installed when it was copied away is simply not on any list in the child (its
//   objects stay allocated there; the parent loses nothing).
//
// 3. The child
// ------------
//   Only the forking thread lives. Besides unlocking, it frees the fallback mode's slots that a
//   vanished thread had taken for one operation (owner = that thread's mark): the state word
//   holds whatever that operation last committed, and a later drain would otherwise spin on the
//   slot. A slot the forking thread itself holds stays held (its mark is the same in the child):
//   the fork came from a constructor run inside that operation, which goes on in the child, and
//   an allocation the constructor makes there must find the slot held, as it would without the
//   fork, not run a second operation on the slot inside the first (a test that allocates there
//   saw the cache lose a magazine when every thread's slot was freed). Lane ownership and the
//   cached thread id are reset by the C shim's own handlers (shim.c).
//
// 4. The cost
// -----------
//   None on the allocation and free paths. A fork takes 4 mutexes per cache (3 without a CPU
//   layer) and 7 more, and after it the parent and the child each unlock them, a write to a
//   copy-on-write page: the pages that hold the mutexes are copied, about 3 a cache. Measured on
//   the project's 2-vCPU machine (a release build; each cache holding one object; the median of
//   200 forks, the time fork() takes in the parent): 100 caches 1.0-1.1 ms without the handlers,
//   1.5-1.7 ms with them; 1,000 caches 11.4-12.2 against 18.1-19.0 ms; 10,000 caches 114 against
//   154-161 ms. Most of a fork's time is the kernel copying the caches' mappings. The handlers
//   keep raw mutex pointers, not lock objects, so that no retain or release in them copies an
//   object's page too (that had cost 3,000 more page faults a fork at 1,000 caches). They
//   allocate only before the fork, where glibc's malloc is still usable.
//
// 5. A fork from inside the library's callbacks
// ---------------------------------------------
//   A constructor or destructor may fork: neither runs under a lock the handlers take. A
//   constructor runs when a slab is made, outside the slab layer's lock (SlabLayer.grow), and a
//   destructor when shrink() or reap() releases an empty slab, after the drain lock is let go.
//   destroy() runs its destructors under its own drain lock, which the forking thread would
//   then wait for in step 1, for ever; it therefore unregisters the cache first, so that the
//   handlers no longer list it (SlabCache.destroy). ForkTests forks from each of the three
//   places, and the child finishes the operation and goes on allocating; with the two steps of
//   destroy the other way round, the fork from its destructor hangs.

import CSlab

#if canImport(Glibc)
import Glibc
#endif

enum ForkHandlers {
    /// Registers the handlers once per process; called when the registry or kmalloc's state is
    /// first made, before any cache exists.
    static let installed: Void = {
        let r = pthread_atfork({ ForkHandlers.prepare() }, { ForkHandlers.parent() }, { ForkHandlers.child() })
        precondition(r == 0, "Slab: pthread_atfork failed (\(r))")
    }()

    /// The mutexes `prepare` holds, in the order it took them, and the fallback-mode slots the
    /// child frees. Raw pointers and plain values only: after the fork every page is
    /// copy-on-write, and a retain or release in the handlers would copy the object's page (a
    /// fork of a process with 1,000 caches took 3,000 more page faults that way).
    /// nonisolated(unsafe): written by the forking thread while it holds every lock, read by the
    /// same thread (in the parent or the child) before it lets the first one go.
    nonisolated(unsafe) private static var held: [UnsafeMutablePointer<pthread_mutex_t>] = []
    nonisolated(unsafe) private static var fallbackSlots: [CPUSlots] = []

    static func prepare() {
        let registry = Registry.shared
        var caches: [SlabCache]
        var drains: [UnsafeMutablePointer<pthread_mutex_t>]
        let made = KmallocState.madeMutexForFork
        let listed = registry.mutexForFork
        while true {
            caches = registry.caches
            drains = caches.map(\.drainLock.mutexForFork)
            lockAll(drains)
            pthread_mutex_lock(made)
            pthread_mutex_lock(listed)
            let now = registry.cachesWhileHeldForFork()
            if now.count == caches.count && zip(now, caches).allSatisfy({ $0 === $1 }) { break }
            pthread_mutex_unlock(listed)
            pthread_mutex_unlock(made)
            for mutex in drains.reversed() { pthread_mutex_unlock(mutex) }
        }
        // Each lock has one owner (a cache's slab layer, magazine region and page source are its
        // own; kmalloc's classes and its page allocator each have a page source of their own),
        // so no mutex is listed twice: a second lock would wait for ever.
        var all = drains
        all.reserveCapacity(drains.count + 3 * caches.count + 7)
        all.append(made)
        all.append(listed)
        let first = all.count
        var slots: [CPUSlots] = []
        for cache in caches {
            all.append(cache.slabLayer.mutexForFork)
            if let cpuLayer = cache.cpuLayer {
                all.append(cpuLayer.region.mutexForFork)
                if let s = cpuLayer.slotsForFork { slots.append(s) }
            }
            all.append(cache.slabLayer.pages.mutexForFork)
        }
        if let kmalloc = KmallocState.stateWhileHeldForFork() { all += kmalloc.large.mutexesForFork }
        all += PageSource.shared.mutexesForFork
        all.append(SlabDebugSetting.mutexForFork)
        assert(Set(all).count == all.count, "a mutex listed twice")
        for mutex in all[first...] { pthread_mutex_lock(mutex) }
        held = all
        fallbackSlots = slots
    }

    static func parent() {
        for mutex in held.reversed() { pthread_mutex_unlock(mutex) }
    }

    /// Also unlocks: the child's only thread is the copy of the one that locked them, and a
    /// default (non-error-checking) mutex does not compare owners on unlock.
    static func child() {
        let forking = SlotOwner.thread
        for slots in fallbackSlots {
            for i in 0..<slots.count {
                let owner = cslab_load_acquire(slots.owner(i))
                if SlotOwner.isThread(owner) && owner != forking { cslab_store_release(slots.owner(i), SlotOwner.free) }
            }
        }
        for mutex in held.reversed() { pthread_mutex_unlock(mutex) }
    }

    /// Locks every mutex of `drains`, which may nest in any order: a busy one makes the thread
    /// let go of those it holds, wait for that one, and start again.
    private static func lockAll(_ drains: [UnsafeMutablePointer<pthread_mutex_t>]) {
        var i = 0
        while i < drains.count {
            if pthread_mutex_trylock(drains[i]) == 0 { i += 1; continue }
            for mutex in drains[..<i].reversed() { pthread_mutex_unlock(mutex) }
            pthread_mutex_lock(drains[i])
            pthread_mutex_unlock(drains[i])
            i = 0
        }
    }
}
