#!/usr/bin/env bash
# catpowder against the Linux kernel on the same veth link: echo round trips (64 B, TCP and UDP) and echo
# throughput with 64 KiB messages, each configuration median of REPS runs; then one-way bulk TCP goodput in both
# directions (`demi goodput --sink/--source`), median of GOODPUT_REPS runs. Writes docs/benchmarks/catpowder.md.
#
#   sudo scripts/bench-catpowder.sh            (COUNT=20000 REPS=3 GOODPUT_BYTES=268435456 GOODPUT_REPS=7 by default)
#   sudo XDP=1 scripts/bench-catpowder.sh      also catpowder on AF_XDP (builds with the AFXDP trait; needs libxdp-dev)
#   SCRATCH=DIR                                build in DIR (swift build --scratch-path; default .build)
#   ONLY=echo|goodput                          run one part (the document then has only its tables): ONLY=echo
#                                              (echo rows, frame ping-pong rows and the stack's cost) takes a few
#                                              minutes, the goodput rounds longer
#
# Test hosts (scripts/testhosts.sh): host a has the echo server, host b the client, joined by a veth pair in
# 198.18.N.0/24 with no default route. Three setups on the same link:
#   kernel -> kernel   catnap ping (b, 198.18.N.2) -> catnap echo (a, kernel address 198.18.N.4)
#   kernel -> ours     catnap ping (b) -> catpowder echo (a, 198.18.N.1: an address only our stack has)
#   ours -> ours       catpowder ping (b, 198.18.N.3) -> catpowder echo (a, 198.18.N.1)
# Server pinned to CPU 1, client to CPU 0. All busy-poll (catnap poll_mode busy).
#
# No-stack baselines (64 B rows): `demi frame-pingpong` bounces raw Ethernet frames of the echo's frame length between
# the same hosts, bare (plain C on the AF_PACKET rings, and with XDP=1 on AF_XDP rings) and through catpowder's device
# layer (PacketSocketDevice, XDPSocketDevice). "The stack's own cost" is catpowder -> catpowder p50 minus the bare
# p50 of the same repetition (median over repetitions), and that divided by 4 per I/O.
#
# Goodput: a sink in host a (`demi goodput --sink`: accepts one connection, pops until GOODPUT_BYTES arrived, times
# the first byte to the last) and a source in host b (`demi goodput --source`: 16 pushes of 64 KiB outstanding), on
# the same addresses as above, so each direction pairs the kernel's TCP (catnap) and ours (catpowder) both ways:
# kernel -> kernel, catpowder -> kernel, kernel -> catpowder, catpowder -> catpowder (and the AF_XDP ones with
# XDP=1). The repetitions go round the setups in turn, and each run is divided by the kernel -> kernel run of the same
# round: this shared machine swings between throughput regimes (1 and 5 Gbit/s for the same setup), and a ratio
# within a round is steadier than a ratio of medians.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${COUNT:-20000}
reps=${REPS:-3}
gbytes=${GOODPUT_BYTES:-268435456}
greps=${GOODPUT_REPS:-7}
only=${ONLY:-}
[ "$(id -u)" = 0 ] || { echo "bench-catpowder: needs root (network namespaces, AF_PACKET)" >&2; exit 1; }
traits=()
[ "${XDP:-0}" = 1 ] && traits=(--traits AFXDP)
scratch=${SCRATCH:-.build}
swift build -c release --scratch-path "$scratch" "${traits[@]}" --product demi >/dev/null
demi=$(cd "$scratch/release" && pwd)/demi
name=bench$$
n=${SUBNET_INDEX:-78}
server=""
tmp=$(mktemp -d)
cleanup() {
    rm -rf "$tmp"
    [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
    scripts/testhosts.sh down "$name" >/dev/null 2>&1 || true
}
trap cleanup EXIT INT TERM
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
scripts/testhosts.sh up "$name" "$n" >/dev/null
ip netns exec "$name-a" ip addr add 198.18.$n.4/24 dev veth0

# run SERVER_ENV SERVER_ADDR CLIENT_ENV PROTO SIZE -> prints "p50_ns p99_ns gbit"
one() {
    local senv=$1 saddr=$2 cenv=$3 proto=$4 size=$5
    env $senv POLL_MODE=busy ip netns exec "$name-a" "$demi" echo --proto "$proto" --addr "$saddr:7" --cpu 1 \
        >/dev/null 2>&1 &
    server=$!
    sleep 0.5
    local out
    out=$(env $cenv POLL_MODE=busy ip netns exec "$name-b" "$demi" ping --proto "$proto" --addr "$saddr:7" \
        --size "$size" --count "$count" --cpu 0 2>&1) || { echo "client failed: $out" >&2; kill $server; exit 1; }
    kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true
    server=""
    python3 - "$out" <<'PY'
import re, sys
t = sys.argv[1]
def ns(v, u): return float(v) * {'ns': 1, 'µs': 1e3, 'ms': 1e6, 's': 1e9}[u]
p50 = re.search(r'p50 ([\d.]+) (ns|µs|ms|s)', t); p99 = re.search(r'p99 ([\d.]+) (ns|µs|ms|s)', t)
g = re.search(r'([\d.]+) Gbit/s', t)
print(ns(*p50.groups()), ns(*p99.groups()), g.group(1))
PY
}

median() { python3 -c 'import sys, statistics; v=[float(x) for x in sys.argv[1:]]; print(statistics.median(v))' "$@"; }

kernel_server="LIBOS=catnap"
ours_server="LIBOS=catpowder LINUX_INTERFACE_NAME=veth0 LOCAL_IPV4_ADDR=198.18.$n.1"
kernel_client="LIBOS=catnap"
ours_client="LIBOS=catpowder LINUX_INTERFACE_NAME=veth0 LOCAL_IPV4_ADDR=198.18.$n.3"
setups="kernel kernel-ours ours"
[ "${XDP:-0}" = 1 ] && setups="$setups kernel-xdp xdp"

# frames DEVICE LAYER SIZE -> "p50_ns p99_ns nan": `demi frame-pingpong` (no stack) reflecting in host a, pinging from b
frames() {
    local dev=$1 layer=$2 size=$3 out
    ip netns exec "$name-a" "$demi" frame-pingpong --role reflect --device "$dev" --layer "$layer" --iface veth0 \
        --count 100000000 --idle 60 --cpu 1 >"$tmp/reflector" 2>&1 &
    server=$!
    sleep 0.5
    out=$(ip netns exec "$name-b" "$demi" frame-pingpong --role ping --device "$dev" --layer "$layer" --iface veth0 \
        --peer-mac "$peer_mac" --size "$size" --count "$count" --cpu 0 2>&1) \
        || { echo "frame-pingpong failed: $out $(cat "$tmp/reflector")" >&2; kill "$server"; exit 1; }
    kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true
    server=""
    python3 - "$out" <<'PY'
import re, sys
t = sys.argv[1]
def ns(v, u): return float(v) * {'ns': 1, 'µs': 1e3, 'ms': 1e6, 's': 1e9}[u]
p50 = re.search(r'p50 ([\d.]+) (ns|µs|ms|s)', t); p99 = re.search(r'p99 ([\d.]+) (ns|µs|ms|s)', t)
print(ns(*p50.groups()), ns(*p99.groups()), 'nan')
PY
}
peer_mac=$(ip netns exec "$name-a" cat /sys/class/net/veth0/address)

label() {
    case $1 in
        kernel) echo "kernel -> kernel";; kernel-ours) echo "kernel -> catpowder";;
        ours) echo "catpowder -> catpowder";; kernel-xdp) echo "kernel -> catpowder (AF_XDP)";;
        xdp) echo "catpowder (AF_XDP) -> catpowder (AF_XDP)";;
        bare) echo "bare AF_PACKET frames (no stack)";; device) echo "PacketSocketDevice frames (no stack)";;
        xdp-bare) echo "bare AF_XDP frames (no stack)";; xdp-device) echo "XDPSocketDevice frames (no stack)";;
    esac
}

# Every repetition goes round the setups in turn (drift on this shared machine hits them alike); the frame ping-pong
# rows (64 B only) bounce frames of the echo's frame length: UDP 14 + 20 + 8 + 64 = 106 B, TCP with timestamps
# 14 + 20 + 32 + 64 = 130 B.
rows=() costrows=()
declare -A runs
[ "$only" = goodput ] || for proto in tcp udp; do
    for size in 64 65536; do
        [ "$proto" = udp ] && [ "$size" = 65536 ] && continue
        esetups=$setups
        if [ "$size" = 64 ]; then
            esetups="$esetups bare device"
            [ "${XDP:-0}" = 1 ] && esetups="$esetups xdp-bare xdp-device"
        fi
        flen=106
        [ "$proto" = tcp ] && flen=130
        for r in $(seq "$reps"); do
            for setup in $esetups; do
                case $setup in
                    kernel) s=$kernel_server; a=198.18.$n.4; c=$kernel_client;;
                    kernel-ours) s=$ours_server; a=198.18.$n.1; c=$kernel_client;;
                    ours) s=$ours_server; a=198.18.$n.1; c=$ours_client;;
                    kernel-xdp) s="$ours_server RAW_SOCKET_DEVICE=af_xdp"; a=198.18.$n.1; c=$kernel_client;;
                    xdp) s="$ours_server RAW_SOCKET_DEVICE=af_xdp"; a=198.18.$n.1; c="$ours_client RAW_SOCKET_DEVICE=af_xdp";;
                esac
                case $setup in
                    bare) read -r x y z < <(frames afpacket bare "$flen");;
                    device) read -r x y z < <(frames afpacket device "$flen");;
                    xdp-bare) read -r x y z < <(frames afxdp bare "$flen");;
                    xdp-device) read -r x y z < <(frames afxdp device "$flen");;
                    *) read -r x y z < <(one "$s" "$a" "$c" "$proto" "$size");;
                esac
                k=$proto.$size.$setup
                runs[$k.p50]="${runs[$k.p50]:-} $x" runs[$k.p99]="${runs[$k.p99]:-} $y" runs[$k.gb]="${runs[$k.gb]:-} $z"
                echo "rep $r $proto $size B $setup: p50 $x p99 $y ns, $z Gbit/s" >&2
            done
        done
        for setup in $esetups; do
            k=$proto.$size.$setup b=$proto.$size.kernel
            rows+=("$(python3 -c 'import sys, statistics as st
p,s,l,a,b,g,ka,kb,kg=sys.argv[1:]
a,b,g,ka,kb,kg=(st.median([float(x) for x in v.split()]) for v in (a,b,g,ka,kb,kg))
f=lambda x: "%.2f µs" % (x/1e3)
gb = "–" if g != g else "%.3f" % g
gr = "–" if g != g else "%.2fx" % (g/kg if kg else 0)
print("| %s | %s | %s | %s | %s | %.2fx | %.2fx | %s | %s |" % (p, s, l, f(a), f(b), a/ka, b/kb, gb, gr))' \
                "$proto" "$size B" "$(label $setup)" "${runs[$k.p50]}" "${runs[$k.p99]}" "${runs[$k.gb]}" \
                "${runs[$b.p50]}" "${runs[$b.p99]}" "${runs[$b.gb]}")")
        done
        [ "$size" = 64 ] || continue
        # The stack's own cost: per repetition (catpowder - bare) and (device - bare), then the median.
        for dev in afpacket afxdp; do
            if [ $dev = afpacket ]; then ours=ours bare=bare devl=device name_=AF_PACKET; else
                [ "${XDP:-0}" = 1 ] || continue
                ours=xdp bare=xdp-bare devl=xdp-device name_=AF_XDP
            fi
            costrows+=("$(python3 -c 'import sys, statistics as st
proto, dev, cat, bare, devl, ker = sys.argv[1:]
cat, bare, devl, ker = ([float(x) for x in v.split()] for v in (cat, bare, devl, ker))
d = [c - b for c, b in zip(cat, bare)]
dd = [x - b for x, b in zip(devl, bare)]
print("| %s | %s | %.2f µs | %.2f µs | %.2f µs | %.0f ns | %.0f ns | %.2fx | %.2fx |" % (proto, dev,
      st.median(bare) / 1e3, st.median(cat) / 1e3, st.median(d) / 1e3, st.median(d) / 4, st.median(dd) / 4,
      st.median(cat) / st.median(bare), st.median(ker) / st.median(bare)))' \
                "$proto" "$name_" "${runs[$proto.64.$ours.p50]}" "${runs[$proto.64.$bare.p50]}" \
                "${runs[$proto.64.$devl.p50]}" "${runs[$proto.64.kernel.p50]}")")
        done
    done
done

# goodput SINK_ENV SINK_ADDR SOURCE_ENV -> prints the sink's Gbit/s
goodput() {
    local senv=$1 saddr=$2 cenv=$3
    env $senv POLL_MODE=busy ip netns exec "$name-a" "$demi" goodput --sink "$saddr:5001" --bytes "$gbytes" --cpu 1 \
        >"$tmp/sink" 2>&1 &
    server=$!
    sleep 0.5
    local out
    out=$(env $cenv POLL_MODE=busy timeout 120 ip netns exec "$name-b" "$demi" goodput --source "$saddr:5001" \
        --bytes "$gbytes" --cpu 0 2>&1) || { echo "source failed: $out" >&2; kill "$server"; exit 1; }
    local waited=0
    while kill -0 "$server" 2>/dev/null && [ $waited -lt 300 ]; do sleep 0.1; waited=$((waited + 1)); done
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=""
    grep -q 'sink .* received' "$tmp/sink" || { echo "sink failed: $(cat "$tmp/sink"); source: $out" >&2; exit 1; }
    sed -n 's/.*received .* s: \([0-9.]*\) Gbit\/s.*/\1/p' "$tmp/sink"
}

grows=()
if [ "$only" != echo ]; then
    gsetups="kernel ours-kernel kernel-ours ours"
    [ "${XDP:-0}" = 1 ] && gsetups="$gsetups xdp-kernel kernel-xdp xdp"
    declare -A gs
    for _ in $(seq "$greps"); do
        for setup in $gsetups; do
            case $setup in  # sink env, sink address, source env
                kernel) s=$kernel_server; a=198.18.$n.4; c=$kernel_client;;
                ours-kernel) s=$kernel_server; a=198.18.$n.4; c=$ours_client;;
                kernel-ours) s=$ours_server; a=198.18.$n.1; c=$kernel_client;;
                ours) s=$ours_server; a=198.18.$n.1; c=$ours_client;;
                xdp-kernel) s=$kernel_server; a=198.18.$n.4; c="$ours_client RAW_SOCKET_DEVICE=af_xdp";;
                kernel-xdp) s="$ours_server RAW_SOCKET_DEVICE=af_xdp"; a=198.18.$n.1; c=$kernel_client;;
                xdp) s="$ours_server RAW_SOCKET_DEVICE=af_xdp"; a=198.18.$n.1; c="$ours_client RAW_SOCKET_DEVICE=af_xdp";;
            esac
            g=$(goodput "$s" "$a" "$c")
            gs[$setup]="${gs[$setup]:-} $g"
            echo "goodput $setup: $g Gbit/s" >&2
        done
    done
    for setup in $gsetups; do
        label=$(case $setup in kernel) echo "kernel -> kernel";; ours-kernel) echo "catpowder -> kernel";;
            kernel-ours) echo "kernel -> catpowder";; ours) echo "catpowder -> catpowder";;
            xdp-kernel) echo "catpowder (AF_XDP) -> kernel";; kernel-xdp) echo "kernel -> catpowder (AF_XDP)";;
            xdp) echo "catpowder (AF_XDP) -> catpowder (AF_XDP)";; esac)
        grows+=("$(python3 -c 'import sys, statistics
label, runs, base = sys.argv[1], [float(x) for x in sys.argv[2].split()], [float(x) for x in sys.argv[3].split()]
ratios = [r / k for r, k in zip(runs, base)]
print("| %s | %.2f | %.2f-%.2f | %.2fx | %.2f-%.2fx |" % (label, statistics.median(runs), min(runs), max(runs),
      statistics.median(ratios), min(ratios), max(ratios)))' \
            "$label" "${gs[$setup]}" "${gs[kernel]}")")
    done
fi

mkdir -p docs/benchmarks
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
{
cat <<DOC
# catpowder against the Linux kernel on the same link

Generated by \`sudo ${XDP:+XDP=$XDP }scripts/bench-catpowder.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'): $(nproc) vCPUs ($cpu), kernel
$(uname -r); load average $load_start at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end (other work shares this
machine). Two network namespaces joined by a veth pair (checksum offload and TSO off on both ends, as in the
tests); the server runs on CPU 1, the client on CPU 0, both busy-polling. Every ratio divides by the kernel -> kernel
figure measured in the same run.
DOC
if [ ${#rows[@]} -gt 0 ]; then
cat <<DOC

## Echo round trips

$count round trips per run (after 1,000 untimed), median of $reps runs; each run goes round every setup in turn.
"vs kernel" divides by the kernel -> kernel figure of the same row group (below 1 is faster for latency, above 1 is
faster for throughput). Throughput is the echo's bytes per second in each direction (one message in flight).

The "no stack" rows bounce raw Ethernet frames of the 64 B echo's frame length (UDP: 106 B, TCP with timestamps:
130 B) with \`demi frame-pingpong\` between the same two hosts, one frame in flight, the reflector swapping the MAC
addresses. The bare rows are plain C on the socket catpowder opens (AF_PACKET: TPACKET_V2 rings with qdisc bypass,
one \`sendto\` kick per frame; AF_XDP: libxdp's rings, generic XDP, copy mode, the reflector sending the received
UMEM frame back), with no stack and no buffer pool; the PacketSocketDevice / XDPSocketDevice rows do the same
through catpowder's device layer (pool buffers, the copies into and out of the rings).

| proto | size | client -> server | p50 | p99 | p50 vs kernel | p99 vs kernel | Gbit/s each way | vs kernel |
|---|---:|---|---:|---:|---:|---:|---:|---:|
DOC
printf '%s\n' "${rows[@]}"
fi
if [ ${#costrows[@]} -gt 0 ]; then
cat <<DOC

### The stack's own cost

catpowder -> catpowder's 64 B echo round trip minus the bare frame round trip on the same device in the same
repetition (median of the per-repetition differences): what our libOS adds on both ends (device layer,
Ethernet/ARP/IP/UDP or TCP, scheduler, PDPIX push and pop). "Per I/O" divides by 4 (client push and pop, server pop
and push). "Device layer per I/O" is (device frames - bare) / 4: the device's buffers and copies alone.

| proto | device | bare p50 | catpowder p50 | catpowder - bare | stack per I/O | device layer per I/O | catpowder / bare | kernel / bare |
|---|---|---:|---:|---:|---:|---:|---:|---:|
DOC
printf '%s\n' "${costrows[@]}"
fi
if [ ${#grows[@]} -gt 0 ]; then
cat <<DOC

## Bulk TCP goodput, one direction

$((gbytes >> 20)) MiB from a source in host b to a sink in host a per run, $greps rounds; each round runs every setup once,
in the order of the table. The sink (\`demi goodput --sink\`) pops and frees every array and times the first byte to
the last; the source (\`demi goodput --source\`) keeps 16 pushes of 64 KiB outstanding. "kernel" is catnap (the
kernel's TCP through busy-polled sockets), "catpowder" our stack. "vs kernel" is the median over the rounds of each
run divided by the kernel -> kernel run of the same round (above 1 is faster), with its range: this machine swings
between throughput regimes from one second to the next, which the Gbit/s ranges show.

| sender -> receiver | Gbit/s (median) | min-max | vs kernel (median of rounds) | range |
|---|---:|---:|---:|---:|
DOC
printf '%s\n' "${grows[@]}"
fi
} > docs/benchmarks/catpowder.md
cat docs/benchmarks/catpowder.md
