/* SPDX-License-Identifier: Apache-2.0 */
/* The runtime snapshot and the key-loader thread that keeps Secret I/O off the ring threads. */
#include "uring_keys.h"

#include "coffer_error.h"
#include "engine_metadata.h"
#include "engine_secret.h"
#include "uring_log.h"
#include "uring_metrics.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KEYS_CACHE_MAX 64 /* cached (namespace, name, rule) entries */
#define KEYS_CACHE_TTL 10 /* seconds a cached key is trusted without re-reading the Secret */

static pthread_mutex_t rt_lock = PTHREAD_MUTEX_INITIALIZER;
static struct uring_runtime *rt_current;

static void runtime_free(struct uring_runtime *rt)
{
    if (rt == NULL)
        return;
    engine_key_free(rt->key);
    free(rt->metadata);
    uring_hsm_put(rt->hsm);
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
    if (rt->encryption) {
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

/* ---- the loader thread ---- */

struct keys_entry {
    char dir[4096];
    char ns[64];
    char name[254];
    engine_key_rule rule;
    engine_key *key;
    time_t loaded;
};

static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_cond = PTHREAD_COND_INITIALIZER;
static struct uring_keyreq *q_head, *q_tail;
static int q_stop, q_flush, q_running;
static pthread_t q_thread;
static struct keys_entry cache[KEYS_CACHE_MAX];

static void cache_clear(void)
{
    for (int i = 0; i < KEYS_CACHE_MAX; i++) {
        engine_key_free(cache[i].key);
        memset(&cache[i], 0, sizeof(cache[i]));
    }
}

static struct keys_entry *cache_find(const struct uring_keyreq *req)
{
    for (int i = 0; i < KEYS_CACHE_MAX; i++) {
        struct keys_entry *e = &cache[i];
        if (e->key != NULL && e->rule == req->rule && strcmp(e->ns, req->ns) == 0 &&
            strcmp(e->name, req->name) == 0 && strcmp(e->dir, req->secrets_dir) == 0)
            return e;
    }
    return NULL;
}

static void keys_serve(struct uring_keyreq *req)
{
    time_t now = time(NULL);
    struct keys_entry *e = cache_find(req);
    engine_key *k = NULL;
    int r;

    if (e != NULL && (now - e->loaded > KEYS_CACHE_TTL ||
                      (req->key_id[0] != '\0' && strcmp(req->key_id, e->key->id) != 0))) {
        engine_key_free(e->key);
        memset(e, 0, sizeof(*e));
        e = NULL;
    }
    if (e == NULL) {
        r = engine_secret_load(&k, req->secrets_dir, req->ns, req->name, req->rule, req->detail,
                               sizeof(req->detail));
        if (r != 0) {
            uring_metrics_count_secret(URING_SECRET_FAILED);
            req->err = r;
            return;
        }
        uring_metrics_count_secret(URING_SECRET_LOADED);
        e = &cache[0];
        for (int i = 0; i < KEYS_CACHE_MAX; i++) {
            if (cache[i].key == NULL) {
                e = &cache[i];
                break;
            }
            if (cache[i].loaded < e->loaded)
                e = &cache[i];
        }
        engine_key_free(e->key);
        snprintf(e->dir, sizeof(e->dir), "%s", req->secrets_dir);
        snprintf(e->ns, sizeof(e->ns), "%s", req->ns);
        snprintf(e->name, sizeof(e->name), "%s", req->name);
        e->rule = req->rule;
        e->key = k;
        e->loaded = now;
        uring_log(URING_LOG_DEBUG, "key_loaded", "namespace=%s secret=%s key_id=%s", e->ns, e->name,
                  k->id);
    } else {
        uring_metrics_count_secret(URING_SECRET_CACHE_HIT);
    }
    req->err = engine_key_from_bytes(&req->key, e->key->bytes, e->key->len);
}

static void *keys_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&q_lock);
    for (;;) {
        struct uring_keyreq *req;
        while (q_head == NULL && !q_stop && !q_flush)
            pthread_cond_wait(&q_cond, &q_lock);
        if (q_flush) {
            q_flush = 0;
            cache_clear();
        }
        if (q_stop)
            break;
        if ((req = q_head) == NULL)
            continue;
        q_head = req->next;
        if (q_head == NULL)
            q_tail = NULL;
        pthread_mutex_unlock(&q_lock);
        req->next = NULL;
        req->err = 0;
        req->detail[0] = '\0';
        keys_serve(req);
        req->done(req);
        pthread_mutex_lock(&q_lock);
    }
    cache_clear();
    pthread_mutex_unlock(&q_lock);
    return NULL;
}

int uring_keys_start(void)
{
    if (pthread_create(&q_thread, NULL, keys_main, NULL) != 0)
        return COFFER_ERR_INTERNAL;
    q_running = 1;
    return 0;
}

void uring_keys_submit(struct uring_keyreq *req)
{
    req->next = NULL;
    pthread_mutex_lock(&q_lock);
    if (q_tail != NULL)
        q_tail->next = req;
    else
        q_head = req;
    q_tail = req;
    pthread_cond_signal(&q_cond);
    pthread_mutex_unlock(&q_lock);
}

void uring_keys_flush(void)
{
    pthread_mutex_lock(&q_lock);
    q_flush = 1;
    pthread_cond_signal(&q_cond);
    pthread_mutex_unlock(&q_lock);
}

void uring_keys_stop(void)
{
    struct uring_keyreq *req;
    if (!q_running)
        return;
    pthread_mutex_lock(&q_lock);
    q_stop = 1;
    pthread_cond_signal(&q_cond);
    pthread_mutex_unlock(&q_lock);
    pthread_join(q_thread, NULL);
    q_running = 0;
    /* requests nobody will serve: their owners are gone (workers stop first) */
    while ((req = q_head) != NULL) {
        q_head = req->next;
        free(req);
    }
    q_tail = NULL;
}
