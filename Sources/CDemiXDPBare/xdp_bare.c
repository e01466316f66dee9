// Bare AF_XDP frame ping-pong through libxdp's ring helpers (see CDemiXDPBare.h). Built for real only with the
// package trait AFXDP (DEMI_AFXDP defined, libxdp and libbpf linked).
#include "CDemiXDPBare.h"

#include <errno.h>

#ifndef DEMI_AFXDP
int64_t cdemi_bare_xdp_ping(const char *ifname, const uint8_t dst[6], uint16_t ethertype, uint16_t length,
                            uint32_t warmup, uint32_t count, uint64_t *samples, uint64_t timeout_ns) {
    (void)ifname; (void)dst; (void)ethertype; (void)length; (void)warmup; (void)count; (void)samples; (void)timeout_ns;
    return -EOPNOTSUPP;
}
int64_t cdemi_bare_xdp_reflect(const char *ifname, uint16_t ethertype, uint64_t frames, uint64_t idle_ns) {
    (void)ifname; (void)ethertype; (void)frames; (void)idle_ns;
    return -EOPNOTSUPP;
}
#else
#include <net/if.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <xdp/libxdp.h>
#include <xdp/xsk.h>

enum { NFRAMES = 4096, FRAME = 2048, RING = 2048, BURST = 32 };

typedef struct bare_xdp {
    void *area;
    struct xsk_umem *umem;
    struct xsk_socket *xsk;
    struct xsk_ring_prod fill, tx;
    struct xsk_ring_cons comp, rx;
    int fd;
    uint64_t free[NFRAMES];     // free frames (a stack) for ping's transmits
    uint32_t nfree;
    uint32_t in_flight;         // frames in the TX ring or the kernel
    uint8_t mac[6];
} bare_xdp;

static uint64_t bare_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int quiet_xdp(enum libxdp_print_level l, const char *f, va_list ap) { (void)l; (void)f; (void)ap; return 0; }
static int quiet_bpf(enum libbpf_print_level l, const char *f, va_list ap) { (void)l; (void)f; (void)ap; return 0; }

static int if_mac(const char *name, uint8_t mac[6]) {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    if (strlen(name) >= IFNAMSIZ) return -ENAMETOOLONG;
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return -errno;
    int r = ioctl(s, SIOCGIFHWADDR, &ifr);
    int e = errno;
    close(s);
    if (r < 0) return -e;
    memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
    return 0;
}

static void bare_close(bare_xdp *b) {
    if (b->xsk) xsk_socket__delete(b->xsk);
    if (b->umem) xsk_umem__delete(b->umem);
    if (b->area) munmap(b->area, (size_t)NFRAMES * FRAME);
    b->xsk = NULL;
    b->umem = NULL;
    b->area = NULL;
}

// The socket (EBUSY retried for 2 s, as the device does), the fill ring given its RING frames, the rest free.
static int bare_open(const char *ifname, bare_xdp *b) {
    memset(b, 0, sizeof *b);
    libxdp_set_print(quiet_xdp);
    libbpf_set_print(quiet_bpf);
    int r = if_mac(ifname, b->mac);
    if (r < 0) return r;
    b->area = mmap(NULL, (size_t)NFRAMES * FRAME, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
                   -1, 0);
    if (b->area == MAP_FAILED) { b->area = NULL; return -errno; }
    struct xsk_umem_config uc = {.fill_size = RING, .comp_size = RING, .frame_size = FRAME, .frame_headroom = 0,
                                 .flags = 0};
    struct xsk_socket_config sc;
    memset(&sc, 0, sizeof sc);
    sc.rx_size = RING;
    sc.tx_size = RING;
    sc.xdp_flags = XDP_FLAGS_SKB_MODE;
    sc.bind_flags = XDP_COPY | XDP_USE_NEED_WAKEUP;
    uint64_t deadline = bare_now_ns() + 2000000000u;
    useconds_t backoff = 5000;
    for (;;) {
        r = xsk_umem__create(&b->umem, b->area, (uint64_t)NFRAMES * FRAME, &b->fill, &b->comp, &uc);
        if (r != 0) { b->umem = NULL; bare_close(b); return r; }
        r = xsk_socket__create(&b->xsk, ifname, 0, b->umem, &b->rx, &b->tx, &sc);
        if (r == 0) break;
        b->xsk = NULL;
        xsk_umem__delete(b->umem);
        b->umem = NULL;
        if (r == -EBUSY && bare_now_ns() < deadline) {
            usleep(backoff);
            backoff = backoff * 2 > 100000 ? 100000 : backoff * 2;
            continue;
        }
        bare_close(b);
        return r;
    }
    b->fd = xsk_socket__fd(b->xsk);
    uint32_t idx = 0;
    if (xsk_ring_prod__reserve(&b->fill, RING, &idx) != RING) { bare_close(b); return -ENOBUFS; }
    for (uint32_t i = 0; i < RING; i++) *xsk_ring_prod__fill_addr(&b->fill, idx + i) = (uint64_t)i * FRAME;
    xsk_ring_prod__submit(&b->fill, RING);
    for (uint32_t i = RING; i < NFRAMES; i++) b->free[b->nfree++] = (uint64_t)i * FRAME;
    return 0;
}

static void kick_tx(bare_xdp *b) {
    if (xsk_ring_prod__needs_wakeup(&b->tx)) sendto(b->fd, NULL, 0, MSG_DONTWAIT, NULL, 0);
}

// Sent frames back from the completion ring: to the fill ring (`refill`) or to the free stack.
static void reap(bare_xdp *b, int refill) {
    if (b->in_flight == 0) return;
    uint32_t idx = 0;
    uint32_t n = xsk_ring_cons__peek(&b->comp, RING, &idx);
    if (n == 0) return;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t addr = *xsk_ring_cons__comp_addr(&b->comp, idx + i) & ~(uint64_t)(FRAME - 1);
        uint32_t f = 0;
        if (refill && xsk_ring_prod__reserve(&b->fill, 1, &f) == 1) {
            *xsk_ring_prod__fill_addr(&b->fill, f) = addr;
            xsk_ring_prod__submit(&b->fill, 1);
        } else {
            b->free[b->nfree++] = addr;
        }
    }
    xsk_ring_cons__release(&b->comp, n);
    b->in_flight -= n;
}

static void recycle(bare_xdp *b, uint64_t addr) {
    uint32_t f = 0;
    addr &= ~(uint64_t)(FRAME - 1);
    if (xsk_ring_prod__reserve(&b->fill, 1, &f) == 1) {
        *xsk_ring_prod__fill_addr(&b->fill, f) = addr;
        xsk_ring_prod__submit(&b->fill, 1);
    } else {
        b->free[b->nfree++] = addr;
    }
}

static int is_ours(const uint8_t *p, uint32_t len, uint16_t ethertype) {
    return len >= 18 && p[12] == (ethertype >> 8) && p[13] == (ethertype & 0xff);
}

int64_t cdemi_bare_xdp_ping(const char *ifname, const uint8_t dst[6], uint16_t ethertype, uint16_t length,
                            uint32_t warmup, uint32_t count, uint64_t *samples, uint64_t timeout_ns) {
    if (length < 60) length = 60;
    if (length > FRAME - XDP_PACKET_HEADROOM) return -EMSGSIZE;
    static bare_xdp b;
    int r = bare_open(ifname, &b);
    if (r < 0) return r;
    uint8_t *area = b.area;
    int64_t resent = 0;
    for (uint32_t i = 0; i < warmup + count; i++) {
        uint64_t start = 0;
        int answered = 0;
        for (int attempt = 0; attempt < 5 && !answered; attempt++) {
            reap(&b, 0);
            uint32_t idx = 0;
            if (b.nfree == 0 || xsk_ring_prod__reserve(&b.tx, 1, &idx) != 1) { bare_close(&b); return -ENOBUFS; }
            uint64_t addr = b.free[--b.nfree];
            uint8_t *f = area + addr;
            memcpy(f, dst, 6);
            memcpy(f + 6, b.mac, 6);
            f[12] = ethertype >> 8;
            f[13] = ethertype & 0xff;
            memcpy(f + 14, &i, 4);
            memset(f + 18, 0x5a, length - 18);
            if (attempt > 0) resent++;
            start = bare_now_ns();
            uint64_t deadline = start + timeout_ns;
            struct xdp_desc *d = xsk_ring_prod__tx_desc(&b.tx, idx);
            d->addr = addr;
            d->len = length;
            d->options = 0;
            xsk_ring_prod__submit(&b.tx, 1);
            b.in_flight++;
            kick_tx(&b);
            while (!answered && bare_now_ns() < deadline) {
                uint32_t n = xsk_ring_cons__peek(&b.rx, BURST, &idx);
                if (n == 0) {
                    if (xsk_ring_prod__needs_wakeup(&b.fill)) recvfrom(b.fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
                    continue;
                }
                for (uint32_t k = 0; k < n; k++) {
                    const struct xdp_desc *rd = xsk_ring_cons__rx_desc(&b.rx, idx + k);
                    const uint8_t *p = area + rd->addr;
                    uint32_t seq = 0;
                    if (is_ours(p, rd->len, ethertype)) memcpy(&seq, p + 14, 4);
                    if (is_ours(p, rd->len, ethertype) && seq == i) answered = 1;
                    recycle(&b, rd->addr);
                }
                xsk_ring_cons__release(&b.rx, n);
            }
        }
        if (!answered) { bare_close(&b); return -ETIMEDOUT; }
        uint64_t rtt = bare_now_ns() - start;
        if (i >= warmup) samples[i - warmup] = rtt;
    }
    bare_close(&b);
    return resent;
}

int64_t cdemi_bare_xdp_reflect(const char *ifname, uint16_t ethertype, uint64_t frames, uint64_t idle_ns) {
    static bare_xdp b;
    int r = bare_open(ifname, &b);
    if (r < 0) return r;
    uint8_t *area = b.area;
    uint64_t reflected = 0;
    uint64_t last = bare_now_ns();
    while (reflected < frames) {
        reap(&b, 1);
        uint32_t idx = 0;
        uint32_t n = xsk_ring_cons__peek(&b.rx, BURST, &idx);
        if (n == 0) {
            if (xsk_ring_prod__needs_wakeup(&b.fill)) recvfrom(b.fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
            if (bare_now_ns() - last > idle_ns) break;
            continue;
        }
        last = bare_now_ns();
        uint32_t out = 0;
        for (uint32_t k = 0; k < n; k++) {
            const struct xdp_desc *rd = xsk_ring_cons__rx_desc(&b.rx, idx + k);
            uint64_t addr = rd->addr;
            uint32_t len = rd->len;
            uint8_t *p = area + addr;
            uint32_t t = 0;
            if (!is_ours(p, len, ethertype) || xsk_ring_prod__reserve(&b.tx, 1, &t) != 1) {
                recycle(&b, addr);
                continue;
            }
            uint8_t m[6];
            memcpy(m, p, 6);
            memcpy(p, p + 6, 6);
            memcpy(p + 6, m, 6);
            struct xdp_desc *d = xsk_ring_prod__tx_desc(&b.tx, t);
            d->addr = addr;     // the received frame goes back as it is
            d->len = len;
            d->options = 0;
            xsk_ring_prod__submit(&b.tx, 1);
            b.in_flight++;
            out++;
        }
        xsk_ring_cons__release(&b.rx, n);
        if (out > 0) kick_tx(&b);
        reflected += out;
    }
    bare_close(&b);
    return (int64_t)reflected;
}
#endif
