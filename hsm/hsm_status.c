/* SPDX-License-Identifier: Apache-2.0 */
/* Filling an hsm_status: code, step, CKR_ name and a sentence, all bounded and NUL-terminated. */
#include "hsm_status.h"

#include "hsm_rv.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void hsm_status_clear(hsm_status *st)
{
    if (st != NULL)
        memset(st, 0, sizeof(*st));
}

int hsm_status_set(hsm_status *st, int code, const char *step, unsigned long rv, const char *fmt,
                   ...)
{
    va_list ap;

    if (st == NULL)
        return code;
    memset(st, 0, sizeof(*st));
    st->code = code;
    snprintf(st->step, sizeof(st->step), "%s", step != NULL ? step : "");
    if (rv != HSM_STATUS_NO_RV)
        snprintf(st->ckr, sizeof(st->ckr), "%s", hsm_rv_name((CK_RV)rv));
    va_start(ap, fmt);
    vsnprintf(st->text, sizeof(st->text), fmt, ap);
    va_end(ap);
    return code;
}
