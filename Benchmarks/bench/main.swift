// `bench`: the allocator benchmark suite's command line. Argument parsing only; the runner is
// AllocBench/Runner, the reports AllocBench/Reports, the workloads AllocBench/Workloads, the
// regression tooling AllocBench/Regression and AllocBench/Instructions.
//
//   bench [run] [options]        the wall-clock suite (the default subcommand)
//   bench instructions           instruction counts under callgrind
//   bench compare OLD NEW        statistics between two result files of the same kind
//   bench ab [--base REF]        REF's allocator against the working tree's, interleaved, same machine
//   bench baseline update        rewrite the committed baseline
//   bench history                the trend of the key figures across commits
//   bench standings RUN...       the cells where ours is behind the best peer, over runs
import AllocBench
import ArgumentParser

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Compare glibc, jemalloc, mimalloc, tcmalloc, the slab and kmalloc on fixed-size and mixed-size workloads.",
        subcommands: [RunCommand.self, InstructionsCommand.self, CompareCommand.self, ABCommand.self, BaselineCommand.self,
                      HistoryCommand.self, StandingsCommand.self],
        defaultSubcommand: RunCommand.self)
}

Bench.main()
