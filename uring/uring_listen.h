/* SPDX-License-Identifier: Apache-2.0 */
/* cofferd's listening Unix sockets (the protocol socket, the metrics socket). */
#ifndef URING_LISTEN_H
#define URING_LISTEN_H

/*
 * A listening Unix stream socket at path (close-on-exec), created under umask 0117 and then
 * chmod 0660: the directory's permissions and the group are the deployer's fence. A stale socket
 * file nobody answers on is replaced; a live one (EADDRINUSE) or another kind of file (EEXIST) is
 * not. Returns the descriptor, or -1 with errno set. Main thread (it changes the umask briefly).
 */
int uring_listen_unix(const char *path, int backlog);

#endif
