// Slab: one slab seen through its header (the C struct `cslab_slab`, so the layout is fixed).
// All raw pointer arithmetic on slabs lives here.
//
// Headers live out of their slabs, in a table beside the cache's range (SlabTable below): slab
// k of the range, the block at base + k * slabBytes, has header k. A free finds it with a shift
// of the object's offset (of its round, even), as it found an in-slab header with a mask, but
// the headers of all the slabs in use lie together, 64 bytes each, where an in-slab header was a
// line in a page of its own for every slab: freeing a million 256-byte objects in random order
// missed the TLB and the cache on nearly every in-slab header (two thirds of the slab layer's
// free time in a profile). A slab is all objects, colour and leftover (SlabLayout.swift), and no
// write into a slab, an overrun included, can reach a header.
//
// A slab hands out objects in two ways: first from its free list (objects freed since the slab
// was last empty), then by bumping an index over objects never handed out. A slab that becomes
// empty simply resets both, so refilling from an empty or fresh slab never reads the objects'
// memory: the free list is a chain of dependent loads, one cache miss each on a cold slab, while
// the bump is arithmetic (and first-touch page faults happen as objects are used, not at carve).
//
// Invariants (checked by SlabLayer.checkInvariants):
//   in_use + |free_list| + (capacity - bump) == capacity
//   objects == slab + header + colour; every free-list entry is objects + i*stride with i < bump

import CSlab

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

typealias SlabPointer = UnsafeMutablePointer<cslab_slab>

/// Which list of the slab layer a slab is on.
enum SlabList: UInt32 {
    case partial = 1, full = 2, empty = 3
}

extension UnsafeMutablePointer where Pointee == cslab_slab {
    /// Writes the header of a fresh slab, the block at `block`: every object free by the bump
    /// index. REQUIRES: the slab layer's lock (SlabTable.releaseUnusedPages reads headers under it).
    func carve(block: UnsafeMutableRawPointer, layout: SlabLayout, colour: Int, owner: UnsafeMutableRawPointer) {
        let objects = block + layout.objectsOffset(colour: colour)
        pointee = cslab_slab(
            magic: CSLAB_SLAB_MAGIC, cache: owner, free_list: nil, in_use: 0,
            capacity: UInt32(layout.objectsPerSlab), next: nil, prev: nil,
            objects: objects.assumingMemoryBound(to: CChar.self), list: 0, bump: 0)
    }

    /// The address of the slab's block, for reports (its header lies elsewhere, in the table):
    /// its first object rounded down to the slab size; 0 for a header not in use.
    func blockAddress(slabBytes: Int) -> UInt {
        UInt(bitPattern: pointee.objects) & ~UInt(slabBytes - 1)
    }

    @inline(__always) var objectsStart: UnsafeMutableRawPointer {
        UnsafeMutableRawPointer(pointee.objects)!
    }

    /// Takes one free object: the most recently freed, else the next never handed out.
    /// REQUIRES: in_use < capacity.
    @inline(__always)
    func popFree(linkOffset: Int, stride: Int) -> UnsafeMutableRawPointer {
        pointee.in_use += 1
        if let object = pointee.free_list {
            pointee.free_list = cslab_load_link(object + linkOffset)
            return object
        }
        let object = objectsStart + Int(pointee.bump) * stride
        pointee.bump += 1
        return object
    }

    /// Hands out `count` objects into `buffer` (the free list's first, then the bump's), writing
    /// the header once: `popFree()` `count` times, without a load and store of `in_use` and
    /// `bump` for every object. Returns `count`. REQUIRES: `count <= capacity - in_use`.
    @inline(__always)
    func popFree(_ count: Int, into buffer: UnsafeMutablePointer<UnsafeMutableRawPointer?>,
                 linkOffset: Int, stride: Int) -> Int {
        var n = 0
        var list = pointee.free_list
        while n < count, let object = list {
            list = cslab_load_link(object + linkOffset)
            buffer[n] = object
            n &+= 1
        }
        pointee.free_list = list
        let bump = Int(pointee.bump)
        var object = objectsStart + bump * stride
        let fromBump = count - n
        while n < count {
            buffer[n] = object
            object += stride
            n &+= 1
        }
        pointee.bump = UInt32(truncatingIfNeeded: bump + fromBump)
        pointee.in_use &+= UInt32(truncatingIfNeeded: count)
        return count
    }

    /// Returns object number `index` to the slab. REQUIRES: the object belongs to this slab and is
    /// in use.
    @inline(__always)
    func pushFree(_ object: UnsafeMutableRawPointer, index: Int, linkOffset: Int) {
        if countFree() { linkFree(object, index: index, linkOffset: linkOffset) }
    }

    /// The first half of `pushFree`: one object (or `objects`) fewer in use. When none is left,
    /// every object is free again: the list is forgotten and the bump starts over, so the objects need no link.
    /// Returns false then, true while objects are still in use.
    @inline(__always)
    func countFree(_ objects: UInt32 = 1) -> Bool {
        pointee.in_use -= objects
        guard pointee.in_use == 0 else { return true }
        pointee.free_list = nil
        pointee.bump = 0
        return false
    }

    /// The second half of `pushFree`, for a slab with objects still in use: puts object `index`
    /// (counted free already) where allocation finds it again.
    @inline(__always)
    func linkFree(_ object: UnsafeMutableRawPointer, index: Int, linkOffset: Int) {
        if index == Int(pointee.bump) - 1 {
            // The newest object the bump handed out: retract the bump instead of writing a link
            // into the object (a freed batch returns newest first, so none of it is touched).
            pointee.bump -= 1
            return
        }
        cslab_store_link(object + linkOffset, pointee.free_list)
        pointee.free_list = object
    }

    /// Runs `body` on every object of the slab (for destructors when the slab is released).
    func forEachObject(stride: Int, _ body: (UnsafeMutableRawPointer) -> Void) {
        let start = objectsStart
        for i in 0..<Int(pointee.capacity) { body(start + i * stride) }
    }

    /// Index of `object` in this slab, or nil when it is not the start of one of its objects.
    @inline(__always)
    func objectIndex(of object: UnsafeRawPointer, divider: ExactDivider) -> Int? {
        let offset = object - UnsafeRawPointer(objectsStart)
        guard offset >= 0, offset < Int(pointee.capacity) * Int(divider.d) else { return nil }
        guard divider.divides(UInt32(truncatingIfNeeded: offset)) else { return nil }
        return divider.quotient(UInt32(truncatingIfNeeded: offset))
    }
}

/// The slab headers of one cache: one 64-byte `cslab_slab` for every slab-sized block of its
/// range, reserved beside it (MAP_NORESERVE: a page of the table is memory once a header in it is
/// written, 1/64 of the slabs it describes at order 0) and unmapped with the slab layer. A page of
/// the table whose 64 headers all describe released slabs goes back to the OS
/// (`releaseUnusedPages`), so a shrunk cache keeps no table memory for the slabs it gave back.
struct SlabTable: @unchecked Sendable {
    /// The range's base: the block of header k starts at base + k << slabShift.
    let base: UInt
    let headers: SlabPointer
    let count: Int
    let slabShift: Int

    /// Reserves the table for a range of `rangeBytes` at `base` cut into slabs of 1 << slabShift
    /// bytes; nil when the OS refuses the address space.
    init?(base: UInt, rangeBytes: Int, slabShift: Int) {
        let count = rangeBytes >> slabShift
        guard let p = mmap(nil, count * MemoryLayout<cslab_slab>.stride, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0), p != MAP_FAILED else { return nil }
        self.base = base
        self.count = count
        self.slabShift = slabShift
        headers = p.bindMemory(to: cslab_slab.self, capacity: count)
    }

    /// Gives the table's address space back. REQUIRES: no slab of the range is used again.
    func unmap() { munmap(headers, count * MemoryLayout<cslab_slab>.stride) }

    /// The header of the slab whose block holds `address`. REQUIRES: the address is in the range.
    @inline(__always)
    func header(of address: UnsafeRawPointer) -> SlabPointer {
        headers + Int(bitPattern: (UInt(bitPattern: address) &- base) &>> UInt(slabShift))
    }

    /// The header of the slab holding the object of `round` (an offset from the base in 8-byte
    /// units, Magazine.swift): one shift.
    @inline(__always)
    func header(ofRound round: UInt32) -> SlabPointer {
        headers + Int(round &>> UInt32(slabShift - Int(CSLAB_ROUND_SHIFT)))
    }

    /// The block a header describes.
    @inline(__always)
    func block(of header: SlabPointer) -> UnsafeMutableRawPointer {
        UnsafeMutableRawPointer(bitPattern: base + UInt(header - headers) << UInt(slabShift))!
    }

    static let headersPerPage = PageSource.pageSize / MemoryLayout<cslab_slab>.stride

    /// Returns to the OS every table page that holds one of `released`'s headers and no header in
    /// use (magic 0: released or never carved); such a page reads zeros again. REQUIRES: the
    /// slab layer's lock, under which every header is carved.
    func releaseUnusedPages(holding released: [SlabPointer]) {
        let pages = Set(released.map { ($0 - headers) / Self.headersPerPage })
        for page in pages {
            let first = headers + page * Self.headersPerPage
            let n = min(Self.headersPerPage, count - page * Self.headersPerPage)
            guard (0..<n).allSatisfy({ first[$0].magic != CSLAB_SLAB_MAGIC }) else { continue }
            madvise(first, n * MemoryLayout<cslab_slab>.stride, MADV_DONTNEED)
        }
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

/// Division by a slab's stride without a divide instruction (the slab layer's free path checks
/// every pointer it takes back). With c = ceil(2^64 / d): n is a multiple of d exactly when
/// n * c mod 2^64 <= c - 1, and n / d == (c * n) >> 64, for all n, d < 2^32 (Lemire, Kaser and
/// Kurz, "Faster remainder by direct computation", 2019). Offsets in a slab are below 2^22.
struct ExactDivider {
    let c: UInt64
    let d: UInt64

    @inline(__always)
    init(_ d: Int) {
        // d >= 2 here (strides are at least a word), so UInt64.max / d + 1 cannot overflow.
        self.d = UInt64(d)
        c = UInt64.max / UInt64(d) &+ 1
    }

    @inline(__always) func divides(_ n: UInt32) -> Bool { UInt64(n) &* c <= c &- 1 }
    @inline(__always) func quotient(_ n: UInt32) -> Int { Int(c.multipliedFullWidth(by: UInt64(n)).high) }
}
