/* C benchmarks of the ABI: the cost of rejecting invalid tokens in demi_wait_any, and of one push+pop+wait round
 * on catnap over loopback (one thread, two sockets). */
#define _POSIX_C_SOURCE 200809L
#include <demi/libos.h>
#include <demi/sga.h>
#include <demi/wait.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

int main(void) {
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
