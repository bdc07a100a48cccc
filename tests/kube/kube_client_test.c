/* SPDX-License-Identifier: Apache-2.0 */
/* The Kubernetes-API Secret retriever (kube/) against the loopback API stand-in, checked with
 * kubectl. */
#include "coffer_error.h"
#include "engine_key.h"
#include "kube_client.h"
#include "kube_test_util.h"
#include "test_support.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <unistd.h>
#include <yaml.h>

static struct kt_server srv;
static struct kube_target *tgt; /* srv.kubeconfig: inline token, CA file */
static uint8_t key1[32];

static int group_setup(void **state)
{
    char detail[512];
    (void)state;
    if (kube_global_init() != 0 || kt_start(&srv) != 0)
        return -1;
    if (RAND_bytes(key1, sizeof(key1)) != 1)
        return -1;
    key1[0] = 0x01; /* never all printable */
    kt_put_field(&srv, "velero", "coffer-key", "encryptionKey", key1, sizeof(key1));
    if (kube_target_from_kubeconfig(&tgt, srv.kubeconfig, detail, sizeof(detail)) != 0) {
        fprintf(stderr, "kubeconfig: %s\n", detail);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    kube_target_free(tgt);
    kt_stop(&srv);
    return 0;
}

static const struct kube_options fast = {2000, 4000, 5};

/* Fetch ns/name with target t; returns the code, *k on success. */
static int get(const struct kube_target *t, const struct kube_options *o, const char *ns,
               const char *name, engine_key **k, char *detail, size_t detaillen,
               struct kube_fetch_info *info)
{
    return kube_secret_get(t, o, ns, name, ENGINE_KEY_RULE_COFFER, k, info, detail, detaillen);
}

static void assert_kubectl_sees(const char *kc, const char *ns, const char *name,
                                const uint8_t *want, size_t wantlen)
{
    uint8_t got[256];
    size_t n = 0;
    char err[1024];
    int r = kt_kubectl_key(&srv, kc, ns, name, got, sizeof(got), &n, err, sizeof(err));
    if (r != 0)
        fprintf(stderr, "kubectl: %s\n", err);
    assert_int_equal(r, 0);
    assert_int_equal(n, wantlen);
    assert_memory_equal(got, want, wantlen);
}

/* The Secret's raw bytes come back; kubectl reads the very same bytes from the stand-in. */
static void test_get_matches_kubectl(void **state)
{
    engine_key *k = NULL;
    char detail[1024];
    struct kube_fetch_info info;
    (void)state;

    assert_int_equal(get(tgt, &fast, "velero", "coffer-key", &k, detail, sizeof(detail), &info), 0);
    assert_int_equal(k->len, 32);
    assert_memory_equal(k->bytes, key1, 32);
    assert_int_equal(info.http_status, 200);
    assert_int_equal(info.attempts, 1);
    engine_key_free(k);
    assert_kubectl_sees(srv.kubeconfig, "velero", "coffer-key", key1, sizeof(key1));
}

/* A field holding 'coffer keygen' text (base64 of 32 bytes) follows the same rule as a file. */
static void test_keygen_text_field(void **state)
{
    char path[PATH_MAX * 2], detail[1024];
    char *argv[] = {(char *)ts_bin("coffer"), "keygen", "--out", path, NULL};
    engine_key *k = NULL, *fk = NULL;
    size_t len = 0;
    uint8_t *text;
    (void)state;

    kt_fmt(path, sizeof(path), "%s/keygen.key", srv.dir);
    assert_int_equal(ts_run(argv, NULL, NULL, NULL, NULL), 0);
    text = ts_read_file(path, &len);
    kt_put_field(&srv, "velero", "keygen", "encryptionKey", text, len);
    assert_int_equal(get(tgt, &fast, "velero", "keygen", &k, detail, sizeof(detail), NULL), 0);
    assert_int_equal(engine_key_load_file(&fk, ENGINE_KEY_RULE_COFFER, path, NULL, 0), 0);
    assert_string_equal(k->id, fk->id);
    assert_kubectl_sees(srv.kubeconfig, "velero", "keygen", text, len);
    engine_key_free(k);
    engine_key_free(fk);
    free(text);
    /* a passphrase is refused as from a file */
    kt_put_field(&srv, "velero", "passphrase", "encryptionKey", "correct horse battery staple 123",
                 32);
    assert_int_equal(get(tgt, &fast, "velero", "passphrase", &k, detail, sizeof(detail), NULL),
                     COFFER_ERR_KEY_FORM);
    assert_non_null(strstr(detail, "velero/passphrase"));
}

/* A kubeconfig <dir>/<kcname> whose user reads the token file <dir>/<tokname> (holding token),
 * CA by `ca`; its target (the path of the token file in tokfile). */
static struct kube_target *tokenfile_target(const char *kcname, const char *tokname, const char *ca,
                                            const char *token, char *tokfile, size_t cap)
{
    char kc[PATH_MAX * 2], detail[1024];
    struct kube_target *t = NULL;

    kt_fmt(tokfile, cap, "%s/%s", srv.dir, tokname);
    assert_int_equal(ts_write_file(tokfile, token, strlen(token)), 0);
    kt_fmt(kc, sizeof(kc), "%s/%s", srv.dir, kcname);
    kt_write_kubeconfig(&srv, kc, "tokenfile", ca, NULL, tokfile);
    if (kube_target_from_kubeconfig(&t, kc, detail, sizeof(detail)) != 0)
        fail_msg("%s: %s", kcname, detail);
    return t;
}

/* kubeconfig variants: CA data + tokenFile, and a client certificate without a token. */
static void test_kubeconfig_variants(void **state)
{
    char kc[PATH_MAX * 2], tokfile[PATH_MAX * 2], detail[1024];
    struct kube_target *t = NULL;
    engine_key *k = NULL;
    (void)state;

    t = tokenfile_target("kc-tokenfile", "tok", "data", "kt-token-1\n", tokfile, sizeof(tokfile));
    kt_fmt(kc, sizeof(kc), "%s/kc-tokenfile", srv.dir);
    assert_string_equal(t->ns, "velero");
    assert_int_equal(get(t, &fast, "velero", "coffer-key", &k, detail, sizeof(detail), NULL), 0);
    assert_memory_equal(k->bytes, key1, 32);
    engine_key_free(k);
    kube_target_free(t);
    assert_kubectl_sees(kc, "velero", "coffer-key", key1, sizeof(key1));

    kt_fmt(kc, sizeof(kc), "%s/kc-cert", srv.dir);
    kt_write_kubeconfig(&srv, kc, "cert", "file", NULL, NULL);
    assert_int_equal(kube_target_from_kubeconfig(&t, kc, detail, sizeof(detail)), 0);
    assert_non_null(t->cert_pem);
    assert_int_equal(get(t, &fast, "velero", "coffer-key", &k, detail, sizeof(detail), NULL), 0);
    assert_memory_equal(k->bytes, key1, 32);
    engine_key_free(k);
    kube_target_free(t);
    assert_kubectl_sees(kc, "velero", "coffer-key", key1, sizeof(key1));
    assert_true(kt_requests(&srv, "/secrets/coffer-key 200 cert") >= 2); /* ours and kubectl's */
}

/* 401 names the credential; nothing is retried; kubectl is refused too. */
static void test_unauthorized(void **state)
{
    char detail[1024], err[1024];
    engine_key *k = NULL;
    uint8_t buf[64];
    size_t n;
    int before;
    (void)state;

    kt_set_token(&srv, "kt-token-other");
    before = kt_requests(&srv, "/secrets/coffer-key 401");
    assert_int_equal(get(tgt, &fast, "velero", "coffer-key", &k, detail, sizeof(detail), NULL),
                     COFFER_ERR_KUBE_UNAUTHORIZED);
    assert_null(k);
    assert_non_null(strstr(detail, "401"));
    assert_non_null(strstr(detail, "the token of user 'cofferd' in kubeconfig"));
    assert_null(strstr(detail, "kt-token-1")); /* the credential is named, never shown */
    assert_int_equal(kt_requests(&srv, "/secrets/coffer-key 401"), before + 1);
    assert_int_not_equal(kt_kubectl_key(&srv, srv.kubeconfig, "velero", "coffer-key", buf,
                                        sizeof(buf), &n, err, sizeof(err)),
                         0);
    assert_non_null(strstr(err, "Unauthorized"));
    kt_set_token(&srv, "kt-token-1");
}

/* 403 names the RBAC rule (get, secrets, namespace, name); not retried. kubectl agrees. */
static void test_forbidden(void **state)
{
    char detail[1024], err[1024];
    engine_key *k = NULL;
    uint8_t buf[64];
    size_t n;
    (void)state;

    kt_set_forbidden(&srv, "velero/coffer-key\n");
    assert_int_equal(get(tgt, &fast, "velero", "coffer-key", &k, detail, sizeof(detail), NULL),
                     COFFER_ERR_KUBE_FORBIDDEN);
    assert_non_null(strstr(detail, "'get'"));
    assert_non_null(strstr(detail, "'secrets'"));
    assert_non_null(strstr(detail, "namespace 'velero'"));
    assert_non_null(strstr(detail, "resourceNames ['coffer-key']"));
    assert_non_null(strstr(detail, "rbac.yaml"));
    assert_int_equal(kt_requests(&srv, "/secrets/coffer-key 403"), 1);
    assert_int_not_equal(kt_kubectl_key(&srv, srv.kubeconfig, "velero", "coffer-key", buf,
                                        sizeof(buf), &n, err, sizeof(err)),
                         0);
    assert_non_null(strstr(err, "Forbidden"));
    assert_non_null(strstr(err, "cannot get resource \"secrets\""));
    kt_set_forbidden(&srv, "");
}

/* 404 names namespace and Secret; a missing field says so and lists what is there. */
static void test_not_found_and_missing_field(void **state)
{
    char detail[1024], err[1024];
    engine_key *k = NULL;
    uint8_t buf[64];
    size_t n;
    (void)state;

    assert_int_equal(get(tgt, &fast, "velero", "no-such", &k, detail, sizeof(detail), NULL),
                     COFFER_ERR_KEY_MISSING);
    assert_non_null(strstr(detail, "Secret 'no-such' does not exist in namespace 'velero'"));
    assert_int_equal(kt_requests(&srv, "/secrets/no-such 404"), 1);
    assert_int_not_equal(kt_kubectl_key(&srv, srv.kubeconfig, "velero", "no-such", buf, sizeof(buf),
                                        &n, err, sizeof(err)),
                         0);
    assert_non_null(strstr(err, "secrets \"no-such\" not found"));

    kt_put_field(&srv, "velero", "wrong-field", "password", "x", 1);
    kt_put_field(&srv, "velero", "wrong-field", "username", "y", 1);
    assert_int_equal(get(tgt, &fast, "velero", "wrong-field", &k, detail, sizeof(detail), NULL),
                     COFFER_ERR_KEY_MISSING);
    assert_non_null(strstr(detail, "has no field encryptionKey"));
    assert_non_null(strstr(detail, "password, username"));
}

/* 429 with Retry-After: 1 is waited out, then the Secret arrives; kubectl does the same. */
static void test_429_then_success(void **state)
{
    char detail[1024];
    engine_key *k = NULL;
    struct kube_fetch_info info;
    double t[8];
    uint8_t buf[64];
    size_t n;
    (void)state;

    kt_put_field(&srv, "velero", "busy", "encryptionKey", key1, sizeof(key1));
    kt_set_fail(&srv, "velero", "busy", "429 1\n");
    assert_int_equal(get(tgt, &fast, "velero", "busy", &k, detail, sizeof(detail), &info), 0);
    assert_memory_equal(k->bytes, key1, 32);
    assert_int_equal(info.attempts, 2);
    engine_key_free(k);
    assert_int_equal(kt_request_times(&srv, "/secrets/busy ", t, 8), 2);
    assert_true(t[1] - t[0] >= 0.95); /* Retry-After honoured, not the 100 ms backoff */

    kt_set_fail(&srv, "velero", "busy", "429 1\n");
    assert_int_equal(
        kt_kubectl_key(&srv, srv.kubeconfig, "velero", "busy", buf, sizeof(buf), &n, NULL, 0), 0);
    assert_int_equal(kt_requests(&srv, "/secrets/busy 429"), 2);
}

/* 500 and 503 are retried with backoff; then success. */
static void test_5xx_then_success(void **state)
{
    char detail[1024];
    engine_key *k = NULL;
    struct kube_fetch_info info;
    (void)state;

    kt_put_field(&srv, "velero", "flaky", "encryptionKey", key1, sizeof(key1));
    kt_set_fail(&srv, "velero", "flaky", "500\n503\n");
    assert_int_equal(get(tgt, &fast, "velero", "flaky", &k, detail, sizeof(detail), &info), 0);
    assert_int_equal(info.attempts, 3);
    engine_key_free(k);
}

/* 500 that never stops: the fetch gives up within its timeout and says why. */
static void test_5xx_until_timeout(void **state)
{
    struct kube_options o = {1000, 1500, 100};
    char detail[1024];
    engine_key *k = NULL;
    struct kube_fetch_info info;
    double t0;
    (void)state;

    kt_put_field(&srv, "velero", "broken", "encryptionKey", key1, sizeof(key1));
    kt_set_fail(&srv, "velero", "broken",
                "500\n500\n500\n500\n500\n500\n500\n500\n500\n500\n500\n500\n500\n500\n500\n");
    t0 = kt_now();
    assert_int_equal(get(tgt, &o, "velero", "broken", &k, detail, sizeof(detail), &info),
                     COFFER_ERR_KUBE_API);
    assert_true(kt_now() - t0 < 1.5 + 5.0); /* bounded by the timeout (generous margin) */
    assert_true(info.attempts >= 2);
    assert_non_null(strstr(detail, "kept answering 500"));
    assert_non_null(strstr(detail, "etcdserver: request timed out"));
    kt_set_fail(&srv, "velero", "broken", "");
}

/* Retry-After beyond the timeout: fail at once, saying so. */
static void test_retry_after_beyond_timeout(void **state)
{
    struct kube_options o = {1000, 1500, 5};
    char detail[1024];
    engine_key *k = NULL;
    (void)state;

    kt_set_fail(&srv, "velero", "busy", "429 30\n");
    assert_int_equal(get(tgt, &o, "velero", "busy", &k, detail, sizeof(detail), NULL),
                     COFFER_ERR_KUBE_API);
    assert_non_null(strstr(detail, "retry after 30 s, beyond the 1500 ms timeout"));
}

/* A certificate from another CA is refused before any HTTP request; so does kubectl. */
static void test_wrong_ca(void **state)
{
    char kc[PATH_MAX * 2], detail[1024], err[1024];
    struct kube_target *t = NULL;
    engine_key *k = NULL;
    uint8_t buf[64];
    size_t n;
    int before = kt_requests(&srv, " GET ");
    (void)state;

    kt_fmt(kc, sizeof(kc), "%s/kc-other-ca", srv.dir);
    kt_write_kubeconfig(&srv, kc, "token", "other", "kt-token-1", NULL);
    assert_int_equal(kube_target_from_kubeconfig(&t, kc, detail, sizeof(detail)), 0);
    assert_int_equal(get(t, &fast, "velero", "coffer-key", &k, detail, sizeof(detail), NULL),
                     COFFER_ERR_KUBE_TLS);
    assert_non_null(strstr(detail, "other-ca.crt"));
    assert_int_equal(kt_requests(&srv, " GET "), before); /* no request got through */
    assert_int_not_equal(
        kt_kubectl_key(&srv, kc, "velero", "coffer-key", buf, sizeof(buf), &n, err, sizeof(err)),
        0);
    assert_non_null(strstr(err, "certificate"));
    kube_target_free(t);
}

/* The token file is read at each request: a rotated token is used without any reload. */
static void test_token_rotation(void **state)
{
    char tokfile[PATH_MAX * 2], detail[1024];
    struct kube_target *t = NULL;
    engine_key *k = NULL;
    (void)state;

    t = tokenfile_target("kc-rotating", "rotating-token", "file", "kt-token-1", tokfile,
                         sizeof(tokfile));
    assert_int_equal(get(t, &fast, "velero", "coffer-key", &k, detail, sizeof(detail), NULL), 0);
    engine_key_free(k);
    /* the API server now accepts only the new token: the old one is refused ... */
    kt_set_token(&srv, "kt-token-2");
    assert_int_equal(get(t, &fast, "velero", "coffer-key", &k, detail, sizeof(detail), NULL),
                     COFFER_ERR_KUBE_UNAUTHORIZED);
    assert_non_null(strstr(detail, tokfile));
    /* ... until the kubelet writes it to the file */
    assert_int_equal(ts_write_file(tokfile, "kt-token-2\n", 11), 0);
    assert_int_equal(get(t, &fast, "velero", "coffer-key", &k, detail, sizeof(detail), NULL), 0);
    assert_memory_equal(k->bytes, key1, 32);
    engine_key_free(k);
    kube_target_free(t);
    kt_set_token(&srv, "kt-token-1");
}

/* In-cluster: KUBERNETES_SERVICE_HOST/_PORT and the service-account directory. */
static void test_in_cluster(void **state)
{
    char sa[PATH_MAX * 2], path[PATH_MAX * 2], port[16], detail[1024];
    struct kube_target *t = NULL;
    engine_key *k = NULL;
    size_t n = 0;
    uint8_t *ca;
    (void)state;

    kt_fmt(sa, sizeof(sa), "%s/sa", srv.dir);
    mkdir(sa, 0700);
    kt_fmt(path, sizeof(path), "%s/ca.crt", srv.dir);
    ca = ts_read_file(path, &n);
    kt_fmt(path, sizeof(path), "%s/ca.crt", sa);
    assert_int_equal(ts_write_file(path, ca, n), 0);
    free(ca);
    kt_fmt(path, sizeof(path), "%s/token", sa);
    assert_int_equal(ts_write_file(path, "kt-token-1", 10), 0);
    kt_fmt(path, sizeof(path), "%s/namespace", sa);
    assert_int_equal(ts_write_file(path, "velero", 6), 0);

    unsetenv("KUBERNETES_SERVICE_HOST");
    assert_int_equal(kube_target_in_cluster(&t, sa, detail, sizeof(detail)), COFFER_ERR_CONFIG);
    assert_non_null(strstr(detail, "--kubeconfig"));
    kt_fmt(port, sizeof(port), "%d", srv.port);
    setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", port, 1);
    assert_int_equal(kube_target_in_cluster(&t, sa, detail, sizeof(detail)), 0);
    assert_string_equal(t->ns, "velero");
    assert_int_equal(get(t, &fast, "velero", "coffer-key", &k, detail, sizeof(detail), NULL), 0);
    assert_memory_equal(k->bytes, key1, 32);
    engine_key_free(k);
    kube_target_free(t);
    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
}

/* Nothing listens: the fetch fails within its timeout with a sentence naming the server. */
static void test_api_down(void **state)
{
    struct kube_options o = {500, 1500, 100};
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    struct kube_target t;
    char detail[1024];
    engine_key *k = NULL;
    struct kube_fetch_info info;
    double t0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    (void)state;

    /* a port that was free a moment ago: bound, read back and closed */
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    close(fd);
    t = *tgt;
    kt_fmt(t.server, sizeof(t.server), "https://127.0.0.1:%d", ntohs(sa.sin_port));
    t0 = kt_now();
    assert_int_equal(get(&t, &o, "velero", "coffer-key", &k, detail, sizeof(detail), &info),
                     COFFER_ERR_KUBE_API);
    assert_true(kt_now() - t0 < 1.5 + 5.0);
    assert_true(info.attempts >= 2); /* refused connections are retried while time remains */
    assert_non_null(strstr(detail, "could not be reached"));
    assert_non_null(strstr(detail, t.server));
}

/* The server accepts and never answers: KUBE_TIMEOUT within the timeout. */
static void test_api_hangs(void **state)
{
    struct kube_options o = {1000, 1500, 1};
    char detail[1024];
    engine_key *k = NULL;
    double t0;
    (void)state;

    kt_put_field(&srv, "velero", "slow", "encryptionKey", key1, sizeof(key1));
    kt_set_hang(&srv, "velero", "slow", 1);
    t0 = kt_now();
    assert_int_equal(get(tgt, &o, "velero", "slow", &k, detail, sizeof(detail), NULL),
                     COFFER_ERR_KUBE_TIMEOUT);
    assert_true(kt_now() - t0 < 1.5 + 5.0);
    assert_non_null(strstr(detail, "within the timeout (1500 ms"));
    kt_set_hang(&srv, "velero", "slow", 0);
}

/* Invalid names are refused before any request. */
static void test_names_checked_first(void **state)
{
    char detail[1024];
    engine_key *k = NULL;
    int before = kt_requests(&srv, " GET ");
    (void)state;

    assert_int_equal(
        get(tgt, &fast, "velero", "../../namespaces", &k, detail, sizeof(detail), NULL),
        COFFER_ERR_SECRET_NAME);
    assert_int_equal(get(tgt, &fast, "Velero", "coffer-key", &k, detail, sizeof(detail), NULL),
                     COFFER_ERR_SECRET_NAME);
    assert_int_equal(get(tgt, &fast, "velero", "a?b", &k, detail, sizeof(detail), NULL),
                     COFFER_ERR_SECRET_NAME);
    assert_int_equal(kt_requests(&srv, " GET "), before);
}

/* kubeconfig files cofferd refuses, each with a sentence naming the field. */
static void test_kubeconfig_refusals(void **state)
{
    static const struct {
        const char *yaml, *want;
    } cases[] = {
        {"current-context: a\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\n"
         "    insecure-skip-tls-verify: true\ncontexts:\n- name: a\n  context: {cluster: c, user: "
         "u}\nusers:\n- name: u\n  user: {token: t}\n",
         "insecure-skip-tls-verify"},
        {"current-context: a\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:1\n"
         "contexts:\n- name: a\n  context: {cluster: c, user: u}\nusers:\n- name: u\n  user: "
         "{token: t}\n",
         "https://host:port"},
        {"current-context: a\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\n"
         "    certificate-authority-data: QUJD\ncontexts:\n- name: a\n  context: {cluster: c, "
         "user: u}\nusers:\n- name: u\n  user:\n    exec: {command: aws}\n",
         "exec or auth-provider"},
        {"current-context: b\ncontexts:\n- name: a\n  context: {cluster: c, user: u}\n",
         "current-context 'b' is not in contexts"},
        {"current-context: a\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\n"
         "contexts:\n- name: a\n  context: {cluster: c, user: u}\nusers:\n- name: u\n  user: "
         "{token: t}\n",
         "no certificate-authority"},
        {"current-context: [unclosed\n", "not valid YAML"},
    };
    char path[PATH_MAX * 2], detail[1024];
    struct kube_target *t = NULL;
    (void)state;

    kt_fmt(path, sizeof(path), "%s/kc-bad", srv.dir);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(ts_write_file(path, cases[i].yaml, strlen(cases[i].yaml)), 0);
        assert_int_equal(kube_target_from_kubeconfig(&t, path, detail, sizeof(detail)),
                         COFFER_ERR_CONFIG);
        if (strstr(detail, cases[i].want) == NULL)
            fail_msg("case %zu: '%s' lacks '%s'", i, detail, cases[i].want);
        assert_null(t);
    }
}

/* ---- deploy/kubernetes/rbac.yaml, read with libyaml ---- */

static yaml_node_t *ymap(yaml_document_t *d, yaml_node_t *m, const char *key)
{
    if (m == NULL || m->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(d, p->key);
        if (k->type == YAML_SCALAR_NODE && strcmp((char *)k->data.scalar.value, key) == 0)
            return yaml_document_get_node(d, p->value);
    }
    return NULL;
}

static const char *yval(yaml_node_t *n)
{
    return n != NULL && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : "";
}

/* A sequence's scalars joined by ',' into out. */
static void yseq(yaml_document_t *d, yaml_node_t *n, char *out, size_t cap)
{
    out[0] = '\0';
    if (n == NULL || n->type != YAML_SEQUENCE_NODE)
        return;
    for (yaml_node_item_t *i = n->data.sequence.items.start; i < n->data.sequence.items.top; i++)
        kt_fmt(out + strlen(out), cap - strlen(out), "%s%s", out[0] != '\0' ? "," : "",
               yval(yaml_document_get_node(d, *i)));
}

/* The Role grants only `get` on named secrets; the RoleBinding binds it to cofferd's account. */
static void test_rbac_manifest(void **state)
{
    char path[PATH_MAX * 2], buf[512];
    FILE *f;
    yaml_parser_t p;
    int roles = 0, bindings = 0;
    (void)state;

    kt_fmt(path, sizeof(path), "%s/deploy/kubernetes/rbac.yaml", COFFER_SOURCE_DIR);
    assert_non_null(f = fopen(path, "r"));
    assert_true(yaml_parser_initialize(&p));
    yaml_parser_set_input_file(&p, f);
    for (;;) {
        yaml_document_t d;
        yaml_node_t *root, *kind;
        assert_true(yaml_parser_load(&p, &d));
        if ((root = yaml_document_get_root_node(&d)) == NULL) {
            yaml_document_delete(&d);
            break;
        }
        kind = ymap(&d, root, "kind");
        assert_string_equal(yval(ymap(&d, ymap(&d, root, "metadata"), "namespace")), "velero");
        if (strcmp(yval(kind), "Role") == 0) {
            yaml_node_t *rules = ymap(&d, root, "rules"), *rule;
            roles++;
            assert_string_equal(yval(ymap(&d, ymap(&d, root, "metadata"), "name")),
                                "cofferd-secret-reader");
            assert_int_equal(rules->data.sequence.items.top - rules->data.sequence.items.start, 1);
            rule = yaml_document_get_node(&d, *rules->data.sequence.items.start);
            yseq(&d, ymap(&d, rule, "apiGroups"), buf, sizeof(buf));
            assert_string_equal(buf, "");
            yseq(&d, ymap(&d, rule, "resources"), buf, sizeof(buf));
            assert_string_equal(buf, "secrets");
            yseq(&d, ymap(&d, rule, "verbs"), buf, sizeof(buf));
            assert_string_equal(buf, "get"); /* no list, no watch */
            yseq(&d, ymap(&d, rule, "resourceNames"), buf, sizeof(buf));
            assert_string_equal(buf, "coffer-key");
        } else if (strcmp(yval(kind), "RoleBinding") == 0) {
            yaml_node_t *subj = ymap(&d, root, "subjects"), *s0;
            bindings++;
            assert_string_equal(yval(ymap(&d, ymap(&d, root, "roleRef"), "kind")), "Role");
            assert_string_equal(yval(ymap(&d, ymap(&d, root, "roleRef"), "name")),
                                "cofferd-secret-reader");
            assert_int_equal(subj->data.sequence.items.top - subj->data.sequence.items.start, 1);
            s0 = yaml_document_get_node(&d, *subj->data.sequence.items.start);
            assert_string_equal(yval(ymap(&d, s0, "kind")), "ServiceAccount");
            assert_string_equal(yval(ymap(&d, s0, "name")), "cofferd");
            assert_string_equal(yval(ymap(&d, s0, "namespace")), "velero");
        } else {
            fail_msg("unexpected kind '%s' in rbac.yaml", yval(kind));
        }
        yaml_document_delete(&d);
    }
    yaml_parser_delete(&p);
    fclose(f);
    assert_int_equal(roles, 1);
    assert_int_equal(bindings, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_matches_kubectl),
        cmocka_unit_test(test_keygen_text_field),
        cmocka_unit_test(test_kubeconfig_variants),
        cmocka_unit_test(test_unauthorized),
        cmocka_unit_test(test_forbidden),
        cmocka_unit_test(test_not_found_and_missing_field),
        cmocka_unit_test(test_429_then_success),
        cmocka_unit_test(test_5xx_then_success),
        cmocka_unit_test(test_5xx_until_timeout),
        cmocka_unit_test(test_retry_after_beyond_timeout),
        cmocka_unit_test(test_wrong_ca),
        cmocka_unit_test(test_token_rotation),
        cmocka_unit_test(test_in_cluster),
        cmocka_unit_test(test_api_down),
        cmocka_unit_test(test_api_hangs),
        cmocka_unit_test(test_names_checked_first),
        cmocka_unit_test(test_kubeconfig_refusals),
        cmocka_unit_test(test_rbac_manifest),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
