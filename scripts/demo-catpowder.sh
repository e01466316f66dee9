#!/usr/bin/env bash
# The catpowder demo: our user-space TCP/IP stack on AF_PACKET, talking to the Linux kernel and to itself.
#
#   sudo scripts/demo-catpowder.sh [COUNT]
#
# Creates two test hosts (network namespaces joined by a veth pair, 198.18.N.0/24, no default route; see
# scripts/testhosts.sh), starts `demi echo` on catpowder in host a (198.18.N.1, an address the kernel there does not
# have), then drives it from host b twice: with `demi ping` on catnap (the kernel's TCP and UDP, 198.18.N.2) and with
# `demi ping` on catpowder (our stack again, owning 198.18.N.3 on host b's interface). Removes everything at the end,
# also on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-20000}
[ "$(id -u)" = 0 ] || { echo "demo-catpowder: needs root (network namespaces, AF_PACKET)" >&2; exit 1; }

swift build -c release --product demi >/dev/null
demi=$PWD/.build/release/demi
name=demo$$
n=${SUBNET_INDEX:-77}
server=""
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
    scripts/testhosts.sh down "$name" >/dev/null 2>&1 || true
}
trap cleanup EXIT INT TERM
scripts/testhosts.sh up "$name" "$n" >/dev/null

for proto in tcp udp; do
    LIBOS=catpowder LINUX_INTERFACE_NAME=veth0 LOCAL_IPV4_ADDR=198.18.$n.1 \
        ip netns exec "$name-a" "$demi" echo --proto $proto --addr 198.18.$n.1:7 &
    server=$!
    sleep 1
    echo "== $proto: kernel client (catnap, 198.18.$n.2) -> our echo server (catpowder, 198.18.$n.1)"
    LIBOS=catnap ip netns exec "$name-b" "$demi" ping --proto $proto --addr 198.18.$n.1:7 --count "$count"
    echo "== $proto: our client (catpowder, 198.18.$n.3) -> our echo server (catpowder, 198.18.$n.1)"
    LIBOS=catpowder LINUX_INTERFACE_NAME=veth0 LOCAL_IPV4_ADDR=198.18.$n.3 \
        ip netns exec "$name-b" "$demi" ping --proto $proto --addr 198.18.$n.1:7 --count "$count"
    kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true
    server=""
done
