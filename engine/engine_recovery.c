/* SPDX-License-Identifier: Apache-2.0 */
/* The "recovery" field of the status metadata: build it for a new backup, open it with identities.
 */
#include "engine_recovery.h"

#include "coffer_error.h"
#include "engine_metadata.h"
#include "engine_secmem.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RECOVERY_DETAIL(...)                                                                       \
    do {                                                                                           \
        if (detail != NULL)                                                                        \
            snprintf(detail, detaillen, __VA_ARGS__);                                              \
    } while (0)

/* The largest age file an entry may hold: a 32-byte key to one recipient is 232 bytes. */
#define RECOVERY_AGE_MAX 4096

int engine_recovery_add(json_t *meta, const engine_age_recipients *rs, const engine_key *key,
                        char *detail, size_t detaillen)
{
    int r = COFFER_ERR_INVALID_ARG;
    json_t *list = NULL;
    uint8_t *age = NULL;
    char *b64 = NULL;

    if (!json_is_object(meta) || json_object_get(meta, ENGINE_RECOVERY_FIELD) != NULL ||
        rs->n == 0 || key->len != ENGINE_KEY_MAX) {
        RECOVERY_DETAIL("recovery entries need a metadata object without them, recipients and "
                        "a 32-byte key");
        return r;
    }
    r = COFFER_ERR_NOMEM;
    if ((list = json_array()) == NULL)
        goto out;
    for (size_t i = 0; i < rs->n; i++) {
        size_t alen = 0;
        json_t *e;
        if ((r = engine_age_encrypt(&rs->v[i], 1, key->bytes, key->len, &age, &alen)) != 0) {
            RECOVERY_DETAIL("encrypting the key to recovery recipient %s failed (%s)",
                            rs->v[i].text, coffer_errname(r));
            goto out;
        }
        r = COFFER_ERR_NOMEM;
        if ((b64 = malloc(4 * ((alen + 2) / 3) + 1)) == NULL)
            goto out;
        EVP_EncodeBlock((unsigned char *)b64, age, (int)alen);
        e = json_pack("{s:s, s:s}", "recipient", rs->v[i].text, "age", b64);
        if (e == NULL || json_array_append_new(list, e) != 0)
            goto out;
        free(age);
        free(b64);
        age = NULL;
        b64 = NULL;
    }
    if (json_object_set_new(meta, ENGINE_RECOVERY_FIELD, list) != 0) {
        list = NULL;
        goto out;
    }
    list = NULL;
    r = 0;
out:
    json_decref(list);
    free(age);
    free(b64);
    return r;
}

int engine_recovery_add_text(const char *text, size_t len, const engine_age_recipients *rs,
                             const engine_key *key, char **out, char *detail, size_t detaillen)
{
    json_error_t err;
    json_t *m = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    int r = COFFER_ERR_METADATA;
    char *s = NULL;

    *out = NULL;
    if (m == NULL || !json_is_object(m)) {
        RECOVERY_DETAIL("the status metadata is not a JSON object");
        goto out;
    }
    if ((r = engine_recovery_add(m, rs, key, detail, detaillen)) != 0)
        goto out;
    r = COFFER_ERR_NOMEM;
    if ((s = engine_metadata_dump(m)) == NULL)
        goto out;
    if (strlen(s) > ENGINE_METADATA_MAX) {
        r = COFFER_ERR_TOO_LARGE;
        RECOVERY_DETAIL("with %zu recovery recipients the metadata is %zu bytes, more than "
                        "coffer-v1's limit of %d: use fewer recipients (each adds about %d "
                        "bytes)",
                        rs->n, strlen(s), ENGINE_METADATA_MAX, ENGINE_RECOVERY_ENTRY_BYTES);
        goto out;
    }
    *out = s;
    s = NULL;
    r = 0;
out:
    free(s);
    json_decref(m);
    return r;
}

int engine_recovery_recipients(const json_t *meta, const char **out, size_t max)
{
    json_t *list = json_object_get(meta, ENGINE_RECOVERY_FIELD);
    size_t i;
    json_t *e;

    if (list == NULL)
        return 0;
    if (!json_is_array(list) || json_array_size(list) > ENGINE_AGE_LIST_MAX)
        return COFFER_ERR_METADATA;
    json_array_foreach(list, i, e)
    {
        json_t *rc = json_object_get(e, "recipient"), *age = json_object_get(e, "age");
        if (!json_is_object(e) || !json_is_string(rc) || !json_is_string(age))
            return COFFER_ERR_METADATA;
        if (i < max)
            out[i] = json_string_value(rc);
    }
    return (int)json_array_size(list);
}

/* Standard padded base64 (canonical) into out; returns the byte count or -1. */
static long recovery_b64_decode(const char *in, size_t n, uint8_t *out, size_t outcap)
{
    size_t pad = 0, bytes;
    char *check;
    long r = -1;

    if (n == 0 || n % 4 != 0 || n / 4 * 3 > outcap)
        return -1;
    while (pad < 2 && in[n - 1 - pad] == '=')
        pad++;
    bytes = n / 4 * 3 - pad;
    if (EVP_DecodeBlock(out, (const unsigned char *)in, (int)n) != (int)(n / 4 * 3))
        return -1;
    if ((check = malloc(n + 1)) == NULL)
        return -1;
    EVP_EncodeBlock((unsigned char *)check, out, (int)bytes);
    if (memcmp(check, in, n) == 0)
        r = (long)bytes;
    free(check);
    return r;
}

int engine_recovery_open(const json_t *meta, const engine_age_identities *ids, engine_key **out,
                         char *detail, size_t detaillen)
{
    const char *names[ENGINE_AGE_LIST_MAX];
    int n = engine_recovery_recipients(meta, names, ENGINE_AGE_LIST_MAX);
    json_t *list = json_object_get(meta, ENGINE_RECOVERY_FIELD);
    json_t *kid = json_object_get(meta, "keyId");
    uint8_t *age = NULL, *key = NULL;
    int r = COFFER_ERR_METADATA;
    char why[256] = "";

    *out = NULL;
    if (n < 0) {
        RECOVERY_DETAIL("the metadata's \"recovery\" field is malformed");
        return r;
    }
    if (n == 0) {
        RECOVERY_DETAIL("this backup carries no recovery entries (it was made without "
                        "--recovery-recipient): restore it with its Secret or HSM");
        return COFFER_ERR_KEY_MISSING;
    }
    for (int i = 0; i < n; i++) {
        engine_age_recipient rc;
        const char *b64;
        long alen;
        size_t klen = 0;
        int match = 0;

        if (engine_age_recipient_parse(&rc, names[i], strlen(names[i]), NULL, 0) != 0)
            continue;
        for (size_t k = 0; k < ids->n; k++)
            match |= strcmp(rc.text, ids->v[k]->recipient.text) == 0;
        if (!match)
            continue;
        b64 = json_string_value(json_object_get(json_array_get(list, (size_t)i), "age"));
        r = COFFER_ERR_NOMEM;
        if ((age = malloc(RECOVERY_AGE_MAX)) == NULL ||
            (key = engine_secmem_alloc(ENGINE_KEY_MAX + 64)) == NULL)
            goto out;
        r = COFFER_ERR_METADATA;
        if ((alen = recovery_b64_decode(b64, strlen(b64), age, RECOVERY_AGE_MAX)) < 0) {
            RECOVERY_DETAIL("the recovery entry for %s is not canonical base64", rc.text);
            goto out;
        }
        r = engine_age_decrypt(ids, age, (size_t)alen, key, ENGINE_KEY_MAX + 64, &klen, why,
                               sizeof(why));
        if (r != 0) {
            RECOVERY_DETAIL("the recovery entry for %s does not open: %s", rc.text, why);
            r = r == COFFER_ERR_WRONG_KEY ? COFFER_ERR_TAMPERED : r;
            goto out;
        }
        r = COFFER_ERR_TAMPERED;
        if (klen != ENGINE_KEY_MAX) {
            RECOVERY_DETAIL("the recovery entry for %s holds %zu bytes, not a 32-byte key", rc.text,
                            klen);
            goto out;
        }
        if ((r = engine_key_from_bytes(out, key, klen)) != 0)
            goto out;
        if (json_is_string(kid) && strcmp(json_string_value(kid), (*out)->id) != 0) {
            RECOVERY_DETAIL("the recovery entry for %s holds key %s, but the backup says it was "
                            "encrypted with key %s",
                            rc.text, (*out)->id, json_string_value(kid));
            engine_key_free(*out);
            *out = NULL;
            r = COFFER_ERR_TAMPERED;
            goto out;
        }
        r = 0;
        goto out;
    }
    {
        size_t o = 0;
        char have[160] = "";
        if (detail != NULL) {
            o = (size_t)snprintf(detail, detaillen,
                                 "none of the identities opens this backup: its recovery "
                                 "recipients are");
            for (int i = 0; i < n && o < detaillen; i++)
                o += (size_t)snprintf(detail + o, detaillen - o, "%s %.62s", i > 0 ? "," : "",
                                      names[i]);
            for (size_t k = 0; k < ids->n && k < 2; k++)
                snprintf(have + strlen(have), sizeof(have) - strlen(have), "%s%s",
                         k > 0 ? ", " : "", ids->v[k]->recipient.text);
            if (o < detaillen)
                snprintf(detail + o, detaillen - o, "; the identities given are for %s%s", have,
                         ids->n > 2 ? ", ..." : "");
        }
        r = COFFER_ERR_WRONG_KEY;
    }
out:
    free(age);
    engine_secmem_free(key);
    return r;
}
