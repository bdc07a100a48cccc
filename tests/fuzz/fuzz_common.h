/* SPDX-License-Identifier: Apache-2.0 */
/* What coffer's fuzz targets and their corpus generator share: fixed keys, input layout, checks. */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include "engine_metadata.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/*
 * FUZZ_CHECK states an invariant of the code under test. When it does not hold the target prints
 * it and aborts, and libFuzzer saves the input as a crash-* reproducer.
 */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant does not hold: %s\n", __FILE__, __LINE__, #cond);    \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/*
 * COFFER_FUZZ_STRICT (a compile definition) adds checks of promises the headers make that are
 * known to be broken at the time of writing (docs/fuzzing.md, "Known findings"). Off by default
 * so that a known bug does not stop the fuzzer from finding new ones.
 */
#ifndef COFFER_FUZZ_STRICT
#define COFFER_FUZZ_STRICT 0
#endif

/* The fixed input keys the decryptor targets open with and make_corpus seals with. */
extern const uint8_t fuzz_key16[16];
extern const uint8_t fuzz_key24[24];
extern const uint8_t fuzz_key32[32];
/* The fixed context of fuzz_chunked_open (bare Cobblestone). */
extern const uint8_t fuzz_context[];
extern const size_t fuzz_context_len;

/*
 * The decryptor targets' input: FUZZ_PREFIX bytes of options, then the ciphertext.
 *   byte 0: flags (per target, below); bytes 1-3: the seed of the piece sizes (0: one piece).
 */
#define FUZZ_PREFIX 4u

/* fuzz_chunked_open flags */
#define FUZZ_CHUNKED_AES128 0x01u /* Cobblestone-128 with fuzz_key16, else -256 with fuzz_key32 */

/* fuzz_stream_open flags */
#define FUZZ_STREAM_VELERO     0x01u             /* velero-v1, else coffer-v1 (always fuzz_key32) */
#define FUZZ_STREAM_KEYSIZE(f) (((f) >> 1) & 3u) /* velero-v1 key: 0/3 -> 32, 1 -> 16, 2 -> 24 */
#define FUZZ_STREAM_SPOOL(f)   (((f) >> 3) & 3u) /* velero-v1 spool_mem: 1, 64, 4096, 65536 */
#define FUZZ_STREAM_OPENSSL    0x20u /* the OpenSSL backend, else ipsec-mb when the CPU has it */

/*
 * Piece sizes for feeding a stream, drawn from a seed so that the fuzzer chooses them: zero, one,
 * small, around the header and chunk sizes, large, or all that is left. Never two empty pieces in
 * a row, so feeding always ends.
 */
struct fuzz_pieces {
    uint32_t state; /* 0: every piece is all that is left */
    int last_empty;
};

void fuzz_pieces_init(struct fuzz_pieces *p, const uint8_t seed[3]);
size_t fuzz_pieces_next(struct fuzz_pieces *p, size_t left);

/*
 * Output buffers with a guard zone after cap bytes, for writes that bypass ASan (ipsec-mb and
 * OpenSSL are not instrumented). fuzz_buf_free aborts when the guard was touched.
 */
uint8_t *fuzz_buf_new(size_t cap);
void fuzz_buf_free(uint8_t *buf, size_t cap);

/* A growing byte buffer for the plaintext a target has seen released. */
struct fuzz_bytes {
    uint8_t *p;
    size_t len, cap;
};
void fuzz_bytes_add(struct fuzz_bytes *b, const uint8_t *p, size_t n);
void fuzz_bytes_free(struct fuzz_bytes *b);

/*
 * The invariants of a successfully parsed engine_metadata, including that dumping it and parsing
 * the dump gives the same fields.
 */
void fuzz_metadata_check(const engine_metadata *m);

#endif
