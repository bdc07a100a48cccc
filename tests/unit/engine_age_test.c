/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of engine_bech32, engine_age and engine_recovery: BIP-173's vectors, the age spec's
 * key example, and files exchanged both ways with Debian's age and age-keygen. */
#include "coffer_error.h"
#include "engine_age.h"
#include "engine_bech32.h"
#include "engine_metadata.h"
#include "engine_recovery.h"
#include "test_support.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define AGE        "/usr/bin/age"
#define AGE_KEYGEN "/usr/bin/age-keygen"

/* ---- bech32: BIP-173's test vectors (bitcoin/bips bip-0173.mediawiki, "Test vectors") ---- */

static const char *const bip173_valid[] = {
    "A12UEL5L",
    "a12uel5l",
    "an83characterlonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1tt5tgs",
    "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
    "11qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqc8247j",
    "split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w",
    "?1ezyfcl",
};

static const char *const bip173_invalid[] = {
    " 1nwldj5", /* HRP character out of range (0x20) */
    "\x7f"
    "1axkwrx", /* HRP character out of range (0x7f) */
    "\x80"
    "1eym55h", /* HRP character out of range (0x80) */
    "an84characterslonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1569pvx",
    "pzry9x0s0muk",  /* no separator */
    "1pzry9x0s0muk", /* empty HRP */
    "x1b4n0q5v",     /* invalid data character */
    "li1dgmt3",      /* too short checksum */
    "de1lg7wt\xff",  /* invalid character in checksum */
    "A1G7SGD8",      /* checksum calculated with upper-case HRP */
    "10a06t8",       /* empty HRP */
    "1qzzfhee",      /* empty HRP */
};

static void test_bech32_bip173_valid(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bip173_valid) / sizeof(bip173_valid[0]); i++) {
        const char *s = bip173_valid[i];
        char hrp[91], again[91], lower[91];
        uint8_t data[90];
        size_t n = 0, len = strlen(s);
        int upper = s[0] >= 'A' && s[0] <= 'Z';
        assert_int_equal(
            engine_bech32_decode(s, len, hrp, sizeof(hrp), data, sizeof(data), &n, NULL, 0), 0);
        /* encoding back gives the same string (in its case) */
        assert_int_equal(engine_bech32_encode(hrp, data, n, upper, again, sizeof(again)), 0);
        assert_string_equal(again, s);
        /* any one changed character breaks the checksum */
        memcpy(lower, s, len + 1);
        lower[len - 1] = lower[len - 1] == 'q' ? 'p' : (upper ? 'Q' : 'q');
        assert_int_not_equal(
            engine_bech32_decode(lower, len, hrp, sizeof(hrp), data, sizeof(data), &n, NULL, 0), 0);
    }
}

static void test_bech32_bip173_invalid(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bip173_invalid) / sizeof(bip173_invalid[0]); i++) {
        char hrp[91], detail[160] = "";
        uint8_t data[90];
        size_t n = 0;
        assert_int_equal(engine_bech32_decode(bip173_invalid[i], strlen(bip173_invalid[i]), hrp,
                                              sizeof(hrp), data, sizeof(data), &n, detail,
                                              sizeof(detail)),
                         COFFER_ERR_KEY_FORM);
        assert_true(detail[0] != '\0');
    }
    /* mixed case (BIP-173: "decoders MUST NOT accept strings where some characters are
     * uppercase and some are lowercase") */
    char hrp[91];
    uint8_t data[90];
    size_t n = 0;
    assert_int_equal(
        engine_bech32_decode("a12UEL5L", 8, hrp, sizeof(hrp), data, sizeof(data), &n, NULL, 0),
        COFFER_ERR_KEY_FORM);
}

/* BIP-173's data: "abcdef1qpzry9..." holds the 32 values 0..31; the first segwit example's
 * witness program is 751e76e8199196d454941c45d1b3a323f1433bd6. */
static void test_bech32_data(void **state)
{
    static const char *addr = "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4";
    char hrp[91];
    uint8_t data[90], prog[40];
    size_t n = 0, plen = 0, klen = 0;
    uint8_t *want;
    (void)state;

    assert_int_equal(engine_bech32_decode(bip173_valid[3], strlen(bip173_valid[3]), hrp,
                                          sizeof(hrp), data, sizeof(data), &n, NULL, 0),
                     0);
    assert_string_equal(hrp, "abcdef");
    assert_int_equal(n, 32);
    for (size_t i = 0; i < 32; i++)
        assert_int_equal(data[i], i);

    assert_int_equal(
        engine_bech32_decode(addr, strlen(addr), hrp, sizeof(hrp), data, sizeof(data), &n, NULL, 0),
        0);
    assert_string_equal(hrp, "bc");
    assert_int_equal(data[0], 0); /* witness version */
    assert_int_equal(engine_bech32_regroup(data + 1, n - 1, 5, 8, 0, prog, sizeof(prog), &plen), 0);
    want = ts_hex("751e76e8199196d454941c45d1b3a323f1433bd6", &klen);
    assert_int_equal(plen, klen);
    assert_memory_equal(prog, want, klen);
    free(want);
}

/* ---- age keys: the spec's example (c2sp.org/age, "The X25519 recipient type") ---- */

static void test_age_spec_key(void **state)
{
    static const char *id_text =
        "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX";
    static const char *rc_text = "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj";
    engine_age_identity *id = NULL;
    engine_age_recipient rc;
    char again[ENGINE_AGE_IDENTITY_TEXT + 1];
    (void)state;

    assert_int_equal(engine_age_identity_parse(&id, id_text, strlen(id_text), NULL, 0), 0);
    assert_string_equal(id->recipient.text, rc_text);
    assert_int_equal(engine_age_identity_text(id, again), 0);
    assert_string_equal(again, id_text);
    assert_int_equal(engine_age_recipient_parse(&rc, rc_text, strlen(rc_text), NULL, 0), 0);
    assert_memory_equal(rc.key, id->recipient.key, 32);
    engine_age_identity_free(id);
}

static void expect_bad_recipient(const char *text, const char *needle)
{
    engine_age_recipient rc;
    char detail[400] = "";
    assert_int_equal(engine_age_recipient_parse(&rc, text, strlen(text), detail, sizeof(detail)),
                     COFFER_ERR_KEY_FORM);
    if (strstr(detail, needle) == NULL)
        fail_msg("recipient '%s': '%s' does not say '%s'", text, detail, needle);
}

static void test_age_bad_recipients(void **state)
{
    char s[80];
    (void)state;
    const char *good = "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj";
    /* bad checksum: one data character changed */
    snprintf(s, sizeof(s), "%s", good);
    s[10] = s[10] == 'q' ? 'p' : 'q';
    expect_bad_recipient(s, "checksum");
    /* wrong prefix: the same key under another hrp (valid bech32) */
    expect_bad_recipient("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", "must start with 'age1'");
    expect_bad_recipient(
        "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX",
        "is an identity");
    expect_bad_recipient("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI", "SSH");
    /* wrong length: truncated, or one character more */
    snprintf(s, sizeof(s), "%.50s", good);
    expect_bad_recipient(s, "characters long");
    snprintf(s, sizeof(s), "%sq", good);
    expect_bad_recipient(s, "characters long");
    /* mixed case */
    snprintf(s, sizeof(s), "%s", good);
    s[20] = 'X';
    expect_bad_recipient(s, "mixes upper and lower case");
    /* a character outside the alphabet ('b' is not in bech32's) */
    snprintf(s, sizeof(s), "%s", good);
    s[12] = 'b';
    expect_bad_recipient(s, "not in the bech32 alphabet");
}

/* ---- age files, both ways with the real age ---- */

static char *dir;

static const char *path(const char *name)
{
    static char buf[4][4096];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof(buf[k]), "%s/%s", dir, name);
    return buf[k];
}

static int run(const char *const *argv, const char *out)
{
    return ts_run((char *const *)argv, NULL, NULL, out, path("stderr"));
}

static int setup(void **state)
{
    (void)state;
    if (access(AGE, X_OK) != 0 || access(AGE_KEYGEN, X_OK) != 0)
        ts_skip("age and age-keygen are not installed (apt-get install age)");
    dir = ts_tmpdir();
    return dir == NULL;
}

static int teardown(void **state)
{
    (void)state;
    ts_rmtree(dir);
    free(dir);
    return 0;
}

/* An identity file made by age-keygen, loaded by the engine. */
static void keygen(const char *name, engine_age_identities *ids)
{
    const char *argv[] = {AGE_KEYGEN, "-o", path(name), NULL};
    char detail[300] = "";
    assert_int_equal(run(argv, NULL), 0);
    if (ids != NULL)
        assert_int_equal(engine_age_identities_load(ids, path(name), detail, sizeof(detail)), 0);
}

static void test_age_coffer_to_age(void **state)
{
    static const size_t sizes[] = {0, 1, 32, 65535, 65536, 65537, 200000};
    engine_age_identities ids = {0};
    (void)state;

    keygen("id1", &ids);
    /* the recipient age-keygen -y prints is the one the engine derives */
    const char *y[] = {AGE_KEYGEN, "-y", path("id1"), NULL};
    assert_int_equal(run(y, path("y")), 0);
    size_t ylen = 0;
    uint8_t *ytext = ts_read_file(path("y"), &ylen);
    assert_non_null(ytext);
    assert_memory_equal(ytext, ids.v[0]->recipient.text, ENGINE_AGE_RECIPIENT_TEXT);
    free(ytext);

    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint8_t *pt = malloc(sizes[i] + 1), *ct = NULL, *back;
        size_t ctlen = 0, backlen = 0;
        ts_fill(pt, sizes[i], 70 + i);
        assert_int_equal(engine_age_encrypt(&ids.v[0]->recipient, 1, pt, sizes[i], &ct, &ctlen), 0);
        assert_int_equal(ts_write_file(path("ct.age"), ct, ctlen), 0);
        const char *d[] = {AGE,  "-d",           "-i",           path("id1"),
                           "-o", path("pt.out"), path("ct.age"), NULL};
        assert_int_equal(run(d, NULL), 0);
        back = ts_read_file(path("pt.out"), &backlen);
        assert_int_equal(backlen, sizes[i]);
        assert_true(sizes[i] == 0 || memcmp(back, pt, sizes[i]) == 0);
        free(back);
        free(ct);
        free(pt);
    }
    engine_age_identities_clear(&ids);
}

static void test_age_age_to_coffer(void **state)
{
    static const size_t sizes[] = {0, 32, 65536, 65537, 300000};
    engine_age_identities ids = {0}, other = {0};
    (void)state;

    keygen("a", &ids);
    keygen("b", &other);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint8_t *pt = malloc(sizes[i] + 1), *ct, *out = malloc(sizes[i] + 1);
        size_t ctlen = 0, outlen = 0;
        char detail[300] = "";
        ts_fill(pt, sizes[i], 90 + i);
        assert_int_equal(ts_write_file(path("pt"), pt, sizes[i]), 0);
        /* two recipients, ours second: the engine must skip the stanza it cannot open */
        const char *e[] = {AGE,
                           "-r",
                           other.v[0]->recipient.text,
                           "-r",
                           ids.v[0]->recipient.text,
                           "-o",
                           path("ct.age"),
                           path("pt"),
                           NULL};
        assert_int_equal(run(e, NULL), 0);
        ct = ts_read_file(path("ct.age"), &ctlen);
        assert_int_equal(
            engine_age_decrypt(&ids, ct, ctlen, out, sizes[i] + 1, &outlen, detail, sizeof(detail)),
            0);
        assert_int_equal(outlen, sizes[i]);
        assert_true(sizes[i] == 0 || memcmp(out, pt, sizes[i]) == 0);
        if (sizes[i] == 32) {
            /* tampering: the header MAC, a payload byte, a truncated end */
            ct[30] ^= 1;
            assert_int_not_equal(
                engine_age_decrypt(&ids, ct, ctlen, out, 64, &outlen, detail, sizeof(detail)), 0);
            ct[30] ^= 1;
            ct[ctlen - 5] ^= 1;
            assert_int_equal(
                engine_age_decrypt(&ids, ct, ctlen, out, 64, &outlen, detail, sizeof(detail)),
                COFFER_ERR_TAMPERED);
            ct[ctlen - 5] ^= 1;
            assert_int_not_equal(
                engine_age_decrypt(&ids, ct, ctlen - 1, out, 64, &outlen, detail, sizeof(detail)),
                0);
        }
        free(ct);
        free(out);
        free(pt);
    }
    /* a file for someone else only */
    {
        uint8_t *ct, out[64];
        size_t ctlen = 0, outlen = 0;
        char detail[300] = "";
        const char *e[] = {AGE,        "-r", other.v[0]->recipient.text, "-o", path("ct2.age"),
                           path("pt"), NULL};
        assert_int_equal(run(e, NULL), 0);
        ct = ts_read_file(path("ct2.age"), &ctlen);
        assert_int_equal(
            engine_age_decrypt(&ids, ct, ctlen, out, sizeof(out), &outlen, detail, sizeof(detail)),
            COFFER_ERR_WRONG_KEY);
        free(ct);
    }
    engine_age_identities_clear(&ids);
    engine_age_identities_clear(&other);
}

static void test_age_key_files(void **state)
{
    engine_age_recipients rs = {0};
    engine_age_identities ids = {0};
    char detail[600] = "", text[2048];
    (void)state;

    keygen("k1", &ids);
    keygen("k2", &ids);
    assert_int_equal(ids.n, 2);
    /* a recipients file as age -R reads it: comments, blank lines, a duplicate */
    snprintf(text, sizeof(text), "# recovery keys\n\n%s\n  %s  \r\n# again\n%s\n",
             ids.v[0]->recipient.text, ids.v[1]->recipient.text, ids.v[0]->recipient.text);
    assert_int_equal(ts_write_file(path("rcpt"), text, strlen(text)), 0);
    assert_int_equal(engine_age_recipients_load(&rs, path("rcpt"), detail, sizeof(detail)), 0);
    assert_int_equal(rs.n, 2);
    /* a bad line names the file and the line */
    snprintf(text, sizeof(text), "# x\n%s\nage1qqqq\n", ids.v[0]->recipient.text);
    assert_int_equal(ts_write_file(path("bad"), text, strlen(text)), 0);
    assert_int_equal(engine_age_recipients_load(&rs, path("bad"), detail, sizeof(detail)),
                     COFFER_ERR_KEY_FORM);
    assert_non_null(strstr(detail, "line 3"));
    /* no file, an empty file */
    assert_int_equal(engine_age_recipients_load(&rs, path("none"), detail, sizeof(detail)),
                     COFFER_ERR_KEY_MISSING);
    assert_int_equal(ts_write_file(path("empty"), "# nothing\n", 10), 0);
    assert_int_equal(engine_age_recipients_load(&rs, path("empty"), detail, sizeof(detail)),
                     COFFER_ERR_INVALID_ARG);
    /* an identity file given as recipients, and the other way round */
    assert_int_equal(engine_age_recipients_load(&rs, path("k1"), detail, sizeof(detail)),
                     COFFER_ERR_KEY_FORM);
    assert_non_null(strstr(detail, "is an identity"));
    assert_null(strstr(detail, "AGE-SECRET-KEY-1Q")); /* never the secret itself */
    assert_int_equal(engine_age_identities_load(&ids, path("rcpt"), detail, sizeof(detail)),
                     COFFER_ERR_KEY_FORM);
    engine_age_recipients_clear(&rs);
    engine_age_identities_clear(&ids);
}

/* ---- the recovery field ---- */

static void test_recovery_roundtrip_and_limit(void **state)
{
    engine_age_identities ids = {0}, other = {0};
    engine_age_recipients rs = {0};
    engine_key *key = NULL, *back = NULL;
    char detail[1024] = "", *text = NULL;
    json_t *m;
    (void)state;

    keygen("r1", &ids);
    keygen("r2", &other);
    assert_int_equal(engine_key_generate(&key, 32), 0);
    rs.v = calloc(ENGINE_AGE_LIST_MAX + 1, sizeof(*rs.v));
    rs.v[0] = ids.v[0]->recipient;
    rs.n = 1;
    m = engine_metadata_new_secret("velero", "coffer-key", "coffer-v1", key->id);
    char *base = engine_metadata_dump(m);
    assert_int_equal(
        engine_recovery_add_text(base, strlen(base), &rs, key, &text, detail, sizeof(detail)), 0);
    /* one entry costs what the header documents */
    assert_int_equal(strlen(text) - strlen(base), ENGINE_RECOVERY_ENTRY_BYTES + 13);
    json_decref(m);
    m = json_loads(text, 0, NULL);
    assert_int_equal(engine_recovery_open(m, &ids, &back, detail, sizeof(detail)), 0);
    assert_memory_equal(back->bytes, key->bytes, 32);
    engine_key_free(back);
    /* someone else's identity: the sentence lists the backup's recipients */
    assert_int_equal(engine_recovery_open(m, &other, &back, detail, sizeof(detail)),
                     COFFER_ERR_WRONG_KEY);
    assert_non_null(strstr(detail, ids.v[0]->recipient.text));
    assert_non_null(strstr(detail, other.v[0]->recipient.text));
    json_decref(m);
    free(text);

    /* ENGINE_AGE_LIST_MAX recipients fit in the metadata limit with room to spare */
    for (size_t i = 1; i < ENGINE_AGE_LIST_MAX; i++) {
        engine_age_identity *x = NULL;
        assert_int_equal(engine_age_identity_generate(&x), 0);
        rs.v[rs.n++] = x->recipient;
        engine_age_identity_free(x);
    }
    assert_int_equal(
        engine_recovery_add_text(base, strlen(base), &rs, key, &text, detail, sizeof(detail)), 0);
    assert_true(strlen(text) < ENGINE_METADATA_MAX - 6000);
    free(text);
    /* past the limit: refused with the sizes (metadata that is already large) */
    {
        size_t big = ENGINE_METADATA_MAX - ENGINE_AGE_LIST_MAX * ENGINE_RECOVERY_ENTRY_BYTES;
        char *pad = malloc(big + 64);
        snprintf(pad, big + 64, "{\"isEncrypted\":true,\"x\":\"%0*d\"}", (int)big, 0);
        assert_int_equal(
            engine_recovery_add_text(pad, strlen(pad), &rs, key, &text, detail, sizeof(detail)),
            COFFER_ERR_TOO_LARGE);
        assert_non_null(strstr(detail, "31988"));
        free(pad);
    }
    free(base);
    free(rs.v);
    engine_key_free(key);
    engine_age_identities_clear(&ids);
    engine_age_identities_clear(&other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bech32_bip173_valid),
        cmocka_unit_test(test_bech32_bip173_invalid),
        cmocka_unit_test(test_bech32_data),
        cmocka_unit_test(test_age_spec_key),
        cmocka_unit_test(test_age_bad_recipients),
        cmocka_unit_test(test_age_coffer_to_age),
        cmocka_unit_test(test_age_age_to_coffer),
        cmocka_unit_test(test_age_key_files),
        cmocka_unit_test(test_recovery_roundtrip_and_limit),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
