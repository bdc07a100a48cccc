/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of engine_gcm: every Wycheproof AES-GCM vector through both backends, one-shot and
 * streamed, plus fail-closed wiping, dup and argument checks. */
#include "coffer_error.h"
#include "engine_gcm.h"
#include "test_support.h"
#include "unit_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define VECTORS_FILE "wycheproof_aes_gcm_test.json"
#define SPLIT_SEEDS  4

static json_t *vectors;
static int refused_long_iv; /* valid vectors refused because their IV is above ENGINE_GCM_IV_MAX */

static int all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

/* One decoded Wycheproof AEAD test. */
struct gcm_vector {
    int id;
    int valid;
    const char *flags; /* first flag, for messages */
    uint8_t *key, *iv, *aad, *msg, *ct, *tag;
    size_t keylen, ivlen, aadlen, msglen, ctlen, taglen;
};

static void vector_load(struct gcm_vector *v, json_t *t)
{
    json_t *flags = json_object_get(t, "flags");
    v->id = (int)json_integer_value(json_object_get(t, "tcId"));
    v->valid = strcmp(json_string_value(json_object_get(t, "result")), "valid") == 0;
    v->flags = json_array_size(flags) > 0 ? json_string_value(json_array_get(flags, 0)) : "";
    v->key = ts_hex(json_string_value(json_object_get(t, "key")), &v->keylen);
    v->iv = ts_hex(json_string_value(json_object_get(t, "iv")), &v->ivlen);
    v->aad = ts_hex(json_string_value(json_object_get(t, "aad")), &v->aadlen);
    v->msg = ts_hex(json_string_value(json_object_get(t, "msg")), &v->msglen);
    v->ct = ts_hex(json_string_value(json_object_get(t, "ct")), &v->ctlen);
    v->tag = ts_hex(json_string_value(json_object_get(t, "tag")), &v->taglen);
    /* "result": "acceptable" does not occur in this file; treat anything else as invalid. */
}

static void vector_free(struct gcm_vector *v)
{
    free(v->key);
    free(v->iv);
    free(v->aad);
    free(v->msg);
    free(v->ct);
    free(v->tag);
}

/* Streams len bytes of in through g (already started) in random pieces. */
static int stream_pieces(engine_gcm *g, const uint8_t *in, size_t len, uint8_t *out, uint64_t *seed)
{
    size_t off = 0;
    while (off < len) {
        size_t n = (size_t)(ts_rng_next(seed) % (len - off + 1));
        if (ts_rng_next(seed) % 4 == 0)
            n = n % 17; /* plenty of pieces below one AES block, and empty ones */
        int r = engine_gcm_update(g, in + off, n, out + off);
        if (r != 0)
            return r;
        off += n;
    }
    return 0;
}

/*
 * Runs one vector through one backend; returns the number of failed checks (0 = pass), printing
 * each failure so that every vector is reported, not only the first.
 */
static int check_vector(engine_gcm_backend backend, const struct gcm_vector *v)
{
    int fails = 0, r;
    engine_gcm *g = NULL;
    size_t n = v->msglen > v->ctlen ? v->msglen : v->ctlen;
    uint8_t *out = malloc(n + 1), *io = malloc(n + 1);
    uint8_t tag[16];

#define VFAIL(...)                                                                                 \
    do {                                                                                           \
        print_error("tcId %d (%s, %s): ", v->id, v->flags, engine_gcm_backend_name(backend));      \
        print_error(__VA_ARGS__);                                                                  \
        print_error("\n");                                                                         \
        fails++;                                                                                   \
    } while (0)

    assert_non_null(out);
    assert_non_null(io);
    r = engine_gcm_new(&g, backend, v->key, v->keylen);
    if (r != 0) {
        VFAIL("engine_gcm_new: %s", coffer_errname(r));
        goto out;
    }
    if (engine_gcm_backend_of(g) != backend || engine_gcm_key_len(g) != v->keylen)
        VFAIL("backend_of/key_len mismatch");

#ifdef ENGINE_GCM_IV_MAX
    /* IVs beyond the documented maximum are refused the same way by every backend. */
    if (v->ivlen > ENGINE_GCM_IV_MAX) {
        if (engine_gcm_seal(g, v->iv, v->ivlen, v->aad, v->aadlen, v->msg, v->msglen, out, tag,
                            16) != COFFER_ERR_INVALID_ARG ||
            engine_gcm_start(g, 0, v->iv, v->ivlen, v->aad, v->aadlen) != COFFER_ERR_INVALID_ARG)
            VFAIL("a %zu-byte IV (above ENGINE_GCM_IV_MAX) was not refused", v->ivlen);
        memset(out, 0xa5, n + 1);
        if (engine_gcm_open(g, v->iv, v->ivlen, v->aad, v->aadlen, v->ct, v->ctlen, out, v->tag,
                            v->taglen) != COFFER_ERR_INVALID_ARG ||
            !all_zero(out, v->ctlen))
            VFAIL("open of a %zu-byte IV was not refused with a wiped output", v->ivlen);
        refused_long_iv += fails == 0;
        goto out;
    }
#endif
    if (v->ivlen == 0) {
        /* A zero-length IV must be refused everywhere, not silently turned into some IV. */
        if (engine_gcm_seal(g, v->iv, 0, v->aad, v->aadlen, v->msg, v->msglen, out, tag, 16) == 0)
            VFAIL("seal accepted a zero-length IV");
        if (engine_gcm_start(g, 1, v->iv, 0, v->aad, v->aadlen) == 0)
            VFAIL("start(encrypt) accepted a zero-length IV");
        if (engine_gcm_start(g, 0, v->iv, 0, v->aad, v->aadlen) == 0)
            VFAIL("start(decrypt) accepted a zero-length IV");
        memset(out, 0xa5, n + 1);
        if (engine_gcm_open(g, v->iv, 0, v->aad, v->aadlen, v->ct, v->ctlen, out, v->tag,
                            v->taglen) == 0)
            VFAIL("open accepted a zero-length IV");
        else if (!all_zero(out, v->ctlen))
            VFAIL("open failed but left bytes in the output");
        goto out;
    }

    if (v->valid) {
        /* one-shot seal */
        memset(tag, 0, sizeof(tag));
        r = engine_gcm_seal(g, v->iv, v->ivlen, v->aad, v->aadlen, v->msg, v->msglen, out, tag,
                            v->taglen);
        if (r != 0) {
            VFAIL("seal: %s (the IV is %zu bytes)", coffer_errname(r), v->ivlen);
            goto out; /* the other checks would only repeat it */
        }
        if (memcmp(out, v->ct, v->ctlen) != 0 || memcmp(tag, v->tag, v->taglen) != 0)
            VFAIL("seal: wrong ciphertext or tag");
        /* one-shot open */
        r = engine_gcm_open(g, v->iv, v->ivlen, v->aad, v->aadlen, v->ct, v->ctlen, out, v->tag,
                            v->taglen);
        if (r != 0)
            VFAIL("open: %s", coffer_errname(r));
        else if (memcmp(out, v->msg, v->msglen) != 0)
            VFAIL("open: wrong plaintext");
        /* in place (out == in) both ways */
        memcpy(io, v->msg, v->msglen);
        r = engine_gcm_seal(g, v->iv, v->ivlen, v->aad, v->aadlen, io, v->msglen, io, tag,
                            v->taglen);
        if (r != 0 || memcmp(io, v->ct, v->ctlen) != 0 || memcmp(tag, v->tag, v->taglen) != 0)
            VFAIL("in-place seal: %s", r != 0 ? coffer_errname(r) : "wrong output");
        memcpy(io, v->ct, v->ctlen);
        r = engine_gcm_open(g, v->iv, v->ivlen, v->aad, v->aadlen, io, v->ctlen, io, v->tag,
                            v->taglen);
        if (r != 0 || memcmp(io, v->msg, v->msglen) != 0)
            VFAIL("in-place open: %s", r != 0 ? coffer_errname(r) : "wrong output");
        /* streaming, random split points */
        for (uint64_t s = 1; s <= SPLIT_SEEDS; s++) {
            uint64_t seed = s * 0x9e3779b97f4a7c15ull + (uint64_t)v->id;
            memset(out, 0, n + 1);
            if ((r = engine_gcm_start(g, 1, v->iv, v->ivlen, v->aad, v->aadlen)) != 0 ||
                (r = stream_pieces(g, v->msg, v->msglen, out, &seed)) != 0 ||
                (r = engine_gcm_finish_tag(g, tag, v->taglen)) != 0)
                VFAIL("streamed seal (seed %d): %s", (int)s, coffer_errname(r));
            else if (memcmp(out, v->ct, v->ctlen) != 0 || memcmp(tag, v->tag, v->taglen) != 0)
                VFAIL("streamed seal (seed %d): wrong ciphertext or tag", (int)s);
            memset(out, 0, n + 1);
            if ((r = engine_gcm_start(g, 0, v->iv, v->ivlen, v->aad, v->aadlen)) != 0 ||
                (r = stream_pieces(g, v->ct, v->ctlen, out, &seed)) != 0 ||
                (r = engine_gcm_finish_verify(g, v->tag, v->taglen)) != 0)
                VFAIL("streamed open (seed %d): %s", (int)s, coffer_errname(r));
            else if (memcmp(out, v->msg, v->msglen) != 0)
                VFAIL("streamed open (seed %d): wrong plaintext", (int)s);
        }
        /* a flipped tag bit of a valid vector must fail closed too */
        memcpy(tag, v->tag, v->taglen);
        tag[v->id % v->taglen] ^= (uint8_t)(1u << (v->id % 8));
        memset(out, 0xa5, n + 1);
        r = engine_gcm_open(g, v->iv, v->ivlen, v->aad, v->aadlen, v->ct, v->ctlen, out, tag,
                            v->taglen);
        if (r != COFFER_ERR_TAMPERED)
            VFAIL("open with a flipped tag bit returned %s", coffer_errname(r));
        else if (!all_zero(out, v->ctlen))
            VFAIL("open with a flipped tag bit left plaintext in the output");
        /* a flipped ciphertext bit, when there is ciphertext */
        if (v->ctlen > 0) {
            memcpy(io, v->ct, v->ctlen);
            io[(size_t)v->id % v->ctlen] ^= 0x01;
            memset(out, 0xa5, n + 1);
            r = engine_gcm_open(g, v->iv, v->ivlen, v->aad, v->aadlen, io, v->ctlen, out, v->tag,
                                v->taglen);
            if (r != COFFER_ERR_TAMPERED || !all_zero(out, v->ctlen))
                VFAIL("open of a flipped ciphertext bit: %s, output %s", coffer_errname(r),
                      all_zero(out, v->ctlen) ? "wiped" : "NOT wiped");
        }
    } else {
        memset(out, 0xa5, n + 1);
        r = engine_gcm_open(g, v->iv, v->ivlen, v->aad, v->aadlen, v->ct, v->ctlen, out, v->tag,
                            v->taglen);
        if (r == 0)
            VFAIL("open accepted an invalid vector");
        else if (r != COFFER_ERR_TAMPERED)
            VFAIL("open returned %s, expected TAMPERED", coffer_errname(r));
        if (!all_zero(out, v->ctlen))
            VFAIL("open failed but left bytes in the output");
        if (out[v->ctlen] != 0xa5)
            VFAIL("open wrote past the end of the output");
        for (uint64_t s = 1; s <= 2; s++) {
            uint64_t seed = s + (uint64_t)v->id * 7;
            if ((r = engine_gcm_start(g, 0, v->iv, v->ivlen, v->aad, v->aadlen)) != 0 ||
                (r = stream_pieces(g, v->ct, v->ctlen, out, &seed)) != 0) {
                VFAIL("streamed open: %s before the tag", coffer_errname(r));
                continue;
            }
            r = engine_gcm_finish_verify(g, v->tag, v->taglen);
            if (r != COFFER_ERR_TAMPERED)
                VFAIL("streamed open: finish_verify returned %s", coffer_errname(r));
        }
    }
out:
#undef VFAIL
    engine_gcm_free(g);
    free(out);
    free(io);
    return fails;
}

static void run_vectors(engine_gcm_backend backend)
{
    json_t *groups = json_object_get(vectors, "testGroups"), *grp, *t;
    size_t gi, ti;
    int total = 0, passed = 0, valid = 0, invalid = 0;

    refused_long_iv = 0;

    json_array_foreach(groups, gi, grp)
    {
        json_array_foreach(json_object_get(grp, "tests"), ti, t)
        {
            struct gcm_vector v;
            vector_load(&v, t);
            int f = check_vector(backend, &v);
            total++;
            if (f == 0) {
                passed++;
                valid += v.valid;
                invalid += !v.valid;
            }
            vector_free(&v);
        }
    }
    print_message("[  INFO    ] %s: %d/%d Wycheproof AES-GCM vectors pass (%d valid, %d "
                  "invalid; %d valid ones refused alike for an IV above the documented maximum)\n",
                  engine_gcm_backend_name(backend), passed, total, valid - refused_long_iv, invalid,
                  refused_long_iv);
    assert_int_equal(total, (int)json_integer_value(json_object_get(vectors, "numberOfTests")));
    assert_int_equal(passed, total);
}

static void test_vectors_openssl(void **state)
{
    (void)state;
    run_vectors(ENGINE_GCM_OPENSSL);
}

static void test_vectors_ipsec_mb(void **state)
{
    (void)state;
    if (!engine_gcm_backend_available(ENGINE_GCM_IPSEC_MB))
        unit_backend_skip(ENGINE_GCM_IPSEC_MB);
    run_vectors(ENGINE_GCM_IPSEC_MB);
}

/* A dup'd object carries the key and the message state: both finish the same message. */
static void dup_backend(engine_gcm_backend backend)
{
    uint8_t key[32], iv[12], aad[40], msg[1000], ct1[1000], ct2[1000], ct3[1000];
    uint8_t tag1[16], tag2[16], tag3[16];
    engine_gcm *g = NULL, *d = NULL, *d2 = NULL;

    ts_fill(key, sizeof(key), 1);
    ts_fill(iv, sizeof(iv), 2);
    ts_fill(aad, sizeof(aad), 3);
    ts_fill(msg, sizeof(msg), 4);
    assert_int_equal(engine_gcm_new(&g, backend, key, 32), 0);
    assert_int_equal(engine_gcm_seal(g, iv, 12, aad, sizeof(aad), msg, sizeof(msg), ct1, tag1, 16),
                     0);

    /* dup of an idle object seals identically and independently */
    assert_int_equal(engine_gcm_dup(&d, g), 0);
    assert_int_equal(engine_gcm_backend_of(d), backend);
    assert_int_equal(engine_gcm_key_len(d), 32);
    engine_gcm_free(g);
    g = NULL;
    assert_int_equal(engine_gcm_seal(d, iv, 12, aad, sizeof(aad), msg, sizeof(msg), ct2, tag2, 16),
                     0);
    assert_memory_equal(ct1, ct2, sizeof(ct1));
    assert_memory_equal(tag1, tag2, 16);

    /* dup in the middle of a message (odd split: a partial block is pending) */
    assert_int_equal(engine_gcm_start(d, 1, iv, 12, aad, sizeof(aad)), 0);
    assert_int_equal(engine_gcm_update(d, msg, 333, ct2), 0);
    assert_int_equal(engine_gcm_dup(&d2, d), 0);
    memcpy(ct3, ct2, 333);
    assert_int_equal(engine_gcm_update(d, msg + 333, sizeof(msg) - 333, ct2 + 333), 0);
    assert_int_equal(engine_gcm_finish_tag(d, tag2, 16), 0);
    assert_int_equal(engine_gcm_update(d2, msg + 333, sizeof(msg) - 333, ct3 + 333), 0);
    assert_int_equal(engine_gcm_finish_tag(d2, tag3, 16), 0);
    assert_memory_equal(ct1, ct2, sizeof(ct1));
    assert_memory_equal(ct1, ct3, sizeof(ct1));
    assert_memory_equal(tag1, tag2, 16);
    assert_memory_equal(tag1, tag3, 16);
    engine_gcm_free(d2);
    d2 = NULL;

    /* decrypting dup mid-message; then both verify */
    assert_int_equal(engine_gcm_start(d, 0, iv, 12, aad, sizeof(aad)), 0);
    assert_int_equal(engine_gcm_update(d, ct1, 517, ct2), 0);
    assert_int_equal(engine_gcm_dup(&d2, d), 0);
    memcpy(ct3, ct2, 517);
    assert_int_equal(engine_gcm_update(d, ct1 + 517, sizeof(ct1) - 517, ct2 + 517), 0);
    assert_int_equal(engine_gcm_update(d2, ct1 + 517, sizeof(ct1) - 517, ct3 + 517), 0);
    assert_int_equal(engine_gcm_finish_verify(d, tag1, 16), 0);
    tag3[0] = (uint8_t)(tag1[0] ^ 1);
    memcpy(tag3 + 1, tag1 + 1, 15);
    assert_int_equal(engine_gcm_finish_verify(d2, tag3, 16), COFFER_ERR_TAMPERED);
    assert_memory_equal(ct2, msg, sizeof(msg));
    assert_memory_equal(ct3, msg, sizeof(msg));

    engine_gcm_free(d);
    engine_gcm_free(d2);
}

static void test_dup_openssl(void **state)
{
    (void)state;
    dup_backend(ENGINE_GCM_OPENSSL);
}

static void test_dup_ipsec_mb(void **state)
{
    (void)state;
    if (!engine_gcm_backend_available(ENGINE_GCM_IPSEC_MB))
        unit_backend_skip(ENGINE_GCM_IPSEC_MB);
    dup_backend(ENGINE_GCM_IPSEC_MB);
}

/* Both backends agree on long messages with odd split points (beyond the vectors' sizes). */
static void test_backends_agree(void **state)
{
    (void)state;
    if (!engine_gcm_backend_available(ENGINE_GCM_IPSEC_MB))
        unit_backend_skip(ENGINE_GCM_IPSEC_MB);
    static const size_t lens[] = {0, 1, 15, 16, 17, 255, 256, 257, 4095, 65537, 1 << 20};
    for (size_t k = 16; k <= 32; k += 8) {
        uint8_t key[32], iv[12], aad[77], tag1[16], tag2[16];
        engine_gcm *a = NULL, *b = NULL;
        ts_fill(key, sizeof(key), k);
        ts_fill(iv, sizeof(iv), k + 1);
        ts_fill(aad, sizeof(aad), k + 2);
        assert_int_equal(engine_gcm_new(&a, ENGINE_GCM_IPSEC_MB, key, k), 0);
        assert_int_equal(engine_gcm_new(&b, ENGINE_GCM_OPENSSL, key, k), 0);
        for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
            size_t len = lens[i];
            uint8_t *msg = malloc(len + 1), *c1 = malloc(len + 1), *c2 = malloc(len + 1);
            uint64_t seed = len + k;
            assert_non_null(msg);
            assert_non_null(c1);
            assert_non_null(c2);
            ts_fill(msg, len, len);
            assert_int_equal(engine_gcm_seal(a, iv, 12, aad, sizeof(aad), msg, len, c1, tag1, 16),
                             0);
            assert_int_equal(engine_gcm_start(b, 1, iv, 12, aad, sizeof(aad)), 0);
            assert_int_equal(stream_pieces(b, msg, len, c2, &seed), 0);
            assert_int_equal(engine_gcm_finish_tag(b, tag2, 16), 0);
            assert_memory_equal(c1, c2, len);
            assert_memory_equal(tag1, tag2, 16);
            assert_int_equal(engine_gcm_start(a, 0, iv, 12, aad, sizeof(aad)), 0);
            assert_int_equal(stream_pieces(a, c2, len, c1, &seed), 0);
            assert_int_equal(engine_gcm_finish_verify(a, tag2, 16), 0);
            assert_memory_equal(c1, msg, len);
            free(msg);
            free(c1);
            free(c2);
        }
        engine_gcm_free(a);
        engine_gcm_free(b);
    }
}

/* Truncated tags (1 to 16 bytes) are accepted when they are a prefix of the full tag. */
static void test_short_tags(void **state)
{
    (void)state;
    uint8_t key[16], iv[12], msg[100], ct[100], out[100], full[16], tag[16];
    for (int bi = 0; bi < 2; bi++) {
        engine_gcm_backend be = bi == 0 ? ENGINE_GCM_OPENSSL : ENGINE_GCM_IPSEC_MB;
        engine_gcm *g = NULL;
        if (!engine_gcm_backend_available(be))
            continue;
        ts_fill(key, sizeof(key), 9);
        ts_fill(iv, sizeof(iv), 10);
        ts_fill(msg, sizeof(msg), 11);
        assert_int_equal(engine_gcm_new(&g, be, key, 16), 0);
        assert_int_equal(engine_gcm_seal(g, iv, 12, NULL, 0, msg, sizeof(msg), ct, full, 16), 0);
        for (size_t tl = 1; tl <= 16; tl++) {
            assert_int_equal(engine_gcm_seal(g, iv, 12, NULL, 0, msg, sizeof(msg), out, tag, tl),
                             0);
            assert_memory_equal(tag, full, tl);
            assert_int_equal(engine_gcm_open(g, iv, 12, NULL, 0, ct, sizeof(ct), out, full, tl), 0);
            assert_memory_equal(out, msg, sizeof(msg));
            memcpy(tag, full, 16);
            tag[tl - 1] ^= 0x80;
            assert_int_equal(engine_gcm_open(g, iv, 12, NULL, 0, ct, sizeof(ct), out, tag, tl),
                             COFFER_ERR_TAMPERED);
            assert_true(all_zero(out, sizeof(out)));
        }
        assert_int_equal(engine_gcm_seal(g, iv, 12, NULL, 0, msg, sizeof(msg), out, tag, 0),
                         COFFER_ERR_INVALID_ARG);
        assert_int_equal(engine_gcm_seal(g, iv, 12, NULL, 0, msg, sizeof(msg), out, tag, 17),
                         COFFER_ERR_INVALID_ARG);
        assert_int_not_equal(engine_gcm_open(g, iv, 12, NULL, 0, ct, sizeof(ct), out, full, 0), 0);
        engine_gcm_free(g);
    }
}

/* Argument and state checks. */
static void test_args_and_state(void **state)
{
    (void)state;
    uint8_t key[33] = {0}, iv[12] = {0}, buf[32] = {0}, tag[16];
    engine_gcm *g = (engine_gcm *)0x1;
    engine_gcm_backend b;

    for (size_t kl = 0; kl <= 33; kl++) {
        if (kl == 16 || kl == 24 || kl == 32)
            continue;
        g = (engine_gcm *)0x1;
        assert_int_equal(engine_gcm_new(&g, ENGINE_GCM_OPENSSL, key, kl), COFFER_ERR_KEY_SIZE);
        assert_null(g);
    }
    assert_int_equal(engine_gcm_backend_parse("openssl", &b), 0);
    assert_int_equal(b, ENGINE_GCM_OPENSSL);
    assert_int_equal(engine_gcm_backend_parse("ipsec-mb", &b), 0);
    assert_int_equal(b, ENGINE_GCM_IPSEC_MB);
    assert_int_equal(engine_gcm_backend_parse("auto", &b), 0);
    assert_int_equal(b, ENGINE_GCM_AUTO);
    assert_int_equal(engine_gcm_backend_parse("rot13", &b), COFFER_ERR_INVALID_ARG);
    assert_int_not_equal(engine_gcm_backend_default(), ENGINE_GCM_AUTO);
    assert_true(engine_gcm_backend_available(ENGINE_GCM_OPENSSL));
    assert_string_equal(engine_gcm_backend_name(ENGINE_GCM_OPENSSL), "openssl");
    if (engine_gcm_backend_available(ENGINE_GCM_IPSEC_MB))
        assert_memory_equal(engine_gcm_backend_name(ENGINE_GCM_IPSEC_MB), "ipsec-mb/", 9);
    print_message("[  INFO    ] default backend: %s\n",
                  engine_gcm_backend_name(engine_gcm_backend_default()));

    for (int bi = 0; bi < 2; bi++) {
        engine_gcm_backend be = bi == 0 ? ENGINE_GCM_OPENSSL : ENGINE_GCM_IPSEC_MB;
        if (!engine_gcm_backend_available(be))
            continue;
        assert_int_equal(engine_gcm_new(&g, be, key, 16), 0);
        /* update/finish before start, finish of the wrong direction */
        assert_int_equal(engine_gcm_update(g, buf, sizeof(buf), buf), COFFER_ERR_STATE);
        assert_int_equal(engine_gcm_finish_tag(g, tag, 16), COFFER_ERR_STATE);
        assert_int_equal(engine_gcm_finish_verify(g, tag, 16), COFFER_ERR_STATE);
        assert_int_equal(engine_gcm_start(g, 1, iv, 12, NULL, 0), 0);
        assert_int_equal(engine_gcm_finish_verify(g, tag, 16), COFFER_ERR_STATE);
        assert_int_equal(engine_gcm_finish_tag(g, tag, 16), 0);
        assert_int_equal(engine_gcm_finish_tag(g, tag, 16), COFFER_ERR_STATE);
        assert_int_equal(engine_gcm_start(g, 0, iv, 12, NULL, 0), 0);
        assert_int_equal(engine_gcm_finish_tag(g, tag, 16), COFFER_ERR_STATE);
        assert_int_equal(engine_gcm_finish_verify(g, tag, 16), 0);
        assert_int_equal(engine_gcm_finish_verify(g, tag, 16), COFFER_ERR_STATE);
        /* NULL IV */
        assert_int_not_equal(engine_gcm_start(g, 1, NULL, 12, NULL, 0), 0);
        engine_gcm_free(g);
        g = NULL;
    }
    engine_gcm_free(NULL);
}

static int group_setup(void **state)
{
    (void)state;
    vectors = ts_load_vectors(VECTORS_FILE);
    return vectors == NULL ? -1 : 0;
}

static int group_teardown(void **state)
{
    (void)state;
    json_decref(vectors);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors_openssl), cmocka_unit_test(test_vectors_ipsec_mb),
        cmocka_unit_test(test_dup_openssl),     cmocka_unit_test(test_dup_ipsec_mb),
        cmocka_unit_test(test_backends_agree),  cmocka_unit_test(test_short_tags),
        cmocka_unit_test(test_args_and_state),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
