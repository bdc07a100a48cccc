/* SPDX-License-Identifier: Apache-2.0 */
/* One client connection on a worker's ring: frames in, job output and results out, fd jobs. */
#include "uring_server.h"

#include "coffer_error.h"
#include "uring_report.h"
#include "uring_log.h"
#include "uring_metrics.h"

#include <errno.h>
#include <jansson.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define DETAIL_MAX URING_DETAIL_MAX

static int conn_work_busy(const struct uring_conn *c)
{
    return c->job != NULL && c->job->work.busy;
}

void uring_conn_submit(struct uring_conn *c, struct io_uring_sqe *sqe, enum uring_op op)
{
    io_uring_sqe_set_data64(sqe, uring_udata_pack(op, c->slot, c->gen));
    c->inflight++;
}

struct uring_conn *uring_conn_new(struct uring_worker *w, int fd, uid_t uid, pid_t pid)
{
    struct uring_conn *c = NULL;
    uint32_t slot;

    for (slot = 0; slot < w->nslots; slot++)
        if (w->conns[slot] == NULL)
            break;
    if (slot == w->nslots || (c = calloc(1, sizeof(*c))) == NULL)
        return NULL;
    /* half a page in: DATA payloads (page-aligned in the sender's skbs, 8 bytes after their
       frame header) then land far from the 1..63-byte distances that slow `rep movsb` */
    c->in_mem = uring_buf_alloc(URING_IN_CAP + 4096);
    c->in = c->in_mem != NULL ? c->in_mem + 2048 : NULL;
    c->out[0] = uring_buf_alloc(URING_OUT_HALF);
    c->out[1] = uring_buf_alloc(URING_OUT_HALF);
    if (c->in == NULL || c->out[0] == NULL || c->out[1] == NULL) {
        free(c->in_mem);
        free(c->out[0]);
        free(c->out[1]);
        free(c);
        return NULL;
    }
    c->w = w;
    c->slot = slot;
    c->gen = ++w->next_gen;
    c->fd = fd;
    c->uid = uid;
    c->pid = pid;
    c->fds[0] = c->fds[1] = -1;
    c->id = atomic_fetch_add(&uring_srv.next_conn_id, 1) + 1;
    c->last_progress = uring_now();
    w->conns[slot] = c;
    w->nconns++;
    atomic_fetch_add(&uring_srv.stats.conns_total, 1);
    uring_log(URING_LOG_DEBUG, "conn_open", "conn=%llu worker=%d uid=%u pid=%d",
              (unsigned long long)c->id, w->index, (unsigned)uid, (int)pid);
    return c;
}

/* A failed job counts once in STATS and the metrics: when its ERROR is decided, or at close. */
static void conn_job_count_failed(struct uring_job *j)
{
    if (j->failure_counted)
        return;
    j->failure_counted = 1;
    atomic_fetch_add(&uring_srv.stats.jobs_failed, 1);
    uring_metrics_count_job(j->op, j->format, 0, j->bytes_in, j->bytes_out,
                            uring_now() - j->t_start);
}

/*
 * Close a descriptor a client passed, through the ring: close(2) calls the file's flush, which
 * on FUSE or NFS waits for the filesystem (io_uring runs such a close on its io-wq workers).
 */
void uring_conn_close_fd(struct uring_conn *c, int fd)
{
    struct io_uring_sqe *sqe;
    if (fd < 0)
        return;
    sqe = uring_worker_sqe(c->w);
    io_uring_prep_close(sqe, fd);
    io_uring_sqe_set_data64(sqe, uring_udata_pack(URING_OP_CANCEL, 0, 0));
}

/* Close descriptors the client sent (asynchronously: see uring_conn_close_fd). */
static void conn_drop_fds(struct uring_conn *c)
{
    for (int i = 0; i < c->nfds; i++)
        uring_conn_close_fd(c, c->fds[i]);
    c->nfds = 0;
    c->fds_end = 0;
}

/* A job's descriptors go back through the ring before the job is freed. */
static void conn_job_free(struct uring_conn *c)
{
    struct uring_job *j = c->job;
    uring_conn_close_fd(c, j->in_fd);
    uring_conn_close_fd(c, j->out_fd);
    j->in_fd = j->out_fd = -1;
    uring_job_free(j);
    c->job = NULL;
}

static void conn_free(struct uring_conn *c)
{
    struct uring_worker *w = c->w;
    conn_drop_fds(c);
    if (c->job != NULL) {
        conn_job_count_failed(c->job); /* a job the client left without an ERROR */
        conn_job_free(c);
    }
    if (c->uid_counted)
        uring_peers_leave(c->uid);
    close(c->fd);
    free(c->in_mem);
    free(c->out[0]);
    free(c->out[1]);
    w->conns[c->slot] = NULL;
    w->nconns--;
    atomic_fetch_sub(&uring_srv.active_conns, 1);
    uring_log(URING_LOG_DEBUG, "conn_close", "conn=%llu", (unsigned long long)c->id);
    free(c);
}

void uring_conn_close(struct uring_conn *c, const char *why)
{
    if (c->closing)
        return;
    c->closing = 1;
    uring_log(URING_LOG_DEBUG, "conn_closing", "conn=%llu why=%s", (unsigned long long)c->id, why);
    shutdown(c->fd, SHUT_RDWR); /* completes our recv/send in flight */
    uring_fdjob_cancel(c);
}

size_t uring_conn_out_room(const struct uring_conn *c)
{
    return URING_OUT_HALF - c->fill_len;
}

uint8_t *uring_conn_out_reserve(struct uring_conn *c, size_t n)
{
    if (uring_conn_out_room(c) < n)
        return NULL;
    return c->out[c->fill] + c->fill_len;
}

void uring_conn_out_commit(struct uring_conn *c, size_t n)
{
    c->fill_len += n;
}

void uring_conn_fail(struct uring_conn *c, int err, const char *detail)
{
    char msg[COFFER_MAX_MESSAGE], q[DETAIL_MAX + 64];
    uint8_t *p;
    size_t n = 0;
    struct uring_job *j = c->job;

    if (c->closing || c->close_after_flush)
        return;
    if (conn_work_busy(c)) {
        /* the helper thread owns the output buffer: fail when the work comes back */
        if (c->fail_err == 0) {
            c->fail_err = err;
            snprintf(c->fail_detail, sizeof(c->fail_detail), "%s", detail != NULL ? detail : "");
        }
        uring_fdjob_cancel(c);
        return;
    }
    uring_log(URING_LOG_WARN, j != NULL ? "job_failed" : "conn_error",
              "conn=%llu op=%s format=%s err=%s bytes_in=%llu bytes_out=%llu detail=%s",
              (unsigned long long)c->id, j != NULL ? uring_job_op_name(j) : "-",
              j != NULL ? engine_format_name(j->format) : "-", coffer_errname(err),
              (unsigned long long)(j != NULL ? j->bytes_in : 0),
              (unsigned long long)(j != NULL ? j->bytes_out : 0),
              uring_log_quote(detail != NULL ? detail : "", q, sizeof(q)));
    uring_metrics_count_error(err);
    if (j != NULL)
        conn_job_count_failed(j); /* before the client can see the ERROR */
    if (detail != NULL && detail[0] != '\0')
        snprintf(msg, sizeof(msg), "%s: %s", coffer_strerror(err), detail);
    else
        snprintf(msg, sizeof(msg), "%s", coffer_strerror(err));
    /* whatever output was waiting belongs to the failed job: drop it, send only the error */
    c->fill_len = 0;
    c->close_after_flush = 1;
    p = uring_conn_out_reserve(c, COFFER_FRAME_HEADER + 6 + COFFER_MAX_MESSAGE);
    if (p != NULL && proto_error_write(p, uring_conn_out_room(c), err, msg, &n) == 0)
        uring_conn_out_commit(c, n);
    uring_fdjob_cancel(c);
}

/* ---- submitting ---- */

static void conn_submit_recv(struct uring_conn *c)
{
    struct io_uring_sqe *sqe;
    size_t room;

    if (c->recv_inflight || c->rd_eof || c->closing || c->close_after_flush)
        return;
    if (c->nfds > 0 && c->job != NULL)
        return; /* descriptors wait for the next job: nothing more until they are taken */
    if (conn_work_busy(c)) {
        /* the helper reads frames in place: no compaction until it is back */
    } else if (c->in_start == c->in_end) {
        c->in_start = c->in_end = 0;
        c->fds_end = 0;
    } else if (c->in_start > 0 &&
               URING_IN_CAP - c->in_end < COFFER_FRAME_HEADER + COFFER_MAX_FRAME) {
        memmove(c->in, c->in + c->in_start, c->in_end - c->in_start);
        c->in_end -= c->in_start;
        c->fds_end = c->fds_end > c->in_start ? c->fds_end - c->in_start : 0;
        c->in_start = 0;
    }
    room = URING_IN_CAP - c->in_end;
    if (room == 0)
        return;
    c->iov.iov_base = c->in + c->in_end;
    c->iov.iov_len = room;
    memset(&c->msg, 0, sizeof(c->msg));
    c->msg.msg_iov = &c->iov;
    c->msg.msg_iovlen = 1;
    c->msg.msg_control = c->cmsg.buf;
    c->msg.msg_controllen = sizeof(c->cmsg.buf);
    sqe = uring_worker_sqe(c->w);
    io_uring_prep_recvmsg(sqe, c->fd, &c->msg, MSG_CMSG_CLOEXEC);
    uring_conn_submit(c, sqe, URING_OP_RECV);
    c->recv_inflight = 1;
}

static void conn_submit_send(struct uring_conn *c)
{
    struct io_uring_sqe *sqe;
    int idx;

    if (c->send_inflight || c->closing)
        return;
    if (c->send_off == c->send_len) {
        if (c->fill_len == 0 || conn_work_busy(c))
            return; /* a busy helper is still filling this half */
        if (c->close_after_flush && uring_fdjob_busy(c))
            return; /* a failed job's ERROR waits until its descriptor reads and writes have
                     * ended: the client must not see the end of the job while output is still
                     * landing in its file (an earlier piece after a later one leaves a hole) */
        c->send_len = c->fill_len;
        c->send_off = 0;
        c->fill ^= 1;
        c->fill_len = 0;
    }
    idx = c->fill ^ 1;
    sqe = uring_worker_sqe(c->w);
    io_uring_prep_send(sqe, c->fd, c->out[idx] + c->send_off, c->send_len - c->send_off,
                       MSG_NOSIGNAL);
    uring_conn_submit(c, sqe, URING_OP_SEND);
    c->send_inflight = 1;
}

static int conn_output_idle(const struct uring_conn *c)
{
    return !c->send_inflight && c->send_off == c->send_len && c->fill_len == 0;
}

/* ---- frames ---- */

static int conn_reply_json(struct uring_conn *c, uint8_t type, json_t *j)
{
    int r = COFFER_ERR_NOMEM;
    char *text = j != NULL ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    size_t len = text != NULL ? strlen(text) : 0, n = 0;
    uint8_t *p;

    if (text == NULL)
        goto out;
    if (len > COFFER_MAX_JSON) {
        r = COFFER_ERR_INTERNAL;
        goto out;
    }
    if ((p = uring_conn_out_reserve(c, COFFER_FRAME_HEADER + len)) == NULL) {
        r = 1; /* no room yet: retry when the send buffer frees */
        goto out;
    }
    if ((r = proto_frame_write(p, uring_conn_out_room(c), type, text, len, &n)) == 0)
        uring_conn_out_commit(c, n);
out:
    free(text);
    json_decref(j);
    return r;
}

static int conn_job_begin(struct uring_conn *c, const uint8_t *p, size_t len, char *detail)
{
    proto_job pj;
    int r = proto_job_parse(p, len, &pj);

    if (r != 0) {
        snprintf(detail, DETAIL_MAX, "the job frame could not be parsed");
        return r;
    }
    if (atomic_load(&uring_srv.stopping))
        return COFFER_ERR_SHUTDOWN;
    if (pj.input == PROTO_INPUT_FDS && (!c->frame_owns_fds || c->nfds != 2)) {
        snprintf(detail, DETAIL_MAX,
                 "a descriptor job needs exactly two descriptors (input, "
                 "output) sent with SCM_RIGHTS alongside the job frame");
        return COFFER_ERR_PROTO_FRAME;
    }
    if (pj.input == PROTO_INPUT_STREAM && c->frame_owns_fds) {
        snprintf(detail, DETAIL_MAX, "descriptors were sent with a streamed job");
        return COFFER_ERR_PROTO_FRAME;
    }
    if (pj.input == PROTO_INPUT_FDS &&
        (r = uring_fdjob_check(c->fds[0], c->fds[1], detail, DETAIL_MAX)) != 0)
        return r;
    r = uring_job_start(c, &pj, detail, DETAIL_MAX);
    if (pj.input == PROTO_INPUT_FDS) {
        struct uring_job *j = c->job;
        j->in_fd = c->fds[0];
        j->out_fd = c->fds[1];
        c->nfds = 0;
        if (r == 0)
            r = uring_fdjob_begin(c);
    }
    if (r == 0)
        uring_log(URING_LOG_DEBUG, "job_start", "conn=%llu op=%s format=%s input=%s",
                  (unsigned long long)c->id, uring_job_op_name(c->job),
                  engine_format_name(c->job->format),
                  pj.input == PROTO_INPUT_FDS ? "fds" : "stream");
    return r;
}

static void conn_work_task(struct uring_task *t)
{
    struct uring_work *wk = (struct uring_work *)((char *)t - offsetof(struct uring_work, task));
    uring_job_work_run(wk);
}

/* Take the results of the job's work: output produced, input consumed, error. */
static void conn_work_applied(struct uring_conn *c)
{
    struct uring_job *j = c->job;
    struct uring_work *wk = &j->work;

    if (c->fail_err != 0) {
        int err = c->fail_err;
        c->fail_err = 0;
        uring_conn_fail(c, err, c->fail_detail);
        return;
    }
    if (j->input == PROTO_INPUT_FDS) {
        uring_fdjob_work_applied(c);
    } else {
        uring_conn_out_commit(c, wk->produced);
        for (int i = 0; !wk->tail && i < wk->nin; i++) {
            if (wk->used[i] < wk->inlen[i]) {
                c->frame_pos += wk->used[i];
                break;
            }
            /* the frame is done: its length is its header's */
            c->in_start += COFFER_FRAME_HEADER + c->frame_pos + wk->inlen[i];
            c->frame_pos = 0;
        }
    }
    if (wk->err != 0)
        uring_conn_fail(c, wk->err, wk->detail);
}

/* The job's work goes to a helper thread running `run`; it comes back in uring_conn_work_done. */
static void conn_work_to_helper(struct uring_conn *c, void (*run)(struct uring_task *))
{
    struct uring_work *wk = &c->job->work;

    wk->busy = 1;
    atomic_fetch_add(&uring_srv.stats.helper_batches, 1);
    wk->task.run = run;
    wk->task.w = c->w;
    wk->task.slot = c->slot;
    wk->task.gen = c->gen;
    c->inflight++;
    uring_pool_submit(&wk->task);
}

void uring_conn_work_submit(struct uring_conn *c, int run_here)
{
    struct uring_work *wk = &c->job->work;

    if (run_here) {
        uring_job_work_run(wk);
        conn_work_applied(c);
        return;
    }
    conn_work_to_helper(c, conn_work_task);
}

/* A helper's half of a split batch: the second half of its spans. */
static void conn_span_task(struct uring_task *t)
{
    struct uring_work *wk = (struct uring_work *)((char *)t - offsetof(struct uring_work, task));
    for (size_t i = wk->nspans / 2; i < wk->nspans; i++)
        engine_span_run(&wk->spans[i]);
}

void uring_conn_work_split(struct uring_conn *c)
{
    struct uring_work *wk = &c->job->work;

    wk->split = 1;
    uring_job_work_run(wk); /* the serial parts; whole chunks become spans */
    wk->split = 0;
    if (wk->err != 0 || wk->nspans < 2) {
        for (size_t i = 0; i < wk->nspans; i++)
            engine_span_run(&wk->spans[i]);
        uring_job_work_join(wk);
        conn_work_applied(c);
        return;
    }
    atomic_fetch_add(&uring_srv.stats.split_batches, 1);
    conn_work_to_helper(c, conn_span_task);
    for (size_t i = 0; i < wk->nspans / 2; i++)
        engine_span_run(&wk->spans[i]); /* meanwhile, the first half here */
}

void uring_conn_work_done(struct uring_conn *c)
{
    c->job->work.busy = 0;
    c->inflight--;
    c->last_progress = uring_now();
    if (!c->closing) {
        uring_job_work_join(&c->job->work);
        conn_work_applied(c);
    }
    uring_conn_pump(c);
}

/*
 * The front of the input is a complete DATA frame of a streamed job: feed the coffer-v1 header
 * reader, or hand the DATA frames that are in to the cipher (inline or on a helper). Returns 1
 * if anything moved or work went out, 0 to wait, or a negative coffer code.
 */
static int conn_stream_data(struct uring_conn *c, const proto_header *front, char *detail)
{
    struct uring_job *j = c->job;
    struct uring_work *wk = &j->work;
    size_t pos = c->in_start, total = 0, room, need, out_before;
    size_t in_before = c->in_start, pos_before = c->frame_pos;
    int r;

    if (j->state == JOB_HEADER) {
        size_t used = 0;
        r = uring_job_feed_header(c, c->in + c->in_start + COFFER_FRAME_HEADER + c->frame_pos,
                                  front->len - c->frame_pos, &used, detail, DETAIL_MAX);
        if (r != 0)
            return r;
        c->frame_pos += used;
        if (c->frame_pos == front->len) {
            c->in_start += COFFER_FRAME_HEADER + front->len;
            c->frame_pos = 0;
        }
        return 1;
    }
    if (j->state != JOB_RUN)
        return 0;
    wk->nin = 0;
    while (wk->nin < URING_WORK_SLICES && c->in_end - pos >= COFFER_FRAME_HEADER) {
        proto_header h;
        size_t skip = wk->nin == 0 ? c->frame_pos : 0;
        if (proto_header_parse(c->in + pos, &h) != 0 || h.type != PROTO_DATA ||
            c->in_end - pos - COFFER_FRAME_HEADER < h.len)
            break;
        wk->in[wk->nin] = c->in + pos + COFFER_FRAME_HEADER + skip;
        wk->inlen[wk->nin] = h.len - skip;
        total += h.len - skip;
        wk->nin++;
        pos += COFFER_FRAME_HEADER + h.len;
    }
    conn_submit_send(c); /* hand the filled half to the socket first if it is free */
    room = uring_conn_out_room(c);
    need = COFFER_FRAME_HEADER +
           engine_stream_bound(j->s, wk->inlen[0] < URING_OUT_MIN ? wk->inlen[0] : URING_OUT_MIN);
    if (room < need || room < COFFER_FRAME_HEADER + URING_OUT_MIN)
        return 0;
    wk->tail = 0;
    wk->framed = 1;
    wk->out = c->out[c->fill] + c->fill_len;
    wk->outcap = room;
    out_before = c->fill_len;
    uring_conn_work_submit(c, !uring_job_offload(j, total, 0));
    return wk->busy || c->in_start != in_before || c->frame_pos != pos_before ||
           c->fill_len != out_before || c->close_after_flush;
}

/*
 * Handle the frame at the front of the input. Returns 1 when it was consumed, 2 when DATA moved
 * on by itself, 0 to retry later, or a negative coffer code (detail says more).
 */
static int conn_frame(struct uring_conn *c, const proto_header *h, const uint8_t *p, char *detail)
{
    struct uring_job *j = c->job;
    int r = 0;

    if (!c->hello_done) {
        proto_hello peer, mine = {COFFER_PROTO_VERSION, COFFER_PROTO_VERSION, COFFER_MAX_FRAME};
        uint16_t version = 0;
        size_t n = 0;
        uint8_t *out;
        if (h->type != PROTO_HELLO) {
            snprintf(detail, DETAIL_MAX, "the first frame must be hello, got %s",
                     proto_type_name(h->type));
            return COFFER_ERR_PROTO_SEQUENCE;
        }
        if ((r = proto_hello_parse(p, h->len, &peer)) != 0 ||
            (r = proto_hello_negotiate(&peer, &version)) != 0) {
            snprintf(detail, DETAIL_MAX, "this cofferd speaks protocol version %u",
                     COFFER_PROTO_VERSION);
            return r;
        }
        mine.version_min = mine.version_max = version;
        if ((out = uring_conn_out_reserve(c, 64)) == NULL)
            return 0;
        if ((r = proto_hello_write(out, 64, &mine, &n)) != 0)
            return r;
        uring_conn_out_commit(c, n);
        c->hello_done = 1;
        return 1;
    }
    switch (h->type) {
    case PROTO_JOB:
        if (j != NULL)
            break;
        return (r = conn_job_begin(c, p, h->len, detail)) == 0 ? 1 : r;
    case PROTO_DATA:
        if (j == NULL || j->input != PROTO_INPUT_STREAM || j->input_ended)
            break;
        /* conn_stream_data moves in_start itself */
        return (r = conn_stream_data(c, h, detail)) > 0 ? 2 : r;
    case PROTO_END:
        if (j == NULL || j->input != PROTO_INPUT_STREAM || j->input_ended)
            break;
        if (h->len != 0) {
            snprintf(detail, DETAIL_MAX, "an end frame has no payload");
            return COFFER_ERR_PROTO_FRAME;
        }
        j->input_ended = 1;
        return 1;
    case PROTO_HEALTH:
    case PROTO_STATS:
        if (j != NULL)
            break;
        if (h->len != 0) {
            snprintf(detail, DETAIL_MAX, "a %s request has no payload", proto_type_name(h->type));
            return COFFER_ERR_PROTO_FRAME;
        }
        if (uring_conn_out_room(c) < COFFER_FRAME_HEADER + COFFER_MAX_JSON / 16)
            return 0;
        r = conn_reply_json(c, h->type,
                            h->type == PROTO_HEALTH ? uring_report_health() : uring_report_stats());
        return r == 0 ? 1 : (r == 1 ? 0 : r);
    default:
        break;
    }
    snprintf(detail, DETAIL_MAX, "a %s frame is not allowed %s", proto_type_name(h->type),
             j == NULL ? "outside a job" : "during this job");
    return COFFER_ERR_PROTO_SEQUENCE;
}

/*
 * Pipelining: a JOB, HEALTH or STATS frame sent right behind a job's input (its END, or the JOB
 * frame of a descriptor job) waits in the input buffer until the job has ended, then is served.
 * Any other frame there is still PROTO_SEQUENCE at once (conn_frame).
 */
static int conn_frame_waits(const struct uring_conn *c)
{
    const struct uring_job *j = c->job;
    uint8_t type = c->in[c->in_start];
    if (j == NULL || (j->input == PROTO_INPUT_STREAM && !j->input_ended))
        return 0;
    return type == PROTO_JOB || type == PROTO_HEALTH || type == PROTO_STATS;
}

/*
 * Descriptors waiting and no later frame starts within the receive that brought them: the front
 * frame owns them.
 * A descriptor JOB frame takes them (frame_owns_fds); any other frame gets them closed at once
 * and fails the connection. Returns 0 to go on, 1 to wait for the JOB frame's payload, or a
 * negative coffer code.
 */
static int conn_frame_fds(struct uring_conn *c, const proto_header *h, size_t have, char *detail)
{
    const uint8_t *p = c->in + c->in_start + COFFER_FRAME_HEADER;
    c->frame_owns_fds = 0;
    if (c->nfds == 0 || c->in_start + COFFER_FRAME_HEADER + h->len < c->fds_end)
        return 0; /* a later frame starts before fds_end: the descriptors are its */
    if (h->type == PROTO_JOB && h->len >= 2 && have < COFFER_FRAME_HEADER + 2)
        return 1;
    if (h->type == PROTO_JOB && h->len >= 2 && c->hello_done && p[1] == PROTO_INPUT_FDS) {
        c->frame_owns_fds = 1;
        return 0;
    }
    conn_drop_fds(c);
    snprintf(detail, DETAIL_MAX,
             "descriptors came with a %s frame and were closed: only the JOB frame of a "
             "descriptor job (input 1) may carry them",
             h->type == PROTO_JOB ? "streamed job's" : proto_type_name(h->type));
    return COFFER_ERR_PROTO_FRAME;
}

/* Process complete frames at the front of the input. Returns 1 if anything moved. */
static int conn_input(struct uring_conn *c)
{
    char detail[DETAIL_MAX];
    int moved = 0;

    while (!c->close_after_flush && !c->closing) {
        proto_header h;
        size_t have = c->in_end - c->in_start;
        int r;
        /* busy first: while a helper runs the job's work, its state belongs to the helper */
        if (c->job != NULL && (c->job->work.busy || c->job->state == JOB_KEYWAIT))
            break;
        if (have < COFFER_FRAME_HEADER)
            break;
        detail[0] = '\0';
        if (conn_frame_waits(c))
            break;
        if ((r = proto_header_parse(c->in + c->in_start, &h)) != 0) {
            snprintf(detail, DETAIL_MAX,
                     r == COFFER_ERR_PROTO_TOO_BIG ? "a frame declared more than %u payload bytes"
                                                   : "the frame header is malformed (max %u)",
                     COFFER_MAX_FRAME);
            uring_conn_fail(c, r, detail);
            return 1;
        }
        if ((r = conn_frame_fds(c, &h, have, detail)) != 0) {
            if (r < 0)
                uring_conn_fail(c, r, detail);
            return 1;
        }
        if (have < COFFER_FRAME_HEADER + h.len)
            break;
        r = conn_frame(c, &h, c->in + c->in_start + COFFER_FRAME_HEADER, detail);
        c->frame_owns_fds = 0;
        if (r < 0) {
            uring_conn_fail(c, r, detail);
            return 1;
        }
        if (r == 0)
            break;
        if (r == 1) {
            c->in_start += COFFER_FRAME_HEADER + h.len;
            c->frame_pos = 0;
        }
        moved = 1;
    }
    return moved;
}

/* ---- job progress ---- */

int uring_conn_job_result(struct uring_conn *c)
{
    struct uring_job *j = c->job;
    proto_result res = {j->bytes_in, j->bytes_out, j->meta_out != NULL ? j->meta_out : "",
                        j->meta_out_len};
    size_t need = COFFER_FRAME_HEADER + 20 + j->meta_out_len, n = 0;
    uint8_t *p = uring_conn_out_reserve(c, need);

    if (p == NULL)
        return 0;
    if (proto_result_write(p, need, &res, &n) != 0) {
        uring_conn_fail(c, COFFER_ERR_INTERNAL, "result frame");
        return 1;
    }
    uring_conn_out_commit(c, n);
    atomic_fetch_add(&uring_srv.stats.jobs_ok, 1);
    atomic_fetch_add(&uring_srv.stats.bytes_in, j->bytes_in);
    atomic_fetch_add(&uring_srv.stats.bytes_out, j->bytes_out);
    uring_metrics_count_job(j->op, j->format, 1, j->bytes_in, j->bytes_out,
                            uring_now() - j->t_start);
    uring_log(URING_LOG_INFO, "job_done",
              "conn=%llu op=%s format=%s input=%s key_id=%s bytes_in=%llu bytes_out=%llu "
              "ms=%.1f",
              (unsigned long long)c->id, uring_job_op_name(j), engine_format_name(j->format),
              j->input == PROTO_INPUT_FDS ? "fds" : "stream",
              j->format == COFFER_FORMAT_NONE ? "-" : (j->key_id[0] ? j->key_id : "-"),
              (unsigned long long)j->bytes_in, (unsigned long long)j->bytes_out,
              (uring_now() - j->t_start) * 1000.0);
    conn_job_free(c);
    c->fail_err = 0;
    if (atomic_load(&uring_srv.stopping))
        c->close_after_flush = 1;
    return 1;
}

/* A streamed job whose input ended: finish, drain, result. Returns 1 if anything moved. */
static int conn_stream_tail(struct uring_conn *c)
{
    char detail[DETAIL_MAX];
    int moved = 0;

    while (c->job != NULL && c->job->input_ended && !c->close_after_flush && !c->job->work.busy) {
        struct uring_job *j = c->job;
        struct uring_work *wk = &j->work;
        enum uring_job_state before = j->state;
        size_t room, out_before = c->fill_len;
        if (j->state == JOB_DONE)
            return uring_conn_job_result(c) || moved;
        if (j->state == JOB_HEADER) {
            uring_conn_fail(c, uring_job_header_truncated(c, detail, DETAIL_MAX), detail);
            return 1;
        }
        if (j->state != JOB_RUN && j->state != JOB_DRAIN)
            break; /* waiting for the key */
        conn_submit_send(c);
        room = uring_conn_out_room(c);
        if (room < COFFER_FRAME_HEADER + URING_OUT_MIN ||
            (j->state == JOB_RUN && room < COFFER_FRAME_HEADER + engine_stream_bound(j->s, 0)))
            break;
        wk->tail = 1;
        wk->framed = 1;
        wk->nin = 0;
        wk->out = c->out[c->fill] + c->fill_len;
        wk->outcap = room;
        uring_conn_work_submit(c, !uring_job_offload(j, 0, 1));
        if (wk->busy)
            return 1;
        if (c->fill_len == out_before && j->state == before)
            break;
        moved = 1;
    }
    return moved;
}

/* Note when the front frame became partial (its first bytes in, not all of it): --frame-timeout. */
static void conn_partial_mark(struct uring_conn *c)
{
    size_t have = c->in_end - c->in_start;
    proto_header h;
    int partial = have > 0 && (have < COFFER_FRAME_HEADER ||
                               (proto_header_parse(c->in + c->in_start, &h) == 0 &&
                                have < COFFER_FRAME_HEADER + h.len));
    if (!partial)
        c->partial_since = 0;
    else if (c->partial_since == 0)
        c->partial_since = uring_now();
}

void uring_conn_pump(struct uring_conn *c)
{
    for (int rounds = 0; !c->closing && rounds < 64; rounds++) {
        int moved = conn_input(c);
        if (c->job != NULL && c->job->input == PROTO_INPUT_STREAM)
            moved |= conn_stream_tail(c);
        else if (c->job != NULL)
            moved |= uring_fdjob_pump(c);
        if (!c->send_inflight && c->send_off == c->send_len && c->fill_len > 0 &&
            !conn_work_busy(c))
            moved = 1;
        conn_submit_send(c);
        if (!moved)
            break;
    }
    if (!c->closing) {
        conn_submit_recv(c);
        if (c->close_after_flush && conn_output_idle(c) && !uring_fdjob_busy(c) &&
            !conn_work_busy(c))
            uring_conn_close(c, "error sent");
        else if (c->rd_eof && c->job == NULL && conn_output_idle(c))
            uring_conn_close(c, "peer closed");
        else if (atomic_load(&uring_srv.stopping) && c->job == NULL && conn_output_idle(c))
            uring_conn_close(c, "shutdown");
    }
    if (!c->closing)
        conn_partial_mark(c);
    if (c->closing && c->inflight == 0)
        conn_free(c);
}

/* Take descriptors passed with SCM_RIGHTS; anything unexpected is closed and fails the conn. */
static int conn_take_fds(struct uring_conn *c, int res)
{
    int r = 0, had = c->nfds;
    if (c->msg.msg_flags & MSG_CTRUNC)
        r = COFFER_ERR_PROTO_FRAME;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&c->msg); cm != NULL; cm = CMSG_NXTHDR(&c->msg, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        size_t n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
            if (r == 0 && had == 0 && c->nfds < (int)COFFER_MAX_FDS && !c->close_after_flush) {
                c->fds[c->nfds++] = fd;
            } else {
                uring_conn_close_fd(c, fd);
                r = COFFER_ERR_PROTO_FRAME;
            }
        }
    }
    if (c->nfds > had)
        c->fds_end = c->in_end + (size_t)res; /* they came with this receive's last bytes */
    return r;
}

void uring_conn_complete(struct uring_conn *c, enum uring_op op, int res, uint32_t cflags)
{
    struct uring_job *j = c->job;

    (void)cflags;
    c->inflight--;
    if (res > 0)
        c->last_progress = uring_now();
    switch (op) {
    case URING_OP_RECV:
        c->recv_inflight = 0;
        if (res >= 0 && conn_take_fds(c, res) != 0) {
            uring_conn_fail(c, COFFER_ERR_PROTO_FRAME, "unexpected or too many descriptors");
            break;
        }
        if (res > 0) {
            c->in_end += (size_t)res;
        } else if (res == 0 || c->closing) {
            c->rd_eof = 1;
            if (j != NULL && !c->closing && (j->input == PROTO_INPUT_FDS || !j->input_ended)) {
                uring_log(URING_LOG_WARN, "job_failed", "conn=%llu op=%s err=PEER_GONE",
                          (unsigned long long)c->id, uring_job_op_name(j));
                uring_conn_close(c, "peer gone mid-job");
            }
        } else {
            c->rd_eof = 1;
            if (j != NULL) /* e.g. ECONNRESET: the client vanished with our output unread */
                uring_log(URING_LOG_WARN, "job_failed", "conn=%llu op=%s err=PEER_GONE",
                          (unsigned long long)c->id, uring_job_op_name(j));
            uring_conn_close(c, "recv error");
        }
        break;
    case URING_OP_SEND:
        c->send_inflight = 0;
        if (res < 0) {
            if (!c->closing && j != NULL)
                uring_log(URING_LOG_WARN, "job_failed", "conn=%llu op=%s err=PEER_GONE",
                          (unsigned long long)c->id, uring_job_op_name(j));
            uring_conn_close(c, "send error");
            break;
        }
        c->send_off += (size_t)res;
        if (c->send_off == c->send_len)
            c->send_off = c->send_len = 0;
        break;
    case URING_OP_FREAD:
    case URING_OP_FSYNC:
        uring_fdjob_complete(c, op, res);
        break;
    default:
        if (op >= URING_OP_FWRITE && op < URING_OP_FWRITE_END)
            uring_fdjob_complete(c, op, res);
        break;
    }
    uring_conn_pump(c);
}

void uring_conn_key_done(struct uring_conn *c, struct uring_keyreq *req)
{
    char detail[DETAIL_MAX];
    int r;

    c->keyreq_pending = 0;
    if (c->job != NULL && c->job->state == JOB_KEYWAIT && !c->closing && !c->close_after_flush) {
        if ((r = uring_job_key_ready(c, req, detail, sizeof(detail))) != 0)
            uring_conn_fail(c, r, detail);
    }
    uring_conn_pump(c);
}

void uring_conn_stop(struct uring_conn *c)
{
    uring_conn_pump(c); /* closes it when idle; a running job finishes first */
}

void uring_conn_abort(struct uring_conn *c, int hard)
{
    char detail[DETAIL_MAX];
    if (hard) {
        uring_conn_close(c, "shutdown grace expired");
    } else if (c->job != NULL) {
        snprintf(detail, sizeof(detail),
                 "cofferd is stopping and the job did not finish within --shutdown-grace %d s",
                 uring_srv.cfg.shutdown_grace);
        uring_conn_fail(c, COFFER_ERR_SHUTDOWN, detail);
    }
    uring_conn_pump(c);
}

void uring_conn_tick(struct uring_conn *c, double now, int timeout)
{
    if (c->closing || conn_work_busy(c))
        return;
    if (now - c->last_progress > timeout && c->keyreq_pending && !c->close_after_flush) {
        /* issue 10 item 3: a key that does not load in time fails the job, not the loader */
        char detail[DETAIL_MAX];
        snprintf(detail, sizeof(detail), "the key did not load within --io-timeout %d s",
                 timeout);
        atomic_fetch_add(&uring_srv.stats.conns_timeout, 1);
        uring_conn_fail(c, COFFER_ERR_KEY_READ, detail);
        uring_conn_pump(c);
        return;
    }
    if (now - c->last_progress > timeout) {
        atomic_fetch_add(&uring_srv.stats.conns_timeout, 1);
        uring_log(URING_LOG_WARN, "conn_timeout", "conn=%llu op=%s idle_s=%.0f",
                  (unsigned long long)c->id, c->job != NULL ? uring_job_op_name(c->job) : "-",
                  now - c->last_progress);
        uring_conn_close(c, "timeout");
        uring_conn_pump(c);
    }
}

void uring_conn_tick_io(struct uring_conn *c, double now)
{
    char detail[DETAIL_MAX];
    struct uring_job *j = c->job;

    if (c->closing || c->close_after_flush || conn_work_busy(c))
        return;
    if (c->partial_since > 0 && c->recv_inflight &&
        now - c->partial_since > uring_srv.cfg.frame_timeout) {
        atomic_fetch_add(&uring_srv.stats.conns_timeout, 1);
        uring_log(URING_LOG_WARN, "frame_timeout", "conn=%llu uid=%u pid=%d frame_timeout_s=%d",
                  (unsigned long long)c->id, (unsigned)c->uid, (int)c->pid,
                  uring_srv.cfg.frame_timeout);
        snprintf(detail, sizeof(detail),
                 "a frame did not arrive whole within --frame-timeout %d s of its first byte; "
                 "send each frame at once",
                 uring_srv.cfg.frame_timeout);
        uring_conn_fail(c, COFFER_ERR_PROTO_FRAME, detail);
        c->last_progress = now; /* the error frame gets its own --io-timeout to go out */
        uring_conn_pump(c);
        return;
    }
    if (j != NULL && j->input == PROTO_INPUT_FDS && uring_fdjob_busy(c) &&
        now - c->last_progress > uring_srv.cfg.io_timeout) {
        atomic_fetch_add(&uring_srv.stats.conns_timeout, 1);
        snprintf(detail, sizeof(detail),
                 "%s made no progress for --io-timeout %d s (a stalled pipe, FIFO, socket or "
                 "filesystem); the job was stopped",
                 j->read_inflight ? "reading the input descriptor"
                 : j->fsync_inflight ? "syncing the output descriptor"
                                     : "writing the output descriptor",
                 uring_srv.cfg.io_timeout);
        uring_conn_fail(c, COFFER_ERR_IO, detail);
        c->last_progress = now;
        uring_conn_pump(c);
    }
}
