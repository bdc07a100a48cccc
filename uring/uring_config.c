/* SPDX-License-Identifier: Apache-2.0 */
/* Parsing cofferd's flags and config file into one struct uring_config. */
#include "uring_config.h"

#include "coffer_error.h"
#include "uring_log.h"
#include "uring_metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { SRC_FILE = 0, SRC_CMDLINE = 1 };

/* Options that take no value on the command line (in a file they take on|off|true|false). */
static const char *const bool_opts[] = {"dev", "echo-baseline", "help", "version", NULL};

void uring_config_usage(FILE *f)
{
    fputs(
        "usage: cofferd [options]\n"
        "Encrypts and decrypts backup archives for clients on a Unix socket (io_uring).\n\n"
        "  --config FILE             read `name = value` lines (same names as the flags;\n"
        "                            '#' starts a comment; the command line wins)\n"
        "  --socket PATH             listening socket (default /run/coffer/cofferd.sock)\n"
        "  --secrets-dir DIR         Secret volumes: DIR/<namespace>/<name>/encryptionKey\n"
        "                            (default /etc/coffer/secrets)\n"
        "  --namespace NS            namespace of the encryption Secret (default velero)\n"
        "  --encryption-secret NAME  Secret holding the key for new backups (default coffer-key)\n"
        "  --encryption on|off       encrypt new backups (default on)\n"
        "  --format coffer-v1|velero-v1  format of new backups (default coffer-v1)\n"
        "  --workers N               io_uring worker threads (default: one per core)\n"
        "  --max-connections N       concurrent connections (default 256)\n"
        "  --allow-uid UID           peer uid allowed to connect (repeatable; default: own uid)\n"
        "  --allow-gid GID           peer gid allowed to connect (repeatable)\n"
        "  --io-timeout SECONDS      drop a connection that makes no progress (default 300)\n"
        "  --shutdown-grace SECONDS  after SIGTERM, running jobs get this long to finish; then\n"
        "                            they fail with SHUTDOWN and cofferd exits (default 30)\n"
        "  --helpers N               helper threads that run the cipher off the rings and the\n"
        "                            velero-v1 restore spool (default: one per core)\n"
        "  --offload-min BYTES       cipher batches of at least BYTES run on the helper threads\n"
        "                            instead of the ring thread (default 0: never; velero-v1\n"
        "                            restores that spill to the spool file always use them)\n"
        "  --fd-piece BYTES          descriptor jobs read, encrypt and write in pieces of BYTES,\n"
        "                            four at a time (default 524288; 16384 to 4194304)\n"
        "  --split-min BYTES         a descriptor job's cipher batch of at least BYTES is cut in\n"
        "                            two: half on a helper thread, half on the ring thread, so\n"
        "                            one job's AES-GCM uses two cores (default 65536; 0: never;\n"
        "                            never on a one-CPU host)\n"
        "  --spool-dir DIR           velero-v1 restores spool here (default $TMPDIR or /tmp)\n"
        "  --log-level debug|info|warn|error (default info)\n"
        "  --log-format logfmt|json  one `key=value` line per event (default), or one JSON\n"
        "                            object per line (docs/observability.md)\n"
        "  --metrics-listen ADDR:PORT|PATH  serve Prometheus metrics at http://ADDR:PORT/metrics\n"
        "                            (PORT 0: any free port, logged as metrics_listening), or on\n"
        "                            the Unix socket PATH (starting with / or .); default: off\n"
        "  --dev                     development mode: creates a key under ./.coffer-dev and\n"
        "                            uses ./.coffer-dev/cofferd.sock (never in production)\n"
        "  --echo-baseline           benchmark baseline: jobs copy bytes, no encryption\n",
        f);
    uring_hsm_config_usage(f);
    fputs("  --help, --version\n"
          "SIGHUP re-reads the config file and keys; SIGTERM finishes running jobs and exits\n"
          "(a second SIGTERM, or the end of --shutdown-grace, fails them with SHUTDOWN).\n",
          f);
}

static int is_bool_opt(const char *name)
{
    for (int i = 0; bool_opts[i] != NULL; i++)
        if (strcmp(name, bool_opts[i]) == 0)
            return 1;
    return 0;
}

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

/* Set one option; cleared tracks which repeatable lists the command line already replaced. */
static int config_set(struct uring_config *cfg, int src, int *cleared, const char *name,
                      const char *v, char *err, size_t errlen)
{
    long n = 0;

    if (strcmp(name, "socket") == 0) {
        if (copy_str(cfg->socket_path, sizeof(cfg->socket_path), v) != 0)
            goto bad;
        cfg->socket_set = 1;
    } else if (strcmp(name, "secrets-dir") == 0) {
        if (copy_str(cfg->secrets_dir, sizeof(cfg->secrets_dir), v) != 0)
            goto bad;
        cfg->secrets_dir_set = 1;
    } else if (strcmp(name, "namespace") == 0) {
        if (copy_str(cfg->ns, sizeof(cfg->ns), v) != 0)
            goto bad;
    } else if (strcmp(name, "encryption-secret") == 0) {
        if (copy_str(cfg->secret, sizeof(cfg->secret), v) != 0)
            goto bad;
    } else if (strcmp(name, "spool-dir") == 0) {
        if (copy_str(cfg->spool_dir, sizeof(cfg->spool_dir), v) != 0)
            goto bad;
    } else if (strcmp(name, "config") == 0) {
        if (src != SRC_CMDLINE || copy_str(cfg->config_path, sizeof(cfg->config_path), v) != 0)
            goto bad;
    } else if (strcmp(name, "encryption") == 0) {
        if (parse_bool(v, &cfg->encryption) != 0)
            goto bad;
    } else if (strcmp(name, "format") == 0) {
        coffer_format f;
        if (engine_format_parse(v, &f) != 0 ||
            (f != COFFER_FORMAT_COFFER_V1 && f != COFFER_FORMAT_VELERO_V1))
            goto bad;
        cfg->format = f;
    } else if (strcmp(name, "workers") == 0) {
        if (parse_int(v, 1, 1024, &n) != 0)
            goto bad;
        cfg->workers = (int)n;
    } else if (strcmp(name, "max-connections") == 0) {
        if (parse_int(v, 1, 65536, &n) != 0)
            goto bad;
        cfg->max_conns = (int)n;
    } else if (strcmp(name, "io-timeout") == 0) {
        if (parse_int(v, 1, 86400, &n) != 0)
            goto bad;
        cfg->io_timeout = (int)n;
    } else if (strcmp(name, "shutdown-grace") == 0) {
        if (parse_int(v, 0, 86400, &n) != 0)
            goto bad;
        cfg->shutdown_grace = (int)n;
    } else if (strcmp(name, "helpers") == 0) {
        if (parse_int(v, 1, 1024, &n) != 0)
            goto bad;
        cfg->helpers = (int)n;
    } else if (strcmp(name, "fd-piece") == 0) {
        if (parse_int(v, 16384, 4L << 20, &n) != 0)
            goto bad;
        cfg->fd_piece = n;
    } else if (strcmp(name, "split-min") == 0) {
        if (parse_int(v, 0, 1L << 30, &n) != 0)
            goto bad;
        cfg->split_min = n;
    } else if (strcmp(name, "offload-min") == 0) {
        if (parse_int(v, 0, 1L << 30, &n) != 0)
            goto bad;
        cfg->offload_min = n;
    } else if (strcmp(name, "allow-uid") == 0 || strcmp(name, "allow-gid") == 0) {
        int is_uid = name[6] == 'u';
        int bit = is_uid ? 1 : 2;
        if (parse_int(v, 0, INT_MAX, &n) != 0)
            goto bad;
        if (src == SRC_CMDLINE && !(*cleared & bit)) {
            *cleared |= bit;
            if (is_uid)
                cfg->n_allow_uid = 0;
            else
                cfg->n_allow_gid = 0;
        }
        if ((is_uid ? cfg->n_allow_uid : cfg->n_allow_gid) >= URING_MAX_ALLOW) {
            snprintf(err, errlen, "too many --%s entries (at most %d)", name, URING_MAX_ALLOW);
            return COFFER_ERR_CONFIG;
        }
        if (is_uid)
            cfg->allow_uid[cfg->n_allow_uid++] = (uid_t)n;
        else
            cfg->allow_gid[cfg->n_allow_gid++] = (gid_t)n;
    } else if (strcmp(name, "log-level") == 0) {
        if ((cfg->log_level = uring_log_level_parse(v)) < 0)
            goto bad;
    } else if (strcmp(name, "dev") == 0) {
        if (parse_bool(v, &cfg->dev) != 0)
            goto bad;
    } else if (strcmp(name, "echo-baseline") == 0) {
        if (parse_bool(v, &cfg->echo) != 0)
            goto bad;
    } else if (strcmp(name, "metrics-listen") == 0) {
        if (!uring_metrics_addr_valid(v) ||
            copy_str(cfg->metrics_listen, sizeof(cfg->metrics_listen), v) != 0)
            goto bad;
    } else if (strcmp(name, "log-format") == 0) {
        if ((cfg->log_format = uring_log_format_parse(v)) < 0)
            goto bad;
    } else if ((n = uring_hsm_config_set(&cfg->hsm, name, v, err, errlen)) != 1) {
        return (int)n; /* --hsm-* */
    } else {
        snprintf(err, errlen, "unknown option '%.64s' (see --help)", name);
        return COFFER_ERR_CONFIG;
    }
    return 0;
bad:
    snprintf(err, errlen, "invalid value for --%s: '%.200s' (see --help)", name, v);
    return COFFER_ERR_CONFIG;
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

static int config_file(struct uring_config *cfg, const char *path, char *err, size_t errlen)
{
    int r = COFFER_ERR_CONFIG;
    int cleared = 0, lineno = 0;
    char *text = NULL, *line, *save = NULL;
    ssize_t n;
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
    for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        char *hash = strchr(line, '#'), *eq, *name, *value;
        lineno++;
        if (strlen(line) > URING_CONFIG_LINE) {
            snprintf(err, errlen, "%.200s:%d: line too long", path, lineno);
            goto out;
        }
        if (hash != NULL)
            *hash = '\0';
        name = trim(line);
        if (*name == '\0')
            continue;
        if ((eq = strchr(name, '=')) == NULL) {
            snprintf(err, errlen, "%.200s:%d: expected `name = value`", path, lineno);
            goto out;
        }
        *eq = '\0';
        name = trim(name);
        value = trim(eq + 1);
        if (strcmp(name, "config") == 0 || strcmp(name, "help") == 0 ||
            strcmp(name, "version") == 0) {
            snprintf(err, errlen, "%.200s:%d: '%s' is not allowed in a config file", path, lineno,
                     name);
            goto out;
        }
        if ((r = config_set(cfg, SRC_FILE, &cleared, name, value, err, errlen)) != 0) {
            size_t used = strlen(err);
            snprintf(err + used, errlen - used, " at %.200s:%d", path, lineno);
            goto out;
        }
    }
    r = 0;
out:
    if (fd >= 0)
        close(fd);
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
    cfg->shutdown_grace = 30;
    cfg->helpers = cfg->workers;
    cfg->offload_min = 0;
    cfg->split_min = ncpu > 1 ? 65536 : 0;
    cfg->fd_piece = URING_FD_PIECE_DEFAULT;
    cfg->log_level = URING_LOG_INFO;
    uring_hsm_config_defaults(&cfg->hsm);
}

int uring_config_load(struct uring_config *cfg, int argc, char **argv, char *err, size_t errlen)
{
    int r = COFFER_ERR_CONFIG;
    int cleared = 0;
    const char *file = NULL;

    config_defaults(cfg);
    err[0] = '\0';
    /* First pass: --help, --version and --config. */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            uring_config_usage(stdout);
            return 1;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("cofferd 0.1.0 (protocol 1)\n");
            return 1;
        }
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            file = argv[i + 1];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            file = argv[i] + 9;
    }
    if (file != NULL && (r = config_file(cfg, file, err, errlen)) != 0)
        return r;
    for (int i = 1; i < argc; i++) {
        char name[64];
        const char *arg = argv[i], *value = NULL, *eq;
        size_t nlen;
        if (strncmp(arg, "--", 2) != 0) {
            snprintf(err, errlen, "unexpected argument '%.200s' (see --help)", arg);
            return COFFER_ERR_CONFIG;
        }
        arg += 2;
        eq = strchr(arg, '=');
        nlen = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
        if (nlen == 0 || nlen >= sizeof(name)) {
            snprintf(err, errlen, "unknown option '%.200s' (see --help)", argv[i]);
            return COFFER_ERR_CONFIG;
        }
        memcpy(name, arg, nlen);
        name[nlen] = '\0';
        if (eq != NULL) {
            value = eq + 1;
        } else if (is_bool_opt(name)) {
            value = "on";
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            snprintf(err, errlen, "--%s needs a value (see --help)", name);
            return COFFER_ERR_CONFIG;
        }
        if ((r = config_set(cfg, SRC_CMDLINE, &cleared, name, value, err, errlen)) != 0)
            return r;
    }
    if (file != NULL && cfg->config_path[0] == '\0')
        snprintf(cfg->config_path, sizeof(cfg->config_path), "%s", file);
    if (cfg->dev) {
        if (!cfg->socket_set)
            strcpy(cfg->socket_path, "./.coffer-dev/cofferd.sock");
        if (!cfg->secrets_dir_set)
            strcpy(cfg->secrets_dir, "./.coffer-dev/secrets");
    }
    if ((r = uring_hsm_config_check(&cfg->hsm, err, errlen)) != 0)
        return r;
    if (cfg->n_allow_uid == 0 && cfg->n_allow_gid == 0)
        cfg->allow_uid[cfg->n_allow_uid++] = geteuid();
    return 0;
}
