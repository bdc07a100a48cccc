/* SPDX-License-Identifier: Apache-2.0 */
/* Bech32 as BIP-173 specifies it: the BCH checksum over the expanded hrp and the data. */
#include "engine_bech32.h"

#include "coffer_error.h"

#include <stdio.h>
#include <string.h>

static const char bech32_charset[] = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";
#define BECH32_CHECKSUM 6

static uint32_t bech32_polymod_step(uint32_t pre, uint8_t v)
{
    static const uint32_t gen[5] = {0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3};
    uint32_t b = pre >> 25;
    uint32_t chk = ((pre & 0x1ffffff) << 5) ^ v;
    for (unsigned i = 0; i < 5; i++)
        if ((b >> i) & 1)
            chk ^= gen[i];
    return chk;
}

/* The checksum state after the expanded hrp (lower case). */
static uint32_t bech32_hrp_state(const char *hrp, size_t hrplen)
{
    uint32_t chk = 1;
    for (size_t i = 0; i < hrplen; i++)
        chk = bech32_polymod_step(chk, (uint8_t)((unsigned char)hrp[i] >> 5));
    chk = bech32_polymod_step(chk, 0);
    for (size_t i = 0; i < hrplen; i++)
        chk = bech32_polymod_step(chk, (uint8_t)(hrp[i] & 0x1f));
    return chk;
}

static int bech32_charset_index(char c)
{
    const char *p = c != '\0' ? strchr(bech32_charset, c) : NULL;
    return p != NULL ? (int)(p - bech32_charset) : -1;
}

int engine_bech32_encode(const char *hrp, const uint8_t *data, size_t n, int upper, char *out,
                         size_t outcap)
{
    size_t hrplen = strlen(hrp), o = 0;
    uint32_t chk;

    if (hrplen < 1 || hrplen + 1 + n + BECH32_CHECKSUM > ENGINE_BECH32_MAX ||
        outcap < hrplen + 1 + n + BECH32_CHECKSUM + 1)
        return COFFER_ERR_INVALID_ARG;
    for (size_t i = 0; i < hrplen; i++)
        if (hrp[i] < 33 || hrp[i] > 126 || (hrp[i] >= 'A' && hrp[i] <= 'Z'))
            return COFFER_ERR_INVALID_ARG;
    chk = bech32_hrp_state(hrp, hrplen);
    for (size_t i = 0; i < n; i++) {
        if (data[i] > 31)
            return COFFER_ERR_INVALID_ARG;
        chk = bech32_polymod_step(chk, data[i]);
    }
    for (unsigned i = 0; i < BECH32_CHECKSUM; i++)
        chk = bech32_polymod_step(chk, 0);
    chk ^= 1;
    memcpy(out, hrp, hrplen);
    o = hrplen;
    out[o++] = '1';
    for (size_t i = 0; i < n; i++)
        out[o++] = bech32_charset[data[i]];
    for (unsigned i = 0; i < BECH32_CHECKSUM; i++)
        out[o++] = bech32_charset[(chk >> (5 * (BECH32_CHECKSUM - 1 - i))) & 31];
    out[o] = '\0';
    if (upper)
        for (size_t i = 0; i < o; i++)
            if (out[i] >= 'a' && out[i] <= 'z')
                out[i] = (char)(out[i] - 'a' + 'A');
    return 0;
}

#define BECH32_FAIL(...)                                                                           \
    do {                                                                                           \
        if (detail != NULL)                                                                        \
            snprintf(detail, detaillen, __VA_ARGS__);                                              \
        return COFFER_ERR_KEY_FORM;                                                                \
    } while (0)

int engine_bech32_decode(const char *s, size_t len, char *hrp, size_t hrpcap, uint8_t *data,
                         size_t datacap, size_t *n, char *detail, size_t detaillen)
{
    int lower = 0, upper = 0;
    size_t sep = len, hrplen, dlen;
    char lc[ENGINE_BECH32_MAX];
    uint32_t chk;

    *n = 0;
    if (len > ENGINE_BECH32_MAX)
        BECH32_FAIL("it is %zu characters long, more than bech32's %d", len, ENGINE_BECH32_MAX);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 33 || c > 126)
            BECH32_FAIL("character %zu is not printable ASCII", i + 1);
        lower |= c >= 'a' && c <= 'z';
        upper |= c >= 'A' && c <= 'Z';
        lc[i] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
        if (lc[i] == '1')
            sep = i;
    }
    if (lower && upper)
        BECH32_FAIL("it mixes upper and lower case");
    if (sep == len)
        BECH32_FAIL("it has no '1' separator");
    hrplen = sep;
    if (hrplen == 0)
        BECH32_FAIL("its prefix before the '1' is empty");
    if (len - sep - 1 < BECH32_CHECKSUM)
        BECH32_FAIL("it is too short to hold a checksum");
    dlen = len - sep - 1 - BECH32_CHECKSUM;
    if (hrplen + 1 > hrpcap || dlen > datacap)
        BECH32_FAIL("it is longer than expected");
    chk = bech32_hrp_state(lc, hrplen);
    for (size_t i = sep + 1; i < len; i++) {
        int v = bech32_charset_index(lc[i]);
        if (v < 0)
            BECH32_FAIL("character %zu ('%c') is not in the bech32 alphabet", i + 1, s[i]);
        chk = bech32_polymod_step(chk, (uint8_t)v);
        if (i < len - BECH32_CHECKSUM)
            data[i - sep - 1] = (uint8_t)v;
    }
    if (chk != 1)
        BECH32_FAIL("its checksum is wrong (a typo, or a truncated or changed string)");
    memcpy(hrp, lc, hrplen);
    hrp[hrplen] = '\0';
    *n = dlen;
    return 0;
}

int engine_bech32_regroup(const uint8_t *in, size_t inlen, unsigned from, unsigned to, int pad,
                          uint8_t *out, size_t outcap, size_t *outlen)
{
    uint32_t acc = 0, maxv = (1u << to) - 1;
    unsigned bits = 0;
    size_t o = 0;

    *outlen = 0;
    for (size_t i = 0; i < inlen; i++) {
        if ((in[i] >> from) != 0)
            return COFFER_ERR_KEY_FORM;
        acc = ((acc << from) | in[i]) & 0xffffu;
        bits += from;
        while (bits >= to) {
            bits -= to;
            if (o == outcap)
                return COFFER_ERR_INVALID_ARG;
            out[o++] = (uint8_t)((acc >> bits) & maxv);
        }
    }
    if (pad && bits > 0) {
        if (o == outcap)
            return COFFER_ERR_INVALID_ARG;
        out[o++] = (uint8_t)((acc << (to - bits)) & maxv);
    } else if (!pad && (bits >= from || ((acc << (to - bits)) & maxv) != 0)) {
        return COFFER_ERR_KEY_FORM;
    }
    *outlen = o;
    return 0;
}
