/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of engine_metadata: the builders' field order and the parser of untrusted metadata. */
#include "coffer_error.h"
#include "engine_metadata.h"
#include "test_support.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* The first n keys of an object, in order, joined with ','. */
static void first_keys(const json_t *o, int n, char *out, size_t outlen)
{
    void *it = json_object_iter((json_t *)o);
    out[0] = '\0';
    for (int i = 0; i < n && it != NULL; i++) {
        if (i > 0)
            strncat(out, ",", outlen - strlen(out) - 1);
        strncat(out, json_object_iter_key(it), outlen - strlen(out) - 1);
        it = json_object_iter_next((json_t *)o, it);
    }
}

/* Parse a copy of text in a buffer of exactly its length (no NUL after it: ASan sees overreads). */
static int parse_exact(engine_metadata *m, const char *text)
{
    size_t n = strlen(text);
    char *copy = malloc(n > 0 ? n : 1);
    assert_non_null(copy);
    memcpy(copy, text, n);
    int r = engine_metadata_parse(m, copy, n);
    /* the parsed strings must not point into the caller's buffer */
    free(copy);
    return r;
}

static void test_secret_builder(void **state)
{
    (void)state;
    json_t *m = engine_metadata_new_secret("velero", "coffer-key", "coffer-v1", "3f9a1c0b7d2e4a61");
    char keys[256];
    assert_non_null(m);
    first_keys(m, 5, keys, sizeof(keys));
    assert_string_equal(keys, "isEncrypted,keyRetrieverType,keyRetrieverConfig,format,keyId");
    char *text = engine_metadata_dump(m);
    assert_non_null(text);
    assert_string_equal(text, "{\"isEncrypted\":true,\"keyRetrieverType\":\"secret\","
                              "\"keyRetrieverConfig\":{\"namespace\":\"velero\",\"secretName\":"
                              "\"coffer-key\"},\"format\":\"coffer-v1\",\"keyId\":"
                              "\"3f9a1c0b7d2e4a61\"}");
    /* it parses back to the same facts */
    engine_metadata pm;
    assert_int_equal(parse_exact(&pm, text), 0);
    assert_true(pm.is_encrypted);
    assert_string_equal(pm.retriever, "secret");
    assert_string_equal(pm.ns, "velero");
    assert_string_equal(pm.secret, "coffer-key");
    assert_string_equal(pm.format, "coffer-v1");
    assert_string_equal(pm.key_id, "3f9a1c0b7d2e4a61");
    assert_non_null(pm.json);
    engine_metadata_clear(&pm);
    assert_null(pm.json);
    engine_metadata_clear(&pm); /* twice is harmless */
    free(text);
    json_decref(m);
}

static void test_file_builder(void **state)
{
    (void)state;
    char keys[256];
    json_t *m =
        engine_metadata_new_file("/etc/coffer/keys/backup.key", "cobblestone", "0011223344556677");
    assert_non_null(m);
    first_keys(m, 3, keys, sizeof(keys));
    assert_string_equal(keys, "isEncrypted,keyRetrieverType,keyRetrieverConfig");
    assert_true(json_is_true(json_object_get(m, "isEncrypted")));
    assert_string_equal(json_string_value(json_object_get(m, "keyRetrieverType")), "file");
    /* the config names the file by its base name, never its directory */
    json_t *cfg = json_object_get(m, "keyRetrieverConfig");
    assert_string_equal(json_string_value(json_object_get(cfg, "name")), "backup.key");
    assert_string_equal(json_string_value(json_object_get(m, "format")), "cobblestone");
    assert_string_equal(json_string_value(json_object_get(m, "keyId")), "0011223344556677");
    char *text = engine_metadata_dump(m);
    assert_null(strstr(text, "/etc/coffer"));
    engine_metadata pm;
    assert_int_equal(parse_exact(&pm, text), 0);
    assert_string_equal(pm.retriever, "file");
    assert_null(pm.ns);
    assert_null(pm.secret);
    engine_metadata_clear(&pm);
    free(text);
    json_decref(m);
    m = engine_metadata_new_file("plain.key", "coffer-v1", "0011223344556677");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(m, "keyRetrieverConfig"), "name")),
        "plain.key");
    json_decref(m);
}

static void test_plain_builder(void **state)
{
    (void)state;
    json_t *m = engine_metadata_new_plain();
    assert_non_null(m);
    /* isEncrypted comes first and is false; the format is "none" */
    void *it = json_object_iter(m);
    assert_string_equal(json_object_iter_key(it), "isEncrypted");
    assert_true(json_is_false(json_object_iter_value(it)));
    assert_string_equal(json_string_value(json_object_get(m, "format")), "none");
    json_t *t = json_object_get(m, "keyRetrieverType");
    if (t != NULL) { /* if present, in the EncryptionStatus order */
        char keys[256];
        first_keys(m, 3, keys, sizeof(keys));
        assert_string_equal(keys, "isEncrypted,keyRetrieverType,keyRetrieverConfig");
    }
    char *text = engine_metadata_dump(m);
    engine_metadata pm;
    assert_int_equal(parse_exact(&pm, text), 0);
    assert_false(pm.is_encrypted);
    assert_string_equal(pm.format, "none");
    assert_non_null(pm.retriever);
    assert_string_equal(pm.retriever, "");
    engine_metadata_clear(&pm);
    free(text);
    json_decref(m);
}

/* The prototype's metadata (EncryptionStatus only) and coffer's extensions parse. */
static void test_parse_accepts(void **state)
{
    (void)state;
    engine_metadata m;
    assert_int_equal(parse_exact(&m, "{\"isEncrypted\":true,\"keyRetrieverType\":\"secret\","
                                     "\"keyRetrieverConfig\":{\"namespace\":\"velero\","
                                     "\"secretName\":\"k\"}}"),
                     0);
    assert_null(m.key_id);
    assert_null(m.format);
    assert_string_equal(m.secret, "k");
    engine_metadata_clear(&m);
    /* other fields (fallback notes, byte counts, the HSM's wrapped key) are carried along */
    assert_int_equal(
        parse_exact(&m, " {\"isEncrypted\": true, \"keyRetrieverType\": \"pkcs11\", "
                        "\"keyRetrieverConfig\": {\"token\": \"t\", \"label\": \"kek\", "
                        "\"wrappedKey\": \"AAAA\"}, \"format\": \"coffer-v1\", \"keyId\": "
                        "\"0011223344556677\", \"bytesIn\": 12345, \"fallback\": {\"tried\": "
                        "[\"pkcs11\"]}} \n"),
        0);
    assert_string_equal(m.retriever, "pkcs11");
    assert_null(m.ns);
    assert_string_equal(m.key_id, "0011223344556677");
    assert_int_equal(json_integer_value(json_object_get(m.json, "bytesIn")), 12345);
    engine_metadata_clear(&m);
    /* not encrypted: nothing else is required */
    assert_int_equal(parse_exact(&m, "{\"isEncrypted\":false}"), 0);
    assert_false(m.is_encrypted);
    engine_metadata_clear(&m);
    /* a non-string keyId is not a key id */
    assert_int_equal(parse_exact(&m, "{\"isEncrypted\":true,\"keyRetrieverType\":\"file\","
                                     "\"keyId\":42}"),
                     0);
    assert_null(m.key_id);
    engine_metadata_clear(&m);
}

static void expect_bad(const char *text, int err)
{
    engine_metadata m;
    memset(&m, 0x5a, sizeof(m));
    int r = parse_exact(&m, text);
    if (r != err)
        print_error("parse of %.200s: %s, expected %s\n", text, coffer_errname(r),
                    coffer_errname(err));
    assert_int_equal(r, err);
    assert_null(m.json); /* nothing left to free */
    engine_metadata_clear(&m);
}

static void test_parse_refuses(void **state)
{
    (void)state;
    /* not JSON, not an object */
    expect_bad("", COFFER_ERR_METADATA);
    expect_bad("{", COFFER_ERR_METADATA);
    expect_bad("{\"isEncrypted\":true,}", COFFER_ERR_METADATA);
    expect_bad("[]", COFFER_ERR_METADATA);
    expect_bad("\"isEncrypted\"", COFFER_ERR_METADATA);
    expect_bad("true", COFFER_ERR_METADATA);
    expect_bad("null", COFFER_ERR_METADATA);
    expect_bad("{\"isEncrypted\":false} {}", COFFER_ERR_METADATA);
    /* isEncrypted missing or not a boolean */
    expect_bad("{}", COFFER_ERR_METADATA);
    expect_bad("{\"keyRetrieverType\":\"secret\"}", COFFER_ERR_METADATA);
    expect_bad("{\"isEncrypted\":\"true\"}", COFFER_ERR_METADATA);
    expect_bad("{\"isEncrypted\":1}", COFFER_ERR_METADATA);
    expect_bad("{\"isEncrypted\":null}", COFFER_ERR_METADATA);
    /* encrypted: keyRetrieverType must be a non-empty string */
    expect_bad("{\"isEncrypted\":true}", COFFER_ERR_METADATA);
    expect_bad("{\"isEncrypted\":true,\"keyRetrieverType\":7}", COFFER_ERR_METADATA);
    expect_bad("{\"isEncrypted\":true,\"keyRetrieverType\":\"\"}", COFFER_ERR_METADATA);
    expect_bad("{\"isEncrypted\":true,\"keyRetrieverType\":[\"secret\"]}", COFFER_ERR_METADATA);
    /* secret: a config object with namespace and secretName strings */
    expect_bad("{\"isEncrypted\":true,\"keyRetrieverType\":\"secret\"}", COFFER_ERR_METADATA);
    expect_bad("{\"isEncrypted\":true,\"keyRetrieverType\":\"secret\",\"keyRetrieverConfig\":"
               "\"velero/k\"}",
               COFFER_ERR_METADATA);
    expect_bad("{\"isEncrypted\":true,\"keyRetrieverType\":\"secret\",\"keyRetrieverConfig\":"
               "{\"namespace\":\"velero\"}}",
               COFFER_ERR_METADATA);
    expect_bad("{\"isEncrypted\":true,\"keyRetrieverType\":\"secret\",\"keyRetrieverConfig\":"
               "{\"secretName\":\"k\"}}",
               COFFER_ERR_METADATA);
    expect_bad("{\"isEncrypted\":true,\"keyRetrieverType\":\"secret\",\"keyRetrieverConfig\":"
               "{\"namespace\":1,\"secretName\":\"k\"}}",
               COFFER_ERR_METADATA);
    expect_bad("{\"isEncrypted\":true,\"keyRetrieverType\":\"secret\",\"keyRetrieverConfig\":"
               "{\"namespace\":\"velero\",\"secretName\":null}}",
               COFFER_ERR_METADATA);
    /* duplicate keys could make two readers see two different backups */
    expect_bad("{\"isEncrypted\":false,\"isEncrypted\":true}", COFFER_ERR_METADATA);
    /* invalid UTF-8 */
    expect_bad("{\"isEncrypted\":false,\"format\":\"\xff\xfe\"}", COFFER_ERR_METADATA);
}

static void test_parse_limits(void **state)
{
    (void)state;
    engine_metadata m;
    const char *obj = "{\"isEncrypted\":false}";
    size_t olen = strlen(obj);
    char *buf = malloc(ENGINE_METADATA_MAX + 2);
    assert_non_null(buf);
    /* exactly the limit (padded with whitespace) parses */
    memset(buf, ' ', ENGINE_METADATA_MAX + 2);
    memcpy(buf, obj, olen);
    assert_int_equal(engine_metadata_parse(&m, buf, ENGINE_METADATA_MAX), 0);
    engine_metadata_clear(&m);
    /* one byte more is TOO_LARGE, whatever it contains */
    assert_int_equal(engine_metadata_parse(&m, buf, ENGINE_METADATA_MAX + 1), COFFER_ERR_TOO_LARGE);
    assert_null(m.json);
    assert_int_equal(engine_metadata_parse(&m, buf, (size_t)1 << 40), COFFER_ERR_TOO_LARGE);
    /* a NUL byte inside the text is not JSON */
    memcpy(buf, "{\"isEncrypted\":false}\0", 22);
    assert_int_equal(engine_metadata_parse(&m, buf, 22), COFFER_ERR_METADATA);
    /* deeply nested input is refused, not a stack overflow */
    memset(buf, '[', ENGINE_METADATA_MAX);
    assert_int_equal(engine_metadata_parse(&m, buf, ENGINE_METADATA_MAX), COFFER_ERR_METADATA);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_secret_builder), cmocka_unit_test(test_file_builder),
        cmocka_unit_test(test_plain_builder),  cmocka_unit_test(test_parse_accepts),
        cmocka_unit_test(test_parse_refuses),  cmocka_unit_test(test_parse_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
