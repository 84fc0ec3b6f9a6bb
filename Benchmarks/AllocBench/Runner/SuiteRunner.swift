// The parent's loop: one child per cell, each with its allocator in place, progress on stderr,
// a failure recorded and the run going on, and the reports written at the end.
//
// 1. Isolation
// ------------
//   Every cell runs in a fresh child: the bench re-executing itself (/proc/self/exe) with
//   `--child '<json>'`. A peer (built in, or a `preload:` library) is loaded with
//   LD_PRELOAD=<full path of its library>; glibc, the slab and kmalloc run with LD_PRELOAD removed
//   from the environment, so that "glibc" really is glibc (a linked jemalloc would replace malloc
//   process-wide). The child checks this again (ChildCell.checkPreload). A fresh
//   process also gives each cell a clean heap and its own peak RSS. The typed caches have no cells
//   in the mixed-size workloads (SuitePlan leaves them out).
//
// 2. Failures
// -----------
//   Killed by a signal, non-zero exit, unreadable output, a result for another cell, or the
//   timeout (SIGKILL): the cell is recorded as failed/timeout with a message naming the cause and
//   the tail of the child's stderr; the next cell runs. A peer whose library is missing is not
//   launched: its cells are recorded as skipped, with one note on stderr naming the Debian package.
//
// 3. Ctrl-C
// ---------
//   The running child is killed at once; the results so far go to interrupted.{json,csv,txt},
//   never over latest.*; the exit status is 130.
//
// 4. A throttled host
// -------------------
//   Thread cells run in rounds (Plan.swift, section 3), and each round's child ends with the
//   two-CPU canary (Threaded.swift). A round whose canary took more than `throttleFactor` (4)
//   times the best canary of the run so far was measured while the host was not giving the
//   process both CPUs (measured: 31-64 ns a round trip with both, the two values of where the
//   host put the vCPUs, and 310-370 ns throttled). The runner says so, idles `throttlePause`
//   seconds (idling is what ends it: measured, about 20 s) and measures the round again, up to
//   `throttleRetries` times a round and `throttleIdleBudget` (60 s) of idling in the whole run,
//   which keeps the default suite within its 5 minutes; past either, the last measurement stands
//   and the run says how many such rounds it kept. A run that starts throttled takes its first
//   canaries for the best, so at the end every round is checked again against the run's final
//   best and measured again (idle first) while the budget lasts; the quieter measurement stands.
//   One-thread cells are not affected and are not checked.
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Harness

public struct SuiteRunner {
    public var options: SuiteOptions
    public var catalog: BenchCatalog
    /// The program to launch as the child (the bench itself).
    public var executable: String
    public var interrupt: Interrupt?
    /// Progress and notes; stderr by default.
    public var log: @Sendable (String) -> Void = writeStandardError

    public init(options: SuiteOptions, catalog: BenchCatalog, executable: String, interrupt: Interrupt?) {
        self.options = options
        self.catalog = catalog
        self.executable = executable
        self.interrupt = interrupt
    }

    public struct Outcome {
        public var record: RunRecord
        public var written: [String]
        /// 0, or 130 after Ctrl-C.
        public var exitStatus: Int32
    }

    /// Runs every cell and writes the reports.
    public func run() throws -> Outcome {
        let startDate = Date()
        let start = monotonicSeconds()
        let machine = Machine.probe(allocators: options.allAllocators, date: startDate)
        let cores = machine.cores
        let cells = SuitePlan.cells(options, catalog: catalog, cores: cores)
        // Thread cells run in rounds, one child per repetition (Plan.swift, 3.).
        let launches = SuitePlan.launches(cells, catalog: catalog)

        let loop = CellLoop(cells: launches.map(\.cell), allocators: options.allAllocators, interrupt: interrupt,
                            start: start, log: log)
        log("bench: \(cells.count) cells in \(launches.count) child processes (\(loop.launched) to run; thread cells one per repetition), \(options.repetitions) repetitions each, timeout \(Int(options.timeout)) s per child; machine \(machine.cpuModel), \(cores) CPUs, commit \(machine.commitLabel)\n")
        var bestCanary: Double?
        var throttledRounds = 0
        var stoodThrottled = 0
        var idled = 0.0
        /// Says `why`, then idles `throttlePause` before a round is measured again, when the run's
        /// idle budget allows it and Ctrl-C has not come (section 4); false, doing nothing, if not.
        func idleToMeasureAgain(saying why: @autoclosure () -> String) -> Bool {
            guard idled + Self.throttlePause <= Self.throttleIdleBudget, interrupt?.isRequested != true else { return false }
            log(why())
            idled += Self.throttlePause
            throttledRounds += 1
            Self.idle(seconds: Self.throttlePause, interrupt: interrupt)
            return true
        }
        let (launched, interrupted) = loop.run(
            label: { i, c in
                let l = launches[i]
                return "\(c.allocator.name) \(c.workload) \(c.size) B x\(c.threads)" + (l.rounds > 1 ? " (round \(l.round + 1)/\(l.rounds))" : "")
            },
            skipped: { CellResult(parameters: $0, status: .skipped, message: $1, repetitions: [], allocatorVersion: nil) },
            measure: { cell, library in
                var result = runCell(cell, library: library)
                var retries = 0
                while let canary = result.canaryNanoseconds {
                    if let best = bestCanary, Self.isThrottled(canary: canary, best: best) {
                        guard retries < Self.throttleRetries, idleToMeasureAgain(saying:
                            "host throttling (two-CPU canary \(TextReport.fixed(canary)) ns, best \(TextReport.fixed(best)) ns): idle \(Int(Self.throttlePause)) s, measure again ... ") else {
                            log("(still throttled: canary \(TextReport.fixed(canary)) ns, best \(TextReport.fixed(best)) ns; this round stands) ")
                            break
                        }
                        retries += 1
                        result = runCell(cell, library: library)
                        continue
                    }
                    bestCanary = min(bestCanary ?? canary, canary)
                    break
                }
                return result
            },
            summary: { $0.status == .ok ? summaryText($0) : "\($0.status.rawValue.uppercased()): \($0.message ?? "")" })
        // A run that started while the host throttled took its first canaries for the best: the
        // rounds it accepted then are checked again against the run's final best, and measured
        // again while the idle budget lasts.
        var final = launched
        if !interrupted, let best = bestCanary {
            for i in Self.roundsMeasuredThrottled(canaries: final.map(\.canaryNanoseconds), best: best) {
                let cell = launches[i].cell
                guard idleToMeasureAgain(saying:
                    "bench: round \(launches[i].round + 1) of \(cell.allocator.name) \(cell.workload) \(cell.size) B x\(cell.threads) "
                    + "was measured before the run's best canary (\(TextReport.fixed(final[i].canaryNanoseconds ?? 0)) ns, best "
                    + "\(TextReport.fixed(best)) ns): idle \(Int(Self.throttlePause)) s, measure again ... ") else { break }
                if interrupt?.isRequested == true { log("interrupted\n"); break }
                let again = runCell(cell, library: loop.libraries[cell.allocator])
                log(summaryText(again) + "\n")
                // The round with the quieter canary stands.
                if (again.canaryNanoseconds ?? .infinity) < (final[i].canaryNanoseconds ?? .infinity) { final[i] = again }
            }
            stoodThrottled = Self.roundsMeasuredThrottled(canaries: final.map(\.canaryNanoseconds), best: best).count
        }
        let results = SuitePlan.merge(final, of: launches, into: cells)
        if throttledRounds > 0 {
            log("bench: \(throttledRounds) thread round\(throttledRounds == 1 ? " was" : "s were") measured again after the host throttled the second CPU (SuiteRunner.swift, section 4)\n")
        }
        if stoodThrottled > 0 {
            log("bench: \(stoodThrottled) thread round\(stoodThrottled == 1 ? "" : "s") measured while the host throttled the second CPU stand (three attempts each, at most \(Int(Self.throttleIdleBudget)) s of idling a run): their thread cells are less trustworthy\n")
        }

        let record = RunRecord(
            runID: Self.runID(startDate, commit: machine.commitLabel), machine: machine, quick: options.quick,
            interrupted: interrupted, durationSeconds: monotonicSeconds() - start,
            workloads: options.workloads.compactMap { catalog.spec(named: $0) }, results: results)
        let written = try OutputFolder.write("the run's results", to: options.outputDirectory) { try ReportWriter.write(record, to: $0) }
        let failed = results.filter { $0.status == .failed || $0.status == .timeout }.count
        if interrupted {
            log("bench: interrupted after \(results.count) cells; partial results in \(written.joined(separator: ", ")); earlier latest.* left intact\n")
        } else {
            log("bench: done in \(TextReport.duration(record.durationSeconds)); \(failed) cell\(failed == 1 ? "" : "s") failed; wrote \(written.joined(separator: ", "))\n")
        }
        return Outcome(record: record, written: written, exitStatus: interrupted ? 130 : 0)
    }

    /// A round's canary against the run's best (section 4).
    static let throttleFactor = 4.0
    static let throttlePause = 20.0
    static let throttleRetries = 3
    /// The most a run idles for throttling in all: the default suite stays within its 5 minutes.
    static let throttleIdleBudget = 60.0

    static func isThrottled(canary: Double, best: Double) -> Bool { canary > throttleFactor * best }

    /// The indices of the rounds whose canary says throttled against `best` (nil: not a thread
    /// round).
    static func roundsMeasuredThrottled(canaries: [Double?], best: Double) -> [Int] {
        canaries.indices.filter { i in canaries[i].map { isThrottled(canary: $0, best: best) } ?? false }
    }

    /// Sleeps `seconds`, waking early for Ctrl-C.
    static func idle(seconds: Double, interrupt: Interrupt?) {
        let end = monotonicSeconds() + seconds
        while monotonicSeconds() < end, interrupt?.isRequested != true { usleep(100_000) }
    }

    func summaryText(_ r: CellResult) -> String {
        guard let ns = Spread(r.repetitions.map(\.nsPerOp)) else { return "ok" }
        return "\(TextReport.fixed(ns.median)) ns/op (\(TextReport.fixed(ns.min))-\(TextReport.fixed(ns.max)))"
    }

    static func runID(_ date: Date, commit: String) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return f.string(from: date) + "-" + commit
    }

    /// The child's environment: ours, with LD_PRELOAD set to the peer's library or removed, and
    /// SLAB_CPU_LAYER set for slab-fallback or removed (so a stray value cannot change the mode).
    static func environment(library: String?, allocator: AllocatorID) -> [String] {
        var env = ProcessInfo.processInfo.environment
        env["LD_PRELOAD"] = library
        env["SLAB_CPU_LAYER"] = allocator.slabCPULayer
        return env.map { "\($0.key)=\($0.value)" }.sorted()
    }

    /// Runs one cell in a child and turns whatever happened into a CellResult.
    public func runCell(_ cell: CellParameters, library: String?) -> CellResult {
        let json = String(decoding: try! JSONEncoder().encode(cell), as: UTF8.self)
        let outcome = ChildProcess.run(executable: executable, arguments: ["--child", json],
                                       environment: Self.environment(library: library, allocator: cell.allocator),
                                       timeout: options.timeout, interrupt: interrupt)
        return Self.result(of: outcome, for: cell, timeout: options.timeout)
    }

    /// What a finished child means for its cell: its CellResult, or a failure naming the cause.
    /// Shared with `bench instructions`, whose children run under valgrind.
    static func result(of outcome: ChildOutcome, for cell: CellParameters, timeout: Double) -> CellResult {
        func failure(_ status: CellResult.Status, _ message: String) -> CellResult {
            CellResult(parameters: cell, status: status, message: message, repetitions: [], allocatorVersion: nil)
        }
        let tail = outcome.stderrTail
        let withTail: (String) -> String = { tail.isEmpty ? $0 : $0 + "; stderr: " + tail }
        switch outcome.ending {
        case .spawnFailed(let m): return failure(.failed, "could not launch the child: \(m)")
        case .interrupted: return failure(.failed, "interrupted")
        case .timedOut: return failure(.timeout, withTail("timed out after \(TextReport.duration(timeout)) (child killed)"))
        case .signaled(let s): return failure(.failed, withTail("child killed by \(ChildProcess.signalName(s))"))
        case .exited(let code) where code != 0: return failure(.failed, withTail("child exited with status \(code)"))
        case .exited: break
        }
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        guard var result = try? decoder.decode(CellResult.self, from: Data(outcome.stdout)) else {
            var shown = String(decoding: outcome.stdout.prefix(120), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            if shown.isEmpty { shown = "(nothing)" }
            return failure(.failed, withTail("unreadable result from the child: \(shown)"))
        }
        guard result.parameters == cell else {
            return failure(.failed, "the child reported a different cell: \(result.parameters)")
        }
        if result.status == .ok && result.repetitions.isEmpty {
            result.status = .failed
            result.message = result.message ?? "the child reported no repetitions"
        }
        return result
    }
}
