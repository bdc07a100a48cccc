/* SPDX-License-Identifier: Apache-2.0 */
/* Timing helpers shared by the benchmarks. */
#include "bench_support.h"

#include <stdint.h>
#include <stdlib.h>
#include <time.h>

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
