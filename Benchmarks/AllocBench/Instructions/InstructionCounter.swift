// The parent's half of `bench instructions`: one callgrind run per cell, its count read back from
// callgrind's output file, the record and its reports written at the end.
//
// 1. One child per cell, under callgrind
// --------------------------------------
//   valgrind --tool=callgrind --command-line-only=yes -q --instr-atstart=no --collect-atstart=no
//            --cache-sim=yes|no --callgrind-out-file=<tmp>/cell-N.callgrind
//            <stripped bench> --child '<json CellParameters with countScale>'
//   The child counts only its measured region (CountedRegion.swift) and still writes its JSON
//   CellResult on stdout: ops, the allocator it saw, its status. --command-line-only keeps a
//   ~/.valgrindrc or $VALGRIND_OPTS from changing what is counted.
//
// 2. The stripped copy
// --------------------
//   valgrind 3.19 cannot read the DWARF 5 that Swift 6 emits ("unhandled dwarf2 abbrev form code
//   0x25", then "Possibly corrupted debuginfo file ... Giving up"), so the child is a copy of the
//   bench with its debug sections removed (objcopy --strip-debug), made once per run in a
//   temporary folder that also holds the output files. Symbols stay, so callgrind's per-function
//   figures in those files remain readable by callgrind_annotate while the run lasts.
//
// 3. The child's environment
// --------------------------
//   Ours, with: LD_PRELOAD=<the peer's library> for jemalloc, mimalloc and tcmalloc, removed
//   otherwise; SLAB_CPU_LAYER=rseq-simulated for slab (valgrind has no rseq, so glibc registers
//   none and the slab writes CPU 0 into the thread's area and runs the production rseq path),
//   =fallback for slab-fallback, removed otherwise; MALLOC_CONF with jemalloc's time-based
//   purging off for jemalloc (see 4.), removed otherwise; SWIFT_DETERMINISTIC_HASHING=1. The child
//   reports its slab mode ("slab mode=rseq-simulated magazine=..."), and a cell whose slab ran in
//   another mode fails: a count of the wrong path under the right name is worse than none.
//
// 4. Determinism
// --------------
//   The count is exact and repeatable: the same binary, cell and environment give the same Ir on
//   every run, whatever else the machine does (measured: all 66 default cells identical to the
//   instruction over three whole runs). `--verify` counts every cell twice and fails a cell whose
//   counts differ. Two things had to be settled for that:
//   - jemalloc purges dirty pages on a timer (its decay reads the clock every so many
//     operations), and under valgrind time runs at a rate that changes from run to run, so a
//     purge fell inside the counted region in some runs and not in others: batch-fifo-1000 at
//     256 B read 330.8, 344.1 and 330.7 instructions/op in three runs. Its cells therefore run
//     with MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1 (no time-based purging): 330.8 every
//     time. glibc, mimalloc and tcmalloc showed no such effect.
//   - The instructions around the two switches are accounted a little differently with and
//     without the cache simulation: every cell counts exactly 12 more without it (measured on
//     all 66 default cells). A constant, not noise, but counts taken with and without
//     --cache-sim should not be compared to the instruction; the record says which it was.
//   - The simulated misses (not the instructions) moved by a few between runs: the kernel
//     places valgrind's own stack at random, and valgrind lays the client out around it
//     (mimalloc steady-random at 256 B: 0 or 3 last-level misses). Each child is therefore
//     launched without address-space randomisation (personality ADDR_NO_RANDOMIZE, inherited
//     across exec; CAllocBench). Where the kernel refuses (some container profiles) the run
//     says so and goes on; the instruction counts are unaffected either way. What remains is
//     mimalloc's own doing: it picks the address of its segments at random (a security
//     measure of its release builds), so its miss counts can still differ by one or two.
//   Exact for one binary is not the same as stable across binaries. The counted region starts
//   from the heap the child built before it (the Swift runtime's allocations, decoding the
//   parameters, the workload's set-up), and a peer's path can depend on that state: between two
//   builds that differed only outside the workloads, mimalloc's free at 256 B went from 26 to
//   94 instructions (pair 256 B: 68.0 -> 135.4 instructions/op) and glibc's ctor-256 from 360.8
//   to 387.3, each repeatable in its own build. The slab, whose cache is created for the cell,
//   did not move. Read a peer's change between two commits as a change of that peer's path
//   only after checking that its count is stable across unrelated rebuilds.
#if canImport(Glibc)
import Glibc
#endif
import CAllocBench
import Foundation
import Harness

public struct InstructionOptions: Sendable {
    public var allocators: [AllocatorID]
    public var workloads: [String]
    /// nil: InstructionPlan.defaultSizes (a fixed-size workload runs once at its size).
    public var sizes: [Int]?
    public var cacheSimulation: Bool
    /// Per-cell wall-clock limit, seconds.
    public var timeout: Double
    public var outputDirectory: String
    /// Count every cell twice and fail cells whose counts differ.
    public var verify: Bool
    /// The op counts: `.standard` for real runs, `.test` for the unit tests.
    public var scale: CountScale

    public init(allocators: [AllocatorID], workloads: [String], sizes: [Int]? = nil, cacheSimulation: Bool,
                timeout: Double, outputDirectory: String, verify: Bool = false, scale: CountScale = .standard) {
        self.allocators = allocators
        self.workloads = workloads
        self.sizes = sizes
        self.cacheSimulation = cacheSimulation
        self.timeout = timeout
        self.outputDirectory = outputDirectory
        self.verify = verify
        self.scale = scale
    }
}

/// The cells of a `bench instructions` run and its defaults.
public enum InstructionPlan {
    public static let defaultAllocators: [AllocatorID] = [.glibc, .jemalloc, .mimalloc, .tcmalloc, .slab, .slabFallback]
    public static let defaultWorkloads = ["pair", "batch-lifo-1000", "batch-fifo-1000", "batch-random-1000",
                                          "steady-random", "ctor-256"]
    public static let defaultSizes = [20, 256]
    /// Generous: a cell takes 1-5 s under callgrind here.
    public static let defaultTimeout = 120.0

    /// "a,b" -> allocators; nil or empty -> the defaults above (both slab modes).
    public static func parseAllocators(_ list: String?) throws -> [AllocatorID] {
        guard let list, !list.isEmpty else { return defaultAllocators }
        return try SuitePlan.parseAllocators(list)
    }

    /// "w1,w2" -> workload names; nil or empty -> the defaults. Thread workloads are refused: the
    /// main thread cannot switch other threads' counting (callgrind keeps it per thread), and the
    /// simulated rseq is sound for one thread only.
    public static func parseWorkloads(_ list: String?, catalog: BenchCatalog) throws -> [String] {
        guard let list, !list.isEmpty else { return defaultWorkloads }
        let names = try SuitePlan.parseWorkloads(list, catalog: catalog)
        let mixed = names.filter { catalog.spec(named: $0)?.mixedSizes == true }
        guard mixed.isEmpty else {
            throw InvalidValueError(description: "--workloads: \(mixed.joined(separator: ", ")) \(mixed.count == 1 ? "is a mixed-size workload" : "are mixed-size workloads"), timed by `bench run` only")
        }
        let threaded = names.filter { name in
            guard HiddenWorkload(rawValue: name) == nil, let spec = catalog.spec(named: name) else { return false }
            return spec.runsSeveralThreads
        }
        guard threaded.isEmpty else {
            let countable = catalog.workloads.filter { !$0.runsSeveralThreads }.map(\.name)
            throw InvalidValueError(description: "--workloads: \(threaded.joined(separator: ", ")) run\(threaded.count == 1 ? "s" : "") several threads and cannot be counted; countable workloads: \(countable.joined(separator: ", "))")
        }
        return names
    }

    /// Workload, size, then allocator innermost, as in the suite (the table reads in that order).
    public static func cells(_ options: InstructionOptions, catalog: BenchCatalog) -> [CellParameters] {
        var cells: [CellParameters] = []
        for name in options.workloads {
            guard let spec = catalog.spec(named: name) else { continue }
            let sizes = spec.fixedSize.map { [$0] } ?? options.sizes ?? defaultSizes
            for size in sizes {
                for a in options.allocators {
                    cells.append(CellParameters(allocator: a, workload: name, size: size, threads: 1, repetitions: 1,
                                                quick: false, countScale: options.scale))
                }
            }
        }
        return cells
    }
}

/// A tool `bench instructions` needs is missing; `description` says what to install.
public struct MissingToolError: Error, CustomStringConvertible, Equatable {
    public var description: String
}

/// valgrind and objcopy, found and checked before the first cell.
public struct CallgrindTools: Sendable {
    /// Absolute path of valgrind.
    public var valgrind: String
    /// `valgrind --version`, e.g. "valgrind-3.19.0".
    public var version: String
    /// Absolute path of objcopy.
    public var objcopy: String

    public init(valgrind: String, version: String, objcopy: String) {
        self.valgrind = valgrind
        self.version = version
        self.objcopy = objcopy
    }

    /// Finds both tools (a name is looked up on PATH, a path is taken as is) and checks that this
    /// bench was built with valgrind's client requests.
    public static func locate(valgrind: String = "valgrind", objcopy: String = "objcopy") throws -> CallgrindTools {
        guard let vg = findExecutable(valgrind) else { throw MissingToolError(description: missingValgrind(valgrind)) }
        guard callocbench_client_requests_available() != 0 else {
            throw MissingToolError(description: "this bench was built without valgrind's headers (<valgrind/callgrind.h>), so it cannot switch callgrind's counting on and off; install them with: apt-get install valgrind, then rebuild the bench")
        }
        let probe = ChildProcess.run(executable: vg, arguments: ["--version"],
                                     environment: ProcessInfo.processInfo.environment.map { "\($0.key)=\($0.value)" },
                                     timeout: 30, interrupt: nil)
        let version = String(decoding: probe.stdout, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard probe.ending == .exited(0), version.hasPrefix("valgrind") else {
            throw MissingToolError(description: "\(vg) --version failed (\(probe.stderrTail.isEmpty ? "\(probe.ending)" : probe.stderrTail)); reinstall it with: apt-get install --reinstall valgrind")
        }
        guard let oc = findExecutable(objcopy) else {
            throw MissingToolError(description: "objcopy not found (looked for '\(objcopy)'\(objcopy.contains("/") ? "" : " on PATH")): bench instructions runs a copy of the bench without debug info, which valgrind 3.19 cannot read; install it with: apt-get install binutils")
        }
        return CallgrindTools(valgrind: vg, version: version, objcopy: oc)
    }

    /// The message for a valgrind that is not there.
    public static func missingValgrind(_ name: String) -> String {
        "valgrind not found (looked for '\(name)'\(name.contains("/") ? "" : " on PATH")): bench instructions counts instructions under callgrind; install it with: apt-get install valgrind"
    }

    /// `name` if it is an executable path, else the first executable `name` on PATH.
    static func findExecutable(_ name: String) -> String? {
        if name.contains("/") { return access(name, X_OK) == 0 ? name : nil }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for dir in path.split(separator: ":") where !dir.isEmpty {
            let candidate = "\(dir)/\(name)"
            var st = stat()
            if access(candidate, X_OK) == 0, stat(candidate, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG { return candidate }
        }
        return nil
    }
}

/// The stripped copy of the bench and the folder holding it and the callgrind output files.
public struct PreparedBinary: Sendable {
    public var directory: String
    public var path: String

    /// Removes the folder and everything in it.
    public func remove() { try? FileManager.default.removeItem(atPath: directory) }
}

/// What callgrind counted: the totals of the output file, by event name.
public struct CallgrindCounts: Equatable, Sendable {
    public var events: [String: UInt64]

    public var instructions: UInt64 { events["Ir"] ?? 0 }
    /// First-level data misses, reads and writes; nil without cache simulation.
    public var d1Misses: UInt64? { sum("D1mr", "D1mw") }
    /// Last-level data misses, reads and writes; nil without cache simulation.
    public var llMisses: UInt64? { sum("DLmr", "DLmw") }

    private func sum(_ a: String, _ b: String) -> UInt64? {
        guard events[a] != nil || events[b] != nil else { return nil }
        return (events[a] ?? 0) + (events[b] ?? 0)
    }
}

public struct CallgrindParseError: Error, CustomStringConvertible {
    public var description: String
}

public enum CallgrindOutput {
    /// Reads the totals of a callgrind output file. The "events:" line names the columns; each
    /// part (one per dump; ours have one, written at exit) ends with "totals:", and its header
    /// carries "summary:" with the same figures; a part with neither counts nothing. Parts are
    /// summed, because callgrind zeroes its counters after each dump. Values missing at the end of
    /// a line are zeros, as in callgrind's cost lines.
    public static func parse(_ text: String) throws -> CallgrindCounts {
        var names: [String]? = nil
        var totals: [String: UInt64] = [:]
        var sawFigures = false
        var partSummary: [UInt64]? = nil
        var partTotals: [UInt64]? = nil
        var partNames: [String]? = nil

        func values(_ rest: Substring, line: String) throws -> [UInt64] {
            try rest.split(separator: " ", omittingEmptySubsequences: true).map {
                guard let v = UInt64($0) else { throw CallgrindParseError(description: "not a number in '\(line)'") }
                return v
            }
        }
        func closePart() throws {
            guard let figures = partTotals ?? partSummary else { return }
            guard let cols = partNames ?? names else {
                throw CallgrindParseError(description: "totals before any 'events:' line")
            }
            guard figures.count <= cols.count else {
                throw CallgrindParseError(description: "\(figures.count) totals for \(cols.count) events (\(cols.joined(separator: " ")))")
            }
            for (i, name) in cols.enumerated() { totals[name, default: 0] += i < figures.count ? figures[i] : 0 }
            sawFigures = true
            partSummary = nil
            partTotals = nil
        }

        for raw in text.split(separator: "\n", omittingEmptySubsequences: true) {
            let line = String(raw).trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("part:") {
                try closePart()
            } else if line.hasPrefix("events:") {
                let cols = line.dropFirst("events:".count).split(separator: " ").map(String.init)
                guard !cols.isEmpty else { throw CallgrindParseError(description: "an empty 'events:' line") }
                names = cols
                partNames = cols
            } else if line.hasPrefix("summary:") {
                partSummary = try values(line.dropFirst("summary:".count), line: line)
            } else if line.hasPrefix("totals:") {
                partTotals = try values(line.dropFirst("totals:".count), line: line)
            }
        }
        try closePart()
        guard sawFigures else { throw CallgrindParseError(description: "no 'totals:' or 'summary:' line") }
        return CallgrindCounts(events: totals)
    }

    public static func parse(file path: String) throws -> CallgrindCounts {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CallgrindParseError(description: "callgrind wrote no output file (\(path))")
        }
        return try parse(String(decoding: data, as: UTF8.self))
    }
}

public struct InstructionCounter {
    public var options: InstructionOptions
    public var catalog: BenchCatalog
    /// The bench to count (its stripped copy is what runs).
    public var executable: String
    public var tools: CallgrindTools
    public var interrupt: Interrupt?
    /// Progress and notes; stderr by default.
    public var log: @Sendable (String) -> Void = writeStandardError
    /// For tests: variables set (or removed, nil) in the child's environment after the
    /// allocator's own, e.g. to make a slab cell run in the wrong mode.
    public var environmentOverrides: [String: String?] = [:]

    public init(options: InstructionOptions, catalog: BenchCatalog, executable: String, tools: CallgrindTools,
                interrupt: Interrupt?) {
        self.options = options
        self.catalog = catalog
        self.executable = executable
        self.tools = tools
        self.interrupt = interrupt
    }

    public struct Outcome {
        public var record: InstructionRecord
        /// The files written; empty after Ctrl-C.
        public var written: [String]
        /// 0, or 130 after Ctrl-C.
        public var exitStatus: Int32
    }

    /// The slab mode a slab (or kmalloc) cell must report, nil for the others (and slab-nocpu,
    /// which has no per-CPU layer to check).
    public static func expectedSlabMode(_ a: AllocatorID) -> String? {
        switch a {
        case .slab, .slabBare, .kmalloc, .kmallocSized: return "rseq-simulated"
        case .slabFallback: return "fallback"
        default: return nil
        }
    }

    /// nil when `version` (the child's "slab mode=X magazine=N") names the mode `a` must run in,
    /// else why the cell fails.
    public static func slabModeProblem(_ a: AllocatorID, version: String?) -> String? {
        guard let expected = expectedSlabMode(a) else { return nil }
        let mode = version?.split(separator: " ").first { $0.hasPrefix("mode=") }.map { String($0.dropFirst(5)) }
        guard mode != expected else { return nil }
        return "\(a.rawValue) ran in mode \(mode ?? "unknown") (\(version ?? "no version reported")), expected mode=\(expected): SLAB_CPU_LAYER=\(expected) did not take effect, so this would count the wrong path"
    }

    /// jemalloc's options in a counted cell: no purging on a timer (see 4.).
    public static let jemallocConfiguration = "dirty_decay_ms:-1,muzzy_decay_ms:-1"

    /// The child's environment (see 3.), as "NAME=value" strings.
    func environment(library: String?, allocator: AllocatorID) -> [String] {
        var env = ProcessInfo.processInfo.environment
        env["LD_PRELOAD"] = library
        env["SLAB_CPU_LAYER"] = Self.expectedSlabMode(allocator)
        env["MALLOC_CONF"] = allocator == .jemalloc ? Self.jemallocConfiguration : nil
        env["SWIFT_DETERMINISTIC_HASHING"] = "1"
        for (k, v) in environmentOverrides { env[k] = v }
        return env.map { "\($0.key)=\($0.value)" }.sorted()
    }

    /// Makes the stripped copy of the bench in a fresh temporary folder (see 2.).
    public func prepare() throws -> PreparedBinary {
        var template = Array((NSTemporaryDirectory() + "/bench-instructions.XXXXXX").utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw MissingToolError(description: "cannot create a temporary folder: \(String(cString: strerror(errno)))")
        }
        let dir = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        let prepared = PreparedBinary(directory: dir, path: dir + "/bench")
        let outcome = ChildProcess.run(executable: tools.objcopy, arguments: ["--strip-debug", executable, prepared.path],
                                       environment: ProcessInfo.processInfo.environment.map { "\($0.key)=\($0.value)" },
                                       timeout: 120, interrupt: nil)
        guard outcome.ending == .exited(0), access(prepared.path, X_OK) == 0 else {
            prepared.remove()
            throw MissingToolError(description: "\(tools.objcopy) --strip-debug \(executable) failed: \(outcome.stderrTail.isEmpty ? "\(outcome.ending)" : outcome.stderrTail)")
        }
        return prepared
    }

    /// Counts one cell with the prepared binary. Never throws: whatever went wrong is the cell's
    /// status and message.
    public func countCell(_ cell: CellParameters, library: String?, prepared: PreparedBinary) -> InstructionCell {
        let version = catalog.spec(named: cell.workload)?.version ?? 1
        func cellWith(_ status: CellResult.Status, _ message: String?, ops: Int = 0, counts: CallgrindCounts? = nil,
                      allocatorVersion: String? = nil) -> InstructionCell {
            InstructionCell(allocator: cell.allocator.rawValue, workload: cell.workload, workloadVersion: version,
                            size: cell.size, status: status, message: message, ops: ops,
                            instructions: counts?.instructions ?? 0, d1Misses: counts?.d1Misses,
                            llMisses: counts?.llMisses, allocatorVersion: allocatorVersion)
        }
        let outFile = prepared.directory + "/cell-\(cell.allocator.rawValue)-\(cell.workload)-\(cell.size).callgrind"
        unlink(outFile)
        let json = String(decoding: try! JSONEncoder().encode(cell), as: UTF8.self)
        let arguments = [
            "--tool=callgrind", "--command-line-only=yes", "-q", "--instr-atstart=no", "--collect-atstart=no",
            "--cache-sim=\(options.cacheSimulation ? "yes" : "no")", "--callgrind-out-file=\(outFile)",
            prepared.path, "--child", json,
        ]
        // The persona is the process's, so it is restored as soon as the child has run (see 4.).
        let persona = callocbench_exec_without_aslr()
        let outcome = ChildProcess.run(executable: tools.valgrind, arguments: arguments,
                                       environment: environment(library: library, allocator: cell.allocator),
                                       timeout: options.timeout, interrupt: interrupt)
        callocbench_restore_persona(persona)
        let result = SuiteRunner.result(of: outcome, for: cell, timeout: options.timeout)
        guard result.status == .ok, let rep = result.repetitions.first else {
            return cellWith(result.status, result.message, allocatorVersion: result.allocatorVersion)
        }
        if let problem = Self.slabModeProblem(cell.allocator, version: result.allocatorVersion) {
            return cellWith(.failed, problem, allocatorVersion: result.allocatorVersion)
        }
        let counts: CallgrindCounts
        do {
            counts = try CallgrindOutput.parse(file: outFile)
        } catch {
            return cellWith(.failed, "reading callgrind's output: \(error)", allocatorVersion: result.allocatorVersion)
        }
        guard counts.instructions > 0, rep.ops > 0 else {
            return cellWith(.failed, "nothing counted (\(counts.instructions) instructions, \(rep.ops) ops): the measured region never switched collection on",
                            allocatorVersion: result.allocatorVersion)
        }
        return cellWith(.ok, result.message, ops: rep.ops, counts: counts, allocatorVersion: result.allocatorVersion)
    }

    /// Counts one cell; with --verify, counts it again and fails it when the two counts differ.
    func measureCell(_ cell: CellParameters, library: String?, prepared: PreparedBinary) -> InstructionCell {
        var c = countCell(cell, library: library, prepared: prepared)
        guard options.verify && c.status == .ok && interrupt?.isRequested != true else { return c }
        let again = countCell(cell, library: library, prepared: prepared)
        if again.status != .ok || again.instructions != c.instructions || again.ops != c.ops {
            c.status = .failed
            c.message = again.status == .ok
                ? "not deterministic: \(c.instructions) instructions for \(c.ops) ops, then \(again.instructions) for \(again.ops)"
                : "the second count \(again.status.rawValue): \(again.message ?? "")"
        }
        return c
    }

    /// Runs every cell and writes the reports.
    public func run() throws -> Outcome {
        let startDate = Date()
        let start = monotonicSeconds()
        let machine = Machine.probe(allocators: options.allocators, date: startDate)
        let cells = InstructionPlan.cells(options, catalog: catalog)

        let loop = CellLoop(cells: cells, allocators: options.allocators, interrupt: interrupt, start: start, log: log)
        let prepared = try prepare()
        defer { prepared.remove() }
        let persona = callocbench_exec_without_aslr()
        if persona < 0 {
            log("note: cannot launch the children without address-space randomisation (personality: \(String(cString: strerror(-persona)))); simulated cache misses may differ by a few between runs, instruction counts do not\n")
        }
        callocbench_restore_persona(persona)

        log("bench instructions: \(cells.count) cells (\(loop.launched) to count\(options.verify ? ", each twice" : "")) under \(tools.version) callgrind, cache simulation \(options.cacheSimulation ? "on" : "off"), timeout \(Int(options.timeout)) s per cell; machine \(machine.cpuModel), commit \(machine.commitLabel)\n")
        let (counted, interrupted) = loop.run(
            label: { "\($1.allocator.rawValue) \($1.workload) \($1.size) B" },
            skipped: { cell, why in
                InstructionCell(allocator: cell.allocator.rawValue, workload: cell.workload,
                                workloadVersion: catalog.spec(named: cell.workload)?.version ?? 1, size: cell.size,
                                status: .skipped, message: why, ops: 0, instructions: 0)
            },
            measure: { cell, library in measureCell(cell, library: library, prepared: prepared) },
            summary: { c in
                c.status == .ok ? "\(InstructionReport.perOp(c.instructionsPerOp)) instructions/op"
                                : "\(c.status.rawValue.uppercased()): \(c.message ?? "")"
            })

        let record = InstructionRecord(
            runID: SuiteRunner.runID(startDate, commit: machine.commitLabel), machine: machine, valgrind: tools.version,
            cacheSimulation: options.cacheSimulation, durationSeconds: monotonicSeconds() - start, cells: counted)
        if interrupted {
            log("bench instructions: interrupted after \(counted.count) cells; nothing written, earlier instructions.* left intact\n")
            return Outcome(record: record, written: [], exitStatus: 130)
        }
        let written = try OutputFolder.write("the counts", to: options.outputDirectory) { try InstructionReport.write(record, to: $0) }
        let failed = counted.filter { $0.status == .failed || $0.status == .timeout }.count
        log("bench instructions: done in \(TextReport.duration(record.durationSeconds)); \(failed) cell\(failed == 1 ? "" : "s") failed; wrote \(written.joined(separator: ", "))\n")
        return Outcome(record: record, written: written, exitStatus: 0)
    }
}
