/* SPDX-License-Identifier: Apache-2.0 */
/* One client connection on a worker's ring: its session's actions as submissions, back again. */
#include "uring_ring.h"

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
#include <unistd.h>

static void conn_submit(struct uring_conn *c, struct io_uring_sqe *sqe, enum uring_op op)
{
    io_uring_sqe_set_data64(sqe, uring_udata_pack(op, c->slot, c->gen));
    c->inflight++;
}

/*
 * Close a descriptor a client passed, through the ring: close(2) calls the file's flush, which
 * on FUSE or NFS waits for the filesystem (io_uring runs such a close on its io-wq workers).
 */
static void uring_conn_close_fd(struct uring_conn *c, int fd)
{
    struct io_uring_sqe *sqe;
    if (fd < 0)
        return;
    sqe = uring_worker_sqe(c->w);
    io_uring_prep_close(sqe, fd);
    io_uring_sqe_set_data64(sqe, uring_udata_pack(URING_OP_CANCEL, 0, 0));
}

/* ---- the session's actions ---- */

static void conn_recv(struct session *s, uint8_t *buf, size_t room)
{
    struct uring_conn *c = session_owner(s);
    struct io_uring_sqe *sqe;

    c->iov.iov_base = buf;
    c->iov.iov_len = room;
    memset(&c->msg, 0, sizeof(c->msg));
    c->msg.msg_iov = &c->iov;
    c->msg.msg_iovlen = 1;
    c->msg.msg_control = c->cmsg.buf;
    c->msg.msg_controllen = sizeof(c->cmsg.buf);
    sqe = uring_worker_sqe(c->w);
    io_uring_prep_recvmsg(sqe, c->fd, &c->msg, MSG_CMSG_CLOEXEC);
    conn_submit(c, sqe, URING_OP_RECV);
}

static void conn_send(struct session *s, const uint8_t *buf, size_t len)
{
    struct uring_conn *c = session_owner(s);
    struct io_uring_sqe *sqe = uring_worker_sqe(c->w);
    io_uring_prep_send(sqe, c->fd, buf, len, MSG_NOSIGNAL);
    conn_submit(c, sqe, URING_OP_SEND);
}

/*
 * Every read, write and fsync of a client's descriptor carries IOSQE_ASYNC, so it runs on
 * io_uring's io-wq workers and never inside io_uring_enter on the ring thread. Tried inline, a
 * read or write may still sleep there: a pipe's lock held by a writer faulting on a FUSE mapping,
 * a network or FUSE filesystem, a frozen one. A stalled file then stalls only its own job (one
 * io-wq worker), which --io-timeout cancels (session_tick_io).
 */
static void conn_fd_read(struct session *s, int fd, uint8_t *buf, size_t len, uint64_t pos)
{
    struct uring_conn *c = session_owner(s);
    struct io_uring_sqe *sqe = uring_worker_sqe(c->w);
    io_uring_prep_read(sqe, fd, buf, (unsigned)len, pos);
    io_uring_sqe_set_flags(sqe, IOSQE_ASYNC);
    conn_submit(c, sqe, URING_OP_FREAD);
}

static void conn_fd_write(struct session *s, unsigned k, int fd, const uint8_t *buf, size_t len,
                          uint64_t pos)
{
    struct uring_conn *c = session_owner(s);
    struct io_uring_sqe *sqe = uring_worker_sqe(c->w);
    io_uring_prep_write(sqe, fd, buf, (unsigned)len, pos);
    io_uring_sqe_set_flags(sqe, IOSQE_ASYNC);
    conn_submit(c, sqe, (enum uring_op)(URING_OP_FWRITE + k));
}

static void conn_fd_sync(struct session *s, int fd)
{
    struct uring_conn *c = session_owner(s);
    struct io_uring_sqe *sqe = uring_worker_sqe(c->w);
    io_uring_prep_fsync(sqe, fd, 0);
    io_uring_sqe_set_flags(sqe, IOSQE_ASYNC);
    conn_submit(c, sqe, URING_OP_FSYNC);
}

static void conn_fd_cancel(struct session *s, int writes)
{
    struct uring_conn *c = session_owner(s);
    enum uring_op ops[2 + SESSION_FILE_BUFS] = {URING_OP_FREAD, URING_OP_FSYNC};
    for (unsigned k = 0; k < SESSION_FILE_BUFS; k++)
        ops[2 + k] = (enum uring_op)(URING_OP_FWRITE + k);
    for (size_t i = 0; i < (writes ? sizeof(ops) / sizeof(ops[0]) : 2); i++) {
        struct io_uring_sqe *sqe = uring_worker_sqe(c->w);
        io_uring_prep_cancel64(sqe, uring_udata_pack(ops[i], c->slot, c->gen),
                               IORING_ASYNC_CANCEL_ALL);
        io_uring_sqe_set_data64(sqe, uring_udata_pack(URING_OP_CANCEL, c->slot, c->gen));
    }
}

static void conn_fd_close(struct session *s, int fd)
{
    uring_conn_close_fd(session_owner(s), fd);
}

/*
 * The connection's one task goes to a pool (uring_offload.h) and comes back to this ring's
 * completion path (conn_work_back). CIPHER and FILE take
 * every task submitted while a ring runs (their queues are bounded by the connections, one task
 * each), so a refusal is a broken invariant.
 */
static void conn_settle(struct uring_conn *c);

/* The connection a task of this worker's ring names (slot and generation), or NULL. */
static struct uring_conn *conn_of_ring_task(const struct uring_offload_task *t)
{
    struct uring_worker *w =
        (struct uring_worker *)(void *)((char *)t->ring - offsetof(struct uring_worker, offload));
    struct uring_conn *c = t->slot < w->nslots ? w->conns[t->slot] : NULL;
    return c != NULL && c->gen == t->gen ? c : NULL;
}

/* The connection's task (probe or cipher batch) came back to its ring. */
static void conn_work_back(struct uring_offload_task *t)
{
    struct uring_conn *c = conn_of_ring_task(t);
    if (c == NULL) {
        /* a connection with work out is never freed: this is a broken invariant */
        uring_log(URING_LOG_ERROR, "internal", "detail=\"work came back to no connection\"");
        abort();
    }
    c->inflight--;
    if (c->task_probe) {
        c->task_probe = 0;
        session_probed(c->s, c->probe_in_pos, c->probe_out_pos, c->probe_out_regular);
    } else {
        session_work_done(c->s);
    }
    conn_settle(c);
}

/*
 * A key request came back to its ring. An HSM backup that falls back to the Secret comes back
 * first with want_secret set: it goes on to the Secret loader from here (so that the HSM code
 * does not call the loader). A request whose connection is gone is freed.
 */
static void conn_key_back(struct uring_offload_task *t)
{
    struct uring_keyreq *req = (struct uring_keyreq *)(void *)t; /* task is the first member */
    struct uring_conn *c = conn_of_ring_task(t);
    if (c != NULL && req->want_secret) {
        req->want_secret = 0;
        uring_keys_submit(req);
        return;
    }
    if (c != NULL) {
        session_key_done(c->s, req);
        conn_settle(c);
    }
    uring_keyreq_free(req);
}

static int conn_key_request(struct session *s, const struct session_keyask *ask)
{
    struct uring_conn *c = session_owner(s);
    return uring_job_key_request(ask, &c->w->offload, c->slot, c->gen, conn_key_back);
}

static void conn_task_out(struct uring_conn *c, enum uring_offload_pool pool,
                          void (*run)(struct uring_offload_task *), int probe)
{
    c->task.run = run;
    c->task.done = conn_work_back;
    c->task.drop = NULL;
    c->task.ring = &c->w->offload;
    c->task.slot = c->slot;
    c->task.gen = c->gen;
    c->task_probe = probe;
    c->inflight++;
    if (uring_offload_submit(pool, &c->task) != 0) {
        uring_log(URING_LOG_ERROR, "internal", "detail=\"a pool refused a connection's task\"");
        abort();
    }
}

static struct uring_conn *conn_of_task(struct uring_offload_task *t)
{
    return (struct uring_conn *)((char *)t - offsetof(struct uring_conn, task));
}

/* On the FILE pool: lseek may wait for the file's position lock (uring_fdjob_probe). */
static void conn_probe_task(struct uring_offload_task *t)
{
    struct uring_conn *c = conn_of_task(t);
    uring_fdjob_probe(c->probe_in, c->probe_out, &c->probe_in_pos, &c->probe_out_pos,
                      &c->probe_out_regular);
}

static void conn_fd_probe(struct session *s, int in, int out)
{
    struct uring_conn *c = session_owner(s);
    c->probe_in = in;
    c->probe_out = out;
    conn_task_out(c, URING_POOL_FILE, conn_probe_task, 1);
}

static void conn_work_task(struct uring_offload_task *t)
{
    session_work_run(conn_of_task(t)->work);
}

static void conn_span_task(struct uring_offload_task *t)
{
    session_work_run_spans(conn_of_task(t)->work);
}

/* A batch that may block on the velero-v1 spool goes to the FILE pool, the others to CIPHER. */
static void conn_work(struct session *s, struct session_work *wk, int split)
{
    struct uring_conn *c = session_owner(s);
    c->work = wk;
    if (split)
        conn_task_out(c, URING_POOL_CIPHER, conn_span_task, 0);
    else
        conn_task_out(c, session_work_may_block(wk) ? URING_POOL_FILE : URING_POOL_CIPHER,
                      conn_work_task, 0);
}

static void conn_shutdown(struct session *s)
{
    struct uring_conn *c = session_owner(s);
    c->closing = 1;
    shutdown(c->fd, SHUT_RDWR); /* completes our recv/send in flight */
}

/* ---- facts and hooks ---- */

static int conn_stopping(void)
{
    return atomic_load(&uring_srv.stopping);
}

static void conn_config(struct session_config *out)
{
    out->offload_min = uring_srv.cfg.offload_min;
    out->split_min = uring_srv.cfg.split_min;
    out->fd_piece = uring_srv.cfg.fd_piece;
    out->io_timeout = uring_srv.cfg.io_timeout;
    out->frame_timeout = uring_srv.cfg.frame_timeout;
    out->shutdown_grace = uring_srv.cfg.shutdown_grace;
}

/*
 * Buffers. On AMD Zen 3/4 `rep movsb`, which the kernel's copy_to_user and glibc's memcpy use for
 * large copies, runs 4x slower when the destination is a few bytes past the source's page
 * offset: malloc's 16-byte header puts every large buffer there relative to the page cache, so
 * the session's I/O buffers are page-aligned (reads into malloc'd buffers ran at 2 GB/s, not 8).
 */
static void *conn_alloc(size_t align, size_t n)
{
    void *p = NULL;
    if (align == 0)
        return malloc(n);
    return posix_memalign(&p, align, n) == 0 ? p : NULL;
}

/* The descriptor buffer budget: a job's full set unless the budget is spent. */
static int conn_fdbuf_take(size_t n)
{
    size_t budget = n > URING_FDBUF_BUDGET ? n : URING_FDBUF_BUDGET;
    if (atomic_fetch_add(&uring_srv.fdbuf_bytes, n) + n <= budget)
        return 1;
    atomic_fetch_sub(&uring_srv.fdbuf_bytes, n);
    return 0;
}

static void conn_fdbuf_give(size_t n)
{
    atomic_fetch_sub(&uring_srv.fdbuf_bytes, n);
}

static char *conn_report(uint8_t type)
{
    json_t *j = type == PROTO_HEALTH ? uring_report_health() : uring_report_stats();
    char *text = j != NULL ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    return text;
}

static void conn_log(int level, const char *event, const char *fmt, va_list ap)
{
    uring_logv(level, event, fmt, ap);
}

static void conn_count(enum session_count what, int err, const struct session_jobinfo *job)
{
    struct uring_stats *st = &uring_srv.stats;
    switch (what) {
    case SESSION_COUNT_JOB_OK:
        atomic_fetch_add(&st->jobs_ok, 1);
        atomic_fetch_add(&st->bytes_in, job->bytes_in);
        atomic_fetch_add(&st->bytes_out, job->bytes_out);
        uring_metrics_count_job(job->op, job->format, 1, job->bytes_in, job->bytes_out,
                                job->seconds);
        break;
    case SESSION_COUNT_JOB_FAILED:
        atomic_fetch_add(&st->jobs_failed, 1);
        uring_metrics_count_job(job->op, job->format, 0, job->bytes_in, job->bytes_out,
                                job->seconds);
        break;
    case SESSION_COUNT_ERROR:
        uring_metrics_count_error(err);
        break;
    case SESSION_COUNT_TIMEOUT:
        atomic_fetch_add(&st->conns_timeout, 1);
        break;
    case SESSION_COUNT_HELPER:
        atomic_fetch_add(&st->helper_batches, 1);
        break;
    case SESSION_COUNT_SPLIT:
        atomic_fetch_add(&st->split_batches, 1);
        break;
    case SESSION_COUNT_FD_SMALL:
        atomic_fetch_add(&st->fd_small, 1);
        break;
    }
}

static const struct session_ops conn_ops = {
    .recv = conn_recv,
    .send = conn_send,
    .fd_read = conn_fd_read,
    .fd_write = conn_fd_write,
    .fd_sync = conn_fd_sync,
    .fd_cancel = conn_fd_cancel,
    .fd_close = conn_fd_close,
    .fd_probe = conn_fd_probe,
    .work = conn_work,
    .key_request = conn_key_request,
    .shutdown = conn_shutdown,
    .now = uring_now,
    .stopping = conn_stopping,
    .config = conn_config,
    .rt_get = uring_job_rt_get,
    .rt_put = uring_job_rt_put,
    .alloc = conn_alloc,
    .buf_alloc = uring_buf_alloc,
    .buf_free = uring_buf_free,
    .fd_check = uring_fdjob_check,
    .fdbuf_take = conn_fdbuf_take,
    .fdbuf_give = conn_fdbuf_give,
    .report = conn_report,
    .hsm_backup = uring_job_hsm_backup,
    .hsm_restore = uring_job_hsm_restore,
    .hsm_end = uring_job_hsm_end,
    .key_answer = uring_job_key_answer,
    .kube_ns_allowed = uring_job_kube_ns_allowed,
    .recovery_seal = uring_job_recovery_seal,
    .recovery_hint = uring_job_recovery_hint,
    .log = conn_log,
    .count = conn_count,
};

/* ---- the connection ---- */

struct uring_conn *uring_conn_new(struct uring_worker *w, int fd, uid_t uid, pid_t pid)
{
    struct uring_conn *c = NULL;
    uint32_t slot;

    for (slot = 0; slot < w->nslots; slot++)
        if (w->conns[slot] == NULL)
            break;
    if (slot == w->nslots || (c = calloc(1, sizeof(*c))) == NULL)
        return NULL;
    c->id = atomic_fetch_add(&uring_srv.next_conn_id, 1) + 1;
    if ((c->s = session_new(&conn_ops, c, c->id, (unsigned)uid, (int)pid)) == NULL) {
        free(c);
        return NULL;
    }
    c->w = w;
    c->slot = slot;
    c->gen = ++w->next_gen;
    c->fd = fd;
    c->uid = uid;
    c->pid = pid;
    w->conns[slot] = c;
    w->nconns++;
    atomic_fetch_add(&uring_srv.stats.conns_total, 1);
    uring_log(URING_LOG_DEBUG, "conn_open", "conn=%llu worker=%d uid=%u pid=%d",
              (unsigned long long)c->id, w->index, (unsigned)uid, (int)pid);
    return c;
}

static void conn_free(struct uring_conn *c)
{
    struct uring_worker *w = c->w;
    session_free(c->s); /* its descriptors close through the ring */
    if (c->uid_counted)
        uring_peers_leave(c->uid);
    close(c->fd);
    w->conns[c->slot] = NULL;
    w->nconns--;
    atomic_fetch_sub(&uring_srv.active_conns, 1);
    uring_log(URING_LOG_DEBUG, "conn_close", "conn=%llu", (unsigned long long)c->id);
    free(c);
}

/* After every session call: free the connection once it closed and nothing is out. */
static void conn_settle(struct uring_conn *c)
{
    if (c->closing && c->inflight == 0)
        conn_free(c);
}

void uring_conn_pump(struct uring_conn *c)
{
    session_pump(c->s);
    conn_settle(c);
}

/* The descriptors a receive brought (SCM_RIGHTS), for the session to own. */
static int conn_fds(struct uring_conn *c, int *fds, int max)
{
    int n = 0;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&c->msg); cm != NULL; cm = CMSG_NXTHDR(&c->msg, cm)) {
        size_t k;
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
            if (n < max)
                fds[n++] = fd;
            else
                uring_conn_close_fd(c, fd); /* the session sees too many already */
        }
    }
    return n;
}

void uring_conn_complete(struct uring_conn *c, enum uring_op op, int res, uint32_t cflags)
{
    (void)cflags;
    c->inflight--;
    switch (op) {
    case URING_OP_RECV: {
        int fds[SESSION_MAX_FDS + 8], nfds = res >= 0 ? conn_fds(c, fds, SESSION_MAX_FDS + 8) : 0;
        session_received(c->s, res, fds, nfds, (c->msg.msg_flags & MSG_CTRUNC) != 0);
        break;
    }
    case URING_OP_SEND:
        session_sent(c->s, res);
        break;
    case URING_OP_FREAD:
        session_fd_done(c->s, SESSION_FD_READ, res);
        break;
    case URING_OP_FSYNC:
        session_fd_done(c->s, SESSION_FD_SYNC, res);
        break;
    default:
        if (op >= URING_OP_FWRITE && op < URING_OP_FWRITE_END)
            session_fd_done(c->s, SESSION_FD_WRITE + (int)(op - URING_OP_FWRITE), res);
        else
            session_pump(c->s);
        break;
    }
    conn_settle(c);
}

void uring_conn_stop(struct uring_conn *c)
{
    session_stop(c->s);
    conn_settle(c);
}

void uring_conn_abort(struct uring_conn *c, int hard)
{
    session_abort(c->s, hard);
    conn_settle(c);
}

void uring_conn_tick(struct uring_conn *c, double now, int timeout)
{
    session_tick(c->s, now, timeout);
    conn_settle(c);
}

void uring_conn_tick_io(struct uring_conn *c, double now)
{
    session_tick_io(c->s, now);
    conn_settle(c);
}
