/* SPDX-License-Identifier: Apache-2.0 */
/* cofferd's health states with a real SoftHSM2 token: ok, degraded, unavailable, and recovery. */
#include "coffer_client.h"
#include "coffer_error.h"
#include "hsm_admin.h"
#include "hsm_client.h"
#include "hsm_test_util.h"
#include "test_daemon.h"
#include "test_http.h"
#include "test_support.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

#define MAX_D 8

static struct ht_env env;
static char tokdir[1200];    /* the token "health" (key kek-h), removed and put back */
static char secrets[1300];   /* velero/coffer-key */
static char nosecrets[1300]; /* an empty secrets directory */
static char wrong_pin[1300]; /* a file holding a wrong PIN */
static pid_t started[MAX_D]; /* daemons killed by teardown when a test failed */

static int daemon_start(struct ts_daemon *d, const char *name, const char *sdir, ...)
{
    char *flags[] = {"--secrets-dir", (char *)sdir, "--workers", "2", "--io-timeout", "30", NULL};
    va_list ap;
    int r;

    ts_daemon_paths(d, env.dir, name);
    unlink(d->log);
    va_start(ap, sdir);
    r = ts_daemon_vstart(d, flags, NULL, 2000, ap);
    va_end(ap);
    assert_true(r != -1);
    for (int i = 0; d->pid > 0 && i < MAX_D; i++) {
        if (started[i] == 0) {
            started[i] = d->pid;
            break;
        }
    }
    if (r == TS_DAEMON_TIMEOUT)
        fail_msg("cofferd did not start (see %s)", d->log);
    return r;
}

static void daemon_stop(struct ts_daemon *d)
{
    for (int i = 0; i < MAX_D; i++)
        if (started[i] == d->pid)
            started[i] = 0;
    assert_int_equal(ts_daemon_stop(d), 0);
}

/* `coffer health --socket [--live]`: its exit status; the state line of stderr goes to line. */
static int coffer_health_run(const struct ts_daemon *d, int live, char *line, size_t cap)
{
    char out[PATH_MAX + 16], err[PATH_MAX + 16];
    char *argv[] = {(char *)ts_bin("coffer"), "health", "--socket", (char *)d->sock,
                    live ? "--live" : NULL, NULL};
    size_t n = 0;
    char *text;
    int r;

    snprintf(out, sizeof(out), "%s.health.json", d->log);
    snprintf(err, sizeof(err), "%s.health.err", d->log);
    r = ts_run(argv, NULL, NULL, out, err);
    text = (char *)ts_read_file(err, &n);
    snprintf(line, cap, "%s", text != NULL ? text : "");
    free(text);
    return r;
}

static int coffer_health(const struct ts_daemon *d, char *line, size_t cap)
{
    return coffer_health_run(d, 0, line, cap);
}

/* HEALTH's status and reason once the HSM's status is no longer "unknown" (the first probe). */
static void health_of(const struct ts_daemon *d, char *status, char *reason, char *hsm_st)
{
    for (int i = 0; i < 1000; i++) {
        coffer_client *c = NULL;
        char msg[256], *text = NULL;
        json_t *h;
        const char *hs;
        assert_int_equal(coffer_client_connect(&c, d->sock, msg, sizeof(msg)), 0);
        assert_int_equal(coffer_client_health(c, &text), 0);
        coffer_client_close(c);
        h = json_loads(text, 0, NULL);
        assert_non_null(h);
        hs = json_string_value(json_object_get(json_object_get(h, "hsm"), "status"));
        strcpy(status, json_string_value(json_object_get(h, "status")));
        strcpy(reason, json_string_value(json_object_get(h, "reason")));
        strcpy(hsm_st, hs != NULL ? hs : "-");
        json_decref(h);
        /* one reply says one thing: never "ok" beside an HSM it shows unavailable */
        if (strcmp(hsm_st, "unavailable") == 0 && strcmp(status, "ok") == 0)
            fail_msg("HEALTH said ok with its HSM unavailable (%s)", d->log);
        free(text);
        if (strcmp(hsm_st, "unknown") != 0)
            return;
        usleep(10000);
    }
    fail_msg("the HSM of %s stayed 'unknown'", d->log);
}

static void expect_state(const struct ts_daemon *d, const char *status, const char *reason,
                         int exit_code)
{
    char st[64], rs[128], hs[64], line[1024], live_line[1024];
    health_of(d, st, rs, hs);
    assert_string_equal(st, status);
    assert_string_equal(rs, reason);
    assert_int_equal(coffer_health(d, line, sizeof(line)), exit_code);
    /* the liveness probe: it answered, so it is alive, whatever its state */
    assert_int_equal(coffer_health_run(d, 1, live_line, sizeof(live_line)), 0);
    if (exit_code != 0) {
        assert_non_null(strstr(line, status));
        assert_non_null(strstr(line, reason));
    }
}

/* ---- tests ---- */

/* The HSM works: ok, exit 0. */
static void test_ok(void **state)
{
    struct ts_daemon d = {0};
    (void)state;
    assert_int_equal(daemon_start(&d, "ok", secrets, "--hsm-module", env.module, "--hsm-token",
                                  "health", "--hsm-key", "kek-h", "--hsm-pin-file", env.pin_file,
                                  NULL),
                     0);
    expect_state(&d, "ok", "", 0);
    daemon_stop(&d);
}

/* The HSM refuses the login: the Secret covers new backups (degraded, exit 1) unless the
 * fallback is off or there is no Secret (unavailable, exit 2). */
static void test_login_refused(void **state)
{
    struct ts_daemon a = {0}, b = {0}, c = {0}, r = {0};
    (void)state;
    assert_int_equal(daemon_start(&a, "deg", secrets, "--hsm-module", env.module, "--hsm-token",
                                  "health", "--hsm-key", "kek-h", "--hsm-pin-file", wrong_pin,
                                  NULL),
                     0);
    expect_state(&a, "degraded", "hsm_unavailable_fallback_secret", 1);
    daemon_stop(&a);
    assert_int_equal(daemon_start(&b, "none", secrets, "--hsm-module", env.module, "--hsm-token",
                                  "health", "--hsm-key", "kek-h", "--hsm-pin-file", wrong_pin,
                                  "--hsm-fallback", "none", NULL),
                     0);
    expect_state(&b, "unavailable", "hsm_unavailable_fallback_none", 2);
    daemon_stop(&b);
    /* no Secret at all: with fallback none cofferd starts, and cannot serve a backup */
    assert_int_equal(daemon_start(&c, "nosecret", nosecrets, "--hsm-module", env.module,
                                  "--hsm-token", "health", "--hsm-key", "kek-h", "--hsm-pin-file",
                                  wrong_pin, "--hsm-fallback", "none", NULL),
                     0);
    expect_state(&c, "unavailable", "hsm_unavailable_fallback_none", 2);
    daemon_stop(&c);
    /* an HSM for restores only: new backups are fine, HSM restores are not */
    assert_int_equal(daemon_start(&r, "restores", secrets, "--hsm-module", env.module,
                                  "--hsm-token", "health", "--hsm-pin-file", wrong_pin, NULL),
                     0);
    expect_state(&r, "degraded", "hsm_unavailable_restores", 1);
    daemon_stop(&r);
}

/* A restore finds the token gone: degraded (in HEALTH and /metrics); it comes back: ok again,
 * without any job (the idle re-probe). */
static void test_restore_finds_hsm_gone(void **state)
{
    struct ts_daemon d = {0};
    char saved[1400], msock[1400], st[64], rs[128], hs[64];
    uint8_t pt[20000];
    struct ts_membuf ct = {0}, out = {0};
    struct coffer_result res = {0};
    struct coffer_job enc = {COFFER_CLIENT_ENCRYPT, NULL, NULL, 0, NULL, 0, 0};
    struct coffer_job dec = {COFFER_CLIENT_DECRYPT, NULL, NULL, 0, NULL, 0, 0};
    struct ts_membuf src;
    coffer_client *c = NULL;
    char msg[256], *text;
    long status = 0;
    int r = 0;
    (void)state;

    snprintf(msock, sizeof(msock), "%s/health-metrics.sock", env.dir);
    /* the data-key cache off: the restore asks the token (a cached key would need no token) */
    assert_int_equal(daemon_start(&d, "gone", secrets, "--hsm-module", env.module, "--hsm-token",
                                  "health", "--hsm-key", "kek-h", "--hsm-pin-file", env.pin_file,
                                  "--metrics-listen", msock, "--hsm-cache-max-age", "0", NULL),
                     0);
    expect_state(&d, "ok", "", 0);
    ts_fill(pt, sizeof(pt), 5);
    src = (struct ts_membuf){pt, sizeof(pt), 0, sizeof(pt)};
    assert_int_equal(coffer_client_connect(&c, d.sock, msg, sizeof(msg)), 0);
    assert_int_equal(
        coffer_client_stream(c, &enc, ts_membuf_read, &src, ts_membuf_write, &ct, &res), 0);
    coffer_client_close(c);
    assert_non_null(strstr(res.metadata, "\"pkcs11\""));
    coffer_result_clear(&res);

    snprintf(saved, sizeof(saved), "%s/saved-health-token", env.dir);
    char *cp_out[] = {"/bin/cp", "-a", tokdir, saved, NULL};
    assert_int_equal(ts_run(cp_out, NULL, NULL, NULL, NULL), 0);
    ts_rmtree(tokdir);
    /* the restore needs the token: it fails, and HEALTH follows (a probe confirms) */
    src = (struct ts_membuf){ct.p, ct.len, 0, ct.len};
    assert_int_equal(coffer_client_connect(&c, d.sock, msg, sizeof(msg)), 0);
    r = coffer_client_stream(c, &dec, ts_membuf_read, &src, ts_membuf_write, &out, &res);
    coffer_client_close(c);
    if (r != COFFER_ERR_HSM_UNAVAILABLE)
        fail_msg("expected HSM_UNAVAILABLE, got %s: %s", coffer_errname(r), res.message);
    coffer_result_clear(&res);
    for (int i = 0; i < 3000; i++) {
        health_of(&d, st, rs, hs);
        if (strcmp(st, "ok") != 0)
            break;
        usleep(10000);
    }
    assert_string_equal(st, "degraded");
    assert_string_equal(rs, "hsm_unavailable_fallback_secret");
    assert_string_equal(hs, "unavailable");
    expect_state(&d, "degraded", "hsm_unavailable_fallback_secret", 1);
    text = ts_http("GET", "http://localhost/metrics", msock, &status);
    assert_int_equal(status, 200);
    ts_promtool_check(text, env.dir, "degraded");
    assert_true(ts_metric(text, "coffer_health{state=\"degraded\"}") == 1);
    assert_true(ts_metric(text, "coffer_hsm_status{status=\"unavailable\"}") == 1);
    assert_true(ts_metric(text, "coffer_errors_total{code=\"HSM_UNAVAILABLE\"}") == 1);
    free(text);

    /* the token comes back: within a few idle re-probes (every 5 s) HEALTH says ok */
    char *cp_back[] = {"/bin/cp", "-a", saved, tokdir, NULL};
    assert_int_equal(ts_run(cp_back, NULL, NULL, NULL, NULL), 0);
    for (int i = 0; i < 600; i++) {
        health_of(&d, st, rs, hs);
        if (strcmp(st, "ok") == 0)
            break;
        usleep(100000);
    }
    assert_string_equal(st, "ok");
    assert_string_equal(hs, "ok");
    expect_state(&d, "ok", "", 0);
    text = ts_http("GET", "http://localhost/metrics", msock, &status);
    assert_true(ts_metric(text, "coffer_health{state=\"ok\"}") == 1);
    assert_true(ts_metric(text, "coffer_hsm_status{status=\"ok\"}") == 1);
    free(text);
    assert_true(ts_daemon_log_has(&d, "event=hsm_unavailable"));
    assert_true(ts_daemon_log_has(&d, "event=hsm_ready"));
    daemon_stop(&d);
    free(ct.p), free(out.p);
}

/* A stopping daemon is unavailable: `coffer health` exits 2 while a job keeps it alive. */
static void test_stopping(void **state)
{
    static const uint8_t hello[] = {1,   0,   0, 0, 0, 0, 0, 12, 'C', 'O',
                                    'F', 'R', 0, 1, 0, 1, 0, 2,  0,   0};
    static const uint8_t job[] = {2, 0, 0, 0, 0, 0, 0, 11, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    struct ts_daemon d = {0};
    char line[1024];
    uint8_t reply[20];
    int fd;
    (void)state;
    assert_int_equal(daemon_start(&d, "stop", secrets, "--shutdown-grace", "60", NULL), 0);
    expect_state(&d, "ok", "", 0);
    /* an encrypt job waits for its input: SIGTERM waits for it */
    fd = ts_daemon_connect(d.sock);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, hello, sizeof(hello)), (ssize_t)sizeof(hello));
    assert_int_equal(read(fd, reply, sizeof(reply)), (ssize_t)sizeof(reply));
    assert_int_equal(reply[0], 1);
    assert_int_equal(write(fd, job, sizeof(job)), (ssize_t)sizeof(job));
    kill(d.pid, SIGTERM);
    for (int i = 0; i < 500 && !ts_daemon_log_has(&d, "event=stopping"); i++)
        usleep(10000);
    assert_true(ts_daemon_log_has(&d, "event=stopping"));
    assert_int_equal(coffer_health_run(&d, 1, line, sizeof(line)), 2); /* not answering */
    assert_int_equal(coffer_health(&d, line, sizeof(line)), 2);
    /* a stopping cofferd takes no new connection (or refuses it with SHUTDOWN) */
    if (strstr(line, "connecting to cofferd") == NULL)
        fail_msg("coffer health said: %s", line);
    close(fd); /* the job fails, and cofferd exits */
    daemon_stop(&d);
}

/* ---- setup ---- */

static int setup(void **state)
{
    char path[1400];
    uint8_t key[32];
    hsm_client *c = NULL;
    hsm_status st;
    hsm_client_config cfg = {.module = NULL,
                             .token = "health",
                             .key_label = NULL,
                             .pin = {NULL, NULL},
                             .timeout_ms = 10000,
                             .threads = 1};
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    ts_http_init();
    ht_env_setup(&env);
    ht_token_init(&env, "health", tokdir, sizeof(tokdir));
    cfg.module = env.module;
    cfg.pin.file = env.pin_file;
    assert_int_equal(hsm_client_open(&c, &cfg, &st), 0);
    if (hsm_admin_kek_create(c, "kek-h", &st) != 0)
        fail_msg("create kek-h: %s", st.text);
    hsm_client_close(c);
    snprintf(secrets, sizeof(secrets), "%s/secrets", env.dir);
    snprintf(nosecrets, sizeof(nosecrets), "%s/nosecrets", env.dir);
    snprintf(path, sizeof(path), "%s/velero/coffer-key", secrets);
    char *mk[] = {"/bin/mkdir", "-p", path, nosecrets, NULL};
    assert_int_equal(ts_run(mk, NULL, NULL, NULL, NULL), 0);
    ts_fill(key, sizeof(key), 77);
    snprintf(path, sizeof(path), "%s/velero/coffer-key/encryptionKey", secrets);
    assert_int_equal(ts_write_file(path, key, sizeof(key)), 0);
    snprintf(wrong_pin, sizeof(wrong_pin), "%s/wrong-pin", env.dir);
    assert_int_equal(ts_write_file(wrong_pin, "not-the-pin-123\n", 16), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < MAX_D; i++) {
        if (started[i] > 0) {
            kill(started[i], SIGKILL);
            waitpid(started[i], NULL, 0);
        }
    }
    ts_http_cleanup();
    if (getenv("COFFER_TEST_KEEP") == NULL)
        ht_env_teardown(&env);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ok),
        cmocka_unit_test(test_login_refused),
        cmocka_unit_test(test_restore_finds_hsm_gone),
        cmocka_unit_test(test_stopping),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
