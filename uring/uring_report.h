/* SPDX-License-Identifier: Apache-2.0 */
/* cofferd's reports: the HEALTH and STATS replies and the numbers /metrics shares with them. */
#ifndef URING_REPORT_H
#define URING_REPORT_H

#include <jansson.h>
#include <stdint.h>

struct uring_runtime;

/* The health state; the values are `coffer health`'s exit codes. */
enum uring_health_state {
    URING_HEALTH_OK = 0,          /* new backups and restores are served as configured */
    URING_HEALTH_DEGRADED = 1,    /* the HSM cannot serve; the Secret covers new backups */
    URING_HEALTH_UNAVAILABLE = 2, /* new backups cannot be served at all (or cofferd stops) */
};

/*
 * The health of the daemon with runtime rt (a reference the caller holds) and hsm_state, the
 * value of uring_hsm_status(rt->hsm) that the caller read once and also reports (so that one
 * HEALTH reply or one scrape never says "ok" beside an HSM it shows unavailable). *reason gets
 * a static snake_case word saying why ("" when ok): stopping, no_secret,
 * hsm_unavailable_fallback_secret, hsm_unavailable_restores, hsm_unavailable_fallback_none,
 * hsm_unavailable_no_secret. Any thread; never fails, never blocks (reads atomics and the HSM's
 * configuration, never waits for the HSM).
 */
enum uring_health_state uring_report_health_state(const struct uring_runtime *rt, int hsm_state,
                                                  const char **reason);

/*
 * The daemon's own counters, each read once with an atomic load: STATS and /metrics print these
 * same numbers. A snapshot of recent moments, not of one instant (see docs/observability.md).
 */
struct uring_report_counters {
    uint64_t conns_active, conns_total, conns_denied, conns_busy, conns_timeout;
    uint64_t jobs_ok, jobs_failed, bytes_in, bytes_out, key_loads;
    uint64_t helper_batches, split_batches, fd_small;
    uint64_t secmem_lock_failures; /* engine_secmem_lock_failures() */
    double uptime;                 /* seconds since cofferd started */
};

/* Fill c. Any thread; no lock, no allocation, never fails. */
void uring_report_counters_get(struct uring_report_counters *c);

/*
 * The HEALTH reply: status, version, protocol, encryption, format, namespace, secretName, keyId,
 * workers, echoBaseline, reason, stopping and, with an HSM, its object (docs/protocol.md). The
 * STATS reply: the counters above under their protocol names, then the HSM's (fallbacks by
 * reason, data keys, cache). Each returns a new JSON object the caller owns (json_decref), or
 * NULL when out of memory. Any thread, ring threads included: each takes a runtime reference
 * and the HSM's status and cache locks for microseconds, and never waits for the HSM or I/O.
 */
json_t *uring_report_health(void);
json_t *uring_report_stats(void);

#endif
