/* SPDX-License-Identifier: Apache-2.0 */
/* Named thread pools for work that leaves a ring thread, and the one way back to the ring. */
#include "uring_offload.h"

#include "coffer_error.h"
#include "uring_log.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

struct offload_pool {
    const char *name;
    unsigned queue_max; /* 0: bounded by the callers (one task per job) */
    pthread_mutex_t lock;
    pthread_cond_t work;
    pthread_cond_t idle; /* a thread left its loop */
    struct uring_offload_task *head, *tail;
    unsigned queued;
    int stop, running, nthreads;
    pthread_t threads[URING_OFFLOAD_THREADS_MAX];
    int exited[URING_OFFLOAD_THREADS_MAX];
    atomic_ullong runs;
};

struct offload_thread_arg {
    struct offload_pool *pool;
    int index;
};

/* Static, never freed: a thread left behind at shutdown may still touch its pool. */
#define POOL(label, qmax)                                                                          \
    {                                                                                              \
        .name = label, .queue_max = qmax, .lock = PTHREAD_MUTEX_INITIALIZER,                       \
        .work = PTHREAD_COND_INITIALIZER, .idle = PTHREAD_COND_INITIALIZER                         \
    }
static struct offload_pool pools[URING_POOL_COUNT] = {
    [URING_POOL_CIPHER] = POOL("cipher", 0),
    [URING_POOL_FILE] = POOL("file", 0),
    [URING_POOL_KEYS] = POOL("keys", URING_OFFLOAD_QUEUE_MAX),
    [URING_POOL_HSM] = POOL("hsm", URING_OFFLOAD_QUEUE_MAX),
};
static struct offload_thread_arg thread_args[URING_POOL_COUNT][URING_OFFLOAD_THREADS_MAX];

/* The completion lists of every ring, and whether rings may still get completions. */
static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static int done_closed; /* uring_offload_stop ran: every completion drops */

static void task_drop(struct uring_offload_task *t)
{
    if (t->drop != NULL)
        t->drop(t);
}

void uring_offload_ring_init(struct uring_offload_ring *ring, int evfd)
{
    ring->head = ring->tail = NULL;
    ring->evfd = evfd;
    ring->closed = 0;
}

/* Set by uring_offload_park inside run: the task is not ours to read after run returns (another
 * thread may post it, and its ring free it, at any moment). */
static __thread int offload_parked;

void uring_offload_park(struct uring_offload_task *t)
{
    (void)t;
    offload_parked = 1;
}

void uring_offload_post(struct uring_offload_task *t)
{
    struct uring_offload_ring *ring = t->ring;
    uint64_t one = 1;

    t->next = NULL;
    pthread_mutex_lock(&done_lock);
    if (done_closed || ring->closed) {
        pthread_mutex_unlock(&done_lock);
        task_drop(t);
        return;
    }
    if (ring->tail != NULL) {
        ring->tail->next = t;
    } else {
        ring->head = t;
        /* under the lock, so the ring (and its eventfd) cannot be closed meanwhile; a counter
         * that is already non-zero (EAGAIN never: it is far from the maximum) wakes it anyway */
        if (write(ring->evfd, &one, sizeof(one)) < 0) {
        }
    }
    ring->tail = t;
    pthread_mutex_unlock(&done_lock);
}

unsigned uring_offload_ring_drain(struct uring_offload_ring *ring)
{
    struct uring_offload_task *list;
    unsigned n = 0;

    pthread_mutex_lock(&done_lock);
    list = ring->head;
    ring->head = ring->tail = NULL;
    pthread_mutex_unlock(&done_lock);
    while (list != NULL) {
        struct uring_offload_task *t = list;
        list = t->next;
        t->next = NULL;
        t->done(t);
        n++;
    }
    return n;
}

void uring_offload_ring_close(struct uring_offload_ring *ring)
{
    struct uring_offload_task *list;

    pthread_mutex_lock(&done_lock);
    ring->closed = 1;
    list = ring->head;
    ring->head = ring->tail = NULL;
    pthread_mutex_unlock(&done_lock);
    while (list != NULL) {
        struct uring_offload_task *t = list;
        list = t->next;
        task_drop(t);
    }
}

static void *offload_main(void *arg)
{
    struct offload_thread_arg *ta = arg;
    struct offload_pool *p = ta->pool;

    pthread_mutex_lock(&p->lock);
    for (;;) {
        struct uring_offload_task *t;
        int ringless;
        while (p->head == NULL && !p->stop)
            pthread_cond_wait(&p->work, &p->lock);
        if (p->stop)
            break; /* what is still queued is dropped by uring_offload_stop */
        t = p->head;
        if ((p->head = t->next) == NULL)
            p->tail = NULL;
        p->queued--;
        pthread_mutex_unlock(&p->lock);
        t->next = NULL;
        offload_parked = 0;
        ringless = t->ring == NULL; /* a ring-less task may free itself in run */
        t->run(t);
        atomic_fetch_add_explicit(&p->runs, 1, memory_order_relaxed);
        if (!offload_parked && !ringless)
            uring_offload_post(t); /* dropped when shutdown went on without us */
        pthread_mutex_lock(&p->lock);
    }
    p->running--;
    p->exited[ta->index] = 1;
    pthread_cond_broadcast(&p->idle);
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

int uring_offload_start(enum uring_offload_pool pool, int nthreads)
{
    struct offload_pool *p = &pools[pool];

    if (nthreads < 1)
        nthreads = 1;
    if (nthreads > URING_OFFLOAD_THREADS_MAX)
        nthreads = URING_OFFLOAD_THREADS_MAX;
    pthread_mutex_lock(&done_lock);
    done_closed = 0;
    pthread_mutex_unlock(&done_lock);
    pthread_mutex_lock(&p->lock);
    p->stop = 0;
    pthread_mutex_unlock(&p->lock);
    for (; p->nthreads < nthreads; p->nthreads++) {
        struct offload_thread_arg *ta = &thread_args[pool][p->nthreads];
        ta->pool = p;
        ta->index = p->nthreads;
        pthread_mutex_lock(&p->lock);
        p->running++;
        p->exited[ta->index] = 0;
        pthread_mutex_unlock(&p->lock);
        if (pthread_create(&p->threads[p->nthreads], NULL, offload_main, ta) != 0) {
            pthread_mutex_lock(&p->lock);
            p->running--;
            pthread_mutex_unlock(&p->lock);
            uring_log(URING_LOG_ERROR, "start_failed",
                      "detail=\"cannot start thread %d of the %s pool\"", p->nthreads, p->name);
            return COFFER_ERR_INTERNAL;
        }
    }
    return 0;
}

int uring_offload_submit(enum uring_offload_pool pool, struct uring_offload_task *t)
{
    struct offload_pool *p = &pools[pool];
    int r = 0;

    t->next = NULL;
    pthread_mutex_lock(&p->lock);
    if (p->stop || p->nthreads == 0) {
        r = COFFER_ERR_SHUTDOWN;
    } else if (p->queue_max > 0 && p->queued >= p->queue_max) {
        r = COFFER_ERR_BUSY;
    } else {
        if (p->tail != NULL)
            p->tail->next = t;
        else
            p->head = t;
        p->tail = t;
        p->queued++;
        pthread_cond_signal(&p->work);
    }
    pthread_mutex_unlock(&p->lock);
    return r;
}

int uring_offload_stop(unsigned wait_ms)
{
    struct timespec until;
    int left = 0;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += wait_ms / 1000;
    until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    for (int i = 0; i < URING_POOL_COUNT; i++) {
        pthread_mutex_lock(&pools[i].lock);
        pools[i].stop = 1;
        pthread_cond_broadcast(&pools[i].work);
        pthread_mutex_unlock(&pools[i].lock);
    }
    /* from here on, work that comes back (late) has no ring to go to */
    pthread_mutex_lock(&done_lock);
    done_closed = 1;
    pthread_mutex_unlock(&done_lock);
    for (int i = 0; i < URING_POOL_COUNT; i++) {
        struct offload_pool *p = &pools[i];
        struct uring_offload_task *queued;
        int stuck;

        pthread_mutex_lock(&p->lock);
        while (p->running > 0 && pthread_cond_timedwait(&p->idle, &p->lock, &until) == 0)
            ;
        stuck = p->running;
        queued = p->head;
        p->head = p->tail = NULL;
        p->queued = 0;
        pthread_mutex_unlock(&p->lock);
        for (int k = 0; k < p->nthreads; k++) {
            int exited;
            pthread_mutex_lock(&p->lock);
            exited = p->exited[k];
            pthread_mutex_unlock(&p->lock);
            if (exited)
                pthread_join(p->threads[k], NULL);
            else
                pthread_detach(p->threads[k]);
        }
        p->nthreads = 0;
        while (queued != NULL) {
            struct uring_offload_task *t = queued;
            queued = t->next;
            task_drop(t);
        }
        if (stuck > 0)
            uring_log(URING_LOG_WARN, "offload_stuck",
                      "pool=%s threads=%d detail=\"a task did not return within %u ms of "
                      "shutdown; not waiting for it\"",
                      p->name, stuck, wait_ms);
        left += stuck;
    }
    return left;
}

int uring_offload_left_behind(void)
{
    int n = 0;
    for (int i = 0; i < URING_POOL_COUNT; i++) {
        pthread_mutex_lock(&pools[i].lock);
        n += pools[i].running;
        pthread_mutex_unlock(&pools[i].lock);
    }
    return n;
}

unsigned long long uring_offload_runs(enum uring_offload_pool pool)
{
    return atomic_load_explicit(&pools[pool].runs, memory_order_relaxed);
}
