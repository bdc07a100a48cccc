/* SPDX-License-Identifier: Apache-2.0 */
/* The coffer command line: subcommands, their options, usage and help texts. */
#ifndef CLI_ARGS_H
#define CLI_ARGS_H

#include "engine_gcm.h"
#include "engine_stream.h"

#include <stdio.h>

enum cli_cmd {
    CLI_CMD_KEYGEN = 0,
    CLI_CMD_ENCRYPT = 1,
    CLI_CMD_DECRYPT = 2,
    CLI_CMD_INSPECT = 3,
    CLI_CMD_HEALTH = 4,
    CLI_CMD_STATS = 5,
};

enum cli_progress_mode {
    CLI_PROGRESS_AUTO = 0,   /* a bar when stderr is a terminal and the job is long */
    CLI_PROGRESS_ALWAYS = 1, /* always (tests) */
    CLI_PROGRESS_NEVER = 2,
};

#define CLI_RECOVERY_FILES_MAX 16 /* --recovery-recipient / --recovery-identity files */

/*
 * What the command line asked for. Strings point into argv. A NULL path means the default
 * (standard input or output); "-" is normalised to NULL.
 *
 * encrypt and decrypt run in cofferd (daemon mode) unless --offline is given. The options of one
 * mode are refused in the other by cli_args_parse: --key-file, --secrets-dir, --namespace,
 * --secret, --secret-source, --kubeconfig, --backend and --spool-dir need --offline; --socket and --metadata (and decrypt's
 * --status-out) need daemon mode.
 */
struct cli_args {
    enum cli_cmd cmd;
    int offline;                     /* --offline: run the engine in this process */
    const char *socket_path;         /* --socket: cofferd's socket, NULL for libcoffer's default */
    const char *metadata;            /* --metadata: the stored status metadata (decrypt) */
    const char *key_file;            /* --key-file */
    const char *secrets_dir;         /* --secrets-dir */
    const char *ns;                  /* --namespace */
    const char *secret;              /* --secret */
    int format_given;                /* --format was given */
    coffer_format format;            /* --format (coffer-v1 when not given) */
    const char *context;             /* --context (bare Cobblestone only), NULL when not given */
    const char *in;                  /* --in */
    const char *out;                 /* --out */
    const char *status_out;          /* --status-out */
    const char *spool_dir;           /* --spool-dir */
    engine_gcm_backend backend;      /* --backend */
    enum cli_progress_mode progress; /* --progress (hidden) */
    int kube;                        /* --secret-source kubernetes: the Secret through the API */
    const char *kubeconfig;          /* --kubeconfig (NULL: in-cluster) */
    /* Recovery (docs/recovery.md). --recovery-recipient and --recovery-identity may repeat. */
    const char *recovery_recipient[CLI_RECOVERY_FILES_MAX]; /* encrypt --offline */
    size_t n_recovery_recipient;
    const char *recovery_identity[CLI_RECOVERY_FILES_MAX]; /* decrypt --offline */
    size_t n_recovery_identity;
    int recipients; /* inspect --recipients: only the recovery recipients, one a line */
    /* decrypt --offline of a pkcs11 backup on the token itself, without cofferd */
    const char *hsm_module;   /* --hsm-module */
    const char *hsm_token;    /* --hsm-token */
    const char *hsm_pin_file; /* --hsm-pin-file (else $COFFER_HSM_PIN) */
    int live; /* health --live: exit 0 whenever cofferd answers (a liveness probe) */
};

/* cli_args_parse returns this when the command should run; any other value is an exit status. */
#define CLI_ARGS_RUN (-1)

/*
 * Parse argv (argv[0] the program, argv[1] the subcommand). Checks everything that can be
 * checked without touching a file: unknown or repeated options, option values, options that do
 * not belong to the subcommand, and the key source. On a usage error prints the problem and the
 * subcommand's usage line on stderr and returns CLI_EXIT_USAGE; after --help returns CLI_EXIT_OK.
 */
int cli_args_parse(struct cli_args *a, int argc, char **argv);

/* The subcommand's name ("encrypt"). */
const char *cli_args_cmd_name(enum cli_cmd cmd);

/* Print a usage error: "coffer: <msg>", the usage line and a pointer to --help; returns 2. */
int cli_args_usage_error(enum cli_cmd cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
