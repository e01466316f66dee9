#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "CDemiBaselines.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void pin(int cpu) {
    if (cpu < 0) return;
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    sched_setaffinity(0, sizeof s, &s);
}

struct server_args {
    int tcp, size, total, cpu, fd;
    volatile int ready;
    int error;
};

// Receives exactly `n` bytes (TCP) spinning on a non-blocking socket.
static int recv_all(int fd, char *buf, int n) {
    int got = 0;
    while (got < n) {
        ssize_t r = recv(fd, buf + got, (size_t)(n - got), MSG_DONTWAIT);
        if (r > 0) got += (int)r;
        else if (r == 0) return -1;
        else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return -1;
    }
    return 0;
}

static int send_all(int fd, const char *buf, int n, const struct sockaddr_in *to) {
    int sent = 0;
    while (sent < n) {
        ssize_t r = to ? sendto(fd, buf + sent, (size_t)(n - sent), MSG_DONTWAIT, (const struct sockaddr *)to, sizeof *to)
                       : send(fd, buf + sent, (size_t)(n - sent), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r > 0) sent += (int)r;
        else if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return -1;
    }
    return 0;
}

static void *server_main(void *p) {
    struct server_args *a = p;
    pin(a->cpu);
    char *buf = malloc((size_t)a->size > 65536 ? (size_t)a->size : 65536);
    int fd = a->fd;
    if (a->tcp) {
        a->ready = 1;
        int c = -1;
        while (c < 0) c = accept4(fd, NULL, NULL, SOCK_NONBLOCK);
        int one = 1;
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        for (int i = 0; i < a->total; i++) {
            if (recv_all(c, buf, a->size) || send_all(c, buf, a->size, NULL)) { a->error = EIO; break; }
        }
        close(c);
    } else {
        a->ready = 1;
        for (int i = 0; i < a->total; i++) {
            struct sockaddr_in from;
            socklen_t fl = sizeof from;
            ssize_t r;
            while ((r = recvfrom(fd, buf, 65536, MSG_DONTWAIT, (struct sockaddr *)&from, &fl)) < 0) {
                if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) { a->error = errno; goto out; }
            }
            if (send_all(fd, buf, (int)r, &from)) { a->error = EIO; break; }
        }
    }
out:
    free(buf);
    return NULL;
}

int demi_baseline_pingpong(int tcp, int size, int warmup, int count, int server_cpu, int client_cpu,
                           uint64_t *rtt_ns) {
    if (size <= 0 || size > 65507 || count <= 0 || warmup < 0) return EINVAL;
    int lfd = socket(AF_INET, (tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK, 0);
    if (lfd < 0) return errno;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    if (bind(lfd, (struct sockaddr *)&sa, sl) || getsockname(lfd, (struct sockaddr *)&sa, &sl) ||
        (tcp && listen(lfd, 1))) {
        int e = errno;
        close(lfd);
        return e;
    }
    struct server_args a = {.tcp = tcp, .size = size, .total = warmup + count, .cpu = server_cpu, .fd = lfd};
    pthread_t th;
    if (pthread_create(&th, NULL, server_main, &a)) { close(lfd); return EAGAIN; }
    while (!a.ready) sched_yield();
    pin(client_cpu);
    int c = socket(AF_INET, (tcp ? SOCK_STREAM : SOCK_DGRAM), 0);
    int rc = 0;
    if (c < 0 || connect(c, (struct sockaddr *)&sa, sizeof sa)) { rc = errno; goto done; }
    if (tcp) {
        int one = 1;
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    char *buf = calloc(1, 65536);
    for (int i = 0; i < warmup + count && rc == 0; i++) {
        uint64_t t0 = now_ns();
        if (send_all(c, buf, size, NULL)) { rc = EIO; break; }
        if (tcp) {
            if (recv_all(c, buf, size)) rc = EIO;
        } else {
            while (recv(c, buf, 65536, MSG_DONTWAIT) < 0) {
                if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) { rc = errno; break; }
            }
        }
        if (i >= warmup) rtt_ns[i - warmup] = now_ns() - t0;
    }
    free(buf);
done:
    if (rc) {
        // Unblock a server still waiting: close both ends.
        shutdown(lfd, SHUT_RDWR);
    }
    if (c >= 0) close(c);
    pthread_join(th, NULL);
    close(lfd);
    return rc ? rc : a.error;
}

struct stream_args {
    int fd, size, cpu;
    uint64_t total;
    volatile int ready;
};

static void *sink_main(void *p) {
    struct stream_args *a = p;
    pin(a->cpu);
    a->ready = 1;
    int c = accept(a->fd, NULL, NULL);
    if (c < 0) return NULL;
    char *buf = malloc(1 << 20);
    uint64_t got = 0;
    while (got < a->total) {
        ssize_t r = recv(c, buf, 1 << 20, 0);
        if (r <= 0) break;
        got += (uint64_t)r;
    }
    free(buf);
    close(c);
    return NULL;
}

int demi_baseline_tcp_stream(int size, uint64_t total_bytes, int server_cpu, int client_cpu, uint64_t *elapsed_ns) {
    if (size <= 0) return EINVAL;
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sl) || getsockname(lfd, (struct sockaddr *)&sa, &sl) ||
        listen(lfd, 1)) {
        int e = errno;
        if (lfd >= 0) close(lfd);
        return e;
    }
    struct stream_args a = {.fd = lfd, .size = size, .cpu = server_cpu, .total = total_bytes};
    pthread_t th;
    if (pthread_create(&th, NULL, sink_main, &a)) { close(lfd); return EAGAIN; }
    while (!a.ready) sched_yield();
    pin(client_cpu);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    int rc = 0;
    char *buf = calloc(1, (size_t)size);
    uint64_t t0 = now_ns();
    if (c < 0 || connect(c, (struct sockaddr *)&sa, sizeof sa)) {
        rc = errno;
    } else {
        uint64_t sent = 0;
        while (sent < total_bytes) {
            ssize_t r = send(c, buf, (size_t)size, MSG_NOSIGNAL);
            if (r <= 0) { rc = errno ? errno : EIO; break; }
            sent += (uint64_t)r;
        }
        shutdown(c, SHUT_WR);
    }
    pthread_join(th, NULL);
    *elapsed_ns = now_ns() - t0;
    free(buf);
    if (c >= 0) close(c);
    close(lfd);
    return rc;
}

double demi_baseline_udp_local_round(int count) {
    int a = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0), b = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    if (a < 0 || b < 0 || bind(a, (struct sockaddr *)&sa, sl) || bind(b, (struct sockaddr *)&sa, sl) ||
        getsockname(a, (struct sockaddr *)&sa, &sl)) {
        int e = errno;
        if (a >= 0) close(a);
        if (b >= 0) close(b);
        return -(double)e;
    }
    char msg[64] = {0};
    char *buf = malloc(65536);
    uint64_t t0 = now_ns();
    for (int i = 0; i < count; i++) {
        sendto(b, msg, sizeof msg, MSG_DONTWAIT, (struct sockaddr *)&sa, sizeof sa);
        struct sockaddr_in from;
        socklen_t fl = sizeof from;
        while (recvfrom(a, buf, 65536, MSG_DONTWAIT, (struct sockaddr *)&from, &fl) < 0) {}
    }
    double r = (double)(now_ns() - t0) / count;
    free(buf);
    close(a);
    close(b);
    return r;
}

#include <sys/mman.h>
#include <sys/wait.h>

/* One SPSC ring of RING_SLOTS fixed-size slots (4 KiB, or the message size rounded up to 4 KiB for larger messages)
 * plus a length word per slot; indices on their own cache lines. */
#define RING_SLOTS 64
#define MAX_MESSAGE (1 << 20)
struct shm_ring {
    _Alignas(64) volatile uint64_t head; /* written by the consumer */
    _Alignas(64) volatile uint64_t tail; /* written by the producer */
    _Alignas(64) uint32_t lengths[RING_SLOTS];
    _Alignas(64) char slots[]; /* RING_SLOTS slots of `slot` bytes */
};

struct ring_side {
    struct shm_ring *r;
    size_t slot;
    uint64_t local, cached;
};

static size_t slot_for(int size) { return ((size_t)size + 4095) / 4096 * 4096; }
static size_t ring_bytes(size_t slot) { return (sizeof(struct shm_ring) + RING_SLOTS * slot + 4095) / 4096 * 4096; }

static void ring_push(struct ring_side *s, const char *msg, uint32_t len) {
    while (s->local - s->cached >= RING_SLOTS) s->cached = __atomic_load_n(&s->r->head, __ATOMIC_ACQUIRE);
    uint64_t i = s->local % RING_SLOTS;
    memcpy(s->r->slots + i * s->slot, msg, len);
    s->r->lengths[i] = len;
    s->local++;
    __atomic_store_n(&s->r->tail, s->local, __ATOMIC_RELEASE);
}

static uint32_t ring_pop(struct ring_side *s, char *out) {
    while (s->cached == s->local) s->cached = __atomic_load_n(&s->r->tail, __ATOMIC_ACQUIRE);
    uint64_t i = s->local % RING_SLOTS;
    uint32_t len = s->r->lengths[i];
    memcpy(out, s->r->slots + i * s->slot, len);
    s->local++;
    __atomic_store_n(&s->r->head, s->local, __ATOMIC_RELEASE);
    return len;
}

/* What one ring-pair run needs: two rings (one each way) in one shared anonymous mapping, and a message buffer and a
 * receive buffer of one slot each. */
struct ring_run {
    void *mem;
    size_t bytes, slot;
    struct shm_ring *first, *second;
    char *msg, *buf;
};

static int ring_run_open(struct ring_run *r, int size) {
    r->slot = slot_for(size);
    size_t one = ring_bytes(r->slot);
    r->bytes = 2 * one;
    r->mem = mmap(NULL, r->bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (r->mem == MAP_FAILED) return errno;
    memset(r->mem, 0, r->bytes);
    r->first = r->mem;
    r->second = (struct shm_ring *)((char *)r->mem + one);
    r->msg = malloc(r->slot);
    r->buf = malloc(r->slot);
    if (r->msg == NULL || r->buf == NULL) {
        free(r->msg);
        free(r->buf);
        munmap(r->mem, r->bytes);
        return ENOMEM;
    }
    memset(r->msg, 7, (size_t)size);
    return 0;
}

static void ring_run_close(struct ring_run *r) {
    free(r->msg);
    free(r->buf);
    munmap(r->mem, r->bytes);
}

/* Forks the far side: in the child runs `body` (pinned to `cpu`) and exits; returns the child's pid or -errno. */
static pid_t ring_run_fork(struct ring_run *r, int cpu, void (*body)(struct ring_run *, int), int arg) {
    pid_t child = fork();
    if (child < 0) return -errno;
    if (child == 0) {
        pin(cpu);
        body(r, arg);
        _exit(0);
    }
    return child;
}

static void echo_side(struct ring_run *r, int total) {
    struct ring_side in = {r->first, r->slot, 0, 0}, out = {r->second, r->slot, 0, 0};
    for (int i = 0; i < total; i++) {
        uint32_t len = ring_pop(&in, r->buf);
        ring_push(&out, r->buf, len);
    }
}

static void sink_side(struct ring_run *r, int count) {
    struct ring_side in = {r->first, r->slot, 0, 0}, out = {r->second, r->slot, 0, 0};
    for (int i = 0; i < count; i++) ring_pop(&in, r->buf);
    ring_push(&out, r->buf, 1);
}

int demi_baseline_shm_pingpong(int size, int warmup, int count, int server_cpu, int client_cpu, uint64_t *rtt_ns) {
    if (size <= 0 || size > MAX_MESSAGE || count <= 0 || warmup < 0) return EINVAL;
    struct ring_run r;
    int rc = ring_run_open(&r, size);
    if (rc) return rc;
    int total = warmup + count;
    pid_t child = ring_run_fork(&r, server_cpu, echo_side, total);
    if (child < 0) {
        ring_run_close(&r);
        return (int)-child;
    }
    pin(client_cpu);
    struct ring_side out = {r.first, r.slot, 0, 0}, in = {r.second, r.slot, 0, 0};
    for (int i = 0; i < total; i++) {
        uint64_t t0 = now_ns();
        ring_push(&out, r.msg, (uint32_t)size);
        if (ring_pop(&in, r.buf) != (uint32_t)size) { rc = EIO; }
        if (i >= warmup) rtt_ns[i - warmup] = now_ns() - t0;
    }
    int status = 0;
    waitpid(child, &status, 0);
    ring_run_close(&r);
    return rc;
}

int demi_baseline_shm_stream(int size, int count, int server_cpu, int client_cpu, uint64_t *elapsed_ns) {
    if (size <= 0 || size > MAX_MESSAGE || count <= 0) return EINVAL;
    struct ring_run r;
    int rc = ring_run_open(&r, size);
    if (rc) return rc;
    pid_t child = ring_run_fork(&r, server_cpu, sink_side, count);
    if (child < 0) {
        ring_run_close(&r);
        return (int)-child;
    }
    pin(client_cpu);
    struct ring_side out = {r.first, r.slot, 0, 0}, in = {r.second, r.slot, 0, 0};
    uint64_t t0 = now_ns();
    for (int i = 0; i < count; i++) ring_push(&out, r.msg, (uint32_t)size);
    rc = ring_pop(&in, r.buf) == 1 ? 0 : EIO;
    *elapsed_ns = now_ns() - t0;
    int status = 0;
    waitpid(child, &status, 0);
    ring_run_close(&r);
    return rc;
}

int demi_baseline_pin(int cpu) {
    if (cpu < 0) return 0;
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    return sched_setaffinity(0, sizeof s, &s) ? errno : 0;
}

int demi_baseline_cpu_count(void) {
    cpu_set_t s;
    CPU_ZERO(&s);
    if (sched_getaffinity(0, sizeof s, &s)) return 1;
    return CPU_COUNT(&s);
}

/* Busy-polling stream: the sink spins on recv(MSG_DONTWAIT) until it has every byte, the sender on send. */
static void *poll_sink_main(void *p) {
    struct stream_args *a = p;
    pin(a->cpu);
    a->ready = 1;
    int c = -1;
    while (c < 0) {
        c = accept4(a->fd, NULL, NULL, SOCK_NONBLOCK);
        if (c < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return NULL;
    }
    char *buf = malloc(1 << 20);
    uint64_t got = 0;
    while (got < a->total) {
        ssize_t r = recv(c, buf, 1 << 20, MSG_DONTWAIT);
        if (r > 0) got += (uint64_t)r;
        else if (r == 0) break;
        else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) break;
    }
    free(buf);
    close(c);
    return NULL;
}

int demi_baseline_tcp_stream_poll(int size, uint64_t total_bytes, int server_cpu, int client_cpu,
                                  uint64_t *elapsed_ns) {
    if (size <= 0) return EINVAL;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sl) || getsockname(lfd, (struct sockaddr *)&sa, &sl) ||
        listen(lfd, 1)) {
        int e = errno;
        if (lfd >= 0) close(lfd);
        return e;
    }
    struct stream_args a = {.fd = lfd, .size = size, .cpu = server_cpu, .total = total_bytes};
    pthread_t th;
    if (pthread_create(&th, NULL, poll_sink_main, &a)) { close(lfd); return EAGAIN; }
    while (!a.ready) sched_yield();
    pin(client_cpu);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    int rc = 0;
    char *buf = calloc(1, (size_t)size);
    uint64_t t0 = now_ns();
    if (c < 0 || connect(c, (struct sockaddr *)&sa, sizeof sa)) {
        rc = errno;
        shutdown(lfd, SHUT_RDWR);
    } else {
        int one = 1;
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        uint64_t sent = 0;
        while (sent < total_bytes) {
            uint64_t left = total_bytes - sent;
            size_t n = left < (uint64_t)size ? (size_t)left : (size_t)size;
            ssize_t r = send(c, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (r > 0) sent += (uint64_t)r;
            else if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) { rc = errno; break; }
        }
        shutdown(c, SHUT_WR);
    }
    pthread_join(th, NULL);
    *elapsed_ns = now_ns() - t0;
    free(buf);
    if (c >= 0) close(c);
    close(lfd);
    return rc;
}

/* A minimal C ready-bitset scheduler with the same shape as DemiRuntime's: slots with a state byte, a word level
   and a summary level, Lemire's loop over set bits. */
#define SCHED_SLOTS 1024
struct c_sched {
    uint64_t summary;
    uint64_t words[SCHED_SLOTS / 64];
    uint8_t state[SCHED_SLOTS];
    uint64_t polls;
};

static inline void c_sched_wake(struct c_sched *s, uint32_t i) {
    s->words[i >> 6] |= 1ull << (i & 63);
    s->summary |= 1ull << (i >> 6);
}

__attribute__((noinline)) static void c_sched_poll(struct c_sched *s, uint32_t i) { s->polls += i + 1; }

static inline void c_sched_run(struct c_sched *s) {
    uint64_t sb = s->summary;
    s->summary = 0;
    while (sb) {
        unsigned w = (unsigned)__builtin_ctzll(sb);
        sb &= sb - 1;
        uint64_t bits = s->words[w];
        s->words[w] = 0;
        while (bits) {
            uint32_t i = w << 6 | (unsigned)__builtin_ctzll(bits);
            bits &= bits - 1;
            if (s->state[i] == 1) c_sched_poll(s, i);
        }
    }
}

double demi_baseline_sched_wake_poll(int count) {
    struct c_sched *s = calloc(1, sizeof *s);
    if (!s || count <= 0) { free(s); return -1; }
    uint32_t task = 5;
    s->state[task] = 1;
    uint64_t t0 = now_ns();
    for (int k = 0; k < count; k++) {
        c_sched_wake(s, task);
        c_sched_run(s);
        __asm__ volatile("" ::: "memory");
    }
    double r = (double)(now_ns() - t0) / count;
    if (s->polls == 0) r = -1;
    free(s);
    return r;
}

double demi_baseline_malloc_free(int count, int size) {
    if (count <= 0 || size <= 0) return -1;
    uint64_t t0 = now_ns();
    for (int k = 0; k < count; k++) {
        void *p = malloc((size_t)size);
        __asm__ volatile("" : : "r"(p) : "memory");
        free(p);
    }
    return (double)(now_ns() - t0) / count;
}

/* Many clients over TCP: one server thread and one client thread, each busy-polling all `nconn` non-blocking
   sockets in turn. */
#include <fcntl.h>
#include <stdio.h>

struct multi_server_args {
    int fd, nconn, size, cpu;
    volatile int ready, stop;
    int error;
};

static void *multi_server_main(void *p) {
    struct multi_server_args *a = p;
    pin(a->cpu);
    int n = a->nconn, size = a->size;
    int *fds = calloc((size_t)n, sizeof(int));
    int *got = calloc((size_t)n, sizeof(int));
    char *bufs = calloc((size_t)n, (size_t)size);
    a->ready = 1;
    int accepted = 0;
    while (accepted < n && !a->stop) {
        int c = accept4(a->fd, NULL, NULL, SOCK_NONBLOCK);
        if (c >= 0) {
            int one = 1;
            setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            fds[accepted++] = c;
        } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            a->error = errno;
            break;
        }
    }
    int open = accepted;
    while (open > 0) {
        for (int i = 0; i < accepted; i++) {
            if (fds[i] < 0) continue;
            char *buf = bufs + (size_t)i * (size_t)size;
            ssize_t r = recv(fds[i], buf + got[i], (size_t)(size - got[i]), MSG_DONTWAIT);
            if (r > 0) {
                got[i] += (int)r;
                if (got[i] == size) {
                    got[i] = 0;
                    if (send_all(fds[i], buf, size, NULL)) r = -1, errno = EIO;
                }
            }
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
                if (r < 0 && !a->error && errno != ECONNRESET) a->error = errno;
                close(fds[i]);
                fds[i] = -1;
                open--;
            }
        }
    }
    free(bufs);
    free(got);
    free(fds);
    return NULL;
}

int demi_baseline_tcp_multi_echo(int nconn, int size, int warmup, int count, int server_cpu, int client_cpu,
                                 uint64_t *rtt_ns, uint64_t *elapsed_ns) {
    if (nconn <= 0 || size <= 0 || size > 65536 || count <= 0 || warmup < 0) return EINVAL;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (lfd < 0) return errno;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    if (bind(lfd, (struct sockaddr *)&sa, sl) || getsockname(lfd, (struct sockaddr *)&sa, &sl) ||
        listen(lfd, nconn < 128 ? 128 : nconn)) {
        int e = errno;
        close(lfd);
        return e;
    }
    struct multi_server_args a = {.fd = lfd, .nconn = nconn, .size = size, .cpu = server_cpu};
    pthread_t th;
    if (pthread_create(&th, NULL, multi_server_main, &a)) { close(lfd); return EAGAIN; }
    while (!a.ready) sched_yield();
    pin(client_cpu);
    int *fds = malloc((size_t)nconn * sizeof(int));
    int *got = calloc((size_t)nconn, sizeof(int));
    uint64_t *t0 = calloc((size_t)nconn, sizeof(uint64_t));
    char *msg = calloc(1, (size_t)size), *buf = malloc((size_t)size);
    memset(msg, 0x5a, (size_t)size);
    for (int i = 0; i < nconn; i++) fds[i] = -1;
    int rc = 0, total = warmup + count, started = 0, done = 0;
    for (int i = 0; i < nconn && rc == 0; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (fds[i] < 0 || connect(fds[i], (struct sockaddr *)&sa, sizeof sa)) { rc = errno; break; }
        int one = 1;
        setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
    }
    uint64_t window = now_ns();
    /* Every connection starts with one message in flight (as long as there are messages left to send). */
    for (int i = 0; i < nconn && rc == 0 && started < total; i++, started++) {
        t0[i] = now_ns();
        if (send_all(fds[i], msg, size, NULL)) rc = EIO;
    }
    if (warmup == 0) window = now_ns();
    while (rc == 0 && done < total) {
        for (int i = 0; i < nconn && rc == 0; i++) {
            if (t0[i] == 0) continue; /* idle: nothing in flight */
            ssize_t r = recv(fds[i], buf, (size_t)(size - got[i]), MSG_DONTWAIT);
            if (r > 0) {
                got[i] += (int)r;
                if (got[i] < size) continue;
                uint64_t t = now_ns();
                got[i] = 0;
                if (done >= warmup) rtt_ns[done - warmup] = t - t0[i];
                done++;
                if (done == warmup) window = t;
                if (done == total) *elapsed_ns = t - window;
                if (started < total) {
                    started++;
                    t0[i] = now_ns();
                    if (send_all(fds[i], msg, size, NULL)) rc = EIO;
                } else {
                    t0[i] = 0;
                }
            } else if (r == 0) {
                rc = ECONNRESET;
            } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                rc = errno;
            }
        }
    }
    a.stop = 1;
    for (int i = 0; i < nconn; i++)
        if (fds[i] >= 0) close(fds[i]);
    pthread_join(th, NULL);
    close(lfd);
    free(buf);
    free(msg);
    free(t0);
    free(got);
    free(fds);
    return rc ? rc : a.error;
}

/* Many clients over UDP: one echo server socket on its own thread (busy-polling recvfrom, sending each datagram back
   to its sender) and `nconn` connected client sockets on the calling thread, each with one datagram in flight. */
struct multi_udp_server_args {
    int fd, size, cpu;
    volatile int ready, stop;
    int error;
};

static void *multi_udp_server_main(void *p) {
    struct multi_udp_server_args *a = p;
    pin(a->cpu);
    char *buf = malloc((size_t)a->size);
    a->ready = 1;
    while (!a->stop) {
        struct sockaddr_in from;
        socklen_t fl = sizeof from;
        ssize_t r = recvfrom(a->fd, buf, (size_t)a->size, MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
        if (r > 0) {
            if (sendto(a->fd, buf, (size_t)r, 0, (struct sockaddr *)&from, fl) != r && !a->error) a->error = errno;
        } else if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            a->error = errno;
            break;
        }
    }
    free(buf);
    return NULL;
}

int demi_baseline_udp_multi_echo(int nconn, int size, int warmup, int count, int server_cpu, int client_cpu,
                                 uint64_t *rtt_ns, uint64_t *elapsed_ns) {
    if (nconn <= 0 || size <= 1 || size > 65507 || count <= 0 || warmup < 0) return EINVAL;
    int sfd = socket(AF_INET, SOCK_DGRAM, 0);
    if (sfd < 0) return errno;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    if (bind(sfd, (struct sockaddr *)&sa, sl) || getsockname(sfd, (struct sockaddr *)&sa, &sl)) {
        int e = errno;
        close(sfd);
        return e;
    }
    struct multi_udp_server_args a = {.fd = sfd, .size = size, .cpu = server_cpu};
    pthread_t th;
    if (pthread_create(&th, NULL, multi_udp_server_main, &a)) { close(sfd); return EAGAIN; }
    while (!a.ready) sched_yield();
    pin(client_cpu);
    int *fds = malloc((size_t)nconn * sizeof(int));
    uint64_t *t0 = calloc((size_t)nconn, sizeof(uint64_t));
    char *msg = calloc(1, (size_t)size), *buf = malloc((size_t)size);
    memset(msg, 0x5a, (size_t)size);
    for (int i = 0; i < nconn; i++) fds[i] = -1;
    int rc = 0, total = warmup + count, started = 0, done = 0;
    for (int i = 0; i < nconn && rc == 0; i++) {
        fds[i] = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        if (fds[i] < 0 || connect(fds[i], (struct sockaddr *)&sa, sizeof sa)) rc = errno;
    }
    uint64_t window = now_ns(), progress = window;
    for (int i = 0; i < nconn && rc == 0 && started < total; i++, started++) {
        t0[i] = now_ns();
        if (send(fds[i], msg, (size_t)size, 0) != size) rc = errno ? errno : EIO;
    }
    if (warmup == 0) window = now_ns();
    while (rc == 0 && done < total) {
        for (int i = 0; i < nconn && rc == 0; i++) {
            if (t0[i] == 0) continue; /* idle: nothing in flight */
            ssize_t r = recv(fds[i], buf, (size_t)size, MSG_DONTWAIT);
            if (r > 0) {
                uint64_t t = now_ns();
                progress = t;
                if (done >= warmup) rtt_ns[done - warmup] = t - t0[i];
                done++;
                if (done == warmup) window = t;
                if (done == total) *elapsed_ns = t - window;
                if (started < total) {
                    started++;
                    t0[i] = now_ns();
                    if (send(fds[i], msg, (size_t)size, 0) != size) rc = errno ? errno : EIO;
                } else {
                    t0[i] = 0;
                }
            } else if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                rc = errno;
            }
        }
        /* A datagram lost on loopback (a full socket buffer) would stall the closed loop for good. */
        if (rc == 0 && now_ns() - progress > 5000000000ull) rc = ETIMEDOUT;
    }
    a.stop = 1;
    pthread_join(th, NULL);
    for (int i = 0; i < nconn; i++)
        if (fds[i] >= 0) close(fds[i]);
    close(sfd);
    free(buf);
    free(msg);
    free(t0);
    free(fds);
    return rc ? rc : a.error;
}

/* ---- catmem's pipe format in plain C ------------------------------------------------------------------------------
 * The layout SharedMemoryLibOS uses (format version 3): a 4 KiB control block with every word the two sides write in a
 * 128-byte block of its own, then the creator-to-opener ring ("a") and the opener-to-creator ring ("b"). A ring carries
 * records that start on cache lines: a 16-byte header (a stamp word, then the fragment's and the message's lengths in
 * 32 bits each) and the payload. The stamp is the record's index XORed with the pipe's key (control block offset 24),
 * with the flags in its low 6 bits; the producer stores it last, with a release store, and the consumer polls the
 * word at its own index until the stamp is there. A producer that finds its ring empty past the first 4 KiB writes a
 * lap record and goes on at the ring's start, storing the lap's stamp after the next record. The consumer's index is
 * published with a release store and cached by the producer. Whole messages of one record only (no fragments), which
 * is all the benchmark rows that put plain C at one or both ends of a pipe need. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>

enum {
    CM_CONTROL = 4096, CM_VERSION = 3, CM_KEY = 24, CM_CREATOR_PID = 128, CM_OPENER_PID = 256, CM_CREATOR_CLOSED = 384,
    CM_OPENER_CLOSED = 512, CM_A_HEAD = 768, CM_B_HEAD = 1024, CM_COMPACT = 4096, CM_FLAG_LAP = 2, CM_FLAG_BITS = 63,
    CM_ALIGN = 64
};
static const uint64_t CM_MAGIC = 0x45504950494D4544ull; /* "DEMIPIPE" */

struct cm_side {
    char *data;
    uint64_t *head;
    uint64_t mask, key, local, cached, rewind;
    uint64_t lap_stamp; /* a lap record's stamp, stored after the next record (0: none) */
    uint64_t lap_pos;
};

static uint64_t cm_record(uint32_t len) { return (16 + (uint64_t)len + CM_ALIGN - 1) & ~(uint64_t)(CM_ALIGN - 1); }

static void cm_side_init(struct cm_side *s, char *m, uint32_t ring, int b_ring) {
    s->data = m + CM_CONTROL + (b_ring ? ring : 0);
    s->head = (uint64_t *)(m + (b_ring ? CM_B_HEAD : CM_A_HEAD));
    s->mask = ring - 1;
    s->key = *(uint64_t *)(m + CM_KEY);
    s->local = 0;
    s->cached = 0;
    s->rewind = CM_COMPACT;
    s->lap_stamp = 0;
    s->lap_pos = 0;
}

static void cm_copy_in(struct cm_side *s, uint64_t at, const char *src, uint32_t n) {
    uint64_t pos = at & s->mask, first = s->mask + 1 - pos;
    if (first >= n) { memcpy(s->data + pos, src, n); return; }
    memcpy(s->data + pos, src, first);
    memcpy(s->data, src + first, n - first);
}

static void cm_copy_out(struct cm_side *s, uint64_t at, char *dst, uint32_t n) {
    uint64_t pos = at & s->mask, first = s->mask + 1 - pos;
    if (first >= n) { memcpy(dst, s->data + pos, n); return; }
    memcpy(dst, s->data + pos, first);
    memcpy(dst + first, s->data, n - first);
}

static void cm_push(struct cm_side *s, const char *msg, uint32_t len) {
    uint64_t need = cm_record(len), capacity = s->mask + 1;
    if (s->local >= s->rewind) {
        uint64_t pos = s->local & s->mask;
        if (capacity > CM_COMPACT && pos >= CM_COMPACT && need <= pos) {
            s->cached = __atomic_load_n(s->head, __ATOMIC_ACQUIRE);
            if (s->cached == s->local) { /* empty: a lap record, then this record at the start */
                *(uint64_t *)(s->data + pos + 8) = 0;
                s->lap_pos = pos;
                s->lap_stamp = (s->local ^ s->key) | CM_FLAG_LAP;
                s->local = (s->local | s->mask) + 1;
            }
        }
        s->rewind = (s->local & ~s->mask) + CM_COMPACT;
        if (s->rewind <= s->local) s->rewind = s->local + CM_COMPACT;
    }
    while (capacity - (s->local - s->cached) < need) {
        __builtin_ia32_pause();
        s->cached = __atomic_load_n(s->head, __ATOMIC_ACQUIRE);
    }
    char *h = s->data + (s->local & s->mask);
    *(uint64_t *)(h + 8) = (uint64_t)len | (uint64_t)len << 32;
    cm_copy_in(s, s->local + 16, msg, len);
    __atomic_store_n((uint64_t *)h, s->local ^ s->key, __ATOMIC_RELEASE);
    s->local += need;
    if (s->lap_stamp) {
        __atomic_store_n((uint64_t *)(s->data + s->lap_pos), s->lap_stamp, __ATOMIC_RELEASE);
        s->lap_stamp = 0;
    }
}

/* The next message's length (its bytes in `out`), or -1 once the ring is empty and `closed` is set. It waits as the
 * libOS's spinning wait does: a load fence between the first 64 looks, a pause between later ones. */
static long cm_pop(struct cm_side *s, char *out, const uint32_t *closed) {
    for (;;) {
        unsigned spins = 0;
        char *h = s->data + (s->local & s->mask);
        uint64_t want = s->local ^ s->key, w = __atomic_load_n((uint64_t *)h, __ATOMIC_ACQUIRE);
        while ((w & ~(uint64_t)CM_FLAG_BITS) != want) {
            if ((++spins & 63) == 0 && __atomic_load_n(closed, __ATOMIC_ACQUIRE)) {
                w = __atomic_load_n((uint64_t *)h, __ATOMIC_ACQUIRE);
                if ((w & ~(uint64_t)CM_FLAG_BITS) != want) return -1;
                break;
            }
            if (spins < 64) __asm__ __volatile__("lfence" ::: "memory");
            else __builtin_ia32_pause();
            w = __atomic_load_n((uint64_t *)h, __ATOMIC_ACQUIRE);
        }
        uint32_t len = *(uint32_t *)(h + 8);
        if (w & CM_FLAG_LAP) {
            s->local = (s->local | s->mask) + 1;
            __atomic_store_n(s->head, s->local, __ATOMIC_RELEASE);
            continue;
        }
        cm_copy_out(s, s->local + 16, out, len);
        s->local += cm_record(len);
        __atomic_store_n(s->head, s->local, __ATOMIC_RELEASE);
        return (long)len;
    }
}

/* Echoes every message from ring a back through ring b until the creator closes. */
static void cm_echo(char *m, uint32_t ring) {
    struct cm_side in, out;
    cm_side_init(&in, m, ring, 0);
    cm_side_init(&out, m, ring, 1);
    char *buf = malloc(ring / 2);
    long n;
    while (buf && (n = cm_pop(&in, buf, (const uint32_t *)(m + CM_CREATOR_CLOSED))) >= 0) cm_push(&out, buf, (uint32_t)n);
    free(buf);
    __atomic_store_n((uint32_t *)(m + CM_OPENER_CLOSED), 1, __ATOMIC_RELEASE);
}

static int cm_client(char *m, uint32_t ring, int size, int warmup, int count, uint64_t *rtt_ns) {
    struct cm_side out, in;
    cm_side_init(&out, m, ring, 0);
    cm_side_init(&in, m, ring, 1);
    char *msg = malloc((size_t)size), *buf = malloc((size_t)size);
    int rc = (msg && buf) ? 0 : ENOMEM;
    if (!rc) memset(msg, 7, (size_t)size);
    for (int i = 0; !rc && i < warmup + count; i++) {
        uint64_t t0 = now_ns();
        cm_push(&out, msg, (uint32_t)size);
        if (cm_pop(&in, buf, (const uint32_t *)(m + CM_OPENER_CLOSED)) != size) rc = EIO;
        if (i >= warmup) rtt_ns[i - warmup] = now_ns() - t0;
    }
    free(msg);
    free(buf);
    return rc;
}

static int cm_size_ok(int size, uint32_t ring) {
    return size > 0 && ring >= 2 * CM_CONTROL && (ring & (ring - 1)) == 0 && (uint32_t)size <= ring / 2 - 16;
}

static void cm_init_control(char *m, uint32_t ring) {
    *(uint32_t *)(m + 8) = CM_VERSION;
    *(uint32_t *)(m + 12) = ring;
    *(uint64_t *)(m + 16) = ring / 2 - 16;
    uint64_t key = 0;
    if (getrandom(&key, sizeof key, 0) != sizeof key) key = now_ns() * 0x9E3779B97F4A7C15ull ^ (uint64_t)getpid();
    *(uint64_t *)(m + CM_KEY) = (key | 1ull << 63) & ~(uint64_t)CM_FLAG_BITS;
    *(uint32_t *)(m + CM_CREATOR_PID) = (uint32_t)getpid();
    __atomic_store_n((uint64_t *)m, CM_MAGIC, __ATOMIC_RELEASE);
}

int demi_baseline_catmem_pingpong(int size, int warmup, int count, uint32_t ring, int server_cpu, int client_cpu,
                                  uint64_t *rtt_ns) {
    if (!cm_size_ok(size, ring) || count <= 0 || warmup < 0) return EINVAL;
    size_t bytes = CM_CONTROL + 2 * (size_t)ring;
    char *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (m == MAP_FAILED) return errno;
    cm_init_control(m, ring);
    pid_t child = fork();
    if (child < 0) {
        int e = errno;
        munmap(m, bytes);
        return e;
    }
    if (child == 0) {
        pin(server_cpu);
        cm_echo(m, ring);
        _exit(0);
    }
    pin(client_cpu);
    int rc = cm_client(m, ring, size, warmup, count, rtt_ns);
    __atomic_store_n((uint32_t *)(m + CM_CREATOR_CLOSED), 1, __ATOMIC_RELEASE);
    waitpid(child, NULL, 0);
    munmap(m, bytes);
    return rc;
}

int demi_baseline_catmem_echo_named(const char *name, int cpu) {
    char object[256];
    if (snprintf(object, sizeof object, "/demi-%s", name) >= (int)sizeof object) return ENAMETOOLONG;
    int fd = shm_open(object, O_RDWR, 0600);
    if (fd < 0) return errno;
    struct stat st;
    char *m = MAP_FAILED;
    uint32_t ring = 0;
    if (fstat(fd, &st) == 0 && st.st_size >= 2 * CM_CONTROL) {
        m = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    }
    int rc = m == MAP_FAILED ? (errno ? errno : EINVAL) : 0;
    close(fd);
    if (rc) return rc;
    uint32_t none = 0;
    ring = *(uint32_t *)(m + 12);
    if (__atomic_load_n((uint64_t *)m, __ATOMIC_ACQUIRE) != CM_MAGIC || *(uint32_t *)(m + 8) != CM_VERSION ||
        (size_t)CM_CONTROL + 2 * (size_t)ring > (size_t)st.st_size || !cm_size_ok(1, ring)) {
        rc = EPROTO;
    } else if (!__atomic_compare_exchange_n((uint32_t *)(m + CM_OPENER_PID), &none, (uint32_t)getpid(), 0,
                                            __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        rc = EBUSY;
    } else {
        shm_unlink(object);
        pin(cpu);
        cm_echo(m, ring);
    }
    munmap(m, (size_t)st.st_size);
    return rc;
}

void *demi_baseline_catmem_create(const char *name, uint32_t ring) {
    char object[256];
    if (!cm_size_ok(1, ring) || snprintf(object, sizeof object, "/demi-%s", name) >= (int)sizeof object) {
        errno = EINVAL;
        return NULL;
    }
    int fd = shm_open(object, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0) return NULL;
    size_t bytes = CM_CONTROL + 2 * (size_t)ring;
    char *m = ftruncate(fd, (off_t)bytes) == 0
        ? mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0) : MAP_FAILED;
    int e = errno;
    close(fd);
    if (m == MAP_FAILED) {
        shm_unlink(object);
        errno = e;
        return NULL;
    }
    cm_init_control(m, ring);
    return m;
}

int demi_baseline_catmem_client(void *mapping, uint32_t ring, int size, int warmup, int count, int cpu,
                                uint64_t *rtt_ns) {
    if (!cm_size_ok(size, ring) || count <= 0 || warmup < 0) return EINVAL;
    pin(cpu);
    return cm_client(mapping, ring, size, warmup, count, rtt_ns);
}

void demi_baseline_catmem_close(const char *name, void *mapping, uint32_t ring) {
    char object[256];
    if (snprintf(object, sizeof object, "/demi-%s", name) < (int)sizeof object) shm_unlink(object); /* if unopened */
    __atomic_store_n((uint32_t *)((char *)mapping + CM_CREATOR_CLOSED), 1, __ATOMIC_RELEASE);
    munmap(mapping, CM_CONTROL + 2 * (size_t)ring);
}
