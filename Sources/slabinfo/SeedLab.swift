// The seed lab: the classic kernel-module exercise (kmem_cache_create "mycache" with size 20,
// align 8, flags 0; kmem_cache_alloc; look at /proc/slabinfo; kmem_cache_free;
// kmem_cache_destroy), run against this library, printing each step as the module's printk does.

import ArgumentParser
import Slab

enum SeedLab {
    static let name = "mycache"
    static let size = 20
    static let align = 8

    /// Runs the lab. `raw`: print nothing but the registry in /proc/slabinfo 2.1 format, taken
    /// while the object is live (input for tools that read /proc/slabinfo).
    static func run(raw: Bool) throws {
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
        step("kmem_cache_alloc ok: object at 0x\(String(UInt(bitPattern: object), radix: 16))")

        if raw {
            print(SlabInfo.render(), terminator: "")
        } else {
            // One snapshot for both views, so they agree.
            let statistics = cache.statistics
            print(SlabInfo.header)
            print(SlabInfo.line(statistics))
            print(SlabInfo.report(statistics))
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
}
