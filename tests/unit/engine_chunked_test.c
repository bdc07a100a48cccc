/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of engine_chunked: every Wycheproof c2sp.org/chunked-encryption vector
 * (Cobblestone-128 and -256), whole and in random pieces, through both backends, plus known-answer
 * re-sealing. */
#include "coffer_error.h"
#include "engine_chunked.h"
#include "engine_gcm.h"
#include "test_support.h"
#include "unit_util.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define FILE_128 "wycheproof_c2sp_chunked_encryption_aes_128_gcm_test.json"
#define FILE_256 "wycheproof_c2sp_chunked_encryption_aes_256_gcm_test.json"

#define PIECE_MAX    (40u * 1024u) /* random pieces are 1 byte to 40 KiB */
#define RANDOM_SEEDS 3
#define BYTEWISE_MAX 40000u /* vectors up to this size are also fed one byte at a time */

static json_t *vec128, *vec256;

/* A piece size from 1 to PIECE_MAX, log-uniform so that tiny and large pieces both occur. */
static size_t piece_size(uint64_t *s)
{
    size_t max = (size_t)1 << (1 + ts_rng_next(s) % 16);
    if (max > PIECE_MAX)
        max = PIECE_MAX;
    return 1 + (size_t)(ts_rng_next(s) % max);
}

static int has_flag(json_t *t, const char *flag)
{
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(t, "flags"), i, f)
    {
        if (strcmp(json_string_value(f), flag) == 0)
            return 1;
    }
    return 0;
}

struct chunked_vector {
    int id;
    int valid;
    const char *comment;
    json_t *json;
    uint8_t *key, *ctx, *ct;
    size_t keylen, ctxlen, ctlen;
    long long msglen; /* -1 when absent */
    const char *sha;  /* NULL when absent */
};

static void vector_load(struct chunked_vector *v, json_t *t)
{
    size_t zlen;
    uint8_t *z;
    json_t *ml = json_object_get(t, "msgLength");

    v->json = t;
    v->id = (int)json_integer_value(json_object_get(t, "tcId"));
    v->valid = strcmp(json_string_value(json_object_get(t, "result")), "valid") == 0;
    v->comment = json_string_value(json_object_get(t, "comment"));
    v->key = ts_hex(json_string_value(json_object_get(t, "key")), &v->keylen);
    v->ctx = ts_hex(json_string_value(json_object_get(t, "ctx")), &v->ctxlen);
    z = ts_hex(json_string_value(json_object_get(t, "ct")), &zlen);
    v->ct = ts_inflate(z, zlen, &v->ctlen);
    free(z);
    v->msglen = ml != NULL ? (long long)json_integer_value(ml) : -1;
    v->sha = json_string_value(json_object_get(t, "msgSha512"));
}

static void vector_free(struct chunked_vector *v)
{
    free(v->key);
    free(v->ctx);
    free(v->ct);
}

enum feed_mode { FEED_WHOLE, FEED_BYTEWISE, FEED_RANDOM };

struct open_result {
    int err;                /* first error, 0 if none */
    int err_at_final;       /* the first error came from engine_chunked_final */
    int sticky_ok;          /* after the error, further calls kept returning it and wrote nothing */
    int bound_ok;           /* every call wrote at most engine_chunked_bound(inlen) */
    size_t released_at_err; /* bytes released before the first error */
    struct unit_sink out;
};

/*
 * Spans mode (engine_chunked_update_spans): when use_spans is set, call_update cuts the whole
 * chunks of each call into 1 to 4 spans, runs the first on another thread and the rest here in
 * reverse order (order and thread must not matter), then joins them.
 */
static int use_spans;
static unsigned span_calls;

static void *span_thread(void *arg)
{
    engine_span_run(arg);
    return NULL;
}

static int update_spans(engine_chunked *c, const uint8_t *in, size_t n, uint8_t *o, size_t cap,
                        size_t *outlen)
{
    engine_span spans[4];
    size_t nspans = 99, maxspans = 1 + span_calls++ % 4;
    pthread_t th;
    int r = engine_chunked_update_spans(c, in, n, o, cap, outlen, spans, maxspans, &nspans);

    if (r != 0) {
        assert_int_equal(nspans, 0);
        return r;
    }
    assert_true(nspans <= maxspans);
    if (nspans == 0)
        return 0;
    assert_int_equal(pthread_create(&th, NULL, span_thread, &spans[0]), 0);
    for (size_t i = nspans; i-- > 1;)
        engine_span_run(&spans[i]);
    assert_int_equal(pthread_join(th, NULL), 0);
    if ((r = engine_chunked_spans_join(c, spans, nspans)) != 0)
        *outlen = 0; /* the call failed as a whole: nothing of it is released */
    return r;
}

/* One call's output buffer of exactly the bound, so ASan sees any overrun. */
static int call_update(engine_chunked *c, const uint8_t *in, size_t n, struct open_result *res)
{
    size_t cap = engine_chunked_bound(n), outlen = 12345;
    uint8_t *o = malloc(cap);
    assert_non_null(o);
    int r = use_spans ? update_spans(c, in, n, o, cap, &outlen)
                      : engine_chunked_update(c, in, n, o, cap, &outlen);
    if (outlen > cap)
        res->bound_ok = 0;
    if (r == 0)
        unit_sink_put(&res->out, o, outlen);
    else if (outlen != 0)
        res->bound_ok = 0; /* a failing call must report no output */
    free(o);
    return r;
}

static int call_final(engine_chunked *c, struct open_result *res)
{
    size_t cap = engine_chunked_bound(0), outlen = 12345;
    uint8_t *o = malloc(cap);
    assert_non_null(o);
    int r = engine_chunked_final(c, o, cap, &outlen);
    if (outlen > cap)
        res->bound_ok = 0;
    if (r == 0)
        unit_sink_put(&res->out, o, outlen);
    else if (outlen != 0)
        res->bound_ok = 0;
    free(o);
    return r;
}

/* After a failure: more input and final keep failing with the same code and release nothing. */
static void check_sticky(engine_chunked *c, struct open_result *res)
{
    uint8_t junk[100];
    size_t before = res->out.len;
    memset(junk, 0x5a, sizeof(junk));
    for (int k = 0; k < 3; k++) {
        if (call_update(c, junk, sizeof(junk), res) != res->err ||
            call_update(c, junk, 0, res) != res->err || call_final(c, res) != res->err)
            res->sticky_ok = 0;
    }
    if (res->out.len != before)
        res->sticky_ok = 0;
}

static void open_vector(engine_chunked *c, const struct chunked_vector *v, enum feed_mode mode,
                        uint64_t seed, struct open_result *res)
{
    size_t off = 0;
    int r = 0;

    memset(res, 0, sizeof(*res));
    res->sticky_ok = 1;
    res->bound_ok = 1;
    while (off < v->ctlen) {
        size_t n = v->ctlen - off;
        if (mode == FEED_BYTEWISE)
            n = 1;
        else if (mode == FEED_RANDOM) {
            size_t p = piece_size(&seed);
            n = p < n ? p : n;
        }
        if ((r = call_update(c, v->ct + off, n, res)) != 0)
            break;
        off += n;
    }
    if (r == 0) {
        r = call_final(c, res);
        res->err_at_final = r != 0;
    }
    res->err = r;
    res->released_at_err = res->out.len;
    if (r != 0)
        check_sticky(c, res);
}

static const char *mode_name(enum feed_mode m)
{
    if (use_spans)
        return m == FEED_WHOLE ? "whole, as spans" : "random pieces, as spans";
    return m == FEED_WHOLE ? "whole" : m == FEED_BYTEWISE ? "byte by byte" : "random pieces";
}

/* The plaintext of a valid vector (for re-sealing), or NULL. */
static uint8_t *decrypt_valid(engine_chunked_aead aead, engine_gcm_backend backend,
                              const struct chunked_vector *v, size_t *len)
{
    engine_chunked *c = NULL;
    struct open_result res;
    if (engine_chunked_open_new(&c, aead, backend, v->key, v->keylen, v->ctx, v->ctxlen) != 0)
        return NULL;
    open_vector(c, v, FEED_WHOLE, 0, &res);
    engine_chunked_free(c);
    if (res.err != 0) {
        free(res.out.buf);
        return NULL;
    }
    *len = res.out.len;
    return res.out.buf != NULL ? res.out.buf : calloc(1, 1);
}

/* Re-seal a valid vector's message with its salt; the output must equal ct byte for byte. */
static int reseal_vector(engine_chunked_aead aead, engine_gcm_backend backend,
                         const struct chunked_vector *v, uint64_t seed)
{
    size_t msglen = 0, off = 0;
    uint8_t *msg = decrypt_valid(aead, backend, v, &msglen);
    engine_chunked *c = NULL;
    struct open_result res;
    int ok = 0, r;

    if (msg == NULL)
        return 0;
    memset(&res, 0, sizeof(res));
    res.bound_ok = 1;
    assert_true(v->ctlen >= ENGINE_CHUNKED_SALT);
    if (engine_chunked_seal_new(&c, aead, backend, v->key, v->keylen, v->ctx, v->ctxlen, v->ct) !=
        0)
        goto out;
    while (off < msglen) {
        size_t n = msglen - off;
        if (seed != 0) {
            size_t p = piece_size(&seed);
            n = p < n ? p : n;
        }
        if ((r = call_update(c, msg + off, n, &res)) != 0)
            goto out;
        off += n;
    }
    if (call_final(c, &res) != 0)
        goto out;
    ok = res.bound_ok && res.out.len == v->ctlen && memcmp(res.out.buf, v->ct, v->ctlen) == 0 &&
         engine_chunked_plaintext_bytes(c) == msglen;
out:
    engine_chunked_free(c);
    free(res.out.buf);
    free(msg);
    return ok;
}

/*
 * Raw mode (the vectors' aeadKey and baseNonce, through engine_gcm directly): chunk i of a valid
 * vector decrypts under baseNonce XOR i. This checks the vectors' chunk layout independently of
 * engine_chunked's own KDF.
 */
static int raw_mode_vector(engine_gcm_backend backend, const struct chunked_vector *v)
{
    size_t aklen, bnlen, off = ENGINE_CHUNKED_HEADER;
    uint8_t *ak = ts_hex(json_string_value(json_object_get(v->json, "aeadKey")), &aklen);
    uint8_t *bn = ts_hex(json_string_value(json_object_get(v->json, "baseNonce")), &bnlen);
    uint8_t *pt = malloc(ENGINE_CHUNKED_CHUNK);
    engine_gcm *g = NULL;
    uint64_t i = 0;
    int ok = 0;

    assert_non_null(pt);
    if (bnlen != 12 || engine_gcm_new(&g, backend, ak, aklen) != 0)
        goto out;
    for (;;) {
        size_t left = v->ctlen - off;
        size_t n = left >= ENGINE_CHUNKED_CHUNK + ENGINE_CHUNKED_TAG ? ENGINE_CHUNKED_CHUNK
                                                                     : left - ENGINE_CHUNKED_TAG;
        uint8_t nonce[12];
        memcpy(nonce, bn, 12);
        for (int k = 0; k < 8; k++)
            nonce[11 - k] ^= (uint8_t)(i >> (8 * k));
        if (left < ENGINE_CHUNKED_TAG || engine_gcm_open(g, nonce, 12, NULL, 0, v->ct + off, n, pt,
                                                         v->ct + off + n, ENGINE_CHUNKED_TAG) != 0)
            goto out;
        off += n + ENGINE_CHUNKED_TAG;
        i++;
        if (n < ENGINE_CHUNKED_CHUNK)
            break;
    }
    ok = off == v->ctlen;
out:
    engine_gcm_free(g);
    free(ak);
    free(bn);
    free(pt);
    return ok;
}

/* Runs every check on one vector; returns the number of failures (each one printed). */
static int check_vector(engine_chunked_aead aead, engine_gcm_backend backend,
                        const struct chunked_vector *v)
{
    int fails = 0, r;
    int header_failure = has_flag(v->json, "HeaderFailure");
    size_t prefix = v->msglen > 0 ? (size_t)v->msglen : 0;

#define VFAIL(...)                                                                                 \
    do {                                                                                           \
        print_error("Cobblestone-%d tcId %d (%s, %s): ", aead == 16 ? 128 : 256, v->id,            \
                    v->comment, engine_gcm_backend_name(backend));                                 \
        print_error(__VA_ARGS__);                                                                  \
        print_error("\n");                                                                         \
        fails++;                                                                                   \
    } while (0)

    if (has_flag(v->json, "InvalidKeySize")) {
        engine_chunked *c = NULL;
        r = engine_chunked_open_new(&c, aead, backend, v->key, v->keylen, v->ctx, v->ctxlen);
        if (r != COFFER_ERR_KEY_SIZE)
            VFAIL("open_new with a %zu-byte key returned %s, expected KEY_SIZE", v->keylen,
                  coffer_errname(r));
        if (r == 0)
            engine_chunked_free(c);
        r = engine_chunked_seal_new(&c, aead, backend, v->key, v->keylen, v->ctx, v->ctxlen, NULL);
        if (r != COFFER_ERR_KEY_SIZE)
            VFAIL("seal_new with a %zu-byte key returned %s", v->keylen, coffer_errname(r));
        if (r == 0)
            engine_chunked_free(c);
        return fails;
    }

    for (int pass = 0; pass < 2 * (2 + RANDOM_SEEDS); pass++) {
        int m = pass % (2 + RANDOM_SEEDS);
        enum feed_mode mode = m == 0 ? FEED_WHOLE : m == 1 ? FEED_BYTEWISE : FEED_RANDOM;
        use_spans = pass >= 2 + RANDOM_SEEDS; /* the second round: whole chunks as spans */
        uint64_t seed = (uint64_t)m * 0x9e3779b97f4a7c15ull + (uint64_t)v->id * 1000003u + aead;
        engine_chunked *c = NULL;
        struct open_result res;
        char sha[129];

        if (mode == FEED_BYTEWISE && (v->ctlen > BYTEWISE_MAX || use_spans))
            continue;
        r = engine_chunked_open_new(&c, aead, backend, v->key, v->keylen, v->ctx, v->ctxlen);
        if (r != 0) {
            VFAIL("open_new: %s", coffer_errname(r));
            continue;
        }
        open_vector(c, v, mode, seed, &res);
        if (!res.bound_ok)
            VFAIL("%s: a call wrote more than engine_chunked_bound or reported output on failure",
                  mode_name(mode));
        if (v->valid) {
            if (res.err != 0) {
                VFAIL("%s: %s", mode_name(mode), coffer_errname(res.err));
            } else {
                ts_sha512_hex(res.out.buf, res.out.len, sha);
                if ((long long)res.out.len != v->msglen || strcmp(sha, v->sha) != 0)
                    VFAIL("%s: released %zu bytes (expected %lld) %s SHA-512", mode_name(mode),
                          res.out.len, v->msglen, strcmp(sha, v->sha) == 0 ? "right" : "WRONG");
                if (engine_chunked_plaintext_bytes(c) != res.out.len)
                    VFAIL("%s: plaintext_bytes says %llu", mode_name(mode),
                          (unsigned long long)engine_chunked_plaintext_bytes(c));
                /* a finished message refuses more input */
                uint8_t extra = 0;
                size_t ol = 0, cap = engine_chunked_bound(1);
                uint8_t *o = malloc(cap);
                assert_non_null(o);
                if (engine_chunked_update(c, &extra, 1, o, cap, &ol) == 0)
                    VFAIL("%s: accepted a byte after final", mode_name(mode));
                if (engine_chunked_final(c, o, cap, &ol) == 0)
                    VFAIL("%s: a second final succeeded", mode_name(mode));
                free(o);
            }
        } else {
            if (res.err == 0)
                VFAIL("%s: an invalid vector was accepted", mode_name(mode));
            if (res.released_at_err > prefix)
                VFAIL("%s: released %zu bytes, beyond the %zu-byte valid prefix", mode_name(mode),
                      res.released_at_err, prefix);
            if (res.released_at_err > 0 && res.released_at_err == prefix && v->sha != NULL) {
                ts_sha512_hex(res.out.buf, res.released_at_err, sha);
                if (strcmp(sha, v->sha) != 0)
                    VFAIL("%s: the released prefix has the wrong SHA-512", mode_name(mode));
            }
            if (res.released_at_err % ENGINE_CHUNKED_CHUNK != 0)
                VFAIL("%s: released %zu bytes, not whole chunks", mode_name(mode),
                      res.released_at_err);
            if (header_failure && res.released_at_err != 0)
                VFAIL("%s: a header failure released plaintext", mode_name(mode));
            if (!res.sticky_ok)
                VFAIL("%s: after failing with %s, a later call did not return it again",
                      mode_name(mode), coffer_errname(res.err));
            /* the error names the failure's family */
            int want_ok = 1;
            if (header_failure && has_flag(v->json, "Truncation"))
                want_ok = res.err == COFFER_ERR_TRUNCATED;
            else if (header_failure)
                want_ok = res.err == COFFER_ERR_WRONG_KEY;
            else if (has_flag(v->json, "Truncation"))
                want_ok = res.err == COFFER_ERR_TRUNCATED || res.err == COFFER_ERR_TAMPERED;
            else if (has_flag(v->json, "TrailingData")) /* a streaming reader may see a cut */
                want_ok = res.err == COFFER_ERR_TRAILING || res.err == COFFER_ERR_TAMPERED ||
                          res.err == COFFER_ERR_TRUNCATED;
            else
                want_ok = res.err == COFFER_ERR_TAMPERED;
            if (res.err != 0 && !want_ok)
                VFAIL("%s: failed with %s, the wrong error family", mode_name(mode),
                      coffer_errname(res.err));
        }
        engine_chunked_free(c);
        free(res.out.buf);
    }
    use_spans = 0;

    if (v->valid) {
        if (!reseal_vector(aead, backend, v, 0))
            VFAIL("re-sealing the message whole with the vector's salt does not give ct");
        if (!reseal_vector(aead, backend, v, (uint64_t)v->id * 31 + 7))
            VFAIL(
                "re-sealing the message in random pieces with the vector's salt does not give ct");
        use_spans = 1;
        if (!reseal_vector(aead, backend, v, 0) ||
            !reseal_vector(aead, backend, v, (uint64_t)v->id * 37 + 11))
            VFAIL("re-sealing the message with spans (whole, random pieces) does not give ct");
        use_spans = 0;
        if (!raw_mode_vector(backend, v))
            VFAIL("raw mode (aeadKey, baseNonce) does not decrypt ct");
    }
#undef VFAIL
    return fails;
}

static void run_file(json_t *vectors, engine_chunked_aead aead, engine_gcm_backend backend)
{
    json_t *grp, *t;
    size_t gi, ti;
    int total = 0, passed = 0, valid = 0;

    if (!engine_gcm_backend_available(backend))
        unit_backend_skip(backend);
    json_array_foreach(json_object_get(vectors, "testGroups"), gi, grp)
    {
        json_array_foreach(json_object_get(grp, "tests"), ti, t)
        {
            struct chunked_vector v;
            vector_load(&v, t);
            total++;
            if (check_vector(aead, backend, &v) == 0) {
                passed++;
                valid += v.valid;
            }
            vector_free(&v);
        }
    }
    print_message("[  INFO    ] Cobblestone-%d on %s: %d/%d Wycheproof vectors pass (%d valid, "
                  "%d invalid)\n",
                  aead == 16 ? 128 : 256, engine_gcm_backend_name(backend), passed, total, valid,
                  passed - valid);
    assert_int_equal(total, (int)json_integer_value(json_object_get(vectors, "numberOfTests")));
    assert_int_equal(passed, total);
}

static void test_vectors_128_openssl(void **state)
{
    (void)state;
    run_file(vec128, ENGINE_CHUNKED_AES_128_GCM, ENGINE_GCM_OPENSSL);
}

static void test_vectors_128_ipsec_mb(void **state)
{
    (void)state;
    run_file(vec128, ENGINE_CHUNKED_AES_128_GCM, ENGINE_GCM_IPSEC_MB);
}

static void test_vectors_256_openssl(void **state)
{
    (void)state;
    run_file(vec256, ENGINE_CHUNKED_AES_256_GCM, ENGINE_GCM_OPENSSL);
}

static void test_vectors_256_ipsec_mb(void **state)
{
    (void)state;
    run_file(vec256, ENGINE_CHUNKED_AES_256_GCM, ENGINE_GCM_IPSEC_MB);
}

/* Seal with a random salt, open in pieces: round trips at the chunk boundaries, both backends. */
static void test_round_trip_random_salt(void **state)
{
    (void)state;
    static const size_t lens[] = {0, 1, 16383, 16384, 16385, 32768, 100000};
    uint8_t key[32], ctx[5] = {'c', 't', 'x', 0, 1};
    ts_fill(key, sizeof(key), 42);
    for (int bi = 0; bi < 2; bi++) {
        engine_gcm_backend be = bi == 0 ? ENGINE_GCM_OPENSSL : ENGINE_GCM_IPSEC_MB;
        if (!engine_gcm_backend_available(be))
            continue;
        for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
            size_t len = lens[i], off = 0;
            uint8_t *msg = malloc(len + 1);
            uint64_t seed = len + 1;
            struct open_result a, b;
            engine_chunked *c = NULL;
            assert_non_null(msg);
            ts_fill(msg, len, len);
            memset(&a, 0, sizeof(a));
            memset(&b, 0, sizeof(b));
            /* two seals of the same message differ (fresh salts) */
            for (int k = 0; k < 2; k++) {
                struct open_result *res = k == 0 ? &a : &b;
                assert_int_equal(engine_chunked_seal_new(&c, ENGINE_CHUNKED_AES_256_GCM, be, key,
                                                         32, ctx, sizeof(ctx), NULL),
                                 0);
                for (off = 0; off < len;) {
                    size_t n = piece_size(&seed);
                    if (n > len - off)
                        n = len - off;
                    assert_int_equal(call_update(c, msg + off, n, res), 0);
                    off += n;
                }
                assert_int_equal(call_final(c, res), 0);
                assert_int_equal(engine_chunked_plaintext_bytes(c), len);
                engine_chunked_free(c);
            }
            size_t chunks = len / ENGINE_CHUNKED_CHUNK + 1;
            assert_int_equal(a.out.len, ENGINE_CHUNKED_HEADER + len + chunks * ENGINE_CHUNKED_TAG);
            assert_int_equal(b.out.len, a.out.len);
            assert_memory_not_equal(a.out.buf, b.out.buf, ENGINE_CHUNKED_SALT);
            struct chunked_vector v = {.id = (int)len,
                                       .valid = 1,
                                       .key = key,
                                       .keylen = 32,
                                       .ctx = ctx,
                                       .ctxlen = sizeof(ctx),
                                       .ct = a.out.buf,
                                       .ctlen = a.out.len};
            struct open_result o;
            assert_int_equal(engine_chunked_open_new(&c, ENGINE_CHUNKED_AES_256_GCM, be, key, 32,
                                                     ctx, sizeof(ctx)),
                             0);
            open_vector(c, &v, FEED_RANDOM, seed, &o);
            assert_int_equal(o.err, 0);
            assert_int_equal(o.out.len, len);
            if (len > 0)
                assert_memory_equal(o.out.buf, msg, len);
            engine_chunked_free(c);
            /* the other context fails at the commitment, before any output */
            assert_int_equal(engine_chunked_open_new(&c, ENGINE_CHUNKED_AES_256_GCM, be, key, 32,
                                                     ctx, sizeof(ctx) - 1),
                             0);
            free(o.out.buf);
            open_vector(c, &v, FEED_RANDOM, seed, &o);
            assert_int_equal(o.err, COFFER_ERR_WRONG_KEY);
            assert_int_equal(o.released_at_err, 0);
            engine_chunked_free(c);
            free(o.out.buf);
            free(a.out.buf);
            free(b.out.buf);
            free(msg);
        }
    }
}

/*
 * Spans over a message of many chunks: sealing with spans gives the same bytes as sealing
 * serially (same salt); opening with spans gives the message back; a flipped bit in a chunk of
 * the third span fails the join with TAMPERED, wipes what every span wrote, releases nothing,
 * and the failure sticks.
 */
static void test_spans_many_chunks(void **state)
{
    (void)state;
    enum { CHUNKS = 41, EXTRA = 100 };
    size_t len = CHUNKS * ENGINE_CHUNKED_CHUNK + EXTRA, cap = engine_chunked_bound(len);
    size_t pcap = engine_chunked_bound(cap);
    size_t n1 = 0, n2 = 0, f1 = 0, f2 = 0, nspans = 0, ol = 0;
    uint8_t key[32], salt[ENGINE_CHUNKED_SALT];
    uint8_t *msg = malloc(len), *a = malloc(cap), *b = malloc(cap), *pt = malloc(pcap);
    engine_chunked *c = NULL;
    engine_span spans[3];

    assert_non_null(msg);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(pt);
    ts_fill(key, sizeof(key), 5);
    ts_fill(salt, sizeof(salt), 6);
    ts_fill(msg, len, 7);
    for (int bi = 0; bi < 2; bi++) {
        engine_gcm_backend be = bi == 0 ? ENGINE_GCM_OPENSSL : ENGINE_GCM_IPSEC_MB;
        if (!engine_gcm_backend_available(be))
            continue;
        /* serial reference */
        assert_int_equal(
            engine_chunked_seal_new(&c, ENGINE_CHUNKED_AES_256_GCM, be, key, 32, NULL, 0, salt), 0);
        assert_int_equal(engine_chunked_update(c, msg, len, a, cap, &n1), 0);
        assert_int_equal(engine_chunked_final(c, a + n1, cap - n1, &f1), 0);
        engine_chunked_free(c);
        /* the same with spans: the header is written by the call, the tail waits for final */
        assert_int_equal(
            engine_chunked_seal_new(&c, ENGINE_CHUNKED_AES_256_GCM, be, key, 32, NULL, 0, salt), 0);
        assert_int_equal(engine_chunked_update_spans(c, msg, len, b, cap, &n2, spans, 3, &nspans),
                         0);
        assert_int_equal(nspans, 3);
        assert_int_equal(spans[0].first, 0);
        assert_int_equal(spans[1].first, 14); /* 41 chunks: 14 + 14 + 13 */
        assert_int_equal(spans[2].first, 28);
        for (size_t i = 0; i < nspans; i++)
            engine_span_run(&spans[i]);
        assert_int_equal(engine_chunked_spans_join(c, spans, nspans), 0);
        assert_int_equal(engine_chunked_plaintext_bytes(c), CHUNKS * ENGINE_CHUNKED_CHUNK);
        assert_int_equal(engine_chunked_final(c, b + n2, cap - n2, &f2), 0);
        engine_chunked_free(c);
        assert_int_equal(n1 + f1, n2 + f2);
        assert_memory_equal(a, b, n1 + f1);

        /* opening with spans */
        assert_int_equal(
            engine_chunked_open_new(&c, ENGINE_CHUNKED_AES_256_GCM, be, key, 32, NULL, 0), 0);
        assert_int_equal(
            engine_chunked_update_spans(c, a, n1 + f1, pt, pcap, &n2, spans, 3, &nspans), 0);
        assert_int_equal(nspans, 3);
        for (size_t i = 0; i < nspans; i++)
            engine_span_run(&spans[i]);
        assert_int_equal(engine_chunked_spans_join(c, spans, nspans), 0);
        assert_int_equal(engine_chunked_final(c, pt + n2, pcap - n2, &f2), 0);
        assert_int_equal(n2 + f2, len);
        assert_memory_equal(pt, msg, len);
        engine_chunked_free(c);

        /* a bit flipped in chunk 30 (the third span) */
        a[ENGINE_CHUNKED_HEADER + 30 * (ENGINE_CHUNKED_CHUNK + ENGINE_CHUNKED_TAG) + 77] ^= 0x10;
        assert_int_equal(
            engine_chunked_open_new(&c, ENGINE_CHUNKED_AES_256_GCM, be, key, 32, NULL, 0), 0);
        assert_int_equal(
            engine_chunked_update_spans(c, a, n1 + f1, pt, pcap, &n2, spans, 3, &nspans), 0);
        for (size_t i = nspans; i-- > 0;)
            engine_span_run(&spans[i]);
        assert_int_equal(spans[2].err, COFFER_ERR_TAMPERED);
        assert_int_equal(spans[2].done, 2 * ENGINE_CHUNKED_CHUNK); /* chunks 28 and 29 */
        assert_int_equal(engine_chunked_spans_join(c, spans, nspans), COFFER_ERR_TAMPERED);
        for (size_t i = 0; i < (size_t)(spans[2].out - pt) + spans[2].outlen; i++)
            if (pt[i] != 0)
                fail_msg("byte %zu of a failed call's output survived the join", i);
        assert_int_equal(engine_chunked_plaintext_bytes(c), 0);
        assert_int_equal(engine_chunked_update(c, a, 10, pt, pcap, &ol), COFFER_ERR_TAMPERED);
        assert_int_equal(engine_chunked_final(c, pt, pcap, &ol), COFFER_ERR_TAMPERED);
        engine_chunked_free(c);
        a[ENGINE_CHUNKED_HEADER + 30 * (ENGINE_CHUNKED_CHUNK + ENGINE_CHUNKED_TAG) + 77] ^= 0x10;
    }
    free(msg);
    free(a);
    free(b);
    free(pt);
}

/* The arguments engine_chunked refuses. */
static void test_args(void **state)
{
    (void)state;
    uint8_t key[32] = {1}, in[64] = {0}, out[64];
    uint8_t *ctx = calloc(1, ENGINE_CHUNKED_MAX_CONTEXT + 1);
    engine_chunked *c = NULL;
    size_t ol = 0;

    assert_non_null(ctx);
    /* a key of the other instantiation's size */
    assert_int_equal(engine_chunked_open_new(&c, ENGINE_CHUNKED_AES_256_GCM, ENGINE_GCM_OPENSSL,
                                             key, 16, NULL, 0),
                     COFFER_ERR_KEY_SIZE);
    assert_int_equal(engine_chunked_open_new(&c, ENGINE_CHUNKED_AES_128_GCM, ENGINE_GCM_OPENSSL,
                                             key, 32, NULL, 0),
                     COFFER_ERR_KEY_SIZE);
    /* contexts up to the limit work, beyond it are refused */
    assert_int_equal(engine_chunked_seal_new(&c, ENGINE_CHUNKED_AES_256_GCM, ENGINE_GCM_OPENSSL,
                                             key, 32, ctx, ENGINE_CHUNKED_MAX_CONTEXT, NULL),
                     0);
    engine_chunked_free(c);
    c = NULL;
    assert_int_not_equal(engine_chunked_seal_new(&c, ENGINE_CHUNKED_AES_256_GCM, ENGINE_GCM_OPENSSL,
                                                 key, 32, ctx, ENGINE_CHUNKED_MAX_CONTEXT + 1,
                                                 NULL),
                         0);
    assert_null(c);
    assert_int_not_equal(engine_chunked_open_new(&c, ENGINE_CHUNKED_AES_256_GCM, ENGINE_GCM_OPENSSL,
                                                 key, 32, ctx, ENGINE_CHUNKED_MAX_CONTEXT + 1),
                         0);
    assert_null(c);
    /* an output buffer below the bound is refused, not overrun */
    assert_int_equal(engine_chunked_seal_new(&c, ENGINE_CHUNKED_AES_256_GCM, ENGINE_GCM_OPENSSL,
                                             key, 32, NULL, 0, NULL),
                     0);
    assert_int_equal(engine_chunked_update(c, in, sizeof(in), out, sizeof(out), &ol),
                     COFFER_ERR_INVALID_ARG);
    assert_int_equal(ol, 0);
    engine_chunked_free(c);
    engine_chunked_free(NULL);
    assert_true(engine_chunked_bound(0) >= ENGINE_CHUNKED_HEADER + ENGINE_CHUNKED_TAG);
    free(ctx);
}

static int group_setup(void **state)
{
    (void)state;
    vec128 = ts_load_vectors(FILE_128);
    vec256 = ts_load_vectors(FILE_256);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    json_decref(vec128);
    json_decref(vec256);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors_128_openssl),    cmocka_unit_test(test_vectors_128_ipsec_mb),
        cmocka_unit_test(test_vectors_256_openssl),    cmocka_unit_test(test_vectors_256_ipsec_mb),
        cmocka_unit_test(test_round_trip_random_salt), cmocka_unit_test(test_args),
        cmocka_unit_test(test_spans_many_chunks),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
