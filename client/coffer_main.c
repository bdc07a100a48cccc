/* SPDX-License-Identifier: Apache-2.0 */
/* The coffer program: parse the command line, harden the process, run the subcommand. */
#include "cli_args.h"
#include "cli_job.h"
#include "cli_report.h"
#include "engine_secmem.h"

#include <signal.h>

/*
 * encrypt and decrypt run in one of two modes. --offline runs the engine in this process; the
 * other mode (the default once cofferd exists) will send the job to the daemon. Each mode has its
 * own entry point here, so adding the daemon means adding its branch, not changing the offline
 * path.
 */
static int main_run_job(const struct cli_args *a)
{
    int r;

    if (!a->offline) {
        cli_report_line("daemon mode not available yet: use --offline");
        return CLI_EXIT_USAGE;
    }
    r = cli_job_check_offline(a);
    if (r != CLI_ARGS_RUN)
        return r;
    return a->cmd == CLI_CMD_ENCRYPT ? cli_encrypt_offline(a) : cli_decrypt_offline(a);
}

int main(int argc, char **argv)
{
    struct cli_args a;
    int r = cli_args_parse(&a, argc, argv);

    if (r != CLI_ARGS_RUN)
        return r;
    /* A closed pipe is an error to report, not a silent death. */
    signal(SIGPIPE, SIG_IGN);
    /* Before any key is loaded: no core dumps, no ptrace or /proc/pid/mem by same-uid peers. */
    r = engine_secmem_harden_process();
    if (r != 0) {
        cli_report_error("hardening the process (core dumps, ptrace)", r, NULL);
        return CLI_EXIT_FAIL;
    }

    switch (a.cmd) {
    case CLI_CMD_KEYGEN:
        return cli_keygen_run(&a);
    case CLI_CMD_INSPECT:
        return cli_inspect_run(&a);
    case CLI_CMD_ENCRYPT:
    case CLI_CMD_DECRYPT:
        return main_run_job(&a);
    }
    return CLI_EXIT_FAIL;
}
