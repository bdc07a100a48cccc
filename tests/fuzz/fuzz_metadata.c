/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: engine_metadata_parse on untrusted status metadata, with its invariants. */
#include "coffer_error.h"
#include "engine_metadata.h"
#include "fuzz_common.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size copy without a NUL, so that reading past len is caught */
    char *text = malloc(size > 0 ? size : 1);
    engine_metadata m;

    FUZZ_CHECK(text != NULL);
    if (size > 0)
        memcpy(text, data, size);
    memset(&m, 0xee, sizeof(m)); /* parse must set every field, even when it fails */
    int r = engine_metadata_parse(&m, text, size);
    if (r == 0) {
        FUZZ_CHECK(size <= ENGINE_METADATA_MAX);
        fuzz_metadata_check(&m);
    } else {
        FUZZ_CHECK(r == COFFER_ERR_METADATA || r == COFFER_ERR_TOO_LARGE);
        FUZZ_CHECK(r != COFFER_ERR_TOO_LARGE || size > ENGINE_METADATA_MAX);
        FUZZ_CHECK(m.json == NULL && m.retriever == NULL && m.ns == NULL && m.secret == NULL &&
                   m.format == NULL && m.key_id == NULL);
    }
    engine_metadata_clear(&m);
    free(text);
    return 0;
}
