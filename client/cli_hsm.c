/* SPDX-License-Identifier: Apache-2.0 */
/* 'coffer hsm init-kek|list|check': key administration on a PKCS#11 token through coffer_hsm. */
#include "cli_hsm.h"

#include "coffer_error.h"
#include "engine_secmem.h"
#include "hsm_admin.h"
#include "hsm_client.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXIT_OK    0
#define EXIT_FAIL  1
#define EXIT_USAGE 2

enum hsm_cmd { HSM_CMD_INIT_KEK, HSM_CMD_LIST, HSM_CMD_CHECK };

struct hsm_args {
    enum hsm_cmd cmd;
    const char *name;
    const char *module;
    const char *token;
    const char *label;
    const char *pin_file;
    unsigned timeout_ms;
    int verbose;
    int mechanism; /* hsm_mech; 0: negotiate */
};

static const char usage_text[] =
    "usage: coffer hsm init-kek --module M --token T --label L [--pin-file F] [--timeout MS]\n"
    "                           [--mechanism auto|gcm|gcm-token-iv|kwp|cbc-hmac]\n"
    "       coffer hsm list     --module M [--token T [--pin-file F]] [--timeout MS]\n"
    "       coffer hsm check    --module M --token T --label L [--pin-file F] [--timeout MS]\n"
    "                           [--mechanism auto|gcm|gcm-token-iv|kwp|cbc-hmac]\n"
    "\n"
    "  --module M     PKCS#11 module: a path (/usr/lib/softhsm/libsofthsm2.so) or a p11-kit\n"
    "                 module name (softhsm2; 'p11-kit list-modules' shows them)\n"
    "  --token T      the token's label (slot ids change; labels do not)\n"
    "  --label L      the key-encryption key's label\n"
    "  --pin-file F   read the user PIN from F; without it the PIN is taken from the\n"
    "                 environment variable COFFER_HSM_PIN. Never give a PIN on the command line.\n"
    "  --timeout MS   how long to wait for the HSM (default 5000)\n"
    "  --mechanism X  how data keys are wrapped (default auto: the first the token offers of\n"
    "                 gcm (CKM_AES_GCM, our IV), gcm-token-iv (the token makes the IV), kwp\n"
    "                 (RFC 5649 key wrap), cbc-hmac (CKM_AES_CBC_PAD, then CKM_SHA256_HMAC\n"
    "                 under a second key '<label>-hmac'))\n"
    "  --verbose      print the HSM client's events on stderr\n"
    "\n"
    "init-kek creates an AES-256 key that never leaves the token (private, sensitive, not\n"
    "extractable, encrypt/decrypt only, or wrap/unwrap only for kwp; for cbc-hmac also the HMAC\n"
    "key, sign/verify only) and refuses a label that is already used.\n"
    "list shows the secret keys of a token, or the tokens of a module when --token is left out.\n"
    "check tests the module, the token, the login, the key and a wrap/unwrap round trip, one\n"
    "line each, and exits 0 only when all of them work.\n";

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fputs("coffer: hsm: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n", stderr);
    fputs(usage_text, stderr);
    return EXIT_USAGE;
}

/* Print a failure: "coffer: hsm <cmd>: <sentence> [CKR_...]", control characters as '?'. */
static void report(const char *cmd, const hsm_status *st)
{
    char line[HSM_STATUS_TEXT_MAX + 64];
    int tag = st->ckr[0] && strstr(st->text, st->ckr) == NULL; /* name the CKR_ once */
    snprintf(line, sizeof(line), "%s%s%s%s", st->text[0] ? st->text : coffer_strerror(st->code),
             tag ? " [" : "", tag ? st->ckr : "", tag ? "]" : "");
    for (char *p = line; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    fprintf(stderr, "coffer: hsm %s: %s\n", cmd, line);
}

static void log_line(void *ctx, const char *line)
{
    (void)ctx;
    fprintf(stderr, "coffer: %s\n", line);
}

static int parse_ms(const char *s, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v == 0 || v > 3600000UL)
        return -1;
    *out = (unsigned)v;
    return 0;
}

static int args_parse(struct hsm_args *a, int argc, char **argv)
{
    int i = 1;
    const char *mech = NULL;
    memset(a, 0, sizeof(*a));
    if (i < argc && strcmp(argv[i], "hsm") == 0)
        i++;
    if (i >= argc)
        return usage_error("a subcommand is needed: init-kek, list or check");
    a->name = argv[i];
    if (strcmp(argv[i], "init-kek") == 0)
        a->cmd = HSM_CMD_INIT_KEK;
    else if (strcmp(argv[i], "list") == 0)
        a->cmd = HSM_CMD_LIST;
    else if (strcmp(argv[i], "check") == 0)
        a->cmd = HSM_CMD_CHECK;
    else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
        fputs(usage_text, stdout);
        return EXIT_OK;
    } else
        return usage_error("unknown subcommand '%s'", argv[i]);
    for (i++; i < argc; i++) {
        const char *opt = argv[i], *val = NULL, *eq = strchr(opt, '=');
        size_t optlen = eq != NULL ? (size_t)(eq - opt) : strlen(opt);
        const char **slot = NULL;
#define IS(name) (optlen == sizeof(name) - 1 && strncmp(opt, name, optlen) == 0)
        if (IS("--help") || IS("-h")) {
            fputs(usage_text, stdout);
            return EXIT_OK;
        }
        if (IS("--verbose")) {
            a->verbose = 1;
            continue;
        }
        if (IS("--pin") || IS("--so-pin"))
            return usage_error("PINs are never taken from the command line (other users can read "
                               "it in the process list); use --pin-file F or set COFFER_HSM_PIN");
        if (IS("--module"))
            slot = &a->module;
        else if (IS("--token"))
            slot = &a->token;
        else if (IS("--label"))
            slot = &a->label;
        else if (IS("--pin-file"))
            slot = &a->pin_file;
        else if (IS("--mechanism") && a->cmd != HSM_CMD_LIST)
            slot = &mech;
        else if (!IS("--timeout"))
            return usage_error("unknown option '%.*s' for 'hsm %s'", (int)optlen, opt, a->name);
#undef IS
        if (eq != NULL)
            val = eq + 1;
        else if (i + 1 < argc)
            val = argv[++i];
        else
            return usage_error("option '%s' needs a value", opt);
        if (slot == NULL) {
            if (parse_ms(val, &a->timeout_ms) < 0)
                return usage_error("--timeout takes milliseconds (1 to 3600000), not '%s'", val);
            continue;
        }
        if (*slot != NULL)
            return usage_error("option '%.*s' given twice", (int)optlen, opt);
        if (val[0] == '\0')
            return usage_error("option '%.*s' needs a non-empty value", (int)optlen, opt);
        *slot = val;
    }
    if (mech != NULL && (a->mechanism = hsm_mech_parse_option(mech)) < 0)
        return usage_error("--mechanism takes auto, gcm, gcm-token-iv, kwp or cbc-hmac, not '%s'",
                           mech);
    if (a->module == NULL)
        return usage_error("'hsm %s' needs --module", a->name);
    if (a->cmd != HSM_CMD_LIST && a->token == NULL)
        return usage_error("'hsm %s' needs --token", a->name);
    if (a->cmd != HSM_CMD_LIST && a->label == NULL)
        return usage_error("'hsm %s' needs --label", a->name);
    if (a->cmd == HSM_CMD_LIST && a->label != NULL)
        return usage_error("'hsm list' takes no --label");
    if (a->cmd == HSM_CMD_LIST && a->token == NULL && a->pin_file != NULL)
        return usage_error("'hsm list' without --token needs no PIN");
    return -1;
}

static void key_flags(const hsm_key_info *k, char *buf, size_t len)
{
    snprintf(buf, len, "%s%s%s%s%s%s%s%s%s%s", k->is_private == 1 ? " private" : " PUBLIC",
             k->sensitive == 1 ? " sensitive" : " NOT-SENSITIVE",
             k->extractable == 0 ? " not-extractable" : " EXTRACTABLE",
             k->encrypt == 1 ? " encrypt" : "", k->decrypt == 1 ? " decrypt" : "",
             k->wrap == 1 ? " wrap" : "", k->unwrap == 1 ? " unwrap" : "",
             k->sign == 1 ? " sign" : "", k->verify == 1 ? " verify" : "",
             k->derive == 1 ? " derive" : "");
}

static int run_list(hsm_client *c, const struct hsm_args *a)
{
    hsm_status st;
    int r;

    if (a->token == NULL) {
        hsm_token_desc *t = NULL;
        size_t n = 0;
        if ((r = hsm_admin_tokens_list(c, &t, &n, &st)) < 0) {
            report("list", &st);
            return EXIT_FAIL;
        }
        printf("module '%s': %zu token%s\n", a->module, n, n == 1 ? "" : "s");
        for (size_t i = 0; i < n; i++)
            printf("  slot %lu  label '%s'  %s %s  serial %s%s\n", t[i].slot, t[i].label,
                   t[i].manufacturer, t[i].model, t[i].serial,
                   t[i].initialized ? "" : "  (not initialised)");
        free(t);
        return EXIT_OK;
    }
    hsm_key_info *k = NULL;
    size_t n = 0;
    if ((r = hsm_admin_keys_list(c, &k, &n, &st)) < 0) {
        report("list", &st);
        return EXIT_FAIL;
    }
    printf("token '%s': %zu secret key%s\n", a->token, n, n == 1 ? "" : "s");
    for (size_t i = 0; i < n; i++) {
        char flags[160], why[256];
        key_flags(&k[i], flags, sizeof(flags));
        int weak = hsm_admin_key_weak(&k[i], why, sizeof(why));
        if (hsm_admin_mac_key_ok(&k[i])) {
            printf("  '%s'  %s%s  -- coffer's HMAC key for encrypt-then-MAC (sign/verify only)\n",
                   k[i].label, hsm_admin_key_type_name(k[i].key_type, k[i].value_len), flags);
            continue;
        }
        printf("  '%s'  %s%s%s%s\n", k[i].label,
               hsm_admin_key_type_name(k[i].key_type, k[i].value_len), flags,
               weak ? "  -- not fit as a coffer KEK: " : "", weak ? why : "");
    }
    free(k);
    return EXIT_OK;
}

/* Why negotiation passed over the mechanisms before (and after) the one it chose. */
static void print_passed_over(const hsm_negotiation *neg)
{
    for (int m = HSM_MECH_GCM; m < HSM_MECH_COUNT; m++)
        if (m != neg->mech && neg->why[m][0] != '\0')
            printf("      passed over %s: %s\n", hsm_mech_option_name(m), neg->why[m]);
}

static int run_check(hsm_client *c)
{
    static const char *tags[] = {"ok  ", "warn", "FAIL", "skip"};
    hsm_check_report rep;
    (void)hsm_admin_check(c, &rep);
    for (int i = 0; i < HSM_CHECK_ITEMS; i++) {
        printf("%s  %s: %s\n", tags[rep.items[i].result], rep.items[i].name, rep.items[i].text);
        if (strcmp(rep.items[i].name, "mechanism") == 0 && rep.negotiated)
            print_passed_over(&rep.neg);
    }
    return rep.failed == 0 ? EXIT_OK : EXIT_FAIL;
}

int cli_hsm_main(int argc, char **argv)
{
    struct hsm_args a;
    hsm_client *c = NULL;
    hsm_status st;
    int r, rc;

    if ((rc = args_parse(&a, argc, argv)) >= 0)
        return rc;
    if ((r = engine_secmem_harden_process()) < 0) {
        fprintf(stderr, "coffer: hsm %s: could not harden the process before reading the PIN: %s\n",
                a.name, coffer_strerror(r));
        return EXIT_FAIL;
    }
    hsm_client_config cfg = {
        .module = a.module,
        .token = a.token,
        .key_label = a.cmd == HSM_CMD_CHECK ? a.label : NULL,
        .pin = {a.pin_file, NULL},
        .timeout_ms = a.timeout_ms,
        .threads = 1,
        .log = a.verbose ? log_line : NULL,
        .mechanism = a.mechanism,
    };
    if ((r = hsm_client_open(&c, &cfg, &st)) < 0) {
        report(a.name, &st);
        return r == COFFER_ERR_CONFIG ? EXIT_USAGE : EXIT_FAIL;
    }
    switch (a.cmd) {
    case HSM_CMD_INIT_KEK: {
        hsm_negotiation neg;
        if ((r = hsm_admin_kek_create_for(c, a.label, &neg, &st)) < 0) {
            report("init-kek", &st);
            rc = EXIT_FAIL;
        } else {
            printf("created key '%s' on token '%s' for %s (%s): AES-256, private, sensitive, "
                   "never extractable, %s only\n",
                   a.label, a.token, hsm_mech_metadata_name(neg.mech, neg.kwp_ckm),
                   hsm_mech_option_name(neg.mech),
                   neg.mech == HSM_MECH_KWP ? "wrap/unwrap" : "encrypt/decrypt");
            if (neg.mech == HSM_MECH_CBC_HMAC)
                printf("created HMAC key '%s-hmac' on token '%s': 256-bit generic secret, "
                       "private, sensitive, never extractable, sign/verify only\n",
                       a.label, a.token);
            print_passed_over(&neg);
            rc = EXIT_OK;
        }
        break;
    }
    case HSM_CMD_LIST:
        rc = run_list(c, &a);
        break;
    case HSM_CMD_CHECK:
    default:
        rc = run_check(c);
        break;
    }
    fflush(stdout);
    hsm_client_close(c);
    return rc;
}
