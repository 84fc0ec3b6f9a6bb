// swift-tools-version: 6.0
//
// SwiftSlab: a Bonwick-style object cache (kmem_cache) with a lock-free per-CPU magazine layer,
// and a benchmark suite that measures it against glibc, jemalloc, mimalloc and tcmalloc.
import PackageDescription

let package = Package(
    name: "SwiftSlab",
    products: [
        .library(name: "Slab", targets: ["Slab"]),
        .library(name: "SlabTop", targets: ["SlabTop"]),
        .executable(name: "slabinfo", targets: ["slabinfo"]),
        .executable(name: "bench", targets: ["bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.1.0"),
    ],
    targets: [
        // stdatomic wrappers, rseq per-CPU primitives, membarrier, thread-locals: the subtle parts in C.
        .target(name: "CSlab"),
        // The allocator: one layer a file (see the essay at the top of SlabCache.swift).
        .target(name: "Slab", dependencies: ["CSlab"]),
        // The readers of /proc/slabinfo and /proc/buddyinfo (the kernel's, or the text Slab writes for
        // its own caches) into Slab's row models, and their slabtop-style views.
        .target(name: "SlabTop", dependencies: ["Slab"]),
        // The seed lab and the system-wide slab view.
        .executableTarget(
            name: "slabinfo",
            dependencies: ["Slab", "SlabTop", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // The bench's C: valgrind's client requests for `bench instructions` (no-ops when valgrind's
        // headers are missing), the persona switch, who serves malloc, and the workloads' black hole,
        // ring atomics and spin hint (the bench does not import the allocator's private CSlab).
        .target(name: "CAllocBench", path: "Benchmarks/CAllocBench"),
        // What the bench and the tests both run on: the monotonic clock, standard error, pthreads,
        // SplitMix64, child processes.
        .target(name: "Harness", path: "Benchmarks/Harness"),
        // The benchmark suite: workloads, allocator adapters, runner, reports.
        .target(
            name: "AllocBench",
            dependencies: ["Slab", "CAllocBench", "Harness", .product(name: "Histogram", package: "hdrhistogram-swift")],
            path: "Benchmarks/AllocBench"
        ),
        .executableTarget(
            name: "bench",
            dependencies: ["AllocBench", "Harness", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Benchmarks/bench"
        ),
        .target(name: "TestSupport", dependencies: ["Slab", "CSlab", "Harness"], path: "Tests/TestSupport"),
        .testTarget(name: "SlabTests", dependencies: ["Slab", "SlabTop", "CSlab", "Harness", "TestSupport"]),
        // Fixtures/ holds the script that generated RankStatisticsFixtures.swift (with scipy).
        .testTarget(name: "AllocBenchTests", dependencies: ["AllocBench", "TestSupport"], exclude: ["Fixtures"]),
    ]
)
