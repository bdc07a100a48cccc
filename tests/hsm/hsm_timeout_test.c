/* SPDX-License-Identifier: Apache-2.0 */
/* A slow token (a fake PKCS#11 module loaded through p11-kit): callers time out, the client
 * recovers. */
#include "coffer_error.h"
#include "hsm_admin.h"
#include "hsm_client.h"
#include "hsm_kek.h"
#include "test_support.h"

#include <dlfcn.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void (*set_delay)(unsigned ms);
static void *fake_handle;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static void no_log(void *ctx, const char *line)
{
    (void)ctx;
    (void)line;
}

static hsm_client *slow_client(unsigned timeout_ms, unsigned threads)
{
    hsm_client *c;
    hsm_status st;
    hsm_client_config cfg = {.module = COFFER_FAKE_P11,
                             .token = "slow",
                             .key_label = "slow-kek",
                             .pin = {NULL, "HT_SLOW_PIN"},
                             .timeout_ms = timeout_ms,
                             .threads = threads,
                             .log = no_log};
    assert_int_equal(hsm_client_open(&c, &cfg, &st), 0);
    return c;
}

static int group_setup(void **state)
{
    setenv("HT_SLOW_PIN", "1234", 1);
    /* The same file p11-kit will load: dlopen returns the one copy, whose setter we call. */
    fake_handle = dlopen(COFFER_FAKE_P11, RTLD_NOW | RTLD_LOCAL);
    if (fake_handle == NULL)
        ts_skip("cannot load the fake PKCS#11 module %s: %s", COFFER_FAKE_P11, dlerror());
    *(void **)&set_delay = dlsym(fake_handle, "coffer_fake_p11_set_delay_ms");
    assert_non_null(set_delay);
    return 0;
}

static int group_teardown(void **state)
{
    /* Kept loaded: a detached HSM thread may still be inside it until it returns. */
    return 0;
}

static void test_fast_token_works(void **state)
{
    hsm_client *c = slow_client(2000, 2);
    engine_key *dk, *back;
    hsm_wrapped w;
    hsm_status st;
    set_delay(0);
    assert_int_equal(engine_key_generate(&dk, 32), 0);
    assert_int_equal(hsm_kek_wrap(c, dk, &w, &st), 0);
    assert_int_equal(hsm_kek_unwrap(c, &w, &back, &st), 0);
    assert_memory_equal(back->bytes, dk->bytes, 32);
    engine_key_free(back);
    engine_key_free(dk);
    hsm_client_close(c);
}

static void test_timeout_and_recovery(void **state)
{
    hsm_client *c = slow_client(200, 2);
    engine_key *dk, *back;
    hsm_wrapped w, w2;
    hsm_status st, last;

    set_delay(0);
    assert_int_equal(engine_key_generate(&dk, 32), 0);
    assert_int_equal(hsm_kek_wrap(c, dk, &w, &st), 0); /* connected */

    /* The token hangs for 1.5 s: the caller gets TIMEOUT after about 200 ms. */
    set_delay(1500);
    double t0 = now_ms();
    assert_int_equal(hsm_kek_wrap(c, dk, &w2, &st), COFFER_ERR_HSM_TIMEOUT);
    double waited = now_ms() - t0;
    assert_true(waited >= 190 && waited < 1000);
    assert_string_equal(st.step, "timeout");
    assert_non_null(strstr(st.text, "200 ms"));
    assert_non_null(strstr(st.text, "slow-kek"));
    hsm_client_last_error(c, &last);
    assert_int_equal(last.code, COFFER_ERR_HSM_TIMEOUT);

    /* Unwrap too; now both HSM threads are stuck, so a third call times out while queued. */
    assert_int_equal(hsm_kek_unwrap(c, &w, &back, &st), COFFER_ERR_HSM_TIMEOUT);
    assert_null(back);
    set_delay(0);
    t0 = now_ms();
    assert_int_equal(hsm_kek_wrap(c, dk, &w2, &st), COFFER_ERR_HSM_TIMEOUT);
    assert_true(now_ms() - t0 < 1000);

    /* When the token answers again, the same client works: no reconnect, no restart. */
    sleep_ms(1600);
    assert_int_equal(hsm_kek_wrap(c, dk, &w2, &st), 0);
    assert_int_equal(hsm_kek_unwrap(c, &w2, &back, &st), 0);
    assert_memory_equal(back->bytes, dk->bytes, 32);
    engine_key_free(back);
    assert_int_equal(hsm_kek_unwrap(c, &w, &back, &st), 0);
    assert_memory_equal(back->bytes, dk->bytes, 32);
    engine_key_free(back);
    engine_key_free(dk);
    hsm_client_close(c);
}

/* With one HSM thread stuck, the other keeps serving. */
static void test_other_thread_serves(void **state)
{
    hsm_client *c = slow_client(300, 2);
    engine_key *dk;
    hsm_wrapped w;
    hsm_status st;

    set_delay(0);
    assert_int_equal(engine_key_generate(&dk, 32), 0);
    assert_int_equal(hsm_client_connect(c, &st), 0);
    set_delay(1000);
    assert_int_equal(hsm_kek_wrap(c, dk, &w, &st), COFFER_ERR_HSM_TIMEOUT);
    set_delay(0);
    assert_int_equal(hsm_kek_wrap(c, dk, &w, &st), 0);
    engine_key_free(dk);
    sleep_ms(800);
    hsm_client_close(c);
}

/* Closing while an HSM thread is stuck returns after about the timeout; the thread cleans up later.
 */
static void test_close_while_stuck(void **state)
{
    hsm_client *c = slow_client(500, 1);
    engine_key *dk;
    hsm_wrapped w;
    hsm_status st;
    int r, tries = 0;

    set_delay(0);
    assert_int_equal(engine_key_generate(&dk, 32), 0);
    /* the setup, not what is tested: on a loaded machine the HSM thread may not even be
       scheduled within the 500 ms timeout, so connecting is tried again */
    while ((r = hsm_client_connect(c, &st)) == COFFER_ERR_HSM_TIMEOUT && ++tries < 10)
        ;
    assert_int_equal(r, 0);
    set_delay(4000);
    assert_int_equal(hsm_kek_wrap(c, dk, &w, &st), COFFER_ERR_HSM_TIMEOUT);
    double t0 = now_ms();
    hsm_client_close(c);
    /* a bound, not a speed: well below the 4 s the stuck call takes */
    assert_true(now_ms() - t0 < 3000);
    set_delay(0);
    engine_key_free(dk);
    sleep_ms(4500); /* let the detached thread finish and free everything */

    /* A new client works, the module having been finalized by the thread that was stuck. */
    c = slow_client(2000, 1);
    assert_int_equal(engine_key_generate(&dk, 32), 0);
    assert_int_equal(hsm_kek_wrap(c, dk, &w, &st), 0);
    engine_key_free(dk);
    hsm_client_close(c);
}

/* An admin call times out the same way. */
static void test_check_times_out(void **state)
{
    hsm_client *c = slow_client(200, 1);
    hsm_check_report rep;
    hsm_status st;
    set_delay(0);
    assert_int_equal(hsm_client_connect(c, &st), 0);
    assert_int_equal(hsm_admin_check(c, &rep), 0);
    assert_int_equal(rep.failed, 0);
    set_delay(700);
    assert_int_equal(hsm_admin_check(c, &rep), COFFER_ERR_HSM_TIMEOUT);
    /* the mechanism's trial encryption is the first call to wait for the token */
    assert_int_equal(rep.items[5].result, HSM_CHECK_FAIL);
    assert_int_equal(rep.items[4].result, HSM_CHECK_SKIP);
    set_delay(0);
    sleep_ms(800);
    hsm_client_close(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fast_token_works),    cmocka_unit_test(test_timeout_and_recovery),
        cmocka_unit_test(test_other_thread_serves), cmocka_unit_test(test_close_while_stuck),
        cmocka_unit_test(test_check_times_out),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
