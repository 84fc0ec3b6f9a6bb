#!/usr/bin/env python3
"""How much a cell's median moves between two ordinary runs of the same code: the measurement
behind `bench compare`'s between-run allowance (README, "The between-run allowance").

Usage: between-run-noise.py RUN1/latest.json RUN2/latest.json [RUN3/latest.json ...]

Every pair of runs is compared cell by cell: |log(median2 / median1)| for each one-thread cell
(workloads whose cells run one thread: not threads x2+, larson x2+, prodcons-*), every allocator.
Prints the quantiles over all cell pairs, per workload, and the slab's largest moves.
"""
import itertools
import json
import math
import statistics
import sys

MULTI = {"threads", "larson"}          # multi-thread above 1 thread
ALWAYS_MULTI = {"prodcons-1x1", "prodcons-nxn"}


def medians(path):
    run = json.load(open(path))
    out = {}
    for cell in run["results"]:
        if cell["status"] != "ok":
            continue
        p = cell["parameters"]
        if p["workload"] in ALWAYS_MULTI or (p["workload"] in MULTI and p["threads"] != 1):
            continue
        ns = [r["seconds"] * 1e9 / r["ops"] for r in cell["repetitions"]]
        out[(p["workload"], p["size"], p["threads"], p["allocator"])] = statistics.median(ns)
    return run["machine"]["commit"], run["runID"], out


def quantile(values, q):
    s = sorted(values)
    return math.expm1(s[min(len(s) - 1, int(q * len(s)))]) * 100


runs = [medians(p) for p in sys.argv[1:]]
if len(runs) < 2:
    sys.exit("give at least two latest.json files of the same code")
print("runs: " + ", ".join(f"{rid} (commit {c})" for c, rid, _ in runs))
moves, per_workload, slab = [], {}, []
for (_, _, a), (_, _, b) in itertools.combinations(runs, 2):
    for key in a.keys() & b.keys():
        d = abs(math.log(b[key] / a[key]))
        moves.append(d)
        per_workload.setdefault(key[0], []).append(d)
        if key[3] == "slab":
            slab.append((d, key))
print(f"one-thread cells, every allocator: {len(moves)} cell pairs; |change| median {quantile(moves, .5):.1f}%, "
      f"p90 {quantile(moves, .9):.1f}%, p95 {quantile(moves, .95):.1f}%, p99 {quantile(moves, .99):.1f}%, "
      f"max {quantile(moves, 1):.1f}%")
s = [d for d, _ in slab]
print(f"the slab alone: {len(s)} cell pairs; median {quantile(s, .5):.1f}%, p95 {quantile(s, .95):.1f}%, max {quantile(s, 1):.1f}%")
print("per workload (every allocator):")
for w in sorted(per_workload):
    v = per_workload[w]
    print(f"  {w:18s} {len(v):4d} pairs  median {quantile(v, .5):5.1f}%  p95 {quantile(v, .95):5.1f}%  max {quantile(v, 1):5.1f}%")
print("the slab's five largest moves:")
for d, key in sorted(slab)[-5:]:
    print(f"  {math.expm1(d) * 100:5.1f}%  {key[0]} {key[1]} B x{key[2]}")
