/* SPDX-License-Identifier: Apache-2.0 */
/* Locked, non-dumpable, wiped-on-free memory for keys, derived keys and plaintext chunks. */
#include "engine_secmem.h"

#include "coffer_error.h"

#include <string.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

/* Each allocation is [64-byte header][user bytes] in its own pages; the header keeps the size. */
struct secmem_hdr {
    size_t map_len;
    struct secmem_hdr *next; /* in the free list */
};

static atomic_ulong lock_failures;
static void (*_Atomic lock_failure_hook)(size_t len);
static atomic_size_t first_failure_len; /* bytes of the first allocation mlock refused */
static atomic_int failure_reported;

/* Call the hook once per process, if there is one and a failure happened. */
static void report_lock_failure(void)
{
    void (*hook)(size_t) = atomic_load(&lock_failure_hook);
    if (hook != NULL && atomic_load(&lock_failures) > 0 &&
        atomic_exchange(&failure_reported, 1) == 0)
        hook(atomic_load(&first_failure_len));
}

/* Under ASan, pooled regions are poisoned so that a use after free is still caught. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POOL_POISON(p, n)   ASAN_POISON_MEMORY_REGION((p), (n))
#define POOL_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POOL_POISON(p, n)   ((void)(p), (void)(n))
#define POOL_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/*
 * Freed regions are wiped at once and kept, still locked, for reuse: a stream per small job would
 * otherwise cost an mmap, mlock, munlock and munmap each time. Bounded in count and bytes.
 */
#define POOL_MAX_BYTES (16u << 20)
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct secmem_hdr *pool_head;
static size_t pool_bytes;

static struct secmem_hdr *pool_take(size_t map_len)
{
    struct secmem_hdr **pp, *h = NULL;
    pthread_mutex_lock(&pool_lock);
    for (pp = &pool_head; *pp != NULL; pp = &(*pp)->next) {
        if ((*pp)->map_len == map_len) {
            h = *pp;
            *pp = h->next;
            pool_bytes -= map_len;
            break;
        }
    }
    pthread_mutex_unlock(&pool_lock);
    return h;
}

/* 1 if the (already wiped) region was kept for reuse. */
static int pool_give(struct secmem_hdr *h)
{
    int kept = 0;
    pthread_mutex_lock(&pool_lock);
    if (pool_bytes + h->map_len <= POOL_MAX_BYTES) {
        h->next = pool_head;
        pool_head = h;
        pool_bytes += h->map_len;
        kept = 1;
    }
    pthread_mutex_unlock(&pool_lock);
    return kept;
}

void engine_secmem_wipe(void *p, size_t n)
{
    if (p != NULL && n > 0)
        explicit_bzero(p, n);
}

void *engine_secmem_alloc(size_t n)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t hdr = 64; /* keeps the user pointer 64-byte aligned */
    if (n > SIZE_MAX - hdr - page)
        return NULL;
    size_t map_len = (hdr + n + page - 1) / page * page;
    struct secmem_hdr *h = pool_take(map_len);
    if (h != NULL) {
        POOL_UNPOISON((uint8_t *)h + hdr, map_len - hdr);
        h->next = NULL;
        return (uint8_t *)h + hdr; /* wiped to zero when it was freed */
    }
    void *base = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED)
        return NULL;
    if (mlock(base, map_len) != 0) {
        size_t none = 0;
        atomic_compare_exchange_strong(&first_failure_len, &none, map_len);
        atomic_fetch_add(&lock_failures, 1);
        report_lock_failure();
    }
    (void)madvise(base, map_len, MADV_DONTDUMP);
    h = base;
    h->map_len = map_len;
    return (uint8_t *)base + hdr;
}

void engine_secmem_free(void *p)
{
    if (p == NULL)
        return;
    struct secmem_hdr *h = (struct secmem_hdr *)((uint8_t *)p - 64);
    size_t map_len = h->map_len;
    explicit_bzero(p, map_len - 64); /* glibc's explicit_bzero: memset speed, never elided */
    POOL_POISON(p, map_len - 64);
    if (pool_give(h))
        return;
    POOL_UNPOISON(p, map_len - 64);
    explicit_bzero(h, 64);
    (void)munlock(h, map_len);
    (void)munmap(h, map_len);
}

unsigned long engine_secmem_lock_failures(void)
{
    return atomic_load(&lock_failures);
}

void engine_secmem_set_lock_failure_hook(void (*hook)(size_t len))
{
    atomic_store(&lock_failure_hook, hook);
    report_lock_failure(); /* a failure before the hook was set is reported now */
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
