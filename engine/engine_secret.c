/* SPDX-License-Identifier: Apache-2.0 */
/* The Secret retriever: <secrets-dir>/<namespace>/<secretName>/encryptionKey, names validated. */
#include "engine_secret.h"

#include "coffer_error.h"

#include <stdio.h>
#include <string.h>

static int is_alnum_lower(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* DNS-1123 label (namespaces): [a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63 characters. */
static int dns_label_ok(const char *s, size_t max)
{
    size_t n = s != NULL ? strlen(s) : 0;
    if (n == 0 || n > max || !is_alnum_lower(s[0]) || !is_alnum_lower(s[n - 1]))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!is_alnum_lower(s[i]) && s[i] != '-')
            return 0;
    return 1;
}

/* DNS-1123 subdomain (Secret names): dot-separated labels, at most 253 characters. */
static int dns_subdomain_ok(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;
    if (n == 0 || n > 253)
        return 0;
    const char *p = s;
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t len = dot != NULL ? (size_t)(dot - p) : strlen(p);
        char label[254];
        if (len == 0 || len > 63)
            return 0;
        memcpy(label, p, len);
        label[len] = '\0';
        if (!dns_label_ok(label, 63))
            return 0;
        if (dot == NULL)
            return 1;
        p = dot + 1;
    }
}

int engine_secret_name_check(const char *ns, const char *name)
{
    return dns_label_ok(ns, 63) && dns_subdomain_ok(name) ? 0 : COFFER_ERR_SECRET_NAME;
}

int engine_secret_load(engine_key **out, const char *secrets_dir, const char *ns, const char *name,
                       engine_key_rule rule, char *detail, size_t detaillen)
{
    char path[4096];
    int r;

    *out = NULL;
    if (engine_secret_name_check(ns, name) != 0) {
        if (detail != NULL && detaillen > 0)
            snprintf(detail, detaillen,
                     "namespace and Secret name must be lowercase DNS names (a-z, 0-9, '-', '.')");
        return COFFER_ERR_SECRET_NAME;
    }
    if (secrets_dir == NULL || secrets_dir[0] == '\0')
        return COFFER_ERR_INVALID_ARG;
    if ((size_t)snprintf(path, sizeof(path), "%s/%s/%s/%s", secrets_dir, ns, name,
                         ENGINE_SECRET_FIELD) >= sizeof(path))
        return COFFER_ERR_INVALID_ARG;
    r = engine_key_load_file(out, rule, path, detail, detaillen);
    if (r == COFFER_ERR_KEY_MISSING && detail != NULL && detaillen > 0)
        snprintf(detail, detaillen,
                 "Secret %s/%s has no field %s (looked for %s); create it with "
                 "'coffer keygen' and a Kubernetes Secret",
                 ns, name, ENGINE_SECRET_FIELD, path);
    return r;
}
