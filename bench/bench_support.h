/* SPDX-License-Identifier: Apache-2.0 */
/* Timing helpers shared by the benchmarks: a monotonic clock and medians of repeated runs. */
#ifndef BENCH_SUPPORT_H
#define BENCH_SUPPORT_H

#include <stddef.h>

/* Seconds on CLOCK_MONOTONIC. */
double bench_now(void);

/* The median of n samples (sorts them in place). */
double bench_median(double *samples, size_t n);

/* Fill buf with deterministic pseudo-random bytes (not for keys). */
void bench_fill(void *buf, size_t n, unsigned seed);

#endif
