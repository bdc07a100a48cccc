/* SPDX-License-Identifier: Apache-2.0 */
/* A bounded AAD buffer for the provider: inline for small AAD, one growing heap block beyond. */
#include "prov_aad.h"

#include "coffer_error.h"
#include "prov.h"

#include <openssl/crypto.h>
#include <string.h>

int prov_aad_append(prov_aad *a, const uint8_t *p, size_t n)
{
    size_t need;

    if (n == 0)
        return 0;
    if (n > COFFER_MAX_PROV_AAD - a->len)
        return COFFER_ERR_TOO_LARGE;
    need = a->len + n;
    if (a->heap == NULL && need <= sizeof(a->inline_buf)) {
        memcpy(a->inline_buf + a->len, p, n);
        a->len = need;
        return 0;
    }
    if (need > a->cap) {
        size_t cap = a->cap != 0 ? a->cap : 2 * sizeof(a->inline_buf);
        uint8_t *h;
        while (cap < need)
            cap = cap > COFFER_MAX_PROV_AAD / 2 ? COFFER_MAX_PROV_AAD : 2 * cap;
        if (a->heap != NULL)
            h = OPENSSL_clear_realloc(a->heap, a->cap, cap);
        else if ((h = OPENSSL_malloc(cap)) != NULL)
            memcpy(h, a->inline_buf, a->len);
        if (h == NULL)
            return COFFER_ERR_NOMEM;
        if (a->heap == NULL)
            OPENSSL_cleanse(a->inline_buf, a->len);
        a->heap = h;
        a->cap = cap;
    }
    memcpy(a->heap + a->len, p, n);
    a->len = need;
    return 0;
}

const uint8_t *prov_aad_data(const prov_aad *a)
{
    return a->heap != NULL ? a->heap : a->inline_buf;
}

void prov_aad_reset(prov_aad *a)
{
    if (a->len > 0)
        OPENSSL_cleanse(a->heap != NULL ? a->heap : a->inline_buf, a->len);
    a->len = 0;
}

int prov_aad_copy(prov_aad *dst, const prov_aad *src)
{
    dst->heap = NULL;
    dst->cap = 0;
    dst->len = 0;
    if (src->heap == NULL) {
        memcpy(dst->inline_buf, src->inline_buf, src->len);
        dst->len = src->len;
        return 0;
    }
    if ((dst->heap = OPENSSL_malloc(src->cap)) == NULL)
        return COFFER_ERR_NOMEM;
    memcpy(dst->heap, src->heap, src->len);
    dst->cap = src->cap;
    dst->len = src->len;
    return 0;
}

void prov_aad_free(prov_aad *a)
{
    prov_aad_reset(a);
    OPENSSL_clear_free(a->heap, a->cap);
    a->heap = NULL;
    a->cap = 0;
}
