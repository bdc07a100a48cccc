/* SPDX-License-Identifier: Apache-2.0 */
/* Reading the token PIN from a file or an environment variable into locked memory. */
#ifndef HSM_PIN_H
#define HSM_PIN_H

#include "engine_gcm.h"
#include "hsm_status.h"

#include <stddef.h>

#define HSM_PIN_MAX     256              /* longer PINs are refused */
#define HSM_PIN_ENV_DEF "COFFER_HSM_PIN" /* the environment variable used when no file is given */

/*
 * Where the PIN comes from: the file when file is not NULL, else the environment variable env
 * (NULL: HSM_PIN_ENV_DEF). A PIN is never taken from the command line. The PIN is read again at
 * every login (the first one and every reconnect) and wiped right after C_Login, so a PIN file
 * that is rotated (a Kubernetes Secret update) is picked up at the next login.
 */
typedef struct hsm_pin_source {
    const char *file;
    const char *env;
} hsm_pin_source;

/*
 * Read the PIN into a new engine_secmem buffer (*pin, NUL-terminated, *len bytes without the
 * NUL). One trailing "\n" or "\r\n" of a file is dropped. An empty PIN, a PIN longer than
 * HSM_PIN_MAX, a missing or unreadable file or an unset variable is COFFER_ERR_HSM_LOGIN with a
 * sentence in st (step "pin") that names the file or variable, never the content.
 * Free with hsm_pin_free, which wipes it.
 */
int hsm_pin_read(const hsm_pin_source *src, char **pin, size_t *len, hsm_status *st) COFFER_WUR;

void hsm_pin_free(char *pin);

#endif
