/* SPDX-License-Identifier: Apache-2.0 */
/* The status metadata an offline encrypt job puts in the coffer-v1 header and --status-out. */
#ifndef CLI_STATUS_H
#define CLI_STATUS_H

#include "cli_args.h"
#include "cli_output.h"
#include "engine_key.h"
#include "engine_stream.h"

/*
 * The metadata JSON text (compact, fields in the EncryptionStatus order) for a job in format f:
 * {"isEncrypted": false, ...} for none; the Secret retriever's config with --secrets-dir; the
 * "file" retriever with the key file's base name with --key-file. key is NULL only for none.
 * Returns 0 and a text to free(), or reports the failure and returns its code.
 */
int cli_status_build(const struct cli_args *a, coffer_format f, const engine_key *key, char **text);

/* Write text and a newline to path (atomically, mode 0600) but do not commit it yet. */
int cli_status_stage(struct cli_output *o, const char *path, const char *text);

#endif
