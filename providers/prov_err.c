/* SPDX-License-Identifier: Apache-2.0 */
/* The coffer provider's errors: coffer's one error table, raised through the core's functions. */
#include "prov_err.h"

#include "coffer_error.h"

#include <stdarg.h>
#include <stddef.h>

static OSSL_FUNC_core_new_error_fn *core_new_error;
static OSSL_FUNC_core_set_error_debug_fn *core_set_error_debug;
static OSSL_FUNC_core_vset_error_fn *core_vset_error;

void prov_err_init(const OSSL_DISPATCH *in)
{
    for (; in != NULL && in->function_id != 0; in++) {
        switch (in->function_id) {
        case OSSL_FUNC_CORE_NEW_ERROR:
            core_new_error = OSSL_FUNC_core_new_error(in);
            break;
        case OSSL_FUNC_CORE_SET_ERROR_DEBUG:
            core_set_error_debug = OSSL_FUNC_core_set_error_debug(in);
            break;
        case OSSL_FUNC_CORE_VSET_ERROR:
            core_vset_error = OSSL_FUNC_core_vset_error(in);
            break;
        default:
            break;
        }
    }
}

void prov_err_raise_at(const prov_ctx *pc, const char *file, int line, const char *func, int err,
                       const char *fmt, ...)
{
    va_list ap;

    if (pc == NULL || core_new_error == NULL || core_set_error_debug == NULL ||
        core_vset_error == NULL)
        return;
    if (err >= 0)
        err = COFFER_ERR_INTERNAL;
    core_new_error(pc->handle);
    core_set_error_debug(pc->handle, file, line, func);
    va_start(ap, fmt);
    core_vset_error(pc->handle, (uint32_t)-err, fmt, ap);
    va_end(ap);
}

/*
 * TAMPERED's table text speaks of coffer's chunked streams, whose failed chunk is never released.
 * Through EVP the updates have already returned the plaintext when the final finds a bad tag, so
 * the provider says what is true there instead. The code (and its name) stays the same.
 */
#define PROV_ERR_TAMPERED_TEXT                                                                     \
    "authentication failed: the ciphertext, AAD, IV or tag was modified, or the key is wrong; "    \
    "discard all the plaintext of this message"

/* The reason of COFFER_ERR_x is -COFFER_ERR_x, so "reason(21)" in a log is coffer's code -21. */
static const OSSL_ITEM prov_err_reasons[] = {
#define PROV_ERR_ITEM(name, value, msg)                                                            \
    {(unsigned int)-(value), (value) == COFFER_ERR_TAMPERED ? PROV_ERR_TAMPERED_TEXT : msg},
    COFFER_ERROR_TABLE(PROV_ERR_ITEM)
#undef PROV_ERR_ITEM
        {0, NULL},
};

const OSSL_ITEM *prov_err_reasons_get(void *provctx)
{
    return prov_err_reasons;
}
