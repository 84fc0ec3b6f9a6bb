#!/bin/bash
# Interleaved rounds of one-child cells: every variant once per round, in the same order, so that
# a slow spell of the host lands on all of them. Prints each variant's per-round medians (ns/op,
# the median of the child's repetitions) and the median of those.
#
#   rounds.sh ROUNDS WORKLOAD SIZE THREADS LABEL:BENCH:ALLOCATOR[:PRELOAD] ...
#
# BENCH is a release bench binary. The variants of this folder were built from a worktree of the
# commit (git worktree add /tmp/exp HEAD), with a patch applied and, for the C switches, flags:
#   base       no patch                    swift build -c release --scratch-path .build-base
#   strip      strip-checks.patch          ... -Xcc -DEXP_NO_OWNS -Xcc -DCSLAB_WITHOUT_DOUBLE_FREE_CHECK
#   s3         strip-checks.patch          ... the same, -Xcc -DEXP_NO_COUNT -Xcc -DEXP_NO_OWNER
#   skew       skewed-classes.patch        (no flags)
#   one-size   one-size.patch              EXP_SIZES=24 | 256 | linux in the environment
# mimalloc rows run the base binary with PRELOAD=/usr/lib/x86_64-linux-gnu/libmimalloc.so.2.
set -eu
R=$1; W=$2; S=$3; T=$4; shift 4
out=$(mktemp -d)
for r in $(seq 1 "$R"); do
  for spec in "$@"; do
    IFS=: read -r label bench allocator preload <<< "$spec"
    LD_PRELOAD=${preload:-} "$bench" --child "{\"size\":$S,\"repetitions\":5,\"workload\":\"$W\",\"allocator\":\"$allocator\",\"quick\":false,\"threads\":$T}" > "$out/$label-$r.json" 2>/dev/null || true
  done
done
labels=(); for spec in "$@"; do labels+=("${spec%%:*}"); done
python3 - "$out" "$R" "${labels[@]}" <<'PY'
import json, statistics, sys
out, R, labels = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
for v in labels:
    meds = []
    for r in range(1, R + 1):
        try:
            d = json.loads(open(f"{out}/{v}-{r}.json").readline())
            meds.append(round(statistics.median(x["seconds"] * 1e9 / x["ops"] for x in d["repetitions"]), 2))
        except Exception:
            meds.append(None)
    ok = [m for m in meds if m is not None]
    print(f"{v:12s}", meds, "median", statistics.median(ok) if ok else None)
PY
rm -rf "$out"
