// Thin wrappers over Linux facilities that Swift cannot import directly (packed structs, _GNU_SOURCE-only calls,
// macros). Every function returns what the wrapped call returns; errors are in errno.
#ifndef CDEMI_LINUX_H
#define CDEMI_LINUX_H

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include "cdemi_packet.h"

#ifdef __cplusplus
extern "C" {
#endif

// epoll: events are returned unpacked.
int cdemi_epoll_create(void);
int cdemi_epoll_add(int epfd, int fd, uint32_t events, uint64_t data);
int cdemi_epoll_mod(int epfd, int fd, uint32_t events, uint64_t data);
int cdemi_epoll_del(int epfd, int fd);
int cdemi_epoll_wait(int epfd, uint64_t *data_out, uint32_t *events_out, int max, int timeout_ms);

uint32_t cdemi_epollin(void);
uint32_t cdemi_epollout(void);
uint32_t cdemi_epollerr(void);
uint32_t cdemi_epollhup(void);
uint32_t cdemi_epollrdhup(void);
uint32_t cdemi_epollet(void);

// Sockets, with addresses in host byte order.
int cdemi_socket(int domain, int type, int protocol);          // adds SOCK_NONBLOCK | SOCK_CLOEXEC
int cdemi_bind4(int fd, uint32_t addr, uint16_t port);
int cdemi_connect4(int fd, uint32_t addr, uint16_t port);
int cdemi_accept4(int fd, uint32_t *addr, uint16_t *port);      // returns a non-blocking fd
int cdemi_getsockname4(int fd, uint32_t *addr, uint16_t *port);
int cdemi_getpeername4(int fd, uint32_t *addr, uint16_t *port);
ssize_t cdemi_sendto4(int fd, const void *buf, size_t len, uint32_t addr, uint16_t port);
ssize_t cdemi_recvfrom4(int fd, void *buf, size_t len, int flags, uint32_t *addr, uint16_t *port);
ssize_t cdemi_sendv(int fd, const void *const *bases, const size_t *lens, int count, int has_addr, uint32_t addr,
                    uint16_t port);
int cdemi_socket_error(int fd);                                   // SO_ERROR, or -1
int cdemi_setsockopt_int(int fd, int level, int name, int value);
int cdemi_getsockopt_int(int fd, int level, int name, int *value);
int cdemi_setsockopt_linger(int fd, int on, int seconds);
int cdemi_getsockopt_linger(int fd, int *on, int *seconds);
int cdemi_shutdown_write(int fd);

// Constants that are macros or enums in the C headers.
int cdemi_msg_dontwait(void);
int cdemi_msg_nosignal(void);
int cdemi_msg_trunc(void);

// Threads and CPUs.
int cdemi_pin_to_cpu(int cpu);                                    // pins the calling thread
int cdemi_cpu_count(void);
uint64_t cdemi_rdtsc(void);
/// The spin-wait hint (x86 `pause`). Static inline, so a spinning loop in Swift makes no call per turn.
static inline void cdemi_cpu_relax(void) {
#if defined(__x86_64__)
    __asm__ __volatile__("pause");
#endif
}
/// A shorter spin-wait step than `pause` (about 16 cycles here, against 70): `lfence` lets the next load of a polled
/// word start only once this one has completed, so a spinning loop has one load in flight and no flood of them.
static inline void cdemi_spin_short(void) {
#if defined(__x86_64__)
    __asm__ __volatile__("lfence" ::: "memory");
#endif
}

// Shared memory between processes (POSIX shm under /dev/shm).
/// Creates (exclusive) or opens a shared-memory object and maps `size` bytes of it. Returns the mapping or NULL.
void *cdemi_shm_map(const char *name, size_t size, int create);
int cdemi_shm_unmap(void *addr, size_t size);
int cdemi_shm_unlink(const char *name);

// Processes.
int cdemi_pidfd_open(int pid);          // a pidfd, or -1
int cdemi_pidfd_exited(int pidfd);      // 1 if the process has exited, 0 if alive, -1 on error
int cdemi_getpid(void);

// Atomics on shared memory. Static inline, so Swift inlines them: plain loads and stores with acquire/release order.
static inline uint64_t cdemi_load_acquire_u64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void cdemi_store_release_u64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline uint32_t cdemi_load_acquire_u32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void cdemi_store_release_u32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline int cdemi_cas_u32(uint32_t *p, uint32_t expected, uint32_t desired) {
    return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

/// Copies `n` bytes, 0 <= n <= 64, between buffers that do not overlap with at most four unaligned moves and no call
/// (the small messages of the shared-memory rings; memcpy is a call through the PLT). Reads and writes only [0, n).
static inline __attribute__((always_inline)) void cdemi_copy_small(void *__restrict d, const void *__restrict s, size_t n) {
    unsigned char *dd = (unsigned char *)d;
    const unsigned char *ss = (const unsigned char *)s;
    if (n >= 32) {
        __builtin_memcpy(dd, ss, 32);
        __builtin_memcpy(dd + n - 32, ss + n - 32, 32);
    } else if (n >= 16) {
        __builtin_memcpy(dd, ss, 16);
        __builtin_memcpy(dd + n - 16, ss + n - 16, 16);
    } else if (n >= 8) {
        __builtin_memcpy(dd, ss, 8);
        __builtin_memcpy(dd + n - 8, ss + n - 8, 8);
    } else if (n >= 4) {
        __builtin_memcpy(dd, ss, 4);
        __builtin_memcpy(dd + n - 4, ss + n - 4, 4);
    } else if (n > 0) {
        dd[0] = ss[0];
        dd[n / 2] = ss[n / 2];
        dd[n - 1] = ss[n - 1];
    }
}

#ifdef __cplusplus
}
#endif
#endif
