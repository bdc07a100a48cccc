/* SPDX-License-Identifier: Apache-2.0 */
/* A descriptor job whose lseek waits (a hung filesystem) stalls neither the ring nor others. */
#include "coffer_client.h"
#include "coffer_error.h"
#include "proto_frame.h"
#include "test_daemon.h"
#include "test_support.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define INPUT_LEN (1u << 20)

static char *tmp;
static char secrets[512], gate[600];

struct job_arg {
    const char *sock;
    int in, out, r;
    struct coffer_result res;
};

/* ts_daemon_vstart with the extra flags after envs (NULL-terminated). */
static int start_env(struct ts_daemon *d, char *const flags[], char *const envs[], ...)
{
    va_list ap;
    int r;
    va_start(ap, envs);
    r = ts_daemon_vstart(d, flags, envs, 3000, ap);
    va_end(ap);
    return r;
}

static void *job_thread(void *p)
{
    struct job_arg *a = p;
    struct coffer_job job = {COFFER_CLIENT_ENCRYPT, NULL, NULL, 0, NULL, 0, 0};
    coffer_client *c = NULL;
    char msg[256];
    a->r = coffer_client_connect(&c, a->sock, msg, sizeof(msg));
    if (a->r == 0)
        a->r = coffer_client_file(c, &job, a->in, a->out, &a->res);
    coffer_client_close(c);
    return NULL;
}

static int exists(const char *dir, const char *name)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

static void touch(const char *dir, const char *name)
{
    char path[700];
    int fd;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    close(fd);
}

/* HELLO and HEALTH on a raw connection: 1 when the HEALTH reply came within timeout_ms. */
static int health_within(const char *sock, int timeout_ms)
{
    uint8_t buf[COFFER_MAX_FRAME + COFFER_FRAME_HEADER];
    proto_hello h = {COFFER_PROTO_VERSION, COFFER_PROTO_VERSION, COFFER_MAX_FRAME};
    size_t n = 0, have = 0;
    int fd = ts_daemon_connect(sock), got = 0;

    assert_true(fd >= 0);
    assert_int_equal(proto_hello_write(buf, sizeof(buf), &h, &n), 0);
    proto_header_put(buf + n, PROTO_HEALTH, 0);
    n += COFFER_FRAME_HEADER;
    assert_int_equal(send(fd, buf, n, MSG_NOSIGNAL), (ssize_t)n);
    while (!got) {
        struct pollfd p = {fd, POLLIN, 0};
        proto_header fh;
        ssize_t k;
        size_t pos = 0;
        if (poll(&p, 1, timeout_ms) <= 0)
            break;
        if ((k = recv(fd, buf + have, sizeof(buf) - have, 0)) <= 0)
            break;
        have += (size_t)k;
        while (have - pos >= COFFER_FRAME_HEADER && proto_header_parse(buf + pos, &fh) == 0 &&
               have - pos >= COFFER_FRAME_HEADER + fh.len) {
            if (fh.type == PROTO_HEALTH)
                got = 1;
            pos += COFFER_FRAME_HEADER + fh.len;
        }
    }
    close(fd);
    return got;
}

/*
 * lseek takes the file's position lock, which another thread of the client may hold in a read on
 * a hung filesystem. The lseek that learns where a descriptor job's files stand is gated here
 * (lseek_gate.c) until the test releases it: while it waits, a HEALTH on another connection of
 * the same (single) worker is answered, and once released the job completes. When the lseek ran
 * on the ring thread, the HEALTH got no answer at all.
 */
static void test_slow_lseek_does_not_block_the_ring(void **state)
{
    struct ts_daemon d = {0};
    char *flags[] = {"--secrets-dir", secrets, "--workers", "1", NULL};
    char env_gate[700], env_preload[PATH_MAX + 16];
    char *envs[] = {env_gate, env_preload,
                    "ASAN_OPTIONS=verify_asan_link_order=0:detect_leaks=1:abort_on_error=1",
                    NULL};
    char in_path[700], out_path[700];
    static uint8_t data[INPUT_LEN];
    struct job_arg a;
    pthread_t th;
    int waited = 0, served, stopped;
    (void)state;

    snprintf(gate, sizeof(gate), "%s/gate", tmp);
    mkdir(gate, 0700);
    snprintf(env_gate, sizeof(env_gate), "COFFER_TEST_LSEEK_GATE=%s", gate);
    snprintf(env_preload, sizeof(env_preload), "LD_PRELOAD=%s", COFFER_LSEEK_GATE_LIB);
    snprintf(in_path, sizeof(in_path), "%s/slow-lseek-input", tmp);
    snprintf(out_path, sizeof(out_path), "%s/output", tmp);
    ts_fill(data, sizeof(data), 99);
    assert_int_equal(ts_write_file(in_path, data, sizeof(data)), 0);
    ts_daemon_paths(&d, tmp, "probe");
    memset(&a, 0, sizeof(a));
    assert_int_equal(start_env(&d, flags, envs, NULL), 0);
    a.sock = d.sock;
    a.in = open(in_path, O_RDONLY | O_CLOEXEC);
    a.out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(a.in >= 0 && a.out >= 0);
    assert_int_equal(pthread_create(&th, NULL, job_thread, &a), 0);
    while (!exists(gate, "blocked") && waited++ < 6000)
        usleep(10000);
    if (!exists(gate, "blocked")) { /* the job's lseek should be waiting now */
        touch(gate, "release");
        pthread_join(th, NULL);
        ts_daemon_stop(&d);
        fail_msg("the descriptor job's lseek never reached the gate (see %s)", d.log);
    }
    served = health_within(d.sock, 60000);
    touch(gate, "release");
    pthread_join(th, NULL);
    stopped = ts_daemon_stop(&d); /* first, so that a failure below leaves no daemon behind */
    close(a.in);
    close(a.out);
    assert_true(served);
    assert_int_equal(a.r, 0);
    assert_int_equal(a.res.bytes_in, INPUT_LEN);
    coffer_result_clear(&a.res);
    assert_int_equal(stopped, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slow_lseek_does_not_block_the_ring),
    };
    uint8_t key[32];
    char path[1024];
    signal(SIGPIPE, SIG_IGN);
    tmp = ts_tmpdir();
    snprintf(secrets, sizeof(secrets), "%s/secrets", tmp);
    mkdir(secrets, 0700);
    snprintf(path, sizeof(path), "%s/velero", secrets);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/velero/coffer-key", secrets);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/velero/coffer-key/encryptionKey", secrets);
    ts_fill(key, sizeof(key), 4321);
    if (ts_write_file(path, key, sizeof(key)) != 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
