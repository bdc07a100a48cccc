/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the benchmarks: timing, test data, starting and stopping cofferd. */
#include "bench_support.h"

#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *samples, size_t n)
{
    if (n == 0)
        return 0.0;
    qsort(samples, n, sizeof(*samples), cmp_double);
    return n % 2 ? samples[n / 2] : (samples[n / 2 - 1] + samples[n / 2]) / 2.0;
}

void bench_fill(void *buf, size_t n, unsigned seed)
{
    uint64_t x = 0x9e3779b97f4a7c15ull ^ seed;
    uint8_t *p = buf;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)x;
    }
}

static int try_connect(const char *path)
{
    struct sockaddr_un sa;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), ok;

    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

pid_t bench_daemon_start(const char *prog, char *const argv[], const char *sock,
                         const char *log_path)
{
    pid_t pid;

    fflush(NULL);
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 2);
        execv(prog, argv);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) {
        if (try_connect(sock))
            return pid;
        usleep(10000);
    }
    return -1;
}

void bench_daemon_stop(pid_t pid)
{
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}

ssize_t bench_src_read(void *ctx, void *buf, size_t cap)
{
    struct bench_src *s = ctx;
    size_t n = s->left < cap ? s->left : cap;
    memcpy(buf, s->block, n);
    s->left -= n;
    return (ssize_t)n;
}

int bench_sink_write(void *ctx, const void *buf, size_t len)
{
    (void)buf;
    *(size_t *)ctx += len;
    return 0;
}
