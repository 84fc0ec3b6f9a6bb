// What one run of the suite produced: the machine it ran on, the workloads' descriptions and
// every cell's result. `latest.json` is this record; the CSV, text and SVG reports are views of it.

/// A workload: what the catalog (Workloads/WorkloadCatalog.swift) lists, the runner plans and
/// every run file records, so that a file read later says what each workload did when it ran.
public struct WorkloadSpec: Codable, Sendable, Equatable {
    public var name: String
    public var summary: String
    /// The workload samples single-operation latencies (p50/p99/p99.9/max).
    public var measuresLatency: Bool
    /// The workload runs `threads` threads; otherwise it always runs on one.
    public var usesThreads: Bool
    /// The one object size the workload always uses whatever `size` says (ctor-256 is a 256-byte
    /// object), if any: the runner plans it once, at that size. A mixed-size workload records its
    /// largest request here.
    public var fixedSize: Int?
    /// The version of the workload's work: bump it in the same commit as any change to what the
    /// workload does (op counts, order, touching rule, set-up), so that `bench compare` never
    /// reads a harness change as an allocator change. Results of different versions measured
    /// different work, and `bench compare` refuses to judge them against each other.
    public var version: Int
    /// The fewest threads the workload runs whatever `threads` says (2 for the producer/consumer
    /// workloads: a producer and a consumer). With `usesThreads` it tells one-thread cells, the
    /// ones steady enough to gate on, from the rest.
    public var minimumThreads: Int
    /// True for a workload that allocates many sizes (larson-mixed, batch-mixed): only allocators
    /// that serve any size run it. Absent (nil) for the fixed-size workloads, so that their
    /// descriptions in result files are unchanged.
    public var mixedSizes: Bool?

    public init(name: String, summary: String, measuresLatency: Bool = false, usesThreads: Bool = false,
                fixedSize: Int? = nil, version: Int = 1, minimumThreads: Int = 1, mixedSizes: Bool = false) {
        self.mixedSizes = mixedSizes ? true : nil
        self.name = name
        self.summary = summary
        self.measuresLatency = measuresLatency
        self.usesThreads = usesThreads
        self.fixedSize = fixedSize
        self.version = version
        self.minimumThreads = minimumThreads
    }

    /// True when a cell of this workload runs on one thread at `threads`.
    public func isSingleThreaded(threads: Int) -> Bool {
        minimumThreads == 1 && (!usesThreads || threads == 1)
    }

    /// True when the workload runs more than one thread at some thread count (prodcons-1x1 always
    /// runs two, whatever its thread count says).
    public var runsSeveralThreads: Bool { usesThreads || !isSingleThreaded(threads: 1) }
}

/// The machine and the software versions a run measured.
public struct MachineInfo: Codable, Sendable, Equatable {
    public var cpuModel: String
    /// Online CPUs (sysconf(_SC_NPROCESSORS_ONLN)).
    public var cores: Int
    /// `uname -srvm`.
    public var kernel: String
    /// gnu_get_libc_version().
    public var glibc: String
    /// First line of `swift --version`, or the compiler the bench was built with.
    public var swift: String
    /// Short commit of the working tree (`git rev-parse --short HEAD`), "unknown" outside a repository.
    public var commit: String
    /// The working tree had uncommitted changes to tracked files.
    public var dirty: Bool
    /// The slab's per-CPU layer mode on this machine: rseq, fallback (or none).
    public var slabMode: String
    /// Allocator name -> version, from the child (CellResult.allocatorVersion) or dpkg-query.
    public var allocatorVersions: [String: String]
    /// Start of the run, UTC, ISO 8601.
    public var date: String

    public init(cpuModel: String, cores: Int, kernel: String, glibc: String, swift: String, commit: String,
                dirty: Bool, slabMode: String, allocatorVersions: [String: String], date: String) {
        self.cpuModel = cpuModel
        self.cores = cores
        self.kernel = kernel
        self.glibc = glibc
        self.swift = swift
        self.commit = commit
        self.dirty = dirty
        self.slabMode = slabMode
        self.allocatorVersions = allocatorVersions
        self.date = date
    }

    /// The commit with a "-dirty" suffix when the tree had changes.
    public var commitLabel: String { dirty ? commit + "-dirty" : commit }
}

/// Everything one run produced.
public struct RunRecord: Codable, Sendable {
    /// What kind of bench file this is ("run"), so that a reader never mistakes one kind for another.
    public var kind: String = RunRecord.kind
    /// The file format's version; readers refuse versions they do not know.
    public var schemaVersion: Int = RunRecord.schemaVersion
    public static let kind = "run"
    /// 2: workload versions, kind and schema fields (version 1 had neither and is not read).
    public static let schemaVersion = 2
    /// `<UTC date>-<commit>`, the same in every CSV row of the run.
    public var runID: String
    public var machine: MachineInfo
    public var quick: Bool
    /// The run was stopped by Ctrl-C before every cell ran.
    public var interrupted: Bool
    public var durationSeconds: Double
    /// How the repetitions of a cell were taken: "repetitions" (all in one child process, after one
    /// warm-up: the ordinary run) or "processes" (one child process per sample, the two sides of an
    /// A/B interleaved). Samples of the first kind share their process and their moment, so they
    /// understate the drift between two runs; `bench compare` adds its between-run allowance then.
    public var sampling: String = RunRecord.samplingRepetitions
    public static let samplingRepetitions = "repetitions"
    public static let samplingProcesses = "processes"
    public var workloads: [WorkloadSpec]
    public var results: [CellResult]

    public init(runID: String, machine: MachineInfo, quick: Bool, interrupted: Bool, durationSeconds: Double,
                workloads: [WorkloadSpec], results: [CellResult]) {
        self.runID = runID
        self.machine = machine
        self.quick = quick
        self.interrupted = interrupted
        self.durationSeconds = durationSeconds
        self.workloads = workloads
        self.results = results
    }

    /// The allocator's version: what its child reported, else what the machine block recorded.
    public func version(of allocator: AllocatorID) -> String? {
        if let v = results.first(where: { $0.parameters.allocator == allocator && $0.allocatorVersion != nil })?
            .allocatorVersion { return v }
        return machine.allocatorVersions[allocator.rawValue]
    }

    public func spec(of workload: String) -> WorkloadSpec? { workloads.first { $0.name == workload } }

    /// A cell's size as reports print it: "20", or "8-1024" for a mixed-size workload (whose cells
    /// record their largest request).
    public func sizeLabel(_ workload: String, _ size: Int) -> String {
        spec(of: workload)?.mixedSizes == true ? "8-\(size)" : String(size)
    }

    /// The allocators with a cell in this run, built-in ones first (AllocatorID.reportOrder).
    public var allocators: [AllocatorID] { AllocatorID.reportOrder(results.map(\.parameters.allocator)) }
}
