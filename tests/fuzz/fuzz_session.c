/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: one connection's session (uring/session.h) driven by a script of events. */
#include "fuzz_common.h"

#include "coffer_error.h"
#include "engine_key.h"
#include "engine_metadata.h"
#include "engine_stream.h"
#include "proto_frame.h"
#include "session.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

/*
 * The input: one byte of options, then events of one opcode byte and their argument bytes, in any
 * order. The client's bytes (well-formed frames built here with proto/'s writers, or raw bytes
 * from the input) go into a queue that receive events deliver in pieces, with fresh descriptors
 * (/dev/null, opened here) when the event says so. Every action of the session is recorded and
 * answered by a later event (a send in part or failed, a read with ciphertext, nothing or an
 * error, a write in part or ENOSPC, a key or none, a cipher batch run "offloaded" inline, a
 * probe). Then the connection is aborted and every action answered until the session is
 * finished, and freed.
 *
 * Invariants (FUZZ_CHECK aborts):
 * - no named limit exceeded: a receive's room within SESSION_IN_CAP, a send within
 *   SESSION_OUT_HALF, at most 4 client descriptors held (2 waiting + 2 of a job), the descriptor
 *   buffer budget taken never more than given back, back to 0 at the end;
 * - no plaintext of a failed chunk released: while the script has sent nothing but the
 *   well-formed frames, the DATA a decrypt job sends back (stream) or writes (descriptors) is
 *   the true plaintext at its offset, and a RESULT of a job whose ciphertext was tampered with
 *   or cut short never comes;
 * - every job ends exactly once: jobs counted ok plus failed equal the jobs created (runtime
 *   references taken), the RESULT frames equal the ok count, an ERROR is the last frame sent;
 * - after session_free every received descriptor was closed exactly once, every runtime
 *   reference given back, and (LeakSanitizer) nothing of the session's memory is left.
 */

#define PLAIN_LEN 40000u /* three 16 KiB chunks */
#define QUEUE_CAP (1u << 20)
#define SENT_CAP  (4u << 20)
#define MAX_LIVE  64

enum {
    OPT_OFFLOAD = 0x01, /* every cipher batch goes to the "helpers" (offload-min 1) */
    OPT_SPLIT = 0x02,   /* descriptor jobs split their batches (split-min 1) */
    OPT_BUDGET = 0x04,  /* the descriptor buffer budget is spent: small buffers */
    OPT_CHECK = 0x08,   /* fd_check refuses the descriptors */
    OPT_ECHO = 0x10,    /* the runtime is an echo baseline */
    OPT_TAMPER = 0x20,  /* the ciphertext has one byte flipped (position from the next 2 bytes) */
};

enum {
    EV_HELLO,    /* queue a HELLO frame */
    EV_JOB_DEC,  /* queue a JOB: decrypt coffer-v1, streamed */
    EV_JOB_ENC,  /* queue a JOB: encrypt, streamed */
    EV_JOB_FDS,  /* queue a JOB with descriptors (arg: op, flags) */
    EV_FEED,     /* queue the next n (arg) bytes of ciphertext as a DATA frame */
    EV_DATA_RAW, /* queue a DATA frame of input bytes (arg: length) */
    EV_END,      /* queue an END frame */
    EV_HEALTH,   /* queue a HEALTH (or STATS) frame */
    EV_RAW,      /* queue raw input bytes (arg: length) */
    EV_RECV,     /* the receive completes: n bytes of the queue (arg), 0-3 descriptors */
    EV_RECV_EOF, /* the receive completes: 0 (peer closed) or an error */
    EV_SEND,     /* the send completes: all, part (arg), or an error */
    EV_READ,     /* the descriptor read completes with the next ciphertext, raw bytes, 0 or -EIO */
    EV_WRITE,    /* a write completes: all, part, -ENOSPC */
    EV_SYNC,     /* the fsync completes: 0, -EINVAL or -EIO */
    EV_PROBE,    /* the probe answers: pipes or regular files */
    EV_WORK,     /* the offloaded cipher batch completes */
    EV_KEY,      /* the key request answers: the key, none, or a wrong key */
    EV_TICK,     /* time passes (arg: seconds) and a tick comes */
    EV_STOP,     /* the daemon stops */
    EV_ABORT,    /* the shutdown grace expired (arg: hard) */
    EV_COUNT,
};

static struct {
    int ready;
    engine_key *key, *wrong;
    char *metadata;
    uint8_t plain[PLAIN_LEN];
    uint8_t *cipher;
    size_t cipher_len;
} G;

static struct {
    uint8_t opts;
    uint8_t *ct; /* this run's ciphertext (tampered or not) */
    size_t ct_len, ct_fed, ct_read;
    int tampered, truncated_ok;
    /* the client's queue */
    uint8_t queue[QUEUE_CAP];
    size_t q_len, q_off;
    /* actions out */
    uint8_t *recv_buf;
    size_t recv_room;
    int recv_out;
    const uint8_t *send_buf;
    size_t send_len;
    int send_out;
    uint8_t *read_buf;
    size_t read_len;
    int read_out;
    const uint8_t *write_buf[SESSION_FILE_BUFS];
    size_t write_len[SESSION_FILE_BUFS];
    uint64_t write_pos[SESSION_FILE_BUFS];
    int write_out[SESSION_FILE_BUFS];
    int sync_out, probe_out, key_out, work_out, work_split;
    struct session_work *work;
    int shut;
    int lost; /* output may have been dropped: a send failed, a timeout or hard abort closed */
    /* facts */
    double now;
    int stopping;
    size_t budget;
    int rt_refs, rt_gets;
    int jobs_ok, jobs_failed;
    int clean, first_job_decrypt, job_seen, fd_regular;
    uint64_t out_pos0;
    size_t released; /* the first job's plaintext bytes released so far (pipe output) */
    int live[MAX_LIVE], nlive;
    uint8_t sent[SENT_CAP];
    size_t sent_len;
} T;

/* ---- the env ---- */

static void live_add(int fd)
{
    FUZZ_CHECK(T.nlive < MAX_LIVE);
    T.live[T.nlive++] = fd;
}

static void e_recv(struct session *s, uint8_t *buf, size_t room)
{
    (void)s;
    FUZZ_CHECK(!T.recv_out && room > 0 && room <= SESSION_IN_CAP);
    T.recv_buf = buf;
    T.recv_room = room;
    T.recv_out = 1;
}

static void e_send(struct session *s, const uint8_t *buf, size_t len)
{
    (void)s;
    FUZZ_CHECK(!T.send_out && len > 0 && len <= SESSION_OUT_HALF);
    T.send_buf = buf;
    T.send_len = len;
    T.send_out = 1;
}

static void e_fd_read(struct session *s, int fd, uint8_t *buf, size_t len, uint64_t pos)
{
    (void)s, (void)fd, (void)pos;
    FUZZ_CHECK(!T.read_out && len > 0);
    T.read_buf = buf;
    T.read_len = len;
    T.read_out = 1;
}

static void e_fd_write(struct session *s, unsigned k, int fd, const uint8_t *buf, size_t len,
                       uint64_t pos)
{
    (void)s, (void)fd;
    FUZZ_CHECK(k < SESSION_FILE_BUFS && !T.write_out[k] && len > 0);
    T.write_buf[k] = buf;
    T.write_len[k] = len;
    T.write_pos[k] = pos;
    T.write_out[k] = 1;
}

static void e_fd_sync(struct session *s, int fd)
{
    (void)s, (void)fd;
    FUZZ_CHECK(!T.sync_out);
    T.sync_out = 1;
}

static void e_fd_cancel(struct session *s, int writes)
{
    (void)s, (void)writes;
}

static void e_fd_close(struct session *s, int fd)
{
    (void)s;
    for (int i = 0; i < T.nlive; i++) {
        if (T.live[i] == fd) {
            T.live[i] = T.live[--T.nlive];
            close(fd);
            return;
        }
    }
    FUZZ_CHECK(!"a descriptor closed that the session does not hold (or twice)");
}

static void e_fd_probe(struct session *s, int in, int out)
{
    (void)s, (void)in, (void)out;
    FUZZ_CHECK(!T.probe_out);
    T.probe_out = 1;
}

static void e_work(struct session *s, struct session_work *wk, int split)
{
    (void)s;
    FUZZ_CHECK(!T.work_out);
    T.work = wk;
    T.work_split = split;
    T.work_out = 1;
}

static int e_key_request(struct session *s, const struct session_keyask *ask)
{
    (void)s, (void)ask;
    FUZZ_CHECK(!T.key_out);
    T.key_out = 1;
    return 0;
}

static void e_shutdown(struct session *s)
{
    (void)s;
    T.shut++;
}

static double e_now(void)
{
    return T.now;
}

static int e_stopping(void)
{
    return T.stopping;
}

static void e_config(struct session_config *out)
{
    out->offload_min = (T.opts & OPT_OFFLOAD) ? 1 : 0;
    out->split_min = (T.opts & OPT_SPLIT) ? 1 : 0;
    out->fd_piece = 16384;
    out->io_timeout = 30;
    out->frame_timeout = 10;
    out->shutdown_grace = 5;
}

static int rt_token;
static void *e_rt_get(struct session_rt *out)
{
    memset(out, 0, sizeof(*out));
    out->encryption = 1;
    out->echo = (T.opts & OPT_ECHO) != 0;
    out->format = COFFER_FORMAT_COFFER_V1;
    out->ns = "velero";
    out->secret = "backup-key";
    out->spool_dir = "";
    out->key = out->echo ? NULL : G.key;
    out->metadata = G.metadata;
    out->metadata_len = strlen(G.metadata);
    T.rt_refs++;
    T.rt_gets++;
    return &rt_token;
}

static void e_rt_put(void *rt)
{
    FUZZ_CHECK(rt == &rt_token && T.rt_refs > 0);
    T.rt_refs--;
}

static void *e_alloc(size_t align, size_t n)
{
    void *p = NULL;
    if (align == 0)
        return malloc(n);
    return posix_memalign(&p, align, n) == 0 ? p : NULL;
}

static int e_fd_check(int in, int out, char *detail, size_t detaillen)
{
    (void)in, (void)out;
    if (!(T.opts & OPT_CHECK))
        return 0;
    snprintf(detail, detaillen, "the input descriptor is a character device");
    return COFFER_ERR_INVALID_ARG;
}

static int e_fdbuf_take(size_t n)
{
    if (T.opts & OPT_BUDGET)
        return 0;
    T.budget += n;
    FUZZ_CHECK(T.budget <= 4 * SESSION_FDBUF_BUDGET);
    return 1;
}

static void e_fdbuf_give(size_t n)
{
    FUZZ_CHECK(n <= T.budget);
    T.budget -= n;
}

static char *e_report(uint8_t type)
{
    return strdup(type == PROTO_HEALTH ? "{\"status\":\"ok\"}" : "{\"jobsOk\":0}");
}

static int e_hsm_backup(void *rt, void **hsm, engine_key **dk, char **meta)
{
    (void)rt, (void)hsm, (void)dk, (void)meta;
    return COFFER_ERR_INTERNAL;
}

static int e_hsm_restore(void *rt, const void *json, void **hsm, char *detail, size_t len)
{
    (void)rt, (void)json, (void)hsm;
    snprintf(detail, len, "no HSM configured");
    return COFFER_ERR_HSM_UNAVAILABLE;
}

static void e_hsm_end(void *rt, void *hsm, uint64_t bytes)
{
    (void)rt, (void)bytes;
    FUZZ_CHECK(hsm == NULL);
}

static void e_key_answer(void *hsm, const void *answer, struct session_key *ans)
{
    FUZZ_CHECK(hsm == NULL);
    ans->key = answer;
    ans->err = answer != NULL ? 0 : COFFER_ERR_KEY_READ;
    if (answer == NULL)
        snprintf(ans->detail, sizeof(ans->detail), "no such Secret");
}

static int e_kube(void *rt, const char *ns, char *detail, size_t len)
{
    (void)rt, (void)ns, (void)detail, (void)len;
    return 0;
}

static int e_seal(void *rt, const engine_key *key, char **meta, size_t *len, char *detail,
                  size_t detaillen)
{
    (void)rt, (void)key, (void)meta, (void)len, (void)detail, (void)detaillen;
    return 0;
}

static void e_hint(const void *json, char *detail, size_t len)
{
    (void)json, (void)detail, (void)len;
}

__attribute__((format(printf, 3, 0))) static void e_log(int level, const char *event,
                                                        const char *fmt, va_list ap)
{
    char line[1024];
    (void)level, (void)event;
    vsnprintf(line, sizeof(line), fmt, ap); /* the format and its arguments agree */
}

static void e_count(enum session_count what, int err, const struct session_jobinfo *job)
{
    (void)err;
    if (what == SESSION_COUNT_JOB_OK) {
        FUZZ_CHECK(job != NULL);
        T.jobs_ok++;
    } else if (what == SESSION_COUNT_JOB_FAILED) {
        FUZZ_CHECK(job != NULL);
        T.jobs_failed++;
    } else if (what == SESSION_COUNT_TIMEOUT) {
        T.lost = 1; /* a timeout closes (or fails) with output unsent */
    }
}

static const struct session_ops ops = {
    .recv = e_recv,
    .send = e_send,
    .fd_read = e_fd_read,
    .fd_write = e_fd_write,
    .fd_sync = e_fd_sync,
    .fd_cancel = e_fd_cancel,
    .fd_close = e_fd_close,
    .fd_probe = e_fd_probe,
    .work = e_work,
    .key_request = e_key_request,
    .shutdown = e_shutdown,
    .now = e_now,
    .stopping = e_stopping,
    .config = e_config,
    .rt_get = e_rt_get,
    .rt_put = e_rt_put,
    .alloc = e_alloc,
    .fd_check = e_fd_check,
    .fdbuf_take = e_fdbuf_take,
    .fdbuf_give = e_fdbuf_give,
    .report = e_report,
    .hsm_backup = e_hsm_backup,
    .hsm_restore = e_hsm_restore,
    .hsm_end = e_hsm_end,
    .key_answer = e_key_answer,
    .kube_ns_allowed = e_kube,
    .recovery_seal = e_seal,
    .recovery_hint = e_hint,
    .log = e_log,
    .count = e_count,
};

/* ---- the fixed ciphertext ---- */

static void setup(void)
{
    struct engine_stream_params p;
    engine_stream *st = NULL;
    json_t *m;
    size_t n = 0, cap;

    if (G.ready)
        return;
    FUZZ_CHECK(engine_key_from_bytes(&G.key, fuzz_key32, sizeof(fuzz_key32)) == 0);
    FUZZ_CHECK(engine_key_from_bytes(&G.wrong, fuzz_key32, 16) == 0);
    m = engine_metadata_new_secret("velero", "backup-key", "coffer-v1", G.key->id);
    FUZZ_CHECK(m != NULL && (G.metadata = engine_metadata_dump(m)) != NULL);
    json_decref(m);
    for (size_t i = 0; i < PLAIN_LEN; i++)
        G.plain[i] = (uint8_t)(i * 31u + 7u);
    memset(&p, 0, sizeof(p));
    p.format = COFFER_FORMAT_COFFER_V1;
    p.backend = ENGINE_GCM_AUTO;
    p.key = G.key;
    p.metadata = G.metadata;
    p.metadata_len = strlen(G.metadata);
    FUZZ_CHECK(engine_stream_seal_new(&st, &p) == 0);
    cap = engine_stream_bound(st, PLAIN_LEN) + engine_stream_bound(st, 0) + 4096;
    G.cipher = malloc(cap);
    FUZZ_CHECK(G.cipher != NULL);
    FUZZ_CHECK(engine_stream_update(st, G.plain, PLAIN_LEN, G.cipher, cap, &n) == 0);
    G.cipher_len = n;
    FUZZ_CHECK(engine_stream_finish(st, G.cipher + n, cap - n, &n) == 0);
    G.cipher_len += n;
    for (;;) {
        FUZZ_CHECK(engine_stream_drain(st, G.cipher + G.cipher_len, cap - G.cipher_len, &n) == 0);
        if (n == 0)
            break;
        G.cipher_len += n;
    }
    engine_stream_free(st);
    G.ready = 1;
}

/* ---- the script ---- */

struct cursor {
    const uint8_t *p;
    size_t left;
};

static unsigned take(struct cursor *c)
{
    if (c->left == 0)
        return 0;
    c->left--;
    return *c->p++;
}

static void queue_put(const void *p, size_t n)
{
    if (n == 0 || T.q_len + n > QUEUE_CAP)
        return;
    memcpy(T.queue + T.q_len, p, n);
    T.q_len += n;
}

static void queue_frame(uint8_t type, const void *p, size_t n)
{
    uint8_t hdr[COFFER_FRAME_HEADER];
    proto_header_put(hdr, type, (uint32_t)n);
    queue_put(hdr, sizeof(hdr));
    queue_put(p, n);
}

static void queue_job(uint8_t op, uint8_t input, uint16_t flags)
{
    static uint8_t buf[256];
    proto_job j;
    size_t n = 0;
    memset(&j, 0, sizeof(j));
    j.op = op;
    j.input = input;
    j.flags = flags;
    FUZZ_CHECK(proto_job_write(buf, sizeof(buf), &j, &n) == 0);
    queue_put(buf, n);
    if (!T.job_seen) {
        T.job_seen = 1;
        T.first_job_decrypt = op == PROTO_OP_DECRYPT;
    }
}

/* Released plaintext of the first (decrypt) job: bytes at plaintext offset off. */
static void check_plain(const uint8_t *p, size_t n, size_t off)
{
    if (!T.clean || !T.first_job_decrypt || (T.opts & OPT_ECHO) || T.rt_gets != 1)
        return;
    FUZZ_CHECK(off + n <= PLAIN_LEN);
    FUZZ_CHECK(memcmp(p, G.plain + off, n) == 0);
}

/* Walk the frames sent: DATA of the first job is plaintext; count RESULTs; ERROR is last. */
static void check_sent(int final)
{
    size_t pos = 0, data = 0;
    int results = 0, errors = 0, after_error = 0, first_done = 0;
    while (pos + COFFER_FRAME_HEADER <= T.sent_len) {
        proto_header h;
        FUZZ_CHECK(proto_header_parse(T.sent + pos, &h) == 0);
        if (pos + COFFER_FRAME_HEADER + h.len > T.sent_len)
            break; /* the rest is still being sent */
        if (errors)
            after_error = 1;
        if (getenv("FUZZ_SESSION_TRACE") != NULL)
            fprintf(stderr, "sent frame type %u len %u\n", h.type, (unsigned)h.len);
        if (h.type == PROTO_DATA && !first_done) {
            check_plain(T.sent + pos + COFFER_FRAME_HEADER, h.len, data);
            data += h.len;
        } else if (h.type == PROTO_RESULT) {
            if (!first_done && T.clean && T.first_job_decrypt && !(T.opts & OPT_ECHO) &&
                !T.fd_regular)
                FUZZ_CHECK(!T.tampered && data + T.released == PLAIN_LEN);
            first_done = 1;
            results++;
        } else if (h.type == PROTO_ERROR) {
            first_done = 1;
            errors++;
        }
        pos += COFFER_FRAME_HEADER + h.len;
    }
    FUZZ_CHECK(!after_error && errors <= 1);
    /* a RESULT queued counts the job ok; the client sees it unless the output was dropped */
    if (final)
        FUZZ_CHECK(T.lost ? results <= T.jobs_ok : results == T.jobs_ok);
}

static void answer_send(struct session *s, unsigned how)
{
    size_t n = T.send_len;
    if (!T.send_out)
        return;
    T.send_out = 0;
    if (how % 4 == 3) {
        T.lost = 1;
        session_sent(s, -EPIPE);
        return;
    }
    if (how % 4 == 2 && n > 1)
        n = 1 + how % (n - 1);
    if (T.sent_len + n <= SENT_CAP) {
        memcpy(T.sent + T.sent_len, T.send_buf, n);
        T.sent_len += n;
    } else {
        T.clean = 0; /* no more checking of what goes out */
    }
    session_sent(s, (int)n);
}

static void answer_recv(struct session *s, size_t want, unsigned nfds)
{
    int fds[3];
    size_t n = T.q_len - T.q_off;
    if (!T.recv_out)
        return;
    if (n > want)
        n = want;
    if (n > T.recv_room)
        n = T.recv_room;
    if (n == 0)
        return; /* a receive of 0 bytes is the peer's EOF (EV_RECV_EOF); descriptors need bytes */
    nfds %= 4;
    for (unsigned i = 0; i < nfds; i++) {
        fds[i] = open("/dev/null", O_RDWR | O_CLOEXEC);
        FUZZ_CHECK(fds[i] >= 0);
        live_add(fds[i]);
    }
    memcpy(T.recv_buf, T.queue + T.q_off, n);
    T.q_off += n;
    T.recv_out = 0;
    session_received(s, (int)n, fds, (int)nfds, 0);
}

static void answer_read(struct session *s, unsigned how, struct cursor *c)
{
    size_t n;
    if (!T.read_out)
        return;
    T.read_out = 0;
    switch (how % 4) {
    case 0: /* the next ciphertext */
        n = T.ct_len - T.ct_read;
        if (n > T.read_len)
            n = T.read_len;
        memcpy(T.read_buf, T.ct + T.ct_read, n);
        T.ct_read += n;
        session_fd_done(s, SESSION_FD_READ, (int)n);
        break;
    case 1: /* raw bytes */
        n = take(c) % 64;
        n = n > c->left ? c->left : n;
        n = n > T.read_len ? T.read_len : n;
        memcpy(T.read_buf, c->p, n);
        c->p += n;
        c->left -= n;
        T.clean = 0;
        session_fd_done(s, SESSION_FD_READ, (int)n);
        break;
    case 2:
        session_fd_done(s, SESSION_FD_READ, 0);
        break;
    default:
        session_fd_done(s, SESSION_FD_READ, -EIO);
        break;
    }
}

static void answer_write(struct session *s, unsigned k, unsigned how)
{
    size_t n;
    k %= SESSION_FILE_BUFS;
    if (!T.write_out[k])
        return;
    T.write_out[k] = 0;
    n = T.write_len[k];
    if (how % 4 == 3) {
        session_fd_done(s, SESSION_FD_WRITE + (int)k, -ENOSPC);
        return;
    }
    if (how % 4 == 2 && n > 1)
        n = 1 + how % (n - 1);
    if (T.write_pos[k] == (uint64_t)-1) {
        check_plain(T.write_buf[k], n, T.released);
        if (T.rt_gets == 1)
            T.released += n; /* the first job's output only: its RESULT is checked against it */
    } else {
        FUZZ_CHECK(T.write_pos[k] >= T.out_pos0);
        check_plain(T.write_buf[k], n, (size_t)(T.write_pos[k] - T.out_pos0));
    }
    session_fd_done(s, SESSION_FD_WRITE + (int)k, (int)n);
}

static void answer_work(struct session *s)
{
    if (!T.work_out)
        return;
    T.work_out = 0;
    if (T.work_split)
        session_work_run_spans(T.work);
    else
        session_work_run(T.work);
    session_work_done(s);
}

static void event(struct session *s, unsigned ev, struct cursor *c)
{
    unsigned a = take(c), b;
    uint8_t buf[256];
    size_t n;

    switch (ev % EV_COUNT) {
    case EV_HELLO: {
        proto_hello h = {COFFER_PROTO_VERSION, COFFER_PROTO_VERSION, COFFER_MAX_FRAME};
        if (a & 1)
            h.version_min = h.version_max = (uint16_t)(a >> 1); /* maybe not ours */
        FUZZ_CHECK(proto_hello_write(buf, sizeof(buf), &h, &n) == 0);
        queue_put(buf, n);
        break;
    }
    case EV_JOB_DEC:
        queue_job(PROTO_OP_DECRYPT, PROTO_INPUT_STREAM, 0);
        break;
    case EV_JOB_ENC:
        queue_job(PROTO_OP_ENCRYPT, PROTO_INPUT_STREAM, 0);
        break;
    case EV_JOB_FDS:
        queue_job((a & 1) ? PROTO_OP_DECRYPT : PROTO_OP_ENCRYPT, PROTO_INPUT_FDS,
                  (a & 2) ? PROTO_JOB_FSYNC : 0);
        break;
    case EV_FEED:
        n = (a + 1) * 512;
        if (n > T.ct_len - T.ct_fed)
            n = T.ct_len - T.ct_fed;
        if (n > COFFER_MAX_FRAME)
            n = COFFER_MAX_FRAME;
        queue_frame(PROTO_DATA, T.ct + T.ct_fed, n);
        T.ct_fed += n;
        break;
    case EV_DATA_RAW:
        n = a > c->left ? c->left : a;
        queue_frame(PROTO_DATA, c->p, n);
        c->p += n;
        c->left -= n;
        T.clean = 0;
        break;
    case EV_END:
        queue_frame(PROTO_END, NULL, 0);
        break;
    case EV_HEALTH:
        queue_frame((a & 1) ? PROTO_STATS : PROTO_HEALTH, NULL, 0);
        break;
    case EV_RAW:
        n = a > c->left ? c->left : a;
        queue_put(c->p, n);
        c->p += n;
        c->left -= n;
        T.clean = 0;
        break;
    case EV_RECV:
        b = take(c);
        answer_recv(s, ((size_t)a << 8 | b) * 8 + 1, a >> 6);
        break;
    case EV_RECV_EOF:
        if (T.recv_out) {
            T.recv_out = 0;
            /* a reset peer, or one that closes mid-job ("peer gone"): what was not sent yet,
               an earlier job's RESULT included, is dropped with the connection */
            T.lost |=
                (a & 1) || (session_state(s) >= SESSION_PROBE && session_state(s) <= SESSION_DONE);
            session_received(s, (a & 1) ? -ECONNRESET : 0, NULL, 0, 0);
        }
        break;
    case EV_SEND:
        answer_send(s, a);
        break;
    case EV_READ:
        answer_read(s, a, c);
        break;
    case EV_WRITE:
        answer_write(s, a & 3, a >> 2);
        break;
    case EV_SYNC:
        if (T.sync_out) {
            T.sync_out = 0;
            session_fd_done(s, SESSION_FD_SYNC, a % 3 == 0 ? 0 : a % 3 == 1 ? -EINVAL : -EIO);
        }
        break;
    case EV_PROBE:
        if (T.probe_out) {
            T.probe_out = 0;
            if (a & 1) {
                T.fd_regular = 1;
                T.out_pos0 = a >> 1;
                session_probed(s, a >> 2, T.out_pos0, 1);
            } else {
                session_probed(s, (uint64_t)-1, (uint64_t)-1, 0);
            }
        }
        break;
    case EV_WORK:
        answer_work(s);
        break;
    case EV_KEY:
        if (T.key_out) {
            T.key_out = 0;
            session_key_done(s, a % 3 == 0 ? G.key : a % 3 == 1 ? NULL : G.wrong);
        }
        break;
    case EV_TICK:
        T.now += a % 40;
        session_tick_io(s, T.now);
        session_tick(s, T.now, 30);
        break;
    case EV_STOP:
        T.stopping = 1;
        session_stop(s);
        break;
    case EV_ABORT:
        T.lost |= a & 1;
        session_abort(s, a & 1);
        break;
    }
}

/* Answer everything that is out, with failures where that ends things soonest. */
static void finish(struct session *s)
{
    for (int round = 0; round < 1000 && !session_finished(s); round++) {
        if (round == 0 || round == 100) {
            T.lost |= round == 100;
            session_abort(s, round == 100);
        }
        answer_work(s);
        if (T.probe_out) {
            T.probe_out = 0;
            session_probed(s, (uint64_t)-1, (uint64_t)-1, 0);
        }
        if (T.key_out) {
            T.key_out = 0;
            session_key_done(s, NULL);
        }
        if (T.send_out)
            answer_send(s, 0);
        if (T.read_out) {
            T.read_out = 0;
            session_fd_done(s, SESSION_FD_READ, -ECANCELED);
        }
        for (unsigned k = 0; k < SESSION_FILE_BUFS; k++) {
            if (T.write_out[k]) {
                T.write_out[k] = 0;
                session_fd_done(s, SESSION_FD_WRITE + (int)k, -ECANCELED);
            }
        }
        if (T.sync_out) {
            T.sync_out = 0;
            session_fd_done(s, SESSION_FD_SYNC, -ECANCELED);
        }
        if (T.recv_out) {
            T.recv_out = 0;
            session_received(s, 0, NULL, 0, 0);
        }
    }
    FUZZ_CHECK(session_finished(s));
    FUZZ_CHECK(T.shut >= 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cursor c = {data, size};
    struct session *s;
    static uint8_t ct[8 * PLAIN_LEN];

    setup();
    memset(&T, 0, sizeof(T) - sizeof(T.sent));
    T.sent_len = 0;
    T.opts = (uint8_t)take(&c);
    T.clean = 1;
    T.now = 1000.0;
    FUZZ_CHECK(G.cipher_len <= sizeof(ct));
    memcpy(ct, G.cipher, G.cipher_len);
    T.ct = ct;
    T.ct_len = G.cipher_len;
    if (T.opts & OPT_TAMPER) {
        size_t at = ((size_t)take(&c) << 8 | take(&c)) * 3 % G.cipher_len;
        ct[at] ^= 0x5a;
        T.tampered = 1;
    }
    s = session_new(&ops, NULL, 1, 1000, 4242);
    FUZZ_CHECK(s != NULL);
    session_pump(s);
    while (c.left > 0 && T.nlive < MAX_LIVE - 4) {
        unsigned ev = take(&c);
        event(s, ev, &c);
        if (getenv("FUZZ_SESSION_TRACE") != NULL)
            fprintf(stderr, "event %u -> %s, sent %zu, ok %d failed %d\n", ev % EV_COUNT,
                    session_state_name(session_state(s)), T.sent_len, T.jobs_ok, T.jobs_failed);
        FUZZ_CHECK(T.nlive <= 4); /* 2 waiting for a job, 2 held by a job */
        if (session_state(s) == SESSION_CLOSED && session_finished(s))
            break;
    }
    finish(s);
    check_sent(0);
    session_free(s);
    check_sent(1);
    FUZZ_CHECK(T.nlive == 0);   /* every descriptor closed exactly once */
    FUZZ_CHECK(T.rt_refs == 0); /* every runtime reference given back */
    FUZZ_CHECK(T.budget == 0);  /* the descriptor buffer budget given back */
    FUZZ_CHECK(T.jobs_ok + T.jobs_failed == T.rt_gets); /* every job ended exactly once */
    if (getenv("FUZZ_SESSION_TRACE") != NULL)           /* what a seed reached, for writing seeds */
        fprintf(stderr, "jobs ok %d failed %d, sent %zu bytes, released %zu, clean %d\n", T.jobs_ok,
                T.jobs_failed, T.sent_len, T.released, T.clean);
    return 0;
}
