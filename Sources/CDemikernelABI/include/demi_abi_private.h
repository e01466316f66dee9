/* Private to the library: the calling thread's libOS. Not installed. */
#ifndef DEMI_ABI_PRIVATE_H
#define DEMI_ABI_PRIVATE_H
__attribute__((visibility("hidden"))) void *demi_abi_current(void);
__attribute__((visibility("hidden"))) void demi_abi_set_current(void *libos);
#endif
