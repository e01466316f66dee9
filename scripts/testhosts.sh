#!/usr/bin/env bash
# Test hosts: two network namespaces NAME-a and NAME-b joined by a veth pair (veth0 in each), as the Swift fixture
# (Tests/TestHostFixture/TestHosts.swift) builds them.
#
#   scripts/testhosts.sh up NAME [SUBNET_INDEX]    create; SUBNET_INDEX N (0-255, default 0) gives 198.18.N.0/24
#   scripts/testhosts.sh down NAME                 remove both namespaces (and so the veth pair); idempotent
#   scripts/testhosts.sh exec NAME a|b CMD...      run a command in a namespace
#   scripts/testhosts.sh impair NAME a|b "loss 5%" random loss on veth0's ingress in that namespace (nftables)
#   scripts/testhosts.sh impair NAME a|b clear     remove the impairment
#   scripts/testhosts.sh bridged NAME [SUBNET_INDEX]  three namespaces NAME-a <-> NAME-m <-> NAME-b (see below)
#   scripts/testhosts.sh kbridge NAME on|off       join (or part) NAME-m's two ends with a kernel bridge: a clean link
#
# Layout: NAME-b's veth0 has 198.18.N.2/24 (the kernel peer). NAME-a's veth0 has NO address: the user-space stack
# owns 198.18.N.1 there, so the kernel in NAME-a must not answer ARP or TCP for it. No default route anywhere.
# TX/RX checksum offload and TSO are switched off on both ends (with ethtool, if installed): veth otherwise hands
# partially checksummed frames to AF_PACKET and marks received frames "checksum verified" for the peer kernel.
# IPv6 is disabled on both ends (no router solicitations or DAD frames in captures).
#
# Bridged layout (Tests/TestHostFixture/BridgedHosts.swift): NAME-a veth0 (no address) <-> vma in NAME-m, vmb in
# NAME-m <-> veth0 in NAME-b (198.18.N.2/24). NAME-m has no addresses and its two ends are promiscuous: nothing
# crosses until a bridge runs there, either the user-space ImpairmentBridge (the tests' startBridge: loss,
# duplication, reordering, corruption, delay, jitter, rate) or, for a clean link, `kbridge NAME on`. `exec NAME m`
# runs a command in the bridge namespace; `down NAME` removes all three.
#
# Needs root. Creates the veth pair directly inside the namespaces: nothing is made or touched in the caller's
# namespace.
set -euo pipefail

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
die() { echo "testhosts: $*" >&2; exit 1; }

[ $# -ge 2 ] || usage
cmd=$1 name=$2
shift 2
case "$name" in *[!A-Za-z0-9_.-]*|'') die "bad NAME '$name' (letters, digits, _ . -)";; esac
nsa="$name-a" nsb="$name-b" nsm="$name-m"

ns_of() {
    case "$1" in a) echo "$nsa";; b) echo "$nsb";; *) die "host must be a or b, not '$1'";; esac
}

exists() { ip netns list | awk '{print $1}' | grep -qx "$1"; }

up() {
    local n=${1:-0}
    case "$n" in ''|*[!0-9]*) die "SUBNET_INDEX must be 0-255";; esac
    [ "$n" -le 255 ] || die "SUBNET_INDEX must be 0-255"
    [ "$(id -u)" = 0 ] || die "needs root"
    command -v ip >/dev/null || die "no ip command (iproute2)"
    exists "$nsa" && die "$nsa exists (run: $0 down $name)"
    exists "$nsb" && die "$nsb exists (run: $0 down $name)"
    trap 'echo "testhosts: setup failed, cleaning up" >&2; down' ERR
    ip netns add "$nsa"
    ip netns add "$nsb"
    ip link add veth0 netns "$nsa" type veth peer name veth0 netns "$nsb"
    for ns in "$nsa" "$nsb"; do
        ip netns exec "$ns" sh -c 'echo 1 > /proc/sys/net/ipv6/conf/veth0/disable_ipv6;
                                   echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6' || true
        ip -n "$ns" link set lo up
        ip -n "$ns" link set veth0 up
    done
    ip -n "$nsb" addr add "198.18.$n.2/24" dev veth0
    if command -v ethtool >/dev/null; then
        for ns in "$nsa" "$nsb"; do
            ip netns exec "$ns" ethtool -K veth0 tx off rx off tso off >/dev/null 2>&1 ||
                echo "testhosts: warning: ethtool -K veth0 tx off rx off failed in $ns" >&2
        done
        offload="off (ethtool)"
    elif command -v python3 >/dev/null; then
        # No ethtool: the same switches through SIOCETHTOOL from python3 (ETHTOOL_STXCSUM, _SRXCSUM, _STSO).
        for ns in "$nsa" "$nsb"; do
            ip netns exec "$ns" python3 - <<'PY' || { echo "testhosts: SIOCETHTOOL failed in $ns" >&2; false; }
import ctypes, fcntl, socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for cmd in (0x17, 0x15, 0x1f):                      # tx csum, rx csum, tso: off
    ev = ctypes.create_string_buffer(struct.pack("II", cmd, 0))
    fcntl.ioctl(s, 0x8946, struct.pack("16sP", b"veth0", ctypes.addressof(ev)) + b"\0" * 16)
ev = ctypes.create_string_buffer(struct.pack("II", 0x16, 0))  # read back tx csum
fcntl.ioctl(s, 0x8946, struct.pack("16sP", b"veth0", ctypes.addressof(ev)) + b"\0" * 16)
assert struct.unpack("II", ev.raw[:8])[1] == 0, "tx checksum offload still on"
PY
        done
        offload="off (SIOCETHTOOL via python3; ethtool is not installed)"
    else
        echo "testhosts: note: ethtool is not installed, so checksum offload stays ON for the veth pair:" \
             "kernel-sent TCP/UDP frames may reach AF_PACKET with partial checksums." \
             "Install ethtool, or use the Swift fixture (it switches offload off with SIOCETHTOOL)." >&2
        offload="ON (no ethtool)"
    fi
    trap - ERR
    local maca macb
    maca=$(ip -n "$nsa" -o link show dev veth0 | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')
    macb=$(ip -n "$nsb" -o link show dev veth0 | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')
    echo "$nsa veth0 mac $maca ip (none: the user-space stack is 198.18.$n.1)"
    echo "$nsb veth0 mac $macb ip 198.18.$n.2/24"
    echo "checksum offload: $offload"
}

# Switches TX/RX checksum offload and TSO off on device $2 in namespace $1 (ethtool, else SIOCETHTOOL via python3).
offload_off() {
    local ns=$1 dev=$2
    if command -v ethtool >/dev/null; then
        ip netns exec "$ns" ethtool -K "$dev" tx off rx off tso off >/dev/null 2>&1 ||
            echo "testhosts: warning: ethtool -K $dev tx off rx off failed in $ns" >&2
    elif command -v python3 >/dev/null; then
        ip netns exec "$ns" python3 - "$dev" <<'PY' || { echo "testhosts: SIOCETHTOOL failed in $ns" >&2; false; }
import ctypes, fcntl, socket, struct, sys
dev = sys.argv[1].encode()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for cmd in (0x17, 0x15, 0x1f):                      # tx csum, rx csum, tso: off
    ev = ctypes.create_string_buffer(struct.pack("II", cmd, 0))
    fcntl.ioctl(s, 0x8946, struct.pack("16sP", dev, ctypes.addressof(ev)) + b"\0" * 16)
PY
    else
        echo "testhosts: note: neither ethtool nor python3: checksum offload stays ON for $dev in $ns" >&2
    fi
}

bridged() {
    local n=${1:-0}
    case "$n" in ''|*[!0-9]*) die "SUBNET_INDEX must be 0-255";; esac
    [ "$n" -le 255 ] || die "SUBNET_INDEX must be 0-255"
    [ "$(id -u)" = 0 ] || die "needs root"
    command -v ip >/dev/null || die "no ip command (iproute2)"
    local ns
    for ns in "$nsa" "$nsm" "$nsb"; do exists "$ns" && die "$ns exists (run: $0 down $name)"; done
    trap 'echo "testhosts: setup failed, cleaning up" >&2; down' ERR
    for ns in "$nsa" "$nsm" "$nsb"; do ip netns add "$ns"; done
    ip link add veth0 netns "$nsa" type veth peer name vma netns "$nsm"
    ip link add veth0 netns "$nsb" type veth peer name vmb netns "$nsm"
    for ns in "$nsa" "$nsm" "$nsb"; do
        ip netns exec "$ns" sh -c 'for f in /proc/sys/net/ipv6/conf/*/disable_ipv6; do echo 1 > "$f"; done' || true
        ip -n "$ns" link set lo up
    done
    ip -n "$nsm" link set vma promisc on
    ip -n "$nsm" link set vmb promisc on
    local pair
    for pair in "$nsa veth0" "$nsm vma" "$nsm vmb" "$nsb veth0"; do
        set -- $pair
        ip -n "$1" link set "$2" up
        offload_off "$1" "$2"
    done
    ip -n "$nsb" addr add "198.18.$n.2/24" dev veth0
    trap - ERR
    local maca macb
    maca=$(ip -n "$nsa" -o link show dev veth0 | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')
    macb=$(ip -n "$nsb" -o link show dev veth0 | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')
    echo "$nsa veth0 mac $maca ip (none: the user-space stack is 198.18.$n.1)"
    echo "$nsm vma <-> $nsa, vmb <-> $nsb (no addresses; no path until a bridge runs: kbridge $name on, or an ImpairmentBridge)"
    echo "$nsb veth0 mac $macb ip 198.18.$n.2/24"
}

kbridge() {
    exists "$nsm" || die "no namespace $nsm (run: $0 bridged $name)"
    case "${1:-}" in
        on)
            ip -n "$nsm" link add br0 type bridge 2>/dev/null || true
            ip netns exec "$nsm" sh -c 'echo 1 > /proc/sys/net/ipv6/conf/br0/disable_ipv6' || true
            ip -n "$nsm" link set vma master br0
            ip -n "$nsm" link set vmb master br0
            ip -n "$nsm" link set br0 up
            echo "kernel bridge br0 joins vma and vmb in $nsm";;
        off)
            ip -n "$nsm" link del br0 2>/dev/null || true
            echo "kernel bridge removed from $nsm";;
        *) die "kbridge NAME on|off";;
    esac
}

down() {
    local ns
    for ns in "$nsa" "$nsm" "$nsb"; do
        if exists "$ns"; then ip netns del "$ns"; fi
    done
}

impair() {
    [ $# -ge 2 ] || die 'impair NAME a|b "loss P%" | clear'
    local ns spec
    ns=$(ns_of "$1")
    spec=$2
    exists "$ns" || die "no namespace $ns"
    # There is no netem on these kernels (CONFIG_NET_SCH_NETEM unset, and no tc gact either): random loss is done
    # with an nftables netdev ingress rule (numgen random). Delay, jitter and reordering need a user-space
    # impairment bridge (a FaultInjector between two packet-socket devices); see ../shared/research/impairment.md.
    if ! command -v nft >/dev/null; then
        die "nft (nftables) is not installed, so no impairment is possible here (no netem in this kernel)." \
            "Install nftables (apt-get install nftables) for random loss, or put a FaultInjector in the path."
    fi
    ip netns exec "$ns" nft delete table netdev demi_imp 2>/dev/null || true
    case "$spec" in
        clear) echo "impairment cleared on $ns veth0"; return;;
        loss\ *%)
            local p=${spec#loss }
            p=${p%\%}
            case "$p" in ''|*[!0-9]*) die "loss must be a whole percentage, e.g. \"loss 5%\"";; esac
            ip netns exec "$ns" nft -f - <<EOF
add table netdev demi_imp
add chain netdev demi_imp in { type filter hook ingress device veth0 priority 0 ; }
add rule netdev demi_imp in meta protocol ip numgen random mod 100 < $p counter drop
EOF
            echo "impairment: $p% random loss of IPv4 packets on $ns veth0 ingress (ARP is not dropped)";;
        *) die "unsupported impairment '$spec': only \"loss P%\" and clear (no netem: delay, duplication and" \
               "reordering need the user-space FaultInjector)";;
    esac
}

case "$cmd" in
    up) up "$@";;
    down) down;;
    exec)
        [ $# -ge 2 ] || usage
        ns=$(ns_of "$1"); shift
        exec ip netns exec "$ns" "$@";;
    impair) impair "$@";;
    bridged) bridged "$@";;
    kbridge) kbridge "$@";;
    *) usage;;
esac
