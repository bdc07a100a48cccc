/* SPDX-License-Identifier: Apache-2.0 */
/* The streaming loop shared by encrypt and decrypt: read, update, write; finish; drain. */
#include "cli_pump.h"

#include "cli_report.h"
#include "coffer_error.h"
#include "engine_secmem.h"
#include "engine_velero.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int pump_engine_fail(const struct cli_pump *p, int r)
{
    const char *detail = engine_stream_detail(p->s);
    char spool[PATH_MAX + 64];

    if (r == COFFER_ERR_SPOOL && detail[0] == '\0') {
        const char *tmpdir = getenv("TMPDIR");
        snprintf(spool, sizeof(spool), "the spool directory is %s",
                 p->spool_dir != NULL ? p->spool_dir
                 : tmpdir != NULL     ? tmpdir
                                      : "/tmp");
        detail = spool;
    }
    cli_report_error(p->what, r, detail);
    return r;
}

int cli_pump_init(struct cli_pump *p, struct cli_input *in, const char *what)
{
    memset(p, 0, sizeof(*p));
    p->input = in;
    p->what = what;
    p->in = malloc(CLI_PUMP_BUF);
    if (p->in == NULL) {
        cli_report_error(what, COFFER_ERR_NOMEM, NULL);
        return COFFER_ERR_NOMEM;
    }
    p->incap = CLI_PUMP_BUF;
    return 0;
}

int cli_pump_attach(struct cli_pump *p, engine_stream *s, struct cli_output *out,
                    struct cli_progress *progress)
{
    size_t upd = engine_stream_bound(s, p->incap);
    size_t fin = engine_stream_bound(s, 0);

    p->s = s;
    p->output = out;
    p->progress = progress;
    p->outcap = upd > fin ? upd : fin;
    p->out = malloc(p->outcap);
    if (p->out == NULL) {
        cli_report_error(p->what, COFFER_ERR_NOMEM, NULL);
        return COFFER_ERR_NOMEM;
    }
    return 0;
}

int cli_pump_feed(struct cli_pump *p, const uint8_t *data, size_t len)
{
    size_t outlen = 0;
    int r;

    /* Never more than incap at once, so that the output always fits. */
    while (len > 0) {
        size_t n = len < p->incap ? len : p->incap;
        r = engine_stream_update(p->s, data, n, p->out, p->outcap, &outlen);
        if (r != 0)
            return pump_engine_fail(p, r);
        r = cli_output_write(p->output, p->out, outlen);
        if (r != 0)
            return r;
        data += n;
        len -= n;
    }
    cli_progress_update(p->progress, engine_stream_bytes_in(p->s));
    return 0;
}

/* Write what the stream releases after its input ended: finish, then drain until empty. */
static int pump_end(struct cli_pump *p)
{
    size_t outlen = 0;
    uint64_t drained = 0;
    int r;

    r = engine_stream_finish(p->s, p->out, p->outcap, &outlen);
    if (r != 0)
        return pump_engine_fail(p, r);
    r = cli_output_write(p->output, p->out, outlen);
    if (r != 0)
        return r;
    for (;;) {
        r = engine_stream_drain(p->s, p->out, p->outcap, &outlen);
        if (r != 0)
            return pump_engine_fail(p, r);
        if (outlen == 0)
            return 0;
        if (drained == 0) {
            /* Only velero-v1 releases here: its plaintext is the input less nonce and tag. */
            uint64_t in = engine_stream_bytes_in(p->s);
            uint64_t over = ENGINE_VELERO_NONCE + ENGINE_VELERO_TAG;
            cli_progress_phase(p->progress, "writing verified plaintext",
                               in > over ? in - over : 0);
        }
        r = cli_output_write(p->output, p->out, outlen);
        if (r != 0)
            return r;
        drained += outlen;
        cli_progress_update(p->progress, drained);
    }
}

int cli_pump_run(struct cli_pump *p)
{
    for (;;) {
        size_t got = 0;
        int r = cli_input_read(p->input, p->in, p->incap, &got);
        if (r != 0)
            return r;
        if (got == 0)
            return pump_end(p);
        r = cli_pump_feed(p, p->in, got);
        if (r != 0)
            return r;
    }
}

void cli_pump_free(struct cli_pump *p)
{
    if (p->in != NULL) {
        engine_secmem_wipe(p->in, p->incap);
        free(p->in);
    }
    if (p->out != NULL) {
        engine_secmem_wipe(p->out, p->outcap);
        free(p->out);
    }
    p->in = NULL;
    p->out = NULL;
}
