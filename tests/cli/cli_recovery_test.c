/* SPDX-License-Identifier: Apache-2.0 */
/* coffer's recovery recipients and identities against Debian's age and age-keygen (offline). */
#include "cli_harness.h"
#include "test_support.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define AGE        "/usr/bin/age"
#define AGE_KEYGEN "/usr/bin/age-keygen"

static int run(const char *const *argv, const char *out)
{
    return h_run(argv, out, h_p("tool.err"));
}

/* The header's metadata of a coffer-v1 file, parsed (the test reads it itself). */
static json_t *header_json(const char *ct, size_t *hdrlen)
{
    size_t len = 0;
    uint8_t *b = h_read(ct, &len);
    uint32_t n;
    json_t *j;
    assert_true(len >= 12);
    n = (uint32_t)b[8] << 24 | (uint32_t)b[9] << 16 | (uint32_t)b[10] << 8 | b[11];
    j = json_loadb((const char *)b + 12, n, 0, NULL);
    assert_non_null(j);
    *hdrlen = 12 + n;
    free(b);
    return j;
}

/* Standard base64 (OpenSSL's decoder, independent of coffer's code) into a file. */
static void b64_to_file(const char *b64, const char *path)
{
    size_t n = strlen(b64), pad = 0;
    uint8_t *out = malloc(n);
    int len;
    while (pad < n && b64[n - 1 - pad] == '=')
        pad++;
    len = EVP_DecodeBlock(out, (const unsigned char *)b64, (int)n);
    assert_true(len > 0);
    h_write(path, out, (size_t)len - pad);
    free(out);
}

static void need_age(void)
{
    if (access(AGE, X_OK) != 0 || access(AGE_KEYGEN, X_OK) != 0)
        ts_skip("age and age-keygen are not installed (apt-get install age)");
}

/* Identities from both tools; recipients files from both tools' -y. */
static void make_keys(void)
{
    const char *kg[] = {AGE_KEYGEN, "-o", h_p("age.id"), NULL};
    const char *ky[] = {AGE_KEYGEN, "-y", h_p("age.id"), NULL};
    const char *cy[] = {AGE_KEYGEN, "-y", h_p("coffer.id"), NULL};
    assert_int_equal(run(kg, NULL), 0);
    assert_int_equal(run(ky, h_p("age.rcpt")), 0);
    assert_int_equal(h_coffer(NULL, NULL, "recovery", "keygen", "--out", h_p("coffer.id"), NULL),
                     0);
    h_file_check_0600(h_p("coffer.id"));
    /* age-keygen -y reads coffer's identity file and finds the recipient coffer printed */
    assert_int_equal(run(cy, h_p("coffer.rcpt.age")), 0);
    assert_int_equal(
        h_coffer(NULL, h_p("coffer.rcpt"), "recovery", "recipient", "--in", h_p("coffer.id"), NULL),
        0);
    size_t a = 0, b = 0;
    uint8_t *x = h_read(h_p("coffer.rcpt"), &a), *y = h_read(h_p("coffer.rcpt.age"), &b);
    assert_int_equal(a, b);
    assert_memory_equal(x, y, a);
    free(x);
    free(y);
}

static void test_recovery_with_real_age(void **state)
{
    size_t hdrlen = 0, n = 0, i;
    json_t *m, *e;
    (void)state;
    need_age();
    make_keys();
    assert_int_equal(h_coffer(NULL, NULL, "keygen", "--out", h_p("key"), NULL), 0);
    uint8_t *pt = h_write_random(h_p("pt"), 300000, 7);
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--offline", "--key-file", h_p("key"),
                              "--recovery-recipient", h_p("coffer.rcpt"), "--recovery-recipient",
                              h_p("age.rcpt"), "--in", h_p("pt"), "--out", h_p("ct"),
                              "--status-out", h_p("status"), NULL),
                     0);
    /* inspect lists the two recipients, in the order given */
    assert_int_equal(
        h_coffer(NULL, h_p("list"), "inspect", "--recipients", "--in", h_p("ct"), NULL), 0);
    {
        size_t cn = 0, gn = 0;
        uint8_t *l = h_read(h_p("list"), &n), *c = h_read(h_p("coffer.rcpt"), &cn);
        uint8_t *g = h_read(h_p("age.rcpt"), &gn);
        assert_int_equal(n, 2 * 63);
        assert_memory_equal(l, c, 63);
        assert_memory_equal(l + 63, g, 63);
        free(l);
        free(c);
        free(g);
    }
    /* every entry, decoded and opened by the real age, is the key coffer accepts */
    m = header_json(h_p("ct"), &hdrlen);
    assert_int_equal(json_array_size(json_object_get(m, "recovery")), 2);
    json_array_foreach(json_object_get(m, "recovery"), i, e)
    {
        const char *id = i == 0 ? h_p("coffer.id") : h_p("age.id");
        const char *d[] = {AGE, "-d", "-i", id, "-o", h_p("age.key"), h_p("entry.age"), NULL};
        size_t klen = 0, k2 = 0;
        b64_to_file(json_string_value(json_object_get(e, "age")), h_p("entry.age"));
        assert_int_equal(run(d, NULL), 0);
        uint8_t *k = h_read(h_p("age.key"), &klen);
        assert_int_equal(klen, 32);
        assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--offline", "--key-file", h_p("age.key"),
                                  "--in", h_p("ct"), "--out", h_p("pt.k"), NULL),
                         0);
        uint8_t *back = h_read(h_p("pt.k"), &k2);
        assert_int_equal(k2, 300000);
        assert_memory_equal(back, pt, k2);
        free(back);
        free(k);
    }
    json_decref(m);
    /* the status metadata written beside the backup carries the same entries */
    m = h_json_load(h_p("status"));
    assert_int_equal(json_array_size(json_object_get(m, "recovery")), 2);
    json_decref(m);
    /* each identity alone restores the backup: coffer's and age-keygen's */
    const char *ids[] = {"coffer.id", "age.id"};
    for (i = 0; i < 2; i++) {
        size_t k2 = 0;
        assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--offline", "--recovery-identity",
                                  h_p(ids[i]), "--in", h_p("ct"), "--out", h_p("pt.r"), NULL),
                         0);
        uint8_t *back = h_read(h_p("pt.r"), &k2);
        assert_int_equal(k2, 300000);
        assert_memory_equal(back, pt, k2);
        free(back);
    }
    /* a file holding several identities, the matching one last */
    {
        const char *kg[] = {AGE_KEYGEN, "-o", h_p("other.id"), NULL};
        size_t a = 0, b = 0;
        assert_int_equal(run(kg, NULL), 0);
        uint8_t *x = h_read(h_p("other.id"), &a), *y = h_read(h_p("age.id"), &b);
        uint8_t *both = malloc(a + b);
        memcpy(both, x, a);
        memcpy(both + a, y, b);
        h_write(h_p("both.id"), both, a + b);
        assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--offline", "--recovery-identity",
                                  h_p("both.id"), "--in", h_p("ct"), "--out", h_p("pt.b"), NULL),
                         0);
        /* someone else's identity: refused, naming the backup's recipients */
        assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--offline", "--recovery-identity",
                                  h_p("other.id"), "--in", h_p("ct"), "--out", h_p("pt.o"), NULL),
                         1);
        assert_true(h_contains(h_p("stderr"), "recovery recipients are"));
        assert_false(h_exists(h_p("pt.o")));
        free(x);
        free(y);
        free(both);
    }
    free(pt);
}

/* Removing or swapping a recipient changes the header, which is the body's context. */
static void test_recovery_entries_are_authenticated(void **state)
{
    size_t hdrlen = 0, len = 0;
    json_t *m;
    char *text;
    (void)state;
    need_age();
    make_keys();
    assert_int_equal(h_coffer(NULL, NULL, "keygen", "--out", h_p("key"), NULL), 0);
    free(h_write_random(h_p("pt"), 5000, 8));
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--offline", "--key-file", h_p("key"),
                              "--recovery-recipient", h_p("coffer.rcpt"), "--recovery-recipient",
                              h_p("age.rcpt"), "--in", h_p("pt"), "--out", h_p("ct"), NULL),
                     0);
    m = header_json(h_p("ct"), &hdrlen);
    assert_int_equal(json_array_remove(json_object_get(m, "recovery"), 0), 0);
    text = json_dumps(m, JSON_COMPACT);
    uint8_t *ct = h_read(h_p("ct"), &len);
    size_t tl = strlen(text), nl = 12 + tl + (len - hdrlen);
    uint8_t *forged = malloc(nl);
    memcpy(forged, ct, 8);
    forged[8] = (uint8_t)(tl >> 24);
    forged[9] = (uint8_t)(tl >> 16);
    forged[10] = (uint8_t)(tl >> 8);
    forged[11] = (uint8_t)tl;
    memcpy(forged + 12, text, tl);
    memcpy(forged + 12 + tl, ct + hdrlen, len - hdrlen);
    h_write(h_p("forged"), forged, nl);
    /* the remaining entry still opens, but the body refuses the changed header */
    assert_int_equal(h_coffer(NULL, NULL, "decrypt", "--offline", "--recovery-identity",
                              h_p("age.id"), "--in", h_p("forged"), "--out", h_p("out"), NULL),
                     1);
    assert_true(h_contains(h_p("stderr"), "modified"));
    assert_false(h_exists(h_p("out")));
    json_decref(m);
    free(text);
    free(ct);
    free(forged);
}

static void expect_refused(const char *line, const char *needle)
{
    char text[256];
    snprintf(text, sizeof(text), "# a recovery key\n%s\n", line);
    h_write(h_p("bad.rcpt"), text, strlen(text));
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--offline", "--key-file", h_p("key"),
                              "--recovery-recipient", h_p("bad.rcpt"), "--in", h_p("pt"), "--out",
                              h_p("ct"), NULL),
                     1);
    if (!h_contains(h_p("stderr"), needle) || !h_contains(h_p("stderr"), "line 2"))
        fail_msg("'%s' refused without '%s'", line, needle);
    assert_false(h_exists(h_p("ct")));
}

static void test_recovery_bad_recipients(void **state)
{
    char good[80], s[80];
    size_t n = 0;
    (void)state;
    need_age();
    make_keys();
    assert_int_equal(h_coffer(NULL, NULL, "keygen", "--out", h_p("key"), NULL), 0);
    free(h_write_random(h_p("pt"), 100, 9));
    uint8_t *r = h_read(h_p("age.rcpt"), &n);
    snprintf(good, sizeof(good), "%.62s", (const char *)r);
    free(r);
    /* age itself refuses each of them too */
    snprintf(s, sizeof(s), "%s", good);
    s[30] = s[30] == 'q' ? 'p' : 'q';
    expect_refused(s, "checksum");
    expect_refused("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", "must start with 'age1'");
    snprintf(s, sizeof(s), "%.61s", good);
    expect_refused(s, "characters long");
    {
        size_t idn = 0;
        uint8_t *id = h_read(h_p("age.id"), &idn);
        const char *line = strstr((const char *)id, "AGE-SECRET-KEY-1");
        snprintf(s, sizeof(s), "%.74s", line);
        expect_refused(s, "is an identity");
        assert_false(h_contains(h_p("stderr"), s)); /* never the secret itself */
        free(id);
    }
    /* the recipient option is offline-only and coffer-v1-only */
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--recovery-recipient", h_p("age.rcpt"),
                              "--in", h_p("pt"), "--out", h_p("ct"), NULL),
                     2);
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--offline", "--key-file", h_p("key"),
                              "--format", "cobblestone", "--recovery-recipient", h_p("age.rcpt"),
                              "--in", h_p("pt"), "--out", h_p("ct"), NULL),
                     2);
}

/* cofferd refuses a bad recipients file at start, naming the file, the line and the problem. */
static void test_recovery_daemon_refuses_bad_recipients(void **state)
{
    static const char *bad[] = {
        "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwq", /* checksum */
        "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX",
        "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equ", /* length */
    };
    static const char *why[] = {"checksum", "is an identity", "characters long"};
    (void)state;
    for (int i = 0; i < 3; i++) {
        char text[200];
        snprintf(text, sizeof(text), "# recovery\n%s\n", bad[i]);
        h_write(h_p("bad.rcpt"), text, strlen(text));
        const char *argv[] = {ts_bin("cofferd"), "--socket", h_p("d.sock"),
                              "--secrets-dir",   h_dir(),    "--recovery-recipient",
                              h_p("bad.rcpt"),   NULL};
        assert_int_equal(h_run(argv, NULL, h_p("d.err")), 2);
        if (!h_contains(h_p("d.err"), why[i]) || !h_contains(h_p("d.err"), "line 2"))
            fail_msg("cofferd refused '%s' without '%s' and the line", bad[i], why[i]);
        assert_false(h_contains(h_p("d.err"), "GFPQ4EGAEX")); /* never the secret */
    }
}

static void test_recovery_too_many(void **state)
{
    char *text = malloc(70 * 64);
    size_t o = 0;
    (void)state;
    need_age();
    assert_int_equal(h_coffer(NULL, NULL, "keygen", "--out", h_p("key"), NULL), 0);
    free(h_write_random(h_p("pt"), 100, 9));
    for (int i = 0; i < 65; i++) {
        const char *kg[] = {AGE_KEYGEN, "-o", h_p("many.id"), NULL};
        const char *ky[] = {AGE_KEYGEN, "-y", h_p("many.id"), NULL};
        size_t n = 0;
        unlink(h_p("many.id"));
        assert_int_equal(run(kg, NULL), 0);
        assert_int_equal(run(ky, h_p("one.rcpt")), 0);
        uint8_t *r = h_read(h_p("one.rcpt"), &n);
        memcpy(text + o, r, n);
        o += n;
        free(r);
        if (i == 63) {
            h_write(h_p("64.rcpt"), text, o);
            assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--offline", "--key-file", h_p("key"),
                                      "--recovery-recipient", h_p("64.rcpt"), "--in", h_p("pt"),
                                      "--out", h_p("ct64"), NULL),
                             0);
        }
    }
    h_write(h_p("65.rcpt"), text, o);
    assert_int_equal(h_coffer(NULL, NULL, "encrypt", "--offline", "--key-file", h_p("key"),
                              "--recovery-recipient", h_p("65.rcpt"), "--in", h_p("pt"), "--out",
                              h_p("ct65"), NULL),
                     1);
    assert_true(h_contains(h_p("stderr"), "more than 64 recovery recipients"));
    assert_true(h_contains(h_p("stderr"), "31988"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_recovery_with_real_age, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_recovery_entries_are_authenticated, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_recovery_bad_recipients, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_recovery_daemon_refuses_bad_recipients, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_recovery_too_many, h_setup, h_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
