/* SPDX-License-Identifier: Apache-2.0 */
/* The pkcs11 key retriever: data keys for new backups and restores, through the cache and the HSM.
 */
#ifndef HSM_RETRIEVER_H
#define HSM_RETRIEVER_H

#include "hsm_cache.h"
#include "hsm_client.h"
#include "hsm_metadata.h"

#include <jansson.h>

/*
 * What the daemon uses for keyRetrieverType "pkcs11". It does not own the client; the client
 * must outlive it. Thread-safe.
 */
typedef struct hsm_retriever hsm_retriever;

/* lim NULL: hsm_cache_limits_default. clock NULL: CLOCK_MONOTONIC. */
int hsm_retriever_new(hsm_retriever **out, hsm_client *c, const hsm_cache_limits *lim,
                      hsm_cache_clock clock, void *clock_ctx) COFFER_WUR;
void hsm_retriever_free(hsm_retriever *r);

/*
 * A data key for a new backup of about `bytes` bytes (0 when unknown): the cached current key
 * when it is within the cache bounds, else a fresh 32-byte key (OpenSSL RAND_priv_bytes) wrapped
 * by the client's key_label. *dk is the caller's (engine_key_free); *config is the
 * keyRetrieverConfig to store (json_decref), see hsm_metadata.h. Concurrent callers that all miss
 * make one HSM call, not one each. On failure st says what was tried and why it failed, which is
 * what a fallback records (hsm_metadata_fallback_new).
 */
int hsm_retriever_backup_key(hsm_retriever *r, uint64_t bytes, engine_key **dk, json_t **config,
                             hsm_status *st) COFFER_WUR;

/* The backup that got data key key_id encrypted `bytes` bytes more than it declared. */
void hsm_retriever_backup_done(hsm_retriever *r, const char *key_id, uint64_t bytes);

/*
 * The data key of a backup from its keyRetrieverConfig (untrusted): from the cache, else
 * unwrapped by the token. COFFER_ERR_METADATA for a malformed config; COFFER_ERR_HSM_UNAVAILABLE
 * when the backup names a token other than the client's; otherwise hsm_kek_unwrap's codes, with
 * a sentence in st that says which token and key the restore needs.
 */
int hsm_retriever_restore_key(hsm_retriever *r, const json_t *config, engine_key **dk,
                              hsm_status *st) COFFER_WUR;

/*
 * Asynchronous forms of hsm_retriever_backup_key and hsm_retriever_restore_key, for callers that
 * must not wait (cofferd's ring threads): done(ctx, r, st, dk, config) runs exactly once with
 * what the synchronous form would return: dk and config are the callback's (engine_key_free,
 * json_decref; config is NULL for a restore). It runs on a thread of the client (the HSM call
 * ended, or its watchdog at the timeout), or on the caller's thread before the submit returns
 * when no HSM call is needed (a cache hit, a malformed or foreign config, no memory). Concurrent
 * backups that miss the cache make one HSM call: the others wait for it without a thread each,
 * then take the key it cached (or share its failure). done must not block for long nor free the
 * retriever or its client. Any thread; config is read before the submit returns.
 */
typedef void (*hsm_retriever_cb)(void *ctx, int r, const hsm_status *st, engine_key *dk,
                                 json_t *config);
void hsm_retriever_backup_key_submit(hsm_retriever *r, uint64_t bytes, hsm_retriever_cb done,
                                     void *ctx);
void hsm_retriever_restore_key_submit(hsm_retriever *r, const json_t *config,
                                      hsm_retriever_cb done, void *ctx);

/* The cache, for statistics, clearing and sweeping. */
hsm_cache *hsm_retriever_cache(hsm_retriever *r);

#endif
