/* SPDX-License-Identifier: Apache-2.0 */
/* The coffer provider as a module: its exports, the openssl CLI, and the docs' openssl.cnf. */
#include "test_support.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/provider.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static char *tmpdir;
static char module_path[4096];

static int group_setup(void **state)
{
    (void)state;
    tmpdir = ts_tmpdir();
    snprintf(module_path, sizeof(module_path), "%s/coffer.so", COFFER_LIB_DIR);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    ts_rmtree(tmpdir);
    free(tmpdir);
    return 0;
}

/*
 * Run the openssl program with args (NULL-terminated) and extra environment entries, return its
 * stdout (malloc'd, NUL-terminated) and put its exit status in *status. In a sanitizer build the
 * instrumented coffer.so needs the ASan runtime preloaded into the uninstrumented openssl.
 */
static char *run_openssl(int *status, char *const env[], ...)
{
    char *argv[32], *envv[8], out[4200], err[4200];
    size_t argc = 0, envc = 0, len;
    va_list ap;
    uint8_t *text;

    argv[argc++] = (char *)COFFER_OPENSSL_BIN;
    va_start(ap, env);
    for (char *a; argc < 31 && (a = va_arg(ap, char *)) != NULL;)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    for (size_t i = 0; env != NULL && env[i] != NULL && envc < 5; i++)
        envv[envc++] = env[i];
#ifdef COFFER_ASAN_RUNTIME
    envv[envc++] = (char *)"LD_PRELOAD=" COFFER_ASAN_RUNTIME;
    envv[envc++] = (char *)"ASAN_OPTIONS=detect_leaks=0";
#elif defined(COFFER_SANITIZE_BUILD)
    if (getenv("CI") != NULL && strcmp(getenv("CI"), "true") == 0)
        fail_msg("sanitizer build without a shared ASan runtime to preload into openssl");
    fprintf(stderr, "SKIP (sanitizer build only): no shared ASan runtime to preload into the "
                    "openssl program; the CLI checks run in the normal build\n");
    skip();
#endif
    envv[envc] = NULL;
    snprintf(out, sizeof(out), "%s/stdout", tmpdir);
    snprintf(err, sizeof(err), "%s/stderr", tmpdir);
    *status = ts_run(argv, envv, NULL, out, err);
    if (*status != 0) {
        uint8_t *e = ts_read_file(err, &len);
        fprintf(stderr, "%s exited with %d:\n%s\n", COFFER_OPENSSL_BIN, *status,
                e != NULL ? (char *)e : "");
        free(e);
    }
    text = ts_read_file(out, &len);
    assert_non_null(text);
    return (char *)text;
}

/* coffer.so exports OSSL_provider_init and nothing else (providers/coffer.map). */
static void test_exports(void **state)
{
    (void)state;
    char *argv[] = {(char *)COFFER_NM_BIN, (char *)"-D", (char *)"--defined-only", module_path,
                    NULL};
    char out[4200];
    size_t len, n_init = 0;
    uint8_t *text;

    snprintf(out, sizeof(out), "%s/nm", tmpdir);
    assert_int_equal(ts_run(argv, NULL, NULL, out, NULL), 0);
    text = ts_read_file(out, &len);
    assert_non_null(text);
    for (char *save = NULL, *line = strtok_r((char *)text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char addr[64], type[8], name[256];
        if (sscanf(line, "%63s %7s %255s", addr, type, name) != 3)
            fail_msg("unexpected nm line: %s", line);
        if (strcmp(type, "A") == 0) /* the version node, COFFER_PROVIDER_1 */
            continue;
        if (strncmp(name, "OSSL_provider_init@", 19) != 0)
            fail_msg("coffer.so exports %s: only OSSL_provider_init may be", name);
        n_init++;
    }
    assert_int_equal(n_init, 1);
    free(text);
}

/* `openssl list -cipher-algorithms -provider-path <build/lib> -provider coffer` lists the three. */
static void test_cli_cipher_list(void **state)
{
    (void)state;
    int status;
    char *out = run_openssl(&status, NULL, "list", "-cipher-algorithms", "-provider-path",
                            COFFER_LIB_DIR, "-provider", "coffer", NULL);
    static const char *const want[] = {
        "{ 2.16.840.1.101.3.4.1.6, aes-128-gcm, id-aes128-GCM } @ coffer",
        "{ 2.16.840.1.101.3.4.1.26, aes-192-gcm, id-aes192-GCM } @ coffer",
        "{ 2.16.840.1.101.3.4.1.46, aes-256-gcm, id-aes256-GCM } @ coffer",
    };
    size_t n = 0;

    assert_int_equal(status, 0);
    for (size_t i = 0; i < 3; i++)
        if (strstr(out, want[i]) == NULL)
            fail_msg("openssl list lacks \"%s\":\n%s", want[i], out);
    for (const char *p = out; (p = strstr(p, "@ coffer")) != NULL; p++)
        n++;
    assert_int_equal(n, 3);
    free(out);
}

/* `openssl list -providers -verbose` reads the provider's name, version, buildinfo, status. */
static void test_cli_providers(void **state)
{
    (void)state;
    int status;
    char *out = run_openssl(&status, NULL, "list", "-providers", "-verbose", "-provider-path",
                            COFFER_LIB_DIR, "-provider", "coffer", "-provider", "default", NULL);

    assert_int_equal(status, 0);
    if (strstr(out, "name: coffer") == NULL || strstr(out, "status: active") == NULL ||
        strstr(out, "build info: coffer") == NULL || strstr(out, "ipsec-mb") == NULL ||
        strstr(out, "OpenSSL Default Provider") == NULL)
        fail_msg("unexpected `openssl list -providers` output:\n%s", out);
    free(out);
}

/* The first ```ini block of docs/provider.md, written to tmpdir/coffer.cnf; returns its path. */
static const char *doc_cnf(void)
{
    static char path[4200];
    char doc[4200];
    size_t len;
    uint8_t *text;
    char *begin, *end;

    snprintf(doc, sizeof(doc), "%s/docs/provider.md", COFFER_SOURCE_DIR);
    text = ts_read_file(doc, &len);
    assert_non_null(text);
    begin = strstr((char *)text, "```ini\n");
    assert_non_null(begin);
    begin += 7;
    end = strstr(begin, "```");
    assert_non_null(end);
    snprintf(path, sizeof(path), "%s/coffer.cnf", tmpdir);
    assert_int_equal(ts_write_file(path, begin, (size_t)(end - begin)), 0);
    free(text);
    return path;
}

/* The docs' openssl.cnf, through OPENSSL_CONF: the openssl CLI has both providers active. */
static void test_doc_cnf_cli(void **state)
{
    (void)state;
    char conf[4300], modules[4300];
    char *env[] = {conf, modules, NULL};
    int status;
    char *out;

    snprintf(conf, sizeof(conf), "OPENSSL_CONF=%s", doc_cnf());
    snprintf(modules, sizeof(modules), "OPENSSL_MODULES=%s", COFFER_LIB_DIR);
    out = run_openssl(&status, env, "list", "-providers", NULL);
    assert_int_equal(status, 0);
    if (strstr(out, "coffer") == NULL || strstr(out, "OpenSSL Default Provider") == NULL)
        fail_msg("the docs' openssl.cnf does not activate coffer and default:\n%s", out);
    free(out);
}

/*
 * The docs' openssl.cnf loaded into the default library context: an unmodified application that
 * asks for EVP_aes_256_gcm() (an implicit fetch) gets coffer's, and everything else still works.
 */
static void test_doc_cnf_default_libctx(void **state)
{
    (void)state;
    uint8_t key[32] = {1}, iv[16] = {2}, pt[100] = {3}, ct[100], tag[16], md[32];
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    unsigned int mdlen;
    int outl;

    assert_int_equal(setenv("OPENSSL_MODULES", COFFER_LIB_DIR, 1), 0);
    if (OSSL_LIB_CTX_load_config(NULL, doc_cnf()) != 1) {
        ERR_print_errors_fp(stderr);
        fail_msg("OSSL_LIB_CTX_load_config(docs/provider.md's cnf) failed");
    }
    assert_int_equal(EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, iv), 1);
    assert_string_equal(
        OSSL_PROVIDER_get0_name(EVP_CIPHER_get0_provider(EVP_CIPHER_CTX_get0_cipher(ctx))),
        "coffer");
    assert_int_equal(EVP_EncryptUpdate(ctx, ct, &outl, pt, sizeof(pt)), 1);
    assert_int_equal(EVP_EncryptFinal_ex(ctx, ct, &outl), 1);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, tag), 1);
    assert_int_equal(EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, iv), 1);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, 16, tag), 1);
    assert_int_equal(EVP_DecryptUpdate(ctx, ct, &outl, ct, sizeof(ct)), 1);
    assert_int_equal(EVP_DecryptFinal_ex(ctx, ct, &outl), 1);
    assert_memory_equal(ct, pt, sizeof(pt));
    /* What coffer does not offer comes from the default provider. */
    assert_int_equal(EVP_EncryptInit_ex(ctx, EVP_aes_256_cbc(), NULL, key, iv), 1);
    assert_string_equal(
        OSSL_PROVIDER_get0_name(EVP_CIPHER_get0_provider(EVP_CIPHER_CTX_get0_cipher(ctx))),
        "default");
    assert_int_equal(EVP_Digest(pt, sizeof(pt), md, &mdlen, EVP_sha256(), NULL), 1);
    EVP_CIPHER_CTX_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exports),
        cmocka_unit_test(test_cli_cipher_list),
        cmocka_unit_test(test_cli_providers),
        cmocka_unit_test(test_doc_cnf_cli),
        cmocka_unit_test(test_doc_cnf_default_libctx),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
