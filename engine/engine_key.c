/* SPDX-License-Identifier: Apache-2.0 */
/* Key-form rules (raw, base64, hex; passphrases refused), key ids, key files, fresh keys. */
#include "engine_key.h"

#include "coffer_error.h"
#include "engine_secmem.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char key_id_label[] = "coffer key id";

static void set_detail(char *detail, size_t detaillen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_detail(char *detail, size_t detaillen, const char *fmt, ...)
{
    va_list ap;
    if (detail == NULL || detaillen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(detail, detaillen, fmt, ap);
    va_end(ap);
}

void engine_key_id(const uint8_t *key, size_t len, char out[ENGINE_KEY_ID_LEN + 1])
{
    static const char hexd[] = "0123456789abcdef";
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (HMAC(EVP_sha256(), key, (int)len, (const uint8_t *)key_id_label, sizeof(key_id_label) - 1,
             md, &mdlen) == NULL) {
        memset(out, '0', ENGINE_KEY_ID_LEN);
    } else {
        for (size_t i = 0; i < ENGINE_KEY_ID_LEN / 2; i++) {
            out[2 * i] = hexd[md[i] >> 4];
            out[2 * i + 1] = hexd[md[i] & 15];
        }
    }
    out[ENGINE_KEY_ID_LEN] = '\0';
    OPENSSL_cleanse(md, sizeof(md));
}

int engine_key_from_bytes(engine_key **out, const uint8_t *bytes, size_t len)
{
    engine_key *k;
    *out = NULL;
    if (len == 0 || len > ENGINE_KEY_MAX)
        return COFFER_ERR_KEY_SIZE;
    if ((k = engine_secmem_alloc(sizeof(*k))) == NULL)
        return COFFER_ERR_NOMEM;
    memcpy(k->bytes, bytes, len);
    k->len = len;
    engine_key_id(k->bytes, len, k->id);
    *out = k;
    return 0;
}

int engine_key_generate(engine_key **out, size_t len)
{
    uint8_t raw[ENGINE_KEY_MAX];
    int r;
    *out = NULL;
    if (len != 16 && len != 24 && len != 32)
        return COFFER_ERR_KEY_SIZE;
    if (RAND_priv_bytes(raw, (int)len) != 1)
        return COFFER_ERR_INTERNAL;
    r = engine_key_from_bytes(out, raw, len);
    OPENSSL_cleanse(raw, sizeof(raw));
    return r;
}

void engine_key_free(engine_key *k)
{
    engine_secmem_free(k);
}

static int all_printable(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i] < 0x20 || b[i] > 0x7e)
            return 0;
    return 1;
}

static int all_hex(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t c = b[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return 0;
    }
    return 1;
}

/*
 * Decode base64 text (standard alphabet, padding as produced by base64(1)) into out (at most
 * outcap bytes). Returns the decoded length, or -1 if it is not base64 or too long.
 */
static long base64_decode(const uint8_t *text, size_t n, uint8_t *out, size_t outcap)
{
    uint8_t tmp[ENGINE_KEY_FIELD_MAX];
    int len = 0, fin = 0;
    long r = -1;
    EVP_ENCODE_CTX *ctx;

    if (n == 0 || n % 4 != 0 || n / 4 * 3 > sizeof(tmp))
        return -1;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = text[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '+' || c == '/' || (c == '=' && i >= n - 2);
        if (!ok)
            return -1;
    }
    if ((ctx = EVP_ENCODE_CTX_new()) == NULL)
        return -1;
    EVP_DecodeInit(ctx);
    if (EVP_DecodeUpdate(ctx, tmp, &len, text, (int)n) >= 0 &&
        EVP_DecodeFinal(ctx, tmp + len, &fin) == 1 && (size_t)(len + fin) <= outcap) {
        memcpy(out, tmp, (size_t)(len + fin));
        r = len + fin;
    }
    EVP_ENCODE_CTX_free(ctx);
    OPENSSL_cleanse(tmp, sizeof(tmp));
    return r;
}

static int is_b64(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

static int is_space(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/*
 * Text that is neither the key's hex nor its base64: name what is wrong with it (whitespace
 * other than one final newline, base64url's alphabet, a character outside base64 and where, a
 * length that is no base64 length). Returns 1 with *code and the detail set, 0 when field is not
 * text (raw bytes of the wrong length). Never quotes more than the one offending character, and
 * that only when it is outside the base64 alphabet.
 */
static int diagnose_text(const uint8_t *field, size_t len, size_t want, char *detail,
                         size_t detaillen, int *code)
{
    size_t n = len, b64len = (want + 2) / 3 * 4, url = SIZE_MAX, bad = SIZE_MAX, pad = SIZE_MAX;

    for (size_t i = 0; i < len; i++)
        if (!is_space(field[i]) && (field[i] < 0x20 || field[i] > 0x7e))
            return 0;
    if (n > 0 && field[n - 1] == '\n')
        n--;
    if (n > 0 && field[n - 1] == '\r')
        n--;
    for (size_t i = 0; i < n; i++)
        if (is_space(field[i])) {
            size_t tail = n - i;
            int trailing = 1;
            for (size_t k = i; k < n; k++)
                trailing &= is_space(field[k]);
            *code = COFFER_ERR_KEY_FORM;
            if (trailing)
                set_detail(detail, detaillen,
                           "the key text ends with %zu whitespace character%s (from offset %zu) "
                           "before its final newline; a key file holds the key and at most one "
                           "newline: remove the extra whitespace",
                           tail, tail == 1 ? "" : "s", i);
            else
                set_detail(detail, detaillen,
                           "the key text has whitespace (0x%02x) at offset %zu; a key file holds "
                           "the key on one line, then at most one newline",
                           field[i], i);
            return 1;
        }
    for (size_t i = 0; i < n; i++) {
        uint8_t c = field[i];
        if ((c == '-' || c == '_') && url == SIZE_MAX)
            url = i;
        else if (c == '=' && pad == SIZE_MAX)
            pad = i;
        else if (c != '-' && c != '_' && c != '=' && !is_b64(c) && bad == SIZE_MAX)
            bad = i;
    }
    *code = COFFER_ERR_KEY_FORM;
    if (url != SIZE_MAX && bad == SIZE_MAX) {
        set_detail(detail, detaillen,
                   "the key is base64url text ('%c' at offset %zu); coffer reads the standard "
                   "base64 alphabet ('+' and '/' for '-' and '_'): convert it with "
                   "tr '_-' '/+' (and add '=' padding to a multiple of 4 characters)",
                   field[url], url);
        return 1;
    }
    if (bad != SIZE_MAX) {
        set_detail(detail, detaillen,
                   "the key text has a character that is not base64 or hex (0x%02x '%c') at "
                   "offset %zu; a %zu-byte key is %zu base64 or %zu hex characters ('coffer "
                   "keygen' makes one)",
                   field[bad], field[bad], bad, want, b64len, 2 * want);
        return 1;
    }
    if (url != SIZE_MAX) {
        set_detail(detail, detaillen,
                   "the key text has '%c' at offset %zu, which is not in the base64 alphabet",
                   field[url], url);
        return 1;
    }
    if (pad != SIZE_MAX && n % 4 == 0) {
        set_detail(detail, detaillen,
                   "the key text has base64 padding '=' at offset %zu, inside the text; padding "
                   "only ends it",
                   pad);
        return 1;
    }
    *code = COFFER_ERR_KEY_SIZE;
    set_detail(detail, detaillen,
               "the key is %zu characters of text, which is neither base64 (a %zu-byte key is %zu "
               "characters, a multiple of 4) nor hex (%zu digits); it was cut short or has extra "
               "characters: create one with 'coffer keygen'",
               n, want, b64len, 2 * want);
    return 1;
}

/* A uniformly random key of `want` bytes: raw, or base64/hex text (one trailing newline). */
static int parse_uniform(uint8_t *out, size_t want, const uint8_t *field, size_t len, char *detail,
                         size_t detaillen)
{
    size_t n = len;
    long dec;
    int r;

    if (len == want) {
        if (all_printable(field, len)) {
            set_detail(detail, detaillen,
                       "the key is %zu printable characters, which is a passphrase, not %zu random "
                       "bytes; create a key with 'coffer keygen'",
                       len, want);
            return COFFER_ERR_KEY_FORM;
        }
        memcpy(out, field, want);
        return 0;
    }
    if (n > 0 && field[n - 1] == '\n')
        n--;
    if (n > 0 && field[n - 1] == '\r')
        n--;
    if (n == 2 * want && all_hex(field, n)) {
        char hex[2 * ENGINE_KEY_MAX + 1]; /* OpenSSL wants a NUL-terminated string */
        size_t got = 0;
        memcpy(hex, field, n);
        hex[n] = '\0';
        int ok = OPENSSL_hexstr2buf_ex(out, want, &got, hex, '\0') == 1 && got == want;
        OPENSSL_cleanse(hex, sizeof(hex));
        if (ok)
            return 0;
    }
    {
        uint8_t decoded[ENGINE_KEY_FIELD_MAX]; /* any length, so that the detail can name it */
        dec = base64_decode(field, n, decoded, sizeof(decoded));
        if (dec == (long)want)
            memcpy(out, decoded, want);
        OPENSSL_cleanse(decoded, sizeof(decoded));
    }
    if (dec == (long)want)
        return 0;
    if (dec > 0) {
        set_detail(detail, detaillen,
                   "the key is base64 text that decodes to %ld bytes, not %zu; create a key with "
                   "'coffer keygen'",
                   dec, want);
        OPENSSL_cleanse(out, want);
        return COFFER_ERR_KEY_SIZE;
    }
    if (diagnose_text(field, len, want, detail, detaillen, &r))
        return r;
    set_detail(detail, detaillen,
               "the key has %zu bytes; it must be %zu random bytes, or their base64 or hex "
               "text; create one with 'coffer keygen'",
               len, want);
    return COFFER_ERR_KEY_SIZE;
}

int engine_key_parse(engine_key **out, engine_key_rule rule, const uint8_t *field, size_t len,
                     char *detail, size_t detaillen)
{
    uint8_t raw[ENGINE_KEY_MAX];
    size_t rawlen = 0;
    int r;

    *out = NULL;
    set_detail(detail, detaillen, "%s", "");
    if (len == 0) {
        set_detail(detail, detaillen, "the key is empty; create one with 'coffer keygen'");
        return COFFER_ERR_KEY_MISSING;
    }
    if (len > ENGINE_KEY_FIELD_MAX) {
        set_detail(detail, detaillen, "the key field has more than %d bytes", ENGINE_KEY_FIELD_MAX);
        return COFFER_ERR_KEY_SIZE;
    }
    switch (rule) {
    case ENGINE_KEY_RULE_COFFER:
        rawlen = 32;
        r = parse_uniform(raw, rawlen, field, len, detail, detaillen);
        break;
    case ENGINE_KEY_RULE_COBBLESTONE_128:
        rawlen = 16;
        r = parse_uniform(raw, rawlen, field, len, detail, detaillen);
        break;
    case ENGINE_KEY_RULE_VELERO:
        /* the prototype uses the Secret value's raw bytes as the AES key */
        if (len != 16 && len != 24 && len != 32) {
            set_detail(detail, detaillen,
                       "a velero-v1 key is the raw Secret value of 16, 24 or 32 bytes; this one "
                       "has %zu bytes",
                       len);
            return COFFER_ERR_KEY_SIZE;
        }
        memcpy(raw, field, len);
        rawlen = len;
        r = 0;
        break;
    default:
        return COFFER_ERR_INVALID_ARG;
    }
    if (r == 0)
        r = engine_key_from_bytes(out, raw, rawlen);
    OPENSSL_cleanse(raw, sizeof(raw));
    return r;
}

int engine_key_load_file(engine_key **out, engine_key_rule rule, const char *path, char *detail,
                         size_t detaillen)
{
    int r = COFFER_ERR_INTERNAL, fd = -1;
    uint8_t *buf = NULL;
    size_t n = 0;
    struct stat st;

    *out = NULL;
    set_detail(detail, detaillen, "%s", "");
    /* O_NONBLOCK: opening a FIFO (or a device) must not wait for a writer; it is refused below.
     * No O_NOFOLLOW: a Kubernetes Secret volume's files are symlinks into ..data. */
    if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) < 0) {
        r = errno == ENOENT || errno == ENOTDIR ? COFFER_ERR_KEY_MISSING : COFFER_ERR_KEY_READ;
        set_detail(detail, detaillen, "%s: %s", path, strerror(errno));
        goto out;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        r = COFFER_ERR_KEY_READ;
        set_detail(detail, detaillen, "%s: not a regular file (a key is read only from one)",
                   path);
        goto out;
    }
    if (st.st_size > ENGINE_KEY_FIELD_MAX) {
        r = COFFER_ERR_KEY_SIZE;
        set_detail(detail, detaillen,
                   "%s: the file has more than %d bytes, more than any key field; create a key "
                   "with 'coffer keygen'",
                   path, ENGINE_KEY_FIELD_MAX);
        goto out;
    }
    if ((buf = engine_secmem_alloc(ENGINE_KEY_FIELD_MAX + 1)) == NULL) {
        r = COFFER_ERR_NOMEM;
        goto out;
    }
    while (n < ENGINE_KEY_FIELD_MAX + 1) {
        ssize_t got = read(fd, buf + n, ENGINE_KEY_FIELD_MAX + 1 - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            r = COFFER_ERR_KEY_READ;
            set_detail(detail, detaillen, "%s: %s", path, strerror(errno));
            goto out;
        }
        if (got == 0)
            break;
        n += (size_t)got;
    }
    r = engine_key_parse(out, rule, buf, n, detail, detaillen);
    if (r != 0 && detail != NULL && detaillen > 0) {
        char tmp[512];
        snprintf(tmp, sizeof(tmp), "%s: %s", path, detail);
        set_detail(detail, detaillen, "%s", tmp);
    }
out:
    if (fd >= 0)
        close(fd);
    engine_secmem_free(buf);
    return r;
}
