/* SPDX-License-Identifier: Apache-2.0 */
/* velero-v1, the Velero prototype's format: nonce(12) || AES-GCM ciphertext || tag(16). */
#ifndef ENGINE_VELERO_H
#define ENGINE_VELERO_H

#include "engine_gcm.h"

#include <stddef.h>
#include <stdint.h>

#define ENGINE_VELERO_NONCE             12u
#define ENGINE_VELERO_TAG               16u
#define ENGINE_VELERO_SPOOL_MEM_DEFAULT (4u << 20)

/*
 * One GCM message over the whole archive, so its tag can only be checked at the very end.
 * Opening never releases plaintext before that: the ciphertext is spooled (in memory up to
 * spool_mem bytes, then to an unlinked temporary file in spool_dir, or $TMPDIR, or /tmp) while a
 * first pass computes the tag; after the tag verified, engine_velero_drain decrypts the spool a
 * second time and releases the plaintext. Memory stays bounded whatever the archive size.
 */
typedef struct engine_velero engine_velero;

/* key: 16, 24 or 32 raw bytes. */
int engine_velero_seal_new(engine_velero **out, engine_gcm_backend backend, const uint8_t *key,
                           size_t keylen) COFFER_WUR;
int engine_velero_open_new(engine_velero **out, engine_gcm_backend backend, const uint8_t *key,
                           size_t keylen, const char *spool_dir, size_t spool_mem) COFFER_WUR;
void engine_velero_free(engine_velero *v);

size_t engine_velero_bound(size_t inlen);
/* After a SPOOL or NOSPACE error: which directory and what the system said, else "". */
const char *engine_velero_spool_error(const engine_velero *v);
/* Sealing: writes ciphertext. Opening: writes nothing (spools). */
int engine_velero_update(engine_velero *v, const uint8_t *in, size_t inlen, uint8_t *out,
                         size_t outcap, size_t *outlen) COFFER_WUR;
/* Sealing: writes the tag. Opening: verifies the tag (TAMPERED / TRUNCATED); writes nothing. */
int engine_velero_final(engine_velero *v, uint8_t *out, size_t outcap, size_t *outlen) COFFER_WUR;
/* Opening, after a successful final: the next plaintext bytes (0 at the end). */
int engine_velero_drain(engine_velero *v, uint8_t *out, size_t outcap, size_t *outlen) COFFER_WUR;

#endif
