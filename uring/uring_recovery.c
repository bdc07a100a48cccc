/* SPDX-License-Identifier: Apache-2.0 */
/* cofferd's recovery recipients: load them, and add each new backup's entries (with a cache). */
#include "uring_recovery.h"

#include "coffer_error.h"
#include "engine_metadata.h"
#include "engine_recovery.h"
#include "engine_secmem.h"

#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RECOVERY_CACHE 4 /* input keys whose entries are kept */

struct recovery_slot {
    engine_key *key; /* a copy, in locked memory */
    char *entries;   /* the JSON array text of its "recovery" field */
    size_t entries_len;
    unsigned long used;
};

struct uring_recovery {
    engine_age_recipients rs;
    pthread_mutex_t lock;
    struct recovery_slot slot[RECOVERY_CACHE];
    unsigned long clock;
};

int uring_recovery_new(struct uring_recovery **out, const char (*files)[4096], int n, char *detail,
                       size_t detaillen)
{
    struct uring_recovery *r;
    int rc = 0;

    *out = NULL;
    if (n == 0)
        return 0;
    if ((r = calloc(1, sizeof(*r))) == NULL)
        return COFFER_ERR_NOMEM;
    pthread_mutex_init(&r->lock, NULL);
    for (int i = 0; i < n && rc == 0; i++)
        rc = engine_age_recipients_load(&r->rs, files[i], detail, detaillen);
    if (rc != 0) {
        uring_recovery_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

int uring_recovery_check(const char (*files)[4096], int n, char *err, size_t errlen)
{
    struct uring_recovery *r = NULL;
    char detail[900] = "";
    int rc = uring_recovery_new(&r, files, n, detail, sizeof(detail));
    uring_recovery_free(r);
    if (rc == 0)
        return 0;
    snprintf(err, errlen, "--recovery-recipient: %s (%s)", detail, coffer_errname(rc));
    return COFFER_ERR_CONFIG;
}

void uring_recovery_free(struct uring_recovery *r)
{
    if (r == NULL)
        return;
    for (int i = 0; i < RECOVERY_CACHE; i++) {
        engine_key_free(r->slot[i].key);
        free(r->slot[i].entries);
    }
    engine_age_recipients_clear(&r->rs);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

size_t uring_recovery_count(const struct uring_recovery *r)
{
    return r != NULL ? r->rs.n : 0;
}

/* The entries of key: a copy from the cache, or made now and cached. */
static int recovery_entries(struct uring_recovery *r, const engine_key *key, char **out,
                            size_t *outlen, char *detail, size_t detaillen)
{
    json_t *m = NULL;
    char *text = NULL;
    int rc = COFFER_ERR_NOMEM, victim = 0;

    *out = NULL;
    pthread_mutex_lock(&r->lock);
    for (int i = 0; i < RECOVERY_CACHE; i++) {
        struct recovery_slot *s = &r->slot[i];
        if (s->key != NULL && s->key->len == key->len &&
            CRYPTO_memcmp(s->key->bytes, key->bytes, key->len) == 0) {
            s->used = ++r->clock;
            if ((*out = malloc(s->entries_len + 1)) != NULL) {
                memcpy(*out, s->entries, s->entries_len + 1);
                *outlen = s->entries_len;
            }
            pthread_mutex_unlock(&r->lock);
            return *out != NULL ? 0 : COFFER_ERR_NOMEM;
        }
    }
    pthread_mutex_unlock(&r->lock);

    /* a miss: two X25519 operations per recipient, outside the lock */
    if ((m = json_object()) == NULL)
        goto out;
    if ((rc = engine_recovery_add(m, &r->rs, key, detail, detaillen)) != 0)
        goto out;
    rc = COFFER_ERR_NOMEM;
    if ((text = json_dumps(json_object_get(m, ENGINE_RECOVERY_FIELD),
                           JSON_COMPACT | JSON_ENSURE_ASCII)) == NULL)
        goto out;
    *outlen = strlen(text);
    if ((*out = strdup(text)) == NULL)
        goto out;
    pthread_mutex_lock(&r->lock);
    for (int i = 1; i < RECOVERY_CACHE; i++)
        if (r->slot[i].used < r->slot[victim].used)
            victim = i;
    engine_key_free(r->slot[victim].key);
    free(r->slot[victim].entries);
    r->slot[victim].key = NULL;
    r->slot[victim].entries = text;
    r->slot[victim].entries_len = *outlen;
    r->slot[victim].used = ++r->clock;
    text = NULL;
    if (engine_key_from_bytes(&r->slot[victim].key, key->bytes, key->len) != 0) {
        free(r->slot[victim].entries); /* not cached; the result stands */
        r->slot[victim].entries = NULL;
        r->slot[victim].used = 0;
    }
    pthread_mutex_unlock(&r->lock);
    rc = 0;
out:
    free(text);
    json_decref(m);
    return rc;
}

void uring_recovery_warm(struct uring_recovery *r, const engine_key *key)
{
    char *entries = NULL, detail[256];
    size_t len = 0;
    if (r != NULL && key != NULL &&
        recovery_entries(r, key, &entries, &len, detail, sizeof(detail)) == 0)
        free(entries);
}

int uring_recovery_seal(struct uring_recovery *r, const engine_key *key, char **meta, size_t *len,
                        char *detail, size_t detaillen)
{
    static const char field[] = ",\"" ENGINE_RECOVERY_FIELD "\":";
    char *entries = NULL, *with;
    size_t elen = 0, total;
    int rc;

    if (r == NULL)
        return 0;
    /* the daemon's own metadata: a compact object that ends in '}' and has no such field yet */
    json_t *m = json_loadb(*meta, *len, 0, NULL);
    int ok = json_is_object(m) && json_object_get(m, ENGINE_RECOVERY_FIELD) == NULL &&
             (*meta)[*len - 1] == '}' && json_object_size(m) > 0;
    json_decref(m);
    if (!ok) {
        snprintf(detail, detaillen, "internal: metadata without room for recovery entries");
        return COFFER_ERR_INTERNAL;
    }
    if ((rc = recovery_entries(r, key, &entries, &elen, detail, detaillen)) != 0)
        return rc;
    total = *len - 1 + sizeof(field) - 1 + elen + 1;
    if (total > ENGINE_METADATA_MAX) {
        free(entries);
        snprintf(detail, detaillen,
                 "with %zu recovery recipients this backup's metadata is %zu bytes, more than "
                 "coffer-v1's limit of %d: configure fewer --recovery-recipient entries",
                 r->rs.n, total, ENGINE_METADATA_MAX);
        return COFFER_ERR_TOO_LARGE;
    }
    if ((with = malloc(total + 1)) == NULL) {
        free(entries);
        return COFFER_ERR_NOMEM;
    }
    memcpy(with, *meta, *len - 1);
    memcpy(with + *len - 1, field, sizeof(field) - 1);
    memcpy(with + *len - 1 + sizeof(field) - 1, entries, elen);
    with[total - 1] = '}';
    with[total] = '\0';
    free(entries);
    free(*meta);
    *meta = with;
    *len = total;
    return 0;
}

void uring_recovery_hint(const json_t *meta, char *detail, size_t detaillen)
{
    const char *names[1];
    int n = meta != NULL ? engine_recovery_recipients(meta, names, 1) : 0;
    size_t o = strlen(detail);

    if (n > 0 && o < detaillen)
        snprintf(detail + o, detaillen - o,
                 "; this backup has %d recovery recipient%s (%.62s%s): 'coffer decrypt --offline "
                 "--recovery-identity FILE' opens it with one of their identities",
                 n, n > 1 ? "s" : "", names[0], n > 1 ? ", ..." : "");
}
