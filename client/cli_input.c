/* SPDX-License-Identifier: Apache-2.0 */
/* Opening and reading the job's input with EINTR handled and errors reported once. */
#include "cli_input.h"

#include "cli_report.h"
#include "coffer_error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cli_input_open(struct cli_input *in, const char *path)
{
    char what[4200];
    struct stat st;

    memset(in, 0, sizeof(*in));
    in->fd = -1;
    if (path == NULL) {
        in->fd = STDIN_FILENO;
        in->name = "standard input";
    } else {
        in->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        in->name = path;
        if (in->fd < 0) {
            int e = errno;
            snprintf(what, sizeof(what), "opening %s", path);
            cli_report_error(what, COFFER_ERR_IO, strerror(e));
            return COFFER_ERR_IO;
        }
        in->owned = 1;
    }
    if (fstat(in->fd, &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            snprintf(what, sizeof(what), "opening %s", in->name);
            cli_report_error(what, COFFER_ERR_IO, "it is a directory");
            cli_input_close(in);
            return COFFER_ERR_IO;
        }
        if (S_ISREG(st.st_mode)) {
            in->size = (uint64_t)st.st_size;
            in->size_known = 1;
            (void)posix_fadvise(in->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        }
    }
    return 0;
}

int cli_input_read(struct cli_input *in, uint8_t *buf, size_t cap, size_t *got)
{
    char what[4200];

    for (;;) {
        ssize_t n = read(in->fd, buf, cap);
        if (n >= 0) {
            *got = (size_t)n;
            return 0;
        }
        if (errno == EINTR)
            continue;
        int e = errno;
        snprintf(what, sizeof(what), "reading %s", in->name);
        cli_report_error(what, COFFER_ERR_IO, strerror(e));
        *got = 0;
        return COFFER_ERR_IO;
    }
}

int cli_input_read_atleast(struct cli_input *in, uint8_t *buf, size_t want, size_t *got)
{
    size_t have = 0;

    while (have < want) {
        size_t n = 0;
        int r = cli_input_read(in, buf + have, want - have, &n);
        if (r != 0)
            return r;
        if (n == 0)
            break;
        have += n;
    }
    *got = have;
    return 0;
}

void cli_input_close(struct cli_input *in)
{
    if (in->owned && in->fd >= 0)
        close(in->fd);
    in->fd = -1;
    in->owned = 0;
}
