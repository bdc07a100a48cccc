/* SPDX-License-Identifier: Apache-2.0 */
/* Starting the Kubernetes API stand-in, changing its files, and asking kubectl what it serves. */
#include "kube_test_util.h"

#include "test_support.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* snprintf that aborts the test rather than truncate a path. */

void kt_fmt(char *buf, size_t cap, const char *f, ...)
{
    va_list ap;
    int n;
    va_start(ap, f);
    n = vsnprintf(buf, cap, f, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap) {
        fprintf(stderr, "kube_test_util: text too long for its buffer\n");
        abort();
    }
}

double kt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A program on PATH, or NULL. */
static const char *which(const char *prog, char *buf, size_t cap)
{
    const char *path = getenv("PATH");
    char *copy, *save = NULL;
    if (path == NULL)
        path = "/usr/bin:/bin";
    copy = strdup(path);
    for (char *d = strtok_r(copy, ":", &save); d != NULL; d = strtok_r(NULL, ":", &save)) {
        if ((size_t)snprintf(buf, cap, "%s/%s", d, prog) >= cap)
            continue;
        if (access(buf, X_OK) == 0) {
            free(copy);
            return buf;
        }
    }
    free(copy);
    return NULL;
}

static void mkdirs(const char *path)
{
    char buf[PATH_MAX];
    kt_fmt(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        mkdir(buf, 0700);
        *p = '/';
    }
    mkdir(buf, 0700);
}

static void write_text(const char *path, const char *text)
{
    char tmp[PATH_MAX * 2];
    kt_fmt(tmp, sizeof(tmp), "%s.tmp", path);
    if (ts_write_file(tmp, text, strlen(text)) != 0 || rename(tmp, path) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        abort();
    }
}

int kt_start(struct kt_server *s)
{
    char py[PATH_MAX], kc[PATH_MAX], ossl[PATH_MAX], script[PATH_MAX * 2], server[PATH_MAX * 2];
    char cert[PATH_MAX * 2], key[PATH_MAX * 2], ca[PATH_MAX * 2], portfile[PATH_MAX * 2];
    char *tmp;
    int fds[2];

    memset(s, 0, sizeof(*s));
    if (which("python3", py, sizeof(py)) == NULL || which("openssl", ossl, sizeof(ossl)) == NULL ||
        which("kubectl", kc, sizeof(kc)) == NULL)
        ts_skip("python3, openssl and kubectl are needed (scripts/install-deps.sh installs them)");
    tmp = ts_tmpdir();
    kt_fmt(s->dir, sizeof(s->dir), "%s", tmp);
    free(tmp);
    kt_fmt(s->data, sizeof(s->data), "%s/data", s->dir);
    mkdirs(s->data);
    kt_fmt(script, sizeof(script), "%s/kube_certs.sh", COFFER_KUBE_TEST_DIR);
    kt_fmt(server, sizeof(server), "%s/kube_api_server.py", COFFER_KUBE_TEST_DIR);
    {
        char *argv[] = {"/bin/sh", script, s->dir, NULL};
        if (ts_run(argv, NULL, NULL, NULL, NULL) != 0) {
            fprintf(stderr, "kube_certs.sh failed\n");
            return -1;
        }
    }
    kt_set_token(s, "kt-token-1");
    kt_fmt(cert, sizeof(cert), "%s/server.crt", s->dir);
    kt_fmt(key, sizeof(key), "%s/server.key", s->dir);
    kt_fmt(ca, sizeof(ca), "%s/ca.crt", s->dir);
    kt_fmt(portfile, sizeof(portfile), "%s/server.log", s->dir);
    if (pipe(fds) != 0)
        return -1;
    fflush(NULL);
    s->pid = fork();
    if (s->pid < 0)
        return -1;
    if (s->pid == 0) {
        int log = open(portfile, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        dup2(fds[1], 1);
        if (log >= 0)
            dup2(log, 2);
        close(fds[0]);
        close(fds[1]);
        execl(py, py, server, "--cert", cert, "--key", key, "--data", s->data, "--client-ca", ca,
              (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    {
        char line[32] = "";
        size_t n = 0;
        while (n < sizeof(line) - 1) {
            ssize_t r = read(fds[0], line + n, 1);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0 || line[n] == '\n')
                break;
            n++;
        }
        line[n] = '\0';
        close(fds[0]);
        s->port = atoi(line);
    }
    if (s->port <= 0) {
        fprintf(stderr, "the API stand-in did not start (see %s)\n", portfile);
        return -1;
    }
    kt_fmt(s->url, sizeof(s->url), "https://127.0.0.1:%d", s->port);
    kt_fmt(s->kubeconfig, sizeof(s->kubeconfig), "%s/kubeconfig", s->dir);
    kt_write_kubeconfig(s, s->kubeconfig, "token", "file", "kt-token-1", NULL);
    return 0;
}

void kt_kill(struct kt_server *s)
{
    int st;
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        while (waitpid(s->pid, &st, 0) < 0 && errno == EINTR)
            ;
        s->pid = 0;
    }
}

void kt_stop(struct kt_server *s)
{
    kt_kill(s);
    if (s->dir[0] != '\0')
        ts_rmtree(s->dir);
    s->dir[0] = '\0';
}

void kt_put_field(struct kt_server *s, const char *ns, const char *name, const char *field,
                  const void *bytes, size_t len)
{
    char dir[PATH_MAX * 2], path[PATH_MAX * 2], tmp[PATH_MAX * 2];
    kt_fmt(dir, sizeof(dir), "%s/secrets/%s/%s", s->data, ns, name);
    mkdirs(dir);
    kt_fmt(path, sizeof(path), "%s/%s", dir, field);
    kt_fmt(tmp, sizeof(tmp), "%s/.%s.tmp", dir, field);
    if (ts_write_file(tmp, bytes, len) != 0 || rename(tmp, path) != 0)
        abort();
}

void kt_rm_secret(struct kt_server *s, const char *ns, const char *name)
{
    char dir[PATH_MAX * 2];
    kt_fmt(dir, sizeof(dir), "%s/secrets/%s/%s", s->data, ns, name);
    ts_rmtree(dir);
}

void kt_set_token(struct kt_server *s, const char *token)
{
    char path[PATH_MAX * 2];
    kt_fmt(path, sizeof(path), "%s/token", s->data);
    if (token == NULL)
        unlink(path);
    else
        write_text(path, token);
}

void kt_set_forbidden(struct kt_server *s, const char *lines)
{
    char path[PATH_MAX * 2];
    kt_fmt(path, sizeof(path), "%s/forbidden", s->data);
    write_text(path, lines);
}

void kt_set_fail(struct kt_server *s, const char *ns, const char *name, const char *lines)
{
    char dir[PATH_MAX * 2], path[PATH_MAX * 2];
    kt_fmt(dir, sizeof(dir), "%s/fail/%s", s->data, ns);
    mkdirs(dir);
    kt_fmt(path, sizeof(path), "%s/%s", dir, name);
    write_text(path, lines);
}

void kt_set_hang(struct kt_server *s, const char *ns, const char *name, int on)
{
    char dir[PATH_MAX * 2], path[PATH_MAX * 2];
    kt_fmt(dir, sizeof(dir), "%s/hang/%s", s->data, ns);
    mkdirs(dir);
    kt_fmt(path, sizeof(path), "%s/%s", dir, name);
    if (on)
        write_text(path, "1");
    else
        unlink(path);
}

int kt_request_times(const struct kt_server *s, const char *needle, double *times, int max)
{
    char path[PATH_MAX * 2];
    size_t len = 0;
    char *text, *save = NULL;
    int n = 0;

    kt_fmt(path, sizeof(path), "%s/requests.log", s->data);
    if ((text = (char *)ts_read_file(path, &len)) == NULL)
        return 0;
    for (char *l = strtok_r(text, "\n", &save); l != NULL; l = strtok_r(NULL, "\n", &save)) {
        if (strstr(l, needle) == NULL)
            continue;
        if (times != NULL && n < max)
            times[n] = strtod(l, NULL);
        n++;
    }
    free(text);
    return n;
}

int kt_requests(const struct kt_server *s, const char *needle)
{
    return kt_request_times(s, needle, NULL, 0);
}

static char *b64_file(const char *path)
{
    size_t len = 0;
    uint8_t *raw = ts_read_file(path, &len);
    char *out;
    if (raw == NULL)
        abort();
    out = calloc(1, len / 3 * 4 + 8);
    EVP_EncodeBlock((unsigned char *)out, raw, (int)len);
    free(raw);
    return out;
}

void kt_write_kubeconfig(const struct kt_server *s, const char *path, const char *kind,
                         const char *ca, const char *token, const char *token_file)
{
    char cafile[PATH_MAX * 2], certfile[PATH_MAX * 2], keyfile[PATH_MAX * 2];
    char *text = malloc(65536), *ca_line, *user_lines;
    kt_fmt(cafile, sizeof(cafile), "%s/%s", s->dir,
           strcmp(ca, "other") == 0 ? "other-ca.crt" : "ca.crt");
    kt_fmt(certfile, sizeof(certfile), "%s/client.crt", s->dir);
    kt_fmt(keyfile, sizeof(keyfile), "%s/client.key", s->dir);
    ca_line = malloc(16384);
    user_lines = malloc(32768);
    if (strcmp(ca, "data") == 0) {
        char *b = b64_file(cafile);
        kt_fmt(ca_line, 16384, "    certificate-authority-data: %s\n", b);
        free(b);
    } else {
        kt_fmt(ca_line, 16384, "    certificate-authority: %s\n", cafile);
    }
    if (strcmp(kind, "token") == 0) {
        kt_fmt(user_lines, 32768, "    token: %s\n", token);
    } else if (strcmp(kind, "tokenfile") == 0) {
        kt_fmt(user_lines, 32768, "    tokenFile: %s\n", token_file);
    } else {
        char *c = b64_file(certfile), *k = b64_file(keyfile);
        kt_fmt(user_lines, 32768, "    client-certificate-data: %s\n    client-key-data: %s\n", c,
               k);
        free(c);
        free(k);
    }
    kt_fmt(text, 65536,
           "apiVersion: v1\n"
           "kind: Config\n"
           "preferences: {}\n"
           "current-context: coffer-test\n"
           "clusters:\n"
           "- name: standin\n"
           "  cluster:\n"
           "    server: %s\n"
           "%s"
           "contexts:\n"
           "- name: other\n"
           "  context: {cluster: nowhere, user: nobody}\n"
           "- name: coffer-test\n"
           "  context:\n"
           "    cluster: standin\n"
           "    user: cofferd\n"
           "    namespace: velero\n"
           "users:\n"
           "- name: cofferd\n"
           "  user:\n"
           "%s",
           s->url, ca_line, user_lines);
    write_text(path, text);
    chmod(path, 0600);
    free(text);
    free(ca_line);
    free(user_lines);
}

int kt_kubectl_key(const struct kt_server *s, const char *kc, const char *ns, const char *name,
                   uint8_t *out, size_t cap, size_t *outlen, char *err, size_t errlen)
{
    char bin[PATH_MAX], outp[PATH_MAX * 2], errp[PATH_MAX * 2], cache[PATH_MAX * 2];
    char home[PATH_MAX * 2], homeenv[PATH_MAX * 2];
    char *argv[] = {bin,   "--kubeconfig", (char *)kc,   "--cache-dir", cache,
                    "get", "secret",       (char *)name, "-n",          (char *)ns,
                    "-o",  "json",         NULL};
    char *env[] = {homeenv, NULL};
    json_t *root;
    const char *b64;
    size_t n = 0;
    int r;

    *outlen = 0;
    if (which("kubectl", bin, sizeof(bin)) == NULL)
        return -1;
    kt_fmt(outp, sizeof(outp), "%s/kubectl.out", s->dir);
    kt_fmt(errp, sizeof(errp), "%s/kubectl.err", s->dir);
    kt_fmt(cache, sizeof(cache), "%s/kubectl-cache", s->dir);
    kt_fmt(home, sizeof(home), "%s/home", s->dir);
    mkdirs(home);
    kt_fmt(homeenv, sizeof(homeenv), "HOME=%s", home);
    r = ts_run(argv, env, NULL, outp, errp);
    if (err != NULL) {
        uint8_t *e = ts_read_file(errp, &n);
        kt_fmt(err, errlen, "%s", e != NULL ? (char *)e : "");
        free(e);
    }
    if (r != 0)
        return r;
    {
        uint8_t *text = ts_read_file(outp, &n);
        root = text != NULL ? json_loadb((char *)text, n, 0, NULL) : NULL;
        free(text);
    }
    b64 = json_string_value(json_object_get(json_object_get(root, "data"), "encryptionKey"));
    if (b64 == NULL || strlen(b64) / 4 * 3 > cap + 2) {
        json_decref(root);
        return -1;
    }
    {
        uint8_t *tmp = calloc(1, strlen(b64) + 4);
        int m = EVP_DecodeBlock(tmp, (const unsigned char *)b64, (int)strlen(b64));
        size_t pad = strlen(b64) >= 2 && b64[strlen(b64) - 1] == '='
                         ? (b64[strlen(b64) - 2] == '=' ? 2 : 1)
                         : 0;
        if (m < 0 || (size_t)m - pad > cap) {
            free(tmp);
            json_decref(root);
            return -1;
        }
        memcpy(out, tmp, (size_t)m - pad);
        *outlen = (size_t)m - pad;
        free(tmp);
    }
    json_decref(root);
    return 0;
}
