/* SPDX-License-Identifier: Apache-2.0 */
/* A session's job: format and key resolution, then bytes through an engine_stream (no I/O). */
#include "session_int.h"

#include "coffer_error.h"
#include "engine_secret.h"

#include <stdlib.h>
#include <string.h>

void *session_buf_alloc(const struct session *s, size_t n)
{
    return s->ops->buf_alloc != NULL ? s->ops->buf_alloc(n) : s->ops->alloc(4096, n);
}

void session_buf_free(const struct session *s, void *p)
{
    if (s->ops->buf_free != NULL)
        s->ops->buf_free(p);
    else
        free(p);
}

const char *session_job_op_name(const struct session_job *j)
{
    return j->op == PROTO_OP_ENCRYPT ? "encrypt" : "decrypt";
}

/* Free j: its descriptors close through the env (fd_close), its runtime reference goes back. */
void session_job_free(struct session *s, struct session_job *j)
{
    const struct session_ops *ops = s->ops;
    if (j == NULL)
        return;
    engine_stream_free(j->s);
    engine_header_reader_clear(&j->hdr);
    if (j->rt != NULL) {
        if (j->hsm != NULL)
            ops->hsm_end(j->rt, j->hsm, j->bytes_in);
        ops->rt_put(j->rt);
    }
    free(j->context);
    free(j->meta_out);
    if (j->in_fd >= 0)
        ops->fd_close(s, j->in_fd);
    if (j->out_fd >= 0)
        ops->fd_close(s, j->out_fd);
    for (unsigned i = 0; i < SESSION_FILE_BUFS; i++) {
        session_buf_free(s, j->fin[i].p);
        session_buf_free(s, j->fout[i].p);
    }
    if (j->budget_held > 0)
        ops->fdbuf_give(j->budget_held);
    free(j);
}

static int job_set_meta(struct session *s, struct session_job *j, const char *text, size_t len)
{
    free(j->meta_out);
    j->meta_out_len = 0;
    if ((j->meta_out = s->ops->alloc(0, len + 1)) == NULL)
        return COFFER_ERR_NOMEM;
    memcpy(j->meta_out, text, len);
    j->meta_out[len] = '\0';
    j->meta_out_len = len;
    return 0;
}

/* Create the stream once the key (NULL for pass-through) is known. */
static int job_stream_new(struct session *s, const engine_key *key, char *detail, size_t detaillen)
{
    struct session_job *j = s->job;
    int r = COFFER_ERR_INTERNAL;
    struct engine_stream_params p;
    json_t *meta = NULL;
    char *text = NULL;

    memset(&p, 0, sizeof(p));
    p.format = j->format;
    p.backend = ENGINE_GCM_AUTO;
    p.key = key;
    p.context = j->context;
    p.context_len = j->context_len;
    p.spool_dir = j->rtv.spool_dir != NULL && j->rtv.spool_dir[0] != '\0' ? j->rtv.spool_dir : NULL;
    p.spool_mem = SESSION_SPOOL_MEM;
    p.detail = detail; /* a failed _new's sentence (wrong key id, key size) reaches the client */
    p.detail_len = detaillen;
    if (j->op == PROTO_OP_ENCRYPT) {
        if (j->meta_out == NULL) {
            meta = j->format == COFFER_FORMAT_NONE
                       ? engine_metadata_new_plain()
                       : engine_metadata_new_secret(j->key_ns, j->key_name,
                                                    engine_format_name(j->format), key->id);
            if (meta == NULL || (text = engine_metadata_dump(meta)) == NULL) {
                r = COFFER_ERR_NOMEM;
                goto out;
            }
            if ((r = job_set_meta(s, j, text, strlen(text))) != 0)
                goto out;
        }
        /* recovery entries for the input key as it is here (the HSM data key before wrapping) */
        if (j->format == COFFER_FORMAT_COFFER_V1 &&
            (r = s->ops->recovery_seal(j->rt, key, &j->meta_out, &j->meta_out_len, detail,
                                       detaillen)) != 0)
            goto out;
        p.metadata = j->meta_out;
        p.metadata_len = j->meta_out_len;
        r = engine_stream_seal_new(&j->s, &p);
    } else {
        if (key != NULL && j->format != COFFER_FORMAT_COFFER_V1 && j->key_id[0] != '\0' &&
            strcmp(j->key_id, key->id) != 0) {
            snprintf(detail, detaillen,
                     "this backup was encrypted with key %s; the key given has id %s (Secret "
                     "%s/%s)",
                     j->key_id, key->id, j->key_ns, j->key_name);
            r = COFFER_ERR_WRONG_KEY;
            goto out;
        }
        if (j->format == COFFER_FORMAT_COFFER_V1)
            p.header = &j->hdr;
        r = engine_stream_open_new(&j->s, &p);
    }
    if (r != 0) {
        if (j->s != NULL)
            snprintf(detail, detaillen, "%s", engine_stream_detail(j->s));
        goto out;
    }
    s->state = SESSION_RUN;
    r = 0;
out:
    free(text);
    json_decref(meta);
    return r;
}

/* Ask the env for <ns>/<name> under the job's rule; the session waits in KEYWAIT. */
static int job_key_request(struct session *s)
{
    struct session_job *j = s->job;
    struct session_keyask ask = {j->key_ns, j->key_name, j->key_id, j->rule, j->hsm, j->rt};
    int r = s->ops->key_request(s, &ask);

    if (r == 0)
        s->state = SESSION_KEYWAIT;
    return r;
}

/* Where the key of a restore comes from: its metadata, or the daemon's Secret when there is none.
 */
static int job_key_source(struct session *s, const engine_metadata *m, char *detail,
                          size_t detaillen)
{
    struct session_job *j = s->job;
    if (m == NULL) {
        snprintf(j->key_ns, sizeof(j->key_ns), "%s", j->rtv.ns);
        snprintf(j->key_name, sizeof(j->key_name), "%s", j->rtv.secret);
        return 0;
    }
    if (strcmp(m->retriever, "pkcs11") == 0)
        return s->ops->hsm_restore(j->rt, m->json, &j->hsm, detail, detaillen);
    if (strcmp(m->retriever, "secret") != 0 || m->ns == NULL || m->secret == NULL) {
        snprintf(detail, detaillen,
                 "keyRetrieverType '%.32s' cannot be served by cofferd; "
                 "decrypt it offline with the coffer CLI and its key file",
                 m->retriever);
        return COFFER_ERR_KEY_MISSING;
    }
    if (strlen(m->ns) >= sizeof(j->key_ns) || strlen(m->secret) >= sizeof(j->key_name) ||
        engine_secret_name_check(m->ns, m->secret) != 0) {
        snprintf(detail, detaillen, "the metadata names an invalid namespace or Secret");
        return COFFER_ERR_SECRET_NAME;
    }
    if (j->rtv.api_source) {
        int r = s->ops->kube_ns_allowed(j->rt, m->ns, detail, detaillen);
        if (r != 0)
            return r; /* refused before any request is made */
    }
    snprintf(j->key_ns, sizeof(j->key_ns), "%s", m->ns);
    snprintf(j->key_name, sizeof(j->key_name), "%s", m->secret);
    if (m->key_id != NULL && strlen(m->key_id) == ENGINE_KEY_ID_LEN)
        snprintf(j->key_id, sizeof(j->key_id), "%s", m->key_id);
    return 0;
}

static int job_start_encrypt(struct session *s, const proto_job *pj, char *detail, size_t detaillen)
{
    struct session_job *j = s->job;
    const struct session_rt *rt = &j->rtv;
    int r;

    if (pj->format[0] != '\0') {
        if ((r = engine_format_parse(pj->format, &j->format)) != 0) {
            snprintf(detail, detaillen, "unknown format '%s'", pj->format);
            return r;
        }
    } else {
        j->format = rt->format;
    }
    if (rt->echo)
        j->format = COFFER_FORMAT_NONE;
    if (j->format == COFFER_FORMAT_NONE)
        return job_stream_new(s, NULL, detail, detaillen);
    snprintf(j->key_ns, sizeof(j->key_ns), "%s", rt->ns);
    snprintf(j->key_name, sizeof(j->key_name), "%s", rt->secret);
    j->rule = engine_format_key_rule(j->format);
    if (j->format == COFFER_FORMAT_COFFER_V1 && rt->hsm_backups) {
        engine_key *dk = NULL;
        char *meta = NULL;
        if ((r = s->ops->hsm_backup(j->rt, &j->hsm, &dk, &meta)) != 0 || dk == NULL)
            return r != 0 ? r : job_key_request(s); /* the HSM loader threads, or the fallback */
        /* a cached data key */
        free(j->meta_out);
        j->meta_out = meta;
        j->meta_out_len = strlen(meta);
        snprintf(j->key_id, sizeof(j->key_id), "%s", dk->id);
        r = job_stream_new(s, dk, detail, detaillen);
        engine_key_free(dk);
        return r;
    }
    if (rt->key != NULL && j->format == rt->format && !rt->api_source) {
        /* (with the API source every backup asks the loader, whose cache honours the TTL) */
        if ((r = job_set_meta(s, j, rt->metadata, rt->metadata_len)) != 0)
            return r;
        snprintf(j->key_id, sizeof(j->key_id), "%s", rt->key->id); /* for the log */
        return job_stream_new(s, rt->key, detail, detaillen);
    }
    return job_key_request(s);
}

static int job_start_decrypt(struct session *s, const proto_job *pj, char *detail, size_t detaillen)
{
    struct session_job *j = s->job;
    engine_metadata m;
    int have_meta = 0, r;

    memset(&m, 0, sizeof(m));
    if (pj->metadata_len > 0) {
        if ((r = engine_metadata_parse(&m, pj->metadata, pj->metadata_len)) != 0) {
            snprintf(detail, detaillen, "the job's status metadata could not be parsed");
            goto out;
        }
        have_meta = 1;
        if ((r = job_set_meta(s, j, pj->metadata, pj->metadata_len)) != 0)
            goto out;
    }
    if (pj->format[0] != '\0') {
        r = engine_format_parse(pj->format, &j->format);
    } else if (have_meta) {
        r = m.is_encrypted ? engine_format_parse(m.format, &j->format) : 0;
        if (!m.is_encrypted)
            j->format = COFFER_FORMAT_NONE;
    } else {
        j->format = COFFER_FORMAT_COFFER_V1;
        r = 0;
    }
    if (r != 0) {
        snprintf(detail, detaillen, "unknown format '%.32s'",
                 pj->format[0] != '\0' ? pj->format : (m.format != NULL ? m.format : ""));
        goto out;
    }
    if (j->rtv.echo)
        j->format = COFFER_FORMAT_NONE;
    if (j->format == COFFER_FORMAT_NONE && j->rtv.encryption && !j->rtv.allow_plaintext_restore) {
        /* a forged isEncrypted:false must not turn a restore into a pass-through */
        snprintf(detail, detaillen,
                 "cofferd refuses plaintext restores while encryption is on (%s); if this "
                 "backup was taken before encryption was switched on, start cofferd with "
                 "--allow-plaintext-restore",
                 pj->format[0] != '\0' ? "the job asks for format none"
                                       : "the metadata says isEncrypted false");
        r = COFFER_ERR_FORMAT;
        goto out;
    }
    j->rule = engine_format_key_rule(j->format);
    if (j->format == COFFER_FORMAT_NONE) {
        r = job_stream_new(s, NULL, detail, detaillen);
    } else if (j->format == COFFER_FORMAT_COFFER_V1) {
        s->state = SESSION_HEADER; /* its own header names the key */
        r = 0;
    } else if ((r = job_key_source(s, have_meta ? &m : NULL, detail, detaillen)) == 0) {
        r = job_key_request(s);
    }
out:
    engine_metadata_clear(&m);
    return r;
}

/*
 * A new job for the JOB frame pj: s->job is set when this returns 0, and also on failure when the
 * job was created (the caller fails the session, whose close frees it); on COFFER_ERR_NOMEM for
 * the job itself s->job stays NULL.
 */
int session_job_start(struct session *s, const proto_job *pj, char *detail, size_t detaillen)
{
    int r = COFFER_ERR_NOMEM;
    struct session_job *j = s->ops->alloc(0, sizeof(*j));

    detail[0] = '\0';
    if (j == NULL)
        return r;
    memset(j, 0, sizeof(*j));
    j->in_fd = j->out_fd = -1;
    j->op = pj->op;
    j->input = pj->input;
    j->flags = pj->flags;
    j->t_start = s->ops->now();
    j->rt = s->ops->rt_get(&j->rtv);
    j->work.job = j;
    engine_header_reader_init(&j->hdr);
    s->job = j;
    if (pj->context_len > 0) {
        if ((j->context = s->ops->alloc(0, pj->context_len)) == NULL)
            goto out;
        memcpy(j->context, pj->context, pj->context_len);
        j->context_len = pj->context_len;
    }
    r = pj->op == PROTO_OP_ENCRYPT ? job_start_encrypt(s, pj, detail, detaillen)
                                   : job_start_decrypt(s, pj, detail, detaillen);
    if (r == 0 && j->context_len > 0 && j->format != COFFER_FORMAT_COBBLESTONE &&
        j->format != COFFER_FORMAT_COBBLESTONE_128) {
        snprintf(detail, detaillen, "a context is only used by the bare cobblestone formats");
        r = COFFER_ERR_INVALID_ARG;
    }
out:
    return r;
}

/* The header of a coffer-v1 restore is complete: find its key. */
static int job_header_done(struct session *s, char *detail, size_t detaillen)
{
    struct session_job *j = s->job;
    const engine_metadata *m = &j->hdr.meta;
    int r;

    if (j->meta_out == NULL || j->op == PROTO_OP_DECRYPT) {
        /* the authenticated header is what the backup says about itself */
        if ((r = job_set_meta(s, j, (const char *)j->hdr.bytes + ENGINE_HEADER_FIXED,
                              j->hdr.total - ENGINE_HEADER_FIXED)) != 0)
            return r;
    }
    if (!m->is_encrypted) {
        snprintf(detail, detaillen, "a coffer-v1 header that says the data is not encrypted");
        return COFFER_ERR_METADATA;
    }
    if ((r = job_key_source(s, m, detail, detaillen)) != 0)
        return r;
    return job_key_request(s);
}

/* KEYWAIT: the key request came back (answer: the env's, read by key_answer). */
int session_job_key_ready(struct session *s, const void *answer, char *detail, size_t detaillen)
{
    struct session_job *j = s->job;
    struct session_key ans;
    int r;

    detail[0] = '\0';
    memset(&ans, 0, sizeof(ans));
    s->ops->key_answer(j->hsm, answer, &ans);
    if (j->hsm != NULL) {
        if (ans.err != 0) {
            snprintf(detail, detaillen, "%s", ans.detail);
            return ans.err;
        }
        if (ans.meta != NULL) {
            free(j->meta_out);
            j->meta_out = ans.meta;
            j->meta_out_len = strlen(ans.meta);
            snprintf(j->key_id, sizeof(j->key_id), "%s", ans.key->id); /* for the log */
        }
        return job_stream_new(s, ans.key, detail, detaillen);
    }
    if (ans.err != 0) {
        snprintf(detail, detaillen, "Secret %s/%s: %s", j->key_ns, j->key_name, ans.detail);
        if (j->op == PROTO_OP_DECRYPT && j->format == COFFER_FORMAT_COFFER_V1)
            s->ops->recovery_hint(j->hdr.meta.json, detail, detaillen);
        return ans.err;
    }
    if (ans.key == NULL)
        return COFFER_ERR_INTERNAL;
    if (j->op == PROTO_OP_ENCRYPT)
        snprintf(j->key_id, sizeof(j->key_id), "%s", ans.key->id); /* for the log */
    r = job_stream_new(s, ans.key, detail, detaillen);
    return r;
}

int session_job_feed_header(struct session *s, const uint8_t *in, size_t len, size_t *used,
                            char *detail, size_t detaillen)
{
    struct session_job *j = s->job;
    size_t consumed = len;
    int r;

    *used = 0;
    detail[0] = '\0';
    if (s->state != SESSION_HEADER)
        return COFFER_ERR_INTERNAL;
    r = engine_header_reader_feed(&j->hdr, in, len, &consumed);
    if (r < 0) {
        snprintf(detail, detaillen, "the input does not start with a valid coffer-v1 header");
        return r;
    }
    if (consumed > len)
        return COFFER_ERR_INTERNAL;
    *used = consumed;
    j->bytes_in += consumed;
    return r == 1 ? job_header_done(s, detail, detaillen) : 0;
}

int session_job_header_truncated(struct session *s, char *detail, size_t detaillen)
{
    snprintf(detail, detaillen, "the input ended inside the coffer-v1 header");
    return s->job->hdr.have == 0 ? COFFER_ERR_BAD_HEADER : COFFER_ERR_TRUNCATED;
}

/* JOB_RUN: as much of in as fits out, through the stream. */
static int job_update(struct session_work *wk, const uint8_t *in, size_t len, uint8_t *out,
                      size_t outcap, size_t *used, size_t *produced, char *detail, size_t detaillen,
                      engine_span *spans, size_t maxspans, size_t *nspans)
{
    size_t slice = len, need;
    int r;

    struct session_job *j = wk->job;

    *used = *produced = 0;
    if (wk->st != SESSION_RUN)
        return COFFER_ERR_INTERNAL;
    while (slice > 0 && (need = engine_stream_bound(j->s, slice)) > outcap) {
        size_t over = need - outcap;
        slice = over >= slice ? 0 : slice - over;
    }
    if (slice == 0)
        return 0;
    r = engine_stream_update_spans(j->s, in, slice, out, outcap, produced, spans, maxspans, nspans);
    if (r != 0) {
        snprintf(detail, detaillen, "%s", engine_stream_detail(j->s));
        return r;
    }
    *used = slice;
    j->bytes_in += slice;
    j->bytes_out += *produced;
    return 0;
}

/* Input ended: finish (JOB_RUN -> JOB_DRAIN), then drain until nothing is left (JOB_DONE). */
static int job_tail(struct session_work *wk, uint8_t *out, size_t outcap, size_t *produced,
                    char *detail, size_t detaillen)
{
    struct session_job *j = wk->job;
    int r = 0;

    *produced = 0;
    switch (wk->st) {
    case SESSION_RUN:
        if (outcap < engine_stream_bound(j->s, 0))
            return 0;
        r = engine_stream_finish(j->s, out, outcap, produced);
        if (r == 0)
            wk->st = SESSION_DRAIN;
        break;
    case SESSION_DRAIN:
        if (outcap == 0)
            return 0;
        r = engine_stream_drain(j->s, out, outcap, produced);
        if (r == 0 && *produced == 0)
            wk->st = SESSION_DONE;
        break;
    default:
        return 0;
    }
    if (r != 0) {
        snprintf(detail, detaillen, "%s", engine_stream_detail(j->s));
        return r;
    }
    j->bytes_out += *produced;
    return 0;
}

/* Room for one more output piece at wk->out + wk->produced, after its frame header. */
static size_t work_room(const struct session_work *wk)
{
    size_t hdr = wk->framed ? COFFER_FRAME_HEADER : 0, room = wk->outcap - wk->produced;
    if (room < hdr + SESSION_OUT_MIN)
        return 0;
    room -= hdr;
    return wk->framed && room > SESSION_DATA_OUT ? SESSION_DATA_OUT : room;
}

static void work_put(struct session_work *wk, size_t n)
{
    if (n == 0)
        return;
    if (wk->framed) {
        proto_header_put(wk->out + wk->produced, PROTO_DATA, (uint32_t)n);
        n += COFFER_FRAME_HEADER;
    }
    wk->produced += n;
}

void session_work_run(struct session_work *wk)
{
    struct session_job *j = wk->job;
    size_t hdr = wk->framed ? COFFER_FRAME_HEADER : 0;

    wk->produced = 0;
    wk->err = 0;
    wk->detail[0] = '\0';
    wk->nspans = 0;
    for (int i = 0; i < wk->nin; i++)
        wk->used[i] = 0;
    if (wk->tail) {
        for (;;) {
            size_t cap = work_room(wk), n = 0;
            enum session_state before = wk->st;
            if (cap == 0 || wk->st == SESSION_DONE)
                return;
            wk->err =
                job_tail(wk, wk->out + wk->produced + hdr, cap, &n, wk->detail, sizeof(wk->detail));
            if (wk->err != 0)
                return;
            work_put(wk, n);
            if (n == 0 && wk->st == before)
                return;
        }
    }
    for (int i = 0; i < wk->nin; i++) {
        /* only the first frame of a batch is split: later ones wait whole for the next batch */
        if (i > 0 && wk->framed &&
            engine_stream_bound(j->s, wk->inlen[i]) + hdr > wk->outcap - wk->produced)
            return;
        while (wk->used[i] < wk->inlen[i]) {
            size_t cap = work_room(wk), u = 0, n = 0;
            if (cap == 0)
                return;
            size_t room = sizeof(wk->spans) / sizeof(wk->spans[0]) - wk->nspans, got = 0;
            wk->err = job_update(wk, wk->in[i] + wk->used[i], wk->inlen[i] - wk->used[i],
                                 wk->out + wk->produced + hdr, cap, &u, &n, wk->detail,
                                 sizeof(wk->detail), wk->spans + wk->nspans,
                                 wk->split ? (room < 2 ? room : 2) : 0, &got);
            wk->nspans += got;
            if (wk->err != 0)
                return;
            work_put(wk, n);
            wk->used[i] += u;
            if (u == 0 && n == 0)
                return;
        }
    }
}

void session_job_work_join(struct session_work *wk)
{
    struct session_job *j = wk->job;
    int r;

    if (wk->nspans == 0)
        return;
    r = engine_stream_spans_join(j->s, wk->spans, wk->nspans);
    wk->nspans = 0;
    if (r != 0) {
        wk->err = r;
        wk->produced = 0; /* nothing of a failed batch is written */
        snprintf(wk->detail, sizeof(wk->detail), "%s", engine_stream_detail(j->s));
    }
}

void session_work_run_spans(struct session_work *wk)
{
    for (size_t i = wk->nspans / 2; i < wk->nspans; i++)
        engine_span_run(&wk->spans[i]);
}

/* 1 if this batch (input bytes, or the tail) may block on the velero-v1 spool file. */
static int job_may_block(const struct session_job *j, size_t inbytes, int tail)
{
    if (j->format != COFFER_FORMAT_VELERO_V1 || j->op != PROTO_OP_DECRYPT)
        return 0;
    /* engine_velero keeps SESSION_SPOOL_MEM bytes in memory; beyond that it uses a file */
    return tail ? j->bytes_in > SESSION_SPOOL_MEM : j->bytes_in + inbytes > SESSION_SPOOL_MEM;
}

int session_work_may_block(const struct session_work *wk)
{
    size_t inbytes = 0;
    for (int i = 0; i < wk->nin; i++)
        inbytes += wk->inlen[i];
    return job_may_block(wk->job, inbytes, wk->tail);
}

/* 1 if this batch goes off the owner thread: it may block, or it is at least --offload-min. */
int session_job_offload(const struct session *s, const struct session_job *j, size_t inbytes,
                        int tail)
{
    struct session_config cfg;
    if (job_may_block(j, inbytes, tail))
        return 1; /* velero-v1 spool file I/O: never on a ring thread */
    s->ops->config(&cfg);
    if (cfg.offload_min <= 0)
        return 0;
    if (tail) /* a velero-v1 restore releases its whole message at the end */
        inbytes = j->format == COFFER_FORMAT_VELERO_V1 && j->op == PROTO_OP_DECRYPT
                      ? (size_t)j->bytes_in
                      : 0;
    return inbytes >= (size_t)cfg.offload_min;
}
