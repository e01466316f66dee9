#!/usr/bin/env bash
# Builds libdemikernel.so (release, Swift runtime linked statically) and installs it with include/demi/*.h and
# demikernel.pc under PREFIX (default: ./out/prefix).
#
#   scripts/install-c-abi.sh [PREFIX]
#   PKG_CONFIG_PATH=PREFIX/lib/pkgconfig cc -std=c99 app.c $(pkg-config --cflags --libs demikernel)
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${1:-$PWD/out/prefix}
mkdir -p "$prefix"
prefix=$(cd "$prefix" && pwd)
scratch=${DEMI_C_ABI_SCRATCH:-.build-cabi}

swift build -c release --scratch-path "$scratch" --product demikernel -Xswiftc -static-stdlib >&2
lib=$(swift build -c release --scratch-path "$scratch" --show-bin-path)/libdemikernel.so

mkdir -p "$prefix/lib/pkgconfig" "$prefix/include/demi"
install -m 0755 "$lib" "$prefix/lib/libdemikernel.so"
strip --strip-debug "$prefix/lib/libdemikernel.so" 2>/dev/null || true
install -m 0644 Sources/CDemikernelABI/include/demi/*.h "$prefix/include/demi/"
version=$(git describe --tags --always 2>/dev/null || echo 0.1)
sed -e "s|@PREFIX@|$prefix|" -e "s|@VERSION@|$version|" demikernel.pc.in > "$prefix/lib/pkgconfig/demikernel.pc"
echo "$prefix"
