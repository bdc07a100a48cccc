/* SPDX-License-Identifier: Apache-2.0 */
/* Bech32 (BIP-173) for age's key strings: checksummed text of 5-bit groups, and the 8<->5 bits. */
#ifndef ENGINE_BECH32_H
#define ENGINE_BECH32_H

#include "engine_gcm.h"

#include <stddef.h>
#include <stdint.h>

/* BIP-173's limit on a whole string. age drops it, but its X25519 keys are 62 and 74 characters. */
#define ENGINE_BECH32_MAX 90

/*
 * Encode hrp (1..83 characters 33..126, written in lower case) and n 5-bit values as
 * "hrp" "1" data checksum, in upper case when upper is set (age identities). out receives the
 * string and a NUL; it needs strlen(hrp) + 1 + n + 6 + 1 bytes. Returns 0, or
 * COFFER_ERR_INVALID_ARG (bad hrp, a value above 31, longer than ENGINE_BECH32_MAX, or outcap too
 * small). Works only on the caller's buffers; any thread.
 */
int engine_bech32_encode(const char *hrp, const uint8_t *data, size_t n, int upper, char *out,
                         size_t outcap) COFFER_WUR;

/*
 * Decode s (len characters, at most ENGINE_BECH32_MAX): all upper or all lower case, the last
 * '1' separates a non-empty hrp from at least 6 checksum characters. hrp receives the hrp in
 * lower case (hrpcap bytes including the NUL), data the 5-bit values without the checksum
 * (datacap values), *n their count. Returns 0, or COFFER_ERR_KEY_FORM with one sentence in
 * detail (NULL allowed) saying what is wrong (mixed case, a character outside the alphabet, a
 * missing separator, a bad checksum, too long).
 */
int engine_bech32_decode(const char *s, size_t len, char *hrp, size_t hrpcap, uint8_t *data,
                         size_t datacap, size_t *n, char *detail, size_t detaillen) COFFER_WUR;

/*
 * Regroup bits: 8-bit bytes to 5-bit values (pad set: the last group padded with zero bits), or
 * 5-bit values to bytes (pad clear: leftover bits must be fewer than 5 and all zero). *outlen
 * gets the count. Returns 0, or COFFER_ERR_KEY_FORM (non-zero or excess padding, a value out of
 * range) or COFFER_ERR_INVALID_ARG (outcap too small).
 */
int engine_bech32_regroup(const uint8_t *in, size_t inlen, unsigned from, unsigned to, int pad,
                          uint8_t *out, size_t outcap, size_t *outlen) COFFER_WUR;

#endif
