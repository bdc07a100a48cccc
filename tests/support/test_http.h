/* SPDX-License-Identifier: Apache-2.0 */
/* Scraping cofferd's /metrics in tests: an HTTP client (libcurl) and a sample reader. */
#ifndef TEST_HTTP_H
#define TEST_HTTP_H

/*
 * method ("GET", "POST", ...) url, through the Unix socket unix_path when it is not NULL. Returns
 * the body (malloc, NUL-terminated) and sets *status to the HTTP status; fails the test when no
 * HTTP answer came within 60 s. Call curl_global_init once before (ts_http_init).
 */
char *ts_http(const char *method, const char *url, const char *unix_path, long *status);
void ts_http_init(void);
void ts_http_cleanup(void);

/* The value of the sample named exactly series ("name{labels}") in a text exposition, or -1. */
double ts_metric(const char *text, const char *series);

/* `promtool check metrics` (Prometheus's own linter, Debian's prometheus package) accepts text,
 * saved as dir/name.prom; fails the test with promtool's complaint, skips without promtool. */
void ts_promtool_check(const char *text, const char *dir, const char *name);

#endif
