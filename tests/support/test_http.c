/* SPDX-License-Identifier: Apache-2.0 */
/* Test HTTP client (libcurl) and Prometheus sample lookup. */
#include "test_http.h"

#include "test_support.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static size_t http_sink(char *p, size_t size, size_t n, void *ctx)
{
    return ts_membuf_write(ctx, p, size * n) == 0 ? size * n : 0;
}

char *ts_http(const char *method, const char *url, const char *unix_path, long *status)
{
    struct ts_membuf body = {0};
    CURL *c = curl_easy_init();
    CURLcode rc;

    assert_non_null(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, http_sink);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (unix_path != NULL)
        curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, unix_path);
    rc = curl_easy_perform(c);
    if (rc != CURLE_OK)
        fail_msg("%s %s: %s", method, url, curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_easy_cleanup(c);
    assert_int_equal(ts_membuf_write(&body, "", 1), 0); /* NUL-terminated */
    return (char *)body.p;
}

void ts_http_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

void ts_http_cleanup(void)
{
    curl_global_cleanup();
}

double ts_metric(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; (p = strstr(p, series)) != NULL; p += n) {
        if ((p == text || p[-1] == '\n') && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    }
    return -1;
}

void ts_promtool_check(const char *text, const char *dir, const char *name)
{
    char in[1024], out[1024];
    char *argv[] = {"/usr/bin/promtool", "check", "metrics", NULL};

    if (access(argv[0], X_OK) != 0)
        ts_skip("promtool is not installed (Debian package prometheus)");
    snprintf(in, sizeof(in), "%s/%s.prom", dir, name);
    snprintf(out, sizeof(out), "%s/%s.promtool", dir, name);
    assert_int_equal(ts_write_file(in, text, strlen(text)), 0);
    if (ts_run(argv, NULL, in, out, out) != 0) {
        size_t n = 0;
        char *why = (char *)ts_read_file(out, &n);
        fail_msg("promtool check metrics failed on %s:\n%s", in, why != NULL ? why : "");
    }
}
