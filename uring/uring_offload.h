/* SPDX-License-Identifier: Apache-2.0 */
/* The one way off a ring thread: tasks run on named, bounded thread pools and come back to their
 * ring through one completion list per ring. */
#ifndef URING_OFFLOAD_H
#define URING_OFFLOAD_H

#include <stdint.h>

/*
 * The pools. Each has its own threads and FIFO queue, so that a stuck Secret read never delays a
 * cipher batch and a cipher burst never delays a key load.
 *
 * CIPHER  cipher batches of --offload-min and more, and the helper half of split batches
 *         (--helpers threads). One task per job at most, so the queue is bounded by connections.
 * FILE    batches that may block on the velero-v1 spool file (a job past URING_SPOOL_MEM).
 * KEYS    Secret loads (files or the Kubernetes API; uring_keys.c). Queue bounded.
 * HSM     work of the pkcs11 retriever that may wait: closing a retired HSM client, probes and
 *         the cache sweep (uring_hsm.c). Calls to the token itself go through hsm_client's
 *         asynchronous submit and do not hold a pool thread while they wait.
 */
enum uring_offload_pool {
    URING_POOL_CIPHER,
    URING_POOL_FILE,
    URING_POOL_KEYS,
    URING_POOL_HSM,
    URING_POOL_COUNT
};

#define URING_OFFLOAD_THREADS_MAX 64
#define URING_OFFLOAD_QUEUE_MAX   4096 /* tasks queued per bounded pool (KEYS, HSM) */
#define URING_OFFLOAD_STOP_WAIT_MS 2000 /* shutdown waits this long for a task stuck in a call */

struct uring_offload_task;

/*
 * A ring's completion path: tasks done for this ring wait on one list, and the ring's eventfd is
 * written once per batch of them. The ring thread drains the list (uring_offload_ring_drain) when
 * its eventfd read completes. Embedded in the ring's owner (struct uring_worker); initialise with
 * uring_offload_ring_init before any task names it.
 */
struct uring_offload_ring {
    struct uring_offload_task *head, *tail; /* under the module's completion lock */
    int evfd;                               /* written when the list goes from empty to not */
    int closed;                             /* uring_offload_ring_close ran: completions drop */
};

/*
 * A task. The caller owns the memory (usually embedded in a larger object) and fills run, done,
 * ring and, when it must free something if the ring is gone, drop. The caller may use slot, gen
 * and ctx as it likes (the worker uses slot/gen to find the connection).
 *
 * run   runs on a thread of the pool the task was submitted to; it may block (that is what the
 *       pool is for). It may call uring_offload_park(t) to finish later: then the task stays the
 *       runner's until someone calls uring_offload_post(t) (from any thread).
 * done  runs on the ring thread of `ring` after run (or the post); the task is the caller's
 *       again. With ring NULL the task is fire-and-forget: nothing runs after run, which frees
 *       what it must.
 * drop  NULL, or called instead of done when the ring is closed or the pool stopped before the
 *       task ran or came back (shutdown): on whichever thread found out (the main thread at
 *       uring_offload_stop, or a pool thread left behind); it frees what the task owns. It never
 *       runs concurrently with run, and never after a run of a ring-less task.
 */
struct uring_offload_task {
    struct uring_offload_task *next; /* the module's */
    void (*run)(struct uring_offload_task *t);
    void (*done)(struct uring_offload_task *t);
    void (*drop)(struct uring_offload_task *t);
    struct uring_offload_ring *ring;
    uint32_t slot, gen;
    void *ctx;
};

/*
 * Start `nthreads` threads (1..URING_OFFLOAD_THREADS_MAX) for pool. Main thread, before any
 * submit. Returns 0, or COFFER_ERR_INTERNAL when a thread could not start (the pool then keeps
 * the threads that did; uring_offload_stop stops them).
 */
int uring_offload_start(enum uring_offload_pool pool, int nthreads)
    __attribute__((warn_unused_result));

/*
 * Queue t on pool (any thread, never blocks). Returns 0; or COFFER_ERR_BUSY when the pool's queue
 * holds URING_OFFLOAD_QUEUE_MAX tasks (KEYS, HSM) and COFFER_ERR_SHUTDOWN when the pool stopped:
 * then nothing was queued and t is still the caller's.
 */
int uring_offload_submit(enum uring_offload_pool pool, struct uring_offload_task *t)
    __attribute__((warn_unused_result));

/* Inside run, on the pool thread: this task finishes later, by uring_offload_post. From then on
 * the task may be posted (and freed) by another thread at any moment, even before run returns. */
void uring_offload_park(struct uring_offload_task *t);
/*
 * Hand a finished task to its ring (any thread, never blocks): done runs there. When the ring is
 * closed, drop runs here instead.
 */
void uring_offload_post(struct uring_offload_task *t);

void uring_offload_ring_init(struct uring_offload_ring *ring, int evfd);
/* Ring thread: run done for every task that came back. Returns how many. */
unsigned uring_offload_ring_drain(struct uring_offload_ring *ring);
/*
 * The ring thread is gone (after its join): tasks still listed, and any posted later, are
 * dropped. Main thread; after this the ring's memory may be freed once uring_offload_stop ran.
 */
void uring_offload_ring_close(struct uring_offload_ring *ring);

/*
 * Stop every pool (main thread, after every ring thread joined). Queued tasks that never ran are
 * dropped. Threads get up to wait_ms in all to finish the task they run; a thread still inside a
 * task after that (a Secret read on a hung file system, say) is left behind (detached): its task
 * is dropped when its run returns, and nothing it touches afterwards is freed (the pools are
 * static). Returns the number of threads left behind.
 */
int uring_offload_stop(unsigned wait_ms);

/* Pool threads still inside a task (after uring_offload_stop: those left behind). Any thread. */
int uring_offload_left_behind(void);

/* Tasks run per pool since start, for STATS (any thread). */
unsigned long long uring_offload_runs(enum uring_offload_pool pool);

#endif
