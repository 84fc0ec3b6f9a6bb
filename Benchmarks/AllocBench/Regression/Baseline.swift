// The committed baseline: results/baseline/{run.json, instructions.json, manifest.json}.
//
// 1. What it is for
// -----------------
//   The reference every later change is compared with: the full default suite (wall clock) and
//   the instruction counts of one commit, measured on one machine, with a manifest that says
//   exactly what was measured with what. `bench compare results/baseline/run.json
//   results/latest.json` and the same for instructions.json answer "did this change cost
//   anything?"; the CI gate uses the manifest's commit as the other side of its A/B.
//
// 2. When it changes
// ------------------
//   Only through `bench baseline update`, which copies a fresh latest.json and instructions.json
//   in (both from the current commit, the working tree's changes included), prints the comparison
//   of the old baseline with the new one (the delta being accepted) and records it with a reason
//   in the manifest. An intended cost lands with its baseline update in the same commit, so that
//   the history says what was accepted and why; an accidental one never has a baseline update.
import Foundation

public struct BaselineManifest: Codable, Sendable, Equatable {
    public var kind: String = BaselineManifest.kind
    public var schemaVersion: Int = BaselineManifest.schemaVersion
    public static let kind = "baseline-manifest"
    public static let schemaVersion = 1

    /// The commit both files were measured at (`-dirty`: that commit plus the working tree's
    /// changes, i.e. the commit that lands this baseline).
    public var commit: String
    public var runID: String
    public var instructionsRunID: String
    public var date: String
    public var cpuModel: String
    public var cores: Int
    public var kernel: String
    public var glibc: String
    public var swift: String
    public var valgrind: String
    /// Allocator -> version, as the run recorded them (peers' Debian versions, the slab's mode).
    public var allocatorVersions: [String: String]
    /// Why the baseline was updated, as given to `bench baseline update --reason`.
    public var reason: String
    /// The geometric-mean changes accepted against the previous baseline, one line per
    /// allocator and metric ("slab time +1.2% over 40 cells"); empty for the first baseline.
    public var accepted: [String]
}

public struct BaselineError: Error, CustomStringConvertible {
    public var description: String
}

public enum Baseline {
    public static let defaultDirectory = "results/baseline"
    public static let runFile = "run.json"
    public static let instructionsFile = "instructions.json"
    public static let manifestFile = "manifest.json"

    public struct Update {
        public var manifest: BaselineManifest
        /// The comparisons of the old baseline with the new one, rendered as text (empty when
        /// there was no baseline before).
        public var acceptedReport: String
        public var written: [String]
    }

    /// Reads a fresh run and instruction count from `source` and makes them the baseline in
    /// `directory`. Refuses (unless `force`) a quick or interrupted run, files from another
    /// commit than `head`, or files from different commits or machines.
    public static func update(from source: String, to directory: String, reason: String, head: String?,
                              force: Bool) throws -> Update {
        let runPath = (source as NSString).appendingPathComponent("latest.json")
        let instructionsPath = (source as NSString).appendingPathComponent("instructions.json")
        guard case let .run(run) = try BenchFile.load(runPath) else {
            throw BaselineError(description: "\(runPath) is not a run file")
        }
        guard case let .instructions(counts) = try BenchFile.load(instructionsPath) else {
            throw BaselineError(description: "\(instructionsPath) is not an instructions file")
        }
        var problems: [String] = []
        if run.quick { problems.append("\(runPath) is a --quick run; the baseline is the default suite") }
        if run.interrupted { problems.append("\(runPath) is an interrupted run") }
        if run.machine.commitLabel != counts.machine.commitLabel {
            problems.append("\(runPath) was measured at \(run.machine.commitLabel) and \(instructionsPath) at \(counts.machine.commitLabel)")
        }
        if let head, run.machine.commit != head {
            problems.append("\(runPath) was measured at \(run.machine.commit), but HEAD is \(head): run `swift run -c release bench` and `bench instructions` again")
        }
        if run.machine.cpuModel != counts.machine.cpuModel {
            problems.append("the two files come from different machines (\(run.machine.cpuModel) vs \(counts.machine.cpuModel))")
        }
        if !problems.isEmpty && !force {
            throw BaselineError(description: problems.joined(separator: "; ") + " (--force takes them anyway)")
        }

        // What is being accepted: the old baseline against the new one.
        var report = ""
        var accepted: [String] = []
        let oldRun = (directory as NSString).appendingPathComponent(runFile)
        let oldCounts = (directory as NSString).appendingPathComponent(instructionsFile)
        for (old, new, newFile) in [(oldRun, runPath, BenchFile.run(run)), (oldCounts, instructionsPath, BenchFile.instructions(counts))]
        where FileManager.default.fileExists(atPath: old) {
            guard let previous = try? BenchFile.load(old),
                  let c = try? Comparator.compare(previous, oldPath: old, newFile, newPath: new) else {
                report += "(the previous \(old) could not be compared with \(new))\n"
                continue
            }
            report += ComparisonReport.render(c, format: .text) + "\n"
            accepted += c.geometricMeans.filter { $0.allocator != "peers" }.map {
                "\($0.allocator) \($0.metric.rawValue) \(ComparisonReport.percent($0.change)) over \($0.cells) cells"
            }
        }

        let manifest = BaselineManifest(
            commit: run.machine.commitLabel, runID: run.runID, instructionsRunID: counts.runID, date: run.machine.date,
            cpuModel: run.machine.cpuModel, cores: run.machine.cores, kernel: run.machine.kernel, glibc: run.machine.glibc,
            swift: run.machine.swift, valgrind: counts.valgrind,
            allocatorVersions: run.allocators.reduce(into: [:]) { v, a in
                if let s = run.version(of: a) { v[a.rawValue] = s }
            },
            reason: reason, accepted: accepted)
        try OutputFolder.make(directory)
        var written: [String] = []
        for (name, text) in [(runFile, try ReportWriter.json(run)), (instructionsFile, try ReportWriter.json(counts)),
                             (manifestFile, try ReportWriter.json(manifest))] {
            let path = (directory as NSString).appendingPathComponent(name)
            try AtomicFile.write(text, to: path)
            written.append(path)
        }
        return Update(manifest: manifest, acceptedReport: report, written: written)
    }

    /// Reads the manifest in `directory`.
    public static func manifest(in directory: String) throws -> BaselineManifest {
        let path = (directory as NSString).appendingPathComponent(manifestFile)
        guard let data = FileManager.default.contents(atPath: path) else {
            throw BaselineError(description: "\(path) does not exist: create the baseline with `bench baseline update`")
        }
        do {
            return try JSONDecoder().decode(BaselineManifest.self, from: data)
        } catch {
            throw BaselineError(description: "\(path) is not a baseline manifest: \(BenchFile.describe(error))")
        }
    }
}
