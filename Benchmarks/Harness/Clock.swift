// The one monotonic clock of the bench and the tests: clock_gettime(CLOCK_MONOTONIC), read
// through the vDSO (no system call). The workloads read it at the edges of their timed regions,
// the runners to time children and deadlines.
//
// @inlinable, so that a workload's clock reads compile into its loop as they would from its own
// module: the timed regions are the same instructions whichever module the clock is written in.
#if canImport(Glibc)
import Glibc
#endif

/// Nanoseconds on the monotonic clock (since boot, on Linux).
@inlinable @inline(__always)
public func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// Seconds between two `monotonicNanoseconds()` readings.
@inlinable @inline(__always)
public func seconds(from start: UInt64, to end: UInt64) -> Double { Double(end &- start) / 1e9 }

/// The monotonic clock in seconds: for durations and deadlines, where nanoseconds are not needed.
@inlinable
public func monotonicSeconds() -> Double { Double(monotonicNanoseconds()) / 1e9 }
