/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the engine's unit tests (see unit_util.h). */
#include "unit_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

const char *unit_backend_label(engine_gcm_backend be)
{
    return be == ENGINE_GCM_IPSEC_MB ? "ipsec-mb" : "openssl";
}

void unit_backend_missing(engine_gcm_backend be)
{
    const char *ci = getenv("CI");
    if (ci != NULL && strcmp(ci, "true") == 0)
        fail_msg("%s cannot run on this CPU (no AES-NI/PCLMULQDQ), and nothing may skip in CI",
                 unit_backend_label(be));
    print_message("[  SKIP    ] %s cannot run on this CPU (no AES-NI/PCLMULQDQ): only the other "
                  "backend was tested\n",
                  unit_backend_label(be));
}

void unit_backend_skip(engine_gcm_backend be)
{
    unit_backend_missing(be);
    skip();
}

void unit_sink_put(struct unit_sink *s, const uint8_t *p, size_t n)
{
    if (s->len + n > s->cap) {
        s->cap = (s->len + n) * 2 + 4096;
        s->buf = realloc(s->buf, s->cap);
        assert_non_null(s->buf);
    }
    if (n > 0)
        memcpy(s->buf + s->len, p, n);
    s->len += n;
}
