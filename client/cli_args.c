/* SPDX-License-Identifier: Apache-2.0 */
/* Parsing the coffer command line with getopt_long, per subcommand, and its usage texts. */
#include "cli_args.h"

#include "cli_report.h"
#include "coffer_version.h"
#include "proto_frame.h"

#include <getopt.h>
#include <stdarg.h>
#include <string.h>

enum args_opt {
    OPT_OFFLINE = 0,
    OPT_KEY_FILE,
    OPT_SECRETS_DIR,
    OPT_NAMESPACE,
    OPT_SECRET,
    OPT_FORMAT,
    OPT_CONTEXT,
    OPT_IN,
    OPT_OUT,
    OPT_STATUS_OUT,
    OPT_SPOOL_DIR,
    OPT_BACKEND,
    OPT_PROGRESS,
    OPT_HELP,
    OPT_SOCKET,
    OPT_METADATA,
    OPT_SECRET_SOURCE,
    OPT_KUBECONFIG,
    OPT_RECOVERY_RECIPIENT,
    OPT_RECOVERY_IDENTITY,
    OPT_RECIPIENTS,
    OPT_HSM_MODULE,
    OPT_HSM_TOKEN,
    OPT_HSM_PIN_FILE,
    OPT_LIVE,
    OPT_COUNT
};

#define BIT(o) (1u << (o))
_Static_assert(OPT_COUNT <= 32, "the options' bit masks are unsigned int");

static const struct option args_longopts[] = {
    {"offline", no_argument, NULL, OPT_OFFLINE},
    {"key-file", required_argument, NULL, OPT_KEY_FILE},
    {"secrets-dir", required_argument, NULL, OPT_SECRETS_DIR},
    {"namespace", required_argument, NULL, OPT_NAMESPACE},
    {"secret", required_argument, NULL, OPT_SECRET},
    {"format", required_argument, NULL, OPT_FORMAT},
    {"context", required_argument, NULL, OPT_CONTEXT},
    {"in", required_argument, NULL, OPT_IN},
    {"out", required_argument, NULL, OPT_OUT},
    {"status-out", required_argument, NULL, OPT_STATUS_OUT},
    {"spool-dir", required_argument, NULL, OPT_SPOOL_DIR},
    {"backend", required_argument, NULL, OPT_BACKEND},
    {"progress", required_argument, NULL, OPT_PROGRESS},
    {"help", no_argument, NULL, OPT_HELP},
    {"socket", required_argument, NULL, OPT_SOCKET},
    {"metadata", required_argument, NULL, OPT_METADATA},
    {"secret-source", required_argument, NULL, OPT_SECRET_SOURCE},
    {"kubeconfig", required_argument, NULL, OPT_KUBECONFIG},
    {"recovery-recipient", required_argument, NULL, OPT_RECOVERY_RECIPIENT},
    {"recovery-identity", required_argument, NULL, OPT_RECOVERY_IDENTITY},
    {"recipients", no_argument, NULL, OPT_RECIPIENTS},
    {"hsm-module", required_argument, NULL, OPT_HSM_MODULE},
    {"hsm-token", required_argument, NULL, OPT_HSM_TOKEN},
    {"hsm-pin-file", required_argument, NULL, OPT_HSM_PIN_FILE},
    {"live", no_argument, NULL, OPT_LIVE},
    {NULL, 0, NULL, 0},
};

#define KEY_OPTS                                                                                   \
    (BIT(OPT_KEY_FILE) | BIT(OPT_SECRETS_DIR) | BIT(OPT_NAMESPACE) | BIT(OPT_SECRET) |             \
     BIT(OPT_SECRET_SOURCE) | BIT(OPT_KUBECONFIG))
#define JOB_OPTS                                                                                   \
    (BIT(OPT_OFFLINE) | KEY_OPTS | BIT(OPT_FORMAT) | BIT(OPT_CONTEXT) | BIT(OPT_IN) |              \
     BIT(OPT_OUT) | BIT(OPT_STATUS_OUT) | BIT(OPT_BACKEND) | BIT(OPT_PROGRESS) | BIT(OPT_HELP) |   \
     BIT(OPT_SOCKET))
/* Recovery: recipients for offline encryption; identities or the HSM for offline decryption. */
#define HSM_OPTS      (BIT(OPT_HSM_MODULE) | BIT(OPT_HSM_TOKEN) | BIT(OPT_HSM_PIN_FILE))
#define RECOVERY_OPTS (BIT(OPT_RECOVERY_RECIPIENT) | BIT(OPT_RECOVERY_IDENTITY) | HSM_OPTS)
/* Options that may be given more than once. */
#define REPEATABLE (BIT(OPT_RECOVERY_RECIPIENT) | BIT(OPT_RECOVERY_IDENTITY))
/* Options of one mode only: the engine in this process, or cofferd. */
#define OFFLINE_ONLY (KEY_OPTS | BIT(OPT_BACKEND) | BIT(OPT_SPOOL_DIR) | RECOVERY_OPTS)
#define DAEMON_ONLY  (BIT(OPT_SOCKET) | BIT(OPT_METADATA))

struct args_cmd {
    const char *name;
    unsigned allowed;     /* BIT(OPT_*) of the options the subcommand takes */
    const char *usage[2]; /* daemon mode (or the only form), then --offline (or NULL) */
    const char *help;
};

static const struct args_cmd args_cmds[] = {
    [CLI_CMD_KEYGEN] =
        {
            "keygen",
            BIT(OPT_OFFLINE) | BIT(OPT_OUT) | BIT(OPT_HELP),
            {"coffer keygen [--out FILE]", NULL},
            "Print a new coffer-v1 key: 32 random bytes in base64 and a newline.\n"
            "\n"
            "  --out FILE   write the key to FILE (created with mode 0600; an existing FILE is\n"
            "               never overwritten) instead of standard output\n"
            "\n"
            "Store it as the 'encryptionKey' field of a Kubernetes Secret, or give the file to\n"
            "--key-file.\n",
        },
    [CLI_CMD_ENCRYPT] =
        {
            "encrypt",
            JOB_OPTS | BIT(OPT_RECOVERY_RECIPIENT),
            {"coffer encrypt [--socket PATH] [--format FMT] [--context TEXT] [--in FILE] "
             "[--out FILE] [--status-out FILE]",
             "coffer encrypt --offline (--key-file FILE | --secrets-dir DIR --namespace NS "
             "--secret NAME | --secret-source kubernetes [--kubeconfig FILE] --namespace NS "
             "--secret NAME) [--recovery-recipient FILE]... [--format FMT] [--context TEXT] "
             "[--in FILE] [--out FILE] [--status-out FILE]"},
            "Encrypt a backup archive. cofferd does the work, with the key it is configured\n"
            "with (its --secrets-dir, --namespace and --encryption-secret); with --offline the\n"
            "engine runs in this process with the key named here.\n"
            "\n"
            "  --socket PATH        cofferd's socket (default $COFFER_SOCKET, else\n"
            "                       /run/coffer/cofferd.sock)\n"
            "  --format FMT         coffer-v1 (the default; through cofferd: its --format),\n"
            "                       velero-v1, cobblestone, cobblestone-128, or none (no\n"
            "                       encryption: the data passes through)\n"
            "  --context TEXT       the context bound into bare cobblestone/cobblestone-128\n"
            "  --in FILE            read FILE instead of standard input\n"
            "  --out FILE           write FILE (mode 0600, replaced only on full success)\n"
            "                       instead of standard output\n"
            "  --status-out FILE    write the status metadata JSON to keep with the backup\n"
            "                       (through cofferd with the byte counts added)\n"
            "\n"
            "  --offline            run the engine in this process (no cofferd)\n"
            "  --key-file FILE      the key: 32 random bytes, raw, base64 or hex (keygen)\n"
            "  --secrets-dir DIR    read the key from DIR/NS/NAME/encryptionKey, a Kubernetes\n"
            "  --namespace NS       Secret volume layout, instead of --key-file\n"
            "  --secret NAME\n"
            "  --secret-source kubernetes  read that Secret through the Kubernetes API instead\n"
            "                       of --secrets-dir (with --namespace and --secret)\n"
            "  --kubeconfig FILE    the API and credential (default: in-cluster)\n"
            "  --backend B          AES-GCM implementation: auto, ipsec-mb or openssl\n"
            "  --recovery-recipient FILE\n"
            "                       coffer-v1: also encrypt the key to the age recipients in\n"
            "                       FILE (one 'age1...' a line, '#' comments, as age -R reads),\n"
            "                       inside the authenticated header; repeatable. Their\n"
            "                       identities open the backup alone (docs/recovery.md)\n",
        },
    [CLI_CMD_DECRYPT] =
        {
            "decrypt",
            JOB_OPTS | BIT(OPT_SPOOL_DIR) | BIT(OPT_METADATA) | BIT(OPT_RECOVERY_IDENTITY) |
                HSM_OPTS,
            {"coffer decrypt [--socket PATH] [--metadata FILE] [--format FMT] [--context TEXT] "
             "[--in FILE] [--out FILE] [--status-out FILE]",
             "coffer decrypt --offline (--key-file FILE | --secrets-dir DIR [--namespace NS "
             "--secret NAME] | --secret-source kubernetes [--kubeconfig FILE] [--namespace NS "
             "--secret NAME] | --recovery-identity FILE... | --hsm-module M --hsm-token T "
             "[--hsm-pin-file F]) [--format FMT] [--context TEXT] [--in FILE] [--out FILE] "
             "[--spool-dir DIR]"},
            "Decrypt a backup archive. Only authenticated data is ever written; with --out the\n"
            "file appears only when the whole archive was authentic and complete. cofferd finds\n"
            "the key through the coffer-v1 header or the stored status metadata; with --offline\n"
            "the engine runs in this process with the key named here.\n"
            "\n"
            "  --socket PATH        cofferd's socket (default $COFFER_SOCKET, else\n"
            "                       /run/coffer/cofferd.sock)\n"
            "  --metadata FILE      the status metadata stored with the backup (its\n"
            "                       --status-out): names the format and the key of velero-v1\n"
            "                       and cobblestone backups, which have no header\n"
            "  --format FMT         coffer-v1 is recognised by its header; velero-v1,\n"
            "                       cobblestone, cobblestone-128 and none must be named (here\n"
            "                       or by --metadata)\n"
            "  --context TEXT       the context of a bare cobblestone/cobblestone-128 file\n"
            "  --in FILE            read FILE instead of standard input\n"
            "  --out FILE           write FILE (mode 0600) instead of standard output\n"
            "  --status-out FILE    write the backup's status metadata and the byte counts\n"
            "\n"
            "  --offline            run the engine in this process (no cofferd)\n"
            "  --key-file FILE      the key file\n"
            "  --secrets-dir DIR    read the key from DIR/NS/NAME/encryptionKey; for coffer-v1,\n"
            "                       NS and NAME come from the file's header unless\n"
            "  --namespace NS       --namespace or --secret override them\n"
            "  --secret NAME\n"
            "  --secret-source kubernetes  read the Secret through the Kubernetes API instead\n"
            "                       of --secrets-dir (NS and NAME as above)\n"
            "  --kubeconfig FILE    the API and credential (default: in-cluster)\n"
            "  --spool-dir DIR      velero-v1: where to spool the ciphertext until its tag is\n"
            "                       verified (default $TMPDIR or /tmp)\n"
            "  --backend B          AES-GCM implementation: auto, ipsec-mb or openssl\n"
            "  --recovery-identity FILE\n"
            "                       coffer-v1: open the backup with an age identity file\n"
            "                       (age-keygen or 'coffer recovery keygen'; several identities\n"
            "                       a file and several files allowed) named by its recovery\n"
            "                       recipients: no Secret, HSM or cofferd needed\n"
            "  --hsm-module M       a pkcs11 backup: unwrap its data key on the token itself\n"
            "  --hsm-token T        (module path or p11-kit name, token label), with the user PIN\n"
            "  --hsm-pin-file F     from F or else $COFFER_HSM_PIN; the key label comes from the\n"
            "                       backup's header\n",
        },
    [CLI_CMD_INSPECT] =
        {
            "inspect",
            BIT(OPT_OFFLINE) | BIT(OPT_IN) | BIT(OPT_HELP) | BIT(OPT_RECIPIENTS),
            {"coffer inspect [--in FILE] [--recipients]", NULL},
            "Print the status metadata in a coffer-v1 file's header as JSON. Needs no key; the\n"
            "header is authenticated only when the file is decrypted.\n"
            "\n"
            "  --in FILE      read FILE instead of standard input\n"
            "  --recipients   print only the backup's recovery recipients, one 'age1...' a line\n"
            "                 (nothing when it has none): the recipients file of age's -R\n",
        },
    [CLI_CMD_HEALTH] =
        {
            "health",
            BIT(OPT_SOCKET) | BIT(OPT_HELP) | BIT(OPT_LIVE),
            {"coffer health [--socket PATH] [--live]", NULL},
            "Print cofferd's health as JSON (status, version, format, the key's Secret and id,\n"
            "workers). Exits 0 when its status is \"ok\", 1 when \"degraded\" (the HSM cannot\n"
            "serve; the Secret covers new backups), 2 when \"unavailable\" or not answering:\n"
            "a readiness probe.\n"
            "\n"
            "  --socket PATH   cofferd's socket (default $COFFER_SOCKET, else\n"
            "                  /run/coffer/cofferd.sock)\n"
            "  --live          a liveness probe: exit 0 whenever cofferd answers, whatever\n"
            "                  its state (restarting it does not bring an HSM back); 2 when\n"
            "                  it does not answer\n",
        },
    [CLI_CMD_STATS] =
        {
            "stats",
            BIT(OPT_SOCKET) | BIT(OPT_HELP),
            {"coffer stats [--socket PATH]", NULL},
            "Print cofferd's counters as JSON (connections, jobs, bytes, key loads, uptime).\n"
            "\n"
            "  --socket PATH   cofferd's socket (default $COFFER_SOCKET, else\n"
            "                  /run/coffer/cofferd.sock)\n",
        },
};

const char *cli_args_cmd_name(enum cli_cmd cmd)
{
    return args_cmds[cmd].name;
}

/* "usage: <form>" and, for encrypt and decrypt, "       <offline form>". */
static void args_print_usage(FILE *f, const struct args_cmd *c)
{
    fprintf(f, "usage: %s\n", c->usage[0]);
    if (c->usage[1] != NULL)
        fprintf(f, "       %s\n", c->usage[1]);
}

int cli_args_usage_error(enum cli_cmd cmd, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    cli_report_line("%s", msg);
    args_print_usage(stderr, &args_cmds[cmd]);
    fprintf(stderr, "Try 'coffer %s --help'.\n", args_cmds[cmd].name);
    return CLI_EXIT_USAGE;
}

static void args_print_top_usage(FILE *f)
{
    fprintf(f, "usage: coffer <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(args_cmds) / sizeof(args_cmds[0]); i++)
        for (size_t u = 0; u < 2 && args_cmds[i].usage[u] != NULL; u++)
            fprintf(f, "  %s\n", args_cmds[i].usage[u]);
    fprintf(f, "  coffer hsm init-kek|list|check ...   (HSM key administration)\n");
    fprintf(f, "  coffer recovery keygen|recipient ...  (age recovery identities)\n");
    fprintf(f, "  coffer --version\n");
    fprintf(f, "\n'coffer <command> --help' describes a command's options.\n");
}

static int args_find_cmd(const char *name, enum cli_cmd *out)
{
    for (size_t i = 0; i < sizeof(args_cmds) / sizeof(args_cmds[0]); i++)
        if (strcmp(name, args_cmds[i].name) == 0) {
            *out = (enum cli_cmd)i;
            return 0;
        }
    return -1;
}

static const char *args_path(const char *v)
{
    return strcmp(v, "-") == 0 ? NULL : v;
}

/* Store one option's value; returns CLI_ARGS_RUN or an exit status. */
static int args_store(struct cli_args *a, int opt, const char *v)
{
    switch (opt) {
    case OPT_OFFLINE:
        a->offline = 1;
        break;
    case OPT_KEY_FILE:
        a->key_file = v;
        break;
    case OPT_SECRETS_DIR:
        a->secrets_dir = v;
        break;
    case OPT_NAMESPACE:
        a->ns = v;
        break;
    case OPT_SECRET:
        a->secret = v;
        break;
    case OPT_FORMAT:
        if (engine_format_parse(v, &a->format) != 0)
            return cli_args_usage_error(a->cmd,
                                        "unknown format '%s' (coffer-v1, velero-v1, cobblestone, "
                                        "cobblestone-128 or none)",
                                        v);
        a->format_given = 1;
        break;
    case OPT_CONTEXT:
        a->context = v;
        break;
    case OPT_IN:
        a->in = args_path(v);
        break;
    case OPT_OUT:
        a->out = args_path(v);
        break;
    case OPT_STATUS_OUT:
        a->status_out = args_path(v);
        break;
    case OPT_SPOOL_DIR:
        a->spool_dir = v;
        break;
    case OPT_SOCKET:
        a->socket_path = v;
        break;
    case OPT_METADATA:
        a->metadata = v;
        break;
    case OPT_SECRET_SOURCE:
        if (strcmp(v, "kubernetes") != 0 && strcmp(v, "dir") != 0)
            return cli_args_usage_error(a->cmd, "--secret-source takes dir or kubernetes");
        a->kube = strcmp(v, "kubernetes") == 0;
        break;
    case OPT_KUBECONFIG:
        a->kubeconfig = v;
        break;
    case OPT_RECOVERY_RECIPIENT:
    case OPT_RECOVERY_IDENTITY: {
        const char **list =
            opt == OPT_RECOVERY_RECIPIENT ? a->recovery_recipient : a->recovery_identity;
        size_t *n =
            opt == OPT_RECOVERY_RECIPIENT ? &a->n_recovery_recipient : &a->n_recovery_identity;
        if (*n == CLI_RECOVERY_FILES_MAX)
            return cli_args_usage_error(a->cmd, "--%s given more than %d times",
                                        args_longopts[opt].name, CLI_RECOVERY_FILES_MAX);
        list[(*n)++] = v;
        break;
    }
    case OPT_RECIPIENTS:
        a->recipients = 1;
        break;
    case OPT_HSM_MODULE:
        a->hsm_module = v;
        break;
    case OPT_HSM_TOKEN:
        a->hsm_token = v;
        break;
    case OPT_HSM_PIN_FILE:
        a->hsm_pin_file = v;
        break;
    case OPT_LIVE:
        a->live = 1;
        break;
    case OPT_BACKEND:
        if (engine_gcm_backend_parse(v, &a->backend) != 0)
            return cli_args_usage_error(a->cmd, "unknown backend '%s' (auto, ipsec-mb or openssl)",
                                        v);
        break;
    case OPT_PROGRESS:
        if (strcmp(v, "auto") == 0)
            a->progress = CLI_PROGRESS_AUTO;
        else if (strcmp(v, "always") == 0)
            a->progress = CLI_PROGRESS_ALWAYS;
        else if (strcmp(v, "never") == 0)
            a->progress = CLI_PROGRESS_NEVER;
        else
            return cli_args_usage_error(a->cmd, "--progress takes auto, always or never");
        break;
    default:
        return cli_args_usage_error(a->cmd, "unknown option");
    }
    return CLI_ARGS_RUN;
}

/* Why an option belongs to one mode: the tail of the usage message. */
static const char *args_mode_reason(int opt)
{
    switch (opt) {
    case OPT_KEY_FILE:
    case OPT_SECRETS_DIR:
    case OPT_NAMESPACE:
    case OPT_SECRET:
    case OPT_SECRET_SOURCE:
    case OPT_KUBECONFIG:
        return "through cofferd the daemon's own key is used (its --secrets-dir, --namespace "
               "and --encryption-secret; a restore finds its key by the header or --metadata)";
    case OPT_BACKEND:
        return "cofferd chooses its own AES-GCM implementation";
    case OPT_SPOOL_DIR:
        return "cofferd spools velero-v1 restores in its own --spool-dir";
    case OPT_RECOVERY_RECIPIENT:
        return "cofferd adds the recovery recipients it is configured with (its "
               "--recovery-recipient)";
    case OPT_RECOVERY_IDENTITY:
    case OPT_HSM_MODULE:
    case OPT_HSM_TOKEN:
    case OPT_HSM_PIN_FILE:
        return "a restore with a recovery identity or straight from the HSM runs in this "
               "process, without cofferd";
    default:
        return "";
    }
}

/* Options that belong to the other mode: offline key options, or the daemon's socket. */
static int args_check_mode(const struct cli_args *a, unsigned seen)
{
    for (int opt = 0; opt < OPT_COUNT; opt++) {
        if (!(seen & BIT(opt)))
            continue;
        if (!a->offline && (OFFLINE_ONLY & BIT(opt)))
            return cli_args_usage_error(a->cmd, "--%s needs --offline: %s", args_longopts[opt].name,
                                        args_mode_reason(opt));
        if (a->offline && (DAEMON_ONLY & BIT(opt)))
            return cli_args_usage_error(a->cmd, "--%s is for cofferd, not for --offline",
                                        args_longopts[opt].name);
    }
    if (a->offline && a->cmd == CLI_CMD_DECRYPT && (seen & BIT(OPT_STATUS_OUT)))
        return cli_args_usage_error(a->cmd, "'coffer decrypt --offline' does not take "
                                            "--status-out (only cofferd reports a restore's "
                                            "metadata)");
    return CLI_ARGS_RUN;
}

/* Recovery recipients, identities and the offline HSM restore: coffer-v1 only, one key source. */
static int args_check_recovery(const struct cli_args *a)
{
    int sources = (a->key_file != NULL) + (a->secrets_dir != NULL) + (a->kube != 0) +
                  (a->n_recovery_identity > 0) + (a->hsm_module != NULL);

    if ((a->n_recovery_recipient > 0 || a->n_recovery_identity > 0 || a->hsm_module != NULL) &&
        a->format != COFFER_FORMAT_COFFER_V1)
        return cli_args_usage_error(a->cmd,
                                    "recovery recipients and pkcs11 keys live in the "
                                    "coffer-v1 header: not with --format %s",
                                    engine_format_name(a->format));
    if (sources > 1 && (a->n_recovery_identity > 0 || a->hsm_module != NULL))
        return cli_args_usage_error(a->cmd, "give one key source: --key-file, --secrets-dir, "
                                            "--secret-source kubernetes, --recovery-identity or "
                                            "--hsm-module");
    if ((a->hsm_token != NULL || a->hsm_pin_file != NULL) && a->hsm_module == NULL)
        return cli_args_usage_error(a->cmd, "--hsm-token and --hsm-pin-file need --hsm-module");
    if (a->hsm_module != NULL && a->hsm_token == NULL)
        return cli_args_usage_error(a->cmd, "--hsm-module needs --hsm-token (the token's label)");
    return CLI_ARGS_RUN;
}

/* The options that belong to one mode only, then checks between options. */
static int args_check(const struct cli_args *a, unsigned seen)
{
    int cobblestone =
        a->format == COFFER_FORMAT_COBBLESTONE || a->format == COFFER_FORMAT_COBBLESTONE_128;
    /* A restore through cofferd may take its format from --metadata, which cofferd checks. */
    int format_from_metadata = a->metadata != NULL && !a->format_given;

    if (a->cmd == CLI_CMD_ENCRYPT || a->cmd == CLI_CMD_DECRYPT) {
        int r = args_check_mode(a, seen);
        if (r != CLI_ARGS_RUN)
            return r;
    }
    if (a->context != NULL && !cobblestone && !format_from_metadata)
        return cli_args_usage_error(a->cmd, "--context applies only to --format cobblestone or "
                                            "cobblestone-128 (coffer-v1 binds its header)");
    if (a->key_file != NULL && a->secrets_dir != NULL)
        return cli_args_usage_error(a->cmd, "give either --key-file or --secrets-dir, not both");
    if (a->kube && (a->secrets_dir != NULL || a->key_file != NULL))
        return cli_args_usage_error(a->cmd, "--secret-source kubernetes reads the Secret through "
                                            "the API: drop --secrets-dir and --key-file");
    if (a->kubeconfig != NULL && !a->kube)
        return cli_args_usage_error(a->cmd, "--kubeconfig needs --secret-source kubernetes");
    if (a->key_file != NULL && strcmp(a->key_file, "-") == 0 && a->in == NULL)
        return cli_args_usage_error(a->cmd, "--key-file - reads the key from standard input, "
                                            "so the data cannot come from there too: give it "
                                            "with --in FILE");
    if ((a->ns != NULL || a->secret != NULL) && a->secrets_dir == NULL && !a->kube)
        return cli_args_usage_error(a->cmd, "--namespace and --secret need --secrets-dir "
                                            "(or --secret-source kubernetes)");
    return args_check_recovery(a);
}

/*
 * An option getopt refused, named the same way whether or not a value follows it: '--bogus',
 * '--bogus=x' and '--bogus x' are all "unknown option '--bogus'"; a known option given a value
 * it does not take, or without the value it needs, is named with what is wrong.
 */
static int args_bad_option(enum cli_cmd cmd, int opt, const char *elem)
{
    char name[64];
    const char *eq;

    if (strncmp(elem, "--", 2) != 0) {
        snprintf(name, sizeof(name), "-%c", optopt > 0x20 && optopt < 0x7f ? optopt : '?');
        return cli_args_usage_error(
            cmd, opt == ':' ? "option '%s' needs a value" : "unknown option '%s'", name);
    }
    eq = strchr(elem, '=');
    snprintf(name, sizeof(name), "%.*s%s", (int)(eq != NULL ? eq - elem : 60), elem,
             (eq != NULL ? eq - elem : (long)strlen(elem)) > 60 ? "..." : "");
    if (opt == ':')
        return cli_args_usage_error(cmd, "option '%s' needs a value", name);
    for (const struct option *o = args_longopts; o->name != NULL; o++)
        if (eq != NULL && strlen(o->name) == (size_t)(eq - elem - 2) &&
            strncmp(o->name, elem + 2, (size_t)(eq - elem - 2)) == 0 && o->has_arg == no_argument)
            return cli_args_usage_error(cmd, "option '%s' takes no value", name);
    return cli_args_usage_error(cmd, "unknown option '%s'", name);
}

int cli_args_parse(struct cli_args *a, int argc, char **argv)
{
    unsigned seen = 0;
    int r;

    memset(a, 0, sizeof(*a));
    a->format = COFFER_FORMAT_COFFER_V1;
    a->backend = ENGINE_GCM_AUTO;
    a->progress = CLI_PROGRESS_AUTO;

    if (argc < 2) {
        cli_report_line("no command given");
        args_print_top_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        args_print_top_usage(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("coffer %s (protocol %u)\n", COFFER_VERSION_STRING, COFFER_PROTO_VERSION);
        return CLI_EXIT_OK;
    }
    if (args_find_cmd(argv[1], &a->cmd) != 0) {
        cli_report_line("unknown command '%s'", argv[1]);
        args_print_top_usage(stderr);
        return CLI_EXIT_USAGE;
    }

    const struct args_cmd *c = &args_cmds[a->cmd];
    char **av = argv + 1; /* getopt sees the subcommand as its argv[0] */
    int ac = argc - 1;
    opterr = 0;
    optind = 1;
    for (;;) {
        int at = optind; /* the element getopt is about to read (a long option ends in it) */
        int opt = getopt_long(ac, av, "+:h", args_longopts, NULL);
        if (opt == -1)
            break;
        if (opt == 'h')
            opt = OPT_HELP;
        if (opt == '?' || opt == ':' || opt < 0 || opt >= OPT_COUNT)
            return args_bad_option(a->cmd, opt, at < ac ? av[at] : "");
        if (!(c->allowed & BIT(opt)))
            return cli_args_usage_error(a->cmd, "'coffer %s' does not take --%s", c->name,
                                        args_longopts[opt].name);
        if (opt == OPT_HELP) {
            args_print_usage(stdout, c);
            printf("\n%s", c->help);
            return CLI_EXIT_OK;
        }
        if ((seen & BIT(opt)) && !(REPEATABLE & BIT(opt)))
            return cli_args_usage_error(a->cmd, "--%s given twice", args_longopts[opt].name);
        seen |= BIT(opt);
        if (optarg != NULL && optarg[0] == '\0')
            return cli_args_usage_error(a->cmd, "--%s needs a non-empty value",
                                        args_longopts[opt].name);
        r = args_store(a, opt, optarg);
        if (r != CLI_ARGS_RUN)
            return r;
    }
    if (optind < ac)
        return cli_args_usage_error(a->cmd, "unexpected argument '%s'", av[optind]);
    return args_check(a, seen);
}
