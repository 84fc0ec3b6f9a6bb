// Statistics for the reports: medians with spread, and ratios between medians.
//
// Every figure a report prints is a median over the repetitions of one cell, never a mean: one
// preempted repetition on a shared 2-core machine moves a mean by more than the effects we look
// for, and moves a median not at all. The spread printed beside it is min-max (what was seen) and
// the median absolute deviation (how tight the middle is).

/// Median, extremes and MAD of a sample. NaNs are dropped before anything is computed.
public struct Spread: Sendable, Equatable {
    public var count: Int
    public var median: Double
    public var min: Double
    public var max: Double
    /// Median absolute deviation from the median, unscaled (no 1.4826 factor):
    /// median(|x_i - median(x)|).
    public var mad: Double

    /// Nil when no finite value is present.
    public init?(_ values: [Double]) {
        let finite = values.filter { $0.isFinite }
        guard !finite.isEmpty else { return nil }
        count = finite.count
        median = Spread.median(finite)
        min = finite.min()!
        max = finite.max()!
        let m = median
        mad = Spread.median(finite.map { abs($0 - m) })
    }

    /// The middle value; for an even count, the mean of the two middle values.
    /// REQUIRES: `values` is not empty.
    public static func median(_ values: [Double]) -> Double {
        precondition(!values.isEmpty, "median of an empty sample")
        let s = values.sorted()
        let mid = s.count / 2
        return s.count % 2 == 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2
    }

    /// MAD relative to the median (0.02 = 2 %), nil when the median is 0.
    public var relativeMAD: Double? { median != 0 ? mad / abs(median) : nil }
}

/// Ratios between allocators, always from medians measured in the same run.
public enum Ratio {
    /// The peers a "best peer" is chosen among: everything that is not ours (built-in peers and
    /// `preload:` libraries).
    public static func isPeer(_ a: AllocatorID) -> Bool { !a.isOurs }

    /// `value / reference`, nil when either is missing, not finite, or the reference is 0.
    public static func of(_ value: Double?, to reference: Double?) -> Double? {
        guard let value, let reference, value.isFinite, reference.isFinite, reference != 0 else { return nil }
        return value / reference
    }

    /// The best (lowest) ns/op among the peers present in `medians`, with its allocator.
    public static func bestPeer(in medians: [AllocatorID: Double]) -> (allocator: AllocatorID, value: Double)? {
        var best: (allocator: AllocatorID, value: Double)?
        // Report order, so that a tie always goes to the same peer.
        for peer in AllocatorID.reportOrder(medians.keys.sorted { $0.rawValue < $1.rawValue }) where isPeer(peer) {
            guard let v = medians[peer], v.isFinite else { continue }
            if best == nil || v < best!.value { best = (peer, v) }
        }
        return best
    }
}
