/*
 * demi/wait.h: collecting the results of operations. The calling thread runs the libOS while it waits.
 * A NULL timeout waits for ever; a zero timeout polls once. A successful wait consumes the token.
 */
#ifndef DEMI_WAIT_H_IS_INCLUDED
#define DEMI_WAIT_H_IS_INCLUDED

#include <demi/types.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Waits for operation qt. EINVAL for an unknown or consumed token, ETIMEDOUT when the timeout passes. */
extern int demi_wait(demi_qresult_t *qr_out, demi_qtoken_t qt, const struct timespec *timeout);

/* Waits for the first of num_qts operations; *ready_offset is the index of the completed one. Fair: when several
 * are complete, successive calls do not always pick the lowest index. */
extern int demi_wait_any(demi_qresult_t *qr_out, int *ready_offset, const demi_qtoken_t qts[], int num_qts,
                         const struct timespec *timeout);

/* Waits until some operation completes, then stores up to num_qrs completed results (any token, in completion
 * order) and their count in *num_qrs_out. */
extern int demi_wait_next_n(demi_qresult_t *qr_out, int num_qrs, int *num_qrs_out, const struct timespec *timeout);

#ifdef __cplusplus
}
#endif

#endif /* DEMI_WAIT_H_IS_INCLUDED */
