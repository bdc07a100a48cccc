/* SPDX-License-Identifier: Apache-2.0 */
/* AES-GCM (128/192/256) on ipsec-mb, with an OpenSSL EVP path for CPUs ipsec-mb cannot serve. */
#ifndef ENGINE_GCM_H
#define ENGINE_GCM_H

#include "coffer_error.h"

#include <stddef.h>
#include <stdint.h>

typedef enum {
    ENGINE_GCM_AUTO = 0, /* ipsec-mb if the CPU has AES-NI, else OpenSSL */
    ENGINE_GCM_IPSEC_MB =
        1, /* Intel ipsec-mb, best code path for the CPU (AVX-512/VAES, AVX2, ...) */
    ENGINE_GCM_OPENSSL = 2, /* OpenSSL EVP, the default provider's AES-GCM */
} engine_gcm_backend;

/*
 * The backend AUTO resolves to, after the COFFER_GCM_BACKEND environment variable ("ipsec-mb"
 * or "openssl") if it is set. Never returns AUTO.
 */
engine_gcm_backend engine_gcm_backend_default(void);

/* 1 if the backend can run on this CPU, else 0. */
int engine_gcm_backend_available(engine_gcm_backend b);

/* "ipsec-mb/avx2", "ipsec-mb/avx512", "openssl", ...: what actually runs. */
const char *engine_gcm_backend_name(engine_gcm_backend b);

/* Parse "auto", "ipsec-mb" or "openssl"; returns 0 or COFFER_ERR_INVALID_ARG. */
int engine_gcm_backend_parse(const char *name, engine_gcm_backend *out) COFFER_WUR;

/*
 * An engine_gcm holds one AES key schedule and the state of one message at a time. It lives in
 * locked memory (engine_secmem) and is wiped by engine_gcm_free. It is not thread-safe: use one
 * object per thread (engine_gcm_dup copies one). The ipsec-mb path uses one IMB_MGR per thread,
 * freed by a thread-exit destructor: a module that embeds the engine and may be dlclose()d must
 * stay loaded (-z nodelete), as the OpenSSL provider does.
 *
 * Limits the caller must respect (GCM's own): never reuse an IV with the same key; at most
 * 2^36 - 32 bytes per message; IVs of 1 to ENGINE_GCM_IV_MAX bytes (12 bytes is the only length
 * to use for new designs); tags of 1 to 16 bytes (use 16).
 */
#define ENGINE_GCM_IV_MAX 128 /* OpenSSL's GCM limit; both backends refuse longer IVs alike */
typedef struct engine_gcm engine_gcm;

/* key is 16, 24 or 32 bytes (AES-128/192/256). Returns 0, COFFER_ERR_KEY_SIZE, _CPU or _NOMEM. */
int engine_gcm_new(engine_gcm **out, engine_gcm_backend backend, const uint8_t *key,
                   size_t keylen) COFFER_WUR;
/* A copy with the same key schedule and the same message state. */
int engine_gcm_dup(engine_gcm **out, const engine_gcm *g) COFFER_WUR;
void engine_gcm_free(engine_gcm *g);
engine_gcm_backend engine_gcm_backend_of(const engine_gcm *g);
size_t engine_gcm_key_len(const engine_gcm *g);

/*
 * One-shot. out has len bytes and may equal in. engine_gcm_open verifies the tag in constant time
 * and, when it does not match, wipes out and returns COFFER_ERR_TAMPERED: no byte of an
 * unauthenticated message is ever left in out.
 */
int engine_gcm_seal(engine_gcm *g, const uint8_t *iv, size_t ivlen, const uint8_t *aad,
                    size_t aadlen, const uint8_t *in, size_t len, uint8_t *out, uint8_t *tag,
                    size_t taglen) COFFER_WUR;
int engine_gcm_open(engine_gcm *g, const uint8_t *iv, size_t ivlen, const uint8_t *aad,
                    size_t aadlen, const uint8_t *in, size_t len, uint8_t *out, const uint8_t *tag,
                    size_t taglen) COFFER_WUR;

/*
 * Streaming: start (all the AAD at once), update any number of times with pieces of any size
 * (out may equal in), then finish. A decrypting stream's update output is NOT authenticated until
 * engine_gcm_finish_verify returns 0: callers that release plaintext must hold it until then.
 */
int engine_gcm_start(engine_gcm *g, int encrypt, const uint8_t *iv, size_t ivlen,
                     const uint8_t *aad, size_t aadlen) COFFER_WUR;
int engine_gcm_update(engine_gcm *g, const uint8_t *in, size_t len, uint8_t *out) COFFER_WUR;
int engine_gcm_finish_tag(engine_gcm *g, uint8_t *tag, size_t taglen) COFFER_WUR;
/* 0 when the tag matches, COFFER_ERR_TAMPERED otherwise (constant-time comparison). */
int engine_gcm_finish_verify(engine_gcm *g, const uint8_t *tag, size_t taglen) COFFER_WUR;

#endif
