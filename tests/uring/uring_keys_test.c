/* SPDX-License-Identifier: Apache-2.0 */
/* cofferd against hostile restores (issue 10): no plaintext downgrade, honest and safe errors,
 * Secret files that are FIFOs, devices or huge, and loaders that never wedge the daemon. */
#include "coffer_client.h"
#include "coffer_error.h"
#include "engine_header.h"
#include "engine_key.h"
#include "engine_metadata.h"
#include "engine_stream.h"
#include "proto_frame.h"
#include "test_daemon.h"
#include "test_support.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

static char *tmp;
static char secrets[512];
static struct ts_daemon main_d;
static uint8_t key_main[32], key_other[32];

static void secret_dir(const char *name, char *path, size_t len)
{
    snprintf(path, len, "%s/velero", secrets);
    mkdir(path, 0700);
    snprintf(path, len, "%s/velero/%.253s", secrets, name);
    mkdir(path, 0700);
    snprintf(path, len, "%s/velero/%.253s/encryptionKey", secrets, name);
}

static void write_secret(const char *name, const void *bytes, size_t len)
{
    char path[1024];
    secret_dir(name, path, sizeof(path));
    assert_int_equal(ts_write_file(path, bytes, len), 0);
}

static int daemon_start(struct ts_daemon *d, const char *name, ...)
{
    char *flags[] = {"--secrets-dir", secrets, "--workers", "2", "--io-timeout", "3", NULL};
    va_list ap;
    int r;

    ts_daemon_paths(d, tmp, name);
    va_start(ap, name);
    r = ts_daemon_vstart(d, flags, NULL, 1000, ap);
    va_end(ap);
    assert_true(r != -1);
    if (r == TS_DAEMON_TIMEOUT)
        fail_msg("cofferd did not start (see %s)", d->log);
    return r;
}

static int run_stream(const struct ts_daemon *d, int op, const char *format, const char *meta,
                      const uint8_t *in, size_t inlen, struct ts_membuf *out,
                      struct coffer_result *res)
{
    struct coffer_job job = {op, format, NULL, 0, meta, meta != NULL ? strlen(meta) : 0, 0};
    struct ts_membuf src = {(uint8_t *)in, inlen, 0, inlen};
    coffer_client *c = NULL;
    char msg[256];
    int r = coffer_client_connect(&c, d->sock, msg, sizeof(msg));
    if (r != 0)
        fail_msg("connect %s: %s (%s)", d->sock, coffer_client_strerror(r), msg);
    r = coffer_client_stream(c, &job, ts_membuf_read, &src, ts_membuf_write, out, res);
    coffer_client_close(c);
    return r;
}

/* A restore that must fail with code and a message containing each of the NULL-terminated
 * needles; nothing may come out. */
static void expect_refused(const struct ts_daemon *d, const char *format, const char *meta,
                           const uint8_t *in, size_t len, int code, ...)
{
    struct ts_membuf out = {0};
    struct coffer_result res = {0};
    va_list ap;
    const char *needle;
    int r = run_stream(d, COFFER_CLIENT_DECRYPT, format, meta, in, len, &out, &res);
    if (r != code)
        fail_msg("expected %s, got %s: %s", coffer_errname(code), coffer_errname(r), res.message);
    va_start(ap, code);
    while ((needle = va_arg(ap, const char *)) != NULL)
        if (strstr(res.message, needle) == NULL)
            fail_msg("'%s' not in the message: %s", needle, res.message);
    va_end(ap);
    assert_int_equal(out.len, 0);
    free(out.p);
    coffer_result_clear(&res);
}

static void expect_not_in_message(const struct ts_daemon *d, const char *meta, int code,
                                  const char *forbidden)
{
    uint8_t data[64] = {0};
    struct ts_membuf out = {0};
    struct coffer_result res = {0};
    int r = run_stream(d, COFFER_CLIENT_DECRYPT, NULL, meta, data, sizeof(data), &out, &res);
    if (r != code)
        fail_msg("expected %s, got %s: %s", coffer_errname(code), coffer_errname(r), res.message);
    if (strstr(res.message, forbidden) != NULL)
        fail_msg("the message reveals '%s': %s", forbidden, res.message);
    free(out.p);
    coffer_result_clear(&res);
}

/* Seal in with key under metadata naming Secret velero/<name> (as `coffer` offline would). */
static void seal(coffer_format f, const uint8_t *key, size_t keylen, const char *name,
                 const uint8_t *in, size_t len, uint8_t **ct, size_t *ctlen, char **meta)
{
    engine_key *k = NULL;
    struct engine_stream_params p;
    engine_stream *s = NULL;
    json_t *m;
    size_t cap = len + 65536, n = 0, t = 0;
    uint8_t *out = malloc(cap);

    assert_int_equal(engine_key_from_bytes(&k, key, keylen), 0);
    m = engine_metadata_new_secret("velero", name, engine_format_name(f), k->id);
    *meta = engine_metadata_dump(m);
    json_decref(m);
    memset(&p, 0, sizeof(p));
    p.format = f;
    p.key = k;
    p.metadata = *meta;
    p.metadata_len = strlen(*meta);
    assert_int_equal(engine_stream_seal_new(&s, &p), 0);
    assert_int_equal(engine_stream_update(s, in, len, out, cap, &n), 0);
    assert_int_equal(engine_stream_finish(s, out + n, cap - n, &t), 0);
    *ct = out;
    *ctlen = n + t;
    engine_stream_free(s);
    engine_key_free(k);
}

static void key_id_of(const uint8_t *key, size_t len, char id[ENGINE_KEY_ID_LEN + 1])
{
    engine_key *k = NULL;
    assert_int_equal(engine_key_from_bytes(&k, key, len), 0);
    snprintf(id, ENGINE_KEY_ID_LEN + 1, "%s", k->id);
    engine_key_free(k);
}

static char *meta_naming(const char *name, const char *format)
{
    static _Thread_local char buf[512]; /* fifo_restore calls it on two threads at once */
    snprintf(buf, sizeof(buf),
             "{\"isEncrypted\":true,\"keyRetrieverType\":\"secret\",\"keyRetrieverConfig\":"
             "{\"namespace\":\"velero\",\"secretName\":\"%s\"},\"format\":\"%s\"}",
             name, format);
    return buf;
}

static void good_restore(const struct ts_daemon *d)
{
    uint8_t in[3000], *ct = NULL;
    size_t ctlen = 0;
    char *meta = NULL;
    struct ts_membuf out = {0};
    struct coffer_result res = {0};
    ts_fill(in, sizeof(in), 42);
    seal(COFFER_FORMAT_COFFER_V1, key_main, 32, "coffer-key", in, sizeof(in), &ct, &ctlen, &meta);
    assert_int_equal(
        run_stream(d, COFFER_CLIENT_DECRYPT, NULL, NULL, ct, ctlen, &out, &res), 0);
    assert_int_equal(out.len, sizeof(in));
    assert_memory_equal(out.p, in, sizeof(in));
    free(out.p), free(ct), free(meta);
    coffer_result_clear(&res);
}

/* ---- item 5: no plaintext downgrade ---- */

static void test_plaintext_downgrade(void **state)
{
    static const char plain_meta[] = "{\"isEncrypted\":false}";
    uint8_t data[5000], *ct = NULL;
    size_t ctlen = 0;
    char *meta = NULL;
    struct ts_daemon d = {0};
    struct ts_membuf out = {0};
    struct coffer_result res = {0};
    (void)state;
    ts_fill(data, sizeof(data), 5);
    seal(COFFER_FORMAT_COFFER_V1, key_main, 32, "coffer-key", data, sizeof(data), &ct, &ctlen,
         &meta);
    /* encryption on: forged isEncrypted:false or format none is refused, and says why */
    expect_refused(&main_d, NULL, plain_meta, data, sizeof(data), COFFER_ERR_FORMAT,
                   "isEncrypted false", "--allow-plaintext-restore", NULL);
    expect_refused(&main_d, "none", NULL, data, sizeof(data), COFFER_ERR_FORMAT,
                   "format none", "--allow-plaintext-restore", NULL);
    expect_refused(&main_d, NULL, plain_meta, ct, ctlen, COFFER_ERR_FORMAT, NULL);
    /* allowed: plaintext backups restore, a coffer-v1 file never passes through */
    assert_int_equal(daemon_start(&d, "plain", "--allow-plaintext-restore", NULL), 0);
    assert_int_equal(
        run_stream(&d, COFFER_CLIENT_DECRYPT, NULL, plain_meta, data, sizeof(data), &out, &res),
        0);
    assert_int_equal(out.len, sizeof(data));
    assert_memory_equal(out.p, data, sizeof(data));
    coffer_result_clear(&res);
    expect_refused(&d, NULL, plain_meta, ct, ctlen, COFFER_ERR_FORMAT, "coffer-v1's magic", NULL);
    expect_refused(&d, "none", NULL, ct, ctlen, COFFER_ERR_FORMAT, "coffer-v1's magic", NULL);
    good_restore(&d);
    assert_int_equal(ts_daemon_stop(&d), 0);
    free(out.p), free(ct), free(meta);
}

/* ---- item 7: honest, safe errors ---- */

static void test_wrong_key_sentence(void **state)
{
    uint8_t data[4000], *ct = NULL;
    size_t ctlen = 0;
    char *meta = NULL, want[160], main_id[ENGINE_KEY_ID_LEN + 1], other_id[ENGINE_KEY_ID_LEN + 1];
    (void)state;
    ts_fill(data, sizeof(data), 6);
    key_id_of(key_main, 32, main_id);
    key_id_of(key_other, 32, other_id);
    snprintf(want, sizeof(want),
             "this backup was encrypted with key %s; the key given has id %s", other_id,
             main_id);
    /* encrypted with another key but naming coffer-key: the offline sentence, both formats */
    seal(COFFER_FORMAT_COFFER_V1, key_other, 32, "coffer-key", data, sizeof(data), &ct, &ctlen,
         &meta);
    expect_refused(&main_d, NULL, NULL, ct, ctlen, COFFER_ERR_WRONG_KEY, want, NULL);
    free(ct), free(meta);
    seal(COFFER_FORMAT_VELERO_V1, key_other, 32, "coffer-key", data, sizeof(data), &ct, &ctlen,
         &meta);
    expect_refused(&main_d, NULL, meta, ct, ctlen, COFFER_ERR_WRONG_KEY, want, NULL);
    free(ct), free(meta);
}

static void test_errors_reveal_nothing(void **state)
{
    char path[1024], zero[1024];
    (void)state;
    /* a missing Secret: no secrets-directory path */
    expect_not_in_message(&main_d, meta_naming("no-such-secret", "velero-v1"),
                          COFFER_ERR_KEY_MISSING, secrets);
    /* a Secret of 1000 bytes: its size is not told */
    {
        uint8_t big[1000];
        ts_fill(big, sizeof(big), 9);
        write_secret("big-secret", big, sizeof(big));
        expect_not_in_message(&main_d, meta_naming("big-secret", "velero-v1"),
                              COFFER_ERR_KEY_SIZE, "1000");
        expect_not_in_message(&main_d, meta_naming("big-secret", "velero-v1"),
                              COFFER_ERR_KEY_SIZE, secrets);
    }
    /* a Secret path that is a device */
    secret_dir("dev-zero", path, sizeof(path));
    snprintf(zero, sizeof(zero), "/dev/zero");
    unlink(path);
    assert_int_equal(symlink(zero, path), 0);
    expect_not_in_message(&main_d, meta_naming("dev-zero", "velero-v1"), COFFER_ERR_KEY_READ,
                          secrets);
    /* the log keeps the detail */
    assert_true(ts_daemon_log_has(&main_d, "event=key_load_failed namespace=velero "
                                           "secret=big-secret"));
    assert_true(ts_daemon_log_has(&main_d, secrets));
    good_restore(&main_d);
}

/* A format name cut at 32 bytes inside a two-byte character still gives a UTF-8 message. */
static int utf8_valid(const char *s, size_t n)
{
    char clean[COFFER_MAX_MESSAGE];
    char *copy = strndup(s, n);
    size_t m = proto_message_utf8(clean, copy);
    int ok = m == n && memcmp(clean, s, n) == 0;
    free(copy);
    return ok;
}

static void test_error_text_utf8(void **state)
{
    char meta[512], text[4096];
    uint8_t data[16] = {0};
    struct ts_membuf out = {0};
    struct coffer_result res = {0};
    (void)state;
    /* "a" then é (0xC3 0xA9) sixteen times: 33 bytes, so %.32s cuts inside the last é */
    snprintf(meta, sizeof(meta),
             "{\"isEncrypted\":true,\"keyRetrieverType\":\"secret\",\"keyRetrieverConfig\":"
             "{\"namespace\":\"velero\",\"secretName\":\"coffer-key\"},\"format\":\"a%s\"}",
             "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
             "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9");
    assert_int_equal(
        run_stream(&main_d, COFFER_CLIENT_DECRYPT, NULL, meta, data, sizeof(data), &out, &res),
        COFFER_ERR_FORMAT);
    if (!utf8_valid(res.message, strlen(res.message)))
        fail_msg("the ERROR text is not UTF-8: %s", res.message);
    coffer_result_clear(&res);
    /* the encoder itself: cut at the limit only between characters, junk replaced */
    memset(text, 'x', sizeof(text));
    for (size_t i = COFFER_MAX_MESSAGE - 3; i + 1 < sizeof(text); i += 2)
        text[i] = '\xc3', text[i + 1] = '\xa9';
    text[sizeof(text) - 1] = '\0';
    {
        char clean[COFFER_MAX_MESSAGE];
        size_t n = proto_message_utf8(clean, text);
        assert_true(n == COFFER_MAX_MESSAGE - 1);
        assert_true(utf8_valid(clean, n));
        n = proto_message_utf8(clean, "ok \xff\xfe \xed\xa0\x80 \xc3");
        assert_int_equal(n, 10);
        assert_memory_equal(clean, "ok ?? ??? ", 10);
    }
    free(out.p);
}

/* ---- item 3: loaders never wedge ---- */

struct fifo_job {
    char name[64];
    int code;
    double took;
    char *message; /* strdup()ed */
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *fifo_restore(void *p)
{
    struct fifo_job *fj = p;
    uint8_t data[64] = {0};
    struct ts_membuf out = {0};
    struct coffer_result res = {0};
    double t0 = now_s();
    fj->code = run_stream(&main_d, COFFER_CLIENT_DECRYPT, NULL, meta_naming(fj->name, "velero-v1"),
                          data, sizeof(data), &out, &res);
    fj->took = now_s() - t0;
    fj->message = strdup(res.message);
    free(out.p);
    coffer_result_clear(&res);
    return NULL;
}

static void test_secret_not_regular(void **state)
{
    enum { NFIFO = 6 };
    struct fifo_job jobs[NFIFO];
    pthread_t th[NFIFO];
    char path[1024];
    (void)state;
    /* more FIFO Secrets than loader threads: a blocking open would take every loader */
    for (int i = 0; i < NFIFO; i++) {
        snprintf(jobs[i].name, sizeof(jobs[i].name), "fifo-%d", i);
        secret_dir(jobs[i].name, path, sizeof(path));
        unlink(path);
        assert_int_equal(mkfifo(path, 0600), 0);
        assert_int_equal(pthread_create(&th[i], NULL, fifo_restore, &jobs[i]), 0);
    }
    usleep(300 * 1000);
    good_restore(&main_d); /* served while (or after) the FIFO restores fail */
    for (int i = 0; i < NFIFO; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        if (jobs[i].code != COFFER_ERR_KEY_READ)
            fail_msg("FIFO Secret %s: %s", jobs[i].name, coffer_errname(jobs[i].code));
        /* refused as a FIFO, not ended by the io-timeout (3 s) behind a loader stuck in open */
        if (strstr(jobs[i].message, "not a regular file") == NULL ||
            strstr(jobs[i].message, "--io-timeout") != NULL)
            fail_msg("FIFO Secret %s: %s", jobs[i].name, jobs[i].message);
        free(jobs[i].message);
    }
    /* an oversized Secret file is refused from its size, unread */
    secret_dir("huge", path, sizeof(path));
    assert_int_equal(ts_write_file(path, "", 0), 0);
    assert_int_equal(truncate(path, 1L << 30), 0);
    expect_refused(&main_d, NULL, meta_naming("huge", "velero-v1"), (const uint8_t *)"x", 1,
                   COFFER_ERR_KEY_SIZE, "velero-v1", NULL);
    assert_true(ts_daemon_log_has(&main_d, "more than 4096 bytes"));
}

/* ---- item 8: locked memory ---- */

/* STATS counts the allocations RLIMIT_MEMLOCK refused to lock. */
static void test_stats_lock_failures(void **state)
{
    coffer_client *c = NULL;
    char msg[256], *json = NULL;
    json_t *o;
    json_error_t jerr;
    (void)state;
    assert_int_equal(coffer_client_connect(&c, main_d.sock, msg, sizeof(msg)), 0);
    assert_int_equal(coffer_client_stats(c, &json), 0);
    coffer_client_close(c);
    o = json_loads(json, 0, &jerr);
    assert_non_null(o);
    if (!json_is_integer(json_object_get(o, "secmemLockFailures")))
        fail_msg("STATS without secmemLockFailures: %s", json);
    json_decref(o);
    free(json);
}

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    tmp = ts_tmpdir();
    snprintf(secrets, sizeof(secrets), "%s/secrets", tmp);
    mkdir(secrets, 0700);
    ts_fill(key_main, sizeof(key_main), 1234);
    ts_fill(key_other, sizeof(key_other), 999);
    write_secret("coffer-key", key_main, sizeof(key_main));
    return daemon_start(&main_d, "main", NULL) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    int r = ts_daemon_stop(&main_d);
    if (r != 0) {
        fprintf(stderr, "cofferd exited %d\n", r);
        return -1;
    }
    if (getenv("COFFER_TEST_KEEP") == NULL)
        ts_rmtree(tmp);
    free(tmp);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plaintext_downgrade),
        cmocka_unit_test(test_wrong_key_sentence),
        cmocka_unit_test(test_errors_reveal_nothing),
        cmocka_unit_test(test_error_text_utf8),
        cmocka_unit_test(test_secret_not_regular),
        cmocka_unit_test(test_stats_lock_failures),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
