/* SPDX-License-Identifier: Apache-2.0 */
/* The fallback policy of the pkcs11 retriever and the sentences clients get when it fails. */
#include "hsm_fallback.h"

#include "coffer_error.h"
#include "hsm_token.h"

#include <stdio.h>
#include <string.h>

static const char *const reason_names[HSM_FALLBACK_REASONS] = {
    "HSM_MODULE", "HSM_TOKEN",   "HSM_KEY",         "HSM_LOGIN",
    "HSM_CALL",   "HSM_TIMEOUT", "HSM_UNAVAILABLE", "OTHER"};

int hsm_fallback_is_hsm_code(int code)
{
    return code <= COFFER_ERR_HSM_MODULE && code >= COFFER_ERR_HSM_UNAVAILABLE;
}

void hsm_fallback_decide(int err, int secret_allowed, hsm_fallback_decision *out)
{
    out->fall_back = secret_allowed ? 1 : 0;
    out->reason = hsm_fallback_is_hsm_code(err) ? COFFER_ERR_HSM_MODULE - err
                                                : HSM_FALLBACK_REASONS - 1;
}

const char *hsm_fallback_reason_name(int reason)
{
    return reason >= 0 && reason < HSM_FALLBACK_REASONS ? reason_names[reason] : NULL;
}

/* "<prefix><why> (<CODE>[, <CKR>])" */
static void status_detail(const hsm_status *st, int err, const char *prefix, char *detail,
                          size_t detaillen)
{
    int code = st->code != 0 ? st->code : err;
    snprintf(detail, detaillen, "%s%s (%s%s%s)", prefix,
             st->text[0] != '\0' ? st->text : coffer_strerror(err), coffer_errname(code),
             st->ckr[0] != '\0' ? ", " : "", st->ckr);
}

int hsm_fallback_backup_error(int err, const hsm_status *st, char *detail, size_t detaillen)
{
    status_detail(st, err, "the HSM cannot serve this backup and --hsm-fallback is none: ", detail,
                  detaillen);
    return err;
}

int hsm_fallback_secret_error(int secret_err, const char *ns, const char *name,
                              const hsm_status *st, const char *secret_detail, char *detail,
                              size_t detaillen)
{
    snprintf(detail, detaillen, "Secret %s/%s (the fallback after the HSM failed: %s): %s", ns,
             name, st->text, secret_detail);
    return secret_err;
}

int hsm_fallback_restore_error(int err, const hsm_status *st, const char *token,
                               const char *key_label, char *detail, size_t detaillen)
{
    char prefix[HSM_KEY_LABEL_MAX + HSM_TOKEN_LABEL_MAX + 64];

    prefix[0] = '\0';
    if (strstr(st->text, token) == NULL || strstr(st->text, key_label) == NULL)
        snprintf(prefix, sizeof(prefix), "restoring needs key '%s' on token '%s': ", key_label,
                 token);
    status_detail(st, err, prefix, detail, detaillen);
    /* the token, its module, the login or the key is away, or it does not answer */
    if (hsm_fallback_is_hsm_code(err) || err == COFFER_ERR_CONFIG)
        return COFFER_ERR_HSM_UNAVAILABLE;
    return err;
}

int hsm_fallback_restore_unconfigured(const char *token, const char *key_label, char *detail,
                                      size_t detaillen)
{
    snprintf(detail, detaillen,
             "restoring needs key '%s' on token '%s' to unwrap the data key, and this cofferd "
             "has no HSM configured (--hsm-module, --hsm-token, --hsm-pin-file)",
             key_label, token);
    return COFFER_ERR_HSM_UNAVAILABLE;
}
