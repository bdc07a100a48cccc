/* SPDX-License-Identifier: Apache-2.0 */
/* Starting the real cofferd for a test, waiting until it answers on its socket, and stopping it. */
#ifndef TEST_DAEMON_H
#define TEST_DAEMON_H

#include <limits.h>
#include <stdarg.h>
#include <sys/types.h>

/* ts_daemon_start's result when cofferd neither listened nor exited in time (it still runs). */
#define TS_DAEMON_TIMEOUT (-2)

/* One cofferd: its process (0 when not running), its socket and the file its stderr goes to. */
struct ts_daemon {
    pid_t pid;
    char sock[PATH_MAX];
    char log[PATH_MAX];
};

/* Set d->sock to <dir>/<name>.sock and d->log to <dir>/<name>.log. */
void ts_daemon_paths(struct ts_daemon *d, const char *dir, const char *name);

/*
 * Start ts_bin("cofferd") --socket d->sock, then the flags (NULL-terminated, may be NULL), then
 * the extra flags of ap (NULL-terminated); at most 60 flags in all. Its stderr is appended to
 * d->log, and the entries of envs ("NAME=value", NULL-terminated, may be NULL) are added to its
 * environment. Waits up to tries * 10 ms for it to accept a connection on d->sock. Returns 0 once
 * it listens (d->pid > 0); its exit status (128 + signal number when killed) when it stopped first
 * (d->pid is then 0); TS_DAEMON_TIMEOUT when it did neither; -1 when it could not be started
 * (d->pid -1).
 */
int ts_daemon_vstart(struct ts_daemon *d, char *const flags[], char *const envs[], int tries,
                     va_list ap);

/* SIGTERM and wait; returns the exit status (128 + signal number when killed), -1 if not running.
 */
int ts_daemon_stop(struct ts_daemon *d);

/* A connected AF_UNIX stream socket to path (close-on-exec), or -1. */
int ts_daemon_connect(const char *path);

/* How often needle occurs in the file at path (0 when it cannot be read). */
int ts_count_in_file(const char *path, const char *needle);

/* Whether d's stderr log contains needle. */
int ts_daemon_log_has(const struct ts_daemon *d, const char *needle);

#endif
