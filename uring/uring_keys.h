/* SPDX-License-Identifier: Apache-2.0 */
/* Keys off the ring threads: the Secret loader threads and their cache. */
#ifndef URING_KEYS_H
#define URING_KEYS_H

#include "engine_key.h"
#include "engine_metadata.h"
#include "engine_stream.h"
#include "uring_config.h"
#include "uring_kube.h"
#include "uring_offload.h"
#include "uring_runtime.h" /* struct uring_runtime, which the loader reads */

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/types.h>

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
    int want_secret; /* set by the HSM code: a backup falling back to the Secret (the ring
                      * hands the request on to uring_keys_submit) */
};

/* Free req and its key. NULL allowed. Any thread. (Inline: the HSM code frees requests too,
 * and must not call into the loader.) */
static inline void uring_keyreq_free(struct uring_keyreq *req)
{
    if (req == NULL)
        return;
    engine_key_free(req->key);
    free(req);
}

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
 * to lock is logged once (event memlock_refused, with the limit and how to raise it); STATS
 * reports the count as "secmemLockFailures" (uring_report.c).
 */

#endif
