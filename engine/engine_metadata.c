/* SPDX-License-Identifier: Apache-2.0 */
/* Build and parse the status metadata JSON with jansson, in the field order Velero expects. */
#include "engine_metadata.h"

#include "coffer_error.h"

#include <string.h>

json_t *engine_metadata_new_secret(const char *ns, const char *secret_name, const char *format,
                                   const char *key_id)
{
    return json_pack("{s:b, s:s, s:{s:s, s:s}, s:s, s:s}", "isEncrypted", 1, "keyRetrieverType",
                     "secret", "keyRetrieverConfig", "namespace", ns, "secretName", secret_name,
                     "format", format, "keyId", key_id);
}

json_t *engine_metadata_new_file(const char *file_name, const char *format, const char *key_id)
{
    const char *base = strrchr(file_name, '/');
    return json_pack("{s:b, s:s, s:{s:s}, s:s, s:s}", "isEncrypted", 1, "keyRetrieverType", "file",
                     "keyRetrieverConfig", "name", base != NULL ? base + 1 : file_name, "format",
                     format, "keyId", key_id);
}

json_t *engine_metadata_new_plain(void)
{
    return json_pack("{s:b, s:s, s:{}, s:s}", "isEncrypted", 0, "keyRetrieverType", "",
                     "keyRetrieverConfig", "format", "none");
}

char *engine_metadata_dump(const json_t *m)
{
    return json_dumps(m, JSON_COMPACT | JSON_ENSURE_ASCII);
}

static const char *opt_string(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

int engine_metadata_parse(engine_metadata *out, const char *text, size_t len)
{
    json_error_t err;
    json_t *root, *enc, *cfg;

    memset(out, 0, sizeof(*out));
    if (len > ENGINE_METADATA_MAX)
        return COFFER_ERR_TOO_LARGE;
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    if (root == NULL || !json_is_object(root))
        goto bad;
    enc = json_object_get(root, "isEncrypted");
    if (!json_is_boolean(enc))
        goto bad;
    out->json = root;
    out->is_encrypted = json_is_true(enc);
    out->format = opt_string(root, "format");
    out->key_id = opt_string(root, "keyId");
    out->retriever = opt_string(root, "keyRetrieverType");
    if (!out->is_encrypted) {
        if (out->retriever == NULL)
            out->retriever = "";
        return 0;
    }
    if (out->retriever == NULL || out->retriever[0] == '\0')
        goto bad;
    cfg = json_object_get(root, "keyRetrieverConfig");
    if (cfg != NULL && !json_is_object(cfg))
        goto bad;
    if (strcmp(out->retriever, "secret") == 0) {
        out->ns = opt_string(cfg, "namespace");
        out->secret = opt_string(cfg, "secretName");
        if (out->ns == NULL || out->secret == NULL)
            goto bad;
    }
    return 0;
bad:
    json_decref(root);
    memset(out, 0, sizeof(*out));
    return COFFER_ERR_METADATA;
}

void engine_metadata_clear(engine_metadata *m)
{
    if (m == NULL)
        return;
    json_decref(m->json);
    memset(m, 0, sizeof(*m));
}
