/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the benchmarks: a monotonic clock, medians of repeated runs, starting cofferd.
 */
#ifndef BENCH_SUPPORT_H
#define BENCH_SUPPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/types.h>

/* Seconds on CLOCK_MONOTONIC. */
double bench_now(void);

/* The median of n samples (sorts them in place). */
double bench_median(double *samples, size_t n);

/* Fill buf with deterministic pseudo-random bytes (not for keys). */
void bench_fill(void *buf, size_t n, unsigned seed);

/*
 * Fork and exec prog with argv (NULL-terminated), its stderr truncated into log_path, and wait up
 * to 5 s until it accepts a connection on the AF_UNIX socket sock. Returns its pid, or -1 when it
 * could not be started or did not listen in time.
 */
pid_t bench_daemon_start(const char *prog, char *const argv[], const char *sock,
                         const char *log_path);

/* SIGTERM the daemon and wait for it. */
void bench_daemon_stop(pid_t pid);

/*
 * Client callbacks in libcoffer's shapes: bench_src_read hands out one block `left` more bytes
 * in total (the same block again each time); bench_sink_write counts bytes into a size_t.
 */
struct bench_src {
    const uint8_t *block;
    size_t left;
};
ssize_t bench_src_read(void *ctx, void *buf, size_t cap);
int bench_sink_write(void *ctx, const void *buf, size_t len);

#endif
