/* SPDX-License-Identifier: Apache-2.0 */
/* Benchmarks 4 KiB encrypt jobs through cofferd with the pkcs11 retriever (cache off and on)
 * against the Secret retriever, all in the same run. */
#include "bench_support.h"
#include "coffer_client.h"
#include "hsm_admin.h"
#include "hsm_client.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define REPS      5
#define MAX_CONNS 64
#define PIN       "bench-pin-5150"

struct daemon {
    const char *name;
    pid_t pid;
    char sock[512];
    const char *want; /* "pkcs11" or "secret": what every job's metadata must say */
};

static char dir[256], module[512], pin_file[600];
static double job_seconds = 1.5;
static int conns = 16;

static void die(const char *what, int r)
{
    fprintf(stderr, "bench_hsm: %s%s%s\n", what, r != 0 ? ": " : "",
            r != 0 ? coffer_client_strerror(r) : "");
    exit(1);
}

static const char *const module_candidates[] = {
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
};

static int run(char *const argv[])
{
    int status = 0;
    pid_t pid;
    fflush(NULL);
    if ((pid = fork()) == 0) {
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 1);
        execv(argv[0], argv);
        _exit(127);
    }
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* A SoftHSM2 token "bench" with the key-encryption key "bench-kek", in dir. */
static void token_setup(void)
{
    char path[700], text[1000];
    hsm_client *c = NULL;
    hsm_status st;
    FILE *f;

    for (size_t i = 0; i < sizeof(module_candidates) / sizeof(module_candidates[0]); i++)
        if (access(module_candidates[i], R_OK) == 0) {
            snprintf(module, sizeof(module), "%s", module_candidates[i]);
            break;
        }
    if (module[0] == '\0' || access("/usr/bin/softhsm2-util", X_OK) != 0) {
        printf("bench_hsm: SoftHSM2 is not installed (apt-get install softhsm2): nothing to do\n");
        exit(0);
    }
    snprintf(path, sizeof(path), "%s/tokens", dir);
    mkdir(path, 0700);
    snprintf(text, sizeof(text),
             "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n", path);
    snprintf(path, sizeof(path), "%s/softhsm2.conf", dir);
    if ((f = fopen(path, "w")) == NULL || fputs(text, f) < 0 || fclose(f) != 0)
        die("softhsm2.conf", 0);
    setenv("SOFTHSM2_CONF", path, 1);
    snprintf(pin_file, sizeof(pin_file), "%s/pin", dir);
    if ((f = fopen(pin_file, "w")) == NULL || fputs(PIN "\n", f) < 0 || fclose(f) != 0)
        die("pin file", 0);
    char *init[] = {"/usr/bin/softhsm2-util",
                    "--init-token",
                    "--free",
                    "--label",
                    "bench",
                    "--pin",
                    PIN,
                    "--so-pin",
                    "bench-so-pin",
                    NULL};
    if (run(init) != 0)
        die("softhsm2-util --init-token", 0);
    hsm_client_config cfg = {.module = module,
                             .token = "bench",
                             .pin = {pin_file, NULL},
                             .timeout_ms = 10000,
                             .threads = 1};
    if (hsm_client_open(&c, &cfg, &st) != 0 || hsm_admin_kek_create(c, "bench-kek", &st) != 0) {
        fprintf(stderr, "bench_hsm: creating the key-encryption key: %s\n", st.text);
        exit(1);
    }
    hsm_client_close(c);
}

static void daemon_start(struct daemon *d, int hsm, const char *cache_age)
{
    char secrets[400], logp[600];
    /* clang-format off */
    char *argv[] = {"cofferd", "--socket", d->sock, "--secrets-dir", secrets,
                    "--log-level", "warn",
                    "--hsm-module", module, "--hsm-token", "bench", "--hsm-key", "bench-kek",
                    "--hsm-pin-file", pin_file, "--hsm-cache-max-age", (char *)cache_age, NULL};
    /* clang-format on */

    if (!hsm)
        argv[7] = NULL; /* the Secret retriever: no --hsm-* flags */
    snprintf(d->sock, sizeof(d->sock), "%s/%s.sock", dir, d->name);
    snprintf(secrets, sizeof(secrets), "%s/secrets", dir);
    snprintf(logp, sizeof(logp), "%s/%s.log", dir, d->name);
    d->pid = bench_daemon_start(COFFER_BIN_DIR "/cofferd", argv, d->sock, logp);
    if (d->pid < 0)
        die("cofferd did not start", 0);
}

static void daemon_stop(struct daemon *d)
{
    bench_daemon_stop(d->pid);
}

/* ---- 4 KiB jobs ---- */

struct jobs_arg {
    const struct daemon *d;
    double deadline;
    unsigned long jobs;
};

static void *jobs_thread(void *p)
{
    struct jobs_arg *a = p;
    static uint8_t block[4096];
    char want[64];
    coffer_client *c = NULL;
    int r = coffer_client_connect(&c, a->d->sock, NULL, 0);
    if (r != 0)
        die("connect", r);
    snprintf(want, sizeof(want), "\"keyRetrieverType\":\"%s\"", a->d->want);
    while (bench_now() < a->deadline) {
        struct bench_src src = {block, sizeof(block)};
        struct coffer_job job = {COFFER_CLIENT_ENCRYPT, NULL, NULL, 0, NULL, 0, 0};
        struct coffer_result res = {0};
        size_t out = 0;
        if ((r = coffer_client_stream(c, &job, bench_src_read, &src, bench_sink_write, &out,
                                      &res)) != 0)
            die("4 KiB job", r);
        /* a job that fell back to the Secret would measure the wrong thing */
        if (res.metadata == NULL || strstr(res.metadata, want) == NULL ||
            strstr(res.metadata, "hsmFallback") != NULL) {
            fprintf(stderr, "bench_hsm: %s: unexpected metadata %s\n", a->d->name,
                    res.metadata != NULL ? res.metadata : "(none)");
            exit(1);
        }
        a->jobs++;
        coffer_result_clear(&res);
    }
    coffer_client_close(c);
    return NULL;
}

static double bench_jobs(const struct daemon *d)
{
    pthread_t th[MAX_CONNS];
    struct jobs_arg args[MAX_CONNS];
    double t0 = bench_now();
    unsigned long n = 0;
    for (int i = 0; i < conns; i++) {
        args[i] = (struct jobs_arg){d, t0 + job_seconds, 0};
        pthread_create(&th[i], NULL, jobs_thread, &args[i]);
    }
    for (int i = 0; i < conns; i++) {
        pthread_join(th[i], NULL);
        n += args[i].jobs;
    }
    return (double)n / (bench_now() - t0);
}

/* The daemon's STATS, for the cache's hits and misses. */
static void print_stats(const struct daemon *d)
{
    coffer_client *c = NULL;
    char *json = NULL;
    const char *p;
    unsigned long long hits = 0, misses = 0, fallbacks = 0;
    if (coffer_client_connect(&c, d->sock, NULL, 0) != 0 || coffer_client_stats(c, &json) != 0)
        die("stats", 0);
    coffer_client_close(c);
    if ((p = strstr(json, "\"backupHits\":")) != NULL)
        hits = strtoull(p + 13, NULL, 10);
    if ((p = strstr(json, "\"backupMisses\":")) != NULL)
        misses = strtoull(p + 15, NULL, 10);
    if ((p = strstr(json, "\"fallbacks\":")) != NULL)
        fallbacks = strtoull(p + 12, NULL, 10);
    printf("    %-9s data-key cache: %llu hits, %llu misses (HSM wraps); fallbacks %llu\n", d->name,
           hits, misses, fallbacks);
    free(json);
}

int main(void)
{
    struct daemon secret = {"secret", 0, "", "secret"}, off = {"hsm-off", 0, "", "pkcs11"},
                  on = {"hsm-on", 0, "", "pkcs11"};
    double r_secret[REPS], r_off[REPS], r_on[REPS];
    char path[600], cmd[700];
    uint8_t key[32];
    int fd;

    signal(SIGPIPE, SIG_IGN);
    if (getenv("BENCH_JOB_SECONDS") != NULL)
        job_seconds = atof(getenv("BENCH_JOB_SECONDS"));
    if (getenv("BENCH_CONNS") != NULL)
        conns = atoi(getenv("BENCH_CONNS"));
    if (conns < 1 || conns > MAX_CONNS)
        die("BENCH_CONNS must be 1..64", 0);
    snprintf(dir, sizeof(dir), "%s/coffer-bench-hsm.XXXXXX",
             getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
    if (mkdtemp(dir) == NULL)
        die("mkdtemp", 0);
    snprintf(path, sizeof(path), "%s/secrets/velero/coffer-key", dir);
    snprintf(cmd, sizeof(cmd), "mkdir -p %s", path);
    if (system(cmd) != 0)
        die("mkdir", 0);
    bench_fill(key, sizeof(key), 42);
    snprintf(path + strlen(path), sizeof(path) - strlen(path), "/encryptionKey");
    if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600)) < 0 ||
        write(fd, key, sizeof(key)) != (ssize_t)sizeof(key))
        die("key file", 0);
    close(fd);
    token_setup();

    daemon_start(&secret, 0, NULL);
    daemon_start(&off, 1, "0");
    daemon_start(&on, 1, "300");
    printf("cofferd HSM bench: 4 KiB coffer-v1 encrypt jobs, %d persistent connections, %.1f s "
           "per run, median of %d runs (interleaved); SoftHSM2 token, module %s\n",
           conns, job_seconds, REPS, module);
    for (int i = 0; i < REPS; i++) {
        r_secret[i] = bench_jobs(&secret);
        r_off[i] = bench_jobs(&off);
        r_on[i] = bench_jobs(&on);
        printf("    run %d: secret %8.0f   hsm cache off %8.0f   hsm cache on %8.0f jobs/s\n",
               i + 1, r_secret[i], r_off[i], r_on[i]);
    }
    double s = bench_median(r_secret, REPS), f = bench_median(r_off, REPS),
           n = bench_median(r_on, REPS);
    printf("Secret retriever:          %8.0f jobs/s\n", s);
    printf("HSM retriever, cache off:  %8.0f jobs/s   (%.2f x Secret; one HSM wrap per job)\n", f,
           f / s);
    printf("HSM retriever, cache on:   %8.0f jobs/s\n", n);
    printf("ratio cache on / cache off: %6.2f   (target >= 10)\n", n / f);
    printf("ratio cache on / Secret:    %6.2f   (target >= 0.80)\n", n / s);
    print_stats(&off);
    print_stats(&on);
    daemon_stop(&secret);
    daemon_stop(&off);
    daemon_stop(&on);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 1;
    return 0;
}
