/* SPDX-License-Identifier: Apache-2.0 */
/* Reading a coffer-v1 header off the job's input, for decrypt and inspect. */
#ifndef CLI_HEADER_H
#define CLI_HEADER_H

#include "cli_input.h"
#include "engine_header.h"

#include <stddef.h>
#include <stdint.h>

/*
 * Read the header with r (initialised by the caller), starting with the *have bytes already in
 * buf (cap bytes), reading more from in as needed. On success the bytes that followed the header
 * are buf[*body_off .. *body_off + *body_len). On failure reports "<what>: ..." (a short input is
 * TRUNCATED, wrong magic BAD_HEADER) and returns the code.
 */
int cli_header_read(engine_header_reader *r, struct cli_input *in, uint8_t *buf, size_t cap,
                    size_t have, size_t *body_off, size_t *body_len, const char *what);

#endif
