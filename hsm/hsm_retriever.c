/* SPDX-License-Identifier: Apache-2.0 */
/* Data keys for backups and restores: cache first, then one HSM round trip, single-flight on a
 * miss. */
#include "hsm_retriever.h"

#include "coffer_error.h"
#include "hsm_kek.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A backup that waits for the asynchronous refresh in flight. */
struct backup_waiter {
    struct backup_waiter *next;
    uint64_t bytes;
    hsm_retriever_cb done;
    void *ctx;
};

struct hsm_retriever {
    hsm_client *client;
    hsm_cache *cache;
    pthread_mutex_t refresh; /* one new data key at a time */
    /* the asynchronous refresh: at most one in flight, the others wait on the list (under mu) */
    pthread_mutex_t mu;
    int refreshing;
    struct backup_waiter *waiters;
};

int hsm_retriever_new(hsm_retriever **out, hsm_client *c, const hsm_cache_limits *lim,
                      hsm_cache_clock clock, void *clock_ctx)
{
    hsm_cache_limits dflt;
    hsm_retriever *r;
    int e;

    *out = NULL;
    if (lim == NULL) {
        hsm_cache_limits_default(&dflt);
        lim = &dflt;
    }
    if ((r = calloc(1, sizeof(*r))) == NULL)
        return COFFER_ERR_NOMEM;
    if ((e = hsm_cache_new(&r->cache, lim, clock, clock_ctx)) < 0) {
        free(r);
        return e;
    }
    r->client = c;
    pthread_mutex_init(&r->refresh, NULL);
    pthread_mutex_init(&r->mu, NULL);
    *out = r;
    return 0;
}

void hsm_retriever_free(hsm_retriever *r)
{
    if (r == NULL)
        return;
    hsm_cache_free(r->cache);
    pthread_mutex_destroy(&r->refresh);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

hsm_cache *hsm_retriever_cache(hsm_retriever *r)
{
    return r->cache;
}

static int config_of(hsm_retriever *r, const hsm_wrapped *w, json_t **config, hsm_status *st)
{
    *config = hsm_metadata_config_new(hsm_client_module(r->client), hsm_client_token(r->client), w);
    if (*config == NULL)
        return hsm_status_set(st, COFFER_ERR_NOMEM, "wrap", HSM_STATUS_NO_RV, "out of memory");
    return 0;
}

int hsm_retriever_backup_key(hsm_retriever *r, uint64_t bytes, engine_key **dk, json_t **config,
                             hsm_status *st)
{
    hsm_status local;
    hsm_wrapped w;
    struct timespec deadline;
    int e;

    if (st == NULL)
        st = &local;
    hsm_status_clear(st);
    *dk = NULL;
    *config = NULL;
    if ((e = hsm_cache_current_take(r->cache, bytes, dk, &w)) == 1)
        goto have;
    if (e < 0)
        return hsm_status_set(st, e, "wrap", HSM_STATUS_NO_RV, "out of memory");

    /* Single flight: wait for a concurrent refresh at most one timeout, then look again. */
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += hsm_client_timeout_ms(r->client) / 1000 + 1;
    if (pthread_mutex_timedlock(&r->refresh, &deadline) != 0)
        return hsm_status_set(st, COFFER_ERR_HSM_TIMEOUT, "timeout", HSM_STATUS_NO_RV,
                              "waited too long for another backup's HSM call (token '%s')",
                              hsm_client_token(r->client) ? hsm_client_token(r->client) : "");
    if ((e = hsm_cache_current_take(r->cache, bytes, dk, &w)) == 1) {
        pthread_mutex_unlock(&r->refresh);
        goto have;
    }
    if (e == 0 && (e = engine_key_generate(dk, HSM_DATA_KEY_LEN)) == 0 &&
        (e = hsm_kek_wrap(r->client, *dk, &w, st)) == 0)
        e = hsm_cache_current_set(r->cache, *dk, &w, bytes);
    pthread_mutex_unlock(&r->refresh);
    if (e < 0) {
        if (st->code == 0)
            hsm_status_set(st, e, "wrap", HSM_STATUS_NO_RV, "%s", coffer_strerror(e));
        engine_key_free(*dk);
        *dk = NULL;
        return e;
    }
have:
    if ((e = config_of(r, &w, config, st)) < 0) {
        engine_key_free(*dk);
        *dk = NULL;
    }
    return e;
}

void hsm_retriever_backup_done(hsm_retriever *r, const char *key_id, uint64_t bytes)
{
    hsm_cache_current_account(r->cache, key_id, bytes);
}

/* "restoring needs key 'K' on token 'T' to unwrap the data key: " before st's sentence. */
static void restore_prefix(hsm_status *st, const hsm_metadata_config *mc)
{
    char why[HSM_STATUS_TEXT_MAX];
    int n;
    memcpy(why, st->text, sizeof(why));
    n = snprintf(st->text, sizeof(st->text),
                 "restoring needs key '%s' on token '%s' to unwrap the data key: ",
                 mc->wrapped.key_label, mc->token);
    if (n > 0 && (size_t)n < sizeof(st->text)) {
        size_t room = sizeof(st->text) - (size_t)n - 1, wl = strnlen(why, sizeof(why) - 1);
        memcpy(st->text + n, why, wl < room ? wl : room);
        st->text[(size_t)n + (wl < room ? wl : room)] = '\0';
    }
}

/*
 * Parse and check a restore's config; look in the cache. 1 with *dk on a hit, 0 when the token
 * must unwrap mc->wrapped, or a negative code with st set.
 */
static int restore_begin(hsm_retriever *r, const json_t *config, hsm_metadata_config *mc,
                         engine_key **dk, hsm_status *st)
{
    char detail[256];
    const char *token = hsm_client_token(r->client);
    int e;

    if ((e = hsm_metadata_config_parse(config, mc, detail, sizeof(detail))) < 0)
        return hsm_status_set(st, e, "unwrap", HSM_STATUS_NO_RV, "%s", detail);
    if (token == NULL || strcmp(mc->token, token) != 0)
        return hsm_status_set(st, COFFER_ERR_HSM_UNAVAILABLE, "token", HSM_STATUS_NO_RV,
                              "this backup's data key is wrapped by key '%s' on token '%s', but "
                              "cofferd is configured for token '%s'",
                              mc->wrapped.key_label, mc->token, token != NULL ? token : "(none)");
    if ((e = hsm_cache_restore_take(r->cache, &mc->wrapped, dk)) == 1)
        return 1;
    if (e < 0)
        return hsm_status_set(st, e, "unwrap", HSM_STATUS_NO_RV, "out of memory");
    return 0;
}

int hsm_retriever_restore_key(hsm_retriever *r, const json_t *config, engine_key **dk,
                              hsm_status *st)
{
    hsm_status local;
    hsm_metadata_config *mc;
    int e;

    if (st == NULL)
        st = &local;
    hsm_status_clear(st);
    *dk = NULL;
    if ((mc = malloc(sizeof(*mc))) == NULL)
        return hsm_status_set(st, COFFER_ERR_NOMEM, "unwrap", HSM_STATUS_NO_RV, "out of memory");
    if ((e = restore_begin(r, config, mc, dk, st)) != 0) {
        e = e == 1 ? 0 : e;
        goto out;
    }
    if ((e = hsm_kek_unwrap(r->client, &mc->wrapped, dk, st)) < 0) {
        restore_prefix(st, mc);
        goto out;
    }
    if (hsm_cache_restore_put(r->cache, &mc->wrapped, *dk) < 0) {
        /* Not caching it costs a round trip next time, nothing more. */
    }
    e = 0;
out:
    free(mc);
    return e;
}

/* ---- asynchronous forms ---- */

struct restore_async {
    hsm_retriever *r;
    hsm_metadata_config mc;
    hsm_retriever_cb done;
    void *ctx;
};

static void restore_unwrapped(void *ctx, int e, const hsm_status *st, engine_key *dk)
{
    struct restore_async *a = ctx;
    hsm_status local = *st;
    if (e < 0) {
        restore_prefix(&local, &a->mc);
    } else if (hsm_cache_restore_put(a->r->cache, &a->mc.wrapped, dk) < 0) {
        /* Not caching it costs a round trip next time, nothing more. */
    }
    a->done(a->ctx, e, &local, e < 0 ? NULL : dk, NULL);
    free(a);
}

void hsm_retriever_restore_key_submit(hsm_retriever *r, const json_t *config,
                                      hsm_retriever_cb done, void *ctx)
{
    hsm_status st;
    engine_key *dk = NULL;
    struct restore_async *a = calloc(1, sizeof(*a));
    int e;

    hsm_status_clear(&st);
    if (a == NULL) {
        e = hsm_status_set(&st, COFFER_ERR_NOMEM, "unwrap", HSM_STATUS_NO_RV, "out of memory");
        done(ctx, e, &st, NULL, NULL);
        return;
    }
    a->r = r;
    a->done = done;
    a->ctx = ctx;
    if ((e = restore_begin(r, config, &a->mc, &dk, &st)) != 0) {
        free(a);
        done(ctx, e == 1 ? 0 : e, &st, dk, NULL);
        return;
    }
    if ((e = hsm_kek_unwrap_submit(r->client, &a->mc.wrapped, restore_unwrapped, a)) < 0) {
        hsm_status_set(&st, e, "unwrap", HSM_STATUS_NO_RV, "%s", coffer_strerror(e));
        restore_prefix(&st, &a->mc);
        free(a);
        done(ctx, e, &st, NULL, NULL);
    }
}

/* A backup's key from the cache: 0 with dk and config, 1 on a miss, or a negative code. */
static int backup_take(hsm_retriever *r, uint64_t bytes, engine_key **dk, json_t **config,
                       hsm_status *st)
{
    hsm_wrapped w;
    int e = hsm_cache_current_take(r->cache, bytes, dk, &w);
    if (e < 0)
        return hsm_status_set(st, e, "wrap", HSM_STATUS_NO_RV, "out of memory");
    if (e == 0)
        return 1;
    if ((e = config_of(r, &w, config, st)) < 0) {
        engine_key_free(*dk);
        *dk = NULL;
    }
    return e;
}

struct backup_async {
    hsm_retriever *r;
    engine_key *dk; /* the new data key being wrapped */
    uint64_t bytes;
    hsm_retriever_cb done;
    void *ctx;
};

static void backup_refresh(hsm_retriever *r, uint64_t bytes, hsm_retriever_cb done, void *ctx);

/* Answer the backups that waited for a refresh: from the cache, or with its failure. */
static void backup_answer_waiters(hsm_retriever *r, struct backup_waiter *list, int failed,
                                  const hsm_status *why)
{
    while (list != NULL) {
        struct backup_waiter *b = list;
        engine_key *dk = NULL;
        json_t *config = NULL;
        hsm_status st;
        int e;
        list = b->next;
        if (failed) {
            b->done(b->ctx, why->code != 0 ? why->code : COFFER_ERR_HSM_CALL, why, NULL, NULL);
        } else {
            hsm_status_clear(&st);
            if ((e = backup_take(r, b->bytes, &dk, &config, &st)) == 1)
                backup_refresh(r, b->bytes, b->done, b->ctx); /* past a bound already */
            else
                b->done(b->ctx, e, &st, dk, config);
        }
        free(b);
    }
}

static void backup_wrapped(void *ctx, int e, const hsm_status *st, const hsm_wrapped *w)
{
    struct backup_async *a = ctx;
    hsm_retriever *r = a->r;
    struct backup_waiter *list;
    json_t *config = NULL;
    hsm_status local = *st;

    if (e == 0 && (e = hsm_cache_current_set(r->cache, a->dk, w, a->bytes)) < 0)
        hsm_status_set(&local, e, "wrap", HSM_STATUS_NO_RV, "out of memory");
    if (e == 0)
        e = config_of(r, w, &config, &local);
    if (e < 0 && local.code == 0)
        hsm_status_set(&local, e, "wrap", HSM_STATUS_NO_RV, "%s", coffer_strerror(e));
    pthread_mutex_lock(&r->mu);
    list = r->waiters;
    r->waiters = NULL;
    r->refreshing = 0;
    pthread_mutex_unlock(&r->mu);
    if (e < 0) {
        engine_key_free(a->dk);
        a->done(a->ctx, e, &local, NULL, NULL);
    } else {
        a->done(a->ctx, 0, &local, a->dk, config);
    }
    backup_answer_waiters(r, list, e < 0, &local);
    free(a);
}

/* Start the one refresh, or wait for the one in flight. */
static void backup_refresh(hsm_retriever *r, uint64_t bytes, hsm_retriever_cb done, void *ctx)
{
    hsm_status st;
    struct backup_async *a = NULL;
    struct backup_waiter *b = NULL;
    struct backup_waiter *list;
    int e;

    hsm_status_clear(&st);
    pthread_mutex_lock(&r->mu);
    if (r->refreshing) {
        if ((b = calloc(1, sizeof(*b))) != NULL) {
            b->bytes = bytes;
            b->done = done;
            b->ctx = ctx;
            b->next = r->waiters;
            r->waiters = b;
        }
        pthread_mutex_unlock(&r->mu);
        if (b == NULL) {
            e = hsm_status_set(&st, COFFER_ERR_NOMEM, "wrap", HSM_STATUS_NO_RV, "out of memory");
            done(ctx, e, &st, NULL, NULL);
        }
        return;
    }
    r->refreshing = 1;
    pthread_mutex_unlock(&r->mu);
    if ((a = calloc(1, sizeof(*a))) == NULL) {
        e = COFFER_ERR_NOMEM;
    } else {
        a->r = r;
        a->bytes = bytes;
        a->done = done;
        a->ctx = ctx;
        if ((e = engine_key_generate(&a->dk, HSM_DATA_KEY_LEN)) == 0 &&
            (e = hsm_kek_wrap_submit(r->client, a->dk, backup_wrapped, a)) == 0)
            return; /* backup_wrapped answers everyone */
    }
    hsm_status_set(&st, e, e == COFFER_ERR_CONFIG ? "config" : "wrap", HSM_STATUS_NO_RV, "%s",
                   e == COFFER_ERR_CONFIG ? "no key label configured for wrapping new data keys"
                                          : coffer_strerror(e));
    pthread_mutex_lock(&r->mu);
    list = r->waiters;
    r->waiters = NULL;
    r->refreshing = 0;
    pthread_mutex_unlock(&r->mu);
    if (a != NULL)
        engine_key_free(a->dk);
    free(a);
    done(ctx, e, &st, NULL, NULL);
    backup_answer_waiters(r, list, 1, &st);
}

void hsm_retriever_backup_key_submit(hsm_retriever *r, uint64_t bytes, hsm_retriever_cb done,
                                     void *ctx)
{
    hsm_status st;
    engine_key *dk = NULL;
    json_t *config = NULL;
    int e;

    hsm_status_clear(&st);
    if ((e = backup_take(r, bytes, &dk, &config, &st)) != 1) {
        done(ctx, e, &st, dk, config);
        return;
    }
    backup_refresh(r, bytes, done, ctx);
}
