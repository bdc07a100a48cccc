/* SPDX-License-Identifier: Apache-2.0 */
/* The coffer program: parse the command line, harden the process, run the subcommand. */
#include "cli_args.h"
#include "cli_hsm.h"
#include "cli_job.h"
#include "cli_recovery.h"
#include "cli_report.h"
#include "cli_status.h"
#include "engine_secmem.h"

#include <signal.h>
#include <string.h>

/*
 * encrypt and decrypt run in one of two modes. By default the job goes to cofferd, which holds the
 * keys; --offline runs the engine in this process with a key named on the command line. Each
 * mode has its own entry point; cli_args_parse has already refused the other mode's options.
 */
static int main_run_job(const struct cli_args *a)
{
    int r = cli_status_check_paths(a);

    if (r != CLI_ARGS_RUN)
        return r;
    if (!a->offline)
        return cli_remote_run(a);
    r = cli_job_check_offline(a);
    if (r != CLI_ARGS_RUN)
        return r;
    return a->cmd == CLI_CMD_ENCRYPT ? cli_encrypt_offline(a) : cli_decrypt_offline(a);
}

/* Before any key or PIN is loaded: no core dumps, no ptrace or /proc/pid/mem by same-uid peers. */
static int main_harden(void)
{
    int r;
    /* A closed pipe is an error to report, not a silent death. */
    signal(SIGPIPE, SIG_IGN);
    r = engine_secmem_harden_process();
    if (r != 0)
        cli_report_error("hardening the process (core dumps, ptrace)", r, NULL);
    return r;
}

int main(int argc, char **argv)
{
    struct cli_args a;
    int r;

    /* 'coffer hsm ...' (HSM key administration) has its own options: see cli_hsm.h */
    if (argc >= 2 && strcmp(argv[1], "hsm") == 0)
        return main_harden() != 0 ? CLI_EXIT_FAIL : cli_hsm_main(argc, argv);
    /* 'coffer recovery ...' (age recovery identities): see cli_recovery.h */
    if (argc >= 2 && strcmp(argv[1], "recovery") == 0)
        return main_harden() != 0 ? CLI_EXIT_FAIL : cli_recovery_main(argc, argv);
    r = cli_args_parse(&a, argc, argv);
    if (r != CLI_ARGS_RUN)
        return r;
    if (main_harden() != 0)
        return CLI_EXIT_FAIL;

    switch (a.cmd) {
    case CLI_CMD_KEYGEN:
        return cli_keygen_run(&a);
    case CLI_CMD_INSPECT:
        return cli_inspect_run(&a);
    case CLI_CMD_ENCRYPT:
    case CLI_CMD_DECRYPT:
        return main_run_job(&a);
    case CLI_CMD_HEALTH:
    case CLI_CMD_STATS:
        return cli_query_run(&a);
    }
    return CLI_EXIT_FAIL;
}
