/* SPDX-License-Identifier: Apache-2.0 */
/* cofferd's recovery recipients: the "recovery" entries every new coffer-v1 backup carries. */
#ifndef URING_RECOVERY_H
#define URING_RECOVERY_H

#include "engine_key.h"

#include <jansson.h>

#include <stddef.h>

#define URING_RECOVERY_FILES 8 /* --recovery-recipient files */

/*
 * The recipients of a runtime (uring_runtime.h), loaded from the --recovery-recipient files when the
 * runtime is built (start and SIGHUP; blocking file reads, main thread only). Immutable after
 * that except for a small cache, so any thread may seal with it: the entries of the last few
 * input keys (compared in full, in constant time) are kept, since the Secret key and a cached HSM
 * data key serve many backups and each entry costs two X25519 operations. Cached keys live in
 * locked memory and are wiped on free.
 */
struct uring_recovery;

/*
 * Load the recipients of files[0..n-1] (n may be 0: *out is then NULL and nothing is added to
 * backups). Returns 0, or the engine's code (COFFER_ERR_KEY_FORM, _KEY_MISSING, _TOO_LARGE, ...)
 * with a sentence in detail that names the file and line.
 */
int uring_recovery_new(struct uring_recovery **out, const char (*files)[4096], int n, char *detail,
                       size_t detaillen) __attribute__((warn_unused_result));
/* Free r and wipe its cached keys (NULL: nothing). Its runtime's last holder, any thread. */
void uring_recovery_free(struct uring_recovery *r);
/* Check the files at configuration time: 0, or COFFER_ERR_CONFIG with uring_recovery_new's
 * sentence ("--recovery-recipient: <file> line N: ..."). */
int uring_recovery_check(const char (*files)[4096], int n, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/* How many recipients (0 for NULL). Any thread. */
size_t uring_recovery_count(const struct uring_recovery *r);

/* Make and cache the entries of key now (the runtime's Secret key, on the main thread at start
 * and reload), so that no ring thread pays for them. Best effort: a failure shows at seal. */
void uring_recovery_warm(struct uring_recovery *r, const engine_key *key);

/*
 * Add the "recovery" field for key (the backup's input key: the Secret's key or the HSM data key
 * before wrapping) to the metadata text *meta (malloc'd, *len bytes, a compact JSON object made by
 * the daemon); *meta is replaced. r NULL: nothing to do. Returns 0, COFFER_ERR_NOMEM, or
 * COFFER_ERR_TOO_LARGE with a sentence when the metadata would exceed ENGINE_METADATA_MAX.
 * Thread-safe; never blocks on I/O.
 */
int uring_recovery_seal(struct uring_recovery *r, const engine_key *key, char **meta, size_t *len,
                        char *detail, size_t detaillen) __attribute__((warn_unused_result));

/*
 * A restore whose key cannot be found: when the backup's metadata (untrusted, NULL allowed) names
 * recovery recipients, append to detail that an identity of one of them opens it offline (cut
 * to fit detaillen). Any thread; never fails, never blocks.
 */
void uring_recovery_hint(const json_t *meta, char *detail, size_t detaillen);

#endif
