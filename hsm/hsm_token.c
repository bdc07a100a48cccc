/* SPDX-License-Identifier: Apache-2.0 */
/* The PKCS#11 connection: load the module through p11-kit, find the token, log in, reconnect. */
#include "hsm_token.h"

#include "coffer_error.h"
#include "engine_secmem.h"
#include "hsm_kek.h"
#include "hsm_rv.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <p11-kit/p11-kit.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HSM_KEY_SLOTS   8    /* key handles remembered per connection */
#define HSM_MAX_SLOTS   4096 /* more slots than this is a broken module */
#define HSM_INFO_MAX    160
#define HSM_PIN_MAC_LEN 32

#define HSM_POOL_MAX  64         /* sessions kept open for reuse */
#define HSM_UNBOUNDED (1u << 20) /* a ulMaxSessionCount above this means "no limit" */

struct hsm_key_slot {
    char label[HSM_KEY_LABEL_MAX + 1];
    int kind;
    CK_OBJECT_HANDLE h;
    uint64_t gen;
};

/* The negotiated mechanism of one key label on one connection. */
struct hsm_neg_slot {
    char label[HSM_KEY_LABEL_MAX + 1];
    hsm_negotiation neg;
    uint64_t gen;
};

/* Secrets of the "do not retry a refused PIN" rule, in engine_secmem. */
struct hsm_pin_memory {
    uint8_t mac_key[32];
    uint8_t refused[HSM_PIN_MAC_LEN];
    int have_refused;
};

struct hsm_token {
    /* configuration, immutable */
    char *module_spec;
    char *token_label;
    char *pin_file;
    char *pin_env;
    void (*log)(void *ctx, const char *line);
    void *log_ctx;

    /* the connection: written under the write lock, read under the read lock */
    pthread_rwlock_t lock;
    CK_FUNCTION_LIST *mod;
    CK_SLOT_ID slot;
    CK_SESSION_HANDLE anchor; /* keeps the login alive: logging in is per token, not session */
    uint64_t gen;             /* bumped at every successful connect */
    int connected;
    atomic_int broken; /* a call saw a lost connection for generation broken_gen */
    char module_info[HSM_INFO_MAX];
    char token_info[HSM_INFO_MAX];
    char last_connect_err[HSM_STATUS_TEXT_MAX]; /* logged once, not at every failing call */

    pthread_mutex_t keys_mu;
    struct hsm_key_slot keys[HSM_KEY_SLOTS];
    unsigned keys_next;

    struct hsm_pin_memory *pinmem; /* under the write lock (login happens in connect) */

    int mechanism;                           /* configured; 0 negotiates */
    unsigned max_sessions;                   /* configured; 0 unbounded */
    struct hsm_neg_slot negs[HSM_KEY_SLOTS]; /* under keys_mu */
    unsigned negs_next;

    /* The session pool: sessions of the current generation, each used by one thread at a time.
     * Reset at every connect (under the write lock, so no thread holds one then). */
    pthread_mutex_t pool_mu;
    pthread_cond_t pool_cv;
    CK_SESSION_HANDLE pool_free[HSM_POOL_MAX];
    unsigned pool_nfree;
    unsigned pool_open;  /* sessions open: free or held */
    unsigned pool_limit; /* 0: unbounded */
};

static void token_log(hsm_token *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void token_log(hsm_token *t, const char *fmt, ...)
{
    char line[HSM_STATUS_TEXT_MAX + 64];
    va_list ap;
    if (t->log == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    t->log(t->log_ctx, line);
}

int hsm_token_label_check(const char *what, const char *label, size_t max, hsm_status *st)
{
    size_t n;
    if (label == NULL || label[0] == '\0')
        return hsm_status_set(st, COFFER_ERR_CONFIG, "config", HSM_STATUS_NO_RV,
                              "the %s label is empty", what);
    n = strnlen(label, max + 1);
    if (n > max)
        return hsm_status_set(st, COFFER_ERR_CONFIG, "config", HSM_STATUS_NO_RV,
                              "the %s label is longer than %zu bytes", what, max);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)label[i];
        if (c < 0x20 || c == 0x7f)
            return hsm_status_set(st, COFFER_ERR_CONFIG, "config", HSM_STATUS_NO_RV,
                                  "the %s label contains a control character", what);
    }
    /* Labels travel in JSON metadata: they must be UTF-8. */
    json_t *j = json_stringn(label, n);
    if (j == NULL)
        return hsm_status_set(st, COFFER_ERR_CONFIG, "config", HSM_STATUS_NO_RV,
                              "the %s label is not valid UTF-8", what);
    json_decref(j);
    return 0;
}

static char *dup_or_null(const char *s, int *fail)
{
    char *d;
    if (s == NULL)
        return NULL;
    if ((d = strdup(s)) == NULL)
        *fail = 1;
    return d;
}

int hsm_token_new(hsm_token **out, const hsm_token_config *cfg, hsm_status *st)
{
    hsm_token *t;
    int fail = 0, r;

    *out = NULL;
    if (cfg->module == NULL || cfg->module[0] == '\0')
        return hsm_status_set(st, COFFER_ERR_CONFIG, "config", HSM_STATUS_NO_RV,
                              "no PKCS#11 module given (a path or a p11-kit module name)");
    if (cfg->token != NULL &&
        (r = hsm_token_label_check("token", cfg->token, HSM_TOKEN_LABEL_MAX, st)) < 0)
        return r;
    if ((t = calloc(1, sizeof(*t))) == NULL)
        return hsm_status_set(st, COFFER_ERR_NOMEM, "config", HSM_STATUS_NO_RV, "out of memory");
    t->module_spec = dup_or_null(cfg->module, &fail);
    t->token_label = dup_or_null(cfg->token, &fail);
    t->pin_file = dup_or_null(cfg->pin.file, &fail);
    t->pin_env = dup_or_null(cfg->pin.env, &fail);
    t->log = cfg->log;
    t->log_ctx = cfg->log_ctx;
    t->mechanism = cfg->mechanism;
    t->max_sessions = cfg->max_sessions;
    t->pinmem = engine_secmem_alloc(sizeof(*t->pinmem));
    if (fail || t->pinmem == NULL) {
        engine_secmem_free(t->pinmem);
        free(t->module_spec);
        free(t->token_label);
        free(t->pin_file);
        free(t->pin_env);
        free(t);
        return hsm_status_set(st, COFFER_ERR_NOMEM, "config", HSM_STATUS_NO_RV, "out of memory");
    }
    if (RAND_priv_bytes(t->pinmem->mac_key, sizeof(t->pinmem->mac_key)) != 1)
        abort(); /* no randomness: nothing else in coffer could work either */
    pthread_rwlock_init(&t->lock, NULL);
    pthread_mutex_init(&t->keys_mu, NULL);
    pthread_mutex_init(&t->pool_mu, NULL);
    pthread_cond_init(&t->pool_cv, NULL);
    *out = t;
    return 0;
}

static void token_disconnect_locked(hsm_token *t)
{
    if (t->mod != NULL) {
        /* A broken module may fail these; there is nothing better to do than to go on. */
        (void)p11_kit_module_finalize(t->mod);
        p11_kit_module_release(t->mod);
    }
    t->mod = NULL;
    t->connected = 0;
    t->anchor = CK_INVALID_HANDLE;
    t->module_info[0] = '\0';
    t->token_info[0] = '\0';
}

void hsm_token_free(hsm_token *t)
{
    if (t == NULL)
        return;
    token_disconnect_locked(t);
    pthread_rwlock_destroy(&t->lock);
    pthread_mutex_destroy(&t->keys_mu);
    pthread_mutex_destroy(&t->pool_mu);
    pthread_cond_destroy(&t->pool_cv);
    engine_secmem_free(t->pinmem);
    free(t->module_spec);
    free(t->token_label);
    free(t->pin_file);
    free(t->pin_env);
    free(t);
}

CK_FUNCTION_LIST *hsm_token_module(const hsm_token *t)
{
    return t->mod;
}

CK_SLOT_ID hsm_token_slot(const hsm_token *t)
{
    return t->slot;
}

const char *hsm_token_module_name(const hsm_token *t)
{
    return t->module_spec;
}

const char *hsm_token_label(const hsm_token *t)
{
    return t->token_label;
}

const char *hsm_token_module_info(const hsm_token *t)
{
    return t->module_info;
}

const char *hsm_token_token_info(const hsm_token *t)
{
    return t->token_info;
}

CK_RV hsm_token_rv(hsm_session *s, CK_RV rv)
{
    if (hsm_rv_is_lost(rv))
        s->lost = 1;
    if (rv == CKR_SESSION_CLOSED || rv == CKR_SESSION_HANDLE_INVALID)
        s->closed = 1;
    return rv;
}

int hsm_token_mechanism(const hsm_token *t)
{
    return t->mechanism;
}

void hsm_token_text(char *dst, size_t cap, const unsigned char *src, size_t n)
{
    while (n > 0 && (src[n - 1] == ' ' || src[n - 1] == '\0'))
        n--;
    if (n >= cap)
        n = cap - 1;
    for (size_t i = 0; i < n; i++)
        dst[i] = (src[i] >= 0x20 && src[i] < 0x7f) ? (char)src[i] : '?';
    dst[n] = '\0';
}

/* ---- connecting ---- */

static int module_load(hsm_token *t, hsm_status *st)
{
    const char *spec = t->module_spec;
    const char *msg;

    if (strchr(spec, '/') != NULL) {
        t->mod = p11_kit_module_load(spec, 0); /* managed: p11-kit initialises with OS locking */
    } else {
        /* A registered module name: find its file among p11-kit's modules, load only that one. */
        CK_FUNCTION_LIST **all = p11_kit_modules_load(NULL, 0);
        CK_FUNCTION_LIST *m = all != NULL ? p11_kit_module_for_name(all, spec) : NULL;
        char *file = m != NULL ? p11_kit_module_get_filename(m) : NULL;
        if (all != NULL)
            p11_kit_modules_release(all);
        if (file == NULL)
            return hsm_status_set(st, COFFER_ERR_HSM_MODULE, "module", HSM_STATUS_NO_RV,
                                  "PKCS#11 module '%s' is neither a path nor the name of a module "
                                  "registered with p11-kit ('p11-kit list-modules' shows them)",
                                  spec);
        t->mod = p11_kit_module_load(file, 0);
        free(file);
    }
    if (t->mod == NULL) {
        msg = p11_kit_message();
        return hsm_status_set(st, COFFER_ERR_HSM_MODULE, "module", HSM_STATUS_NO_RV,
                              "PKCS#11 module '%s' could not be loaded: %s", spec,
                              msg != NULL ? msg : "p11-kit gave no reason");
    }
    return 0;
}

static int module_init(hsm_token *t, hsm_status *st)
{
    CK_INFO info;
    CK_RV rv = p11_kit_module_initialize(t->mod);
    char desc[33], manu[33];

    if (rv != CKR_OK) {
        p11_kit_module_release(t->mod);
        t->mod = NULL;
        return hsm_status_set(st, COFFER_ERR_HSM_MODULE, "module", rv,
                              "PKCS#11 module '%s' failed to initialise: %s", t->module_spec,
                              hsm_rv_name(rv));
    }
    if (t->mod->C_GetInfo(&info) == CKR_OK) {
        hsm_token_text(desc, sizeof(desc), info.libraryDescription,
                       sizeof(info.libraryDescription));
        hsm_token_text(manu, sizeof(manu), info.manufacturerID, sizeof(info.manufacturerID));
        snprintf(t->module_info, sizeof(t->module_info), "%s %u.%u (%s)", desc,
                 info.libraryVersion.major, info.libraryVersion.minor, manu);
    }
    return 0;
}

CK_RV hsm_token_slots(CK_FUNCTION_LIST *f, CK_SLOT_ID **slots, CK_ULONG *n)
{
    CK_RV rv = CKR_BUFFER_TOO_SMALL;
    *slots = NULL;
    *n = 0;
    for (int tries = 0; tries < 4 && rv == CKR_BUFFER_TOO_SMALL; tries++) {
        CK_ULONG want = 0;
        if ((rv = f->C_GetSlotList(CK_TRUE, NULL, &want)) != CKR_OK)
            break;
        if (want > HSM_MAX_SLOTS)
            return CKR_GENERAL_ERROR;
        free(*slots);
        if ((*slots = calloc(want + 1, sizeof(**slots))) == NULL)
            return CKR_HOST_MEMORY;
        *n = want;
        rv = f->C_GetSlotList(CK_TRUE, *slots, n);
    }
    if (rv != CKR_OK) {
        free(*slots);
        *slots = NULL;
        *n = 0;
    }
    return rv;
}

static int token_find(hsm_token *t, CK_TOKEN_INFO *found, hsm_status *st)
{
    CK_SLOT_ID *slots;
    CK_ULONG n;
    CK_TOKEN_INFO ti;
    char label[HSM_TOKEN_LABEL_MAX + 1], seen[256] = "";
    size_t seenlen = 0;
    int matches = 0;
    CK_RV rv = hsm_token_slots(t->mod, &slots, &n);

    if (rv != CKR_OK)
        return hsm_status_set(st, COFFER_ERR_HSM_TOKEN, "token", rv,
                              "listing the slots of PKCS#11 module '%s' failed: %s", t->module_spec,
                              hsm_rv_name(rv));
    for (CK_ULONG i = 0; i < n; i++) {
        if (t->mod->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
            continue;
        if (!(ti.flags & CKF_TOKEN_INITIALIZED))
            continue;
        hsm_token_text(label, sizeof(label), ti.label, sizeof(ti.label));
        if (strcmp(label, t->token_label) == 0) {
            if (matches++ == 0) {
                t->slot = slots[i];
                *found = ti;
            }
        } else if (seenlen + strlen(label) + 5 < sizeof(seen)) {
            seenlen += (size_t)snprintf(seen + seenlen, sizeof(seen) - seenlen, "%s'%s'",
                                        seenlen ? ", " : "", label);
        }
    }
    free(slots);
    if (matches == 0)
        return hsm_status_set(st, COFFER_ERR_HSM_TOKEN, "token", HSM_STATUS_NO_RV,
                              "no token labelled '%s' in PKCS#11 module '%s' (tokens present: "
                              "%s)",
                              t->token_label, t->module_spec, seenlen ? seen : "none");
    if (matches > 1)
        return hsm_status_set(st, COFFER_ERR_HSM_TOKEN, "token", HSM_STATUS_NO_RV,
                              "%d tokens are labelled '%s' in PKCS#11 module '%s'; coffer needs "
                              "exactly one: relabel the others",
                              matches, t->token_label, t->module_spec);
    return 0;
}

static void pin_mac(const struct hsm_pin_memory *pm, const char *pin, size_t len,
                    uint8_t out[HSM_PIN_MAC_LEN])
{
    unsigned int n = HSM_PIN_MAC_LEN;
    if (HMAC(EVP_sha256(), pm->mac_key, sizeof(pm->mac_key), (const unsigned char *)pin, len, out,
             &n) == NULL)
        memset(out, 0, HSM_PIN_MAC_LEN);
}

static int token_login(hsm_token *t, const CK_TOKEN_INFO *ti, hsm_status *st)
{
    char *pin = NULL;
    size_t len = 0;
    uint8_t mac[HSM_PIN_MAC_LEN];
    hsm_pin_source src = {t->pin_file, t->pin_env};
    int r = COFFER_ERR_INTERNAL;
    CK_RV rv;

    if (ti->flags & CKF_USER_PIN_LOCKED)
        return hsm_status_set(st, COFFER_ERR_HSM_LOGIN, "login", CKR_PIN_LOCKED,
                              "the user PIN of token '%s' is locked (too many wrong PINs); the "
                              "token's security officer must unlock it",
                              t->token_label);
    if (!(ti->flags & CKF_USER_PIN_INITIALIZED))
        return hsm_status_set(st, COFFER_ERR_HSM_LOGIN, "login", CKR_USER_PIN_NOT_INITIALIZED,
                              "token '%s' has no user PIN set", t->token_label);
    if ((r = hsm_pin_read(&src, &pin, &len, st)) < 0)
        return r;
    pin_mac(t->pinmem, pin, len, mac);
    if (t->pinmem->have_refused && CRYPTO_memcmp(mac, t->pinmem->refused, sizeof(mac)) == 0) {
        /* Trying a known-wrong PIN again would only bring the token closer to locking it. */
        r = hsm_status_set(st, COFFER_ERR_HSM_LOGIN, "login", CKR_PIN_INCORRECT,
                           "login to token '%s' not tried again: the PIN is still the one the "
                           "token refused (CKR_PIN_INCORRECT); correct the PIN source and the "
                           "next call will try it",
                           t->token_label);
        goto out;
    }
    rv = t->mod->C_Login(t->anchor, CKU_USER, (CK_UTF8CHAR_PTR)pin, (CK_ULONG)len);
    if (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN) {
        t->pinmem->have_refused = 0;
        r = 0;
        goto out;
    }
    if (rv == CKR_PIN_INCORRECT) {
        memcpy(t->pinmem->refused, mac, sizeof(mac));
        t->pinmem->have_refused = 1;
    }
    r = hsm_status_set(st, COFFER_ERR_HSM_LOGIN, "login", rv,
                       "login to token '%s' in PKCS#11 module '%s' with the PIN from %s%s failed: "
                       "%s",
                       t->token_label, t->module_spec, t->pin_file != NULL ? "file " : "",
                       t->pin_file != NULL ? t->pin_file
                                           : (t->pin_env != NULL ? t->pin_env : HSM_PIN_ENV_DEF),
                       hsm_rv_name(rv));
out:
    OPENSSL_cleanse(mac, sizeof(mac));
    hsm_pin_free(pin);
    return r;
}

/* Under the write lock. */
static int token_connect_locked(hsm_token *t, hsm_status *st)
{
    CK_TOKEN_INFO ti;
    char model[17], serial[17];
    int r;
    CK_RV rv;

    if (t->mod != NULL)
        token_disconnect_locked(t);
    if ((r = module_load(t, st)) < 0)
        return r;
    if ((r = module_init(t, st)) < 0)
        return r;
    if (t->token_label != NULL) {
        if ((r = token_find(t, &ti, st)) < 0)
            goto fail;
        hsm_token_text(model, sizeof(model), ti.model, sizeof(ti.model));
        hsm_token_text(serial, sizeof(serial), ti.serialNumber, sizeof(ti.serialNumber));
        snprintf(t->token_info, sizeof(t->token_info), "slot %lu, %s, serial %s",
                 (unsigned long)t->slot, model, serial);
        rv = t->mod->C_OpenSession(t->slot, CKF_SERIAL_SESSION, NULL, NULL, &t->anchor);
        if (rv != CKR_OK) {
            r = hsm_status_set(st, COFFER_ERR_HSM_TOKEN, "token", rv,
                               "opening a session on token '%s' in PKCS#11 module '%s' failed: %s",
                               t->token_label, t->module_spec, hsm_rv_name(rv));
            goto fail;
        }
        if ((r = token_login(t, &ti, st)) < 0)
            goto fail;
    }
    pthread_mutex_lock(&t->pool_mu);
    t->pool_nfree = 0; /* sessions of the old connection died with it */
    t->pool_open = 0;
    t->pool_limit = t->max_sessions;
    if (t->token_label != NULL && ti.ulMaxSessionCount != CK_EFFECTIVELY_INFINITE &&
        ti.ulMaxSessionCount != CK_UNAVAILABLE_INFORMATION &&
        ti.ulMaxSessionCount < HSM_UNBOUNDED) {
        /* one of the token's sessions is the login anchor */
        unsigned tok = ti.ulMaxSessionCount > 1 ? (unsigned)ti.ulMaxSessionCount - 1 : 1;
        if (t->pool_limit == 0 || tok < t->pool_limit)
            t->pool_limit = tok;
    }
    pthread_mutex_unlock(&t->pool_mu);
    t->gen++;
    t->connected = 1;
    atomic_store(&t->broken, 0);
    hsm_token_keys_forget(t);
    if (t->token_label != NULL)
        token_log(t, "pkcs11: connected to token '%s' (%s) through module '%s' (%s)",
                  t->token_label, t->token_info, t->module_spec, t->module_info);
    else
        token_log(t, "pkcs11: loaded module '%s' (%s)", t->module_spec, t->module_info);
    return 0;
fail:
    token_disconnect_locked(t);
    return r;
}

/*
 * With the read lock held: give s a session of the current connection from the pool, opening one
 * while the pool is below its limit and waiting for a free one at the limit. A token that says
 * CKR_SESSION_COUNT lowers the limit to the sessions we hold, and the call waits for one of them.
 */
static int session_ensure(hsm_token *t, hsm_session *s, hsm_status *st)
{
    CK_RV rv;
    s->h = CK_INVALID_HANDLE;
    s->gen = 0;
    if (t->token_label == NULL)
        return 0;
    pthread_mutex_lock(&t->pool_mu);
    for (;;) {
        if (t->pool_nfree > 0) {
            s->h = t->pool_free[--t->pool_nfree];
            s->gen = t->gen;
            pthread_mutex_unlock(&t->pool_mu);
            return 0;
        }
        if (t->pool_limit == 0 || t->pool_open < t->pool_limit)
            break;
        pthread_cond_wait(&t->pool_cv, &t->pool_mu);
    }
    t->pool_open++;
    pthread_mutex_unlock(&t->pool_mu);
    rv = hsm_token_rv(s, t->mod->C_OpenSession(t->slot, CKF_SERIAL_SESSION, NULL, NULL, &s->h));
    if (rv == CKR_OK) {
        s->gen = t->gen;
        return 0;
    }
    pthread_mutex_lock(&t->pool_mu);
    t->pool_open--;
    if (rv == CKR_SESSION_COUNT && t->pool_open > 0) {
        /* at the token's real limit: use the sessions we have, one thread at a time */
        t->pool_limit = t->pool_open;
        pthread_mutex_unlock(&t->pool_mu);
        token_log(t,
                  "pkcs11: token '%s' allows no more sessions (CKR_SESSION_COUNT); sharing "
                  "the %u open ones",
                  t->token_label, t->pool_open);
        return session_ensure(t, s, st);
    }
    pthread_cond_signal(&t->pool_cv);
    pthread_mutex_unlock(&t->pool_mu);
    s->h = CK_INVALID_HANDLE;
    return hsm_status_set(st, COFFER_ERR_HSM_TOKEN, "token", rv,
                          "opening a session on token '%s' in PKCS#11 module '%s' failed: %s",
                          t->token_label, t->module_spec, hsm_rv_name(rv));
}

/* With the read lock held: give s's session back to the pool, or close it when it broke. */
static void session_release(hsm_token *t, hsm_session *s, int discard)
{
    if (s->h == CK_INVALID_HANDLE || s->gen != t->gen) {
        s->h = CK_INVALID_HANDLE;
        s->gen = 0;
        return;
    }
    if (discard)
        (void)t->mod->C_CloseSession(s->h); /* a closed session says so again; nothing to do */
    pthread_mutex_lock(&t->pool_mu);
    if (!discard && t->pool_nfree < HSM_POOL_MAX) {
        t->pool_free[t->pool_nfree++] = s->h;
    } else {
        if (!discard)
            (void)t->mod->C_CloseSession(s->h);
        t->pool_open--;
    }
    pthread_cond_signal(&t->pool_cv);
    pthread_mutex_unlock(&t->pool_mu);
    s->h = CK_INVALID_HANDLE;
    s->gen = 0;
}

unsigned hsm_token_session_limit(hsm_token *t)
{
    pthread_mutex_lock(&t->pool_mu);
    unsigned l = t->pool_limit;
    pthread_mutex_unlock(&t->pool_mu);
    return l;
}

/* Take the read lock on a live connection, connecting (under the write lock) when needed. */
static int token_enter(hsm_token *t, hsm_status *st)
{
    for (int tries = 0; tries < 3; tries++) {
        pthread_rwlock_rdlock(&t->lock);
        if (t->connected && !atomic_load(&t->broken))
            return 0;
        pthread_rwlock_unlock(&t->lock);
        pthread_rwlock_wrlock(&t->lock);
        int r = 0;
        if (!t->connected || atomic_load(&t->broken)) {
            r = token_connect_locked(t, st);
            if (r < 0 && strcmp(t->last_connect_err, st->text) != 0) {
                snprintf(t->last_connect_err, sizeof(t->last_connect_err), "%s", st->text);
                token_log(t, "pkcs11: %s", st->text);
            } else if (r == 0) {
                t->last_connect_err[0] = '\0';
            }
        }
        pthread_rwlock_unlock(&t->lock);
        if (r < 0)
            return r;
    }
    return hsm_status_set(st, COFFER_ERR_HSM_CALL, "token", HSM_STATUS_NO_RV,
                          "the connection to token '%s' keeps breaking while connecting",
                          t->token_label ? t->token_label : "");
}

int hsm_token_run(hsm_token *t, hsm_session *s, hsm_token_op op, void *arg, hsm_status *st)
{
    int r = COFFER_ERR_INTERNAL, fresh_tried = 0;

    for (int attempt = 0; attempt < 2; attempt++) {
        s->lost = 0;
        s->closed = 0;
        hsm_status_clear(st);
        if ((r = token_enter(t, st)) < 0)
            return r;
        uint64_t gen = t->gen;
        r = session_ensure(t, s, st);
        if (r == 0)
            r = op(t, s, arg, st);
        if (s->closed && !fresh_tried) {
            /* The token closed this one session (or forgot it): try once more on a fresh
             * session before the whole connection counts as lost. */
            fresh_tried = 1;
            session_release(t, s, 1);
            s->lost = 0;
            s->closed = 0;
            hsm_status_clear(st);
            r = session_ensure(t, s, st);
            if (r == 0)
                r = op(t, s, arg, st);
            if (!s->lost)
                token_log(t,
                          "pkcs11: a session of token '%s' was closed under a call; retried "
                          "on a fresh session",
                          t->token_label ? t->token_label : "");
        }
        session_release(t, s, s->lost || s->closed);
        pthread_rwlock_unlock(&t->lock);
        if (!s->lost)
            return r;
        /* Only the first thread to notice breaks this generation; the next enter reconnects. */
        pthread_rwlock_rdlock(&t->lock);
        if (t->gen == gen && t->connected && atomic_exchange(&t->broken, 1) == 0)
            token_log(t, "pkcs11: lost the connection to token '%s' (%s); reconnecting",
                      t->token_label ? t->token_label : "", st->ckr[0] ? st->ckr : st->text);
        pthread_rwlock_unlock(&t->lock);
    }
    return r;
}

void hsm_token_session_close(hsm_token *t, hsm_session *s)
{
    /* Sessions live in the token's pool, closed with the connection. */
    (void)t;
    s->h = CK_INVALID_HANDLE;
    s->gen = 0;
}

/* ---- keys ---- */

void hsm_token_keys_forget(hsm_token *t)
{
    pthread_mutex_lock(&t->keys_mu);
    memset(t->keys, 0, sizeof(t->keys));
    memset(t->negs, 0, sizeof(t->negs));
    pthread_mutex_unlock(&t->keys_mu);
}

static int kind_ok(hsm_token *t, hsm_session *s, CK_OBJECT_HANDLE o, int kind)
{
    CK_KEY_TYPE kt = ~0UL;
    CK_ATTRIBUTE a = {CKA_KEY_TYPE, &kt, sizeof(kt)};
    if (kind == HSM_FIND_AES)
        return 1; /* the search template already says CKK_AES */
    if (t->mod->C_GetAttributeValue(s->h, o, &a, 1) != CKR_OK)
        return 0;
    return kt == CKK_GENERIC_SECRET || kt == CKK_AES || kt == CKK_SHA256_HMAC;
}

int hsm_token_key_find(hsm_token *t, hsm_session *s, const char *label, CK_OBJECT_HANDLE *key,
                       hsm_status *st)
{
    return hsm_token_secret_find(t, s, label, HSM_FIND_AES, key, st);
}

int hsm_token_secret_find(hsm_token *t, hsm_session *s, const char *label, int kind,
                          CK_OBJECT_HANDLE *key, hsm_status *st)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_LABEL, (void *)label, strlen(label)},
        {CKA_KEY_TYPE, &kt, sizeof(kt)},
    };
    const char *what = kind == HSM_FIND_AES ? "AES secret key" : "HMAC key";
    CK_OBJECT_HANDLE found[2];
    CK_ULONG n = 0;
    CK_RV rv;
    int r;

    if ((r = hsm_token_label_check("key", label, HSM_KEY_LABEL_MAX, st)) < 0)
        return r;
    pthread_mutex_lock(&t->keys_mu);
    for (unsigned i = 0; i < HSM_KEY_SLOTS; i++) {
        if (t->keys[i].gen == t->gen && t->keys[i].kind == kind &&
            strcmp(t->keys[i].label, label) == 0) {
            *key = t->keys[i].h;
            pthread_mutex_unlock(&t->keys_mu);
            return 0;
        }
    }
    pthread_mutex_unlock(&t->keys_mu);

    rv = hsm_token_rv(s, t->mod->C_FindObjectsInit(s->h, tmpl, kind == HSM_FIND_AES ? 3 : 2));
    if (rv == CKR_OK) {
        rv = hsm_token_rv(s, t->mod->C_FindObjects(s->h, found, 2, &n));
        (void)t->mod->C_FindObjectsFinal(s->h);
    }
    if (rv != CKR_OK)
        return hsm_status_set(st, COFFER_ERR_HSM_KEY, "key", rv,
                              "searching token '%s' for key '%s' failed: %s", t->token_label, label,
                              hsm_rv_name(rv));
    if (n == 0)
        return hsm_status_set(st, COFFER_ERR_HSM_KEY, "key", HSM_STATUS_NO_RV,
                              "no %s labelled '%s' on token '%s' (module '%s'); "
                              "'coffer hsm list' shows the keys, 'coffer hsm init-kek' creates one",
                              what, label, t->token_label, t->module_spec);
    if (n > 1)
        return hsm_status_set(st, COFFER_ERR_HSM_KEY, "key", HSM_STATUS_NO_RV,
                              "more than one %s is labelled '%s' on token '%s'; coffer "
                              "needs exactly one",
                              what, label, t->token_label);
    if (!kind_ok(t, s, found[0], kind))
        return hsm_status_set(st, COFFER_ERR_HSM_KEY, "key", HSM_STATUS_NO_RV,
                              "key '%s' on token '%s' is no HMAC key (generic secret or AES)",
                              label, t->token_label);
    pthread_mutex_lock(&t->keys_mu);
    struct hsm_key_slot *ks = &t->keys[t->keys_next++ % HSM_KEY_SLOTS];
    snprintf(ks->label, sizeof(ks->label), "%s", label);
    ks->kind = kind;
    ks->h = found[0];
    ks->gen = t->gen;
    pthread_mutex_unlock(&t->keys_mu);
    *key = found[0];
    return 0;
}

int hsm_token_neg_get(hsm_token *t, const char *label, hsm_negotiation *out)
{
    int r = -1;
    pthread_mutex_lock(&t->keys_mu);
    for (unsigned i = 0; i < HSM_KEY_SLOTS; i++) {
        if (t->negs[i].gen == t->gen && strcmp(t->negs[i].label, label) == 0) {
            *out = t->negs[i].neg;
            r = 0;
            break;
        }
    }
    pthread_mutex_unlock(&t->keys_mu);
    return r;
}

void hsm_token_neg_set(hsm_token *t, const char *label, const hsm_negotiation *neg)
{
    hsm_negotiation tmp;
    if (hsm_token_neg_get(t, label, &tmp) == 0)
        return;
    pthread_mutex_lock(&t->keys_mu);
    struct hsm_neg_slot *ns = &t->negs[t->negs_next++ % HSM_KEY_SLOTS];
    snprintf(ns->label, sizeof(ns->label), "%s", label);
    ns->neg = *neg;
    ns->gen = t->gen;
    pthread_mutex_unlock(&t->keys_mu);
}
