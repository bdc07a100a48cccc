/* SPDX-License-Identifier: Apache-2.0 */
/* Benchmarks cofferd against its --echo-baseline twin and a plain copy: throughput, jobs, RSS. */
/*
 * Environment: BENCH_MIB (bytes of the (a) and (b) runs, default 1024), BENCH_REPS (default 5),
 * BENCH_JOB_SECONDS (each (c) run, default 2), BENCH_ONLY (e.g. "ab"), BENCH_VERBOSE (print every
 * repetition of (a) and (b) too), BENCH_DAEMON_ARGS (extra
 * flags for both daemons alike, for tuning). (a) and (b) interleave their candidates in every
 * repetition so that a noisy neighbour hits them alike; the ratio is the median of the
 * per-repetition ratios. The CPU lines (user + system seconds per GiB, all threads) show where
 * the time goes when the wall clock is noisy.
 */
#include "bench_support.h"
#include "coffer_client.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define MIB      (1024.0 * 1024.0)
#define MAX_REPS 15

struct daemon {
    pid_t pid;
    char sock[512];
};

static char dir[256];
static size_t total_bytes; /* bytes of the streaming and file runs */
static double job_seconds = 2.0;
static int reps = 5;     /* BENCH_REPS: repetitions of (a) and (b), candidates interleaved */
static const char *only; /* BENCH_ONLY: the parts to run ("abc"; default all) */
static int verbose;      /* BENCH_VERBOSE: also every repetition of (a) and (b) */

static int want(char part)
{
    return only == NULL || strchr(only, part) != NULL;
}

static void die(const char *what, int r)
{
    fprintf(stderr, "bench_daemon: %s: %s\n", what, r != 0 ? coffer_client_strerror(r) : "");
    exit(1);
}

static void daemon_start(struct daemon *d, const char *name, int echo)
{
    char secrets[400], logp[600];
    /* BENCH_DAEMON_ARGS: extra flags for both daemons (tuning runs), split on spaces */
    char *argv[32], *extra = getenv("BENCH_DAEMON_ARGS"), *copy, *save = NULL;
    int argc = 0;

    snprintf(d->sock, sizeof(d->sock), "%s/%s.sock", dir, name);
    snprintf(secrets, sizeof(secrets), "%s/secrets", dir);
    snprintf(logp, sizeof(logp), "%s/%s.log", dir, name);
    copy = extra != NULL ? strdup(extra) : NULL;
    argv[argc++] = "cofferd";
    argv[argc++] = "--socket";
    argv[argc++] = d->sock;
    argv[argc++] = "--secrets-dir";
    argv[argc++] = secrets;
    argv[argc++] = "--log-level";
    argv[argc++] = "warn";
    argv[argc++] = echo ? "--echo-baseline" : "--encryption=on";
    for (char *a = copy != NULL ? strtok_r(copy, " ", &save) : NULL; a != NULL && argc < 31;
         a = strtok_r(NULL, " ", &save))
        argv[argc++] = a;
    argv[argc] = NULL;
    d->pid = bench_daemon_start(COFFER_BIN_DIR "/cofferd", argv, d->sock, logp);
    free(copy);
    if (d->pid < 0)
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

/* CPU seconds (user + system) the daemon has used so far, all threads. */
static double daemon_cpu(const struct daemon *d)
{
    char path[64], buf[1024];
    unsigned long long ut = 0, st = 0;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)d->pid);
    FILE *f = fopen(path, "r");
    size_t n = f != NULL ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f != NULL)
        fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* fields after the command name */
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0.0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* CPU seconds this process has used so far. */
static double self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

/* One measured run: MiB/s, and CPU seconds per GiB of the daemon and of this process. */
struct run {
    double mibs, cpu_daemon, cpu_client;
};

/* Medians over the repetitions of one candidate. */
struct runs {
    double mibs[MAX_REPS], cpu_daemon[MAX_REPS], cpu_client[MAX_REPS];
};

static void runs_put(struct runs *rs, int i, struct run r)
{
    rs->mibs[i] = r.mibs;
    rs->cpu_daemon[i] = r.cpu_daemon;
    rs->cpu_client[i] = r.cpu_client;
}

static double median_of(const double *v, int n)
{
    double tmp[MAX_REPS];
    memcpy(tmp, v, (size_t)n * sizeof(double));
    return bench_median(tmp, (size_t)n);
}

/* The median of the per-repetition ratios num/den (both measured back to back). */
static double ratio_of(const double *num, const double *den, int n)
{
    double q[MAX_REPS];
    for (int i = 0; i < n; i++)
        q[i] = num[i] / den[i];
    return bench_median(q, (size_t)n);
}

static double gib_of(size_t bytes)
{
    return (double)bytes / (MIB * 1024.0);
}

static void daemon_stop(struct daemon *d)
{
    bench_daemon_stop(d->pid);
}

/* ---- (a) streaming ---- */

static struct run bench_stream(const struct daemon *d)
{
    /* bench_src_read copies up to a whole frame (128 KiB) from it; page-aligned like a file's pages
     */
    static uint8_t block[128 * 1024] __attribute__((aligned(4096)));
    struct bench_src src = {block, total_bytes};
    struct coffer_job job = {COFFER_CLIENT_ENCRYPT, NULL, NULL, 0, NULL, 0, 0};
    struct coffer_result res = {0};
    struct run run;
    size_t out = 0;
    coffer_client *c = NULL;
    int r = coffer_client_connect(&c, d->sock, NULL, 0);

    bench_fill(block, sizeof(block), 1);
    if (r != 0)
        die("connect", r);
    double t0 = bench_now(), d0 = daemon_cpu(d), c0 = self_cpu();
    if ((r = coffer_client_stream(c, &job, bench_src_read, &src, bench_sink_write, &out, &res)) !=
        0)
        die("stream", r);
    run.mibs = (double)total_bytes / MIB / (bench_now() - t0);
    run.cpu_daemon = (daemon_cpu(d) - d0) / gib_of(total_bytes);
    run.cpu_client = (self_cpu() - c0) / gib_of(total_bytes);
    coffer_result_clear(&res);
    coffer_client_close(c);
    return run;
}

/* ---- (b) file to file ---- */

static struct run bench_file(const struct daemon *d, const char *in, const char *out)
{
    struct coffer_job job = {COFFER_CLIENT_ENCRYPT, NULL, NULL, 0, NULL, 0, 0};
    struct coffer_result res = {0};
    struct run run;
    coffer_client *c = NULL;
    int ifd = open(in, O_RDONLY), ofd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600), r;

    if ((r = coffer_client_connect(&c, d->sock, NULL, 0)) != 0)
        die("connect", r);
    double t0 = bench_now(), d0 = daemon_cpu(d), c0 = self_cpu();
    if ((r = coffer_client_file(c, &job, ifd, ofd, &res)) != 0)
        die("file job", r);
    run.mibs = (double)total_bytes / MIB / (bench_now() - t0);
    run.cpu_daemon = (daemon_cpu(d) - d0) / gib_of(total_bytes);
    run.cpu_client = (self_cpu() - c0) / gib_of(total_bytes);
    coffer_result_clear(&res);
    coffer_client_close(c);
    close(ifd);
    close(ofd);
    return run;
}

/*
 * The baseline of (b): a plain read+write loop over the same files. Its buffer is 256 KiB and
 * page-aligned, the fastest plain copy measured here: 1 MiB runs up to 2x slower (it no longer
 * stays in L2 between the read and the write), and a buffer a few bytes past a page boundary
 * makes the kernel's read copy 4x slower on AMD Zen (see uring_buf_alloc).
 */
static struct run bench_copy(const char *in, const char *out)
{
    static uint8_t buf[256 * 1024] __attribute__((aligned(4096)));
    struct run run = {0, 0, 0};
    int ifd = open(in, O_RDONLY), ofd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ssize_t n;

    double t0 = bench_now(), c0 = self_cpu();
    while ((n = read(ifd, buf, sizeof(buf))) > 0)
        if (write(ofd, buf, (size_t)n) != n)
            die("copy write", 0);
    run.mibs = (double)total_bytes / MIB / (bench_now() - t0);
    run.cpu_client = (self_cpu() - c0) / gib_of(total_bytes);
    close(ifd);
    close(ofd);
    return run;
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
        struct bench_src src = {block, sizeof(block)};
        struct coffer_job job = {COFFER_CLIENT_ENCRYPT, NULL, NULL, 0, NULL, 0, 0};
        struct coffer_result res = {0};
        size_t out = 0;
        double t0 = bench_now();
        if ((r = coffer_client_stream(c, &job, bench_src_read, &src, bench_sink_write, &out,
                                      &res)) != 0)
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
    only = getenv("BENCH_ONLY");
    verbose = getenv("BENCH_VERBOSE") != NULL;
    if (getenv("BENCH_REPS") != NULL)
        reps = atoi(getenv("BENCH_REPS"));
    if (reps < 1 || reps > MAX_REPS)
        reps = 5;
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
    printf("cofferd bench: %zu MiB runs, %d repetitions with the candidates interleaved, medians "
           "(ratio = median of the per-repetition ratios); 4 KiB jobs for %.1f s each\n",
           total_bytes >> 20, reps, job_seconds);

    if (want('a')) {
        struct runs echo_r, enc_r;
        for (int i = 0; i < reps; i++) {
            runs_put(&echo_r, i, bench_stream(&echo));
            runs_put(&enc_r, i, bench_stream(&enc));
            if (verbose)
                printf("    (a) rep %d: cofferd %5.0f MiB/s   echo %5.0f MiB/s   ratio %.2f\n",
                       i + 1, enc_r.mibs[i], echo_r.mibs[i], enc_r.mibs[i] / echo_r.mibs[i]);
        }
        printf(
            "(a) stream encrypt coffer-v1: %8.0f MiB/s   echo baseline: %8.0f MiB/s   ratio %.2f "
            "(target >= 0.80)\n",
            median_of(enc_r.mibs, reps), median_of(echo_r.mibs, reps),
            ratio_of(enc_r.mibs, echo_r.mibs, reps));
        printf(
            "    CPU s/GiB: cofferd %.2f, its client %.2f;   echo cofferd %.2f, its client %.2f\n",
            median_of(enc_r.cpu_daemon, reps), median_of(enc_r.cpu_client, reps),
            median_of(echo_r.cpu_daemon, reps), median_of(echo_r.cpu_client, reps));
    }
    if (want('b')) {
        struct runs copy_r, echo_r, enc_r;
        snprintf(in, sizeof(in), "%s/in.bin", dir);
        snprintf(out, sizeof(out), "%s/out.bin", dir);
        int ifd = open(in, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        bench_fill(block, sizeof(block), 7);
        for (size_t done = 0; done < total_bytes; done += sizeof(block))
            if (write(ifd, block, sizeof(block)) != (ssize_t)sizeof(block))
                die("input file", 0);
        /*
         * Clean before measuring: otherwise the kernel writes this 1 GiB back some 30 s later,
         * in the middle of the repetitions, and its flusher takes CPU from whichever candidate
         * runs then.
         */
        if (fsync(ifd) != 0)
            die("fsync of the input file", 0);
        close(ifd);
        for (int i = 0; i < reps; i++) {
            runs_put(&copy_r, i, bench_copy(in, out));
            runs_put(&echo_r, i, bench_file(&echo, in, out));
            runs_put(&enc_r, i, bench_file(&enc, in, out));
            if (verbose)
                printf(
                    "    (b) rep %d: cofferd %5.0f MiB/s %.2f CPU s/GiB   plain copy %5.0f MiB/s "
                    "%.2f CPU s/GiB   ratio %.2f\n",
                    i + 1, enc_r.mibs[i], enc_r.cpu_daemon[i], copy_r.mibs[i], copy_r.cpu_client[i],
                    enc_r.mibs[i] / copy_r.mibs[i]);
        }
        printf("(b) fd job encrypt file->file: %8.0f MiB/s   plain read+write: %8.0f MiB/s   ratio "
               "%.2f (target >= 0.80)   [echo fd job %.0f MiB/s]\n",
               median_of(enc_r.mibs, reps), median_of(copy_r.mibs, reps),
               ratio_of(enc_r.mibs, copy_r.mibs, reps), median_of(echo_r.mibs, reps));
        printf("    CPU s/GiB: cofferd %.2f;   plain copy %.2f;   echo cofferd %.2f\n",
               median_of(enc_r.cpu_daemon, reps), median_of(copy_r.cpu_client, reps),
               median_of(echo_r.cpu_daemon, reps));
        unlink(in);
        unlink(out);
    }

    static const int conns[] = {1, 16, 64};
    for (int i = 0; i < 3 && want('c'); i++) {
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
