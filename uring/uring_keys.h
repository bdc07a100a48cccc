/* SPDX-License-Identifier: Apache-2.0 */
/* Keys off the ring threads: the runtime snapshot (config + key of new backups) and the loader. */
#ifndef URING_KEYS_H
#define URING_KEYS_H

#include "engine_key.h"
#include "engine_metadata.h"
#include "engine_stream.h"
#include "uring_config.h"
#include "uring_kube.h"
#include "uring_offload.h"

#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * What a job needs of the configuration, immutable once published and reference-counted: a
 * SIGHUP builds a new one (loading the key on the main thread) and swaps it in; jobs that took
 * the old one keep it until they finish. The key lives in engine_secmem (engine_key).
 */
struct uring_runtime {
    atomic_int refs;
    int encryption;
    int echo;
    int allow_plaintext_restore; /* restores of format none while encryption is on */
    coffer_format format;
    char ns[64];
    char secret[254];
    char secrets_dir[4096];
    char spool_dir[4096];
    engine_key *key; /* the key of new backups for `format`'s rule; NULL when off or echo */
    char *metadata;  /* the status metadata of a new backup in `format` (JSON text) */
    size_t metadata_len;
    struct uring_hsm *hsm;   /* the pkcs11 retriever (--hsm-*), or NULL; shared, see uring_hsm.h */
    struct uring_kube *kube; /* --secret-source kubernetes: the API source (owned), else NULL */
    struct uring_recovery *recovery; /* --recovery-recipient, or NULL (uring_recovery.h) */
    uid_t allow_uid[URING_MAX_ALLOW];
    int n_allow_uid;
    gid_t allow_gid[URING_MAX_ALLOW];
    int n_allow_gid;
};

/*
 * Build a runtime from a config: checks the Secret name and loads the key (blocking: call it on
 * the main thread). On failure returns the coffer code and one sentence in detail that says how
 * to fix it.
 */
int uring_runtime_build(const struct uring_config *cfg, struct uring_runtime **out, char *detail,
                        size_t detaillen) __attribute__((warn_unused_result));
/* Publish rt as the current runtime (takes over the caller's reference). */
void uring_runtime_publish(struct uring_runtime *rt);
/* A new reference to the current runtime; never NULL after the first publish. */
struct uring_runtime *uring_runtime_get(void);
void uring_runtime_put(struct uring_runtime *rt);
/* 1 if a peer with these credentials may connect. */
int uring_runtime_peer_allowed(const struct uring_runtime *rt, uid_t uid, gid_t gid);

/*
 * A key request. The requester fills task.done, task.ring, task.slot/gen (where the answer goes,
 * see uring_offload.h) and the block from secrets_dir to key_id; the loader fills err, detail and
 * key (a copy the requester owns) and the task comes back to task.ring, where done runs. Allocate
 * it with calloc (or at the front of a larger calloc'd block, uring_hsm_req_new) and free it with
 * uring_keyreq_free, which also frees the key. If the ring is gone by the time the answer comes
 * (shutdown), the loader frees it (task.drop).
 */
struct uring_keyreq {
    struct uring_offload_task task; /* first member */
    char secrets_dir[4096];
    char ns[64];
    char name[254];
    engine_key_rule rule;
    char key_id[ENGINE_KEY_ID_LEN + 1]; /* the keyId the backup names, or "" */
    int err;
    char detail[512];
    engine_key *key;
};

/* Free req and its key. NULL allowed. Any thread. */
void uring_keyreq_free(struct uring_keyreq *req);

/*
 * The key loader: requests run on the KEYS pool of uring_offload.h (URING_KEYS_THREADS threads,
 * so one slow Secret delays no other): each request is served from the source of the *current*
 * runtime: with --secret-source kubernetes a GET through the API (uring_kube_fetch, bounded by
 * --kube-timeout), else engine_secret_load (fresh open each time, so a Kubernetes ..data symlink
 * swap is seen). Keys are cached per (source, namespace, name, rule) in locked memory:
 * --secret-cache-ttl seconds for the API, a few seconds for files. Concurrent requests for one
 * Secret wait for one load: they are parked (no thread blocks on another's load) and answered
 * by the thread that loads it. A cached key whose keyId does not match the one asked for is
 * reloaded at once. uring_keys_flush (SIGHUP) empties the cache; a load in flight then is not
 * cached.
 *
 * uring_keys_start (main thread): starts the KEYS pool. uring_keys_submit (any thread, never
 * blocks): queues req; when the pool refuses it (full: COFFER_ERR_BUSY, stopped: _SHUTDOWN) the
 * request comes back at once with that error. uring_keys_stop (main thread, after
 * uring_offload_stop): empties the cache; a loader still stuck in a read keeps its entry.
 */
#define URING_KEYS_THREADS 4
int uring_keys_start(void) __attribute__((warn_unused_result));
void uring_keys_submit(struct uring_keyreq *req);
void uring_keys_flush(void);
/* Put rt's key of new backups (just fetched by uring_runtime_build) into the cache, so the first
 * backups do not fetch it again (API source only; main thread, after publish and flush). */
void uring_keys_seed(const struct uring_runtime *rt);
void uring_keys_stop(void);

/*
 * Locked memory: uring_keys_start also arranges that the first allocation RLIMIT_MEMLOCK refuses
 * to lock is logged once (event memlock_refused, with the limit and how to raise it).
 * uring_keys_stats_add puts "secmemLockFailures" (engine_secmem_lock_failures) into a STATS
 * object. Any thread.
 */
void uring_keys_stats_add(json_t *stats);

#endif
