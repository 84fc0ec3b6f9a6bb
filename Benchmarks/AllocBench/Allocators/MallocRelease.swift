// Asking a malloc to give its free memory back to the OS: each allocator's own call, so that the
// RSS a sawtooth leaves after a drain compares allocators that were all asked, not the one that
// was (the slab's shrink()) with peers that never were.
//
// 1. The calls
// ------------
//   glibc     malloc_trim(0): consolidates the free chunks and madvises away every free page of
//             every arena (and trims the top of the main heap).
//   jemalloc  mallctl("arena.4096.purge", NULL, NULL, NULL, 0): 4096 is MALLCTL_ARENAS_ALL, every
//             arena's unused dirty (and muzzy) pages are purged at once instead of after their
//             decay time. The name is checked with mallctlnametomib when resolved, so a jemalloc
//             that does not know it is reported, not called in vain.
//   mimalloc  mi_collect(true): the forced collection of the calling thread's heap and the
//             segment cache.
//   tcmalloc  MallocExtension_ReleaseFreeMemory(): gperftools' C API, returns the page heap's
//             free spans to the OS.
//   A `preload:` library is asked with whichever of these it defines itself (jemalloc's,
//   mimalloc's, gperftools', or a malloc_trim of its own), never with glibc's malloc_trim, which
//   would ask an arena that serves nothing.
//
// 2. Resolved where the allocator runs
// ------------------------------------
//   A peer serves malloc only in its own child (LD_PRELOAD; jemalloc could not even be dlopen'ed
//   into a running process: it needs initial-exec TLS). So the entry point is looked up in the
//   child, with dlsym(RTLD_DEFAULT), and the object that defines it is checked with dladdr: the
//   call must come from the allocator named, not from another library that happens to define the
//   name. When it cannot be found the adapter calls nothing and says so (`ReleaseCall.found`
//   false, with the reason): the reports and the chart print it instead of pretending.

import CAllocBench

#if canImport(Glibc)
import Glibc
#endif

/// A malloc's own call to return free memory to the OS, resolved in this process.
/// @unchecked Sendable: C function pointers, which are immutable and callable from any thread.
public struct MallocRelease: @unchecked Sendable {
    typealias MallctlFunction = @convention(c) (UnsafePointer<CChar>?, UnsafeMutableRawPointer?,
                                                UnsafeMutablePointer<Int>?, UnsafeMutableRawPointer?, Int) -> Int32
    typealias MallctlNameToMIBFunction = @convention(c) (UnsafePointer<CChar>?, UnsafeMutablePointer<Int>?,
                                                         UnsafeMutablePointer<Int>?) -> Int32

    /// The resolved entry point.
    enum EntryPoint {
        case mallocTrim(@convention(c) (Int) -> Int32)
        case jemallocPurge(MallctlFunction)
        case mimallocCollect(@convention(c) (Bool) -> Void)
        case gperftoolsRelease(@convention(c) () -> Void)
        case none
    }

    let entryPoint: EntryPoint
    /// What is called, for the reports.
    public let releaseCall: ReleaseCall

    static let mallocTrimCall = "malloc_trim(0)"
    /// MALLCTL_ARENAS_ALL (4096 in jemalloc 5) in place of an arena index: every arena.
    static let jemallocPurgeName = "arena.4096.purge"
    static let jemallocPurgeCall = "mallctl(\"arena.4096.purge\")"
    static let mimallocCollectCall = "mi_collect(true)"
    static let gperftoolsReleaseCall = "MallocExtension_ReleaseFreeMemory()"

    /// Makes the call (nothing when it was not found).
    @inline(__always)
    public func release() {
        switch entryPoint {
        case .mallocTrim(let trim): _ = trim(0)
        case .jemallocPurge(let mallctl): _ = mallctl(Self.jemallocPurgeName, nil, nil, nil, 0)
        case .mimallocCollect(let collect): collect(true)
        case .gperftoolsRelease(let releaseFreeMemory): releaseFreeMemory()
        case .none: break
        }
    }

    /// The release call of the allocator `id`, as this process can make it. Call it in the
    /// process where `id` serves malloc (the cell's child).
    public static func resolve(for id: AllocatorID) -> MallocRelease {
        switch id {
        case .glibc: return mallocTrim(in: nil) ?? missing(mallocTrimCall, "malloc_trim is not defined")
        case .jemalloc: return jemallocPurge(in: nil) ?? missing(jemallocPurgeCall, jemallocMissing(in: nil))
        case .mimalloc: return mimallocCollect(in: nil) ?? missing(mimallocCollectCall, "mi_collect is not defined (mimalloc is not loaded)")
        case .tcmalloc:
            return gperftoolsRelease(in: nil)
                ?? missing(gperftoolsReleaseCall, "MallocExtension_ReleaseFreeMemory is not defined (tcmalloc is not loaded)")
        default:
            guard let spec = id.preloadSpec else {
                return missing("a release call", "\(id.name) does not serve malloc through a library")
            }
            // The library's own entry point, whichever it has.
            let library = AllocatorVersion.realPath(spec.path)
            let found = jemallocPurge(in: library) ?? mimallocCollect(in: library) ?? gperftoolsRelease(in: library)
                ?? mallocTrim(in: library)
            let file = spec.path.split(separator: "/").last.map(String.init) ?? spec.path
            return found ?? missing("mallctl, mi_collect, MallocExtension_ReleaseFreeMemory or malloc_trim",
                                    "\(file) defines none of mallctl, mi_collect, MallocExtension_ReleaseFreeMemory, malloc_trim")
        }
    }

    static func missing(_ call: String, _ why: String) -> MallocRelease {
        MallocRelease(entryPoint: .none, releaseCall: ReleaseCall(call: call, found: false, missing: why))
    }

    /// The address of `name` in this process, when it is defined, and by `library` (a real path)
    /// when one is given.
    static func symbol(_ name: String, definedBy library: String?) -> UnsafeMutableRawPointer? {
        var address: UnsafeMutableRawPointer? = nil
        guard let file = callocbench_symbol_provider(name, &address), let address else { return nil }
        if let library, AllocatorVersion.realPath(String(cString: file)) != library { return nil }
        return address
    }

    static func mallocTrim(in library: String?) -> MallocRelease? {
        guard let p = symbol("malloc_trim", definedBy: library) else { return nil }
        return MallocRelease(entryPoint: .mallocTrim(unsafeBitCast(p, to: (@convention(c) (Int) -> Int32).self)),
                             releaseCall: ReleaseCall(call: mallocTrimCall, found: true))
    }

    static func jemallocPurge(in library: String?) -> MallocRelease? {
        guard let p = symbol("mallctl", definedBy: library), let toMIB = symbol("mallctlnametomib", definedBy: library) else {
            return nil
        }
        // The name must be one this jemalloc knows (asking has no side effect).
        var mib = [Int](repeating: 0, count: 4)
        var length = mib.count
        let known = unsafeBitCast(toMIB, to: MallctlNameToMIBFunction.self)(jemallocPurgeName, &mib, &length) == 0
        guard known else { return nil }
        return MallocRelease(entryPoint: .jemallocPurge(unsafeBitCast(p, to: MallctlFunction.self)),
                             releaseCall: ReleaseCall(call: jemallocPurgeCall, found: true))
    }

    /// Why jemalloc's purge could not be resolved: not loaded, or the name unknown to it.
    static func jemallocMissing(in library: String?) -> String {
        symbol("mallctl", definedBy: library) == nil
            ? "mallctl is not defined (jemalloc is not loaded)"
            : "this jemalloc does not know \"\(jemallocPurgeName)\" (mallctlnametomib refused it)"
    }

    static func mimallocCollect(in library: String?) -> MallocRelease? {
        guard let p = symbol("mi_collect", definedBy: library) else { return nil }
        return MallocRelease(entryPoint: .mimallocCollect(unsafeBitCast(p, to: (@convention(c) (Bool) -> Void).self)),
                             releaseCall: ReleaseCall(call: mimallocCollectCall, found: true))
    }

    static func gperftoolsRelease(in library: String?) -> MallocRelease? {
        guard let p = symbol("MallocExtension_ReleaseFreeMemory", definedBy: library) else { return nil }
        return MallocRelease(entryPoint: .gperftoolsRelease(unsafeBitCast(p, to: (@convention(c) () -> Void).self)),
                             releaseCall: ReleaseCall(call: gperftoolsReleaseCall, found: true))
    }
}
