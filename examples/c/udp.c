/* UDP between two processes over Demikernel: push-pop (the client sends, the server receives and checks) or
 * ping-pong (the server echoes, the client checks every echo). UDP has no flow control: in push-pop the server
 * sends a one-byte acknowledgment every WINDOW messages and the client waits for it, so a server descheduled on a
 * busy machine does not see its socket buffer overflow (the kernel would drop datagrams). */
#include "common.h"
#include <stddef.h>

/* Messages in flight at most in push-pop (NMESSAGES is a multiple). */
#define WINDOW 64

int main(int argc, char **argv) {
    struct options o = parse(argc, argv);
    CHECK(demi_init(NULL));
    int qd;
    CHECK(demi_socket(&qd, AF_INET, SOCK_DGRAM, 0));
    demi_qtoken_t qt;
    if (o.server) {
        CHECK(demi_bind(qd, (struct sockaddr *)&o.addr, sizeof o.addr));
        for (unsigned i = 0; i < NMESSAGES; i++) {
            CHECK(demi_pop(&qt, qd));
            demi_qresult_t qr = wait_ok(qt);
            demi_sgarray_t *sga = &qr.qr_value.sga;
            if (sga->sga_segs[0].sgaseg_len != o.size) { fprintf(stderr, "bad size\n"); return 1; }
            check_stream(sga->sga_segs[0].sgaseg_buf, o.size, (size_t)i * o.size, o.size);
            struct sockaddr_in from;
            memcpy(&from, (const char *)sga + offsetof(demi_sgarray_t, sga_addr), sizeof from);
            if (o.ping_pong) {
                /* Push the popped array back to its sender, unchanged. */
                CHECK(demi_pushto(&qt, qd, sga, (struct sockaddr *)&from, sizeof from));
                wait_ok(qt);
            } else if (i % WINDOW == WINDOW - 1) {
                demi_sgarray_t ack = demi_sgaalloc(1);
                if (ack.sga_numsegs != 1) { fprintf(stderr, "sgaalloc failed\n"); return 1; }
                CHECK(demi_pushto(&qt, qd, &ack, (struct sockaddr *)&from, sizeof from));
                wait_ok(qt);
                CHECK(demi_sgafree(&ack));
            }
            CHECK(demi_sgafree(sga));
        }
    } else {
        struct sockaddr_in local;
        memset(&local, 0, sizeof local);
        local.sin_family = AF_INET;
        local.sin_addr = o.addr.sin_addr;
        CHECK(demi_bind(qd, (struct sockaddr *)&local, sizeof local));
        for (unsigned i = 0; i < NMESSAGES; i++) {
            demi_sgarray_t sga = make_message(i, o.size);
            CHECK(demi_pushto(&qt, qd, &sga, (struct sockaddr *)&o.addr, sizeof o.addr));
            CHECK(demi_sgafree(&sga)); /* safe: the push keeps its own reference */
            wait_ok(qt);
            if (o.ping_pong) {
                CHECK(demi_pop(&qt, qd));
                demi_qresult_t qr = wait_ok(qt);
                if (qr.qr_value.sga.sga_segs[0].sgaseg_len != o.size) { fprintf(stderr, "bad size\n"); return 1; }
                check_stream(qr.qr_value.sga.sga_segs[0].sgaseg_buf, o.size, (size_t)i * o.size, o.size);
                CHECK(demi_sgafree(&qr.qr_value.sga));
            } else if (i % WINDOW == WINDOW - 1) {
                /* The server's acknowledgment of the last WINDOW messages. */
                CHECK(demi_pop(&qt, qd));
                demi_qresult_t qr = wait_ok(qt);
                CHECK(demi_sgafree(&qr.qr_value.sga));
            }
        }
    }
    CHECK(demi_close(qd));
    printf("udp %s %s: %d messages of %zu bytes OK\n", o.ping_pong ? "ping-pong" : "push-pop",
           o.server ? "server" : "client", NMESSAGES, o.size);
    return 0;
}
