// Which cells a run measures, and in which order.
//
// 1. Defaults (the budget)
// ------------------------
//   The default suite must finish in under 5 minutes on a 2-core machine, with every allocator.
//   The size-sweep workloads (pair, LIFO batches of 100 and 1000, thrash) run at every default
//   size; every other workload at 20 and 256 bytes; a workload with a fixed size (ctor-256) once.
//   Thread workloads run at 1, 2, 4, ... up to 4x the online CPUs. Measured here: every workload
//   at every size took 290 s with all six allocators, too close to the limit; this plan about 240. `--quick` runs every workload once at 20 bytes (threads 1 and 2) with
//   the workloads' quick scale and 3 repetitions.
//   kmalloc is not in the default allocators of the fixed-size workloads: a seventh column there
//   is 65 more cells, about 40 s, which would leave the suite too near its limit. It is where it
//   is the subject, the mixed-size workloads (larson-mixed, batch-mixed): with --allocators left
//   out they run glibc, jemalloc, mimalloc, tcmalloc and kmalloc, 25 cells. A typed cache
//   (slab, slab-nocpu, slab-fallback) serves one size and has no cell in them, even when named.
//   slab-nocpu (one lock per cache) runs the one-thread workloads only in the default suite: in
//   the thread workloads it took 73 of their 113 s of work (130-220 ns an op under contention),
//   and two-vCPU load that long makes the host throttle the rest (Plan.swift, section 3). Named
//   with --allocators, it runs everywhere.
//
// 2. Order
// --------
//   workload, size, threads, then allocator innermost: the allocators of one cell run back to
//   back, so a slow drift of the machine (another tenant, thermal) moves them together and the
//   ratios between them, which are what the reports print, stay honest.
//
// 3. Thread cells in rounds
// -------------------------
//   A cell with threads needs both vCPUs, and on these machines the host takes one away now and
//   then, for a minute or two: every two-thread cell measured then reads 2-5x slower, for every
//   allocator alike, while one-thread cells do not move (five back-to-back runs of prodcons and
//   larson: runs 3 and 4 slow throughout, 1, 2 and 5 within a few percent of each other). Such a
//   spell, starting in the middle of a cell's allocators, used to land on some of them and not on
//   others, and a ratio to the best peer then compared a quiet machine with a busy one. So a
//   thread cell's repetitions run as rounds, one child process per repetition, all the
//   allocators of the cell in each round, forwards then backwards (A B C, C B A, ...), and round
//   r of every thread cell before round r + 1 of any: the five rounds of a cell are spread over
//   the whole thread part of the run (about a minute and a half of the default suite), so a
//   spell falls on one or two rounds of each cell, the same ones for all its allocators, and the
//   median of the rounds leaves it out; a throttled host, which lasts minutes, is caught by the
//   canary each round's child ends with (SuiteRunner.swift, section 4). Each round's child makes
//   its own warm-up, and its threads are bound to the CPUs in turn (Threaded.swift). One-thread cells keep one child for
//   all their repetitions, in their place.

import Foundation

public struct SuiteOptions: Sendable {
    public var allocators: [AllocatorID]
    /// The allocators of the mixed-size workloads, when they differ from `allocators` (the
    /// default suite's: `AllocatorID.defaultMixedSizeSuite`); nil: `allocators`. Either way the
    /// typed caches are left out of them.
    public var mixedSizeAllocators: [AllocatorID]?
    /// Allocators added to the workloads in `SuitePlan.referenceWorkloads` only (the default
    /// suite's: `AllocatorID.defaultReferenceSuite`); empty: none.
    public var referenceAllocators: [AllocatorID] = []
    /// Allocators left out of the workloads that run more than one thread (the default suite's:
    /// `AllocatorID.defaultOneThreadOnly`); empty: none.
    public var oneThreadOnlyAllocators: [AllocatorID] = []
    public var workloads: [String]
    /// nil: the per-workload defaults.
    public var sizes: [Int]?
    /// nil: the defaults for thread workloads (one-thread workloads always run at 1).
    public var threads: [Int]?
    public var repetitions: Int
    public var quick: Bool
    /// Per-cell wall-clock limit, seconds.
    public var timeout: Double
    public var outputDirectory: String

    public init(allocators: [AllocatorID], mixedSizeAllocators: [AllocatorID]? = nil,
                referenceAllocators: [AllocatorID] = [], oneThreadOnlyAllocators: [AllocatorID] = [], workloads: [String],
                sizes: [Int]? = nil, threads: [Int]? = nil, repetitions: Int, quick: Bool, timeout: Double,
                outputDirectory: String) {
        self.allocators = allocators
        self.mixedSizeAllocators = mixedSizeAllocators
        self.referenceAllocators = referenceAllocators
        self.oneThreadOnlyAllocators = oneThreadOnlyAllocators
        self.workloads = workloads
        self.sizes = sizes
        self.threads = threads
        self.repetitions = repetitions
        self.quick = quick
        self.timeout = timeout
        self.outputDirectory = outputDirectory
    }
}

extension SuiteOptions {
    /// Every allocator some cell may use: `allocators`, then the mixed-size workloads' others.
    public var allAllocators: [AllocatorID] {
        var all = allocators
        for a in (mixedSizeAllocators ?? []) + referenceAllocators where !all.contains(a) { all.append(a) }
        return all
    }

    /// The allocators of one workload's cells.
    public func allocators(for spec: WorkloadSpec) -> [AllocatorID] {
        let named: [AllocatorID]
        if spec.mixedSizes == true {
            named = (mixedSizeAllocators ?? allocators).filter(\.servesAnySize)
        } else if SuitePlan.referenceWorkloads.contains(spec.name) {
            named = allocators + referenceAllocators.filter { !allocators.contains($0) }
        } else {
            named = allocators
        }
        return spec.runsSeveralThreads ? named.filter { !oneThreadOnlyAllocators.contains($0) } : named
    }
}

/// A name on the command line that is not one we know. `description` lists the valid names.
public struct UnknownNameError: Error, CustomStringConvertible, Equatable {
    public var kind: String
    public var names: [String]
    public var valid: [String]

    public var description: String {
        let quoted = names.map { "'\($0)'" }.joined(separator: ", ")
        return "unknown \(kind)\(names.count == 1 ? "" : "s") \(quoted); valid \(kind)s: \(valid.joined(separator: ", "))"
    }
}

public enum SuitePlan {
    public static let defaultSizes = [16, 20, 64, 256, 1024]
    /// Sizes for thread workloads and expensive one-thread workloads.
    public static let reducedSizes = [20, 256]
    public static let quickSizes = [20]
    public static let defaultRepetitions = 5
    public static let quickRepetitions = 3
    public static let defaultTimeout = 60.0
    public static let defaultOutput = "results"

    /// 1, 2, 4, ... up to 4x the online CPUs (and 4x the CPUs itself): up to 2x covers one
    /// thread per core and one per hyperthread-sized share, 4x is where a per-CPU cache must not
    /// collapse (threads preempted inside their critical sections).
    public static func defaultThreads(cores: Int) -> [Int] {
        let top = max(2, 4 * cores)
        var t: [Int] = []
        var n = 1
        while n < top { t.append(n); n *= 2 }
        t.append(top)
        return t
    }

    public static func quickThreads(cores: Int) -> [Int] { [1, max(2, cores)] }

    /// The workloads run at every default size; the others (and any workload added later) run at
    /// `reducedSizes`, which keeps the default suite inside its budget.
    public static let sizeSweepWorkloads: Set<String> = ["pair", "batch-lifo-100", "batch-lifo-1000", "thrash"]
    /// The workloads the reference allocators (`SuiteOptions.referenceAllocators`) join.
    public static let referenceWorkloads: Set<String> = ["pair"]

    public static func sizes(for spec: WorkloadSpec, options: SuiteOptions) -> [Int] {
        if let fixed = spec.fixedSize { return [fixed] }
        if let s = options.sizes { return s }
        if options.quick { return quickSizes }
        return !spec.usesThreads && sizeSweepWorkloads.contains(spec.name) ? defaultSizes : reducedSizes
    }

    public static func threads(for spec: WorkloadSpec, options: SuiteOptions, cores: Int) -> [Int] {
        guard spec.usesThreads else { return [1] }
        if let t = options.threads { return t }
        return options.quick ? quickThreads(cores: cores) : defaultThreads(cores: cores)
    }

    /// Every cell of the run, in run order (see 2. Order).
    public static func cells(_ options: SuiteOptions, catalog: BenchCatalog, cores: Int) -> [CellParameters] {
        var cells: [CellParameters] = []
        for name in options.workloads {
            guard let spec = catalog.spec(named: name) else { continue }
            for size in sizes(for: spec, options: options) {
                for t in threads(for: spec, options: options, cores: cores) {
                    for a in options.allocators(for: spec) {
                        cells.append(CellParameters(allocator: a, workload: name, size: size, threads: t,
                                                    repetitions: options.repetitions, quick: options.quick))
                    }
                }
            }
        }
        return cells
    }

    // MARK: Rounds (see 3.)

    /// One child process of a run: `cell` with the repetitions this child measures, and which
    /// round of how many it is (0 of 1 for a cell measured in one child).
    public struct Launch: Equatable, Sendable {
        public var cell: CellParameters
        public var round: Int
        public var rounds: Int
    }

    /// The children that measure `cells` (in run order, allocators innermost), in the order they
    /// run. The cells of one size and thread count of a workload that runs more than one thread
    /// (prodcons-1x1 too, whose thread count is always 2) are measured in `repetitions` rounds of
    /// one repetition each, the allocators' order alternating; and round r of every such cell runs
    /// before round r + 1 of any, all of them where the first would have run, so that the rounds
    /// of one cell lie far apart in time. Every other cell runs as it is, in its place.
    public static func launches(_ cells: [CellParameters], catalog: BenchCatalog) -> [Launch] {
        // Runs of cells sharing workload, size and thread count, each with its number of rounds.
        var groups: [(cells: ArraySlice<CellParameters>, rounds: Int)] = []
        var i = 0
        while i < cells.count {
            let c = cells[i]
            var j = i + 1
            while j < cells.count, cells[j].workload == c.workload, cells[j].size == c.size, cells[j].threads == c.threads {
                j += 1
            }
            let threaded = catalog.spec(named: c.workload)?.runsSeveralThreads == true && c.countScale == nil
            groups.append((cells[i..<j], threaded ? max(1, c.repetitions) : 1))
            i = j
        }
        let threaded = groups.filter { $0.rounds > 1 }
        var launches: [Launch] = []
        var placed = false
        for g in groups {
            guard g.rounds > 1 else {
                launches += g.cells.map { Launch(cell: $0, round: 0, rounds: 1) }
                continue
            }
            if placed { continue }
            placed = true
            for r in 0..<threaded.map(\.rounds).max()! {
                for t in threaded where r < t.rounds {
                    for var cell in (r % 2 == 0 ? Array(t.cells) : t.cells.reversed()) {
                        cell.repetitions = 1
                        launches.append(Launch(cell: cell, round: r, rounds: t.rounds))
                    }
                }
            }
        }
        return launches
    }

    /// The results of `cells` from those of their launches (the first `results.count` of
    /// `launches`: fewer after Ctrl-C). A cell measured in rounds gets every round's repetitions,
    /// in round order; a round that did not end `ok` gives the cell its status and message (which
    /// names the round), with no repetitions; a cell whose rounds did not all run is left out.
    public static func merge(_ results: [CellResult], of launches: [Launch], into cells: [CellParameters]) -> [CellResult] {
        var expected: [CellKey: Int] = [:]
        for l in launches { expected[CellKey(l.cell), default: 0] += 1 }
        var got: [CellKey: [(round: Int, rounds: Int, result: CellResult)]] = [:]
        for (l, r) in zip(launches, results) { got[CellKey(l.cell), default: []].append((l.round, l.rounds, r)) }
        var merged: [CellResult] = []
        for cell in cells {
            let key = CellKey(cell)
            guard let parts = got[key], parts.count == expected[key], let first = parts.first else { continue }
            guard first.rounds > 1 else {
                merged.append(first.result)
                continue
            }
            let ordered = parts.sorted { $0.round < $1.round }
            if let bad = ordered.first(where: { $0.result.status != .ok }) {
                let all = ordered.allSatisfy { $0.result.status == bad.result.status }
                let message = all ? bad.result.message : "round \(bad.round + 1) of \(bad.rounds): \(bad.result.message ?? bad.result.status.rawValue)"
                merged.append(CellResult(parameters: cell, status: bad.result.status, message: message, repetitions: [],
                                         allocatorVersion: first.result.allocatorVersion))
                continue
            }
            var result = ordered[0].result
            result.parameters = cell
            result.repetitions = ordered.flatMap(\.result.repetitions)
            merged.append(result)
        }
        return merged
    }

    /// A cell without its repetition count: what the launches of one cell share.
    struct CellKey: Hashable {
        var allocator: AllocatorID
        var workload: String
        var size: Int
        var threads: Int
        init(_ c: CellParameters) { (allocator, workload, size, threads) = (c.allocator, c.workload, c.size, c.threads) }
    }

    // MARK: Command-line lists

    /// "a,b" -> allocators; nil or empty -> the default suite (AllocatorID.defaultSuite). An item
    /// `preload:PATH[=NAME]` is any malloc-compatible shared library, checked here
    /// (PreloadLibrary.swift); two allocators may not share a name in the reports.
    public static func parseAllocators(_ list: String?) throws -> [AllocatorID] {
        guard let list, !list.isEmpty else { return AllocatorID.defaultSuite }
        var allocators: [AllocatorID] = []
        var unknown: [String] = []
        for item in split(list) {
            if item.hasPrefix(PreloadSpec.prefix) {
                allocators.append(try PreloadLibrary.allocator(item))
            } else if let a = AllocatorID(rawValue: item), a.preloadSpec == nil {
                allocators.append(a)
            } else {
                unknown.append(item)
            }
        }
        guard unknown.isEmpty else {
            throw UnknownNameError(kind: "allocator", names: unknown,
                                   valid: AllocatorID.builtIn.map(\.rawValue) + [PreloadLibrary.syntax])
        }
        var unique = Set<AllocatorID>()
        allocators = allocators.filter { unique.insert($0).inserted }
        var seen = Set<String>()
        for a in allocators where !seen.insert(a.name).inserted {
            throw InvalidValueError(description: "two allocators are named '\(a.name)' in the reports; name one with \(PreloadLibrary.syntax)")
        }
        return allocators
    }

    /// "w1,w2" -> workload names; nil or empty -> every listed workload. Hidden test workloads are
    /// accepted but never offered.
    public static func parseWorkloads(_ list: String?, catalog: BenchCatalog) throws -> [String] {
        let listed = catalog.workloads.map(\.name)
        guard let list, !list.isEmpty else { return listed }
        let names = split(list)
        let unknown = names.filter { catalog.spec(named: $0) == nil }
        guard unknown.isEmpty else { throw UnknownNameError(kind: "workload", names: unknown, valid: listed) }
        return dedup(names)
    }

    /// "16,20" -> [16, 20]; every value must be a positive integer.
    public static func parsePositiveIntegers(_ list: String, what: String) throws -> [Int] {
        var values: [Int] = []
        for part in split(list) {
            guard let v = Int(part), v > 0 else {
                throw InvalidValueError(description: "\(what): '\(part)' is not a positive integer")
            }
            if !values.contains(v) { values.append(v) }
        }
        guard !values.isEmpty else { throw InvalidValueError(description: "\(what): empty list") }
        return values
    }

    public static func split(_ list: String) -> [String] {
        list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    static func dedup(_ names: [String]) -> [String] {
        var seen = Set<String>()
        return names.filter { seen.insert($0).inserted }
    }
}

public struct InvalidValueError: Error, CustomStringConvertible {
    public var description: String
    public init(description: String) { self.description = description }
}
