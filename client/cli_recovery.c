/* SPDX-License-Identifier: Apache-2.0 */
/* Recovery in the CLI: age identities, recovery entries on offline encryption, offline restores. */
#include "cli_recovery.h"

#include "cli_output.h"
#include "cli_report.h"
#include "coffer_error.h"
#include "engine_age.h"
#include "engine_recovery.h"
#include "engine_secmem.h"
#include "hsm_client.h"
#include "hsm_metadata.h"
#include "hsm_retriever.h"

#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RECOVERY_DETAIL_MAX 2048

static const char recovery_usage[] =
    "usage: coffer recovery keygen [--out FILE]\n"
    "       coffer recovery recipient [--in FILE]\n"
    "\n"
    "keygen writes a new age X25519 identity in age-keygen's format: keep it offline, it opens\n"
    "every backup made with its recipient. With --out FILE the file is created with mode 0600\n"
    "(never overwritten) and the recipient 'age1...' is printed on stderr.\n"
    "recipient prints the recipient of every identity in an identity file (standard input\n"
    "without --in), one a line: give that file to cofferd's --recovery-recipient.\n"
    "Debian's age-keygen makes identities that work the same (age-keygen -y prints the\n"
    "recipient). docs/recovery.md is the runbook.\n";

static int recovery_usage_error(const char *msg)
{
    cli_report_line("recovery: %s", msg);
    fputs(recovery_usage, stderr);
    return CLI_EXIT_USAGE;
}

static int recovery_keygen(const char *out_path)
{
    int r;
    engine_age_identity *id = NULL;
    struct cli_output out;
    char idtext[ENGINE_AGE_IDENTITY_TEXT + 1], when[64], *text = NULL;
    size_t cap = 256;
    time_t now = time(NULL);
    struct tm tm;

    memset(&out, 0, sizeof(out));
    out.fd = -1;
    if ((r = cli_output_open(&out, out_path, CLI_OUTPUT_NOREPLACE)) != 0)
        goto out;
    r = COFFER_ERR_NOMEM;
    if ((text = engine_secmem_alloc(cap)) == NULL)
        goto fail;
    if ((r = engine_age_identity_generate(&id)) != 0 || (r = engine_age_identity_text(id, idtext)))
        goto fail;
    gmtime_r(&now, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(text, cap, "# created: %s\n# public key: %s\n%s\n", when, id->recipient.text, idtext);
    if ((r = cli_output_write(&out, (const uint8_t *)text, strlen(text))) != 0 ||
        (r = cli_output_commit(&out)) != 0)
        goto out;
    if (out_path != NULL)
        fprintf(stderr, "Public key: %s\n", id->recipient.text);
    r = 0;
    goto out;
fail:
    cli_report_error("generating an age identity", r, NULL);
out:
    engine_secmem_wipe(idtext, sizeof(idtext));
    engine_secmem_free(text);
    engine_age_identity_free(id);
    cli_output_close(&out);
    return r == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}

static int recovery_recipient(const char *in_path)
{
    engine_age_identities ids = {0};
    char detail[RECOVERY_DETAIL_MAX] = "";
    int r = engine_age_identities_load(&ids, in_path != NULL ? in_path : "/dev/stdin", detail,
                                       sizeof(detail));
    if (r != 0)
        cli_report_error("reading the identity file", r, detail);
    for (size_t i = 0; r == 0 && i < ids.n; i++)
        printf("%s\n", ids.v[i]->recipient.text);
    engine_age_identities_clear(&ids);
    if (r == 0 && fflush(stdout) != 0)
        r = COFFER_ERR_IO;
    return r == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}

int cli_recovery_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"out", required_argument, NULL, 'o'},
        {"in", required_argument, NULL, 'i'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL, *sub;
    int keygen, opt;

    if (argc < 3 || strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0) {
        if (argc >= 3) {
            fputs(recovery_usage, stdout);
            return CLI_EXIT_OK;
        }
        return recovery_usage_error("no subcommand given");
    }
    sub = argv[2];
    keygen = strcmp(sub, "keygen") == 0;
    if (!keygen && strcmp(sub, "recipient") != 0)
        return recovery_usage_error("unknown subcommand (keygen or recipient)");
    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc - 2, argv + 2, "+h", opts, NULL)) != -1) {
        if (opt == 'h') {
            fputs(recovery_usage, stdout);
            return CLI_EXIT_OK;
        }
        if ((opt == 'o' && !keygen) || (opt == 'i' && keygen) || opt == '?' || opt == ':')
            return recovery_usage_error("unknown or misplaced option");
        if (path != NULL)
            return recovery_usage_error("an option given twice");
        path = strcmp(optarg, "-") == 0 ? NULL : optarg;
    }
    if (optind < argc - 2)
        return recovery_usage_error("unexpected argument");
    return keygen ? recovery_keygen(path) : recovery_recipient(path);
}

int cli_recovery_seal(const struct cli_args *a, const engine_key *key, char **meta)
{
    engine_age_recipients rs = {0};
    char detail[RECOVERY_DETAIL_MAX] = "", *with = NULL;
    int r = 0;

    if (a->n_recovery_recipient == 0)
        return 0;
    for (size_t i = 0; i < a->n_recovery_recipient && r == 0; i++)
        r = engine_age_recipients_load(&rs, a->recovery_recipient[i], detail, sizeof(detail));
    if (r != 0) {
        cli_report_error("reading the recovery recipients", r, detail);
        goto out;
    }
    r = engine_recovery_add_text(*meta, strlen(*meta), &rs, key, &with, detail, sizeof(detail));
    if (r != 0) {
        cli_report_error("adding the recovery entries", r, detail);
        goto out;
    }
    free(*meta);
    *meta = with;
out:
    engine_age_recipients_clear(&rs);
    return r;
}

int cli_recovery_open(engine_key **key, const struct cli_args *a, const engine_metadata *m,
                      const char *what)
{
    engine_age_identities ids = {0};
    char detail[RECOVERY_DETAIL_MAX] = "";
    int r = 0;

    *key = NULL;
    for (size_t i = 0; i < a->n_recovery_identity && r == 0; i++)
        r = engine_age_identities_load(&ids, a->recovery_identity[i], detail, sizeof(detail));
    if (r != 0) {
        cli_report_error("reading the recovery identities", r, detail);
        goto out;
    }
    r = engine_recovery_open(m->json, &ids, key, detail, sizeof(detail));
    if (r != 0)
        cli_report_error(what, r, detail);
out:
    engine_age_identities_clear(&ids);
    return r;
}

int cli_recovery_hsm_open(engine_key **key, const struct cli_args *a, const engine_metadata *m,
                          const char *what)
{
    hsm_client_config cfg;
    hsm_client *c = NULL;
    hsm_retriever *rt = NULL;
    hsm_cache_limits lim;
    hsm_status st;
    char detail[RECOVERY_DETAIL_MAX] = "";
    int r;

    *key = NULL;
    memset(&st, 0, sizeof(st));
    if (m->retriever == NULL || strcmp(m->retriever, "pkcs11") != 0) {
        r = COFFER_ERR_KEY_MISSING;
        snprintf(detail, sizeof(detail),
                 "--hsm-module opens pkcs11 backups; this one's key retriever is '%s'",
                 m->retriever != NULL ? m->retriever : "");
        cli_report_error(what, r, detail);
        return r;
    }
    /* the backup names its token and key label: a different --hsm-token is said plainly */
    {
        hsm_metadata_config *mc = malloc(sizeof(*mc));
        char why[256] = "";
        r = mc == NULL ? COFFER_ERR_NOMEM
                       : hsm_metadata_config_parse(json_object_get(m->json, "keyRetrieverConfig"),
                                                   mc, why, sizeof(why));
        if (r == 0 && strcmp(mc->token, a->hsm_token) != 0) {
            r = COFFER_ERR_HSM_UNAVAILABLE;
            snprintf(why, sizeof(why),
                     "this backup's data key is wrapped by key '%.64s' on token '%.64s', but "
                     "--hsm-token names '%.64s'",
                     mc->wrapped.key_label, mc->token, a->hsm_token);
        }
        free(mc);
        if (r != 0) {
            cli_report_error(what, r, why);
            return r;
        }
    }
    memset(&cfg, 0, sizeof(cfg));
    cfg.module = a->hsm_module;
    cfg.token = a->hsm_token;
    cfg.pin.file = a->hsm_pin_file;
    cfg.threads = 1;              /* no log: a failure is reported once, below */
    memset(&lim, 0, sizeof(lim)); /* no cache: one unwrap */
    if ((r = hsm_client_open(&c, &cfg, &st)) != 0 ||
        (r = hsm_retriever_new(&rt, c, &lim, NULL, NULL)) != 0) {
        snprintf(detail, sizeof(detail), "%s", st.text);
        cli_report_error("opening the HSM", r, detail);
        goto out;
    }
    r = hsm_retriever_restore_key(rt, json_object_get(m->json, "keyRetrieverConfig"), key, &st);
    if (r != 0) {
        snprintf(detail, sizeof(detail), "%s%s%s%s", st.text, st.ckr[0] ? " (" : "", st.ckr,
                 st.ckr[0] ? ")" : "");
        cli_report_error(what, r, detail);
    }
out:
    hsm_retriever_free(rt);
    hsm_client_close(c);
    return r;
}

void cli_recovery_needs(const engine_metadata *m, char *detail, size_t detaillen)
{
    const char *names[2];
    int n = engine_recovery_recipients(m->json, names, 2);
    json_t *cfg = json_object_get(m->json, "keyRetrieverConfig");
    const char *token = json_string_value(json_object_get(cfg, "token"));
    const char *label = json_string_value(json_object_get(cfg, "keyLabel"));
    const char *module = json_string_value(json_object_get(cfg, "module"));
    size_t o;

    if (m->retriever != NULL && strcmp(m->retriever, "pkcs11") == 0)
        o = (size_t)snprintf(detail, detaillen,
                             "this backup's data key is wrapped by key '%.64s' on HSM token "
                             "'%.64s' (module '%.128s'): restore it through cofferd, or give "
                             "--hsm-module M --hsm-token %.64s [--hsm-pin-file F]",
                             label != NULL ? label : "?", token != NULL ? token : "?",
                             module != NULL ? module : "?", token != NULL ? token : "T");
    else if (m->retriever != NULL && strcmp(m->retriever, "secret") == 0)
        o = (size_t)snprintf(detail, detaillen,
                             "this backup needs the key of Secret %.63s/%.253s: give "
                             "--secrets-dir DIR (or --key-file with that key)",
                             m->ns, m->secret);
    else
        o = (size_t)snprintf(detail, detaillen,
                             "the header names no Secret (its key retriever is '%.32s'): give "
                             "--key-file",
                             m->retriever != NULL ? m->retriever : "");
    if (n > 0 && o < detaillen)
        snprintf(detail + o, detaillen - o,
                 "; it also has %d recovery recipient%s (%.62s%s), so --recovery-identity FILE "
                 "with one of their identities opens it too",
                 n, n > 1 ? "s" : "", names[0], n > 1 ? ", ..." : "");
}

int cli_recovery_print_recipients(const engine_metadata *m, const char *what)
{
    const char *names[ENGINE_AGE_LIST_MAX];
    int n = engine_recovery_recipients(m->json, names, ENGINE_AGE_LIST_MAX);

    if (n < 0) {
        cli_report_error(what, n, "its \"recovery\" field is malformed");
        return n;
    }
    for (int i = 0; i < n; i++) {
        engine_age_recipient rc;
        /* print only what parses: the header is untrusted until decrypted */
        if (engine_age_recipient_parse(&rc, names[i], strlen(names[i]), NULL, 0) != 0) {
            cli_report_error(what, COFFER_ERR_METADATA, "a recovery recipient is malformed");
            return COFFER_ERR_METADATA;
        }
        printf("%s\n", rc.text);
    }
    return fflush(stdout) == 0 ? 0 : COFFER_ERR_IO;
}
