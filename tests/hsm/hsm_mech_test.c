/* SPDX-License-Identifier: Apache-2.0 */
/* Mechanism negotiation and sessions: the fake module's hardware-HSM behaviours, SoftHSM2's key
 * wrap, and a restore on a token that lacks the backup's mechanism. */
#include "coffer_error.h"
#include "engine_key.h"
#include "hsm_admin.h"
#include "hsm_client.h"
#include "hsm_kek.h"
#include "hsm_metadata.h"
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

static void (*fake_stats)(unsigned *peak, unsigned *inits);
static void (*fake_delay)(unsigned ms);
static struct ht_env env;
static char tokdir[1200];

/* The client's log lines, for checking what it said. */
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char log_text[8192];

static void keep_log(void *ctx, const char *line)
{
    (void)ctx;
    pthread_mutex_lock(&log_mu);
    size_t n = strlen(log_text);
    snprintf(log_text + n, sizeof(log_text) - n, "%s\n", line);
    pthread_mutex_unlock(&log_mu);
}

static unsigned next_max_sessions; /* for the next fake_client */

static hsm_client *fake_client(const char *mode, int mech, unsigned threads)
{
    hsm_client *c;
    hsm_status st;
    hsm_client_config cfg = {.module = COFFER_FAKE_P11,
                             .token = "slow",
                             .key_label = "slow-kek",
                             .pin = {NULL, "HT_SLOW_PIN"},
                             .timeout_ms = 20000,
                             .threads = threads,
                             .log = keep_log,
                             .mechanism = mech,
                             .max_sessions = next_max_sessions};
    next_max_sessions = 0;
    setenv("COFFER_FAKE_P11_MODE", mode, 1); /* read by the fake's C_Initialize */
    log_text[0] = '\0';
    assert_int_equal(hsm_client_open(&c, &cfg, &st), 0);
    return c;
}

static engine_key *data_key(void)
{
    engine_key *k;
    assert_int_equal(engine_key_generate(&k, HSM_DATA_KEY_LEN), 0);
    return k;
}

static void round_trip(hsm_client *c, hsm_wrapped *w)
{
    engine_key *dk = data_key(), *back = NULL;
    hsm_status st;
    int r = hsm_kek_wrap(c, dk, w, &st);
    if (r != 0)
        fail_msg("wrap: %s", st.text);
    r = hsm_kek_unwrap(c, w, &back, &st);
    if (r != 0)
        fail_msg("unwrap: %s", st.text);
    assert_memory_equal(back->bytes, dk->bytes, HSM_DATA_KEY_LEN);
    engine_key_free(dk);
    engine_key_free(back);
}

/* A token that takes our IV: the first choice. */
static void test_fake_gcm_our_iv(void **state)
{
    hsm_client *c = fake_client("iv-bits", HSM_MECH_AUTO, 1);
    hsm_negotiation neg;
    hsm_status st;
    hsm_wrapped w;
    assert_int_equal(hsm_kek_negotiate(c, &neg, &st), 0);
    assert_int_equal(neg.mech, HSM_MECH_GCM);
    round_trip(c, &w);
    assert_int_equal(hsm_wrapped_mech(&w), HSM_MECH_GCM);
    hsm_client_close(c);
}

/* A FIPS-mode token that refuses our IV and generates its own (and wants ulIvBits). */
static void test_fake_token_iv(void **state)
{
    hsm_client *c = fake_client("token-iv,iv-bits", HSM_MECH_AUTO, 1);
    hsm_negotiation neg;
    hsm_status st;
    hsm_wrapped w, w2;
    engine_key *back = NULL;
    static const uint8_t zero[HSM_IV_LEN];

    assert_int_equal(hsm_kek_negotiate(c, &neg, &st), 0);
    assert_int_equal(neg.mech, HSM_MECH_GCM_TOKEN_IV);
    assert_non_null(strstr(neg.why[HSM_MECH_GCM], "CKR_MECHANISM_PARAM_INVALID"));
    round_trip(c, &w);
    round_trip(c, &w2);
    /* the IVs are the token's: not the zeros we passed, and fresh each time */
    assert_memory_not_equal(w.iv, zero, HSM_IV_LEN);
    assert_memory_not_equal(w.iv, w2.iv, HSM_IV_LEN);
    /* stored as plain CKM_AES_GCM: a restore decrypts with the recorded IV */
    json_t *cfg = hsm_metadata_config_new("fake", "slow", &w);
    assert_string_equal(json_string_value(json_object_get(cfg, "mechanism")), "CKM_AES_GCM");
    json_decref(cfg);
    w.wrapped[3] ^= 1;
    assert_int_equal(hsm_kek_unwrap(c, &w, &back, &st), COFFER_ERR_WRONG_KEY);
    assert_null(back);
    hsm_client_close(c);

    /* forced to our IV, the same token refuses with a sentence that says why */
    c = fake_client("token-iv", HSM_MECH_GCM, 1);
    engine_key *dk = data_key();
    assert_int_equal(hsm_kek_wrap(c, dk, &w, &st), COFFER_ERR_HSM_CALL);
    assert_non_null(strstr(st.text, "gcm: a trial C_Encrypt with our IV failed"));
    engine_key_free(dk);
    hsm_client_close(c);
}

/* Several threads calling at once: a pool of sessions, and every call succeeds. */
struct hammer {
    hsm_client *c;
    int rounds;
    int failures;
};

static void *hammer_main(void *arg)
{
    struct hammer *h = arg;
    for (int i = 0; i < h->rounds; i++) {
        engine_key *dk, *back = NULL;
        hsm_wrapped w;
        hsm_status st;
        if (engine_key_generate(&dk, HSM_DATA_KEY_LEN) != 0)
            abort();
        if (hsm_kek_wrap(h->c, dk, &w, &st) != 0 || hsm_kek_unwrap(h->c, &w, &back, &st) != 0 ||
            memcmp(back->bytes, dk->bytes, HSM_DATA_KEY_LEN) != 0) {
            fprintf(stderr, "call failed: %s\n", st.text);
            __atomic_add_fetch(&h->failures, 1, __ATOMIC_SEQ_CST);
        }
        engine_key_free(dk);
        engine_key_free(back);
    }
    return NULL;
}

/* Six callers on four HSM threads; each token call takes delay_ms, so that the threads overlap
 * and want sessions at the same time. */
static void hammer_with(const char *mode, int rounds, unsigned delay_ms)
{
    hsm_client *c = fake_client(mode, HSM_MECH_AUTO, 4);
    struct hammer h = {c, rounds, 0};
    pthread_t th[6];
    unsigned peak, inits0, inits1;
    hsm_status st;

    assert_int_equal(hsm_client_connect(c, &st), 0);
    fake_stats(&peak, &inits0);
    fake_delay(delay_ms);
    for (int i = 0; i < 6; i++)
        assert_int_equal(pthread_create(&th[i], NULL, hammer_main, &h), 0);
    for (int i = 0; i < 6; i++)
        pthread_join(th[i], NULL);
    fake_delay(0);
    fake_stats(&peak, &inits1);
    assert_int_equal(h.failures, 0);
    assert_true(peak <= 2);           /* the login's session and one for the four HSM threads */
    assert_int_equal(inits1, inits0); /* never reported as an outage and reconnected */
    assert_null(strstr(log_text, "lost the connection"));
    hsm_client_close(c);
}

/* The token says ulMaxSessionCount 2: four HSM threads share one session. */
static void test_fake_session_limit(void **state)
{
    hammer_with("max-sessions=2", 15, 0);
}

/* An unlimited token and --hsm-max-sessions 1: the four HSM threads share one session. */
static void test_fake_max_sessions_flag(void **state)
{
    next_max_sessions = 1;
    hammer_with("", 4, 20);
}

/* The token hides its limit and answers CKR_SESSION_COUNT: retried, not an outage. */
static void test_fake_session_count(void **state)
{
    hammer_with("max-sessions=2,hide-max", 2, 300);
    assert_non_null(strstr(log_text, "CKR_SESSION_COUNT"));
}

/* The token closes a session under a call: the call is retried on a fresh session. */
static void test_fake_closed_session(void **state)
{
    hsm_client *c = fake_client("close-once", HSM_MECH_AUTO, 1);
    unsigned peak, inits0, inits1;
    hsm_status st;
    hsm_wrapped w;

    assert_int_equal(hsm_client_connect(c, &st), 0);
    fake_stats(&peak, &inits0);
    round_trip(c, &w);
    fake_stats(&peak, &inits1);
    assert_int_equal(inits1, inits0);
    assert_non_null(strstr(log_text, "retried on a fresh session"));
    assert_null(strstr(log_text, "lost the connection"));
    hsm_client_close(c);
}

/* Backups whose mechanism the token lacks are refused with the mechanism and key they need. */
static void test_fake_lacks_mechanism(void **state)
{
    hsm_client *c = fake_client("", HSM_MECH_AUTO, 1);
    hsm_wrapped w;
    engine_key *back = NULL;
    hsm_status st;

    memset(&w, 0, sizeof(w));
    snprintf(w.key_label, sizeof(w.key_label), "slow-kek");
    w.mech = HSM_MECH_KWP;
    w.kwp_ckm = CKM_AES_KEY_WRAP_PAD;
    w.wrapped_len = HSM_KWP_LEN;
    assert_int_equal(hsm_kek_unwrap(c, &w, &back, &st), COFFER_ERR_HSM_CALL);
    assert_non_null(strstr(st.text, "wrapped with CKM_AES_KEY_WRAP_PAD under key 'slow-kek'"));
    assert_non_null(strstr(st.text, "does not offer CKM_AES_KEY_WRAP_PAD"));

    memset(&w, 0, sizeof(w));
    snprintf(w.key_label, sizeof(w.key_label), "slow-kek");
    snprintf(w.mac_key_label, sizeof(w.mac_key_label), "slow-kek-hmac");
    w.mech = HSM_MECH_CBC_HMAC;
    w.iv_len = HSM_IV_MAX;
    w.wrapped_len = HSM_CBC_LEN;
    assert_int_equal(hsm_kek_unwrap(c, &w, &back, &st), COFFER_ERR_HSM_CALL);
    assert_non_null(strstr(st.text, "CKM_AES_CBC_PAD+CKM_SHA256_HMAC"));
    assert_non_null(strstr(st.text, "HMAC key slow-kek-hmac"));
    assert_null(back);

    /* and a forced mechanism the token lacks fails the wrap with the reason */
    hsm_client_close(c);
    c = fake_client("", HSM_MECH_CBC_HMAC, 1);
    engine_key *dk = data_key();
    assert_int_equal(hsm_kek_wrap(c, dk, &w, &st), COFFER_ERR_HSM_CALL);
    assert_non_null(strstr(st.text, "does not offer CKM_AES_CBC_PAD"));
    engine_key_free(dk);
    hsm_client_close(c);
}

/* ---- SoftHSM2 ---- */

static hsm_client *softhsm_client(const char *label, int mech)
{
    hsm_client *c;
    hsm_status st;
    hsm_client_config cfg = {.module = env.module,
                             .token = "mech",
                             .key_label = label,
                             .pin = {env.pin_file, NULL},
                             .timeout_ms = 20000,
                             .threads = 2,
                             .log = keep_log,
                             .mechanism = mech};
    assert_int_equal(hsm_client_open(&c, &cfg, &st), 0);
    return c;
}

/* Auto on SoftHSM2 is GCM with our IV, as before negotiation. */
static void test_softhsm_auto_is_gcm(void **state)
{
    hsm_client *c = softhsm_client("auto-kek", HSM_MECH_AUTO);
    hsm_negotiation neg;
    hsm_status st;
    hsm_wrapped w;
    assert_int_equal(hsm_admin_kek_create_for(c, "auto-kek", &neg, &st), 0);
    assert_int_equal(neg.mech, HSM_MECH_GCM);
    round_trip(c, &w);
    assert_int_equal(w.mech, HSM_MECH_AUTO); /* the form of every GCM blob */
    hsm_client_close(c);
}

/* RFC 5649 key wrap through C_WrapKey/C_UnwrapKey, forced. */
static void test_softhsm_kwp(void **state)
{
    hsm_client *c = softhsm_client("kwp-kek", HSM_MECH_KWP);
    hsm_negotiation neg;
    hsm_status st;
    hsm_wrapped w;
    hsm_metadata_config mc;
    engine_key *back = NULL;
    char detail[256];

    assert_int_equal(hsm_admin_kek_create_for(c, "kwp-kek", &neg, &st), 0);
    assert_int_equal(neg.mech, HSM_MECH_KWP);
    assert_int_equal(neg.kwp_ckm, CKM_AES_KEY_WRAP_PAD); /* SoftHSM2 2.6's name for it */
    round_trip(c, &w);
    assert_int_equal(w.mech, HSM_MECH_KWP);
    assert_int_equal(w.wrapped_len, HSM_KWP_LEN);

    /* the metadata names it and parses back to the same blob */
    json_t *cfg = hsm_metadata_config_new("softhsm2", "mech", &w);
    assert_string_equal(json_string_value(json_object_get(cfg, "mechanism")),
                        "CKM_AES_KEY_WRAP_PAD");
    assert_null(json_object_get(cfg, "iv"));
    assert_int_equal(strlen(json_string_value(json_object_get(cfg, "wrappedKey"))), 56);
    assert_int_equal(hsm_metadata_config_parse(cfg, &mc, detail, sizeof(detail)), 0);
    assert_memory_equal(&mc.wrapped, &w, sizeof(w));
    json_decref(cfg);

    /* a data key left no object behind on the token */
    struct ht_raw raw;
    CK_OBJECT_HANDLE h[8];
    ht_raw_open(&env, "mech", &raw);
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE t[1] = {{CKA_CLASS, &cls, sizeof(cls)}};
    CK_ULONG n = 0;
    assert_int_equal(raw.f->C_FindObjectsInit(raw.s, t, 1), CKR_OK);
    assert_int_equal(raw.f->C_FindObjects(raw.s, h, 8, &n), CKR_OK);
    assert_int_equal(raw.f->C_FindObjectsFinal(raw.s), CKR_OK);
    assert_int_equal(n, 2); /* auto-kek and kwp-kek */
    ht_raw_close(&raw);

    /* tampering is refused, nothing released */
    w.wrapped[20] ^= 0x10;
    assert_int_equal(hsm_kek_unwrap(c, &w, &back, &st), COFFER_ERR_WRONG_KEY);
    assert_null(back);
    hsm_client_close(c);

    /* auto with this key: GCM passed over because the key may only wrap */
    c = softhsm_client("kwp-kek", HSM_MECH_AUTO);
    assert_int_equal(hsm_kek_negotiate(c, &neg, &st), 0);
    assert_int_equal(neg.mech, HSM_MECH_KWP);
    assert_non_null(strstr(neg.why[HSM_MECH_GCM], "may not encrypt"));
    hsm_client_close(c);
}

/* Encrypt-then-MAC forced on SoftHSM2 (which also has it): a changed ciphertext, IV or MAC is
 * refused by C_Verify before anything is decrypted. */
static void test_softhsm_cbc_hmac(void **state)
{
    hsm_client *c = softhsm_client("etm-kek", HSM_MECH_CBC_HMAC);
    hsm_negotiation neg;
    hsm_status st;
    hsm_wrapped w, bad;
    engine_key *back = NULL;

    assert_int_equal(hsm_admin_kek_create_for(c, "etm-kek", &neg, &st), 0);
    assert_int_equal(neg.mech, HSM_MECH_CBC_HMAC);
    round_trip(c, &w);
    assert_int_equal(w.mech, HSM_MECH_CBC_HMAC);
    assert_string_equal(w.mac_key_label, "etm-kek-hmac");
    for (int i = 0; i < 3; i++) {
        bad = w;
        if (i == 0)
            bad.wrapped[47] ^= 1;
        else if (i == 1)
            bad.iv[0] ^= 1;
        else
            bad.mac[31] ^= 1;
        assert_int_equal(hsm_kek_unwrap(c, &bad, &back, &st), COFFER_ERR_WRONG_KEY);
        assert_non_null(strstr(st.text, "CKR_SIGNATURE_INVALID"));
        assert_null(back);
    }
    hsm_client_close(c);
}

static int group_setup(void **state)
{
    void *fake = dlopen(COFFER_FAKE_P11, RTLD_NOW | RTLD_LOCAL);
    setenv("HT_SLOW_PIN", "1234", 1);
    if (fake == NULL)
        ts_skip("cannot load the fake PKCS#11 module %s: %s", COFFER_FAKE_P11, dlerror());
    *(void **)&fake_stats = dlsym(fake, "coffer_fake_p11_stats");
    assert_non_null(fake_stats);
    *(void **)&fake_delay = dlsym(fake, "coffer_fake_p11_set_delay_ms");
    assert_non_null(fake_delay);
    ht_env_setup(&env);
    ht_token_init(&env, "mech", tokdir, sizeof(tokdir));
    return 0;
}

static int group_teardown(void **state)
{
    ht_env_teardown(&env);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fake_gcm_our_iv),      cmocka_unit_test(test_fake_token_iv),
        cmocka_unit_test(test_fake_session_limit),   cmocka_unit_test(test_fake_max_sessions_flag),
        cmocka_unit_test(test_fake_session_count),   cmocka_unit_test(test_fake_closed_session),
        cmocka_unit_test(test_fake_lacks_mechanism), cmocka_unit_test(test_softhsm_auto_is_gcm),
        cmocka_unit_test(test_softhsm_kwp),          cmocka_unit_test(test_softhsm_cbc_hmac),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
