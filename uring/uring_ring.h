/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The ring layer's own structures: a worker (its io_uring ring, its connections, its completion
 * path) and a connection (its session and what the ring needs to serve the session's actions).
 * Only the ring layer includes this header, and with it liburing: uring_worker.c (the loop,
 * accepts, ticks, dispatch), uring_conn.c (a session's actions as submissions, completions as
 * session input) and uring_ring.c (the submission side). Everything else reaches the workers
 * through uring_server.h.
 */
#ifndef URING_RING_H
#define URING_RING_H

#include "uring_server.h"

#include <liburing.h>
#include <pthread.h>
#include <sys/socket.h>

/*
 * One connection on a worker's ring: its session (the protocol, session.h) and what the ring
 * needs to serve the session's actions. At most one task is out per connection: the probe of a
 * descriptor job's positions (before its job exists) or the job's cipher batch.
 */
struct uring_conn {
    struct uring_worker *w;
    uint32_t slot, gen;
    int fd;
    uint64_t id;
    uid_t uid;
    pid_t pid;
    int inflight;    /* ring operations and tasks out for this connection */
    int uid_counted; /* counted in uring_peers (--max-connections-per-uid) */
    int closing;     /* the session is closed: freed once inflight is 0 */
    struct session *s;
    struct msghdr msg;
    struct iovec iov;
    union {
        char buf[CMSG_SPACE(sizeof(int) * SESSION_MAX_FDS)];
        struct cmsghdr align;
    } cmsg;
    struct uring_offload_task task; /* the probe or the cipher batch out (slot/gen: this) */
    int task_probe;                 /* the task out is the probe */
    struct session_work *work;
    int probe_in, probe_out, probe_out_regular;
    uint64_t probe_in_pos, probe_out_pos;
};

struct uring_cqe_copy {
    uint64_t user_data;
    int32_t res;
    uint32_t flags;
};

struct uring_worker {
    int index;
    struct io_uring ring;
    pthread_t thread;
    int evfd;
    uint64_t evbuf;
    struct uring_conn **conns;
    uint32_t nslots, nconns, next_gen;
    int accept_armed, stopping_seen, tick_armed;
    int accept_cancelled; /* stopping with no connection left: accept no more */
    int accept_paused;    /* out of descriptors (EMFILE/ENFILE): accept again on the next tick */
    double paused_at;     /* when this episode of accept_paused began (0: none) */
    struct __kernel_timespec tick;
    pthread_mutex_t lock;
    struct uring_offload_ring offload; /* work and key answers back from the pools */
    int aborted;                       /* 1: jobs failed after the grace, 2: connections closed */
    int ready;
    int start_err;
    int started;   /* uring_worker_start succeeded (uring_worker_free has work to do) */
    int fail_ring; /* tests: COFFER_TEST_WORKER_FAIL (uring_worker.c) */
    /* completions reaped while the SQ was full (uring_worker_sqe), handled by the loop next */
    struct uring_cqe_copy *backlog;
    size_t nbacklog, backlog_cap, backlog_head;
    unsigned long long sq_full;  /* times uring_worker_sqe found the SQ full */
    unsigned long long sq_waits; /* of them, times it waited for a completion */
    int fail_submit;             /* tests: io_uring_submit answers -EBUSY this many times */
    unsigned ring_entries;       /* URING_RING_SIZE, or smaller for tests */
};

/*
 * The ring's submission side (uring_ring.c; the worker's ring thread only): a free SQE of w's
 * ring. When the SQ is full it submits; when the kernel refuses for now (-EBUSY: completions wait
 * to be reaped; -EAGAIN) it moves the completions into w's backlog (handled by the worker loop
 * next, in order) and submits again, or waits a millisecond for one completion: never a busy
 * loop, never NULL. A broken ring (-EBADF, -EFAULT) is logged and aborts.
 */
struct io_uring_sqe *uring_worker_sqe(struct uring_worker *w);

/*
 * Connections (uring_conn.c), ring thread of c->w only. uring_conn_new: NULL when out of memory
 * or slots (the caller refuses the connection and closes fd); the connection owns fd from then
 * on. Every other call may free c (when its session closed and nothing is out): do not touch c
 * after it.
 */
struct uring_conn *uring_conn_new(struct uring_worker *w, int fd, uid_t uid, pid_t pid);
void uring_conn_complete(struct uring_conn *c, enum uring_op op, int res, uint32_t cflags);
void uring_conn_pump(struct uring_conn *c);
void uring_conn_stop(struct uring_conn *c);
void uring_conn_tick(struct uring_conn *c, double now, int timeout);
/* Every tick, before uring_conn_tick: --frame-timeout and --io-timeout (session_tick_io). */
void uring_conn_tick_io(struct uring_conn *c, double now);

/* The shutdown grace expired: fail the running job with SHUTDOWN (or close when hard). */
void uring_conn_abort(struct uring_conn *c, int hard);

#endif
