/* SPDX-License-Identifier: Apache-2.0 */
/* coffer decrypt --offline: recognise the format, read the header, find the key, then stream. */
#include "cli_job.h"

#include "cli_header.h"
#include "cli_input.h"
#include "cli_key.h"
#include "cli_output.h"
#include "cli_progress.h"
#include "cli_pump.h"
#include "cli_recovery.h"
#include "cli_report.h"
#include "coffer_error.h"
#include "engine_velero.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#define DECRYPT_DETAIL_MAX 1024

/*
 * Which key a coffer-v1 file needs: --namespace/--secret override what its header names. With
 * --key-file the header's retriever is only informative.
 */
static int decrypt_key_for_header(engine_key **key, const struct cli_args *a,
                                  const engine_metadata *m, const char *what)
{
    const char *ns = a->ns != NULL ? a->ns : m->ns;
    const char *name = a->secret != NULL ? a->secret : m->secret;

    if (a->n_recovery_identity > 0)
        return cli_recovery_open(key, a, m, what);
    if (a->hsm_module != NULL)
        return cli_recovery_hsm_open(key, a, m, what);
    if (a->key_file == NULL && ((a->secrets_dir == NULL && !a->kube) || ns == NULL || name == NULL)) {
        /* say what this backup needs: its Secret, its HSM key, or a recovery identity */
        char detail[DECRYPT_DETAIL_MAX];
        cli_recovery_needs(m, detail, sizeof(detail));
        cli_report_error(what, COFFER_ERR_KEY_MISSING, detail);
        return COFFER_ERR_KEY_MISSING;
    }
    return cli_key_load(key, a, engine_format_key_rule(COFFER_FORMAT_COFFER_V1), ns, name);
}

int cli_decrypt_offline(const struct cli_args *a)
{
    int r = COFFER_ERR_INTERNAL;
    char what[PATH_MAX + 32];
    struct cli_input in;
    struct cli_output out;
    struct cli_pump pump;
    struct cli_progress progress;
    struct engine_stream_params params;
    engine_header_reader hdr;
    engine_key *key = NULL;
    engine_stream *s = NULL;
    coffer_format f = a->format;
    size_t have = 0, body_off = 0, body_len = 0;
    char detail[DECRYPT_DETAIL_MAX] = "";

    memset(&out, 0, sizeof(out));
    memset(&pump, 0, sizeof(pump));
    memset(&progress, 0, sizeof(progress));
    out.fd = -1;
    engine_header_reader_init(&hdr);

    r = cli_input_open(&in, a->in);
    if (r != 0) {
        engine_header_reader_clear(&hdr);
        return CLI_EXIT_FAIL;
    }
    snprintf(what, sizeof(what), "decrypting %s", in.name);
    r = cli_pump_init(&pump, &in, what);
    if (r != 0)
        goto out;

    if (!a->format_given) {
        /* Only coffer-v1 identifies itself; every other format must be named. */
        r = cli_input_read_atleast(&in, pump.in, ENGINE_HEADER_MAGIC_LEN, &have);
        if (r != 0)
            goto out;
        if (have < ENGINE_HEADER_MAGIC_LEN || !engine_header_sniff(pump.in, have)) {
            r = COFFER_ERR_BAD_HEADER;
            cli_report_error(what, r,
                             "give --format velero-v1, cobblestone, cobblestone-128 or none "
                             "for a file in another format");
            goto out;
        }
    }
    if (f == COFFER_FORMAT_COFFER_V1) {
        r = cli_header_read(&hdr, &in, pump.in, pump.incap, have, &body_off, &body_len, what);
        if (r != 0)
            goto out;
        r = decrypt_key_for_header(&key, a, &hdr.meta, what);
    } else if (f != COFFER_FORMAT_NONE) {
        body_len = have;
        r = cli_key_load(&key, a, engine_format_key_rule(f), a->ns, a->secret);
    } else {
        body_len = have;
    }
    if (r != 0)
        goto out;

    cli_job_params_init(&params, a, f, key, detail, sizeof(detail));
    params.header = f == COFFER_FORMAT_COFFER_V1 ? &hdr : NULL;
    params.spool_dir = a->spool_dir;
    params.spool_mem = ENGINE_VELERO_SPOOL_MEM_DEFAULT;
    r = engine_stream_open_new(&s, &params);
    if (r != 0) {
        cli_report_error(what, r, detail);
        goto out;
    }
    engine_key_free(key);
    key = NULL;

    r = cli_output_open(&out, a->out, CLI_OUTPUT_REPLACE);
    if (r != 0)
        goto out;
    pump.spool_dir = a->spool_dir;
    cli_progress_start(&progress, a->progress, "decrypting", in.size_known ? in.size : 0);
    r = cli_pump_attach(&pump, s, &out, &progress);
    if (r != 0)
        goto out;
    if (body_len > 0) {
        r = cli_pump_feed(&pump, pump.in + body_off, body_len);
        if (r != 0)
            goto out;
    }
    r = cli_pump_run(&pump);
    if (r != 0)
        goto out;
    r = cli_output_commit(&out);
    if (r != 0)
        goto out;
    r = 0;
out:
    cli_progress_finish(&progress, s != NULL ? engine_stream_bytes_in(s) : 0, r == 0);
    cli_pump_free(&pump);
    cli_output_close(&out);
    cli_input_close(&in);
    engine_stream_free(s);
    engine_key_free(key);
    engine_header_reader_clear(&hdr);
    return r == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}
