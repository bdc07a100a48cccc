/* SPDX-License-Identifier: Apache-2.0 */
/* Where the Kubernetes API is and who we are: in-cluster service-account settings or a kubeconfig.
 */
#ifndef KUBE_CONFIG_H
#define KUBE_CONFIG_H

#include <stddef.h>

#define KUBE_SA_DIR_DEFAULT "/var/run/secrets/kubernetes.io/serviceaccount"
#define KUBE_PEM_MAX                                                                               \
    (256 * 1024) /* a CA bundle, certificate or key file larger than this is refused */

/*
 * An API endpoint and the credential to present, immutable once loaded. Any thread may read it;
 * kube_target_free is the owner's (one thread, when no request uses it any more).
 *
 * The CA is held as PEM bytes (from a file, or the kubeconfig's base64 certificate-authority-data)
 * and always verified: there is no way to turn verification off, and a kubeconfig that asks for
 * insecure-skip-tls-verify is refused. The client key and a static token live in locked memory
 * (engine_secmem). A token *file* is not read here but at every request (kube_target_token), so a
 * rotated projected service-account token is used as soon as it is on disk.
 */
struct kube_target {
    char server[1024]; /* https://host[:port], no trailing slash */
    char *ca_pem;      /* malloc, NUL-terminated */
    size_t ca_len;
    char ca_origin[4200]; /* "file /path" or "certificate-authority-data of cluster 'x'" */
    char *cert_pem;       /* client certificate (malloc) or NULL */
    size_t cert_len;
    char *key_pem; /* client key (engine_secmem) or NULL */
    size_t key_len;
    char *token;           /* static bearer token (engine_secmem) or NULL */
    char token_file[4096]; /* bearer token file, re-read at each request, or "" */
    char credential[4400]; /* what a 401 names: "the token in file ..." (never the secret) */
    char ns[64];           /* the service account's or the context's namespace, or "" */
};

/*
 * In-cluster settings: the API at https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT, the
 * CA <sa_dir>/ca.crt, the token file <sa_dir>/token and the namespace <sa_dir>/namespace (sa_dir
 * NULL means KUBE_SA_DIR_DEFAULT). Blocking file reads: call it off the io_uring threads.
 * Returns 0 and *out (free with kube_target_free), or COFFER_ERR_CONFIG with one sentence in
 * detail saying what is missing and how to fix it.
 */
int kube_target_in_cluster(struct kube_target **out, const char *sa_dir, char *detail,
                           size_t detaillen) __attribute__((warn_unused_result));

/*
 * A kubeconfig file's current context (libyaml): the cluster's server and CA
 * (certificate-authority or -data), the user's token, tokenFile, client-certificate(-data) and
 * client-key(-data), the context's namespace. Relative paths are relative to the file's
 * directory. exec and auth-provider credentials are refused (cofferd runs no plugins). Returns 0
 * and *out, or COFFER_ERR_CONFIG with one sentence in detail naming the file and the field.
 */
int kube_target_from_kubeconfig(struct kube_target **out, const char *path, char *detail,
                                size_t detaillen) __attribute__((warn_unused_result));

/*
 * The bearer token for one request, in locked memory (free with engine_secmem_free), or NULL
 * with *err set when none is configured (*err = 0: use the client certificate alone) or the
 * token file cannot be read (*err = COFFER_ERR_KEY_READ, one sentence in detail). The file is
 * read afresh each time. Thread-safe.
 */
char *kube_target_token(const struct kube_target *t, int *err, char *detail, size_t detaillen);

void kube_target_free(struct kube_target *t);

/*
 * Standard base64 (padding required, as Kubernetes and kubeconfig write it) with OpenSSL's
 * EVP_DecodeBlock into out (cap bytes; decoding needs cap >= inlen / 4 * 3). Returns 0 and
 * *outlen, or -1 when the text is not base64 or does not fit. out may be locked memory.
 */
int kube_base64_decode(const char *in, size_t inlen, unsigned char *out, size_t cap, size_t *outlen)
    __attribute__((warn_unused_result));

#endif
