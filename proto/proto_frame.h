/* SPDX-License-Identifier: Apache-2.0 */
/* The cofferd wire protocol: frame layout, limits, and the encoders and parsers of every frame. */
#ifndef PROTO_FRAME_H
#define PROTO_FRAME_H

#include "proto_cursor.h"

#include <stddef.h>
#include <stdint.h>

/*
 * Every frame is an 8-byte header, type(u8) flags(u8, 0) reserved(u16, 0) length(u32 BE), and
 * `length` payload bytes. docs/protocol.md is the normative description; the numbers below are
 * part of the wire protocol: never change them, only append.
 */
#define COFFER_PROTO_VERSION   1u
#define COFFER_PROTO_MAGIC     "COFR"
#define COFFER_FRAME_HEADER    8u
#define COFFER_MAX_FRAME       (128u * 1024u) /* payload bytes of any frame */
#define COFFER_MAX_FORMAT_NAME 32u            /* job: format name */
#define COFFER_MAX_CONTEXT     32000u         /* job: bare Cobblestone context */
#define COFFER_MAX_METADATA    65536u         /* job/result: status metadata JSON */
#define COFFER_MAX_MESSAGE     2048u          /* error: message text */
#define COFFER_MAX_JSON        65536u         /* health/stats reply JSON */
#define COFFER_MAX_FDS         2u             /* descriptors passed with one job */

enum proto_type {
    PROTO_HELLO = 1,
    PROTO_JOB = 2,
    PROTO_DATA = 3,
    PROTO_END = 4,
    PROTO_RESULT = 5,
    PROTO_ERROR = 6,
    PROTO_HEALTH = 7,
    PROTO_STATS = 8,
};

enum proto_op {
    PROTO_OP_ENCRYPT = 1,
    PROTO_OP_DECRYPT = 2,
};

enum proto_input {
    PROTO_INPUT_STREAM = 0, /* data comes in DATA frames and goes back in DATA frames */
    PROTO_INPUT_FDS = 1,    /* two descriptors (input, output) came with the JOB frame */
};

#define PROTO_JOB_FSYNC 0x0001u /* fd jobs: fsync the output before reporting the result */
#define PROTO_JOB_FLAGS 0x0001u /* all defined job flags */

typedef struct proto_header {
    uint8_t type;
    uint32_t len;
} proto_header;

typedef struct proto_hello {
    uint16_t version_min;
    uint16_t version_max;
    uint32_t max_frame;
} proto_hello;

/* A parsed job. Pointers borrow the frame's payload; format is copied and NUL-terminated. */
typedef struct proto_job {
    uint8_t op;
    uint8_t input;
    uint16_t flags;
    char format[COFFER_MAX_FORMAT_NAME + 1]; /* "" = the daemon's default / from metadata */
    const uint8_t *context;
    size_t context_len;
    const char *metadata; /* not NUL-terminated */
    size_t metadata_len;
} proto_job;

typedef struct proto_result {
    uint64_t bytes_in;
    uint64_t bytes_out;
    const char *metadata; /* not NUL-terminated */
    size_t metadata_len;
} proto_result;

typedef struct proto_error {
    int32_t code;        /* a negative COFFER_ERR_* */
    const char *message; /* not NUL-terminated */
    size_t message_len;
} proto_error;

/*
 * Parse a frame header (8 bytes). COFFER_ERR_PROTO_FRAME when flags or reserved are not zero or
 * the type is unknown, COFFER_ERR_PROTO_TOO_BIG when length exceeds COFFER_MAX_FRAME: callers
 * check this before buffering the payload.
 */
int proto_header_parse(const uint8_t *buf, proto_header *h) COFFER_WUR;
void proto_header_put(uint8_t *buf, uint8_t type, uint32_t len);

/*
 * Encoders write one whole frame (header and payload) into buf (cap bytes) and set *n. They
 * return 0, COFFER_ERR_TOO_LARGE (buf too small) or COFFER_ERR_PROTO_TOO_BIG (a field above its
 * limit).
 */
int proto_frame_write(uint8_t *buf, size_t cap, uint8_t type, const void *payload, size_t len,
                      size_t *n) COFFER_WUR;
int proto_hello_write(uint8_t *buf, size_t cap, const proto_hello *h, size_t *n) COFFER_WUR;
int proto_job_write(uint8_t *buf, size_t cap, const proto_job *j, size_t *n) COFFER_WUR;
int proto_result_write(uint8_t *buf, size_t cap, const proto_result *res, size_t *n) COFFER_WUR;
int proto_error_write(uint8_t *buf, size_t cap, int code, const char *msg, size_t *n) COFFER_WUR;
/*
 * The ERROR message proto_error_write sends for msg (NUL-terminated, any bytes): valid UTF-8 of
 * at most COFFER_MAX_MESSAGE bytes, cut only between characters; a byte that is not UTF-8 becomes
 * '?' and a character cut off at msg's end (by an earlier snprintf) is dropped. Writes into dst
 * (COFFER_MAX_MESSAGE bytes, not terminated) and returns the length. Any thread.
 */
size_t proto_message_utf8(char *dst, const char *msg);

/*
 * Parsers take a frame's payload (untrusted). They return 0, COFFER_ERR_PROTO_FRAME (malformed,
 * trailing bytes), COFFER_ERR_PROTO_TOO_BIG (a length above its COFFER_MAX_*),
 * COFFER_ERR_PROTO_VERSION (hello: bad magic or no common version) or COFFER_ERR_PROTO_OP (job:
 * unknown operation, input kind or flag).
 */
int proto_hello_parse(const uint8_t *p, size_t len, proto_hello *h) COFFER_WUR;
/* The version both sides speak (the highest in both ranges), or COFFER_ERR_PROTO_VERSION. */
int proto_hello_negotiate(const proto_hello *peer, uint16_t *version) COFFER_WUR;
int proto_job_parse(const uint8_t *p, size_t len, proto_job *j) COFFER_WUR;
int proto_result_parse(const uint8_t *p, size_t len, proto_result *res) COFFER_WUR;
int proto_error_parse(const uint8_t *p, size_t len, proto_error *e) COFFER_WUR;

/* "hello", "job", ... or "unknown". */
const char *proto_type_name(uint8_t type);

#endif
