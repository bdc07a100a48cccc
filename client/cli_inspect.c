/* SPDX-License-Identifier: Apache-2.0 */
/* coffer inspect: read only a coffer-v1 header and print its status metadata as JSON. */
#include "cli_job.h"

#include "cli_header.h"
#include "cli_input.h"
#include "cli_output.h"
#include "cli_recovery.h"
#include "cli_report.h"
#include "coffer_error.h"

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The header is at most 12 + ENGINE_METADATA_MAX bytes: read it in pieces this size. */
#define INSPECT_BUF 65536

int cli_inspect_run(const struct cli_args *a)
{
    int r = COFFER_ERR_INTERNAL;
    char what[PATH_MAX + 32];
    struct cli_input in;
    engine_header_reader hdr;
    uint8_t *buf = NULL;
    size_t body_off = 0, body_len = 0;

    engine_header_reader_init(&hdr);
    r = cli_input_open(&in, a->in);
    if (r != 0) {
        engine_header_reader_clear(&hdr);
        return CLI_EXIT_FAIL;
    }
    snprintf(what, sizeof(what), "inspecting %s", in.name);
    buf = malloc(INSPECT_BUF);
    if (buf == NULL) {
        r = COFFER_ERR_NOMEM;
        cli_report_error(what, r, NULL);
        goto out;
    }
    r = cli_header_read(&hdr, &in, buf, INSPECT_BUF, 0, &body_off, &body_len, what);
    if (r != 0)
        goto out;
    r = a->recipients ? cli_recovery_print_recipients(&hdr.meta, what)
                      : cli_output_print_json(hdr.meta.json, what);
out:
    cli_input_close(&in);
    engine_header_reader_clear(&hdr);
    free(buf);
    return r == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}
