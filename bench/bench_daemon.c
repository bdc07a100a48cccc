/* SPDX-License-Identifier: Apache-2.0 */
/* Benchmarks cofferd against its --echo-baseline twin and a plain copy: throughput, jobs, RSS. */
#include "bench_support.h"
#include "coffer_client.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define MIB  (1024.0 * 1024.0)
#define REPS 3

struct daemon {
    pid_t pid;
    char sock[512];
};

static char dir[256];
static size_t total_bytes; /* bytes of the streaming and file runs */
static double job_seconds = 2.0;

static void die(const char *what, int r)
{
    fprintf(stderr, "bench_daemon: %s: %s\n", what, r != 0 ? coffer_client_strerror(r) : "");
    exit(1);
}

static void daemon_start(struct daemon *d, const char *name, int echo)
{
    char secrets[400];
    snprintf(d->sock, sizeof(d->sock), "%s/%s.sock", dir, name);
    snprintf(secrets, sizeof(secrets), "%s/secrets", dir);
    d->pid = fork();
    if (d->pid == 0) {
        char logp[600];
        snprintf(logp, sizeof(logp), "%s/%s.log", dir, name);
        int fd = open(logp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 2);
        execl(COFFER_BIN_DIR "/cofferd", "cofferd", "--socket", d->sock, "--secrets-dir", secrets,
              "--log-level", "warn", echo ? "--echo-baseline" : "--encryption=on", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) {
        coffer_client *c = NULL;
        if (coffer_client_connect(&c, d->sock, NULL, 0) == 0) {
            coffer_client_close(c);
            return;
        }
        usleep(10000);
    }
    die("cofferd did not start", 0);
}

static long daemon_hwm_kib(const struct daemon *d)
{
    char path[64], line[256];
    long kib = -1;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)d->pid);
    FILE *f = fopen(path, "r");
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
            break;
    if (f != NULL)
        fclose(f);
    return kib;
}

static void daemon_stop(struct daemon *d)
{
    kill(d->pid, SIGTERM);
    waitpid(d->pid, NULL, 0);
}

/* ---- (a) streaming ---- */

struct src {
    const uint8_t *block;
    size_t left;
};

static ssize_t src_read(void *ctx, void *buf, size_t cap)
{
    struct src *s = ctx;
    size_t n = s->left < cap ? s->left : cap;
    memcpy(buf, s->block, n);
    s->left -= n;
    return (ssize_t)n;
}

static int sink_write(void *ctx, const void *buf, size_t len)
{
    (void)buf;
    *(size_t *)ctx += len;
    return 0;
}

static double bench_stream(const struct daemon *d)
{
    static uint8_t block[64 * 1024];
    double s[REPS];
    bench_fill(block, sizeof(block), 1);
    for (int i = 0; i < REPS; i++) {
        struct src src = {block, total_bytes};
        struct coffer_job job = {COFFER_CLIENT_ENCRYPT, NULL, NULL, 0, NULL, 0, 0};
        struct coffer_result res = {0};
        size_t out = 0;
        coffer_client *c = NULL;
        int r = coffer_client_connect(&c, d->sock, NULL, 0);
        if (r != 0)
            die("connect", r);
        double t0 = bench_now();
        if ((r = coffer_client_stream(c, &job, src_read, &src, sink_write, &out, &res)) != 0)
            die("stream", r);
        s[i] = (double)total_bytes / MIB / (bench_now() - t0);
        coffer_result_clear(&res);
        coffer_client_close(c);
    }
    return bench_median(s, REPS);
}

/* ---- (b) file to file ---- */

static double bench_file(const struct daemon *d, const char *in, const char *out)
{
    double s[REPS];
    for (int i = 0; i < REPS; i++) {
        struct coffer_job job = {COFFER_CLIENT_ENCRYPT, NULL, NULL, 0, NULL, 0, 0};
        struct coffer_result res = {0};
        coffer_client *c = NULL;
        int ifd = open(in, O_RDONLY), ofd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600), r;
        if ((r = coffer_client_connect(&c, d->sock, NULL, 0)) != 0)
            die("connect", r);
        double t0 = bench_now();
        if ((r = coffer_client_file(c, &job, ifd, ofd, &res)) != 0)
            die("file job", r);
        s[i] = (double)total_bytes / MIB / (bench_now() - t0);
        coffer_result_clear(&res);
        coffer_client_close(c);
        close(ifd);
        close(ofd);
    }
    return bench_median(s, REPS);
}

static double bench_copy(const char *in, const char *out)
{
    static uint8_t buf[256 * 1024];
    double s[REPS];
    for (int i = 0; i < REPS; i++) {
        int ifd = open(in, O_RDONLY), ofd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        double t0 = bench_now();
        ssize_t n;
        while ((n = read(ifd, buf, sizeof(buf))) > 0)
            if (write(ofd, buf, (size_t)n) != n)
                die("copy write", 0);
        s[i] = (double)total_bytes / MIB / (bench_now() - t0);
        close(ifd);
        close(ofd);
    }
    return bench_median(s, REPS);
}

/* ---- (c) 4 KiB jobs ---- */

struct jobs_arg {
    const struct daemon *d;
    double deadline;
    double *lat;
    size_t nlat, cap;
};

static void *jobs_thread(void *p)
{
    struct jobs_arg *a = p;
    static uint8_t block[4096];
    coffer_client *c = NULL;
    int r = coffer_client_connect(&c, a->d->sock, NULL, 0);
    if (r != 0)
        die("connect", r);
    while (bench_now() < a->deadline) {
        struct src src = {block, sizeof(block)};
        struct coffer_job job = {COFFER_CLIENT_ENCRYPT, NULL, NULL, 0, NULL, 0, 0};
        struct coffer_result res = {0};
        size_t out = 0;
        double t0 = bench_now();
        if ((r = coffer_client_stream(c, &job, src_read, &src, sink_write, &out, &res)) != 0)
            die("4 KiB job", r);
        if (a->nlat == a->cap) {
            a->cap = a->cap * 2 + 1024;
            a->lat = realloc(a->lat, a->cap * sizeof(double));
        }
        a->lat[a->nlat++] = bench_now() - t0;
        coffer_result_clear(&res);
    }
    coffer_client_close(c);
    return NULL;
}

static int cmp_d(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

static double bench_jobs(const struct daemon *d, int conns, double *p50, double *p99)
{
    pthread_t th[64];
    struct jobs_arg args[64];
    double t0 = bench_now(), *all;
    size_t n = 0, k = 0;
    for (int i = 0; i < conns; i++) {
        args[i] = (struct jobs_arg){d, t0 + job_seconds, NULL, 0, 0};
        pthread_create(&th[i], NULL, jobs_thread, &args[i]);
    }
    for (int i = 0; i < conns; i++) {
        pthread_join(th[i], NULL);
        n += args[i].nlat;
    }
    double elapsed = bench_now() - t0;
    all = malloc((n + 1) * sizeof(double));
    for (int i = 0; i < conns; i++) {
        memcpy(all + k, args[i].lat, args[i].nlat * sizeof(double));
        k += args[i].nlat;
        free(args[i].lat);
    }
    qsort(all, n, sizeof(double), cmp_d);
    *p50 = n ? all[n / 2] * 1e6 : 0;
    *p99 = n ? all[(size_t)((double)n * 0.99)] * 1e6 : 0;
    free(all);
    return (double)n / elapsed;
}

int main(int argc, char **argv)
{
    struct daemon enc, echo;
    char path[512], in[512], out[512];
    const char *mib = getenv("BENCH_MIB");
    uint8_t key[32];
    static uint8_t block[1 << 20];
    (void)argc;
    (void)argv;

    signal(SIGPIPE, SIG_IGN);
    total_bytes = (size_t)(mib != NULL ? atol(mib) : 1024) << 20;
    if (getenv("BENCH_JOB_SECONDS") != NULL)
        job_seconds = atof(getenv("BENCH_JOB_SECONDS"));
    snprintf(dir, sizeof(dir), "%s/coffer-bench.XXXXXX",
             getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
    if (mkdtemp(dir) == NULL)
        die("mkdtemp", 0);
    snprintf(path, sizeof(path), "%s/secrets/velero/coffer-key", dir);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "mkdir -p %s", path);
    if (system(cmd) != 0)
        die("mkdir", 0);
    bench_fill(key, sizeof(key), 42);
    snprintf(path + strlen(path), sizeof(path) - strlen(path), "/encryptionKey");
    int kfd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (kfd < 0 || write(kfd, key, sizeof(key)) != (ssize_t)sizeof(key))
        die("key file", 0);
    close(kfd);

    daemon_start(&enc, "cofferd", 0);
    daemon_start(&echo, "echo", 1);
    printf("cofferd bench: %zu MiB runs, median of %d; 4 KiB jobs for %.1f s each\n",
           total_bytes >> 20, REPS, job_seconds);

    double a_echo = bench_stream(&echo), a_enc = bench_stream(&enc);
    printf("(a) stream encrypt coffer-v1: %8.0f MiB/s   echo baseline: %8.0f MiB/s   ratio %.2f "
           "(target >= 0.80)\n",
           a_enc, a_echo, a_enc / a_echo);

    snprintf(in, sizeof(in), "%s/in.bin", dir);
    snprintf(out, sizeof(out), "%s/out.bin", dir);
    int ifd = open(in, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    bench_fill(block, sizeof(block), 7);
    for (size_t done = 0; done < total_bytes; done += sizeof(block))
        if (write(ifd, block, sizeof(block)) != (ssize_t)sizeof(block))
            die("input file", 0);
    close(ifd);
    double b_copy = bench_copy(in, out), b_echo = bench_file(&echo, in, out),
           b_enc = bench_file(&enc, in, out);
    printf("(b) fd job encrypt file->file: %8.0f MiB/s   plain read+write: %8.0f MiB/s   ratio "
           "%.2f (target >= 0.80)   [echo fd job %.0f MiB/s]\n",
           b_enc, b_copy, b_enc / b_copy, b_echo);
    unlink(in);
    unlink(out);

    static const int conns[] = {1, 16, 64};
    for (int i = 0; i < 3; i++) {
        double e50, e99, c50, c99;
        double re = bench_jobs(&echo, conns[i], &e50, &e99);
        double rc = bench_jobs(&enc, conns[i], &c50, &c99);
        printf("(c) 4 KiB jobs, %2d conns: %8.0f jobs/s (p50 %6.0f us, p99 %6.0f us)   echo: "
               "%8.0f jobs/s (p50 %6.0f us, p99 %6.0f us)   ratio %.2f%s\n",
               conns[i], rc, c50, c99, re, e50, e99, rc / re,
               conns[i] == 16 ? " (target >= 0.50)" : "");
    }
    long hwm = daemon_hwm_kib(&enc), ehwm = daemon_hwm_kib(&echo);
    printf("(d) cofferd peak RSS (VmHWM) %.1f MiB (echo baseline %.1f MiB); target <= %.0f MiB "
           "(64 MiB + 1 MiB x 64 connections)\n",
           (double)hwm / 1024.0, (double)ehwm / 1024.0, 64.0 + 64.0);
    daemon_stop(&enc);
    daemon_stop(&echo);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 1;
    return 0;
}
