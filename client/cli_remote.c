/* SPDX-License-Identifier: Apache-2.0 */
/* coffer encrypt/decrypt through cofferd: descriptors or a stream; the output commits on RESULT. */
#include "cli_job.h"

#include "cli_daemon.h"
#include "cli_input.h"
#include "cli_output.h"
#include "cli_progress.h"
#include "cli_report.h"
#include "cli_status.h"
#include "coffer_client.h"
#include "coffer_error.h"
#include "engine_stream.h"

#include <jansson.h>

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define REMOTE_WATCH_NS   100000000L /* descriptor jobs: look at the output's size 10 times/s */
#define REMOTE_DETAIL_MAX 2600       /* the daemon's message (2048) and a hint */

/* What the callbacks of a streamed job share. */
struct remote_io {
    struct cli_input *in;
    struct cli_output *out;
    struct cli_progress *progress;
    uint64_t sent;
    int reported; /* a callback failed and has reported why */
};

static ssize_t remote_read(void *ctx, void *buf, size_t cap)
{
    struct remote_io *io = ctx;
    size_t got = 0;
    int r = cli_input_read(io->in, buf, cap, &got);

    if (r != 0) {
        io->reported = 1;
        return r;
    }
    io->sent += got;
    cli_progress_update(io->progress, io->sent);
    return (ssize_t)got;
}

static int remote_write(void *ctx, const void *buf, size_t len)
{
    struct remote_io *io = ctx;
    int r = cli_output_write(io->out, buf, len);

    if (r != 0)
        io->reported = 1;
    return r;
}

/*
 * A descriptor job sends no bytes through this process, so its progress is the size of the
 * output file the daemon is writing, looked at by a thread while libcoffer waits for the result.
 * Only this thread draws until it is stopped; nothing else writes to stderr meanwhile.
 */
struct remote_watch {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int stop;
    int fd;
    struct cli_progress *progress;
};

static void *remote_watch_loop(void *arg)
{
    struct remote_watch *w = arg;
    struct timespec until;
    struct stat st;

    pthread_mutex_lock(&w->lock);
    while (!w->stop) {
        if (fstat(w->fd, &st) == 0)
            cli_progress_update(w->progress, (uint64_t)st.st_size);
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += REMOTE_WATCH_NS;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&w->wake, &w->lock, &until);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* Returns 1 when the watcher runs (stop it with remote_watch_stop), 0 when there is none. */
static int remote_watch_start(struct remote_watch *w, int fd, struct cli_progress *progress)
{
    memset(w, 0, sizeof(*w));
    w->fd = fd;
    w->progress = progress;
    if (!progress->enabled)
        return 0;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->wake, NULL);
    if (pthread_create(&w->thread, NULL, remote_watch_loop, w) != 0) {
        pthread_cond_destroy(&w->wake);
        pthread_mutex_destroy(&w->lock);
        return 0; /* no bar, the job runs all the same */
    }
    return 1;
}

static void remote_watch_stop(struct remote_watch *w)
{
    pthread_mutex_lock(&w->lock);
    w->stop = 1;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->wake);
    pthread_mutex_destroy(&w->lock);
}

/* Both sides are named files: cofferd reads and writes them itself. */
static int remote_files(coffer_client *c, const struct coffer_job *job, struct cli_input *in,
                        struct cli_output *out, struct cli_progress *progress,
                        struct coffer_result *res)
{
    struct remote_watch w;
    int watching = !out->direct && remote_watch_start(&w, out->fd, progress);
    int r = coffer_client_file(c, job, in->fd, out->fd, res);

    if (watching)
        remote_watch_stop(&w);
    return r;
}

/* Report a failed job once: the daemon's error, or libcoffer's. */
static void remote_report(const struct cli_args *a, const char *what, int r,
                          const struct coffer_result *res)
{
    char detail[REMOTE_DETAIL_MAX];
    const char *d;

    if (res->err == 0) {
        cli_report_error(what, r,
                         r == COFFER_ERR_PEER_GONE
                             ? "cofferd closed the connection before the result (its log says why)"
                             : NULL);
        return;
    }
    d = cli_daemon_detail(res->err, res->message);
    if (res->err == COFFER_ERR_BAD_HEADER && a->cmd == CLI_CMD_DECRYPT && !a->format_given &&
        a->metadata == NULL)
        snprintf(detail, sizeof(detail),
                 "%s%sgive --metadata FILE (the status metadata stored with the backup) or "
                 "--format for a backup in another format",
                 d, d[0] != '\0' ? "; " : "");
    else
        snprintf(detail, sizeof(detail), "%s", d);
    cli_report_error(what, res->err, detail);
}

/*
 * A backup cofferd could not key with the HSM and keyed with its Secret instead (--hsm-fallback
 * secret) succeeds, but it is not what the operator asked for: its metadata's "hsmFallback" says
 * what was tried and why it failed, and this warning says so on stderr.
 */
static void remote_warn_fallback(const struct coffer_result *res)
{
    json_t *m =
        res->metadata != NULL ? json_loadb(res->metadata, res->metadata_len, 0, NULL) : NULL;
    json_t *fb = json_object_get(m, "hsmFallback");
    json_t *cfg = json_object_get(m, "keyRetrieverConfig");

    if (json_is_object(fb)) {
        const char *ns = json_string_value(json_object_get(cfg, "namespace"));
        const char *name = json_string_value(json_object_get(cfg, "secretName"));
        const char *err = json_string_value(json_object_get(fb, "error"));
        const char *step = json_string_value(json_object_get(fb, "step"));
        const char *token = json_string_value(json_object_get(fb, "token"));
        const char *reason = json_string_value(json_object_get(fb, "reason"));
        cli_report_line("warning: cofferd could not use the HSM (token %s, step %s: %s: %s) and "
                        "fell back to the Secret %s/%s: this backup's key is that Secret's, not "
                        "the HSM's; 'coffer health' shows the HSM's state",
                        token != NULL ? token : "?", step != NULL ? step : "?",
                        err != NULL ? err : "?", reason != NULL ? reason : "?",
                        ns != NULL ? ns : "?", name != NULL ? name : "?");
    }
    json_decref(m);
}

int cli_remote_run(const struct cli_args *a)
{
    int encrypt = a->cmd == CLI_CMD_ENCRYPT;
    int r = COFFER_ERR_INTERNAL;
    char what[PATH_MAX + 32];
    struct cli_input in;
    struct cli_output out, status;
    struct cli_progress progress;
    struct coffer_job job;
    struct coffer_result res;
    coffer_client *c = NULL;
    char *meta = NULL, *status_text = NULL;
    size_t meta_len = 0;
    uint64_t done = 0;

    memset(&out, 0, sizeof(out));
    memset(&status, 0, sizeof(status));
    memset(&progress, 0, sizeof(progress));
    memset(&res, 0, sizeof(res));
    out.fd = status.fd = -1;

    if (encrypt && !(a->format_given && a->format == COFFER_FORMAT_NONE) &&
        cli_output_refuse_terminal(a->out))
        return CLI_EXIT_USAGE;
    if (a->metadata != NULL && cli_status_load(a->metadata, &meta, &meta_len) != 0)
        return CLI_EXIT_FAIL;
    r = cli_input_open(&in, a->in);
    if (r != 0) {
        free(meta);
        return CLI_EXIT_FAIL;
    }
    snprintf(what, sizeof(what), "%s %s", encrypt ? "encrypting" : "decrypting", in.name);
    r = cli_daemon_connect(&c, a);
    if (r != 0)
        goto out;
    r = cli_output_open(&out, a->out, CLI_OUTPUT_REPLACE);
    if (r != 0)
        goto out;

    memset(&job, 0, sizeof(job));
    job.op = encrypt ? COFFER_CLIENT_ENCRYPT : COFFER_CLIENT_DECRYPT;
    job.format = a->format_given ? engine_format_name(a->format) : NULL;
    if (a->context != NULL) {
        job.context = a->context;
        job.context_len = strlen(a->context);
    }
    job.metadata = meta;
    job.metadata_len = meta_len;
    /* The output is fsynced by cli_output_commit, so the daemon need not (job.fsync = 0). */
    cli_progress_start(&progress, a->progress, encrypt ? "encrypting" : "decrypting",
                       in.size_known ? in.size : 0);
    if (a->in != NULL && a->out != NULL) {
        r = remote_files(c, &job, &in, &out, &progress, &res);
        if (r != 0)
            remote_report(a, what, r, &res);
        done = res.bytes_in;
    } else {
        struct remote_io io = {&in, &out, &progress, 0, 0};
        r = coffer_client_stream(c, &job, remote_read, &io, remote_write, &io, &res);
        if (r != 0 && !io.reported)
            remote_report(a, what, r, &res);
        done = io.sent;
    }
    if (r != 0)
        goto out;
    /* Everything that can fail before the commit does, so that a failure leaves no file. */
    if (a->status_out != NULL) {
        r = cli_status_from_result(res.metadata, res.metadata_len, res.bytes_in, res.bytes_out,
                                   what, &status_text);
        if (r != 0)
            goto out;
        r = cli_status_stage(&status, a->status_out, status_text);
        if (r != 0)
            goto out;
    }
    r = cli_output_commit_with_status(&out, a->status_out != NULL ? &status : NULL);
    if (r != 0)
        goto out;
    if (encrypt)
        remote_warn_fallback(&res);
out:
    cli_progress_finish(&progress, done, r == 0);
    coffer_client_close(c);
    cli_output_close(&status);
    cli_output_close(&out);
    cli_input_close(&in);
    coffer_result_clear(&res);
    free(status_text);
    free(meta);
    return r == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}
