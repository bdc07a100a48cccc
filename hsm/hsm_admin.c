/* SPDX-License-Identifier: Apache-2.0 */
/* Creating key-encryption keys with the right template, listing keys and tokens, checking a setup.
 */
#include "hsm_admin.h"

#include "coffer_error.h"
#include "hsm_kek.h"
#include "hsm_mech.h"
#include "hsm_request.h"
#include "hsm_rv.h"

#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HSM_LIST_MAX 1024

/* ---- creating a key-encryption key ---- */

struct create_job {
    char label[HSM_KEY_LABEL_MAX + 1];
    char mac_label[HSM_KEY_LABEL_MAX + 1];
    hsm_negotiation neg;
};

/* 0 when no object on the token has label, else the status. */
static int label_free(hsm_token *t, hsm_session *s, const char *label, hsm_status *st)
{
    CK_FUNCTION_LIST *f = hsm_token_module(t);
    CK_ATTRIBUTE by_label[] = {{CKA_LABEL, (void *)label, strlen(label)}};
    CK_OBJECT_HANDLE found[1];
    CK_ULONG n = 0;
    CK_RV rv = hsm_token_rv(s, f->C_FindObjectsInit(s->h, by_label, 1));
    if (rv == CKR_OK) {
        rv = hsm_token_rv(s, f->C_FindObjects(s->h, found, 1, &n));
        (void)f->C_FindObjectsFinal(s->h);
    }
    if (rv != CKR_OK)
        return hsm_status_set(st, COFFER_ERR_HSM_CALL, "keygen", rv,
                              "searching token '%s' for label '%s' failed: %s", hsm_token_label(t),
                              label, hsm_rv_name(rv));
    if (n > 0)
        return hsm_status_set(st, COFFER_ERR_INVALID_ARG, "keygen", HSM_STATUS_NO_RV,
                              "token '%s' already has an object labelled '%s'; a new key needs a "
                              "new label (old backups keep naming the key that wrapped them)",
                              hsm_token_label(t), label);
    return 0;
}

/* The HMAC key of encrypt-then-MAC: a 256-bit generic secret that may only sign and verify. */
static CK_RV mac_key_generate(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE rw, const char *label)
{
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    CK_ULONG len = 32;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_VALUE_LEN, &len, sizeof(len)},
        {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_PRIVATE, &yes, sizeof(yes)},
        {CKA_SENSITIVE, &yes, sizeof(yes)},
        {CKA_EXTRACTABLE, &no, sizeof(no)},
        {CKA_SIGN, &yes, sizeof(yes)},
        {CKA_VERIFY, &yes, sizeof(yes)},
        {CKA_ENCRYPT, &no, sizeof(no)},
        {CKA_DECRYPT, &no, sizeof(no)},
        {CKA_WRAP, &no, sizeof(no)},
        {CKA_UNWRAP, &no, sizeof(no)},
        {CKA_DERIVE, &no, sizeof(no)},
        {CKA_LABEL, (void *)label, strlen(label)},
    };
    CK_MECHANISM m = {CKM_GENERIC_SECRET_KEY_GEN, NULL, 0};
    CK_OBJECT_HANDLE key;
    return f->C_GenerateKey(rw, &m, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &key);
}

static int op_kek_create(hsm_token *t, hsm_session *s, void *arg, hsm_status *st)
{
    struct create_job *j = arg;
    CK_FUNCTION_LIST *f = hsm_token_module(t);
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_ULONG len = 32;
    int r;

    if (hsm_token_label(t) == NULL)
        return hsm_status_set(st, COFFER_ERR_CONFIG, "keygen", HSM_STATUS_NO_RV,
                              "no token label given");
    /* what the key is for: the configured mechanism, else what the token offers */
    if ((r = hsm_mech_negotiate(t, s, NULL, CK_INVALID_HANDLE, hsm_token_mechanism(t), &j->neg,
                                st)) < 0)
        return r;
    int kwp = j->neg.mech == HSM_MECH_KWP, etm = j->neg.mech == HSM_MECH_CBC_HMAC;
    CK_BBOOL crypt = kwp ? CK_FALSE : CK_TRUE, wrap = kwp ? CK_TRUE : CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},          {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_VALUE_LEN, &len, sizeof(len)},      {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_PRIVATE, &yes, sizeof(yes)},        {CKA_SENSITIVE, &yes, sizeof(yes)},
        {CKA_EXTRACTABLE, &no, sizeof(no)},      {CKA_ENCRYPT, &crypt, sizeof(crypt)},
        {CKA_DECRYPT, &crypt, sizeof(crypt)},    {CKA_WRAP, &wrap, sizeof(wrap)},
        {CKA_UNWRAP, &wrap, sizeof(wrap)},       {CKA_SIGN, &no, sizeof(no)},
        {CKA_VERIFY, &no, sizeof(no)},           {CKA_DERIVE, &no, sizeof(no)},
        {CKA_LABEL, j->label, strlen(j->label)},
    };
    CK_MECHANISM m = {CKM_AES_KEY_GEN, NULL, 0};
    CK_OBJECT_HANDLE key;
    CK_SESSION_HANDLE rw = CK_INVALID_HANDLE;
    CK_RV rv;

    if ((r = label_free(t, s, j->label, st)) < 0)
        return r;
    if (etm && hsm_kek_mac_label(j->label, j->mac_label, sizeof(j->mac_label)) != 0)
        return hsm_status_set(st, COFFER_ERR_INVALID_ARG, "keygen", HSM_STATUS_NO_RV,
                              "label '%s' is too long: encrypt-then-MAC also needs '<label>-hmac' "
                              "within %d bytes",
                              j->label, HSM_KEY_LABEL_MAX);
    if (etm && (r = label_free(t, s, j->mac_label, st)) < 0)
        return r;
    rv = hsm_token_rv(s, f->C_OpenSession(hsm_token_slot(t), CKF_SERIAL_SESSION | CKF_RW_SESSION,
                                          NULL, NULL, &rw));
    if (rv == CKR_OK) {
        rv = hsm_token_rv(s, f->C_GenerateKey(rw, &m, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &key));
        if (rv == CKR_OK && etm) {
            CK_RV mrv = hsm_token_rv(s, mac_key_generate(f, rw, j->mac_label));
            if (mrv != CKR_OK) {
                (void)f->C_DestroyObject(rw, key); /* no KEK without its HMAC key */
                (void)f->C_CloseSession(rw);
                return hsm_status_set(st, COFFER_ERR_HSM_CALL, "keygen", mrv,
                                      "creating HMAC key '%s' on token '%s' (C_GenerateKey, "
                                      "CKM_GENERIC_SECRET_KEY_GEN) failed: %s",
                                      j->mac_label, hsm_token_label(t), hsm_rv_name(mrv));
            }
        }
        (void)f->C_CloseSession(rw);
    }
    if (rv != CKR_OK)
        return hsm_status_set(st, COFFER_ERR_HSM_CALL, "keygen", rv,
                              "creating AES-256 key '%s' on token '%s' (C_GenerateKey, "
                              "CKM_AES_KEY_GEN) failed: %s",
                              j->label, hsm_token_label(t), hsm_rv_name(rv));
    hsm_token_keys_forget(t);
    return 0;
}

int hsm_admin_kek_create_for(hsm_client *c, const char *label, hsm_negotiation *neg, hsm_status *st)
{
    hsm_status local;
    struct create_job *j;
    int r;

    if (st == NULL)
        st = &local;
    hsm_status_clear(st);
    if ((r = hsm_token_label_check("key", label, HSM_KEY_LABEL_MAX, st)) < 0)
        return r;
    if ((j = calloc(1, sizeof(*j))) == NULL)
        return hsm_status_set(st, COFFER_ERR_NOMEM, "keygen", HSM_STATUS_NO_RV, "out of memory");
    snprintf(j->label, sizeof(j->label), "%s", label);
    r = hsm_client_call(c, "creating a key", op_kek_create, j, free, st);
    if (r == COFFER_ERR_HSM_TIMEOUT)
        return r;
    if (neg != NULL)
        *neg = j->neg;
    free(j);
    return r;
}

int hsm_admin_kek_create(hsm_client *c, const char *label, hsm_status *st)
{
    return hsm_admin_kek_create_for(c, label, NULL, st);
}

/* ---- reading key attributes ---- */

static int attr_bool(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o,
                     CK_ATTRIBUTE_TYPE type)
{
    CK_BBOOL v = CK_FALSE;
    CK_ATTRIBUTE a = {type, &v, sizeof(v)};
    if (f->C_GetAttributeValue(s, o, &a, 1) != CKR_OK || a.ulValueLen != sizeof(v))
        return -1;
    return v == CK_TRUE;
}

static unsigned long attr_ulong(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o,
                                CK_ATTRIBUTE_TYPE type, unsigned long dflt)
{
    CK_ULONG v = 0;
    CK_ATTRIBUTE a = {type, &v, sizeof(v)};
    if (f->C_GetAttributeValue(s, o, &a, 1) != CKR_OK || a.ulValueLen != sizeof(v))
        return dflt;
    return v;
}

static CK_RV key_info_read(hsm_session *sess, CK_FUNCTION_LIST *f, CK_OBJECT_HANDLE o,
                           hsm_key_info *k)
{
    CK_SESSION_HANDLE s = sess->h;
    char label[HSM_KEY_LABEL_MAX + 1];
    CK_ATTRIBUTE a = {CKA_LABEL, label, sizeof(label) - 1};
    CK_RV rv;

    memset(k, 0, sizeof(*k));
    rv = hsm_token_rv(sess, f->C_GetAttributeValue(s, o, &a, 1));
    if (rv == CKR_OK && a.ulValueLen < sizeof(label)) {
        for (CK_ULONG i = 0; i < a.ulValueLen; i++)
            k->label[i] = (label[i] >= 0x20 && label[i] != 0x7f) ? label[i] : '?';
        k->label[a.ulValueLen] = '\0';
    } else if (rv == CKR_BUFFER_TOO_SMALL || rv == CKR_OK) {
        snprintf(k->label, sizeof(k->label), "(label longer than %d bytes)", HSM_KEY_LABEL_MAX);
        rv = CKR_OK;
    } else if (rv == CKR_ATTRIBUTE_TYPE_INVALID) {
        rv = CKR_OK;
    }
    if (rv != CKR_OK)
        return rv;
    k->key_type = attr_ulong(f, s, o, CKA_KEY_TYPE, ~0UL);
    k->value_len = attr_ulong(f, s, o, CKA_VALUE_LEN, 0);
    k->is_private = attr_bool(f, s, o, CKA_PRIVATE);
    k->sensitive = attr_bool(f, s, o, CKA_SENSITIVE);
    k->extractable = attr_bool(f, s, o, CKA_EXTRACTABLE);
    k->always_sensitive = attr_bool(f, s, o, CKA_ALWAYS_SENSITIVE);
    k->never_extractable = attr_bool(f, s, o, CKA_NEVER_EXTRACTABLE);
    k->encrypt = attr_bool(f, s, o, CKA_ENCRYPT);
    k->decrypt = attr_bool(f, s, o, CKA_DECRYPT);
    k->wrap = attr_bool(f, s, o, CKA_WRAP);
    k->unwrap = attr_bool(f, s, o, CKA_UNWRAP);
    k->sign = attr_bool(f, s, o, CKA_SIGN);
    k->verify = attr_bool(f, s, o, CKA_VERIFY);
    k->derive = attr_bool(f, s, o, CKA_DERIVE);
    return CKR_OK;
}

const char *hsm_admin_key_type_name(unsigned long key_type, unsigned long value_len)
{
    static __thread char buf[48];
    switch (key_type) {
    case CKK_AES:
        snprintf(buf, sizeof(buf), "AES-%lu", value_len * 8);
        break;
    case CKK_GENERIC_SECRET:
        snprintf(buf, sizeof(buf), "GENERIC_SECRET(%lu bytes)", value_len);
        break;
    case CKK_DES3:
        snprintf(buf, sizeof(buf), "DES3");
        break;
    default:
        snprintf(buf, sizeof(buf), "CKK_0x%lx", key_type);
        break;
    }
    return buf;
}

int hsm_admin_mac_key_ok(const hsm_key_info *k)
{
    return k->key_type == CKK_GENERIC_SECRET && k->value_len == 32 && k->is_private == 1 &&
           k->sensitive == 1 && k->extractable == 0 && k->sign == 1 && k->verify == 1 &&
           k->encrypt != 1 && k->decrypt != 1 && k->wrap != 1 && k->unwrap != 1 && k->derive != 1;
}

int hsm_admin_key_weak(const hsm_key_info *k, char *why, size_t whylen)
{
    size_t n = 0;
    why[0] = '\0';
#define WEAK_IF(cond, msg)                                                                         \
    do {                                                                                           \
        if ((cond) && n < whylen)                                                                  \
            n += (size_t)snprintf(why + n, whylen - n, "%s%s", n ? ", " : "", msg);                \
    } while (0)
    WEAK_IF(k->key_type != CKK_AES || k->value_len != 32, "not AES-256");
    WEAK_IF(k->is_private != 1, "not private (CKA_PRIVATE false: visible without login)");
    WEAK_IF(k->sensitive != 1, "not sensitive (CKA_SENSITIVE false)");
    WEAK_IF(k->extractable != 0, "extractable (CKA_EXTRACTABLE true: it can leave the token)");
    int crypt = k->encrypt == 1 && k->decrypt == 1, wraps = k->wrap == 1 && k->unwrap == 1;
    if (wraps && k->encrypt != 1 && k->decrypt != 1) {
        /* coffer's template for RFC 5649 key wrap: wrap/unwrap only */
        WEAK_IF(k->sign == 1 || k->verify == 1 || k->derive == 1,
                "also allowed to sign, verify or derive");
    } else {
        WEAK_IF(!crypt, "CKA_ENCRYPT/CKA_DECRYPT not both true");
        WEAK_IF(k->wrap == 1 || k->unwrap == 1 || k->sign == 1 || k->verify == 1 || k->derive == 1,
                "also allowed to wrap, unwrap, sign, verify or derive");
    }
#undef WEAK_IF
    return n > 0;
}

/* ---- listing keys ---- */

struct list_job {
    hsm_key_info *keys;
    size_t n;
};

static void list_job_free(void *p)
{
    struct list_job *j = p;
    free(j->keys);
    free(j);
}

static int op_keys_list(hsm_token *t, hsm_session *s, void *arg, hsm_status *st)
{
    struct list_job *j = arg;
    CK_FUNCTION_LIST *f = hsm_token_module(t);
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof(cls)}};
    CK_OBJECT_HANDLE *h;
    CK_ULONG n = 0;
    CK_RV rv;

    free(j->keys);
    j->keys = NULL;
    j->n = 0;
    if (hsm_token_label(t) == NULL)
        return hsm_status_set(st, COFFER_ERR_CONFIG, "list", HSM_STATUS_NO_RV,
                              "no token label given");
    if ((h = calloc(HSM_LIST_MAX, sizeof(*h))) == NULL)
        return hsm_status_set(st, COFFER_ERR_NOMEM, "list", HSM_STATUS_NO_RV, "out of memory");
    rv = hsm_token_rv(s, f->C_FindObjectsInit(s->h, tmpl, 1));
    if (rv == CKR_OK) {
        rv = hsm_token_rv(s, f->C_FindObjects(s->h, h, HSM_LIST_MAX, &n));
        (void)f->C_FindObjectsFinal(s->h);
    }
    if (rv == CKR_OK && n > 0 && (j->keys = calloc(n, sizeof(*j->keys))) == NULL)
        rv = CKR_HOST_MEMORY;
    for (CK_ULONG i = 0; rv == CKR_OK && i < n; i++)
        rv = key_info_read(s, f, h[i], &j->keys[i]);
    free(h);
    if (rv != CKR_OK) {
        free(j->keys);
        j->keys = NULL;
        return hsm_status_set(st, COFFER_ERR_HSM_CALL, "list", rv,
                              "listing the keys of token '%s' failed: %s", hsm_token_label(t),
                              hsm_rv_name(rv));
    }
    j->n = n;
    return 0;
}

int hsm_admin_keys_list(hsm_client *c, hsm_key_info **keys, size_t *n, hsm_status *st)
{
    hsm_status local;
    struct list_job *j;
    int r;

    if (st == NULL)
        st = &local;
    *keys = NULL;
    *n = 0;
    if ((j = calloc(1, sizeof(*j))) == NULL)
        return hsm_status_set(st, COFFER_ERR_NOMEM, "list", HSM_STATUS_NO_RV, "out of memory");
    r = hsm_client_call(c, "listing keys", op_keys_list, j, list_job_free, st);
    if (r == COFFER_ERR_HSM_TIMEOUT)
        return r;
    if (r == 0) {
        *keys = j->keys;
        *n = j->n;
        j->keys = NULL;
    }
    list_job_free(j);
    return r;
}

/* ---- listing tokens ---- */

struct tokens_job {
    hsm_token_desc *tokens;
    size_t n;
};

static void tokens_job_free(void *p)
{
    struct tokens_job *j = p;
    free(j->tokens);
    free(j);
}

static int op_tokens_list(hsm_token *t, hsm_session *s, void *arg, hsm_status *st)
{
    struct tokens_job *j = arg;
    CK_FUNCTION_LIST *f = hsm_token_module(t);
    CK_SLOT_ID *slots;
    CK_ULONG n;
    CK_TOKEN_INFO ti;
    CK_RV rv = hsm_token_rv(s, hsm_token_slots(f, &slots, &n));

    free(j->tokens);
    j->tokens = NULL;
    j->n = 0;
    if (rv != CKR_OK)
        return hsm_status_set(st, COFFER_ERR_HSM_CALL, "list", rv,
                              "listing the slots of module '%s' failed: %s",
                              hsm_token_module_name(t), hsm_rv_name(rv));
    if (n > 0 && (j->tokens = calloc(n, sizeof(*j->tokens))) == NULL) {
        free(slots);
        return hsm_status_set(st, COFFER_ERR_NOMEM, "list", HSM_STATUS_NO_RV, "out of memory");
    }
    for (CK_ULONG i = 0; i < n; i++) {
        if (f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
            continue;
        hsm_token_desc *d = &j->tokens[j->n++];
        d->slot = slots[i];
        hsm_token_text(d->label, sizeof(d->label), ti.label, sizeof(ti.label));
        hsm_token_text(d->manufacturer, sizeof(d->manufacturer), ti.manufacturerID,
                       sizeof(ti.manufacturerID));
        hsm_token_text(d->model, sizeof(d->model), ti.model, sizeof(ti.model));
        hsm_token_text(d->serial, sizeof(d->serial), ti.serialNumber, sizeof(ti.serialNumber));
        d->initialized = (ti.flags & CKF_TOKEN_INITIALIZED) != 0;
    }
    free(slots);
    return 0;
}

int hsm_admin_tokens_list(hsm_client *c, hsm_token_desc **tokens, size_t *n, hsm_status *st)
{
    hsm_status local;
    struct tokens_job *j;
    int r;

    if (st == NULL)
        st = &local;
    *tokens = NULL;
    *n = 0;
    if ((j = calloc(1, sizeof(*j))) == NULL)
        return hsm_status_set(st, COFFER_ERR_NOMEM, "list", HSM_STATUS_NO_RV, "out of memory");
    r = hsm_client_call(c, "listing tokens", op_tokens_list, j, tokens_job_free, st);
    if (r == COFFER_ERR_HSM_TIMEOUT)
        return r;
    if (r == 0) {
        *tokens = j->tokens;
        *n = j->n;
        j->tokens = NULL;
    }
    tokens_job_free(j);
    return r;
}

/* ---- check ---- */

struct check_job {
    char label[HSM_KEY_LABEL_MAX + 1];
    char module_info[160];
    char token_info[160];
    int key_found;
    hsm_key_info key;
    hsm_status key_st;
};

static int op_check(hsm_token *t, hsm_session *s, void *arg, hsm_status *st)
{
    struct check_job *j = arg;
    CK_OBJECT_HANDLE key;
    CK_RV rv;

    snprintf(j->module_info, sizeof(j->module_info), "%s", hsm_token_module_info(t));
    snprintf(j->token_info, sizeof(j->token_info), "%s", hsm_token_token_info(t));
    j->key_found = 0;
    hsm_status_clear(&j->key_st);
    if (j->label[0] == '\0')
        return 0;
    /* A missing key is a finding of the check, not a failure of the connection. */
    if (hsm_token_key_find(t, s, j->label, &key, &j->key_st) < 0)
        return 0;
    rv = key_info_read(s, hsm_token_module(t), key, &j->key);
    if (rv != CKR_OK)
        return hsm_status_set(st, COFFER_ERR_HSM_CALL, "key", rv,
                              "reading the attributes of key '%s' failed: %s", j->label,
                              hsm_rv_name(rv));
    j->key_found = 1;
    return 0;
}

static double ms_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

static void item(hsm_check_report *rep, int i, const char *name, enum hsm_check_result res,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void item(hsm_check_report *rep, int i, const char *name, enum hsm_check_result res,
                 const char *fmt, ...)
{
    va_list ap;
    rep->items[i].name = name;
    rep->items[i].result = res;
    va_start(ap, fmt);
    vsnprintf(rep->items[i].text, sizeof(rep->items[i].text), fmt, ap);
    va_end(ap);
    if (res == HSM_CHECK_FAIL)
        rep->failed++;
}

/* A failed item: the sentence, and the CKR_ name unless the sentence already has it. */
static void item_fail(hsm_check_report *rep, int i, const char *name, const hsm_status *st)
{
    int tag = st->ckr[0] && strstr(st->text, st->ckr) == NULL;
    item(rep, i, name, HSM_CHECK_FAIL, "%s%s%s%s", st->text, tag ? " [" : "", tag ? st->ckr : "",
         tag ? "]" : "");
}

int hsm_admin_check(hsm_client *c, hsm_check_report *rep)
{
    enum { I_MODULE, I_TOKEN, I_LOGIN, I_KEY, I_TRIP, I_MECH };
    const char *label = hsm_client_key_label(c);
    struct check_job *j;
    hsm_status st;
    int r, first = 0;

    memset(rep, 0, sizeof(*rep));
    static const char *names[] = {"module", "token", "login", "key", "wrap/unwrap", "mechanism"};
    for (int i = 0; i < HSM_CHECK_ITEMS; i++)
        item(rep, i, names[i], HSM_CHECK_SKIP, "not checked");
    if ((j = calloc(1, sizeof(*j))) == NULL)
        return COFFER_ERR_NOMEM;
    if (label != NULL)
        snprintf(j->label, sizeof(j->label), "%s", label);
    r = hsm_client_call(c, "check", op_check, j, free, &st);
    if (r < 0) {
        /* The step that failed tells how far the connection got. */
        int at = I_MODULE;
        if (strcmp(st.step, "token") == 0)
            at = I_TOKEN;
        else if (strcmp(st.step, "login") == 0 || strcmp(st.step, "pin") == 0)
            at = I_LOGIN;
        else if (strcmp(st.step, "key") == 0)
            at = I_KEY;
        for (int i = I_MODULE; i < at; i++)
            item(rep, i, names[i], HSM_CHECK_OK, "passed");
        if (at == I_TOKEN || at == I_LOGIN || at == I_KEY)
            item(rep, I_MODULE, names[I_MODULE], HSM_CHECK_OK, "'%s' loaded and initialised",
                 hsm_client_module(c));
        if (at == I_LOGIN || at == I_KEY)
            item(rep, I_TOKEN, names[I_TOKEN], HSM_CHECK_OK, "'%s' found", hsm_client_token(c));
        item_fail(rep, at, names[at], &st);
        if (r != COFFER_ERR_HSM_TIMEOUT)
            free(j);
        return r;
    }
    item(rep, I_MODULE, names[I_MODULE], HSM_CHECK_OK, "'%s' loaded: %s", hsm_client_module(c),
         j->module_info);
    item(rep, I_TOKEN, names[I_TOKEN], HSM_CHECK_OK, "'%s' found (%s)", hsm_client_token(c),
         j->token_info);
    item(rep, I_LOGIN, names[I_LOGIN], HSM_CHECK_OK, "logged in as the user");
    if (label == NULL) {
        item(rep, I_KEY, names[I_KEY], HSM_CHECK_FAIL, "no key label given");
        free(j);
        return COFFER_ERR_CONFIG;
    }
    if (!j->key_found) {
        item(rep, I_KEY, names[I_KEY], HSM_CHECK_FAIL, "%s", j->key_st.text);
        r = j->key_st.code ? j->key_st.code : COFFER_ERR_HSM_KEY;
        free(j);
        return r;
    }
    char why[256];
    if (hsm_admin_key_weak(&j->key, why, sizeof(why)))
        item(rep, I_KEY, names[I_KEY], HSM_CHECK_WARN,
             "'%s' found but it lacks coffer's template: %s (create a new key with 'coffer hsm "
             "init-kek' and rotate to it)",
             label, why);
    else
        item(rep, I_KEY, names[I_KEY], HSM_CHECK_OK,
             "'%s' found: %s, private, sensitive, never extractable, %s only", label,
             hsm_admin_key_type_name(j->key.key_type, j->key.value_len),
             j->key.wrap == 1 ? "wrap/unwrap" : "encrypt/decrypt");
    free(j);

    /* The mechanism, and why the others were passed over. */
    if ((r = hsm_kek_negotiate(c, &rep->neg, &st)) < 0) {
        item_fail(rep, I_MECH, names[I_MECH], &st);
        return r;
    }
    rep->negotiated = 1;
    const char *mname = hsm_mech_metadata_name(rep->neg.mech, rep->neg.kwp_ckm);
    item(rep, I_MECH, names[I_MECH], HSM_CHECK_OK, "%s (%s)%s", mname,
         hsm_mech_option_name(rep->neg.mech),
         hsm_client_mechanism(c) != HSM_MECH_AUTO
             ? ": as configured"
             : (rep->neg.mech == HSM_MECH_GCM ? ": the first choice"
                                              : ": the first the token and key allow"));

    /* A fresh data key through the token and back. */
    engine_key *dk = NULL, *back = NULL;
    hsm_wrapped w;
    struct timespec t0;
    double wrap_ms = 0, unwrap_ms = 0;
    if ((r = engine_key_generate(&dk, HSM_DATA_KEY_LEN)) < 0) {
        item(rep, I_TRIP, names[I_TRIP], HSM_CHECK_FAIL, "no data key: %s", coffer_strerror(r));
        return r;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    r = hsm_kek_wrap(c, dk, &w, &st);
    wrap_ms = ms_since(&t0);
    if (r == 0) {
        clock_gettime(CLOCK_MONOTONIC, &t0);
        r = hsm_kek_unwrap(c, &w, &back, &st);
        unwrap_ms = ms_since(&t0);
    }
    if (r < 0) {
        item_fail(rep, I_TRIP, names[I_TRIP], &st);
        first = r;
    } else if (back->len != dk->len || CRYPTO_memcmp(back->bytes, dk->bytes, dk->len) != 0) {
        item(rep, I_TRIP, names[I_TRIP], HSM_CHECK_FAIL,
             "the unwrapped data key differs from the one wrapped");
        first = COFFER_ERR_HSM_CALL;
    } else {
        item(rep, I_TRIP, names[I_TRIP], HSM_CHECK_OK,
             "a fresh data key wrapped (%.2f ms) and unwrapped (%.2f ms) with %s%s", wrap_ms,
             unwrap_ms, mname,
             rep->neg.mech == HSM_MECH_GCM_TOKEN_IV ? " (IV from the token)" : "");
    }
    engine_key_free(dk);
    engine_key_free(back);
    return first;
}
