/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: opening coffer-v1 (header reader, then engine_stream) and velero-v1 files
 * through engine_stream in fuzzer-chosen pieces, with the decryptor's invariants checked. */
#include "coffer_error.h"
#include "engine_chunked.h"
#include "engine_header.h"
#include "engine_stream.h"
#include "engine_velero.h"
#include "fuzz_common.h"

#include <string.h>

/*
 * Input: FUZZ_PREFIX bytes (flags FUZZ_STREAM_*, piece seed), then a coffer-v1 or velero-v1
 * file, opened with the fixed keys. make_corpus writes valid files under the same keys.
 */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int ipsec_mb_ok;
static engine_key *key16, *key24, *key32;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    ipsec_mb_ok = engine_gcm_backend_available(ENGINE_GCM_IPSEC_MB);
    FUZZ_CHECK(engine_key_from_bytes(&key16, fuzz_key16, sizeof(fuzz_key16)) == 0);
    FUZZ_CHECK(engine_key_from_bytes(&key24, fuzz_key24, sizeof(fuzz_key24)) == 0);
    FUZZ_CHECK(engine_key_from_bytes(&key32, fuzz_key32, sizeof(fuzz_key32)) == 0);
    return 0;
}

struct open_result {
    int err;
    struct fuzz_bytes pt;
};

static int documented_error(int r)
{
    return r == COFFER_ERR_WRONG_KEY || r == COFFER_ERR_TAMPERED || r == COFFER_ERR_TRUNCATED ||
           r == COFFER_ERR_TRAILING || r == COFFER_ERR_TOO_LARGE;
}

static void check_sticky(engine_stream *s, int err)
{
    size_t cap = engine_stream_bound(s, 1), n = 1;
    uint8_t *out = fuzz_buf_new(cap);
    static const uint8_t one = 0;

    FUZZ_CHECK(engine_stream_update(s, &one, 1, out, cap, &n) == err && n == 0);
    n = 1;
    FUZZ_CHECK(engine_stream_update(s, &one, 0, out, cap, &n) == err && n == 0);
    n = 1;
    FUZZ_CHECK(engine_stream_finish(s, out, cap, &n) == err && n == 0);
    n = 1;
    FUZZ_CHECK(engine_stream_drain(s, out, cap, &n) == err && n == 0);
    FUZZ_CHECK(engine_stream_detail(s) != NULL);
    fuzz_buf_free(out, cap);
}

/*
 * Feed body[0..len) to an open stream in pieces, finish, drain; record what was released.
 * release_early: whether update may release plaintext (coffer-v1) or never (velero-v1).
 */
static void stream_run(engine_stream *s, struct fuzz_pieces *pieces, const uint8_t *body,
                       size_t len, int release_early, struct open_result *res)
{
    size_t off = 0, n;
    int r;

    for (;;) {
        size_t piece = fuzz_pieces_next(pieces, len - off);
        size_t cap = engine_stream_bound(s, piece);
        uint8_t *out = fuzz_buf_new(cap);
        n = (size_t)-1;
        r = engine_stream_update(s, body + off, piece, out, cap, &n);
        if (r == 0) {
            FUZZ_CHECK(n <= cap);
            FUZZ_CHECK(release_early || n == 0); /* velero-v1: nothing before the tag */
            fuzz_bytes_add(&res->pt, out, n);
        } else {
            FUZZ_CHECK(n == 0);
        }
        fuzz_buf_free(out, cap);
        off += piece;
        if (r != 0) {
            res->err = r;
            goto out;
        }
        FUZZ_CHECK(res->pt.len <= off);
        FUZZ_CHECK(engine_stream_bytes_in(s) == off);
        if (off == len)
            break;
    }
    size_t cap = engine_stream_bound(s, 0);
    uint8_t *out = fuzz_buf_new(cap);
    n = (size_t)-1;
    r = engine_stream_finish(s, out, cap, &n);
    FUZZ_CHECK(r != 0 ? n == 0 : release_early || n == 0);
    if (r == 0)
        fuzz_bytes_add(&res->pt, out, n);
    fuzz_buf_free(out, cap);
    if (r != 0) {
        res->err = r;
        goto out;
    }
    /* drain until it writes nothing, into buffers of fuzzer-chosen size */
    for (;;) {
        size_t dcap = fuzz_pieces_next(pieces, 70000);
        if (dcap == 0)
            dcap = 1;
        out = fuzz_buf_new(dcap);
        n = (size_t)-1;
        r = engine_stream_drain(s, out, dcap, &n);
        if (r == 0) {
            FUZZ_CHECK(n <= dcap);
            FUZZ_CHECK(!release_early || n == 0);
            fuzz_bytes_add(&res->pt, out, n);
        } else {
            FUZZ_CHECK(n == 0);
        }
        fuzz_buf_free(out, dcap);
        if (r != 0) {
            res->err = r;
            goto out;
        }
        FUZZ_CHECK(res->pt.len <= len);
        if (n == 0)
            break;
    }
out:
    FUZZ_CHECK(res->pt.len <= len);
    FUZZ_CHECK(engine_stream_bytes_out(s) == res->pt.len);
    if (res->err != 0) {
        FUZZ_CHECK(documented_error(res->err));
        FUZZ_CHECK(engine_stream_detail(s)[0] != '\0' || res->err == COFFER_ERR_TRAILING ||
                   res->err == COFFER_ERR_TOO_LARGE);
        check_sticky(s, res->err);
    } else {
        /* finished: more data is trailing data, for good */
        static const uint8_t one = 0;
        cap = engine_stream_bound(s, 1);
        out = fuzz_buf_new(cap);
        FUZZ_CHECK(engine_stream_finish(s, out, cap, &n) == COFFER_ERR_STATE && n == 0);
        FUZZ_CHECK(engine_stream_drain(s, out, cap, &n) == 0 && n == 0);
        FUZZ_CHECK(engine_stream_update(s, &one, 1, out, cap, &n) == COFFER_ERR_TRAILING);
        fuzz_buf_free(out, cap);
        check_sticky(s, COFFER_ERR_TRAILING);
    }
}

static void fuzz_coffer_v1(unsigned flags, const uint8_t seed[3], const uint8_t *in, size_t len)
{
    engine_gcm_backend backend =
        (flags & FUZZ_STREAM_OPENSSL) || !ipsec_mb_ok ? ENGINE_GCM_OPENSSL : ENGINE_GCM_IPSEC_MB;
    struct fuzz_pieces pieces;
    engine_header_reader hr;
    engine_stream *s = NULL;
    struct open_result res;
    size_t off = 0;
    int r = 0;

    memset(&res, 0, sizeof(res));
    fuzz_pieces_init(&pieces, seed);
    engine_header_reader_init(&hr);
    /* the header, fed in the same kind of pieces as the body */
    while (off < len) {
        size_t piece = fuzz_pieces_next(&pieces, len - off), used = 0;
        r = engine_header_reader_feed(&hr, in + off, piece, &used);
        if (r < 0)
            break;
        FUZZ_CHECK(used <= piece);
        off += used;
        if (r == 1)
            break;
        FUZZ_CHECK(used == piece);
    }
    if (r != 1) {
        FUZZ_CHECK(r == 0 || r == COFFER_ERR_BAD_HEADER || r == COFFER_ERR_TOO_LARGE ||
                   r == COFFER_ERR_METADATA);
        goto out;
    }
    FUZZ_CHECK(off == hr.total);

    char detail[512];
    struct engine_stream_params p = {
        .format = COFFER_FORMAT_COFFER_V1,
        .backend = backend,
        .key = key32,
        .header = &hr,
        .detail = detail,
        .detail_len = sizeof(detail),
    };
    r = engine_stream_open_new(&s, &p);
    if (hr.meta.key_id != NULL && strcmp(hr.meta.key_id, key32->id) != 0) {
        /* a backup for another key is refused up front, with both key ids named */
        FUZZ_CHECK(r == COFFER_ERR_WRONG_KEY && s == NULL);
        FUZZ_CHECK(strstr(detail, key32->id) != NULL);
        goto out;
    }
    FUZZ_CHECK(r == 0 && s != NULL);
    stream_run(s, &pieces, in + off, len - off, 1, &res);
    if (hr.meta.key_id != NULL)
        FUZZ_CHECK(res.err != COFFER_ERR_WRONG_KEY); /* the key id matched: tampering */
    if (res.err == 0) {
        /* authentic: re-sealing with the file's salt and header gives the file's body */
        const uint8_t *body = in + off;
        size_t bodylen = len - off;
        engine_chunked *c = NULL;
        size_t cap = engine_chunked_bound(res.pt.len) + engine_chunked_bound(0), n = 0, m = 0;
        uint8_t *out = fuzz_buf_new(cap);
        FUZZ_CHECK(bodylen >= ENGINE_CHUNKED_HEADER);
        FUZZ_CHECK(engine_chunked_seal_new(&c, ENGINE_CHUNKED_AES_256_GCM, ENGINE_GCM_OPENSSL,
                                           fuzz_key32, sizeof(fuzz_key32), hr.bytes, hr.total,
                                           body) == 0);
        FUZZ_CHECK(engine_chunked_update(c, res.pt.p, res.pt.len, out, cap, &n) == 0);
        FUZZ_CHECK(engine_chunked_final(c, out + n, cap - n, &m) == 0);
        FUZZ_CHECK(n + m == bodylen && memcmp(out, body, bodylen) == 0);
        fuzz_buf_free(out, cap);
        engine_chunked_free(c);
    }
out:
    engine_stream_free(s);
    engine_header_reader_clear(&hr);
    fuzz_bytes_free(&res.pt);
}

static void fuzz_velero_v1(unsigned flags, const uint8_t seed[3], const uint8_t *in, size_t len)
{
    static const size_t spool[4] = {1, 64, 4096, 65536};
    const engine_key *keys[4] = {key32, key16, key24, key32};
    const engine_key *key = keys[FUZZ_STREAM_KEYSIZE(flags)];
    engine_gcm_backend backend =
        (flags & FUZZ_STREAM_OPENSSL) || !ipsec_mb_ok ? ENGINE_GCM_OPENSSL : ENGINE_GCM_IPSEC_MB;
    struct fuzz_pieces pieces;
    engine_stream *s = NULL;
    struct open_result res;

    memset(&res, 0, sizeof(res));
    fuzz_pieces_init(&pieces, seed);
    struct engine_stream_params p = {
        .format = COFFER_FORMAT_VELERO_V1,
        .backend = backend,
        .key = key,
        .spool_mem = spool[FUZZ_STREAM_SPOOL(flags)],
    };
    FUZZ_CHECK(engine_stream_open_new(&s, &p) == 0);
    stream_run(s, &pieces, in, len, 0, &res);

    /* the same file through a one-shot GCM open: both accept it, with the same plaintext */
    int want = COFFER_ERR_TRUNCATED;
    uint8_t *ref = NULL;
    size_t ptlen = 0;
    if (len >= ENGINE_VELERO_NONCE + ENGINE_VELERO_TAG) {
        engine_gcm *g = NULL;
        ptlen = len - ENGINE_VELERO_NONCE - ENGINE_VELERO_TAG;
        ref = fuzz_buf_new(ptlen);
        FUZZ_CHECK(engine_gcm_new(&g, ENGINE_GCM_OPENSSL, key->bytes, key->len) == 0);
        want = engine_gcm_open(g, in, ENGINE_VELERO_NONCE, NULL, 0, in + ENGINE_VELERO_NONCE, ptlen,
                               ref, in + len - ENGINE_VELERO_TAG, ENGINE_VELERO_TAG);
        engine_gcm_free(g);
    }
    FUZZ_CHECK(res.err == want);
    if (want == 0)
        FUZZ_CHECK(res.pt.len == ptlen && (ptlen == 0 || memcmp(res.pt.p, ref, ptlen) == 0));
    else
        FUZZ_CHECK(res.pt.len == 0); /* nothing released unless the tag verified */
    fuzz_buf_free(ref, ptlen);
    engine_stream_free(s);
    fuzz_bytes_free(&res.pt);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < FUZZ_PREFIX)
        return 0;
    unsigned flags = data[0];
    if (flags & FUZZ_STREAM_VELERO)
        fuzz_velero_v1(flags, data + 1, data + FUZZ_PREFIX, size - FUZZ_PREFIX);
    else
        fuzz_coffer_v1(flags, data + 1, data + FUZZ_PREFIX, size - FUZZ_PREFIX);
    return 0;
}
