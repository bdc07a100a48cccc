/* SPDX-License-Identifier: Apache-2.0 */
/* Offline mode's Kubernetes-API Secret source: kubeconfig or in-cluster, then one Secret GET. */
#include "cli_kube.h"

#include "coffer_error.h"
#include "kube_client.h"

int cli_kube_key_load(engine_key **out, const char *kubeconfig, const char *ns, const char *name,
                      engine_key_rule rule, char *detail, size_t detaillen)
{
    struct kube_target *t = NULL;
    int r;

    *out = NULL;
    if (kube_global_init() != 0)
        return COFFER_ERR_INTERNAL;
    r = kubeconfig != NULL ? kube_target_from_kubeconfig(&t, kubeconfig, detail, detaillen)
                           : kube_target_in_cluster(&t, NULL, detail, detaillen);
    if (r == 0)
        r = kube_secret_get(t, NULL, ns, name, rule, out, NULL, detail, detaillen);
    kube_target_free(t);
    return r;
}
