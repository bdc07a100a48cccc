/* SPDX-License-Identifier: Apache-2.0 */
/* cofferd's internals shared by the worker loop, connections and jobs (not a public API). */
#ifndef URING_SERVER_H
#define URING_SERVER_H

#include "proto_frame.h"
#include "session.h"
#include "uring_config.h"
#include "uring_keys.h"
#include "uring_udata.h"

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>

/*
 * Threads. Each worker owns one io_uring ring and the connections it accepted; it never blocks
 * except in io_uring_enter. The cipher runs on the ring thread, in batches of at most two
 * 96 KiB frames (streams) or one 512 KiB piece (descriptor jobs): with no more busy connections
 * than cores that is fastest, since a hand-off to another thread costs more than it saves
 * (--offload-min moves large batches to the helpers for hosts with cores to spare). The one
 * exception: a descriptor job's piece is cut in two (engine spans, --split-min), half sealed or
 * opened on a helper while the ring thread does the other half, since a lone large job would
 * otherwise leave the second core to the writes alone. (Streamed jobs are not split: their
 * client needs the other core, and the split measured 0.35x the echo baseline against 0.5x.)
 * Work that may block goes to the helper threads (uring_pool.c): a velero-v1 restore keeps its
 * first SESSION_SPOOL_MEM bytes of ciphertext in memory and then spools to an unlinked file, so
 * once a job passes that size every batch of it (update, finish, drain) runs on a helper while
 * the ring serves the other connections; so does the lseek that learns where a descriptor job's
 * files stand (it waits for the file's position lock). Buffered file writes of descriptor jobs
 * go to io_uring's own io-wq workers. Key material comes from the key loader (uring_keys.c) and
 * HSM loaders.
 *
 * The protocol and job state of a connection is the session (session.h), plain code that never
 * sees liburing; the ring layer (uring_conn.c, uring_worker.c) turns the session's actions into
 * submissions and completions back into session calls. (This header still carries liburing's
 * types for the daemon's other files.) Buffer
 * sizes and limits are the session's (SESSION_*). Descriptor jobs read --fd-piece bytes
 * (URING_FD_PIECE_DEFAULT, 512 KiB) at a time: smaller pieces were measured slower here (each
 * piece costs thread wake-ups), larger ones too (writes of 1 MiB and more get large page-cache
 * folios that this VM's host faults in slowly).
 */
#define URING_DETAIL_MAX   SESSION_DETAIL_MAX
#define URING_FDBUF_BUDGET SESSION_FDBUF_BUDGET
#define URING_RING_SIZE    512

struct uring_stats {
    atomic_ullong conns_total, conns_denied, conns_busy, conns_timeout;
    atomic_ullong jobs_ok, jobs_failed, bytes_in, bytes_out, key_loads;
    atomic_ullong helper_batches; /* cipher batches run on the helper threads */
    atomic_ullong split_batches;  /* of them, halves of a batch split with the ring thread */
    atomic_ullong fd_small;       /* descriptor jobs on small buffers: the budget was spent */
};

struct uring_worker;

struct uring_server {
    struct uring_config cfg; /* the start-up config (socket, workers, limits) */
    int listen_fd;
    atomic_int stopping; /* SIGTERM: refuse new jobs, finish running ones */
    atomic_int aborting; /* the shutdown grace expired: fail running jobs with SHUTDOWN */
    double abort_at;     /* when aborting was set (uring_now) */
    atomic_int workers_running;
    atomic_int active_conns;
    atomic_ullong next_conn_id;
    atomic_size_t fdbuf_bytes; /* held of URING_FDBUF_BUDGET by running descriptor jobs */
    struct uring_stats stats;
    int nworkers;
    struct uring_worker *workers;
    double started;
};

extern struct uring_server uring_srv;

/*
 * A unit of work for the helper threads (uring_pool.c): run() executes there, then the task goes
 * back to its worker's ring (the worker's eventfd), which finds the connection by slot and
 * generation. A connection with a task out is never freed before the task comes back.
 */
struct uring_task {
    struct uring_task *next;
    void (*run)(struct uring_task *t);
    struct uring_worker *w;
    uint32_t slot, gen;
};

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
    struct uring_task task; /* the probe or the cipher batch out */
    int task_probe;         /* the task out is the probe */
    struct session_work *work;
    int probe_in, probe_out, probe_out_regular;
    uint64_t probe_in_pos, probe_out_pos;
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
    struct uring_keyreq *keys_done; /* answers from the key loader */
    struct uring_task *tasks_done;  /* work back from the helper threads */
    int aborted;                    /* 1: jobs failed after the grace, 2: connections closed */
    int ready;
    int start_err;
};

double uring_now(void);

/* Worker (uring_worker.c). */
struct io_uring_sqe *uring_worker_sqe(struct uring_worker *w);
int uring_worker_start(struct uring_worker *w, int index) __attribute__((warn_unused_result));
void uring_worker_wake(struct uring_worker *w);
void uring_worker_join(struct uring_worker *w);
/* After every worker joined and the key loader stopped. */
void uring_worker_free(struct uring_worker *w);

/* Helper threads (uring_pool.c): cipher batches and the blocking velero-v1 spool. */
int uring_pool_start(int nthreads) __attribute__((warn_unused_result));
/* Queue t; t->run executes on a helper thread, then t goes back to t->w's ring. */
void uring_pool_submit(struct uring_task *t);
/* After every worker joined (no task can be out). */
void uring_pool_stop(void);

/*
 * Connections (uring_conn.c), ring thread of c->w only. uring_conn_new: NULL when out of memory
 * or slots (the caller refuses the connection and closes fd); the connection owns fd from then
 * on. Every other call may free c (when its session closed and nothing is out): do not touch c
 * after it.
 */
struct uring_conn *uring_conn_new(struct uring_worker *w, int fd, uid_t uid, pid_t pid);
void uring_conn_complete(struct uring_conn *c, enum uring_op op, int res, uint32_t cflags);
void uring_conn_pump(struct uring_conn *c);
/* Close a descriptor the client passed without blocking the ring (an IORING_OP_CLOSE). */
void uring_conn_close_fd(struct uring_conn *c, int fd);
void uring_conn_stop(struct uring_conn *c);
void uring_conn_tick(struct uring_conn *c, double now, int timeout);
/* Every tick, before uring_conn_tick: --frame-timeout and --io-timeout (session_tick_io). */
void uring_conn_tick_io(struct uring_conn *c, double now);

/* Connections per peer uid (uring_peers.c; any thread). 0 when uid may open one more (counted),
 * -1 when it holds max already. */
int uring_peers_enter(uid_t uid, int max);
void uring_peers_leave(uid_t uid);
void uring_peers_free(void);
/* The key loader answered (req is the worker's: it frees it after this returns). */
void uring_conn_key_done(struct uring_conn *c, struct uring_keyreq *req);
/* The connection's task (probe or cipher batch) came back from a helper thread. */
void uring_conn_work_done(struct uring_conn *c);
/* The shutdown grace expired: fail the running job with SHUTDOWN (or close when hard). */
void uring_conn_abort(struct uring_conn *c, int hard);

/*
 * The ring's side of a job (uring_job.c): what a session asks of the runtime, the key loaders
 * and the HSM, as session_ops hooks (see session.h for each contract). Ring thread.
 */
void *uring_job_rt_get(struct session_rt *out);
void uring_job_rt_put(void *rt);
int uring_job_key_request(struct session *s, const struct session_keyask *ask);
void uring_job_key_answer(void *hsm, const void *answer, struct session_key *ans);
int uring_job_hsm_backup(void *rt, void **hsm, engine_key **dk, char **meta);
int uring_job_hsm_restore(void *rt, const void *metadata_json, void **hsm, char *detail,
                          size_t detaillen);
void uring_job_hsm_end(void *rt, void *hsm, uint64_t bytes);
int uring_job_kube_ns_allowed(void *rt, const char *ns, char *detail, size_t detaillen);
int uring_job_recovery_seal(void *rt, const engine_key *key, char **meta, size_t *len,
                            char *detail, size_t detaillen);
void uring_job_recovery_hint(const void *metadata_json, char *detail, size_t detaillen);

/*
 * Descriptor facts (uring_fdjob.c).
 * uring_fdjob_check: the input must be a regular file, pipe/FIFO or socket open for reading,
 * the output a regular file, pipe/FIFO, socket or /dev/null open for writing, and not the same
 * file. Returns 0 or COFFER_ERR_INVALID_ARG with detail naming what was passed and what to pass
 * instead. Ring thread; never blocks (cached attributes only).
 */
int uring_fdjob_check(int in, int out, char *detail, size_t detaillen)
    __attribute__((warn_unused_result));
/*
 * Where in and out stand: explicit offsets for regular files (their current position), else
 * (uint64_t)-1 (pipes, sockets, /dev/null, an O_APPEND output); *out_regular: out is a regular
 * file. Calls lseek, which waits for the file's position lock (held by another thread of the
 * client in a read on a hung filesystem): a helper thread only, never a ring thread.
 */
void uring_fdjob_probe(int in, int out, uint64_t *in_pos, uint64_t *out_pos, int *out_regular);
/* A page-aligned I/O buffer (free() it); see session_ops.alloc in uring_conn.c. */
void *uring_buf_alloc(size_t n);

#endif
