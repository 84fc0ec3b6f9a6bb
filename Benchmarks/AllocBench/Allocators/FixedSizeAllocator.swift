// Allocator adapters: what a workload allocates from.
//
// 1. Why a protocol and not an existential
// ----------------------------------------
//   Every workload is a generic function over `FixedSizeAllocator`. In a release build the
//   compiler specialises each workload for each adapter, and the adapters' `@inline(__always)`
//   methods disappear into the loop: a `malloc` call for the peers, the rseq pop/push sections for
//   the slab. A protocol existential or a closure per operation would add an indirect call and
//   retain/release traffic to every op, several times the cost of the slab's fast path
//   (2.1-2.5 ns per pop+push).
//
// 2. The adapters
// ---------------
//   MallocAllocator   malloc/free of `size` bytes. In a child process this is whichever malloc the
//                     runner preloaded (glibc when nothing is preloaded).
//   SlabAllocator     one SlabCache per cell (flags `.noCPUCache` for `slab-nocpu`), created for
//                     the cell and destroyed at its end (destroy() refuses a cache that still
//                     holds objects: a leaking workload fails its cell).
//   KmallocAllocator  kmalloc(size) and kfree (KmallocAllocator.swift, with the GeneralAllocator
//                     protocol the mixed-size workloads use).
//
//   Each has its own way to be asked for its free memory back, `releaseFreeMemory()`: the
//   slab's shrink(), Kmalloc.shrink(), and for malloc the serving allocator's own call
//   (MallocRelease.swift: malloc_trim(0), jemalloc's arena purge, mi_collect(true), gperftools'
//   ReleaseFreeMemory), resolved in the cell's child. `releaseCall` says which, or that there was
//   none to be found.
//
// 3. Constructed objects
// ----------------------
//   `constructsObjects` is true when `allocate()` returns objects in their constructed state
//   (a slab cache created with a constructor). The ctor-256 workload constructs malloc'd objects
//   itself after every allocation; the test is a compile-time constant for each adapter.

import CAllocBench
import Slab
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A source of fixed-size objects. Conformers must be cheap to copy (a few words: a workload
/// copies its adapter once per repetition or thread, never inside a loop; MallocAllocator's
/// release call and its description add a few, and pair's count under callgrind did not move)
/// and safe to use from several threads at once.
public protocol FixedSizeAllocator: Sendable {
    /// Requested object size in bytes.
    var size: Int { get }
    /// True when `allocate()` returns constructed objects (see ctor-256).
    var constructsObjects: Bool { get }
    /// One object of `size` bytes. Stops the process when memory is exhausted.
    func allocate() -> UnsafeMutableRawPointer
    /// Frees an object from `allocate()`.
    func free(_ object: UnsafeMutableRawPointer)
    /// Asks the allocator to return the free memory it holds to the OS, with its own call (see
    /// `releaseCall`). The sawtooth calls it after every drain.
    func releaseFreeMemory()
    /// What `releaseFreeMemory()` calls in this process, or that nothing could be found to call.
    var releaseCall: ReleaseCall { get }
}

/// Out of memory in a timed loop: there is no sensible way to go on, and the runner records a
/// crashed child as a failed cell. Kept out of line so the hot loops carry only a branch.
@inline(never)
func outOfMemory(_ what: String, size: Int) -> Never {
    fatalError("AllocBench: \(what) returned NULL for \(size) bytes")
}

// MARK: - malloc

/// malloc/free of `size` bytes: glibc, or the peer loaded with LD_PRELOAD.
public struct MallocAllocator: FixedSizeAllocator {
    public let size: Int
    public var constructsObjects: Bool { false }
    /// The serving malloc's release call, resolved in this process.
    let release: MallocRelease

    /// `release`: `MallocRelease.resolve(for:)` the allocator that serves malloc in this process.
    public init(size: Int, release: MallocRelease) {
        self.size = size
        self.release = release
    }

    @inline(__always)
    public func allocate() -> UnsafeMutableRawPointer {
        guard let p = malloc(size) else { outOfMemory("malloc", size: size) }
        return p
    }

    @inline(__always)
    public func free(_ object: UnsafeMutableRawPointer) { Glibc.free(object) }

    public func releaseFreeMemory() { release.release() }

    public var releaseCall: ReleaseCall { release.releaseCall }
}

// MARK: - slab

/// Serial numbers for cache names: names must be unique in the registry.
private let slabCacheSerial = Atomic<Int>(0)

/// One SlabCache for the length of a cell. The hot calls go through the cache's `FastPath`
/// value (its fields stay in registers across the loop's stores through raw pointers, where a
/// class's fields would be reloaded every iteration); `cache` keeps the cache alive, as
/// FastPath requires. @unchecked: FastPath holds raw pointers, and the cache is thread-safe.
public struct SlabAllocator: FixedSizeAllocator, @unchecked Sendable {
    public let cache: SlabCache
    let fast: FastPath
    public let size: Int
    public let constructsObjects: Bool

    /// Creates the cell's cache. `perCPU: false` is the `slab-nocpu` variant.
    public init(size: Int, perCPU: Bool, label: String,
                constructor: ((UnsafeMutableRawPointer) -> Void)? = nil) throws {
        let serial = slabCacheSerial.add(1, ordering: .relaxed).newValue
        // slabinfo names are at most 64 printable bytes.
        let name = String("bench-\(label)-\(size)-\(serial)".prefix(64))
        cache = try SlabCache(name: name, size: size, flags: perCPU ? [] : [.noCPUCache],
                              constructor: constructor)
        fast = cache.fastPath
        self.size = size
        constructsObjects = constructor != nil
    }

    @inline(__always)
    public func allocate() -> UnsafeMutableRawPointer {
        guard let p = fast.allocate() else { outOfMemory(cache.name, size: size) }
        return p
    }

    @inline(__always)
    public func free(_ object: UnsafeMutableRawPointer) { fast.free(object) }

    public func releaseFreeMemory() { cache.shrink() }

    public var releaseCall: ReleaseCall { ReleaseCall(call: "SlabCache.shrink()", found: true) }

    /// Ends the cell: the cache must be empty (a workload that leaked fails here).
    public func destroy() throws { try cache.destroy() }
}

/// `slab-bare`, the reference row: a SlabAllocator whose free skips the ownership test
/// (FastPath._freeWithoutOwnershipCheck), so its pair is the per-CPU pop and push alone. A type of
/// its own, so that the slab's loops carry no test of which one they are.
public struct BareSlabAllocator: FixedSizeAllocator, @unchecked Sendable {
    public let slab: SlabAllocator

    public init(_ slab: SlabAllocator) { self.slab = slab }

    public var size: Int { slab.size }
    public var constructsObjects: Bool { slab.constructsObjects }

    @inline(__always)
    public func allocate() -> UnsafeMutableRawPointer { slab.allocate() }

    @inline(__always)
    public func free(_ object: UnsafeMutableRawPointer) { slab.fast._freeWithoutOwnershipCheck(object) }

    public func releaseFreeMemory() { slab.releaseFreeMemory() }
    public var releaseCall: ReleaseCall { slab.releaseCall }
}

// MARK: - versions

public enum AllocatorVersion {
    /// The version of the allocator actually serving malloc in this process, as far as it can be
    /// read cheaply: each peer's own version entry point, looked up with dlsym(RTLD_DEFAULT) so
    /// that nothing is linked. nil when unknown.
    public static func current(for id: AllocatorID, slab: SlabCache? = nil) -> String? {
        switch id {
        case .glibc:
            // const char *gnu_get_libc_version(void) (not in Swift's Glibc module).
            guard let sym = dlsym(nil, "gnu_get_libc_version") else { return nil }
            typealias Fn = @convention(c) () -> UnsafePointer<CChar>?
            return unsafeBitCast(sym, to: Fn.self)().map { "glibc " + String(cString: $0) }
        case .mimalloc: return mimalloc()
        case .jemalloc: return jemalloc()
        case .tcmalloc: return tcmalloc()
        case .slab, .slabNoCPU, .slabFallback, .slabBare:
            // Our own code has no release number; record the CPU layer's mode, which is what
            // decides the fast path (rseq, or the fallback under valgrind / rseq=0).
            guard let slab else { return nil }
            let simulated = slab.mode == .rseq && SlabCache.cpuLayerReason.hasPrefix("rseq simulated") ? "-simulated" : ""
            // SLAB_DEBUG reaches the children: its letters (which bypass the CPU layer) are named, so
            // that a run measured with them can never pass for a plain one.
            let debug = slab.flags.letters.isEmpty ? "" : " debug=\(slab.flags.letters)"
            return "slab mode=\(slab.mode.rawValue)\(simulated) magazine=\(slab.magazineCapacity)\(debug)"
        case .kmalloc, .kmallocSized:
            // As for the slab: the size classes' CPU layer mode, and how many classes there are.
            guard let first = Kmalloc.caches.first else { return nil }
            let simulated = first.mode == .rseq && SlabCache.cpuLayerReason.hasPrefix("rseq simulated") ? "-simulated" : ""
            return "kmalloc mode=\(first.mode.rawValue)\(simulated) classes=\(Kmalloc.caches.count)"
        default:
            // A `preload:` library: whichever known version entry point it defines (a library by
            // path may well be one of the built-in peers), else nothing.
            return jemalloc() ?? mimalloc() ?? tcmalloc()
        }
    }

    /// int mi_version(void): 209 for 2.0.9.
    static func mimalloc() -> String? {
        guard let sym = dlsym(nil, "mi_version") else { return nil }
        typealias Fn = @convention(c) () -> Int32
        let v = Int(unsafeBitCast(sym, to: Fn.self)())
        return "mimalloc \(v / 100).\(v / 10 % 10).\(v % 10)"
    }

    /// int mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen)
    static func jemalloc() -> String? {
        guard let sym = dlsym(nil, "mallctl") else { return nil }
        typealias Fn = @convention(c) (UnsafePointer<CChar>?, UnsafeMutableRawPointer?,
                                       UnsafeMutablePointer<Int>?, UnsafeMutableRawPointer?, Int) -> Int32
        var version: UnsafePointer<CChar>? = nil
        var length = MemoryLayout<UnsafePointer<CChar>?>.size
        let rc = withUnsafeMutablePointer(to: &version) { out in
            unsafeBitCast(sym, to: Fn.self)("version", UnsafeMutableRawPointer(out), &length, nil, 0)
        }
        guard rc == 0, let version else { return nil }
        return "jemalloc " + String(cString: version)
    }

    /// const char *tc_version(int *major, int *minor, const char **patch): "gperftools 2.10".
    static func tcmalloc() -> String? {
        guard let sym = dlsym(nil, "tc_version") else { return nil }
        typealias Fn = @convention(c) (UnsafeMutablePointer<Int32>?, UnsafeMutablePointer<Int32>?,
                                       UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> UnsafePointer<CChar>?
        guard let s = unsafeBitCast(sym, to: Fn.self)(nil, nil, nil) else { return nil }
        return String(cString: s)
    }

    /// The file of the shared object that defines the `malloc` this process calls (the first
    /// definition in the dynamic linker's search order, which LD_PRELOAD puts first), resolved to
    /// its real path; nil when it cannot be told.
    public static func mallocProvider() -> String? {
        guard let file = callocbench_malloc_provider() else { return nil }
        return realPath(String(cString: file))
    }

    /// realpath(3), or the path itself when it cannot be resolved.
    public static func realPath(_ path: String) -> String {
        guard let resolved = realpath(path, nil) else { return path }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}
