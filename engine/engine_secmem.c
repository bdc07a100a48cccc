/* SPDX-License-Identifier: Apache-2.0 */
/* Locked, non-dumpable, wiped-on-free memory for keys, derived keys and plaintext chunks. */
#include "engine_secmem.h"

#include "coffer_error.h"

#include <openssl/crypto.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

/* Each allocation is [header page(s)][user bytes], the header keeps the mapping's size. */
struct secmem_hdr {
    size_t map_len;
    size_t user_off;
};

static atomic_ulong lock_failures;

void engine_secmem_wipe(void *p, size_t n)
{
    if (p != NULL && n > 0)
        OPENSSL_cleanse(p, n);
}

void *engine_secmem_alloc(size_t n)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t hdr = 64; /* keeps the user pointer 64-byte aligned */
    if (n > SIZE_MAX - hdr - page)
        return NULL;
    size_t map_len = (hdr + n + page - 1) / page * page;
    void *base = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED)
        return NULL;
    if (mlock(base, map_len) != 0)
        atomic_fetch_add(&lock_failures, 1);
    (void)madvise(base, map_len, MADV_DONTDUMP);
    struct secmem_hdr *h = base;
    h->map_len = map_len;
    h->user_off = hdr;
    return (uint8_t *)base + hdr;
}

void engine_secmem_free(void *p)
{
    if (p == NULL)
        return;
    struct secmem_hdr *h = (struct secmem_hdr *)((uint8_t *)p - 64);
    size_t map_len = h->map_len;
    OPENSSL_cleanse(h, map_len);
    (void)munlock(h, map_len);
    (void)munmap(h, map_len);
}

unsigned long engine_secmem_lock_failures(void)
{
    return atomic_load(&lock_failures);
}

int engine_secmem_harden_process(void)
{
    struct rlimit no_core = {0, 0};
    int r = 0;
    if (setrlimit(RLIMIT_CORE, &no_core) != 0)
        r = COFFER_ERR_INTERNAL;
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        r = COFFER_ERR_INTERNAL;
    return r;
}
