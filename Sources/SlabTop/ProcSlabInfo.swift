// ProcSlabInfo: the kernel's /proc/slabinfo (version 2.1) read back into rows, and the numbers
// slabtop derives from them. The Slab library writes this format for our own caches (SlabInfo,
// each line a SlabInfoRow); this file reads it into the same SlabInfoRow, for the kernel's caches
// and for ours (a round trip the tests make).
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

import Slab

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
    /// One row per cache, in file order.
    public var rows: [SlabInfoRow]

    public init(version: String = "2.1", rows: [SlabInfoRow]) {
        self.version = version
        self.rows = rows
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

    /// The totals over every row, as `slabtop -o` computes them.
    public var totals: Totals {
        var t = Totals()
        var minimum = Int.max
        for e in rows {
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
        t.minimumObjectSize = rows.isEmpty ? 0 : minimum
        t.averageObjectSize = t.totalObjects == 0 ? 0 : t.totalSize / t.totalObjects
        return t
    }

    /// The running system's page size (what the kernel's pagesperslab counts).
    public static var systemPageSize: Int {
        let size = sysconf(Int32(_SC_PAGESIZE))
        return size > 0 ? size : 4096
    }
}

// MARK: - A row's figures in slabtop

extension SlabInfoRow {
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

// MARK: - Parsing

extension ProcSlabInfo {
    /// A line of slabinfo text that does not have the 2.1 format. `line` counts from 1.
    public typealias ParseError = ProcFile.ParseError<ParseProblem>

    /// What is wrong with a line of slabinfo text.
    public enum ParseProblem: ProcFileProblem {
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

        public static let formatName = "slabinfo"

        public var message: String {
            switch self {
            case .emptyInput:
                return "the text is empty (expected \"slabinfo - version: 2.1\")"
            case let .wrongVersionLine(found):
                return "expected \"slabinfo - version: 2.1\", found \"\(found)\""
            case let .missingColumnHeader(found):
                return "expected the column header \"# name ...\", found \"\(found)\""
            case .emptyLine:
                return "empty line where a cache line was expected"
            case let .missingSeparators(found):
                return "expected 2 ':' separators (name ... : tunables ... : slabdata ...), found \(found)"
            case let .wrongFieldCount(section, expected, found):
                return "\(section) needs \(expected) fields, found \(found)"
            case let .missingLabel(expected, found):
                return "expected \"\(expected)\" after ':', found \"\(found)\""
            case let .notANumber(field, value):
                return "\(field) is not a non-negative number: \"\(value)\""
            }
        }
    }

    /// Parses the text of a /proc/slabinfo (version 2.1) file. A trailing newline is optional.
    /// Throws `ParseError` naming the first bad line.
    public static func parse(_ text: String) throws -> ProcSlabInfo {
        let lines = ProcFile.lines(text)
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

        var rows: [SlabInfoRow] = []
        rows.reserveCapacity(lines.count - 2)
        for index in 2..<lines.count {
            rows.append(try parseRow(lines[index], lineNumber: index + 1))
        }
        return ProcSlabInfo(version: version, rows: rows)
    }

    /// Parses one cache line ("name n n n n n : tunables n n n : slabdata n n n").
    public static func parseRow(_ line: Substring, lineNumber: Int) throws -> SlabInfoRow {
        func fail(_ problem: ParseProblem) -> ParseError { ParseError(line: lineNumber, problem: problem) }
        let headColumns = SlabInfoRow.headColumns

        let fields = ProcFile.fields(line)
        guard !fields.isEmpty else { throw fail(.emptyLine) }
        // Sections between ':' fields: [name + 5], ["tunables" + 3], ["slabdata" + 3], extras.
        let sections = fields.split(separator: ":", omittingEmptySubsequences: false)
        guard sections.count >= 3 else { throw fail(.missingSeparators(found: sections.count - 1)) }

        let head = sections[0], tunables = sections[1], slabdata = sections[2]
        guard head.count == 1 + headColumns.count else {
            throw fail(.wrongFieldCount(section: "the name section (name and \(headColumns.count) numbers)",
                                        expected: 1 + headColumns.count, found: head.count))
        }
        func numbers(_ fields: ArraySlice<Substring>, _ columns: [String]) throws -> [Int] {
            try zip(fields, columns).map { text, column in
                guard let value = ProcFile.decimal(text) else { throw fail(.notANumber(field: column, value: String(text))) }
                return value
            }
        }
        func labelled(_ section: ArraySlice<Substring>, _ label: String, _ columns: [String]) throws -> [Int] {
            guard let first = section.first, first == label else {
                throw fail(.missingLabel(expected: label, found: section.first.map(String.init) ?? ""))
            }
            guard section.count == 1 + columns.count else {
                throw fail(.wrongFieldCount(section: "the \(label) section (\"\(label)\" and \(columns.count) numbers)",
                                            expected: 1 + columns.count, found: section.count))
            }
            return try numbers(section.dropFirst(), columns)
        }

        let name = head[head.startIndex]
        let h = try numbers(head.dropFirst(), headColumns)
        let t = try labelled(tunables, "tunables", SlabInfoRow.tunableColumns)
        let s = try labelled(slabdata, "slabdata", SlabInfoRow.slabdataColumns)
        return SlabInfoRow(name: String(name), activeObjects: h[0], totalObjects: h[1], objectSize: h[2],
                           objectsPerSlab: h[3], pagesPerSlab: h[4], limit: t[0], batchCount: t[1], sharedFactor: t[2],
                           activeSlabs: s[0], totalSlabs: s[1], sharedAvailable: s[2])
    }
}

// MARK: - Reading

extension ProcSlabInfo {
    /// Reads and parses a slabinfo file (default: the running kernel's). Throws
    /// `ProcFile.ReadError` when it cannot be read, `ParseError` (naming the file) when it is not
    /// version 2.1.
    public static func read(path: String = defaultPath) throws -> ProcSlabInfo {
        try ProcFile.read(path: path, as: ParseProblem.self, parse)
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

    /// The rows in `key` order.
    public func sorted(by key: SortKey, pageSize: Int = ProcSlabInfo.systemPageSize) -> [SlabInfoRow] {
        func value(_ e: SlabInfoRow) -> Int {
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
        return rows.sorted { a, b in
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
    public static func tableRow(_ e: SlabInfoRow, pageSize: Int = ProcSlabInfo.systemPageSize) -> String {
        cFormat("%6lu %6lu %3lu%% %7.2fK %6lu %8lu %9luK ", e.totalObjects, e.activeObjects, e.usePercent,
                Double(e.objectSize) / 1024.0, e.totalSlabs, e.objectsPerSlab, e.cacheSizeKiB(pageSize: pageSize))
            + e.name
    }

    /// What `slabtop -o` prints: summary, blank line, header, rows (at most `limit`).
    public func slabtopReport(sortedBy key: SortKey = .cacheSize, limit: Int? = nil,
                              pageSize: Int = ProcSlabInfo.systemPageSize) -> String {
        var shown = sorted(by: key, pageSize: pageSize)
        if let limit, limit < shown.count { shown.removeLast(shown.count - limit) }
        return ([summary(), "", Self.tableHeader] + shown.map { Self.tableRow($0, pageSize: pageSize) })
            .joined(separator: "\n") + "\n"
    }
}
