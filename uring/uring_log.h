/* SPDX-License-Identifier: Apache-2.0 */
/* cofferd's structured log: one `ts=... level=... event=... key=value` line per event on stderr. */
#ifndef URING_LOG_H
#define URING_LOG_H

enum uring_log_level {
    URING_LOG_DEBUG = 0,
    URING_LOG_INFO = 1,
    URING_LOG_WARN = 2,
    URING_LOG_ERROR = 3,
};

/* 0 and the level for "debug", "info", "warn" or "error", else -1. */
int uring_log_level_parse(const char *name);
void uring_log_set_level(int level);
int uring_log_enabled(int level);

/*
 * Log one event. fmt continues the line with `key=value` pairs (printf-style, no newline).
 * Values that come from a peer or the file system must go through uring_log_quote. The whole
 * line is written with one write(2), so lines from different threads never interleave. Never
 * pass key material, PINs or plaintext.
 */
void uring_log(int level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Quote s for a log value ("..." with \" \\ and non-printable bytes escaped) into buf. */
const char *uring_log_quote(const char *s, char *buf, unsigned long buflen);

#endif
