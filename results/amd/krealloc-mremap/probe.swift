import Slab
import Glibc
import Foundation
func now() -> Double { var t = timespec(); clock_gettime(CLOCK_MONOTONIC, &t); return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9 }
let mib = 1 << 20
for (from, to) in [(64, 128), (6, 40), (100, 400), (128, 32)] {
    var times: [Double] = []
    for _ in 0..<7 {
        let p = try! kmalloc(from * mib)
        memset(p, 1, from * mib)
        let t0 = now()
        let q = try! krealloc(p, to * mib)
        let t1 = now()
        times.append((t1 - t0) * 1e3)
        kfree(q)
    }
    times.sort()
    print("krealloc \(from) MiB -> \(to) MiB: median \(String(format: "%.3f", times[3])) ms, min \(String(format: "%.3f", times[0])), max \(String(format: "%.3f", times[6]))")
}
