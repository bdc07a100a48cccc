/* SPDX-License-Identifier: Apache-2.0 */
/* The status metadata JSON: built for an encrypt, staged as --status-out, read for --metadata. */
#include "cli_status.h"

#include "cli_report.h"
#include "coffer_error.h"
#include "engine_metadata.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *status_base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash != NULL && slash[1] != '\0' ? slash + 1 : path;
}

int cli_status_build(const struct cli_args *a, coffer_format f, const engine_key *key, char **text)
{
    const char *fmt = engine_format_name(f);
    json_t *m;

    *text = NULL;
    if (f == COFFER_FORMAT_NONE)
        m = engine_metadata_new_plain();
    else if (a->key_file != NULL)
        m = engine_metadata_new_file(status_base_name(a->key_file), fmt, key->id);
    else
        m = engine_metadata_new_secret(a->ns, a->secret, fmt, key->id);
    if (m != NULL)
        *text = engine_metadata_dump(m);
    json_decref(m);
    if (*text == NULL) {
        cli_report_error("building the status metadata", COFFER_ERR_NOMEM, NULL);
        return COFFER_ERR_NOMEM;
    }
    return 0;
}

int cli_status_stage(struct cli_output *o, const char *path, const char *text)
{
    int r = cli_output_open(o, path, CLI_OUTPUT_REPLACE);
    if (r != 0)
        return r;
    r = cli_output_write(o, (const uint8_t *)text, strlen(text));
    if (r == 0)
        r = cli_output_write(o, (const uint8_t *)"\n", 1);
    return r;
}

int cli_status_from_result(const char *meta, size_t len, uint64_t bytes_in, uint64_t bytes_out,
                           const char *what, char **text)
{
    json_error_t err;
    json_t *m = json_loadb(meta, len, JSON_REJECT_DUPLICATES, &err);
    int r = COFFER_ERR_METADATA;

    *text = NULL;
    if (m == NULL || !json_is_object(m)) {
        cli_report_error(what, r, "cofferd's result carries no JSON object");
        goto out;
    }
    r = COFFER_ERR_NOMEM;
    if (bytes_in > (uint64_t)LLONG_MAX || bytes_out > (uint64_t)LLONG_MAX ||
        json_object_set_new(m, "bytesIn", json_integer((json_int_t)bytes_in)) != 0 ||
        json_object_set_new(m, "bytesOut", json_integer((json_int_t)bytes_out)) != 0 ||
        (*text = json_dumps(m, JSON_COMPACT | JSON_PRESERVE_ORDER)) == NULL) {
        cli_report_error(what, r, "building the status metadata");
        goto out;
    }
    r = 0;
out:
    json_decref(m);
    return r;
}

/* Read at most max bytes of path; one more means the file is too large. */
static int status_read(const char *path, char *buf, size_t max, size_t *len, char *detail,
                       size_t detaillen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    size_t have = 0;

    if (fd < 0) {
        snprintf(detail, detaillen, "%s", strerror(errno));
        return COFFER_ERR_IO;
    }
    while (have <= max) {
        ssize_t n = read(fd, buf + have, max + 1 - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(detail, detaillen, "%s", strerror(errno));
            close(fd);
            return COFFER_ERR_IO;
        }
        if (n == 0)
            break;
        have += (size_t)n;
    }
    close(fd);
    if (have > max) {
        snprintf(detail, detaillen, "the file is larger than %zu bytes", max);
        return COFFER_ERR_TOO_LARGE;
    }
    *len = have;
    return 0;
}

int cli_status_load(const char *path, char **text, size_t *len)
{
    char what[PATH_MAX + 64];
    char detail[256] = "";
    json_error_t err;
    json_t *m = NULL;
    char *buf = malloc(ENGINE_METADATA_MAX + 2);
    size_t n = 0;
    int r = COFFER_ERR_NOMEM;

    *text = NULL;
    *len = 0;
    snprintf(what, sizeof(what), "reading the status metadata %s", path);
    if (buf == NULL)
        goto out;
    r = status_read(path, buf, ENGINE_METADATA_MAX, &n, detail, sizeof(detail));
    if (r != 0)
        goto out;
    while (n > 0 &&
           (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        n--;
    buf[n] = '\0';
    r = COFFER_ERR_METADATA;
    m = json_loadb(buf, n, JSON_REJECT_DUPLICATES, &err);
    if (m == NULL) {
        snprintf(detail, sizeof(detail), "not JSON: %s (line %d)", err.text, err.line);
        goto out;
    }
    if (!json_is_object(m)) {
        snprintf(detail, sizeof(detail), "not a JSON object");
        goto out;
    }
    *text = buf;
    *len = n;
    buf = NULL;
    r = 0;
out:
    if (r != 0)
        cli_report_error(what, r, detail);
    json_decref(m);
    free(buf);
    return r;
}

/*
 * Where a path leads: the file it names (symlinks followed), or, when it does not exist yet, its
 * directory resolved and its last component, so that "x", "./x" and "d/../x" compare equal.
 */
static char *status_canonical(const char *path)
{
    char *full = realpath(path, NULL), *dir, *out = NULL;
    const char *slash = strrchr(path, '/'), *base = slash != NULL ? slash + 1 : path;

    if (full != NULL)
        return full;
    dir = slash == NULL   ? strdup(".")
          : slash == path ? strdup("/")
                          : strndup(path, (size_t)(slash - path));
    full = dir != NULL ? realpath(dir, NULL) : NULL;
    if (full != NULL && asprintf(&out, "%s/%s", strcmp(full, "/") == 0 ? "" : full, base) < 0)
        out = NULL;
    free(full);
    free(dir);
    return out;
}

/*
 * 1 when writing `path` would replace the file `other` names: the same path, the same file through
 * a symlink or a hard link (device and inode), or (other NULL) the regular file behind fd.
 */
static int status_same_file(const char *path, const char *other, int fd)
{
    struct stat a, b;
    int same = 0;

    if (other != NULL) {
        char *x = status_canonical(path), *y = status_canonical(other);
        same = strcmp(path, other) == 0 || (x != NULL && y != NULL && strcmp(x, y) == 0);
        free(x);
        free(y);
        if (same)
            return 1;
    }
    if (stat(path, &a) != 0 || !S_ISREG(a.st_mode))
        return 0;
    if (other != NULL ? stat(other, &b) != 0 : fstat(fd, &b) != 0)
        return 0;
    return S_ISREG(b.st_mode) && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

int cli_status_check_paths(const struct cli_args *a)
{
    const char *key_file =
        a->key_file != NULL && strcmp(a->key_file, "-") != 0 ? a->key_file : NULL;
    const struct {
        const char *opt, *path;
        int fd; /* the standard stream used when path is NULL, -1 for none */
    } others[] = {
        {"--in", a->in, a->in == NULL ? STDIN_FILENO : -1},
        {"--out", a->out, a->out == NULL ? STDOUT_FILENO : -1},
        {"--key-file", key_file, -1},
        {"--metadata", a->metadata, -1},
    };

    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        const char *what = others[i].path != NULL         ? others[i].path
                           : others[i].fd == STDIN_FILENO ? "standard input"
                                                          : "standard output";
        if (others[i].path == NULL && others[i].fd < 0)
            continue;
        if (a->status_out != NULL && status_same_file(a->status_out, others[i].path, others[i].fd))
            return cli_args_usage_error(a->cmd,
                                        "--status-out %s is the same file as %s (%s): writing "
                                        "the status there would destroy it; give another path",
                                        a->status_out, others[i].opt, what);
        /* the output may replace the input (in place), never the key or the stored metadata */
        if (i >= 2 && others[i].path != NULL && a->out != NULL &&
            status_same_file(a->out, others[i].path, -1))
            return cli_args_usage_error(a->cmd,
                                        "--out %s is the same file as %s: writing the output "
                                        "there would destroy it; give another path",
                                        a->out, others[i].opt);
    }
    return CLI_ARGS_RUN;
}
