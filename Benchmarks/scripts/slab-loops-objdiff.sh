#!/bin/bash
# Compares the machine code of the benchmark loops that inline the slab's fast paths in two bench
# binaries, function by function, after masking code addresses and RIP-relative data offsets (which
# move whenever anything else in the binary changes). A restructuring of the allocator that
# claims to cost nothing should print "0 lines differ" for every function.
#
# usage: Benchmarks/scripts/slab-loops-objdiff.sh BASE_BENCH HEAD_BENCH
#   e.g. after `swift run -c release bench ab --instructions`:
#        Benchmarks/scripts/slab-loops-objdiff.sh .build-ab/scratch-base/release/bench .build/release/bench
set -eu
B=$1; H=$2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
nm "$B" | awk '{print $3}' > "$tmp/base.syms"
norm() { objdump -d --no-show-raw-insn "$1" --disassemble="$2" | sed -n '/^[0-9a-f]* </,$p' | tail -n +2 \
  | sed -E 's/^ *[0-9a-f]+:[[:space:]]*//; s/[0-9a-f]+ <([^>+]*)(\+0x[0-9a-f]+)?>/<\1\2>/g; s/#.*$//; s/-?0x[0-9a-f]+\(%rip\)/RIP/g'; }
for f in $(nm "$H" | grep -E "AllocBench.*(SlabAllocator|04Slab[A-Z0-9]).*(Tg5|Tg5Tm|Ttg5|Ttg5Tm)$" | awk '{print $3}'); do
  if grep -qxF -- "$f" "$tmp/base.syms"; then
    norm "$B" "$f" > "$tmp/b.s"; norm "$H" "$f" > "$tmp/h.s"
    n=$(diff "$tmp/b.s" "$tmp/h.s" | grep -c '^[<>]' || true)
    short=$(echo "$f" | sed -E 's/^\$s10AllocBench[0-9]+//; s/V10repetition.*/.repetition/; s/V13sampleLatency.*/.sampleLatency/')
    echo "$short: $(wc -l < "$tmp/h.s") instructions, $n lines differ"
  else echo "only in head: $f"; fi
done
