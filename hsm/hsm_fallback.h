/* SPDX-License-Identifier: Apache-2.0 */
/* The pkcs11 retriever's fallback policy and its sentences: when a backup falls back to the
 * Secret, which reason it counts, and what a client is told when a backup or restore fails. */
#ifndef HSM_FALLBACK_H
#define HSM_FALLBACK_H

#include "hsm_status.h"

#include <stddef.h>

/* Reasons a backup fell back, in the order of their counters: HSM_MODULE (-60) .. HSM_UNAVAILABLE
 * (-66), then OTHER for any code outside the HSM's range. */
#define HSM_FALLBACK_REASONS 8

/* What to do with a new backup the HSM could not serve. */
typedef struct hsm_fallback_decision {
    int fall_back; /* 1: use the Secret's key and note why; 0: fail the backup with err */
    int reason;    /* 0 .. HSM_FALLBACK_REASONS-1: the counter it counts in */
} hsm_fallback_decision;

/*
 * The policy. err is what the HSM answered for a new backup (a negative COFFER_ERR_*, never 0);
 * secret_allowed is --hsm-fallback secret. Every failure falls back when allowed (an HSM that
 * cannot wrap must not stop backups), none when not. Pure: any thread.
 */
void hsm_fallback_decide(int err, int secret_allowed, hsm_fallback_decision *out);

/* The name of a reason counter ("HSM_TIMEOUT", "OTHER"); NULL out of range. Static string. */
const char *hsm_fallback_reason_name(int reason);
/* 1 when code is one of COFFER_ERR_HSM_* (the HSM's own range). */
int hsm_fallback_is_hsm_code(int code);

/*
 * The sentences a client gets (into detail, detaillen bytes, always terminated). Each returns the
 * code for the error frame. st is what the HSM said (st->text may be "": then the code's text).
 *
 * backup_error   --hsm-fallback none and the HSM failed: "the HSM cannot serve this backup and
 *                --hsm-fallback is none: <why> (<CODE>[, <CKR>])"; returns err.
 * secret_error   the fallback's Secret failed too: names the Secret, the HSM's failure and the
 *                Secret's own sentence; returns secret_err.
 * restore_error  a restore's unwrap failed: names the token and key the backup needs (unless the
 *                HSM's sentence already names both) with the HSM's reason; returns
 *                COFFER_ERR_HSM_UNAVAILABLE for the HSM's codes and COFFER_ERR_CONFIG (the token,
 *                module, login or key is away), else err (a wrong key stays COFFER_ERR_WRONG_KEY).
 * restore_unconfigured  a pkcs11 backup reached a cofferd with no HSM: names the token and key
 *                and the options to set; returns COFFER_ERR_HSM_UNAVAILABLE.
 */
int hsm_fallback_backup_error(int err, const hsm_status *st, char *detail, size_t detaillen);
int hsm_fallback_secret_error(int secret_err, const char *ns, const char *name,
                              const hsm_status *st, const char *secret_detail, char *detail,
                              size_t detaillen);
int hsm_fallback_restore_error(int err, const hsm_status *st, const char *token,
                               const char *key_label, char *detail, size_t detaillen);
int hsm_fallback_restore_unconfigured(const char *token, const char *key_label, char *detail,
                                      size_t detaillen);

#endif
