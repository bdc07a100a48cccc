/* SPDX-License-Identifier: Apache-2.0 */
/* Key material: the key-form rules of each format, key ids, and loading a key from a file. */
#ifndef ENGINE_KEY_H
#define ENGINE_KEY_H

#include "engine_gcm.h"

#include <stddef.h>
#include <stdint.h>

#define ENGINE_KEY_MAX       32
#define ENGINE_KEY_ID_LEN    16   /* hex characters */
#define ENGINE_KEY_FIELD_MAX 4096 /* a key field longer than this is refused unread */

typedef enum {
    /* coffer-v1 and bare Cobblestone-256: exactly 32 uniformly random bytes, given raw, or as
     * base64 or hex text (one trailing newline allowed). A 32-byte value made only of printable
     * characters is a passphrase and refused (COFFER_ERR_KEY_FORM). */
    ENGINE_KEY_RULE_COFFER = 0,
    /* velero-v1: the raw bytes of the Secret value, 16, 24 or 32 bytes (AES-128/192/256). */
    ENGINE_KEY_RULE_VELERO = 1,
    /* Cobblestone-128 (bare chunked encryption with AES-128-GCM): 16 raw bytes, or base64/hex. */
    ENGINE_KEY_RULE_COBBLESTONE_128 = 2,
} engine_key_rule;

/* A key in locked memory (engine_secmem); free with engine_key_free, which wipes it. */
typedef struct engine_key {
    uint8_t bytes[ENGINE_KEY_MAX];
    size_t len;
    char id[ENGINE_KEY_ID_LEN + 1]; /* keyId: hex of HMAC-SHA-256(key, "coffer key id")[0..8] */
} engine_key;

/*
 * Apply a rule to a Secret field's bytes. On failure returns COFFER_ERR_KEY_SIZE or _KEY_FORM
 * and, if detail is not NULL, writes one sentence naming what was found (its length, never its
 * content) and the fix.
 */
int engine_key_parse(engine_key **out, engine_key_rule rule, const uint8_t *field, size_t len,
                     char *detail, size_t detaillen) COFFER_WUR;

/*
 * Read a key file (at most ENGINE_KEY_FIELD_MAX bytes) and apply the rule. The file is opened
 * non-blocking and must be a regular file of at most ENGINE_KEY_FIELD_MAX bytes (checked with
 * fstat before anything is read), so a FIFO or a device never blocks or floods the caller:
 * KEY_READ "not a regular file", KEY_SIZE "more than ... bytes". The detail names path.
 */
int engine_key_load_file(engine_key **out, engine_key_rule rule, const char *path, char *detail,
                         size_t detaillen) COFFER_WUR;

/* A fresh key of len random bytes (16, 24 or 32), for keygen and HSM data keys. */
int engine_key_generate(engine_key **out, size_t len) COFFER_WUR;

/* A key from raw bytes with no form rule (unwrapped HSM data keys). */
int engine_key_from_bytes(engine_key **out, const uint8_t *bytes, size_t len) COFFER_WUR;

/* keyId of raw key bytes: 16 lowercase hex characters and a NUL. */
void engine_key_id(const uint8_t *key, size_t len, char out[ENGINE_KEY_ID_LEN + 1]);

void engine_key_free(engine_key *k);

#endif
