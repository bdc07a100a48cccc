/* SPDX-License-Identifier: Apache-2.0 */
/* The Secret key retriever: keys from a Kubernetes Secret volume layout on disk. */
#ifndef ENGINE_SECRET_H
#define ENGINE_SECRET_H

#include "engine_key.h"

#define ENGINE_SECRET_FIELD "encryptionKey"

/*
 * 0 when ns is a valid Kubernetes namespace (DNS-1123 label) and name a valid Secret name
 * (DNS-1123 subdomain), else COFFER_ERR_SECRET_NAME. Names come from untrusted metadata, so
 * this check also keeps paths inside the secrets directory.
 */
int engine_secret_name_check(const char *ns, const char *name) COFFER_WUR;

/*
 * Load <secrets_dir>/<ns>/<name>/encryptionKey and apply the rule. The file is opened afresh at
 * every call, so a Kubernetes atomic symlink swap of the volume (..data) is seen at once.
 * Errors: SECRET_NAME, KEY_MISSING (with the path in detail), KEY_READ, KEY_SIZE, KEY_FORM.
 */
int engine_secret_load(engine_key **out, const char *secrets_dir, const char *ns, const char *name,
                       engine_key_rule rule, char *detail, size_t detaillen) COFFER_WUR;

#endif
