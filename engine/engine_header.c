/* SPDX-License-Identifier: Apache-2.0 */
/* Encode and incrementally read the coffer-v1 header; lengths checked before allocation. */
#include "engine_header.h"

#include "coffer_error.h"

#include <stdlib.h>
#include <string.h>

const uint8_t engine_header_magic[ENGINE_HEADER_MAGIC_LEN] = {'C', 'O', 'F',  'F',
                                                              'E', 'R', 0x00, 0x01};

int engine_header_sniff(const uint8_t *buf, size_t len)
{
    return len >= ENGINE_HEADER_MAGIC_LEN &&
           memcmp(buf, engine_header_magic, ENGINE_HEADER_MAGIC_LEN) == 0;
}

int engine_header_encode(const char *metadata, size_t len, uint8_t **out, size_t *outlen)
{
    uint8_t *h;
    *out = NULL;
    *outlen = 0;
    if (len > ENGINE_METADATA_MAX)
        return COFFER_ERR_TOO_LARGE;
    if ((h = malloc(ENGINE_HEADER_FIXED + len)) == NULL)
        return COFFER_ERR_NOMEM;
    memcpy(h, engine_header_magic, ENGINE_HEADER_MAGIC_LEN);
    h[8] = (uint8_t)(len >> 24);
    h[9] = (uint8_t)(len >> 16);
    h[10] = (uint8_t)(len >> 8);
    h[11] = (uint8_t)len;
    memcpy(h + ENGINE_HEADER_FIXED, metadata, len);
    *out = h;
    *outlen = ENGINE_HEADER_FIXED + len;
    return 0;
}

void engine_header_reader_init(engine_header_reader *r)
{
    memset(r, 0, sizeof(*r));
}

void engine_header_reader_clear(engine_header_reader *r)
{
    free(r->bytes);
    engine_metadata_clear(&r->meta);
    memset(r, 0, sizeof(*r));
}

/* Validate the fixed 12 bytes and allocate room for the whole header. */
static int header_fixed_done(engine_header_reader *r)
{
    /* "COFFER" 0x00 is the magic; the next byte is the version */
    if (memcmp(r->fixed, engine_header_magic, ENGINE_HEADER_MAGIC_LEN - 1) != 0)
        return COFFER_ERR_BAD_HEADER;
    if (r->fixed[ENGINE_HEADER_MAGIC_LEN - 1] != engine_header_magic[ENGINE_HEADER_MAGIC_LEN - 1])
        return COFFER_ERR_BAD_HEADER; /* a future version */
    size_t len = (size_t)r->fixed[8] << 24 | (size_t)r->fixed[9] << 16 | (size_t)r->fixed[10] << 8 |
                 r->fixed[11];
    if (len > ENGINE_METADATA_MAX)
        return COFFER_ERR_TOO_LARGE;
    r->total = ENGINE_HEADER_FIXED + len;
    if ((r->bytes = malloc(r->total)) == NULL)
        return COFFER_ERR_NOMEM;
    memcpy(r->bytes, r->fixed, ENGINE_HEADER_FIXED);
    return 0;
}

static int header_reader_feed(engine_header_reader *r, const uint8_t *in, size_t inlen,
                              size_t *consumed);

int engine_header_reader_feed(engine_header_reader *r, const uint8_t *in, size_t inlen,
                              size_t *consumed)
{
    int ret;
    *consumed = 0;
    if (r->err != 0)
        return r->err;
    ret = header_reader_feed(r, in, inlen, consumed);
    if (ret < 0)
        r->err = ret;
    return ret;
}

static int header_reader_feed(engine_header_reader *r, const uint8_t *in, size_t inlen,
                              size_t *consumed)
{
    size_t used = 0;
    int ret;

    *consumed = 0;
    if (r->complete)
        return 1;
    if (r->have < ENGINE_HEADER_FIXED) {
        size_t take = ENGINE_HEADER_FIXED - r->have < inlen ? ENGINE_HEADER_FIXED - r->have : inlen;
        memcpy(r->fixed + r->have, in, take);
        r->have += take;
        used += take;
        /* reject a wrong magic as early as its bytes arrive */
        size_t check =
            r->have < ENGINE_HEADER_MAGIC_LEN - 1 ? r->have : ENGINE_HEADER_MAGIC_LEN - 1;
        if (memcmp(r->fixed, engine_header_magic, check) != 0)
            return COFFER_ERR_BAD_HEADER;
        if (r->have < ENGINE_HEADER_FIXED) {
            *consumed = used;
            return 0;
        }
        if ((ret = header_fixed_done(r)) != 0)
            return ret;
    }
    size_t take = r->total - r->have < inlen - used ? r->total - r->have : inlen - used;
    memcpy(r->bytes + r->have, in + used, take);
    r->have += take;
    used += take;
    *consumed = used;
    if (r->have < r->total)
        return 0;
    ret = engine_metadata_parse(&r->meta, (const char *)r->bytes + ENGINE_HEADER_FIXED,
                                r->total - ENGINE_HEADER_FIXED);
    if (ret != 0)
        return ret;
    r->complete = 1;
    return 1;
}
