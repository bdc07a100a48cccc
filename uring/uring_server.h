/* SPDX-License-Identifier: Apache-2.0 */
/* cofferd's internals shared by the worker loop, connections and jobs (not a public API). */
#ifndef URING_SERVER_H
#define URING_SERVER_H

#include "engine_header.h"
#include "engine_metadata.h"
#include "engine_stream.h"
#include "proto_frame.h"
#include "uring_config.h"
#include "uring_keys.h"
#include "uring_offload.h"
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
 * Work that
 * may block goes to the FILE pool (uring_offload.h): a velero-v1 restore keeps its first
 * URING_SPOOL_MEM bytes of ciphertext in memory and then spools to an unlinked file, so once a
 * job passes that size every batch of it (update, finish, drain) runs on a helper while the ring
 * serves the other connections. Buffered file writes of descriptor jobs go to io_uring's own
 * io-wq workers. Key material comes from the key loader (uring_keys.c) and HSM loaders.
 *
 * Buffers. A connection receives into one buffer of four maximal frames and sends from two
 * halves of two maximal frames each (one fills while the other is being sent): a streamed job
 * moves up to two 96 KiB frames per cipher batch and per send. A descriptor job reads and writes
 * in 512 KiB pieces through four input and four output buffers, so that the cipher of one piece
 * overlaps the writes of the previous ones (buffered file writes run on io_uring's io-wq).
 */
#define URING_IN_CAP   (4 * (COFFER_FRAME_HEADER + COFFER_MAX_FRAME))        /* frames being read */
#define URING_OUT_HALF (2 * (COFFER_FRAME_HEADER + COFFER_MAX_FRAME) + 2048) /* one send buffer */
#define URING_DATA_OUT COFFER_MAX_FRAME /* most output bytes per outgoing DATA frame */
#define URING_OUT_MIN  4096u            /* smallest output room worth running the cipher for */
/*
 * Descriptor jobs read --fd-piece bytes (URING_FD_PIECE_DEFAULT, 512 KiB) at a time into
 * URING_FILE_BUFS input buffers, with as many output buffers: 4.25 MiB a job by default, taken
 * from a budget of URING_FDBUF_BUDGET for all jobs at once. A job that finds the budget spent gets
 * two URING_FILE_SMALL pieces instead (0.25 MiB), so memory stays bounded by the connections,
 * whatever the job sizes. Smaller pieces were measured slower here (each piece costs thread
 * wake-ups), larger ones too (writes of 1 MiB and more get large page-cache folios that this VM's
 * host faults in slowly).
 */
#define URING_FILE_SMALL   (64u * 1024u)
#define URING_FILE_BUFS    4u            /* at most; <= 16 (the write op codes) */
#define URING_FILE_WEXTRA  (64u * 1024u) /* output room beyond the input: header and tags */
#define URING_FDBUF_BUDGET (32u << 20)
#define URING_SPOOL_MEM    (1u << 20) /* velero-v1 restores: bytes spooled in memory per job */
#define URING_WORK_SLICES  4          /* DATA frames one cipher batch may take */
#define URING_DETAIL_MAX   512
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

enum uring_job_state {
    JOB_HEADER,  /* decrypt coffer-v1: reading the header */
    JOB_KEYWAIT, /* waiting for the key loader */
    JOB_RUN,     /* the stream exists: input flows */
    JOB_DRAIN,   /* input ended and finish() done: draining (velero-v1 restores) */
    JOB_DONE,    /* all output produced */
};

/*
 * One cipher batch of a job: engine_stream update calls over up to URING_WORK_SLICES input
 * slices (tail = 0), or finish and drain calls (tail = 1), writing into one output region, with
 * DATA frame headers (streams) or raw (descriptor jobs). It runs inline on the ring thread when
 * small, otherwise on a helper thread: while busy, the job, its stream, the input slices and the
 * output region belong to the helper, and the ring thread touches none of them.
 */
struct uring_work {
    struct uring_offload_task task; /* uring_offload.h; slot/gen name the connection */
    struct uring_job *job;
    int busy, tail, framed;
    int nin;
    const uint8_t *in[URING_WORK_SLICES];
    size_t inlen[URING_WORK_SLICES], used[URING_WORK_SLICES];
    uint8_t *out;
    size_t outcap, produced;
    int err;
    char detail[URING_DETAIL_MAX];
    /* a split batch (uring_conn_work_split): spans [0, nspans/2) run on the ring thread, the
     * rest on a helper at the same time */
    int split;
    engine_span spans[2 * URING_WORK_SLICES];
    size_t nspans;
};

/*
 * A descriptor job's buffer: len bytes held, off consumed (input) or written (output); an
 * output buffer's bytes go to file offset pos (regular files) and io says a write is out.
 */
struct uring_fdbuf {
    uint8_t *p;
    size_t len, off;
    uint64_t pos;
    int io;
};

struct uring_job {
    uint8_t op, input;
    uint16_t flags;
    enum uring_job_state state;
    coffer_format format;
    int input_ended;
    struct uring_runtime *rt;
    engine_stream *s;
    engine_header_reader hdr;
    engine_key_rule rule;
    char key_ns[64], key_name[254], key_id[ENGINE_KEY_ID_LEN + 1];
    uint8_t *context;
    size_t context_len;
    char *meta_out; /* status metadata for the result (malloc) */
    size_t meta_out_len;
    struct uring_hsm_job *hsm; /* pkcs11 retriever state (uring_hsm.h), NULL for the Secret */
    uint64_t bytes_in, bytes_out;
    double t_start;
    int failure_counted; /* jobs_failed and the metrics counted it (at its ERROR) */
    struct uring_work work;
    /*
     * fd jobs: nbufs input and output buffers used as rings; in_head/out_head count
     * buffers started (read issued, output filled), in_tail/out_tail buffers finished
     * (consumed, written). One read is in flight at a time; writes to a regular file go at
     * explicit offsets, so every filled output buffer may be out at once (io-wq's worker then
     * goes from one to the next without sleeping, while the cipher fills the next); a pipe or
     * socket gets one write at a time, in order.
     */
    int in_fd, out_fd;
    struct uring_fdbuf fin[URING_FILE_BUFS], fout[URING_FILE_BUFS];
    unsigned nbufs;     /* buffers in use: URING_FILE_BUFS, or 2 when the budget is spent */
    size_t piece, wcap; /* bytes per read; bytes per output buffer */
    size_t budget_held; /* bytes of URING_FDBUF_BUDGET this job holds */
    unsigned in_head, in_tail, out_head, out_tail;
    int read_inflight, writes_inflight, fsync_inflight, read_eof, fsynced;
    uint64_t in_pos, out_pos; /* explicit offsets for regular files, else (uint64_t)-1 */
};

struct uring_conn {
    struct uring_worker *w;
    uint32_t slot, gen;
    int fd;
    uint64_t id;
    uid_t uid;
    pid_t pid;
    int inflight; /* ring operations in flight for this connection */
    int closing, close_after_flush, hello_done, rd_eof, keyreq_pending;
    int fail_err; /* an error that waits for the job's work to come back */
    char fail_detail[URING_DETAIL_MAX];
    double last_progress;
    double partial_since; /* when the front frame's first bytes came (0: no partial frame) */
    int uid_counted;      /* counted in uring_peers (--max-connections-per-uid) */
    /* input */
    uint8_t *in_mem, *in; /* in = in_mem + 2048 (see uring_conn_new) */
    size_t in_start, in_end, frame_pos;
    int recv_inflight;
    struct msghdr msg;
    struct iovec iov;
    union {
        char buf[CMSG_SPACE(sizeof(int) * 8)];
        struct cmsghdr align;
    } cmsg;
    int fds[COFFER_MAX_FDS];
    int nfds;
    /*
     * Descriptors belong to the last frame that starts before fds_end, the offset in `in` where
     * the receive that brought them ended (the kernel ends a receive right after the bytes sent
     * with descriptors); only a descriptor JOB frame may own them, any other has them closed at
     * once. While some wait for a job to end, nothing more is received (one set waits at most).
     */
    size_t fds_end;
    int frame_owns_fds; /* the frame being handled owns fds[] */
    /* output: one half fills while the other is being sent */
    uint8_t *out[2];
    size_t fill_len; /* bytes in out[fill] */
    size_t send_len, send_off;
    int fill, send_inflight;
    struct uring_job *job;
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
    int aborted;                    /* 1: jobs failed after the grace, 2: connections closed */
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

double uring_now(void);

/* Worker (uring_worker.c). */
struct io_uring_sqe *uring_worker_sqe(struct uring_worker *w);
int uring_worker_start(struct uring_worker *w, int index) __attribute__((warn_unused_result));
void uring_worker_wake(struct uring_worker *w);
void uring_worker_join(struct uring_worker *w);
/* After every worker joined and the key loader stopped. */
void uring_worker_free(struct uring_worker *w);

/*
 * The done callbacks of tasks that come back to a worker (uring_offload.h; ring thread): a job's
 * cipher batch (the connection by t->slot/t->gen, which must still exist) and a key request (a
 * struct uring_keyreq; dropped when its connection is gone, then freed).
 */
void uring_worker_work_back(struct uring_offload_task *t);
void uring_worker_key_back(struct uring_offload_task *t);

/* Connections (uring_conn.c). */
struct uring_conn *uring_conn_new(struct uring_worker *w, int fd, uid_t uid, pid_t pid);
void uring_conn_complete(struct uring_conn *c, enum uring_op op, int res, uint32_t cflags);
void uring_conn_pump(struct uring_conn *c);
void uring_conn_fail(struct uring_conn *c, int err, const char *detail);
void uring_conn_close(struct uring_conn *c, const char *why);
/* Close a descriptor the client passed without blocking the ring (an IORING_OP_CLOSE). */
void uring_conn_close_fd(struct uring_conn *c, int fd);
void uring_conn_stop(struct uring_conn *c);
void uring_conn_tick(struct uring_conn *c, double now, int timeout);
/*
 * Every tick, before uring_conn_tick: a frame started more than --frame-timeout ago fails the
 * connection PROTO_FRAME; a descriptor job whose file I/O made no progress for --io-timeout fails
 * with IO (its reads and writes are cancelled, the client gets the error).
 */
void uring_conn_tick_io(struct uring_conn *c, double now);

/* Connections per peer uid (uring_peers.c; any thread). 0 when uid may open one more (counted),
 * -1 when it holds max already. */
int uring_peers_enter(uid_t uid, int max);
void uring_peers_leave(uid_t uid);
void uring_peers_free(void);
void uring_conn_key_done(struct uring_conn *c, struct uring_keyreq *req);
/* The job's work came back from a helper thread. */
void uring_conn_work_done(struct uring_conn *c);
/* The shutdown grace expired: fail the running job with SHUTDOWN (or close when hard). */
void uring_conn_abort(struct uring_conn *c, int hard);
/* Hand the job's work to a helper thread, or run it here when run_here; then apply it. */
void uring_conn_work_submit(struct uring_conn *c, int run_here);
/*
 * The job's work split: the batch's whole chunks are cut into spans (engine_stream_update_spans,
 * two per input), half of them run on a helper while the ring thread runs the other half, so
 * one large job's cipher uses two cores; the work applies when both halves are done.
 */
void uring_conn_work_split(struct uring_conn *c);
void uring_conn_submit(struct uring_conn *c, struct io_uring_sqe *sqe, enum uring_op op);
/* The job is complete: queue its RESULT frame and free it. Returns 1 if done, 0 if no room. */
int uring_conn_job_result(struct uring_conn *c);
/* Reserve n bytes of output in the fill buffer; NULL if it does not fit now. */
uint8_t *uring_conn_out_reserve(struct uring_conn *c, size_t n);
void uring_conn_out_commit(struct uring_conn *c, size_t n);
size_t uring_conn_out_room(const struct uring_conn *c);

/*
 * A page-aligned I/O buffer (free() it). On AMD Zen 3/4 `rep movsb`, which the kernel's
 * copy_to_user and glibc's memcpy use for large copies, runs 4x slower when the destination is a
 * few bytes past the source's page offset: malloc's 16-byte header puts every large buffer there
 * relative to the page cache, so reads into malloc'd buffers ran at 2 GB/s instead of 8.
 */
void *uring_buf_alloc(size_t n);

/* Descriptor jobs (uring_fdjob.c). */
/*
 * Before anything is read: the input must be a regular file, pipe/FIFO or socket open for
 * reading, the output a regular file, pipe/FIFO, socket or /dev/null open for writing, and not
 * the same file. Returns 0 or COFFER_ERR_INVALID_ARG with detail naming what was passed and what
 * to pass instead. Ring thread; never blocks (cached attributes only).
 */
int uring_fdjob_check(int in, int out, char *detail, size_t detaillen)
    __attribute__((warn_unused_result));
int uring_fdjob_begin(struct uring_conn *c) __attribute__((warn_unused_result));
/* Read, cipher, write, fsync, result. Returns 1 if anything moved. */
int uring_fdjob_pump(struct uring_conn *c);
void uring_fdjob_complete(struct uring_conn *c, enum uring_op op, int res);
/* The fd job's work came back: account its input and output. */
void uring_fdjob_work_applied(struct uring_conn *c);
int uring_fdjob_busy(const struct uring_conn *c);
void uring_fdjob_cancel(struct uring_conn *c);

/* Jobs (uring_job.c). */
int uring_job_start(struct uring_conn *c, const proto_job *pj, char *detail, size_t detaillen);
/* JOB_HEADER: feed the coffer-v1 header reader; asks for the key once the header is complete. */
int uring_job_feed_header(struct uring_conn *c, const uint8_t *in, size_t len, size_t *used,
                          char *detail, size_t detaillen);
/* The error for input that ended in JOB_HEADER. */
int uring_job_header_truncated(struct uring_conn *c, char *detail, size_t detaillen);
/*
 * The cipher (any thread, while the ring thread leaves the job alone): JOB_RUN input through
 * engine_stream_update, or finish and drain (JOB_RUN -> JOB_DRAIN -> JOB_DONE).
 */
void uring_job_work_run(struct uring_work *wk);
/* Take back the spans of a split batch (engine_stream_spans_join) before the work applies. */
void uring_job_work_join(struct uring_work *wk);
/* 1 if this batch (input bytes, or the tail) may block on the velero-v1 spool file. */
int uring_job_may_block(const struct uring_job *j, size_t inbytes, int tail);
/* 1 if this batch goes to a helper thread: it may block, or it is at least --offload-min. */
int uring_job_offload(const struct uring_job *j, size_t inbytes, int tail);
int uring_job_key_ready(struct uring_conn *c, struct uring_keyreq *req, char *detail,
                        size_t detaillen);
void uring_job_free(struct uring_job *j);
const char *uring_job_op_name(const struct uring_job *j);

#endif
