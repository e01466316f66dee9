/* Checks, at compile time, that the C structures have upstream Demikernel's packed sizes. */
#include <demi/libos.h>
#include <demi/sga.h>
#include <demi/types.h>
#include <demi/wait.h>
#include <stdio.h>

_Static_assert(sizeof(demi_qtoken_t) == 8, "demi_qtoken_t");
_Static_assert(sizeof(demi_sgaseg_t) == 12, "demi_sgaseg_t");
_Static_assert(sizeof(demi_sgarray_t) == 40, "demi_sgarray_t");
_Static_assert(sizeof(demi_opcode_t) == 4, "demi_opcode_t");
_Static_assert(sizeof(demi_accept_result_t) == 20, "demi_accept_result_t");
_Static_assert(sizeof(demi_qresult_t) == 64, "demi_qresult_t");
_Static_assert(sizeof(struct demi_args) == 20, "struct demi_args");
_Static_assert(DEMI_SGARRAY_MAXSIZE == 1, "DEMI_SGARRAY_MAXSIZE");
_Static_assert(DEMI_OPC_INVALID == 0 && DEMI_OPC_FAILED == 6, "demi_opcode_t values");

int main(void) {
    printf("sizes: sgaseg %zu, sgarray %zu, accept_result %zu, qresult %zu, args %zu\n", sizeof(demi_sgaseg_t),
           sizeof(demi_sgarray_t), sizeof(demi_accept_result_t), sizeof(demi_qresult_t), sizeof(struct demi_args));
    return 0;
}
