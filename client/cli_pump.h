/* SPDX-License-Identifier: Apache-2.0 */
/* Moving a job's bytes: input -> engine stream -> output, through fixed-size buffers. */
#ifndef CLI_PUMP_H
#define CLI_PUMP_H

#include "cli_input.h"
#include "cli_output.h"
#include "cli_progress.h"
#include "engine_stream.h"

#include <stddef.h>
#include <stdint.h>

#define CLI_PUMP_BUF (1u << 20) /* input bytes per engine call */

/*
 * The buffers are allocated once: CLI_PUMP_BUF bytes of input and engine_stream_bound of that
 * for output, so memory stays bounded whatever the size of the archive. Both may hold plaintext
 * and are wiped when freed.
 */
struct cli_pump {
    uint8_t *in; /* CLI_PUMP_BUF bytes; callers may read a header into it first */
    size_t incap;
    uint8_t *out;
    size_t outcap;
    engine_stream *s;
    struct cli_input *input;
    struct cli_output *output;
    struct cli_progress *progress;
    const char *what;      /* "encrypting <name>": the prefix of engine errors */
    const char *spool_dir; /* velero-v1 opening: named when the spool cannot be created */
};

/* Allocate the input buffer. Reports a failure. */
int cli_pump_init(struct cli_pump *p, struct cli_input *in, const char *what);

/* Attach the engine stream and the output, allocating the output buffer. Reports a failure. */
int cli_pump_attach(struct cli_pump *p, engine_stream *s, struct cli_output *out,
                    struct cli_progress *progress);

/* Push len bytes (which may lie in p->in) through the stream to the output. Reports a failure. */
int cli_pump_feed(struct cli_pump *p, const uint8_t *data, size_t len);

/*
 * Read the rest of the input through the stream, finish it and drain it (velero-v1 opening
 * releases its plaintext only there, after the tag verified). Only a 0 return means the whole
 * job succeeded; every failure has been reported.
 */
int cli_pump_run(struct cli_pump *p);

/* Wipe and free the buffers (not the stream, input or output). */
void cli_pump_free(struct cli_pump *p);

#endif
