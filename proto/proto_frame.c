/* SPDX-License-Identifier: Apache-2.0 */
/* Encoders and parsers of the cofferd frames; parsers read only through proto_cursor. */
#include "proto_frame.h"

#include "coffer_error.h"

#include <string.h>

int proto_header_parse(const uint8_t *buf, proto_header *h)
{
    proto_cursor c;
    uint8_t type = 0, flags = 0;
    uint16_t reserved = 0;
    uint32_t len = 0;
    int r;

    proto_cursor_init(&c, buf, COFFER_FRAME_HEADER);
    if ((r = proto_cursor_u8(&c, &type)) != 0 || (r = proto_cursor_u8(&c, &flags)) != 0 ||
        (r = proto_cursor_u16(&c, &reserved)) != 0 || (r = proto_cursor_u32(&c, &len)) != 0)
        return r;
    if (flags != 0 || reserved != 0 || type < PROTO_HELLO || type > PROTO_STATS)
        return COFFER_ERR_PROTO_FRAME;
    if (len > COFFER_MAX_FRAME)
        return COFFER_ERR_PROTO_TOO_BIG;
    h->type = type;
    h->len = len;
    return 0;
}

void proto_header_put(uint8_t *buf, uint8_t type, uint32_t len)
{
    proto_writer w;
    proto_writer_init(&w, buf, COFFER_FRAME_HEADER);
    proto_writer_u8(&w, type);
    proto_writer_u8(&w, 0);
    proto_writer_u16(&w, 0);
    proto_writer_u32(&w, len);
}

/* Close a frame whose payload was written after an 8-byte gap at the writer's start. */
static int frame_finish(proto_writer *w, uint8_t type, size_t *n)
{
    if (w->err != 0)
        return w->err;
    if (w->len - COFFER_FRAME_HEADER > COFFER_MAX_FRAME)
        return COFFER_ERR_PROTO_TOO_BIG;
    proto_header_put(w->p, type, (uint32_t)(w->len - COFFER_FRAME_HEADER));
    *n = w->len;
    return 0;
}

static void frame_start(proto_writer *w, uint8_t *buf, size_t cap)
{
    proto_writer_init(w, buf, cap);
    proto_writer_bytes(w, "\0\0\0\0\0\0\0\0", COFFER_FRAME_HEADER);
}

int proto_frame_write(uint8_t *buf, size_t cap, uint8_t type, const void *payload, size_t len,
                      size_t *n)
{
    proto_writer w;
    if (len > COFFER_MAX_FRAME)
        return COFFER_ERR_PROTO_TOO_BIG;
    frame_start(&w, buf, cap);
    proto_writer_bytes(&w, payload, len);
    return frame_finish(&w, type, n);
}

int proto_hello_write(uint8_t *buf, size_t cap, const proto_hello *h, size_t *n)
{
    proto_writer w;
    frame_start(&w, buf, cap);
    proto_writer_bytes(&w, COFFER_PROTO_MAGIC, 4);
    proto_writer_u16(&w, h->version_min);
    proto_writer_u16(&w, h->version_max);
    proto_writer_u32(&w, h->max_frame);
    return frame_finish(&w, PROTO_HELLO, n);
}

int proto_hello_parse(const uint8_t *p, size_t len, proto_hello *h)
{
    proto_cursor c;
    const uint8_t *magic = NULL;
    int r;

    proto_cursor_init(&c, p, len);
    if ((r = proto_cursor_bytes(&c, 4, &magic)) != 0)
        return r;
    if (memcmp(magic, COFFER_PROTO_MAGIC, 4) != 0)
        return COFFER_ERR_PROTO_VERSION;
    if ((r = proto_cursor_u16(&c, &h->version_min)) != 0 ||
        (r = proto_cursor_u16(&c, &h->version_max)) != 0 ||
        (r = proto_cursor_u32(&c, &h->max_frame)) != 0)
        return r;
    return proto_cursor_end(&c);
}

int proto_hello_negotiate(const proto_hello *peer, uint16_t *version)
{
    if (peer->version_min > peer->version_max || peer->version_min > COFFER_PROTO_VERSION ||
        peer->version_max < 1)
        return COFFER_ERR_PROTO_VERSION;
    *version = peer->version_max < COFFER_PROTO_VERSION ? peer->version_max
                                                        : (uint16_t)COFFER_PROTO_VERSION;
    return 0;
}

int proto_job_write(uint8_t *buf, size_t cap, const proto_job *j, size_t *n)
{
    proto_writer w;
    size_t flen = strnlen(j->format, sizeof(j->format));

    if (flen > COFFER_MAX_FORMAT_NAME || j->context_len > COFFER_MAX_CONTEXT ||
        j->metadata_len > COFFER_MAX_METADATA)
        return COFFER_ERR_PROTO_TOO_BIG;
    frame_start(&w, buf, cap);
    proto_writer_u8(&w, j->op);
    proto_writer_u8(&w, j->input);
    proto_writer_u16(&w, j->flags);
    proto_writer_u8(&w, (uint8_t)flen);
    proto_writer_bytes(&w, j->format, flen);
    proto_writer_u16(&w, (uint16_t)j->context_len);
    proto_writer_bytes(&w, j->context, j->context_len);
    proto_writer_u32(&w, (uint32_t)j->metadata_len);
    proto_writer_bytes(&w, j->metadata, j->metadata_len);
    return frame_finish(&w, PROTO_JOB, n);
}

int proto_job_parse(const uint8_t *p, size_t len, proto_job *j)
{
    proto_cursor c;
    const uint8_t *fmt = NULL, *meta = NULL;
    size_t fmtlen = 0;
    int r;

    memset(j, 0, sizeof(*j));
    proto_cursor_init(&c, p, len);
    if ((r = proto_cursor_u8(&c, &j->op)) != 0 || (r = proto_cursor_u8(&c, &j->input)) != 0 ||
        (r = proto_cursor_u16(&c, &j->flags)) != 0 ||
        (r = proto_cursor_vec8(&c, COFFER_MAX_FORMAT_NAME, &fmt, &fmtlen)) != 0 ||
        (r = proto_cursor_vec16(&c, COFFER_MAX_CONTEXT, &j->context, &j->context_len)) != 0 ||
        (r = proto_cursor_vec32(&c, COFFER_MAX_METADATA, &meta, &j->metadata_len)) != 0 ||
        (r = proto_cursor_end(&c)) != 0)
        return r;
    if (j->op != PROTO_OP_ENCRYPT && j->op != PROTO_OP_DECRYPT)
        return COFFER_ERR_PROTO_OP;
    if (j->input != PROTO_INPUT_STREAM && j->input != PROTO_INPUT_FDS)
        return COFFER_ERR_PROTO_OP;
    if ((j->flags & ~PROTO_JOB_FLAGS) != 0)
        return COFFER_ERR_PROTO_OP;
    for (size_t i = 0; i < fmtlen; i++) {
        /* format names are lowercase ASCII letters, digits and '-' */
        uint8_t ch = fmt[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-'))
            return COFFER_ERR_PROTO_FRAME;
    }
    if (fmtlen > 0)
        memcpy(j->format, fmt, fmtlen);
    j->format[fmtlen] = '\0';
    j->metadata = (const char *)meta;
    return 0;
}

int proto_result_write(uint8_t *buf, size_t cap, const proto_result *res, size_t *n)
{
    proto_writer w;
    if (res->metadata_len > COFFER_MAX_METADATA)
        return COFFER_ERR_PROTO_TOO_BIG;
    frame_start(&w, buf, cap);
    proto_writer_u64(&w, res->bytes_in);
    proto_writer_u64(&w, res->bytes_out);
    proto_writer_u32(&w, (uint32_t)res->metadata_len);
    proto_writer_bytes(&w, res->metadata, res->metadata_len);
    return frame_finish(&w, PROTO_RESULT, n);
}

int proto_result_parse(const uint8_t *p, size_t len, proto_result *res)
{
    proto_cursor c;
    const uint8_t *meta = NULL;
    int r;

    proto_cursor_init(&c, p, len);
    if ((r = proto_cursor_u64(&c, &res->bytes_in)) != 0 ||
        (r = proto_cursor_u64(&c, &res->bytes_out)) != 0 ||
        (r = proto_cursor_vec32(&c, COFFER_MAX_METADATA, &meta, &res->metadata_len)) != 0 ||
        (r = proto_cursor_end(&c)) != 0)
        return r;
    res->metadata = (const char *)meta;
    return 0;
}

/* Length of the well-formed UTF-8 sequence at s (n bytes left), or 0 (RFC 3629, Table 3-7). */
static size_t utf8_seq(const uint8_t *s, size_t n)
{
    uint8_t c = s[0], lo = 0x80, hi = 0xBF;
    size_t len;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4;
    else
        return 0;
    if (c == 0xE0)
        lo = 0xA0; /* no overlong forms */
    else if (c == 0xED)
        hi = 0x9F; /* no surrogates */
    else if (c == 0xF0)
        lo = 0x90;
    else if (c == 0xF4)
        hi = 0x8F; /* at most U+10FFFF */
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return len;
}

size_t proto_message_utf8(char *dst, const char *msg)
{
    const uint8_t *s = (const uint8_t *)(msg != NULL ? msg : "");
    size_t left = strlen((const char *)s), out = 0;

    while (left > 0) {
        size_t k = utf8_seq(s, left);
        if (k == 0 && left < 4 && s[0] >= 0xC2 && s[0] <= 0xF4)
            break; /* a character cut at the end of msg (an earlier truncation): drop it */
        if (out + (k != 0 ? k : 1) > COFFER_MAX_MESSAGE)
            break; /* never cut inside a character */
        if (k == 0) {
            dst[out++] = '?'; /* not UTF-8 */
            k = 1;
        } else {
            memcpy(dst + out, s, k);
            out += k;
        }
        s += k;
        left -= k;
    }
    return out;
}

int proto_error_write(uint8_t *buf, size_t cap, int code, const char *msg, size_t *n)
{
    proto_writer w;
    char text[COFFER_MAX_MESSAGE];
    size_t mlen = proto_message_utf8(text, msg); /* messages are for people: cut, never fail */

    frame_start(&w, buf, cap);
    proto_writer_u32(&w, (uint32_t)code);
    proto_writer_u16(&w, (uint16_t)mlen);
    proto_writer_bytes(&w, text, mlen);
    return frame_finish(&w, PROTO_ERROR, n);
}

int proto_error_parse(const uint8_t *p, size_t len, proto_error *e)
{
    proto_cursor c;
    const uint8_t *msg = NULL;
    uint32_t code = 0;
    int r;

    proto_cursor_init(&c, p, len);
    if ((r = proto_cursor_u32(&c, &code)) != 0 ||
        (r = proto_cursor_vec16(&c, COFFER_MAX_MESSAGE, &msg, &e->message_len)) != 0 ||
        (r = proto_cursor_end(&c)) != 0)
        return r;
    e->code = (int32_t)code;
    if (e->code >= 0)
        return COFFER_ERR_PROTO_FRAME;
    e->message = (const char *)msg;
    return 0;
}

const char *proto_type_name(uint8_t type)
{
    switch (type) {
    case PROTO_HELLO:
        return "hello";
    case PROTO_JOB:
        return "job";
    case PROTO_DATA:
        return "data";
    case PROTO_END:
        return "end";
    case PROTO_RESULT:
        return "result";
    case PROTO_ERROR:
        return "error";
    case PROTO_HEALTH:
        return "health";
    case PROTO_STATS:
        return "stats";
    default:
        return "unknown";
    }
}
