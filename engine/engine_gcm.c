/* SPDX-License-Identifier: Apache-2.0 */
/* AES-GCM through ipsec-mb's direct API (one IMB_MGR per thread) or OpenSSL EVP. */
#include "engine_gcm.h"

#include "coffer_error.h"
#include "engine_secmem.h"

#include <intel-ipsec-mb.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define GCM_TAG_MAX 16

struct engine_gcm {
    /* ipsec-mb requires 64-byte alignment; engine_secmem_alloc returns 64-aligned memory. */
    struct gcm_key_data imb_key __attribute__((aligned(64)));
    struct gcm_context_data imb_ctx __attribute__((aligned(64)));
    EVP_CIPHER_CTX *evp;
    engine_gcm_backend backend;
    size_t keylen;
    int encrypt;
    int started;
};

/* ---- ipsec-mb: one manager per thread, freed when the thread exits ---------------------- */

static pthread_once_t imb_once = PTHREAD_ONCE_INIT;
static pthread_key_t imb_tls_key;
static IMB_ARCH imb_arch = IMB_ARCH_NONE;
static __thread IMB_MGR *imb_tls_mgr;

static void imb_mgr_destroy(void *p)
{
    free_mb_mgr(p);
}

static void imb_global_init(void)
{
    (void)pthread_key_create(&imb_tls_key, imb_mgr_destroy);
    IMB_MGR *m = alloc_mb_mgr(0);
    if (m == NULL)
        return;
    init_mb_mgr_auto(m, &imb_arch);
    if ((m->features & IMB_FEATURE_AESNI) == 0 || (m->features & IMB_FEATURE_PCLMULQDQ) == 0)
        imb_arch = IMB_ARCH_NONE; /* the NOAESNI emulation is slower than OpenSSL: refuse it */
    free_mb_mgr(m);
}

/* The calling thread's IMB_MGR, initialised for the best architecture; NULL if unavailable. */
static IMB_MGR *imb_mgr(void)
{
    if (imb_tls_mgr != NULL)
        return imb_tls_mgr;
    (void)pthread_once(&imb_once, imb_global_init);
    if (imb_arch == IMB_ARCH_NONE || imb_arch == IMB_ARCH_NOAESNI)
        return NULL;
    IMB_MGR *m = alloc_mb_mgr(0);
    if (m == NULL)
        return NULL;
    IMB_ARCH arch;
    init_mb_mgr_auto(m, &arch);
    (void)pthread_setspecific(imb_tls_key, m);
    imb_tls_mgr = m;
    return m;
}

static const char *imb_arch_name(void)
{
    switch (imb_arch) {
    case IMB_ARCH_AVX512:
        return "ipsec-mb/avx512";
    case IMB_ARCH_AVX2:
        return "ipsec-mb/avx2";
    case IMB_ARCH_AVX:
        return "ipsec-mb/avx";
    case IMB_ARCH_SSE:
        return "ipsec-mb/sse";
    default:
        return "ipsec-mb/unavailable";
    }
}

/* ipsec-mb does not accept NULL for empty buffers under its parameter checks. */
static const uint8_t empty_buf[16];
#define NONNULL(p) ((p) != NULL ? (p) : empty_buf)

/* ---- OpenSSL EVP: the default provider's AES-GCM, fetched once ---------------------------- */

static pthread_once_t evp_once = PTHREAD_ONCE_INIT;
static EVP_CIPHER *evp_ciphers[3]; /* 128, 192, 256 */

static void evp_global_init(void)
{
    static const char *names[3] = {"AES-128-GCM", "AES-192-GCM", "AES-256-GCM"};
    for (int i = 0; i < 3; i++)
        evp_ciphers[i] = EVP_CIPHER_fetch(NULL, names[i], "provider=default");
}

static const EVP_CIPHER *evp_cipher_for(size_t keylen)
{
    (void)pthread_once(&evp_once, evp_global_init);
    switch (keylen) {
    case 16:
        return evp_ciphers[0];
    case 24:
        return evp_ciphers[1];
    case 32:
        return evp_ciphers[2];
    default:
        return NULL;
    }
}

/* ---- backend selection ----------------------------------------------------------------- */

int engine_gcm_backend_parse(const char *name, engine_gcm_backend *out)
{
    if (name == NULL || strcasecmp(name, "auto") == 0)
        *out = ENGINE_GCM_AUTO;
    else if (strcasecmp(name, "ipsec-mb") == 0 || strcasecmp(name, "ipsecmb") == 0)
        *out = ENGINE_GCM_IPSEC_MB;
    else if (strcasecmp(name, "openssl") == 0)
        *out = ENGINE_GCM_OPENSSL;
    else
        return COFFER_ERR_INVALID_ARG;
    return 0;
}

int engine_gcm_backend_available(engine_gcm_backend b)
{
    switch (b) {
    case ENGINE_GCM_IPSEC_MB:
        return imb_mgr() != NULL;
    case ENGINE_GCM_OPENSSL:
        return evp_cipher_for(32) != NULL;
    case ENGINE_GCM_AUTO:
        return engine_gcm_backend_available(engine_gcm_backend_default());
    }
    return 0;
}

engine_gcm_backend engine_gcm_backend_default(void)
{
    engine_gcm_backend b = ENGINE_GCM_AUTO;
    const char *env = getenv("COFFER_GCM_BACKEND");
    if (env != NULL && engine_gcm_backend_parse(env, &b) == 0 && b != ENGINE_GCM_AUTO)
        return b;
    return imb_mgr() != NULL ? ENGINE_GCM_IPSEC_MB : ENGINE_GCM_OPENSSL;
}

const char *engine_gcm_backend_name(engine_gcm_backend b)
{
    if (b == ENGINE_GCM_AUTO)
        b = engine_gcm_backend_default();
    if (b == ENGINE_GCM_IPSEC_MB) {
        (void)imb_mgr();
        return imb_arch_name();
    }
    return "openssl";
}

/* ---- key objects ----------------------------------------------------------------------- */

int engine_gcm_new(engine_gcm **out, engine_gcm_backend backend, const uint8_t *key, size_t keylen)
{
    int r = COFFER_ERR_INTERNAL;
    engine_gcm *g = NULL;

    *out = NULL;
    if (keylen != 16 && keylen != 24 && keylen != 32)
        return COFFER_ERR_KEY_SIZE;
    if (backend == ENGINE_GCM_AUTO)
        backend = engine_gcm_backend_default();
    if ((g = engine_secmem_alloc(sizeof(*g))) == NULL)
        return COFFER_ERR_NOMEM;
    g->backend = backend;
    g->keylen = keylen;
    if (backend == ENGINE_GCM_IPSEC_MB) {
        IMB_MGR *m = imb_mgr();
        if (m == NULL) {
            r = COFFER_ERR_CPU;
            goto out;
        }
        if (keylen == 16)
            IMB_AES128_GCM_PRE(m, key, &g->imb_key);
        else if (keylen == 24)
            IMB_AES192_GCM_PRE(m, key, &g->imb_key);
        else
            IMB_AES256_GCM_PRE(m, key, &g->imb_key);
    } else {
        const EVP_CIPHER *c = evp_cipher_for(keylen);
        if (c == NULL) {
            r = COFFER_ERR_CPU;
            goto out;
        }
        if ((g->evp = EVP_CIPHER_CTX_new()) == NULL) {
            r = COFFER_ERR_NOMEM;
            goto out;
        }
        if (EVP_CipherInit_ex2(g->evp, c, key, NULL, 1, NULL) != 1)
            goto out;
    }
    *out = g;
    g = NULL;
    r = 0;
out:
    engine_gcm_free(g);
    return r;
}

int engine_gcm_dup(engine_gcm **out, const engine_gcm *src)
{
    engine_gcm *g = engine_secmem_alloc(sizeof(*g));
    *out = NULL;
    if (g == NULL)
        return COFFER_ERR_NOMEM;
    memcpy(g, src, sizeof(*g));
    g->evp = NULL;
    if (src->evp != NULL) {
        if ((g->evp = EVP_CIPHER_CTX_new()) == NULL || EVP_CIPHER_CTX_copy(g->evp, src->evp) != 1) {
            engine_gcm_free(g);
            return COFFER_ERR_NOMEM;
        }
    }
    *out = g;
    return 0;
}

void engine_gcm_free(engine_gcm *g)
{
    if (g == NULL)
        return;
    EVP_CIPHER_CTX_free(g->evp); /* OpenSSL cleanses its own key schedule */
    engine_secmem_free(g);
}

engine_gcm_backend engine_gcm_backend_of(const engine_gcm *g)
{
    return g->backend;
}

size_t engine_gcm_key_len(const engine_gcm *g)
{
    return g->keylen;
}

/* ---- streaming ------------------------------------------------------------------------- */

int engine_gcm_start(engine_gcm *g, int encrypt, const uint8_t *iv, size_t ivlen,
                     const uint8_t *aad, size_t aadlen)
{
    if (ivlen == 0 || ivlen > ENGINE_GCM_IV_MAX || iv == NULL || (aad == NULL && aadlen > 0))
        return COFFER_ERR_INVALID_ARG;
    g->encrypt = encrypt;
    g->started = 0;
    if (g->backend == ENGINE_GCM_IPSEC_MB) {
        IMB_MGR *m = imb_mgr();
        if (m == NULL)
            return COFFER_ERR_CPU;
        if (g->keylen == 16)
            IMB_AES128_GCM_INIT_VAR_IV(m, &g->imb_key, &g->imb_ctx, iv, ivlen, NONNULL(aad),
                                       aadlen);
        else if (g->keylen == 24)
            IMB_AES192_GCM_INIT_VAR_IV(m, &g->imb_key, &g->imb_ctx, iv, ivlen, NONNULL(aad),
                                       aadlen);
        else
            IMB_AES256_GCM_INIT_VAR_IV(m, &g->imb_key, &g->imb_ctx, iv, ivlen, NONNULL(aad),
                                       aadlen);
    } else {
        int outl;
        if (ivlen > INT_MAX || aadlen > INT_MAX)
            return COFFER_ERR_INVALID_ARG;
        if (EVP_CIPHER_CTX_ctrl(g->evp, EVP_CTRL_AEAD_SET_IVLEN, (int)ivlen, NULL) != 1 ||
            EVP_CipherInit_ex2(g->evp, NULL, NULL, iv, encrypt, NULL) != 1)
            return COFFER_ERR_INVALID_ARG;
        if (aadlen > 0 && EVP_CipherUpdate(g->evp, NULL, &outl, aad, (int)aadlen) != 1)
            return COFFER_ERR_INTERNAL;
    }
    g->started = 1;
    return 0;
}

int engine_gcm_update(engine_gcm *g, const uint8_t *in, size_t len, uint8_t *out)
{
    if (!g->started)
        return COFFER_ERR_STATE;
    if (len == 0)
        return 0;
    if (g->backend == ENGINE_GCM_IPSEC_MB) {
        IMB_MGR *m = imb_mgr();
        if (m == NULL)
            return COFFER_ERR_NOMEM;
        if (g->encrypt) {
            if (g->keylen == 16)
                IMB_AES128_GCM_ENC_UPDATE(m, &g->imb_key, &g->imb_ctx, out, in, len);
            else if (g->keylen == 24)
                IMB_AES192_GCM_ENC_UPDATE(m, &g->imb_key, &g->imb_ctx, out, in, len);
            else
                IMB_AES256_GCM_ENC_UPDATE(m, &g->imb_key, &g->imb_ctx, out, in, len);
        } else {
            if (g->keylen == 16)
                IMB_AES128_GCM_DEC_UPDATE(m, &g->imb_key, &g->imb_ctx, out, in, len);
            else if (g->keylen == 24)
                IMB_AES192_GCM_DEC_UPDATE(m, &g->imb_key, &g->imb_ctx, out, in, len);
            else
                IMB_AES256_GCM_DEC_UPDATE(m, &g->imb_key, &g->imb_ctx, out, in, len);
        }
        return 0;
    }
    while (len > 0) {
        int n = len > (size_t)(INT_MAX / 2) ? INT_MAX / 2 : (int)len, outl;
        if (EVP_CipherUpdate(g->evp, out, &outl, in, n) != 1 || outl != n)
            return COFFER_ERR_INTERNAL;
        in += n;
        out += n;
        len -= (size_t)n;
    }
    return 0;
}

/* The full 16-byte tag of the current message. */
static int gcm_compute_tag(engine_gcm *g, uint8_t tag[GCM_TAG_MAX])
{
    IMB_MGR *m = imb_mgr();
    if (m == NULL)
        return COFFER_ERR_NOMEM;
    if (g->encrypt) {
        if (g->keylen == 16)
            IMB_AES128_GCM_ENC_FINALIZE(m, &g->imb_key, &g->imb_ctx, tag, GCM_TAG_MAX);
        else if (g->keylen == 24)
            IMB_AES192_GCM_ENC_FINALIZE(m, &g->imb_key, &g->imb_ctx, tag, GCM_TAG_MAX);
        else
            IMB_AES256_GCM_ENC_FINALIZE(m, &g->imb_key, &g->imb_ctx, tag, GCM_TAG_MAX);
    } else {
        if (g->keylen == 16)
            IMB_AES128_GCM_DEC_FINALIZE(m, &g->imb_key, &g->imb_ctx, tag, GCM_TAG_MAX);
        else if (g->keylen == 24)
            IMB_AES192_GCM_DEC_FINALIZE(m, &g->imb_key, &g->imb_ctx, tag, GCM_TAG_MAX);
        else
            IMB_AES256_GCM_DEC_FINALIZE(m, &g->imb_key, &g->imb_ctx, tag, GCM_TAG_MAX);
    }
    OPENSSL_cleanse(&g->imb_ctx, sizeof(g->imb_ctx));
    return 0;
}

int engine_gcm_finish_tag(engine_gcm *g, uint8_t *tag, size_t taglen)
{
    uint8_t full[GCM_TAG_MAX];
    int r = COFFER_ERR_INTERNAL;

    if (!g->started || !g->encrypt)
        return COFFER_ERR_STATE;
    if (taglen == 0 || taglen > GCM_TAG_MAX)
        return COFFER_ERR_INVALID_ARG;
    g->started = 0;
    if (g->backend == ENGINE_GCM_IPSEC_MB) {
        if ((r = gcm_compute_tag(g, full)) != 0)
            goto out;
    } else {
        int outl;
        if (EVP_CipherFinal_ex(g->evp, full, &outl) != 1 ||
            EVP_CIPHER_CTX_ctrl(g->evp, EVP_CTRL_AEAD_GET_TAG, GCM_TAG_MAX, full) != 1)
            goto out;
    }
    memcpy(tag, full, taglen);
    r = 0;
out:
    OPENSSL_cleanse(full, sizeof(full));
    return r;
}

int engine_gcm_finish_verify(engine_gcm *g, const uint8_t *tag, size_t taglen)
{
    uint8_t full[GCM_TAG_MAX];
    int r = COFFER_ERR_TAMPERED;

    if (!g->started || g->encrypt)
        return COFFER_ERR_STATE;
    if (taglen == 0 || taglen > GCM_TAG_MAX)
        return COFFER_ERR_INVALID_ARG;
    g->started = 0;
    if (g->backend == ENGINE_GCM_IPSEC_MB) {
        if (gcm_compute_tag(g, full) == 0 && CRYPTO_memcmp(full, tag, taglen) == 0)
            r = 0;
    } else {
        int outl;
        memcpy(full, tag, taglen);
        if (EVP_CIPHER_CTX_ctrl(g->evp, EVP_CTRL_AEAD_SET_TAG, (int)taglen, full) == 1 &&
            EVP_CipherFinal_ex(g->evp, full, &outl) == 1)
            r = 0;
    }
    OPENSSL_cleanse(full, sizeof(full));
    OPENSSL_cleanse(&g->imb_ctx, sizeof(g->imb_ctx));
    return r;
}

/* ---- one-shot -------------------------------------------------------------------------- */

int engine_gcm_seal(engine_gcm *g, const uint8_t *iv, size_t ivlen, const uint8_t *aad,
                    size_t aadlen, const uint8_t *in, size_t len, uint8_t *out, uint8_t *tag,
                    size_t taglen)
{
    int r;
    if (taglen == 0 || taglen > GCM_TAG_MAX)
        return COFFER_ERR_INVALID_ARG;
    if (g->backend == ENGINE_GCM_IPSEC_MB && ivlen == 12 && taglen == GCM_TAG_MAX && iv != NULL) {
        IMB_MGR *m = imb_mgr();
        if (m == NULL)
            return COFFER_ERR_NOMEM;
        if (g->keylen == 16)
            IMB_AES128_GCM_ENC(m, &g->imb_key, &g->imb_ctx, out, NONNULL(in), len, iv, NONNULL(aad),
                               aadlen, tag, GCM_TAG_MAX);
        else if (g->keylen == 24)
            IMB_AES192_GCM_ENC(m, &g->imb_key, &g->imb_ctx, out, NONNULL(in), len, iv, NONNULL(aad),
                               aadlen, tag, GCM_TAG_MAX);
        else
            IMB_AES256_GCM_ENC(m, &g->imb_key, &g->imb_ctx, out, NONNULL(in), len, iv, NONNULL(aad),
                               aadlen, tag, GCM_TAG_MAX);
        return 0;
    }
    if ((r = engine_gcm_start(g, 1, iv, ivlen, aad, aadlen)) != 0 ||
        (r = engine_gcm_update(g, in, len, out)) != 0)
        return r;
    return engine_gcm_finish_tag(g, tag, taglen);
}

int engine_gcm_open(engine_gcm *g, const uint8_t *iv, size_t ivlen, const uint8_t *aad,
                    size_t aadlen, const uint8_t *in, size_t len, uint8_t *out, const uint8_t *tag,
                    size_t taglen)
{
    int r;
    if (taglen == 0 || taglen > GCM_TAG_MAX)
        return COFFER_ERR_INVALID_ARG;
    if (g->backend == ENGINE_GCM_IPSEC_MB && ivlen == 12 && iv != NULL) {
        IMB_MGR *m = imb_mgr();
        uint8_t full[GCM_TAG_MAX];
        if (m == NULL)
            return COFFER_ERR_NOMEM;
        if (g->keylen == 16)
            IMB_AES128_GCM_DEC(m, &g->imb_key, &g->imb_ctx, out, NONNULL(in), len, iv, NONNULL(aad),
                               aadlen, full, GCM_TAG_MAX);
        else if (g->keylen == 24)
            IMB_AES192_GCM_DEC(m, &g->imb_key, &g->imb_ctx, out, NONNULL(in), len, iv, NONNULL(aad),
                               aadlen, full, GCM_TAG_MAX);
        else
            IMB_AES256_GCM_DEC(m, &g->imb_key, &g->imb_ctx, out, NONNULL(in), len, iv, NONNULL(aad),
                               aadlen, full, GCM_TAG_MAX);
        r = CRYPTO_memcmp(full, tag, taglen) == 0 ? 0 : COFFER_ERR_TAMPERED;
        OPENSSL_cleanse(full, sizeof(full));
    } else {
        r = engine_gcm_start(g, 0, iv, ivlen, aad, aadlen);
        if (r == 0)
            r = engine_gcm_update(g, in, len, out);
        if (r == 0)
            r = engine_gcm_finish_verify(g, tag, taglen);
    }
    if (r != 0 && len > 0)
        OPENSSL_cleanse(out, len); /* fail closed: no unauthenticated plaintext survives */
    return r;
}
