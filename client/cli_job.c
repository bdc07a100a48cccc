/* SPDX-License-Identifier: Apache-2.0 */
/* Checks shared by the offline encrypt and decrypt jobs before anything is opened. */
#include "cli_job.h"

int cli_job_check_offline(const struct cli_args *a)
{
    int named_format = a->format != COFFER_FORMAT_COFFER_V1;

    if (a->format == COFFER_FORMAT_NONE)
        return CLI_ARGS_RUN; /* no key is used */
    if (a->key_file == NULL && a->secrets_dir == NULL)
        return cli_args_usage_error(a->cmd, "give the key with --key-file or --secrets-dir");
    if (a->secrets_dir != NULL && (a->ns == NULL || a->secret == NULL)) {
        /* Decrypting coffer-v1 finds the Secret's name in the file's header. */
        if (a->cmd == CLI_CMD_ENCRYPT || named_format)
            return cli_args_usage_error(a->cmd, "--secrets-dir needs --namespace and --secret");
    }
    return CLI_ARGS_RUN;
}
