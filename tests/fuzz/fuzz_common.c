/* SPDX-License-Identifier: Apache-2.0 */
/* Shared pieces of the fuzz targets: fixed keys, piece sizes, guarded buffers, metadata checks. */
#include "fuzz_common.h"

#include "coffer_error.h"
#include "engine_chunked.h"
#include "engine_secret.h"

#include <string.h>

const uint8_t fuzz_key16[16] = {0x8e, 0x1f, 0x05, 0xa2, 0x77, 0x3c, 0xd0, 0x49,
                                0x12, 0xfb, 0x60, 0x9a, 0x2e, 0xc5, 0x03, 0xb8};
const uint8_t fuzz_key24[24] = {0x41, 0x09, 0xe3, 0x7d, 0x92, 0x5a, 0x0c, 0xf6,
                                0xb1, 0x28, 0x6e, 0xd4, 0x17, 0x83, 0xca, 0x3f,
                                0x55, 0x00, 0x9b, 0xe8, 0x2d, 0x71, 0xa6, 0x14};
const uint8_t fuzz_key32[32] = {0x3a, 0x91, 0x0f, 0xc4, 0x68, 0xe2, 0x1d, 0x7b, 0xa0, 0x35, 0xd9,
                                0x84, 0x06, 0xfe, 0x52, 0xbb, 0x9c, 0x27, 0x4e, 0xf1, 0x13, 0x8a,
                                0x60, 0xc7, 0x2f, 0xd5, 0x79, 0x01, 0xe6, 0x4b, 0xb3, 0x18};
const uint8_t fuzz_context[] = "coffer fuzz context";
const size_t fuzz_context_len = sizeof(fuzz_context) - 1;

void fuzz_pieces_init(struct fuzz_pieces *p, const uint8_t seed[3])
{
    p->state = (uint32_t)seed[0] << 16 | (uint32_t)seed[1] << 8 | seed[2];
    p->last_empty = 0;
}

static uint32_t pieces_rand(struct fuzz_pieces *p)
{
    /* xorshift32; the seed is non-zero here, so the state never becomes zero */
    uint32_t x = p->state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    p->state = x;
    return x;
}

size_t fuzz_pieces_next(struct fuzz_pieces *p, size_t left)
{
    size_t n;

    if (p->state == 0)
        return left;
    uint32_t r = pieces_rand(p);
    switch (r & 7) {
    case 0:
        n = p->last_empty ? 1 : 0;
        break;
    case 1:
        n = 1;
        break;
    case 2:
        n = 1 + (r >> 8) % 16;
        break;
    case 3: /* around the chunked header (56) and the velero nonce and tag (12, 16) */
        n = ENGINE_CHUNKED_HEADER - 8 + (r >> 8) % 17;
        break;
    case 4: /* around a sealed chunk (16400) */
        n = ENGINE_CHUNKED_CHUNK + ENGINE_CHUNKED_TAG - 8 + (r >> 8) % 17;
        break;
    case 5:
        n = (r >> 8) % 4096;
        break;
    case 6:
        n = (r >> 8) % 40000;
        break;
    default:
        n = left;
        break;
    }
    if (n > left)
        n = left;
    p->last_empty = n == 0;
    return n;
}

#define GUARD      64u
#define GUARD_BYTE 0xa5u

uint8_t *fuzz_buf_new(size_t cap)
{
    uint8_t *b = malloc(cap + GUARD);
    FUZZ_CHECK(b != NULL);
    memset(b + cap, GUARD_BYTE, GUARD);
    return b;
}

void fuzz_buf_free(uint8_t *buf, size_t cap)
{
    if (buf == NULL)
        return;
    for (size_t i = 0; i < GUARD; i++)
        FUZZ_CHECK(buf[cap + i] == GUARD_BYTE); /* written past the capacity it was given */
    free(buf);
}

void fuzz_bytes_add(struct fuzz_bytes *b, const uint8_t *p, size_t n)
{
    if (n == 0)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap * 2 > b->len + n ? b->cap * 2 : b->len + n;
        uint8_t *q = realloc(b->p, cap);
        FUZZ_CHECK(q != NULL);
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

void fuzz_bytes_free(struct fuzz_bytes *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

static int same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static const char *json_str(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

void fuzz_metadata_check(const engine_metadata *m)
{
    json_t *enc = json_object_get(m->json, "isEncrypted");

    FUZZ_CHECK(json_is_object(m->json));
    FUZZ_CHECK(json_is_boolean(enc));
    FUZZ_CHECK(m->is_encrypted == json_is_true(enc));
    FUZZ_CHECK(m->retriever != NULL);
    FUZZ_CHECK(same_str(m->format, json_str(m->json, "format")));
    FUZZ_CHECK(same_str(m->key_id, json_str(m->json, "keyId")));
    if (m->is_encrypted) {
        FUZZ_CHECK(m->retriever[0] != '\0');
        FUZZ_CHECK(same_str(m->retriever, json_str(m->json, "keyRetrieverType")));
    }
    if (m->is_encrypted && strcmp(m->retriever, "secret") == 0) {
        FUZZ_CHECK(m->ns != NULL && m->secret != NULL);
        /* the names go into <secrets-dir>/<ns>/<name>/encryptionKey: a name that passes the
         * check must not leave that directory */
        int r = engine_secret_name_check(m->ns, m->secret);
        FUZZ_CHECK(r == 0 || r == COFFER_ERR_SECRET_NAME);
        if (r == 0) {
            FUZZ_CHECK(strchr(m->ns, '/') == NULL && strchr(m->secret, '/') == NULL);
            FUZZ_CHECK(strchr(m->ns, '.') == NULL);
            FUZZ_CHECK(m->secret[0] != '.' && strstr(m->secret, "..") == NULL);
            FUZZ_CHECK(strlen(m->ns) <= 63 && strlen(m->secret) <= 253);
        }
    } else {
        FUZZ_CHECK(m->ns == NULL && m->secret == NULL);
    }

    /* what the daemon writes back (dump) must parse again to the same fields */
    char *text = engine_metadata_dump(m->json);
    FUZZ_CHECK(text != NULL);
    engine_metadata again;
    int r = engine_metadata_parse(&again, text, strlen(text));
    if (strlen(text) > ENGINE_METADATA_MAX) {
        /* dumping escapes non-ASCII, so the dump may outgrow the limit the input kept */
        FUZZ_CHECK(r == COFFER_ERR_TOO_LARGE);
    } else {
        FUZZ_CHECK(r == 0);
        FUZZ_CHECK(again.is_encrypted == m->is_encrypted);
        FUZZ_CHECK(same_str(again.retriever, m->retriever));
        FUZZ_CHECK(same_str(again.ns, m->ns));
        FUZZ_CHECK(same_str(again.secret, m->secret));
        FUZZ_CHECK(same_str(again.format, m->format));
        FUZZ_CHECK(same_str(again.key_id, m->key_id));
        FUZZ_CHECK(json_equal(again.json, m->json));
    }
    engine_metadata_clear(&again);
    free(text);
}
