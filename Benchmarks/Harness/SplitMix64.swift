// SplitMix64 (Steele, Lea & Flood 2014): the one seeded generator of the bench and the tests. A
// fixed seed gives the same sequence on every run and for every allocator; cheap enough (an add,
// two multiplies) to run inside a workload's timed loop.
//
// @inlinable and @inline(__always): the workloads draw from it in their timed loops, which must
// compile to the same instructions as with a generator written in their own module.

public struct SplitMix64: RandomNumberGenerator {
    @usableFromInline var state: UInt64

    @inlinable
    public init(seed: UInt64) { state = seed }

    @inlinable @inline(__always)
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in 0..<bound (Lemire's multiply-high; the tiny bias is irrelevant here).
    @inlinable @inline(__always)
    public mutating func next(below bound: Int) -> Int {
        Int(truncatingIfNeeded: next().multipliedFullWidth(by: UInt64(bound)).high)
    }
}
