/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cofferd against hostile and unlucky clients (issue 10: descriptor jobs, client I/O and
 * connections): the real daemon, libcoffer and raw protocol clients. Times are only ever
 * upper bounds with wide margins: the machine running the tests may be slow and shared.
 */
#include "coffer_client.h"
#include "coffer_error.h"
#include "proto_frame.h"
#include "test_daemon.h"
#include "test_support.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

static char *tmp;
static char secrets[512];
static struct ts_daemon main_d; /* --workers 1: one ring serves everyone */

static __attribute__((unused)) double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Start cofferd with the common flags and extra ones (NULL-terminated); 0 when it listens. */
static int daemon_start(struct ts_daemon *d, const char *name, ...)
{
    char *flags[] = {"--secrets-dir", secrets, "--workers", "1", NULL};
    va_list ap;
    int r;
    ts_daemon_paths(d, tmp, name);
    va_start(ap, name);
    r = ts_daemon_vstart(d, flags, NULL, 3000, ap);
    va_end(ap);
    if (r == TS_DAEMON_TIMEOUT)
        fail_msg("cofferd did not start (see %s)", d->log);
    return r;
}

static coffer_client *client(const struct ts_daemon *d)
{
    coffer_client *c = NULL;
    char msg[256];
    int r = coffer_client_connect(&c, d->sock, msg, sizeof(msg));
    if (r != 0)
        fail_msg("connect %s: %s (%s)", d->sock, coffer_client_strerror(r), msg);
    return c;
}

/* A descriptor job through libcoffer; res gets the outcome. */
static int fd_job(const struct ts_daemon *d, int op, int fsync_flag, int in, int out,
                  struct coffer_result *res)
{
    struct coffer_job job = {op, NULL, NULL, 0, NULL, 0, fsync_flag};
    coffer_client *c = client(d);
    int r = coffer_client_file(c, &job, in, out, res);
    coffer_client_close(c);
    return r;
}

/* A HEALTH round trip on a fresh connection: the daemon serves. */
static void serves(const struct ts_daemon *d)
{
    coffer_client *c = client(d);
    char *j = NULL;
    assert_int_equal(coffer_client_health(c, &j), 0);
    free(j);
    coffer_client_close(c);
}

/* ---- raw protocol ---- */

static __attribute__((unused)) int raw_connect(const struct ts_daemon *d, int hello)
{
    int fd = ts_daemon_connect(d->sock);
    uint8_t buf[64];
    size_t n = 0;
    proto_hello h = {1, 1, COFFER_MAX_FRAME};
    assert_true(fd >= 0);
    if (hello) {
        assert_int_equal(proto_hello_write(buf, sizeof(buf), &h, &n), 0);
        assert_int_equal(send(fd, buf, n, MSG_NOSIGNAL), (ssize_t)n);
    }
    return fd;
}

/* One frame (timeout in ms): its type, 0 at EOF or error, -1 on timeout. */
static int raw_frame(int fd, uint8_t *payload, size_t cap, size_t *len, int timeout_ms)
{
    uint8_t hdr[COFFER_FRAME_HEADER];
    proto_header h;
    size_t got = 0, want = sizeof(hdr);
    uint8_t *dst = hdr;
    for (int stage = 0; stage < 2; stage++) {
        while (got < want) {
            struct pollfd p = {fd, POLLIN, 0};
            ssize_t n;
            if (poll(&p, 1, timeout_ms) == 0)
                return -1;
            if ((n = recv(fd, dst + got, want - got, 0)) <= 0)
                return 0;
            got += (size_t)n;
        }
        if (stage == 0) {
            if (proto_header_parse(hdr, &h) != 0 || h.len > cap)
                return 0;
            dst = payload;
            want = h.len;
            got = 0;
        }
    }
    *len = h.len;
    return h.type;
}

/* The next frame that is not DATA or HELLO must be ERROR code; its message goes to msg. */
static __attribute__((unused)) void raw_expect_error(int fd, int code, char *msg, size_t msgcap, int timeout_ms)
{
    static uint8_t buf[COFFER_MAX_FRAME];
    size_t len = 0;
    proto_error e;
    int t;
    while ((t = raw_frame(fd, buf, sizeof(buf), &len, timeout_ms)) == PROTO_DATA ||
           t == PROTO_HELLO)
        ;
    if (t != PROTO_ERROR)
        fail_msg("expected an ERROR frame (%s), got %s", coffer_errname(code),
                 t < 0 ? "nothing in time" : t == 0 ? "EOF" : proto_type_name((uint8_t)t));
    assert_int_equal(proto_error_parse(buf, len, &e), 0);
    if (e.code != code)
        fail_msg("expected %s, got %s: %.*s", coffer_errname(code), coffer_errname(e.code),
                 (int)e.message_len, e.message);
    if (msg != NULL)
        snprintf(msg, msgcap, "%.*s", (int)e.message_len, e.message);
}

/* A frame with descriptors attached (SCM_RIGHTS), as libcoffer sends a descriptor job. */
static __attribute__((unused)) void raw_send_with_fds(int fd, const void *bytes, size_t n, const int *fds, int nfds)
{
    struct msghdr msg;
    struct iovec iov = {(void *)bytes, n};
    union {
        char buf[CMSG_SPACE(sizeof(int) * 4)];
        struct cmsghdr align;
    } cm;
    struct cmsghdr *h;
    memset(&msg, 0, sizeof(msg));
    memset(&cm, 0, sizeof(cm));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cm.buf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
    h = CMSG_FIRSTHDR(&msg);
    h->cmsg_level = SOL_SOCKET;
    h->cmsg_type = SCM_RIGHTS;
    h->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
    memcpy(CMSG_DATA(h), fds, sizeof(int) * (size_t)nfds);
    assert_int_equal(sendmsg(fd, &msg, MSG_NOSIGNAL), (ssize_t)n);
}

static __attribute__((unused)) size_t raw_job_bytes(uint8_t *buf, size_t cap, uint8_t op, uint8_t input)
{
    proto_job j;
    size_t n = 0;
    memset(&j, 0, sizeof(j));
    j.op = op;
    j.input = input;
    assert_int_equal(proto_job_write(buf, cap, &j, &n), 0);
    return n;
}

/* ---- 1. descriptor jobs accept only what they can handle ---- */

/* A job with this input and output is refused INVALID_ARG with a message holding each word. */
static void refused(int in, int out, const char *w1, const char *w2)
{
    struct coffer_result res = {0};
    int r = fd_job(&main_d, COFFER_CLIENT_ENCRYPT, 0, in, out, &res);
    if (r != COFFER_ERR_INVALID_ARG)
        fail_msg("expected INVALID_ARG, got %s: %s", coffer_errname(r), res.message);
    if (strstr(res.message, w1) == NULL || strstr(res.message, w2) == NULL)
        fail_msg("\"%s\" does not say \"%s\" and \"%s\"", res.message, w1, w2);
    coffer_result_clear(&res);
}

static void test_fd_kinds(void **state)
{
    char path[600];
    sigset_t mask;
    int out, in, d, ev, sig, tim, ino, ep, zero;
    (void)state;
    snprintf(path, sizeof(path), "%s/kinds.out", tmp);
    out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    snprintf(path, sizeof(path), "%s/kinds.in", tmp);
    assert_int_equal(ts_write_file(path, "abc", 3), 0);
    in = open(path, O_RDONLY | O_CLOEXEC);
    sigemptyset(&mask);
    sigaddset(&mask, SIGUSR2);
    ev = eventfd(0, EFD_CLOEXEC);
    sig = signalfd(-1, &mask, SFD_CLOEXEC);
    tim = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
    ino = inotify_init1(IN_CLOEXEC);
    ep = epoll_create1(EPOLL_CLOEXEC);
    d = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    zero = open("/dev/zero", O_RDWR | O_CLOEXEC);
    assert_true(out >= 0 && in >= 0 && ev >= 0 && sig >= 0 && tim >= 0 && ino >= 0 && ep >= 0 &&
                d >= 0 && zero >= 0);
    /* inputs: every kind but a regular file, pipe or socket, before anything is read */
    refused(ev, out, "eventfd", "regular file");
    refused(sig, out, "signalfd", "pipe");
    refused(tim, out, "timerfd", "socket");
    refused(ino, out, "inotify", "input");
    refused(ep, out, "eventpoll", "input");
    refused(d, out, "directory", "input");
    refused(zero, out, "character device 1:5", "input");
    /* outputs */
    refused(in, ev, "eventfd", "/dev/null");
    refused(in, zero, "character device 1:5", "output");
    refused(in, d, "directory", "output");
    /* the same file as input and output (two opens of one inode) */
    {
        int rw = open(path, O_RDWR | O_CLOEXEC), rw2 = open(path, O_RDWR | O_CLOEXEC);
        refused(rw, rw2, "same file", "inode");
        close(rw), close(rw2);
    }
    /* an input not open for reading */
    {
        int wo = open(path, O_WRONLY | O_CLOEXEC);
        refused(wo, out, "not open for reading", "input");
        close(wo);
    }
    close(out), close(in), close(d), close(ev), close(sig), close(tim), close(ino), close(ep);
    close(zero);
    serves(&main_d);
}

/* FSYNC on an output that cannot be fsynced (a pipe, /dev/null) is skipped, not a failure. */
static void test_fsync_unsyncable(void **state)
{
    char path[600], fifo[600];
    uint8_t data[5000], sink[65536];
    struct coffer_result res = {0};
    int in, p[2], null, fin, fw;
    (void)state;
    ts_fill(data, sizeof(data), 11);
    snprintf(path, sizeof(path), "%s/fsync.in", tmp);
    assert_int_equal(ts_write_file(path, data, sizeof(data)), 0);
    /* to a pipe (the output fits in its buffer) */
    in = open(path, O_RDONLY | O_CLOEXEC);
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    assert_int_equal(fd_job(&main_d, COFFER_CLIENT_ENCRYPT, 1, in, p[1], &res), 0);
    assert_int_equal(res.bytes_in, sizeof(data));
    close(p[1]);
    {
        size_t got = 0;
        ssize_t n;
        while ((n = read(p[0], sink + got, sizeof(sink) - got)) > 0)
            got += (size_t)n;
        assert_int_equal(got, res.bytes_out);
    }
    close(p[0]);
    close(in);
    coffer_result_clear(&res);
    /* to /dev/null */
    in = open(path, O_RDONLY | O_CLOEXEC);
    null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    assert_int_equal(fd_job(&main_d, COFFER_CLIENT_ENCRYPT, 1, in, null, &res), 0);
    assert_true(res.bytes_out > sizeof(data));
    close(in), close(null);
    coffer_result_clear(&res);
    /* from a FIFO (its writer wrote everything and closed) to /dev/null */
    snprintf(fifo, sizeof(fifo), "%s/fsync.fifo", tmp);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    fin = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    fw = open(fifo, O_WRONLY | O_CLOEXEC);
    assert_true(fin >= 0 && fw >= 0);
    assert_int_equal(write(fw, data, sizeof(data)), (ssize_t)sizeof(data));
    close(fw);
    assert_int_equal(fcntl(fin, F_SETFL, 0), 0); /* the daemon shares this file: blocking */
    null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    assert_int_equal(fd_job(&main_d, COFFER_CLIENT_ENCRYPT, 1, fin, null, &res), 0);
    assert_int_equal(res.bytes_in, sizeof(data));
    close(fin), close(null);
    unlink(fifo);
    coffer_result_clear(&res);
}

static int setup(void **state)
{
    uint8_t key[32];
    char path[1024];
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    tmp = ts_tmpdir();
    snprintf(secrets, sizeof(secrets), "%s/secrets", tmp);
    snprintf(path, sizeof(path), "%s/velero/coffer-key", secrets);
    mkdir(secrets, 0700);
    snprintf(path, sizeof(path), "%s/velero", secrets);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/velero/coffer-key", secrets);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/velero/coffer-key/encryptionKey", secrets);
    ts_fill(key, sizeof(key), 4321);
    if (ts_write_file(path, key, sizeof(key)) != 0)
        return -1;
    return daemon_start(&main_d, "main", "--io-timeout", "60", NULL) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    int r;
    (void)state;
    if ((r = ts_daemon_stop(&main_d)) != 0) {
        fprintf(stderr, "cofferd exited %d\n", r);
        return -1;
    }
    if (getenv("COFFER_TEST_KEEP") == NULL)
        ts_rmtree(tmp);
    free(tmp);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fd_kinds),
        cmocka_unit_test(test_fsync_unsyncable),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
