/* SPDX-License-Identifier: Apache-2.0 */
/* The coffer provider's AES-128/192/256-GCM ciphers on engine_gcm (ipsec-mb). */
#ifndef PROV_GCM_H
#define PROV_GCM_H

#include <openssl/core.h>

/*
 * AES-128-GCM, AES-192-GCM and AES-256-GCM under OpenSSL's names and OIDs, with the property
 * "provider=coffer"; the table OSSL_OP_CIPHER queries answer with.
 *
 * They behave as OpenSSL's own GCM through EVP (streaming AAD and data, any IV length from 1 to
 * COFFER_MAX_PROV_IVLEN bytes, tags of 1 to 16 bytes, re-init with a new IV, EVP_CIPHER_CTX_copy),
 * except that they do not generate IVs and have no TLS record mode: EVP_CTRL_GCM_IV_GEN,
 * EVP_CTRL_GCM_SET_IV_FIXED, EVP_CTRL_GCM_SET_IV_INV and EVP_CTRL_AEAD_TLS1_AAD fail, and so
 * does encrypting without an IV. A failed decrypt final means the plaintext already returned by
 * the updates must be discarded.
 */
extern const OSSL_ALGORITHM prov_gcm_algorithms[];

#endif
