#!/usr/bin/env bash
# catnip (our stack on DPDK's net_af_packet) against catpowder (our stack on AF_PACKET), the Linux kernel, and a bare
# DPDK frame ping-pong with no stack, all on the same veth link. Writes docs/benchmarks/catnip.md.
#
#   sudo scripts/bench-catnip.sh       (REPS=5 COUNT=20000 GOODPUT_BYTES=134217728 GOODPUT_REPS=3 GOODPUT_CHUNK=32768
#                                       by default)
#   SCRATCH=DIR       build in DIR (swift build --scratch-path; default .build)
#   HUGE=0            DPDK on ordinary pages (--no-huge); default: reserve 2 MiB hugepages and mount hugetlbfs for
#                     the run (removed at the end), falling back to --no-huge if the kernel has none to give
#   ONLY=echo|goodput run one part (echo includes the many-clients rows)
#   MANY=N            connections (UDP: sockets) of the many-clients rows (default 16; 1: no such rows)
#   BIG=N             message size of the large-message echo rows (default 65000; 64: no such rows)
#   SUBNET_INDEX=N    198.18.N.0/24 (default 150)
#
# Test hosts (scripts/testhosts.sh): host a has the server, host b the client, a veth pair between them, 198.18.N.0/24,
# no default route. On the same link:
#   kernel -> kernel         catnap (b, 198.18.N.2) -> catnap (a, kernel address 198.18.N.4)
#   catpowder -> catpowder   catpowder (b, 198.18.N.3) -> catpowder (a, 198.18.N.1: an address only our stack has)
#   catnip -> catnip         catnip (b, 198.18.N.3) -> catnip (a, 198.18.N.1)
#   catnip, copying          the same with zero-copy transmit off on both ends (DPDK_ZERO_COPY=0: sgaalloc from the
#                            buffer pool, every frame copied into a fresh mbuf)
#   kernel -> catnip         catnap (b) -> catnip (a, 198.18.N.1)
#   bare DPDK frames         demi dpdk-pingpong: net_af_packet in both, rte_eth_tx_burst/rx_burst in C, no stack;
#                            frames as long as the echo's (UDP 64 B: 106 B; TCP 64 B with timestamps: 130 B)
#   DPDKDevice frames        the same through catnip's device layer (mbufs wrapped as buffers, zero-copy transmit)
# Server pinned to CPU 1, client to CPU 0, everything busy-polls. Every repetition goes round all setups in turn (so
# drift on this shared machine hits them alike); each figure is the median over REPS repetitions, each ratio is
# against kernel -> kernel of the same run. "Stack cost" is (catnip p50 - bare p50): our libOS on both ends (device
# layer, IP/UDP/TCP, scheduler, PDPIX) for one round trip; per I/O it is that divided by 4 (client push and pop,
# server pop and push).
set -euo pipefail
cd "$(dirname "$0")/.."
count=${COUNT:-20000}
reps=${REPS:-5}
gbytes=${GOODPUT_BYTES:-134217728}
greps=${GOODPUT_REPS:-3}
gchunk=${GOODPUT_CHUNK:-32768}
only=${ONLY:-}
n=${SUBNET_INDEX:-150}
[ "$(id -u)" = 0 ] || { echo "bench-catnip: needs root (network namespaces, AF_PACKET, DPDK)" >&2; exit 1; }
scratch=${SCRATCH:-.build}
swift build -c release --scratch-path "$scratch" --traits DPDK --product demi >/dev/null
demi=$(cd "$scratch/release" && pwd)/demi
name=bcn$$
tmp=$(mktemp -d)
server=""
pids=()
hugedir="" hugepages=0
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
    # The EAL's runtime directories of the processes this script started and killed (it removes its own on exit).
    for p in "${pids[@]}"; do rmdir "/var/run/dpdk/demi$p" 2>/dev/null || true; done
    rmdir /var/run/dpdk/rte /var/run/dpdk 2>/dev/null || true
    scripts/testhosts.sh down "$name" >/dev/null 2>&1 || true
    if [ -n "$hugedir" ]; then
        umount -l "$hugedir" 2>/dev/null || true
        rmdir "$hugedir" 2>/dev/null || true
    fi
    if [ "$hugepages" -gt 0 ]; then
        local f=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages now
        now=$(cat $f); echo $(( now > hugepages ? now - hugepages : 0 )) > $f
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

# Hugepages: two EALs at a time, 256 MB each (-m 256), so 300 pages of 2 MiB.
memory="--no-huge (ordinary pages)"
if [ "${HUGE:-1}" = 1 ]; then
    f=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
    before=$(cat $f); echo $((before + 300)) > $f; after=$(cat $f)
    hugepages=$((after - before))
    if [ "$hugepages" -ge 300 ] && [ "$(cat /sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages)" -ge 300 ]; then
        hugedir=/run/demi-bench-hugepages-$$
        mkdir -p "$hugedir"
        mount -t hugetlbfs -o pagesize=2M nodev "$hugedir"
        memory="2 MiB hugepages (--in-memory, hugetlbfs mounted for the run)"
    else
        echo "bench-catnip: the kernel found only $hugepages hugepages; using --no-huge" >&2
    fi
fi

# catnip's default net_af_packet rings hold 256 frames (of 64 KiB each, so that a reassembled datagram fits); the
# catnip-ring goodput row gives both ends RING_FRAMES instead, through upstream's dpdk.eal_init key.
ring_frames=${RING_FRAMES:-4096}
if [ -n "$hugedir" ]; then mem='"--in-memory", "--huge-dir='"$hugedir"'"'; else mem='"--no-huge", "--no-shconf"'; fi
printf 'dpdk:\n  eal_init: ["--no-pci", "--no-telemetry", "-l", "0", %s, "-m", "256", "--vdev=net_af_packet0,iface=veth0,framecnt=%s"]\n' \
    "$mem" "$ring_frames" >"$tmp/ring.yaml"

scripts/testhosts.sh up "$name" "$n" >/dev/null
ip netns exec "$name-a" ip addr add 198.18.$n.4/24 dev veth0
peer_mac=$(ip netns exec "$name-a" cat /sys/class/net/veth0/address)

# start_server ENV ARGS... (in host a, CPU 1); sets $server
start_server() {
    local senv=$1
    shift
    env $senv POLL_MODE=busy ip netns exec "$name-a" "$demi" "$@" --cpu 1 >"$tmp/server" 2>&1 &
    server=$!
    pids+=("$server")
}
stop_server() {
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=""
}

# parse OUTPUT -> "p50_ns p99_ns msgs_per_s" (the rate 0 if the output has none)
parse() {
    python3 - "$1" <<'PY'
import re, sys
t = sys.argv[1]
def ns(v, u): return float(v) * {'ns': 1, 'µs': 1e3, 'ms': 1e6, 's': 1e9}[u]
p50 = re.search(r'p50 ([\d.]+) (ns|µs|ms|s)', t); p99 = re.search(r'p99 ([\d.]+) (ns|µs|ms|s)', t)
rate = re.search(r'throughput ([\d.]+) msgs/s', t)
print(ns(*p50.groups()), ns(*p99.groups()), float(rate.group(1)) if rate else 0)
PY
}

# echo_one SETUP PROTO [CONNECTIONS [SIZE]] -> "p50 p99 msgs/s"
echo_one() {
    local setup=$1 proto=$2 conns=${3:-1} msize=${4:-64} senv cenv addr out
    case $setup in
        kernel) senv="LIBOS=catnap"; addr=198.18.$n.4; cenv="LIBOS=catnap";;
        catpowder) senv="LIBOS=catpowder LINUX_INTERFACE_NAME=veth0 LOCAL_IPV4_ADDR=198.18.$n.1"; addr=198.18.$n.1
                   cenv="LIBOS=catpowder LINUX_INTERFACE_NAME=veth0 LOCAL_IPV4_ADDR=198.18.$n.3";;
        catnip) senv="LIBOS=catnip LINUX_INTERFACE_NAME=veth0 LOCAL_IPV4_ADDR=198.18.$n.1"; addr=198.18.$n.1
                cenv="LIBOS=catnip LINUX_INTERFACE_NAME=veth0 LOCAL_IPV4_ADDR=198.18.$n.3";;
        catnip-copy) senv="LIBOS=catnip DPDK_ZERO_COPY=0 LINUX_INTERFACE_NAME=veth0 LOCAL_IPV4_ADDR=198.18.$n.1"
                     addr=198.18.$n.1
                     cenv="LIBOS=catnip DPDK_ZERO_COPY=0 LINUX_INTERFACE_NAME=veth0 LOCAL_IPV4_ADDR=198.18.$n.3";;
        kernel-catnip) senv="LIBOS=catnip LINUX_INTERFACE_NAME=veth0 LOCAL_IPV4_ADDR=198.18.$n.1"; addr=198.18.$n.1
                       cenv="LIBOS=catnap";;
        bare|device)
            local size=106
            [ "$proto" = tcp ] && size=130
            start_server "" dpdk-pingpong --role reflect --layer "$setup" --iface veth0 --count $((count + 1000)) --idle 30
            sleep 1
            out=$(ip netns exec "$name-b" "$demi" dpdk-pingpong --role ping --layer "$setup" --iface veth0 \
                --peer-mac "$peer_mac" --size $size --count "$count" --cpu 0 2>&1) \
                || { echo "dpdk-pingpong failed: $out $(cat "$tmp/server")" >&2; exit 1; }
            wait "$server" 2>/dev/null || true
            server=""
            parse "$out"
            return;;
    esac
    start_server "$senv" echo --proto "$proto" --addr "$addr:7"
    sleep 1
    local cpid
    local n_rt=$count
    [ "$msize" -gt 64 ] && n_rt=$(( count / 10 ))
    env $cenv POLL_MODE=busy ip netns exec "$name-b" "$demi" ping --proto "$proto" --addr "$addr:7" --size "$msize" \
        --count "$n_rt" --connections "$conns" --cpu 0 >"$tmp/client" 2>&1 &
    cpid=$!
    pids+=("$cpid")
    wait "$cpid" || { echo "client failed ($setup $proto): $(cat "$tmp/client") server: $(cat "$tmp/server")" >&2; exit 1; }
    stop_server
    parse "$(cat "$tmp/client")"
}

# goodput_one SETUP -> Gbit/s measured by the sink
goodput_one() {
    local setup=$1 senv cenv addr
    case $setup in
        kernel) senv="LIBOS=catnap"; addr=198.18.$n.4; cenv="LIBOS=catnap";;
        catpowder) senv="LIBOS=catpowder LINUX_INTERFACE_NAME=veth0 LOCAL_IPV4_ADDR=198.18.$n.1"; addr=198.18.$n.1
                   cenv="LIBOS=catpowder LINUX_INTERFACE_NAME=veth0 LOCAL_IPV4_ADDR=198.18.$n.3";;
        catnip) senv="LIBOS=catnip LINUX_INTERFACE_NAME=veth0 LOCAL_IPV4_ADDR=198.18.$n.1"; addr=198.18.$n.1
                cenv="LIBOS=catnip LINUX_INTERFACE_NAME=veth0 LOCAL_IPV4_ADDR=198.18.$n.3";;
        catnip-copy) senv="LIBOS=catnip DPDK_ZERO_COPY=0 LINUX_INTERFACE_NAME=veth0 LOCAL_IPV4_ADDR=198.18.$n.1"
                     addr=198.18.$n.1
                     cenv="LIBOS=catnip DPDK_ZERO_COPY=0 LINUX_INTERFACE_NAME=veth0 LOCAL_IPV4_ADDR=198.18.$n.3";;
        kernel-catnip) senv="LIBOS=catnip LINUX_INTERFACE_NAME=veth0 LOCAL_IPV4_ADDR=198.18.$n.1"; addr=198.18.$n.1
                       cenv="LIBOS=catnap";;
        catnip-kernel) senv="LIBOS=catnap"; addr=198.18.$n.4
                       cenv="LIBOS=catnip LINUX_INTERFACE_NAME=veth0 LOCAL_IPV4_ADDR=198.18.$n.3";;
        catnip-ring) senv="LIBOS=catnip LINUX_INTERFACE_NAME=veth0 LOCAL_IPV4_ADDR=198.18.$n.1 CONFIG_PATH=$tmp/ring.yaml"
                     addr=198.18.$n.1
                     cenv="LIBOS=catnip LINUX_INTERFACE_NAME=veth0 LOCAL_IPV4_ADDR=198.18.$n.3 CONFIG_PATH=$tmp/ring.yaml";;
    esac
    start_server "$senv" goodput --sink "$addr:5001" --bytes "$gbytes"
    sleep 1
    local cpid
    env $cenv POLL_MODE=busy timeout 300 ip netns exec "$name-b" "$demi" goodput --source "$addr:5001" \
        --bytes "$gbytes" --chunk "$gchunk" --cpu 0 >"$tmp/client" 2>&1 &
    cpid=$!
    pids+=("$cpid")
    wait "$cpid" || { echo "source failed ($setup): $(cat "$tmp/client") sink: $(cat "$tmp/server")" >&2; exit 1; }
    local waited=0
    while kill -0 "$server" 2>/dev/null && [ $waited -lt 300 ]; do sleep 0.1; waited=$((waited + 1)); done
    stop_server
    grep -q 'sink .* received' "$tmp/server" || { echo "sink failed ($setup): $(cat "$tmp/server")" >&2; exit 1; }
    sed -n 's/.*received .* s: \([0-9.]*\) Gbit\/s.*/\1/p' "$tmp/server"
}

label() {
    case $1 in
        kernel) echo "kernel -> kernel";; catpowder) echo "catpowder -> catpowder";; catnip) echo "catnip -> catnip";;
        catnip-copy) echo "catnip -> catnip, copying transmit (DPDK_ZERO_COPY=0)";;
        kernel-catnip) echo "kernel -> catnip";; catnip-kernel) echo "catnip -> kernel";;
        catnip-ring) echo "catnip -> catnip, net_af_packet rings of $ring_frames frames";;
        bare) echo "bare DPDK frames (no stack)";; device) echo "DPDKDevice frames (no stack)";;
    esac
}

# collect TAG CONNECTIONS SIZE SETUP...: REPS rounds, each going round both protocols and every setup in turn (so
# drift hits them alike); each run's p50, p99 (ns) and msgs/s are appended to runs[TAG.PROTO.SETUP.p50|p99|rate].
declare -A runs
collect() {
    local tag=$1 conns=$2 size=$3 r proto setup x y z
    shift 3
    for r in $(seq "$reps"); do
        for proto in udp tcp; do
            for setup in "$@"; do
                echo_one "$setup" "$proto" "$conns" "$size" >"$tmp/result"
                read -r x y z <"$tmp/result"
                runs[$tag.$proto.$setup.p50]="${runs[$tag.$proto.$setup.p50]:-} $x"
                runs[$tag.$proto.$setup.p99]="${runs[$tag.$proto.$setup.p99]:-} $y"
                runs[$tag.$proto.$setup.rate]="${runs[$tag.$proto.$setup.rate]:-} $z"
                echo "$tag rep $r $proto $setup: p50 $x p99 $y ns, $z msgs/s" >&2
            done
        done
    done
}

erows=() costrows=()
if [ "$only" != goodput ]; then
    esetups="kernel catpowder catnip catnip-copy kernel-catnip bare device"
    collect echo 1 64 $esetups
    for proto in udp tcp; do
        for setup in $esetups; do
            erows+=("$(python3 -c 'import sys, statistics as st
proto, label, a, b, ka, kb = sys.argv[1:]
a, b, ka, kb = ([float(x) for x in v.split()] for v in (a, b, ka, kb))
f = lambda x: "%.2f µs" % (x / 1e3)
print("| %s | %s | %s | %s-%s | %s | %.2fx | %.2fx |" % (proto, label, f(st.median(a)), f(min(a)), f(max(a)),
      f(st.median(b)), st.median(a) / st.median(ka), st.median(b) / st.median(kb)))' \
                "$proto" "$(label $setup)" "${runs[echo.$proto.$setup.p50]}" "${runs[echo.$proto.$setup.p99]}" \
                "${runs[echo.$proto.kernel.p50]}" "${runs[echo.$proto.kernel.p99]}")")
        done
        # Stack cost: per repetition (catnip - bare) and (device - bare), then the median.
        costrows+=("$(python3 -c 'import sys, statistics as st
proto, cat, bare, dev, pow_, ker = sys.argv[1:]
cat, bare, dev, pow_, ker = ([float(x) for x in v.split()] for v in (cat, bare, dev, pow_, ker))
d = [c - b for c, b in zip(cat, bare)]
dd = [x - b for x, b in zip(dev, bare)]
print("| %s | %.2f µs | %.2f µs | %.2f µs | %.0f ns | %.0f ns | %.2fx | %.2fx |" % (proto, st.median(bare) / 1e3,
      st.median(cat) / 1e3, st.median(d) / 1e3, st.median(d) / 4, st.median(dd) / 4,
      st.median(cat) / st.median(bare), st.median(ker) / st.median(bare)))' \
            "$proto" "${runs[echo.$proto.catnip.p50]}" "${runs[echo.$proto.bare.p50]}" "${runs[echo.$proto.device.p50]}" \
            "${runs[echo.$proto.catpowder.p50]}" "${runs[echo.$proto.kernel.p50]}")")
    done
fi

# Many clients: MANY connections (or UDP sockets) on the client, one 64 B message in flight on each.
mrows=()
many=${MANY:-16}
if [ "$only" != goodput ] && [ "$many" -gt 1 ]; then
    msetups="kernel catpowder catnip"
    collect many "$many" 64 $msetups
    for proto in udp tcp; do
        for setup in $msetups; do
            mrows+=("$(python3 -c 'import sys, statistics as st
proto, label, p, r, kp, kr = sys.argv[1:]
p, r, kp, kr = ([float(x) for x in v.split()] for v in (p, r, kp, kr))
print("| %s | %s | %.2f µs | %.0f | %.0f-%.0f | %.2fx | %.2fx |" % (proto, label, st.median(p) / 1e3, st.median(r),
      min(r), max(r), st.median(p) / st.median(kp), st.median(r) / st.median(kr)))' \
                "$proto" "$(label $setup)" "${runs[many.$proto.$setup.p50]}" "${runs[many.$proto.$setup.rate]}" \
                "${runs[many.$proto.kernel.p50]}" "${runs[many.$proto.kernel.rate]}")")
        done
    done
fi

# Large messages: BIG-byte echo (UDP: one datagram in IP fragments), one message in flight.
brows=()
big=${BIG:-65000}
if [ "$only" != goodput ] && [ "$big" -gt 64 ]; then
    bsetups="kernel catpowder catnip"
    collect big 1 "$big" $bsetups
    for proto in udp tcp; do
        for setup in $bsetups; do
            brows+=("$(python3 -c 'import sys, statistics as st
proto, label, size, p, r, kp, kr = sys.argv[1:]
p, r, kp, kr = ([float(x) for x in v.split()] for v in (p, r, kp, kr))
g = st.median(r) * int(size) * 8 / 1e9
print("| %s | %s | %.1f µs | %.2f | %.2fx | %.2fx |" % (proto, label, st.median(p) / 1e3, g,
      st.median(p) / st.median(kp), st.median(r) / st.median(kr)))' \
                "$proto" "$(label $setup)" "$big" "${runs[big.$proto.$setup.p50]}" "${runs[big.$proto.$setup.rate]}" \
                "${runs[big.$proto.kernel.p50]}" "${runs[big.$proto.kernel.rate]}")")
        done
    done
fi

grows=()
if [ "$only" != echo ]; then
    gsetups="kernel catpowder catnip catnip-copy kernel-catnip catnip-kernel catnip-ring"
    declare -A gs
    for r in $(seq "$greps"); do
        for setup in $gsetups; do
            goodput_one "$setup" >"$tmp/result"
            g=$(cat "$tmp/result")
            gs[$setup]="${gs[$setup]:-} $g"
            echo "goodput rep $r $setup: $g Gbit/s" >&2
        done
    done
    for setup in $gsetups; do
        grows+=("$(python3 -c 'import sys, statistics
label, runs, base = sys.argv[1], [float(x) for x in sys.argv[2].split()], [float(x) for x in sys.argv[3].split()]
m, k = statistics.median(runs), statistics.median(base)
print("| %s | %.2f | %.2f-%.2f | %.2fx |" % (label, m, min(runs), max(runs), m / k))' \
            "$(label $setup)" "${gs[$setup]}" "${gs[kernel]}")")
    done
fi

mkdir -p docs/benchmarks
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
{
cat <<DOC
# catnip (DPDK) against catpowder, the kernel and bare DPDK on the same link

Generated by \`sudo scripts/bench-catnip.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC') at commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'):
$(nproc) vCPUs ($cpu), kernel $(uname -r), DPDK $(dpkg-query -W -f '${Version}' libdpdk-dev 2>/dev/null || echo '?')
on $memory. Two network namespaces joined by a veth pair (checksum offload and TSO off on both ends); DPDK runs
\`net_af_packet\` on each end's veth (\`--no-pci\`, one lcore, ring frames that hold a whole datagram). The server runs
on CPU 1, the client on CPU 0, everything busy-polls. Each repetition goes round every setup in turn; figures are
medians over the repetitions, ratios are against kernel -> kernel of the same run. **This is a shared 2-vCPU VM:
compare ratios, not absolute times.** No NIC here: \`net_af_packet\` moves every frame through the kernel's packet
socket rings (a \`sendto\` kick per transmit burst), so catnip pays AF_PACKET's costs plus DPDK's; on a real NIC the
bare ping-pong would be a few microseconds lower and the stack's share larger.
DOC
if [ ${#erows[@]} -gt 0 ]; then
cat <<DOC

## 64-byte echo round trips

\`demi echo\` in host a, \`demi ping --size 64\` in host b, one message in flight, $count timed round trips per run
(after 1,000 untimed), $reps repetitions. The bare rows bounce raw Ethernet frames of the echo's frame length (UDP: 106
B, TCP with timestamps: 130 B) with \`demi dpdk-pingpong\`: \`rte_eth_tx_burst\`/\`rte_eth_rx_burst\` in C, the
reflector swapping the MAC addresses of the same mbuf; the DPDKDevice rows do the same through catnip's device layer.

| proto | client -> server | p50 | p50 range | p99 | p50 vs kernel | p99 vs kernel |
|---|---|---:|---:|---:|---:|---:|
DOC
printf '%s\n' "${erows[@]}"
cat <<DOC

### The stack's own cost

catnip's round trip minus the bare DPDK frame round trip of the same repetition (median of the per-repetition
differences): what our libOS adds on both ends (device layer, Ethernet/ARP/IP/UDP or TCP, scheduler, PDPIX push and
pop). "Per I/O" divides by 4 (client push and pop, server pop and push). "Device layer per I/O" is (DPDKDevice frames
- bare) / 4: the mbuf wrapping and the buffer pool alone.

| proto | bare DPDK p50 | catnip p50 | catnip - bare | stack per I/O | device layer per I/O | catnip / bare | kernel / bare |
|---|---:|---:|---:|---:|---:|---:|---:|
DOC
printf '%s\n' "${costrows[@]}"
fi
if [ ${#mrows[@]} -gt 0 ]; then
cat <<DOC

## Many clients

\`demi ping --connections $many\`: $many TCP connections (UDP: $many sockets) on the client thread in host b, one
64-byte message in flight on each, against the same echo servers; $count round trips per run, $reps repetitions.
Messages per second are the client's; "vs kernel" divides by kernel -> kernel (p50: below 1 is faster; msgs/s:
above 1 is faster).

| proto | client -> server | p50 | msgs/s (median) | range | p50 vs kernel | msgs/s vs kernel |
|---|---|---:|---:|---:|---:|---:|
DOC
printf '%s\n' "${mrows[@]}"
fi
if [ ${#brows[@]} -gt 0 ]; then
cat <<DOC

## Large messages

\`demi ping --size $big\`, one message in flight ($((count / 10)) round trips per run, $reps repetitions): UDP sends
each message as one datagram in IP fragments (catnip's net_af_packet gets it back whole from the kernel, catpowder
reassembles it), TCP in segments. Gbit/s is each way; "vs kernel" divides by kernel -> kernel (p50: below 1 is
faster; throughput: above 1 is faster).

| proto | client -> server | p50 | Gbit/s each way | p50 vs kernel | throughput vs kernel |
|---|---|---:|---:|---:|---:|
DOC
printf '%s\n' "${brows[@]}"
fi
if [ ${#grows[@]} -gt 0 ]; then
cat <<DOC

## Bulk TCP goodput, one way

\`demi goodput --sink\` in host a (times the first byte to the last), \`demi goodput --source\` in host b (16 pushes of
$((gchunk / 1024)) KiB outstanding, from \`sgaalloc\`: on catnip an mbuf, which TCP's segments are attached to instead
of copied, unless DPDK_ZERO_COPY=0), $((gbytes / 1048576)) MiB per run, $greps repetitions. catnip's \`net_af_packet\`
rings hold 256 frames by default, each 64 KiB (the driver has the kernel reassemble IPv4 fragments, so a frame must
hold a whole datagram), and catnip offers a TCP window of at most three quarters of the ring in segments (280 KB;
a 1 MiB window let a sender's burst overflow the ring and lose about 1 % of the segments). The last row gives both
ends $ring_frames-frame rings (about $((ring_frames / 16)) MB of kernel memory per ring, a window of the stack's full
1 MiB) with \`dpdk.eal_init\`. Goodput on this shared machine varies by 2-3x between repetitions (see the ranges).

| sender -> receiver | Gbit/s (median) | range | vs kernel |
|---|---:|---:|---:|
DOC
printf '%s\n' "${grows[@]}"
fi
} > docs/benchmarks/catnip.md
cat docs/benchmarks/catnip.md

