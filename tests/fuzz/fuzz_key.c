/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: engine_key_parse under every key rule, against an independent reading of
 * the rules in DESIGN.md. */
#include "coffer_error.h"
#include "engine_key.h"
#include "fuzz_common.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int b64val(uint8_t c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Standard base64 with '=' padding only at the end; returns the decoded length or -1. */
static long ref_base64(const uint8_t *t, size_t n, uint8_t *out, size_t outcap)
{
    size_t pad = 0, o = 0;
    uint32_t acc = 0;
    int bits = 0;

    if (n == 0 || n % 4 != 0)
        return -1;
    while (pad < 2 && t[n - 1 - pad] == '=')
        pad++;
    for (size_t i = 0; i < n - pad; i++) {
        int v = b64val(t[i]);
        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o < outcap)
                out[o] = (uint8_t)(acc >> bits);
            o++;
        }
    }
    return (long)o;
}

/*
 * The rules as DESIGN.md states them. Returns 0 and the key, or the error code. For base64 the
 * engine may accept a little more (OpenSSL's decoder); that is settled by the caller.
 */
static int ref_uniform(size_t want, const uint8_t *f, size_t len, uint8_t *out)
{
    if (len == want) {
        for (size_t i = 0; i < len; i++)
            if (f[i] < 0x20 || f[i] > 0x7e) {
                memcpy(out, f, len);
                return 0;
            }
        return COFFER_ERR_KEY_FORM; /* a passphrase */
    }
    size_t n = len;
    if (n > 0 && f[n - 1] == '\n')
        n--;
    if (n > 0 && f[n - 1] == '\r')
        n--;
    if (n == 2 * want) {
        int ok = 1;
        for (size_t i = 0; i < want && ok; i++) {
            int hi = hexval(f[2 * i]), lo = hexval(f[2 * i + 1]);
            ok = hi >= 0 && lo >= 0;
            if (ok)
                out[i] = (uint8_t)(hi << 4 | lo);
        }
        if (ok)
            return 0;
    }
    uint8_t tmp[ENGINE_KEY_FIELD_MAX];
    if (ref_base64(f, n, tmp, sizeof(tmp)) == (long)want) {
        memcpy(out, tmp, want);
        return 0;
    }
    return COFFER_ERR_KEY_SIZE;
}

static int ref_parse(engine_key_rule rule, const uint8_t *f, size_t len, uint8_t *out,
                     size_t *outlen)
{
    if (len == 0)
        return COFFER_ERR_KEY_MISSING;
    if (len > ENGINE_KEY_FIELD_MAX)
        return COFFER_ERR_KEY_SIZE;
    switch (rule) {
    case ENGINE_KEY_RULE_COFFER:
        *outlen = 32;
        return ref_uniform(32, f, len, out);
    case ENGINE_KEY_RULE_COBBLESTONE_128:
        *outlen = 16;
        return ref_uniform(16, f, len, out);
    case ENGINE_KEY_RULE_VELERO:
        if (len != 16 && len != 24 && len != 32)
            return COFFER_ERR_KEY_SIZE;
        memcpy(out, f, len);
        *outlen = len;
        return 0;
    }
    return COFFER_ERR_INVALID_ARG;
}

/* Printable ASCII and whitespace only. */
static int is_text(const uint8_t *f, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((f[i] < 0x20 || f[i] > 0x7e) && !strchr(" \t\n\r\v\f", f[i] ? f[i] : 'x'))
            return 0;
    return 1;
}

/* Is the field base64 text (after one newline) that our strict decoder refuses? */
static int lax_base64_only(const uint8_t *f, size_t len)
{
    uint8_t tmp[ENGINE_KEY_FIELD_MAX];
    size_t n = len;
    if (n > 0 && f[n - 1] == '\n')
        n--;
    if (n > 0 && f[n - 1] == '\r')
        n--;
    return ref_base64(f, n, tmp, sizeof(tmp)) < 0;
}

static void check_rule(engine_key_rule rule, const uint8_t *field, size_t len, size_t detaillen)
{
    char *detail = malloc(detaillen > 0 ? detaillen : 1); /* exact size: overruns are caught */
    uint8_t want[ENGINE_KEY_MAX];
    size_t wantlen = 0;
    engine_key *k = (engine_key *)1;

    FUZZ_CHECK(detail != NULL);
    memset(detail, 'x', detaillen > 0 ? detaillen : 1);
    int r = engine_key_parse(&k, rule, field, len, detaillen > 0 ? detail : NULL, detaillen);
    int ref = ref_parse(rule, field, len, want, &wantlen);

    if (detaillen > 0)
        FUZZ_CHECK(memchr(detail, '\0', detaillen) != NULL);
    if (r == 0) {
        FUZZ_CHECK(k != NULL);
        if (detaillen > 0)
            FUZZ_CHECK(detail[0] == '\0');
        if (ref != 0) {
            /* only OpenSSL's base64 decoder may be more lenient than the strict reading */
            FUZZ_CHECK(rule != ENGINE_KEY_RULE_VELERO && lax_base64_only(field, len));
            FUZZ_CHECK(k->len == (rule == ENGINE_KEY_RULE_COFFER ? 32u : 16u));
        } else {
            FUZZ_CHECK(k->len == wantlen && memcmp(k->bytes, want, wantlen) == 0);
        }
        char id[ENGINE_KEY_ID_LEN + 1];
        engine_key_id(k->bytes, k->len, id);
        FUZZ_CHECK(strlen(k->id) == ENGINE_KEY_ID_LEN && strcmp(k->id, id) == 0);
        FUZZ_CHECK(strspn(k->id, "0123456789abcdef") == ENGINE_KEY_ID_LEN);
        engine_key_free(k);
    } else {
        FUZZ_CHECK(k == NULL);
        FUZZ_CHECK(r == COFFER_ERR_KEY_SIZE || r == COFFER_ERR_KEY_FORM ||
                   r == COFFER_ERR_KEY_MISSING);
        /* a key the rules accept must not be refused */
        FUZZ_CHECK(ref != 0);
        /* text of no key form is KEY_FORM when a character or whitespace is at fault (the
         * detail names it), KEY_SIZE when only its length is */
        FUZZ_CHECK(r == ref ||
                   (r == COFFER_ERR_KEY_FORM && ref == COFFER_ERR_KEY_SIZE && is_text(field, len)));
        if (detaillen > 1)
            FUZZ_CHECK(detail[0] != '\0'); /* a refusal always says why */
    }
    free(detail);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size copy, so that reading past the field is caught */
    uint8_t *field = malloc(size > 0 ? size : 1);
    FUZZ_CHECK(field != NULL);
    if (size > 0)
        memcpy(field, data, size);
    static const size_t detail_lens[] = {0, 1, 7, 256};
    for (int rule = ENGINE_KEY_RULE_COFFER; rule <= ENGINE_KEY_RULE_COBBLESTONE_128; rule++)
        for (size_t i = 0; i < sizeof(detail_lens) / sizeof(detail_lens[0]); i++)
            check_rule((engine_key_rule)rule, field, size, detail_lens[i]);
    free(field);
    return 0;
}
