/* SPDX-License-Identifier: Apache-2.0 */
/* The pkcs11 fallback policy and its sentences, without a daemon or a token. */
#include "coffer_error.h"
#include "hsm_fallback.h"

#include <p11-kit/pkcs11.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

static void test_decide(void **state)
{
    /* every code of the HSM's range counts under its own name, in counter order */
    static const struct {
        int err;
        const char *name;
    } want[] = {
        {COFFER_ERR_HSM_MODULE, "HSM_MODULE"}, {COFFER_ERR_HSM_TOKEN, "HSM_TOKEN"},
        {COFFER_ERR_HSM_KEY, "HSM_KEY"},       {COFFER_ERR_HSM_LOGIN, "HSM_LOGIN"},
        {COFFER_ERR_HSM_CALL, "HSM_CALL"},     {COFFER_ERR_HSM_TIMEOUT, "HSM_TIMEOUT"},
        {COFFER_ERR_HSM_UNAVAILABLE, "HSM_UNAVAILABLE"},
    };
    hsm_fallback_decision d;

    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        hsm_fallback_decide(want[i].err, 1, &d);
        assert_int_equal(d.fall_back, 1);
        assert_string_equal(hsm_fallback_reason_name(d.reason), want[i].name);
        /* the names are coffer_errname's, so logs, STATS and metrics agree */
        assert_string_equal(coffer_errname(want[i].err), want[i].name);
        hsm_fallback_decide(want[i].err, 0, &d);
        assert_int_equal(d.fall_back, 0);
    }
    /* anything else (memory, a metadata too large) counts as OTHER and still falls back */
    hsm_fallback_decide(COFFER_ERR_NOMEM, 1, &d);
    assert_int_equal(d.fall_back, 1);
    assert_string_equal(hsm_fallback_reason_name(d.reason), "OTHER");
    hsm_fallback_decide(COFFER_ERR_TOO_LARGE, 0, &d);
    assert_int_equal(d.fall_back, 0);
    assert_int_equal(d.reason, HSM_FALLBACK_REASONS - 1);
    assert_null(hsm_fallback_reason_name(-1));
    assert_null(hsm_fallback_reason_name(HSM_FALLBACK_REASONS));
    assert_true(hsm_fallback_is_hsm_code(COFFER_ERR_HSM_LOGIN));
    assert_false(hsm_fallback_is_hsm_code(COFFER_ERR_WRONG_KEY));
}

static void test_backup_error(void **state)
{
    hsm_status st;
    char detail[512];

    hsm_status_clear(&st);
    hsm_status_set(&st, COFFER_ERR_HSM_LOGIN, "login", CKR_PIN_INCORRECT,
                   "token 'coffer' refused the PIN");
    assert_int_equal(hsm_fallback_backup_error(COFFER_ERR_HSM_LOGIN, &st, detail, sizeof(detail)),
                     COFFER_ERR_HSM_LOGIN);
    assert_string_equal(detail, "the HSM cannot serve this backup and --hsm-fallback is none: "
                                "token 'coffer' refused the PIN (HSM_LOGIN, CKR_PIN_INCORRECT)");
    /* no sentence from the HSM: the code's own text, no CKR */
    hsm_status_clear(&st);
    assert_int_equal(
        hsm_fallback_backup_error(COFFER_ERR_HSM_TIMEOUT, &st, detail, sizeof(detail)),
        COFFER_ERR_HSM_TIMEOUT);
    assert_non_null(strstr(detail, coffer_strerror(COFFER_ERR_HSM_TIMEOUT)));
    assert_non_null(strstr(detail, "(HSM_TIMEOUT)"));
    /* a short buffer is cut, never overrun, and terminated */
    hsm_fallback_backup_error(COFFER_ERR_HSM_TIMEOUT, &st, detail, 16);
    assert_int_equal(strlen(detail), 15);
}

static void test_secret_error(void **state)
{
    hsm_status st;
    char detail[512];

    hsm_status_clear(&st);
    hsm_status_set(&st, COFFER_ERR_HSM_MODULE, "module", HSM_STATUS_NO_RV,
                   "cannot load module 'softhsm2'");
    assert_int_equal(hsm_fallback_secret_error(COFFER_ERR_KEY_MISSING, "velero", "backup-key", &st,
                                               "no field key in the Secret", detail,
                                               sizeof(detail)),
                     COFFER_ERR_KEY_MISSING);
    assert_string_equal(detail, "Secret velero/backup-key (the fallback after the HSM failed: "
                                "cannot load module 'softhsm2'): no field key in the Secret");
}

static void test_restore_error(void **state)
{
    hsm_status st;
    char detail[512];

    /* the HSM's sentence names neither: the prefix names token and key */
    hsm_status_clear(&st);
    hsm_status_set(&st, COFFER_ERR_HSM_TOKEN, "token", HSM_STATUS_NO_RV, "no such token");
    assert_int_equal(hsm_fallback_restore_error(COFFER_ERR_HSM_TOKEN, &st, "vault", "kek-7", detail,
                                                sizeof(detail)),
                     COFFER_ERR_HSM_UNAVAILABLE);
    assert_string_equal(detail,
                        "restoring needs key 'kek-7' on token 'vault': no such token (HSM_TOKEN)");
    /* it names both already: no second mention */
    hsm_status_clear(&st);
    hsm_status_set(&st, COFFER_ERR_HSM_KEY, "key", HSM_STATUS_NO_RV,
                   "no key 'kek-7' on token 'vault'");
    assert_int_equal(hsm_fallback_restore_error(COFFER_ERR_HSM_KEY, &st, "vault", "kek-7", detail,
                                                sizeof(detail)),
                     COFFER_ERR_HSM_UNAVAILABLE);
    assert_string_equal(detail, "no key 'kek-7' on token 'vault' (HSM_KEY)");
    /* a configuration problem is the HSM being away too */
    hsm_status_clear(&st);
    assert_int_equal(hsm_fallback_restore_error(COFFER_ERR_CONFIG, &st, "vault", "kek-7", detail,
                                                sizeof(detail)),
                     COFFER_ERR_HSM_UNAVAILABLE);
    /* a wrong key stays a wrong key: the token answered, and it said no */
    hsm_status_clear(&st);
    hsm_status_set(&st, COFFER_ERR_WRONG_KEY, "unwrap", CKR_ENCRYPTED_DATA_INVALID,
                   "the token refused to unwrap");
    assert_int_equal(hsm_fallback_restore_error(COFFER_ERR_WRONG_KEY, &st, "vault", "kek-7",
                                                detail, sizeof(detail)),
                     COFFER_ERR_WRONG_KEY);
    assert_non_null(strstr(detail, "CKR_ENCRYPTED_DATA_INVALID"));
    assert_non_null(strstr(detail, "'kek-7' on token 'vault'"));
}

static void test_restore_unconfigured(void **state)
{
    char detail[512];
    assert_int_equal(hsm_fallback_restore_unconfigured("vault", "kek-7", detail, sizeof(detail)),
                     COFFER_ERR_HSM_UNAVAILABLE);
    assert_string_equal(detail, "restoring needs key 'kek-7' on token 'vault' to unwrap the data "
                                "key, and this cofferd has no HSM configured (--hsm-module, "
                                "--hsm-token, --hsm-pin-file)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decide),
        cmocka_unit_test(test_backup_error),
        cmocka_unit_test(test_secret_error),
        cmocka_unit_test(test_restore_error),
        cmocka_unit_test(test_restore_unconfigured),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
