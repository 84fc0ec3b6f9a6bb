// The contract between the suite's halves: workloads (Workloads/, Allocators/) measure one cell
// inside a child process; the runner (Runner/, Reports/) plans cells, launches children with the
// right LD_PRELOAD, collects `CellResult`s and writes the reports.
//
// Vocabulary: a *cell* is (allocator, workload, size, threads); a *repetition* is one timed run of
// a cell after warm-up; an *op* is one object allocated and freed (an alloc+free pair), so ns/op
// compares directly with the cost of a malloc+free pair.

/// An allocator a cell measures: one the suite knows (peers are loaded with LD_PRELOAD into a
/// child process, so that "glibc" really is glibc: linking jemalloc would replace malloc
/// process-wide), or any malloc-compatible shared library named on the command line by path.
///
/// Encoded as its raw value, one string, as the String enum it replaced was: result files written
/// before `kmalloc` and `preload:` existed read unchanged, and the schema did not change.
public struct AllocatorID: RawRepresentable, Hashable, Codable, Sendable, CustomStringConvertible {
    /// "glibc", "slab", ... or "preload:/absolute/path/libfoo.so" with an optional "=name".
    public let rawValue: String

    /// A built-in allocator's name, or a `preload:` spec with an absolute path (checked for syntax
    /// only; `SuitePlan.parseAllocators` also checks the file).
    public init?(rawValue: String) {
        if Self.builtIn.contains(where: { $0.rawValue == rawValue }) {
            self.rawValue = rawValue
        } else if let spec = PreloadSpec(rawValue: rawValue) {
            self.rawValue = spec.rawValue
        } else {
            return nil
        }
    }

    private init(builtIn name: String) { rawValue = name }

    public static let glibc = AllocatorID(builtIn: "glibc")
    public static let jemalloc = AllocatorID(builtIn: "jemalloc")
    public static let mimalloc = AllocatorID(builtIn: "mimalloc")
    public static let tcmalloc = AllocatorID(builtIn: "tcmalloc")
    /// Our cache with the per-CPU magazine layer.
    public static let slab = AllocatorID(builtIn: "slab")
    /// Our cache with the slab layer only (flag .noCPUCache): what the magazine layer is worth.
    public static let slabNoCPU = AllocatorID(builtIn: "slab-nocpu")
    /// Our cache with its per-CPU layer forced into the fallback mode (no rseq: what valgrind,
    /// `GLIBC_TUNABLES=glibc.pthread.rseq=0` and other architectures get). Not in the default
    /// suite; ask for it with `--allocators`.
    public static let slabFallback = AllocatorID(builtIn: "slab-fallback")
    /// Our general-purpose heap: kmalloc(size) and kfree over the size-class caches. Not in the
    /// default suite's fixed-size workloads (ask for it with `--allocators`); the default suite
    /// runs it on the mixed-size workloads (`defaultMixedSizeSuite`).
    public static let kmalloc = AllocatorID(builtIn: "kmalloc")
    /// kmalloc(size) and kfree(p, size:), the free for a caller that knows the size it asked for
    /// (C23's free_sized, jemalloc's sdallocx): the class comes from the size, so the free does not
    /// wait for the pointer to find it. Fixed-size workloads only (a cell's one size is what the
    /// free is told); not in the default suite.
    public static let kmallocSized = AllocatorID(builtIn: "kmalloc-sized")
    /// A reference, not a product: the slab with its free skipping the ownership test, so its
    /// pair is the per-CPU layer's rseq pop and push alone, the limit of the design. The default
    /// suite runs it on `pair` only (`defaultReferenceSuite`), beside the slab.
    public static let slabBare = AllocatorID(builtIn: "slab-bare")

    /// Every allocator the suite knows, in report order.
    public static let builtIn: [AllocatorID] = [.glibc, .jemalloc, .mimalloc, .tcmalloc, .slab, .slabNoCPU, .slabFallback, .kmalloc, .kmallocSized, .slabBare]

    /// The allocators a run measures when `--allocators` is not given.
    public static let defaultSuite: [AllocatorID] = [.glibc, .jemalloc, .mimalloc, .tcmalloc, .slab, .slabNoCPU]
    /// The allocators a run measures on the mixed-size workloads when `--allocators` is not given:
    /// the malloc peers and kmalloc (a typed cache serves one size and cannot run them).
    public static let defaultMixedSizeSuite: [AllocatorID] = [.glibc, .jemalloc, .mimalloc, .tcmalloc, .kmalloc]
    /// The reference allocators a run adds, when `--allocators` is not given, to the workloads in
    /// `SuitePlan.referenceWorkloads` (pair): the limit every run shows beside the peers.
    public static let defaultReferenceSuite: [AllocatorID] = [.slabBare]
    /// The default suite's allocators that skip the workloads with threads (Plan.swift, section 1).
    public static let defaultOneThreadOnly: [AllocatorID] = [.slabNoCPU]

    /// The name reports print: the raw value for a built-in, the given name (or the library's file
    /// name) for a `preload:` peer.
    public var name: String { preloadSpec?.displayName ?? rawValue }

    public var description: String { name }

    /// A `preload:` peer's library and name; nil for a built-in allocator.
    public var preloadSpec: PreloadSpec? { PreloadSpec(rawValue: rawValue) }

    /// For built-in peers: the shared library to preload, and the Debian package that installs it.
    public var preload: (library: String, debianPackage: String)? {
        switch self {
        case .jemalloc: return ("libjemalloc.so.2", "libjemalloc2")
        case .mimalloc: return ("libmimalloc.so.2", "libmimalloc2.0")
        case .tcmalloc: return ("libtcmalloc_minimal.so.4", "libgoogle-perftools4")
        default: return nil
        }
    }

    /// True for every allocator its child runs with LD_PRELOAD: the built-in peers and `preload:` ones.
    public var isPreloaded: Bool { preload != nil || preloadSpec != nil }

    /// True for our typed caches (a SlabCache per cell, one object size).
    public var isSlab: Bool { self == .slab || self == .slabNoCPU || self == .slabFallback || self == .slabBare }

    /// True for the allocators this project ships (the typed caches and kmalloc): the rest are
    /// peers, and "best peer" ratios choose among those.
    public var isOurs: Bool { isSlab || self == .kmalloc || self == .kmallocSized }

    /// False for the typed caches, which serve the one size they were created with, and for
    /// kmalloc-sized, whose frees are told the cell's one size: they have no cells in the
    /// mixed-size workloads.
    public var servesAnySize: Bool { !isSlab && self != .kmallocSized }

    /// The value of `SLAB_CPU_LAYER` the child runs with (nil: the variable is removed, so the
    /// slab picks its mode from the machine as a user's program would).
    public var slabCPULayer: String? { self == .slabFallback ? "fallback" : nil }

    /// Built-in allocators in their order, then the others in the order given.
    public static func reportOrder(_ allocators: some Sequence<AllocatorID>) -> [AllocatorID] {
        var seen = Set<AllocatorID>()
        let unique = allocators.filter { seen.insert($0).inserted }
        return builtIn.filter(seen.contains) + unique.filter { !builtIn.contains($0) }
    }
}

/// A malloc-compatible shared library given by path: `preload:/path/libfoo.so`, or with a display
/// name, `preload:/path/libfoo.so=foo`. The name is what follows the last '=' after the last '/';
/// without one, the library's file name is shown.
public struct PreloadSpec: Equatable, Sendable {
    public static let prefix = "preload:"

    /// The library, an absolute path.
    public var path: String
    /// The name given after '=', if any.
    public var givenName: String?

    public init(path: String, name: String?) {
        self.path = path
        givenName = name
    }

    /// Parses the syntax only: an absolute path, and a name of printable characters without
    /// blanks or commas. The file itself is checked by `SuitePlan.parseAllocators`.
    public init?(rawValue: String) {
        guard rawValue.hasPrefix(Self.prefix) else { return nil }
        var body = String(rawValue.dropFirst(Self.prefix.count))
        var name: String? = nil
        if let eq = body.lastIndex(of: "="), !body[eq...].contains("/") {
            name = String(body[body.index(after: eq)...])
            body = String(body[..<eq])
            guard Self.isValidName(name!) else { return nil }
        }
        guard body.hasPrefix("/"), body.count > 1 else { return nil }
        path = body
        givenName = name
    }

    /// A display name: one word of printable ASCII, not a list separator.
    public static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.unicodeScalars.allSatisfy { $0.isASCII && $0.value > 0x20 && $0.value < 0x7F && $0 != "," && $0 != "=" }
    }

    public var rawValue: String { Self.prefix + path + (givenName.map { "=" + $0 } ?? "") }

    /// The name reports print.
    public var displayName: String { givenName ?? String(path.split(separator: "/").last ?? Substring(path)) }
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

/// Latency percentiles in nanoseconds per operation (sampled into an HDR histogram).
public struct LatencySummary: Codable, Sendable, Equatable {
    public var p50: Double
    public var p99: Double
    public var p999: Double
    public var max: Double
    public var samples: Int
    /// Operations timed together in each sample: every percentile is a sample's time divided by
    /// this (Workloads/Measurement.swift, 2.). nil in files written before samples were grouped,
    /// whose samples timed single operations.
    public var groupOps: Int? = nil
}

/// One point of an RSS series (sawtooth).
public struct RSSPoint: Codable, Sendable, Equatable {
    /// Since the start of the repetition's measured region.
    public var seconds: Double
    public var rssBytes: Int
    public var liveBytes: Int
    /// Allocator calls (allocations and frees) the repetition had made: the same for every
    /// allocator at the same point of the workload, so series line up on it. nil in files
    /// written before it was recorded.
    public var operations: Int? = nil
    /// True for the point read just after the allocator's release call (`ReleaseCall`); absent
    /// (nil) for the others.
    public var afterRelease: Bool? = nil
}

/// What a cell called to have its allocator give its free memory back to the OS (the sawtooth,
/// after each drain), as the child resolved it in its own process.
public struct ReleaseCall: Codable, Sendable, Equatable {
    /// The call as written in C or Swift ("malloc_trim(0)", "mi_collect(true)",
    /// "SlabCache.shrink()"); when not found, what was looked for.
    public var call: String
    /// False when the child found no such entry point: no call was made, and RSS after a drain
    /// is whatever the allocator gave back by itself.
    public var found: Bool
    /// Why the call was not found (which library defines none of the entry points looked for).
    public var missing: String? = nil

    public init(call: String, found: Bool, missing: String? = nil) {
        self.call = call
        self.found = found
        self.missing = missing
    }

    /// For reports: the call, or that there was none and why.
    public var summary: String { found ? call : "no release call (\(missing ?? call + " not found"))" }
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
    /// RSS after the workload freed everything and made its allocator's release call, bytes.
    public var rssAfterBytes: Int?
    public var rssSeries: [RSSPoint]?

    public var nsPerOp: Double { ops > 0 ? seconds * 1e9 / Double(ops) : .nan }
    public var mopsPerSecond: Double { seconds > 0 ? Double(ops) / seconds / 1e6 : .nan }
    /// Peak RSS over peak live bytes (1.0 = no overhead); nil when nothing was live.
    public var rssOverhead: Double? { peakLiveBytes > 0 ? Double(peakRSSBytes) / Double(peakLiveBytes) : nil }
    /// RSS once the last drain freed everything, before the release call that followed it (the
    /// series' point before its last `afterRelease` one); nil without such a point.
    public var rssDrainedBytes: Int? {
        guard let series = rssSeries, let last = series.lastIndex(where: { $0.afterRelease == true }), last > 0 else { return nil }
        return series[last - 1].rssBytes
    }
    /// The sawtooth's cycle split into its phases, each the median over the repetition's cycles;
    /// nil without release points.
    public var cyclePhases: CyclePhases? { rssSeries.flatMap(CyclePhases.init(series:)) }
}

/// Where a sawtooth cycle's time goes, read off its RSS series: filling (from the point that
/// ends the previous cycle, or the first point, to the point with the most bytes live), draining
/// (from there to the last point before the release call) and the release call (from there to
/// the point read just after it). Each is the median over the cycles, in seconds. The RSS reads
/// taken between the loop's steps (one /proc/self/statm read each, 16 or 17 a phase) fall inside the
/// fill and the drain, alike for every allocator.
public struct CyclePhases: Sendable, Equatable {
    public var fill: Double
    public var drain: Double
    public var release: Double

    /// nil when the series has no release point, or a cycle lacks a fill or a drain.
    public init?(series: [RSSPoint]) {
        var fills: [Double] = [], drains: [Double] = [], releases: [Double] = []
        var start = 0
        for (end, point) in series.enumerated() where point.afterRelease == true {
            guard end - start >= 3 else { return nil }
            let cycle = series[(start + 1)..<end]
            guard let peak = cycle.indices.max(by: { series[$0].liveBytes < series[$1].liveBytes }),
                  peak < end - 1 else { return nil }
            fills.append(series[peak].seconds - series[start].seconds)
            drains.append(series[end - 1].seconds - series[peak].seconds)
            releases.append(series[end].seconds - series[end - 1].seconds)
            start = end
        }
        guard !fills.isEmpty else { return nil }
        fill = Spread.median(fills)
        drain = Spread.median(drains)
        release = Spread.median(releases)
    }
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
    /// The release call the workload made after each drain (sawtooth); nil for the workloads
    /// that make none, and absent from their JSON.
    public var releaseCall: ReleaseCall? = nil
    /// A cell with threads: nanoseconds per round trip of the two-CPU canary the child ran right
    /// after its repetitions (Threaded.swift, `TwoCPUCanary`), which tells the runner whether the
    /// host gave the process both CPUs meanwhile. nil otherwise, and absent from the JSON.
    public var canaryNanoseconds: Double? = nil
}
