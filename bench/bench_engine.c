/* SPDX-License-Identifier: Apache-2.0 */
/* Engine benchmark: coffer-v1 seal/open against raw ipsec-mb and OpenSSL AES-256-GCM, one run. */
#include "bench_support.h"
#include "coffer_error.h"
#include "engine_chunked.h"
#include "engine_gcm.h"
#include "engine_header.h"
#include "engine_key.h"
#include "engine_metadata.h"
#include "engine_stream.h"

#include <intel-ipsec-mb.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define KIB        ((size_t)1024)
#define MIB        (1024 * KIB)
#define TAG_LEN    16
#define IV_LEN     12
#define MAX_SIZES  16
#define MAX_SAMPLE 64
#define SLICES     8 /* turns per sample: see measure() */

/*
 * What is timed, per message: everything a caller does to seal or open one message, given the
 * key and the plaintext/ciphertext already in memory and an output buffer already allocated and
 * touched. For coffer-v1 that is creating the stream (header encoding or parsing, keyId check,
 * HKDF, key schedule), feeding it in pieces, finishing and freeing it; for the raw baselines it
 * is the key schedule (IMB_AES256_GCM_PRE / EVP init with the key) and one GCM message, since
 * every coffer message has a key of its own too.
 */

enum ct_kind { CT_V1, CT_COBBLESTONE, CT_RAW, CT_KINDS };
enum op { OP_SEAL, OP_OPEN, OPS };

struct bench;
struct cand;
typedef int (*bench_fn)(struct bench *b, const struct cand *c, size_t *outlen);

/* One column of the table: a way of sealing and opening the message. */
struct cand {
    const char *name;
    bench_fn fn[OPS];
    enum ct_kind ct;            /* which prepared ciphertext its open reads */
    size_t piece;               /* bytes per update call (streaming candidates) */
    engine_gcm_backend backend; /* streaming candidates */
};

struct ct_buf {
    uint8_t *p;
    size_t len;
};

struct bench {
    size_t size; /* plaintext bytes of the message */
    uint8_t *pt;
    uint8_t *out; /* the output of every candidate, sized for the largest */
    size_t outcap;
    struct ct_buf ct[CT_KINDS];
    uint8_t raw_tag[TAG_LEN]; /* the tag of ct[CT_RAW] */
    /* keys and metadata */
    uint8_t key[32];
    uint8_t iv[IV_LEN];
    engine_key *ekey;
    char *meta;
    size_t meta_len;
    /* raw baselines' own state */
    IMB_MGR *mgr;
    struct gcm_key_data *imb_key; /* 64-byte aligned, as ipsec-mb requires */
    struct gcm_context_data *imb_ctx;
    EVP_CIPHER *evp_cipher;
    EVP_CIPHER_CTX *evp;
};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench_engine: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void *xalloc(size_t n)
{
    void *p = aligned_alloc(4096, (n + 4095) / 4096 * 4096);
    if (p == NULL)
        die("out of memory (%zu bytes)", n);
    memset(p, 0, n); /* fault every page in before anything is timed */
    return p;
}

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

/* ---- coffer-v1 through engine_stream, the real API --------------------------------------- */

static int stream_seal(struct bench *b, const struct cand *c, size_t *outlen)
{
    struct engine_stream_params p = {
        .format = COFFER_FORMAT_COFFER_V1,
        .backend = c->backend,
        .key = b->ekey,
        .metadata = b->meta,
        .metadata_len = b->meta_len,
    };
    engine_stream *s = NULL;
    size_t o = 0, n;
    int r;

    if ((r = engine_stream_seal_new(&s, &p)) != 0)
        return r;
    for (size_t off = 0; off < b->size; off += c->piece) {
        size_t len = min_size(c->piece, b->size - off);
        if ((r = engine_stream_update(s, b->pt + off, len, b->out + o, b->outcap - o, &n)) != 0)
            goto out;
        o += n;
    }
    if ((r = engine_stream_finish(s, b->out + o, b->outcap - o, &n)) != 0)
        goto out;
    o += n;
    do {
        if ((r = engine_stream_drain(s, b->out + o, b->outcap - o, &n)) != 0)
            goto out;
        o += n;
    } while (n > 0);
    *outlen = o;
out:
    engine_stream_free(s);
    return r;
}

/* Reads the ciphertext in pieces as a restore would: the header first, the body after it. */
static int stream_open(struct bench *b, const struct cand *c, size_t *outlen)
{
    const struct ct_buf *ct = &b->ct[CT_V1];
    engine_header_reader hr;
    struct engine_stream_params p = {
        .format = COFFER_FORMAT_COFFER_V1,
        .backend = c->backend,
        .key = b->ekey,
        .header = &hr,
    };
    engine_stream *s = NULL;
    size_t o = 0, n;
    int r = COFFER_ERR_TRUNCATED;

    engine_header_reader_init(&hr);
    for (size_t off = 0; off < ct->len; off += c->piece) {
        const uint8_t *in = ct->p + off;
        size_t len = min_size(c->piece, ct->len - off);
        if (s == NULL) {
            size_t used;
            if ((r = engine_header_reader_feed(&hr, in, len, &used)) < 0)
                goto out;
            in += used;
            len -= used;
            if (r == 0)
                continue;
            if ((r = engine_stream_open_new(&s, &p)) != 0)
                goto out;
        }
        if ((r = engine_stream_update(s, in, len, b->out + o, b->outcap - o, &n)) != 0)
            goto out;
        o += n;
    }
    if (s == NULL) {
        r = COFFER_ERR_TRUNCATED;
        goto out;
    }
    if ((r = engine_stream_finish(s, b->out + o, b->outcap - o, &n)) != 0)
        goto out;
    o += n;
    do {
        if ((r = engine_stream_drain(s, b->out + o, b->outcap - o, &n)) != 0)
            goto out;
        o += n;
    } while (n > 0);
    *outlen = o;
out:
    engine_stream_free(s);
    engine_header_reader_clear(&hr);
    return r;
}

/* ---- bare Cobblestone-256 through engine_chunked (empty context) ------------------------- */

static int chunked_run(struct bench *b, const struct cand *c, engine_chunked *ch, const uint8_t *in,
                       size_t inlen, size_t *outlen)
{
    size_t o = 0, n;
    int r;

    for (size_t off = 0; off < inlen; off += c->piece) {
        size_t len = min_size(c->piece, inlen - off);
        if ((r = engine_chunked_update(ch, in + off, len, b->out + o, b->outcap - o, &n)) != 0)
            return r;
        o += n;
    }
    if ((r = engine_chunked_final(ch, b->out + o, b->outcap - o, &n)) != 0)
        return r;
    *outlen = o + n;
    return 0;
}

static int chunked_seal(struct bench *b, const struct cand *c, size_t *outlen)
{
    engine_chunked *ch;
    int r = engine_chunked_seal_new(&ch, ENGINE_CHUNKED_AES_256_GCM, c->backend, b->key,
                                    sizeof(b->key), NULL, 0, NULL);
    if (r != 0)
        return r;
    r = chunked_run(b, c, ch, b->pt, b->size, outlen);
    engine_chunked_free(ch);
    return r;
}

static int chunked_open(struct bench *b, const struct cand *c, size_t *outlen)
{
    engine_chunked *ch;
    int r = engine_chunked_open_new(&ch, ENGINE_CHUNKED_AES_256_GCM, c->backend, b->key,
                                    sizeof(b->key), NULL, 0);
    if (r != 0)
        return r;
    r = chunked_run(b, c, ch, b->ct[CT_COBBLESTONE].p, b->ct[CT_COBBLESTONE].len, outlen);
    engine_chunked_free(ch);
    return r;
}

/*
 * ---- raw ipsec-mb: one IMB_AES256_GCM_ENC/_DEC call over the whole message --------------
 * The raw baselines reuse one key and IV for every message: harmless here (the data is not
 * secret and nothing leaves the process), and it keeps them doing exactly one GCM message each.
 */

static const uint8_t no_aad[16];

static int imb_seal(struct bench *b, const struct cand *c, size_t *outlen)
{
    IMB_AES256_GCM_PRE(b->mgr, b->key, b->imb_key);
    IMB_AES256_GCM_ENC(b->mgr, b->imb_key, b->imb_ctx, b->out, b->pt, b->size, b->iv, no_aad, 0,
                       b->out + b->size, TAG_LEN);
    *outlen = b->size + TAG_LEN;
    return 0;
}

static int imb_open(struct bench *b, const struct cand *c, size_t *outlen)
{
    uint8_t tag[TAG_LEN];
    IMB_AES256_GCM_PRE(b->mgr, b->key, b->imb_key);
    IMB_AES256_GCM_DEC(b->mgr, b->imb_key, b->imb_ctx, b->out, b->ct[CT_RAW].p, b->size, b->iv,
                       no_aad, 0, tag, TAG_LEN);
    if (CRYPTO_memcmp(tag, b->raw_tag, TAG_LEN) != 0)
        return COFFER_ERR_TAMPERED;
    *outlen = b->size;
    return 0;
}

/* ---- raw OpenSSL EVP: one AES-256-GCM message -------------------------------------------- */

static int evp_seal(struct bench *b, const struct cand *c, size_t *outlen)
{
    int n, fin;
    if (b->size > INT_MAX || EVP_EncryptInit_ex2(b->evp, b->evp_cipher, b->key, b->iv, NULL) != 1 ||
        EVP_EncryptUpdate(b->evp, b->out, &n, b->pt, (int)b->size) != 1 ||
        EVP_EncryptFinal_ex(b->evp, b->out + n, &fin) != 1 ||
        EVP_CIPHER_CTX_ctrl(b->evp, EVP_CTRL_AEAD_GET_TAG, TAG_LEN, b->out + b->size) != 1)
        return COFFER_ERR_INTERNAL;
    *outlen = b->size + TAG_LEN;
    return 0;
}

static int evp_open(struct bench *b, const struct cand *c, size_t *outlen)
{
    int n, fin;
    if (b->size > INT_MAX || EVP_DecryptInit_ex2(b->evp, b->evp_cipher, b->key, b->iv, NULL) != 1 ||
        EVP_DecryptUpdate(b->evp, b->out, &n, b->ct[CT_RAW].p, (int)b->size) != 1 ||
        EVP_CIPHER_CTX_ctrl(b->evp, EVP_CTRL_AEAD_SET_TAG, TAG_LEN, b->raw_tag) != 1)
        return COFFER_ERR_INTERNAL;
    if (EVP_DecryptFinal_ex(b->evp, b->out + n, &fin) != 1)
        return COFFER_ERR_TAMPERED;
    *outlen = b->size;
    return 0;
}

/* ---- the candidates ------------------------------------------------------------------------ */

/* The first three are the table's main columns; the ratios compare the first with the next two. */
enum { C_V1, C_IMB, C_EVP, C_V1_64K, C_COBBLESTONE, C_V1_OPENSSL, NCAND };

static const struct cand cands[NCAND] = {
    [C_V1] = {"coffer-v1", {stream_seal, stream_open}, CT_V1, MIB, ENGINE_GCM_AUTO},
    [C_IMB] = {"ipsec-mb", {imb_seal, imb_open}, CT_RAW, 0, ENGINE_GCM_AUTO},
    [C_EVP] = {"openssl", {evp_seal, evp_open}, CT_RAW, 0, ENGINE_GCM_AUTO},
    [C_V1_64K] = {"coffer-v1@64KiB", {stream_seal, stream_open}, CT_V1, 64 * KIB, ENGINE_GCM_AUTO},
    [C_COBBLESTONE] =
        {"cobblestone", {chunked_seal, chunked_open}, CT_COBBLESTONE, MIB, ENGINE_GCM_AUTO},
    [C_V1_OPENSSL] =
        {"coffer-v1/openssl", {stream_seal, stream_open}, CT_V1, MIB, ENGINE_GCM_OPENSSL},
};

static const char *const op_names[OPS] = {"seal", "open"};

/* ---- set-up: buffers, keys, prepared ciphertexts, and a check that every candidate agrees -- */

static void check(int r, const char *what)
{
    if (r != 0)
        die("%s: %s", what, coffer_strerror(r));
}

static void bench_init(struct bench *b)
{
    IMB_ARCH arch;

    memset(b, 0, sizeof(*b));
    bench_fill(b->key, sizeof(b->key), 1);
    bench_fill(b->iv, sizeof(b->iv), 2);
    check(engine_key_from_bytes(&b->ekey, b->key, sizeof(b->key)), "engine_key_from_bytes");
    json_t *m = engine_metadata_new_secret("velero", "coffer-key", "coffer-v1", b->ekey->id);
    if (m == NULL || (b->meta = engine_metadata_dump(m)) == NULL)
        die("cannot build the status metadata");
    json_decref(m);
    b->meta_len = strlen(b->meta);

    if ((b->mgr = alloc_mb_mgr(0)) == NULL)
        die("alloc_mb_mgr failed");
    init_mb_mgr_auto(b->mgr, &arch);
    if (arch == IMB_ARCH_NONE || arch == IMB_ARCH_NOAESNI)
        die("ipsec-mb has no AES-NI code path on this CPU");
    b->imb_key = aligned_alloc(64, (sizeof(*b->imb_key) + 63) / 64 * 64);
    b->imb_ctx = aligned_alloc(64, (sizeof(*b->imb_ctx) + 63) / 64 * 64);
    if (b->imb_key == NULL || b->imb_ctx == NULL)
        die("out of memory");

    if ((b->evp_cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", "provider=default")) == NULL ||
        (b->evp = EVP_CIPHER_CTX_new()) == NULL)
        die("OpenSSL has no AES-256-GCM in its default provider");
}

/* An output capacity that every candidate's calls accept for a message of size bytes. */
static size_t out_capacity(struct bench *b, size_t size)
{
    struct engine_stream_params p = {
        .format = COFFER_FORMAT_COFFER_V1,
        .key = b->ekey,
        .metadata = b->meta,
        .metadata_len = b->meta_len,
    };
    engine_stream *s;
    size_t cap = engine_chunked_bound(size) + engine_chunked_bound(MIB);

    check(engine_stream_seal_new(&s, &p), "engine_stream_seal_new");
    /* one update of the whole message plus the finish, as engine_stream_bound promises */
    size_t sc = engine_stream_bound(s, size) + engine_stream_bound(s, 0);
    engine_stream_free(s);
    return sc > cap ? sc : cap;
}

static void run_checked(struct bench *b, int ci, enum op op, size_t *outlen)
{
    int r = cands[ci].fn[op](b, &cands[ci], outlen);
    if (r != 0)
        die("%s %s of %zu bytes: %s", cands[ci].name, op_names[op], b->size, coffer_strerror(r));
}

static void bench_prepare(struct bench *b, size_t size)
{
    size_t n;

    b->size = size;
    b->pt = xalloc(size);
    bench_fill(b->pt, size, 3);
    b->outcap = out_capacity(b, size);
    b->out = xalloc(b->outcap);

    /* each prepared ciphertext is sealed by the candidate that defines the format */
    static const int sealer[CT_KINDS] = {C_V1, C_COBBLESTONE, C_IMB};
    for (int k = 0; k < CT_KINDS; k++) {
        run_checked(b, sealer[k], OP_SEAL, &n);
        b->ct[k].p = xalloc(n);
        b->ct[k].len = n;
        memcpy(b->ct[k].p, b->out, n);
    }
    b->ct[CT_RAW].len = size;
    memcpy(b->raw_tag, b->ct[CT_RAW].p + size, TAG_LEN);

    /* every candidate seals to the expected length and opens its format back to the plaintext */
    for (int ci = 0; ci < NCAND; ci++) {
        size_t want = b->ct[cands[ci].ct].len + (cands[ci].ct == CT_RAW ? TAG_LEN : 0);
        run_checked(b, ci, OP_SEAL, &n);
        if (n != want)
            die("%s sealed %zu bytes, expected %zu", cands[ci].name, n, want);
        if (cands[ci].ct == CT_RAW && memcmp(b->out, b->ct[CT_RAW].p, want) != 0)
            die("%s and %s disagree on the ciphertext", cands[ci].name, cands[C_IMB].name);
        memset(b->out, 0, size);
        run_checked(b, ci, OP_OPEN, &n);
        if (n != size || memcmp(b->out, b->pt, size) != 0)
            die("%s did not open back to the plaintext", cands[ci].name);
    }
}

static void bench_release(struct bench *b)
{
    for (int k = 0; k < CT_KINDS; k++) {
        free(b->ct[k].p);
        b->ct[k].p = NULL;
    }
    free(b->pt);
    free(b->out);
    b->pt = b->out = NULL;
}

/* ---- timing ----------------------------------------------------------------------------- */

/*
 * The clock: by default the CPU time of this thread, which leaves out the time the scheduler gave
 * the other processes of a shared machine (on a 2-core box with neighbours busy, wall-clock
 * GB/s halve at random); --wall uses CLOCK_MONOTONIC instead. Nothing here sleeps or waits for
 * I/O, so the two agree on an idle machine.
 */
static int use_wall_clock;

static double bench_clock(void)
{
    struct timespec ts;
    if (use_wall_clock)
        return bench_now();
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Seconds for reps messages. */
static double time_reps(struct bench *b, int ci, enum op op, unsigned long reps)
{
    const struct cand *c = &cands[ci];
    size_t n;
    double t0 = bench_clock();
    for (unsigned long i = 0; i < reps; i++) {
        int r = c->fn[op](b, c, &n);
        if (r != 0)
            die("%s %s: %s", c->name, op_names[op], coffer_strerror(r));
    }
    return bench_clock() - t0;
}

/* Messages per slice so that SLICES slices last about min_time seconds together. */
static unsigned long calibrate(struct bench *b, int ci, enum op op, double min_time)
{
    unsigned long reps = 1;
    double t;

    (void)time_reps(b, ci, op, 1); /* warm caches and lazily created state */
    while ((t = time_reps(b, ci, op, reps)) < min_time / 16 && reps < (1ul << 40))
        reps *= 2;
    double want = min_time / SLICES / (t / (double)reps);
    return want < 1 ? 1 : (unsigned long)want + 1;
}

struct options {
    size_t sizes[MAX_SIZES];
    int nsizes;
    int samples;
    double min_time;
    int verbose;
    unsigned mask; /* candidates to run (bit per candidate) */
};

struct result {
    double gbps[NCAND][MAX_SAMPLE];
    double median[NCAND];
    double ratio[2]; /* coffer-v1 / ipsec-mb, coffer-v1 / openssl: medians of per-sample ratios */
};

/* The median over samples of a's GB/s divided by b's in the same sample; 0 if either is absent. */
static double paired_ratio(const struct result *res, int a, int b, int samples)
{
    double q[MAX_SAMPLE];
    if (res->median[a] <= 0 || res->median[b] <= 0)
        return 0;
    for (int s = 0; s < samples; s++)
        q[s] = res->gbps[a][s] / res->gbps[b][s];
    return bench_median(q, (size_t)samples);
}

/*
 * Each sample of each candidate is SLICES slices spread over the same stretch of time: the
 * candidates take turns slice by slice (starting one later each turn), so a burst of noise from
 * the neighbours on a shared machine lands on all of them alike and per-sample ratios stay fair.
 */
static void measure(struct bench *b, enum op op, const struct options *o, struct result *res)
{
    unsigned long reps[NCAND];

    for (int ci = 0; ci < NCAND; ci++)
        reps[ci] = (o->mask >> ci & 1) ? calibrate(b, ci, op, o->min_time) : 0;
    for (int s = 0; s < o->samples; s++) {
        double t[NCAND] = {0};
        for (int k = 0; k < SLICES; k++) {
            for (int j = 0; j < NCAND; j++) {
                int ci = (s * SLICES + k + j) % NCAND;
                if (reps[ci] > 0)
                    t[ci] += time_reps(b, ci, op, reps[ci]);
            }
        }
        for (int ci = 0; ci < NCAND; ci++)
            res->gbps[ci][s] =
                reps[ci] > 0 ? (double)b->size * (double)(reps[ci] * SLICES) / t[ci] / 1e9 : 0;
    }
    for (int ci = 0; ci < NCAND; ci++) {
        double tmp[MAX_SAMPLE];
        memcpy(tmp, res->gbps[ci], sizeof(double) * (size_t)o->samples);
        res->median[ci] = bench_median(tmp, (size_t)o->samples);
    }
    res->ratio[0] = paired_ratio(res, C_V1, C_IMB, o->samples);
    res->ratio[1] = paired_ratio(res, C_V1, C_EVP, o->samples);
}

/* ---- output ----------------------------------------------------------------------------- */

static void size_label(size_t size, char *buf, size_t len)
{
    if (size >= MIB && size % MIB == 0)
        snprintf(buf, len, "%zuMiB", size / MIB);
    else if (size >= KIB && size % KIB == 0)
        snprintf(buf, len, "%zuKiB", size / KIB);
    else
        snprintf(buf, len, "%zuB", size);
}

static void cpu_model(char *buf, size_t len)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];

    snprintf(buf, len, "unknown CPU");
    if (f == NULL)
        return;
    while (fgets(line, sizeof(line), f) != NULL) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && colon != NULL) {
            colon += strspn(colon + 1, " \t") + 1;
            colon[strcspn(colon, "\n")] = '\0';
            snprintf(buf, len, "%s", colon);
            break;
        }
    }
    fclose(f);
}

static void print_header(const struct options *o, const struct bench *b)
{
    char cpu[256];
    uint64_t f = b->mgr->features;

    cpu_model(cpu, sizeof(cpu));
    printf("bench_engine: backend %s, CPU %s x%ld, ipsec-mb %s, %s\n",
           engine_gcm_backend_name(ENGINE_GCM_AUTO), cpu, sysconf(_SC_NPROCESSORS_ONLN),
           imb_get_version_str(), OpenSSL_version(OPENSSL_VERSION));
    printf("  GB/s = 1e9 plaintext bytes per second of %s; whole messages, stream\n"
           "  set-up and key schedule included; median of %d samples of >= %.2f s, candidates\n"
           "  taking turns in %d slices per sample; ratios = median of per-sample ratios;\n"
           "  coffer-v1 fed in 1 MiB pieces (@64KiB: 64 KiB), cobblestone = bare Cobblestone-256\n",
           use_wall_clock ? "wall-clock time" : "this thread's CPU time", o->samples, o->min_time,
           SLICES);
    /* ipsec-mb 1.3 has VAES GCM only in its AVX-512 code: say so when that leaves VAES idle */
    if ((f & IMB_FEATURE_VAES) && (f & IMB_FEATURE_AVX512_SKX) != IMB_FEATURE_AVX512_SKX &&
        imb_get_version() < IMB_VERSION(1, 4, 0))
        printf("  note: the CPU has VAES but no AVX-512; ipsec-mb %s has VAES GCM only for "
               "AVX-512, so it runs AVX2 GCM\n",
               imb_get_version_str());
}

/* Jiffies of CPU time stolen by the hypervisor, and of all CPU time, from /proc/stat. */
static void cpu_steal(unsigned long long *steal, unsigned long long *total)
{
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");

    *steal = *total = 0;
    if (f == NULL)
        return;
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
               &v[5], &v[6], &v[7]) == 8) {
        for (int i = 0; i < 8; i++)
            *total += v[i];
        *steal = v[7];
    }
    fclose(f);
}

/* A median as "%5.2f" (below 0.1: 3 decimals), or "    -" for a candidate left out by --only. */
static const char *fmt_gbps(double v, char *buf, size_t len)
{
    if (v >= 0.1)
        snprintf(buf, len, "%5.2f", v);
    else if (v > 0)
        snprintf(buf, len, "%5.3f", v);
    else
        snprintf(buf, len, "%5s", "-");
    return buf;
}

static const char *fmt_ratio(double q, char *buf, size_t len)
{
    if (q > 0)
        snprintf(buf, len, "%.2fx", q);
    else
        snprintf(buf, len, "-");
    return buf;
}

static void print_row(size_t size, enum op op, const struct result *r)
{
    char label[32], v[NCAND][16], q[2][16];
    const double *m = r->median;

    size_label(size, label, sizeof(label));
    for (int ci = 0; ci < NCAND; ci++)
        fmt_gbps(m[ci], v[ci], sizeof(v[ci]));
    printf("%-6s %s  %s %s GB/s  %s %s GB/s  %s %s GB/s  coffer/ipsec-mb %s  coffer/openssl %s  "
           "|  %s %s  %s %s  %s %s\n",
           label, op_names[op], cands[C_V1].name, v[C_V1], cands[C_IMB].name, v[C_IMB],
           cands[C_EVP].name, v[C_EVP], fmt_ratio(r->ratio[0], q[0], sizeof(q[0])),
           fmt_ratio(r->ratio[1], q[1], sizeof(q[1])), cands[C_V1_64K].name, v[C_V1_64K],
           cands[C_COBBLESTONE].name, v[C_COBBLESTONE], cands[C_V1_OPENSSL].name, v[C_V1_OPENSSL]);
    fflush(stdout);
}

static void print_samples(const struct options *o, const struct result *r)
{
    for (int ci = 0; ci < NCAND; ci++) {
        if (!(o->mask >> ci & 1))
            continue;
        printf("         %-18s", cands[ci].name);
        for (int s = 0; s < o->samples; s++)
            printf(" %5.2f", r->gbps[ci][s]);
        printf("\n");
    }
}

/* The fixed cost per message that coffer-v1 adds over one raw ipsec-mb message, in us. */
static double overhead_us(size_t size, const struct result *r)
{
    return ((double)size / (r->median[C_V1] * 1e9) - (double)size / (r->median[C_IMB] * 1e9)) * 1e6;
}

/* ---- options ---------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_engine [--quick] [--sizes LIST] [--samples N] [--min-time S] "
            "[--wall] [--verbose] [--only LIST]\n"
            "  --quick       3 samples of >= 0.1 s, sizes 16K,1M\n"
            "  --sizes LIST  comma-separated message sizes, suffix K or M (KiB, MiB); "
            "default 16K,1M,64M\n"
            "  --samples N   samples per candidate (default 7, at most %d)\n"
            "  --min-time S  seconds per sample at least (default 0.3)\n"
            "  --wall        time with the wall clock, not this thread's CPU time\n"
            "  --verbose     print every sample\n"
            "  --only LIST   run only these candidates (for profiling), e.g. coffer-v1,ipsec-mb\n",
            MAX_SAMPLE);
}

static int parse_sizes(const char *arg, struct options *o)
{
    const char *p = arg;
    o->nsizes = 0;
    while (*p != '\0') {
        char *end;
        unsigned long long v = strtoull(p, &end, 10);
        if (end == p || o->nsizes == MAX_SIZES)
            return -1;
        if (*end == 'K' || *end == 'k')
            v *= KIB, end++;
        else if (*end == 'M' || *end == 'm')
            v *= MIB, end++;
        if (*end == 'i' && end[1] == 'B')
            end += 2;
        /* OpenSSL's one-shot takes an int length: keep every message below 2 GiB */
        if (v == 0 || v > 1024 * MIB || (*end != ',' && *end != '\0'))
            return -1;
        o->sizes[o->nsizes++] = (size_t)v;
        p = *end == ',' ? end + 1 : end;
    }
    return o->nsizes > 0 ? 0 : -1;
}

static int parse_only(const char *arg, struct options *o)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", arg);
    o->mask = 0;
    for (char *save, *t = strtok_r(buf, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
        int ci = 0;
        while (ci < NCAND && strcmp(t, cands[ci].name) != 0)
            ci++;
        if (ci == NCAND)
            return -1;
        o->mask |= 1u << ci;
    }
    return o->mask != 0 ? 0 : -1;
}

static void parse_options(int argc, char **argv, struct options *o)
{
    int quick = 0, sizes_given = 0;

    o->samples = 0;
    o->min_time = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--quick") == 0) {
            quick = 1;
        } else if (strcmp(a, "--wall") == 0) {
            use_wall_clock = 1;
        } else if (strcmp(a, "--verbose") == 0) {
            o->verbose = 1;
        } else if (strcmp(a, "--sizes") == 0 && v != NULL) {
            if (parse_sizes(v, o) != 0)
                die("bad --sizes '%s' (e.g. 16K,1M,64M; at most %d, each 1 byte to 1 GiB)", v,
                    MAX_SIZES);
            sizes_given = 1;
            i++;
        } else if (strcmp(a, "--only") == 0 && v != NULL) {
            if (parse_only(v, o) != 0)
                die("bad --only '%s': names are those of the table's columns", v);
            i++;
        } else if (strcmp(a, "--samples") == 0 && v != NULL) {
            o->samples = atoi(v);
            if (o->samples < 1 || o->samples > MAX_SAMPLE)
                die("--samples must be 1 to %d", MAX_SAMPLE);
            i++;
        } else if (strcmp(a, "--min-time") == 0 && v != NULL) {
            o->min_time = atof(v);
            if (!(o->min_time > 0 && o->min_time < 60))
                die("--min-time must be between 0 and 60 seconds");
            i++;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        } else {
            usage(stderr);
            exit(2);
        }
    }
    if (!sizes_given) {
        static const size_t full[] = {16 * KIB, MIB, 64 * MIB}, fast[] = {16 * KIB, MIB};
        o->nsizes = quick ? 2 : 3;
        memcpy(o->sizes, quick ? fast : full, sizeof(size_t) * (size_t)o->nsizes);
    }
    if (o->mask == 0)
        o->mask = (1u << NCAND) - 1;
    if (o->samples == 0)
        o->samples = quick ? 3 : 7;
    if (o->min_time == 0)
        o->min_time = quick ? 0.1 : 0.3;
}

int main(int argc, char **argv)
{
    struct options o;
    static struct bench b;
    static struct result res[MAX_SIZES][OPS];
    unsigned long long steal0, total0, steal1, total1;

    memset(&o, 0, sizeof(o));
    parse_options(argc, argv, &o);
    cpu_steal(&steal0, &total0);
    bench_init(&b);
    print_header(&o, &b);
    for (int si = 0; si < o.nsizes; si++) {
        bench_prepare(&b, o.sizes[si]);
        for (int op = 0; op < OPS; op++) {
            measure(&b, (enum op)op, &o, &res[si][op]);
            print_row(o.sizes[si], (enum op)op, &res[si][op]);
            if (o.verbose)
                print_samples(&o, &res[si][op]);
        }
        bench_release(&b);
    }
    if ((o.mask & (1u << C_V1)) && (o.mask & (1u << C_IMB))) {
        printf("fixed cost per message of coffer-v1 over one raw ipsec-mb message (from the "
               "medians; for large messages it drowns in the noise):\n");
        for (int si = 0; si < o.nsizes; si++) {
            char label[32];
            size_label(o.sizes[si], label, sizeof(label));
            printf("  %-6s seal %+8.1f us  open %+8.1f us\n", label,
                   overhead_us(o.sizes[si], &res[si][OP_SEAL]),
                   overhead_us(o.sizes[si], &res[si][OP_OPEN]));
        }
    }
    cpu_steal(&steal1, &total1);
    if (total1 > total0)
        printf("CPU time stolen by the hypervisor during the run: %.1f%%\n",
               100.0 * (double)(steal1 - steal0) / (double)(total1 - total0));
    engine_key_free(b.ekey);
    free(b.meta);
    free(b.imb_key);
    free(b.imb_ctx);
    free_mb_mgr(b.mgr);
    EVP_CIPHER_CTX_free(b.evp);
    EVP_CIPHER_free(b.evp_cipher);
    return 0;
}
