#include "cdemi_packet.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <linux/ethtool.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/sockios.h>

_Static_assert(sizeof(struct tpacket2_hdr) == 32, "tpacket2_hdr layout");
_Static_assert(offsetof(struct tpacket2_hdr, tp_mac) == 12, "tp_mac offset");
_Static_assert(offsetof(struct tpacket2_hdr, tp_vlan_tci) == 24, "tp_vlan_tci offset");
_Static_assert(TPACKET_ALIGN(sizeof(struct tpacket2_hdr)) == 32, "sockaddr_ll offset");
_Static_assert(offsetof(struct sockaddr_ll, sll_pkttype) == 10, "sll_pkttype offset");
_Static_assert(PACKET_OUTGOING == CDEMI_PACKET_OUTGOING, "PACKET_OUTGOING");
_Static_assert(TP_STATUS_USER == CDEMI_TP_STATUS_USER && TP_STATUS_SEND_REQUEST == CDEMI_TP_STATUS_SEND_REQUEST &&
                   TP_STATUS_WRONG_FORMAT == CDEMI_TP_STATUS_WRONG_FORMAT && TP_STATUS_LOSING == CDEMI_TP_STATUS_LOSING &&
                   TP_STATUS_VLAN_VALID == CDEMI_TP_STATUS_VLAN_VALID &&
                   TP_STATUS_CSUMNOTREADY == CDEMI_TP_STATUS_CSUMNOTREADY,
               "status bits");

int cdemi_packet_socket(void) { return socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0); }

enum { BLOCK_SIZE = 1 << 16 };

static uint32_t round_to_blocks(uint32_t frames, uint32_t per_block) {
    if (frames == 0) frames = 1;
    return (frames + per_block - 1) / per_block * per_block;
}

int cdemi_packet_setup(int fd, uint32_t frame_size, uint32_t rx_frames, uint32_t tx_frames, int qdisc_bypass,
                       cdemi_packet_ring *ring) {
    memset(ring, 0, sizeof *ring);
    if (frame_size < TPACKET_ALIGNMENT * 16 || frame_size > BLOCK_SIZE || (frame_size & (frame_size - 1)) != 0) {
        errno = EINVAL;
        return -1;
    }
    int version = TPACKET_V2;
    if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &version, sizeof version) < 0) return -1;
    if (qdisc_bypass) {
        int one = 1;
        if (setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one) < 0) return -1;
    }
    // A malformed TX frame is skipped (and its slot handed back) instead of stopping the ring.
    int loss = 1;
    if (setsockopt(fd, SOL_PACKET, PACKET_LOSS, &loss, sizeof loss) < 0) return -1;
    uint32_t per_block = BLOCK_SIZE / frame_size;
    rx_frames = round_to_blocks(rx_frames, per_block);
    tx_frames = round_to_blocks(tx_frames, per_block);

    struct tpacket_req req;
    memset(&req, 0, sizeof req);
    req.tp_block_size = BLOCK_SIZE;
    req.tp_frame_size = frame_size;
    req.tp_block_nr = rx_frames / per_block;
    req.tp_frame_nr = rx_frames;
    if (setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) < 0) return -1;
    req.tp_block_nr = tx_frames / per_block;
    req.tp_frame_nr = tx_frames;
    if (setsockopt(fd, SOL_PACKET, PACKET_TX_RING, &req, sizeof req) < 0) return -1;

    size_t len = (size_t)(rx_frames + tx_frames) * frame_size;
    void *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (map == MAP_FAILED) return -1;
    ring->map = map;
    ring->map_len = len;
    ring->rx = (uint8_t *)map;
    ring->tx = (uint8_t *)map + (size_t)rx_frames * frame_size;
    ring->frame_size = frame_size;
    ring->rx_frames = rx_frames;
    ring->tx_frames = tx_frames;
    ring->tx_data_offset = TPACKET2_HDRLEN - sizeof(struct sockaddr_ll);
    return 0;
}

void cdemi_packet_unmap(cdemi_packet_ring *ring) {
    if (ring->map) munmap(ring->map, ring->map_len);
    memset(ring, 0, sizeof *ring);
}

int cdemi_packet_bind(int fd, int ifindex) {
    struct sockaddr_ll sll;
    memset(&sll, 0, sizeof sll);
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = ifindex;
    return bind(fd, (struct sockaddr *)&sll, sizeof sll);
}

long cdemi_packet_kick(int fd) { return (long)sendto(fd, NULL, 0, MSG_DONTWAIT, NULL, 0); }

int cdemi_packet_stats(int fd, uint32_t *packets, uint32_t *drops) {
    struct tpacket_stats st;
    socklen_t len = sizeof st;
    if (getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &st, &len) < 0) return -1;
    *packets = st.tp_packets;
    *drops = st.tp_drops;
    return 0;
}

// MARK: - Interfaces

static int ifreq_for(const char *name, struct ifreq *ifr) {
    memset(ifr, 0, sizeof *ifr);
    if (strlen(name) >= IFNAMSIZ) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strncpy(ifr->ifr_name, name, IFNAMSIZ - 1);
    return 0;
}

static int ioctl_on_dgram(unsigned long request, struct ifreq *ifr) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return -1;
    int rc = ioctl(s, request, ifr);
    int saved = errno;
    close(s);
    errno = saved;
    return rc;
}

int cdemi_if_index(const char *name) { return (int)if_nametoindex(name); }

int cdemi_if_hwaddr(const char *name, uint8_t mac[6]) {
    struct ifreq ifr;
    if (ifreq_for(name, &ifr) < 0 || ioctl_on_dgram(SIOCGIFHWADDR, &ifr) < 0) return -1;
    memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
    return 0;
}

int cdemi_if_mtu(const char *name) {
    struct ifreq ifr;
    if (ifreq_for(name, &ifr) < 0 || ioctl_on_dgram(SIOCGIFMTU, &ifr) < 0) return -1;
    return ifr.ifr_mtu;
}

static const uint32_t ethtool_set_cmds[3] = {ETHTOOL_STXCSUM, ETHTOOL_SRXCSUM, ETHTOOL_STSO};
static const uint32_t ethtool_get_cmds[3] = {ETHTOOL_GTXCSUM, ETHTOOL_GRXCSUM, ETHTOOL_GTSO};

int cdemi_ethtool_set(const char *name, int which, int on) {
    if (which < 0 || which > 2) {
        errno = EINVAL;
        return -1;
    }
    struct ifreq ifr;
    struct ethtool_value ev = {.cmd = ethtool_set_cmds[which], .data = on ? 1 : 0};
    if (ifreq_for(name, &ifr) < 0) return -1;
    ifr.ifr_data = (char *)&ev;
    return ioctl_on_dgram(SIOCETHTOOL, &ifr);
}

int cdemi_ethtool_get(const char *name, int which) {
    if (which < 0 || which > 2) {
        errno = EINVAL;
        return -1;
    }
    struct ifreq ifr;
    struct ethtool_value ev = {.cmd = ethtool_get_cmds[which], .data = 0};
    if (ifreq_for(name, &ifr) < 0) return -1;
    ifr.ifr_data = (char *)&ev;
    if (ioctl_on_dgram(SIOCETHTOOL, &ifr) < 0) return -1;
    return ev.data ? 1 : 0;
}

// MARK: - Namespaces

int cdemi_netns_open(const char *path) { return open(path, O_RDONLY | O_CLOEXEC); }
int cdemi_setns_net(int fd) { return setns(fd, CLONE_NEWNET); }
int cdemi_close(int fd) { return close(fd); }

// MARK: - Ping-pong baseline

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/// Busy-polls `fd` for an incoming (not outgoing) frame of `len` bytes with `frame`'s EtherType; copies it to `out`.
static int await_frame(int fd, const uint8_t *frame, int len, uint8_t *out, uint64_t deadline) {
    for (;;) {
        struct sockaddr_ll from;
        socklen_t flen = sizeof from;
        ssize_t n = recvfrom(fd, out, 2048, MSG_DONTWAIT, (struct sockaddr *)&from, &flen);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return -1;
            if (now_ns() > deadline) return -1;
            continue;
        }
        if (from.sll_pkttype == PACKET_OUTGOING) continue;
        if (n == len && out[12] == frame[12] && out[13] == frame[13]) return 0;
    }
}

int cdemi_packet_pingpong(int fd_a, int fd_b, const uint8_t *frame, int len, int rounds, uint64_t *rtt_ns) {
    uint8_t buf[2048];
    if (len < 14 || len > (int)sizeof buf) {
        errno = EINVAL;
        return -1;
    }
    int done = 0;
    for (; done < rounds; done++) {
        uint64_t t0 = now_ns();
        uint64_t deadline = t0 + 1000000000u;
        if (send(fd_a, frame, (size_t)len, MSG_DONTWAIT) != len) break;
        if (await_frame(fd_b, frame, len, buf, deadline) < 0) break;
        uint8_t tmp[6];
        memcpy(tmp, buf, 6);
        memcpy(buf, buf + 6, 6);
        memcpy(buf + 6, tmp, 6);
        if (send(fd_b, buf, (size_t)len, MSG_DONTWAIT) != len) break;
        if (await_frame(fd_a, frame, len, buf, deadline) < 0) break;
        rtt_ns[done] = now_ns() - t0;
    }
    return done;
}
