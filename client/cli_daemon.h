/* SPDX-License-Identifier: Apache-2.0 */
/* Reaching cofferd from the CLI: its socket, connecting with clear errors, its error messages. */
#ifndef CLI_DAEMON_H
#define CLI_DAEMON_H

#include "cli_args.h"
#include "coffer_client.h"

/* The socket to use: --socket, else libcoffer's default ($COFFER_SOCKET, else the system one). */
const char *cli_daemon_socket(const struct cli_args *a);

/*
 * Connect to cofferd and say hello. On failure reports one line, "connecting to cofferd at SOCK:
 * ...", that says what to do (no daemon there: how to start one; refused: who may connect), sets
 * *c to NULL and returns the code.
 */
int cli_daemon_connect(coffer_client **c, const struct cli_args *a);

/*
 * The detail of a daemon's error message: cofferd sends "<coffer_strerror(code)>: <detail>", and
 * the CLI prints the sentence itself, so the part after it (or the whole message when it does
 * not start with the sentence; "" when it is only the sentence). Points into message.
 */
const char *cli_daemon_detail(int code, const char *message);

#endif
