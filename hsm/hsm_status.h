/* SPDX-License-Identifier: Apache-2.0 */
/* What an HSM call did: its code, the step that failed, the CKR_ name and one clear sentence. */
#ifndef HSM_STATUS_H
#define HSM_STATUS_H

#include <stddef.h>

#define HSM_STATUS_TEXT_MAX 512

/*
 * Filled by every hsm_client_* call that takes one (and kept per client as "the last failure").
 * code is 0 on success, else the COFFER_ERR_* the call returned. step names what failed:
 *   "pin"      the PIN could not be read (file or environment variable)
 *   "module"   the PKCS#11 module could not be loaded or initialised
 *   "token"    no (single) token with the label, or no session on it
 *   "login"    C_Login refused the PIN (or it was not tried again, see hsm_client.h)
 *   "key"      no (single) AES secret key with the label on the token
 *   "wrap", "unwrap", "keygen", "list", "check"   the operation itself failed
 *   "timeout"  the HSM did not answer within the client's timeout
 *   "shutdown" the client is closing
 * ckr is the PKCS#11 return value's name ("CKR_PIN_INCORRECT") when a PKCS#11 call failed, else "".
 * text is one sentence naming the module, token and key involved and what to do; it never holds
 * a PIN or key bytes. Everything is NUL-terminated.
 */
typedef struct hsm_status {
    int code;
    char step[16];
    char ckr[48];
    char text[HSM_STATUS_TEXT_MAX];
} hsm_status;

/* Mark st as success (NULL allowed). */
void hsm_status_clear(hsm_status *st);

/* Fill st (NULL allowed) and return code. rv is a CK_RV, or HSM_STATUS_NO_RV when no PKCS#11
 * call is to blame. */
#define HSM_STATUS_NO_RV (~0UL)
int hsm_status_set(hsm_status *st, int code, const char *step, unsigned long rv, const char *fmt,
                   ...) __attribute__((format(printf, 5, 6)));

#endif
