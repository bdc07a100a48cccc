/* SPDX-License-Identifier: Apache-2.0 */
/* hsm_client, hsm_kek, hsm_admin and hsm_retriever against real SoftHSM2 tokens in a temporary
 * directory. */
#include "coffer_error.h"
#include "engine_metadata.h"
#include "hsm_admin.h"
#include "hsm_client.h"
#include "hsm_kek.h"
#include "hsm_metadata.h"
#include "hsm_retriever.h"
#include "hsm_test_util.h"
#include "test_support.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static struct ht_env env;
static char dir_main[1200], dir_pin[1200], dir_gone[1200], dir_two[1200], dir_rate[1200];

/* Every log line of every client, to check that no PIN ever shows up. */
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char log_buf[1 << 16];
static size_t log_len;

static void capture_log(void *ctx, const char *line)
{
    (void)ctx;
    pthread_mutex_lock(&log_mu);
    int n = snprintf(log_buf + log_len, sizeof(log_buf) - log_len, "%s\n", line);
    if (n > 0 && log_len + (size_t)n < sizeof(log_buf))
        log_len += (size_t)n;
    pthread_mutex_unlock(&log_mu);
}

static int log_contains(const char *needle)
{
    pthread_mutex_lock(&log_mu);
    log_buf[log_len] = '\0';
    int r = strstr(log_buf, needle) != NULL;
    pthread_mutex_unlock(&log_mu);
    return r;
}

static int group_setup(void **state)
{
    ht_env_setup(&env);
    ht_token_init(&env, "coffer", dir_main, sizeof(dir_main));
    ht_token_init(&env, "coffer-pin", dir_pin, sizeof(dir_pin));
    ht_token_init(&env, "coffer-gone", dir_gone, sizeof(dir_gone));
    ht_token_init(&env, "coffer-two", dir_two, sizeof(dir_two));
    ht_token_init(&env, "coffer-rate", dir_rate, sizeof(dir_rate));
    return 0;
}

static int group_teardown(void **state)
{
    ht_env_teardown(&env);
    return 0;
}

static hsm_client *client_for(const char *module, const char *token, const char *key_label,
                              const char *pin_file, unsigned timeout_ms, unsigned threads)
{
    hsm_client *c = NULL;
    hsm_status st;
    hsm_client_config cfg = {
        .module = module,
        .token = token,
        .key_label = key_label,
        .pin = {pin_file, NULL},
        .timeout_ms = timeout_ms,
        .threads = threads,
        .log = capture_log,
    };
    assert_int_equal(hsm_client_open(&c, &cfg, &st), 0);
    return c;
}

static hsm_client *client_main(const char *key_label)
{
    return client_for(env.module, "coffer", key_label, env.pin_file, 10000, 2);
}

static void create_kek(hsm_client *c, const char *label)
{
    hsm_status st;
    int r = hsm_admin_kek_create(c, label, &st);
    if (r != 0)
        fprintf(stderr, "create %s: %s %s\n", label, st.text, st.ckr);
    assert_int_equal(r, 0);
}

/* ---- the key-encryption key ---- */

static void test_kek_template(void **state)
{
    hsm_client *c = client_main(NULL);
    create_kek(c, "kek-attr");
    hsm_client_close(c);

    /* Ask the token itself, without coffer_hsm. */
    struct ht_raw raw;
    CK_OBJECT_HANDLE h[4];
    ht_raw_open(&env, "coffer", &raw);
    assert_int_equal(ht_raw_find(&raw, "kek-attr", CKO_SECRET_KEY, h, 4), 1);
    CK_BBOOL tok, priv, sens, extr, enc, dec, wrap, unwrap, sign, verify, derive, nevx, alws;
    CK_KEY_TYPE kt;
    CK_ULONG vlen;
    CK_ATTRIBUTE a[] = {
        {CKA_TOKEN, &tok, 1},
        {CKA_PRIVATE, &priv, 1},
        {CKA_SENSITIVE, &sens, 1},
        {CKA_EXTRACTABLE, &extr, 1},
        {CKA_ENCRYPT, &enc, 1},
        {CKA_DECRYPT, &dec, 1},
        {CKA_WRAP, &wrap, 1},
        {CKA_UNWRAP, &unwrap, 1},
        {CKA_SIGN, &sign, 1},
        {CKA_VERIFY, &verify, 1},
        {CKA_DERIVE, &derive, 1},
        {CKA_NEVER_EXTRACTABLE, &nevx, 1},
        {CKA_ALWAYS_SENSITIVE, &alws, 1},
        {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_VALUE_LEN, &vlen, sizeof(vlen)},
    };
    assert_int_equal(raw.f->C_GetAttributeValue(raw.s, h[0], a, sizeof(a) / sizeof(a[0])), CKR_OK);
    assert_true(tok == CK_TRUE && priv == CK_TRUE && sens == CK_TRUE);
    assert_true(extr == CK_FALSE);
    assert_true(enc == CK_TRUE && dec == CK_TRUE);
    assert_true(wrap == CK_FALSE && unwrap == CK_FALSE && sign == CK_FALSE && verify == CK_FALSE &&
                derive == CK_FALSE);
    assert_true(nevx == CK_TRUE && alws == CK_TRUE);
    assert_int_equal(kt, CKK_AES);
    assert_int_equal(vlen, 32);

    /* The key's value is refused. */
    uint8_t value[64];
    CK_ATTRIBUTE v = {CKA_VALUE, value, sizeof(value)};
    CK_RV rv = raw.f->C_GetAttributeValue(raw.s, h[0], &v, 1);
    assert_int_equal(rv, CKR_ATTRIBUTE_SENSITIVE);
    assert_true(v.ulValueLen == CK_UNAVAILABLE_INFORMATION);
    ht_raw_close(&raw);
}

static void test_kek_duplicate_label(void **state)
{
    hsm_client *c = client_main(NULL);
    hsm_status st;
    create_kek(c, "kek-dup");
    assert_int_equal(hsm_admin_kek_create(c, "kek-dup", &st), COFFER_ERR_INVALID_ARG);
    assert_string_equal(st.step, "keygen");
    assert_non_null(strstr(st.text, "already has an object labelled 'kek-dup'"));

    hsm_key_info *keys;
    size_t n, same = 0;
    assert_int_equal(hsm_admin_keys_list(c, &keys, &n, &st), 0);
    for (size_t i = 0; i < n; i++)
        same += strcmp(keys[i].label, "kek-dup") == 0;
    assert_int_equal(same, 1);
    free(keys);

    /* An empty or control-character label is refused before anything is asked of the token. */
    assert_int_equal(hsm_admin_kek_create(c, "", &st), COFFER_ERR_CONFIG);
    assert_int_equal(hsm_admin_kek_create(c, "bad\nlabel", &st), COFFER_ERR_CONFIG);
    hsm_client_close(c);
}

/* Two keys under one label (as 'pkcs11-tool --keygen' happily makes): coffer uses neither. */
static void test_ambiguous_label(void **state)
{
    hsm_client *c = client_for(env.module, "coffer-two", NULL, env.pin_file, 10000, 1);
    create_kek(c, "kek-twice");
    hsm_client_close(c);

    struct ht_raw raw;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ULONG len = 32;
    CK_ATTRIBUTE t[] = {{CKA_TOKEN, &yes, 1},
                        {CKA_PRIVATE, &yes, 1},
                        {CKA_SENSITIVE, &yes, 1},
                        {CKA_EXTRACTABLE, &no, 1},
                        {CKA_ENCRYPT, &yes, 1},
                        {CKA_DECRYPT, &yes, 1},
                        {CKA_VALUE_LEN, &len, sizeof(len)},
                        {CKA_LABEL, "kek-twice", 9}};
    CK_MECHANISM m = {CKM_AES_KEY_GEN, NULL, 0};
    CK_OBJECT_HANDLE h;
    ht_raw_open(&env, "coffer-two", &raw);
    assert_int_equal(raw.f->C_GenerateKey(raw.s, &m, t, sizeof(t) / sizeof(t[0]), &h), CKR_OK);
    ht_raw_close(&raw);

    c = client_for(env.module, "coffer-two", "kek-twice", env.pin_file, 10000, 1);
    engine_key *dk;
    hsm_wrapped w;
    hsm_status st;
    assert_int_equal(engine_key_generate(&dk, 32), 0);
    assert_int_equal(hsm_kek_wrap(c, dk, &w, &st), COFFER_ERR_HSM_KEY);
    assert_non_null(strstr(st.text, "more than one"));
    engine_key_free(dk);
    hsm_client_close(c);
}

/* ---- wrapping ---- */

static void test_wrap_unwrap(void **state)
{
    hsm_client *c = client_main("kek-wrap");
    hsm_status st;
    engine_key *dk, *back;
    hsm_wrapped w, w2;

    create_kek(c, "kek-wrap");
    create_kek(c, "kek-other");
    assert_int_equal(engine_key_generate(&dk, 32), 0);
    assert_int_equal(hsm_kek_wrap(c, dk, &w, &st), 0);
    assert_int_equal(st.code, 0);
    assert_string_equal(w.key_label, "kek-wrap");
    assert_int_equal(hsm_kek_unwrap(c, &w, &back, &st), 0);
    assert_int_equal(back->len, 32);
    assert_memory_equal(back->bytes, dk->bytes, 32);
    assert_string_equal(back->id, dk->id);
    engine_key_free(back);

    /* A fresh IV every time: the same key wraps differently. */
    assert_int_equal(hsm_kek_wrap(c, dk, &w2, &st), 0);
    assert_memory_not_equal(w.iv, w2.iv, HSM_IV_LEN);
    assert_memory_not_equal(w.wrapped, w2.wrapped, HSM_WRAPPED_LEN);

    /* Any altered bit, and the blob under another label, is refused without releasing a key. */
    for (int i = 0; i < 4; i++) {
        w2 = w;
        if (i == 0)
            w2.iv[5] ^= 0x10;
        else if (i == 1)
            w2.wrapped[3] ^= 0x01;
        else if (i == 2)
            w2.wrapped[HSM_WRAPPED_LEN - 1] ^= 0x80;
        else
            snprintf(w2.key_label, sizeof(w2.key_label), "kek-other");
        back = (engine_key *)1;
        assert_int_equal(hsm_kek_unwrap(c, &w2, &back, &st), COFFER_ERR_WRONG_KEY);
        assert_null(back);
        assert_string_equal(st.step, "unwrap");
        assert_non_null(strstr(st.text, "refused to unwrap"));
    }
    /* A label that names no key. */
    w2 = w;
    snprintf(w2.key_label, sizeof(w2.key_label), "kek-nowhere");
    assert_int_equal(hsm_kek_unwrap(c, &w2, &back, &st), COFFER_ERR_HSM_KEY);
    /* The client still works after all that. */
    assert_int_equal(hsm_kek_unwrap(c, &w, &back, &st), 0);
    engine_key_free(back);
    engine_key_free(dk);
    hsm_client_close(c);
}

/* The metadata's wrappedKey really is the data key under the KEK: decrypt it with raw PKCS#11. */
static void test_metadata_independent_unwrap(void **state)
{
    hsm_client *c = client_main("kek-meta");
    hsm_retriever *r;
    engine_key *dk;
    json_t *cfg;
    hsm_status st;

    create_kek(c, "kek-meta");
    assert_int_equal(hsm_retriever_new(&r, c, NULL, NULL, NULL), 0);
    assert_int_equal(hsm_retriever_backup_key(r, 1000, &dk, &cfg, &st), 0);

    /* The whole status metadata, as stored with a backup, and back through the engine's parser. */
    json_t *full = hsm_metadata_from_config(json_incref(cfg), "coffer-v1", dk->id);
    assert_non_null(full);
    char *text = engine_metadata_dump(full);
    assert_non_null(text);
    assert_null(strstr(text, HT_PIN));
    assert_null(strstr(text, "pin"));
    engine_metadata m;
    assert_int_equal(engine_metadata_parse(&m, text, strlen(text)), 0);
    assert_string_equal(m.retriever, "pkcs11");
    json_t *pc = json_object_get(m.json, "keyRetrieverConfig");
    assert_string_equal(json_string_value(json_object_get(pc, "module")), env.module);
    assert_string_equal(json_string_value(json_object_get(pc, "token")), "coffer");
    assert_string_equal(json_string_value(json_object_get(pc, "keyLabel")), "kek-meta");
    assert_string_equal(json_string_value(json_object_get(pc, "mechanism")), "CKM_AES_GCM");
    const char *iv64 = json_string_value(json_object_get(pc, "iv"));
    const char *wk64 = json_string_value(json_object_get(pc, "wrappedKey"));
    assert_non_null(iv64);
    assert_non_null(wk64);

    uint8_t iv[64], wk[96], out[64];
    assert_int_equal(EVP_DecodeBlock(iv, (const unsigned char *)iv64, (int)strlen(iv64)), 12);
    assert_int_equal(EVP_DecodeBlock(wk, (const unsigned char *)wk64, (int)strlen(wk64)), 48);

    struct ht_raw raw;
    CK_OBJECT_HANDLE kek;
    ht_raw_open(&env, "coffer", &raw);
    assert_int_equal(ht_raw_find(&raw, "kek-meta", CKO_SECRET_KEY, &kek, 1), 1);
    const char aad[] = "coffer-kek:kek-meta";
    CK_GCM_PARAMS gp = {iv, 12, 96, (CK_BYTE_PTR)aad, sizeof(aad) - 1, 128};
    CK_MECHANISM mech = {CKM_AES_GCM, &gp, sizeof(gp)};
    CK_ULONG outlen = sizeof(out);
    assert_int_equal(raw.f->C_DecryptInit(raw.s, &mech, kek), CKR_OK);
    assert_int_equal(raw.f->C_Decrypt(raw.s, wk, 48, out, &outlen), CKR_OK);
    assert_int_equal(outlen, 32);
    assert_memory_equal(out, dk->bytes, 32);

    /* And a different AAD (another label) does not decrypt it: the label is bound. */
    const char aad2[] = "coffer-kek:kek-other";
    gp.pAAD = (CK_BYTE_PTR)aad2;
    gp.ulAADLen = sizeof(aad2) - 1;
    outlen = sizeof(out);
    assert_int_equal(raw.f->C_DecryptInit(raw.s, &mech, kek), CKR_OK);
    assert_int_not_equal(raw.f->C_Decrypt(raw.s, wk, 48, out, &outlen), CKR_OK);
    ht_raw_close(&raw);

    /* A restore from the stored config gets the same key (from the cache, then from the token). */
    engine_key *back;
    assert_int_equal(hsm_retriever_restore_key(r, pc, &back, &st), 0);
    assert_memory_equal(back->bytes, dk->bytes, 32);
    engine_key_free(back);
    hsm_cache_clear(hsm_retriever_cache(r));
    assert_int_equal(hsm_retriever_restore_key(r, pc, &back, &st), 0);
    assert_memory_equal(back->bytes, dk->bytes, 32);
    engine_key_free(back);

    engine_metadata_clear(&m);
    free(text);
    json_decref(full);
    json_decref(cfg);
    engine_key_free(dk);
    hsm_retriever_free(r);
    hsm_client_close(c);
}

/* ---- failures ---- */

static void assert_no_pin(const hsm_status *st)
{
    assert_null(strstr(st->text, HT_PIN));
    assert_null(strstr(st->text, "wrong-pin-31337"));
    assert_null(strstr(st->step, "31337"));
}

static void test_wrong_pin(void **state)
{
    char wrong_file[1200];
    hsm_status st, last;
    engine_key *dk;
    hsm_wrapped w;

    snprintf(wrong_file, sizeof(wrong_file), "%s/wrong-pin", env.dir);
    assert_int_equal(ts_write_file(wrong_file, "wrong-pin-31337\n", 16), 0);

    hsm_client *c = client_for(env.module, "coffer-pin", NULL, env.pin_file, 10000, 1);
    create_kek(c, "kek-pin");
    hsm_client_close(c);

    c = client_for(env.module, "coffer-pin", "kek-pin", wrong_file, 10000, 1);
    assert_int_equal(engine_key_generate(&dk, 32), 0);
    assert_int_equal(hsm_kek_wrap(c, dk, &w, &st), COFFER_ERR_HSM_LOGIN);
    assert_string_equal(st.step, "login");
    assert_string_equal(st.ckr, "CKR_PIN_INCORRECT");
    assert_non_null(strstr(st.text, "coffer-pin"));
    assert_non_null(strstr(st.text, wrong_file)); /* names the file, not its content */
    assert_no_pin(&st);

    /* The same wrong PIN is not sent to the token again. */
    assert_int_equal(hsm_client_connect(c, &st), COFFER_ERR_HSM_LOGIN);
    assert_non_null(strstr(st.text, "not tried again"));
    assert_no_pin(&st);
    hsm_client_last_error(c, &last);
    assert_int_equal(last.code, COFFER_ERR_HSM_LOGIN);
    assert_no_pin(&last);

    /* The fallback note carries the reason, never the PIN. */
    json_t *fb = hsm_metadata_fallback_new(hsm_client_module(c), "coffer-pin", "kek-pin", &last);
    char *fbtext = json_dumps(fb, JSON_COMPACT);
    assert_non_null(strstr(fbtext, "\"step\":\"login\""));
    assert_non_null(strstr(fbtext, "\"error\":\"HSM_LOGIN\""));
    assert_non_null(strstr(fbtext, "\"ckr\":\"CKR_PIN_INCORRECT\""));
    assert_null(strstr(fbtext, "wrong-pin-31337"));
    assert_null(strstr(fbtext, HT_PIN));
    free(fbtext);
    json_decref(fb);

    /* Correcting the PIN file is enough: the next call logs in (no restart). */
    assert_int_equal(ts_write_file(wrong_file, HT_PIN, strlen(HT_PIN)), 0);
    assert_int_equal(hsm_kek_wrap(c, dk, &w, &st), 0);
    hsm_client_close(c);

    assert_false(log_contains("wrong-pin-31337"));
    assert_false(log_contains(HT_PIN));

    /* The PIN from the environment; and none at all. */
    hsm_client_config cfg = {.module = env.module,
                             .token = "coffer-pin",
                             .key_label = "kek-pin",
                             .pin = {NULL, "HT_TEST_PIN"},
                             .timeout_ms = 10000,
                             .threads = 1,
                             .log = capture_log};
    unsetenv("HT_TEST_PIN");
    assert_int_equal(hsm_client_open(&c, &cfg, &st), 0);
    assert_int_equal(hsm_client_connect(c, &st), COFFER_ERR_HSM_LOGIN);
    assert_string_equal(st.step, "pin");
    assert_non_null(strstr(st.text, "HT_TEST_PIN"));
    setenv("HT_TEST_PIN", HT_PIN, 1);
    assert_int_equal(hsm_client_connect(c, &st), 0);
    assert_int_equal(hsm_kek_wrap(c, dk, &w, &st), 0);
    unsetenv("HT_TEST_PIN");
    hsm_client_close(c);

    /* A missing PIN file. */
    c = client_for(env.module, "coffer-pin", "kek-pin", "/nonexistent/pin", 10000, 1);
    assert_int_equal(hsm_kek_wrap(c, dk, &w, &st), COFFER_ERR_HSM_LOGIN);
    assert_string_equal(st.step, "pin");
    hsm_client_close(c);
    engine_key_free(dk);
}

static void expect_wrap_fails(hsm_client *c, int code, const char *step, const char *needle)
{
    engine_key *dk;
    hsm_wrapped w;
    hsm_status st, last;
    assert_int_equal(engine_key_generate(&dk, 32), 0);
    int r = hsm_kek_wrap(c, dk, &w, &st);
    if (r != code)
        fprintf(stderr, "got %s: %s\n", coffer_errname(r), st.text);
    assert_int_equal(r, code);
    assert_string_equal(st.step, step);
    assert_non_null(strstr(st.text, needle));
    hsm_client_last_error(c, &last);
    assert_int_equal(last.code, code);
    assert_string_equal(last.text, st.text);
    engine_key_free(dk);
}

static void test_missing_module_token_key(void **state)
{
    hsm_client *c = client_main(NULL);
    create_kek(c, "kek-present");
    hsm_client_close(c);

    c = client_for("/nonexistent/libnope-pkcs11.so", "coffer", "kek-present", env.pin_file, 10000,
                   1);
    expect_wrap_fails(c, COFFER_ERR_HSM_MODULE, "module", "/nonexistent/libnope-pkcs11.so");
    hsm_client_close(c);

    c = client_for("no-such-p11-module", "coffer", "kek-present", env.pin_file, 10000, 1);
    expect_wrap_fails(c, COFFER_ERR_HSM_MODULE, "module", "registered with p11-kit");
    hsm_client_close(c);

    c = client_for(env.module, "no-such-token", "kek-present", env.pin_file, 10000, 1);
    expect_wrap_fails(c, COFFER_ERR_HSM_TOKEN, "token", "no token labelled 'no-such-token'");
    hsm_client_close(c);

    c = client_for(env.module, "coffer", "no-such-key", env.pin_file, 10000, 1);
    expect_wrap_fails(c, COFFER_ERR_HSM_KEY, "key", "no AES secret key labelled 'no-such-key'");
    hsm_client_close(c);

    /* Bad configuration is refused at open. */
    hsm_client_config cfg = {.module = env.module, .token = "a-token-label-longer-than-32-bytes"};
    hsm_status st;
    assert_int_equal(hsm_client_open(&c, &cfg, &st), COFFER_ERR_CONFIG);
    cfg.token = "coffer";
    cfg.module = NULL;
    assert_int_equal(hsm_client_open(&c, &cfg, &st), COFFER_ERR_CONFIG);
}

static void test_module_by_p11kit_name(void **state)
{
    if (access("/usr/share/p11-kit/modules/softhsm2.module", R_OK) != 0) {
        fprintf(stderr, "softhsm2 is not registered with p11-kit; not testing loading by name\n");
        return;
    }
    hsm_client *c = client_main(NULL);
    create_kek(c, "kek-byname");
    hsm_client_close(c);
    c = client_for("softhsm2", "coffer", "kek-byname", env.pin_file, 10000, 1);
    engine_key *dk, *back;
    hsm_wrapped w;
    hsm_status st;
    assert_int_equal(engine_key_generate(&dk, 32), 0);
    assert_int_equal(hsm_kek_wrap(c, dk, &w, &st), 0);
    assert_int_equal(hsm_kek_unwrap(c, &w, &back, &st), 0);
    assert_memory_equal(back->bytes, dk->bytes, 32);
    engine_key_free(back);
    engine_key_free(dk);
    hsm_client_close(c);
}

static void run_cmd(char *const argv[])
{
    assert_int_equal(ts_run(argv, NULL, NULL, NULL, NULL), 0);
}

/* The token's files vanish while it is loaded, then come back: no restart needed. */
static void test_reconnect(void **state)
{
    char saved[1300];
    hsm_client *c = client_for(env.module, "coffer-gone", "kek-gone", env.pin_file, 10000, 2);
    engine_key *dk, *back;
    hsm_wrapped w, w2;
    hsm_status st;

    create_kek(c, "kek-gone");
    assert_int_equal(engine_key_generate(&dk, 32), 0);
    assert_int_equal(hsm_kek_wrap(c, dk, &w, &st), 0);

    snprintf(saved, sizeof(saved), "%s/saved-token", env.dir);
    char *cp_out[] = {"/bin/cp", "-a", dir_gone, saved, NULL};
    run_cmd(cp_out);
    ts_rmtree(dir_gone);
    assert_int_not_equal(access(dir_gone, F_OK), 0);

    for (int i = 0; i < 3; i++) {
        int r = hsm_kek_wrap(c, dk, &w2, &st);
        assert_true(r == COFFER_ERR_HSM_TOKEN || r == COFFER_ERR_HSM_CALL ||
                    r == COFFER_ERR_HSM_KEY || r == COFFER_ERR_HSM_MODULE);
        assert_true(st.text[0] != '\0');
        assert_non_null(strstr(st.text, "coffer-gone"));
        r = hsm_kek_unwrap(c, &w, &back, &st);
        assert_true(r == COFFER_ERR_HSM_TOKEN || r == COFFER_ERR_HSM_CALL ||
                    r == COFFER_ERR_HSM_KEY || r == COFFER_ERR_HSM_MODULE);
        assert_null(back);
    }
    assert_true(log_contains("lost the connection to token 'coffer-gone'"));

    char *cp_back[] = {"/bin/cp", "-a", saved, dir_gone, NULL};
    run_cmd(cp_back);
    assert_int_equal(hsm_kek_wrap(c, dk, &w2, &st), 0);
    assert_int_equal(hsm_kek_unwrap(c, &w, &back, &st), 0);
    assert_memory_equal(back->bytes, dk->bytes, 32);
    engine_key_free(back);
    assert_int_equal(hsm_kek_unwrap(c, &w2, &back, &st), 0);
    assert_memory_equal(back->bytes, dk->bytes, 32);
    engine_key_free(back);
    engine_key_free(dk);
    hsm_client_close(c);
}

/* ---- threads and rates ---- */

struct worker_arg {
    hsm_client *c;
    int iters;
    int failures;
    int mode; /* 0 wrap+unwrap, 1 wrap only, 2 unwrap only */
    hsm_wrapped w;
    engine_key *dk;
};

static void *worker(void *p)
{
    struct worker_arg *a = p;
    hsm_status st;
    for (int i = 0; i < a->iters; i++) {
        hsm_wrapped w;
        engine_key *back = NULL;
        if (a->mode != 2) {
            if (hsm_kek_wrap(a->c, a->dk, &w, &st) != 0) {
                a->failures++;
                continue;
            }
        } else {
            w = a->w;
        }
        if (a->mode == 1)
            continue;
        if (hsm_kek_unwrap(a->c, &w, &back, &st) != 0 ||
            CRYPTO_memcmp(back->bytes, a->dk->bytes, 32) != 0)
            a->failures++;
        engine_key_free(back);
    }
    return NULL;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Calls per second of mode with nthreads callers, iters each. */
static double rate(hsm_client *c, int nthreads, int iters, int mode)
{
    pthread_t t[4];
    struct worker_arg a[4];
    hsm_status st;
    double t0 = now_s();
    for (int i = 0; i < nthreads; i++) {
        memset(&a[i], 0, sizeof(a[i]));
        a[i].c = c;
        a[i].iters = iters;
        a[i].mode = mode;
        assert_int_equal(engine_key_generate(&a[i].dk, 32), 0);
        assert_int_equal(hsm_kek_wrap(c, a[i].dk, &a[i].w, &st), 0);
    }
    t0 = now_s();
    for (int i = 0; i < nthreads; i++)
        assert_int_equal(pthread_create(&t[i], NULL, worker, &a[i]), 0);
    for (int i = 0; i < nthreads; i++)
        pthread_join(t[i], NULL);
    double dt = now_s() - t0;
    for (int i = 0; i < nthreads; i++) {
        assert_int_equal(a[i].failures, 0);
        engine_key_free(a[i].dk);
    }
    return (double)(nthreads * iters * (mode == 0 ? 2 : 1)) / dt;
}

/* Raw C_Encrypt rate on one session, without coffer's HSM thread in between (the baseline). */
static double raw_rate(int iters)
{
    struct ht_raw raw;
    CK_OBJECT_HANDLE kek;
    uint8_t iv[12] = {1}, in[32] = {2}, out[64];
    const char aad[] = "coffer-kek:kek-threads";
    ht_raw_open(&env, "coffer-rate", &raw);
    assert_int_equal(ht_raw_find(&raw, "kek-threads", CKO_SECRET_KEY, &kek, 1), 1);
    double t0 = now_s();
    for (int i = 0; i < iters; i++) {
        CK_GCM_PARAMS gp = {iv, 12, 96, (CK_BYTE_PTR)aad, sizeof(aad) - 1, 128};
        CK_MECHANISM m = {CKM_AES_GCM, &gp, sizeof(gp)};
        CK_ULONG outlen = sizeof(out);
        iv[11] = (uint8_t)i;
        iv[10] = (uint8_t)(i >> 8);
        assert_int_equal(raw.f->C_EncryptInit(raw.s, &m, kek), CKR_OK);
        assert_int_equal(raw.f->C_Encrypt(raw.s, in, 32, out, &outlen), CKR_OK);
    }
    double r = iters / (now_s() - t0);
    ht_raw_close(&raw);
    return r;
}

/* On a token of its own: SoftHSM2's file store slows down with every object on the token. */
static void test_two_threads_and_rates(void **state)
{
    hsm_client *c = client_for(env.module, "coffer-rate", "kek-threads", env.pin_file, 10000, 2);
    create_kek(c, "kek-threads");

    /* Correctness: two callers wrapping and unwrapping at once. */
    assert_true(rate(c, 2, 300, 0) > 0);

    int n = getenv("HT_RATE_ITERS") ? atoi(getenv("HT_RATE_ITERS")) : 2000;
    double w1 = rate(c, 1, n, 1), u1 = rate(c, 1, n, 2);
    double w2 = rate(c, 2, n / 2, 1), u2 = rate(c, 2, n / 2, 2);
    hsm_client_close(c);
    double raw = raw_rate(n);
    printf("hsm rate (SoftHSM2 %s, token with 1 key, CKM_AES_GCM, 32-byte data keys, %d calls "
           "each):\n",
           env.module, n);
    printf("  1 caller : wrap %8.0f/s  unwrap %8.0f/s\n", w1, u1);
    printf("  2 callers: wrap %8.0f/s  unwrap %8.0f/s  (total)\n", w2, u2);
    printf("  baseline : raw C_EncryptInit+C_Encrypt on one session, no HSM thread: %8.0f/s\n",
           raw);
}

/* ---- the retriever's cache on a real token ---- */

static uint64_t fake_now_ms;
static uint64_t fake_clock(void *ctx)
{
    return fake_now_ms;
}

static void test_retriever_cache(void **state)
{
    hsm_client *c = client_main("kek-cache");
    hsm_retriever *r;
    hsm_cache_stats s;
    hsm_status st;
    hsm_cache_limits lim = {.max_age_s = 60, .max_uses = 3, .max_bytes = 1000, .max_entries = 4};
    engine_key *k1, *k2;
    json_t *c1, *c2;

    create_kek(c, "kek-cache");
    fake_now_ms = 1000000;
    assert_int_equal(hsm_retriever_new(&r, c, &lim, fake_clock, NULL), 0);
    assert_int_equal(hsm_retriever_backup_key(r, 100, &k1, &c1, &st), 0);
    assert_int_equal(hsm_retriever_backup_key(r, 100, &k2, &c2, &st), 0);
    assert_memory_equal(k1->bytes, k2->bytes, 32); /* one HSM call for two backups */
    assert_true(json_equal(c1, c2));
    hsm_cache_stats_get(hsm_retriever_cache(r), &s);
    assert_int_equal(s.backup_hits, 1);
    assert_int_equal(s.backup_misses, 1);
    engine_key_free(k2);
    json_decref(c2);

    /* Third use is the last; the fourth backup gets a new key. */
    assert_int_equal(hsm_retriever_backup_key(r, 100, &k2, &c2, &st), 0);
    assert_memory_equal(k1->bytes, k2->bytes, 32);
    engine_key_free(k2);
    json_decref(c2);
    assert_int_equal(hsm_retriever_backup_key(r, 100, &k2, &c2, &st), 0);
    assert_memory_not_equal(k1->bytes, k2->bytes, 32);
    assert_false(json_equal(c1, c2));

    /* Restores of both backups come from the cache; a backup from another token is refused. */
    engine_key *b;
    assert_int_equal(hsm_retriever_restore_key(r, c1, &b, &st), 0);
    assert_memory_equal(b->bytes, k1->bytes, 32);
    engine_key_free(b);
    hsm_cache_stats_get(hsm_retriever_cache(r), &s);
    assert_int_equal(s.restore_hits, 1);
    json_t *other = json_deep_copy(c1);
    json_object_set_new(other, "token", json_string("another-token"));
    assert_int_equal(hsm_retriever_restore_key(r, other, &b, &st), COFFER_ERR_HSM_UNAVAILABLE);
    assert_non_null(strstr(st.text, "another-token"));
    json_object_set_new(other, "token", json_string("coffer"));
    json_object_set_new(other, "iv", json_string("not base64!!"));
    assert_int_equal(hsm_retriever_restore_key(r, other, &b, &st), COFFER_ERR_METADATA);
    json_decref(other);

    /* Past max_age everything is gone and the restore asks the token. */
    fake_now_ms += 61 * 1000;
    hsm_cache_sweep(hsm_retriever_cache(r));
    hsm_cache_stats_get(hsm_retriever_cache(r), &s);
    assert_int_equal(s.restore_entries, 0);
    assert_false(s.have_current);
    assert_int_equal(hsm_retriever_restore_key(r, c2, &b, &st), 0);
    assert_memory_equal(b->bytes, k2->bytes, 32);
    engine_key_free(b);

    engine_key_free(k1);
    engine_key_free(k2);
    json_decref(c1);
    json_decref(c2);
    hsm_retriever_free(r);
    hsm_client_close(c);
}

/* Many threads asking for backup keys at once: one HSM wrap, everyone gets the same key. */
struct herd_arg {
    hsm_retriever *r;
    engine_key *k;
    int rc;
};

static void *herd(void *p)
{
    struct herd_arg *a = p;
    json_t *cfg = NULL;
    hsm_status st;
    a->rc = hsm_retriever_backup_key(a->r, 10, &a->k, &cfg, &st);
    json_decref(cfg);
    return NULL;
}

static void test_retriever_single_flight(void **state)
{
    hsm_client *c = client_main("kek-herd");
    hsm_retriever *r;
    hsm_cache_stats s;
    pthread_t t[8];
    struct herd_arg a[8];

    create_kek(c, "kek-herd");
    assert_int_equal(hsm_retriever_new(&r, c, NULL, NULL, NULL), 0);
    for (int i = 0; i < 8; i++) {
        a[i].r = r;
        a[i].k = NULL;
        assert_int_equal(pthread_create(&t[i], NULL, herd, &a[i]), 0);
    }
    for (int i = 0; i < 8; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(a[i].rc, 0);
        assert_memory_equal(a[i].k->bytes, a[0].k->bytes, 32);
    }
    for (int i = 0; i < 8; i++)
        engine_key_free(a[i].k);
    hsm_cache_stats_get(hsm_retriever_cache(r), &s);
    assert_int_equal(s.backup_hits, 7);
    hsm_retriever_free(r);
    hsm_client_close(c);
}

/* ---- check ---- */

static void test_check(void **state)
{
    hsm_check_report rep;
    hsm_client *c = client_main("kek-check");
    create_kek(c, "kek-check");
    assert_int_equal(hsm_admin_check(c, &rep), 0);
    assert_int_equal(rep.failed, 0);
    for (int i = 0; i < HSM_CHECK_ITEMS; i++)
        assert_int_equal(rep.items[i].result, HSM_CHECK_OK);
    assert_non_null(strstr(rep.items[4].text, "wrapped"));
    hsm_client_close(c);

    c = client_main("kek-absent");
    assert_int_equal(hsm_admin_check(c, &rep), COFFER_ERR_HSM_KEY);
    assert_int_equal(rep.items[0].result, HSM_CHECK_OK);
    assert_int_equal(rep.items[1].result, HSM_CHECK_OK);
    assert_int_equal(rep.items[2].result, HSM_CHECK_OK);
    assert_int_equal(rep.items[3].result, HSM_CHECK_FAIL);
    assert_int_equal(rep.items[4].result, HSM_CHECK_SKIP);
    hsm_client_close(c);

    c = client_for(env.module, "no-such-token", "kek-check", env.pin_file, 10000, 1);
    assert_int_equal(hsm_admin_check(c, &rep), COFFER_ERR_HSM_TOKEN);
    assert_int_equal(rep.items[0].result, HSM_CHECK_OK);
    assert_int_equal(rep.items[1].result, HSM_CHECK_FAIL);
    assert_int_equal(rep.items[2].result, HSM_CHECK_SKIP);
    hsm_client_close(c);

    /* A key made the pkcs11-tool way (public, extractable) works but is reported. */
    struct ht_raw raw;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ULONG len = 32;
    CK_ATTRIBUTE t[] = {{CKA_TOKEN, &yes, 1},
                        {CKA_PRIVATE, &no, 1},
                        {CKA_SENSITIVE, &no, 1},
                        {CKA_EXTRACTABLE, &yes, 1},
                        {CKA_ENCRYPT, &yes, 1},
                        {CKA_DECRYPT, &yes, 1},
                        {CKA_VALUE_LEN, &len, sizeof(len)},
                        {CKA_LABEL, "kek-weak", 8}};
    CK_MECHANISM m = {CKM_AES_KEY_GEN, NULL, 0};
    CK_OBJECT_HANDLE h;
    ht_raw_open(&env, "coffer", &raw);
    assert_int_equal(raw.f->C_GenerateKey(raw.s, &m, t, sizeof(t) / sizeof(t[0]), &h), CKR_OK);
    ht_raw_close(&raw);
    c = client_main("kek-weak");
    assert_int_equal(hsm_admin_check(c, &rep), 0);
    assert_int_equal(rep.items[3].result, HSM_CHECK_WARN);
    assert_non_null(strstr(rep.items[3].text, "extractable"));
    assert_int_equal(rep.items[4].result, HSM_CHECK_OK);
    hsm_client_close(c);

    /* Listing tokens needs no token label and no PIN. */
    hsm_token_desc *tok;
    size_t n, found = 0;
    hsm_status st;
    c = client_for(env.module, NULL, NULL, "/nonexistent/pin", 10000, 1);
    assert_int_equal(hsm_admin_tokens_list(c, &tok, &n, &st), 0);
    for (size_t i = 0; i < n; i++)
        found += strcmp(tok[i].label, "coffer") == 0 || strcmp(tok[i].label, "coffer-pin") == 0;
    assert_int_equal(found, 2);
    free(tok);
    hsm_client_close(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kek_template),
        cmocka_unit_test(test_kek_duplicate_label),
        cmocka_unit_test(test_ambiguous_label),
        cmocka_unit_test(test_wrap_unwrap),
        cmocka_unit_test(test_metadata_independent_unwrap),
        cmocka_unit_test(test_wrong_pin),
        cmocka_unit_test(test_missing_module_token_key),
        cmocka_unit_test(test_module_by_p11kit_name),
        cmocka_unit_test(test_reconnect),
        cmocka_unit_test(test_two_threads_and_rates),
        cmocka_unit_test(test_retriever_cache),
        cmocka_unit_test(test_retriever_single_flight),
        cmocka_unit_test(test_check),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
