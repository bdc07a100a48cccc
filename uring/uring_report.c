/* SPDX-License-Identifier: Apache-2.0 */
/* cofferd's HEALTH and STATS replies and the health state, in one place (also for /metrics). */
#include "uring_report.h"

#include "coffer_version.h"
#include "engine_secmem.h"
#include "proto_frame.h"
#include "uring_hsm.h"
#include "uring_runtime.h"
#include "uring_server.h"

enum uring_health_state uring_report_health_state(const struct uring_runtime *rt, int hsm_state,
                                                  const char **reason)
{
    struct uring_hsm *h = rt->hsm;
    int secret_ok = !rt->encryption || rt->key != NULL; /* the Secret key of new backups */

    *reason = "";
    if (atomic_load(&uring_srv.stopping)) {
        *reason = "stopping";
        return URING_HEALTH_UNAVAILABLE;
    }
    /* not tried yet counts as working: the first probe runs right after start */
    if (h == NULL || hsm_state >= 0) {
        if (secret_ok || uring_hsm_backups(h))
            return URING_HEALTH_OK;
        *reason = "no_secret";
        return URING_HEALTH_UNAVAILABLE;
    }
    if (!uring_hsm_backups(h) || rt->format != COFFER_FORMAT_COFFER_V1 || !rt->encryption) {
        /* the HSM serves restores only: new backups do not need it */
        *reason = "hsm_unavailable_restores";
        return secret_ok ? URING_HEALTH_DEGRADED : URING_HEALTH_UNAVAILABLE;
    }
    if (!uring_hsm_fallback_secret(h)) {
        *reason = "hsm_unavailable_fallback_none";
        return URING_HEALTH_UNAVAILABLE;
    }
    if (!secret_ok) {
        *reason = "hsm_unavailable_no_secret";
        return URING_HEALTH_UNAVAILABLE;
    }
    *reason = "hsm_unavailable_fallback_secret";
    return URING_HEALTH_DEGRADED;
}

static const char *report_health_name(enum uring_health_state s)
{
    return s == URING_HEALTH_OK ? "ok" : (s == URING_HEALTH_DEGRADED ? "degraded" : "unavailable");
}

void uring_report_counters_get(struct uring_report_counters *c)
{
    struct uring_stats *s = &uring_srv.stats;
    int active = atomic_load(&uring_srv.active_conns);

    c->conns_active = active > 0 ? (uint64_t)active : 0;
    c->conns_total = atomic_load(&s->conns_total);
    c->conns_denied = atomic_load(&s->conns_denied);
    c->conns_busy = atomic_load(&s->conns_busy);
    c->conns_timeout = atomic_load(&s->conns_timeout);
    c->jobs_ok = atomic_load(&s->jobs_ok);
    c->jobs_failed = atomic_load(&s->jobs_failed);
    c->bytes_in = atomic_load(&s->bytes_in);
    c->bytes_out = atomic_load(&s->bytes_out);
    c->key_loads = atomic_load(&s->key_loads);
    c->helper_batches = atomic_load(&s->helper_batches);
    c->split_batches = atomic_load(&s->split_batches);
    c->fd_small = atomic_load(&s->fd_small);
    c->secmem_lock_failures = engine_secmem_lock_failures();
    c->uptime = uring_now() - uring_srv.started;
}

json_t *uring_report_health(void)
{
    struct uring_runtime *rt = uring_runtime_get();
    const char *reason = "";
    int hsm_state = uring_hsm_status(rt->hsm); /* read once: the reply says one thing */
    enum uring_health_state hs = uring_report_health_state(rt, hsm_state, &reason);
    json_t *j = json_pack("{s:s, s:s, s:i, s:b, s:s, s:s, s:s, s:s, s:i, s:b}", "status",
                          report_health_name(hs), "version", COFFER_VERSION_STRING,
                          "protocol", (int)COFFER_PROTO_VERSION, "encryption", rt->encryption,
                          "format", engine_format_name(rt->format), "namespace", rt->ns,
                          "secretName", rt->secret, "keyId", rt->key != NULL ? rt->key->id : "",
                          "workers", uring_srv.nworkers, "echoBaseline", rt->echo);
    json_object_set_new(j, "reason", json_string(reason)); /* NULL j: nothing happens */
    json_object_set_new(j, "stopping", json_boolean(atomic_load(&uring_srv.stopping)));
    uring_hsm_health_add(j, rt->hsm, hsm_state);
    uring_runtime_put(rt);
    return j;
}

json_t *uring_report_stats(void)
{
    struct uring_report_counters c;
    struct uring_runtime *rt = uring_runtime_get();
    json_t *o;

    uring_report_counters_get(&c);
    o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f}",
                  "connectionsActive", (json_int_t)c.conns_active, "connectionsTotal",
                  (json_int_t)c.conns_total, "connectionsDenied", (json_int_t)c.conns_denied,
                  "connectionsBusy", (json_int_t)c.conns_busy, "connectionsTimedOut",
                  (json_int_t)c.conns_timeout, "jobsOk", (json_int_t)c.jobs_ok, "jobsFailed",
                  (json_int_t)c.jobs_failed, "bytesIn", (json_int_t)c.bytes_in, "bytesOut",
                  (json_int_t)c.bytes_out, "keyLoads", (json_int_t)c.key_loads, "helperBatches",
                  (json_int_t)c.helper_batches, "splitBatches", (json_int_t)c.split_batches,
                  "fdJobsSmallBuffers", (json_int_t)c.fd_small, "uptimeSeconds", c.uptime);
    uring_hsm_stats_add(o, rt->hsm); /* fallbacks by reason, HSM counters and cache */
    /* locked memory (issue 10 item 8); NULL o: nothing happens */
    json_object_set_new(o, "secmemLockFailures", json_integer((json_int_t)c.secmem_lock_failures));
    /* tasks each pool ran since start (uring_offload.h): where the work off the rings went */
    json_object_set_new(
        o, "poolTasks",
        json_pack("{s:I, s:I, s:I, s:I}", "cipher",
                  (json_int_t)uring_offload_runs(URING_POOL_CIPHER), "file",
                  (json_int_t)uring_offload_runs(URING_POOL_FILE), "keys",
                  (json_int_t)uring_offload_runs(URING_POOL_KEYS), "hsm",
                  (json_int_t)uring_offload_runs(URING_POOL_HSM)));
    uring_runtime_put(rt);
    return o;
}
