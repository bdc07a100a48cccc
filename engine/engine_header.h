/* SPDX-License-Identifier: Apache-2.0 */
/* The coffer-v1 header: "COFFER" 0x00 0x01 || u32 big-endian length || metadata JSON. */
#ifndef ENGINE_HEADER_H
#define ENGINE_HEADER_H

#include "engine_gcm.h"
#include "engine_metadata.h"

#include <stddef.h>
#include <stdint.h>

#define ENGINE_HEADER_MAGIC_LEN 8
#define ENGINE_HEADER_FIXED     12 /* magic + length */
extern const uint8_t engine_header_magic[ENGINE_HEADER_MAGIC_LEN];

/* 1 if buf (len >= 8) starts with the coffer-v1 magic. */
int engine_header_sniff(const uint8_t *buf, size_t len);

/* Encode metadata text (at most ENGINE_METADATA_MAX bytes) into a new header; free() *out. */
int engine_header_encode(const char *metadata, size_t len, uint8_t **out,
                         size_t *outlen) COFFER_WUR;

/*
 * Reads a header from a stream in pieces. Feed bytes until it returns 1 (complete: *consumed
 * says how many of this call's bytes belonged to the header; the rest are body). Returns 0 when
 * more is needed, COFFER_ERR_BAD_HEADER (wrong magic or version) or COFFER_ERR_TOO_LARGE
 * (declared length above ENGINE_METADATA_MAX) or COFFER_ERR_METADATA (not valid metadata JSON).
 * The length field is checked before anything is allocated.
 */
typedef struct engine_header_reader {
    uint8_t fixed[ENGINE_HEADER_FIXED];
    size_t have;          /* header bytes received */
    size_t total;         /* whole header length once known, else 0 */
    uint8_t *bytes;       /* the whole header (context for the body) once the length is known */
    engine_metadata meta; /* parsed when complete */
    int complete;
    int err; /* the first error; every later feed returns it again */
} engine_header_reader;

void engine_header_reader_init(engine_header_reader *r);
int engine_header_reader_feed(engine_header_reader *r, const uint8_t *in, size_t inlen,
                              size_t *consumed) COFFER_WUR;
void engine_header_reader_clear(engine_header_reader *r);

#endif
