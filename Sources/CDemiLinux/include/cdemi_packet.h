// AF_PACKET with memory-mapped TPACKET_V2 rings, interface queries (ioctl), ethtool offload switches and network
// namespaces (setns). Functions return what the wrapped call returns (-1 with errno set on failure) unless noted.
#ifndef CDEMI_PACKET_H
#define CDEMI_PACKET_H

#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/// A packet socket and its mapped rings. Frame `i` of a ring starts at `rx + i * frame_size` (`tx + ...`).
typedef struct cdemi_packet_ring {
    void *map;            // the single mapping: RX ring, then TX ring
    size_t map_len;
    uint8_t *rx;
    uint8_t *tx;
    uint32_t frame_size;
    uint32_t rx_frames;
    uint32_t tx_frames;
    uint32_t tx_data_offset;   // where a TX frame's bytes start within its slot
} cdemi_packet_ring;

/// `socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)`: no protocol yet, so nothing is queued before the
/// rings exist (`cdemi_packet_bind` sets ETH_P_ALL). EPERM without CAP_NET_RAW.
int cdemi_packet_socket(void);

/// TPACKET_V2, optional PACKET_QDISC_BYPASS, RX and TX rings of `rx_frames`/`tx_frames` slots of `frame_size` bytes
/// (a power of two, at least 256 and at most the block size), one mmap. Frame counts are rounded up to whole blocks.
/// On success fills `ring` (free it with `cdemi_packet_unmap`).
int cdemi_packet_setup(int fd, uint32_t frame_size, uint32_t rx_frames, uint32_t tx_frames, int qdisc_bypass,
                       cdemi_packet_ring *ring);
void cdemi_packet_unmap(cdemi_packet_ring *ring);

/// Binds to one interface, receiving every protocol (ETH_P_ALL).
int cdemi_packet_bind(int fd, int ifindex);

/// Kicks the TX ring: `sendto(fd, NULL, 0, MSG_DONTWAIT, NULL, 0)`. Returns bytes queued or -1.
long cdemi_packet_kick(int fd);

/// PACKET_STATISTICS (the kernel resets the counters on each read): frames seen and dropped since the last read.
int cdemi_packet_stats(int fd, uint32_t *packets, uint32_t *drops);

// Interfaces (by name, in the calling thread's network namespace).
int cdemi_if_index(const char *name);                       // 0 if unknown (errno set)
int cdemi_if_hwaddr(const char *name, uint8_t mac[6]);      // SIOCGIFHWADDR
int cdemi_if_mtu(const char *name);                         // SIOCGIFMTU, or -1
/// ethtool (SIOCETHTOOL): ETHTOOL_STXCSUM / ETHTOOL_SRXCSUM / ETHTOOL_STSO with `on` = 0 or 1.
int cdemi_ethtool_set(const char *name, int which /* 0 tx csum, 1 rx csum, 2 tso */, int on);
int cdemi_ethtool_get(const char *name, int which);         // 0/1, or -1

// Network namespaces.
int cdemi_netns_open(const char *path);                     // O_RDONLY | O_CLOEXEC
int cdemi_setns_net(int fd);                                // setns(fd, CLONE_NEWNET) for the calling thread
int cdemi_close(int fd);

// TPACKET_V2 frame slots. Status words are shared with the kernel: acquire to read, release to hand back.
#define CDEMI_TP_STATUS_KERNEL 0u
#define CDEMI_TP_STATUS_USER 1u
#define CDEMI_TP_STATUS_LOSING 4u
#define CDEMI_TP_STATUS_CSUMNOTREADY 8u
#define CDEMI_TP_STATUS_VLAN_VALID 16u
#define CDEMI_TP_STATUS_AVAILABLE 0u
#define CDEMI_TP_STATUS_SEND_REQUEST 1u
#define CDEMI_TP_STATUS_SENDING 2u
#define CDEMI_TP_STATUS_WRONG_FORMAT 4u
#define CDEMI_PACKET_OUTGOING 4

// struct tpacket2_hdr layout: tp_status u32 @0, tp_len u32 @4, tp_snaplen u32 @8, tp_mac u16 @12, tp_net u16 @14,
// tp_sec u32 @16, tp_nsec u32 @20, tp_vlan_tci u16 @24, tp_vlan_tpid u16 @26; the sockaddr_ll follows at 32
// (TPACKET_ALIGN(sizeof(struct tpacket2_hdr))), and its sll_pkttype is at byte 10 of it.
static inline uint32_t cdemi_tp2_status(const uint8_t *slot) {
    return __atomic_load_n((const uint32_t *)slot, __ATOMIC_ACQUIRE);
}
static inline void cdemi_tp2_set_status(uint8_t *slot, uint32_t status) {
    __atomic_store_n((uint32_t *)slot, status, __ATOMIC_RELEASE);
}
static inline uint32_t cdemi_tp2_len(const uint8_t *slot) { return *(const uint32_t *)(slot + 4); }
static inline uint32_t cdemi_tp2_snaplen(const uint8_t *slot) { return *(const uint32_t *)(slot + 8); }
static inline uint16_t cdemi_tp2_mac(const uint8_t *slot) { return *(const uint16_t *)(slot + 12); }
static inline uint16_t cdemi_tp2_vlan_tci(const uint8_t *slot) { return *(const uint16_t *)(slot + 24); }
static inline uint16_t cdemi_tp2_vlan_tpid(const uint8_t *slot) { return *(const uint16_t *)(slot + 26); }
static inline uint8_t cdemi_tp2_pkttype(const uint8_t *slot) { return slot[32 + 10]; }
static inline void cdemi_tp2_set_len(uint8_t *slot, uint32_t len) {
    *(uint32_t *)(slot + 4) = len;
    *(uint32_t *)(slot + 8) = len;
}

/// A bare ping-pong baseline (no Swift, no buffers): `rounds` round trips of a `len`-byte frame between two packet
/// sockets bound to `ifindex_a` (sender, `fd_a`) and whatever echoes on the other end (`fd_b`, which this function
/// drives too: it swaps source and destination MAC and sends the frame back). Both fds are plain non-blocking
/// AF_PACKET sockets (no rings). Writes each round trip in nanoseconds to `rtt_ns` and returns the rounds completed.
int cdemi_packet_pingpong(int fd_a, int fd_b, const uint8_t *frame, int len, int rounds, uint64_t *rtt_ns);

/// Bare frame ping-pong on AF_PACKET (frame_pingpong.c), the baseline of `demi frame-pingpong --layer bare`: a packet
/// socket on `ifname` with the TPACKET_V2 rings PacketSocketDevice's defaults give (qdisc bypass), driven in C with no
/// stack and no buffer pool. Ping sends `warmup + count` frames of `length` bytes (EtherType `ethertype`, source the
/// interface's MAC, a sequence number after the header) to `dst`, one at a time, each after the previous came back,
/// resending after `timeout_ns` (5 tries); writes the last `count` round trips (ns) to `samples` and returns the
/// number of resends, or -errno. Reflect sends every frame of `ethertype` back with the MAC addresses swapped until
/// `frames` went back or none came for `idle_ns`; returns how many, or -errno.
int64_t cdemi_bare_packet_ping(const char *ifname, const uint8_t dst[6], uint16_t ethertype, uint16_t length,
                               uint32_t warmup, uint32_t count, uint64_t *samples, uint64_t timeout_ns);
int64_t cdemi_bare_packet_reflect(const char *ifname, uint16_t ethertype, uint64_t frames, uint64_t idle_ns);

#ifdef __cplusplus
}
#endif
#endif
