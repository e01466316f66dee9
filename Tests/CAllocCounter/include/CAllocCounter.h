// Counts heap allocations made by the calling thread, by interposing malloc and friends in the test process.
// Allocation-count tests use it to prove the datapath allocates nothing after warm-up.
#pragma once
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Starts counting allocations of the calling thread (resets the count).
void alloc_counter_start(void);
/// Stops counting and returns the allocations (malloc, calloc, realloc, aligned allocations) seen since start.
int64_t alloc_counter_stop(void);
/// True if the interposer is active in this process.
int alloc_counter_active(void);

#ifdef __cplusplus
}
#endif
