/* SPDX-License-Identifier: Apache-2.0 */
/* cofferd's Prometheus metrics: counters the daemon's threads bump, and the /metrics listener. */
#ifndef URING_METRICS_H
#define URING_METRICS_H

#include "engine_stream.h"

#include <stddef.h>
#include <stdint.h>

/*
 * Counting. Every uring_metrics_count_* function may be called from any thread at any time
 * (also before the listener starts and after it stopped): each is a few relaxed atomic additions
 * on static counters, with no lock, no allocation and no system call, so ring threads call them
 * on their hot path. They never fail. Counters only grow (until the process exits); a scrape
 * reads each with a relaxed load, so it sees every counter at some recent moment, not all of
 * them at one instant (a job's bytes may show before its result does).
 */

/* Why a connection was refused before a connection object existed (uring_worker.c). */
enum uring_metrics_refusal {
    URING_REFUSED_NOT_ALLOWED = 0, /* SO_PEERCRED uid/gid not in --allow-uid/--allow-gid */
    URING_REFUSED_BUSY,            /* --max-connections reached */
    URING_REFUSED_SHUTDOWN,        /* cofferd is stopping */
    URING_REFUSED_NO_PEERCRED,     /* SO_PEERCRED failed */
    URING_REFUSED_NOMEM,           /* no memory for the connection */
    URING_REFUSED_N,
};

/* How the Secret loader answered one key request (uring_keys.c). */
enum uring_metrics_secret {
    URING_SECRET_CACHE_HIT = 0, /* served from its short-lived cache */
    URING_SECRET_LOADED,        /* read from the Secret volume */
    URING_SECRET_FAILED,        /* the Secret could not be read or its key was refused */
    URING_SECRET_N,
};

/*
 * A job ended: op is PROTO_OP_ENCRYPT or PROTO_OP_DECRYPT, ok 1 when its RESULT was sent (0 when
 * it failed or its connection went away), bytes as far as the job got, seconds since it started.
 */
void uring_metrics_count_job(int op, coffer_format format, int ok, uint64_t bytes_in,
                             uint64_t bytes_out, double seconds);
/* An ERROR frame with this (negative) coffer code ended a job or a connection. */
void uring_metrics_count_error(int code);
void uring_metrics_count_refused(enum uring_metrics_refusal why);
void uring_metrics_count_secret(enum uring_metrics_secret what);

/*
 * The listener (--metrics-listen). addr is "HOST:PORT" ("[v6]:PORT"; HOST may be empty for every
 * interface; PORT 0 picks a free one) or a Unix socket path (starting with '/' or '.'), which is
 * created mode 0660 like the main socket. Binds it, then serves GET /metrics with libmicrohttpd
 * on one thread of its own, at most URING_METRICS_CONNS connections at once, each dropped after
 * URING_METRICS_TIMEOUT_S idle seconds. Logs `metrics_listening` with the bound address and port.
 * Call on the main thread. Returns 0, or COFFER_ERR_CONFIG (an address it cannot parse or bind)
 * or COFFER_ERR_INTERNAL (libmicrohttpd did not start), with one sentence in err.
 */
#define URING_METRICS_CONNS     16
#define URING_METRICS_TIMEOUT_S 10
int uring_metrics_listen_start(const char *addr, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/* Stop serving, join the thread, close the socket (and unlink a Unix path). Main thread; safe
 * when the listener never started. */
void uring_metrics_listen_stop(void);

/* 1 when addr is a valid --metrics-listen value (checked at config time, nothing is bound). */
int uring_metrics_addr_valid(const char *addr);

#endif
