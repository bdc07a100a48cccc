/* SPDX-License-Identifier: Apache-2.0 */
/* The pkcs11 retriever inside cofferd: settings, shared clients, per-job requests through hsm/'s
 * asynchronous submit, HEALTH/STATS counters. */
#include "uring_hsm.h"

#include "coffer_error.h"
#include "engine_metadata.h"
#include "engine_stream.h"
#include "hsm_cache.h"
#include "hsm_fallback.h"
#include "hsm_kek.h"
#include "hsm_retriever.h"
#include "uring_keys.h"
#include "uring_log.h"
#include "uring_offload.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>


enum { HSM_OP_PROBE = 1, HSM_OP_BACKUP = 2, HSM_OP_RESTORE = 3 };

struct uring_hsm {
    atomic_int refs;
    struct uring_hsm *next;               /* on the live list (under q_lock) */
    struct uring_offload_task close_task; /* the last put closes it on the HSM pool */
    struct uring_hsm_config cfg;
    hsm_client *client;
    hsm_retriever *retriever;
    pthread_mutex_t st_lock;
    int state;          /* 0 not tried yet, 1 working, -1 failing (under st_lock) */
    hsm_status last;    /* the last failure (under st_lock) */
    char mechanism[48]; /* the negotiated one, once known (under st_lock) */
    int cache_on;       /* the data-key cache may hold a current key */
    /* the metadata text of the current data key, built once per key (under meta_lock) */
    pthread_mutex_t meta_lock;
    hsm_wrapped meta_w;
    char *meta_text;
    /* a probe of a failing HSM is queued or running (probe_queue) */
    atomic_int probing;
};

struct uring_hsm_job {
    int op;
    int used; /* backup: encrypts under a data key of the retriever, accounted at the end */
    char key_id[ENGINE_KEY_ID_LEN + 1];
    hsm_metadata_config mc; /* restore: what the backup's metadata says */
};

struct uring_hsm_req {
    struct uring_keyreq kr; /* first: the worker frees the request with free(&kr) */
    int op;
    int fell_back;
    struct uring_hsm *h; /* a reference, dropped by the loader once served */
    hsm_status st;
    hsm_metadata_config mc;        /* restore: the backup's; fallback: what was tried */
    char meta[URING_HSM_META_MAX]; /* backup: the pkcs11 status metadata */
};

static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER; /* the live list */
static struct uring_hsm *live;
static atomic_llong q_last_sweep; /* CLOCK_MONOTONIC seconds of the last sweep */
static atomic_int q_started;      /* uring_hsm_start ran and uring_hsm_stop did not */

/* Counters for STATS; fallbacks by reason (hsm_fallback.h). */
#define REASONS URING_HSM_REASONS
_Static_assert(URING_HSM_REASONS == HSM_FALLBACK_REASONS, "one reason per counter");
static atomic_ullong n_fallbacks, n_fallback_by[REASONS], n_backups, n_backups_failed, n_restores,
    n_restores_failed;

static struct uring_hsm_req *req_of(struct uring_keyreq *req)
{
    return (struct uring_hsm_req *)(void *)req; /* kr is the first member */
}

#define is_hsm_code hsm_fallback_is_hsm_code

/* ---- settings ---- */

void uring_hsm_config_defaults(struct uring_hsm_config *h)
{
    memset(h, 0, sizeof(*h));
    h->fallback = URING_HSM_FALLBACK_SECRET;
    h->timeout_ms = HSM_TIMEOUT_DEFAULT_MS;
    h->cache_max_age_s = HSM_CACHE_DEFAULT_AGE_S;
    h->cache_max_uses = HSM_CACHE_DEFAULT_USES;
    h->cache_max_bytes = HSM_CACHE_DEFAULT_BYTES;
    h->cache_max_entries = HSM_CACHE_DEFAULT_ENTRIES;
}


int uring_hsm_config_check(const struct uring_hsm_config *h, char *err, size_t errlen)
{
    if (h->module[0] == '\0') {
        if (h->token[0] == '\0' && h->key[0] == '\0' && h->pin_file[0] == '\0')
            return 0;
        snprintf(err, errlen,
                 "--hsm-token, --hsm-key and --hsm-pin-file need --hsm-module (the PKCS#11 "
                 "module: a path, or a p11-kit name such as softhsm2)");
        return COFFER_ERR_CONFIG;
    }
    if (h->token[0] == '\0') {
        snprintf(err, errlen, "--hsm-module needs --hsm-token (the label of the HSM token)");
        return COFFER_ERR_CONFIG;
    }
    return 0;
}

static int config_equal(const struct uring_hsm_config *a, const struct uring_hsm_config *b)
{
    return strcmp(a->module, b->module) == 0 && strcmp(a->token, b->token) == 0 &&
           strcmp(a->key, b->key) == 0 && strcmp(a->pin_file, b->pin_file) == 0 &&
           a->fallback == b->fallback && a->timeout_ms == b->timeout_ms &&
           a->cache_max_age_s == b->cache_max_age_s && a->cache_max_uses == b->cache_max_uses &&
           a->cache_max_bytes == b->cache_max_bytes &&
           a->cache_max_entries == b->cache_max_entries && a->mechanism == b->mechanism &&
           a->max_sessions == b->max_sessions;
}

/* ---- shared clients ---- */

/* The hsm library's operator lines: connects are news, everything else a warning. */
static void hsm_log_line(void *ctx, const char *line)
{
    char q[HSM_STATUS_TEXT_MAX * 2];
    (void)ctx;
    uring_log(strstr(line, ": connected") != NULL || strstr(line, ": loaded") != NULL
                  ? URING_LOG_INFO
                  : URING_LOG_WARN,
              "hsm", "detail=%s", uring_log_quote(line, q, sizeof(q)));
}

/* Only the closing may wait (for a stuck PKCS#11 call): never on a ring thread. */
static void hsm_free(struct uring_hsm *h)
{
    hsm_retriever_free(h->retriever);
    hsm_client_close(h->client);
    pthread_mutex_destroy(&h->st_lock);
    pthread_mutex_destroy(&h->meta_lock);
    free(h->meta_text);
    free(h);
}

static void hsm_req_drop(struct uring_offload_task *t);
static int hsm_start_req(struct uring_hsm_req *hr);

/* Hand an HSM request to the hsm library (its callback answers); a probe is freed once answered.
 * 0 or the refusal (the request is still the caller's). */
static int hsm_queue(struct uring_hsm_req *hr)
{
    hr->kr.task.drop = hsm_req_drop;
    return hsm_start_req(hr);
}

static struct uring_hsm *hsm_ref(struct uring_hsm *h)
{
    atomic_fetch_add(&h->refs, 1);
    return h;
}

/* Queue a probe of h unless one is out (a failed restore, or a failing HSM). Any thread. */
static void probe_queue(struct uring_hsm *h)
{
    struct uring_hsm_req *probe;
    int expect = 0;

    if (atomic_load(&h->refs) <= 0 || !atomic_compare_exchange_strong(&h->probing, &expect, 1))
        return;
    if ((probe = calloc(1, sizeof(*probe))) == NULL) {
        atomic_store(&h->probing, 0);
        return;
    }
    probe->op = HSM_OP_PROBE;
    probe->h = hsm_ref(h);
    if (hsm_queue(probe) != 0)
        hsm_req_drop(&probe->kr.task);
}

int uring_hsm_acquire(const struct uring_hsm_config *cfg, struct uring_hsm **out, char *detail,
                      size_t detaillen)
{
    int r = COFFER_ERR_NOMEM;
    struct uring_hsm *h = NULL;
    struct uring_hsm_req *probe = NULL;
    hsm_cache_limits lim;
    hsm_status st;
    hsm_client_config cc;

    *out = NULL;
    detail[0] = '\0';
    if (cfg->module[0] == '\0')
        return 0;
    pthread_mutex_lock(&q_lock);
    for (h = live; h != NULL; h = h->next) {
        int n = atomic_load(&h->refs);
        if (!config_equal(&h->cfg, cfg))
            continue;
        /* one whose last reference is going away is not revived */
        while (n > 0 && !atomic_compare_exchange_weak(&h->refs, &n, n + 1))
            ;
        if (n > 0)
            break;
    }
    pthread_mutex_unlock(&q_lock);
    if (h != NULL) {
        *out = h;
        return 0;
    }
    if ((h = calloc(1, sizeof(*h))) == NULL || (probe = calloc(1, sizeof(*probe))) == NULL)
        goto fail;
    pthread_mutex_init(&h->st_lock, NULL);
    pthread_mutex_init(&h->meta_lock, NULL);
    atomic_init(&h->refs, 1);
    h->cfg = *cfg;
    memset(&cc, 0, sizeof(cc));
    cc.module = cfg->module;
    cc.token = cfg->token;
    cc.key_label = cfg->key[0] != '\0' ? cfg->key : NULL;
    cc.pin.file = cfg->pin_file[0] != '\0' ? cfg->pin_file : NULL;
    cc.pin.env = NULL; /* COFFER_HSM_PIN */
    cc.timeout_ms = cfg->timeout_ms;
    cc.log = hsm_log_line;
    cc.mechanism = cfg->mechanism;
    cc.max_sessions = cfg->max_sessions;
    if ((r = hsm_client_open(&h->client, &cc, &st)) != 0) {
        snprintf(detail, detaillen, "%s", st.text[0] != '\0' ? st.text : coffer_strerror(r));
        goto fail;
    }
    hsm_cache_limits_default(&lim);
    lim.max_age_s = cfg->cache_max_age_s;
    lim.max_uses = cfg->cache_max_uses;
    lim.max_bytes = cfg->cache_max_bytes;
    lim.max_entries = (size_t)cfg->cache_max_entries;
    if (cfg->cache_max_age_s == 0 || cfg->cache_max_uses == 0 || cfg->cache_max_bytes == 0)
        lim.max_age_s = 0; /* a bound of zero allows no reuse: the cache is off */
    h->cache_on = lim.max_age_s != 0;
    if ((r = hsm_retriever_new(&h->retriever, h->client, &lim, NULL, NULL)) != 0) {
        snprintf(detail, detaillen, "the HSM data-key cache: %s", coffer_strerror(r));
        goto fail;
    }
    uring_log(URING_LOG_INFO, "hsm_configured",
              "module=%s token=%s key=%s mechanism=%s max_sessions=%u fallback=%s timeout_ms=%u "
              "cache_max_age_s=%llu cache_max_uses=%llu cache_max_bytes=%llu pin=%s",
              cfg->module, cfg->token, cfg->key[0] != '\0' ? cfg->key : "-(restores_only)",
              hsm_mech_option_name(cfg->mechanism), cfg->max_sessions,
              cfg->fallback == URING_HSM_FALLBACK_NONE ? "none" : "secret", cfg->timeout_ms,
              (unsigned long long)lim.max_age_s, (unsigned long long)lim.max_uses,
              (unsigned long long)lim.max_bytes,
              cfg->pin_file[0] != '\0' ? "file" : "env:" HSM_PIN_ENV_DEF);
    /* connect in the background, so that the log says early whether the HSM works */
    probe->op = HSM_OP_PROBE;
    probe->h = hsm_ref(h);
    pthread_mutex_lock(&q_lock);
    h->next = live;
    live = h;
    pthread_mutex_unlock(&q_lock);
    if (hsm_queue(probe) != 0) /* before uring_hsm_start (the first runtime): probe later */
        hsm_req_drop(&probe->kr.task);
    *out = h;
    return 0;
fail:
    free(probe);
    if (h != NULL) {
        hsm_retriever_free(h->retriever);
        hsm_client_close(h->client);
        pthread_mutex_destroy(&h->st_lock);
        pthread_mutex_destroy(&h->meta_lock);
        free(h);
    }
    return r;
}

static void hsm_close_run(struct uring_offload_task *t)
{
    hsm_free((struct uring_hsm *)t->ctx);
}

static void hsm_close_drop(struct uring_offload_task *t)
{
    hsm_free((struct uring_hsm *)t->ctx); /* it never ran: shutdown, on the main thread */
}

void uring_hsm_put(struct uring_hsm *h)
{
    if (h == NULL || atomic_fetch_sub(&h->refs, 1) != 1)
        return;
    pthread_mutex_lock(&q_lock);
    for (struct uring_hsm **p = &live; *p != NULL; p = &(*p)->next) {
        if (*p == h) {
            *p = h->next;
            break;
        }
    }
    pthread_mutex_unlock(&q_lock);
    /* closing may wait for a stuck PKCS#11 call: on the HSM pool, never on a ring thread */
    memset(&h->close_task, 0, sizeof(h->close_task));
    h->close_task.run = hsm_close_run;
    h->close_task.drop = hsm_close_drop;
    h->close_task.ctx = h;
    if (!atomic_load(&q_started) || uring_offload_submit(URING_POOL_HSM, &h->close_task) != 0)
        hsm_free(h); /* no pool (start-up or shutdown): the main thread closes it */
}

int uring_hsm_backups(const struct uring_hsm *h)
{
    return h != NULL && h->cfg.key[0] != '\0';
}

int uring_hsm_secret_optional(const struct uring_hsm *h)
{
    return uring_hsm_backups(h) && h->cfg.fallback == URING_HSM_FALLBACK_NONE;
}

/* ---- requests: answered by hsm/ callbacks ---- */

/*
 * Whether a restore under the configured token shows that the HSM works as configured: with a
 * key label, only when the backup used that key (another key proves nothing about it). A failed
 * restore never marks the HSM down by itself, since a forged or damaged wrapped key fails too:
 * it asks for a probe (probe_queue), which decides.
 */
static int restore_proves(const struct uring_hsm *h, const hsm_metadata_config *mc)
{
    return mc != NULL && strcmp(mc->token, h->cfg.token) == 0 &&
           (!uring_hsm_backups(h) || strcmp(mc->wrapped.key_label, h->cfg.key) == 0);
}

/*
 * Remember whether the HSM works, and log when that changes. What counts is what the HSM is
 * configured for: new backups (probes and backups) when it has a key label, else restores.
 */
static void hsm_note(struct uring_hsm *h, int op, int r, const hsm_status *st,
                     const hsm_metadata_config *mc)
{
    char q[HSM_STATUS_TEXT_MAX * 2];
    int was, now;

    if (op == HSM_OP_BACKUP && !uring_hsm_backups(h))
        return;
    if (op == HSM_OP_RESTORE && (r != 0 || !restore_proves(h, mc)))
        return;
    if (r != 0 && (!is_hsm_code(r) || r == COFFER_ERR_HSM_UNAVAILABLE))
        return; /* not about the HSM's health (a wrong key, another token, memory) */
    pthread_mutex_lock(&h->st_lock);
    was = h->state;
    h->state = r == 0 ? 1 : -1;
    if (r != 0)
        h->last = *st;
    now = h->state;
    pthread_mutex_unlock(&h->st_lock);
    if (was == now)
        return;
    if (now == 1)
        uring_log(URING_LOG_INFO, "hsm_ready", "module=%s token=%s key=%s", h->cfg.module,
                  h->cfg.token, h->cfg.key[0] != '\0' ? h->cfg.key : "-");
    else
        uring_log(URING_LOG_WARN, "hsm_unavailable",
                  "module=%s token=%s key=%s step=%s err=%s ckr=%s fallback=%s reason=%s",
                  h->cfg.module, h->cfg.token, h->cfg.key[0] != '\0' ? h->cfg.key : "-", st->step,
                  coffer_errname(r), st->ckr[0] != '\0' ? st->ckr : "-",
                  h->cfg.fallback == URING_HSM_FALLBACK_NONE ? "none" : "secret",
                  uring_log_quote(st->text, q, sizeof(q)));
}

/* The probe's answer (a thread of the HSM client): remember it, log the mechanism; free it. */
static void probe_negotiated(void *ctx, int r, const hsm_status *st, const hsm_negotiation *neg)
{
    struct uring_hsm_req *hr = ctx;
    struct uring_hsm *h = hr->h;
    char q[HSM_STATUS_TEXT_MAX * 2], why[HSM_MECH_COUNT * 64];
    size_t n = 0;

    /* with a key for new backups, say at start how they will be wrapped, and why */
    if (r == 0 && neg != NULL) {
        why[0] = '\0';
        for (int m = HSM_MECH_GCM; m < HSM_MECH_COUNT && n < sizeof(why); m++)
            if (m != neg->mech && neg->why[m][0] != '\0')
                n += (size_t)snprintf(why + n, sizeof(why) - n, "%s%s: %s", n ? "; " : "",
                                      hsm_mech_option_name(m), neg->why[m]);
        pthread_mutex_lock(&h->st_lock);
        snprintf(h->mechanism, sizeof(h->mechanism), "%s",
                 hsm_mech_metadata_name(neg->mech, neg->kwp_ckm));
        pthread_mutex_unlock(&h->st_lock);
        uring_log(URING_LOG_INFO, "hsm_mechanism",
                  "module=%s token=%s key=%s mechanism=%s "
                  "name=%s passed_over=%s",
                  h->cfg.module, h->cfg.token, h->cfg.key,
                  hsm_mech_metadata_name(neg->mech, neg->kwp_ckm), hsm_mech_option_name(neg->mech),
                  uring_log_quote(why, q, sizeof(q)));
    }
    hr->st = *st;
    hsm_note(h, HSM_OP_PROBE, r, &hr->st, NULL);
    atomic_store(&h->probing, 0);
    hr->h = NULL;
    uring_hsm_put(h);
    free(hr);
}

static void probe_connected(void *ctx, int r, const hsm_status *st)
{
    probe_negotiated(ctx, r, st, NULL);
}

/*
 * Hand the answered request back to its ring. After a fallback it goes back marked want_secret:
 * the ring hands it on to the Secret loader (uring_keys_submit), and the key comes back after.
 */
static void hsm_answer(struct uring_hsm_req *hr, int forward)
{
    struct uring_hsm *h = hr->h;
    hr->h = NULL;
    uring_hsm_put(h);
    hr->kr.want_secret = forward;
    uring_offload_post(&hr->kr.task);
}

/* A new backup's data key came (a thread of the HSM client, or the submitter's on a cache hit). */
static void backup_done(void *ctx, int r, const hsm_status *st, engine_key *dk, json_t *config)
{
    struct uring_hsm_req *hr = ctx;
    struct uring_hsm *h = hr->h;
    json_t *meta = NULL;
    char *text = NULL, q[HSM_STATUS_TEXT_MAX * 2];
    hsm_fallback_decision fd;

    hr->st = *st;
    if (r != 0)
        json_decref(config); /* NULL on failure; taken below on success */
    if (r == 0) {
        meta =
            hsm_metadata_from_config(config, engine_format_name(COFFER_FORMAT_COFFER_V1), dk->id);
        if (meta == NULL || (text = engine_metadata_dump(meta)) == NULL)
            r = COFFER_ERR_NOMEM;
        else if (strlen(text) >= sizeof(hr->meta))
            r = COFFER_ERR_TOO_LARGE;
        else
            memcpy(hr->meta, text, strlen(text) + 1);
        if (r != 0)
            hsm_status_set(&hr->st, r, "wrap", HSM_STATUS_NO_RV,
                           "the metadata of a new HSM backup could not be built: %s",
                           coffer_strerror(r));
    }
    json_decref(meta); /* config went into it (hsm_metadata_from_config takes it) */
    free(text);
    hsm_note(h, HSM_OP_BACKUP, r, &hr->st, NULL);
    if (r == 0) {
        hr->kr.key = dk;
        atomic_fetch_add(&n_backups, 1);
        hsm_answer(hr, 0);
        return;
    }
    engine_key_free(dk);
    hsm_fallback_decide(r, h->cfg.fallback == URING_HSM_FALLBACK_SECRET, &fd);
    if (!fd.fall_back) {
        hr->kr.err = r;
        atomic_fetch_add(&n_backups_failed, 1);
        hsm_answer(hr, 0);
        return;
    }
    /* what was tried, for the backup's hsmFallback note */
    snprintf(hr->mc.module, sizeof(hr->mc.module), "%s", h->cfg.module);
    snprintf(hr->mc.token, sizeof(hr->mc.token), "%s", h->cfg.token);
    snprintf(hr->mc.wrapped.key_label, sizeof(hr->mc.wrapped.key_label), "%s", h->cfg.key);
    hr->fell_back = 1;
    atomic_fetch_add(&n_fallbacks, 1);
    atomic_fetch_add(&n_fallback_by[fd.reason], 1);
    uring_log(URING_LOG_WARN, "hsm_fallback",
              "module=%s token=%s key=%s step=%s err=%s ckr=%s namespace=%s secret=%s reason=%s",
              h->cfg.module, h->cfg.token, h->cfg.key, hr->st.step, coffer_errname(r),
              hr->st.ckr[0] != '\0' ? hr->st.ckr : "-", hr->kr.ns, hr->kr.name,
              uring_log_quote(hr->st.text, q, sizeof(q)));
    hsm_answer(hr, 1);
}

/* A restore's data key came (a thread of the HSM client, or the submitter's). */
static void restore_done(void *ctx, int r, const hsm_status *st, engine_key *dk, json_t *config)
{
    struct uring_hsm_req *hr = ctx;
    json_decref(config);
    hr->st = *st;
    hsm_note(hr->h, HSM_OP_RESTORE, r, &hr->st, &hr->mc);
    if (r != 0 && is_hsm_code(r) && strcmp(hr->mc.token, hr->h->cfg.token) == 0)
        probe_queue(hr->h); /* the HSM may be gone: a probe finds out (HEALTH follows) */
    hr->kr.err = r;
    hr->kr.key = r == 0 ? dk : NULL;
    if (r != 0)
        engine_key_free(dk);
    atomic_fetch_add(r == 0 ? &n_restores : &n_restores_failed, 1);
    hsm_answer(hr, 0);
}

/*
 * Hand hr to the hsm library without waiting: its callback answers (on a thread of the HSM
 * client, or here at once when no token call is needed). 0, or the library's refusal (nothing
 * queued; the request is still the caller's).
 */
static int hsm_start_req(struct uring_hsm_req *hr)
{
    struct uring_hsm *h = hr->h;
    json_t *cfg;

    hr->kr.err = 0;
    hr->kr.detail[0] = '\0';
    hsm_status_clear(&hr->st);
    if (hr->op == HSM_OP_PROBE)
        return uring_hsm_backups(h) ? hsm_kek_negotiate_submit(h->client, probe_negotiated, hr)
                                    : hsm_client_connect_submit(h->client, probe_connected, hr);
    if (hr->op == HSM_OP_BACKUP) {
        hsm_retriever_backup_key_submit(h->retriever, 0, backup_done, hr);
        return 0;
    }
    if ((cfg = hsm_metadata_config_new(hr->mc.module, hr->mc.token, &hr->mc.wrapped)) == NULL)
        return COFFER_ERR_NOMEM;
    hsm_retriever_restore_key_submit(h->retriever, cfg, restore_done, hr);
    json_decref(cfg);
    return 0;
}

/* A request that never ran or whose ring is gone (shutdown). */
static void hsm_req_drop(struct uring_offload_task *t)
{
    struct uring_hsm_req *hr = req_of((struct uring_keyreq *)(void *)t);
    if (hr->op == HSM_OP_PROBE)
        atomic_store(&hr->h->probing, 0);
    uring_hsm_put(hr->h);
    hr->h = NULL;
    uring_keyreq_free(&hr->kr);
}

/* References to up to max live retrievers (each to uring_hsm_put). */
static int live_refs(struct uring_hsm **out, int max)
{
    int n = 0;
    pthread_mutex_lock(&q_lock);
    for (struct uring_hsm *h = live; h != NULL && n < max; h = h->next) {
        int refs = atomic_load(&h->refs);
        while (refs > 0 && !atomic_compare_exchange_weak(&h->refs, &refs, refs + 1))
            ;
        if (refs > 0)
            out[n++] = h;
    }
    pthread_mutex_unlock(&q_lock);
    return n;
}

static void hsm_sweep_run(struct uring_offload_task *t)
{
    struct uring_hsm *hs[16];
    int n = live_refs(hs, 16);
    for (int i = 0; i < n; i++) {
        hsm_cache_sweep(hsm_retriever_cache(hs[i]->retriever));
        if (uring_hsm_status(hs[i]) < 0)
            probe_queue(hs[i]); /* so that HEALTH sees it recover without traffic */
        uring_hsm_put(hs[i]);
    }
    free(t);
}

static void hsm_sweep_drop(struct uring_offload_task *t)
{
    free(t);
}

void uring_hsm_tick(void)
{
    struct timespec now;
    long long last = atomic_load(&q_last_sweep);
    struct uring_offload_task *t;

    clock_gettime(CLOCK_MONOTONIC, &now);
    if (!atomic_load(&q_started) || now.tv_sec - last < URING_HSM_SWEEP_S ||
        !atomic_compare_exchange_strong(&q_last_sweep, &last, (long long)now.tv_sec))
        return;
    pthread_mutex_lock(&q_lock);
    t = live != NULL ? calloc(1, sizeof(*t)) : NULL;
    pthread_mutex_unlock(&q_lock);
    if (t == NULL)
        return;
    t->run = hsm_sweep_run;
    t->drop = hsm_sweep_drop;
    if (uring_offload_submit(URING_POOL_HSM, t) != 0)
        free(t);
}

int uring_hsm_start(void)
{
    int r = uring_offload_start(URING_POOL_HSM, URING_HSM_LOADERS);
    if (r != 0)
        return r;
    struct uring_hsm *hs[16];
    int n;
    atomic_store(&q_started, 1);
    /* the first runtime's HSM was acquired before the pool: ask it to connect now */
    n = live_refs(hs, 16);
    for (int i = 0; i < n; i++) {
        probe_queue(hs[i]);
        uring_hsm_put(hs[i]);
    }
    return 0;
}

void uring_hsm_stop(void)
{
    /* the HSM pool stopped (uring_offload_stop): requests that never ran were dropped, and
     * retired clients closed */
    atomic_store(&q_started, 0);
}

/* ---- one job (ring thread) ---- */

/* The status metadata of a backup under the current data key: a copy of the text built for the
 * key's first cached backup, or built now. NULL when out of memory. */
static char *cached_meta(struct uring_hsm *h, const engine_key *dk, const hsm_wrapped *w)
{
    char *text = NULL;
    json_t *m;

    pthread_mutex_lock(&h->meta_lock);
    if (h->meta_text != NULL && memcmp(&h->meta_w, w, sizeof(*w)) == 0)
        text = strdup(h->meta_text);
    pthread_mutex_unlock(&h->meta_lock);
    if (text != NULL)
        return text;
    m = hsm_metadata_new(h->cfg.module, h->cfg.token, w,
                         engine_format_name(COFFER_FORMAT_COFFER_V1), dk->id);
    text = m != NULL ? engine_metadata_dump(m) : NULL;
    json_decref(m);
    if (text == NULL)
        return NULL;
    pthread_mutex_lock(&h->meta_lock);
    free(h->meta_text);
    h->meta_text = strdup(text);
    h->meta_w = *w;
    pthread_mutex_unlock(&h->meta_lock);
    return text;
}

int uring_hsm_job_backup(struct uring_hsm *h, struct uring_hsm_job **out, engine_key **dk,
                         char **meta)
{
    struct uring_hsm_job *hj = calloc(1, sizeof(*hj));
    hsm_wrapped w;
    int r;

    *out = hj;
    *dk = NULL;
    *meta = NULL;
    if (hj == NULL)
        return COFFER_ERR_NOMEM;
    hj->op = HSM_OP_BACKUP;
    if (!h->cache_on)
        return 0;
    /* the data-key cache only: its mutex is never held across a PKCS#11 call */
    memset(&w, 0, sizeof(w));
    if ((r = hsm_cache_current_take(hsm_retriever_cache(h->retriever), 0, dk, &w)) != 1)
        return r < 0 ? r : 0; /* a miss: uring_hsm_submit asks the HSM */
    if ((*meta = cached_meta(h, *dk, &w)) == NULL) {
        engine_key_free(*dk);
        *dk = NULL;
        return COFFER_ERR_NOMEM;
    }
    hj->used = 1;
    snprintf(hj->key_id, sizeof(hj->key_id), "%s", (*dk)->id);
    atomic_fetch_add(&n_backups, 1);
    return 0;
}

int uring_hsm_job_restore(const struct uring_hsm *h, const json_t *metadata,
                          struct uring_hsm_job **out, char *detail, size_t detaillen)
{
    struct uring_hsm_job *hj = calloc(1, sizeof(*hj));
    char why[256];

    *out = NULL;
    if (hj == NULL)
        return COFFER_ERR_NOMEM;
    hj->op = HSM_OP_RESTORE;
    if (hsm_metadata_config_parse(json_object_get(metadata, "keyRetrieverConfig"), &hj->mc, why,
                                  sizeof(why)) != 0) {
        snprintf(detail, detaillen, "%s", why);
        free(hj);
        return COFFER_ERR_METADATA;
    }
    if (h == NULL) {
        int r = hsm_fallback_restore_unconfigured(hj->mc.token, hj->mc.wrapped.key_label, detail,
                                                  detaillen);
        free(hj);
        return r;
    }
    *out = hj;
    return 0;
}

struct uring_keyreq *uring_hsm_req_new(const struct uring_hsm_job *hj)
{
    struct uring_hsm_req *hr = calloc(1, sizeof(*hr));
    if (hr == NULL)
        return NULL;
    hr->op = hj->op;
    if (hj->op == HSM_OP_RESTORE)
        hr->mc = hj->mc;
    return &hr->kr;
}

void uring_hsm_submit(struct uring_hsm *h, struct uring_keyreq *req)
{
    struct uring_hsm_req *hr = req_of(req);
    int r;
    hr->h = hsm_ref(h);
    if ((r = hsm_queue(hr)) != 0) {
        uring_hsm_put(hr->h);
        hr->h = NULL;
        req->err = r;
        snprintf(req->detail, sizeof(req->detail), "%s",
                 r == COFFER_ERR_BUSY ? "too many HSM requests are waiting; try again shortly"
                                      : "cofferd is shutting down");
        uring_offload_post(&req->task);
    }
}

int uring_hsm_job_ready(struct uring_hsm_job *hj, struct uring_keyreq *req, char **meta,
                        char *detail, size_t detaillen)
{
    struct uring_hsm_req *hr = req_of(req);
    json_t *m, *note;
    int r = COFFER_ERR_NOMEM;

    *meta = NULL;
    detail[0] = '\0';
    if (hj->op == HSM_OP_RESTORE)
        return req->err == 0
                   ? 0
                   : hsm_fallback_restore_error(req->err, &hr->st, hr->mc.token,
                                                hr->mc.wrapped.key_label, detail, detaillen);
    if (!hr->fell_back) {
        if (req->err != 0)
            return hsm_fallback_backup_error(req->err, &hr->st, detail, detaillen);
        if ((*meta = strdup(hr->meta)) == NULL)
            return COFFER_ERR_NOMEM;
        hj->used = 1;
        snprintf(hj->key_id, sizeof(hj->key_id), "%s", req->key->id);
        return 0;
    }
    if (req->err != 0)
        return hsm_fallback_secret_error(req->err, req->ns, req->name, &hr->st, req->detail, detail,
                                         detaillen);
    m = engine_metadata_new_secret(req->ns, req->name, engine_format_name(COFFER_FORMAT_COFFER_V1),
                                   req->key->id);
    note =
        hsm_metadata_fallback_new(hr->mc.module, hr->mc.token, hr->mc.wrapped.key_label, &hr->st);
    if (m == NULL || note == NULL) {
        json_decref(note);
        goto out;
    }
    /* json_object_set_new takes the note, also when it fails */
    if (json_object_set_new(m, "hsmFallback", note) != 0 ||
        (*meta = engine_metadata_dump(m)) == NULL)
        goto out;
    r = 0;
out:
    json_decref(m);
    return r;
}

void uring_hsm_job_end(struct uring_hsm *h, struct uring_hsm_job *hj, uint64_t bytes)
{
    if (hj == NULL)
        return;
    /* the cache's byte bound; only the cache's mutex, never the HSM */
    if (hj->used && h != NULL && bytes > 0)
        hsm_retriever_backup_done(h->retriever, hj->key_id, bytes);
    free(hj);
}

/* ---- reports ---- */

void uring_hsm_stats_add(json_t *o, struct uring_hsm *h)
{
    json_t *by = json_object();
    hsm_cache_stats cs;

    if (o == NULL || by == NULL) {
        json_decref(by);
        return;
    }
    for (int i = 0; i < REASONS; i++) {
        unsigned long long n = atomic_load(&n_fallback_by[i]);
        if (n > 0)
            json_object_set_new(by, hsm_fallback_reason_name(i), json_integer((json_int_t)n));
    }
    json_object_set_new(o, "fallbacks", json_integer((json_int_t)atomic_load(&n_fallbacks)));
    json_object_set_new(o, "fallbackReasons", by);
    json_object_set_new(o, "hsmBackups", json_integer((json_int_t)atomic_load(&n_backups)));
    json_object_set_new(o, "hsmBackupsFailed",
                        json_integer((json_int_t)atomic_load(&n_backups_failed)));
    json_object_set_new(o, "hsmRestores", json_integer((json_int_t)atomic_load(&n_restores)));
    json_object_set_new(o, "hsmRestoresFailed",
                        json_integer((json_int_t)atomic_load(&n_restores_failed)));
    if (h == NULL)
        return;
    hsm_cache_stats_get(hsm_retriever_cache(h->retriever), &cs);
    json_object_set_new(
        o, "hsmCache",
        json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b}", "backupHits",
                  (json_int_t)cs.backup_hits, "backupMisses", (json_int_t)cs.backup_misses,
                  "restoreHits", (json_int_t)cs.restore_hits, "restoreMisses",
                  (json_int_t)cs.restore_misses, "evictedAge", (json_int_t)cs.evicted_age,
                  "evictedUses", (json_int_t)cs.evicted_uses, "evictedBytes",
                  (json_int_t)cs.evicted_bytes, "evictedCapacity", (json_int_t)cs.evicted_capacity,
                  "restoreEntries", (json_int_t)cs.restore_entries, "haveCurrent",
                  cs.have_current));
}

void uring_hsm_health_add(json_t *o, struct uring_hsm *h, int state)
{
    json_t *hj;
    hsm_status last;
    char mech[48];

    if (o == NULL)
        return;
    json_object_set_new(o, "keyRetriever", json_string(uring_hsm_backups(h) ? "pkcs11" : "secret"));
    if (h == NULL)
        return;
    pthread_mutex_lock(&h->st_lock);
    last = h->last;
    memcpy(mech, h->mechanism, sizeof(mech));
    pthread_mutex_unlock(&h->st_lock);
    hj = json_pack("{s:s, s:s, s:s?, s:s, s:s}", "module", h->cfg.module, "token", h->cfg.token,
                   "keyLabel", h->cfg.key[0] != '\0' ? h->cfg.key : NULL, "fallback",
                   h->cfg.fallback == URING_HSM_FALLBACK_NONE ? "none" : "secret", "status",
                   state > 0 ? "ok" : (state < 0 ? "unavailable" : "unknown"));
    if (hj != NULL && mech[0] != '\0')
        json_object_set_new(hj, "mechanism", json_string(mech));
    if (hj != NULL && state < 0)
        json_object_set_new(hj, "lastError",
                            hsm_metadata_fallback_new(h->cfg.module, h->cfg.token,
                                                      h->cfg.key[0] != '\0' ? h->cfg.key : NULL,
                                                      &last));
    json_object_set_new(o, "hsm", hj);
}

int uring_hsm_status(struct uring_hsm *h)
{
    int state;
    if (h == NULL)
        return 0;
    pthread_mutex_lock(&h->st_lock);
    state = h->state;
    pthread_mutex_unlock(&h->st_lock);
    return state;
}

int uring_hsm_fallback_secret(const struct uring_hsm *h)
{
    return h != NULL && h->cfg.fallback == URING_HSM_FALLBACK_SECRET;
}

void uring_hsm_counts_get(struct uring_hsm *h, struct uring_hsm_counts *out)
{
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < REASONS; i++) {
        out->reason_name[i] = hsm_fallback_reason_name(i);
        out->fallbacks_by[i] = atomic_load_explicit(&n_fallback_by[i], memory_order_relaxed);
    }
    out->backups = atomic_load_explicit(&n_backups, memory_order_relaxed);
    out->backups_failed = atomic_load_explicit(&n_backups_failed, memory_order_relaxed);
    out->restores = atomic_load_explicit(&n_restores, memory_order_relaxed);
    out->restores_failed = atomic_load_explicit(&n_restores_failed, memory_order_relaxed);
    if (h == NULL)
        return;
    hsm_cache_stats_get(hsm_retriever_cache(h->retriever), &out->cache);
    out->have_cache = 1;
}

void uring_hsm_exit(int code)
{
    int hsm = hsm_client_calls_in_progress(), pools = uring_offload_left_behind();
    if (hsm == 0 && pools == 0)
        return;
    /* a thread is inside a PKCS#11 call (or a Secret read): finalizing p11-kit's modules and
     * OpenSSL at exit would pull them out from under it */
    uring_log(URING_LOG_WARN, "exit_without_teardown",
              "hsm_calls=%d pool_threads=%d exit=%d detail=\"threads are still inside calls that "
              "did not return; exiting without finalizing the PKCS#11 module and OpenSSL\"",
              hsm, pools, code);
    fflush(stdout);
    fflush(stderr);
    _exit(code);
}
