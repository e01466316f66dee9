#include "demi_abi_private.h"

static __thread void *current_libos;

void *demi_abi_current(void) { return current_libos; }
void demi_abi_set_current(void *libos) { current_libos = libos; }
