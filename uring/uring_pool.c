/* SPDX-License-Identifier: Apache-2.0 */
/* Helper threads: run cipher batches and the blocking velero-v1 spool off the ring threads. */
#include "uring_server.h"

#include "coffer_error.h"
#include "uring_log.h"

#include <pthread.h>
#include <stdlib.h>

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_cond = PTHREAD_COND_INITIALIZER;
static struct uring_task *pool_head, *pool_tail; /* FIFO: a job's batches never overtake */
static int pool_stop;
static int pool_n;
static pthread_t *pool_threads;

/* Give a finished task back to its worker's ring. */
static void pool_return(struct uring_task *t)
{
    struct uring_worker *w = t->w;
    pthread_mutex_lock(&w->lock);
    t->next = w->tasks_done;
    w->tasks_done = t;
    pthread_mutex_unlock(&w->lock);
    uring_worker_wake(w);
}

static void *pool_main(void *arg)
{
    (void)arg;
    for (;;) {
        struct uring_task *t;
        pthread_mutex_lock(&pool_lock);
        while (pool_head == NULL && !pool_stop)
            pthread_cond_wait(&pool_cond, &pool_lock);
        t = pool_head;
        if (t != NULL && (pool_head = t->next) == NULL)
            pool_tail = NULL;
        pthread_mutex_unlock(&pool_lock);
        if (t == NULL)
            return NULL; /* stopping and nothing queued */
        t->next = NULL;
        t->run(t);
        pool_return(t);
    }
}

int uring_pool_start(int nthreads)
{
    if ((pool_threads = calloc((size_t)nthreads, sizeof(*pool_threads))) == NULL)
        return COFFER_ERR_NOMEM;
    for (; pool_n < nthreads; pool_n++) {
        if (pthread_create(&pool_threads[pool_n], NULL, pool_main, NULL) != 0) {
            uring_log(URING_LOG_ERROR, "start_failed", "detail=\"cannot start helper thread %d\"",
                      pool_n);
            return COFFER_ERR_INTERNAL;
        }
    }
    return 0;
}

void uring_pool_submit(struct uring_task *t)
{
    t->next = NULL;
    pthread_mutex_lock(&pool_lock);
    if (pool_tail != NULL)
        pool_tail->next = t;
    else
        pool_head = t;
    pool_tail = t;
    pthread_cond_signal(&pool_cond);
    pthread_mutex_unlock(&pool_lock);
}

void uring_pool_stop(void)
{
    pthread_mutex_lock(&pool_lock);
    pool_stop = 1;
    pthread_cond_broadcast(&pool_cond);
    pthread_mutex_unlock(&pool_lock);
    for (int i = 0; i < pool_n; i++)
        pthread_join(pool_threads[i], NULL);
    free(pool_threads);
    pool_threads = NULL;
    pool_n = 0;
}
