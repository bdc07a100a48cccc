/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the coffer-v1 header reader, fed in two pieces and byte by byte, then the
 * metadata it parsed. */
#include "coffer_error.h"
#include "engine_header.h"
#include "fuzz_common.h"

#include <string.h>

/*
 * Input: byte 0 chooses where the rest is split for the two-piece feed (0: all in the second
 * piece, 255: all in the first); the rest is the start of a coffer-v1 file.
 */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct header_run {
    engine_header_reader r;
    int rc;          /* 1 complete, 0 more needed when the input ended, or an error */
    size_t consumed; /* header bytes taken from the input when complete */
};

/* After an error every later feed returns that error again (engine_header_reader.err). */
static void check_refeed(struct header_run *h, const uint8_t *in, size_t len)
{
    static const uint8_t more[16];
    size_t c = 1;
    int rc =
        engine_header_reader_feed(&h->r, len > 0 ? in : more, len > 0 ? len : sizeof(more), &c);
    FUZZ_CHECK(rc == h->rc && c == 0);
    c = 1;
    FUZZ_CHECK(engine_header_reader_feed(&h->r, more, 0, &c) == h->rc && c == 0);
}

static void run_split(struct header_run *h, const uint8_t *in, size_t len, size_t split)
{
    size_t c = 0;

    engine_header_reader_init(&h->r);
    h->consumed = 0;
    h->rc = engine_header_reader_feed(&h->r, in, split, &c);
    if (h->rc < 0) {
        check_refeed(h, in + split, len - split);
        return;
    }
    FUZZ_CHECK(h->rc == 0 || h->rc == 1);
    FUZZ_CHECK(c <= split);
    FUZZ_CHECK(h->rc == 1 || c == split);
    h->consumed = c;
    if (h->rc == 1) {
        /* complete: further feeds take nothing and say complete again */
        FUZZ_CHECK(engine_header_reader_feed(&h->r, in + c, len - c, &c) == 1 && c == 0);
        return;
    }
    h->rc = engine_header_reader_feed(&h->r, in + split, len - split, &c);
    if (h->rc < 0) {
        check_refeed(h, in, len);
        return;
    }
    FUZZ_CHECK(h->rc == 0 || h->rc == 1);
    FUZZ_CHECK(c <= len - split);
    FUZZ_CHECK(h->rc == 1 || c == len - split);
    h->consumed += c;
}

static void run_bytewise(struct header_run *h, const uint8_t *in, size_t len)
{
    engine_header_reader_init(&h->r);
    h->rc = 0;
    h->consumed = 0;
    for (size_t i = 0; i < len; i++) {
        size_t c = 0;
        h->rc = engine_header_reader_feed(&h->r, in + i, 1, &c);
        if (h->rc < 0) {
            check_refeed(h, in + i + 1, len - i - 1);
            return;
        }
        FUZZ_CHECK(c == 1);
        h->consumed++;
        if (h->rc == 1)
            return;
    }
}

/* What the outcome must be, worked out from the format's definition (docs/format.md). */
static int expected_rc(const uint8_t *in, size_t len)
{
    /* "COFFER" 0x00 is refused as its bytes arrive, the version once the fixed part is in */
    size_t n = len < ENGINE_HEADER_MAGIC_LEN - 1 ? len : ENGINE_HEADER_MAGIC_LEN - 1;
    if (memcmp(in, engine_header_magic, n) != 0)
        return COFFER_ERR_BAD_HEADER;
    if (len < ENGINE_HEADER_FIXED)
        return 0;
    if (in[ENGINE_HEADER_MAGIC_LEN - 1] != engine_header_magic[ENGINE_HEADER_MAGIC_LEN - 1])
        return COFFER_ERR_BAD_HEADER;
    uint32_t mlen = (uint32_t)in[8] << 24 | (uint32_t)in[9] << 16 | (uint32_t)in[10] << 8 | in[11];
    if (mlen > ENGINE_METADATA_MAX)
        return COFFER_ERR_TOO_LARGE;
    if (len - ENGINE_HEADER_FIXED < mlen)
        return 0;
    char *text = malloc(mlen > 0 ? mlen : 1);
    engine_metadata m;
    FUZZ_CHECK(text != NULL);
    memcpy(text, in + ENGINE_HEADER_FIXED, mlen);
    int r = engine_metadata_parse(&m, text, mlen);
    engine_metadata_clear(&m);
    free(text);
    return r == 0 ? 1 : r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct header_run a, b;

    if (size < 1)
        return 0;
    const uint8_t *in = data + 1;
    size_t len = size - 1;
    size_t split = (size_t)data[0] * len / 255;

    run_split(&a, in, len, split);
    run_bytewise(&b, in, len);

    int want = expected_rc(in, len);
    FUZZ_CHECK(a.rc == want);
    FUZZ_CHECK(b.rc == want);
    if (want == 0) {
        FUZZ_CHECK(a.consumed == len && b.consumed == len);
        FUZZ_CHECK(!a.r.complete && !b.r.complete);
    }
    if (want == 1) {
        const engine_header_reader *r = &a.r;
        FUZZ_CHECK(a.consumed == b.consumed);
        FUZZ_CHECK(r->complete && b.r.complete);
        FUZZ_CHECK(r->total == a.consumed && r->have == r->total);
        FUZZ_CHECK(b.r.total == r->total);
        FUZZ_CHECK(r->total >= ENGINE_HEADER_FIXED && r->total <= len);
        /* the header bytes (the body's context) are exactly the input's first bytes */
        FUZZ_CHECK(memcmp(r->bytes, in, r->total) == 0);
        FUZZ_CHECK(memcmp(b.r.bytes, in, r->total) == 0);
        FUZZ_CHECK(engine_header_sniff(r->bytes, r->total));

        /* the metadata it parsed, and the header it would encode from that text */
        fuzz_metadata_check(&r->meta);
        fuzz_metadata_check(&b.r.meta);
        FUZZ_CHECK(json_equal(r->meta.json, b.r.meta.json));
        uint8_t *enc = NULL;
        size_t enclen = 0;
        FUZZ_CHECK(engine_header_encode((const char *)r->bytes + ENGINE_HEADER_FIXED,
                                        r->total - ENGINE_HEADER_FIXED, &enc, &enclen) == 0);
        FUZZ_CHECK(enclen == r->total && memcmp(enc, r->bytes, enclen) == 0);
        free(enc);
    }
    engine_header_reader_clear(&a.r);
    engine_header_reader_clear(&b.r);
    return 0;
}
