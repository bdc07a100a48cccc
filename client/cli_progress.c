/* SPDX-License-Identifier: Apache-2.0 */
/* Drawing the progress bar: percentage, bytes and throughput, rate-limited, on one stderr line. */
#include "cli_progress.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define PROGRESS_DELAY_NS    1000000000ll /* show after one second */
#define PROGRESS_INTERVAL_NS 100000000ll  /* at most ten redraws a second */
#define PROGRESS_BAR_WIDTH   24

static int progress_line_open; /* a bar was drawn and its line not ended */

static long long progress_ns_since(const struct timespec *a, const struct timespec *b)
{
    return (long long)(b->tv_sec - a->tv_sec) * 1000000000ll + (b->tv_nsec - a->tv_nsec);
}

/* "1.5 GiB": a byte count in the largest binary unit that keeps it at or above 1. */
static void progress_bytes(char *buf, size_t len, double v)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    size_t u = 0;

    while (v >= 1024.0 && u + 1 < sizeof(units) / sizeof(units[0])) {
        v /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%.0f %s", v, units[u]);
    else
        snprintf(buf, len, "%.1f %s", v, units[u]);
}

static void progress_draw(struct cli_progress *p, uint64_t done, const struct timespec *now)
{
    char line[160], cur[32], tot[32], rate[32];
    double secs = (double)progress_ns_since(&p->start, now) / 1e9;

    progress_bytes(cur, sizeof(cur), (double)done);
    progress_bytes(rate, sizeof(rate), secs > 0.0 ? (double)done / secs : 0.0);
    if (p->total > 0) {
        char bar[PROGRESS_BAR_WIDTH + 1];
        uint64_t shown = done > p->total ? p->total : done;
        int pct = (int)(shown * 100 / p->total);
        int fill = (int)(shown * PROGRESS_BAR_WIDTH / p->total);
        memset(bar, '#', (size_t)fill);
        memset(bar + fill, '.', (size_t)(PROGRESS_BAR_WIDTH - fill));
        bar[PROGRESS_BAR_WIDTH] = '\0';
        progress_bytes(tot, sizeof(tot), (double)p->total);
        snprintf(line, sizeof(line), "coffer: %s [%s] %3d%% %s / %s, %s/s", p->label, bar, pct, cur,
                 tot, rate);
    } else {
        snprintf(line, sizeof(line), "coffer: %s %s, %s/s", p->label, cur, rate);
    }
    fprintf(stderr, "\r%s\033[K", line);
    fflush(stderr);
    progress_line_open = 1;
    p->shown = 1;
    p->last = *now;
}

void cli_progress_start(struct cli_progress *p, enum cli_progress_mode mode, const char *label,
                        uint64_t total)
{
    memset(p, 0, sizeof(*p));
    p->enabled =
        mode == CLI_PROGRESS_ALWAYS || (mode == CLI_PROGRESS_AUTO && isatty(STDERR_FILENO));
    p->label = label;
    p->total = total;
    clock_gettime(CLOCK_MONOTONIC, &p->start);
    if (mode == CLI_PROGRESS_ALWAYS)
        progress_draw(p, 0, &p->start);
}

void cli_progress_update(struct cli_progress *p, uint64_t done)
{
    struct timespec now;

    if (!p->enabled)
        return;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (!p->shown && progress_ns_since(&p->start, &now) < PROGRESS_DELAY_NS &&
        p->total <= CLI_PROGRESS_BIG_INPUT)
        return;
    if (p->shown && progress_ns_since(&p->last, &now) < PROGRESS_INTERVAL_NS)
        return;
    progress_draw(p, done, &now);
}

void cli_progress_phase(struct cli_progress *p, const char *label, uint64_t total)
{
    p->label = label;
    p->total = total;
    clock_gettime(CLOCK_MONOTONIC, &p->start);
    p->last.tv_sec = 0;
    p->last.tv_nsec = 0;
}

void cli_progress_finish(struct cli_progress *p, uint64_t done, int ok)
{
    struct timespec now;

    if (!p->shown)
        return;
    if (ok) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        progress_draw(p, done, &now);
    }
    cli_progress_interrupt();
    p->shown = 0;
}

void cli_progress_interrupt(void)
{
    if (progress_line_open) {
        fputc('\n', stderr);
        fflush(stderr);
        progress_line_open = 0;
    }
}
