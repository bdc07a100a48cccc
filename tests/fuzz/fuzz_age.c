/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the age reader (engine_age_decrypt), the key-string parsers (bech32) and the
 * "recovery" field (engine_recovery_open) on untrusted input, with their invariants. */
#include "coffer_error.h"
#include "engine_age.h"
#include "engine_recovery.h"
#include "fuzz_common.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The age spec's example identity; the seeds are age files encrypted to its recipient. */
static const char fuzz_age_identity[] =
    "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static engine_age_identities ids;
    uint8_t *copy, pt[256];
    size_t ptlen = 12345;
    char detail[512];
    int r;

    if (ids.n == 0)
        FUZZ_CHECK(engine_age_identity_parse(&ids.v[ids.n++], fuzz_age_identity,
                                             strlen(fuzz_age_identity), NULL, 0) == 0);
    if (size < 1)
        return 0;
    /* an exact-size copy, so that reading past the end is caught */
    copy = malloc(size - 1 > 0 ? size - 1 : 1);
    FUZZ_CHECK(copy != NULL);
    memcpy(copy, data + 1, size - 1);
    switch (data[0] % 3) {
    case 0: /* a binary age file */
        memset(pt, 0xaa, sizeof(pt));
        r = engine_age_decrypt(&ids, copy, size - 1, pt, sizeof(pt), &ptlen, detail,
                               sizeof(detail));
        if (r == 0) {
            FUZZ_CHECK(ptlen <= sizeof(pt));
        } else {
            FUZZ_CHECK(r == COFFER_ERR_BAD_HEADER || r == COFFER_ERR_WRONG_KEY ||
                       r == COFFER_ERR_TAMPERED || r == COFFER_ERR_TRUNCATED ||
                       r == COFFER_ERR_TOO_LARGE || r == COFFER_ERR_NOMEM);
            FUZZ_CHECK(ptlen == 0);
            FUZZ_CHECK(detail[0] != '\0' || r == COFFER_ERR_NOMEM);
        }
        break;
    case 1: { /* a recipient or identity string */
        engine_age_recipient rc;
        engine_age_identity *id = NULL;
        r = engine_age_recipient_parse(&rc, (const char *)copy, size - 1, detail, sizeof(detail));
        if (r == 0) {
            /* canonical: the same string in lower case */
            FUZZ_CHECK(size - 1 == ENGINE_AGE_RECIPIENT_TEXT);
            for (size_t i = 0; i < size - 1; i++) {
                char c = (char)copy[i];
                FUZZ_CHECK(rc.text[i] == (c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c));
            }
        } else {
            FUZZ_CHECK(r == COFFER_ERR_KEY_FORM);
        }
        r = engine_age_identity_parse(&id, (const char *)copy, size - 1, detail, sizeof(detail));
        FUZZ_CHECK((r == 0) == (id != NULL));
        FUZZ_CHECK(r == 0 || r == COFFER_ERR_KEY_FORM || r == COFFER_ERR_NOMEM);
        engine_age_identity_free(id);
        break;
    }
    default: { /* status metadata with a "recovery" field */
        json_t *m = json_loadb((const char *)copy, size - 1, 0, NULL);
        engine_key *key = NULL;
        if (m != NULL) {
            r = engine_recovery_open(m, &ids, &key, detail, sizeof(detail));
            FUZZ_CHECK((r == 0) == (key != NULL));
            const char *kid = json_string_value(json_object_get(m, "keyId"));
            if (r == 0)
                FUZZ_CHECK(key->len == 32 && (kid == NULL || strcmp(kid, key->id) == 0));
            engine_key_free(key);
            json_decref(m);
        }
        break;
    }
    }
    free(copy);
    return 0;
}
