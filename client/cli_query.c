/* SPDX-License-Identifier: Apache-2.0 */
/* coffer health and coffer stats: ask cofferd, print its JSON reply indented on standard output. */
/* `coffer health` exits with the state (docs/observability.md): 0 ok, 1 degraded, 2 unavailable
 * (also when cofferd cannot be reached, or answers with a status this client does not know);
 * with --live, 0 whenever cofferd answers (liveness), 2 when it does not. */
#include "cli_job.h"

#include "cli_daemon.h"
#include "cli_output.h"
#include "cli_report.h"
#include "coffer_error.h"

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { CLI_HEALTH_OK = 0, CLI_HEALTH_DEGRADED = 1, CLI_HEALTH_UNAVAILABLE = 2 };

int cli_query_run(const struct cli_args *a)
{
    int health = a->cmd == CLI_CMD_HEALTH;
    const char *sock = cli_daemon_socket(a);
    char what[PATH_MAX + 64];
    coffer_client *c = NULL;
    json_error_t err;
    json_t *j = NULL;
    char *reply = NULL;
    const char *status;
    int r, state = CLI_HEALTH_OK;

    snprintf(what, sizeof(what), "asking cofferd at %s for its %s", sock,
             health ? "health" : "statistics");
    r = cli_daemon_connect(&c, a);
    if (r != 0)
        goto out;
    r = health ? coffer_client_health(c, &reply) : coffer_client_stats(c, &reply);
    if (r != 0) {
        cli_report_error(what, r, NULL);
        goto out;
    }
    j = json_loads(reply, JSON_REJECT_DUPLICATES, &err);
    if (j == NULL || !json_is_object(j)) {
        r = COFFER_ERR_PROTO_FRAME;
        cli_report_error(what, r, "the reply is not a JSON object");
        goto out;
    }
    r = cli_output_print_json(j, what);
    if (r != 0)
        goto out;
    if (health) {
        const char *reason = json_string_value(json_object_get(j, "reason"));
        status = json_string_value(json_object_get(j, "status"));
        if (status != NULL && strcmp(status, "ok") == 0) {
            state = CLI_HEALTH_OK;
        } else {
            state = status != NULL && strcmp(status, "degraded") == 0 ? CLI_HEALTH_DEGRADED
                                                                      : CLI_HEALTH_UNAVAILABLE;
            cli_report_line("cofferd at %s is %s%s%s", sock,
                            status != NULL ? status : "in an unknown state (no status)",
                            reason != NULL && reason[0] != '\0' ? ": " : "",
                            reason != NULL ? reason : "");
        }
    }
    r = 0;
out:
    coffer_client_close(c);
    json_decref(j);
    free(reply);
    if (health && a->live)
        return r == 0 ? CLI_HEALTH_OK : CLI_HEALTH_UNAVAILABLE; /* it answered: it is alive */
    if (health)
        return r == 0 ? state : CLI_HEALTH_UNAVAILABLE;
    return r == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}
