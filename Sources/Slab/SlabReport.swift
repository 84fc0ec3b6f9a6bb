// SlabReport: what the allocator prints when it catches its user breaking a rule, and how the
// process then stops. Every detection goes through `SlabReport.fatal`.
//
// 1. The report
// -------------
//   One block on stderr, written once (a single write(2)), in the shape of the kernel's slab
//   reports (mm/slub.c: slab_bug, print_trailer):
//
//     BUG t-cache: double free
//     -----------------------------------------------------------------------------
//     kmem_cache_free(t-cache): 0x7f3a2c000060 is already free: it is the last round pushed on CPU 1's loaded magazine
//     Slab 0x7f3a2c000000 of t-cache: 126 objects of 32 bytes (stride 32) from 0x7f3a2c000040, 126 out of it (allocated, or in magazines)
//     Object 0x7f3a2c000060: object 1 (offset 0x20 from the slab's first object)
//     Call trace:
//      #0 0x000055d0c1a2b05c Slab.CPUCache.reportDoubleFree(_:onTopOf:)+0x47c (app)
//      ...
//      #7 0x000055d0c1a2bea1 App.handle(_:)+0x321 (app)
//      ...
//     =============================================================================
//
//   The first line is "BUG <cache>: <what happened>", with no address in it, so that it is the
//   same on every run: the README's misuse table quotes it and the tests match it exactly. Then
//   the caller's details, the first naming the operation as the kernel does,
//   "kmem_cache_free(<cache>): <pointer> ...". Then where the object lies, found from its address
//   alone (the cache whose range holds it, the slab header its offset there indexes): its slab, its
//   index and offset, or the fact that it is no object of any cache. Then the call trace of the
//   offending call (the report's own frames left out): backtrace(3), each frame symbolized from
//   its image's symbol table (CSlab's shim.c) and Swift names demangled.
//
// 2. How the process stops
// ------------------------
//   SIGABRT's default action is restored, then abort(): the process dies of SIGABRT, and no
//   handler adds its own dump after the report (the Swift runtime's backtracer installs one for
//   SIGABRT and would print the registers and a dozen images; a program's handler could even
//   return and let the corruption proceed). Continuing is never an option: the object is already
//   in two places, or the pointer names memory that is not the caller's to free.
//
// 3. Vocabulary (the <what> of the first line)
// --------------------------------------------
//   double free                          an object freed while it is cached (SlabCache.swift, section 8)
//   wrong slab cache                     an object of another cache (Linux's "Wrong slab cache")
//   not allocated from any slab cache    a pointer in no cache's range (malloc's, the stack's)
//   not the start of an object           an interior pointer
//   not in a live slab                   a pointer into a slab already released (shrink)
//   freed to a destroyed cache           kmem_cache_free after kmem_cache_destroy
//   allocation from a destroyed cache    kmem_cache_alloc after kmem_cache_destroy
//   not allocated by kmalloc             kfree, ksize or krealloc of a pointer kmalloc never returned
//   not the start of a block             the same for an interior pointer of a page-allocator block
//   not an allocated block               a page-allocator block freed already
//   Debug checks add their own (red zone overwritten, poison overwritten, ...).
//
// 4. Using it
// -----------
//     SlabReport.fatal("red zone overwritten", cache: name, object: p,
//                      details: ["kmem_cache_free(\(name)): \(hex(p)): 4 bytes after the object were written",
//                                "Bytes b+24: 41 41 41 41 bb bb bb bb"])
//   `cache` names the cache the operation was given (or "kmalloc" / "kmalloc-large" for kmalloc's
//   own checks); `object` is the pointer at fault, or nil; `details` are whole lines. It takes
//   only the registry's lock, a leaf (never held while taking another), so it may be called with
//   the slab layer's or the page source's lock held. Two threads reporting at once print one
//   report: the second waits for the first to stop the process. `SlabReport.warn` prints the
//   same block and returns, for a misuse the API answers otherwise (destroy() with objects
//   remaining throws); `SlabReport.text` is the block itself.

import CSlab
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

enum SlabReport {
    /// Prints the report (section 1) and stops the process with SIGABRT (section 2).
    static func fatal(_ what: String, cache: String, object: UnsafeRawPointer?, details: [String]) -> Never {
        if reporting.exchange(true, ordering: .acquiringAndReleasing) {
            // Another thread is reporting; it will stop the process.
            while true { pause() }
        }
        write(text(what, cache: cache, object: object, details: details))
        signal(SIGABRT, SIG_DFL)
        abort()
    }

    /// Prints the same report and returns: for what the caller survives and answers otherwise
    /// (a destroy() refused because objects remain, which throws).
    static func warn(_ what: String, cache: String, object: UnsafeRawPointer?, details: [String]) {
        write(text(what, cache: cache, object: object, details: details))
    }

    /// The report's lines, each ending in a newline.
    static func text(_ what: String, cache: String, object: UnsafeRawPointer?, details: [String]) -> String {
        var lines = ["BUG \(cache): \(what)", String(repeating: "-", count: 77)]
        lines += details
        if let object { lines += whereabouts(of: object) }
        lines.append("Call trace:")
        lines += callTrace()
        lines.append(String(repeating: "=", count: 77))
        return lines.joined(separator: "\n") + "\n"
    }

    private static let reporting = Atomic<Bool>(false)

    /// The slab an object lies in and its place there, from its address alone: the live cache
    /// whose range holds it, then its slab's header in the slab table (Slab.swift; the table, like
    /// the range, reads zeros where nothing was written).
    static func whereabouts(of object: UnsafeRawPointer) -> [String] {
        let address = UInt(bitPattern: object)
        guard let cache = Registry.shared.cache(containing: address) else {
            return ["Object \(hex(address)): in no live slab cache's address range"]
        }
        let layout = cache.layout
        let slab = cache.slabLayer.table.header(of: object)
        let block = address & cache.slabLayer.slabMask
        guard slab.pointee.magic == CSLAB_SLAB_MAGIC, let objects = UnsafeRawPointer(slab.pointee.objects) else {
            return ["Object \(hex(address)): in \(cache.name)'s range, but its block at \(hex(block)) is not a live slab "
                    + "(released, or never carved)"]
        }
        let capacity = Int(slab.pointee.capacity)
        let first = UInt(bitPattern: objects)
        let slabLine = "Slab \(hex(block)) of \(cache.name): \(capacity) objects of \(layout.objectSize) bytes "
            + "(stride \(layout.stride)) from \(hex(first)), \(slab.pointee.in_use) out of it (allocated, or in magazines)"
        guard address >= first, address - first < UInt(capacity * layout.stride) else {
            return [slabLine, "Object \(hex(address)): in the slab's colour or leftover, outside its objects"]
        }
        let offset = Int(address - first)
        let (index, into) = offset.quotientAndRemainder(dividingBy: layout.stride)
        let place = into == 0 ? "object \(index)" : "\(into) bytes into object \(index)"
        return [slabLine, "Object \(hex(address)): \(place) (offset \(hex(UInt(offset))) from the slab's first object)"]
    }

    /// The calling thread's frames, innermost first, without the report's own.
    static func callTrace(limit: Int = 32) -> [String] {
        var buffer = [UnsafeMutableRawPointer?](repeating: nil, count: limit + 16)
        let n = Int(buffer.withUnsafeMutableBufferPointer { cslab_backtrace($0.baseAddress, Int32($0.count)) })
        var frames: [(pc: UnsafeMutableRawPointer, symbol: String?, offset: UInt64, image: String)] = []
        for i in 0..<n {
            guard let pc = buffer[i] else { continue }
            // A return address can lie past the end of its function (a call that does not return
            // is its last instruction): look up the byte before it, the call itself.
            let lookup = i == 0 ? pc : pc - 1
            var name: UnsafePointer<CChar>? = nil, offset: UInt64 = 0, image: UnsafePointer<CChar>? = nil
            let found = cslab_symbolize(lookup, &name, &offset, &image) && name != nil
            let imageName = image.map { String(String(cString: $0).split(separator: "/").last ?? "?") } ?? "?"
            frames.append((pc, found ? demangle(name!) : nil, offset + (i == 0 ? 0 : 1), imageName))
        }
        // The report's own frames (and what they inlined) end at the last that names SlabReport.
        let own = frames.prefix(12).lastIndex { $0.symbol?.contains("SlabReport.") == true }
        var lines: [String] = []
        for f in frames[((own ?? -1) + 1)...] {
            let digits = String(UInt(bitPattern: f.pc), radix: 16)
            let address = "0x" + String(repeating: "0", count: max(0, 16 - digits.count)) + digits
            let at = f.symbol.map { "\(simplified($0))+\(hex(UInt(f.offset)))" } ?? "?"
            lines.append(" #\(lines.count) \(address) \(at) (\(f.image))")
            if lines.count == limit || f.symbol == "main" { break }
        }
        return lines
    }

    /// A Swift symbol demangled; any other symbol as it is.
    static func demangle(_ name: UnsafePointer<CChar>) -> String {
        let mangled = String(cString: name)
        guard mangled.hasPrefix("$s") || mangled.hasPrefix("$S") || mangled.hasPrefix("_T"),
              let d = swift_demangle(name, strlen(name), nil, nil, 0) else { return mangled }
        defer { free(d) }
        return String(cString: d)
    }

    /// A demangled function as a trace shows it: `Module.Type.name(label:label:)`, without the
    /// parameters' types and the result (the form Swift's own backtraces use). Names of other
    /// shapes (closures, thunks) are kept whole, cut at 160 characters.
    static func simplified(_ name: String) -> String {
        let chars = Array(withoutPrivateDiscriminators(name))
        // "closure #1 (A) -> B in f(x: T) -> U" -> "closure #1 in f(x:)"
        // Brackets nest; the ">" of an arrow "->" is not one.
        func bracket(_ i: Int) -> Int {
            if "(<[".contains(chars[i]) { return 1 }
            if ")]".contains(chars[i]) || (chars[i] == ">" && (i == 0 || chars[i - 1] != "-")) { return -1 }
            return 0
        }
        var level = 0
        for i in chars.indices {
            level += bracket(i)
            guard level == 0, chars[i...].starts(with: " in ") else { continue }
            let head = chars[..<i].split(separator: "(", maxSplits: 1).first.map { String($0).trimmedOfSpaces } ?? ""
            return head + " in " + simplified(String(chars[(i + 4)...]))
        }
        var start = 0
        if name.hasPrefix("static ") { start = 7 }
        var angle = 0
        var open: Int? = nil
        for i in start..<chars.count {
            let c = chars[i]
            if c == "<" || c == ">" { angle += bracket(i) }
            else if angle == 0 && c == " " { break }
            else if angle == 0 && c == "(" { open = i; break }
        }
        guard let open else { return name.count > 160 ? String(name.prefix(157)) + "..." : name }
        // The parameters, split at commas outside brackets; each keeps its label.
        var depth = 0, labels = "", current = ""
        for i in (open + 1)..<chars.count {
            let c = chars[i]
            if depth == 0 && c == ")" { break }
            depth += bracket(i)
            if depth == 0 && c == "," {
                labels += label(current)
                current = ""
            } else {
                current.append(c)
            }
        }
        if current.contains(where: { $0 != " " }) { labels += label(current) }
        // The function's own generic parameters add nothing to a trace.
        var path = Array(chars[start..<open])
        if path.last == ">" {
            var d = 0
            for i in path.indices.reversed() {
                d -= bracket(start + i)
                if d == 0 { path.removeSubrange(i...); break }
            }
        }
        return String(path) + "(" + labels + ")"
    }

    /// A private declaration's name, "(name in _3BE257A4...)", as just "name".
    private static func withoutPrivateDiscriminators(_ name: String) -> String {
        var out = "", rest = Substring(name)
        while let open = rest.firstIndex(of: "(") {
            out += rest[..<open]
            let tail = rest[rest.index(after: open)...]
            if let close = tail.firstIndex(of: ")"), case let inside = tail[..<close],
               let space = inside.firstIndex(of: " "), inside[space...].hasPrefix(" in _"),
               inside[..<space].allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) {
                out += inside[..<space]
                rest = tail[tail.index(after: close)...]
            } else {
                out += "("
                rest = tail
            }
        }
        return out + rest
    }

    /// "label: Type" -> "label:"; an unlabelled parameter -> "_:".
    private static func label(_ parameter: String) -> String {
        let p = parameter.drop { $0 == " " }
        guard let colon = p.firstIndex(of: ":"), colon > p.startIndex,
              p[..<colon].allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else { return "_:" }
        return String(p[..<colon]) + ":"
    }

    /// Writes all of `text` to file descriptor 2, unbuffered.
    static func write(_ text: String) {
        var text = text
        text.withUTF8 { bytes in
            var done = 0
            while done < bytes.count {
                let r = Glibc.write(2, bytes.baseAddress! + done, bytes.count - done)
                if r > 0 { done += r } else if r < 0 && errno == EINTR { continue } else { break }
            }
        }
    }
}

private extension String {
    var trimmedOfSpaces: String {
        String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}
