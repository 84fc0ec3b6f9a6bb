// `bench compare OLD NEW`: the regression verdict between two result files (AllocBench/Regression).
import AllocBench
import ArgumentParser
import Foundation
import Harness

struct CompareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Compare two result files of the same kind (runs, or instruction counts).",
        discussion: """
        A wall-clock row is a regression only when the change is significant (Mann-Whitney, Holm \
        over the gated rows, alpha 0.05) and its whole 95% interval (Hodges-Lehmann) lies beyond the \
        threshold; runs whose samples are repetitions inside one process add the between-run \
        allowance. Instruction counts are compared against their threshold directly. Gated by \
        default: the one-thread cells of slab and slab-fallback, metric time (runs) or instructions.

        Exit status: 0 no regression; 1 regression; 2 bad input (a file missing, unreadable, not a \
        bench file, of an unknown schema, or no cell in common); 3 with --gate when no regression \
        was found but a gated row could not be judged (?, missing, failed, workload version differs).
        """)

    @Argument(help: "The older result file (e.g. results/baseline/run.json).")
    var old: String

    @Argument(help: "The newer result file (e.g. results/latest.json).")
    var new: String

    @OptionGroup var judgement: JudgementOptions

    @Flag(help: "CI gate: also exit 3 when a gated row failed, is missing, or cannot be judged.")
    var gate = false

    func run() throws {
        let options: CompareOptions
        let format: ComparisonReport.Format
        do {
            (options, format) = try judgement.resolve()
        } catch {
            writeStandardError("bench compare: error: \(error)\n")
            throw ExitCode(2)
        }
        let comparison: Comparison
        do {
            let a = try BenchFile.load(old)
            let b = try BenchFile.load(new)
            comparison = try Comparator.compare(a, oldPath: old, b, newPath: new, options: options)
        } catch {
            writeStandardError("bench compare: error: \(error)\n")
            throw ExitCode(2)
        }
        print(ComparisonReport.render(comparison, format: format), terminator: "")
        let status = comparison.exitStatus(gate: gate)
        if status != 0 { throw ExitCode(status) }
    }
}

/// The options that decide how a comparison judges and prints, shared by compare and ab.
struct JudgementOptions: ParsableArguments {
    @Option(help: "Threshold preset: strict, default or relaxed.")
    var preset: String = "default"

    @Option(name: .customLong("threshold"), help: ArgumentHelp(
        "Override a threshold in percent: METRIC=PCT or WORKLOAD:METRIC=PCT (metrics: time, p99, rss, instructions). Repeatable.",
        valueName: "spec"))
    var thresholdOverrides: [String] = []

    @Option(parsing: .unconditional, help: ArgumentHelp("Between-run allowance in percent added to time and p99 thresholds when samples are repetitions inside one process (default: \(Thresholds.measuredAllowance)).", valueName: "pct"))
    var allowance: Double?

    @Option(help: ArgumentHelp("Metrics to show, comma-separated (default: time for runs, instructions for counts).", valueName: "m1,m2"))
    var metrics: String?

    @Option(help: ArgumentHelp("Metrics that fail the comparison, comma-separated (default: time,instructions).", valueName: "m1,m2"))
    var gateMetrics: String?

    @Flag(help: "Multi-thread cells gate too (by default they are reported only).")
    var gateThreads = false

    @Option(help: ArgumentHelp("Allocators whose rows gate, comma-separated (default: slab,slab-fallback).", valueName: "a,b"))
    var gateAllocators: String?

    @Option(help: ArgumentHelp("Allocators to give rows to, comma-separated (default: ours: slab, slab-nocpu, slab-fallback).", valueName: "a,b"))
    var allocators: String?

    @Option(help: "Output format: text, markdown or json.")
    var format: String = "text"

    /// The comparison options and output format these flags ask for.
    func resolve() throws -> (CompareOptions, ComparisonReport.Format) {
        guard let p = Thresholds.Preset(rawValue: preset) else {
            throw InvalidValueError(description: "--preset '\(preset)': expected strict, default or relaxed")
        }
        guard let f = ComparisonReport.Format(rawValue: format) else {
            throw InvalidValueError(description: "--format '\(format)': expected text, markdown or json")
        }
        var t = Thresholds(preset: p)
        for o in thresholdOverrides { try t.apply(override: o) }
        if let allowance {
            guard allowance >= 0, allowance.isFinite else { throw InvalidValueError(description: "--allowance must be a non-negative percentage") }
            t.betweenRunAllowance = allowance
        }
        if let gateMetrics { t.gatedMetrics = Set(try Self.parseMetrics(gateMetrics, option: "--gate-metrics")) }
        t.gateThreads = gateThreads
        if let gateAllocators { t.gatedAllocators = Set(SuitePlan.split(gateAllocators)) }
        let options = CompareOptions(thresholds: t, allocators: allocators.map(SuitePlan.split),
                                     metrics: try metrics.map { try Self.parseMetrics($0, option: "--metrics") })
        return (options, f)
    }

    static func parseMetrics(_ list: String, option: String) throws -> [Metric] {
        try list.split(separator: ",").map { part in
            let name = part.trimmingCharacters(in: .whitespaces)
            guard let m = Metric(rawValue: name) else {
                throw InvalidValueError(description: "\(option): unknown metric '\(name)'; metrics: \(Metric.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return m
        }
    }
}
