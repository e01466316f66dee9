/* TCP between two processes over Demikernel: push-pop (the client streams, the server reads and checks the stream)
 * or ping-pong (the server echoes every message, the client checks it). */
#include "common.h"

/* Reads the stream (of `size`-byte messages) until *offset reaches `until`, checking every byte, and optionally
 * pushes each popped array back. A pop may return any part of the stream. */
static void receive(int qd, size_t size, size_t *offset, size_t until, int echo) {
    while (*offset < until) {
        demi_qtoken_t qt;
        CHECK(demi_pop(&qt, qd));
        demi_qresult_t qr = wait_ok(qt);
        demi_sgarray_t *sga = &qr.qr_value.sga;
        size_t n = sga->sga_segs[0].sgaseg_len;
        if (n == 0) { fprintf(stderr, "unexpected end of file at %zu\n", *offset); exit(1); }
        check_stream(sga->sga_segs[0].sgaseg_buf, n, *offset, size);
        if (echo) {
            CHECK(demi_push(&qt, qd, sga));
            wait_ok(qt);
        }
        CHECK(demi_sgafree(sga));
        *offset += n;
    }
}

int main(int argc, char **argv) {
    struct options o = parse(argc, argv);
    CHECK(demi_init(NULL));
    int qd;
    CHECK(demi_socket(&qd, AF_INET, SOCK_STREAM, 0));
    demi_qtoken_t qt;
    size_t offset = 0;
    if (o.server) {
        CHECK(demi_bind(qd, (struct sockaddr *)&o.addr, sizeof o.addr));
        CHECK(demi_listen(qd, 16));
        CHECK(demi_accept(&qt, qd));
        demi_qresult_t qr = wait_ok(qt);
        int conn = qr.qr_value.ares.qd;
        receive(conn, o.size, &offset, (size_t)NMESSAGES * o.size, o.ping_pong);
        /* The client closes first: expect a zero-length pop. */
        CHECK(demi_pop(&qt, conn));
        qr = wait_ok(qt);
        if (qr.qr_value.sga.sga_segs[0].sgaseg_len != 0) { fprintf(stderr, "expected end of file\n"); return 1; }
        CHECK(demi_sgafree(&qr.qr_value.sga));
        CHECK(demi_close(conn));
    } else {
        CHECK(demi_connect(&qt, qd, (struct sockaddr *)&o.addr, sizeof o.addr));
        wait_ok(qt);
        for (unsigned i = 0; i < NMESSAGES; i++) {
            demi_sgarray_t sga = make_message(i, o.size);
            CHECK(demi_push(&qt, qd, &sga));
            CHECK(demi_sgafree(&sga));
            wait_ok(qt);
            if (o.ping_pong) receive(qd, o.size, &offset, (size_t)(i + 1) * o.size, 0);
        }
    }
    CHECK(demi_close(qd));
    printf("tcp %s %s: %d messages of %zu bytes OK\n", o.ping_pong ? "ping-pong" : "push-pop",
           o.server ? "server" : "client", NMESSAGES, o.size);
    return 0;
}
