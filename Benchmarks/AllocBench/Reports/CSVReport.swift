// latest.csv: the tidy table. One row per (allocator, workload, size, threads, repetition); a
// cell that failed, timed out or was skipped has one row with its status and empty numbers.
// Quoting follows RFC 4180 (fields holding a comma, quote or newline are quoted, quotes doubled),
// which is what pandas.read_csv and spreadsheets expect. Every column is documented in the README
// (section csv-columns); a test checks that the README names each one.
import Foundation

public enum CSVReport {
    /// The columns, in order. Units are in the README.
    public static let columns = [
        "run_id", "date", "commit", "allocator", "allocator_version", "workload", "workload_version", "size",
        "threads",
        "repetition", "quick", "status", "message", "ops", "seconds", "ns_per_op", "mops_per_s",
        "p50_ns", "p99_ns", "p999_ns", "max_ns", "latency_samples", "peak_rss_bytes", "live_bytes",
        "rss_overhead", "rss_after_bytes", "latency_group_ops", "rss_drained_bytes", "release_call",
        "cycle_fill_seconds", "cycle_drain_seconds", "cycle_release_seconds",
    ]

    public static func render(_ record: RunRecord) -> String {
        var out = columns.joined(separator: ",") + "\n"
        for result in record.results {
            let p = result.parameters
            let common: [String] = [
                record.runID, record.machine.date, record.machine.commitLabel, p.allocator.name,
                record.version(of: p.allocator) ?? "", p.workload,
                record.spec(of: p.workload).map { String($0.version) } ?? "", String(p.size), String(p.threads),
            ]
            if result.status != .ok || result.repetitions.isEmpty {
                let status = result.status == .ok ? "failed" : result.status.rawValue
                let message = result.message ?? (result.status == .ok ? "no repetitions reported" : "")
                var row = common + ["", String(p.quick), status, message]
                row += Array(repeating: "", count: columns.count - row.count)
                out += line(row)
                continue
            }
            for (i, r) in result.repetitions.enumerated() {
                let phases = r.cyclePhases
                let row = common + [
                    String(i + 1), String(p.quick), "ok", result.message ?? "",
                    String(r.ops), number(r.seconds), number(r.nsPerOp), number(r.mopsPerSecond),
                    number(r.latency?.p50), number(r.latency?.p99), number(r.latency?.p999), number(r.latency?.max),
                    r.latency.map { String($0.samples) } ?? "",
                    String(r.peakRSSBytes), String(r.peakLiveBytes), number(r.rssOverhead),
                    r.rssAfterBytes.map(String.init) ?? "",
                    r.latency?.groupOps.map(String.init) ?? "", r.rssDrainedBytes.map(String.init) ?? "",
                    result.releaseCall?.summary ?? "",
                    number(phases?.fill), number(phases?.drain), number(phases?.release),
                ]
                out += line(row)
            }
        }
        return out
    }

    /// A number as the shortest text that reads back to the same Double; empty for nil/NaN/inf.
    static func number(_ x: Double?) -> String {
        guard let x, x.isFinite else { return "" }
        return "\(x)"
    }

    static func line(_ fields: [String]) -> String { fields.map(escape).joined(separator: ",") + "\n" }

    /// RFC 4180 quoting.
    public static func escape(_ field: String) -> String {
        guard field.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return field }
        return "\"" + field.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// Parses RFC 4180 text into rows of fields (the inverse of `render`; used by tests and tools).
    public static func parse(_ text: String) -> [[String]] {
        var rows: [[String]] = []
        var row: [String] = []
        var field = ""
        var quoted = false
        var chars = Array(text).makeIterator()
        var pending: Character? = nil
        func next() -> Character? {
            if let p = pending { pending = nil; return p }
            return chars.next()
        }
        var sawAny = false
        while let c = next() {
            sawAny = true
            if quoted {
                if c == "\"" {
                    if let d = next() {
                        if d == "\"" { field.append("\"") } else { quoted = false; pending = d }
                    } else { quoted = false }
                } else {
                    field.append(c)
                }
                continue
            }
            switch c {
            case "\"": quoted = true
            case ",": row.append(field); field = ""
            case "\r\n", "\n":
                row.append(field); field = ""
                rows.append(row); row = []
            case "\r": break
            default: field.append(c)
            }
        }
        if sawAny && (!field.isEmpty || !row.isEmpty) {
            row.append(field)
            rows.append(row)
        }
        return rows
    }
}
