// `bench run` (the default subcommand): the wall-clock suite, and the hidden `--child` entry
// point every cell's child process runs.
import AllocBench
import ArgumentParser
import Foundation
import Harness
#if canImport(Glibc)
import Glibc
#endif

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Compare glibc, jemalloc, mimalloc, tcmalloc, the slab and kmalloc on fixed-size and mixed-size workloads.",
        discussion: """
        With no arguments, runs the default suite (under 5 minutes on a 2-core machine): every \
        workload; glibc, jemalloc, mimalloc, tcmalloc, slab and slab-nocpu on the fixed-size ones, \
        the four peers and kmalloc on the mixed-size ones (larson-mixed, batch-mixed, run once: \
        their sizes are drawn from 8 to 1024 bytes); sizes 16,20,64,256,1024 for pair, \
        batch-lifo-100, batch-lifo-1000 and thrash, 20 and 256 for the others (ctor-256 once); \
        threads 1,2,4,... up to 4x the CPUs for the thread workloads; 5 repetitions after a warm-up.

        --allocators also takes any malloc-compatible shared library: preload:PATH[=NAME], run \
        with LD_PRELOAD like the built-in peers (for example \
        preload:/usr/lib/x86_64-linux-gnu/libjemalloc.so.2=je).

        Each cell runs in a child process: the bench re-launched with LD_PRELOAD for a peer, without \
        it for glibc and the slab. Writes latest.txt, latest.csv, latest.json and three SVG charts \
        into the output folder (atomically); an interrupted run (Ctrl-C) writes interrupted.* instead \
        and exits with status 130. Unknown allocator or workload names exit with status 2.

        Other subcommands: `bench instructions` (instruction counts under callgrind), `bench compare \
        OLD NEW` (is NEW slower than OLD?), `bench baseline update` (rewrite results/baseline).
        """)

    @Option(help: ArgumentHelp("Allocators to measure, comma-separated: built-in names or preload:PATH[=NAME] (default: see above).", valueName: "a,b"))
    var allocators: String?

    @Option(help: ArgumentHelp("Workloads to run, comma-separated (default: all; see --list).", valueName: "w1,w2"))
    var workloads: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("Object sizes in bytes, comma-separated (default: per workload, see above).", valueName: "n,m"))
    var sizes: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("Thread counts for the thread workloads, comma-separated (default: 1,2,4,... up to 4x CPUs).", valueName: "n,m"))
    var threads: String?

    @Option(parsing: .unconditional, help: "Timed repetitions per cell, after one warm-up (default: 5; 3 with --quick).")
    var repetitions: Int?

    @Option(help: ArgumentHelp("Folder for the reports.", valueName: "dir"))
    var output: String = SuitePlan.defaultOutput

    @Option(parsing: .unconditional, help: ArgumentHelp("Seconds a cell may run before its child is killed and the cell recorded as timeout.", valueName: "seconds"))
    var timeout: Double = SuitePlan.defaultTimeout

    @Flag(help: "CI mode, under 90 s: 20-byte objects, threads 1 and 2, the workloads' quick scale, 3 repetitions.")
    var quick = false

    @Flag(help: "List the allocators (installed or missing), the workloads and the defaults, then exit.")
    var list = false

    @Flag(help: "Do not append this run's key figures to <output>/history.jsonl.")
    var noHistory = false

    @Option(help: .hidden)
    var child: String?

    func run() throws {
        let catalog = BenchCatalog.standard
        if let child {
            throw ExitCode(ChildCell.main(json: child, catalog: catalog))
        }
        let options: SuiteOptions
        do {
            options = SuiteOptions(
                allocators: try SuitePlan.parseAllocators(allocators),
                mixedSizeAllocators: allocators?.isEmpty == false ? nil : AllocatorID.defaultMixedSizeSuite,
                referenceAllocators: allocators?.isEmpty == false ? [] : AllocatorID.defaultReferenceSuite,
                oneThreadOnlyAllocators: allocators?.isEmpty == false ? [] : AllocatorID.defaultOneThreadOnly,
                workloads: try SuitePlan.parseWorkloads(workloads, catalog: catalog),
                sizes: try sizes.map { try SuitePlan.parsePositiveIntegers($0, what: "--sizes") },
                threads: try threads.map { try SuitePlan.parsePositiveIntegers($0, what: "--threads") },
                repetitions: repetitions ?? (quick ? SuitePlan.quickRepetitions : SuitePlan.defaultRepetitions),
                quick: quick, timeout: timeout, outputDirectory: output)
            guard options.repetitions >= 1 else { throw InvalidValueError(description: "--repetitions must be at least 1") }
            guard timeout > 0 else { throw InvalidValueError(description: "--timeout must be positive") }
            if !list { try OutputFolder.prepare(output) }
        } catch {
            writeStandardError("bench: error: \(error)\n")
            throw ExitCode(2)
        }
        if list {
            printList(catalog)
            return
        }
        let interrupt = Interrupt()
        interrupt.install()
        let runner = SuiteRunner(options: options, catalog: catalog, executable: ChildProcess.currentExecutable,
                                 interrupt: interrupt)
        let outcome = try runner.run()
        if !noHistory && !quick && !outcome.record.interrupted {
            try appendHistory(HistoryEntry(run: outcome.record), directory: output)
        }
        if outcome.exitStatus != 0 { throw ExitCode(outcome.exitStatus) }
    }

    func printList(_ catalog: BenchCatalog) {
        var out = "Allocators\n"
        for a in AllocatorID.builtIn {
            let state: String
            if let p = a.preload {
                if let path = PeerLibraries.locate(a) {
                    state = "installed: \(path)"
                } else {
                    state = "MISSING: apt-get install \(p.debianPackage)"
                }
            } else {
                switch a {
                case .glibc: state = "built in: the system malloc"
                case .slab: state = "built in: SlabCache with the per-CPU magazine layer"
                case .slabFallback: state = "built in: SlabCache, per-CPU layer in fallback mode (SLAB_CPU_LAYER=fallback; not in the default suite)"
                case .kmalloc: state = "built in: kmalloc/kfree over the size-class caches (default suite: the mixed-size workloads only)"
                case .kmallocSized: state = "built in: kmalloc and kfree(p, size:), the free told the size (fixed-size workloads; not in the default suite)"
                case .slabBare:
                    state = "built in: reference row, the per-CPU pop and push without the free's ownership test (default suite: pair only)"
                default: state = "built in: SlabCache, slab layer only (.noCPUCache)"
                }
            }
            out += "  " + a.rawValue.padding(toLength: 15, withPad: " ", startingAt: 0) + state + "\n"
        }
        out += "  " + PreloadLibrary.syntax.padding(toLength: 21, withPad: " ", startingAt: 0)
            + "any malloc-compatible shared library, with LD_PRELOAD (NAME: its name in the reports)\n"
        out += "\nWorkloads\n"
        let width = (catalog.workloads.map(\.name.count).max() ?? 0) + 2
        for w in catalog.workloads {
            var tags: [String] = []
            if w.usesThreads { tags.append("threads") }
            if w.measuresLatency { tags.append("latency") }
            if w.mixedSizes == true, let f = w.fixedSize {
                tags.append("sizes 8-\(f) B")
            } else if let f = w.fixedSize {
                tags.append("always \(f) B")
            }
            let tagText = tags.isEmpty ? "" : " [" + tags.joined(separator: ", ") + "]"
            out += "  " + w.name.padding(toLength: width, withPad: " ", startingAt: 0) + w.summary + tagText + "\n"
        }
        let cores = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        let join: ([Int]) -> String = { $0.map(String.init).joined(separator: ",") }
        out += """

        Defaults
          allocators    \(AllocatorID.defaultSuite.map(\.rawValue).joined(separator: ",")); on the mixed-size workloads \(AllocatorID.defaultMixedSizeSuite.map(\.rawValue).joined(separator: ",")); and the reference \(AllocatorID.defaultReferenceSuite.map(\.rawValue).joined(separator: ",")) on \(SuitePlan.referenceWorkloads.sorted().joined(separator: ", "))
          sizes         \(join(SuitePlan.defaultSizes)) (\(SuitePlan.sizeSweepWorkloads.sorted().joined(separator: ", "))); \(join(SuitePlan.reducedSizes)) (the others)
          threads       \(join(SuitePlan.defaultThreads(cores: cores))) (thread workloads; \(cores) CPUs online)
          repetitions   \(SuitePlan.defaultRepetitions) (after one warm-up)
          timeout       \(Int(SuitePlan.defaultTimeout)) s per cell
          output        \(SuitePlan.defaultOutput)/
          --quick       sizes \(join(SuitePlan.quickSizes)), threads \(join(SuitePlan.quickThreads(cores: cores))), \(SuitePlan.quickRepetitions) repetitions, quick scale

        """
        print(out, terminator: "")
    }
}

/// Appends a history line to `<directory>/history.jsonl` and says so on stderr.
func appendHistory(_ entry: HistoryEntry, directory: String) throws {
    let path = (directory as NSString).appendingPathComponent("history.jsonl")
    try History.append(entry, to: path)
    writeStandardError("history: appended to \(path): \(entry.line)\n")
}
