/* SPDX-License-Identifier: Apache-2.0 */
/* cofferd's structured log: one event per line on stderr, as logfmt or as a JSON object. */
#ifndef URING_LOG_H
#define URING_LOG_H

#include <stdarg.h>

enum uring_log_level {
    URING_LOG_DEBUG = 0,
    URING_LOG_INFO = 1,
    URING_LOG_WARN = 2,
    URING_LOG_ERROR = 3,
};

enum uring_log_format {
    URING_LOG_FORMAT_LOGFMT = 0, /* ts=... level=... event=... key=value */
    URING_LOG_FORMAT_JSON = 1,   /* {"ts":"...","level":"...","event":"...","key":value} */
};

/*
 * Every function here may be called from any thread at any time, ring threads included: the
 * level and format are atomics, and nothing allocates or takes a lock.
 */

/* 0 and the level for "debug", "info", "warn" or "error", else -1. */
int uring_log_level_parse(const char *name);
/* The lowest level logged from now on (SIGHUP may change it). Never fails. */
void uring_log_set_level(int level);
/* The format for "logfmt" or "json", else -1. */
int uring_log_format_parse(const char *name);
/* Later lines use the new format (SIGHUP may switch it). Never fails. */
void uring_log_set_format(int format);

/*
 * Log one event (any thread; never blocks beyond one write(2) to stderr). fmt is a space-separated
 * list of `key=VALUE` fields, where VALUE is printf text up to the next space (`n=%d`,
 * `path=%s`; a conversion's output may hold anything, spaces included) or a double-quoted
 * literal that may hold spaces and conversions (`detail=\"cannot start: %s\"`). Each value is
 * formatted on its own and then written as logfmt, quoted when it is empty or holds a space,
 * `"`, `=`, `\` or a byte outside printable ASCII (escaped as \" \\ \n \r \t or \xNN), or as a
 * JSON member (a number when the value is one numeric conversion, else a string; bytes that are
 * not UTF-8 escaped as \xNN text). The whole line goes out in one write(2), so lines from
 * different threads never interleave; a line is cut at URING_LOG_LINE bytes. Never pass key
 * material, PINs or plaintext. Event names and fields are listed in docs/observability.md.
 */
#define URING_LOG_LINE 4096
void uring_log(int level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* uring_log with the arguments as a va_list (the session's log hook). */
void uring_logv(int level, const char *event, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/*
 * Copy s (NULL: "") into buf (at most buflen - 1 bytes) and return buf. Kept for the callers that
 * format a peer's or the file system's text: quoting and escaping are uring_log's job, for every
 * value, whatever its source.
 */
const char *uring_log_quote(const char *s, char *buf, unsigned long buflen);

/*
 * The logfmt form of one value into buf (quoted and escaped as uring_log does), NUL-terminated,
 * cut to fit buflen. Returns buf. For tests and for uring_log itself.
 */
const char *uring_log_logfmt_value(const char *s, char *buf, unsigned long buflen);

#endif
