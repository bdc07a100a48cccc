/* SPDX-License-Identifier: Apache-2.0 */
/* A session's descriptor job: cofferd reads the input and writes the output itself, pipelined. */
#include "session_int.h"

#include "coffer_error.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/*
 * The job's descriptors and their positions (session_probed) are known: take buffers. Regular
 * files are read and written at explicit offsets from their current position (the shared file
 * position is left alone); pipes, sockets, /dev/null and an O_APPEND output use the file
 * position (-1), one write at a time.
 */
int session_fd_begin(struct session *s)
{
    struct session_job *j = s->job;
    struct session_config cfg;
    size_t piece, big;

    s->ops->config(&cfg);
    piece = (size_t)cfg.fd_piece;
    big = SESSION_FILE_BUFS * (2 * piece + SESSION_FILE_WEXTRA);
    j->in_pos = s->probe_in_pos;
    j->out_pos = s->probe_out_pos;
    /* FSYNC means something only for a regular file: a pipe, socket or /dev/null has nothing to
       sync (fsync would fail with EINVAL after all output was written) */
    if ((j->flags & PROTO_JOB_FSYNC) && !s->probe_out_regular)
        j->fsynced = 1;
    if (s->ops->fdbuf_take(big)) {
        j->budget_held = big;
        j->nbufs = SESSION_FILE_BUFS;
        j->piece = piece;
    } else {
        s->ops->count(SESSION_COUNT_FD_SMALL, 0, NULL);
        j->nbufs = 2;
        j->piece = SESSION_FILE_SMALL;
    }
    j->wcap = j->piece + SESSION_FILE_WEXTRA;
    for (unsigned i = 0; i < j->nbufs; i++) {
        if ((j->fin[i].p = s->ops->alloc(4096, j->piece)) == NULL ||
            (j->fout[i].p = s->ops->alloc(4096, j->wcap)) == NULL)
            return COFFER_ERR_NOMEM;
    }
    return 0;
}

int session_fd_busy(const struct session *s)
{
    const struct session_job *j = s->job;
    return j != NULL && (j->read_inflight || j->writes_inflight || j->fsync_inflight);
}

void session_fd_cancel(struct session *s, int writes)
{
    const struct session_job *j = s->job;
    if (j == NULL)
        return;
    if (j->out_pos == (uint64_t)-1)
        writes = 1; /* one write at a time (a pipe, a socket): cancelling it leaves no hole */
    if (j->read_inflight || j->fsync_inflight || (writes && j->writes_inflight))
        s->ops->fd_cancel(s, writes);
}

/* Input buffers read and not yet consumed (the one being read does not count). */
static unsigned fdjob_inputs(const struct session_job *j)
{
    return j->in_head - j->in_tail - (j->read_inflight ? 1u : 0u);
}

void session_fd_work_applied(struct session *s)
{
    struct session_job *j = s->job;
    struct session_work *wk = &j->work;
    struct session_fdbuf *ob = &j->fout[j->out_head % j->nbufs];

    if (!wk->tail) {
        struct session_fdbuf *ib = &j->fin[j->in_tail % j->nbufs];
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

/*
 * The env runs every read, write and fsync of a client's descriptor where a stalled file stalls
 * only its own job (the ring layer: io-wq workers, IOSQE_ASYNC), which --io-timeout cancels
 * (session_tick_io).
 */

/* Submit the writes that may go out now (see struct session_job). */
static void fdjob_write(struct session *s)
{
    struct session_job *j = s->job;
    int regular = j->out_pos != (uint64_t)-1;

    for (unsigned k = j->out_tail; k != j->out_head; k++) {
        struct session_fdbuf *ob = &j->fout[k % j->nbufs];
        if (ob->io || ob->off == ob->len)
            continue;
        if (!regular && j->writes_inflight > 0)
            return;
        ob->io = 1;
        s->ops->fd_write(s, k % j->nbufs, j->out_fd, ob->p + ob->off, ob->len - ob->off,
                         regular ? ob->pos + ob->off : (uint64_t)-1);
        j->writes_inflight++;
        if (!regular)
            return;
    }
}

/* Give the oldest input (or the tail) to the cipher. Returns 1 if anything moved. */
static int fdjob_cipher(struct session *s, char *detail)
{
    struct session_job *j = s->job;
    struct session_work *wk = &j->work;
    struct session_fdbuf *ib = &j->fin[j->in_tail % j->nbufs];
    int have = fdjob_inputs(j) > 0, r;

    if (wk->busy)
        return 0;
    if (s->state == SESSION_HEADER) {
        size_t used = 0;
        if (!have) {
            if (!j->read_eof || j->read_inflight)
                return 0;
            session_fail(s, session_job_header_truncated(s, detail, SESSION_DETAIL_MAX), detail);
            return 1;
        }
        r = session_job_feed_header(s, ib->p + ib->off, ib->len - ib->off, &used, detail,
                                    SESSION_DETAIL_MAX);
        if (r != 0) {
            session_fail(s, r, detail);
            return 1;
        }
        if ((ib->off += used) == ib->len) {
            ib->off = ib->len = 0;
            j->in_tail++;
        }
        return 1;
    }
    if ((s->state != SESSION_RUN && s->state != SESSION_DRAIN) ||
        j->out_head - j->out_tail >= j->nbufs)
        return 0;
    if (have && s->state == SESSION_RUN) {
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
        enum session_state before = s->state;
        int offload = session_job_offload(s, j, wk->tail ? 0 : wk->inlen[0], wk->tail);
        struct session_config cfg;
        /*
         * Split only while the writes keep up (at most one output buffer waiting): then the
         * cipher is what the job waits for. When writes fall behind, the second core is theirs
         * (io-wq), and a helper there would only slow them.
         */
        s->ops->config(&cfg);
        if (!wk->tail && !offload && cfg.split_min > 0 &&
            wk->inlen[0] >= (size_t)cfg.split_min && j->out_head - j->out_tail <= 1)
            session_work_split(s); /* whole chunks: half on a helper, half here */
        else
            session_work_submit(s, !offload);
        /* out to a helper, or done here: moved unless it could do nothing at all */
        return wk->busy || s->state == SESSION_FLUSH || wk->produced > 0 ||
               (!wk->tail && wk->used[0] > 0) || s->state != before;
    }
}

/* Read, cipher, write, fsync, result. Returns 1 if anything moved. */
int session_fd_pump(struct session *s)
{
    char detail[SESSION_DETAIL_MAX];
    struct session_job *j = s->job;
    int moved = 0;

    if (j == NULL || j->input != PROTO_INPUT_FDS || !session_in_job(s) ||
        s->state == SESSION_PROBE)
        return 0;
    detail[0] = '\0';
    moved = fdjob_cipher(s, detail);
    if ((j = s->job) == NULL || !session_in_job(s))
        return 1;
    fdjob_write(s);
    if (!j->read_inflight && !j->read_eof && j->in_head - j->in_tail < j->nbufs) {
        struct session_fdbuf *ib = &j->fin[j->in_head % j->nbufs];
        ib->off = ib->len = 0;
        j->read_inflight = 1;
        j->in_head++;
        s->ops->fd_read(s, j->in_fd, ib->p, j->piece, j->in_pos);
    }
    if (!j->work.busy && s->state == SESSION_DONE && j->out_tail == j->out_head &&
        j->writes_inflight == 0 && !j->read_inflight) {
        if ((j->flags & PROTO_JOB_FSYNC) && !j->fsynced) {
            if (!j->fsync_inflight) {
                j->fsync_inflight = 1;
                s->ops->fd_sync(s, j->out_fd);
            }
        } else {
            moved |= session_job_result(s);
        }
    }
    return moved;
}

/* Output buffer k was written (res bytes, or -errno). */
static void fdjob_wrote(struct session *s, unsigned k, int res)
{
    char detail[SESSION_DETAIL_MAX];
    struct session_job *j = s->job;
    struct session_fdbuf *ob = &j->fout[k];

    ob->io = 0;
    j->writes_inflight--;
    if (!session_in_job(s))
        return;
    if (res <= 0) {
        snprintf(detail, sizeof(detail), "writing the output descriptor: %s",
                 res == 0 ? "wrote nothing" : strerror(-res));
        session_fail(s, res == 0 ? COFFER_ERR_IO : coffer_err_from_errno(-res), detail);
        return;
    }
    if ((size_t)res > ob->len - ob->off)
        res = (int)(ob->len - ob->off); /* never more than was handed over */
    ob->off += (size_t)res; /* a short write goes out again for the rest */
    while (j->out_tail != j->out_head) {
        ob = &j->fout[j->out_tail % j->nbufs];
        if (ob->io || ob->off < ob->len)
            return;
        ob->off = ob->len = 0;
        j->out_tail++;
    }
}

/* A descriptor operation of the job came back (res bytes, or -errno). */
void session_fd_complete(struct session *s, int op, int res)
{
    char detail[SESSION_DETAIL_MAX];
    struct session_job *j = s->job;

    if (j == NULL)
        return;
    if (op >= SESSION_FD_WRITE && op < SESSION_FD_WRITE + (int)SESSION_FILE_BUFS) {
        if (j->fout[op - SESSION_FD_WRITE].io)
            fdjob_wrote(s, (unsigned)(op - SESSION_FD_WRITE), res);
        return;
    }
    switch (op) {
    case SESSION_FD_READ:
        if (!j->read_inflight)
            break;
        j->read_inflight = 0;
        if (res <= 0)
            j->in_head--; /* the buffer holds nothing */
        if (!session_in_job(s))
            break;
        if (res < 0) {
            snprintf(detail, sizeof(detail), "reading the input descriptor: %s", strerror(-res));
            session_fail(s, coffer_err_from_errno(-res), detail);
        } else if (res == 0) {
            j->read_eof = 1;
        } else {
            struct session_fdbuf *ib = &j->fin[(j->in_head - 1) % j->nbufs];
            if ((size_t)res > j->piece)
                res = (int)j->piece; /* never more than was asked for */
            ib->len = (size_t)res;
            ib->off = 0;
            if (j->in_pos != (uint64_t)-1)
                j->in_pos += (uint64_t)res;
        }
        break;
    case SESSION_FD_SYNC:
        if (!j->fsync_inflight)
            break;
        j->fsync_inflight = 0;
        if (!session_in_job(s))
            break;
        if (res == -EINVAL || res == -EROFS) {
            /* a file that does not support synchronization: nothing to sync, not a failure */
            session_log(s, SESSION_LOG_DEBUG, "fsync_skipped", "conn=%llu errno=%d",
                        (unsigned long long)s->id, -res);
            j->fsynced = 1;
        } else if (res < 0) {
            snprintf(detail, sizeof(detail), "fsync of the output: %s", strerror(-res));
            session_fail(s, coffer_err_from_errno(-res), detail);
        } else {
            j->fsynced = 1;
        }
        break;
    default:
        break;
    }
}
