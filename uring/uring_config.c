/* SPDX-License-Identifier: Apache-2.0 */
/* Parsing cofferd's flags and config file into one struct uring_config, from one option table. */
#include "uring_config.h"

#include "coffer_error.h"
#include "coffer_version.h"
#include "engine_secret.h"
#include "hsm_kek.h"
#include "proto_frame.h"
#include "uring_log.h"
#include "uring_metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { SRC_FILE = 0, SRC_CMDLINE = 1 };

/* The repeatable lists (bits of config_ctx.cleared): the command line's replaces the file's. */
enum {
    CLEARED_ALLOW_UID = 1,
    CLEARED_ALLOW_GID = 2,
    CLEARED_ALLOW_NS = 4,
    CLEARED_RECOVERY = 8,
};

/* Where a value came from and how parsing goes (one per uring_config_load). */
struct config_ctx {
    int src;         /* SRC_FILE or SRC_CMDLINE */
    int cleared;     /* repeatable lists the command line already replaced (bit per list) */
    int check;       /* --check-config: report every problem on stderr and go on */
    int problems;    /* problems reported so far (check mode) */
    const char *loc; /* "FILE:LINE" or "command line" */
};

struct config_opt;
typedef int (*config_setter)(struct uring_config *cfg, const struct config_opt *o,
                             struct config_ctx *ctx, const char *v, char *err, size_t errlen);

/*
 * One row of the option table: everything --help, --print-reference (the man pages and
 * docs/operations.md) and the parser know of an option. The config-file name is the flag's name
 * unless in_file is 0 (command line only).
 */
struct config_opt {
    const char *name;  /* the flag without "--" and the config-file name */
    const char *arg;   /* the value's placeholder ("PATH"); NULL for a flag without value */
    const char *def;   /* the default, as documented; NULL when there is none */
    const char *help;  /* the meaning: sentences, no newlines */
    config_setter set; /* parses and stores v */
    size_t off;        /* offsetof(struct uring_config, field) for the generic setters */
    size_t cap;        /* set_str: the field's size */
    long min, max;     /* set_int, set_aint, set_long, set_along, set_uint, set_u64: the range
                          (set_u64 with max -1: up to UINT64_MAX) */
    int in_file;       /* 1: also a config-file name */
};

/* ---- setters ---- */

static int parse_int(const char *v, long min, long max, long *out)
{
    char *end = NULL;
    long n;
    errno = 0;
    n = strtol(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || n < min || n > max)
        return -1;
    *out = n;
    return 0;
}

static int parse_bool(const char *v, int *out)
{
    if (strcmp(v, "on") == 0 || strcmp(v, "true") == 0 || strcmp(v, "yes") == 0 ||
        strcmp(v, "1") == 0) {
        *out = 1;
        return 0;
    }
    if (strcmp(v, "off") == 0 || strcmp(v, "false") == 0 || strcmp(v, "no") == 0 ||
        strcmp(v, "0") == 0) {
        *out = 0;
        return 0;
    }
    return -1;
}

static int copy_str(char *dst, size_t cap, const char *v)
{
    size_t n = strlen(v);
    if (n == 0 || n >= cap)
        return -1;
    memcpy(dst, v, n + 1);
    return 0;
}

/* A label or path of 1..cap-1 bytes without control characters (the --hsm-* texts). */
static int copy_text(char *dst, size_t cap, const char *v)
{
    for (const char *p = v; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return -1;
    return copy_str(dst, cap, v);
}

/*
 * A decimal number in [0, max] that starts with a digit (no sign, no space), with an optional
 * binary K, M, G or T suffix when sized.
 */
static int parse_u64(const char *v, uint64_t max, int sized, uint64_t *out)
{
    char *end = NULL;
    unsigned long long n;
    unsigned shift = 0;

    if (*v < '0' || *v > '9')
        return -1;
    errno = 0;
    n = strtoull(v, &end, 10);
    if (errno != 0 || end == v)
        return -1;
    if (sized && *end != '\0' && end[1] == '\0') {
        const char *units = "KMGT", *u = strchr(units, *end);
        if (u == NULL)
            return -1;
        shift = 10u * (unsigned)(u - units + 1);
        end++;
    }
    if (*end != '\0' || (shift > 0 && n > (UINT64_MAX >> shift)))
        return -1;
    n <<= shift;
    if (n > max)
        return -1;
    *out = n;
    return 0;
}

#define FIELD(cfg, o, type) ((type *)(void *)((char *)(cfg) + (o)->off))

static int set_str(struct uring_config *cfg, const struct config_opt *o, struct config_ctx *ctx,
                   const char *v, char *err, size_t errlen)
{
    return copy_str(FIELD(cfg, o, char), o->cap, v);
}

static int set_int(struct uring_config *cfg, const struct config_opt *o, struct config_ctx *ctx,
                   const char *v, char *err, size_t errlen)
{
    long n;
    if (parse_int(v, o->min, o->max, &n) != 0)
        return -1;
    *FIELD(cfg, o, int) = (int)n;
    return 0;
}

/* The _Atomic fields of struct uring_config (the ones a reload changes): an atomic store. */
static int set_aint(struct uring_config *cfg, const struct config_opt *o, struct config_ctx *ctx,
                    const char *v, char *err, size_t errlen)
{
    long n;
    if (parse_int(v, o->min, o->max, &n) != 0)
        return -1;
    atomic_store(FIELD(cfg, o, _Atomic int), (int)n);
    return 0;
}

static int set_along(struct uring_config *cfg, const struct config_opt *o, struct config_ctx *ctx,
                     const char *v, char *err, size_t errlen)
{
    long n;
    if (parse_int(v, o->min, o->max, &n) != 0)
        return -1;
    atomic_store(FIELD(cfg, o, _Atomic long), n);
    return 0;
}

static int set_long(struct uring_config *cfg, const struct config_opt *o, struct config_ctx *ctx,
                    const char *v, char *err, size_t errlen)
{
    long n;
    if (parse_int(v, o->min, o->max, &n) != 0)
        return -1;
    *FIELD(cfg, o, long) = n;
    return 0;
}

/* An unsigned field in [min, max], written as digits only (the --hsm-* numbers). */
static int set_uint(struct uring_config *cfg, const struct config_opt *o, struct config_ctx *ctx,
                    const char *v, char *err, size_t errlen)
{
    uint64_t n;
    if (parse_u64(v, (uint64_t)o->max, 0, &n) != 0 || n < (uint64_t)o->min)
        return -1;
    *FIELD(cfg, o, unsigned) = (unsigned)n;
    return 0;
}

/* A uint64_t field in [min, max] (max -1: UINT64_MAX), digits only. */
static int set_u64(struct uring_config *cfg, const struct config_opt *o, struct config_ctx *ctx,
                   const char *v, char *err, size_t errlen)
{
    uint64_t n;
    if (parse_u64(v, o->max < 0 ? UINT64_MAX : (uint64_t)o->max, 0, &n) != 0 ||
        n < (uint64_t)o->min)
        return -1;
    *FIELD(cfg, o, uint64_t) = n;
    return 0;
}

/* A uint64_t count of bytes: digits with an optional K, M, G or T suffix (binary). */
static int set_size(struct uring_config *cfg, const struct config_opt *o, struct config_ctx *ctx,
                    const char *v, char *err, size_t errlen)
{
    return parse_u64(v, UINT64_MAX, 1, FIELD(cfg, o, uint64_t));
}

/* A text field of the --hsm-* options: a label or path without control characters. */
static int set_text(struct uring_config *cfg, const struct config_opt *o, struct config_ctx *ctx,
                    const char *v, char *err, size_t errlen)
{
    return copy_text(FIELD(cfg, o, char), o->cap, v);
}

static int set_bool(struct uring_config *cfg, const struct config_opt *o, struct config_ctx *ctx,
                    const char *v, char *err, size_t errlen)
{
    return parse_bool(v, FIELD(cfg, o, int));
}

static int set_socket(struct uring_config *cfg, const struct config_opt *o, struct config_ctx *ctx,
                      const char *v, char *err, size_t errlen)
{
    cfg->socket_set = 1;
    return set_str(cfg, o, ctx, v, err, errlen);
}

static int set_secrets_dir(struct uring_config *cfg, const struct config_opt *o,
                           struct config_ctx *ctx, const char *v, char *err, size_t errlen)
{
    cfg->secrets_dir_set = 1;
    return set_str(cfg, o, ctx, v, err, errlen);
}

static int set_format(struct uring_config *cfg, const struct config_opt *o, struct config_ctx *ctx,
                      const char *v, char *err, size_t errlen)
{
    coffer_format f;
    if (engine_format_parse(v, &f) != 0 ||
        (f != COFFER_FORMAT_COFFER_V1 && f != COFFER_FORMAT_VELERO_V1))
        return -1;
    cfg->format = f;
    return 0;
}

static int set_log_level(struct uring_config *cfg, const struct config_opt *o,
                         struct config_ctx *ctx, const char *v, char *err, size_t errlen)
{
    return (cfg->log_level = uring_log_level_parse(v)) < 0 ? -1 : 0;
}

/* --allow-uid and --allow-gid: repeatable; the command line's entries replace the file's. */
static int set_allow(struct uring_config *cfg, const struct config_opt *o, struct config_ctx *ctx,
                     const char *v, char *err, size_t errlen)
{
    int is_uid = o->name[6] == 'u';
    int bit = is_uid ? CLEARED_ALLOW_UID : CLEARED_ALLOW_GID;
    int *count = is_uid ? &cfg->n_allow_uid : &cfg->n_allow_gid;
    long n;

    if (parse_int(v, 0, INT_MAX, &n) != 0)
        return -1;
    if (ctx->src == SRC_CMDLINE && !(ctx->cleared & bit)) {
        ctx->cleared |= bit;
        *count = 0;
    }
    if (*count >= URING_MAX_ALLOW) {
        snprintf(err, errlen, "too many --%s entries (at most %d)", o->name, URING_MAX_ALLOW);
        return COFFER_ERR_CONFIG;
    }
    if (is_uid)
        cfg->allow_uid[(*count)++] = (uid_t)n;
    else
        cfg->allow_gid[(*count)++] = (gid_t)n;
    return 0;
}

/* --config: the file was read before the command line (uring_config_load); keep its name. */
static int set_config(struct uring_config *cfg, const struct config_opt *o, struct config_ctx *ctx,
                      const char *v, char *err, size_t errlen)
{
    return copy_str(cfg->config_path, sizeof(cfg->config_path), v);
}

/* --help, --version, --check-config and --print-reference act in the first pass. */
static int set_nothing(struct uring_config *cfg, const struct config_opt *o, struct config_ctx *ctx,
                       const char *v, char *err, size_t errlen)
{
    return 0;
}

/* --hsm-fallback secret|none */
static int set_hsm_fallback(struct uring_config *cfg, const struct config_opt *o,
                            struct config_ctx *ctx, const char *v, char *err, size_t errlen)
{
    if (strcmp(v, "secret") == 0)
        cfg->hsm.fallback = URING_HSM_FALLBACK_SECRET;
    else if (strcmp(v, "none") == 0)
        cfg->hsm.fallback = URING_HSM_FALLBACK_NONE;
    else
        return -1;
    return 0;
}

/* --hsm-mechanism: auto (0) or a mechanism hsm_kek.h names. */
static int set_hsm_mechanism(struct uring_config *cfg, const struct config_opt *o,
                             struct config_ctx *ctx, const char *v, char *err, size_t errlen)
{
    int m = hsm_mech_parse_option(v);
    if (m < 0)
        return -1;
    cfg->hsm.mechanism = m;
    return 0;
}

/* --recovery-recipient FILE: repeatable; the command line's files replace the config file's. */
static int set_recovery(struct uring_config *cfg, const struct config_opt *o,
                        struct config_ctx *ctx, const char *v, char *err, size_t errlen)
{
    if (ctx->src == SRC_CMDLINE && !(ctx->cleared & CLEARED_RECOVERY)) {
        ctx->cleared |= CLEARED_RECOVERY;
        cfg->n_recovery_recipient = 0;
    }
    if (cfg->n_recovery_recipient >= URING_RECOVERY_FILES) {
        snprintf(err, errlen,
                 "too many --recovery-recipient files (at most %d; a file may hold many "
                 "recipients)",
                 URING_RECOVERY_FILES);
        return COFFER_ERR_CONFIG;
    }
    return copy_str(cfg->recovery_recipient[cfg->n_recovery_recipient++],
                    sizeof(cfg->recovery_recipient[0]), v) == 0
               ? 0
               : (cfg->n_recovery_recipient--, -1);
}

/* --metrics-listen: ADDR:PORT ([v6]:PORT, :PORT; port 0 = any) or a Unix socket path. */
static int set_metrics_listen(struct uring_config *cfg, const struct config_opt *o,
                              struct config_ctx *ctx, const char *v, char *err, size_t errlen)
{
    if (!uring_metrics_addr_valid(v))
        return -1;
    return set_str(cfg, o, ctx, v, err, errlen); /* the row gives the field's offset and size */
}

static int set_log_format(struct uring_config *cfg, const struct config_opt *o,
                          struct config_ctx *ctx, const char *v, char *err, size_t errlen)
{
    return (cfg->log_format = uring_log_format_parse(v)) < 0 ? -1 : 0;
}

/* --secret-source dir|kubernetes */
static int set_secret_source(struct uring_config *cfg, const struct config_opt *o,
                             struct config_ctx *ctx, const char *v, char *err, size_t errlen)
{
    if (strcmp(v, "dir") == 0)
        cfg->kube.source = URING_SECRET_DIR;
    else if (strcmp(v, "kubernetes") == 0)
        cfg->kube.source = URING_SECRET_KUBERNETES;
    else
        return -1;
    return 0;
}

/* --allow-secret-namespace NS: repeatable; the command line's entries replace the file's. */
static int set_allow_ns(struct uring_config *cfg, const struct config_opt *o,
                        struct config_ctx *ctx, const char *v, char *err, size_t errlen)
{
    struct uring_kube_config *k = &cfg->kube;

    if (engine_secret_name_check(v, "x") != 0) {
        snprintf(err, errlen,
                 "--allow-secret-namespace '%.100s' is not a Kubernetes namespace name", v);
        return COFFER_ERR_CONFIG;
    }
    if (ctx->src == SRC_CMDLINE && !(ctx->cleared & CLEARED_ALLOW_NS)) {
        ctx->cleared |= CLEARED_ALLOW_NS;
        k->n_allow_ns = 0;
    }
    if (k->n_allow_ns >= URING_KUBE_MAX_NS) {
        snprintf(err, errlen, "too many --allow-secret-namespace entries (at most %d)",
                 URING_KUBE_MAX_NS);
        return COFFER_ERR_CONFIG;
    }
    return copy_str(k->allow_ns[k->n_allow_ns], sizeof(k->allow_ns[0]), v) == 0
               ? (k->n_allow_ns++, 0)
               : -1;
}

/* ---- the table ---- */

#define OFF(field)         offsetof(struct uring_config, field)
#define STR(field)         set_str, OFF(field), sizeof(((struct uring_config *)0)->field), 0, 0
#define INT(field, a, b)   set_int, OFF(field), 0, (a), (b)
#define AINT(field, a, b)  set_aint, OFF(field), 0, (a), (b)  /* _Atomic int (reloadable) */
#define ALONG(field, a, b) set_along, OFF(field), 0, (a), (b) /* _Atomic long (reloadable) */
#define LONG(field, a, b)  set_long, OFF(field), 0, (a), (b)
#define UINT(field, a, b)  set_uint, OFF(field), 0, (a), (b) /* unsigned, digits only */
#define U64(field, a, b)   set_u64, OFF(field), 0, (a), (b)  /* uint64_t, digits; b -1: any */
#define SIZE(field)        set_size, OFF(field), 0, 0, -1    /* uint64_t bytes, K/M/G/T */
#define TEXT(field)        set_text, OFF(field), sizeof(((struct uring_config *)0)->field), 0, 0
#define BOOL(field)        set_bool, OFF(field), 0, 0, 0
#define FN(fn)             fn, 0, 0, 0, 0

/*
 * Every cofferd option, in --help order. To add one: a row here (and a field in struct
 * uring_config with its default in config_defaults; the row's default text must say the same),
 * then `scripts/reference.py --write --bin build/bin` to regenerate the man pages and
 * docs/operations.md (CTest reference_test fails until then).
 */
static const struct config_opt config_opts[] = {
    {"config", "FILE", NULL,
     "Read `name = value` lines from FILE: the same names as the flags, `#` starts a comment, and "
     "the command line wins over the file. SIGHUP reads it again.",
     FN(set_config), 0},
    {"socket", "PATH", "/run/coffer/cofferd.sock",
     "The listening Unix socket (mode 0660). A missing parent directory is created with mode "
     "0755. Ignored when systemd passes the socket (socket activation).",
     set_socket, OFF(socket_path), sizeof(((struct uring_config *)0)->socket_path), 0, 0, 1},
    {"secrets-dir", "DIR", "/etc/coffer/secrets",
     "Secret volumes: the key of Secret NAME in namespace NS is DIR/NS/NAME/encryptionKey.",
     set_secrets_dir, OFF(secrets_dir), sizeof(((struct uring_config *)0)->secrets_dir), 0, 0, 1},
    {"namespace", "NS", "velero", "Namespace of the Secret that holds the key of new backups.",
     STR(ns), 1},
    {"encryption-secret", "NAME", "coffer-key",
     "Secret holding the key of new backups (its field encryptionKey).", STR(secret), 1},
    {"encryption", "on|off", "on", "Encrypt new backups; off passes them through as format none.",
     BOOL(encryption), 1},
    /* ---- issue 10: no plaintext downgrade (uring_job.c) ---- */
    {"allow-plaintext-restore", NULL, "off",
     "With encryption on, also restore backups whose metadata says isEncrypted false (or jobs "
     "that ask for format none): for backups taken before encryption was switched on. Input that "
     "starts with coffer-v1's magic is never passed through.",
     BOOL(allow_plaintext_restore), 1},
    {"format", "coffer-v1|velero-v1", "coffer-v1", "Format of new backups.", FN(set_format), 1},
    {"workers", "N", "one per core (at most 64)", "io_uring worker threads (1 to 1024).",
     INT(workers, 1, 1024), 1},
    {"max-connections", "N", "256", "Concurrent connections (1 to 65536); more are refused BUSY.",
     INT(max_conns, 1, 65536), 1},
    {"allow-uid", "UID", "the daemon's own uid",
     "A peer uid allowed to connect; repeatable (the command line's entries replace the file's).",
     FN(set_allow), 1},
    {"allow-gid", "GID", NULL, "A peer gid allowed to connect; repeatable.", FN(set_allow), 1},
    {"io-timeout", "SECONDS", "300", "Drop a connection that makes no progress for this long.",
     AINT(io_timeout, 1, 86400), 1},
    /* ---- issue 10: slow frames and connections per uid ---- */
    {"frame-timeout", "SECONDS", "30",
     "A frame must arrive whole within this long once its first byte came, or the connection "
     "fails PROTO_FRAME (a client trickling bytes cannot hold a connection).",
     AINT(frame_timeout, 1, 86400), 1},
    {"max-connections-per-uid", "N", "0 (no cap)",
     "Concurrent connections one peer uid may hold (0 to 65536); more are refused BUSY.",
     INT(max_conns_per_uid, 0, 65536), 1},
    {"shutdown-grace", "SECONDS", "30",
     "After SIGTERM, running jobs get this long to finish; then they fail with SHUTDOWN and "
     "cofferd exits.",
     AINT(shutdown_grace, 0, 86400), 1},
    {"helpers", "N", "one per core",
     "Helper threads that run the cipher off the rings and the velero-v1 restore spool.",
     INT(helpers, 1, 1024), 1},
    {"offload-min", "BYTES", "0 (never)",
     "Cipher batches of at least BYTES run on the helper threads instead of the ring thread "
     "(velero-v1 restores that spill to the spool file always use them).",
     ALONG(offload_min, 0, 1L << 30), 1},
    {"fd-piece", "BYTES", "524288",
     "Descriptor jobs read, encrypt and write in pieces of BYTES, four at a time (16384 to "
     "4194304).",
     ALONG(fd_piece, 16384, 4L << 20), 1},
    {"split-min", "BYTES", "65536 (0 on a one-CPU host)",
     "A descriptor job's cipher batch of at least BYTES is cut in two, half on a helper thread, "
     "so one job's AES-GCM uses two cores; 0: never.",
     ALONG(split_min, 0, 1L << 30), 1},
    {"spool-dir", "DIR", "$TMPDIR or /tmp", "Where velero-v1 restores spool their ciphertext.",
     STR(spool_dir), 1},
    {"log-level", "debug|info|warn|error", "info", "The lowest level logged on stderr.",
     FN(set_log_level), 1},
    {"log-format", "logfmt|json", "logfmt",
     "One `key=value` line per event, values quoted where needed, or one JSON object per line.",
     FN(set_log_format), 1},
    {"metrics-listen", "ADDR:PORT|PATH", NULL,
     "Serve Prometheus metrics at http://ADDR:PORT/metrics (PORT 0: any free port, logged as "
     "metrics_listening), or on the Unix socket PATH (a value starting with / or .); off when "
     "not given. docs/observability.md lists every metric.",
     set_metrics_listen, OFF(metrics_listen), sizeof(((struct uring_config *)0)->metrics_listen),
     0, 0, 1},
    {"dev", NULL, "off",
     "Development mode: creates a key under ./.coffer-dev and listens on "
     "./.coffer-dev/cofferd.sock (never in production).",
     BOOL(dev), 1},
    {"echo-baseline", NULL, "off", "Benchmark baseline: jobs copy bytes, NOTHING IS ENCRYPTED.",
     BOOL(echo), 1},
    {"recovery-recipient", "FILE", NULL,
     "Age recipients ('age1...' one a line, '#' comments, as age -R reads; repeatable, at most 64 "
     "recipients in all): every new coffer-v1 backup carries its key encrypted to each inside its "
     "authenticated header, so their identities restore it without the Secret or the HSM "
     "(docs/recovery.md).",
     FN(set_recovery), 1},
    /* ---- the Secret source (struct uring_kube_config, uring_kube.h) ---- */
    {"secret-source", "dir|kubernetes", "dir",
     "Where Secrets are read: the --secrets-dir volume layout, or the Kubernetes API "
     "(GET /api/v1/namespaces/NS/secrets/NAME, field encryptionKey).",
     FN(set_secret_source), 1},
    {"kubeconfig", "FILE", NULL,
     "With kubernetes: the API server and credential of FILE's current context (without it: "
     "in-cluster, KUBERNETES_SERVICE_HOST/_PORT and the service-account token, CA and namespace).",
     STR(kube.kubeconfig), 1},
    {"kube-serviceaccount-dir", "DIR", "/var/run/secrets/kubernetes.io/serviceaccount",
     "In-cluster: the directory holding the service-account token, ca.crt and namespace.",
     STR(kube.sa_dir), 1},
    {"secret-cache-ttl", "SECONDS", "60",
     "Reuse a key fetched from the API this long (0: fetch every time; SIGHUP drops the cache).",
     INT(kube.cache_ttl, 0, 86400), 1},
    {"kube-timeout", "MS", "10000", "Longest a Secret fetch takes, retries included.",
     LONG(kube.timeout_ms, 100, 600000), 1},
    {"kube-connect-timeout", "MS", "5000", "Longest one connection attempt to the API takes.",
     LONG(kube.connect_timeout_ms, 100, 600000), 1},
    {"allow-secret-namespace", "NS", NULL,
     "A namespace whose Secrets restores may make cofferd read through the API (repeatable; "
     "--namespace is always allowed).",
     FN(set_allow_ns), 1},
    /* ---- the pkcs11 retriever (struct uring_hsm_config, uring_hsm.h); --hsm-pin: refused ---- */
    {"hsm-module", "PATH|NAME", NULL,
     "PKCS#11 module of the HSM (a path, or a p11-kit name such as softhsm2): new coffer-v1 "
     "backups get a data key wrapped by the token's key-encryption key (keyRetrieverType pkcs11).",
     TEXT(hsm.module), 1},
    {"hsm-token", "LABEL", NULL, "The HSM token's label.", TEXT(hsm.token), 1},
    {"hsm-key", "LABEL", NULL,
     "Label of the key-encryption key for new backups (without it the HSM serves restores only).",
     TEXT(hsm.key), 1},
    {"hsm-pin-file", "FILE", "$COFFER_HSM_PIN",
     "The token's user PIN (a PIN is never taken from a flag).", TEXT(hsm.pin_file), 1},
    {"hsm-fallback", "secret|none", "secret",
     "When the HSM cannot serve a new backup: encrypt it with the Secret and say so in its "
     "metadata (secret), or fail the job (none).",
     FN(set_hsm_fallback), 1},
    {"hsm-timeout", "MS", "5000", "Longest wait for the HSM per call.",
     UINT(hsm.timeout_ms, 1, URING_HSM_TIMEOUT_MAX_MS), 1},
    {"hsm-cache-max-age", "SECONDS", "300", "Reuse a data key for at most this long.",
     U64(hsm.cache_max_age_s, 0, URING_HSM_AGE_MAX_S), 1},
    {"hsm-cache-max-uses", "N", "1000", "Backups sharing one data key.",
     U64(hsm.cache_max_uses, 0, -1), 1},
    {"hsm-cache-max-bytes", "BYTES", "64G",
     "Bytes encrypted under one data key; K, M, G, T suffixes; 0 for age, uses or bytes turns "
     "the data-key cache off.",
     SIZE(hsm.cache_max_bytes), 1},
    {"hsm-cache-max-entries", "N", "256", "Unwrapped data keys kept for restores.",
     U64(hsm.cache_max_entries, 0, HSM_CACHE_MAX_ENTRIES), 1},
    {"hsm-mechanism", "auto|gcm|gcm-token-iv|kwp|cbc-hmac", "auto",
     "How data keys are wrapped: auto takes the first the token offers of gcm (AES-GCM, our IV), "
     "gcm-token-iv (AES-GCM, the token's IV), kwp (RFC 5649 key wrap) and cbc-hmac (AES-CBC-PAD "
     "then HMAC-SHA-256 under a second token key); naming one forces it. Restores use what each "
     "backup records.",
     FN(set_hsm_mechanism), 1},
    {"hsm-max-sessions", "N", NULL,
     "PKCS#11 sessions at most (default: as many as the token allows).",
     UINT(hsm.max_sessions, 1, HSM_THREADS_MAX * 4), 1},
    /* ---- acting at once, command line only ---- */
    {"check-config", NULL, NULL,
     "Parse the command line and the config file, report every problem with its file and line, "
     "and exit 0 (valid) or 2 (not valid) without starting anything.",
     FN(set_nothing), 0},
    {"print-reference", "markdown|scdoc|conf", NULL,
     "Print this table of options for the docs and man pages, and exit.", FN(set_nothing), 0},
    {"help", NULL, NULL, "Print this help and exit.", FN(set_nothing), 0},
    {"version", NULL, NULL, "Print the version and exit.", FN(set_nothing), 0},
};

#define CONFIG_NOPTS (sizeof(config_opts) / sizeof(config_opts[0]))

static const struct config_opt *config_find(const char *name)
{
    for (size_t i = 0; i < CONFIG_NOPTS; i++)
        if (strcmp(name, config_opts[i].name) == 0)
            return &config_opts[i];
    return NULL;
}

/* ---- generated texts ---- */

/* Print text word-wrapped to end before column 100, each line indented by indent. */
static void config_wrap(FILE *f, const char *text, int first_col, int indent)
{
    int col = first_col;
    const char *p = text;

    while (*p != '\0') {
        size_t w = strcspn(p, " ");
        if (col > indent && col + 1 + (int)w > 99) {
            fprintf(f, "\n%*s", indent, "");
            col = indent;
        } else if (col > indent) {
            fputc(' ', f);
            col++;
        }
        fwrite(p, 1, w, f);
        col += (int)w;
        p += w;
        while (*p == ' ')
            p++;
    }
    fputc('\n', f);
}

/* --help: generated from the option table. */
static void config_usage(FILE *f)
{
    fputs("usage: cofferd [options]\n"
          "Encrypts and decrypts backup archives for clients on a Unix socket (io_uring).\n\n",
          f);
    for (size_t i = 0; i < CONFIG_NOPTS; i++) {
        const struct config_opt *o = &config_opts[i];
        char head[96], text[1024];
        int n = snprintf(head, sizeof(head), "  --%s%s%s", o->name, o->arg != NULL ? " " : "",
                         o->arg != NULL ? o->arg : "");
        snprintf(text, sizeof(text), "%s%s%s%s", o->help, o->def != NULL ? " Default: " : "",
                 o->def != NULL ? o->def : "", o->def != NULL ? "." : "");
        if (n >= 28) {
            fprintf(f, "%s\n%28s", head, "");
            config_wrap(f, text, 28, 28);
        } else {
            fprintf(f, "%-28s", head);
            config_wrap(f, text, 28, 28);
        }
    }
    fputs(
        "\nEvery option but --config, --check-config, --print-reference, --help and --version\n"
        "may also be given in the config file as `name = value` (flags without a value take\n"
        "on|off there). SIGHUP re-reads the config file and keys; SIGTERM finishes running\n"
        "jobs and exits (a second SIGTERM, or the end of --shutdown-grace, fails them with\n"
        "SHUTDOWN). Exit status: 0 stopped cleanly, 1 could not start, 2 invalid configuration.\n",
        f);
}

/* Escape the characters a markdown table cell or scdoc text would take as markup. */
static void config_put_escaped(FILE *f, const char *s, int scdoc)
{
    for (; *s != '\0'; s++) {
        if (*s == '|' && !scdoc)
            fputs("\\|", f);
        else if (scdoc && (*s == '*' || *s == '_' || *s == '\\'))
            fprintf(f, "\\%c", *s);
        else
            fputc(*s, f);
    }
}

static void config_defaults(struct uring_config *cfg);

/*
 * The documented defaults are the real ones: setting a row's default text (when it parses, e.g.
 * not "one per core") must leave config_defaults' configuration unchanged. 0, or -1 after naming
 * each row that disagrees on stderr.
 */
static int config_defaults_agree(void)
{
    static struct uring_config base, cfg; /* large: not on the stack */
    int r = 0;

    config_defaults(&base);
    for (size_t i = 0; i < CONFIG_NOPTS; i++) {
        const struct config_opt *o = &config_opts[i];
        struct config_ctx ctx = {.src = SRC_FILE, .loc = "default"};
        char err[256];
        if (o->def == NULL || o->def[0] == '$' || o->set == set_nothing || o->set == set_allow)
            continue;
        memcpy(&cfg, &base, sizeof(cfg));
        if (o->set(&cfg, o, &ctx, o->def, err, sizeof(err)) != 0)
            continue; /* a description, not a value */
        cfg.socket_set = base.socket_set;
        cfg.secrets_dir_set = base.secrets_dir_set;
        if (memcmp(&cfg, &base, sizeof(cfg)) != 0) {
            fprintf(stderr,
                    "cofferd: option table: the default of --%s is documented as '%s', "
                    "which is not what config_defaults sets\n",
                    o->name, o->def);
            r = -1;
        }
    }
    return r;
}

/*
 * The option table as a reference: "markdown" (a table for docs/operations.md), "scdoc" (the
 * OPTIONS of cofferd(8)) or "conf" (the names of coffer.conf(5)). Returns 0, or -1 for an unknown
 * format. scripts/reference.py puts the output into the docs and checks it is there.
 */
static int config_print_reference(FILE *f, const char *format)
{
    int md = strcmp(format, "markdown") == 0, conf = strcmp(format, "conf") == 0;

    if (!md && !conf && strcmp(format, "scdoc") != 0)
        return -1;
    if (config_defaults_agree() != 0)
        return -1;
    if (md)
        fputs("| option | config file | default | meaning |\n| --- | --- | --- | --- |\n", f);
    for (size_t i = 0; i < CONFIG_NOPTS; i++) {
        const struct config_opt *o = &config_opts[i];
        if (conf && !o->in_file)
            continue;
        if (md) {
            fprintf(f, "| `--%s%s", o->name, o->arg != NULL ? " " : "");
            config_put_escaped(f, o->arg != NULL ? o->arg : "", 0);
            fputs("` | ", f);
            fprintf(f, o->in_file ? "`%s`" : "(command line only)", o->name);
            fputs(" | ", f);
            config_put_escaped(f, o->def != NULL ? o->def : "", 0);
            fputs(" | ", f);
            config_put_escaped(f, o->help, 0);
            fputs(" |\n", f);
            continue;
        }
        if (conf)
            fprintf(f, "*%s* = ", o->name);
        else
            fprintf(f, "*--%s*%s", o->name, o->arg != NULL ? " " : "");
        if (o->arg != NULL || conf) {
            fputc('_', f);
            config_put_escaped(f, o->arg != NULL ? o->arg : "on|off", 1);
            fputc('_', f);
        }
        fputs("\n\t", f);
        config_put_escaped(f, o->help, 1);
        if (o->def != NULL) {
            fputs(" Default: ", f);
            config_put_escaped(f, o->def, 1);
            fputc('.', f);
        }
        fputs("\n\n", f);
    }
    return 0;
}

/* ---- parsing ---- */

/*
 * A problem at ctx->loc: in check mode it is printed and parsing goes on (returns 0); otherwise
 * err holds it and COFFER_ERR_CONFIG is returned.
 */
static int config_problem(struct config_ctx *ctx, char *err, size_t errlen)
{
    if (ctx->check) {
        fprintf(stderr, "cofferd: %s: %s\n", ctx->loc, err);
        ctx->problems++;
        err[0] = '\0';
        return 0;
    }
    if (ctx->src == SRC_FILE) {
        char msg[1024];
        snprintf(msg, sizeof(msg), "%s: %s", ctx->loc, err);
        snprintf(err, errlen, "%s", msg);
    }
    return COFFER_ERR_CONFIG;
}

/* 1 when the row's value is a number in [o->min, o->max], which its refusal then names. */
static int config_ranged(const struct config_opt *o)
{
    return (o->set == set_int || o->set == set_aint || o->set == set_long || o->set == set_along ||
            o->set == set_uint || o->set == set_u64) &&
           o->max >= 0;
}

/*
 * Names refused with a sentence of their own rather than "unknown option": --hsm-pin (a PIN on
 * the command line or in the config file can be read by others). COFFER_ERR_CONFIG with the
 * sentence in err, or 0 when name is not one of them.
 */
static int config_refused(const char *name, char *err, size_t errlen)
{
    if (strcmp(name, "hsm-pin") != 0)
        return 0;
    snprintf(err, errlen,
             "--hsm-pin is refused: a PIN given as a flag or in the config file can be read "
             "by others (ps, /proc); put it in a file only cofferd can read and pass "
             "--hsm-pin-file FILE, or set the environment variable COFFER_HSM_PIN");
    return COFFER_ERR_CONFIG;
}

/* Set one option by name (without "--"). */
static int config_set(struct uring_config *cfg, struct config_ctx *ctx, const char *name,
                      const char *v, char *err, size_t errlen)
{
    const struct config_opt *o = config_find(name);
    int r;

    if (o == NULL && (r = config_refused(name, err, errlen)) != 0)
        return config_problem(ctx, err, errlen);
    if (o == NULL) {
        snprintf(err, errlen, "unknown option '%.64s' (see cofferd --help)", name);
        return config_problem(ctx, err, errlen);
    }
    if (ctx->src == SRC_FILE && !o->in_file) {
        snprintf(err, errlen, "'%s' is not allowed in a config file", name);
        return config_problem(ctx, err, errlen);
    }
    err[0] = '\0';
    r = o->set(cfg, o, ctx, v, err, errlen);
    if (r == 0)
        return 0;
    if (r == -1 || err[0] == '\0') {
        char range[64] = "";
        if (config_ranged(o))
            snprintf(range, sizeof(range), " from %ld to %ld", o->min, o->max);
        snprintf(err, errlen, "invalid value for --%s: '%.200s' (expected %s%s; see --help)", name,
                 v, o->arg != NULL ? o->arg : "on or off", range);
    }
    return config_problem(ctx, err, errlen);
}

static char *trim(char *s)
{
    char *e;
    while (*s == ' ' || *s == '\t')
        s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
        *--e = '\0';
    return s;
}

/* Read path into a malloc'ed NUL-terminated text of at most URING_CONFIG_MAX bytes. */
static int config_read(const char *path, char **out, char *err, size_t errlen)
{
    int r = COFFER_ERR_CONFIG;
    char *text = NULL;
    ssize_t n = 0;
    size_t len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        snprintf(err, errlen, "cannot open config file %.200s: %s", path, strerror(errno));
        goto out;
    }
    if ((text = malloc(URING_CONFIG_MAX + 1)) == NULL) {
        r = COFFER_ERR_NOMEM;
        goto out;
    }
    while ((n = read(fd, text + len, URING_CONFIG_MAX + 1 - len)) > 0)
        if ((len += (size_t)n) > URING_CONFIG_MAX)
            break;
    if (n < 0 || len > URING_CONFIG_MAX) {
        snprintf(err, errlen, "config file %.200s: %s", path,
                 n < 0 ? strerror(errno) : "larger than 64 KiB");
        goto out;
    }
    text[len] = '\0';
    *out = text;
    text = NULL;
    r = 0;
out:
    if (fd >= 0)
        close(fd);
    free(text);
    return r;
}

static int config_file(struct uring_config *cfg, struct config_ctx *ctx, const char *path,
                       char *err, size_t errlen)
{
    int r, lineno = 0;
    char *text = NULL, *line, *next;
    char loc[256];

    if ((r = config_read(path, &text, err, errlen)) != 0) {
        ctx->loc = "--config";
        return r == COFFER_ERR_CONFIG && ctx->check ? config_problem(ctx, err, errlen) : r;
    }
    ctx->loc = loc;
    for (line = text; line != NULL; line = next) {
        char *hash, *eq, *name, *value;
        if ((next = strchr(line, '\n')) != NULL)
            *next++ = '\0';
        lineno++;
        snprintf(loc, sizeof(loc), "%.200s:%d", path, lineno);
        if (strlen(line) > URING_CONFIG_LINE) {
            snprintf(err, errlen, "line too long (at most %d bytes)", URING_CONFIG_LINE);
            if ((r = config_problem(ctx, err, errlen)) != 0)
                break;
            continue;
        }
        if ((hash = strchr(line, '#')) != NULL)
            *hash = '\0';
        name = trim(line);
        if (*name == '\0')
            continue;
        if ((eq = strchr(name, '=')) == NULL) {
            snprintf(err, errlen, "expected `name = value`, not '%.100s'", name);
            if ((r = config_problem(ctx, err, errlen)) != 0)
                break;
            continue;
        }
        *eq = '\0';
        name = trim(name);
        value = trim(eq + 1);
        if ((r = config_set(cfg, ctx, name, value, err, errlen)) != 0)
            break;
    }
    free(text);
    return r;
}

static void config_defaults(struct uring_config *cfg)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    memset(cfg, 0, sizeof(*cfg));
    strcpy(cfg->socket_path, "/run/coffer/cofferd.sock");
    strcpy(cfg->secrets_dir, "/etc/coffer/secrets");
    strcpy(cfg->ns, "velero");
    strcpy(cfg->secret, "coffer-key");
    cfg->encryption = 1;
    cfg->format = COFFER_FORMAT_COFFER_V1;
    cfg->workers = ncpu > 0 ? (int)(ncpu > 64 ? 64 : ncpu) : 1;
    cfg->max_conns = 256;
    cfg->io_timeout = 300;
    cfg->frame_timeout = 30;
    cfg->max_conns_per_uid = 0;
    cfg->shutdown_grace = 30;
    cfg->helpers = cfg->workers;
    cfg->offload_min = 0;
    cfg->split_min = ncpu > 1 ? 65536 : 0;
    cfg->fd_piece = URING_FD_PIECE_DEFAULT;
    cfg->log_level = URING_LOG_INFO;
    uring_hsm_config_defaults(&cfg->hsm);
    uring_kube_config_defaults(&cfg->kube);
}

/* The option at argv[i] ("--name" or "--name=value"): its name into name, NULL when not one. */
static const char *config_arg_name(const char *arg, char *name, size_t cap, const char **value)
{
    const char *eq;
    size_t nlen;

    *value = NULL;
    if (strncmp(arg, "--", 2) != 0)
        return NULL;
    arg += 2;
    eq = strchr(arg, '=');
    nlen = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
    if (nlen == 0 || nlen >= cap)
        return NULL;
    memcpy(name, arg, nlen);
    name[nlen] = '\0';
    if (eq != NULL)
        *value = eq + 1;
    return name;
}

/* First pass: --help, --version, --print-reference (act now), --check-config, --config. */
static int config_first_pass(struct uring_config *cfg, int argc, char **argv, const char **file)
{
    for (int i = 1; i < argc; i++) {
        char name[64];
        const char *value;
        if (strcmp(argv[i], "-h") == 0) {
            config_usage(stdout);
            return 1;
        }
        if (config_arg_name(argv[i], name, sizeof(name), &value) == NULL)
            continue;
        if (strcmp(name, "help") == 0) {
            config_usage(stdout);
            return 1;
        }
        if (strcmp(name, "version") == 0) {
            printf("cofferd %s (protocol %u)\n", COFFER_VERSION_STRING, COFFER_PROTO_VERSION);
            return 1;
        }
        if (strcmp(name, "check-config") == 0)
            cfg->check_config = 1;
        if (value == NULL && i + 1 < argc &&
            (strcmp(name, "config") == 0 || strcmp(name, "print-reference") == 0))
            value = argv[i + 1];
        if (strcmp(name, "print-reference") == 0) {
            if (value == NULL || config_print_reference(stdout, value) != 0)
                return 2;
            return 1;
        }
        if (strcmp(name, "config") == 0)
            *file = value;
    }
    return 0;
}

int uring_config_load(struct uring_config *cfg, int argc, char **argv, char *err, size_t errlen)
{
    int r = COFFER_ERR_CONFIG;
    struct config_ctx ctx = {.src = SRC_FILE};
    const char *file = NULL;

    config_defaults(cfg);
    err[0] = '\0';
    if ((r = config_first_pass(cfg, argc, argv, &file)) != 0) {
        if (r == 2)
            snprintf(err, errlen,
                     "--print-reference takes markdown, scdoc or conf (and a "
                     "table whose defaults agree with config_defaults)");
        return r == 1 ? 1 : COFFER_ERR_CONFIG;
    }
    ctx.check = cfg->check_config;
    if (file != NULL && (r = config_file(cfg, &ctx, file, err, errlen)) != 0)
        return r;
    ctx.src = SRC_CMDLINE;
    ctx.loc = "command line";
    for (int i = 1; i < argc; i++) {
        char name[64];
        const char *value = NULL;
        if (config_arg_name(argv[i], name, sizeof(name), &value) == NULL) {
            snprintf(err, errlen, "unexpected argument '%.200s' (see cofferd --help)", argv[i]);
            if ((r = config_problem(&ctx, err, errlen)) != 0)
                return r;
            continue;
        }
        if (value == NULL) {
            const struct config_opt *o = config_find(name);
            if (o != NULL && o->arg == NULL) {
                value = "on";
            } else if (i + 1 < argc) {
                value = argv[++i];
            } else {
                snprintf(err, errlen, "--%s needs a value (see cofferd --help)", name);
                if ((r = config_problem(&ctx, err, errlen)) != 0)
                    return r;
                continue;
            }
        }
        if ((r = config_set(cfg, &ctx, name, value, err, errlen)) != 0)
            return r;
    }
    if (file != NULL && cfg->config_path[0] == '\0')
        snprintf(cfg->config_path, sizeof(cfg->config_path), "%s", file);
    if (cfg->dev) {
        if (!cfg->socket_set)
            strcpy(cfg->socket_path, URING_DEV_SOCKET);
        if (!cfg->secrets_dir_set)
            strcpy(cfg->secrets_dir, "./.coffer-dev/secrets");
    }
    if ((r = uring_hsm_config_check(&cfg->hsm, err, errlen)) != 0 &&
        (r = config_problem(&ctx, err, errlen)) != 0)
        return r;
    if ((r = uring_kube_config_check(&cfg->kube, err, errlen)) != 0 &&
        (r = config_problem(&ctx, err, errlen)) != 0)
        return r;
    if ((r = uring_recovery_check(cfg->recovery_recipient, cfg->n_recovery_recipient, err,
                                  errlen)) != 0 &&
        (r = config_problem(&ctx, err, errlen)) != 0)
        return r;
    if (ctx.problems > 0) {
        snprintf(err, errlen, "the configuration has %d problem%s (above)", ctx.problems,
                 ctx.problems == 1 ? "" : "s");
        return COFFER_ERR_CONFIG;
    }
    if (cfg->n_allow_uid == 0 && cfg->n_allow_gid == 0)
        cfg->allow_uid[cfg->n_allow_uid++] = geteuid();
    return 0;
}
