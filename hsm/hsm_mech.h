/* SPDX-License-Identifier: Apache-2.0 */
/* Internal: choosing the wrapping mechanism a token really has, and the mechanisms' parameters. */
#ifndef HSM_MECH_H
#define HSM_MECH_H

#include "hsm_kek.h"
#include "hsm_token.h"

#include <p11-kit/pkcs11.h>

/* "coffer-etm:" || u16be(label length) || label || iv(16) || ciphertext(48) */
#define HSM_ETM_INPUT_MAX                                                                          \
    (sizeof(HSM_ETM_PREFIX) - 1 + 2 + HSM_KEY_LABEL_MAX + HSM_IV_MAX + HSM_CBC_LEN)

/* CK_GCM_PARAMS for a 12-byte IV (ulIvLen and ulIvBits both set, for tokens of either reading of
 * the spec), the AAD and a 128-bit tag; m points at gp. */
void hsm_mech_gcm_params(uint8_t *iv, uint8_t *aad, size_t aadlen, CK_GCM_PARAMS *gp,
                         CK_MECHANISM *m);

int hsm_mech_all_zero(const uint8_t *p, size_t n);

/* The HMAC input of encrypt-then-MAC; returns its length (0 when cap is too small). */
size_t hsm_mech_etm_input(const char *label, const uint8_t *iv, const uint8_t *ct, uint8_t *out,
                          size_t cap);

/*
 * On an HSM thread: negotiate for key label (kek valid) or, with label NULL, for no key yet (only
 * C_GetMechanismInfo counts). forced: HSM_MECH_AUTO or the one mechanism to accept. out->why
 * says why each candidate was passed over. 0, or COFFER_ERR_HSM_CALL (none fits) and the codes
 * of a lost connection.
 */
int hsm_mech_negotiate(hsm_token *t, hsm_session *s, const char *label, CK_OBJECT_HANDLE kek,
                       int forced, hsm_negotiation *out, hsm_status *st);

/* The mechanism for wrapping under label: negotiated once per connection and key label. */
int hsm_mech_for_wrap(hsm_token *t, hsm_session *s, const char *label, CK_OBJECT_HANDLE kek,
                      hsm_negotiation *out, hsm_status *st);

/* 0 when the token offers what w was wrapped with; else COFFER_ERR_HSM_CALL saying which
 * mechanism and key label the restore needs. */
int hsm_mech_offered(hsm_token *t, hsm_session *s, const char *label, const hsm_wrapped *w,
                     hsm_status *st);

#endif
