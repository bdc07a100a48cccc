/* SPDX-License-Identifier: Apache-2.0 */
/* coffer encrypt --offline: key, metadata and header, then the input streamed into the output. */
#include "cli_job.h"

#include "cli_input.h"
#include "cli_key.h"
#include "cli_output.h"
#include "cli_progress.h"
#include "cli_pump.h"
#include "cli_recovery.h"
#include "cli_report.h"
#include "cli_status.h"
#include "coffer_error.h"
#include "engine_velero.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_encrypt_offline(const struct cli_args *a)
{
    int r = COFFER_ERR_INTERNAL;
    char what[PATH_MAX + 32];
    struct cli_input in;
    struct cli_output out, status;
    struct cli_pump pump;
    struct cli_progress progress;
    struct engine_stream_params params;
    engine_key *key = NULL;
    engine_stream *s = NULL;
    char *meta = NULL;
    char detail[512] = "";
    coffer_format f = a->format;

    memset(&out, 0, sizeof(out));
    memset(&status, 0, sizeof(status));
    memset(&pump, 0, sizeof(pump));
    memset(&progress, 0, sizeof(progress));
    out.fd = status.fd = -1;

    if (f != COFFER_FORMAT_NONE && cli_output_refuse_terminal(a->out))
        return CLI_EXIT_USAGE;
    r = cli_input_open(&in, a->in);
    if (r != 0)
        return CLI_EXIT_FAIL;
    snprintf(what, sizeof(what), "encrypting %s", in.name);

    if (f != COFFER_FORMAT_NONE) {
        r = cli_key_load(&key, a, engine_format_key_rule(f), a->ns, a->secret);
        if (r != 0)
            goto out;
    }
    r = cli_status_build(a, f, key, &meta);
    if (r != 0)
        goto out;
    if (f == COFFER_FORMAT_COFFER_V1 && (r = cli_recovery_seal(a, key, &meta)) != 0)
        goto out;

    cli_job_params_init(&params, a, f, key, detail, sizeof(detail));
    if (f == COFFER_FORMAT_COFFER_V1) {
        params.metadata = meta;
        params.metadata_len = strlen(meta);
    }
    r = engine_stream_seal_new(&s, &params);
    if (r != 0) {
        cli_report_error(what, r, detail);
        goto out;
    }
    /* The key now lives (copied) in the stream only. */
    engine_key_free(key);
    key = NULL;

    r = cli_pump_init(&pump, &in, what);
    if (r != 0)
        goto out;
    r = cli_output_open(&out, a->out, CLI_OUTPUT_REPLACE);
    if (r != 0)
        goto out;
    if (a->status_out != NULL) {
        r = cli_status_stage(&status, a->status_out, meta);
        if (r != 0)
            goto out;
    }
    cli_progress_start(&progress, a->progress, "encrypting", in.size_known ? in.size : 0);
    r = cli_pump_attach(&pump, s, &out, &progress);
    if (r != 0)
        goto out;
    r = cli_pump_run(&pump);
    if (r != 0)
        goto out;
    r = cli_output_commit_with_status(&out, a->status_out != NULL ? &status : NULL);
    if (r != 0)
        goto out;
out:
    cli_progress_finish(&progress, s != NULL ? engine_stream_bytes_in(s) : 0, r == 0);
    cli_pump_free(&pump);
    cli_output_close(&status);
    cli_output_close(&out);
    cli_input_close(&in);
    engine_stream_free(s);
    engine_key_free(key);
    free(meta);
    return r == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}
