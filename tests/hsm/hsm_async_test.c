/* SPDX-License-Identifier: Apache-2.0 */
/* hsm/'s asynchronous submit: wrap, unwrap and the retriever's keys answered by callback on the
 * client's own threads (SoftHSM2), and the timeout answered by the watchdog (the fake module). */
#include "coffer_error.h"
#include "hsm_admin.h"
#include "hsm_client.h"
#include "hsm_kek.h"
#include "hsm_retriever.h"
#include "hsm_test_util.h"
#include "test_support.h"

#include <dlfcn.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

static struct ht_env env;
static char dir_async[1200];

static void no_log(void *ctx, const char *line)
{
    (void)ctx;
    (void)line;
}

/* One answer: filled by the callback, waited for by the test. */
struct answer {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int calls;
    int r;
    hsm_status st;
    hsm_wrapped w;
    engine_key *dk;
    json_t *config;
    pthread_t thread; /* the thread the callback ran on */
};

static void answer_init(struct answer *a)
{
    memset(a, 0, sizeof(*a));
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
}

static void answer_wait(struct answer *a, int calls)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 60;
    pthread_mutex_lock(&a->mu);
    while (a->calls < calls)
        assert_int_equal(pthread_cond_timedwait(&a->cv, &a->mu, &until), 0);
    pthread_mutex_unlock(&a->mu);
}

static void answer_done(struct answer *a)
{
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
}

static void on_wrap(void *ctx, int r, const hsm_status *st, const hsm_wrapped *w)
{
    struct answer *a = ctx;
    pthread_mutex_lock(&a->mu);
    a->r = r;
    a->st = *st;
    if (w != NULL)
        a->w = *w;
    a->thread = pthread_self();
    a->calls++;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

static void on_unwrap(void *ctx, int r, const hsm_status *st, engine_key *dk)
{
    struct answer *a = ctx;
    pthread_mutex_lock(&a->mu);
    a->r = r;
    a->st = *st;
    a->dk = dk;
    a->thread = pthread_self();
    a->calls++;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

/* The retriever's answers: several may come, one per submit. */
#define NBACKUPS 6
static struct answer backups[NBACKUPS];

static void on_key(void *ctx, int r, const hsm_status *st, engine_key *dk, json_t *config)
{
    struct answer *a = ctx;
    pthread_mutex_lock(&a->mu);
    a->r = r;
    a->st = *st;
    a->dk = dk;
    a->config = config;
    a->thread = pthread_self();
    a->calls++;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

static hsm_client *client_open(const char *module, const char *token, const char *label,
                               hsm_pin_source pin, unsigned timeout_ms)
{
    hsm_client *c = NULL;
    hsm_status st;
    hsm_client_config cfg = {.module = module,
                             .token = token,
                             .key_label = label,
                             .pin = pin,
                             .timeout_ms = timeout_ms,
                             .threads = 2,
                             .log = no_log};
    assert_int_equal(hsm_client_open(&c, &cfg, &st), 0);
    return c;
}

static hsm_client *client_async(void)
{
    hsm_pin_source pin = {env.pin_file, NULL};
    return client_open(env.module, "coffer-async", "kek-async", pin, 20000);
}

static int group_setup(void **state)
{
    hsm_client *c;
    hsm_status st;
    ht_env_setup(&env);
    ht_token_init(&env, "coffer-async", dir_async, sizeof(dir_async));
    c = client_async();
    assert_int_equal(hsm_admin_kek_create(c, "kek-async", &st), 0);
    hsm_client_close(c);
    return 0;
}

static int group_teardown(void **state)
{
    ht_env_teardown(&env);
    return 0;
}

/* Wrap and unwrap without waiting: the answers come on the client's threads, not ours. */
static void test_wrap_unwrap_submit(void **state)
{
    hsm_client *c = client_async();
    engine_key *dk = NULL;
    struct answer wa, ua;

    answer_init(&wa);
    answer_init(&ua);
    assert_int_equal(engine_key_generate(&dk, HSM_DATA_KEY_LEN), 0);
    assert_int_equal(hsm_kek_wrap_submit(c, dk, on_wrap, &wa), 0);
    answer_wait(&wa, 1);
    assert_int_equal(wa.r, 0);
    assert_false(pthread_equal(wa.thread, pthread_self()));
    assert_string_equal(wa.w.key_label, "kek-async");
    assert_int_equal(hsm_kek_unwrap_submit(c, &wa.w, on_unwrap, &ua), 0);
    answer_wait(&ua, 1);
    assert_int_equal(ua.r, 0);
    assert_false(pthread_equal(ua.thread, pthread_self()));
    assert_non_null(ua.dk);
    assert_int_equal(ua.dk->len, dk->len);
    assert_memory_equal(ua.dk->bytes, dk->bytes, dk->len);
    /* a wrapped key altered on its way back fails closed, by callback too */
    {
        struct answer bad;
        hsm_wrapped w = wa.w;
        answer_init(&bad);
        w.wrapped[0] ^= 1;
        assert_int_equal(hsm_kek_unwrap_submit(c, &w, on_unwrap, &bad), 0);
        answer_wait(&bad, 1);
        assert_int_not_equal(bad.r, 0);
        assert_null(bad.dk);
        answer_done(&bad);
    }
    engine_key_free(ua.dk);
    engine_key_free(dk);
    answer_done(&wa);
    answer_done(&ua);
    hsm_client_close(c);
}

/* Concurrent backups that miss make one HSM call and all get its key; a restore unwraps it. */
static void test_retriever_submit(void **state)
{
    hsm_client *c = client_async();
    hsm_retriever *r = NULL, *r2 = NULL;
    struct answer ra;

    assert_int_equal(hsm_retriever_new(&r, c, NULL, NULL, NULL), 0);
    for (int i = 0; i < NBACKUPS; i++) {
        answer_init(&backups[i]);
        hsm_retriever_backup_key_submit(r, 0, on_key, &backups[i]);
    }
    for (int i = 0; i < NBACKUPS; i++) {
        answer_wait(&backups[i], 1);
        assert_int_equal(backups[i].r, 0);
        assert_non_null(backups[i].dk);
        assert_non_null(backups[i].config);
        /* one refresh: every backup got the same data key */
        assert_string_equal(backups[i].dk->id, backups[0].dk->id);
        assert_memory_equal(backups[i].dk->bytes, backups[0].dk->bytes, backups[0].dk->len);
    }
    {
        hsm_cache_stats cs;
        hsm_cache_stats_get(hsm_retriever_cache(r), &cs);
        assert_int_equal(cs.backup_misses, 1); /* the one refresh */
    }
    /* a fresh retriever (empty cache) must ask the token */
    assert_int_equal(hsm_retriever_new(&r2, c, NULL, NULL, NULL), 0);
    answer_init(&ra);
    hsm_retriever_restore_key_submit(r2, backups[0].config, on_key, &ra);
    answer_wait(&ra, 1);
    assert_int_equal(ra.r, 0);
    assert_false(pthread_equal(ra.thread, pthread_self()));
    assert_memory_equal(ra.dk->bytes, backups[0].dk->bytes, backups[0].dk->len);
    engine_key_free(ra.dk);
    answer_done(&ra);
    for (int i = 0; i < NBACKUPS; i++) {
        engine_key_free(backups[i].dk);
        json_decref(backups[i].config);
        answer_done(&backups[i]);
    }
    hsm_retriever_free(r2);
    hsm_retriever_free(r);
    hsm_client_close(c);
}

/* A token that does not answer: the watchdog answers HSM_TIMEOUT at the client's timeout. */
static void test_submit_timeout(void **state)
{
    void *fake = dlopen(COFFER_FAKE_P11, RTLD_NOW | RTLD_LOCAL);
    void (*set_delay)(unsigned ms);
    hsm_pin_source pin = {NULL, "HT_SLOW_PIN"};
    hsm_client *c;
    engine_key *dk = NULL;
    struct answer wa;

    if (fake == NULL)
        ts_skip("cannot load the fake PKCS#11 module %s: %s", COFFER_FAKE_P11, dlerror());
    *(void **)&set_delay = dlsym(fake, "coffer_fake_p11_set_delay_ms");
    assert_non_null(set_delay);
    setenv("HT_SLOW_PIN", "1234", 1);
    c = client_open(COFFER_FAKE_P11, "slow", "slow-kek", pin, 300);
    assert_int_equal(engine_key_generate(&dk, HSM_DATA_KEY_LEN), 0);
    set_delay(3000);
    answer_init(&wa);
    assert_int_equal(hsm_kek_wrap_submit(c, dk, on_wrap, &wa), 0);
    answer_wait(&wa, 1);
    assert_int_equal(wa.r, COFFER_ERR_HSM_TIMEOUT);
    assert_non_null(strstr(wa.st.text, "did not answer within 300 ms"));
    set_delay(0);
    answer_done(&wa);
    engine_key_free(dk);
    hsm_client_close(c); /* waits up to the timeout for the slow call, then leaves it */
    /* kept loaded: a detached HSM thread may still be inside it. Before this program exits
       (OpenSSL's exit handlers free locks that thread still takes), let the call end. */
    for (int i = 0; i < 200 && hsm_client_calls_in_progress() > 0; i++)
        usleep(50000);
    assert_int_equal(hsm_client_calls_in_progress(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wrap_unwrap_submit),
        cmocka_unit_test(test_retriever_submit),
        cmocka_unit_test(test_submit_timeout),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
