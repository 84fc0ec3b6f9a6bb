#!/bin/bash
# What a page fault costs on this machine, per 4 KiB: 16 MiB of anonymous memory written one byte
# per page, then given back with MADV_DONTNEED, 20 times; the best round is printed. Once in small
# pages, once in transparent huge pages (the region aligned to 2 MiB and advised MADV_HUGEPAGE),
# which is what a big cache's arenas get (Sources/Slab/PageSource.swift, section 6).
#
# usage: Benchmarks/scripts/page-fault-cost.sh      (needs a C compiler: cc)
set -eu
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/fault.c" <<'C'
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

static double cost(int huge) {
    const size_t bytes = 16 << 20, two = 2 << 20;
    char *raw = mmap(NULL, bytes + two, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED) { perror("mmap"); return -1; }
    char *p = (char *)(((uintptr_t)raw + two - 1) & ~(uintptr_t)(two - 1));
    madvise(p, bytes, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    double best = 1e9;
    for (int round = 0; round < 20; round++) {
        double t0 = now();
        for (size_t o = 0; o < bytes; o += 4096) p[o] = 1;
        madvise(p, bytes, MADV_DONTNEED);
        double t = now() - t0;
        if (t < best) best = t;
    }
    munmap(raw, bytes + two);
    return best * 1e9 / (bytes / 4096);
}

int main(void) {
    printf("small pages: %.0f ns per 4 KiB page (fault, zero, MADV_DONTNEED)\n", cost(0));
    printf("huge pages:  %.0f ns per 4 KiB of a 2 MiB page\n", cost(1));
    return 0;
}
C
cc -O2 -o "$tmp/fault" "$tmp/fault.c"
echo "THP mode: $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || echo 'no THP')"
"$tmp/fault"
