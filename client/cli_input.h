/* SPDX-License-Identifier: Apache-2.0 */
/* The job's input: a file or standard input, read in bounded pieces. */
#ifndef CLI_INPUT_H
#define CLI_INPUT_H

#include <stddef.h>
#include <stdint.h>

struct cli_input {
    int fd;
    int owned;        /* fd was opened here and is closed by cli_input_close */
    const char *name; /* the path, or "standard input": for messages */
    uint64_t size;    /* the size of a regular file, else 0 */
    int size_known;
};

/*
 * Open path (NULL: standard input). On failure reports "opening <path>: ..." and returns a
 * COFFER_ERR_* code. A directory is refused.
 */
int cli_input_open(struct cli_input *in, const char *path);

/*
 * Read up to cap bytes (retrying EINTR); *got is 0 only at the end of the input. Reports a read
 * error itself and returns its code.
 */
int cli_input_read(struct cli_input *in, uint8_t *buf, size_t cap, size_t *got);

/* Read until want bytes (want <= cap) are in buf or the input ends; *got says how many. */
int cli_input_read_atleast(struct cli_input *in, uint8_t *buf, size_t want, size_t *got);

void cli_input_close(struct cli_input *in);

#endif
