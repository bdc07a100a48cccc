/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the cofferd frame parsers over a stream of frames as a client would send
 * them, with every parsed frame re-encoded to the same bytes. */
#include "coffer_error.h"
#include "fuzz_common.h"
#include "proto_frame.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int parse_error(int r)
{
    return r == COFFER_ERR_PROTO_FRAME || r == COFFER_ERR_PROTO_TOO_BIG ||
           r == COFFER_ERR_PROTO_VERSION || r == COFFER_ERR_PROTO_OP;
}

static int within(const void *p, size_t n, const uint8_t *buf, size_t len)
{
    const uint8_t *q = p;
    return n == 0 || (q >= buf && n <= len && q - buf <= (ptrdiff_t)(len - n));
}

/* The encoder must give back exactly the frame, and refuse a buffer one byte short. */
static void check_encoding(int r, uint8_t *out, size_t n, const uint8_t *frame, size_t framelen)
{
    FUZZ_CHECK(r == 0);
    FUZZ_CHECK(n == framelen && memcmp(out, frame, framelen) == 0);
}

static void check_frame(uint8_t type, const uint8_t *frame, size_t framelen)
{
    const uint8_t *p = frame + COFFER_FRAME_HEADER;
    size_t len = framelen - COFFER_FRAME_HEADER;
    size_t cap = framelen, n = 0;
    uint8_t *out = fuzz_buf_new(cap);
    uint8_t *shortbuf = fuzz_buf_new(cap - 1);
    proto_hello h;
    proto_job j;
    proto_result res;
    proto_error e;
    int r;

    /* every parser must be safe on every payload, whatever the frame's type */
    r = proto_hello_parse(p, len, &h);
    FUZZ_CHECK(r == 0 || parse_error(r));
    if (r == 0 && type == PROTO_HELLO) {
        uint16_t v = 0;
        int nr = proto_hello_negotiate(&h, &v);
        FUZZ_CHECK(nr == 0 || nr == COFFER_ERR_PROTO_VERSION);
        if (nr == 0)
            FUZZ_CHECK(v >= h.version_min && v <= h.version_max && v >= 1 &&
                       v <= COFFER_PROTO_VERSION);
        check_encoding(proto_hello_write(out, cap, &h, &n), out, n, frame, framelen);
        FUZZ_CHECK(proto_hello_write(shortbuf, cap - 1, &h, &n) == COFFER_ERR_TOO_LARGE);
    }

    r = proto_job_parse(p, len, &j);
    FUZZ_CHECK(r == 0 || parse_error(r));
    if (r == 0) {
        size_t flen = strnlen(j.format, sizeof(j.format));
        FUZZ_CHECK(flen <= COFFER_MAX_FORMAT_NAME);
        FUZZ_CHECK(strspn(j.format, "abcdefghijklmnopqrstuvwxyz0123456789-") == flen);
        FUZZ_CHECK(j.op == PROTO_OP_ENCRYPT || j.op == PROTO_OP_DECRYPT);
        FUZZ_CHECK(j.input == PROTO_INPUT_STREAM || j.input == PROTO_INPUT_FDS);
        FUZZ_CHECK((j.flags & ~PROTO_JOB_FLAGS) == 0);
        FUZZ_CHECK(j.context_len <= COFFER_MAX_CONTEXT && j.metadata_len <= COFFER_MAX_METADATA);
        FUZZ_CHECK(within(j.context, j.context_len, p, len));
        FUZZ_CHECK(within(j.metadata, j.metadata_len, p, len));
        if (type == PROTO_JOB) {
            check_encoding(proto_job_write(out, cap, &j, &n), out, n, frame, framelen);
            FUZZ_CHECK(proto_job_write(shortbuf, cap - 1, &j, &n) == COFFER_ERR_TOO_LARGE);
        }
    }

    memset(&res, 0, sizeof(res));
    r = proto_result_parse(p, len, &res);
    FUZZ_CHECK(r == 0 || parse_error(r));
    if (r == 0) {
        FUZZ_CHECK(res.metadata_len <= COFFER_MAX_METADATA);
        FUZZ_CHECK(within(res.metadata, res.metadata_len, p, len));
        if (type == PROTO_RESULT) {
            check_encoding(proto_result_write(out, cap, &res, &n), out, n, frame, framelen);
            FUZZ_CHECK(proto_result_write(shortbuf, cap - 1, &res, &n) == COFFER_ERR_TOO_LARGE);
        }
    }

    memset(&e, 0, sizeof(e));
    r = proto_error_parse(p, len, &e);
    FUZZ_CHECK(r == 0 || parse_error(r));
    if (r == 0) {
        FUZZ_CHECK(e.code < 0);
        FUZZ_CHECK(e.message_len <= COFFER_MAX_MESSAGE);
        FUZZ_CHECK(within(e.message, e.message_len, p, len));
        /* the writer takes a C string: only messages without a NUL can come back the same */
        if (type == PROTO_ERROR && memchr(e.message, '\0', e.message_len) == NULL) {
            char *msg = malloc(e.message_len + 1);
            FUZZ_CHECK(msg != NULL);
            memcpy(msg, e.message, e.message_len);
            msg[e.message_len] = '\0';
            char clean[COFFER_MAX_MESSAGE];
            size_t cl = proto_message_utf8(clean, msg);
            /* a valid UTF-8 message comes back the same; any other is sent as UTF-8 */
            FUZZ_CHECK(cl <= e.message_len);
            if (cl == e.message_len && memcmp(clean, e.message, cl) == 0) {
                check_encoding(proto_error_write(out, cap, e.code, msg, &n), out, n, frame,
                               framelen);
                FUZZ_CHECK(proto_error_write(shortbuf, cap - 1, e.code, msg, &n) ==
                           COFFER_ERR_TOO_LARGE);
            } else {
                FUZZ_CHECK(proto_error_write(out, cap, e.code, msg, &n) == 0);
                FUZZ_CHECK(n == COFFER_FRAME_HEADER + 6 + cl);
                FUZZ_CHECK(memcmp(out + COFFER_FRAME_HEADER + 6, clean, cl) == 0);
            }
            free(msg);
        }
    }

    /* any frame re-frames to itself */
    check_encoding(proto_frame_write(out, cap, type, p, len, &n), out, n, frame, framelen);
    FUZZ_CHECK(proto_type_name(type) != NULL && strcmp(proto_type_name(type), "unknown") != 0);

    fuzz_buf_free(shortbuf, cap - 1);
    fuzz_buf_free(out, cap);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size copy, so that reading past the input is caught */
    uint8_t *buf = malloc(size > 0 ? size : 1);
    size_t off = 0;

    FUZZ_CHECK(buf != NULL);
    if (size > 0)
        memcpy(buf, data, size);
    /* frames one after another, as the daemon reads them from a connection */
    while (size - off >= COFFER_FRAME_HEADER) {
        proto_header h = {0, 0};
        int r = proto_header_parse(buf + off, &h);
        if (r != 0) {
            FUZZ_CHECK(r == COFFER_ERR_PROTO_FRAME || r == COFFER_ERR_PROTO_TOO_BIG);
            break;
        }
        FUZZ_CHECK(h.type >= PROTO_HELLO && h.type <= PROTO_STATS);
        FUZZ_CHECK(h.len <= COFFER_MAX_FRAME); /* checked before anything is buffered */
        if (h.len > size - off - COFFER_FRAME_HEADER)
            break; /* the connection ended inside the payload */
        check_frame(h.type, buf + off, COFFER_FRAME_HEADER + h.len);
        off += COFFER_FRAME_HEADER + h.len;
    }
    free(buf);
    return 0;
}
