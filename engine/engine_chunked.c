/* SPDX-License-Identifier: Apache-2.0 */
/* c2sp.org/chunked-encryption on engine_gcm: key commitment, per-chunk nonces, streaming. */
#include "engine_chunked.h"

#include "coffer_error.h"
#include "engine_secmem.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <string.h>

#define CHUNK     ENGINE_CHUNKED_CHUNK
#define TAG       ENGINE_CHUNKED_TAG
#define SEALED    (CHUNK + TAG) /* bytes of a full sealed chunk */
#define NONCE_LEN 12u

enum chunked_state { ST_HEADER, ST_BODY, ST_DONE, ST_FAILED };

struct engine_chunked {
    uint8_t buf[SEALED]; /* pending input: header bytes, or a partial chunk */
    size_t buflen;
    uint8_t salt[ENGINE_CHUNKED_SALT];
    uint8_t commitment[ENGINE_CHUNKED_COMMIT];
    uint8_t base_nonce[NONCE_LEN];
    uint8_t *context; /* kept until the header is verified (open) */
    size_t contextlen;
    uint8_t ikm[32];
    size_t ikmlen;
    engine_gcm *gcm;
    engine_gcm_backend backend;
    uint64_t counter;
    uint64_t pt_bytes;
    int sealing;
    int header_written;
    enum chunked_state state;
    int err;
};

static pthread_once_t kdf_once = PTHREAD_ONCE_INIT;
static EVP_KDF *kdf_hkdf; /* fetched once: a fetch per stream costs more than the derivation */

static void kdf_fetch(void)
{
    kdf_hkdf = EVP_KDF_fetch(NULL, "HKDF", "provider=default");
}

static const char *aead_label(size_t keylen)
{
    return keylen == 16 ? "c2sp.org/chunked-encryption@v1+AEAD_AES_128_GCM"
                        : "c2sp.org/chunked-encryption@v1+AEAD_AES_256_GCM";
}

/*
 * key || base_nonce || commitment = HKDF-Expand(SHA-512, ikm,
 *     label || 0x00 || salt || context, keylen + 12 + 32)
 * and the AEAD key is loaded into c->gcm.
 */
static int chunked_derive(engine_chunked *c)
{
    int r = COFFER_ERR_INTERNAL;
    const char *label = aead_label(c->ikmlen);
    size_t labellen = strlen(label);
    size_t infolen = labellen + 1 + ENGINE_CHUNKED_SALT + c->contextlen;
    uint8_t okm[32 + NONCE_LEN + ENGINE_CHUNKED_COMMIT];
    size_t okmlen = c->ikmlen + NONCE_LEN + ENGINE_CHUNKED_COMMIT;
    uint8_t *info = OPENSSL_malloc(infolen);
    EVP_KDF_CTX *kctx = NULL;
    int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;

    if (info == NULL)
        return COFFER_ERR_NOMEM;
    memcpy(info, label, labellen);
    info[labellen] = 0;
    memcpy(info + labellen + 1, c->salt, ENGINE_CHUNKED_SALT);
    if (c->contextlen > 0)
        memcpy(info + labellen + 1 + ENGINE_CHUNKED_SALT, c->context, c->contextlen);

    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, "SHA512", 0),
        OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, c->ikm, c->ikmlen),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, infolen),
        OSSL_PARAM_construct_end(),
    };
    (void)pthread_once(&kdf_once, kdf_fetch);
    if (kdf_hkdf == NULL || (kctx = EVP_KDF_CTX_new(kdf_hkdf)) == NULL)
        goto out;
    if (EVP_KDF_derive(kctx, okm, okmlen, params) != 1)
        goto out;
    engine_gcm_free(c->gcm);
    c->gcm = NULL;
    if ((r = engine_gcm_new(&c->gcm, c->backend, okm, c->ikmlen)) != 0)
        goto out;
    memcpy(c->base_nonce, okm + c->ikmlen, NONCE_LEN);
    memcpy(c->commitment, okm + c->ikmlen + NONCE_LEN, ENGINE_CHUNKED_COMMIT);
    r = 0;
out:
    OPENSSL_cleanse(okm, sizeof(okm));
    OPENSSL_clear_free(info, infolen);
    EVP_KDF_CTX_free(kctx);
    return r;
}

static int chunked_new(engine_chunked **out, int sealing, engine_chunked_aead aead,
                       engine_gcm_backend backend, const uint8_t *ikm, size_t ikmlen,
                       const uint8_t *context, size_t contextlen)
{
    engine_chunked *c;

    *out = NULL;
    if (ikmlen != (size_t)aead || (ikmlen != 16 && ikmlen != 32))
        return COFFER_ERR_KEY_SIZE;
    if (contextlen > ENGINE_CHUNKED_MAX_CONTEXT || (context == NULL && contextlen > 0))
        return COFFER_ERR_INVALID_ARG;
    if ((c = engine_secmem_alloc(sizeof(*c))) == NULL)
        return COFFER_ERR_NOMEM;
    c->sealing = sealing;
    c->backend = backend;
    memcpy(c->ikm, ikm, ikmlen);
    c->ikmlen = ikmlen;
    if (contextlen > 0) {
        if ((c->context = OPENSSL_malloc(contextlen)) == NULL) {
            engine_chunked_free(c);
            return COFFER_ERR_NOMEM;
        }
        memcpy(c->context, context, contextlen);
    }
    c->contextlen = contextlen;
    c->state = ST_HEADER;
    *out = c;
    return 0;
}

int engine_chunked_seal_new(engine_chunked **out, engine_chunked_aead aead,
                            engine_gcm_backend backend, const uint8_t *ikm, size_t ikmlen,
                            const uint8_t *context, size_t contextlen, const uint8_t *salt)
{
    engine_chunked *c;
    *out = NULL;
    int r = chunked_new(&c, 1, aead, backend, ikm, ikmlen, context, contextlen);
    if (r != 0)
        return r;
    if (salt != NULL)
        memcpy(c->salt, salt, ENGINE_CHUNKED_SALT);
    else if (RAND_bytes(c->salt, ENGINE_CHUNKED_SALT) != 1)
        r = COFFER_ERR_INTERNAL;
    if (r == 0)
        r = chunked_derive(c);
    if (r != 0) {
        engine_chunked_free(c);
        return r;
    }
    c->state = ST_BODY;
    *out = c;
    return 0;
}

int engine_chunked_open_new(engine_chunked **out, engine_chunked_aead aead,
                            engine_gcm_backend backend, const uint8_t *ikm, size_t ikmlen,
                            const uint8_t *context, size_t contextlen)
{
    engine_chunked *c;
    *out = NULL;
    int r = chunked_new(&c, 0, aead, backend, ikm, ikmlen, context, contextlen);
    if (r == 0)
        *out = c;
    return r;
}

void engine_chunked_free(engine_chunked *c)
{
    if (c == NULL)
        return;
    engine_gcm_free(c->gcm);
    OPENSSL_clear_free(c->context, c->contextlen);
    engine_secmem_free(c);
}

size_t engine_chunked_bound(size_t inlen)
{
    return inlen + CHUNK + TAG * (inlen / CHUNK + 2) + ENGINE_CHUNKED_HEADER;
}

uint64_t engine_chunked_plaintext_bytes(const engine_chunked *c)
{
    return c->pt_bytes;
}

static int chunked_fail(engine_chunked *c, int err)
{
    c->state = ST_FAILED;
    c->err = err;
    engine_secmem_wipe(c->buf, sizeof(c->buf));
    c->buflen = 0;
    return err;
}

/* The nonce of chunk index: the base nonce XOR the big-endian index in its last 8 bytes. */
static void nonce_at(const engine_chunked *c, uint64_t index, uint8_t nonce[NONCE_LEN])
{
    memcpy(nonce, c->base_nonce, NONCE_LEN);
    for (unsigned k = 0; k < 8; k++)
        nonce[NONCE_LEN - 1 - k] ^= (uint8_t)(index >> (8 * k));
}

static void chunk_nonce(const engine_chunked *c, uint8_t nonce[NONCE_LEN])
{
    nonce_at(c, c->counter, nonce);
}

/* What engine_chunked_update_spans asked for, and what it got. */
struct span_req {
    engine_span *v;
    size_t max, n;
};

/*
 * Describe `whole` chunks from in as up to req->max spans of nearly equal length, reserving their
 * chunk indices. Returns the output bytes they will write at out, or 0 if spans do not apply
 * (too few chunks, or past the format's limit: then the caller's loop does them and reports it).
 */
static size_t spans_describe(engine_chunked *c, struct span_req *req, const uint8_t *in,
                             size_t whole, uint8_t *out)
{
    size_t unit_in = c->sealing ? CHUNK : SEALED, unit_out = c->sealing ? SEALED : CHUNK;
    size_t k, o = 0;

    if (req == NULL || req->max == 0 || whole < ENGINE_SPAN_MIN_CHUNKS ||
        c->counter + whole > ENGINE_CHUNKED_MAX_CHUNKS)
        return 0;
    k = whole / ENGINE_SPAN_MIN_CHUNKS < req->max ? whole / ENGINE_SPAN_MIN_CHUNKS : req->max;
    for (size_t i = 0; i < k; i++) {
        size_t cnt = whole / k + (i < whole % k ? 1 : 0);
        engine_span *sp = &req->v[i];
        sp->c = c;
        sp->first = c->counter;
        sp->in = in;
        sp->inlen = cnt * unit_in;
        sp->out = out + o;
        sp->outlen = cnt * unit_out;
        sp->done = 0;
        sp->err = 0;
        c->counter += cnt;
        in += sp->inlen;
        o += sp->outlen;
    }
    req->n = k;
    return o;
}

void engine_span_run(engine_span *sp)
{
    const engine_chunked *c = sp->c;
    size_t unit_in = c->sealing ? CHUNK : SEALED, n = sp->inlen / unit_in;
    engine_gcm *g = NULL; /* its own copy: the GCM object holds per-message state */
    uint8_t nonce[NONCE_LEN];

    sp->done = 0;
    if ((sp->err = engine_gcm_dup(&g, c->gcm)) != 0)
        return;
    for (size_t i = 0; i < n && sp->err == 0; i++) {
        const uint8_t *in = sp->in + i * unit_in;
        nonce_at(c, sp->first + i, nonce);
        if (c->sealing) {
            uint8_t *out = sp->out + i * SEALED;
            sp->err =
                engine_gcm_seal(g, nonce, NONCE_LEN, NULL, 0, in, CHUNK, out, out + CHUNK, TAG);
        } else {
            sp->err = engine_gcm_open(g, nonce, NONCE_LEN, NULL, 0, in, CHUNK, sp->out + i * CHUNK,
                                      in + CHUNK, TAG);
        }
        if (sp->err == 0)
            sp->done += CHUNK;
    }
    engine_gcm_free(g);
}

int engine_chunked_spans_join(engine_chunked *c, engine_span *spans, size_t nspans)
{
    int err = 0;
    uint64_t done = 0;

    for (size_t i = 0; i < nspans; i++) {
        if (spans[i].err != 0 && err == 0)
            err = spans[i].err;
        done += spans[i].done;
    }
    if (err != 0) {
        for (size_t i = 0; i < nspans; i++)
            OPENSSL_cleanse(spans[i].out, spans[i].outlen);
        return c->state == ST_FAILED ? c->err : chunked_fail(c, err);
    }
    c->pt_bytes += done;
    return 0;
}

/* Seal len (<= CHUNK) plaintext bytes as the next chunk: writes len + TAG bytes to out. */
static int seal_chunk(engine_chunked *c, const uint8_t *in, size_t len, uint8_t *out)
{
    uint8_t nonce[NONCE_LEN];
    if (c->counter >= ENGINE_CHUNKED_MAX_CHUNKS)
        return chunked_fail(c, COFFER_ERR_TOO_LARGE);
    chunk_nonce(c, nonce);
    int r = engine_gcm_seal(c->gcm, nonce, NONCE_LEN, NULL, 0, in, len, out, out + len, TAG);
    if (r != 0)
        return chunked_fail(c, r);
    c->counter++;
    c->pt_bytes += len;
    return 0;
}

/* Open a sealed chunk of len (>= TAG) bytes: writes len - TAG authenticated bytes to out. */
static int open_chunk(engine_chunked *c, const uint8_t *in, size_t len, uint8_t *out)
{
    uint8_t nonce[NONCE_LEN];
    if (c->counter >= ENGINE_CHUNKED_MAX_CHUNKS)
        return chunked_fail(c, COFFER_ERR_TOO_LARGE);
    chunk_nonce(c, nonce);
    int r =
        engine_gcm_open(c->gcm, nonce, NONCE_LEN, NULL, 0, in, len - TAG, out, in + len - TAG, TAG);
    if (r != 0)
        return chunked_fail(c, r); /* engine_gcm_open already wiped out */
    c->counter++;
    return 0;
}

static int seal_update(engine_chunked *c, const uint8_t *in, size_t inlen, uint8_t *out,
                       size_t *outlen, struct span_req *req)
{
    size_t spanned;
    size_t o = 0;
    int r;

    if (!c->header_written) {
        memcpy(out, c->salt, ENGINE_CHUNKED_SALT);
        memcpy(out + ENGINE_CHUNKED_SALT, c->commitment, ENGINE_CHUNKED_COMMIT);
        o = ENGINE_CHUNKED_HEADER;
        c->header_written = 1;
    }
    if (c->buflen > 0) {
        size_t take = CHUNK - c->buflen < inlen ? CHUNK - c->buflen : inlen;
        memcpy(c->buf + c->buflen, in, take);
        c->buflen += take;
        in += take;
        inlen -= take;
        if (c->buflen == CHUNK) { /* a full chunk is never the last one: seal it now */
            if ((r = seal_chunk(c, c->buf, CHUNK, out + o)) != 0)
                return r;
            o += SEALED;
            c->buflen = 0;
        }
    }
    if ((spanned = spans_describe(c, req, in, inlen / CHUNK, out + o)) > 0) {
        o += spanned;
        in += inlen / CHUNK * CHUNK;
        inlen %= CHUNK;
    }
    while (inlen >= CHUNK) {
        if ((r = seal_chunk(c, in, CHUNK, out + o)) != 0)
            return r;
        o += SEALED;
        in += CHUNK;
        inlen -= CHUNK;
    }
    if (inlen > 0) {
        memcpy(c->buf, in, inlen);
        c->buflen = inlen;
    }
    *outlen = o;
    return 0;
}

static int open_update(engine_chunked *c, const uint8_t *in, size_t inlen, uint8_t *out,
                       size_t *outlen, struct span_req *req)
{
    size_t o = 0, spanned;
    int r;

    if (c->state == ST_HEADER) {
        size_t take =
            ENGINE_CHUNKED_HEADER - c->buflen < inlen ? ENGINE_CHUNKED_HEADER - c->buflen : inlen;
        memcpy(c->buf + c->buflen, in, take);
        c->buflen += take;
        in += take;
        inlen -= take;
        if (c->buflen < ENGINE_CHUNKED_HEADER) {
            *outlen = 0;
            return 0;
        }
        memcpy(c->salt, c->buf, ENGINE_CHUNKED_SALT);
        if ((r = chunked_derive(c)) != 0)
            return chunked_fail(c, r);
        if (CRYPTO_memcmp(c->commitment, c->buf + ENGINE_CHUNKED_SALT, ENGINE_CHUNKED_COMMIT) != 0)
            return chunked_fail(c, COFFER_ERR_WRONG_KEY);
        c->buflen = 0;
        c->state = ST_BODY;
    }
    /*
     * A full sealed chunk (CHUNK + TAG bytes) is never the final one, so it can be opened as soon
     * as it is complete; the short final chunk waits in buf for engine_chunked_final.
     */
    if (c->buflen > 0) {
        size_t take = SEALED - c->buflen < inlen ? SEALED - c->buflen : inlen;
        memcpy(c->buf + c->buflen, in, take);
        c->buflen += take;
        in += take;
        inlen -= take;
        if (c->buflen == SEALED) {
            if ((r = open_chunk(c, c->buf, SEALED, out + o)) != 0)
                return r;
            o += CHUNK;
            c->buflen = 0;
        }
    }
    if ((spanned = spans_describe(c, req, in, inlen / SEALED, out + o)) > 0) {
        o += spanned;
        in += inlen / SEALED * SEALED;
        inlen %= SEALED;
    }
    while (inlen >= SEALED) {
        if ((r = open_chunk(c, in, SEALED, out + o)) != 0) {
            OPENSSL_cleanse(out, o + CHUNK); /* nothing of this call is released on failure */
            return r;
        }
        o += CHUNK;
        in += SEALED;
        inlen -= SEALED;
    }
    if (inlen > 0) {
        memcpy(c->buf, in, inlen);
        c->buflen = inlen;
    }
    c->pt_bytes += o - spanned; /* released only now that the whole call succeeded; spans at join */
    *outlen = o;
    return 0;
}

static int chunked_update(engine_chunked *c, const uint8_t *in, size_t inlen, uint8_t *out,
                          size_t outcap, size_t *outlen, struct span_req *req)
{
    *outlen = 0;
    if (c->state == ST_FAILED)
        return c->err;
    if (c->state == ST_DONE)
        return inlen > 0 ? chunked_fail(c, COFFER_ERR_TRAILING) : COFFER_ERR_STATE;
    if (outcap < engine_chunked_bound(inlen) || (in == NULL && inlen > 0))
        return COFFER_ERR_INVALID_ARG;
    if (inlen == 0 && (!c->sealing || c->header_written))
        return 0;
    return c->sealing ? seal_update(c, in, inlen, out, outlen, req)
                      : open_update(c, in, inlen, out, outlen, req);
}

int engine_chunked_update(engine_chunked *c, const uint8_t *in, size_t inlen, uint8_t *out,
                          size_t outcap, size_t *outlen)
{
    return chunked_update(c, in, inlen, out, outcap, outlen, NULL);
}

int engine_chunked_update_spans(engine_chunked *c, const uint8_t *in, size_t inlen, uint8_t *out,
                                size_t outcap, size_t *outlen, engine_span *spans, size_t maxspans,
                                size_t *nspans)
{
    struct span_req req = {spans, maxspans, 0};
    int r = chunked_update(c, in, inlen, out, outcap, outlen, &req);
    *nspans = r == 0 ? req.n : 0;
    return r;
}

int engine_chunked_final(engine_chunked *c, uint8_t *out, size_t outcap, size_t *outlen)
{
    int r;

    *outlen = 0;
    if (c->state == ST_FAILED)
        return c->err;
    if (c->state == ST_DONE)
        return COFFER_ERR_STATE;
    if (outcap < engine_chunked_bound(0))
        return COFFER_ERR_INVALID_ARG;
    if (c->sealing) {
        size_t o = 0;
        if (!c->header_written && (r = seal_update(c, NULL, 0, out, &o, NULL)) != 0)
            return r;
        if ((r = seal_chunk(c, c->buf, c->buflen, out + o)) != 0)
            return r;
        *outlen = o + c->buflen + TAG;
    } else {
        if (c->state == ST_HEADER || c->buflen < TAG)
            return chunked_fail(c, COFFER_ERR_TRUNCATED);
        if ((r = open_chunk(c, c->buf, c->buflen, out)) != 0)
            return r;
        *outlen = c->buflen - TAG;
        c->pt_bytes += *outlen;
    }
    engine_secmem_wipe(c->buf, c->buflen);
    c->buflen = 0;
    c->state = ST_DONE;
    return 0;
}
