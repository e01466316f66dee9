// Bare AF_XDP frame ping-pong (trait AFXDP): the baseline `demi frame-pingpong --device afxdp --layer bare` measures
// and scripts/bench-catpowder.sh subtracts from catpowder's AF_XDP echo round trip. No libxdp header here, so
// importers need none; without the trait the functions return -EOPNOTSUPP.
#ifndef CDEMI_XDP_BARE_H
#define CDEMI_XDP_BARE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// An XDP socket on queue 0 of `ifname` set up as XDPSocketDevice's defaults do (4096 UMEM frames of 2048 bytes,
/// rings of 2048, generic (SKB) attach, copy bind, XDP_USE_NEED_WAKEUP), driven in C with no stack and no buffer
/// pool. Ping sends `warmup + count` frames of `length` bytes (EtherType `ethertype`, source the interface's MAC, a
/// sequence number after the header) to `dst`, one at a time, each after the previous came back, resending after
/// `timeout_ns` (5 tries); writes the last `count` round trips (ns) to `samples`; returns the resends, or -errno.
/// Reflect sends every frame of `ethertype` back from the same UMEM frame with the MAC addresses swapped (no copy)
/// until `frames` went back or none came for `idle_ns`; returns how many, or -errno.
int64_t cdemi_bare_xdp_ping(const char *ifname, const uint8_t dst[6], uint16_t ethertype, uint16_t length,
                            uint32_t warmup, uint32_t count, uint64_t *samples, uint64_t timeout_ns);
int64_t cdemi_bare_xdp_reflect(const char *ifname, uint16_t ethertype, uint64_t frames, uint64_t idle_ns);

#ifdef __cplusplus
}
#endif
#endif
