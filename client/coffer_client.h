/* SPDX-License-Identifier: Apache-2.0 */
/* libcoffer: the C client of cofferd (encrypt/decrypt streams and files, health, stats). */
#ifndef COFFER_CLIENT_H
#define COFFER_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define COFFER_CLIENT_WUR __attribute__((warn_unused_result))

/*
 * Errors: every function returns 0 on success or a negative code of coffer's error table
 * (coffer_error.h; coffer_client_strerror gives the message). When cofferd refused a job, the
 * code is the daemon's (e.g. -20 COFFER_ERR_WRONG_KEY) and the result's message holds the
 * daemon's sentence. -48 COFFER_ERR_CONNECT: no daemon at the socket. -49 COFFER_ERR_PEER_GONE:
 * the connection broke. After any job error the daemon has closed the connection: the client
 * object is then unusable except for coffer_client_close (functions return PEER_GONE).
 *
 * Threads: a coffer_client is one connection, for one thread at a time. Use one per thread.
 * Signals: the library never raises SIGPIPE (it sends with MSG_NOSIGNAL).
 */
typedef struct coffer_client coffer_client;

/*
 * The default socket: $COFFER_SOCKET; else /run/coffer/cofferd.sock when it exists; else
 * ./.coffer-dev/cofferd.sock (the socket of `cofferd --dev` started in the current directory)
 * when that socket exists in a directory owned by the caller's euid with no group or other
 * access; else /run/coffer/cofferd.sock. The string is static or the environment's.
 */
const char *coffer_client_default_socket(void);

/*
 * Connect and say hello. socket_path NULL means the default. On failure *out is NULL and, if
 * msg is not NULL, up to msglen bytes of the daemon's or the system's reason are written there
 * (e.g. the daemon refused this uid: COFFER_ERR_PERMISSION).
 */
int coffer_client_connect(coffer_client **out, const char *socket_path, char *msg,
                          size_t msglen) COFFER_CLIENT_WUR;
/* Close the connection and free the object. NULL is allowed. */
void coffer_client_close(coffer_client *c);

enum coffer_client_op {
    COFFER_CLIENT_ENCRYPT = 1,
    COFFER_CLIENT_DECRYPT = 2,
};

/* What a job does. Strings and buffers are borrowed for the duration of the call. */
struct coffer_job {
    int op;              /* COFFER_CLIENT_ENCRYPT or COFFER_CLIENT_DECRYPT */
    const char *format;  /* NULL: encrypt in the daemon's format; decrypt by metadata or
                            coffer-v1. "coffer-v1", "velero-v1", "none", "cobblestone" */
    const void *context; /* bare cobblestone formats only; else NULL */
    size_t context_len;
    const char *metadata; /* decrypt: the status metadata stored with the backup, needed
                             when the format has no header (velero-v1); else NULL */
    size_t metadata_len;
    int fsync; /* descriptor jobs: fsync the output before the result */
};

/*
 * A job's outcome. On success metadata (NUL-terminated, malloc'ed, owned by the result) is the
 * status metadata JSON to store with the backup (encrypt) or the backup's own (decrypt), and
 * the byte counts are what the daemon read and wrote. On a daemon error, err is its code and
 * message its sentence. Release with coffer_result_clear (safe on a zeroed result).
 */
struct coffer_result {
    uint64_t bytes_in;
    uint64_t bytes_out;
    char *metadata;
    size_t metadata_len;
    int err;
    char message[2048];
};
void coffer_result_clear(struct coffer_result *r);

/*
 * Input and output callbacks of a streamed job. read: up to cap bytes into buf; returns the
 * count, 0 at the end of the input, or a negative coffer code to abort. write: all len bytes;
 * returns 0 or a negative coffer code to abort. For decrypt, write only ever sees authenticated
 * plaintext, but a job that fails later may already have written earlier (authenticated)
 * chunks: the output is complete only when the call returns 0.
 */
typedef ssize_t (*coffer_read_fn)(void *ctx, void *buf, size_t cap);
typedef int (*coffer_write_fn)(void *ctx, const void *buf, size_t len);

/*
 * Stream a job through the socket: reads input with rd, writes output with wr, and fills res.
 * Input and output overlap (the daemon's backpressure never deadlocks this call).
 */
int coffer_client_stream(coffer_client *c, const struct coffer_job *job, coffer_read_fn rd,
                         void *rctx, coffer_write_fn wr, void *wctx,
                         struct coffer_result *res) COFFER_CLIENT_WUR;
/* The same with plain descriptors (read until EOF from in_fd, write all output to out_fd). */
int coffer_client_stream_fd(coffer_client *c, const struct coffer_job *job, int in_fd, int out_fd,
                            struct coffer_result *res) COFFER_CLIENT_WUR;

/*
 * A descriptor job: in_fd (readable) and out_fd (writable) are passed to cofferd with
 * SCM_RIGHTS; the daemon reads and writes them itself from their current offsets and this call
 * waits for the result. The caller keeps its descriptors (the daemon gets duplicates) and must
 * not use them until the call returns.
 */
int coffer_client_file(coffer_client *c, const struct coffer_job *job, int in_fd, int out_fd,
                       struct coffer_result *res) COFFER_CLIENT_WUR;

/* The daemon's health or statistics as JSON text (malloc'ed; free() it). */
int coffer_client_health(coffer_client *c, char **json) COFFER_CLIENT_WUR;
int coffer_client_stats(coffer_client *c, char **json) COFFER_CLIENT_WUR;

/* libcoffer's version, e.g. "0.1.0" (COFFER_VERSION_STRING of the build; static storage). */
const char *coffer_client_version(void);

/* The message of a code, as in coffer_strerror. */
const char *coffer_client_strerror(int err);

#ifdef __cplusplus
}
#endif

#endif
