/* SPDX-License-Identifier: Apache-2.0 */
/* What the coffer provider's files share: the provider context and the limits it enforces. */
#ifndef PROV_H
#define PROV_H

#include "engine_gcm.h"

#include <openssl/core.h>

/*
 * The longest IV the provider accepts, in bytes: the engine's limit, which is OpenSSL's (so that
 * both backends refuse the same IVs). GCM hashes an IV of any length other than 12 bytes into
 * the counter block; use 12-byte IVs.
 */
#define COFFER_MAX_PROV_IVLEN ENGINE_GCM_IV_MAX

/*
 * The most AAD one message may carry, in bytes. ipsec-mb 1.3 takes all AAD when the message
 * starts, so AAD given in several updates is buffered until the first data update or the final;
 * this bounds that buffer. OpenSSL allows more (2^61 bytes): beyond this, use the default provider.
 */
#define COFFER_MAX_PROV_AAD (16u * 1024 * 1024)

/* The provider context: one per library context that loaded coffer. */
typedef struct prov_ctx {
    const OSSL_CORE_HANDLE *handle; /* for errors raised on this library context's queue */
    char buildinfo[256];            /* versions and the AES-GCM backend that actually runs */
} prov_ctx;

#endif
