/* SPDX-License-Identifier: Apache-2.0 */
/* Mechanism negotiation: C_GetMechanismInfo, the key's attributes and a trial GCM encryption. */
#include "hsm_mech.h"

#include "coffer_error.h"
#include "hsm_request.h"
#include "hsm_rv.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const option_names[HSM_MECH_COUNT] = {"auto", "gcm", "gcm-token-iv", "kwp",
                                                         "cbc-hmac"};

const char *hsm_mech_option_name(hsm_mech m)
{
    return (unsigned)m < HSM_MECH_COUNT ? option_names[m] : "unknown";
}

int hsm_mech_parse_option(const char *v)
{
    for (int i = 0; i < HSM_MECH_COUNT; i++)
        if (strcmp(v, option_names[i]) == 0)
            return i;
    if (strcmp(v, "CKM_AES_GCM") == 0)
        return HSM_MECH_GCM;
    if (strcmp(v, "CKM_AES_KEY_WRAP_KWP") == 0 || strcmp(v, "CKM_AES_KEY_WRAP_PAD") == 0)
        return HSM_MECH_KWP;
    if (strcmp(v, "CKM_AES_CBC_PAD+CKM_SHA256_HMAC") == 0)
        return HSM_MECH_CBC_HMAC;
    return -1;
}

int hsm_kek_mac_label(const char *kek_label, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s-hmac", kek_label);
    return n > 0 && (size_t)n < cap && (size_t)n <= HSM_KEY_LABEL_MAX ? 0 : -1;
}

void hsm_mech_gcm_params(uint8_t *iv, uint8_t *aad, size_t aadlen, CK_GCM_PARAMS *gp,
                         CK_MECHANISM *m)
{
    memset(gp, 0, sizeof(*gp));
    gp->pIv = iv;
    gp->ulIvLen = HSM_IV_LEN;
    gp->ulIvBits = HSM_IV_LEN * 8;
    gp->pAAD = aad;
    gp->ulAADLen = aadlen;
    gp->ulTagBits = HSM_TAG_LEN * 8;
    m->mechanism = CKM_AES_GCM;
    m->pParameter = gp;
    m->ulParameterLen = sizeof(*gp);
}

int hsm_mech_all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

size_t hsm_mech_etm_input(const char *label, const uint8_t *iv, const uint8_t *ct, uint8_t *out,
                          size_t cap)
{
    size_t p = sizeof(HSM_ETM_PREFIX) - 1, n = strlen(label);
    if (p + 2 + n + HSM_IV_MAX + HSM_CBC_LEN > cap)
        return 0;
    memcpy(out, HSM_ETM_PREFIX, p);
    out[p++] = (uint8_t)(n >> 8);
    out[p++] = (uint8_t)n;
    memcpy(out + p, label, n);
    p += n;
    memcpy(out + p, iv, HSM_IV_MAX);
    p += HSM_IV_MAX;
    memcpy(out + p, ct, HSM_CBC_LEN);
    return p + HSM_CBC_LEN;
}

/* ---- negotiation ---- */

/* 1 offered with the flags, 0 not (why filled), or a negative CK_RV-derived error in *rvp. */
static int mech_has(hsm_token *t, hsm_session *s, CK_MECHANISM_TYPE type, const char *name,
                    CK_FLAGS need, const char *needs, char *why, size_t whylen, CK_RV *rvp)
{
    CK_MECHANISM_INFO mi;
    CK_RV rv =
        hsm_token_rv(s, hsm_token_module(t)->C_GetMechanismInfo(hsm_token_slot(t), type, &mi));
    *rvp = CKR_OK;
    if (rv == CKR_FUNCTION_NOT_SUPPORTED)
        return 1; /* the module does not say: the trial or the call decides */
    if (rv == CKR_MECHANISM_INVALID) {
        snprintf(why, whylen, "the token does not offer %s (C_GetMechanismInfo: %s)", name,
                 hsm_rv_name(rv));
        return 0;
    }
    if (rv != CKR_OK) {
        *rvp = rv;
        return -1;
    }
    if ((mi.flags & need) != need) {
        snprintf(why, whylen, "the token offers %s but not to %s", name, needs);
        return 0;
    }
    return 1;
}

static int attr_flag(hsm_token *t, hsm_session *s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type)
{
    CK_BBOOL v = CK_FALSE;
    CK_ATTRIBUTE a = {type, &v, sizeof(v)};
    if (hsm_token_module(t)->C_GetAttributeValue(s->h, o, &a, 1) != CKR_OK ||
        a.ulValueLen != sizeof(v))
        return -1;
    return v == CK_TRUE;
}

/* 0 when the key says it may not do a or b (an attribute it does not tell counts as allowed). */
static int key_may(hsm_token *t, hsm_session *s, CK_OBJECT_HANDLE kek, CK_ATTRIBUTE_TYPE a,
                   CK_ATTRIBUTE_TYPE b)
{
    return attr_flag(t, s, kek, a) != 0 && attr_flag(t, s, kek, b) != 0;
}

/* A trial GCM encryption of 32 zero bytes: 1 accepted, 0 refused (why), -1 lost (rvp). */
static int gcm_trial(hsm_token *t, hsm_session *s, const char *label, CK_OBJECT_HANDLE kek,
                     int token_iv, char *why, size_t whylen, CK_RV *rvp)
{
    CK_FUNCTION_LIST *f = hsm_token_module(t);
    uint8_t iv[HSM_IV_LEN], aad[HSM_AAD_MAX], in[HSM_DATA_KEY_LEN] = {0}, out[HSM_WRAPPED_LEN];
    size_t aadlen = hsm_kek_aad(label, aad, sizeof(aad));
    CK_ULONG outlen = sizeof(out);
    CK_GCM_PARAMS gp;
    CK_MECHANISM m;
    CK_RV rv;

    *rvp = CKR_OK;
    memset(iv, 0, sizeof(iv));
    if (!token_iv && RAND_bytes(iv, sizeof(iv)) != 1)
        abort(); /* no randomness: nothing in coffer could work */
    hsm_mech_gcm_params(iv, aad, aadlen, &gp, &m);
    rv = hsm_token_rv(s, f->C_EncryptInit(s->h, &m, kek));
    if (rv == CKR_OK)
        rv = hsm_token_rv(s, f->C_Encrypt(s->h, in, sizeof(in), out, &outlen));
    if (rv == CKR_OK && token_iv && hsm_mech_all_zero(iv, sizeof(iv))) {
        snprintf(why, whylen, "the token accepted the all-zero IV instead of generating one");
        return 0;
    }
    if (rv == CKR_OK)
        return 1;
    if (s->lost) {
        *rvp = rv;
        return -1;
    }
    snprintf(why, whylen, "a trial C_Encrypt with %s failed: %s",
             token_iv ? "an IV for the token to generate" : "our IV", hsm_rv_name(rv));
    return 0;
}

/* Candidate m: 1 fits, 0 passed over (why), -1 error (st). */
static int candidate(hsm_token *t, hsm_session *s, const char *label, CK_OBJECT_HANDLE kek, int m,
                     hsm_negotiation *out, hsm_status *st)
{
    char *why = out->why[m];
    size_t wl = sizeof(out->why[m]);
    CK_RV rv = CKR_OK;
    int ok = 1;

    switch (m) {
    case HSM_MECH_GCM:
    case HSM_MECH_GCM_TOKEN_IV:
        ok = mech_has(t, s, CKM_AES_GCM, "CKM_AES_GCM", CKF_ENCRYPT | CKF_DECRYPT,
                      "encrypt and decrypt", why, wl, &rv);
        if (ok == 1 && label != NULL && !key_may(t, s, kek, CKA_ENCRYPT, CKA_DECRYPT)) {
            snprintf(why, wl,
                     "key '%s' may not encrypt and decrypt (it was made for another "
                     "mechanism)",
                     label);
            ok = 0;
        }
        if (ok == 1 && label != NULL)
            ok = gcm_trial(t, s, label, kek, m == HSM_MECH_GCM_TOKEN_IV, why, wl, &rv);
        break;
    case HSM_MECH_KWP:
        out->kwp_ckm = CKM_AES_KEY_WRAP_KWP;
        ok = mech_has(t, s, CKM_AES_KEY_WRAP_KWP, "CKM_AES_KEY_WRAP_KWP", CKF_WRAP | CKF_UNWRAP,
                      "wrap and unwrap", why, wl, &rv);
        if (ok == 0) {
            out->kwp_ckm = CKM_AES_KEY_WRAP_PAD;
            ok = mech_has(t, s, CKM_AES_KEY_WRAP_PAD,
                          "CKM_AES_KEY_WRAP_KWP or "
                          "CKM_AES_KEY_WRAP_PAD",
                          CKF_WRAP | CKF_UNWRAP, "wrap and unwrap", why, wl, &rv);
        }
        if (ok == 1 && label != NULL && !key_may(t, s, kek, CKA_WRAP, CKA_UNWRAP)) {
            snprintf(why, wl,
                     "key '%s' may not wrap and unwrap (CKA_WRAP/CKA_UNWRAP false; "
                     "'coffer hsm init-kek --mechanism kwp' makes one that may)",
                     label);
            ok = 0;
        }
        break;
    default:
        ok = mech_has(t, s, CKM_AES_CBC_PAD, "CKM_AES_CBC_PAD", CKF_ENCRYPT | CKF_DECRYPT,
                      "encrypt and decrypt", why, wl, &rv);
        if (ok == 1)
            ok = mech_has(t, s, CKM_SHA256_HMAC, "CKM_SHA256_HMAC", CKF_SIGN | CKF_VERIFY,
                          "sign and verify", why, wl, &rv);
        if (ok == 1 && label != NULL && !key_may(t, s, kek, CKA_ENCRYPT, CKA_DECRYPT)) {
            snprintf(why, wl, "key '%s' may not encrypt and decrypt", label);
            ok = 0;
        }
        if (ok == 1 && label != NULL) {
            char ml[HSM_KEY_LABEL_MAX + 8];
            CK_OBJECT_HANDLE mk;
            hsm_status mst;
            if (hsm_kek_mac_label(label, ml, sizeof(ml)) != 0) {
                snprintf(why, wl, "key label '%s' leaves no room for its HMAC key's label", label);
                ok = 0;
            } else if (hsm_token_secret_find(t, s, ml, HSM_FIND_MAC, &mk, &mst) < 0) {
                if (s->lost) {
                    *st = mst;
                    return -1;
                }
                snprintf(why, wl,
                         "no single HMAC key labelled '%s' ('coffer hsm init-kek "
                         "--mechanism cbc-hmac' makes the pair)",
                         ml);
                ok = 0;
            }
        }
        break;
    }
    if (ok < 0)
        return hsm_status_set(st, COFFER_ERR_HSM_CALL, "wrap", rv,
                              "asking token '%s' about mechanism %s failed: %s", hsm_token_label(t),
                              hsm_mech_option_name(m), hsm_rv_name(rv));
    if (ok)
        why[0] = '\0';
    return ok;
}

int hsm_mech_negotiate(hsm_token *t, hsm_session *s, const char *label, CK_OBJECT_HANDLE kek,
                       int forced, hsm_negotiation *out, hsm_status *st)
{
    char list[HSM_STATUS_TEXT_MAX];
    size_t n = 0;

    memset(out, 0, sizeof(*out));
    for (int m = HSM_MECH_GCM; m < HSM_MECH_COUNT; m++) {
        if (forced != HSM_MECH_AUTO && m != forced) {
            snprintf(out->why[m], sizeof(out->why[m]), "not tried: the mechanism is set to %s",
                     hsm_mech_option_name(forced));
            continue;
        }
        int r = candidate(t, s, label, kek, m, out, st);
        if (r < 0)
            return r;
        if (r == 1) {
            out->mech = m;
            for (int k = m + 1; k < HSM_MECH_COUNT; k++)
                if (out->why[k][0] == '\0')
                    snprintf(out->why[k], sizeof(out->why[k]), "not needed: %s comes first",
                             hsm_mech_option_name(m));
            return 0;
        }
    }
    list[0] = '\0';
    for (int m = HSM_MECH_GCM; m < HSM_MECH_COUNT && n < sizeof(list); m++)
        if (forced == HSM_MECH_AUTO || m == forced)
            n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%s: %s", n ? "; " : "",
                                  hsm_mech_option_name(m), out->why[m]);
    return hsm_status_set(st, COFFER_ERR_HSM_CALL, "wrap", HSM_STATUS_NO_RV,
                          "token '%s' offers no way coffer can wrap data keys%s%s: %s",
                          hsm_token_label(t), label != NULL ? " with key " : "",
                          label != NULL ? label : "", list);
}

int hsm_mech_for_wrap(hsm_token *t, hsm_session *s, const char *label, CK_OBJECT_HANDLE kek,
                      hsm_negotiation *out, hsm_status *st)
{
    int r;
    if (hsm_token_neg_get(t, label, out) == 0)
        return 0;
    if ((r = hsm_mech_negotiate(t, s, label, kek, hsm_token_mechanism(t), out, st)) < 0)
        return r;
    hsm_token_neg_set(t, label, out);
    return 0;
}

int hsm_mech_offered(hsm_token *t, hsm_session *s, const char *label, const hsm_wrapped *w,
                     hsm_status *st)
{
    char why[256];
    CK_RV rv = CKR_OK;
    int mech = hsm_wrapped_mech(w), ok;
    const char *name = hsm_mech_metadata_name(mech, w->kwp_ckm);

    if (mech == HSM_MECH_GCM || mech == HSM_MECH_GCM_TOKEN_IV)
        ok = mech_has(t, s, CKM_AES_GCM, name, CKF_DECRYPT, "decrypt", why, sizeof(why), &rv);
    else if (mech == HSM_MECH_KWP)
        ok = mech_has(t, s, w->kwp_ckm, name, CKF_UNWRAP, "unwrap", why, sizeof(why), &rv);
    else {
        ok = mech_has(t, s, CKM_AES_CBC_PAD, "CKM_AES_CBC_PAD", CKF_DECRYPT, "decrypt", why,
                      sizeof(why), &rv);
        if (ok == 1)
            ok = mech_has(t, s, CKM_SHA256_HMAC, "CKM_SHA256_HMAC", CKF_VERIFY, "verify", why,
                          sizeof(why), &rv);
    }
    if (ok == 1)
        return 0;
    if (ok < 0)
        return hsm_status_set(st, COFFER_ERR_HSM_CALL, "unwrap", rv,
                              "asking token '%s' about %s failed: %s", hsm_token_label(t), name,
                              hsm_rv_name(rv));
    return hsm_status_set(st, COFFER_ERR_HSM_CALL, "unwrap", CKR_MECHANISM_INVALID,
                          "this backup's data key was wrapped with %s under key '%s'%s%s, and %s "
                          "on token '%s': restore it with a token that offers %s and holds that "
                          "key",
                          name, label, mech == HSM_MECH_CBC_HMAC ? " and HMAC key " : "",
                          mech == HSM_MECH_CBC_HMAC ? w->mac_key_label : "", why,
                          hsm_token_label(t), name);
}

/* ---- for hsm_admin_check and init-kek ---- */

struct neg_job {
    char label[HSM_KEY_LABEL_MAX + 1]; /* "" for no key */
    hsm_negotiation neg;
};

static int op_negotiate(hsm_token *t, hsm_session *s, void *arg, hsm_status *st)
{
    struct neg_job *j = arg;
    CK_OBJECT_HANDLE kek = CK_INVALID_HANDLE;
    int r;
    if (j->label[0] != '\0' && (r = hsm_token_key_find(t, s, j->label, &kek, st)) < 0)
        return r;
    r = hsm_mech_negotiate(t, s, j->label[0] ? j->label : NULL, kek, hsm_token_mechanism(t),
                           &j->neg, st);
    if (r == 0 && j->label[0] != '\0')
        hsm_token_neg_set(t, j->label, &j->neg);
    return r;
}

int hsm_kek_negotiate(hsm_client *c, hsm_negotiation *out, hsm_status *st)
{
    hsm_status local;
    struct neg_job *j;
    int r;

    if (st == NULL)
        st = &local;
    memset(out, 0, sizeof(*out));
    if ((j = calloc(1, sizeof(*j))) == NULL)
        return hsm_status_set(st, COFFER_ERR_NOMEM, "wrap", HSM_STATUS_NO_RV, "out of memory");
    if (hsm_client_key_label(c) != NULL)
        snprintf(j->label, sizeof(j->label), "%s", hsm_client_key_label(c));
    r = hsm_client_call(c, "choosing a wrapping mechanism", op_negotiate, j, free, st);
    if (r == COFFER_ERR_HSM_TIMEOUT)
        return r;
    *out = j->neg;
    free(j);
    return r;
}

struct neg_async {
    hsm_kek_negotiate_cb cb;
    void *ctx;
};

static void negotiate_done(void *ctx, int r, const hsm_status *st, void *payload)
{
    struct neg_async *a = ctx;
    struct neg_job *j = payload;
    hsm_negotiation none;
    memset(&none, 0, sizeof(none));
    a->cb(a->ctx, r, st, j != NULL ? &j->neg : &none);
    free(a);
}

int hsm_kek_negotiate_submit(hsm_client *c, hsm_kek_negotiate_cb cb, void *ctx)
{
    struct neg_async *a = calloc(1, sizeof(*a));
    struct neg_job *j = calloc(1, sizeof(*j));
    int r = COFFER_ERR_NOMEM;

    if (a == NULL || j == NULL)
        goto fail;
    a->cb = cb;
    a->ctx = ctx;
    if (hsm_client_key_label(c) != NULL)
        snprintf(j->label, sizeof(j->label), "%s", hsm_client_key_label(c));
    if ((r = hsm_client_submit(c, "choosing a wrapping mechanism", op_negotiate, j, free,
                               negotiate_done, a)) == 0)
        return 0;
fail:
    free(a);
    free(j);
    return r;
}
