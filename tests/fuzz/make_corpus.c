/* SPDX-License-Identifier: Apache-2.0 */
/* Writes the fuzz targets' seed corpora (tests/fuzz/corpus/<target>/) with the real engine, the
 * same every time: fixed keys, salts and nonces. Usage: make_corpus <corpus-dir>. */
#include "coffer_error.h"
#include "engine_chunked.h"
#include "engine_header.h"
#include "engine_key.h"
#include "engine_metadata.h"
#include "engine_stream.h"
#include "engine_velero.h"
#include "fuzz_common.h"
#ifdef COFFER_FUZZ_HAVE_PROTO
#include "proto_frame.h"
#endif

#include <errno.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>

static const char *root;

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "make_corpus: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void put(const char *target, const char *name, const void *a, size_t alen, const void *b,
                size_t blen)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", root, target);
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        die("mkdir %s: %s", path, strerror(errno));
    snprintf(path, sizeof(path), "%s/%s/%s", root, target, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        die("%s: %s", path, strerror(errno));
    if ((alen > 0 && fwrite(a, 1, alen, f) != alen) || (blen > 0 && fwrite(b, 1, blen, f) != blen))
        die("%s: write failed", path);
    if (fclose(f) != 0)
        die("%s: %s", path, strerror(errno));
}

static void put_str(const char *target, const char *name, const char *s)
{
    put(target, name, s, strlen(s), NULL, 0);
}

/* Deterministic archive-like bytes: mostly text with some binary. */
static uint8_t *plaintext(size_t n, uint32_t seed)
{
    uint8_t *p = malloc(n > 0 ? n : 1);
    uint32_t x = seed * 2654435761u + 1;
    if (p == NULL)
        die("out of memory");
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        p[i] =
            (x >> 24) % 7 == 0 ? (uint8_t)(x >> 16) : (uint8_t)("coffer backup \n"[(x >> 16) % 15]);
    }
    return p;
}

static void check(int r, const char *what)
{
    if (r != 0)
        die("%s: %s", what, coffer_strerror(r));
}

/* ---- metadata ----------------------------------------------------------------------------- */

static char *metadata_secret_with_id(const char *id)
{
    json_t *m = engine_metadata_new_secret("velero", "coffer-key", "coffer-v1", id);
    char *s = engine_metadata_dump(m);
    json_decref(m);
    return s;
}

static const char *const metadata_samples[][2] = {
    {"velero-prototype.json",
     "{\"isEncrypted\": true, \"keyRetrieverType\": \"secret\", \"keyRetrieverConfig\": "
     "{\"namespace\": \"velero\", \"secretName\": \"velero-encryption\"}}"},
    {"pkcs11.json",
     "{\"isEncrypted\":true,\"keyRetrieverType\":\"pkcs11\",\"keyRetrieverConfig\":{\"token\":"
     "\"coffer\",\"keyLabel\":\"coffer-kek\",\"mechanism\":\"CKM_AES_GCM\",\"iv\":"
     "\"00112233445566778899aabb\",\"wrappedKey\":\"q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJ"
     "q83vEjRWeJo=\"},\"format\":\"coffer-v1\",\"keyId\":\"3f9a1c0b7d2e4a61\"}"},
    {"fallback.json",
     "{\"isEncrypted\":true,\"keyRetrieverType\":\"secret\",\"keyRetrieverConfig\":{"
     "\"namespace\":\"velero\",\"secretName\":\"coffer-key\"},\"format\":\"coffer-v1\","
     "\"keyId\":\"77c0e2d1a9b84f35\",\"fallback\":{\"tried\":\"pkcs11\",\"reason\":"
     "\"HSM_TIMEOUT\"},\"bytesIn\":1048576,\"bytesOut\":1052000}"},
    {"velero-v1.json",
     "{\"isEncrypted\":true,\"keyRetrieverType\":\"secret\",\"keyRetrieverConfig\":{"
     "\"namespace\":\"velero\",\"secretName\":\"legacy\"},\"format\":\"velero-v1\"}"},
    {"unicode.json",
     "{\"isEncrypted\":true,\"keyRetrieverType\":\"secret\",\"keyRetrieverConfig\":{"
     "\"namespace\":\"v\\u00e9lero\",\"secretName\":\"k\\ud83d\\ude00\"},\"keyId\":null}"},
    {"bad-traversal.json",
     "{\"isEncrypted\":true,\"keyRetrieverType\":\"secret\",\"keyRetrieverConfig\":{"
     "\"namespace\":\"..\",\"secretName\":\"../../etc/passwd\"}}"},
    {"bad-duplicate.json", "{\"isEncrypted\":true,\"isEncrypted\":false}"},
    {"bad-string-bool.json", "{\"isEncrypted\":\"true\",\"keyRetrieverType\":\"secret\"}"},
    {"bad-no-secretname.json",
     "{\"isEncrypted\":true,\"keyRetrieverType\":\"secret\",\"keyRetrieverConfig\":{"
     "\"namespace\":\"velero\"}}"},
    {"bad-config-array.json",
     "{\"isEncrypted\":true,\"keyRetrieverType\":\"file\",\"keyRetrieverConfig\":[1,2]}"},
    {"bad-empty-retriever.json", "{\"isEncrypted\":true,\"keyRetrieverType\":\"\"}"},
    {"bad-root-array.json", "[{\"isEncrypted\":false}]"},
    {"bad-nul.json", "{\"isEncrypted\":false,\"format\":\"n\\u0000ne\"}"},
    {"bad-truncated.json", "{\"isEncrypted\":true,\"keyRetrieverType\":\"sec"},
    {"numbers.json", "{\"isEncrypted\":false,\"a\":-0.0,\"b\":1e308,\"c\":9223372036854775807,"
                     "\"d\":[true,false,null,{}]}"},
};

static void make_metadata(char ***texts, size_t *count)
{
    static char *t[64];
    size_t n = 0;
    json_t *m;

    m = engine_metadata_new_secret("velero", "coffer-key", "coffer-v1", "3f9a1c0b7d2e4a61");
    t[n++] = engine_metadata_dump(m);
    json_decref(m);
    m = engine_metadata_new_file("/etc/coffer/offline.key", "cobblestone", "0123456789abcdef");
    t[n++] = engine_metadata_dump(m);
    json_decref(m);
    m = engine_metadata_new_plain();
    t[n++] = engine_metadata_dump(m);
    json_decref(m);
    put_str("fuzz_metadata", "secret.json", t[0]);
    put_str("fuzz_metadata", "file.json", t[1]);
    put_str("fuzz_metadata", "plain.json", t[2]);
    for (size_t i = 0; i < sizeof(metadata_samples) / sizeof(metadata_samples[0]); i++) {
        put_str("fuzz_metadata", metadata_samples[i][0], metadata_samples[i][1]);
        t[n++] = strdup(metadata_samples[i][1]);
    }
    /* deep nesting */
    char deep[2 * 600 + 64];
    size_t o = (size_t)snprintf(deep, sizeof(deep), "{\"isEncrypted\":false,\"x\":");
    for (int i = 0; i < 600; i++)
        deep[o++] = '[';
    for (int i = 0; i < 600; i++)
        deep[o++] = ']';
    deep[o++] = '}';
    deep[o] = '\0';
    put_str("fuzz_metadata", "deep.json", deep);
    *texts = t;
    *count = n;
}

/* ---- coffer-v1 headers -------------------------------------------------------------------- */

static void make_headers(char **texts, size_t count)
{
    static const uint8_t splits[] = {0x00, 0x80, 0xff};
    char name[64];

    for (size_t i = 0; i < count; i++) {
        uint8_t *h = NULL;
        size_t hlen = 0;
        check(engine_header_encode(texts[i], strlen(texts[i]), &h, &hlen), "header");
        uint8_t split = splits[i % 3];
        snprintf(name, sizeof(name), "header-%02zu", i);
        put("fuzz_header", name, &split, 1, h, hlen);
        free(h);
    }
    /* malformed fixed parts: [split] "COFFER" 0 version len(4) metadata */
    static const struct {
        const char *name;
        const char *bytes;
        size_t len;
    } bad[] = {
        /* octal escapes, which cannot run into the next character as \x escapes do */
        {"bad-magic", "\100COFFEE\000\001\000\000\000\002{}", 15},
        {"bad-version", "\100COFFER\000\002\000\000\000\002{}", 15},
        {"bad-length-huge", "\100COFFER\000\001\377\377\377\377", 13},
        {"bad-length-limit", "\100COFFER\000\001\000\000\174\365", 13}, /* 31989 */
        {"short-length-max", "\100COFFER\000\001\000\000\174\364{", 14},
        {"short-magic", "\100COF", 4},
        {"empty-metadata", "\100COFFER\000\001\000\000\000\000", 13},
        {"bad-json", "\100COFFER\000\001\000\000\000\003{\"}", 16},
        {"plain-then-body", "\020COFFER\000\001\000\000\000\007{\"i\":1}\336\255", 22},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        put("fuzz_header", bad[i].name, bad[i].bytes, bad[i].len, NULL, 0);
}

/* ---- keys --------------------------------------------------------------------------------- */

static void hex(const uint8_t *b, size_t n, char *out, int upper)
{
    const char *d = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[b[i] >> 4];
        out[2 * i + 1] = d[b[i] & 15];
    }
    out[2 * n] = '\0';
}

static void b64(const uint8_t *b, size_t n, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, b, (int)n);
}

static void make_keys(void)
{
    char t[256];
    put("fuzz_key", "raw-32", fuzz_key32, 32, NULL, 0);
    put("fuzz_key", "raw-24", fuzz_key24, 24, NULL, 0);
    put("fuzz_key", "raw-16", fuzz_key16, 16, NULL, 0);
    hex(fuzz_key32, 32, t, 0);
    put_str("fuzz_key", "hex-32", t);
    strcat(t, "\n");
    put_str("fuzz_key", "hex-32-newline", t);
    hex(fuzz_key32, 32, t, 1);
    strcat(t, "\r\n");
    put_str("fuzz_key", "hex-32-upper-crlf", t);
    hex(fuzz_key16, 16, t, 0);
    put_str("fuzz_key", "hex-16", t); /* 32 printable bytes: a passphrase for coffer-v1 */
    b64(fuzz_key32, 32, t);
    put_str("fuzz_key", "base64-32", t);
    strcat(t, "\n");
    put_str("fuzz_key", "base64-32-newline", t);
    b64(fuzz_key16, 16, t);
    put_str("fuzz_key", "base64-16", t);
    b64(fuzz_key24, 24, t);
    put_str("fuzz_key", "base64-24", t);
    put_str("fuzz_key", "passphrase-32", "correct horse battery staple!!!!");
    put_str("fuzz_key", "passphrase-short", "hunter2\n");
    put_str("fuzz_key", "base64-bad-padding", "AB=CAB=CAB=CAB=CAB=CAB=CAB=CAB=CAB=CAB=CAB==");
    uint8_t big[ENGINE_KEY_FIELD_MAX + 1];
    memset(big, 'A', sizeof(big));
    put("fuzz_key", "too-long", big, sizeof(big), NULL, 0);
}

/* ---- Cobblestone and coffer-v1 ciphertexts ------------------------------------------------ */

static const uint8_t fixed_salt[ENGINE_CHUNKED_SALT] = "coffer fuzz corpus salt";

/* Seal pt with fixed salt into a new buffer. */
static uint8_t *chunked_seal(engine_chunked_aead aead, const uint8_t *key, size_t keylen,
                             const uint8_t *ctx, size_t ctxlen, const uint8_t *pt, size_t ptlen,
                             size_t *ctlen)
{
    engine_chunked *c = NULL;
    size_t cap = engine_chunked_bound(ptlen) + engine_chunked_bound(0), n = 0, m = 0;
    uint8_t *out = malloc(cap);
    if (out == NULL)
        die("out of memory");
    check(
        engine_chunked_seal_new(&c, aead, ENGINE_GCM_OPENSSL, key, keylen, ctx, ctxlen, fixed_salt),
        "chunked seal");
    check(engine_chunked_update(c, pt, ptlen, out, cap, &n), "chunked update");
    check(engine_chunked_final(c, out + n, cap - n, &m), "chunked final");
    engine_chunked_free(c);
    *ctlen = n + m;
    return out;
}

static const size_t pt_lens[] = {0, 1, 1000, 16383, 16384, 16385, 33000};

static void make_chunked(void)
{
    char name[64];
    for (int aes128 = 0; aes128 <= 1; aes128++) {
        for (size_t i = 0; i < sizeof(pt_lens) / sizeof(pt_lens[0]); i++) {
            uint8_t *pt = plaintext(pt_lens[i], (uint32_t)i);
            size_t ctlen = 0;
            uint8_t *ct =
                chunked_seal(aes128 ? ENGINE_CHUNKED_AES_128_GCM : ENGINE_CHUNKED_AES_256_GCM,
                             aes128 ? fuzz_key16 : fuzz_key32, aes128 ? 16 : 32, fuzz_context,
                             fuzz_context_len, pt, pt_lens[i], &ctlen);
            uint8_t prefix[FUZZ_PREFIX] = {aes128 ? FUZZ_CHUNKED_AES128 : 0, 0, 0, 0};
            if (i % 2 == 1) { /* some in pieces */
                prefix[1] = 0x5e;
                prefix[2] = (uint8_t)(0x17 * i);
                prefix[3] = 0x3b;
            }
            snprintf(name, sizeof(name), "cobblestone-%d-%zu", aes128 ? 128 : 256, pt_lens[i]);
            put("fuzz_chunked_open", name, prefix, sizeof(prefix), ct, ctlen);
            free(ct);
            free(pt);
        }
    }
}

/* Open a whole file through engine_stream, to be sure the corpus is valid. */
static void verify_stream(const struct engine_stream_params *p0, const uint8_t *in, size_t len,
                          size_t ptlen)
{
    struct engine_stream_params p = *p0;
    engine_header_reader hr;
    engine_stream *s = NULL;
    size_t used = 0, n = 0, total = 0, cap = engine_chunked_bound(len) + 64;
    uint8_t *out = malloc(cap);

    if (out == NULL)
        die("out of memory");
    engine_header_reader_init(&hr);
    if (p.format == COFFER_FORMAT_COFFER_V1) {
        if (engine_header_reader_feed(&hr, in, len, &used) != 1)
            die("corpus header does not parse");
        p.header = &hr;
    }
    check(engine_stream_open_new(&s, &p), "stream open");
    check(engine_stream_update(s, in + used, len - used, out, cap, &n), "stream update");
    total += n;
    check(engine_stream_finish(s, out + total, cap - total, &n), "stream finish");
    total += n;
    do {
        check(engine_stream_drain(s, out + total, cap - total, &n), "stream drain");
        total += n;
    } while (n > 0);
    if (total != ptlen)
        die("corpus file opened to %zu bytes, not %zu", total, ptlen);
    engine_stream_free(s);
    engine_header_reader_clear(&hr);
    free(out);
}

static void make_stream(void)
{
    static const size_t lens[] = {0, 100, 16384, 20000};
    engine_key *k32 = NULL, *k16 = NULL, *k24 = NULL;
    char name[64];

    check(engine_key_from_bytes(&k32, fuzz_key32, 32), "key");
    check(engine_key_from_bytes(&k16, fuzz_key16, 16), "key");
    check(engine_key_from_bytes(&k24, fuzz_key24, 24), "key");

    /* coffer-v1 with the right key id, with none, and with another key's id */
    char *with_id = metadata_secret_with_id(k32->id);
    json_t *noid_j = json_pack("{s:b, s:s, s:{s:s, s:s}, s:s}", "isEncrypted", 1,
                               "keyRetrieverType", "secret", "keyRetrieverConfig", "namespace",
                               "velero", "secretName", "coffer-key", "format", "coffer-v1");
    char *no_id = engine_metadata_dump(noid_j);
    json_decref(noid_j);
    char *other_id = metadata_secret_with_id("0000000000000000");
    const char *metas[3] = {with_id, no_id, other_id};
    const char *meta_names[3] = {"keyid", "nokeyid", "otherkeyid"};

    for (int mi = 0; mi < 3; mi++) {
        for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
            if (mi == 2 && i > 0)
                break;
            uint8_t *h = NULL, *pt = plaintext(lens[i], 100 + (uint32_t)i);
            size_t hlen = 0, ctlen = 0;
            check(engine_header_encode(metas[mi], strlen(metas[mi]), &h, &hlen), "header");
            uint8_t *ct = chunked_seal(ENGINE_CHUNKED_AES_256_GCM, fuzz_key32, 32, h, hlen, pt,
                                       lens[i], &ctlen);
            uint8_t *file = malloc(hlen + ctlen);
            if (file == NULL)
                die("out of memory");
            memcpy(file, h, hlen);
            memcpy(file + hlen, ct, ctlen);
            if (mi < 2) {
                struct engine_stream_params p = {.format = COFFER_FORMAT_COFFER_V1, .key = k32};
                verify_stream(&p, file, hlen + ctlen, lens[i]);
            }
            uint8_t prefix[FUZZ_PREFIX] = {(uint8_t)(i % 2 ? FUZZ_STREAM_OPENSSL : 0), 0, 0, 0};
            if (i >= 2) {
                prefix[1] = 0x2c;
                prefix[2] = (uint8_t)(0x31 * i);
                prefix[3] = 0x77;
            }
            snprintf(name, sizeof(name), "coffer-v1-%s-%zu", meta_names[mi], lens[i]);
            put("fuzz_stream_open", name, prefix, sizeof(prefix), file, hlen + ctlen);
            free(file);
            free(ct);
            free(h);
            free(pt);
        }
    }

    /* velero-v1: nonce || ciphertext || tag, a fixed nonce, keys of each size */
    static const uint8_t nonce[ENGINE_VELERO_NONCE] = "velero nonc";
    static const size_t vlens[] = {0, 100, 5000};
    const engine_key *keys[3] = {k32, k16, k24};
    for (unsigned ki = 0; ki < 3; ki++) {
        for (size_t i = 0; i < sizeof(vlens) / sizeof(vlens[0]); i++) {
            engine_gcm *g = NULL;
            size_t len = ENGINE_VELERO_NONCE + vlens[i] + ENGINE_VELERO_TAG;
            uint8_t *pt = plaintext(vlens[i], 200 + (uint32_t)i);
            uint8_t *file = malloc(len);
            if (file == NULL)
                die("out of memory");
            memcpy(file, nonce, ENGINE_VELERO_NONCE);
            check(engine_gcm_new(&g, ENGINE_GCM_OPENSSL, keys[ki]->bytes, keys[ki]->len), "gcm");
            check(engine_gcm_seal(g, nonce, ENGINE_VELERO_NONCE, NULL, 0, pt, vlens[i],
                                  file + ENGINE_VELERO_NONCE, file + len - ENGINE_VELERO_TAG,
                                  ENGINE_VELERO_TAG),
                  "gcm seal");
            engine_gcm_free(g);
            struct engine_stream_params p = {
                .format = COFFER_FORMAT_VELERO_V1, .key = keys[ki], .spool_mem = 4096};
            verify_stream(&p, file, len, vlens[i]);
            /* flags: velero, key size index (0: 32, 1: 16, 2: 24), spool index = i + 1 */
            uint8_t prefix[FUZZ_PREFIX] = {(uint8_t)(FUZZ_STREAM_VELERO | ki << 1 |
                                                     (unsigned)(i + 1) << 3 |
                                                     (ki == 1 ? FUZZ_STREAM_OPENSSL : 0)),
                                           0, 0, 0};
            if (i == 2) {
                prefix[1] = 0x0b;
                prefix[2] = (uint8_t)(0x45 * ki);
                prefix[3] = 0x19;
            }
            snprintf(name, sizeof(name), "velero-v1-%zu-%zu", keys[ki]->len * 8, vlens[i]);
            put("fuzz_stream_open", name, prefix, sizeof(prefix), file, len);
            free(file);
            free(pt);
        }
    }
    free(with_id);
    free(no_id);
    free(other_id);
    engine_key_free(k32);
    engine_key_free(k16);
    engine_key_free(k24);
}

/* ---- cofferd frames ----------------------------------------------------------------------- */

#ifdef COFFER_FUZZ_HAVE_PROTO
static void make_proto(char **texts)
{
    uint8_t buf[4096];
    size_t o = 0, n = 0;
    proto_hello hello = {1, 1, COFFER_MAX_FRAME};

    check(proto_hello_write(buf, sizeof(buf), &hello, &n), "hello");
    put("fuzz_proto_frame", "hello", buf, n, NULL, 0);

    /* a whole encrypt session as a client sends it */
    check(proto_hello_write(buf, sizeof(buf), &hello, &n), "hello");
    o = n;
    proto_job job = {.op = PROTO_OP_ENCRYPT, .input = PROTO_INPUT_STREAM};
    strcpy(job.format, "coffer-v1");
    job.metadata = texts[0];
    job.metadata_len = strlen(texts[0]);
    check(proto_job_write(buf + o, sizeof(buf) - o, &job, &n), "job");
    o += n;
    check(proto_frame_write(buf + o, sizeof(buf) - o, PROTO_DATA, "tar data", 8, &n), "data");
    o += n;
    check(proto_frame_write(buf + o, sizeof(buf) - o, PROTO_END, NULL, 0, &n), "end");
    o += n;
    put("fuzz_proto_frame", "encrypt-session", buf, o, NULL, 0);

    proto_job dec = {.op = PROTO_OP_DECRYPT, .input = PROTO_INPUT_FDS, .flags = PROTO_JOB_FSYNC};
    strcpy(dec.format, "cobblestone-128");
    dec.context = fuzz_context;
    dec.context_len = fuzz_context_len;
    check(proto_job_write(buf, sizeof(buf), &dec, &n), "job");
    put("fuzz_proto_frame", "decrypt-fds-job", buf, n, NULL, 0);

    proto_result res = {1048576, 1052000, texts[0], strlen(texts[0])};
    check(proto_result_write(buf, sizeof(buf), &res, &n), "result");
    put("fuzz_proto_frame", "result", buf, n, NULL, 0);

    check(proto_error_write(buf, sizeof(buf), COFFER_ERR_WRONG_KEY,
                            coffer_strerror(COFFER_ERR_WRONG_KEY), &n),
          "error");
    put("fuzz_proto_frame", "error", buf, n, NULL, 0);

    check(proto_frame_write(buf, sizeof(buf), PROTO_HEALTH, NULL, 0, &n), "health");
    o = n;
    check(proto_frame_write(buf + o, sizeof(buf) - o, PROTO_STATS, "{}", 2, &n), "stats");
    o += n;
    put("fuzz_proto_frame", "health-stats", buf, o, NULL, 0);

    static const uint8_t too_big[] = {PROTO_DATA, 0, 0, 0, 0x00, 0x02, 0x00, 0x01};
    put("fuzz_proto_frame", "bad-too-big", too_big, sizeof(too_big), NULL, 0);
    static const uint8_t flags_set[] = {PROTO_END, 1, 0, 0, 0, 0, 0, 0};
    put("fuzz_proto_frame", "bad-flags", flags_set, sizeof(flags_set), NULL, 0);
}
#endif

int main(int argc, char **argv)
{
    char **texts = NULL;
    size_t count = 0;

    if (argc != 2) {
        fprintf(stderr, "usage: %s <corpus-dir>\n", argv[0]);
        return 2;
    }
    root = argv[1];
    if (mkdir(root, 0755) != 0 && errno != EEXIST)
        die("mkdir %s: %s", root, strerror(errno));
    make_metadata(&texts, &count);
    make_headers(texts, count);
    make_keys();
    make_chunked();
    make_stream();
#ifdef COFFER_FUZZ_HAVE_PROTO
    make_proto(texts);
#endif
    for (size_t i = 0; i < count; i++)
        free(texts[i]);
    return 0;
}
