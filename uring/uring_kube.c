/* SPDX-License-Identifier: Apache-2.0 */
/* The Kubernetes API as cofferd's Secret source: settings, the allow list, logged fetches. */
#include "uring_kube.h"

#include "coffer_error.h"
#include "engine_secret.h"
#include "uring_log.h"

#include <stdlib.h>
#include <string.h>

void uring_kube_config_defaults(struct uring_kube_config *k)
{
    memset(k, 0, sizeof(*k));
    k->source = URING_SECRET_DIR;
    snprintf(k->sa_dir, sizeof(k->sa_dir), "%s", KUBE_SA_DIR_DEFAULT);
    k->cache_ttl = 60;
    k->timeout_ms = KUBE_TIMEOUT_MS_DEFAULT;
    k->connect_timeout_ms = KUBE_CONNECT_TIMEOUT_MS_DEFAULT;
}

int uring_kube_config_check(const struct uring_kube_config *k, char *err, size_t errlen)
{
    if (k->source == URING_SECRET_KUBERNETES)
        return 0;
    if (k->kubeconfig[0] != '\0' || k->n_allow_ns > 0) {
        snprintf(err, errlen, "--%s applies to --secret-source kubernetes only",
                 k->kubeconfig[0] != '\0' ? "kubeconfig" : "allow-secret-namespace");
        return COFFER_ERR_CONFIG;
    }
    return 0;
}

void uring_kube_free(struct uring_kube *k)
{
    if (k == NULL)
        return;
    kube_target_free(k->target);
    free(k);
}

int uring_kube_build(const struct uring_kube_config *cfg, const char *own_ns,
                     struct uring_kube **out, char *detail, size_t detaillen)
{
    struct uring_kube *k;
    int r;

    *out = NULL;
    if (cfg->source != URING_SECRET_KUBERNETES)
        return 0;
    if ((k = calloc(1, sizeof(*k))) == NULL)
        return COFFER_ERR_NOMEM;
    r = cfg->kubeconfig[0] != '\0'
            ? kube_target_from_kubeconfig(&k->target, cfg->kubeconfig, detail, detaillen)
            : kube_target_in_cluster(&k->target, cfg->sa_dir, detail, detaillen);
    if (r != 0) {
        free(k);
        return r;
    }
    {
        char q1[1200], q2[4600], q3[4600];
        uring_log(URING_LOG_INFO, "secret_source",
                  "source=kubernetes server=%s ca=%s credential=%s cache_ttl_s=%d timeout_ms=%ld",
                  uring_log_quote(k->target->server, q1, sizeof(q1)),
                  uring_log_quote(k->target->ca_origin, q2, sizeof(q2)),
                  uring_log_quote(k->target->credential, q3, sizeof(q3)), cfg->cache_ttl,
                  cfg->timeout_ms);
    }
    k->opts.timeout_ms = cfg->timeout_ms;
    k->opts.connect_timeout_ms = cfg->connect_timeout_ms;
    k->opts.max_attempts = KUBE_MAX_ATTEMPTS_DEFAULT;
    k->cache_ttl = cfg->cache_ttl;
    snprintf(k->own_ns, sizeof(k->own_ns), "%s", own_ns);
    memcpy(k->allow_ns, cfg->allow_ns, sizeof(k->allow_ns));
    k->n_allow_ns = cfg->n_allow_ns;
    *out = k;
    return 0;
}

int uring_kube_ns_allowed(const struct uring_kube *k, const char *ns, char *detail,
                          size_t detaillen)
{
    if (strcmp(ns, k->own_ns) == 0)
        return 0;
    for (int i = 0; i < k->n_allow_ns; i++)
        if (strcmp(ns, k->allow_ns[i]) == 0)
            return 0;
    snprintf(detail, detaillen,
             "the backup names a Secret in namespace '%.63s', and this cofferd reads Secrets "
             "only in '%s'%s; if that is intended, start cofferd with "
             "--allow-secret-namespace %.63s (and grant it RBAC there)",
             ns, k->own_ns, k->n_allow_ns > 0 ? " and its --allow-secret-namespace list" : "", ns);
    return COFFER_ERR_SECRET_NAMESPACE;
}

int uring_kube_fetch(const struct uring_kube *k, const char *ns, const char *name,
                     engine_key_rule rule, engine_key **out, char *detail, size_t detaillen)
{
    struct kube_fetch_info info;
    char q[700];
    int r = kube_secret_get(k->target, &k->opts, ns, name, rule, out, &info, detail, detaillen);

    if (r == 0)
        uring_log(URING_LOG_INFO, "secret_fetched",
                  "namespace=%s secret=%s key_id=%s status=%d attempts=%d ms=%.0f", ns, name,
                  (*out)->id, info.http_status, info.attempts, info.seconds * 1000.0);
    else
        uring_log(URING_LOG_WARN, "secret_fetch_failed",
                  "namespace=%s secret=%s err=%s status=%d attempts=%d ms=%.0f detail=%s", ns, name,
                  coffer_errname(r), info.http_status, info.attempts, info.seconds * 1000.0,
                  uring_log_quote(detail, q, sizeof(q)));
    return r;
}

void uring_kube_no_key(int err, const char *detail, const char *ns, const char *secret,
                       const struct uring_kube_config *cfg)
{
    uring_log(URING_LOG_ERROR, "start_failed", "err=%s source=kubernetes namespace=%s secret=%s",
              coffer_errname(err), ns, secret);
    fprintf(stderr,
            "cofferd: cannot load the key of new backups from the Kubernetes API: %s%s%s\n"
            "cofferd: the API and credential come from %s%s\n"
            "cofferd: create the Secret with:\n"
            "    coffer keygen --out key && kubectl -n %s create secret generic %s "
            "--from-file=%s=key\n"
            "  and let cofferd's ServiceAccount read it (deploy/kubernetes/rbac.yaml),\n"
            "  or start with --encryption off, or --secret-source dir.\n",
            coffer_strerror(err), detail[0] != '\0' ? ": " : "", detail,
            cfg->kubeconfig[0] != '\0' ? "--kubeconfig " : "the in-cluster service account in ",
            cfg->kubeconfig[0] != '\0' ? cfg->kubeconfig : cfg->sa_dir, ns, secret,
            ENGINE_SECRET_FIELD);
}
