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

// The Swift runtime's throw hooks (exported by libswiftCore). With a typed-throw hook unset, the runtime boxes the
// error for the untyped hook, so both are suspended.
extern void *_swift_willThrowTypedImpl __attribute__((weak));
extern void *_swift_willThrow __attribute__((weak));
static void *saved_untyped;

void *alloc_counter_suspend_throw_hook(void) {
    if (!&_swift_willThrowTypedImpl || !&_swift_willThrow) return 0;
    saved_untyped = __atomic_exchange_n(&_swift_willThrow, (void *)0, __ATOMIC_SEQ_CST);
    return __atomic_exchange_n(&_swift_willThrowTypedImpl, (void *)0, __ATOMIC_SEQ_CST);
}

void alloc_counter_restore_throw_hook(void *previous) {
    if (!&_swift_willThrowTypedImpl || !&_swift_willThrow) return;
    __atomic_store_n(&_swift_willThrowTypedImpl, previous, __ATOMIC_SEQ_CST);
    __atomic_store_n(&_swift_willThrow, saved_untyped, __ATOMIC_SEQ_CST);
}
