// results/history.jsonl: one line of key figures per full run, instruction count and gate run,
// so that a trend is visible across commits without keeping every run's files.
//
// 1. A line
// ---------
//   {"kind": "run" | "instructions" | "gate-time" | "gate-instructions", "commit", "date",
//    "machine", "cores", "medians": {"pair/20/1": {"slab": 3.44, "glibc": 8.97, ...}},
//    "slabOverGlibc": {"pair/20/1": 0.38}, "instructionsPerOp": {"pair/20": {"slab": 31.2, ...}}}
//   Medians are ns per op; a gate-time line has the base's and the head's medians under the names
//   "<allocator>@base" and "<allocator>@head" ("slab@base", or "kmalloc@head" for `bench ab
//   --allocator kmalloc`); the trend reads the slab's. Keys sort, so lines diff well.
//
// 2. How it grows
// ---------------
//   `bench run` (a full, uninterrupted, non-quick run), `bench instructions` and `bench ab` each
//   append a line to the history file beside their output (results/history.jsonl by default) and
//   print it. A developer commits the lines of the runs that land with a change (the full run
//   and counts that update results/, the gate run of the final commit); a CI run in a fresh clone
//   appends to its own copy, prints the line in its log and keeps it in its results/ artifact.
//   Lines are never rewritten: the file is an append-only log, ordered by when runs happened.
import Foundation

public struct HistoryEntry: Codable, Sendable, Equatable {
    public var kind: String
    public var commit: String
    public var date: String
    public var machine: String
    public var cores: Int
    /// "workload/size/threads" -> allocator -> median ns per op.
    public var medians: [String: [String: Double]] = [:]
    /// "workload/size/threads" -> slab median / glibc median, where both ran.
    public var slabOverGlibc: [String: Double] = [:]
    /// "workload/size" -> allocator -> instructions per op.
    public var instructionsPerOp: [String: [String: Double]] = [:]

    public static func key(_ p: CellParameters) -> String { "\(p.workload)/\(p.size)/\(p.threads)" }

    /// A line with no figures yet: what it is and where it was measured.
    private init(kind: String, machine m: MachineInfo) {
        self.kind = kind
        commit = m.commitLabel
        date = m.date
        machine = m.cpuModel
        cores = m.cores
    }

    /// The line of a full run.
    public init(run r: RunRecord, kind: String = "run") {
        self.init(kind: kind, machine: r.machine)
        addMedians(of: r) { $0.allocator.rawValue }
        for (key, m) in medians {
            if let slab = m["slab"], let glibc = m["glibc"], glibc > 0 { slabOverGlibc[key] = Self.round(slab / glibc) }
        }
    }

    /// The line of an instruction count.
    public init(instructions r: InstructionRecord, kind: String = "instructions") {
        self.init(kind: kind, machine: r.machine)
        for c in r.cells where c.status == .ok {
            let v = c.instructionsPerOp
            guard v.isFinite else { continue }
            instructionsPerOp["\(c.workload)/\(c.size)", default: [:]][c.allocator] = Self.round(v)
        }
    }

    /// The line of a time gate (or any `bench ab`): the base's and the head's medians side by side,
    /// each under its allocator's name, so that an A/B of kmalloc never reads as the slab's.
    public init(gate base: RunRecord, head: RunRecord) {
        self.init(kind: "gate-time", machine: head.machine)
        addMedians(of: base) { "\($0.allocator.rawValue)@base" }
        addMedians(of: head) { "\($0.allocator.rawValue)@head" }
    }

    /// The median ns per op of every cell of `r` that succeeded, under the name `column` gives it.
    private mutating func addMedians(of r: RunRecord, as column: (CellParameters) -> String) {
        for c in r.results where c.status == .ok {
            guard let s = Spread(c.repetitions.map(\.nsPerOp)) else { continue }
            medians[Self.key(c.parameters), default: [:]][column(c.parameters)] = Self.round(s.median)
        }
    }

    /// Four significant digits: enough for a trend, short enough to read.
    static func round(_ x: Double) -> Double {
        guard x.isFinite, x != 0 else { return x }
        let scale = pow(10, 3 - floor(log10(abs(x))))
        return (x * scale).rounded() / scale
    }

    /// One JSON line, keys sorted.
    public var line: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try! encoder.encode(self), as: UTF8.self)
    }
}

public enum History {
    public static let defaultPath = "results/history.jsonl"

    /// Appends one line (creating the file and its folder if needed).
    public static func append(_ entry: HistoryEntry, to path: String) throws {
        try OutputFolder.makeParent(of: path)
        let data = Data((entry.line + "\n").utf8)
        if let h = FileHandle(forWritingAtPath: path) {
            defer { try? h.close() }
            try h.seekToEnd()
            try h.write(contentsOf: data)
        } else {
            guard FileManager.default.createFile(atPath: path, contents: data) else {
                throw BenchFileError(path: path, reason: "cannot be created")
            }
        }
    }

    /// Every entry of the file, oldest first; a line that does not decode is an error naming it.
    public static func load(_ path: String) throws -> [HistoryEntry] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw BenchFileError(path: path, reason: "does not exist (full runs, instruction counts and gate runs append to it)")
        }
        var entries: [HistoryEntry] = []
        for (i, line) in String(decoding: data, as: UTF8.self).split(separator: "\n").enumerated()
        where !line.trimmingCharacters(in: .whitespaces).isEmpty {
            do {
                entries.append(try JSONDecoder().decode(HistoryEntry.self, from: Data(line.utf8)))
            } catch {
                throw BenchFileError(path: path, reason: "line \(i + 1) is not a history entry: \(BenchFile.describe(error))")
            }
        }
        return entries
    }

    /// The cells whose trend `trend` prints and `chart` draws: the hot one-thread cells.
    public static let trendCells = ["pair/20/1", "batch-fifo-1000/20/1", "batch-random-1000/20/1", "steady-random/20/1",
                                    "batch-fifo-1m/20/1", "sawtooth/20/1", "larson/20/2", "ctor-256/256/1"]
    public static let instructionCells = ["pair/20", "batch-fifo-1000/20", "steady-random/20", "ctor-256/256"]

    /// A table per figure: one row per entry that has it.
    public static func trend(_ entries: [HistoryEntry]) -> String {
        var out = ""
        let runs = entries.filter { $0.kind == "run" }
        if !runs.isEmpty {
            out += "slab / glibc (median ns per op, same run; below 1 the slab is faster)\n"
            out += ratioTable(runs) { e, cell in e.slabOverGlibc[cell] } + "\n"
        }
        let counts = entries.filter { $0.kind == "instructions" || $0.kind == "gate-instructions" }
        if !counts.isEmpty {
            out += "instructions per op (slab: rseq path; fallback: slab-fallback)\n"
            let cells = instructionCells.filter { c in counts.contains { $0.instructionsPerOp[c] != nil } }
            var header = ["commit", "date", "kind"]
            for c in cells { header += ["\(c) slab", "\(c) fallback"] }
            var t = TextTable(header: header, leftColumns: 3)
            for e in counts {
                var row = [e.commit, String(e.date.prefix(10)), e.kind]
                for c in cells {
                    row.append(e.instructionsPerOp[c]?["slab"].map { String(format: "%.1f", $0) } ?? "-")
                    row.append(e.instructionsPerOp[c]?["slab-fallback"].map { String(format: "%.1f", $0) } ?? "-")
                }
                t.add(row)
            }
            out += t.render() + "\n"
        }
        let gates = entries.filter { $0.kind == "gate-time" }
        if !gates.isEmpty {
            out += "time gate: head / base slab median (same machine, interleaved)\n"
            out += ratioTable(gates) { e, cell in
                guard let m = e.medians[cell], let b = m["slab@base"], let h = m["slab@head"], b > 0 else { return nil }
                return h / b
            }
        }
        return out.isEmpty ? "no entries\n" : out
    }

    /// A row per entry (its commit and date) and a column per trend cell that some entry has a
    /// ratio for, `ratio(entry, cell)` to three decimals ("-" where that entry has none).
    static func ratioTable(_ entries: [HistoryEntry], ratio: (HistoryEntry, String) -> Double?) -> String {
        let cells = trendCells.filter { c in entries.contains { ratio($0, c) != nil } }
        var t = TextTable(header: ["commit", "date"] + cells.map(shortCell), leftColumns: 2)
        for e in entries {
            t.add([e.commit, String(e.date.prefix(10))] + cells.map { c in ratio(e, c).map { String(format: "%.3f", $0) } ?? "-" })
        }
        return t.render()
    }

    static func shortCell(_ c: String) -> String {
        let parts = c.split(separator: "/")
        guard parts.count == 3 else { return c }
        return parts[2] == "1" ? "\(parts[0]) \(parts[1])" : "\(parts[0]) \(parts[1]) x\(parts[2])"
    }

    /// Two panels by entry (x = the entry's place in the file, labelled with its commit):
    /// slab/glibc of the trend cells, and instructions per op of the slab's two paths (solid:
    /// rseq, dashed: fallback), each cell in the same colour in both panels.
    public static func chart(_ entries: [HistoryEntry]) -> String {
        let palette = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
        func color(_ cell: String) -> String {
            let i = trendCells.firstIndex { $0.hasPrefix(cell + "/") || $0 == cell } ?? 0
            return palette[i % palette.count]
        }
        typealias Point = (label: String, values: [String: Double])
        func panel(_ title: String, _ y: String, _ points: [Point], series names: [(key: String, cell: String, dashed: Bool)]) -> ChartPanel {
            let step = max(1, (points.count + 7) / 8)
            let ticks = Array(stride(from: 0, to: points.count, by: step))
            var series: [ChartSeries] = []
            for n in names {
                let pts = points.enumerated().compactMap { i, p in
                    p.values[n.key].map { (x: Double(i), y: $0, range: Optional<(Double, Double)>.none) }
                }
                guard !pts.isEmpty else { continue }
                series.append(ChartSeries(name: n.key, color: color(n.cell), points: pts, dashed: n.dashed))
            }
            return ChartPanel(title: title, xLabel: "commit (oldest first)", yLabel: y, xTicks: ticks.map(Double.init),
                              logX: false, series: series, xTickLabels: ticks.map { String(points[$0].label.prefix(7)) })
        }
        let runs: [Point] = entries.filter { $0.kind == "run" }.map { ($0.commit, $0.slabOverGlibc) }
        let counts: [Point] = entries.filter { $0.kind == "instructions" || $0.kind == "gate-instructions" }.map { e in
            (e.commit, instructionCells.reduce(into: [String: Double]()) { v, c in
                if let s = e.instructionsPerOp[c]?["slab"] { v[c + " rseq"] = s }
                if let f = e.instructionsPerOp[c]?["slab-fallback"] { v[c + " fallback"] = f }
            })
        }
        let panels = [
            panel("slab / glibc, median ns per op (below 1: faster)", "ratio", runs,
                  series: trendCells.map { ($0, $0, false) }),
            panel("instructions per op under callgrind (dashed: fallback)", "instructions", counts,
                  series: instructionCells.flatMap { [($0 + " rseq", $0, false), ($0 + " fallback", $0, true)] }),
        ]
        let legend = trendCells.map { (shortCell($0), color($0)) }
        return SVGChart.render(title: "History of the slab across commits",
                               subtitle: "\(runs.count) full runs and \(counts.count) instruction counts from results/history.jsonl",
                               panels: panels, legend: legend)
    }
}
