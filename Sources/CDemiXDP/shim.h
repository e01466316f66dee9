// AF_XDP through libxdp (and libbpf underneath): the system-library module of the AFXDP trait.
// Needs `apt-get install libxdp-dev libbpf-dev`; only targets built with `--traits AFXDP` import it.
#ifndef CDEMI_XDP_SHIM_H
#define CDEMI_XDP_SHIM_H

#include <sys/types.h>   /* before anything else, so fd_set matches Glibc's module */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/mman.h>
#include <poll.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <xdp/xsk.h>
#include <xdp/libxdp.h>

/* libxdp logs through a printf-style callback with a va_list, which Swift cannot implement: these pick one. */
static int cdemi_xdp_print_none(enum libxdp_print_level level, const char *format, va_list ap) {
    (void)level; (void)format; (void)ap;
    return 0;
}
static int cdemi_xdp_print_stderr(enum libxdp_print_level level, const char *format, va_list ap) {
    if (level > LIBXDP_WARN) return 0;
    return vfprintf(stderr, format, ap);
}
static int cdemi_bpf_print_none(enum libbpf_print_level level, const char *format, va_list ap) {
    (void)level; (void)format; (void)ap;
    return 0;
}
static int cdemi_bpf_print_stderr(enum libbpf_print_level level, const char *format, va_list ap) {
    if (level > LIBBPF_WARN) return 0;
    return vfprintf(stderr, format, ap);
}
/* Silences libxdp's and libbpf's messages (1) or prints their warnings to stderr (0). */
static inline void cdemi_xdp_set_quiet(int quiet) {
    libxdp_set_print(quiet ? cdemi_xdp_print_none : cdemi_xdp_print_stderr);
    libbpf_set_print(quiet ? cdemi_bpf_print_none : cdemi_bpf_print_stderr);
}

/* Copy-mode TX runs inside sendmsg: a zero-length non-blocking sendto kicks the kernel (about 32 frames per call). */
static inline ssize_t cdemi_xdp_kick_tx(int fd) {
    return sendto(fd, NULL, 0, MSG_DONTWAIT, NULL, 0);
}
/* Wakes the RX side when the fill ring asks for it (XDP_USE_NEED_WAKEUP). */
static inline ssize_t cdemi_xdp_wake_rx(int fd) {
    return recvfrom(fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
}

/* The socket configuration, written here because of its anonymous union. */
static inline struct xsk_socket_config cdemi_xdp_socket_config(uint32_t rx_size, uint32_t tx_size,
                                                               uint32_t libxdp_flags, uint32_t xdp_flags,
                                                               uint16_t bind_flags) {
    struct xsk_socket_config c;
    c.rx_size = rx_size;
    c.tx_size = tx_size;
    c.libxdp_flags = libxdp_flags;
    c.xdp_flags = xdp_flags;
    c.bind_flags = bind_flags;
    return c;
}

/* XDP statistics of the socket (rx_dropped, rx_ring_full, rx_fill_ring_empty_descs, ...). 0 or -1 with errno. */
static inline int cdemi_xdp_statistics(int fd, struct xdp_statistics *out) {
    socklen_t len = sizeof(*out);
    return getsockopt(fd, SOL_XDP, XDP_STATISTICS, out, &len);
}

/* The XDP attach mode of the socket's options (XDP_OPTIONS_ZEROCOPY if zero-copy). */
static inline int cdemi_xdp_options(int fd, uint32_t *flags) {
    struct xdp_options o;
    socklen_t len = sizeof(o);
    int r = getsockopt(fd, SOL_XDP, XDP_OPTIONS, &o, &len);
    if (r == 0) *flags = o.flags;
    return r;
}

#endif
