/*
 * demi/libos.h: creating queues and starting operations.
 *
 * Every call returns 0 on success or a positive errno. Calls that start I/O store a queue token in *qt_out; the
 * operation's outcome is collected with the wait calls (demi/wait.h). Pointer arguments are checked: NULL is EINVAL,
 * never a crash. See docs/C-API.md for each call and the differences from upstream Demikernel.
 */
#ifndef DEMI_LIBOS_H_IS_INCLUDED
#define DEMI_LIBOS_H_IS_INCLUDED

#include <demi/types.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Creates this thread's libOS, chosen by LIBOS (or an argv flag) and configured by CONFIG_PATH. EEXIST if the
 * thread already has one. args may be NULL. */
extern int demi_init(const struct demi_args *args);

/* Creates a named shared-memory pipe (libOS catmem). */
extern int demi_create_pipe(int *memqd_out, const char *name);

/* Attaches to a named shared-memory pipe another process created (libOS catmem). */
extern int demi_open_pipe(int *memqd_out, const char *name);

/* Creates a socket queue: AF_INET with SOCK_STREAM or SOCK_DGRAM. */
extern int demi_socket(int *sockqd_out, int domain, int type, int protocol);

/* Marks a bound TCP socket as accepting connections (backlog >= 1). */
extern int demi_listen(int sockqd, int backlog);

/* Binds a socket to a local IPv4 address; 0.0.0.0 and port 0 are wildcards. */
extern int demi_bind(int sockqd, const struct sockaddr *addr, socklen_t size);

/* Starts accepting one connection. */
extern int demi_accept(demi_qtoken_t *qt_out, int sockqd);

/* Starts connecting (TCP) or sets the default destination (UDP). */
extern int demi_connect(demi_qtoken_t *qt_out, int sockqd, const struct sockaddr *addr, socklen_t size);

/* Closes a queue. Its pending operations complete as DEMI_OPC_FAILED with ECANCELED. */
extern int demi_close(int qd);

/* Starts sending sga (which must come from demi_sgaalloc or a pop). The caller may free sga at once. */
extern int demi_push(demi_qtoken_t *qt_out, int qd, const demi_sgarray_t *sga);

/* Starts sending sga to dest_addr (UDP; TCP ignores the address). */
extern int demi_pushto(demi_qtoken_t *qt_out, int sockqd, const demi_sgarray_t *sga,
                       const struct sockaddr *dest_addr, socklen_t size);

/* Starts receiving. The result's array belongs to the caller; a zero-length array is a TCP end of file. */
extern int demi_pop(demi_qtoken_t *qt_out, int qd);

/* Sets a socket option: SOL_SOCKET/SO_LINGER (struct linger), SOL_SOCKET/SO_KEEPALIVE, SOL_SOCKET/SO_REUSEADDR,
 * IPPROTO_TCP/TCP_NODELAY (int). */
extern int demi_setsockopt(int qd, int level, int optname, const void *optval, socklen_t optlen);

/* Reads a socket option; *optlen is the buffer size on entry and the value's size on return. */
extern int demi_getsockopt(int qd, int level, int optname, void *optval, socklen_t *optlen);

/* The address of the connected peer. */
extern int demi_getpeername(int qd, struct sockaddr *addr, socklen_t *addrlen);

/* The local address of a socket (upstream exports this as a stub that fails with ENOSYS). */
extern int demi_getsockname(int qd, struct sockaddr *addr, socklen_t *addrlen);

#ifdef __cplusplus
}
#endif

#endif /* DEMI_LIBOS_H_IS_INCLUDED */
