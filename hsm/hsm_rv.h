/* SPDX-License-Identifier: Apache-2.0 */
/* PKCS#11 return values: their CKR_ names for messages, and which ones mean "reconnect". */
#ifndef HSM_RV_H
#define HSM_RV_H

#include <p11-kit/pkcs11.h>

/* "CKR_PIN_INCORRECT" for CKR_PIN_INCORRECT; "CKR_0x000001a3" style for values not in the table
 * (written into a per-thread buffer). Never NULL. */
const char *hsm_rv_name(CK_RV rv);

/*
 * 1 when rv says the module, token, session or object handles are gone, so the next call should
 * finalize and reload the module, reopen sessions, log in again and find the key again:
 * CKR_DEVICE_REMOVED and CKR_TOKEN_NOT_PRESENT, but also what SoftHSM2 actually returns when a
 * token's files vanish (CKR_GENERAL_ERROR, CKR_SESSION_HANDLE_INVALID, CKR_OBJECT_HANDLE_INVALID,
 * CKR_KEY_HANDLE_INVALID, ...). 0 for errors that reconnecting cannot cure.
 */
int hsm_rv_is_lost(CK_RV rv);

#endif
