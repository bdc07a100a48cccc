/* SPDX-License-Identifier: Apache-2.0 */
/* cofferd's listening Unix sockets (the protocol socket, the metrics socket). */
#include "uring_listen.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int uring_listen_unix(const char *path, int backlog)
{
    struct sockaddr_un sa;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    mode_t old;
    struct stat st;

    if (fd < 0)
        return -1;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sa.sun_path)) {
        errno = ENAMETOOLONG;
        goto fail;
    }
    strcpy(sa.sun_path, path);
    if (lstat(path, &st) == 0) {
        int probe;
        if (!S_ISSOCK(st.st_mode)) {
            errno = EEXIST;
            goto fail;
        }
        probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            close(probe);
            errno = EADDRINUSE;
            goto fail;
        }
        if (probe >= 0)
            close(probe);
        unlink(path);
    }
    old = umask(0117);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        umask(old);
        goto fail;
    }
    umask(old);
    if (chmod(path, 0660) != 0 || listen(fd, backlog) != 0)
        goto fail;
    return fd;
fail : {
    int e = errno;
    close(fd);
    errno = e;
}
    return -1;
}
