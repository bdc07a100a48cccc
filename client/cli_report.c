/* SPDX-License-Identifier: Apache-2.0 */
/* Error lines on stderr: "coffer: what failed: why[: detail]", sanitised for the terminal. */
#include "cli_report.h"

#include "cli_progress.h"
#include "coffer_error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define REPORT_LINE_MAX 2048

/* Replace control characters (ESC, CR, newlines...) so that no input can forge terminal output. */
static void report_sanitise(char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
            *s = '?';
}

static void report_emit(char *line)
{
    report_sanitise(line);
    cli_progress_interrupt();
    fprintf(stderr, "coffer: %s\n", line);
    fflush(stderr);
}

void cli_report_error(const char *what, int code, const char *detail)
{
    char line[REPORT_LINE_MAX];
    int has_detail = detail != NULL && detail[0] != '\0';

    snprintf(line, sizeof(line), "%s: %s%s%s", what, coffer_strerror(code), has_detail ? ": " : "",
             has_detail ? detail : "");
    report_emit(line);
}

void cli_report_line(const char *fmt, ...)
{
    char line[REPORT_LINE_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    report_emit(line);
}
