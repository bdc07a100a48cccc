/* SPDX-License-Identifier: Apache-2.0 */
/* Wrapping and unwrapping data keys with C_Encrypt/C_Decrypt and CKM_AES_GCM on an HSM thread. */
#include "hsm_kek.h"

#include "coffer_error.h"
#include "engine_secmem.h"
#include "hsm_request.h"
#include "hsm_rv.h"

#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* In engine_secmem: it carries the data key in or out. */
struct kek_job {
    char label[HSM_KEY_LABEL_MAX + 1];
    uint8_t iv[HSM_IV_LEN];
    uint8_t aad[HSM_AAD_MAX];
    size_t aadlen;
    uint8_t key[HSM_WRAPPED_LEN]; /* room for a module that wants the input length */
    uint8_t wrapped[HSM_WRAPPED_LEN];
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

static void gcm_params(struct kek_job *j, CK_GCM_PARAMS *gp, CK_MECHANISM *m)
{
    memset(gp, 0, sizeof(*gp));
    gp->pIv = j->iv;
    gp->ulIvLen = HSM_IV_LEN;
    gp->ulIvBits = HSM_IV_LEN * 8;
    gp->pAAD = j->aad;
    gp->ulAADLen = j->aadlen;
    gp->ulTagBits = HSM_TAG_LEN * 8;
    m->mechanism = CKM_AES_GCM;
    m->pParameter = gp;
    m->ulParameterLen = sizeof(*gp);
}

static int op_wrap(hsm_token *t, hsm_session *s, void *arg, hsm_status *st)
{
    struct kek_job *j = arg;
    CK_FUNCTION_LIST *f = hsm_token_module(t);
    CK_OBJECT_HANDLE kek;
    CK_GCM_PARAMS gp;
    CK_MECHANISM m;
    CK_ULONG outlen = HSM_WRAPPED_LEN;
    CK_RV rv;
    int r;

    if ((r = hsm_token_key_find(t, s, j->label, &kek, st)) < 0)
        return r;
    gcm_params(j, &gp, &m);
    rv = hsm_token_rv(s, f->C_EncryptInit(s->h, &m, kek));
    if (rv == CKR_OK)
        rv = hsm_token_rv(s, f->C_Encrypt(s->h, j->key, HSM_DATA_KEY_LEN, j->wrapped, &outlen));
    if (rv != CKR_OK)
        return hsm_status_set(st, COFFER_ERR_HSM_CALL, "wrap", rv,
                              "wrapping a data key with key '%s' on token '%s' (C_Encrypt, "
                              "CKM_AES_GCM) failed: %s",
                              j->label, hsm_token_label(t), hsm_rv_name(rv));
    if (outlen != HSM_WRAPPED_LEN)
        return hsm_status_set(st, COFFER_ERR_HSM_CALL, "wrap", HSM_STATUS_NO_RV,
                              "token '%s' returned %lu bytes for a wrapped key, not %d",
                              hsm_token_label(t), (unsigned long)outlen, HSM_WRAPPED_LEN);
    return 0;
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

static int op_unwrap(hsm_token *t, hsm_session *s, void *arg, hsm_status *st)
{
    struct kek_job *j = arg;
    CK_FUNCTION_LIST *f = hsm_token_module(t);
    CK_OBJECT_HANDLE kek;
    CK_GCM_PARAMS gp;
    CK_MECHANISM m;
    CK_ULONG outlen = sizeof(j->key);
    CK_RV rv;
    int r;

    if ((r = hsm_token_key_find(t, s, j->label, &kek, st)) < 0)
        return r;
    gcm_params(j, &gp, &m);
    rv = hsm_token_rv(s, f->C_DecryptInit(s->h, &m, kek));
    if (rv == CKR_OK) {
        rv = f->C_Decrypt(s->h, j->wrapped, HSM_WRAPPED_LEN, j->key, &outlen);
        if ((rv == CKR_GENERAL_ERROR || rv == CKR_ENCRYPTED_DATA_INVALID ||
             rv == CKR_FUNCTION_FAILED) &&
            token_still_answers(t, s, kek)) {
            engine_secmem_wipe(j->key, sizeof(j->key));
            return hsm_status_set(st, COFFER_ERR_WRONG_KEY, "unwrap", rv,
                                  "token '%s' refused to unwrap the data key with key '%s' (%s): "
                                  "the tag does not match, so the metadata's iv, wrappedKey or "
                                  "keyLabel was altered, or the key now labelled '%s' is not the "
                                  "one that wrapped this backup",
                                  hsm_token_label(t), j->label, hsm_rv_name(rv), j->label);
        }
        hsm_token_rv(s, rv);
    }
    if (rv != CKR_OK) {
        engine_secmem_wipe(j->key, sizeof(j->key));
        return hsm_status_set(st, COFFER_ERR_HSM_CALL, "unwrap", rv,
                              "unwrapping a data key with key '%s' on token '%s' (C_Decrypt, "
                              "CKM_AES_GCM) failed: %s",
                              j->label, hsm_token_label(t), hsm_rv_name(rv));
    }
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
    if (RAND_bytes(j->iv, HSM_IV_LEN) != 1) {
        kek_job_free(j);
        return hsm_status_set(st, COFFER_ERR_INTERNAL, "wrap", HSM_STATUS_NO_RV,
                              "OpenSSL's random generator failed");
    }
    memcpy(j->key, dk->bytes, HSM_DATA_KEY_LEN);
    snprintf(what, sizeof(what), "wrap with key '%s'", label);
    r = hsm_client_call(c, what, op_wrap, j, kek_job_free, st);
    if (r == COFFER_ERR_HSM_TIMEOUT)
        return r; /* the HSM thread frees j */
    if (r == 0) {
        snprintf(out->key_label, sizeof(out->key_label), "%s", j->label);
        memcpy(out->iv, j->iv, HSM_IV_LEN);
        memcpy(out->wrapped, j->wrapped, HSM_WRAPPED_LEN);
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
    if ((j = kek_job_new(w->key_label)) == NULL)
        return hsm_status_set(st, COFFER_ERR_NOMEM, "unwrap", HSM_STATUS_NO_RV, "out of memory");
    memcpy(j->iv, w->iv, HSM_IV_LEN);
    memcpy(j->wrapped, w->wrapped, HSM_WRAPPED_LEN);
    snprintf(what, sizeof(what), "unwrap with key '%s'", w->key_label);
    r = hsm_client_call(c, what, op_unwrap, j, kek_job_free, st);
    if (r == COFFER_ERR_HSM_TIMEOUT)
        return r;
    if (r == 0 && (r = engine_key_from_bytes(out, j->key, HSM_DATA_KEY_LEN)) < 0)
        hsm_status_set(st, r, "unwrap", HSM_STATUS_NO_RV, "out of memory");
    kek_job_free(j);
    return r;
}
