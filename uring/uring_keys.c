/* SPDX-License-Identifier: Apache-2.0 */
/* The key-loader threads that keep Secret I/O off the ring threads (runtime: uring_runtime.c). */
#include "uring_keys.h"

#include "coffer_error.h"
#include "engine_metadata.h"
#include "engine_secmem.h"
#include "engine_secret.h"
#include "uring_log.h"
#include "uring_metrics.h"

#include <pthread.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <string.h>
#include <time.h>

#define KEYS_CACHE_MAX 64 /* cached (namespace, name, rule) entries */
#define KEYS_CACHE_TTL 10 /* seconds a cached file key is trusted without re-reading it */

/* ---- the loader threads ---- */

struct keys_entry {
    int kube; /* fetched through the API (dir unused) */
    char dir[4096];
    char ns[64];
    char name[254];
    engine_key_rule rule;
    engine_key *key;
    double loaded;
    int ttl;
    int loading;                  /* a thread is loading it; waiters queue below */
    unsigned gen;                 /* q_gen when the load started */
    struct uring_keyreq *waiters; /* parked requests that arrived during the load (task.ctx) */
};

static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER; /* the cache */
static unsigned q_gen; /* bumped by uring_keys_flush: loads started before are not cached */
static struct keys_entry cache[KEYS_CACHE_MAX];

static double keys_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Drop every cached key (q_lock held); loads in flight keep their entry and waiters. */
static void cache_clear_locked(void)
{
    for (int i = 0; i < KEYS_CACHE_MAX; i++) {
        if (cache[i].loading)
            continue;
        engine_key_free(cache[i].key);
        memset(&cache[i], 0, sizeof(cache[i]));
    }
}

static int entry_matches(const struct keys_entry *e, int kube, const struct uring_keyreq *req)
{
    return (e->key != NULL || e->loading) && e->kube == kube && e->rule == req->rule &&
           strcmp(e->ns, req->ns) == 0 && strcmp(e->name, req->name) == 0 &&
           (kube || strcmp(e->dir, req->secrets_dir) == 0);
}

/* A free slot, else the oldest entry that is not loading; NULL when all are loading. */
static struct keys_entry *entry_claim(void)
{
    struct keys_entry *e = NULL;
    for (int i = 0; i < KEYS_CACHE_MAX; i++) {
        if (cache[i].loading)
            continue;
        if (cache[i].key == NULL)
            return &cache[i];
        if (e == NULL || cache[i].loaded < e->loaded)
            e = &cache[i];
    }
    if (e != NULL) {
        engine_key_free(e->key);
        memset(e, 0, sizeof(*e));
    }
    return e;
}

/* Give req its copy of key (or the error); called without q_lock. */
static void keys_answer(struct uring_keyreq *req, const engine_key *key, int err,
                        const char *detail)
{
    req->err = err;
    if (err == 0) {
        req->err = engine_key_from_bytes(&req->key, key->bytes, key->len);
    } else if (req->detail != detail) {
        snprintf(req->detail, sizeof(req->detail), "%s", detail);
    }
}

static void keys_drop(struct uring_offload_task *t)
{
    uring_keyreq_free((struct uring_keyreq *)(void *)t);
}

/*
 * The sentence a client gets for a Secret file that did not load. Clients may name any Secret in
 * forged metadata, so it never carries the secrets directory's path, the file's size or its bytes'
 * shape: the log line keeps those for the operator.
 */
static void keys_client_detail(int err, engine_key_rule rule, char *out, size_t outlen)
{
    const char *need = rule == ENGINE_KEY_RULE_VELERO ? "the raw 16, 24 or 32 bytes velero-v1 uses"
                       : rule == ENGINE_KEY_RULE_COBBLESTONE_128
                           ? "16 random bytes, or their base64 or hex text"
                           : "32 random bytes, or their base64 or hex text";
    switch (err) {
    case COFFER_ERR_KEY_MISSING:
        snprintf(out, outlen,
                 "no field " ENGINE_SECRET_FIELD " in cofferd's secrets directory, or it is empty; "
                 "create it with 'coffer keygen' and a Kubernetes Secret");
        break;
    case COFFER_ERR_KEY_READ:
        snprintf(out, outlen,
                 "its field " ENGINE_SECRET_FIELD " could not be read (not a regular file, or "
                 "permissions); cofferd's log names the cause");
        break;
    case COFFER_ERR_KEY_SIZE:
    case COFFER_ERR_KEY_FORM:
        snprintf(out, outlen,
                 "its field " ENGINE_SECRET_FIELD " is not a key of this format: it must hold %s; "
                 "create one with 'coffer keygen' (cofferd's log has the details)",
                 need);
        break;
    case COFFER_ERR_SECRET_NAME:
        snprintf(out, outlen, "namespace and Secret name must be lowercase DNS names");
        break;
    default:
        snprintf(out, outlen, "it could not be loaded (cofferd's log has the details)");
        break;
    }
}

/* Load the Secret of req from the current source (blocking; no lock held). */
static int keys_load(struct uring_runtime *rt, struct uring_keyreq *req, engine_key **k)
{
    char full[sizeof(req->detail)], q[2 * sizeof(req->detail)];
    int r;

    if (rt != NULL && rt->kube != NULL)
        return uring_kube_fetch(rt->kube, req->ns, req->name, req->rule, k, req->detail,
                                sizeof(req->detail));
    full[0] = '\0';
    r = engine_secret_load(k, req->secrets_dir, req->ns, req->name, req->rule, full,
                           sizeof(full));
    if (r != 0) {
        uring_log(URING_LOG_WARN, "key_load_failed", "namespace=%s secret=%s err=%s detail=%s",
                  req->ns, req->name, coffer_errname(r), uring_log_quote(full, q, sizeof(q)));
        keys_client_detail(r, req->rule, req->detail, sizeof(req->detail));
    }
    return r;
}

/* Serve one request (q_lock held on entry and on return). */
static void keys_serve_locked(struct uring_keyreq *req)
{
    struct uring_runtime *rt = uring_runtime_get();
    int kube = rt != NULL && rt->kube != NULL;
    double now = keys_now();
    struct keys_entry *e = NULL;
    struct uring_keyreq *waiters;
    engine_key *k = NULL;
    unsigned gen;
    int r;

    for (int i = 0; i < KEYS_CACHE_MAX && e == NULL; i++)
        if (entry_matches(&cache[i], kube, req))
            e = &cache[i];
    if (e != NULL && e->loading) {
        req->task.ctx = e->waiters; /* answered (posted) by the thread of that load */
        e->waiters = req;
        uring_offload_park(&req->task);
        goto out;
    }
    /* a keyId that differs from the cached key's reloads at once; from the API at most once a
     * second, so forged metadata cannot turn restores into a stream of requests */
    if (e != NULL && (now - e->loaded >= e->ttl ||
                      (req->key_id[0] != '\0' && strcmp(req->key_id, e->key->id) != 0 &&
                       (!kube || now - e->loaded >= 1.0)))) {
        engine_key_free(e->key);
        memset(e, 0, sizeof(*e));
        e = NULL;
    }
    if (e != NULL) {
        uring_metrics_count_secret(URING_SECRET_CACHE_HIT);
        if ((r = engine_key_from_bytes(&k, e->key->bytes, e->key->len)) == 0)
            uring_log(URING_LOG_DEBUG, "key_cached", "namespace=%s secret=%s key_id=%s", e->ns,
                      e->name, e->key->id);
        req->err = r;
        req->key = k; /* the request goes back when the task returns */
        goto out;
    }
    if ((e = entry_claim()) != NULL) {
        e->kube = kube;
        snprintf(e->dir, sizeof(e->dir), "%s", kube ? "" : req->secrets_dir);
        snprintf(e->ns, sizeof(e->ns), "%s", req->ns);
        snprintf(e->name, sizeof(e->name), "%s", req->name);
        e->rule = req->rule;
        e->loading = 1;
        e->gen = q_gen;
    }
    gen = q_gen;
    pthread_mutex_unlock(&q_lock);
    r = keys_load(rt, req, &k);
    uring_metrics_count_secret(r == 0 ? URING_SECRET_LOADED : URING_SECRET_FAILED);
    if (r == 0 && !kube)
        uring_log(URING_LOG_DEBUG, "key_loaded", "namespace=%s secret=%s key_id=%s", req->ns,
                  req->name, k->id);
    pthread_mutex_lock(&q_lock);
    waiters = NULL;
    if (e != NULL) {
        waiters = e->waiters;
        e->waiters = NULL;
        e->loading = 0;
        if (r == 0 && e->gen == q_gen && gen == q_gen && (kube ? rt->kube->cache_ttl > 0 : 1)) {
            e->key = k;
            e->loaded = keys_now();
            e->ttl = kube ? rt->kube->cache_ttl : KEYS_CACHE_TTL;
            k = NULL; /* the cache owns it; copies go out below */
        } else {
            memset(e, 0, sizeof(*e)); /* errors are not cached: the next request asks again */
        }
    }
    {
        /* answer outside the lock, from a private copy of the key */
        engine_key *copy = NULL;
        const engine_key *src = k;
        if (r == 0 && src == NULL) {
            r = engine_key_from_bytes(&copy, e->key->bytes, e->key->len);
            src = copy;
        }
        pthread_mutex_unlock(&q_lock);
        while (waiters != NULL) {
            struct uring_keyreq *w = waiters;
            waiters = w->task.ctx;
            w->task.ctx = NULL;
            keys_answer(w, src, r, req->detail);
            uring_offload_post(&w->task); /* dropped (freed) if shutdown went on without it */
        }
        keys_answer(req, src, r, req->detail);
        engine_key_free(copy);
        engine_key_free(k);
        pthread_mutex_lock(&q_lock);
    }
out:
    if (rt != NULL) {
        pthread_mutex_unlock(&q_lock);
        uring_runtime_put(rt); /* may free an old runtime: not under the lock */
        pthread_mutex_lock(&q_lock);
    }
}

/* A request on a KEYS pool thread: served from the cache, loaded, or parked behind a load. */
static void keys_run(struct uring_offload_task *t)
{
    struct uring_keyreq *req = (struct uring_keyreq *)(void *)t;
    req->err = 0;
    req->detail[0] = '\0';
    pthread_mutex_lock(&q_lock);
    keys_serve_locked(req);
    pthread_mutex_unlock(&q_lock);
}

/* The first allocation RLIMIT_MEMLOCK refused: say once what it means and what to do. */
static void keys_memlock_refused(size_t len)
{
    struct rlimit rl;
    char limit[32] = "unknown";
    if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0) {
        if (rl.rlim_cur == RLIM_INFINITY)
            snprintf(limit, sizeof(limit), "unlimited");
        else
            snprintf(limit, sizeof(limit), "%llu", (unsigned long long)rl.rlim_cur);
    }
    uring_log(URING_LOG_WARN, "memlock_refused",
              "bytes=%zu memlock_limit=%s detail=\"RLIMIT_MEMLOCK refused to lock key and buffer "
              "memory, which may now be swapped to disk (STATS secmemLockFailures counts it); "
              "raise the limit: systemd LimitMEMLOCK= (docs/operations.md, Sizing), Kubernetes: "
              "raise the container's memlock limit or grant it IPC_LOCK\"",
              len, limit);
}

int uring_keys_start(void)
{
    engine_secmem_set_lock_failure_hook(keys_memlock_refused);
    return uring_offload_start(URING_POOL_KEYS, URING_KEYS_THREADS);
}

void uring_keys_submit(struct uring_keyreq *req)
{
    int r;
    req->task.run = keys_run;
    req->task.drop = keys_drop;
    req->task.ctx = NULL;
    if ((r = uring_offload_submit(URING_POOL_KEYS, &req->task)) != 0) {
        req->err = r;
        snprintf(req->detail, sizeof(req->detail), "%s",
                 r == COFFER_ERR_BUSY ? "too many key loads are waiting; try again shortly"
                                      : "cofferd is shutting down");
        uring_offload_post(&req->task);
    }
}

void uring_keys_flush(void)
{
    pthread_mutex_lock(&q_lock);
    q_gen++;
    cache_clear_locked();
    pthread_mutex_unlock(&q_lock);
}

void uring_keys_seed(const struct uring_runtime *rt)
{
    struct keys_entry *e;
    engine_key *k = NULL;

    if (rt == NULL || rt->kube == NULL || rt->key == NULL || rt->kube->cache_ttl <= 0 ||
        engine_key_from_bytes(&k, rt->key->bytes, rt->key->len) != 0)
        return;
    pthread_mutex_lock(&q_lock);
    for (int i = 0; i < KEYS_CACHE_MAX; i++)
        if (cache[i].key != NULL && cache[i].kube &&
            cache[i].rule == engine_format_key_rule(rt->format) &&
            strcmp(cache[i].ns, rt->ns) == 0 && strcmp(cache[i].name, rt->secret) == 0) {
            pthread_mutex_unlock(&q_lock);
            engine_key_free(k);
            return; /* already there */
        }
    if ((e = entry_claim()) != NULL) {
        e->kube = 1;
        snprintf(e->ns, sizeof(e->ns), "%s", rt->ns);
        snprintf(e->name, sizeof(e->name), "%s", rt->secret);
        e->rule = engine_format_key_rule(rt->format);
        e->key = k;
        e->loaded = keys_now();
        e->ttl = rt->kube->cache_ttl;
        e->gen = q_gen;
        k = NULL;
    }
    pthread_mutex_unlock(&q_lock);
    engine_key_free(k);
}

void uring_keys_stop(void)
{
    /* the KEYS pool stopped (uring_offload_stop): its threads are gone or left behind in a
     * read, whose entry stays marked loading and whose answers are dropped */
    pthread_mutex_lock(&q_lock);
    cache_clear_locked();
    pthread_mutex_unlock(&q_lock);
}
