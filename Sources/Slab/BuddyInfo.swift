// BuddyInfo: free blocks per order, in the format of the kernel's /proc/buddyinfo, for the
// kernel's zones (read from the file, which anyone may read) and for this library's page
// allocators (each cache's PageSource, and kmalloc's page allocator for requests above 8 KiB).
//
// 1. The format (mm/vmstat.c, frag_show_print)
// ---------------------------------------------
//     Node 0, zone      DMA      0      0      0      0      0      0      0      0      1      1      3
//     Node 0, zone   Normal   5096   3401   1406    933    457    256    161    262    308    123     54
//
//   One zone a line: "Node %d, zone %8s " and then "%6lu " for each order from 0 up (11 orders on
//   x86-64, 0 to 10), each count the zone's free blocks of 2^order pages. There is no header. The
//   parser takes any number of orders, the same on every line, and names the first bad line.
//
// 2. This library's zones
// -----------------------
//   One line per page source, named after its cache ("Node 0, zone  mycache ..."), and
//   "kmalloc-large" for kmalloc's page allocator, so a tool that reads /proc/buddyinfo reads ours.
//   The counts are the free blocks in the arenas the page source has carved so far (the rest of
//   its reserved range is address space, not memory); since every released block goes back to the
//   OS at once, a free block here holds no memory: the counts show how the address space is split.
//
// 3. The readable view (`slabinfo --buddyinfo`)
// ---------------------------------------------
//   The counts per order, then per zone the free memory, the largest free block, and the share of
//   the free memory in blocks of 2 MiB or more (what a huge page or a large contiguous allocation
//   can use: the usual measure of how fragmented free memory is).

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One zone's free blocks per order: a line of /proc/buddyinfo.
public struct BuddyZone: Sendable, Equatable {
    public var node: Int
    public var name: String
    /// Free blocks of each order (index = order): blocks of 2^order pages.
    public var freeBlocks: [Int]

    public init(node: Int = 0, name: String, freeBlocks: [Int]) {
        self.node = node
        self.name = name
        self.freeBlocks = freeBlocks
    }

    /// A page source's free blocks, as a zone named `name`.
    init(name: String, pages: PageSource) {
        self.init(node: 0, name: name, freeBlocks: pages.freeBlocksPerOrder())
    }

    /// Free pages: the sum of blocks x 2^order.
    public var freePages: Int { freeBlocks.enumerated().reduce(0) { $0 + $1.element << $1.offset } }

    /// The order of the largest free block, nil when nothing is free.
    public var largestOrder: Int? { freeBlocks.lastIndex { $0 > 0 } }

    /// The share (0...1) of the free pages that lie in blocks of at least `order`; 0 when nothing
    /// is free.
    public func fractionFree(inBlocksOfAtLeastOrder order: Int) -> Double {
        let total = freePages
        guard total > 0 else { return 0 }
        let large = freeBlocks.enumerated().filter { $0.offset >= order }.reduce(0) { $0 + $1.element << $1.offset }
        return Double(large) / Double(total)
    }
}

/// The kernel's /proc/buddyinfo, or this library's page allocators in its format.
public struct ProcBuddyInfo: Sendable, Equatable {
    /// Where the kernel publishes it (readable by everyone).
    public static let defaultPath = "/proc/buddyinfo"

    public var zones: [BuddyZone]

    public init(zones: [BuddyZone]) { self.zones = zones }

    /// This library's page allocators now: one zone per live cache, named after it, then
    /// kmalloc's page allocator ("kmalloc-large") once kmalloc has been used.
    public static var library: ProcBuddyInfo {
        var zones = Registry.shared.caches.map { BuddyZone(name: $0.name, pages: $0.slabLayer.pages) }
        if let large = Kmalloc.pageAllocatorZone { zones.append(large) }
        return ProcBuddyInfo(zones: zones)
    }

    /// The text exactly as the kernel prints it: "Node %d, zone %8s " and "%6lu " per order.
    public func render() -> String {
        zones.map { zone in
            "Node \(zone.node), zone " + SlabInfo.pad(zone.name, 8, left: false) + " "
                + zone.freeBlocks.map { SlabInfo.pad($0, 6) + " " }.joined()
        }.joined(separator: "\n") + (zones.isEmpty ? "" : "\n")
    }
}

// MARK: - Parsing

extension ProcBuddyInfo {
    /// A line that is not in /proc/buddyinfo's format. `line` counts from 1.
    public struct ParseError: Error, Equatable, Sendable, CustomStringConvertible {
        public enum Problem: Equatable, Sendable {
            /// Nothing to read.
            case emptyInput
            /// The line does not start "Node <n>, zone <name>".
            case notAZoneLine(found: String)
            /// "Node <n>, zone <name>" and no counts after it.
            case noCounts
            /// A count that is not a non-negative decimal number.
            case notANumber(order: Int, value: String)
            /// A different number of orders than the first line had.
            case orderCount(expected: Int, found: Int)
        }

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
            let place = "\(source ?? "buddyinfo") line \(line)"
            switch problem {
            case .emptyInput: return "\(place): the text is empty (expected lines \"Node 0, zone Normal ...\")"
            case let .notAZoneLine(found): return "\(place): expected \"Node <n>, zone <name> <counts>\", found \"\(found)\""
            case .noCounts: return "\(place): no free-block counts after the zone name"
            case let .notANumber(order, value): return "\(place): the order-\(order) count is not a non-negative number: \"\(value)\""
            case let .orderCount(expected, found):
                return "\(place): \(found) orders, where the first line has \(expected)"
            }
        }
    }

    /// Parses /proc/buddyinfo text. A trailing newline is optional; every other line must be a zone.
    public static func parse(_ text: String) throws -> ProcBuddyInfo {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        if lines.last?.isEmpty == true { lines.removeLast() }
        guard !lines.isEmpty else { throw ParseError(line: 1, problem: .emptyInput) }
        var zones: [BuddyZone] = []
        for (index, line) in lines.enumerated() {
            func fail(_ problem: ParseError.Problem) -> ParseError { ParseError(line: index + 1, problem: problem) }
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            // "Node", "0,", "zone", "<name>", counts...
            guard fields.count >= 4, fields[0] == "Node", fields[1].hasSuffix(","), fields[2] == "zone",
                  let node = Self.number(fields[1].dropLast()) else {
                throw fail(.notAZoneLine(found: String(line)))
            }
            let counts = fields.dropFirst(4)
            guard !counts.isEmpty else { throw fail(.noCounts) }
            var blocks: [Int] = []
            for (order, field) in counts.enumerated() {
                guard let n = Self.number(field) else { throw fail(.notANumber(order: order, value: String(field))) }
                blocks.append(n)
            }
            if let first = zones.first, first.freeBlocks.count != blocks.count {
                throw fail(.orderCount(expected: first.freeBlocks.count, found: blocks.count))
            }
            zones.append(BuddyZone(node: node, name: String(fields[3]), freeBlocks: blocks))
        }
        return ProcBuddyInfo(zones: zones)
    }

    /// Digits only: no sign, no blanks; values too large for an Int are not numbers either.
    private static func number(_ text: Substring) -> Int? {
        guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return Int(text)
    }

    /// Reads and parses a buddyinfo file (default: the running kernel's). Throws
    /// ProcSlabInfo.ReadError when it cannot be read, ParseError (naming the file) when it is not
    /// in the format.
    public static func read(path: String = defaultPath) throws -> ProcBuddyInfo {
        let text = try ProcSlabInfo.readText(path: path)
        do {
            return try parse(text)
        } catch var error as ParseError {
            error.source = path
            throw error
        }
    }
}

// MARK: - The readable view

extension ProcBuddyInfo {
    /// Blocks of at least this many bytes count as "large" in the view: a huge page's worth.
    public static let largeBlockBytes = 2 << 20

    /// The counts per order, and per zone the free memory, the largest free block and the share of
    /// free memory in blocks of 2 MiB or more; then the totals.
    public func report(pageSize: Int = ProcSlabInfo.systemPageSize) -> String {
        let orders = zones.map(\.freeBlocks.count).max() ?? 0
        let largeOrder = Self.order(ofBytes: Self.largeBlockBytes, pageSize: pageSize)
        let header = ["Node", "Zone"] + (0..<orders).map(String.init)
            + ["Free", "Largest", ">=" + Self.bytes(Self.largeBlockBytes).replacingBlanks()]
        var rows: [[String]] = []
        for zone in zones {
            var row = [String(zone.node), zone.name]
            row += (0..<orders).map { $0 < zone.freeBlocks.count ? String(zone.freeBlocks[$0]) : "" }
            row.append(Self.bytes(zone.freePages * pageSize))
            row.append(zone.largestOrder.map { Self.bytes(pageSize << $0) } ?? "-")
            row.append(zone.freePages == 0 ? "-" : Self.percent(zone.fractionFree(inBlocksOfAtLeastOrder: largeOrder)))
            rows.append(row)
        }
        // Columns: node right, zone left, the rest right.
        let widths = header.indices.map { c in ([header] + rows).map { $0[c].count }.max() ?? 0 }
        func format(_ row: [String]) -> String {
            row.enumerated().map { c, text in
                c == 1 ? SlabInfo.pad(text, widths[c], left: true) : SlabInfo.pad(text, widths[c], left: false)
            }.joined(separator: "  ").trimmingTrailingBlanks()
        }
        let all = BuddyZone(node: 0, name: "total", freeBlocks: (0..<orders).map { k in
            zones.reduce(0) { $0 + (k < $1.freeBlocks.count ? $1.freeBlocks[k] : 0) }
        })
        var lines = ["Free blocks per order (a block of order k is 2^k pages of \(Self.bytes(pageSize)))", format(header)]
        lines += rows.map(format)
        var total = "Total free \(Self.bytes(all.freePages * pageSize)) in \(all.freePages) pages"
        if let largest = all.largestOrder {
            total += "; largest block \(Self.bytes(pageSize << largest)) (order \(largest)); "
                + "\(Self.percent(all.fractionFree(inBlocksOfAtLeastOrder: largeOrder))) of it in blocks of "
                + "\(Self.bytes(Self.largeBlockBytes)) or more"
        }
        lines.append(total)
        return lines.joined(separator: "\n") + "\n"
    }

    /// The smallest order whose blocks hold `bytes`.
    static func order(ofBytes bytes: Int, pageSize: Int) -> Int {
        var k = 0
        while pageSize << k < bytes { k += 1 }
        return k
    }

    /// "4 KiB", "3.8 MiB", "2 MiB", "14.5 GiB": binary units, one decimal unless whole.
    static func bytes(_ n: Int) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(n)
        var unit = 0
        while value >= 1024, unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        let text = value == value.rounded() ? String(Int(value)) : cFormat("%.1f", value)
        return text + " " + units[unit]
    }

    static func percent(_ fraction: Double) -> String { cFormat("%.1f%%", fraction * 100) }
}

extension String {
    /// Without the blanks at its end (a padded last column leaves none behind).
    func trimmingTrailingBlanks() -> String {
        var s = Substring(self)
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }

    /// Blanks removed ("2 MiB" -> "2MiB"), for a column header that must stay one word.
    func replacingBlanks() -> String { String(filter { $0 != " " }) }
}
