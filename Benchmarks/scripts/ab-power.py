#!/usr/bin/env python3
"""How many samples per side the time A/B needs: the measurement behind ABPlan.defaultSamples
(README, "The regression gate").

Usage: ab-power.py BASE.json HEAD.json [trials]

Takes an A/A run of `bench ab --base HEAD --samples 30` (both sides the same code), pools each
cell's per-process samples (log ns/op, centred on each side's median) as that cell's noise, and
simulates gates: n samples from the noise against n samples from the noise shifted by +10%. A
trial catches the slowdown when, as `bench compare` decides, the Mann-Whitney p (exact null
counts) times the number of gated cells (Holm's first step) is below 0.05 and the lower end of
the Hodges-Lehmann 95% interval lies above the 5% threshold. Prints the catch rate per cell and n.
"""
import json
import math
import random
import sys


def load(path):
    out = {}
    for c in json.load(open(path))["results"]:
        k = (c["parameters"]["workload"], c["parameters"]["size"])
        out[k] = [math.log(r["seconds"] * 1e9 / r["ops"]) for r in c["repetitions"]]
    return out


def null_counts(m, n):
    prev = [[1] for _ in range(n + 1)]
    for i in range(1, m + 1):
        cur = [[1] for _ in range(n + 1)]
        for j in range(1, n + 1):
            f = [0] * (i * j + 1)
            for u, v in enumerate(cur[j - 1]):
                f[u + i] += v
            for u, v in enumerate(prev[j]):
                f[u] += v
            cur[j] = f
        prev = cur
    return prev[n]


CACHE = {}


def critical(m, n, alpha=0.05):
    if (m, n) not in CACHE:
        counts = null_counts(m, n)
        total = sum(counts)
        c, cum = None, 0
        for u, k in enumerate(counts):
            cum += k
            if cum / total <= alpha / 2:
                c = u
            else:
                break
        CACHE[(m, n)] = (c, counts, total)
    return CACHE[(m, n)]


def judge(x, y, cells, threshold=0.05):
    m, n = len(x), len(y)
    u = sum((b > a) + 0.5 * (b == a) for b in y for a in x)
    c, counts, total = critical(m, n)
    umax = max(u, m * n - u)
    p = min(1.0, 2 * sum(counts[int(round(umax)):]) / total)
    d = sorted(b - a for b in y for a in x)
    lower = d[c] if c is not None else None
    return p * cells < 0.05 and lower is not None and lower > math.log(1 + threshold)


base, head = load(sys.argv[1]), load(sys.argv[2])
trials = int(sys.argv[3]) if len(sys.argv) > 3 else 400
rng = random.Random(1)
cells = sorted(base)
print(f"catch rate of a 10% slowdown (threshold 5%, Holm over {len(cells)} cells), {trials} trials each")
for k in cells:
    mb = sorted(base[k])[len(base[k]) // 2]
    mh = sorted(head[k])[len(head[k]) // 2]
    noise = [v - mb for v in base[k]] + [v - mh for v in head[k]]
    line = f"  {k[0]:18s} {k[1]:4d} B:"
    for n in [8, 12, 16, 20, 24]:
        hits = sum(judge([rng.choice(noise) for _ in range(n)],
                         [rng.choice(noise) + math.log(1.10) for _ in range(n)], len(cells)) for _ in range(trials))
        line += f"  n={n}: {hits / trials:.2f}"
    print(line)
