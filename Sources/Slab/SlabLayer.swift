// SlabLayer: the bottom of a cache. Slabs on partial / full / empty lists, objects taken from and
// returned to the slabs' embedded free lists, slabs created from the page source when the cache
// grows and released back to it when the cache shrinks. One lock (Subtle/Lock.swift) protects the lists and
// every slab header; constructors and destructors never run under it.
//
// The per-CPU layer calls this layer in batches (a magazine's worth at a time), so the lock is
// taken once per magazine, not once per object.
//
// A cache with debug letters (SlabDebug.swift) has no per-CPU layer: each of its objects comes
// and goes here one at a time, and the debug hooks check and mark it under the lock, where its
// state changes together with its slab's free list.
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
    /// Masks an object address down to its slab's block (slabs are aligned to their size).
    let slabMask: UInt
    /// The slab headers, out of the slabs (Slab.swift).
    let table: SlabTable
    /// Divides slab offsets by the stride without a divide instruction.
    let divider: ExactDivider
    let pages: PageSource
    /// How magazines hold this cache's objects: 32-bit offsets from the range's base (Magazine.swift).
    let codec: RoundCodec
    /// Built with AddressSanitizer: cached objects are poisoned (SlabCache.swift, section 9).
    let poisons: Bool
    /// The debug letters' checks; nil for a cache without letters.
    let debug: SlabDebug?

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
        /// The batch free's record of the runs pass 1 left in use (see `free(_:)`): scratch space
        /// that only the lock holder touches, allocated by the first batch free (a cache that
        /// never returns magazines to its slabs pays nothing for it: 10,000 live caches are a
        /// tested case, and 16 KB of heap each would have been a page of RSS each).
        var runsInUse: UnsafeMutablePointer<Rounds>? = nil

        var slabCount: Int { partial.count + full.count + empty.count }
    }

    private let lists = Lock(Lists())
    /// For the fork handlers (Fork.swift).
    var mutexForFork: UnsafeMutablePointer<pthread_mutex_t> { lists.mutexForFork }

    /// Nil when the OS refuses the address space of the header table.
    init?(name: String, freeOperation: String, layout: SlabLayout, constructor: ((UnsafeMutableRawPointer) -> Void)?,
         destructor: ((UnsafeMutableRawPointer) -> Void)?, pages: PageSource, debug: SlabDebug? = nil) {
        guard let table = SlabTable(base: pages.base, rangeBytes: pages.size,
                                    slabShift: PageSource.pageShift + layout.order) else { return nil }
        self.table = table
        self.name = name
        self.freeOperation = freeOperation
        self.layout = layout
        self.constructor = constructor
        self.destructor = destructor
        self.slabMask = ~UInt(layout.slabBytes - 1)
        self.divider = ExactDivider(layout.stride)
        self.pages = pages
        codec = RoundCodec(base: pages.base)
        self.debug = debug
        // A debug cache poisons and checks its free objects itself (SlabDebug.swift), reading and
        // writing them under the lock: ASan's poisoning would report those accesses. So only
        // caches without debug letters tell ASan which objects are cached.
        poisons = cslab_asan_active() && debug == nil
    }

    deinit {
        table.unmap()
        lists.withLock { $0.runsInUse?.deallocate() }
    }

    /// The identity stored in every slab header of this cache.
    var ownerToken: UnsafeMutableRawPointer { Unmanaged.passUnretained(self).toOpaque() }

    // MARK: Allocation

    /// Fills `buffer` with up to `count` objects; fewer only when the page source is out of memory.
    /// `site`: the caller's record for a debug cache with U.
    func allocate(into buffer: UnsafeMutablePointer<UnsafeMutableRawPointer?>, count: Int,
                  site: UnsafePointer<SlabTrack>? = nil) -> Int {
        var got = 0
        while got < count {
            let satisfied = lists.withLock { l -> Bool in
                l.lockAcquisitions += 1
                let before = got
                while got < count {
                    var slab = l.partial.head
                    if slab == nil, let e = l.empty.head {
                        checkConsistency(e, on: .empty, operation: "kmem_cache_alloc")
                        l.empty.remove(e)
                        l.partial.insert(e)
                        slab = e
                    }
                    guard let s = slab else { break }
                    let capacity = s.pointee.capacity
                    if s.pointee.free_list != nil { prefetchFreeObjects(of: s) }
                    if let debug {
                        while got < count && s.pointee.in_use < capacity {
                            let object = s.popFree(linkOffset: layout.freeLinkOffset, stride: layout.stride)
                            debug.handOut(object, slab: s, site: site)
                            buffer[got] = object
                            got += 1
                        }
                    } else {
                        got += s.popFree(min(count - got, Int(capacity - s.pointee.in_use)), into: buffer + got,
                                         linkOffset: layout.freeLinkOffset, stride: layout.stride)
                    }
                    if s.pointee.in_use == capacity {
                        l.partial.remove(s)
                        l.full.insert(s)
                        checkConsistency(s, on: .full, operation: "kmem_cache_alloc")
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

    /// A slab's free list is a chain of dependent loads, one per object, in the order its objects
    /// were freed: after a random-order free, a cache miss for every line on the way. Asking for
    /// the slab's lines first (at most a page of them) lets the misses overlap, and the caller
    /// gets objects whose lines are on their way in.
    @inline(__always)
    private func prefetchFreeObjects(of slab: SlabPointer) {
        let bytes = min(Int(slab.pointee.bump) * layout.stride, PageSource.pageSize)
        cslab_prefetch_lines(slab.objectsStart, UInt64((bytes + 63) / 64))
    }

    /// Runs `body`, which calls this cache's constructor or destructor, marked as this cache's
    /// callbacks for the calling thread (cslab_tls_callback_owner): SlabCache.destroy refuses to
    /// run inside them.
    @inline(__always)
    private func withCallbacksOfThisCache(_ body: () -> Void) {
        let outer = cslab_tls_get_callback_owner()
        cslab_tls_set_callback_owner(ownerToken)
        defer { cslab_tls_set_callback_owner(outer) }
        body()
    }

    func allocateOne(site: UnsafePointer<SlabTrack>? = nil) -> UnsafeMutableRawPointer? {
        var object: UnsafeMutableRawPointer? = nil
        return allocate(into: &object, count: 1, site: site) == 1 ? object : nil
    }

    /// Carves a fresh block into a slab: its header, colour, and every object free by the bump
    /// index and constructed once (Bonwick: objects are constructed when their slab is created).
    private func grow() -> SlabPointer? {
        guard let block = pages.allocate(order: layout.order) else { return nil }
        let slab = table.header(of: block)
        lists.withLock { l in
            slab.carve(block: block, layout: layout, colour: l.nextColour, owner: ownerToken)
            l.nextColour = (l.nextColour + 1) % layout.colours
        }
        if let constructor {
            let objects = slab.objectsStart
            withCallbacksOfThisCache {
                for i in 0..<layout.objectsPerSlab { constructor(objects + i * layout.stride) }
            }
        }
        // Every object of a new slab is free (constructed, when there is a constructor).
        if poisons { cslab_asan_poison(slab.objectsStart, layout.objectsPerSlab * layout.stride) }
        debug?.prepare(slab)
        // The free fast path finds the slab's first object here (PageSource, section 4).
        pages.mapSlab(block, order: layout.order, firstObject: slab.objectsStart)
        return slab
    }

    // MARK: Free

    /// A run of objects to free: a magazine's rounds (32-bit offsets from this cache's range
    /// base, Magazine.swift).
    struct Rounds {
        let start: UnsafePointer<UInt32>
        let count: Int
    }

    /// Returns `count` objects to their slabs. REQUIRES: each belongs to this cache (checked by the
    /// caller's `SlabCache.checkOwnership`); the exact object boundary and an immediate double
    /// free are checked here, where a bad pointer would corrupt a free list; a debug cache's
    /// letters check the rest (`site`: the caller's record, with U).
    func free(_ buffer: UnsafePointer<UInt32>, count: Int, site: UnsafePointer<SlabTrack>? = nil) {
        withUnsafePointer(to: Rounds(start: buffer, count: count)) {
            free(UnsafeBufferPointer(start: $0, count: 1), site: site)
        }
    }

    /// Returns several magazines' rounds to their slabs under one lock (a depot being flushed,
    /// CPUCache.flushChunk magazines at a time).
    ///
    /// Two passes. The first checks every object and counts it free in its slab, touching only
    /// the slab's header; a slab whose last object in use comes back resets its free list and
    /// bump (Slab.swift). The second links the objects of the slabs still in use into their free
    /// lists. An object whose slab emptied is never touched: a FIFO drain of a magazine of 255
    /// 24-byte objects empties whole 170-object slabs, and a shrink after a drain empties nearly
    /// every slab, where writing a link into each object was a cache miss per object (a sixth of
    /// the sawtooth's time). A debug cache takes one object at a time (its letters check and mark
    /// each under the lock as its slab changes).
    ///
    /// Pass 1 records each run that leaves its slab with objects in use, and pass 2 visits only
    /// those runs: a slab that a run empties stays empty to the end of pass 1 (a later round of it
    /// would be a double free), so every round pass 2 must link lies in a recorded run. A shrink
    /// after a drain records a few runs a magazine (each of its slabs once per pass of the order
    /// it was popped in, until the slab's last run) and no longer walks the rounds of emptied
    /// slabs a second time (two fifths of the batch free's samples in the sawtooth). More runs
    /// than the record holds (frees in random order) and pass 2 walks every round, as before.
    ///
    /// Rounds of one slab that follow each other (a magazine filled from one slab, or drained in
    /// the order it was filled) are a run: the first pass checks each of them against the slab's
    /// header as it stood before the run and counts them in a register, and writes the header once
    /// per run (`countFree(_:)`), where it used to decrement `in_use` in memory once per object, a
    /// chain of dependent loads and stores. A run that frees more objects than the slab has in
    /// use is a double free, reported at the object that goes past the count, as before.
    func free(_ batches: UnsafeBufferPointer<Rounds>, site: UnsafePointer<SlabTrack>? = nil) {
        lists.withLock { l in
            l.lockAcquisitions += 1
            var total = 0
            if let debug {
                for batch in batches {
                    for i in 0..<batch.count {
                        let round = batch.start[i]
                        let object = codec.object(round)
                        let slab = table.header(ofRound: round)
                        let index = checkedFreeIndex(object, slab: slab)
                        let wasFull = slab.pointee.in_use == slab.pointee.capacity
                        debug.takeBack(object, slab: slab, operation: freeOperation, site: site)
                        // F: a slab about to become empty is checked whole before its free list is
                        // forgotten (countFree resets it): once per slab emptied, every entry is walked.
                        if wasFull || slab.pointee.in_use == 1 {
                            checkConsistency(slab, on: wasFull ? .full : .partial, operation: freeOperation)
                        }
                        slab.pushFree(object, index: index, linkOffset: layout.freeLinkOffset)
                        moveAfterFree(slab, wasFull: wasFull, lists: &l)
                    }
                    total += batch.count
                }
                l.activeObjects -= total
                return
            }
            let record: UnsafeMutablePointer<Rounds>
            if let r = l.runsInUse {
                record = r
            } else {
                record = .allocate(capacity: Self.runsInUseCapacity)
                l.runsInUse = record
            }
            var recorded = 0
            for batch in batches {
                var run: SlabPointer? = nil
                var runStart = 0
                var counted: UInt32 = 0
                // The run's previous round and its index (a stretch continues their step).
                var previous: UInt32 = 0
                var previousIndex = -1
                // Counts the run ending before `end` free in its slab; records it if the slab
                // still has objects in use (pass 2 links only recorded runs).
                func closeRun(before end: Int) {
                    guard let run, endRun(run, freed: counted, lists: &l) else { return }
                    if recorded < Self.runsInUseCapacity {
                        record[recorded] = Rounds(start: batch.start + runStart, count: end &- runStart)
                    }
                    recorded &+= 1
                }
                var i = 0
                while i < batch.count {
                    if i &+ Self.prefetchDistance < batch.count {
                        cslab_prefetch_lines(table.header(ofRound: batch.start[i &+ Self.prefetchDistance]), 1)
                    }
                    let round = batch.start[i]
                    let object = codec.object(round)
                    let slab = table.header(ofRound: round)
                    if slab != run {
                        closeRun(before: i)
                        run = slab
                        runStart = i
                        counted = 0
                        previousIndex = -1
                    }
                    // Once the run's objects reach the slab's count in use, this one is free already.
                    let index = checkedFreeIndex(object, slab: slab, counted: counted)
                    counted &+= 1
                    i &+= 1
                    if previousIndex >= 0 {
                        let more = stretch(after: round, step: round &- previous, index: index,
                                           indexStep: index &- previousIndex, slab: slab, counted: counted,
                                           in: batch, at: i)
                        counted &+= UInt32(truncatingIfNeeded: more)
                        i &+= more
                        previous = batch.start[i &- 1]
                        previousIndex = index &+ more &* (index &- previousIndex)
                    } else {
                        previous = round
                        previousIndex = index
                    }
                }
                closeRun(before: batch.count)
                total += batch.count
            }
            l.activeObjects -= total
            if recorded <= Self.runsInUseCapacity {
                // Each recorded run is one slab's: linked whole, or skipped whole when a later run
                // emptied the slab.
                for r in 0..<recorded {
                    let run = record[r]
                    let slab = table.header(ofRound: run.start[0])
                    guard slab.pointee.in_use > 0 else { continue }
                    for i in 0..<run.count {
                        if i &+ Self.prefetchDistance < run.count {
                            cslab_prefetch_lines(codec.object(run.start[i &+ Self.prefetchDistance]), 1)
                        }
                        link(run.start[i], slab: slab)
                    }
                }
                return
            }
            for batch in batches {
                var run: SlabPointer? = nil
                var inUse = false
                for i in 0..<batch.count {
                    if i &+ Self.prefetchDistance < batch.count {
                        let ahead = batch.start[i &+ Self.prefetchDistance]
                        if table.header(ofRound: ahead).pointee.in_use > 0 { cslab_prefetch_lines(codec.object(ahead), 1) }
                    }
                    let round = batch.start[i]
                    let slab = table.header(ofRound: round)
                    if slab != run {
                        run = slab
                        inUse = slab.pointee.in_use > 0
                    }
                    guard inUse else { continue }
                    link(round, slab: slab)
                }
            }
        }
    }

    /// Pass 1's stretch: the rounds of `batch` from `at` on that continue the step from the run's
    /// previous round to `round` (objects `indexStep` apart in `slab`: a magazine drained in the
    /// order it was filled holds its objects in such steps, one object per cache line a pass,
    /// CPUCache.stackForPops), checked together. A strictly monotone stretch holds no object
    /// twice, and it stops before the bump, so every object of it lies in `slab`, below the bump.
    /// The per-round checks then hold for each of its objects exactly when they hold for the
    /// stretch: none is the free list's head, and the slab has them all in use beyond the
    /// `counted` ones. Returns how many rounds the stretch takes (0 when there is none, or when a
    /// check fails: the caller then checks them one at a time and reports the first bad one, as
    /// before). Four instructions a round where the full check is some twenty.
    @inline(__always)
    private func stretch(after round: UInt32, step: UInt32, index: Int, indexStep: Int, slab: SlabPointer,
                         counted: UInt32, in batch: Rounds, at start: Int) -> Int {
        guard indexStep != 0 else { return 0 }
        // The stretch ends where the step leaves the objects below the bump: where objects of the
        // next slab continue the step (slabs side by side with no leftover, 256-byte objects), it
        // must not run on into them, or every round of the rest would scan them again.
        let bump = UInt(slab.pointee.bump)
        var j = start
        var expected = round &+ step
        var next = index &+ indexStep
        while j < batch.count && batch.start[j] == expected && UInt(bitPattern: next) < bump {
            j &+= 1
            expected &+= step
            next &+= indexStep
        }
        let more = j &- start
        guard more > 0, UInt64(counted) &+ UInt64(more) <= UInt64(slab.pointee.in_use) else { return 0 }
        if let head = slab.pointee.free_list {
            // The head's distance from `index` in steps: a double free when it is 1...more.
            let offset = UInt32(truncatingIfNeeded: UnsafeRawPointer(head) - UnsafeRawPointer(slab.objectsStart))
            let distance = divider.quotient(offset) &- index
            if distance % indexStep == 0, distance / indexStep >= 1, distance / indexStep <= more { return 0 }
        }
        return more
    }

    /// Pass 2 of the batch free for one object of a slab still in use: onto its free list (or the
    /// bump retracted). Checked in pass 1, which cannot see the same object twice in the batch
    /// while its slab stays in use; as in a single pass, its second visit finds it at the head of
    /// the free list or beyond the bump it retracted.
    @inline(__always)
    private func link(_ round: UInt32, slab: SlabPointer) {
        let object = codec.object(round)
        let offset = UInt32(truncatingIfNeeded: object - slab.objectsStart)
        let index = divider.quotient(offset)
        if slab.pointee.free_list == object || index >= Int(slab.pointee.bump) { reportDoubleFree(object) }
        slab.linkFree(object, index: index, linkOffset: layout.freeLinkOffset)
    }

    /// The runs left in use that the batch free records (16 bytes each): a flush of 64 magazines
    /// drained in order leaves a few a magazine (at most nine for 24-byte objects: a magazine's
    /// 255 come from two or three slabs, in three passes, CPUCache.stackForPops).
    static let runsInUseCapacity = 1024

    /// The end of a run of pass 1: `freed` objects of `slab` counted free at once, and the slab
    /// moved to the list it now belongs on.
    /// Returns whether the slab still has objects in use.
    @inline(__always)
    private func endRun(_ slab: SlabPointer, freed: UInt32, lists l: inout Lists) -> Bool {
        let wasFull = slab.pointee.in_use == slab.pointee.capacity
        // A slab emptied here resets its bump: pass 2 skips its objects, and a later run of them
        // in the batch is a double free the check in pass 1 sees.
        let inUse = slab.countFree(freed)
        moveAfterFree(slab, wasFull: wasFull, lists: &l)
        return inUse
    }

    /// After objects of `slab` came back: a full slab becomes partial, an emptied one empty.
    @inline(__always)
    private func moveAfterFree(_ slab: SlabPointer, wasFull: Bool, lists l: inout Lists) {
        if wasFull {
            l.full.remove(slab)
            l.partial.insert(slab)
        }
        if slab.pointee.in_use == 0 {
            l.partial.remove(slab)
            l.empty.insert(slab)
        }
    }

    /// How far ahead the batch free prefetches: in pass 1 the header of the round 8 ahead, in pass
    /// 2 the object 8 ahead if its slab is still in use (an emptied slab's objects are not
    /// written, and fetching them anyway made the newest- and oldest-first 1M batches of 256-byte
    /// objects 17-21% slower). A million 256-byte objects freed in random order, against the
    /// layer before the slab table: -9.8% without the prefetches, -17% with them (same-machine
    /// A/Bs, 10 samples a side).
    static let prefetchDistance = 8

    /// The index of `object` in `slab`, or a fatal report: not the start of an object, or already
    /// free (the last one freed to its slab, one the slab never handed out since it was last
    /// empty, or the slab has no object in use beyond the `counted` ones of this run, which the
    /// batch free has counted free but not yet written to the header).
    @inline(__always)
    private func checkedFreeIndex(_ object: UnsafeMutableRawPointer, slab: SlabPointer, counted: UInt32 = 0) -> Int {
        guard let index = slab.objectIndex(of: object, divider: divider) else { reportNotAnObject(object) }
        guard slab.pointee.free_list != object, index < Int(slab.pointee.bump), counted < slab.pointee.in_use else {
            reportDoubleFree(object)
        }
        return index
    }

    private func reportNotAnObject(_ object: UnsafeMutableRawPointer) -> Never {
        SlabReport.fatal("not the start of an object", cache: name, object: object, details: [
            "\(freeOperation)(\(name)): \(hex(object)) is not the start of an object "
                + "(slab \(hex(UInt(bitPattern: object) & slabMask)), object size \(layout.objectSize))"])
    }

    private func reportDoubleFree(_ object: UnsafeMutableRawPointer) -> Never {
        SlabReport.fatal("double free", cache: name, object: object, details: [
            "\(freeOperation)(\(name)): \(hex(object)) is already free in its slab"])
    }

    func freeOne(_ object: UnsafeMutableRawPointer, site: UnsafePointer<SlabTrack>? = nil) {
        // Callers passed the ownership test (FastPath.checkOwnership); a pointer outside the range,
        // or not a multiple of 8 into it, would come out of its round as another address, so it
        // is stopped here instead.
        let offset = UInt(bitPattern: object) &- pages.base
        guard offset < UInt(pages.size), offset & (1 << UInt(CSLAB_ROUND_SHIFT) - 1) == 0 else {
            reportNotAnObject(object)
        }
        var round = codec.round(object)
        free(&round, count: 1, site: site)
    }

    /// F: a slab about to change lists must add up (`slabProblems`: header, free list, counts), or
    /// the process stops. Run as a slab leaves the empty list, fills up, stops being full, and
    /// just before it becomes empty, when its free list is longest: so every free list is walked
    /// once each time its slab cycles through the lists.
    private func checkConsistency(_ slab: SlabPointer, on list: SlabList, operation: String) {
        guard let debug, debug.checksConsistency else { return }
        let problems = slabProblems(slab, on: list)
        guard let first = problems.first else { return }
        debug.fatal(operation, debug.defect(.slab, slab: slab, object: nil, summary: "slab \(hex(table.block(of: slab))) inconsistent: \(first)",
                                            note: (["it changed lists (F)"] + problems.dropFirst()).joined(separator: "; ")))
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
        release(victims)
        return victims.count * layout.slabBytes
    }

    /// Releases empty slabs, taken off every list, to the page source: destructors run, and from
    /// here a free of one of their objects is refused (the page map reads 0), as before they were
    /// carved. One call to the page source for all of them: it returns adjacent slabs to the OS
    /// together.
    /// Their headers are cleared under the lock, where headers are carved, and the table pages
    /// left with no slab in use go back to the OS (SlabTable.releaseUnusedPages).
    private func release(_ slabs: [SlabPointer]) {
        guard !slabs.isEmpty else { return }
        let blocks = slabs.map { table.block(of: $0) }
        for (slab, block) in zip(slabs, blocks) {
            if poisons { cslab_asan_unpoison(block, layout.slabBytes) }
            if let destructor {
                withCallbacksOfThisCache { slab.forEachObject(stride: layout.stride, destructor) }
            }
            pages.unmapSlab(block, order: layout.order)
        }
        lists.withLock { _ in
            for slab in slabs {
                slab.pointee.magic = 0
                slab.pointee.cache = nil
            }
            table.releaseUnusedPages(holding: slabs)
        }
        pages.release(blocks, order: layout.order)
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

    /// What is wrong with one slab on list `list`: its header, its free list (every entry a
    /// handed-out object, no cycle) and its count, in_use + |free list| + (capacity - bump) ==
    /// capacity, and whether its count fits the list. Empty when all hold. REQUIRES: the lock.
    func slabProblems(_ slab: SlabPointer, on list: SlabList) -> [String] {
        var problems: [String] = []
        let s = slab.pointee
        if s.magic != CSLAB_SLAB_MAGIC { problems.append("bad magic") }
        if s.cache != ownerToken { problems.append("wrong owner") }
        if s.list != list.rawValue { problems.append("on list \(list) but marked \(s.list)") }
        var free = Int(s.capacity) - Int(s.bump)
        if s.bump > s.capacity { problems.append("bump \(s.bump) > capacity \(s.capacity)") }
        var cursor = s.free_list
        while let object = cursor {
            guard let index = slab.objectIndex(of: object, divider: divider), index < Int(s.bump) else {
                problems.append("free-list entry \(hex(object)) is not a handed-out object")
                return problems
            }
            free += 1
            if free > Int(s.capacity) { problems.append("free list cycles"); return problems }
            cursor = cslab_load_link(object + layout.freeLinkOffset)
        }
        // in_use + |free_list| + (capacity - bump) == capacity
        if Int(s.in_use) + free != Int(s.capacity) {
            problems.append("in_use \(s.in_use) + free \(free) != capacity \(s.capacity)")
        }
        switch list {
        case .full where s.in_use != s.capacity: problems.append("not full on full list")
        case .empty where s.in_use != 0: problems.append("not empty on empty list")
        case .partial where s.in_use == s.capacity || s.in_use == 0:
            problems.append("\(s.in_use == 0 ? "empty" : "full") on partial list")
        default: break
        }
        return problems
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
                    problems += slabProblems(slab, on: ring.kind).map { "\(hex(table.block(of: slab))): \($0)" }
                    inUse += Int(slab.pointee.in_use)
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

    /// Every slab's problems (`slabProblems`) and, in a debug cache, every object's (SlabDebug:
    /// state, red zones, poison), by whether the slab holds it free: on its free list, or at or
    /// past its bump index. One walk under the lock, so exact even while other threads run.
    func validate() -> SlabValidation {
        lists.withLock { l in
            var defects: [SlabDefect] = []
            var slabs = 0, objects = 0, inUse = 0
            func layerDefect(_ slab: SlabPointer?, _ text: String) {
                defects.append(SlabDefect(kind: .slab, slab: slab.map { UInt(bitPattern: table.block(of: $0)) } ?? 0, object: nil, offset: nil, bytes: [],
                                          expected: nil, summary: text, details: []))
            }
            for ring in [l.partial, l.full, l.empty] {
                var n = 0
                ring.forEach { slab in
                    n += 1
                    slabs += 1
                    inUse += Int(slab.pointee.in_use)
                    let problems = slabProblems(slab, on: ring.kind)
                    for p in problems { layerDefect(slab, "slab \(hex(table.block(of: slab))) inconsistent: \(p)") }
                    guard problems.isEmpty, let debug else { return }
                    let capacity = Int(slab.pointee.capacity), bump = Int(slab.pointee.bump)
                    var free = [Bool](repeating: false, count: capacity)
                    for i in bump..<capacity { free[i] = true }
                    var cursor = slab.pointee.free_list
                    while let object = cursor {
                        free[slab.objectIndex(of: object, divider: divider).unsafelyUnwrapped] = true
                        cursor = cslab_load_link(object + layout.freeLinkOffset)
                    }
                    for i in 0..<capacity {
                        let object = slab.objectsStart + i * layout.stride
                        objects += 1
                        let defect = free[i] ? debug.freeObjectDefect(object, slab: slab, checkingPoison: true)
                                             : debug.allocatedObjectDefect(object, slab: slab)
                        if let defect { defects.append(defect) }
                    }
                }
                if n != ring.count { layerDefect(nil, "\(ring.kind) list counts \(ring.count) slabs, walked \(n)") }
            }
            if inUse != l.activeObjects {
                layerDefect(nil, "\(l.activeObjects) objects counted active, slabs say \(inUse)")
            }
            return SlabValidation(cache: name, slabs: slabs, objects: objects, defects: defects)
        }
    }

    /// The objects still allocated, for a report at destroy: how many, and the first `limit`
    /// described (SlabDebug.describe: with U, where they were allocated).
    func liveObjectsReport(limit: Int) -> (count: Int, lines: [String]) {
        lists.withLock { l in
            var lines: [String] = []
            var shown = 0
            for ring in [l.partial, l.full] {
                ring.forEach { slab in
                    let capacity = Int(slab.pointee.capacity), bump = Int(slab.pointee.bump)
                    var free = [Bool](repeating: false, count: capacity)
                    var cursor = slab.pointee.free_list
                    while let object = cursor, let i = slab.objectIndex(of: object, divider: divider), i < capacity, !free[i] {
                        free[i] = true
                        cursor = cslab_load_link(object + layout.freeLinkOffset)
                    }
                    for i in 0..<min(bump, capacity) where !free[i] && shown < limit {
                        let object = slab.objectsStart + i * layout.stride
                        shown += 1
                        lines += debug?.describe(object, slab: slab) ?? ["  object \(hex(object)) of slab \(hex(table.block(of: slab)))"]
                    }
                }
            }
            if l.activeObjects > shown { lines.append("  ... and \(l.activeObjects - shown) more") }
            return (l.activeObjects, lines)
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
        release(all)
    }
}
