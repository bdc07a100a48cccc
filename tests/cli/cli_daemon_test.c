/* SPDX-License-Identifier: Apache-2.0 */
/* Tests of the coffer program in daemon mode, against the real cofferd started for this test. */
#include "cli_harness.h"
#include "test_daemon.h"
#include "test_support.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define MIB (1024u * 1024u)

static const size_t sizes[] = {0, 1, 16385, 5 * MIB};

/*
 * Two daemons share one secrets directory (velero/coffer-key from 'coffer keygen', velero/raw a
 * raw 32-byte key for velero-v1): "main" in the default format, "velero" started with
 * --format velero-v1 --encryption-secret raw.
 */
static char *d_tmp;
static char d_secrets[PATH_MAX];
static struct ts_daemon d_main, d_velero;

/* ---- starting and stopping cofferd ---- */

/* Start cofferd with the common flags and extra ones (NULL-terminated); 0 once it listens. */
static int d_start(struct ts_daemon *d, const char *name, ...)
{
    char *flags[] = {"--secrets-dir", d_secrets, "--namespace", "velero", "--workers", "2",
                     "--io-timeout",  "60",      NULL};
    va_list ap;
    int r;

    ts_daemon_paths(d, d_tmp, name);
    va_start(ap, name);
    r = ts_daemon_vstart(d, flags, NULL, 1000, ap);
    va_end(ap);
    if (r == 0 && d->pid > 0)
        return 0;
    if (r == TS_DAEMON_TIMEOUT)
        fprintf(stderr, "cofferd %s did not start (see %s)\n", name, d->log);
    else if (r != -1)
        fprintf(stderr, "cofferd %s exited at start (see %s)\n", name, d->log);
    return -1;
}

static int group_setup(void **state)
{
    char path[PATH_MAX + 64];
    char *argv[] = {(char *)ts_bin("coffer"), "keygen", "--out", path, NULL};
    uint8_t raw[32];
    (void)state;

    d_tmp = ts_tmpdir();
    snprintf(d_secrets, sizeof(d_secrets), "%s/secrets", d_tmp);
    if (mkdir(d_secrets, 0700) != 0)
        return -1;
    snprintf(path, sizeof(path), "%s/velero", d_secrets);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/velero/coffer-key", d_secrets);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/velero/raw", d_secrets);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/velero/raw/encryptionKey", d_secrets);
    ts_fill(raw, sizeof(raw), 31);
    raw[0] = 0; /* not all printable: a key, not a passphrase */
    if (ts_write_file(path, raw, sizeof(raw)) != 0)
        return -1;
    snprintf(path, sizeof(path), "%s/velero/coffer-key/encryptionKey", d_secrets);
    if (ts_run(argv, NULL, NULL, NULL, NULL) != 0)
        return -1;
    if (d_start(&d_main, "main", "--encryption-secret", "coffer-key", NULL) != 0)
        return -1;
    if (d_start(&d_velero, "velero", "--encryption-secret", "raw", "--format", "velero-v1", NULL) !=
        0)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    int r1 = ts_daemon_stop(&d_main), r2 = ts_daemon_stop(&d_velero);
    (void)state;

    if (r1 != 0 || r2 != 0)
        fprintf(stderr, "cofferd exited with %d and %d after SIGTERM\n", r1, r2);
    ts_rmtree(d_tmp);
    free(d_tmp);
    d_tmp = NULL;
    return r1 == 0 && r2 == 0 ? 0 : -1;
}

/* ---- helpers ---- */

static uint64_t json_u64(json_t *o, const char *name)
{
    json_t *v = json_object_get(o, name);
    assert_true(json_is_integer(v));
    return (uint64_t)json_integer_value(v);
}

/* Exactly one line on stderr, containing every given string. */
static void check_one_line(const char *first, ...)
{
    size_t len = 0;
    uint8_t *err = h_read(h_p("stderr"), &len);
    va_list ap;

    assert_true(len > 0);
    if (err[len - 1] != '\n' || memchr(err, '\n', len - 1) != NULL)
        fprintf(stderr, "expected one line, got: %s", (const char *)err);
    assert_int_equal(err[len - 1], '\n');
    assert_null(memchr(err, '\n', len - 1));
    va_start(ap, first);
    for (const char *s = first; s != NULL; s = va_arg(ap, const char *)) {
        if (strstr((const char *)err, s) == NULL)
            fprintf(stderr, "expected '%s' in: %s", s, (const char *)err);
        assert_non_null(strstr((const char *)err, s));
    }
    va_end(ap);
    free(err);
}

static void check_same(const char *path, const uint8_t *want, size_t n)
{
    size_t len = 0;
    uint8_t *got = h_read(path, &len);
    assert_int_equal(len, n);
    assert_true(n == 0 || memcmp(got, want, n) == 0);
    free(got);
}

/* A coffer-v1 file of a plaintext of n bytes: the magic, the header, the chunked body. */
static void check_coffer_v1(const char *path, const uint8_t *pt, size_t n)
{
    size_t len = 0;
    uint8_t *ct = h_read(path, &len);
    h_coffer_v1_check(ct, len, n);
    if (n >= 64)
        assert_null(memmem(ct, len, pt, 64));
    free(ct);
}

/* The key id cofferd reports for its encryption key. */
static char *daemon_key_id(const struct ts_daemon *d)
{
    assert_int_equal(h_coffer(NULL, h_p("health.json"), "health", "--socket", d->sock, NULL), 0);
    json_t *j = h_json_load(h_p("health.json"));
    char *id = strdup(json_string_value(json_object_get(j, "keyId")));
    json_decref(j);
    assert_int_equal(strlen(id), 16);
    return id;
}

/* ---- tests ---- */

static void test_health_stats(void **state)
{
    (void)state;
    assert_int_equal(h_coffer(NULL, h_p("h.json"), "health", "--socket", d_main.sock, NULL), 0);
    h_stderr_check_empty();
    json_t *h = h_json_load(h_p("h.json"));
    assert_string_equal(json_string_value(json_object_get(h, "status")), "ok");
    assert_string_equal(json_string_value(json_object_get(h, "format")), "coffer-v1");
    assert_string_equal(json_string_value(json_object_get(h, "namespace")), "velero");
    assert_string_equal(json_string_value(json_object_get(h, "secretName")), "coffer-key");
    assert_true(json_is_true(json_object_get(h, "encryption")));
    assert_int_equal(json_u64(h, "protocol"), 1);
    json_decref(h);
    assert_true(h_contains(h_p("h.json"), "\n  \"status\": \"ok\"")); /* indented */

    assert_int_equal(h_coffer(NULL, h_p("s1.json"), "stats", "--socket", d_main.sock, NULL), 0);
    json_t *s1 = h_json_load(h_p("s1.json"));
    free(h_write_random(h_p("pt"), 1000, 1));
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--socket", d_main.sock, "--in", h_p("pt"),
                              "--out", h_p("ct"), NULL),
                     0);
    assert_int_equal(h_coffer(NULL, h_p("s2.json"), "stats", "--socket", d_main.sock, NULL), 0);
    json_t *s2 = h_json_load(h_p("s2.json"));
    assert_int_equal(json_u64(s2, "jobsOk"), json_u64(s1, "jobsOk") + 1);
    assert_true(json_u64(s2, "bytesIn") >= json_u64(s1, "bytesIn") + 1000);
    assert_true(json_u64(s2, "connectionsTotal") > json_u64(s1, "connectionsTotal"));
    json_decref(s1);
    json_decref(s2);

    /* The velero daemon says so. */
    assert_int_equal(h_coffer(NULL, h_p("hv.json"), "health", "--socket", d_velero.sock, NULL), 0);
    h = h_json_load(h_p("hv.json"));
    assert_string_equal(json_string_value(json_object_get(h, "format")), "velero-v1");
    assert_string_equal(json_string_value(json_object_get(h, "secretName")), "raw");
    json_decref(h);
}

/* COFFER_SOCKET names the socket when --socket does not. */
static void test_socket_env(void **state)
{
    char env[PATH_MAX + 32];
    char *argv[] = {(char *)ts_bin("coffer"), "health", NULL};
    char *extra[] = {env, NULL};
    (void)state;

    snprintf(env, sizeof(env), "COFFER_SOCKET=%s", d_velero.sock);
    assert_int_equal(ts_run(argv, extra, NULL, h_p("h.json"), h_p("stderr")), 0);
    json_t *h = h_json_load(h_p("h.json"));
    assert_string_equal(json_string_value(json_object_get(h, "format")), "velero-v1");
    json_decref(h);
    /* --socket wins over the environment. */
    char *argv2[] = {(char *)ts_bin("coffer"), "health", "--socket", d_main.sock, NULL};
    assert_int_equal(ts_run(argv2, extra, NULL, h_p("h.json"), h_p("stderr")), 0);
    h = h_json_load(h_p("h.json"));
    assert_string_equal(json_string_value(json_object_get(h, "format")), "coffer-v1");
    json_decref(h);
}

/* One step of a round trip through the main daemon: verb from in to out, named or streamed. */
static void roundtrip_step(const char *verb, const char *in, const char *out, int use_stdio,
                           size_t size)
{
    int rc;

    if (use_stdio)
        rc = h_coffer(in, out, verb, "--socket", d_main.sock, NULL);
    else
        rc = h_coffer(NULL, NULL, verb, "--socket", d_main.sock, "--in", in, "--out", out, NULL);
    if (rc != 0)
        fprintf(stderr, "%s %zu bytes: exit %d\n", verb, size, rc);
    assert_int_equal(rc, 0);
    h_stderr_check_empty();
    if (!use_stdio)
        h_file_check_0600(out);
}

static void roundtrip(int use_stdio)
{
    int fds_before = ts_count_in_file(d_main.log, "input=fds");
    int stream_before = ts_count_in_file(d_main.log, "input=stream");

    for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
        uint8_t *pt = h_write_random(h_p("pt"), sizes[si], 200 + si);

        roundtrip_step("encrypt", h_p("pt"), h_p("ct"), use_stdio, sizes[si]);
        check_coffer_v1(h_p("ct"), pt, sizes[si]);

        roundtrip_step("decrypt", h_p("ct"), h_p("out"), use_stdio, sizes[si]);
        check_same(h_p("out"), pt, sizes[si]);
        free(pt);
        unlink(h_p("out"));
        unlink(h_p("ct"));
    }
    /* Named files went to the daemon as descriptors; standard input and output streamed. */
    int n = (int)(2 * sizeof(sizes) / sizeof(sizes[0]));
    if (use_stdio) {
        assert_int_equal(ts_count_in_file(d_main.log, "input=stream"), stream_before + n);
        assert_int_equal(ts_count_in_file(d_main.log, "input=fds"), fds_before);
    } else {
        assert_int_equal(ts_count_in_file(d_main.log, "input=fds"), fds_before + n);
        assert_int_equal(ts_count_in_file(d_main.log, "input=stream"), stream_before);
    }
}

static void test_roundtrip_files(void **state)
{
    (void)state;
    roundtrip(0);
}

static void test_roundtrip_stdio(void **state)
{
    (void)state;
    roundtrip(1);
}

/* One side a named file, the other standard input or output: the bytes stream. */
static void test_mixed_and_in_place(void **state)
{
    (void)state;
    uint8_t *pt = h_write_random(h_p("pt"), 300000, 3);
    assert_int_equal(
        h_coffer(NULL, h_p("ct"), "encrypt", "--socket", d_main.sock, "--in", h_p("pt"), NULL), 0);
    check_coffer_v1(h_p("ct"), pt, 300000);
    assert_int_equal(
        h_coffer(h_p("ct"), NULL, "decrypt", "--socket", d_main.sock, "--out", h_p("out"), NULL),
        0);
    check_same(h_p("out"), pt, 300000);
    /* A file encrypted and decrypted onto itself: the daemon writes a temporary file. */
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--socket", d_main.sock, "--in", h_p("pt"),
                              "--out", h_p("pt"), NULL),
                     0);
    check_coffer_v1(h_p("pt"), pt, 300000);
    assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--socket", d_main.sock, "--in", h_p("pt"),
                              "--out", h_p("pt"), NULL),
                     0);
    check_same(h_p("pt"), pt, 300000);
    /* A device is written in place. */
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--socket", d_main.sock, "--in", h_p("pt"),
                              "--out", "/dev/null", NULL),
                     0);
    /* An existing output is replaced. */
    h_write(h_p("out"), "old", 3);
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--socket", d_main.sock, "--in", h_p("pt"),
                              "--out", h_p("ct"), NULL),
                     0);
    assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--socket", d_main.sock, "--in", h_p("ct"),
                              "--out", h_p("out"), NULL),
                     0);
    check_same(h_p("out"), pt, 300000);
    free(pt);
}

/* What cofferd writes, the offline CLI reads, and the other way round. */
static void test_offline_interop(void **state)
{
    (void)state;
    uint8_t *pt = h_write_random(h_p("pt"), 5 * MIB + 3, 4);
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--socket", d_main.sock, "--in", h_p("pt"),
                              "--out", h_p("ct"), NULL),
                     0);
    /* The header names velero/coffer-key, which the offline CLI finds in the same directory. */
    assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--offline", "--secrets-dir", d_secrets,
                              "--in", h_p("ct"), "--out", h_p("out"), NULL),
                     0);
    check_same(h_p("out"), pt, 5 * MIB + 3);
    unlink(h_p("out"));

    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--offline", "--secrets-dir", d_secrets,
                              "--namespace", "velero", "--secret", "coffer-key", "--in", h_p("pt"),
                              "--out", h_p("oct"), NULL),
                     0);
    assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--socket", d_main.sock, "--in", h_p("oct"),
                              "--out", h_p("out"), NULL),
                     0);
    check_same(h_p("out"), pt, 5 * MIB + 3);
    unlink(h_p("out"));
    assert_int_equal(h_coffer(h_p("oct"), h_p("out"), "decrypt", "--socket", d_main.sock, NULL), 0);
    check_same(h_p("out"), pt, 5 * MIB + 3);
    unlink(h_p("out"));

    /* A file encrypted with a key file names no Secret: cofferd cannot serve it, and says so. */
    char keyfile[PATH_MAX + 64];
    snprintf(keyfile, sizeof(keyfile), "%s/velero/coffer-key/encryptionKey", d_secrets);
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--offline", "--key-file", keyfile, "--in",
                              h_p("pt"), "--out", h_p("kct"), NULL),
                     0);
    assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--socket", d_main.sock, "--in", h_p("kct"),
                              "--out", h_p("out"), NULL),
                     1);
    check_one_line("coffer: decrypting ", "key not found", "'file' cannot be served", "offline",
                   NULL);
    assert_false(h_exists(h_p("out")));
    free(pt);
}

/* velero-v1 has no header: the status metadata kept with the backup finds the key. */
static void test_velero_metadata(void **state)
{
    (void)state;
    for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
        size_t n = sizes[si], len = 0;
        uint8_t *pt = h_write_random(h_p("pt"), n, 300 + si);

        /* The velero daemon's own format. */
        assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--socket", d_velero.sock, "--in",
                                  h_p("pt"), "--out", h_p("vct"), "--status-out", h_p("vst.json"),
                                  NULL),
                         0);
        free(h_read(h_p("vct"), &len));
        assert_int_equal(len, n + 28);
        json_t *st = h_json_load(h_p("vst.json"));
        assert_string_equal(json_string_value(json_object_get(st, "format")), "velero-v1");
        assert_string_equal(json_string_value(json_object_get(
                                json_object_get(st, "keyRetrieverConfig"), "secretName")),
                            "raw");
        json_decref(st);

        /* Restored by the other daemon, whose own Secret is another key, through the metadata. */
        assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--socket", d_main.sock, "--metadata",
                                  h_p("vst.json"), "--in", h_p("vct"), "--out", h_p("out"), NULL),
                         0);
        check_same(h_p("out"), pt, n);
        unlink(h_p("out"));
        assert_int_equal(h_coffer(h_p("vct"), h_p("out"), "decrypt", "--socket", d_main.sock,
                                  "--metadata", h_p("vst.json"), NULL),
                         0);
        check_same(h_p("out"), pt, n);
        unlink(h_p("out"));
        /* Offline with the same Secret. */
        assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--offline", "--format", "velero-v1",
                                  "--secrets-dir", d_secrets, "--namespace", "velero", "--secret",
                                  "raw", "--in", h_p("vct"), "--out", h_p("out"), NULL),
                         0);
        check_same(h_p("out"), pt, n);
        unlink(h_p("out"));
        free(pt);
    }

    /* Without the metadata the file is not coffer-v1: the message says what to give. */
    assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--socket", d_main.sock, "--in", h_p("vct"),
                              "--out", h_p("out"), NULL),
                     1);
    check_one_line("coffer: decrypting ", "not a coffer-v1 file", "--metadata", NULL);
    assert_false(h_exists(h_p("out")));

    /* A per-job format: the velero daemon writes coffer-v1 when asked (its raw key is 32 bytes). */
    uint8_t *pt = h_write_random(h_p("pt"), 70000, 5);
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--socket", d_velero.sock, "--format",
                              "coffer-v1", "--in", h_p("pt"), "--out", h_p("ct"), NULL),
                     0);
    check_coffer_v1(h_p("ct"), pt, 70000);
    assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--socket", d_main.sock, "--in", h_p("ct"),
                              "--out", h_p("out"), NULL),
                     0);
    check_same(h_p("out"), pt, 70000);
    unlink(h_p("out"));
    /* ... and the main daemon's key (base64 text from keygen) is no velero-v1 key. */
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--socket", d_main.sock, "--format",
                              "velero-v1", "--in", h_p("pt"), "--out", h_p("bad"), NULL),
                     1);
    check_one_line("coffer: encrypting ", "wrong size", NULL);
    assert_false(h_exists(h_p("bad")));

    /* Offline velero-v1 output restores through the daemon with metadata naming its Secret. */
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--offline", "--format", "velero-v1",
                              "--secrets-dir", d_secrets, "--namespace", "velero", "--secret",
                              "raw", "--in", h_p("pt"), "--out", h_p("ovct"), "--status-out",
                              h_p("ovst.json"), NULL),
                     0);
    assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--socket", d_main.sock, "--metadata",
                              h_p("ovst.json"), "--in", h_p("ovct"), "--out", h_p("out"), NULL),
                     0);
    check_same(h_p("out"), pt, 70000);
    free(pt);
}

/* Bare cobblestone: the metadata names the format, --context must match. */
static void test_cobblestone_context(void **state)
{
    (void)state;
    uint8_t *pt = h_write_random(h_p("pt"), 40000, 6);
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--socket", d_main.sock, "--format",
                              "cobblestone", "--context", "cluster-a/backup-1", "--in", h_p("pt"),
                              "--out", h_p("ct"), "--status-out", h_p("st.json"), NULL),
                     0);
    size_t len = 0;
    free(h_read(h_p("ct"), &len));
    assert_int_equal(len, h_chunked_size(40000));
    assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--socket", d_main.sock, "--metadata",
                              h_p("st.json"), "--context", "cluster-a/backup-1", "--in", h_p("ct"),
                              "--out", h_p("out"), NULL),
                     0);
    check_same(h_p("out"), pt, 40000);
    unlink(h_p("out"));
    assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--socket", d_main.sock, "--metadata",
                              h_p("st.json"), "--format", "cobblestone", "--context",
                              "cluster-b/backup-1", "--in", h_p("ct"), "--out", h_p("out"), NULL),
                     1);
    check_one_line("coffer: decrypting ", "wrong key", NULL);
    assert_false(h_exists(h_p("out")));
    free(pt);
}

/* A damaged file: exit 1, one clear line, no output file and no temporary file left. */
static void test_tampered(void **state)
{
    size_t len = 0;
    (void)state;
    free(h_write_random(h_p("pt"), 100000, 7));
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--socket", d_main.sock, "--in", h_p("pt"),
                              "--out", h_p("ct"), NULL),
                     0);
    uint8_t *ct = h_read(h_p("ct"), &len);
    ct[len / 2] ^= 0x01;
    h_write(h_p("bad"), ct, len);
    int before = h_count_entries();

    assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--socket", d_main.sock, "--in", h_p("bad"),
                              "--out", h_p("out"), NULL),
                     1);
    check_one_line("coffer: decrypting ", "authentication failed", NULL);
    assert_false(h_exists(h_p("out")));
    assert_int_equal(h_count_entries(), before);
    /* Streamed to a file: the same. */
    assert_int_equal(
        h_coffer(h_p("bad"), NULL, "decrypt", "--socket", d_main.sock, "--out", h_p("out"), NULL),
        1);
    check_one_line("coffer: decrypting standard input: ", "authentication failed", NULL);
    assert_false(h_exists(h_p("out")));
    assert_int_equal(h_count_entries(), before);
    /* Truncated: cut at a chunk boundary after the header. */
    size_t hlen = 12 + ((size_t)ct[10] << 8 | ct[11]);
    ct[len / 2] ^= 0x01;
    h_write(h_p("short"), ct, hlen + 56 + 16400 * 2);
    before = h_count_entries();
    assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--socket", d_main.sock, "--in", h_p("short"),
                              "--out", h_p("out"), NULL),
                     1);
    check_one_line("coffer: decrypting ", "truncated", NULL);
    assert_false(h_exists(h_p("out")));
    assert_int_equal(h_count_entries(), before);
    /* An existing output file is left untouched by a failed job. */
    h_write(h_p("out"), "old", 3);
    assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--socket", d_main.sock, "--in", h_p("bad"),
                              "--out", h_p("out"), NULL),
                     1);
    check_same(h_p("out"), (const uint8_t *)"old", 3);
    unlink(h_p("out"));
    free(ct);

    /* velero-v1: nothing at all is released before its tag verified, even on standard output. */
    free(h_write_random(h_p("pt"), 3 * MIB, 8));
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--socket", d_velero.sock, "--in", h_p("pt"),
                              "--out", h_p("vct"), "--status-out", h_p("vst.json"), NULL),
                     0);
    ct = h_read(h_p("vct"), &len);
    ct[len - 1] ^= 0x80;
    h_write(h_p("vbad"), ct, len);
    assert_int_equal(h_coffer(h_p("vbad"), h_p("vout"), "decrypt", "--socket", d_main.sock,
                              "--metadata", h_p("vst.json"), NULL),
                     1);
    check_one_line("coffer: decrypting standard input: ", "authentication failed", NULL);
    size_t outlen = 0;
    free(h_read(h_p("vout"), &outlen));
    assert_int_equal(outlen, 0);
    free(ct);
}

/* No daemon at the socket: say so, and how to start one. */
static void test_not_running(void **state)
{
    (void)state;
    free(h_write_random(h_p("pt"), 100, 9));
    int before = h_count_entries() + !h_exists(h_p("stderr"));
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--socket", h_p("absent.sock"), "--in",
                              h_p("pt"), "--out", h_p("ct"), NULL),
                     1);
    check_one_line("coffer: connecting to cofferd at ", "absent.sock", "cofferd is not running at",
                   "start it with 'cofferd --socket", NULL);
    assert_false(h_exists(h_p("ct")));
    assert_int_equal(h_count_entries(), before);

    /* A socket file nobody listens on (a daemon that died): connection refused. */
    struct sockaddr_un sa;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    assert_true(strlen(h_p("dead.sock")) < sizeof(sa.sun_path));
    memcpy(sa.sun_path, h_p("dead.sock"), strlen(h_p("dead.sock")));
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(fd);
    assert_int_equal(h_coffer(h_p("pt"), h_p("ct"), "decrypt", "--socket", h_p("dead.sock"), NULL),
                     1);
    check_one_line("cofferd is not running at", "dead.sock", "Connection refused", NULL);
    /* health exits 2 (unavailable) when cofferd cannot be reached */
    assert_int_equal(h_coffer(NULL, NULL, "health", "--socket", h_p("dead.sock"), NULL), 2);
    check_one_line("coffer: connecting to cofferd at ", "cofferd is not running at", NULL);
    assert_int_equal(h_coffer(NULL, NULL, "stats", "--socket", h_p("dead.sock"), NULL), 1);
    /* A socket path too long for sockaddr_un. */
    char longpath[300];
    memset(longpath, 'a', sizeof(longpath) - 1);
    longpath[0] = '/';
    longpath[sizeof(longpath) - 1] = '\0';
    assert_int_equal(h_coffer(NULL, NULL, "health", "--socket", longpath, NULL), 2);
    check_one_line("longer than", NULL);
}

static void test_status_out(void **state)
{
    size_t len = 0, ctlen = 0;
    const char *prefix = "{\"isEncrypted\":true,\"keyRetrieverType\":\"secret\","
                         "\"keyRetrieverConfig\":{\"namespace\":\"velero\",\"secretName\":"
                         "\"coffer-key\"},\"format\":\"coffer-v1\",\"keyId\":\"";
    (void)state;

    char *id = daemon_key_id(&d_main);
    uint8_t *pt = h_write_random(h_p("pt"), 123456, 10);
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--socket", d_main.sock, "--in", h_p("pt"),
                              "--out", h_p("ct"), "--status-out", h_p("st.json"), NULL),
                     0);
    h_file_check_0600(h_p("st.json"));
    free(h_read(h_p("ct"), &ctlen));
    uint8_t *text = h_read(h_p("st.json"), &len);
    /* One line of compact JSON, EncryptionStatus's fields first, then the byte counts. */
    assert_int_equal(text[len - 1], '\n');
    assert_null(memchr(text, '\n', len - 1));
    assert_memory_equal(text, prefix, strlen(prefix));
    assert_memory_equal(text + strlen(prefix), id, 16);
    char tail[128];
    snprintf(tail, sizeof(tail), "\",\"bytesIn\":123456,\"bytesOut\":%zu}\n", ctlen);
    assert_string_equal((const char *)text + strlen(prefix) + 16, tail);
    /* The header holds the same metadata (without the counts). */
    assert_int_equal(h_coffer(NULL, h_p("inspect.json"), "inspect", "--in", h_p("ct"), NULL), 0);
    json_t *i = h_json_load(h_p("inspect.json"));
    json_t *j = h_json_load(h_p("st.json"));
    assert_int_equal(json_object_del(j, "bytesIn"), 0);
    assert_int_equal(json_object_del(j, "bytesOut"), 0);
    assert_true(json_equal(i, j));
    json_decref(i);
    json_decref(j);
    free(text);

    /* Streamed: the same counts. */
    assert_int_equal(h_coffer(h_p("pt"), h_p("ct2"), "encrypt", "--socket", d_main.sock,
                              "--status-out", h_p("st2.json"), NULL),
                     0);
    j = h_json_load(h_p("st2.json"));
    assert_int_equal(json_u64(j, "bytesIn"), 123456);
    assert_int_equal(json_u64(j, "bytesOut"), ctlen);
    json_decref(j);

    /* A restore's status: the backup's metadata, the ciphertext in and the plaintext out. */
    assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--socket", d_main.sock, "--in", h_p("ct"),
                              "--out", h_p("out"), "--status-out", h_p("dst.json"), NULL),
                     0);
    j = h_json_load(h_p("dst.json"));
    assert_string_equal(json_string_value(json_object_get(j, "keyId")), id);
    assert_int_equal(json_u64(j, "bytesIn"), ctlen);
    assert_int_equal(json_u64(j, "bytesOut"), 123456);
    json_decref(j);

    /* The status file is valid --metadata input (the counts are ignored). */
    assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--socket", d_main.sock, "--metadata",
                              h_p("st.json"), "--in", h_p("ct"), "--out", h_p("out2"), NULL),
                     0);
    check_same(h_p("out2"), pt, 123456);

    /* Format none: the data passes through, the metadata says it is not encrypted. */
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--socket", d_main.sock, "--format", "none",
                              "--in", h_p("pt"), "--out", h_p("nct"), "--status-out",
                              h_p("nst.json"), NULL),
                     0);
    check_same(h_p("nct"), pt, 123456);
    j = h_json_load(h_p("nst.json"));
    assert_true(json_is_false(json_object_get(j, "isEncrypted")));
    assert_int_equal(json_u64(j, "bytesOut"), 123456);
    json_decref(j);
    /* a daemon with encryption on refuses to restore it as plaintext (issue 10: no downgrade) */
    assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--socket", d_main.sock, "--metadata",
                              h_p("nst.json"), "--in", h_p("nct"), "--out", h_p("nout"), NULL),
                     1);
    assert_false(h_exists(h_p("nout")));

    /* A failed job writes no status file either. */
    assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--socket", d_main.sock, "--in", h_p("pt"),
                              "--out", h_p("out3"), "--status-out", h_p("st3.json"), NULL),
                     1);
    assert_false(h_exists(h_p("st3.json")));
    assert_false(h_exists(h_p("out3")));
    free(pt);
    free(id);
}

static void test_metadata_file_errors(void **state)
{
    (void)state;
    free(h_write_random(h_p("ct"), 100, 11));
    assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--socket", d_main.sock, "--metadata",
                              h_p("absent.json"), "--in", h_p("ct"), "--out", h_p("out"), NULL),
                     1);
    check_one_line("coffer: reading the status metadata ", "absent.json", NULL);
    h_write(h_p("bad.json"), "{\"isEncrypted\":", 15);
    assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--socket", d_main.sock, "--metadata",
                              h_p("bad.json"), "--in", h_p("ct"), "--out", h_p("out"), NULL),
                     1);
    check_one_line("coffer: reading the status metadata ", "not JSON", NULL);
    /* Valid JSON that cofferd refuses: its message comes through. */
    h_write(h_p("odd.json"), "{\"isEncrypted\":true}\n", 21);
    assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--socket", d_main.sock, "--metadata",
                              h_p("odd.json"), "--in", h_p("ct"), "--out", h_p("out"), NULL),
                     1);
    check_one_line("coffer: decrypting ", "status metadata is malformed", NULL);
    /* Larger than any metadata. */
    char *big = malloc(40000);
    memset(big, ' ', 40000);
    big[0] = '{';
    big[39999] = '}';
    h_write(h_p("big.json"), big, 40000);
    free(big);
    assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--socket", d_main.sock, "--metadata",
                              h_p("big.json"), "--in", h_p("ct"), "--out", h_p("out"), NULL),
                     1);
    check_one_line("larger than", NULL);
    assert_false(h_exists(h_p("out")));
}

struct usage_case {
    const char *args[12];
    const char *message;
};

static void test_usage(void **state)
{
    static const struct usage_case cases[] = {
        {{"encrypt", "--key-file", "k", NULL}, "--key-file needs --offline"},
        {{"decrypt", "--secrets-dir", "d", NULL}, "--secrets-dir needs --offline"},
        {{"decrypt", "--namespace", "n", NULL}, "--namespace needs --offline"},
        {{"encrypt", "--backend", "openssl", NULL}, "--backend needs --offline"},
        {{"decrypt", "--spool-dir", "d", NULL}, "--spool-dir needs --offline"},
        {{"encrypt", "--offline", "--key-file", "k", "--socket", "s", NULL}, "--socket is for"},
        {{"decrypt", "--offline", "--key-file", "k", "--metadata", "m", NULL}, "--metadata is for"},
        {{"decrypt", "--offline", "--key-file", "k", "--status-out", "s", NULL}, "does not take"},
        {{"encrypt", "--metadata", "m", NULL}, "does not take"},
        {{"health", "--in", "x", NULL}, "does not take"},
        {{"stats", "extra", NULL}, "unexpected argument"},
        {{"health", "--socket", "a", "--socket", "b", NULL}, "twice"},
        {{"encrypt", "--context", "c", NULL}, "--context"},
    };
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = h_coffer_argv(NULL, NULL, cases[i].args);
        if (rc != 2 || !h_contains(h_p("stderr"), cases[i].message))
            fprintf(stderr, "usage case %zu: exit %d, expected 2 and '%s'\n", i, rc,
                    cases[i].message);
        assert_int_equal(rc, 2);
        assert_true(h_contains(h_p("stderr"), cases[i].message));
        assert_true(h_contains(h_p("stderr"), "usage: coffer "));
    }
    static const char *const cmds[] = {"health", "stats", "encrypt", "decrypt"};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(h_coffer(NULL, h_p("help"), cmds[i], "--help", NULL), 0);
        assert_true(h_contains(h_p("help"), "--socket PATH"));
    }
    assert_true(h_contains(h_p("help"), "--metadata FILE"));
    assert_int_equal(h_coffer(NULL, h_p("help"), "--help", NULL), 0);
    assert_true(h_contains(h_p("help"), "coffer health"));
    assert_true(h_contains(h_p("help"), "coffer encrypt --offline"));
}

static void test_progress(void **state)
{
    (void)state;
    free(h_write_random(h_p("pt"), 2 * MIB, 12));
    /* Not a terminal: nothing by default (checked by the round trips). Forced: a bar to 100%. */
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--socket", d_main.sock, "--in", h_p("pt"),
                              "--out", h_p("ct"), "--progress", "always", NULL),
                     0);
    assert_true(h_contains(h_p("stderr"), "coffer: encrypting ["));
    assert_true(h_contains(h_p("stderr"), "100%"));
    assert_int_equal(h_coffer(h_p("pt"), h_p("ct2"), "encrypt", "--socket", d_main.sock,
                              "--progress", "always", NULL),
                     0);
    assert_true(h_contains(h_p("stderr"), "coffer: encrypting ["));
    assert_true(h_contains(h_p("stderr"), "100%"));
    /* A failure starts its message on a line of its own. */
    assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--socket", d_main.sock, "--format",
                              "velero-v1", "--in", h_p("ct"), "--out", h_p("out"), "--progress",
                              "always", NULL),
                     1);
    assert_true(h_contains(h_p("stderr"), "\ncoffer: decrypting"));
    assert_false(h_exists(h_p("out")));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_health_stats, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_socket_env, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip_files, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip_stdio, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_mixed_and_in_place, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_offline_interop, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_velero_metadata, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_cobblestone_context, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_tampered, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_not_running, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_status_out, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_metadata_file_errors, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_usage, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_progress, h_setup, h_teardown),
    };
    if (access(ts_bin("coffer"), X_OK) != 0 || access(ts_bin("cofferd"), X_OK) != 0)
        ts_skip("coffer or cofferd has not been built in %s", COFFER_BIN_DIR);
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
