/* SPDX-License-Identifier: Apache-2.0 */
/* cofferd under systemd: taking the activated socket and reporting ready, reloading, stopping. */
#include "uring_systemd.h"

#include "coffer_error.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <time.h>

int uring_systemd_listen_fd(char *path, size_t cap)
{
    struct sockaddr_un sa;
    socklen_t len = sizeof(sa);
    int n = sd_listen_fds(1), fd = SD_LISTEN_FDS_START;

    if (n <= 0)
        return -1; /* not socket-activated (or LISTEN_PID names another process) */
    if (n > 1) {
        snprintf(path, cap,
                 "systemd passed %d sockets; cofferd serves one (one ListenStream= in "
                 "cofferd.socket)",
                 n);
        return COFFER_ERR_CONFIG;
    }
    if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) <= 0) {
        snprintf(path, cap,
                 "the socket systemd passed is not a listening Unix stream socket "
                 "(cofferd.socket needs ListenStream=/path)");
        return COFFER_ERR_CONFIG;
    }
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0)
        return COFFER_ERR_INTERNAL;
    memset(&sa, 0, sizeof(sa));
    if (getsockname(fd, (struct sockaddr *)&sa, &len) != 0 || len <= sizeof(sa_family_t))
        snprintf(path, cap, "(socket from systemd)");
    else
        snprintf(path, cap, "%.*s", (int)(len - sizeof(sa_family_t)), sa.sun_path);
    return fd;
}

void uring_systemd_notify(const char *state, const char *status)
{
    struct timespec ts;

    if (strcmp(state, "RELOADING=1") == 0 && clock_gettime(CLOCK_MONOTONIC, &ts) == 0)
        sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=%s",
                   (unsigned long long)ts.tv_sec * 1000000ULL +
                       (unsigned long long)ts.tv_nsec / 1000ULL,
                   status);
    else
        sd_notifyf(0, "%s\nSTATUS=%s", state, status);
}
