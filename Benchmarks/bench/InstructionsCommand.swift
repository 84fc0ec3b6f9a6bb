// `bench instructions`: instructions per op under callgrind (AllocBench/Instructions).
import AllocBench
import ArgumentParser
import Harness

struct InstructionsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "instructions",
        abstract: "Count instructions per op of each allocator under callgrind (deterministic).",
        discussion: """
        Each cell runs in a child under valgrind's callgrind (a copy of the bench stripped of debug \
        info, which valgrind 3.19 cannot read): set-up, one warm-up repetition, then one repetition \
        of fixed op counts whose measured region alone is counted. The same binary gives the same \
        count on every run, so these figures need no statistics.

        slab counts the production rseq path (SLAB_CPU_LAYER=rseq-simulated: valgrind has no \
        rseq, the slab runs its rseq sections as if on CPU 0), slab-fallback the fallback path; \
        a cell whose slab reports another mode fails. Peers are preloaded as in `bench run`.

        Defaults: allocators \(InstructionPlan.defaultAllocators.map(\.rawValue).joined(separator: ",")); \
        workloads \(InstructionPlan.defaultWorkloads.joined(separator: ",")); sizes \
        \(InstructionPlan.defaultSizes.map(String.init).joined(separator: ",")) (ctor-256 once at 256). \
        Thread workloads cannot be counted.

        Writes instructions.json, instructions.txt and instructions.csv into the output folder \
        (atomically). Exits 0 when the run completed, even if cells failed (the files record \
        them); 2 for bad arguments or when valgrind or objcopy is missing (apt-get install \
        valgrind binutils); 130 after Ctrl-C, with nothing written.
        """)

    @Option(help: ArgumentHelp("Allocators to count, comma-separated (default: glibc,jemalloc,mimalloc,tcmalloc,slab,slab-fallback).", valueName: "a,b"))
    var allocators: String?

    @Option(help: ArgumentHelp("Workloads to count, comma-separated (default: pair,batch-lifo-1000,batch-fifo-1000,batch-random-1000,steady-random,ctor-256; thread workloads are refused).", valueName: "w1,w2"))
    var workloads: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("Object sizes in bytes, comma-separated (default: 20,256).", valueName: "n,m"))
    var sizes: String?

    @Flag(inversion: .prefixedNo,
          help: "Simulate the caches too (D1 and last-level data misses per op; about 1.3-1.4x the time).")
    var cacheSim = true

    @Flag(help: "Count every cell twice and fail any cell whose two counts differ (twice the time).")
    var verify = false

    @Option(help: ArgumentHelp("Folder for the reports.", valueName: "dir"))
    var output: String = SuitePlan.defaultOutput

    @Option(parsing: .unconditional, help: ArgumentHelp("Seconds a cell may run under callgrind before it is killed and recorded as timeout.", valueName: "seconds"))
    var timeout: Double = InstructionPlan.defaultTimeout

    @Flag(help: "Do not append the counts to <output>/history.jsonl.")
    var noHistory = false

    @Option(help: ArgumentHelp("The valgrind to run: a path, or a name looked up on PATH.", valueName: "path"))
    var valgrind: String = "valgrind"

    func run() throws {
        let catalog = BenchCatalog.standard
        let options: InstructionOptions
        let tools: CallgrindTools
        do {
            options = InstructionOptions(
                allocators: try InstructionPlan.parseAllocators(allocators),
                workloads: try InstructionPlan.parseWorkloads(workloads, catalog: catalog),
                sizes: try sizes.map { try SuitePlan.parsePositiveIntegers($0, what: "--sizes") },
                cacheSimulation: cacheSim, timeout: timeout, outputDirectory: output, verify: verify)
            guard timeout > 0 else { throw InvalidValueError(description: "--timeout must be positive") }
            tools = try CallgrindTools.locate(valgrind: valgrind)
            try OutputFolder.prepare(output)
        } catch {
            writeStandardError("bench instructions: error: \(error)\n")
            throw ExitCode(2)
        }
        let interrupt = Interrupt()
        interrupt.install()
        let counter = InstructionCounter(options: options, catalog: catalog, executable: ChildProcess.currentExecutable,
                                         tools: tools, interrupt: interrupt)
        let outcome = try counter.run()
        if !noHistory && outcome.exitStatus == 0 {
            try appendHistory(HistoryEntry(instructions: outcome.record), directory: output)
        }
        if outcome.exitStatus != 0 { throw ExitCode(outcome.exitStatus) }
    }
}
