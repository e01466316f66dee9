/*
 * demi/sga.h: I/O buffers.
 */
#ifndef DEMI_SGA_H_IS_INCLUDED
#define DEMI_SGA_H_IS_INCLUDED

#include <demi/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Allocates an array of one segment of `size` bytes from the libOS's pool. Returns an array whose sga_buf is NULL
 * when size is 0, when memory runs out, or before demi_init. Sizes above 64 KiB are allowed. */
extern demi_sgarray_t demi_sgaalloc(size_t size);

/* Returns the caller's reference to an array from demi_sgaalloc or a pop. EINVAL for a NULL, foreign, malformed or
 * already freed array. Data still being pushed stays intact until its push completes. */
extern int demi_sgafree(demi_sgarray_t *sga);

#ifdef __cplusplus
}
#endif

#endif /* DEMI_SGA_H_IS_INCLUDED */
