/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the engine's unit tests: backends this CPU cannot run, and an output sink. */
#ifndef UNIT_UTIL_H
#define UNIT_UTIL_H

#include "engine_gcm.h"

#include <stddef.h>
#include <stdint.h>

/* The name of a backend in messages: "ipsec-mb" or "openssl". */
const char *unit_backend_label(engine_gcm_backend be);

/*
 * Say that this CPU cannot run backend be (no AES-NI/PCLMULQDQ), so only the other backend is
 * tested; under CI=true nothing may skip, so the running test fails instead, like ts_skip.
 */
void unit_backend_missing(engine_gcm_backend be);

/* unit_backend_missing, then skip the running cmocka test (that part only). */
void unit_backend_skip(engine_gcm_backend be);

/* A growable byte buffer collecting released output; zero-initialise it, free() buf. */
struct unit_sink {
    uint8_t *buf;
    size_t len, cap;
};

/* Append n bytes of p (n may be 0); fails the test when memory runs out. */
void unit_sink_put(struct unit_sink *s, const uint8_t *p, size_t n);

#endif
