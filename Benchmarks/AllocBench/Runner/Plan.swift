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
//
// 2. Order
// --------
//   workload, size, threads, then allocator innermost: the allocators of one cell run back to
//   back, so a slow drift of the machine (another tenant, thermal) moves them together and the
//   ratios between them, which are what the reports print, stay honest.

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
                referenceAllocators: [AllocatorID] = [], workloads: [String],
                sizes: [Int]? = nil, threads: [Int]? = nil, repetitions: Int, quick: Bool, timeout: Double,
                outputDirectory: String) {
        self.allocators = allocators
        self.mixedSizeAllocators = mixedSizeAllocators
        self.referenceAllocators = referenceAllocators
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
        guard spec.mixedSizes == true else {
            guard SuitePlan.referenceWorkloads.contains(spec.name) else { return allocators }
            return allocators + referenceAllocators.filter { !allocators.contains($0) }
        }
        return (mixedSizeAllocators ?? allocators).filter(\.servesAnySize)
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
