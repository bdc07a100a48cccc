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
#include "uring_udata.h"

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>

#define URING_IN_CAP     (2 * (COFFER_FRAME_HEADER + COFFER_MAX_FRAME))  /* frames being read */
#define URING_OUT_HALF   (COFFER_FRAME_HEADER + COFFER_MAX_FRAME + 1024) /* one send buffer */
#define URING_DATA_OUT   COFFER_MAX_FRAME /* most output bytes per outgoing DATA frame */
#define URING_FILE_CHUNK (512u * 1024u)   /* fd jobs: bytes per read */
#define URING_FILE_WCAP  (URING_FILE_CHUNK + 64u * 1024u) /* fd jobs: write buffer */
#define URING_SPOOL_MEM  (1u << 20) /* velero-v1 restores: bytes spooled in memory per job */
#define URING_RING_SIZE  512

struct uring_stats {
    atomic_ullong conns_total, conns_denied, conns_busy, conns_timeout;
    atomic_ullong jobs_ok, jobs_failed, bytes_in, bytes_out, key_loads;
};

struct uring_worker;

struct uring_server {
    struct uring_config cfg; /* the start-up config (socket, workers, limits) */
    int listen_fd;
    atomic_int stopping;
    atomic_int active_conns;
    atomic_ullong next_conn_id;
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
    uint64_t bytes_in, bytes_out;
    double t_start;
    /* fd jobs */
    int in_fd, out_fd;
    uint8_t *rbuf, *wbuf;
    size_t rlen, roff, wlen, woff;
    int read_inflight, write_inflight, fsync_inflight, read_eof, fsynced;
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
    double last_progress;
    /* input */
    uint8_t *in;
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
    /* output: one half fills while the other is being sent */
    uint8_t *out[2];
    size_t fill_len; /* bytes in out[fill] */
    size_t send_len, send_off;
    int fill, send_inflight;
    struct uring_job *job;
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
    struct __kernel_timespec tick;
    pthread_mutex_t lock;
    struct uring_keyreq *keys_done; /* answers from the key loader */
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

/* Connections (uring_conn.c). */
struct uring_conn *uring_conn_new(struct uring_worker *w, int fd, uid_t uid, pid_t pid);
void uring_conn_complete(struct uring_conn *c, enum uring_op op, int res, uint32_t cflags);
void uring_conn_pump(struct uring_conn *c);
void uring_conn_fail(struct uring_conn *c, int err, const char *detail);
void uring_conn_close(struct uring_conn *c, const char *why);
void uring_conn_stop(struct uring_conn *c);
void uring_conn_tick(struct uring_conn *c, double now, int timeout);
void uring_conn_key_done(struct uring_conn *c, struct uring_keyreq *req);
/* Reserve n bytes of output in the fill buffer; NULL if it does not fit now. */
uint8_t *uring_conn_out_reserve(struct uring_conn *c, size_t n);
void uring_conn_out_commit(struct uring_conn *c, size_t n);
size_t uring_conn_out_room(const struct uring_conn *c);

/* Jobs (uring_job.c). */
int uring_job_start(struct uring_conn *c, const proto_job *pj, char *detail, size_t detaillen);
int uring_job_feed(struct uring_conn *c, const uint8_t *in, size_t len, uint8_t *out, size_t outcap,
                   size_t *used, size_t *produced, char *detail, size_t detaillen);
int uring_job_finish(struct uring_conn *c, uint8_t *out, size_t outcap, size_t *produced,
                     char *detail, size_t detaillen);
int uring_job_key_ready(struct uring_conn *c, struct uring_keyreq *req, char *detail,
                        size_t detaillen);
void uring_job_free(struct uring_job *j);
const char *uring_job_op_name(const struct uring_job *j);

#endif
