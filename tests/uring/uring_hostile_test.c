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
#include <sys/prctl.h>
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

static double now_s(void)
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

static int raw_connect(const struct ts_daemon *d, int hello)
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
static void raw_expect_error(int fd, int code, char *msg, size_t msgcap, int timeout_ms)
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
static void raw_send_with_fds(int fd, const void *bytes, size_t n, const int *fds, int nfds)
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

static size_t raw_job_bytes(uint8_t *buf, size_t cap, uint8_t op, uint8_t input)
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


/* ---- 6. shutdown and pipelining ---- */

/* A streamed job that waits for input that never comes (it keeps the shutdown grace running). */
static int stalled_stream_job(const struct ts_daemon *d)
{
    uint8_t buf[256], frame[COFFER_FRAME_HEADER + 100];
    int fd = raw_connect(d, 1);
    size_t n = raw_job_bytes(buf, sizeof(buf), PROTO_OP_ENCRYPT, PROTO_INPUT_STREAM);
    assert_int_equal(send(fd, buf, n, MSG_NOSIGNAL), (ssize_t)n);
    proto_header_put(frame, PROTO_DATA, 100);
    memset(frame + COFFER_FRAME_HEADER, 7, 100);
    assert_int_equal(send(fd, frame, sizeof(frame), MSG_NOSIGNAL), (ssize_t)sizeof(frame));
    return fd;
}

static int wait_log(const struct ts_daemon *d, const char *needle, double seconds)
{
    for (double end = now_s() + seconds; now_s() < end; usleep(20000))
        if (ts_daemon_log_has(d, needle))
            return 1;
    return ts_daemon_log_has(d, needle);
}

/* During the shutdown grace a new connection gets ERROR SHUTDOWN at once, not a hang. */
static void test_shutdown_refuses_new(void **state)
{
    struct ts_daemon d = {0};
    char msg[2048];
    int busy, fd, status = 0;
    double t0;
    (void)state;
    assert_int_equal(daemon_start(&d, "grace-new", "--shutdown-grace", "60", NULL), 0);
    busy = stalled_stream_job(&d);
    serves(&d); /* the job is in */
    kill(d.pid, SIGTERM);
    assert_true(wait_log(&d, "event=stopping", 30));
    /* the grace runs for 60 s: an answer well before then is not the daemon exiting */
    t0 = now_s();
    fd = raw_connect(&d, 0); /* no HELLO: the refusal comes first, a send could meet EPIPE */
    raw_expect_error(fd, COFFER_ERR_SHUTDOWN, msg, sizeof(msg), 30000);
    assert_true(now_s() - t0 < 30.0);
    close(fd);
    /* the running job's client goes: the daemon ends without waiting out the grace */
    close(busy);
    waitpid(d.pid, &status, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    d.pid = 0;
}

/* Read frames until one of type want (DATA frames are counted); returns its payload length. */
static size_t expect_frame(int fd, int want, size_t *data_bytes)
{
    static uint8_t buf[COFFER_MAX_FRAME];
    size_t len = 0;
    int t;
    while ((t = raw_frame(fd, buf, sizeof(buf), &len, 30000)) == PROTO_DATA)
        if (data_bytes != NULL)
            *data_bytes += len;
    if (t == PROTO_ERROR) {
        proto_error e;
        assert_int_equal(proto_error_parse(buf, len, &e), 0);
        fail_msg("expected %s, got ERROR %s: %.*s", proto_type_name((uint8_t)want),
                 coffer_errname(e.code), (int)e.message_len, e.message);
    }
    if (t != want)
        fail_msg("expected %s, got %d", proto_type_name((uint8_t)want), t);
    return len;
}

/* Frames sent right behind END (or a descriptor JOB) wait for the job, then are served. */
static void test_pipelining(void **state)
{
    static uint8_t buf[8192];
    size_t n = 0, data = 0;
    int fd = raw_connect(&main_d, 1);
    (void)state;
    expect_frame(fd, PROTO_HELLO, NULL);
    /* JOB DATA END HEALTH JOB DATA END STATS in one write */
    for (int k = 0; k < 2; k++) {
        n += raw_job_bytes(buf + n, sizeof(buf) - n, PROTO_OP_ENCRYPT, PROTO_INPUT_STREAM);
        proto_header_put(buf + n, PROTO_DATA, 1000);
        memset(buf + n + COFFER_FRAME_HEADER, k, 1000);
        n += COFFER_FRAME_HEADER + 1000;
        proto_header_put(buf + n, PROTO_END, 0);
        n += COFFER_FRAME_HEADER;
        proto_header_put(buf + n, k == 0 ? PROTO_HEALTH : PROTO_STATS, 0);
        n += COFFER_FRAME_HEADER;
    }
    assert_int_equal(send(fd, buf, n, MSG_NOSIGNAL), (ssize_t)n);
    expect_frame(fd, PROTO_RESULT, &data);
    assert_true(data > 1000);
    assert_true(expect_frame(fd, PROTO_HEALTH, NULL) > 0);
    data = 0;
    expect_frame(fd, PROTO_RESULT, &data);
    assert_true(data > 1000);
    assert_true(expect_frame(fd, PROTO_STATS, NULL) > 0);
    /* a descriptor job with a HEALTH right behind it, then a streamed job's END with the next
       (descriptor) job right behind it */
    {
        char path[600];
        int io[2];
        snprintf(path, sizeof(path), "%s/pipe.in", tmp);
        assert_int_equal(ts_write_file(path, "0123456789", 10), 0);
        io[0] = open(path, O_RDONLY | O_CLOEXEC);
        io[1] = open("/dev/null", O_WRONLY | O_CLOEXEC);
        n = raw_job_bytes(buf, sizeof(buf), PROTO_OP_ENCRYPT, PROTO_INPUT_FDS);
        raw_send_with_fds(fd, buf, n, io, 2);
        proto_header_put(buf, PROTO_HEALTH, 0);
        assert_int_equal(send(fd, buf, COFFER_FRAME_HEADER, MSG_NOSIGNAL), COFFER_FRAME_HEADER);
        expect_frame(fd, PROTO_RESULT, NULL);
        expect_frame(fd, PROTO_HEALTH, NULL);
        n = raw_job_bytes(buf, sizeof(buf), PROTO_OP_ENCRYPT, PROTO_INPUT_STREAM);
        proto_header_put(buf + n, PROTO_END, 0);
        n += COFFER_FRAME_HEADER;
        assert_int_equal(send(fd, buf, n, MSG_NOSIGNAL), (ssize_t)n);
        n = raw_job_bytes(buf, sizeof(buf), PROTO_OP_ENCRYPT, PROTO_INPUT_FDS);
        raw_send_with_fds(fd, buf, n, io, 2);
        expect_frame(fd, PROTO_RESULT, NULL);
        expect_frame(fd, PROTO_RESULT, NULL);
        close(io[0]), close(io[1]);
    }
    /* a DATA frame behind END is still refused at once */
    n = raw_job_bytes(buf, sizeof(buf), PROTO_OP_ENCRYPT, PROTO_INPUT_STREAM);
    proto_header_put(buf + n, PROTO_END, 0);
    n += COFFER_FRAME_HEADER;
    proto_header_put(buf + n, PROTO_DATA, 0);
    n += COFFER_FRAME_HEADER;
    assert_int_equal(send(fd, buf, n, MSG_NOSIGNAL), (ssize_t)n);
    raw_expect_error(fd, COFFER_ERR_PROTO_SEQUENCE, NULL, 0, 30000);
    close(fd);
}

/* ---- 4. exhaustion: descriptors, slow frames, per-uid connections ---- */

/* The daemon's open descriptors (/proc/PID/fd), or -1 when they cannot be counted. */
static int daemon_fds(const struct ts_daemon *d)
{
    char path[64];
    DIR *dir;
    struct dirent *e;
    int n = 0;
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)d->pid);
    if ((dir = opendir(path)) == NULL)
        return -1;
    while ((e = readdir(dir)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(dir);
    return n;
}

/* 1 when every copy of the pipe's write end is closed (its read end sees EOF) within secs. */
static int pipe_orphaned(int rd, double secs)
{
    struct pollfd p = {rd, POLLIN, 0};
    char b;
    return poll(&p, 1, (int)(secs * 1000)) == 1 && read(rd, &b, 1) == 0;
}

/*
 * Descriptors that come with anything but a descriptor JOB frame (HELLO, HEALTH, DATA, a
 * streamed JOB) are closed at once and the connection fails PROTO_FRAME.
 */
static void test_fds_with_other_frames(void **state)
{
    uint8_t buf[512];
    int base;
    (void)state;
    serves(&main_d);
    usleep(300000); /* the daemon closed that connection */
    base = daemon_fds(&main_d);
    for (int k = 0; k < 4; k++) {
        int fd = raw_connect(&main_d, k != 0), p[2], hold[1];
        size_t n = 0;
        char msg[2048];
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        hold[0] = p[1];
        if (k == 0) { /* HELLO */
            proto_hello h = {1, 1, COFFER_MAX_FRAME};
            assert_int_equal(proto_hello_write(buf, sizeof(buf), &h, &n), 0);
        } else if (k == 1) { /* HEALTH */
            proto_header_put(buf, PROTO_HEALTH, 0);
            n = COFFER_FRAME_HEADER;
        } else if (k == 2) { /* DATA of a streamed job */
            n = raw_job_bytes(buf, sizeof(buf), PROTO_OP_ENCRYPT, PROTO_INPUT_STREAM);
            assert_int_equal(send(fd, buf, n, MSG_NOSIGNAL), (ssize_t)n);
            usleep(100000); /* the job frame alone first */
            proto_header_put(buf, PROTO_DATA, 10);
            memset(buf + COFFER_FRAME_HEADER, 1, 10);
            n = COFFER_FRAME_HEADER + 10;
        } else { /* a streamed JOB */
            n = raw_job_bytes(buf, sizeof(buf), PROTO_OP_ENCRYPT, PROTO_INPUT_STREAM);
        }
        raw_send_with_fds(fd, buf, n, hold, 1);
        close(p[1]);
        /* the daemon closed its copy while the connection is still open */
        if (!pipe_orphaned(p[0], 20))
            fail_msg("case %d: the daemon kept the descriptor", k);
        raw_expect_error(fd, COFFER_ERR_PROTO_FRAME, msg, sizeof(msg), 30000);
        assert_non_null(strstr(msg, "descriptor"));
        close(fd);
        close(p[0]);
    }
    serves(&main_d);
    if (base >= 0) {
        int now = -1;
        for (int i = 0; i < 200 && (now = daemon_fds(&main_d)) > base; i++)
            usleep(50000);
        assert_true(now <= base); /* nothing the clients sent stayed open */
    }
}

/* HELLO on a fresh connection: 1 when the reply came within ms, 0 if not (fd kept in *out). */
static int hello_served(const struct ts_daemon *d, int ms, int *out)
{
    uint8_t buf[256];
    size_t len = 0;
    int fd = raw_connect(d, 1), t = raw_frame(fd, buf, sizeof(buf), &len, ms);
    *out = fd;
    return t == PROTO_HELLO;
}

/*
 * Out of descriptors (RLIMIT_NOFILE lowered with prlimit): the daemon stops accepting, logs it
 * once, retries on a timer and serves again when a descriptor frees up.
 */
static void test_emfile(void **state)
{
    struct ts_daemon d = {0};
    struct rlimit old, low;
    int conns[100], n = 0, stuck = -1, base;
    (void)state;
    /* started under a low limit (io_uring takes the limit when the accept is set up) */
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = 64;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    base = daemon_start(&d, "emfile", NULL);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    assert_int_equal(base, 0);
    serves(&d);
    /* connections until one is not served: the daemon is out of descriptors */
    while (n < 100) {
        int fd;
        if (!hello_served(&d, 3000, &fd)) {
            stuck = fd;
            break;
        }
        conns[n++] = fd;
    }
    assert_true(stuck >= 0 && n > 0);
    sleep(3); /* a few retries */
    assert_int_equal(ts_count_in_file(d.log, "event=accept_paused"), 1);
    assert_int_equal(ts_count_in_file(d.log, "event=accept_error"), 0);
    /* one descriptor frees up: the waiting connection is served */
    close(conns[--n]);
    {
        uint8_t buf[256];
        size_t len = 0;
        assert_int_equal(raw_frame(stuck, buf, sizeof(buf), &len, 30000), PROTO_HELLO);
    }
    assert_true(ts_daemon_log_has(&d, "event=accept_resumed"));
    close(stuck);
    while (n > 0)
        close(conns[--n]);
    serves(&d);
    assert_int_equal(ts_daemon_stop(&d), 0);
}

/* A client trickling a frame a byte at a time loses its connection after --frame-timeout. */
static void test_frame_timeout(void **state)
{
    struct ts_daemon d = {0};
    uint8_t buf[256];
    char msg[2048];
    int fd, answered = 0;
    size_t n;
    (void)state;
    assert_int_equal(daemon_start(&d, "frame", "--frame-timeout", "2", "--io-timeout", "600", NULL),
                     0);
    fd = raw_connect(&d, 1);
    n = raw_job_bytes(buf, sizeof(buf), PROTO_OP_ENCRYPT, PROTO_INPUT_STREAM);
    proto_header_put(buf + n, PROTO_DATA, 1000);
    assert_int_equal(send(fd, buf, n + COFFER_FRAME_HEADER, MSG_NOSIGNAL),
                     (ssize_t)(n + COFFER_FRAME_HEADER));
    /* one payload byte every half second: progress, but the frame never completes */
    for (int i = 0; i < 120 && !answered; i++) {
        struct pollfd p = {fd, POLLIN, 0};
        if (send(fd, "x", 1, MSG_NOSIGNAL) != 1)
            break;
        answered = poll(&p, 1, 500) == 1;
    }
    raw_expect_error(fd, COFFER_ERR_PROTO_FRAME, msg, sizeof(msg), 30000);
    assert_non_null(strstr(msg, "--frame-timeout"));
    close(fd);
    assert_true(ts_daemon_log_has(&d, "event=frame_timeout"));
    serves(&d);
    assert_int_equal(ts_daemon_stop(&d), 0);
}

/* --max-connections-per-uid: one uid's connections past the cap are refused BUSY. */
static void test_per_uid_cap(void **state)
{
    struct ts_daemon d = {0};
    char msg[2048];
    int a, b, c, ok = 0;
    (void)state;
    assert_int_equal(daemon_start(&d, "peruid", "--max-connections-per-uid", "2", NULL), 0);
    assert_true(hello_served(&d, 30000, &a));
    assert_true(hello_served(&d, 30000, &b));
    c = raw_connect(&d, 0); /* no HELLO: the refusal comes first, a send could meet EPIPE */
    raw_expect_error(c, COFFER_ERR_BUSY, msg, sizeof(msg), 30000);
    assert_non_null(strstr(msg, "--max-connections-per-uid"));
    close(c);
    close(a);
    /* once the daemon saw a go, the uid may connect again */
    for (int i = 0; i < 100 && !ok; i++) {
        ok = hello_served(&d, 30000, &c);
        close(c);
        if (!ok)
            usleep(100000);
    }
    assert_true(ok);
    close(b);
    assert_int_equal(ts_daemon_stop(&d), 0);
}

/* ---- 2. stalled client files ---- */

/* A FIFO at path: *rd is its read end (blocking), *wr a write end that never writes. */
static void fifo_open(const char *path, int *rd, int *wr)
{
    unlink(path);
    assert_int_equal(mkfifo(path, 0600), 0);
    *rd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    *wr = open(path, O_WRONLY | O_CLOEXEC);
    assert_true(*rd >= 0 && *wr >= 0);
    assert_int_equal(fcntl(*rd, F_SETFL, 0), 0);
}

/*
 * A descriptor job (encrypt) reading a FIFO nobody writes into <tmp>/NAME.out; returns its
 * connection once the daemon serves others meanwhile. rd, wr: the FIFO's ends; out: the file.
 */
static int stuck_fifo_job(const struct ts_daemon *d, const char *name, int *rd, int *wr, int *out)
{
    char fifo[600], path[600];
    uint8_t buf[256];
    int io[2], fd;
    size_t n;
    snprintf(fifo, sizeof(fifo), "%s/%s.fifo", tmp, name);
    snprintf(path, sizeof(path), "%s/%s.out", tmp, name);
    fifo_open(fifo, rd, wr);
    io[0] = *rd;
    io[1] = *out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    fd = raw_connect(d, 1);
    n = raw_job_bytes(buf, sizeof(buf), PROTO_OP_ENCRYPT, PROTO_INPUT_FDS);
    raw_send_with_fds(fd, buf, n, io, 2);
    serves(d); /* the job is in, and the ring serves others */
    return fd;
}

/*
 * A descriptor job on a FIFO nobody writes (input) or reads (output) ends after --io-timeout
 * with an ERROR naming the stall, the daemon serves others meanwhile, and the job's descriptors
 * are let go.
 */
static void test_io_timeout_fifo(void **state)
{
    struct ts_daemon d = {0};
    char fifo[600], path[600], msg[2048];
    uint8_t buf[256];
    int rd, wr, io[2], fd;
    size_t n;
    (void)state;
    assert_int_equal(daemon_start(&d, "stall", "--io-timeout", "2", NULL), 0);
    snprintf(fifo, sizeof(fifo), "%s/stall.fifo", tmp);
    snprintf(path, sizeof(path), "%s/stall.out", tmp);
    /* input */
    fd = stuck_fifo_job(&d, "stall", &rd, &wr, &io[1]);
    n = raw_job_bytes(buf, sizeof(buf), PROTO_OP_ENCRYPT, PROTO_INPUT_FDS);
    raw_expect_error(fd, COFFER_ERR_IO, msg, sizeof(msg), 60000);
    assert_non_null(strstr(msg, "reading the input"));
    assert_non_null(strstr(msg, "--io-timeout"));
    close(fd);
    close(rd);
    close(io[1]);
    /* the daemon let go of the FIFO's read end: writing finds no reader */
    fcntl(wr, F_SETFL, O_NONBLOCK);
    {
        int epipe = 0;
        for (int i = 0; i < 300 && !epipe; i++) {
            if (write(wr, "x", 1) < 0 && errno == EPIPE)
                epipe = 1;
            else
                usleep(100000);
        }
        assert_true(epipe);
    }
    close(wr);
    /* output: a FIFO nobody reads fills up (64 KiB) and the writes stall */
    {
        uint8_t *big = malloc(1u << 20);
        ts_fill(big, 1u << 20, 5);
        assert_int_equal(ts_write_file(path, big, 1u << 20), 0);
        free(big);
    }
    unlink(fifo);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    rd = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    wr = open(fifo, O_WRONLY | O_CLOEXEC);
    io[0] = open(path, O_RDONLY | O_CLOEXEC);
    io[1] = wr;
    fd = raw_connect(&d, 1);
    raw_send_with_fds(fd, buf, n, io, 2);
    raw_expect_error(fd, COFFER_ERR_IO, msg, sizeof(msg), 60000);
    assert_non_null(strstr(msg, "writing the output"));
    close(fd), close(rd), close(wr), close(io[0]);
    serves(&d);
    assert_int_equal(ts_daemon_stop(&d), 0);
}

/* SIGTERM ends cofferd within --shutdown-grace (plus a margin) while a job is stuck on a FIFO. */
static void test_sigterm_stuck_fifo(void **state)
{
    struct ts_daemon d = {0};
    int rd, wr, out, fd, status = 0;
    double t0;
    (void)state;
    assert_int_equal(
        daemon_start(&d, "stall-term", "--shutdown-grace", "2", "--io-timeout", "600", NULL), 0);
    fd = stuck_fifo_job(&d, "term", &rd, &wr, &out);
    t0 = now_s();
    kill(d.pid, SIGTERM);
    raw_expect_error(fd, COFFER_ERR_SHUTDOWN, NULL, 0, 60000);
    waitpid(d.pid, &status, 0);
    /* a bound, not a speed: 2 s of grace, a wide margin for a loaded machine */
    assert_true(now_s() - t0 < 2.0 + 30.0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    d.pid = 0;
    close(fd), close(rd), close(wr), close(out);
}

/*
 * ---- 8. locked memory (not under ASan or TSan, whose mlock interceptors do nothing and
 * succeed) ----
 */
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)

/* Whether cofferd has CAP_IPC_LOCK in its effective set (/proc/PID/status CapEff, bit 14). */
static int daemon_can_lock(const struct ts_daemon *d)
{
    char path[64], line[256];
    unsigned long long caps = 0;
    FILE *f;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)d->pid);
    assert_non_null(f = fopen(path, "r"));
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "CapEff: %llx", &caps) == 1)
            break;
    fclose(f);
    return (caps >> 14) & 1;
}

/* STATS secmemLockFailures, or -1 when STATS has no such number. */
static long stats_lock_failures(const struct ts_daemon *d)
{
    coffer_client *c = client(d);
    char *j = NULL, *at;
    long n = -1;
    assert_int_equal(coffer_client_stats(c, &j), 0);
    coffer_client_close(c);
    if ((at = strstr(j, "\"secmemLockFailures\":")) != NULL)
        n = strtol(at + strlen("\"secmemLockFailures\":"), NULL, 10);
    free(j);
    return n;
}

/*
 * RLIMIT_MEMLOCK too small for the keys of the running jobs (80 KiB: enough for one ring, which
 * io_uring charges to the same limit, not for 24 running jobs), and, as root, no CAP_IPC_LOCK,
 * which would lock past any limit: cofferd still serves, STATS secmemLockFailures counts the
 * refused allocations and the log says so once, with what to raise. Last in this file: the
 * bounding set drop holds for every later child of the test.
 */
static void test_memlock_refused(void **state)
{
    enum { NJOBS = 24 };
    struct ts_daemon d = {0};
    struct rlimit old, low;
    int jobs[NJOBS], logged, r;
    long failures;
    (void)state;
    /* EPERM or EINVAL: this process has no CAP_IPC_LOCK to give (daemon_can_lock tells) */
    (void)prctl(PR_CAPBSET_DROP, 14 /* CAP_IPC_LOCK */, 0, 0, 0);
    assert_int_equal(getrlimit(RLIMIT_MEMLOCK, &old), 0);
    low = old;
    low.rlim_cur = 80 * 1024;
    assert_int_equal(setrlimit(RLIMIT_MEMLOCK, &low), 0);
    r = daemon_start(&d, "memlock", "--io-timeout", "600", NULL);
    assert_int_equal(setrlimit(RLIMIT_MEMLOCK, &old), 0);
    assert_int_equal(r, 0);
    if (daemon_can_lock(&d)) {
        assert_int_equal(ts_daemon_stop(&d), 0);
        ts_skip_case("cofferd kept CAP_IPC_LOCK, so RLIMIT_MEMLOCK cannot refuse it anything");
    }
    for (int i = 0; i < NJOBS; i++)
        jobs[i] = stalled_stream_job(&d);
    serves(&d); /* every job is in */
    failures = stats_lock_failures(&d);
    for (int i = 0; i < NJOBS; i++)
        close(jobs[i]);
    serves(&d);
    logged = ts_count_in_file(d.log, "event=memlock_refused");
    if (failures < 1 || logged != 1)
        fail_msg("RLIMIT_MEMLOCK 80 KiB, %d jobs: STATS secmemLockFailures %ld (want > 0), %d "
                 "memlock_refused lines in %s (want 1)",
                 NJOBS, failures, logged, d.log);
    assert_true(ts_daemon_log_has(&d, "LimitMEMLOCK"));
    assert_true(ts_daemon_log_has(&d, "IPC_LOCK"));
    assert_true(ts_daemon_log_has(&d, "memlock_limit=81920"));
    assert_int_equal(ts_daemon_stop(&d), 0);
}
#endif

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
        cmocka_unit_test(test_pipelining),
        cmocka_unit_test(test_fds_with_other_frames),
        cmocka_unit_test(test_frame_timeout),
        cmocka_unit_test(test_per_uid_cap),
        cmocka_unit_test(test_emfile),
        cmocka_unit_test(test_io_timeout_fifo),
        cmocka_unit_test(test_sigterm_stuck_fifo),
        cmocka_unit_test(test_shutdown_refuses_new),
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__) /* their mlock never fails */
        cmocka_unit_test(test_memlock_refused), /* last: children lose CAP_IPC_LOCK */
#endif
    };
    if (getenv("COFFER_TEST_FILTER") != NULL) /* e.g. test_emfile, or test_fd* */
        cmocka_set_test_filter(getenv("COFFER_TEST_FILTER"));
    return cmocka_run_group_tests(tests, setup, teardown);
}
