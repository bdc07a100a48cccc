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
    uring_runtime_put(j->rt);
    free(j->context);
    free(j->meta_out);
    if (j->in_fd >= 0)
        close(j->in_fd);
    if (j->out_fd >= 0)
        close(j->out_fd);
    free(j->rbuf);
    free(j->wbuf);
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
        p.metadata = j->meta_out;
        p.metadata_len = j->meta_out_len;
        r = engine_stream_seal_new(&j->s, &p);
    } else {
        if (key != NULL && j->format != COFFER_FORMAT_COFFER_V1 && j->key_id[0] != '\0' &&
            strcmp(j->key_id, key->id) != 0) {
            snprintf(detail, detaillen,
                     "this backup was encrypted with key %s; Secret %s/%s now holds key %s",
                     j->key_id, j->key_ns, j->key_name, key->id);
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

static void job_key_done(struct uring_keyreq *req);

/* Ask the loader thread for <ns>/<name> under the job's rule; the job waits in JOB_KEYWAIT. */
static int job_key_request(struct uring_conn *c)
{
    struct uring_job *j = c->job;
    struct uring_keyreq *req = calloc(1, sizeof(*req));

    if (req == NULL)
        return COFFER_ERR_NOMEM;
    req->done = job_key_done;
    req->owner = c->w;
    req->slot = c->slot;
    req->gen = c->gen;
    snprintf(req->secrets_dir, sizeof(req->secrets_dir), "%s", j->rt->secrets_dir);
    snprintf(req->ns, sizeof(req->ns), "%s", j->key_ns);
    snprintf(req->name, sizeof(req->name), "%s", j->key_name);
    snprintf(req->key_id, sizeof(req->key_id), "%s", j->key_id);
    req->rule = j->rule;
    j->state = JOB_KEYWAIT;
    c->keyreq_pending = 1;
    atomic_fetch_add(&uring_srv.stats.key_loads, 1);
    uring_keys_submit(req);
    return 0;
}

static void job_key_done(struct uring_keyreq *req)
{
    struct uring_worker *w = req->owner;
    pthread_mutex_lock(&w->lock);
    req->next = w->keys_done;
    w->keys_done = req;
    pthread_mutex_unlock(&w->lock);
    uring_worker_wake(w);
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
    if (strcmp(m->retriever, "pkcs11") == 0) {
        snprintf(detail, detaillen,
                 "this backup's key is wrapped by an HSM (pkcs11) and this "
                 "cofferd has no HSM configured");
        return COFFER_ERR_HSM_UNAVAILABLE;
    }
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
    if (rt->key != NULL && j->format == rt->format) {
        if ((r = job_set_meta(j, rt->metadata, rt->metadata_len)) != 0)
            return r;
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
    if (req->err != 0) {
        snprintf(detail, detaillen, "Secret %s/%s: %s", req->ns, req->name, req->detail);
        return req->err;
    }
    return job_stream_new(j, req->key, detail, detaillen);
}

int uring_job_feed(struct uring_conn *c, const uint8_t *in, size_t len, uint8_t *out, size_t outcap,
                   size_t *used, size_t *produced, char *detail, size_t detaillen)
{
    struct uring_job *j = c->job;
    size_t slice = len, need, consumed = len;
    int r = 0;

    *used = *produced = 0;
    detail[0] = '\0';
    switch (j->state) {
    case JOB_HEADER:
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
    case JOB_RUN:
        while (slice > 0 && (need = engine_stream_bound(j->s, slice)) > outcap) {
            size_t over = need - outcap;
            slice = over >= slice ? 0 : slice - over;
        }
        if (slice == 0)
            return 0;
        r = engine_stream_update(j->s, in, slice, out, outcap, produced);
        if (r != 0) {
            snprintf(detail, detaillen, "%s", engine_stream_detail(j->s));
            return r;
        }
        *used = slice;
        j->bytes_in += slice;
        j->bytes_out += *produced;
        return 0;
    default:
        return 0;
    }
}

int uring_job_finish(struct uring_conn *c, uint8_t *out, size_t outcap, size_t *produced,
                     char *detail, size_t detaillen)
{
    struct uring_job *j = c->job;
    int r = 0;

    *produced = 0;
    detail[0] = '\0';
    switch (j->state) {
    case JOB_HEADER:
        snprintf(detail, detaillen, "the input ended inside the coffer-v1 header");
        return j->hdr.have == 0 ? COFFER_ERR_BAD_HEADER : COFFER_ERR_TRUNCATED;
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
