/* SPDX-License-Identifier: Apache-2.0 */
/* cofferd's logger: logfmt quoting, JSON lines (read back with jansson), and the real daemon's log.
 */
#include "coffer_client.h"
#include "test_daemon.h"
#include "test_support.h"
#include "uring_log.h"

#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static char *tmp;

/* The lines uring_log writes to stderr while fn runs (malloc). */
static char *captured(void (*fn)(void))
{
    char path[600];
    int fd, saved = dup(STDERR_FILENO);
    size_t n = 0;
    char *text;

    snprintf(path, sizeof(path), "%s/stderr", tmp);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0 && saved >= 0);
    dup2(fd, STDERR_FILENO);
    fn();
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(fd);
    text = (char *)ts_read_file(path, &n);
    assert_non_null(text);
    return text;
}

/* The line without its "ts=..." prefix (logfmt). */
static const char *after_ts(const char *line)
{
    const char *p = strchr(line, ' ');
    assert_non_null(p);
    assert_memory_equal(line, "ts=", 3);
    return p + 1;
}

static void log_tricky(void)
{
    uring_log(URING_LOG_INFO, "tricky", "path=%s n=%d detail=\"a %s b\" empty=%s ratio=%.1f",
              "/run/a b=c\"d\\e\n", 42, "x\ty", "", 0.5);
}

static void log_plain(void)
{
    uring_log(URING_LOG_WARN, "plain", "conn=%llu op=%s", 7ULL, "encrypt");
}

static void log_bytes(void)
{
    uring_log(URING_LOG_ERROR, "bytes", "detail=%s ctl=%s", "caf\xc3\xa9 \xff", "\x01\x7f");
}

static void log_debug(void)
{
    uring_log(URING_LOG_DEBUG, "hidden", "x=%d", 1);
}

/* Values are quoted exactly when logfmt needs it, with Go-style escapes. */
static void test_logfmt_values(void **state)
{
    static const char *const cases[][2] = {
        {"plain", "plain"},
        {"", "\"\""},
        {"a b", "\"a b\""},
        {"say \"hi\"", "\"say \\\"hi\\\"\""},
        {"k=v", "\"k=v\""},
        {"back\\slash", "\"back\\\\slash\""},
        {"line\nbreak\r\ttab", "\"line\\nbreak\\r\\ttab\""},
        {"\x01\x1f\x7f", "\"\\u0001\\u001f\\u007f\""},
        {"caf\xc3\xa9", "\"caf\xc3\xa9\""},
        {"bad \xff\xc3", "\"bad \\xff\\xc3\""},
        {"\xed\xa0\x80", "\"\\xed\\xa0\\x80\""},
        {"/run/coffer/cofferd.sock", "/run/coffer/cofferd.sock"},
    };
    char buf[256];
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_string_equal(uring_log_logfmt_value(cases[i][0], buf, sizeof(buf)), cases[i][1]);
}

static void test_logfmt_line(void **state)
{
    char *text;
    (void)state;
    uring_log_set_format(URING_LOG_FORMAT_LOGFMT);
    uring_log_set_level(URING_LOG_INFO);
    text = captured(log_tricky);
    assert_string_equal(after_ts(text), "level=info event=tricky path=\"/run/a b=c\\\"d\\\\e\\n\" "
                                        "n=42 detail=\"a x\\ty b\" empty=\"\" ratio=0.5\n");
    free(text);
    text = captured(log_plain);
    assert_string_equal(after_ts(text), "level=warn event=plain conn=7 op=encrypt\n");
    free(text);
    text = captured(log_debug);
    assert_string_equal(text, "");
    free(text);
}

/* JSON mode: one object per line, read back with jansson, values exactly what was logged. */
static void test_json_line(void **state)
{
    json_error_t err;
    json_t *j;
    char *text;
    (void)state;
    uring_log_set_format(URING_LOG_FORMAT_JSON);
    text = captured(log_tricky);
    assert_non_null(strchr(text, '\n'));
    assert_ptr_equal(strchr(text, '\n') + 1, text + strlen(text)); /* one line */
    j = json_loads(text, JSON_REJECT_DUPLICATES, &err);
    if (j == NULL)
        fail_msg("not JSON (%s): %s", err.text, text);
    assert_string_equal(json_string_value(json_object_get(j, "level")), "info");
    assert_string_equal(json_string_value(json_object_get(j, "event")), "tricky");
    assert_true(json_is_string(json_object_get(j, "ts")));
    assert_string_equal(json_string_value(json_object_get(j, "path")), "/run/a b=c\"d\\e\n");
    assert_true(json_is_integer(json_object_get(j, "n")));
    assert_int_equal(json_integer_value(json_object_get(j, "n")), 42);
    assert_string_equal(json_string_value(json_object_get(j, "detail")), "a x\ty b");
    assert_string_equal(json_string_value(json_object_get(j, "empty")), "");
    assert_true(json_is_real(json_object_get(j, "ratio")));
    assert_memory_equal(text, "{\"ts\":", 6); /* ts, level, event first */
    json_decref(j);
    free(text);

    /* not UTF-8: the bad byte becomes \xff text, UTF-8 stays */
    text = captured(log_bytes);
    j = json_loads(text, 0, &err);
    if (j == NULL)
        fail_msg("not JSON (%s): %s", err.text, text);
    assert_string_equal(json_string_value(json_object_get(j, "detail")), "caf\xc3\xa9 \\xff");
    assert_string_equal(json_string_value(json_object_get(j, "ctl")), "\x01\x7f");
    json_decref(j);
    free(text);
    uring_log_set_format(URING_LOG_FORMAT_LOGFMT);
}

/* ts_daemon_vstart with the extra flags given here (NULL-terminated). */
static int daemon_start(struct ts_daemon *d, char *const flags[], ...)
{
    va_list ap;
    int r;
    va_start(ap, flags);
    r = ts_daemon_vstart(d, flags, NULL, 1000, ap);
    va_end(ap);
    return r;
}

/* The real cofferd with --log-format json: every line of its log is a JSON object with ts, level
 * and event, a failed job included. */
static void test_daemon_json_log(void **state)
{
    struct ts_daemon d = {0};
    char secrets[600], path[700];
    char *flags[] = {"--secrets-dir", secrets, "--log-format", "json", "--workers", "1", NULL};
    uint8_t key[32], pt[1000];
    struct coffer_job job = {COFFER_CLIENT_DECRYPT, NULL, NULL, 0, NULL, 0, 0};
    struct ts_membuf src = {pt, sizeof(pt), 0, sizeof(pt)}, out = {0};
    struct coffer_result res = {0};
    coffer_client *c = NULL;
    char msg[256], *text, *line, *save = NULL;
    size_t n = 0;
    int lines = 0;
    (void)state;

    snprintf(secrets, sizeof(secrets), "%s/secrets", tmp);
    snprintf(path, sizeof(path), "%s/velero/coffer-key", secrets);
    char *mk[] = {"/bin/mkdir", "-p", path, NULL};
    assert_int_equal(ts_run(mk, NULL, NULL, NULL, NULL), 0);
    ts_fill(key, sizeof(key), 1);
    snprintf(path, sizeof(path), "%s/velero/coffer-key/encryptionKey", secrets);
    assert_int_equal(ts_write_file(path, key, sizeof(key)), 0);
    ts_daemon_paths(&d, tmp, "json");
    assert_int_equal(daemon_start(&d, flags, NULL), 0);
    /* garbage as a coffer-v1 backup: the job fails with BAD_HEADER and a detail */
    ts_fill(pt, sizeof(pt), 2);
    assert_int_equal(coffer_client_connect(&c, d.sock, msg, sizeof(msg)), 0);
    assert_true(coffer_client_stream(c, &job, ts_membuf_read, &src, ts_membuf_write, &out, &res) <
                0);
    coffer_client_close(c);
    coffer_result_clear(&res);
    assert_int_equal(ts_daemon_stop(&d), 0);
    text = (char *)ts_read_file(d.log, &n);
    assert_non_null(text);
    for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        json_error_t err;
        json_t *j = json_loads(line, JSON_REJECT_DUPLICATES, &err);
        if (j == NULL || !json_is_object(j))
            fail_msg("a log line is not a JSON object (%s): %s", err.text, line);
        assert_true(json_is_string(json_object_get(j, "ts")));
        assert_true(json_is_string(json_object_get(j, "level")));
        assert_true(json_is_string(json_object_get(j, "event")));
        json_decref(j);
        lines++;
    }
    assert_true(lines >= 3); /* started, job_failed, stopping, stopped */
    free(text);
    assert_true(ts_daemon_log_has(&d, "\"event\":\"job_failed\""));
    assert_true(ts_daemon_log_has(&d, "\"err\":\"BAD_HEADER\""));
    free(out.p);
}

static int setup(void **state)
{
    (void)state;
    tmp = ts_tmpdir();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (getenv("COFFER_TEST_KEEP") == NULL)
        ts_rmtree(tmp);
    free(tmp);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_logfmt_values),
        cmocka_unit_test(test_logfmt_line),
        cmocka_unit_test(test_json_line),
        cmocka_unit_test(test_daemon_json_log),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
