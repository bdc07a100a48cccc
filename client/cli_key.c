/* SPDX-License-Identifier: Apache-2.0 */
/* Key loading for the CLI: the engine's key file and Secret readers, with one-line errors. */
#include "cli_key.h"

#include "cli_kube.h"
#include "cli_report.h"
#include "coffer_error.h"
#include "engine_secret.h"

#include "engine_secmem.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEY_DETAIL_MAX 512

/* "--key-file -": the key from standard input (cli_args_parse made sure the data is not). */
static int key_load_stdin(engine_key **out, engine_key_rule rule, char *detail, size_t detaillen)
{
    uint8_t *buf = engine_secmem_alloc(ENGINE_KEY_FIELD_MAX + 1);
    size_t n = 0;
    int r;

    if (buf == NULL)
        return COFFER_ERR_NOMEM;
    while (n < ENGINE_KEY_FIELD_MAX + 1) {
        ssize_t got = read(STDIN_FILENO, buf + n, ENGINE_KEY_FIELD_MAX + 1 - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            snprintf(detail, detaillen, "standard input: %s", strerror(errno));
            engine_secmem_free(buf);
            return COFFER_ERR_KEY_READ;
        }
        if (got == 0)
            break;
        n += (size_t)got;
    }
    r = engine_key_parse(out, rule, buf, n, detail, detaillen);
    if (r != 0) {
        char tmp[KEY_DETAIL_MAX];
        snprintf(tmp, sizeof(tmp), "standard input: %s", detail);
        snprintf(detail, detaillen, "%s", tmp);
    }
    engine_secmem_free(buf);
    return r;
}

/* A key file others may read is a key others may have: say so (the job still runs). */
static void key_check_mode(const char *path)
{
    struct stat st;

    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & (S_IRGRP | S_IROTH)) == 0)
        return;
    cli_report_line("warning: the key file %s has mode %04o: %s%s%scan read it; restrict it with "
                    "'chmod 600 %s'",
                    path, (unsigned)(st.st_mode & 07777), (st.st_mode & S_IRGRP) ? "its group" : "",
                    (st.st_mode & S_IRGRP) && (st.st_mode & S_IROTH) ? " and " : "",
                    (st.st_mode & S_IROTH) ? "everyone " : " ", path);
}

int cli_key_load(engine_key **out, const struct cli_args *a, engine_key_rule rule, const char *ns,
                 const char *name)
{
    char detail[KEY_DETAIL_MAX] = "";
    char what[PATH_MAX + 600];
    int r;

    *out = NULL;
    if (a->key_file != NULL && strcmp(a->key_file, "-") == 0) {
        r = key_load_stdin(out, rule, detail, sizeof(detail));
        snprintf(what, sizeof(what), "loading the key from standard input");
    } else if (a->key_file != NULL) {
        key_check_mode(a->key_file);
        r = engine_key_load_file(out, rule, a->key_file, detail, sizeof(detail));
        /* The engine's detail starts with the path. */
        snprintf(what, sizeof(what), "loading the key file");
    } else if (a->kube && ns != NULL && name != NULL) {
        r = cli_kube_key_load(out, a->kubeconfig, ns, name, rule, detail, sizeof(detail));
        snprintf(what, sizeof(what), "loading key from Secret %s/%s through the Kubernetes API", ns,
                 name);
    } else if (a->secrets_dir != NULL && ns != NULL && name != NULL) {
        r = engine_secret_load(out, a->secrets_dir, ns, name, rule, detail, sizeof(detail));
        snprintf(what, sizeof(what), "loading key from Secret %s/%s in %s", ns, name,
                 a->secrets_dir);
    } else {
        r = COFFER_ERR_INVALID_ARG;
        snprintf(what, sizeof(what), "loading key");
        snprintf(detail, sizeof(detail),
                 "give --key-file, or --secrets-dir with --namespace and "
                 "--secret");
    }
    if (r != 0) {
        cli_report_error(what, r, detail);
        engine_key_free(*out);
        *out = NULL;
    }
    return r;
}
