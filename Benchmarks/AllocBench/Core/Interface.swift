// The contract between the suite's halves: workloads (Workloads/, Allocators/) measure one cell
// inside a child process; the runner (Runner/, Reports/) plans cells, launches children with the
// right LD_PRELOAD, collects `CellResult`s and writes the reports.
//
// Vocabulary: a *cell* is (allocator, workload, size, threads); a *repetition* is one timed run of
// a cell after warm-up; an *op* is one object allocated and freed (an alloc+free pair), so ns/op
// compares directly with NOTES.md's "malloc+free pair" figures.

/// The allocators the suite knows. Peers are loaded with LD_PRELOAD into a child process, so that
/// "glibc" really is glibc (NOTES.md: linking jemalloc would replace malloc process-wide).
public enum AllocatorID: String, CaseIterable, Codable, Sendable {
    case glibc
    case jemalloc
    case mimalloc
    case tcmalloc
    /// Our cache with the per-CPU magazine layer.
    case slab
    /// Our cache with the slab layer only (flag .noCPUCache): what the magazine layer is worth.
    case slabNoCPU = "slab-nocpu"
    /// Our cache with its per-CPU layer forced into the fallback mode (no rseq: what valgrind,
    /// `GLIBC_TUNABLES=glibc.pthread.rseq=0` and other architectures get). Not in the default
    /// suite; ask for it with `--allocators`.
    case slabFallback = "slab-fallback"

    /// The allocators a run measures when `--allocators` is not given.
    public static let defaultSuite: [AllocatorID] = [.glibc, .jemalloc, .mimalloc, .tcmalloc, .slab, .slabNoCPU]

    /// For peers: the shared library to preload, and the Debian package that installs it.
    public var preload: (library: String, debianPackage: String)? {
        switch self {
        case .jemalloc: return ("libjemalloc.so.2", "libjemalloc2")
        case .mimalloc: return ("libmimalloc.so.2", "libmimalloc2.0")
        case .tcmalloc: return ("libtcmalloc_minimal.so.4", "libgoogle-perftools4")
        case .glibc, .slab, .slabNoCPU, .slabFallback: return nil
        }
    }

    /// True for our own allocators.
    public var isSlab: Bool { self == .slab || self == .slabNoCPU || self == .slabFallback }

    /// The value of `SLAB_CPU_LAYER` the child runs with (nil: the variable is removed, so the
    /// slab picks its mode from the machine as a user's program would).
    public var slabCPULayer: String? { self == .slabFallback ? "fallback" : nil }
}

/// What a workload is asked to do in one cell.
public struct CellParameters: Codable, Sendable, Equatable {
    public var allocator: AllocatorID
    public var workload: String
    /// Object size in bytes.
    public var size: Int
    public var threads: Int
    /// Timed repetitions after warm-up.
    public var repetitions: Int
    /// Scale the work down (CI).
    public var quick: Bool
    /// Set by `bench instructions` only: run the cell in count mode under callgrind (set-up, one
    /// warm-up, then exactly one repetition with collection switched on around its measured
    /// region; see Instructions/CountedRegion.swift), at this scale; `repetitions` and `quick`
    /// are then ignored. nil, and absent from the JSON, for the timed suite, so files written
    /// before this field existed still decode and those written since are unchanged.
    public var countScale: CountScale?

    public init(allocator: AllocatorID, workload: String, size: Int, threads: Int, repetitions: Int, quick: Bool,
                countScale: CountScale? = nil) {
        self.allocator = allocator
        self.workload = workload
        self.size = size
        self.threads = threads
        self.repetitions = repetitions
        self.quick = quick
        self.countScale = countScale
    }
}

/// The op counts of a counted cell (see CellParameters.countScale).
public enum CountScale: String, Codable, Sendable {
    /// The workloads' count scale: a few seconds per cell under callgrind.
    case standard
    /// The workloads' test scale (a few thousand ops): for the unit tests.
    case test
}

/// Latency percentiles of single operations, in nanoseconds (sampled into an HDR histogram).
public struct LatencySummary: Codable, Sendable, Equatable {
    public var p50: Double
    public var p99: Double
    public var p999: Double
    public var max: Double
    public var samples: Int
}

/// One point of an RSS-over-time series (sawtooth).
public struct RSSPoint: Codable, Sendable, Equatable {
    public var seconds: Double
    public var rssBytes: Int
    public var liveBytes: Int
}

/// One timed repetition of a cell.
public struct Repetition: Codable, Sendable, Equatable {
    /// Objects allocated and freed (pairs).
    public var ops: Int
    public var seconds: Double
    public var latency: LatencySummary?
    /// Peak RSS of the process during this repetition (VmHWM after a reset), bytes.
    public var peakRSSBytes: Int
    /// Peak bytes the workload held live (objects x requested size).
    public var peakLiveBytes: Int
    /// RSS after the workload freed everything (and called shrink for slab), bytes.
    public var rssAfterBytes: Int?
    public var rssSeries: [RSSPoint]?

    public var nsPerOp: Double { ops > 0 ? seconds * 1e9 / Double(ops) : .nan }
    public var mopsPerSecond: Double { seconds > 0 ? Double(ops) / seconds / 1e6 : .nan }
    /// Peak RSS over peak live bytes (1.0 = no overhead); nil when nothing was live.
    public var rssOverhead: Double? { peakLiveBytes > 0 ? Double(peakRSSBytes) / Double(peakLiveBytes) : nil }
}

/// The outcome of one cell, as the child reports it (JSON on a pipe) or as the runner records a
/// failure (crash, timeout, missing library).
public struct CellResult: Codable, Sendable {
    public enum Status: String, Codable, Sendable { case ok, failed, timeout, skipped }
    public var parameters: CellParameters
    public var status: Status
    public var message: String?
    public var repetitions: [Repetition]
    /// The allocator's version string as the child saw it (e.g. mimalloc's version), if known.
    public var allocatorVersion: String?
}
