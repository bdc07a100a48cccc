/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A worker ring's submission side: a free SQE whatever the SQ and CQ hold. Below the worker loop
 * (uring_worker.c) and the connections (uring_conn.c), which both submit through it.
 */
#include "uring_ring.h"

#include "uring_log.h"

#include <errno.h>
#include <stdlib.h>

/*
 * Move every completion out of the CQ into the worker's backlog, handled by the worker loop
 * (worker_drain) before it waits again (not here: the caller is in the middle of changing a
 * connection). Returns how many moved; 0 when the CQ was empty or the backlog could not grow.
 */
static unsigned ring_reap(struct uring_worker *w)
{
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;

    io_uring_for_each_cqe(&w->ring, head, cqe)
    {
        if (w->nbacklog == w->backlog_cap) {
            size_t cap = w->backlog_cap ? 2 * w->backlog_cap : 256;
            struct uring_cqe_copy *b = realloc(w->backlog, cap * sizeof(*b));
            if (b == NULL)
                break;
            w->backlog = b;
            w->backlog_cap = cap;
        }
        w->backlog[w->nbacklog].user_data = cqe->user_data;
        w->backlog[w->nbacklog].res = cqe->res;
        w->backlog[w->nbacklog].flags = cqe->flags;
        w->nbacklog++;
        n++;
    }
    io_uring_cq_advance(&w->ring, n);
    return n;
}

/*
 * io_uring_submit; under COFFER_TEST_WORKER_FAIL=<i>:submit it answers as kernels before 5.19 do
 * while completions wait in a full CQ (IORING_FEAT_NODROP's overflow): -EBUSY until the CQ is
 * reaped (here: while it is half full or more, so that a test's few connections get there).
 */
static int ring_submit(struct uring_worker *w)
{
    if (w->fail_submit && io_uring_cq_ready(&w->ring) >= *w->ring.cq.kring_entries / 2)
        return -EBUSY;
    return io_uring_submit(&w->ring);
}

/*
 * A free SQE. When the SQ is full, submit it; when the kernel refuses (-EBUSY: completions wait
 * to be reaped, -EAGAIN: no memory for now), reap the completions into the backlog and submit
 * again, or wait a millisecond for one when there was none: never a busy loop.
 */
struct io_uring_sqe *uring_worker_sqe(struct uring_worker *w)
{
    struct io_uring_sqe *sqe;

    while ((sqe = io_uring_get_sqe(&w->ring)) == NULL) {
        w->sq_full++;
        int r = ring_submit(w);
        if (r > 0 || r == -EINTR)
            continue;
        if (r == 0 || r == -EBUSY || r == -EAGAIN) {
            if (ring_reap(w) == 0) {
                struct __kernel_timespec ms = {0, 1000000};
                struct io_uring_cqe *cqe;
                w->sq_waits++;
                if (io_uring_wait_cqe_timeout(&w->ring, &cqe, &ms) == 0)
                    ring_reap(w);
            }
            continue;
        }
        /* the ring itself is broken (-EBADF, -EFAULT): a broken invariant */
        uring_log(URING_LOG_ERROR, "ring_error", "worker=%d errno=%d detail=\"io_uring_submit\"",
                  w->index, -r);
        abort();
    }
    return sqe;
}
