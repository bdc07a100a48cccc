/* SPDX-License-Identifier: Apache-2.0 */
/* The session's own structures, shared by session.c and session_job.c only. */
#ifndef SESSION_INT_H
#define SESSION_INT_H

#include "engine_header.h"
#include "engine_metadata.h"
#include "session.h"

/*
 * One cipher batch of a job: engine_stream update calls over up to SESSION_WORK_SLICES input
 * slices (tail = 0), or finish and drain calls (tail = 1), writing into one output region, with
 * DATA frame headers (streams) or raw (descriptor jobs). While busy, the job, its stream, the
 * input slices, the output region and `st` belong to whoever runs it; the owner touches none.
 * `st` is the job's state as the batch sees it (RUN, DRAIN, DONE): it becomes the session's
 * when the batch applies, unless the session failed meanwhile.
 */
struct session_work {
    struct session_job *job;
    enum session_state st;
    int busy, tail, framed;
    int nin;
    const uint8_t *in[SESSION_WORK_SLICES];
    size_t inlen[SESSION_WORK_SLICES], used[SESSION_WORK_SLICES];
    uint8_t *out;
    size_t outcap, produced;
    int err;
    char detail[SESSION_DETAIL_MAX];
    /* a split batch: spans [0, nspans/2) run on the owner, the rest elsewhere at once */
    int split;
    engine_span spans[2 * SESSION_WORK_SLICES];
    size_t nspans;
};

/* A descriptor job's buffer: len bytes held, off consumed (input) or written (output); an output
 * buffer's bytes go to file offset pos (regular files) and io says a write is out. */
struct session_fdbuf {
    uint8_t *p;
    size_t len, off;
    uint64_t pos;
    int io;
};

struct session_job {
    uint8_t op, input;
    uint16_t flags;
    coffer_format format;
    int input_ended; /* a streamed job's END came */
    void *rt;        /* the runtime reference (ops->rt_get) */
    struct session_rt rtv;
    engine_stream *s;
    engine_header_reader hdr;
    engine_key_rule rule;
    char key_ns[64], key_name[254], key_id[ENGINE_KEY_ID_LEN + 1];
    uint8_t *context;
    size_t context_len;
    char *meta_out; /* status metadata for the result (malloc) */
    size_t meta_out_len;
    void *hsm; /* the HSM state (ops->hsm_*), NULL for the Secret */
    uint64_t bytes_in, bytes_out;
    double t_start;
    int failure_counted;
    struct session_work work;
    /*
     * fd jobs: nbufs input and output buffers used as rings; in_head/out_head count buffers
     * started (read issued, output filled), in_tail/out_tail buffers finished (consumed,
     * written). One read is out at a time; writes to a regular file go at explicit offsets, so
     * every filled output buffer may be out at once; a pipe or socket gets one write at a time.
     */
    int in_fd, out_fd;
    struct session_fdbuf fin[SESSION_FILE_BUFS], fout[SESSION_FILE_BUFS];
    unsigned nbufs;
    size_t piece, wcap;
    size_t budget_held;
    unsigned in_head, in_tail, out_head, out_tail;
    int read_inflight, writes_inflight, fsync_inflight, read_eof, fsynced;
    uint64_t in_pos, out_pos; /* explicit offsets for regular files, else (uint64_t)-1 */
};

struct session {
    const struct session_ops *ops;
    void *owner;
    uint64_t id;
    unsigned uid;
    int pid;
    enum session_state state;
    int rd_eof;
    int fail_err; /* an ERROR that waits for the job's work to come back */
    char fail_detail[SESSION_DETAIL_MAX];
    double last_progress;
    double partial_since; /* when the front frame's first bytes came (0: none partial) */
    /* input */
    uint8_t *in_mem, *in; /* in = in_mem + 2048 */
    size_t in_start, in_end, frame_pos;
    int recv_inflight;
    /*
     * Descriptors belong to the last frame that starts before fds_end, the offset in `in` where
     * the receive that brought them ended; only a descriptor JOB frame may own them, any other
     * has them closed at once. While some wait for a job to end, nothing more is received.
     */
    int fds[SESSION_MAX_FDS];
    int nfds;
    size_t fds_end;
    int frame_owns_fds;
    /* the positions of a descriptor job's files (PROBE) */
    int probe_inflight, probed, probe_out_regular;
    uint64_t probe_in_pos, probe_out_pos;
    /* output: one half fills while the other is being sent */
    uint8_t *out[2];
    size_t fill_len, send_len, send_off;
    size_t job_mark; /* where in the fill half the job's output starts */
    int fill, send_inflight;
    struct session_job *job;
};

/* session_job.c: the job itself, below session.c (it calls nothing there) */
/*
 * A descriptor job's I/O buffer (page-aligned): ops->buf_alloc, or ops->alloc(4096, n) without
 * one; given back with session_buf_free (ops->buf_free, or free()).
 */
void *session_buf_alloc(const struct session *s, size_t n);
void session_buf_free(const struct session *s, void *p);
const char *session_job_op_name(const struct session_job *j);
int session_job_start(struct session *s, const proto_job *pj, char *detail, size_t detaillen);
void session_job_free(struct session *s, struct session_job *j);
int session_job_feed_header(struct session *s, const uint8_t *in, size_t len, size_t *used,
                            char *detail, size_t detaillen);
int session_job_header_truncated(struct session *s, char *detail, size_t detaillen);
int session_job_key_ready(struct session *s, const void *answer, char *detail, size_t detaillen);
void session_job_work_join(struct session_work *wk);
int session_job_offload(const struct session *s, const struct session_job *j, size_t inbytes,
                        int tail);

#endif
