/* SPDX-License-Identifier: Apache-2.0 */
/* Envelope encryption: a 32-byte data key wrapped by the token's AES key-encryption key (AES-GCM).
 */
#ifndef HSM_KEK_H
#define HSM_KEK_H

#include "engine_key.h"
#include "hsm_client.h"
#include "hsm_token.h"

#include <stddef.h>
#include <stdint.h>

#define HSM_DATA_KEY_LEN 32
#define HSM_IV_LEN       12
#define HSM_TAG_LEN      16
#define HSM_WRAPPED_LEN  (HSM_DATA_KEY_LEN + HSM_TAG_LEN) /* ciphertext || tag */
#define HSM_AAD_PREFIX   "coffer-kek:"
#define HSM_AAD_MAX      (sizeof(HSM_AAD_PREFIX) - 1 + HSM_KEY_LABEL_MAX)

/*
 * A wrapped data key: what a backup's metadata stores (see hsm_metadata.h).
 *   wrapped = C_Encrypt(CKM_AES_GCM, KEK labelled key_label, iv, aad, data key)
 *   iv      = 12 fresh random bytes from OpenSSL's RAND_bytes for every wrap (the token is never
 *             asked for one: SoftHSM2 2.6 never generates GCM IVs)
 *   aad     = "coffer-kek:" || key_label (binds the blob to the key's label)
 *   tag     = 128 bits, the last 16 bytes of wrapped
 * A random 96-bit IV per wrap keeps the chance of an IV repeating under one KEK below 2^-32 for
 * up to 2^32 wraps (NIST SP 800-38D); with a data key cache that is far beyond any lifetime.
 */
typedef struct hsm_wrapped {
    char key_label[HSM_KEY_LABEL_MAX + 1];
    uint8_t iv[HSM_IV_LEN];
    uint8_t wrapped[HSM_WRAPPED_LEN];
} hsm_wrapped;

/*
 * Wrap dk (exactly 32 bytes) under the client's key_label. Returns 0, COFFER_ERR_KEY_SIZE,
 * _CONFIG (the client has no key_label), _HSM_* or _HSM_TIMEOUT; st says what failed.
 */
int hsm_kek_wrap(hsm_client *c, const engine_key *dk, hsm_wrapped *out, hsm_status *st) COFFER_WUR;

/*
 * Unwrap with the KEK named in w (which may differ from the client's key_label: old backups name
 * the key that wrapped them). On success *out is the 32-byte data key in engine_secmem (free
 * with engine_key_free). A blob the token refuses to decrypt (tag mismatch: the iv, wrapped key or
 * label were altered, or the key under that label is not the one that wrapped it) is
 * COFFER_ERR_WRONG_KEY; nothing is released.
 */
int hsm_kek_unwrap(hsm_client *c, const hsm_wrapped *w, engine_key **out,
                   hsm_status *st) COFFER_WUR;

/* The AAD for a label: writes at most cap bytes to out and returns the AAD length (0 if cap is
 * too small). Exposed so that tests can check a wrapped key independently. */
size_t hsm_kek_aad(const char *label, uint8_t *out, size_t cap);

#endif
