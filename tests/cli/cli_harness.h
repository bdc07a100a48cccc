/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the CLI tests: a scratch directory per test, running coffer, common checks. */
#ifndef CLI_HARNESS_H
#define CLI_HARNESS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* cmocka setup/teardown: a fresh private directory for each test. */
int h_setup(void **state);
int h_teardown(void **state);

/* The test's directory, and "<dir>/<name>" in one of 32 rotating static buffers. */
const char *h_dir(void);
const char *h_p(const char *name);

/*
 * Run the built coffer with the NULL-terminated arguments, stdin from in, stdout to out (paths,
 * NULL: /dev/null); stderr always goes to h_p("stderr"). Returns the exit status.
 */
int h_coffer(const char *in, const char *out, ...) __attribute__((sentinel));
/* The same with argv given as an array (NULL-terminated, without the program). */
int h_coffer_argv(const char *in, const char *out, const char *const *args);

/* Whole-file helpers on paths. h_read aborts when the file is missing. */
uint8_t *h_read(const char *path, size_t *len);
void h_write(const char *path, const void *data, size_t len);
/* len deterministic pseudo-random bytes; returns the buffer (free it). */
uint8_t *h_write_random(const char *path, size_t len, uint64_t seed);
/* 1 if the file exists. */
int h_exists(const char *path);
/* The number of entries in the test directory (without "." and ".."). */
int h_count_entries(void);
/* 1 if the file contains the string. */
int h_contains(const char *path, const char *needle);
/* Exit status of a shell-free program run with ts_run, for other programs (python). */
int h_run(const char *const *argv, const char *out, const char *err);

/* The checks below fail the running cmocka test. */

/* Load a JSON file (it must parse; the parser's message goes to stderr). json_decref it. */
json_t *h_json_load(const char *path);
/* The file exists with mode 0600. */
void h_file_check_0600(const char *path);
/* The last coffer run wrote nothing on stderr (what it wrote is shown otherwise). */
void h_stderr_check_empty(void);
/* The size of c2sp.org/chunked-encryption of n bytes: salt, commitment, 16 KiB chunks and tags. */
size_t h_chunked_size(size_t n);
/* ct (len bytes) is coffer-v1 of n plaintext bytes: the magic, the header, the chunked body. */
void h_coffer_v1_check(const uint8_t *ct, size_t len, size_t n);

#endif
