/* Every call with garbage arguments must return an error (non-zero), never crash. Run under AddressSanitizer too. */
#include <demi/libos.h>
#include <demi/sga.h>
#include <demi/wait.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/tcp.h>

static int failures = 0;
static int checks = 0;

#define EXPECT(cond, what)                                                                                           \
    do {                                                                                                             \
        checks++;                                                                                                    \
        if (!(cond)) {                                                                                               \
            failures++;                                                                                              \
            fprintf(stderr, "FAIL: %s (line %d)\n", what, __LINE__);                                                 \
        }                                                                                                            \
    } while (0)

#define FAILS(call, err) EXPECT((call) == (err), #call " == " #err)
#define NONZERO(call) EXPECT((call) != 0, #call " != 0")

int main(void) {
    demi_qtoken_t qt = 0;
    demi_qresult_t qr;
    int qd = -1;
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    /* Before demi_init: ENOSYS, and a NULL array from sgaalloc. */
    FAILS(demi_socket(&qd, AF_INET, SOCK_DGRAM, 0), ENOSYS);
    EXPECT(demi_sgaalloc(64).sga_buf == NULL, "sgaalloc before init is NULL");

    FAILS(demi_init(NULL), 0);
    FAILS(demi_init(NULL), EEXIST);

    /* The upstream garbage-argument list. */
    NONZERO(demi_socket(NULL, -1, -1, -1));
    NONZERO(demi_socket(&qd, AF_INET6, SOCK_STREAM, 0));
    NONZERO(demi_socket(&qd, AF_INET, SOCK_RAW, 0));
    NONZERO(demi_accept(NULL, -1));
    NONZERO(demi_accept(&qt, -1));
    NONZERO(demi_bind(-1, NULL, 0));
    NONZERO(demi_bind(-1, (struct sockaddr *)&sin, sizeof sin));
    NONZERO(demi_close(-1));
    NONZERO(demi_connect(NULL, -1, NULL, 0));
    NONZERO(demi_connect(&qt, -1, (struct sockaddr *)&sin, sizeof sin));
    NONZERO(demi_listen(-1, -1));
    NONZERO(demi_pop(NULL, -1));
    NONZERO(demi_pop(&qt, -1));
    NONZERO(demi_push(NULL, -1, NULL));
    NONZERO(demi_pushto(NULL, -1, NULL, NULL, 0));
    NONZERO(demi_getpeername(-1, NULL, NULL));
    NONZERO(demi_getsockname(-1, NULL, NULL));
    NONZERO(demi_setsockopt(-1, -1, -1, NULL, 0));
    NONZERO(demi_getsockopt(-1, -1, -1, NULL, NULL));
    NONZERO(demi_sgafree(NULL));
    NONZERO(demi_wait(NULL, (demi_qtoken_t)-1, NULL));
    NONZERO(demi_wait(&qr, (demi_qtoken_t)-1, NULL));
    NONZERO(demi_wait_any(NULL, NULL, NULL, -1, NULL));
    {
        int off = 0;
        demi_qtoken_t bad[2] = {0, (demi_qtoken_t)-1};
        FAILS(demi_wait_any(&qr, &off, bad, 2, NULL), EINVAL);
        FAILS(demi_wait_any(&qr, &off, bad, 0, NULL), EINVAL);
        FAILS(demi_wait_any(&qr, &off, bad, -1, NULL), EINVAL);
    }
    NONZERO(demi_wait_next_n(NULL, 0, NULL, NULL));
    EXPECT(demi_sgaalloc(0).sga_buf == NULL, "sgaalloc(0) is NULL");
    NONZERO(demi_create_pipe(NULL, NULL));
    NONZERO(demi_open_pipe(NULL, NULL));

    /* Arrays that did not come from the library, and double frees. */
    {
        char local[64];
        demi_sgarray_t fake;
        memset(&fake, 0, sizeof fake);
        fake.sga_buf = local;
        fake.sga_numsegs = 1;
        fake.sga_segs[0].sgaseg_buf = local;
        fake.sga_segs[0].sgaseg_len = sizeof local;
        FAILS(demi_sgafree(&fake), EINVAL);
        demi_sgarray_t sga = demi_sgaalloc(100);
        EXPECT(sga.sga_buf != NULL && sga.sga_numsegs == 1 && sga.sga_segs[0].sgaseg_len == 100, "sgaalloc(100)");
        demi_sgarray_t bad = sga;
        bad.sga_numsegs = 2;
        FAILS(demi_sgafree(&bad), EINVAL);
        bad = sga;
        bad.sga_buf = (char *)sga.sga_buf + 64;
        FAILS(demi_sgafree(&bad), EINVAL);
        demi_sgarray_t big = demi_sgaalloc(1 << 20);
        EXPECT(big.sga_buf != NULL && big.sga_segs[0].sgaseg_len == 1u << 20, "sgaalloc(1 MiB)");
        FAILS(demi_sgafree(&big), 0);
        /* Push a segment outside the buffer, of zero length, and a foreign array. */
        FAILS(demi_socket(&qd, AF_INET, SOCK_DGRAM, 0), 0);
        FAILS(demi_bind(qd, (struct sockaddr *)&sin, sizeof sin), 0);
        bad = sga;
        bad.sga_segs[0].sgaseg_len = 101;
        FAILS(demi_pushto(&qt, qd, &bad, (struct sockaddr *)&sin, sizeof sin), EINVAL);
        bad.sga_segs[0].sgaseg_len = 0;
        FAILS(demi_pushto(&qt, qd, &bad, (struct sockaddr *)&sin, sizeof sin), EINVAL);
        FAILS(demi_pushto(&qt, qd, &fake, (struct sockaddr *)&sin, sizeof sin), EINVAL);
        FAILS(demi_pushto(&qt, qd, &sga, (struct sockaddr *)&sin, 3), EINVAL);
        FAILS(demi_sgafree(&sga), 0);
        FAILS(demi_sgafree(&sga), EINVAL);
        /* A consumed token, and a closed queue. */
        FAILS(demi_pop(&qt, qd), 0);
        struct timespec zero = {0, 0};
        FAILS(demi_wait(&qr, qt, &zero), ETIMEDOUT);
        FAILS(demi_close(qd), 0);
        FAILS(demi_wait(&qr, qt, NULL), 0);
        EXPECT(qr.qr_opcode == DEMI_OPC_FAILED && qr.qr_ret == ECANCELED, "pending pop fails with ECANCELED");
        FAILS(demi_wait(&qr, qt, NULL), EINVAL);
        FAILS(demi_close(qd), EBADF);
        FAILS(demi_pop(&qt, qd), EBADF);
        struct timespec negative = {-1, 0};
        FAILS(demi_wait(&qr, 1, &negative), EINVAL);
    }

    /* Socket options. */
    {
        int on = 1;
        socklen_t len = sizeof on;
        FAILS(demi_socket(&qd, AF_INET, SOCK_STREAM, 0), 0);
        FAILS(demi_setsockopt(qd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on), 0);
        FAILS(demi_setsockopt(qd, IPPROTO_TCP, TCP_NODELAY, &on, 1), EINVAL);
        FAILS(demi_setsockopt(qd, 12345, 1, &on, sizeof on), ENOTSUP);
        FAILS(demi_setsockopt(qd, SOL_SOCKET, 12345, &on, sizeof on), ENOPROTOOPT);
        on = 0;
        FAILS(demi_getsockopt(qd, IPPROTO_TCP, TCP_NODELAY, &on, &len), 0);
        EXPECT(on == 1 && len == sizeof on, "TCP_NODELAY reads back");
        struct linger l = {1, 3};
        FAILS(demi_setsockopt(qd, SOL_SOCKET, SO_LINGER, &l, sizeof l), 0);
        memset(&l, 0, sizeof l);
        len = sizeof l;
        FAILS(demi_getsockopt(qd, SOL_SOCKET, SO_LINGER, &l, &len), 0);
        EXPECT(l.l_onoff == 1 && l.l_linger == 3, "SO_LINGER reads back");
        struct sockaddr_in name;
        socklen_t nl = sizeof name;
        FAILS(demi_getpeername(qd, (struct sockaddr *)&name, &nl), ENOTCONN);
        FAILS(demi_bind(qd, (struct sockaddr *)&sin, sizeof sin), 0);
        FAILS(demi_getsockname(qd, (struct sockaddr *)&name, &nl), 0);
        EXPECT(name.sin_family == AF_INET && name.sin_port != 0, "getsockname gives the bound port");
        nl = 4;
        FAILS(demi_getsockname(qd, (struct sockaddr *)&name, &nl), EINVAL);
        FAILS(demi_close(qd), 0);
    }

    printf("syscalls: %d passed, %d failed\n", checks - failures, failures);
    return failures == 0 ? 0 : 1;
}
