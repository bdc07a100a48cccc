/* SPDX-License-Identifier: Apache-2.0 */
/* Checks and stream parameters shared by the offline encrypt and decrypt jobs. */
#include "cli_job.h"

#include <string.h>

int cli_job_check_offline(const struct cli_args *a)
{
    int named_format = a->format != COFFER_FORMAT_COFFER_V1;

    if (a->format == COFFER_FORMAT_NONE)
        return CLI_ARGS_RUN; /* no key is used */
    /* Decrypting coffer-v1: a recovery identity or the HSM gives the key; with no key source at
     * all the header is read to say what the backup needs (cli_decrypt.c). */
    if (a->cmd == CLI_CMD_DECRYPT && !named_format &&
        (a->n_recovery_identity > 0 || a->hsm_module != NULL ||
         (a->key_file == NULL && a->secrets_dir == NULL && !a->kube)))
        return CLI_ARGS_RUN;
    if (a->key_file == NULL && a->secrets_dir == NULL && !a->kube)
        return cli_args_usage_error(a->cmd, "give the key with --key-file, --secrets-dir or "
                                            "--secret-source kubernetes");
    if ((a->secrets_dir != NULL || a->kube) && (a->ns == NULL || a->secret == NULL)) {
        /* Decrypting coffer-v1 finds the Secret's name in the file's header. */
        if (a->cmd == CLI_CMD_ENCRYPT || named_format)
            return cli_args_usage_error(a->cmd, "--%s needs --namespace and --secret",
                                        a->kube ? "secret-source kubernetes" : "secrets-dir");
    }
    return CLI_ARGS_RUN;
}

void cli_job_params_init(struct engine_stream_params *p, const struct cli_args *a, coffer_format f,
                         const engine_key *key, char *detail, size_t detail_len)
{
    memset(p, 0, sizeof(*p));
    p->format = f;
    p->backend = a->backend;
    p->key = key;
    if (a->context != NULL) {
        p->context = (const uint8_t *)a->context;
        p->context_len = strlen(a->context);
    }
    p->detail = detail;
    p->detail_len = detail_len;
}
