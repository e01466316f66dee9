#include "CDemiLinux.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/uio.h>

int cdemi_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int cdemi_epoll_add(int epfd, int fd, uint32_t events, uint64_t data) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = events;
    ev.data.u64 = data;
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

int cdemi_epoll_mod(int epfd, int fd, uint32_t events, uint64_t data) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = events;
    ev.data.u64 = data;
    return epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev);
}

int cdemi_epoll_del(int epfd, int fd) { return epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL); }

int cdemi_epoll_wait(int epfd, uint64_t *data_out, uint32_t *events_out, int max, int timeout_ms) {
    struct epoll_event evs[64];
    if (max > 64) max = 64;
    int n = epoll_wait(epfd, evs, max, timeout_ms);
    for (int i = 0; i < n; i++) {
        data_out[i] = evs[i].data.u64;
        events_out[i] = evs[i].events;
    }
    return n;
}

uint32_t cdemi_epollin(void) { return EPOLLIN; }
uint32_t cdemi_epollout(void) { return EPOLLOUT; }
uint32_t cdemi_epollerr(void) { return EPOLLERR; }
uint32_t cdemi_epollhup(void) { return EPOLLHUP; }
uint32_t cdemi_epollrdhup(void) { return EPOLLRDHUP; }
uint32_t cdemi_epollet(void) { return EPOLLET; }

static void fill4(struct sockaddr_in *sin, uint32_t addr, uint16_t port) {
    memset(sin, 0, sizeof *sin);
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(addr);
    sin->sin_port = htons(port);
}

static void read4(const struct sockaddr_in *sin, uint32_t *addr, uint16_t *port) {
    if (addr) *addr = ntohl(sin->sin_addr.s_addr);
    if (port) *port = ntohs(sin->sin_port);
}

int cdemi_socket(int domain, int type, int protocol) {
    return socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
}

int cdemi_bind4(int fd, uint32_t addr, uint16_t port) {
    struct sockaddr_in sin;
    fill4(&sin, addr, port);
    return bind(fd, (struct sockaddr *)&sin, sizeof sin);
}

int cdemi_connect4(int fd, uint32_t addr, uint16_t port) {
    struct sockaddr_in sin;
    fill4(&sin, addr, port);
    return connect(fd, (struct sockaddr *)&sin, sizeof sin);
}

int cdemi_accept4(int fd, uint32_t *addr, uint16_t *port) {
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;
    memset(&sin, 0, sizeof sin);
    int r = accept4(fd, (struct sockaddr *)&sin, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (r >= 0) read4(&sin, addr, port);
    return r;
}

int cdemi_getsockname4(int fd, uint32_t *addr, uint16_t *port) {
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;
    memset(&sin, 0, sizeof sin);
    int r = getsockname(fd, (struct sockaddr *)&sin, &len);
    if (r == 0) read4(&sin, addr, port);
    return r;
}

int cdemi_getpeername4(int fd, uint32_t *addr, uint16_t *port) {
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;
    memset(&sin, 0, sizeof sin);
    int r = getpeername(fd, (struct sockaddr *)&sin, &len);
    if (r == 0) read4(&sin, addr, port);
    return r;
}

ssize_t cdemi_sendto4(int fd, const void *buf, size_t len, uint32_t addr, uint16_t port) {
    struct sockaddr_in sin;
    fill4(&sin, addr, port);
    return sendto(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&sin, sizeof sin);
}

ssize_t cdemi_recvfrom4(int fd, void *buf, size_t len, int flags, uint32_t *addr, uint16_t *port) {
    struct sockaddr_in sin;
    socklen_t slen = sizeof sin;
    memset(&sin, 0, sizeof sin);
    ssize_t r = recvfrom(fd, buf, len, flags | MSG_DONTWAIT, (struct sockaddr *)&sin, &slen);
    if (r >= 0) read4(&sin, addr, port);
    return r;
}

ssize_t cdemi_sendv(int fd, const void *const *bases, const size_t *lens, int count, int has_addr, uint32_t addr,
                    uint16_t port) {
    struct iovec iov[64];
    if (count > 64) count = 64;
    for (int i = 0; i < count; i++) {
        iov[i].iov_base = (void *)bases[i];
        iov[i].iov_len = lens[i];
    }
    struct sockaddr_in sin;
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    if (has_addr) {
        fill4(&sin, addr, port);
        msg.msg_name = &sin;
        msg.msg_namelen = sizeof sin;
    }
    msg.msg_iov = iov;
    msg.msg_iovlen = (size_t)count;
    return sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
}

int cdemi_socket_error(int fd) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return -1;
    return err;
}

int cdemi_setsockopt_int(int fd, int level, int name, int value) {
    return setsockopt(fd, level, name, &value, sizeof value);
}

int cdemi_getsockopt_int(int fd, int level, int name, int *value) {
    socklen_t len = sizeof *value;
    return getsockopt(fd, level, name, value, &len);
}

int cdemi_setsockopt_linger(int fd, int on, int seconds) {
    struct linger l = {.l_onoff = on, .l_linger = seconds};
    return setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
}

int cdemi_getsockopt_linger(int fd, int *on, int *seconds) {
    struct linger l;
    socklen_t len = sizeof l;
    int r = getsockopt(fd, SOL_SOCKET, SO_LINGER, &l, &len);
    if (r == 0) {
        *on = l.l_onoff;
        *seconds = l.l_linger;
    }
    return r;
}

int cdemi_shutdown_write(int fd) { return shutdown(fd, SHUT_WR); }

int cdemi_msg_dontwait(void) { return MSG_DONTWAIT; }
int cdemi_msg_nosignal(void) { return MSG_NOSIGNAL; }
int cdemi_msg_trunc(void) { return MSG_TRUNC; }

int cdemi_pin_to_cpu(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof set, &set);
}

int cdemi_cpu_count(void) { return (int)sysconf(_SC_NPROCESSORS_ONLN); }

uint64_t cdemi_rdtsc(void) {
#if defined(__x86_64__)
    uint32_t lo, hi;
    __asm__ __volatile__("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
#else
    return 0;
#endif
}

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>

void *cdemi_shm_map(const char *name, size_t size, int create) {
    int fd = shm_open(name, create ? (O_RDWR | O_CREAT | O_EXCL) : O_RDWR, 0600);
    if (fd < 0) return NULL;
    if (create && ftruncate(fd, (off_t)size) != 0) {
        int e = errno;
        close(fd);
        shm_unlink(name);
        errno = e;
        return NULL;
    }
    if (!create) {
        struct stat st;
        if (fstat(fd, &st) != 0 || (size_t)st.st_size < size) {
            close(fd);
            errno = EINVAL;
            return NULL;
        }
    }
    /* Populated: the rings' pages are mapped now, not faulted in (a few microseconds each) by the first messages. */
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) {
        if (create) shm_unlink(name);
        errno = e;
        return NULL;
    }
    return p;
}

int cdemi_shm_unmap(void *addr, size_t size) { return munmap(addr, size); }
int cdemi_shm_unlink(const char *name) { return shm_unlink(name); }

int cdemi_pidfd_open(int pid) {
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    errno = ENOSYS;
    return -1;
#endif
}

int cdemi_pidfd_exited(int pidfd) {
    struct pollfd p = {.fd = pidfd, .events = POLLIN};
    int r = poll(&p, 1, 0);
    if (r < 0) return -1;
    return r > 0 ? 1 : 0;
}

int cdemi_getpid(void) { return (int)getpid(); }
