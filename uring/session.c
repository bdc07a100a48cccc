/* SPDX-License-Identifier: Apache-2.0 */
/* One connection's protocol as plain code: frames in, job output and results out (session.h). */
#include "session_int.h"

#include "coffer_error.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* The protocol core, used before its definitions. */
static void session_log(const struct session *s, int level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void session_fail(struct session *s, int err, const char *detail);
static size_t session_out_room(const struct session *s);
static void session_out_commit(struct session *s, size_t n);
/* The job is complete: queue its RESULT frame and free it. 1 if done, 0 if no room. */
static int session_job_result(struct session *s);
/* Run the job's work here (run_here) or hand it off; apply it when it is done here. */
static void session_work_submit(struct session *s, int run_here);
static void session_work_split(struct session *s);
/* 1 while the state is one of a job's (HEADER .. DONE) */
static int session_in_job(const struct session *s);

/* Descriptor jobs (the section at the end of this file). */
static int session_fd_begin(struct session *s);
static int session_fd_pump(struct session *s);
static void session_fd_complete(struct session *s, int op, int res);
static void session_fd_work_applied(struct session *s);
static int session_fd_busy(const struct session *s);
/* The env's fd_cancel if anything is out; the writes to a regular file only if `writes`. */
static void session_fd_cancel(struct session *s, int writes);

#define DETAIL_MAX SESSION_DETAIL_MAX

static const char *const state_names[] = {"hello", "idle",  "probe", "header", "keywait",
                                          "run",   "drain", "done",  "flush",  "closed"};

const char *session_state_name(enum session_state st)
{
    return (unsigned)st < sizeof(state_names) / sizeof(state_names[0]) ? state_names[st] : "?";
}

static void session_log(const struct session *s, int level, const char *event, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    s->ops->log(level, event, fmt, ap);
    va_end(ap);
}

static int session_in_job(const struct session *s)
{
    return s->state >= SESSION_PROBE && s->state <= SESSION_DONE;
}

static int work_busy(const struct session *s)
{
    return s->job != NULL && s->job->work.busy;
}

struct session *session_new(const struct session_ops *ops, void *owner, uint64_t id, unsigned uid,
                            int pid)
{
    struct session *s = ops->alloc(0, sizeof(*s));

    if (s == NULL)
        return NULL;
    memset(s, 0, sizeof(*s));
    s->ops = ops;
    /* half a page in: DATA payloads (page-aligned in the sender's skbs, 8 bytes after their
       frame header) then land far from the 1..63-byte distances that slow `rep movsb` */
    s->in_mem = ops->alloc(4096, SESSION_IN_CAP + 4096);
    s->in = s->in_mem != NULL ? s->in_mem + 2048 : NULL;
    s->out[0] = ops->alloc(4096, SESSION_OUT_HALF);
    s->out[1] = ops->alloc(4096, SESSION_OUT_HALF);
    if (s->in == NULL || s->out[0] == NULL || s->out[1] == NULL) {
        free(s->in_mem);
        free(s->out[0]);
        free(s->out[1]);
        free(s);
        return NULL;
    }
    s->owner = owner;
    s->id = id;
    s->uid = uid;
    s->pid = pid;
    s->state = SESSION_HELLO;
    s->last_progress = ops->now();
    return s;
}

void *session_owner(const struct session *s)
{
    return s->owner;
}

enum session_state session_state(const struct session *s)
{
    return s->state;
}

int session_finished(const struct session *s)
{
    const struct session_job *j = s->job;
    return s->state == SESSION_CLOSED && !s->recv_inflight && !s->send_inflight &&
           !s->probe_inflight &&
           (j == NULL ||
            (!j->work.busy && !j->read_inflight && j->writes_inflight == 0 && !j->fsync_inflight));
}

/* A failed job counts once in STATS and the metrics: when its ERROR is decided, or at close. */
static void job_count_failed(struct session *s, struct session_job *j)
{
    struct session_jobinfo info;
    if (j->failure_counted)
        return;
    j->failure_counted = 1;
    info.op = j->op;
    info.format = j->format;
    info.bytes_in = j->bytes_in;
    info.bytes_out = j->bytes_out;
    info.seconds = s->ops->now() - j->t_start;
    s->ops->count(SESSION_COUNT_JOB_FAILED, 0, &info);
}

/* Close descriptors the client sent (through the env: see session_ops.fd_close). */
static void drop_fds(struct session *s)
{
    for (int i = 0; i < s->nfds; i++)
        s->ops->fd_close(s, s->fds[i]);
    s->nfds = 0;
    s->fds_end = 0;
    s->probed = 0;
}

static void job_free(struct session *s)
{
    struct session_job *j = s->job;
    s->job = NULL;
    session_job_free(s, j);
}

void session_free(struct session *s)
{
    if (s == NULL)
        return;
    drop_fds(s);
    if (s->job != NULL) {
        job_count_failed(s, s->job); /* a job the client left without an ERROR */
        job_free(s);
    }
    free(s->in_mem);
    free(s->out[0]);
    free(s->out[1]);
    free(s);
}

static void session_close(struct session *s, const char *why)
{
    if (s->state == SESSION_CLOSED)
        return;
    s->state = SESSION_CLOSED;
    session_log(s, SESSION_LOG_DEBUG, "conn_closing", "conn=%llu why=%s", (unsigned long long)s->id,
                why);
    s->ops->shutdown(s); /* completes our recv/send in flight */
    session_fd_cancel(s, 1);
}

static size_t session_out_room(const struct session *s)
{
    return SESSION_OUT_HALF - s->fill_len;
}

static uint8_t *out_reserve(struct session *s, size_t n)
{
    if (session_out_room(s) < n)
        return NULL;
    return s->out[s->fill] + s->fill_len;
}

static void session_out_commit(struct session *s, size_t n)
{
    s->fill_len += n;
}

static void session_fail(struct session *s, int err, const char *detail)
{
    char msg[COFFER_MAX_MESSAGE];
    uint8_t *p;
    size_t n = 0;
    struct session_job *j = s->job;

    if (s->state == SESSION_CLOSED || (s->state == SESSION_FLUSH && s->fail_err == 0))
        return;
    if (!work_busy(s) && j != NULL && s->fill_len > s->job_mark)
        s->fill_len = s->job_mark; /* the failed job's output waiting: dropped, never sent */
    if (work_busy(s) || session_out_room(s) < COFFER_FRAME_HEADER + 6 + COFFER_MAX_MESSAGE) {
        /*
         * The helper thread owns the output buffer (fail when the work comes back), or the
         * frames before the failed job's (an earlier job's RESULT, replies) fill it: they go out
         * first, then the ERROR (session_pump tries again).
         */
        if (s->fail_err == 0) {
            s->fail_err = err;
            snprintf(s->fail_detail, sizeof(s->fail_detail), "%s", detail != NULL ? detail : "");
        }
        s->state = SESSION_FLUSH;
        session_fd_cancel(s, 0); /* the writes out finish: the output stays a prefix */
        return;
    }
    s->fail_err = 0;
    session_log(s, SESSION_LOG_WARN, j != NULL ? "job_failed" : "conn_error",
                "conn=%llu op=%s format=%s err=%s bytes_in=%llu bytes_out=%llu detail=%s",
                (unsigned long long)s->id, j != NULL ? session_job_op_name(j) : "-",
                j != NULL ? engine_format_name(j->format) : "-", coffer_errname(err),
                (unsigned long long)(j != NULL ? j->bytes_in : 0),
                (unsigned long long)(j != NULL ? j->bytes_out : 0), detail != NULL ? detail : "");
    s->ops->count(SESSION_COUNT_ERROR, err, NULL);
    if (j != NULL)
        job_count_failed(s, j); /* before the client can see the ERROR */
    if (detail != NULL && detail[0] != '\0')
        snprintf(msg, sizeof(msg), "%s: %s", coffer_strerror(err), detail);
    else
        snprintf(msg, sizeof(msg), "%s", coffer_strerror(err));
    /* frames before the job's output (a pipelined earlier job's RESULT) still go out first */
    s->state = SESSION_FLUSH;
    p = out_reserve(s, COFFER_FRAME_HEADER + 6 + COFFER_MAX_MESSAGE);
    if (p != NULL && proto_error_write(p, session_out_room(s), err, msg, &n) == 0)
        session_out_commit(s, n);
    session_fd_cancel(s, 0); /* the writes out finish: the output stays a prefix */
}

/* ---- actions: receive and send ---- */

static void submit_recv(struct session *s)
{
    size_t room;

    if (s->recv_inflight || s->rd_eof || s->state == SESSION_CLOSED || s->state == SESSION_FLUSH)
        return;
    if (s->nfds > 0 && s->job != NULL)
        return; /* descriptors wait for the next job: nothing more until they are taken */
    if (work_busy(s)) {
        /* the helper reads frames in place: no compaction until it is back */
    } else if (s->in_start == s->in_end) {
        s->in_start = s->in_end = 0;
        s->fds_end = 0;
    } else if (s->in_start > 0 &&
               SESSION_IN_CAP - s->in_end < COFFER_FRAME_HEADER + COFFER_MAX_FRAME) {
        memmove(s->in, s->in + s->in_start, s->in_end - s->in_start);
        s->in_end -= s->in_start;
        s->fds_end = s->fds_end > s->in_start ? s->fds_end - s->in_start : 0;
        s->in_start = 0;
    }
    room = SESSION_IN_CAP - s->in_end;
    if (room == 0)
        return;
    s->recv_inflight = 1;
    s->ops->recv(s, s->in + s->in_end, room);
}

static void submit_send(struct session *s)
{
    int idx;

    if (s->send_inflight || s->state == SESSION_CLOSED)
        return;
    if (s->send_off == s->send_len) {
        if (s->fill_len == 0 || work_busy(s))
            return; /* a busy helper is still filling this half */
        if (s->state == SESSION_FLUSH && session_fd_busy(s))
            return; /* a failed job's ERROR waits until its descriptor reads and writes have
                     * ended: the client must not see the end of the job while output is still
                     * landing in its file (an earlier piece after a later one leaves a hole) */
        s->send_len = s->fill_len;
        s->send_off = 0;
        s->fill ^= 1;
        s->fill_len = 0;
        s->job_mark = 0;
    }
    idx = s->fill ^ 1;
    s->send_inflight = 1;
    s->ops->send(s, s->out[idx] + s->send_off, s->send_len - s->send_off);
}

static int output_idle(const struct session *s)
{
    return !s->send_inflight && s->send_off == s->send_len && s->fill_len == 0;
}

/* ---- frames ---- */

/* HEALTH or STATS: 0 queued, 1 no room yet, or a negative coffer code. */
static int reply_json(struct session *s, uint8_t type)
{
    int r = COFFER_ERR_NOMEM;
    char *text = s->ops->report(type);
    size_t len = text != NULL ? strlen(text) : 0, n = 0;
    uint8_t *p;

    if (text == NULL)
        goto out;
    if (len > COFFER_MAX_JSON) {
        r = COFFER_ERR_INTERNAL;
        goto out;
    }
    if ((p = out_reserve(s, COFFER_FRAME_HEADER + len)) == NULL) {
        r = 1; /* no room yet: retry when the send buffer frees */
        goto out;
    }
    if ((r = proto_frame_write(p, session_out_room(s), type, text, len, &n)) == 0)
        session_out_commit(s, n);
out:
    free(text);
    return r;
}

/*
 * A JOB frame. A descriptor job first learns where its files stand (PROBE: the env asks off the
 * owner thread, since lseek waits for the file's position lock); the frame stays at the front of
 * the input and is handled again once the positions came. Returns 0 when the job started (or
 * waits for the probe), else a coffer code.
 */
static int job_begin(struct session *s, const uint8_t *p, size_t len, char *detail)
{
    proto_job pj;
    int r = proto_job_parse(p, len, &pj);

    if (r != 0) {
        snprintf(detail, DETAIL_MAX, "the job frame could not be parsed");
        return r;
    }
    if (s->ops->stopping() && !s->probed)
        return COFFER_ERR_SHUTDOWN; /* a job whose probe went out before the stop was taken */
    if (pj.input == PROTO_INPUT_FDS && (!s->frame_owns_fds || s->nfds != 2)) {
        snprintf(detail, DETAIL_MAX,
                 "a descriptor job needs exactly two descriptors (input, "
                 "output) sent with SCM_RIGHTS alongside the job frame");
        return COFFER_ERR_PROTO_FRAME;
    }
    if (pj.input == PROTO_INPUT_STREAM && s->frame_owns_fds) {
        snprintf(detail, DETAIL_MAX, "descriptors were sent with a streamed job");
        return COFFER_ERR_PROTO_FRAME;
    }
    if (pj.input == PROTO_INPUT_FDS && !s->probed) {
        if ((r = s->ops->fd_check(s->fds[0], s->fds[1], detail, DETAIL_MAX)) != 0)
            return r;
        s->state = SESSION_PROBE;
        s->probe_inflight = 1;
        s->ops->fd_probe(s, s->fds[0], s->fds[1]);
        return 0;
    }
    s->job_mark = s->fill_len; /* the job's output starts here (session_fail) */
    r = session_job_start(s, &pj, detail, DETAIL_MAX);
    if (pj.input == PROTO_INPUT_FDS && s->job != NULL) {
        /* the job owns the descriptors now, started or not (it closes them when freed) */
        struct session_job *j = s->job;
        j->in_fd = s->fds[0];
        j->out_fd = s->fds[1];
        s->nfds = 0;
        s->probed = 0;
        if (r == 0)
            r = session_fd_begin(s);
    }
    if (r == 0)
        session_log(s, SESSION_LOG_DEBUG, "job_start", "conn=%llu op=%s format=%s input=%s",
                    (unsigned long long)s->id, session_job_op_name(s->job),
                    engine_format_name(s->job->format),
                    pj.input == PROTO_INPUT_FDS ? "fds" : "stream");
    return r;
}

/* Take the results of the job's work: output produced, input consumed, state, error. */
static void work_applied(struct session *s)
{
    struct session_job *j = s->job;
    struct session_work *wk = &j->work;

    if (s->fail_err != 0) {
        int err = s->fail_err;
        s->state = SESSION_RUN; /* (any job state: session_fail only looks at FLUSH, CLOSED) */
        session_fail(s, err, s->fail_detail);
        return;
    }
    if (s->state == SESSION_CLOSED || s->state == SESSION_FLUSH)
        return;
    s->state = wk->st;
    if (j->input == PROTO_INPUT_FDS) {
        session_fd_work_applied(s);
    } else {
        session_out_commit(s, wk->produced);
        for (int i = 0; !wk->tail && i < wk->nin; i++) {
            if (wk->used[i] < wk->inlen[i]) {
                s->frame_pos += wk->used[i];
                break;
            }
            /* the frame is done: its length is its header's */
            s->in_start += COFFER_FRAME_HEADER + s->frame_pos + wk->inlen[i];
            s->frame_pos = 0;
        }
    }
    if (wk->err != 0)
        session_fail(s, wk->err, wk->detail);
}

static void work_to_helper(struct session *s, int split)
{
    struct session_work *wk = &s->job->work;

    wk->busy = 1;
    s->ops->count(SESSION_COUNT_HELPER, 0, NULL);
    s->ops->work(s, wk, split);
}

static void session_work_submit(struct session *s, int run_here)
{
    struct session_work *wk = &s->job->work;

    wk->st = s->state;
    if (run_here) {
        session_work_run(wk);
        work_applied(s);
        return;
    }
    work_to_helper(s, 0);
}

/*
 * The job's work split: the batch's whole chunks are cut into spans (engine_stream_update_spans,
 * two per input), half of them run elsewhere while this thread runs the other half, so one
 * large job's cipher uses two cores; the work applies when both halves are done.
 */
static void session_work_split(struct session *s)
{
    struct session_work *wk = &s->job->work;

    wk->st = s->state;
    wk->split = 1;
    session_work_run(wk); /* the serial parts; whole chunks become spans */
    wk->split = 0;
    if (wk->err != 0 || wk->nspans < 2) {
        for (size_t i = 0; i < wk->nspans; i++)
            engine_span_run(&wk->spans[i]);
        session_job_work_join(wk);
        work_applied(s);
        return;
    }
    s->ops->count(SESSION_COUNT_SPLIT, 0, NULL);
    work_to_helper(s, 1);
    for (size_t i = 0; i < wk->nspans / 2; i++)
        engine_span_run(&wk->spans[i]); /* meanwhile, the first half here */
}

void session_work_done(struct session *s)
{
    if (s->job == NULL || !s->job->work.busy)
        return;
    s->job->work.busy = 0;
    s->last_progress = s->ops->now();
    if (s->state != SESSION_CLOSED) {
        session_job_work_join(&s->job->work);
        work_applied(s);
    }
    session_pump(s);
}

/*
 * The front of the input is a complete DATA frame of a streamed job: feed the coffer-v1 header
 * reader, or hand the DATA frames that are in to the cipher (inline or on a helper). Returns 1
 * if anything moved or work went out, 0 to wait, or a negative coffer code.
 */
static int stream_data(struct session *s, const proto_header *front, char *detail)
{
    struct session_job *j = s->job;
    struct session_work *wk = &j->work;
    size_t pos = s->in_start, total = 0, room, need, out_before;
    size_t in_before = s->in_start, pos_before = s->frame_pos;
    int r;

    if (s->state == SESSION_HEADER) {
        size_t used = 0;
        r = session_job_feed_header(s, s->in + s->in_start + COFFER_FRAME_HEADER + s->frame_pos,
                                    front->len - s->frame_pos, &used, detail, DETAIL_MAX);
        if (r != 0)
            return r;
        s->frame_pos += used;
        if (s->frame_pos == front->len) {
            s->in_start += COFFER_FRAME_HEADER + front->len;
            s->frame_pos = 0;
        }
        return 1;
    }
    if (s->state != SESSION_RUN)
        return 0;
    wk->nin = 0;
    while (wk->nin < SESSION_WORK_SLICES && s->in_end - pos >= COFFER_FRAME_HEADER) {
        proto_header h;
        size_t skip = wk->nin == 0 ? s->frame_pos : 0;
        if (proto_header_parse(s->in + pos, &h) != 0 || h.type != PROTO_DATA ||
            s->in_end - pos - COFFER_FRAME_HEADER < h.len)
            break;
        wk->in[wk->nin] = s->in + pos + COFFER_FRAME_HEADER + skip;
        wk->inlen[wk->nin] = h.len - skip;
        total += h.len - skip;
        wk->nin++;
        pos += COFFER_FRAME_HEADER + h.len;
    }
    submit_send(s); /* hand the filled half to the socket first if it is free */
    room = session_out_room(s);
    need =
        COFFER_FRAME_HEADER +
        engine_stream_bound(j->s, wk->inlen[0] < SESSION_OUT_MIN ? wk->inlen[0] : SESSION_OUT_MIN);
    if (room < need || room < COFFER_FRAME_HEADER + SESSION_OUT_MIN)
        return 0;
    wk->tail = 0;
    wk->framed = 1;
    wk->out = s->out[s->fill] + s->fill_len;
    wk->outcap = room;
    out_before = s->fill_len;
    session_work_submit(s, !session_job_offload(s, j, total, 0));
    return wk->busy || s->in_start != in_before || s->frame_pos != pos_before ||
           s->fill_len != out_before || s->state == SESSION_FLUSH;
}

/*
 * Handle the frame at the front of the input. Returns 1 when it was consumed, 2 when DATA moved
 * on by itself, 0 to retry later, or a negative coffer code (detail says more).
 */
static int frame(struct session *s, const proto_header *h, const uint8_t *p, char *detail)
{
    struct session_job *j = s->job;
    int r = 0;

    if (s->state == SESSION_HELLO) {
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
        if ((out = out_reserve(s, 64)) == NULL)
            return 0;
        if ((r = proto_hello_write(out, 64, &mine, &n)) != 0)
            return r;
        session_out_commit(s, n);
        s->state = SESSION_IDLE;
        return 1;
    }
    switch (h->type) {
    case PROTO_JOB:
        if (j != NULL)
            break;
        if ((r = job_begin(s, p, h->len, detail)) != 0)
            return r;
        return s->state == SESSION_PROBE ? 0 : 1;
    case PROTO_DATA:
        if (j == NULL || j->input != PROTO_INPUT_STREAM || j->input_ended)
            break;
        /* stream_data moves in_start itself */
        return (r = stream_data(s, h, detail)) > 0 ? 2 : r;
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
        if (session_out_room(s) < COFFER_FRAME_HEADER + COFFER_MAX_JSON / 16)
            return 0;
        r = reply_json(s, h->type);
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
 * Any other frame there is still PROTO_SEQUENCE at once (frame).
 */
static int frame_waits(const struct session *s)
{
    const struct session_job *j = s->job;
    uint8_t type = s->in[s->in_start];
    if (j == NULL || (j->input == PROTO_INPUT_STREAM && !j->input_ended))
        return 0;
    return type == PROTO_JOB || type == PROTO_HEALTH || type == PROTO_STATS;
}

/*
 * Descriptors waiting and no later frame starts within the receive that brought them: the front
 * frame owns them. A descriptor JOB frame takes them (frame_owns_fds); any other frame gets them
 * closed at once and fails the connection. Returns 0 to go on, 1 to wait for the JOB frame's
 * payload, or a negative coffer code.
 */
static int frame_fds(struct session *s, const proto_header *h, size_t have, char *detail)
{
    const uint8_t *p = s->in + s->in_start + COFFER_FRAME_HEADER;
    s->frame_owns_fds = 0;
    if (s->nfds == 0 || s->in_start + COFFER_FRAME_HEADER + h->len < s->fds_end)
        return 0; /* a later frame starts before fds_end: the descriptors are its */
    if (h->type == PROTO_JOB && h->len >= 2 && have < COFFER_FRAME_HEADER + 2)
        return 1;
    if (h->type == PROTO_JOB && h->len >= 2 && s->state != SESSION_HELLO &&
        p[1] == PROTO_INPUT_FDS) {
        s->frame_owns_fds = 1;
        return 0;
    }
    drop_fds(s);
    snprintf(detail, DETAIL_MAX,
             "descriptors came with a %s frame and were closed: only the JOB frame of a "
             "descriptor job (input 1) may carry them",
             h->type == PROTO_JOB ? "streamed job's" : proto_type_name(h->type));
    return COFFER_ERR_PROTO_FRAME;
}

/* Process complete frames at the front of the input. Returns 1 if anything moved. */
static int input(struct session *s)
{
    char detail[DETAIL_MAX];
    int moved = 0;

    while (s->state != SESSION_FLUSH && s->state != SESSION_CLOSED) {
        proto_header h;
        size_t have = s->in_end - s->in_start;
        int r;
        /* busy first: while a helper runs the job's work, its state belongs to the helper */
        if (work_busy(s) || s->state == SESSION_KEYWAIT || s->state == SESSION_PROBE)
            break;
        if (have < COFFER_FRAME_HEADER)
            break;
        detail[0] = '\0';
        if (frame_waits(s))
            break;
        if ((r = proto_header_parse(s->in + s->in_start, &h)) != 0) {
            snprintf(detail, DETAIL_MAX,
                     r == COFFER_ERR_PROTO_TOO_BIG ? "a frame declared more than %u payload bytes"
                                                   : "the frame header is malformed (max %u)",
                     COFFER_MAX_FRAME);
            session_fail(s, r, detail);
            return 1;
        }
        if ((r = frame_fds(s, &h, have, detail)) != 0) {
            if (r < 0)
                session_fail(s, r, detail);
            return 1;
        }
        if (have < COFFER_FRAME_HEADER + h.len)
            break;
        r = frame(s, &h, s->in + s->in_start + COFFER_FRAME_HEADER, detail);
        s->frame_owns_fds = 0;
        if (r < 0) {
            session_fail(s, r, detail);
            return 1;
        }
        if (r == 0)
            break;
        if (r == 1) {
            s->in_start += COFFER_FRAME_HEADER + h.len;
            s->frame_pos = 0;
        }
        moved = 1;
    }
    return moved;
}

/* ---- job progress ---- */

static int session_job_result(struct session *s)
{
    struct session_job *j = s->job;
    proto_result res = {j->bytes_in, j->bytes_out, j->meta_out != NULL ? j->meta_out : "",
                        j->meta_out_len};
    size_t need = COFFER_FRAME_HEADER + 20 + j->meta_out_len, n = 0;
    uint8_t *p = out_reserve(s, need);
    struct session_jobinfo info;
    double now;

    if (p == NULL)
        return 0;
    if (proto_result_write(p, need, &res, &n) != 0) {
        session_fail(s, COFFER_ERR_INTERNAL, "result frame");
        return 1;
    }
    session_out_commit(s, n);
    now = s->ops->now();
    info.op = j->op;
    info.format = j->format;
    info.bytes_in = j->bytes_in;
    info.bytes_out = j->bytes_out;
    info.seconds = now - j->t_start;
    s->ops->count(SESSION_COUNT_JOB_OK, 0, &info);
    session_log(s, SESSION_LOG_INFO, "job_done",
                "conn=%llu op=%s format=%s input=%s key_id=%s bytes_in=%llu bytes_out=%llu "
                "ms=%.1f",
                (unsigned long long)s->id, session_job_op_name(j), engine_format_name(j->format),
                j->input == PROTO_INPUT_FDS ? "fds" : "stream",
                j->format == COFFER_FORMAT_NONE ? "-" : (j->key_id[0] ? j->key_id : "-"),
                (unsigned long long)j->bytes_in, (unsigned long long)j->bytes_out,
                (now - j->t_start) * 1000.0);
    job_free(s);
    s->fail_err = 0;
    s->state = s->ops->stopping() ? SESSION_FLUSH : SESSION_IDLE;
    return 1;
}

/* A streamed job whose input ended: finish, drain, result. Returns 1 if anything moved. */
static int stream_tail(struct session *s)
{
    char detail[DETAIL_MAX];
    int moved = 0;

    while (s->job != NULL && s->job->input_ended && session_in_job(s) && !s->job->work.busy) {
        struct session_job *j = s->job;
        struct session_work *wk = &j->work;
        enum session_state before = s->state;
        size_t room, out_before = s->fill_len;
        if (s->state == SESSION_DONE)
            return session_job_result(s) || moved;
        if (s->state == SESSION_HEADER) {
            session_fail(s, session_job_header_truncated(s, detail, DETAIL_MAX), detail);
            return 1;
        }
        if (s->state != SESSION_RUN && s->state != SESSION_DRAIN)
            break; /* waiting for the key */
        submit_send(s);
        room = session_out_room(s);
        if (room < COFFER_FRAME_HEADER + SESSION_OUT_MIN ||
            (s->state == SESSION_RUN && room < COFFER_FRAME_HEADER + engine_stream_bound(j->s, 0)))
            break;
        wk->tail = 1;
        wk->framed = 1;
        wk->nin = 0;
        wk->out = s->out[s->fill] + s->fill_len;
        wk->outcap = room;
        session_work_submit(s, !session_job_offload(s, j, 0, 1));
        if (wk->busy)
            return 1;
        if (s->fill_len == out_before && s->state == before)
            break;
        moved = 1;
    }
    return moved;
}

/* Note when the front frame became partial (its first bytes in, not all of it): --frame-timeout. */
static void partial_mark(struct session *s)
{
    size_t have = s->in_end - s->in_start;
    proto_header h;
    int partial =
        have > 0 &&
        (have < COFFER_FRAME_HEADER ||
         (proto_header_parse(s->in + s->in_start, &h) == 0 && have < COFFER_FRAME_HEADER + h.len));
    if (!partial)
        s->partial_since = 0;
    else if (s->partial_since == 0)
        s->partial_since = s->ops->now();
}

void session_pump(struct session *s)
{
    if (s->state == SESSION_FLUSH && s->fail_err != 0 && !work_busy(s))
        session_fail(s, s->fail_err, s->fail_detail); /* the deferred ERROR, if it fits now */
    for (int rounds = 0; s->state != SESSION_CLOSED && rounds < 64; rounds++) {
        int moved = input(s);
        if (s->job != NULL && s->job->input == PROTO_INPUT_STREAM)
            moved |= stream_tail(s);
        else if (s->job != NULL)
            moved |= session_fd_pump(s);
        if (!s->send_inflight && s->send_off == s->send_len && s->fill_len > 0 && !work_busy(s))
            moved = 1;
        submit_send(s);
        if (!moved)
            break;
    }
    if (s->state != SESSION_CLOSED) {
        submit_recv(s);
        if (s->state == SESSION_FLUSH && s->fail_err == 0 && output_idle(s) &&
            !session_fd_busy(s) && !work_busy(s))
            session_close(s, "error sent");
        else if (s->rd_eof && s->job == NULL && output_idle(s))
            session_close(s, "peer closed");
        else if (s->ops->stopping() && s->job == NULL && s->state != SESSION_PROBE &&
                 output_idle(s))
            session_close(s, "shutdown"); /* a job in its probe was taken: it runs */
    }
    if (s->state != SESSION_CLOSED)
        partial_mark(s);
}

/* ---- input from the ring layer ---- */

/* Take descriptors passed with SCM_RIGHTS; anything unexpected is closed and fails the session. */
static int take_fds(struct session *s, int res, const int *fds, int nfds, int ctrunc)
{
    int r = ctrunc ? COFFER_ERR_PROTO_FRAME : 0, had = s->nfds;
    for (int i = 0; i < nfds; i++) {
        if (r == 0 && had == 0 && s->nfds < (int)SESSION_MAX_FDS && s->state != SESSION_FLUSH &&
            s->state != SESSION_CLOSED) {
            s->fds[s->nfds++] = fds[i];
        } else {
            s->ops->fd_close(s, fds[i]);
            r = COFFER_ERR_PROTO_FRAME;
        }
    }
    if (s->nfds > had)
        s->fds_end = s->in_end + (size_t)(res > 0 ? res : 0); /* with this receive's last bytes */
    return r;
}

static void peer_gone(struct session *s)
{
    session_log(s, SESSION_LOG_WARN, "job_failed", "conn=%llu op=%s err=PEER_GONE",
                (unsigned long long)s->id, session_job_op_name(s->job));
}

void session_received(struct session *s, int res, const int *fds, int nfds, int ctrunc)
{
    struct session_job *j = s->job;
    int closed = s->state == SESSION_CLOSED;

    s->recv_inflight = 0;
    if (res > 0)
        s->last_progress = s->ops->now();
    if (res > 0 && (size_t)res > SESSION_IN_CAP - s->in_end)
        res = (int)(SESSION_IN_CAP - s->in_end); /* never more than the room given */
    if (res >= 0 && take_fds(s, res, fds, nfds, ctrunc) != 0) {
        session_fail(s, COFFER_ERR_PROTO_FRAME, "unexpected or too many descriptors");
        goto out;
    }
    if (res < 0) {
        for (int i = 0; i < nfds; i++)
            s->ops->fd_close(s, fds[i]);
    }
    if (res > 0) {
        s->in_end += (size_t)res;
    } else if (res == 0 || closed) {
        s->rd_eof = 1;
        if (j != NULL && !closed && s->state != SESSION_FLUSH &&
            (j->input == PROTO_INPUT_FDS || !j->input_ended)) {
            peer_gone(s);
            session_close(s, "peer gone mid-job");
        }
    } else {
        s->rd_eof = 1;
        if (j != NULL) /* e.g. ECONNRESET: the client vanished with our output unread */
            peer_gone(s);
        session_close(s, "recv error");
    }
out:
    session_pump(s);
}

void session_sent(struct session *s, int res)
{
    s->send_inflight = 0;
    if (res > 0)
        s->last_progress = s->ops->now();
    if (res < 0) {
        if (s->state != SESSION_CLOSED && s->job != NULL)
            peer_gone(s);
        session_close(s, "send error");
    } else {
        if ((size_t)res > s->send_len - s->send_off)
            res = (int)(s->send_len - s->send_off); /* never more than was handed over */
        s->send_off += (size_t)res;
        if (s->send_off == s->send_len)
            s->send_off = s->send_len = 0;
    }
    session_pump(s);
}

void session_fd_done(struct session *s, int op, int res)
{
    if (res > 0)
        s->last_progress = s->ops->now();
    session_fd_complete(s, op, res);
    session_pump(s);
}

void session_probed(struct session *s, uint64_t in_pos, uint64_t out_pos, int out_regular)
{
    if (!s->probe_inflight)
        return;
    s->probe_inflight = 0;
    s->last_progress = s->ops->now();
    if (s->state == SESSION_PROBE) {
        s->probe_in_pos = in_pos;
        s->probe_out_pos = out_pos;
        s->probe_out_regular = out_regular;
        s->probed = 1;
        s->state = SESSION_IDLE; /* the JOB frame at the front is handled again */
    }
    session_pump(s);
}

void session_key_done(struct session *s, const void *answer)
{
    char detail[DETAIL_MAX];
    int r;

    if (s->job != NULL && s->state == SESSION_KEYWAIT) {
        if ((r = session_job_key_ready(s, answer, detail, sizeof(detail))) != 0)
            session_fail(s, r, detail);
    }
    session_pump(s);
}

void session_stop(struct session *s)
{
    session_pump(s); /* closes it when idle; a running job finishes first */
}

void session_abort(struct session *s, int hard)
{
    char detail[DETAIL_MAX];
    struct session_config cfg;
    if (hard) {
        session_close(s, "shutdown grace expired");
    } else if (s->job != NULL) {
        s->ops->config(&cfg);
        snprintf(detail, sizeof(detail),
                 "cofferd is stopping and the job did not finish within --shutdown-grace %d s",
                 cfg.shutdown_grace);
        session_fail(s, COFFER_ERR_SHUTDOWN, detail);
    }
    session_pump(s);
}

void session_tick(struct session *s, double now, int timeout)
{
    if (s->state == SESSION_CLOSED || work_busy(s))
        return;
    if (now - s->last_progress > timeout && s->state == SESSION_KEYWAIT) {
        /* issue 10 item 3: a key that does not load in time fails the job, not the loader */
        char detail[DETAIL_MAX];
        snprintf(detail, sizeof(detail), "the key did not load within --io-timeout %d s", timeout);
        s->ops->count(SESSION_COUNT_TIMEOUT, 0, NULL);
        session_fail(s, COFFER_ERR_KEY_READ, detail);
        session_pump(s);
        return;
    }
    if (now - s->last_progress > timeout) {
        s->ops->count(SESSION_COUNT_TIMEOUT, 0, NULL);
        session_log(s, SESSION_LOG_WARN, "conn_timeout", "conn=%llu op=%s idle_s=%.0f",
                    (unsigned long long)s->id, s->job != NULL ? session_job_op_name(s->job) : "-",
                    now - s->last_progress);
        session_close(s, "timeout");
        session_pump(s);
    }
}

void session_tick_io(struct session *s, double now)
{
    char detail[DETAIL_MAX];
    struct session_job *j = s->job;
    struct session_config cfg;

    if (s->state == SESSION_CLOSED || work_busy(s))
        return;
    s->ops->config(&cfg);
    if (s->state == SESSION_FLUSH) {
        /* a failed job's writes, left to finish, made no progress: now they are cancelled */
        if (j != NULL && j->writes_inflight > 0 && now - s->last_progress > cfg.io_timeout) {
            session_fd_cancel(s, 1);
            s->last_progress = now;
        }
        return;
    }
    if (s->partial_since > 0 && s->recv_inflight && now - s->partial_since > cfg.frame_timeout) {
        s->ops->count(SESSION_COUNT_TIMEOUT, 0, NULL);
        session_log(s, SESSION_LOG_WARN, "frame_timeout",
                    "conn=%llu uid=%u pid=%d frame_timeout_s=%d", (unsigned long long)s->id, s->uid,
                    s->pid, cfg.frame_timeout);
        snprintf(detail, sizeof(detail),
                 "a frame did not arrive whole within --frame-timeout %d s of its first byte; "
                 "send each frame at once",
                 cfg.frame_timeout);
        session_fail(s, COFFER_ERR_PROTO_FRAME, detail);
        s->last_progress = now; /* the error frame gets its own --io-timeout to go out */
        session_pump(s);
        return;
    }
    if (j != NULL && j->input == PROTO_INPUT_FDS && session_fd_busy(s) &&
        now - s->last_progress > cfg.io_timeout) {
        s->ops->count(SESSION_COUNT_TIMEOUT, 0, NULL);
        snprintf(detail, sizeof(detail),
                 "%s made no progress for --io-timeout %d s (a stalled pipe, FIFO, socket or "
                 "filesystem); the job was stopped",
                 j->read_inflight    ? "reading the input descriptor"
                 : j->fsync_inflight ? "syncing the output descriptor"
                                     : "writing the output descriptor",
                 cfg.io_timeout);
        session_fail(s, COFFER_ERR_IO, detail);
        session_fd_cancel(s, 1); /* the stalled write too */
        s->last_progress = now;
        session_pump(s);
    }
}

/* ---- descriptor jobs: cofferd reads the input and writes the output itself, pipelined ---- */

/*
 * The job's descriptors and their positions (session_probed) are known: take buffers. Regular
 * files are read and written at explicit offsets from their current position (the shared file
 * position is left alone); pipes, sockets, /dev/null and an O_APPEND output use the file
 * position (-1), one write at a time.
 */
static int session_fd_begin(struct session *s)
{
    struct session_job *j = s->job;
    struct session_config cfg;
    size_t piece, big;

    s->ops->config(&cfg);
    piece = (size_t)cfg.fd_piece;
    big = SESSION_FILE_BUFS * (2 * piece + SESSION_FILE_WEXTRA);
    j->in_pos = s->probe_in_pos;
    j->out_pos = s->probe_out_pos;
    /* FSYNC means something only for a regular file: a pipe, socket or /dev/null has nothing to
       sync (fsync would fail with EINVAL after all output was written) */
    if ((j->flags & PROTO_JOB_FSYNC) && !s->probe_out_regular)
        j->fsynced = 1;
    if (s->ops->fdbuf_take(big)) {
        j->budget_held = big;
        j->nbufs = SESSION_FILE_BUFS;
        j->piece = piece;
    } else {
        s->ops->count(SESSION_COUNT_FD_SMALL, 0, NULL);
        j->nbufs = 2;
        j->piece = SESSION_FILE_SMALL;
    }
    j->wcap = j->piece + SESSION_FILE_WEXTRA;
    for (unsigned i = 0; i < j->nbufs; i++) {
        if ((j->fin[i].p = session_buf_alloc(s, j->piece)) == NULL ||
            (j->fout[i].p = session_buf_alloc(s, j->wcap)) == NULL)
            return COFFER_ERR_NOMEM;
    }
    return 0;
}

static int session_fd_busy(const struct session *s)
{
    const struct session_job *j = s->job;
    return j != NULL && (j->read_inflight || j->writes_inflight || j->fsync_inflight);
}

static void session_fd_cancel(struct session *s, int writes)
{
    const struct session_job *j = s->job;
    if (j == NULL)
        return;
    if (j->out_pos == (uint64_t)-1)
        writes = 1; /* one write at a time (a pipe, a socket): cancelling it leaves no hole */
    if (j->read_inflight || j->fsync_inflight || (writes && j->writes_inflight))
        s->ops->fd_cancel(s, writes);
}

/* Input buffers read and not yet consumed (the one being read does not count). */
static unsigned fdjob_inputs(const struct session_job *j)
{
    return j->in_head - j->in_tail - (j->read_inflight ? 1u : 0u);
}

static void session_fd_work_applied(struct session *s)
{
    struct session_job *j = s->job;
    struct session_work *wk = &j->work;
    struct session_fdbuf *ob = &j->fout[j->out_head % j->nbufs];

    if (!wk->tail) {
        struct session_fdbuf *ib = &j->fin[j->in_tail % j->nbufs];
        ib->off += wk->used[0];
        if (ib->off == ib->len) {
            ib->off = ib->len = 0;
            j->in_tail++;
        }
    }
    ob->off = 0;
    ob->len = wk->produced;
    ob->pos = j->out_pos;
    if (ob->len > 0) {
        j->out_head++;
        if (j->out_pos != (uint64_t)-1)
            j->out_pos += ob->len;
    }
}

/*
 * The env runs every read, write and fsync of a client's descriptor where a stalled file stalls
 * only its own job (the ring layer: io-wq workers, IOSQE_ASYNC), which --io-timeout cancels
 * (session_tick_io).
 */

/* Submit the writes that may go out now (see struct session_job). */
static void fdjob_write(struct session *s)
{
    struct session_job *j = s->job;
    int regular = j->out_pos != (uint64_t)-1;

    for (unsigned k = j->out_tail; k != j->out_head; k++) {
        struct session_fdbuf *ob = &j->fout[k % j->nbufs];
        if (ob->io || ob->off == ob->len)
            continue;
        if (!regular && j->writes_inflight > 0)
            return;
        ob->io = 1;
        s->ops->fd_write(s, k % j->nbufs, j->out_fd, ob->p + ob->off, ob->len - ob->off,
                         regular ? ob->pos + ob->off : (uint64_t)-1);
        j->writes_inflight++;
        if (!regular)
            return;
    }
}

/* Give the oldest input (or the tail) to the cipher. Returns 1 if anything moved. */
static int fdjob_cipher(struct session *s, char *detail)
{
    struct session_job *j = s->job;
    struct session_work *wk = &j->work;
    struct session_fdbuf *ib = &j->fin[j->in_tail % j->nbufs];
    int have = fdjob_inputs(j) > 0, r;

    if (wk->busy)
        return 0;
    if (s->state == SESSION_HEADER) {
        size_t used = 0;
        if (!have) {
            if (!j->read_eof || j->read_inflight)
                return 0;
            session_fail(s, session_job_header_truncated(s, detail, SESSION_DETAIL_MAX), detail);
            return 1;
        }
        r = session_job_feed_header(s, ib->p + ib->off, ib->len - ib->off, &used, detail,
                                    SESSION_DETAIL_MAX);
        if (r != 0) {
            session_fail(s, r, detail);
            return 1;
        }
        if ((ib->off += used) == ib->len) {
            ib->off = ib->len = 0;
            j->in_tail++;
        }
        return 1;
    }
    if ((s->state != SESSION_RUN && s->state != SESSION_DRAIN) ||
        j->out_head - j->out_tail >= j->nbufs)
        return 0;
    if (have && s->state == SESSION_RUN) {
        wk->tail = 0;
        wk->nin = 1;
        wk->in[0] = ib->p + ib->off;
        wk->inlen[0] = ib->len - ib->off;
    } else if (!have && j->read_eof && !j->read_inflight) {
        wk->tail = 1;
        wk->nin = 0;
    } else {
        return 0;
    }
    wk->framed = 0;
    wk->out = j->fout[j->out_head % j->nbufs].p;
    wk->outcap = j->wcap;
    {
        enum session_state before = s->state;
        int offload = session_job_offload(s, j, wk->tail ? 0 : wk->inlen[0], wk->tail);
        struct session_config cfg;
        /*
         * Split only while the writes keep up (at most one output buffer waiting): then the
         * cipher is what the job waits for. When writes fall behind, the second core is theirs
         * (io-wq), and a helper there would only slow them.
         */
        s->ops->config(&cfg);
        if (!wk->tail && !offload && cfg.split_min > 0 && wk->inlen[0] >= (size_t)cfg.split_min &&
            j->out_head - j->out_tail <= 1)
            session_work_split(s); /* whole chunks: half on a helper, half here */
        else
            session_work_submit(s, !offload);
        /* out to a helper, or done here: moved unless it could do nothing at all */
        return wk->busy || s->state == SESSION_FLUSH || wk->produced > 0 ||
               (!wk->tail && wk->used[0] > 0) || s->state != before;
    }
}

/* Read, cipher, write, fsync, result. Returns 1 if anything moved. */
static int session_fd_pump(struct session *s)
{
    char detail[SESSION_DETAIL_MAX];
    struct session_job *j = s->job;
    int moved = 0;

    if (j == NULL || j->input != PROTO_INPUT_FDS || !session_in_job(s) || s->state == SESSION_PROBE)
        return 0;
    detail[0] = '\0';
    moved = fdjob_cipher(s, detail);
    if ((j = s->job) == NULL || !session_in_job(s))
        return 1;
    fdjob_write(s);
    if (!j->read_inflight && !j->read_eof && j->in_head - j->in_tail < j->nbufs) {
        struct session_fdbuf *ib = &j->fin[j->in_head % j->nbufs];
        ib->off = ib->len = 0;
        j->read_inflight = 1;
        j->in_head++;
        s->ops->fd_read(s, j->in_fd, ib->p, j->piece, j->in_pos);
    }
    if (!j->work.busy && s->state == SESSION_DONE && j->out_tail == j->out_head &&
        j->writes_inflight == 0 && !j->read_inflight) {
        if ((j->flags & PROTO_JOB_FSYNC) && !j->fsynced) {
            if (!j->fsync_inflight) {
                j->fsync_inflight = 1;
                s->ops->fd_sync(s, j->out_fd);
            }
        } else {
            moved |= session_job_result(s);
        }
    }
    return moved;
}

/* Output buffer k was written (res bytes, or -errno). */
static void fdjob_wrote(struct session *s, unsigned k, int res)
{
    char detail[SESSION_DETAIL_MAX];
    struct session_job *j = s->job;
    struct session_fdbuf *ob = &j->fout[k];

    ob->io = 0;
    j->writes_inflight--;
    if (!session_in_job(s))
        return;
    if (res <= 0) {
        snprintf(detail, sizeof(detail), "writing the output descriptor: %s",
                 res == 0 ? "wrote nothing" : strerror(-res));
        session_fail(s, res == 0 ? COFFER_ERR_IO : coffer_err_from_errno(-res), detail);
        return;
    }
    if ((size_t)res > ob->len - ob->off)
        res = (int)(ob->len - ob->off); /* never more than was handed over */
    ob->off += (size_t)res;             /* a short write goes out again for the rest */
    while (j->out_tail != j->out_head) {
        ob = &j->fout[j->out_tail % j->nbufs];
        if (ob->io || ob->off < ob->len)
            return;
        ob->off = ob->len = 0;
        j->out_tail++;
    }
}

/* A descriptor operation of the job came back (res bytes, or -errno). */
static void session_fd_complete(struct session *s, int op, int res)
{
    char detail[SESSION_DETAIL_MAX];
    struct session_job *j = s->job;

    if (j == NULL)
        return;
    if (op >= SESSION_FD_WRITE && op < SESSION_FD_WRITE + (int)SESSION_FILE_BUFS) {
        if (j->fout[op - SESSION_FD_WRITE].io)
            fdjob_wrote(s, (unsigned)(op - SESSION_FD_WRITE), res);
        return;
    }
    switch (op) {
    case SESSION_FD_READ:
        if (!j->read_inflight)
            break;
        j->read_inflight = 0;
        if (res <= 0)
            j->in_head--; /* the buffer holds nothing */
        if (!session_in_job(s))
            break;
        if (res < 0) {
            snprintf(detail, sizeof(detail), "reading the input descriptor: %s", strerror(-res));
            session_fail(s, coffer_err_from_errno(-res), detail);
        } else if (res == 0) {
            j->read_eof = 1;
        } else {
            struct session_fdbuf *ib = &j->fin[(j->in_head - 1) % j->nbufs];
            if ((size_t)res > j->piece)
                res = (int)j->piece; /* never more than was asked for */
            ib->len = (size_t)res;
            ib->off = 0;
            if (j->in_pos != (uint64_t)-1)
                j->in_pos += (uint64_t)res;
        }
        break;
    case SESSION_FD_SYNC:
        if (!j->fsync_inflight)
            break;
        j->fsync_inflight = 0;
        if (!session_in_job(s))
            break;
        if (res == -EINVAL || res == -EROFS) {
            /* a file that does not support synchronization: nothing to sync, not a failure */
            session_log(s, SESSION_LOG_DEBUG, "fsync_skipped", "conn=%llu errno=%d",
                        (unsigned long long)s->id, -res);
            j->fsynced = 1;
        } else if (res < 0) {
            snprintf(detail, sizeof(detail), "fsync of the output: %s", strerror(-res));
            session_fail(s, coffer_err_from_errno(-res), detail);
        } else {
            j->fsynced = 1;
        }
        break;
    default:
        break;
    }
}
