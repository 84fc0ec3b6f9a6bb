// `bench standings RUN...`: where our allocators stand against the best peer, cell by cell, over
// one or more runs (AllocBench/Reports/Standings.swift).
import AllocBench
import ArgumentParser
import Foundation
import Harness

struct StandingsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "standings",
        abstract: "List the cells where the slab or kmalloc is behind the best peer, over one or more runs.",
        discussion: """
        Each RUN is a run's latest.json or latest.csv (for example three full default runs, written \
        with --output to three folders). Per cell and run, the ratio of our allocator's median to \
        the lowest peer median of the same run; a cell is behind in a run when it is above 1. \
        Prints every cell behind in at least one run (all of them with --all), its ratio in each \
        run and in how many runs it was behind.

        Exit status: 0 (whatever the standings), 2 when a file is missing, unreadable or not a \
        bench run, or an allocator named is not one of ours.
        """)

    @Argument(help: "Run files: latest.json or latest.csv of each run.")
    var runs: [String]

    @Option(help: ArgumentHelp("Our allocators to stand against the peers, comma-separated (default: slab,kmalloc).", valueName: "a,b"))
    var allocators: String?

    @Flag(help: "List every cell compared, not only those behind in some run.")
    var all = false

    func run() throws {
        let subjects = allocators.map(SuitePlan.split) ?? Standings.defaultSubjects
        if subjects.isEmpty {
            writeStandardError("bench standings: error: --allocators names none of ours\n")
            throw ExitCode(2)
        }
        if let bad = subjects.first(where: { AllocatorID(rawValue: $0)?.isOurs != true }) {
            let ours = AllocatorID.builtIn.filter(\.isOurs).map(\.rawValue).joined(separator: ", ")
            writeStandardError("bench standings: error: --allocators: '\(bad)' is not one of ours (\(ours))\n")
            throw ExitCode(2)
        }
        let loaded: [StandingsRun]
        do {
            loaded = try runs.map(StandingsRun.load)
        } catch {
            writeStandardError("bench standings: error: \(error)\n")
            throw ExitCode(2)
        }
        print(Standings.render(loaded, Standings.compute(loaded, subjects: subjects), all: all), terminator: "")
    }
}
