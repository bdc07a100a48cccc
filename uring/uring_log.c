/* SPDX-License-Identifier: Apache-2.0 */
/* The structured stderr logger of cofferd: logfmt or JSON lines, one write(2) per event. */
#include "uring_log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_FIELDS 40
#define ARENA      URING_LOG_LINE /* bytes of all values of one event */

static atomic_int log_level = URING_LOG_INFO;
static atomic_int log_format = URING_LOG_FORMAT_LOGFMT;

static const char *const level_names[] = {"debug", "info", "warn", "error"};
static const char *const format_names[] = {"logfmt", "json"};

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

static int log_enabled(int level)
{
    return level >= atomic_load(&log_level);
}

int uring_log_format_parse(const char *name)
{
    for (int i = 0; i < 2; i++)
        if (strcmp(name, format_names[i]) == 0)
            return i;
    return -1;
}

void uring_log_set_format(int format)
{
    atomic_store(&log_format, format == URING_LOG_FORMAT_JSON ? format : URING_LOG_FORMAT_LOGFMT);
}

/* ---- one event's fields ---- */

struct field {
    char key[48];
    const char *value; /* in the arena */
    int numeric;       /* the value is one numeric conversion's output */
};

struct event {
    struct field f[MAX_FIELDS];
    int n;
    char arena[ARENA];
    size_t used;
};

/* Append n bytes to the value being built (cut when the arena is full). */
static void ev_put(struct event *e, const char *s, size_t n)
{
    if (n > ARENA - 1 - e->used)
        n = ARENA - 1 - e->used;
    memcpy(e->arena + e->used, s, n);
    e->used += n;
}

/*
 * Format one conversion at *pp (just past '%') with the next arguments; returns 1 when it was a
 * numeric one. printf's own checks (the format attribute) already matched arguments to fmt.
 */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
static int ev_conv(struct event *e, const char **pp, va_list *ap)
{
    char spec[32], out[ARENA];
    const char *p = *pp;
    size_t sl = 0;
    int n = 0, numeric = 0;
    enum { L_NONE, L_HH, L_H, L_L, L_LL, L_Z, L_J, L_T, L_BIG } len = L_NONE;

    spec[sl++] = '%';
    while (*p != '\0' && strchr("-+ #0'", *p) != NULL && sl < 8)
        spec[sl++] = *p++;
    for (int part = 0; part < 2; part++) { /* width, then .precision */
        if (part == 1) {
            if (*p != '.')
                break;
            spec[sl++] = *p++;
        }
        if (*p == '*') {
            sl += (size_t)snprintf(spec + sl, sizeof(spec) - sl, "%d", va_arg(*ap, int));
            p++;
        } else {
            while (*p >= '0' && *p <= '9' && sl < 20)
                spec[sl++] = *p++;
        }
    }
    if (p[0] == 'h' && p[1] == 'h')
        len = L_HH, p += 2;
    else if (p[0] == 'l' && p[1] == 'l')
        len = L_LL, p += 2;
    else if (*p != '\0' && strchr("hlzjtL", *p) != NULL)
        len = *p == 'h'   ? L_H
              : *p == 'l' ? L_L
              : *p == 'z' ? L_Z
              : *p == 'j' ? L_J
              : *p == 't' ? L_T
                          : L_BIG,
        p++;
    if (*p == '\0') {
        *pp = p;
        return 0;
    }
    switch (len) { /* the length modifier goes back into the spec */
    case L_HH:
        spec[sl++] = 'h', spec[sl++] = 'h';
        break;
    case L_H:
        spec[sl++] = 'h';
        break;
    case L_L:
        spec[sl++] = 'l';
        break;
    case L_LL:
        spec[sl++] = 'l', spec[sl++] = 'l';
        break;
    case L_Z:
        spec[sl++] = 'z';
        break;
    case L_J:
        spec[sl++] = 'j';
        break;
    case L_T:
        spec[sl++] = 't';
        break;
    case L_BIG:
        spec[sl++] = 'L';
        break;
    default:
        break;
    }
    spec[sl++] = *p;
    spec[sl] = '\0';
    switch (*p) {
    case 'd':
    case 'i':
        numeric = 1;
        if (len == L_LL)
            n = snprintf(out, sizeof(out), spec, va_arg(*ap, long long));
        else if (len == L_L)
            n = snprintf(out, sizeof(out), spec, va_arg(*ap, long));
        else if (len == L_Z || len == L_T)
            n = snprintf(out, sizeof(out), spec, va_arg(*ap, ptrdiff_t));
        else if (len == L_J)
            n = snprintf(out, sizeof(out), spec, va_arg(*ap, intmax_t));
        else
            n = snprintf(out, sizeof(out), spec, va_arg(*ap, int));
        break;
    case 'u':
    case 'x':
    case 'X':
    case 'o':
        numeric = *p == 'u';
        if (len == L_LL)
            n = snprintf(out, sizeof(out), spec, va_arg(*ap, unsigned long long));
        else if (len == L_L)
            n = snprintf(out, sizeof(out), spec, va_arg(*ap, unsigned long));
        else if (len == L_Z || len == L_T)
            n = snprintf(out, sizeof(out), spec, va_arg(*ap, size_t));
        else if (len == L_J)
            n = snprintf(out, sizeof(out), spec, va_arg(*ap, uintmax_t));
        else
            n = snprintf(out, sizeof(out), spec, va_arg(*ap, unsigned));
        break;
    case 'f':
    case 'F':
    case 'e':
    case 'E':
    case 'g':
    case 'G':
        numeric = 1;
        if (len == L_BIG)
            n = snprintf(out, sizeof(out), spec, va_arg(*ap, long double));
        else
            n = snprintf(out, sizeof(out), spec, va_arg(*ap, double));
        break;
    case 'c':
        n = snprintf(out, sizeof(out), spec, va_arg(*ap, int));
        break;
    case 's': {
        const char *s = va_arg(*ap, const char *);
        n = snprintf(out, sizeof(out), spec, s != NULL ? s : "(null)");
        break;
    }
    case 'p':
        n = snprintf(out, sizeof(out), spec, va_arg(*ap, void *));
        break;
    case '%':
        out[0] = '%';
        n = 1;
        break;
    default: /* not a conversion uring_log supports: kept as text */
        n = snprintf(out, sizeof(out), "%s", spec);
        break;
    }
    if (n > 0)
        ev_put(e, out, (size_t)n < sizeof(out) ? (size_t)n : sizeof(out) - 1);
    *pp = p + 1;
    return numeric;
}
#pragma GCC diagnostic pop

/* Split fmt into fields and format each value on its own (see uring_log.h). */
static void ev_parse(struct event *e, const char *fmt, va_list *ap)
{
    const char *p = fmt;

    while (*p != '\0' && e->n < MAX_FIELDS) {
        struct field *f = &e->f[e->n];
        size_t kl = 0, start;
        int quoted, convs = 0, numeric = 0, literal = 0;

        while (*p == ' ')
            p++;
        if (*p == '\0')
            break;
        while (*p != '\0' && *p != '=' && *p != ' ' && kl < sizeof(f->key) - 1)
            f->key[kl++] = *p++;
        f->key[kl] = '\0';
        if (*p != '=') { /* a word without a key: it becomes "msg" */
            p -= kl;
            strcpy(f->key, "msg");
        } else {
            p++;
        }
        quoted = *p == '"';
        if (quoted)
            p++;
        start = e->used;
        while (*p != '\0' && (quoted ? *p != '"' : *p != ' ')) {
            if (*p == '%' && p[1] != '%') {
                p++;
                numeric = ev_conv(e, &p, ap);
                convs++;
            } else {
                if (*p == '%' || (*p == '\\' && quoted && p[1] != '\0'))
                    p++; /* "%%" and a literal's \" or \\ */
                ev_put(e, p, 1);
                p++;
                literal = 1;
            }
        }
        if (quoted && *p == '"')
            p++;
        f->numeric = convs == 1 && numeric && !literal && e->used > start;
        ev_put(e, "", 1);
        if (e->arena[e->used - 1] != '\0') /* the arena filled: end the value anyway */
            e->arena[e->used - 1] = '\0';
        f->value = e->arena + start;
        e->n++;
    }
}

/* ---- writing ---- */

/* The length of the valid UTF-8 sequence at s (2..4), or 0 (an ASCII byte, or invalid). */
static int utf8_seq(const unsigned char *s)
{
    int n = s[0] >= 0xc2 && s[0] <= 0xdf   ? 2
            : s[0] >= 0xe0 && s[0] <= 0xef ? 3
            : s[0] >= 0xf0 && s[0] <= 0xf4 ? 4
                                           : 0;
    unsigned char lo = 0x80, hi = 0xbf;

    if (s[0] == 0xe0)
        lo = 0xa0; /* no overlong forms */
    else if (s[0] == 0xed)
        hi = 0x9f; /* no surrogates */
    else if (s[0] == 0xf0)
        lo = 0x90;
    else if (s[0] == 0xf4)
        hi = 0x8f; /* nothing past U+10FFFF */
    for (int i = 1; i < n; i++) {
        if (s[i] < (i == 1 ? lo : 0x80) || s[i] > (i == 1 ? hi : 0xbf))
            return 0;
    }
    return n;
}

static int needs_quotes(const char *s)
{
    if (*s == '\0')
        return 1;
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= ' ' || c >= 0x7f || c == '"' || c == '=' || c == '\\')
            return 1;
    }
    return 0;
}

const char *uring_log_logfmt_value(const char *s, char *buf, unsigned long buflen)
{
    size_t o = 0;

    if (s == NULL)
        s = "";
    if (buflen < 8) {
        if (buflen > 0)
            buf[0] = '\0';
        return buf;
    }
    if (!needs_quotes(s)) {
        snprintf(buf, buflen, "%s", s);
        return buf;
    }
    buf[o++] = '"';
    while (*s != '\0' && o + 8 < buflen) {
        const unsigned char *u = (const unsigned char *)s;
        const char *esc = *u == '"'    ? "\\\""
                          : *u == '\\' ? "\\\\"
                          : *u == '\n' ? "\\n"
                          : *u == '\r' ? "\\r"
                          : *u == '\t' ? "\\t"
                                       : NULL;
        int n = *u >= 0x80 ? utf8_seq(u) : 0;
        if (esc != NULL) {
            memcpy(buf + o, esc, 2);
            o += 2;
        } else if (n > 0) { /* UTF-8 stays as it is */
            memcpy(buf + o, s, (size_t)n);
            o += (size_t)n;
            s += n - 1;
        } else if (*u < 0x20 || *u == 0x7f) {
            o += (size_t)snprintf(buf + o, buflen - o, "\\u%04x", *u);
        } else if (*u >= 0x80) { /* not UTF-8 */
            o += (size_t)snprintf(buf + o, buflen - o, "\\x%02x", *u);
        } else {
            buf[o++] = (char)*u;
        }
        s++;
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

const char *uring_log_quote(const char *s, char *buf, unsigned long buflen)
{
    if (buflen > 0)
        snprintf(buf, buflen, "%s", s != NULL ? s : "");
    return buf;
}

/* A JSON string for s: s itself when it is UTF-8, else with the other bytes as \xNN text. */
static json_t *json_text(const char *s)
{
    char esc[ARENA * 4];
    size_t o = 0;
    json_t *j = json_string(s);

    if (j != NULL)
        return j;
    while (*s != '\0' && o + 5 < sizeof(esc)) {
        const unsigned char *u = (const unsigned char *)s;
        int n = *u >= 0x80 ? utf8_seq(u) : 1;
        if (n == 0) {
            o += (size_t)snprintf(esc + o, sizeof(esc) - o, "\\x%02x", *u);
            n = 1;
        } else {
            memcpy(esc + o, s, (size_t)n);
            o += (size_t)n;
        }
        s += n;
    }
    esc[o] = '\0';
    return json_string(esc);
}

static json_t *json_value(const struct field *f)
{
    char *end = NULL;
    json_t *v = NULL;

    if (f->numeric) {
        if (strpbrk(f->value, ".eEnN") == NULL) {
            long long n = strtoll(f->value, &end, 10);
            if (*end == '\0')
                v = json_integer((json_int_t)n);
        } else {
            double d = strtod(f->value, &end);
            if (*end == '\0')
                v = json_real(d); /* NULL for inf and nan: a string then */
        }
    }
    return v != NULL ? v : json_text(f->value);
}

/* The JSON line into line (cap bytes); returns its length without the newline, 0 on failure. */
static size_t ev_json(const struct event *e, const char *ts, int level, const char *event,
                      char *line, size_t cap)
{
    json_t *o = json_object();
    char *text = NULL;
    size_t n = 0;

    if (o == NULL)
        return 0;
    json_object_set_new(o, "ts", json_string(ts));
    json_object_set_new(o, "level", json_string(level_names[level & 3]));
    json_object_set_new(o, "event", json_text(event));
    for (int i = 0; i < e->n; i++)
        if (json_object_get(o, e->f[i].key) == NULL) /* ts, level, event stay first */
            json_object_set_new(o, e->f[i].key, json_value(&e->f[i]));
    text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (text != NULL && (n = strlen(text)) < cap)
        memcpy(line, text, n);
    else
        n = 0; /* too long for one line: dropped rather than cut into invalid JSON */
    free(text);
    json_decref(o);
    return n;
}

static size_t ev_logfmt(const struct event *e, const char *ts, int level, const char *event,
                        char *line, size_t cap)
{
    char v[ARENA * 4 + 8];
    int k = snprintf(line, cap, "ts=%s level=%s event=%s", ts, level_names[level & 3],
                     uring_log_logfmt_value(event, v, sizeof(v)));
    size_t n = k > 0 ? (size_t)k : 0;

    for (int i = 0; i < e->n && n < cap; i++) {
        k = snprintf(line + n, cap - n, " %s=%s", e->f[i].key,
                     uring_log_logfmt_value(e->f[i].value, v, sizeof(v)));
        if (k > 0)
            n += (size_t)k;
    }
    return n < cap ? n : cap - 1;
}

void uring_log(int level, const char *event, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    uring_logv(level, event, fmt, ap);
    va_end(ap);
}

void uring_logv(int level, const char *event, const char *fmt, va_list ap)
{
    char line[URING_LOG_LINE + 1], ts[40];
    struct event *e;
    struct timespec now;
    struct tm tm;
    size_t n, k;

    if (!log_enabled(level))
        return;
    if ((e = calloc(1, sizeof(*e))) == NULL)
        return;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    k = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + k, sizeof(ts) - k, ".%03ldZ", now.tv_nsec / 1000000);
    if (fmt != NULL) {
        va_list aq;
        va_copy(aq, ap);
        ev_parse(e, fmt, &aq);
        va_end(aq);
    }
    if (atomic_load(&log_format) == URING_LOG_FORMAT_JSON)
        n = ev_json(e, ts, level, event, line, URING_LOG_LINE);
    else
        n = ev_logfmt(e, ts, level, event, line, URING_LOG_LINE);
    free(e);
    if (n == 0)
        return;
    line[n++] = '\n';
    if (write(STDERR_FILENO, line, n) < 0) {
        /* nowhere left to report it */
    }
}
