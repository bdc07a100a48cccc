/* SPDX-License-Identifier: Apache-2.0 */
/* cofferd's Secret source: --secret-source dir|kubernetes and the Kubernetes API settings. */
#ifndef URING_KUBE_H
#define URING_KUBE_H

#include "kube_client.h"

#include <stdio.h>

#define URING_KUBE_MAX_NS 32 /* --allow-secret-namespace entries */

enum uring_secret_source { URING_SECRET_DIR = 0, URING_SECRET_KUBERNETES = 1 };

/* The settings (flags, and the same names in a --config file). Plain data; main thread only. */
struct uring_kube_config {
    int source;              /* enum uring_secret_source */
    char kubeconfig[4096];   /* "" = in-cluster */
    char sa_dir[4096];       /* in-cluster service-account directory */
    int cache_ttl;           /* seconds a fetched key is reused (0: never) */
    long timeout_ms;         /* one fetch, retries included */
    long connect_timeout_ms; /* one connection attempt */
    char allow_ns[URING_KUBE_MAX_NS][64];
    int n_allow_ns; /* 0 after parsing means: the daemon's --namespace only */
};

/* Fill k with the defaults (main thread, before parsing). The values are parsed by the option
 * table of uring_config.c, which writes these fields. */
void uring_kube_config_defaults(struct uring_kube_config *k);
/* Cross-option checks after parsing: 0, or COFFER_ERR_CONFIG with one sentence in err. */
int uring_kube_config_check(const struct uring_kube_config *k, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/*
 * The API source of one runtime (uring_runtime.h): the target, the fetch bounds, the cache TTL and
 * the namespaces restores may read. Built on the main thread (it reads files); immutable after,
 * owned by its runtime and freed with it.
 */
struct uring_kube {
    struct kube_target *target;
    struct kube_options opts;
    int cache_ttl;
    char own_ns[64];
    char allow_ns[URING_KUBE_MAX_NS][64];
    int n_allow_ns;
};

/*
 * NULL in *out for --secret-source dir; else the target from --kubeconfig or the in-cluster files.
 * Returns 0, or COFFER_ERR_CONFIG with one sentence in detail. Main thread.
 */
int uring_kube_build(const struct uring_kube_config *cfg, const char *own_ns,
                     struct uring_kube **out, char *detail, size_t detaillen)
    __attribute__((warn_unused_result));
/* Free k (NULL: nothing); called by its runtime's last holder, on any thread. */
void uring_kube_free(struct uring_kube *k);

/*
 * 0 when a restore may make cofferd read Secrets in namespace ns (the daemon's own namespace, or
 * one given with --allow-secret-namespace); else COFFER_ERR_SECRET_NAMESPACE with one sentence in
 * detail. Pure: called on the ring threads before any request is made.
 */
int uring_kube_ns_allowed(const struct uring_kube *k, const char *ns, char *detail,
                          size_t detaillen);

/*
 * Fetch <ns>/<name> (blocking up to the fetch timeout: loader threads and the main thread only),
 * logging what happened (never key bytes). Same results as kube_secret_get: on 0 *out is a key
 * the caller owns and frees with engine_key_free; on failure there is no key to free.
 */
int uring_kube_fetch(const struct uring_kube *k, const char *ns, const char *name,
                     engine_key_rule rule, engine_key **out, char *detail, size_t detaillen)
    __attribute__((warn_unused_result));

/* cofferd's start-up message when the key of new backups cannot be fetched (stderr; main
 * thread). */
void uring_kube_no_key(int err, const char *detail, const char *ns, const char *secret,
                       const struct uring_kube_config *cfg);

#endif
