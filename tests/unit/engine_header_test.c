/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of engine_header: coffer-v1 header encoding and the incremental, bounded reader. */
#include "coffer_error.h"
#include "engine_header.h"
#include "engine_metadata.h"
#include "test_support.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

/*
 * This program is linked with -Wl,--wrap=malloc: every malloc of coffer's own code (the engine is
 * a static library) comes through here, so a test can tell whether a call allocated anything.
 */
void *__real_malloc(size_t n);
void *__wrap_malloc(size_t n);
static size_t malloc_calls, malloc_largest;

void *__wrap_malloc(size_t n)
{
    malloc_calls++;
    if (n > malloc_largest)
        malloc_largest = n;
    return __real_malloc(n);
}

static const char meta_text[] =
    "{\"isEncrypted\":true,\"keyRetrieverType\":\"secret\",\"keyRetrieverConfig\":{\"namespace\":"
    "\"velero\",\"secretName\":\"coffer-key\"},\"format\":\"coffer-v1\",\"keyId\":"
    "\"3f9a1c0b7d2e4a61\"}";

/* A header around arbitrary metadata bytes, built by hand (not by engine_header_encode). */
static uint8_t *raw_header(const uint8_t magic[8], uint32_t declared, const void *meta,
                           size_t metalen, size_t *outlen)
{
    uint8_t *h = malloc(12 + metalen + 1);
    assert_non_null(h);
    memcpy(h, magic, 8);
    h[8] = (uint8_t)(declared >> 24);
    h[9] = (uint8_t)(declared >> 16);
    h[10] = (uint8_t)(declared >> 8);
    h[11] = (uint8_t)declared;
    if (metalen > 0)
        memcpy(h + 12, meta, metalen);
    *outlen = 12 + metalen;
    return h;
}

static const uint8_t good_magic[8] = {'C', 'O', 'F', 'F', 'E', 'R', 0x00, 0x01};

static void test_encode(void **state)
{
    (void)state;
    uint8_t *h = NULL;
    size_t hl = 0, ml = strlen(meta_text);

    assert_memory_equal(engine_header_magic, good_magic, 8);
    assert_int_equal(engine_header_encode(meta_text, ml, &h, &hl), 0);
    assert_int_equal(hl, 12 + ml);
    assert_memory_equal(h, "COFFER\0\1", 8);
    assert_int_equal(h[8], (ml >> 24) & 0xff);
    assert_int_equal(h[9], (ml >> 16) & 0xff);
    assert_int_equal(h[10], (ml >> 8) & 0xff);
    assert_int_equal(h[11], ml & 0xff);
    assert_memory_equal(h + 12, meta_text, ml);
    assert_true(engine_header_sniff(h, hl));
    assert_true(engine_header_sniff(h, 8));
    assert_false(engine_header_sniff(h, 7));
    h[6] = 1;
    assert_false(engine_header_sniff(h, hl));
    free(h);
    assert_false(engine_header_sniff((const uint8_t *)"\x1f\x8b\x08\0\0\0\0\0", 8)); /* gzip */

    /* the length is big-endian: a 300-byte metadata has 0x00 0x00 0x01 0x2c */
    char *big = malloc(301);
    assert_non_null(big);
    memset(big, ' ', 300);
    memcpy(big, "{\"isEncrypted\":false}", 21);
    assert_int_equal(engine_header_encode(big, 300, &h, &hl), 0);
    assert_memory_equal(h + 8, "\0\0\x01\x2c", 4);
    free(h);
    free(big);

    /* metadata beyond the limit is refused */
    char *huge = calloc(1, ENGINE_METADATA_MAX + 1);
    assert_non_null(huge);
    h = (uint8_t *)0x1;
    assert_int_equal(engine_header_encode(huge, ENGINE_METADATA_MAX + 1, &h, &hl),
                     COFFER_ERR_TOO_LARGE);
    assert_null(h);
    free(huge);
}

/* Feed the header in pieces of `step` bytes followed by body bytes; check what was consumed. */
static void read_in_steps(size_t step)
{
    uint8_t *h = NULL, *stream;
    size_t hl = 0, off = 0, consumed = 0, body = 100;
    engine_header_reader r;
    int ret = 0;

    assert_int_equal(engine_header_encode(meta_text, strlen(meta_text), &h, &hl), 0);
    stream = malloc(hl + body);
    assert_non_null(stream);
    memcpy(stream, h, hl);
    memset(stream + hl, 0xee, body);
    engine_header_reader_init(&r);
    while (off < hl + body) {
        size_t n = step < hl + body - off ? step : hl + body - off;
        ret = engine_header_reader_feed(&r, stream + off, n, &consumed);
        assert_true(ret == 0 || ret == 1);
        assert_true(consumed <= n);
        off += consumed;
        if (ret == 1)
            break;
        assert_int_equal(consumed, n); /* while incomplete, everything given is header */
        assert_false(r.complete);
    }
    assert_int_equal(ret, 1);
    assert_int_equal(off, hl); /* exactly the header, not a byte of the body */
    assert_true(r.complete);
    assert_int_equal(r.total, hl);
    assert_memory_equal(r.bytes, h, hl);
    assert_true(r.meta.is_encrypted);
    assert_string_equal(r.meta.ns, "velero");
    assert_string_equal(r.meta.secret, "coffer-key");
    assert_string_equal(r.meta.format, "coffer-v1");
    assert_string_equal(r.meta.key_id, "3f9a1c0b7d2e4a61");
    /* once complete, more input is not taken */
    assert_int_equal(engine_header_reader_feed(&r, stream + hl, body, &consumed), 1);
    assert_int_equal(consumed, 0);
    engine_header_reader_clear(&r);
    assert_null(r.bytes);
    free(stream);
    free(h);
}

static void test_read_whole(void **state)
{
    (void)state;
    read_in_steps(100000);
}

static void test_read_byte_by_byte(void **state)
{
    (void)state;
    read_in_steps(1);
}

static void test_read_odd_steps(void **state)
{
    (void)state;
    for (size_t s = 2; s <= 40; s++)
        read_in_steps(s);
}

/* Feed bytes one at a time; return the first non-zero result and at which byte it came. */
static int feed_bytewise(engine_header_reader *r, const uint8_t *in, size_t len, size_t *at)
{
    size_t consumed;
    for (size_t i = 0; i < len; i++) {
        int ret = engine_header_reader_feed(r, in + i, 1, &consumed);
        if (ret != 0) {
            *at = i;
            return ret;
        }
    }
    *at = len;
    return 0;
}

static void test_bad_magic_and_version(void **state)
{
    (void)state;
    size_t ml = strlen(meta_text), hl, at;
    engine_header_reader r;

    /* each magic byte changed: refused at that byte (no need to wait for the length) */
    for (size_t i = 0; i < 8; i++) {
        uint8_t magic[8];
        memcpy(magic, good_magic, 8);
        magic[i] ^= 0x20;
        uint8_t *h = raw_header(magic, (uint32_t)ml, meta_text, ml, &hl);
        engine_header_reader_init(&r);
        int ret = feed_bytewise(&r, h, hl, &at);
        assert_int_equal(ret, COFFER_ERR_BAD_HEADER);
        if (i < 7)
            assert_int_equal(at, i);
        else
            assert_true(at < 12); /* the version byte: by the end of the fixed part */
        engine_header_reader_clear(&r);
        /* and whole */
        size_t consumed;
        engine_header_reader_init(&r);
        assert_int_equal(engine_header_reader_feed(&r, h, hl, &consumed), COFFER_ERR_BAD_HEADER);
        engine_header_reader_clear(&r);
        free(h);
    }
    /* other versions: 0x00, 0x02, 0xff */
    static const uint8_t versions[] = {0x00, 0x02, 0xff};
    for (size_t i = 0; i < sizeof(versions); i++) {
        uint8_t magic[8];
        memcpy(magic, good_magic, 8);
        magic[7] = versions[i];
        uint8_t *h = raw_header(magic, (uint32_t)ml, meta_text, ml, &hl);
        engine_header_reader_init(&r);
        assert_int_equal(feed_bytewise(&r, h, hl, &at), COFFER_ERR_BAD_HEADER);
        assert_true(at < 12);
        engine_header_reader_clear(&r);
        free(h);
    }
    /* a gzip archive (what an unencrypted backup looks like) */
    engine_header_reader_init(&r);
    size_t consumed;
    assert_int_equal(engine_header_reader_feed(
                         &r, (const uint8_t *)"\x1f\x8b\x08\0\0\0\0\0\0\x03xxxx", 14, &consumed),
                     COFFER_ERR_BAD_HEADER);
    engine_header_reader_clear(&r);
}

/* A declared length above the limit fails as soon as the 12 fixed bytes are in, unallocated. */
static void test_length_over_max(void **state)
{
    (void)state;
    static const uint32_t lens[] = {ENGINE_METADATA_MAX + 1, 0x00100000, 0x7fffffff, 0xffffffff};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        size_t hl, consumed;
        uint8_t *h = raw_header(good_magic, lens[i], meta_text, strlen(meta_text), &hl);
        engine_header_reader r;
        engine_header_reader_init(&r);
        /* the first 11 bytes: still waiting */
        assert_int_equal(engine_header_reader_feed(&r, h, 11, &consumed), 0);
        malloc_calls = 0;
        malloc_largest = 0;
        int ret = engine_header_reader_feed(&r, h + 11, 1, &consumed);
        size_t calls = malloc_calls;
        assert_int_equal(ret, COFFER_ERR_TOO_LARGE);
        if (calls != 0)
            print_error("declared length %u: %zu malloc calls (largest %zu) before refusing\n",
                        lens[i], calls, malloc_largest);
        assert_int_equal(calls, 0);
        assert_null(r.bytes);
        engine_header_reader_clear(&r);
        /* the same, all at once */
        engine_header_reader_init(&r);
        malloc_calls = 0;
        assert_int_equal(engine_header_reader_feed(&r, h, hl, &consumed), COFFER_ERR_TOO_LARGE);
        assert_int_equal(malloc_calls, 0);
        engine_header_reader_clear(&r);
        free(h);
    }
}

/* The limit itself is allowed: a header with ENGINE_METADATA_MAX bytes of metadata reads. */
static void test_length_at_max(void **state)
{
    (void)state;
    char *meta = malloc(ENGINE_METADATA_MAX);
    size_t hl, consumed;
    assert_non_null(meta);
    memset(meta, ' ', ENGINE_METADATA_MAX);
    memcpy(meta, meta_text, strlen(meta_text));
    uint8_t *h = raw_header(good_magic, ENGINE_METADATA_MAX, meta, ENGINE_METADATA_MAX, &hl);
    engine_header_reader r;
    engine_header_reader_init(&r);
    malloc_calls = 0;
    assert_int_equal(engine_header_reader_feed(&r, h, hl, &consumed), 1);
    assert_true(malloc_calls >= 1); /* the wrapper does see the engine's allocations */
    assert_int_equal(consumed, hl);
    assert_int_equal(r.total, hl);
    engine_header_reader_clear(&r);
    /* and engine_header_encode produces the same bytes */
    uint8_t *e = NULL;
    size_t el = 0;
    assert_int_equal(engine_header_encode(meta, ENGINE_METADATA_MAX, &e, &el), 0);
    assert_int_equal(el, hl);
    assert_memory_equal(e, h, hl);
    free(e);
    free(h);
    free(meta);
}

static void expect_metadata_error(const char *meta, size_t metalen, int err)
{
    size_t hl, at;
    uint8_t *h = raw_header(good_magic, (uint32_t)metalen, meta, metalen, &hl);
    engine_header_reader r;
    engine_header_reader_init(&r);
    int ret = feed_bytewise(&r, h, hl, &at);
    if (ret != err)
        print_error("metadata %.100s: %s, expected %s\n", meta, coffer_errname(ret),
                    coffer_errname(err));
    assert_int_equal(ret, err);
    assert_int_equal(at, hl - 1); /* known only once the last byte is in */
    assert_false(r.complete);
    engine_header_reader_clear(&r);
    free(h);
}

static void test_invalid_json(void **state)
{
    (void)state;
    expect_metadata_error("", 0, COFFER_ERR_METADATA);
    expect_metadata_error("{", 1, COFFER_ERR_METADATA);
    expect_metadata_error("not json at all", 15, COFFER_ERR_METADATA);
    expect_metadata_error("[1,2,3]", 7, COFFER_ERR_METADATA);
    expect_metadata_error("{\"isEncrypted\":\"yes\"}", 21, COFFER_ERR_METADATA);
    expect_metadata_error("{\"isEncrypted\":true}", 20, COFFER_ERR_METADATA);
    expect_metadata_error("{\"isEncrypted\":false}\0", 22, COFFER_ERR_METADATA);
    /* the metadata cut short by a smaller declared length */
    expect_metadata_error(meta_text, strlen(meta_text) - 1, COFFER_ERR_METADATA);
}

/*
 * After the reader failed, feeding it again must keep failing (never crash, never "complete").
 * Run in a child process so that a crash is reported as this test's failure only.
 */
static int sticky_child(const uint8_t *h, size_t hl, size_t split)
{
    engine_header_reader r;
    size_t consumed;
    int first, again, third;
    engine_header_reader_init(&r);
    first = engine_header_reader_feed(&r, h, split, &consumed);
    if (first >= 0)
        first = engine_header_reader_feed(&r, h + split, hl - split, &consumed);
    if (first >= 0)
        return 10;
    again = engine_header_reader_feed(&r, h, hl, &consumed);
    third = engine_header_reader_feed(&r, (const uint8_t *)"{}", 2, &consumed);
    engine_header_reader_clear(&r);
    return again < 0 && third < 0 && !r.complete ? 0 : 11;
}

static void test_failed_reader_keeps_failing(void **state)
{
    (void)state;
    struct {
        const char *what;
        uint8_t magic[8];
        uint32_t len;
        const char *meta;
    } cases[] = {
        {"bad magic", {'C', 'O', 'F', 'F', 'E', 'E', 0, 1}, 0, meta_text},
        {"bad version", {'C', 'O', 'F', 'F', 'E', 'R', 0, 2}, 0, meta_text},
        {"length over the maximum", {'C', 'O', 'F', 'F', 'E', 'R', 0, 1}, 0xffffffffu, meta_text},
        {"invalid metadata", {'C', 'O', 'F', 'F', 'E', 'R', 0, 1}, 0, "{\"isEncrypted\":1}"},
    };
    int failures = 0;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t ml = strlen(cases[i].meta), hl;
        uint8_t *h = raw_header(cases[i].magic, cases[i].len ? cases[i].len : (uint32_t)ml,
                                cases[i].meta, ml, &hl);
        for (size_t split = 1; split <= 13; split += 12) {
            fflush(NULL);
            pid_t pid = fork();
            assert_true(pid >= 0);
            if (pid == 0) {
                /* a crash must end the child, not return into cmocka's runner */
                static const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
                for (size_t k = 0; k < sizeof(sigs) / sizeof(sigs[0]); k++)
                    signal(sigs[k], SIG_DFL);
                _exit(sticky_child(h, hl, split));
            }
            int st = 0;
            assert_int_equal(waitpid(pid, &st, 0), pid);
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                print_error("%s (first feed %zu bytes): feeding the failed reader again %s\n",
                            cases[i].what, split,
                            WIFSIGNALED(st)                          ? "crashed"
                            : WIFEXITED(st) && WEXITSTATUS(st) == 11 ? "did not fail"
                                                                     : "ended abnormally");
                failures++;
            }
        }
        free(h);
    }
    assert_int_equal(failures, 0);
}

/* clear releases everything whatever state the reader is in (LeakSanitizer checks). */
static void test_clear_any_state(void **state)
{
    (void)state;
    uint8_t *h = NULL;
    size_t hl, consumed;
    assert_int_equal(engine_header_encode(meta_text, strlen(meta_text), &h, &hl), 0);
    for (size_t n = 0; n <= hl; n += 7) {
        engine_header_reader r;
        engine_header_reader_init(&r);
        if (n > 0)
            assert_true(engine_header_reader_feed(&r, h, n, &consumed) >= 0);
        engine_header_reader_clear(&r);
        engine_header_reader_clear(&r);
    }
    free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode),
        cmocka_unit_test(test_read_whole),
        cmocka_unit_test(test_read_byte_by_byte),
        cmocka_unit_test(test_read_odd_steps),
        cmocka_unit_test(test_bad_magic_and_version),
        cmocka_unit_test(test_length_over_max),
        cmocka_unit_test(test_length_at_max),
        cmocka_unit_test(test_invalid_json),
        cmocka_unit_test(test_failed_reader_keeps_failing),
        cmocka_unit_test(test_clear_any_state),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
