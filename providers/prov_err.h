/* SPDX-License-Identifier: Apache-2.0 */
/* Errors the coffer provider raises on OpenSSL's error queue, with coffer's codes as reasons. */
#ifndef PROV_ERR_H
#define PROV_ERR_H

#include "prov.h"

#include <openssl/core_dispatch.h>
#include <openssl/crypto.h>

/* Take the core's error functions from the dispatch table given to OSSL_provider_init. */
void prov_err_init(const OSSL_DISPATCH *in);

/*
 * Raise an error whose reason is -err (err a negative COFFER_ERR_* code: the reason text is
 * coffer_strerror's message) and whose data is the printf-formatted detail. pc may be NULL, then
 * nothing is raised.
 */
void prov_err_raise_at(const prov_ctx *pc, const char *file, int line, const char *func, int err,
                       const char *fmt, ...) __attribute__((format(printf, 6, 7)));
#define prov_err_raise(pc, err, ...)                                                               \
    prov_err_raise_at((pc), OPENSSL_FILE, OPENSSL_LINE, OPENSSL_FUNC, (err), __VA_ARGS__)

/* OSSL_FUNC_PROVIDER_GET_REASON_STRINGS: coffer's error table as OpenSSL reason strings. */
const OSSL_ITEM *prov_err_reasons_get(void *provctx);

#endif
