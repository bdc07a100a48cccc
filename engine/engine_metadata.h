/* SPDX-License-Identifier: Apache-2.0 */
/* The status metadata of a backup (the Velero design's EncryptionStatus plus coffer's fields). */
#ifndef ENGINE_METADATA_H
#define ENGINE_METADATA_H

#include "engine_gcm.h"

#include <jansson.h>
#include <stddef.h>

#define ENGINE_METADATA_MAX 31988 /* so that the coffer-v1 header fits the KDF's context limit */

/*
 * Builders return a new JSON object whose first fields are, in order, isEncrypted,
 * keyRetrieverType, keyRetrieverConfig (so a Go server unmarshals it into EncryptionStatus),
 * then format and keyId. The caller owns it (json_decref).
 */
json_t *engine_metadata_new_secret(const char *ns, const char *secret_name, const char *format,
                                   const char *key_id);
/* Offline encryption with a key file: keyRetrieverType "file", config {"name": basename}. */
json_t *engine_metadata_new_file(const char *file_name, const char *format, const char *key_id);
/* Encryption switched off: {"isEncrypted": false, "format": "none"}. */
json_t *engine_metadata_new_plain(void);

/* Compact JSON text (fields in insertion order); free() it. NULL when out of memory. */
char *engine_metadata_dump(const json_t *m);

/* What a restore needs from stored metadata. Strings point into json, valid until clear. */
typedef struct engine_metadata {
    json_t *json; /* the whole object, owned */
    int is_encrypted;
    const char *retriever; /* "secret", "pkcs11", "file", or "" when not encrypted */
    const char *ns;        /* secret: keyRetrieverConfig.namespace, else NULL */
    const char *secret;    /* secret: keyRetrieverConfig.secretName, else NULL */
    const char *format;    /* "coffer-v1", "velero-v1", "cobblestone", "none", ... */
    const char *key_id;    /* may be NULL (velero prototype metadata has none) */
} engine_metadata;

/*
 * Parse untrusted metadata (at most ENGINE_METADATA_MAX bytes, a JSON object, isEncrypted a
 * boolean; when encrypted, keyRetrieverType a string and for "secret" a config with namespace
 * and secretName strings). Returns 0 or COFFER_ERR_METADATA / _TOO_LARGE.
 */
int engine_metadata_parse(engine_metadata *out, const char *text, size_t len) COFFER_WUR;
void engine_metadata_clear(engine_metadata *m);

#endif
