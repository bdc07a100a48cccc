/* SPDX-License-Identifier: Apache-2.0 */
/* The ring's side of a session's job: the runtime, key loaders, HSM and recovery as env hooks. */
#include "uring_server.h"

#include "coffer_error.h"
#include "uring_hsm.h"
#include "uring_kube.h"
#include "uring_recovery.h"

#include <stdlib.h>
#include <string.h>

void *uring_job_rt_get(struct session_rt *out)
{
    struct uring_runtime *rt = uring_runtime_get();

    out->encryption = rt->encryption;
    out->echo = rt->echo;
    out->allow_plaintext_restore = rt->allow_plaintext_restore;
    out->format = rt->format;
    out->ns = rt->ns;
    out->secret = rt->secret;
    out->spool_dir = rt->spool_dir;
    out->key = rt->key;
    out->metadata = rt->metadata;
    out->metadata_len = rt->metadata_len;
    out->api_source = rt->kube != NULL;
    out->hsm_backups = uring_hsm_backups(rt->hsm);
    return rt;
}

void uring_job_rt_put(void *rt)
{
    uring_runtime_put(rt);
}

int uring_job_key_request(const struct session_keyask *ask, struct uring_offload_ring *ring,
                          uint32_t slot, uint32_t gen, void (*done)(struct uring_offload_task *))
{
    struct uring_runtime *rt = ask->rt;
    struct uring_keyreq *req =
        ask->hsm != NULL ? uring_hsm_req_new(ask->hsm) : calloc(1, sizeof(*req));

    if (req == NULL)
        return COFFER_ERR_NOMEM;
    req->task.done = done; /* the answer comes back to this ring */
    req->task.ring = ring;
    req->task.slot = slot;
    req->task.gen = gen;
    snprintf(req->secrets_dir, sizeof(req->secrets_dir), "%s", rt->secrets_dir);
    snprintf(req->ns, sizeof(req->ns), "%s", ask->ns);
    snprintf(req->name, sizeof(req->name), "%s", ask->name);
    snprintf(req->key_id, sizeof(req->key_id), "%s", ask->key_id);
    req->rule = ask->rule;
    atomic_fetch_add(&uring_srv.stats.key_loads, 1);
    if (ask->hsm != NULL)
        uring_hsm_submit(rt->hsm, req); /* hsm/'s asynchronous submit, never this ring thread */
    else
        uring_keys_submit(req);
    return 0;
}

void uring_job_key_answer(void *hsm, const void *answer, struct session_key *ans)
{
    struct uring_keyreq *req = (struct uring_keyreq *)answer;

    if (hsm != NULL) {
        ans->err = uring_hsm_job_ready(hsm, req, &ans->meta, ans->detail, sizeof(ans->detail));
        ans->key = ans->err == 0 ? req->key : NULL;
        return;
    }
    ans->err = req->err;
    ans->key = req->key;
    snprintf(ans->detail, sizeof(ans->detail), "%s", req->detail);
    if (ans->err == 0 && ans->key == NULL)
        ans->err = COFFER_ERR_INTERNAL;
}

int uring_job_hsm_backup(void *rt, void **hsm, engine_key **dk, char **meta)
{
    struct uring_hsm_job *hj = NULL;
    int r = uring_hsm_job_backup(((struct uring_runtime *)rt)->hsm, &hj, dk, meta);
    *hsm = hj;
    return r;
}

int uring_job_hsm_restore(void *rt, const void *metadata_json, void **hsm, char *detail,
                          size_t detaillen)
{
    struct uring_hsm_job *hj = NULL;
    int r = uring_hsm_job_restore(((struct uring_runtime *)rt)->hsm, metadata_json, &hj, detail,
                                  detaillen);
    *hsm = hj;
    return r;
}

void uring_job_hsm_end(void *rt, void *hsm, uint64_t bytes)
{
    uring_hsm_job_end(((struct uring_runtime *)rt)->hsm, hsm, bytes);
}

int uring_job_kube_ns_allowed(void *rt, const char *ns, char *detail, size_t detaillen)
{
    return uring_kube_ns_allowed(((struct uring_runtime *)rt)->kube, ns, detail, detaillen);
}

int uring_job_recovery_seal(void *rt, const engine_key *key, char **meta, size_t *len, char *detail,
                            size_t detaillen)
{
    return uring_recovery_seal(((struct uring_runtime *)rt)->recovery, key, meta, len, detail,
                               detaillen);
}

void uring_job_recovery_hint(const void *metadata_json, char *detail, size_t detaillen)
{
    uring_recovery_hint(metadata_json, detail, detaillen);
}
