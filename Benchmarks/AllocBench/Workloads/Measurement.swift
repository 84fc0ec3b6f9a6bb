// Measurement tools shared by the workloads: the process's memory figures, the latency sampler,
// random free orders and the object-touching rule. The clock and the PRNG (SplitMix64) are the
// Harness module's, shared with the runner and the tests.
//
// 1. Clock
// --------
//   clock_gettime(CLOCK_MONOTONIC) through the vDSO (no system call; Harness/Clock.swift).
//   Throughput is timed around a whole loop, so the clock's own cost is irrelevant there.
//
// 2. Latency (sampled, in groups)
// -------------------------------
//   Latency is measured in a separate sampling pass, never in the loop that gives ns/op. That
//   pass runs the same stream of operations as the throughput loop, in strides of
//   `latencyStride` ops: the first `latencyGroup` ops of each stride are bracketed by two clock
//   reads, the rest run untimed. A sample is (t1 - t0) minus the clock floor (the median cost of
//   two back-to-back reads, measured once per cell), clamped at 0; the percentiles are of the
//   samples divided by the group, i.e. ns per op, as package-benchmark reports a benchmark
//   with a scaling factor.
//   Why groups: this clock advances in steps of about 10 ns here (back-to-back reads differ by
//   20, 21, 30 or 31 ns, nothing between), and a fast path takes 3-10 ns, so a single op timed
//   alone read as 0 or 10 ns and printed a p50 of 0.00. A group of 32 of the fastest ops spans
//   about 100 ns, and one clock step is then 0.3 ns per op. The price is that a sample averages
//   its group: one slow op (a refill, a page fault) shows as its excess divided by 32, so p99
//   and max are "the slowest groups of 32", not the slowest single op.
//   `rdtsc` (through CAllocBench) would be cheaper to read, but its ticks need a calibration to
//   nanoseconds that a shared, frequency-scaled guest does not make trustworthy.
//
// 3. Memory
// ---------
//   Peak RSS per repetition: write "5" to /proc/self/clear_refs (resets VmHWM to the current RSS)
//   before the repetition, read VmHWM from /proc/self/status after. Current RSS: /proc/self/statm.

import Harness
import Histogram

#if canImport(Glibc)
import Glibc
#endif

// MARK: - Clock floor

/// The median cost of two back-to-back clock reads, in ns: subtracted from latency samples.
func clockFloorNanoseconds() -> UInt64 {
    var samples = [UInt64](repeating: 0, count: 1001)
    for i in samples.indices {
        let a = monotonicNanoseconds()
        let b = monotonicNanoseconds()
        samples[i] = b &- a
    }
    samples.sort()
    return samples[samples.count / 2]
}

// MARK: - Memory figures

enum ProcessMemory {
    static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

    /// Resets the kernel's peak-RSS mark (VmHWM) to the current RSS. Returns false if refused.
    @discardableResult
    static func resetPeak() -> Bool {
        let fd = open("/proc/self/clear_refs", O_WRONLY)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var five: UInt8 = UInt8(ascii: "5")
        return write(fd, &five, 1) == 1
    }

    /// Peak RSS since the last reset (VmHWM), bytes; 0 if unreadable.
    static func peakRSS() -> Int {
        guard let status = readSmallFile("/proc/self/status") else { return 0 }
        for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            let digits = line.dropFirst(6).filter { $0.isNumber }
            return (Int(String(digits)) ?? 0) * 1024
        }
        return 0
    }

    /// Current RSS from /proc/self/statm (second field, in pages), bytes; 0 if unreadable.
    /// Reads into a stack buffer without allocating, so it can be called inside a workload.
    static func currentRSS() -> Int {
        let fd = open("/proc/self/statm", O_RDONLY)
        guard fd >= 0 else { return 0 }
        defer { close(fd) }
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 128) { buf -> Int in
            let n = read(fd, buf.baseAddress, 128)
            guard n > 0 else { return 0 }
            var field = 0, value = 0
            for i in 0..<n {
                let c = buf[i]
                if c == UInt8(ascii: " ") {
                    if field == 1 { break }
                    field += 1
                } else if field == 1, c >= 48, c <= 57 {
                    value = value * 10 + Int(c - 48)
                }
            }
            return value * pageSize
        }
    }

    private static func readSmallFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, 4096) }
            if n <= 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

// MARK: - Latency

/// Raw latency samples, each the time of `groupOps` consecutive ops, filled in a sampling pass (a
/// preallocated buffer: no allocation while sampling), summarised through an HDR histogram
/// afterwards.
struct LatencySamples {
    let values: UnsafeMutablePointer<UInt64>
    let capacity: Int
    var count = 0
    let floor: UInt64
    /// Ops each sample times together.
    let groupOps: Int

    init(capacity: Int, floor: UInt64, groupOps: Int = latencyGroup) {
        precondition(groupOps >= 1, "a latency sample times at least one op")
        self.capacity = capacity
        values = .allocate(capacity: max(capacity, 1))
        self.floor = floor
        self.groupOps = groupOps
    }

    func deallocate() { values.deallocate() }

    /// Records one bracketed interval: one group of `groupOps` ops.
    @inline(__always)
    mutating func record(start: UInt64, end: UInt64) {
        guard count < capacity else { return }
        let raw = end &- start
        values[count] = raw > floor ? raw - floor : 0
        count += 1
    }

    /// Percentiles per op: the groups' times through an HDR histogram (3 significant digits,
    /// 1 ns to 10 s), divided by `groupOps`.
    func summary() -> LatencySummary? {
        guard count > 0 else { return nil }
        var h = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 10_000_000_000,
                                  numberOfSignificantValueDigits: .three)
        for i in 0..<count { h.record(Swift.min(values[i], 10_000_000_000)) }
        let perOp = { (groupNanoseconds: UInt64) in Double(groupNanoseconds) / Double(groupOps) }
        return LatencySummary(p50: perOp(h.valueAtPercentile(50)), p99: perOp(h.valueAtPercentile(99)),
                              p999: perOp(h.valueAtPercentile(99.9)), max: perOp(h.max),
                              samples: count, groupOps: groupOps)
    }
}

/// A sampling pass goes in strides of this many ops; each stride begins with one timed group.
let latencyStride = 64
/// Ops timed together as one latency sample (see 2. above): enough that the fastest op's group
/// spans ten clock steps.
let latencyGroup = 32

// MARK: - Random free orders

/// A buffer of `count` permutations of 0..<n (Fisher-Yates from a fixed seed), for freeing in a
/// random order without drawing random numbers inside the timed loop.
struct Permutations {
    let n: Int
    let count: Int
    let indices: UnsafeMutablePointer<UInt32>

    init(n: Int, count: Int, seed: UInt64) {
        self.n = n
        self.count = count
        indices = .allocate(capacity: n * count)
        var rng = SplitMix64(seed: seed)
        for k in 0..<count {
            let perm = indices + k * n
            for i in 0..<n { perm[i] = UInt32(i) }
            var i = n - 1
            while i > 0 {
                let j = rng.next(below: i + 1)
                let t = perm[i]; perm[i] = perm[j]; perm[j] = t
                i -= 1
            }
        }
    }

    @inline(__always) func permutation(_ k: Int) -> UnsafeMutablePointer<UInt32> { indices + (k % count) * n }

    func deallocate() { indices.deallocate() }
}

// MARK: - Touching objects

/// The rule for every workload: write the first and the last word of each object it gets (the
/// last word may overlap the first for objects under 16 bytes); objects below 8 bytes get byte
/// writes. `stamp` is any value; the cross-thread workloads check it on the consumer's side.
@inline(__always)
func touch(_ p: UnsafeMutableRawPointer, size: Int, stamp: UInt64) {
    if size >= 8 {
        p.storeBytes(of: stamp, as: UInt64.self)
        p.storeBytes(of: stamp, toByteOffset: size &- 8, as: UInt64.self)
    } else {
        p.storeBytes(of: UInt8(truncatingIfNeeded: stamp), as: UInt8.self)
        p.storeBytes(of: UInt8(truncatingIfNeeded: stamp), toByteOffset: size &- 1, as: UInt8.self)
    }
}

/// Frees the object in a random one of `slots[0..<count]` and puts a new, touched one in its place:
/// the step of the random-replacement workloads (steady-random, larson).
@inline(__always)
func replaceRandomSlot<A: FixedSizeAllocator>(_ a: A, slots: UnsafeMutablePointer<UnsafeMutableRawPointer?>,
                                              count: Int, rng: inout SplitMix64, size: Int, stamp: UInt64) {
    let j = rng.next(below: count)
    a.free(slots[j].unsafelyUnwrapped)
    let p = a.allocate()
    touch(p, size: size, stamp: stamp)
    slots[j] = p
}

/// The first word of an object written by `touch` (for checks across threads).
@inline(__always)
func stampOf(_ p: UnsafeMutableRawPointer, size: Int) -> UInt64 {
    size >= 8 ? p.load(as: UInt64.self) : UInt64(p.load(as: UInt8.self))
}

/// What `stampOf` returns for an object touched with `stamp`.
@inline(__always)
func expectedStamp(_ stamp: UInt64, size: Int) -> UInt64 {
    size >= 8 ? stamp : UInt64(UInt8(truncatingIfNeeded: stamp))
}
