/* SPDX-License-Identifier: Apache-2.0 */
/* The coffer provider's entry point: OSSL_provider_init, its dispatch table and its parameters. */
#include "coffer_version.h"
#include "engine_gcm.h"
#include "prov.h"
#include "prov_err.h"
#include "prov_gcm.h"

#include <intel-ipsec-mb.h>
#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/opensslv.h>
#include <openssl/params.h>
#include <stdio.h>

static const OSSL_PARAM prov_params_list[] = {
    OSSL_PARAM_utf8_ptr(OSSL_PROV_PARAM_NAME, NULL, 0),
    OSSL_PARAM_utf8_ptr(OSSL_PROV_PARAM_VERSION, NULL, 0),
    OSSL_PARAM_utf8_ptr(OSSL_PROV_PARAM_BUILDINFO, NULL, 0),
    OSSL_PARAM_int(OSSL_PROV_PARAM_STATUS, NULL),
    OSSL_PARAM_END,
};

static const OSSL_PARAM *prov_params_gettable(void *provctx)
{
    return prov_params_list;
}

/* What `openssl list -providers -verbose` prints: name, version, build information, status. */
static int prov_params_get(void *vprovctx, OSSL_PARAM params[])
{
    const prov_ctx *pc = vprovctx;
    OSSL_PARAM *p;

    if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_NAME)) != NULL &&
        !OSSL_PARAM_set_utf8_ptr(p, "coffer"))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_VERSION)) != NULL &&
        !OSSL_PARAM_set_utf8_ptr(p, COFFER_VERSION_STRING))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_BUILDINFO)) != NULL &&
        !OSSL_PARAM_set_utf8_ptr(p, pc->buildinfo))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_STATUS)) != NULL &&
        !OSSL_PARAM_set_int(p, 1))
        return 0;
    return 1;
}

static const OSSL_ALGORITHM *prov_operation_query(void *provctx, int operation_id, int *no_cache)
{
    *no_cache = 0;
    return operation_id == OSSL_OP_CIPHER ? prov_gcm_algorithms : NULL;
}

static void prov_ctx_teardown(void *vprovctx)
{
    OPENSSL_free(vprovctx);
}

static const OSSL_DISPATCH prov_functions[] = {
    {OSSL_FUNC_PROVIDER_TEARDOWN, (void (*)(void))prov_ctx_teardown},
    {OSSL_FUNC_PROVIDER_GETTABLE_PARAMS, (void (*)(void))prov_params_gettable},
    {OSSL_FUNC_PROVIDER_GET_PARAMS, (void (*)(void))prov_params_get},
    {OSSL_FUNC_PROVIDER_QUERY_OPERATION, (void (*)(void))prov_operation_query},
    {OSSL_FUNC_PROVIDER_GET_REASON_STRINGS, (void (*)(void))prov_err_reasons_get},
    {0, NULL},
};

/*
 * The only symbol coffer.so exports (providers/coffer.map). Called once per library context that
 * loads the provider; the provider context it makes is freed by prov_ctx_teardown. Everything
 * else is built with hidden visibility.
 */
__attribute__((visibility("default"))) int OSSL_provider_init(const OSSL_CORE_HANDLE *handle,
                                                              const OSSL_DISPATCH *in,
                                                              const OSSL_DISPATCH **out,
                                                              void **provctx)
{
    prov_ctx *pc;

    prov_err_init(in);
    if ((pc = OPENSSL_zalloc(sizeof(*pc))) == NULL)
        return 0;
    pc->handle = handle;
    snprintf(pc->buildinfo, sizeof(pc->buildinfo),
             "coffer %s: AES-GCM on %s (built with ipsec-mb %s, runs %s; %s)",
             COFFER_VERSION_STRING, engine_gcm_backend_name(ENGINE_GCM_AUTO), IMB_VERSION_STR,
             imb_get_version_str(), OPENSSL_VERSION_TEXT);
    *out = prov_functions;
    *provctx = pc;
    return 1;
}
