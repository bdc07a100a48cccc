/* SPDX-License-Identifier: Apache-2.0 */
/* cofferd's /metrics: the real daemon scraped with libcurl, checked by promtool and by counting. */
#include "coffer_client.h"
#include "coffer_error.h"
#include "test_daemon.h"
#include "test_http.h"
#include "test_support.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

static char *tmp;
static char secrets[600];
static struct ts_daemon main_d; /* --metrics-listen 127.0.0.1:0 */
static int main_port;

#define URING_STALL_N 4 /* stalled scrape connections (the listener allows 16) */

/* ---- helpers ---- */

static int daemon_start(struct ts_daemon *d, const char *name, ...)
{
    char *flags[] = {"--secrets-dir", secrets, "--workers", "2", "--io-timeout", "30", NULL};
    va_list ap;
    int r;

    ts_daemon_paths(d, tmp, name);
    va_start(ap, name);
    r = ts_daemon_vstart(d, flags, NULL, 1000, ap);
    va_end(ap);
    assert_true(r != -1);
    if (r == TS_DAEMON_TIMEOUT)
        fail_msg("cofferd did not start (see %s)", d->log);
    return r;
}

/* Wait until d's log holds needle (cofferd starts the metrics listener after its socket). */
static void wait_logged(const struct ts_daemon *d, const char *needle)
{
    for (int i = 0; i < 1000; i++) {
        if (ts_daemon_log_has(d, needle))
            return;
        usleep(10000);
    }
    fail_msg("no %s in %s", needle, d->log);
}

/* The port cofferd logged in its metrics_listening event. */
static int logged_port(const struct ts_daemon *d)
{
    size_t n = 0;
    char *text, *p;
    int port = -1;

    wait_logged(d, "event=metrics_listening");
    text = (char *)ts_read_file(d->log, &n);
    if (text != NULL && (p = strstr(text, "event=metrics_listening")) != NULL &&
        (p = strstr(p, " port=")) != NULL)
        port = atoi(p + 6);
    free(text);
    if (port <= 0)
        fail_msg("no port in the metrics_listening event of %s", d->log);
    return port;
}

static char *scrape_port(int port)
{
    char url[128];
    long status = 0;
    char *text;
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", port);
    text = ts_http("GET", url, NULL, &status);
    assert_int_equal(status, 200);
    return text;
}

static void must_have(const char *text, const char *series)
{
    if (ts_metric(text, series) < 0)
        fail_msg("no sample %s", series);
}

static coffer_client *client(const struct ts_daemon *d)
{
    coffer_client *c = NULL;
    char msg[256];
    int r = coffer_client_connect(&c, d->sock, msg, sizeof(msg));
    if (r != 0)
        fail_msg("connect %s: %s (%s)", d->sock, coffer_client_strerror(r), msg);
    return c;
}

static int run_stream(const struct ts_daemon *d, int op, const uint8_t *in, size_t inlen,
                      struct ts_membuf *out, struct coffer_result *res)
{
    struct coffer_job job = {op, NULL, NULL, 0, NULL, 0, 0};
    struct ts_membuf src = {(uint8_t *)in, inlen, 0, inlen};
    coffer_client *c = client(d);
    int r = coffer_client_stream(c, &job, ts_membuf_read, &src, ts_membuf_write, out, res);
    coffer_client_close(c);
    return r;
}

#define ENC_OK   "coffer_jobs_total{op=\"encrypt\",format=\"coffer-v1\",result=\"ok\"}"
#define DEC_OK   "coffer_jobs_total{op=\"decrypt\",format=\"coffer-v1\",result=\"ok\"}"
#define DEC_ERR  "coffer_jobs_total{op=\"decrypt\",format=\"coffer-v1\",result=\"error\"}"
#define TAMPERED "coffer_errors_total{code=\"TAMPERED\"}"
#define ENC_IN   "coffer_job_bytes_in_total{op=\"encrypt\"}"
#define ENC_OUT  "coffer_job_bytes_out_total{op=\"encrypt\"}"
#define DEC_IN   "coffer_job_bytes_in_total{op=\"decrypt\"}"
#define DEC_OUT  "coffer_job_bytes_out_total{op=\"decrypt\"}"
#define ENC_N    "coffer_job_duration_seconds_count{op=\"encrypt\",result=\"ok\"}"
#define ENC_INF  "coffer_job_duration_seconds_bucket{op=\"encrypt\",result=\"ok\",le=\"+Inf\"}"
#define DEC_EN   "coffer_job_duration_seconds_count{op=\"decrypt\",result=\"error\"}"
#define KEYREQ   "coffer_key_requests_total"
#define CONNS    "coffer_connections_total"

/* ---- tests ---- */

/* The exposition passes promtool, and every family the issue names is there. */
static void test_format(void **state)
{
    char *text = scrape_port(main_port);
    static const char *const families[] = {"coffer_jobs_total",
                                           "coffer_job_bytes_in_total",
                                           "coffer_job_bytes_out_total",
                                           "coffer_job_duration_seconds",
                                           "coffer_errors_total",
                                           "coffer_connections_active",
                                           "coffer_connections_refused_total",
                                           "coffer_key_requests_total",
                                           "coffer_secret_key_loads_total",
                                           "coffer_hsm_status",
                                           "coffer_hsm_fallbacks_total",
                                           "coffer_hsm_data_key_cache_total",
                                           "coffer_secmem_lock_failures_total",
                                           "coffer_health"};
    (void)state;
    ts_promtool_check(text, tmp, "format");
    for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
        char help[128], type[128];
        snprintf(help, sizeof(help), "# HELP %s ", families[i]);
        snprintf(type, sizeof(type), "# TYPE %s ", families[i]);
        if (strstr(text, help) == NULL || strstr(text, type) == NULL)
            fail_msg("%s has no HELP or TYPE line", families[i]);
    }
    must_have(text, "coffer_health{state=\"ok\"}");
    assert_true(ts_metric(text, "coffer_health{state=\"ok\"}") == 1);
    assert_true(ts_metric(text, "coffer_hsm_configured") == 0);
    must_have(text, "coffer_connections_refused_total{reason=\"busy\"}");
    must_have(text, "coffer_hsm_fallbacks_total{reason=\"HSM_TIMEOUT\"}");
    must_have(text, "coffer_errors_total{code=\"HSM_UNAVAILABLE\"}");
    must_have(text,
              "coffer_job_duration_seconds_bucket{op=\"decrypt\",result=\"ok\",le=\"0.001\"}");
    free(text);
}

/* The counters move with the jobs: encrypts, a restore, a tampered restore and its error code. */
static void test_counters_move(void **state)
{
    char *before, *after;
    uint8_t *pt = malloc(100000);
    struct ts_membuf ct1 = {0}, ct2 = {0}, dec = {0}, bad = {0};
    struct coffer_result res = {0};
    (void)state;

    ts_fill(pt, 100000, 7);
    before = scrape_port(main_port);
    assert_int_equal(run_stream(&main_d, COFFER_CLIENT_ENCRYPT, pt, 1000, &ct1, &res), 0);
    coffer_result_clear(&res);
    assert_int_equal(run_stream(&main_d, COFFER_CLIENT_ENCRYPT, pt, 100000, &ct2, &res), 0);
    coffer_result_clear(&res);
    assert_int_equal(run_stream(&main_d, COFFER_CLIENT_DECRYPT, ct2.p, ct2.len, &dec, &res), 0);
    coffer_result_clear(&res);
    assert_int_equal(dec.len, 100000);
    ct1.p[ct1.len - 20] ^= 1; /* a flipped bit in the last chunk */
    assert_int_equal(run_stream(&main_d, COFFER_CLIENT_DECRYPT, ct1.p, ct1.len, &bad, &res),
                     COFFER_ERR_TAMPERED);
    coffer_result_clear(&res);
    after = scrape_port(main_port);
    ts_promtool_check(after, tmp, "moved");

    assert_true(ts_metric(after, ENC_OK) == ts_metric(before, ENC_OK) + 2);
    assert_true(ts_metric(after, DEC_OK) == ts_metric(before, DEC_OK) + 1);
    assert_true(ts_metric(after, DEC_ERR) == ts_metric(before, DEC_ERR) + 1);
    assert_true(ts_metric(after, TAMPERED) == ts_metric(before, TAMPERED) + 1);
    assert_true(ts_metric(after, ENC_IN) == ts_metric(before, ENC_IN) + 101000);
    assert_true(ts_metric(after, ENC_OUT) ==
                ts_metric(before, ENC_OUT) + (double)(ct1.len + ct2.len));
    /* the tampered restore read all its input; the good one all of it too */
    assert_true(ts_metric(after, DEC_IN) ==
                ts_metric(before, DEC_IN) + (double)(ct1.len + ct2.len));
    assert_true(ts_metric(after, DEC_OUT) >= ts_metric(before, DEC_OUT) + 100000);
    assert_true(ts_metric(after, ENC_N) == ts_metric(before, ENC_N) + 2);
    assert_true(ts_metric(after, ENC_INF) == ts_metric(after, ENC_N));
    assert_true(ts_metric(after, DEC_EN) == ts_metric(before, DEC_EN) + 1);
    /* both restores asked the Secret loader for the key their header names */
    assert_true(ts_metric(after, KEYREQ) == ts_metric(before, KEYREQ) + 2);
    assert_true(ts_metric(after, "coffer_secret_key_loads_total{result=\"loaded\"}") +
                    ts_metric(after, "coffer_secret_key_loads_total{result=\"cache_hit\"}") >=
                ts_metric(before, "coffer_secret_key_loads_total{result=\"loaded\"}") +
                    ts_metric(before, "coffer_secret_key_loads_total{result=\"cache_hit\"}") + 2);
    assert_true(ts_metric(after, CONNS) == ts_metric(before, CONNS) + 4);
    assert_true(ts_metric(after, "coffer_connections_active") >= 0);
    free(before), free(after), free(pt), free(ct1.p), free(ct2.p), free(dec.p), free(bad.p);
}

/* Only GET and HEAD of /metrics. */
static void test_http_errors(void **state)
{
    char url[128];
    long status = 0;
    char *body;
    (void)state;
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/other", main_port);
    free(ts_http("GET", url, NULL, &status));
    assert_int_equal(status, 404);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", main_port);
    free(ts_http("POST", url, NULL, &status));
    assert_int_equal(status, 405);
    body = ts_http("GET", url, NULL, &status);
    assert_int_equal(status, 200);
    free(body);
}

/* A scrape client that stalls mid-request holds no ring thread: jobs and HEALTH go on. */
static void test_stalled_scraper(void **state)
{
    struct sockaddr_in sa;
    int fds[URING_STALL_N];
    uint8_t pt[5000];
    struct ts_membuf ct = {0};
    struct coffer_result res = {0};
    char *text = NULL, *reply = NULL;
    coffer_client *c;
    (void)state;

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)main_port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < URING_STALL_N; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fds[i] >= 0);
        assert_int_equal(connect(fds[i], (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_true(write(fds[i], "GET /metr", 9) == 9); /* and then nothing */
    }
    ts_fill(pt, sizeof(pt), 3);
    assert_int_equal(run_stream(&main_d, COFFER_CLIENT_ENCRYPT, pt, sizeof(pt), &ct, &res), 0);
    c = client(&main_d);
    assert_int_equal(coffer_client_health(c, &reply), 0);
    coffer_client_close(c);
    assert_non_null(strstr(reply, "\"status\":\"ok\""));
    for (int i = 0; i < URING_STALL_N; i++)
        close(fds[i]);
    text = scrape_port(main_port); /* and the listener still answers */
    assert_true(ts_metric(text, ENC_OK) >= 1);
    free(text), free(reply), free(ct.p);
    coffer_result_clear(&res);
}

/* Scrapes in a loop on another thread while jobs run: both always succeed. */
struct scraper {
    atomic_int stop; /* both threads read and write these (ThreadSanitizer) */
    atomic_int n;
};

static void *scrape_loop(void *p)
{
    struct scraper *s = p;
    while (!s->stop) {
        char *text = scrape_port(main_port);
        if (ts_metric(text, "coffer_health{state=\"ok\"}") == 1)
            s->n++;
        free(text);
    }
    return NULL;
}

static void test_scrape_during_jobs(void **state)
{
    struct scraper s;
    atomic_init(&s.stop, 0);
    atomic_init(&s.n, 0);
    pthread_t th;
    uint8_t *pt = malloc(300000);
    (void)state;
    ts_fill(pt, 300000, 9);
    assert_int_equal(pthread_create(&th, NULL, scrape_loop, &s), 0);
    for (int i = 0; i < 10; i++) {
        struct ts_membuf ct = {0};
        struct coffer_result res = {0};
        assert_int_equal(run_stream(&main_d, COFFER_CLIENT_ENCRYPT, pt, 300000, &ct, &res), 0);
        coffer_result_clear(&res);
        free(ct.p);
    }
    while (s.n < 3)
        usleep(10000);
    s.stop = 1;
    pthread_join(th, NULL);
    free(pt);
}

/* A Unix socket path: mode 0660, the refusals counted, the file removed at exit. */
static struct ts_daemon unix_d; /* stopped by teardown when a test failed */

static void test_unix_socket(void **state)
{
    struct ts_daemon *d = &unix_d;
    char path[700], *text;
    long status = 0;
    struct stat st;
    coffer_client *c = NULL;
    char msg[256];
    (void)state;

    snprintf(path, sizeof(path), "%s/metrics.sock", tmp);
    /* uid 4242 only: this test's connections are refused as not_allowed */
    assert_int_equal(daemon_start(d, "unix", "--metrics-listen", path, "--allow-uid", "4242", NULL),
                     0);
    wait_logged(d, "event=metrics_listening");
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0660);
    assert_int_equal(coffer_client_connect(&c, d->sock, msg, sizeof(msg)), COFFER_ERR_PERMISSION);
    text = ts_http("GET", "http://localhost/metrics", path, &status);
    assert_int_equal(status, 200);
    ts_promtool_check(text, tmp, "unix");
    /* ts_daemon_vstart's own probe connections were refused too */
    assert_true(ts_metric(text, "coffer_connections_refused_total{reason=\"not_allowed\"}") >= 1);
    assert_true(ts_metric(text, "coffer_connections_total") == 0);
    free(text);
    assert_int_equal(ts_daemon_stop(d), 0);
    assert_int_not_equal(access(path, F_OK), 0);
}

/* Bad --metrics-listen values stop cofferd at start with exit 2 and a sentence. */
static void test_bad_addresses(void **state)
{
    static const char *const bad[] = {"nonsense", "127.0.0.1",   "127.0.0.1:99999",
                                      "::1:80",   "127.0.0.1:x", "[::1]"};
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct ts_daemon d = {0};
        char name[32];
        snprintf(name, sizeof(name), "bad%zu", i);
        assert_int_equal(daemon_start(&d, name, "--metrics-listen", bad[i], NULL), 2);
        assert_true(ts_daemon_log_has(&d, "invalid value for --metrics-listen"));
    }
}

static int setup(void **state)
{
    char path[800];
    uint8_t key[32];
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    ts_http_init();
    tmp = ts_tmpdir();
    snprintf(secrets, sizeof(secrets), "%s/secrets", tmp);
    snprintf(path, sizeof(path), "%s/velero/coffer-key", secrets);
    char *mk[] = {"/bin/mkdir", "-p", path, NULL};
    assert_int_equal(ts_run(mk, NULL, NULL, NULL, NULL), 0);
    ts_fill(key, sizeof(key), 99);
    snprintf(path, sizeof(path), "%s/velero/coffer-key/encryptionKey", secrets);
    assert_int_equal(ts_write_file(path, key, sizeof(key)), 0);
    if (daemon_start(&main_d, "main", "--metrics-listen", "127.0.0.1:0", NULL) != 0)
        return -1;
    main_port = logged_port(&main_d);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    int r = ts_daemon_stop(&main_d);
    if (unix_d.pid > 0)
        ts_daemon_stop(&unix_d);
    ts_http_cleanup();
    if (r != 0) {
        fprintf(stderr, "cofferd exited %d (see %s)\n", r, main_d.log);
        return -1;
    }
    if (getenv("COFFER_TEST_KEEP") == NULL)
        ts_rmtree(tmp);
    free(tmp);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_counters_move),
        cmocka_unit_test(test_http_errors),
        cmocka_unit_test(test_stalled_scraper),
        cmocka_unit_test(test_scrape_during_jobs),
        cmocka_unit_test(test_unix_socket),
        cmocka_unit_test(test_bad_addresses),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
