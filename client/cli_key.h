/* SPDX-License-Identifier: Apache-2.0 */
/* Loading a job's key from a key file or a Kubernetes Secret volume layout. */
#ifndef CLI_KEY_H
#define CLI_KEY_H

#include "cli_args.h"
#include "engine_key.h"

/*
 * Load the key with the given rule: from a->key_file, or else from
 * <a->secrets_dir>/<ns>/<name>/encryptionKey. Call engine_secmem_harden_process first. Reports a
 * failure as "loading the key file: <why>: <path>: <what was found and the fix>" (or "loading key
 * from Secret NS/NAME in DIR: ...") (never the key's bytes)
 * and returns its code; on success the caller frees *out with engine_key_free.
 */
int cli_key_load(engine_key **out, const struct cli_args *a, engine_key_rule rule, const char *ns,
                 const char *name);

#endif
