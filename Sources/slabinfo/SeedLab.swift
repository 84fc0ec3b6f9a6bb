// The seed lab: the classic kernel-module exercise (kmem_cache_create "mycache" with size 20,
// align 8, flags 0; kmem_cache_alloc; look at /proc/slabinfo; kmem_cache_free;
// kmem_cache_destroy), run against this library, printing each step as the module's printk does.
// Beside it, the lab's other half: kmalloc of a small size (a size class) and of a large one (the
// page allocator), which also brings kmalloc's caches into the slabinfo the lab prints. Run with
// SLAB_DEBUG (SLAB_DEBUG=FZPU,mycache) and the summary names the debug letters in force.

import ArgumentParser
import Slab
import SlabTop

enum SeedLab {
    static let name = "mycache"
    static let size = 20
    static let align = 8
    /// A size-class request (kmalloc-128) and a page-allocator one (order 3: 5 pages round up to 8).
    static let smallRequest = 100
    static let largeRequest = 20_000

    /// Runs the lab. `raw`: print nothing but the registry in /proc/slabinfo 2.1 format (with
    /// `buddyinfo`, the page allocators in /proc/buddyinfo format instead), taken while the
    /// objects are live (input for tools that read those files).
    static func run(raw: Bool, buddyinfo: Bool) throws {
        func step(_ text: String) { if !raw { print(text) } }

        let cache: SlabCache
        do {
            cache = try SlabCache(name: name, size: size, align: align, flags: [])
        } catch {
            throw fail("kmem_cache_create failed: \(error)")
        }
        step("kmem_cache_create ok: name=\(cache.name) size=\(size) align=\(align) flags=0 objsize=\(cache.objectSize)")

        guard let object = cache.allocate() else {
            throw fail("kmem_cache_alloc failed: \(SlabError.outOfMemory(cache: name))")
        }
        step("kmem_cache_alloc ok: object at \(hex(object))")

        var allocations: [UnsafeMutableRawPointer] = []
        for request in [smallRequest, largeRequest] {
            let p: UnsafeMutableRawPointer
            do {
                p = try kmalloc(request)
            } catch {
                throw fail("kmalloc(\(request)) failed: \(error)")
            }
            let origin = Kmalloc.origin(of: p).map { "\($0)" } ?? "?"
            step("kmalloc(\(request)) ok: \(hex(p)) from \(origin), ksize \(ksize(p))")
            allocations.append(p)
        }

        if raw {
            print(buddyinfo ? BuddyInfo.render() : SlabInfo.render(), terminator: "")
        } else {
            // One snapshot for every view, so they agree.
            let statistics = Registry.shared.caches.map(\.statistics)
            let rows = statistics.map(SlabInfoRow.init)
            print(SlabInfo.render(rows: rows), terminator: "")
            print(ProcSlabInfo(rows: rows).summary())
            // The debug letters in force (set per cache, or by SLAB_DEBUG): not in the 2.1 lines,
            // so a line of their own under the summary, in its style, when any cache has one.
            let debugged = statistics.filter { !$0.debugLetters.isEmpty }
            if !debugged.isEmpty {
                let label = "Debug letters (F Z P U)"
                print(" " + label + String(repeating: " ", count: 35 - label.count) + ": "
                      + debugged.map { "\($0.name) \($0.debugLetters)" }.joined(separator: ", "))
            }
            if let mine = statistics.first(where: { $0.name == name }) { print(SlabInfo.report(mine)) }
            if buddyinfo {
                print("Page allocators of this library (free blocks in the arenas carved so far: address space, not memory)")
                print(ProcBuddyInfo(zones: BuddyInfo.zones).report(pageSize: SlabLayout.pageSize), terminator: "")
            }
        }

        for p in allocations {
            let origin = Kmalloc.origin(of: p).map { "\($0)" } ?? "?"
            kfree(p)
            step("kfree ok: \(hex(p)) (\(origin))")
        }
        cache.free(object)
        step("kmem_cache_free ok")
        do {
            try cache.destroy()
        } catch {
            throw fail("kmem_cache_destroy failed: \(error)")
        }
        step("kmem_cache_destroy ok")
        step("destroyed \(name)")
    }

    static func hex(_ p: UnsafeMutableRawPointer) -> String { "0x" + String(UInt(bitPattern: p), radix: 16) }
}
