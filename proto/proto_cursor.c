/* SPDX-License-Identifier: Apache-2.0 */
/* The bounds-checked read cursor and fixed-capacity writer used by the frame codec. */
#include "proto_cursor.h"

#include "coffer_error.h"

#include <string.h>

void proto_cursor_init(proto_cursor *c, const void *p, size_t len)
{
    c->p = p;
    c->len = p != NULL ? len : 0;
    c->off = 0;
}

size_t proto_cursor_left(const proto_cursor *c)
{
    return c->len - c->off;
}

static int cursor_take(proto_cursor *c, size_t n, const uint8_t **out)
{
    if (proto_cursor_left(c) < n)
        return COFFER_ERR_PROTO_FRAME;
    *out = c->p + c->off;
    c->off += n;
    return 0;
}

static uint64_t load_be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

int proto_cursor_u8(proto_cursor *c, uint8_t *out)
{
    const uint8_t *p;
    int r = cursor_take(c, 1, &p);
    if (r == 0)
        *out = p[0];
    return r;
}

int proto_cursor_u16(proto_cursor *c, uint16_t *out)
{
    const uint8_t *p;
    int r = cursor_take(c, 2, &p);
    if (r == 0)
        *out = (uint16_t)load_be(p, 2);
    return r;
}

int proto_cursor_u32(proto_cursor *c, uint32_t *out)
{
    const uint8_t *p;
    int r = cursor_take(c, 4, &p);
    if (r == 0)
        *out = (uint32_t)load_be(p, 4);
    return r;
}

int proto_cursor_u64(proto_cursor *c, uint64_t *out)
{
    const uint8_t *p;
    int r = cursor_take(c, 8, &p);
    if (r == 0)
        *out = load_be(p, 8);
    return r;
}

int proto_cursor_bytes(proto_cursor *c, size_t n, const uint8_t **out)
{
    return cursor_take(c, n, out);
}

static int cursor_vec(proto_cursor *c, size_t lenbytes, size_t max, const uint8_t **out,
                      size_t *outlen)
{
    size_t start = c->off;
    const uint8_t *p;
    uint64_t n;
    int r = cursor_take(c, lenbytes, &p);

    if (r != 0)
        return r;
    n = load_be(p, lenbytes);
    if (n > max) {
        r = COFFER_ERR_PROTO_TOO_BIG;
        goto out;
    }
    if ((r = cursor_take(c, (size_t)n, out)) != 0)
        goto out;
    *outlen = (size_t)n;
out:
    if (r != 0)
        c->off = start;
    return r;
}

int proto_cursor_vec8(proto_cursor *c, size_t max, const uint8_t **out, size_t *outlen)
{
    return cursor_vec(c, 1, max, out, outlen);
}

int proto_cursor_vec16(proto_cursor *c, size_t max, const uint8_t **out, size_t *outlen)
{
    return cursor_vec(c, 2, max, out, outlen);
}

int proto_cursor_vec32(proto_cursor *c, size_t max, const uint8_t **out, size_t *outlen)
{
    return cursor_vec(c, 4, max, out, outlen);
}

int proto_cursor_end(const proto_cursor *c)
{
    return proto_cursor_left(c) == 0 ? 0 : COFFER_ERR_PROTO_FRAME;
}

void proto_writer_init(proto_writer *w, void *p, size_t cap)
{
    w->p = p;
    w->cap = p != NULL ? cap : 0;
    w->len = 0;
    w->err = 0;
}

static uint8_t *writer_room(proto_writer *w, size_t n)
{
    uint8_t *p;
    if (w->err != 0)
        return NULL;
    if (w->cap - w->len < n) {
        w->err = COFFER_ERR_TOO_LARGE;
        return NULL;
    }
    p = w->p + w->len;
    w->len += n;
    return p;
}

static void store_be(proto_writer *w, uint64_t v, size_t n)
{
    uint8_t *p = writer_room(w, n);
    if (p == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

void proto_writer_u8(proto_writer *w, uint8_t v)
{
    store_be(w, v, 1);
}

void proto_writer_u16(proto_writer *w, uint16_t v)
{
    store_be(w, v, 2);
}

void proto_writer_u32(proto_writer *w, uint32_t v)
{
    store_be(w, v, 4);
}

void proto_writer_u64(proto_writer *w, uint64_t v)
{
    store_be(w, v, 8);
}

void proto_writer_bytes(proto_writer *w, const void *p, size_t n)
{
    uint8_t *dst = writer_room(w, n);
    if (dst != NULL && n > 0)
        memcpy(dst, p, n);
}
