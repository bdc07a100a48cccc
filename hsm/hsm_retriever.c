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

struct hsm_retriever {
    hsm_client *client;
    hsm_cache *cache;
    pthread_mutex_t refresh; /* one new data key at a time */
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
    *out = r;
    return 0;
}

void hsm_retriever_free(hsm_retriever *r)
{
    if (r == NULL)
        return;
    hsm_cache_free(r->cache);
    pthread_mutex_destroy(&r->refresh);
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

int hsm_retriever_restore_key(hsm_retriever *r, const json_t *config, engine_key **dk,
                              hsm_status *st)
{
    hsm_status local;
    hsm_metadata_config *mc;
    char detail[256];
    const char *token = hsm_client_token(r->client);
    int e;

    if (st == NULL)
        st = &local;
    hsm_status_clear(st);
    *dk = NULL;
    if ((mc = malloc(sizeof(*mc))) == NULL)
        return hsm_status_set(st, COFFER_ERR_NOMEM, "unwrap", HSM_STATUS_NO_RV, "out of memory");
    if ((e = hsm_metadata_config_parse(config, mc, detail, sizeof(detail))) < 0) {
        hsm_status_set(st, e, "unwrap", HSM_STATUS_NO_RV, "%s", detail);
        goto out;
    }
    if (token == NULL || strcmp(mc->token, token) != 0) {
        e = hsm_status_set(st, COFFER_ERR_HSM_UNAVAILABLE, "token", HSM_STATUS_NO_RV,
                           "this backup's data key is wrapped by key '%s' on token '%s', but "
                           "cofferd is configured for token '%s'",
                           mc->wrapped.key_label, mc->token, token != NULL ? token : "(none)");
        goto out;
    }
    if ((e = hsm_cache_restore_take(r->cache, &mc->wrapped, dk)) == 1) {
        e = 0;
        goto out;
    }
    if (e < 0) {
        hsm_status_set(st, e, "unwrap", HSM_STATUS_NO_RV, "out of memory");
        goto out;
    }
    if ((e = hsm_kek_unwrap(r->client, &mc->wrapped, dk, st)) < 0) {
        char why[HSM_STATUS_TEXT_MAX];
        memcpy(why, st->text, sizeof(why));
        int n = snprintf(st->text, sizeof(st->text),
                         "restoring needs key '%s' on token '%s' to unwrap the data key: ",
                         mc->wrapped.key_label, mc->token);
        if (n > 0 && (size_t)n < sizeof(st->text)) {
            size_t room = sizeof(st->text) - (size_t)n - 1, wl = strnlen(why, sizeof(why) - 1);
            memcpy(st->text + n, why, wl < room ? wl : room);
            st->text[(size_t)n + (wl < room ? wl : room)] = '\0';
        }
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
