/* SPDX-License-Identifier: Apache-2.0 */
/* Wrapping and unwrapping data keys on an HSM thread, with the mechanism each token really has. */
#include "hsm_kek.h"

#include "coffer_error.h"
#include "engine_secmem.h"
#include "hsm_mech.h"
#include "hsm_request.h"
#include "hsm_rv.h"

#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* In engine_secmem: it carries the data key in or out. */
struct kek_job {
    char label[HSM_KEY_LABEL_MAX + 1];
    uint8_t aad[HSM_AAD_MAX];
    size_t aadlen;
    hsm_wrapped w;                /* wrap: the result; unwrap: the blob */
    uint8_t key[HSM_WRAPPED_LEN]; /* room for a module that wants the input length */
};

size_t hsm_kek_aad(const char *label, uint8_t *out, size_t cap)
{
    size_t p = sizeof(HSM_AAD_PREFIX) - 1, n = strlen(label);
    if (p + n > cap)
        return 0;
    memcpy(out, HSM_AAD_PREFIX, p);
    memcpy(out + p, label, n);
    return p + n;
}

/*
 * Jobs carry data keys, so they live in engine_secmem; a locked page per call costs five system
 * calls, so wiped jobs are kept for reuse (at most KEK_POOL_MAX of them, process-wide).
 */
#define KEK_POOL_MAX 32
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static struct kek_job *pool[KEK_POOL_MAX];
static unsigned pool_n;

static void kek_job_free(void *p)
{
    if (p == NULL)
        return;
    engine_secmem_wipe(p, sizeof(struct kek_job));
    pthread_mutex_lock(&pool_mu);
    if (pool_n < KEK_POOL_MAX) {
        pool[pool_n++] = p;
        p = NULL;
    }
    pthread_mutex_unlock(&pool_mu);
    engine_secmem_free(p);
}

static struct kek_job *kek_job_new(const char *label)
{
    struct kek_job *j = NULL;
    pthread_mutex_lock(&pool_mu);
    if (pool_n > 0)
        j = pool[--pool_n];
    pthread_mutex_unlock(&pool_mu);
    if (j == NULL && (j = engine_secmem_alloc(sizeof(*j))) == NULL)
        return NULL;
    snprintf(j->label, sizeof(j->label), "%s", label);
    j->aadlen = hsm_kek_aad(j->label, j->aad, sizeof(j->aad));
    return j;
}

/* ---- the mechanisms, on an HSM thread ---- */

static int wrap_gcm(hsm_token *t, hsm_session *s, struct kek_job *j, CK_OBJECT_HANDLE kek,
                    int token_iv, hsm_status *st)
{
    CK_FUNCTION_LIST *f = hsm_token_module(t);
    CK_GCM_PARAMS gp;
    CK_MECHANISM m;
    CK_ULONG outlen = HSM_WRAPPED_LEN;
    CK_RV rv;

    if (token_iv)
        memset(j->w.iv, 0, HSM_IV_LEN);
    else if (RAND_bytes(j->w.iv, HSM_IV_LEN) != 1)
        return hsm_status_set(st, COFFER_ERR_INTERNAL, "wrap", HSM_STATUS_NO_RV,
                              "OpenSSL's random generator failed");
    hsm_mech_gcm_params(j->w.iv, j->aad, j->aadlen, &gp, &m);
    rv = hsm_token_rv(s, f->C_EncryptInit(s->h, &m, kek));
    if (rv == CKR_OK)
        rv = hsm_token_rv(s, f->C_Encrypt(s->h, j->key, HSM_DATA_KEY_LEN, j->w.wrapped, &outlen));
    if (rv != CKR_OK)
        return hsm_status_set(st, COFFER_ERR_HSM_CALL, "wrap", rv,
                              "wrapping a data key with key '%s' on token '%s' (C_Encrypt, "
                              "CKM_AES_GCM, %s IV) failed: %s",
                              j->label, hsm_token_label(t), token_iv ? "token-generated" : "our",
                              hsm_rv_name(rv));
    if (outlen != HSM_WRAPPED_LEN)
        return hsm_status_set(st, COFFER_ERR_HSM_CALL, "wrap", HSM_STATUS_NO_RV,
                              "token '%s' returned %lu bytes for a wrapped key, not %d",
                              hsm_token_label(t), (unsigned long)outlen, HSM_WRAPPED_LEN);
    if (token_iv && hsm_mech_all_zero(gp.pIv, HSM_IV_LEN))
        return hsm_status_set(st, COFFER_ERR_HSM_CALL, "wrap", HSM_STATUS_NO_RV,
                              "token '%s' returned no GCM IV (the IV it was to generate is still "
                              "all zero); use --hsm-mechanism gcm if it accepts ours",
                              hsm_token_label(t));
    j->w.iv_len = HSM_IV_LEN;
    j->w.wrapped_len = HSM_WRAPPED_LEN;
    return 0;
}

/*
 * The data key on the token for one C_WrapKey or C_UnwrapKey: an AES session object (never a
 * token object) that coffer may read back. Modules only read a template, so these are shared.
 */
static CK_BBOOL sk_yes = CK_TRUE, sk_no = CK_FALSE;
static CK_OBJECT_CLASS sk_class = CKO_SECRET_KEY;
static CK_KEY_TYPE sk_type = CKK_AES;
#define SESSION_KEY_TEMPLATE                                                                       \
    {CKA_CLASS, &sk_class, sizeof(sk_class)}, {CKA_KEY_TYPE, &sk_type, sizeof(sk_type)},           \
        {CKA_TOKEN, &sk_no, sizeof(sk_no)}, {CKA_PRIVATE, &sk_yes, sizeof(sk_yes)},                \
        {CKA_SENSITIVE, &sk_no, sizeof(sk_no)},                                                    \
    {                                                                                              \
        CKA_EXTRACTABLE, &sk_yes, sizeof(sk_yes)                                                   \
    }

/* A session object holding the data key, for C_WrapKey. */
static CK_RV data_key_object(CK_FUNCTION_LIST *f, hsm_session *s, uint8_t *key,
                             CK_OBJECT_HANDLE *obj)
{
    CK_ATTRIBUTE tmpl[] = {SESSION_KEY_TEMPLATE, {CKA_VALUE, key, HSM_DATA_KEY_LEN}};
    return hsm_token_rv(s, f->C_CreateObject(s->h, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), obj));
}

static int wrap_kwp(hsm_token *t, hsm_session *s, struct kek_job *j, CK_OBJECT_HANDLE kek,
                    unsigned long ckm, hsm_status *st)
{
    CK_FUNCTION_LIST *f = hsm_token_module(t);
    CK_MECHANISM m = {ckm, NULL, 0};
    CK_OBJECT_HANDLE obj = CK_INVALID_HANDLE;
    CK_ULONG outlen = HSM_WRAPPED_LEN;
    CK_RV rv = data_key_object(f, s, j->key, &obj);

    if (rv == CKR_OK) {
        rv = hsm_token_rv(s, f->C_WrapKey(s->h, &m, kek, obj, j->w.wrapped, &outlen));
        (void)f->C_DestroyObject(s->h, obj);
    }
    if (rv != CKR_OK)
        return hsm_status_set(st, COFFER_ERR_HSM_CALL, "wrap", rv,
                              "wrapping a data key with key '%s' on token '%s' (C_WrapKey, %s) "
                              "failed: %s",
                              j->label, hsm_token_label(t),
                              hsm_mech_metadata_name(HSM_MECH_KWP, ckm), hsm_rv_name(rv));
    if (outlen != HSM_KWP_LEN)
        return hsm_status_set(st, COFFER_ERR_HSM_CALL, "wrap", HSM_STATUS_NO_RV,
                              "token '%s' returned %lu bytes for an RFC 5649 wrapped key, not %d",
                              hsm_token_label(t), (unsigned long)outlen, HSM_KWP_LEN);
    j->w.kwp_ckm = ckm;
    j->w.iv_len = 0;
    j->w.wrapped_len = HSM_KWP_LEN;
    return 0;
}

static int wrap_etm(hsm_token *t, hsm_session *s, struct kek_job *j, CK_OBJECT_HANDLE kek,
                    hsm_status *st)
{
    CK_FUNCTION_LIST *f = hsm_token_module(t);
    CK_OBJECT_HANDLE mk;
    CK_MECHANISM m = {CKM_AES_CBC_PAD, j->w.iv, HSM_IV_MAX};
    CK_MECHANISM hm = {CKM_SHA256_HMAC, NULL, 0};
    CK_ULONG outlen = HSM_CBC_LEN, maclen = HSM_MAC_LEN;
    uint8_t in[HSM_ETM_INPUT_MAX];
    size_t inlen;
    CK_RV rv;
    int r;

    if (hsm_kek_mac_label(j->label, j->w.mac_key_label, sizeof(j->w.mac_key_label)) != 0)
        return hsm_status_set(st, COFFER_ERR_CONFIG, "wrap", HSM_STATUS_NO_RV,
                              "key label '%s' is too long for encrypt-then-MAC (its HMAC key is "
                              "labelled '<label>-hmac', at most %d bytes)",
                              j->label, HSM_KEY_LABEL_MAX);
    if ((r = hsm_token_secret_find(t, s, j->w.mac_key_label, HSM_FIND_MAC, &mk, st)) < 0)
        return r;
    if (RAND_bytes(j->w.iv, HSM_IV_MAX) != 1)
        return hsm_status_set(st, COFFER_ERR_INTERNAL, "wrap", HSM_STATUS_NO_RV,
                              "OpenSSL's random generator failed");
    rv = hsm_token_rv(s, f->C_EncryptInit(s->h, &m, kek));
    if (rv == CKR_OK)
        rv = hsm_token_rv(s, f->C_Encrypt(s->h, j->key, HSM_DATA_KEY_LEN, j->w.wrapped, &outlen));
    if (rv != CKR_OK)
        return hsm_status_set(st, COFFER_ERR_HSM_CALL, "wrap", rv,
                              "wrapping a data key with key '%s' on token '%s' (C_Encrypt, "
                              "CKM_AES_CBC_PAD) failed: %s",
                              j->label, hsm_token_label(t), hsm_rv_name(rv));
    if (outlen != HSM_CBC_LEN)
        return hsm_status_set(st, COFFER_ERR_HSM_CALL, "wrap", HSM_STATUS_NO_RV,
                              "token '%s' returned %lu bytes of CBC ciphertext, not %d",
                              hsm_token_label(t), (unsigned long)outlen, HSM_CBC_LEN);
    inlen = hsm_mech_etm_input(j->label, j->w.iv, j->w.wrapped, in, sizeof(in));
    rv = hsm_token_rv(s, f->C_SignInit(s->h, &hm, mk));
    if (rv == CKR_OK)
        rv = hsm_token_rv(s, f->C_Sign(s->h, in, inlen, j->w.mac, &maclen));
    if (rv != CKR_OK)
        return hsm_status_set(st, COFFER_ERR_HSM_CALL, "wrap", rv,
                              "authenticating a wrapped data key with HMAC key '%s' on token '%s' "
                              "(C_Sign, CKM_SHA256_HMAC) failed: %s",
                              j->w.mac_key_label, hsm_token_label(t), hsm_rv_name(rv));
    if (maclen != HSM_MAC_LEN)
        return hsm_status_set(st, COFFER_ERR_HSM_CALL, "wrap", HSM_STATUS_NO_RV,
                              "token '%s' returned a %lu-byte HMAC, not %d", hsm_token_label(t),
                              (unsigned long)maclen, HSM_MAC_LEN);
    j->w.iv_len = HSM_IV_MAX;
    j->w.wrapped_len = HSM_CBC_LEN;
    return 0;
}

static int op_wrap(hsm_token *t, hsm_session *s, void *arg, hsm_status *st)
{
    struct kek_job *j = arg;
    CK_OBJECT_HANDLE kek;
    hsm_negotiation neg;
    int r;

    if ((r = hsm_token_key_find(t, s, j->label, &kek, st)) < 0)
        return r;
    if ((r = hsm_mech_for_wrap(t, s, j->label, kek, &neg, st)) < 0)
        return r;
    j->w.mech = neg.mech;
    switch (neg.mech) {
    case HSM_MECH_GCM:
    case HSM_MECH_GCM_TOKEN_IV:
        return wrap_gcm(t, s, j, kek, neg.mech == HSM_MECH_GCM_TOKEN_IV, st);
    case HSM_MECH_KWP:
        return wrap_kwp(t, s, j, kek, neg.kwp_ckm, st);
    default:
        return wrap_etm(t, s, j, kek, st);
    }
}

/*
 * SoftHSM2 reports a GCM tag mismatch as CKR_GENERAL_ERROR, which is also what it says when its
 * files vanished. Ask the token about the key: if it still answers, the blob was refused.
 */
static int token_still_answers(hsm_token *t, hsm_session *s, CK_OBJECT_HANDLE kek)
{
    CK_FUNCTION_LIST *f = hsm_token_module(t);
    CK_KEY_TYPE kt = 0;
    CK_ATTRIBUTE a = {CKA_KEY_TYPE, &kt, sizeof(kt)};
    CK_SESSION_INFO si;
    return f->C_GetSessionInfo(s->h, &si) == CKR_OK &&
           f->C_GetAttributeValue(s->h, kek, &a, 1) == CKR_OK && kt == CKK_AES;
}

static int refused(CK_RV rv)
{
    return rv == CKR_GENERAL_ERROR || rv == CKR_ENCRYPTED_DATA_INVALID ||
           rv == CKR_FUNCTION_FAILED || rv == CKR_WRAPPED_KEY_INVALID ||
           rv == CKR_ENCRYPTED_DATA_LEN_RANGE || rv == CKR_WRAPPED_KEY_LEN_RANGE ||
           rv == CKR_SIGNATURE_INVALID || rv == CKR_SIGNATURE_LEN_RANGE;
}

static int wrong_key(hsm_token *t, struct kek_job *j, CK_RV rv, hsm_status *st)
{
    engine_secmem_wipe(j->key, sizeof(j->key));
    return hsm_status_set(
        st, COFFER_ERR_WRONG_KEY, "unwrap", rv,
        "token '%s' refused to unwrap the data key with key '%s' (%s, %s): the "
        "%s does not match, so the metadata's iv, wrappedKey%s or keyLabel was "
        "altered, or the key now labelled '%s' is not the one that wrapped this "
        "backup",
        hsm_token_label(t), j->label, hsm_mech_metadata_name(hsm_wrapped_mech(&j->w), j->w.kwp_ckm),
        hsm_rv_name(rv),
        hsm_wrapped_mech(&j->w) == HSM_MECH_CBC_HMAC
            ? "HMAC"
            : (hsm_wrapped_mech(&j->w) == HSM_MECH_KWP ? "integrity check" : "tag"),
        hsm_wrapped_mech(&j->w) == HSM_MECH_CBC_HMAC ? ", mac" : "", j->label);
}

static int unwrap_failed(hsm_token *t, struct kek_job *j, const char *call, CK_RV rv,
                         hsm_status *st)
{
    engine_secmem_wipe(j->key, sizeof(j->key));
    return hsm_status_set(st, COFFER_ERR_HSM_CALL, "unwrap", rv,
                          "unwrapping a data key with key '%s' on token '%s' (%s, %s) failed: %s",
                          j->label, hsm_token_label(t), call,
                          hsm_mech_metadata_name(hsm_wrapped_mech(&j->w), j->w.kwp_ckm),
                          hsm_rv_name(rv));
}

static int unwrap_gcm(hsm_token *t, hsm_session *s, struct kek_job *j, CK_OBJECT_HANDLE kek,
                      CK_ULONG *outlen, hsm_status *st)
{
    CK_FUNCTION_LIST *f = hsm_token_module(t);
    CK_GCM_PARAMS gp;
    CK_MECHANISM m;
    CK_RV rv;

    hsm_mech_gcm_params(j->w.iv, j->aad, j->aadlen, &gp, &m);
    rv = hsm_token_rv(s, f->C_DecryptInit(s->h, &m, kek));
    if (rv == CKR_OK) {
        rv = f->C_Decrypt(s->h, j->w.wrapped, HSM_WRAPPED_LEN, j->key, outlen);
        if (refused(rv) && token_still_answers(t, s, kek))
            return wrong_key(t, j, rv, st);
        hsm_token_rv(s, rv);
    }
    return rv == CKR_OK ? 0 : unwrap_failed(t, j, "C_Decrypt", rv, st);
}

static int unwrap_kwp(hsm_token *t, hsm_session *s, struct kek_job *j, CK_OBJECT_HANDLE kek,
                      CK_ULONG *outlen, hsm_status *st)
{
    CK_FUNCTION_LIST *f = hsm_token_module(t);
    CK_MECHANISM m = {j->w.kwp_ckm, NULL, 0};
    CK_ATTRIBUTE tmpl[] = {SESSION_KEY_TEMPLATE};
    CK_OBJECT_HANDLE obj = CK_INVALID_HANDLE;
    CK_ATTRIBUTE val = {CKA_VALUE, j->key, sizeof(j->key)};
    CK_RV rv;

    rv = f->C_UnwrapKey(s->h, &m, kek, j->w.wrapped, HSM_KWP_LEN, tmpl,
                        sizeof(tmpl) / sizeof(tmpl[0]), &obj);
    if (refused(rv) && token_still_answers(t, s, kek))
        return wrong_key(t, j, rv, st);
    if (hsm_token_rv(s, rv) != CKR_OK)
        return unwrap_failed(t, j, "C_UnwrapKey", rv, st);
    rv = hsm_token_rv(s, f->C_GetAttributeValue(s->h, obj, &val, 1));
    (void)f->C_DestroyObject(s->h, obj);
    if (rv != CKR_OK)
        return unwrap_failed(t, j, "C_GetAttributeValue of the unwrapped session key", rv, st);
    *outlen = val.ulValueLen;
    return 0;
}

static int unwrap_etm(hsm_token *t, hsm_session *s, struct kek_job *j, CK_OBJECT_HANDLE kek,
                      CK_ULONG *outlen, hsm_status *st)
{
    CK_FUNCTION_LIST *f = hsm_token_module(t);
    CK_OBJECT_HANDLE mk;
    CK_MECHANISM m = {CKM_AES_CBC_PAD, j->w.iv, HSM_IV_MAX};
    CK_MECHANISM hm = {CKM_SHA256_HMAC, NULL, 0};
    uint8_t in[HSM_ETM_INPUT_MAX];
    size_t inlen;
    CK_RV rv;
    int r;

    if ((r = hsm_token_secret_find(t, s, j->w.mac_key_label, HSM_FIND_MAC, &mk, st)) < 0)
        return r;
    /* Verified by the token (which compares in constant time) before anything is decrypted. */
    inlen = hsm_mech_etm_input(j->label, j->w.iv, j->w.wrapped, in, sizeof(in));
    rv = hsm_token_rv(s, f->C_VerifyInit(s->h, &hm, mk));
    if (rv == CKR_OK) {
        rv = f->C_Verify(s->h, in, inlen, j->w.mac, HSM_MAC_LEN);
        if (rv == CKR_SIGNATURE_INVALID || rv == CKR_SIGNATURE_LEN_RANGE)
            return wrong_key(t, j, rv, st);
        hsm_token_rv(s, rv);
    }
    if (rv != CKR_OK)
        return unwrap_failed(t, j, "C_Verify", rv, st);
    rv = hsm_token_rv(s, f->C_DecryptInit(s->h, &m, kek));
    if (rv == CKR_OK)
        rv = hsm_token_rv(s, f->C_Decrypt(s->h, j->w.wrapped, HSM_CBC_LEN, j->key, outlen));
    return rv == CKR_OK ? 0 : unwrap_failed(t, j, "C_Decrypt", rv, st);
}

static int op_unwrap(hsm_token *t, hsm_session *s, void *arg, hsm_status *st)
{
    struct kek_job *j = arg;
    CK_OBJECT_HANDLE kek;
    CK_ULONG outlen = sizeof(j->key);
    int mech = hsm_wrapped_mech(&j->w), r;

    if ((r = hsm_token_key_find(t, s, j->label, &kek, st)) < 0)
        return r;
    if ((r = hsm_mech_offered(t, s, j->label, &j->w, st)) < 0)
        return r;
    if (mech == HSM_MECH_GCM || mech == HSM_MECH_GCM_TOKEN_IV)
        r = unwrap_gcm(t, s, j, kek, &outlen, st);
    else if (mech == HSM_MECH_KWP)
        r = unwrap_kwp(t, s, j, kek, &outlen, st);
    else
        r = unwrap_etm(t, s, j, kek, &outlen, st);
    if (r < 0)
        return r;
    if (outlen != HSM_DATA_KEY_LEN) {
        engine_secmem_wipe(j->key, sizeof(j->key));
        return hsm_status_set(st, COFFER_ERR_HSM_CALL, "unwrap", HSM_STATUS_NO_RV,
                              "token '%s' returned %lu bytes for a data key, not %d",
                              hsm_token_label(t), (unsigned long)outlen, HSM_DATA_KEY_LEN);
    }
    return 0;
}

int hsm_kek_wrap(hsm_client *c, const engine_key *dk, hsm_wrapped *out, hsm_status *st)
{
    hsm_status local;
    const char *label = hsm_client_key_label(c);
    struct kek_job *j;
    char what[HSM_KEY_LABEL_MAX + 32];
    int r;

    if (st == NULL)
        st = &local;
    hsm_status_clear(st);
    memset(out, 0, sizeof(*out));
    if (label == NULL)
        return hsm_status_set(st, COFFER_ERR_CONFIG, "config", HSM_STATUS_NO_RV,
                              "no key label configured for wrapping new data keys");
    if (dk->len != HSM_DATA_KEY_LEN)
        return hsm_status_set(st, COFFER_ERR_KEY_SIZE, "wrap", HSM_STATUS_NO_RV,
                              "a data key must be %d bytes, not %zu", HSM_DATA_KEY_LEN, dk->len);
    if ((j = kek_job_new(label)) == NULL)
        return hsm_status_set(st, COFFER_ERR_NOMEM, "wrap", HSM_STATUS_NO_RV, "out of memory");
    memset(&j->w, 0, sizeof(j->w));
    memcpy(j->key, dk->bytes, HSM_DATA_KEY_LEN);
    snprintf(what, sizeof(what), "wrap with key '%s'", label);
    r = hsm_client_call(c, what, op_wrap, j, kek_job_free, st);
    if (r == COFFER_ERR_HSM_TIMEOUT)
        return r; /* the HSM thread frees j */
    if (r == 0) {
        *out = j->w;
        snprintf(out->key_label, sizeof(out->key_label), "%s", j->label);
        if (hsm_wrapped_mech(out) == HSM_MECH_GCM || out->mech == HSM_MECH_GCM_TOKEN_IV) {
            /* both GCM kinds unwrap alike: the form of a GCM blob from before negotiation */
            out->mech = HSM_MECH_AUTO;
            out->iv_len = 0;
            out->wrapped_len = 0;
        }
    }
    kek_job_free(j);
    return r;
}

int hsm_kek_unwrap(hsm_client *c, const hsm_wrapped *w, engine_key **out, hsm_status *st)
{
    hsm_status local;
    struct kek_job *j;
    char what[HSM_KEY_LABEL_MAX + 32];
    int r;

    if (st == NULL)
        st = &local;
    hsm_status_clear(st);
    *out = NULL;
    if ((r = hsm_token_label_check("key", w->key_label, HSM_KEY_LABEL_MAX, st)) < 0)
        return r;
    if (hsm_wrapped_mech(w) == HSM_MECH_CBC_HMAC &&
        (r = hsm_token_label_check("HMAC key", w->mac_key_label, HSM_KEY_LABEL_MAX, st)) < 0)
        return r;
    if (hsm_wrapped_mech(w) >= HSM_MECH_COUNT)
        return hsm_status_set(st, COFFER_ERR_METADATA, "unwrap", HSM_STATUS_NO_RV,
                              "unknown wrapping mechanism %d", w->mech);
    if ((j = kek_job_new(w->key_label)) == NULL)
        return hsm_status_set(st, COFFER_ERR_NOMEM, "unwrap", HSM_STATUS_NO_RV, "out of memory");
    j->w = *w;
    snprintf(what, sizeof(what), "unwrap with key '%s'", w->key_label);
    r = hsm_client_call(c, what, op_unwrap, j, kek_job_free, st);
    if (r == COFFER_ERR_HSM_TIMEOUT)
        return r;
    if (r == 0 && (r = engine_key_from_bytes(out, j->key, HSM_DATA_KEY_LEN)) < 0)
        hsm_status_set(st, r, "unwrap", HSM_STATUS_NO_RV, "out of memory");
    kek_job_free(j);
    return r;
}

/* ---- asynchronous forms ---- */

struct kek_async {
    hsm_kek_wrap_cb wrap;
    hsm_kek_unwrap_cb unwrap;
    void *ctx;
};

/* Copy the job's result into the caller's form (both GCM kinds look alike, as in hsm_kek_wrap). */
static void wrapped_result(const struct kek_job *j, hsm_wrapped *out)
{
    *out = j->w;
    snprintf(out->key_label, sizeof(out->key_label), "%s", j->label);
    if (hsm_wrapped_mech(out) == HSM_MECH_GCM || out->mech == HSM_MECH_GCM_TOKEN_IV) {
        out->mech = HSM_MECH_AUTO;
        out->iv_len = 0;
        out->wrapped_len = 0;
    }
}

static void wrap_done(void *ctx, int r, const hsm_status *st, void *payload)
{
    struct kek_async *a = ctx;
    hsm_wrapped w;
    memset(&w, 0, sizeof(w));
    if (r == 0 && payload != NULL)
        wrapped_result(payload, &w);
    a->wrap(a->ctx, r, st, r == 0 && payload != NULL ? &w : NULL);
    engine_secmem_wipe(&w, sizeof(w));
    free(a);
}

int hsm_kek_wrap_submit(hsm_client *c, const engine_key *dk, hsm_kek_wrap_cb cb, void *ctx)
{
    const char *label = hsm_client_key_label(c);
    struct kek_async *a;
    struct kek_job *j;
    char what[HSM_KEY_LABEL_MAX + 32];
    int r;

    if (label == NULL)
        return COFFER_ERR_CONFIG;
    if (dk->len != HSM_DATA_KEY_LEN)
        return COFFER_ERR_KEY_SIZE;
    if ((a = calloc(1, sizeof(*a))) == NULL)
        return COFFER_ERR_NOMEM;
    if ((j = kek_job_new(label)) == NULL) {
        free(a);
        return COFFER_ERR_NOMEM;
    }
    a->wrap = cb;
    a->ctx = ctx;
    memset(&j->w, 0, sizeof(j->w));
    memcpy(j->key, dk->bytes, HSM_DATA_KEY_LEN);
    snprintf(what, sizeof(what), "wrap with key '%s'", label);
    if ((r = hsm_client_submit(c, what, op_wrap, j, kek_job_free, wrap_done, a)) != 0) {
        kek_job_free(j);
        free(a);
    }
    return r;
}

static void unwrap_done(void *ctx, int r, const hsm_status *st, void *payload)
{
    struct kek_async *a = ctx;
    struct kek_job *j = payload;
    engine_key *dk = NULL;
    hsm_status local = *st;
    if (r == 0 && j != NULL && (r = engine_key_from_bytes(&dk, j->key, HSM_DATA_KEY_LEN)) < 0)
        hsm_status_set(&local, r, "unwrap", HSM_STATUS_NO_RV, "out of memory");
    a->unwrap(a->ctx, r, &local, dk);
    free(a);
}

int hsm_kek_unwrap_submit(hsm_client *c, const hsm_wrapped *w, hsm_kek_unwrap_cb cb, void *ctx)
{
    hsm_status st;
    struct kek_async *a;
    struct kek_job *j;
    char what[HSM_KEY_LABEL_MAX + 32];
    int r;

    if ((r = hsm_token_label_check("key", w->key_label, HSM_KEY_LABEL_MAX, &st)) < 0)
        return r;
    if (hsm_wrapped_mech(w) == HSM_MECH_CBC_HMAC &&
        (r = hsm_token_label_check("HMAC key", w->mac_key_label, HSM_KEY_LABEL_MAX, &st)) < 0)
        return r;
    if (hsm_wrapped_mech(w) >= HSM_MECH_COUNT)
        return COFFER_ERR_METADATA;
    if ((a = calloc(1, sizeof(*a))) == NULL)
        return COFFER_ERR_NOMEM;
    if ((j = kek_job_new(w->key_label)) == NULL) {
        free(a);
        return COFFER_ERR_NOMEM;
    }
    a->unwrap = cb;
    a->ctx = ctx;
    j->w = *w;
    snprintf(what, sizeof(what), "unwrap with key '%s'", w->key_label);
    if ((r = hsm_client_submit(c, what, op_unwrap, j, kek_job_free, unwrap_done, a)) != 0) {
        kek_job_free(j);
        free(a);
    }
    return r;
}
