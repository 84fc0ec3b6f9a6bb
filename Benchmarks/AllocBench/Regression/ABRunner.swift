// `bench ab`: the base and the head measured side by side, interleaved, on one machine.
//
// 1. Why interleave
// -----------------
//   Machines of one kind differ 1.5x in absolute speed, and one machine drifts 10-20% within an
//   hour, so a wall-clock comparison is only fair between two builds measured at the same time.
//   Each sample is one child process running one cell (a warm-up and `repetitions` timed
//   repetitions; the sample is their median). Samples alternate A B B A A B B A ... and cells
//   rotate inside each round, so a drift of the machine falls on both sides alike and the
//   samples are independent draws of "one process of this build, now": exactly what the rank
//   test assumes. `bench compare` then uses the tight threshold, with no between-run allowance.
//
// 2. How many samples
// -------------------
//   `ABPlan.defaultSamples` per side and cell, chosen from A/A runs of the gate's cells on this
//   machine kind (README, "Regression gate"): the per-process spread of the medians gives the
//   number of samples for which a 10% slowdown has its whole 95% interval beyond the 5%
//   threshold, with Holm's correction over the gated cells, in at least 90% of trials.
import Foundation
import Harness

public struct ABOptions: Sendable {
    /// (workload, size) pairs; the slab, one thread.
    public var cells: [(workload: String, size: Int)]
    public var allocator: AllocatorID
    /// Samples (child processes) per side and cell.
    public var samples: Int
    /// Timed repetitions inside each child; the sample is their median.
    public var repetitions: Int
    public var timeout: Double

    public init(cells: [(workload: String, size: Int)] = ABPlan.gateCells, allocator: AllocatorID = .slab,
                samples: Int = ABPlan.defaultSamples, repetitions: Int = ABPlan.repetitions,
                timeout: Double = SuitePlan.defaultTimeout) {
        self.cells = cells
        self.allocator = allocator
        self.samples = samples
        self.repetitions = repetitions
        self.timeout = timeout
    }
}

public enum ABPlan {
    /// The hot one-thread cells of the time gate: the fast path (pair), both batch orders that
    /// run the magazine ladders, random replacement, and constructed objects.
    public static let gateCells: [(workload: String, size: Int)] = [
        ("pair", 20), ("batch-fifo-1000", 20), ("batch-random-1000", 20), ("steady-random", 20), ("ctor-256", 256),
    ]
    public static let defaultSamples = 24
    public static let repetitions = 3

    /// "w:size,w:size" -> cells; a bare workload name takes 20 bytes (ctor-256 its own size).
    public static func parseCells(_ text: String, catalog: BenchCatalog) throws -> [(workload: String, size: Int)] {
        var cells: [(workload: String, size: Int)] = []
        for part in SuitePlan.split(text) {
            let pieces = part.split(separator: ":").map(String.init)
            guard let spec = catalog.spec(named: pieces[0]) else {
                throw UnknownNameError(kind: "workload", names: [pieces[0]], valid: catalog.workloads.map(\.name))
            }
            var size = spec.fixedSize ?? 20
            if pieces.count == 2 {
                guard let s = Int(pieces[1]), s > 0 else { throw InvalidValueError(description: "--cells: '\(part)': size must be a positive integer") }
                size = s
            }
            guard spec.isSingleThreaded(threads: 1) else {
                throw InvalidValueError(description: "--cells: \(spec.name) runs several threads; the A/B measures one-thread cells")
            }
            cells.append((spec.name, size))
        }
        guard !cells.isEmpty else { throw InvalidValueError(description: "--cells: empty list") }
        return cells
    }
}

public struct ABRunner {
    public var binaries: ABBinaries
    public var options: ABOptions
    public var catalog: BenchCatalog
    public var log: @Sendable (String) -> Void = writeStandardError

    public init(binaries: ABBinaries, options: ABOptions, catalog: BenchCatalog) {
        self.binaries = binaries
        self.options = options
        self.catalog = catalog
    }

    public struct Outcome {
        public var base: RunRecord
        public var head: RunRecord
    }

    /// Measures every cell on both sides, interleaved.
    public func run() -> Outcome {
        let start = monotonicSeconds()
        let date = Date()
        let machine = Machine.probe(allocators: [options.allocator], date: date)
        let cells = options.cells.map {
            CellParameters(allocator: options.allocator, workload: $0.workload, size: $0.size, threads: 1,
                           repetitions: options.repetitions, quick: false)
        }
        var samples: [[[Repetition]]] = Array(repeating: Array(repeating: [], count: cells.count), count: 2)
        var failures: [[String?]] = Array(repeating: Array(repeating: nil, count: cells.count), count: 2)
        var versions: [[String?]] = Array(repeating: Array(repeating: nil, count: cells.count), count: 2)
        let total = options.samples * cells.count * 2
        var done = 0
        for round in 0..<options.samples {
            for (c, cell) in cells.enumerated() {
                // A B in even rounds, B A in odd ones: A B B A A B B A ...
                let order = (round + c) % 2 == 0 ? [0, 1] : [1, 0]
                for side in order {
                    done += 1
                    guard failures[side][c] == nil else { continue }
                    let result = sample(cell, executable: side == 0 ? binaries.base : binaries.head)
                    if result.status != .ok {
                        failures[side][c] = result.message ?? result.status.rawValue
                        log("[\(done)/\(total)] \(side == 0 ? "base" : "head") \(cell.workload) \(cell.size) B: FAILED \(result.message ?? "")\n")
                        continue
                    }
                    versions[side][c] = result.allocatorVersion
                    let reps = result.repetitions.sorted { $0.nsPerOp < $1.nsPerOp }
                    samples[side][c].append(reps[reps.count / 2])
                }
            }
            log("bench ab: round \(round + 1)/\(options.samples) done (\(TextReport.duration(monotonicSeconds() - start)))\n")
        }
        func record(_ side: Int) -> RunRecord {
            var m = machine
            if side == 0 { m.commit = binaries.baseShort; m.dirty = false }
            let results = cells.indices.map { c in
                CellResult(parameters: cells[c], status: failures[side][c] == nil ? .ok : .failed,
                           message: failures[side][c], repetitions: failures[side][c] == nil ? samples[side][c] : [],
                           allocatorVersion: versions[side][c])
            }
            var r = RunRecord(runID: SuiteRunner.runID(date, commit: m.commitLabel) + (side == 0 ? "-base" : "-head"),
                              machine: m, quick: false, interrupted: false,
                              durationSeconds: monotonicSeconds() - start,
                              workloads: options.cells.compactMap { catalog.spec(named: $0.workload) }, results: results)
            r.sampling = RunRecord.samplingProcesses
            if side == 0 {
                // With REF built whole, the base ran its own harness: its versions are REF's.
                for i in r.workloads.indices {
                    r.workloads[i].version = binaries.baseVersion(of: r.workloads[i].name, today: r.workloads[i].version)
                }
            }
            return r
        }
        return Outcome(base: record(0), head: record(1))
    }

    func sample(_ cell: CellParameters, executable: String) -> CellResult {
        var runner = SuiteRunner(
            options: SuiteOptions(allocators: [cell.allocator], workloads: [cell.workload], repetitions: cell.repetitions,
                                  quick: false, timeout: options.timeout, outputDirectory: ""),
            catalog: catalog, executable: executable, interrupt: nil)
        runner.log = { _ in }
        return runner.runCell(cell, library: nil)
    }
}
