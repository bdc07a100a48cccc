/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: hsm_metadata_config_parse on untrusted pkcs11 configs, with a round trip. */
#include "coffer_error.h"
#include "fuzz_common.h"
#include "hsm_metadata.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Every string field must end inside its buffer. */
static void config_check(const hsm_metadata_config *c)
{
    FUZZ_CHECK(memchr(c->module, '\0', sizeof(c->module)) != NULL);
    FUZZ_CHECK(memchr(c->token, '\0', sizeof(c->token)) != NULL);
    FUZZ_CHECK(memchr(c->wrapped.key_label, '\0', sizeof(c->wrapped.key_label)) != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t err;
    hsm_metadata_config c, again;
    char detail[256];
    json_t *cfg = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &err);

    if (cfg == NULL)
        return 0;
    memset(&c, 0xee, sizeof(c));
    memset(detail, 0xee, sizeof(detail));
    int r = hsm_metadata_config_parse(cfg, &c, detail, sizeof(detail));
    if (r != 0) {
        FUZZ_CHECK(r == COFFER_ERR_METADATA);
        FUZZ_CHECK(memchr(detail, '\0', sizeof(detail)) != NULL);
    } else {
        /* what parses must be rebuilt into a config that parses to the same values */
        config_check(&c);
        json_t *rebuilt = hsm_metadata_config_new(c.module, c.token, &c.wrapped);
        FUZZ_CHECK(rebuilt != NULL);
        memset(&again, 0, sizeof(again));
        FUZZ_CHECK(hsm_metadata_config_parse(rebuilt, &again, NULL, 0) == 0);
        FUZZ_CHECK(strcmp(c.module, again.module) == 0 && strcmp(c.token, again.token) == 0);
        FUZZ_CHECK(strcmp(c.wrapped.key_label, again.wrapped.key_label) == 0);
        FUZZ_CHECK(memcmp(c.wrapped.iv, again.wrapped.iv, sizeof(c.wrapped.iv)) == 0);
        FUZZ_CHECK(memcmp(c.wrapped.wrapped, again.wrapped.wrapped, sizeof(c.wrapped.wrapped)) ==
                   0);
        json_decref(rebuilt);
    }
    json_decref(cfg);
    return 0;
}
