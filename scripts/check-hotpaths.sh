#!/usr/bin/env bash
# The datapath regression check: instructions per operation of each hot path (valgrind's callgrind counts
# instructions, not time, so the figure is repeatable whatever else the machine is doing), against the limits in
# benchmarks/hotpath-limits.txt. Fails if any path costs more than its limit.
#
#   scripts/check-hotpaths.sh            check
#   scripts/check-hotpaths.sh --update   rewrite the limits: current counts plus 25% headroom
#
# Also checks, by disassembly, that no datapath function reads a stack slot with a load that store-to-load forwarding
# cannot serve (scripts/check-store-forwarding.py).
#
# Each path runs N1 and N2 iterations (demi-hotpaths PATH N); the difference divided by N2-N1 removes start-up
# costs. Heap allocations are counted the same way (valgrind's memcheck, "total heap usage"): every hot path must make
# none per operation, so any allocation the extra iterations make fails the check. Needs valgrind; skips without it
# (fails with DEMI_REQUIRE_ALL_SUITES=1).
set -euo pipefail
cd "$(dirname "$0")/.."
limits=benchmarks/hotpath-limits.txt
if ! command -v valgrind >/dev/null; then
    if [ "${DEMI_REQUIRE_ALL_SUITES:-}" = 1 ]; then echo "hotpaths: valgrind is required but missing" >&2; exit 1; fi
    echo "hotpaths: skipped (valgrind not installed)"
    exit 0
fi
swift build -c release --product demi-hotpaths >/dev/null

# No value on the datapath may be assembled in a stack slot from narrow stores and read back wide (a load the store
# buffer cannot forward stalls until the stores reach the cache): scripts/check-store-forwarding.py.
sf=0
python3 scripts/check-store-forwarding.py .build/release/demi-hotpaths 10Demikernel5LibOSC 16DemiSharedMemory \
    11DemiRuntime 11DemiBuffers 14DemiStackLibOS 7DemiInet 8DemiWire 11DemiDevices 17DemiKernelSockets \
    --except 10Demikernel13Configuration C5queue0A4Core15QueueDescriptor || sf=1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cp .build/release/demi-hotpaths "$dir/"
strip --strip-debug "$dir/demi-hotpaths" 2>/dev/null || true  # valgrind cannot read the DWARF of this toolchain

# Each run takes seconds; a path that stops making progress (a push waiting for room that the same thread would only
# make later) would otherwise hang CI, so every run has a time limit and then counts as not having run.
count() {
    timeout 300 valgrind --tool=callgrind --callgrind-out-file=/dev/null "$dir/demi-hotpaths" "$1" "$2" 2>&1 \
        | sed -n 's/.*Collected : \([0-9]*\).*/\1/p' || true
}

allocs() {
    timeout 300 valgrind --tool=memcheck --leak-check=no "$dir/demi-hotpaths" "$1" "$2" 2>&1 \
        | sed -n 's/.*total heap usage: \([0-9,]*\) allocs.*/\1/p' | tr -d , || true
}

paths=(operation buffer udp-echo tcp-echo tcp-bulk catmem catmem-stream)
declare -A per extra
for p in "${paths[@]}"; do
    case $p in operation|buffer) n1=10000 n2=110000;; *) n1=500 n2=2500;; esac
    a=$(count "$p" $n1) b=$(count "$p" $n2)
    [ -n "$a" ] && [ -n "$b" ] || { echo "hotpaths: $p did not run under callgrind (failed, or hung past 300 s)" >&2; exit 1; }
    per[$p]=$(( (b - a) / (n2 - n1) ))
    a=$(allocs "$p" 200) b=$(allocs "$p" 1200)
    [ -n "$a" ] && [ -n "$b" ] || { echo "hotpaths: $p did not run under memcheck (failed, or hung past 300 s)" >&2; exit 1; }
    extra[$p]=$(( b - a ))
done

if [ "${1:-}" = --update ]; then
    {
        echo "# Instructions per operation allowed on each hot path (scripts/check-hotpaths.sh; limits = measured + 25%)."
        echo "# Measured $(date -u '+%Y-%m-%d') with $(swift --version 2>&1 | head -1 | sed 's/.*version \([0-9.]*\).*/Swift \1/')."
        echo "# operation: spawn + complete + take; buffer: allocate + release 64 B; udp-echo, tcp-echo: one 64-byte round"
        echo "# trip between two user-space stacks over the in-memory link (4 I/Os, both stacks' polling included);"
        echo "# tcp-bulk: one 1448-byte segment pushed, sent, received and popped; catmem: one 64-byte round trip through a"
        echo "# shared-memory pipe between two catmem libOSes in one process, each called through the facade (LibOS) as"
        echo "# applications call it (4 I/Os); catmem-stream: one 64-byte message streamed through such a pipe (2 I/Os)."
        for p in "${paths[@]}"; do echo "$p $(( per[$p] * 5 / 4 ))  # measured ${per[$p]}"; done
    } > "$limits"
    cat "$limits"
    exit 0
fi

fail=0
for p in "${paths[@]}"; do
    limit=$(awk -v p="$p" '$1 == p { print $2 }' "$limits")
    if [ -z "$limit" ]; then echo "hotpaths: no limit for $p in $limits" >&2; fail=1; continue; fi
    status=ok
    if [ "${per[$p]}" -gt "$limit" ]; then status="OVER"; fail=1; fi
    if [ "${extra[$p]}" -ne 0 ]; then status="$status, ALLOCATES"; fail=1; fi
    printf 'hotpaths: %-10s %8d instructions/op (limit %d), %d heap allocations in 1000 more ops %s\n' "$p" "${per[$p]}" \
        "$limit" "${extra[$p]}" "$status"
done
if [ "$sf" -ne 0 ]; then echo "hotpaths: loads that cannot be forwarded on the datapath (see above)" >&2; fail=1; fi
exit $fail
