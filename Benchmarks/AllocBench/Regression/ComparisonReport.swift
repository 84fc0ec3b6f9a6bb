// A Comparison as text (the terminal), Markdown (a CI job summary) or JSON (tools).
import Foundation

public enum ComparisonReport {
    public enum Format: String, CaseIterable, Sendable { case text, markdown, json }

    public static func render(_ c: Comparison, format: Format) -> String {
        switch format {
        case .text: return text(c)
        case .markdown: return markdown(c)
        case .json:
            // A Comparison holds only numbers and strings: encoding cannot fail.
            return try! ReportWriter.json(c)
        }
    }

    static let header = ["workload", "size", "thr", "allocator", "metric", "old", "new", "change", "95% CI",
                         "p (Holm)", "n", "peers", "verdict"]

    static func cells(_ r: ComparisonRow, kind: String) -> [String] {
        let ci: String
        if let lo = r.lower, let hi = r.upper { ci = "[\(percent(lo)), \(percent(hi))]" } else { ci = "-" }
        let p: String
        if let q = r.gated ? (r.pAdjusted ?? r.p) : r.p { p = pValue(q) + (r.gated ? "" : " (raw)") } else { p = "-" }
        let n = kind == InstructionRecord.kind ? "-" : (r.oldCount + r.newCount > 0 ? "\(r.oldCount)/\(r.newCount)" : "-")
        var verdict = r.verdict.rawValue
        if !r.gated && r.verdict != .new { verdict += " (not gated)" }
        return [r.workload, String(r.size), String(r.threads), r.allocator, r.metric.label,
                value(r.oldMedian, r.metric), value(r.newMedian, r.metric), r.change.map(percent) ?? "-", ci, p, n,
                r.peersChange.map(percent) ?? "-", verdict]
    }

    /// Instruction counts are exact: the test columns (interval, p, n) say nothing there.
    static func columns(_ c: Comparison) -> [Int] {
        c.kind == InstructionRecord.kind ? [0, 1, 2, 3, 4, 5, 6, 7, 11, 12] : Array(header.indices)
    }

    static func text(_ c: Comparison) -> String {
        var out = "bench compare (\(c.kind))\n"
        out += "  OLD  \(c.old.path): commit \(c.old.commit), \(c.old.date), \(c.old.cpuModel)\n"
        out += "  NEW  \(c.new.path): commit \(c.new.commit), \(c.new.date), \(c.new.cpuModel)\n"
        out += "  thresholds: \(thresholdText(c)); gated rows: \(c.gatedCount)\n"
        for n in c.notes { out += "  note: \(n)\n" }
        out += "\n"
        let keep = columns(c)
        var table = TextTable(header: keep.map { header[$0] }, leftColumns: 5)
        for r in c.rows { let row = cells(r, kind: c.kind); table.add(keep.map { row[$0] }) }
        out += table.render()
        for r in c.rows where r.note != nil && r.verdict != .same {
            out += "  \(r.workload) \(r.size) B x\(r.threads) \(r.allocator) \(r.metric.rawValue): \(r.note!)\n"
        }
        out += "\n" + geometricMeanText(c) + "\n" + summary(c) + "\n"
        return out
    }

    static func markdown(_ c: Comparison) -> String {
        var out = "### bench compare (\(c.kind)): \(headline(c))\n\n"
        out += "OLD `\(c.old.path)` (commit \(c.old.commit), \(c.old.date)); NEW `\(c.new.path)` (commit \(c.new.commit), \(c.new.date)), \(c.new.cpuModel).\n\n"
        out += "Thresholds: \(thresholdText(c)); gated rows: \(c.gatedCount).\n\n"
        for n in c.notes { out += "> \(n)\n\n" }
        let keep = columns(c)
        out += "| " + keep.map { header[$0] }.joined(separator: " | ") + " |\n"
        out += "|" + keep.map { $0 < 5 ? "---" : "---:" }.joined(separator: "|") + "|\n"
        for r in c.rows {
            let all = cells(r, kind: c.kind)
            var row = keep.map { all[$0] }
            if r.gated && (r.verdict == .slower) { row[row.count - 1] = "**\(row.last!)**" }
            out += "| " + row.map { $0.replacingOccurrences(of: "|", with: "\\|") }.joined(separator: " | ") + " |\n"
        }
        let noted = c.rows.filter { $0.note != nil && $0.verdict != .same }
        if !noted.isEmpty {
            out += "\n"
            for r in noted { out += "- \(r.workload) \(r.size) B x\(r.threads) \(r.allocator) \(r.metric.rawValue): \(r.note!)\n" }
        }
        out += "\n" + geometricMeanText(c) + "\n\n" + summary(c) + "\n"
        return out
    }

    static func thresholdText(_ c: Comparison) -> String {
        var parts: [String] = []
        var seen = Set<String>()
        for r in c.rows where seen.insert("\(r.metric.rawValue)").inserted {
            parts.append("\(r.metric.rawValue) \(percent(r.threshold, signed: false))")
        }
        let test = c.kind == InstructionRecord.kind ? "exact counts, no test" : "alpha \(c.alpha), Holm over the gated rows, whole 95% interval beyond the threshold"
        return "preset \(c.preset): " + parts.joined(separator: ", ") + " (" + test + ")"
    }

    static func geometricMeanText(_ c: Comparison) -> String {
        guard !c.geometricMeans.isEmpty else { return "geometric mean: no cell measured on both sides" }
        return "geometric mean of NEW/OLD over the cells in both: " + c.geometricMeans.map {
            "\($0.allocator) \($0.metric.rawValue) \(percent($0.change)) (\($0.cells) cells)"
        }.joined(separator: "; ")
    }

    static func headline(_ c: Comparison) -> String {
        let slower = c.regressions.count
        if slower > 0 { return "REGRESSION in \(slower) gated row\(slower == 1 ? "" : "s")" }
        if !c.blindSpots.isEmpty { return "no regression seen; \(c.blindSpots.count) gated row\(c.blindSpots.count == 1 ? "" : "s") could not be judged" }
        return "no regression"
    }

    static func summary(_ c: Comparison) -> String {
        var lines = ["verdict: " + headline(c)]
        for r in c.regressions {
            lines.append("  slower: \(r.workload) \(r.size) B x\(r.threads) \(r.allocator) \(r.metric.rawValue) \(r.change.map(percent) ?? "")")
        }
        let blind = Dictionary(grouping: c.blindSpots, by: \.verdict)
        for v in Verdict.allCases { if let n = blind[v]?.count { lines.append("  \(v.rawValue): \(n) gated row\(n == 1 ? "" : "s")") } }
        if !c.improvements.isEmpty {
            lines.append("  faster: \(c.improvements.count) gated row\(c.improvements.count == 1 ? "" : "s"); if the gain is intended, record it with `bench baseline update`")
        }
        let env = c.rows.filter { $0.gated && $0.verdict == .environment }.count
        if env > 0 { lines.append("  environment: \(env) gated row\(env == 1 ? "" : "s") moved with the peers (the machine, not the code)") }
        return lines.joined(separator: "\n")
    }

    static func percent(_ x: Double) -> String { percent(x, signed: true) }

    static func percent(_ x: Double, signed: Bool) -> String {
        guard x.isFinite else { return "-" }
        let v = x * 100
        let text = abs(v) < 10 ? String(format: "%.1f", abs(v)) : String(format: "%.0f", abs(v))
        if !signed { return text + "%" }
        return (v < 0 ? "-" : "+") + text + "%"
    }

    static func pValue(_ p: Double) -> String {
        if p < 0.001 { return String(format: "%.0e", p) }
        return String(format: "%.3f", p)
    }

    static func value(_ v: Double?, _ metric: Metric) -> String {
        guard let v else { return "-" }
        switch metric {
        case .rss: return String(format: "%.1f MiB", v / 1_048_576)
        case .instructions: return String(format: "%.1f", v)
        default: return TextReport.fixed(v)
        }
    }
}
