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

#ifdef __cplusplus
extern "C" {
#endif
/// Swift Testing installs a hook that captures a backtrace (allocating) on every thrown error. These suspend and
/// restore it, so allocation tests measure the library's error paths rather than the test framework.
void *alloc_counter_suspend_throw_hook(void);
void alloc_counter_restore_throw_hook(void *previous);
#ifdef __cplusplus
}
#endif
