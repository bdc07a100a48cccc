/* SPDX-License-Identifier: Apache-2.0 */
/*
 * LD_PRELOAD into cofferd for uring_probe_test: lseek on a file whose path holds "slow-lseek"
 * waits until the test lets it go, as lseek waits for a file's position lock while another thread
 * of the client holds it in a read on a hung filesystem. It creates $COFFER_TEST_LSEEK_GATE/blocked
 * when it starts waiting and returns once $COFFER_TEST_LSEEK_GATE/release exists.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

off_t lseek(int fd, off_t off, int whence);
off_t lseek64(int fd, off_t off, int whence);

static void gate(int fd)
{
    const char *dir = getenv("COFFER_TEST_LSEEK_GATE");
    char link[64], path[4096], flag[4200];
    ssize_t n;
    int f;

    if (dir == NULL)
        return;
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    if ((n = readlink(link, path, sizeof(path) - 1)) <= 0)
        return;
    path[n] = '\0';
    if (strstr(path, "slow-lseek") == NULL)
        return;
    snprintf(flag, sizeof(flag), "%s/blocked", dir);
    if ((f = open(flag, O_WRONLY | O_CREAT | O_CLOEXEC, 0600)) >= 0)
        close(f);
    snprintf(flag, sizeof(flag), "%s/release", dir);
    while (access(flag, F_OK) != 0)
        usleep(10000);
}

static off_t real_lseek(int fd, off_t off, int whence)
{
    static off_t (*real)(int, off_t, int);
    if (real == NULL)
        *(void **)&real = dlsym(RTLD_NEXT, "lseek");
    return real(fd, off, whence);
}

off_t lseek(int fd, off_t off, int whence)
{
    gate(fd);
    return real_lseek(fd, off, whence);
}

off_t lseek64(int fd, off_t off, int whence)
{
    gate(fd);
    return real_lseek(fd, off, whence);
}
