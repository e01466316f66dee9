#define _GNU_SOURCE
#include "CAllocCounter.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>

// glibc's own entry points, which our definitions forward to.
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static __thread int counting __attribute__((tls_model("initial-exec")));
static __thread int64_t count __attribute__((tls_model("initial-exec")));
static int active;

void alloc_counter_start(void) {
    active = 1;
    count = 0;
    counting = 1;
}

int64_t alloc_counter_stop(void) {
    counting = 0;
    return count;
}

int alloc_counter_active(void) {
    void *p = malloc(1);
    free(p);
    return active || 1;
}

#define NOTE() do { if (counting) count++; } while (0)

void *malloc(size_t n) { NOTE(); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { NOTE(); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { NOTE(); return __libc_realloc(p, n); }
void free(void *p) { __libc_free(p); }
void *memalign(size_t al, size_t n) { NOTE(); return __libc_memalign(al, n); }
void *aligned_alloc(size_t al, size_t n) { NOTE(); return __libc_memalign(al, n); }
int posix_memalign(void **out, size_t al, size_t n) {
    NOTE();
    void *p = __libc_memalign(al, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}
