/* SPDX-License-Identifier: Apache-2.0 */
/* The session (uring/session.h) without a ring: bytes and descriptors in, actions out. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "coffer_error.h"
#include "engine_key.h"
#include "engine_metadata.h"
#include "engine_stream.h"
#include "proto_frame.h"
#include "session.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- a recording env ---- */

static struct {
    uint8_t *recv_buf;
    size_t recv_room;
    int recv_out;
    const uint8_t *send_buf;
    size_t send_len;
    int send_out;
    uint8_t sent[1 << 20]; /* every byte the session sent, in order */
    size_t sent_len;
    int reads, writes, syncs, cancels, shut;
    /* the last read asked for, the writes out by output buffer, writes cancelled */
    uint8_t *read_buf;
    size_t read_len;
    int read_out;
    const uint8_t *write_buf[SESSION_FILE_BUFS];
    size_t write_len[SESSION_FILE_BUFS];
    uint64_t write_pos[SESSION_FILE_BUFS];
    int write_out[SESSION_FILE_BUFS];
    int cancelled_writes;
    int probes, probe_in, probe_out;
    int closed[16], nclosed;
    struct session_work *work;
    int work_out, work_split;
    int keyreqs;
    int allocs, fail_alloc_at; /* fail the fail_alloc_at-th allocation (1-based; 0: never) */
    int stopping;
    double now;
    char events[8192];
    engine_key *key;
    char *metadata;
} T;

static void t_recv(struct session *s, uint8_t *buf, size_t room)
{
    (void)s;
    assert_false(T.recv_out);
    T.recv_buf = buf;
    T.recv_room = room;
    T.recv_out = 1;
}

static void t_send(struct session *s, const uint8_t *buf, size_t len)
{
    (void)s;
    assert_false(T.send_out);
    T.send_buf = buf;
    T.send_len = len;
    T.send_out = 1;
}

static void t_fd_read(struct session *s, int fd, uint8_t *buf, size_t len, uint64_t pos)
{
    (void)s, (void)fd, (void)pos;
    assert_false(T.read_out);
    T.read_buf = buf;
    T.read_len = len;
    T.read_out = 1;
    T.reads++;
}

static void t_fd_write(struct session *s, unsigned k, int fd, const uint8_t *buf, size_t len,
                       uint64_t pos)
{
    (void)s, (void)fd;
    assert_true(k < SESSION_FILE_BUFS);
    assert_false(T.write_out[k]);
    T.write_buf[k] = buf;
    T.write_len[k] = len;
    T.write_pos[k] = pos;
    T.write_out[k] = 1;
    T.writes++;
}

static void t_fd_sync(struct session *s, int fd)
{
    (void)s, (void)fd;
    T.syncs++;
}

static void t_fd_cancel(struct session *s, int writes)
{
    (void)s;
    T.cancels++;
    T.cancelled_writes |= writes;
}

static void t_fd_close(struct session *s, int fd)
{
    (void)s;
    for (int i = 0; i < T.nclosed; i++)
        assert_int_not_equal(T.closed[i], fd); /* exactly once */
    assert_true(T.nclosed < 16);
    T.closed[T.nclosed++] = fd;
    close(fd);
}

static void t_fd_probe(struct session *s, int in, int out)
{
    (void)s;
    T.probes++;
    T.probe_in = in;
    T.probe_out = out;
}

static void t_work(struct session *s, struct session_work *wk, int split)
{
    (void)s;
    T.work = wk;
    T.work_out = 1;
    T.work_split = split;
}

static int t_key_request(struct session *s, const struct session_keyask *ask)
{
    (void)s, (void)ask;
    T.keyreqs++;
    return 0;
}

static void t_shutdown(struct session *s)
{
    (void)s;
    T.shut++;
}

static double t_now(void)
{
    return T.now;
}

static int t_stopping(void)
{
    return T.stopping;
}

static void t_config(struct session_config *out)
{
    out->offload_min = 0;
    out->split_min = 0;
    out->fd_piece = 512 * 1024;
    out->io_timeout = 30;
    out->frame_timeout = 10;
    out->shutdown_grace = 5;
}

static int rt_token;
static void *t_rt_get(struct session_rt *out)
{
    memset(out, 0, sizeof(*out));
    out->encryption = 1;
    out->format = COFFER_FORMAT_COFFER_V1;
    out->ns = "velero";
    out->secret = "backup-key";
    out->spool_dir = "";
    out->key = T.key;
    out->metadata = T.metadata;
    out->metadata_len = strlen(T.metadata);
    return &rt_token;
}

static void t_rt_put(void *rt)
{
    assert_ptr_equal(rt, &rt_token);
}

static void *t_alloc(size_t align, size_t n)
{
    void *p = NULL;
    if (++T.allocs == T.fail_alloc_at)
        return NULL;
    if (align == 0)
        return malloc(n);
    return posix_memalign(&p, align, n) == 0 ? p : NULL;
}

static int t_fd_check(int in, int out, char *detail, size_t detaillen)
{
    (void)in, (void)out, (void)detail, (void)detaillen;
    return 0;
}

static int t_fdbuf_take(size_t n)
{
    (void)n;
    return 1;
}

static void t_fdbuf_give(size_t n)
{
    (void)n;
}

static char *t_report(uint8_t type)
{
    return strdup(type == PROTO_HEALTH ? "{\"status\":\"ok\"}" : "{\"jobsOk\":0}");
}

static int t_hsm_backup(void *rt, void **hsm, engine_key **dk, char **meta)
{
    (void)rt, (void)hsm, (void)dk, (void)meta;
    return COFFER_ERR_INTERNAL;
}

static int t_hsm_restore(void *rt, const void *json, void **hsm, char *detail, size_t len)
{
    (void)rt, (void)json, (void)hsm;
    snprintf(detail, len, "no HSM here");
    return COFFER_ERR_HSM_UNAVAILABLE;
}

static void t_hsm_end(void *rt, void *hsm, uint64_t bytes)
{
    (void)rt, (void)hsm, (void)bytes;
}

static void t_key_answer(void *hsm, const void *answer, struct session_key *ans)
{
    (void)hsm;
    ans->err = answer != NULL ? 0 : COFFER_ERR_KEY_READ;
    ans->key = answer;
    if (answer == NULL)
        snprintf(ans->detail, sizeof(ans->detail), "not found");
}

static int t_kube(void *rt, const char *ns, char *detail, size_t len)
{
    (void)rt, (void)ns, (void)detail, (void)len;
    return 0;
}

static int t_seal(void *rt, const engine_key *key, char **meta, size_t *len, char *detail,
                  size_t detaillen)
{
    (void)rt, (void)key, (void)meta, (void)len, (void)detail, (void)detaillen;
    return 0;
}

static void t_hint(const void *json, char *detail, size_t len)
{
    (void)json, (void)detail, (void)len;
}

static void t_log(int level, const char *event, const char *fmt, va_list ap)
{
    size_t n = strlen(T.events);
    (void)level, (void)fmt, (void)ap;
    snprintf(T.events + n, sizeof(T.events) - n, "%s ", event);
}

static void t_count(enum session_count what, int err, const struct session_jobinfo *job)
{
    (void)what, (void)err, (void)job;
}

static const struct session_ops ops = {
    .recv = t_recv,
    .send = t_send,
    .fd_read = t_fd_read,
    .fd_write = t_fd_write,
    .fd_sync = t_fd_sync,
    .fd_cancel = t_fd_cancel,
    .fd_close = t_fd_close,
    .fd_probe = t_fd_probe,
    .work = t_work,
    .key_request = t_key_request,
    .shutdown = t_shutdown,
    .now = t_now,
    .stopping = t_stopping,
    .config = t_config,
    .rt_get = t_rt_get,
    .rt_put = t_rt_put,
    .alloc = t_alloc,
    .fd_check = t_fd_check,
    .fdbuf_take = t_fdbuf_take,
    .fdbuf_give = t_fdbuf_give,
    .report = t_report,
    .hsm_backup = t_hsm_backup,
    .hsm_restore = t_hsm_restore,
    .hsm_end = t_hsm_end,
    .key_answer = t_key_answer,
    .kube_ns_allowed = t_kube,
    .recovery_seal = t_seal,
    .recovery_hint = t_hint,
    .log = t_log,
    .count = t_count,
};

/* ---- frames ---- */

struct frames {
    uint8_t b[1 << 18];
    size_t len;
};

static void put_hello(struct frames *f)
{
    proto_hello h = {COFFER_PROTO_VERSION, COFFER_PROTO_VERSION, COFFER_MAX_FRAME};
    size_t n = 0;
    assert_int_equal(proto_hello_write(f->b + f->len, sizeof(f->b) - f->len, &h, &n), 0);
    f->len += n;
}

static void put_job(struct frames *f, uint8_t op, uint8_t input)
{
    proto_job j;
    size_t n = 0;
    memset(&j, 0, sizeof(j));
    j.op = op;
    j.input = input;
    assert_int_equal(proto_job_write(f->b + f->len, sizeof(f->b) - f->len, &j, &n), 0);
    f->len += n;
}

static void put_frame(struct frames *f, uint8_t type, const void *p, size_t len)
{
    size_t n = 0;
    assert_int_equal(proto_frame_write(f->b + f->len, sizeof(f->b) - f->len, type, p, len, &n), 0);
    f->len += n;
}

/* ---- driving ---- */

static struct session *t_new(void)
{
    struct session *s;
    free(T.metadata);
    engine_key_free(T.key);
    memset(&T, 0, sizeof(T));
    T.now = 1000.0;
    {
        static const uint8_t kb[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
        json_t *m;
        assert_int_equal(engine_key_from_bytes(&T.key, kb, sizeof(kb)), 0);
        m = engine_metadata_new_secret("velero", "backup-key", "coffer-v1", T.key->id);
        assert_non_null(m);
        T.metadata = engine_metadata_dump(m);
        json_decref(m);
    }
    s = session_new(&ops, NULL, 1, 1000, 42);
    assert_non_null(s);
    session_pump(s);
    assert_true(T.recv_out);
    return s;
}

static void t_end(struct session *s)
{
    session_free(s);
    free(T.metadata);
    T.metadata = NULL;
    engine_key_free(T.key);
    T.key = NULL;
}

/* bytes (and descriptors) arrive through the receive the session asked for */
static void deliver(struct session *s, const uint8_t *p, size_t len, const int *fds, int nfds)
{
    assert_true(T.recv_out);
    assert_true(len <= T.recv_room);
    memcpy(T.recv_buf, p, len);
    T.recv_out = 0;
    session_received(s, (int)len, fds, nfds, 0);
}

/* every send completes whole, until the session has nothing more to send */
static void drain_sends(struct session *s)
{
    while (T.send_out) {
        size_t n = T.send_len;
        assert_true(T.sent_len + n <= sizeof(T.sent));
        memcpy(T.sent + T.sent_len, T.send_buf, n);
        T.sent_len += n;
        T.send_out = 0;
        session_sent(s, (int)n);
    }
}

/* The types of the frames sent so far, as a string of digits (proto_type values). */
static const char *sent_types(char *out, size_t cap)
{
    size_t pos = 0, k = 0;
    while (pos + COFFER_FRAME_HEADER <= T.sent_len && k + 1 < cap) {
        proto_header h;
        assert_int_equal(proto_header_parse(T.sent + pos, &h), 0);
        out[k++] = (char)('0' + h.type);
        pos += COFFER_FRAME_HEADER + h.len;
    }
    out[k] = '\0';
    return out;
}

/* The code of the first ERROR frame sent, or 0. */
static int sent_error(void)
{
    size_t pos = 0;
    while (pos + COFFER_FRAME_HEADER <= T.sent_len) {
        proto_header h;
        proto_error e;
        assert_int_equal(proto_header_parse(T.sent + pos, &h), 0);
        if (h.type == PROTO_ERROR) {
            assert_int_equal(proto_error_parse(T.sent + pos + COFFER_FRAME_HEADER, h.len, &e), 0);
            return e.code;
        }
        pos += COFFER_FRAME_HEADER + h.len;
    }
    return 0;
}

static void devnull_pair(int fds[2])
{
    fds[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
    fds[1] = open("/dev/null", O_WRONLY | O_CLOEXEC);
    assert_true(fds[0] >= 0 && fds[1] >= 0);
}

static int was_closed(int fd)
{
    for (int i = 0; i < T.nclosed; i++)
        if (T.closed[i] == fd)
            return 1;
    return 0;
}

/* ---- tests ---- */

static void test_hello(void **state)
{
    struct frames f = {.len = 0};
    char types[64];
    struct session *s = t_new();
    (void)state;
    assert_int_equal(session_state(s), SESSION_HELLO);
    put_hello(&f);
    deliver(s, f.b, f.len, NULL, 0);
    drain_sends(s);
    assert_int_equal(session_state(s), SESSION_IDLE);
    assert_string_equal(sent_types(types, sizeof(types)), "1");
    assert_true(T.recv_out); /* and it reads on */
    t_end(s);
}

static void test_first_frame_not_hello(void **state)
{
    struct frames f = {.len = 0};
    struct session *s = t_new();
    (void)state;
    put_frame(&f, PROTO_HEALTH, NULL, 0);
    deliver(s, f.b, f.len, NULL, 0);
    assert_int_equal(session_state(s), SESSION_FLUSH);
    drain_sends(s);
    assert_int_equal(sent_error(), COFFER_ERR_PROTO_SEQUENCE);
    assert_int_equal(session_state(s), SESSION_CLOSED);
    assert_int_equal(T.shut, 1);
    assert_false(T.recv_out); /* nothing more was read after the bad frame */
    assert_true(session_finished(s));
    t_end(s);
}

/* A whole encrypt job and a HEALTH request behind its END in one receive: both are served. */
static void test_pipelined_after_end(void **state)
{
    static uint8_t plain[3000];
    struct frames f = {.len = 0};
    char types[64];
    struct session *s = t_new();
    (void)state;
    memset(plain, 'p', sizeof(plain));
    put_hello(&f);
    put_job(&f, PROTO_OP_ENCRYPT, PROTO_INPUT_STREAM);
    put_frame(&f, PROTO_DATA, plain, sizeof(plain));
    put_frame(&f, PROTO_END, NULL, 0);
    put_frame(&f, PROTO_HEALTH, NULL, 0);
    deliver(s, f.b, f.len, NULL, 0);
    drain_sends(s);
    assert_int_equal(sent_error(), 0);
    /* HELLO, DATA (header and chunks), RESULT, then the HEALTH reply */
    sent_types(types, sizeof(types));
    assert_int_equal(types[0], '0' + PROTO_HELLO);
    assert_int_equal(types[strlen(types) - 2], '0' + PROTO_RESULT);
    assert_int_equal(types[strlen(types) - 1], '0' + PROTO_HEALTH);
    assert_int_equal(session_state(s), SESSION_IDLE);
    assert_non_null(strstr(T.events, "job_done"));
    t_end(s);
}

/* Descriptors that come with a HEALTH frame are closed at once and fail the connection. */
static void test_fds_with_non_job_frame(void **state)
{
    struct frames f = {.len = 0}, g = {.len = 0};
    int fds[2];
    struct session *s = t_new();
    (void)state;
    put_hello(&f);
    deliver(s, f.b, f.len, NULL, 0);
    drain_sends(s);
    devnull_pair(fds);
    put_frame(&g, PROTO_HEALTH, NULL, 0);
    deliver(s, g.b, g.len, fds, 2);
    assert_true(was_closed(fds[0]) && was_closed(fds[1]));
    drain_sends(s);
    assert_int_equal(sent_error(), COFFER_ERR_PROTO_FRAME);
    assert_int_equal(session_state(s), SESSION_CLOSED);
    t_end(s);
    assert_int_equal(T.nclosed, 2); /* and never again at free */
}

/*
 * A descriptor job waits in PROBE for its files' positions (which the env learns off the owner
 * thread: lseek can wait for a lock), issuing no I/O; meanwhile the session answers its ticks;
 * the answer starts the job, whose first action is a read.
 */
static void test_fd_job_probe_async(void **state)
{
    struct frames f = {.len = 0}, g = {.len = 0};
    int fds[2];
    struct session *s = t_new();
    (void)state;
    put_hello(&f);
    deliver(s, f.b, f.len, NULL, 0);
    drain_sends(s);
    devnull_pair(fds);
    put_job(&g, PROTO_OP_ENCRYPT, PROTO_INPUT_FDS);
    deliver(s, g.b, g.len, fds, 2);
    assert_int_equal(session_state(s), SESSION_PROBE);
    assert_int_equal(T.probes, 1);
    assert_int_equal(T.probe_in, fds[0]);
    assert_int_equal(T.probe_out, fds[1]);
    assert_int_equal(T.reads, 0);
    T.now += 5; /* a slow probe: ticks come and go */
    session_tick_io(s, T.now);
    session_tick(s, T.now, 30);
    assert_int_equal(session_state(s), SESSION_PROBE);
    session_probed(s, (uint64_t)-1, (uint64_t)-1, 0);
    assert_int_equal(session_state(s), SESSION_RUN);
    assert_int_equal(T.reads, 1);
    assert_int_equal(T.nclosed, 0); /* the job holds them */
    t_end(s);
    assert_true(was_closed(fds[0]) && was_closed(fds[1]));
    assert_int_equal(T.nclosed, 2);
}

/*
 * issue 9 item 5: out of memory for the job itself. The session must fail the JOB with NOMEM
 * (not touch a job that does not exist) and still close the descriptors exactly once.
 */
static void test_job_nomem(void **state)
{
    struct frames f = {.len = 0}, g = {.len = 0};
    int fds[2];
    struct session *s = t_new();
    (void)state;
    put_hello(&f);
    deliver(s, f.b, f.len, NULL, 0);
    drain_sends(s);
    devnull_pair(fds);
    put_job(&g, PROTO_OP_ENCRYPT, PROTO_INPUT_FDS);
    deliver(s, g.b, g.len, fds, 2);
    assert_int_equal(session_state(s), SESSION_PROBE);
    T.fail_alloc_at = T.allocs + 1; /* the next allocation: the job */
    session_probed(s, (uint64_t)-1, (uint64_t)-1, 0);
    drain_sends(s);
    assert_int_equal(sent_error(), COFFER_ERR_NOMEM);
    assert_int_equal(session_state(s), SESSION_CLOSED);
    t_end(s);
    assert_true(was_closed(fds[0]) && was_closed(fds[1]));
    assert_int_equal(T.nclosed, 2);
}

/* The same for a streamed job. */
static void test_stream_job_nomem(void **state)
{
    struct frames f = {.len = 0};
    struct session *s = t_new();
    (void)state;
    put_hello(&f);
    put_job(&f, PROTO_OP_ENCRYPT, PROTO_INPUT_STREAM);
    T.fail_alloc_at = T.allocs + 1;
    deliver(s, f.b, f.len, NULL, 0);
    drain_sends(s);
    assert_int_equal(sent_error(), COFFER_ERR_NOMEM);
    assert_int_equal(session_state(s), SESSION_CLOSED);
    t_end(s);
}

/* The ERROR of a failed descriptor job waits until its reads and writes have come back. */
static void test_error_waits_for_fd_io(void **state)
{
    struct frames f = {.len = 0}, g = {.len = 0};
    int fds[2];
    struct session *s = t_new();
    (void)state;
    put_hello(&f);
    deliver(s, f.b, f.len, NULL, 0);
    drain_sends(s);
    devnull_pair(fds);
    put_job(&g, PROTO_OP_ENCRYPT, PROTO_INPUT_FDS);
    deliver(s, g.b, g.len, fds, 2);
    session_probed(s, (uint64_t)-1, (uint64_t)-1, 0);
    assert_int_equal(T.reads, 1);
    session_abort(s, 0); /* the shutdown grace expired */
    assert_int_equal(session_state(s), SESSION_FLUSH);
    assert_int_equal(T.cancels, 1);
    assert_false(T.send_out); /* the read is still out: no ERROR yet */
    session_fd_done(s, SESSION_FD_READ, -125 /* ECANCELED */);
    drain_sends(s);
    assert_int_equal(sent_error(), COFFER_ERR_SHUTDOWN);
    assert_int_equal(session_state(s), SESSION_CLOSED);
    t_end(s);
}

/* HELLO, then a descriptor JOB whose files are regular, both at offset 0 (writes at offsets). */
static void fd_job_regular(struct session *s, uint8_t op, int fds[2])
{
    struct frames f = {.len = 0}, g = {.len = 0};
    put_hello(&f);
    deliver(s, f.b, f.len, NULL, 0);
    drain_sends(s);
    devnull_pair(fds);
    put_job(&g, op, PROTO_INPUT_FDS);
    deliver(s, g.b, g.len, fds, 2);
    session_probed(s, 0, 0, 1);
}

/*
 * A tampered coffer-v1 restore by descriptors into a regular file: the batches before the
 * tampered chunk are written at their offsets, all at once, and the kernel may finish them in
 * any order. The failure must not cancel those writes: a cancelled earlier piece beside a later
 * one that landed left a hole of zeros inside the released output (test_fd_split_tampered, about
 * one run in ten under load). Here the later write lands first, and the file must still be a
 * prefix of the plaintext when the ERROR comes. Only a stall cancels the writes (--io-timeout).
 */
static void test_failed_fd_job_output_is_prefix(void **state)
{
    size_t len = 2 * 1024 * 1024, ctlen = 0, n = 0, t = 0, fed = 0, filelen = 0;
    size_t hdr, at;
    uint8_t *plain = malloc(len), *ct = malloc(len + 65536), *file = calloc(1, len);
    struct engine_stream_params p;
    engine_stream *es = NULL;
    int fds[2], writes_seen = 0;
    struct session *s = t_new();
    (void)state;
    for (size_t i = 0; i < len; i++)
        plain[i] = (uint8_t)(i * 131 + (i >> 9));
    memset(&p, 0, sizeof(p));
    p.format = COFFER_FORMAT_COFFER_V1;
    p.key = T.key;
    p.metadata = T.metadata;
    p.metadata_len = strlen(T.metadata);
    assert_int_equal(engine_stream_seal_new(&es, &p), 0);
    assert_int_equal(engine_stream_update(es, plain, len, ct, len + 65536, &n), 0);
    assert_int_equal(engine_stream_finish(es, ct + n, len + 65536 - n, &t), 0);
    engine_stream_free(es);
    ctlen = n + t;
    /* chunk 70: in the third 512 KiB piece of input (the first two are whole batches before) */
    hdr = 12 + ((size_t)ct[8] << 24 | (size_t)ct[9] << 16 | (size_t)ct[10] << 8 | ct[11]) + 56;
    at = hdr + 70 * (16384 + 16) + 999;
    ct[at] ^= 0x04;
    fd_job_regular(s, PROTO_OP_DECRYPT, fds);
    /* feed the input as it is asked for, answer the key; leave every write out */
    while (session_state(s) != SESSION_FLUSH) {
        if (T.keyreqs > 0 && session_state(s) == SESSION_KEYWAIT) {
            session_key_done(s, T.key);
            continue;
        }
        assert_true(T.read_out);
        n = ctlen - fed < T.read_len ? ctlen - fed : T.read_len;
        memcpy(T.read_buf, ct + fed, n);
        fed += n;
        T.read_out = 0;
        session_fd_done(s, SESSION_FD_READ, (int)n);
    }
    assert_int_equal(sent_error(), 0);
    for (unsigned k = 0; k < SESSION_FILE_BUFS; k++)
        writes_seen += T.write_out[k];
    assert_true(writes_seen >= 2); /* two batches' output out at once */
    if (T.read_out) {              /* the read out was cancelled */
        T.read_out = 0;
        session_fd_done(s, SESSION_FD_READ, -125 /* ECANCELED */);
    }
    assert_false(T.send_out); /* the writes are still out: no ERROR yet */
    /*
     * The writes come back latest first, as the kernel may finish them; had they been cancelled,
     * the first, still queued behind, would be the one the cancel caught (ECANCELED).
     */
    for (unsigned k = SESSION_FILE_BUFS; k-- > 0;) {
        int res = (int)T.write_len[k];
        if (!T.write_out[k])
            continue;
        if (T.cancelled_writes && T.write_pos[k] == 0) {
            res = -125; /* ECANCELED */
        } else {
            memcpy(file + T.write_pos[k], T.write_buf[k], T.write_len[k]);
            if (T.write_pos[k] + T.write_len[k] > filelen)
                filelen = T.write_pos[k] + T.write_len[k];
        }
        T.write_out[k] = 0;
        session_fd_done(s, SESSION_FD_WRITE + (int)k, res);
    }
    drain_sends(s);
    assert_int_equal(sent_error(), COFFER_ERR_TAMPERED);
    assert_int_equal(session_state(s), SESSION_CLOSED);
    /* the file is a prefix of the plaintext, before the tampered chunk, without a hole */
    assert_true(filelen > 0 && filelen <= 70 * 16384);
    assert_memory_equal(file, plain, filelen);
    free(plain), free(ct), free(file);
    t_end(s);
}

/* A failed job's writes that make no progress for --io-timeout are cancelled after all. */
static void test_failed_fd_job_stalled_write(void **state)
{
    int fds[2];
    uint8_t junk[4096];
    struct session *s = t_new();
    (void)state;
    memset(junk, 0x5a, sizeof(junk)); /* an encrypt job's input: its first output goes out */
    fd_job_regular(s, PROTO_OP_ENCRYPT, fds);
    assert_true(T.read_out);
    memcpy(T.read_buf, junk, sizeof(junk));
    T.read_out = 0;
    session_fd_done(s, SESSION_FD_READ, (int)sizeof(junk)); /* the header's write goes out */
    assert_true(T.write_out[0]);
    session_abort(s, 0); /* the job fails (SHUTDOWN) with its write out */
    assert_int_equal(session_state(s), SESSION_FLUSH);
    assert_false(T.cancelled_writes);
    if (T.read_out) {
        T.read_out = 0;
        session_fd_done(s, SESSION_FD_READ, -125);
    }
    assert_false(T.send_out);
    T.now += 31; /* the write stalls past --io-timeout */
    session_tick_io(s, T.now);
    session_tick(s, T.now, 30);
    assert_true(T.cancelled_writes);
    T.write_out[0] = 0;
    session_fd_done(s, SESSION_FD_WRITE, -125);
    drain_sends(s);
    assert_int_equal(sent_error(), COFFER_ERR_SHUTDOWN); /* the ERROR still goes out */
    assert_int_equal(session_state(s), SESSION_CLOSED);
    t_end(s);
}

/*
 * SIGTERM while a descriptor job waits for its probe: the job was taken before the stop, so it
 * runs (and ends with SHUTDOWN only if the grace expires), instead of the connection being
 * closed as idle with no answer (uring_hostile_test's test_sigterm_stuck_fifo saw EOF).
 */
static void test_stop_during_probe(void **state)
{
    struct frames f = {.len = 0}, g = {.len = 0};
    int fds[2];
    struct session *s = t_new();
    (void)state;
    put_hello(&f);
    deliver(s, f.b, f.len, NULL, 0);
    drain_sends(s);
    devnull_pair(fds);
    put_job(&g, PROTO_OP_ENCRYPT, PROTO_INPUT_FDS);
    deliver(s, g.b, g.len, fds, 2);
    assert_int_equal(session_state(s), SESSION_PROBE);
    T.stopping = 1;
    session_stop(s);
    assert_int_equal(session_state(s), SESSION_PROBE); /* not closed as idle */
    assert_int_equal(T.shut, 0);
    session_probed(s, (uint64_t)-1, (uint64_t)-1, 0);
    assert_int_equal(session_state(s), SESSION_RUN); /* taken before the stop: it runs */
    assert_int_equal(T.reads, 1);
    session_abort(s, 0); /* the grace expired */
    session_fd_done(s, SESSION_FD_READ, -125 /* ECANCELED */);
    drain_sends(s);
    assert_int_equal(sent_error(), COFFER_ERR_SHUTDOWN);
    t_end(s);
    assert_true(was_closed(fds[0]) && was_closed(fds[1]));
}

/* A key that does not come within --io-timeout fails the job KEY_READ. */
static void test_key_wait_timeout(void **state)
{
    struct frames f = {.len = 0};
    proto_job j;
    size_t n = 0;
    struct session *s = t_new();
    json_t *m = engine_metadata_new_secret("velero", "backup-key", "velero-v1", T.key->id);
    char *meta = engine_metadata_dump(m);
    (void)state;
    json_decref(m);
    assert_non_null(meta);
    put_hello(&f);
    memset(&j, 0, sizeof(j));
    j.op = PROTO_OP_DECRYPT;
    j.input = PROTO_INPUT_STREAM;
    j.metadata = meta;
    j.metadata_len = strlen(meta);
    assert_int_equal(proto_job_write(f.b + f.len, sizeof(f.b) - f.len, &j, &n), 0);
    f.len += n;
    deliver(s, f.b, f.len, NULL, 0);
    drain_sends(s);
    assert_int_equal(session_state(s), SESSION_KEYWAIT);
    assert_int_equal(T.keyreqs, 1);
    T.now += 31;
    session_tick_io(s, T.now);
    session_tick(s, T.now, 30);
    drain_sends(s);
    assert_int_equal(sent_error(), COFFER_ERR_KEY_READ);
    session_key_done(s, T.key); /* a late answer changes nothing */
    assert_int_equal(session_state(s), SESSION_CLOSED);
    free(meta);
    t_end(s);
}

/*
 * A bad frame pipelined behind a job that completed: the job's last DATA and its RESULT still
 * go out, then the ERROR (the client must not see a finished job fail). Found by fuzz_session.
 */
static void test_error_after_pipelined_result(void **state)
{
    static uint8_t plain[3000];
    struct frames f = {.len = 0};
    char types[64];
    size_t n;
    struct session *s = t_new();
    (void)state;
    memset(plain, 'p', sizeof(plain));
    put_hello(&f);
    put_job(&f, PROTO_OP_ENCRYPT, PROTO_INPUT_STREAM);
    put_frame(&f, PROTO_DATA, plain, sizeof(plain));
    put_frame(&f, PROTO_END, NULL, 0);
    put_job(&f, PROTO_OP_ENCRYPT, PROTO_INPUT_FDS); /* no descriptors came with it */
    deliver(s, f.b, f.len, NULL, 0);
    drain_sends(s);
    sent_types(types, sizeof(types));
    n = strlen(types);
    assert_true(n >= 4);
    assert_int_equal(types[n - 2], '0' + PROTO_RESULT);
    assert_int_equal(types[n - 1], '0' + PROTO_ERROR);
    assert_int_equal(sent_error(), COFFER_ERR_PROTO_FRAME);
    assert_int_equal(session_state(s), SESSION_CLOSED);
    t_end(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello),
        cmocka_unit_test(test_first_frame_not_hello),
        cmocka_unit_test(test_pipelined_after_end),
        cmocka_unit_test(test_fds_with_non_job_frame),
        cmocka_unit_test(test_fd_job_probe_async),
        cmocka_unit_test(test_job_nomem),
        cmocka_unit_test(test_stream_job_nomem),
        cmocka_unit_test(test_error_waits_for_fd_io),
        cmocka_unit_test(test_failed_fd_job_output_is_prefix),
        cmocka_unit_test(test_failed_fd_job_stalled_write),
        cmocka_unit_test(test_key_wait_timeout),
        cmocka_unit_test(test_stop_during_probe),
        cmocka_unit_test(test_error_after_pipelined_result),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
