/* SPDX-License-Identifier: Apache-2.0 */
/* c2sp.org/chunked-encryption (Cobblestone-128/-256): push-style streaming seal and open. */
#ifndef ENGINE_CHUNKED_H
#define ENGINE_CHUNKED_H

#include "engine_gcm.h"

#include <stddef.h>
#include <stdint.h>

#define ENGINE_CHUNKED_CHUNK       16384u /* plaintext bytes in every chunk but the last */
#define ENGINE_CHUNKED_TAG         16u
#define ENGINE_CHUNKED_SALT        24u
#define ENGINE_CHUNKED_COMMIT      32u
#define ENGINE_CHUNKED_HEADER      (ENGINE_CHUNKED_SALT + ENGINE_CHUNKED_COMMIT) /* 56 bytes */
#define ENGINE_CHUNKED_MAX_CHUNKS  (1ull << 38)
#define ENGINE_CHUNKED_MAX_CONTEXT 32000u /* OpenSSL 3.0 HKDF caps info at 32 KiB */

typedef enum {
    ENGINE_CHUNKED_AES_128_GCM = 16, /* Cobblestone-128: 16-byte input key */
    ENGINE_CHUNKED_AES_256_GCM = 32, /* Cobblestone-256: 32-byte input key */
} engine_chunked_aead;

/*
 * One message, sealed or opened in pieces of any size. The object (derived key, base nonce and a
 * one-chunk buffer that may hold plaintext) lives in locked memory and is wiped when freed.
 *
 * Sealing writes salt || commitment || chunks. Opening checks the commitment as soon as the first
 * 56 bytes are in (COFFER_ERR_WRONG_KEY before any chunk is decrypted), then releases a chunk's
 * plaintext only after its tag verified. Once any call fails, the object keeps returning that
 * error. Errors: WRONG_KEY (commitment), TAMPERED (a chunk's tag), TRUNCATED (the stream ends
 * inside the header or a chunk, or without its short final chunk), TRAILING (bytes after the
 * short final chunk), TOO_LARGE (more than 2^38 chunks), KEY_SIZE.
 */
typedef struct engine_chunked engine_chunked;

/*
 * ikm: the input key (16 bytes for AES-128-GCM, 32 for AES-256-GCM; anything else is
 * COFFER_ERR_KEY_SIZE). context: bound into the key derivation, may be empty (at most
 * ENGINE_CHUNKED_MAX_CONTEXT bytes). salt: NULL for a fresh random salt (always, except in tests
 * that replay known answers).
 */
int engine_chunked_seal_new(engine_chunked **out, engine_chunked_aead aead,
                            engine_gcm_backend backend, const uint8_t *ikm, size_t ikmlen,
                            const uint8_t *context, size_t contextlen,
                            const uint8_t *salt) COFFER_WUR;
int engine_chunked_open_new(engine_chunked **out, engine_chunked_aead aead,
                            engine_gcm_backend backend, const uint8_t *ikm, size_t ikmlen,
                            const uint8_t *context, size_t contextlen) COFFER_WUR;
void engine_chunked_free(engine_chunked *c);

/* The most bytes one engine_chunked_update or _final call with inlen input bytes can write. */
size_t engine_chunked_bound(size_t inlen);

/*
 * Feed inlen bytes; writes *outlen bytes (at most engine_chunked_bound(inlen)) to out, which
 * must not overlap in. For opening, everything written is authenticated plaintext.
 */
int engine_chunked_update(engine_chunked *c, const uint8_t *in, size_t inlen, uint8_t *out,
                          size_t outcap, size_t *outlen) COFFER_WUR;

/*
 * End of input. Sealing writes the short final chunk. Opening verifies and writes the final
 * chunk's plaintext, or fails with TRUNCATED/TRAILING/TAMPERED. Only a 0 return means the whole
 * message was authentic and complete.
 */
int engine_chunked_final(engine_chunked *c, uint8_t *out, size_t outcap, size_t *outlen) COFFER_WUR;

/*
 * Spreading one message over threads. engine_chunked_update_spans is engine_chunked_update,
 * except that the run of whole chunks it meets is not sealed or opened in the call: it is cut
 * into at most maxspans spans of whole chunks (each at least ENGINE_SPAN_MIN_CHUNKS; a shorter
 * run is done in the call, as update does). A span knows its chunk indices and where its output
 * goes in out (the place update would have written it; *outlen counts it). Run every span with
 * engine_span_run, on any threads at once; then call engine_chunked_spans_join on the caller's
 * thread before using out and before any other call on c. If a span failed, join fails c with
 * its error (sticky) and wipes what every span wrote, so no plaintext of this call is released.
 */
#define ENGINE_SPAN_MIN_CHUNKS 2u

typedef struct engine_span {
    const engine_chunked *c;
    uint64_t first; /* index of its first chunk */
    const uint8_t *in;
    size_t inlen; /* whole chunks */
    uint8_t *out;
    size_t outlen; /* bytes it writes to out */
    size_t done;   /* after engine_span_run: plaintext bytes sealed or authenticated */
    int err;       /* after engine_span_run: 0, TAMPERED, NOMEM */
} engine_span;

int engine_chunked_update_spans(engine_chunked *c, const uint8_t *in, size_t inlen, uint8_t *out,
                                size_t outcap, size_t *outlen, engine_span *spans, size_t maxspans,
                                size_t *nspans) COFFER_WUR;
/* Thread-safe against other spans of the same message; touches only its own output. */
void engine_span_run(engine_span *sp);
int engine_chunked_spans_join(engine_chunked *c, engine_span *spans, size_t nspans) COFFER_WUR;

/* Plaintext bytes sealed or released so far. */
uint64_t engine_chunked_plaintext_bytes(const engine_chunked *c);

#endif
