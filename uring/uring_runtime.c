/* SPDX-License-Identifier: Apache-2.0 */
/* The runtime snapshot: what jobs need of the configuration, built, published and shared. */
#include "uring_runtime.h"

#include "coffer_error.h"
#include "engine_metadata.h"
#include "engine_secret.h"
#include "uring_log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t rt_lock = PTHREAD_MUTEX_INITIALIZER;
static struct uring_runtime *rt_current;

static void runtime_free(struct uring_runtime *rt)
{
    if (rt == NULL)
        return;
    engine_key_free(rt->key);
    free(rt->metadata);
    uring_hsm_put(rt->hsm);
    uring_kube_free(rt->kube);
    uring_recovery_free(rt->recovery);
    free(rt);
}

int uring_runtime_build(const struct uring_config *cfg, struct uring_runtime **out, char *detail,
                        size_t detaillen)
{
    int r = COFFER_ERR_INTERNAL;
    struct uring_runtime *rt = calloc(1, sizeof(*rt));
    json_t *meta = NULL;

    detail[0] = '\0';
    if (rt == NULL) {
        r = COFFER_ERR_NOMEM;
        goto out;
    }
    atomic_init(&rt->refs, 1);
    rt->encryption = cfg->encryption && !cfg->echo;
    rt->echo = cfg->echo;
    rt->allow_plaintext_restore = cfg->allow_plaintext_restore;
    rt->format = rt->encryption ? cfg->format : COFFER_FORMAT_NONE;
    snprintf(rt->ns, sizeof(rt->ns), "%s", cfg->ns);
    snprintf(rt->secret, sizeof(rt->secret), "%s", cfg->secret);
    snprintf(rt->secrets_dir, sizeof(rt->secrets_dir), "%s", cfg->secrets_dir);
    snprintf(rt->spool_dir, sizeof(rt->spool_dir), "%s", cfg->spool_dir);
    memcpy(rt->allow_uid, cfg->allow_uid, sizeof(rt->allow_uid));
    rt->n_allow_uid = cfg->n_allow_uid;
    memcpy(rt->allow_gid, cfg->allow_gid, sizeof(rt->allow_gid));
    rt->n_allow_gid = cfg->n_allow_gid;
    if ((r = engine_secret_name_check(rt->ns, rt->secret)) != 0) {
        snprintf(detail, detaillen,
                 "--namespace '%.63s' / --encryption-secret '%.100s' is not "
                 "a valid Kubernetes name",
                 rt->ns, rt->secret);
        goto out;
    }
    if ((r = uring_hsm_acquire(&cfg->hsm, &rt->hsm, detail, detaillen)) != 0)
        goto out;
    if ((r = uring_kube_build(&cfg->kube, rt->ns, &rt->kube, detail, detaillen)) != 0)
        goto out;
    if ((r = uring_recovery_new(&rt->recovery, cfg->recovery_recipient, cfg->n_recovery_recipient,
                                detail, detaillen)) != 0)
        goto out; /* the sentence names the file and line */
    if (rt->recovery != NULL)
        uring_log(URING_LOG_INFO, "recovery_recipients", "count=%zu",
                  uring_recovery_count(rt->recovery));
    if (rt->encryption) {
        if (rt->kube != NULL) /* the API: blocking, on the main thread */
            r = uring_kube_fetch(rt->kube, rt->ns, rt->secret, engine_format_key_rule(rt->format),
                                 &rt->key, detail, detaillen);
        else
            r = engine_secret_load(&rt->key, rt->secrets_dir, rt->ns, rt->secret,
                                   engine_format_key_rule(rt->format), detail, detaillen);
        if (r != 0 && rt->format == COFFER_FORMAT_COFFER_V1 && uring_hsm_secret_optional(rt->hsm)) {
            /* new backups use the HSM and never fall back: the Secret is not needed */
            uring_log(URING_LOG_INFO, "secret_absent", "namespace=%s secret=%s err=%s", rt->ns,
                      rt->secret, coffer_errname(r));
            detail[0] = '\0';
            r = 0;
            meta = engine_metadata_new_plain(); /* unused without a key */
        } else if (r != 0) {
            goto out;
        } else {
            meta = engine_metadata_new_secret(rt->ns, rt->secret, engine_format_name(rt->format),
                                              rt->key->id);
        }
    } else {
        meta = engine_metadata_new_plain();
    }
    if (meta == NULL || (rt->metadata = engine_metadata_dump(meta)) == NULL) {
        r = COFFER_ERR_NOMEM;
        goto out;
    }
    rt->metadata_len = strlen(rt->metadata);
    if (rt->format == COFFER_FORMAT_COFFER_V1)
        uring_recovery_warm(rt->recovery, rt->key); /* the Secret's entries, off the rings */
    *out = rt;
    rt = NULL;
    r = 0;
out:
    json_decref(meta);
    runtime_free(rt);
    return r;
}

void uring_runtime_publish(struct uring_runtime *rt)
{
    struct uring_runtime *old;
    pthread_mutex_lock(&rt_lock);
    old = rt_current;
    rt_current = rt;
    pthread_mutex_unlock(&rt_lock);
    uring_runtime_put(old);
}

struct uring_runtime *uring_runtime_get(void)
{
    struct uring_runtime *rt;
    pthread_mutex_lock(&rt_lock);
    rt = rt_current;
    if (rt != NULL)
        atomic_fetch_add(&rt->refs, 1);
    pthread_mutex_unlock(&rt_lock);
    return rt;
}

void uring_runtime_put(struct uring_runtime *rt)
{
    if (rt != NULL && atomic_fetch_sub(&rt->refs, 1) == 1)
        runtime_free(rt);
}

int uring_runtime_peer_allowed(const struct uring_runtime *rt, uid_t uid, gid_t gid)
{
    for (int i = 0; i < rt->n_allow_uid; i++)
        if (rt->allow_uid[i] == uid)
            return 1;
    for (int i = 0; i < rt->n_allow_gid; i++)
        if (rt->allow_gid[i] == gid)
            return 1;
    return 0;
}
