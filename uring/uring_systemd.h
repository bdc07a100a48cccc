/* SPDX-License-Identifier: Apache-2.0 */
/* cofferd under systemd: the socket of socket activation (sd_listen_fds) and sd_notify states. */
#ifndef URING_SYSTEMD_H
#define URING_SYSTEMD_H

#include <stddef.h>

/*
 * The listening socket systemd passed (LISTEN_FDS, for this pid): returns its descriptor (made
 * close-on-exec) and writes its path into path; -1 when cofferd was not socket-activated. When
 * systemd passed something cofferd cannot serve (more than one descriptor, or not a listening
 * AF_UNIX stream socket) returns COFFER_ERR_CONFIG with a sentence in path. Clears LISTEN_* from
 * the environment. Main thread, before any other thread starts.
 */
int uring_systemd_listen_fd(char *path, size_t cap);

/*
 * Tell the service manager a state change: "READY=1", "RELOADING=1" (MONOTONIC_USEC is added),
 * "STOPPING=1", each with a STATUS= line. A no-op without $NOTIFY_SOCKET. Main thread only.
 */
void uring_systemd_notify(const char *state, const char *status);

#endif
