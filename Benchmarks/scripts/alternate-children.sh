#!/usr/bin/env bash
# Two allocators on one cell, timed in alternating child processes of one bench binary:
#   Benchmarks/scripts/alternate-children.sh BENCH WORKLOAD SIZE A1 A2 [PAIRS] [REPETITIONS]
# e.g. Benchmarks/scripts/alternate-children.sh .build/release/bench pair 20 kmalloc kmalloc-sized 12
# Each child runs the cell's warm-up and REPETITIONS (default 15) timed repetitions and gives their
# median; A1's and A2's children alternate PAIRS times (default 12). Prints both medians of those
# medians and the median (and range) of A2/A1 over the adjacent pairs: on a host whose speed
# drifts, adjacent children see nearly the same machine, where `bench run` times one allocator's
# cell after another's. One thread, one size; `bench ab` is the tool for two builds of one allocator.
set -euo pipefail
bench=$1 workload=$2 size=$3 a1=$4 a2=$5 pairs=${6:-12} reps=${7:-15}
child() {
    "$bench" --child "{\"size\":$size,\"repetitions\":$reps,\"workload\":\"$workload\",\"allocator\":\"$1\",\"quick\":false,\"threads\":1}" \
        2>/dev/null | tail -n 1 | python3 -c '
import json, statistics, sys
d = json.loads(sys.stdin.read())
if d.get("status") != "ok": sys.exit("cell failed: %s" % d.get("message"))
print(statistics.median(r["seconds"] / r["ops"] * 1e9 for r in d["repetitions"]))'
}
for _ in $(seq "$pairs"); do echo "$(child "$a1") $(child "$a2")"; done | python3 -c '
import statistics, sys
rows = [tuple(map(float, l.split())) for l in sys.stdin]
a, b = [r[0] for r in rows], [r[1] for r in rows]
ratios = [y / x for x, y in rows]
print("%s %s B: %s median %.2f ns, %s median %.2f ns, %s/%s median %.2f [%.2f, %.2f] over %d pairs" % (
    sys.argv[1], sys.argv[2], sys.argv[3], statistics.median(a), sys.argv[4], statistics.median(b),
    sys.argv[4], sys.argv[3], statistics.median(ratios), min(ratios), max(ratios), len(rows)))' "$workload" "$size" "$a1" "$a2"
