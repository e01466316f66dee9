/* Private to the library: the calling thread's libOS. Not installed. */
#ifndef DEMI_ABI_PRIVATE_H
#define DEMI_ABI_PRIVATE_H
/* Initial-exec TLS: every C call reads it, and the general-dynamic model a shared library gets by default costs a
 * call to __tls_get_addr each time; initial-exec is one %fs-relative load (glibc keeps static TLS room for
 * libraries loaded later, and this is one pointer). */
extern __thread void *demi_abi_current_libos __attribute__((tls_model("initial-exec"), visibility("hidden")));
static inline void *demi_abi_current(void) { return demi_abi_current_libos; }
__attribute__((visibility("hidden"))) void demi_abi_set_current(void *libos);
#endif
