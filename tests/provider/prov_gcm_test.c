/* SPDX-License-Identifier: Apache-2.0 */
/* The coffer provider's AES-GCM through EVP: Wycheproof, the default provider as oracle, misuse. */
#include "engine_gcm.h" /* ENGINE_GCM_IV_MAX, the provider's longest IV */
#include "test_support.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/provider.h>
#include <openssl/rand.h>

#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* One library context with coffer (from COFFER_LIB_DIR) and the default provider beside it. */
static OSSL_LIB_CTX *libctx;
static OSSL_PROVIDER *prov_coffer, *prov_default;
static EVP_CIPHER *cof[3], *def[3]; /* AES-128/192/256-GCM from coffer and from default */

static const char *const gcm_names[3] = {"AES-128-GCM", "AES-192-GCM", "AES-256-GCM"};

static int keyidx(size_t keylen)
{
    return keylen == 16 ? 0 : keylen == 24 ? 1 : 2;
}

static int group_setup(void **state)
{
    (void)state;
    libctx = OSSL_LIB_CTX_new();
    if (libctx == NULL || !OSSL_PROVIDER_set_default_search_path(libctx, COFFER_LIB_DIR))
        return -1;
    prov_coffer = OSSL_PROVIDER_load(libctx, "coffer");
    prov_default = OSSL_PROVIDER_load(libctx, "default");
    if (prov_coffer == NULL || prov_default == NULL) {
        ERR_print_errors_fp(stderr);
        fprintf(stderr,
                "cannot load the coffer provider from %s (build the coffer_provider "
                "target)\n",
                COFFER_LIB_DIR);
        return -1;
    }
    for (int i = 0; i < 3; i++) {
        cof[i] = EVP_CIPHER_fetch(libctx, gcm_names[i], "provider=coffer");
        def[i] = EVP_CIPHER_fetch(libctx, gcm_names[i], "provider=default");
        if (cof[i] == NULL || def[i] == NULL)
            return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++) {
        EVP_CIPHER_free(cof[i]);
        EVP_CIPHER_free(def[i]);
    }
    OSSL_PROVIDER_unload(prov_coffer);
    OSSL_PROVIDER_unload(prov_default);
    OSSL_LIB_CTX_free(libctx);
    return 0;
}

/* ---- a small PRNG for split points and random messages ------------------------------------ */

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

static size_t rng_below(uint64_t *s, size_t n)
{
    return n == 0 ? 0 : (size_t)(rng_next(s) % n);
}

/* ---- one GCM message through EVP ------------------------------------------------------------ */

typedef struct {
    const uint8_t *key, *iv, *aad, *in;
    size_t keylen, ivlen, aadlen, len;
} gcm_msg;

/*
 * Encrypt (enc=1: tag receives taglen bytes) or decrypt (tag is the expected tag) m into out.
 * split == 0 feeds AAD and data in one update each; otherwise split seeds random split points
 * (zero-length pieces included), the place where the expected tag is set, and in-place
 * processing when in_place. Returns the final's result (1 = success), or 0 if anything before
 * the final failed.
 */
static int gcm_run(const EVP_CIPHER *c, int enc, const gcm_msg *m, uint8_t *out, uint8_t *tag,
                   size_t taglen, uint64_t split, int in_place)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    uint64_t s = split * 0x9e3779b97f4a7c15ull + 1;
    int outl, ok = 0, tag_early = split == 0 || rng_below(&s, 2) == 0;
    size_t pos = 0;
    const uint8_t *src = m->in;

    assert_non_null(ctx);
    if (EVP_CipherInit_ex2(ctx, c, NULL, NULL, enc, NULL) != 1)
        goto out;
    if (m->ivlen != 12 &&
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, (int)m->ivlen, NULL) != 1)
        goto out;
    if (EVP_CipherInit_ex2(ctx, NULL, m->key, m->iv, enc, NULL) != 1)
        goto out;
    if (!enc && tag_early && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, (int)taglen, tag) != 1)
        goto out;
    if (split == 0 && m->aadlen > 0) {
        if (EVP_CipherUpdate(ctx, NULL, &outl, m->aad, (int)m->aadlen) != 1 ||
            (size_t)outl != m->aadlen)
            goto out;
    } else if (split != 0) {
        if (rng_below(&s, 4) == 0 && EVP_CipherUpdate(ctx, NULL, &outl, m->aad, 0) != 1)
            goto out; /* a zero-length AAD update */
        while (pos < m->aadlen) {
            size_t n = 1 + rng_below(&s, m->aadlen - pos);
            if (EVP_CipherUpdate(ctx, NULL, &outl, m->aad + pos, (int)n) != 1 || (size_t)outl != n)
                goto out;
            pos += n;
        }
    }
    if (in_place && m->len > 0) {
        memcpy(out, m->in, m->len);
        src = out;
    }
    pos = 0;
    while (pos < m->len) {
        size_t n = split == 0 ? m->len : rng_below(&s, m->len - pos + 1);
        if (split != 0 && rng_below(&s, 8) == 0)
            n = rng_below(&s, 17); /* short pieces: partial blocks across updates */
        if (n > m->len - pos)
            n = m->len - pos;
        if (EVP_CipherUpdate(ctx, out + pos, &outl, src + pos, (int)n) != 1 || (size_t)outl != n)
            goto out;
        pos += n;
    }
    if (!enc && !tag_early &&
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, (int)taglen, tag) != 1)
        goto out;
    ok = EVP_CipherFinal_ex(ctx, out + m->len, &outl) == 1;
    if (ok && outl != 0)
        ok = 0;
    if (ok && enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, (int)taglen, tag) != 1)
        ok = 0;
out:
    EVP_CIPHER_CTX_free(ctx);
    ERR_clear_error();
    return ok;
}

/* ---- Wycheproof ------------------------------------------------------------------------------ */

static void test_wycheproof(void **state)
{
    (void)state;
    json_t *root = ts_load_vectors("wycheproof_aes_gcm_test.json");
    size_t gi, ti, n_valid = 0, n_invalid = 0, n_long = 0;
    json_t *group, *t;

    json_array_foreach(json_object_get(root, "testGroups"), gi, group)
    {
        size_t keybits = (size_t)json_integer_value(json_object_get(group, "keySize"));
        const EVP_CIPHER *c = cof[keyidx(keybits / 8)];

        json_array_foreach(json_object_get(group, "tests"), ti, t)
        {
            int tc = (int)json_integer_value(json_object_get(t, "tcId"));
            const char *result = json_string_value(json_object_get(t, "result"));
            gcm_msg m;
            size_t ctlen, taglen;
            uint8_t *key = ts_hex(json_string_value(json_object_get(t, "key")), &m.keylen);
            uint8_t *iv = ts_hex(json_string_value(json_object_get(t, "iv")), &m.ivlen);
            uint8_t *aad = ts_hex(json_string_value(json_object_get(t, "aad")), &m.aadlen);
            uint8_t *msg = ts_hex(json_string_value(json_object_get(t, "msg")), &m.len);
            uint8_t *ct = ts_hex(json_string_value(json_object_get(t, "ct")), &ctlen);
            uint8_t *tag = ts_hex(json_string_value(json_object_get(t, "tag")), &taglen);
            uint8_t *out = malloc(m.len + 16), got_tag[16];

            assert_non_null(out);
            assert_int_equal(m.keylen * 8, keybits);
            m.key = key;
            m.iv = iv;
            m.aad = aad;

            if (m.ivlen == 0) {
                /* A zero-length IV is refused, and nothing can be encrypted without an IV. */
                EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
                int outl;
                assert_int_equal(EVP_CipherInit_ex2(ctx, c, key, NULL, 1, NULL), 1);
                assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, 0, NULL), 0);
                if (m.len > 0)
                    assert_int_equal(EVP_CipherUpdate(ctx, out, &outl, msg, (int)m.len), 0);
                assert_int_equal(EVP_CipherFinal_ex(ctx, out, &outl), 0);
                EVP_CIPHER_CTX_free(ctx);
                ERR_clear_error();
                assert_string_equal(result, "invalid");
                n_invalid++;
            } else if (m.ivlen > ENGINE_GCM_IV_MAX) {
                /*
                 * Wycheproof's 257-byte IVs: valid GCM, but longer than the engine's (and
                 * OpenSSL's) 128-byte limit. Both providers refuse the IV length cleanly.
                 */
                for (int i = 0; i < 2; i++) {
                    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
                    assert_int_equal(
                        EVP_CipherInit_ex2(ctx, i ? def[keyidx(m.keylen)] : c, key, NULL, 1, NULL),
                        1);
                    assert_int_equal(
                        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, (int)m.ivlen, NULL), 0);
                    EVP_CIPHER_CTX_free(ctx);
                }
                ERR_clear_error();
                n_long++;
            } else if (strcmp(result, "valid") == 0) {
                m.in = msg;
                if (!gcm_run(c, 1, &m, out, got_tag, taglen, 0, 0) || memcmp(out, ct, ctlen) != 0 ||
                    memcmp(got_tag, tag, taglen) != 0)
                    fail_msg("tcId %d: encryption differs from Wycheproof", tc);
                m.in = msg; /* again with random splits, in place */
                if (!gcm_run(c, 1, &m, out, got_tag, taglen, (uint64_t)tc, 1) ||
                    memcmp(out, ct, ctlen) != 0 || memcmp(got_tag, tag, taglen) != 0)
                    fail_msg("tcId %d: split encryption differs from Wycheproof", tc);
                m.in = ct;
                m.len = ctlen;
                if (!gcm_run(c, 0, &m, out, tag, taglen, 0, 0) || memcmp(out, msg, m.len) != 0)
                    fail_msg("tcId %d: decryption failed", tc);
                if (!gcm_run(c, 0, &m, out, tag, taglen, (uint64_t)tc + 1000, 1) ||
                    memcmp(out, msg, m.len) != 0)
                    fail_msg("tcId %d: split decryption failed", tc);
                n_valid++;
            } else {
                m.in = ct;
                m.len = ctlen;
                if (gcm_run(c, 0, &m, out, tag, taglen, 0, 0) ||
                    gcm_run(c, 0, &m, out, tag, taglen, (uint64_t)tc, 1))
                    fail_msg("tcId %d: invalid vector accepted", tc);
                n_invalid++;
            }
            free(key);
            free(iv);
            free(aad);
            free(msg);
            free(ct);
            free(tag);
            free(out);
        }
    }
    printf("wycheproof: %zu valid and %zu invalid vectors checked, %zu with IVs over %d bytes "
           "refused\n",
           n_valid, n_invalid, n_long, ENGINE_GCM_IV_MAX);
    assert_int_equal(n_valid + n_invalid + n_long,
                     (size_t)json_integer_value(json_object_get(root, "numberOfTests")));
    json_decref(root);
}

/* ---- the default provider as oracle -----------------------------------------------------------
 */

static void test_random_vs_default(void **state)
{
    (void)state;
    uint64_t s = 20240611;
    enum { ITER = 600 };

    for (int it = 0; it < ITER; it++) {
        uint8_t key[32], iv[128], tag_c[16], tag_d[16];
        size_t keylen = 16 + 8 * rng_below(&s, 3);
        size_t ivlen = rng_below(&s, 2) ? 12 : 1 + rng_below(&s, sizeof(iv));
        size_t aadlen = rng_below(&s, 4) == 0 ? rng_below(&s, 3000) : rng_below(&s, 80);
        size_t len = rng_below(&s, 16) == 0 ? 65536 + rng_below(&s, 70000) : rng_below(&s, 2000);
        size_t taglen = 1 + rng_below(&s, 16);
        uint8_t *aad = malloc(aadlen + 1), *pt = malloc(len + 1);
        uint8_t *ct_c = malloc(len + 16), *ct_d = malloc(len + 16), *back = malloc(len + 16);
        gcm_msg m = {key, iv, aad, pt, keylen, ivlen, aadlen, len};
        int ki = keyidx(keylen);

        assert_true(aad && pt && ct_c && ct_d && back);
        ts_fill(key, sizeof(key), rng_next(&s));
        ts_fill(iv, sizeof(iv), rng_next(&s));
        ts_fill(aad, aadlen, rng_next(&s));
        ts_fill(pt, len, rng_next(&s));

        assert_true(gcm_run(def[ki], 1, &m, ct_d, tag_d, 16, 0, 0));
        assert_true(gcm_run(cof[ki], 1, &m, ct_c, tag_c, 16, rng_next(&s) | 1, it & 1));
        if (memcmp(ct_c, ct_d, len) != 0 || memcmp(tag_c, tag_d, 16) != 0)
            fail_msg("iteration %d (key %zu, iv %zu, aad %zu, len %zu): differs from default", it,
                     keylen, ivlen, aadlen, len);
        /* A shorter tag is the prefix of the full one. */
        assert_true(gcm_run(cof[ki], 1, &m, ct_c, tag_c, taglen, rng_next(&s) | 1, 0));
        assert_memory_equal(tag_c, tag_d, taglen);

        /* Decrypt the default provider's output with coffer, with a tag of taglen bytes. */
        m.in = ct_d;
        assert_true(gcm_run(cof[ki], 0, &m, back, tag_d, taglen, rng_next(&s) | 1, it & 2));
        assert_memory_equal(back, pt, len);
        /* And coffer's with the default provider. */
        m.in = ct_c;
        assert_true(gcm_run(def[ki], 0, &m, back, tag_d, taglen, 0, 0));
        assert_memory_equal(back, pt, len);

        /* Any change is rejected: a tag bit, a ciphertext bit, an AAD bit. */
        tag_d[rng_below(&s, taglen)] ^= (uint8_t)(1u << rng_below(&s, 8));
        assert_false(gcm_run(cof[ki], 0, &m, back, tag_d, taglen, rng_next(&s) | 1, 0));
        memcpy(tag_d, tag_c, taglen);
        if (len > 0) {
            ct_c[rng_below(&s, len)] ^= 1;
            assert_false(gcm_run(cof[ki], 0, &m, back, tag_d, taglen, rng_next(&s) | 1, 1));
        } else if (aadlen > 0) {
            aad[rng_below(&s, aadlen)] ^= 0x80;
            assert_false(gcm_run(cof[ki], 0, &m, back, tag_d, taglen, rng_next(&s) | 1, 0));
        }
        free(aad);
        free(pt);
        free(ct_c);
        free(ct_d);
        free(back);
    }
}

/* ---- tag lengths ---------------------------------------------------------------------------- */

static void test_tag_lengths(void **state)
{
    (void)state;
    uint8_t key[32], iv[12], pt[100], ct[116], back[116], full[16], tag[32];
    gcm_msg m = {key, iv, (const uint8_t *)"aad", pt, 32, 12, 3, sizeof(pt)};
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int outl;

    ts_fill(key, sizeof(key), 1);
    ts_fill(iv, sizeof(iv), 2);
    ts_fill(pt, sizeof(pt), 3);
    assert_true(gcm_run(def[2], 1, &m, ct, full, 16, 0, 0));
    for (size_t t = 1; t <= 16; t++) {
        assert_true(gcm_run(cof[2], 1, &m, ct, tag, t, 0, 0));
        assert_memory_equal(tag, full, t);
        m.in = ct;
        assert_true(gcm_run(cof[2], 0, &m, back, full, t, 0, 0));
        assert_memory_equal(back, pt, sizeof(pt));
        m.in = pt;
    }

    /* Reading a tag of 0 or 17 bytes fails, and so does setting a 17-byte one. */
    assert_int_equal(EVP_EncryptInit_ex2(ctx, cof[2], key, iv, NULL), 1);
    assert_int_equal(EVP_EncryptUpdate(ctx, NULL, &outl, m.aad, (int)m.aadlen), 1);
    assert_int_equal(EVP_EncryptUpdate(ctx, ct, &outl, pt, sizeof(pt)), 1);
    assert_int_equal(EVP_EncryptFinal_ex(ctx, ct, &outl), 1);
    assert_int_equal(EVP_CIPHER_CTX_get_tag_length(ctx), 16);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 17, tag), 0);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 0, tag), 0);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, tag), 1);
    assert_memory_equal(tag, full, 16);
    assert_int_equal(EVP_DecryptInit_ex2(ctx, cof[2], key, iv, NULL), 1);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, 17, tag), 0);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, 8, tag), 1);
    assert_int_equal(EVP_CIPHER_CTX_get_tag_length(ctx), 8);
    EVP_CIPHER_CTX_free(ctx);
    ERR_clear_error();
}

/* ---- re-initialisation -------------------------------------------------------------------- */

/*
 * One context, several messages: new IV with the key kept (key NULL), a different IV length,
 * the same key passed again, a new key, and a switch to decryption. The default provider runs
 * the same sequence; every ciphertext and tag must match.
 */
static void run_reinit(const EVP_CIPHER *c, uint8_t out[6][64 + 16])
{
    uint8_t k1[24], k2[24], iv[6][16], pt[64];
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int outl;

    ts_fill(k1, sizeof(k1), 11);
    ts_fill(k2, sizeof(k2), 12);
    ts_fill(iv, sizeof(iv), 13);
    ts_fill(pt, sizeof(pt), 14);
    assert_int_equal(EVP_EncryptInit_ex2(ctx, c, k1, iv[0], NULL), 1);
    for (int i = 0; i < 5; i++) {
        if (i == 1)
            assert_int_equal(EVP_EncryptInit_ex2(ctx, NULL, NULL, iv[1], NULL), 1);
        if (i == 2) { /* a 16-byte IV, then the IV in a separate call */
            assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, 16, NULL), 1);
            assert_int_equal(EVP_CIPHER_CTX_get_iv_length(ctx), 16);
            assert_int_equal(EVP_EncryptInit_ex2(ctx, NULL, NULL, iv[2], NULL), 1);
        }
        if (i == 3) { /* the same key again, after the IV */
            assert_int_equal(EVP_EncryptInit_ex2(ctx, NULL, NULL, iv[3], NULL), 1);
            assert_int_equal(EVP_EncryptInit_ex2(ctx, NULL, k1, NULL, NULL), 1);
        }
        if (i == 4) /* a new key */
            assert_int_equal(EVP_EncryptInit_ex2(ctx, NULL, k2, iv[4], NULL), 1);
        assert_int_equal(EVP_EncryptUpdate(ctx, NULL, &outl, iv[5], 7), 1);
        assert_int_equal(EVP_EncryptUpdate(ctx, out[i], &outl, pt, 40), 1);
        assert_int_equal(EVP_EncryptUpdate(ctx, out[i] + 40, &outl, pt + 40, 24), 1);
        assert_int_equal(EVP_EncryptFinal_ex(ctx, out[i] + 64, &outl), 1);
        assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, out[i] + 64), 1);
    }
    /* Decrypt message 4 on the same context (key kept, IV given again, 16 bytes long). */
    assert_int_equal(EVP_DecryptInit_ex2(ctx, NULL, NULL, iv[4], NULL), 1);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, 16, out[4] + 64), 1);
    assert_int_equal(EVP_DecryptUpdate(ctx, NULL, &outl, iv[5], 7), 1);
    assert_int_equal(EVP_DecryptUpdate(ctx, out[5], &outl, out[4], 64), 1);
    assert_int_equal(EVP_DecryptFinal_ex(ctx, out[5] + 64, &outl), 1);
    assert_memory_equal(out[5], pt, 64);
    memset(out[5] + 64, 0, 16);
    EVP_CIPHER_CTX_free(ctx);
}

static void test_reinit(void **state)
{
    (void)state;
    uint8_t a[6][64 + 16], b[6][64 + 16];

    run_reinit(cof[1], a);
    run_reinit(def[1], b);
    for (int i = 0; i < 6; i++)
        assert_memory_equal(a[i], b[i], sizeof(a[i]));
    for (int i = 0; i < 5; i++)
        for (int j = i + 1; j < 5; j++)
            assert_memory_not_equal(a[i], a[j], sizeof(a[i]));
}

/* ---- EVP_CIPHER_CTX_copy (OSSL_FUNC_CIPHER_DUPCTX) ------------------------------------------- */

/* The one-shot result for the message aad || data, from the default provider. */
static void oracle(const uint8_t *key, const uint8_t *iv, const uint8_t *aad, size_t aadlen,
                   const uint8_t *pt, size_t len, uint8_t *out)
{
    gcm_msg m = {key, iv, aad, pt, 32, 12, aadlen, len};
    assert_true(gcm_run(def[2], 1, &m, out, out + len, 16, 0, 0));
}

static void test_dupctx(void **state)
{
    (void)state;
    uint8_t key[32], iv[12], aad[600], pt[3000], x[3000 + 16], y[3000 + 16], want[3000 + 16];
    uint8_t aad_b[600], pt_b[3000];
    EVP_CIPHER_CTX *a = EVP_CIPHER_CTX_new(), *b = EVP_CIPHER_CTX_new();
    int outl;

    ts_fill(key, sizeof(key), 21);
    ts_fill(iv, sizeof(iv), 22);
    ts_fill(aad, sizeof(aad), 23);
    ts_fill(pt, sizeof(pt), 24);
    memcpy(aad_b, aad, sizeof(aad));
    memcpy(pt_b, pt, sizeof(pt));
    aad_b[500] ^= 1;
    pt_b[2000] ^= 1;

    /* Copied while gathering AAD (300 of 600 bytes in the heap part): the copies diverge. */
    assert_int_equal(EVP_EncryptInit_ex2(a, cof[2], key, iv, NULL), 1);
    assert_int_equal(EVP_EncryptUpdate(a, NULL, &outl, aad, 300), 1);
    assert_int_equal(EVP_CIPHER_CTX_copy(b, a), 1);
    assert_int_equal(EVP_EncryptUpdate(a, NULL, &outl, aad + 300, 300), 1);
    assert_int_equal(EVP_EncryptUpdate(b, NULL, &outl, aad_b + 300, 300), 1);
    assert_int_equal(EVP_EncryptUpdate(a, x, &outl, pt, sizeof(pt)), 1);
    assert_int_equal(EVP_EncryptUpdate(b, y, &outl, pt, sizeof(pt)), 1);
    assert_int_equal(EVP_EncryptFinal_ex(a, x, &outl) & EVP_EncryptFinal_ex(b, y, &outl), 1);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(a, EVP_CTRL_AEAD_GET_TAG, 16, x + sizeof(pt)), 1);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(b, EVP_CTRL_AEAD_GET_TAG, 16, y + sizeof(pt)), 1);
    oracle(key, iv, aad, sizeof(aad), pt, sizeof(pt), want);
    assert_memory_equal(x, want, sizeof(x));
    oracle(key, iv, aad_b, sizeof(aad), pt, sizeof(pt), want);
    assert_memory_equal(y, want, sizeof(y));

    /* Copied mid-data, inside a block (1001 bytes in): same key stream, own tags. */
    assert_int_equal(EVP_EncryptInit_ex2(a, NULL, NULL, iv, NULL), 1);
    assert_int_equal(EVP_EncryptUpdate(a, NULL, &outl, aad, 20), 1);
    assert_int_equal(EVP_EncryptUpdate(a, x, &outl, pt, 1001), 1);
    assert_int_equal(EVP_CIPHER_CTX_copy(b, a), 1);
    memcpy(y, x, 1001);
    assert_int_equal(EVP_EncryptUpdate(a, x + 1001, &outl, pt + 1001, sizeof(pt) - 1001), 1);
    assert_int_equal(EVP_EncryptUpdate(b, y + 1001, &outl, pt_b + 1001, sizeof(pt) - 1001), 1);
    assert_int_equal(EVP_EncryptFinal_ex(a, x, &outl) & EVP_EncryptFinal_ex(b, y, &outl), 1);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(a, EVP_CTRL_AEAD_GET_TAG, 16, x + sizeof(pt)), 1);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(b, EVP_CTRL_AEAD_GET_TAG, 16, y + sizeof(pt)), 1);
    oracle(key, iv, aad, 20, pt, sizeof(pt), want);
    assert_memory_equal(x, want, sizeof(x));
    oracle(key, iv, aad, 20, pt_b, sizeof(pt), want);
    assert_memory_equal(y, want, sizeof(y));

    /* A decrypting copy: the original verifies, the copy fed a changed byte does not. */
    assert_int_equal(EVP_DecryptInit_ex2(a, NULL, NULL, iv, NULL), 1);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(a, EVP_CTRL_AEAD_SET_TAG, 16, x + sizeof(pt)), 1);
    assert_int_equal(EVP_DecryptUpdate(a, NULL, &outl, aad, 20), 1);
    assert_int_equal(EVP_DecryptUpdate(a, want, &outl, x, 100), 1);
    assert_int_equal(EVP_CIPHER_CTX_copy(b, a), 1);
    x[200] ^= 1;
    assert_int_equal(EVP_DecryptUpdate(b, want + 100, &outl, x + 100, sizeof(pt) - 100), 1);
    x[200] ^= 1;
    assert_int_equal(EVP_DecryptUpdate(a, want + 100, &outl, x + 100, sizeof(pt) - 100), 1);
    assert_int_equal(EVP_DecryptFinal_ex(a, want, &outl), 1);
    assert_memory_equal(want, pt, sizeof(pt));
    assert_int_equal(EVP_DecryptFinal_ex(b, want, &outl), 0);
    EVP_CIPHER_CTX_free(a);
    EVP_CIPHER_CTX_free(b);
    ERR_clear_error();
}

/* ---- EVP_Cipher (OSSL_FUNC_CIPHER_CIPHER) ---------------------------------------------------- */

static void test_evp_cipher(void **state)
{
    (void)state;
    uint8_t key[16], iv[12], aad[33], pt[777], ct[777 + 16], want[777 + 16];
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    gcm_msg m = {key, iv, aad, pt, 16, 12, sizeof(aad), sizeof(pt)};

    ts_fill(key, sizeof(key), 31);
    ts_fill(iv, sizeof(iv), 32);
    ts_fill(aad, sizeof(aad), 33);
    ts_fill(pt, sizeof(pt), 34);
    assert_true(gcm_run(def[0], 1, &m, want, want + sizeof(pt), 16, 0, 0));
    assert_int_equal(EVP_EncryptInit_ex2(ctx, cof[0], key, iv, NULL), 1);
    assert_int_equal(EVP_Cipher(ctx, NULL, aad, sizeof(aad)), (int)sizeof(aad));
    assert_int_equal(EVP_Cipher(ctx, ct, pt, 500), 500);
    assert_int_equal(EVP_Cipher(ctx, ct + 500, pt + 500, sizeof(pt) - 500), (int)sizeof(pt) - 500);
    assert_int_equal(EVP_Cipher(ctx, NULL, NULL, 0), 0);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, ct + sizeof(pt)), 1);
    assert_memory_equal(ct, want, sizeof(want));
    EVP_CIPHER_CTX_free(ctx);
}

/* ---- failures ------------------------------------------------------------------------------- */

/* What both providers must refuse, and what they allow after a refusal. */
static void run_misuse(const EVP_CIPHER *c, int is_coffer)
{
    uint8_t key[32], iv[12], pt[64], ct[64 + 16], tag[16], out[80];
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int outl;

    ts_fill(key, sizeof(key), 41);
    ts_fill(iv, sizeof(iv), 42);
    ts_fill(pt, sizeof(pt), 43);
    /* Encrypt: no tag before the final, none to set, no AAD after data, nothing after final. */
    assert_int_equal(EVP_EncryptInit_ex2(ctx, c, key, iv, NULL), 1);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, 16, tag), 0);
    assert_int_equal(EVP_EncryptUpdate(ctx, NULL, &outl, pt, 5), 1);
    assert_int_equal(EVP_EncryptUpdate(ctx, ct, &outl, pt, sizeof(pt)), 1);
    assert_int_equal(EVP_EncryptUpdate(ctx, NULL, &outl, pt, 5), 0);
    assert_int_equal(EVP_EncryptFinal_ex(ctx, ct, &outl), 1);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, tag), 1);
    assert_int_equal(EVP_EncryptUpdate(ctx, out, &outl, pt, sizeof(pt)), 0);
    assert_int_equal(EVP_EncryptFinal_ex(ctx, out, &outl), 0);
    /* The wrong key length. */
    assert_int_equal(EVP_CIPHER_CTX_set_key_length(ctx, 20), 0);
    assert_int_equal(EVP_CIPHER_CTX_get_key_length(ctx), 32);

    /* Decrypt (a fresh context): the final fails without a tag, succeeds once it is set. */
    EVP_CIPHER_CTX_free(ctx);
    ctx = EVP_CIPHER_CTX_new();
    assert_int_equal(EVP_DecryptInit_ex2(ctx, c, key, iv, NULL), 1);
    assert_int_equal(EVP_DecryptUpdate(ctx, NULL, &outl, pt, 5), 1);
    assert_int_equal(EVP_DecryptUpdate(ctx, out, &outl, ct, sizeof(pt)), 1);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, out + 64), 0);
    assert_int_equal(EVP_DecryptFinal_ex(ctx, out + 64, &outl), 0);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, 16, tag), 1);
    assert_int_equal(EVP_DecryptFinal_ex(ctx, out + 64, &outl), 1);
    assert_memory_equal(out, pt, sizeof(pt));
    /* A wrong tag fails; the message is then finished. */
    tag[15] ^= 1;
    assert_int_equal(EVP_DecryptInit_ex2(ctx, NULL, NULL, iv, NULL), 1);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, 16, tag), 1);
    assert_int_equal(EVP_DecryptUpdate(ctx, NULL, &outl, pt, 5), 1);
    assert_int_equal(EVP_DecryptUpdate(ctx, out, &outl, ct, sizeof(pt)), 1);
    ERR_clear_error();
    assert_int_equal(EVP_DecryptFinal_ex(ctx, out + 64, &outl), 0);
    if (is_coffer) {
        char reason[256];
        unsigned long e = ERR_peek_last_error();
        assert_int_not_equal(e, 0);
        ERR_error_string_n(e, reason, sizeof(reason));
        if (strstr(reason, "authentication failed") == NULL)
            fail_msg("unexpected error text: %s", reason);
    }
    assert_int_equal(EVP_DecryptFinal_ex(ctx, out + 64, &outl), 0);
    /* IV lengths: 0 is refused. */
    assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, 0, NULL), 0);
    /* TLS record mode and IV generation. */
    {
        uint8_t tlsaad[13] = {0}, fixed[4] = {0}, gen[8];
        tlsaad[11] = 0;
        tlsaad[12] = 64;
        assert_int_equal(EVP_EncryptInit_ex2(ctx, NULL, NULL, iv, NULL), 1);
        if (is_coffer) {
            assert_true(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_TLS1_AAD, 13, tlsaad) <= 0);
            assert_true(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IV_FIXED, 4, fixed) <= 0);
            assert_true(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_IV_GEN, 8, gen) <= 0);
            /* Nothing is encrypted without an IV (OpenSSL's GCM would make a random one). */
            assert_int_equal(EVP_EncryptInit_ex2(ctx, NULL, key, NULL, NULL), 1);
            assert_int_equal(EVP_EncryptUpdate(ctx, out, &outl, pt, 10), 1); /* IV still set */
            assert_int_equal(EVP_EncryptFinal_ex(ctx, out, &outl), 1);
            assert_int_equal(EVP_EncryptInit_ex2(ctx, NULL, NULL, NULL, NULL), 1);
            assert_int_equal(EVP_EncryptUpdate(ctx, out, &outl, pt, 10), 0);
            /* IV lengths beyond the limit. */
            assert_int_equal(
                EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, ENGINE_GCM_IV_MAX + 1, NULL), 0);
            assert_int_equal(
                EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, ENGINE_GCM_IV_MAX, NULL), 1);
        }
    }
    EVP_CIPHER_CTX_free(ctx);
    ERR_clear_error();
}

static void test_misuse(void **state)
{
    (void)state;
    run_misuse(def[2], 0);
    run_misuse(cof[2], 1);
}

/* The AAD buffer is bounded: COFFER_MAX_PROV_AAD (16 MiB) is accepted, one byte more is not. */
static void test_aad_limit(void **state)
{
    (void)state;
    size_t chunk = 1u << 20;
    uint8_t *aad = calloc(1, chunk), key[16] = {0}, iv[12] = {0}, tag[16], want[16];
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new(), *d = EVP_CIPHER_CTX_new();
    int outl;

    assert_non_null(aad);
    assert_int_equal(EVP_EncryptInit_ex2(ctx, cof[0], key, iv, NULL), 1);
    assert_int_equal(EVP_EncryptInit_ex2(d, def[0], key, iv, NULL), 1);
    for (int i = 0; i < 16; i++) {
        assert_int_equal(EVP_EncryptUpdate(ctx, NULL, &outl, aad, (int)chunk), 1);
        assert_int_equal(EVP_EncryptUpdate(d, NULL, &outl, aad, (int)chunk), 1);
    }
    assert_int_equal(EVP_EncryptFinal_ex(ctx, tag, &outl), 1);
    assert_int_equal(EVP_EncryptFinal_ex(d, want, &outl), 1);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, tag), 1);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(d, EVP_CTRL_AEAD_GET_TAG, 16, want), 1);
    assert_memory_equal(tag, want, 16);
    assert_int_equal(EVP_EncryptInit_ex2(ctx, NULL, NULL, iv, NULL), 1);
    for (int i = 0; i < 16; i++)
        assert_int_equal(EVP_EncryptUpdate(ctx, NULL, &outl, aad, (int)chunk), 1);
    assert_int_equal(EVP_EncryptUpdate(ctx, NULL, &outl, aad, 1), 0);
    EVP_CIPHER_CTX_free(ctx);
    EVP_CIPHER_CTX_free(d);
    free(aad);
    ERR_clear_error();
}

/* ---- threads ------------------------------------------------------------------------------- */

/* Random messages on one thread's own contexts (each thread has its own ipsec-mb manager). */
static void *thread_messages(void *arg)
{
    uint64_t s = (uint64_t)(uintptr_t)arg;
    uint8_t key[32], iv[12], aad[40], pt[5000], a[5016], b[5016];

    for (int i = 0; i < 60; i++) {
        size_t len = rng_below(&s, sizeof(pt));
        gcm_msg m = {key, iv, aad, pt, 32, 12, rng_below(&s, sizeof(aad)), len};
        ts_fill(key, sizeof(key), rng_next(&s));
        ts_fill(iv, sizeof(iv), rng_next(&s));
        ts_fill(aad, sizeof(aad), rng_next(&s));
        ts_fill(pt, len, rng_next(&s));
        if (!gcm_run(cof[2], 1, &m, a, a + len, 16, rng_next(&s) | 1, i & 1) ||
            !gcm_run(def[2], 1, &m, b, b + len, 16, 0, 0) || memcmp(a, b, len + 16) != 0)
            return (void *)1;
    }
    return NULL;
}

/* A context started on one thread and finished on another (never at the same time). */
static void *thread_finish(void *arg)
{
    EVP_CIPHER_CTX *ctx = arg;
    uint8_t pt[100] = {7}, ct[100];
    int outl;

    if (EVP_EncryptUpdate(ctx, ct + 10, &outl, pt + 10, 90) != 1 ||
        EVP_EncryptFinal_ex(ctx, ct, &outl) != 1)
        return (void *)1;
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    pthread_t t[4];
    void *ret;
    uint8_t key[32] = {1}, iv[12] = {2}, pt[100] = {7}, ct[100], tag[16], want[116];
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    gcm_msg m = {key, iv, NULL, pt, 32, 12, 0, sizeof(pt)};
    int outl;

    for (uintptr_t i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, thread_messages, (void *)(i + 1)), 0);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(t[i], &ret), 0);
        assert_null(ret);
    }

    assert_int_equal(EVP_EncryptInit_ex2(ctx, cof[2], key, iv, NULL), 1);
    assert_int_equal(EVP_EncryptUpdate(ctx, ct, &outl, pt, 10), 1);
    assert_int_equal(pthread_create(&t[0], NULL, thread_finish, ctx), 0);
    assert_int_equal(pthread_join(t[0], &ret), 0);
    assert_null(ret);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, tag), 1);
    assert_true(gcm_run(def[2], 1, &m, want, want + sizeof(pt), 16, 0, 0));
    EVP_CIPHER_CTX_free(ctx);
    /* ct[10..] was written by the other thread into its own buffer: compare the tag only. */
    assert_memory_equal(tag, want + sizeof(pt), 16);
}

/* ---- parameters and the library context ------------------------------------------------------ */

static void test_params(void **state)
{
    (void)state;
    uint8_t key[24] = {0}, iv[16], got[16];
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    EVP_CIPHER *c;
    EVP_MD *md;
    const char *name = NULL, *version = NULL, *buildinfo = NULL;
    int status = 0;
    OSSL_PARAM p[] = {
        OSSL_PARAM_construct_utf8_ptr(OSSL_PROV_PARAM_NAME, (char **)&name, 0),
        OSSL_PARAM_construct_utf8_ptr(OSSL_PROV_PARAM_VERSION, (char **)&version, 0),
        OSSL_PARAM_construct_utf8_ptr(OSSL_PROV_PARAM_BUILDINFO, (char **)&buildinfo, 0),
        OSSL_PARAM_construct_int(OSSL_PROV_PARAM_STATUS, &status),
        OSSL_PARAM_construct_end(),
    };

    for (int i = 0; i < 3; i++) {
        assert_int_equal(EVP_CIPHER_get_mode(cof[i]), EVP_CIPH_GCM_MODE);
        assert_true(EVP_CIPHER_get_flags(cof[i]) & EVP_CIPH_FLAG_AEAD_CIPHER);
        assert_int_equal(EVP_CIPHER_get_key_length(cof[i]), 16 + 8 * i);
        assert_int_equal(EVP_CIPHER_get_iv_length(cof[i]), 12);
        assert_int_equal(EVP_CIPHER_get_block_size(cof[i]), 1);
        assert_string_equal(OSSL_PROVIDER_get0_name(EVP_CIPHER_get0_provider(cof[i])), "coffer");
    }
    assert_int_equal(EVP_CIPHER_get_nid(cof[2]), NID_aes_256_gcm);

    ts_fill(iv, sizeof(iv), 51);
    assert_int_equal(EVP_EncryptInit_ex2(ctx, cof[1], NULL, NULL, NULL), 1);
    assert_int_equal(EVP_CIPHER_CTX_get_iv_length(ctx), 12);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, 16, NULL), 1);
    assert_int_equal(EVP_CIPHER_CTX_get_iv_length(ctx), 16);
    assert_int_equal(EVP_EncryptInit_ex2(ctx, NULL, key, iv, NULL), 1);
    assert_int_equal(EVP_CIPHER_CTX_get_key_length(ctx), 24);
    assert_int_equal(EVP_CIPHER_CTX_get_tag_length(ctx), 16);
    assert_int_equal(EVP_CIPHER_CTX_get_original_iv(ctx, got, sizeof(got)), 1);
    assert_memory_equal(got, iv, 16);
    memset(got, 0, sizeof(got));
    assert_int_equal(EVP_CIPHER_CTX_get_updated_iv(ctx, got, sizeof(got)), 1);
    assert_memory_equal(got, iv, 16);
    assert_int_equal(EVP_CIPHER_CTX_get_original_iv(ctx, got, 8), 0); /* too short */
    EVP_CIPHER_CTX_free(ctx);
    ERR_clear_error();

    /* The provider's own parameters, as `openssl list -providers` reads them. */
    assert_int_equal(OSSL_PROVIDER_get_params(prov_coffer, p), 1);
    assert_string_equal(name, "coffer");
    assert_non_null(version);
    assert_non_null(buildinfo);
    assert_non_null(strstr(buildinfo, "ipsec-mb"));
    assert_int_equal(status, 1);
    assert_int_equal(OSSL_PROVIDER_self_test(prov_coffer), 1);
    printf("provider version %s, build info: %s\n", version, buildinfo);

    /* Beside it the default provider still serves everything else. */
    assert_int_equal(RAND_bytes_ex(libctx, got, sizeof(got), 0), 1);
    assert_non_null(md = EVP_MD_fetch(libctx, "SHA256", NULL));
    EVP_MD_free(md);
    assert_null(EVP_MD_fetch(libctx, "SHA256", "provider=coffer"));
    ERR_clear_error();
    assert_non_null(c = EVP_CIPHER_fetch(libctx, "id-aes256-GCM", "?provider=coffer"));
    assert_string_equal(OSSL_PROVIDER_get0_name(EVP_CIPHER_get0_provider(c)), "coffer");
    EVP_CIPHER_free(c);
    assert_non_null(c = EVP_CIPHER_fetch(libctx, "2.16.840.1.101.3.4.1.26", "provider=coffer"));
    EVP_CIPHER_free(c);
    assert_null(EVP_CIPHER_fetch(libctx, "AES-256-CBC", "provider=coffer"));
    ERR_clear_error();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_wycheproof),
        cmocka_unit_test(test_tag_lengths),
        cmocka_unit_test(test_reinit),
        cmocka_unit_test(test_dupctx),
        cmocka_unit_test(test_evp_cipher),
        cmocka_unit_test(test_misuse),
        cmocka_unit_test(test_aad_limit),
        cmocka_unit_test(test_random_vs_default),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
