/* SPDX-License-Identifier: Apache-2.0 */
/* coffer keygen: 32 random bytes from the engine, base64 (OpenSSL) and a newline. */
#include "cli_job.h"

#include "cli_output.h"
#include "cli_report.h"
#include "coffer_error.h"
#include "engine_key.h"
#include "engine_secmem.h"

#include <openssl/evp.h>
#include <string.h>

#define KEYGEN_LEN 32
#define KEYGEN_B64 (4 * ((KEYGEN_LEN + 2) / 3)) /* 44 characters */

int cli_keygen_run(const struct cli_args *a)
{
    int r = COFFER_ERR_INTERNAL;
    engine_key *key = NULL;
    struct cli_output out;
    unsigned char text[KEYGEN_B64 + 2]; /* base64, newline, NUL */

    memset(&out, 0, sizeof(out));
    out.fd = -1;
    /* Open first: an existing --out file is refused before a key exists. */
    r = cli_output_open(&out, a->out, CLI_OUTPUT_NOREPLACE);
    if (r != 0)
        goto out;
    r = engine_key_generate(&key, KEYGEN_LEN);
    if (r != 0) {
        cli_report_error("generating a key", r, NULL);
        goto out;
    }
    if (EVP_EncodeBlock(text, key->bytes, KEYGEN_LEN) != KEYGEN_B64) {
        r = COFFER_ERR_INTERNAL;
        cli_report_error("encoding the key", r, NULL);
        goto out;
    }
    text[KEYGEN_B64] = '\n';
    text[KEYGEN_B64 + 1] = '\0';
    r = cli_output_write(&out, text, KEYGEN_B64 + 1);
    if (r != 0)
        goto out;
    r = cli_output_commit(&out);
out:
    engine_secmem_wipe(text, sizeof(text));
    engine_key_free(key);
    cli_output_close(&out);
    return r == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}
