/* SPDX-License-Identifier: Apache-2.0 */
/* Key administration for the CLI: create a key-encryption key, list keys and tokens, check a setup.
 */
#ifndef HSM_ADMIN_H
#define HSM_ADMIN_H

#include "hsm_client.h"
#include "hsm_kek.h"
#include "hsm_token.h"

#include <stddef.h>

/*
 * Create the AES-256 key-encryption key `label` on the client's token with C_GenerateKey
 * (CKM_AES_KEY_GEN) and the template coffer needs: CKA_TOKEN, CKA_PRIVATE and CKA_SENSITIVE
 * true, CKA_EXTRACTABLE false, CKA_ENCRYPT and CKA_DECRYPT true, CKA_WRAP, CKA_UNWRAP, CKA_SIGN,
 * CKA_VERIFY and CKA_DERIVE false. The key never leaves the token.
 *
 * A label that any object on the token already has is refused (COFFER_ERR_INVALID_ARG): two keys
 * under one label would make backups ambiguous. The check and the creation are two PKCS#11 calls,
 * so two processes creating the same label at the same moment can still both succeed; coffer then
 * refuses to use the label (COFFER_ERR_HSM_KEY) until one is deleted.
 */
int hsm_admin_kek_create(hsm_client *c, const char *label, hsm_status *st) COFFER_WUR;

/*
 * The same for the client's mechanism, or the one the token offers first (hsm_kek_negotiate
 * without a key): for GCM and encrypt-then-MAC the KEK may encrypt/decrypt only, for RFC 5649 key
 * wrap it may wrap/unwrap only; encrypt-then-MAC also gets its HMAC key "<label>-hmac" (a 256-bit
 * generic secret: private, sensitive, never extractable, sign/verify only). neg (NULL allowed)
 * says which mechanism the key was made for and why the others were passed over.
 */
int hsm_admin_kek_create_for(hsm_client *c, const char *label, hsm_negotiation *neg,
                             hsm_status *st) COFFER_WUR;

/* An attribute that the token would not tell is -1 (for the flags) or 0 (for the lengths). */
typedef struct hsm_key_info {
    char label[HSM_KEY_LABEL_MAX + 1];
    unsigned long key_type;  /* CKK_AES, ...; ~0UL if unknown */
    unsigned long value_len; /* bytes */
    int is_private, sensitive, extractable, always_sensitive, never_extractable;
    int encrypt, decrypt, wrap, unwrap, sign, verify, derive;
} hsm_key_info;

/* The secret keys on the client's token (at most 1024). *keys is malloc'd: free() it. */
int hsm_admin_keys_list(hsm_client *c, hsm_key_info **keys, size_t *n, hsm_status *st) COFFER_WUR;

/* "AES-256", "GENERIC_SECRET", "CKK_0x..": for listings. Uses a per-thread buffer. */
const char *hsm_admin_key_type_name(unsigned long key_type, unsigned long value_len);

/* 1 when the key has the template of coffer's HMAC key for encrypt-then-MAC (a 256-bit generic
 * secret: private, sensitive, never extractable, sign/verify only). */
int hsm_admin_mac_key_ok(const hsm_key_info *k);

/* 0 when the key has coffer's KEK template (encrypt/decrypt only, or wrap/unwrap only for RFC 5649
 * key wrap); else writes what is wrong into why and returns 1. */
int hsm_admin_key_weak(const hsm_key_info *k, char *why, size_t whylen);

typedef struct hsm_token_desc {
    unsigned long slot;
    char label[HSM_TOKEN_LABEL_MAX + 1];
    char manufacturer[33];
    char model[17];
    char serial[17];
    int initialized;
} hsm_token_desc;

/* The tokens present in the client's module (no login needed; the client's token may be NULL).
 * *tokens is malloc'd: free() it. */
int hsm_admin_tokens_list(hsm_client *c, hsm_token_desc **tokens, size_t *n,
                          hsm_status *st) COFFER_WUR;

enum hsm_check_result {
    HSM_CHECK_OK = 0,
    HSM_CHECK_WARN = 1,
    HSM_CHECK_FAIL = 2,
    HSM_CHECK_SKIP = 3
};

#define HSM_CHECK_ITEMS 6
typedef struct hsm_check_item {
    const char *name; /* "module", "token", "login", "key", "wrap/unwrap", "mechanism" */
    enum hsm_check_result result;
    char text[HSM_STATUS_TEXT_MAX];
} hsm_check_item;

typedef struct hsm_check_report {
    hsm_check_item items[HSM_CHECK_ITEMS];
    int failed;          /* number of HSM_CHECK_FAIL items */
    int negotiated;      /* neg is filled */
    hsm_negotiation neg; /* the mechanism chosen and why the others were passed over */
} hsm_check_report;

/*
 * Check everything a backup needs, in order: the module loads and initialises, the token is
 * there, the login works, the client's key_label names exactly one AES key (a key that lacks
 * coffer's template is a warning), a wrapping mechanism is negotiated (item "mechanism", last, so
 * that the first five keep their places) and a fresh data key survives a wrap/unwrap round trip
 * with it.
 * Items after a failure are skipped. Returns 0 when nothing failed, else the first failure's code.
 */
int hsm_admin_check(hsm_client *c, hsm_check_report *rep);

#endif
