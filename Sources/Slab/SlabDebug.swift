// SlabDebug: the debug letters, Linux's slab_debug for this allocator (mm/slub.c's debug
// processing; libumem's UMEM_DEBUG is the other model). Off by default; per cache through its
// flags, or for any cache through the SLAB_DEBUG environment variable:
//
//   F  .consistencyChecks  every object carries an allocated/free state word, so freeing a free
//                          object is caught however long ago it was freed; a slab's free list and
//                          counts are checked whenever the slab changes lists (the list walked
//                          whole just before the slab becomes empty, when it is longest). Under
//                          any letter, the next free object is checked whenever one is taken
//                          from a free list.
//   Z  .redZone            guard bytes before and after every object, 0xcc while it is allocated
//                          and 0xbb while it is free (SLUB's SLUB_RED_ACTIVE, SLUB_RED_INACTIVE),
//                          checked on every free and allocation. The object is all of its
//                          `objectSize` bytes (the size rounded up, which the caller may use), so
//                          the red zone after a 20-byte object starts at its byte 24.
//   P  .poison             free objects are filled with 0x6b and end with 0xa5 (POISON_FREE,
//                          POISON_END), checked when the object is handed out again.
//   U  .storeUser          where (return addresses), by which thread, on which CPU and when every
//                          object was last allocated and last freed (SlabTrack), shown in reports.
//
// SlabLayout.swift places the metadata around each object; the slab layer (SlabLayer.swift) calls
// this file's hooks under its lock.
//
// 1. SLAB_DEBUG
// -------------
//   Read when a cache is created, in Linux's slab_debug syntax (Documentation/mm/slub.rst):
//     SLAB_DEBUG=FZPU                  every cache
//     SLAB_DEBUG=FZ,mycache,other      only the caches named ("kmalloc-*": every name with that
//                                      prefix; a '*' anywhere else is malformed)
//     SLAB_DEBUG=,mycache              no letters means all four, FZPU
//     SLAB_DEBUG='Z;FZPU,mycache'      blocks separated by ';': a cache takes the letters of the
//                                      first block that names it, and the others those of the
//                                      last block that names no cache
//   Letters are case-insensitive; '-' drops the letters before it in its block. Linux's T, A and O
//   (tracing, failslab, "no debugging where the slab order would grow") have no meaning here. A
//   value with an unknown letter, an empty or blank cache name or a misplaced '*' is reported on
//   stderr once per value, naming what was skipped; the rest of it applies, and the process goes
//   on (as the kernel does with its command line). An empty value means no debugging. The letters
//   add to the flags the cache was created with; kmalloc's size classes are caches like any
//   other (SLAB_DEBUG=Z,kmalloc-32).
//
// 2. A debug cache has no per-CPU layer
// -------------------------------------
//   Every allocation and free of a cache with a letter goes to the slab layer, where the checks
//   run under its lock, as SLUB sends its debug caches down the slow path, past the per-CPU
//   slabs. Three reasons:
//   - The state of an object must change with the free list that holds it. A magazine holds
//     freed objects that the slab layer counts as allocated, so an object freed twice while it
//     sits in a magazine would be seen by no check, and validate() could not tell a cached object
//     from a live one.
//   - The checks read and write the object's metadata: an rseq critical section can do neither
//     (it may be restarted at any point; the commit must be its last instruction), and doing it
//     before the push would race with another thread popping the object on the same CPU.
//   - The letters choose the path when the cache is created (the cache simply has no CPUCache),
//     so a cache without letters runs exactly the code it ran before: no flag test, not even a
//     branch, is added to the fast path or to the per-CPU layer.
//   The price: a debug cache takes its lock for every operation and scales as `.noCPUCache` does.
//
// 3. Constructed objects
// ----------------------
//   A free object of a cache with a constructor is in its constructed state, and that state is
//   the caller's (Bonwick), so P leaves its bytes alone: SLUB does the same (calculate_sizes turns
//   object poisoning off for a cache with a constructor), and SlabInfo.report says "P (objects not
//   poisoned: constructor)". umem chose otherwise: under UMEM_DEBUG a free runs the destructor and
//   fills the buffer with 0xdeadbeef, and the allocation checks the pattern and runs the
//   constructor again, giving up object caching while debugging. We keep the contract (a
//   constructor runs once per object while its slab lives, and tests count it), at the price that
//   a write after free inside a constructed object is caught only near its ends (Z) or not at all.
//   Z, F and U work as for any cache.
//
// 4. Reports
// ----------
//   A failed check stops the process through `SlabDebug.fatal`, with the allocator's one report
//   (SlabReport.swift): the first line says what happened and in which cache, the line under the
//   rule which operation met it and where,
//     BUG mycache: red zone overwritten
//     -----------------------------------------------------------------------------
//     kmem_cache_free(mycache): red zone overwritten after object 0x7f3c40000048: offset 24: 41 41 41 41 instead of cc
//   and the further lines give the object's slab and index, its bytes and red zones, with U where
//   and by whom it was last allocated and freed, and the call trace. `SlabCache.validate()` runs the same checks
//   over every object and returns what they found instead (SlabValidation); `destroy()` of a debug
//   cache that still has objects prints them (with U, where the first five were allocated).
//
// 5. Cost
// -------
//   20-byte objects, one thread, ns per operation (README, "Misuse detection", for the runs):
//   leaving the per-CPU layer costs about 28 on the alloc/free pair (3.6 -> 31.5) and a lock on
//   every operation; then F adds about 39 on the pair (which empties and refills a slab, checked
//   each time) and 15 on a batch of 1000, Z about 35, P about 24, U 80 to 115 (a 16-frame walk of
//   the frame pointers and two 144-byte records per object).

import CSlab

#if canImport(Glibc)
import Glibc
#endif

// MARK: - The letters

extension SlabFlags {
    /// F, Z, P and U: what an empty letter list means in SLAB_DEBUG (Linux's DEBUG_DEFAULT_FLAGS).
    public static let debugLetters: SlabFlags = [.consistencyChecks, .redZone, .poison, .storeUser]

    /// The debug letters set, in slab_debug's order ("FZPU"; "" when none is).
    public var letters: String {
        [(SlabFlags.consistencyChecks, "F"), (.redZone, "Z"), (.poison, "P"), (.storeUser, "U")]
            .filter { contains($0.0) }.map(\.1).joined()
    }
}

// MARK: - SLAB_DEBUG

/// A value of SLAB_DEBUG (Linux's slab_debug syntax, section 1 above), parsed.
public struct SlabDebugSetting: Sendable, Equatable {
    /// A block that names caches: its letters apply to them.
    public struct Block: Sendable, Equatable {
        public var letters: SlabFlags
        /// Exact names, or prefixes ending in '*'.
        public var names: [String]

        public init(letters: SlabFlags, names: [String]) {
            self.letters = letters
            self.names = names
        }
    }

    /// The letters of the last block that names no cache (for every cache no block names).
    public var global: SlabFlags = []
    /// The blocks that name caches, in order: the first that names a cache gives its letters.
    public var blocks: [Block] = []
    /// What was malformed and skipped, one phrase each; empty for a well-formed value.
    public var problems: [String] = []

    /// The environment variable read at cache creation.
    public static let environmentVariable = "SLAB_DEBUG"

    public init(parsing text: String) {
        var text = Substring(text)
        if text.hasSuffix(";") { text = text.dropLast() }   // a trailing separator is harmless
        guard !text.isEmpty else { return }
        for block in text.split(separator: ";", omittingEmptySubsequences: false) {
            guard !block.isEmpty else {
                problems.append("empty block between ';', skipped")
                continue
            }
            var fields = block.split(separator: ",", omittingEmptySubsequences: false)
            let options = fields.removeFirst()
            var letters: SlabFlags = options.isEmpty ? .debugLetters : []
            for c in options {
                switch c {
                case "f", "F": letters.insert(.consistencyChecks)
                case "z", "Z": letters.insert(.redZone)
                case "p", "P": letters.insert(.poison)
                case "u", "U": letters.insert(.storeUser)
                case "-": letters = []
                case "t", "T", "a", "A", "o", "O": problems.append("option '\(c)' is not supported here, skipped")
                default: problems.append("option '\(c)' unknown, skipped")
                }
            }
            if fields.isEmpty {
                global = letters
                continue
            }
            var names: [String] = []
            for field in fields {
                if field.isEmpty {
                    problems.append("empty cache name, skipped")
                } else if field.contains(where: { $0.isWhitespace }) {
                    problems.append("cache name \"\(field)\" has a blank (no spaces after a comma), skipped")
                } else if field.dropLast().contains("*") {
                    problems.append("cache name \"\(field)\" has a '*' before its end, skipped")
                } else {
                    names.append(String(field))
                }
            }
            if !names.isEmpty { blocks.append(Block(letters: letters, names: names)) }
        }
    }

    /// The letters for the cache named `name`.
    public func letters(forCache name: String) -> SlabFlags {
        for block in blocks where block.names.contains(where: { Self.matches(pattern: $0, name: name) }) {
            return block.letters
        }
        return global
    }

    static func matches(pattern: String, name: String) -> Bool {
        pattern.hasSuffix("*") ? name.hasPrefix(pattern.dropLast()) : pattern == name
    }

    /// The last value read, so that a malformed one is reported once (and reported again only
    /// when the variable changes).
    private static let lastRead = Lock<(text: String, setting: SlabDebugSetting)?>(nil)
    /// For the fork handlers (Fork.swift).
    static var mutexForFork: UnsafeMutablePointer<pthread_mutex_t> { lastRead.mutexForFork }

    /// The letters SLAB_DEBUG gives the cache named `name` now; reports a malformed value on
    /// stderr the first time it is seen.
    static func environmentLetters(forCache name: String) -> SlabFlags {
        guard let raw = getenv(environmentVariable) else { return [] }
        let text = String(cString: raw)
        return lastRead.withLock { last in
            if last?.text != text {
                let setting = SlabDebugSetting(parsing: text)
                if !setting.problems.isEmpty {
                    SlabReport.write("slab: \(environmentVariable)=\"\(text)\": \(setting.problems.joined(separator: "; "))\n")
                }
                last = (text, setting)
            }
            return last.unsafelyUnwrapped.setting.letters(forCache: name)
        }
    }
}

// MARK: - U: the record of an allocation or a free

/// Where, by which thread, on which CPU and when an object was last allocated or freed (U). Its
/// return addresses start inside the allocator (`allocate()`'s and `free(_:)`'s own slow paths,
/// two or three frames in a release build), as Linux's stack traces start in kmem_cache_alloc,
/// and go on to the caller's frames: 16 in all, as Linux kept before its stack depot.
public struct SlabTrack: Sendable {
    /// Return addresses kept per record.
    public static let frameCount = Int(CSLAB_TRACK_FRAMES)

    var raw = cslab_track()

    /// The kernel's id of the thread (gettid).
    public var thread: Int32 { raw.thread }
    /// The CPU it ran on (-1 if unknown).
    public var cpu: Int32 { raw.cpu }
    /// CLOCK_MONOTONIC_COARSE in nanoseconds (the kernel's tick: a few milliseconds' resolution);
    /// 0 for a record never written.
    public var time: UInt64 { raw.time }

    /// The return addresses recorded, innermost first.
    public var returnAddresses: [UInt] {
        withUnsafeBytes(of: raw.frames) { Array($0.bindMemory(to: UInt.self).prefix { $0 != 0 }) }
    }

    /// False for the record of something that has not happened yet (an object never freed).
    public var isRecorded: Bool { time != 0 }

    /// The calling thread's record, now, from this function's caller on.
    @inline(never)
    static func capture() -> SlabTrack {
        var track = SlabTrack()
        cslab_track_capture(&track.raw, 1)
        return track
    }

    /// "allocated by thread 4242 on CPU 1, 0.002 s ago:" and a line per frame.
    func describe(_ what: String) -> [String] {
        guard isRecorded else { return ["  never \(what)"] }
        let age = Double(monotonicNanoseconds() &- time) / 1e9
        return ["  \(what) by thread \(thread) on CPU \(cpu), \(String(Double(Int(age * 1000)) / 1000)) s ago:"]
            + returnAddresses.enumerated().map { "    #\($0.offset) \(describeAddress($0.element))" }
    }
}

func monotonicNanoseconds() -> UInt64 {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC_COARSE, &t)
    return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec)
}

/// "0x55d0c1a2b2a0 in image+0x1a2b2a0", with the symbol when an exported one contains it (for
/// addr2line; a Swift executable exports few symbols).
func describeAddress(_ address: UInt) -> String {
    var image: UnsafePointer<CChar>? = nil, symbol: UnsafePointer<CChar>? = nil
    var base: UnsafeRawPointer? = nil, start: UnsafeRawPointer? = nil
    guard let p = UnsafeRawPointer(bitPattern: address), cslab_describe_address(p, &image, &base, &symbol, &start) != 0,
          let image else { return hex(address) }
    let file = String(cString: image).split(separator: "/").last.map(String.init) ?? "?"
    let offset = address &- UInt(bitPattern: base)
    if let symbol {
        return "\(hex(address)) \(String(cString: symbol))+0x\(String(address &- UInt(bitPattern: start), radix: 16)) (\(file))"
    }
    return "\(hex(address)) in \(file)+0x\(String(offset, radix: 16))"
}

// MARK: - What a check finds

/// One thing a debug check found wrong: in a report that stops the process, or among those
/// `SlabCache.validate()` returns.
public struct SlabDefect: Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        /// A free of a free object (F, or Z: its red zones read as a free object's).
        case doubleFree = "double free"
        /// A red-zone byte is not what it must be (Z).
        case redZone = "red zone overwritten"
        /// A free object's byte is not the poison pattern (P): written after free.
        case poison = "poison overwritten"
        /// The object's state word is neither allocated nor free, or disagrees with where the
        /// object is (F).
        case objectState = "object state corrupted"
        /// A free list leads to something that is not a free object of its slab.
        case freeList = "free list corrupted"
        /// The slab's header, lists or counts do not add up.
        case slab = "slab inconsistent"
    }

    public let kind: Kind
    /// The slab's address.
    public let slab: UInt
    /// The object's address (nil when the defect is the slab's).
    public let object: UInt?
    /// From the object's start to the first wrong byte (negative: before the object).
    public let offset: Int?
    /// The bytes found, from the first wrong one to the last (at most 16).
    public let bytes: [UInt8]
    /// The byte that should have been at `offset`.
    public let expected: UInt8?
    /// One line: what, where, and the bytes.
    public let summary: String
    /// The lines a report prints after the summary: the object's place, its bytes, its records.
    public let details: [String]

    public var description: String { summary }
}

/// What `SlabCache.validate()` found (Linux's `slabinfo -v`).
public struct SlabValidation: Sendable, CustomStringConvertible {
    public let cache: String
    /// Slabs walked.
    public let slabs: Int
    /// Objects checked one by one (0 in a cache without letters, where only slabs are checked).
    public let objects: Int
    /// Everything found, slab by slab; empty when all is well.
    public let defects: [SlabDefect]
    public var isClean: Bool { defects.isEmpty }

    public var description: String {
        let head = "\(cache): \(slabs) slab(s), \(objects) object(s) checked, \(defects.count) defect(s)"
        return ([head] + defects.map { "  " + $0.summary }).joined(separator: "\n")
    }
}

// MARK: - The checks

/// One cache's debugging: its letters, its layout, and the checks the slab layer runs under its
/// lock. Exists only for a cache with a letter.
final class SlabDebug: @unchecked Sendable {
    static let redActive: UInt8 = 0xcc
    static let redInactive: UInt8 = 0xbb
    static let poisonFree: UInt8 = 0x6b
    static let poisonEnd: UInt8 = 0xa5
    /// State words (F), each XORed with the object's address so that a copied word is caught.
    static let allocatedMark: UInt = 0xA110_CA7E_DA11_0C8D
    static let freeMark: UInt = 0xF4EE_F4EE_F4EE_F4EE

    let cache: String
    let layout: SlabLayout
    let letters: SlabFlags
    let divider: ExactDivider

    init(cache: String, layout: SlabLayout) {
        self.cache = cache
        self.layout = layout
        letters = layout.debug
        divider = ExactDivider(layout.stride)
    }

    var checksState: Bool { layout.stateOffset != nil }
    var checksConsistency: Bool { letters.contains(.consistencyChecks) }
    var tracksUsers: Bool { layout.trackOffset != nil }

    // MARK: Metadata

    private func state(_ object: UnsafeMutableRawPointer) -> UInt {
        (object + layout.stateOffset.unsafelyUnwrapped).loadUnaligned(as: UInt.self)
    }

    private func setState(_ object: UnsafeMutableRawPointer, _ mark: UInt) {
        (object + layout.stateOffset.unsafelyUnwrapped).storeBytes(of: mark ^ UInt(bitPattern: object), as: UInt.self)
    }

    private func isMarked(_ object: UnsafeMutableRawPointer, _ mark: UInt) -> Bool {
        state(object) == mark ^ UInt(bitPattern: object)
    }

    /// The object's record of its last allocation (or free).
    func track(_ object: UnsafeMutableRawPointer, freed: Bool) -> SlabTrack? {
        guard let offset = layout.trackOffset else { return nil }
        return (object + offset + (freed ? MemoryLayout<SlabTrack>.size : 0)).loadUnaligned(as: SlabTrack.self)
    }

    private func setTrack(_ object: UnsafeMutableRawPointer, freed: Bool, _ track: UnsafePointer<SlabTrack>) {
        guard let offset = layout.trackOffset else { return }
        (object + offset + (freed ? MemoryLayout<SlabTrack>.size : 0)).copyMemory(from: track, byteCount: MemoryLayout<SlabTrack>.size)
    }

    private func fillRedZones(_ object: UnsafeMutableRawPointer, _ byte: UInt8) {
        guard letters.contains(.redZone) else { return }
        (object - layout.leftRedZone).initializeMemory(as: UInt8.self, repeating: byte, count: layout.leftRedZone)
        (object + layout.objectSize).initializeMemory(as: UInt8.self, repeating: byte, count: layout.rightRedZone)
    }

    private func poison(_ object: UnsafeMutableRawPointer) {
        guard layout.poisonsObjects else { return }
        object.initializeMemory(as: UInt8.self, repeating: Self.poisonFree, count: layout.objectSize - 1)
        (object + layout.objectSize - 1).storeBytes(of: Self.poisonEnd, as: UInt8.self)
    }

    /// Makes every object of a new slab free: state, red zones, poison, empty records.
    func prepare(_ slab: SlabPointer) {
        slab.forEachObject(stride: layout.stride) { object in
            if checksState { setState(object, Self.freeMark) }
            fillRedZones(object, Self.redInactive)
            poison(object)
            if let offset = layout.trackOffset {
                (object + offset).initializeMemory(as: UInt8.self, repeating: 0, count: 2 * MemoryLayout<SlabTrack>.size)
            }
        }
    }

    // MARK: Hooks (under the slab layer's lock)

    /// `object` was just taken from `slab`: checks that it is a sound free object, then marks it
    /// allocated. Stops the process otherwise.
    func handOut(_ object: UnsafeMutableRawPointer, slab: SlabPointer, site: UnsafePointer<SlabTrack>?) {
        if let defect = freeObjectDefect(object, slab: slab, checkingPoison: true) {
            fatal("kmem_cache_alloc", defect)
        }
        if checksState { setState(object, Self.allocatedMark) }
        fillRedZones(object, Self.redActive)
        if let site { setTrack(object, freed: false, site) }
        // The next free object, whose link was just read out of this one (or out of its own
        // bytes, without P): catches a link overwritten after free before anything follows it.
        if let next = slab.pointee.free_list, let defect = freeListDefect(next, after: object, slab: slab) {
            fatal("kmem_cache_alloc", defect)
        }
    }

    /// `object` (object `index` of `slab`) is being freed by `operation`: checks that it is an
    /// allocated object with intact red zones, then marks it free. Stops the process otherwise.
    func takeBack(_ object: UnsafeMutableRawPointer, slab: SlabPointer, operation: String, site: UnsafePointer<SlabTrack>?) {
        if checksState {
            if isMarked(object, Self.freeMark) {
                fatal(operation, defect(.doubleFree, slab: slab, object: object, summary: "double free of \(hex(object))",
                                        note: "the object is already free (F)"))
            }
            if !isMarked(object, Self.allocatedMark) { fatal(operation, stateDefect(object, slab: slab, expectedFree: false)) }
        }
        if letters.contains(.redZone), let defect = redZoneDefect(object, slab: slab, expected: Self.redActive) {
            if !checksState && redZonesRead(object, Self.redInactive) {
                fatal(operation, self.defect(.doubleFree, slab: slab, object: object, summary: "double free of \(hex(object))",
                                             note: "its red zones read as a free object's (Z)"))
            }
            fatal(operation, defect)
        }
        if checksState { setState(object, Self.freeMark) }
        fillRedZones(object, Self.redInactive)
        poison(object)
        if let site { setTrack(object, freed: true, site) }
    }

    // MARK: Checks that find, without stopping

    /// What is wrong with `object`, which must be free: its state (F), red zones (Z) and, when
    /// `checkingPoison`, its poison (P); nil when nothing is.
    func freeObjectDefect(_ object: UnsafeMutableRawPointer, slab: SlabPointer, checkingPoison: Bool) -> SlabDefect? {
        if checksState && !isMarked(object, Self.freeMark) { return stateDefect(object, slab: slab, expectedFree: true) }
        if letters.contains(.redZone), let d = redZoneDefect(object, slab: slab, expected: Self.redInactive) { return d }
        if checkingPoison && layout.poisonsObjects, let d = poisonDefect(object, slab: slab) { return d }
        return nil
    }

    /// What is wrong with `object`, which the slab layer counts as allocated.
    func allocatedObjectDefect(_ object: UnsafeMutableRawPointer, slab: SlabPointer) -> SlabDefect? {
        if checksState && !isMarked(object, Self.allocatedMark) { return stateDefect(object, slab: slab, expectedFree: false) }
        if letters.contains(.redZone), let d = redZoneDefect(object, slab: slab, expected: Self.redActive) { return d }
        return nil
    }

    /// `next` heads `slab`'s free list after `object` was taken: it must be a free object of it.
    private func freeListDefect(_ next: UnsafeMutableRawPointer, after object: UnsafeMutableRawPointer,
                                slab: SlabPointer) -> SlabDefect? {
        guard let index = slab.objectIndex(of: next, divider: divider), index < Int(slab.pointee.bump) else {
            return defect(.freeList, slab: slab, object: object,
                          summary: "free list corrupted: the free object after \(hex(object)) is \(hex(next)), not an object of slab \(hex(slab.blockAddress(slabBytes: layout.slabBytes)))",
                          note: "the free-list link of \(hex(object)) was overwritten (a write after free?)")
        }
        if checksState && !isMarked(next, Self.freeMark) {
            return defect(.freeList, slab: slab, object: object,
                          summary: "free list corrupted: the free object after \(hex(object)) is \(hex(next)), which is not free",
                          note: "the free-list link of \(hex(object)) was overwritten (a write after free?)")
        }
        return nil
    }

    private func stateDefect(_ object: UnsafeMutableRawPointer, slab: SlabPointer, expectedFree: Bool) -> SlabDefect {
        let word = state(object), address = UInt(bitPattern: object)
        let reads = word == Self.freeMark ^ address ? "free" : word == Self.allocatedMark ^ address ? "allocated"
            : "neither allocated nor free (\(hex(word)))"
        return defect(.objectState, slab: slab, object: object,
                      summary: "object state corrupted: \(hex(object)) is \(expectedFree ? "free" : "allocated") but its state word reads \(reads)",
                      note: "the state word is at offset \(layout.stateOffset ?? 0) (F)")
    }

    private func redZonesRead(_ object: UnsafeMutableRawPointer, _ byte: UInt8) -> Bool {
        mismatch(object - layout.leftRedZone, count: layout.leftRedZone, byte) == nil
            && mismatch(object + layout.objectSize, count: layout.rightRedZone, byte) == nil
    }

    private func redZoneDefect(_ object: UnsafeMutableRawPointer, slab: SlabPointer, expected: UInt8) -> SlabDefect? {
        func zone(_ start: Int, _ count: Int, _ side: String) -> SlabDefect? {
            guard let (first, last) = mismatch(object + start, count: count, expected) else { return nil }
            let bytes = found(object + start + first, count: last - first + 1)
            return defect(.redZone, slab: slab, object: object, offset: start + first, bytes: bytes, expected: expected,
                          summary: "red zone overwritten \(side) object \(hex(object)): offset \(start + first): "
                              + "\(dump(bytes))\(last - first + 1 > bytes.count ? " ..." : "") instead of \(byteHex(expected))",
                          note: "the red zones are \(layout.leftRedZone) bytes before the object and \(layout.rightRedZone) after its \(layout.objectSize) (Z)")
        }
        return zone(-layout.leftRedZone, layout.leftRedZone, "before") ?? zone(layout.objectSize, layout.rightRedZone, "after")
    }

    private func poisonDefect(_ object: UnsafeMutableRawPointer, slab: SlabPointer) -> SlabDefect? {
        let n = layout.objectSize
        func expected(_ i: Int) -> UInt8 { i == n - 1 ? Self.poisonEnd : Self.poisonFree }
        let body = mismatch(object, count: n - 1, Self.poisonFree)
        let end = object.load(fromByteOffset: n - 1, as: UInt8.self) == Self.poisonEnd ? nil : n - 1
        guard body != nil || end != nil else { return nil }
        let first = body?.0 ?? n - 1, last = end ?? body.unsafelyUnwrapped.1
        let bytes = found(object + first, count: last - first + 1)
        return defect(.poison, slab: slab, object: object, offset: first, bytes: bytes, expected: expected(first),
                      summary: "poison overwritten in free object \(hex(object)): offset \(first): "
                          + "\(dump(bytes))\(last - first + 1 > bytes.count ? " ..." : "") instead of \(byteHex(expected(first)))",
                      note: "written after it was freed (P: free objects hold 6b ... a5)")
    }

    /// The first and last offsets below `count` where the byte is not `byte`; nil when every byte
    /// is (the common case, checked a word at a time).
    private func mismatch(_ start: UnsafeMutableRawPointer, count: Int, _ byte: UInt8) -> (Int, Int)? {
        let pattern = UInt(byte) &* 0x0101_0101_0101_0101
        var i = 0
        while i + 8 <= count, start.loadUnaligned(fromByteOffset: i, as: UInt.self) == pattern { i += 8 }
        while i < count, start.load(fromByteOffset: i, as: UInt8.self) == byte { i += 1 }
        guard i < count else { return nil }
        var last = count - 1
        while start.load(fromByteOffset: last, as: UInt8.self) == byte { last -= 1 }
        return (i, last)
    }

    private func found(_ start: UnsafeMutableRawPointer, count: Int) -> [UInt8] {
        (0..<min(count, 16)).map { start.load(fromByteOffset: $0, as: UInt8.self) }
    }

    // MARK: Reports

    /// A defect of `object` with the details every report gives.
    func defect(_ kind: SlabDefect.Kind, slab: SlabPointer, object: UnsafeMutableRawPointer?, offset: Int? = nil,
                bytes: [UInt8] = [], expected: UInt8? = nil, summary: String, note: String) -> SlabDefect {
        var details = ["  " + note]
        if let object { details += describe(object, slab: slab) }
        return SlabDefect(kind: kind, slab: slab.blockAddress(slabBytes: layout.slabBytes), object: object.map { UInt(bitPattern: $0) },
                          offset: offset, bytes: bytes, expected: expected, summary: summary, details: details)
    }

    /// The object's place, its bytes and red zones (at most 32 each), and its records.
    func describe(_ object: UnsafeMutableRawPointer, slab: SlabPointer) -> [String] {
        let index = slab.objectIndex(of: object, divider: divider).map(String.init) ?? "?"
        var lines = ["  object \(hex(object)): object \(index) of slab \(hex(slab.blockAddress(slabBytes: layout.slabBytes))) in \(cache) "
                     + "(size \(layout.objectSize), stride \(layout.stride))"]
        func show(_ label: String, _ start: UnsafeMutableRawPointer, _ count: Int) {
            guard count > 0 else { return }
            let n = min(count, 32)
            lines.append("  \(label) \(hex(start)): \(dump(found(start, count: n) + (n > 16 ? found(start + 16, count: n - 16) : [])))"
                         + (count > n ? " ..." : ""))
        }
        if letters.contains(.redZone) { show("red zone before", object - layout.leftRedZone, layout.leftRedZone) }
        show("object         ", object, layout.objectSize)
        if letters.contains(.redZone) { show("red zone after ", object + layout.objectSize, layout.rightRedZone) }
        if let allocated = track(object, freed: false), let freed = track(object, freed: true) {
            lines += allocated.describe("allocated") + freed.describe("freed")
        }
        return lines
    }

    /// Stops the process with the report of `defect`: its kind on the first line (no address, so
    /// the same on every run), the operation and the defect's summary under it, then the details.
    func fatal(_ operation: String, _ defect: SlabDefect) -> Never {
        SlabReport.fatal(defect.kind.rawValue, cache: cache, object: nil,
                         details: ["\(operation)(\(cache)): \(defect.summary)"] + defect.details)
    }
}

func byteHex(_ b: UInt8) -> String { b < 16 ? "0" + String(b, radix: 16) : String(b, radix: 16) }
func dump(_ bytes: [UInt8]) -> String { bytes.map(byteHex).joined(separator: " ") }
