/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: opening c2sp.org/chunked-encryption (Cobblestone-128/-256) in fuzzer-chosen
 * pieces, through both AES-GCM backends, with the decryptor's invariants checked. */
#include "coffer_error.h"
#include "engine_chunked.h"
#include "fuzz_common.h"

#include <string.h>

/*
 * Input: FUZZ_PREFIX bytes (flags FUZZ_CHUNKED_*, piece seed), then the ciphertext, opened with
 * the fixed key and fuzz_context. make_corpus seals valid messages under the same key.
 */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct open_result {
    int err; /* 0 when final succeeded */
    struct fuzz_bytes pt;
};

static int ipsec_mb_ok;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    ipsec_mb_ok = engine_gcm_backend_available(ENGINE_GCM_IPSEC_MB);
    FUZZ_CHECK(engine_gcm_backend_available(ENGINE_GCM_OPENSSL));
    return 0;
}

static int documented_error(int r)
{
    return r == COFFER_ERR_WRONG_KEY || r == COFFER_ERR_TAMPERED || r == COFFER_ERR_TRUNCATED ||
           r == COFFER_ERR_TRAILING || r == COFFER_ERR_TOO_LARGE;
}

/* Once a call failed, every later call returns the same error and writes nothing. */
static void check_sticky(engine_chunked *c, int err, const uint8_t *more, size_t morelen)
{
    size_t cap = engine_chunked_bound(morelen + 1), n = 1;
    uint8_t *out = fuzz_buf_new(cap);
    static const uint8_t one = 0;

    FUZZ_CHECK(engine_chunked_update(c, more, morelen, out, cap, &n) == err && n == 0);
    n = 1;
    FUZZ_CHECK(engine_chunked_update(c, &one, 1, out, cap, &n) == err && n == 0);
    n = 1;
    FUZZ_CHECK(engine_chunked_update(c, &one, 0, out, cap, &n) == err && n == 0);
    n = 1;
    FUZZ_CHECK(engine_chunked_final(c, out, cap, &n) == err && n == 0);
    fuzz_buf_free(out, cap);
}

static void open_pieces(engine_gcm_backend backend, unsigned flags, const uint8_t seed[3],
                        const uint8_t *ct, size_t ctlen, struct open_result *res)
{
    engine_chunked *c = NULL;
    struct fuzz_pieces pieces;
    int aes128 = (flags & FUZZ_CHUNKED_AES128) != 0;
    size_t off = 0, n;
    int r;

    memset(res, 0, sizeof(*res));
    FUZZ_CHECK(engine_chunked_open_new(
                   &c, aes128 ? ENGINE_CHUNKED_AES_128_GCM : ENGINE_CHUNKED_AES_256_GCM, backend,
                   aes128 ? fuzz_key16 : fuzz_key32,
                   aes128 ? sizeof(fuzz_key16) : sizeof(fuzz_key32), fuzz_context,
                   fuzz_context_len) == 0);
    fuzz_pieces_init(&pieces, seed);
    for (;;) {
        size_t len = fuzz_pieces_next(&pieces, ctlen - off);
        size_t cap = engine_chunked_bound(len);
        uint8_t *out = fuzz_buf_new(cap);
        n = (size_t)-1;
        r = engine_chunked_update(c, ct + off, len, out, cap, &n);
        if (r == 0) {
            FUZZ_CHECK(n <= cap);
            fuzz_bytes_add(&res->pt, out, n);
        } else {
            FUZZ_CHECK(n == 0); /* nothing of a failed call is released */
        }
        fuzz_buf_free(out, cap);
        off += len;
        if (r != 0) {
            res->err = r;
            break;
        }
        /* released plaintext never exceeds the ciphertext fed so far */
        FUZZ_CHECK(res->pt.len <= off);
        if (off == ctlen)
            break;
    }
    if (res->err == 0) {
        size_t cap = engine_chunked_bound(0);
        uint8_t *out = fuzz_buf_new(cap);
        n = (size_t)-1;
        r = engine_chunked_final(c, out, cap, &n);
        if (r == 0) {
            FUZZ_CHECK(n < ENGINE_CHUNKED_CHUNK);
            fuzz_bytes_add(&res->pt, out, n);
        } else {
            FUZZ_CHECK(n == 0);
            res->err = r;
        }
        fuzz_buf_free(out, cap);
    }
    FUZZ_CHECK(res->pt.len <= ctlen);
    if (res->err != 0) {
        FUZZ_CHECK(documented_error(res->err));
        if (COFFER_FUZZ_STRICT) /* "plaintext bytes sealed or released so far" */
            FUZZ_CHECK(engine_chunked_plaintext_bytes(c) == res->pt.len);
        check_sticky(c, res->err, ct + off, ctlen - off);
    } else {
        FUZZ_CHECK(engine_chunked_plaintext_bytes(c) == res->pt.len);
        /* finished: a second final is a state error, more data is trailing data, for good */
        size_t cap = engine_chunked_bound(1);
        uint8_t *out = fuzz_buf_new(cap);
        static const uint8_t one = 0;
        FUZZ_CHECK(engine_chunked_final(c, out, cap, &n) == COFFER_ERR_STATE && n == 0);
        FUZZ_CHECK(engine_chunked_update(c, &one, 0, out, cap, &n) == COFFER_ERR_STATE);
        FUZZ_CHECK(engine_chunked_update(c, &one, 1, out, cap, &n) == COFFER_ERR_TRAILING);
        fuzz_buf_free(out, cap);
        check_sticky(c, COFFER_ERR_TRAILING, &one, 1);
    }
    engine_chunked_free(c);
}

/* An authentic message re-seals, with its own salt, to exactly the input. */
static void check_reseal(unsigned flags, const uint8_t *ct, size_t ctlen,
                         const struct fuzz_bytes *pt)
{
    int aes128 = (flags & FUZZ_CHUNKED_AES128) != 0;
    engine_chunked *c = NULL;
    size_t cap = engine_chunked_bound(pt->len) + engine_chunked_bound(0), n = 0, m = 0;
    uint8_t *out = fuzz_buf_new(cap);

    FUZZ_CHECK(engine_chunked_seal_new(
                   &c, aes128 ? ENGINE_CHUNKED_AES_128_GCM : ENGINE_CHUNKED_AES_256_GCM,
                   ENGINE_GCM_OPENSSL, aes128 ? fuzz_key16 : fuzz_key32,
                   aes128 ? sizeof(fuzz_key16) : sizeof(fuzz_key32), fuzz_context, fuzz_context_len,
                   ct) == 0);
    FUZZ_CHECK(engine_chunked_update(c, pt->p, pt->len, out, cap, &n) == 0);
    FUZZ_CHECK(cap - n >= engine_chunked_bound(0));
    FUZZ_CHECK(engine_chunked_final(c, out + n, cap - n, &m) == 0);
    FUZZ_CHECK(n + m == ctlen && memcmp(out, ct, ctlen) == 0);
    fuzz_buf_free(out, cap);
    engine_chunked_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct open_result a, b;

    if (size < FUZZ_PREFIX)
        return 0;
    unsigned flags = data[0];
    const uint8_t *ct = data + FUZZ_PREFIX;
    size_t ctlen = size - FUZZ_PREFIX;

    open_pieces(ENGINE_GCM_OPENSSL, flags, data + 1, ct, ctlen, &a);
    if (ipsec_mb_ok) {
        /* the two backends must agree on every byte and every error */
        open_pieces(ENGINE_GCM_IPSEC_MB, flags, data + 1, ct, ctlen, &b);
        FUZZ_CHECK(a.err == b.err);
        FUZZ_CHECK(a.pt.len == b.pt.len);
        FUZZ_CHECK(a.pt.len == 0 || memcmp(a.pt.p, b.pt.p, a.pt.len) == 0);
        fuzz_bytes_free(&b.pt);
    }
    if (a.err == 0) {
        /* salt, commitment, full chunks of CHUNK + TAG, and one shorter final chunk */
        size_t body = ctlen - ENGINE_CHUNKED_HEADER;
        size_t chunks = body / (ENGINE_CHUNKED_CHUNK + ENGINE_CHUNKED_TAG) + 1;
        FUZZ_CHECK(ctlen >= ENGINE_CHUNKED_HEADER + ENGINE_CHUNKED_TAG);
        FUZZ_CHECK(a.pt.len == body - chunks * ENGINE_CHUNKED_TAG);
        check_reseal(flags, ct, ctlen, &a.pt);
    } else if (a.err == COFFER_ERR_WRONG_KEY) {
        FUZZ_CHECK(a.pt.len == 0); /* commitment first: nothing released before it */
    }
    fuzz_bytes_free(&a.pt);
    return 0;
}
