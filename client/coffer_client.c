/* SPDX-License-Identifier: Apache-2.0 */
/* libcoffer: connects to cofferd, speaks the frame protocol, streams and passes descriptors. */
#include "coffer_client.h"

#include "coffer_error.h"
#include "coffer_version.h"
#include "proto_frame.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define CLIENT_CHUNK (96u * 1024u) /* input bytes per DATA frame */
#define CLIENT_RCAP  (2 * (COFFER_FRAME_HEADER + COFFER_MAX_FRAME))
#define CLIENT_SCAP  (COFFER_FRAME_HEADER + COFFER_MAX_FRAME)

struct coffer_client {
    int fd;
    int dead;
    void *rmem, *smem; /* the allocations of rbuf and sbuf */
    uint8_t *rbuf;
    size_t rstart, rend;
    uint8_t *sbuf;
    size_t soff, slen;
};

const char *coffer_client_strerror(int err)
{
    return coffer_strerror(err);
}

const char *coffer_client_version(void)
{
    return COFFER_VERSION_STRING;
}

#define CLIENT_SYSTEM_SOCKET "/run/coffer/cofferd.sock"
#define CLIENT_DEV_DIR       "./.coffer-dev" /* where cofferd --dev listens (mode 0700) */

/* ./.coffer-dev/cofferd.sock, when its directory is the caller's and closed to everyone else. */
static int client_dev_socket_usable(void)
{
    struct stat st;
    if (lstat(CLIENT_DEV_DIR, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid() ||
        (st.st_mode & 077) != 0)
        return 0;
    return lstat(CLIENT_DEV_DIR "/cofferd.sock", &st) == 0 && S_ISSOCK(st.st_mode);
}

const char *coffer_client_default_socket(void)
{
    const char *s = getenv("COFFER_SOCKET");
    struct stat st;

    if (s != NULL && s[0] != '\0')
        return s;
    if (lstat(CLIENT_SYSTEM_SOCKET, &st) != 0 && client_dev_socket_usable())
        return CLIENT_DEV_DIR "/cofferd.sock";
    return CLIENT_SYSTEM_SOCKET;
}

void coffer_result_clear(struct coffer_result *r)
{
    if (r == NULL)
        return;
    free(r->metadata);
    memset(r, 0, sizeof(*r));
}

void coffer_client_close(coffer_client *c)
{
    if (c == NULL)
        return;
    if (c->fd >= 0)
        close(c->fd);
    free(c->rmem);
    free(c->smem);
    free(c);
}

static int client_wait(coffer_client *c, short events)
{
    struct pollfd p = {c->fd, events, 0};
    int r;
    do
        r = poll(&p, 1, -1);
    while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : p.revents;
}

/* Read more bytes into the receive buffer. 1 read, 0 would block, or a negative code. */
static int client_fill(coffer_client *c)
{
    ssize_t n;
    if (c->rstart == c->rend) {
        c->rstart = c->rend = 0;
    } else if (c->rstart > 0 && CLIENT_RCAP - c->rend < COFFER_FRAME_HEADER + COFFER_MAX_FRAME) {
        /* move the partial frame to the front only when a whole frame no longer fits behind it */
        memmove(c->rbuf, c->rbuf + c->rstart, c->rend - c->rstart);
        c->rend -= c->rstart;
        c->rstart = 0;
    }
    if (c->rend == CLIENT_RCAP)
        return COFFER_ERR_INTERNAL;
    n = recv(c->fd, c->rbuf + c->rend, CLIENT_RCAP - c->rend, MSG_DONTWAIT);
    if (n > 0) {
        c->rend += (size_t)n;
        return 1;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    c->dead = 1;
    return COFFER_ERR_PEER_GONE;
}

/* A complete frame at the front of the buffer: 1 (and *h, *payload), 0 need more, or < 0. */
static int client_frame(coffer_client *c, proto_header *h, const uint8_t **payload)
{
    size_t have = c->rend - c->rstart;
    int r;
    if (have < COFFER_FRAME_HEADER)
        return 0;
    if ((r = proto_header_parse(c->rbuf + c->rstart, h)) != 0) {
        c->dead = 1;
        return r;
    }
    if (have < COFFER_FRAME_HEADER + h->len)
        return 0;
    *payload = c->rbuf + c->rstart + COFFER_FRAME_HEADER;
    return 1;
}

static void client_consume(coffer_client *c, const proto_header *h)
{
    c->rstart += COFFER_FRAME_HEADER + h->len;
}

/* Block until a whole frame is buffered. */
static int client_read_frame(coffer_client *c, proto_header *h, const uint8_t **payload)
{
    for (;;) {
        int r = client_frame(c, h, payload);
        if (r != 0)
            return r;
        if ((r = client_wait(c, POLLIN)) < 0)
            return r;
        if ((r = client_fill(c)) < 0)
            return r;
    }
}

/* An ERROR frame into res (or msg); always returns the daemon's code and marks c dead. */
static int client_error(coffer_client *c, const uint8_t *p, size_t len, char *msg, size_t msglen)
{
    proto_error e;
    int r = proto_error_parse(p, len, &e);
    c->dead = 1;
    if (r != 0)
        return r;
    if (msg != NULL && msglen > 0)
        snprintf(msg, msglen, "%.*s", (int)e.message_len, e.message);
    return e.code;
}

/* Send everything queued in sbuf (blocking). */
static int client_flush(coffer_client *c)
{
    while (c->soff < c->slen) {
        ssize_t n = send(c->fd, c->sbuf + c->soff, c->slen - c->soff, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            c->soff += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            int r = client_wait(c, POLLOUT);
            if (r < 0)
                return r;
            continue;
        }
        return COFFER_ERR_PEER_GONE;
    }
    c->soff = c->slen = 0;
    return 0;
}

int coffer_client_connect(coffer_client **out, const char *socket_path, char *msg, size_t msglen)
{
    int r = COFFER_ERR_NOMEM;
    struct sockaddr_un sa;
    coffer_client *c = calloc(1, sizeof(*c));
    proto_hello hello = {COFFER_PROTO_VERSION, COFFER_PROTO_VERSION, COFFER_MAX_FRAME}, peer;
    proto_header h;
    const uint8_t *p = NULL;

    *out = NULL;
    if (msg != NULL && msglen > 0)
        msg[0] = '\0';
    if (socket_path == NULL)
        socket_path = coffer_client_default_socket();
    if (c == NULL)
        goto out;
    c->fd = -1;
    /*
     * On AMD Zen, `rep movsb` (the kernel's copies, glibc's large memcpy) runs 4x slower when the
     * destination is a few bytes past the source's offset in its page, which is where malloc's
     * 16-byte header puts large buffers. So: the send buffer places a DATA frame's payload on a
     * page boundary (input read from files or page-aligned memory lands at distance 0), and the
     * receive buffer starts half a page in.
     */
    if (posix_memalign(&c->rmem, 4096, CLIENT_RCAP + 4096) != 0 ||
        posix_memalign(&c->smem, 4096, CLIENT_SCAP + 4096) != 0)
        goto out;
    c->rbuf = (uint8_t *)c->rmem + 2048;
    c->sbuf = (uint8_t *)c->smem + 4096 - COFFER_FRAME_HEADER;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    if (strlen(socket_path) >= sizeof(sa.sun_path)) {
        r = COFFER_ERR_INVALID_ARG;
        goto out;
    }
    strcpy(sa.sun_path, socket_path);
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        if (msg != NULL)
            snprintf(msg, msglen, "%s: %s", socket_path, strerror(errno));
        r = errno == EACCES ? COFFER_ERR_PERMISSION : COFFER_ERR_CONNECT;
        goto out;
    }
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    if ((r = proto_hello_write(c->sbuf, CLIENT_SCAP, &hello, &c->slen)) != 0)
        goto out;
    c->soff = 0;
    r = client_flush(c);
    /* a refusing daemon has sent an error frame: read it even if our hello bounced */
    if ((r = client_read_frame(c, &h, &p)) < 0)
        goto out;
    if (h.type == PROTO_ERROR) {
        r = client_error(c, p, h.len, msg, msglen);
        goto out;
    }
    if (h.type != PROTO_HELLO || (r = proto_hello_parse(p, h.len, &peer)) != 0 ||
        peer.version_min != peer.version_max || peer.version_max != COFFER_PROTO_VERSION) {
        r = r != 0 ? r : COFFER_ERR_PROTO_VERSION;
        goto out;
    }
    client_consume(c, &h);
    *out = c;
    c = NULL;
    r = 0;
out:
    coffer_client_close(c);
    return r;
}

static int client_job_frame(coffer_client *c, const struct coffer_job *job, uint8_t input)
{
    proto_job pj;
    memset(&pj, 0, sizeof(pj));
    if (job == NULL || (job->op != COFFER_CLIENT_ENCRYPT && job->op != COFFER_CLIENT_DECRYPT))
        return COFFER_ERR_INVALID_ARG;
    if (job->format != NULL && strlen(job->format) > COFFER_MAX_FORMAT_NAME)
        return COFFER_ERR_FORMAT;
    pj.op = (uint8_t)job->op;
    pj.input = input;
    pj.flags = job->fsync ? PROTO_JOB_FSYNC : 0;
    if (job->format != NULL)
        snprintf(pj.format, sizeof(pj.format), "%s", job->format);
    pj.context = job->context;
    pj.context_len = job->context_len;
    pj.metadata = job->metadata;
    pj.metadata_len = job->metadata_len;
    c->soff = 0;
    return proto_job_write(c->sbuf, CLIENT_SCAP, &pj, &c->slen);
}

static int client_result(const uint8_t *p, size_t len, struct coffer_result *res)
{
    proto_result pr;
    int r = proto_result_parse(p, len, &pr);
    if (r != 0)
        return r;
    res->bytes_in = pr.bytes_in;
    res->bytes_out = pr.bytes_out;
    if ((res->metadata = malloc(pr.metadata_len + 1)) == NULL)
        return COFFER_ERR_NOMEM;
    memcpy(res->metadata, pr.metadata, pr.metadata_len);
    res->metadata[pr.metadata_len] = '\0';
    res->metadata_len = pr.metadata_len;
    return 0;
}

/*
 * Handle the frames buffered so far. Returns 1 when the job ended with a result, 0 to go on, or
 * a negative code (res->err and res->message filled for daemon errors).
 */
static int client_frames(coffer_client *c, coffer_write_fn wr, void *wctx,
                         struct coffer_result *res)
{
    proto_header h;
    const uint8_t *p = NULL;
    int r;

    while ((r = client_frame(c, &h, &p)) == 1) {
        switch (h.type) {
        case PROTO_DATA:
            if (wr == NULL) {
                c->dead = 1;
                return COFFER_ERR_PROTO_SEQUENCE;
            }
            if (h.len > 0 && (r = wr(wctx, p, h.len)) < 0) {
                c->dead = 1;
                return r;
            }
            client_consume(c, &h);
            break;
        case PROTO_RESULT:
            r = client_result(p, h.len, res);
            client_consume(c, &h);
            if (r != 0)
                c->dead = 1;
            return r == 0 ? 1 : r;
        case PROTO_ERROR:
            res->err = client_error(c, p, h.len, res->message, sizeof(res->message));
            return res->err;
        default:
            c->dead = 1;
            return COFFER_ERR_PROTO_SEQUENCE;
        }
    }
    return r;
}

int coffer_client_stream(coffer_client *c, const struct coffer_job *job, coffer_read_fn rd,
                         void *rctx, coffer_write_fn wr, void *wctx, struct coffer_result *res)
{
    int r, in_eof = 0, end_sent = 0, send_broken = 0;

    memset(res, 0, sizeof(*res));
    if (c == NULL || rd == NULL || wr == NULL)
        return COFFER_ERR_INVALID_ARG;
    if (c->dead)
        return COFFER_ERR_PEER_GONE;
    if ((r = client_job_frame(c, job, PROTO_INPUT_STREAM)) != 0)
        return r;
    for (;;) {
        short ev = POLLIN;
        if (c->soff == c->slen && !end_sent && !send_broken) {
            if (!in_eof) {
                ssize_t n = rd(rctx, c->sbuf + COFFER_FRAME_HEADER, CLIENT_CHUNK);
                if (n < 0 || (size_t)n > CLIENT_CHUNK) {
                    c->dead = 1; /* the daemon sees the job vanish and drops it */
                    shutdown(c->fd, SHUT_RDWR);
                    return n < 0 ? (int)n : COFFER_ERR_INVALID_ARG;
                }
                if (n == 0)
                    in_eof = 1;
                proto_header_put(c->sbuf, n > 0 ? PROTO_DATA : PROTO_END, (uint32_t)n);
                c->soff = 0;
                c->slen = COFFER_FRAME_HEADER + (size_t)n;
                end_sent = n == 0;
            }
        }
        if (c->soff < c->slen && !send_broken)
            ev |= POLLOUT;
        if ((r = client_wait(c, ev)) < 0)
            return r;
        if ((r & POLLOUT) && c->soff < c->slen) {
            ssize_t n =
                send(c->fd, c->sbuf + c->soff, c->slen - c->soff, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0)
                c->soff += (size_t)n;
            else if (n < 0 && errno != EAGAIN && errno != EINTR)
                send_broken = 1; /* the daemon closed: its error frame may be waiting */
        }
        if (r & (POLLIN | POLLHUP | POLLERR)) {
            int fr = client_fill(c);
            int done = client_frames(c, wr, wctx, res);
            if (done < 0)
                return done;
            if (done == 1)
                return 0;
            if (fr < 0)
                return fr;
        }
    }
}

static ssize_t fd_read(void *ctx, void *buf, size_t cap)
{
    int fd = *(int *)ctx;
    for (;;) {
        ssize_t n = read(fd, buf, cap);
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return coffer_err_from_errno(errno);
    }
}

static int fd_write(void *ctx, const void *buf, size_t len)
{
    int fd = *(int *)ctx;
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? coffer_err_from_errno(errno) : COFFER_ERR_IO;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int coffer_client_stream_fd(coffer_client *c, const struct coffer_job *job, int in_fd, int out_fd,
                            struct coffer_result *res)
{
    return coffer_client_stream(c, job, fd_read, &in_fd, fd_write, &out_fd, res);
}

int coffer_client_file(coffer_client *c, const struct coffer_job *job, int in_fd, int out_fd,
                       struct coffer_result *res)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * 2)];
        struct cmsghdr align;
    } cm;
    struct msghdr msg;
    struct iovec iov;
    struct cmsghdr *h;
    int fds[2] = {in_fd, out_fd}, r;
    ssize_t n;

    memset(res, 0, sizeof(*res));
    if (c == NULL || in_fd < 0 || out_fd < 0)
        return COFFER_ERR_INVALID_ARG;
    if (c->dead)
        return COFFER_ERR_PEER_GONE;
    if ((r = client_job_frame(c, job, PROTO_INPUT_FDS)) != 0)
        return r;
    memset(&msg, 0, sizeof(msg));
    memset(&cm, 0, sizeof(cm));
    iov.iov_base = c->sbuf;
    iov.iov_len = c->slen;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cm.buf;
    msg.msg_controllen = sizeof(cm.buf);
    h = CMSG_FIRSTHDR(&msg);
    h->cmsg_level = SOL_SOCKET;
    h->cmsg_type = SCM_RIGHTS;
    h->cmsg_len = CMSG_LEN(sizeof(fds));
    memcpy(CMSG_DATA(h), fds, sizeof(fds));
    do {
        if ((r = client_wait(c, POLLOUT)) < 0)
            return r;
        n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    } while (n < 0 && (errno == EAGAIN || errno == EINTR));
    if (n < 0) {
        c->dead = 1;
        return COFFER_ERR_PEER_GONE;
    }
    c->soff = (size_t)n; /* the rest (if any) goes without descriptors */
    if ((r = client_flush(c)) != 0)
        return r;
    for (;;) {
        int done = client_frames(c, NULL, NULL, res);
        if (done < 0)
            return done;
        if (done == 1)
            return 0;
        if ((r = client_wait(c, POLLIN)) < 0)
            return r;
        if ((r = client_fill(c)) < 0)
            return r;
    }
}

static int client_query(coffer_client *c, uint8_t type, char **json)
{
    proto_header h;
    const uint8_t *p = NULL;
    int r;

    *json = NULL;
    if (c == NULL)
        return COFFER_ERR_INVALID_ARG;
    if (c->dead)
        return COFFER_ERR_PEER_GONE;
    proto_header_put(c->sbuf, type, 0);
    c->soff = 0;
    c->slen = COFFER_FRAME_HEADER;
    if ((r = client_flush(c)) != 0 || (r = client_read_frame(c, &h, &p)) < 0)
        return r < 0 ? r : COFFER_ERR_PEER_GONE;
    if (h.type == PROTO_ERROR)
        return client_error(c, p, h.len, NULL, 0);
    if (h.type != type || h.len > COFFER_MAX_JSON) {
        c->dead = 1;
        return COFFER_ERR_PROTO_SEQUENCE;
    }
    if ((*json = malloc(h.len + 1)) == NULL)
        return COFFER_ERR_NOMEM;
    memcpy(*json, p, h.len);
    (*json)[h.len] = '\0';
    client_consume(c, &h);
    return 0;
}

int coffer_client_health(coffer_client *c, char **json)
{
    return client_query(c, PROTO_HEALTH, json);
}

int coffer_client_stats(coffer_client *c, char **json)
{
    return client_query(c, PROTO_STATS, json);
}
