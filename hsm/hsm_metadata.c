/* SPDX-License-Identifier: Apache-2.0 */
/* jansson builders and the bounded parser for the pkcs11 retriever's metadata; base64 by OpenSSL.
 */
#include "hsm_metadata.h"

#include "coffer_error.h"

#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define B64_LEN(n) (((n) + 2) / 3 * 4)

static void b64(const uint8_t *in, size_t n, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, in, (int)n); /* NUL-terminates */
}

json_t *hsm_metadata_config_new(const char *module, const char *token, const hsm_wrapped *w)
{
    char iv[B64_LEN(HSM_IV_MAX) + 1], wk[B64_LEN(HSM_WRAPPED_LEN) + 1],
        mac[B64_LEN(HSM_MAC_LEN) + 1];
    int mech = hsm_wrapped_mech(w);
    const char *name = hsm_mech_metadata_name(mech, w->kwp_ckm);
    json_t *o;

    b64(w->wrapped, hsm_wrapped_len(w), wk);
    if (mech == HSM_MECH_KWP)
        return json_pack("{s:s, s:s, s:s, s:s, s:s}", "module", module, "token", token, "keyLabel",
                         w->key_label, "mechanism", name, "wrappedKey", wk);
    b64(w->iv, hsm_wrapped_iv_len(w), iv);
    o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "module", module, "token", token, "keyLabel",
                  w->key_label, "mechanism", name, "iv", iv, "wrappedKey", wk);
    if (o == NULL || mech != HSM_MECH_CBC_HMAC)
        return o;
    b64(w->mac, HSM_MAC_LEN, mac);
    if (json_object_set_new(o, "macKeyLabel", json_string(w->mac_key_label)) != 0 ||
        json_object_set_new(o, "mac", json_string(mac)) != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

json_t *hsm_metadata_from_config(json_t *config, const char *format, const char *key_id)
{
    if (config == NULL)
        return NULL;
    /* "o" steals the reference to config, also when packing fails. */
    return json_pack("{s:b, s:s, s:o, s:s, s:s}", "isEncrypted", 1, "keyRetrieverType", "pkcs11",
                     "keyRetrieverConfig", config, "format", format, "keyId", key_id);
}

json_t *hsm_metadata_new(const char *module, const char *token, const hsm_wrapped *w,
                         const char *format, const char *key_id)
{
    return hsm_metadata_from_config(hsm_metadata_config_new(module, token, w), format, key_id);
}

static int bad(char *detail, size_t detaillen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int bad(char *detail, size_t detaillen, const char *fmt, ...)
{
    va_list ap;
    if (detail != NULL && detaillen > 0) {
        va_start(ap, fmt);
        vsnprintf(detail, detaillen, fmt, ap);
        va_end(ap);
    }
    return COFFER_ERR_METADATA;
}

/* A string field of 1..max bytes without control characters, copied into out (max + 1 bytes). */
static int get_text(const json_t *cfg, const char *field, size_t max, char *out, char *detail,
                    size_t detaillen)
{
    const json_t *v = json_object_get(cfg, field);
    size_t n;
    if (!json_is_string(v))
        return bad(detail, detaillen,
                   "pkcs11 keyRetrieverConfig: \"%s\" is missing or not a string", field);
    n = json_string_length(v);
    if (n == 0 || n > max)
        return bad(detail, detaillen,
                   "pkcs11 keyRetrieverConfig: \"%s\" must be 1 to %zu bytes long, not %zu", field,
                   max, n);
    const char *s = json_string_value(v);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return bad(detail, detaillen,
                       "pkcs11 keyRetrieverConfig: \"%s\" contains a control character", field);
    }
    memcpy(out, s, n);
    out[n] = '\0';
    return 0;
}

/* Exactly want bytes of canonical base64 (re-encoding gives back the same text). */
static int get_b64(const json_t *cfg, const char *field, uint8_t *out, size_t want, char *detail,
                   size_t detaillen)
{
    const json_t *v = json_object_get(cfg, field);
    unsigned char dec[B64_LEN(HSM_WRAPPED_LEN)];
    char again[B64_LEN(HSM_WRAPPED_LEN) + 1];

    if (!json_is_string(v))
        return bad(detail, detaillen,
                   "pkcs11 keyRetrieverConfig: \"%s\" is missing or not a string", field);
    size_t n = json_string_length(v);
    if (n != B64_LEN(want) || want > sizeof(dec))
        return bad(detail, detaillen,
                   "pkcs11 keyRetrieverConfig: \"%s\" must be %zu characters of base64 (%zu "
                   "bytes), not %zu characters",
                   field, (size_t)B64_LEN(want), want, n);
    int got = EVP_DecodeBlock(dec, (const unsigned char *)json_string_value(v), (int)n);
    if (got < 0 || (size_t)got < want)
        return bad(detail, detaillen, "pkcs11 keyRetrieverConfig: \"%s\" is not valid base64",
                   field);
    b64(dec, want, again);
    if (strcmp(again, json_string_value(v)) != 0)
        return bad(detail, detaillen, "pkcs11 keyRetrieverConfig: \"%s\" is not canonical base64",
                   field);
    memcpy(out, dec, want);
    return 0;
}

int hsm_metadata_config_parse(const json_t *cfg, hsm_metadata_config *out, char *detail,
                              size_t detaillen)
{
    char mech[48];
    int r;

    memset(out, 0, sizeof(*out));
    if (detail != NULL && detaillen > 0)
        detail[0] = '\0';
    if (!json_is_object(cfg))
        return bad(detail, detaillen, "pkcs11 keyRetrieverConfig is missing or not an object");
    if ((r = get_text(cfg, "module", HSM_MODULE_MAX, out->module, detail, detaillen)) < 0 ||
        (r = get_text(cfg, "token", HSM_TOKEN_LABEL_MAX, out->token, detail, detaillen)) < 0 ||
        (r = get_text(cfg, "keyLabel", HSM_KEY_LABEL_MAX, out->wrapped.key_label, detail,
                      detaillen)) < 0 ||
        (r = get_text(cfg, "mechanism", sizeof(mech) - 1, mech, detail, detaillen)) < 0)
        goto fail;
    hsm_wrapped *w = &out->wrapped;
    if (strcmp(mech, HSM_MECHANISM_GCM) == 0) {
        /* mech, iv_len and wrapped_len stay 0: a GCM blob as before negotiation */
        if ((r = get_b64(cfg, "iv", w->iv, HSM_IV_LEN, detail, detaillen)) < 0)
            goto fail;
    } else if (strcmp(mech, "CKM_AES_KEY_WRAP_KWP") == 0 ||
               strcmp(mech, "CKM_AES_KEY_WRAP_PAD") == 0) {
        w->mech = HSM_MECH_KWP;
        w->kwp_ckm = mech[17] == 'K' ? CKM_AES_KEY_WRAP_KWP : CKM_AES_KEY_WRAP_PAD;
        w->wrapped_len = HSM_KWP_LEN;
    } else if (strcmp(mech, "CKM_AES_CBC_PAD+CKM_SHA256_HMAC") == 0) {
        w->mech = HSM_MECH_CBC_HMAC;
        w->iv_len = HSM_IV_MAX;
        w->wrapped_len = HSM_CBC_LEN;
    } else {
        r = bad(detail, detaillen,
                "pkcs11 keyRetrieverConfig: mechanism \"%s\" is not supported (CKM_AES_GCM, "
                "CKM_AES_KEY_WRAP_KWP, CKM_AES_KEY_WRAP_PAD or CKM_AES_CBC_PAD+CKM_SHA256_HMAC)",
                mech);
        goto fail;
    }
    if ((w->iv_len > 0 && (r = get_b64(cfg, "iv", w->iv, w->iv_len, detail, detaillen)) < 0) ||
        (r = get_b64(cfg, "wrappedKey", w->wrapped, hsm_wrapped_len(w), detail, detaillen)) < 0)
        goto fail;
    if (w->mech == HSM_MECH_CBC_HMAC &&
        ((r = get_text(cfg, "macKeyLabel", HSM_KEY_LABEL_MAX, w->mac_key_label, detail,
                       detaillen)) < 0 ||
         (r = get_b64(cfg, "mac", w->mac, HSM_MAC_LEN, detail, detaillen)) < 0))
        goto fail;
    return 0;
fail:
    memset(out, 0, sizeof(*out));
    return r;
}

/* A JSON string of text, with any byte of an invalid UTF-8 sequence shown as '?'. */
static json_t *json_string_lossy(const char *text)
{
    char copy[HSM_STATUS_TEXT_MAX];
    json_t *j = json_string(text);
    if (j != NULL)
        return j;
    snprintf(copy, sizeof(copy), "%s", text);
    for (char *p = copy; *p; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    return json_string(copy);
}

json_t *hsm_metadata_fallback_new(const char *module, const char *token, const char *key_label,
                                  const hsm_status *st)
{
    json_t *o = json_pack("{s:s, s:s?, s:s?, s:s?, s:s, s:s}", "keyRetrieverType", "pkcs11",
                          "module", module, "token", token, "keyLabel", key_label, "step",
                          st->step[0] ? st->step : "unknown", "error", coffer_errname(st->code));
    if (o == NULL)
        return NULL;
    if ((st->ckr[0] && json_object_set_new(o, "ckr", json_string(st->ckr)) != 0) ||
        json_object_set_new(o, "reason", json_string_lossy(st->text)) != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}
