/* SPDX-License-Identifier: Apache-2.0 */
/* Benchmark: the coffer provider against OpenSSL's default provider, AES-256-GCM through EVP. */
#include "bench_support.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/provider.h>
#include <openssl/rand.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BENCH_REPS_DEFAULT  9
#define BENCH_BYTES_PER_REP (96u << 20) /* per case and repetition: ~30 ms at 3 GB/s */
#define BENCH_BYTES_FRESH   (4u << 20)  /* the same with a new context and key per message */
#define BENCH_REPS_MAX      101

static OSSL_LIB_CTX *libctx;

static void die(const char *what)
{
    fprintf(stderr, "bench_provider: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

typedef struct {
    EVP_CIPHER_CTX *ctx;
    const uint8_t *key;
    uint8_t iv[12];
    uint8_t tag[16]; /* decrypting: the tag of in under iv */
    const uint8_t *in;
    uint8_t *out;
    size_t len;
} bench_case;

/*
 * One message the way an application streams one: a new IV with the key kept (key NULL), the
 * data in one update, the final, the tag. fresh: instead a new context and the key every time.
 */
static void bench_message(bench_case *b, const EVP_CIPHER *c, int enc, int fresh)
{
    EVP_CIPHER_CTX *ctx = b->ctx;
    int outl;

    if (fresh) {
        if ((ctx = EVP_CIPHER_CTX_new()) == NULL ||
            EVP_CipherInit_ex2(ctx, c, b->key, b->iv, enc, NULL) != 1)
            die("init with key");
    } else if (EVP_CipherInit_ex2(ctx, NULL, NULL, b->iv, enc, NULL) != 1) {
        die("init with IV");
    }
    if (!enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, 16, b->tag) != 1)
        die("set tag");
    if (EVP_CipherUpdate(ctx, b->out, &outl, b->in, (int)b->len) != 1 || (size_t)outl != b->len)
        die("update");
    if (EVP_CipherFinal_ex(ctx, b->out + outl, &outl) != 1)
        die(enc ? "encrypt final" : "decrypt final (tag mismatch)");
    if (enc) {
        if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, b->tag) != 1)
            die("get tag");
        b->iv[11]++; /* a new IV for every message encrypted */
        if (b->iv[11] == 0)
            b->iv[10]++;
    }
    if (fresh)
        EVP_CIPHER_CTX_free(ctx);
}

/* CPU time of this thread, as openssl speed counts by default: other processes disturb less. */
static double bench_cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* One repetition: enough messages for the byte budget; GB/s (10^9 bytes/s) by CPU and wall time. */
static void bench_rep(bench_case *b, const EVP_CIPHER *c, int enc, int fresh, double *cpu,
                      double *wall)
{
    size_t n = (fresh ? BENCH_BYTES_FRESH : BENCH_BYTES_PER_REP) / b->len;
    double c0, c1, w0, w1;

    if (n < 4)
        n = 4;
    w0 = bench_now();
    c0 = bench_cpu_now();
    for (size_t i = 0; i < n; i++)
        bench_message(b, c, enc, fresh);
    c1 = bench_cpu_now();
    w1 = bench_now();
    *cpu = (double)n * (double)b->len / (c1 - c0) / 1e9;
    *wall = (double)n * (double)b->len / (w1 - w0) / 1e9;
}

static void bench_row(const char *label, const EVP_CIPHER *cof, const EVP_CIPHER *def,
                      const uint8_t *key, size_t len, int enc, int fresh, int reps)
{
    double sc[BENCH_REPS_MAX], sd[BENCH_REPS_MAX], wc[BENCH_REPS_MAX], wd[BENCH_REPS_MAX];
    double mc, md, mwc, mwd;
    uint8_t *in = malloc(len + 16), *out = malloc(len + 16);
    bench_case bc = {0}, bd = {0};

    if (in == NULL || out == NULL)
        die("out of memory");
    bench_fill(in, len, (unsigned)len);
    bc.key = bd.key = key;
    bc.in = bd.in = in;
    bc.out = bd.out = out;
    bc.len = bd.len = len;
    bench_fill(bc.iv, sizeof(bc.iv), 7);
    bench_fill(bd.iv, sizeof(bd.iv), 7);
    if ((bc.ctx = EVP_CIPHER_CTX_new()) == NULL || (bd.ctx = EVP_CIPHER_CTX_new()) == NULL ||
        EVP_CipherInit_ex2(bc.ctx, cof, key, NULL, enc, NULL) != 1 ||
        EVP_CipherInit_ex2(bd.ctx, def, key, NULL, enc, NULL) != 1)
        die("context");
    if (!enc) { /* decrypt a genuine message, so every final verifies its tag and succeeds */
        bench_case e = bc;
        e.ctx = bd.ctx;
        e.out = out;
        if (EVP_CipherInit_ex2(e.ctx, NULL, NULL, NULL, 1, NULL) != 1)
            die("context");
        bench_message(&e, def, 1, 0);
        memcpy(in, out, len);
        memcpy(bc.tag, e.tag, 16);
        memcpy(bd.tag, e.tag, 16);
        if (EVP_CipherInit_ex2(bd.ctx, NULL, NULL, NULL, 0, NULL) != 1)
            die("context");
    }
    bench_rep(&bc, cof, enc, fresh, &sc[0], &wc[0]); /* warm-up: page faults, thread state */
    bench_rep(&bd, def, enc, fresh, &sd[0], &wd[0]);
    for (int r = 0; r < reps; r++) { /* interleaved, so drift hits both alike */
        bench_rep(&bc, cof, enc, fresh, &sc[r], &wc[r]);
        bench_rep(&bd, def, enc, fresh, &sd[r], &wd[r]);
    }
    mc = bench_median(sc, (size_t)reps);
    md = bench_median(sd, (size_t)reps);
    mwc = bench_median(wc, (size_t)reps);
    mwd = bench_median(wd, (size_t)reps);
    printf("%-7s %-8s %-22s %7.2f %8.2f %6.2fx   %7.2f %8.2f %6.2fx\n", label,
           enc ? "encrypt" : "decrypt", fresh ? "new ctx+key per msg" : "key kept, new IV", mc, md,
           mc / md, mwc, mwd, mwc / mwd);
    fflush(stdout);
    EVP_CIPHER_CTX_free(bc.ctx);
    EVP_CIPHER_CTX_free(bd.ctx);
    free(in);
    free(out);
}

int main(int argc, char **argv)
{
    static const struct {
        const char *label;
        size_t len;
    } sizes[] = {{"1 KiB", 1024}, {"16 KiB", 16384}, {"1 MiB", 1u << 20}};
    int reps = argc > 1 ? atoi(argv[1]) : BENCH_REPS_DEFAULT;
    OSSL_PROVIDER *pc, *pd;
    EVP_CIPHER *cof, *def;
    const char *buildinfo = "?";
    OSSL_PARAM p[] = {
        OSSL_PARAM_construct_utf8_ptr(OSSL_PROV_PARAM_BUILDINFO, (char **)&buildinfo, 0),
        OSSL_PARAM_construct_end(),
    };
    uint8_t key[32];

    if (reps < 1 || reps > BENCH_REPS_MAX) {
        fprintf(stderr, "usage: bench_provider [repetitions, 1..%d]\n", BENCH_REPS_MAX);
        return 2;
    }
    if ((libctx = OSSL_LIB_CTX_new()) == NULL ||
        !OSSL_PROVIDER_set_default_search_path(libctx, COFFER_LIB_DIR) ||
        (pc = OSSL_PROVIDER_load(libctx, "coffer")) == NULL ||
        (pd = OSSL_PROVIDER_load(libctx, "default")) == NULL)
        die("cannot load the coffer provider from " COFFER_LIB_DIR);
    if ((cof = EVP_CIPHER_fetch(libctx, "AES-256-GCM", "provider=coffer")) == NULL ||
        (def = EVP_CIPHER_fetch(libctx, "AES-256-GCM", "provider=default")) == NULL)
        die("fetch AES-256-GCM");
    if (RAND_bytes_ex(libctx, key, sizeof(key), 0) != 1)
        die("random key");
    (void)OSSL_PROVIDER_get_params(pc, p);

    printf("AES-256-GCM through EVP: coffer provider vs OpenSSL's default provider\n");
    printf("coffer: %s\n", buildinfo);
    printf("default: OpenSSL %s\n", OpenSSL_version(OPENSSL_VERSION_STRING));
    printf("median of %d repetitions of ~%u MiB each (%u MiB with a new context per message), "
           "interleaved; no AAD; 16-byte tag; GB/s = 10^9 bytes/s; CPU time is this thread's "
           "(what openssl speed counts), wall time includes other processes' interference\n\n",
           reps, BENCH_BYTES_PER_REP >> 20, BENCH_BYTES_FRESH >> 20);
    printf("%-7s %-8s %-22s %-25s   %s\n", "", "", "", "GB/s by CPU time", "GB/s by wall time");
    printf("%-7s %-8s %-22s %7s %8s %7s   %7s %8s %7s\n", "size", "op", "usage", "coffer",
           "default", "ratio", "coffer", "default", "ratio");
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        for (int enc = 1; enc >= 0; enc--)
            bench_row(sizes[i].label, cof, def, key, sizes[i].len, enc, 0, reps);
    bench_row(sizes[0].label, cof, def, key, sizes[0].len, 1, 1, reps);

    printf("\nThe same comparison with openssl speed (one long stream of updates; add -aead for a "
           "new IV, 13 bytes of AAD and a tag per message, -decrypt to decrypt):\n");
    printf("  openssl speed -provider-path %s -provider coffer -provider default -propquery "
           "provider=coffer -evp aes-256-gcm\n",
           COFFER_LIB_DIR);
    printf("  openssl speed -evp aes-256-gcm\n");

    EVP_CIPHER_free(cof);
    EVP_CIPHER_free(def);
    OSSL_PROVIDER_unload(pc);
    OSSL_PROVIDER_unload(pd);
    OSSL_LIB_CTX_free(libctx);
    return 0;
}
