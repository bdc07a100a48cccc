/* SPDX-License-Identifier: Apache-2.0 */
/* The job's output: standard output, or a file that appears (atomically) only on full success. */
#ifndef CLI_OUTPUT_H
#define CLI_OUTPUT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

enum cli_output_mode {
    CLI_OUTPUT_REPLACE = 0,   /* commit replaces an existing file (encrypt, decrypt) */
    CLI_OUTPUT_NOREPLACE = 1, /* an existing file is an error, before and at commit (keygen) */
};

/*
 * A file output is written to a nameless O_TMPFILE file in the target's directory (or, where the
 * file system lacks O_TMPFILE, a mkstemp file that is unlinked on failure and on SIGINT/SIGTERM/
 * SIGHUP), with mode 0600. cli_output_commit fsyncs it and links or renames it onto the path,
 * then fsyncs the directory; until then the path is untouched, and cli_output_close without a
 * commit leaves nothing behind. A path that names an existing device or FIFO (/dev/null) is
 * written directly; a symlink to a file is followed, so the file it points to is replaced.
 */
struct cli_output {
    int fd;
    int owned;        /* fd is closed by cli_output_close */
    const char *name; /* the path as given, or "standard output": for messages */
    int direct;       /* written in place: standard output, a device or a FIFO */
    int anon;         /* an O_TMPFILE file, nameless until commit */
    enum cli_output_mode mode;
    char *final_path; /* where the file goes (a symlink resolved) */
    char *dir;        /* final_path's directory */
    char *tmp_path;   /* mkstemp fallback: the temporary name */
    int committed;
    uint64_t written;
};

/*
 * Ciphertext is never written to a terminal: 1 (after saying so, and what to do instead) when
 * path is NULL and standard output is a terminal, else 0.
 */
int cli_output_refuse_terminal(const char *path);

/* Open (path NULL: standard output). Reports its failure and returns a COFFER_ERR_* code. */
int cli_output_open(struct cli_output *o, const char *path, enum cli_output_mode mode);

/*
 * Write all len bytes (short writes and EINTR handled). Reports a failure as
 * "writing <name>: ..." and returns COFFER_ERR_NOSPACE (ENOSPC, EDQUOT) or COFFER_ERR_IO.
 */
int cli_output_write(struct cli_output *o, const uint8_t *buf, size_t len);

/* Make the output durable and visible under its path. Reports its failure. */
int cli_output_commit(struct cli_output *o);

/*
 * Commit the job's output, then its status file (status NULL: there is none), so that a status
 * never appears for an output that did not. Reports its failure.
 */
int cli_output_commit_with_status(struct cli_output *o, struct cli_output *status);

/*
 * Print j on standard output, indented, with everything outside ASCII escaped (the JSON is
 * untrusted and may go to a terminal), and a newline. Reports "<what>: ..." on failure.
 */
int cli_output_print_json(const json_t *j, const char *what);

/* Release the output; without a successful commit its data is discarded. NULL-safe, idempotent. */
void cli_output_close(struct cli_output *o);

#endif
