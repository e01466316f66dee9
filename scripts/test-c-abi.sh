#!/usr/bin/env bash
# The C ABI suite: installs libdemikernel.so and include/demi/*.h into a temporary prefix, compiles the C programs
# with -std=c99 -Wall -Wextra -Werror against the installed headers (pkg-config), and runs them on catnap over
# 127.0.0.1. Prints "c-abi: N passed, N failed" last.
#
# Needs a C compiler and pkg-config; without them it skips with a message (a failure if DEMI_REQUIRE_ALL_SUITES=1).
set -uo pipefail
cd "$(dirname "$0")/.."

skip() {
    echo "c-abi: SKIPPED: $1"
    if [ "${DEMI_REQUIRE_ALL_SUITES:-0}" = 1 ]; then echo "c-abi: this suite is required (DEMI_REQUIRE_ALL_SUITES=1)"; exit 1; fi
    exit 0
}
command -v cc >/dev/null || skip "no C compiler (cc)"
command -v pkg-config >/dev/null || skip "pkg-config is not installed (apt-get install pkg-config)"

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "c-abi: ok   $1"; }
bad() { failed=$((failed + 1)); echo "c-abi: FAIL $1"; }

prefix=$(scripts/install-c-abi.sh "$work/prefix") || { echo "c-abi: build failed"; echo "c-abi: 0 passed, 1 failed"; exit 1; }
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
if ldd "$prefix/lib/libdemikernel.so" | grep -q libswift; then bad "libdemikernel.so needs no Swift libraries"; else ok "libdemikernel.so needs no Swift libraries (ldd)"; fi

cflags="-std=c99 -Wall -Wextra -Werror -D_DEFAULT_SOURCE $(pkg-config --cflags demikernel)"
libs=$(pkg-config --libs demikernel)
build() {  # name source [extra flags]
    if cc $cflags "${@:3}" "$2" -o "$work/$1" $libs; then ok "compile $1 (-Werror)"; else bad "compile $1"; return 1; fi
}
build sizes tests/c/sizes.c
build syscalls tests/c/syscalls.c
build udp examples/c/udp.c
build tcp examples/c/tcp.c
if cc -std=c11 -O2 -Wall -Wextra -Werror $(pkg-config --cflags demikernel) benchmarks/c/main.c -o "$work/bench" $libs; then
    ok "compile benchmarks/c/main.c"; else bad "compile benchmarks/c/main.c"; fi

"$work/sizes" && ok "sizes" || bad "sizes"
"$work/syscalls" && ok "syscalls (garbage arguments)" || bad "syscalls"

if cc -fsanitize=address $cflags tests/c/syscalls.c -o "$work/syscalls-asan" $libs 2>/dev/null; then
    if ASAN_OPTIONS=detect_leaks=0 "$work/syscalls-asan" >/dev/null; then ok "syscalls under AddressSanitizer"; else bad "syscalls under AddressSanitizer"; fi
else
    echo "c-abi: note: this compiler cannot build with -fsanitize=address; the ASan run is skipped"
    [ "${DEMI_REQUIRE_ALL_SUITES:-0}" = 1 ] && bad "AddressSanitizer unavailable"
fi

# Two processes per example: a server in the background, the client in the foreground.
port=$((30000 + RANDOM % 20000))
for prog in udp tcp; do
    for mode in push-pop ping-pong; do
        port=$((port + 1))
        timeout 60 "$work/$prog" --server "$mode" 127.0.0.1 "$port" 100 >"$work/server.log" 2>&1 &
        spid=$!
        pids+=("$spid")
        sleep 0.5
        timeout 60 "$work/$prog" --client "$mode" 127.0.0.1 "$port" 100 >"$work/client.log" 2>&1
        crc=$?
        wait "$spid"
        src=$?
        if [ $crc = 0 ] && [ $src = 0 ]; then ok "$prog $mode between two processes"; else
            bad "$prog $mode (client $crc, server $src)"; cat "$work/client.log" "$work/server.log"; fi
    done
done

if timeout 120 "$work/bench"; then ok "C benchmark"; else bad "C benchmark"; fi

echo "c-abi: $passed passed, $failed failed"
[ "$failed" = 0 ]
