/* SPDX-License-Identifier: Apache-2.0 */
/* hsm_cache: hits and evictions by age, uses, bytes and capacity under an injected clock; threads.
 */
#include "coffer_error.h"
#include "hsm_cache.h"
#include "test_support.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

static uint64_t now_ms;

static uint64_t test_clock(void *ctx)
{
    (void)ctx;
    return now_ms;
}

static engine_key *new_key(void)
{
    engine_key *k;
    assert_int_equal(engine_key_generate(&k, 32), 0);
    return k;
}

static void new_blob(hsm_wrapped *w, const char *label)
{
    memset(w, 0, sizeof(*w));
    snprintf(w->key_label, sizeof(w->key_label), "%s", label);
    ts_fill(w->iv, sizeof(w->iv), (uint64_t)now_ms + (uint64_t)(uintptr_t)w);
    ts_fill(w->wrapped, sizeof(w->wrapped), (uint64_t)now_ms * 31 + 7);
}

static hsm_cache *cache(uint64_t age, uint64_t uses, uint64_t bytes, size_t entries)
{
    hsm_cache *c;
    hsm_cache_limits lim = {age, uses, bytes, entries};
    now_ms = 5000000;
    assert_int_equal(hsm_cache_new(&c, &lim, test_clock, NULL), 0);
    return c;
}

static void test_current_by_uses(void **state)
{
    hsm_cache *c = cache(300, 3, 0, 4);
    engine_key *k = new_key(), *got;
    hsm_wrapped w, wg;
    hsm_cache_stats s;

    assert_int_equal(hsm_cache_current_take(c, 0, &got, &wg), 0); /* empty */
    new_blob(&w, "kek");
    assert_int_equal(hsm_cache_current_set(c, k, &w, 0), 0); /* use 1 */
    for (int i = 0; i < 2; i++) {                            /* uses 2 and 3 */
        assert_int_equal(hsm_cache_current_take(c, 0, &got, &wg), 1);
        assert_memory_equal(got->bytes, k->bytes, 32);
        assert_string_equal(got->id, k->id);
        assert_memory_equal(&wg, &w, sizeof(w));
        engine_key_free(got);
    }
    assert_int_equal(hsm_cache_current_take(c, 0, &got, &wg), 0);
    assert_null(got);
    hsm_cache_stats_get(c, &s);
    assert_int_equal(s.backup_hits, 2);
    assert_int_equal(s.backup_misses, 1); /* one key was made */
    assert_int_equal(s.evicted_uses, 1);
    assert_false(s.have_current);
    assert_int_equal(s.restore_entries, 1); /* the key is still there for restores */
    engine_key_free(k);
    hsm_cache_free(c);
}

static void test_current_by_age(void **state)
{
    hsm_cache *c = cache(60, 0, 0, 4);
    engine_key *k = new_key(), *got;
    hsm_wrapped w, wg;
    hsm_cache_stats s;

    new_blob(&w, "kek");
    assert_int_equal(hsm_cache_current_set(c, k, &w, 0), 0);
    now_ms += 59999;
    assert_int_equal(hsm_cache_current_take(c, 0, &got, &wg), 1);
    engine_key_free(got);
    assert_int_equal(hsm_cache_restore_take(c, &w, &got), 1);
    engine_key_free(got);
    now_ms += 1;
    assert_int_equal(hsm_cache_current_take(c, 0, &got, &wg), 0);
    assert_int_equal(hsm_cache_restore_take(c, &w, &got), 0);
    hsm_cache_stats_get(c, &s);
    assert_int_equal(s.evicted_age, 2); /* the current key and its restore copy */
    assert_int_equal(s.restore_entries, 0);
    engine_key_free(k);
    hsm_cache_free(c);
}

static void test_current_by_bytes(void **state)
{
    hsm_cache *c = cache(300, 0, 1000, 4);
    engine_key *k = new_key(), *got;
    hsm_wrapped w, wg;
    hsm_cache_stats s;

    new_blob(&w, "kek");
    assert_int_equal(hsm_cache_current_set(c, k, &w, 600), 0);
    assert_int_equal(hsm_cache_current_take(c, 300, &got, &wg), 1); /* 900 */
    engine_key_free(got);
    assert_int_equal(hsm_cache_current_take(c, 101, &got, &wg), 0); /* would be 1001 */
    hsm_cache_stats_get(c, &s);
    assert_int_equal(s.evicted_bytes, 1);

    /* Bytes reported after a backup ends count too. */
    new_blob(&w, "kek");
    assert_int_equal(hsm_cache_current_set(c, k, &w, 0), 0);
    hsm_cache_current_account(c, "0000000000000000", 5000); /* another key: ignored */
    assert_int_equal(hsm_cache_current_take(c, 0, &got, &wg), 1);
    engine_key_free(got);
    hsm_cache_current_account(c, k->id, 999);
    assert_int_equal(hsm_cache_current_take(c, 1, &got, &wg), 1); /* exactly 1000 */
    engine_key_free(got);
    assert_int_equal(hsm_cache_current_take(c, 0, &got, &wg), 0); /* no room left */
    hsm_cache_stats_get(c, &s);
    assert_int_equal(s.evicted_bytes, 2);

    /* A single backup larger than the bound never reuses. */
    assert_int_equal(hsm_cache_current_set(c, k, &w, 0), 0);
    assert_int_equal(hsm_cache_current_take(c, UINT64_MAX, &got, &wg), 0);
    engine_key_free(k);
    hsm_cache_free(c);
}

static void test_restore_capacity_and_uses(void **state)
{
    hsm_cache *c = cache(300, 2, 0, 2);
    engine_key *k[3], *got;
    hsm_wrapped w[3];
    hsm_cache_stats s;

    for (int i = 0; i < 3; i++) {
        k[i] = new_key();
        now_ms += 10;
        new_blob(&w[i], "kek");
    }
    assert_int_equal(hsm_cache_restore_put(c, &w[0], k[0]), 0);
    now_ms += 10;
    assert_int_equal(hsm_cache_restore_put(c, &w[1], k[1]), 0);
    now_ms += 10;
    assert_int_equal(hsm_cache_restore_take(c, &w[0], &got), 1); /* 0 is now more recent */
    assert_memory_equal(got->bytes, k[0]->bytes, 32);
    engine_key_free(got);
    now_ms += 10;
    assert_int_equal(hsm_cache_restore_put(c, &w[2], k[2]), 0); /* evicts 1, the LRU */
    assert_int_equal(hsm_cache_restore_take(c, &w[1], &got), 0);
    assert_int_equal(hsm_cache_restore_take(c, &w[2], &got), 1);
    assert_memory_equal(got->bytes, k[2]->bytes, 32);
    engine_key_free(got);
    hsm_cache_stats_get(c, &s);
    assert_int_equal(s.evicted_capacity, 1);

    /* Key 0 serves its second restore and is then dropped (max_uses 2). */
    assert_int_equal(hsm_cache_restore_take(c, &w[0], &got), 1);
    engine_key_free(got);
    assert_int_equal(hsm_cache_restore_take(c, &w[0], &got), 0);
    hsm_cache_stats_get(c, &s);
    assert_int_equal(s.evicted_uses, 1);

    /* The key is the whole blob: another label, IV or tag is another entry. */
    hsm_wrapped v = w[2];
    v.wrapped[HSM_WRAPPED_LEN - 1] ^= 1;
    assert_int_equal(hsm_cache_restore_take(c, &v, &got), 0);
    v = w[2];
    snprintf(v.key_label, sizeof(v.key_label), "kek2");
    assert_int_equal(hsm_cache_restore_take(c, &v, &got), 0);

    hsm_cache_clear(c);
    hsm_cache_stats_get(c, &s);
    assert_int_equal(s.restore_entries, 0);
    for (int i = 0; i < 3; i++)
        engine_key_free(k[i]);
    hsm_cache_free(c);
}

static void test_cache_off(void **state)
{
    hsm_cache *c = cache(0, 0, 0, 8);
    engine_key *k = new_key(), *got;
    hsm_wrapped w, wg;
    new_blob(&w, "kek");
    assert_int_equal(hsm_cache_current_set(c, k, &w, 0), 0);
    assert_int_equal(hsm_cache_current_take(c, 0, &got, &wg), 0);
    assert_int_equal(hsm_cache_restore_put(c, &w, k), 0);
    assert_int_equal(hsm_cache_restore_take(c, &w, &got), 0);
    engine_key_free(k);
    hsm_cache_free(c);

    hsm_cache_limits lim = {1, 1, 1, HSM_CACHE_MAX_ENTRIES + 1};
    assert_int_equal(hsm_cache_new(&c, &lim, NULL, NULL), COFFER_ERR_CONFIG);
    hsm_cache_limits_default(&lim);
    assert_int_equal(hsm_cache_new(&c, &lim, NULL, NULL), 0); /* the real clock */
    hsm_cache_free(c);
}

struct hammer_arg {
    hsm_cache *c;
    int id;
};

static void *hammer(void *p)
{
    struct hammer_arg *a = p;
    for (int i = 0; i < 2000; i++) {
        engine_key *k = NULL, *got = NULL;
        hsm_wrapped w, wg;
        memset(&w, 0, sizeof(w));
        snprintf(w.key_label, sizeof(w.key_label), "kek");
        w.iv[0] = (uint8_t)a->id;
        w.iv[1] = (uint8_t)(i % 7);
        if (hsm_cache_current_take(a->c, 10, &got, &wg) == 0) {
            if (engine_key_generate(&k, 32) != 0 || hsm_cache_current_set(a->c, k, &w, 10) != 0)
                abort();
        }
        engine_key_free(got);
        got = NULL;
        if (hsm_cache_restore_take(a->c, &w, &got) == 1 && got->len != 32)
            abort();
        engine_key_free(got);
        if (k != NULL && hsm_cache_restore_put(a->c, &w, k) != 0)
            abort();
        hsm_cache_current_account(a->c, "0123456789abcdef", 1);
        if (i % 500 == 0)
            hsm_cache_sweep(a->c);
        engine_key_free(k);
    }
    return NULL;
}

static void test_threads(void **state)
{
    hsm_cache *c;
    hsm_cache_limits lim = {300, 5, 100, 8};
    pthread_t t[4];
    struct hammer_arg a[4];
    assert_int_equal(hsm_cache_new(&c, &lim, NULL, NULL), 0);
    for (int i = 0; i < 4; i++) {
        a[i].c = c;
        a[i].id = i;
        assert_int_equal(pthread_create(&t[i], NULL, hammer, &a[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    hsm_cache_stats s;
    hsm_cache_stats_get(c, &s);
    assert_true(s.backup_hits > 0 && s.backup_misses > 0 && s.restore_hits > 0);
    assert_true(s.restore_entries <= 8);
    hsm_cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_current_by_uses),  cmocka_unit_test(test_current_by_age),
        cmocka_unit_test(test_current_by_bytes), cmocka_unit_test(test_restore_capacity_and_uses),
        cmocka_unit_test(test_cache_off),        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
