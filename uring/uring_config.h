/* SPDX-License-Identifier: Apache-2.0 */
/* cofferd's configuration: command-line flags and the same names in a `name = value` file. */
#ifndef URING_CONFIG_H
#define URING_CONFIG_H

#include "engine_stream.h"
#include "uring_hsm.h"
#include "uring_kube.h"
#include "uring_recovery.h"

#include <stdatomic.h>
#include <stdio.h>
#include <sys/types.h>

#define URING_MAX_ALLOW   32    /* --allow-uid / --allow-gid entries */
#define URING_CONFIG_MAX  65536 /* bytes of a config file */
#define URING_CONFIG_LINE 1024  /* bytes of one config line */

#define URING_DEV_SOCKET "./.coffer-dev/cofferd.sock" /* --dev's socket (and coffer's fallback) */

#define URING_FD_PIECE_DEFAULT (512L * 1024) /* see uring_server.h, "Buffers" */

struct uring_config {
    char socket_path[108]; /* sun_path */
    char secrets_dir[4096];
    char ns[64];
    char secret[254];
    char spool_dir[4096]; /* "" = $TMPDIR or /tmp */
    char config_path[4096];
    int encryption;
    coffer_format format;
    int workers;
    int max_conns;
    /*
     * The _Atomic fields are the ones a SIGHUP changes in the running daemon (main_reload stores
     * them) while ring threads read them: each read is one atomic load. fd_piece is read once
     * per descriptor job, so a new value applies to jobs that start after the reload.
     */
    _Atomic int io_timeout;     /* seconds without progress before a connection is dropped */
    _Atomic int shutdown_grace; /* seconds SIGTERM waits for running jobs before failing them */
    _Atomic int frame_timeout;  /* seconds a started frame may take to arrive whole */
    int max_conns_per_uid;      /* connections one peer uid may hold; 0: no cap (restart) */
    int helpers;                /* helper threads for the cipher and the velero-v1 spool */
    _Atomic long offload_min;   /* cipher batches of at least this many bytes go to the helpers */
    _Atomic long fd_piece;      /* descriptor jobs: bytes per read (URING_FD_PIECE_DEFAULT) */
    _Atomic long split_min;     /* fd-job batches of at least this many bytes: half to a helper */
    int log_level;
    int dev;
    int echo; /* --echo-baseline: every job passes bytes through, no keys (benchmarks only) */
    int check_config; /* --check-config: parse, report every problem, start nothing */
    int allow_plaintext_restore; /* --allow-plaintext-restore: restores of format none allowed */
    uid_t allow_uid[URING_MAX_ALLOW];
    int n_allow_uid;
    gid_t allow_gid[URING_MAX_ALLOW];
    int n_allow_gid;
    int socket_set, secrets_dir_set; /* given explicitly (for --dev defaults) */
    struct uring_hsm_config hsm;     /* --hsm-*: the pkcs11 retriever (uring_hsm.h) */
    struct uring_kube_config kube;   /* --secret-source, --kubeconfig, ... (uring_kube.h) */
    /* --recovery-recipient FILE (repeatable): age recipients of every new coffer-v1 backup */
    char recovery_recipient[URING_RECOVERY_FILES][4096];
    int n_recovery_recipient;
    /* observability (docs/observability.md) */
    char metrics_listen[256]; /* --metrics-listen ADDR:PORT or a Unix path; "" = no metrics */
    int log_format;           /* --log-format: enum uring_log_format */
};

/*
 * Build the configuration from the option table (uring_config.c): defaults, then the file named
 * by --config (if any), then the command line, which wins (a repeatable flag given on the command
 * line replaces the file's list). Returns 0, 1 when --help, --version or --print-reference was
 * printed (exit 0), or COFFER_ERR_CONFIG with one sentence in err (a config file's problem
 * starts with "FILE:LINE: "). With --check-config (cfg->check_config set on return) every problem
 * is printed on stderr as "cofferd: FILE:LINE: ..." or "cofferd: command line: ..." and parsing
 * goes on; err then counts them. Main thread only (writes stdout and stderr).
 */
int uring_config_load(struct uring_config *cfg, int argc, char **argv, char *err, size_t errlen)
    __attribute__((warn_unused_result));

#endif
