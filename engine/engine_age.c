/* SPDX-License-Identifier: Apache-2.0 */
/* age-encryption.org/v1 with X25519 stanzas, on OpenSSL's primitives (see engine_age.h). */
#include "engine_age.h"

#include "coffer_error.h"
#include "engine_bech32.h"
#include "engine_secmem.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define AGE_VERSION_LINE    "age-encryption.org/v1\n"
#define AGE_X25519_INFO     "age-encryption.org/v1/X25519"
#define AGE_FILE_KEY_LEN    16
#define AGE_TAG_LEN         16
#define AGE_NONCE_LEN       16
#define AGE_CHUNK           65536
#define AGE_B64_32          43 /* unpadded base64 of 32 bytes */
#define AGE_LINE_COLUMNS    64
#define AGE_STANZAS_MAX     256
#define AGE_STANZA_BODY_MAX 4096
#define AGE_HRP_RECIPIENT   "age"
#define AGE_HRP_IDENTITY    "age-secret-key-"

#define AGE_DETAIL(...)                                                                            \
    do {                                                                                           \
        if (detail != NULL)                                                                        \
            snprintf(detail, detaillen, __VA_ARGS__);                                              \
    } while (0)

/* ---- base64 without padding (OpenSSL's codec, padding handled here) ---- */

size_t engine_age_b64_encode(const uint8_t *in, size_t n, char *out)
{
    int len = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    while (len > 0 && out[len - 1] == '=')
        len--;
    out[len] = '\0';
    return (size_t)len;
}

long engine_age_b64_decode(const char *in, size_t n, uint8_t *out, size_t outcap)
{
    char padded[AGE_STANZA_BODY_MAX * 2];
    uint8_t tmp[AGE_STANZA_BODY_MAX + 3];
    char check[AGE_STANZA_BODY_MAX * 2];
    size_t pad = (4 - n % 4) % 4, bytes;
    long r = -1;

    if (n % 4 == 1 || n + pad >= sizeof(padded))
        return -1;
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/'))
            return -1;
    }
    memcpy(padded, in, n);
    memset(padded + n, '=', pad);
    bytes = (n + pad) / 4 * 3 - pad;
    if (bytes > outcap ||
        EVP_DecodeBlock(tmp, (const unsigned char *)padded, (int)(n + pad)) != (int)(bytes + pad))
        goto out;
    /* canonical: the unused bits of the last character are zero, so it encodes back the same */
    if (engine_age_b64_encode(tmp, bytes, check) != n || memcmp(check, in, n) != 0)
        goto out;
    memcpy(out, tmp, bytes);
    r = (long)bytes;
out:
    engine_secmem_wipe(tmp, sizeof(tmp));
    return r;
}

/* ---- primitives ---- */

static pthread_once_t age_kdf_once = PTHREAD_ONCE_INIT;
static EVP_KDF *age_kdf; /* fetched once: a fetch costs more than the derivation */

static void age_kdf_fetch(void)
{
    age_kdf = EVP_KDF_fetch(NULL, "HKDF", "provider=default");
}

static int age_hkdf(const uint8_t *ikm, size_t ikmlen, const uint8_t *salt, size_t saltlen,
                    const char *info, uint8_t out[32])
{
    int r = COFFER_ERR_INTERNAL;
    EVP_KDF_CTX *kctx;
    OSSL_PARAM params[5], *p = params;

    pthread_once(&age_kdf_once, age_kdf_fetch);
    kctx = age_kdf != NULL ? EVP_KDF_CTX_new(age_kdf) : NULL;

    *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, "SHA256", 0);
    *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, ikmlen);
    /* an absent salt is HashLen zero bytes (RFC 5869), the same HMAC key as an empty one */
    if (saltlen > 0)
        *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, saltlen);
    *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, strlen(info));
    *p = OSSL_PARAM_construct_end();
    if (kctx != NULL && EVP_KDF_derive(kctx, out, 32, params) == 1)
        r = 0;
    EVP_KDF_CTX_free(kctx);
    return r;
}

/* ChaCha20-Poly1305 with a 12-byte nonce and no AAD; seal writes n + 16 bytes. */
static int age_aead(int seal, const uint8_t key[32], const uint8_t nonce[12], const uint8_t *in,
                    size_t n, uint8_t *out)
{
    int r = seal ? COFFER_ERR_INTERNAL : COFFER_ERR_TAMPERED, len = 0;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    size_t body = seal ? n : n - AGE_TAG_LEN;

    if (c == NULL || (!seal && n < AGE_TAG_LEN) || n > (size_t)INT32_MAX)
        goto out;
    if (EVP_CipherInit_ex(c, EVP_chacha20_poly1305(), NULL, key, nonce, seal) != 1)
        goto out;
    if (!seal &&
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, AGE_TAG_LEN, (void *)(in + body)) != 1)
        goto out;
    if (body > 0 && EVP_CipherUpdate(c, out, &len, in, (int)body) != 1)
        goto out;
    if (EVP_CipherFinal_ex(c, out + len, &len) != 1)
        goto out;
    if (seal && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, AGE_TAG_LEN, out + body) != 1)
        goto out;
    r = 0;
out:
    if (r != 0 && !seal)
        engine_secmem_wipe(out, body);
    EVP_CIPHER_CTX_free(c);
    return r;
}

/* X25519(secret, point) into shared; COFFER_ERR_KEY_FORM when the result is all zeros. */
static int age_x25519(const uint8_t secret[32], const uint8_t point[32], uint8_t shared[32])
{
    int r = COFFER_ERR_INTERNAL;
    EVP_PKEY *priv = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, secret, 32);
    EVP_PKEY *peer = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, point, 32);
    EVP_PKEY_CTX *c = priv != NULL ? EVP_PKEY_CTX_new(priv, NULL) : NULL;
    static const uint8_t zero[32];
    size_t len = 32;

    if (c == NULL || peer == NULL || EVP_PKEY_derive_init(c) != 1 ||
        EVP_PKEY_derive_set_peer(c, peer) != 1)
        goto out;
    /* OpenSSL refuses an all-zero result itself; the check below holds whatever it does */
    if (EVP_PKEY_derive(c, shared, &len) != 1 || len != 32 ||
        CRYPTO_memcmp(shared, zero, 32) == 0) {
        engine_secmem_wipe(shared, 32);
        r = COFFER_ERR_KEY_FORM;
        goto out;
    }
    r = 0;
out:
    EVP_PKEY_CTX_free(c);
    EVP_PKEY_free(peer);
    EVP_PKEY_free(priv);
    return r;
}

static int age_x25519_public(const uint8_t secret[32], uint8_t pub[32])
{
    EVP_PKEY *priv = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, secret, 32);
    size_t len = 32;
    int ok = priv != NULL && EVP_PKEY_get_raw_public_key(priv, pub, &len) == 1 && len == 32;
    EVP_PKEY_free(priv);
    return ok ? 0 : COFFER_ERR_INTERNAL;
}

/* ---- keys ---- */

static int age_recipient_set(engine_age_recipient *out, const uint8_t key[32])
{
    uint8_t five[ENGINE_AGE_RECIPIENT_TEXT];
    size_t n = 0;
    memcpy(out->key, key, 32);
    if (engine_bech32_regroup(key, 32, 8, 5, 1, five, sizeof(five), &n) != 0 ||
        engine_bech32_encode(AGE_HRP_RECIPIENT, five, n, 0, out->text, sizeof(out->text)) != 0)
        return COFFER_ERR_INTERNAL;
    return 0;
}

/* Decode a bech32 key string with the expected hrp into 32 bytes. what: "recipient"/"identity". */
static int age_key_decode(const char *text, size_t len, const char *want_hrp, uint8_t key[32],
                          char *detail, size_t detaillen)
{
    char hrp[ENGINE_BECH32_MAX + 1];
    uint8_t five[ENGINE_BECH32_MAX];
    char why[160] = "";
    size_t n = 0, klen = 0;
    int r;

    r = engine_bech32_decode(text, len, hrp, sizeof(hrp), five, sizeof(five), &n, why, sizeof(why));
    if (r == 0 && strcmp(hrp, want_hrp) != 0) {
        snprintf(why, sizeof(why), "its prefix is '%.20s1', not '%s1'", hrp, want_hrp);
        r = COFFER_ERR_KEY_FORM;
    }
    if (r == 0 && (engine_bech32_regroup(five, n, 5, 8, 0, key, 32, &klen) != 0 || klen != 32)) {
        snprintf(why, sizeof(why), "it holds %zu bits, not a 32-byte key", n * 5);
        r = COFFER_ERR_KEY_FORM;
    }
    engine_secmem_wipe(five, sizeof(five));
    if (r != 0)
        AGE_DETAIL("%s", why);
    return r;
}

int engine_age_recipient_parse(engine_age_recipient *out, const char *text, size_t len,
                               char *detail, size_t detaillen)
{
    uint8_t key[32];
    char why[200] = "";
    int r = COFFER_ERR_KEY_FORM;

    memset(out, 0, sizeof(*out));
    if (len >= 15 && strncasecmp(text, "AGE-SECRET-KEY-", 15) == 0) {
        AGE_DETAIL("'AGE-SECRET-KEY-1...' is an identity (a secret key), not a recipient: give "
                   "its public key 'age1...' (age-keygen -y FILE prints it) and keep the "
                   "identity offline");
        return r;
    }
    if ((len >= 4 && strncmp(text, "ssh-", 4) == 0) ||
        (len >= 6 && strncmp(text, "ecdsa-", 6) == 0)) {
        AGE_DETAIL("SSH public keys are not supported as recovery recipients: give an X25519 "
                   "recipient 'age1...' (age-keygen or 'coffer recovery keygen' makes one)");
        return r;
    }
    if (len >= 7 && strncasecmp(text, "age1pq1", 7) == 0) {
        AGE_DETAIL("post-quantum recipients 'age1pq1...' are not supported: give an X25519 "
                   "recipient 'age1...'");
        return r;
    }
    if (len < 4 || strncasecmp(text, "age1", 4) != 0) {
        AGE_DETAIL("'%.*s...' is not an age X25519 recipient: it must start with 'age1' "
                   "(age-keygen or 'coffer recovery keygen' makes one)",
                   (int)(len < 8 ? len : 8), text);
        return r;
    }
    if (len != ENGINE_AGE_RECIPIENT_TEXT) {
        AGE_DETAIL("'%.*s...' is %zu characters long; an age X25519 recipient has %d "
                   "(a plugin recipient 'age1<name>1...' is not supported)",
                   (int)(len < 12 ? len : 12), text, len, ENGINE_AGE_RECIPIENT_TEXT);
        return r;
    }
    r = age_key_decode(text, len, AGE_HRP_RECIPIENT, key, why, sizeof(why));
    if (r != 0) {
        AGE_DETAIL("recipient '%.12s...' is not valid: %s", text, why); /* len is 62 here */
        return r;
    }
    return age_recipient_set(out, key);
}

static int age_identity_from_secret(engine_age_identity **out, const uint8_t secret[32])
{
    uint8_t pub[32];
    engine_age_identity *id = engine_secmem_alloc(sizeof(*id));
    int r;

    *out = NULL;
    if (id == NULL)
        return COFFER_ERR_NOMEM;
    memcpy(id->secret, secret, 32);
    if ((r = age_x25519_public(id->secret, pub)) != 0 ||
        (r = age_recipient_set(&id->recipient, pub)) != 0) {
        engine_secmem_free(id);
        return r;
    }
    *out = id;
    return 0;
}

int engine_age_identity_parse(engine_age_identity **out, const char *text, size_t len, char *detail,
                              size_t detaillen)
{
    uint8_t secret[32];
    char why[160] = "";
    int r;

    *out = NULL;
    if (len >= 4 && strncmp(text, "age1", 4) == 0) {
        AGE_DETAIL("an 'age1...' recipient is a public key, not an identity: give the "
                   "'AGE-SECRET-KEY-1...' file it was made from");
        return COFFER_ERR_KEY_FORM;
    }
    if (len < 16 || strncasecmp(text, "AGE-SECRET-KEY-1", 16) != 0) {
        AGE_DETAIL("a line that is not an age X25519 identity (it must start with "
                   "'AGE-SECRET-KEY-1'; plugin and post-quantum identities are not supported)");
        return COFFER_ERR_KEY_FORM;
    }
    r = age_key_decode(text, len, AGE_HRP_IDENTITY, secret, why, sizeof(why));
    if (r == 0)
        r = age_identity_from_secret(out, secret);
    else
        AGE_DETAIL("an identity that is not valid: %s", why);
    engine_secmem_wipe(secret, sizeof(secret));
    return r;
}

int engine_age_identity_generate(engine_age_identity **out)
{
    uint8_t secret[32];
    int r = COFFER_ERR_INTERNAL;

    *out = NULL;
    if (RAND_priv_bytes(secret, sizeof(secret)) == 1)
        r = age_identity_from_secret(out, secret);
    engine_secmem_wipe(secret, sizeof(secret));
    return r;
}

int engine_age_identity_text(const engine_age_identity *id, char out[ENGINE_AGE_IDENTITY_TEXT + 1])
{
    uint8_t five[ENGINE_AGE_IDENTITY_TEXT];
    size_t n = 0;
    int r = COFFER_ERR_INTERNAL;

    if (engine_bech32_regroup(id->secret, 32, 8, 5, 1, five, sizeof(five), &n) == 0 &&
        engine_bech32_encode(AGE_HRP_IDENTITY, five, n, 1, out, ENGINE_AGE_IDENTITY_TEXT + 1) == 0)
        r = 0;
    engine_secmem_wipe(five, sizeof(five));
    return r;
}

void engine_age_identity_free(engine_age_identity *id)
{
    engine_secmem_free(id);
}

/* ---- key files ---- */

/* Read a whole key file (at most ENGINE_AGE_KEYFILE_MAX bytes) into buf (cap > that). */
static int age_file_read(const char *path, char *buf, size_t cap, size_t *len, char *detail,
                         size_t detaillen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    size_t have = 0;

    *len = 0;
    if (fd < 0) {
        int e = errno;
        AGE_DETAIL("%s: %s", path, strerror(e));
        return e == ENOENT ? COFFER_ERR_KEY_MISSING : COFFER_ERR_KEY_READ;
    }
    for (;;) {
        ssize_t n = read(fd, buf + have, cap - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            AGE_DETAIL("%s: %s", path, strerror(e));
            return COFFER_ERR_KEY_READ;
        }
        if (n == 0)
            break;
        have += (size_t)n;
        if (have > ENGINE_AGE_KEYFILE_MAX) {
            close(fd);
            AGE_DETAIL("%s is larger than %u bytes: not a key file", path, ENGINE_AGE_KEYFILE_MAX);
            return COFFER_ERR_TOO_LARGE;
        }
    }
    close(fd);
    buf[have] = '\0';
    *len = have;
    return 0;
}

/* The next line of buf (from *pos), trimmed; NULL at the end. */
static const char *age_next_line(const char *buf, size_t len, size_t *pos, size_t *linelen)
{
    size_t s = *pos, e;
    if (s >= len)
        return NULL;
    e = s;
    while (e < len && buf[e] != '\n')
        e++;
    *pos = e + 1;
    while (s < e && (buf[s] == ' ' || buf[s] == '\t' || buf[s] == '\r'))
        s++;
    while (e > s && (buf[e - 1] == ' ' || buf[e - 1] == '\t' || buf[e - 1] == '\r'))
        e--;
    *linelen = e - s;
    return buf + s;
}

int engine_age_recipients_load(engine_age_recipients *list, const char *path, char *detail,
                               size_t detaillen)
{
    char *buf = malloc(ENGINE_AGE_KEYFILE_MAX + 2);
    size_t len = 0, pos = 0, ll = 0, lineno = 0, added = 0;
    const char *line;
    int r;

    if (buf == NULL)
        return COFFER_ERR_NOMEM;
    if ((r = age_file_read(path, buf, ENGINE_AGE_KEYFILE_MAX + 1, &len, detail, detaillen)) != 0)
        goto out;
    while ((line = age_next_line(buf, len, &pos, &ll)) != NULL) {
        engine_age_recipient rc;
        char why[400];
        int dup = 0;
        lineno++;
        if (ll == 0 || line[0] == '#')
            continue;
        if ((r = engine_age_recipient_parse(&rc, line, ll, why, sizeof(why))) != 0) {
            AGE_DETAIL("%s line %zu: %s", path, lineno, why);
            goto out;
        }
        for (size_t i = 0; i < list->n; i++)
            dup |= memcmp(list->v[i].key, rc.key, 32) == 0;
        added++;
        if (dup)
            continue;
        if (list->n == ENGINE_AGE_LIST_MAX) {
            r = COFFER_ERR_TOO_LARGE;
            AGE_DETAIL("%s line %zu: more than %d recovery recipients in all; each adds about "
                       "400 bytes to every backup's header, whose metadata is limited to 31988 "
                       "bytes",
                       path, lineno, ENGINE_AGE_LIST_MAX);
            goto out;
        }
        engine_age_recipient *v = realloc(list->v, (list->n + 1) * sizeof(*v));
        if (v == NULL) {
            r = COFFER_ERR_NOMEM;
            goto out;
        }
        list->v = v;
        list->v[list->n++] = rc;
    }
    if (added == 0) {
        r = COFFER_ERR_INVALID_ARG;
        AGE_DETAIL("%s names no recipient (one 'age1...' a line expected)", path);
        goto out;
    }
    r = 0;
out:
    free(buf);
    return r;
}

void engine_age_recipients_clear(engine_age_recipients *list)
{
    free(list->v);
    list->v = NULL;
    list->n = 0;
}

int engine_age_identities_load(engine_age_identities *list, const char *path, char *detail,
                               size_t detaillen)
{
    char *buf = engine_secmem_alloc(ENGINE_AGE_KEYFILE_MAX + 2);
    size_t len = 0, pos = 0, ll = 0, lineno = 0, added = 0;
    const char *line;
    int r;

    if (buf == NULL)
        return COFFER_ERR_NOMEM;
    if ((r = age_file_read(path, buf, ENGINE_AGE_KEYFILE_MAX + 1, &len, detail, detaillen)) != 0)
        goto out;
    while ((line = age_next_line(buf, len, &pos, &ll)) != NULL) {
        engine_age_identity *id = NULL;
        char why[300];
        lineno++;
        if (ll == 0 || line[0] == '#')
            continue;
        if ((r = engine_age_identity_parse(&id, line, ll, why, sizeof(why))) != 0) {
            AGE_DETAIL("%s line %zu: %s", path, lineno, why);
            goto out;
        }
        if (list->n == ENGINE_AGE_LIST_MAX) {
            engine_age_identity_free(id);
            r = COFFER_ERR_TOO_LARGE;
            AGE_DETAIL("%s line %zu: more than %d identities", path, lineno, ENGINE_AGE_LIST_MAX);
            goto out;
        }
        list->v[list->n++] = id;
        added++;
    }
    if (added == 0) {
        r = COFFER_ERR_INVALID_ARG;
        AGE_DETAIL("%s holds no identity (a line 'AGE-SECRET-KEY-1...' expected)", path);
        goto out;
    }
    r = 0;
out:
    engine_secmem_free(buf);
    return r;
}

void engine_age_identities_clear(engine_age_identities *list)
{
    for (size_t i = 0; i < list->n; i++)
        engine_age_identity_free(list->v[i]);
    list->n = 0;
}

/* ---- files ---- */

/* The 12-byte STREAM nonce of chunk i. */
static void age_chunk_nonce(uint64_t i, int last, uint8_t nonce[12])
{
    memset(nonce, 0, 12);
    for (int b = 0; b < 8; b++)
        nonce[10 - b] = (uint8_t)(i >> (8 * b));
    nonce[11] = last ? 1 : 0;
}

static size_t age_payload_size(size_t ptlen)
{
    size_t chunks = ptlen == 0 ? 1 : (ptlen + AGE_CHUNK - 1) / AGE_CHUNK;
    return AGE_NONCE_LEN + ptlen + chunks * AGE_TAG_LEN;
}

/* One "-> X25519" stanza for recipient rc into out (at least 100 bytes); returns its length. */
static int age_stanza_x25519(const engine_age_recipient *rc, const uint8_t file_key[16], char *out,
                             size_t *outlen)
{
    static const uint8_t zero_nonce[12];
    uint8_t eph[32], share[32], shared[32], salt[64], wrap[32],
        body[AGE_FILE_KEY_LEN + AGE_TAG_LEN];
    int r = COFFER_ERR_INTERNAL;
    size_t o = 0;

    if (RAND_priv_bytes(eph, sizeof(eph)) != 1 || age_x25519_public(eph, share) != 0)
        goto out;
    if ((r = age_x25519(eph, rc->key, shared)) != 0)
        goto out;
    memcpy(salt, share, 32);
    memcpy(salt + 32, rc->key, 32);
    if ((r = age_hkdf(shared, 32, salt, 64, AGE_X25519_INFO, wrap)) != 0 ||
        (r = age_aead(1, wrap, zero_nonce, file_key, AGE_FILE_KEY_LEN, body)) != 0)
        goto out;
    memcpy(out, "-> X25519 ", 10);
    o = 10;
    o += engine_age_b64_encode(share, 32, out + o);
    out[o++] = '\n';
    o += engine_age_b64_encode(body, sizeof(body), out + o);
    out[o++] = '\n';
    *outlen = o;
    r = 0;
out:
    engine_secmem_wipe(eph, sizeof(eph));
    engine_secmem_wipe(shared, sizeof(shared));
    engine_secmem_wipe(wrap, sizeof(wrap));
    return r;
}

int engine_age_encrypt(const engine_age_recipient *rcpt, size_t nr, const uint8_t *pt, size_t ptlen,
                       uint8_t **out, size_t *outlen)
{
    int r = COFFER_ERR_INVALID_ARG;
    uint8_t file_key[AGE_FILE_KEY_LEN], mac_key[32], mac[32], payload_key[32], nonce[12];
    size_t hdrmax, o = 0, cap;
    uint8_t *buf = NULL;
    unsigned maclen = 0;

    *out = NULL;
    *outlen = 0;
    if (nr == 0 || nr > ENGINE_AGE_LIST_MAX || ptlen > ENGINE_AGE_FILE_MAX / 2)
        return r;
    hdrmax = sizeof(AGE_VERSION_LINE) + nr * 128 + 64;
    cap = hdrmax + age_payload_size(ptlen);
    r = COFFER_ERR_NOMEM;
    if ((buf = malloc(cap)) == NULL)
        goto out;
    r = COFFER_ERR_INTERNAL;
    if (RAND_priv_bytes(file_key, sizeof(file_key)) != 1)
        goto out;
    memcpy(buf, AGE_VERSION_LINE, sizeof(AGE_VERSION_LINE) - 1);
    o = sizeof(AGE_VERSION_LINE) - 1;
    for (size_t i = 0; i < nr; i++) {
        size_t sl = 0;
        if ((r = age_stanza_x25519(&rcpt[i], file_key, (char *)buf + o, &sl)) != 0)
            goto out;
        o += sl;
    }
    memcpy(buf + o, "---", 3);
    o += 3;
    r = COFFER_ERR_INTERNAL;
    if (age_hkdf(file_key, sizeof(file_key), NULL, 0, "header", mac_key) != 0 ||
        HMAC(EVP_sha256(), mac_key, 32, buf, o, mac, &maclen) == NULL || maclen != 32)
        goto out;
    buf[o++] = ' ';
    o += engine_age_b64_encode(mac, 32, (char *)buf + o);
    buf[o++] = '\n';
    /* payload */
    if (RAND_bytes(buf + o, AGE_NONCE_LEN) != 1 ||
        age_hkdf(file_key, sizeof(file_key), buf + o, AGE_NONCE_LEN, "payload", payload_key) != 0)
        goto out;
    o += AGE_NONCE_LEN;
    for (uint64_t i = 0, off = 0;; i++) {
        size_t n = ptlen - off > AGE_CHUNK ? AGE_CHUNK : ptlen - off;
        int last = off + n == ptlen;
        age_chunk_nonce(i, last, nonce);
        if (age_aead(1, payload_key, nonce, pt + off, n, buf + o) != 0)
            goto out;
        o += n + AGE_TAG_LEN;
        off += n;
        if (last)
            break;
    }
    *out = buf;
    *outlen = o;
    buf = NULL;
    r = 0;
out:
    engine_secmem_wipe(file_key, sizeof(file_key));
    engine_secmem_wipe(mac_key, sizeof(mac_key));
    engine_secmem_wipe(payload_key, sizeof(payload_key));
    free(buf);
    return r;
}

/* A cursor over the header's lines. */
struct age_cursor {
    const uint8_t *p;
    size_t len, off;
};

/* The next line without its '\n' (which must be there); NULL when none. */
static const char *age_line(struct age_cursor *c, size_t *ll)
{
    const uint8_t *nl;
    const char *s;
    if (c->off >= c->len)
        return NULL;
    nl = memchr(c->p + c->off, '\n', c->len - c->off);
    if (nl == NULL)
        return NULL;
    s = (const char *)c->p + c->off;
    *ll = (size_t)(nl - (c->p + c->off));
    c->off += *ll + 1;
    return s;
}

/* Try the identities on one X25519 stanza (share, body); 1 with file_key set when one opens it. */
static int age_x25519_open(const engine_age_identities *ids, const uint8_t share[32],
                           const uint8_t body[32], uint8_t file_key[16])
{
    static const uint8_t zero_nonce[12];
    uint8_t shared[32], salt[64], wrap[32];
    int found = 0, r;

    for (size_t i = 0; i < ids->n && !found; i++) {
        if ((r = age_x25519(ids->v[i]->secret, share, shared)) != 0)
            return r; /* all-zero shared secret: the spec says abort */
        memcpy(salt, share, 32);
        memcpy(salt + 32, ids->v[i]->recipient.key, 32);
        r = age_hkdf(shared, 32, salt, 64, AGE_X25519_INFO, wrap);
        engine_secmem_wipe(shared, sizeof(shared));
        if (r != 0)
            return r;
        found = age_aead(0, wrap, zero_nonce, body, 32, file_key) == 0;
        engine_secmem_wipe(wrap, sizeof(wrap));
    }
    return found;
}

static int age_is_vchar_arg(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 33 || (unsigned char)s[i] > 126)
            return 0;
    return n > 0;
}

int engine_age_decrypt(const engine_age_identities *ids, const uint8_t *in, size_t inlen,
                       uint8_t *pt, size_t ptcap, size_t *ptlen, char *detail, size_t detaillen)
{
    int r = COFFER_ERR_BAD_HEADER, found = 0, x25519 = 0;
    struct age_cursor c = {in, inlen, 0};
    uint8_t file_key[AGE_FILE_KEY_LEN], mac_key[32], mac[32], want[32], payload_key[32], nonce[12];
    uint8_t *body = NULL;
    size_t ll = 0, mac_end = 0, stanzas = 0, outlen = 0;
    unsigned maclen = 0;
    const char *line;

    *ptlen = 0;
    if (inlen > ENGINE_AGE_FILE_MAX) {
        AGE_DETAIL("the age file is larger than %u bytes", ENGINE_AGE_FILE_MAX);
        return COFFER_ERR_TOO_LARGE;
    }
    if (inlen < sizeof(AGE_VERSION_LINE) - 1 ||
        memcmp(in, AGE_VERSION_LINE, sizeof(AGE_VERSION_LINE) - 1) != 0) {
        AGE_DETAIL("not an age v1 file (no 'age-encryption.org/v1' line; armored files are not "
                   "read)");
        return r;
    }
    if ((body = malloc(AGE_STANZA_BODY_MAX)) == NULL)
        return COFFER_ERR_NOMEM;
    c.off = sizeof(AGE_VERSION_LINE) - 1;
    for (;;) {
        size_t start = c.off, bl = 0;
        const char *args[3];
        size_t argl[3], nargs = 0;
        char b64[AGE_STANZA_BODY_MAX * 4 / 3 + 4];
        size_t b64l = 0;

        if ((line = age_line(&c, &ll)) == NULL) {
            r = COFFER_ERR_TRUNCATED;
            AGE_DETAIL("the age header ends before its MAC line");
            goto out;
        }
        if (ll >= 3 && memcmp(line, "---", 3) == 0) {
            mac_end = start + 3;
            if (ll != 4 + AGE_B64_32 || line[3] != ' ' ||
                engine_age_b64_decode(line + 4, AGE_B64_32, want, 32) != 32) {
                AGE_DETAIL("the age header's MAC line is malformed");
                goto out;
            }
            break;
        }
        if (ll < 3 || memcmp(line, "-> ", 3) != 0) {
            AGE_DETAIL("the age header has a line that is neither a stanza nor its MAC");
            goto out;
        }
        if (++stanzas > AGE_STANZAS_MAX) {
            AGE_DETAIL("the age header has more than %d stanzas", AGE_STANZAS_MAX);
            goto out;
        }
        /* arguments, separated by single spaces */
        for (size_t s = 3, e; s <= ll; s = e + 1) {
            e = s;
            while (e < ll && line[e] != ' ')
                e++;
            if (!age_is_vchar_arg(line + s, e - s)) {
                AGE_DETAIL("an age stanza has an empty or non-printable argument");
                goto out;
            }
            if (nargs < 3) {
                args[nargs] = line + s;
                argl[nargs] = e - s;
            }
            nargs++;
        }
        /* body lines: full 64-column lines, then one shorter (maybe empty) */
        for (;;) {
            const char *bline = age_line(&c, &bl);
            if (bline == NULL) {
                r = COFFER_ERR_TRUNCATED;
                AGE_DETAIL("the age header ends inside a stanza");
                goto out;
            }
            if (bl > AGE_LINE_COLUMNS || b64l + bl >= sizeof(b64)) {
                AGE_DETAIL("an age stanza body is malformed or too long");
                goto out;
            }
            memcpy(b64 + b64l, bline, bl);
            b64l += bl;
            if (bl < AGE_LINE_COLUMNS)
                break;
        }
        long blen = engine_age_b64_decode(b64, b64l, body, AGE_STANZA_BODY_MAX);
        if (blen < 0) {
            AGE_DETAIL("an age stanza body is not canonical base64");
            goto out;
        }
        if (argl[0] != 6 || memcmp(args[0], "X25519", 6) != 0)
            continue; /* another recipient type: not ours to judge */
        x25519++;
        uint8_t share[32];
        if (nargs != 2 || engine_age_b64_decode(args[1], argl[1], share, 32) != 32 || blen != 32) {
            AGE_DETAIL("an X25519 stanza of the age header is malformed");
            goto out;
        }
        if (!found) {
            int f = age_x25519_open(ids, share, body, file_key);
            if (f < 0) {
                r = COFFER_ERR_BAD_HEADER;
                AGE_DETAIL("an X25519 stanza carries a low-order point (shared secret zero)");
                goto out;
            }
            found = f;
        }
    }
    if (!found) {
        r = COFFER_ERR_WRONG_KEY;
        AGE_DETAIL("none of the %zu identities opens any of the age file's %d X25519 stanzas",
                   ids->n, x25519);
        goto out;
    }
    r = COFFER_ERR_INTERNAL;
    if (age_hkdf(file_key, sizeof(file_key), NULL, 0, "header", mac_key) != 0 ||
        HMAC(EVP_sha256(), mac_key, 32, in, mac_end, mac, &maclen) == NULL || maclen != 32)
        goto out;
    if (CRYPTO_memcmp(mac, want, 32) != 0) {
        r = COFFER_ERR_TAMPERED;
        AGE_DETAIL("the age header's MAC does not match: the header was modified");
        goto out;
    }
    /* payload */
    if (inlen - c.off < AGE_NONCE_LEN + AGE_TAG_LEN) {
        r = COFFER_ERR_TRUNCATED;
        AGE_DETAIL("the age payload is truncated");
        goto out;
    }
    if (age_hkdf(file_key, sizeof(file_key), in + c.off, AGE_NONCE_LEN, "payload", payload_key) !=
        0)
        goto out;
    c.off += AGE_NONCE_LEN;
    for (uint64_t i = 0;; i++) {
        size_t left = inlen - c.off;
        size_t n = left > AGE_CHUNK + AGE_TAG_LEN ? AGE_CHUNK + AGE_TAG_LEN : left;
        int last = n == left;
        if (n < AGE_TAG_LEN || (last && n == AGE_TAG_LEN && i > 0)) {
            r = i > 0 && n == 0 ? COFFER_ERR_TRUNCATED : COFFER_ERR_TAMPERED;
            AGE_DETAIL("the age payload ends with a malformed chunk");
            goto out;
        }
        if (outlen + n - AGE_TAG_LEN > ptcap) {
            r = COFFER_ERR_TOO_LARGE;
            AGE_DETAIL("the age file's plaintext is larger than the %zu bytes expected", ptcap);
            goto out;
        }
        age_chunk_nonce(i, last, nonce);
        if (age_aead(0, payload_key, nonce, in + c.off, n, pt + outlen) != 0) {
            r = COFFER_ERR_TAMPERED;
            AGE_DETAIL("chunk %llu of the age payload fails authentication", (unsigned long long)i);
            goto out;
        }
        outlen += n - AGE_TAG_LEN;
        c.off += n;
        if (last)
            break;
    }
    *ptlen = outlen;
    r = 0;
out:
    if (r != 0 && pt != NULL)
        engine_secmem_wipe(pt, outlen);
    engine_secmem_wipe(file_key, sizeof(file_key));
    engine_secmem_wipe(mac_key, sizeof(mac_key));
    engine_secmem_wipe(payload_key, sizeof(payload_key));
    free(body);
    return r;
}
