/* SPDX-License-Identifier: Apache-2.0 */
/* Scratch directories, file helpers, a wrapper around ts_run for the coffer binary, and checks. */
#include "cli_harness.h"

#include "test_support.h"

#include <dirent.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#define H_ARGS_MAX 64
#define H_SLOTS    32

static char *h_tmp;
static char h_paths[H_SLOTS][PATH_MAX];
static unsigned h_next;

int h_setup(void **state)
{
    (void)state;
    /* Key files the tests write are private, as coffer asks of them (it warns otherwise). */
    umask(077);
    h_tmp = ts_tmpdir();
    return h_tmp == NULL ? -1 : 0;
}

int h_teardown(void **state)
{
    (void)state;
    ts_rmtree(h_tmp);
    free(h_tmp);
    h_tmp = NULL;
    return 0;
}

const char *h_dir(void)
{
    return h_tmp;
}

const char *h_p(const char *name)
{
    char *p = h_paths[h_next++ % H_SLOTS];
    snprintf(p, PATH_MAX, "%s/%s", h_tmp, name);
    return p;
}

int h_coffer_argv(const char *in, const char *out, const char *const *args)
{
    char bin[PATH_MAX];
    char *argv[H_ARGS_MAX + 2];
    size_t n = 0;
    char err[PATH_MAX];

    snprintf(bin, sizeof(bin), "%s", ts_bin("coffer"));
    snprintf(err, sizeof(err), "%s/stderr", h_tmp);
    argv[n++] = bin;
    for (size_t i = 0; args[i] != NULL && n < H_ARGS_MAX; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    return ts_run(argv, NULL, in, out, err);
}

int h_coffer(const char *in, const char *out, ...)
{
    const char *args[H_ARGS_MAX + 1];
    size_t n = 0;
    va_list ap;

    va_start(ap, out);
    for (const char *a = va_arg(ap, const char *); a != NULL && n < H_ARGS_MAX;
         a = va_arg(ap, const char *))
        args[n++] = a;
    va_end(ap);
    args[n] = NULL;
    return h_coffer_argv(in, out, args);
}

uint8_t *h_read(const char *path, size_t *len)
{
    uint8_t *b = ts_read_file(path, len);
    if (b == NULL) {
        fprintf(stderr, "h_read: %s is missing\n", path);
        abort();
    }
    return b;
}

void h_write(const char *path, const void *data, size_t len)
{
    if (ts_write_file(path, data, len) != 0)
        abort();
}

uint8_t *h_write_random(const char *path, size_t len, uint64_t seed)
{
    uint8_t *b = malloc(len + 1);
    if (b == NULL)
        abort();
    ts_fill(b, len, seed);
    h_write(path, b, len);
    return b;
}

int h_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

int h_count_entries(void)
{
    DIR *d = opendir(h_tmp);
    struct dirent *e;
    int n = 0;

    if (d == NULL)
        abort();
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

int h_contains(const char *path, const char *needle)
{
    size_t len = 0;
    uint8_t *b = ts_read_file(path, &len);
    int found = b != NULL && strstr((const char *)b, needle) != NULL;
    free(b);
    return found;
}

int h_run(const char *const *argv, const char *out, const char *err)
{
    return ts_run((char *const *)argv, NULL, NULL, out, err);
}

json_t *h_json_load(const char *path)
{
    json_error_t err;
    json_t *j = json_load_file(path, 0, &err);
    if (j == NULL)
        fprintf(stderr, "%s: %s\n", path, err.text);
    assert_non_null(j);
    return j;
}

void h_file_check_0600(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
}

void h_stderr_check_empty(void)
{
    size_t len = 0;
    uint8_t *err = h_read(h_p("stderr"), &len);
    if (len != 0)
        fprintf(stderr, "unexpected stderr: %s", (const char *)err);
    assert_int_equal(len, 0);
    free(err);
}

size_t h_chunked_size(size_t n)
{
    return 56 + n + 16 * (n / 16384 + 1);
}

void h_coffer_v1_check(const uint8_t *ct, size_t len, size_t n)
{
    assert_true(len >= 12);
    assert_memory_equal(ct, "COFFER\0\1", 8);
    size_t hlen = 12 + ((size_t)ct[8] << 24 | (size_t)ct[9] << 16 | (size_t)ct[10] << 8 | ct[11]);
    assert_int_equal(len, hlen + h_chunked_size(n));
}
