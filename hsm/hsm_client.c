/* SPDX-License-Identifier: Apache-2.0 */
/* HSM threads, their request queue, callers' timed waits, the last-failure record and shutdown. */
#include "hsm_client.h"

#include "coffer_error.h"
#include "hsm_kek.h"
#include "hsm_request.h"
#include "hsm_token.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum req_state { REQ_QUEUED, REQ_RUNNING, REQ_DONE };

struct hsm_request {
    struct hsm_request *next;
    enum req_state state;
    int refs; /* the caller's and the queue's/thread's; under core->mu */
    int abandoned;
    pthread_cond_t done;
    hsm_token_op op;
    void *payload;
    void (*payload_free)(void *);
    int result;
    hsm_status st;
    /* asynchronous requests (hsm_client_submit): answered exactly once, by the HSM thread that
     * ran it or by the watchdog at the deadline (answered, under core->mu) */
    hsm_done_fn cb;
    void *cb_ctx;
    int answered;
    struct timespec deadline; /* CLOCK_MONOTONIC */
    struct hsm_request *anext; /* on core->async, while not answered */
    char what[96];
};

/*
 * What the HSM threads share. It outlives hsm_client_close when a thread is stuck in a PKCS#11
 * call: the last of the owner and the threads to let go frees it.
 */
struct hsm_core {
    pthread_mutex_t mu;
    pthread_cond_t work;
    struct hsm_request *head, *tail;
    int stopping;
    int refs;
    hsm_token *token;
    hsm_status last; /* the last failure */
    void (*log)(void *ctx, const char *line);
    void *log_ctx;
    struct hsm_request *async; /* asynchronous requests not answered yet */
    pthread_cond_t async_cond; /* the watchdog: a new deadline, or stopping */
    unsigned timeout_ms;
    const char *token_label, *module; /* the client's strings, for the timeout sentence */
};

struct hsm_client {
    struct hsm_core *core;
    pthread_t threads[HSM_THREADS_MAX];
    unsigned nthreads;
    pthread_t watchdog;
    int have_watchdog;
    unsigned timeout_ms;
    char *module;
    char *token;
    char *key_label;
    int mechanism;
};

static void core_unref(struct hsm_core *core)
{
    pthread_mutex_lock(&core->mu);
    int last = --core->refs == 0;
    pthread_mutex_unlock(&core->mu);
    if (!last)
        return;
    hsm_token_free(core->token);
    pthread_mutex_destroy(&core->mu);
    pthread_cond_destroy(&core->work);
    pthread_cond_destroy(&core->async_cond);
    free(core);
}

static void core_log(struct hsm_core *core, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void core_log(struct hsm_core *core, const char *fmt, ...)
{
    char line[HSM_STATUS_TEXT_MAX + 64];
    va_list ap;
    if (core->log == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    core->log(core->log_ctx, line);
}

/* Under core->mu. */
static void request_unref_locked(struct hsm_request *rq)
{
    if (--rq->refs > 0)
        return;
    if (rq->payload != NULL && rq->payload_free != NULL)
        rq->payload_free(rq->payload);
    pthread_cond_destroy(&rq->done);
    free(rq);
}

/* Under core->mu. */
static void async_unlink_locked(struct hsm_core *core, struct hsm_request *rq)
{
    for (struct hsm_request **pp = &core->async; *pp != NULL; pp = &(*pp)->anext) {
        if (*pp == rq) {
            *pp = rq->anext;
            break;
        }
    }
    rq->anext = NULL;
}

/* Under core->mu: take a queued request off the queue (it never ran). 1 if it was there. */
static int queue_unlink_locked(struct hsm_core *core, struct hsm_request *rq)
{
    struct hsm_request **pp = &core->head, *prev = NULL;
    while (*pp != NULL && *pp != rq) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (*pp != rq)
        return 0;
    *pp = rq->next;
    if (core->tail == rq)
        core->tail = prev;
    return 1;
}

static int ts_before(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/*
 * The watchdog: answers an asynchronous request that reached its deadline with
 * COFFER_ERR_HSM_TIMEOUT, while its call goes on (or waits) in an HSM thread. It never calls
 * PKCS#11, so closing the client can always join it.
 */
static void *hsm_watchdog_main(void *arg)
{
    struct hsm_core *core = arg;

    pthread_mutex_lock(&core->mu);
    while (!core->stopping || core->async != NULL) {
        struct hsm_request *due = NULL, *first = NULL;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        for (struct hsm_request *rq = core->async; rq != NULL; rq = rq->anext) {
            if (!ts_before(&now, &rq->deadline) || core->stopping) {
                due = rq;
                break;
            }
            if (first == NULL || ts_before(&rq->deadline, &first->deadline))
                first = rq;
        }
        if (due != NULL) {
            hsm_status st;
            int queued = due->state == REQ_QUEUED;
            async_unlink_locked(core, due);
            due->answered = 1;
            due->abandoned = 1;
            if (queued && queue_unlink_locked(core, due))
                due->refs--; /* the queue's: it never runs */
            hsm_status_clear(&st);
            if (core->stopping)
                hsm_status_set(&st, COFFER_ERR_SHUTDOWN, "shutdown", HSM_STATUS_NO_RV,
                               "the HSM client is shutting down");
            else
                hsm_status_set(&st, COFFER_ERR_HSM_TIMEOUT, "timeout", HSM_STATUS_NO_RV,
                               "the HSM did not answer within %u ms (%s, token '%s', module "
                               "'%s'%s)",
                               core->timeout_ms, due->what, core->token_label, core->module,
                               queued ? "; every HSM thread was still busy with earlier calls"
                                      : "");
            if (!core->stopping)
                core->last = st;
            pthread_mutex_unlock(&core->mu);
            if (!core->stopping)
                core_log(core, "pkcs11: %s", st.text);
            due->cb(due->cb_ctx, st.code, &st, NULL);
            pthread_mutex_lock(&core->mu);
            request_unref_locked(due); /* the watchdog's (the caller's) reference */
            continue;
        }
        if (first == NULL)
            pthread_cond_wait(&core->async_cond, &core->mu);
        else
            pthread_cond_timedwait(&core->async_cond, &core->mu, &first->deadline);
    }
    pthread_mutex_unlock(&core->mu);
    core_unref(core);
    return NULL;
}

/* HSM threads of every client that are inside a call to the token right now. */
static atomic_int calls_in_progress;

int hsm_client_calls_in_progress(void)
{
    return atomic_load(&calls_in_progress);
}

static void *hsm_thread_main(void *arg)
{
    struct hsm_core *core = arg;
    hsm_session sess = {CK_INVALID_HANDLE, 0, 0, 0};

    pthread_mutex_lock(&core->mu);
    for (;;) {
        while (!core->stopping && core->head == NULL)
            pthread_cond_wait(&core->work, &core->mu);
        if (core->head == NULL)
            break; /* stopping, and nothing left to do */
        struct hsm_request *rq = core->head;
        core->head = rq->next;
        if (core->head == NULL)
            core->tail = NULL;
        rq->next = NULL;
        rq->state = REQ_RUNNING;
        pthread_mutex_unlock(&core->mu);

        hsm_status st;
        hsm_status_clear(&st);
        atomic_fetch_add(&calls_in_progress, 1);
        int r = hsm_token_run(core->token, &sess, rq->op, rq->payload, &st);
        atomic_fetch_sub(&calls_in_progress, 1);
        if (r < 0 && st.code == 0)
            st.code = r;

        pthread_mutex_lock(&core->mu);
        rq->result = r;
        rq->st = st;
        rq->state = REQ_DONE;
        if (r < 0)
            core->last = st;
        int late = rq->abandoned && r < 0;
        if (rq->cb != NULL && !rq->answered) {
            async_unlink_locked(core, rq);
            rq->answered = 1;
            pthread_mutex_unlock(&core->mu);
            rq->cb(rq->cb_ctx, r, &st, rq->payload); /* the payload is freed below */
            pthread_mutex_lock(&core->mu);
            request_unref_locked(rq); /* the answer's reference */
        }
        pthread_mutex_unlock(&core->mu);
        /* Signalled without the mutex, so the caller does not wake up only to wait for it; our
         * reference keeps rq alive until then. */
        pthread_cond_signal(&rq->done);
        if (late)
            core_log(core, "pkcs11: a call that had timed out finished late: %s", st.text);
        pthread_mutex_lock(&core->mu);
        request_unref_locked(rq);
    }
    pthread_mutex_unlock(&core->mu);
    hsm_token_session_close(core->token, &sess);
    core_unref(core);
    return NULL;
}

static char *dup_opt(const char *s, int *fail)
{
    char *d;
    if (s == NULL)
        return NULL;
    if ((d = strdup(s)) == NULL)
        *fail = 1;
    return d;
}

int hsm_client_open(hsm_client **out, const hsm_client_config *cfg, hsm_status *st)
{
    hsm_status local;
    hsm_client *c = NULL;
    struct hsm_core *core = NULL;
    int r = COFFER_ERR_NOMEM, fail = 0;

    if (st == NULL)
        st = &local;
    hsm_status_clear(st);
    *out = NULL;
    if (cfg->threads > HSM_THREADS_MAX)
        return hsm_status_set(st, COFFER_ERR_CONFIG, "config", HSM_STATUS_NO_RV,
                              "at most %d HSM threads", HSM_THREADS_MAX);
    if (cfg->key_label != NULL &&
        (r = hsm_token_label_check("key", cfg->key_label, HSM_KEY_LABEL_MAX, st)) < 0)
        return r;
    if ((c = calloc(1, sizeof(*c))) == NULL || (core = calloc(1, sizeof(*core))) == NULL)
        goto nomem;
    c->module = dup_opt(cfg->module, &fail);
    c->token = dup_opt(cfg->token, &fail);
    c->key_label = dup_opt(cfg->key_label, &fail);
    if (fail)
        goto nomem;
    c->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : HSM_TIMEOUT_DEFAULT_MS;
    if (cfg->mechanism < 0 || cfg->mechanism >= HSM_MECH_COUNT) {
        r = hsm_status_set(st, COFFER_ERR_CONFIG, "config", HSM_STATUS_NO_RV,
                           "unknown wrapping mechanism %d", cfg->mechanism);
        goto fail;
    }
    c->mechanism = cfg->mechanism;
    hsm_token_config tc = {cfg->module,  cfg->token,     cfg->pin,         cfg->log,
                           cfg->log_ctx, cfg->mechanism, cfg->max_sessions};
    if ((r = hsm_token_new(&core->token, &tc, st)) < 0)
        goto fail;
    pthread_mutex_init(&core->mu, NULL);
    pthread_cond_init(&core->work, NULL);
    {
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&core->async_cond, &ca);
        pthread_condattr_destroy(&ca);
    }
    core->timeout_ms = c->timeout_ms;
    core->token_label = c->token != NULL ? c->token : "";
    core->module = c->module != NULL ? c->module : "";
    core->log = cfg->log;
    core->log_ctx = cfg->log_ctx;
    core->refs = 1;
    c->core = core;
    unsigned want = cfg->threads ? cfg->threads : HSM_THREADS_DEFAULT;
    for (unsigned i = 0; i < want; i++) {
        pthread_mutex_lock(&core->mu);
        core->refs++;
        pthread_mutex_unlock(&core->mu);
        if (pthread_create(&c->threads[i], NULL, hsm_thread_main, core) != 0) {
            pthread_mutex_lock(&core->mu);
            core->refs--;
            pthread_mutex_unlock(&core->mu);
            break;
        }
        c->nthreads++;
    }
    if (c->nthreads > 0) {
        pthread_mutex_lock(&core->mu);
        core->refs++;
        pthread_mutex_unlock(&core->mu);
        if (pthread_create(&c->watchdog, NULL, hsm_watchdog_main, core) == 0) {
            c->have_watchdog = 1;
        } else {
            pthread_mutex_lock(&core->mu);
            core->refs--;
            pthread_mutex_unlock(&core->mu);
            hsm_client_close(c);
            return hsm_status_set(st, COFFER_ERR_NOMEM, "config", HSM_STATUS_NO_RV,
                                  "could not start the HSM watchdog thread");
        }
    }
    if (c->nthreads == 0) {
        hsm_client_close(c);
        return hsm_status_set(st, COFFER_ERR_NOMEM, "config", HSM_STATUS_NO_RV,
                              "could not start an HSM thread");
    }
    *out = c;
    return 0;
nomem:
    r = hsm_status_set(st, COFFER_ERR_NOMEM, "config", HSM_STATUS_NO_RV, "out of memory");
fail:
    if (c != NULL) {
        free(c->module);
        free(c->token);
        free(c->key_label);
    }
    free(core);
    free(c);
    return r;
}

void hsm_client_close(hsm_client *c)
{
    struct timespec deadline;

    if (c == NULL)
        return;
    struct hsm_core *core = c->core;
    pthread_mutex_lock(&core->mu);
    core->stopping = 1;
    pthread_cond_broadcast(&core->work);
    pthread_cond_broadcast(&core->async_cond);
    pthread_mutex_unlock(&core->mu);
    if (c->have_watchdog)
        pthread_join(c->watchdog, NULL); /* it answers what is left with SHUTDOWN; never stuck */

    clock_gettime(CLOCK_REALTIME, &deadline); /* pthread_timedjoin_np measures CLOCK_REALTIME */
    deadline.tv_sec += c->timeout_ms / 1000;
    deadline.tv_nsec += (long)(c->timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    for (unsigned i = 0; i < c->nthreads; i++) {
        if (pthread_timedjoin_np(c->threads[i], NULL, &deadline) != 0) {
            core_log(core, "pkcs11: an HSM thread is stuck in a PKCS#11 call; leaving it behind");
            pthread_detach(c->threads[i]);
        }
    }
    core_unref(core);
    free(c->module);
    free(c->token);
    free(c->key_label);
    free(c);
}

static void deadline_after(struct timespec *ts, unsigned ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

int hsm_client_call(hsm_client *c, const char *what, hsm_token_op op, void *payload,
                    void (*payload_free)(void *), hsm_status *st)
{
    struct hsm_core *core = c->core;
    struct hsm_request *rq;
    pthread_condattr_t ca;
    struct timespec deadline;
    int r;

    hsm_status_clear(st);
    if ((rq = calloc(1, sizeof(*rq))) == NULL)
        return hsm_status_set(st, COFFER_ERR_NOMEM, "config", HSM_STATUS_NO_RV, "out of memory");
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&rq->done, &ca);
    pthread_condattr_destroy(&ca);
    rq->op = op;
    rq->payload = payload;
    rq->payload_free = payload_free;
    rq->refs = 2;
    rq->state = REQ_QUEUED;
    deadline_after(&deadline, c->timeout_ms);

    pthread_mutex_lock(&core->mu);
    if (core->stopping) {
        pthread_mutex_unlock(&core->mu);
        pthread_cond_destroy(&rq->done);
        free(rq);
        return hsm_status_set(st, COFFER_ERR_SHUTDOWN, "shutdown", HSM_STATUS_NO_RV,
                              "the HSM client is shutting down");
    }
    if (core->tail != NULL)
        core->tail->next = rq;
    else
        core->head = rq;
    core->tail = rq;
    pthread_mutex_unlock(&core->mu);
    pthread_cond_signal(&core->work); /* outside the mutex: the thread need not wait for it */
    pthread_mutex_lock(&core->mu);
    while (rq->state != REQ_DONE) {
        int e = pthread_cond_timedwait(&rq->done, &core->mu, &deadline);
        if (e == ETIMEDOUT && rq->state != REQ_DONE)
            break;
    }
    if (rq->state == REQ_DONE) {
        r = rq->result;
        *st = rq->st;
        rq->payload = NULL; /* the caller's again */
        request_unref_locked(rq);
        pthread_mutex_unlock(&core->mu);
        return r;
    }
    /* Timed out: leave the payload to the request, drop it from the queue if it never ran. */
    if (rq->state == REQ_QUEUED) {
        struct hsm_request **pp = &core->head, *prev = NULL;
        while (*pp != NULL && *pp != rq) {
            prev = *pp;
            pp = &(*pp)->next;
        }
        if (*pp == rq) {
            *pp = rq->next;
            if (core->tail == rq)
                core->tail = prev;
            rq->refs--; /* the queue's reference */
        }
    }
    rq->abandoned = 1;
    r = hsm_status_set(st, COFFER_ERR_HSM_TIMEOUT, "timeout", HSM_STATUS_NO_RV,
                       "the HSM did not answer within %u ms (%s, token '%s', module '%s'%s)",
                       c->timeout_ms, what, c->token != NULL ? c->token : "", c->module,
                       rq->state == REQ_QUEUED ? "; every HSM thread was still busy with earlier "
                                                 "calls"
                                               : "");
    core->last = *st;
    request_unref_locked(rq);
    pthread_mutex_unlock(&core->mu);
    core_log(core, "pkcs11: %s", st->text);
    return r;
}

int hsm_client_submit(hsm_client *c, const char *what, hsm_token_op op, void *payload,
                      void (*payload_free)(void *), hsm_done_fn done, void *ctx)
{
    struct hsm_core *core = c->core;
    struct hsm_request *rq;

    if ((rq = calloc(1, sizeof(*rq))) == NULL)
        return COFFER_ERR_NOMEM;
    pthread_cond_init(&rq->done, NULL); /* unused by asynchronous requests; destroyed alike */
    rq->op = op;
    rq->payload = payload;
    rq->payload_free = payload_free;
    rq->refs = 2; /* the queue's/thread's, and the answer's (dropped by whoever answers last) */
    rq->state = REQ_QUEUED;
    rq->cb = done;
    rq->cb_ctx = ctx;
    snprintf(rq->what, sizeof(rq->what), "%s", what);
    deadline_after(&rq->deadline, c->timeout_ms);

    pthread_mutex_lock(&core->mu);
    if (core->stopping) {
        pthread_mutex_unlock(&core->mu);
        pthread_cond_destroy(&rq->done);
        free(rq);
        return COFFER_ERR_SHUTDOWN;
    }
    if (core->tail != NULL)
        core->tail->next = rq;
    else
        core->head = rq;
    core->tail = rq;
    rq->anext = core->async;
    core->async = rq;
    pthread_cond_signal(&core->async_cond);
    pthread_mutex_unlock(&core->mu);
    pthread_cond_signal(&core->work);
    return 0;
}

static int op_connect(hsm_token *t, hsm_session *s, void *arg, hsm_status *st)
{
    const char *label = arg;
    CK_OBJECT_HANDLE key;
    if (label == NULL)
        return 0;
    return hsm_token_key_find(t, s, label, &key, st);
}

int hsm_client_connect(hsm_client *c, hsm_status *st)
{
    hsm_status local;
    char *label = NULL;
    int r;

    if (st == NULL)
        st = &local;
    if (c->key_label != NULL && (label = strdup(c->key_label)) == NULL)
        return hsm_status_set(st, COFFER_ERR_NOMEM, "config", HSM_STATUS_NO_RV, "out of memory");
    r = hsm_client_call(c, "connect", op_connect, label, free, st);
    if (r != COFFER_ERR_HSM_TIMEOUT)
        free(label);
    return r;
}

struct connect_async {
    void (*done)(void *ctx, int r, const hsm_status *st);
    void *ctx;
};

static void connect_done(void *ctx, int r, const hsm_status *st, void *payload)
{
    struct connect_async *a = ctx;
    (void)payload;
    a->done(a->ctx, r, st);
    free(a);
}

int hsm_client_connect_submit(hsm_client *c, void (*done)(void *ctx, int r, const hsm_status *st),
                              void *ctx)
{
    struct connect_async *a = calloc(1, sizeof(*a));
    char *label = NULL;
    int r = COFFER_ERR_NOMEM;

    if (a == NULL || (c->key_label != NULL && (label = strdup(c->key_label)) == NULL))
        goto fail;
    a->done = done;
    a->ctx = ctx;
    if ((r = hsm_client_submit(c, "connect", op_connect, label, free, connect_done, a)) == 0)
        return 0;
fail:
    free(label);
    free(a);
    return r;
}

void hsm_client_last_error(hsm_client *c, hsm_status *out)
{
    pthread_mutex_lock(&c->core->mu);
    *out = c->core->last;
    pthread_mutex_unlock(&c->core->mu);
}

const char *hsm_client_module(const hsm_client *c)
{
    return c->module;
}

const char *hsm_client_token(const hsm_client *c)
{
    return c->token;
}

const char *hsm_client_key_label(const hsm_client *c)
{
    return c->key_label;
}

unsigned hsm_client_timeout_ms(const hsm_client *c)
{
    return c->timeout_ms;
}

int hsm_client_mechanism(const hsm_client *c)
{
    return c->mechanism;
}
