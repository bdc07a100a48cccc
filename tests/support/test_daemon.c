/* SPDX-License-Identifier: Apache-2.0 */
/* Starting the real cofferd for a test, waiting until it answers on its socket, and stopping it. */
#include "test_daemon.h"
#include "test_support.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_ARGS 64

void ts_daemon_paths(struct ts_daemon *d, const char *dir, const char *name)
{
    snprintf(d->sock, sizeof(d->sock), "%s/%s.sock", dir, name);
    snprintf(d->log, sizeof(d->log), "%s/%s.log", dir, name);
}

int ts_daemon_connect(const char *path)
{
    struct sockaddr_un sa;
    int fd;

    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sa.sun_path)) {
        fprintf(stderr, "socket path too long: %s\n", path);
        abort();
    }
    memcpy(sa.sun_path, path, strlen(path));
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
        return fd;
    if (fd >= 0)
        close(fd);
    return -1;
}

static int exit_status(int status)
{
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int ts_daemon_vstart(struct ts_daemon *d, char *const flags[], char *const envs[], int tries,
                     va_list ap)
{
    char *argv[MAX_ARGS];
    int argc = 0, status = 0;

    argv[argc++] = (char *)ts_bin("cofferd");
    argv[argc++] = "--socket";
    argv[argc++] = d->sock;
    for (int i = 0; flags != NULL && flags[i] != NULL && argc < MAX_ARGS - 2; i++)
        argv[argc++] = flags[i];
    for (char *a; argc < MAX_ARGS - 2 && (a = va_arg(ap, char *)) != NULL;)
        argv[argc++] = a;
    argv[argc] = NULL;
    fflush(NULL);
    d->pid = fork();
    if (d->pid < 0)
        return -1;
    if (d->pid == 0) {
        int fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd >= 0)
            dup2(fd, STDERR_FILENO);
        for (int i = 0; envs != NULL && envs[i] != NULL; i++)
            putenv(envs[i]);
        execv(argv[0], argv);
        _exit(127);
    }
    for (int i = 0; i < tries; i++) {
        int fd = ts_daemon_connect(d->sock);
        if (fd >= 0) {
            close(fd);
            return 0;
        }
        if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
            d->pid = 0;
            return exit_status(status);
        }
        usleep(10000);
    }
    return TS_DAEMON_TIMEOUT;
}

int ts_daemon_stop(struct ts_daemon *d)
{
    int status = 0;

    if (d->pid <= 0)
        return -1;
    kill(d->pid, SIGTERM);
    while (waitpid(d->pid, &status, 0) < 0 && errno == EINTR)
        ;
    d->pid = 0;
    return exit_status(status);
}

int ts_count_in_file(const char *path, const char *needle)
{
    size_t len = 0;
    char *text = (char *)ts_read_file(path, &len);
    int n = 0;

    for (const char *p = text; p != NULL && (p = strstr(p, needle)) != NULL; p++)
        n++;
    free(text);
    return n;
}

int ts_daemon_log_has(const struct ts_daemon *d, const char *needle)
{
    size_t n = 0;
    char *text = (char *)ts_read_file(d->log, &n);
    int found = text != NULL && strstr(text, needle) != NULL;

    free(text);
    return found;
}
