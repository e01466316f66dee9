/*
 * demi/types.h: the value types of the Demikernel C API (PDPIX).
 *
 * Layouts are packed and match upstream Demikernel byte for byte, so programs built against either set of headers
 * exchange the same structures: sizeof(demi_sgaseg_t) == 12, sizeof(demi_sgarray_t) == 40,
 * sizeof(demi_accept_result_t) == 20, sizeof(demi_qresult_t) == 64, sizeof(struct demi_args) == 20.
 */
#ifndef DEMI_TYPES_H_IS_INCLUDED
#define DEMI_TYPES_H_IS_INCLUDED

#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Segments per scatter-gather array in the C structure. Kept at 1 for compatibility with upstream. */
#define DEMI_SGARRAY_MAXSIZE 1

/* Names one asynchronous operation until a wait call consumes it. */
typedef uint64_t demi_qtoken_t;

/* One contiguous piece of a scatter-gather array. */
typedef struct __attribute__((__packed__)) demi_sgaseg {
    void *sgaseg_buf;    /* first byte of the segment */
    uint32_t sgaseg_len; /* bytes in the segment */
} demi_sgaseg_t;

/* A scatter-gather array. sga_buf is an opaque token naming the library's buffer; the segment may describe any
 * part of that buffer's data. sga_addr holds the sender of a popped datagram. */
typedef struct __attribute__((__packed__)) demi_sgarray {
    void *sga_buf;
    uint32_t sga_numsegs;
    demi_sgaseg_t sga_segs[DEMI_SGARRAY_MAXSIZE];
    struct sockaddr_in sga_addr;
} demi_sgarray_t;

/* What a completed operation was. DEMI_OPC_FAILED: the operation failed and qr_ret holds its errno. */
typedef enum demi_opcode {
    DEMI_OPC_INVALID = 0,
    DEMI_OPC_PUSH,
    DEMI_OPC_POP,
    DEMI_OPC_ACCEPT,
    DEMI_OPC_CONNECT,
    DEMI_OPC_CLOSE,
    DEMI_OPC_FAILED,
} demi_opcode_t;

/* The value of a completed accept: the new queue descriptor and the peer's address. */
typedef struct __attribute__((__packed__)) demi_accept_result {
    int32_t qd;
    struct sockaddr_in addr;
} demi_accept_result_t;

/* The result of a completed operation. qr_qd is the queue it ran on (the listening queue for an accept). qr_ret is 0
 * on success, else the operation's errno. qr_value holds the popped array (POP) or the new connection (ACCEPT) and
 * is zeroed otherwise. */
typedef struct __attribute__((__packed__)) demi_qresult {
    demi_opcode_t qr_opcode;
    int32_t qr_qd;
    demi_qtoken_t qr_qt;
    int64_t qr_ret;
    union __attribute__((__packed__)) {
        demi_sgarray_t sga;
        demi_accept_result_t ares;
    } qr_value;
} demi_qresult_t;

/* A profiler sink (kept for compatibility; this implementation does not call it). */
typedef void (*demi_callback_t)(const char *name, uint32_t name_len, uint64_t cycles);

/* Arguments of demi_init. argv may carry the libOS as "--libos=NAME", "--libos NAME" or "--catnap"-style flags. */
struct __attribute__((__packed__)) demi_args {
    int argc;
    char *const *argv;
    demi_callback_t callback;
};

#ifdef __cplusplus
}
#endif

#endif /* DEMI_TYPES_H_IS_INCLUDED */
