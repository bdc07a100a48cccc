/* SPDX-License-Identifier: Apache-2.0 */
/* The Kubernetes-API Secret retriever: GET a Secret over verified HTTPS (libcurl), take
 * encryptionKey. */
#ifndef KUBE_CLIENT_H
#define KUBE_CLIENT_H

#include "engine_key.h"
#include "kube_config.h"

/* Bounds of one Secret fetch. */
struct kube_options {
    long connect_timeout_ms; /* one TCP+TLS connection attempt (default 5000) */
    long timeout_ms;         /* the whole fetch, retries and their waits included (default 10000) */
    int max_attempts;        /* requests at most, the first included (default 5) */
};

#define KUBE_CONNECT_TIMEOUT_MS_DEFAULT 5000
#define KUBE_TIMEOUT_MS_DEFAULT         10000
#define KUBE_MAX_ATTEMPTS_DEFAULT       5

/* What one fetch did, for logs and counters (never key material). */
struct kube_fetch_info {
    int attempts;    /* HTTP requests sent or tried */
    int http_status; /* the last answer's status, 0 when none came */
    double seconds;  /* wall time of the whole fetch */
};

/*
 * Initialise libcurl once per process, before any thread calls kube_secret_get (it is not
 * thread-safe). Returns 0 or COFFER_ERR_INTERNAL.
 */
int kube_global_init(void) __attribute__((warn_unused_result));

/*
 * GET {server}/api/v1/namespaces/{ns}/secrets/{name} and apply `rule` to the base64-decoded
 * data.encryptionKey, exactly as engine_secret_load does with a file's content.
 *
 * Blocks for at most o->timeout_ms (never on an io_uring thread); thread-safe: every call has its
 * own connection, several may run at once on one target. Names are checked as DNS-1123 before
 * anything is sent. TLS is always verified against t's CA and nothing else; redirects are not
 * followed. 429 and 5xx answers and failed connections are retried with exponential backoff (or
 * the answer's Retry-After) while time remains; 401, 403 and 404 are not.
 *
 * Returns 0 and *out (locked memory; the caller frees it with engine_key_free), or a code and one
 * sentence in detail saying what to do: SECRET_NAME, KUBE_UNAUTHORIZED (names the credential),
 * KUBE_FORBIDDEN (names the missing RBAC rule), KEY_MISSING (404, or no encryptionKey field),
 * KUBE_TLS, KUBE_TIMEOUT, KUBE_API (unreachable, 429/5xx until the time ran out, a malformed
 * answer), KEY_READ (the token file), KEY_SIZE/KEY_FORM (the rule). info (may be NULL) says what
 * happened. The response body is held in locked memory and wiped; the key's base64 text is wiped
 * inside the parsed JSON before it is freed.
 */
int kube_secret_get(const struct kube_target *t, const struct kube_options *o, const char *ns,
                    const char *name, engine_key_rule rule, engine_key **out,
                    struct kube_fetch_info *info, char *detail, size_t detaillen)
    __attribute__((warn_unused_result));

#endif
