// How large a change must be before `bench compare` calls it one, per metric, with presets and
// overrides, and which cells gate.
//
// 1. Metrics
// ----------
//   time          median ns per op (wall clock), lower is better
//   p99           99th-percentile single-operation latency, for workloads that sample it
//   rss           peak resident set of the cell's child process
//   instructions  instructions per op under callgrind (deterministic: no test, a threshold only)
//
// 2. Presets (percent)
// --------------------
//                 time   p99   rss   instructions
//   strict          3     10     5     0.5
//   default         5     20    10     1
//   relaxed        10     30    20     2
//   A wall-clock change counts only when it is significant (Holm-corrected p < alpha) and its
//   whole 95% interval lies beyond the threshold; for samples that are repetitions inside one
//   child process of two runs that were not interleaved, the between-run allowance is added to
//   the time and p99 thresholds (see `betweenRunAllowance`).
//
// 3. What gates
// -------------
//   By default: the `time` metric of the one-thread cells of slab and slab-fallback (the product's
//   two modes; slab-nocpu is a reference and reports only). Multi-thread cells (their
//   medians swing 2-5x between runs on two shared vCPUs) and the tail and RSS metrics are
//   reported, with verdicts, but do not fail a comparison unless asked (`--gate-metrics`,
//   `--gate-threads`). Peers never gate: they are the control that tells a slower machine
//   from slower code.

import Foundation

/// A comparison metric.
public enum Metric: String, CaseIterable, Codable, Sendable {
    case time, p99, rss, instructions

    /// What the metric measures, for table headers.
    public var label: String {
        switch self {
        case .time: return "ns/op"
        case .p99: return "p99 ns"
        case .rss: return "peak RSS"
        case .instructions: return "instr/op"
        }
    }
}

/// Thresholds in percent per metric, with per-workload overrides.
public struct Thresholds: Sendable, Equatable {
    public enum Preset: String, CaseIterable, Sendable { case strict, `default`, relaxed }

    public var preset: Preset
    /// Percent per metric.
    public var percent: [Metric: Double]
    /// workload -> metric -> percent, taking precedence over `percent`.
    public var perWorkload: [String: [Metric: Double]] = [:]
    /// Percent added to the time and p99 thresholds when the samples of either side are
    /// repetitions inside one process from runs that were not interleaved.
    public var betweenRunAllowance: Double
    /// Significance level, before Holm's correction.
    public var alpha: Double = 0.05
    /// Metrics whose verdicts fail a comparison.
    public var gatedMetrics: Set<Metric> = [.time, .instructions]
    /// Multi-thread cells gate too.
    public var gateThreads = false
    /// Allocators whose rows gate: the product's two modes. slab-nocpu (the slab layer alone, a
    /// reference for what the magazines are worth) and the peers are reported only; every gated
    /// row widens Holm's family and so costs the others power.
    public var gatedAllocators: Set<String> = [AllocatorID.slab.rawValue, AllocatorID.slabFallback.rawValue]

    /// The between-run allowance measured from A/A runs of the default suite on this machine
    /// kind (README, "Regression tracking"; Benchmarks/scripts/between-run-noise.py): over three
    /// quiet runs of one commit, the median of one-thread cells moved by 4.4% at the median, 23%
    /// at the 95th percentile and 55% at the 99th between two runs (774 cell pairs, every
    /// allocator). Each cell's repetitions share one process, and a process's placement in memory
    /// alone moves a cell by that much, so two ordinary runs can only tell changes beyond it.
    public static let measuredAllowance = 55.0

    public init(preset: Preset = .default) {
        self.preset = preset
        switch preset {
        case .strict: percent = [.time: 3, .p99: 10, .rss: 5, .instructions: 0.5]
        case .default: percent = [.time: 5, .p99: 20, .rss: 10, .instructions: 1]
        case .relaxed: percent = [.time: 10, .p99: 30, .rss: 20, .instructions: 2]
        }
        betweenRunAllowance = Thresholds.measuredAllowance
    }

    /// The threshold for one metric of one workload, as a fraction (0.05 for 5%), with the
    /// allowance added when `interleaved` is false and the metric is a time.
    public func fraction(_ metric: Metric, workload: String, interleaved: Bool) -> Double {
        var p = perWorkload[workload]?[metric] ?? percent[metric] ?? 0
        if !interleaved && (metric == .time || metric == .p99) { p += betweenRunAllowance }
        return p / 100
    }

    /// Applies one `--threshold` override: `METRIC=PCT` or `WORKLOAD:METRIC=PCT`
    /// (PCT a non-negative number of percent, an optional `%` allowed).
    public mutating func apply(override text: String) throws {
        let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2 else { throw InvalidValueError(description: "--threshold '\(text)': expected METRIC=PCT or WORKLOAD:METRIC=PCT") }
        var key = parts[0].trimmingCharacters(in: .whitespaces)
        var workload: String? = nil
        if let colon = key.lastIndex(of: ":") {
            workload = String(key[..<colon])
            key = String(key[key.index(after: colon)...])
        }
        guard let metric = Metric(rawValue: key) else {
            throw InvalidValueError(description: "--threshold '\(text)': unknown metric '\(key)'; metrics: \(Metric.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        var number = parts[1].trimmingCharacters(in: .whitespaces)
        if number.hasSuffix("%") { number.removeLast() }
        guard let value = Double(number), value.isFinite, value >= 0 else {
            throw InvalidValueError(description: "--threshold '\(text)': '\(parts[1])' is not a non-negative percentage")
        }
        if let workload {
            perWorkload[workload, default: [:]][metric] = value
        } else {
            percent[metric] = value
        }
    }
}
