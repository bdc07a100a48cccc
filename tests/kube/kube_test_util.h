/* SPDX-License-Identifier: Apache-2.0 */
/* The Kubernetes API stand-in for tests: certificates, the server process, its files, kubectl. */
#ifndef KUBE_TEST_UTIL_H
#define KUBE_TEST_UTIL_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * One stand-in API server (tests/kube/kube_api_server.py) on 127.0.0.1:port with a throwaway
 * PKI made by tests/kube/kube_certs.sh (the openssl command) in dir. Not thread-safe: the test's
 * main thread only.
 */
struct kt_server {
    char dir[PATH_MAX];       /* private temporary directory */
    char data[PATH_MAX + 16]; /* the server's DATA directory */
    char url[128];            /* https://127.0.0.1:PORT */
    int port;
    pid_t pid;
    char kubeconfig[PATH_MAX + 16]; /* token "kt-token-1" inline, CA file */
};

/* Make the PKI, start the server, write kubeconfig; token "kt-token-1" accepted. Skips (ts_skip)
 * when python3, openssl or kubectl is missing. Returns 0 or -1. */
int kt_start(struct kt_server *s);
/* Stop the server and remove dir. */
void kt_stop(struct kt_server *s);
/* Stop only the server process (the API goes down; files stay). */
void kt_kill(struct kt_server *s);

/* Secret ns/name gets field (raw bytes); the namespace exists afterwards. */
void kt_put_field(struct kt_server *s, const char *ns, const char *name, const char *field,
                  const void *bytes, size_t len);
void kt_rm_secret(struct kt_server *s, const char *ns, const char *name);
/* The token the server accepts (NULL: none). */
void kt_set_token(struct kt_server *s, const char *token);
/* Lines "NS/NAME" RBAC denies ("" for none). */
void kt_set_forbidden(struct kt_server *s, const char *lines);
/* Failures for ns/name, one "STATUS [RETRY_AFTER]" line per coming request. */
void kt_set_fail(struct kt_server *s, const char *ns, const char *name, const char *lines);
/* Requests of ns/name hang (1) or not (0). */
void kt_set_hang(struct kt_server *s, const char *ns, const char *name, int on);

/* How many requests.log lines contain needle (e.g. "/namespaces/velero/secrets/k "). */
int kt_requests(const struct kt_server *s, const char *needle);
/* The unix times of the requests matching needle, at most max; returns how many. */
int kt_request_times(const struct kt_server *s, const char *needle, double *times, int max);

/*
 * Write a kubeconfig at path for this server. kind: "token" (inline token), "tokenfile" (user
 * tokenFile = token_file), "cert" (client-certificate-data/-key-data, no token); ca: "file",
 * "data" or "other" (the unrelated CA's file).
 */
void kt_write_kubeconfig(const struct kt_server *s, const char *path, const char *kind,
                         const char *ca, const char *token, const char *token_file);

/*
 * kubectl --kubeconfig kc get secret name -n ns -o json: 0 and the decoded encryptionKey in
 * out (*outlen bytes, at most cap), or kubectl's exit status (its stderr in err, NUL-ended, when
 * err != NULL).
 */
int kt_kubectl_key(const struct kt_server *s, const char *kc, const char *ns, const char *name,
                   uint8_t *out, size_t cap, size_t *outlen, char *err, size_t errlen);

/* snprintf that aborts the test rather than truncate (paths). */
void kt_fmt(char *buf, size_t cap, const char *f, ...) __attribute__((format(printf, 3, 4)));

/* Monotonic seconds. */
double kt_now(void);

#endif
