// SlabLayer: the bottom of a cache. Slabs on partial / full / empty lists, objects taken from and
// returned to the slabs' embedded free lists, slabs created from the page source when the cache
// grows and released back to it when the cache shrinks. One lock (Subtle/Lock.swift) protects the lists and
// every slab header; constructors and destructors never run under it.
//
// The per-CPU layer calls this layer in batches (a magazine's worth at a time), so the lock is
// taken once per magazine, not once per object.
//
// Lock order: SlabLayer.lists before PageSource.state (slab creation and release take the page
// source's lock only after dropping ours).

import CSlab


#if canImport(Glibc)
import Glibc
#endif

final class SlabLayer: @unchecked Sendable {
    let name: String
    /// The operation bad frees are reported under (SlabCache.freeOperation).
    let freeOperation: String
    let layout: SlabLayout
    let constructor: ((UnsafeMutableRawPointer) -> Void)?
    let destructor: ((UnsafeMutableRawPointer) -> Void)?
    /// Masks an object address down to its slab header (slabs are aligned to their size).
    let slabMask: UInt
    /// Divides slab offsets by the stride without a divide instruction.
    let divider: ExactDivider
    let pages: PageSource
    /// Built with AddressSanitizer: cached objects are poisoned (SlabCache.swift, section 9).
    let poisons = cslab_asan_active()

    struct Lists: @unchecked Sendable {
        var partial = SlabRing(.partial)
        var full = SlabRing(.full)
        var empty = SlabRing(.empty)
        /// Objects handed out of slabs (to callers, or held in magazines above this layer).
        var activeObjects = 0
        var nextColour = 0
        var slabsCreated = 0
        var slabsReleased = 0
        var lockAcquisitions = 0

        var slabCount: Int { partial.count + full.count + empty.count }
    }

    private let lists = Lock(Lists())

    init(name: String, freeOperation: String, layout: SlabLayout, constructor: ((UnsafeMutableRawPointer) -> Void)?,
         destructor: ((UnsafeMutableRawPointer) -> Void)?, pages: PageSource) {
        self.name = name
        self.freeOperation = freeOperation
        self.layout = layout
        self.constructor = constructor
        self.destructor = destructor
        self.slabMask = ~UInt(layout.slabBytes - 1)
        self.divider = ExactDivider(layout.stride)
        self.pages = pages
    }

    /// The identity stored in every slab header of this cache.
    var ownerToken: UnsafeMutableRawPointer { Unmanaged.passUnretained(self).toOpaque() }

    // MARK: Allocation

    /// Fills `buffer` with up to `count` objects; fewer only when the page source is out of memory.
    func allocate(into buffer: UnsafeMutablePointer<UnsafeMutableRawPointer?>, count: Int) -> Int {
        var got = 0
        while got < count {
            let satisfied = lists.withLock { l -> Bool in
                l.lockAcquisitions += 1
                let before = got
                while got < count {
                    var slab = l.partial.head
                    if slab == nil, let e = l.empty.head {
                        l.empty.remove(e)
                        l.partial.insert(e)
                        slab = e
                    }
                    guard let s = slab else { break }
                    let capacity = s.pointee.capacity
                    while got < count && s.pointee.in_use < capacity {
                        buffer[got] = s.popFree(linkOffset: layout.freeLinkOffset, stride: layout.stride)
                        got += 1
                    }
                    if s.pointee.in_use == capacity {
                        l.partial.remove(s)
                        l.full.insert(s)
                    }
                }
                l.activeObjects += got - before
                return got == count
            }
            if satisfied { break }
            // Grow outside the lock: the page source has its own lock, constructors run user code.
            // The new slab joins the empty list (it is empty): if another thread's objects satisfy
            // us first, it must still be found by shrink(), and the partial list only ever holds
            // slabs with 0 < in_use < capacity when the lock is free.
            guard let slab = grow() else { break }
            lists.withLock { l in
                l.empty.insert(slab)
                l.slabsCreated += 1
            }
        }
        return got
    }

    func allocateOne() -> UnsafeMutableRawPointer? {
        var object: UnsafeMutableRawPointer? = nil
        return allocate(into: &object, count: 1) == 1 ? object : nil
    }

    private func grow() -> SlabPointer? {
        guard let block = pages.allocate(order: layout.order) else { return nil }
        let colour = lists.withLock { l -> Int in
            defer { l.nextColour = (l.nextColour + 1) % layout.colours }
            return l.nextColour
        }
        let slab = SlabPointer.carve(block: block, layout: layout, colour: colour, owner: ownerToken,
                                     constructor: constructor)
        // Every object of a new slab is free (constructed, when there is a constructor).
        if poisons { cslab_asan_poison(slab.objectsStart, layout.objectsPerSlab * layout.stride) }
        return slab
    }

    // MARK: Free

    /// Returns `count` objects to their slabs. REQUIRES: each belongs to this cache (checked by the
    /// caller's `SlabCache.checkOwnership`); the exact object boundary and an immediate double
    /// free are checked here, where a bad pointer would corrupt a free list.
    func free(_ buffer: UnsafePointer<UnsafeMutableRawPointer?>, count: Int) {
        lists.withLock { l in
            l.lockAcquisitions += 1
            for i in 0..<count {
                let object = buffer[i]!
                let slab = SlabPointer(bitPattern: UInt(bitPattern: object) & slabMask)!
                guard let index = slab.objectIndex(of: object, divider: divider) else {
                    SlabReport.fatal("not the start of an object", cache: name, object: object, details: [
                        "\(freeOperation)(\(name)): \(hex(object)) is not the start of an object "
                            + "(slab \(hex(slab)), object size \(layout.objectSize))"])
                }
                // Cheap double-free checks: the object is the last one freed to this slab, or one
                // the slab never handed out since it was last empty, or the slab has none in use.
                guard slab.pointee.free_list != object, index < Int(slab.pointee.bump), slab.pointee.in_use > 0 else {
                    SlabReport.fatal("double free", cache: name, object: object, details: [
                        "\(freeOperation)(\(name)): \(hex(object)) is already free in its slab"])
                }
                let wasFull = slab.pointee.in_use == slab.pointee.capacity
                slab.pushFree(object, index: index, linkOffset: layout.freeLinkOffset)
                if wasFull {
                    l.full.remove(slab)
                    l.partial.insert(slab)
                }
                if slab.pointee.in_use == 0 {
                    l.partial.remove(slab)
                    l.empty.insert(slab)
                }
            }
            l.activeObjects -= count
        }
    }

    func freeOne(_ object: UnsafeMutableRawPointer) {
        var o: UnsafeMutableRawPointer? = object
        free(&o, count: 1)
    }

    // MARK: Shrink and destroy

    /// Releases every empty slab to the page source (destructors run first). Returns the bytes
    /// released.
    @discardableResult
    func releaseEmptySlabs() -> Int {
        let victims = lists.withLock { l -> [SlabPointer] in
            let v = l.empty.removeAll()
            l.slabsReleased += v.count
            return v
        }
        for slab in victims { release(slab) }
        return victims.count * layout.slabBytes
    }

    private func release(_ slab: SlabPointer) {
        if poisons { cslab_asan_unpoison(slab, layout.slabBytes) }
        if let destructor {
            slab.forEachObject(stride: layout.stride, destructor)
        }
        slab.pointee.magic = 0
        slab.pointee.cache = nil
        pages.release(UnsafeMutableRawPointer(slab), order: layout.order)
    }

    var activeObjects: Int { lists.withLock { $0.activeObjects } }

    struct Snapshot {
        var activeObjects, totalObjects, activeSlabs, totalSlabs, emptySlabs: Int
        var slabsCreated, slabsReleased, lockAcquisitions: Int
    }

    func snapshot() -> Snapshot {
        lists.withLock { l in
            Snapshot(activeObjects: l.activeObjects,
                     totalObjects: l.slabCount * layout.objectsPerSlab,
                     activeSlabs: l.partial.count + l.full.count,
                     totalSlabs: l.slabCount, emptySlabs: l.empty.count,
                     slabsCreated: l.slabsCreated, slabsReleased: l.slabsReleased,
                     lockAcquisitions: l.lockAcquisitions)
        }
    }

    /// Walks every slab and checks the layer's equations; returns the problems found (empty when
    /// all hold). For tests and debugging: it takes the lock for the whole walk.
    func checkInvariants() -> [String] {
        lists.withLock { l in
            var problems: [String] = []
            var inUse = 0
            func check(_ ring: SlabRing) {
                var n = 0
                ring.forEach { slab in
                    n += 1
                    let s = slab.pointee
                    if s.magic != CSLAB_SLAB_MAGIC { problems.append("\(hex(slab)): bad magic") }
                    if s.cache != ownerToken { problems.append("\(hex(slab)): wrong owner") }
                    if s.list != ring.kind.rawValue { problems.append("\(hex(slab)): on list \(ring.kind) but marked \(s.list)") }
                    var free = Int(s.capacity) - Int(s.bump)
                    if s.bump > s.capacity { problems.append("\(hex(slab)): bump \(s.bump) > capacity \(s.capacity)") }
                    var cursor = s.free_list
                    while let object = cursor {
                        guard let index = slab.objectIndex(of: object, divider: divider), index < Int(s.bump) else {
                            problems.append("\(hex(slab)): free-list entry \(hex(object)) is not a handed-out object")
                            break
                        }
                        free += 1
                        if free > Int(s.capacity) { problems.append("\(hex(slab)): free list cycles"); break }
                        cursor = cslab_load_link(object + layout.freeLinkOffset)
                    }
                    // in_use + |free_list| + (capacity - bump) == capacity
                    if Int(s.in_use) + free != Int(s.capacity) {
                        problems.append("\(hex(slab)): in_use \(s.in_use) + free \(free) != capacity \(s.capacity)")
                    }
                    switch ring.kind {
                    case .full where s.in_use != s.capacity: problems.append("\(hex(slab)): not full on full list")
                    case .empty where s.in_use != 0: problems.append("\(hex(slab)): not empty on empty list")
                    case .partial where s.in_use == s.capacity || s.in_use == 0:
                        problems.append("\(hex(slab)): \(s.in_use == 0 ? "empty" : "full") on partial list")
                    default: break
                    }
                    inUse += Int(s.in_use)
                }
                if n != ring.count { problems.append("\(ring.kind) list counts \(ring.count), walked \(n)") }
            }
            check(l.partial)
            check(l.full)
            check(l.empty)
            // activeObjects == sum of in_use over all slabs
            if inUse != l.activeObjects { problems.append("activeObjects \(l.activeObjects) != sum of in_use \(inUse)") }
            return problems
        }
    }

    /// Releases every slab. REQUIRES: no object is in use.
    func destroy() {
        let all = lists.withLock { l -> [SlabPointer] in
            precondition(l.activeObjects == 0, "SlabLayer.destroy(\(name)) with \(l.activeObjects) objects in use")
            let v = l.partial.removeAll() + l.full.removeAll() + l.empty.removeAll()
            l.slabsReleased += v.count
            return v
        }
        for slab in all { release(slab) }
    }
}
