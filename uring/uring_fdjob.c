/* SPDX-License-Identifier: Apache-2.0 */
/* Descriptor jobs: cofferd reads the input and writes the output itself, pipelined on the ring. */
#include "uring_server.h"

#include "coffer_error.h"
#include "uring_log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * Regular files are read and written at explicit offsets from their current position (the
 * shared file position is left alone); pipes and sockets use the file position (-1).
 */
static uint64_t fdjob_pos(int fd)
{
    struct stat st;
    off_t pos;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (pos = lseek(fd, 0, SEEK_CUR)) < 0)
        return (uint64_t)-1;
    return (uint64_t)pos;
}

void *uring_buf_alloc(size_t n)
{
    void *p = NULL;
    return posix_memalign(&p, 4096, n) == 0 ? p : NULL;
}

int uring_fdjob_begin(struct uring_conn *c)
{
    struct uring_job *j = c->job;
    size_t piece = (size_t)uring_srv.cfg.fd_piece;
    size_t big = URING_FILE_BUFS * (2 * piece + URING_FILE_WEXTRA);
    size_t budget = big > URING_FDBUF_BUDGET ? big : URING_FDBUF_BUDGET;

    j->in_pos = fdjob_pos(j->in_fd);
    j->out_pos = fdjob_pos(j->out_fd);
    if (atomic_fetch_add(&uring_srv.fdbuf_bytes, big) + big <= budget) {
        j->budget_held = big;
        j->nbufs = URING_FILE_BUFS;
        j->piece = piece;
    } else {
        atomic_fetch_sub(&uring_srv.fdbuf_bytes, big);
        atomic_fetch_add(&uring_srv.stats.fd_small, 1);
        j->nbufs = 2;
        j->piece = URING_FILE_SMALL;
    }
    j->wcap = j->piece + URING_FILE_WEXTRA;
    for (unsigned i = 0; i < j->nbufs; i++) {
        if ((j->fin[i].p = uring_buf_alloc(j->piece)) == NULL ||
            (j->fout[i].p = uring_buf_alloc(j->wcap)) == NULL)
            return COFFER_ERR_NOMEM;
    }
    return 0;
}

int uring_fdjob_busy(const struct uring_conn *c)
{
    const struct uring_job *j = c->job;
    return j != NULL && (j->read_inflight || j->writes_inflight || j->fsync_inflight);
}

void uring_fdjob_cancel(struct uring_conn *c)
{
    enum uring_op ops[2 + URING_FILE_BUFS] = {URING_OP_FREAD, URING_OP_FSYNC};
    if (!uring_fdjob_busy(c))
        return;
    for (unsigned k = 0; k < URING_FILE_BUFS; k++)
        ops[2 + k] = (enum uring_op)(URING_OP_FWRITE + k);
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        struct io_uring_sqe *sqe = uring_worker_sqe(c->w);
        io_uring_prep_cancel64(sqe, uring_udata_pack(ops[i], c->slot, c->gen),
                               IORING_ASYNC_CANCEL_ALL);
        io_uring_sqe_set_data64(sqe, uring_udata_pack(URING_OP_CANCEL, c->slot, c->gen));
    }
}

/* Input buffers read and not yet consumed (the one being read does not count). */
static unsigned fdjob_inputs(const struct uring_job *j)
{
    return j->in_head - j->in_tail - (j->read_inflight ? 1u : 0u);
}

void uring_fdjob_work_applied(struct uring_conn *c)
{
    struct uring_job *j = c->job;
    struct uring_work *wk = &j->work;
    struct uring_fdbuf *ob = &j->fout[j->out_head % j->nbufs];

    if (!wk->tail) {
        struct uring_fdbuf *ib = &j->fin[j->in_tail % j->nbufs];
        ib->off += wk->used[0];
        if (ib->off == ib->len) {
            ib->off = ib->len = 0;
            j->in_tail++;
        }
    }
    ob->off = 0;
    ob->len = wk->produced;
    ob->pos = j->out_pos;
    if (ob->len > 0) {
        j->out_head++;
        if (j->out_pos != (uint64_t)-1)
            j->out_pos += ob->len;
    }
}

/* Submit the writes that may go out now (see struct uring_job). */
static void fdjob_write(struct uring_conn *c)
{
    struct uring_job *j = c->job;
    int regular = j->out_pos != (uint64_t)-1;

    for (unsigned k = j->out_tail; k != j->out_head; k++) {
        struct uring_fdbuf *ob = &j->fout[k % j->nbufs];
        struct io_uring_sqe *sqe;
        if (ob->io || ob->off == ob->len)
            continue;
        if (!regular && j->writes_inflight > 0)
            return;
        sqe = uring_worker_sqe(c->w);
        io_uring_prep_write(sqe, j->out_fd, ob->p + ob->off, (unsigned)(ob->len - ob->off),
                            regular ? ob->pos + ob->off : (uint64_t)-1);
        uring_conn_submit(c, sqe, (enum uring_op)(URING_OP_FWRITE + k % j->nbufs));
        ob->io = 1;
        j->writes_inflight++;
        if (!regular)
            return;
    }
}

/* Give the oldest input (or the tail) to the cipher. Returns 1 if anything moved. */
static int fdjob_cipher(struct uring_conn *c, char *detail)
{
    struct uring_job *j = c->job;
    struct uring_work *wk = &j->work;
    struct uring_fdbuf *ib = &j->fin[j->in_tail % j->nbufs];
    int have = fdjob_inputs(j) > 0, r;

    if (wk->busy)
        return 0;
    if (j->state == JOB_HEADER) {
        size_t used = 0;
        if (!have) {
            if (!j->read_eof || j->read_inflight)
                return 0;
            uring_conn_fail(c, uring_job_header_truncated(c, detail, URING_DETAIL_MAX), detail);
            return 1;
        }
        r = uring_job_feed_header(c, ib->p + ib->off, ib->len - ib->off, &used, detail,
                                  URING_DETAIL_MAX);
        if (r != 0) {
            uring_conn_fail(c, r, detail);
            return 1;
        }
        if ((ib->off += used) == ib->len) {
            ib->off = ib->len = 0;
            j->in_tail++;
        }
        return 1;
    }
    if ((j->state != JOB_RUN && j->state != JOB_DRAIN) || j->out_head - j->out_tail >= j->nbufs)
        return 0;
    if (have && j->state == JOB_RUN) {
        wk->tail = 0;
        wk->nin = 1;
        wk->in[0] = ib->p + ib->off;
        wk->inlen[0] = ib->len - ib->off;
    } else if (!have && j->read_eof && !j->read_inflight) {
        wk->tail = 1;
        wk->nin = 0;
    } else {
        return 0;
    }
    wk->framed = 0;
    wk->out = j->fout[j->out_head % j->nbufs].p;
    wk->outcap = j->wcap;
    {
        enum uring_job_state before = j->state;
        int offload = uring_job_offload(j, wk->tail ? 0 : wk->inlen[0], wk->tail);
        /*
         * Split only while the writes keep up (at most one output buffer waiting): then the
         * cipher is what the job waits for. When writes fall behind, the second core is theirs
         * (io-wq), and a helper there would only slow them.
         */
        if (!wk->tail && !offload && uring_srv.cfg.split_min > 0 &&
            wk->inlen[0] >= (size_t)uring_srv.cfg.split_min && j->out_head - j->out_tail <= 1)
            uring_conn_work_split(c); /* whole chunks: half on a helper, half here */
        else
            uring_conn_work_submit(c, !offload);
        /* out to a helper, or done here: moved unless it could do nothing at all */
        return wk->busy || c->close_after_flush || wk->produced > 0 ||
               (!wk->tail && wk->used[0] > 0) || j->state != before;
    }
}

int uring_fdjob_pump(struct uring_conn *c)
{
    char detail[URING_DETAIL_MAX];
    struct uring_job *j = c->job;
    struct io_uring_sqe *sqe;
    int moved = 0;

    if (j == NULL || j->input != PROTO_INPUT_FDS || c->close_after_flush || c->closing)
        return 0;
    detail[0] = '\0';
    moved = fdjob_cipher(c, detail);
    if ((j = c->job) == NULL || c->close_after_flush)
        return 1;
    fdjob_write(c);
    if (!j->read_inflight && !j->read_eof && j->in_head - j->in_tail < j->nbufs) {
        struct uring_fdbuf *ib = &j->fin[j->in_head % j->nbufs];
        ib->off = ib->len = 0;
        sqe = uring_worker_sqe(c->w);
        io_uring_prep_read(sqe, j->in_fd, ib->p, (unsigned)j->piece, j->in_pos);
        uring_conn_submit(c, sqe, URING_OP_FREAD);
        j->read_inflight = 1;
        j->in_head++;
    }
    if (!j->work.busy && j->state == JOB_DONE && j->out_tail == j->out_head &&
        j->writes_inflight == 0 && !j->read_inflight) {
        if ((j->flags & PROTO_JOB_FSYNC) && !j->fsynced) {
            if (!j->fsync_inflight) {
                sqe = uring_worker_sqe(c->w);
                io_uring_prep_fsync(sqe, j->out_fd, 0);
                uring_conn_submit(c, sqe, URING_OP_FSYNC);
                j->fsync_inflight = 1;
            }
        } else {
            moved |= uring_conn_job_result(c);
        }
    }
    return moved;
}

/* Output buffer k was written (res bytes, or -errno). */
static void fdjob_wrote(struct uring_conn *c, unsigned k, int res)
{
    char detail[URING_DETAIL_MAX];
    struct uring_job *j = c->job;
    struct uring_fdbuf *ob = &j->fout[k];

    ob->io = 0;
    j->writes_inflight--;
    if (c->closing || c->close_after_flush)
        return;
    if (res <= 0) {
        snprintf(detail, sizeof(detail), "writing the output descriptor: %s",
                 res == 0 ? "wrote nothing" : strerror(-res));
        uring_conn_fail(c, res == 0 ? COFFER_ERR_IO : coffer_err_from_errno(-res), detail);
        return;
    }
    ob->off += (size_t)res; /* a short write goes out again for the rest */
    while (j->out_tail != j->out_head) {
        ob = &j->fout[j->out_tail % j->nbufs];
        if (ob->io || ob->off < ob->len)
            return;
        ob->off = ob->len = 0;
        j->out_tail++;
    }
}

void uring_fdjob_complete(struct uring_conn *c, enum uring_op op, int res)
{
    char detail[URING_DETAIL_MAX];
    struct uring_job *j = c->job;

    if (op >= URING_OP_FWRITE && op < URING_OP_FWRITE + URING_FILE_BUFS) {
        fdjob_wrote(c, (unsigned)(op - URING_OP_FWRITE), res);
        return;
    }
    switch (op) {
    case URING_OP_FREAD:
        j->read_inflight = 0;
        if (res <= 0)
            j->in_head--; /* the buffer holds nothing */
        if (c->closing || c->close_after_flush)
            break;
        if (res < 0) {
            snprintf(detail, sizeof(detail), "reading the input descriptor: %s", strerror(-res));
            uring_conn_fail(c, coffer_err_from_errno(-res), detail);
        } else if (res == 0) {
            j->read_eof = 1;
        } else {
            struct uring_fdbuf *ib = &j->fin[(j->in_head - 1) % j->nbufs];
            ib->len = (size_t)res;
            ib->off = 0;
            if (j->in_pos != (uint64_t)-1)
                j->in_pos += (uint64_t)res;
        }
        break;
    case URING_OP_FSYNC:
        j->fsync_inflight = 0;
        if (c->closing || c->close_after_flush)
            break;
        if (res < 0) {
            snprintf(detail, sizeof(detail), "fsync of the output: %s", strerror(-res));
            uring_conn_fail(c, coffer_err_from_errno(-res), detail);
        } else {
            j->fsynced = 1;
        }
        break;
    default:
        break;
    }
}
