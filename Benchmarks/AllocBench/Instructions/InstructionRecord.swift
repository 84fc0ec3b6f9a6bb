// What `bench instructions` writes (results/instructions.json): instructions per op of each
// (allocator, workload, size) under callgrind, counted over the measured region only.
//
// Instruction counts are deterministic for one binary, one input and one environment: the same
// cell counted twice gives the same number, whatever else the machine is doing. That makes them
// the regression metric that needs no statistics (`bench compare` applies a threshold to them
// directly), at the price of measuring a proxy: cache misses, branch mispredictions and
// contention cost time without costing instructions, so the wall-clock suite stays the truth.

/// One counted cell.
public struct InstructionCell: Codable, Sendable, Equatable {
    /// `glibc`, `jemalloc`, `mimalloc`, `tcmalloc`, `slab` (the rseq path), `slab-fallback`,
    /// `slab-nocpu`: an `AllocatorID` raw value.
    public var allocator: String
    public var workload: String
    /// The workload's version (WorkloadSpec.version) when the cell was counted.
    public var workloadVersion: Int
    public var size: Int
    public var status: CellResult.Status
    /// Why the cell failed or was skipped.
    public var message: String?
    /// Ops (objects allocated and freed) in the counted region.
    public var ops: Int
    /// Instructions executed in the counted region (callgrind's Ir), all threads.
    public var instructions: UInt64
    /// Simulated first-level data-cache misses (reads + writes) and last-level misses in the
    /// counted region, when the count ran with callgrind's cache simulation.
    public var d1Misses: UInt64?
    public var llMisses: UInt64?
    /// The allocator as the child saw it (e.g. "slab mode=rseq-simulated magazine=255").
    public var allocatorVersion: String?

    public init(allocator: String, workload: String, workloadVersion: Int, size: Int, status: CellResult.Status,
                message: String? = nil, ops: Int, instructions: UInt64, d1Misses: UInt64? = nil,
                llMisses: UInt64? = nil, allocatorVersion: String? = nil) {
        self.allocator = allocator
        self.workload = workload
        self.workloadVersion = workloadVersion
        self.size = size
        self.status = status
        self.message = message
        self.ops = ops
        self.instructions = instructions
        self.d1Misses = d1Misses
        self.llMisses = llMisses
        self.allocatorVersion = allocatorVersion
    }

    public var instructionsPerOp: Double { ops > 0 ? Double(instructions) / Double(ops) : .nan }
}

/// Everything one `bench instructions` run produced.
public struct InstructionRecord: Codable, Sendable {
    public var kind: String = InstructionRecord.kind
    public var schemaVersion: Int = InstructionRecord.schemaVersion
    public static let kind = "instructions"
    public static let schemaVersion = 1

    /// `<UTC date>-<commit>`, as in RunRecord.
    public var runID: String
    public var machine: MachineInfo
    /// `valgrind --version`, e.g. "valgrind-3.19.0".
    public var valgrind: String
    /// Callgrind's cache simulation was on (d1Misses/llMisses are filled).
    public var cacheSimulation: Bool
    public var durationSeconds: Double
    public var cells: [InstructionCell]

    public init(runID: String, machine: MachineInfo, valgrind: String, cacheSimulation: Bool,
                durationSeconds: Double, cells: [InstructionCell]) {
        self.runID = runID
        self.machine = machine
        self.valgrind = valgrind
        self.cacheSimulation = cacheSimulation
        self.durationSeconds = durationSeconds
        self.cells = cells
    }
}
