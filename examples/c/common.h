/* Helpers shared by the C examples: argument parsing, message patterns and checked calls. */
#ifndef DEMI_EXAMPLES_COMMON_H
#define DEMI_EXAMPLES_COMMON_H

#include <demi/libos.h>
#include <demi/sga.h>
#include <demi/wait.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NMESSAGES 1024

#define CHECK(call)                                                                                                  \
    do {                                                                                                             \
        int rc_ = (call);                                                                                            \
        if (rc_ != 0) {                                                                                              \
            fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call, strerror(rc_));                     \
            exit(1);                                                                                                 \
        }                                                                                                            \
    } while (0)

struct options {
    int server;       /* 1: server, 0: client */
    int ping_pong;    /* 1: ping-pong, 0: push-pop */
    struct sockaddr_in addr;
    size_t size;
};

static void usage(const char *prog) {
    fprintf(stderr, "usage: %s --server|--client push-pop|ping-pong IPV4 PORT [SIZE]\n", prog);
    exit(2);
}

static struct options parse(int argc, char **argv) {
    struct options o;
    memset(&o, 0, sizeof o);
    if (argc < 5) usage(argv[0]);
    if (!strcmp(argv[1], "--server")) o.server = 1;
    else if (strcmp(argv[1], "--client")) usage(argv[0]);
    if (!strcmp(argv[2], "ping-pong")) o.ping_pong = 1;
    else if (strcmp(argv[2], "push-pop")) usage(argv[0]);
    o.addr.sin_family = AF_INET;
    if (inet_pton(AF_INET, argv[3], &o.addr.sin_addr) != 1) usage(argv[0]);
    o.addr.sin_port = htons((uint16_t)atoi(argv[4]));
    o.size = argc > 5 ? (size_t)atol(argv[5]) : 64;
    if (o.size == 0) usage(argv[0]);
    return o;
}

/* Byte k of message i. */
static unsigned char pattern(unsigned i, size_t k) { return (unsigned char)(i * 131u + k * 7u); }

static demi_sgarray_t make_message(unsigned i, size_t size) {
    demi_sgarray_t sga = demi_sgaalloc(size);
    if (sga.sga_buf == NULL) {
        fprintf(stderr, "demi_sgaalloc(%zu) failed\n", size);
        exit(1);
    }
    unsigned char *p = sga.sga_segs[0].sgaseg_buf;
    for (size_t k = 0; k < size; k++) p[k] = pattern(i, k);
    return sga;
}

/* Checks `len` bytes at stream offset `offset` of a sequence of `size`-byte messages. */
static void check_stream(const unsigned char *p, size_t len, size_t offset, size_t size) {
    for (size_t k = 0; k < len; k++) {
        size_t at = offset + k;
        if (p[k] != pattern((unsigned)(at / size), at % size)) {
            fprintf(stderr, "content mismatch at byte %zu\n", at);
            exit(1);
        }
    }
}

static demi_qresult_t wait_ok(demi_qtoken_t qt) {
    demi_qresult_t qr;
    CHECK(demi_wait(&qr, qt, NULL));
    if (qr.qr_opcode == DEMI_OPC_FAILED) {
        fprintf(stderr, "operation failed: %s\n", strerror((int)qr.qr_ret));
        exit(1);
    }
    return qr;
}

#endif
