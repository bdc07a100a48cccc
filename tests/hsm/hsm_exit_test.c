/* SPDX-License-Identifier: Apache-2.0 */
/* cofferd exits while an HSM thread is stuck inside a PKCS#11 call: it must not finalize the
 * module or OpenSSL under that thread (issue 9, item 5). */
#include "test_daemon.h"
#include "test_support.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char dir[PATH_MAX];

static int start(struct ts_daemon *d, char *const flags[], char *const envs[], ...)
{
    va_list ap;
    int r;
    va_start(ap, envs);
    r = ts_daemon_vstart(d, flags, envs, 2000, ap);
    va_end(ap);
    return r;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * The token hangs in C_Encrypt (fake_p11_ctl, 30 s) from the start: the start-up probe's
 * negotiation is stuck in it. SIGTERM: cofferd stops within its bounds (the HSM timeout for the
 * client's close), says it leaves the stuck call behind, and exits 0 without running the
 * finalizers (p11-kit's and OpenSSL's) under it.
 */
static void test_exit_with_stuck_call(void **state)
{
    static char pin_env[] = "COFFER_HSM_PIN=1234";
    static char delay_env[PATH_MAX + 64];
    char *envs[] = {pin_env, delay_env, NULL};
    char delay_file[PATH_MAX + 16], secrets[PATH_MAX + 16];
    char *flags[] = {"--secrets-dir", secrets, "--workers", "1", NULL};
    struct ts_daemon d = {0};
    double t0;
    int r;

    snprintf(delay_file, sizeof(delay_file), "%s/delay", dir);
    snprintf(secrets, sizeof(secrets), "%s/secrets", dir);
    assert_int_equal(mkdir(secrets, 0700), 0);
    snprintf(delay_env, sizeof(delay_env), "COFFER_FAKE_P11_DELAY_FILE=%s", delay_file);
    assert_int_equal(ts_write_file(delay_file, "30000\n", 6), 0);
    ts_daemon_paths(&d, dir, "stuck");
    r = start(&d, flags, envs, "--hsm-module", COFFER_FAKE_P11_CTL, "--hsm-token",
                            "slow", "--hsm-key", "slow-kek", "--hsm-timeout", "500",
                            "--hsm-fallback", "none", NULL);
    assert_int_equal(r, 0);
    /* the probe is inside C_Encrypt once its call timed out */
    for (int i = 0; i < 300 && !ts_daemon_log_has(&d, "HSM_TIMEOUT"); i++)
        usleep(20000);
    assert_true(ts_daemon_log_has(&d, "HSM_TIMEOUT"));
    t0 = now_s();
    assert_int_equal(ts_daemon_stop(&d), 0);
    assert_true(now_s() - t0 < 25.0); /* not the 30 s of the stuck call */
    assert_true(ts_daemon_log_has(&d, "event=exit_without_teardown"));
    assert_false(ts_daemon_log_has(&d, "hsm_calls=0"));
    assert_true(ts_daemon_log_has(&d, "event=stopped"));
}

static int group_setup(void **state)
{
    char *t = ts_tmpdir();
    snprintf(dir, sizeof(dir), "%s", t);
    free(t);
    return 0;
}

static int group_teardown(void **state)
{
    ts_rmtree(dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_exit_with_stuck_call)};
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
