// Where our allocators stand against the best peer, cell by cell, over one or more runs
// (`bench standings`): the check "no cell behind the best peer in at least two of three full
// runs" made by the bench instead of by hand.
//
// Each run gives, per cell (workload, size, threads) and allocator, its median ns/op: from a
// run's JSON (the medians the reports print) or from its CSV (the median of the cell's `ok`
// repetitions, which is the same figure). A ratio divides our allocator's median by the lowest
// peer median of the same cell in the same run (Ratio.bestPeer's rule: a peer is anything this
// project does not ship); figures from different runs never share a ratio. A cell counts as
// compared when some run has both our allocator and a peer in it; it is behind in a run when
// the ratio is above 1.
import Foundation

/// One run's medians, by cell and allocator name.
public struct StandingsRun: Sendable {
    public var path: String
    /// The run's ID (a CSV's run_id values).
    public var label: String
    public var medians: [CellKey: [String: Double]]
    /// The names in `medians` that are ours (never a peer).
    public var ours: Set<String>

    /// `ours` nil: the names that are our built-in allocators' (a CSV holds names only).
    public init(path: String, label: String, medians: [CellKey: [String: Double]], ours: Set<String>? = nil) {
        self.path = path
        self.label = label
        self.medians = medians
        self.ours = ours ?? Set(medians.values.flatMap(\.keys).filter { AllocatorID(rawValue: $0)?.isOurs == true })
    }

    /// From a run's JSON record.
    public init(record: RunRecord, path: String) {
        let summary = RunSummary(record)
        var medians: [CellKey: [String: Double]] = [:]
        for key in summary.cells.keys {
            medians[key] = Dictionary(uniqueKeysWithValues: summary.medians(key).map { ($0.key.name, $0.value) })
        }
        // From the record's allocators themselves: a preload: peer shown under any name stays a peer.
        self.init(path: path, label: record.runID, medians: medians,
                  ours: Set(record.allocators.filter(\.isOurs).map(\.name)))
    }

    /// From a run's latest.csv: the median of each cell's `ok` repetitions. Throws when the text
    /// lacks the columns it needs.
    public init(csv text: String, path: String) throws {
        let rows = CSVReport.parse(text)
        guard let header = rows.first else { throw BenchFileError(path: path, reason: "is empty") }
        let col = Dictionary(header.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
        let needed = ["allocator", "workload", "size", "threads", "status", "ns_per_op"]
        let missing = needed.filter { col[$0] == nil }
        guard missing.isEmpty else {
            throw BenchFileError(path: path, reason: "is not a bench CSV (no column \(missing.joined(separator: ", ")))")
        }
        var samples: [CellKey: [String: [Double]]] = [:]
        var runIDs: [String] = []
        for row in rows.dropFirst() where row.count == header.count {
            guard row[col["status"]!] == "ok", let size = Int(row[col["size"]!]), let threads = Int(row[col["threads"]!]),
                  let ns = Double(row[col["ns_per_op"]!]) else { continue }
            let key = CellKey(workload: row[col["workload"]!], size: size, threads: threads)
            samples[key, default: [:]][row[col["allocator"]!], default: []].append(ns)
            if let c = col["run_id"], !runIDs.contains(row[c]) { runIDs.append(row[c]) }
        }
        guard !samples.isEmpty else { throw BenchFileError(path: path, reason: "has no ok repetition") }
        self.init(path: path, label: runIDs.joined(separator: ", "),
                  medians: samples.mapValues { $0.mapValues(Spread.median) })
    }

    /// A run file, by its content: a JSON record or a CSV.
    public static func load(_ path: String) throws -> StandingsRun {
        let data = try BenchFile.read(path)
        if data.first(where: { ![0x20, 0x0A, 0x0D, 0x09].contains($0) }) == UInt8(ascii: "{") {
            switch try BenchFile.decode(data, path: path) {
            case let .run(record): return StandingsRun(record: record, path: path)
            case .instructions:
                throw BenchFileError(path: path, reason: "holds instruction counts, not a timed run")
            }
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw BenchFileError(path: path, reason: "is neither a bench JSON nor a CSV (not UTF-8)")
        }
        return try StandingsRun(csv: text, path: path)
    }
}

/// One of our allocators in one cell, over the runs.
public struct Standing: Sendable, Equatable {
    public var key: CellKey
    public var allocator: String
    /// Per run: ours / the best peer's median, nil where the run lacks either.
    public var ratios: [Double?]
    /// Per run: the best peer's name, nil where the run lacks a ratio.
    public var bestPeers: [String?]

    public var behind: Int { ratios.filter { ($0 ?? 0) > 1 }.count }
    public var measured: Int { ratios.filter { $0 != nil }.count }
}

public enum Standings {
    /// Our allocators a standing is computed for when none are named: the typed cache and kmalloc
    /// (the references slab-nocpu, slab-bare, slab-fallback and kmalloc-sized are not contenders).
    public static let defaultSubjects = ["slab", "kmalloc"]

    /// Every (cell, subject) that some run measured against a peer, in cell order.
    public static func compute(_ runs: [StandingsRun], subjects: [String] = defaultSubjects) -> [Standing] {
        let keys = Set(runs.flatMap(\.medians.keys)).sorted()
        var standings: [Standing] = []
        for key in keys {
            for subject in subjects {
                var ratios: [Double?] = [], peers: [String?] = []
                for run in runs {
                    let cell = run.medians[key] ?? [:]
                    let best = cell.filter { !run.ours.contains($0.key) && $0.value.isFinite }
                        .min { ($0.value, $0.key) < ($1.value, $1.key) }
                    if let ours = cell[subject], let best, let r = Ratio.of(ours, to: best.value) {
                        ratios.append(r)
                        peers.append(best.key)
                    } else {
                        ratios.append(nil)
                        peers.append(nil)
                    }
                }
                let standing = Standing(key: key, allocator: subject, ratios: ratios, bestPeers: peers)
                if standing.measured > 0 { standings.append(standing) }
            }
        }
        return standings
    }

    /// The report: the runs, how many cells were compared, then each cell behind in at least
    /// one run (or every cell, with `all`), with each run's ratio and the best peers.
    public static func render(_ runs: [StandingsRun], _ standings: [Standing], all: Bool = false) -> String {
        var text = "Standings: ours / the best peer's median in each cell, each run on its own (above 1: behind)\n"
        for (i, run) in runs.enumerated() { text += "  run \(i + 1)  \(run.path)  \(run.label)\n" }
        let behind = standings.filter { $0.behind > 0 }
        let majority = standings.filter { 2 * $0.behind > $0.measured }
        text += "\n\(standings.count) cells compared; \(behind.count) behind in at least one run, "
            + "\(majority.count) in more than half of the runs that measured them\n"
        let shown = all ? standings : behind
        guard !shown.isEmpty else { return text + "no cell behind the best peer in any run\n" }
        var table = TextTable(header: ["workload", "size", "thr", "ours", "ratio per run", "best peer", "behind"], leftColumns: 1)
        for s in shown {
            let mixed = WorkloadCatalog.all.first { $0.name == s.key.workload }?.mixedSizes == true
            let peers = s.bestPeers.compactMap { $0 }.reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
            table.add([s.key.workload, (mixed ? "8-\(s.key.size)" : "\(s.key.size)") + " B", "\(s.key.threads)", s.allocator,
                       s.ratios.map { $0.map { String(format: "%.2f", $0) } ?? "-" }.joined(separator: " / "),
                       peers.joined(separator: ","), "\(s.behind) of \(s.measured)"])
        }
        return text + "\n" + table.render()
    }
}
