/* SPDX-License-Identifier: Apache-2.0 */
/* A bounded cache of data keys: the current one for new backups and unwrapped ones for restores. */
#ifndef HSM_CACHE_H
#define HSM_CACHE_H

#include "engine_gcm.h"
#include "engine_key.h"
#include "hsm_kek.h"

#include <stddef.h>
#include <stdint.h>

/*
 * Every HSM round trip costs a PKCS#11 call (SoftHSM2 serves about 40k per second in total; a
 * network HSM may take milliseconds), so many small jobs share data keys within these bounds:
 *
 * max_age_s    a data key is reused for at most this many seconds after it was generated or
 *              unwrapped; then it is wiped. 0 turns the cache off (every backup gets a fresh data
 *              key and every restore asks the HSM).
 * max_uses     backups that may share the current data key; restores one cached unwrapped key
 *              may serve. 0: no limit.
 * max_bytes    bytes that may be encrypted under one data key, counted from what each backup
 *              declares when it starts and what it reports when it ends. 0: no limit. Backups in
 *              flight may carry a key past the limit by at most their own size; the next backup
 *              then gets a new key.
 * max_entries  unwrapped data keys kept for restores (least recently used evicted). 0: none.
 *
 * Sharing a data key between backups is safe for coffer-v1: each backup's Cobblestone body
 * derives its own AES key and nonce from the data key with a fresh 24-byte random salt. The
 * bounds limit how much one leaked data key exposes. Cached keys live in engine_secmem and are
 * wiped on eviction, on hsm_cache_clear and on hsm_cache_free.
 */
typedef struct hsm_cache_limits {
    uint64_t max_age_s;
    uint64_t max_uses;
    uint64_t max_bytes;
    size_t max_entries;
} hsm_cache_limits;

#define HSM_CACHE_DEFAULT_AGE_S   300
#define HSM_CACHE_DEFAULT_USES    1000
#define HSM_CACHE_DEFAULT_BYTES   (64ULL << 30)
#define HSM_CACHE_DEFAULT_ENTRIES 256
#define HSM_CACHE_MAX_ENTRIES     65536

/* The defaults above. */
void hsm_cache_limits_default(hsm_cache_limits *lim);

/* A monotonic clock in milliseconds; NULL means CLOCK_MONOTONIC. Tests pass their own. */
typedef uint64_t (*hsm_cache_clock)(void *ctx);

typedef struct hsm_cache hsm_cache;

/* Returns 0, COFFER_ERR_CONFIG (max_entries above HSM_CACHE_MAX_ENTRIES) or _NOMEM. */
int hsm_cache_new(hsm_cache **out, const hsm_cache_limits *lim, hsm_cache_clock clock,
                  void *clock_ctx) COFFER_WUR;
/* Wipes every cached key. NULL allowed. */
void hsm_cache_free(hsm_cache *c);
/* Wipe every cached key now (after a KEK rotation, or on demand). */
void hsm_cache_clear(hsm_cache *c);
/* Wipe the keys that are past their age; the daemon calls this from time to time so that idle
 * keys do not stay in memory. Every other call sweeps too. */
void hsm_cache_sweep(hsm_cache *c);

/*
 * New backups. hsm_cache_current_take: when the current data key is within every bound for one
 * more backup of `bytes` bytes (0 when unknown), counts that use and returns 1 with a copy in *dk
 * (engine_key_free it) and its wrapped form in *w; else retires the key and returns 0. Negative on
 * out-of-memory.
 * hsm_cache_current_set: a freshly generated and wrapped key becomes the current one, counting
 * its first backup of `bytes` bytes; it is also kept for restores.
 * hsm_cache_current_account: a backup with data key id key_id encrypted `bytes` more bytes than
 * it declared.
 */
int hsm_cache_current_take(hsm_cache *c, uint64_t bytes, engine_key **dk,
                           hsm_wrapped *w) COFFER_WUR;
int hsm_cache_current_set(hsm_cache *c, const engine_key *dk, const hsm_wrapped *w,
                          uint64_t bytes) COFFER_WUR;
void hsm_cache_current_account(hsm_cache *c, const char *key_id, uint64_t bytes);

/*
 * Restores, keyed by the whole wrapped blob (label, iv, ciphertext and tag).
 * hsm_cache_restore_take: 1 with a copy in *dk on a hit (counting a use), 0 on a miss.
 * hsm_cache_restore_put: keep an unwrapped key (a no-op when the cache is off).
 */
int hsm_cache_restore_take(hsm_cache *c, const hsm_wrapped *w, engine_key **dk) COFFER_WUR;
int hsm_cache_restore_put(hsm_cache *c, const hsm_wrapped *w, const engine_key *dk) COFFER_WUR;

/*
 * A hit is a take that returned a key. A miss is counted when the missing key is put in
 * (hsm_cache_current_set, hsm_cache_restore_put), so misses count HSM round trips, once each,
 * however many takes looked before.
 */
typedef struct hsm_cache_stats {
    uint64_t backup_hits, backup_misses;
    uint64_t restore_hits, restore_misses;
    uint64_t evicted_age, evicted_uses, evicted_bytes, evicted_capacity;
    size_t restore_entries; /* keys held for restores now */
    int have_current;       /* a current data key is held now */
} hsm_cache_stats;

void hsm_cache_stats_get(hsm_cache *c, hsm_cache_stats *out);

#endif
