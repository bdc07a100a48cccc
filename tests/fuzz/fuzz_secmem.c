/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz builds only: engine_secmem on the ASan heap, so that overruns and use-after-free of engine
 * objects (which normally live in locked, pooled pages that ASan cannot see) are caught. */
#include "engine_secmem.h"

#include <sanitizer/allocator_interface.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void *engine_secmem_alloc(size_t n)
{
    void *p = NULL;
    /* exactly n bytes between ASan's redzones, 64-byte aligned as the real allocator promises */
    if (posix_memalign(&p, 64, n > 0 ? n : 1) != 0)
        return NULL;
    memset(p, 0, n > 0 ? n : 1);
    return p;
}

void engine_secmem_free(void *p)
{
    if (p == NULL)
        return;
    explicit_bzero(p, __sanitizer_get_allocated_size(p));
    free(p); /* ASan's quarantine keeps it poisoned for a while: a late access is reported */
}

unsigned long engine_secmem_lock_failures(void)
{
    return 0;
}

int engine_secmem_harden_process(void)
{
    return 0; /* a fuzzing process is not hardened: libFuzzer wants its crash reports */
}

void engine_secmem_wipe(void *p, size_t n)
{
    if (p != NULL && n > 0)
        explicit_bzero(p, n);
}
