// `bench ab`: the same-machine A/B of REF's allocator against the working tree's
// (AllocBench/Regression/ABBuild.swift and ABRunner.swift).
import AllocBench
import ArgumentParser
import Foundation
import Harness

struct ABCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ab",
        abstract: "Measure REF's allocator and the working tree's side by side, interleaved, and compare them.",
        discussion: """
        Builds two benches in release mode: today's harness with REF's allocator (Sources/Slab and \
        Sources/CSlab of REF; if today's harness does not build against it, REF whole, and the \
        output says so) and the working tree. Then, by default, runs the hot one-thread slab cells \
        of both interleaved (A B B A ..., one child process per sample) and compares them with the \
        tight threshold (no between-run allowance). With --instructions it counts instructions per \
        op of both under callgrind instead, for the rseq and the fallback paths. Both sides come from one \
        copy of the working tree taken at the start; edit nothing until "building the base" appears \
        (an edit during the head's build stops the A/B with exit 2).

        REF defaults to the commit that last updated results/baseline (so a commit that updates the \
        baseline, accepting a cost, is its own reference); it must be an ancestor of HEAD.

        Writes base.json and head.json (or the folders instructions-base and instructions-head) into \
        --output. Exit status as `bench compare` (0, 1 regression, 2 bad input or a failed build, 3 \
        with --gate when a gated row could not be judged).
        """)

    @Option(help: ArgumentHelp("The reference commit (default: the commit that last updated results/baseline).", valueName: "ref"))
    var base: String?

    @Flag(help: "Count instructions under callgrind instead of timing (for slab: slab and slab-fallback).")
    var instructions = false

    @Option(help: ArgumentHelp("Cells to time, as workload[:size],... (default: \(ABPlan.gateCells.map { "\($0.workload):\($0.size)" }.joined(separator: ","))).", valueName: "w:size,..."))
    var cells: String?

    @Option(help: ArgumentHelp("Whose two builds to time: one of ours, slab, slab-fallback, slab-nocpu, slab-bare, kmalloc or kmalloc-sized (kmalloc also times the mixed-size cells).", valueName: "name"))
    var allocator: String = AllocatorID.slab.rawValue

    @Option(parsing: .unconditional, help: "Samples (child processes) per side and cell.")
    var samples: Int = ABPlan.defaultSamples

    @Option(parsing: .unconditional, help: "Timed repetitions inside each child; the sample is their median.")
    var repetitions: Int = ABPlan.repetitions

    // .unconditional: the value starts with "-" (-DSLAB_INJECT_DELAY) and is still a value.
    @Option(name: .customLong("head-flag"), parsing: .unconditionalSingleValue, help: ArgumentHelp(
        "A Swift compiler flag for the head's build only (repeatable), e.g. -DSLAB_INJECT_DELAY to prove the gate.",
        valueName: "flag"))
    var headFlags: [String] = []

    @Option(help: ArgumentHelp("Folder for the two sides' result files.", valueName: "dir"))
    var output: String = "results/ab"

    @Option(help: ArgumentHelp("Folder whose history.jsonl gets this gate run's line (the head's figures and the base's).", valueName: "dir"))
    var history: String = SuitePlan.defaultOutput

    @Flag(help: "Do not append a history line.")
    var noHistory = false

    @OptionGroup var judgement: JudgementOptions

    @Flag(help: "CI gate: also exit 3 when a gated row failed, is missing, or cannot be judged.")
    var gate = false

    func run() throws {
        let catalog = BenchCatalog.standard
        let options: CompareOptions
        let format: ComparisonReport.Format
        let cellList: [(workload: String, size: Int)]
        let abAllocator: AllocatorID
        do {
            (options, format) = try judgement.resolve()
            cellList = try cells.map { try ABPlan.parseCells($0, catalog: catalog) } ?? ABPlan.gateCells
            guard let id = AllocatorID(rawValue: allocator), id.isOurs else {
                throw InvalidValueError(description: "--allocator: \(allocator) is not one of ours (\(AllocatorID.builtIn.filter(\.isOurs).map(\.rawValue).joined(separator: ", "))): a peer is the same library on both sides")
            }
            abAllocator = id
            guard samples >= 2 else { throw InvalidValueError(description: "--samples must be at least 2") }
            guard repetitions >= 1 else { throw InvalidValueError(description: "--repetitions must be at least 1") }
            try OutputFolder.prepare(output)  // before the builds, which take minutes
        } catch {
            writeStandardError("bench ab: error: \(error)\n")
            throw ExitCode(2)
        }
        let binaries: ABBinaries
        do {
            let root = try ABBuild.packageRoot()
            let ref = try base ?? ABBuild.baselineCommit(root: root)
            binaries = try ABBuild.build(ref: ref, root: root, extraSwiftFlags: headFlags) { writeStandardError($0) }
        } catch {
            writeStandardError("bench ab: error: \(error)\n")
            throw ExitCode(2)
        }
        writeStandardError("bench ab: \(binaries.harness)\n")
        try OutputFolder.make(output)
        let comparison: Comparison
        if instructions {
            comparison = try countBoth(binaries, allocator: abAllocator, catalog: catalog, options: options)
        } else {
            let runner = ABRunner(binaries: binaries,
                                  options: ABOptions(cells: cellList, allocator: abAllocator, samples: samples, repetitions: repetitions),
                                  catalog: catalog)
            let outcome = runner.run()
            let basePath = output + "/base.json", headPath = output + "/head.json"
            try AtomicFile.write(try ReportWriter.json(outcome.base), to: basePath)
            try AtomicFile.write(try ReportWriter.json(outcome.head), to: headPath)
            comparison = try Comparator.compare(.run(outcome.base), oldPath: basePath, .run(outcome.head), newPath: headPath,
                                                options: options)
            if !noHistory { try appendHistory(HistoryEntry(gate: outcome.base, head: outcome.head), directory: history) }
        }
        var text = ComparisonReport.render(comparison, format: format)
        if format != .json { text = "harness: \(binaries.harness)\n\n" + text }
        print(text, terminator: "")
        let status = comparison.exitStatus(gate: gate)
        if status != 0 { throw ExitCode(status) }
    }

    /// Both sides' instruction counts, slab and slab-fallback, under callgrind.
    func countBoth(_ binaries: ABBinaries, allocator: AllocatorID, catalog: BenchCatalog, options: CompareOptions) throws -> Comparison {
        let tools: CallgrindTools
        do { tools = try CallgrindTools.locate() } catch {
            writeStandardError("bench ab: error: \(error)\n")
            throw ExitCode(2)
        }
        var records: [InstructionRecord] = []
        for (side, executable) in [("base", binaries.base), ("head", binaries.head)] {
            let dir = output + "/instructions-" + side
            let counter = InstructionCounter(
                options: InstructionOptions(allocators: allocator == .slab ? [.slab, .slabFallback] : [allocator], workloads: InstructionPlan.defaultWorkloads,
                                            cacheSimulation: false, timeout: InstructionPlan.defaultTimeout,
                                            outputDirectory: dir),
                catalog: catalog, executable: executable, tools: tools, interrupt: nil)
            var record = try counter.run().record
            if side == "base" {
                record.machine.commit = binaries.baseShort
                record.machine.dirty = false
                for i in record.cells.indices {
                    record.cells[i].workloadVersion = binaries.baseVersion(of: record.cells[i].workload,
                                                                           today: record.cells[i].workloadVersion)
                }
            }
            // The counter probed the working tree's commit; the base's file names REF.
            try AtomicFile.write(try ReportWriter.json(record), to: dir + "/instructions.json")
            records.append(record)
        }
        if !noHistory { try appendHistory(HistoryEntry(instructions: records[1], kind: "gate-instructions"), directory: history) }
        return try Comparator.compare(.instructions(records[0]), oldPath: output + "/instructions-base/instructions.json",
                                      .instructions(records[1]), newPath: output + "/instructions-head/instructions.json",
                                      options: options)
    }
}
