/* SPDX-License-Identifier: Apache-2.0 */
/* One client connection's protocol and job state machine as plain code: no ring, no globals. */
#ifndef SESSION_H
#define SESSION_H

#include "engine_key.h"
#include "engine_stream.h"
#include "proto_frame.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/*
 * A session is what cofferd knows of one connection: the frames that came in, the job they
 * started, the output waiting to go out. It does no I/O and calls no global: bytes and
 * descriptors go in (session_received, session_sent, session_fd_done, ...), and what must happen
 * next comes out as calls to the actions of its env (struct session_ops: receive into this
 * buffer, send these bytes, read this descriptor range, run this cipher batch, load this key,
 * close this descriptor, shut the connection). The ring layer (uring_conn.c) turns the actions
 * into io_uring submissions and completions back into session calls; a unit test or the fuzz
 * target (tests/fuzz/fuzz_session.c) supplies its own env and drives it from a buffer.
 *
 * Threads: every session_* function runs on the one thread that owns the session (its ring
 * thread), except session_work_run, which runs one cipher batch on whatever thread the action
 * `work` chose while the owner leaves the session's job alone (until session_work_done).
 * Actions are called from inside session_* calls on the owner thread and must not call back
 * into the session; their answers come later through the session_* input calls.
 *
 * Buffers. A session receives into one buffer of four maximal frames and sends from two halves
 * of two maximal frames each (one fills while the other is being sent): a streamed job moves up
 * to two 96 KiB frames per cipher batch and per send. A descriptor job reads and writes in
 * --fd-piece pieces through SESSION_FILE_BUFS input and as many output buffers, taken from a
 * budget of SESSION_FDBUF_BUDGET for all jobs at once (the env's fdbuf_take); a job that finds
 * the budget spent gets two SESSION_FILE_SMALL pieces instead, so memory stays bounded by the
 * connections whatever the job sizes.
 */
#define SESSION_IN_CAP       (4 * (COFFER_FRAME_HEADER + COFFER_MAX_FRAME))        /* frames in */
#define SESSION_OUT_HALF     (2 * (COFFER_FRAME_HEADER + COFFER_MAX_FRAME) + 2048) /* one send buf */
#define SESSION_DATA_OUT     COFFER_MAX_FRAME /* most output bytes per outgoing DATA frame */
#define SESSION_OUT_MIN      4096u /* smallest output room worth running the cipher for */
#define SESSION_FILE_SMALL   (64u * 1024u)
#define SESSION_FILE_BUFS    4u            /* at most; <= 16 (the ring's write op codes) */
#define SESSION_FILE_WEXTRA  (64u * 1024u) /* output room beyond the input: header and tags */
#define SESSION_FDBUF_BUDGET (32u << 20)
#define SESSION_SPOOL_MEM    (1u << 20) /* velero-v1 restores: bytes spooled in memory per job */
#define SESSION_WORK_SLICES  4          /* DATA frames one cipher batch may take */
#define SESSION_DETAIL_MAX   512
#define SESSION_MAX_FDS      COFFER_MAX_FDS /* descriptors one receive may bring */

/*
 * The state of a connection: exactly one at a time.
 *
 *   HELLO --HELLO frame--> IDLE
 *   IDLE --JOB (stream or fds)--> HEADER | KEYWAIT | RUN       (session_job.c: format and key)
 *   IDLE --JOB (fds), positions unknown--> PROBE --session_probed--> (the JOB frame again)
 *   IDLE --HEALTH/STATS--> IDLE                                 (a JSON reply queued)
 *   HEADER --coffer-v1 header complete--> KEYWAIT
 *   KEYWAIT --session_key_done, key good--> RUN
 *   RUN --input ended, finish()--> DRAIN --drain() gives nothing--> DONE
 *   DONE --RESULT queued (after fsync for FSYNC jobs)--> IDLE   (FLUSH when the daemon stops)
 *   IDLE --peer closed, or the daemon stops, output sent--> CLOSED
 *   any but CLOSED --bad frame, failed job, frame/I/O/key timeout, abort--> FLUSH (ERROR)
 *   FLUSH --last frame sent, the job's work and descriptor I/O ended--> CLOSED
 *   any --peer gone, send error, idle timeout, hard abort--> CLOSED
 *   CLOSED: nothing more is started; session_finished() says when every action came back.
 *
 * Besides the state, a session counts what it has out (a receive, a send, a descriptor read,
 * writes, an fsync, a cipher batch, a probe): those are operations in flight, not states. In
 * FLUSH, an ERROR waits while the job's cipher batch is out (the helper owns the output
 * buffer) and while its descriptor reads and writes run (the client must not see the end of a
 * job while output is still landing in its file).
 */
enum session_state {
    SESSION_HELLO,   /* the first frame must be HELLO */
    SESSION_IDLE,    /* no job: JOB, HEALTH, STATS */
    SESSION_PROBE,   /* a descriptor JOB frame waits for its descriptors' positions */
    SESSION_HEADER,  /* decrypt coffer-v1: reading the header */
    SESSION_KEYWAIT, /* the job waits for its key */
    SESSION_RUN,     /* the job's stream exists: input flows */
    SESSION_DRAIN,   /* input ended and finish() done: draining (velero-v1 restores) */
    SESSION_DONE,    /* all output produced: RESULT next */
    SESSION_FLUSH,   /* the last frame (an ERROR, or a RESULT while stopping) is or will be
                      * queued: nothing more is read; close once it is sent */
    SESSION_CLOSED,  /* closing: no new operation; finished when all are back */
};

/* The limits a session reads from the daemon's configuration (they may change on reload). */
struct session_config {
    long offload_min, split_min, fd_piece;
    int io_timeout, frame_timeout, shutdown_grace;
};

/*
 * What a job needs of the daemon's runtime (the key of new backups, the Secret, the format),
 * valid while the job holds the runtime reference `rt_get` returned.
 */
struct session_rt {
    int encryption, echo, allow_plaintext_restore;
    coffer_format format;
    const char *ns, *secret, *spool_dir;
    const engine_key *key; /* the key of new backups, or NULL */
    const char *metadata;  /* the status metadata of a new backup in `format` */
    size_t metadata_len;
    int api_source;  /* --secret-source kubernetes: every backup asks for its key */
    int hsm_backups; /* new coffer-v1 backups take their data key from the HSM */
};

/* A key the job needs: the ring layer loads it off the ring and answers session_key_done. */
struct session_keyask {
    const char *ns, *name, *key_id; /* key_id: what the backup names, or "" */
    engine_key_rule rule;
    void *hsm; /* the job's HSM state (hsm_* hooks), NULL for a Secret */
    void *rt;  /* the job's runtime reference (rt_get) */
};

/* The answer to a key request, as the env's key_answer reads it. */
struct session_key {
    int err;               /* 0, or the coffer code; detail says more */
    const engine_key *key; /* borrowed until session_key_done returns */
    char *meta;            /* HSM backups: status metadata to store (malloc), else NULL */
    char detail[SESSION_DETAIL_MAX];
};

/* What the stats and metrics count (the env's count hook). */
enum session_count {
    SESSION_COUNT_JOB_OK,     /* a RESULT was queued (info: the job) */
    SESSION_COUNT_JOB_FAILED, /* once per failed job, at its ERROR or at close */
    SESSION_COUNT_ERROR,      /* an ERROR frame with code `err` */
    SESSION_COUNT_TIMEOUT,    /* a connection timed out (idle, frame, I/O, key wait) */
    SESSION_COUNT_HELPER,     /* a cipher batch went to a helper thread */
    SESSION_COUNT_SPLIT,      /* of them, one half of a split batch */
    SESSION_COUNT_FD_SMALL,   /* a descriptor job got small buffers: the budget was spent */
};

struct session_jobinfo {
    int op;
    coffer_format format;
    uint64_t bytes_in, bytes_out;
    double seconds;
};

struct session;
struct session_work;

/*
 * The env: the actions (filled by the ring layer, or a test) and the outside facts a session
 * uses. One env serves many sessions and outlives them. Every hook is called on the session's
 * owner thread, never on a helper; none may call back into the session.
 */
struct session_ops {
    /* ---- actions: the ring layer answers each through the session_* input named ---- */
    /* receive into buf (room bytes) and descriptors -> session_received */
    void (*recv)(struct session *s, uint8_t *buf, size_t room);
    /* send len bytes of buf (stable until answered) -> session_sent */
    void (*send)(struct session *s, const uint8_t *buf, size_t len);
    /* read up to len bytes of fd at pos ((uint64_t)-1: the file position) -> session_fd_done */
    void (*fd_read)(struct session *s, int fd, uint8_t *buf, size_t len, uint64_t pos);
    /* write output buffer k (< SESSION_FILE_BUFS) -> session_fd_done(SESSION_FD_WRITE + k) */
    void (*fd_write)(struct session *s, unsigned k, int fd, const uint8_t *buf, size_t len,
                     uint64_t pos);
    void (*fd_sync)(struct session *s, int fd); /* -> session_fd_done(SESSION_FD_SYNC) */
    /*
     * cancel the descriptor read and fsync out, and the writes too when `writes`; each still
     * answers (e.g. -ECANCELED). A failed job's writes to a regular file are not cancelled
     * (writes = 0): they hold authenticated output and may land in any order, so cancelling an
     * earlier one while a later one lands would leave a hole of zeros inside the released
     * output; only a stall (--io-timeout) or a closing connection cancels them (writes = 1).
     */
    void (*fd_cancel)(struct session *s, int writes);
    /* close a descriptor the client passed (without blocking: close may flush a FUSE file) */
    void (*fd_close)(struct session *s, int fd);
    /* learn where in, out stand (off the owner thread: lseek may wait) -> session_probed */
    void (*fd_probe)(struct session *s, int in, int out);
    /*
     * Run session_work_run(wk) off the owner thread (split = 0), or only the second half of
     * a split batch's spans (split = 1, session_work_run_spans) -> session_work_done.
     */
    void (*work)(struct session *s, struct session_work *wk, int split);
    /* load a key -> session_key_done; returns 0 or a coffer code (nothing will answer) */
    int (*key_request)(struct session *s, const struct session_keyask *ask);
    /* the connection closes: end the receive and send in flight (they still answer) */
    void (*shutdown)(struct session *s);

    /* ---- facts and hooks ---- */
    double (*now)(void);   /* a monotonic clock, seconds */
    int (*stopping)(void); /* 1 once the daemon stops taking jobs */
    void (*config)(struct session_config *out);
    /* a reference to the current runtime and its values (*out valid until rt_put) */
    void *(*rt_get)(struct session_rt *out);
    void (*rt_put)(void *rt);
    /*
     * Allocation (align 0: malloc, else aligned, e.g. the connection's frame buffers); NULL when
     * out of memory; freed with free(). A descriptor job's I/O buffers (page-aligned, several
     * MiB a job) come from buf_alloc and go back through buf_free when both are set (cofferd
     * maps them one by one, uring_buf.h, so that RSS comes back after a load), else from
     * alloc(4096, n) and free().
     */
    void *(*alloc)(size_t align, size_t n);
    void *(*buf_alloc)(size_t n);
    void (*buf_free)(void *p);
    /* descriptor facts: 0 if in/out may be a job's input/output, else a code and detail */
    int (*fd_check)(int in, int out, char *detail, size_t detaillen);
    /* take n bytes of the descriptor buffer budget: 1 taken, 0 spent; fdbuf_give returns them */
    int (*fdbuf_take)(size_t n);
    void (*fdbuf_give)(size_t n);
    /* HEALTH or STATS: the reply's JSON text (malloc; NULL when out of memory) */
    char *(*report)(uint8_t type);
    /* the HSM: uring_hsm_job_backup/_restore/_ready/_end's contracts (uring_hsm.h) */
    int (*hsm_backup)(void *rt, void **hsm, engine_key **dk, char **meta);
    int (*hsm_restore)(void *rt, const void *metadata_json, void **hsm, char *detail,
                       size_t detaillen);
    void (*hsm_end)(void *rt, void *hsm, uint64_t bytes);
    /* fill ans from the loader's answer to key_request (borrowed from session_key_done) */
    void (*key_answer)(void *hsm, const void *answer, struct session_key *ans);
    /* --secret-source kubernetes: may a restore name this namespace? 0 or a code */
    int (*kube_ns_allowed)(void *rt, const char *ns, char *detail, size_t detaillen);
    /* recovery entries for a new coffer-v1 backup (uring_recovery_seal), and the hint */
    int (*recovery_seal)(void *rt, const engine_key *key, char **meta, size_t *len, char *detail,
                         size_t detaillen);
    void (*recovery_hint)(const void *metadata_json, char *detail, size_t detaillen);
    void (*log)(int level, const char *event, const char *fmt, va_list ap);
    void (*count)(enum session_count what, int err, const struct session_jobinfo *job);
};

/* Levels of the log hook (uring_log's). */
enum { SESSION_LOG_DEBUG, SESSION_LOG_INFO, SESSION_LOG_WARN, SESSION_LOG_ERROR };

/* The operations session_fd_done answers. */
enum session_fd_op {
    SESSION_FD_READ = 0,
    SESSION_FD_SYNC = 1,
    SESSION_FD_WRITE = 16, /* + the output buffer's index */
};

/*
 * A new session for connection number id of peer uid/pid (for the logs), owned by `owner`
 * (session_owner). ops must outlive it. NULL when out of memory. The caller then calls
 * session_pump to start receiving.
 */
struct session *session_new(const struct session_ops *ops, void *owner, uint64_t id, unsigned uid,
                            int pid);
/*
 * Free a session that is finished (session_finished) or whose actions will never answer: closes
 * the descriptors it holds through fd_close, counts a job left without ERROR as failed, frees
 * everything. Owner thread.
 */
void session_free(struct session *s);
void *session_owner(const struct session *s);
enum session_state session_state(const struct session *s);
const char *session_state_name(enum session_state st);
/* 1 when CLOSED and no action of the session is out: the owner may session_free it now. */
int session_finished(const struct session *s);

/* ---- input (owner thread); each ends by doing what can be done next ---- */

/*
 * The receive came back: res bytes landed at the buffer `recv` named (0: the peer closed, < 0:
 * -errno), with nfds descriptors (the session owns them from here: it keeps or closes each
 * exactly once); ctrunc: the kernel dropped some (MSG_CTRUNC).
 */
void session_received(struct session *s, int res, const int *fds, int nfds, int ctrunc);
void session_sent(struct session *s, int res);
/* A descriptor read, write (SESSION_FD_WRITE + k) or fsync came back: res bytes or -errno. */
void session_fd_done(struct session *s, int op, int res);
/* The positions fd_probe asked for ((uint64_t)-1: use the file position); out_regular: the
 * output is a regular file (FSYNC means something). */
void session_probed(struct session *s, uint64_t in_pos, uint64_t out_pos, int out_regular);
void session_work_done(struct session *s);
/* The key request came back; answer is the env's (key_answer reads it; borrowed). */
void session_key_done(struct session *s, const void *answer);
/*
 * Every tick, before session_tick: a frame started more than --frame-timeout ago fails the
 * session PROTO_FRAME; a descriptor job whose file I/O made no progress for --io-timeout fails
 * with IO (its reads and writes are cancelled, the client gets the error).
 */
void session_tick_io(struct session *s, double now);
/* Then: a key wait longer than timeout fails KEY_READ; an idle connection closes. */
void session_tick(struct session *s, double now, int timeout);
/* The daemon stops: close when idle; a running job finishes first. */
void session_stop(struct session *s);
/* The shutdown grace expired: fail the job with SHUTDOWN, or close (hard). */
void session_abort(struct session *s, int hard);
/* Do what can be done now (after session_new; the inputs above call it themselves). */
void session_pump(struct session *s);

/*
 * The cipher of one batch (any thread, while the owner leaves the job alone): what the action
 * `work` hands over. session_work_run runs the batch (split = 0); session_work_run_spans runs
 * the second half of a split batch's spans.
 */
void session_work_run(struct session_work *wk);
void session_work_run_spans(struct session_work *wk);
/*
 * 1 when the batch (split = 0) may block: a velero-v1 restore past SESSION_SPOOL_MEM reads and
 * writes its spool file. The ring layer runs such batches on a pool for blocking file I/O, not
 * beside the cipher batches. Owner thread, before the action `work` returns.
 */
int session_work_may_block(const struct session_work *wk);

#endif
