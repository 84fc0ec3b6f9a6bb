// The child's side of a cell: `bench --child '<json CellParameters>'`.
//
// The parent launched us with the allocator already in place (LD_PRELOAD for a peer, nothing for
// glibc and the slab). We run the cell, and write one JSON CellResult to what was stdout when we
// started. Anything else that writes to stdout while the cell runs goes to stderr instead (fd 1 is
// pointed at fd 2 first), so a stray print cannot corrupt the result.
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Harness

/// The workloads the runner can launch: the real catalog, or a fake one in tests.
public struct BenchCatalog: Sendable {
    public var workloads: [WorkloadSpec]
    public var run: @Sendable (CellParameters) -> CellResult

    public init(workloads: [WorkloadSpec], run: @escaping @Sendable (CellParameters) -> CellResult) {
        self.workloads = workloads
        self.run = run
    }

    /// The suite's workloads (Workloads/WorkloadCatalog.swift).
    public static var standard: BenchCatalog {
        BenchCatalog(workloads: WorkloadCatalog.all, run: { WorkloadCatalog.run($0) })
    }

    /// Real and hidden workloads by name.
    public func spec(named name: String) -> WorkloadSpec? {
        workloads.first { $0.name == name } ?? HiddenWorkload(rawValue: name)?.spec
    }
}

/// Test-only workloads, run by the child itself and never listed: they let the tests (and anyone
/// checking the runner) produce a crash, a hang, garbage output, a non-zero exit or a quick
/// synthetic result, without touching the real workloads.
public enum HiddenWorkload: String, CaseIterable, Sendable {
    /// abort(): the child dies of SIGABRT.
    case crash = "_crash"
    /// Sleeps forever: the runner's timeout must kill it.
    case hang = "_hang"
    /// Prints something that is not JSON and exits 0.
    case garbage = "_garbage"
    /// Exits with status 3 after a message on stderr.
    case exit = "_exit"
    /// A tiny real malloc/free loop with synthetic latency and RSS series: exercises every report.
    case fake = "_fake"

    var spec: WorkloadSpec {
        // One-thread specs: the runner's tests count one child per cell (thread cells run in
        // rounds, Plan.swift, section 3).
        WorkloadSpec(name: rawValue, summary: "runner test: \(self)", measuresLatency: self == .fake,
                     usesThreads: false)
    }
}

public enum ChildCell {
    /// Runs the cell described by `json` and returns the process's exit status.
    public static func main(json: String, catalog: BenchCatalog) -> Int32 {
        let parameters: CellParameters
        do {
            parameters = try JSONDecoder().decode(CellParameters.self, from: Data(json.utf8))
        } catch {
            writeStandardError("bench --child: cannot decode the cell parameters: \(error)\n")
            return 2
        }
        // Keep the real stdout for the result; send everything else to stderr.
        fflush(nil)
        let resultFD = dup(1)
        dup2(2, 1)

        var result: CellResult
        if let hidden = HiddenWorkload(rawValue: parameters.workload) {
            result = runHidden(hidden, parameters, resultFD: resultFD)
        } else {
            result = catalog.run(parameters)
            checkPreload(&result)
            // A cell with threads says whether it had both CPUs (SuiteRunner.swift, section 4).
            if result.status == .ok, parameters.countScale == nil, let spec = catalog.spec(named: parameters.workload),
               spec.runsSeveralThreads {
                result.canaryNanoseconds = TwoCPUCanary.measure()
            }
        }
        fflush(nil)

        let encoder = JSONEncoder()
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        guard let data = try? encoder.encode(result) else {
            writeStandardError("bench --child: cannot encode the result\n")
            return 1
        }
        guard writeAll([UInt8](data) + [UInt8(ascii: "\n")], to: resultFD) == nil else { return 1 }
        close(resultFD)
        return 0
    }

    /// A figure is only honest if the allocator we name is the one that served malloc: a peer must
    /// be loaded (its version entry point resolves; for a `preload:` library, it must be the object
    /// that defines malloc), and glibc, slab and kmalloc cells must have no peer loaded.
    static func checkPreload(_ result: inout CellResult) {
        guard result.status == .ok else { return }
        let a = result.parameters.allocator
        if let spec = a.preloadSpec {
            let library = AllocatorVersion.realPath(spec.path)
            let provider = AllocatorVersion.mallocProvider()
            if provider != library {
                result.status = .failed
                result.message = "\(a.name) does not serve malloc in the child: malloc comes from \(provider ?? "an object the dynamic linker cannot name"), not from \(spec.path) (the library defines no malloc, or LD_PRELOAD did not reach the child)"
            }
        } else if a.preload != nil {
            if AllocatorVersion.current(for: a) == nil {
                result.status = .failed
                result.message = "\(a.rawValue) is not loaded in the child (LD_PRELOAD of \(a.preload!.library) had no effect)"
            }
        } else if let stray = AllocatorID.builtIn.first(where: { $0.preload != nil && AllocatorVersion.current(for: $0) != nil }) {
            result.status = .failed
            result.message = "\(stray.rawValue) is loaded in a \(a.rawValue) cell (LD_PRELOAD leaked into the child?)"
        } else if a == .slabFallback, let v = result.allocatorVersion, !v.contains("mode=fallback") {
            result.status = .failed
            result.message = "slab-fallback ran in another mode (\(v)): SLAB_CPU_LAYER=fallback did not reach the child"
        }
    }

    static func runHidden(_ w: HiddenWorkload, _ p: CellParameters, resultFD: Int32) -> CellResult {
        switch w {
        case .crash:
            writeStandardError("_crash: aborting on purpose\n")
            // SIGABRT's default action first: a handler (the Swift runtime's backtracer, which
            // under AddressSanitizer ends the process with status 1) must not turn the signal
            // into an exit.
            signal(SIGABRT, SIG_DFL)
            abort()
        case .hang:
            while true { sleep(1000) }
        case .garbage:
            _ = "this is not JSON\n".withCString { write(resultFD, $0, 17) }
            exit(0)
        case .exit:
            writeStandardError("_exit: exiting with status 3 on purpose\n")
            exit(3)
        case .fake:
            return fakeResult(p)
        }
    }

    /// A real, small malloc/free loop (so the figures are plausible), with made-up latencies and
    /// an RSS series shaped like a sawtooth.
    static func fakeResult(_ p: CellParameters) -> CellResult {
        var reps: [Repetition] = []
        let ops = p.quick ? 20_000 : 200_000
        for r in 0..<max(p.repetitions, 1) {
            let t0 = monotonicNanoseconds()
            var sink = 0
            for _ in 0..<ops {
                let q = malloc(p.size)!
                q.storeBytes(of: UInt8(truncatingIfNeeded: sink), as: UInt8.self)
                sink &+= Int(bitPattern: q) & 1
                free(q)
            }
            let elapsed = max(seconds(from: t0, to: monotonicNanoseconds()), 1e-9)
            let series = (0..<20).map { i in
                RSSPoint(seconds: Double(i) * 0.01, rssBytes: (8 + (i % 5) * 4) << 20, liveBytes: ((i % 5) * 4) << 20)
            }
            reps.append(Repetition(
                ops: ops + (sink & 0), seconds: elapsed,
                latency: LatencySummary(p50: 20 + Double(r), p99: 60, p999: 200, max: 5000, samples: 1000),
                peakRSSBytes: 8 << 20, peakLiveBytes: p.size * 100, rssAfterBytes: 8 << 20, rssSeries: series))
        }
        return CellResult(parameters: p, status: .ok, message: nil, repetitions: reps,
                          allocatorVersion: AllocatorVersion.current(for: p.allocator))
    }
}
