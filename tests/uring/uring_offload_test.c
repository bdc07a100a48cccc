/* SPDX-License-Identifier: Apache-2.0 */
/* cofferd's worker start and submission path under failure: a worker that cannot start leaks
 * nothing, and a full SQ or CQ never makes a ring thread spin or lose work. */
#include "coffer_client.h"
#include "test_daemon.h"
#include "test_support.h"

#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

static char *tmp;
static char secrets[512];

static int start(struct ts_daemon *d, const char *name, char *const envs[], ...)
{
    char *flags[] = {"--secrets-dir", secrets, NULL};
    va_list ap;
    int r;
    ts_daemon_paths(d, tmp, name);
    va_start(ap, envs);
    r = ts_daemon_vstart(d, flags, envs, 3000, ap);
    va_end(ap);
    return r;
}

/*
 * Worker 1 of 2 fails to start at each step: cofferd exits 1 at once. Under ASan (CI) its
 * LeakSanitizer makes any leaked slot table an abort (status 134), so exit 1 also says that the
 * failed worker freed what it had (before the fix its slots and eventfd were never freed).
 */
static void test_worker_start_failure(void **state)
{
    static const char *const steps[] = {"eventfd", "thread", "ring"};
    (void)state;
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        static char env[64];
        char *envs[] = {env, NULL};
        char name[32];
        struct ts_daemon d = {0};
        int r;
        snprintf(env, sizeof(env), "COFFER_TEST_WORKER_FAIL=1:%s", steps[i]);
        snprintf(name, sizeof(name), "fail-%s", steps[i]);
        r = start(&d, name, envs, "--workers", "2", NULL);
        if (r == 0) /* it listened before the workers started: it exits on its own */
            r = ts_daemon_stop(&d);
        assert_int_equal(r, 1);
        if (strcmp(steps[i], "ring") == 0)
            assert_true(ts_daemon_log_has(&d, "event=ring_setup_failed worker=1"));
        assert_true(ts_daemon_log_has(&d, "event=stopped exit=1"));
    }
}

struct job_arg {
    const struct ts_daemon *d;
    int index;
    int ok;
};

/* One encrypt and decrypt of 2 MiB through descriptor jobs (several reads and writes in flight). */
static void *job_thread(void *p)
{
    struct job_arg *a = p;
    char in[1100], enc[1100], out[1100];
    size_t n = 2u << 20, back_len = 0;
    uint8_t *data = malloc(n), *back = NULL;
    coffer_client *c = NULL;
    char msg[256];
    int fi = -1, fe = -1, fo = -1;
    struct coffer_job job;
    struct coffer_result res;

    memset(&res, 0, sizeof(res));
    snprintf(in, sizeof(in), "%s/in-%d", tmp, a->index);
    snprintf(enc, sizeof(enc), "%s/enc-%d", tmp, a->index);
    snprintf(out, sizeof(out), "%s/out-%d", tmp, a->index);
    ts_fill(data, n, 77 + (uint64_t)a->index);
    if (ts_write_file(in, data, n) != 0 || coffer_client_connect(&c, a->d->sock, msg, sizeof(msg)))
        goto out;
    fi = open(in, O_RDONLY);
    fe = open(enc, O_RDWR | O_CREAT | O_TRUNC, 0600);
    memset(&job, 0, sizeof(job));
    job.op = COFFER_CLIENT_ENCRYPT;
    if (coffer_client_file(c, &job, fi, fe, &res) != 0 || res.err != 0)
        goto out;
    coffer_result_clear(&res);
    fo = open(out, O_RDWR | O_CREAT | O_TRUNC, 0600);
    lseek(fe, 0, SEEK_SET);
    job.op = COFFER_CLIENT_DECRYPT;
    if (coffer_client_file(c, &job, fe, fo, &res) != 0 || res.err != 0)
        goto out;
    back = (uint8_t *)ts_read_file(out, &back_len);
    a->ok = back != NULL && back_len == n && memcmp(back, data, n) == 0;
out:
    coffer_result_clear(&res);
    if (fi >= 0)
        close(fi);
    if (fe >= 0)
        close(fe);
    if (fo >= 0)
        close(fo);
    coffer_client_close(c);
    free(back);
    free(data);
    return NULL;
}

/*
 * Rings of 4 SQ entries (16 CQ entries) and the first submits of a full SQ answered -EBUSY:
 * eight descriptor jobs at once keep the SQ full and overflow the CQ. Every job completes
 * intact, the worker waited for completions (ring_sq_full) instead of spinning, and cofferd
 * stops normally.
 */
static void test_sq_full(void **state)
{
    static char e1[] = "COFFER_TEST_RING_ENTRIES=4", e2[] = "COFFER_TEST_WORKER_FAIL=0:submit";
    char *envs[] = {e1, e2, NULL};
    struct ts_daemon d = {0};
    pthread_t th[8];
    struct job_arg args[8];
    (void)state;

    assert_int_equal(start(&d, "sqfull", envs, "--workers", "1", "--io-timeout", "60", NULL), 0);
    for (int i = 0; i < 8; i++) {
        args[i] = (struct job_arg){&d, i, 0};
        assert_int_equal(pthread_create(&th[i], NULL, job_thread, &args[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        assert_true(args[i].ok);
    }
    assert_int_equal(ts_daemon_stop(&d), 0);
    assert_true(ts_daemon_log_has(&d, "event=ring_sq_full worker=0"));
    assert_false(ts_daemon_log_has(&d, "full=0 "));
}

static int setup(void **state)
{
    uint8_t key[32];
    char path[1024];
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    tmp = ts_tmpdir();
    snprintf(secrets, sizeof(secrets), "%s/secrets", tmp);
    mkdir(secrets, 0700);
    snprintf(path, sizeof(path), "%s/velero", secrets);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/velero/coffer-key", secrets);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/velero/coffer-key/encryptionKey", secrets);
    ts_fill(key, sizeof(key), 99);
    return ts_write_file(path, key, sizeof(key));
}

static int teardown(void **state)
{
    (void)state;
    if (getenv("COFFER_TEST_KEEP") == NULL)
        ts_rmtree(tmp);
    free(tmp);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_worker_start_failure),
        cmocka_unit_test(test_sq_full),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
