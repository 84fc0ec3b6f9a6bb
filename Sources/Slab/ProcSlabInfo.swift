// ProcSlabInfo: the kernel's /proc/slabinfo (version 2.1) read back into typed entries, and the
// numbers slabtop derives from it. SlabInfo.swift writes this format for our own caches; this file
// reads it, for the kernel's caches and for ours (a round trip the tests make).
//
// 1. The format (mm/slab_common.c, slab_show() and cache_show())
// ----------------------------------------------------------------
//     slabinfo - version: 2.1
//     # name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables ...
//     dentry             47733  47733    192   21    1 : tunables    0    0    0 : slabdata   2273   2273      0
//
//   One cache a line, fields separated by runs of blanks: a name (no blanks in it), five numbers,
//   ':', 'tunables' and three numbers, ':', 'slabdata' and three numbers. A kernel built with
//   SLAB statistics (gone since Linux 6.8) says "2.1 (statistics)" and appends more ':' sections;
//   they are accepted and ignored.
//
// 2. What slabtop shows (procps library/slabinfo.c and src/slabtop.c), kept bit for bit
// ---------------------------------------------------------------------------------------
//   use %       (unsigned)(100 * ((float)active_objs / num_objs)): single precision, truncated;
//               0 for a cache with no objects.
//   cache size  num_slabs * pagesperslab * page size; shown in K (/ 1024, integer).
//   totals      objects, slabs and caches as active / total ("active" caches: num_objs > 0);
//               size is object bytes, sum(active_objs * objsize) / sum(num_objs * objsize), not
//               slab bytes; average object = sum(num_objs * objsize) / sum(num_objs) (integer);
//               minimum and maximum over every cache, empty ones included.
//   Figures are printed with the C library's printf, as slabtop does, so rounding matches too.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The kernel's /proc/slabinfo (version 2.1), parsed.
public struct ProcSlabInfo: Sendable, Equatable {
    /// Where the kernel publishes it.
    public static let defaultPath = "/proc/slabinfo"

    /// The version from the first line, "2.1" (or "2.1 (statistics)").
    public var version: String
    /// One entry per cache, in file order.
    public var entries: [Entry]

    public init(version: String = "2.1", entries: [Entry]) {
        self.version = version
        self.entries = entries
    }

    /// One line of the file: a cache's numbers as the kernel printed them.
    public struct Entry: Sendable, Equatable {
        public var name: String
        public var activeObjects: Int
        public var totalObjects: Int
        /// Bytes per object (objsize).
        public var objectSize: Int
        public var objectsPerSlab: Int
        public var pagesPerSlab: Int
        // tunables (always 0 under SLUB)
        public var limit: Int
        public var batchCount: Int
        public var sharedFactor: Int
        // slabdata
        public var activeSlabs: Int
        public var totalSlabs: Int
        public var sharedAvailable: Int

        public init(name: String, activeObjects: Int, totalObjects: Int, objectSize: Int, objectsPerSlab: Int,
                    pagesPerSlab: Int, limit: Int = 0, batchCount: Int = 0, sharedFactor: Int = 0,
                    activeSlabs: Int, totalSlabs: Int, sharedAvailable: Int = 0) {
            self.name = name
            self.activeObjects = activeObjects
            self.totalObjects = totalObjects
            self.objectSize = objectSize
            self.objectsPerSlab = objectsPerSlab
            self.pagesPerSlab = pagesPerSlab
            self.limit = limit
            self.batchCount = batchCount
            self.sharedFactor = sharedFactor
            self.activeSlabs = activeSlabs
            self.totalSlabs = totalSlabs
            self.sharedAvailable = sharedAvailable
        }

        /// slabtop's USE column: percent of objects active, truncated, computed in single
        /// precision as procps does (so the two never disagree by one).
        public var usePercent: Int {
            guard totalObjects > 0 else { return 0 }
            return Int(Float(100) * (Float(activeObjects) / Float(totalObjects)))
        }

        /// Bytes of slabs the cache holds: num_slabs * pagesperslab * page size (an upper bound
        /// of what it uses, as procps notes).
        public func cacheSize(pageSize: Int = ProcSlabInfo.systemPageSize) -> Int {
            totalSlabs * pagesPerSlab * pageSize
        }

        /// slabtop's CACHE SIZE column, in KiB (integer division, as slabtop prints it).
        public func cacheSizeKiB(pageSize: Int = ProcSlabInfo.systemPageSize) -> Int {
            cacheSize(pageSize: pageSize) / 1024
        }
    }

    /// The summary slabtop prints above its table.
    public struct Totals: Sendable, Equatable {
        public var activeObjects = 0
        public var totalObjects = 0
        public var activeSlabs = 0
        public var totalSlabs = 0
        /// Caches with at least one object.
        public var activeCaches = 0
        public var totalCaches = 0
        /// sum(active_objs * objsize): bytes of active objects.
        public var activeSize = 0
        /// sum(num_objs * objsize): bytes of all objects.
        public var totalSize = 0
        public var minimumObjectSize = 0
        /// totalSize / totalObjects, integer (0 when there are no objects).
        public var averageObjectSize = 0
        public var maximumObjectSize = 0

        public init() {}
    }

    /// The totals over every entry, as `slabtop -o` computes them.
    public var totals: Totals {
        var t = Totals()
        var minimum = Int.max
        for e in entries {
            t.activeObjects += e.activeObjects
            t.totalObjects += e.totalObjects
            t.activeSlabs += e.activeSlabs
            t.totalSlabs += e.totalSlabs
            t.totalCaches += 1
            if e.totalObjects > 0 { t.activeCaches += 1 }
            t.activeSize += e.activeObjects * e.objectSize
            t.totalSize += e.totalObjects * e.objectSize
            minimum = min(minimum, e.objectSize)
            t.maximumObjectSize = max(t.maximumObjectSize, e.objectSize)
        }
        t.minimumObjectSize = entries.isEmpty ? 0 : minimum
        t.averageObjectSize = t.totalObjects == 0 ? 0 : t.totalSize / t.totalObjects
        return t
    }

    /// The running system's page size (what the kernel's pagesperslab counts).
    public static var systemPageSize: Int {
        let size = sysconf(Int32(_SC_PAGESIZE))
        return size > 0 ? size : 4096
    }
}

// MARK: - Parsing

extension ProcSlabInfo {
    /// A line of slabinfo text that does not have the 2.1 format. `line` counts from 1.
    public struct ParseError: Error, Equatable, Sendable, CustomStringConvertible {
        public enum Problem: Equatable, Sendable {
            /// The text is empty: not even a version line.
            case emptyInput
            /// The first line is not "slabinfo - version: 2.1".
            case wrongVersionLine(found: String)
            /// The second line is not the "# name ..." column header.
            case missingColumnHeader(found: String)
            /// A blank line among the caches.
            case emptyLine
            /// Fewer than the two ':' separators between the three sections.
            case missingSeparators(found: Int)
            /// A section has too few or too many fields.
            case wrongFieldCount(section: String, expected: Int, found: Int)
            /// A section does not start with its label ("tunables", "slabdata").
            case missingLabel(expected: String, found: String)
            /// A field that must be a non-negative decimal number is not one.
            case notANumber(field: String, value: String)
        }

        /// 1-based line number of the offending line.
        public var line: Int
        public var problem: Problem
        /// The file the text came from, when known (set by `read(path:)`).
        public var source: String?

        public init(line: Int, problem: Problem, source: String? = nil) {
            self.line = line
            self.problem = problem
            self.source = source
        }

        public var description: String {
            let place = "\(source ?? "slabinfo") line \(line)"
            switch problem {
            case .emptyInput:
                return "\(place): the text is empty (expected \"slabinfo - version: 2.1\")"
            case let .wrongVersionLine(found):
                return "\(place): expected \"slabinfo - version: 2.1\", found \"\(found)\""
            case let .missingColumnHeader(found):
                return "\(place): expected the column header \"# name ...\", found \"\(found)\""
            case .emptyLine:
                return "\(place): empty line where a cache line was expected"
            case let .missingSeparators(found):
                return "\(place): expected 2 ':' separators (name ... : tunables ... : slabdata ...), found \(found)"
            case let .wrongFieldCount(section, expected, found):
                return "\(place): \(section) needs \(expected) fields, found \(found)"
            case let .missingLabel(expected, found):
                return "\(place): expected \"\(expected)\" after ':', found \"\(found)\""
            case let .notANumber(field, value):
                return "\(place): \(field) is not a non-negative number: \"\(value)\""
            }
        }
    }

    /// The column names of a cache line, as the header names them (used in error messages).
    static let headColumns = ["active_objs", "num_objs", "objsize", "objperslab", "pagesperslab"]
    static let tunableColumns = ["limit", "batchcount", "sharedfactor"]
    static let slabdataColumns = ["active_slabs", "num_slabs", "sharedavail"]

    /// Parses the text of a /proc/slabinfo (version 2.1) file. A trailing newline is optional.
    /// Throws `ParseError` naming the first bad line.
    public static func parse(_ text: String) throws -> ProcSlabInfo {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        if lines.last?.isEmpty == true { lines.removeLast() }
        guard let first = lines.first else { throw ParseError(line: 1, problem: .emptyInput) }

        let versionPrefix = "slabinfo - version: "
        let firstLine = String(first)
        guard firstLine.hasPrefix(versionPrefix) else {
            throw ParseError(line: 1, problem: .wrongVersionLine(found: firstLine))
        }
        let version = String(firstLine.dropFirst(versionPrefix.count))
        guard version == "2.1" || version == "2.1 (statistics)" else {
            throw ParseError(line: 1, problem: .wrongVersionLine(found: firstLine))
        }
        guard lines.count >= 2, lines[1].hasPrefix("# name") else {
            throw ParseError(line: 2, problem: .missingColumnHeader(found: lines.count >= 2 ? String(lines[1]) : ""))
        }

        var entries: [Entry] = []
        entries.reserveCapacity(lines.count - 2)
        for index in 2..<lines.count {
            entries.append(try parseEntry(lines[index], lineNumber: index + 1))
        }
        return ProcSlabInfo(version: version, entries: entries)
    }

    /// Parses one cache line ("name n n n n n : tunables n n n : slabdata n n n").
    public static func parseEntry(_ line: Substring, lineNumber: Int) throws -> Entry {
        func fail(_ problem: ParseError.Problem) -> ParseError { ParseError(line: lineNumber, problem: problem) }

        let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
        guard !fields.isEmpty else { throw fail(.emptyLine) }
        // Sections between ':' fields: [name + 5], ["tunables" + 3], ["slabdata" + 3], extras.
        let sections = fields.split(separator: ":", omittingEmptySubsequences: false)
        guard sections.count >= 3 else { throw fail(.missingSeparators(found: sections.count - 1)) }

        let head = sections[0], tunables = sections[1], slabdata = sections[2]
        guard head.count == 1 + headColumns.count else {
            throw fail(.wrongFieldCount(section: "the name section (name and \(headColumns.count) numbers)",
                                        expected: 1 + headColumns.count, found: head.count))
        }
        func number(_ text: Substring, _ field: String) throws -> Int {
            // Digits only: no sign, no blanks; out-of-range values are not numbers either.
            guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let value = Int(text) else {
                throw fail(.notANumber(field: field, value: String(text)))
            }
            return value
        }
        func labelled(_ section: ArraySlice<Substring>, _ label: String, _ columns: [String]) throws -> [Int] {
            guard let first = section.first, first == label else {
                throw fail(.missingLabel(expected: label, found: section.first.map(String.init) ?? ""))
            }
            guard section.count == 1 + columns.count else {
                throw fail(.wrongFieldCount(section: "the \(label) section (\"\(label)\" and \(columns.count) numbers)",
                                            expected: 1 + columns.count, found: section.count))
            }
            return try zip(section.dropFirst(), columns).map { try number($0, $1) }
        }

        let name = head[head.startIndex]
        let h = try zip(head.dropFirst(), headColumns).map { try number($0, $1) }
        let t = try labelled(tunables, "tunables", tunableColumns)
        let s = try labelled(slabdata, "slabdata", slabdataColumns)
        return Entry(name: String(name), activeObjects: h[0], totalObjects: h[1], objectSize: h[2],
                     objectsPerSlab: h[3], pagesPerSlab: h[4], limit: t[0], batchCount: t[1], sharedFactor: t[2],
                     activeSlabs: s[0], totalSlabs: s[1], sharedAvailable: s[2])
    }
}

// MARK: - Reading

extension ProcSlabInfo {
    /// Why a slabinfo (or buddyinfo) file could not be read.
    public enum ReadError: Error, Equatable, Sendable, CustomStringConvertible {
        /// EACCES or EPERM: /proc/slabinfo is mode 0400, root only.
        case permissionDenied(path: String)
        /// ENOENT: no such file.
        case missing(path: String)
        /// Any other errno from open or read.
        case failed(path: String, errno: Int32, operation: String)

        /// The error for `errno` from `operation` ("open" or "read") on `path`.
        public init(errno code: Int32, path: String, operation: String) {
            switch code {
            case EACCES, EPERM: self = .permissionDenied(path: path)
            case ENOENT: self = .missing(path: path)
            default: self = .failed(path: path, errno: code, operation: operation)
            }
        }

        public var description: String {
            switch self {
            case let .permissionDenied(path):
                let why = path == ProcSlabInfo.defaultPath
                    ? "the kernel lets only root read it; run as root (for example with sudo)"
                    : "reading it needs more privileges (for /proc/slabinfo: root)"
                return "cannot read \(path): permission denied: \(why)"
            case let .missing(path):
                let why = path == ProcSlabInfo.defaultPath
                    ? "this kernel has no slabinfo (not Linux, /proc not mounted, or a kernel built without CONFIG_SLUB_DEBUG)"
                    : path == ProcBuddyInfo.defaultPath ? "this system has no buddyinfo (not Linux, or /proc not mounted)"
                    : "no such file"
                return "cannot read \(path): it does not exist: \(why)"
            case let .failed(path, code, operation):
                return "cannot read \(path): \(operation) failed: \(String(cString: strerror(code))) (errno \(code))"
            }
        }
    }

    /// The raw text of a slabinfo file. /proc files report size 0, so this reads until EOF.
    public static func readText(path: String = defaultPath) throws -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ReadError(errno: errno, path: path, operation: "open") }
        defer { close(fd) }
        var bytes: [UInt8] = []
        let chunk = 64 * 1024
        while true {
            let start = bytes.count
            bytes.append(contentsOf: repeatElement(0, count: chunk))
            let n = bytes.withUnsafeMutableBytes { systemRead(fd, $0.baseAddress! + start, chunk) }
            if n < 0 {
                let code = errno
                bytes.removeLast(chunk)
                if code == EINTR { continue }
                throw ReadError(errno: code, path: path, operation: "read")
            }
            bytes.removeLast(chunk - n)
            if n == 0 { break }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Reads and parses a slabinfo file (default: the running kernel's). Throws `ReadError` when
    /// it cannot be read, `ParseError` (naming the file) when it is not version 2.1.
    public static func read(path: String = defaultPath) throws -> ProcSlabInfo {
        let text = try readText(path: path)
        do {
            return try parse(text)
        } catch var error as ParseError {
            error.source = path
            throw error
        }
    }
}

// MARK: - slabtop -o

extension ProcSlabInfo {
    /// slabtop's sort orders. Numeric keys sort largest first, the name alphabetically; ties
    /// are broken by name so the order is stable.
    public enum SortKey: String, CaseIterable, Sendable {
        case activeObjects = "active"
        case objectsPerSlab = "objs-per-slab"
        case cacheSize = "cache-size"
        case slabs = "slabs"
        case activeSlabs = "active-slabs"
        case name = "name"
        case objects = "objects"
        case pagesPerSlab = "pages-per-slab"
        case objectSize = "object-size"
        case use = "use"

        /// slabtop's one-letter key (`slabtop --sort`).
        public var letter: Character {
            switch self {
            case .activeObjects: return "a"
            case .objectsPerSlab: return "b"
            case .cacheSize: return "c"
            case .slabs: return "l"
            case .activeSlabs: return "v"
            case .name: return "n"
            case .objects: return "o"
            case .pagesPerSlab: return "p"
            case .objectSize: return "s"
            case .use: return "u"
            }
        }

        /// A key from slabtop's letter or the readable name.
        public init?(argument: String) {
            guard let key = Self.allCases.first(where: { $0.rawValue == argument || String($0.letter) == argument })
            else { return nil }
            self = key
        }

        /// "a (active), b (objs-per-slab), ...": for error messages and help.
        public static var validKeys: String {
            allCases.sorted { $0.letter < $1.letter }.map { "\($0.letter) (\($0.rawValue))" }.joined(separator: ", ")
        }
    }

    /// The entries in `key` order.
    public func sorted(by key: SortKey, pageSize: Int = ProcSlabInfo.systemPageSize) -> [Entry] {
        func value(_ e: Entry) -> Int {
            switch key {
            case .activeObjects: return e.activeObjects
            case .objectsPerSlab: return e.objectsPerSlab
            case .cacheSize: return e.cacheSize(pageSize: pageSize)
            case .slabs: return e.totalSlabs
            case .activeSlabs: return e.activeSlabs
            case .name: return 0
            case .objects: return e.totalObjects
            case .pagesPerSlab: return e.pagesPerSlab
            case .objectSize: return e.objectSize
            case .use: return e.usePercent
            }
        }
        return entries.sorted { a, b in
            let va = value(a), vb = value(b)
            return va != vb ? va > vb : a.name < b.name
        }
    }

    /// The five summary lines `slabtop -o` prints above its table, without the blank line after.
    public func summary() -> String {
        let t = totals
        func pct(_ a: Int, _ b: Int) -> Double { b == 0 ? 0 : 100.0 * Double(a) / Double(b) }
        func k(_ bytes: Int) -> Double { Double(bytes) / 1024.0 }
        // slabtop: " %-35s: ..." with the label padded to 35 columns.
        func label(_ text: String) -> String { " " + SlabInfo.pad(text, 35, left: true) + ": " }
        return [
            label("Active / Total Objects (% used)")
                + cFormat("%lu / %lu (%.1f%%)", t.activeObjects, t.totalObjects, pct(t.activeObjects, t.totalObjects)),
            label("Active / Total Slabs (% used)")
                + cFormat("%lu / %lu (%.1f%%)", t.activeSlabs, t.totalSlabs, pct(t.activeSlabs, t.totalSlabs)),
            label("Active / Total Caches (% used)")
                + cFormat("%lu / %lu (%.1f%%)", t.activeCaches, t.totalCaches, pct(t.activeCaches, t.totalCaches)),
            label("Active / Total Size (% used)")
                + cFormat("%.2fK / %.2fK (%.1f%%)", k(t.activeSize), k(t.totalSize), pct(t.activeSize, t.totalSize)),
            label("Minimum / Average / Maximum Object")
                + cFormat("%.2fK / %.2fK / %.2fK", k(t.minimumObjectSize), k(t.averageObjectSize),
                          k(t.maximumObjectSize)),
        ].joined(separator: "\n")
    }

    /// slabtop's column header (without its trailing padding).
    public static let tableHeader = "  OBJS ACTIVE  USE OBJ SIZE  SLABS OBJ/SLAB CACHE SIZE NAME"

    /// One row of the `slabtop -o` table, formatted as slabtop's "%6u %6u %3u%% %7.2fK %6u %8u
    /// %9luK %-23s" (without trailing padding).
    public static func tableRow(_ e: Entry, pageSize: Int = ProcSlabInfo.systemPageSize) -> String {
        cFormat("%6lu %6lu %3lu%% %7.2fK %6lu %8lu %9luK ", e.totalObjects, e.activeObjects, e.usePercent,
                Double(e.objectSize) / 1024.0, e.totalSlabs, e.objectsPerSlab, e.cacheSizeKiB(pageSize: pageSize))
            + e.name
    }

    /// What `slabtop -o` prints: summary, blank line, header, rows (at most `limit`).
    public func slabtopReport(sortedBy key: SortKey = .cacheSize, limit: Int? = nil,
                              pageSize: Int = ProcSlabInfo.systemPageSize) -> String {
        var rows = sorted(by: key, pageSize: pageSize)
        if let limit, limit < rows.count { rows.removeLast(rows.count - limit) }
        return ([summary(), "", Self.tableHeader] + rows.map { Self.tableRow($0, pageSize: pageSize) })
            .joined(separator: "\n") + "\n"
    }
}

/// read(2), named apart from `ProcSlabInfo.read(path:)`.
private func systemRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int {
    #if canImport(Glibc)
    return Glibc.read(fd, buffer, count)
    #else
    return Musl.read(fd, buffer, count)
    #endif
}

/// printf through the C library, so figures round exactly as slabtop's do. Numbers only (a Swift
/// String is not a C vararg without Foundation): Int for %ld/%lu (long on LP64), Double for %f.
func cFormat(_ format: String, _ arguments: CVarArg...) -> String {
    var capacity = 128
    while true {
        var buffer = [CChar](repeating: 0, count: capacity)
        let n = withVaList(arguments) { list in
            buffer.withUnsafeMutableBufferPointer { vsnprintf($0.baseAddress, $0.count, format, list) }
        }
        precondition(n >= 0, "vsnprintf failed for format \(format)")
        if Int(n) < capacity {
            return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        }
        capacity = Int(n) + 1
    }
}
