/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of engine_key: the key-form rules of each format, key ids, key files, fresh keys. */
#include "coffer_error.h"
#include "engine_key.h"
#include "test_support.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

/* 32 random bytes that are certainly not all printable (byte 0 is a control character). */
static void random_key(uint8_t *k, size_t n, uint64_t seed)
{
    ts_fill(k, n, seed);
    k[0] = 0x01;
}

/* keyId computed here, independently of engine_key_id: HMAC-SHA-256(key, "coffer key id")[:8]. */
static void expected_id(const uint8_t *key, size_t len, char out[ENGINE_KEY_ID_LEN + 1])
{
    static const char label[] = "coffer key id";
    uint8_t md[32];
    unsigned int mdlen = 0;
    assert_non_null(
        HMAC(EVP_sha256(), key, (int)len, (const uint8_t *)label, strlen(label), md, &mdlen));
    assert_int_equal(mdlen, 32);
    for (int i = 0; i < 8; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static size_t to_base64(const uint8_t *in, size_t n, char *out)
{
    return (size_t)EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

static size_t to_hex(const uint8_t *in, size_t n, char *out, int upper)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, upper ? "%02X" : "%02x", in[i]);
    return 2 * n;
}

/* Parse and expect success with the given bytes. */
static void expect_key(engine_key_rule rule, const void *field, size_t len, const uint8_t *want,
                       size_t wantlen)
{
    engine_key *k = NULL;
    char detail[256] = "x";
    char id[ENGINE_KEY_ID_LEN + 1];
    int r = engine_key_parse(&k, rule, field, len, detail, sizeof(detail));
    if (r != 0)
        print_error("engine_key_parse (rule %d, %zu bytes): %s: %s\n", (int)rule, len,
                    coffer_errname(r), detail);
    assert_int_equal(r, 0);
    assert_non_null(k);
    assert_int_equal(k->len, wantlen);
    assert_memory_equal(k->bytes, want, wantlen);
    expected_id(want, wantlen, id);
    assert_string_equal(k->id, id);
    engine_key_free(k);
}

/* Parse and expect the error code; the detail must name `mention` (if not NULL). */
static void expect_refused(engine_key_rule rule, const void *field, size_t len, int err,
                           const char *mention)
{
    engine_key *k = (engine_key *)0x1;
    char detail[512];
    memset(detail, 0, sizeof(detail));
    int r = engine_key_parse(&k, rule, field, len, detail, sizeof(detail));
    if (r != err)
        print_error("engine_key_parse (rule %d, %zu bytes): %s, expected %s (%s)\n", (int)rule, len,
                    coffer_errname(r), coffer_errname(err), detail);
    assert_int_equal(r, err);
    assert_null(k);
    if (mention != NULL) {
        if (strstr(detail, mention) == NULL)
            print_error("detail \"%s\" does not mention \"%s\"\n", detail, mention);
        assert_non_null(strstr(detail, mention));
    }
    /* the refusal never echoes a key-like field back */
    if (len >= 8) {
        char head[9];
        memcpy(head, field, 8);
        head[8] = '\0';
        if (strlen(head) == 8)
            assert_null(strstr(detail, head));
    }
}

static void test_coffer_raw(void **state)
{
    (void)state;
    uint8_t key[32];
    for (uint64_t s = 1; s <= 50; s++) {
        random_key(key, 32, s);
        expect_key(ENGINE_KEY_RULE_COFFER, key, 32, key, 32);
    }
    /* raw bytes with a NUL or 0xff anywhere are still 32 raw bytes */
    memset(key, 0xff, sizeof(key));
    expect_key(ENGINE_KEY_RULE_COFFER, key, 32, key, 32);
    memset(key, 0, sizeof(key));
    expect_key(ENGINE_KEY_RULE_COFFER, key, 32, key, 32);
    /* one non-printable byte among printable ones is enough to be raw */
    memset(key, 'a', sizeof(key));
    key[31] = 0x80;
    expect_key(ENGINE_KEY_RULE_COFFER, key, 32, key, 32);
}

static void test_coffer_text_forms(void **state)
{
    (void)state;
    uint8_t key[32];
    char text[128];
    size_t n;

    for (uint64_t s = 1; s <= 20; s++) {
        random_key(key, 32, s * 7);
        n = to_base64(key, 32, text);
        assert_int_equal(n, 44);
        expect_key(ENGINE_KEY_RULE_COFFER, text, n, key, 32); /* base64, no newline */
        text[n] = '\n';
        expect_key(ENGINE_KEY_RULE_COFFER, text, n + 1, key, 32); /* base64 + newline */
        n = to_hex(key, 32, text, 0);
        expect_key(ENGINE_KEY_RULE_COFFER, text, n, key, 32); /* hex */
        text[n] = '\n';
        expect_key(ENGINE_KEY_RULE_COFFER, text, n + 1, key, 32); /* hex + newline */
        n = to_hex(key, 32, text, 1);
        expect_key(ENGINE_KEY_RULE_COFFER, text, n, key, 32); /* upper-case hex */
    }
}

static void test_coffer_refusals(void **state)
{
    (void)state;
    uint8_t key[64];
    char text[256];
    size_t n;

    /* a passphrase: 32 printable characters */
    const char *pass = "correct horse battery staple 123";
    assert_int_equal(strlen(pass), 32);
    expect_refused(ENGINE_KEY_RULE_COFFER, pass, 32, COFFER_ERR_KEY_FORM, NULL);
    memset(text, 'A', 32);
    expect_refused(ENGINE_KEY_RULE_COFFER, text, 32, COFFER_ERR_KEY_FORM, NULL);
    memset(text, '~', 32);
    expect_refused(ENGINE_KEY_RULE_COFFER, text, 32, COFFER_ERR_KEY_FORM, NULL);

    /* 31 and 33 raw bytes: refused with the length named */
    random_key(key, sizeof(key), 99);
    expect_refused(ENGINE_KEY_RULE_COFFER, key, 31, COFFER_ERR_KEY_SIZE, "31");
    expect_refused(ENGINE_KEY_RULE_COFFER, key, 33, COFFER_ERR_KEY_SIZE, "33");
    expect_refused(ENGINE_KEY_RULE_COFFER, key, 16, COFFER_ERR_KEY_SIZE, "16");
    expect_refused(ENGINE_KEY_RULE_COFFER, key, 1, COFFER_ERR_KEY_SIZE, NULL);
    /* 32 raw bytes and a newline are 33 bytes, not a key */
    memcpy(text, key, 32);
    text[32] = '\n';
    expect_refused(ENGINE_KEY_RULE_COFFER, text, 33, COFFER_ERR_KEY_SIZE, "33");

    /* text of the wrong length: base64 of 31 or 33 bytes, hex of 31 bytes */
    n = to_base64(key, 31, text);
    expect_refused(ENGINE_KEY_RULE_COFFER, text, n, COFFER_ERR_KEY_SIZE, "31");
    n = to_base64(key, 33, text); /* 44 characters, decoding to 33 bytes: either length */
    expect_refused(ENGINE_KEY_RULE_COFFER, text, n, COFFER_ERR_KEY_SIZE, NULL);
    n = to_hex(key, 31, text, 0);
    expect_refused(ENGINE_KEY_RULE_COFFER, text, n, COFFER_ERR_KEY_SIZE, NULL);
    /* two trailing newlines, or a broken character, are not the allowed form */
    n = to_base64(key, 32, text);
    text[n] = '\n';
    text[n + 1] = '\n';
    assert_int_not_equal(engine_key_parse(&(engine_key *){NULL}, ENGINE_KEY_RULE_COFFER,
                                          (uint8_t *)text, n + 2, NULL, 0),
                         0);
    n = to_hex(key, 32, text, 0);
    text[10] = 'g';
    assert_int_not_equal(engine_key_parse(&(engine_key *){NULL}, ENGINE_KEY_RULE_COFFER,
                                          (uint8_t *)text, n, NULL, 0),
                         0);

    /* empty */
    expect_refused(ENGINE_KEY_RULE_COFFER, "", 0, COFFER_ERR_KEY_MISSING, NULL);
    /* oversized fields are refused without being parsed */
    uint8_t *big = calloc(1, ENGINE_KEY_FIELD_MAX + 1);
    assert_non_null(big);
    expect_refused(ENGINE_KEY_RULE_COFFER, big, ENGINE_KEY_FIELD_MAX + 1, COFFER_ERR_KEY_SIZE,
                   NULL);
    free(big);
    /* detail may be NULL */
    assert_int_equal(engine_key_parse(&(engine_key *){NULL}, ENGINE_KEY_RULE_COFFER,
                                      (const uint8_t *)pass, 32, NULL, 0),
                     COFFER_ERR_KEY_FORM);
}

static void test_velero_rule(void **state)
{
    (void)state;
    uint8_t key[40];
    char text[64];
    random_key(key, sizeof(key), 5);
    /* 16, 24, 32 raw bytes: AES-128/192/256, whatever their bytes (the prototype's rule) */
    expect_key(ENGINE_KEY_RULE_VELERO, key, 16, key, 16);
    expect_key(ENGINE_KEY_RULE_VELERO, key, 24, key, 24);
    expect_key(ENGINE_KEY_RULE_VELERO, key, 32, key, 32);
    memcpy(text, "0123456789abcdef0123456789abcdef", 32);
    expect_key(ENGINE_KEY_RULE_VELERO, text, 32, (const uint8_t *)text, 32);
    expect_key(ENGINE_KEY_RULE_VELERO, text, 16, (const uint8_t *)text, 16);
    /* anything else is refused with its size */
    for (size_t n = 1; n <= 40; n++) {
        char want[8];
        if (n == 16 || n == 24 || n == 32)
            continue;
        snprintf(want, sizeof(want), "%zu", n);
        expect_refused(ENGINE_KEY_RULE_VELERO, key, n, COFFER_ERR_KEY_SIZE, want);
    }
    /* base64 text is not decoded under the velero rule: 44 bytes are 44 bytes */
    size_t n = to_base64(key, 32, text);
    expect_refused(ENGINE_KEY_RULE_VELERO, text, n, COFFER_ERR_KEY_SIZE, "44");
    expect_refused(ENGINE_KEY_RULE_VELERO, "", 0, COFFER_ERR_KEY_MISSING, NULL);
}

static void test_cobblestone_128_rule(void **state)
{
    (void)state;
    uint8_t key[32];
    char text[64];
    size_t n;
    random_key(key, sizeof(key), 11);
    expect_key(ENGINE_KEY_RULE_COBBLESTONE_128, key, 16, key, 16);
    n = to_base64(key, 16, text);
    expect_key(ENGINE_KEY_RULE_COBBLESTONE_128, text, n, key, 16);
    text[n] = '\n';
    expect_key(ENGINE_KEY_RULE_COBBLESTONE_128, text, n + 1, key, 16);
    n = to_hex(key, 16, text, 0);
    expect_key(ENGINE_KEY_RULE_COBBLESTONE_128, text, n, key, 16);
    expect_refused(ENGINE_KEY_RULE_COBBLESTONE_128, "hunter2-hunter2!", 16, COFFER_ERR_KEY_FORM,
                   NULL);
    expect_refused(ENGINE_KEY_RULE_COBBLESTONE_128, key, 15, COFFER_ERR_KEY_SIZE, "15");
    expect_refused(ENGINE_KEY_RULE_COBBLESTONE_128, key, 17, COFFER_ERR_KEY_SIZE, "17");
    /* a coffer-v1 key is not a Cobblestone-128 key */
    n = to_base64(key, 32, text);
    expect_refused(ENGINE_KEY_RULE_COBBLESTONE_128, text, n, COFFER_ERR_KEY_SIZE, NULL);
}

/*
 * Base64 or hex text of the wrong size: the detail names the decoded length, which is what the
 * user must fix ("decodes to 32 bytes, not 16"), not only the text's length.
 */
static void test_detail_names_decoded_length(void **state)
{
    (void)state;
    uint8_t key[33];
    char text[128];
    size_t n;
    random_key(key, sizeof(key), 12);
    n = to_base64(key, 31, text);
    expect_refused(ENGINE_KEY_RULE_COFFER, text, n, COFFER_ERR_KEY_SIZE, "31 bytes");
    n = to_base64(key, 16, text);
    expect_refused(ENGINE_KEY_RULE_COFFER, text, n, COFFER_ERR_KEY_SIZE, "16 bytes");
    /* decoding to more than the rule's size */
    n = to_base64(key, 32, text);
    expect_refused(ENGINE_KEY_RULE_COBBLESTONE_128, text, n, COFFER_ERR_KEY_SIZE, "32 bytes");
    n = to_base64(key, 33, text);
    expect_refused(ENGINE_KEY_RULE_COFFER, text, n, COFFER_ERR_KEY_SIZE, "33 bytes");
}

static void test_key_id(void **state)
{
    (void)state;
    uint8_t key[32];
    char id[ENGINE_KEY_ID_LEN + 1], want[ENGINE_KEY_ID_LEN + 1];
    engine_key *k = NULL;

    /* fixed known answers (computed outside coffer with Python's hmac module) */
    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)i;
    engine_key_id(key, 32, id);
    assert_string_equal(id, "f866376bff1edfc2");
    engine_key_id(key, 16, id);
    assert_string_equal(id, "3d8dad0a929448fc");
    memset(key, 0, sizeof(key));
    engine_key_id(key, 32, id);
    assert_string_equal(id, "a7511b52934b4098");
    /* random keys against OpenSSL's HMAC, through every constructor */
    for (uint64_t s = 1; s <= 20; s++) {
        random_key(key, 32, s + 1000);
        expected_id(key, 32, want);
        engine_key_id(key, 32, id);
        assert_string_equal(id, want);
        assert_int_equal(strlen(id), ENGINE_KEY_ID_LEN);
        assert_int_equal(engine_key_from_bytes(&k, key, 32), 0);
        assert_string_equal(k->id, want);
        engine_key_free(k);
        expected_id(key, 24, want);
        engine_key_id(key, 24, id);
        assert_string_equal(id, want);
    }
}

static void test_generate_and_from_bytes(void **state)
{
    (void)state;
    engine_key *a = NULL, *b = NULL;
    char want[ENGINE_KEY_ID_LEN + 1];
    static const size_t ok[] = {16, 24, 32};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(engine_key_generate(&a, ok[i]), 0);
        assert_int_equal(engine_key_generate(&b, ok[i]), 0);
        assert_int_equal(a->len, ok[i]);
        assert_memory_not_equal(a->bytes, b->bytes, ok[i]);
        expected_id(a->bytes, a->len, want);
        assert_string_equal(a->id, want);
        engine_key_free(a);
        engine_key_free(b);
    }
    a = (engine_key *)0x1;
    assert_int_equal(engine_key_generate(&a, 20), COFFER_ERR_KEY_SIZE);
    assert_null(a);
    assert_int_equal(engine_key_generate(&a, 0), COFFER_ERR_KEY_SIZE);
    uint8_t raw[40] = {0};
    assert_int_equal(engine_key_from_bytes(&a, raw, 0), COFFER_ERR_KEY_SIZE);
    assert_int_equal(engine_key_from_bytes(&a, raw, ENGINE_KEY_MAX + 1), COFFER_ERR_KEY_SIZE);
    engine_key_free(NULL);
}

static void test_load_file(void **state)
{
    (void)state;
    char *dir = ts_tmpdir();
    char path[4096], detail[512];
    uint8_t key[32], text[128];
    engine_key *k = NULL;
    size_t n;

    random_key(key, 32, 77);
    /* base64 with a newline, as `coffer keygen > file` writes it */
    n = to_base64(key, 32, (char *)text);
    text[n++] = '\n';
    snprintf(path, sizeof(path), "%s/b64.key", dir);
    assert_int_equal(ts_write_file(path, text, n), 0);
    assert_int_equal(engine_key_load_file(&k, ENGINE_KEY_RULE_COFFER, path, detail, sizeof(detail)),
                     0);
    assert_memory_equal(k->bytes, key, 32);
    engine_key_free(k);
    /* raw */
    snprintf(path, sizeof(path), "%s/raw.key", dir);
    assert_int_equal(ts_write_file(path, key, 32), 0);
    assert_int_equal(engine_key_load_file(&k, ENGINE_KEY_RULE_COFFER, path, NULL, 0), 0);
    assert_memory_equal(k->bytes, key, 32);
    engine_key_free(k);
    /* velero rule from a file: raw 24 bytes */
    snprintf(path, sizeof(path), "%s/velero.key", dir);
    assert_int_equal(ts_write_file(path, key, 24), 0);
    assert_int_equal(engine_key_load_file(&k, ENGINE_KEY_RULE_VELERO, path, NULL, 0), 0);
    assert_int_equal(k->len, 24);
    engine_key_free(k);
    /* a passphrase file */
    snprintf(path, sizeof(path), "%s/pass.key", dir);
    assert_int_equal(ts_write_file(path, "correct horse battery staple 123", 32), 0);
    k = (engine_key *)0x1;
    assert_int_equal(engine_key_load_file(&k, ENGINE_KEY_RULE_COFFER, path, detail, sizeof(detail)),
                     COFFER_ERR_KEY_FORM);
    assert_null(k);
    assert_null(strstr(detail, "horse"));
    /* wrong size: the detail names the length */
    snprintf(path, sizeof(path), "%s/short.key", dir);
    assert_int_equal(ts_write_file(path, key, 31), 0);
    assert_int_equal(engine_key_load_file(&k, ENGINE_KEY_RULE_COFFER, path, detail, sizeof(detail)),
                     COFFER_ERR_KEY_SIZE);
    assert_non_null(strstr(detail, "31"));
    /* empty file */
    snprintf(path, sizeof(path), "%s/empty.key", dir);
    assert_int_equal(ts_write_file(path, "", 0), 0);
    assert_int_equal(engine_key_load_file(&k, ENGINE_KEY_RULE_COFFER, path, NULL, 0),
                     COFFER_ERR_KEY_MISSING);
    /* a file beyond the field limit */
    uint8_t *big = malloc(ENGINE_KEY_FIELD_MAX * 2);
    assert_non_null(big);
    ts_fill(big, ENGINE_KEY_FIELD_MAX * 2, 3);
    snprintf(path, sizeof(path), "%s/big.key", dir);
    assert_int_equal(ts_write_file(path, big, ENGINE_KEY_FIELD_MAX * 2), 0);
    assert_int_equal(engine_key_load_file(&k, ENGINE_KEY_RULE_COFFER, path, NULL, 0),
                     COFFER_ERR_KEY_SIZE);
    free(big);
    /* missing file: KEY_MISSING, and the detail names the path */
    snprintf(path, sizeof(path), "%s/nope.key", dir);
    assert_int_equal(engine_key_load_file(&k, ENGINE_KEY_RULE_COFFER, path, detail, sizeof(detail)),
                     COFFER_ERR_KEY_MISSING);
    assert_non_null(strstr(detail, "nope.key"));
    snprintf(path, sizeof(path), "%s/nodir/nope.key", dir);
    assert_int_equal(engine_key_load_file(&k, ENGINE_KEY_RULE_COFFER, path, NULL, 0),
                     COFFER_ERR_KEY_MISSING);
    /* a directory is not a key file */
    assert_int_equal(engine_key_load_file(&k, ENGINE_KEY_RULE_COFFER, dir, NULL, 0),
                     COFFER_ERR_KEY_READ);
    ts_rmtree(dir);
    free(dir);
}

/* A FIFO, a device and an oversized file are refused from fstat, before anything is read: a FIFO
 * without a writer used to block the open forever (a child with an alarm proves it returns). */
static void test_load_file_not_regular(void **state)
{
    (void)state;
    char *dir = ts_tmpdir();
    char fifo[4096], link[4096], big[4096], detail[512];
    engine_key *k = NULL;
    pid_t pid;
    int status = 0;

    snprintf(fifo, sizeof(fifo), "%s/fifo.key", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    snprintf(link, sizeof(link), "%s/zero.key", dir);
    assert_int_equal(symlink("/dev/zero", link), 0);
    snprintf(big, sizeof(big), "%s/big.key", dir);
    assert_int_equal(ts_write_file(big, "", 0), 0);
    assert_int_equal(truncate(big, 1L << 30), 0); /* sparse: reading it all would take a while */
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(20);
        int a = engine_key_load_file(&k, ENGINE_KEY_RULE_COFFER, fifo, detail, sizeof(detail));
        int ok = a == COFFER_ERR_KEY_READ && strstr(detail, "not a regular file") != NULL;
        int b = engine_key_load_file(&k, ENGINE_KEY_RULE_VELERO, link, detail, sizeof(detail));
        ok = ok && b == COFFER_ERR_KEY_READ && strstr(detail, "not a regular file") != NULL;
        int c = engine_key_load_file(&k, ENGINE_KEY_RULE_COFFER, big, detail, sizeof(detail));
        ok = ok && c == COFFER_ERR_KEY_SIZE && strstr(detail, "more than 4096 bytes") != NULL &&
             strstr(detail, "1073741824") == NULL;
        if (!ok)
            fprintf(stderr, "fifo %d, /dev/zero %d, big %d: %s\n", a, b, c, detail);
        _exit(ok ? 0 : 1);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status))
        fail_msg("engine_key_load_file blocked on a FIFO (killed by signal %d)", WTERMSIG(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    ts_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_coffer_raw),
        cmocka_unit_test(test_coffer_text_forms),
        cmocka_unit_test(test_coffer_refusals),
        cmocka_unit_test(test_velero_rule),
        cmocka_unit_test(test_cobblestone_128_rule),
        cmocka_unit_test(test_detail_names_decoded_length),
        cmocka_unit_test(test_key_id),
        cmocka_unit_test(test_generate_and_from_bytes),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_load_file_not_regular),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
