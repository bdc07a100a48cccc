/* SPDX-License-Identifier: Apache-2.0 */
/* coffer against an independent implementation (interop.py on python3-cryptography), both ways. */
#include "cli_harness.h"
#include "test_support.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PYTHON "/usr/bin/python3"
#define MIB    (1024u * 1024u)

static const size_t sizes[] = {0, 1, 16384, 16385, 5 * MIB + 1};

/* Run interop.py with the arguments; its stderr goes to h_p("py.err"). */
static int py(const char *a1, const char *a2, const char *a3, const char *a4, const char *a5,
              const char *a6)
{
    const char *argv[] = {PYTHON, COFFER_INTEROP_PY, a1, a2, a3, a4, a5, a6, NULL};
    char err[4096];
    int rc;

    snprintf(err, sizeof(err), "%s", h_p("py.err"));
    rc = h_run(argv, NULL, err);
    if (rc != 0) {
        size_t len = 0;
        uint8_t *e = ts_read_file(err, &len);
        fprintf(stderr, "interop.py %s: exit %d: %s\n", a1, rc, e != NULL ? (char *)e : "");
        free(e);
    }
    return rc;
}

static void assert_same_file(const char *a, const uint8_t *want, size_t wantlen)
{
    size_t len = 0;
    uint8_t *b = h_read(a, &len);
    assert_int_equal(len, wantlen);
    assert_true(len == 0 || memcmp(b, want, len) == 0);
    free(b);
}

/* A raw key file of n bytes that no rule could take for text. */
static void raw_key(const char *name, size_t n, uint64_t seed)
{
    uint8_t k[32];
    ts_fill(k, n, seed);
    k[0] = 0;
    h_write(h_p(name), k, n);
}

static void test_python_selftest(void **state)
{
    (void)state;
    if (access(COFFER_VECTORS_DIR "/wycheproof_c2sp_chunked_encryption_aes_256_gcm_test.json",
               R_OK) != 0)
        ts_skip_case("the Wycheproof vectors are not in %s", COFFER_VECTORS_DIR);
    /* The independent implementation is itself checked against Wycheproof's vectors. */
    assert_int_equal(py("selftest", COFFER_VECTORS_DIR, NULL, NULL, NULL, NULL), 0);
}

static void test_coffer_v1_to_python(void **state)
{
    (void)state;
    assert_int_equal(h_coffer(NULL, NULL, "keygen", "--out", h_p("key"), NULL), 0);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint8_t *pt = h_write_random(h_p("pt"), sizes[i], 40 + i);
        assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--offline", "--key-file", h_p("key"),
                                  "--in", h_p("pt"), "--out", h_p("ct"), NULL),
                         0);
        assert_int_equal(py("coffer-decrypt", h_p("key"), h_p("ct"), h_p("out"), NULL, NULL), 0);
        assert_same_file(h_p("out"), pt, sizes[i]);
        free(pt);
    }
    /* A header naming a Secret, written through a pipe. */
    mkdir(h_p("s"), 0700);
    mkdir(h_p("s/ns"), 0700);
    mkdir(h_p("s/ns/name"), 0700);
    size_t klen = 0;
    uint8_t *k = h_read(h_p("key"), &klen);
    h_write(h_p("s/ns/name/encryptionKey"), k, klen);
    free(k);
    uint8_t *pt = h_write_random(h_p("pt"), 100000, 2);
    assert_int_equal(h_coffer(h_p("pt"), h_p("ct"), "encrypt", "--offline", "--secrets-dir",
                              h_p("s"), "--namespace", "ns", "--secret", "name", NULL),
                     0);
    assert_int_equal(py("coffer-decrypt", h_p("key"), h_p("ct"), h_p("out"), NULL, NULL), 0);
    assert_same_file(h_p("out"), pt, 100000);
    /* The independent implementation, too, refuses a header changed after encryption. */
    size_t len = 0;
    uint8_t *ct = h_read(h_p("ct"), &len);
    uint8_t *at = memmem(ct, len, "\"ns\"", 4);
    assert_non_null(at);
    at[1] = 'm';
    h_write(h_p("ct2"), ct, len);
    assert_int_equal(py("coffer-decrypt", h_p("key"), h_p("ct2"), h_p("out2"), NULL, NULL), 1);
    free(ct);
    free(pt);
}

static void test_velero_to_python(void **state)
{
    static const size_t keylens[] = {16, 24, 32};
    (void)state;
    for (size_t ki = 0; ki < 3; ki++) {
        raw_key("vkey", keylens[ki], 60 + ki);
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            uint8_t *pt = h_write_random(h_p("pt"), sizes[i], 80 + i);
            assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--offline", "--key-file", h_p("vkey"),
                                      "--format", "velero-v1", "--in", h_p("pt"), "--out",
                                      h_p("ct"), NULL),
                             0);
            assert_int_equal(py("velero-decrypt", h_p("vkey"), h_p("ct"), h_p("out"), NULL, NULL),
                             0);
            assert_same_file(h_p("out"), pt, sizes[i]);
            free(pt);
        }
    }
}

static void test_cobblestone_to_python(void **state)
{
    (void)state;
    raw_key("k32", 32, 5);
    raw_key("k16", 16, 6);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint8_t *pt = h_write_random(h_p("pt"), sizes[i], 90 + i);
        assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--offline", "--key-file", h_p("k32"),
                                  "--format", "cobblestone", "--context", "backup/ns-1", "--in",
                                  h_p("pt"), "--out", h_p("ct"), NULL),
                         0);
        assert_int_equal(
            py("cobblestone-decrypt", "256", h_p("k32"), "backup/ns-1", h_p("ct"), h_p("out")), 0);
        assert_same_file(h_p("out"), pt, sizes[i]);
        assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--offline", "--key-file", h_p("k16"),
                                  "--format", "cobblestone-128", "--in", h_p("pt"), "--out",
                                  h_p("ct"), NULL),
                         0);
        assert_int_equal(py("cobblestone-decrypt", "128", h_p("k16"), "", h_p("ct"), h_p("out")),
                         0);
        assert_same_file(h_p("out"), pt, sizes[i]);
        free(pt);
    }
}

static void test_python_to_coffer(void **state)
{
    static const size_t keylens[] = {16, 24, 32};
    (void)state;
    raw_key("k32", 32, 7);
    raw_key("k16", 16, 8);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint8_t *pt = h_write_random(h_p("pt"), sizes[i], 120 + i);

        for (size_t ki = 0; ki < 3; ki++) {
            raw_key("vkey", keylens[ki], 70 + ki);
            assert_int_equal(py("velero-encrypt", h_p("vkey"), h_p("pt"), h_p("ct"), NULL, NULL),
                             0);
            assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--offline", "--key-file", h_p("vkey"),
                                      "--format", "velero-v1", "--in", h_p("ct"), "--out",
                                      h_p("out"), NULL),
                             0);
            assert_same_file(h_p("out"), pt, sizes[i]);
        }
        assert_int_equal(
            py("cobblestone-encrypt", "256", h_p("k32"), "ctx: 1", h_p("pt"), h_p("ct")), 0);
        assert_int_equal(h_coffer(h_p("ct"), h_p("out"), "decrypt", "--offline", "--key-file",
                                  h_p("k32"), "--format", "cobblestone", "--context", "ctx: 1",
                                  NULL),
                         0);
        assert_same_file(h_p("out"), pt, sizes[i]);
        assert_int_equal(py("cobblestone-encrypt", "128", h_p("k16"), "", h_p("pt"), h_p("ct")), 0);
        assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--offline", "--key-file", h_p("k16"),
                                  "--format", "cobblestone-128", "--in", h_p("ct"), "--out",
                                  h_p("out"), NULL),
                         0);
        assert_same_file(h_p("out"), pt, sizes[i]);
        free(pt);
    }
    /* A velero-v1 file from Python with one bit changed: refused, nothing written. */
    size_t len = 0;
    free(h_write_random(h_p("pt"), 200000, 1));
    assert_int_equal(py("velero-encrypt", h_p("k32"), h_p("pt"), h_p("ct"), NULL, NULL), 0);
    uint8_t *ct = h_read(h_p("ct"), &len);
    ct[len / 2] ^= 0x80;
    h_write(h_p("bad"), ct, len);
    free(ct);
    unlink(h_p("out"));
    assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--offline", "--key-file", h_p("k32"),
                              "--format", "velero-v1", "--in", h_p("bad"), "--out", h_p("out"),
                              NULL),
                     1);
    assert_true(h_contains(h_p("stderr"), "authentication failed"));
    assert_false(h_exists(h_p("out")));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_python_selftest, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_coffer_v1_to_python, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_velero_to_python, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_cobblestone_to_python, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_python_to_coffer, h_setup, h_teardown),
    };
    const char *check[] = {PYTHON, COFFER_INTEROP_PY, "check-import", NULL};

    if (access(ts_bin("coffer"), X_OK) != 0)
        ts_skip("%s has not been built", ts_bin("coffer"));
    if (access(PYTHON, X_OK) != 0)
        ts_skip("%s is not installed (the interop tests need python3 and python3-cryptography)",
                PYTHON);
    if (ts_run((char *const *)check, NULL, NULL, NULL, NULL) != 0)
        ts_skip("python3 cannot import 'cryptography' (install python3-cryptography)");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
