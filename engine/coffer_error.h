/* SPDX-License-Identifier: Apache-2.0 */
/* coffer's one error table: the negative codes every module returns, sends and prints. */
#ifndef COFFER_ERROR_H
#define COFFER_ERROR_H

/*
 * Every fallible coffer function returns 0 (or a non-negative count) on success and one of these
 * negative codes on failure. The numbers are part of the wire protocol (error frames carry them)
 * and of the CLI's messages: never renumber, only append.
 *
 * X(name, value, message): the message says what was wrong and, where there is one, what to do.
 */
#define COFFER_ERROR_TABLE(X)                                                                      \
    X(INTERNAL, -1, "internal error (a bug in coffer; please report it)")                          \
    X(NOMEM, -2, "out of memory")                                                                  \
    X(INVALID_ARG, -3, "invalid argument")                                                         \
    X(CPU, -4, "the requested AES-GCM backend cannot run on this CPU")                             \
    X(KEY_SIZE, -10, "key has the wrong size for its format")                                      \
    X(KEY_FORM, -11,                                                                               \
      "key is a passphrase or text, not 32 random bytes; create one with 'coffer keygen'")         \
    X(KEY_MISSING, -12, "key not found: the Secret or key file does not exist or is empty")        \
    X(KEY_READ, -13, "key could not be read (permissions or I/O error)")                           \
    X(SECRET_NAME, -14, "invalid Kubernetes namespace or Secret name")                             \
    X(WRONG_KEY, -20,                                                                              \
      "wrong key: the key commitment does not match (wrong key, wrong context, or the "            \
      "salt/commitment was altered); nothing was decrypted")                                       \
    X(TAMPERED, -21, "authentication failed: the ciphertext or its header was modified")           \
    X(TRUNCATED, -22, "the ciphertext is truncated: its end is missing")                           \
    X(TRAILING, -23, "the ciphertext has trailing data after its final chunk")                     \
    X(BAD_HEADER, -24, "not a coffer-v1 file or its header is malformed")                          \
    X(TOO_LARGE, -25, "message or metadata exceeds the format's limit")                            \
    X(METADATA, -26, "status metadata is malformed or missing a required field")                   \
    X(FORMAT, -27, "unknown or unsupported format")                                                \
    X(STATE, -28,                                                                                  \
      "operation not allowed in this stream state (the stream already failed "                     \
      "or finished)")                                                                              \
    X(IO, -30, "I/O error")                                                                        \
    X(NOSPACE, -31, "no space left on the output device")                                          \
    X(SPOOL, -32, "could not use the temporary spool file")                                        \
    X(PROTO_VERSION, -40, "protocol version not supported")                                        \
    X(PROTO_FRAME, -41, "malformed protocol frame")                                                \
    X(PROTO_TOO_BIG, -42, "protocol frame exceeds the maximum size")                               \
    X(PROTO_OP, -43, "unknown protocol operation")                                                 \
    X(PROTO_SEQUENCE, -44, "protocol frame not allowed at this point")                             \
    X(PERMISSION, -45, "permission denied: peer uid/gid not allowed")                              \
    X(BUSY, -46, "server busy: too many connections")                                              \
    X(SHUTDOWN, -47, "server is shutting down")                                                    \
    X(CONNECT, -48, "cannot connect to cofferd (is it running? check --socket)")                   \
    X(PEER_GONE, -49, "the peer closed the connection before the job finished")                    \
    X(CONFIG, -50, "invalid configuration")                                                        \
    X(HSM_MODULE, -60, "PKCS#11 module could not be loaded")                                       \
    X(HSM_TOKEN, -61, "HSM token not found")                                                       \
    X(HSM_KEY, -62, "HSM key not found")                                                           \
    X(HSM_LOGIN, -63, "HSM login failed (check the PIN)")                                          \
    X(HSM_CALL, -64, "HSM operation failed")                                                       \
    X(HSM_TIMEOUT, -65, "HSM did not answer in time")                                              \
    X(HSM_UNAVAILABLE, -66, "HSM needed to restore this backup is unavailable")                  \
    X(KUBE_API, -70, "the Kubernetes API request failed")                                          \
    X(KUBE_UNAUTHORIZED, -71, "the Kubernetes API refused cofferd's credential (401)")             \
    X(KUBE_FORBIDDEN, -72, "RBAC does not let cofferd read this Secret (403)")                     \
    X(KUBE_TIMEOUT, -73, "the Kubernetes API did not answer in time")                              \
    X(KUBE_TLS, -74, "the Kubernetes API server's certificate could not be verified")              \
    X(SECRET_NAMESPACE, -75,                                                                       \
      "this namespace is not one cofferd may read Secrets from (--allow-secret-namespace)")

/* Results that must be checked: decrypt, verify and parse functions carry it. */
#define COFFER_WUR __attribute__((warn_unused_result))

enum coffer_err {
    COFFER_OK = 0,
#define COFFER_ERR_ENUM(name, value, msg) COFFER_ERR_##name = (value),
    COFFER_ERROR_TABLE(COFFER_ERR_ENUM)
#undef COFFER_ERR_ENUM
};

/* The message for a code; never NULL (unknown codes get a generic message). */
const char *coffer_strerror(int err);

/* The stable name for a code ("WRONG_KEY"), as it appears in logs and JSON; never NULL. */
const char *coffer_errname(int err);

/* Map an errno value (positive) to the nearest coffer code (ENOSPC -> NOSPACE, ...). */
int coffer_err_from_errno(int errnum);

#endif
