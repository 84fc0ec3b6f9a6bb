// latest.txt: the report a person reads. The machine first (a figure means nothing without it),
// then a one-screen summary (one row per workload at the headline size, plus thread-scaling rows),
// then a table per workload. Every number is a median over repetitions; ratios divide medians
// measured in this run, never figures from elsewhere.
import Foundation

public enum TextReport {
    public static func render(_ record: RunRecord) -> String {
        let run = RunSummary(record)
        var out = ""
        out += "AllocBench run \(record.runID)"
        if record.quick { out += "  (quick)" }
        if record.interrupted { out += "  INTERRUPTED: partial results" }
        out += "\n\n" + machineBlock(record) + "\n"
        out += summary(record, run) + "\n"
        for workload in run.workloads { out += details(record, run, workload) + "\n" }
        out += failures(record)
        return out
    }

    // MARK: Machine

    static func machineBlock(_ record: RunRecord) -> String {
        machineBlock(record.machine, duration: record.durationSeconds,
                     versions: record.allocators.compactMap { a in record.version(of: a).map { (a, $0) } },
                     extra: [("Slab mode", record.machine.slabMode)])
    }

    /// The "Machine" block every report opens with: the machine, the software, then `extra`
    /// rows and the allocators' versions (each named once: "glibc 2.36", "slab (mode=...)").
    static func machineBlock(_ m: MachineInfo, duration seconds: Double, versions: [(AllocatorID, String)],
                             extra: [(String, String)], trailing: [(String, String)] = []) -> String {
        let named = versions.map { a, v in v.hasPrefix(a.name) ? v : "\(a.name) (\(v))" }
        let rows: [(String, String)] = [
            ("CPU", "\(m.cpuModel) (\(m.cores) online CPUs)"),
            ("Kernel", m.kernel),
            ("glibc", m.glibc),
            ("Swift", m.swift),
            ("Commit", m.commitLabel),
            ("Date", "\(m.date)  (run took \(duration(seconds)))"),
        ] + extra + [("Allocators", named.joined(separator: ", "))] + trailing
        return "Machine\n" + rows.map { "  " + $0.0.padding(toLength: 11, withPad: " ", startingAt: 0) + $0.1 }
            .joined(separator: "\n") + "\n"
    }

    // MARK: Summary

    static func summary(_ record: RunRecord, _ run: RunSummary) -> String {
        var header = ["workload", "size", "thr"] + run.allocators.map(\.name)
        let hasSlab = run.allocators.contains(.slab)
        let hasKmalloc = run.allocators.contains(.kmalloc)
        let hasBare = hasSlab && run.allocators.contains(.slabBare)
        if hasSlab { header.append("slab/best") }
        if hasKmalloc { header.append("kmalloc/best") }
        if hasBare { header.append("slab/bare") }
        var table = TextTable(header: header, leftColumns: 1)
        for workload in run.workloads {
            guard let size = run.headlineSize(of: workload) else { continue }
            let threadCounts = Set(run.keys(of: workload).filter { $0.size == size }.map(\.threads)).sorted()
            for threads in threadCounts {
                let key = CellKey(workload: workload, size: size, threads: threads)
                let cells = run.cells[key] ?? [:]
                var row = [workload, record.sizeLabel(workload, size), String(threads)]
                for a in run.allocators { row.append(cellText(cells[a])) }
                if hasSlab { row.append(ratio(run.slabRatioToBestPeer(key))) }
                if hasKmalloc { row.append(ratio(run.slabRatioToBestPeer(key, slab: .kmalloc))) }
                if hasBare {
                    let m = run.medians(key)
                    row.append(ratio(Ratio.of(m[.slab], to: m[.slabBare])))
                }
                table.add(row)
            }
        }
        var text = "Summary: median ns per op (one object allocated and freed; lower is better)\n"
        if hasSlab {
            text += "slab/best = slab's median / the best peer's median in the same cell (below 1: the slab is faster)\n"
        }
        if hasKmalloc {
            text += "kmalloc/best = kmalloc's median / the best peer's median in the same cell (below 1: kmalloc is faster)\n"
        }
        if hasBare {
            text += "slab/bare = slab's median / slab-bare's (the per-CPU pop and push alone, without the free's ownership test): the design's limit\n"
        }
        return text + table.render()
    }

    static func cellText(_ s: CellSummary?) -> String {
        guard let s else { return "-" }
        guard s.status == .ok, let ns = s.nsPerOp?.median else { return s.status.rawValue }
        return fixed(ns)
    }

    // MARK: Per workload

    static func details(_ record: RunRecord, _ run: RunSummary, _ workload: String) -> String {
        var text = "== \(workload)"
        if let spec = record.spec(of: workload) { text += ": \(spec.summary)" }
        text += "\n"
        for key in run.keys(of: workload) {
            let cells = run.cells[key] ?? [:]
            let medians = run.medians(key)
            let glibc = medians[.glibc]
            let best = Ratio.bestPeer(in: medians)
            let hasLatency = cells.values.contains { $0.p50 != nil }
            let hasAfter = cells.values.contains { $0.rssAfterBytes != nil }
            let hasDrained = cells.values.contains { $0.rssDrainedBytes != nil }
            let hasPhases = cells.values.contains { $0.fillSeconds != nil }
            text += "\n\(record.spec(of: workload)?.mixedSizes == true ? "sizes" : "size") \(record.sizeLabel(workload, key.size)) B, \(key.threads) thread\(key.threads == 1 ? "" : "s")"
            if let best { text += "; best peer \(best.allocator.name)" }
            text += "\n"
            var header = ["allocator", "ns/op", "min-max", "MAD", "Mops/s", "x glibc", "x best", "peak RSS", "RSS/live"]
            if hasDrained { header.append("RSS drained") }
            if hasAfter { header.append("RSS after") }
            if hasPhases { header += ["fill ms", "drain ms", "release ms"] }
            if hasLatency { header += ["p50", "p99", "p99.9", "max"] }
            var table = TextTable(header: header, leftColumns: 1)
            for a in run.allocators {
                guard let s = cells[a] else { continue }
                guard s.status == .ok, let ns = s.nsPerOp else {
                    table.add([a.name, s.status.rawValue] + Array(repeating: "", count: header.count - 2))
                    continue
                }
                var row = [
                    a.name, fixed(ns.median), "\(fixed(ns.min))-\(fixed(ns.max))", fixed(ns.mad),
                    s.mopsPerSecond.map { fixed($0.median) } ?? "",
                    ratio(Ratio.of(ns.median, to: glibc)), ratio(Ratio.of(ns.median, to: best?.value)),
                    s.peakRSSBytes.map { bytes($0.median) } ?? "",
                    s.rssOverhead.map { fixed($0.median) } ?? "",
                ]
                if hasDrained { row.append(s.rssDrainedBytes.map { bytes($0.median) } ?? "") }
                if hasAfter { row.append(s.rssAfterBytes.map { bytes($0.median) } ?? "") }
                if hasPhases {
                    row += [s.fillSeconds, s.drainSeconds, s.releaseSeconds].map { $0.map { fixed($0.median * 1e3) } ?? "" }
                }
                if hasLatency { row += [s.p50, s.p99, s.p999, s.max].map { $0.map(fixed) ?? "" } }
                table.add(row)
            }
            text += table.render()
            text += releaseNote(run, cells)
            if hasPhases { text += phasesNote }
            if hasLatency { text += latencyNote(cells) }
        }
        return text
    }

    /// Under a table whose cells made release calls: what each allocator was asked with, and
    /// which had no call (whose "RSS after" is what it gave back unasked).
    static func releaseNote(_ run: RunSummary, _ cells: [AllocatorID: CellSummary]) -> String {
        let calls = run.allocators.compactMap { a in cells[a]?.releaseCall.map { (a, $0) } }
        guard !calls.isEmpty else { return "" }
        var text = "RSS drained: after the last drain; RSS after: after the release call that followed it. Release calls: "
        text += calls.map { a, call in "\(a.name) \(call.summary)" }.joined(separator: "; ") + "\n"
        return text
    }

    /// Under a table with the sawtooth's phase columns: what they time.
    static let phasesNote = "fill / drain / release ms: one cycle's filling, draining and release call, each the median "
        + "over the cycles, then over the repetitions (from the RSS series' timestamps)\n"

    /// Under a table with latency columns: what a latency figure is.
    static func latencyNote(_ cells: [AllocatorID: CellSummary]) -> String {
        let groups = Set(cells.values.compactMap(\.latencyGroupOps))
        let singles = cells.values.contains { $0.p50 != nil && $0.latencyGroupOps == nil }
        var parts: [String] = []
        if !groups.isEmpty {
            let k = groups.sorted().map(String.init).joined(separator: " or ")
            parts.append("p50-max: ns per op of samples that time \(k) consecutive ops together (one op is below the clock's resolution; a slow op counts as its excess over the group)")
        }
        if singles {
            parts.append("latency of single ops: values under the clock's resolution (about 10-40 ns here) mean \"at the floor\"")
        }
        return parts.joined(separator: "; ") + "\n"
    }

    static func failures(_ record: RunRecord) -> String {
        let bad = record.results.filter { $0.status != .ok }
        guard !bad.isEmpty else { return "" }
        var text = "Cells not measured (\(bad.count))\n"
        for r in bad {
            let p = r.parameters
            text += "  \(r.status.rawValue): \(p.allocator.name) \(p.workload) size \(p.size) threads \(p.threads)"
            if let m = r.message { text += ": " + m }
            text += "\n"
        }
        return text
    }

    // MARK: Formatting

    /// ns and Mops/s with three significant digits or so: 2.34, 12.3, 123, 1234.
    public static func fixed(_ x: Double) -> String {
        guard x.isFinite else { return "-" }
        let a = abs(x)
        if a < 10 { return String(format: "%.2f", x) }
        if a < 100 { return String(format: "%.1f", x) }
        return String(format: "%.0f", x)
    }

    public static func ratio(_ x: Double?) -> String {
        guard let x, x.isFinite else { return "-" }
        return String(format: "%.2f", x)
    }

    public static func bytes(_ x: Double) -> String {
        let kib = 1024.0, mib = kib * kib, gib = mib * kib
        if x >= gib { return String(format: "%.2f GiB", x / gib) }
        if x >= mib { return String(format: "%.1f MiB", x / mib) }
        if x >= kib { return String(format: "%.0f KiB", x / kib) }
        return String(format: "%.0f B", x)
    }

    public static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds >= 0 else { return "-" }
        let s = Int(seconds.rounded())
        return s >= 60 ? "\(s / 60)m\(String(format: "%02d", s % 60))s" : String(format: "%.1fs", seconds)
    }
}

/// Columns padded to their widest cell; the first `leftColumns` left-aligned, the rest right-aligned.
struct TextTable {
    var header: [String]
    var leftColumns: Int
    var rows: [[String]] = []

    init(header: [String], leftColumns: Int) {
        self.header = header
        self.leftColumns = leftColumns
    }

    mutating func add(_ row: [String]) { rows.append(row) }

    func render() -> String {
        let all = [header] + rows
        var widths = Array(repeating: 0, count: header.count)
        for r in all { for (i, c) in r.enumerated() where i < widths.count { widths[i] = Swift.max(widths[i], c.count) } }
        func line(_ r: [String]) -> String {
            var parts: [String] = []
            for i in 0..<widths.count {
                let c = i < r.count ? r[i] : ""
                let pad = String(repeating: " ", count: widths[i] - c.count)
                parts.append(i < leftColumns ? c + pad : pad + c)
            }
            var s = parts.joined(separator: "  ")
            while s.last == " " { s.removeLast() }
            return s
        }
        var out = line(header) + "\n"
        out += widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ") + "\n"
        for r in rows { out += line(r) + "\n" }
        return out
    }
}
