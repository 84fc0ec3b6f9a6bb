// What `bench instructions` writes into its output folder, each file atomically (AtomicFile):
//
//   instructions.json  the InstructionRecord: what `bench compare` reads
//   instructions.txt   for a person: the machine and the tools, then one table of instructions
//                      per op (rows workload and size, columns allocators), and with the cache
//                      simulation two more of simulated misses per op
//   instructions.csv   one row per cell, for scripts (columns below)
//
// Counts are exact, so the text prints instructions per op with one decimal and no spread: a
// difference of 0.1 between two runs of the same binary would be a bug in the harness.
import Foundation

public enum InstructionReport {
    /// instructions.csv, one row per cell (RFC 4180, like latest.csv):
    ///   run_id, date, commit      the run (as in latest.csv)
    ///   valgrind                  `valgrind --version`
    ///   cache_sim                 true when callgrind simulated the caches (the miss columns)
    ///   allocator                 an AllocatorID (slab: the rseq path, slab-fallback: the fallback)
    ///   allocator_version         what the child saw ("slab mode=rseq-simulated magazine=255")
    ///   workload, workload_version, size
    ///   status, message           ok / failed / timeout / skipped, and why
    ///   ops                       objects allocated and freed in the counted region
    ///   instructions              callgrind's Ir in the counted region
    ///   instructions_per_op       instructions / ops
    ///   d1_misses, ll_misses      simulated D1 and last-level data misses (reads + writes) in
    ///                             the region; empty without cache simulation
    ///   d1_misses_per_op, ll_misses_per_op   the same per op
    public static let csvColumns = [
        "run_id", "date", "commit", "valgrind", "cache_sim", "allocator", "allocator_version", "workload",
        "workload_version", "size", "status", "message", "ops", "instructions", "instructions_per_op",
        "d1_misses", "ll_misses", "d1_misses_per_op", "ll_misses_per_op",
    ]

    public static func csv(_ record: InstructionRecord) -> String {
        var out = csvColumns.joined(separator: ",") + "\n"
        for c in record.cells {
            let ok = c.status == .ok
            let perOp: (UInt64?) -> String = { v in
                guard ok, let v, c.ops > 0 else { return "" }
                return CSVReport.number(Double(v) / Double(c.ops))
            }
            out += CSVReport.line([
                record.runID, record.machine.date, record.machine.commitLabel, record.valgrind,
                String(record.cacheSimulation), c.allocator, c.allocatorVersion ?? "", c.workload,
                String(c.workloadVersion), String(c.size), c.status.rawValue, c.message ?? "",
                ok ? String(c.ops) : "", ok ? String(c.instructions) : "", ok ? CSVReport.number(c.instructionsPerOp) : "",
                ok ? c.d1Misses.map(String.init) ?? "" : "", ok ? c.llMisses.map(String.init) ?? "" : "",
                perOp(c.d1Misses), perOp(c.llMisses),
            ])
        }
        return out
    }

    public static func text(_ record: InstructionRecord) -> String {
        var out = "AllocBench instruction counts \(record.runID)\n\n"
        out += machineBlock(record) + "\n"
        out += "Instructions per op: callgrind's Ir in the measured region / ops (one object allocated and freed;\n"
        out += "lower is better). Exact: the same binary counts the same on every run.\n"
        out += table(record) { c in perOp(c.instructionsPerOp) }
        if record.cacheSimulation {
            out += "\nSimulated D1 data misses per op (reads + writes)\n"
            out += table(record) { c in c.d1Misses.map { misses(Double($0) / Double(c.ops)) } ?? "-" }
            out += "\nSimulated last-level data misses per op (reads + writes)\n"
            out += table(record) { c in c.llMisses.map { misses(Double($0) / Double(c.ops)) } ?? "-" }
        }
        let bad = record.cells.filter { $0.status != .ok }
        if !bad.isEmpty {
            out += "\nCells not counted (\(bad.count))\n"
            for c in bad {
                out += "  \(c.status.rawValue): \(c.allocator) \(c.workload) size \(c.size)"
                if let m = c.message { out += ": " + m }
                out += "\n"
            }
        }
        return out
    }

    static func machineBlock(_ record: InstructionRecord) -> String {
        let m = record.machine
        let counted = AllocatorID.reportOrder(record.cells.compactMap { AllocatorID(rawValue: $0.allocator) })
        let versions: [(AllocatorID, String)] = counted.compactMap { a in
            let fromCell = record.cells.first { $0.allocator == a.rawValue && $0.allocatorVersion != nil }?.allocatorVersion
            return (fromCell ?? m.allocatorVersions[a.rawValue]).map { (a, $0) }
        }
        return TextReport.machineBlock(
            m, duration: record.durationSeconds, versions: versions,
            extra: [("Valgrind", "\(record.valgrind), callgrind, cache simulation \(record.cacheSimulation ? "on" : "off")")],
            trailing: [("Settings", "slab: SLAB_CPU_LAYER=rseq-simulated (the rseq path), slab-fallback: SLAB_CPU_LAYER=fallback, jemalloc: MALLOC_CONF=\(InstructionCounter.jemallocConfiguration) (no purging on a timer)")])
    }

    /// Rows workload and size in the order counted, columns the allocators in the order counted;
    /// a cell that was not counted shows its status.
    static func table(_ record: InstructionRecord, _ value: (InstructionCell) -> String) -> String {
        var allocators: [String] = []
        var rows: [(workload: String, size: Int)] = []
        var byKey: [String: InstructionCell] = [:]
        for c in record.cells {
            if !allocators.contains(c.allocator) { allocators.append(c.allocator) }
            if !rows.contains(where: { $0.workload == c.workload && $0.size == c.size }) { rows.append((c.workload, c.size)) }
            byKey["\(c.workload)/\(c.size)/\(c.allocator)"] = c
        }
        var t = TextTable(header: ["workload", "size"] + allocators, leftColumns: 1)
        for r in rows {
            var line = [r.workload, String(r.size)]
            for a in allocators {
                guard let c = byKey["\(r.workload)/\(r.size)/\(a)"] else { line.append("-"); continue }
                line.append(c.status == .ok && c.ops > 0 ? value(c) : c.status.rawValue)
            }
            t.add(line)
        }
        return t.render()
    }

    /// Instructions per op, one decimal.
    public static func perOp(_ x: Double) -> String { x.isFinite ? String(format: "%.1f", x) : "-" }

    static func misses(_ x: Double) -> String { x.isFinite ? String(format: "%.3f", x) : "-" }

    /// Writes instructions.{json,txt,csv} into `directory`; returns their paths.
    @discardableResult
    public static func write(_ record: InstructionRecord, to directory: String) throws -> [String] {
        try ReportWriter.write([
            ("instructions.json", try ReportWriter.json(record)),
            ("instructions.txt", text(record)),
            ("instructions.csv", csv(record)),
        ], to: directory)
    }
}
