/* SPDX-License-Identifier: Apache-2.0 */
/* Connecting the CLI to cofferd, with messages that say what to do when it cannot. */
#include "cli_daemon.h"

#include "cli_report.h"
#include "coffer_error.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#define DAEMON_MSG_MAX 2048

const char *cli_daemon_socket(const struct cli_args *a)
{
    return a->socket_path != NULL ? a->socket_path : coffer_client_default_socket();
}

const char *cli_daemon_detail(int code, const char *message)
{
    const char *sentence = coffer_strerror(code);
    size_t n = strlen(sentence);

    if (strncmp(message, sentence, n) != 0)
        return message;
    if (message[n] == '\0')
        return message + n;
    if (message[n] == ':' && message[n + 1] == ' ')
        return message + n + 2;
    return message;
}

/* libcoffer's reason for a failed connect(2) is "<path>: <strerror>": keep the second part. */
static const char *daemon_reason(const char *sock, const char *msg)
{
    size_t n = strlen(sock);

    if (strncmp(msg, sock, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ')
        return msg + n + 2;
    return msg;
}

int cli_daemon_connect(coffer_client **c, const struct cli_args *a)
{
    const char *sock = cli_daemon_socket(a);
    char msg[DAEMON_MSG_MAX] = "";
    char what[PATH_MAX + 64];
    char detail[2 * PATH_MAX + DAEMON_MSG_MAX];
    const char *reason;
    int r;

    *c = NULL;
    r = coffer_client_connect(c, sock, msg, sizeof(msg));
    if (r == 0)
        return 0;
    *c = NULL;
    reason = daemon_reason(sock, msg);
    snprintf(what, sizeof(what), "connecting to cofferd at %s", sock);
    switch (r) {
    case COFFER_ERR_CONNECT:
        snprintf(detail, sizeof(detail),
                 "cofferd is not running at %s (%s); start it with 'cofferd --socket %s' "
                 "(or 'cofferd --dev' to try coffer out), point --socket or COFFER_SOCKET at the "
                 "daemon's socket, or use --offline with a key",
                 sock, reason[0] != '\0' ? reason : "no answer", sock);
        break;
    case COFFER_ERR_PERMISSION:
        snprintf(detail, sizeof(detail),
                 "%s; the socket's permissions and cofferd's --allow-uid/--allow-gid decide "
                 "who may connect",
                 cli_daemon_detail(r, reason));
        break;
    case COFFER_ERR_INVALID_ARG:
        snprintf(detail, sizeof(detail), "the socket path is longer than %zu bytes",
                 sizeof(((struct sockaddr_un *)NULL)->sun_path) - 1);
        break;
    case COFFER_ERR_PEER_GONE:
    case COFFER_ERR_PROTO_FRAME:
    case COFFER_ERR_PROTO_VERSION:
    case COFFER_ERR_PROTO_SEQUENCE:
        snprintf(detail, sizeof(detail), "%s%sis it cofferd (version 1 protocol) at that socket?",
                 cli_daemon_detail(r, reason), reason[0] != '\0' ? "; " : "");
        break;
    default:
        snprintf(detail, sizeof(detail), "%s", cli_daemon_detail(r, reason));
        break;
    }
    cli_report_error(what, r, detail);
    return r;
}
