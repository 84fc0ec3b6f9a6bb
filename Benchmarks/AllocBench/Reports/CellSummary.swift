// One cell reduced to medians with spread: what every table and chart prints.

public struct CellKey: Hashable, Sendable, Comparable {
    public var workload: String
    public var size: Int
    public var threads: Int

    public init(workload: String, size: Int, threads: Int) {
        self.workload = workload
        self.size = size
        self.threads = threads
    }

    public static func < (a: CellKey, b: CellKey) -> Bool {
        (a.workload, a.size, a.threads) < (b.workload, b.size, b.threads)
    }
}

public struct CellSummary: Sendable {
    public var allocator: AllocatorID
    public var key: CellKey
    public var status: CellResult.Status
    public var message: String?
    /// ns per op over the repetitions.
    public var nsPerOp: Spread?
    public var mopsPerSecond: Spread?
    public var peakRSSBytes: Spread?
    public var rssAfterBytes: Spread?
    /// RSS once the last drain was done, before its release call (Repetition.rssDrainedBytes).
    public var rssDrainedBytes: Spread?
    /// The release call the cell made (sawtooth), as the child reported it.
    public var releaseCall: ReleaseCall?
    /// The sawtooth's phases over the repetitions, seconds (Repetition.cyclePhases).
    public var fillSeconds: Spread?
    public var drainSeconds: Spread?
    public var releaseSeconds: Spread?
    public var rssOverhead: Spread?
    /// Medians over the repetitions of each percentile.
    public var p50: Double?
    public var p99: Double?
    public var p999: Double?
    public var max: Double?
    /// Ops each latency sample timed together (nil: single ops, or no latency).
    public var latencyGroupOps: Int?

    public init(_ result: CellResult) {
        let p = result.parameters
        allocator = p.allocator
        key = CellKey(workload: p.workload, size: p.size, threads: p.threads)
        status = result.status == .ok && result.repetitions.isEmpty ? .failed : result.status
        message = result.message
        let reps = result.status == .ok ? result.repetitions : []
        nsPerOp = Spread(reps.map(\.nsPerOp))
        mopsPerSecond = Spread(reps.map(\.mopsPerSecond))
        peakRSSBytes = Spread(reps.map { Double($0.peakRSSBytes) })
        rssAfterBytes = Spread(reps.compactMap { $0.rssAfterBytes.map(Double.init) })
        rssDrainedBytes = Spread(reps.compactMap { $0.rssDrainedBytes.map(Double.init) })
        releaseCall = result.releaseCall
        let phases = reps.compactMap(\.cyclePhases)
        fillSeconds = Spread(phases.map(\.fill))
        drainSeconds = Spread(phases.map(\.drain))
        releaseSeconds = Spread(phases.map(\.release))
        rssOverhead = Spread(reps.compactMap(\.rssOverhead))
        let lat = reps.compactMap(\.latency)
        p50 = Spread(lat.map(\.p50))?.median
        p99 = Spread(lat.map(\.p99))?.median
        p999 = Spread(lat.map(\.p999))?.median
        max = Spread(lat.map(\.max))?.median
        latencyGroupOps = lat.lazy.compactMap(\.groupOps).first
    }
}

/// All cells of a run, indexed for the reports.
public struct RunSummary: Sendable {
    public var cells: [CellKey: [AllocatorID: CellSummary]] = [:]
    /// Allocators in report order (AllocatorID.reportOrder), only those that appear in the run.
    public var allocators: [AllocatorID]
    /// Workloads in the order they first appear.
    public var workloads: [String]

    public init(_ record: RunRecord) {
        var seenWorkloads: [String] = []
        for r in record.results {
            let s = CellSummary(r)
            cells[s.key, default: [:]][s.allocator] = s
            if !seenWorkloads.contains(s.key.workload) { seenWorkloads.append(s.key.workload) }
        }
        allocators = record.allocators
        workloads = seenWorkloads
    }

    public func keys(of workload: String) -> [CellKey] { cells.keys.filter { $0.workload == workload }.sorted() }

    /// Median ns/op per allocator in one cell (only cells that succeeded).
    public func medians(_ key: CellKey) -> [AllocatorID: Double] {
        var m: [AllocatorID: Double] = [:]
        for (a, s) in cells[key] ?? [:] { if s.status == .ok, let v = s.nsPerOp?.median { m[a] = v } }
        return m
    }

    /// The size a summary row shows: 20 bytes when measured (the suite's reference size), else the smallest.
    public func headlineSize(of workload: String) -> Int? {
        let sizes = Set(keys(of: workload).map(\.size))
        return sizes.contains(20) ? 20 : sizes.min()
    }

    /// Slab / best peer ratio of median ns/op (below 1: the slab is faster); with `slab:
    /// .kmalloc`, kmalloc's.
    public func slabRatioToBestPeer(_ key: CellKey, slab: AllocatorID = .slab) -> Double? {
        let m = medians(key)
        return Ratio.of(m[slab], to: Ratio.bestPeer(in: m)?.value)
    }
}
