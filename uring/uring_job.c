/* SPDX-License-Identifier: Apache-2.0 */
/* One encrypt or decrypt job: format and key resolution, then bytes through an engine_stream. */
#include "uring_server.h"

#include "coffer_error.h"
#include "engine_secret.h"
#include "uring_log.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *uring_job_op_name(const struct uring_job *j)
{
    return j->op == PROTO_OP_ENCRYPT ? "encrypt" : "decrypt";
}

void uring_job_free(struct uring_job *j)
{
    if (j == NULL)
        return;
    engine_stream_free(j->s);
    engine_header_reader_clear(&j->hdr);
    uring_hsm_job_end(j->rt != NULL ? j->rt->hsm : NULL, j->hsm, j->bytes_in);
    uring_runtime_put(j->rt);
    free(j->context);
    free(j->meta_out);
    if (j->in_fd >= 0)
        close(j->in_fd);
    if (j->out_fd >= 0)
        close(j->out_fd);
    for (unsigned i = 0; i < URING_FILE_BUFS; i++) {
        free(j->fin[i].p);
        free(j->fout[i].p);
    }
    if (j->budget_held > 0)
        atomic_fetch_sub(&uring_srv.fdbuf_bytes, j->budget_held);
    free(j);
}

static int job_set_meta(struct uring_job *j, const char *text, size_t len)
{
    free(j->meta_out);
    j->meta_out_len = 0;
    if ((j->meta_out = malloc(len + 1)) == NULL)
        return COFFER_ERR_NOMEM;
    memcpy(j->meta_out, text, len);
    j->meta_out[len] = '\0';
    j->meta_out_len = len;
    return 0;
}

/* Create the stream once the key (NULL for pass-through) is known. */
static int job_stream_new(struct uring_job *j, const engine_key *key, char *detail,
                          size_t detaillen)
{
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
    p.spool_dir = j->rt->spool_dir[0] != '\0' ? j->rt->spool_dir : NULL;
    p.spool_mem = URING_SPOOL_MEM;
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
            if ((r = job_set_meta(j, text, strlen(text))) != 0)
                goto out;
        }
        /* recovery entries for the input key as it is here (the HSM data key before wrapping) */
        if (j->format == COFFER_FORMAT_COFFER_V1 &&
            (r = uring_recovery_seal(j->rt->recovery, key, &j->meta_out, &j->meta_out_len, detail,
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
    j->state = JOB_RUN;
    r = 0;
out:
    free(text);
    json_decref(meta);
    return r;
}

/* Ask the loader thread for <ns>/<name> under the job's rule; the job waits in JOB_KEYWAIT. */
static int job_key_request(struct uring_conn *c)
{
    struct uring_job *j = c->job;
    struct uring_keyreq *req = j->hsm != NULL ? uring_hsm_req_new(j->hsm) : calloc(1, sizeof(*req));

    if (req == NULL)
        return COFFER_ERR_NOMEM;
    req->task.done = uring_worker_key_back; /* the answer comes back to this ring */
    req->task.ring = &c->w->offload;
    req->task.slot = c->slot;
    req->task.gen = c->gen;
    snprintf(req->secrets_dir, sizeof(req->secrets_dir), "%s", j->rt->secrets_dir);
    snprintf(req->ns, sizeof(req->ns), "%s", j->key_ns);
    snprintf(req->name, sizeof(req->name), "%s", j->key_name);
    snprintf(req->key_id, sizeof(req->key_id), "%s", j->key_id);
    req->rule = j->rule;
    j->state = JOB_KEYWAIT;
    c->keyreq_pending = 1;
    atomic_fetch_add(&uring_srv.stats.key_loads, 1);
    if (j->hsm != NULL)
        uring_hsm_submit(j->rt->hsm, req); /* the HSM loader threads, never this ring thread */
    else
        uring_keys_submit(req);
    return 0;
}

/* Where the key of a restore comes from: its metadata, or the daemon's Secret when there is none.
 */
static int job_key_source(struct uring_job *j, const engine_metadata *m, char *detail,
                          size_t detaillen)
{
    if (m == NULL) {
        snprintf(j->key_ns, sizeof(j->key_ns), "%s", j->rt->ns);
        snprintf(j->key_name, sizeof(j->key_name), "%s", j->rt->secret);
        return 0;
    }
    if (strcmp(m->retriever, "pkcs11") == 0)
        return uring_hsm_job_restore(j->rt->hsm, m->json, &j->hsm, detail, detaillen);
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
    if (j->rt->kube != NULL) {
        int r = uring_kube_ns_allowed(j->rt->kube, m->ns, detail, detaillen);
        if (r != 0)
            return r; /* refused before any request is made */
    }
    snprintf(j->key_ns, sizeof(j->key_ns), "%s", m->ns);
    snprintf(j->key_name, sizeof(j->key_name), "%s", m->secret);
    if (m->key_id != NULL && strlen(m->key_id) == ENGINE_KEY_ID_LEN)
        snprintf(j->key_id, sizeof(j->key_id), "%s", m->key_id);
    return 0;
}

static int job_start_encrypt(struct uring_conn *c, const proto_job *pj, char *detail,
                             size_t detaillen)
{
    struct uring_job *j = c->job;
    struct uring_runtime *rt = j->rt;
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
        return job_stream_new(j, NULL, detail, detaillen);
    snprintf(j->key_ns, sizeof(j->key_ns), "%s", rt->ns);
    snprintf(j->key_name, sizeof(j->key_name), "%s", rt->secret);
    j->rule = engine_format_key_rule(j->format);
    if (j->format == COFFER_FORMAT_COFFER_V1 && uring_hsm_backups(rt->hsm)) {
        engine_key *dk = NULL;
        char *meta = NULL;
        if ((r = uring_hsm_job_backup(rt->hsm, &j->hsm, &dk, &meta)) != 0 || dk == NULL)
            return r != 0 ? r : job_key_request(c); /* the HSM loader threads, or the fallback */
        /* a cached data key */
        free(j->meta_out);
        j->meta_out = meta;
        j->meta_out_len = strlen(meta);
        snprintf(j->key_id, sizeof(j->key_id), "%s", dk->id);
        r = job_stream_new(j, dk, detail, detaillen);
        engine_key_free(dk);
        return r;
    }
    if (rt->key != NULL && j->format == rt->format && rt->kube == NULL) {
        /* (with the API source every backup asks the loader, whose cache honours the TTL) */
        if ((r = job_set_meta(j, rt->metadata, rt->metadata_len)) != 0)
            return r;
        snprintf(j->key_id, sizeof(j->key_id), "%s", rt->key->id); /* for the log */
        return job_stream_new(j, rt->key, detail, detaillen);
    }
    return job_key_request(c);
}

static int job_start_decrypt(struct uring_conn *c, const proto_job *pj, char *detail,
                             size_t detaillen)
{
    struct uring_job *j = c->job;
    engine_metadata m;
    int have_meta = 0, r;

    memset(&m, 0, sizeof(m));
    if (pj->metadata_len > 0) {
        if ((r = engine_metadata_parse(&m, pj->metadata, pj->metadata_len)) != 0) {
            snprintf(detail, detaillen, "the job's status metadata could not be parsed");
            goto out;
        }
        have_meta = 1;
        if ((r = job_set_meta(j, pj->metadata, pj->metadata_len)) != 0)
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
    if (j->rt->echo)
        j->format = COFFER_FORMAT_NONE;
    if (j->format == COFFER_FORMAT_NONE && j->rt->encryption && !j->rt->allow_plaintext_restore) {
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
        r = job_stream_new(j, NULL, detail, detaillen);
    } else if (j->format == COFFER_FORMAT_COFFER_V1) {
        j->state = JOB_HEADER; /* its own header names the key */
        r = 0;
    } else if ((r = job_key_source(j, have_meta ? &m : NULL, detail, detaillen)) == 0) {
        r = job_key_request(c);
    }
out:
    engine_metadata_clear(&m);
    return r;
}

int uring_job_start(struct uring_conn *c, const proto_job *pj, char *detail, size_t detaillen)
{
    int r = COFFER_ERR_NOMEM;
    struct uring_job *j = calloc(1, sizeof(*j));

    detail[0] = '\0';
    if (j == NULL)
        return r;
    j->in_fd = j->out_fd = -1;
    j->op = pj->op;
    j->input = pj->input;
    j->flags = pj->flags;
    j->t_start = uring_now();
    j->rt = uring_runtime_get();
    j->work.job = j;
    engine_header_reader_init(&j->hdr);
    c->job = j;
    if (pj->context_len > 0) {
        if ((j->context = malloc(pj->context_len)) == NULL)
            goto out;
        memcpy(j->context, pj->context, pj->context_len);
        j->context_len = pj->context_len;
    }
    r = pj->op == PROTO_OP_ENCRYPT ? job_start_encrypt(c, pj, detail, detaillen)
                                   : job_start_decrypt(c, pj, detail, detaillen);
    if (r == 0 && j->context_len > 0 && j->format != COFFER_FORMAT_COBBLESTONE &&
        j->format != COFFER_FORMAT_COBBLESTONE_128) {
        snprintf(detail, detaillen, "a context is only used by the bare cobblestone formats");
        r = COFFER_ERR_INVALID_ARG;
    }
out:
    return r;
}

/* The header of a coffer-v1 restore is complete: find its key. */
static int job_header_done(struct uring_conn *c, char *detail, size_t detaillen)
{
    struct uring_job *j = c->job;
    const engine_metadata *m = &j->hdr.meta;
    int r;

    if (j->meta_out == NULL || j->op == PROTO_OP_DECRYPT) {
        /* the authenticated header is what the backup says about itself */
        if ((r = job_set_meta(j, (const char *)j->hdr.bytes + ENGINE_HEADER_FIXED,
                              j->hdr.total - ENGINE_HEADER_FIXED)) != 0)
            return r;
    }
    if (!m->is_encrypted) {
        snprintf(detail, detaillen, "a coffer-v1 header that says the data is not encrypted");
        return COFFER_ERR_METADATA;
    }
    if ((r = job_key_source(j, m, detail, detaillen)) != 0)
        return r;
    return job_key_request(c);
}

int uring_job_key_ready(struct uring_conn *c, struct uring_keyreq *req, char *detail,
                        size_t detaillen)
{
    struct uring_job *j = c->job;

    detail[0] = '\0';
    if (j->hsm != NULL) {
        char *meta = NULL;
        int r = uring_hsm_job_ready(j->hsm, req, &meta, detail, detaillen);
        if (r != 0)
            return r;
        if (meta != NULL) {
            free(j->meta_out);
            j->meta_out = meta;
            j->meta_out_len = strlen(meta);
            snprintf(j->key_id, sizeof(j->key_id), "%s", req->key->id); /* for the log */
        }
        return job_stream_new(j, req->key, detail, detaillen);
    }
    if (req->err != 0) {
        snprintf(detail, detaillen, "Secret %s/%s: %s", req->ns, req->name, req->detail);
        if (j->op == PROTO_OP_DECRYPT && j->format == COFFER_FORMAT_COFFER_V1)
            uring_recovery_hint(j->hdr.meta.json, detail, detaillen);
        return req->err;
    }
    if (j->op == PROTO_OP_ENCRYPT)
        snprintf(j->key_id, sizeof(j->key_id), "%s", req->key->id); /* for the log */
    return job_stream_new(j, req->key, detail, detaillen);
}

int uring_job_feed_header(struct uring_conn *c, const uint8_t *in, size_t len, size_t *used,
                          char *detail, size_t detaillen)
{
    struct uring_job *j = c->job;
    size_t consumed = len;
    int r;

    *used = 0;
    detail[0] = '\0';
    if (j->state != JOB_HEADER)
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
    return r == 1 ? job_header_done(c, detail, detaillen) : 0;
}

int uring_job_header_truncated(struct uring_conn *c, char *detail, size_t detaillen)
{
    snprintf(detail, detaillen, "the input ended inside the coffer-v1 header");
    return c->job->hdr.have == 0 ? COFFER_ERR_BAD_HEADER : COFFER_ERR_TRUNCATED;
}

/* JOB_RUN: as much of in as fits out, through the stream. */
static int job_update(struct uring_job *j, const uint8_t *in, size_t len, uint8_t *out,
                      size_t outcap, size_t *used, size_t *produced, char *detail, size_t detaillen,
                      engine_span *spans, size_t maxspans, size_t *nspans)
{
    size_t slice = len, need;
    int r;

    *used = *produced = 0;
    if (j->state != JOB_RUN)
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
static int job_tail(struct uring_job *j, uint8_t *out, size_t outcap, size_t *produced,
                    char *detail, size_t detaillen)
{
    int r = 0;

    *produced = 0;
    switch (j->state) {
    case JOB_RUN:
        if (outcap < engine_stream_bound(j->s, 0))
            return 0;
        r = engine_stream_finish(j->s, out, outcap, produced);
        if (r == 0)
            j->state = JOB_DRAIN;
        break;
    case JOB_DRAIN:
        if (outcap == 0)
            return 0;
        r = engine_stream_drain(j->s, out, outcap, produced);
        if (r == 0 && *produced == 0)
            j->state = JOB_DONE;
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
static size_t work_room(const struct uring_work *wk)
{
    size_t hdr = wk->framed ? COFFER_FRAME_HEADER : 0, room = wk->outcap - wk->produced;
    if (room < hdr + URING_OUT_MIN)
        return 0;
    room -= hdr;
    return wk->framed && room > URING_DATA_OUT ? URING_DATA_OUT : room;
}

static void work_put(struct uring_work *wk, size_t n)
{
    if (n == 0)
        return;
    if (wk->framed) {
        proto_header_put(wk->out + wk->produced, PROTO_DATA, (uint32_t)n);
        n += COFFER_FRAME_HEADER;
    }
    wk->produced += n;
}

void uring_job_work_run(struct uring_work *wk)
{
    struct uring_job *j = wk->job;
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
            enum uring_job_state before = j->state;
            if (cap == 0 || j->state == JOB_DONE)
                return;
            wk->err =
                job_tail(j, wk->out + wk->produced + hdr, cap, &n, wk->detail, sizeof(wk->detail));
            if (wk->err != 0)
                return;
            work_put(wk, n);
            if (n == 0 && j->state == before)
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
            wk->err = job_update(j, wk->in[i] + wk->used[i], wk->inlen[i] - wk->used[i],
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

void uring_job_work_join(struct uring_work *wk)
{
    struct uring_job *j = wk->job;
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

int uring_job_offload(const struct uring_job *j, size_t inbytes, int tail)
{
    if (uring_job_may_block(j, inbytes, tail))
        return 1; /* velero-v1 spool file I/O: never on a ring thread */
    if (uring_srv.cfg.offload_min <= 0)
        return 0;
    if (tail) /* a velero-v1 restore releases its whole message at the end */
        inbytes = j->format == COFFER_FORMAT_VELERO_V1 && j->op == PROTO_OP_DECRYPT
                      ? (size_t)j->bytes_in
                      : 0;
    return inbytes >= (size_t)uring_srv.cfg.offload_min;
}

int uring_job_may_block(const struct uring_job *j, size_t inbytes, int tail)
{
    if (j->format != COFFER_FORMAT_VELERO_V1 || j->op != PROTO_OP_DECRYPT)
        return 0;
    /* engine_velero keeps URING_SPOOL_MEM bytes in memory; beyond that it writes and reads a file
     */
    return tail ? j->bytes_in > URING_SPOOL_MEM : j->bytes_in + inbytes > URING_SPOOL_MEM;
}
