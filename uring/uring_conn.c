/* SPDX-License-Identifier: Apache-2.0 */
/* One client connection on a worker's ring: frames in, job output and results out, fd jobs. */
#include "uring_server.h"

#include "coffer_error.h"
#include "uring_log.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define DETAIL_MAX 512

static int conn_fileops(const struct uring_conn *c)
{
    const struct uring_job *j = c->job;
    return j != NULL && (j->read_inflight || j->write_inflight || j->fsync_inflight);
}

static void conn_submit(struct uring_conn *c, struct io_uring_sqe *sqe, enum uring_op op)
{
    io_uring_sqe_set_data64(sqe, uring_udata_pack(op, c->slot, c->gen));
    c->inflight++;
}

static void conn_cancel_fileops(struct uring_conn *c)
{
    static const enum uring_op ops[] = {URING_OP_FREAD, URING_OP_FWRITE, URING_OP_FSYNC};
    if (!conn_fileops(c))
        return;
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        struct io_uring_sqe *sqe = uring_worker_sqe(c->w);
        io_uring_prep_cancel64(sqe, uring_udata_pack(ops[i], c->slot, c->gen), 0);
        io_uring_sqe_set_data64(sqe, uring_udata_pack(URING_OP_CANCEL, c->slot, c->gen));
    }
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
    c->in = malloc(URING_IN_CAP);
    c->out[0] = malloc(URING_OUT_HALF);
    c->out[1] = malloc(URING_OUT_HALF);
    if (c->in == NULL || c->out[0] == NULL || c->out[1] == NULL) {
        free(c->in);
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
    uring_log(URING_LOG_INFO, "conn_open", "conn=%llu worker=%d uid=%u pid=%d",
              (unsigned long long)c->id, w->index, (unsigned)uid, (int)pid);
    return c;
}

static void conn_free(struct uring_conn *c)
{
    struct uring_worker *w = c->w;
    for (int i = 0; i < c->nfds; i++)
        close(c->fds[i]);
    if (c->job != NULL) {
        atomic_fetch_add(&uring_srv.stats.jobs_failed, 1);
        uring_job_free(c->job);
    }
    close(c->fd);
    free(c->in);
    free(c->out[0]);
    free(c->out[1]);
    w->conns[c->slot] = NULL;
    w->nconns--;
    atomic_fetch_sub(&uring_srv.active_conns, 1);
    uring_log(URING_LOG_INFO, "conn_close", "conn=%llu", (unsigned long long)c->id);
    free(c);
}

void uring_conn_close(struct uring_conn *c, const char *why)
{
    if (c->closing)
        return;
    c->closing = 1;
    uring_log(URING_LOG_DEBUG, "conn_closing", "conn=%llu why=%s", (unsigned long long)c->id, why);
    shutdown(c->fd, SHUT_RDWR); /* completes our recv/send in flight */
    conn_cancel_fileops(c);
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
    uring_log(URING_LOG_WARN, j != NULL ? "job_failed" : "conn_error",
              "conn=%llu op=%s format=%s err=%s bytes_in=%llu bytes_out=%llu detail=%s",
              (unsigned long long)c->id, j != NULL ? uring_job_op_name(j) : "-",
              j != NULL ? engine_format_name(j->format) : "-", coffer_errname(err),
              (unsigned long long)(j != NULL ? j->bytes_in : 0),
              (unsigned long long)(j != NULL ? j->bytes_out : 0),
              uring_log_quote(detail != NULL ? detail : "", q, sizeof(q)));
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
    conn_cancel_fileops(c);
}

/* ---- submitting ---- */

static void conn_submit_recv(struct uring_conn *c)
{
    struct io_uring_sqe *sqe;
    size_t room;

    if (c->recv_inflight || c->rd_eof || c->closing || c->close_after_flush)
        return;
    if (c->in_start == c->in_end) {
        c->in_start = c->in_end = 0;
    } else if (c->in_start > 0 &&
               URING_IN_CAP - c->in_end < COFFER_FRAME_HEADER + COFFER_MAX_FRAME) {
        memmove(c->in, c->in + c->in_start, c->in_end - c->in_start);
        c->in_end -= c->in_start;
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
    conn_submit(c, sqe, URING_OP_RECV);
    c->recv_inflight = 1;
}

static void conn_submit_send(struct uring_conn *c)
{
    struct io_uring_sqe *sqe;
    int idx;

    if (c->send_inflight || c->closing)
        return;
    if (c->send_off == c->send_len) {
        if (c->fill_len == 0)
            return;
        c->send_len = c->fill_len;
        c->send_off = 0;
        c->fill ^= 1;
        c->fill_len = 0;
    }
    idx = c->fill ^ 1;
    sqe = uring_worker_sqe(c->w);
    io_uring_prep_send(sqe, c->fd, c->out[idx] + c->send_off, c->send_len - c->send_off,
                       MSG_NOSIGNAL);
    conn_submit(c, sqe, URING_OP_SEND);
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

static json_t *conn_health(void)
{
    struct uring_runtime *rt = uring_runtime_get();
    json_t *j = json_pack("{s:s, s:s, s:i, s:b, s:s, s:s, s:s, s:s, s:i, s:b}", "status",
                          atomic_load(&uring_srv.stopping) ? "stopping" : "ok", "version", "0.1.0",
                          "protocol", (int)COFFER_PROTO_VERSION, "encryption", rt->encryption,
                          "format", engine_format_name(rt->format), "namespace", rt->ns,
                          "secretName", rt->secret, "keyId", rt->key != NULL ? rt->key->id : "",
                          "workers", uring_srv.nworkers, "echoBaseline", rt->echo);
    uring_runtime_put(rt);
    return j;
}

static json_t *conn_stats(void)
{
    struct uring_stats *s = &uring_srv.stats;
    return json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f}", "connectionsActive",
        (json_int_t)atomic_load(&uring_srv.active_conns), "connectionsTotal",
        (json_int_t)atomic_load(&s->conns_total), "connectionsDenied",
        (json_int_t)atomic_load(&s->conns_denied), "connectionsBusy",
        (json_int_t)atomic_load(&s->conns_busy), "connectionsTimedOut",
        (json_int_t)atomic_load(&s->conns_timeout), "jobsOk", (json_int_t)atomic_load(&s->jobs_ok),
        "jobsFailed", (json_int_t)atomic_load(&s->jobs_failed), "bytesIn",
        (json_int_t)atomic_load(&s->bytes_in), "bytesOut", (json_int_t)atomic_load(&s->bytes_out),
        "keyLoads", (json_int_t)atomic_load(&s->key_loads), "uptimeSeconds",
        uring_now() - uring_srv.started);
}

/*
 * Regular files are read and written at explicit offsets from their current position (the
 * shared file position is left alone); pipes and sockets use the file position (-1).
 */
static uint64_t conn_fd_pos(int fd)
{
    struct stat st;
    off_t pos;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (pos = lseek(fd, 0, SEEK_CUR)) < 0)
        return (uint64_t)-1;
    return (uint64_t)pos;
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
    if (pj.input == PROTO_INPUT_FDS && c->nfds != 2) {
        snprintf(detail, DETAIL_MAX,
                 "a descriptor job needs exactly two descriptors (input, "
                 "output) sent with SCM_RIGHTS alongside the job frame");
        return COFFER_ERR_PROTO_FRAME;
    }
    if (pj.input == PROTO_INPUT_STREAM && c->nfds != 0) {
        snprintf(detail, DETAIL_MAX, "descriptors were sent with a streamed job");
        return COFFER_ERR_PROTO_FRAME;
    }
    r = uring_job_start(c, &pj, detail, DETAIL_MAX);
    if (pj.input == PROTO_INPUT_FDS) {
        struct uring_job *j = c->job;
        j->in_fd = c->fds[0];
        j->out_fd = c->fds[1];
        c->nfds = 0;
        j->in_pos = conn_fd_pos(j->in_fd);
        j->out_pos = conn_fd_pos(j->out_fd);
        if (r == 0 && ((j->rbuf = malloc(URING_FILE_CHUNK)) == NULL ||
                       (j->wbuf = malloc(URING_FILE_WCAP)) == NULL))
            r = COFFER_ERR_NOMEM;
    }
    if (r == 0)
        uring_log(URING_LOG_DEBUG, "job_start", "conn=%llu op=%s format=%s input=%s",
                  (unsigned long long)c->id, uring_job_op_name(c->job),
                  engine_format_name(c->job->format),
                  pj.input == PROTO_INPUT_FDS ? "fds" : "stream");
    return r;
}

/* Feed the current DATA frame into the job. Returns 1 when it is all consumed. */
static int conn_data(struct uring_conn *c, const uint8_t *p, size_t len, int *err, char *detail)
{
    while (c->frame_pos < len) {
        size_t room = uring_conn_out_room(c), cap, used = 0, produced = 0;
        uint8_t *out;
        if (room < COFFER_FRAME_HEADER + 4096)
            return 0;
        cap = room - COFFER_FRAME_HEADER;
        if (cap > URING_DATA_OUT)
            cap = URING_DATA_OUT;
        out = uring_conn_out_reserve(c, COFFER_FRAME_HEADER + cap);
        *err = uring_job_feed(c, p + c->frame_pos, len - c->frame_pos, out + COFFER_FRAME_HEADER,
                              cap, &used, &produced, detail, DETAIL_MAX);
        if (*err != 0)
            return 0;
        if (produced > 0) {
            proto_header_put(out, PROTO_DATA, (uint32_t)produced);
            uring_conn_out_commit(c, COFFER_FRAME_HEADER + produced);
        }
        c->frame_pos += used;
        if (used == 0 && produced == 0)
            return 0;
    }
    return 1;
}

/*
 * Handle the frame at the front of the input. Returns 1 when it was consumed, 0 to retry later,
 * or a negative coffer code (detail says more).
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
        {
            int err = 0, done = conn_data(c, p, h->len, &err, detail);
            return err != 0 ? err : done;
        }
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
        r = conn_reply_json(c, h->type, h->type == PROTO_HEALTH ? conn_health() : conn_stats());
        return r == 0 ? 1 : (r == 1 ? 0 : r);
    default:
        break;
    }
    snprintf(detail, DETAIL_MAX, "a %s frame is not allowed %s", proto_type_name(h->type),
             j == NULL ? "outside a job" : "during this job");
    return COFFER_ERR_PROTO_SEQUENCE;
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
        if (c->job != NULL && c->job->state == JOB_KEYWAIT)
            break;
        if (have < COFFER_FRAME_HEADER)
            break;
        detail[0] = '\0';
        if ((r = proto_header_parse(c->in + c->in_start, &h)) != 0) {
            snprintf(detail, DETAIL_MAX,
                     r == COFFER_ERR_PROTO_TOO_BIG ? "a frame declared more than %u payload bytes"
                                                   : "the frame header is malformed (max %u)",
                     COFFER_MAX_FRAME);
            uring_conn_fail(c, r, detail);
            return 1;
        }
        if (have < COFFER_FRAME_HEADER + h.len)
            break;
        r = conn_frame(c, &h, c->in + c->in_start + COFFER_FRAME_HEADER, detail);
        if (r < 0) {
            uring_conn_fail(c, r, detail);
            return 1;
        }
        if (r == 0) {
            break;
        }
        c->in_start += COFFER_FRAME_HEADER + h.len;
        c->frame_pos = 0;
        moved = 1;
    }
    return moved;
}

/* ---- job progress ---- */

static int conn_job_result(struct uring_conn *c)
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
    uring_log(URING_LOG_INFO, "job_done",
              "conn=%llu op=%s format=%s input=%s key_id=%s bytes_in=%llu bytes_out=%llu "
              "ms=%.1f",
              (unsigned long long)c->id, uring_job_op_name(j), engine_format_name(j->format),
              j->input == PROTO_INPUT_FDS ? "fds" : "stream",
              j->format == COFFER_FORMAT_NONE ? "-" : (j->key_id[0] ? j->key_id : "-"),
              (unsigned long long)j->bytes_in, (unsigned long long)j->bytes_out,
              (uring_now() - j->t_start) * 1000.0);
    uring_job_free(j);
    c->job = NULL;
    if (atomic_load(&uring_srv.stopping))
        c->close_after_flush = 1;
    return 1;
}

/* A streamed job whose input ended: finish, drain, result. Returns 1 if anything moved. */
static int conn_stream_tail(struct uring_conn *c)
{
    char detail[DETAIL_MAX];
    int moved = 0;

    while (c->job != NULL && c->job->input_ended && !c->close_after_flush) {
        struct uring_job *j = c->job;
        size_t room = uring_conn_out_room(c), cap, produced = 0;
        uint8_t *out;
        int r;
        if (j->state == JOB_DONE)
            return conn_job_result(c) || moved;
        if (j->state != JOB_RUN && j->state != JOB_DRAIN) {
            if (j->state == JOB_HEADER) {
                r = uring_job_finish(c, NULL, 0, &produced, detail, DETAIL_MAX);
                uring_conn_fail(c, r, detail);
                return 1;
            }
            break; /* waiting for the key */
        }
        if (room < COFFER_FRAME_HEADER + 4096)
            break;
        cap = room - COFFER_FRAME_HEADER;
        if (cap > URING_DATA_OUT)
            cap = URING_DATA_OUT;
        out = uring_conn_out_reserve(c, COFFER_FRAME_HEADER + cap);
        enum uring_job_state before = j->state;
        r = uring_job_finish(c, out + COFFER_FRAME_HEADER, cap, &produced, detail, DETAIL_MAX);
        if (r != 0) {
            uring_conn_fail(c, r, detail);
            return 1;
        }
        if (produced > 0) {
            proto_header_put(out, PROTO_DATA, (uint32_t)produced);
            uring_conn_out_commit(c, COFFER_FRAME_HEADER + produced);
        }
        if (produced == 0 && j->state == before)
            break;
        moved = 1;
    }
    return moved;
}

/* An fd job: read, feed, write, finish, fsync, result. Returns 1 if anything moved. */
static int conn_fd_job(struct uring_conn *c)
{
    char detail[DETAIL_MAX];
    struct uring_job *j = c->job;
    struct io_uring_sqe *sqe;
    int moved = 0, r = 0;

    if (j == NULL || j->input != PROTO_INPUT_FDS || c->close_after_flush)
        return 0;
    detail[0] = '\0';
    if (!j->write_inflight && j->woff == j->wlen) {
        size_t used = 0, produced = 0;
        j->woff = j->wlen = 0;
        if (j->roff < j->rlen) {
            r = uring_job_feed(c, j->rbuf + j->roff, j->rlen - j->roff, j->wbuf, URING_FILE_WCAP,
                               &used, &produced, detail, DETAIL_MAX);
            j->roff += used;
            j->wlen = produced;
            moved = used > 0 || produced > 0;
        } else if (j->read_eof && !j->read_inflight && j->state != JOB_DONE &&
                   j->state != JOB_KEYWAIT) {
            enum uring_job_state before = j->state;
            r = uring_job_finish(c, j->wbuf, URING_FILE_WCAP, &produced, detail, DETAIL_MAX);
            j->wlen = produced;
            moved = produced > 0 || j->state != before;
        }
        if (r != 0) {
            uring_conn_fail(c, r, detail);
            return 1;
        }
    }
    if (j->wlen > j->woff && !j->write_inflight) {
        sqe = uring_worker_sqe(c->w);
        io_uring_prep_write(sqe, j->out_fd, j->wbuf + j->woff, (unsigned)(j->wlen - j->woff),
                            j->out_pos);
        conn_submit(c, sqe, URING_OP_FWRITE);
        j->write_inflight = 1;
    }
    if (!j->read_inflight && !j->read_eof && j->roff == j->rlen && j->state != JOB_DONE) {
        j->roff = j->rlen = 0;
        sqe = uring_worker_sqe(c->w);
        io_uring_prep_read(sqe, j->in_fd, j->rbuf, URING_FILE_CHUNK, j->in_pos);
        conn_submit(c, sqe, URING_OP_FREAD);
        j->read_inflight = 1;
    }
    if (j->state == JOB_DONE && !j->write_inflight && j->woff == j->wlen && !j->read_inflight) {
        if ((j->flags & PROTO_JOB_FSYNC) && !j->fsynced) {
            if (!j->fsync_inflight) {
                sqe = uring_worker_sqe(c->w);
                io_uring_prep_fsync(sqe, j->out_fd, 0);
                conn_submit(c, sqe, URING_OP_FSYNC);
                j->fsync_inflight = 1;
            }
        } else {
            moved |= conn_job_result(c);
        }
    }
    return moved;
}

void uring_conn_pump(struct uring_conn *c)
{
    for (int rounds = 0; !c->closing && rounds < 64; rounds++) {
        int moved = conn_input(c);
        if (c->job != NULL && c->job->input == PROTO_INPUT_STREAM)
            moved |= conn_stream_tail(c);
        else if (c->job != NULL)
            moved |= conn_fd_job(c);
        if (!c->send_inflight && c->send_off == c->send_len && c->fill_len > 0)
            moved = 1;
        conn_submit_send(c);
        if (!moved)
            break;
    }
    if (!c->closing) {
        conn_submit_recv(c);
        if (c->close_after_flush && conn_output_idle(c) && !conn_fileops(c))
            uring_conn_close(c, "error sent");
        else if (c->rd_eof && c->job == NULL && conn_output_idle(c))
            uring_conn_close(c, "peer closed");
        else if (atomic_load(&uring_srv.stopping) && c->job == NULL && conn_output_idle(c))
            uring_conn_close(c, "shutdown");
    }
    if (c->closing && c->inflight == 0)
        conn_free(c);
}

/* Take descriptors passed with SCM_RIGHTS; anything unexpected is closed and fails the conn. */
static int conn_take_fds(struct uring_conn *c)
{
    int r = 0;
    if (c->msg.msg_flags & MSG_CTRUNC)
        r = COFFER_ERR_PROTO_FRAME;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&c->msg); cm != NULL; cm = CMSG_NXTHDR(&c->msg, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        size_t n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
            if (r == 0 && c->nfds < (int)COFFER_MAX_FDS && !c->close_after_flush)
                c->fds[c->nfds++] = fd;
            else {
                close(fd);
                r = COFFER_ERR_PROTO_FRAME;
            }
        }
    }
    return r;
}

void uring_conn_complete(struct uring_conn *c, enum uring_op op, int res, uint32_t cflags)
{
    struct uring_job *j = c->job;
    char detail[DETAIL_MAX];

    (void)cflags;
    c->inflight--;
    if (res > 0)
        c->last_progress = uring_now();
    switch (op) {
    case URING_OP_RECV:
        c->recv_inflight = 0;
        if (res >= 0 && conn_take_fds(c) != 0) {
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
        j->read_inflight = 0;
        if (c->closing || c->close_after_flush)
            break;
        if (res < 0) {
            snprintf(detail, sizeof(detail), "reading the input descriptor: %s", strerror(-res));
            uring_conn_fail(c, coffer_err_from_errno(-res), detail);
        } else if (res == 0) {
            j->read_eof = 1;
        } else {
            j->rlen = (size_t)res;
            j->roff = 0;
            if (j->in_pos != (uint64_t)-1)
                j->in_pos += (uint64_t)res;
        }
        break;
    case URING_OP_FWRITE:
        j->write_inflight = 0;
        if (c->closing || c->close_after_flush)
            break;
        if (res <= 0) {
            snprintf(detail, sizeof(detail), "writing the output descriptor: %s",
                     res == 0 ? "wrote nothing" : strerror(-res));
            uring_conn_fail(c, res == 0 ? COFFER_ERR_IO : coffer_err_from_errno(-res), detail);
        } else {
            j->woff += (size_t)res;
            if (j->out_pos != (uint64_t)-1)
                j->out_pos += (uint64_t)res;
        }
        break;
    case URING_OP_FSYNC:
        j->fsync_inflight = 0;
        if (c->closing || c->close_after_flush)
            break;
        if (res < 0) {
            snprintf(detail, sizeof(detail), "fsync of the output: %s", strerror(-res));
            uring_conn_fail(c, coffer_err_from_errno(-res), detail);
        } else {
            j->fsynced = 1;
        }
        break;
    default:
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

void uring_conn_tick(struct uring_conn *c, double now, int timeout)
{
    if (c->closing || c->keyreq_pending)
        return;
    if (now - c->last_progress > timeout) {
        atomic_fetch_add(&uring_srv.stats.conns_timeout, 1);
        uring_log(URING_LOG_WARN, "conn_timeout", "conn=%llu op=%s idle_s=%.0f",
                  (unsigned long long)c->id, c->job != NULL ? uring_job_op_name(c->job) : "-",
                  now - c->last_progress);
        uring_conn_close(c, "timeout");
        uring_conn_pump(c);
    }
}
