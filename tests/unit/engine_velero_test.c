/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of engine_velero: Wycheproof GCM known answers in the velero-v1 layout, spooling,
 * and that opening releases nothing before the tag verified. */
#include "coffer_error.h"
#include "engine_gcm.h"
#include "engine_velero.h"
#include "test_support.h"
#include "unit_util.h"

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static json_t *vectors;
static char *spool_dir;

static size_t piece_size(uint64_t *s, size_t max)
{
    size_t m = (size_t)1 << (1 + ts_rng_next(s) % 17);
    if (m > max)
        m = max;
    return 1 + (size_t)(ts_rng_next(s) % m);
}

static size_t dir_entries(const char *path)
{
    size_t n = 0;
    DIR *d = opendir(path);
    struct dirent *e;
    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

struct open_out {
    int err;       /* first error */
    int stage;     /* 0 update, 1 final, 2 drain */
    size_t before; /* bytes written by update and final (must stay 0) */
    uint8_t *pt;   /* drained plaintext */
    size_t ptlen;
};

/* Open msg (nonce || ct || tag) in random pieces, then drain in random-sized buffers. */
static void velero_open(engine_gcm_backend be, const uint8_t *key, size_t keylen, const uint8_t *in,
                        size_t len, size_t spool_mem, uint64_t seed, struct open_out *o)
{
    engine_velero *v = NULL;
    size_t off = 0, ol;
    uint8_t tmp[64];
    int r;

    memset(o, 0, sizeof(*o));
    o->pt = malloc(len + 1);
    assert_non_null(o->pt);
    assert_int_equal(engine_velero_open_new(&v, be, key, keylen, spool_dir, spool_mem), 0);
    /* nothing to drain before the end */
    assert_int_equal(engine_velero_drain(v, tmp, sizeof(tmp), &ol), COFFER_ERR_STATE);
    while (off < len) {
        size_t n = piece_size(&seed, 40960);
        if (n > len - off)
            n = len - off;
        ol = 99;
        r = engine_velero_update(v, in + off, n, tmp, sizeof(tmp), &ol);
        o->before += ol;
        if (r != 0) {
            o->err = r;
            o->stage = 0;
            goto out;
        }
        off += n;
    }
    ol = 99;
    r = engine_velero_final(v, tmp, sizeof(tmp), &ol);
    o->before += ol;
    if (r != 0) {
        o->err = r;
        o->stage = 1;
        goto out;
    }
    for (;;) {
        size_t cap = piece_size(&seed, 70000);
        uint8_t *buf = malloc(cap);
        assert_non_null(buf);
        r = engine_velero_drain(v, buf, cap, &ol);
        if (r == 0 && ol > 0) {
            assert_true(ol <= cap);
            assert_true(o->ptlen + ol <= len);
            memcpy(o->pt + o->ptlen, buf, ol);
            o->ptlen += ol;
        }
        free(buf);
        if (r != 0) {
            o->err = r;
            o->stage = 2;
            goto out;
        }
        if (ol == 0)
            break;
    }
    /* the end stays the end */
    assert_int_equal(engine_velero_drain(v, tmp, sizeof(tmp), &ol), 0);
    assert_int_equal(ol, 0);
out:
    if (o->err != 0) {
        /* a failed object keeps failing */
        assert_int_equal(engine_velero_update(v, in, len > 5 ? 5 : len, tmp, sizeof(tmp), &ol),
                         o->err);
        assert_int_equal(engine_velero_final(v, tmp, sizeof(tmp), &ol), o->err);
        assert_int_equal(engine_velero_drain(v, tmp, sizeof(tmp), &ol), o->err);
        assert_int_equal(ol, 0);
    }
    engine_velero_free(v);
}

/* Wycheproof vectors with a 96-bit IV and no AAD are velero-v1 messages: iv || ct || tag. */
static void run_vectors(engine_gcm_backend be)
{
    json_t *grp, *t;
    size_t gi, ti;
    int total = 0, passed = 0;

    if (!engine_gcm_backend_available(be))
        unit_backend_skip(be);
    json_array_foreach(json_object_get(vectors, "testGroups"), gi, grp)
    {
        if (json_integer_value(json_object_get(grp, "ivSize")) != 96)
            continue;
        json_array_foreach(json_object_get(grp, "tests"), ti, t)
        {
            size_t kl, il, al, ml, cl, tl;
            if (strcmp(json_string_value(json_object_get(t, "aad")), "") != 0)
                continue;
            uint8_t *key = ts_hex(json_string_value(json_object_get(t, "key")), &kl);
            uint8_t *iv = ts_hex(json_string_value(json_object_get(t, "iv")), &il);
            uint8_t *aad = ts_hex(json_string_value(json_object_get(t, "aad")), &al);
            uint8_t *msg = ts_hex(json_string_value(json_object_get(t, "msg")), &ml);
            uint8_t *ct = ts_hex(json_string_value(json_object_get(t, "ct")), &cl);
            uint8_t *tag = ts_hex(json_string_value(json_object_get(t, "tag")), &tl);
            int valid = strcmp(json_string_value(json_object_get(t, "result")), "valid") == 0;
            int id = (int)json_integer_value(json_object_get(t, "tcId"));
            size_t blen = il + cl + tl;
            uint8_t *blob = malloc(blen);
            struct open_out o;
            int ok = 1;

            assert_non_null(blob);
            memcpy(blob, iv, il);
            memcpy(blob + il, ct, cl);
            memcpy(blob + il + cl, tag, tl);
            for (uint64_t s = 1; s <= 3; s++) {
                velero_open(be, key, kl, blob, blen, s == 1 ? 0 : 8, s * 1000 + (uint64_t)id, &o);
                if (valid)
                    ok &= o.err == 0 && o.ptlen == ml && memcmp(o.pt, msg, ml) == 0;
                else
                    ok &= o.err == COFFER_ERR_TAMPERED && o.stage == 1 && o.ptlen == 0;
                ok &= o.before == 0;
                free(o.pt);
            }
            if (!ok)
                print_error("tcId %d (%s): velero-v1 open gave %s\n", id,
                            valid ? "valid" : "invalid", coffer_errname(o.err));
            total++;
            passed += ok;
            free(blob);
            free(key);
            free(iv);
            free(aad);
            free(msg);
            free(ct);
            free(tag);
        }
    }
    print_message("[  INFO    ] velero-v1 on %s: %d/%d Wycheproof AES-GCM vectors (96-bit IV, no "
                  "AAD) pass\n",
                  engine_gcm_backend_name(be), passed, total);
    assert_true(total > 100);
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
    run_vectors(ENGINE_GCM_IPSEC_MB);
}

/* Seal: nonce || ct || tag that engine_gcm (checked against Wycheproof) opens; then round trip. */
static void test_seal_layout_and_round_trip(void **state)
{
    (void)state;
    static const size_t lens[] = {0, 1, 16, 4095, 65536, 1000003};
    static const size_t keylens[] = {16, 24, 32};
    for (int bi = 0; bi < 2; bi++) {
        engine_gcm_backend be = bi == 0 ? ENGINE_GCM_OPENSSL : ENGINE_GCM_IPSEC_MB;
        if (!engine_gcm_backend_available(be))
            continue;
        for (size_t ki = 0; ki < 3; ki++) {
            uint8_t key[32];
            ts_fill(key, sizeof(key), ki + 100);
            for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
                size_t len = lens[li], off = 0, clen = 0, ol;
                uint64_t seed = len * 3 + ki;
                uint8_t *msg = malloc(len + 1), *ct = malloc(len + 64), *pt = malloc(len + 1);
                engine_velero *v = NULL;
                engine_gcm *g = NULL;
                assert_non_null(msg);
                assert_non_null(ct);
                assert_non_null(pt);
                ts_fill(msg, len, len);
                assert_int_equal(engine_velero_seal_new(&v, be, key, keylens[ki]), 0);
                while (off < len) {
                    size_t n = piece_size(&seed, 40960);
                    if (n > len - off)
                        n = len - off;
                    size_t cap = engine_velero_bound(n);
                    uint8_t *o = malloc(cap);
                    assert_non_null(o);
                    assert_int_equal(engine_velero_update(v, msg + off, n, o, cap, &ol), 0);
                    assert_true(ol <= cap);
                    memcpy(ct + clen, o, ol);
                    clen += ol;
                    free(o);
                    off += n;
                }
                uint8_t fin[ENGINE_VELERO_NONCE + ENGINE_VELERO_TAG];
                assert_int_equal(engine_velero_final(v, fin, sizeof(fin), &ol), 0);
                memcpy(ct + clen, fin, ol);
                clen += ol;
                assert_int_equal(engine_velero_final(v, fin, sizeof(fin), &ol), COFFER_ERR_STATE);
                engine_velero_free(v);
                assert_int_equal(clen, ENGINE_VELERO_NONCE + len + ENGINE_VELERO_TAG);
                /* the layout, checked with engine_gcm directly */
                assert_int_equal(engine_gcm_new(&g, ENGINE_GCM_OPENSSL, key, keylens[ki]), 0);
                assert_int_equal(
                    engine_gcm_open(g, ct, 12, NULL, 0, ct + 12, len, pt, ct + 12 + len, 16), 0);
                assert_memory_equal(pt, msg, len);
                engine_gcm_free(g);
                /* and back through velero-v1 opening, spooled in memory and in a file */
                struct open_out o;
                for (size_t sm = 0; sm <= 1; sm++) {
                    velero_open(be, key, keylens[ki], ct, clen,
                                sm ? ENGINE_VELERO_SPOOL_MEM_DEFAULT : 4096, seed, &o);
                    assert_int_equal(o.err, 0);
                    assert_int_equal(o.before, 0);
                    assert_int_equal(o.ptlen, len);
                    assert_memory_equal(o.pt, msg, len);
                    free(o.pt);
                }
                /* a different nonce for every message */
                uint8_t nonce1[12];
                memcpy(nonce1, ct, 12);
                assert_int_equal(engine_velero_seal_new(&v, be, key, keylens[ki]), 0);
                assert_int_equal(engine_velero_final(v, fin, sizeof(fin), &ol), 0);
                assert_int_equal(ol, 28);
                assert_memory_not_equal(fin, nonce1, 12);
                engine_velero_free(v);
                free(msg);
                free(ct);
                free(pt);
            }
        }
    }
    /* the spool files were unlinked: nothing is left behind */
    assert_int_equal(dir_entries(spool_dir), 0);
}

/* Tampering anywhere (nonce, body, tag), truncation and a wrong key release nothing. */
static void test_tamper_releases_nothing(void **state)
{
    (void)state;
    size_t len = 300000, clen, ol, off = 0;
    uint8_t key[32], key2[32];
    uint8_t *msg = malloc(len), *ct = malloc(len + 64);
    engine_velero *v = NULL;
    struct open_out o;

    assert_non_null(msg);
    assert_non_null(ct);
    ts_fill(key, 32, 1);
    ts_fill(key2, 32, 2);
    ts_fill(msg, len, 3);
    assert_int_equal(engine_velero_seal_new(&v, ENGINE_GCM_AUTO, key, 32), 0);
    assert_int_equal(engine_velero_update(v, msg, len, ct, len + 64, &off), 0);
    assert_int_equal(engine_velero_final(v, ct + off, 64, &ol), 0);
    clen = off + ol;
    engine_velero_free(v);

    size_t flips[] = {0, 11, 12, 13, len / 2, clen - 17, clen - 16, clen - 1};
    for (size_t i = 0; i < sizeof(flips) / sizeof(flips[0]); i++) {
        ct[flips[i]] ^= 0x10;
        velero_open(ENGINE_GCM_AUTO, key, 32, ct, clen, 65536, i, &o);
        assert_int_equal(o.err, COFFER_ERR_TAMPERED);
        assert_int_equal(o.stage, 1);
        assert_int_equal(o.before + o.ptlen, 0);
        free(o.pt);
        ct[flips[i]] ^= 0x10;
    }
    /* wrong key */
    velero_open(ENGINE_GCM_AUTO, key2, 32, ct, clen, 65536, 9, &o);
    assert_int_equal(o.err, COFFER_ERR_TAMPERED);
    assert_int_equal(o.before + o.ptlen, 0);
    free(o.pt);
    /* truncated anywhere: shorter than nonce + tag is TRUNCATED, longer fails the tag */
    size_t cuts[] = {0, 1, 11, 12, 27, 28, 29, 1000, clen - 1};
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        velero_open(ENGINE_GCM_AUTO, key, 32, ct, cuts[i], 65536, i, &o);
        if (cuts[i] < 28)
            assert_int_equal(o.err, COFFER_ERR_TRUNCATED);
        else
            assert_int_equal(o.err, COFFER_ERR_TAMPERED);
        assert_int_equal(o.before + o.ptlen, 0);
        free(o.pt);
    }
    /* trailing bytes after a valid message */
    uint8_t *longer = malloc(clen + 5);
    assert_non_null(longer);
    memcpy(longer, ct, clen);
    memset(longer + clen, 0, 5);
    velero_open(ENGINE_GCM_AUTO, key, 32, longer, clen + 5, 65536, 77, &o);
    assert_int_equal(o.err, COFFER_ERR_TAMPERED);
    assert_int_equal(o.before + o.ptlen, 0);
    free(o.pt);
    free(longer);
    /* an update after a verified final is trailing data */
    assert_int_equal(engine_velero_open_new(&v, ENGINE_GCM_AUTO, key, 32, spool_dir, 0), 0);
    assert_int_equal(engine_velero_update(v, ct, clen, NULL, 0, &ol), 0);
    assert_int_equal(engine_velero_final(v, NULL, 0, &ol), 0);
    assert_int_not_equal(engine_velero_update(v, ct, 1, NULL, 0, &ol), 0);
    engine_velero_free(v);
    free(msg);
    free(ct);
}

static void test_args(void **state)
{
    (void)state;
    uint8_t key[33] = {0}, buf[64];
    engine_velero *v = NULL;
    size_t ol;
    for (size_t kl = 0; kl <= 33; kl++) {
        if (kl == 16 || kl == 24 || kl == 32)
            continue;
        assert_int_equal(engine_velero_seal_new(&v, ENGINE_GCM_OPENSSL, key, kl),
                         COFFER_ERR_KEY_SIZE);
        assert_int_equal(engine_velero_open_new(&v, ENGINE_GCM_OPENSSL, key, kl, NULL, 0),
                         COFFER_ERR_KEY_SIZE);
    }
    assert_int_equal(engine_velero_bound(100), 100 + 12 + 16);
    /* sealing into less than the bound is refused */
    assert_int_equal(engine_velero_seal_new(&v, ENGINE_GCM_OPENSSL, key, 32), 0);
    assert_int_equal(engine_velero_update(v, buf, 64, buf, 64, &ol), COFFER_ERR_INVALID_ARG);
    engine_velero_free(v);
    /* a spool directory that does not exist: SPOOL once the memory spool is full */
    assert_int_equal(
        engine_velero_open_new(&v, ENGINE_GCM_OPENSSL, key, 32, "/nonexistent/coffer-spool", 16),
        0);
    uint8_t *big = calloc(1, 100000);
    assert_non_null(big);
    assert_int_equal(engine_velero_update(v, big, 100000, NULL, 0, &ol), COFFER_ERR_SPOOL);
    free(big);
    engine_velero_free(v);
    engine_velero_free(NULL);
}

static int group_setup(void **state)
{
    (void)state;
    vectors = ts_load_vectors("wycheproof_aes_gcm_test.json");
    spool_dir = ts_tmpdir();
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    json_decref(vectors);
    ts_rmtree(spool_dir);
    free(spool_dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors_openssl),
        cmocka_unit_test(test_vectors_ipsec_mb),
        cmocka_unit_test(test_seal_layout_and_round_trip),
        cmocka_unit_test(test_tamper_releases_nothing),
        cmocka_unit_test(test_args),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
