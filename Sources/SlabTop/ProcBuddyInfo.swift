// ProcBuddyInfo: the kernel's /proc/buddyinfo read into zones (the Slab library's BuddyZone, the
// row its writer formats for this library's page allocators), rendered back byte for byte, and
// the readable view of `slabinfo --buddyinfo`.
//
// 1. The format (mm/vmstat.c, frag_show_print)
// ---------------------------------------------
//     Node 0, zone      DMA      0      0      0      0      0      0      0      0      1      1      3
//     Node 0, zone   Normal   5096   3401   1406    933    457    256    161    262    308    123     54
//
//   One zone a line: "Node %d, zone %8s " and then "%6lu " for each order from 0 up (11 orders on
//   x86-64, 0 to 10), each count the zone's free blocks of 2^order pages. There is no header. The
//   parser takes any number of orders, the same on every line, and names the first bad line.
//   Anyone may read the file.
//
// 2. The readable view (`slabinfo --buddyinfo`)
// ---------------------------------------------
//   The counts per order, then per zone the free memory, the largest free block, and the share of
//   the free memory in blocks of 2 MiB or more (what a huge page or a large contiguous allocation
//   can use: the usual measure of how fragmented free memory is).

import Slab

/// The kernel's /proc/buddyinfo, or this library's page allocators (`BuddyInfo.zones`) in its
/// format.
public struct ProcBuddyInfo: Sendable, Equatable {
    /// Where the kernel publishes it (readable by everyone).
    public static let defaultPath = "/proc/buddyinfo"

    public var zones: [BuddyZone]

    public init(zones: [BuddyZone]) { self.zones = zones }

    /// The text exactly as the kernel prints it.
    public func render() -> String { BuddyInfo.render(zones) }
}

// MARK: - A zone's figures

extension BuddyZone {
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

// MARK: - Parsing

extension ProcBuddyInfo {
    /// A line that is not in /proc/buddyinfo's format. `line` counts from 1.
    public typealias ParseError = ProcFile.ParseError<ParseProblem>

    /// What is wrong with a line of buddyinfo text.
    public enum ParseProblem: ProcFileProblem {
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

        public static let formatName = "buddyinfo"

        public var message: String {
            switch self {
            case .emptyInput: return "the text is empty (expected lines \"Node 0, zone Normal ...\")"
            case let .notAZoneLine(found): return "expected \"Node <n>, zone <name> <counts>\", found \"\(found)\""
            case .noCounts: return "no free-block counts after the zone name"
            case let .notANumber(order, value): return "the order-\(order) count is not a non-negative number: \"\(value)\""
            case let .orderCount(expected, found): return "\(found) orders, where the first line has \(expected)"
            }
        }
    }

    /// Parses /proc/buddyinfo text. A trailing newline is optional; every other line must be a zone.
    public static func parse(_ text: String) throws -> ProcBuddyInfo {
        let lines = ProcFile.lines(text)
        guard !lines.isEmpty else { throw ParseError(line: 1, problem: .emptyInput) }
        var zones: [BuddyZone] = []
        for (index, line) in lines.enumerated() {
            func fail(_ problem: ParseProblem) -> ParseError { ParseError(line: index + 1, problem: problem) }
            let fields = ProcFile.fields(line)
            // "Node", "0,", "zone", "<name>", counts...
            guard fields.count >= 4, fields[0] == "Node", fields[1].hasSuffix(","), fields[2] == "zone",
                  let node = ProcFile.decimal(fields[1].dropLast()) else {
                throw fail(.notAZoneLine(found: String(line)))
            }
            let counts = fields.dropFirst(4)
            guard !counts.isEmpty else { throw fail(.noCounts) }
            var blocks: [Int] = []
            for (order, field) in counts.enumerated() {
                guard let n = ProcFile.decimal(field) else { throw fail(.notANumber(order: order, value: String(field))) }
                blocks.append(n)
            }
            if let first = zones.first, first.freeBlocks.count != blocks.count {
                throw fail(.orderCount(expected: first.freeBlocks.count, found: blocks.count))
            }
            zones.append(BuddyZone(node: node, name: String(fields[3]), freeBlocks: blocks))
        }
        return ProcBuddyInfo(zones: zones)
    }

    /// Reads and parses a buddyinfo file (default: the running kernel's). Throws
    /// `ProcFile.ReadError` when it cannot be read, `ParseError` (naming the file) when it is not
    /// in the format.
    public static func read(path: String = defaultPath) throws -> ProcBuddyInfo {
        try ProcFile.read(path: path, as: ParseProblem.self, parse)
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
                SlabInfo.pad(text, widths[c], left: c == 1)
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
