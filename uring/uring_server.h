/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cofferd's shared state (uring_srv: config, counters, the workers) and the declarations its files
 * share that need no ring (not a public API). The ring itself, its workers' and connections'
 * structures, is uring_ring.h: only the ring layer (uring_worker.c, uring_conn.c, uring_ring.c)
 * includes it, and with it liburing.
 */
#ifndef URING_SERVER_H
#define URING_SERVER_H

#include "proto_frame.h"
#include "session.h"
#include "uring_buf.h"
#include "uring_config.h"
#include "uring_keys.h"
#include "uring_offload.h"
#include "uring_udata.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

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
 * Work that may block goes to the FILE pool (uring_offload.h): a velero-v1 restore keeps its
 * first SESSION_SPOOL_MEM bytes of ciphertext in memory and then spools to an unlinked file, so
 * once a job passes that size every batch of it (update, finish, drain) runs on a helper while
 * the ring serves the other connections; so does the lseek that learns where a descriptor job's
 * files stand (it waits for the file's position lock). Buffered file writes of descriptor jobs
 * go to io_uring's own io-wq workers. Key material comes from the key loader (the KEYS pool,
 * uring_keys.c) and the HSM's asynchronous requests (uring_hsm.c).
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

/* CLOCK_MONOTONIC in seconds (uring_server.c, which also holds uring_srv). Any thread. */
double uring_now(void);

/*
 * The workers (uring_worker.c), main thread only: uring_workers_alloc makes n (0, or
 * COFFER_ERR_NOMEM), uring_worker_at names the i-th, uring_workers_release frees them after every
 * worker joined and the pools stopped. uring_worker_start: 0, or COFFER_ERR_INTERNAL with the
 * reason logged (nothing of that worker left behind). uring_worker_wake: any thread.
 */
int uring_workers_alloc(int n) __attribute__((warn_unused_result));
struct uring_worker *uring_worker_at(int i);
void uring_workers_release(void);
int uring_worker_start(struct uring_worker *w, int index) __attribute__((warn_unused_result));
void uring_worker_wake(struct uring_worker *w);
void uring_worker_join(struct uring_worker *w);
/* After every worker joined and the key loader stopped. */
void uring_worker_free(struct uring_worker *w);

/* Connections per peer uid (uring_peers.c; any thread). 0 when uid may open one more (counted),
 * -1 when it holds max already. */
int uring_peers_enter(uid_t uid, int max);
void uring_peers_leave(uid_t uid);
void uring_peers_free(void);
/*
 * The ring's side of a job (uring_job.c): what a session asks of the runtime, the key loaders
 * and the HSM, as session_ops hooks (see session.h for each contract). Ring thread.
 */
void *uring_job_rt_get(struct session_rt *out);
void uring_job_rt_put(void *rt);
/*
 * Ask for the key (the KEYS pool, or the HSM's asynchronous submit): the answer, a struct
 * uring_keyreq, comes back to `ring`'s thread through done(task) with task.slot/gen = slot/gen.
 * Returns 0, or COFFER_ERR_NOMEM (nothing was asked).
 */
int uring_job_key_request(const struct session_keyask *ask, struct uring_offload_ring *ring,
                          uint32_t slot, uint32_t gen, void (*done)(struct uring_offload_task *));
void uring_job_key_answer(void *hsm, const void *answer, struct session_key *ans);
int uring_job_hsm_backup(void *rt, void **hsm, engine_key **dk, char **meta);
int uring_job_hsm_restore(void *rt, const void *metadata_json, void **hsm, char *detail,
                          size_t detaillen);
void uring_job_hsm_end(void *rt, void *hsm, uint64_t bytes);
int uring_job_kube_ns_allowed(void *rt, const char *ns, char *detail, size_t detaillen);
int uring_job_recovery_seal(void *rt, const engine_key *key, char **meta, size_t *len, char *detail,
                            size_t detaillen);
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

#endif
