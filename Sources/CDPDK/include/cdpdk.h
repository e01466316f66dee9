// C shim over DPDK (22.11) for DemiDPDK, built with the package trait `DPDK`.
//
// This header includes no DPDK header, so Swift imports it without DPDK's include paths or `-march` flags: mbufs and
// mempools are plain `void *`, and every field access goes through a function here (`struct rte_mbuf` does not
// import into Swift). Without the trait (DEMI_DPDK undefined) the .c file compiles to nothing and these symbols do
// not exist; only DemiDPDK, itself compiled only with the trait, calls them.
#ifndef CDPDK_H
#define CDPDK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// rte_eal_init with the calling thread's CPU affinity restored afterwards (the EAL pins its main thread to the
/// first lcore). argv[0] is the program name. Returns the number of arguments parsed, or -rte_errno.
int cdpdk_eal_init(int argc, char **argv);
/// Removes the EAL's runtime directory (`/var/run/dpdk/<file-prefix>`) and its parent at process exit, if they are
/// empty then (with `--no-shconf` or `--in-memory` the EAL leaves them empty). Call once, after a successful init.
void cdpdk_remove_runtime_dir_at_exit(void);
/// rte_errno of the calling thread, and its text.
int cdpdk_errno(void);
const char *cdpdk_strerror(int error);
/// RTE_PKTMBUF_HEADROOM and RTE_MBUF_DEFAULT_BUF_SIZE.
uint16_t cdpdk_mbuf_headroom(void);
uint16_t cdpdk_mbuf_default_buf_size(void);

// MARK: - Ports

/// rte_dev_probe (hot-plugs a device: "net_af_packet1,iface=veth0"); 0 or a negative errno.
int cdpdk_dev_probe(const char *devargs);
/// rte_eal_hotplug_remove("vdev", name); 0 or a negative errno.
int cdpdk_vdev_remove(const char *name);
/// rte_eth_dev_get_port_by_name; 0 or a negative errno.
int cdpdk_port_by_name(const char *name, uint16_t *port);
/// The port's device name (rte_eth_dev_get_name_by_port); 0 or a negative errno.
int cdpdk_port_name(uint16_t port, char *name, size_t capacity);
/// 1 if the port id is in use (rte_eth_dev_is_valid_port).
int cdpdk_port_valid(uint16_t port);
/// RTE_MAX_ETHPORTS.
uint16_t cdpdk_max_ports(void);

/// What a port reports (rte_eth_dev_info_get, rte_eth_dev_get_mtu, rte_eth_macaddr_get).
struct cdpdk_port_info {
    uint64_t rx_offload_capa;       ///< RTE_ETH_RX_OFFLOAD_* bits
    uint64_t tx_offload_capa;       ///< RTE_ETH_TX_OFFLOAD_* bits
    uint32_t max_rx_pktlen;
    uint16_t mtu;
    uint16_t min_mtu;
    uint16_t max_mtu;
    uint16_t max_rx_queues;
    uint16_t max_tx_queues;
    uint16_t rx_desc_max;
    uint16_t tx_desc_max;
    uint8_t rx_checksums;           ///< 1 IPv4, 2 UDP, 4 TCP (DemiDevices.ChecksumOffload bits) among the RX offloads
    uint8_t tx_checksums;           ///< the same among the TX offloads
    uint8_t mac[6];
    int32_t socket_id;
    uint32_t if_index;
    char driver[64];
};
int cdpdk_port_info(uint16_t port, struct cdpdk_port_info *info);

/// Configures the port with one RX and one TX queue (`rx_desc`/`tx_desc` descriptors, adjusted to the driver's
/// limits), RX buffers from `mempool`, the given offloads, promiscuous mode if asked, and starts it. On failure returns
/// a negative errno and sets *step: 1 configure, 2 descriptor adjust, 3 RX queue, 4 TX queue, 5 promiscuous, 6 start.
int cdpdk_port_start(uint16_t port, void *mempool, uint16_t rx_desc, uint16_t tx_desc, uint64_t rx_offloads,
                     uint64_t tx_offloads, int promiscuous, int *step);
/// rte_eth_dev_stop and rte_eth_dev_close; 0 or the first negative errno.
int cdpdk_port_stop_close(uint16_t port);

struct cdpdk_link {
    uint32_t speed_mbps;
    uint8_t up;
    uint8_t full_duplex;
    uint8_t autoneg;
};
int cdpdk_link_get(uint16_t port, struct cdpdk_link *link);

struct cdpdk_stats {
    uint64_t ipackets, opackets, ibytes, obytes, imissed, ierrors, oerrors, rx_nombuf;
};
int cdpdk_stats_get(uint16_t port, struct cdpdk_stats *stats);

// MARK: - Mempools

/// rte_pktmbuf_pool_create(name, count, cache, 0, data_room, socket); NULL with rte_errno set on failure.
void *cdpdk_pool_create(const char *name, unsigned count, unsigned cache, uint16_t data_room, int socket);
void cdpdk_pool_free(void *mempool);
/// rte_mempool_in_use_count / rte_mempool_avail_count.
unsigned cdpdk_pool_in_use(const void *mempool);
unsigned cdpdk_pool_available(const void *mempool);

// MARK: - Fast path

uint16_t cdpdk_rx_burst(uint16_t port, uint16_t queue, void **mbufs, uint16_t count);
uint16_t cdpdk_tx_burst(uint16_t port, uint16_t queue, void **mbufs, uint16_t count);

/// One mbuf segment: its buffer, where its data window lies in it, and the next segment.
struct cdpdk_segment {
    void *buf_addr;
    void *next;
    uint32_t pkt_len;
    uint16_t buf_len;
    uint16_t data_off;
    uint16_t data_len;
    uint16_t nb_segs;
};
void cdpdk_mbuf_describe(void *mbuf, struct cdpdk_segment *out);

/// rte_pktmbuf_alloc with a data window of `length` bytes at the default headroom; *data points at it. NULL if the
/// pool is empty or `length` exceeds the tailroom.
void *cdpdk_mbuf_alloc(void *mempool, uint16_t length, void **data);
/// True if `mbuf` is a single-reference mbuf of `mempool` whose buffer starts at `buf_addr` (a wrapped mbuf of
/// this pool, safe to hand to the driver as it is).
int cdpdk_mbuf_is_own(const void *mbuf, const void *mempool, const void *buf_addr);
/// Makes `mbuf` one segment whose window is data_off..<data_off+data_len (pkt_len = data_len, no next).
void cdpdk_mbuf_set_window(void *mbuf, uint16_t data_off, uint16_t data_len);
/// rte_pktmbuf_free (the whole chain), rte_pktmbuf_free_seg (this segment only), rte_pktmbuf_free_bulk.
void cdpdk_mbuf_free(void *mbuf);
void cdpdk_mbuf_free_segment(void *mbuf);
void cdpdk_mbuf_free_bulk(void **mbufs, unsigned count);

/// rte_pktmbuf_alloc with a data window of `length` bytes at the default headroom; the mbuf's buffer, its length and
/// the window's offset are stored in *out (its `next` is NULL). NULL if the pool is empty or `length` does not fit.
void *cdpdk_mbuf_alloc_describe(void *mempool, uint16_t length, struct cdpdk_segment *out);

/// One piece of a frame to transmit: `length` bytes at `data`. `mbuf`, if not NULL, is the mbuf whose buffer holds
/// them: the piece is then sent without a copy, through an indirect mbuf attached to it.
struct cdpdk_tx_piece {
    const void *data;
    void *mbuf;
    uint32_t length;
};
/// Builds a frame of `count` pieces (`total` bytes) for rte_eth_tx_burst. The first piece (the headers) and every
/// piece without an mbuf are copied, in order, into direct mbufs from `mempool` (a new one when the current one is
/// full); a piece with an mbuf becomes an indirect mbuf from `indirect_pool` attached to it (rte_pktmbuf_attach takes
/// a reference on the mbuf, so its bytes stay until the driver frees the frame), its window set to the piece. Returns
/// the head mbuf (pkt_len and nb_segs set) and the number of attached pieces in *attached, or NULL (everything
/// allocated freed again) if a pool ran dry.
void *cdpdk_tx_build(void *mempool, void *indirect_pool, const struct cdpdk_tx_piece *pieces, unsigned count,
                     uint32_t total, unsigned *attached);
/// The mempool an mbuf belongs to.
const void *cdpdk_mbuf_pool(const void *mbuf);

// MARK: - Checksum offload

/// RTE_ETH_TX_OFFLOAD_MULTI_SEGS: the port sends mbuf chains (net_af_packet, net_tap; not net_af_xdp).
uint64_t cdpdk_tx_offload_multi_segs(void);
/// RTE_ETH_{RX,TX}_OFFLOAD_{IPV4,UDP,TCP}_CKSUM bits for DemiDevices.ChecksumOffload bits (1 IPv4, 2 UDP, 4 TCP).
uint64_t cdpdk_checksum_offload_bits(uint8_t checksums, int transmit);
/// Asks the port to fill in the checksums in `checksums` (ChecksumOffload bits) of an IPv4 frame in one segment:
/// l2_len/l3_len, RTE_MBUF_F_TX_IPV4 and _IP_CKSUM (header checksum zeroed), and for a TCP or UDP packet that is not
/// a fragment _TCP_CKSUM/_UDP_CKSUM with the pseudo-header checksum in place, as the PMD expects. Other frames are
/// left as they are.
void cdpdk_mbuf_tx_checksum(void *mbuf, uint8_t checksums);
/// 1 if a received IPv4 frame fails a checksum in `checksums` that the stack will not check: the port flagged it
/// bad, or did not verify it and the check here fails (fragments' L4 checksums cannot be checked per frame). 0 for
/// good, unverifiable or non-IPv4 frames.
int cdpdk_mbuf_rx_checksum_bad(void *mbuf, uint8_t checksums);

// MARK: - Bare frame ping-pong (no stack: the benchmark's baseline)

/// Sends `warmup + count` frames of `length` bytes (EtherType `ethertype`, a sequence number, padding) from `src` to
/// `dst` on queue 0 of `port`, one at a time, each after the previous one came back (busy-polling rte_eth_rx_burst),
/// and stores the last `count` round trips (CLOCK_MONOTONIC ns) in `samples`. A frame not back within `timeout_ns` is
/// sent again (up to 5 times). Returns the number of resends, or a negative errno.
int64_t cdpdk_bare_ping(uint16_t port, void *mempool, const uint8_t dst[6], const uint8_t src[6], uint16_t ethertype,
                        uint16_t length, uint32_t warmup, uint32_t count, uint64_t *samples, uint64_t timeout_ns);
/// Bounces every received frame of EtherType `ethertype` back on `port` (source and destination MAC swapped, the
/// same mbuf: no copy) until `frames` were reflected or none came for `idle_ns`. Returns the number reflected.
int64_t cdpdk_bare_reflect(uint16_t port, uint16_t ethertype, uint64_t frames, uint64_t idle_ns);

#ifdef __cplusplus
}
#endif
#endif
