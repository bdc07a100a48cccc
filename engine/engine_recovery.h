/* SPDX-License-Identifier: Apache-2.0 */
/* Recovery entries: a backup's input key as age files to offline recipients, in its metadata. */
#ifndef ENGINE_RECOVERY_H
#define ENGINE_RECOVERY_H

#include "engine_age.h"
#include "engine_key.h"

#include <jansson.h>
#include <stddef.h>

/*
 * A coffer-v1 backup made with recovery recipients carries, in its status metadata (inside the
 * authenticated header), after its other fields:
 *
 *   "recovery": [{"recipient": "age1...", "age": "<standard base64, padded, of an age file>"}, ...]
 *
 * one entry per recipient, each a complete binary age file (engine_age_encrypt) whose plaintext
 * is the backup's input key: the Secret's 32 bytes, or an HSM backup's data key as it is before
 * the token wraps it. Anyone holding one of the identities can therefore read the backup, with no
 * Secret, HSM, daemon or cluster; and since the header is the chunked encryption's context, an
 * entry cannot be removed, swapped or altered without the restore failing.
 *
 * Size: one entry is ENGINE_RECOVERY_ENTRY_BYTES of JSON; with ENGINE_AGE_LIST_MAX (64)
 * recipients that is 25.6 KB, which leaves more than 6 KB of the 31,988-byte metadata limit to the
 * rest of the metadata.
 */
#define ENGINE_RECOVERY_FIELD       "recovery"
#define ENGINE_RECOVERY_ENTRY_BYTES 400 /* with the comma between entries */

/*
 * Add the "recovery" field to meta (a JSON object without one) for the key (32 bytes) and every
 * recipient of rs (at least one). Returns 0, COFFER_ERR_INVALID_ARG (meta already has the field,
 * rs empty), or engine_age_encrypt's codes, with one sentence in detail (NULL allowed).
 */
int engine_recovery_add(json_t *meta, const engine_age_recipients *rs, const engine_key *key,
                        char *detail, size_t detaillen) COFFER_WUR;

/*
 * The same on metadata text (len bytes): *out (malloc, NUL-terminated; free() it) is the text with
 * the field added. COFFER_ERR_TOO_LARGE, with the sizes and the limit in detail, when the result
 * exceeds ENGINE_METADATA_MAX; COFFER_ERR_METADATA when text is not a JSON object.
 */
int engine_recovery_add_text(const char *text, size_t len, const engine_age_recipients *rs,
                             const engine_key *key, char **out, char *detail,
                             size_t detaillen) COFFER_WUR;

/*
 * The recipients named by meta's "recovery" field (untrusted): up to max pointers into meta's
 * strings in out; returns how many entries there are (0 when none), or COFFER_ERR_METADATA when
 * the field is present but malformed (not an array of at most ENGINE_AGE_LIST_MAX objects with
 * string fields "recipient" and "age").
 */
int engine_recovery_recipients(const json_t *meta, const char **out, size_t max) COFFER_WUR;

/*
 * The input key of a backup from its metadata (untrusted) and identities: the entry whose
 * recipient is one of the identities' is decrypted, must hold exactly 32 bytes, and its key id
 * must equal the metadata's keyId. *out is a new key in locked memory (engine_key_free).
 * Returns 0; COFFER_ERR_KEY_MISSING (the backup has no recovery entry), COFFER_ERR_WRONG_KEY (no
 * entry for these identities: detail lists the backup's recipients and the identities'),
 * COFFER_ERR_METADATA (a malformed field), COFFER_ERR_TAMPERED (an entry that does not open or
 * whose key does not match keyId); with one sentence in detail.
 */
int engine_recovery_open(const json_t *meta, const engine_age_identities *ids, engine_key **out,
                         char *detail, size_t detaillen) COFFER_WUR;

#endif
