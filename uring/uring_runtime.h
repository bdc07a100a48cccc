/* SPDX-License-Identifier: Apache-2.0 */
/* The runtime snapshot: the configuration and key of new backups that jobs share, by reference. */
#ifndef URING_RUNTIME_H
#define URING_RUNTIME_H

#include "engine_key.h"
#include "engine_stream.h"
#include "uring_config.h"
#include "uring_hsm.h"
#include "uring_kube.h"
#include "uring_recovery.h"

#include <stdatomic.h>
#include <stddef.h>
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
 * Build a runtime from a config: checks the Secret name, acquires the HSM retriever, builds the
 * Kubernetes source and the recovery recipients, and loads the key of new backups (blocking:
 * main thread only, at start and on SIGHUP). On success *out holds one reference the caller
 * owns (hand it to uring_runtime_publish, or drop it with uring_runtime_put). On failure returns
 * the coffer code, leaves *out untouched, frees everything it built, and puts one sentence in
 * detail that says how to fix it.
 */
int uring_runtime_build(const struct uring_config *cfg, struct uring_runtime **out, char *detail,
                        size_t detaillen) __attribute__((warn_unused_result));
/*
 * Publish rt as the current runtime, taking over the caller's reference (NULL at exit: drops
 * the current one). The one it replaces is freed once its last holder puts it. Main thread
 * only (one publisher); never fails.
 */
void uring_runtime_publish(struct uring_runtime *rt);
/*
 * A new reference to the current runtime, which the caller must give back with
 * uring_runtime_put; never NULL after the first publish. Any thread: takes a mutex for a pointer
 * copy and an atomic increment, so ring threads may call it.
 */
struct uring_runtime *uring_runtime_get(void);
/* Give back a reference (NULL: nothing); the last one frees rt and its key. Any thread. */
void uring_runtime_put(struct uring_runtime *rt);
/* 1 if a peer with these credentials may connect (--allow-uid/--allow-gid), else 0. Any thread. */
int uring_runtime_peer_allowed(const struct uring_runtime *rt, uid_t uid, gid_t gid);

#endif
