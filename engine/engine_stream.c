/* SPDX-License-Identifier: Apache-2.0 */
/* The format dispatcher: coffer-v1, bare Cobblestone, velero-v1 and pass-through behind one API. */
#include "engine_stream.h"

#include "coffer_error.h"
#include "engine_chunked.h"
#include "engine_header.h"
#include "engine_velero.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct engine_stream {
    coffer_format format;
    int sealing;
    int err;
    int finished;
    engine_chunked *chunked; /* coffer-v1, cobblestone, cobblestone-128 */
    engine_velero *velero;   /* velero-v1 */
    uint8_t *pending;        /* coffer-v1 seal: header bytes still to write */
    size_t pending_len;
    int key_id_matched; /* coffer-v1 open: the header's keyId equals the key's */
    /* pass-through open: the first bytes, held until they are known not to be coffer-v1's magic */
    uint8_t held[ENGINE_HEADER_MAGIC_LEN];
    size_t held_len;
    int magic_checked;
    uint64_t bytes_in;
    uint64_t bytes_out;
    char detail[512];
};

static const char *const format_names[] = {
    [COFFER_FORMAT_COFFER_V1] = "coffer-v1",
    [COFFER_FORMAT_VELERO_V1] = "velero-v1",
    [COFFER_FORMAT_COBBLESTONE] = "cobblestone",
    [COFFER_FORMAT_COBBLESTONE_128] = "cobblestone-128",
    [COFFER_FORMAT_NONE] = "none",
};

const char *engine_format_name(coffer_format f)
{
    return (unsigned)f < sizeof(format_names) / sizeof(format_names[0]) ? format_names[f]
                                                                        : "unknown";
}

int engine_format_parse(const char *name, coffer_format *out)
{
    for (unsigned i = 0; name != NULL && i < sizeof(format_names) / sizeof(format_names[0]); i++) {
        if (strcmp(name, format_names[i]) == 0) {
            *out = (coffer_format)i;
            return 0;
        }
    }
    return COFFER_ERR_FORMAT;
}

engine_key_rule engine_format_key_rule(coffer_format f)
{
    switch (f) {
    case COFFER_FORMAT_VELERO_V1:
        return ENGINE_KEY_RULE_VELERO;
    case COFFER_FORMAT_COBBLESTONE_128:
        return ENGINE_KEY_RULE_COBBLESTONE_128;
    default:
        return ENGINE_KEY_RULE_COFFER;
    }
}

static void stream_detail(engine_stream *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void stream_detail(engine_stream *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->detail, sizeof(s->detail), fmt, ap);
    va_end(ap);
}

const char *engine_stream_detail(const engine_stream *s)
{
    return s->detail;
}

uint64_t engine_stream_bytes_in(const engine_stream *s)
{
    return s->bytes_in;
}

uint64_t engine_stream_bytes_out(const engine_stream *s)
{
    return s->bytes_out;
}

void engine_stream_free(engine_stream *s)
{
    if (s == NULL)
        return;
    engine_chunked_free(s->chunked);
    engine_velero_free(s->velero);
    free(s->pending);
    free(s);
}

static int stream_alloc(engine_stream **out, const struct engine_stream_params *p, int sealing)
{
    engine_stream *s;
    if ((unsigned)p->format > COFFER_FORMAT_NONE)
        return COFFER_ERR_FORMAT;
    if (p->format != COFFER_FORMAT_NONE && p->key == NULL)
        return COFFER_ERR_KEY_MISSING;
    if ((s = calloc(1, sizeof(*s))) == NULL)
        return COFFER_ERR_NOMEM;
    s->format = p->format;
    s->sealing = sealing;
    *out = s;
    return 0;
}

/* The key size a format takes; other sizes get a message naming both. */
static int stream_key_check(engine_stream *s, const engine_key *k)
{
    size_t want = s->format == COFFER_FORMAT_COBBLESTONE_128 ? 16 : 32;
    if (s->format == COFFER_FORMAT_VELERO_V1 || s->format == COFFER_FORMAT_NONE || k->len == want)
        return 0;
    stream_detail(s, "format %s needs a %zu-byte key; this key has %zu bytes",
                  engine_format_name(s->format), want, k->len);
    return COFFER_ERR_KEY_SIZE;
}

/* Bare Cobblestone's AEAD for the format. */
static engine_chunked_aead stream_aead(coffer_format f)
{
    return f == COFFER_FORMAT_COBBLESTONE_128 ? ENGINE_CHUNKED_AES_128_GCM
                                              : ENGINE_CHUNKED_AES_256_GCM;
}

static int stream_setup_seal(engine_stream *s, const struct engine_stream_params *p)
{
    int r;
    switch (p->format) {
    case COFFER_FORMAT_COFFER_V1:
        if (p->metadata == NULL)
            return COFFER_ERR_METADATA;
        if ((r = engine_header_encode(p->metadata, p->metadata_len, &s->pending,
                                      &s->pending_len)) != 0)
            return r;
        return engine_chunked_seal_new(&s->chunked, ENGINE_CHUNKED_AES_256_GCM, p->backend,
                                       p->key->bytes, p->key->len, s->pending, s->pending_len,
                                       NULL);
    case COFFER_FORMAT_COBBLESTONE:
    case COFFER_FORMAT_COBBLESTONE_128:
        return engine_chunked_seal_new(&s->chunked, stream_aead(p->format), p->backend,
                                       p->key->bytes, p->key->len, p->context, p->context_len,
                                       NULL);
    case COFFER_FORMAT_VELERO_V1:
        return engine_velero_seal_new(&s->velero, p->backend, p->key->bytes, p->key->len);
    case COFFER_FORMAT_NONE:
        break;
    }
    return 0;
}

static int stream_setup_open(engine_stream *s, const struct engine_stream_params *p)
{
    const engine_header_reader *h = p->header;
    switch (p->format) {
    case COFFER_FORMAT_COFFER_V1:
        if (h == NULL || !h->complete)
            return COFFER_ERR_BAD_HEADER;
        if (h->meta.key_id != NULL && strcmp(h->meta.key_id, p->key->id) != 0) {
            stream_detail(s, "this backup was encrypted with key %.16s; the key given has id %s",
                          h->meta.key_id, p->key->id);
            return COFFER_ERR_WRONG_KEY;
        }
        s->key_id_matched = h->meta.key_id != NULL;
        return engine_chunked_open_new(&s->chunked, ENGINE_CHUNKED_AES_256_GCM, p->backend,
                                       p->key->bytes, p->key->len, h->bytes, h->total);
    case COFFER_FORMAT_COBBLESTONE:
    case COFFER_FORMAT_COBBLESTONE_128:
        return engine_chunked_open_new(&s->chunked, stream_aead(p->format), p->backend,
                                       p->key->bytes, p->key->len, p->context, p->context_len);
    case COFFER_FORMAT_VELERO_V1:
        return engine_velero_open_new(
            &s->velero, p->backend, p->key->bytes, p->key->len, p->spool_dir,
            p->spool_mem != 0 ? p->spool_mem : ENGINE_VELERO_SPOOL_MEM_DEFAULT);
    case COFFER_FORMAT_NONE:
        break;
    }
    return 0;
}

static int stream_new(engine_stream **out, const struct engine_stream_params *p, int sealing)
{
    engine_stream *s;
    int r;

    *out = NULL;
    if ((r = stream_alloc(&s, p, sealing)) != 0)
        return r;
    if (p->format != COFFER_FORMAT_NONE && (r = stream_key_check(s, p->key)) != 0)
        goto fail;
    if ((r = sealing ? stream_setup_seal(s, p) : stream_setup_open(s, p)) != 0)
        goto fail;
    *out = s;
    return 0;
fail:
    if (p->detail != NULL && p->detail_len > 0)
        snprintf(p->detail, p->detail_len, "%s", s->detail);
    engine_stream_free(s);
    return r;
}

int engine_stream_seal_new(engine_stream **out, const struct engine_stream_params *p)
{
    return stream_new(out, p, 1);
}

int engine_stream_open_new(engine_stream **out, const struct engine_stream_params *p)
{
    return stream_new(out, p, 0);
}

size_t engine_stream_bound(const engine_stream *s, size_t inlen)
{
    if (s->chunked != NULL)
        return engine_chunked_bound(inlen) + s->pending_len;
    if (s->velero != NULL)
        return engine_velero_bound(inlen);
    return inlen + s->held_len;
}

/*
 * Pass-through opening never releases a coffer-v1 file as plaintext: the first
 * ENGINE_HEADER_MAGIC_LEN bytes are held until they are known to differ from the magic. Returns
 * 0 (out got *outlen bytes, at most held + inlen) or COFFER_ERR_FORMAT.
 */
static int stream_passthrough(engine_stream *s, const uint8_t *in, size_t inlen, int final,
                              uint8_t *out, size_t *outlen)
{
    size_t take = 0;

    *outlen = 0;
    if (!s->magic_checked) {
        take = ENGINE_HEADER_MAGIC_LEN - s->held_len;
        if (take > inlen)
            take = inlen;
        if (take > 0)
            memcpy(s->held + s->held_len, in, take);
        s->held_len += take;
        if (memcmp(s->held, engine_header_magic, s->held_len) != 0) {
            s->magic_checked = 1; /* differs already: not a coffer-v1 file */
        } else if (s->held_len == ENGINE_HEADER_MAGIC_LEN) {
            stream_detail(s, "the input starts with coffer-v1's magic: it is an encrypted "
                             "coffer-v1 file, never passed through as plaintext; restore it "
                             "as coffer-v1");
            s->held_len = 0;
            return COFFER_ERR_FORMAT;
        } else if (!final) {
            return 0; /* a prefix of the magic so far: hold it */
        } else {
            s->magic_checked = 1; /* shorter than the magic: plain data */
        }
        if (s->held_len > 0)
            memcpy(out, s->held, s->held_len);
        *outlen = s->held_len;
        s->held_len = 0;
    }
    if (inlen > take)
        memcpy(out + *outlen, in + take, inlen - take);
    *outlen += inlen - take;
    return 0;
}

/* Record a failure once, with a sentence that says what it means for this format. */
static int stream_fail(engine_stream *s, int err)
{
    s->err = err;
    if (s->detail[0] != '\0')
        return err;
    switch (err) {
    case COFFER_ERR_WRONG_KEY:
        if (s->key_id_matched) {
            /* the key id matched, so the key is right: the header or commitment changed */
            s->err = err = COFFER_ERR_TAMPERED;
            stream_detail(s, "the key commitment does not match although the key id does: the "
                             "header, salt or commitment was modified");
        } else {
            stream_detail(s, "check the key and the --context, which must be the same as when "
                             "the data was encrypted");
        }
        break;
    case COFFER_ERR_TAMPERED:
        stream_detail(s,
                      "a chunk failed authentication after %llu authentic bytes: the "
                      "ciphertext was modified or cut short",
                      (unsigned long long)s->bytes_out);
        break;
    case COFFER_ERR_TRUNCATED:
        stream_detail(s, "the input ended after %llu bytes, before the end of the message",
                      (unsigned long long)s->bytes_in);
        break;
    case COFFER_ERR_SPOOL:
    case COFFER_ERR_NOSPACE:
        if (s->velero != NULL)
            stream_detail(s, "%s", engine_velero_spool_error(s->velero));
        break;
    default:
        break;
    }
    return err;
}

/* Write the pending coffer-v1 header first, if any. */
static size_t stream_flush_pending(engine_stream *s, uint8_t *out)
{
    size_t n = s->pending_len;
    if (n > 0) {
        memcpy(out, s->pending, n);
        s->pending_len = 0;
    }
    return n;
}

static int stream_update(engine_stream *s, const uint8_t *in, size_t inlen, uint8_t *out,
                         size_t outcap, size_t *outlen, engine_span *spans, size_t maxspans,
                         size_t *nspans)
{
    size_t pre = 0, n = 0;
    int r = 0;

    *outlen = 0;
    *nspans = 0;
    if (s->err != 0)
        return s->err;
    if (s->finished)
        return inlen > 0 ? stream_fail(s, COFFER_ERR_TRAILING) : COFFER_ERR_STATE;
    if (outcap < engine_stream_bound(s, inlen))
        return COFFER_ERR_INVALID_ARG;
    if (s->sealing)
        pre = stream_flush_pending(s, out);
    if (s->chunked != NULL)
        r = engine_chunked_update_spans(s->chunked, in, inlen, out + pre, outcap - pre, &n, spans,
                                        maxspans, nspans);
    else if (s->velero != NULL)
        r = engine_velero_update(s->velero, in, inlen, out + pre, outcap - pre, &n);
    else if (!s->sealing)
        r = stream_passthrough(s, in, inlen, 0, out, &n);
    else if (inlen > 0)
        memcpy(out, in, n = inlen);
    if (r != 0)
        return stream_fail(s, r);
    s->bytes_in += inlen;
    *outlen = pre + n;
    s->bytes_out += *outlen;
    return 0;
}

int engine_stream_update(engine_stream *s, const uint8_t *in, size_t inlen, uint8_t *out,
                         size_t outcap, size_t *outlen)
{
    size_t nspans;
    return stream_update(s, in, inlen, out, outcap, outlen, NULL, 0, &nspans);
}

int engine_stream_update_spans(engine_stream *s, const uint8_t *in, size_t inlen, uint8_t *out,
                               size_t outcap, size_t *outlen, engine_span *spans, size_t maxspans,
                               size_t *nspans)
{
    return stream_update(s, in, inlen, out, outcap, outlen, spans, maxspans, nspans);
}

int engine_stream_spans_join(engine_stream *s, engine_span *spans, size_t nspans)
{
    uint64_t unreleased = 0;
    int failed = 0, r;

    if (nspans == 0)
        return 0;
    if ((r = engine_chunked_spans_join(s->chunked, spans, nspans)) == 0)
        return 0;
    /* bytes_out counted the spans' output as written: keep only what was authentic before */
    for (size_t i = 0; i < nspans; i++) {
        failed |= spans[i].err != 0;
        if (failed)
            unreleased += spans[i].outlen - (spans[i].err != 0 && !s->sealing ? spans[i].done : 0);
    }
    s->bytes_out -= unreleased;
    return stream_fail(s, r);
}

int engine_stream_finish(engine_stream *s, uint8_t *out, size_t outcap, size_t *outlen)
{
    size_t pre = 0, n = 0;
    int r = 0;

    *outlen = 0;
    if (s->err != 0)
        return s->err;
    if (s->finished)
        return COFFER_ERR_STATE;
    if (outcap < engine_stream_bound(s, 0))
        return COFFER_ERR_INVALID_ARG;
    if (s->sealing)
        pre = stream_flush_pending(s, out);
    if (s->chunked != NULL)
        r = engine_chunked_final(s->chunked, out + pre, outcap - pre, &n);
    else if (s->velero != NULL)
        r = engine_velero_final(s->velero, out + pre, outcap - pre, &n);
    else if (!s->sealing)
        r = stream_passthrough(s, NULL, 0, 1, out, &n);
    if (r != 0)
        return stream_fail(s, r);
    s->finished = 1;
    *outlen = pre + n;
    s->bytes_out += *outlen;
    return 0;
}

int engine_stream_drain(engine_stream *s, uint8_t *out, size_t outcap, size_t *outlen)
{
    int r;
    *outlen = 0;
    if (s->err != 0)
        return s->err;
    if (!s->finished)
        return COFFER_ERR_STATE;
    if (s->velero == NULL)
        return 0;
    if ((r = engine_velero_drain(s->velero, out, outcap, outlen)) != 0)
        return stream_fail(s, r);
    s->bytes_out += *outlen;
    return 0;
}
