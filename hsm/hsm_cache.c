/* SPDX-License-Identifier: Apache-2.0 */
/* The data-key cache: bounded by age, uses, bytes and entries; keys in engine_secmem, wiped on
 * eviction. */
#include "hsm_cache.h"

#include "coffer_error.h"

#include <openssl/crypto.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct cache_entry {
    engine_key *key; /* engine_secmem */
    hsm_wrapped w;
    uint64_t born_ms;
    uint64_t last_ms;
    uint64_t uses;
    uint64_t bytes;
};

struct hsm_cache {
    pthread_mutex_t mu;
    hsm_cache_limits lim;
    hsm_cache_clock clock;
    void *clock_ctx;
    struct cache_entry current;  /* key == NULL: none */
    struct cache_entry *restore; /* lim.max_entries slots, key == NULL: free */
    hsm_cache_stats stats;
};

enum evict_reason { EVICT_AGE, EVICT_USES, EVICT_BYTES, EVICT_CAPACITY, EVICT_CLEAR };

void hsm_cache_limits_default(hsm_cache_limits *lim)
{
    lim->max_age_s = HSM_CACHE_DEFAULT_AGE_S;
    lim->max_uses = HSM_CACHE_DEFAULT_USES;
    lim->max_bytes = HSM_CACHE_DEFAULT_BYTES;
    lim->max_entries = HSM_CACHE_DEFAULT_ENTRIES;
}

static uint64_t monotonic_ms(void *ctx)
{
    struct timespec ts;
    (void)ctx;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int hsm_cache_new(hsm_cache **out, const hsm_cache_limits *lim, hsm_cache_clock clock,
                  void *clock_ctx)
{
    hsm_cache *c;
    *out = NULL;
    if (lim->max_entries > HSM_CACHE_MAX_ENTRIES)
        return COFFER_ERR_CONFIG;
    if ((c = calloc(1, sizeof(*c))) == NULL)
        return COFFER_ERR_NOMEM;
    c->lim = *lim;
    if (c->lim.max_entries > 0 &&
        (c->restore = calloc(c->lim.max_entries, sizeof(*c->restore))) == NULL) {
        free(c);
        return COFFER_ERR_NOMEM;
    }
    c->clock = clock != NULL ? clock : monotonic_ms;
    c->clock_ctx = clock_ctx;
    pthread_mutex_init(&c->mu, NULL);
    *out = c;
    return 0;
}

static void entry_evict(hsm_cache *c, struct cache_entry *e, enum evict_reason why)
{
    if (e->key == NULL)
        return;
    engine_key_free(e->key); /* wipes */
    memset(e, 0, sizeof(*e));
    switch (why) {
    case EVICT_AGE:
        c->stats.evicted_age++;
        break;
    case EVICT_USES:
        c->stats.evicted_uses++;
        break;
    case EVICT_BYTES:
        c->stats.evicted_bytes++;
        break;
    case EVICT_CAPACITY:
        c->stats.evicted_capacity++;
        break;
    case EVICT_CLEAR:
        break;
    }
}

static int entry_expired(const hsm_cache *c, const struct cache_entry *e, uint64_t now)
{
    return now - e->born_ms >= c->lim.max_age_s * 1000u;
}

/* Under c->mu. */
static void sweep_locked(hsm_cache *c, uint64_t now)
{
    if (c->current.key != NULL && entry_expired(c, &c->current, now))
        entry_evict(c, &c->current, EVICT_AGE);
    for (size_t i = 0; i < c->lim.max_entries; i++)
        if (c->restore[i].key != NULL && entry_expired(c, &c->restore[i], now))
            entry_evict(c, &c->restore[i], EVICT_AGE);
}

void hsm_cache_sweep(hsm_cache *c)
{
    pthread_mutex_lock(&c->mu);
    sweep_locked(c, c->clock(c->clock_ctx));
    pthread_mutex_unlock(&c->mu);
}

void hsm_cache_clear(hsm_cache *c)
{
    pthread_mutex_lock(&c->mu);
    entry_evict(c, &c->current, EVICT_CLEAR);
    for (size_t i = 0; i < c->lim.max_entries; i++)
        entry_evict(c, &c->restore[i], EVICT_CLEAR);
    pthread_mutex_unlock(&c->mu);
}

void hsm_cache_free(hsm_cache *c)
{
    if (c == NULL)
        return;
    hsm_cache_clear(c);
    pthread_mutex_destroy(&c->mu);
    free(c->restore);
    free(c);
}

static int key_copy(engine_key **out, const engine_key *k)
{
    return engine_key_from_bytes(out, k->bytes, k->len);
}

static int same_blob(const hsm_wrapped *a, const hsm_wrapped *b)
{
    /* the wrapped blob ends in its GCM tag: compared in constant time like any tag */
    return strcmp(a->key_label, b->key_label) == 0 && hsm_wrapped_mech(a) == hsm_wrapped_mech(b) &&
           a->kwp_ckm == b->kwp_ckm && hsm_wrapped_iv_len(a) == hsm_wrapped_iv_len(b) &&
           hsm_wrapped_len(a) == hsm_wrapped_len(b) &&
           strcmp(a->mac_key_label, b->mac_key_label) == 0 &&
           memcmp(a->iv, b->iv, hsm_wrapped_iv_len(a)) == 0 &&
           CRYPTO_memcmp(a->wrapped, b->wrapped, hsm_wrapped_len(a)) == 0 &&
           CRYPTO_memcmp(a->mac, b->mac, HSM_MAC_LEN) == 0;
}

/* 1 when a key that carried `have` bytes has no room for `more` (a key at its limit has none). */
static int over_bytes(const hsm_cache *c, uint64_t have, uint64_t more)
{
    return c->lim.max_bytes != 0 && (have >= c->lim.max_bytes || more > c->lim.max_bytes - have);
}

int hsm_cache_current_take(hsm_cache *c, uint64_t bytes, engine_key **dk, hsm_wrapped *w)
{
    int r = 0;
    *dk = NULL;
    pthread_mutex_lock(&c->mu);
    uint64_t now = c->clock(c->clock_ctx);
    sweep_locked(c, now);
    struct cache_entry *e = &c->current;
    if (e->key != NULL && c->lim.max_uses != 0 && e->uses >= c->lim.max_uses)
        entry_evict(c, e, EVICT_USES);
    if (e->key != NULL && over_bytes(c, e->bytes, bytes))
        entry_evict(c, e, EVICT_BYTES);
    if (e->key == NULL)
        goto out; /* counted as a miss when the new key is set */
    if ((r = key_copy(dk, e->key)) < 0)
        goto out;
    *w = e->w;
    e->uses++;
    e->bytes += bytes;
    e->last_ms = now;
    c->stats.backup_hits++;
    r = 1;
out:
    pthread_mutex_unlock(&c->mu);
    return r;
}

/* Under c->mu: put a copy of k into the restore slots (replacing the same blob, else a free slot,
 * else the least recently used). */
static int restore_insert_locked(hsm_cache *c, const hsm_wrapped *w, const engine_key *k,
                                 uint64_t now)
{
    struct cache_entry *slot = NULL;
    engine_key *copy;
    int r;

    if (c->lim.max_entries == 0 || c->lim.max_age_s == 0)
        return 0;
    for (size_t i = 0; i < c->lim.max_entries; i++) {
        struct cache_entry *e = &c->restore[i];
        if (e->key != NULL && same_blob(&e->w, w))
            return 0; /* already there */
        if (e->key == NULL) {
            if (slot == NULL || slot->key != NULL)
                slot = e;
        } else if (slot == NULL || (slot->key != NULL && e->last_ms < slot->last_ms)) {
            slot = e;
        }
    }
    if ((r = key_copy(&copy, k)) < 0)
        return r;
    if (slot->key != NULL)
        entry_evict(c, slot, EVICT_CAPACITY);
    slot->key = copy;
    slot->w = *w;
    slot->born_ms = slot->last_ms = now;
    slot->uses = 0;
    slot->bytes = 0;
    return 0;
}

int hsm_cache_current_set(hsm_cache *c, const engine_key *dk, const hsm_wrapped *w, uint64_t bytes)
{
    engine_key *copy;
    int r = 0;

    pthread_mutex_lock(&c->mu);
    uint64_t now = c->clock(c->clock_ctx);
    sweep_locked(c, now);
    c->stats.backup_misses++;
    if (c->lim.max_age_s == 0)
        goto out;
    if ((r = key_copy(&copy, dk)) < 0)
        goto out;
    entry_evict(c, &c->current, EVICT_CLEAR); /* replaced by a newer key, not by a bound */
    c->current.key = copy;
    c->current.w = *w;
    c->current.born_ms = c->current.last_ms = now;
    c->current.uses = 1;
    c->current.bytes = bytes;
    r = restore_insert_locked(c, w, dk, now);
out:
    pthread_mutex_unlock(&c->mu);
    return r;
}

void hsm_cache_current_account(hsm_cache *c, const char *key_id, uint64_t bytes)
{
    pthread_mutex_lock(&c->mu);
    struct cache_entry *e = &c->current;
    if (e->key != NULL && strcmp(e->key->id, key_id) == 0) {
        e->bytes = bytes > UINT64_MAX - e->bytes ? UINT64_MAX : e->bytes + bytes;
        if (over_bytes(c, e->bytes, 0))
            entry_evict(c, e, EVICT_BYTES);
    }
    pthread_mutex_unlock(&c->mu);
}

int hsm_cache_restore_take(hsm_cache *c, const hsm_wrapped *w, engine_key **dk)
{
    int r = 0;
    *dk = NULL;
    pthread_mutex_lock(&c->mu);
    uint64_t now = c->clock(c->clock_ctx);
    sweep_locked(c, now);
    for (size_t i = 0; i < c->lim.max_entries; i++) {
        struct cache_entry *e = &c->restore[i];
        if (e->key == NULL || !same_blob(&e->w, w))
            continue;
        if ((r = key_copy(dk, e->key)) < 0)
            goto out;
        e->uses++;
        e->last_ms = now;
        c->stats.restore_hits++;
        if (c->lim.max_uses != 0 && e->uses >= c->lim.max_uses)
            entry_evict(c, e, EVICT_USES);
        r = 1;
        goto out;
    }
out:
    pthread_mutex_unlock(&c->mu);
    return r;
}

int hsm_cache_restore_put(hsm_cache *c, const hsm_wrapped *w, const engine_key *dk)
{
    pthread_mutex_lock(&c->mu);
    uint64_t now = c->clock(c->clock_ctx);
    sweep_locked(c, now);
    c->stats.restore_misses++;
    int r = restore_insert_locked(c, w, dk, now);
    pthread_mutex_unlock(&c->mu);
    return r;
}

void hsm_cache_stats_get(hsm_cache *c, hsm_cache_stats *out)
{
    pthread_mutex_lock(&c->mu);
    *out = c->stats;
    out->restore_entries = 0;
    for (size_t i = 0; i < c->lim.max_entries; i++)
        out->restore_entries += c->restore[i].key != NULL;
    out->have_current = c->current.key != NULL;
    pthread_mutex_unlock(&c->mu);
}
