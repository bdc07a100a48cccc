/* SPDX-License-Identifier: Apache-2.0 */
/* 'coffer hsm init-kek|list|check' (client/cli_hsm.c) run as a program against SoftHSM2 tokens. */
#include "hsm_test_util.h"
#include "test_support.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct ht_env env;
static char out_path[1200], err_path[1200];
static char *out_text, *err_text;

static int group_setup(void **state)
{
    char dir[1200];
    ht_env_setup(&env);
    ht_token_init(&env, "coffer", dir, sizeof(dir));
    snprintf(out_path, sizeof(out_path), "%s/out", env.dir);
    snprintf(err_path, sizeof(err_path), "%s/err", env.dir);
    return 0;
}

static int group_teardown(void **state)
{
    free(out_text);
    free(err_text);
    ht_env_teardown(&env);
    return 0;
}

/* Run the CLI with the arguments after "coffer hsm"; NULL-terminated. */
static int cli(char *const extra_env[], ...)
{
    char *argv[32];
    int n = 0;
    va_list ap;
    argv[n++] = (char *)COFFER_HSM_CLI;
    argv[n++] = "hsm";
    va_start(ap, extra_env);
    for (char *a; (a = va_arg(ap, char *)) != NULL && n < 31;)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    int rc = ts_run(argv, extra_env, NULL, out_path, err_path);
    free(out_text);
    free(err_text);
    size_t len;
    out_text = (char *)ts_read_file(out_path, &len);
    err_text = (char *)ts_read_file(err_path, &len);
    assert_non_null(out_text);
    assert_non_null(err_text);
    return rc;
}

static void test_init_kek(void **state)
{
    char *m = env.module, *pf = env.pin_file;
    assert_int_equal(cli(NULL, "init-kek", "--module", m, "--token", "coffer", "--label", "cli-kek",
                         "--pin-file", pf, NULL),
                     0);
    assert_non_null(strstr(out_text, "created key 'cli-kek' on token 'coffer'"));

    assert_int_equal(cli(NULL, "init-kek", "--module", m, "--token", "coffer", "--label", "cli-kek",
                         "--pin-file", pf, NULL),
                     1);
    assert_non_null(strstr(err_text, "coffer: hsm init-kek: token 'coffer' already has an object "
                                     "labelled 'cli-kek'"));

    /* The PIN from the environment. */
    char *penv[] = {"COFFER_HSM_PIN=" HT_PIN, NULL};
    assert_int_equal(
        cli(penv, "init-kek", "--module", m, "--token", "coffer", "--label", "cli-kek-env", NULL),
        0);
}

static void test_list(void **state)
{
    char *m = env.module, *pf = env.pin_file;
    assert_int_equal(cli(NULL, "list", "--module", m, "--token", "coffer", "--pin-file", pf, NULL),
                     0);
    assert_non_null(strstr(out_text, "'cli-kek'  AES-256 private sensitive not-extractable "
                                     "encrypt decrypt"));
    assert_null(strstr(out_text, "not fit"));

    assert_int_equal(cli(NULL, "list", "--module", m, NULL), 0);
    assert_non_null(strstr(out_text, "label 'coffer'"));
}

static void test_check(void **state)
{
    char *m = env.module, *pf = env.pin_file;
    assert_int_equal(cli(NULL, "check", "--module", m, "--token", "coffer", "--label", "cli-kek",
                         "--pin-file", pf, NULL),
                     0);
    static const char *lines[] = {"ok    module: ", "ok    token: 'coffer' found",
                                  "ok    login: ", "ok    key: 'cli-kek' found: AES-256",
                                  "ok    wrap/unwrap: "};
    for (size_t i = 0; i < 5; i++) {
        if (strstr(out_text, lines[i]) == NULL)
            fprintf(stderr, "missing '%s' in:\n%s", lines[i], out_text);
        assert_non_null(strstr(out_text, lines[i]));
    }

    assert_int_equal(cli(NULL, "check", "--module", m, "--token", "coffer", "--label", "no-key",
                         "--pin-file", pf, NULL),
                     1);
    assert_non_null(strstr(out_text, "FAIL  key: no AES secret key labelled 'no-key'"));
    assert_non_null(strstr(out_text, "skip  wrap/unwrap"));

    char *wrong[] = {"COFFER_HSM_PIN=not-the-pin-777", NULL};
    assert_int_equal(
        cli(wrong, "check", "--module", m, "--token", "coffer", "--label", "cli-kek", NULL), 1);
    assert_non_null(strstr(out_text, "FAIL  login: "));
    assert_non_null(strstr(out_text, "CKR_PIN_INCORRECT"));
    assert_null(strstr(out_text, "not-the-pin-777"));
    assert_null(strstr(err_text, "not-the-pin-777"));

    assert_int_equal(cli(NULL, "check", "--module", "/nonexistent/x.so", "--token", "coffer",
                         "--label", "cli-kek", "--pin-file", pf, NULL),
                     1);
    assert_non_null(strstr(out_text, "FAIL  module: "));
}

static void test_usage(void **state)
{
    char *m = env.module;
    assert_int_equal(cli(NULL, "init-kek", "--module", m, "--token", "coffer", "--label", "x",
                         "--pin", "1234", NULL),
                     2);
    assert_non_null(strstr(err_text, "never taken from the command line"));
    assert_int_equal(cli(NULL, "check", "--token", "coffer", "--label", "x", NULL), 2);
    assert_non_null(strstr(err_text, "needs --module"));
    assert_int_equal(cli(NULL, "frobnicate", NULL), 2);
    assert_int_equal(cli(NULL, "list", "--module", m, "--timeout", "soon", NULL), 2);
    assert_int_equal(cli(NULL, "--help", NULL), 0);
    assert_non_null(strstr(out_text, "usage: coffer hsm init-kek"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_kek),
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_usage),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
