// Bare AF_PACKET frame ping-pong: the baseline `demi frame-pingpong --device afpacket --layer bare` measures and
// scripts/bench-catpowder.sh subtracts from catpowder's echo round trip. Plain C on the same TPACKET_V2 rings (and
// PACKET_QDISC_BYPASS) PacketSocketDevice sets up, with no stack and no buffer pool.
#include "cdemi_packet.h"

#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>

static uint64_t bare_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

typedef struct bare_packet {
    int fd;
    cdemi_packet_ring ring;
    uint32_t rx_index, tx_index;
    uint8_t mac[6];
} bare_packet;

// The socket and rings PacketSocketDevice's defaults give: 2048-byte slots, 4096 RX and 1024 TX, qdisc bypass.
static int bare_open(const char *ifname, bare_packet *b) {
    memset(b, 0, sizeof *b);
    b->fd = -1;
    int index = cdemi_if_index(ifname);
    if (index <= 0) return -ENODEV;
    if (cdemi_if_hwaddr(ifname, b->mac) < 0) return -errno;
    int fd = cdemi_packet_socket();
    if (fd < 0) return -errno;
    if (cdemi_packet_setup(fd, 2048, 4096, 1024, 1, &b->ring) < 0 || cdemi_packet_bind(fd, index) < 0) {
        int e = errno;
        cdemi_packet_unmap(&b->ring);
        close(fd);
        return -e;
    }
    b->fd = fd;
    return 0;
}

static void bare_close(bare_packet *b) {
    if (b->fd < 0) return;
    cdemi_packet_kick(b->fd);
    cdemi_packet_unmap(&b->ring);
    close(b->fd);
    b->fd = -1;
}

// The next received frame that is not our own, or NULL; `slot` is set to hand it back with bare_rx_done.
static uint8_t *bare_rx(bare_packet *b, uint8_t **slot, uint32_t *len) {
    for (;;) {
        uint8_t *s = b->ring.rx + (size_t)b->rx_index * b->ring.frame_size;
        if ((cdemi_tp2_status(s) & CDEMI_TP_STATUS_USER) == 0) return NULL;
        b->rx_index = b->rx_index + 1 == b->ring.rx_frames ? 0 : b->rx_index + 1;
        if (cdemi_tp2_pkttype(s) == CDEMI_PACKET_OUTGOING || cdemi_tp2_snaplen(s) != cdemi_tp2_len(s)) {
            cdemi_tp2_set_status(s, CDEMI_TP_STATUS_KERNEL);
            continue;
        }
        *slot = s;
        *len = cdemi_tp2_snaplen(s);
        return s + cdemi_tp2_mac(s);
    }
}

static void bare_rx_done(uint8_t *slot) { cdemi_tp2_set_status(slot, CDEMI_TP_STATUS_KERNEL); }

// The next TX slot's data area, or NULL if the kernel still has it.
static uint8_t *bare_tx_slot(bare_packet *b, uint8_t **slot) {
    uint8_t *s = b->ring.tx + (size_t)b->tx_index * b->ring.frame_size;
    uint32_t st = cdemi_tp2_status(s);
    if (st != CDEMI_TP_STATUS_AVAILABLE && (st & CDEMI_TP_STATUS_WRONG_FORMAT) == 0) {
        cdemi_packet_kick(b->fd);
        st = cdemi_tp2_status(s);
        if (st != CDEMI_TP_STATUS_AVAILABLE && (st & CDEMI_TP_STATUS_WRONG_FORMAT) == 0) return NULL;
    }
    *slot = s;
    return s + b->ring.tx_data_offset;
}

static void bare_tx_ready(bare_packet *b, uint8_t *slot, uint32_t len) {
    cdemi_tp2_set_len(slot, len);
    cdemi_tp2_set_status(slot, CDEMI_TP_STATUS_SEND_REQUEST);
    b->tx_index = b->tx_index + 1 == b->ring.tx_frames ? 0 : b->tx_index + 1;
}

static int bare_is_ours(const uint8_t *f, uint32_t len, uint16_t ethertype) {
    return len >= 18 && f[12] == (ethertype >> 8) && f[13] == (ethertype & 0xff);
}

int64_t cdemi_bare_packet_ping(const char *ifname, const uint8_t dst[6], uint16_t ethertype, uint16_t length,
                               uint32_t warmup, uint32_t count, uint64_t *samples, uint64_t timeout_ns) {
    if (length < 60) length = 60;
    if (length > 1514) return -EMSGSIZE;
    bare_packet b;
    int r = bare_open(ifname, &b);
    if (r < 0) return r;
    int64_t resent = 0;
    for (uint32_t i = 0; i < warmup + count; i++) {
        uint64_t start = 0;
        int answered = 0;
        for (int attempt = 0; attempt < 5 && !answered; attempt++) {
            uint8_t *slot;
            uint8_t *f = bare_tx_slot(&b, &slot);
            if (f == NULL) { bare_close(&b); return -ENOBUFS; }
            memcpy(f, dst, 6);
            memcpy(f + 6, b.mac, 6);
            f[12] = ethertype >> 8;
            f[13] = ethertype & 0xff;
            memcpy(f + 14, &i, 4);
            memset(f + 18, 0x5a, length - 18);
            if (attempt > 0) resent++;
            start = bare_now_ns();
            uint64_t deadline = start + timeout_ns;
            bare_tx_ready(&b, slot, length);
            cdemi_packet_kick(b.fd);
            while (!answered && bare_now_ns() < deadline) {
                uint8_t *rs;
                uint32_t len;
                uint8_t *g;
                while ((g = bare_rx(&b, &rs, &len)) != NULL) {
                    uint32_t seq = 0;
                    if (bare_is_ours(g, len, ethertype)) memcpy(&seq, g + 14, 4);
                    if (bare_is_ours(g, len, ethertype) && seq == i) answered = 1;
                    bare_rx_done(rs);
                }
            }
        }
        if (!answered) { bare_close(&b); return -ETIMEDOUT; }
        uint64_t rtt = bare_now_ns() - start;
        if (i >= warmup) samples[i - warmup] = rtt;
    }
    bare_close(&b);
    return resent;
}

int64_t cdemi_bare_packet_reflect(const char *ifname, uint16_t ethertype, uint64_t frames, uint64_t idle_ns) {
    bare_packet b;
    int r = bare_open(ifname, &b);
    if (r < 0) return r;
    uint64_t reflected = 0;
    uint64_t last = bare_now_ns();
    while (reflected < frames) {
        uint8_t *rs;
        uint32_t len;
        uint8_t *g = bare_rx(&b, &rs, &len);
        if (g == NULL) {
            if (bare_now_ns() - last > idle_ns) break;
            continue;
        }
        last = bare_now_ns();
        uint32_t out = 0;
        do {
            if (bare_is_ours(g, len, ethertype) && len <= b.ring.frame_size - b.ring.tx_data_offset) {
                uint8_t *ts;
                uint8_t *f = bare_tx_slot(&b, &ts);
                if (f != NULL) {
                    // The copy out of the RX slot is the one AF_PACKET's rings require; the MACs are swapped on the way.
                    memcpy(f, g + 6, 6);
                    memcpy(f + 6, g, 6);
                    memcpy(f + 12, g + 12, len - 12);
                    bare_tx_ready(&b, ts, len);
                    out++;
                }
            }
            bare_rx_done(rs);
        } while (out < 32 && (g = bare_rx(&b, &rs, &len)) != NULL);
        if (out > 0) cdemi_packet_kick(b.fd);
        reflected += out;
    }
    bare_close(&b);
    return (int64_t)reflected;
}
