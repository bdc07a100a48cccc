/* SPDX-License-Identifier: Apache-2.0 */
/* AES-GCM for OpenSSL 3's EVP on engine_gcm: the cipher context, its parameters and dispatch. */
#include "prov_gcm.h"

#include "coffer_error.h"
#include "engine_gcm.h"
#include "engine_secmem.h"
#include "prov.h"
#include "prov_aad.h"
#include "prov_err.h"

#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdint.h>
#include <string.h>

#define GCM_TAG_LEN    16
#define GCM_IV_DEFAULT 12
#define GCM_KEY_MAX    32
/* SP 800-38D: at most 2^39 - 256 bits of plaintext per message (OpenSSL enforces the same). */
#define GCM_MSG_MAX ((UINT64_C(1) << 36) - 32)
#define GCM_NOT_SUPPORTED                                                                          \
    "not supported by the coffer provider (no TLS record mode, no IV generation)"

/*
 * Where a context is in its message. Data can only be processed in IV_SET (the first data update
 * or the final starts the engine's message with all the AAD gathered so far) and IV_STARTED.
 */
typedef enum {
    IV_NONE = 0, /* no usable IV: set one with EVP_CipherInit */
    IV_SET,      /* IV set, AAD being gathered, the engine's message not started */
    IV_STARTED,  /* the engine's message started: data updates, no more AAD */
    IV_DONE,     /* final called: the IV is used up */
} prov_gcm_iv_state;

/*
 * One EVP_CIPHER_CTX's state. It lives in engine_secmem (locked, never dumped, wiped on free,
 * and reused from the engine's pool of wiped regions) because it keeps a copy of the key: init
 * with the key already in use (as many applications do for every message) then costs no new key
 * schedule and no allocation.
 */
typedef struct prov_gcm_ctx {
    prov_ctx *provctx;
    engine_gcm *gcm; /* key schedule and message state; NULL until a key is set */
    size_t keylen;   /* fixed by the algorithm */
    int enc;
    prov_gcm_iv_state iv_state;
    size_t ivlen;
    uint64_t msg_len;  /* data bytes of this message so far */
    size_t tag_in_len; /* decrypting: length of the expected tag, 0 while none is set */
    int tag_out_ready; /* encrypting: tag_out holds this message's tag */
    uint8_t tag_in[GCM_TAG_LEN];
    uint8_t tag_out[GCM_TAG_LEN];
    uint8_t key[GCM_KEY_MAX];
    uint8_t iv[COFFER_MAX_PROV_IVLEN];
    prov_aad aad;
} prov_gcm_ctx;

/* ---- context life ------------------------------------------------------------------------ */

static void *prov_gcm_ctx_new(void *provctx, size_t keylen)
{
    prov_gcm_ctx *c = engine_secmem_alloc(sizeof(*c));

    if (c == NULL) {
        prov_err_raise(provctx, COFFER_ERR_NOMEM, "AES-GCM cipher context");
        return NULL;
    }
    c->provctx = provctx;
    c->keylen = keylen;
    c->ivlen = GCM_IV_DEFAULT;
    return c;
}

static void prov_gcm_ctx_free(void *vctx)
{
    prov_gcm_ctx *c = vctx;

    if (c == NULL)
        return;
    engine_gcm_free(c->gcm);
    prov_aad_free(&c->aad);
    engine_secmem_free(c); /* wipes the key copy, IV and tags */
}

static void *prov_gcm_ctx_dup(void *vctx)
{
    const prov_gcm_ctx *src = vctx;
    prov_gcm_ctx *c = engine_secmem_alloc(sizeof(*c));
    int r = COFFER_ERR_NOMEM;

    if (c == NULL)
        goto out;
    memcpy(c, src, sizeof(*c));
    c->gcm = NULL;
    c->aad.heap = NULL; /* src's, not ours */
    c->aad.cap = 0;
    if ((r = prov_aad_copy(&c->aad, &src->aad)) != 0)
        goto out;
    if (src->gcm != NULL && (r = engine_gcm_dup(&c->gcm, src->gcm)) != 0)
        goto out;
    r = 0;
out:
    if (r != 0) {
        prov_err_raise(src->provctx, r, "copying an AES-GCM cipher context");
        prov_gcm_ctx_free(c);
        c = NULL;
    }
    return c;
}

/* ---- parameters -------------------------------------------------------------------------- */

static const OSSL_PARAM prov_gcm_params_list[] = {
    OSSL_PARAM_uint(OSSL_CIPHER_PARAM_MODE, NULL),
    OSSL_PARAM_size_t(OSSL_CIPHER_PARAM_KEYLEN, NULL),
    OSSL_PARAM_size_t(OSSL_CIPHER_PARAM_IVLEN, NULL),
    OSSL_PARAM_size_t(OSSL_CIPHER_PARAM_BLOCK_SIZE, NULL),
    OSSL_PARAM_int(OSSL_CIPHER_PARAM_AEAD, NULL),
    OSSL_PARAM_int(OSSL_CIPHER_PARAM_CUSTOM_IV, NULL),
    OSSL_PARAM_int(OSSL_CIPHER_PARAM_CTS, NULL),
    OSSL_PARAM_int(OSSL_CIPHER_PARAM_TLS1_MULTIBLOCK, NULL),
    OSSL_PARAM_int(OSSL_CIPHER_PARAM_HAS_RAND_KEY, NULL),
    OSSL_PARAM_END,
};

static const OSSL_PARAM *prov_gcm_params_gettable(void *provctx)
{
    return prov_gcm_params_list;
}

/* The algorithm's constants: what EVP_CIPHER_fetch caches (mode, lengths, AEAD flags). */
static int prov_gcm_params_get(OSSL_PARAM params[], size_t keylen)
{
    OSSL_PARAM *p;

    if ((p = OSSL_PARAM_locate(params, OSSL_CIPHER_PARAM_MODE)) != NULL &&
        !OSSL_PARAM_set_uint(p, EVP_CIPH_GCM_MODE))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_CIPHER_PARAM_KEYLEN)) != NULL &&
        !OSSL_PARAM_set_size_t(p, keylen))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_CIPHER_PARAM_IVLEN)) != NULL &&
        !OSSL_PARAM_set_size_t(p, GCM_IV_DEFAULT))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_CIPHER_PARAM_BLOCK_SIZE)) != NULL &&
        !OSSL_PARAM_set_size_t(p, 1))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_CIPHER_PARAM_AEAD)) != NULL &&
        !OSSL_PARAM_set_int(p, 1))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_CIPHER_PARAM_CUSTOM_IV)) != NULL &&
        !OSSL_PARAM_set_int(p, 1))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_CIPHER_PARAM_CTS)) != NULL && !OSSL_PARAM_set_int(p, 0))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_CIPHER_PARAM_TLS1_MULTIBLOCK)) != NULL &&
        !OSSL_PARAM_set_int(p, 0))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_CIPHER_PARAM_HAS_RAND_KEY)) != NULL &&
        !OSSL_PARAM_set_int(p, 0))
        return 0;
    return 1;
}

static const OSSL_PARAM prov_gcm_ctx_gettable_list[] = {
    OSSL_PARAM_size_t(OSSL_CIPHER_PARAM_KEYLEN, NULL),
    OSSL_PARAM_size_t(OSSL_CIPHER_PARAM_IVLEN, NULL),
    OSSL_PARAM_size_t(OSSL_CIPHER_PARAM_AEAD_TAGLEN, NULL),
    OSSL_PARAM_octet_string(OSSL_CIPHER_PARAM_IV, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_CIPHER_PARAM_UPDATED_IV, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, NULL, 0),
    OSSL_PARAM_END,
};

static const OSSL_PARAM prov_gcm_ctx_settable_list[] = {
    OSSL_PARAM_size_t(OSSL_CIPHER_PARAM_AEAD_IVLEN, NULL),
    OSSL_PARAM_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, NULL, 0),
    OSSL_PARAM_END,
};

static const OSSL_PARAM *prov_gcm_ctx_gettable(void *vctx, void *provctx)
{
    return prov_gcm_ctx_gettable_list;
}

static const OSSL_PARAM *prov_gcm_ctx_settable(void *vctx, void *provctx)
{
    return prov_gcm_ctx_settable_list;
}

/* "iv" and "updated-iv": the message's IV (GCM never updates it), as a copy or a pointer. */
static int prov_gcm_iv_put(const prov_gcm_ctx *c, OSSL_PARAM *p)
{
    if (c->iv_state == IV_NONE) {
        prov_err_raise(c->provctx, COFFER_ERR_STATE, "no IV is set");
        return 0;
    }
    if (p->data != NULL && c->ivlen > p->data_size) {
        prov_err_raise(c->provctx, COFFER_ERR_INVALID_ARG, "%zu-byte buffer for a %zu-byte IV",
                       p->data_size, c->ivlen);
        return 0;
    }
    if (!OSSL_PARAM_set_octet_string(p, c->iv, c->ivlen) &&
        !OSSL_PARAM_set_octet_ptr(p, c->iv, c->ivlen))
        return 0;
    return 1;
}

/* "tag": the first data_size bytes of the tag of the message just encrypted. */
static int prov_gcm_tag_put(const prov_gcm_ctx *c, OSSL_PARAM *p)
{
    if (!c->enc || !c->tag_out_ready) {
        prov_err_raise(c->provctx, COFFER_ERR_STATE,
                       "the tag can be read only after an encryption's final");
        return 0;
    }
    if (p->data == NULL) /* a size query */
        return OSSL_PARAM_set_octet_string(p, c->tag_out, GCM_TAG_LEN);
    if (p->data_size == 0 || p->data_size > GCM_TAG_LEN) {
        prov_err_raise(c->provctx, COFFER_ERR_INVALID_ARG,
                       "tag length %zu: GCM tags are 1 to 16 bytes", p->data_size);
        return 0;
    }
    return OSSL_PARAM_set_octet_string(p, c->tag_out, p->data_size);
}

static int prov_gcm_ctx_params_get(void *vctx, OSSL_PARAM params[])
{
    const prov_gcm_ctx *c = vctx;
    OSSL_PARAM *p;

    if ((p = OSSL_PARAM_locate(params, OSSL_CIPHER_PARAM_IVLEN)) != NULL &&
        !OSSL_PARAM_set_size_t(p, c->ivlen))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_CIPHER_PARAM_KEYLEN)) != NULL &&
        !OSSL_PARAM_set_size_t(p, c->keylen))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_CIPHER_PARAM_AEAD_TAGLEN)) != NULL &&
        !OSSL_PARAM_set_size_t(p, !c->enc && c->tag_in_len != 0 ? c->tag_in_len : GCM_TAG_LEN))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_CIPHER_PARAM_IV)) != NULL && !prov_gcm_iv_put(c, p))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_CIPHER_PARAM_UPDATED_IV)) != NULL &&
        !prov_gcm_iv_put(c, p))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_CIPHER_PARAM_AEAD_TAG)) != NULL &&
        !prov_gcm_tag_put(c, p))
        return 0;
    if (OSSL_PARAM_locate(params, OSSL_CIPHER_PARAM_AEAD_TLS1_AAD_PAD) != NULL ||
        OSSL_PARAM_locate(params, OSSL_CIPHER_PARAM_AEAD_TLS1_GET_IV_GEN) != NULL) {
        prov_err_raise(c->provctx, COFFER_ERR_INVALID_ARG, "TLS record mode: " GCM_NOT_SUPPORTED);
        return 0;
    }
    return 1;
}

/* What the provider refuses rather than silently ignores (unknown parameters are ignored). */
static const char *const prov_gcm_refused_params[] = {
    OSSL_CIPHER_PARAM_AEAD_TLS1_AAD,
    OSSL_CIPHER_PARAM_AEAD_TLS1_IV_FIXED,
    OSSL_CIPHER_PARAM_AEAD_TLS1_SET_IV_INV,
#ifdef OSSL_CIPHER_PARAM_AEAD_IV_RANDOM
    OSSL_CIPHER_PARAM_AEAD_IV_RANDOM,
#endif
};

static int prov_gcm_ctx_params_set(void *vctx, const OSSL_PARAM params[])
{
    prov_gcm_ctx *c = vctx;
    const OSSL_PARAM *p;
    size_t sz;

    if (params == NULL)
        return 1;
    for (size_t i = 0; i < sizeof(prov_gcm_refused_params) / sizeof(prov_gcm_refused_params[0]);
         i++) {
        if (OSSL_PARAM_locate_const(params, prov_gcm_refused_params[i]) != NULL) {
            prov_err_raise(c->provctx, COFFER_ERR_INVALID_ARG, "\"%s\": " GCM_NOT_SUPPORTED,
                           prov_gcm_refused_params[i]);
            return 0;
        }
    }
    if ((p = OSSL_PARAM_locate_const(params, OSSL_CIPHER_PARAM_AEAD_TAG)) != NULL) {
        if (c->enc) {
            prov_err_raise(c->provctx, COFFER_ERR_STATE,
                           "the expected tag is set only when decrypting");
            return 0;
        }
        if (p->data_type != OSSL_PARAM_OCTET_STRING || p->data == NULL || p->data_size == 0 ||
            p->data_size > GCM_TAG_LEN) {
            prov_err_raise(c->provctx, COFFER_ERR_INVALID_ARG,
                           "tag of %zu bytes: GCM tags are 1 to 16 bytes", p->data_size);
            return 0;
        }
        memcpy(c->tag_in, p->data, p->data_size);
        c->tag_in_len = p->data_size;
    }
    if ((p = OSSL_PARAM_locate_const(params, OSSL_CIPHER_PARAM_AEAD_IVLEN)) != NULL) {
        if (!OSSL_PARAM_get_size_t(p, &sz) || sz == 0 || sz > COFFER_MAX_PROV_IVLEN) {
            prov_err_raise(c->provctx, COFFER_ERR_INVALID_ARG,
                           "IV length: the coffer provider takes 1 to %d bytes (use 12)",
                           COFFER_MAX_PROV_IVLEN);
            return 0;
        }
        if (sz != c->ivlen) {
            c->ivlen = sz;
            c->iv_state = IV_NONE; /* an IV set before is not one of this length */
        }
    }
    return 1;
}

/* ---- operations -------------------------------------------------------------------------- */

static int prov_gcm_init(prov_gcm_ctx *c, const unsigned char *key, size_t keylen,
                         const unsigned char *iv, size_t ivlen, const OSSL_PARAM params[], int enc)
{
    int r;

    c->enc = enc;
    if (iv != NULL) {
        if (ivlen == 0 || ivlen > COFFER_MAX_PROV_IVLEN) {
            prov_err_raise(c->provctx, COFFER_ERR_INVALID_ARG,
                           "IV length %zu: the coffer provider takes 1 to %d bytes (use 12)", ivlen,
                           COFFER_MAX_PROV_IVLEN);
            return 0;
        }
        memcpy(c->iv, iv, ivlen);
        c->ivlen = ivlen;
        c->iv_state = IV_SET;
    } else if (c->iv_state != IV_SET) {
        c->iv_state = IV_NONE; /* the IV of a started or finished message is never used again */
    }
    if (key != NULL) {
        if (keylen != c->keylen) {
            prov_err_raise(c->provctx, COFFER_ERR_KEY_SIZE, "key of %zu bytes for AES-%zu-GCM",
                           keylen, c->keylen * 8);
            return 0;
        }
        /* A new key schedule only for a new key (constant-time comparison). */
        if (c->gcm == NULL || CRYPTO_memcmp(c->key, key, keylen) != 0) {
            engine_gcm_free(c->gcm);
            c->gcm = NULL;
            OPENSSL_cleanse(c->key, sizeof(c->key));
            if ((r = engine_gcm_new(&c->gcm, ENGINE_GCM_AUTO, key, keylen)) != 0) {
                prov_err_raise(c->provctx, r, "AES-%zu-GCM key schedule", c->keylen * 8);
                return 0;
            }
            memcpy(c->key, key, keylen);
        }
    }
    prov_aad_reset(&c->aad);
    c->msg_len = 0;
    c->tag_out_ready = 0;
    return prov_gcm_ctx_params_set(c, params);
}

static int prov_gcm_encrypt_init(void *vctx, const unsigned char *key, size_t keylen,
                                 const unsigned char *iv, size_t ivlen, const OSSL_PARAM params[])
{
    return prov_gcm_init(vctx, key, keylen, iv, ivlen, params, 1);
}

static int prov_gcm_decrypt_init(void *vctx, const unsigned char *key, size_t keylen,
                                 const unsigned char *iv, size_t ivlen, const OSSL_PARAM params[])
{
    return prov_gcm_init(vctx, key, keylen, iv, ivlen, params, 0);
}

/* 1 if the context has a key and an unused IV, else raises why not and returns 0. */
static int prov_gcm_ready(const prov_gcm_ctx *c)
{
    if (c->gcm == NULL) {
        prov_err_raise(c->provctx, COFFER_ERR_STATE, "no key is set");
        return 0;
    }
    if (c->iv_state == IV_NONE) {
        prov_err_raise(c->provctx, COFFER_ERR_STATE,
                       "no IV is set: the coffer provider does not generate IVs; pass one to "
                       "EVP_CipherInit");
        return 0;
    }
    if (c->iv_state == IV_DONE) {
        prov_err_raise(c->provctx, COFFER_ERR_STATE,
                       "the message is finished: initialise again with a new IV");
        return 0;
    }
    return 1;
}

/* Start the engine's message with the IV and all the AAD gathered (IV_SET -> IV_STARTED). */
static int prov_gcm_start(prov_gcm_ctx *c)
{
    int r = engine_gcm_start(c->gcm, c->enc, c->iv, c->ivlen, prov_aad_data(&c->aad), c->aad.len);

    prov_aad_reset(&c->aad);
    if (r != 0) {
        prov_err_raise(c->provctx, r, "starting an AES-GCM message");
        c->iv_state = IV_NONE;
        return 0;
    }
    c->iv_state = IV_STARTED;
    return 1;
}

/* out == NULL: in is AAD. Otherwise in is plaintext or ciphertext; out may equal in. */
static int prov_gcm_update(void *vctx, unsigned char *out, size_t *outl, size_t outsize,
                           const unsigned char *in, size_t inl)
{
    prov_gcm_ctx *c = vctx;
    int r;

    *outl = 0;
    if (inl == 0)
        return 1;
    if (in == NULL) {
        prov_err_raise(c->provctx, COFFER_ERR_INVALID_ARG, "%zu input bytes at NULL", inl);
        return 0;
    }
    if (!prov_gcm_ready(c))
        return 0;
    if (out == NULL) {
        if (c->iv_state != IV_SET) {
            prov_err_raise(c->provctx, COFFER_ERR_STATE,
                           "AAD after data: GCM takes all the AAD before the first data byte");
            return 0;
        }
        if ((r = prov_aad_append(&c->aad, in, inl)) != 0) {
            prov_err_raise(c->provctx, r, "AAD beyond the coffer provider's %u-byte limit",
                           COFFER_MAX_PROV_AAD);
            return 0;
        }
        *outl = inl;
        return 1;
    }
    if (outsize < inl) {
        prov_err_raise(c->provctx, COFFER_ERR_INVALID_ARG,
                       "output buffer of %zu bytes for %zu input bytes", outsize, inl);
        return 0;
    }
    if (c->iv_state == IV_SET && !prov_gcm_start(c))
        return 0;
    if (inl > GCM_MSG_MAX - c->msg_len) {
        prov_err_raise(c->provctx, COFFER_ERR_TOO_LARGE,
                       "a GCM message holds at most 2^36 - 32 bytes");
        return 0;
    }
    if ((r = engine_gcm_update(c->gcm, in, inl, out)) != 0) {
        prov_err_raise(c->provctx, r, "AES-GCM update");
        return 0;
    }
    c->msg_len += inl;
    *outl = inl;
    return 1;
}

/*
 * Encrypting: compute the tag (read it with EVP_CTRL_AEAD_GET_TAG). Decrypting: compare with the
 * tag set before, in constant time; on a mismatch this fails and everything the updates of this
 * message returned must be discarded. Without an expected tag a decryption's final fails and
 * leaves the message open, so that the tag can still be set and the final called again.
 */
static int prov_gcm_final(void *vctx, unsigned char *out, size_t *outl, size_t outsize)
{
    prov_gcm_ctx *c = vctx;
    int r;

    *outl = 0;
    if (!prov_gcm_ready(c))
        return 0;
    if (!c->enc && c->tag_in_len == 0) {
        prov_err_raise(c->provctx, COFFER_ERR_STATE,
                       "no expected tag: set it (EVP_CTRL_AEAD_SET_TAG) before the final");
        return 0;
    }
    if (c->iv_state == IV_SET && !prov_gcm_start(c))
        return 0;
    c->iv_state = IV_DONE;
    if (c->enc) {
        if ((r = engine_gcm_finish_tag(c->gcm, c->tag_out, GCM_TAG_LEN)) != 0) {
            prov_err_raise(c->provctx, r, "AES-GCM tag");
            return 0;
        }
        c->tag_out_ready = 1;
        return 1;
    }
    if ((r = engine_gcm_finish_verify(c->gcm, c->tag_in, c->tag_in_len)) != 0) {
        prov_err_raise(c->provctx, r, "AES-GCM tag mismatch");
        return 0;
    }
    return 1;
}

/* EVP_Cipher: an update, or the final when in is NULL. */
static int prov_gcm_cipher(void *vctx, unsigned char *out, size_t *outl, size_t outsize,
                           const unsigned char *in, size_t inl)
{
    if (in == NULL)
        return prov_gcm_final(vctx, out, outl, outsize);
    return prov_gcm_update(vctx, out, outl, outsize, in, inl);
}

/* ---- dispatch ---------------------------------------------------------------------------- */

#define PROV_GCM_DISPATCH(bits)                                                                    \
    static void *prov_gcm##bits##_ctx_new(void *provctx)                                           \
    {                                                                                              \
        return prov_gcm_ctx_new(provctx, (bits) / 8);                                              \
    }                                                                                              \
    static int prov_gcm##bits##_params_get(OSSL_PARAM params[])                                    \
    {                                                                                              \
        return prov_gcm_params_get(params, (bits) / 8);                                            \
    }                                                                                              \
    static const OSSL_DISPATCH prov_gcm##bits##_functions[] = {                                    \
        {OSSL_FUNC_CIPHER_NEWCTX, (void (*)(void))prov_gcm##bits##_ctx_new},                       \
        {OSSL_FUNC_CIPHER_FREECTX, (void (*)(void))prov_gcm_ctx_free},                             \
        {OSSL_FUNC_CIPHER_DUPCTX, (void (*)(void))prov_gcm_ctx_dup},                               \
        {OSSL_FUNC_CIPHER_ENCRYPT_INIT, (void (*)(void))prov_gcm_encrypt_init},                    \
        {OSSL_FUNC_CIPHER_DECRYPT_INIT, (void (*)(void))prov_gcm_decrypt_init},                    \
        {OSSL_FUNC_CIPHER_UPDATE, (void (*)(void))prov_gcm_update},                                \
        {OSSL_FUNC_CIPHER_FINAL, (void (*)(void))prov_gcm_final},                                  \
        {OSSL_FUNC_CIPHER_CIPHER, (void (*)(void))prov_gcm_cipher},                                \
        {OSSL_FUNC_CIPHER_GET_PARAMS, (void (*)(void))prov_gcm##bits##_params_get},                \
        {OSSL_FUNC_CIPHER_GETTABLE_PARAMS, (void (*)(void))prov_gcm_params_gettable},              \
        {OSSL_FUNC_CIPHER_GET_CTX_PARAMS, (void (*)(void))prov_gcm_ctx_params_get},                \
        {OSSL_FUNC_CIPHER_SET_CTX_PARAMS, (void (*)(void))prov_gcm_ctx_params_set},                \
        {OSSL_FUNC_CIPHER_GETTABLE_CTX_PARAMS, (void (*)(void))prov_gcm_ctx_gettable},             \
        {OSSL_FUNC_CIPHER_SETTABLE_CTX_PARAMS, (void (*)(void))prov_gcm_ctx_settable},             \
        {0, NULL},                                                                                 \
    };

PROV_GCM_DISPATCH(128)
PROV_GCM_DISPATCH(192)
PROV_GCM_DISPATCH(256)

const OSSL_ALGORITHM prov_gcm_algorithms[] = {
    {"AES-128-GCM:id-aes128-GCM:2.16.840.1.101.3.4.1.6", "provider=coffer", prov_gcm128_functions,
     "AES-128-GCM on Intel ipsec-mb (coffer)"},
    {"AES-192-GCM:id-aes192-GCM:2.16.840.1.101.3.4.1.26", "provider=coffer", prov_gcm192_functions,
     "AES-192-GCM on Intel ipsec-mb (coffer)"},
    {"AES-256-GCM:id-aes256-GCM:2.16.840.1.101.3.4.1.46", "provider=coffer", prov_gcm256_functions,
     "AES-256-GCM on Intel ipsec-mb (coffer)"},
    {NULL, NULL, NULL, NULL},
};
