/* SPDX-License-Identifier: Apache-2.0 */
/* Deriving cofferd's health state from its runtime and the HSM's last known status. */
#include "uring_health.h"

#include "uring_hsm.h"
#include "uring_server.h"

enum uring_health_state uring_health_get(const struct uring_runtime *rt, int hsm_state,
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

const char *uring_health_name(enum uring_health_state s)
{
    return s == URING_HEALTH_OK ? "ok" : (s == URING_HEALTH_DEGRADED ? "degraded" : "unavailable");
}
