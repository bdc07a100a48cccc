/* SPDX-License-Identifier: Apache-2.0 */
/* A worker thread: its own io_uring ring, multishot accept with SO_PEERCRED, timers, dispatch. */
#include "uring_ring.h"

#include "coffer_error.h"
#include "uring_hsm.h"
#include "uring_log.h"
#include "uring_metrics.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int uring_workers_alloc(int n)
{
    uring_srv.workers = calloc((size_t)n, sizeof(*uring_srv.workers));
    return uring_srv.workers != NULL ? 0 : COFFER_ERR_NOMEM;
}

struct uring_worker *uring_worker_at(int i)
{
    return &uring_srv.workers[i];
}

void uring_workers_release(void)
{
    free(uring_srv.workers);
    uring_srv.workers = NULL;
}

/*
 * Accepting goes on while cofferd stops, so that a client connecting during the shutdown grace
 * gets ERROR SHUTDOWN at once (worker_accepted) instead of waiting in the backlog; it ends when
 * the worker's last connection is gone (worker_main).
 */
static void worker_arm_accept(struct uring_worker *w)
{
    struct io_uring_sqe *sqe;
    if (w->accept_armed || w->accept_cancelled || w->accept_paused)
        return;
    sqe = uring_worker_sqe(w);
    io_uring_prep_multishot_accept(sqe, uring_srv.listen_fd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, uring_udata_pack(URING_OP_ACCEPT, 0, 0));
    w->accept_armed = 1;
}

static void worker_arm_event(struct uring_worker *w)
{
    struct io_uring_sqe *sqe = uring_worker_sqe(w);
    io_uring_prep_read(sqe, w->evfd, &w->evbuf, sizeof(w->evbuf), 0);
    io_uring_sqe_set_data64(sqe, uring_udata_pack(URING_OP_EVENT, 0, 0));
}

static void worker_arm_tick(struct uring_worker *w)
{
    struct io_uring_sqe *sqe = uring_worker_sqe(w);
    w->tick.tv_sec = 1;
    w->tick.tv_nsec = 0;
    io_uring_prep_timeout(sqe, &w->tick, 0, 0);
    io_uring_sqe_set_data64(sqe, uring_udata_pack(URING_OP_TICK, 0, 0));
}

/* Refuse a connection before a connection object exists: one error frame, then close. */
static void worker_refuse(int fd, int err, const char *msg)
{
    uint8_t buf[COFFER_FRAME_HEADER + 6 + 512];
    size_t n = 0;
    if (proto_error_write(buf, sizeof(buf), err, msg, &n) == 0 &&
        send(fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
        /* the peer is gone already */
    }
    close(fd);
}

static void worker_accepted(struct uring_worker *w, int fd)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    struct uring_runtime *rt;
    struct uring_conn *c;
    int allowed;

    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
        uring_metrics_count_refused(URING_REFUSED_NO_PEERCRED);
        uring_log(URING_LOG_WARN, "conn_denied", "reason=no_peercred errno=%d", errno);
        close(fd);
        return;
    }
    rt = uring_runtime_get();
    allowed = uring_runtime_peer_allowed(rt, cred.uid, cred.gid);
    uring_runtime_put(rt);
    if (!allowed) {
        atomic_fetch_add(&uring_srv.stats.conns_denied, 1);
        uring_metrics_count_refused(URING_REFUSED_NOT_ALLOWED);
        uring_log(URING_LOG_WARN, "conn_denied", "uid=%u gid=%u pid=%d reason=not_allowed",
                  (unsigned)cred.uid, (unsigned)cred.gid, (int)cred.pid);
        worker_refuse(fd, COFFER_ERR_PERMISSION,
                      "permission denied: this uid/gid is not allowed (cofferd --allow-uid / "
                      "--allow-gid)");
        return;
    }
    if (atomic_load(&uring_srv.stopping)) {
        uring_metrics_count_refused(URING_REFUSED_SHUTDOWN);
        worker_refuse(fd, COFFER_ERR_SHUTDOWN, coffer_strerror(COFFER_ERR_SHUTDOWN));
        return;
    }
    if (atomic_fetch_add(&uring_srv.active_conns, 1) >= uring_srv.cfg.max_conns) {
        atomic_fetch_sub(&uring_srv.active_conns, 1);
        atomic_fetch_add(&uring_srv.stats.conns_busy, 1);
        uring_metrics_count_refused(URING_REFUSED_BUSY);
        uring_log(URING_LOG_WARN, "conn_busy", "uid=%u pid=%d max_connections=%d",
                  (unsigned)cred.uid, (int)cred.pid, uring_srv.cfg.max_conns);
        worker_refuse(fd, COFFER_ERR_BUSY, coffer_strerror(COFFER_ERR_BUSY));
        return;
    }
    if (uring_srv.cfg.max_conns_per_uid > 0 &&
        uring_peers_enter(cred.uid, uring_srv.cfg.max_conns_per_uid) != 0) {
        char msg[256];
        atomic_fetch_sub(&uring_srv.active_conns, 1);
        atomic_fetch_add(&uring_srv.stats.conns_busy, 1);
        uring_log(URING_LOG_WARN, "conn_busy", "uid=%u pid=%d max_connections_per_uid=%d",
                  (unsigned)cred.uid, (int)cred.pid, uring_srv.cfg.max_conns_per_uid);
        snprintf(msg, sizeof(msg),
                 "%s: this uid holds %d connections already (--max-connections-per-uid)",
                 coffer_strerror(COFFER_ERR_BUSY), uring_srv.cfg.max_conns_per_uid);
        worker_refuse(fd, COFFER_ERR_BUSY, msg);
        return;
    }
    if ((c = uring_conn_new(w, fd, cred.uid, cred.pid)) == NULL) {
        if (uring_srv.cfg.max_conns_per_uid > 0)
            uring_peers_leave(cred.uid);
        atomic_fetch_sub(&uring_srv.active_conns, 1);
        uring_metrics_count_refused(URING_REFUSED_NOMEM);
        worker_refuse(fd, COFFER_ERR_NOMEM, coffer_strerror(COFFER_ERR_NOMEM));
        return;
    }
    c->uid_counted = uring_srv.cfg.max_conns_per_uid > 0;
    uring_conn_pump(c);
}

/*
 * Out of descriptors (EMFILE/ENFILE) or memory at accept: the connection stays in the backlog,
 * and retrying at once would only spin. Stop accepting until the next tick (a second), log the
 * episode once, and say when it ended.
 */
static void worker_accept_pause(struct uring_worker *w, int err)
{
    w->accept_paused = 1;
    if (w->paused_at > 0)
        return;
    w->paused_at = uring_now();
    uring_log(URING_LOG_WARN, "accept_paused",
              "worker=%d errno=%s detail=\"%s: not accepting connections until descriptors free "
              "up (retrying every second); raise LimitNOFILE or ulimit -n, or lower "
              "--max-connections\"",
              w->index,
              err == EMFILE   ? "EMFILE"
              : err == ENFILE ? "ENFILE"
                              : "ENOMEM",
              strerror(err));
}

static void worker_accept_resumed(struct uring_worker *w)
{
    if (w->paused_at == 0)
        return;
    uring_log(URING_LOG_INFO, "accept_resumed", "worker=%d paused_s=%.1f", w->index,
              uring_now() - w->paused_at);
    w->paused_at = 0;
}

static struct uring_conn *worker_conn(struct uring_worker *w, uint64_t ud)
{
    uint32_t slot = uring_udata_slot(ud);
    struct uring_conn *c = slot < w->nslots ? w->conns[slot] : NULL;
    return c != NULL && c->gen == uring_udata_gen(ud) ? c : NULL;
}

/* The shutdown grace expired: fail running jobs; two seconds later close what is left. */
static void worker_abort(struct uring_worker *w, double now)
{
    int hard = now - uring_srv.abort_at >= 2.0;
    if (w->aborted >= 1 + hard)
        return;
    w->aborted = 1 + hard;
    for (uint32_t i = 0; i < w->nslots; i++)
        if (w->conns[i] != NULL)
            uring_conn_abort(w->conns[i], hard);
}

/* Stopping and no connection left: the accept ends (its last completion clears accept_armed). */
static void worker_accept_cancel(struct uring_worker *w)
{
    struct io_uring_sqe *sqe;
    if (w->accept_cancelled)
        return;
    w->accept_cancelled = 1;
    if (!w->accept_armed)
        return;
    sqe = uring_worker_sqe(w);
    io_uring_prep_cancel64(sqe, uring_udata_pack(URING_OP_ACCEPT, 0, 0), 0);
    io_uring_sqe_set_data64(sqe, uring_udata_pack(URING_OP_CANCEL, 0, 0));
}

static void worker_stop(struct uring_worker *w)
{
    if (w->stopping_seen)
        return;
    w->stopping_seen = 1;
    for (uint32_t i = 0; i < w->nslots; i++)
        if (w->conns[i] != NULL)
            uring_conn_stop(w->conns[i]);
}

static void worker_cqe(struct uring_worker *w, struct io_uring_cqe *cqe)
{
    uint64_t ud = io_uring_cqe_get_data64(cqe);
    enum uring_op op = uring_udata_op(ud);
    struct uring_conn *c;

    switch (op) {
    case URING_OP_ACCEPT:
        if (!(cqe->flags & IORING_CQE_F_MORE))
            w->accept_armed = 0;
        if (cqe->res >= 0) {
            worker_accept_resumed(w);
            worker_accepted(w, cqe->res);
        } else if (cqe->res == -EMFILE || cqe->res == -ENFILE || cqe->res == -ENOBUFS ||
                   cqe->res == -ENOMEM) {
            worker_accept_pause(w, -cqe->res);
        } else if (cqe->res != -ECANCELED) {
            uring_log(URING_LOG_WARN, "accept_error", "errno=%d", -cqe->res);
        }
        worker_arm_accept(w);
        break;
    case URING_OP_EVENT:
        worker_arm_event(w);
        uring_offload_ring_drain(&w->offload); /* cipher batches, key answers */
        if (atomic_load(&uring_srv.stopping))
            worker_stop(w);
        if (atomic_load(&uring_srv.aborting))
            worker_abort(w, uring_now());
        break;
    case URING_OP_TICK: {
        double now = uring_now();
        worker_arm_tick(w);
        uring_hsm_tick(); /* queues a cache sweep now and then; never waits */
        if (atomic_load(&uring_srv.aborting))
            worker_abort(w, now);
        if (w->accept_paused) { /* out of descriptors: try again (nginx's way) */
            w->accept_paused = 0;
            worker_arm_accept(w);
        }
        for (uint32_t i = 0; i < w->nslots; i++)
            if (w->conns[i] != NULL)
                uring_conn_tick_io(w->conns[i], now);
        for (uint32_t i = 0; i < w->nslots; i++)
            if (w->conns[i] != NULL)
                uring_conn_tick(w->conns[i], now, uring_srv.cfg.io_timeout);
        break;
    }
    case URING_OP_CANCEL:
        break;
    default:
        if ((c = worker_conn(w, ud)) != NULL)
            uring_conn_complete(c, op, cqe->res, cqe->flags);
        break;
    }
}

/*
 * Handle every completion: each leaves the CQ before it is handled (a handler that finds the SQ
 * full reaps the CQ into the backlog, uring_worker_sqe), and the backlog, being older, goes
 * before what is still in the CQ.
 */
static void worker_drain(struct uring_worker *w)
{
    for (;;) {
        struct io_uring_cqe c, *cqe;
        memset(&c, 0, sizeof(c));
        if (w->backlog_head < w->nbacklog) {
            c.user_data = w->backlog[w->backlog_head].user_data;
            c.res = w->backlog[w->backlog_head].res;
            c.flags = w->backlog[w->backlog_head].flags;
            if (++w->backlog_head == w->nbacklog)
                w->backlog_head = w->nbacklog = 0;
        } else if (io_uring_peek_cqe(&w->ring, &cqe) == 0 && cqe != NULL) {
            c.user_data = cqe->user_data;
            c.res = cqe->res;
            c.flags = cqe->flags;
            io_uring_cqe_seen(&w->ring, cqe);
        } else {
            return;
        }
        worker_cqe(w, &c);
    }
}

static void *worker_main(void *arg)
{
    struct uring_worker *w = arg;
    struct io_uring_params p;
    int r;

    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    p.cq_entries = w->ring_entries * 4;
    r = io_uring_queue_init_params(w->ring_entries, &w->ring, &p);
    if (r == -EINVAL) {
        memset(&p, 0, sizeof(p));
        p.flags = IORING_SETUP_CQSIZE;
        p.cq_entries = w->ring_entries * 4;
        r = io_uring_queue_init_params(w->ring_entries, &w->ring, &p);
    }
    if (r == 0 && w->fail_ring) {
        io_uring_queue_exit(&w->ring);
        r = -ENOMEM;
    }
    pthread_mutex_lock(&w->lock);
    w->start_err = r;
    w->ready = 1;
    pthread_mutex_unlock(&w->lock);
    if (r < 0) {
        atomic_fetch_sub(&uring_srv.workers_running, 1);
        return NULL;
    }
    worker_arm_event(w);
    worker_arm_tick(w);
    worker_arm_accept(w);
    while (!(w->stopping_seen && !w->accept_armed && w->nconns == 0)) {
        if (w->stopping_seen && w->nconns == 0)
            worker_accept_cancel(w);
        r = io_uring_submit_and_wait(&w->ring, 1);
        if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY && r != -ETIME) {
            uring_log(URING_LOG_ERROR, "ring_error", "worker=%d errno=%d", w->index, -r);
            break;
        }
        worker_drain(w);
    }
    io_uring_submit(&w->ring); /* the asynchronous closes of the last connections' files */
    io_uring_queue_exit(&w->ring);
    free(w->backlog);
    w->backlog = NULL;
    if (w->sq_full > 0)
        uring_log(URING_LOG_INFO, "ring_sq_full", "worker=%d full=%llu waits=%llu", w->index,
                  (unsigned long long)w->sq_full, (unsigned long long)w->sq_waits);
    atomic_fetch_sub(&uring_srv.workers_running, 1);
    return NULL;
}

/*
 * Fault injection for tests: COFFER_TEST_WORKER_FAIL=<index>:<step> makes worker <index>'s start
 * fail at <step> ("eventfd", "thread" or "ring"), as if the system had refused it; "submit" makes
 * its submits of a full SQ answer -EBUSY while completions wait (worker_submit).
 * COFFER_TEST_RING_ENTRIES=N (2..URING_RING_SIZE) makes every ring that small, so that its SQ and
 * CQ fill up under a few connections. Read once at start-up on the main thread; no effect unless
 * set.
 */
static int uring_worker_fault_at(int index, const char *step)
{
    const char *v = getenv("COFFER_TEST_WORKER_FAIL");
    char want[32];
    if (v == NULL)
        return 0;
    snprintf(want, sizeof(want), "%d:%s", index, step);
    return strcmp(v, want) == 0;
}
#define uring_worker_fault(step) uring_worker_fault_at(index, step)

/* Undo a start that failed before the thread ran (or after it returned): nothing leaks. */
static void worker_start_undo(struct uring_worker *w)
{
    if (w->evfd >= 0)
        close(w->evfd);
    w->evfd = -1;
    free(w->conns);
    w->conns = NULL;
    pthread_mutex_destroy(&w->lock);
}

int uring_worker_start(struct uring_worker *w, int index)
{
    int r = COFFER_ERR_INTERNAL;

    w->index = index;
    w->nslots = (uint32_t)uring_srv.cfg.max_conns;
    w->conns = calloc(w->nslots, sizeof(*w->conns));
    w->evfd = uring_worker_fault("eventfd") ? -1 : eventfd(0, EFD_CLOEXEC);
    pthread_mutex_init(&w->lock, NULL);
    if (w->conns == NULL || w->evfd < 0) {
        worker_start_undo(w);
        return COFFER_ERR_NOMEM;
    }
    uring_offload_ring_init(&w->offload, w->evfd);
    w->fail_ring = uring_worker_fault("ring");
    w->ring_entries = URING_RING_SIZE;
    if (getenv("COFFER_TEST_RING_ENTRIES") != NULL) { /* tests: a tiny ring fills at once */
        long n = strtol(getenv("COFFER_TEST_RING_ENTRIES"), NULL, 10);
        w->ring_entries = n >= 2 && n <= URING_RING_SIZE ? (unsigned)n : URING_RING_SIZE;
    }
    w->fail_submit = uring_worker_fault("submit");
    atomic_fetch_add(&uring_srv.workers_running, 1);
    if (uring_worker_fault("thread") || pthread_create(&w->thread, NULL, worker_main, w) != 0) {
        atomic_fetch_sub(&uring_srv.workers_running, 1);
        worker_start_undo(w);
        return r;
    }
    for (;;) {
        int ready;
        pthread_mutex_lock(&w->lock);
        ready = w->ready;
        r = w->start_err;
        pthread_mutex_unlock(&w->lock);
        if (ready)
            break;
        usleep(1000);
    }
    if (r < 0) {
        pthread_join(w->thread, NULL);
        if (r == -ENOMEM || r == -EPERM)
            /* without CAP_IPC_LOCK the kernel charges each ring (about 72 KiB here) to
               RLIMIT_MEMLOCK, and a small limit refuses the ring with ENOMEM */
            uring_log(URING_LOG_ERROR, "ring_setup_failed",
                      "worker=%d errno=%d detail=\"the kernel refused the io_uring ring: raise "
                      "the locked-memory limit (systemd LimitMEMLOCK=, ulimit -l, or the "
                      "IPC_LOCK capability in Kubernetes); see docs/operations.md, Sizing\"",
                      index, -r);
        else
            uring_log(URING_LOG_ERROR, "ring_setup_failed", "worker=%d errno=%d", index, -r);
        worker_start_undo(w);
        return COFFER_ERR_INTERNAL;
    }
    w->started = 1;
    return 0;
}

void uring_worker_wake(struct uring_worker *w)
{
    uint64_t one = 1;
    if (write(w->evfd, &one, sizeof(one)) < 0) {
        /* the counter is already non-zero: the worker wakes anyway */
    }
}

void uring_worker_join(struct uring_worker *w)
{
    pthread_join(w->thread, NULL);
}

void uring_worker_free(struct uring_worker *w)
{
    if (!w->started)
        return;                            /* its start failed and undid itself */
    uring_offload_ring_close(&w->offload); /* answers that came too late are dropped (freed) */
    close(w->evfd);
    free(w->conns);
    pthread_mutex_destroy(&w->lock);
}
