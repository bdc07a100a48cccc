/* SPDX-License-Identifier: Apache-2.0 */
/* cofferd's pkcs11 key retriever: the --hsm-* settings, the shared clients, and the daemon glue
 * of per-job requests (the fallback policy and its sentences live in hsm/hsm_fallback.h). */
#ifndef URING_HSM_H
#define URING_HSM_H

#include "engine_key.h"
#include "hsm_cache.h"
#include "hsm_client.h"
#include "hsm_metadata.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define URING_HSM_LOADERS  2    /* HSM pool threads: closing retired clients, cache sweeps */
#define URING_HSM_META_MAX 4096 /* bytes of a new HSM backup's status metadata */
#define URING_HSM_SWEEP_S  5    /* seconds between cache sweeps of an idle daemon */

/* Upper bounds of --hsm-timeout (ms) and --hsm-cache-max-age (ten years, in seconds). */
#define URING_HSM_TIMEOUT_MAX_MS 600000L
#define URING_HSM_AGE_MAX_S      (10L * 365 * 86400)

enum uring_hsm_fallback {
    URING_HSM_FALLBACK_SECRET = 0, /* new backups the HSM cannot serve use the Secret */
    URING_HSM_FALLBACK_NONE = 1,   /* they fail with the HSM's error */
};

/*
 * The --hsm-* settings (the same names in a --config file). No HSM when module is "". With module
 * and token but no key, the HSM serves restores only and new backups use the Secret. The PIN is
 * read from pin_file, else from the environment variable COFFER_HSM_PIN; never from the command
 * line. Cache bounds: any of age, uses or bytes 0 turns the data-key cache off.
 */
struct uring_hsm_config {
    char module[HSM_MODULE_MAX + 1];
    char token[HSM_TOKEN_LABEL_MAX + 1];
    char key[HSM_KEY_LABEL_MAX + 1];
    char pin_file[4096];
    int fallback; /* enum uring_hsm_fallback */
    unsigned timeout_ms;
    uint64_t cache_max_age_s, cache_max_uses, cache_max_bytes;
    uint64_t cache_max_entries;
    int mechanism;         /* --hsm-mechanism: hsm_mech, 0 (auto) negotiates with the token */
    unsigned max_sessions; /* --hsm-max-sessions: 0 = as the token allows */
};

/* Fill h with the defaults (main thread, before parsing). The values are parsed by the option
 * table of uring_config.c, which writes these fields. */
void uring_hsm_config_defaults(struct uring_hsm_config *h);
/* Cross-option checks after everything is parsed: 0 or COFFER_ERR_CONFIG with a sentence. */
int uring_hsm_config_check(const struct uring_hsm_config *h, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/*
 * One HSM client and retriever (with its data-key cache) for one set of settings, shared by every
 * runtime built with the same settings, so a SIGHUP that changes nothing of the HSM keeps the
 * connection and the cache; a changed --hsm-key (rotation) gets a new one. Reference-counted.
 */
struct uring_hsm;

/*
 * The retriever for cfg: *out is NULL when no HSM is configured, else a reference (an existing
 * one with the same settings, or a new client that connects lazily; a new one is asked to
 * connect in the background so that the log says early whether the HSM works). Call on the main
 * thread. Returns 0, COFFER_ERR_CONFIG or _NOMEM with a sentence in detail.
 */
int uring_hsm_acquire(const struct uring_hsm_config *cfg, struct uring_hsm **out, char *detail,
                      size_t detaillen) __attribute__((warn_unused_result));
/* Drop a reference (any thread; NULL allowed). Never blocks while the HSM pool runs: the last one
 * queues the close on it (closing may wait for a stuck PKCS#11 call); before uring_hsm_start and
 * after uring_hsm_stop the caller (the main thread) closes it. */
void uring_hsm_put(struct uring_hsm *h);
/* 1 when new coffer-v1 backups get their data key from this HSM (a key label is configured). */
int uring_hsm_backups(const struct uring_hsm *h);
/* 1 when the Secret is not needed at start: new backups use the HSM without fallback. */
int uring_hsm_secret_optional(const struct uring_hsm *h);

/*
 * The HSM pool of uring_offload.h (URING_HSM_LOADERS threads): every call into the hsm library
 * that may wait for the token runs there, never on a ring thread. uring_hsm_start starts it (main
 * thread, after the first runtime is built: its HSM is then asked to connect);
 * uring_hsm_stop (main thread, after uring_offload_stop) marks it gone, so that a retriever's
 * last reference closes it on the caller's thread from then on.
 */
int uring_hsm_start(void) __attribute__((warn_unused_result));
void uring_hsm_stop(void);
/*
 * Every second from a ring thread (never blocks): every URING_HSM_SWEEP_S seconds, queue a sweep
 * of the data-key caches (keys past their age are wiped) and a probe of a failing HSM.
 */
void uring_hsm_tick(void);
/*
 * The daemon's last step (main thread, after everything is stopped): when a thread is still
 * inside a PKCS#11 call (hsm_client_calls_in_progress) or a pool task (uring_offload_left_behind),
 * log it and _exit(code) at once, so that neither p11-kit's modules nor OpenSSL are finalized
 * under it; else return (and the caller returns from main normally). Never returns when it logs.
 */
void uring_hsm_exit(int code);

/* ---- one job (called on its ring thread; nothing here waits for the HSM) ---- */

/* The HSM state of one job; uring_hsm_job_end frees it. */
struct uring_hsm_job;

/*
 * A new coffer-v1 backup whose data key comes from the HSM. When the data-key cache holds a
 * current key within its bounds, *dk is a copy (engine_key_free it) and *meta the status metadata
 * to store (malloc; free() it), and the job needs no key request. Otherwise both are NULL and the
 * job asks the HSM (uring_hsm_req_new, uring_hsm_submit). This cache look is the only hsm library
 * call a ring thread makes: the cache's mutex is held for microseconds by everyone and never
 * across a PKCS#11 call, so it cannot wait for the token. Returns 0 or COFFER_ERR_NOMEM.
 */
int uring_hsm_job_backup(struct uring_hsm *h, struct uring_hsm_job **out, engine_key **dk,
                         char **meta) __attribute__((warn_unused_result));
/*
 * A restore whose metadata says keyRetrieverType "pkcs11": parses its keyRetrieverConfig
 * (untrusted) now. COFFER_ERR_METADATA when malformed; COFFER_ERR_HSM_UNAVAILABLE, with a sentence
 * naming the token and key the backup needs, when h is NULL (no HSM configured).
 */
int uring_hsm_job_restore(const struct uring_hsm *h, const json_t *metadata,
                          struct uring_hsm_job **out, char *detail, size_t detaillen)
    __attribute__((warn_unused_result));

struct uring_keyreq;
/*
 * A key request for the job (a struct uring_keyreq at the front of a larger allocation, freed
 * with uring_keyreq_free like any other). The caller owns it until uring_hsm_submit. NULL when
 * out of memory. Ring thread.
 */
struct uring_keyreq *uring_hsm_req_new(const struct uring_hsm_job *hj);
/*
 * Hand req (filled as uring_keys.h says) to the hsm library's asynchronous submit; never blocks
 * (ring thread). Takes a reference to h for the request. The answer comes back to req->task.ring
 * like a Secret's (a backup that falls back goes on to the Secret loader first); when the library
 * refuses it at once, it comes back with that error. From then on the request is the loader's
 * until its done runs (or its drop, at shutdown, which frees it).
 */
void uring_hsm_submit(struct uring_hsm *h, struct uring_keyreq *req);

/*
 * The loader answered req (made by uring_hsm_req_new for this job). On success req->key is the
 * key to use and, for a backup, *meta the status metadata to store (malloc; free() it): the
 * pkcs11 metadata, or after a fallback the Secret's metadata with an "hsmFallback" note. On
 * failure returns the code for the error frame with a sentence in detail: a restore whose HSM is
 * away is COFFER_ERR_HSM_UNAVAILABLE naming the token and key it needs; a backup with
 * --hsm-fallback none fails with the HSM's own code (COFFER_ERR_HSM_*).
 */
int uring_hsm_job_ready(struct uring_hsm_job *hj, struct uring_keyreq *req, char **meta,
                        char *detail, size_t detaillen) __attribute__((warn_unused_result));
/* The job ended after encrypting `bytes`: accounts them to its data key (the cache's byte bound)
 * and frees hj. h is the job's runtime's retriever. NULL hj allowed. */
void uring_hsm_job_end(struct uring_hsm *h, struct uring_hsm_job *hj, uint64_t bytes);

/* ---- reports ---- */

/* STATS: adds "fallbacks", "fallbackReasons" and the HSM counters to o. */
void uring_hsm_stats_add(json_t *o, struct uring_hsm *h);
/* HEALTH: adds "keyRetriever" and, when an HSM is configured, "hsm" to o, whose status is
 * state: the uring_hsm_status(h) the caller read once for the whole reply. */
void uring_hsm_health_add(json_t *o, struct uring_hsm *h, int state);

/*
 * Whether the HSM works for what it is configured for (new backups with a key label, else
 * restores): 1 it does, -1 it failed at the last try (a probe, a backup, or a restore of a backup
 * under its own token and key), 0 not tried yet or no HSM (h NULL). While it fails, it is
 * probed again every URING_HSM_SWEEP_S seconds (uring_hsm_tick), so a recovery shows without
 * traffic. Any thread; takes the status lock for microseconds.
 */
int uring_hsm_status(struct uring_hsm *h);
/* 1 when new backups the HSM cannot serve fall back to the Secret (--hsm-fallback secret). */
int uring_hsm_fallback_secret(const struct uring_hsm *h);

/* The counters of uring_hsm_stats_add, for the metrics (uring_metrics.c). */
#define URING_HSM_REASONS 8 /* HSM_MODULE .. HSM_UNAVAILABLE, then OTHER */
struct uring_hsm_counts {
    const char *reason_name[URING_HSM_REASONS];
    uint64_t fallbacks_by[URING_HSM_REASONS];
    uint64_t backups, backups_failed, restores, restores_failed;
    int have_cache; /* cache below is filled (h was not NULL) */
    hsm_cache_stats cache;
};
/* Any thread; h may be NULL (no cache then). Takes the cache's lock for microseconds. */
void uring_hsm_counts_get(struct uring_hsm *h, struct uring_hsm_counts *out);

#endif
