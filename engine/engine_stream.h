/* SPDX-License-Identifier: Apache-2.0 */
/* One streaming API over every format: coffer-v1, bare Cobblestone, velero-v1, unencrypted. */
#ifndef ENGINE_STREAM_H
#define ENGINE_STREAM_H

#include "engine_chunked.h"
#include "engine_gcm.h"
#include "engine_header.h"
#include "engine_key.h"

#include <stddef.h>
#include <stdint.h>

typedef enum {
    COFFER_FORMAT_COFFER_V1 = 0,       /* header + Cobblestone-256, context = header bytes */
    COFFER_FORMAT_VELERO_V1 = 1,       /* the Velero prototype's single GCM message */
    COFFER_FORMAT_COBBLESTONE = 2,     /* bare Cobblestone-256 with a caller's context */
    COFFER_FORMAT_COBBLESTONE_128 = 3, /* bare Cobblestone-128 with a caller's context */
    COFFER_FORMAT_NONE = 4,            /* encryption off: bytes pass through */
} coffer_format;

/* "coffer-v1", "velero-v1", "cobblestone", "cobblestone-128", "none". */
const char *engine_format_name(coffer_format f);
int engine_format_parse(const char *name, coffer_format *out) COFFER_WUR;
/* The key rule a format's keys follow. */
engine_key_rule engine_format_key_rule(coffer_format f);

struct engine_stream_params {
    coffer_format format;
    engine_gcm_backend backend; /* ENGINE_GCM_AUTO normally */
    const engine_key *key;      /* not needed for COFFER_FORMAT_NONE; copied */
    const uint8_t *context;     /* bare Cobblestone: the context (may be empty) */
    size_t context_len;
    const char *metadata; /* coffer-v1 seal: the status metadata JSON for the header */
    size_t metadata_len;
    const engine_header_reader *header; /* coffer-v1 open: the complete header already read */
    const char *spool_dir;              /* velero-v1 open: where to spool (NULL: $TMPDIR or /tmp) */
    size_t spool_mem;                   /* velero-v1 open: bytes spooled in memory before a file */
    char *detail; /* optional: receives the sentence explaining a failed _new */
    size_t detail_len;
};

/*
 * A sealing or opening stream. Feed input with engine_stream_update, end it with
 * engine_stream_finish, then call engine_stream_drain until it writes 0 bytes (only velero-v1
 * opening releases its plaintext there, after its tag verified). Output written by update,
 * finish and drain of an opening stream is always authenticated. A stream that failed keeps
 * failing with the same code. engine_stream_detail gives the sentence that goes with the last
 * error (names what was wrong, e.g. which key id the backup needs), or "".
 *
 * coffer-v1 opening checks the header's keyId against the key first, so a wrong key is reported
 * as "encrypted with key X, the key given is Y" (COFFER_ERR_WRONG_KEY, sentence in p->detail)
 * before any work. On failure of a _new function *out is NULL.
 *
 * Pass-through opening (COFFER_FORMAT_NONE) holds the first 8 bytes until they are known not to
 * be coffer-v1's magic ("COFFER" 0x00 0x01); input that starts with it fails COFFER_ERR_FORMAT:
 * an encrypted file is never released as if it were plaintext.
 */
typedef struct engine_stream engine_stream;

int engine_stream_seal_new(engine_stream **out, const struct engine_stream_params *p) COFFER_WUR;
int engine_stream_open_new(engine_stream **out, const struct engine_stream_params *p) COFFER_WUR;
void engine_stream_free(engine_stream *s);

/* The most bytes update (inlen input bytes) or finish (inlen 0) may write. */
size_t engine_stream_bound(const engine_stream *s, size_t inlen);
int engine_stream_update(engine_stream *s, const uint8_t *in, size_t inlen, uint8_t *out,
                         size_t outcap, size_t *outlen) COFFER_WUR;
/*
 * engine_stream_update, with the run of whole chunks cut into spans for other threads (see
 * engine_chunked_update_spans): chunked formats only; velero-v1 and pass-through make no spans.
 * Run every span (engine_span_run, any thread), then engine_stream_spans_join before using out
 * or calling anything else on s; a span that failed fails s with a sentence as update would.
 */
int engine_stream_update_spans(engine_stream *s, const uint8_t *in, size_t inlen, uint8_t *out,
                               size_t outcap, size_t *outlen, engine_span *spans, size_t maxspans,
                               size_t *nspans) COFFER_WUR;
int engine_stream_spans_join(engine_stream *s, engine_span *spans, size_t nspans) COFFER_WUR;
int engine_stream_finish(engine_stream *s, uint8_t *out, size_t outcap, size_t *outlen) COFFER_WUR;
int engine_stream_drain(engine_stream *s, uint8_t *out, size_t outcap, size_t *outlen) COFFER_WUR;

const char *engine_stream_detail(const engine_stream *s);
uint64_t engine_stream_bytes_in(const engine_stream *s);
uint64_t engine_stream_bytes_out(const engine_stream *s);

#endif
