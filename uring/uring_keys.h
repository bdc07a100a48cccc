/* SPDX-License-Identifier: Apache-2.0 */
/* Keys off the ring threads: the runtime snapshot (config + key of new backups) and the loader. */
#ifndef URING_KEYS_H
#define URING_KEYS_H

#include "engine_key.h"
#include "engine_stream.h"
#include "uring_config.h"

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
    coffer_format format;
    char ns[64];
    char secret[254];
    char secrets_dir[4096];
    char spool_dir[4096];
    engine_key *key; /* the key of new backups for `format`'s rule; NULL when off or echo */
    char *metadata;  /* the status metadata of a new backup in `format` (JSON text) */
    size_t metadata_len;
    struct uring_hsm *hsm; /* the pkcs11 retriever (--hsm-*), or NULL; shared, see uring_hsm.h */
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
 * A key request for the loader thread. The requester fills the first block; the loader fills
 * err, detail and key (a copy the requester owns and frees with engine_key_free) and hands the
 * request to done(), which runs on the loader thread and must not block.
 */
struct uring_keyreq {
    struct uring_keyreq *next;
    void (*done)(struct uring_keyreq *req);
    void *owner;
    uint32_t slot, gen; /* the requesting connection */
    char secrets_dir[4096];
    char ns[64];
    char name[254];
    engine_key_rule rule;
    char key_id[ENGINE_KEY_ID_LEN + 1]; /* the keyId the backup names, or "" */
    int err;
    char detail[512];
    engine_key *key;
};

/*
 * The loader thread: loads Secrets with engine_secret_load (fresh open each time, so a Kubernetes
 * ..data symlink swap is seen), caching each (namespace, name, rule) for a few seconds; a cached
 * key whose keyId does not match the one asked for is reloaded at once. uring_keys_flush (after
 * SIGHUP) empties the cache.
 */
int uring_keys_start(void) __attribute__((warn_unused_result));
void uring_keys_submit(struct uring_keyreq *req);
void uring_keys_flush(void);
void uring_keys_stop(void);

#endif
