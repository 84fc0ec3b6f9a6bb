// `bench compare OLD NEW`: did NEW get slower than OLD, cell by cell, and can we tell?
//
// 1. A row
// --------
//   One row per (workload, size, threads, allocator, metric) of the allocators in focus (ours,
//   unless `--allocators` says otherwise): both medians, the change of the medians, the
//   Hodges-Lehmann shift of NEW against OLD with its 95% interval (on log samples, so a shift is
//   a ratio), the Mann-Whitney p-value (Holm-adjusted over the gated rows), n on each side, and
//   the peers' change in the same cell: the control that tells a slower machine from slower code.
//
// 2. The verdict
// --------------
//   ~            the whole 95% interval lies inside +-threshold (no change that matters, whatever
//                the test's power), or no significant change beyond the threshold
//   ?            the samples cannot tell: the interval reaches beyond the threshold, and n vs n
//                cannot reach p < alpha after Holm's correction over the gated rows (3 vs 3
//                never can), or there is no interval at this level
//   slower       significant (adjusted p < alpha) and the whole interval above +threshold
//   faster       significant and the whole interval below -threshold
//   environment  would be slower or faster, but the peers moved the same way by as much (within
//                the threshold): the machine changed, not our code
//   missing      a cell of OLD that NEW does not have; `failed`: a side did not measure it
//   not judged   the workload's version differs between the files: different work was measured;
//                or a p99 row's sides timed their latency samples differently (single ops, groups)
//   new          a cell only NEW has
//   Instruction counts are exact: their rows have no test, only the threshold.
//
// 3. Exit status
// --------------
//   0 no regression (also when rows are ? or faster), 1 a gated row is slower, 2 bad input
//   (see BenchFile), and with `--gate` 3 when no regression was found but a gated row is ?,
//   missing, failed or not judged: a gate that cannot see must not pass silently.
import Foundation

public enum Verdict: String, Codable, Sendable, CaseIterable {
    case slower, faster, environment
    case same = "~"
    case unknown = "?"
    case missing, failed
    case notJudged = "not judged"
    case new
}

public struct ComparisonRow: Codable, Sendable, Equatable {
    public var workload: String
    public var size: Int
    public var threads: Int
    public var allocator: String
    public var metric: Metric
    public var oldMedian: Double?
    public var newMedian: Double?
    public var oldCount: Int
    public var newCount: Int
    /// newMedian / oldMedian - 1.
    public var change: Double?
    /// Hodges-Lehmann shift and its interval, as ratios - 1 (0.12 = 12% slower).
    public var shift: Double?
    public var lower: Double?
    public var upper: Double?
    public var p: Double?
    public var pAdjusted: Double?
    /// The peers' change in the same cell and metric (geometric mean of their median ratios - 1).
    public var peersChange: Double?
    /// The threshold this row was judged against, as a fraction (allowance included).
    public var threshold: Double
    public var gated: Bool
    public var verdict: Verdict
    public var note: String?
}

public struct ComparisonSide: Codable, Sendable, Equatable {
    public var path: String
    public var runID: String
    public var commit: String
    public var date: String
    public var cpuModel: String
    public var cores: Int
}

public struct GeometricMean: Codable, Sendable, Equatable {
    public var allocator: String
    public var metric: Metric
    /// exp(mean(log(new/old))) - 1 over `cells`.
    public var change: Double
    public var cells: Int
}

public struct CompareOptions: Sendable {
    public var thresholds: Thresholds
    /// The allocators to give rows to; nil: ours (slab, slab-nocpu, slab-fallback) found in the files.
    public var allocators: [String]?
    /// The metrics to show; nil: time (runs) or instructions. Gated metrics are always judged.
    public var metrics: [Metric]?

    public init(thresholds: Thresholds = Thresholds(), allocators: [String]? = nil, metrics: [Metric]? = nil) {
        self.thresholds = thresholds
        self.allocators = allocators
        self.metrics = metrics
    }
}

public struct Comparison: Codable, Sendable {
    public var kind: String
    public var old: ComparisonSide
    public var new: ComparisonSide
    /// Both sides' samples are separate processes, interleaved (an A/B): no allowance.
    public var interleaved: Bool
    public var preset: String
    public var alpha: Double
    /// Rows in Holm's family.
    public var gatedCount: Int
    public var rows: [ComparisonRow]
    public var geometricMeans: [GeometricMean]
    public var notes: [String]

    public var regressions: [ComparisonRow] { rows.filter { $0.gated && $0.verdict == .slower } }
    public var improvements: [ComparisonRow] { rows.filter { $0.gated && $0.verdict == .faster } }
    /// Gated rows the comparison could not judge.
    public var blindSpots: [ComparisonRow] {
        rows.filter { $0.gated && [.unknown, .missing, .failed, .notJudged].contains($0.verdict) }
    }

    public func exitStatus(gate: Bool) -> Int32 {
        if !regressions.isEmpty { return 1 }
        if gate && (!blindSpots.isEmpty || gatedCount == 0) { return 3 }
        return 0
    }
}

/// Two files that cannot be compared with each other.
public struct CompareError: Error, CustomStringConvertible, Equatable {
    public var description: String
}

public enum Comparator {
    /// Compares two loaded files of the same kind.
    public static func compare(_ old: BenchFile, oldPath: String, _ new: BenchFile, newPath: String,
                               options: CompareOptions = CompareOptions()) throws -> Comparison {
        switch (old, new) {
        case let (.run(a), .run(b)): return try compareRuns(a, oldPath: oldPath, b, newPath: newPath, options: options)
        case let (.instructions(a), .instructions(b)):
            return try compareInstructions(a, oldPath: oldPath, b, newPath: newPath, options: options)
        default:
            throw CompareError(description: "\(oldPath) is a \(old.kind) file and \(newPath) a \(new.kind) file: compare two files of the same kind")
        }
    }

    // MARK: - Wall-clock runs

    struct Key: Hashable, Comparable {
        var workload: String, size: Int, threads: Int, allocator: String
        static func < (a: Key, b: Key) -> Bool {
            (a.workload, a.size, a.threads, a.allocator) < (b.workload, b.size, b.threads, b.allocator)
        }
        var cell: CellID { CellID(workload: workload, size: size, threads: threads) }
    }

    struct CellID: Hashable { var workload: String, size: Int, threads: Int }

    /// Ours (the typed caches and kmalloc) are judged; the others are peers, whose drift is the
    /// machine's. Gating is narrower still: Thresholds.gatedAllocators.
    static func ours(_ name: String) -> Bool { AllocatorID(rawValue: name)?.isOurs ?? false }

    static func samples(_ r: CellResult, _ metric: Metric) -> [Double] {
        let values: [Double]
        switch metric {
        case .time: values = r.repetitions.map(\.nsPerOp)
        case .p99: values = r.repetitions.compactMap { $0.latency?.p99 }
        case .rss: values = r.repetitions.map { Double($0.peakRSSBytes) }
        case .instructions: values = []
        }
        return values.filter { $0.isFinite && $0 > 0 }
    }

    public static func compareRuns(_ old: RunRecord, oldPath: String, _ new: RunRecord, newPath: String,
                                   options: CompareOptions) throws -> Comparison {
        func index(_ r: RunRecord) -> [Key: CellResult] {
            var m: [Key: CellResult] = [:]
            for c in r.results {
                let p = c.parameters
                m[Key(workload: p.workload, size: p.size, threads: p.threads, allocator: p.allocator.rawValue)] = c
            }
            return m
        }
        let a = index(old), b = index(new)
        let common = Set(a.keys).intersection(b.keys)
        guard !common.isEmpty else {
            throw CompareError(description: "\(oldPath) and \(newPath) have no cell in common (workload, size, threads, allocator)")
        }
        let thresholds = options.thresholds
        let interleaved = old.sampling == RunRecord.samplingProcesses && new.sampling == RunRecord.samplingProcesses
        let allAllocators = Set(a.keys.map(\.allocator)).union(b.keys.map(\.allocator))
        let focus = Set(options.allocators ?? allAllocators.filter(ours).sorted())
        let peers = Set(allAllocators.filter { !ours($0) })
        let shown = options.metrics ?? [.time]
        let judged = Metric.allCases.filter { $0 != .instructions && (shown.contains($0) || thresholds.gatedMetrics.contains($0)) }

        var rows: [ComparisonRow] = []
        for key in Set(a.keys).union(b.keys).sorted() where focus.contains(key.allocator) {
            let specOld = old.spec(of: key.workload), specNew = new.spec(of: key.workload)
            let spec = specNew ?? specOld
            let single = spec?.isSingleThreaded(threads: key.threads) ?? (key.threads == 1)
            for metric in judged {
                if metric == .p99 && !(spec?.measuresLatency ?? false) { continue }
                let gated = thresholds.gatedAllocators.contains(key.allocator) && thresholds.gatedMetrics.contains(metric)
                    && (single || thresholds.gateThreads)
                var row = ComparisonRow(
                    workload: key.workload, size: key.size, threads: key.threads, allocator: key.allocator,
                    metric: metric, oldCount: 0, newCount: 0,
                    threshold: thresholds.fraction(metric, workload: key.workload, interleaved: interleaved),
                    gated: gated, verdict: .same)
                guard let x = a[key] else { row.verdict = .new; rows.append(row); continue }
                guard let y = b[key] else { row.verdict = .missing; row.note = "not in NEW"; rows.append(row); continue }
                if let vo = specOld?.version, let vn = specNew?.version, vo != vn {
                    row.verdict = .notJudged
                    row.note = "workload version \(vo) in OLD, \(vn) in NEW: different work"
                    rows.append(row)
                    continue
                }
                if x.status != .ok || y.status != .ok {
                    row.verdict = .failed
                    let side = x.status != .ok ? ("OLD", x) : ("NEW", y)
                    row.note = "\(side.1.status.rawValue) in \(side.0)" + (side.1.message.map { ": " + $0 } ?? "")
                    rows.append(row)
                    continue
                }
                if metric == .p99, let difference = latencyMethodDiffers(x, y) {
                    row.verdict = .notJudged
                    row.note = difference
                    rows.append(row)
                    continue
                }
                let xs = samples(x, metric), ys = samples(y, metric)
                guard !xs.isEmpty, !ys.isEmpty else { continue }
                fill(&row, xs, ys)
                row.peersChange = peersChange(peers, cell: key.cell, metric: metric, a, b)
                rows.append(row)
            }
        }
        var comparison = Comparison(
            kind: RunRecord.kind, old: side(old, oldPath), new: side(new, newPath), interleaved: interleaved,
            preset: thresholds.preset.rawValue, alpha: thresholds.alpha, gatedCount: 0, rows: rows,
            geometricMeans: [], notes: [])
        judge(&comparison, thresholds: thresholds)
        comparison.rows.removeAll { !shown.contains($0.metric) && !$0.gated }
        comparison.geometricMeans = geometricMeans(comparison.rows, focus: focus, a: a, b: b, peers: peers)
        comparison.notes = notes(old: old.machine, new: new.machine, interleaved: interleaved, thresholds: thresholds)
        return comparison
    }

    /// Why two cells' latency percentiles cannot be compared, or nil when they can: the samples
    /// timed different numbers of ops together (single ops before grouping existed, groups of
    /// 32 since), so their p99s are different statistics even where the work is the same.
    static func latencyMethodDiffers(_ old: CellResult, _ new: CellResult) -> String? {
        func method(_ r: CellResult) -> Int? { r.repetitions.lazy.compactMap(\.latency).first.map { $0.groupOps ?? 1 } }
        guard let a = method(old), let b = method(new), a != b else { return nil }
        func name(_ k: Int) -> String { k == 1 ? "single ops" : "groups of \(k) ops" }
        return "latency timed in \(name(a)) in OLD, \(name(b)) in NEW: different statistics"
    }

    /// Medians, change, test and interval of one row from its two samples.
    static func fill(_ row: inout ComparisonRow, _ xs: [Double], _ ys: [Double]) {
        row.oldCount = xs.count
        row.newCount = ys.count
        row.oldMedian = Spread.median(xs)
        row.newMedian = Spread.median(ys)
        row.change = row.newMedian! / row.oldMedian! - 1
        let lx = xs.map { log($0) }, ly = ys.map { log($0) }
        row.p = RankStatistics.mannWhitney(lx, ly).p
        let shift = RankStatistics.hodgesLehmann(lx, ly, alpha: 0.05)
        row.shift = exp(shift.estimate) - 1
        row.lower = shift.lower.map { exp($0) - 1 }
        row.upper = shift.upper.map { exp($0) - 1 }
    }

    /// The peers' median ratio NEW/OLD in one cell, as a geometric mean over the peers present in
    /// both files, minus 1.
    static func peersChange(_ peers: Set<String>, cell: CellID, metric: Metric,
                            _ a: [Key: CellResult], _ b: [Key: CellResult]) -> Double? {
        var logs: [Double] = []
        for peer in peers {
            let k = Key(workload: cell.workload, size: cell.size, threads: cell.threads, allocator: peer)
            guard let x = a[k], let y = b[k], x.status == .ok, y.status == .ok else { continue }
            let xs = samples(x, metric), ys = samples(y, metric)
            guard !xs.isEmpty, !ys.isEmpty else { continue }
            logs.append(log(Spread.median(ys) / Spread.median(xs)))
        }
        return logs.isEmpty ? nil : exp(logs.reduce(0, +) / Double(logs.count)) - 1
    }

    /// Holm's correction over the gated rows with a test, then every row's verdict.
    static func judge(_ c: inout Comparison, thresholds: Thresholds) {
        let family = c.rows.indices.filter { c.rows[$0].gated && c.rows[$0].p != nil }
        c.gatedCount = c.rows.filter(\.gated).count
        let adjusted = RankStatistics.holm(family.map { c.rows[$0].p! })
        for (k, i) in family.enumerated() { c.rows[i].pAdjusted = adjusted[k] }
        let alpha = thresholds.alpha
        for i in c.rows.indices where c.rows[i].verdict == .same {
            var row = c.rows[i]
            defer { c.rows[i] = row }
            guard let p = row.p else { continue }
            let bound = log(1 + row.threshold)
            // An interval inside the threshold band says "no change that matters" whatever the
            // test's power: that is the equivalence reading, and it needs no correction.
            if let lower = row.lower, let upper = row.upper, log(1 + lower) >= -bound, log(1 + upper) <= bound { continue }
            let m = row.gated ? max(family.count, 1) : 1
            let floor = RankStatistics.minimumPValue(row.oldCount, row.newCount)
            if floor * Double(m) >= alpha || row.lower == nil || row.upper == nil {
                row.verdict = .unknown
                let needed = samplesNeeded(alpha: alpha / Double(m))
                row.note = "n = \(row.oldCount) vs \(row.newCount) cannot reach p < \(alpha)"
                    + (m > 1 ? " over \(m) gated rows (Holm)" : "") + "; take at least \(needed) samples a side"
                continue
            }
            let q = row.gated ? (row.pAdjusted ?? p) : p
            guard q < alpha else { continue }
            let lo = log(1 + row.lower!), hi = log(1 + row.upper!)
            if lo > bound { row.verdict = .slower } else if hi < -bound { row.verdict = .faster } else { continue }
            if isEnvironment(row, bound: bound) { row.verdict = .environment }
        }
    }

    /// The peers moved the same way as the row, by as much within the threshold.
    static func isEnvironment(_ row: ComparisonRow, bound: Double) -> Bool {
        guard let peers = row.peersChange, let shift = row.shift ?? row.change else { return false }
        let lp = log(1 + peers), ls = log(1 + shift)
        return lp * ls > 0 && abs(ls - lp) <= bound
    }

    static func samplesNeeded(alpha: Double) -> Int { RankStatistics.samplesNeeded(alpha: alpha) }

    static func geometricMeans(_ rows: [ComparisonRow], focus: Set<String>, a: [Key: CellResult], b: [Key: CellResult],
                               peers: Set<String>) -> [GeometricMean] {
        var out: [GeometricMean] = []
        let judged = rows.filter { $0.oldMedian != nil && $0.newMedian != nil }
        for metric in Metric.allCases {
            let ofMetric = judged.filter { $0.metric == metric }
            for allocator in focus.sorted() {
                let r = ofMetric.filter { $0.allocator == allocator }
                guard !r.isEmpty else { continue }
                let mean = r.map { log($0.newMedian! / $0.oldMedian!) }.reduce(0, +) / Double(r.count)
                out.append(GeometricMean(allocator: allocator, metric: metric, change: exp(mean) - 1, cells: r.count))
            }
            // The peers over the same cells, as the control.
            let cells = Set(ofMetric.map { CellID(workload: $0.workload, size: $0.size, threads: $0.threads) })
            var logs: [Double] = []
            for cell in cells {
                for peer in peers {
                    let k = Key(workload: cell.workload, size: cell.size, threads: cell.threads, allocator: peer)
                    if let v = medianRatio(a[k], b[k], metric) { logs.append(log(v)) }
                }
            }
            if !logs.isEmpty, !focus.isSuperset(of: peers) {
                out.append(GeometricMean(allocator: "peers", metric: metric,
                                         change: exp(logs.reduce(0, +) / Double(logs.count)) - 1, cells: logs.count))
            }
        }
        return out
    }

    static func medianRatio(_ x: CellResult?, _ y: CellResult?, _ metric: Metric) -> Double? {
        guard let x, let y, x.status == .ok, y.status == .ok else { return nil }
        let xs = samples(x, metric), ys = samples(y, metric)
        guard !xs.isEmpty, !ys.isEmpty else { return nil }
        return Spread.median(ys) / Spread.median(xs)
    }

    static func side(_ r: RunRecord, _ path: String) -> ComparisonSide {
        ComparisonSide(path: path, runID: r.runID, commit: r.machine.commitLabel, date: r.machine.date,
                       cpuModel: r.machine.cpuModel, cores: r.machine.cores)
    }

    static func notes(old: MachineInfo, new: MachineInfo, interleaved: Bool, thresholds: Thresholds) -> [String] {
        var n: [String] = []
        if old.cpuModel != new.cpuModel || old.cores != new.cores {
            n.append("the files come from different machines (\(old.cpuModel), \(old.cores) CPUs vs \(new.cpuModel), \(new.cores) CPUs): machines of one kind differ by 1.5x in absolute speed, so read the peers' column before any verdict")
        }
        if !interleaved && thresholds.betweenRunAllowance > 0 {
            n.append("samples are repetitions inside one process per run, from runs that were not interleaved: the time and p99 thresholds include the between-run allowance of \(TextReport.fixed(thresholds.betweenRunAllowance))%")
        }
        if old.swift != new.swift { n.append("Swift differs: \(old.swift) vs \(new.swift)") }
        if old.glibc != new.glibc { n.append("glibc differs: \(old.glibc) vs \(new.glibc)") }
        if old.kernel != new.kernel { n.append("kernel differs: \(old.kernel) vs \(new.kernel)") }
        return n
    }

    // MARK: - Instruction counts

    public static func compareInstructions(_ old: InstructionRecord, oldPath: String, _ new: InstructionRecord,
                                           newPath: String, options: CompareOptions) throws -> Comparison {
        func index(_ r: InstructionRecord) -> [Key: InstructionCell] {
            var m: [Key: InstructionCell] = [:]
            for c in r.cells { m[Key(workload: c.workload, size: c.size, threads: 1, allocator: c.allocator)] = c }
            return m
        }
        let a = index(old), b = index(new)
        guard !Set(a.keys).intersection(b.keys).isEmpty else {
            throw CompareError(description: "\(oldPath) and \(newPath) have no cell in common (workload, size, allocator)")
        }
        let thresholds = options.thresholds
        let allAllocators = Set(a.keys.map(\.allocator)).union(b.keys.map(\.allocator))
        let focus = Set(options.allocators ?? allAllocators.filter(ours).sorted())
        let peers = allAllocators.filter { !ours($0) }
        func perOp(_ c: InstructionCell?) -> Double? {
            guard let c, c.status == .ok else { return nil }
            let v = c.instructionsPerOp
            return v.isFinite && v > 0 ? v : nil
        }
        var rows: [ComparisonRow] = []
        for key in Set(a.keys).union(b.keys).sorted() where focus.contains(key.allocator) {
            var row = ComparisonRow(
                workload: key.workload, size: key.size, threads: 1, allocator: key.allocator, metric: .instructions,
                oldCount: 0, newCount: 0,
                threshold: thresholds.fraction(.instructions, workload: key.workload, interleaved: true),
                gated: thresholds.gatedAllocators.contains(key.allocator) && thresholds.gatedMetrics.contains(.instructions),
                verdict: .same)
            defer { rows.append(row) }
            guard let x = a[key] else { row.verdict = .new; continue }
            guard let y = b[key] else { row.verdict = .missing; row.note = "not in NEW"; continue }
            if x.workloadVersion != y.workloadVersion {
                row.verdict = .notJudged
                row.note = "workload version \(x.workloadVersion) in OLD, \(y.workloadVersion) in NEW: different work"
                continue
            }
            guard let vx = perOp(x), let vy = perOp(y) else {
                row.verdict = .failed
                let bad = x.status != .ok ? ("OLD", x) : ("NEW", y)
                row.note = "\(bad.1.status.rawValue) in \(bad.0)" + (bad.1.message.map { ": " + $0 } ?? "")
                continue
            }
            row.oldCount = 1
            row.newCount = 1
            row.oldMedian = vx
            row.newMedian = vy
            row.change = vy / vx - 1
            row.shift = row.change
            var logs: [Double] = []
            for peer in peers {
                let k = Key(workload: key.workload, size: key.size, threads: 1, allocator: peer)
                if let px = perOp(a[k]), let py = perOp(b[k]) { logs.append(log(py / px)) }
            }
            if !logs.isEmpty { row.peersChange = exp(logs.reduce(0, +) / Double(logs.count)) - 1 }
            let bound = log(1 + row.threshold)
            let l = log(vy / vx)
            if l > bound { row.verdict = .slower } else if l < -bound { row.verdict = .faster }
            if row.verdict != .same && isEnvironment(row, bound: bound) { row.verdict = .environment }
        }
        var means: [GeometricMean] = []
        for allocator in focus.sorted() {
            let r = rows.filter { $0.allocator == allocator && $0.oldMedian != nil && $0.newMedian != nil }
            guard !r.isEmpty else { continue }
            let mean = r.map { log($0.newMedian! / $0.oldMedian!) }.reduce(0, +) / Double(r.count)
            means.append(GeometricMean(allocator: allocator, metric: .instructions, change: exp(mean) - 1, cells: r.count))
        }
        var notes: [String] = []
        if old.valgrind != new.valgrind { notes.append("valgrind differs: \(old.valgrind) vs \(new.valgrind)") }
        if old.machine.swift != new.machine.swift { notes.append("Swift differs: \(old.machine.swift) vs \(new.machine.swift): the workload loop's own instructions may differ") }
        func side(_ r: InstructionRecord, _ path: String) -> ComparisonSide {
            ComparisonSide(path: path, runID: r.runID, commit: r.machine.commitLabel, date: r.machine.date,
                           cpuModel: r.machine.cpuModel, cores: r.machine.cores)
        }
        return Comparison(kind: InstructionRecord.kind, old: side(old, oldPath), new: side(new, newPath), interleaved: true,
                          preset: thresholds.preset.rawValue, alpha: thresholds.alpha,
                          gatedCount: rows.filter(\.gated).count, rows: rows, geometricMeans: means, notes: notes)
    }
}
