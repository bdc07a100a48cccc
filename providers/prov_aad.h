/* SPDX-License-Identifier: Apache-2.0 */
/* The AAD of one GCM message, gathered from several updates until the message starts. */
#ifndef PROV_AAD_H
#define PROV_AAD_H

#include <stddef.h>
#include <stdint.h>

/* AAD up to this many bytes stays inside the cipher context: no allocation at all. */
#define PROV_AAD_INLINE 256

/*
 * A bounded, growable buffer. Zero-initialised it is empty. The heap part grows geometrically and
 * is kept across messages (prov_aad_reset only forgets the bytes), so a context that reuses AAD
 * of the same size allocates once. It never holds more than COFFER_MAX_PROV_AAD bytes.
 */
typedef struct prov_aad {
    size_t len;
    size_t cap; /* of heap; 0 while the inline part is in use */
    uint8_t *heap;
    uint8_t inline_buf[PROV_AAD_INLINE];
} prov_aad;

/* Append n bytes. Returns 0, COFFER_ERR_TOO_LARGE (over the limit) or COFFER_ERR_NOMEM. */
int prov_aad_append(prov_aad *a, const uint8_t *p, size_t n) __attribute__((warn_unused_result));

/* The bytes gathered so far (valid until the next append) and their count. */
const uint8_t *prov_aad_data(const prov_aad *a);

/* Forget the bytes (wiped), keep the buffer. */
void prov_aad_reset(prov_aad *a);

/* dst (whose heap part is not owned: a byte copy of src) becomes an independent copy of src. */
int prov_aad_copy(prov_aad *dst, const prov_aad *src) __attribute__((warn_unused_result));

/* Wipe and free the heap part; a is empty afterwards. */
void prov_aad_free(prov_aad *a);

#endif
