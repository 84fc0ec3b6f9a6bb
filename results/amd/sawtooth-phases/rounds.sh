#!/bin/bash
# Interleaved rounds of sawtooth children at 20 B: the slab as built (bench-base), the slab with
# keep-magazines.patch applied (bench-keepmags), and mimalloc (preloaded into bench-base).
# Each child runs a warm-up and 3 repetitions; phases.py prints the medians of ns/op and of each
# phase (fill, drain, release call: the same split as the bench's CyclePhases) and RSS after.
#   usage: rounds.sh BENCH_BASE BENCH_KEEPMAGS ROUNDS
base=$1; keep=$2; rounds=${3:-4}
cell() { echo "{\"size\":20,\"repetitions\":3,\"workload\":\"sawtooth\",\"allocator\":\"$1\",\"quick\":false,\"threads\":1}"; }
here=$(dirname "$0")
for i in $(seq "$rounds"); do
    "$base" --child "$(cell slab)" > /tmp/rounds.out 2>/dev/null; python3 "$here/phases.py" /tmp/rounds.out slab
    "$keep" --child "$(cell slab)" > /tmp/rounds.out 2>/dev/null; python3 "$here/phases.py" /tmp/rounds.out keepmags
    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libmimalloc.so.2 "$base" --child "$(cell mimalloc)" > /tmp/rounds.out 2>/dev/null
    python3 "$here/phases.py" /tmp/rounds.out mimalloc
done
