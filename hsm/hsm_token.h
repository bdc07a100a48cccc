/* SPDX-License-Identifier: Apache-2.0 */
/* Internal: one PKCS#11 connection (module, token, login, key handles) shared by HSM threads. */
#ifndef HSM_TOKEN_H
#define HSM_TOKEN_H

#include "engine_gcm.h"
#include "hsm_pin.h"
#include "hsm_status.h"

#include <p11-kit/pkcs11.h>
#include <stddef.h>
#include <stdint.h>

#define HSM_TOKEN_LABEL_MAX 32  /* CK_TOKEN_INFO.label is 32 blank-padded bytes */
#define HSM_KEY_LABEL_MAX   128 /* coffer's own limit on a CKA_LABEL */

/*
 * An hsm_token is used only by the HSM threads of one hsm_client; the client owns it. Every
 * PKCS#11 call runs inside hsm_token_run, which holds the connection for reading (so a reconnect,
 * which holds it for writing, never finalizes the module under a running call), connects first
 * when needed, and retries once after a reconnect when the call reported a lost connection.
 *
 * Each HSM thread owns one hsm_session: PKCS#11 sessions are for one thread at a time. A session
 * belongs to one connection generation and is reopened after a reconnect.
 */
typedef struct hsm_token hsm_token;

typedef struct hsm_session {
    CK_SESSION_HANDLE h;
    uint64_t gen; /* the connection generation h belongs to; 0: none */
    int lost;     /* set by hsm_token_rv when a call's CK_RV means "reconnect" */
    int closed;   /* set by hsm_token_rv for CKR_SESSION_CLOSED / _HANDLE_INVALID: a fresh
                     session is tried before the whole connection counts as lost */
} hsm_session;

typedef struct hsm_token_config {
    const char *module; /* a path (contains '/') or a p11-kit module name ("softhsm2") */
    const char *token;  /* token label; NULL: module only (listing tokens) */
    hsm_pin_source pin;
    void (*log)(void *ctx, const char *line); /* may be NULL */
    void *log_ctx;
    int mechanism;         /* hsm_mech (hsm_kek.h): 0 negotiates */
    unsigned max_sessions; /* 0: as many as the token allows (and the HSM threads use) */
} hsm_token_config;

/* Copies the configuration; connects nothing yet. COFFER_ERR_CONFIG for a bad label or module. */
int hsm_token_new(hsm_token **out, const hsm_token_config *cfg, hsm_status *st) COFFER_WUR;
/* Finalizes and releases the module. No HSM thread may be inside hsm_token_run. */
void hsm_token_free(hsm_token *t);

typedef int (*hsm_token_op)(hsm_token *t, hsm_session *s, void *arg, hsm_status *st);

/* Run op with the connection held (see above). Returns op's result or the connect failure. */
int hsm_token_run(hsm_token *t, hsm_session *s, hsm_token_op op, void *arg, hsm_status *st);

/* Close the thread's session (at thread exit). */
void hsm_token_session_close(hsm_token *t, hsm_session *s);

/* A blank-padded PKCS#11 text field (label, model...) as a C string; unprintable bytes as '?'. */
void hsm_token_text(char *dst, size_t cap, const unsigned char *src, size_t n);

/* ---- for ops (inside hsm_token_run) ---- */

CK_FUNCTION_LIST *hsm_token_module(const hsm_token *t);
CK_SLOT_ID hsm_token_slot(const hsm_token *t);
const char *hsm_token_module_name(const hsm_token *t); /* as configured */
const char *hsm_token_label(const hsm_token *t);       /* as configured, or NULL */
/* What was found at connect: "SoftHSM 2.6 (SoftHSM project)" and "slot 1234, SoftHSM v2 ...". */
const char *hsm_token_module_info(const hsm_token *t);
const char *hsm_token_token_info(const hsm_token *t);

/* Records in s whether rv means "reconnect" and returns rv. */
CK_RV hsm_token_rv(hsm_session *s, CK_RV rv);

/*
 * Find the one AES secret key labelled label (handles are cached per connection).
 * COFFER_ERR_HSM_KEY when there is none or more than one.
 */
int hsm_token_key_find(hsm_token *t, hsm_session *s, const char *label, CK_OBJECT_HANDLE *key,
                       hsm_status *st) COFFER_WUR;

/*
 * The slots of the module that have a token (C_GetSlotList(CK_TRUE), sized first and asked again
 * while the count grows). *slots is malloc'd (free it); returns CKR_OK or the failing CK_RV.
 */
CK_RV hsm_token_slots(CK_FUNCTION_LIST *f, CK_SLOT_ID **slots, CK_ULONG *n);

/* The one secret key labelled label of a kind: HSM_FIND_AES (an AES key) or HSM_FIND_MAC (an
 * HMAC key: generic secret, AES or CKK_SHA256_HMAC). COFFER_ERR_HSM_KEY for none or several. */
enum { HSM_FIND_AES = 0, HSM_FIND_MAC = 1 };
int hsm_token_secret_find(hsm_token *t, hsm_session *s, const char *label, int kind,
                          CK_OBJECT_HANDLE *key, hsm_status *st) COFFER_WUR;

/* The configured mechanism (hsm_mech; 0 negotiates). */
int hsm_token_mechanism(const hsm_token *t);
/* The mechanism negotiated for label on the current connection: 0 and *out, or -1 when none. */
struct hsm_negotiation;
int hsm_token_neg_get(hsm_token *t, const char *label, struct hsm_negotiation *out);
void hsm_token_neg_set(hsm_token *t, const char *label, const struct hsm_negotiation *neg);
/* The session limit in force: the configured one, lowered to the token's ulMaxSessionCount (less
 * the one coffer keeps for the login) and after CKR_SESSION_COUNT; 0 when unbounded. */
unsigned hsm_token_session_limit(hsm_token *t);

/* Forget cached key handles (after creating a key). */
void hsm_token_keys_forget(hsm_token *t);

/* 0 if label is 1..max printable ASCII bytes, else COFFER_ERR_CONFIG with a sentence. */
int hsm_token_label_check(const char *what, const char *label, size_t max, hsm_status *st);

#endif
