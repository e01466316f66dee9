/* C benchmarks of the ABI: a 64-byte catmem round trip between two processes through the ABI, against a plain C
 * shared-memory ring run in the same program; the cost of rejecting invalid tokens in demi_wait_any; and one
 * push+pop+wait round on catnap over loopback (one thread, two sockets). */
#define _GNU_SOURCE
#include <demi/libos.h>
#include <demi/sga.h>
#include <demi/wait.h>
#include <arpa/inet.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

/* ---- catmem through the ABI against a plain C ring ---- */

enum { PP_SIZE = 64, PP_WARMUP = 2000, PP_COUNT = 20000, PP_SLOTS = 64 };

/* The first two CPUs this process may run on (each end of a ping-pong spins on one of its own). */
static int cpu[2];

static int two_cpus(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 0;
    int n = 0;
    for (int c = 0; c < CPU_SETSIZE && n < 2; c++) {
        if (CPU_ISSET(c, &set)) cpu[n++] = c;
    }
    return n == 2;
}

static void pin(int which) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu[which], &set);
    sched_setaffinity(0, sizeof set, &set);
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The median of n round-trip times (sorts them). */
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, by_value);
    return v[n / 2];
}

/* The baseline: one single-producer single-consumer ring each way in shared memory, 64 slots of one message, the
 * consumer's and the producer's index each on a cache line of its own, spinning with no system call. */
struct plain_ring {
    _Alignas(64) volatile uint64_t consumed;
    _Alignas(64) volatile uint64_t produced;
    _Alignas(64) char slot[PP_SLOTS][PP_SIZE];
};

static void plain_send(struct plain_ring *r, uint64_t *next, const char *msg) {
    while (*next - __atomic_load_n(&r->consumed, __ATOMIC_ACQUIRE) >= PP_SLOTS) {}
    memcpy(r->slot[*next % PP_SLOTS], msg, PP_SIZE);
    __atomic_store_n(&r->produced, ++*next, __ATOMIC_RELEASE);
}

static void plain_receive(struct plain_ring *r, uint64_t *next, char *out) {
    while (__atomic_load_n(&r->produced, __ATOMIC_ACQUIRE) == *next) {}
    memcpy(out, r->slot[*next % PP_SLOTS], PP_SIZE);
    __atomic_store_n(&r->consumed, ++*next, __ATOMIC_RELEASE);
}

/* One plain-ring ping-pong: the median round trip in ns, or -1. */
static double plain_pingpong(void) {
    struct plain_ring *r = mmap(NULL, 2 * sizeof *r, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    double *rtt = malloc(sizeof *rtt * PP_COUNT);
    if (r == MAP_FAILED || !rtt) return -1;
    memset(r, 0, 2 * sizeof *r);
    pid_t echo = fork();
    if (echo == 0) {
        pin(1);
        char buf[PP_SIZE];
        uint64_t in = 0, out = 0;
        for (int i = 0; i < PP_WARMUP + PP_COUNT; i++) {
            plain_receive(&r[0], &in, buf);
            plain_send(&r[1], &out, buf);
        }
        _exit(0);
    }
    pin(0);
    char msg[PP_SIZE], buf[PP_SIZE];
    memset(msg, 7, sizeof msg);
    uint64_t in = 0, out = 0;
    for (int i = 0; i < PP_WARMUP + PP_COUNT; i++) {
        double t0 = now_ns();
        plain_send(&r[0], &out, msg);
        plain_receive(&r[1], &in, buf);
        if (i >= PP_WARMUP) rtt[i - PP_WARMUP] = now_ns() - t0;
    }
    waitpid(echo, NULL, 0);
    munmap(r, 2 * sizeof *r);
    double m = median(rtt, PP_COUNT);
    free(rtt);
    return m;
}

/* One catmem ping-pong through the ABI, each end a process of its own (a process has one libOS): the median round
 * trip in ns, or -1. The client creates the pipe; the echo opens it and echoes until end-of-file. */
static double catmem_pingpong(int run) {
    char name[64];
    snprintf(name, sizeof name, "cbench-%d-%d", (int)getpid(), run);
    double *rtt = mmap(NULL, sizeof(double) * PP_COUNT, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (rtt == MAP_FAILED) return -1;
    setenv("LIBOS", "catmem", 1);
    pid_t client = fork();
    if (client == 0) {
        pin(0);
        int qd;
        if (demi_init(NULL) || demi_create_pipe(&qd, name)) _exit(1);
        demi_sgarray_t msg = demi_sgaalloc(PP_SIZE);
        if (msg.sga_numsegs != 1) _exit(1);
        memset(msg.sga_segs[0].sgaseg_buf, 7, PP_SIZE);
        for (int i = 0; i < PP_WARMUP + PP_COUNT; i++) {
            demi_qtoken_t qt;
            demi_qresult_t qr;
            double t0 = now_ns();
            if (demi_push(&qt, qd, &msg) || demi_wait(&qr, qt, NULL) || demi_pop(&qt, qd) ||
                demi_wait(&qr, qt, NULL) || qr.qr_opcode != DEMI_OPC_POP ||
                qr.qr_value.sga.sga_segs[0].sgaseg_len != PP_SIZE) _exit(1);
            double t1 = now_ns();
            if (demi_sgafree(&qr.qr_value.sga)) _exit(1);
            if (i >= PP_WARMUP) rtt[i - PP_WARMUP] = t1 - t0;
        }
        _exit(demi_sgafree(&msg) || demi_close(qd) ? 1 : 0);
    }
    pid_t echo = fork();
    if (echo == 0) {
        pin(1);
        int qd;
        if (demi_init(NULL)) _exit(1);
        for (int tries = 0; demi_open_pipe(&qd, name) != 0; tries++) {
            if (tries > 20000) _exit(1);
            usleep(100);
        }
        for (;;) {
            demi_qtoken_t qt;
            demi_qresult_t qr, pushed;
            if (demi_pop(&qt, qd) || demi_wait(&qr, qt, NULL) || qr.qr_opcode != DEMI_OPC_POP) _exit(1);
            if (qr.qr_value.sga.sga_segs[0].sgaseg_len == 0) break;  /* end-of-file: the client closed */
            if (demi_push(&qt, qd, &qr.qr_value.sga) || demi_wait(&pushed, qt, NULL) ||
                demi_sgafree(&qr.qr_value.sga)) _exit(1);
        }
        _exit(demi_close(qd) ? 1 : 0);
    }
    int cs = -1, es = -1;
    waitpid(client, &cs, 0);
    waitpid(echo, &es, 0);
    unsetenv("LIBOS");
    double m = (WIFEXITED(cs) && WEXITSTATUS(cs) == 0 && WIFEXITED(es) && WEXITSTATUS(es) == 0) ? median(rtt, PP_COUNT)
                                                                                                 : -1;
    munmap(rtt, sizeof(double) * PP_COUNT);
    return m;
}

int main(void) {
    /* First, before this process starts a libOS of its own (each end of the pipe is a forked process). */
    if (two_cpus()) {
        enum { RUNS = 5 };
        double ring[RUNS], abi[RUNS], ratio[RUNS];
        for (int k = 0; k < RUNS; k++) {
            ring[k] = plain_pingpong();
            abi[k] = catmem_pingpong(k);
            if (ring[k] <= 0 || abi[k] <= 0) { fprintf(stderr, "catmem ping-pong failed\n"); return 1; }
            ratio[k] = abi[k] / ring[k];
        }
        double mr = median(ratio, RUNS);
        printf("catmem through the C ABI, 64 B round trip between two processes: %.0f ns; plain C ring: %.0f ns; "
               "%.2fx (median of %d alternating runs' ratios)\n", median(abi, RUNS), median(ring, RUNS), mr, RUNS);
    } else {
        printf("catmem through the C ABI: skipped (this process may run on one CPU only; the ping-pong needs two)\n");
    }

    if (demi_init(NULL) != 0) return 1;

    /* 1,048,576 invalid tokens (every byte 0x01), zero timeout: each call must fail fast. */
    enum { NTOKENS = 1 << 20, CALLS = 100000 };
    demi_qtoken_t *qts = malloc(sizeof(demi_qtoken_t) * NTOKENS);
    memset(qts, 0x01, sizeof(demi_qtoken_t) * NTOKENS);
    struct timespec zero = {0, 0};
    demi_qresult_t qr;
    int off;
    double t0 = now_ns();
    for (int i = 0; i < CALLS; i++) {
        if (demi_wait_any(&qr, &off, qts, NTOKENS, &zero) == 0) { fprintf(stderr, "accepted a bad token\n"); return 1; }
    }
    printf("demi_wait_any over %d invalid tokens: %.1f ns per call\n", NTOKENS, (now_ns() - t0) / CALLS);

    /* push + pop + wait on catnap, UDP over loopback. */
    int a, b;
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sin;
    if (demi_socket(&a, AF_INET, SOCK_DGRAM, 0) || demi_socket(&b, AF_INET, SOCK_DGRAM, 0) ||
        demi_bind(a, (struct sockaddr *)&sin, sizeof sin) || demi_bind(b, (struct sockaddr *)&sin, sizeof sin) ||
        demi_getsockname(a, (struct sockaddr *)&sin, &len)) {
        fprintf(stderr, "socket setup failed\n");
        return 1;
    }
    enum { ROUNDS = 100000 };
    for (int pass = 0; pass < 2; pass++) {
        t0 = now_ns();
        for (int i = 0; i < ROUNDS; i++) {
            demi_qtoken_t qt;
            demi_sgarray_t sga = demi_sgaalloc(64);
            if (demi_pushto(&qt, b, &sga, (struct sockaddr *)&sin, sizeof sin) || demi_sgafree(&sga) ||
                demi_wait(&qr, qt, NULL) || demi_pop(&qt, a) || demi_wait(&qr, qt, NULL) ||
                demi_sgafree(&qr.qr_value.sga)) {
                fprintf(stderr, "round %d failed\n", i);
                return 1;
            }
        }
        if (pass == 1) printf("sgaalloc + pushto + wait + pop + wait + sgafree (UDP, catnap): %.1f ns per round\n",
                              (now_ns() - t0) / ROUNDS);
    }
    free(qts);
    return 0;
}
