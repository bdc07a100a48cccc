/* SPDX-License-Identifier: Apache-2.0 */
/* Key loading for the CLI: the engine's key file and Secret readers, with one-line errors. */
#include "cli_key.h"

#include "cli_kube.h"
#include "cli_report.h"
#include "coffer_error.h"
#include "engine_secret.h"

#include <limits.h>
#include <stdio.h>

#define KEY_DETAIL_MAX 512

int cli_key_load(engine_key **out, const struct cli_args *a, engine_key_rule rule, const char *ns,
                 const char *name)
{
    char detail[KEY_DETAIL_MAX] = "";
    char what[PATH_MAX + 600];
    int r;

    *out = NULL;
    if (a->key_file != NULL) {
        r = engine_key_load_file(out, rule, a->key_file, detail, sizeof(detail));
        /* The engine's detail starts with the path. */
        snprintf(what, sizeof(what), "loading the key file");
    } else if (a->kube && ns != NULL && name != NULL) {
        r = cli_kube_key_load(out, a->kubeconfig, ns, name, rule, detail, sizeof(detail));
        snprintf(what, sizeof(what), "loading key from Secret %s/%s through the Kubernetes API",
                 ns, name);
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
