/* SPDX-License-Identifier: Apache-2.0 */
/* Feeding input to the engine's header reader until the coffer-v1 header is complete. */
#include "cli_header.h"

#include "cli_report.h"
#include "coffer_error.h"

int cli_header_read(engine_header_reader *r, struct cli_input *in, uint8_t *buf, size_t cap,
                    size_t have, size_t *body_off, size_t *body_len, const char *what)
{
    size_t consumed = 0;
    int rc;

    for (;;) {
        if (have == 0) {
            rc = cli_input_read(in, buf, cap, &have);
            if (rc != 0)
                return rc;
            if (have == 0) {
                int code = r->have < ENGINE_HEADER_MAGIC_LEN ? COFFER_ERR_BAD_HEADER
                                                             : COFFER_ERR_TRUNCATED;
                cli_report_error(what, code, "the input ends inside the coffer-v1 header");
                return code;
            }
        }
        rc = engine_header_reader_feed(r, buf, have, &consumed);
        if (rc < 0) {
            cli_report_error(what, rc, NULL);
            return rc;
        }
        if (rc == 1) {
            *body_off = consumed;
            *body_len = have - consumed;
            return 0;
        }
        have = 0;
    }
}
