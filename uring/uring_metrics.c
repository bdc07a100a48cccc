/* SPDX-License-Identifier: Apache-2.0 */
/* cofferd's metrics registry, its Prometheus text rendering, and the libmicrohttpd listener. */
#include "uring_metrics.h"

#include "coffer_error.h"
#include "coffer_version.h"
#include "engine_secmem.h"
#include "uring_report.h"
#include "uring_listen.h"
#include "uring_hsm.h"
#include "uring_log.h"
#include "uring_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define RELAXED memory_order_relaxed

/* ---- the registry ---- */

#define N_OPS     2   /* PROTO_OP_ENCRYPT, PROTO_OP_DECRYPT */
#define N_FORMATS 5   /* coffer_format values */
#define N_ERRS    128 /* -code; 0 holds codes outside the table */

/* Job latency buckets, seconds (upper bounds; +Inf is the count). */
static const double le_s[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                              1,     2.5,    5,     10,   30,    60,   120, 300};
#define N_LE (sizeof(le_s) / sizeof(le_s[0]))

struct latency {
    atomic_ullong bucket[N_LE + 1]; /* not cumulative; the last is beyond every bound */
    atomic_ullong sum_us;
};

static struct {
    atomic_ullong jobs[N_OPS][N_FORMATS][2];
    atomic_ullong bytes_in[N_OPS], bytes_out[N_OPS];
    struct latency latency[N_OPS][2];
    atomic_ullong errors[N_ERRS];
    atomic_ullong refused[URING_REFUSED_N];
    atomic_ullong secret[URING_SECRET_N];
} m;

static int op_index(int op)
{
    return op == PROTO_OP_DECRYPT ? 1 : 0;
}

void uring_metrics_count_job(int op, coffer_format format, int ok, uint64_t bytes_in,
                             uint64_t bytes_out, double seconds)
{
    int o = op_index(op), f = (unsigned)format < N_FORMATS ? (int)format : 0, r = ok ? 0 : 1;
    struct latency *l = &m.latency[o][r];
    size_t b = 0;

    if (seconds < 0)
        seconds = 0;
    while (b < N_LE && seconds > le_s[b])
        b++;
    atomic_fetch_add_explicit(&m.jobs[o][f][r], 1, RELAXED);
    atomic_fetch_add_explicit(&m.bytes_in[o], bytes_in, RELAXED);
    atomic_fetch_add_explicit(&m.bytes_out[o], bytes_out, RELAXED);
    atomic_fetch_add_explicit(&l->bucket[b], 1, RELAXED);
    atomic_fetch_add_explicit(&l->sum_us, (unsigned long long)(seconds * 1e6), RELAXED);
}

void uring_metrics_count_error(int code)
{
    int i = code < 0 && code > -N_ERRS ? -code : 0;
    atomic_fetch_add_explicit(&m.errors[i], 1, RELAXED);
}

void uring_metrics_count_refused(enum uring_metrics_refusal why)
{
    if ((unsigned)why < URING_REFUSED_N)
        atomic_fetch_add_explicit(&m.refused[why], 1, RELAXED);
}

void uring_metrics_count_secret(enum uring_metrics_secret what)
{
    if ((unsigned)what < URING_SECRET_N)
        atomic_fetch_add_explicit(&m.secret[what], 1, RELAXED);
}

static unsigned long long get(atomic_ullong *a)
{
    return atomic_load_explicit(a, RELAXED);
}

/* ---- rendering ---- */

struct text {
    char *p;
    size_t len, cap;
    int oom;
};

static void put(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct text *t, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (t->oom)
        return;
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->oom = 1;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        char *q = realloc(t->p, t->cap * 2 + (size_t)n);
        if (q == NULL) {
            t->oom = 1;
            return;
        }
        t->p = q;
        t->cap = t->cap * 2 + (size_t)n;
    }
}

/* One family's HELP and TYPE lines. */
static void family(struct text *t, const char *name, const char *type, const char *help)
{
    put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static const char *const op_names[N_OPS] = {"encrypt", "decrypt"};
static const char *const result_names[2] = {"ok", "error"};

static void render_jobs(struct text *t)
{
    family(t, "coffer_jobs_total", "counter",
           "Jobs ended, by operation, format and result (ok: RESULT sent; error: ERROR sent or "
           "the client went away).");
    for (int o = 0; o < N_OPS; o++)
        for (int f = 0; f < N_FORMATS; f++)
            for (int r = 0; r < 2; r++)
                put(t, "coffer_jobs_total{op=\"%s\",format=\"%s\",result=\"%s\"} %llu\n",
                    op_names[o], engine_format_name((coffer_format)f), result_names[r],
                    get(&m.jobs[o][f][r]));
    family(t, "coffer_job_bytes_in_total", "counter",
           "Bytes jobs consumed (ciphertext for decrypt, including the coffer-v1 header), by "
           "operation, counted when a job ends, whatever its result.");
    for (int o = 0; o < N_OPS; o++)
        put(t, "coffer_job_bytes_in_total{op=\"%s\"} %llu\n", op_names[o], get(&m.bytes_in[o]));
    family(t, "coffer_job_bytes_out_total", "counter",
           "Bytes jobs produced, by operation, counted when a job ends, whatever its result.");
    for (int o = 0; o < N_OPS; o++)
        put(t, "coffer_job_bytes_out_total{op=\"%s\"} %llu\n", op_names[o], get(&m.bytes_out[o]));
    family(t, "coffer_job_duration_seconds", "histogram",
           "Job time from its JOB frame to its RESULT (ok) or its end (error), by operation and "
           "result.");
    for (int o = 0; o < N_OPS; o++) {
        for (int r = 0; r < 2; r++) {
            struct latency *l = &m.latency[o][r];
            unsigned long long cum = 0;
            for (size_t b = 0; b <= N_LE; b++) {
                cum += get(&l->bucket[b]);
                if (b < N_LE)
                    put(t,
                        "coffer_job_duration_seconds_bucket{op=\"%s\",result=\"%s\",le=\"%g\"} "
                        "%llu\n",
                        op_names[o], result_names[r], le_s[b], cum);
                else
                    put(t,
                        "coffer_job_duration_seconds_bucket{op=\"%s\",result=\"%s\",le=\"+Inf\"}"
                        " %llu\n",
                        op_names[o], result_names[r], cum);
            }
            put(t, "coffer_job_duration_seconds_sum{op=\"%s\",result=\"%s\"} %.6f\n", op_names[o],
                result_names[r], (double)get(&l->sum_us) / 1e6);
            put(t, "coffer_job_duration_seconds_count{op=\"%s\",result=\"%s\"} %llu\n", op_names[o],
                result_names[r], cum);
        }
    }
}

static void render_errors(struct text *t)
{
    family(t, "coffer_errors_total", "counter",
           "ERROR frames that ended a job or a connection, by coffer error name "
           "(engine/coffer_error.h; OTHER for a code outside the table).");
#define X(name, value, msg)                                                                        \
    put(t, "coffer_errors_total{code=\"%s\"} %llu\n", #name, get(&m.errors[-(value)]));
    COFFER_ERROR_TABLE(X)
#undef X
    put(t, "coffer_errors_total{code=\"OTHER\"} %llu\n", get(&m.errors[0]));
}

static void render_connections(struct text *t, const struct uring_report_counters *c)
{
    static const char *const why[URING_REFUSED_N] = {"not_allowed", "busy", "shutdown",
                                                     "no_peercred", "nomem"};

    family(t, "coffer_connections_active", "gauge", "Client connections open now.");
    put(t, "coffer_connections_active %llu\n", (unsigned long long)c->conns_active);
    family(t, "coffer_connections_total", "counter", "Client connections accepted.");
    put(t, "coffer_connections_total %llu\n", (unsigned long long)c->conns_total);
    family(t, "coffer_connections_refused_total", "counter",
           "Connections refused at accept (one ERROR frame, then closed), by reason.");
    for (int i = 0; i < URING_REFUSED_N; i++)
        put(t, "coffer_connections_refused_total{reason=\"%s\"} %llu\n", why[i],
            get(&m.refused[i]));
    family(t, "coffer_connections_timed_out_total", "counter",
           "Connections closed after --io-timeout seconds without progress.");
    put(t, "coffer_connections_timed_out_total %llu\n", (unsigned long long)c->conns_timeout);
}

static void render_keys(struct text *t, const struct uring_report_counters *c)
{
    static const char *const what[URING_SECRET_N] = {"cache_hit", "loaded", "failed"};

    family(t, "coffer_key_requests_total", "counter",
           "Keys jobs asked the Secret or HSM loader threads for (a new backup under the "
           "configured Secret needs none: its key is loaded at start and reload).");
    put(t, "coffer_key_requests_total %llu\n", (unsigned long long)c->key_loads);
    family(t, "coffer_secret_key_loads_total", "counter",
           "Requests the Secret loader served, by result: from its cache of recent keys "
           "(cache_hit), read from the Secret volume (loaded), or failed.");
    for (int i = 0; i < URING_SECRET_N; i++)
        put(t, "coffer_secret_key_loads_total{result=\"%s\"} %llu\n", what[i], get(&m.secret[i]));
    family(t, "coffer_secmem_lock_failures_total", "counter",
           "Allocations of key memory that mlock(2) refused (RLIMIT_MEMLOCK too low): the keys "
           "are still wiped, but may be swapped out.");
    put(t, "coffer_secmem_lock_failures_total %llu\n",
        (unsigned long long)c->secmem_lock_failures);
}

static void render_work(struct text *t, const struct uring_report_counters *c)
{

    family(t, "coffer_helper_batches_total", "counter",
           "Cipher batches run on the helper threads instead of a ring thread.");
    put(t, "coffer_helper_batches_total %llu\n", (unsigned long long)c->helper_batches);
    family(t, "coffer_split_batches_total", "counter",
           "Descriptor-job batches split between a helper and the ring thread.");
    put(t, "coffer_split_batches_total %llu\n", (unsigned long long)c->split_batches);
    family(t, "coffer_fd_jobs_small_buffers_total", "counter",
           "Descriptor jobs that got small buffers because the shared buffer budget was spent.");
    put(t, "coffer_fd_jobs_small_buffers_total %llu\n", (unsigned long long)c->fd_small);
}

/* One sample per label set: name{labels[i]} values[i]. */
static void samples(struct text *t, const char *name, const char *const *labels,
                    const uint64_t *values, int n)
{
    for (int i = 0; i < n; i++)
        put(t, "%s{%s} %llu\n", name, labels[i], (unsigned long long)values[i]);
}

static void render_hsm(struct text *t, struct uring_hsm *h, int st)
{
    static const char *const op_results[] = {
        "op=\"encrypt\",result=\"ok\"", "op=\"encrypt\",result=\"error\"",
        "op=\"decrypt\",result=\"ok\"", "op=\"decrypt\",result=\"error\""};
    static const char *const op_hits[] = {
        "op=\"encrypt\",result=\"hit\"", "op=\"encrypt\",result=\"miss\"",
        "op=\"decrypt\",result=\"hit\"", "op=\"decrypt\",result=\"miss\""};
    static const char *const evictions[] = {"reason=\"age\"", "reason=\"uses\"", "reason=\"bytes\"",
                                            "reason=\"capacity\""};
    static const char *const st_names[3] = {"unavailable", "unknown", "ok"};
    struct uring_hsm_counts c;

    uring_hsm_counts_get(h, &c);
    family(t, "coffer_hsm_configured", "gauge", "1 when an HSM (--hsm-module) is configured.");
    put(t, "coffer_hsm_configured %d\n", h != NULL);
    family(t, "coffer_hsm_status", "gauge",
           "1 for the HSM's current status, 0 for the others: ok, unavailable (its last try "
           "failed), unknown (not tried yet, or no HSM).");
    for (int i = 0; i < 3; i++)
        put(t, "coffer_hsm_status{status=\"%s\"} %d\n", st_names[i], st == i - 1);
    family(t, "coffer_hsm_fallbacks_total", "counter",
           "New backups the HSM could not serve that the Secret key encrypted instead, by the "
           "HSM's error.");
    for (int i = 0; i < URING_HSM_REASONS; i++)
        put(t, "coffer_hsm_fallbacks_total{reason=\"%s\"} %llu\n", c.reason_name[i],
            (unsigned long long)c.fallbacks_by[i]);
    family(t, "coffer_hsm_data_keys_total", "counter",
           "Data keys of HSM backups and restores, by operation and result (a backup that fell "
           "back counts under coffer_hsm_fallbacks_total only).");
    samples(t, "coffer_hsm_data_keys_total", op_results,
            (uint64_t[]){c.backups, c.backups_failed, c.restores, c.restores_failed}, 4);
    family(t, "coffer_hsm_data_key_cache_total", "counter",
           "Look-ups in the HSM's data-key cache by operation and result (a miss is one HSM "
           "round trip); zero without an HSM.");
    samples(t, "coffer_hsm_data_key_cache_total", op_hits,
            (uint64_t[]){c.cache.backup_hits, c.cache.backup_misses, c.cache.restore_hits,
                         c.cache.restore_misses},
            4);
    family(t, "coffer_hsm_data_key_cache_evictions_total", "counter",
           "Data keys the cache dropped, by the bound that ended them.");
    samples(t, "coffer_hsm_data_key_cache_evictions_total", evictions,
            (uint64_t[]){c.cache.evicted_age, c.cache.evicted_uses, c.cache.evicted_bytes,
                         c.cache.evicted_capacity},
            4);
    family(t, "coffer_hsm_data_key_cache_restore_entries", "gauge",
           "Unwrapped data keys the cache holds for restores now.");
    put(t, "coffer_hsm_data_key_cache_restore_entries %llu\n",
        (unsigned long long)c.cache.restore_entries);
}

/*
 * The exposition text (Prometheus text format 0.0.4, with HELP and TYPE for every family) of
 * every counter, plus gauges read at the time: connections, health state, HSM status and cache,
 * locked-memory failures; the numbers STATS and HEALTH also report come from uring_report. On
 * the listener's thread; takes the runtime's lock and the HSM's status and cache locks for
 * microseconds each (the locks a HEALTH or STATS reply takes), never a ring thread's. Returns a
 * NUL-terminated malloc'd string (*len its length), or NULL when out of memory.
 */
static char *metrics_render(size_t *len)
{
    static const char *const states[3] = {"ok", "degraded", "unavailable"};
    struct text t = {malloc(16384), 0, 16384, 0};
    struct uring_runtime *rt;
    const char *reason = "";
    enum uring_health_state hs;
    struct uring_report_counters c; /* the numbers STATS also reports */
    int hsm_state;

    if (t.p == NULL)
        return NULL;
    rt = uring_runtime_get();
    hsm_state = uring_hsm_status(rt->hsm); /* read once: the scrape says one thing */
    hs = uring_report_health_state(rt, hsm_state, &reason);
    uring_report_counters_get(&c);
    family(&t, "coffer_build_info", "gauge", "Always 1; the labels say which cofferd this is.");
    put(&t, "coffer_build_info{version=\"%s\",protocol=\"%d\"} 1\n", COFFER_VERSION_STRING,
        COFFER_PROTO_VERSION);
    family(&t, "coffer_uptime_seconds", "gauge", "Seconds since cofferd started.");
    put(&t, "coffer_uptime_seconds %.3f\n", c.uptime);
    family(&t, "coffer_health", "gauge",
           "1 for the state HEALTH reports now (ok, degraded, unavailable), 0 for the others; "
           "see docs/observability.md.");
    for (int i = 0; i < 3; i++)
        put(&t, "coffer_health{state=\"%s\"} %d\n", states[i], (int)hs == i);
    render_jobs(&t);
    render_errors(&t);
    render_connections(&t, &c);
    render_keys(&t, &c);
    render_work(&t, &c);
    render_hsm(&t, rt->hsm, hsm_state);
    uring_runtime_put(rt);
    if (t.oom) {
        free(t.p);
        return NULL;
    }
    *len = t.len;
    return t.p;
}

/* ---- the listener ---- */

static struct MHD_Daemon *mhd;
static int listen_fd = -1;
static char unix_path[sizeof(((struct sockaddr_un *)0)->sun_path)];

static enum MHD_Result metrics_reply(struct MHD_Connection *conn, unsigned status, char *body,
                                     size_t len, const char *type)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    enum MHD_Result r;

    if (resp == NULL) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    r = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return r;
}

static enum MHD_Result metrics_text(struct MHD_Connection *conn, unsigned status, const char *msg)
{
    char *body = strdup(msg);
    return body != NULL ? metrics_reply(conn, status, body, strlen(body), "text/plain") : MHD_NO;
}

/* libmicrohttpd's thread: GET or HEAD /metrics; everything else 404 or 405. */
static enum MHD_Result metrics_handler(void *cls, struct MHD_Connection *conn, const char *url,
                                       const char *method, const char *version,
                                       const char *upload_data, size_t *upload_size, void **con_cls)
{
    char *body;
    size_t len = 0;

    (void)cls, (void)version, (void)upload_data;
    if (*con_cls == NULL) {
        *con_cls = conn; /* the headers: answer once the (empty) body is in */
        return MHD_YES;
    }
    if (*upload_size != 0) {
        *upload_size = 0; /* a body nobody asked for is dropped */
        return MHD_YES;
    }
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return metrics_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    if (strcmp(url, "/metrics") != 0)
        return metrics_text(conn, MHD_HTTP_NOT_FOUND, "cofferd serves /metrics only\n");
    if ((body = metrics_render(&len)) == NULL)
        return metrics_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    return metrics_reply(conn, MHD_HTTP_OK, body, len, "text/plain; version=0.0.4; charset=utf-8");
}

/* Split "HOST:PORT" / "[HOST]:PORT" into host (may be "") and port. 0 or -1. */
static int addr_split(const char *addr, char *host, size_t hostcap, char *port, size_t portcap)
{
    const char *colon, *h = addr, *hend;

    if (addr[0] == '[') {
        h = addr + 1;
        if ((hend = strchr(h, ']')) == NULL || hend[1] != ':')
            return -1;
        colon = hend + 1;
    } else {
        if ((colon = strrchr(addr, ':')) == NULL || memchr(addr, ':', (size_t)(colon - addr)))
            return -1; /* a bare IPv6 address needs brackets */
        hend = colon;
    }
    if ((size_t)(hend - h) >= hostcap || strlen(colon + 1) >= portcap || colon[1] == '\0')
        return -1;
    memcpy(host, h, (size_t)(hend - h));
    host[hend - h] = '\0';
    strcpy(port, colon + 1);
    for (const char *p = port; *p != '\0'; p++)
        if (*p < '0' || *p > '9')
            return -1;
    return atol(port) <= 65535 ? 0 : -1;
}

static int is_unix(const char *addr)
{
    return addr[0] == '/' || addr[0] == '.';
}

int uring_metrics_addr_valid(const char *addr)
{
    char host[256], port[8];
    if (is_unix(addr))
        return strlen(addr) < sizeof(unix_path);
    return addr_split(addr, host, sizeof(host), port, sizeof(port)) == 0;
}

/* A Unix socket at path (uring_listen_unix), removed again by uring_metrics_listen_stop. */
static int listen_unix(const char *path, char *err, size_t errlen)
{
    int fd = uring_listen_unix(path, 64);

    if (fd < 0) {
        snprintf(err, errlen, "--metrics-listen %s: %s", path, strerror(errno));
        return -1;
    }
    snprintf(unix_path, sizeof(unix_path), "%s", path);
    uring_log(URING_LOG_INFO, "metrics_listening", "path=%s url=%s", path, "/metrics");
    return fd;
}

static int listen_tcp(const char *addr, char *err, size_t errlen)
{
    char host[256], port[8], shown[INET6_ADDRSTRLEN];
    struct addrinfo hints, *res = NULL, *ai;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int fd = -1, e = 0, one = 1, bound_port;

    if (addr_split(addr, host, sizeof(host), port, sizeof(port)) != 0) {
        snprintf(err, errlen,
                 "--metrics-listen '%.200s': expected HOST:PORT, [IPV6]:PORT or a "
                 "Unix socket path",
                 addr);
        return -1;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    if ((e = getaddrinfo(host[0] != '\0' ? host : NULL, port, &hints, &res)) != 0) {
        snprintf(err, errlen, "--metrics-listen %.200s: %s", addr, gai_strerror(e));
        return -1;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 64) == 0)
            break;
        e = errno;
        close(fd);
        fd = -1;
        errno = e;
    }
    freeaddrinfo(res);
    if (fd < 0 || getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
        snprintf(err, errlen, "--metrics-listen %.200s: %s", addr, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, shown, sizeof(shown));
        bound_port = ntohs(s6->sin6_port);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &s4->sin_addr, shown, sizeof(shown));
        bound_port = ntohs(s4->sin_port);
    }
    uring_log(URING_LOG_INFO, "metrics_listening", "addr=%s port=%d url=%s", shown, bound_port,
              "/metrics");
    return fd;
}

int uring_metrics_listen_start(const char *addr, char *err, size_t errlen)
{
    listen_fd = is_unix(addr) ? listen_unix(addr, err, errlen) : listen_tcp(addr, err, errlen);
    if (listen_fd < 0)
        return COFFER_ERR_CONFIG;
    mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC, 0, NULL,
                           NULL, metrics_handler, NULL, MHD_OPTION_LISTEN_SOCKET, listen_fd,
                           MHD_OPTION_CONNECTION_LIMIT, (unsigned)URING_METRICS_CONNS,
                           MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)URING_METRICS_TIMEOUT_S,
                           MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)65536, MHD_OPTION_END);
    if (mhd == NULL) {
        snprintf(err, errlen, "--metrics-listen %.200s: libmicrohttpd did not start", addr);
        uring_metrics_listen_stop();
        return COFFER_ERR_INTERNAL;
    }
    return 0;
}

void uring_metrics_listen_stop(void)
{
    if (mhd != NULL) {
        MHD_quiesce_daemon(mhd); /* the listening socket stays ours: closed below */
        MHD_stop_daemon(mhd);    /* joins its thread */
    }
    mhd = NULL;
    if (listen_fd >= 0)
        close(listen_fd);
    listen_fd = -1;
    if (unix_path[0] != '\0')
        unlink(unix_path);
    unix_path[0] = '\0';
}
