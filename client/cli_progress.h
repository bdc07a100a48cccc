/* SPDX-License-Identifier: Apache-2.0 */
/* A progress bar on stderr for long jobs, when stderr is a terminal. */
#ifndef CLI_PROGRESS_H
#define CLI_PROGRESS_H

#include "cli_args.h"

#include <stdint.h>
#include <time.h>

#define CLI_PROGRESS_BIG_INPUT (64ull << 20) /* a known size above this shows the bar at once */

struct cli_progress {
    int enabled;       /* the mode and the terminal allow a bar */
    int shown;         /* something was drawn (finish ends the line) */
    const char *label; /* "encrypting", "decrypting", ... */
    uint64_t total;    /* bytes expected, 0 when unknown */
    struct timespec start;
    struct timespec last; /* last redraw */
};

/*
 * Start. With CLI_PROGRESS_AUTO a bar appears only when stderr is a terminal and the job has run
 * for more than a second or total exceeds CLI_PROGRESS_BIG_INPUT; it is redrawn at most ten
 * times a second. CLI_PROGRESS_ALWAYS draws regardless (for tests), NEVER never.
 */
void cli_progress_start(struct cli_progress *p, enum cli_progress_mode mode, const char *label,
                        uint64_t total);
/* done bytes of total processed. Cheap when nothing is to be drawn. */
void cli_progress_update(struct cli_progress *p, uint64_t done);
/* Begin a new phase (velero-v1's second pass) with its own label and total. */
void cli_progress_phase(struct cli_progress *p, const char *label, uint64_t total);
/* Draw the last state and end the line (ok) or just end the line before an error message. */
void cli_progress_finish(struct cli_progress *p, uint64_t done, int ok);

/* End a bar's line, if one is open, so that an error message starts on a line of its own. */
void cli_progress_interrupt(void);

#endif
