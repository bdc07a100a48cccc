/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers for coffer's tests. */
#include "test_support.h"

#include "coffer_error.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <setjmp.h> /* cmocka.h needs these three first */
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

extern char **environ;

void ts_skip(const char *fmt, ...)
{
    va_list ap;
    const char *ci = getenv("CI");
    int in_ci = ci != NULL && strcmp(ci, "true") == 0;
    fprintf(stderr, in_ci ? "FAIL (nothing may skip in CI): " : "SKIP: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(in_ci ? 1 : 77);
}

void ts_skip_case(const char *fmt, ...)
{
    char why[512];
    va_list ap;
    const char *ci = getenv("CI");
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    if (ci != NULL && strcmp(ci, "true") == 0)
        fail_msg("nothing may skip in CI: %s", why);
    print_message("SKIP: %s\n", why);
    skip();
    abort(); /* skip() longjmps out of the test case */
}

json_t *ts_load_vectors(const char *file)
{
    char path[4096];
    json_error_t err;
    snprintf(path, sizeof(path), "%s/%s", COFFER_VECTORS_DIR, file);
    if (access(path, R_OK) != 0)
        ts_skip("test vectors %s not found (set -DCOFFER_VECTORS_DIR)", path);
    json_t *j = json_load_file(path, 0, &err);
    if (j == NULL) {
        fprintf(stderr, "%s:%d: %s\n", path, err.line, err.text);
        abort();
    }
    return j;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

uint8_t *ts_hex(const char *hex, size_t *len)
{
    size_t n = strlen(hex) / 2;
    uint8_t *b = malloc(n + 1);
    if (b == NULL)
        abort();
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            abort();
        b[i] = (uint8_t)(hi << 4 | lo);
    }
    *len = n;
    return b;
}

uint8_t *ts_inflate(const uint8_t *in, size_t inlen, size_t *outlen)
{
    size_t cap = inlen * 4 + 1024, n = 0;
    uint8_t *out = malloc(cap);
    z_stream zs = {0};
    if (out == NULL || inflateInit(&zs) != Z_OK)
        abort();
    zs.next_in = (Bytef *)in;
    zs.avail_in = (uInt)inlen;
    for (;;) {
        if (n == cap) {
            cap *= 2;
            if ((out = realloc(out, cap)) == NULL)
                abort();
        }
        zs.next_out = out + n;
        zs.avail_out = (uInt)(cap - n);
        int r = inflate(&zs, Z_NO_FLUSH);
        n = cap - zs.avail_out;
        if (r == Z_STREAM_END)
            break;
        if (r != Z_OK && r != Z_BUF_ERROR)
            abort();
    }
    inflateEnd(&zs);
    *outlen = n;
    return out;
}

void ts_sha512_hex(const uint8_t *buf, size_t len, char out[129])
{
    uint8_t md[64];
    unsigned mdlen = 0;
    EVP_Digest(buf, len, md, &mdlen, EVP_sha512(), NULL);
    for (unsigned i = 0; i < 64; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

void ts_fill(void *buf, size_t n, uint64_t seed)
{
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    uint8_t *p = buf;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)(x >> 24);
    }
}

uint64_t ts_rng_next(uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * 0x2545f4914f6cdd1dull;
}

char *ts_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof(path), "%s/coffer-test.XXXXXX", base != NULL ? base : "/tmp");
    if (mkdtemp(path) == NULL)
        abort();
    return strdup(path);
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(p);
    return 0;
}

void ts_rmtree(const char *path)
{
    if (path != NULL)
        nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

uint8_t *ts_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    uint8_t *b = malloc(cap + 1);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            b = realloc(b, cap + 1);
        }
        size_t r = fread(b + n, 1, cap - n, f);
        if (r == 0)
            break;
        n += r;
    }
    fclose(f);
    b[n] = 0;
    *len = n;
    return b;
}

int ts_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return -1;
    size_t w = fwrite(data, 1, len, f);
    return fclose(f) == 0 && w == len ? 0 : -1;
}

static void redirect(const char *path, int fd, int flags)
{
    int f = open(path != NULL ? path : "/dev/null", flags, 0600);
    if (f < 0)
        _exit(126);
    dup2(f, fd);
    close(f);
}

int ts_run(char *const argv[], char *const extra_env[], const char *in_path, const char *out_path,
           const char *err_path)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        redirect(in_path, 0, O_RDONLY);
        redirect(out_path, 1, O_WRONLY | O_CREAT | O_TRUNC);
        redirect(err_path, 2, O_WRONLY | O_CREAT | O_TRUNC);
        for (size_t i = 0; extra_env != NULL && extra_env[i] != NULL; i++)
            putenv(extra_env[i]);
        execv(argv[0], argv);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return WEXITSTATUS(st);
}

ssize_t ts_membuf_read(void *ctx, void *buf, size_t cap)
{
    struct ts_membuf *m = ctx;
    size_t n = m->len - m->off < cap ? m->len - m->off : cap;
    memcpy(buf, m->p + m->off, n);
    m->off += n;
    return (ssize_t)n;
}

int ts_membuf_write(void *ctx, const void *buf, size_t len)
{
    struct ts_membuf *m = ctx;
    if (m->len + len > m->cap) {
        m->cap = (m->len + len) * 2 + 1024;
        if ((m->p = realloc(m->p, m->cap)) == NULL)
            abort();
    }
    memcpy(m->p + m->len, buf, len);
    m->len += len;
    return 0;
}

const char *ts_bin(const char *name)
{
    static char path[4096];
    snprintf(path, sizeof(path), "%s/%s", COFFER_BIN_DIR, name);
    return path;
}

int ts_offline_open(coffer_format f, const uint8_t *key, const uint8_t *ct, size_t len,
                    uint8_t **pt, size_t *ptlen)
{
    engine_key *k = NULL;
    engine_header_reader hr;
    struct engine_stream_params p;
    engine_stream *s = NULL;
    size_t off = 0, n = 0, cap = len + 65536, m = 0;
    uint8_t *out = malloc(cap);
    int r;

    engine_header_reader_init(&hr);
    memset(&p, 0, sizeof(p));
    if (out == NULL)
        abort();
    if ((r = engine_key_from_bytes(&k, key, 32)) != 0)
        goto out;
    p.format = f;
    p.key = k;
    if (f == COFFER_FORMAT_COFFER_V1) {
        r = engine_header_reader_feed(&hr, ct, len, &off);
        if (r != 1) {
            r = r < 0 ? r : COFFER_ERR_TRUNCATED;
            goto out;
        }
        p.header = &hr;
    }
    if ((r = engine_stream_open_new(&s, &p)) != 0 ||
        (r = engine_stream_update(s, ct + off, len - off, out, cap, &n)) != 0 ||
        (r = engine_stream_finish(s, out + n, cap - n, &m)) != 0)
        goto out;
    n += m;
    do {
        if ((r = engine_stream_drain(s, out + n, cap - n, &m)) != 0)
            goto out;
        n += m;
    } while (m > 0);
    *pt = out;
    *ptlen = n;
    out = NULL;
out:
    free(out);
    engine_stream_free(s);
    engine_header_reader_clear(&hr);
    engine_key_free(k);
    return r;
}
