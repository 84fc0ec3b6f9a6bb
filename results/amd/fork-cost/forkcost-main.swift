import Slab
import Glibc
func now() -> Double { var t = timespec(); clock_gettime(CLOCK_MONOTONIC, &t); return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9 }
let n = Int(CommandLine.arguments[1])!
var caches: [SlabCache] = []
for i in 0..<n { let c = try! SlabCache(name: "fc-\(i)", size: 64, align: 8, flags: []); _ = c.allocate(); caches.append(c) }
_ = try! kmalloc(100)
var samples: [Double] = []
for _ in 0..<200 {
    let t0 = now()
    let pid = fork()
    if pid == 0 { _exit(0) }
    let t1 = now()
    var st: Int32 = 0; waitpid(pid, &st, 0)
    samples.append((t1 - t0) * 1e6)
}
samples.sort()
print("caches \(n): fork() in the parent median \(Int(samples[100])) us, p10 \(Int(samples[20])), p90 \(Int(samples[180]))")
