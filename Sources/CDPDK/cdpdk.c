// See include/cdpdk.h. Compiled to nothing unless the package trait `DPDK` defines DEMI_DPDK (and adds DPDK's
// include paths, -march and libraries for this target only).
#ifdef DEMI_DPDK
#define _GNU_SOURCE
#include <rte_config.h>   // SwiftPM drops pkg-config's `-include rte_config.h`: include it first ourselves.
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <rte_bus.h>
#include <rte_dev.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_ip.h>
#include <rte_tcp.h>
#include <rte_udp.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include "cdpdk.h"

int cdpdk_eal_init(int argc, char **argv) {
    cpu_set_t before;
    int saved = pthread_getaffinity_np(pthread_self(), sizeof(before), &before);
    int r = rte_eal_init(argc, argv);
    int e = rte_errno;
    if (saved == 0) pthread_setaffinity_np(pthread_self(), sizeof(before), &before);
    return r < 0 ? -(e ? e : EINVAL) : r;
}

static char runtime_dir[PATH_MAX];

static void remove_runtime_dir(void) {
    if (runtime_dir[0] == 0 || rmdir(runtime_dir) != 0) return;
    char *slash = strrchr(runtime_dir, '/');
    if (slash != NULL && slash != runtime_dir) {
        *slash = 0;
        rmdir(runtime_dir);
    }
}

void cdpdk_remove_runtime_dir_at_exit(void) {
    const char *dir = rte_eal_get_runtime_dir();
    if (dir == NULL || dir[0] == 0 || runtime_dir[0] != 0) return;
    snprintf(runtime_dir, sizeof(runtime_dir), "%s", dir);
    atexit(remove_runtime_dir);
}

int cdpdk_errno(void) { return rte_errno; }
const char *cdpdk_strerror(int error) { return rte_strerror(error); }
uint16_t cdpdk_mbuf_headroom(void) { return RTE_PKTMBUF_HEADROOM; }
uint16_t cdpdk_mbuf_default_buf_size(void) { return RTE_MBUF_DEFAULT_BUF_SIZE; }

// MARK: - Ports

int cdpdk_dev_probe(const char *devargs) {
    int r = rte_dev_probe(devargs);
    return r < 0 ? (r == -1 ? -(rte_errno ? rte_errno : EINVAL) : r) : 0;
}

int cdpdk_vdev_remove(const char *name) { return rte_eal_hotplug_remove("vdev", name); }

int cdpdk_port_by_name(const char *name, uint16_t *port) { return rte_eth_dev_get_port_by_name(name, port); }

int cdpdk_port_name(uint16_t port, char *name, size_t capacity) {
    char buf[RTE_ETH_NAME_MAX_LEN];
    int r = rte_eth_dev_get_name_by_port(port, buf);
    if (r != 0) return r;
    snprintf(name, capacity, "%s", buf);
    return 0;
}

int cdpdk_port_valid(uint16_t port) { return rte_eth_dev_is_valid_port(port); }
uint16_t cdpdk_max_ports(void) { return RTE_MAX_ETHPORTS; }

static uint8_t checksum_bits(uint64_t capa, uint64_t ipv4, uint64_t udp, uint64_t tcp) {
    return (uint8_t)(((capa & ipv4) ? 1 : 0) | ((capa & udp) ? 2 : 0) | ((capa & tcp) ? 4 : 0));
}

int cdpdk_port_info(uint16_t port, struct cdpdk_port_info *info) {
    struct rte_eth_dev_info di;
    memset(info, 0, sizeof(*info));
    int r = rte_eth_dev_info_get(port, &di);
    if (r != 0) return r;
    info->rx_offload_capa = di.rx_offload_capa;
    info->tx_offload_capa = di.tx_offload_capa;
    info->max_rx_pktlen = di.max_rx_pktlen;
    info->min_mtu = di.min_mtu;
    info->max_mtu = di.max_mtu;
    info->max_rx_queues = di.max_rx_queues;
    info->max_tx_queues = di.max_tx_queues;
    info->rx_desc_max = di.rx_desc_lim.nb_max;
    info->tx_desc_max = di.tx_desc_lim.nb_max;
    info->rx_checksums = checksum_bits(di.rx_offload_capa, RTE_ETH_RX_OFFLOAD_IPV4_CKSUM,
                                       RTE_ETH_RX_OFFLOAD_UDP_CKSUM, RTE_ETH_RX_OFFLOAD_TCP_CKSUM);
    info->tx_checksums = checksum_bits(di.tx_offload_capa, RTE_ETH_TX_OFFLOAD_IPV4_CKSUM,
                                       RTE_ETH_TX_OFFLOAD_UDP_CKSUM, RTE_ETH_TX_OFFLOAD_TCP_CKSUM);
    info->if_index = di.if_index;
    info->socket_id = rte_eth_dev_socket_id(port);
    snprintf(info->driver, sizeof(info->driver), "%s", di.driver_name ? di.driver_name : "");
    uint16_t mtu = 0;
    info->mtu = rte_eth_dev_get_mtu(port, &mtu) == 0 ? mtu : RTE_ETHER_MTU;
    struct rte_ether_addr mac;
    r = rte_eth_macaddr_get(port, &mac);
    if (r != 0) return r;
    memcpy(info->mac, mac.addr_bytes, 6);
    return 0;
}

int cdpdk_port_start(uint16_t port, void *mempool, uint16_t rx_desc, uint16_t tx_desc, uint64_t rx_offloads,
                     uint64_t tx_offloads, int promiscuous, int *step) {
    struct rte_eth_conf conf;
    memset(&conf, 0, sizeof(conf));
    conf.rxmode.offloads = rx_offloads;
    conf.txmode.offloads = tx_offloads;
    int r;
    *step = 1;
    if ((r = rte_eth_dev_configure(port, 1, 1, &conf)) != 0) return r;
    *step = 2;
    if ((r = rte_eth_dev_adjust_nb_rx_tx_desc(port, &rx_desc, &tx_desc)) != 0) return r;
    int socket = rte_eth_dev_socket_id(port);
    if (socket < 0) socket = SOCKET_ID_ANY;
    *step = 3;
    if ((r = rte_eth_rx_queue_setup(port, 0, rx_desc, (unsigned)socket, NULL, mempool)) != 0) return r;
    *step = 4;
    if ((r = rte_eth_tx_queue_setup(port, 0, tx_desc, (unsigned)socket, NULL)) != 0) return r;
    if (promiscuous) {
        *step = 5;
        if ((r = rte_eth_promiscuous_enable(port)) != 0) return r;
    }
    *step = 6;
    if ((r = rte_eth_dev_start(port)) != 0) return r;
    *step = 0;
    return 0;
}

int cdpdk_port_stop_close(uint16_t port) {
    int a = rte_eth_dev_stop(port);
    int b = rte_eth_dev_close(port);
    return a != 0 ? a : b;
}

int cdpdk_link_get(uint16_t port, struct cdpdk_link *link) {
    struct rte_eth_link l;
    memset(&l, 0, sizeof(l));
    int r = rte_eth_link_get_nowait(port, &l);
    if (r != 0) return r;
    link->speed_mbps = l.link_speed;
    link->up = l.link_status == RTE_ETH_LINK_UP;
    link->full_duplex = l.link_duplex == RTE_ETH_LINK_FULL_DUPLEX;
    link->autoneg = l.link_autoneg == RTE_ETH_LINK_AUTONEG;
    return 0;
}

int cdpdk_stats_get(uint16_t port, struct cdpdk_stats *stats) {
    struct rte_eth_stats s;
    int r = rte_eth_stats_get(port, &s);
    if (r != 0) return r;
    stats->ipackets = s.ipackets;
    stats->opackets = s.opackets;
    stats->ibytes = s.ibytes;
    stats->obytes = s.obytes;
    stats->imissed = s.imissed;
    stats->ierrors = s.ierrors;
    stats->oerrors = s.oerrors;
    stats->rx_nombuf = s.rx_nombuf;
    return 0;
}

// MARK: - Mempools

void *cdpdk_pool_create(const char *name, unsigned count, unsigned cache, uint16_t data_room, int socket) {
    return rte_pktmbuf_pool_create(name, count, cache, 0, data_room, socket < 0 ? SOCKET_ID_ANY : socket);
}

void cdpdk_pool_free(void *mempool) { rte_mempool_free(mempool); }
unsigned cdpdk_pool_in_use(const void *mempool) { return rte_mempool_in_use_count(mempool); }
unsigned cdpdk_pool_available(const void *mempool) { return rte_mempool_avail_count(mempool); }

// MARK: - Fast path

uint16_t cdpdk_rx_burst(uint16_t port, uint16_t queue, void **mbufs, uint16_t count) {
    return rte_eth_rx_burst(port, queue, (struct rte_mbuf **)mbufs, count);
}

uint16_t cdpdk_tx_burst(uint16_t port, uint16_t queue, void **mbufs, uint16_t count) {
    return rte_eth_tx_burst(port, queue, (struct rte_mbuf **)mbufs, count);
}

void cdpdk_mbuf_describe(void *mbuf, struct cdpdk_segment *out) {
    struct rte_mbuf *m = mbuf;
    out->buf_addr = m->buf_addr;
    out->next = m->next;
    out->pkt_len = m->pkt_len;
    out->buf_len = m->buf_len;
    out->data_off = m->data_off;
    out->data_len = m->data_len;
    out->nb_segs = m->nb_segs;
}

void *cdpdk_mbuf_alloc(void *mempool, uint16_t length, void **data) {
    struct rte_mbuf *m = rte_pktmbuf_alloc(mempool);
    if (m == NULL) return NULL;
    if (length > rte_pktmbuf_tailroom(m)) {
        rte_pktmbuf_free(m);
        return NULL;
    }
    m->data_len = length;
    m->pkt_len = length;
    *data = rte_pktmbuf_mtod(m, void *);
    return m;
}

int cdpdk_mbuf_is_own(const void *mbuf, const void *mempool, const void *buf_addr) {
    const struct rte_mbuf *m = mbuf;
    return m->pool == mempool && m->buf_addr == buf_addr && rte_mbuf_refcnt_read(m) == 1;
}

void cdpdk_mbuf_set_window(void *mbuf, uint16_t data_off, uint16_t data_len) {
    struct rte_mbuf *m = mbuf;
    m->data_off = data_off;
    m->data_len = data_len;
    m->pkt_len = data_len;
    m->nb_segs = 1;
    m->next = NULL;
    m->ol_flags &= (RTE_MBUF_F_EXTERNAL | RTE_MBUF_F_INDIRECT);   // no RX flags on TX; keep attachment flags
}

void cdpdk_mbuf_free(void *mbuf) { rte_pktmbuf_free(mbuf); }
void cdpdk_mbuf_free_segment(void *mbuf) { rte_pktmbuf_free_seg(mbuf); }
void cdpdk_mbuf_free_bulk(void **mbufs, unsigned count) { rte_pktmbuf_free_bulk((struct rte_mbuf **)mbufs, count); }

void *cdpdk_mbuf_alloc_describe(void *mempool, uint16_t length, struct cdpdk_segment *out) {
    void *data;
    void *m = cdpdk_mbuf_alloc(mempool, length, &data);
    if (m != NULL) cdpdk_mbuf_describe(m, out);
    return m;
}

const void *cdpdk_mbuf_pool(const void *mbuf) { return ((const struct rte_mbuf *)mbuf)->pool; }

void *cdpdk_tx_build(void *mempool, void *indirect_pool, const struct cdpdk_tx_piece *pieces, unsigned count,
                     uint32_t total, unsigned *attached) {
    struct rte_mbuf *head = rte_pktmbuf_alloc(mempool);
    if (head == NULL) return NULL;
    struct rte_mbuf *tail = head;   // the last segment of the chain
    int tail_direct = 1;            // the tail is a direct mbuf being filled by copies
    unsigned segs = 1, refs = 0;
    for (unsigned i = 0; i < count; i++) {
        const struct cdpdk_tx_piece *p = &pieces[i];
        uint32_t left = p->length;
        if (left == 0) continue;
        if (i > 0 && p->mbuf != NULL) {
            struct rte_mbuf *mi = rte_pktmbuf_alloc(indirect_pool);
            if (mi == NULL) goto fail;
            struct rte_mbuf *m = p->mbuf;
            rte_pktmbuf_attach(mi, m);
            mi->data_off = (uint16_t)((const char *)p->data - (const char *)mi->buf_addr);
            mi->data_len = (uint16_t)left;
            mi->pkt_len = left;
            tail->next = mi;
            tail = mi;
            tail_direct = 0;
            segs++;
            refs++;
            continue;
        }
        const char *src = p->data;
        while (left > 0) {
            uint16_t room = tail_direct ? rte_pktmbuf_tailroom(tail) : 0;
            if (room == 0) {
                struct rte_mbuf *n = rte_pktmbuf_alloc(mempool);
                if (n == NULL) goto fail;
                tail->next = n;
                tail = n;
                tail_direct = 1;
                segs++;
                room = rte_pktmbuf_tailroom(n);
            }
            uint16_t k = left < room ? (uint16_t)left : room;
            memcpy(rte_pktmbuf_mtod_offset(tail, char *, tail->data_len), src, k);
            tail->data_len += k;
            src += k;
            left -= k;
        }
    }
    head->pkt_len = total;
    head->nb_segs = (uint16_t)segs;
    *attached = refs;
    return head;
fail:
    head->nb_segs = (uint16_t)segs;
    rte_pktmbuf_free(head);   // frees every segment; indirect ones detach and drop their reference
    return NULL;
}

// MARK: - Checksum offload

uint64_t cdpdk_tx_offload_multi_segs(void) { return RTE_ETH_TX_OFFLOAD_MULTI_SEGS; }

uint64_t cdpdk_checksum_offload_bits(uint8_t checksums, int transmit) {
    uint64_t b = 0;
    if (transmit) {
        if (checksums & 1) b |= RTE_ETH_TX_OFFLOAD_IPV4_CKSUM;
        if (checksums & 2) b |= RTE_ETH_TX_OFFLOAD_UDP_CKSUM;
        if (checksums & 4) b |= RTE_ETH_TX_OFFLOAD_TCP_CKSUM;
    } else {
        if (checksums & 1) b |= RTE_ETH_RX_OFFLOAD_IPV4_CKSUM;
        if (checksums & 2) b |= RTE_ETH_RX_OFFLOAD_UDP_CKSUM;
        if (checksums & 4) b |= RTE_ETH_RX_OFFLOAD_TCP_CKSUM;
    }
    return b;
}

// The IPv4 header of an untagged Ethernet frame in one segment, or NULL.
static inline struct rte_ipv4_hdr *ipv4_of(struct rte_mbuf *m) {
    if (m->data_len < RTE_ETHER_HDR_LEN + sizeof(struct rte_ipv4_hdr)) return NULL;
    uint8_t *p = rte_pktmbuf_mtod(m, uint8_t *);
    if (p[12] != 0x08 || p[13] != 0x00) return NULL;
    struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(p + RTE_ETHER_HDR_LEN);
    unsigned ihl = (ip->version_ihl & 0x0f) * 4u;
    if ((ip->version_ihl >> 4) != 4 || ihl < 20 || m->data_len < RTE_ETHER_HDR_LEN + ihl) return NULL;
    return ip;
}

static inline int is_fragment(const struct rte_ipv4_hdr *ip) {
    return (rte_be_to_cpu_16(ip->fragment_offset) & (RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK)) != 0;
}

void cdpdk_mbuf_tx_checksum(void *mbuf, uint8_t checksums) {
    struct rte_mbuf *m = mbuf;
    struct rte_ipv4_hdr *ip = ipv4_of(m);
    if (ip == NULL) return;
    unsigned ihl = (ip->version_ihl & 0x0f) * 4u;
    m->l2_len = RTE_ETHER_HDR_LEN;
    m->l3_len = ihl;
    uint64_t f = RTE_MBUF_F_TX_IPV4;
    if (checksums & 1) {
        f |= RTE_MBUF_F_TX_IP_CKSUM;
        ip->hdr_checksum = 0;
    }
    // The L4 checksum covers the whole datagram: a fragment's is left as the stack wrote it.
    if (!is_fragment(ip)) {
        uint8_t *l4 = (uint8_t *)ip + ihl;
        if ((checksums & 4) && ip->next_proto_id == IPPROTO_TCP && m->data_len >= RTE_ETHER_HDR_LEN + ihl + 20) {
            f |= RTE_MBUF_F_TX_TCP_CKSUM;
            ((struct rte_tcp_hdr *)l4)->cksum = rte_ipv4_phdr_cksum(ip, f);
        } else if ((checksums & 2) && ip->next_proto_id == IPPROTO_UDP && m->data_len >= RTE_ETHER_HDR_LEN + ihl + 8) {
            f |= RTE_MBUF_F_TX_UDP_CKSUM;
            ((struct rte_udp_hdr *)l4)->dgram_cksum = rte_ipv4_phdr_cksum(ip, f);
        }
    }
    m->ol_flags |= f;
}

int cdpdk_mbuf_rx_checksum_bad(void *mbuf, uint8_t checksums) {
    struct rte_mbuf *m = mbuf;
    uint64_t f = m->ol_flags;
    if (m->nb_segs != 1) return 0;   // our software checks run on what is not verified here
    struct rte_ipv4_hdr *ip = ipv4_of(m);
    if (ip == NULL) return 0;
    if (checksums & 1) {
        uint64_t s = f & RTE_MBUF_F_RX_IP_CKSUM_MASK;
        if (s == RTE_MBUF_F_RX_IP_CKSUM_BAD) return 1;
        if (s != RTE_MBUF_F_RX_IP_CKSUM_GOOD && rte_ipv4_cksum(ip) != 0) return 1;   // not verified: check here
    }
    int tcp = ip->next_proto_id == IPPROTO_TCP, udp = ip->next_proto_id == IPPROTO_UDP;
    if (((checksums & 4) && tcp) || ((checksums & 2) && udp)) {
        if (is_fragment(ip)) return 0;   // cannot be verified per fragment
        uint64_t s = f & RTE_MBUF_F_RX_L4_CKSUM_MASK;
        if (s == RTE_MBUF_F_RX_L4_CKSUM_BAD) return 1;
        if (s != RTE_MBUF_F_RX_L4_CKSUM_GOOD) {
            unsigned ihl = (ip->version_ihl & 0x0f) * 4u;
            unsigned total = rte_be_to_cpu_16(ip->total_length);
            if (total < ihl || m->data_len < RTE_ETHER_HDR_LEN + total) return 1;
            if (udp && ((struct rte_udp_hdr *)((uint8_t *)ip + ihl))->dgram_cksum == 0) return 0;
            return rte_ipv4_udptcp_cksum_verify(ip, (uint8_t *)ip + ihl) != 0;
        }
    }
    return 0;
}

// MARK: - Bare frame ping-pong (no stack: the benchmark's baseline)

#include <time.h>

static inline uint64_t bare_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline int bare_is_ours(struct rte_mbuf *m, uint16_t ethertype) {
    if (m->data_len < 18) return 0;
    const uint8_t *p = rte_pktmbuf_mtod(m, const uint8_t *);
    return p[12] == (ethertype >> 8) && p[13] == (ethertype & 0xff);
}

int64_t cdpdk_bare_ping(uint16_t port, void *mempool, const uint8_t dst[6], const uint8_t src[6], uint16_t ethertype,
                        uint16_t length, uint32_t warmup, uint32_t count, uint64_t *samples, uint64_t timeout_ns) {
    if (length < 60) length = 60;
    struct rte_mbuf *rx[32];
    int64_t resent = 0;
    for (uint32_t i = 0; i < warmup + count; i++) {
        uint64_t start = 0;
        int answered = 0;
        for (int attempt = 0; attempt < 5 && !answered; attempt++) {
            struct rte_mbuf *m = rte_pktmbuf_alloc(mempool);
            if (m == NULL) return -ENOMEM;
            uint8_t *f = (uint8_t *)rte_pktmbuf_append(m, length);
            if (f == NULL) { rte_pktmbuf_free(m); return -EMSGSIZE; }
            memcpy(f, dst, 6);
            memcpy(f + 6, src, 6);
            f[12] = ethertype >> 8;
            f[13] = ethertype & 0xff;
            memcpy(f + 14, &i, 4);
            memset(f + 18, 0x5a, length - 18);
            if (attempt > 0) resent++;
            start = bare_now_ns();
            uint64_t deadline = start + timeout_ns;
            while (rte_eth_tx_burst(port, 0, &m, 1) == 0) {
                if (bare_now_ns() > deadline) { rte_pktmbuf_free(m); return -ETIMEDOUT; }
            }
            while (!answered && bare_now_ns() < deadline) {
                uint16_t n = rte_eth_rx_burst(port, 0, rx, 32);
                for (uint16_t k = 0; k < n; k++) {
                    uint32_t seq = 0;
                    if (bare_is_ours(rx[k], ethertype)) memcpy(&seq, rte_pktmbuf_mtod(rx[k], uint8_t *) + 14, 4);
                    if (bare_is_ours(rx[k], ethertype) && seq == i) answered = 1;
                    rte_pktmbuf_free(rx[k]);
                }
            }
        }
        if (!answered) return -ETIMEDOUT;
        uint64_t rtt = bare_now_ns() - start;
        if (i >= warmup) samples[i - warmup] = rtt;
    }
    return resent;
}

int64_t cdpdk_bare_reflect(uint16_t port, uint16_t ethertype, uint64_t frames, uint64_t idle_ns) {
    struct rte_mbuf *rx[32];
    uint64_t reflected = 0;
    uint64_t last = bare_now_ns();
    while (reflected < frames) {
        uint16_t n = rte_eth_rx_burst(port, 0, rx, 32);
        if (n == 0) {
            if (bare_now_ns() - last > idle_ns) break;
            continue;
        }
        last = bare_now_ns();
        uint16_t out = 0;
        for (uint16_t k = 0; k < n; k++) {
            struct rte_mbuf *m = rx[k];
            if (!bare_is_ours(m, ethertype)) { rte_pktmbuf_free(m); continue; }
            uint8_t *p = rte_pktmbuf_mtod(m, uint8_t *);
            uint8_t t[6];
            memcpy(t, p, 6);
            memcpy(p, p + 6, 6);
            memcpy(p + 6, t, 6);
            rx[out++] = m;
        }
        uint16_t sent = 0;
        for (int tries = 0; sent < out && tries < 1000; tries++) sent += rte_eth_tx_burst(port, 0, rx + sent, out - sent);
        if (sent < out) rte_pktmbuf_free_bulk(rx + sent, out - sent);
        reflected += sent;
    }
    return (int64_t)reflected;
}

#endif
