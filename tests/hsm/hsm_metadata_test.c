/* SPDX-License-Identifier: Apache-2.0 */
/* hsm_metadata: the pkcs11 keyRetrieverConfig built, parsed back, and malformed configs refused. */
#include "coffer_error.h"
#include "engine_metadata.h"
#include "hsm_metadata.h"
#include "test_support.h"

#include <openssl/evp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

static void sample(hsm_wrapped *w)
{
    memset(w, 0, sizeof(*w));
    snprintf(w->key_label, sizeof(w->key_label), "coffer-kek-2024");
    for (int i = 0; i < HSM_IV_LEN; i++)
        w->iv[i] = (uint8_t)(0xf0 + i);
    for (int i = 0; i < HSM_WRAPPED_LEN; i++)
        w->wrapped[i] = (uint8_t)(i * 7 + 1);
}

static void test_build_and_parse(void **state)
{
    hsm_wrapped w;
    hsm_metadata_config mc;
    char detail[256];
    uint8_t dec[64];

    sample(&w);
    json_t *m = hsm_metadata_new("/usr/lib/softhsm/libsofthsm2.so", "coffer", &w, "coffer-v1",
                                 "0123456789abcdef");
    assert_non_null(m);
    char *text = engine_metadata_dump(m);
    /* The first three fields are the design's EncryptionStatus, in order. */
    assert_true(strncmp(text,
                        "{\"isEncrypted\":true,\"keyRetrieverType\":\"pkcs11\","
                        "\"keyRetrieverConfig\":{\"module\":",
                        strlen("{\"isEncrypted\":true,\"keyRetrieverType\":\"pkcs11\","
                               "\"keyRetrieverConfig\":{\"module\":")) == 0);
    engine_metadata em;
    assert_int_equal(engine_metadata_parse(&em, text, strlen(text)), 0);
    assert_string_equal(em.retriever, "pkcs11");
    assert_string_equal(em.key_id, "0123456789abcdef");
    const json_t *cfg = json_object_get(em.json, "keyRetrieverConfig");

    /* The base64 is OpenSSL's standard encoding of the raw bytes. */
    const char *iv64 = json_string_value(json_object_get(cfg, "iv"));
    assert_int_equal(strlen(iv64), 16);
    assert_int_equal(EVP_DecodeBlock(dec, (const unsigned char *)iv64, 16), 12);
    assert_memory_equal(dec, w.iv, 12);
    assert_string_equal(json_string_value(json_object_get(cfg, "mechanism")), "CKM_AES_GCM");

    assert_int_equal(hsm_metadata_config_parse(cfg, &mc, detail, sizeof(detail)), 0);
    assert_string_equal(mc.module, "/usr/lib/softhsm/libsofthsm2.so");
    assert_string_equal(mc.token, "coffer");
    assert_memory_equal(&mc.wrapped, &w, sizeof(w));
    engine_metadata_clear(&em);
    free(text);
    json_decref(m);
}

static void expect_bad(json_t *cfg, const char *needle)
{
    hsm_metadata_config mc;
    char detail[256];
    assert_int_equal(hsm_metadata_config_parse(cfg, &mc, detail, sizeof(detail)),
                     COFFER_ERR_METADATA);
    if (strstr(detail, needle) == NULL)
        fprintf(stderr, "detail: %s (wanted %s)\n", detail, needle);
    assert_non_null(strstr(detail, needle));
    assert_int_equal(mc.wrapped.key_label[0], 0);
}

static void test_malformed(void **state)
{
    hsm_wrapped w;
    char long_label[300];
    sample(&w);
    json_t *good = hsm_metadata_config_new("softhsm2", "coffer", &w);

    expect_bad(NULL, "not an object");
    json_t *arr = json_array();
    expect_bad(arr, "not an object");
    json_decref(arr);

    static const char *fields[] = {"module", "token", "keyLabel", "mechanism", "iv", "wrappedKey"};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        json_t *c = json_deep_copy(good);
        json_object_del(c, fields[i]);
        expect_bad(c, fields[i]);
        json_object_set_new(c, fields[i], json_integer(1));
        expect_bad(c, fields[i]);
        json_object_set_new(c, fields[i], json_string(""));
        expect_bad(c, fields[i]);
        json_decref(c);
    }
    json_t *c = json_deep_copy(good);
    json_object_set_new(c, "mechanism", json_string("CKM_AES_CBC"));
    expect_bad(c, "not supported");
    json_object_set_new(c, "mechanism", json_string("CKM_AES_GCM"));
    json_object_set_new(c, "iv", json_string("AAAAAAAAAAAAAAAAAAAA")); /* 15 bytes */
    expect_bad(c, "iv");
    json_object_set_new(c, "iv", json_string("AAAAAAAAAAAA*AAA"));
    expect_bad(c, "not valid base64");
    json_object_set_new(c, "iv", json_string("AAAAAAAAAAAAAAA="));
    expect_bad(c, "iv");
    json_object_set_new(c, "iv", json_string(" AAAAAAAAAAAAAAA"));
    expect_bad(c, "iv");
    json_decref(c);

    c = json_deep_copy(good);
    memset(long_label, 'x', sizeof(long_label) - 1);
    long_label[sizeof(long_label) - 1] = '\0';
    json_object_set_new(c, "keyLabel", json_string(long_label));
    expect_bad(c, "keyLabel");
    json_object_set_new(c, "keyLabel", json_string("a\tb"));
    expect_bad(c, "control character");
    json_object_set_new(c, "keyLabel", json_string("ok"));
    json_object_set_new(c, "token", json_string("a-token-label-of-more-than-32-bytes"));
    expect_bad(c, "token");
    json_decref(c);
    json_decref(good);
}

/* The other mechanisms: what they store, and that it parses back to the same blob. */
static void test_other_mechanisms(void **state)
{
    hsm_wrapped w;
    hsm_metadata_config mc;
    char detail[256];
    char *t;

    /* RFC 5649 key wrap: no iv, 40 bytes */
    memset(&w, 0, sizeof(w));
    snprintf(w.key_label, sizeof(w.key_label), "kwp-kek");
    w.mech = HSM_MECH_KWP;
    w.kwp_ckm = CKM_AES_KEY_WRAP_KWP;
    w.wrapped_len = HSM_KWP_LEN;
    for (int i = 0; i < HSM_KWP_LEN; i++)
        w.wrapped[i] = (uint8_t)(i + 1);
    json_t *cfg = hsm_metadata_config_new("m", "t", &w);
    t = json_dumps(cfg, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_string_equal(t, "{\"module\":\"m\",\"token\":\"t\",\"keyLabel\":\"kwp-kek\","
                           "\"mechanism\":\"CKM_AES_KEY_WRAP_KWP\",\"wrappedKey\":"
                           "\"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKA==\"}");
    free(t);
    assert_int_equal(hsm_metadata_config_parse(cfg, &mc, detail, sizeof(detail)), 0);
    assert_memory_equal(&mc.wrapped, &w, sizeof(w));
    json_object_set_new(cfg, "mechanism", json_string("CKM_AES_KEY_WRAP_PAD"));
    assert_int_equal(hsm_metadata_config_parse(cfg, &mc, detail, sizeof(detail)), 0);
    assert_int_equal(mc.wrapped.kwp_ckm, CKM_AES_KEY_WRAP_PAD);
    /* a GCM-sized blob under a key-wrap mechanism is refused */
    json_object_set_new(cfg, "wrappedKey",
                        json_string("AQgPFh0kKzI5QEdOVVxjanF4f4aNlJuiqbC3vsXM09rh6O/2/QQLEhkgJy41"
                                    "PENK"));
    assert_int_equal(hsm_metadata_config_parse(cfg, &mc, detail, sizeof(detail)),
                     COFFER_ERR_METADATA);
    assert_non_null(strstr(detail, "40 bytes"));
    json_decref(cfg);

    /* encrypt-then-MAC: 16-byte iv, 48 bytes, the HMAC key's label and the MAC */
    memset(&w, 0, sizeof(w));
    snprintf(w.key_label, sizeof(w.key_label), "etm-kek");
    snprintf(w.mac_key_label, sizeof(w.mac_key_label), "etm-kek-hmac");
    w.mech = HSM_MECH_CBC_HMAC;
    w.iv_len = HSM_IV_MAX;
    w.wrapped_len = HSM_CBC_LEN;
    ts_fill(w.iv, HSM_IV_MAX, 1);
    ts_fill(w.wrapped, HSM_CBC_LEN, 2);
    ts_fill(w.mac, HSM_MAC_LEN, 3);
    cfg = hsm_metadata_config_new("m", "t", &w);
    assert_string_equal(json_string_value(json_object_get(cfg, "mechanism")),
                        "CKM_AES_CBC_PAD+CKM_SHA256_HMAC");
    assert_string_equal(json_string_value(json_object_get(cfg, "macKeyLabel")), "etm-kek-hmac");
    assert_int_equal(strlen(json_string_value(json_object_get(cfg, "iv"))), 24);
    assert_int_equal(strlen(json_string_value(json_object_get(cfg, "mac"))), 44);
    assert_int_equal(hsm_metadata_config_parse(cfg, &mc, detail, sizeof(detail)), 0);
    assert_memory_equal(&mc.wrapped, &w, sizeof(w));
    static const char *need[] = {"mac", "macKeyLabel", "iv"};
    for (size_t i = 0; i < 3; i++) {
        json_t *c = json_deep_copy(cfg);
        json_object_del(c, need[i]);
        expect_bad(c, need[i]);
        json_decref(c);
    }
    json_decref(cfg);
}

static void test_fallback_note(void **state)
{
    hsm_status st;
    hsm_status_set(&st, COFFER_ERR_HSM_TOKEN, "token", HSM_STATUS_NO_RV,
                   "no token labelled 'coffer' in PKCS#11 module 'softhsm2'");
    json_t *f = hsm_metadata_fallback_new("softhsm2", "coffer", "kek-1", &st);
    char *t = json_dumps(f, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_string_equal(t, "{\"keyRetrieverType\":\"pkcs11\",\"module\":\"softhsm2\",\"token\":"
                           "\"coffer\",\"keyLabel\":\"kek-1\",\"step\":\"token\",\"error\":"
                           "\"HSM_TOKEN\",\"reason\":\"no token labelled 'coffer' in PKCS#11 "
                           "module 'softhsm2'\"}");
    free(t);
    json_decref(f);

    /* A sentence with bytes that are not UTF-8 still makes valid JSON. */
    hsm_status_set(&st, COFFER_ERR_HSM_MODULE, "module", 0x5UL, "module '\xff\xfe' failed");
    f = hsm_metadata_fallback_new("x", NULL, NULL, &st);
    assert_non_null(f);
    assert_string_equal(json_string_value(json_object_get(f, "ckr")), "CKR_GENERAL_ERROR");
    assert_string_equal(json_string_value(json_object_get(f, "reason")), "module '?"
                                                                         "?' failed");
    json_decref(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_and_parse),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_other_mechanisms),
        cmocka_unit_test(test_fallback_note),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
