// `bench history`: the trend of the key figures across commits (AllocBench/Regression/History.swift).
import AllocBench
import ArgumentParser
import Harness

struct HistoryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history",
        abstract: "Print the trend per workload from results/history.jsonl and draw it as an SVG chart.",
        discussion: """
        Every full run (`bench run` without --quick), instruction count and A/B gate run appends one \
        line of key figures to history.jsonl beside its output. This prints slab/glibc per hot cell \
        for each full run, instructions per op of the slab's rseq and fallback paths for each count, \
        and head/base for each time gate, oldest first; and writes the chart (slab/glibc and \
        instructions per op, by commit).
        """)

    @Option(help: ArgumentHelp("The history file.", valueName: "path"))
    var file: String = History.defaultPath

    @Option(help: ArgumentHelp("Where to write the SVG chart.", valueName: "path"))
    var chart: String = "results/history.svg"

    func run() throws {
        let entries: [HistoryEntry]
        do { entries = try History.load(file) } catch {
            writeStandardError("bench history: error: \(error)\n")
            throw ExitCode(2)
        }
        print(History.trend(entries), terminator: "")
        do {
            try OutputFolder.makeParent(of: chart)
            try AtomicFile.write(History.chart(entries), to: chart)
        } catch {
            writeStandardError("bench history: error: --chart \(chart): \(error)\n")
            throw ExitCode(2)
        }
        writeStandardError("bench history: \(entries.count) entries; wrote \(chart)\n")
    }
}
