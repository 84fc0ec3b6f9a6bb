// Registry: every live cache, as the kernel's slab_caches list. A cache registers when created and
// leaves when destroyed; SlabInfo renders the registry in /proc/slabinfo format. kmalloc's size
// classes register when kmalloc is first used and never leave.

#if canImport(Glibc)
import Glibc
#endif

public final class Registry: @unchecked Sendable {
    public static let shared = Registry()

    private struct Entries: @unchecked Sendable {
        /// In creation order.
        var caches: [SlabCache] = []
        /// By name: creating the 10,000th cache must not compare its name with 9,999 others.
        var byName: [String: SlabCache] = [:]
    }
    private let entries = Lock(Entries())

    private init() { ForkHandlers.installed }

    /// For the fork handlers (Fork.swift).
    var mutexForFork: UnsafeMutablePointer<pthread_mutex_t> { entries.mutexForFork }
    func cachesWhileHeldForFork() -> [SlabCache] { entries.stateWhileHeldForFork.caches }

    /// A slabinfo name is one whitespace-free field; tools split the file on whitespace. The names
    /// of kmalloc's size classes are reserved for them (`reservedAllowed` only when kmalloc
    /// creates them), so that a user's cache can never stop kmalloc from setting up.
    static func validate(name: String, reservedAllowed: Bool = false) throws {
        guard !name.isEmpty else { throw SlabError.invalidName(name, reason: "it is empty") }
        guard name.utf8.count <= 64 else { throw SlabError.invalidName(name, reason: "it is longer than 64 bytes") }
        guard name.unicodeScalars.allSatisfy({ $0.isASCII && $0.value > 0x20 && $0.value < 0x7F }) else {
            throw SlabError.invalidName(name, reason: "only printable ASCII without spaces is allowed")
        }
        if !reservedAllowed, Kmalloc.sizeClasses.contains(where: { $0.name == name }) {
            throw SlabError.invalidName(name, reason: "it is reserved for kmalloc's size classes")
        }
    }

    func register(_ cache: SlabCache) throws {
        try entries.withLock { e in
            guard e.byName[cache.name] == nil else { throw SlabError.duplicateName(cache.name) }
            e.byName[cache.name] = cache
            e.caches.append(cache)
        }
    }

    func unregister(_ cache: SlabCache) {
        entries.withLock { e in
            guard e.byName[cache.name] === cache else { return }
            e.byName[cache.name] = nil
            // From the end: the caches destroyed soonest are usually the newest.
            if let i = e.caches.lastIndex(where: { $0 === cache }) { e.caches.remove(at: i) }
        }
    }

    /// The live cache whose address range holds `address` (for wrong-cache messages).
    func cache(containing address: UInt) -> SlabCache? {
        entries.withLock { e in e.caches.first { $0.slabLayer.pages.contains(address) } }
    }

    /// Every live cache, in creation order.
    public var caches: [SlabCache] { entries.withLock { $0.caches } }

    /// The live cache with this name.
    public func cache(named name: String) -> SlabCache? {
        entries.withLock { e in e.byName[name] }
    }
}
