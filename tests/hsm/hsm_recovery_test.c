/* SPDX-License-Identifier: Apache-2.0 */
/* docs/recovery.md, walked in order: back up through cofferd with a Secret and with a SoftHSM2
 * token, each with recovery recipients; restore straight from the token without cofferd; destroy
 * the Secret, the token and the daemons; restore both backups with an identity alone. */
#include "hsm_test_util.h"
#include "test_daemon.h"
#include "test_support.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#define AGE        "/usr/bin/age"
#define AGE_KEYGEN "/usr/bin/age-keygen"
#define SIZE       (3u * 1024 * 1024 + 17)

static struct ht_env env;
static char tokdir[1200];

static const char *p(const char *name)
{
    static char buf[8][2048];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof(buf[k]), "%s/%s", env.dir, name);
    return buf[k];
}

/* Run argv (NULL-terminated), stdout to out (NULL: /dev/null), stderr to <dir>/err. */
static int runv(const char *out, const char *const *argv)
{
    return ts_run((char *const *)argv, NULL, NULL, out, p("err"));
}

#define RUN(out, ...)    runv(out, (const char *const[]){__VA_ARGS__, NULL})
#define COFFER(out, ...) RUN(out, ts_bin("coffer"), __VA_ARGS__)

static int err_has(const char *needle)
{
    return ts_count_in_file(p("err"), needle) > 0;
}

static void same_as(const char *path, const uint8_t *pt)
{
    size_t len = 0;
    uint8_t *b = ts_read_file(path, &len);
    assert_non_null(b);
    assert_int_equal(len, SIZE);
    assert_memory_equal(b, pt, SIZE);
    free(b);
}

/* Start cofferd with flags (and no extra ones); 0 once it listens. */
static int start(struct ts_daemon *d, char *const *flags, ...)
{
    va_list ap;
    int r;
    va_start(ap, flags);
    r = ts_daemon_vstart(d, flags, NULL, 2000, ap);
    va_end(ap);
    return r;
}

/* The runbook names every command this test runs. */
static void runbook_has(const char *needle)
{
    if (ts_count_in_file(COFFER_SOURCE_DIR "/docs/recovery.md", needle) == 0)
        fail_msg("docs/recovery.md does not show '%s'", needle);
}

static void test_runbook(void **state)
{
    struct ts_daemon sd, hd;
    char conf[4096];
    uint8_t *pt;
    (void)state;

    /* The operator's setup, which the runbook assumes: a Secret, a token with a KEK. */
    assert_int_equal(mkdir(p("secrets"), 0700), 0);
    assert_int_equal(mkdir(p("secrets/velero"), 0700), 0);
    assert_int_equal(mkdir(p("secrets/velero/coffer-key"), 0700), 0);
    assert_int_equal(COFFER(NULL, "keygen", "--out", p("secrets/velero/coffer-key/encryptionKey")),
                     0);
    ht_token_init(&env, "coffer", tokdir, sizeof(tokdir));
    assert_int_equal(COFFER(NULL, "hsm", "init-kek", "--module", env.module, "--token", "coffer",
                            "--label", "kek-1", "--pin-file", env.pin_file),
                     0);
    pt = ts_write_file(p("backup.tar.gz"), "", 0) == 0 ? malloc(SIZE) : NULL;
    assert_non_null(pt);
    ts_fill(pt, SIZE, 1313);
    assert_int_equal(ts_write_file(p("backup.tar.gz"), pt, SIZE), 0);

    /* 1. Create the recovery keys: one with coffer, one with age-keygen. */
    runbook_has("coffer recovery keygen --out alice.key");
    runbook_has("coffer recovery recipient --in alice.key >  recovery-recipients.txt");
    runbook_has("age-keygen -o bob.key");
    runbook_has("age-keygen -y bob.key >> recovery-recipients.txt");
    assert_int_equal(COFFER(NULL, "recovery", "keygen", "--out", p("alice.key")), 0);
    assert_int_equal(
        COFFER(p("recovery-recipients.txt"), "recovery", "recipient", "--in", p("alice.key")), 0);
    assert_int_equal(RUN(NULL, AGE_KEYGEN, "-o", p("bob.key")), 0);
    assert_int_equal(RUN(p("bob.rcpt"), AGE_KEYGEN, "-y", p("bob.key")), 0);
    {
        size_t a = 0, b = 0;
        uint8_t *x = ts_read_file(p("recovery-recipients.txt"), &a),
                *y = ts_read_file(p("bob.rcpt"), &b);
        uint8_t *both = malloc(a + b);
        memcpy(both, x, a);
        memcpy(both + a, y, b);
        assert_int_equal(ts_write_file(p("recovery-recipients.txt"), both, a + b), 0);
        free(x);
        free(y);
        free(both);
    }

    /* 2. Give the recipients to cofferd: the Secret daemon through its config file, the HSM
     * daemon on its command line. */
    runbook_has("recovery-recipient = /etc/coffer/recovery-recipients.txt");
    snprintf(conf, sizeof(conf), "secrets-dir = %s\nrecovery-recipient = %s\n", p("secrets"),
             p("recovery-recipients.txt"));
    assert_int_equal(ts_write_file(p("cofferd.conf"), conf, strlen(conf)), 0);
    ts_daemon_paths(&sd, env.dir, "secretd");
    {
        char *flags[] = {"--config", (char *)p("cofferd.conf"), "--workers", "1", NULL};
        assert_int_equal(start(&sd, flags, NULL), 0);
    }
    ts_daemon_paths(&hd, env.dir, "hsmd");
    {
        char *flags[] = {"--secrets-dir",
                         (char *)p("secrets"),
                         "--workers",
                         "1",
                         "--hsm-module",
                         env.module,
                         "--hsm-token",
                         "coffer",
                         "--hsm-key",
                         "kek-1",
                         "--hsm-pin-file",
                         env.pin_file,
                         "--hsm-fallback",
                         "none",
                         "--recovery-recipient",
                         (char *)p("recovery-recipients.txt"),
                         NULL};
        assert_int_equal(start(&hd, flags, NULL), 0);
    }
    assert_true(ts_daemon_log_has(&sd, "event=recovery_recipients count=2"));
    assert_int_equal(COFFER(NULL, "encrypt", "--socket", sd.sock, "--in", p("backup.tar.gz"),
                            "--out", p("secret.tar.gz.coffer")),
                     0);
    assert_int_equal(COFFER(NULL, "encrypt", "--socket", hd.sock, "--in", p("backup.tar.gz"),
                            "--out", p("hsm.tar.gz.coffer")),
                     0);
    /* second backups: the entries of a key already used come from cofferd's cache */
    assert_int_equal(COFFER(NULL, "encrypt", "--socket", sd.sock, "--in", p("backup.tar.gz"),
                            "--out", p("secret2.tar.gz.coffer")),
                     0);
    assert_int_equal(COFFER(NULL, "encrypt", "--socket", hd.sock, "--in", p("backup.tar.gz"),
                            "--out", p("hsm2.tar.gz.coffer")),
                     0);
    /* check a new backup: both recipients, and each backup names its own retriever */
    runbook_has("coffer inspect --recipients --in backup.tar.gz.coffer");
    assert_int_equal(COFFER(p("list"), "inspect", "--recipients", "--in", p("hsm.tar.gz.coffer")),
                     0);
    assert_int_equal(ts_count_in_file(p("list"), "age1"), 2);
    assert_int_equal(COFFER(p("hdr.json"), "inspect", "--in", p("hsm.tar.gz.coffer")), 0);
    assert_true(ts_count_in_file(p("hdr.json"), "\"pkcs11\"") == 1);
    assert_int_equal(COFFER(p("hdr.json"), "inspect", "--in", p("secret.tar.gz.coffer")), 0);
    assert_true(ts_count_in_file(p("hdr.json"), "\"secret\"") == 1);

    /* 4. Restore from the HSM without cofferd (while the token still exists); without the flags
     * the error names the token, the key label and the recovery identity. */
    runbook_has("coffer decrypt --offline --hsm-module");
    assert_int_equal(ts_daemon_stop(&hd), 0);
    assert_int_equal(COFFER(NULL, "decrypt", "--offline", "--in", p("hsm.tar.gz.coffer"), "--out",
                            p("out.nokey")),
                     1);
    assert_true(err_has("key 'kek-1' on HSM token 'coffer'"));
    assert_true(err_has("--recovery-identity"));
    assert_int_equal(COFFER(NULL, "decrypt", "--offline", "--hsm-module", env.module, "--hsm-token",
                            "coffer", "--hsm-pin-file", env.pin_file, "--in",
                            p("hsm.tar.gz.coffer"), "--out", p("out.hsm-offline")),
                     0);
    same_as(p("out.hsm-offline"), pt);
    /* the wrong token: said clearly */
    assert_int_equal(COFFER(NULL, "decrypt", "--offline", "--hsm-module", env.module, "--hsm-token",
                            "other", "--hsm-pin-file", env.pin_file, "--in", p("hsm.tar.gz.coffer"),
                            "--out", p("out.x")),
                     1);
    assert_true(err_has("--hsm-token names 'other'"));

    /* Disaster: the Secret, the token and the daemons are gone. */
    assert_int_equal(ts_daemon_stop(&sd), 0);
    ts_rmtree(p("secrets"));
    ts_rmtree(tokdir);
    ts_rmtree(env.tokens);
    assert_int_equal(COFFER(NULL, "decrypt", "--offline", "--hsm-module", env.module, "--hsm-token",
                            "coffer", "--hsm-pin-file", env.pin_file, "--in",
                            p("hsm.tar.gz.coffer"), "--out", p("out.gone")),
                     1);
    assert_true(err_has("kek-1"));

    /* A new cofferd cannot find the Secret, and says a recovery identity would open it. */
    {
        struct ts_daemon nd;
        char *flags[] = {
            "--secrets-dir", (char *)p("empty"), "--encryption", "off", "--workers", "1", NULL};
        assert_int_equal(mkdir(p("empty"), 0700), 0);
        ts_daemon_paths(&nd, env.dir, "newd");
        assert_int_equal(start(&nd, flags, NULL), 0);
        assert_int_equal(COFFER(NULL, "decrypt", "--socket", nd.sock, "--in",
                                p("secret.tar.gz.coffer"), "--out", p("out.newd")),
                         1);
        assert_true(err_has("--recovery-identity"));
        assert_int_equal(ts_daemon_stop(&nd), 0);
    }

    /* 3. Restore with an identity alone: either identity opens every backup. */
    runbook_has("coffer decrypt --offline --recovery-identity alice.key --in backup.tar.gz.coffer "
                "--out backup.tar.gz");
    const char *ids[] = {"alice.key", "bob.key"};
    const char *backups[] = {"secret.tar.gz.coffer", "hsm.tar.gz.coffer", "secret2.tar.gz.coffer",
                             "hsm2.tar.gz.coffer"};
    for (int i = 0; i < 2; i++)
        for (int b = 0; b < 4; b++) {
            char out[64];
            snprintf(out, sizeof(out), "restored.%d.%d", i, b);
            assert_int_equal(COFFER(NULL, "decrypt", "--offline", "--recovery-identity", p(ids[i]),
                                    "--in", p(backups[b]), "--out", p(out)),
                             0);
            same_as(p(out), pt);
        }

    /* 3, recreating the Secret with jq, base64 and age only. */
    runbook_has("jq -r '.recovery[0].age' | base64 -d > entry.age");
    runbook_has("age -d -i alice.key -o encryptionKey entry.age");
    runbook_has("coffer decrypt --offline --key-file encryptionKey");
    if (access("/usr/bin/jq", X_OK) == 0) {
        char cmd[8192];
        snprintf(cmd, sizeof(cmd), "%s inspect --in %s | jq -r '.recovery[0].age' | base64 -d > %s",
                 ts_bin("coffer"), p("secret.tar.gz.coffer"), p("entry.age"));
        assert_int_equal(RUN(NULL, "/bin/sh", "-c", cmd), 0);
    } else {
        /* jq is not among coffer's dependencies: the same pipeline with python3's json */
        char cmd[8192];
        snprintf(cmd, sizeof(cmd),
                 "%s inspect --in %s | python3 -c 'import json,sys; "
                 "print(json.load(sys.stdin)[\"recovery\"][0][\"age\"])' | base64 -d > %s",
                 ts_bin("coffer"), p("secret.tar.gz.coffer"), p("entry.age"));
        assert_int_equal(RUN(NULL, "/bin/sh", "-c", cmd), 0);
    }
    assert_int_equal(
        RUN(NULL, AGE, "-d", "-i", p("alice.key"), "-o", p("encryptionKey"), p("entry.age")), 0);
    assert_int_equal(COFFER(NULL, "decrypt", "--offline", "--key-file", p("encryptionKey"), "--in",
                            p("secret.tar.gz.coffer"), "--out", p("restored.key")),
                     0);
    same_as(p("restored.key"), pt);
    free(pt);
}

static int setup(void **state)
{
    (void)state;
    if (access(AGE, X_OK) != 0 || access(AGE_KEYGEN, X_OK) != 0)
        ts_skip("age and age-keygen are not installed (apt-get install age)");
    ht_env_setup(&env);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ht_env_teardown(&env);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_runbook),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
