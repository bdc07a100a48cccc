/* SPDX-License-Identifier: Apache-2.0 */
/* Status metadata files: built for an offline encrypt, taken from cofferd's result, read back. */
#ifndef CLI_STATUS_H
#define CLI_STATUS_H

#include "cli_args.h"
#include "cli_output.h"
#include "engine_key.h"
#include "engine_stream.h"

#include <stddef.h>
#include <stdint.h>

/*
 * The metadata JSON text (compact, fields in the EncryptionStatus order) for a job in format f:
 * {"isEncrypted": false, ...} for none; the Secret retriever's config with --secrets-dir; the
 * "file" retriever with the key file's base name with --key-file. key is NULL only for none.
 * Returns 0 and a text to free(), or reports the failure and returns its code.
 */
int cli_status_build(const struct cli_args *a, coffer_format f, const engine_key *key, char **text);

/* Write text and a newline to path (atomically, mode 0600) but do not commit it yet. */
int cli_status_stage(struct cli_output *o, const char *path, const char *text);

/*
 * The --status-out text of a job cofferd ran: the result's metadata (meta, len bytes) as one
 * compact JSON object, its fields in their order, followed by "bytesIn" and "bytesOut" (the
 * daemon's counts). The result stays valid --metadata input for a restore. Returns 0 and a text
 * to free(), or reports "<what>: ..." and returns the code (COFFER_ERR_METADATA when the daemon's
 * metadata is not a JSON object).
 */
int cli_status_from_result(const char *meta, size_t len, uint64_t bytes_in, uint64_t bytes_out,
                           const char *what, char **text);

/*
 * Read a stored status metadata file (--metadata) for a restore: at most ENGINE_METADATA_MAX
 * bytes holding one JSON object (checked here, so that a wrong file is named in the message;
 * cofferd checks its fields). Returns 0 and the file's text (NUL-terminated, *len bytes, trailing
 * whitespace dropped) to free(), or reports "reading the status metadata <path>: ..." and returns
 * the code.
 */
int cli_status_load(const char *path, char **text, size_t *len);

/*
 * Refuse, before anything is opened for writing, a job whose --status-out would replace its input
 * (--in, or the regular file behind standard input), its output (--out, existing or not, or the
 * regular file behind standard output), its --key-file or its --metadata, and an --out that would
 * replace the key file or the metadata: the same path, the same directory entry ("./x" and "x"),
 * or the same file through a symlink or a hard link (device and inode). Returns CLI_ARGS_RUN, or
 * CLI_EXIT_USAGE after a usage message naming both options.
 */
int cli_status_check_paths(const struct cli_args *a);

#endif
