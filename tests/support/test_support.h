/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers for coffer's tests: vectors, hex, zlib, temporary directories, running programs. */
#ifndef TEST_SUPPORT_H
#define TEST_SUPPORT_H

#include "engine_stream.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * Skip the whole test program (exit 77, which CTest reports as skipped) with a reason on stderr.
 * When the environment says CI=true nothing may skip, so it fails (exit 1) instead.
 */
void ts_skip(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

/*
 * Skip the running cmocka test case (not the program) with a reason: cmocka prints
 * "[  SKIPPED ]", which coffer_add_test's SKIP_REGULAR_EXPRESSION makes CTest report as skipped
 * rather than passed. Under CI=true nothing may skip, so the case fails instead. Call it only
 * from inside a test case; it does not return.
 */
void ts_skip_case(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

/* Load COFFER_VECTORS_DIR/<file> as JSON; skips (see ts_skip) when the file is missing. */
json_t *ts_load_vectors(const char *file);

/* Decode hex text to a new buffer (malloc, at least 1 byte so never NULL); *len its length. */
uint8_t *ts_hex(const char *hex, size_t *len);

/* Inflate a zlib stream to a new buffer (malloc); aborts on malformed input. */
uint8_t *ts_inflate(const uint8_t *in, size_t inlen, size_t *outlen);

/* SHA-512 of buf as 128 lowercase hex characters + NUL. */
void ts_sha512_hex(const uint8_t *buf, size_t len, char out[129]);

/* Deterministic pseudo-random bytes for test data (seeded). */
void ts_fill(void *buf, size_t n, uint64_t seed);

/* xorshift64*: the next deterministic pseudo-random number from *state (seed it non-zero). */
uint64_t ts_rng_next(uint64_t *state);

/* A new private temporary directory (mkdtemp under $TMPDIR or /tmp); free() the path. */
char *ts_tmpdir(void);
/* Remove a directory tree (best effort). */
void ts_rmtree(const char *path);

/* Whole-file helpers; ts_read_file returns malloc'd data (NUL-terminated) or NULL. */
uint8_t *ts_read_file(const char *path, size_t *len);
int ts_write_file(const char *path, const void *data, size_t len);

/*
 * Run argv (argv[0] a path) with stdin/stdout/stderr redirected to files (NULL: /dev/null) and
 * optional extra environment entries ("NAME=value", NULL-terminated, may be NULL). Returns the
 * exit status, or 128 + signal number when killed by a signal, or -1 if it could not start.
 */
int ts_run(char *const argv[], char *const extra_env[], const char *in_path, const char *out_path,
           const char *err_path);

/*
 * A growable in-memory byte buffer with read and write callbacks in libcoffer's shapes
 * (coffer_read_fn, coffer_write_fn): reads consume from off, writes append at len.
 */
struct ts_membuf {
    uint8_t *p;
    size_t len, off, cap;
};
ssize_t ts_membuf_read(void *ctx, void *buf, size_t cap);
int ts_membuf_write(void *ctx, const void *buf, size_t len);

/*
 * Decrypt a whole message in format f with a 32-byte key through the engine directly (no daemon),
 * as `coffer decrypt --offline` would. *pt (malloc) gets the plaintext on success; returns 0 or
 * the engine's coffer code.
 */
int ts_offline_open(coffer_format f, const uint8_t *key, const uint8_t *ct, size_t len,
                    uint8_t **pt, size_t *ptlen);

/* Path of a built program: COFFER_BIN_DIR/<name> (static buffer). */
const char *ts_bin(const char *name);

#endif
