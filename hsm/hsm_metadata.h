/* SPDX-License-Identifier: Apache-2.0 */
/* The keyRetrieverConfig of a "pkcs11" backup: build it, parse it (untrusted), and the fallback
 * note. */
#ifndef HSM_METADATA_H
#define HSM_METADATA_H

#include "engine_gcm.h"
#include "hsm_kek.h"
#include "hsm_status.h"

#include <jansson.h>

#define HSM_MODULE_MAX    1024 /* bytes of the "module" field */
#define HSM_MECHANISM_GCM "CKM_AES_GCM"

/*
 * keyRetrieverConfig for keyRetrieverType "pkcs11" (docs/keys.md has the full description):
 *
 *   {"module": "<module path or p11-kit name>", "token": "<token label>",
 *    "keyLabel": "<KEK label>", "mechanism": "CKM_AES_GCM",
 *    "iv": "<base64 of 12 bytes>", "wrappedKey": "<base64 of ciphertext(32) || tag(16)>"}
 *
 * and by mechanism: "CKM_AES_KEY_WRAP_KWP" or "CKM_AES_KEY_WRAP_PAD" with no "iv" and a 40-byte
 * wrappedKey; "CKM_AES_CBC_PAD+CKM_SHA256_HMAC" with a 16-byte iv, a 48-byte wrappedKey,
 * "macKeyLabel" (the HMAC key's label) and "mac" (32 bytes).
 *
 * It never holds the PIN. module is informative (where the backup was made); restores use the
 * module the daemon is configured with, so a path that differs between hosts does no harm. token
 * and keyLabel select the token and the key-encryption key; the AAD of the wrap is
 * "coffer-kek:" || keyLabel. Base64 is the standard alphabet with padding (OpenSSL
 * EVP_EncodeBlock); since 12 and 48 are multiples of 3 there is never any padding.
 */

/* The config object; NULL when out of memory. The caller owns it (json_decref). */
json_t *hsm_metadata_config_new(const char *module, const char *token, const hsm_wrapped *w);

/*
 * The whole status metadata of an HSM backup, in the order of engine_metadata.h:
 * isEncrypted, keyRetrieverType "pkcs11", keyRetrieverConfig, format, keyId (the data key's id).
 */
json_t *hsm_metadata_new(const char *module, const char *token, const hsm_wrapped *w,
                         const char *format, const char *key_id);

/* The same from a config object made by hsm_metadata_config_new (or hsm_retriever_backup_key);
 * takes over the caller's reference to config, also on failure. */
json_t *hsm_metadata_from_config(json_t *config, const char *format, const char *key_id);

/* What a restore needs; strings are copies. */
typedef struct hsm_metadata_config {
    char module[HSM_MODULE_MAX + 1];
    char token[HSM_TOKEN_LABEL_MAX + 1];
    hsm_wrapped wrapped; /* key_label, iv, wrapped */
} hsm_metadata_config;

/*
 * Parse an untrusted keyRetrieverConfig: every field present and a string of bounded length,
 * labels free of control characters, a mechanism coffer knows, iv and wrappedKey (and mac) of
 * exactly the mechanism's lengths in canonical base64. Returns 0 or COFFER_ERR_METADATA with a
 * sentence in detail (NULL allowed) naming the field.
 */
int hsm_metadata_config_parse(const json_t *cfg, hsm_metadata_config *out, char *detail,
                              size_t detaillen) COFFER_WUR;

/*
 * What was tried and why it failed, for a backup that fell back to the Secret retriever:
 *   {"keyRetrieverType": "pkcs11", "module": ..., "token": ..., "keyLabel": ...,
 *    "step": "login", "error": "HSM_LOGIN", "ckr": "CKR_PIN_INCORRECT", "reason": "<sentence>"}
 * ckr is left out when no PKCS#11 call failed. The daemon stores it with the backup's metadata.
 */
json_t *hsm_metadata_fallback_new(const char *module, const char *token, const char *key_label,
                                  const hsm_status *st);

#endif
