/* SPDX-License-Identifier: Apache-2.0 */
/* cofferd's health state (ok, degraded, unavailable) as HEALTH, `coffer health` and /metrics say.
 */
#ifndef URING_HEALTH_H
#define URING_HEALTH_H

struct uring_runtime;

/* The values are `coffer health`'s exit codes. */
enum uring_health_state {
    URING_HEALTH_OK = 0,          /* new backups and restores are served as configured */
    URING_HEALTH_DEGRADED = 1,    /* the HSM cannot serve; the Secret covers new backups */
    URING_HEALTH_UNAVAILABLE = 2, /* new backups cannot be served at all (or cofferd stops) */
};

/*
 * The state of the daemon with runtime rt (uring_runtime_get) and hsm_state, the value of
 * uring_hsm_status(rt->hsm) that the caller read once and also reports (so that one HEALTH reply
 * or one scrape never says "ok" beside an HSM it shows unavailable), and in *reason a static
 * snake_case word saying why ("" when ok): stopping, no_secret, hsm_unavailable_fallback_secret,
 * hsm_unavailable_restores, hsm_unavailable_fallback_none, hsm_unavailable_no_secret. Any thread;
 * reads the HSM status under its lock (microseconds), never waits for the HSM itself.
 */
enum uring_health_state uring_health_get(const struct uring_runtime *rt, int hsm_state,
                                         const char **reason);

/* "ok", "degraded" or "unavailable". */
const char *uring_health_name(enum uring_health_state s);

#endif
