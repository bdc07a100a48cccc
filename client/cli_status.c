/* SPDX-License-Identifier: Apache-2.0 */
/* Building the status metadata JSON of an encrypt job and staging its --status-out file. */
#include "cli_status.h"

#include "cli_report.h"
#include "coffer_error.h"
#include "engine_metadata.h"

#include <stdlib.h>
#include <string.h>

static const char *status_base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash != NULL && slash[1] != '\0' ? slash + 1 : path;
}

int cli_status_build(const struct cli_args *a, coffer_format f, const engine_key *key, char **text)
{
    const char *fmt = engine_format_name(f);
    json_t *m;

    *text = NULL;
    if (f == COFFER_FORMAT_NONE)
        m = engine_metadata_new_plain();
    else if (a->key_file != NULL)
        m = engine_metadata_new_file(status_base_name(a->key_file), fmt, key->id);
    else
        m = engine_metadata_new_secret(a->ns, a->secret, fmt, key->id);
    if (m != NULL)
        *text = engine_metadata_dump(m);
    json_decref(m);
    if (*text == NULL) {
        cli_report_error("building the status metadata", COFFER_ERR_NOMEM, NULL);
        return COFFER_ERR_NOMEM;
    }
    return 0;
}

int cli_status_stage(struct cli_output *o, const char *path, const char *text)
{
    int r = cli_output_open(o, path, CLI_OUTPUT_REPLACE);
    if (r != 0)
        return r;
    r = cli_output_write(o, (const uint8_t *)text, strlen(text));
    if (r == 0)
        r = cli_output_write(o, (const uint8_t *)"\n", 1);
    return r;
}
