/* SPDX-License-Identifier: Apache-2.0 */
/* The CLI's offline mode reading a Secret through the Kubernetes API (kube/). */
#ifndef CLI_KUBE_H
#define CLI_KUBE_H

#include "engine_key.h"

#include <stddef.h>

/*
 * Fetch <ns>/<name>'s encryptionKey through the API of kubeconfig (NULL: in-cluster) and apply
 * rule. Blocks up to the client's default timeout (kube_client.h). Returns 0 and *out (free with
 * engine_key_free), or a coffer code with one sentence in detail. Main thread only (it
 * initialises libcurl).
 */
int cli_kube_key_load(engine_key **out, const char *kubeconfig, const char *ns, const char *name,
                      engine_key_rule rule, char *detail, size_t detaillen)
    __attribute__((warn_unused_result));

#endif
