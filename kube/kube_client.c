/* SPDX-License-Identifier: Apache-2.0 */
/* One Secret GET with libcurl: verified TLS, timeouts, retries with backoff, Status-aware errors.
 */
#include "kube_client.h"

#include "coffer_error.h"
#include "coffer_version.h"
#include "engine_secmem.h"
#include "engine_secret.h"

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BODY_MAX       (4u * 1024 * 1024) /* a Secret is at most 1 MiB of data, 4/3 in base64 */
#define BODY_FIRST     (64u * 1024)
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000

int kube_global_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : COFFER_ERR_INTERNAL;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* The response body, in locked memory: it holds the Secret's data. */
struct body {
    char *p;
    size_t len, cap;
    int too_big;
};

static size_t body_write(char *data, size_t size, size_t nmemb, void *ctx)
{
    struct body *b = ctx;
    size_t n = size * nmemb;

    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap == 0 ? BODY_FIRST : b->cap;
        char *np;
        while (cap < b->len + n + 1)
            cap *= 2;
        if (cap > BODY_MAX + 1) {
            b->too_big = 1;
            return 0; /* aborts the transfer */
        }
        if ((np = engine_secmem_alloc(cap)) == NULL)
            return 0;
        if (b->len > 0)
            memcpy(np, b->p, b->len);
        engine_secmem_free(b->p);
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return n;
}

static void body_reset(struct body *b)
{
    engine_secmem_free(b->p);
    memset(b, 0, sizeof(*b));
}

/* Printable ASCII of an untrusted server text, bounded, for one sentence. */
static void clean_text(char *out, size_t cap, const char *in)
{
    size_t o = 0;
    for (size_t i = 0; in != NULL && in[i] != '\0' && o + 1 < cap; i++) {
        unsigned char c = (unsigned char)in[i];
        out[o++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    out[o] = '\0';
}

/* The message of a Kubernetes Status answer, or "" when the body is not one. */
static void status_message(const struct body *b, char *out, size_t cap)
{
    json_t *root = b->len > 0 ? json_loadb(b->p, b->len, 0, NULL) : NULL;
    const char *kind = json_string_value(json_object_get(root, "kind"));
    out[0] = '\0';
    if (kind != NULL && strcmp(kind, "Status") == 0)
        clean_text(out, cap, json_string_value(json_object_get(root, "message")));
    json_decref(root);
}

/* Wipe every string value of a JSON object in place (a Secret's data), then the caller frees it. */
static void wipe_strings(json_t *obj)
{
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        if (json_is_string(v))
            engine_secmem_wipe((char *)json_string_value(v), json_string_length(v));
    }
}

/* A 200 answer: the Secret object, data.encryptionKey decoded and ruled. */
static int take_key(const struct body *b, const char *ns, const char *name, engine_key_rule rule,
                    engine_key **out, char *detail, size_t detaillen)
{
    json_error_t jerr;
    json_t *root = json_loadb(b->p, b->len, 0, &jerr), *data, *field;
    const char *kind, *text;
    unsigned char *raw = NULL;
    size_t tl, rawlen = 0;
    int r = COFFER_ERR_KUBE_API;

    kind = json_string_value(json_object_get(root, "kind"));
    if (root == NULL || !json_is_object(root) || (kind != NULL && strcmp(kind, "Secret") != 0)) {
        snprintf(detail, detaillen,
                 "the Kubernetes API answered GET of Secret %s/%s with something that is not a "
                 "Secret object",
                 ns, name);
        goto out;
    }
    data = json_object_get(root, "data");
    field = json_object_get(data, ENGINE_SECRET_FIELD);
    if (field == NULL || json_is_null(field)) {
        char have[256] = "", *p = have;
        const char *k;
        json_t *v;
        json_object_foreach(data, k, v)
        {
            (void)v;
            int n =
                snprintf(p, sizeof(have) - (size_t)(p - have), "%s%.60s", p == have ? "" : ", ", k);
            if (n < 0 || (size_t)n >= sizeof(have) - (size_t)(p - have))
                break;
            p += n;
        }
        snprintf(detail, detaillen,
                 "Secret %s/%s has no field %s (fields present: %s); add the key with "
                 "'coffer keygen' and kubectl -n %s create secret generic %s "
                 "--from-file=%s=KEYFILE",
                 ns, name, ENGINE_SECRET_FIELD, have[0] != '\0' ? have : "none", ns, name,
                 ENGINE_SECRET_FIELD);
        r = COFFER_ERR_KEY_MISSING;
        goto out;
    }
    if (!json_is_string(field)) {
        snprintf(detail, detaillen, "Secret %s/%s: data.%s is not a base64 string", ns, name,
                 ENGINE_SECRET_FIELD);
        goto out;
    }
    text = json_string_value(field);
    tl = json_string_length(field);
    if (tl > (size_t)ENGINE_KEY_FIELD_MAX * 2 ||
        (raw = engine_secmem_alloc(tl / 4 * 3 + 4)) == NULL) {
        if (raw == NULL && tl <= (size_t)ENGINE_KEY_FIELD_MAX * 2) {
            r = COFFER_ERR_NOMEM;
        } else {
            snprintf(detail, detaillen,
                     "Secret %s/%s: field %s is far too long for a key (%zu "
                     "base64 characters); create a key with 'coffer keygen'",
                     ns, name, ENGINE_SECRET_FIELD, tl);
            r = COFFER_ERR_KEY_SIZE;
        }
        goto out;
    }
    if (kube_base64_decode(text, tl, raw, tl / 4 * 3 + 3, &rawlen) != 0) {
        snprintf(detail, detaillen, "Secret %s/%s: data.%s is not valid base64", ns, name,
                 ENGINE_SECRET_FIELD);
        goto out;
    }
    if (rawlen == 0) {
        snprintf(detail, detaillen,
                 "Secret %s/%s: field %s is empty; put a key made by 'coffer keygen' in it", ns,
                 name, ENGINE_SECRET_FIELD);
        r = COFFER_ERR_KEY_MISSING;
        goto out;
    }
    if ((r = engine_key_parse(out, rule, raw, rawlen, detail, detaillen)) != 0) {
        char tmp[512];
        snprintf(tmp, sizeof(tmp), "%s", detail);
        snprintf(detail, detaillen, "Secret %s/%s field %s: %s", ns, name, ENGINE_SECRET_FIELD,
                 tmp);
    }
out:
    if (raw != NULL)
        engine_secmem_free(raw);
    if (json_is_object(json_object_get(root, "data")))
        wipe_strings(json_object_get(root, "data"));
    if (json_is_object(json_object_get(root, "stringData")))
        wipe_strings(json_object_get(root, "stringData"));
    json_decref(root);
    return r;
}

/* The outcome of one attempt. */
struct attempt {
    CURLcode cc;
    long status;
    curl_off_t retry_after; /* seconds, from Retry-After, or 0 */
    char curl_err[CURL_ERROR_SIZE];
};

static void wipe_slist(struct curl_slist *h)
{
    for (struct curl_slist *p = h; p != NULL; p = p->next)
        engine_secmem_wipe(p->data, strlen(p->data));
    curl_slist_free_all(h);
}

static int attempt_once(const struct kube_target *t, const char *url, const char *token,
                        long connect_ms, long total_ms, struct body *b, struct attempt *a)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL, *h2;
    struct curl_blob ca = {t->ca_pem, t->ca_len, CURL_BLOB_NOCOPY};
    struct curl_blob cert = {t->cert_pem, t->cert_len, CURL_BLOB_NOCOPY};
    struct curl_blob key = {t->key_pem, t->key_len, CURL_BLOB_NOCOPY};
    char *auth = NULL, noproxy[1024];
    const char *env = getenv("NO_PROXY") != NULL ? getenv("NO_PROXY") : getenv("no_proxy");
    int ok = 1;

    memset(a, 0, sizeof(*a));
    if (c == NULL)
        return COFFER_ERR_NOMEM;
    snprintf(noproxy, sizeof(noproxy), "%.900s%slocalhost,127.0.0.1,::1", env != NULL ? env : "",
             env != NULL && env[0] != '\0' ? "," : "");
    h = curl_slist_append(NULL, "Accept: application/json");
    if (token != NULL) {
        size_t n = strlen(token) + 32;
        if ((auth = engine_secmem_alloc(n)) != NULL) {
            snprintf(auth, n, "Authorization: Bearer %s", token);
            if (h != NULL && (h2 = curl_slist_append(h, auth)) != NULL)
                h = h2;
            else
                ok = 0;
            engine_secmem_free(auth);
        } else {
            ok = 0;
        }
    }
    if (h == NULL || !ok) {
        wipe_slist(h);
        curl_easy_cleanup(c);
        return COFFER_ERR_NOMEM;
    }
    ok = curl_easy_setopt(c, CURLOPT_URL, url) == CURLE_OK &&
         curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https") == CURLE_OK &&
         curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK &&
         curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
         curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L) == CURLE_OK &&
         curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L) == CURLE_OK &&
         /* trust the given CA and nothing else: no system bundle, no CA directory */
         curl_easy_setopt(c, CURLOPT_CAINFO, NULL) == CURLE_OK &&
         curl_easy_setopt(c, CURLOPT_CAPATH, NULL) == CURLE_OK &&
         curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, &ca) == CURLE_OK &&
         curl_easy_setopt(c, CURLOPT_HTTPHEADER, h) == CURLE_OK &&
         curl_easy_setopt(c, CURLOPT_USERAGENT, "cofferd/" COFFER_VERSION_STRING) == CURLE_OK &&
         curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, connect_ms) == CURLE_OK &&
         curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, total_ms) == CURLE_OK &&
         curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_write) == CURLE_OK &&
         curl_easy_setopt(c, CURLOPT_WRITEDATA, b) == CURLE_OK &&
         curl_easy_setopt(c, CURLOPT_ERRORBUFFER, a->curl_err) == CURLE_OK &&
         /* like client-go: a proxy from the environment, but never for loopback addresses */
         curl_easy_setopt(c, CURLOPT_NOPROXY, noproxy) == CURLE_OK;
    if (ok && t->cert_pem != NULL)
        ok = curl_easy_setopt(c, CURLOPT_SSLCERT_BLOB, &cert) == CURLE_OK &&
             curl_easy_setopt(c, CURLOPT_SSLCERTTYPE, "PEM") == CURLE_OK &&
             curl_easy_setopt(c, CURLOPT_SSLKEY_BLOB, &key) == CURLE_OK &&
             curl_easy_setopt(c, CURLOPT_SSLKEYTYPE, "PEM") == CURLE_OK;
    if (!ok) {
        wipe_slist(h);
        curl_easy_cleanup(c);
        return COFFER_ERR_INTERNAL;
    }
    a->cc = curl_easy_perform(c);
    if (a->cc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a->status);
        if (curl_easy_getinfo(c, CURLINFO_RETRY_AFTER, &a->retry_after) != CURLE_OK ||
            a->retry_after < 0)
            a->retry_after = 0;
    }
    curl_easy_cleanup(c);
    wipe_slist(h);
    return 0;
}

static int transient(const struct attempt *a)
{
    if (a->cc == CURLE_OK)
        return a->status == 429 || (a->status >= 500 && a->status <= 599);
    return a->cc == CURLE_COULDNT_CONNECT || a->cc == CURLE_COULDNT_RESOLVE_HOST ||
           a->cc == CURLE_RECV_ERROR || a->cc == CURLE_SEND_ERROR || a->cc == CURLE_GOT_NOTHING ||
           a->cc == CURLE_PARTIAL_FILE || a->cc == CURLE_OPERATION_TIMEDOUT;
}

static int tls_failure(CURLcode cc)
{
    return cc == CURLE_PEER_FAILED_VERIFICATION || cc == CURLE_SSL_CONNECT_ERROR ||
           cc == CURLE_SSL_CACERT_BADFILE || cc == CURLE_SSL_CERTPROBLEM ||
           cc == CURLE_SSL_ISSUER_ERROR || cc == CURLE_SSL_PINNEDPUBKEYNOTMATCH;
}

/* One sentence for a final failed attempt. */
static int explain(const struct kube_target *t, const char *ns, const char *name,
                   const struct attempt *a, const struct body *b, int attempts, double secs,
                   long timeout_ms, char *detail, size_t detaillen)
{
    char msg[400];

    if (a->cc != CURLE_OK) {
        const char *why = a->curl_err[0] != '\0' ? a->curl_err : curl_easy_strerror(a->cc);
        clean_text(msg, sizeof(msg), why);
        if (a->cc == CURLE_OPERATION_TIMEDOUT) {
            snprintf(detail, detaillen,
                     "the Kubernetes API at %s did not answer GET of Secret %s/%s within the "
                     "timeout (%ld ms, %d attempt%s): %s",
                     t->server, ns, name, timeout_ms, attempts, attempts == 1 ? "" : "s", msg);
            return COFFER_ERR_KUBE_TIMEOUT;
        }
        if (tls_failure(a->cc)) {
            snprintf(detail, detaillen,
                     "TLS with the Kubernetes API at %s failed, checked against %s: %s; give the "
                     "CA that signed the API server's certificate",
                     t->server, t->ca_origin, msg);
            return COFFER_ERR_KUBE_TLS;
        }
        snprintf(detail, detaillen,
                 "the Kubernetes API at %s could not be reached for Secret %s/%s: %s (%d "
                 "attempt%s in %.1f s)",
                 t->server, ns, name, msg, attempts, attempts == 1 ? "" : "s", secs);
        return COFFER_ERR_KUBE_API;
    }
    status_message(b, msg, sizeof(msg));
    switch (a->status) {
    case 401:
        snprintf(detail, detaillen,
                 "the Kubernetes API at %s rejected %s (401 Unauthorized%s%s); renew or replace "
                 "that credential",
                 t->server, t->credential, msg[0] != '\0' ? ": " : "", msg);
        return COFFER_ERR_KUBE_UNAUTHORIZED;
    case 403:
        snprintf(detail, detaillen,
                 "RBAC forbids reading Secret %s/%s with %s: cofferd needs a Role in namespace "
                 "'%s' granting verb 'get' on resource 'secrets' with resourceNames ['%s'], bound "
                 "to its ServiceAccount (see deploy/kubernetes/rbac.yaml)%s%s",
                 ns, name, t->credential, ns, name, msg[0] != '\0' ? "; the API said: " : "", msg);
        return COFFER_ERR_KUBE_FORBIDDEN;
    case 404:
        snprintf(detail, detaillen,
                 "Secret '%s' does not exist in namespace '%s' (Kubernetes API at %s); create it "
                 "with 'coffer keygen --out KEYFILE' and 'kubectl -n %s create secret generic %s "
                 "--from-file=%s=KEYFILE', or restore the Secret this backup was made with",
                 name, ns, t->server, ns, name, ENGINE_SECRET_FIELD);
        return COFFER_ERR_KEY_MISSING;
    default:
        break;
    }
    if (a->status == 429 || a->status >= 500)
        snprintf(detail, detaillen,
                 "the Kubernetes API at %s kept answering %ld for Secret %s/%s (%d attempt%s in "
                 "%.1f s, within the %ld ms timeout)%s%s",
                 t->server, a->status, ns, name, attempts, attempts == 1 ? "" : "s", secs,
                 timeout_ms, msg[0] != '\0' ? ": " : "", msg);
    else
        snprintf(detail, detaillen,
                 "the Kubernetes API at %s answered %ld to GET of Secret %s/%s%s%s", t->server,
                 a->status, ns, name, msg[0] != '\0' ? ": " : "", msg);
    return COFFER_ERR_KUBE_API;
}

int kube_secret_get(const struct kube_target *t, const struct kube_options *o, const char *ns,
                    const char *name, engine_key_rule rule, engine_key **out,
                    struct kube_fetch_info *info, char *detail, size_t detaillen)
{
    struct kube_options def = {KUBE_CONNECT_TIMEOUT_MS_DEFAULT, KUBE_TIMEOUT_MS_DEFAULT,
                               KUBE_MAX_ATTEMPTS_DEFAULT};
    double start = now_s(), deadline;
    struct body b;
    struct attempt a;
    char url[1024 + 400];
    int attempts = 0, r;
    long backoff = BACKOFF_MIN_MS;

    *out = NULL;
    detail[0] = '\0';
    memset(&b, 0, sizeof(b));
    memset(&a, 0, sizeof(a));
    if (info != NULL)
        memset(info, 0, sizeof(*info));
    if (o == NULL)
        o = &def;
    deadline = start + (double)o->timeout_ms / 1000.0;
    if (engine_secret_name_check(ns, name) != 0) {
        snprintf(detail, detaillen,
                 "namespace and Secret name must be lowercase DNS names (a-z, 0-9, '-', '.')");
        return COFFER_ERR_SECRET_NAME;
    }
    /* DNS-1123 names need no escaping in a URL path */
    snprintf(url, sizeof(url), "%s/api/v1/namespaces/%s/secrets/%s", t->server, ns, name);
    for (;;) {
        long left = (long)((deadline - now_s()) * 1000.0);
        int terr = 0;
        char *token;

        if (left <= 0)
            break;
        token = kube_target_token(t, &terr, detail, detaillen);
        if (terr != 0) {
            r = terr;
            goto out;
        }
        body_reset(&b);
        attempts++;
        r = attempt_once(t, url, token, o->connect_timeout_ms < left ? o->connect_timeout_ms : left,
                         left, &b, &a);
        engine_secmem_free(token);
        if (r != 0)
            goto out;
        if (b.too_big) {
            snprintf(detail, detaillen,
                     "the Kubernetes API's answer for Secret %s/%s is larger than %u bytes", ns,
                     name, BODY_MAX);
            r = COFFER_ERR_KUBE_API;
            goto out;
        }
        if (a.cc == CURLE_OK && a.status >= 200 && a.status <= 299) {
            r = take_key(&b, ns, name, rule, out, detail, detaillen);
            goto out;
        }
        if (!transient(&a) || attempts >= o->max_attempts)
            break;
        /* wait: the server's Retry-After, else exponential backoff with jitter */
        {
            long wait = backoff, jitter = 0;
            unsigned char rb[2] = {0, 0};
            if (a.retry_after > 0)
                wait = a.retry_after > 3600 ? 3600000L : (long)a.retry_after * 1000L;
            else if (RAND_bytes(rb, sizeof(rb)) == 1)
                jitter = ((long)rb[0] << 8 | rb[1]) % (backoff / 2 + 1);
            wait += jitter;
            left = (long)((deadline - now_s()) * 1000.0);
            if (wait >= left) {
                if (a.retry_after > 0 && a.cc == CURLE_OK) {
                    char msg[300];
                    status_message(&b, msg, sizeof(msg));
                    snprintf(detail, detaillen,
                             "the Kubernetes API at %s answered %ld for Secret %s/%s and asked "
                             "to retry after %lld s, beyond the %ld ms timeout%s%s",
                             t->server, a.status, ns, name, (long long)a.retry_after, o->timeout_ms,
                             msg[0] != '\0' ? ": " : "", msg);
                    r = COFFER_ERR_KUBE_API;
                    goto out;
                }
                break;
            }
            sleep_ms(wait);
            backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
        }
    }
    if (attempts == 0) {
        snprintf(detail, detaillen, "no time left to ask the Kubernetes API for Secret %s/%s", ns,
                 name);
        r = COFFER_ERR_KUBE_TIMEOUT;
        goto out;
    }
    r = explain(t, ns, name, &a, &b, attempts, now_s() - start, o->timeout_ms, detail, detaillen);
out:
    if (info != NULL) {
        info->attempts = attempts;
        info->http_status = a.cc == CURLE_OK ? (int)a.status : 0;
        info->seconds = now_s() - start;
    }
    body_reset(&b);
    return r;
}
