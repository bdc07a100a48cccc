/* SPDX-License-Identifier: Apache-2.0 */
/* The subcommands: each takes the parsed command line and returns the program's exit status. */
#ifndef CLI_JOB_H
#define CLI_JOB_H

#include "cli_args.h"

/* coffer keygen: a new coffer-v1 key, base64 with a newline. */
int cli_keygen_run(const struct cli_args *a);

/* coffer encrypt --offline: the engine in this process. */
int cli_encrypt_offline(const struct cli_args *a);

/* coffer decrypt --offline. */
int cli_decrypt_offline(const struct cli_args *a);

/* coffer inspect: a coffer-v1 header's metadata as JSON, without a key. */
int cli_inspect_run(const struct cli_args *a);

/*
 * coffer encrypt / decrypt without --offline: the job runs in cofferd. Named files on both sides
 * (--in and --out) are handed to the daemon as descriptors; otherwise the bytes stream through
 * the socket. An --out file is this process's temporary file until the daemon's result says the
 * job completed.
 */
int cli_remote_run(const struct cli_args *a);

/* coffer health / coffer stats: cofferd's JSON reply, indented, on standard output. */
int cli_query_run(const struct cli_args *a);

/*
 * Checks of an offline job's key options, which daemon mode does not share (cofferd has its own
 * keys): the key source is named on the command line. Returns CLI_ARGS_RUN or CLI_EXIT_USAGE
 * (after a usage message).
 */
int cli_job_check_offline(const struct cli_args *a);

/*
 * The stream parameters an offline job shares between sealing and opening: format f, the
 * --backend, key (NULL for none), the --context if given, and detail (detail_len bytes) for the
 * sentence explaining a failure. Everything else is zeroed for the caller to fill in.
 */
void cli_job_params_init(struct engine_stream_params *p, const struct cli_args *a, coffer_format f,
                         const engine_key *key, char *detail, size_t detail_len);

#endif
