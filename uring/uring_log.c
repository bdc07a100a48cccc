/* SPDX-License-Identifier: Apache-2.0 */
/* The structured stderr logger of cofferd. */
#include "uring_log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_level = URING_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int uring_log_level_parse(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

void uring_log_set_level(int level)
{
    atomic_store(&log_level, level);
}

int uring_log_enabled(int level)
{
    return level >= atomic_load(&log_level);
}

void uring_log(int level, const char *event, const char *fmt, ...)
{
    char line[2048];
    struct timespec ts;
    struct tm tm;
    size_t n;
    int k;
    va_list ap;

    if (!uring_log_enabled(level))
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(line, sizeof(line), "ts=%Y-%m-%dT%H:%M:%S", &tm);
    k = snprintf(line + n, sizeof(line) - n, ".%03ldZ level=%s event=%s", ts.tv_nsec / 1000000,
                 level_names[level & 3], event);
    if (k > 0)
        n += (size_t)k;
    if (fmt != NULL && fmt[0] != '\0' && n < sizeof(line) - 2) {
        line[n++] = ' ';
        va_start(ap, fmt);
        k = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
        va_end(ap);
        if (k > 0)
            n += (size_t)k;
    }
    if (n > sizeof(line) - 2)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    if (write(STDERR_FILENO, line, n) < 0) {
        /* nowhere left to report it */
    }
}

const char *uring_log_quote(const char *s, char *buf, unsigned long buflen)
{
    size_t o = 0;
    if (buflen < 8) {
        if (buflen > 0)
            buf[0] = '\0';
        return buf;
    }
    buf[o++] = '"';
    for (; s != NULL && *s != '\0' && o + 6 < buflen; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)ch;
        } else if (ch < 0x20 || ch >= 0x7f) {
            o += (size_t)snprintf(buf + o, buflen - o, "\\x%02x", ch);
        } else {
            buf[o++] = (char)ch;
        }
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}
