/* SPDX-License-Identifier: Apache-2.0 */
/* cofferd with the pkcs11 retriever: real SoftHSM2 tokens in a temporary directory, driven through
 * libcoffer. */
#include "coffer_client.h"
#include "coffer_error.h"
#include "engine_header.h"
#include "engine_key.h"
#include "engine_metadata.h"
#include "engine_stream.h"
#include "hsm_admin.h"
#include "hsm_client.h"
#include "hsm_test_util.h"
#include "test_daemon.h"
#include "test_support.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#define WRONG_PIN "wrong-pin-31337"
#define CMD_PIN   "cmdline-pin-90210"
#define FAKE_PIN  "1234" /* fake_p11's user PIN */
#define MAX_LOGS  64

static struct ht_env env;
static char tokdir[1200];       /* the token "coffer" (keys kek-1, kek-2) */
static char gonedir[1200];      /* the token "coffer-gone" (key kek-g), removed and restored */
static char secrets[1300];      /* <dir>/secrets: velero/coffer-key */
static char wrong_pin[1300];    /* a file holding WRONG_PIN */
static char fake_pin[1300];     /* a file holding FAKE_PIN */
static char delay_file[1300];   /* fake_p11_ctl's delay in ms */
static uint8_t secret_key[32];  /* the Secret's key, for offline checks */
static struct ts_daemon main_d; /* HSM with kek-1, cache on */
static char logs[MAX_LOGS][PATH_MAX]; /* every daemon's stderr, checked for PINs */
static int nlogs;
static pid_t running[MAX_LOGS]; /* daemons not stopped yet (a failed test leaves them) */

/* ---- daemons ---- */

/*
 * Start cofferd with the common flags, the environment entries in envs ("NAME=value",
 * NULL-terminated, may be NULL) and the extra flags (NULL-terminated). Returns 0 once it
 * listens, else its exit status.
 */
static int daemon_start(struct ts_daemon *d, const char *name, char *const *envs, ...)
{
    char *flags[] = {"--secrets-dir", secrets, "--workers", "2", "--io-timeout", "30", NULL};
    va_list ap;
    int r;

    ts_daemon_paths(d, env.dir, name);
    unlink(d->log);
    if (nlogs < MAX_LOGS)
        snprintf(logs[nlogs++], sizeof(logs[0]), "%s", d->log);
    va_start(ap, envs);
    r = ts_daemon_vstart(d, flags, envs, 2000, ap);
    va_end(ap);
    assert_true(r != -1);
    for (int i = 0; d->pid > 0 && i < MAX_LOGS; i++) {
        if (running[i] == 0) {
            running[i] = d->pid;
            break;
        }
    }
    if (r == TS_DAEMON_TIMEOUT)
        fail_msg("cofferd did not start (see %s)", d->log);
    return r;
}

static int daemon_stop(struct ts_daemon *d)
{
    pid_t pid = d->pid;
    int r = ts_daemon_stop(d);

    for (int i = 0; pid > 0 && i < MAX_LOGS; i++)
        if (running[i] == pid)
            running[i] = 0;
    return r;
}

/* ---- jobs ---- */

static coffer_client *client(const struct ts_daemon *d)
{
    coffer_client *c = NULL;
    char msg[256];
    int r = coffer_client_connect(&c, d->sock, msg, sizeof(msg));
    if (r != 0)
        fail_msg("connect %s: %s (%s)", d->sock, coffer_client_strerror(r), msg);
    return c;
}

/* One streamed job on a fresh connection: out gets the output, res the result or error. */
static int run_stream(const struct ts_daemon *d, int op, const char *meta, const uint8_t *in,
                      size_t inlen, struct ts_membuf *out, struct coffer_result *res)
{
    struct coffer_job job = {op, NULL, NULL, 0, meta, meta != NULL ? strlen(meta) : 0, 0};
    struct ts_membuf src = {(uint8_t *)in, inlen, 0, inlen};
    coffer_client *c = client(d);
    int r = coffer_client_stream(c, &job, ts_membuf_read, &src, ts_membuf_write, out, res);
    coffer_client_close(c);
    return r;
}

/* One descriptor job: the daemon reads inpath and writes outpath itself. */
static int run_file(const struct ts_daemon *d, int op, const char *meta, const char *inpath,
                    const char *outpath, struct coffer_result *res)
{
    struct coffer_job job = {op, NULL, NULL, 0, meta, meta != NULL ? strlen(meta) : 0, 1};
    int in = open(inpath, O_RDONLY | O_CLOEXEC);
    int out = open(outpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    coffer_client *c = client(d);
    int r;
    assert_true(in >= 0 && out >= 0);
    r = coffer_client_file(c, &job, in, out, res);
    coffer_client_close(c);
    close(in);
    close(out);
    return r;
}

/* Encrypt len pseudo-random bytes (seed) streamed; the plaintext goes to *pt (malloc). */
static void encrypt_ok(const struct ts_daemon *d, size_t len, uint64_t seed, uint8_t **pt,
                       struct ts_membuf *ct, struct coffer_result *res)
{
    uint8_t *in = malloc(len + 1);
    int r;
    ts_fill(in, len, seed);
    r = run_stream(d, COFFER_CLIENT_ENCRYPT, NULL, in, len, ct, res);
    if (r != 0)
        fail_msg("encrypt on %s: %s (%s)", d->sock, coffer_errname(r), res->message);
    *pt = in;
}

/* Decrypt through the daemon and compare. */
static void decrypt_ok(const struct ts_daemon *d, const struct ts_membuf *ct, const uint8_t *pt,
                       size_t len)
{
    struct ts_membuf dec = {0};
    struct coffer_result res = {0};
    int r = run_stream(d, COFFER_CLIENT_DECRYPT, NULL, ct->p, ct->len, &dec, &res);
    if (r != 0)
        fail_msg("decrypt on %s: %s (%s)", d->sock, coffer_errname(r), res.message);
    assert_int_equal(dec.len, len);
    assert_memory_equal(dec.p, pt, len);
    free(dec.p);
    coffer_result_clear(&res);
}

/* ---- metadata and statistics ---- */

static json_t *meta_of(const struct coffer_result *res)
{
    json_t *m = json_loadb(res->metadata, res->metadata_len, 0, NULL);
    assert_non_null(m);
    return m;
}

static const char *jstr(const json_t *o, const char *path1, const char *path2)
{
    const json_t *v = json_object_get(o, path1);
    if (path2 != NULL)
        v = json_object_get(v, path2);
    return json_is_string(v) ? json_string_value(v) : "";
}

/* Whether any key of o or of the objects in it mentions a PIN. */
static int has_pin_key(const json_t *o)
{
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)o, k, v)
    {
        if (strcasestr(k, "pin") != NULL || (json_is_object(v) && has_pin_key(v)))
            return 1;
    }
    return 0;
}

/* An HSM backup of this token and key label, and nothing about a PIN. */
static void check_hsm_meta(const struct coffer_result *res, const char *token, const char *label)
{
    json_t *m = meta_of(res);
    engine_metadata em;
    assert_string_equal(jstr(m, "keyRetrieverType", NULL), "pkcs11");
    assert_string_equal(jstr(m, "format", NULL), "coffer-v1");
    assert_string_equal(jstr(m, "keyRetrieverConfig", "token"), token);
    assert_string_equal(jstr(m, "keyRetrieverConfig", "keyLabel"), label);
    assert_string_equal(jstr(m, "keyRetrieverConfig", "mechanism"), "CKM_AES_GCM");
    assert_int_equal(strlen(jstr(m, "keyRetrieverConfig", "iv")), 16);
    assert_int_equal(strlen(jstr(m, "keyRetrieverConfig", "wrappedKey")), 64);
    assert_null(json_object_get(m, "hsmFallback"));
    assert_null(strstr(res->metadata, HT_PIN));
    /* no field about a PIN (not the text: base64 values spell "pin" in ~1 of 500 backups) */
    assert_false(has_pin_key(m));
    /* the first fields are what a Go server unmarshals, and the engine parses it */
    assert_int_equal(engine_metadata_parse(&em, res->metadata, res->metadata_len), 0);
    assert_string_equal(em.retriever, "pkcs11");
    engine_metadata_clear(&em);
    json_decref(m);
}

/* A Secret backup after a fallback that records this error and step. */
static void check_fallback_meta(const struct coffer_result *res, const char *err, const char *step,
                                const char *token, const char *label)
{
    json_t *m = meta_of(res);
    engine_metadata em;
    assert_string_equal(jstr(m, "keyRetrieverType", NULL), "secret");
    assert_string_equal(jstr(m, "keyRetrieverConfig", "namespace"), "velero");
    assert_string_equal(jstr(m, "keyRetrieverConfig", "secretName"), "coffer-key");
    assert_string_equal(jstr(m, "hsmFallback", "keyRetrieverType"), "pkcs11");
    assert_string_equal(jstr(m, "hsmFallback", "error"), err);
    assert_string_equal(jstr(m, "hsmFallback", "step"), step);
    assert_string_equal(jstr(m, "hsmFallback", "token"), token);
    assert_string_equal(jstr(m, "hsmFallback", "keyLabel"), label);
    assert_true(strlen(jstr(m, "hsmFallback", "reason")) > 10);
    assert_null(strstr(res->metadata, HT_PIN));
    assert_null(strstr(res->metadata, WRONG_PIN));
    assert_int_equal(engine_metadata_parse(&em, res->metadata, res->metadata_len), 0);
    assert_string_equal(em.retriever, "secret");
    engine_metadata_clear(&em);
    json_decref(m);
}

static json_t *stats_of(const struct ts_daemon *d)
{
    coffer_client *c = client(d);
    char *text = NULL;
    json_t *j;
    assert_int_equal(coffer_client_stats(c, &text), 0);
    coffer_client_close(c);
    j = json_loads(text, 0, NULL);
    assert_non_null(j);
    free(text);
    return j;
}

static long long stat_int(const json_t *s, const char *a, const char *b)
{
    const json_t *v = json_object_get(s, a);
    if (b != NULL)
        v = json_object_get(v, b);
    return json_is_integer(v) ? (long long)json_integer_value(v) : -1;
}

/* ---- tests ---- */

static const size_t sizes[] = {0, 1, 16384, 16385, 100000, 1048576 + 3};

/* Envelope round trips, streamed and by descriptor, and the offline engine with the Secret. */
static void test_envelope_roundtrip(void **state)
{
    char pin[1400], pct[1400], pout[1400];
    (void)state;
    snprintf(pin, sizeof(pin), "%s/rt.in", env.dir);
    snprintf(pct, sizeof(pct), "%s/rt.ct", env.dir);
    snprintf(pout, sizeof(pout), "%s/rt.out", env.dir);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t len = sizes[i], ctlen = 0, outlen = 0;
        uint8_t *pt = NULL, *ct, *out;
        struct ts_membuf enc = {0};
        struct coffer_result res = {0}, res2 = {0}, res3 = {0};

        /* streamed */
        encrypt_ok(&main_d, len, 100 + i, &pt, &enc, &res);
        check_hsm_meta(&res, "coffer", "kek-1");
        assert_int_equal(res.bytes_in, len);
        assert_int_equal(res.bytes_out, enc.len);
        decrypt_ok(&main_d, &enc, pt, len);
        /* by descriptor: encrypt and decrypt, then the streamed ciphertext by descriptor */
        assert_int_equal(ts_write_file(pin, pt, len), 0);
        assert_int_equal(run_file(&main_d, COFFER_CLIENT_ENCRYPT, NULL, pin, pct, &res2), 0);
        check_hsm_meta(&res2, "coffer", "kek-1");
        assert_int_equal(run_file(&main_d, COFFER_CLIENT_DECRYPT, NULL, pct, pout, &res3), 0);
        out = ts_read_file(pout, &outlen);
        assert_int_equal(outlen, len);
        assert_memory_equal(out, pt, len);
        free(out);
        coffer_result_clear(&res3);
        assert_int_equal(ts_write_file(pct, enc.p, enc.len), 0);
        assert_int_equal(run_file(&main_d, COFFER_CLIENT_DECRYPT, NULL, pct, pout, &res3), 0);
        /* the restore's result is the backup's own (authenticated) header metadata */
        assert_int_equal(res3.metadata_len, res.metadata_len);
        assert_memory_equal(res3.metadata, res.metadata, res.metadata_len);
        out = ts_read_file(pout, &outlen);
        assert_int_equal(outlen, len);
        assert_memory_equal(out, pt, len);
        ct = ts_read_file(pct, &ctlen);
        assert_int_equal(ctlen, enc.len);
        free(out), free(ct), free(pt), free(enc.p);
        coffer_result_clear(&res), coffer_result_clear(&res2), coffer_result_clear(&res3);
    }
}

/* The wrapped key in the metadata is the data key under the KEK: unwrap it with raw PKCS#11
 * calls, check it against keyId, and decrypt the backup offline with the engine. */
static void test_wrapped_key_is_data_key(void **state)
{
    size_t len = 300000, ptlen = 0;
    uint8_t *pt = NULL, *back = NULL, iv[64], wk[96], dk[64];
    struct ts_membuf enc = {0};
    struct coffer_result res = {0};
    struct ht_raw raw;
    CK_OBJECT_HANDLE kek;
    CK_ULONG dklen = sizeof(dk);
    char id[ENGINE_KEY_ID_LEN + 1];
    json_t *m;
    (void)state;

    encrypt_ok(&main_d, len, 7, &pt, &enc, &res);
    check_hsm_meta(&res, "coffer", "kek-1");
    m = meta_of(&res);
    const char *iv64 = jstr(m, "keyRetrieverConfig", "iv");
    const char *wk64 = jstr(m, "keyRetrieverConfig", "wrappedKey");
    assert_int_equal(EVP_DecodeBlock(iv, (const unsigned char *)iv64, (int)strlen(iv64)), 12);
    assert_int_equal(EVP_DecodeBlock(wk, (const unsigned char *)wk64, (int)strlen(wk64)), 48);

    ht_raw_open(&env, "coffer", &raw);
    assert_int_equal(ht_raw_find(&raw, "kek-1", CKO_SECRET_KEY, &kek, 1), 1);
    const char aad[] = "coffer-kek:kek-1";
    CK_GCM_PARAMS gp = {iv, 12, 96, (CK_BYTE_PTR)aad, sizeof(aad) - 1, 128};
    CK_MECHANISM mech = {CKM_AES_GCM, &gp, sizeof(gp)};
    assert_int_equal(raw.f->C_DecryptInit(raw.s, &mech, kek), CKR_OK);
    assert_int_equal(raw.f->C_Decrypt(raw.s, wk, 48, dk, &dklen), CKR_OK);
    ht_raw_close(&raw);
    assert_int_equal(dklen, 32);
    engine_key_id(dk, 32, id);
    assert_string_equal(id, jstr(m, "keyId", NULL));

    /* offline: the engine alone, with the data key the token unwrapped */
    assert_int_equal(ts_offline_open(COFFER_FORMAT_COFFER_V1, dk, enc.p, enc.len, &back, &ptlen),
                     0);
    assert_int_equal(ptlen, len);
    assert_memory_equal(back, pt, len);
    free(back);
    /* and not with the Secret's key */
    assert_int_equal(
        ts_offline_open(COFFER_FORMAT_COFFER_V1, secret_key, enc.p, enc.len, &back, &ptlen),
        COFFER_ERR_WRONG_KEY);
    json_decref(m);
    free(pt), free(enc.p);
    coffer_result_clear(&res);
}

struct failure {
    const char *name;
    const char *module, *token, *key, *pin_file;
    const char *err, *step, *ckr;
    int code;
};

/* Each way the HSM can fail: fallback to the Secret (recorded, logged, counted), and with
 * --hsm-fallback none a clean failure with the HSM's code. */
static void check_failure(const struct failure *f, char *const *envs, const char *timeout_ms)
{
    struct ts_daemon a = {0}, b = {0};
    char name[64], pct[1400], pout[1400];
    size_t len = 50000, ptlen = 0;
    uint8_t *pt = NULL, *back = NULL;
    struct ts_membuf enc = {0}, none_out = {0};
    struct coffer_result res = {0}, res2 = {0};
    json_t *s;
    int r;

    snprintf(name, sizeof(name), "fb-%s", f->name);
    assert_int_equal(daemon_start(&a, name, envs, "--hsm-module", f->module, "--hsm-token",
                                  f->token, "--hsm-key", f->key, "--hsm-pin-file",
                                  f->pin_file != NULL ? f->pin_file : env.pin_file, "--hsm-timeout",
                                  timeout_ms, "--hsm-cache-max-age", "0", NULL),
                     0);
    /* the backup falls back to the Secret, and its metadata says what was tried and why */
    encrypt_ok(&a, len, 11, &pt, &enc, &res);
    check_fallback_meta(&res, f->err, f->step, f->token, f->key);
    if (f->ckr != NULL) {
        json_t *m = meta_of(&res);
        assert_string_equal(jstr(m, "hsmFallback", "ckr"), f->ckr);
        json_decref(m);
    }
    /* it restores through the daemon and offline with the Secret's key */
    decrypt_ok(&a, &enc, pt, len);
    assert_int_equal(
        ts_offline_open(COFFER_FORMAT_COFFER_V1, secret_key, enc.p, enc.len, &back, &ptlen), 0);
    assert_int_equal(ptlen, len);
    assert_memory_equal(back, pt, len);
    free(back);
    /* a descriptor job falls back too */
    snprintf(pct, sizeof(pct), "%s/fb.in", env.dir);
    snprintf(pout, sizeof(pout), "%s/fb.ct", env.dir);
    assert_int_equal(ts_write_file(pct, pt, len), 0);
    assert_int_equal(run_file(&a, COFFER_CLIENT_ENCRYPT, NULL, pct, pout, &res2), 0);
    check_fallback_meta(&res2, f->err, f->step, f->token, f->key);
    coffer_result_clear(&res2);
    /* logged and counted, by reason */
    assert_true(ts_daemon_log_has(&a, "event=hsm_fallback"));
    s = stats_of(&a);
    assert_int_equal(stat_int(s, "fallbacks", NULL), 2);
    assert_int_equal(stat_int(s, "fallbackReasons", f->err), 2);
    json_decref(s);
    assert_int_equal(daemon_stop(&a), 0);

    /* --hsm-fallback none: the job fails with the HSM's code and sentence */
    snprintf(name, sizeof(name), "none-%s", f->name);
    assert_int_equal(daemon_start(&b, name, envs, "--hsm-module", f->module, "--hsm-token",
                                  f->token, "--hsm-key", f->key, "--hsm-pin-file",
                                  f->pin_file != NULL ? f->pin_file : env.pin_file, "--hsm-timeout",
                                  timeout_ms, "--hsm-fallback", "none", NULL),
                     0);
    r = run_stream(&b, COFFER_CLIENT_ENCRYPT, NULL, pt, len, &none_out, &res2);
    if (r != f->code)
        fail_msg("%s with --hsm-fallback none: expected %s, got %s (%s)", f->name,
                 coffer_errname(f->code), coffer_errname(r), res2.message);
    assert_int_equal(none_out.len, 0);
    assert_non_null(strstr(res2.message, "--hsm-fallback is none"));
    assert_non_null(strstr(res2.message, coffer_errname(f->code)));
    coffer_result_clear(&res2);
    assert_int_equal(run_file(&b, COFFER_CLIENT_ENCRYPT, NULL, pct, pout, &res2), f->code);
    coffer_result_clear(&res2);
    s = stats_of(&b);
    assert_int_equal(stat_int(s, "fallbacks", NULL), 0);
    assert_int_equal(stat_int(s, "hsmBackupsFailed", NULL), 2);
    json_decref(s);
    /* the fallback backup restores there too (it needs only the Secret) */
    decrypt_ok(&b, &enc, pt, len);
    assert_int_equal(daemon_stop(&b), 0);
    free(pt), free(enc.p), free(none_out.p);
    coffer_result_clear(&res);
}

static void test_fallback_module(void **state)
{
    struct failure f = {"module",
                        "/nonexistent/libnope-pkcs11.so",
                        "coffer",
                        "kek-1",
                        NULL,
                        "HSM_MODULE",
                        "module",
                        NULL,
                        COFFER_ERR_HSM_MODULE};
    (void)state;
    check_failure(&f, NULL, "5000");
}

static void test_fallback_token(void **state)
{
    struct failure f = {"token", env.module, "no-such-token",     "kek-1", NULL, "HSM_TOKEN",
                        "token", NULL,       COFFER_ERR_HSM_TOKEN};
    (void)state;
    check_failure(&f, NULL, "5000");
}

static void test_fallback_key(void **state)
{
    struct failure f = {"key",     env.module, "coffer", "no-such-kek",     NULL,
                        "HSM_KEY", "key",      NULL,     COFFER_ERR_HSM_KEY};
    (void)state;
    check_failure(&f, NULL, "5000");
}

/* A wrong PIN: login refused, and the PIN (wrong or right) appears in no log line. */
static void test_fallback_wrong_pin(void **state)
{
    struct failure f = {"pin",   env.module,          "coffer",
                        "kek-1", wrong_pin,           "HSM_LOGIN",
                        "login", "CKR_PIN_INCORRECT", COFFER_ERR_HSM_LOGIN};
    (void)state;
    check_failure(&f, NULL, "5000");
}

/* The token hangs (fake_p11 behind fake_p11_ctl, delay set by a file): HSM_TIMEOUT, then it
 * answers again and new backups use it again without a restart. */
static void test_fallback_timeout(void **state)
{
    static char pin_env[] = "COFFER_HSM_PIN=" FAKE_PIN;
    static char delay_env[1400];
    char *envs[] = {pin_env, delay_env, NULL};
    struct failure f = {
        "timeout", COFFER_FAKE_P11_CTL,   "slow", "slow-kek", NULL, "HSM_TIMEOUT", "timeout",
        NULL,      COFFER_ERR_HSM_TIMEOUT};
    struct ts_daemon d = {0};
    struct ts_membuf enc = {0}, enc2 = {0};
    struct coffer_result res = {0}, res2 = {0};
    uint8_t *pt = NULL, *pt2 = NULL;
    struct timespec t0, t1;
    (void)state;

    snprintf(delay_env, sizeof(delay_env), "COFFER_FAKE_P11_DELAY_FILE=%s", delay_file);
    /* the PIN from the environment (no --hsm-pin-file): a fast token first */
    assert_int_equal(ts_write_file(delay_file, "0\n", 2), 0);
    assert_int_equal(daemon_start(&d, "slow", envs, "--hsm-module", COFFER_FAKE_P11_CTL,
                                  "--hsm-token", "slow", "--hsm-key", "slow-kek", "--hsm-timeout",
                                  "300", "--hsm-cache-max-age", "0", NULL),
                     0);
    encrypt_ok(&d, 20000, 3, &pt, &enc, &res);
    check_hsm_meta(&res, "slow", "slow-kek");
    /* it hangs for 1.5 s: the backup falls back after 300 ms */
    assert_int_equal(ts_write_file(delay_file, "1500\n", 5), 0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    encrypt_ok(&d, 20000, 4, &pt2, &enc2, &res2);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_true((double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9 < 1.4);
    check_fallback_meta(&res2, "HSM_TIMEOUT", "timeout", "slow", "slow-kek");
    free(pt2), free(enc2.p);
    coffer_result_clear(&res2);
    memset(&enc2, 0, sizeof(enc2));
    /* it answers again: new backups use it again, without a restart */
    assert_int_equal(ts_write_file(delay_file, "0\n", 2), 0);
    sleep(2);
    encrypt_ok(&d, 20000, 5, &pt2, &enc2, &res2);
    check_hsm_meta(&res2, "slow", "slow-kek");
    decrypt_ok(&d, &enc, pt, 20000);
    decrypt_ok(&d, &enc2, pt2, 20000);
    assert_int_equal(daemon_stop(&d), 0);
    free(pt), free(pt2), free(enc.p), free(enc2.p);
    coffer_result_clear(&res), coffer_result_clear(&res2);

    /* the same through check_failure: fallback recorded and counted; none fails cleanly */
    assert_int_equal(ts_write_file(delay_file, "1500\n", 5), 0);
    f.pin_file = fake_pin;
    check_failure(&f, envs, "300");
    assert_int_equal(ts_write_file(delay_file, "0\n", 2), 0);
}

/* The token's files vanish while the daemon runs, then come back. */
static void test_token_removed(void **state)
{
    struct ts_daemon d = {0};
    char saved[1400];
    struct ts_membuf enc = {0}, enc2 = {0}, enc3 = {0}, dec = {0};
    struct coffer_result res = {0}, res2 = {0}, res3 = {0}, res4 = {0};
    uint8_t *pt = NULL, *pt2 = NULL, *pt3 = NULL;
    int r = -1;
    json_t *s;
    (void)state;

    /* the cache off, so that every backup and restore asks the token */
    assert_int_equal(daemon_start(&d, "gone", NULL, "--hsm-module", env.module, "--hsm-token",
                                  "coffer-gone", "--hsm-key", "kek-g", "--hsm-pin-file",
                                  env.pin_file, "--hsm-cache-max-age", "0", NULL),
                     0);
    encrypt_ok(&d, 40000, 21, &pt, &enc, &res);
    check_hsm_meta(&res, "coffer-gone", "kek-g");

    /* the token's files are removed (a copy is kept to put back) */
    snprintf(saved, sizeof(saved), "%s/saved-token", env.dir);
    char *cp_out[] = {"/bin/cp", "-a", gonedir, saved, NULL};
    assert_int_equal(ts_run(cp_out, NULL, NULL, NULL, NULL), 0);
    ts_rmtree(gonedir);
    assert_int_not_equal(access(gonedir, F_OK), 0);
    /* new backups fall back to the Secret */
    encrypt_ok(&d, 40000, 22, &pt2, &enc2, &res2);
    {
        json_t *m = meta_of(&res2);
        assert_string_equal(jstr(m, "keyRetrieverType", NULL), "secret");
        assert_string_equal(jstr(m, "hsmFallback", "token"), "coffer-gone");
        assert_string_equal(jstr(m, "hsmFallback", "keyLabel"), "kek-g");
        assert_true(strncmp(jstr(m, "hsmFallback", "error"), "HSM_", 4) == 0);
        json_decref(m);
    }
    decrypt_ok(&d, &enc2, pt2, 40000);
    /* restoring an HSM backup fails and says which token and key it needs */
    r = run_stream(&d, COFFER_CLIENT_DECRYPT, NULL, enc.p, enc.len, &dec, &res3);
    if (r != COFFER_ERR_HSM_UNAVAILABLE)
        fail_msg("expected HSM_UNAVAILABLE, got %s: %s", coffer_errname(r), res3.message);
    assert_non_null(strstr(res3.message, "key 'kek-g'"));
    assert_non_null(strstr(res3.message, "token 'coffer-gone'"));
    assert_int_equal(dec.len, 0);
    coffer_result_clear(&res3);

    /* the files come back: the HSM is used again without a restart */
    char *cp_back[] = {"/bin/cp", "-a", saved, gonedir, NULL};
    assert_int_equal(ts_run(cp_back, NULL, NULL, NULL, NULL), 0);
    for (int i = 0; i < 20; i++) {
        json_t *m;
        free(pt3), free(enc3.p);
        pt3 = NULL;
        memset(&enc3, 0, sizeof(enc3));
        coffer_result_clear(&res4);
        encrypt_ok(&d, 40000, 23, &pt3, &enc3, &res4);
        m = meta_of(&res4);
        r = strcmp(jstr(m, "keyRetrieverType", NULL), "pkcs11");
        json_decref(m);
        if (r == 0)
            break;
        usleep(100000);
    }
    check_hsm_meta(&res4, "coffer-gone", "kek-g");
    decrypt_ok(&d, &enc, pt, 40000);
    decrypt_ok(&d, &enc3, pt3, 40000);
    s = stats_of(&d);
    assert_true(stat_int(s, "fallbacks", NULL) >= 1);
    assert_true(stat_int(s, "hsmRestoresFailed", NULL) >= 1);
    json_decref(s);
    assert_int_equal(daemon_stop(&d), 0);
    free(pt), free(pt2), free(pt3), free(enc.p), free(enc2.p), free(enc3.p), free(dec.p);
    coffer_result_clear(&res), coffer_result_clear(&res2), coffer_result_clear(&res4);
}

/* An HSM backup restored by a second daemon with its own copy of the token (restores only). */
static void test_second_daemon(void **state)
{
    struct ts_daemon d = {0};
    char tokens2[1400], conf2[1400], text[1600], envbuf[1500];
    char *envs[] = {envbuf, NULL};
    struct ts_membuf enc = {0}, enc2 = {0};
    struct coffer_result res = {0}, res2 = {0};
    uint8_t *pt = NULL, *pt2 = NULL;
    (void)state;

    encrypt_ok(&main_d, 77777, 31, &pt, &enc, &res);
    check_hsm_meta(&res, "coffer", "kek-1");
    snprintf(tokens2, sizeof(tokens2), "%s/tokens2", env.dir);
    snprintf(conf2, sizeof(conf2), "%s/softhsm2-second.conf", env.dir);
    assert_int_equal(mkdir(tokens2, 0700), 0);
    char *cp[] = {"/bin/cp", "-a", tokdir, tokens2, NULL};
    assert_int_equal(ts_run(cp, NULL, NULL, NULL, NULL), 0);
    int n = snprintf(text, sizeof(text),
                     "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n",
                     tokens2);
    assert_int_equal(ts_write_file(conf2, text, (size_t)n), 0);
    snprintf(envbuf, sizeof(envbuf), "SOFTHSM2_CONF=%s", conf2);
    /* no --hsm-key: this daemon's new backups use the Secret, its restores the HSM */
    assert_int_equal(daemon_start(&d, "second", envs, "--hsm-module", env.module, "--hsm-token",
                                  "coffer", "--hsm-pin-file", env.pin_file, NULL),
                     0);
    decrypt_ok(&d, &enc, pt, 77777);
    encrypt_ok(&d, 1000, 32, &pt2, &enc2, &res2);
    {
        json_t *m = meta_of(&res2);
        assert_string_equal(jstr(m, "keyRetrieverType", NULL), "secret");
        assert_null(json_object_get(m, "hsmFallback"));
        json_decref(m);
    }
    decrypt_ok(&main_d, &enc2, pt2, 1000);
    assert_int_equal(daemon_stop(&d), 0);
    free(pt), free(pt2), free(enc.p), free(enc2.p);
    coffer_result_clear(&res), coffer_result_clear(&res2);
}

/* A daemon without an HSM says which token and key an HSM backup needs. */
static void test_restore_without_hsm(void **state)
{
    struct ts_daemon d = {0};
    struct ts_membuf enc = {0}, dec = {0};
    struct coffer_result res = {0}, res2 = {0};
    uint8_t *pt = NULL;
    (void)state;
    encrypt_ok(&main_d, 5000, 41, &pt, &enc, &res);
    assert_int_equal(daemon_start(&d, "nohsm", NULL, NULL), 0);
    assert_int_equal(run_stream(&d, COFFER_CLIENT_DECRYPT, NULL, enc.p, enc.len, &dec, &res2),
                     COFFER_ERR_HSM_UNAVAILABLE);
    assert_non_null(strstr(res2.message, "key 'kek-1' on token 'coffer'"));
    assert_int_equal(dec.len, 0);
    assert_int_equal(daemon_stop(&d), 0);
    free(pt), free(enc.p), free(dec.p);
    coffer_result_clear(&res), coffer_result_clear(&res2);
}

/* Rotation: SIGHUP picks up a new --hsm-key from the config file; old backups name theirs. */
static void test_rotation(void **state)
{
    struct ts_daemon d = {0};
    char conf[1400], text[4096];
    struct ts_membuf enc = {0}, enc2 = {0};
    struct coffer_result res = {0}, res2 = {0};
    uint8_t *pt = NULL, *pt2 = NULL;
    int n;
    (void)state;
    snprintf(conf, sizeof(conf), "%s/rot.conf", env.dir);
    n = snprintf(text, sizeof(text),
                 "# HSM for new backups\nhsm-module = %s\nhsm-token = coffer\nhsm-key = kek-1\n"
                 "hsm-pin-file = %s\nhsm-cache-max-uses = 50\n",
                 env.module, env.pin_file);
    assert_int_equal(ts_write_file(conf, text, (size_t)n), 0);
    assert_int_equal(daemon_start(&d, "rot", NULL, "--config", conf, NULL), 0);
    encrypt_ok(&d, 30000, 51, &pt, &enc, &res);
    check_hsm_meta(&res, "coffer", "kek-1");
    n = snprintf(text, sizeof(text),
                 "hsm-module = %s\nhsm-token = coffer\nhsm-key = kek-2\nhsm-pin-file = %s\n",
                 env.module, env.pin_file);
    assert_int_equal(ts_write_file(conf, text, (size_t)n), 0);
    kill(d.pid, SIGHUP);
    for (int i = 0; i < 500 && !ts_daemon_log_has(&d, "event=reload_ok"); i++)
        usleep(10000);
    assert_true(ts_daemon_log_has(&d, "event=reload_ok"));
    encrypt_ok(&d, 30000, 52, &pt2, &enc2, &res2);
    check_hsm_meta(&res2, "coffer", "kek-2");
    decrypt_ok(&d, &enc, pt, 30000);
    decrypt_ok(&d, &enc2, pt2, 30000);
    decrypt_ok(&main_d, &enc2, pt2, 30000); /* any daemon with the token */
    assert_int_equal(daemon_stop(&d), 0);
    free(pt), free(pt2), free(enc.p), free(enc2.p);
    coffer_result_clear(&res), coffer_result_clear(&res2);
}

struct conc_arg {
    const struct ts_daemon *d;
    int index, ok;
};

static void *conc_thread(void *p)
{
    struct conc_arg *a = p;
    char pin[1400], pct[1400], pout[1400];
    a->ok = 1;
    snprintf(pin, sizeof(pin), "%s/c%d.in", env.dir, a->index);
    snprintf(pct, sizeof(pct), "%s/c%d.ct", env.dir, a->index);
    snprintf(pout, sizeof(pout), "%s/c%d.out", env.dir, a->index);
    for (int i = 0; i < 6 && a->ok; i++) {
        size_t len = 1000 + (size_t)(a->index * 7919 + i * 104729) % 200000, outlen = 0;
        uint8_t *in = malloc(len), *out;
        struct ts_membuf enc = {0}, dec = {0};
        struct coffer_result res = {0}, res2 = {0};
        ts_fill(in, len, (uint64_t)(a->index * 100 + i));
        if (i % 2 == 0) {
            a->ok =
                run_stream(a->d, COFFER_CLIENT_ENCRYPT, NULL, in, len, &enc, &res) == 0 &&
                strstr(res.metadata, "\"keyRetrieverType\":\"pkcs11\"") != NULL &&
                run_stream(a->d, COFFER_CLIENT_DECRYPT, NULL, enc.p, enc.len, &dec, &res2) == 0 &&
                dec.len == len && memcmp(dec.p, in, len) == 0;
        } else {
            a->ok = ts_write_file(pin, in, len) == 0 &&
                    run_file(a->d, COFFER_CLIENT_ENCRYPT, NULL, pin, pct, &res) == 0 &&
                    strstr(res.metadata, "\"keyRetrieverType\":\"pkcs11\"") != NULL &&
                    run_file(a->d, COFFER_CLIENT_DECRYPT, NULL, pct, pout, &res2) == 0;
            out = a->ok ? ts_read_file(pout, &outlen) : NULL;
            a->ok = a->ok && outlen == len && memcmp(out, in, len) == 0;
            free(out);
        }
        if (!a->ok)
            fprintf(stderr, "thread %d job %d failed: %s %s\n", a->index, i, res.message,
                    res2.message);
        free(in), free(enc.p), free(dec.p);
        coffer_result_clear(&res), coffer_result_clear(&res2);
    }
    return NULL;
}

/* Two workers using the token at once: concurrent jobs, with the cache off (every job asks the
 * token) and on. */
static void test_concurrent(void **state)
{
    struct ts_daemon d = {0};
    pthread_t th[12];
    struct conc_arg args[12];
    json_t *s;
    (void)state;
    assert_int_equal(daemon_start(&d, "conc", NULL, "--hsm-module", env.module, "--hsm-token",
                                  "coffer", "--hsm-key", "kek-1", "--hsm-pin-file", env.pin_file,
                                  "--hsm-cache-max-age", "0", NULL),
                     0);
    for (int round = 0; round < 2; round++) {
        const struct ts_daemon *target = round == 0 ? &d : &main_d;
        for (int i = 0; i < 12; i++) {
            args[i] = (struct conc_arg){target, i, 0};
            assert_int_equal(pthread_create(&th[i], NULL, conc_thread, &args[i]), 0);
        }
        for (int i = 0; i < 12; i++) {
            pthread_join(th[i], NULL);
            assert_true(args[i].ok);
        }
    }
    s = stats_of(&d);
    assert_int_equal(stat_int(s, "fallbacks", NULL), 0);
    assert_int_equal(stat_int(s, "hsmBackups", NULL), 72);
    assert_int_equal(stat_int(s, "hsmRestores", NULL), 72);
    assert_int_equal(stat_int(s, "hsmCache", "backupHits"), 0);
    json_decref(s);
    s = stats_of(&main_d);
    assert_true(stat_int(s, "hsmCache", "backupHits") > 0);
    json_decref(s);
    assert_int_equal(daemon_stop(&d), 0);
}

/* Configuration mistakes are refused at start, a PIN never from a flag. */
static void test_config_errors(void **state)
{
    struct ts_daemon d = {0};
    (void)state;
    assert_int_equal(daemon_start(&d, "cfg-pin", NULL, "--hsm-module", env.module, "--hsm-token",
                                  "coffer", "--hsm-pin", CMD_PIN, NULL),
                     2);
    assert_true(ts_daemon_log_has(&d, "--hsm-pin-file"));
    assert_false(ts_daemon_log_has(&d, CMD_PIN));
    assert_int_equal(daemon_start(&d, "cfg-token", NULL, "--hsm-token", "coffer", NULL), 2);
    assert_true(ts_daemon_log_has(&d, "need --hsm-module"));
    assert_int_equal(daemon_start(&d, "cfg-module", NULL, "--hsm-module", env.module, NULL), 2);
    assert_true(ts_daemon_log_has(&d, "needs --hsm-token"));
    assert_int_equal(daemon_start(&d, "cfg-fb", NULL, "--hsm-module", env.module, "--hsm-token",
                                  "coffer", "--hsm-key", "kek-1", "--hsm-fallback", "maybe", NULL),
                     2);
    assert_int_equal(daemon_start(&d, "cfg-bytes", NULL, "--hsm-module", env.module, "--hsm-token",
                                  "coffer", "--hsm-cache-max-bytes", "12Q", NULL),
                     2);
    assert_int_equal(daemon_start(&d, "cfg-mech", NULL, "--hsm-module", env.module, "--hsm-token",
                                  "coffer", "--hsm-mechanism", "CKM_DES3_CBC", NULL),
                     2);
    assert_true(ts_daemon_log_has(&d, "--hsm-mechanism"));
    assert_int_equal(daemon_start(&d, "cfg-sess", NULL, "--hsm-module", env.module, "--hsm-token",
                                  "coffer", "--hsm-max-sessions", "0", NULL),
                     2);
}

/* HEALTH says which retriever serves new backups and how the HSM is doing. */
static void test_health(void **state)
{
    char *text = NULL;
    json_t *h = NULL;
    (void)state;
    /* the daemon connects to the HSM in the background right after it starts */
    for (int i = 0; i < 500; i++) {
        coffer_client *c = client(&main_d);
        json_decref(h);
        free(text);
        assert_int_equal(coffer_client_health(c, &text), 0);
        coffer_client_close(c);
        h = json_loads(text, 0, NULL);
        assert_non_null(h);
        if (strcmp(jstr(h, "hsm", "status"), "unknown") != 0)
            break;
        usleep(10000);
    }
    assert_string_equal(jstr(h, "keyRetriever", NULL), "pkcs11");
    assert_string_equal(jstr(h, "hsm", "token"), "coffer");
    assert_string_equal(jstr(h, "hsm", "keyLabel"), "kek-1");
    assert_string_equal(jstr(h, "hsm", "fallback"), "secret");
    assert_string_equal(jstr(h, "hsm", "status"), "ok");
    json_decref(h);
    free(text);
}

/* Last: no daemon ever logged a PIN, right or wrong. */
static void test_no_pin_in_logs(void **state)
{
    (void)state;
    for (int i = 0; i < nlogs; i++) {
        size_t n = 0;
        char *text = (char *)ts_read_file(logs[i], &n);
        if (text == NULL)
            continue;
        if (strstr(text, HT_PIN) != NULL || strstr(text, WRONG_PIN) != NULL ||
            strstr(text, CMD_PIN) != NULL)
            fail_msg("a PIN appears in %s", logs[i]);
        free(text);
    }
    assert_true(nlogs > 10);
}

/* ---- setup ---- */

static void create_kek(const char *token, const char *label)
{
    hsm_client *c = NULL;
    hsm_status st;
    hsm_client_config cfg = {.module = env.module,
                             .token = token,
                             .key_label = NULL,
                             .pin = {env.pin_file, NULL},
                             .timeout_ms = 10000,
                             .threads = 1};
    assert_int_equal(hsm_client_open(&c, &cfg, &st), 0);
    if (hsm_admin_kek_create(c, label, &st) != 0)
        fail_msg("create %s: %s", label, st.text);
    hsm_client_close(c);
}

static int setup(void **state)
{
    char path[1400];
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    ht_env_setup(&env);
    ht_token_init(&env, "coffer", tokdir, sizeof(tokdir));
    ht_token_init(&env, "coffer-gone", gonedir, sizeof(gonedir));
    create_kek("coffer", "kek-1");
    create_kek("coffer", "kek-2");
    create_kek("coffer-gone", "kek-g");
    snprintf(secrets, sizeof(secrets), "%s/secrets", env.dir);
    snprintf(path, sizeof(path), "%s/velero/coffer-key", secrets);
    char *mk[] = {"/bin/mkdir", "-p", path, NULL};
    assert_int_equal(ts_run(mk, NULL, NULL, NULL, NULL), 0);
    ts_fill(secret_key, sizeof(secret_key), 4242);
    snprintf(path, sizeof(path), "%s/velero/coffer-key/encryptionKey", secrets);
    assert_int_equal(ts_write_file(path, secret_key, sizeof(secret_key)), 0);
    snprintf(wrong_pin, sizeof(wrong_pin), "%s/wrong-pin", env.dir);
    assert_int_equal(ts_write_file(wrong_pin, WRONG_PIN "\n", strlen(WRONG_PIN) + 1), 0);
    snprintf(fake_pin, sizeof(fake_pin), "%s/fake-pin", env.dir);
    assert_int_equal(ts_write_file(fake_pin, FAKE_PIN "\n", strlen(FAKE_PIN) + 1), 0);
    snprintf(delay_file, sizeof(delay_file), "%s/fake-delay", env.dir);
    assert_int_equal(ts_write_file(delay_file, "0\n", 2), 0);
    if (daemon_start(&main_d, "main", NULL, "--hsm-module", env.module, "--hsm-token", "coffer",
                     "--hsm-key", "kek-1", "--hsm-pin-file", env.pin_file, NULL) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    int r = daemon_stop(&main_d);
    for (int i = 0; i < MAX_LOGS; i++) {
        if (running[i] > 0) {
            kill(running[i], SIGKILL);
            waitpid(running[i], NULL, 0);
        }
    }
    if (r != 0) {
        fprintf(stderr, "cofferd exited %d (see %s)\n", r, main_d.log);
        return -1;
    }
    if (getenv("COFFER_TEST_KEEP") == NULL)
        ht_env_teardown(&env);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_health),
        cmocka_unit_test(test_envelope_roundtrip),
        cmocka_unit_test(test_wrapped_key_is_data_key),
        cmocka_unit_test(test_fallback_module),
        cmocka_unit_test(test_fallback_token),
        cmocka_unit_test(test_fallback_key),
        cmocka_unit_test(test_fallback_wrong_pin),
        cmocka_unit_test(test_fallback_timeout),
        cmocka_unit_test(test_token_removed),
        cmocka_unit_test(test_second_daemon),
        cmocka_unit_test(test_restore_without_hsm),
        cmocka_unit_test(test_rotation),
        cmocka_unit_test(test_concurrent),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_no_pin_in_logs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
