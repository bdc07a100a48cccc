/* SPDX-License-Identifier: Apache-2.0 */
/* A read cursor that cannot overrun and a fixed-capacity writer, for parsing and building frames.
 */
#ifndef PROTO_CURSOR_H
#define PROTO_CURSOR_H

#include "coffer_error.h"

#include <stddef.h>
#include <stdint.h>

/*
 * A cursor borrows len bytes at p. Every read checks what is left first; on failure it returns
 * COFFER_ERR_PROTO_FRAME (not enough bytes) or COFFER_ERR_PROTO_TOO_BIG (a length above its
 * limit) and leaves the cursor where it was. Integers are big-endian.
 */
typedef struct proto_cursor {
    const uint8_t *p;
    size_t len;
    size_t off;
} proto_cursor;

void proto_cursor_init(proto_cursor *c, const void *p, size_t len);
size_t proto_cursor_left(const proto_cursor *c);
int proto_cursor_u8(proto_cursor *c, uint8_t *out) COFFER_WUR;
int proto_cursor_u16(proto_cursor *c, uint16_t *out) COFFER_WUR;
int proto_cursor_u32(proto_cursor *c, uint32_t *out) COFFER_WUR;
int proto_cursor_u64(proto_cursor *c, uint64_t *out) COFFER_WUR;
/* n bytes, borrowed (*out points into the cursor's buffer). */
int proto_cursor_bytes(proto_cursor *c, size_t n, const uint8_t **out) COFFER_WUR;
/* A u8/u16/u32 length followed by that many bytes; the length is checked against max first. */
int proto_cursor_vec8(proto_cursor *c, size_t max, const uint8_t **out, size_t *outlen) COFFER_WUR;
int proto_cursor_vec16(proto_cursor *c, size_t max, const uint8_t **out, size_t *outlen) COFFER_WUR;
int proto_cursor_vec32(proto_cursor *c, size_t max, const uint8_t **out, size_t *outlen) COFFER_WUR;
/* 0 if nothing is left, else COFFER_ERR_PROTO_FRAME (trailing bytes). */
int proto_cursor_end(const proto_cursor *c) COFFER_WUR;

/*
 * A writer fills a caller's buffer of cap bytes and never allocates. The first write that does
 * not fit sets a sticky error (COFFER_ERR_TOO_LARGE) and every later write does nothing.
 */
typedef struct proto_writer {
    uint8_t *p;
    size_t cap;
    size_t len;
    int err;
} proto_writer;

void proto_writer_init(proto_writer *w, void *p, size_t cap);
void proto_writer_u8(proto_writer *w, uint8_t v);
void proto_writer_u16(proto_writer *w, uint16_t v);
void proto_writer_u32(proto_writer *w, uint32_t v);
void proto_writer_u64(proto_writer *w, uint64_t v);
void proto_writer_bytes(proto_writer *w, const void *p, size_t n);

#endif
