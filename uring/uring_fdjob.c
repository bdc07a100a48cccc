/* SPDX-License-Identifier: Apache-2.0 */
/* Descriptor jobs: cofferd reads the input and writes the output itself, pipelined on the ring. */
#include "uring_server.h"

#include "coffer_error.h"
#include "uring_log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * What a client's descriptor is. statx with AT_STATX_DONT_SYNC takes the cached attributes (the
 * type, device and inode never change), so a FUSE or network filesystem is not asked and the ring
 * thread cannot block on it; fcntl(F_GETFL) only reads the open file's flags.
 */
struct fdjob_kind {
    unsigned mode; /* S_IFMT bits; 0 for an anonymous inode (eventfd, signalfd, epoll, ...) */
    unsigned dev_major, dev_minor, rdev_major, rdev_minor;
    uint64_t ino;
    int flags; /* F_GETFL */
};

static int fdjob_kind_get(int fd, struct fdjob_kind *k)
{
    struct statx sx;
    memset(k, 0, sizeof(*k));
    if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_TYPE | STATX_INO, &sx) != 0 ||
        (k->flags = fcntl(fd, F_GETFL)) < 0)
        return -1;
    k->mode = sx.stx_mode & S_IFMT;
    k->dev_major = sx.stx_dev_major;
    k->dev_minor = sx.stx_dev_minor;
    k->rdev_major = sx.stx_rdev_major;
    k->rdev_minor = sx.stx_rdev_minor;
    k->ino = sx.stx_ino;
    return 0;
}

static int fdjob_is_devnull(const struct fdjob_kind *k)
{
    return k->mode == S_IFCHR && k->rdev_major == 1 && k->rdev_minor == 3;
}

/* "a signalfd", "a directory", "the character device 1:5": what a refused descriptor is. */
static void fdjob_kind_name(int fd, const struct fdjob_kind *k, char *out, size_t cap)
{
    char link[128] = "", path[64];
    ssize_t n;
    switch (k->mode) {
    case S_IFDIR:
        snprintf(out, cap, "a directory");
        return;
    case S_IFCHR:
        snprintf(out, cap, "the character device %u:%u", k->rdev_major, k->rdev_minor);
        return;
    case S_IFBLK:
        snprintf(out, cap, "the block device %u:%u", k->rdev_major, k->rdev_minor);
        return;
    case S_IFLNK:
        snprintf(out, cap, "a symbolic link opened with O_PATH");
        return;
    case 0:
        /* an anonymous inode: /proc names it "anon_inode:[eventfd]" or "anon_inode:inotify" */
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        if ((n = readlink(path, link, sizeof(link) - 1)) > 11 && strncmp(link, "anon_inode:", 11) == 0) {
            char *name = link + 11;
            link[n] = '\0';
            if (name[0] == '[') {
                name++;
                name[strcspn(name, "]")] = '\0';
            }
            snprintf(out, cap, "an anonymous inode (%s)", name);
            return;
        }
        snprintf(out, cap, "an anonymous inode (eventfd, signalfd, timerfd, epoll or inotify)");
        return;
    default:
        snprintf(out, cap, "a descriptor of file type 0%o", k->mode);
        return;
    }
}

int uring_fdjob_check(int in, int out, char *detail, size_t detaillen)
{
    struct fdjob_kind ki, ko;
    char what[160];
    int acc;

    if (fdjob_kind_get(in, &ki) != 0 || fdjob_kind_get(out, &ko) != 0) {
        snprintf(detail, detaillen, "the job's descriptors could not be examined: %s",
                 strerror(errno));
        return COFFER_ERR_INVALID_ARG;
    }
    if (ki.mode != S_IFREG && ki.mode != S_IFIFO && ki.mode != S_IFSOCK) {
        fdjob_kind_name(in, &ki, what, sizeof(what));
        snprintf(detail, detaillen,
                 "the input descriptor is %s; pass a regular file, a pipe or FIFO, or a socket",
                 what);
        return COFFER_ERR_INVALID_ARG;
    }
    if (ko.mode != S_IFREG && ko.mode != S_IFIFO && ko.mode != S_IFSOCK && !fdjob_is_devnull(&ko)) {
        fdjob_kind_name(out, &ko, what, sizeof(what));
        snprintf(detail, detaillen,
                 "the output descriptor is %s; pass a regular file, a pipe or FIFO, a socket or "
                 "/dev/null",
                 what);
        return COFFER_ERR_INVALID_ARG;
    }
    acc = ki.flags & (O_ACCMODE | O_PATH);
    if (acc != O_RDONLY && acc != O_RDWR) {
        snprintf(detail, detaillen, "the input descriptor is not open for reading");
        return COFFER_ERR_INVALID_ARG;
    }
    acc = ko.flags & (O_ACCMODE | O_PATH);
    if (acc != O_WRONLY && acc != O_RDWR) {
        snprintf(detail, detaillen, "the output descriptor is not open for writing");
        return COFFER_ERR_INVALID_ARG;
    }
    if (ki.dev_major == ko.dev_major && ki.dev_minor == ko.dev_minor && ki.ino == ko.ino) {
        snprintf(detail, detaillen,
                 "the input and the output are the same file (device %u:%u, inode %llu): the "
                 "output would overwrite the input; write to another file",
                 ki.dev_major, ki.dev_minor, (unsigned long long)ki.ino);
        return COFFER_ERR_INVALID_ARG;
    }
    return 0;
}

/*
 * Regular files are read and written at explicit offsets from their current position (the
 * shared file position is left alone); pipes, sockets, /dev/null and an output opened O_APPEND
 * (where the kernel ignores the offset) use the file position (-1), one write at a time.
 */
static uint64_t fdjob_pos(int fd, int output)
{
    struct fdjob_kind k;
    off_t pos;
    if (fdjob_kind_get(fd, &k) != 0 || k.mode != S_IFREG || (output && (k.flags & O_APPEND)) ||
        (pos = lseek(fd, 0, SEEK_CUR)) < 0)
        return (uint64_t)-1;
    return (uint64_t)pos;
}

int uring_fdjob_begin(struct uring_conn *c)
{
    struct uring_job *j = c->job;
    size_t piece = (size_t)uring_srv.cfg.fd_piece;
    size_t big = URING_FILE_BUFS * (2 * piece + URING_FILE_WEXTRA);
    size_t budget = big > URING_FDBUF_BUDGET ? big : URING_FDBUF_BUDGET;

    j->in_pos = fdjob_pos(j->in_fd, 0);
    j->out_pos = fdjob_pos(j->out_fd, 1);
    {
        /* FSYNC means something only for a regular file: a pipe, socket or /dev/null has
           nothing to sync (fsync would fail with EINVAL after all output was written) */
        struct fdjob_kind k;
        if ((j->flags & PROTO_JOB_FSYNC) && fdjob_kind_get(j->out_fd, &k) == 0 &&
            k.mode != S_IFREG)
            j->fsynced = 1;
    }
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

/*
 * fdjob_async: every read, write and fsync of a client's descriptor carries IOSQE_ASYNC, so it
 * runs on io_uring's io-wq workers and never inside io_uring_enter on the ring thread. Tried
 * inline, a read or write may still sleep there: a pipe's lock held by a writer faulting on a
 * FUSE mapping, a network or FUSE filesystem, a frozen one. A stalled file then stalls only its
 * own job (one io-wq worker), which --io-timeout cancels (uring_conn_tick_io).
 */

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
        io_uring_sqe_set_flags(sqe, IOSQE_ASYNC); /* never inline: see fdjob_async */
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
        io_uring_sqe_set_flags(sqe, IOSQE_ASYNC);
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
                io_uring_sqe_set_flags(sqe, IOSQE_ASYNC);
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
        if (res == -EINVAL || res == -EROFS) {
            /* a file that does not support synchronization: nothing to sync, not a failure */
            uring_log(URING_LOG_DEBUG, "fsync_skipped", "conn=%llu errno=%d",
                      (unsigned long long)c->id, -res);
            j->fsynced = 1;
        } else if (res < 0) {
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
