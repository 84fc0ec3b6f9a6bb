// Rank statistics for `bench compare`: the Mann-Whitney U test, the Hodges-Lehmann shift with its
// confidence interval, and Holm's correction over many cells.
//
// 1. Why ranks
// ------------
//   Timings on a shared 2-core machine are skewed (a preempted repetition is slow, never fast)
//   and a few samples per cell is all a run gives. A rank test assumes no distribution, and the
//   Hodges-Lehmann estimator (the median of all pairwise differences) ignores one wild sample
//   where a difference of means would follow it. Both are computed on logarithms of the samples,
//   so a shift is a ratio: "new is 1.12x old", the same whether old took 3 ns or 30.
//
// 2. Exact where it matters
// -------------------------
//   With few samples the normal approximation is poor exactly where a decision is made, so the
//   null distribution of U is counted exactly (the number of rankings giving each U, by the
//   recurrence f(m, n, u) = f(m-1, n, u-n) + f(m, n-1, u)) when there are no ties and m*n is at
//   most `exactLimit`. Otherwise (ties, large samples) the normal approximation with the tie
//   correction of the variance and a continuity correction is used, as scipy's
//   `mannwhitneyu(method="asymptotic")` does; tests check both against scipy's values.
//
// 3. The smallest p a sample can give
// -----------------------------------
//   Two-sided, with m and n samples, no outcome is rarer than complete separation, which has
//   probability 1/C(m+n, m) on each side: 3 vs 3 can never reach p < 0.05 (its floor is 0.1),
//   5 vs 5 reaches 0.0079. `minimumPValue` is that floor; compare uses it to say "?" (cannot
//   tell) rather than "no change" when the samples could not have shown a change.

#if canImport(Glibc)
import Glibc
#endif

public enum RankStatistics {
    /// Largest m*n for which the exact null distribution is counted.
    public static let exactLimit = 2500

    /// The two-sided Mann-Whitney test of x against y.
    public struct MannWhitney: Sendable, Equatable {
        /// U of y: pairs (i, j) with y[j] > x[i], ties counting one half.
        public var u: Double
        public var p: Double
        /// True when the exact distribution was used.
        public var exact: Bool
    }

    /// Two-sided Mann-Whitney U test. REQUIRES: both samples non-empty.
    public static func mannWhitney(_ x: [Double], _ y: [Double]) -> MannWhitney {
        precondition(!x.isEmpty && !y.isEmpty, "Mann-Whitney needs two non-empty samples")
        let m = x.count, n = y.count
        let ranks = midranks(x + y)
        let rankSumY = ranks[m...].reduce(0, +)
        let uY = rankSumY - Double(n * (n + 1)) / 2
        let uMax = max(uY, Double(m * n) - uY)
        let ties = tieGroups(x + y)
        if ties.isEmpty && m * n <= exactLimit {
            // P(U >= uMax), doubled: U is symmetric about mn/2.
            let counts = exactCounts(m, n)
            let total = counts.reduce(0, +)
            let k = Int(uMax.rounded())
            let tail = counts[k...].reduce(0, +)
            return MannWhitney(u: uY, p: min(1, 2 * tail / total), exact: true)
        }
        let mu = Double(m * n) / 2
        let N = Double(m + n)
        let tieTerm = ties.reduce(0.0) { $0 + Double($1 * $1 * $1 - $1) }
        let variance = Double(m * n) / 12 * ((N + 1) - tieTerm / (N * (N - 1)))
        guard variance > 0 else { return MannWhitney(u: uY, p: 1, exact: false) }
        let z = (uMax - mu - 0.5) / variance.squareRoot()
        return MannWhitney(u: uY, p: min(1, 2 * normalUpperTail(z)), exact: false)
    }

    /// The smallest two-sided p-value any outcome of m vs n samples can give: 2 / C(m+n, m).
    public static func minimumPValue(_ m: Int, _ n: Int) -> Double {
        guard m > 0, n > 0 else { return 1 }
        var c = 1.0  // C(m+n, m), built up as a product to stay exact for small values
        for i in 1...m { c = c * Double(n + i) / Double(i) }
        return min(1, 2 / c)
    }

    /// The smallest equal sample size n (n vs n) whose floor p is below `alpha`.
    public static func samplesNeeded(alpha: Double) -> Int {
        var n = 2
        while minimumPValue(n, n) >= alpha && n < 1000 { n += 1 }
        return n
    }

    /// A shift between two samples and its confidence interval, both as differences y - x.
    public struct Shift: Sendable, Equatable {
        public var estimate: Double
        /// nil when the samples are too few for an interval at this level.
        public var lower: Double?
        public var upper: Double?
    }

    /// Hodges-Lehmann estimate of the shift of y relative to x (the median of all differences
    /// y[j] - x[i]) with the distribution-free interval of level 1 - alpha: the differences
    /// ranked k and mn + 1 - k, where k - 1 is the largest c with P(U <= c) <= alpha / 2 under the
    /// null (exact counts when m*n <= exactLimit, the normal approximation above that).
    public static func hodgesLehmann(_ x: [Double], _ y: [Double], alpha: Double = 0.05) -> Shift {
        precondition(!x.isEmpty && !y.isEmpty, "Hodges-Lehmann needs two non-empty samples")
        var d: [Double] = []
        d.reserveCapacity(x.count * y.count)
        for b in y { for a in x { d.append(b - a) } }
        d.sort()
        let estimate = Spread.median(d)
        guard let c = lowerCriticalValue(x.count, y.count, alpha: alpha) else {
            return Shift(estimate: estimate, lower: nil, upper: nil)
        }
        // 1-based ranks c+1 and N-c, 0-based c and N-1-c.
        return Shift(estimate: estimate, lower: d[c], upper: d[d.count - 1 - c])
    }

    /// The largest c with P(U <= c) <= alpha/2 under the null, nil when even P(U = 0) is larger.
    static func lowerCriticalValue(_ m: Int, _ n: Int, alpha: Double) -> Int? {
        if m * n <= exactLimit {
            let counts = exactCounts(m, n)
            let total = counts.reduce(0, +)
            var cumulative = 0.0
            var c: Int? = nil
            for (u, count) in counts.enumerated() {
                cumulative += count
                if cumulative / total <= alpha / 2 { c = u } else { break }
            }
            return c
        }
        let mu = Double(m * n) / 2
        let sigma = (Double(m * n) * Double(m + n + 1) / 12).squareRoot()
        let c = Int((mu - 0.5 - normalQuantile(1 - alpha / 2) * sigma).rounded(.down))
        return c >= 0 ? c : nil
    }

    /// Holm's step-down adjustment: adjusted p-values in the input's order. A hypothesis is
    /// rejected at family-wise level alpha exactly when its adjusted p is below alpha.
    public static func holm(_ p: [Double]) -> [Double] {
        let order = p.indices.sorted { p[$0] < p[$1] }
        var adjusted = [Double](repeating: 1, count: p.count)
        var running = 0.0
        for (rank, i) in order.enumerated() {
            running = max(running, min(1, Double(p.count - rank) * p[i]))
            adjusted[i] = running
        }
        return adjusted
    }

    // MARK: - Pieces

    /// Number of arrangements of m x's and n y's giving each U = 0...m*n (U counts y above x).
    static func exactCounts(_ m: Int, _ n: Int) -> [Double] {
        // f[a][b] is the distribution for a x's and b y's; only the previous row of `a` is kept.
        var previous = [[Double]](repeating: [1], count: n + 1)  // a = 0: U is 0 in one way
        for a in stride(from: 1, through: m, by: 1) {
            var current = [[Double]](repeating: [1], count: n + 1)  // b = 0: likewise
            for b in stride(from: 1, through: n, by: 1) {
                // The largest element is a y (it beats all a x's: U grows by a) or an x.
                var f = [Double](repeating: 0, count: a * b + 1)
                for (u, v) in current[b - 1].enumerated() { f[u + a] += v }
                for (u, v) in previous[b].enumerated() { f[u] += v }
                current[b] = f
            }
            previous = current
        }
        return m == 0 ? [1] : previous[n]
    }

    /// Ranks 1...N with ties given the mean of the ranks they span.
    static func midranks(_ v: [Double]) -> [Double] {
        let order = v.indices.sorted { v[$0] < v[$1] }
        var ranks = [Double](repeating: 0, count: v.count)
        var i = 0
        while i < order.count {
            var j = i
            while j + 1 < order.count && v[order[j + 1]] == v[order[i]] { j += 1 }
            let r = Double(i + j) / 2 + 1
            for k in i...j { ranks[order[k]] = r }
            i = j + 1
        }
        return ranks
    }

    /// Sizes of the groups of equal values (only groups of 2 or more).
    static func tieGroups(_ v: [Double]) -> [Int] {
        let s = v.sorted()
        var groups: [Int] = []
        var i = 0
        while i < s.count {
            var j = i
            while j + 1 < s.count && s[j + 1] == s[i] { j += 1 }
            if j > i { groups.append(j - i + 1) }
            i = j + 1
        }
        return groups
    }

    /// P(Z > z) for a standard normal Z.
    static func normalUpperTail(_ z: Double) -> Double { 0.5 * erfc(z / 2.0.squareRoot()) }

    /// The standard normal quantile (Acklam's rational approximation, refined by one Newton step
    /// on erfc: accurate to about 1e-12, far beyond what an interval's rank needs).
    static func normalQuantile(_ p: Double) -> Double {
        precondition(p > 0 && p < 1)
        let a = [-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                 1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00]
        let b = [-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                 6.680131188771972e+01, -1.328068155288572e+01]
        let c = [-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                 -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00]
        let d = [7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00]
        let low = 0.02425
        var x: Double
        if p < low {
            let q = (-2 * log(p)).squareRoot()
            x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
                ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
        } else if p <= 1 - low {
            let q = p - 0.5, r = q * q
            x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
                (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
        } else {
            let q = (-2 * log(1 - p)).squareRoot()
            x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
                ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
        }
        let e = 0.5 * erfc(-x / 2.0.squareRoot()) - p
        let u = e * (2 * Double.pi).squareRoot() * exp(x * x / 2)
        x -= u / (1 + x * u / 2)
        return x
    }
}
