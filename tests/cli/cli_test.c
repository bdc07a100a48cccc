/* SPDX-License-Identifier: Apache-2.0 */
/* Tests of the built coffer program: keygen, round trips, status, inspect, keys, failures, usage.
 */
#include "cli_harness.h"
#include "test_support.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "engine_gcm.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MIB (1024u * 1024u)

static const char *const magic = "COFFER\0\1";

/* The formats, each with its key file and context. */
struct fmt_case {
    const char *format;
    const char *key;     /* file name in the test directory, NULL for none */
    const char *context; /* NULL: no --context */
};

static const struct fmt_case fmt_cases[] = {
    {"coffer-v1", "key", NULL},
    {"velero-v1", "vkey", NULL},
    {"cobblestone", "key", "cluster-a/backup-42"},
    {"cobblestone-128", "key16", "ctx"},
    {"none", NULL, NULL},
};

static const size_t sizes[] = {0, 1, 16384, 16385, 5 * MIB};

/* Key files: "key" from keygen (base64), "vkey" 32 raw bytes, "key16" 16 raw bytes. */
static void make_keys(void)
{
    uint8_t raw[32];

    assert_int_equal(h_coffer(NULL, NULL, "keygen", "--out", h_p("key"), NULL), 0);
    ts_fill(raw, sizeof(raw), 7);
    raw[0] = 0; /* never all printable */
    h_write(h_p("vkey"), raw, 32);
    h_write(h_p("key16"), raw, 16);
}

/* Append the job options of a format case to args (from index n); returns the new n. */
static size_t push_fmt(const char **args, size_t n, const struct fmt_case *c)
{
    args[n++] = "--offline";
    if (c->key != NULL) {
        args[n++] = "--key-file";
        args[n++] = h_p(c->key);
    }
    args[n++] = "--format";
    args[n++] = c->format;
    if (c->context != NULL) {
        args[n++] = "--context";
        args[n++] = c->context;
    }
    return n;
}

static void check_ciphertext(const struct fmt_case *c, const uint8_t *pt, size_t n,
                             const uint8_t *ct, size_t ctlen)
{
    if (strcmp(c->format, "none") == 0) {
        assert_int_equal(ctlen, n);
        assert_true(n == 0 || memcmp(ct, pt, n) == 0);
    } else if (strcmp(c->format, "velero-v1") == 0) {
        assert_int_equal(ctlen, n + 28);
    } else if (strcmp(c->format, "coffer-v1") == 0) {
        h_coffer_v1_check(ct, ctlen, n);
    } else {
        assert_int_equal(ctlen, h_chunked_size(n));
    }
    if (n >= 64 && strcmp(c->format, "none") != 0)
        assert_null(memmem(ct, ctlen, pt, 64)); /* no plaintext run in the ciphertext */
}

/*
 * args = {verb, the format case's options, --in in, --out out} (in and out NULL: neither, the job
 * uses standard input and output), NULL-terminated; returns the count, for more options.
 */
static size_t job_args(const char **args, const char *verb, const struct fmt_case *c,
                       const char *in, const char *out)
{
    size_t n = 0;
    args[n++] = verb;
    n = push_fmt(args, n, c);
    if (in != NULL) {
        args[n++] = "--in";
        args[n++] = in;
        args[n++] = "--out";
        args[n++] = out;
    }
    args[n] = NULL;
    return n;
}

/* One step of a round trip: verb from file in to file out, named or as standard input/output. */
static void roundtrip_step(const char *verb, const struct fmt_case *c, const char *in,
                           const char *out, int use_stdio, size_t size)
{
    const char *args[32];
    int rc;

    if (use_stdio) {
        job_args(args, verb, c, NULL, NULL);
        rc = h_coffer_argv(in, out, args);
    } else {
        job_args(args, verb, c, in, out);
        rc = h_coffer_argv(NULL, NULL, args);
    }
    if (rc != 0)
        fprintf(stderr, "%s %s %zu bytes: exit %d\n", verb, c->format, size, rc);
    assert_int_equal(rc, 0);
    if (!use_stdio)
        h_file_check_0600(out);
}

static void roundtrip(int use_stdio)
{
    make_keys();
    for (size_t ci = 0; ci < sizeof(fmt_cases) / sizeof(fmt_cases[0]); ci++) {
        const struct fmt_case *c = &fmt_cases[ci];
        for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
            size_t ctlen = 0, outlen = 0;
            uint8_t *pt = h_write_random(h_p("pt"), sizes[si], 100 + si);

            roundtrip_step("encrypt", c, h_p("pt"), h_p("ct"), use_stdio, sizes[si]);
            uint8_t *ct = h_read(h_p("ct"), &ctlen);
            check_ciphertext(c, pt, sizes[si], ct, ctlen);

            roundtrip_step("decrypt", c, h_p("ct"), h_p("out"), use_stdio, sizes[si]);
            uint8_t *out = h_read(h_p("out"), &outlen);
            assert_int_equal(outlen, sizes[si]);
            assert_true(outlen == 0 || memcmp(out, pt, outlen) == 0);
            /* Nothing on stderr for a successful job without a terminal. */
            h_stderr_check_empty();
            free(pt);
            free(ct);
            free(out);
            unlink(h_p("out"));
        }
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

/* coffer-v1 is recognised without --format; a decrypt replaces an existing output file. */
static void test_decrypt_autodetect_and_replace(void **state)
{
    size_t len = 0;
    (void)state;
    make_keys();
    uint8_t *pt = h_write_random(h_p("pt"), 70000, 3);
    h_write(h_p("out"), "old", 3);
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--offline", "--key-file", h_p("key"), "--in",
                              h_p("pt"), "--out", h_p("ct"), NULL),
                     0);
    assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--offline", "--key-file", h_p("key"), "--in",
                              h_p("ct"), "--out", h_p("out"), NULL),
                     0);
    uint8_t *out = h_read(h_p("out"), &len);
    assert_int_equal(len, 70000);
    assert_memory_equal(out, pt, len);
    free(out);
    /* Other formats must be named. */
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--offline", "--key-file", h_p("vkey"),
                              "--format", "velero-v1", "--in", h_p("pt"), "--out", h_p("vct"),
                              NULL),
                     0);
    assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--offline", "--key-file", h_p("vkey"), "--in",
                              h_p("vct"), "--out", h_p("vout"), NULL),
                     1);
    assert_true(h_contains(h_p("stderr"), "not a coffer-v1 file"));
    assert_true(h_contains(h_p("stderr"), "--format"));
    assert_false(h_exists(h_p("vout")));
    free(pt);
}

static void test_keygen(void **state)
{
    size_t len = 0, len2 = 0;
    uint8_t dec[64];
    (void)state;

    assert_int_equal(h_coffer(NULL, h_p("k1"), "keygen", NULL), 0);
    assert_int_equal(h_coffer(NULL, h_p("k2"), "keygen", NULL), 0);
    uint8_t *k1 = h_read(h_p("k1"), &len);
    uint8_t *k2 = h_read(h_p("k2"), &len2);
    assert_int_equal(len, 45);
    assert_int_equal(k1[44], '\n');
    assert_int_equal(EVP_DecodeBlock(dec, k1, 44), 33); /* 32 bytes + the padding's 0 byte */
    assert_int_equal(k1[43], '=');
    assert_int_equal(k1[42] == '=', 0);
    assert_int_equal(len2, 45);
    assert_memory_not_equal(k1, k2, 44);
    free(k2);

    /* --out: mode 0600, never overwritten. */
    assert_int_equal(h_coffer(NULL, NULL, "keygen", "--out", h_p("k3"), NULL), 0);
    h_file_check_0600(h_p("k3"));
    uint8_t *k3 = h_read(h_p("k3"), &len);
    assert_int_equal(len, 45);
    assert_int_equal(h_coffer(NULL, NULL, "keygen", "--out", h_p("k3"), NULL), 1);
    assert_true(h_contains(h_p("stderr"), "never overwritten"));
    uint8_t *again = h_read(h_p("k3"), &len2);
    assert_int_equal(len2, 45);
    assert_memory_equal(again, k3, 45);
    /* A dangling symlink is not followed into a new file either. */
    assert_int_equal(symlink(h_p("nowhere"), h_p("dangling")), 0);
    assert_int_equal(h_coffer(NULL, NULL, "keygen", "--out", h_p("dangling"), NULL), 1);
    assert_false(h_exists(h_p("nowhere")));
    /* Key bytes never go to stderr. */
    assert_false(h_contains(h_p("stderr"), (const char *)k1));
    free(k1);
    free(k3);
    free(again);
}

static void test_status_out(void **state)
{
    size_t len = 0;
    (void)state;
    make_keys();
    free(h_write_random(h_p("pt"), 1000, 1));

    for (size_t ci = 0; ci < sizeof(fmt_cases) / sizeof(fmt_cases[0]); ci++) {
        const struct fmt_case *c = &fmt_cases[ci];
        const char *args[32];
        size_t n = job_args(args, "encrypt", c, h_p("pt"), h_p("ct"));
        args[n++] = "--status-out";
        args[n++] = h_p("status.json");
        args[n] = NULL;
        assert_int_equal(h_coffer_argv(NULL, NULL, args), 0);
        h_file_check_0600(h_p("status.json"));

        uint8_t *text = h_read(h_p("status.json"), &len);
        assert_true(len > 2);
        assert_int_equal(text[len - 1], '\n');
        json_t *j = h_json_load(h_p("status.json"));
        if (strcmp(c->format, "none") == 0) {
            assert_true(json_is_false(json_object_get(j, "isEncrypted")));
        } else {
            /* EncryptionStatus's fields first, in order. */
            assert_memory_equal(text,
                                "{\"isEncrypted\":true,\"keyRetrieverType\":\"file\","
                                "\"keyRetrieverConfig\":",
                                strlen("{\"isEncrypted\":true,\"keyRetrieverType\":\"file\","
                                       "\"keyRetrieverConfig\":"));
            assert_string_equal(json_string_value(json_object_get(
                                    json_object_get(j, "keyRetrieverConfig"), "name")),
                                c->key);
            assert_string_equal(json_string_value(json_object_get(j, "format")), c->format);
            const char *id = json_string_value(json_object_get(j, "keyId"));
            assert_non_null(id);
            assert_int_equal(strlen(id), 16);
            assert_int_equal(strspn(id, "0123456789abcdef"), 16);
        }
        if (strcmp(c->format, "coffer-v1") == 0) {
            /* The header holds the same metadata. */
            assert_int_equal(
                h_coffer(NULL, h_p("inspect.json"), "inspect", "--in", h_p("ct"), NULL), 0);
            json_t *i = h_json_load(h_p("inspect.json"));
            assert_true(json_equal(i, j));
            json_decref(i);
        }
        json_decref(j);
        free(text);
    }
}

static void test_inspect(void **state)
{
    size_t len = 0;
    (void)state;
    make_keys();
    free(h_write_random(h_p("pt"), 40000, 1));
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--offline", "--key-file", h_p("key"), "--in",
                              h_p("pt"), "--out", h_p("ct"), NULL),
                     0);
    /* From stdin, and without any key. */
    assert_int_equal(h_coffer(h_p("ct"), h_p("i.json"), "inspect", NULL), 0);
    json_t *j = h_json_load(h_p("i.json"));
    assert_true(json_is_true(json_object_get(j, "isEncrypted")));
    assert_string_equal(json_string_value(json_object_get(j, "keyRetrieverType")), "file");
    assert_string_equal(json_string_value(json_object_get(j, "format")), "coffer-v1");
    json_decref(j);

    /* Not a coffer-v1 file; an empty file; a header cut short. */
    assert_int_equal(h_coffer(NULL, h_p("i2.json"), "inspect", "--in", h_p("pt"), NULL), 1);
    assert_true(h_contains(h_p("stderr"), "coffer: inspecting"));
    assert_true(h_contains(h_p("stderr"), "not a coffer-v1 file"));
    h_write(h_p("empty"), "", 0);
    assert_int_equal(h_coffer(NULL, NULL, "inspect", "--in", h_p("empty"), NULL), 1);
    uint8_t *ct = h_read(h_p("ct"), &len);
    h_write(h_p("short"), ct, 20);
    assert_int_equal(h_coffer(NULL, NULL, "inspect", "--in", h_p("short"), NULL), 1);
    assert_true(h_contains(h_p("stderr"), "truncated"));
    /* A header whose length field exceeds the limit is refused before reading it. */
    uint8_t big[12];
    memcpy(big, magic, 8);
    big[8] = 0x7f;
    big[9] = big[10] = big[11] = 0xff;
    h_write(h_p("huge"), big, sizeof(big));
    assert_int_equal(h_coffer(NULL, NULL, "inspect", "--in", h_p("huge"), NULL), 1);
    assert_true(h_contains(h_p("stderr"), "exceeds"));
    /* Control characters in metadata are escaped, never sent raw to the terminal. */
    const char *meta = "{\"isEncrypted\":true,\"keyRetrieverType\":\"file\","
                       "\"keyRetrieverConfig\":{\"name\":\"\\u001b[31mred\"},"
                       "\"format\":\"coffer-v1\",\"keyId\":\"0011223344556677\"}";
    uint8_t hdr[512];
    size_t mlen = strlen(meta);
    memcpy(hdr, magic, 8);
    hdr[8] = 0;
    hdr[9] = 0;
    hdr[10] = (uint8_t)(mlen >> 8);
    hdr[11] = (uint8_t)mlen;
    memcpy(hdr + 12, meta, mlen);
    h_write(h_p("esc"), hdr, 12 + mlen);
    assert_int_equal(h_coffer(NULL, h_p("esc.json"), "inspect", "--in", h_p("esc"), NULL), 0);
    assert_false(h_contains(h_p("esc.json"), "\033"));
    assert_true(h_contains(h_p("esc.json"), "\\u001B") || h_contains(h_p("esc.json"), "\\u001b"));
    free(ct);
}

/* <dir>/<ns>/<name>/encryptionKey holding the given file's bytes. */
static void make_secret(const char *ns, const char *name, const char *keyfile)
{
    char path[4096];
    size_t len = 0;
    snprintf(path, sizeof(path), "%s/secrets/%s", h_dir(), ns);
    mkdir(h_p("secrets"), 0700);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/secrets/%s/%s", h_dir(), ns, name);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/secrets/%s/%s/encryptionKey", h_dir(), ns, name);
    uint8_t *k = h_read(h_p(keyfile), &len);
    h_write(path, k, len);
    free(k);
}

static void test_secrets_dir(void **state)
{
    size_t len = 0;
    (void)state;
    make_keys();
    assert_int_equal(h_coffer(NULL, NULL, "keygen", "--out", h_p("other"), NULL), 0);
    make_secret("velero", "coffer-key", "key");
    make_secret("backup", "same-key", "key");
    make_secret("velero", "rotated", "other");
    uint8_t *pt = h_write_random(h_p("pt"), 50000, 9);

    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--offline", "--secrets-dir", h_p("secrets"),
                              "--namespace", "velero", "--secret", "coffer-key", "--in", h_p("pt"),
                              "--out", h_p("ct"), "--status-out", h_p("st.json"), NULL),
                     0);
    json_t *j = h_json_load(h_p("st.json"));
    assert_string_equal(json_string_value(json_object_get(j, "keyRetrieverType")), "secret");
    json_t *cfg = json_object_get(j, "keyRetrieverConfig");
    assert_string_equal(json_string_value(json_object_get(cfg, "namespace")), "velero");
    assert_string_equal(json_string_value(json_object_get(cfg, "secretName")), "coffer-key");
    json_decref(j);

    /* The header names the Secret. */
    assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--offline", "--secrets-dir", h_p("secrets"),
                              "--in", h_p("ct"), "--out", h_p("out"), NULL),
                     0);
    uint8_t *out = h_read(h_p("out"), &len);
    assert_int_equal(len, 50000);
    assert_memory_equal(out, pt, len);
    free(out);
    unlink(h_p("out"));
    /* --namespace/--secret override it. */
    assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--offline", "--secrets-dir", h_p("secrets"),
                              "--namespace", "backup", "--secret", "same-key", "--in", h_p("ct"),
                              "--out", h_p("out"), NULL),
                     0);
    unlink(h_p("out"));
    /* The Secret now holds another key: the message names both key ids. */
    assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--offline", "--secrets-dir", h_p("secrets"),
                              "--secret", "rotated", "--in", h_p("ct"), "--out", h_p("out"), NULL),
                     1);
    assert_true(h_contains(h_p("stderr"), "wrong key"));
    assert_true(h_contains(h_p("stderr"), "encrypted with key"));
    assert_false(h_exists(h_p("out")));
    /* A missing Secret. */
    assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--offline", "--secrets-dir", h_p("secrets"),
                              "--secret", "absent", "--in", h_p("ct"), "--out", h_p("out"), NULL),
                     1);
    assert_true(h_contains(h_p("stderr"), "loading key from Secret velero/absent"));
    assert_true(h_contains(h_p("stderr"), "key not found"));
    assert_false(h_exists(h_p("out")));
    /* Names that could leave the secrets directory are refused. */
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--offline", "--secrets-dir", h_p("secrets"),
                              "--namespace", "..", "--secret", "velero", "--in", h_p("pt"), "--out",
                              h_p("ct2"), NULL),
                     1);
    assert_true(h_contains(h_p("stderr"), "invalid Kubernetes namespace"));
    assert_false(h_exists(h_p("ct2")));
    /* A header made with --key-file names no Secret. */
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--offline", "--key-file", h_p("key"), "--in",
                              h_p("pt"), "--out", h_p("ct3"), NULL),
                     0);
    assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--offline", "--secrets-dir", h_p("secrets"),
                              "--in", h_p("ct3"), "--out", h_p("out"), NULL),
                     1);
    assert_true(h_contains(h_p("stderr"), "names no Secret"));
    /* velero-v1 with a Secret. */
    make_secret("velero", "raw", "vkey");
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--offline", "--format", "velero-v1",
                              "--secrets-dir", h_p("secrets"), "--namespace", "velero", "--secret",
                              "raw", "--in", h_p("pt"), "--out", h_p("vct"), "--status-out",
                              h_p("vst.json"), NULL),
                     0);
    j = h_json_load(h_p("vst.json"));
    assert_string_equal(json_string_value(json_object_get(j, "format")), "velero-v1");
    assert_string_equal(json_string_value(json_object_get(j, "keyRetrieverType")), "secret");
    json_decref(j);
    assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--offline", "--format", "velero-v1",
                              "--secrets-dir", h_p("secrets"), "--namespace", "velero", "--secret",
                              "raw", "--in", h_p("vct"), "--out", h_p("vout"), NULL),
                     0);
    out = h_read(h_p("vout"), &len);
    assert_int_equal(len, 50000);
    assert_memory_equal(out, pt, len);
    free(out);
    free(pt);
}

/* Every failure: exit 1, one "coffer: decrypting ..." line, no output file, no key bytes. */
static void expect_decrypt_failure(const char *const *args, const char *message)
{
    int before = h_count_entries();
    int had_stderr = h_exists(h_p("stderr"));
    size_t len = 0;

    assert_int_equal(h_coffer_argv(NULL, NULL, args), 1);
    assert_false(h_exists(h_p("out")));
    assert_int_equal(h_count_entries(), before + !had_stderr); /* no temporary file left */
    uint8_t *err = h_read(h_p("stderr"), &len);
    if (strstr((const char *)err, message) == NULL)
        fprintf(stderr, "expected '%s' in: %s", message, (const char *)err);
    assert_non_null(strstr((const char *)err, message));
    assert_non_null(strstr((const char *)err, "coffer: decrypting"));
    /* exactly one line */
    assert_true(len > 0);
    assert_int_equal(err[len - 1], '\n');
    assert_null(memchr(err, '\n', len - 1));
    /* never the key, in any form */
    uint8_t *k = h_read(h_p("key"), &len);
    k[44] = 0;
    assert_null(strstr((const char *)err, (const char *)k));
    free(k);
    free(err);
}

static void test_wrong_key(void **state)
{
    (void)state;
    make_keys();
    assert_int_equal(h_coffer(NULL, NULL, "keygen", "--out", h_p("other"), NULL), 0);
    uint8_t raw[32];
    ts_fill(raw, 32, 99);
    raw[0] = 0;
    h_write(h_p("vother"), raw, 32);
    free(h_write_random(h_p("pt"), 100000, 5));

    for (size_t ci = 0; ci < 4; ci++) {
        const struct fmt_case *c = &fmt_cases[ci];
        const char *args[32];
        job_args(args, "encrypt", c, h_p("pt"), h_p("ct"));
        assert_int_equal(h_coffer_argv(NULL, NULL, args), 0);

        struct fmt_case wrong = *c;
        wrong.key = strcmp(c->format, "velero-v1") == 0 ? "vother" : "other";
        if (strcmp(c->format, "cobblestone-128") == 0) {
            ts_fill(raw, 16, 77);
            raw[0] = 1;
            h_write(h_p("k16other"), raw, 16);
            wrong.key = "k16other";
        }
        job_args(args, "decrypt", &wrong, h_p("ct"), h_p("out"));
        expect_decrypt_failure(args, strcmp(c->format, "velero-v1") == 0 ? "authentication failed"
                                                                         : "wrong key");
        if (c->context != NULL) {
            /* The right key with another context is refused the same way. */
            wrong = *c;
            wrong.context = "another context";
            job_args(args, "decrypt", &wrong, h_p("ct"), h_p("out"));
            expect_decrypt_failure(args, "wrong key");
        }
    }
}

/* Damage a copy of ct and expect decrypt to fail with message, leaving no output. */
static void damage_case(const struct fmt_case *c, const uint8_t *ct, size_t len, size_t at,
                        int mode, const char *message)
{
    uint8_t *b = malloc(len + 8);
    size_t blen = len;
    const char *args[32];

    memcpy(b, ct, len);
    if (mode == 0)
        b[at] ^= 0x01; /* flip a bit */
    else if (mode == 1)
        blen = at; /* truncate */
    else {
        memcpy(b + len, "TRAILING", 8); /* append */
        blen = len + 8;
    }
    h_write(h_p("bad"), b, blen);
    free(b);
    job_args(args, "decrypt", c, h_p("bad"), h_p("out"));
    expect_decrypt_failure(args, message);
}

static void test_tampered_truncated(void **state)
{
    size_t len = 0;
    (void)state;
    make_keys();
    free(h_write_random(h_p("pt"), 5 * MIB + 3, 11));

    for (size_t ci = 0; ci < 4; ci++) {
        const struct fmt_case *c = &fmt_cases[ci];
        const char *args[32];
        job_args(args, "encrypt", c, h_p("pt"), h_p("ct"));
        assert_int_equal(h_coffer_argv(NULL, NULL, args), 0);
        uint8_t *ct = h_read(h_p("ct"), &len);

        damage_case(c, ct, len, len / 2, 0, "authentication failed"); /* middle */
        damage_case(c, ct, len, len - 1, 0, "authentication failed"); /* last tag byte */
        if (strcmp(c->format, "velero-v1") == 0) {
            damage_case(c, ct, len, len - 1000, 1, "authentication failed");
            damage_case(c, ct, len, 20, 1, "truncated");
            damage_case(c, ct, len, 0, 2, "authentication failed");
        } else {
            /* Cut inside a chunk: the rest reads as a short final chunk that fails its tag. */
            damage_case(c, ct, len, len - 1000, 1, "authentication failed");
            damage_case(c, ct, len, len - 16401 - 1000, 1, "cut short");
            damage_case(c, ct, len, len - 15, 1, ""); /* less than a tag left */
            /* Appended bytes make the final chunk longer, so its tag fails. */
            damage_case(c, ct, len, 0, 2, "authentication failed");
        }
        if (strcmp(c->format, "coffer-v1") == 0) {
            /* Truncated inside the header, a changed metadata byte, a damaged commitment. */
            damage_case(c, ct, len, 10, 1, "truncated");
            size_t hlen = 12 + ((size_t)ct[10] << 8 | ct[11]);
            /* The key file's name in the metadata: the key id still matches. */
            const uint8_t *name = memmem(ct, hlen, "\"name\":\"key\"", 12);
            assert_non_null(name);
            damage_case(c, ct, len, (size_t)(name - ct) + 9, 0, "authentication failed");
            /* The keyId itself: reported as a wrong key, naming the id the header claims. */
            damage_case(c, ct, len, hlen - 3, 0, "wrong key");
            damage_case(c, ct, len, hlen + 30, 0, "authentication failed");
            /* Cut at a chunk boundary: the short final chunk is missing. */
            damage_case(c, ct, len, hlen + 56 + 16400 * 10, 1, "truncated");
        } else if (strcmp(c->format, "velero-v1") != 0) {
            damage_case(c, ct, len, 56 + 16400 * 10, 1, "truncated");
        }
        free(ct);
    }
}

static void test_passphrase_and_bad_keys(void **state)
{
    (void)state;
    free(h_write_random(h_p("pt"), 100, 1));
    h_write(h_p("pass"), "correct horse battery staple 123", 32);
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--offline", "--key-file", h_p("pass"), "--in",
                              h_p("pt"), "--out", h_p("ct"), NULL),
                     1);
    assert_true(h_contains(h_p("stderr"), "coffer: loading the key file: "));
    assert_true(h_contains(h_p("stderr"), "passphrase"));
    assert_true(h_contains(h_p("stderr"), "coffer keygen"));
    assert_false(h_contains(h_p("stderr"), "horse"));
    assert_false(h_exists(h_p("ct")));

    h_write(h_p("short"), "\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a", 10);
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--offline", "--key-file", h_p("short"),
                              "--in", h_p("pt"), "--out", h_p("ct"), NULL),
                     1);
    assert_true(h_contains(h_p("stderr"), "wrong size"));
    assert_true(h_contains(h_p("stderr"), "coffer keygen"));
    assert_false(h_exists(h_p("ct")));

    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--offline", "--key-file", h_p("absent"),
                              "--in", h_p("pt"), "--out", h_p("ct"), NULL),
                     1);
    assert_true(h_contains(h_p("stderr"), "coffer: loading the key file: "));
    assert_false(h_exists(h_p("ct")));
}

struct usage_case {
    const char *args[16];
    int status;
    const char *message;
};

static void test_usage(void **state)
{
    static const struct usage_case cases[] = {
        {{NULL}, 2, "no command"},
        {{"frobnicate", NULL}, 2, "unknown command"},
        {{"encrypt", "--key-file", "k", NULL}, 2, "--key-file needs --offline"},
        {{"decrypt", "--key-file", "k", NULL}, 2, "--key-file needs --offline"},
        {{"encrypt", "--offline", NULL}, 2, "--key-file"},
        {{"encrypt", "--offline", "--bogus", NULL}, 2, "unknown option '--bogus'"},
        {{"encrypt", "--offline", "--key-file", NULL}, 2, "needs a value"},
        {{"encrypt", "--offline", "--key-file", "a", "--secrets-dir", "b", NULL}, 2, "not both"},
        {{"encrypt", "--offline", "--key-file", "a", "--format", "rot13", NULL},
         2,
         "unknown format"},
        {{"encrypt", "--offline", "--key-file", "a", "--context", "x", NULL}, 2, "--context"},
        {{"encrypt", "--offline", "--key-file", "a", "--backend", "fast", NULL}, 2, "backend"},
        {{"encrypt", "--offline", "--key-file", "a", "--in", "x", "--in", "y", NULL}, 2, "twice"},
        {{"encrypt", "--offline", "--key-file", "a", "extra", NULL}, 2, "unexpected argument"},
        {{"encrypt", "--offline", "--secrets-dir", "d", "--namespace", "n", NULL}, 2, "--secret"},
        {{"encrypt", "--offline", "--key-file", "a", "--namespace", "n", NULL},
         2,
         "need --secrets-dir"},
        {{"encrypt", "--offline", "--key-file", "a", "--spool-dir", "d", NULL}, 2, "does not take"},
        {{"decrypt", "--offline", "--key-file", "a", "--status-out", "s", NULL},
         2,
         "does not take"},
        {{"decrypt", "--offline", "--format", "velero-v1", "--secrets-dir", "d", NULL},
         2,
         "--namespace"},
        {{"keygen", "--in", "x", NULL}, 2, "does not take"},
        {{"keygen", "extra", NULL}, 2, "unexpected argument"},
        {{"inspect", "--key-file", "k", NULL}, 2, "does not take"},
        {{"encrypt", "--offline", "--key-file", "", NULL}, 2, "non-empty"},
    };
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = h_coffer_argv(NULL, NULL, cases[i].args);
        if (rc != cases[i].status || !h_contains(h_p("stderr"), cases[i].message))
            fprintf(stderr, "usage case %zu: exit %d, expected %d and '%s'\n", i, rc,
                    cases[i].status, cases[i].message);
        assert_int_equal(rc, cases[i].status);
        assert_true(h_contains(h_p("stderr"), cases[i].message));
        assert_true(h_contains(h_p("stderr"), "usage:"));
    }
    /* --help on each subcommand: the usage on stdout, exit 0. */
    static const char *const cmds[] = {"keygen", "encrypt", "decrypt", "inspect"};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(h_coffer(NULL, h_p("help"), cmds[i], "--help", NULL), 0);
        assert_true(h_contains(h_p("help"), "usage: coffer "));
        assert_true(h_contains(h_p("help"), cmds[i]));
    }
    assert_int_equal(h_coffer(NULL, h_p("help"), "--help", NULL), 0);
    assert_true(h_contains(h_p("help"), "coffer <command>"));
}

static void test_io_errors(void **state)
{
    (void)state;
    make_keys();
    free(h_write_random(h_p("pt"), 3 * MIB, 1));
    /* A full output device: ENOSPC is named. */
    assert_int_equal(
        h_coffer(h_p("pt"), "/dev/full", "encrypt", "--offline", "--key-file", h_p("key"), NULL),
        1);
    assert_true(h_contains(h_p("stderr"), "coffer: writing standard output: no space left"));
    /* A missing input. */
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--offline", "--key-file", h_p("key"), "--in",
                              h_p("absent"), "--out", h_p("ct"), NULL),
                     1);
    assert_true(h_contains(h_p("stderr"), "coffer: opening"));
    assert_false(h_exists(h_p("ct")));
    /* An output directory that does not exist. */
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--offline", "--key-file", h_p("key"), "--in",
                              h_p("pt"), "--out", h_p("no/such/dir/ct"), NULL),
                     1);
    assert_true(h_contains(h_p("stderr"), "temporary file"));
    /* A device is written in place, not replaced. */
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--offline", "--key-file", h_p("key"), "--in",
                              h_p("pt"), "--out", "/dev/null", NULL),
                     0);
    struct stat st;
    assert_int_equal(stat("/dev/null", &st), 0);
    assert_true(S_ISCHR(st.st_mode));
    /* A symlink: the file it points to is replaced, the link stays. */
    h_write(h_p("target"), "old", 3);
    assert_int_equal(symlink(h_p("target"), h_p("link")), 0);
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--offline", "--key-file", h_p("key"), "--in",
                              h_p("pt"), "--out", h_p("link"), NULL),
                     0);
    assert_int_equal(lstat(h_p("link"), &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    assert_int_equal(stat(h_p("target"), &st), 0);
    assert_true(st.st_size > 3 * MIB);
    /* Encrypting a file onto itself works: the output is a new file renamed at the end. */
    size_t len = 0;
    uint8_t *pt = h_read(h_p("pt"), &len);
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--offline", "--key-file", h_p("key"), "--in",
                              h_p("pt"), "--out", h_p("pt"), NULL),
                     0);
    assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--offline", "--key-file", h_p("key"), "--in",
                              h_p("pt"), "--out", h_p("pt"), NULL),
                     0);
    uint8_t *back = h_read(h_p("pt"), &len);
    assert_int_equal(len, 3 * MIB);
    assert_memory_equal(back, pt, len);
    free(pt);
    free(back);
}

static void test_velero_spool_and_backends(void **state)
{
    size_t len = 0;
    (void)state;
    make_keys();
    uint8_t *pt = h_write_random(h_p("pt"), 6 * MIB + 7, 21);
    mkdir(h_p("spool"), 0700);
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--offline", "--key-file", h_p("vkey"),
                              "--format", "velero-v1", "--backend", "openssl", "--in", h_p("pt"),
                              "--out", h_p("ct"), NULL),
                     0);
    /* Larger than the in-memory spool: the spool file goes to --spool-dir and is gone after. */
    assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--offline", "--key-file", h_p("vkey"),
                              "--format", "velero-v1", "--spool-dir", h_p("spool"), "--in",
                              h_p("ct"), "--out", h_p("out"), NULL),
                     0);
    uint8_t *out = h_read(h_p("out"), &len);
    assert_int_equal(len, 6 * MIB + 7);
    assert_memory_equal(out, pt, len);
    free(out);
    assert_int_equal(rmdir(h_p("spool")), 0); /* empty */
    /* A spool directory that does not exist. */
    assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--offline", "--key-file", h_p("vkey"),
                              "--format", "velero-v1", "--spool-dir", h_p("nospool"), "--in",
                              h_p("ct"), "--out", h_p("out2"), NULL),
                     1);
    assert_false(h_exists(h_p("out2")));

    /* Each backend reads what the other wrote. */
    if (engine_gcm_backend_available(ENGINE_GCM_IPSEC_MB)) {
        assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--offline", "--key-file", h_p("key"),
                                  "--backend", "ipsec-mb", "--in", h_p("pt"), "--out", h_p("c1"),
                                  NULL),
                         0);
        assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--offline", "--key-file", h_p("key"),
                                  "--backend", "openssl", "--in", h_p("c1"), "--out", h_p("o1"),
                                  NULL),
                         0);
        assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--offline", "--key-file", h_p("key"),
                                  "--backend", "openssl", "--in", h_p("pt"), "--out", h_p("c2"),
                                  NULL),
                         0);
        assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--offline", "--key-file", h_p("key"),
                                  "--backend", "ipsec-mb", "--in", h_p("c2"), "--out", h_p("o2"),
                                  NULL),
                         0);
        out = h_read(h_p("o1"), &len);
        assert_memory_equal(out, pt, len);
        free(out);
        out = h_read(h_p("o2"), &len);
        assert_memory_equal(out, pt, len);
        free(out);
    }
    free(pt);
}

static void test_progress(void **state)
{
    (void)state;
    make_keys();
    free(h_write_random(h_p("pt"), 2 * MIB, 1));
    /* Not a terminal: nothing by default. */
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--offline", "--key-file", h_p("key"), "--in",
                              h_p("pt"), "--out", h_p("ct"), NULL),
                     0);
    size_t len = 0;
    free(h_read(h_p("stderr"), &len));
    assert_int_equal(len, 0);
    /* Forced: a bar that reaches 100%. */
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--offline", "--key-file", h_p("key"), "--in",
                              h_p("pt"), "--out", h_p("ct"), "--progress", "always", NULL),
                     0);
    assert_true(h_contains(h_p("stderr"), "coffer: encrypting ["));
    assert_true(h_contains(h_p("stderr"), "100%"));
    /* A failure starts its message on a line of its own. */
    assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--offline", "--key-file", h_p("vkey"),
                              "--format", "velero-v1", "--in", h_p("ct"), "--out", h_p("out"),
                              "--progress", "always", NULL),
                     1);
    assert_true(h_contains(h_p("stderr"), "\ncoffer: decrypting"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_keygen, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip_files, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip_stdio, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_decrypt_autodetect_and_replace, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_status_out, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_inspect, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_secrets_dir, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_wrong_key, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_tampered_truncated, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_passphrase_and_bad_keys, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_usage, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_io_errors, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_velero_spool_and_backends, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_progress, h_setup, h_teardown),
    };
    if (access(ts_bin("coffer"), X_OK) != 0)
        ts_skip("%s has not been built", ts_bin("coffer"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
