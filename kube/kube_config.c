/* SPDX-License-Identifier: Apache-2.0 */
/* Loading the API endpoint and credential: in-cluster files, or a kubeconfig parsed with libyaml.
 */
#include "kube_config.h"

#include "coffer_error.h"
#include "engine_secmem.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#define TOKEN_MAX (64 * 1024) /* a bearer token longer than this is refused */

int kube_base64_decode(const char *in, size_t inlen, unsigned char *out, size_t cap, size_t *outlen)
{
    size_t pad = 0;
    int n;

    *outlen = 0;
    if (inlen == 0)
        return 0;
    if (inlen % 4 != 0 || inlen / 4 * 3 > cap || inlen > 0x7fffffff)
        return -1;
    for (size_t i = 0; i < inlen; i++)
        if (in[i] == ' ' || in[i] == '\n' || in[i] == '\r' || in[i] == '\t')
            return -1; /* EVP_DecodeBlock would skip some of these silently */
    if (in[inlen - 1] == '=')
        pad = in[inlen - 2] == '=' ? 2 : 1;
    n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)inlen);
    if (n < 0 || (size_t)n < pad)
        return -1;
    *outlen = (size_t)n - pad;
    return 0;
}

/*
 * Read a whole file of at most max bytes, NUL-terminated; in locked memory when secure. Returns
 * 0, or -1 with errno (EFBIG when too large).
 */
static int read_all(const char *path, size_t max, int secure, char **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    char *buf;
    size_t n = 0;
    int e;

    *out = NULL;
    *len = 0;
    if (fd < 0)
        return -1;
    buf = secure ? engine_secmem_alloc(max + 2) : malloc(max + 2);
    if (buf == NULL) {
        close(fd);
        errno = ENOMEM;
        return -1;
    }
    for (;;) {
        ssize_t r = read(fd, buf + n, max + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            goto fail;
        if (r == 0)
            break;
        n += (size_t)r;
        if (n > max) {
            errno = EFBIG;
            goto fail;
        }
    }
    close(fd);
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
fail:
    e = errno;
    close(fd);
    if (secure)
        engine_secmem_free(buf);
    else
        free(buf);
    errno = e;
    return -1;
}

static const char *errno_text(int e)
{
    return e == EFBIG ? "the file is too large" : strerror(e);
}

/* Strip trailing whitespace (a token or namespace file ends in a newline, or not). */
static size_t rstrip(char *s, size_t n)
{
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    return n;
}

static int token_ok(const char *t, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)t[i] <= 0x20 || (unsigned char)t[i] >= 0x7f)
            return 0; /* it goes into an HTTP header */
    return 1;
}

char *kube_target_token(const struct kube_target *t, int *err, char *detail, size_t detaillen)
{
    char *buf = NULL;
    size_t n = 0;

    *err = 0;
    if (t->token != NULL) {
        size_t tl = strlen(t->token);
        if ((buf = engine_secmem_alloc(tl + 1)) == NULL) {
            *err = COFFER_ERR_NOMEM;
            return NULL;
        }
        memcpy(buf, t->token, tl + 1);
        return buf;
    }
    if (t->token_file[0] == '\0')
        return NULL;
    if (read_all(t->token_file, TOKEN_MAX, 1, &buf, &n) != 0) {
        snprintf(detail, detaillen, "the Kubernetes token file %s cannot be read: %s",
                 t->token_file, errno_text(errno));
        *err = COFFER_ERR_KEY_READ;
        return NULL;
    }
    n = rstrip(buf, n);
    if (!token_ok(buf, n)) {
        snprintf(detail, detaillen,
                 "the Kubernetes token file %s is empty or holds characters a token cannot have",
                 t->token_file);
        engine_secmem_free(buf);
        *err = COFFER_ERR_KEY_READ;
        return NULL;
    }
    return buf;
}

void kube_target_free(struct kube_target *t)
{
    if (t == NULL)
        return;
    free(t->ca_pem);
    free(t->cert_pem);
    engine_secmem_free(t->key_pem);
    engine_secmem_free(t->token);
    free(t);
}

/* A PEM file into *pem (malloc, or locked memory when secure). */
static int load_pem(const char *path, int secure, char **pem, size_t *len, const char *what,
                    const char *where, char *detail, size_t detaillen)
{
    if (read_all(path, KUBE_PEM_MAX, secure, pem, len) != 0) {
        snprintf(detail, detaillen, "%s: the %s file %s cannot be read: %s", where, what, path,
                 errno_text(errno));
        return COFFER_ERR_CONFIG;
    }
    if (*len == 0) {
        snprintf(detail, detaillen, "%s: the %s file %s is empty", where, what, path);
        return COFFER_ERR_CONFIG;
    }
    return 0;
}

int kube_target_in_cluster(struct kube_target **out, const char *sa_dir, char *detail,
                           size_t detaillen)
{
    const char *host = getenv("KUBERNETES_SERVICE_HOST"), *port = getenv("KUBERNETES_SERVICE_PORT");
    struct kube_target *t = calloc(1, sizeof(*t));
    char path[4200], *ns = NULL;
    size_t nslen = 0;
    int r = COFFER_ERR_CONFIG;

    *out = NULL;
    if (t == NULL)
        return COFFER_ERR_NOMEM;
    if (sa_dir == NULL || sa_dir[0] == '\0')
        sa_dir = KUBE_SA_DIR_DEFAULT;
    if (host == NULL || host[0] == '\0' || port == NULL || port[0] == '\0') {
        snprintf(detail, detaillen,
                 "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set, so cofferd is "
                 "not running in a Kubernetes pod; give --kubeconfig FILE outside a cluster");
        goto out;
    }
    if (strspn(port, "0123456789") != strlen(port) || strlen(port) > 5 ||
        strpbrk(host, "/@?# ") != NULL) {
        snprintf(detail, detaillen,
                 "KUBERNETES_SERVICE_HOST/_PORT do not name a host and port ('%.100s', '%.10s')",
                 host, port);
        goto out;
    }
    /* an IPv6 service address needs brackets in a URL */
    if ((size_t)snprintf(t->server, sizeof(t->server),
                         strchr(host, ':') != NULL ? "https://[%s]:%s" : "https://%s:%s", host,
                         port) >= sizeof(t->server))
        goto out;
    snprintf(path, sizeof(path), "%s/ca.crt", sa_dir);
    if ((r = load_pem(path, 0, &t->ca_pem, &t->ca_len, "CA", "in-cluster service account", detail,
                      detaillen)) != 0)
        goto out;
    snprintf(t->ca_origin, sizeof(t->ca_origin), "the CA in %.4096s", path);
    snprintf(t->token_file, sizeof(t->token_file), "%s/token", sa_dir);
    if (access(t->token_file, R_OK) != 0) {
        snprintf(detail, detaillen,
                 "in-cluster service account: the token file %s cannot be read: %s (is "
                 "automountServiceAccountToken off?)",
                 t->token_file, strerror(errno));
        r = COFFER_ERR_CONFIG;
        goto out;
    }
    snprintf(t->credential, sizeof(t->credential), "the service-account token in %s",
             t->token_file);
    snprintf(path, sizeof(path), "%s/namespace", sa_dir);
    if (read_all(path, 256, 0, &ns, &nslen) == 0) {
        nslen = rstrip(ns, nslen);
        if (nslen < sizeof(t->ns))
            memcpy(t->ns, ns, nslen + 1);
        free(ns);
    }
    *out = t;
    t = NULL;
    r = 0;
out:
    kube_target_free(t);
    return r;
}

/* ---- kubeconfig ---- */

struct kc {
    yaml_document_t doc;
    const char *path;
    char dir[4096]; /* the file's directory, for relative paths */
    char *detail;
    size_t detaillen;
};

static yaml_node_t *map_get(struct kc *k, yaml_node_t *map, const char *key)
{
    if (map == NULL || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *kn = yaml_document_get_node(&k->doc, p->key);
        if (kn != NULL && kn->type == YAML_SCALAR_NODE && kn->data.scalar.length == strlen(key) &&
            memcmp(kn->data.scalar.value, key, kn->data.scalar.length) == 0)
            return yaml_document_get_node(&k->doc, p->value);
    }
    return NULL;
}

/* A scalar's text (NUL-terminated by libyaml), or NULL when absent or not a scalar. */
static const char *scalar(yaml_node_t *n)
{
    return n != NULL && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* The `what` entry of list `list` (clusters, users, contexts) whose name is `name`. */
static yaml_node_t *named(struct kc *k, const char *list, const char *what, const char *name)
{
    yaml_node_t *seq = map_get(k, yaml_document_get_root_node(&k->doc), list);
    if (seq == NULL || seq->type != YAML_SEQUENCE_NODE)
        return NULL;
    for (yaml_node_item_t *i = seq->data.sequence.items.start; i < seq->data.sequence.items.top;
         i++) {
        yaml_node_t *e = yaml_document_get_node(&k->doc, *i);
        const char *n = scalar(map_get(k, e, "name"));
        if (n != NULL && strcmp(n, name) == 0)
            return map_get(k, e, what);
    }
    return NULL;
}

/* A path from the file, relative to its directory; 0, or -1 when too long. */
static int kc_path(struct kc *k, const char *p, char *out, size_t cap)
{
    int n = p[0] == '/' ? snprintf(out, cap, "%s", p) : snprintf(out, cap, "%s/%s", k->dir, p);
    if (n < 0 || (size_t)n >= cap) {
        snprintf(k->detail, k->detaillen, "kubeconfig %s: the path '%.200s' is too long", k->path,
                 p);
        return -1;
    }
    return 0;
}

/* field-data (base64) or field (a file) into *pem; 1 when neither is set. */
static int kc_pem(struct kc *k, yaml_node_t *obj, const char *field, const char *what, int secure,
                  char **pem, size_t *len, char *origin, size_t originlen, const char *where)
{
    char dataname[64], path[4096];
    const char *data, *file;

    snprintf(dataname, sizeof(dataname), "%s-data", field);
    data = scalar(map_get(k, obj, dataname));
    file = scalar(map_get(k, obj, field));
    if (data != NULL && data[0] != '\0') {
        size_t dl = strlen(data), n = 0;
        char *buf = secure ? engine_secmem_alloc(dl / 4 * 3 + 4) : malloc(dl / 4 * 3 + 4);
        if (buf == NULL)
            return COFFER_ERR_NOMEM;
        if (kube_base64_decode(data, dl, (unsigned char *)buf, dl / 4 * 3 + 3, &n) != 0 || n == 0) {
            snprintf(k->detail, k->detaillen, "kubeconfig %s: %s %s is not base64", k->path, where,
                     dataname);
            if (secure)
                engine_secmem_free(buf);
            else
                free(buf);
            return COFFER_ERR_CONFIG;
        }
        buf[n] = '\0';
        *pem = buf;
        *len = n;
        if (origin != NULL)
            snprintf(origin, originlen, "the %s-data of %s in kubeconfig %s", field, where,
                     k->path);
        return 0;
    }
    if (file != NULL && file[0] != '\0') {
        char where2[600];
        if (kc_path(k, file, path, sizeof(path)) != 0)
            return COFFER_ERR_CONFIG;
        snprintf(where2, sizeof(where2), "kubeconfig %s, %s", k->path, where);
        if (load_pem(path, secure, pem, len, what, where2, k->detail, k->detaillen) != 0)
            return COFFER_ERR_CONFIG;
        if (origin != NULL)
            snprintf(origin, originlen, "the CA in %s", path);
        return 0;
    }
    return 1;
}

static int kc_parse(struct kc *k, const char *text, size_t len)
{
    yaml_parser_t p;
    int ok;

    if (!yaml_parser_initialize(&p))
        return COFFER_ERR_NOMEM;
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    ok = yaml_parser_load(&p, &k->doc);
    if (!ok) {
        snprintf(k->detail, k->detaillen, "kubeconfig %s is not valid YAML: %s at line %lu",
                 k->path, p.problem != NULL ? p.problem : "parse error",
                 (unsigned long)p.problem_mark.line + 1);
        yaml_parser_delete(&p);
        return COFFER_ERR_CONFIG;
    }
    yaml_parser_delete(&p);
    if (yaml_document_get_root_node(&k->doc) == NULL) {
        yaml_document_delete(&k->doc);
        snprintf(k->detail, k->detaillen, "kubeconfig %s is empty", k->path);
        return COFFER_ERR_CONFIG;
    }
    return 0;
}

static int kc_user(struct kc *k, struct kube_target *t, yaml_node_t *user, const char *uname)
{
    char where[400], path[4096];
    const char *token = scalar(map_get(k, user, "token"));
    const char *token_file = scalar(map_get(k, user, "tokenFile"));
    int r;

    snprintf(where, sizeof(where), "user '%.200s'", uname);
    if (map_get(k, user, "exec") != NULL || map_get(k, user, "auth-provider") != NULL) {
        snprintf(k->detail, k->detaillen,
                 "kubeconfig %s: %s uses an exec or auth-provider plugin, which cofferd does not "
                 "run; give it a token, tokenFile or client certificate",
                 k->path, where);
        return COFFER_ERR_CONFIG;
    }
    if (map_get(k, user, "username") != NULL || map_get(k, user, "password") != NULL) {
        snprintf(k->detail, k->detaillen,
                 "kubeconfig %s: %s uses basic authentication, which Kubernetes no longer "
                 "supports; give it a token, tokenFile or client certificate",
                 k->path, where);
        return COFFER_ERR_CONFIG;
    }
    r = kc_pem(k, user, "client-certificate", "client certificate", 0, &t->cert_pem, &t->cert_len,
               NULL, 0, where);
    if (r < 0)
        return r;
    r = kc_pem(k, user, "client-key", "client key", 1, &t->key_pem, &t->key_len, NULL, 0, where);
    if (r < 0)
        return r;
    if ((t->cert_pem == NULL) != (t->key_pem == NULL)) {
        snprintf(k->detail, k->detaillen,
                 "kubeconfig %s: %s has a client certificate without its key or a key without "
                 "its certificate",
                 k->path, where);
        return COFFER_ERR_CONFIG;
    }
    if (token != NULL && token[0] != '\0') {
        size_t tl = strlen(token);
        if (!token_ok(token, tl) || tl > TOKEN_MAX) {
            snprintf(k->detail, k->detaillen, "kubeconfig %s: %s has a malformed token", k->path,
                     where);
            return COFFER_ERR_CONFIG;
        }
        if ((t->token = engine_secmem_alloc(tl + 1)) == NULL)
            return COFFER_ERR_NOMEM;
        memcpy(t->token, token, tl + 1);
        snprintf(t->credential, sizeof(t->credential), "the token of %s in kubeconfig %s", where,
                 k->path);
    } else if (token_file != NULL && token_file[0] != '\0') {
        if (kc_path(k, token_file, path, sizeof(path)) != 0)
            return COFFER_ERR_CONFIG;
        snprintf(t->token_file, sizeof(t->token_file), "%s", path);
        snprintf(t->credential, sizeof(t->credential),
                 "the token in file %.1000s (tokenFile of %.300s in kubeconfig %.1000s)", path,
                 where, k->path);
    } else if (t->cert_pem != NULL) {
        snprintf(t->credential, sizeof(t->credential),
                 "the client certificate of %s in kubeconfig %s", where, k->path);
    } else {
        snprintf(k->detail, k->detaillen,
                 "kubeconfig %s: %s has no token, tokenFile or client certificate", k->path, where);
        return COFFER_ERR_CONFIG;
    }
    return 0;
}

int kube_target_from_kubeconfig(struct kube_target **out, const char *path, char *detail,
                                size_t detaillen)
{
    struct kc k;
    struct kube_target *t = calloc(1, sizeof(*t));
    char *text = NULL, where[400];
    size_t len = 0;
    const char *ctxname, *cluster_name, *user_name, *ns, *server, *skip;
    yaml_node_t *ctx, *cluster, *user;
    int r = COFFER_ERR_CONFIG, have_doc = 0;

    *out = NULL;
    memset(&k, 0, sizeof(k));
    k.path = path;
    k.detail = detail;
    k.detaillen = detaillen;
    if (t == NULL)
        return COFFER_ERR_NOMEM;
    snprintf(k.dir, sizeof(k.dir), "%s", path);
    {
        char *slash = strrchr(k.dir, '/');
        if (slash == NULL)
            snprintf(k.dir, sizeof(k.dir), ".");
        else if (slash == k.dir)
            slash[1] = '\0';
        else
            *slash = '\0';
    }
    /* kubeconfig files may hold tokens and keys: read into locked memory */
    if (read_all(path, KUBE_PEM_MAX * 4, 1, &text, &len) != 0) {
        snprintf(detail, detaillen, "kubeconfig %s cannot be read: %s", path, errno_text(errno));
        goto out;
    }
    if ((r = kc_parse(&k, text, len)) != 0)
        goto out;
    have_doc = 1;
    r = COFFER_ERR_CONFIG;
    ctxname = scalar(map_get(&k, yaml_document_get_root_node(&k.doc), "current-context"));
    if (ctxname == NULL || ctxname[0] == '\0') {
        snprintf(detail, detaillen, "kubeconfig %s has no current-context", path);
        goto out;
    }
    if ((ctx = named(&k, "contexts", "context", ctxname)) == NULL) {
        snprintf(detail, detaillen, "kubeconfig %s: current-context '%.200s' is not in contexts",
                 path, ctxname);
        goto out;
    }
    cluster_name = scalar(map_get(&k, ctx, "cluster"));
    user_name = scalar(map_get(&k, ctx, "user"));
    ns = scalar(map_get(&k, ctx, "namespace"));
    if (cluster_name == NULL ||
        (cluster = named(&k, "clusters", "cluster", cluster_name)) == NULL) {
        snprintf(detail, detaillen, "kubeconfig %s: context '%.200s' names no known cluster", path,
                 ctxname);
        goto out;
    }
    if (user_name == NULL || (user = named(&k, "users", "user", user_name)) == NULL) {
        snprintf(detail, detaillen, "kubeconfig %s: context '%.200s' names no known user", path,
                 ctxname);
        goto out;
    }
    snprintf(where, sizeof(where), "cluster '%.200s'", cluster_name);
    server = scalar(map_get(&k, cluster, "server"));
    if (server == NULL || strncmp(server, "https://", 8) != 0 || strlen(server) <= 8 ||
        strlen(server) >= sizeof(t->server) || strpbrk(server, " \r\n\t?#") != NULL) {
        snprintf(detail, detaillen,
                 "kubeconfig %s: %s needs a server of the form https://host:port (cofferd "
                 "talks to the API only over verified TLS)",
                 path, where);
        goto out;
    }
    snprintf(t->server, sizeof(t->server), "%s", server);
    while (strlen(t->server) > 8 && t->server[strlen(t->server) - 1] == '/')
        t->server[strlen(t->server) - 1] = '\0';
    skip = scalar(map_get(&k, cluster, "insecure-skip-tls-verify"));
    if (skip != NULL && strcmp(skip, "true") == 0) {
        snprintf(detail, detaillen,
                 "kubeconfig %s: %s sets insecure-skip-tls-verify; cofferd always verifies the "
                 "API server, so give certificate-authority or certificate-authority-data instead",
                 path, where);
        goto out;
    }
    r = kc_pem(&k, cluster, "certificate-authority", "CA", 0, &t->ca_pem, &t->ca_len, t->ca_origin,
               sizeof(t->ca_origin), where);
    if (r == 1) {
        snprintf(detail, detaillen,
                 "kubeconfig %s: %s has no certificate-authority or certificate-authority-data; "
                 "cofferd verifies the API server only against a CA given for it",
                 path, where);
        r = COFFER_ERR_CONFIG;
    }
    if (r != 0)
        goto out;
    if ((r = kc_user(&k, t, user, user_name)) != 0)
        goto out;
    if (ns != NULL && strlen(ns) < sizeof(t->ns))
        snprintf(t->ns, sizeof(t->ns), "%s", ns);
    *out = t;
    t = NULL;
    r = 0;
out:
    if (have_doc) {
        /* scalars may hold a token or key: wipe them before libyaml frees them */
        for (yaml_node_t *n = k.doc.nodes.start; n < k.doc.nodes.top; n++)
            if (n->type == YAML_SCALAR_NODE)
                engine_secmem_wipe(n->data.scalar.value, n->data.scalar.length);
        yaml_document_delete(&k.doc);
    }
    engine_secmem_free(text);
    kube_target_free(t);
    return r;
}
