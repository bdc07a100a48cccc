/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of engine_secret: the Secret-volume layout, name checks, kubelet symlink swaps. */
#include "coffer_error.h"
#include "engine_secret.h"
#include "test_support.h"

#include <errno.h>
#include <openssl/evp.h>
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

struct fixture {
    char *dir; /* the secrets directory */
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    f->dir = ts_tmpdir();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    ts_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static void mkdirs(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s", path);
    for (char *p = tmp + 1; *p != '\0'; p++) {
        if (*p == '/') {
            *p = '\0';
            assert_true(mkdir(tmp, 0700) == 0 || errno == EEXIST);
            *p = '/';
        }
    }
    assert_true(mkdir(tmp, 0700) == 0 || errno == EEXIST);
}

/* A key as `coffer keygen` prints it: base64 and a newline. */
static size_t key_text(uint64_t seed, uint8_t raw[32], char *text)
{
    ts_fill(raw, 32, seed);
    raw[0] = 0x02;
    size_t n = (size_t)EVP_EncodeBlock((unsigned char *)text, raw, 32);
    text[n++] = '\n';
    text[n] = '\0';
    return n;
}

/* <dir>/<ns>/<name>/encryptionKey as a plain file. */
static void write_secret(const char *dir, const char *ns, const char *name, const void *data,
                         size_t len)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s/%s", dir, ns, name);
    mkdirs(path);
    snprintf(path, sizeof(path), "%s/%s/%s/" ENGINE_SECRET_FIELD, dir, ns, name);
    assert_int_equal(ts_write_file(path, data, len), 0);
}

static void test_load(void **state)
{
    struct fixture *f = *state;
    uint8_t raw[32];
    char text[64], detail[512];
    size_t n = key_text(1, raw, text);
    engine_key *k = NULL;

    write_secret(f->dir, "velero", "coffer-key", text, n);
    assert_int_equal(engine_secret_load(&k, f->dir, "velero", "coffer-key", ENGINE_KEY_RULE_COFFER,
                                        detail, sizeof(detail)),
                     0);
    assert_non_null(k);
    assert_int_equal(k->len, 32);
    assert_memory_equal(k->bytes, raw, 32);
    char id[ENGINE_KEY_ID_LEN + 1];
    engine_key_id(raw, 32, id);
    assert_string_equal(k->id, id);
    engine_key_free(k);

    /* dotted Secret names are valid subdomains */
    write_secret(f->dir, "backup-ns", "coffer.key.v2", text, n);
    assert_int_equal(engine_secret_load(&k, f->dir, "backup-ns", "coffer.key.v2",
                                        ENGINE_KEY_RULE_COFFER, NULL, 0),
                     0);
    engine_key_free(k);

    /* the rule is applied: a passphrase in the Secret is refused */
    write_secret(f->dir, "velero", "passphrase", "correct horse battery staple 123", 32);
    k = (engine_key *)0x1;
    assert_int_equal(engine_secret_load(&k, f->dir, "velero", "passphrase", ENGINE_KEY_RULE_COFFER,
                                        detail, sizeof(detail)),
                     COFFER_ERR_KEY_FORM);
    assert_null(k);
    /* velero-v1's rule: the raw Secret value */
    write_secret(f->dir, "velero", "proto", raw, 16);
    assert_int_equal(
        engine_secret_load(&k, f->dir, "velero", "proto", ENGINE_KEY_RULE_VELERO, NULL, 0), 0);
    assert_int_equal(k->len, 16);
    engine_key_free(k);
}

static void test_missing(void **state)
{
    struct fixture *f = *state;
    char detail[1024];
    engine_key *k = (engine_key *)0x1;
    char path[4096];

    /* no namespace directory at all */
    memset(detail, 0, sizeof(detail));
    assert_int_equal(engine_secret_load(&k, f->dir, "velero", "coffer-key", ENGINE_KEY_RULE_COFFER,
                                        detail, sizeof(detail)),
                     COFFER_ERR_KEY_MISSING);
    assert_null(k);
    snprintf(path, sizeof(path), "%s/velero/coffer-key/encryptionKey", f->dir);
    if (strstr(detail, path) == NULL)
        print_error("detail \"%s\" does not name %s\n", detail, path);
    assert_non_null(strstr(detail, path));
    /* the Secret exists but has no encryptionKey field */
    snprintf(path, sizeof(path), "%s/velero/other", f->dir);
    mkdirs(path);
    snprintf(path, sizeof(path), "%s/velero/other/someOtherField", f->dir);
    assert_int_equal(ts_write_file(path, "x", 1), 0);
    assert_int_equal(engine_secret_load(&k, f->dir, "velero", "other", ENGINE_KEY_RULE_COFFER,
                                        detail, sizeof(detail)),
                     COFFER_ERR_KEY_MISSING);
    assert_non_null(strstr(detail, "encryptionKey"));
    /* an empty field */
    write_secret(f->dir, "velero", "empty", "", 0);
    assert_int_equal(
        engine_secret_load(&k, f->dir, "velero", "empty", ENGINE_KEY_RULE_COFFER, NULL, 0),
        COFFER_ERR_KEY_MISSING);
    /* encryptionKey is a directory: not readable as a key */
    snprintf(path, sizeof(path), "%s/velero/dirkey/encryptionKey", f->dir);
    mkdirs(path);
    assert_int_equal(
        engine_secret_load(&k, f->dir, "velero", "dirkey", ENGINE_KEY_RULE_COFFER, NULL, 0),
        COFFER_ERR_KEY_READ);
}

static void expect_bad_name(const char *dir, const char *ns, const char *name)
{
    engine_key *k = (engine_key *)0x1;
    int r = engine_secret_name_check(ns, name);
    if (r != COFFER_ERR_SECRET_NAME)
        print_error("name check accepted ns \"%s\" name \"%s\"\n", ns, name);
    assert_int_equal(r, COFFER_ERR_SECRET_NAME);
    assert_int_equal(engine_secret_load(&k, dir, ns, name, ENGINE_KEY_RULE_COFFER, NULL, 0),
                     COFFER_ERR_SECRET_NAME);
    assert_null(k);
}

static void test_names(void **state)
{
    struct fixture *f = *state;
    char name[300];
    uint8_t raw[32];
    char text[64];
    size_t n = key_text(3, raw, text);

    /* a key outside the Secret tree that a path traversal would reach */
    char path[4096];
    snprintf(path, sizeof(path), "%s/x", f->dir);
    mkdirs(path);
    snprintf(path, sizeof(path), "%s/x/" ENGINE_SECRET_FIELD, f->dir);
    assert_int_equal(ts_write_file(path, text, n), 0);
    write_secret(f->dir, "velero", "ok", text, n);

    static const char *const bad[] = {"../x",  "..", ".",  "a/b",  "/x",   "x/",  "Coffer-Key",
                                      "UPPER", "",   "-a", "a-",   "a_b",  "a b", "a..b",
                                      ".a",    "a.", "é",  "a\nb", "a\\b", "*"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        expect_bad_name(f->dir, "velero", bad[i]); /* as the Secret name */
        expect_bad_name(f->dir, bad[i], "ok");     /* as the namespace */
    }
    /* a namespace is a label: no dots */
    expect_bad_name(f->dir, "vel.ero", "ok");

    /* lengths: a Secret name up to 253 characters, a namespace up to 63 */
    memset(name, 0, sizeof(name));
    for (size_t i = 0; i < 253; i++)
        name[i] = (i % 64 == 63) ? '.' : 'a'; /* labels of 63 */
    assert_int_equal(strlen(name), 253);
    assert_int_equal(engine_secret_name_check("velero", name), 0);
    name[253] = 'a';
    expect_bad_name(f->dir, "velero", name); /* 254 */
    memset(name, 'a', 299);
    name[299] = '\0';
    expect_bad_name(f->dir, "velero", name);
    /* a label of 64 characters inside a name */
    memset(name, 0, sizeof(name));
    memset(name, 'b', 64);
    expect_bad_name(f->dir, "velero", name);
    memset(name, 0, sizeof(name));
    memset(name, 'n', 63);
    assert_int_equal(engine_secret_name_check(name, "ok"), 0);
    name[63] = 'n';
    expect_bad_name(f->dir, name, "ok");

    /* good names */
    assert_int_equal(engine_secret_name_check("velero", "coffer-key"), 0);
    assert_int_equal(engine_secret_name_check("a", "b"), 0);
    assert_int_equal(engine_secret_name_check("0ns-1", "9.key-2.x"), 0);
}

/* The kubelet's layout: a timestamped directory, ..data pointing to it, fields linking through. */
static void kube_projection(const char *secret_dir, const char *stamp, const char *text, size_t n,
                            const char *old_stamp)
{
    char path[4096], tmp[4096];
    snprintf(path, sizeof(path), "%s/%s", secret_dir, stamp);
    mkdirs(path);
    snprintf(path, sizeof(path), "%s/%s/" ENGINE_SECRET_FIELD, secret_dir, stamp);
    assert_int_equal(ts_write_file(path, text, n), 0);
    /* ..data_tmp -> stamp, then rename over ..data: the atomic swap */
    snprintf(tmp, sizeof(tmp), "%s/..data_tmp", secret_dir);
    assert_int_equal(symlink(stamp, tmp), 0);
    snprintf(path, sizeof(path), "%s/..data", secret_dir);
    assert_int_equal(rename(tmp, path), 0);
    /* the field's own link is created once and never changes */
    snprintf(path, sizeof(path), "%s/" ENGINE_SECRET_FIELD, secret_dir);
    struct stat st;
    if (lstat(path, &st) != 0)
        assert_int_equal(symlink("..data/" ENGINE_SECRET_FIELD, path), 0);
    if (old_stamp != NULL) {
        snprintf(path, sizeof(path), "%s/%s", secret_dir, old_stamp);
        ts_rmtree(path);
    }
}

static void test_symlink_swap(void **state)
{
    struct fixture *f = *state;
    char sdir[2048], text1[64], text2[64];
    uint8_t raw1[32], raw2[32];
    size_t n1 = key_text(10, raw1, text1), n2 = key_text(20, raw2, text2);
    engine_key *k = NULL;

    snprintf(sdir, sizeof(sdir), "%s/velero/coffer-key", f->dir);
    mkdirs(sdir);
    kube_projection(sdir, "..2026_01_01_00_00_00.1", text1, n1, NULL);
    assert_int_equal(
        engine_secret_load(&k, f->dir, "velero", "coffer-key", ENGINE_KEY_RULE_COFFER, NULL, 0), 0);
    assert_memory_equal(k->bytes, raw1, 32);
    engine_key_free(k);

    /* the kubelet rotates the Secret: the next load sees the new key */
    kube_projection(sdir, "..2026_02_02_00_00_00.2", text2, n2, "..2026_01_01_00_00_00.1");
    assert_int_equal(
        engine_secret_load(&k, f->dir, "velero", "coffer-key", ENGINE_KEY_RULE_COFFER, NULL, 0), 0);
    assert_memory_equal(k->bytes, raw2, 32);
    engine_key_free(k);

    /* and back again, many times (each load opens afresh) */
    for (int i = 0; i < 10; i++) {
        char stamp[64], old[64];
        snprintf(stamp, sizeof(stamp), "..2026_03_%02d", i);
        if (i == 0)
            snprintf(old, sizeof(old), "..2026_02_02_00_00_00.2");
        else
            snprintf(old, sizeof(old), "..2026_03_%02d", i - 1);
        kube_projection(sdir, stamp, i % 2 ? text1 : text2, i % 2 ? n1 : n2, old);
        assert_int_equal(
            engine_secret_load(&k, f->dir, "velero", "coffer-key", ENGINE_KEY_RULE_COFFER, NULL, 0),
            0);
        assert_memory_equal(k->bytes, i % 2 ? raw1 : raw2, 32);
        engine_key_free(k);
    }

    /* the Secret is deleted: the dangling link is a missing key */
    char path[4096];
    snprintf(path, sizeof(path), "%s/..data", sdir);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(
        engine_secret_load(&k, f->dir, "velero", "coffer-key", ENGINE_KEY_RULE_COFFER, NULL, 0),
        COFFER_ERR_KEY_MISSING);
}

static void test_args(void **state)
{
    struct fixture *f = *state;
    engine_key *k = NULL;
    assert_int_not_equal(
        engine_secret_load(&k, "", "velero", "coffer-key", ENGINE_KEY_RULE_COFFER, NULL, 0), 0);
    assert_int_equal(engine_secret_load(&k, f->dir, "velero", "", ENGINE_KEY_RULE_COFFER, NULL, 0),
                     COFFER_ERR_SECRET_NAME);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlink_swap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_args, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
