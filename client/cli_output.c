/* SPDX-License-Identifier: Apache-2.0 */
/* Output files written beside their target and renamed into place only on full success. */
#include "cli_output.h"

#include "cli_report.h"
#include "coffer_error.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define OUTPUT_WHAT_MAX   (PATH_MAX + 64)
#define OUTPUT_TMP_SLOTS  4
#define OUTPUT_LINK_TRIES 16

/*
 * Temporary names that must vanish if a signal ends the program: the mkstemp fallback's files and
 * the short-lived name an O_TMPFILE file gets just before its rename. The handler only reads them.
 */
static char output_tmp_names[OUTPUT_TMP_SLOTS][PATH_MAX];
static volatile sig_atomic_t output_tmp_used[OUTPUT_TMP_SLOTS];
static int output_handlers_installed;

static void output_on_signal(int sig)
{
    for (int i = 0; i < OUTPUT_TMP_SLOTS; i++)
        if (output_tmp_used[i])
            (void)unlink(output_tmp_names[i]);
    signal(sig, SIG_DFL);
    raise(sig);
}

static int output_tmp_register(const char *path)
{
    if (!output_handlers_installed) {
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = output_on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGHUP, &sa, NULL);
        output_handlers_installed = 1;
    }
    for (int i = 0; i < OUTPUT_TMP_SLOTS; i++)
        if (!output_tmp_used[i] && strlen(path) < PATH_MAX) {
            strcpy(output_tmp_names[i], path);
            output_tmp_used[i] = 1;
            return i;
        }
    return -1;
}

static void output_tmp_unregister(const char *path)
{
    for (int i = 0; i < OUTPUT_TMP_SLOTS; i++)
        if (output_tmp_used[i] && strcmp(output_tmp_names[i], path) == 0) {
            output_tmp_used[i] = 0;
            return;
        }
}

static int output_fail(const char *verb, const char *name, int code, const char *detail)
{
    char what[OUTPUT_WHAT_MAX];

    snprintf(what, sizeof(what), "%s %s", verb, name);
    cli_report_error(what, code, detail);
    return code;
}

static int output_errno_code(int e)
{
    return (e == ENOSPC || e == EDQUOT) ? COFFER_ERR_NOSPACE : COFFER_ERR_IO;
}

/* Split the target into final_path (symlink resolved) and its directory. */
static int output_resolve(struct cli_output *o, const char *path)
{
    char *resolved = realpath(path, NULL);
    const char *target = resolved != NULL ? resolved : path;
    const char *slash;

    o->final_path = strdup(target);
    free(resolved);
    if (o->final_path == NULL)
        return COFFER_ERR_NOMEM;
    slash = strrchr(o->final_path, '/');
    if (slash == NULL)
        o->dir = strdup(".");
    else if (slash == o->final_path)
        o->dir = strdup("/");
    else
        o->dir = strndup(o->final_path, (size_t)(slash - o->final_path));
    return o->dir == NULL ? COFFER_ERR_NOMEM : 0;
}

static const char *output_base(const struct cli_output *o)
{
    const char *slash = strrchr(o->final_path, '/');
    return slash != NULL ? slash + 1 : o->final_path;
}

/* A temporary name beside the target: "<dir>/.<base>.coffer-<unique>". */
static void output_tmp_name(const struct cli_output *o, char *buf, size_t len, const char *suffix)
{
    snprintf(buf, len, "%s/.%s.coffer-%s", o->dir, output_base(o), suffix);
}

static int output_open_file(struct cli_output *o, const char *path)
{
    struct stat st;
    int r;

    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            return output_fail("writing", path, COFFER_ERR_IO, "it is a directory");
        if (o->mode == CLI_OUTPUT_NOREPLACE)
            return output_fail("creating", path, COFFER_ERR_IO,
                               "the file exists and is never overwritten");
        if (!S_ISREG(st.st_mode)) {
            /* A device or FIFO: there is nothing to replace atomically; write to it. */
            o->fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
            if (o->fd < 0)
                return output_fail("opening", path, COFFER_ERR_IO, strerror(errno));
            o->owned = 1;
            o->direct = 1;
            return 0;
        }
    }
    r = output_resolve(o, path);
    if (r != 0)
        return output_fail("opening", path, r, NULL);

    o->fd = open(o->dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
    if (o->fd >= 0) {
        o->anon = 1;
    } else if (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL) {
        char tmp[PATH_MAX];
        output_tmp_name(o, tmp, sizeof(tmp), "XXXXXX");
        o->fd = mkostemp(tmp, O_CLOEXEC);
        if (o->fd < 0)
            return output_fail("creating a temporary file in", o->dir, COFFER_ERR_IO,
                               strerror(errno));
        o->tmp_path = strdup(tmp);
        if (o->tmp_path == NULL) {
            (void)unlink(tmp);
            return output_fail("opening", path, COFFER_ERR_NOMEM, NULL);
        }
        output_tmp_register(o->tmp_path);
    } else {
        return output_fail("creating a temporary file in", o->dir, COFFER_ERR_IO, strerror(errno));
    }
    o->owned = 1;
    if (fchmod(o->fd, 0600) != 0)
        return output_fail("setting the mode of", path, COFFER_ERR_IO, strerror(errno));
    return 0;
}

int cli_output_refuse_terminal(const char *path)
{
    if (path != NULL || !isatty(STDOUT_FILENO))
        return 0;
    cli_report_line("refusing to write ciphertext to a terminal: give --out FILE or redirect "
                    "standard output");
    return 1;
}

int cli_output_open(struct cli_output *o, const char *path, enum cli_output_mode mode)
{
    int r;

    memset(o, 0, sizeof(*o));
    o->fd = -1;
    o->mode = mode;
    if (path == NULL) {
        o->fd = STDOUT_FILENO;
        o->name = "standard output";
        o->direct = 1;
        return 0;
    }
    o->name = path;
    r = output_open_file(o, path);
    if (r != 0)
        cli_output_close(o);
    return r;
}

int cli_output_write(struct cli_output *o, const uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(o->fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : EIO;
            int code = output_errno_code(e);
            return output_fail("writing", o->name, code,
                               code == COFFER_ERR_NOSPACE ? NULL : strerror(e));
        }
        buf += n;
        len -= (size_t)n;
        o->written += (uint64_t)n;
    }
    return 0;
}

/* Give the nameless file the name dest (fails with EEXIST if dest exists). */
static int output_link_anon(struct cli_output *o, const char *dest)
{
    char proc[64];

    if (linkat(o->fd, "", AT_FDCWD, dest, AT_EMPTY_PATH) == 0)
        return 0;
    if (errno == EEXIST)
        return -1;
    /* AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; /proc/self/fd does not. */
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", o->fd);
    return linkat(AT_FDCWD, proc, AT_FDCWD, dest, AT_SYMLINK_FOLLOW);
}

static void output_sync_dir(const struct cli_output *o)
{
    int dfd = open(o->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd); /* best effort: the data itself was synced before the rename */
        close(dfd);
    }
}

static int output_commit_anon(struct cli_output *o)
{
    char tmp[PATH_MAX];

    if (o->mode == CLI_OUTPUT_NOREPLACE) {
        if (output_link_anon(o, o->final_path) != 0)
            return output_fail("creating", o->name, COFFER_ERR_IO,
                               errno == EEXIST ? "the file exists and is never overwritten"
                                               : strerror(errno));
        return 0;
    }
    for (int i = 0; i < OUTPUT_LINK_TRIES; i++) {
        char suffix[48];
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        snprintf(suffix, sizeof(suffix), "%ld-%lx-%d", (long)getpid(), (unsigned long)ts.tv_nsec,
                 i);
        output_tmp_name(o, tmp, sizeof(tmp), suffix);
        int slot = output_tmp_register(tmp);
        if (output_link_anon(o, tmp) == 0) {
            if (rename(tmp, o->final_path) != 0) {
                int e = errno;
                (void)unlink(tmp);
                if (slot >= 0)
                    output_tmp_unregister(tmp);
                return output_fail("renaming the temporary file onto", o->name,
                                   output_errno_code(e), strerror(e));
            }
            if (slot >= 0)
                output_tmp_unregister(tmp);
            return 0;
        }
        int e = errno;
        if (slot >= 0)
            output_tmp_unregister(tmp);
        if (e != EEXIST)
            return output_fail("linking the temporary file for", o->name, output_errno_code(e),
                               strerror(e));
    }
    return output_fail("linking the temporary file for", o->name, COFFER_ERR_IO,
                       "no free temporary name");
}

static int output_commit_named(struct cli_output *o)
{
    if (o->mode == CLI_OUTPUT_NOREPLACE) {
        if (link(o->tmp_path, o->final_path) != 0)
            return output_fail("creating", o->name, COFFER_ERR_IO,
                               errno == EEXIST ? "the file exists and is never overwritten"
                                               : strerror(errno));
        (void)unlink(o->tmp_path);
    } else if (rename(o->tmp_path, o->final_path) != 0) {
        int e = errno;
        return output_fail("renaming the temporary file onto", o->name, output_errno_code(e),
                           strerror(e));
    }
    output_tmp_unregister(o->tmp_path);
    free(o->tmp_path);
    o->tmp_path = NULL;
    return 0;
}

int cli_output_commit(struct cli_output *o)
{
    int r;

    if (o->direct) {
        o->committed = 1;
        return 0;
    }
    if (fsync(o->fd) != 0) {
        int e = errno;
        return output_fail("writing", o->name, output_errno_code(e), strerror(e));
    }
    r = o->anon ? output_commit_anon(o) : output_commit_named(o);
    if (r != 0)
        return r;
    o->committed = 1;
    output_sync_dir(o);
    return 0;
}

int cli_output_commit_with_status(struct cli_output *o, struct cli_output *status)
{
    int r = cli_output_commit(o);

    if (r == 0 && status != NULL)
        r = cli_output_commit(status);
    return r;
}

int cli_output_print_json(const json_t *j, const char *what)
{
    struct cli_output out;
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
    int r;

    if (text == NULL) {
        r = COFFER_ERR_NOMEM;
        cli_report_error(what, r, NULL);
        return r;
    }
    r = cli_output_open(&out, NULL, CLI_OUTPUT_REPLACE);
    if (r == 0)
        r = cli_output_write(&out, (const uint8_t *)text, strlen(text));
    if (r == 0)
        r = cli_output_write(&out, (const uint8_t *)"\n", 1);
    cli_output_close(&out);
    free(text);
    return r;
}

void cli_output_close(struct cli_output *o)
{
    if (o->tmp_path != NULL) {
        (void)unlink(o->tmp_path);
        output_tmp_unregister(o->tmp_path);
        free(o->tmp_path);
        o->tmp_path = NULL;
    }
    if (o->owned && o->fd >= 0)
        close(o->fd);
    o->fd = -1;
    o->owned = 0;
    free(o->final_path);
    free(o->dir);
    o->final_path = NULL;
    o->dir = NULL;
}
