/* SPDX-License-Identifier: Apache-2.0 */
/* cofferd end to end on two real PKCS#11 implementations from Debian, each with the mechanism it
 * really has: SoftHSM2 (RFC 5649 key wrap, forced) and openCryptoki's software token
 * (encrypt-then-MAC, negotiated), set up by 'coffer hsm init-kek' and checked by 'coffer hsm
 * check'. */
#include "coffer_client.h"
#include "coffer_error.h"
#include "hsm_test_util.h"
#include "test_daemon.h"
#include "test_support.h"

#include <jansson.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define OCK_MODULE "/usr/lib/x86_64-linux-gnu/opencryptoki/libopencryptoki.so.0"
#define OCK_TOKEN  "coffer-ock"

/*
 * openCryptoki 3.8 leaks about 5 KB per process from its dlopen()ed token library (the same
 * wraps and unwraps leak nothing on SoftHSM2 under LeakSanitizer, see hsm_mech_test). p11-kit
 * unloads the module before exit, so LeakSanitizer cannot name its frames and a suppression by
 * library cannot match: the processes that load openCryptoki run without leak detection (every
 * other sanitizer check stays on).
 */
static char *ock_env[] = {"ASAN_OPTIONS=detect_leaks=0:abort_on_error=1", NULL};

static struct ht_env env;
static char tokdir[1200], ockdir[1200];
static char secrets[1300];
static char ock_state[1300];
static int ock_started;

/* ---- helpers ---- */

static int daemon_start(struct ts_daemon *d, char *const *envs, const char *name, ...)
{
    char *flags[] = {"--secrets-dir",  secrets, "--workers", "2", "--io-timeout", "30",
                     "--hsm-fallback", "none",  NULL};
    va_list ap;
    int r;
    ts_daemon_paths(d, env.dir, name);
    unlink(d->log);
    va_start(ap, name);
    r = ts_daemon_vstart(d, flags, envs, 3000, ap);
    va_end(ap);
    if (r != 0)
        fail_msg("cofferd did not start (%d, see %s)", r, d->log);
    return r;
}

static int run_stream(const struct ts_daemon *d, int op, const uint8_t *in, size_t inlen,
                      struct ts_membuf *out, struct coffer_result *res)
{
    struct coffer_job job = {op, NULL, NULL, 0, NULL, 0, 0};
    struct ts_membuf src = {(uint8_t *)in, inlen, 0, inlen};
    coffer_client *c = NULL;
    char msg[256];
    int r = coffer_client_connect(&c, d->sock, msg, sizeof(msg));
    if (r != 0)
        fail_msg("connect %s: %s", d->sock, msg);
    r = coffer_client_stream(c, &job, ts_membuf_read, &src, ts_membuf_write, out, res);
    coffer_client_close(c);
    return r;
}

/* 'coffer hsm ARGS...' with its output in *out (malloc'd); returns the exit status. */
static int cli(char **out, const char *pin_file, const char *cmd, const char *module,
               const char *token, const char *label, const char *mech)
{
    char path[1400];
    char *argv[] = {COFFER_HSM_CLI, "hsm",        (char *)cmd,      "--module",
                    (char *)module, "--token",    (char *)token,    "--label",
                    (char *)label,  "--pin-file", (char *)pin_file, mech ? "--mechanism" : NULL,
                    (char *)mech,   NULL};
    size_t n = 0;
    snprintf(path, sizeof(path), "%s/cli.out", env.dir);
    int r = ts_run(argv, strcmp(module, OCK_MODULE) == 0 ? ock_env : NULL, NULL, path, path);
    *out = (char *)ts_read_file(path, &n);
    assert_non_null(*out);
    fprintf(stderr, "coffer hsm %s:\n%s", cmd, *out);
    return r;
}

static json_t *config_of(const struct coffer_result *res)
{
    json_t *m = json_loadb(res->metadata, res->metadata_len, 0, NULL);
    assert_non_null(m);
    assert_string_equal(json_string_value(json_object_get(m, "keyRetrieverType")), "pkcs11");
    assert_null(json_object_get(m, "hsmFallback"));
    json_t *cfg = json_incref(json_object_get(m, "keyRetrieverConfig"));
    json_decref(m);
    return cfg;
}

static const char *jstr(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : "";
}

/* Change one character of the base64 value of field in the ciphertext's (authenticated) header:
 * the token must refuse it before the body's key commitment is even checked. */
static void tamper(struct ts_membuf *ct, const char *field)
{
    char needle[64];
    snprintf(needle, sizeof(needle), "\"%s\": \"", field);
    uint8_t *p = memmem(ct->p, ct->len < 8192 ? ct->len : 8192, needle, strlen(needle));
    if (p == NULL) {
        snprintf(needle, sizeof(needle), "\"%s\":\"", field);
        p = memmem(ct->p, ct->len < 8192 ? ct->len : 8192, needle, strlen(needle));
    }
    assert_non_null(p);
    p += strlen(needle);
    *p = *p == 'A' ? 'B' : 'A';
}

static void encrypt_decrypt(const struct ts_daemon *d, size_t len, uint64_t seed,
                            struct ts_membuf *ct, json_t **cfg)
{
    uint8_t *pt = malloc(len + 1);
    struct ts_membuf dec = {0};
    struct coffer_result res = {0}, res2 = {0};
    ts_fill(pt, len, seed);
    int r = run_stream(d, COFFER_CLIENT_ENCRYPT, pt, len, ct, &res);
    if (r != 0)
        fail_msg("encrypt: %s (%s)", coffer_errname(r), res.message);
    *cfg = config_of(&res);
    r = run_stream(d, COFFER_CLIENT_DECRYPT, ct->p, ct->len, &dec, &res2);
    if (r != 0)
        fail_msg("decrypt: %s (%s)", coffer_errname(r), res2.message);
    assert_int_equal(dec.len, len);
    assert_memory_equal(dec.p, pt, len);
    free(pt);
    free(dec.p);
    coffer_result_clear(&res);
    coffer_result_clear(&res2);
}

static void decrypt_fails(const struct ts_daemon *d, const struct ts_membuf *ct, int code,
                          const char *needle)
{
    struct ts_membuf dec = {0};
    struct coffer_result res = {0};
    int r = run_stream(d, COFFER_CLIENT_DECRYPT, ct->p, ct->len, &dec, &res);
    fprintf(stderr, "refused: %s: %s\n", coffer_errname(r), res.message);
    assert_int_equal(r, code);
    assert_int_equal(dec.len, 0); /* nothing released */
    assert_non_null(strstr(res.message, needle));
    free(dec.p);
    coffer_result_clear(&res);
}

/* ---- SoftHSM2: RFC 5649 key wrap forced by --hsm-mechanism ---- */

static void test_softhsm_kwp(void **state)
{
    struct ts_daemon d = {0};
    struct ts_membuf ct = {0};
    json_t *cfg;
    char *out;

    assert_int_equal(cli(&out, env.pin_file, "init-kek", env.module, "mech", "kwp-kek", "kwp"), 0);
    assert_non_null(strstr(out, "for CKM_AES_KEY_WRAP_PAD (kwp)"));
    assert_non_null(strstr(out, "wrap/unwrap only"));
    free(out);
    assert_int_equal(cli(&out, env.pin_file, "check", env.module, "mech", "kwp-kek", "kwp"), 0);
    assert_non_null(strstr(out, "ok    mechanism: CKM_AES_KEY_WRAP_PAD (kwp): as configured"));
    free(out);

    daemon_start(&d, NULL, "kwp", "--hsm-module", env.module, "--hsm-token", "mech", "--hsm-key",
                 "kwp-kek", "--hsm-pin-file", env.pin_file, "--hsm-mechanism", "kwp", NULL);
    encrypt_decrypt(&d, 70000, 5, &ct, &cfg);
    assert_string_equal(jstr(cfg, "mechanism"), "CKM_AES_KEY_WRAP_PAD");
    assert_string_equal(jstr(cfg, "keyLabel"), "kwp-kek");
    assert_null(json_object_get(cfg, "iv"));
    assert_int_equal(strlen(jstr(cfg, "wrappedKey")), 56);
    json_decref(cfg);
    assert_true(ts_daemon_log_has(&d, "event=hsm_mechanism"));
    assert_true(ts_daemon_log_has(&d, "mechanism=CKM_AES_KEY_WRAP_PAD"));
    /* HEALTH says it too */
    {
        coffer_client *c = NULL;
        char msg[256], *health = NULL;
        assert_int_equal(coffer_client_connect(&c, d.sock, msg, sizeof(msg)), 0);
        assert_int_equal(coffer_client_health(c, &health), 0);
        json_t *hj = json_loads(health, 0, NULL);
        assert_non_null(hj);
        assert_string_equal(jstr(json_object_get(hj, "hsm"), "mechanism"), "CKM_AES_KEY_WRAP_PAD");
        json_decref(hj);
        free(health);
        coffer_client_close(c);
    }
    tamper(&ct, "wrappedKey");
    decrypt_fails(&d, &ct, COFFER_ERR_WRONG_KEY, "integrity check does not match");
    assert_int_equal(ts_daemon_stop(&d), 0);
    free(ct.p);
}

/* ---- the fake module as a FIPS-mode hardware HSM, through cofferd ---- */

/* A token that makes its own GCM IVs, wants ulIvBits, allows two sessions and closes one under a
 * call: every backup is HSM-wrapped, none falls back or fails, nothing is reported as an outage. */
static void test_fake_hardware_hsm(void **state)
{
    struct ts_daemon d = {0};
    char pin[1400];
    char *envs[] = {"COFFER_FAKE_P11_MODE=token-iv,iv-bits,max-sessions=2,close-once", NULL};

    snprintf(pin, sizeof(pin), "%s/fake-pin", env.dir);
    assert_int_equal(ts_write_file(pin, "1234\n", 5), 0);
    daemon_start(&d, envs, "fake-hw", "--hsm-module", COFFER_FAKE_P11_CTL, "--hsm-token", "slow",
                 "--hsm-key", "slow-kek", "--hsm-pin-file", pin, "--hsm-cache-max-age", "0", NULL);
    for (int i = 0; i < 4; i++) {
        struct ts_membuf ct = {0};
        json_t *cfg;
        encrypt_decrypt(&d, 5000 + (size_t)i, 20 + (uint64_t)i, &ct, &cfg);
        assert_string_equal(jstr(cfg, "mechanism"), "CKM_AES_GCM");
        assert_string_equal(jstr(cfg, "keyLabel"), "slow-kek");
        assert_string_not_equal(jstr(cfg, "iv"), "AAAAAAAAAAAAAAAA"); /* the token's, not zeros */
        json_decref(cfg);
        free(ct.p);
    }
    assert_true(ts_daemon_log_has(&d, "mechanism=CKM_AES_GCM name=gcm-token-iv"));
    assert_true(ts_daemon_log_has(&d, "retried on a fresh session"));
    assert_false(ts_daemon_log_has(&d, "lost the connection"));
    assert_false(ts_daemon_log_has(&d, "event=hsm_unavailable"));
    assert_int_equal(ts_daemon_stop(&d), 0);
}

/* ---- openCryptoki's software token: encrypt-then-MAC, negotiated ---- */

static void ock_start(void)
{
    char *argv[] = {COFFER_OCK_SCRIPT, "start", ock_state, OCK_TOKEN, NULL};
    char log[1400];
    snprintf(log, sizeof(log), "%s/ock.log", env.dir);
    if (access(OCK_MODULE, R_OK) != 0)
        ts_skip("openCryptoki is not installed (%s; apt-get install opencryptoki)", OCK_MODULE);
    int r = ts_run(argv, NULL, NULL, log, log);
    size_t n = 0;
    uint8_t *text = ts_read_file(log, &n);
    if (text != NULL)
        fprintf(stderr, "%.*s", (int)n, (char *)text);
    free(text);
    ock_started = 1; /* whatever happened: stop what it may have started */
    if (r == 2)
        ts_skip("openCryptoki's token needs root to set up (scripts/opencryptoki-token.sh)");
    if (r != 0)
        fail_msg("scripts/opencryptoki-token.sh start failed (%d)", r);
}

static void ock_stop(void)
{
    char *argv[] = {COFFER_OCK_SCRIPT, "stop", ock_state, NULL};
    if (ock_started && ts_run(argv, NULL, NULL, NULL, NULL) != 0)
        fprintf(stderr, "scripts/opencryptoki-token.sh stop failed\n");
    ock_started = 0;
}

static void test_opencryptoki_etm(void **state)
{
    struct ts_daemon d = {0}, soft = {0};
    struct ts_membuf ct = {0}, gcm_ct = {0};
    char pin[1400], *out;
    json_t *cfg;

    ock_start();
    snprintf(pin, sizeof(pin), "%s/user-pin", ock_state);
    /* init-kek negotiates: no GCM, no key wrap, so the KEK and its HMAC key */
    assert_int_equal(cli(&out, pin, "init-kek", OCK_MODULE, OCK_TOKEN, "ock-kek", NULL), 0);
    assert_non_null(strstr(out, "for CKM_AES_CBC_PAD+CKM_SHA256_HMAC (cbc-hmac)"));
    assert_non_null(strstr(out, "created HMAC key 'ock-kek-hmac'"));
    assert_non_null(strstr(out, "passed over gcm: the token does not offer CKM_AES_GCM"));
    free(out);
    assert_int_equal(cli(&out, pin, "check", OCK_MODULE, OCK_TOKEN, "ock-kek", NULL), 0);
    assert_non_null(strstr(out, "ok    mechanism: CKM_AES_CBC_PAD+CKM_SHA256_HMAC (cbc-hmac)"));
    assert_non_null(strstr(out, "ok    wrap/unwrap:"));
    assert_non_null(strstr(out, "passed over kwp: the token does not offer CKM_AES_KEY_WRAP_KWP"));
    free(out);

    daemon_start(&d, ock_env, "ock", "--hsm-module", OCK_MODULE, "--hsm-token", OCK_TOKEN,
                 "--hsm-key", "ock-kek", "--hsm-pin-file", pin, "--hsm-max-sessions", "2", NULL);
    encrypt_decrypt(&d, 100000, 9, &ct, &cfg);
    assert_string_equal(jstr(cfg, "mechanism"), "CKM_AES_CBC_PAD+CKM_SHA256_HMAC");
    assert_string_equal(jstr(cfg, "keyLabel"), "ock-kek");
    assert_string_equal(jstr(cfg, "macKeyLabel"), "ock-kek-hmac");
    assert_int_equal(strlen(jstr(cfg, "iv")), 24);
    assert_int_equal(strlen(jstr(cfg, "wrappedKey")), 64);
    assert_int_equal(strlen(jstr(cfg, "mac")), 44);
    json_decref(cfg);
    /* 'hsm list' tells the HMAC key from a KEK */
    {
        char *argv[] = {COFFER_HSM_CLI, "hsm",     "list",       "--module", OCK_MODULE,
                        "--token",      OCK_TOKEN, "--pin-file", pin,        NULL};
        char path[1400];
        size_t n = 0;
        snprintf(path, sizeof(path), "%s/list.out", env.dir);
        assert_int_equal(ts_run(argv, ock_env, NULL, path, path), 0);
        char *text = (char *)ts_read_file(path, &n);
        assert_non_null(text);
        fprintf(stderr, "%s", text);
        assert_non_null(strstr(text, "'ock-kek-hmac'  GENERIC_SECRET(32 bytes) private sensitive "
                                     "not-extractable sign verify  -- coffer's HMAC key"));
        assert_null(strstr(text, "not fit"));
        free(text);
    }
    /* a changed MAC or ciphertext is refused by C_Verify, before anything is decrypted */
    struct ts_membuf ct2 = {malloc(ct.len), ct.len, 0, ct.len};
    memcpy(ct2.p, ct.p, ct.len);
    tamper(&ct, "mac");
    decrypt_fails(&d, &ct, COFFER_ERR_WRONG_KEY, "CKR_SIGNATURE_INVALID");
    tamper(&ct2, "wrappedKey");
    decrypt_fails(&d, &ct2, COFFER_ERR_WRONG_KEY, "CKR_SIGNATURE_INVALID");

    /* A GCM backup (SoftHSM2, a token of the same label and a key of the same name) restored on
     * openCryptoki: refused, naming the mechanism and key it needs. */
    daemon_start(&soft, NULL, "soft-gcm", "--hsm-module", env.module, "--hsm-token", OCK_TOKEN,
                 "--hsm-key", "ock-kek", "--hsm-pin-file", env.pin_file, NULL);
    encrypt_decrypt(&soft, 3000, 3, &gcm_ct, &cfg);
    assert_string_equal(jstr(cfg, "mechanism"), "CKM_AES_GCM");
    json_decref(cfg);
    decrypt_fails(&d, &gcm_ct, COFFER_ERR_HSM_UNAVAILABLE,
                  "wrapped with CKM_AES_GCM under key 'ock-kek'");
    decrypt_fails(&d, &gcm_ct, COFFER_ERR_HSM_UNAVAILABLE, "does not offer CKM_AES_GCM");
    assert_int_equal(ts_daemon_stop(&soft), 0);
    assert_int_equal(ts_daemon_stop(&d), 0);
    free(ct.p), free(ct2.p), free(gcm_ct.p);
    ock_stop();
}

static int setup(void **state)
{
    char path[1400];
    uint8_t key[32];
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    ht_env_setup(&env);
    ht_token_init(&env, "mech", tokdir, sizeof(tokdir));
    ht_token_init(&env, OCK_TOKEN, ockdir, sizeof(ockdir)); /* SoftHSM2's namesake */
    /* the GCM key of the namesake, made by coffer itself */
    {
        char *out;
        assert_int_equal(
            cli(&out, env.pin_file, "init-kek", env.module, OCK_TOKEN, "ock-kek", NULL), 0);
        assert_non_null(strstr(out, "for CKM_AES_GCM (gcm)"));
        free(out);
    }
    snprintf(secrets, sizeof(secrets), "%s/secrets", env.dir);
    snprintf(path, sizeof(path), "%s/velero/coffer-key", secrets);
    char *mk[] = {"/bin/mkdir", "-p", path, NULL};
    assert_int_equal(ts_run(mk, NULL, NULL, NULL, NULL), 0);
    ts_fill(key, sizeof(key), 77);
    snprintf(path, sizeof(path), "%s/velero/coffer-key/encryptionKey", secrets);
    assert_int_equal(ts_write_file(path, key, sizeof(key)), 0);
    snprintf(ock_state, sizeof(ock_state), "%s/ock", env.dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ock_stop(); /* also after a failed test */
    if (getenv("COFFER_TEST_KEEP") == NULL)
        ht_env_teardown(&env);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_softhsm_kwp),
        cmocka_unit_test(test_fake_hardware_hsm),
        cmocka_unit_test(test_opencryptoki_etm),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
