// General-purpose allocators: what the mixed-size workloads allocate from, and kmalloc as an
// allocator of the matrix.
//
// 1. GeneralAllocator
// -------------------
//   allocate(bytes:) of any size, and free(_:) without one: malloc/free (glibc or the preloaded
//   peer) and kmalloc/kfree. A typed cache (SlabAllocator) is not one: a SlabCache serves the
//   size it was created with, which is why the typed caches have no cells in the mixed-size
//   workloads. Workloads stay generic over the adapter, as for FixedSizeAllocator, so every
//   (workload, adapter) pair is specialised and its loop holds a malloc call or kmalloc's inlined
//   fast path, never an indirect call.
//
// 2. KmallocAllocator
// -------------------
//   On the fixed-size workloads, kmalloc(size) and kfree(p): the general path (the size's class
//   from a table, that class's fast path, kfree's class from the address) beside a typed cache's
//   allocate()/free() doing the same work, so the report shows what generality costs. The size
//   classes are set up before the cell (no timed loop pays for it), and after it every kmalloc
//   allocation must have been freed: a leak fails the cell, as a leaking slab cell fails its
//   destroy(). releaseFreeMemory() shrinks every class (cached objects back to their slabs, empty
//   slabs to the OS), as it shrinks the cache of a slab cell.
//
// 3. SizedKmallocAllocator (kmalloc-sized)
// ----------------------------------------
//   The same, freeing with kfree(p, size:): a caller that knows the size it asked for tells the
//   free, which then takes the class from the size rather than from the pointer (C23's
//   free_sized, jemalloc's sdallocx). On the fixed-size workloads only: its frees are told the
//   cell's size.

import Slab

#if canImport(Glibc)
import Glibc
#endif

/// A source of objects of any size. Conformers must be cheap to copy and safe to use from several
/// threads at once.
public protocol GeneralAllocator: Sendable {
    /// One object of `bytes` bytes (1...1024 in the mixed workloads). Stops the process when
    /// memory is exhausted.
    func allocate(bytes: Int) -> UnsafeMutableRawPointer
    /// Frees an object from `allocate(bytes:)`.
    func free(_ object: UnsafeMutableRawPointer)
    /// Asks the allocator to return its free memory to the OS with its own call (kmalloc:
    /// Kmalloc.shrink(); malloc: the serving allocator's, see MallocRelease.swift).
    func releaseFreeMemory()
}

extension MallocAllocator: GeneralAllocator {
    @inline(__always)
    public func allocate(bytes: Int) -> UnsafeMutableRawPointer {
        guard let p = malloc(bytes) else { outOfMemory("malloc", size: bytes) }
        return p
    }
}

/// kmalloc and kfree, for a fixed size (`allocate()`) or any (`allocate(bytes:)`).
public struct KmallocAllocator: FixedSizeAllocator, GeneralAllocator {
    public let size: Int
    public var constructsObjects: Bool { false }

    /// Sets kmalloc up (its range and 13 caches) before the cell's first timed loop.
    public init(size: Int) throws {
        self.size = size
        try Kmalloc.setUp()
    }

    @inline(__always)
    public func allocate() -> UnsafeMutableRawPointer { allocate(bytes: size) }

    @inline(__always)
    public func allocate(bytes: Int) -> UnsafeMutableRawPointer {
        do {
            return try kmalloc(bytes)
        } catch {
            outOfMemory("kmalloc", size: bytes)
        }
    }

    @inline(__always)
    public func free(_ object: UnsafeMutableRawPointer) { kfree(object) }

    public func releaseFreeMemory() { Kmalloc.shrink() }

    public var releaseCall: ReleaseCall { ReleaseCall(call: "Kmalloc.shrink()", found: true) }

    /// Ends the cell: nothing kmalloc handed out may still be held (the workload leaked otherwise).
    public func checkNothingLive() throws {
        let live = Kmalloc.statistics.liveAllocations
        guard live == 0 else {
            throw WorkloadFailure(description: "kmalloc: \(live) allocations still live after the cell (the workload leaked them)")
        }
    }
}

/// kmalloc(size) and kfree(p, size:) for a fixed size (section 3).
public struct SizedKmallocAllocator: FixedSizeAllocator {
    public let kmalloc: KmallocAllocator
    public var size: Int { kmalloc.size }
    public var constructsObjects: Bool { false }

    public init(_ kmalloc: KmallocAllocator) { self.kmalloc = kmalloc }

    @inline(__always)
    public func allocate() -> UnsafeMutableRawPointer { kmalloc.allocate() }

    @inline(__always)
    public func free(_ object: UnsafeMutableRawPointer) { kfree(object, size: kmalloc.size) }

    public func releaseFreeMemory() { kmalloc.releaseFreeMemory() }

    public var releaseCall: ReleaseCall { kmalloc.releaseCall }
}
