/* SPDX-License-Identifier: Apache-2.0 */
/* Descriptor facts for descriptor jobs: what a client's descriptor is, and where it stands. */
#include "uring_server.h"

#include "coffer_error.h"
#include "uring_log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * What a client's descriptor is. statx with AT_STATX_DONT_SYNC takes the cached attributes (the
 * type, device and inode never change), so a FUSE or network filesystem is not asked and the ring
 * thread cannot block on it; fcntl(F_GETFL) only reads the open file's flags.
 */
struct fdjob_kind {
    unsigned mode; /* S_IFMT bits; 0 for an anonymous inode (eventfd, signalfd, epoll, ...) */
    unsigned dev_major, dev_minor, rdev_major, rdev_minor;
    uint64_t ino;
    int flags; /* F_GETFL */
};

static int fdjob_kind_get(int fd, struct fdjob_kind *k)
{
    struct statx sx;
    memset(k, 0, sizeof(*k));
    if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_TYPE | STATX_INO, &sx) != 0 ||
        (k->flags = fcntl(fd, F_GETFL)) < 0)
        return -1;
    k->mode = sx.stx_mode & S_IFMT;
    k->dev_major = sx.stx_dev_major;
    k->dev_minor = sx.stx_dev_minor;
    k->rdev_major = sx.stx_rdev_major;
    k->rdev_minor = sx.stx_rdev_minor;
    k->ino = sx.stx_ino;
    return 0;
}

static int fdjob_is_devnull(const struct fdjob_kind *k)
{
    return k->mode == S_IFCHR && k->rdev_major == 1 && k->rdev_minor == 3;
}

/* "a signalfd", "a directory", "the character device 1:5": what a refused descriptor is. */
static void fdjob_kind_name(int fd, const struct fdjob_kind *k, char *out, size_t cap)
{
    char link[128] = "", path[64];
    ssize_t n;
    switch (k->mode) {
    case S_IFDIR:
        snprintf(out, cap, "a directory");
        return;
    case S_IFCHR:
        snprintf(out, cap, "the character device %u:%u", k->rdev_major, k->rdev_minor);
        return;
    case S_IFBLK:
        snprintf(out, cap, "the block device %u:%u", k->rdev_major, k->rdev_minor);
        return;
    case S_IFLNK:
        snprintf(out, cap, "a symbolic link opened with O_PATH");
        return;
    case 0:
        /* an anonymous inode: /proc names it "anon_inode:[eventfd]" or "anon_inode:inotify" */
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        if ((n = readlink(path, link, sizeof(link) - 1)) > 11 && strncmp(link, "anon_inode:", 11) == 0) {
            char *name = link + 11;
            link[n] = '\0';
            if (name[0] == '[') {
                name++;
                name[strcspn(name, "]")] = '\0';
            }
            snprintf(out, cap, "an anonymous inode (%s)", name);
            return;
        }
        snprintf(out, cap, "an anonymous inode (eventfd, signalfd, timerfd, epoll or inotify)");
        return;
    default:
        snprintf(out, cap, "a descriptor of file type 0%o", k->mode);
        return;
    }
}

int uring_fdjob_check(int in, int out, char *detail, size_t detaillen)
{
    struct fdjob_kind ki, ko;
    char what[160];
    int acc;

    if (fdjob_kind_get(in, &ki) != 0 || fdjob_kind_get(out, &ko) != 0) {
        snprintf(detail, detaillen, "the job's descriptors could not be examined: %s",
                 strerror(errno));
        return COFFER_ERR_INVALID_ARG;
    }
    if (ki.mode != S_IFREG && ki.mode != S_IFIFO && ki.mode != S_IFSOCK) {
        fdjob_kind_name(in, &ki, what, sizeof(what));
        snprintf(detail, detaillen,
                 "the input descriptor is %s; pass a regular file, a pipe or FIFO, or a socket",
                 what);
        return COFFER_ERR_INVALID_ARG;
    }
    if (ko.mode != S_IFREG && ko.mode != S_IFIFO && ko.mode != S_IFSOCK && !fdjob_is_devnull(&ko)) {
        fdjob_kind_name(out, &ko, what, sizeof(what));
        snprintf(detail, detaillen,
                 "the output descriptor is %s; pass a regular file, a pipe or FIFO, a socket or "
                 "/dev/null",
                 what);
        return COFFER_ERR_INVALID_ARG;
    }
    acc = ki.flags & (O_ACCMODE | O_PATH);
    if (acc != O_RDONLY && acc != O_RDWR) {
        snprintf(detail, detaillen, "the input descriptor is not open for reading");
        return COFFER_ERR_INVALID_ARG;
    }
    acc = ko.flags & (O_ACCMODE | O_PATH);
    if (acc != O_WRONLY && acc != O_RDWR) {
        snprintf(detail, detaillen, "the output descriptor is not open for writing");
        return COFFER_ERR_INVALID_ARG;
    }
    if (ki.dev_major == ko.dev_major && ki.dev_minor == ko.dev_minor && ki.ino == ko.ino) {
        snprintf(detail, detaillen,
                 "the input and the output are the same file (device %u:%u, inode %llu): the "
                 "output would overwrite the input; write to another file",
                 ki.dev_major, ki.dev_minor, (unsigned long long)ki.ino);
        return COFFER_ERR_INVALID_ARG;
    }
    return 0;
}

/*
 * Regular files are read and written at explicit offsets from their current position (the
 * shared file position is left alone); pipes, sockets, /dev/null and an output opened O_APPEND
 * (where the kernel ignores the offset) use the file position (-1), one write at a time.
 */
static uint64_t fdjob_pos(int fd, int output)
{
    struct fdjob_kind k;
    off_t pos;
    if (fdjob_kind_get(fd, &k) != 0 || k.mode != S_IFREG || (output && (k.flags & O_APPEND)) ||
        (pos = lseek(fd, 0, SEEK_CUR)) < 0)
        return (uint64_t)-1;
    return (uint64_t)pos;
}

void uring_fdjob_probe(int in, int out, uint64_t *in_pos, uint64_t *out_pos, int *out_regular)
{
    struct fdjob_kind k;
    *in_pos = fdjob_pos(in, 0);
    *out_pos = fdjob_pos(out, 1);
    *out_regular = fdjob_kind_get(out, &k) == 0 && k.mode == S_IFREG;
}

