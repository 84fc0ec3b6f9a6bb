// Slab: one slab seen through its header (the C struct `cslab_slab`, so the layout is fixed).
// All raw pointer arithmetic on slabs lives here.
//
// Invariants (checked by SlabLayer.checkInvariants):
//   in_use + |free_list| == capacity
//   objects == slab + header + colour, and every free-list entry is objects + i*stride, i < capacity

import CSlab

typealias SlabPointer = UnsafeMutablePointer<cslab_slab>

/// Which list of the slab layer a slab is on.
enum SlabList: UInt32 {
    case partial = 1, full = 2, empty = 3
}

extension UnsafeMutablePointer where Pointee == cslab_slab {
    /// Carves a fresh block into a slab: header, colour, objects linked into the free list, each
    /// constructed once (Bonwick: objects are constructed when their slab is created).
    static func carve(block: UnsafeMutableRawPointer, layout: SlabLayout, colour: Int,
                      owner: UnsafeMutableRawPointer,
                      constructor: ((UnsafeMutableRawPointer) -> Void)?) -> SlabPointer {
        let slab = block.bindMemory(to: cslab_slab.self, capacity: 1)
        let offset = layout.objectsOffset(colour: colour)
        let objects = block + offset
        slab.pointee = cslab_slab(
            magic: CSLAB_SLAB_MAGIC, cache: owner, free_list: nil, in_use: 0,
            capacity: UInt32(layout.objectsPerSlab), next: nil, prev: nil,
            objects: objects.assumingMemoryBound(to: CChar.self), list: 0,
            colour: UInt32(offset - layout.firstObjectOffset))
        // Link back to front so the free list hands objects out in address order.
        var next: UnsafeMutableRawPointer? = nil
        var i = layout.objectsPerSlab - 1
        while i >= 0 {
            let object = objects + i * layout.stride
            constructor?(object)
            (object + layout.freeLinkOffset).storeBytes(of: next, as: UnsafeMutableRawPointer?.self)
            next = object
            i -= 1
        }
        slab.pointee.free_list = next
        return slab
    }

    @inline(__always) var objectsStart: UnsafeMutableRawPointer {
        UnsafeMutableRawPointer(pointee.objects)!
    }

    /// Takes one free object. REQUIRES: in_use < capacity.
    @inline(__always)
    func popFree(linkOffset: Int) -> UnsafeMutableRawPointer {
        let object = pointee.free_list!
        pointee.free_list = (object + linkOffset).load(as: UnsafeMutableRawPointer?.self)
        pointee.in_use += 1
        return object
    }

    /// Returns one object to the slab. REQUIRES: the object belongs to this slab and is in use.
    @inline(__always)
    func pushFree(_ object: UnsafeMutableRawPointer, linkOffset: Int) {
        (object + linkOffset).storeBytes(of: pointee.free_list, as: UnsafeMutableRawPointer?.self)
        pointee.free_list = object
        pointee.in_use -= 1
    }

    /// Runs `body` on every object of the slab (for destructors when the slab is released).
    func forEachObject(stride: Int, _ body: (UnsafeMutableRawPointer) -> Void) {
        let start = objectsStart
        for i in 0..<Int(pointee.capacity) { body(start + i * stride) }
    }

    /// Index of `object` in this slab, or nil when it is not the start of one of its objects.
    func objectIndex(of object: UnsafeRawPointer, stride: Int) -> Int? {
        let offset = object - UnsafeRawPointer(objectsStart)
        guard offset >= 0, offset % stride == 0, offset / stride < Int(pointee.capacity) else { return nil }
        return offset / stride
    }
}

/// An intrusive doubly linked list of slabs, threaded through the headers' next/prev.
struct SlabRing: @unchecked Sendable {
    private(set) var head: SlabPointer? = nil
    private(set) var count = 0
    let kind: SlabList

    init(_ kind: SlabList) { self.kind = kind }

    mutating func insert(_ slab: SlabPointer) {
        slab.pointee.prev = nil
        slab.pointee.next = head
        head?.pointee.prev = slab
        head = slab
        slab.pointee.list = kind.rawValue
        count += 1
    }

    mutating func remove(_ slab: SlabPointer) {
        assert(slab.pointee.list == kind.rawValue, "slab on the wrong list")
        if let prev = slab.pointee.prev { prev.pointee.next = slab.pointee.next } else { head = slab.pointee.next }
        slab.pointee.next?.pointee.prev = slab.pointee.prev
        slab.pointee.next = nil
        slab.pointee.prev = nil
        slab.pointee.list = 0
        count -= 1
    }

    mutating func removeAll() -> [SlabPointer] {
        var all: [SlabPointer] = []
        all.reserveCapacity(count)
        while let slab = head { remove(slab); all.append(slab) }
        return all
    }

    func forEach(_ body: (SlabPointer) -> Void) {
        var cursor = head
        while let slab = cursor { body(slab); cursor = slab.pointee.next }
    }
}
