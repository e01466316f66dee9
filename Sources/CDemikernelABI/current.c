#include "demi_abi_private.h"

__thread void *demi_abi_current_libos __attribute__((tls_model("initial-exec"), visibility("hidden")));

void demi_abi_set_current(void *libos) { demi_abi_current_libos = libos; }
