// Plain C baselines measured by `demi bench` in the same run as the libOSes: busy-polling kernel sockets over
// loopback, a server thread and a client thread pinned to separate CPUs. No Demikernel code is involved.
#ifndef CDEMI_BASELINES_H
#define CDEMI_BASELINES_H
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Runs `warmup` + `count` ping-pong round trips of `size`-byte messages over 127.0.0.1 (UDP if `tcp` is 0, else TCP
/// with TCP_NODELAY), with non-blocking sockets spinning on recv. Writes the `count` round-trip times (ns) into
/// `rtt_ns`. The server runs on `server_cpu`, the client on `client_cpu` (-1: not pinned). Returns 0 or an errno.
int demi_baseline_pingpong(int tcp, int size, int warmup, int count, int server_cpu, int client_cpu,
                           uint64_t *rtt_ns);

/// Streams `total_bytes` over a loopback TCP connection in `size`-byte writes (blocking sockets) and returns the
/// elapsed nanoseconds in `*elapsed_ns`. Returns 0 or an errno.
int demi_baseline_tcp_stream(int size, uint64_t total_bytes, int server_cpu, int client_cpu, uint64_t *elapsed_ns);

#ifdef __cplusplus
}
#endif
#endif

#ifdef __cplusplus
extern "C" {
#endif
/// One thread: `count` rounds of sendto (64 bytes) on one UDP socket and a spinning recvfrom on another, over
/// loopback. Returns the mean ns per round, or a negative errno.
double demi_baseline_udp_local_round(int count);
#ifdef __cplusplus
}
#endif

#ifdef __cplusplus
extern "C" {
#endif
/// Plain C single-producer single-consumer rings in shared memory between two processes (the child is forked and
/// runs only this C code): `warmup` + `count` ping-pong round trips of `size`-byte messages (at most 1 MiB; 64 slots of 4 KiB per ring, or of the size rounded up to 4 KiB), the
/// child echoing each message through a second ring. Rings keep head and tail on separate cache lines and each side
/// caches the other's index. Writes the `count` round-trip times (ns) into `rtt_ns`. Returns 0 or an errno.
int demi_baseline_shm_pingpong(int size, int warmup, int count, int server_cpu, int client_cpu, uint64_t *rtt_ns);
/// One-way streaming over the same ring pair: `count` messages of `size` bytes from this process to a forked consumer
/// (pinned to server_cpu), which answers with one 1-byte message once it has them all; *elapsed_ns is the first push
/// to that answer. 0 or an errno.
int demi_baseline_shm_stream(int size, int count, int server_cpu, int client_cpu, uint64_t *elapsed_ns);

/// catmem's own pipe format (SharedMemoryLibOS, format version 3) written in plain C, whole messages of one record
/// (`size` at most half the ring less 16 bytes): for rows that put plain C at one or both ends of a catmem pipe.
/// Both ends C, over an anonymous shared mapping with a forked echo: like `demi_baseline_shm_pingpong`.
int demi_baseline_catmem_pingpong(int size, int warmup, int count, uint32_t ring, int server_cpu, int client_cpu,
                                  uint64_t *rtt_ns);
/// Attaches to the pipe `name` that a catmem libOS created (as `demi_open_pipe` would) and echoes every message until
/// its creator closes. 0 or an errno.
int demi_baseline_catmem_echo_named(const char *name, int cpu);
/// Creates the pipe `name` with rings of `ring` bytes (a power of two of at least 8 KiB) for a catmem libOS to open;
/// the mapping, or NULL with errno set.
void *demi_baseline_catmem_create(const char *name, uint32_t ring);
/// The client of `demi_baseline_shm_pingpong` on a pipe from `demi_baseline_catmem_create`, pinned to `cpu`.
int demi_baseline_catmem_client(void *mapping, uint32_t ring, int size, int warmup, int count, int cpu,
                                uint64_t *rtt_ns);
/// Closes (the peer sees end-of-file) and unmaps a pipe from `demi_baseline_catmem_create`; removes its name if no
/// one attached.
void demi_baseline_catmem_close(const char *name, void *mapping, uint32_t ring);
#ifdef __cplusplus
}
#endif

#ifdef __cplusplus
extern "C" {
#endif
/// Pins the calling thread to `cpu` (nothing for -1). Returns 0 or an errno. For harnesses that cannot reach the
/// library's own shim (the benchmark package pins SwiftNIO's event-loop threads with it).
int demi_baseline_pin(int cpu);
/// The number of CPUs this process may run on.
int demi_baseline_cpu_count(void);

/// Like `demi_baseline_tcp_stream`, but both ends busy-poll non-blocking sockets (`MSG_DONTWAIT` spins) instead of
/// blocking: the C counterpart of a busy-polling libOS.
int demi_baseline_tcp_stream_poll(int size, uint64_t total_bytes, int server_cpu, int client_cpu,
                                  uint64_t *elapsed_ns);

/// The C counterpart of the scheduler microbenchmark: a two-level ready bitset (summary word, 1,024 task slots, a
/// state byte per slot), `count` rounds of waking one task and running the pass that finds it with count-trailing-
/// zeros and polls it. Returns the mean ns per round.
double demi_baseline_sched_wake_poll(int count);

/// `count` rounds of malloc(`size`) + free, kept from being optimised away. Returns the mean ns per round.
double demi_baseline_malloc_free(int count, int size);
#ifdef __cplusplus
}
#endif

#ifdef __cplusplus
extern "C" {
#endif
/// Many clients: `nconn` TCP connections over 127.0.0.1 (TCP_NODELAY), each keeping one `size`-byte message in flight
/// (closed loop). One client thread on `client_cpu` busy-polls all its non-blocking sockets with recv(MSG_DONTWAIT);
/// one server thread on `server_cpu` accepts the `nconn` connections and busy-polls them the same way, echoing each
/// whole message. `warmup` + `count` round trips in all (over every connection); the `count` timed ones are written to
/// `rtt_ns` in completion order, and `*elapsed_ns` is the time from the last untimed completion to the last timed one
/// (aggregate messages/s = count / elapsed). Returns 0 or an errno.
int demi_baseline_tcp_multi_echo(int nconn, int size, int warmup, int count, int server_cpu, int client_cpu,
                                 uint64_t *rtt_ns, uint64_t *elapsed_ns);

/// Many clients over UDP: `nconn` connected UDP client sockets on the calling thread (pinned to `client_cpu`), each
/// keeping one `size`-byte datagram in flight (closed loop), busy-polled in turn with recv(MSG_DONTWAIT), against
/// one echo server socket on a thread pinned to `server_cpu` that busy-polls recvfrom and sends each datagram back
/// to its sender. Results as demi_baseline_tcp_multi_echo; ETIMEDOUT if no datagram came back for 5 s (a loss).
int demi_baseline_udp_multi_echo(int nconn, int size, int warmup, int count, int server_cpu, int client_cpu,
                                 uint64_t *rtt_ns, uint64_t *elapsed_ns);
#ifdef __cplusplus
}
#endif
