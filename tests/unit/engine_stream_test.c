/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of engine_stream: round trips of every format and backend, and that tampering,
 * truncation, wrong keys and wrong contexts fail with the right code and release nothing. */
#include "coffer_error.h"
#include "engine_chunked.h"
#include "engine_header.h"
#include "engine_key.h"
#include "engine_metadata.h"
#include "engine_stream.h"
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

#define CHUNK  ENGINE_CHUNKED_CHUNK
#define SEALED (ENGINE_CHUNKED_CHUNK + ENGINE_CHUNKED_TAG)
#define MIB    (1024u * 1024u)

/* Synthetic result: the input ended inside the coffer-v1 header (the caller's own verdict). */
#define HEADER_CUT 1

static char *spool_dir;
static const uint8_t context[] = "cluster-a/backup-2026-01-01";

/* 1 byte to 64 KiB, log-uniform. */
static size_t piece_size(uint64_t *s)
{
    size_t m = (size_t)1 << (1 + ts_rng_next(s) % 16);
    return 1 + (size_t)(ts_rng_next(s) % m);
}

/* ---- keys and parameters ------------------------------------------------------------------ */

static engine_key *make_key(size_t len, uint64_t seed)
{
    uint8_t raw[32];
    engine_key *k = NULL;
    ts_fill(raw, sizeof(raw), seed);
    assert_int_equal(engine_key_from_bytes(&k, raw, len), 0);
    return k;
}

static size_t format_key_len(coffer_format f, size_t variant)
{
    static const size_t velero[] = {16, 24, 32};
    switch (f) {
    case COFFER_FORMAT_COBBLESTONE_128:
        return 16;
    case COFFER_FORMAT_VELERO_V1:
        return velero[variant % 3];
    default:
        return 32;
    }
}

/* The status metadata for a coffer-v1 header (compact JSON; free()). */
static char *metadata_for(const engine_key *k)
{
    json_t *m = engine_metadata_new_secret("velero", "coffer-key", "coffer-v1", k->id);
    assert_non_null(m);
    char *text = engine_metadata_dump(m);
    assert_non_null(text);
    json_decref(m);
    return text;
}

/* ---- sealing -------------------------------------------------------------------------------- */

/* Seal msg in random pieces; returns the whole output (free() it). */
static uint8_t *seal_all(coffer_format f, engine_gcm_backend be, const engine_key *k,
                         const char *meta, const uint8_t *msg, size_t len, uint64_t seed,
                         size_t *outlen)
{
    struct engine_stream_params p = {0};
    engine_stream *s = NULL;
    struct unit_sink out = {0};
    size_t off = 0, ol;
    char detail[256] = "";
    int r;

    p.format = f;
    p.backend = be;
    p.key = k;
    p.context = context;
    p.context_len = sizeof(context) - 1;
    p.metadata = meta;
    p.metadata_len = meta != NULL ? strlen(meta) : 0;
    p.detail = detail;
    p.detail_len = sizeof(detail);
    r = engine_stream_seal_new(&s, &p);
    if (r != 0)
        print_error("seal_new %s: %s: %s\n", engine_format_name(f), coffer_errname(r), detail);
    assert_int_equal(r, 0);
    while (off < len) {
        size_t n = piece_size(&seed);
        if (n > len - off)
            n = len - off;
        size_t cap = engine_stream_bound(s, n);
        uint8_t *o = malloc(cap + 1); /* exactly the bound: ASan sees an overrun */
        assert_non_null(o);
        assert_int_equal(engine_stream_update(s, msg + off, n, o, cap, &ol), 0);
        assert_true(ol <= cap);
        unit_sink_put(&out, o, ol);
        free(o);
        off += n;
    }
    size_t cap = engine_stream_bound(s, 0);
    uint8_t *o = malloc(cap + 1);
    assert_non_null(o);
    assert_int_equal(engine_stream_finish(s, o, cap, &ol), 0);
    assert_true(ol <= cap);
    unit_sink_put(&out, o, ol);
    assert_int_equal(engine_stream_drain(s, o, cap, &ol), 0);
    assert_int_equal(ol, 0);
    free(o);
    assert_int_equal(engine_stream_bytes_in(s), len);
    assert_int_equal(engine_stream_bytes_out(s), out.len);
    engine_stream_free(s);
    *outlen = out.len;
    return out.buf != NULL ? out.buf : calloc(1, 1);
}

/* ---- opening -------------------------------------------------------------------------------- */

enum stage { ST_NONE, ST_HEADER, ST_OPEN_NEW, ST_UPDATE, ST_FINISH, ST_DRAIN };

static const char *stage_name(enum stage s)
{
    static const char *const n[] = {"-", "header", "open_new", "update", "finish", "drain"};
    return n[s];
}

struct opened {
    int err;              /* first error, 0 if the whole message opened */
    enum stage stage;     /* where it came */
    int sticky_ok;        /* after the error, every call kept returning it and wrote nothing */
    int early_release;    /* velero-v1: bytes came out of update or finish */
    struct unit_sink out; /* all released plaintext */
    char detail[512];
};

struct open_args {
    coffer_format format;
    engine_gcm_backend backend;
    const engine_key *key;
    const uint8_t *ctx;
    size_t ctxlen;
    size_t spool_mem;
};

static void check_sticky(engine_stream *s, struct opened *o)
{
    uint8_t *buf = malloc(engine_stream_bound(s, 64) + 1);
    size_t ol = 0;
    uint8_t junk[64] = {0};
    assert_non_null(buf);
    for (int i = 0; i < 2; i++) {
        if (engine_stream_update(s, junk, sizeof(junk), buf, engine_stream_bound(s, 64), &ol) !=
                o->err ||
            ol != 0)
            o->sticky_ok = 0;
        if (engine_stream_finish(s, buf, engine_stream_bound(s, 0), &ol) != o->err || ol != 0)
            o->sticky_ok = 0;
        if (engine_stream_drain(s, buf, 64, &ol) != o->err || ol != 0)
            o->sticky_ok = 0;
    }
    free(buf);
}

/*
 * Keep what an update or finish call released (ol of cap bytes in b) when it succeeded (r 0), or
 * record its error r at stage st. Returns r.
 */
static int opened_take(struct opened *o, const struct open_args *a, int r, const uint8_t *b,
                       size_t cap, size_t ol, enum stage st)
{
    if (r != 0) {
        o->err = r;
        o->stage = st;
        return r;
    }
    assert_true(ol <= cap);
    unit_sink_put(&o->out, b, ol);
    if (a->format == COFFER_FORMAT_VELERO_V1 && ol != 0)
        o->early_release = 1;
    return 0;
}

/* Open in in random pieces (reading a coffer-v1 header first) and drain. */
static void open_all(const struct open_args *a, const uint8_t *in, size_t len, uint64_t seed,
                     struct opened *o)
{
    struct engine_stream_params p = {0};
    engine_header_reader hr;
    engine_stream *s = NULL;
    size_t off = 0, ol;
    int r;

    memset(o, 0, sizeof(*o));
    o->sticky_ok = 1;
    engine_header_reader_init(&hr);
    if (a->format == COFFER_FORMAT_COFFER_V1) {
        /* feed the header reader until it has the whole header */
        int hret = 0;
        while (off < len && hret == 0) {
            size_t n = piece_size(&seed), used = 0;
            if (n > len - off)
                n = len - off;
            hret = engine_header_reader_feed(&hr, in + off, n, &used);
            assert_true(used <= n);
            off += used;
        }
        if (hret < 0 || hret == 0) {
            o->err = hret < 0 ? hret : HEADER_CUT;
            o->stage = ST_HEADER;
            goto out;
        }
        assert_true(hr.complete);
    }
    p.format = a->format;
    p.backend = a->backend;
    p.key = a->key;
    p.context = a->ctx;
    p.context_len = a->ctxlen;
    p.header = &hr;
    p.spool_dir = spool_dir;
    p.spool_mem = a->spool_mem;
    p.detail = o->detail;
    p.detail_len = sizeof(o->detail);
    r = engine_stream_open_new(&s, &p);
    if (r != 0) {
        o->err = r;
        o->stage = ST_OPEN_NEW;
        assert_null(s);
        goto out;
    }
    while (off < len) {
        size_t n = piece_size(&seed);
        if (n > len - off)
            n = len - off;
        size_t cap = engine_stream_bound(s, n);
        uint8_t *b = malloc(cap + 1);
        assert_non_null(b);
        ol = 12345;
        r = engine_stream_update(s, in + off, n, b, cap, &ol);
        if (r != 0 && ol != 0)
            o->sticky_ok = 0; /* a failing call reports no output */
        r = opened_take(o, a, r, b, cap, ol, ST_UPDATE);
        free(b);
        if (r != 0)
            goto fail;
        off += n;
    }
    {
        size_t cap = engine_stream_bound(s, 0);
        uint8_t *b = malloc(cap + 1);
        assert_non_null(b);
        ol = 12345;
        r = engine_stream_finish(s, b, cap, &ol);
        r = opened_take(o, a, r, b, cap, ol, ST_FINISH);
        free(b);
        if (r != 0)
            goto fail;
    }
    for (;;) {
        size_t cap = piece_size(&seed) + 16;
        uint8_t *b = malloc(cap);
        assert_non_null(b);
        r = engine_stream_drain(s, b, cap, &ol);
        if (r == 0) {
            assert_true(ol <= cap);
            unit_sink_put(&o->out, b, ol);
        }
        free(b);
        if (r != 0) {
            o->err = r;
            o->stage = ST_DRAIN;
            goto fail;
        }
        if (ol == 0)
            break;
    }
    assert_int_equal(engine_stream_bytes_out(s), o->out.len);
    goto out;
fail:
    snprintf(o->detail, sizeof(o->detail), "%s", engine_stream_detail(s));
    check_sticky(s, o);
out:
    engine_stream_free(s);
    engine_header_reader_clear(&hr);
}

static struct open_args args_for(coffer_format f, engine_gcm_backend be, const engine_key *k)
{
    struct open_args a = {.format = f, .backend = be, .key = k};
    if (f == COFFER_FORMAT_COBBLESTONE || f == COFFER_FORMAT_COBBLESTONE_128) {
        a.ctx = context;
        a.ctxlen = sizeof(context) - 1;
    }
    a.spool_mem = 64 * 1024; /* small, so velero-v1 spools to a file */
    return a;
}

/*
 * 1 if the backend runs on this CPU; else that part is skipped with the reason (under CI=true
 * nothing may skip, so it fails instead, like ts_skip).
 */
static int backend_ok(engine_gcm_backend be)
{
    if (engine_gcm_backend_available(be))
        return 1;
    unit_backend_missing(be);
    return 0;
}

/* ---- round trips ---------------------------------------------------------------------------- */

static const coffer_format all_formats[] = {COFFER_FORMAT_COFFER_V1, COFFER_FORMAT_COBBLESTONE,
                                            COFFER_FORMAT_COBBLESTONE_128, COFFER_FORMAT_VELERO_V1,
                                            COFFER_FORMAT_NONE};

static size_t expected_ct_len(coffer_format f, size_t len, size_t header)
{
    switch (f) {
    case COFFER_FORMAT_COFFER_V1:
        return header + ENGINE_CHUNKED_HEADER + len + ENGINE_CHUNKED_TAG * (len / CHUNK + 1);
    case COFFER_FORMAT_COBBLESTONE:
    case COFFER_FORMAT_COBBLESTONE_128:
        return ENGINE_CHUNKED_HEADER + len + ENGINE_CHUNKED_TAG * (len / CHUNK + 1);
    case COFFER_FORMAT_VELERO_V1:
        return 12 + len + 16;
    default:
        return len;
    }
}

static void round_trips(engine_gcm_backend be)
{
    static const size_t lens[] = {0, 1, 16383, 16384, 16385, 32768, 3 * MIB};
    size_t maxlen = 3 * MIB;
    uint8_t *msg;
    int done = 0;

    if (!backend_ok(be))
        skip();
    msg = malloc(maxlen);
    assert_non_null(msg);
    ts_fill(msg, maxlen, 2026);
    for (size_t fi = 0; fi < sizeof(all_formats) / sizeof(all_formats[0]); fi++) {
        coffer_format f = all_formats[fi];
        for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
            size_t len = lens[li], ctlen;
            engine_key *k = f == COFFER_FORMAT_NONE ? NULL : make_key(format_key_len(f, li), li);
            char *meta = f == COFFER_FORMAT_COFFER_V1 ? metadata_for(k) : NULL;
            uint64_t seed = fi * 100 + li + 1;
            uint8_t *ct = seal_all(f, be, k, meta, msg, len, seed, &ctlen);
            size_t hlen = 0;

            if (meta != NULL) {
                uint8_t *h = NULL;
                assert_int_equal(engine_header_encode(meta, strlen(meta), &h, &hlen), 0);
                assert_memory_equal(ct, h, hlen); /* the output starts with the header */
                free(h);
            }
            if (ctlen != expected_ct_len(f, len, hlen))
                print_error("%s %zu bytes: %zu bytes of output, expected %zu\n",
                            engine_format_name(f), len, ctlen, expected_ct_len(f, len, hlen));
            assert_int_equal(ctlen, expected_ct_len(f, len, hlen));
            if (f == COFFER_FORMAT_NONE)
                assert_memory_equal(ct, msg, len);
            else if (len >= 64)
                assert_memory_not_equal(ct + ctlen - len / 2, msg + len / 2 - 32, 32);

            struct open_args a = args_for(f, be, k);
            if (li % 2)
                a.spool_mem = 0; /* velero-v1: the default spool size */
            struct opened o;
            open_all(&a, ct, ctlen, seed * 7, &o);
            if (o.err != 0)
                print_error("%s on %s, %zu bytes: %s at %s (%s)\n", engine_format_name(f),
                            unit_backend_label(be), len, coffer_errname(o.err), stage_name(o.stage),
                            o.detail);
            assert_int_equal(o.err, 0);
            assert_false(o.early_release);
            assert_int_equal(o.out.len, len);
            if (len > 0)
                assert_memory_equal(o.out.buf, msg, len);
            free(o.out.buf);
            free(ct);
            free(meta);
            engine_key_free(k);
            done++;
        }
    }
    print_message("[  INFO    ] %s: %d round trips (5 formats x 7 sizes) pass\n",
                  engine_gcm_backend_name(be), done);
    free(msg);
}

static void test_round_trips_openssl(void **state)
{
    (void)state;
    round_trips(ENGINE_GCM_OPENSSL);
}

static void test_round_trips_ipsec_mb(void **state)
{
    (void)state;
    round_trips(ENGINE_GCM_IPSEC_MB);
}

/* ---- tampering ------------------------------------------------------------------------------ */

static int in_set(int err, const int *set, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (set[i] == err)
            return 1;
    return 0;
}

/* When set, flip_check counts which of the allowed codes each flip produced. */
static int *flip_histogram;

/* One flipped bit: check the error family and that no plaintext of the failed chunk came out. */
static int flip_check(const struct open_args *a, uint8_t *ct, size_t ctlen, const uint8_t *msg,
                      size_t pos, const char *region, const int *errs, size_t nerrs,
                      size_t max_release, uint64_t seed)
{
    struct opened o;
    int fails = 0;
    ct[pos] ^= (uint8_t)(1u << (pos % 8));
    open_all(a, ct, ctlen, seed, &o);
    ct[pos] ^= (uint8_t)(1u << (pos % 8));
    if (flip_histogram != NULL)
        for (size_t i = 0; i < nerrs; i++)
            if (errs[i] == o.err)
                flip_histogram[i]++;
    if (o.err == 0 || !in_set(o.err, errs, nerrs)) {
        print_error("%s on %s: flipped bit in the %s (byte %zu): %s at %s (%s)\n",
                    engine_format_name(a->format), unit_backend_label(a->backend), region, pos,
                    o.err == 0 ? "ACCEPTED" : coffer_errname(o.err), stage_name(o.stage), o.detail);
        fails++;
    }
    if (o.out.len > max_release || o.out.len % CHUNK != 0 ||
        (o.out.len > 0 && memcmp(o.out.buf, msg, o.out.len) != 0)) {
        print_error("%s: flipped bit in the %s (byte %zu): released %zu bytes (at most %zu "
                    "authentic whole chunks allowed)\n",
                    engine_format_name(a->format), region, pos, o.out.len, max_release);
        fails++;
    }
    if (!o.sticky_ok) {
        print_error("%s: flipped bit in the %s: the failed stream did not keep failing\n",
                    engine_format_name(a->format), region);
        fails++;
    }
    if (o.err < 0 && o.stage != ST_HEADER && o.detail[0] == '\0') {
        print_error("%s: flipped bit in the %s: no detail for %s\n", engine_format_name(a->format),
                    region, coffer_errname(o.err));
        fails++;
    }
    free(o.out.buf);
    return fails;
}

static void tamper_coffer_v1(engine_gcm_backend be)
{
    size_t len = 2 * CHUNK + 1000, ctlen, hlen;
    uint8_t *msg, *ct;
    engine_key *k;
    char *meta;
    int fails = 0, checks = 0;

    if (!backend_ok(be))
        skip();
    msg = malloc(len);
    k = make_key(32, 5);
    meta = metadata_for(k);
    assert_non_null(msg);
    ts_fill(msg, len, 6);
    ct = seal_all(COFFER_FORMAT_COFFER_V1, be, k, meta, msg, len, 7, &ctlen);
    hlen = 12 + strlen(meta);
    struct open_args a = args_for(COFFER_FORMAT_COFFER_V1, be, k);

    /* every byte of the header: magic, length, metadata JSON */
    static const int header_errs[] = {COFFER_ERR_BAD_HEADER, COFFER_ERR_TOO_LARGE,
                                      COFFER_ERR_METADATA,   COFFER_ERR_TAMPERED,
                                      COFFER_ERR_WRONG_KEY,  HEADER_CUT};
    static const int magic_errs[] = {COFFER_ERR_BAD_HEADER};
    int hist[6] = {0};
    flip_histogram = hist;
    for (size_t i = 0; i < hlen; i++, checks++) {
        const char *region = i < 8 ? "header magic" : i < 12 ? "header length" : "metadata JSON";
        if (i < 8)
            fails += flip_check(&a, ct, ctlen, msg, i, region, magic_errs, 1, 0, i);
        else
            fails += flip_check(&a, ct, ctlen, msg, i, region, header_errs, 6, 0, i);
    }
    print_message("[  INFO    ] header flips: BAD_HEADER %d, TOO_LARGE %d, METADATA %d, TAMPERED "
                  "%d, WRONG_KEY %d, header cut short %d\n",
                  hist[0], hist[1], hist[2], hist[3], hist[4], hist[5]);
    /* salt and commitment: the commitment check, before any chunk */
    static const int commit_errs[] = {COFFER_ERR_WRONG_KEY, COFFER_ERR_TAMPERED};
    size_t salt = hlen, commit = hlen + ENGINE_CHUNKED_SALT, body = hlen + ENGINE_CHUNKED_HEADER;
    size_t header_pos[] = {salt, salt + 11, salt + 23, commit, commit + 17, commit + 31};
    memset(hist, 0, sizeof(hist));
    for (size_t i = 0; i < 6; i++, checks++)
        fails += flip_check(&a, ct, ctlen, msg, header_pos[i], i < 3 ? "salt" : "commitment",
                            commit_errs, 2, 0, i);
    print_message("[  INFO    ] salt/commitment flips: WRONG_KEY %d, TAMPERED %d\n", hist[0],
                  hist[1]);
    flip_histogram = NULL;
    /* chunk bodies and tags: TAMPERED, only the chunks before the failed one released */
    static const int chunk_errs[] = {COFFER_ERR_TAMPERED};
    for (size_t c = 0; c < 3; c++) {
        size_t start = body + c * SEALED, blen = c < 2 ? CHUNK : 1000;
        size_t pos[] = {start, start + blen / 2, start + blen - 1, start + blen, start + blen + 15};
        for (size_t i = 0; i < 5; i++, checks++)
            fails += flip_check(&a, ct, ctlen, msg, pos[i], i < 3 ? "chunk body" : "chunk tag",
                                chunk_errs, 1, c * CHUNK, c * 10 + i);
    }
    print_message("[  INFO    ] coffer-v1 on %s: %d single-bit flips, %d failures\n",
                  engine_gcm_backend_name(be), checks, fails);
    assert_int_equal(fails, 0);
    free(ct);
    free(meta);
    free(msg);
    engine_key_free(k);
}

static void test_tamper_coffer_v1_openssl(void **state)
{
    (void)state;
    tamper_coffer_v1(ENGINE_GCM_OPENSSL);
}

static void test_tamper_coffer_v1_ipsec_mb(void **state)
{
    (void)state;
    tamper_coffer_v1(ENGINE_GCM_IPSEC_MB);
}

/* Bare Cobblestone has no key id: a changed salt or commitment is exactly WRONG_KEY. */
static void test_tamper_cobblestone(void **state)
{
    (void)state;
    int fails = 0;
    for (int bi = 0; bi < 2; bi++) {
        engine_gcm_backend be = bi ? ENGINE_GCM_IPSEC_MB : ENGINE_GCM_OPENSSL;
        if (!backend_ok(be))
            continue;
        for (int v = 0; v < 2; v++) {
            coffer_format f = v ? COFFER_FORMAT_COBBLESTONE_128 : COFFER_FORMAT_COBBLESTONE;
            size_t len = CHUNK + 77, ctlen;
            uint8_t *msg = malloc(len);
            engine_key *k = make_key(format_key_len(f, 0), 8);
            assert_non_null(msg);
            ts_fill(msg, len, 9);
            uint8_t *ct = seal_all(f, be, k, NULL, msg, len, 10, &ctlen);
            struct open_args a = args_for(f, be, k);
            static const int wrong_key[] = {COFFER_ERR_WRONG_KEY};
            static const int tampered[] = {COFFER_ERR_TAMPERED};
            size_t hp[] = {0, 23, 24, 55};
            for (size_t i = 0; i < 4; i++)
                fails += flip_check(&a, ct, ctlen, msg, hp[i], i < 2 ? "salt" : "commitment",
                                    wrong_key, 1, 0, i);
            size_t cp[] = {56, 56 + CHUNK - 1, 56 + CHUNK + 5, 56 + SEALED, ctlen - 1};
            size_t rel[] = {0, 0, 0, CHUNK, CHUNK};
            for (size_t i = 0; i < 5; i++)
                fails += flip_check(&a, ct, ctlen, msg, cp[i], i == 2 || i == 4 ? "tag" : "body",
                                    tampered, 1, rel[i], i);
            free(ct);
            free(msg);
            engine_key_free(k);
        }
    }
    assert_int_equal(fails, 0);
}

/* velero-v1: a flip anywhere fails at finish (TAMPERED) and nothing at all is released. */
static void test_tamper_velero(void **state)
{
    (void)state;
    int fails = 0;
    for (int bi = 0; bi < 2; bi++) {
        engine_gcm_backend be = bi ? ENGINE_GCM_IPSEC_MB : ENGINE_GCM_OPENSSL;
        if (!backend_ok(be))
            continue;
        size_t len = 200000, ctlen;
        uint8_t *msg = malloc(len);
        engine_key *k = make_key(32, 11);
        assert_non_null(msg);
        ts_fill(msg, len, 12);
        uint8_t *ct = seal_all(COFFER_FORMAT_VELERO_V1, be, k, NULL, msg, len, 13, &ctlen);
        struct open_args a = args_for(COFFER_FORMAT_VELERO_V1, be, k);
        static const int tampered[] = {COFFER_ERR_TAMPERED};
        size_t pos[] = {0, 5, 11, 12, len / 2, 12 + len - 1, 12 + len, ctlen - 1};
        const char *region[] = {"nonce", "nonce", "nonce", "body", "body", "body", "tag", "tag"};
        for (size_t i = 0; i < 8; i++) {
            struct opened o;
            fails += flip_check(&a, ct, ctlen, msg, pos[i], region[i], tampered, 1, 0, i);
            /* and it is the tag check at finish that caught it */
            ct[pos[i]] ^= 0x40;
            open_all(&a, ct, ctlen, i, &o);
            ct[pos[i]] ^= 0x40;
            if (o.stage != ST_FINISH || o.out.len != 0 || o.early_release) {
                print_error("velero-v1: flip in the %s: failed at %s with %zu bytes out\n",
                            region[i], stage_name(o.stage), o.out.len);
                fails++;
            }
            free(o.out.buf);
        }
        free(ct);
        free(msg);
        engine_key_free(k);
    }
    assert_int_equal(fails, 0);
}

/* ---- truncation ----------------------------------------------------------------------------- */

static int cut_check(const struct open_args *a, const uint8_t *ct, size_t cut, const uint8_t *msg,
                     const int *errs, size_t nerrs, size_t max_release, const char *what)
{
    struct opened o;
    int fails = 0;
    open_all(a, ct, cut, cut, &o);
    if (o.err == 0 || !in_set(o.err, errs, nerrs)) {
        print_error("%s on %s cut at %zu (%s): %s at %s\n", engine_format_name(a->format),
                    unit_backend_label(a->backend), cut, what,
                    o.err == 0 ? "ACCEPTED" : coffer_errname(o.err), stage_name(o.stage));
        fails++;
    }
    if (o.out.len > max_release || (o.out.len > 0 && memcmp(o.out.buf, msg, o.out.len) != 0)) {
        print_error("%s cut at %zu: released %zu bytes, at most %zu allowed\n",
                    engine_format_name(a->format), cut, o.out.len, max_release);
        fails++;
    }
    if (!o.sticky_ok) {
        print_error("%s cut at %zu: the failed stream did not keep failing\n",
                    engine_format_name(a->format), cut);
        fails++;
    }
    free(o.out.buf);
    return fails;
}

static void test_truncation_coffer_v1(void **state)
{
    (void)state;
    int fails = 0, checks = 0;
    static const int truncated[] = {COFFER_ERR_TRUNCATED};
    static const int header_cut[] = {HEADER_CUT, COFFER_ERR_TRUNCATED};
    static const int cut_in_chunk[] = {COFFER_ERR_TRUNCATED, COFFER_ERR_TAMPERED};
    for (int bi = 0; bi < 2; bi++) {
        engine_gcm_backend be = bi ? ENGINE_GCM_IPSEC_MB : ENGINE_GCM_OPENSSL;
        if (!backend_ok(be))
            continue;
        /* ten full chunks and a short one; and exactly ten full chunks (an empty final chunk) */
        for (int exact = 0; exact < 2; exact++) {
            size_t len = 10 * CHUNK + (exact ? 0 : 777), ctlen;
            uint8_t *msg = malloc(len);
            engine_key *k = make_key(32, 14);
            char *meta = metadata_for(k);
            assert_non_null(msg);
            ts_fill(msg, len, 15);
            uint8_t *ct = seal_all(COFFER_FORMAT_COFFER_V1, be, k, meta, msg, len, 16, &ctlen);
            size_t hlen = 12 + strlen(meta), body = hlen + ENGINE_CHUNKED_HEADER;
            struct open_args a = args_for(COFFER_FORMAT_COFFER_V1, be, k);

            /* at every chunk boundary, including right after the header and the salt+commitment */
            fails += cut_check(&a, ct, hlen, msg, truncated, 1, 0, "after the header");
            fails += cut_check(&a, ct, body, msg, truncated, 1, 0, "after the commitment");
            checks += 2;
            for (size_t c = 1; c <= 10; c++, checks++)
                fails += cut_check(&a, ct, body + c * SEALED, msg, truncated, 1, c * CHUNK,
                                   "at a chunk boundary");
            /* inside the header, the salt, the commitment and chunks */
            size_t in_header[] = {0, 1, 7, 8, 11, 12, hlen - 1};
            for (size_t i = 0; i < 7; i++, checks++)
                fails += cut_check(&a, ct, in_header[i], msg, header_cut, 2, 0, "in the header");
            size_t in_kdf[] = {hlen + 1, hlen + 24, body - 1};
            for (size_t i = 0; i < 3; i++, checks++)
                fails +=
                    cut_check(&a, ct, in_kdf[i], msg, truncated, 1, 0, "in the salt or commitment");
            size_t in_chunk[] = {
                body + 1, body + 15, body + 16, body + SEALED - 1, body + 3 * SEALED + 100,
                ctlen - 1};
            for (size_t i = 0; i < 6; i++, checks++)
                fails += cut_check(&a, ct, in_chunk[i], msg, cut_in_chunk, 2,
                                   (in_chunk[i] - body) / SEALED * CHUNK, "inside a chunk");
            /* the complete message still opens */
            struct opened o;
            open_all(&a, ct, ctlen, 1, &o);
            assert_int_equal(o.err, 0);
            assert_int_equal(o.out.len, len);
            free(o.out.buf);
            /* trailing bytes after the final chunk */
            uint8_t *longer = malloc(ctlen + SEALED + 1);
            assert_non_null(longer);
            memcpy(longer, ct, ctlen);
            memset(longer + ctlen, 0xab, SEALED + 1);
            static const int trailing[] = {COFFER_ERR_TRAILING, COFFER_ERR_TAMPERED,
                                           COFFER_ERR_TRUNCATED};
            size_t extra[] = {1, 15, 16, 17, SEALED, SEALED + 1};
            for (size_t i = 0; i < 6; i++, checks++)
                fails += cut_check(&a, longer, ctlen + extra[i], msg, trailing, 3, len,
                                   "with trailing bytes");
            free(longer);
            free(ct);
            free(meta);
            free(msg);
            engine_key_free(k);
        }
    }
    /* the 3 MiB message without its empty final chunk */
    {
        size_t len = 3 * MIB, ctlen;
        uint8_t *msg = malloc(len);
        engine_key *k = make_key(32, 17);
        char *meta = metadata_for(k);
        assert_non_null(msg);
        ts_fill(msg, len, 18);
        uint8_t *ct =
            seal_all(COFFER_FORMAT_COFFER_V1, ENGINE_GCM_AUTO, k, meta, msg, len, 19, &ctlen);
        struct open_args a = args_for(COFFER_FORMAT_COFFER_V1, ENGINE_GCM_AUTO, k);
        fails += cut_check(&a, ct, ctlen - ENGINE_CHUNKED_TAG, msg, truncated, 1, len,
                           "without the empty final chunk");
        fails += cut_check(&a, ct, ctlen - ENGINE_CHUNKED_TAG - SEALED, msg, truncated, 1,
                           len - CHUNK, "without the last two chunks");
        checks += 2;
        free(ct);
        free(meta);
        free(msg);
        engine_key_free(k);
    }
    print_message("[  INFO    ] coffer-v1 truncation: %d cuts, %d failures\n", checks, fails);
    assert_int_equal(fails, 0);
}

/* ---- wrong keys and contexts ---------------------------------------------------------------- */

static void test_wrong_key_and_context(void **state)
{
    (void)state;
    size_t len = 3 * CHUNK + 5, ctlen;
    uint8_t *msg = malloc(len);
    assert_non_null(msg);
    ts_fill(msg, len, 20);
    for (int bi = 0; bi < 2; bi++) {
        engine_gcm_backend be = bi ? ENGINE_GCM_IPSEC_MB : ENGINE_GCM_OPENSSL;
        if (!backend_ok(be))
            continue;
        struct opened o;
        engine_key *k = make_key(32, 21), *k2 = make_key(32, 22);

        /* coffer-v1 with a keyId: refused at open_new, naming both key ids */
        char *meta = metadata_for(k);
        uint8_t *ct = seal_all(COFFER_FORMAT_COFFER_V1, be, k, meta, msg, len, 23, &ctlen);
        struct open_args a = args_for(COFFER_FORMAT_COFFER_V1, be, k2);
        open_all(&a, ct, ctlen, 1, &o);
        assert_int_equal(o.err, COFFER_ERR_WRONG_KEY);
        assert_int_equal(o.stage, ST_OPEN_NEW);
        assert_int_equal(o.out.len, 0);
        if (strstr(o.detail, k->id) == NULL || strstr(o.detail, k2->id) == NULL)
            print_error("wrong-key detail \"%s\" should name %s and %s\n", o.detail, k->id, k2->id);
        assert_non_null(strstr(o.detail, k->id));
        assert_non_null(strstr(o.detail, k2->id));
        free(o.out.buf);
        free(ct);
        free(meta);

        /* coffer-v1 whose metadata has no keyId: the commitment catches it before any chunk */
        const char *nokid = "{\"isEncrypted\":true,\"keyRetrieverType\":\"secret\","
                            "\"keyRetrieverConfig\":{\"namespace\":\"velero\",\"secretName\":"
                            "\"k\"},\"format\":\"coffer-v1\"}";
        ct = seal_all(COFFER_FORMAT_COFFER_V1, be, k, nokid, msg, len, 24, &ctlen);
        open_all(&a, ct, ctlen, 2, &o);
        assert_int_equal(o.err, COFFER_ERR_WRONG_KEY);
        assert_int_equal(o.stage, ST_UPDATE);
        assert_int_equal(o.out.len, 0);
        assert_true(o.sticky_ok);
        free(o.out.buf);
        a.key = k; /* the right key opens it */
        open_all(&a, ct, ctlen, 3, &o);
        assert_int_equal(o.err, 0);
        assert_int_equal(o.out.len, len);
        free(o.out.buf);
        free(ct);

        /* bare Cobblestone-256/-128: wrong key or wrong context, WRONG_KEY before any output */
        for (int v = 0; v < 2; v++) {
            coffer_format f = v ? COFFER_FORMAT_COBBLESTONE_128 : COFFER_FORMAT_COBBLESTONE;
            engine_key *ck = make_key(format_key_len(f, 0), 25), *ck2 = make_key(ck->len, 26);
            ct = seal_all(f, be, ck, NULL, msg, len, 27, &ctlen);
            struct open_args b = args_for(f, be, ck2);
            open_all(&b, ct, ctlen, 4, &o);
            assert_int_equal(o.err, COFFER_ERR_WRONG_KEY);
            assert_int_equal(o.out.len, 0);
            assert_true(o.sticky_ok);
            free(o.out.buf);
            b.key = ck;
            b.ctxlen--; /* the context cut by one byte */
            open_all(&b, ct, ctlen, 5, &o);
            assert_int_equal(o.err, COFFER_ERR_WRONG_KEY);
            assert_int_equal(o.out.len, 0);
            free(o.out.buf);
            b.ctx = (const uint8_t *)"";
            b.ctxlen = 0; /* no context */
            open_all(&b, ct, ctlen, 6, &o);
            assert_int_equal(o.err, COFFER_ERR_WRONG_KEY);
            assert_int_equal(o.out.len, 0);
            free(o.out.buf);
            free(ct);
            engine_key_free(ck);
            engine_key_free(ck2);
        }

        /* velero-v1: a wrong key fails the tag at finish; nothing released */
        engine_key *vk = make_key(24, 28), *vk2 = make_key(24, 29);
        ct = seal_all(COFFER_FORMAT_VELERO_V1, be, vk, NULL, msg, len, 30, &ctlen);
        struct open_args c = args_for(COFFER_FORMAT_VELERO_V1, be, vk2);
        open_all(&c, ct, ctlen, 7, &o);
        assert_int_equal(o.err, COFFER_ERR_TAMPERED);
        assert_int_equal(o.stage, ST_FINISH);
        assert_int_equal(o.out.len, 0);
        assert_true(o.sticky_ok);
        free(o.out.buf);
        free(ct);
        engine_key_free(vk);
        engine_key_free(vk2);
        engine_key_free(k);
        engine_key_free(k2);
    }
    free(msg);
}

/* velero-v1 opening: update and finish write nothing; drain gives the plaintext after the tag. */
static void test_velero_holds_until_verified(void **state)
{
    (void)state;
    size_t len = 1 * MIB + 3, ctlen, ol;
    uint8_t *msg = malloc(len), *buf = malloc(len + 64);
    engine_key *k = make_key(32, 31);
    assert_non_null(msg);
    assert_non_null(buf);
    ts_fill(msg, len, 32);
    uint8_t *ct = seal_all(COFFER_FORMAT_VELERO_V1, ENGINE_GCM_AUTO, k, NULL, msg, len, 33, &ctlen);
    struct engine_stream_params p = {0};
    engine_stream *s = NULL;
    p.format = COFFER_FORMAT_VELERO_V1;
    p.key = k;
    p.spool_dir = spool_dir;
    p.spool_mem = 4096;
    assert_int_equal(engine_stream_open_new(&s, &p), 0);
    /* drain before finish is a state error, not an early release */
    assert_int_not_equal(engine_stream_drain(s, buf, len, &ol), 0);
    assert_int_equal(ol, 0);
    assert_int_equal(engine_stream_update(s, ct, ctlen, buf, engine_stream_bound(s, ctlen), &ol),
                     0);
    assert_int_equal(ol, 0);
    assert_int_equal(engine_stream_finish(s, buf, engine_stream_bound(s, 0), &ol), 0);
    assert_int_equal(ol, 0);
    size_t got = 0;
    do {
        assert_int_equal(engine_stream_drain(s, buf + got, 65536, &ol), 0);
        got += ol;
    } while (ol > 0);
    assert_int_equal(got, len);
    assert_memory_equal(buf, msg, len);
    assert_int_equal(engine_stream_bytes_out(s), len);
    /* more input after the end is trailing data */
    assert_int_not_equal(engine_stream_update(s, ct, 1, buf, engine_stream_bound(s, 1), &ol), 0);
    engine_stream_free(s);
    free(ct);
    free(msg);
    free(buf);
    engine_key_free(k);
}

/* ---- parameters and names ------------------------------------------------------------------- */

static void test_formats_and_params(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(all_formats) / sizeof(all_formats[0]); i++) {
        coffer_format f;
        assert_int_equal(engine_format_parse(engine_format_name(all_formats[i]), &f), 0);
        assert_int_equal(f, all_formats[i]);
    }
    coffer_format f;
    assert_string_equal(engine_format_name(COFFER_FORMAT_COFFER_V1), "coffer-v1");
    assert_string_equal(engine_format_name(COFFER_FORMAT_VELERO_V1), "velero-v1");
    assert_string_equal(engine_format_name(COFFER_FORMAT_COBBLESTONE), "cobblestone");
    assert_string_equal(engine_format_name(COFFER_FORMAT_COBBLESTONE_128), "cobblestone-128");
    assert_string_equal(engine_format_name(COFFER_FORMAT_NONE), "none");
    assert_int_equal(engine_format_parse("coffer-v2", &f), COFFER_ERR_FORMAT);
    assert_int_equal(engine_format_parse("", &f), COFFER_ERR_FORMAT);
    assert_int_equal(engine_format_key_rule(COFFER_FORMAT_COFFER_V1), ENGINE_KEY_RULE_COFFER);
    assert_int_equal(engine_format_key_rule(COFFER_FORMAT_COBBLESTONE), ENGINE_KEY_RULE_COFFER);
    assert_int_equal(engine_format_key_rule(COFFER_FORMAT_COBBLESTONE_128),
                     ENGINE_KEY_RULE_COBBLESTONE_128);
    assert_int_equal(engine_format_key_rule(COFFER_FORMAT_VELERO_V1), ENGINE_KEY_RULE_VELERO);

    struct engine_stream_params p = {0};
    engine_stream *s = (engine_stream *)0x1;
    char detail[256] = "";
    engine_key *k16 = make_key(16, 1), *k32 = make_key(32, 2);
    p.detail = detail;
    p.detail_len = sizeof(detail);
    /* a key is needed for every encrypted format */
    p.format = COFFER_FORMAT_COBBLESTONE;
    assert_int_not_equal(engine_stream_seal_new(&s, &p), 0);
    /* the key size must fit the format, and the detail says so */
    p.key = k16;
    assert_int_equal(engine_stream_seal_new(&s, &p), COFFER_ERR_KEY_SIZE);
    assert_non_null(strstr(detail, "16"));
    p.format = COFFER_FORMAT_COFFER_V1;
    p.metadata = "{\"isEncrypted\":false}";
    p.metadata_len = strlen(p.metadata);
    assert_int_equal(engine_stream_seal_new(&s, &p), COFFER_ERR_KEY_SIZE);
    p.format = COFFER_FORMAT_COBBLESTONE_128;
    p.key = k32;
    assert_int_equal(engine_stream_seal_new(&s, &p), COFFER_ERR_KEY_SIZE);
    /* coffer-v1 sealing needs metadata; opening needs a complete header */
    p.format = COFFER_FORMAT_COFFER_V1;
    p.metadata = NULL;
    p.metadata_len = 0;
    assert_int_not_equal(engine_stream_seal_new(&s, &p), 0);
    assert_int_not_equal(engine_stream_open_new(&s, &p), 0);
    engine_header_reader hr;
    engine_header_reader_init(&hr);
    p.header = &hr;
    assert_int_not_equal(engine_stream_open_new(&s, &p), 0);
    /* metadata beyond the limit */
    char *big = malloc(ENGINE_METADATA_MAX + 1);
    assert_non_null(big);
    memset(big, ' ', ENGINE_METADATA_MAX + 1);
    p.metadata = big;
    p.metadata_len = ENGINE_METADATA_MAX + 1;
    assert_int_equal(engine_stream_seal_new(&s, &p), COFFER_ERR_TOO_LARGE);
    free(big);
    /* an unknown format */
    p.format = (coffer_format)42;
    assert_int_equal(engine_stream_seal_new(&s, &p), COFFER_ERR_FORMAT);
    /* none needs no key */
    memset(&p, 0, sizeof(p));
    p.format = COFFER_FORMAT_NONE;
    assert_int_equal(engine_stream_seal_new(&s, &p), 0);
    uint8_t out[16];
    size_t ol;
    /* an output buffer below the bound is refused, not overrun */
    engine_stream_free(s);
    p.format = COFFER_FORMAT_COBBLESTONE;
    p.key = k32;
    assert_int_equal(engine_stream_seal_new(&s, &p), 0);
    assert_int_equal(engine_stream_update(s, out, sizeof(out), out, sizeof(out), &ol),
                     COFFER_ERR_INVALID_ARG);
    engine_stream_free(s);
    engine_stream_free(NULL);
    engine_key_free(k16);
    engine_key_free(k32);
}

/*
 * docs/format.md, "Opening, in order", step 4: when the header's keyId matched the key but the
 * commitment does not, the salt or commitment was modified: TAMPERED. Without a keyId in the
 * metadata the same change is indistinguishable from a wrong key: WRONG_KEY. Either way nothing
 * is released and the stream explains itself.
 */
static void test_coffer_v1_commitment_error_code(void **state)
{
    (void)state;
    static const char nokid[] = "{\"isEncrypted\":true,\"keyRetrieverType\":\"secret\","
                                "\"keyRetrieverConfig\":{\"namespace\":\"velero\","
                                "\"secretName\":\"k\"},\"format\":\"coffer-v1\"}";
    size_t len = 1000, ctlen;
    uint8_t *msg = malloc(len);
    engine_key *k = make_key(32, 40);
    char *meta = metadata_for(k);
    int bad = 0;
    assert_non_null(msg);
    ts_fill(msg, len, 41);
    for (int with_id = 1; with_id >= 0; with_id--) {
        const char *m = with_id ? meta : nokid;
        int want = with_id ? COFFER_ERR_TAMPERED : COFFER_ERR_WRONG_KEY;
        uint8_t *ct =
            seal_all(COFFER_FORMAT_COFFER_V1, ENGINE_GCM_AUTO, k, m, msg, len, 42, &ctlen);
        struct open_args a = args_for(COFFER_FORMAT_COFFER_V1, ENGINE_GCM_AUTO, k);
        size_t hlen = 12 + strlen(m);
        for (size_t pos = hlen; pos < hlen + ENGINE_CHUNKED_HEADER; pos += 5) {
            struct opened o;
            ct[pos] ^= 0x01;
            open_all(&a, ct, ctlen, pos, &o);
            ct[pos] ^= 0x01;
            if (o.err != want || o.stage != ST_UPDATE || o.out.len != 0 || o.detail[0] == '\0') {
                print_error("%s byte %zu altered (%s keyId): %s at %s, %zu bytes out (%s); "
                            "docs/format.md says %s\n",
                            pos < hlen + ENGINE_CHUNKED_SALT ? "salt" : "commitment", pos - hlen,
                            with_id ? "with" : "without", coffer_errname(o.err),
                            stage_name(o.stage), o.out.len, o.detail, coffer_errname(want));
                bad++;
            }
            free(o.out.buf);
        }
        free(ct);
    }
    free(meta);
    free(msg);
    engine_key_free(k);
    assert_int_equal(bad, 0);
}

/* "On failure of a _new function *out is NULL", whichever check failed. */
static void test_new_failure_sets_out_null(void **state)
{
    (void)state;
    struct engine_stream_params p = {0};
    engine_key *k16 = make_key(16, 1), *k32 = make_key(32, 2);
    engine_header_reader hr;
    int bad = 0;
    engine_header_reader_init(&hr);
    struct {
        const char *what;
        coffer_format format;
        const engine_key *key;
        const char *metadata;
        int open;
    } cases[] = {
        {"seal, no key", COFFER_FORMAT_COBBLESTONE, NULL, NULL, 0},
        {"open, no key", COFFER_FORMAT_VELERO_V1, NULL, NULL, 1},
        {"seal, unknown format", (coffer_format)42, k32, NULL, 0},
        {"seal, key size", COFFER_FORMAT_COBBLESTONE, k16, NULL, 0},
        {"open, key size", COFFER_FORMAT_COBBLESTONE_128, k32, NULL, 1},
        {"seal, no metadata", COFFER_FORMAT_COFFER_V1, k32, NULL, 0},
        {"open, incomplete header", COFFER_FORMAT_COFFER_V1, k32, NULL, 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        engine_stream *s = (engine_stream *)&p; /* anything but NULL */
        p.format = cases[i].format;
        p.key = cases[i].key;
        p.metadata = cases[i].metadata;
        p.header = &hr;
        int r = cases[i].open ? engine_stream_open_new(&s, &p) : engine_stream_seal_new(&s, &p);
        assert_int_not_equal(r, 0);
        if (s != NULL) {
            print_error("%s: %s returned, but *out was left unchanged, not NULL\n", cases[i].what,
                        coffer_errname(r));
            bad++;
        }
    }
    engine_key_free(k16);
    engine_key_free(k32);
    assert_int_equal(bad, 0);
}

static int group_setup(void **state)
{
    (void)state;
    spool_dir = ts_tmpdir();
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    ts_rmtree(spool_dir);
    free(spool_dir);
    return 0;
}

/* Pass-through opening never releases a coffer-v1 file: the magic fails FORMAT, however it is
 * fed, and nothing of it comes out; shorter prefixes and other data pass through unchanged. */
static void passthrough_feed(const uint8_t *in, size_t len, size_t piece, int want_err,
                             size_t want_out)
{
    struct engine_stream_params p;
    engine_stream *s = NULL;
    uint8_t out[256];
    size_t total = 0, n = 0;
    int r = 0;

    memset(&p, 0, sizeof(p));
    p.format = COFFER_FORMAT_NONE;
    assert_int_equal(engine_stream_open_new(&s, &p), 0);
    for (size_t off = 0; off < len && r == 0; off += piece) {
        size_t k = len - off < piece ? len - off : piece;
        assert_true(engine_stream_bound(s, k) + total <= sizeof(out));
        r = engine_stream_update(s, in + off, k, out + total, sizeof(out) - total, &n);
        if (r == 0)
            total += n;
    }
    if (r == 0) {
        r = engine_stream_finish(s, out + total, sizeof(out) - total, &n);
        if (r == 0)
            total += n;
    }
    assert_int_equal(r, want_err);
    assert_int_equal(total, want_out);
    if (want_err == 0)
        assert_memory_equal(out, in, len);
    else
        assert_non_null(strstr(engine_stream_detail(s), "coffer-v1"));
    engine_stream_free(s);
}

static void test_passthrough_refuses_magic(void **state)
{
    uint8_t file[64];
    (void)state;
    memset(file, 'x', sizeof(file));
    memcpy(file, engine_header_magic, ENGINE_HEADER_MAGIC_LEN);
    for (size_t piece = 1; piece <= sizeof(file); piece++)
        passthrough_feed(file, sizeof(file), piece, COFFER_ERR_FORMAT, 0);
    passthrough_feed(file, ENGINE_HEADER_MAGIC_LEN, 3, COFFER_ERR_FORMAT, 0);
    /* a prefix of the magic alone, another version, other data: released as they are */
    passthrough_feed(file, 5, 1, 0, 5);
    file[ENGINE_HEADER_MAGIC_LEN - 1] ^= 0x7;
    passthrough_feed(file, sizeof(file), 2, 0, sizeof(file));
    file[0] = 'c';
    passthrough_feed(file, sizeof(file), 1, 0, sizeof(file));
    passthrough_feed(file, 0, 1, 0, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_formats_and_params),
        cmocka_unit_test(test_round_trips_openssl),
        cmocka_unit_test(test_round_trips_ipsec_mb),
        cmocka_unit_test(test_tamper_coffer_v1_openssl),
        cmocka_unit_test(test_tamper_coffer_v1_ipsec_mb),
        cmocka_unit_test(test_tamper_cobblestone),
        cmocka_unit_test(test_tamper_velero),
        cmocka_unit_test(test_truncation_coffer_v1),
        cmocka_unit_test(test_wrong_key_and_context),
        cmocka_unit_test(test_velero_holds_until_verified),
        cmocka_unit_test(test_coffer_v1_commitment_error_code),
        cmocka_unit_test(test_new_failure_sets_out_null),
        cmocka_unit_test(test_passthrough_refuses_magic),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
